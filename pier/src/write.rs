//! Writing a new pier's `.urb/log` that vere loads: the top-level META, and
//! one epoch, 0i0, holding every event, with no snapshot, so that vere
//! replays the ship from its first event.

use std::path::{Path, PathBuf};

use heed::types::Bytes;
use heed::{CommitOrAbort, Database, EnvOpenOptions, IntegerComparator, PutFlags};

use crate::error::PierError;
use crate::layout;
use crate::meta::{Meta, RawMeta};
use crate::read::{Pier, log_dir};

/// Events per write transaction: large enough that commits (each an
/// fdatasync) are rare, small enough to bound LMDB's dirty pages.
const EVENTS_PER_TXN: u64 = 10_000;

/// Address space LMDB reserves for a written environment; the file grows
/// only as data is written. A ship's log can be tens of GiB.
const MAP_SIZE: usize = 1 << 40;

/// What an exported log says besides its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportMeta {
    /// The top-level `.urb/log/data.mdb` META.
    pub top: RawMeta,
    /// Epoch 0i0's META.
    pub epoch: RawMeta,
    /// Epoch 0i0's `epoc.txt`.
    pub epoc_txt: Vec<u8>,
    /// Epoch 0i0's `vere.txt`: the vere version that wrote the epoch.
    pub vere_txt: Vec<u8>,
}

impl ExportMeta {
    /// The files a vere of version `vere` writes for a new pier of ship
    /// `meta` (disk.c `_disk_epoc_zero`, `u3_disk_save_meta`).
    pub fn new(meta: Meta, vere: &str) -> ExportMeta {
        ExportMeta {
            top: meta.encode(),
            epoch: meta.encode(),
            epoc_txt: layout::EPOCH_VERSION.as_bytes().to_vec(),
            vere_txt: vere.as_bytes().to_vec(),
        }
    }

    /// `pier`'s own, exactly as stored: its top-level META, and its first
    /// epoch's META, `epoc.txt` and `vere.txt` (the first epoch's files
    /// describe a log from event 1, which is what an export holds).
    pub fn of(pier: &Pier, vere_default: &str) -> ExportMeta {
        let first = &pier.epochs[0];
        ExportMeta {
            top: pier.raw_meta.clone(),
            epoch: if first.meta.is_empty() {
                pier.raw_meta.clone()
            } else {
                first.meta.clone()
            },
            epoc_txt: first.epoc_txt.clone(),
            vere_txt: first
                .vere_txt
                .clone()
                .unwrap_or_else(|| vere_default.as_bytes().to_vec()),
        }
    }
}

/// Writes `<root>/.urb/log` from `events` (each an event number from 1 on
/// and its value: the 4-byte little-endian mug and the jammed event), and
/// creates `.urb/put` and `.urb/get` as `u3_disk_make` does. The log is
/// built as `.urb/log.partial` and renamed at the end, so a failed export
/// leaves no log vere would take for whole. Returns the last event.
pub fn write_log<E>(
    root: &Path,
    meta: &ExportMeta,
    events: impl Iterator<Item = Result<(u64, Vec<u8>), E>>,
) -> Result<Result<u64, E>, PierError> {
    let log = log_dir(root);
    if log.exists() {
        let empty = std::fs::read_dir(&log)
            .map_err(PierError::io(&log))?
            .next()
            .is_none();
        if !empty {
            return Err(PierError::NotEmpty { path: log });
        }
        std::fs::remove_dir(&log).map_err(PierError::io(&log))?;
    }
    let urb = root.join(".urb");
    for dir in ["put", "get"] {
        std::fs::create_dir_all(urb.join(dir)).map_err(PierError::io(urb.join(dir)))?;
    }
    let partial = urb.join("log.partial");
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(PierError::io(&partial))?;
    }
    let epoch = partial.join(layout::epoch_dir_name(0));
    std::fs::create_dir_all(&epoch).map_err(PierError::io(&epoch))?;
    write_file(&epoch.join("epoc.txt"), &meta.epoc_txt)?;
    write_file(&epoch.join("vere.txt"), &meta.vere_txt)?;

    if let Err(e) = write_env(&partial, &meta.top, None::<std::iter::Empty<_>>)? {
        return Ok(Err(e));
    }
    let last = match write_env(&epoch, &meta.epoch, Some(events))? {
        Ok(last) => last,
        Err(e) => return Ok(Err(e)),
    };
    std::fs::rename(&partial, &log).map_err(PierError::io(&log))?;
    sync_dir(&urb)?;
    Ok(Ok(last))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), PierError> {
    use std::io::Write as _;
    let mut f = std::fs::File::create(path).map_err(PierError::io(path))?;
    f.write_all(bytes).map_err(PierError::io(path))?;
    f.sync_all().map_err(PierError::io(path))
}

fn sync_dir(dir: &Path) -> Result<(), PierError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(PierError::io(dir))
}

/// Creates the LMDB environment in `dir` with META, and with EVENTS if
/// `events` is given: tables as vere creates them (db/lmdb.c: META without
/// flags, EVENTS with MDB_INTEGERKEY, keys the 8-byte event number).
fn write_env<E>(
    dir: &Path,
    meta: &RawMeta,
    events: Option<impl Iterator<Item = Result<(u64, Vec<u8>), E>>>,
) -> Result<Result<u64, E>, PierError> {
    let path: PathBuf = dir.join("data.mdb");
    let mut options = EnvOpenOptions::new();
    options.max_dbs(2).map_size(MAP_SIZE);
    // SAFETY: a new directory of this process's own.
    let env = unsafe { options.open(dir) }.map_err(PierError::lmdb(&path))?;
    let with_events = events.is_some();
    let result = (|| {
        let wtxn = env.write_txn().map_err(PierError::lmdb(&path))?;
        let (meta_db, events_db) = env
            .create_databases_and_commit(wtxn, |dbo, wtxn| {
                let m: Database<Bytes, Bytes> = dbo.create_database(wtxn, Some("META"))?;
                let e = if with_events {
                    Some(
                        dbo.database_options()
                            .types::<Bytes, Bytes>()
                            .key_comparator::<IntegerComparator>()
                            .name("EVENTS")
                            .create(wtxn)?,
                    )
                } else {
                    None
                };
                heed::Result::Ok(CommitOrAbort::<_, ()>::Commit((m, e)))
            })
            .map_err(PierError::lmdb(&path))?
            .unwrap_commit();

        let mut wtxn = env.write_txn().map_err(PierError::lmdb(&path))?;
        for (k, v) in meta {
            meta_db
                .put(&mut wtxn, k, v)
                .map_err(PierError::lmdb(&path))?;
        }
        wtxn.commit().map_err(PierError::lmdb(&path))?;

        let (Some(events), Some(events_db)) = (events, events_db) else {
            return Ok(Ok(0));
        };
        let mut last = 0u64;
        let mut wtxn = env.write_txn().map_err(PierError::lmdb(&path))?;
        for item in events {
            let (n, value) = match item {
                Ok(e) => e,
                Err(e) => return Ok(Err(e)),
            };
            // Keys arrive in order, so each goes at the end of the tree.
            events_db
                .put_with_flags(&mut wtxn, PutFlags::APPEND, &n.to_le_bytes(), &value)
                .map_err(PierError::lmdb(&path))?;
            last = n;
            if n % EVENTS_PER_TXN == 0 {
                wtxn.commit().map_err(PierError::lmdb(&path))?;
                wtxn = env.write_txn().map_err(PierError::lmdb(&path))?;
            }
        }
        wtxn.commit().map_err(PierError::lmdb(&path))?;
        Ok(Ok(last))
    })();
    env.prepare_for_closing().wait();
    // LMDB's lock file is recreated by whoever opens the log next (vere
    // makes its own); it holds no data.
    let _ = std::fs::remove_file(dir.join("lock.mdb"));
    result
}
