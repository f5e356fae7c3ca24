//! The node's Prometheus metrics (listed in docs/METRICS.md, `## Event log`)
//! and the exporter that serves them.

use std::net::SocketAddr;
use std::time::Duration;

use eventlog_client::LogIndex;
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};

use crate::ids::NodeId;
use crate::types::EventNum;

pub const LOG_FLUSH_SECONDS: &str = "seguro_eventlog_log_flush_seconds";
pub const COMMIT_SECONDS: &str = "seguro_eventlog_commit_seconds";
/// Connections and requests refused, by reason (docs/METRICS.md).
pub const REFUSED_TOTAL: &str = "seguro_eventlog_auth_refused_total";
pub const EPOCH_REGRESSIONS_TOTAL: &str = "seguro_eventlog_epoch_regressions_total";

/// Why the node's metrics are not served.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot serve metrics on {addr}: {source}")]
    Buckets {
        addr: SocketAddr,
        source: BuildError,
    },
    #[error(transparent)]
    Serve(#[from] telemetry::Error),
}

/// Serves /metrics on `addr` from a background task of the current runtime.
pub fn serve(addr: SocketAddr) -> Result<(), MetricsError> {
    let buckets = [
        0.000_1, 0.000_25, 0.000_5, 0.000_75, 0.001, 0.001_5, 0.002, 0.003, 0.005, 0.007_5, 0.01,
        0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    ];
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(LOG_FLUSH_SECONDS.into()), &buckets)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(COMMIT_SECONDS.into()), &buckets))
        .map_err(|source| MetricsError::Buckets { addr, source })?;
    telemetry::serve(builder, addr, "eventlog")?;
    zero();
    Ok(())
}

/// Every counter exists from the start, at 0, so that `rate()` and alerts
/// see zeros rather than gaps.
fn zero() {
    for reason in [
        "flush", "vote", "commit", "append", "truncate", "purge", "read", "snapshot",
    ] {
        counter!("seguro_eventlog_storage_errors_total", "reason" => reason).absolute(0);
    }
    for reason in [
        "stale_epoch",
        "epoch_reused",
        "gap",
        "duplicate",
        "too_large",
        "invalid",
        "not_leader",
        "unavailable",
    ] {
        counter!("seguro_eventlog_append_rejected_total", "reason" => reason).absolute(0);
    }
    let handshakes = trust::server::Refused::ALL.map(|r| r.label());
    let requests = crate::authz::Denied::ALL.map(|d| d.label());
    for reason in handshakes.iter().chain(&requests) {
        counter!(REFUSED_TOTAL, "reason" => *reason).absolute(0);
    }
    for name in [
        "seguro_eventlog_append_batches_total",
        "seguro_eventlog_append_events_total",
        "seguro_eventlog_append_bytes_total",
        "seguro_eventlog_snapshots_built_total",
        "seguro_eventlog_snapshots_installed_total",
        "seguro_eventlog_log_purges_total",
        "seguro_eventlog_raft_restarts_total",
        EPOCH_REGRESSIONS_TOTAL,
    ] {
        counter!(name).absolute(0);
    }
}

pub(crate) fn storage_error(op: &'static str) {
    counter!("seguro_eventlog_storage_errors_total", "reason" => op).increment(1);
}

pub(crate) fn log_flush(took: Duration) {
    histogram!(LOG_FLUSH_SECONDS).record(took.as_secs_f64());
}

pub(crate) fn log_purged(index: LogIndex) {
    counter!("seguro_eventlog_log_purges_total").increment(1);
    gauge!("seguro_eventlog_log_purged_index").set(index.get() as f64);
}

pub(crate) fn committed(took: Duration) {
    histogram!(COMMIT_SECONDS).record(took.as_secs_f64());
}

pub(crate) fn stored(events: u64, bytes: u64) {
    counter!("seguro_eventlog_append_batches_total").increment(1);
    counter!("seguro_eventlog_append_events_total").increment(events);
    counter!("seguro_eventlog_append_bytes_total").increment(bytes);
}

pub(crate) fn rejected(reason: &'static str) {
    counter!("seguro_eventlog_append_rejected_total", "reason" => reason).increment(1);
}

/// A connection or request refused: a TLS handshake's reason or an
/// authorisation's.
pub(crate) fn refused(reason: &'static str) {
    counter!(REFUSED_TOTAL, "reason" => reason).increment(1);
}

pub(crate) fn snapshot_built() {
    counter!("seguro_eventlog_snapshots_built_total").increment(1);
}

pub(crate) fn snapshot_installed() {
    counter!("seguro_eventlog_snapshots_installed_total").increment(1);
}

pub(crate) fn epoch_regressed() {
    counter!(EPOCH_REGRESSIONS_TOTAL).increment(1);
}

pub(crate) fn restarts() {
    counter!("seguro_eventlog_raft_restarts_total").increment(1);
}

/// The state machine's position, after every apply.
pub(crate) fn machine(
    last: u64,
    epoch: u64,
    purge_point: u64,
    held_events: usize,
    held_bytes: u64,
) {
    gauge!("seguro_eventlog_committed_event").set(last as f64);
    gauge!("seguro_eventlog_epoch").set(epoch as f64);
    gauge!("seguro_eventlog_purge_point_event").set(purge_point as f64);
    gauge!("seguro_eventlog_held_events").set(held_events as f64);
    gauge!("seguro_eventlog_held_bytes").set(held_bytes as f64);
}

/// Raft's view, whenever openraft's metrics change.
pub(crate) fn raft(
    term: u64,
    leader: bool,
    last_log: Option<LogIndex>,
    committed: Option<LogIndex>,
    applied: Option<LogIndex>,
) {
    gauge!("seguro_eventlog_term").set(term as f64);
    gauge!("seguro_eventlog_is_leader").set(if leader { 1.0 } else { 0.0 });
    let idx = |v: Option<LogIndex>| v.map_or(-1.0, |v| v.get() as f64);
    gauge!("seguro_eventlog_last_log_index").set(idx(last_log));
    gauge!("seguro_eventlog_committed_index").set(idx(committed));
    gauge!("seguro_eventlog_applied_index").set(idx(applied));
}

/// A replica's replication progress, as the leader sees it.
pub(crate) fn replica(replica: NodeId, matched: Option<LogIndex>, lag: u64) {
    let r = replica.to_string();
    gauge!("seguro_eventlog_replica_match_index", "replica" => r.clone())
        .set(matched.map_or(-1.0, |m| m.get() as f64));
    gauge!("seguro_eventlog_replica_lag_entries", "replica" => r).set(lag as f64);
}

/// What raft-log's flush thread reports (totals since the log opened).
pub(crate) struct LogStats {
    pub fsyncs: u64,
    pub writes: u64,
    pub fsync_seconds: f64,
    pub fsync_p50: f64,
    pub fsync_p99: f64,
    pub disk_bytes: u64,
}

pub(crate) fn log_stats(s: &LogStats) {
    counter!("seguro_eventlog_log_fsyncs_total").absolute(s.fsyncs);
    counter!("seguro_eventlog_log_writes_total").absolute(s.writes);
    gauge!("seguro_eventlog_log_fsync_busy_seconds").set(s.fsync_seconds);
    gauge!("seguro_eventlog_log_fsync_p50_seconds").set(s.fsync_p50);
    gauge!("seguro_eventlog_log_fsync_p99_seconds").set(s.fsync_p99);
    gauge!("seguro_eventlog_log_disk_bytes").set(s.disk_bytes as f64);
}

pub(crate) fn durable(leader_durable: EventNum, all_durable: EventNum) {
    gauge!("seguro_eventlog_leader_durable_event").set(leader_durable.get() as f64);
    gauge!("seguro_eventlog_all_durable_event").set(all_durable.get() as f64);
}
