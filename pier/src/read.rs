//! Reading a pier's `.urb/log` read-only: the top-level META, every epoch's
//! files and LMDB, and its events in order, each checked as vere checks it.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use heed::types::Bytes;
use heed::{CommitOrAbort, Database, Env, EnvFlags, EnvOpenOptions};

use crate::error::PierError;
use crate::layout;
use crate::meta::{LOG_VERSION, Meta, RawMeta};

/// One epoch directory of a pier, as found.
#[derive(Debug, Clone)]
pub struct Epoch {
    /// N in `0i<N>`: the last event before this epoch.
    pub number: u64,
    pub dir: PathBuf,
    /// `epoc.txt` as stored.
    pub epoc_txt: Vec<u8>,
    /// `vere.txt` as stored; vere treats a missing one as another version
    /// (disk.c `_disk_vere_diff`), so it is not required.
    pub vere_txt: Option<Vec<u8>>,
    /// The epoch's own META (vere writes the pier's META into each new
    /// epoch: `_disk_epoc_roll`); empty if it has none.
    pub meta: RawMeta,
    /// The first and last event it holds; `None` for an empty epoch (the
    /// newest, just rolled).
    pub events: Option<(u64, u64)>,
}

/// A pier whose log is complete and readable: every check passed.
#[derive(Debug, Clone)]
pub struct Pier {
    pub root: PathBuf,
    /// `.urb/log/data.mdb`'s META, as stored.
    pub raw_meta: RawMeta,
    pub meta: Meta,
    /// Oldest first.
    pub epochs: Vec<Epoch>,
    /// The last event (0 for a pier with no events).
    pub last: u64,
}

/// `<pier>/.urb/log`.
pub fn log_dir(pier: &Path) -> PathBuf {
    pier.join(".urb").join("log")
}

impl Pier {
    /// Opens the pier at `root` and checks all of it: not in use, META
    /// version 3, every epoch with its `epoc.txt` and LMDB, epochs that
    /// meet end to end from event 1, and every event contiguous with a value
    /// vere would read that fits the event log (`limit` bytes framed).
    /// Reads every event once; changes nothing on disk.
    pub fn open(root: &Path, limit: usize) -> Result<Pier, PierError> {
        let log = log_dir(root);
        if !log.is_dir() {
            return Err(PierError::Missing { path: log });
        }
        if let Some(pid) =
            layout::running_holder(root).map_err(PierError::io(layout::lock_path(root)))?
        {
            return Err(PierError::Locked {
                path: layout::lock_path(root),
                pid,
            });
        }

        // disk.c `u3_disk_load`: the top-level LMDB's META carries the log
        // version; it has no EVENTS since the epoch system.
        let top = log.join("data.mdb");
        let raw_meta = with_env(&log, |env| read_meta(env, &top))?;
        let meta = Meta::parse(&raw_meta).map_err(|source| PierError::Meta {
            path: top.clone(),
            source,
        })?;
        if meta.version != LOG_VERSION {
            return Err(PierError::MetaVersion {
                path: top,
                found: meta.version,
            });
        }

        let mut numbers = Vec::new();
        for entry in std::fs::read_dir(&log).map_err(PierError::io(&log))? {
            let entry = entry.map_err(PierError::io(&log))?;
            if let Some(n) = entry.file_name().to_str().and_then(layout::epoch_number) {
                numbers.push(n);
            }
        }
        numbers.sort_unstable();
        match numbers.first() {
            None => return Err(PierError::NoEpochs { path: log }),
            Some(&first) if first != 0 => return Err(PierError::Chopped { path: log, first }),
            Some(_) => {}
        }

        let mut epochs = Vec::with_capacity(numbers.len());
        let mut last = 0;
        for number in numbers {
            let dir = log.join(layout::epoch_dir_name(number));
            if number != last {
                return Err(PierError::EpochBoundary {
                    path: dir,
                    epoch: number,
                    last,
                });
            }
            let epoc_path = dir.join("epoc.txt");
            let epoc_txt = read_required(&epoc_path)?;
            if layout::epoch_version(&epoc_txt).is_none() {
                return Err(PierError::EpochVersion {
                    path: epoc_path,
                    text: String::from_utf8_lossy(layout::trimmed(&epoc_txt)).into_owned(),
                });
            }
            let vere_path = dir.join("vere.txt");
            let vere_txt = match std::fs::read(&vere_path) {
                Ok(t) => Some(t),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(PierError::io(vere_path)(e)),
            };
            let data = dir.join("data.mdb");
            let (epoch_meta, events) = with_env(&dir, |env| {
                let epoch_meta = read_meta(env, &data)?;
                let events = scan(env, &data, number, limit, &mut |_, _| {
                    ControlFlow::Continue(())
                })?;
                Ok((epoch_meta, events))
            })?;
            // A migrated pier's 0i0 keeps its old META (version 1 or 2), so
            // only the identity is compared.
            if let Some(who) = Meta::parse(&epoch_meta).ok().map(|m| m.who)
                && who != meta.who
            {
                return Err(PierError::OtherShip {
                    path: data,
                    found: who,
                    expected: meta.who,
                });
            }
            if let Some((_, l)) = events {
                last = l;
            }
            epochs.push(Epoch {
                number,
                dir,
                epoc_txt,
                vere_txt,
                meta: epoch_meta,
                events,
            });
        }
        Ok(Pier {
            root: root.to_owned(),
            raw_meta,
            meta,
            epochs,
            last,
        })
    }

    /// Calls `visit` with each event from `from` on (its number and its
    /// value: the 4-byte mug and the jammed event) until it breaks. The
    /// same checks as [`Pier::open`] run again: the pier may have changed.
    pub fn walk(
        &self,
        from: u64,
        limit: usize,
        mut visit: impl FnMut(u64, &[u8]) -> ControlFlow<()>,
    ) -> Result<(), PierError> {
        for epoch in &self.epochs {
            if epoch.events.is_none_or(|(_, last)| last < from) {
                continue;
            }
            let data = epoch.dir.join("data.mdb");
            let mut stopped = false;
            with_env(&epoch.dir, |env| {
                scan(env, &data, epoch.number, limit, &mut |n, value| {
                    if n < from {
                        return ControlFlow::Continue(());
                    }
                    let flow = visit(n, value);
                    stopped = flow.is_break();
                    flow
                })
            })?;
            if stopped {
                break;
            }
        }
        Ok(())
    }
}

fn read_required(path: &Path) -> Result<Vec<u8>, PierError> {
    std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => PierError::Missing {
            path: path.to_owned(),
        },
        _ => PierError::io(path)(e),
    })
}

/// Runs `f` on the LMDB environment in `dir`, opened read-only and without
/// LMDB's lock file: nothing on the pier is created or written (the pier is
/// not in use: [`layout::running_holder`]).
fn with_env<T>(dir: &Path, f: impl FnOnce(&Env) -> Result<T, PierError>) -> Result<T, PierError> {
    let data = dir.join("data.mdb");
    if !data.is_file() {
        return Err(PierError::Missing { path: data });
    }
    let mut options = EnvOpenOptions::new();
    options.max_dbs(2);
    // SAFETY: READ_ONLY and NO_LOCK: this process only reads, and no
    // other process writes the pier while it is not locked by vere.
    let env = unsafe {
        options.flags(EnvFlags::READ_ONLY | EnvFlags::NO_LOCK);
        options.open(dir)
    }
    .map_err(PierError::lmdb(&data))?;
    let result = f(&env);
    env.prepare_for_closing().wait();
    result
}

type Table<'e> = Database<'e, Bytes, Bytes>;

/// Opens a named table if it exists. Opened without flags, a table keeps
/// the ones it was created with (EVENTS: MDB_INTEGERKEY, db/lmdb.c).
fn table<'e>(env: &'e Env, name: &str, path: &Path) -> Result<Option<Table<'e>>, PierError> {
    let rtxn = env.read_txn().map_err(PierError::lmdb(path))?;
    let opened = env
        .open_databases_and_commit(rtxn, |dbo, rtxn| {
            dbo.open_database::<Bytes, Bytes>(rtxn, Some(name))
                .map(CommitOrAbort::<_, ()>::Commit)
        })
        .map_err(PierError::lmdb(path))?;
    match opened {
        CommitOrAbort::Commit(t) => Ok(t),
        CommitOrAbort::Abort(()) => Ok(None),
    }
}

/// META's entries (none if the table is absent).
fn read_meta(env: &Env, path: &Path) -> Result<RawMeta, PierError> {
    let Some(meta) = table(env, "META", path)? else {
        return Ok(RawMeta::new());
    };
    let rtxn = env.read_txn().map_err(PierError::lmdb(path))?;
    let mut out = RawMeta::new();
    for entry in meta.iter(&rtxn).map_err(PierError::lmdb(path))? {
        let (k, v) = entry.map_err(PierError::lmdb(path))?;
        out.insert(k.to_vec(), v.to_vec());
    }
    Ok(out)
}

/// Every event of one epoch's EVENTS in key order, checked: 8-byte
/// little-endian keys (`c3_sift_chub`) from `epoch + 1` with no gap
/// (db/lmdb.c `u3_lmdb_read` refuses a gap), values over 4 bytes
/// (disk.c `u3_disk_sift`), and framed no larger than `limit`. Returns
/// the first and last event, if any.
fn scan(
    env: &Env,
    path: &Path,
    epoch: u64,
    limit: usize,
    visit: &mut dyn FnMut(u64, &[u8]) -> ControlFlow<()>,
) -> Result<Option<(u64, u64)>, PierError> {
    let Some(events) = table(env, "EVENTS", path)? else {
        return Ok(None);
    };
    let rtxn = env.read_txn().map_err(PierError::lmdb(path))?;
    let mut range = None;
    let entries = events.iter(&rtxn).map_err(PierError::lmdb(path))?;
    for (expected, entry) in (epoch + 1..).zip(entries) {
        let (key, value) = entry.map_err(PierError::lmdb(path))?;
        let Ok(key) = <[u8; 8]>::try_from(key) else {
            return Err(PierError::BadKey {
                path: path.to_owned(),
                after: expected - 1,
                len: key.len(),
            });
        };
        let event = u64::from_le_bytes(key);
        if event != expected {
            return Err(PierError::Gap {
                path: path.to_owned(),
                event,
                expected,
            });
        }
        if value.len() <= 4 {
            return Err(PierError::ShortValue {
                path: path.to_owned(),
                event,
                len: value.len(),
            });
        }
        let framed = crate::framed_len(value);
        if framed > limit {
            return Err(PierError::TooLarge {
                path: path.to_owned(),
                event,
                size: framed,
                limit,
            });
        }
        range = Some((range.map_or(event, |(first, _)| first), event));
        if visit(event, value).is_break() {
            break;
        }
    }
    Ok(range)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::write::{ExportMeta, write_log};

    const LIMIT: usize = 1 << 20;

    fn meta(version: u32) -> ExportMeta {
        let mut m = ExportMeta::new(
            Meta {
                version: 3,
                who: 0x1_0000,
                fake: false,
                life: 2,
            },
            "4.5",
        );
        m.top.insert(b"version".to_vec(), vec![version as u8]);
        m
    }

    fn value(n: u64) -> Vec<u8> {
        crate::join(n as u32 * 7, format!("jam {n}").as_bytes())
    }

    /// A pier at `dir` whose events are `events` (number, value), in order.
    fn pier(dir: &Path, version: u32, events: Vec<(u64, Vec<u8>)>) {
        write_log(dir, &meta(version), events.into_iter().map(Ok::<_, ()>))
            .unwrap()
            .unwrap();
    }

    fn events(range: std::ops::RangeInclusive<u64>) -> Vec<(u64, Vec<u8>)> {
        range.map(|n| (n, value(n))).collect()
    }

    #[test]
    fn a_written_log_reads_back_event_for_event() {
        let dir = tempfile::tempdir().unwrap();
        pier(dir.path(), 3, events(1..=50));
        let p = Pier::open(dir.path(), LIMIT).unwrap();
        assert_eq!(p.last, 50);
        assert_eq!(p.epochs.len(), 1);
        assert_eq!(p.epochs[0].events, Some((1, 50)));
        assert_eq!(p.epochs[0].epoc_txt, b"2");
        assert_eq!(p.meta.who, 0x1_0000);
        let mut seen = Vec::new();
        p.walk(48, LIMIT, |n, v| {
            seen.push((n, v.to_vec()));
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(seen, events(48..=50));
        assert!(!dir.path().join(".urb/log/0i0/lock.mdb").exists());
    }

    #[test]
    fn an_empty_log_has_no_events() {
        let dir = tempfile::tempdir().unwrap();
        pier(dir.path(), 3, vec![]);
        let p = Pier::open(dir.path(), LIMIT).unwrap();
        assert_eq!((p.last, p.epochs[0].events), (0, None));
    }

    #[test]
    fn a_gap_names_the_file_and_the_event() {
        let dir = tempfile::tempdir().unwrap();
        let mut e = events(1..=10);
        e.remove(4);
        pier(dir.path(), 3, e);
        let err = Pier::open(dir.path(), LIMIT).unwrap_err();
        assert!(
            matches!(
                err,
                PierError::Gap {
                    event: 6,
                    expected: 5,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("0i0/data.mdb: event 6"), "{err}");
    }

    #[test]
    fn a_value_of_only_a_mug_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut e = events(1..=10);
        e[6].1.truncate(4);
        pier(dir.path(), 3, e);
        let err = Pier::open(dir.path(), LIMIT).unwrap_err();
        assert!(
            matches!(
                err,
                PierError::ShortValue {
                    event: 7,
                    len: 4,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn an_event_over_the_logs_limit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        pier(dir.path(), 3, events(1..=3));
        let err = Pier::open(dir.path(), 5).unwrap_err();
        assert!(matches!(err, PierError::TooLarge { event: 1, .. }), "{err}");
    }

    #[test]
    fn meta_version_other_than_3_and_a_missing_epoc_txt_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        pier(dir.path(), 2, events(1..=3));
        let err = Pier::open(dir.path(), LIMIT).unwrap_err();
        assert!(
            matches!(err, PierError::MetaVersion { found: 2, .. }),
            "{err}"
        );

        let dir = tempfile::tempdir().unwrap();
        pier(dir.path(), 3, events(1..=3));
        let epoc = dir.path().join(".urb/log/0i0/epoc.txt");
        std::fs::remove_file(&epoc).unwrap();
        let err = Pier::open(dir.path(), LIMIT).unwrap_err();
        assert!(
            matches!(&err, PierError::Missing { path } if *path == epoc),
            "{err}"
        );
    }

    #[test]
    fn epochs_must_meet_end_to_end_from_event_1() {
        let dir = tempfile::tempdir().unwrap();
        pier(dir.path(), 3, events(1..=10));
        let log = log_dir(dir.path());
        std::fs::rename(log.join("0i0"), log.join("0i4")).unwrap();
        let err = Pier::open(dir.path(), LIMIT).unwrap_err();
        assert!(matches!(err, PierError::Chopped { first: 4, .. }), "{err}");

        let dir = tempfile::tempdir().unwrap();
        pier(dir.path(), 3, events(1..=10));
        let log = log_dir(dir.path());
        std::fs::create_dir(log.join("0i12")).unwrap();
        let err = Pier::open(dir.path(), LIMIT).unwrap_err();
        assert!(
            matches!(
                err,
                PierError::EpochBoundary {
                    epoch: 12,
                    last: 10,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_running_urbit_holding_the_pier_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        pier(dir.path(), 3, events(1..=3));
        let me = std::process::id();
        std::fs::write(layout::lock_path(dir.path()), format!("{me}\n")).unwrap();
        let err = Pier::open(dir.path(), LIMIT).unwrap_err();
        assert!(
            matches!(err, PierError::Locked { pid, .. } if pid == me),
            "{err}"
        );
    }

    #[test]
    fn export_refuses_to_write_over_a_log() {
        let dir = tempfile::tempdir().unwrap();
        pier(dir.path(), 3, events(1..=3));
        let err = write_log(dir.path(), &meta(3), std::iter::empty::<Result<_, ()>>()).unwrap_err();
        assert!(matches!(err, PierError::NotEmpty { .. }), "{err}");
    }
}
