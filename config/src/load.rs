//! Reading a file into a [`Config`]: parse the TOML, apply overrides,
//! validate, and report every problem at once.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;

use toml::de::DeTable;

use crate::check::Builder;
use crate::diag::{Diagnostics, Reporter};
use crate::files::{CertCheck, FilesOnly};
use crate::raw::{RawConfig, S};
use crate::types::{Config, Optimism, ReplicaId};
use crate::unknown::{EXAMPLE, did_you_mean, keys_of, known_keys, locate};

/// Command-line options that replace parts of the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `-r/--replicas`: the replicas' Ames addresses, in id order from 1;
    /// every other per-replica setting takes its default.
    pub replicas: Option<Vec<SocketAddr>>,
    /// `-o/--optimism`.
    pub optimism: Option<Optimism>,
}

/// Which key and certificate files must be present and readable (and the
/// certificates valid, with [`Config::load_with`]) for the config to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCheck {
    /// Every key and certificate pair the file names, and the CA bundle:
    /// for checking the operator's master copy.
    All,
    /// The edge box's: every replica's envelope key, the edge box's
    /// certificate pair, the CA bundle.
    Edge,
    /// One replica host's: its own envelope key and certificate pair, the
    /// CA bundle.
    Replica(ReplicaId),
    /// The operator's admin commands': the admin pair and the CA bundle.
    Admin,
    /// None: for tools that read only addresses.
    Skip,
}

impl Config {
    /// Reads, validates and returns the config with its warnings, or every
    /// diagnostic (errors and warnings) if it has errors. The certificate
    /// files `keys` asks for must be readable; what they hold is not
    /// checked (see [`Config::load_with`]).
    pub fn load(
        path: &Path,
        overrides: &Overrides,
        keys: KeyCheck,
    ) -> Result<(Config, Diagnostics), Diagnostics> {
        Self::load_with(path, overrides, keys, &FilesOnly)
    }

    /// Like [`Config::load`], checking each certificate pair `keys` asks
    /// for with `certs`; a failure is a diagnostic at the value that named
    /// the file.
    pub fn load_with(
        path: &Path,
        overrides: &Overrides,
        keys: KeyCheck,
        certs: &dyn CertCheck,
    ) -> Result<(Config, Diagnostics), Diagnostics> {
        let source = std::fs::read_to_string(path).map_err(|e| {
            let mut r = Reporter::new(path, "");
            r.error(0..0, format!("cannot read the config file: {e}"), None);
            Diagnostics(r.into_sorted())
        })?;
        Self::check(path, &source, overrides, keys, certs)
    }

    /// Like [`Config::load`], for a file already in memory.
    pub fn parse(
        path: &Path,
        source: &str,
        overrides: &Overrides,
        keys: KeyCheck,
    ) -> Result<(Config, Diagnostics), Diagnostics> {
        Self::check(path, source, overrides, keys, &FilesOnly)
    }

    fn check(
        path: &Path,
        source: &str,
        overrides: &Overrides,
        keys: KeyCheck,
        certs: &dyn CertCheck,
    ) -> Result<(Config, Diagnostics), Diagnostics> {
        let mut r = Reporter::new(path, source);
        let config = read(&mut r, source).and_then(|raw| {
            let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
            Builder {
                r: &mut r,
                base,
                keys,
                certs,
                files: Default::default(),
            }
            .build(path, raw, overrides)
        });
        let found = Diagnostics(r.into_sorted());
        match config {
            Some(config) if !found.has_errors() => Ok((config, found)),
            _ => Err(found),
        }
    }
}

/// Parses the TOML and reports syntax errors, type errors and every unknown key.
fn read(r: &mut Reporter<'_>, source: &str) -> Option<RawConfig> {
    let table = match DeTable::parse(source) {
        Ok(table) => table,
        Err(e) => {
            r.error(e.span().unwrap_or(0..0), first_line(e.message()), None);
            return None;
        }
    };
    let mut unknown = Vec::new();
    let de = toml::de::Deserializer::from(table.clone());
    let raw: Result<RawConfig, _> = serde_ignored::deserialize(de, |p| unknown.push(keys_of(&p)));
    for keys in unknown {
        let (span, table_keys) = locate(&table, &keys);
        let key = keys.last().map(String::as_str).unwrap_or_default();
        let known = known_keys(&table_keys);
        let table_name = if table_keys.is_empty() {
            "at the top level".to_string()
        } else {
            format!("in [{}]", table_keys.join("."))
        };
        let hint = match did_you_mean(key, known) {
            Some(near) => format!("did you mean `{near}`?"),
            None => format!(
                "known keys here: {}; {EXAMPLE} documents every key",
                known.join(", ")
            ),
        };
        r.error(
            span,
            format!("unknown key `{key}` {table_name}"),
            Some(hint),
        );
    }
    match raw {
        Ok(raw) => Some(raw),
        Err(e) => {
            r.error(e.span().unwrap_or(0..0), first_line(e.message()), None);
            None
        }
    }
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or(message).trim().to_string()
}

/// A table of the file, or its defaults (and no span) when the file leaves
/// it out.
pub(crate) struct Table<T> {
    pub(crate) value: T,
    pub(crate) span: Option<Range<usize>>,
}

impl<T: Default> Table<T> {
    pub(crate) fn take(table: Option<S<T>>) -> Self {
        match table {
            Some(t) => Table {
                span: Some(t.span()),
                value: t.into_inner(),
            },
            None => Table {
                value: T::default(),
                span: None,
            },
        }
    }
}
