//! The FUSE side of [`LazyFs`](super::LazyFs): node ids over the backing
//! directory's paths, each request mapped onto it, unsynced data per file.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{DirBuilderExt as _, FileExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use super::extents::Extents;
use super::{CrashReport, cstring};

/// How long the kernel may keep names and attributes. Nothing changes the
/// backing directory behind the mount, so they only go stale by our own
/// replies, which the kernel applies itself.
const TTL: Duration = Duration::from_secs(1);

/// Files are opened without FLUSH on close: close persists nothing, and a
/// process that dies with files open on a mount it serves itself (a test
/// killed on time-out) would otherwise hang for good in its exit, waiting
/// for a flush that its own dead threads were to answer. RELEASE is sent
/// without waiting.
const OPEN_FLAGS: FopenFlags = FopenFlags::FOPEN_NOFLUSH;

/// The in-memory state of one regular file.
#[derive(Default)]
struct FileState {
    inner: Mutex<FileInner>,
}

#[derive(Default)]
struct FileInner {
    /// The backing file, read-write, shared by every open handle; closed
    /// with the last one.
    fd: Option<File>,
    opens: u32,
    /// Written, not yet synced.
    dirty: Extents,
    /// Written, fsync failed: read like clean pages while the file is
    /// open, never persisted, forgotten when its last handle closes (the
    /// page cache dropped).
    lost: Extents,
    /// No name left in the backing directory: its data goes with the last
    /// handle.
    unlinked: bool,
}

impl FileInner {
    /// The size a program sees: the disk's, or further if unsynced writes
    /// go past it.
    fn size(&self, backing_len: u64) -> u64 {
        backing_len.max(self.dirty.end()).max(self.lost.end())
    }
}

/// What the kernel knows a node by: our node id stays unique for the
/// mount's life even if the backing file system reuses an inode number.
struct Node {
    parent: u64,
    name: OsString,
    /// Regular files only.
    file: Option<Arc<FileState>>,
}

struct Table {
    nodes: HashMap<u64, Node>,
    /// Backing inode number to node id, while the backing inode has a
    /// name.
    by_backing: HashMap<u64, u64>,
    next: u64,
}

pub(super) struct Shared {
    pub(super) root: PathBuf,
    table: RwLock<Table>,
    dirs: Mutex<HashMap<u64, Vec<DirEntry>>>,
    next_fh: AtomicU64,
    crashed: AtomicBool,
    pub(super) fail_next: AtomicU64,
    pub(super) fail_all: AtomicBool,
    pub(super) fsyncs: AtomicU64,
    pub(super) failed_fsyncs: AtomicU64,
    pub(super) bytes_persisted: AtomicU64,
    pub(super) bytes_pending: AtomicU64,
    pub(super) bytes_lost: AtomicU64,
}

struct DirEntry {
    ino: u64,
    kind: FileType,
    name: OsString,
}

const ROOT: u64 = INodeNo::ROOT.0;

type Res<T> = Result<T, Errno>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in one request must not wedge the others: the state under
    // the lock is updated in steps that each leave it consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub(super) fn new(root: PathBuf) -> io::Result<Shared> {
        let md = fs::metadata(&root)?;
        if !md.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", root.display()),
            ));
        }
        let mut nodes = HashMap::new();
        nodes.insert(
            ROOT,
            Node {
                parent: ROOT,
                name: OsString::new(),
                file: None,
            },
        );
        Ok(Shared {
            root,
            table: RwLock::new(Table {
                nodes,
                by_backing: HashMap::from([(md.ino(), ROOT)]),
                next: ROOT + 1,
            }),
            dirs: Mutex::default(),
            next_fh: AtomicU64::new(1),
            crashed: AtomicBool::new(false),
            fail_next: AtomicU64::new(0),
            fail_all: AtomicBool::new(false),
            fsyncs: AtomicU64::new(0),
            failed_fsyncs: AtomicU64::new(0),
            bytes_persisted: AtomicU64::new(0),
            bytes_pending: AtomicU64::new(0),
            bytes_lost: AtomicU64::new(0),
        })
    }

    fn table(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }

    fn table_mut(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|p| p.into_inner())
    }

    fn path_in(&self, t: &Table, ino: u64) -> Res<PathBuf> {
        let mut names = Vec::new();
        let mut cur = ino;
        while cur != ROOT {
            let node = t.nodes.get(&cur).ok_or(Errno::ENOENT)?;
            names.push(node.name.clone());
            cur = node.parent;
            if names.len() > t.nodes.len() {
                return Err(Errno::EIO);
            }
        }
        let mut path = self.root.clone();
        path.extend(names.iter().rev());
        Ok(path)
    }

    fn path(&self, ino: u64) -> Res<PathBuf> {
        self.path_in(&self.table(), ino)
    }

    fn child(&self, parent: u64, name: &OsStr) -> Res<PathBuf> {
        Ok(self.path(parent)?.join(name))
    }

    fn file(&self, ino: u64) -> Res<Arc<FileState>> {
        let t = self.table();
        let node = t.nodes.get(&ino).ok_or(Errno::ENOENT)?;
        node.file.clone().ok_or(Errno::EISDIR)
    }

    fn alive(&self) -> Res<()> {
        if self.crashed.load(Ordering::SeqCst) {
            Err(Errno::EIO)
        } else {
            Ok(())
        }
    }

    /// Gives the backing file at `parent`/`name` a node id, the one it had
    /// if it has one.
    fn register(&self, parent: u64, name: &OsStr, md: &Metadata) -> u64 {
        let mut t = self.table_mut();
        if let Some(&id) = t.by_backing.get(&md.ino())
            && let Some(node) = t.nodes.get_mut(&id)
        {
            if id != ROOT {
                node.parent = parent;
                node.name = name.to_owned();
            }
            return id;
        }
        let id = t.next;
        t.next += 1;
        t.by_backing.insert(md.ino(), id);
        t.nodes.insert(
            id,
            Node {
                parent,
                name: name.to_owned(),
                file: md.is_file().then(Arc::default),
            },
        );
        id
    }

    /// The backing inode `md` lost a name: once it has none, its node's
    /// unsynced data goes (with its last open handle, if it is open).
    fn unlinked(&self, md: &Metadata) {
        if md.nlink() > 1 && !md.is_dir() {
            return;
        }
        let file = {
            let mut t = self.table_mut();
            let Some(id) = t.by_backing.remove(&md.ino()) else {
                return;
            };
            t.nodes.get(&id).and_then(|n| n.file.clone())
        };
        if let Some(file) = file {
            let mut f = lock(&file.inner);
            f.unlinked = true;
            if f.opens == 0 {
                self.drop_data(&mut f, "unlinked");
            }
        }
    }

    fn drop_data(&self, f: &mut FileInner, why: &str) -> u64 {
        let (dirty, lost) = (f.dirty.bytes, f.lost.bytes);
        f.dirty.take();
        f.lost.take();
        self.bytes_pending.fetch_sub(dirty, Ordering::Relaxed);
        self.bytes_lost.fetch_sub(lost, Ordering::Relaxed);
        if dirty + lost > 0 {
            tracing::debug!(bytes = dirty + lost, why, "lazyfs dropped unsynced data");
        }
        dirty + lost
    }

    /// Records the change of a file's held bytes around an update.
    fn account(&self, before: (u64, u64), f: &FileInner) {
        let after = (f.dirty.bytes, f.lost.bytes);
        adjust(&self.bytes_pending, before.0, after.0);
        adjust(&self.bytes_lost, before.1, after.1);
    }

    pub(super) fn power_loss(&self) -> CrashReport {
        self.crashed.store(true, Ordering::SeqCst);
        let files: Vec<Arc<FileState>> = self
            .table()
            .nodes
            .values()
            .filter_map(|n| n.file.clone())
            .collect();
        let mut report = CrashReport::default();
        for file in files {
            // Taking the lock waits for a write or fsync under way; any
            // later one sees `crashed`.
            let mut f = lock(&file.inner);
            let dropped = self.drop_data(&mut f, "power loss");
            if dropped > 0 {
                report.dropped_bytes += dropped;
                report.dropped_files += 1;
            }
        }
        tracing::info!(
            root = %self.root.display(),
            dropped_bytes = report.dropped_bytes,
            dropped_files = report.dropped_files,
            "lazyfs power loss"
        );
        report
    }

    fn fsync_should_fail(&self) -> bool {
        self.fail_all.load(Ordering::SeqCst)
            || self
                .fail_next
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
    }

    /// The attributes of node `ino` as a program sees them: its file's
    /// size includes unsynced writes.
    fn attr(&self, ino: u64) -> Res<FileAttr> {
        let (path, file) = {
            let t = self.table();
            let file = t.nodes.get(&ino).ok_or(Errno::ENOENT)?.file.clone();
            (self.path_in(&t, ino), file)
        };
        match file {
            Some(file) => {
                let f = lock(&file.inner);
                // An open file may have lost its name: ask the handle.
                let md = match &f.fd {
                    Some(fd) => fd.metadata()?,
                    None => fs::symlink_metadata(path?)?,
                };
                let size = f.size(md.len());
                Ok(attr(ino, &md, size))
            }
            None => {
                let md = fs::symlink_metadata(path?)?;
                Ok(attr(ino, &md, md.len()))
            }
        }
    }

    fn entry(&self, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let res = (|| {
            let md = fs::symlink_metadata(self.child(parent, name)?)?;
            let id = self.register(parent, name, &md);
            self.attr(id)
        })();
        match res {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn open_file(&self, ino: u64, truncate: bool) -> Res<()> {
        let path = self.path(ino)?;
        let file = self.file(ino)?;
        let mut f = lock(&file.inner);
        if f.fd.is_none() {
            // Read-write whatever the program asked: one handle serves every
            // open and fsync writes through it. Never O_APPEND: offsets come
            // from the kernel.
            let fd = match OpenOptions::new().read(true).write(true).open(&path) {
                Ok(fd) => fd,
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EACCES | libc::EPERM | libc::EROFS | libc::ETXTBSY)
                    ) =>
                {
                    File::open(&path)?
                }
                Err(e) => return Err(e.into()),
            };
            f.fd = Some(fd);
        }
        if truncate {
            self.alive()?;
            let before = (f.dirty.bytes, f.lost.bytes);
            f.fd.as_ref().expect("opened above").set_len(0)?;
            f.dirty.truncate(0);
            f.lost.truncate(0);
            self.account(before, &f);
        }
        f.opens += 1;
        Ok(())
    }

    fn setattr(
        &self,
        ino: u64,
        mode: Option<u32>,
        owner: (Option<u32>, Option<u32>),
        size: Option<u64>,
        times: (Option<TimeOrNow>, Option<TimeOrNow>),
    ) -> Res<FileAttr> {
        let path = self.path(ino);
        let file = self.file(ino).ok();
        if let Some(size) = size {
            self.alive()?;
            let file = file.as_ref().ok_or(Errno::EISDIR)?;
            let mut f = lock(&file.inner);
            let before = (f.dirty.bytes, f.lost.bytes);
            match &f.fd {
                Some(fd) => fd.set_len(size)?,
                None => OpenOptions::new()
                    .write(true)
                    .open(path.clone()?)?
                    .set_len(size)?,
            }
            f.dirty.truncate(size);
            f.lost.truncate(size);
            self.account(before, &f);
        }
        if let Some(mode) = mode {
            let c = cstring(&path.clone()?)?;
            // SAFETY: `c` is a NUL-terminated path that outlives the call.
            check(unsafe { libc::chmod(c.as_ptr(), mode & 0o7777) })?;
        }
        if owner.0.is_some() || owner.1.is_some() {
            std::os::unix::fs::lchown(path.clone()?, owner.0, owner.1)?;
        }
        if times.0.is_some() || times.1.is_some() {
            let spec = |t: Option<TimeOrNow>| match t {
                None => libc::timespec {
                    tv_sec: 0,
                    tv_nsec: libc::UTIME_OMIT,
                },
                Some(TimeOrNow::Now) => libc::timespec {
                    tv_sec: 0,
                    tv_nsec: libc::UTIME_NOW,
                },
                Some(TimeOrNow::SpecificTime(t)) => {
                    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
                    libc::timespec {
                        tv_sec: d.as_secs() as libc::time_t,
                        tv_nsec: d.subsec_nanos().into(),
                    }
                }
            };
            let ts = [spec(times.0), spec(times.1)];
            let c = cstring(&path?)?;
            // SAFETY: `c` and `ts` outlive the call; `ts` has the two
            // entries utimensat reads.
            check(unsafe {
                libc::utimensat(
                    libc::AT_FDCWD,
                    c.as_ptr(),
                    ts.as_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            })?;
        }
        self.attr(ino)
    }

    fn read(&self, ino: u64, off: u64, size: u32) -> Res<Vec<u8>> {
        let file = self.file(ino)?;
        let f = lock(&file.inner);
        let fd = f.fd.as_ref().ok_or(Errno::EBADF)?;
        let end = f.size(fd.metadata()?.len());
        if off >= end {
            return Ok(Vec::new());
        }
        let mut buf = vec![0; (end - off).min(size.into()) as usize];
        let mut got = 0;
        while got < buf.len() {
            match fd.read_at(&mut buf[got..], off + got as u64) {
                Ok(0) => break, // past the disk's end: unsynced bytes or zeros
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        f.lost.overlay(off, &mut buf);
        f.dirty.overlay(off, &mut buf);
        Ok(buf)
    }

    fn write(&self, ino: u64, off: u64, data: &[u8]) -> Res<u32> {
        let file = self.file(ino)?;
        let mut f = lock(&file.inner);
        self.alive()?;
        let before = (f.dirty.bytes, f.lost.bytes);
        let end = off + data.len() as u64;
        f.lost.punch(off, end);
        f.dirty.insert(off, data);
        self.account(before, &f);
        u32::try_from(data.len()).map_err(|_| Errno::EINVAL)
    }

    fn fsync(&self, ino: u64, datasync: bool) -> Res<()> {
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        let file = self.file(ino)?;
        let mut f = lock(&file.inner);
        self.alive()?;
        let before = (f.dirty.bytes, f.lost.bytes);
        if self.fsync_should_fail() {
            self.failed_fsyncs.fetch_add(1, Ordering::Relaxed);
            // Linux after a writeback error: the pages stay in the cache,
            // clean, and the next fsync has nothing to write.
            for (off, data) in f.dirty.take() {
                f.lost.insert(off, &data);
            }
            self.account(before, &f);
            tracing::warn!(
                ino,
                lost_bytes = f.lost.bytes,
                "lazyfs: injected EIO on fsync"
            );
            return Err(Errno::EIO);
        }
        let inner = &mut *f;
        let fd = inner.fd.as_ref().ok_or(Errno::EBADF)?;
        let mut written = 0;
        let mut failed = None;
        // Extents go one by one, each removed once on disk, so that an error
        // halfway leaves the rest pending.
        while let Some((&off, data)) = inner.dirty.map.first_key_value() {
            if let Err(e) = fd.write_all_at(data, off) {
                failed = Some(e);
                break;
            }
            let len = data.len() as u64;
            inner.dirty.map.remove(&off);
            inner.dirty.bytes -= len;
            written += len;
        }
        self.account(before, &f);
        self.bytes_persisted.fetch_add(written, Ordering::Relaxed);
        if let Some(e) = failed {
            tracing::warn!(ino, error = %e, "lazyfs could not write to its backing directory");
            return Err(e.into());
        }
        tracing::trace!(ino, datasync, written, "lazyfs fsync");
        Ok(())
    }

    fn release(&self, ino: u64) {
        let Ok(file) = self.file(ino) else {
            return;
        };
        let mut f = lock(&file.inner);
        f.opens = f.opens.saturating_sub(1);
        if f.opens == 0 {
            f.fd = None;
            if f.unlinked {
                self.drop_data(&mut f, "last handle of an unlinked file closed");
            } else if f.lost.bytes > 0 {
                // Pages whose writeback failed are clean: Linux may evict
                // them at any time, and a program that reopens the file
                // after dropping its cache (the event log node's start,
                // fadvise DONTNEED) reads the disk's older bytes. With no
                // handle left, forget them here.
                let before = (f.dirty.bytes, f.lost.bytes);
                f.lost.take();
                self.account(before, &f);
                tracing::debug!(
                    ino,
                    "lazyfs forgot data whose fsync failed: its last handle closed"
                );
            }
        }
    }

    fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> Res<()> {
        let from = self.child(parent, name)?;
        let to = self.child(newparent, newname)?;
        let moved = fs::symlink_metadata(&from)?;
        let target = fs::symlink_metadata(&to).ok();
        let (c_from, c_to) = (cstring(&from)?, cstring(&to)?);
        // SAFETY: both paths are NUL-terminated and outlive the call.
        check(unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                c_from.as_ptr(),
                libc::AT_FDCWD,
                c_to.as_ptr(),
                flags.bits(),
            )
        })?;
        let exchange = flags.contains(RenameFlags::RENAME_EXCHANGE);
        let mut t = self.table_mut();
        let moved_id = t.by_backing.get(&moved.ino()).copied();
        let target_id = target
            .as_ref()
            .and_then(|md| t.by_backing.get(&md.ino()).copied());
        if let Some(node) = moved_id.and_then(|id| t.nodes.get_mut(&id)) {
            node.parent = newparent;
            node.name = newname.to_owned();
        }
        if exchange && let Some(node) = target_id.and_then(|id| t.nodes.get_mut(&id)) {
            node.parent = parent;
            node.name = name.to_owned();
        }
        drop(t);
        if let Some(target) = target
            && !exchange
            && target.ino() != moved.ino()
        {
            self.unlinked(&target);
        }
        Ok(())
    }
}

fn adjust(counter: &AtomicU64, before: u64, after: u64) {
    if after >= before {
        counter.fetch_add(after - before, Ordering::Relaxed);
    } else {
        counter.fetch_sub(before - after, Ordering::Relaxed);
    }
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn time(secs: i64, nsecs: i64) -> SystemTime {
    match (u64::try_from(secs), u32::try_from(nsecs)) {
        (Ok(s), Ok(n)) => UNIX_EPOCH + Duration::new(s, n.min(999_999_999)),
        _ => UNIX_EPOCH,
    }
}

fn kind(md: &Metadata) -> FileType {
    FileType::from_std(md.file_type()).unwrap_or(FileType::RegularFile)
}

fn attr(ino: u64, md: &Metadata, size: u64) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: md.blocks().max(size.div_ceil(512)),
        atime: time(md.atime(), md.atime_nsec()),
        mtime: time(md.mtime(), md.mtime_nsec()),
        ctime: time(md.ctime(), md.ctime_nsec()),
        crtime: UNIX_EPOCH,
        kind: kind(md),
        perm: (md.mode() & 0o7777) as u16,
        nlink: md.nlink() as u32,
        uid: md.uid(),
        gid: md.gid(),
        rdev: md.rdev() as u32,
        blksize: md.blksize() as u32,
        flags: 0,
    }
}

/// Files and directories a request creates belong to whoever asked.
fn chown_to(path: &Path, req: &Request) -> io::Result<()> {
    std::os::unix::fs::lchown(path, Some(req.uid()), Some(req.gid()))
}

/// The FUSE side: each request mapped onto [`Shared`].
pub(super) struct Fs(pub(super) Arc<Shared>);

fn reply_empty(reply: ReplyEmpty, res: Res<()>) {
    match res {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

fn reply_attr(reply: ReplyAttr, res: Res<FileAttr>) {
    match res {
        Ok(a) => reply.attr(&TTL, &a),
        Err(e) => reply.error(e),
    }
}

impl Filesystem for Fs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.0.entry(parent.0, name, reply);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        reply_attr(reply, self.0.attr(ino.0));
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply_attr(
            reply,
            self.0
                .setattr(ino.0, mode, (uid, gid), size, (atime, mtime)),
        );
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.0.path(ino.0).and_then(|p| Ok(fs::read_link(p)?)) {
            Ok(target) => reply.data(target.as_os_str().as_bytes()),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let res = (|| {
            let path = self.0.child(parent.0, name)?;
            fs::DirBuilder::new()
                .mode(mode & !umask & 0o7777)
                .create(&path)?;
            chown_to(&path, req)?;
            Ok(())
        })();
        match res {
            Ok(()) => self.0.entry(parent.0, name, reply),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(
            reply,
            (|| {
                let path = self.0.child(parent.0, name)?;
                let md = fs::symlink_metadata(&path)?;
                fs::remove_file(&path)?;
                self.0.unlinked(&md);
                Ok(())
            })(),
        );
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(
            reply,
            (|| {
                let path = self.0.child(parent.0, name)?;
                let md = fs::symlink_metadata(&path)?;
                fs::remove_dir(&path)?;
                self.0.unlinked(&md);
                Ok(())
            })(),
        );
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let res = (|| {
            let path = self.0.child(parent.0, link_name)?;
            std::os::unix::fs::symlink(target, &path)?;
            chown_to(&path, req)?;
            Ok(())
        })();
        match res {
            Ok(()) => self.0.entry(parent.0, link_name, reply),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply_empty(
            reply,
            self.0.rename(parent.0, name, newparent.0, newname, flags),
        );
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.0.open_file(ino.0, flags.0 & libc::O_TRUNC != 0) {
            Ok(()) => reply.opened(FileHandle(ino.0), OPEN_FLAGS),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        match self.0.read(ino.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.0.write(ino.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        // close() persists nothing: only fsync does.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.0.release(ino.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.0.fsync(ino.0, datasync));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let res = (|| {
            let (path, parent) = {
                let t = self.0.table();
                let parent = t.nodes.get(&ino.0).ok_or(Errno::ENOENT)?.parent;
                (self.0.path_in(&t, ino.0)?, parent)
            };
            let mut entries = vec![
                DirEntry {
                    ino: ino.0,
                    kind: FileType::Directory,
                    name: ".".into(),
                },
                DirEntry {
                    ino: parent,
                    kind: FileType::Directory,
                    name: "..".into(),
                },
            ];
            for e in fs::read_dir(&path)? {
                let e = e?;
                let md = e.metadata()?;
                entries.push(DirEntry {
                    ino: md.ino(),
                    kind: kind(&md),
                    name: e.file_name(),
                });
            }
            let fh = self.0.next_fh.fetch_add(1, Ordering::Relaxed);
            lock(&self.0.dirs).insert(fh, entries);
            Ok(fh)
        })();
        match res {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let dirs = lock(&self.0.dirs);
        let Some(entries) = dirs.get(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        for (i, e) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(e.ino), i as u64 + 1, e.kind, &e.name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        lock(&self.0.dirs).remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Directory changes were applied when made.
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let res = (|| {
            let c = cstring(&self.0.root)?;
            // SAFETY: statvfs is plain old data, filled by the call.
            let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
            // SAFETY: `c` is NUL-terminated and `s` is a valid out pointer.
            check(unsafe { libc::statvfs(c.as_ptr(), &mut s) })?;
            Ok::<_, io::Error>(s)
        })();
        match res {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize as u32,
                s.f_namemax as u32,
                s.f_frsize as u32,
            ),
            Err(e) => reply.error(e.into()),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // default_permissions: the kernel has checked already.
        reply.ok();
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        // ENOSYS once tells the kernel to stop asking (it asks on every
        // write for security.capability).
        reply.error(Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: ReplyXattr) {
        reply.error(Errno::ENOSYS);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let res = (|| {
            let path = self.0.child(parent.0, name)?;
            let fd = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .create_new(flags & libc::O_EXCL != 0)
                .mode(mode & !umask & 0o7777)
                .open(&path)?;
            chown_to(&path, req)?;
            let md = fd.metadata()?;
            let id = self.0.register(parent.0, name, &md);
            let file = self.0.file(id)?;
            {
                let mut f = lock(&file.inner);
                if f.fd.is_none() {
                    f.fd = Some(fd);
                }
                f.opens += 1;
            }
            self.0.attr(id)
        })();
        match res {
            Ok(a) => reply.created(&TTL, &a, Generation(0), FileHandle(a.ino.0), OPEN_FLAGS),
            Err(e) => reply.error(e),
        }
    }
}
