//! Turning the raw file into a [`Config`]: defaults, ranges, addresses, and
//! a diagnostic for every value that is wrong.

use std::fmt::Display;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::diag::{Loc, Reporter};
use crate::files::{CertCheck, Inventory, Named, NamedPair};
use crate::load::{KeyCheck, Overrides, Table};
use crate::raw::*;
use crate::replicas::ReplicaDefaults;
use crate::types::*;

pub(crate) const DEFAULT_PREFIX: &str = "/seguro";
pub(crate) const DEFAULT_EVENTLOG_PORT: u16 = 4710;
pub(crate) const DEFAULT_EVENTLOG_METRICS_PORT: u16 = 9471;
pub(crate) const DEFAULT_REPLICA_METRICS_PORT: u16 = 9470;
pub(crate) const DEFAULT_CHECKPOINT_PORT: u16 = 4712;
pub(crate) const DEFAULT_LB_METRICS: &str = "127.0.0.1:9460";
pub(crate) const DEFAULT_GATEKEEPER_METRICS: &str = "127.0.0.1:9461";
pub(crate) const MIB: i64 = 1 << 20;
pub(crate) const GIB: i64 = 1 << 30;
pub(crate) const TIB: i64 = 1 << 40;

/// Turns the raw file into a [`Config`], reporting every problem.
pub(crate) struct Builder<'r, 'a> {
    pub(crate) r: &'r mut Reporter<'a>,
    /// Relative paths in the file are relative to its directory.
    pub(crate) base: PathBuf,
    pub(crate) keys: KeyCheck,
    /// What the certificates this host needs are checked with.
    pub(crate) certs: &'r dyn CertCheck,
    /// Every file named so far, checked once the whole file is read.
    pub(crate) files: Inventory,
}

impl Builder<'_, '_> {
    pub(crate) fn build(
        &mut self,
        path: &Path,
        mut raw: RawConfig,
        overrides: &Overrides,
    ) -> Option<Config> {
        let cluster = self.required(raw.cluster.as_ref(), "cluster", None, 0..0).and_then(|c| {
            let ok = !c.get_ref().is_empty()
                && c.get_ref().len() <= 63
                && c.get_ref().bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok {
                self.r.error(
                    c.span(),
                    format!("`{}` is not a cluster name", c.get_ref()),
                    Some("use 1 to 63 lowercase letters, digits and `-`; it names the cluster's etcd keys".into()),
                );
            }
            ok.then(|| c.get_ref().clone())
        });

        let optimism = match overrides.optimism {
            Some(o) => Some(o),
            None => match &raw.optimism {
                Some(o) => self.choice::<Optimism>(o, "optimism"),
                None => Some(Optimism::Quorum),
            },
        };

        let public = match &raw.ship {
            None => {
                self.r.error(
                    0..0,
                    "missing the [ship] table",
                    Some(
                        "add `[ship]` with `public = \"IP:PORT\"`, the ship's public Ames address"
                            .into(),
                    ),
                );
                None
            }
            Some(ship) => self
                .required(
                    ship.get_ref().public.as_ref(),
                    "public",
                    Some("ship"),
                    ship.span(),
                )
                .and_then(|a| self.addr(a, "ship.public")),
        };
        if let Some(public) = public
            && public.ip().is_unspecified()
        {
            let span = raw
                .ship
                .as_ref()
                .and_then(|s| s.get_ref().public.as_ref())
                .map_or(0..0, |p| p.span());
            self.r.error(span, format!("`{public}` is not a public address"), Some("the edge box matches and answers from this exact IP; give the ship's public IP, not 0.0.0.0".into()));
        }

        let keys = Table::take(raw.keys.take()).value;
        let tls = Table::take(raw.tls.take());
        let tls = self.tls(&tls.value, tls.span);
        let etcd = Table::take(raw.etcd.take());
        let etcd = self.etcd(&etcd.value, etcd.span);
        let (eventlog, eventlog_port, eventlog_metrics_port) =
            self.eventlog(&Table::take(raw.eventlog.take()).value, &keys);
        let agent_raw = Table::take(raw.replica.take()).value;
        let replica_metrics_port = self.port(
            agent_raw.metrics_port.as_ref(),
            "replica.metrics_port",
            DEFAULT_REPLICA_METRICS_PORT,
        );
        let checkpoint_port = self.port(
            agent_raw.checkpoint_port.as_ref(),
            "replica.checkpoint_port",
            DEFAULT_CHECKPOINT_PORT,
        );
        let agent = self.agent(&agent_raw);
        let lb = Table::take(raw.lb.take());
        let lb = self.lb(&lb.value, lb.span);
        let gatekeeper = Table::take(raw.gatekeeper.take());
        let gatekeeper = self.gatekeeper(&gatekeeper.value, gatekeeper.span, &tls.dir);

        let replicas = (|| {
            let defaults = ReplicaDefaults {
                eventlog: eventlog_port?,
                eventlog_metrics: eventlog_metrics_port?,
                metrics: replica_metrics_port?,
                checkpoint: checkpoint_port?,
                key_dir: self.key_dir(&keys),
                tls_dir: tls.dir.clone(),
            };
            match &overrides.replicas {
                Some(addrs) => self.replicas_from_option(addrs, &defaults),
                None => self.replicas_from_file(&raw.replicas, &defaults),
            }
        })();

        self.check_files(cluster.as_deref());

        Some(Config {
            source: path.to_path_buf(),
            cluster: cluster?,
            ship: ShipConfig { public: public? },
            optimism: optimism?,
            replicas: replicas?,
            lb: lb?,
            gatekeeper: gatekeeper?,
            etcd: etcd?,
            eventlog: eventlog?,
            agent: agent?,
            tls,
        })
    }

    /// The file `value` names, relative to the config's directory, or
    /// `default`; said to be named at the value, or at `table` for a
    /// default.
    pub(crate) fn named(&self, value: Option<&S<String>>, default: PathBuf, table: &Loc) -> Named {
        match value {
            Some(v) => Named {
                path: self.base.join(v.get_ref()),
                at: Loc::Span(v.span()),
            },
            None => Named {
                path: default,
                at: table.clone(),
            },
        }
    }

    /// A certificate pair from its two values, each defaulting to `default`'s.
    pub(crate) fn named_pair(
        &self,
        cert: Option<&S<String>>,
        key: Option<&S<String>>,
        default: CertPair,
        table: &Loc,
    ) -> NamedPair {
        NamedPair {
            cert: self.named(cert, default.cert, table),
            key: self.named(key, default.key, table),
        }
    }

    /// A required key is absent: point at its table, or at the top of the
    /// file when the table is absent too.
    pub(crate) fn missing(
        &mut self,
        table_at: Option<Range<usize>>,
        key: &str,
        table: &str,
        example: &str,
        meaning: &str,
    ) {
        match table_at {
            Some(span) => self.r.error(
                span,
                format!("missing `{key}` in [{table}]"),
                Some(format!("add `{key} = {example}`: {meaning}")),
            ),
            None => self.r.error(
                0..0,
                format!("missing the [{table}] table"),
                Some(format!(
                    "add `[{table}]` with `{key} = {example}`: {meaning}"
                )),
            ),
        }
    }

    pub(crate) fn required<'v, T>(
        &mut self,
        value: Option<&'v S<T>>,
        key: &str,
        table: Option<&str>,
        table_span: Range<usize>,
    ) -> Option<&'v S<T>> {
        if value.is_none() {
            let (message, hint) = match table {
                Some(t) => (
                    format!("missing `{key}` in [{t}]"),
                    format!("add `{key} = ...` to [{t}]; see the example config"),
                ),
                None => (
                    format!("missing `{key}`"),
                    format!("add `{key} = ...` at the top of the file; see the example config"),
                ),
            };
            self.r.error(table_span, message, Some(hint));
        }
        value
    }

    pub(crate) fn choice<T>(&mut self, value: &S<String>, key: &str) -> Option<T>
    where
        T: FromStr,
        T::Err: Display,
    {
        value
            .get_ref()
            .parse::<T>()
            .map_err(|e| self.r.error(value.span(), format!("{key}: {e}"), None))
            .ok()
    }

    pub(crate) fn addr(&mut self, value: &S<String>, key: &str) -> Option<SocketAddr> {
        match value.get_ref().parse::<SocketAddr>() {
            Ok(a) if a.port() != 0 => Some(a),
            Ok(a) => {
                self.r.error(
                    value.span(),
                    format!("{key}: `{a}` has port 0"),
                    Some("give the port it really uses".into()),
                );
                None
            }
            Err(_) => {
                self.r.error(
                    value.span(),
                    format!("{key}: `{}` is not an IP:PORT address", value.get_ref()),
                    Some("write it like 10.0.0.5:34543 or [2001:db8::5]:34543; host names are not resolved".into()),
                );
                None
            }
        }
    }

    pub(crate) fn addr_or(
        &mut self,
        value: Option<&S<String>>,
        key: &str,
        default: &str,
    ) -> Option<SocketAddr> {
        match value {
            Some(v) => self.addr(v, key),
            None => default.parse().ok(),
        }
    }

    pub(crate) fn int(
        &mut self,
        value: Option<&S<i64>>,
        key: &str,
        range: Range<i64>,
        default: i64,
        unit: &str,
    ) -> Option<i64> {
        let Some(v) = value else { return Some(default) };
        let n = *v.get_ref();
        if range.contains(&n) {
            Some(n)
        } else {
            self.r.error(
                v.span(),
                format!("{key}: {n} is out of range"),
                Some(format!(
                    "expected {} to {}{unit}",
                    range.start,
                    range.end - 1
                )),
            );
            None
        }
    }

    pub(crate) fn port(&mut self, value: Option<&S<i64>>, key: &str, default: u16) -> Option<u16> {
        self.int(value, key, 1..65536, default.into(), "")
            .map(|p| p as u16)
    }

    pub(crate) fn duration(
        &mut self,
        value: Option<&S<String>>,
        key: &str,
        default: Duration,
    ) -> Option<Duration> {
        let Some(v) = value else { return Some(default) };
        humantime::parse_duration(v.get_ref())
            .map_err(|e| {
                self.r.error(
                    v.span(),
                    format!("{key}: `{}` is not a duration ({e})", v.get_ref()),
                    Some("write it like \"2s\", \"500ms\" or \"1m 30s\"".into()),
                )
            })
            .ok()
    }
}
