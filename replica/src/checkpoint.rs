//! The ship's checkpoints on disk: one file, replaced atomically, checked
//! by a hash, so that a restart (or a demotion) resumes from the last one
//! instead of from event 1.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use leadership::EventNum;

const MAGIC: &[u8; 4] = b"SGCK";
const VERSION: u8 = 1;
/// magic, version, event number, length, BLAKE3 of the state.
const HEADER_LEN: usize = 4 + 1 + 8 + 8 + 32;

/// A ship's state as of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub last: EventNum,
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
    #[error("{len} bytes, shorter than the {HEADER_LEN}-byte header")]
    Short { len: usize },
    #[error("wrong magic or version")]
    Magic,
    #[error("holds {state} bytes of state, its header says {header}")]
    Length { state: usize, header: u64 },
    #[error("its state does not match its hash")]
    Hash,
}

impl Checkpoint {
    /// The bytes a file (or a peer's answer) holds.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.state.len());
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.last.get().to_be_bytes());
        out.extend_from_slice(&(self.state.len() as u64).to_be_bytes());
        out.extend_from_slice(blake3::hash(&self.state).as_bytes());
        out.extend_from_slice(&self.state);
        out
    }

    /// Reads [`Checkpoint::encode`]'s bytes, checking length and hash.
    pub fn decode(bytes: &[u8]) -> Result<Checkpoint, CheckpointDecodeError> {
        let header = bytes
            .first_chunk::<HEADER_LEN>()
            .ok_or(CheckpointDecodeError::Short { len: bytes.len() })?;
        if &header[..4] != MAGIC || header[4] != VERSION {
            return Err(CheckpointDecodeError::Magic);
        }
        let last = u64::from_be_bytes(header[5..13].try_into().expect("8 bytes"));
        let len = u64::from_be_bytes(header[13..21].try_into().expect("8 bytes"));
        let state = &bytes[HEADER_LEN..];
        if state.len() as u64 != len {
            return Err(CheckpointDecodeError::Length {
                state: state.len(),
                header: len,
            });
        }
        if blake3::hash(state).as_bytes()[..] != header[21..] {
            return Err(CheckpointDecodeError::Hash);
        }
        Ok(Checkpoint {
            last: EventNum(last),
            state: state.to_vec(),
        })
    }
}

/// Where one agent keeps its latest checkpoint.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    dir: PathBuf,
}

impl CheckpointStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        CheckpointStore { dir: dir.into() }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("checkpoint")
    }

    /// The latest checkpoint, if there is one.
    pub fn load(&self) -> Result<Option<Checkpoint>, CheckpointError> {
        let path = self.path();
        match fs::read(&path) {
            Ok(bytes) => Checkpoint::decode(&bytes)
                .map(Some)
                .map_err(|source| CheckpointError::Corrupt { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("read", &path)(e)),
        }
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
            state: b"seven".to_vec(),
        };
        store.save(&one).unwrap();
        assert_eq!(store.load().unwrap(), Some(one));
        let two = Checkpoint {
            last: EventNum(9),
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
}
