//! Secret keys on disk: 32 random bytes, written as 64 hex digits.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A 256-bit secret: a replica's effect-signing key or the event log's
/// shared secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; Key::LEN]);

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("key file {path} does not hold a key: expected {} hex digits, {found}", Key::LEN * 2)]
    Format { path: PathBuf, found: String },
    #[error("cannot write key file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot generate a key: the system's random source failed: {0}")]
    Random(String),
}

impl Key {
    pub const LEN: usize = 32;

    pub const fn from_bytes(bytes: [u8; Self::LEN]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; Self::LEN] {
        &self.0
    }

    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<Self, KeyError> {
        let mut bytes = [0u8; Self::LEN];
        getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self(bytes))
    }

    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(text.trim()).map_err(|found| KeyError::Format {
            path: path.to_path_buf(),
            found,
        })
    }

    /// Writes the key readable by its owner only; refuses to overwrite.
    pub fn save_new(&self, path: &Path) -> Result<(), KeyError> {
        use std::os::unix::fs::OpenOptionsExt;
        let write = || -> io::Result<()> {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)?;
            writeln!(file, "{}", hex::encode(self.0))?;
            file.sync_all()
        };
        write().map_err(|source| KeyError::Write {
            path: path.to_path_buf(),
            source,
        })
    }

    fn parse(text: &str) -> Result<Self, String> {
        if text.len() != Self::LEN * 2 {
            return Err(format!("found {} characters", text.chars().count()));
        }
        let mut bytes = [0u8; Self::LEN];
        hex::decode_to_slice(text, &mut bytes).map_err(|e| format!("found {e}"))?;
        Ok(Self(bytes))
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_then_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        let key = Key::generate().unwrap();
        key.save_new(&path).unwrap();
        assert_eq!(Key::load(&path).unwrap(), key);
        assert!(matches!(key.save_new(&path), Err(KeyError::Write { .. })));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn rejects_wrong_length_and_non_hex() {
        assert!(Key::parse("abcd").unwrap_err().contains("4 characters"));
        let bad = "zz".repeat(Key::LEN);
        assert!(Key::parse(&bad).is_err());
        assert!(!format!("{:?}", Key::from_bytes([7; 32])).contains('7'));
    }
}
