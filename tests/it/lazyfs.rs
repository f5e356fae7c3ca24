//! testkit's lazy file system, the power-loss tests' disk: what is fsynced
//! survives a crash, what is not is readable until the crash and gone after
//! it, through renames, truncation, injected EIO and other processes.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::lazyfs::{CrashReport, LazyFs};

/// A backing directory and a mount point in a temporary directory that
/// outlives the mount (declared first, dropped last).
struct Disk {
    _tmp: tempfile::TempDir,
    backing: PathBuf,
    mnt: PathBuf,
}

impl Disk {
    fn new() -> Disk {
        testkit::require_root("mounts a FUSE file system");
        let tmp = tempfile::tempdir().unwrap();
        let backing = tmp.path().join("disk");
        let mnt = tmp.path().join("mnt");
        fs::create_dir(&backing).unwrap();
        fs::create_dir(&mnt).unwrap();
        Disk {
            _tmp: tmp,
            backing,
            mnt,
        }
    }

    fn mount(&self) -> LazyFs {
        LazyFs::mount(&self.backing, &self.mnt).unwrap()
    }

    fn at(&self, name: &str) -> PathBuf {
        self.mnt.join(name)
    }
}

/// Writes `data` at the end of `path` (made if missing); returns the
/// handle, open read-write without O_APPEND so that tests can also write at
/// offsets.
fn append(path: &Path, data: &[u8]) -> File {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    f.write_all_at(data, f.metadata().unwrap().len()).unwrap();
    f
}

#[test]
fn fsynced_data_survives_a_crash_and_unsynced_data_is_lost() {
    let disk = Disk::new();
    let fs = disk.mount();
    append(&disk.at("synced"), b"kept").sync_data().unwrap();
    drop(append(&disk.at("synced"), b" and lost"));
    drop(append(&disk.at("unsynced"), b"never synced"));
    fs::create_dir(disk.at("dir")).unwrap();
    append(&disk.at("dir/deep"), b"deep").sync_all().unwrap();

    // Closed but not synced: readable through the mount, not on the disk.
    assert_eq!(fs::read(disk.at("synced")).unwrap(), b"kept and lost");
    assert_eq!(fs::read(disk.at("unsynced")).unwrap(), b"never synced");
    assert_eq!(fs::metadata(disk.at("unsynced")).unwrap().len(), 12);
    assert_eq!(fs::read(disk.backing.join("synced")).unwrap(), b"kept");
    assert_eq!(fs::read(disk.backing.join("unsynced")).unwrap(), b"");
    let stats = fs.stats();
    assert_eq!(stats.bytes_pending, 9 + 12, "{stats:?}");
    assert_eq!(stats.bytes_persisted, 4 + 4, "{stats:?}");
    assert_eq!(stats.fsyncs, 2, "{stats:?}");

    let report = fs.crash();
    assert_eq!(
        report,
        CrashReport {
            dropped_bytes: 9 + 12,
            dropped_files: 2
        }
    );
    assert_eq!(fs::read(disk.backing.join("synced")).unwrap(), b"kept");

    let _fs = disk.mount();
    assert_eq!(fs::read(disk.at("synced")).unwrap(), b"kept");
    assert_eq!(fs::read(disk.at("unsynced")).unwrap(), b"");
    assert_eq!(fs::read(disk.at("dir/deep")).unwrap(), b"deep");
}

#[test]
fn unsynced_data_moves_with_a_rename_and_is_lost_all_the_same() {
    let disk = Disk::new();
    let fs = disk.mount();
    drop(append(&disk.at("a.tmp"), b"first"));
    fs::rename(disk.at("a.tmp"), disk.at("a")).unwrap();
    assert_eq!(fs::read(disk.at("a")).unwrap(), b"first");
    // Synced under its new name, by a handle opened after the rename.
    File::open(disk.at("a")).unwrap().sync_all().unwrap();

    drop(append(&disk.at("b.tmp"), b"second"));
    fs::rename(disk.at("b.tmp"), disk.at("b")).unwrap();
    // A file renamed over another takes the other's unsynced data away.
    drop(append(&disk.at("c.tmp"), b"third"));
    drop(append(&disk.at("c"), b"overwritten"));
    fs::rename(disk.at("c.tmp"), disk.at("c")).unwrap();
    assert_eq!(fs::read(disk.at("b")).unwrap(), b"second");
    assert_eq!(fs::read(disk.at("c")).unwrap(), b"third");
    assert_eq!(fs.stats().bytes_pending, 6 + 5, "{:?}", fs.stats());

    let report = fs.crash();
    assert_eq!(report.dropped_bytes, 6 + 5, "{report:?}");
    let _fs = disk.mount();
    assert_eq!(fs::read(disk.at("a")).unwrap(), b"first");
    assert_eq!(fs::read(disk.at("b")).unwrap(), b"");
    assert_eq!(fs::read(disk.at("c")).unwrap(), b"");
    assert!(!disk.at("a.tmp").exists() && !disk.at("b.tmp").exists());
}

#[test]
fn truncation_and_unlink_drop_unsynced_data() {
    let disk = Disk::new();
    let fs = disk.mount();
    let f = append(&disk.at("log"), &[7; 100]);
    f.sync_data().unwrap();
    f.write_all_at(&[8; 50], 100).unwrap();
    f.set_len(120).unwrap();
    assert_eq!(fs::metadata(disk.at("log")).unwrap().len(), 120);
    assert_eq!(fs.stats().bytes_pending, 20, "{:?}", fs.stats());
    drop(append(&disk.at("gone"), b"unlinked before any sync"));
    fs::remove_file(disk.at("gone")).unwrap();
    assert_eq!(fs.stats().bytes_pending, 20, "{:?}", fs.stats());
    // Shrinking below what is on the disk reaches the disk.
    f.set_len(110).unwrap();
    let read = fs::read(disk.at("log")).unwrap();
    assert_eq!((read.len(), read[99], read[100]), (110, 7, 8));

    let report = fs.crash();
    assert_eq!(report.dropped_bytes, 10, "{report:?}");
    let _fs = disk.mount();
    let read = fs::read(disk.at("log")).unwrap();
    assert_eq!(read.len(), 110, "the truncation was applied at once");
    assert!(read[..100].iter().all(|&b| b == 7));
    assert!(read[100..].iter().all(|&b| b == 0), "{read:?}");
    assert!(!disk.at("gone").exists());
}

#[test]
fn injected_eio_fails_fsync_and_the_data_does_not_survive() {
    let disk = Disk::new();
    let fs = disk.mount();
    let f = append(&disk.at("log"), b"ok;");
    f.sync_data().unwrap();
    f.write_all_at(b"doomed", 3).unwrap();
    fs.fail_next_fsyncs(1);
    let err = f.sync_data().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    // As on Linux after a writeback error: the pages read back, clean, and
    // the next fsync has nothing left to write, so it succeeds.
    assert_eq!(fs::read(disk.at("log")).unwrap(), b"ok;doomed");
    f.sync_data().unwrap();
    assert_eq!(fs::read(disk.backing.join("log")).unwrap(), b"ok;");
    let stats = fs.stats();
    assert_eq!((stats.failed_fsyncs, stats.bytes_lost), (1, 6), "{stats:?}");

    // Written after the failure and synced: on the disk.
    f.write_all_at(b"later", 9).unwrap();
    fs.set_fsync_error(true);
    assert!(f.sync_data().is_err());
    fs.set_fsync_error(false);
    assert_eq!(fs::read(disk.at("log")).unwrap(), b"ok;doomedlater");
    // Closed by every program, the failed pages are gone from the cache
    // (a restarted program reads what is on the disk, as after Linux
    // evicts them), before any power loss.
    drop(f);
    assert_eq!(fs::read(disk.at("log")).unwrap(), b"ok;");

    let report = fs.crash();
    assert_eq!(report.dropped_bytes, 0, "{report:?}");
    let _fs = disk.mount();
    assert_eq!(fs::read(disk.at("log")).unwrap(), b"ok;");
}

#[test]
fn other_processes_write_and_sync_through_the_mount() {
    let disk = Disk::new();
    let fs = disk.mount();
    let sh = |script: &str| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(&disk.mnt)
            .output()
            .unwrap();
        assert!(out.status.success(), "{script}: {out:?}");
        out.stdout
    };
    sh("printf x > unsynced");
    sh("dd if=/dev/zero of=synced bs=4096 count=4 conv=fdatasync status=none");
    assert_eq!(sh("cat unsynced"), b"x");
    assert_eq!(fs::metadata(disk.at("synced")).unwrap().len(), 16384);

    let report = fs.crash();
    assert_eq!(report.dropped_bytes, 1, "{report:?}");
    let _fs = disk.mount();
    assert_eq!(fs::metadata(disk.at("synced")).unwrap().len(), 16384);
    assert_eq!(fs::read(disk.at("unsynced")).unwrap(), b"");
}

#[test]
fn a_crash_does_not_wait_for_files_left_open() {
    let disk = Disk::new();
    let fs = disk.mount();
    let f = append(&disk.at("open"), b"still open");
    let mut child = Command::new("sleep")
        .arg("60")
        .current_dir(&disk.mnt)
        .spawn()
        .unwrap();
    let report = fs.crash();
    assert_eq!(report.dropped_bytes, 10, "{report:?}");
    let err = f.write_all_at(b"after", 0).unwrap_err();
    assert!(
        matches!(err.raw_os_error(), Some(libc::ENOTCONN | libc::EIO)),
        "{err}"
    );
    drop(f);
    child.kill().unwrap();
    child.wait().unwrap();
    let _fs = disk.mount();
    assert_eq!(fs::read(disk.at("open")).unwrap(), b"");
}

#[test]
fn a_dead_mount_left_at_the_mount_point_is_replaced() {
    let disk = Disk::new();
    let fs = disk.mount();
    append(&disk.at("f"), b"on disk").sync_all().unwrap();
    // What a test killed mid-run leaves: a mount whose server is gone. A
    // forced unmount while a file is open aborts the connection and leaves
    // the mount in place.
    let busy = File::open(disk.at("f")).unwrap();
    let c = std::ffi::CString::new(disk.mnt.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_FORCE) };
    assert_eq!(rc, -1, "the open file keeps the mount busy");
    drop(busy);
    let dead = fs::read_dir(&disk.mnt).unwrap_err();
    assert_eq!(dead.raw_os_error(), Some(libc::ENOTCONN), "{dead}");
    // A killed test runs no destructor.
    std::mem::forget(fs);

    let _fs = disk.mount();
    assert_eq!(fs::read(disk.at("f")).unwrap(), b"on disk");
}

/// The event log's pattern, small appends each followed by fdatasync, at a
/// rate a Raft log under load needs (a bounded loop; the figure is printed).
#[test]
fn small_appends_with_fdatasync_keep_up() {
    let disk = Disk::new();
    let fs = disk.mount();
    let f = append(&disk.at("chunk"), b"");
    let record = [0x5a; 128];
    let started = Instant::now();
    let mut n = 0u64;
    while n < 20_000 && started.elapsed() < Duration::from_secs(3) {
        f.write_all_at(&record, n * 128).unwrap();
        f.sync_data().unwrap();
        n += 1;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    eprintln!("lazyfs: {n} appends of 128 bytes + fdatasync, {rate:.0} per second");
    assert!(rate > 500.0, "{rate:.0} appends+fdatasync per second");
    assert_eq!(fs.stats().bytes_persisted, n * 128);
    assert_eq!(
        fs::metadata(disk.backing.join("chunk")).unwrap().len(),
        n * 128
    );
}
