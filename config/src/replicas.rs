//! The replica list, from the file or from `--replicas`: ids, addresses,
//! duplicates, and the files each replica's settings name.

use std::collections::HashMap;
use std::fmt::Display;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use crate::check::Builder;
use crate::diag::{Loc, Reporter};
use crate::files::NamedReplica;
use crate::identity::Role;
use crate::raw::*;
use crate::types::*;

impl Builder<'_, '_> {
    pub(crate) fn replicas_from_file(
        &mut self,
        raw: &[S<RawReplica>],
        defaults: &ReplicaDefaults,
    ) -> Option<Vec<ReplicaConfig>> {
        if raw.is_empty() {
            self.r.error(
                0..0,
                "no replicas",
                Some(
                    "add one `[[replicas]]` table per replica host, each with `id` and `ames`"
                        .into(),
                ),
            );
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        let mut seen = Seen::default();
        for entry in raw {
            let r = entry.get_ref();
            let id = self
                .required(r.id.as_ref(), "id", Some("replicas"), entry.span())
                .and_then(|id| {
                    let n = *id.get_ref();
                    let valid = u32::try_from(n).ok().and_then(ReplicaId::new);
                    if valid.is_none() {
                        self.r.error(
                            id.span(),
                            format!("replica id {n} is out of range"),
                            Some(format!("ids are whole numbers from 1 to {}", u32::MAX)),
                        );
                    }
                    valid
                });
            let ames = self
                .required(r.ames.as_ref(), "ames", Some("replicas"), entry.span())
                .and_then(|a| self.addr(a, "replicas.ames"));
            let (Some(id), Some(ames)) = (id, ames) else {
                ok = false;
                continue;
            };
            let eventlog = self.addr_or_port(
                r.eventlog.as_ref(),
                "replicas.eventlog",
                ames.ip(),
                defaults.eventlog,
            );
            let eventlog_metrics = self.addr_or_port(
                r.eventlog_metrics.as_ref(),
                "replicas.eventlog_metrics",
                ames.ip(),
                defaults.eventlog_metrics,
            );
            let metrics = self.addr_or_port(
                r.metrics.as_ref(),
                "replicas.metrics",
                ames.ip(),
                defaults.metrics,
            );
            let checkpoint = self.addr_or_port(
                r.checkpoint.as_ref(),
                "replicas.checkpoint",
                ames.ip(),
                defaults.checkpoint,
            );
            let files = self.replica_files(id, Some(r), defaults, &Loc::Span(entry.span()));
            let (key_file, tls) = (files.key_file.path.clone(), files.tls.paths());
            let new_id = seen.check(
                self.r,
                "replica id",
                id,
                Loc::Span(r.id.as_ref().map_or_else(|| entry.span(), |v| v.span())),
                "",
            );
            if new_id {
                self.files.replicas.push(files);
            }
            let (Some(eventlog), Some(eventlog_metrics), Some(metrics), Some(checkpoint)) =
                (eventlog, eventlog_metrics, metrics, checkpoint)
            else {
                ok = false;
                continue;
            };
            let at =
                |v: Option<&S<String>>| Loc::Span(v.map_or_else(|| entry.span(), |v| v.span()));
            seen.check(self.r, "Ames address", ames, at(r.ames.as_ref()), "");
            let note = if r.eventlog.is_some() {
                ""
            } else {
                " (the default from the `ames` IP)"
            };
            seen.check(
                self.r,
                "eventlog address",
                eventlog,
                at(r.eventlog.as_ref()),
                note,
            );
            let note = if r.checkpoint.is_some() {
                ""
            } else {
                " (the default from the `ames` IP)"
            };
            seen.check(
                self.r,
                "checkpoint address",
                checkpoint,
                at(r.checkpoint.as_ref()),
                note,
            );
            self.check_own_ports(
                &[
                    (eventlog, "eventlog"),
                    (eventlog_metrics, "eventlog_metrics"),
                    (metrics, "metrics"),
                    (checkpoint, "checkpoint"),
                ],
                at(None),
            );
            out.push(ReplicaConfig {
                id,
                ames,
                eventlog,
                eventlog_metrics,
                metrics,
                checkpoint,
                key_file,
                tls,
            });
        }
        let count_at = Loc::Span(raw[0].span());
        self.finish_replicas(out, ok, count_at)
    }

    pub(crate) fn replicas_from_option(
        &mut self,
        addrs: &[SocketAddr],
        defaults: &ReplicaDefaults,
    ) -> Option<Vec<ReplicaConfig>> {
        const OPT: &str = "--replicas";
        if addrs.is_empty() {
            self.r.error(Loc::Option(OPT), "no replicas", Some("give each replica's Ames address: -r 10.0.1.1:34543,10.0.1.2:34543,10.0.1.3:34543".into()));
            return None;
        }
        let mut seen = Seen::default();
        let mut ok = true;
        let mut out = Vec::new();
        for (i, &ames) in addrs.iter().enumerate() {
            let id = u32::try_from(i + 1).ok().and_then(ReplicaId::new)?;
            if ames.port() == 0 {
                self.r
                    .error(Loc::Option(OPT), format!("`{ames}` has port 0"), None);
                ok = false;
            }
            seen.check(self.r, "Ames address", ames, Loc::Option(OPT), "");
            let files = self.replica_files(id, None, defaults, &Loc::Option(OPT));
            out.push(ReplicaConfig {
                id,
                ames,
                eventlog: SocketAddr::new(ames.ip(), defaults.eventlog),
                eventlog_metrics: SocketAddr::new(ames.ip(), defaults.eventlog_metrics),
                metrics: SocketAddr::new(ames.ip(), defaults.metrics),
                checkpoint: SocketAddr::new(ames.ip(), defaults.checkpoint),
                key_file: files.key_file.path.clone(),
                tls: files.tls.paths(),
            });
            self.files.replicas.push(files);
        }
        self.finish_replicas(out, ok, Loc::Option(OPT))
    }

    /// Replica `id`'s files: as its table names them, else the defaults
    /// (said to be named at `at`).
    fn replica_files(
        &self,
        id: ReplicaId,
        raw: Option<&RawReplica>,
        defaults: &ReplicaDefaults,
        at: &Loc,
    ) -> NamedReplica {
        NamedReplica {
            id,
            key_file: self.named(
                raw.and_then(|r| r.key_file.as_ref()),
                defaults.key_file(id),
                at,
            ),
            tls: self.named_pair(
                raw.and_then(|r| r.tls_cert.as_ref()),
                raw.and_then(|r| r.tls_key.as_ref()),
                default_pair(&defaults.tls_dir, Role::Replica(id)),
                at,
            ),
        }
    }

    fn finish_replicas(
        &mut self,
        mut out: Vec<ReplicaConfig>,
        ok: bool,
        at: Loc,
    ) -> Option<Vec<ReplicaConfig>> {
        let n = out.len();
        if n > MAX_REPLICAS {
            self.r.error(
                at.clone(),
                format!("{n} replicas is more than the {MAX_REPLICAS} supported"),
                Some("3 or 5 replicas is typical: each one more lengthens every commit".into()),
            );
            return None;
        }
        if ok && n.is_multiple_of(2) {
            self.r.warning(
                at,
                format!(
                    "{n} replicas need {} for a quorum and survive {} failure{}, the same as {} replica{}",
                    n / 2 + 1,
                    (n - 1) / 2,
                    if (n - 1) / 2 == 1 { "" } else { "s" },
                    n - 1,
                    if n - 1 == 1 { "" } else { "s" }
                ),
                Some(format!("use an odd number of replicas ({} or {})", n - 1, n + 1)),
            );
        }
        out.sort_by_key(|r| r.id);
        ok.then_some(out)
    }

    fn addr_or_port(
        &mut self,
        value: Option<&S<String>>,
        key: &str,
        ip: IpAddr,
        port: u16,
    ) -> Option<SocketAddr> {
        match value {
            Some(v) => self.addr(v, key),
            None => Some(SocketAddr::new(ip, port)),
        }
    }

    /// One replica host's own TCP listeners must not collide.
    fn check_own_ports(&mut self, listeners: &[(SocketAddr, &str)], at: Loc) {
        for (i, (a, an)) in listeners.iter().enumerate() {
            for (b, bn) in &listeners[i + 1..] {
                if a == b {
                    self.r.error(
                        at.clone(),
                        format!("replica's {an} and {bn} both listen on {a}"),
                        Some("give each its own port".into()),
                    );
                }
            }
        }
    }
}

/// What a replica's settings default to, from the other tables.
pub(crate) struct ReplicaDefaults {
    pub(crate) eventlog: u16,
    pub(crate) eventlog_metrics: u16,
    pub(crate) metrics: u16,
    pub(crate) checkpoint: u16,
    pub(crate) key_dir: PathBuf,
    pub(crate) tls_dir: PathBuf,
}

impl ReplicaDefaults {
    fn key_file(&self, id: ReplicaId) -> PathBuf {
        self.key_dir.join(format!("replica-{id}.key"))
    }
}

/// First sighting of each value, to report duplicates against it.
#[derive(Default)]
struct Seen(HashMap<(&'static str, String), Loc>);

impl Seen {
    /// Reports `value` if a `kind` with the same value was seen before;
    /// `note` says where a defaulted value came from. `true` for a first
    /// sighting.
    pub(crate) fn check(
        &mut self,
        r: &mut Reporter<'_>,
        kind: &'static str,
        value: impl Display,
        at: Loc,
        note: &str,
    ) -> bool {
        let shown = value.to_string();
        match self.0.get(&(kind, shown.clone())) {
            Some(first) => {
                let place = r.describe(first);
                r.error(
                    at,
                    format!("duplicate {kind} {shown}{note}"),
                    Some(format!(
                        "first given at {place}; each replica needs its own"
                    )),
                );
                false
            }
            None => {
                self.0.insert((kind, shown), at);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::load::{KeyCheck, Overrides};
    use crate::types::*;

    const CONFIG: &str = r#"cluster = "c"
[ship]
public = "192.0.2.1:34543"
[[replicas]]
id = 1
ames = "10.0.1.1:34543"
[lb]
interface = "eth0"
[gatekeeper]
listen = "10.0.1.254:4720"
[etcd]
endpoints = ["https://10.0.1.254:2379"]
[replica]
checkpoint_port = 4800
[tls]
dir = "/etc/seguro/certs"
"#;

    #[test]
    fn replicas_from_the_option_take_every_default() {
        let overrides = Overrides {
            replicas: Some(vec![
                "10.9.0.1:1".parse().unwrap(),
                "10.9.0.2:1".parse().unwrap(),
            ]),
            optimism: None,
        };
        let path = Path::new("/etc/seguro/seguro.toml");
        let (config, _) = Config::parse(path, CONFIG, &overrides, KeyCheck::Skip).unwrap();
        let two = &config.replicas[1];
        assert_eq!(two.checkpoint, "10.9.0.2:4800".parse().unwrap());
        assert_eq!(
            two.tls,
            CertPair {
                cert: "/etc/seguro/certs/replica-2.crt".into(),
                key: "/etc/seguro/certs/replica-2.key".into(),
            }
        );
        assert_eq!(two.key_file, Path::new("/etc/seguro/keys/replica-2.key"));
        assert_eq!(config.tls.ca, Path::new("/etc/seguro/certs/ca.crt"));
        // The other new settings' defaults.
        assert_eq!(config.agent.buffer_bytes, 64 << 20);
        assert_eq!(config.agent.max_checkpoint_bytes, 4 << 30);
        assert_eq!(config.eventlog.max_snapshot_bytes, 4 << 30);
        let (from_file, _) =
            Config::parse(path, CONFIG, &Overrides::default(), KeyCheck::Skip).unwrap();
        assert_eq!(
            from_file.replicas[0].checkpoint,
            "10.0.1.1:4800".parse().unwrap()
        );
    }
}
