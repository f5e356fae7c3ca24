//! Why a pier cannot be read or written: each error names the file, and the
//! event where there is one.

use std::io;
use std::path::PathBuf;

use crate::meta::MetaError;

#[derive(Debug, thiserror::Error)]
pub enum PierError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: LMDB: {source}")]
    Lmdb {
        path: PathBuf,
        #[source]
        source: heed::Error,
    },
    #[error("{path}: missing")]
    Missing { path: PathBuf },
    #[error(
        "{path}: the pier is in use by process {pid} (a running urbit holds .vere.lock); stop the \
         ship before importing"
    )]
    Locked { path: PathBuf, pid: u32 },
    #[error("{path}: {source}")]
    Meta {
        path: PathBuf,
        #[source]
        source: MetaError,
    },
    #[error(
        "{path}: META version is {found}, not 3: vere's epoch log (a pier vere has not migrated \
         yet; run it once with a current vere)"
    )]
    MetaVersion { path: PathBuf, found: u32 },
    #[error("{path}: META says ship 0x{found:x}, but .urb/log/data.mdb says 0x{expected:x}")]
    OtherShip {
        path: PathBuf,
        found: u128,
        expected: u128,
    },
    #[error("{path}: `{text}` is not an epoch version vere loads (1 or 2)")]
    EpochVersion { path: PathBuf, text: String },
    #[error("{path}: no epoch directories (0i<N>)")]
    NoEpochs { path: PathBuf },
    #[error(
        "{path}: the oldest epoch is 0i{first}: events 1 to {first} were deleted (`urbit chop`), \
         and Seguro replays a ship from its first event"
    )]
    Chopped { path: PathBuf, first: u64 },
    #[error(
        "{path}: epoch 0i{epoch} starts after event {epoch}, but the epochs before it end at \
         event {last}"
    )]
    EpochBoundary {
        path: PathBuf,
        epoch: u64,
        last: u64,
    },
    #[error("{path}: no EVENTS table")]
    NoEvents { path: PathBuf },
    #[error("{path}: event {event}: a gap in EVENTS: the next event should be {expected}")]
    Gap {
        path: PathBuf,
        event: u64,
        expected: u64,
    },
    #[error("{path}: EVENTS key of {len} bytes after event {after}: keys are 8-byte event numbers")]
    BadKey {
        path: PathBuf,
        after: u64,
        len: usize,
    },
    #[error(
        "{path}: event {event}: its value is {len} bytes; vere's are a 4-byte mug and a jammed \
         event, more than 4 (disk.c u3_disk_sift)"
    )]
    ShortValue {
        path: PathBuf,
        event: u64,
        len: usize,
    },
    #[error(
        "{path}: event {event} is {size} bytes, over the event log's limit of {limit} (eventlog.max_event_bytes)"
    )]
    TooLarge {
        path: PathBuf,
        event: u64,
        size: usize,
        limit: usize,
    },
    #[error("{path}: exists and is not empty; export writes a new pier's log")]
    NotEmpty { path: PathBuf },
}

impl PierError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> PierError {
        let path = path.into();
        move |source| PierError::Io { path, source }
    }

    pub(crate) fn lmdb(path: impl Into<PathBuf>) -> impl FnOnce(heed::Error) -> PierError {
        let path = path.into();
        move |source| PierError::Lmdb { path, source }
    }
}
