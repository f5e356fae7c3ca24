//! Durability of a node's files: the record of a storage failure (after a
//! failed fsync nothing written since the last good one can be trusted),
//! making a directory's files durable and dropping their cached pages
//! before they are read at start, and the debug-only switch that skips
//! every fdatasync (a negative control for the power-loss tests).
//!
//! Why a failed fsync is final: after a writeback error Linux marks the
//! pages that failed clean and keeps them in the page cache, so reading
//! the file back returns data that is not on disk, and the next fsync
//! succeeds without writing them. A node that reopened its log in-process
//! would count those entries as durable and acknowledge or vote on them.
//! The node stops instead (as PostgreSQL panics on a failed fsync); at its
//! next start it syncs its files and drops their cached pages before it
//! reads them ([`settle`]), so it recovers from what is really on disk.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::watch;

use crate::metrics as m;

/// A storage operation that failed: from then on nothing this node wrote
/// since its last good fsync can be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// What was being done: `append`, `vote`, `snapshot`...
    pub what: &'static str,
    pub kind: io::ErrorKind,
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} failed: {}", self.what, self.message)
    }
}

/// The first storage failure of one Raft instance's log store and state
/// machine (the first is the cause; what fails after it follows from it).
/// Cloning shares it.
#[derive(Clone, Debug)]
pub(crate) struct Failures(Arc<watch::Sender<Option<Failure>>>);

impl Default for Failures {
    fn default() -> Self {
        Failures(Arc::new(watch::channel(None).0))
    }
}

impl Failures {
    /// Records that `what` failed with `err`, unless a failure is already
    /// recorded; logged at error level and counted either way.
    pub fn report(&self, what: &'static str, err: &io::Error) {
        m::storage_error(what);
        let failure = Failure {
            what,
            kind: err.kind(),
            message: err.to_string(),
        };
        let first = self.0.send_if_modified(|f| {
            let first = f.is_none();
            if first {
                *f = Some(failure.clone());
            }
            first
        });
        if first {
            tracing::error!("event log storage: {failure}");
        }
    }

    /// `err`, reported as `what`'s failure: for `inspect_err`.
    pub fn on(&self, what: &'static str) -> impl Fn(&io::Error) + '_ {
        move |e| self.report(what, e)
    }

    pub fn get(&self) -> Option<Failure> {
        self.0.borrow().clone()
    }

    pub fn watch(&self) -> watch::Receiver<Option<Failure>> {
        self.0.subscribe()
    }
}

/// A file in the node's directory saying its last run stopped on a failed
/// write or fdatasync: the next start may cut the log at the hole that
/// left (`log::cut_after_failure`), and removes it once started.
pub(crate) const FAILED_MARKER: &str = "storage-failed";

/// Leaves [`FAILED_MARKER`] in `node_dir` saying `why`. Best effort: the
/// disk is failing, and the file's name is what counts.
pub(crate) fn mark_failed(node_dir: &Path, why: &str) {
    let path = node_dir.join(FAILED_MARKER);
    let written = std::fs::write(&path, format!("{why}\n"))
        .and_then(|()| File::open(&path).and_then(|f| sync_all(&f)))
        .and_then(|()| sync_dir(node_dir));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), "could not record the storage failure: {e}");
    }
}

/// The environment variable that, in debug builds only, makes the event
/// log skip every fdatasync and fsync of its own (a negative control: the
/// power-loss check must then find losses).
#[cfg(debug_assertions)]
pub(crate) const SKIP_FDATASYNC_VAR: &str = "SEGURO_UNSAFE_SKIP_FDATASYNC";

/// Whether fdatasync is skipped: never in a release build (the switch is
/// compiled out).
#[cfg(not(debug_assertions))]
#[inline(always)]
pub(crate) fn skip_fdatasync() -> bool {
    false
}

/// Whether fdatasync is skipped: in a debug build, if
/// `SEGURO_UNSAFE_SKIP_FDATASYNC=1`. Read once per process, at the node's
/// start (its first fsync), which warns if it is on.
#[cfg(debug_assertions)]
pub(crate) fn skip_fdatasync() -> bool {
    static SKIP: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SKIP.get_or_init(|| {
        let skip = skip_requested(std::env::var_os(SKIP_FDATASYNC_VAR).as_deref());
        if skip {
            tracing::warn!(
                "{SKIP_FDATASYNC_VAR}=1: THE EVENT LOG DOES NOT FDATASYNC. Acknowledged events \
                 are lost on power loss. This debug-only switch is for negative-control tests; \
                 never run a real ship like this"
            );
        }
        skip
    })
}

/// Whether the switch's value asks to skip fdatasync, in this build.
#[cfg(any(debug_assertions, test))]
fn skip_requested(value: Option<&std::ffi::OsStr>) -> bool {
    #[cfg(debug_assertions)]
    {
        value.is_some_and(|v| v == "1")
    }
    #[cfg(not(debug_assertions))]
    {
        let _ = value;
        false
    }
}

/// fdatasync, unless the debug switch skips it.
pub(crate) fn sync_data(file: &File) -> io::Result<()> {
    if skip_fdatasync() {
        return Ok(());
    }
    file.sync_data()
}

/// fsync (data and metadata), unless the debug switch skips it.
pub(crate) fn sync_all(file: &File) -> io::Result<()> {
    if skip_fdatasync() {
        return Ok(());
    }
    file.sync_all()
}

/// Makes `dir`'s entry durable in its parent and its own entries durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    sync_all(&File::open(dir)?)
}

/// Makes every file in `dir` (not below) and `dir` itself durable, then
/// drops the files' pages from the page cache, so that what is read next
/// comes from the disk: pages a failed writeback left cached (and marked
/// clean) would otherwise be read back as if they were on disk. A failed
/// fsync here is an error: the node does not start on files it cannot
/// make durable. A directory that does not exist holds nothing to settle.
pub(crate) fn settle(dir: &Path) -> Result<(), (PathBuf, io::Error)> {
    let at = |p: &Path| {
        let p = p.to_path_buf();
        move |e| (p, e)
    };
    let entries = match std::fs::read_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        other => other.map_err(at(dir))?,
    };
    for entry in entries {
        let path = entry.map_err(at(dir))?.path();
        if !path.is_file() {
            continue;
        }
        let file = File::open(&path).map_err(at(&path))?;
        sync_all(&file).map_err(at(&path))?;
        drop_cache(&file);
    }
    sync_dir(dir).map_err(at(dir))
}

/// Asks the kernel to drop `file`'s clean cached pages (best effort: the
/// fsync before it made every page clean).
fn drop_cache(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: posix_fadvise only reads its integer arguments; the fd is
    // open for as long as `file` lives.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc != 0 {
        tracing::debug!(
            "posix_fadvise(DONTNEED): {}",
            io::Error::from_raw_os_error(rc)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_skip_switch_is_honoured_only_in_debug_builds() {
        let one = Some(std::ffi::OsStr::new("1"));
        assert_eq!(skip_requested(one), cfg!(debug_assertions));
        assert!(!skip_requested(None));
        assert!(!skip_requested(Some(std::ffi::OsStr::new("0"))));
        assert!(!skip_requested(Some(std::ffi::OsStr::new("yes"))));
    }

    #[test]
    fn the_first_failure_is_kept() {
        let f = Failures::default();
        assert_eq!(f.get(), None);
        f.report("append", &io::Error::from_raw_os_error(libc::EIO));
        f.report("vote", &io::Error::other("the flush worker stopped"));
        let got = f.get().unwrap();
        assert_eq!(got.what, "append");
        assert_eq!(got.kind, io::Error::from_raw_os_error(libc::EIO).kind());
    }

    #[test]
    fn settle_syncs_every_file_and_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"x").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        settle(dir.path()).unwrap();
        settle(&dir.path().join("missing")).unwrap();
        let file = dir.path().join("a");
        assert_eq!(settle(&file).unwrap_err().0, file, "not a directory");
    }
}
