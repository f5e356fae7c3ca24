//! Unknown keys: where they are in the file and what was probably meant.

use std::ops::Range;

use serde_aux::serde_introspection::serde_introspect;
use toml::de::DeTable;

use crate::raw::*;

/// Where every key is documented, for hints.
pub(crate) const EXAMPLE: &str = "config/examples/seguro.toml";

/// The TOML keys along a serde_ignored path, without the private fields that
/// `Spanned` wraps values in.
pub(crate) fn keys_of(path: &serde_ignored::Path<'_>) -> Vec<String> {
    use serde_ignored::Path as P;
    let mut keys = Vec::new();
    let mut at = path;
    loop {
        at = match at {
            P::Root => break,
            P::Seq { parent, index } => {
                keys.push(index.to_string());
                parent
            }
            P::Map { parent, key } => {
                if !key.starts_with("$__serde_spanned_private") {
                    keys.push(key.clone());
                }
                parent
            }
            P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
                parent
            }
        };
    }
    keys.reverse();
    keys
}

/// The span of the key at `keys`, and the names of the tables it sits in
/// (array indices dropped: `replicas.0.x` is in `[replicas]`).
pub(crate) fn locate(
    root: &toml::Spanned<DeTable<'_>>,
    keys: &[String],
) -> (Range<usize>, Vec<String>) {
    let mut span = root.span();
    let mut table = Some(root.get_ref());
    let mut array: Option<&toml::de::DeArray<'_>> = None;
    let mut names = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let last = i + 1 == keys.len();
        let value = if let Some(items) = array.take() {
            key.parse::<usize>().ok().and_then(|n| items.get(n))
        } else {
            table.and_then(|t| {
                t.iter().find(|(k, _)| k.get_ref() == key).map(|(k, v)| {
                    if last {
                        span = k.span();
                    }
                    v
                })
            })
        };
        let Some(value) = value else { break };
        if !last {
            if key.parse::<usize>().is_err() {
                names.push(key.clone());
            }
            if !names.is_empty() || key.parse::<usize>().is_err() {
                span = value.span();
            }
        }
        table = value.get_ref().as_table();
        array = value.get_ref().as_array();
    }
    (span, names)
}

pub(crate) fn known_keys(table: &[String]) -> &'static [&'static str] {
    let names: Vec<&str> = table.iter().map(String::as_str).collect();
    match names.as_slice() {
        [] => serde_introspect::<RawConfig>(),
        ["ship"] => serde_introspect::<RawShip>(),
        ["replicas"] => serde_introspect::<RawReplica>(),
        ["lb"] => serde_introspect::<RawLb>(),
        ["gatekeeper"] => serde_introspect::<RawGatekeeper>(),
        ["etcd"] => serde_introspect::<RawEtcd>(),
        ["eventlog"] => serde_introspect::<RawEventlog>(),
        ["eventlog", "batch"] => serde_introspect::<RawBatch>(),
        ["replica"] => serde_introspect::<RawReplicaDefaults>(),
        ["keys"] => serde_introspect::<RawKeys>(),
        ["tls"] => serde_introspect::<RawTls>(),
        _ => &[],
    }
}

/// The known key closest to a misspelt one, if any is close.
pub(crate) fn did_you_mean(key: &str, known: &[&'static str]) -> Option<&'static str> {
    known
        .iter()
        .map(|k| (strsim::levenshtein(key, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min()
        .map(|(_, k)| k)
}
