//! A FUSE file system for power-loss tests, after Jepsen's lazyfs: writes
//! stay in memory until fsync, and [`LazyFs::crash`] drops them.
//!
//! [`LazyFs::mount`] serves a backing directory at a mount point from
//! threads of the calling process. The backing directory stands for the
//! disk: file data reaches it only when a program fsyncs (or fdatasyncs) the
//! file, whole (everything written to the file so far, through any handle).
//! Closing a file does not persist it. Reads see every write, synced or not.
//! Metadata (create, mkdir, rename, unlink, truncate, chmod, times) goes to
//! the backing directory at once, as if every directory were synced: a
//! weaker disk than a real one, which only makes the tests miss the losses
//! a lost directory entry would cause. Unsynced data follows its file
//! through a rename and dies with it on unlink or truncation.
//!
//! [`LazyFs::crash`] is a power loss: every unsynced byte is dropped and the
//! file system unmounted; the backing directory then holds what a disk would
//! after a reboot, ready to be mounted again. [`LazyFs::fail_next_fsyncs`]
//! and [`LazyFs::set_fsync_error`] make fsync fail with EIO the way Linux
//! does after a writeback error: the data stays readable, marked clean, but
//! is never written, and a crash loses it.
//!
//! The kernel's writeback cache is off, so every write reaches these
//! threads; the mount is `allow_other` and `default_permissions`, for
//! processes of other users and namespaces.

mod extents;
mod serve;

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use fuser::{BackgroundSession, MountOption, SessionACL};

use serve::{Fs, Shared};

/// How our mounts' source (the `fsname` option) begins in
/// /proc/self/mountinfo, where the type is plain `fuse`.
const SOURCE_PREFIX: &str = "lazyfs:";

/// Threads reading FUSE requests: a slow fsync must not stop reads of
/// other files.
const THREADS: usize = 4;

/// A mounted lazy file system. Dropping it is a [`crash`](Self::crash)
/// without the report, so a failing test leaves no mount behind.
pub struct LazyFs {
    shared: Arc<Shared>,
    mountpoint: PathBuf,
    /// The FUSE connection's device, to tell our mount from another one at
    /// the same path.
    dev: u64,
    session: Option<BackgroundSession>,
}

/// What a power loss dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrashReport {
    /// Bytes written and never persisted, including those whose fsync
    /// failed.
    pub dropped_bytes: u64,
    /// Files that had such bytes.
    pub dropped_files: u64,
}

/// What the file system has done since it was mounted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// fsync and fdatasync calls on files, failed ones included.
    pub fsyncs: u64,
    /// Those answered with EIO by [`LazyFs::fail_next_fsyncs`] or
    /// [`LazyFs::set_fsync_error`].
    pub failed_fsyncs: u64,
    /// Bytes written to the backing directory by fsyncs.
    pub bytes_persisted: u64,
    /// Bytes written and not yet synced: what a crash now would drop, less
    /// [`bytes_lost`](Self::bytes_lost).
    pub bytes_pending: u64,
    /// Bytes whose fsync failed: readable, never persisted.
    pub bytes_lost: u64,
}

impl LazyFs {
    /// Mounts a lazy view of `backing` at `mountpoint` (an existing
    /// directory). A lazyfs mount left at `mountpoint` by a process that
    /// died is unmounted first.
    pub fn mount(backing: &Path, mountpoint: &Path) -> io::Result<LazyFs> {
        let backing = backing.canonicalize()?;
        let mountpoint = absolute_unresolved(mountpoint)?;
        clear_stale_mount(&mountpoint)?;
        let shared = Arc::new(Shared::new(backing.clone())?);
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            MountOption::FSName(format!("{SOURCE_PREFIX}{}", backing.display())),
            MountOption::DefaultPermissions,
            MountOption::RW,
        ];
        config.acl = SessionACL::All;
        config.n_threads = Some(THREADS);
        config.clone_fd = true;
        let session = fuser::spawn_mount(Fs(shared.clone()), &mountpoint, &config)?;
        let Some(dev) = mounted_dev(&mountpoint) else {
            // fuser unmounts when the session goes.
            drop(session);
            return Err(io::Error::other(format!(
                "{} is not in /proc/self/mountinfo after mounting",
                mountpoint.display()
            )));
        };
        let fs = LazyFs {
            shared,
            mountpoint,
            dev,
            session: Some(session),
        };
        // A stat of the mount point asks our threads: they serve. On
        // failure, dropping `fs` unmounts.
        fs::metadata(&fs.mountpoint)?;
        tracing::info!(backing = %backing.display(), mountpoint = %fs.mountpoint.display(), "lazyfs mounted");
        Ok(fs)
    }

    /// Where it is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// The directory that stands for the disk.
    pub fn backing(&self) -> &Path {
        &self.shared.root
    }

    /// Power loss: drops every unsynced byte, then unmounts, forcibly:
    /// processes still using the mount get ENOTCONN. The backing directory
    /// can then be mounted again.
    pub fn crash(mut self) -> CrashReport {
        let report = self.shared.power_loss();
        self.unmount();
        report
    }

    /// Makes the next `n` fsyncs fail with EIO (on top of any already
    /// due).
    pub fn fail_next_fsyncs(&self, n: u64) {
        self.shared.fail_next.fetch_add(n, Ordering::SeqCst);
    }

    /// Makes every fsync fail with EIO while `on`.
    pub fn set_fsync_error(&self, on: bool) {
        self.shared.fail_all.store(on, Ordering::SeqCst);
    }

    /// Counters since the mount.
    pub fn stats(&self) -> Stats {
        let s = &self.shared;
        Stats {
            fsyncs: s.fsyncs.load(Ordering::Relaxed),
            failed_fsyncs: s.failed_fsyncs.load(Ordering::Relaxed),
            bytes_persisted: s.bytes_persisted.load(Ordering::Relaxed),
            bytes_pending: s.bytes_pending.load(Ordering::Relaxed),
            bytes_lost: s.bytes_lost.load(Ordering::Relaxed),
        }
    }

    fn unmount(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        // MNT_FORCE aborts the FUSE connection (the kernel's umount_begin)
        // even while the mount is busy, which then fails with EBUSY: the
        // lazy detach after it removes the name. Both only while our mount
        // is still the one at that path.
        let path = &self.mountpoint;
        if mounted_dev(path) == Some(self.dev)
            && let Err(e) = umount2(path, libc::MNT_FORCE)
        {
            tracing::debug!(mountpoint = %path.display(), error = %e, "forced unmount of lazyfs left it attached");
        }
        if mounted_dev(path) == Some(self.dev)
            && let Err(e) = umount2(path, libc::MNT_DETACH)
        {
            // Joining the threads would wait for a connection that nothing
            // ends: leave them.
            tracing::error!(mountpoint = %path.display(), error = %e, "could not unmount lazyfs; its threads are left running");
            std::mem::forget(session);
            return;
        }
        // The serving threads end when the aborted connection tells them.
        if let Err(e) = session.join() {
            tracing::warn!(mountpoint = %path.display(), error = %e, "lazyfs threads ended with an error");
        }
        tracing::info!(mountpoint = %path.display(), "lazyfs unmounted");
    }
}

impl Drop for LazyFs {
    fn drop(&mut self) {
        if self.session.is_some() {
            self.shared.power_loss();
            self.unmount();
        }
    }
}

impl std::fmt::Debug for LazyFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyFs")
            .field("backing", &self.shared.root)
            .field("mountpoint", &self.mountpoint)
            .field("stats", &self.stats())
            .finish()
    }
}

/// `path` made absolute through its parent only: the last component may be
/// a dead FUSE mount, which cannot be resolved.
fn absolute_unresolved(path: &Path) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "mount point has no name"))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.canonicalize()?,
        _ => std::env::current_dir()?,
    };
    Ok(parent.join(name))
}

/// Detaches a lazyfs mount at `path` whose server has gone (a test killed
/// mid-run); refuses to mount over one that still serves.
fn clear_stale_mount(path: &Path) -> io::Result<()> {
    while mounted_dev(path).is_some() {
        // opendir always asks the server, where stat may be answered from
        // the kernel's attribute cache.
        match fs::read_dir(path) {
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
                tracing::warn!(mountpoint = %path.display(), "detaching a dead lazyfs mount");
                umount2(path, libc::MNT_DETACH)?;
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} already has a live lazyfs mount", path.display()),
                ));
            }
        }
    }
    Ok(())
}

/// The device of the topmost lazyfs mount at `path`, from
/// /proc/self/mountinfo.
fn mounted_dev(path: &Path) -> Option<u64> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = path.as_os_str().as_bytes();
    info.lines()
        .rev()
        .find_map(|line| {
            // id parent major:minor root mountpoint options... - fstype source
            let mut fields = line.split(' ');
            let dev = fields.nth(2)?;
            let point = fields.nth(1)?;
            let (_, after) = line.split_once(" - ")?;
            let mut after = after.split(' ');
            let fstype = after.next()?;
            let source = after.next()?;
            (fstype.starts_with("fuse")
                && source.starts_with(SOURCE_PREFIX)
                && unescape_mountinfo(point) == want)
                .then_some(dev)
        })
        .and_then(|dev| {
            let (major, minor) = dev.split_once(':')?;
            Some(libc::makedev(major.parse().ok()?, minor.parse().ok()?))
        })
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape_mountinfo(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).and_then(|d| {
            d.iter()
                .all(|c| (b'0'..=b'7').contains(c))
                .then(|| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok())
                .flatten()
        });
        match (b[i], octal) {
            (b'\\', Some(c)) => {
                out.push(c);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

fn umount2(path: &Path, flags: libc::c_int) -> io::Result<()> {
    let c = cstring(path)?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    if unsafe { libc::umount2(c.as_ptr(), flags) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo(r"/tmp/a\040b"), b"/tmp/a b");
        assert_eq!(unescape_mountinfo(r"/tmp/x\\y"), br"/tmp/x\\y");
    }
}
