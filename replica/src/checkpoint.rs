//! The ship's checkpoints on disk: one file, replaced atomically, checked
//! by a hash, so that a restart (or a demotion) resumes from the last one
//! instead of from event 1.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use leadership::EventNum;

const MAGIC: &[u8; 4] = b"SGCK";
/// Version 1: magic, version, event number, length, BLAKE3 of the state.
/// Still read (and written for a checkpoint without a time), so that an
/// upgraded replica resumes from the checkpoint it had.
const V1: u8 = 1;
const V1_HEADER_LEN: usize = 4 + 1 + 8 + 8 + 32;
/// Version 2: as version 1, with the last event's time after its number.
const V2: u8 = 2;
const V2_HEADER_LEN: usize = V1_HEADER_LEN + 8;

/// The largest checkpoint a replica reads, from its disk or a peer, unless
/// told otherwise (the config's default, one constant).
pub use config::DEFAULT_MAX_CHECKPOINT_BYTES;

/// A ship's state as of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub last: EventNum,
    /// The time the leader stamped on the last event that carried one, in
    /// microseconds since the Unix epoch: a restarted leader stamps after
    /// it (docs/SPEC.md §8). `None` in a version 1 checkpoint, or before
    /// any event carried a time.
    pub last_us: Option<u64>,
    pub state: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{path} is not a checkpoint: {source}")]
    Corrupt {
        path: PathBuf,
        source: CheckpointDecodeError,
    },
}

/// Why bytes are not a checkpoint [`Checkpoint::encode`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointDecodeError {
    #[error("{len} bytes, shorter than the {need}-byte header")]
    Short { len: usize, need: usize },
    #[error("{len} bytes, over the limit of {limit}")]
    TooLarge { len: u64, limit: u64 },
    #[error("wrong magic: not a Seguro checkpoint")]
    Magic,
    #[error(
        "checkpoint format version {0}, which this agent does not read (it reads versions \
         {V1} and {V2}): was it written by a newer Seguro?"
    )]
    Version(u8),
    #[error("holds {state} bytes of state, its header says {header}")]
    Length { state: usize, header: u64 },
    #[error("its state does not match its hash")]
    Hash,
}

impl Checkpoint {
    /// The bytes a file (or a peer's answer) holds.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(V2_HEADER_LEN + self.state.len());
        out.extend_from_slice(MAGIC);
        out.push(if self.last_us.is_some() { V2 } else { V1 });
        out.extend_from_slice(&self.last.get().to_be_bytes());
        if let Some(us) = self.last_us {
            out.extend_from_slice(&us.to_be_bytes());
        }
        out.extend_from_slice(&(self.state.len() as u64).to_be_bytes());
        out.extend_from_slice(blake3::hash(&self.state).as_bytes());
        out.extend_from_slice(&self.state);
        out
    }

    /// Reads [`Checkpoint::encode`]'s bytes, checking length and hash, and
    /// refusing more than `max_bytes` of them. Never panics, whatever the
    /// bytes.
    pub fn decode(bytes: &[u8], max_bytes: u64) -> Result<Checkpoint, CheckpointDecodeError> {
        let len = bytes.len() as u64;
        if len > max_bytes {
            return Err(CheckpointDecodeError::TooLarge {
                len,
                limit: max_bytes,
            });
        }
        let short = |need| CheckpointDecodeError::Short {
            len: bytes.len(),
            need,
        };
        let (magic, rest) = bytes.split_first_chunk::<4>().ok_or(short(V1_HEADER_LEN))?;
        if magic != MAGIC {
            return Err(CheckpointDecodeError::Magic);
        }
        let ([version], rest) = rest.split_first_chunk::<1>().ok_or(short(V1_HEADER_LEN))?;
        let need = match *version {
            V1 => V1_HEADER_LEN,
            V2 => V2_HEADER_LEN,
            other => return Err(CheckpointDecodeError::Version(other)),
        };
        let (last, rest) = rest.split_first_chunk::<8>().ok_or(short(need))?;
        let (last_us, rest) = if *version == V2 {
            let (us, rest) = rest.split_first_chunk::<8>().ok_or(short(need))?;
            (Some(u64::from_be_bytes(*us)), rest)
        } else {
            (None, rest)
        };
        let (len, rest) = rest.split_first_chunk::<8>().ok_or(short(need))?;
        let (hash, state) = rest.split_first_chunk::<32>().ok_or(short(need))?;
        let len = u64::from_be_bytes(*len);
        if state.len() as u64 != len {
            return Err(CheckpointDecodeError::Length {
                state: state.len(),
                header: len,
            });
        }
        if blake3::hash(state).as_bytes() != hash {
            return Err(CheckpointDecodeError::Hash);
        }
        Ok(Checkpoint {
            last: EventNum(u64::from_be_bytes(*last)),
            last_us,
            state: state.to_vec(),
        })
    }
}

/// Where one agent keeps its latest checkpoint, and how large a checkpoint
/// it takes (from its disk or from a peer).
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    dir: PathBuf,
    max_bytes: u64,
}

impl CheckpointStore {
    /// A store in `dir` that takes checkpoints up to
    /// [`DEFAULT_MAX_CHECKPOINT_BYTES`].
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        CheckpointStore {
            dir: dir.into(),
            max_bytes: DEFAULT_MAX_CHECKPOINT_BYTES,
        }
    }

    /// The same store, taking checkpoints up to `max_bytes`.
    pub fn with_max_bytes(self, max_bytes: u64) -> Self {
        CheckpointStore { max_bytes, ..self }
    }

    /// The largest checkpoint this store takes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    fn path(&self) -> PathBuf {
        self.dir.join("checkpoint")
    }

    /// The latest checkpoint, if there is one.
    pub fn load(&self) -> Result<Option<Checkpoint>, CheckpointError> {
        let path = self.path();
        let file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("open", &path)(e)),
        };
        // Read no more than the limit (and one byte to tell it is over).
        let mut bytes = Vec::new();
        file.take(self.max_bytes.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(io_error("read", &path))?;
        Checkpoint::decode(&bytes, self.max_bytes)
            .map(Some)
            .map_err(|source| CheckpointError::Corrupt { path, source })
    }

    /// Replaces the checkpoint durably: a crash leaves the old one or the
    /// new one, never a mix.
    pub fn save(&self, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        fs::create_dir_all(&self.dir).map_err(io_error("create", &self.dir))?;
        let tmp = self.dir.join("checkpoint.tmp");
        let mut file = fs::File::create(&tmp).map_err(io_error("create", &tmp))?;
        file.write_all(&checkpoint.encode())
            .map_err(io_error("write", &tmp))?;
        file.sync_data().map_err(io_error("fdatasync", &tmp))?;
        let path = self.path();
        fs::rename(&tmp, &path).map_err(io_error("rename into", &path))?;
        // The rename is durable only once the directory is.
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error("fsync", &self.dir))?;
        Ok(())
    }
}

fn io_error(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CheckpointError {
    let path = path.to_path_buf();
    move |source| CheckpointError::Io { what, path, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_loads_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(dir.path().join("a"));
        assert_eq!(store.load().unwrap(), None);
        let one = Checkpoint {
            last: EventNum(7),
            last_us: Some(1_700_000_000_000_007),
            state: b"seven".to_vec(),
        };
        store.save(&one).unwrap();
        assert_eq!(store.load().unwrap(), Some(one));
        let two = Checkpoint {
            last: EventNum(9),
            last_us: None,
            state: vec![],
        };
        store.save(&two).unwrap();
        assert_eq!(store.load().unwrap(), Some(two));
    }

    #[test]
    fn damage_is_refused_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(dir.path());
        store
            .save(&Checkpoint {
                last: EventNum(1),
                last_us: Some(5),
                state: b"state".to_vec(),
            })
            .unwrap();
        let path = dir.path().join("checkpoint");
        let mut bytes = fs::read(&path).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        fs::write(&path, &bytes).unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(err.contains("checkpoint") && err.contains("hash"), "{err}");
        fs::write(&path, &bytes[..10]).unwrap();
        assert!(store.load().is_err());
    }

    #[test]
    fn a_checkpoint_over_the_limit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let one = Checkpoint {
            last: EventNum(3),
            last_us: Some(3),
            state: vec![7; 100],
        };
        let bytes = one.encode();
        let len = bytes.len() as u64;
        assert_eq!(Checkpoint::decode(&bytes, len), Ok(one.clone()));
        assert_eq!(
            Checkpoint::decode(&bytes, len - 1),
            Err(CheckpointDecodeError::TooLarge {
                len,
                limit: len - 1
            })
        );
        // A store reads no more than its limit from disk.
        let store = CheckpointStore::new(dir.path());
        store.save(&one).unwrap();
        assert_eq!(store.load().unwrap(), Some(one.clone()));
        let small = store.with_max_bytes(len - 1);
        let err = small.load().unwrap_err();
        assert!(
            matches!(
                err,
                CheckpointError::Corrupt {
                    source: CheckpointDecodeError::TooLarge { len: l, .. },
                    ..
                } if l == len
            ),
            "{err}"
        );
    }

    #[test]
    fn malformed_checkpoints_are_refused_not_panicked_on() {
        let good = Checkpoint {
            last: EventNum(1),
            last_us: Some(9),
            state: b"state".to_vec(),
        }
        .encode();
        let limit = DEFAULT_MAX_CHECKPOINT_BYTES;
        for cut in 0..good.len() {
            assert!(Checkpoint::decode(&good[..cut], limit).is_err(), "{cut}");
        }
        let mut huge_length = good.clone();
        huge_length[21..29].copy_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(
            Checkpoint::decode(&huge_length, limit),
            Err(CheckpointDecodeError::Length {
                state: 5,
                header: u64::MAX
            })
        );
        let mut bad_magic = good.clone();
        bad_magic[0] = b'X';
        assert_eq!(
            Checkpoint::decode(&bad_magic, limit),
            Err(CheckpointDecodeError::Magic)
        );
        let mut newer = good.clone();
        newer[4] = 3;
        let err = Checkpoint::decode(&newer, limit).unwrap_err();
        assert_eq!(err, CheckpointDecodeError::Version(3));
        assert!(err.to_string().contains("version 3"), "{err}");
    }

    #[test]
    fn a_version_1_checkpoint_is_still_read() {
        // As a replica before version 2 wrote it: no time.
        let state = b"old state";
        let mut v1 = b"SGCK\x01".to_vec();
        v1.extend_from_slice(&42u64.to_be_bytes());
        v1.extend_from_slice(&(state.len() as u64).to_be_bytes());
        v1.extend_from_slice(blake3::hash(state).as_bytes());
        v1.extend_from_slice(state);
        let read = Checkpoint::decode(&v1, DEFAULT_MAX_CHECKPOINT_BYTES).unwrap();
        assert_eq!(
            read,
            Checkpoint {
                last: EventNum(42),
                last_us: None,
                state: state.to_vec()
            }
        );
        assert_eq!(read.encode(), v1);
        let timed = Checkpoint {
            last_us: Some(7),
            ..read
        };
        assert_eq!(timed.encode()[4], 2);
        assert_eq!(
            Checkpoint::decode(&timed.encode(), DEFAULT_MAX_CHECKPOINT_BYTES),
            Ok(timed)
        );
    }
}
