//! The cluster file from typed values: the one place tests, benchmarks and
//! the demo write Seguro's TOML. Every setting left `None` is left out, so
//! the file says only what the test chose and the daemons' defaults apply.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{LbMode, Optimism, TcAttach};
use serde::{Serialize, Serializer};

/// A whole cluster file. Build it with [`ClusterFile::new`], set fields, and
/// [`ClusterFile::write`] it.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterFile {
    pub cluster: String,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "choice")]
    pub optimism: Option<Optimism>,
    pub ship: Ship,
    pub replicas: Vec<Replica>,
    pub lb: Lb,
    pub gatekeeper: Gatekeeper,
    pub etcd: Etcd,
    #[serde(skip_serializing_if = "Eventlog::is_unset")]
    pub eventlog: Eventlog,
    #[serde(skip_serializing_if = "Agent::is_unset")]
    pub replica: Agent,
    #[serde(skip_serializing_if = "Keys::is_unset")]
    pub keys: Keys,
    #[serde(skip_serializing_if = "Tls::is_unset")]
    pub tls: Tls,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ship {
    pub public: SocketAddr,
}

/// One `[[replicas]]` table.
#[derive(Debug, Clone, Serialize)]
pub struct Replica {
    pub id: u32,
    pub ames: SocketAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eventlog: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eventlog_metrics: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
}

impl Replica {
    /// Replica `id` receiving its copies on `ames`; its other addresses
    /// take the defaults unless set.
    pub fn new(id: u32, ames: SocketAddr) -> Replica {
        Replica {
            id,
            ames,
            eventlog: None,
            eventlog_metrics: None,
            metrics: None,
            key_file: None,
            checkpoint: None,
            tls_cert: None,
            tls_key: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Lb {
    pub interface: String,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "choice")]
    pub mode: Option<LbMode>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "choice")]
    pub tc_attach: Option<TcAttach>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drop_malformed: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Gatekeeper {
    pub listen: SocketAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold_limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "duration")]
    pub hold_timeout: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Etcd {
    pub endpoints: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "duration")]
    pub lease_ttl: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Eventlog {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_event_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_snapshot_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Batch::is_unset")]
    pub batch: Batch,
}

impl Eventlog {
    fn is_unset(&self) -> bool {
        *self == Eventlog::default()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Batch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_events: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "duration")]
    pub max_linger: Option<Duration>,
}

impl Batch {
    fn is_unset(&self) -> bool {
        *self == Batch::default()
    }
}

/// `[replica]`: the agents' settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Agent {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_run_ahead: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buffer_packets: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_every: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buffer_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_checkpoint_bytes: Option<u64>,
}

impl Agent {
    fn is_unset(&self) -> bool {
        *self == Agent::default()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Keys {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
}

impl Keys {
    fn is_unset(&self) -> bool {
        *self == Keys::default()
    }
}

/// `[tls]`: where the certificates are.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Tls {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_key: Option<PathBuf>,
}

impl Tls {
    fn is_unset(&self) -> bool {
        *self == Tls::default()
    }
}

impl ClusterFile {
    /// A cluster called `cluster` whose ship answers at `public`, with no
    /// replicas yet; the edge box's fan-out on `lo`, its gatekeeper
    /// listening on `gatekeeper`, etcd at `etcd` (`http://IP:PORT`).
    pub fn new(
        cluster: &str,
        public: SocketAddr,
        gatekeeper: SocketAddr,
        etcd: impl Into<String>,
    ) -> ClusterFile {
        ClusterFile {
            cluster: cluster.to_owned(),
            optimism: None,
            ship: Ship { public },
            replicas: Vec::new(),
            lb: Lb {
                interface: "lo".into(),
                mode: None,
                tc_attach: None,
                metrics: None,
                drop_malformed: None,
            },
            gatekeeper: Gatekeeper {
                listen: gatekeeper,
                metrics: None,
                hold_limit: None,
                hold_timeout: None,
                tls_cert: None,
                tls_key: None,
            },
            etcd: Etcd {
                endpoints: vec![etcd.into()],
                lease_ttl: None,
                prefix: None,
            },
            eventlog: Eventlog::default(),
            replica: Agent::default(),
            keys: Keys::default(),
            tls: Tls::default(),
        }
    }

    /// Replica `id`'s table, if the file has one.
    pub fn replica(&self, id: u32) -> Option<&Replica> {
        self.replicas.iter().find(|r| r.id == id)
    }

    /// The file's text.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).expect("a cluster file always serializes");
        format!("# Written by testkit::config_file.\n{body}")
    }

    /// Writes the file at `path`: its path, for the daemons' `-c`.
    pub fn write(&self, path: impl AsRef<Path>) -> io::Result<PathBuf> {
        let path = path.as_ref();
        std::fs::write(path, self.to_toml())?;
        Ok(path.to_owned())
    }
}

/// `"quorum"`, `"xdp"`...: as the file spells the choice.
fn choice<S: Serializer, T: std::fmt::Display>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

/// `"2s"` or `"1500ms"`: as an operator writes a duration.
fn duration<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(d) if d.subsec_nanos() == 0 => s.collect_str(&format_args!("{}s", d.as_secs())),
        Some(d) if d.subsec_nanos() % 1_000_000 == 0 => {
            s.collect_str(&format_args!("{}ms", d.as_millis()))
        }
        Some(d) => s.collect_str(&format_args!("{}us", d.as_micros())),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn what_it_writes_loads_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = ClusterFile::new(
            "t",
            addr("127.0.0.2:34543"),
            addr("127.0.0.1:4720"),
            "https://127.0.0.1:2379",
        );
        f.optimism = Some(Optimism::All);
        f.lb.mode = Some(LbMode::Userspace);
        f.etcd.lease_ttl = Some(Duration::from_secs(3));
        f.eventlog.batch.max_linger = Some(Duration::from_millis(1));
        f.replica.checkpoint_every = Some(7);
        for id in 1..=2 {
            let mut r = Replica::new(id, addr(&format!("127.0.1.{id}:34543")));
            r.metrics = Some(addr(&format!("127.0.0.1:{}", 9000 + id)));
            f.replicas.push(r);
        }
        let path = f.write(dir.path().join("c.toml")).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("[keys]"),
            "unset sections are left out:\n{text}"
        );
        let c = crate::load_config(&path);
        assert_eq!(c.cluster, "t");
        assert_eq!(c.optimism, Optimism::All);
        assert_eq!(c.lb.mode, LbMode::Userspace);
        assert_eq!(c.etcd.lease_ttl, Duration::from_secs(3));
        assert_eq!(c.eventlog.batch.max_linger, Duration::from_millis(1));
        assert_eq!(c.agent.checkpoint_every, 7);
        assert_eq!(c.replicas.len(), 2);
        assert_eq!(c.replicas[1].metrics, addr("127.0.0.1:9002"));
    }
}
