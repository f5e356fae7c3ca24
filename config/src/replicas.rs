//! The replica list, from the file or from `--replicas`: ids, addresses,
//! duplicates, and the key files each host needs.

use std::collections::HashMap;
use std::fmt::Display;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::check::Builder;
use crate::diag::{Loc, Reporter};
use crate::key::Key;
use crate::load::KeyCheck;
use crate::raw::*;
use crate::types::*;

impl Builder<'_, '_> {
    pub(crate) fn replicas_from_file(
        &mut self,
        raw: &[S<RawReplica>],
        ports: &DefaultPorts,
        key_dir: &Path,
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
                ports.eventlog,
            );
            let eventlog_metrics = self.addr_or_port(
                r.eventlog_metrics.as_ref(),
                "replicas.eventlog_metrics",
                ames.ip(),
                ports.eventlog_metrics,
            );
            let metrics = self.addr_or_port(
                r.metrics.as_ref(),
                "replicas.metrics",
                ames.ip(),
                ports.metrics,
            );
            let key_file = r
                .key_file
                .as_ref()
                .map_or_else(|| default_key(key_dir, id), |k| self.base.join(k.get_ref()));
            let (Some(eventlog), Some(eventlog_metrics), Some(metrics)) =
                (eventlog, eventlog_metrics, metrics)
            else {
                ok = false;
                continue;
            };
            let at =
                |v: Option<&S<String>>| Loc::Span(v.map_or_else(|| entry.span(), |v| v.span()));
            seen.check(
                self.r,
                "replica id",
                id,
                Loc::Span(r.id.as_ref().map_or_else(|| entry.span(), |v| v.span())),
                "",
            );
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
            self.check_own_ports(
                &[
                    (eventlog, "eventlog"),
                    (eventlog_metrics, "eventlog_metrics"),
                    (metrics, "metrics"),
                ],
                at(None),
            );
            out.push(ReplicaConfig {
                id,
                ames,
                eventlog,
                eventlog_metrics,
                metrics,
                key_file,
            });
        }
        let count_at = Loc::Span(raw[0].span());
        self.finish_replicas(out, ok, count_at)
    }

    pub(crate) fn replicas_from_option(
        &mut self,
        addrs: &[SocketAddr],
        ports: &DefaultPorts,
        key_dir: &Path,
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
            out.push(ReplicaConfig {
                id,
                ames,
                eventlog: SocketAddr::new(ames.ip(), ports.eventlog),
                eventlog_metrics: SocketAddr::new(ames.ip(), ports.eventlog_metrics),
                metrics: SocketAddr::new(ames.ip(), ports.metrics),
                key_file: default_key(key_dir, id),
            });
        }
        self.finish_replicas(out, ok, Loc::Option(OPT))
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

    pub(crate) fn check_keys(
        &mut self,
        replicas: &[ReplicaConfig],
        eventlog: &EventlogConfig,
        raw: &[S<RawReplica>],
        keys: &RawKeys,
    ) {
        if self.keys == KeyCheck::Skip {
            return;
        }
        let file_at = |id: ReplicaId| -> Loc {
            raw.iter()
                .find(|e| {
                    e.get_ref()
                        .id
                        .as_ref()
                        .is_some_and(|i| *i.get_ref() == i64::from(id.get()))
                })
                .map_or(Loc::Option("--replicas"), |e| {
                    let r = e.get_ref();
                    Loc::Span(r.key_file.as_ref().map_or_else(|| e.span(), |k| k.span()))
                })
        };
        for replica in replicas {
            let wanted = match self.keys {
                KeyCheck::All | KeyCheck::Edge => true,
                KeyCheck::Replica(id) => id == replica.id,
                KeyCheck::Skip => false,
            };
            if wanted && let Err(e) = Key::load(&replica.key_file) {
                self.r.error(
                    file_at(replica.id),
                    format!("replica {}: {e}", replica.id),
                    Some(format!(
                        "create it with `seguro keygen {}`",
                        replica.key_file.display()
                    )),
                );
            }
        }
        if let Err(e) = Key::load(&eventlog.secret_file) {
            let at = keys
                .eventlog
                .as_ref()
                .map_or(Loc::Span(0..0), |k| Loc::Span(k.span()));
            self.r.error(
                at,
                format!("event log secret: {e}"),
                Some(format!(
                    "create it with `seguro keygen {}` and copy it to every host",
                    eventlog.secret_file.display()
                )),
            );
        }
    }
}

pub(crate) struct DefaultPorts {
    pub(crate) eventlog: u16,
    pub(crate) eventlog_metrics: u16,
    pub(crate) metrics: u16,
}

fn default_key(dir: &Path, id: ReplicaId) -> PathBuf {
    dir.join(format!("replica-{id}.key"))
}

/// First sighting of each value, to report duplicates against it.
#[derive(Default)]
struct Seen(HashMap<(&'static str, String), Loc>);

impl Seen {
    /// Reports `value` if a `kind` with the same value was seen before;
    /// `note` says where a defaulted value came from.
    pub(crate) fn check(
        &mut self,
        r: &mut Reporter<'_>,
        kind: &'static str,
        value: impl Display,
        at: Loc,
        note: &str,
    ) {
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
            }
            None => {
                self.0.insert((kind, shown), at);
            }
        }
    }
}
