//! The files of a pier's `.urb/log` besides LMDB: epoch directory names,
//! `epoc.txt`, `vere.txt`, and the pier's `.vere.lock`.

use std::io;
use std::path::{Path, PathBuf};

/// The epoch versions vere loads (pkg/noun/version.h: `U3E_VER1`
/// north/south snapshots, `U3E_VER2` image.bin; disk.c `_disk_epoc_load`
/// refuses anything outside 1..=2).
pub const EPOCH_VERSIONS: std::ops::RangeInclusive<u32> = 1..=2;

/// What vere writes in a new epoch's `epoc.txt` (`U3E_VERLAT`, printed
/// with "%d" and no newline: disk.c `_disk_epoc_zero`).
pub const EPOCH_VERSION: &str = "2";

/// The epoch number of a directory named `0i<N>`, N the last event before
/// the epoch (disk.c `u3_disk_epoc_last` scans `0i%SCNu64` and requires
/// the name to end there; `_disk_epoc_roll` names a new epoch after the
/// last event). Only plain decimal digits are taken: vere never writes a
/// sign or a space, which sscanf would also accept.
pub fn epoch_number(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("0i")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The directory name of epoch `n`.
pub fn epoch_dir_name(n: u64) -> String {
    format!("0i{n}")
}

/// The text of an epoch's `epoc.txt` or `vere.txt` as vere reads it
/// (disk.c `_disk_epoc_meta`: trailing whitespace trimmed).
pub fn trimmed(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    &bytes[..end]
}

/// The epoch version `epoc.txt` holds, if vere would load it
/// (`_disk_epoc_load`: one unsigned decimal and nothing after it).
pub fn epoch_version(bytes: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(trimmed(bytes)).ok()?;
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|v| EPOCH_VERSIONS.contains(v))
}

/// The pier's lock file (disk.c `_disk_lock`: `<pier>/.vere.lock`).
pub fn lock_path(pier: &Path) -> PathBuf {
    pier.join(".vere.lock")
}

/// The process that holds the pier, if one is running. vere writes its
/// pid and a newline into `.vere.lock` while it runs and deletes the file
/// when it exits cleanly (`_disk_acquire`, `_disk_release`); a file left by
/// a crash names a process that is gone.
pub fn running_holder(pier: &Path) -> io::Result<Option<u32>> {
    let text = match std::fs::read(lock_path(pier)) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some(pid) = std::str::from_utf8(trimmed(&text))
        .ok()
        .and_then(|t| t.parse::<u32>().ok())
        .filter(|&p| p > 0 && p <= i32::MAX as u32)
    else {
        // vere itself only warns "lockfile is corrupt" and relies on its
        // fcntl lock; without a pid there is no process to ask about.
        return Ok(None);
    };
    Ok(is_alive(pid).then_some(pid))
}

/// Whether process `pid` exists (signal 0 checks without sending; EPERM
/// means it exists under another user).
fn is_alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks for the process.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_names_are_0i_and_decimal_digits() {
        assert_eq!(epoch_number("0i0"), Some(0));
        assert_eq!(epoch_number("0i123456"), Some(123_456));
        assert_eq!(epoch_number("0i"), None);
        assert_eq!(epoch_number("0i+5"), None);
        assert_eq!(epoch_number("0i5x"), None);
        assert_eq!(epoch_number("data.mdb"), None);
        assert_eq!(epoch_number("1i5"), None);
        assert_eq!(epoch_number(&epoch_dir_name(77)), Some(77));
    }

    #[test]
    fn epoch_versions_are_trimmed_and_bounded() {
        assert_eq!(epoch_version(b"2"), Some(2));
        assert_eq!(epoch_version(b"1\n"), Some(1));
        assert_eq!(epoch_version(b"3"), None, "newer than vere loads");
        assert_eq!(epoch_version(b"0"), None);
        assert_eq!(epoch_version(b""), None);
        assert_eq!(epoch_version(b"2 x"), None);
        assert_eq!(trimmed(b"4.5\r\n "), b"4.5");
    }

    #[test]
    fn a_lock_file_names_a_running_or_a_gone_process() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(running_holder(dir.path()).unwrap(), None, "no lock file");
        let me = std::process::id();
        std::fs::write(lock_path(dir.path()), format!("{me}\n")).unwrap();
        assert_eq!(running_holder(dir.path()).unwrap(), Some(me));
        // A child that has exited and been reaped: its pid is free.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        std::fs::write(lock_path(dir.path()), format!("{gone}\n")).unwrap();
        assert_eq!(running_holder(dir.path()).unwrap(), None);
        std::fs::write(lock_path(dir.path()), "garbage").unwrap();
        assert_eq!(running_holder(dir.path()).unwrap(), None);
    }
}
