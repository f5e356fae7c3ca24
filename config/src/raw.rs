//! The file's shape as serde reads it: every value keeps its span so that
//! validation can point at it, and nothing is interpreted yet.

use serde::Deserialize;
use toml::Spanned;

pub(crate) type S<T> = Spanned<T>;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawConfig {
    pub cluster: Option<S<String>>,
    pub optimism: Option<S<String>>,
    pub ship: Option<S<RawShip>>,
    #[serde(default)]
    pub replicas: Vec<S<RawReplica>>,
    pub lb: Option<S<RawLb>>,
    pub gatekeeper: Option<S<RawGatekeeper>>,
    pub etcd: Option<S<RawEtcd>>,
    pub eventlog: Option<S<RawEventlog>>,
    pub replica: Option<S<RawReplicaDefaults>>,
    pub keys: Option<S<RawKeys>>,
    pub tls: Option<S<RawTls>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RawShip {
    pub public: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RawReplica {
    pub id: Option<S<i64>>,
    pub ames: Option<S<String>>,
    pub eventlog: Option<S<String>>,
    pub eventlog_metrics: Option<S<String>>,
    pub metrics: Option<S<String>>,
    pub checkpoint: Option<S<String>>,
    pub key_file: Option<S<String>>,
    pub tls_cert: Option<S<String>>,
    pub tls_key: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawLb {
    pub interface: Option<S<String>>,
    pub mode: Option<S<String>>,
    pub tc_attach: Option<S<String>>,
    pub metrics: Option<S<String>>,
    pub drop_malformed: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawGatekeeper {
    pub listen: Option<S<String>>,
    pub metrics: Option<S<String>>,
    pub hold_limit: Option<S<i64>>,
    pub hold_timeout: Option<S<String>>,
    pub stateless_rate: Option<S<i64>>,
    pub tls_cert: Option<S<String>>,
    pub tls_key: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawEtcd {
    pub endpoints: Option<S<Vec<S<String>>>>,
    pub lease_ttl: Option<S<String>>,
    pub prefix: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawEventlog {
    pub data_dir: Option<S<String>>,
    pub port: Option<S<i64>>,
    pub metrics_port: Option<S<i64>>,
    pub max_event_bytes: Option<S<i64>>,
    pub max_snapshot_bytes: Option<S<i64>>,
    #[serde(default)]
    pub batch: RawBatch,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawBatch {
    pub max_events: Option<S<i64>>,
    pub max_bytes: Option<S<i64>>,
    pub max_linger: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawReplicaDefaults {
    pub metrics_port: Option<S<i64>>,
    pub max_run_ahead: Option<S<i64>>,
    pub buffer_packets: Option<S<i64>>,
    pub buffer_bytes: Option<S<i64>>,
    pub data_dir: Option<S<String>>,
    pub checkpoint_every: Option<S<i64>>,
    pub checkpoint_port: Option<S<i64>>,
    pub max_checkpoint_bytes: Option<S<i64>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawKeys {
    pub dir: Option<S<String>>,
    pub eventlog: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawTls {
    pub dir: Option<S<String>>,
    pub ca: Option<S<String>>,
    pub admin_cert: Option<S<String>>,
    pub admin_key: Option<S<String>>,
}
