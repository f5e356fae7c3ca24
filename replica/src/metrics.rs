//! The replica agent's Prometheus metrics (docs/METRICS.md, "Replica").

use metrics::{counter, gauge};

use crate::agent::StepDown;

pub const LEADER: &str = "seguro_replica_leader";
pub const EPOCH: &str = "seguro_replica_epoch";
pub const APPLIED: &str = "seguro_replica_applied_event";
pub const COMMITTED: &str = "seguro_replica_committed_event";
pub const RUN_AHEAD: &str = "seguro_replica_run_ahead_events";
pub const PACKETS: &str = "seguro_replica_packets_received_total";
pub const SEQUENCED: &str = "seguro_replica_sequenced_total";
pub const REPLAYED: &str = "seguro_replica_replayed_total";
pub const EFFECTS: &str = "seguro_replica_effects_sent_total";
pub const EFFECTS_FAILED: &str = "seguro_replica_effects_failed_total";
pub const BUFFERED: &str = "seguro_replica_buffered_packets";
pub const EVICTED: &str = "seguro_replica_buffer_evicted_total";
pub const RECOVERED: &str = "seguro_replica_recovered_packets_total";
/// Stateless packets (STUN answers, forwarding) the leader did not pass
/// on, by reason: `rate` (over `gatekeeper.stateless_rate`) or `mismatch`
/// (not what the runtime claimed, or not stateless at all).
pub const STATELESS_DROPPED: &str = "seguro_replica_stateless_dropped_total";
/// Inbound packets the runtime said it will never make an event of (its
/// queue was full), as the leader's frames told this replica.
pub const RUNTIME_DROPPED: &str = "seguro_replica_runtime_dropped_packets_total";
pub const MISMATCHES: &str = "seguro_replica_mug_mismatches_total";
pub const DIVERGED: &str = "seguro_replica_diverged";
pub const PROMOTIONS: &str = "seguro_replica_promotions_total";
pub const STEP_DOWNS: &str = "seguro_replica_step_downs_total";
pub const CHECKPOINT: &str = "seguro_replica_checkpoint_event";
pub const CHECKPOINTS: &str = "seguro_replica_checkpoints_total";
pub const RESTORES: &str = "seguro_replica_restores_total";
/// Checkpoint requests refused, by reason: a TLS handshake's, or
/// `not_a_replica` (docs/METRICS.md).
pub const CHECKPOINT_REFUSED: &str = "seguro_replica_checkpoint_refused_total";
/// [`CHECKPOINT_REFUSED`]'s reason for a certificate of the cluster that is
/// not another replica's.
pub const NOT_A_REPLICA: &str = "not_a_replica";

/// Registers every series at zero, so that dashboards and alerts see zeros
/// rather than gaps from the start.
pub fn register() {
    for g in [
        LEADER, EPOCH, APPLIED, COMMITTED, RUN_AHEAD, BUFFERED, DIVERGED, CHECKPOINT,
    ] {
        gauge!(g).set(0.0);
    }
    for c in [
        PACKETS,
        SEQUENCED,
        REPLAYED,
        EFFECTS,
        EFFECTS_FAILED,
        EVICTED,
        RECOVERED,
        MISMATCHES,
        PROMOTIONS,
        CHECKPOINTS,
        RUNTIME_DROPPED,
    ] {
        counter!(c).absolute(0);
    }
    for reason in StepDown::ALL {
        counter!(STEP_DOWNS, "reason" => reason.label()).absolute(0);
    }
    for reason in ["rate", "mismatch"] {
        counter!(STATELESS_DROPPED, "reason" => reason).absolute(0);
    }
    for source in ["local", "peer"] {
        counter!(RESTORES, "source" => source).absolute(0);
    }
    let handshakes = trust::server::Refused::ALL.map(|r| r.label());
    for reason in handshakes.iter().chain(&[NOT_A_REPLICA]) {
        counter!(CHECKPOINT_REFUSED, "reason" => *reason).absolute(0);
    }
}
