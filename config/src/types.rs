//! The validated cluster description and the small types it is made of.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::identity::{Identity, Role};

/// The most replicas a cluster may have: the edge box clones each inbound
/// packet once per replica in a bounded loop, and quorum latency grows with
/// the count long before this.
pub const MAX_REPLICAS: usize = 16;

/// etcd refuses leases shorter than 1.5 election timeouts (1.5 s with default
/// settings) and rounds up to whole seconds.
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(2);

/// `replica.buffer_bytes` by default: 1024 Ames packets of the largest
/// size, where the packet count alone (65,536 by default) would allow 4 GiB.
pub const DEFAULT_BUFFER_BYTES: usize = 64 << 20;

/// `replica.max_checkpoint_bytes` by default: the whole ship's state is held
/// in memory to restore it.
pub const DEFAULT_MAX_CHECKPOINT_BYTES: u64 = 4 << 30;

/// A replica's identity in the cluster: stable across restarts, never 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplicaId(u32);

impl ReplicaId {
    /// `None` for 0, which is reserved to mean "no replica".
    pub const fn new(id: u32) -> Option<Self> {
        if id == 0 { None } else { Some(Self(id)) }
    }

    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for ReplicaId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<u32>().ok().and_then(Self::new).ok_or_else(|| {
            format!(
                "`{s}` is not a replica id (a whole number from 1 to {})",
                u32::MAX
            )
        })
    }
}

/// A value given for an enumerated setting is not one of its choices.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{given}` is not one of: {}", choices.join(", "))]
pub struct ParseEnumError {
    pub given: String,
    pub choices: &'static [&'static str],
}

macro_rules! choice_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            pub const CHOICES: &'static [&'static str] = &[$($text),+];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ParseEnumError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(ParseEnumError { given: s.to_string(), choices: Self::CHOICES }),
                }
            }
        }
    };
}

choice_enum! {
    /// When an effect may leave through the gatekeeper, relative to the event
    /// that caused it being durable.
    Optimism {
        /// Once a quorum of replicas has the event on disk (the default).
        Quorum = "quorum",
        /// Once the leader has the event on its own disk.
        Leader = "leader",
        /// Once every replica has the event on disk.
        All = "all",
    }
}

choice_enum! {
    /// How the edge box fans inbound packets out to the replicas.
    LbMode {
        /// XDP classifier + TC cloner in the driver's native XDP mode when it
        /// has one, else the kernel's generic mode.
        Xdp = "xdp",
        /// XDP in generic (skb) mode only: for drivers whose native mode
        /// misbehaves.
        XdpGeneric = "xdp-generic",
        /// A userspace relay for hosts without XDP.
        Userspace = "userspace",
    }
}

choice_enum! {
    /// How the edge fan-out hooks its TC program into the interface's
    /// ingress.
    TcAttach {
        /// TCX on Linux 6.6 and later, a `clsact` filter before.
        Auto = "auto",
        /// A TCX link (Linux 6.6+): no qdisc, and the kernel detaches it if
        /// the process dies.
        Tcx = "tcx",
        /// A filter under the interface's `clsact` qdisc, added if missing
        /// and then removed on exit.
        Clsact = "clsact",
    }
}

/// The whole cluster, as validated from one file plus command-line overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this came from; relative paths in it were resolved against
    /// its directory.
    pub source: PathBuf,
    /// Names the cluster in etcd keys (`<prefix>/<cluster>/leader`).
    pub cluster: String,
    pub ship: ShipConfig,
    pub optimism: Optimism,
    /// Sorted by id.
    pub replicas: Vec<ReplicaConfig>,
    pub lb: LbConfig,
    pub gatekeeper: GatekeeperConfig,
    pub etcd: EtcdConfig,
    pub eventlog: EventlogConfig,
    pub agent: AgentConfig,
    pub tls: TlsConfig,
}

impl Config {
    pub fn replica(&self, id: ReplicaId) -> Option<&ReplicaConfig> {
        self.replicas.iter().find(|r| r.id == id)
    }

    /// `role` in this cluster, as its certificate names it.
    pub fn identity(&self, role: Role) -> Identity {
        Identity::new(self.cluster.clone(), role)
    }

    /// The certificate and key the config names for `role`: a replica's
    /// (`None` if the config has no such replica), the edge box's, the
    /// admin's. etcd reads its own from its command line, so `None`.
    pub fn cert_pair(&self, role: Role) -> Option<&CertPair> {
        match role {
            Role::Replica(id) => self.replica(id).map(|r| &r.tls),
            Role::Edge => Some(&self.gatekeeper.tls),
            Role::Admin => Some(&self.tls.admin),
            Role::Etcd => None,
        }
    }

    /// How many replicas must hold an event for it to be committed.
    pub fn quorum(&self) -> usize {
        self.replicas.len() / 2 + 1
    }

    /// `<prefix>/<cluster>`, under which every etcd key of this cluster lives.
    pub fn etcd_root(&self) -> String {
        format!("{}/{}", self.etcd.prefix, self.cluster)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShipConfig {
    /// The ship's public Ames address: what peers send to and where answers
    /// come from.
    pub public: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaConfig {
    pub id: ReplicaId,
    /// Where the edge box sends this replica's copy of each inbound packet.
    pub ames: SocketAddr,
    /// This replica's event log node (Raft and client API).
    pub eventlog: SocketAddr,
    /// Prometheus metrics of this replica's event log node.
    pub eventlog_metrics: SocketAddr,
    /// Prometheus metrics of this replica's agent.
    pub metrics: SocketAddr,
    /// The agent's checkpoint listener (TCP, mutual TLS), where a wiped
    /// peer fetches its latest checkpoint.
    pub checkpoint: SocketAddr,
    /// The secret this replica signs its effect envelopes with.
    pub key_file: PathBuf,
    /// This replica's TLS identity, for its event log node and its agent.
    pub tls: CertPair,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbConfig {
    /// The edge box's interface that receives the ship's inbound traffic.
    pub interface: String,
    pub mode: LbMode,
    /// How the TC program is attached (XDP modes).
    pub tc_attach: TcAttach,
    pub metrics: SocketAddr,
    /// Drop packets for the ship that are not Ames, fine, STUN or mesa.
    pub drop_malformed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatekeeperConfig {
    /// Where replicas send effect envelopes (UDP).
    pub listen: SocketAddr,
    pub metrics: SocketAddr,
    /// Most effects held waiting for their event to commit.
    pub hold_limit: usize,
    /// Longest an effect may wait for its event to commit before it is dropped.
    pub hold_timeout: Duration,
    /// Most packets a second that reveal no state (STUN answers, forwarding)
    /// the leader may send without a commit.
    pub stateless_rate: u32,
    /// The edge box's TLS identity, used by the gatekeeper and `seguro status`.
    pub tls: CertPair,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// `https://host:port` URLs: etcd is reached over mutual TLS.
    pub endpoints: Vec<String>,
    /// TTL of the leases behind leadership and the active gatekeeper.
    pub lease_ttl: Duration,
    /// Key prefix, starting with `/` and without a trailing one.
    pub prefix: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventlogConfig {
    /// Each node keeps its files in `<data_dir>/replica-<id>`.
    pub data_dir: PathBuf,
    /// Largest single event accepted.
    pub max_event_bytes: usize,
    /// How a client merges concurrent appends into one Raft entry.
    pub batch: BatchLimits,
    /// Largest snapshot a node sends or accepts.
    pub max_snapshot_bytes: u64,
}

impl EventlogConfig {
    pub fn node_dir(&self, id: ReplicaId) -> PathBuf {
        node_dir(&self.data_dir, id)
    }
}

/// Replica `id`'s directory under a `data_dir`: `<data_dir>/replica-<id>`.
pub fn node_dir(data_dir: &std::path::Path, id: ReplicaId) -> PathBuf {
    data_dir.join(format!("replica-{id}"))
}

/// Settings every replica agent shares (the `[replica]` table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// Most events the leader computes beyond the commit point.
    pub max_run_ahead: usize,
    /// Most inbound packets a follower keeps for a promotion.
    pub buffer_packets: usize,
    /// Most bytes of inbound packets a follower keeps for a promotion.
    pub buffer_bytes: usize,
    /// Each agent keeps its ship's checkpoints in `<data_dir>/replica-<id>`.
    pub data_dir: PathBuf,
    /// How many committed events between two checkpoints of the ship.
    pub checkpoint_every: u64,
    /// Largest checkpoint an agent serves or accepts from a peer.
    pub max_checkpoint_bytes: u64,
}

impl AgentConfig {
    pub fn node_dir(&self, id: ReplicaId) -> PathBuf {
        node_dir(&self.data_dir, id)
    }
}

/// A certificate (chain, leaf first) and its private key: one role's TLS
/// identity, PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The `[tls]` table: the CA every part trusts, and where certificates are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// Where certificates are unless the config names them, and where
    /// `seguro certs` makes the CA and etcd's pair.
    pub dir: PathBuf,
    /// The bundle of CAs every part trusts: one, or two during a rotation.
    pub ca: PathBuf,
    /// The operator's identity, for admin commands.
    pub admin: CertPair,
}

impl TlsConfig {
    /// Where `role`'s certificate and key are unless the config names
    /// them: `<dir>/<role>.crt` and `<dir>/<role>.key`.
    pub fn default_pair(&self, role: Role) -> CertPair {
        default_pair(&self.dir, role)
    }
}

pub(crate) fn default_pair(dir: &std::path::Path, role: Role) -> CertPair {
    CertPair {
        cert: dir.join(format!("{role}.crt")),
        key: dir.join(format!("{role}.key")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_events: usize,
    pub max_bytes: usize,
    /// How long a client waits for more appends before sending a batch.
    pub max_linger: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_round_trip() {
        for s in Optimism::CHOICES {
            assert_eq!(s.parse::<Optimism>().unwrap().as_str(), *s);
        }
        let err = "fast".parse::<Optimism>().unwrap_err();
        assert_eq!(err.to_string(), "`fast` is not one of: quorum, leader, all");
    }

    #[test]
    fn replica_id_zero_is_reserved() {
        assert!(ReplicaId::new(0).is_none());
        assert!("0".parse::<ReplicaId>().is_err());
        assert_eq!("7".parse::<ReplicaId>().unwrap().get(), 7);
    }
}
