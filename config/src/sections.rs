//! The settings tables: `[etcd]`, `[eventlog]`, `[replica]`, `[lb]`,
//! `[gatekeeper]` and `[tls]`.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::check::*;
use crate::diag::Loc;
use crate::identity::Role;
use crate::raw::*;
use crate::types::*;

/// Why etcd's endpoints must be `https://`, for hints.
const ETCD_OVER_TLS: &str =
    "etcd is reached over TLS with client certificates: use https:// and see docs/DEPLOY.md";

impl Builder<'_, '_> {
    pub(crate) fn etcd(&mut self, raw: &RawEtcd, at: Option<Range<usize>>) -> Option<EtcdConfig> {
        let endpoints = match &raw.endpoints {
            None => {
                self.missing(
                    at,
                    "endpoints",
                    "etcd",
                    "[\"https://10.0.0.1:2379\"]",
                    "etcd's client URLs",
                );
                None
            }
            Some(list) if list.get_ref().is_empty() => {
                self.r.error(
                    list.span(),
                    "etcd.endpoints is empty",
                    Some("list at least one `https://host:port`".into()),
                );
                None
            }
            Some(list) => {
                let mut ok = true;
                for e in list.get_ref() {
                    if let Err(why) = check_endpoint(e.get_ref()) {
                        let hint = match why {
                            EndpointError::NotHttps => ETCD_OVER_TLS.into(),
                            _ => "write it like \"https://10.0.0.1:2379\"".into(),
                        };
                        self.r.error(
                            e.span(),
                            format!("etcd.endpoints: `{}` {why}", e.get_ref()),
                            Some(hint),
                        );
                        ok = false;
                    }
                }
                ok.then(|| list.get_ref().iter().map(|e| e.get_ref().clone()).collect())
            }
        };

        let lease_ttl = self.duration(raw.lease_ttl.as_ref(), "etcd.lease_ttl", MIN_LEASE_TTL).and_then(|ttl| {
            let span = raw.lease_ttl.as_ref().map_or(0..0, |t| t.span());
            if ttl < MIN_LEASE_TTL {
                self.r.error(
                    span,
                    format!("etcd.lease_ttl: {} is below etcd's minimum lease TTL of {}", humantime::format_duration(ttl), humantime::format_duration(MIN_LEASE_TTL)),
                    Some("etcd grants at least 1.5 election timeouts (2 s with default settings); use \"2s\" or more".into()),
                );
                None
            } else if ttl.subsec_nanos() != 0 {
                self.r.error(span, format!("etcd.lease_ttl: {} is not a whole number of seconds", humantime::format_duration(ttl)), Some("etcd leases are granted in whole seconds".into()));
                None
            } else {
                Some(ttl)
            }
        });

        let prefix = match &raw.prefix {
            None => Some(DEFAULT_PREFIX.to_string()),
            Some(p) => {
                let s = p.get_ref();
                let ok = s.starts_with('/')
                    && s.len() > 1
                    && !s.ends_with('/')
                    && !s.chars().any(char::is_whitespace);
                if !ok {
                    self.r.error(
                        p.span(),
                        format!("etcd.prefix: `{s}` is not a key prefix"),
                        Some("start with `/`, no trailing `/`, no spaces; e.g. \"/seguro\"".into()),
                    );
                }
                ok.then(|| s.clone())
            }
        };
        Some(EtcdConfig {
            endpoints: endpoints?,
            lease_ttl: lease_ttl?,
            prefix: prefix?,
        })
    }

    pub(crate) fn eventlog(
        &mut self,
        raw: &RawEventlog,
        keys: &RawKeys,
    ) -> (Option<EventlogConfig>, Option<u16>, Option<u16>) {
        let data_dir = raw.data_dir.as_ref().map_or_else(
            || PathBuf::from("/var/lib/seguro/eventlog"),
            |d| self.base.join(d.get_ref()),
        );
        let port = self.port(raw.port.as_ref(), "eventlog.port", DEFAULT_EVENTLOG_PORT);
        let metrics_port = self.port(
            raw.metrics_port.as_ref(),
            "eventlog.metrics_port",
            DEFAULT_EVENTLOG_METRICS_PORT,
        );
        let max_event_bytes = self.int(
            raw.max_event_bytes.as_ref(),
            "eventlog.max_event_bytes",
            1..64 * MIB + 1,
            MIB,
            " bytes",
        );
        let max_snapshot_bytes = self.int(
            raw.max_snapshot_bytes.as_ref(),
            "eventlog.max_snapshot_bytes",
            MIB..TIB + 1,
            4 * GIB,
            " bytes",
        );
        let max_events = self.int(
            raw.batch.max_events.as_ref(),
            "eventlog.batch.max_events",
            1..65537,
            256,
            " events",
        );
        let max_bytes = self.int(
            raw.batch.max_bytes.as_ref(),
            "eventlog.batch.max_bytes",
            1..256 * MIB + 1,
            4 * MIB,
            " bytes",
        );
        let max_linger = self.duration(
            raw.batch.max_linger.as_ref(),
            "eventlog.batch.max_linger",
            Duration::from_millis(1),
        );
        if let (Some(linger), Some(v)) = (max_linger, &raw.batch.max_linger)
            && linger > Duration::from_secs(1)
        {
            self.r.error(
                v.span(),
                format!(
                    "eventlog.batch.max_linger: {} is too long",
                    humantime::format_duration(linger)
                ),
                Some(
                    "every append waits up to this long; keep it at or under 1s (1ms is typical)"
                        .into(),
                ),
            );
        }
        if let (Some(event), Some(batch)) = (max_event_bytes, max_bytes)
            && batch < event
        {
            let span = raw
                .batch
                .max_bytes
                .as_ref()
                .or(raw.max_event_bytes.as_ref())
                .map_or(0..0, |v| v.span());
            self.r.error(span, format!("eventlog.batch.max_bytes ({batch}) is smaller than eventlog.max_event_bytes ({event})"), Some("a batch must fit at least one event of the largest size".into()));
        }
        if let Some(old) = &keys.eventlog {
            self.r.error(
                old.span(),
                "keys.eventlog: the event log's shared secret is gone".to_owned(),
                Some(
                    "every part now proves who it is with its TLS certificate ([tls]; \
                     `seguro certs`, docs/DEPLOY.md): remove this line and the key file"
                        .into(),
                ),
            );
        }
        let config = (|| {
            Some(EventlogConfig {
                data_dir,
                max_event_bytes: max_event_bytes? as usize,
                batch: BatchLimits {
                    max_events: max_events? as usize,
                    max_bytes: max_bytes? as usize,
                    max_linger: max_linger?,
                },
                max_snapshot_bytes: max_snapshot_bytes? as u64,
            })
        })();
        (config, port, metrics_port)
    }

    pub(crate) fn key_dir(&self, keys: &RawKeys) -> PathBuf {
        keys.dir
            .as_ref()
            .map_or_else(|| self.base.join("keys"), |d| self.base.join(d.get_ref()))
    }

    pub(crate) fn agent(&mut self, raw: &RawReplicaDefaults) -> Option<AgentConfig> {
        let max_run_ahead = self.int(
            raw.max_run_ahead.as_ref(),
            "replica.max_run_ahead",
            1..(1 << 20) + 1,
            4096,
            " events",
        );
        let buffer_packets = self.int(
            raw.buffer_packets.as_ref(),
            "replica.buffer_packets",
            1..(1 << 24) + 1,
            65536,
            " packets",
        );
        let buffer_bytes = self.int(
            raw.buffer_bytes.as_ref(),
            "replica.buffer_bytes",
            MIB..4 * GIB + 1,
            DEFAULT_BUFFER_BYTES as i64,
            " bytes",
        );
        let max_checkpoint_bytes = self.int(
            raw.max_checkpoint_bytes.as_ref(),
            "replica.max_checkpoint_bytes",
            MIB..64 * GIB + 1,
            DEFAULT_MAX_CHECKPOINT_BYTES as i64,
            " bytes",
        );
        let checkpoint_every = self.int(
            raw.checkpoint_every.as_ref(),
            "replica.checkpoint_every",
            1..(1 << 32),
            10_000,
            " events",
        );
        let data_dir = raw.data_dir.as_ref().map_or_else(
            || PathBuf::from("/var/lib/seguro/replica"),
            |d| self.base.join(d.get_ref()),
        );
        Some(AgentConfig {
            max_run_ahead: max_run_ahead? as usize,
            buffer_packets: buffer_packets? as usize,
            buffer_bytes: buffer_bytes? as usize,
            data_dir,
            checkpoint_every: checkpoint_every? as u64,
            max_checkpoint_bytes: max_checkpoint_bytes? as u64,
        })
    }

    pub(crate) fn lb(&mut self, raw: &RawLb, at: Option<Range<usize>>) -> Option<LbConfig> {
        let interface = match &raw.interface {
            None => {
                self.missing(
                    at,
                    "interface",
                    "lb",
                    "\"eth0\"",
                    "the edge box's interface that receives the ship's traffic",
                );
                None
            }
            Some(i) => {
                let name = i.get_ref();
                // The kernel's IFNAMSIZ is 16 including the terminating NUL.
                let ok = !name.is_empty() && name.len() < 16 && !name.contains(['/', ' ', '\0']);
                if !ok {
                    self.r.error(
                        i.span(),
                        format!("lb.interface: `{name}` is not an interface name"),
                        Some("1 to 15 characters, no `/` or spaces".into()),
                    );
                }
                ok.then(|| name.clone())
            }
        };
        let mode = match &raw.mode {
            Some(m) => self.choice::<LbMode>(m, "lb.mode"),
            None => Some(LbMode::Xdp),
        };
        let tc_attach = match &raw.tc_attach {
            Some(t) => self.choice::<TcAttach>(t, "lb.tc_attach"),
            None => Some(TcAttach::Auto),
        };
        let metrics = self.addr_or(raw.metrics.as_ref(), "lb.metrics", DEFAULT_LB_METRICS);
        Some(LbConfig {
            interface: interface?,
            mode: mode?,
            tc_attach: tc_attach?,
            metrics: metrics?,
            drop_malformed: raw.drop_malformed.unwrap_or(true),
        })
    }

    pub(crate) fn gatekeeper(
        &mut self,
        raw: &RawGatekeeper,
        at: Option<Range<usize>>,
        tls_dir: &Path,
    ) -> Option<GatekeeperConfig> {
        let tls = self.named_pair(
            raw.tls_cert.as_ref(),
            raw.tls_key.as_ref(),
            default_pair(tls_dir, Role::Edge),
            &Loc::Span(at.clone().unwrap_or(0..0)),
        );
        let pair = tls.paths();
        self.files.edge = Some(tls);
        let listen = match &raw.listen {
            None => {
                self.missing(
                    at,
                    "listen",
                    "gatekeeper",
                    "\"IP:PORT\"",
                    "where replicas send effect envelopes",
                );
                None
            }
            Some(l) => self.addr(l, "gatekeeper.listen"),
        };
        let metrics = self.addr_or(
            raw.metrics.as_ref(),
            "gatekeeper.metrics",
            DEFAULT_GATEKEEPER_METRICS,
        );
        let hold_limit = self.int(
            raw.hold_limit.as_ref(),
            "gatekeeper.hold_limit",
            1..(1 << 24) + 1,
            65536,
            " effects",
        );
        let stateless_rate = self.int(
            raw.stateless_rate.as_ref(),
            "gatekeeper.stateless_rate",
            1..1_000_001,
            1000,
            " packets a second",
        );
        let hold_timeout = self.duration(
            raw.hold_timeout.as_ref(),
            "gatekeeper.hold_timeout",
            Duration::from_secs(10),
        );
        if let (Some(Duration::ZERO), Some(v)) = (hold_timeout, &raw.hold_timeout) {
            self.r.error(
                v.span(),
                "gatekeeper.hold_timeout must be longer than 0",
                Some(
                    "effects wait up to this long for their event to commit; \"10s\" is typical"
                        .into(),
                ),
            );
        }
        Some(GatekeeperConfig {
            listen: listen?,
            metrics: metrics?,
            hold_limit: hold_limit? as usize,
            hold_timeout: hold_timeout?,
            stateless_rate: stateless_rate? as u32,
            tls: pair,
        })
    }

    /// `[tls]`: paths only, so nothing here is an error; the files are
    /// checked once the replicas are known.
    pub(crate) fn tls(&mut self, raw: &RawTls, at: Option<Range<usize>>) -> TlsConfig {
        let table = Loc::Span(at.unwrap_or(0..0));
        let dir = raw
            .dir
            .as_ref()
            .map_or_else(|| self.base.join("tls"), |d| self.base.join(d.get_ref()));
        let ca = self.named(raw.ca.as_ref(), dir.join("ca.crt"), &table);
        let admin = self.named_pair(
            raw.admin_cert.as_ref(),
            raw.admin_key.as_ref(),
            default_pair(&dir, Role::Admin),
            &table,
        );
        let config = TlsConfig {
            ca: ca.path.clone(),
            admin: admin.paths(),
            dir,
        };
        self.files.ca = Some(ca);
        self.files.admin = Some(admin);
        config
    }
}

/// What is wrong with an etcd endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum EndpointError {
    #[error("is not an https:// URL")]
    NotHttps,
    #[error("has no port")]
    NoPort,
    #[error("has no host")]
    NoHost,
    #[error("has no valid port")]
    BadPort,
}

fn check_endpoint(s: &str) -> Result<(), EndpointError> {
    let rest = s.strip_prefix("https://").ok_or(EndpointError::NotHttps)?;
    let (host, port) = rest.rsplit_once(':').ok_or(EndpointError::NoPort)?;
    if host.is_empty() || host.contains('/') {
        return Err(EndpointError::NoHost);
    }
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok(()),
        _ => Err(EndpointError::BadPort),
    }
}
