//! What the gatekeeper counts: kept in atomics that tests and the daemon
//! read, and published through the `metrics` facade for Prometheus (names
//! and meanings in docs/METRICS.md).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use metrics::{Counter, Gauge, Unit};

use leadership::Term;

/// Why an envelope did not leave. Each is one `reason` label of
/// `seguro_gatekeeper_dropped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Not shaped like an envelope (wrong length, magic, version...).
    Malformed,
    /// Names a replica whose key the gatekeeper does not have.
    UnknownReplica,
    /// Its MAC does not verify with the named replica's key.
    BadMac,
    /// etcd has not confirmed the leadership for longer than the lease TTL.
    FailClosed,
    /// This gatekeeper is the standby: another one holds the etcd key.
    Standby,
    /// Its sender is not the current leader (or nobody leads).
    NotLeader,
    /// Its epoch is not the current one (an old term, or a term this
    /// gatekeeper has not seen yet), or the event log has fenced a newer one.
    StaleEpoch,
    /// Its sequence number was seen before or fell below the window.
    Replay,
    /// The hold queue was full.
    QueueFull,
    /// Its event did not become durable within `gatekeeper.hold_timeout`.
    HeldTooLong,
    /// The kernel refused to send it (or its lane's family does not match
    /// the ship's address).
    SendFailed,
    /// It claims to need no commit (event 0), but its payload is neither a
    /// STUN response nor another ship's packet forwarded on.
    NotStateless,
    /// One more packet needing no commit than `gatekeeper.stateless_rate`
    /// allows.
    StatelessRate,
}

impl DropReason {
    pub const ALL: [DropReason; 13] = [
        DropReason::Malformed,
        DropReason::UnknownReplica,
        DropReason::BadMac,
        DropReason::FailClosed,
        DropReason::Standby,
        DropReason::NotLeader,
        DropReason::StaleEpoch,
        DropReason::Replay,
        DropReason::QueueFull,
        DropReason::HeldTooLong,
        DropReason::SendFailed,
        DropReason::NotStateless,
        DropReason::StatelessRate,
    ];

    /// The `reason` label.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::UnknownReplica => "unknown_replica",
            DropReason::BadMac => "bad_mac",
            DropReason::FailClosed => "fail_closed",
            DropReason::Standby => "standby",
            DropReason::NotLeader => "not_leader",
            DropReason::StaleEpoch => "stale_epoch",
            DropReason::Replay => "replay",
            DropReason::QueueFull => "queue_full",
            DropReason::HeldTooLong => "held_too_long",
            DropReason::SendFailed => "send_failed",
            DropReason::NotStateless => "not_stateless",
            DropReason::StatelessRate => "stateless_rate",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

const REASONS: usize = DropReason::ALL.len();

/// The gatekeeper's counters and gauges.
pub struct Stats {
    received: AtomicU64,
    batches: AtomicU64,
    forwarded: AtomicU64,
    dropped: [AtomicU64; REASONS],
    held: AtomicU64,
    epoch: AtomicU64,
    leader: AtomicU64,
    leadership_changes: AtomicU64,
    active: AtomicBool,
    fail_closed: AtomicBool,
    m: Handles,
}

/// Handles into whatever metrics recorder was installed when the stats
/// were made (none: they do nothing).
struct Handles {
    received: Counter,
    batches: Counter,
    forwarded: Counter,
    dropped: [Counter; REASONS],
    held: Gauge,
    epoch: Gauge,
    leader: Gauge,
    leadership_changes: Counter,
    active: Gauge,
    fail_closed: Gauge,
}

/// A copy of every value at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    pub received: u64,
    pub batches: u64,
    pub forwarded: u64,
    pub dropped: [u64; REASONS],
    pub held: u64,
    pub epoch: u64,
    pub leader: u64,
    pub leadership_changes: u64,
    pub active: bool,
    pub fail_closed: bool,
}

impl Snapshot {
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()]
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Registers with the metrics recorder installed now; install it first.
    /// Starts standby and fail-closed, as the gatekeeper does.
    pub fn new() -> Self {
        describe();
        let m = Handles {
            received: metrics::counter!("seguro_gatekeeper_received_total"),
            batches: metrics::counter!("seguro_gatekeeper_receive_batches_total"),
            forwarded: metrics::counter!("seguro_gatekeeper_forwarded_total"),
            dropped: DropReason::ALL.map(
                |r| metrics::counter!("seguro_gatekeeper_dropped_total", "reason" => r.as_str()),
            ),
            held: metrics::gauge!("seguro_gatekeeper_held_effects"),
            epoch: metrics::gauge!("seguro_gatekeeper_epoch"),
            leader: metrics::gauge!("seguro_gatekeeper_leader"),
            leadership_changes: metrics::counter!("seguro_gatekeeper_leadership_changes_total"),
            active: metrics::gauge!("seguro_gatekeeper_active"),
            fail_closed: metrics::gauge!("seguro_gatekeeper_fail_closed"),
        };
        // Every series exists from the start, so that rate() and alerts see
        // zeros rather than gaps.
        m.received.absolute(0);
        m.batches.absolute(0);
        m.forwarded.absolute(0);
        m.leadership_changes.absolute(0);
        for c in &m.dropped {
            c.absolute(0);
        }
        m.held.set(0.0);
        m.epoch.set(0.0);
        m.leader.set(0.0);
        m.active.set(0.0);
        m.fail_closed.set(1.0);
        Self {
            received: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            dropped: Default::default(),
            held: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            leader: AtomicU64::new(0),
            leadership_changes: AtomicU64::new(0),
            active: AtomicBool::new(false),
            fail_closed: AtomicBool::new(true),
            m,
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            received: self.received.load(Relaxed),
            batches: self.batches.load(Relaxed),
            forwarded: self.forwarded.load(Relaxed),
            dropped: std::array::from_fn(|i| self.dropped[i].load(Relaxed)),
            held: self.held.load(Relaxed),
            epoch: self.epoch.load(Relaxed),
            leader: self.leader.load(Relaxed),
            leadership_changes: self.leadership_changes.load(Relaxed),
            active: self.active.load(Relaxed),
            fail_closed: self.fail_closed.load(Relaxed),
        }
    }

    pub(crate) fn received(&self, datagrams: u64) {
        self.received.fetch_add(datagrams, Relaxed);
        self.m.received.increment(datagrams);
        self.batches.fetch_add(1, Relaxed);
        self.m.batches.increment(1);
    }

    pub(crate) fn forwarded(&self, n: u64) {
        if n > 0 {
            self.forwarded.fetch_add(n, Relaxed);
            self.m.forwarded.increment(n);
        }
    }

    pub(crate) fn dropped(&self, reason: DropReason, n: u64) {
        if n > 0 {
            self.dropped[reason.index()].fetch_add(n, Relaxed);
            self.m.dropped[reason.index()].increment(n);
        }
    }

    pub(crate) fn set_held(&self, n: usize) {
        self.held.store(n as u64, Relaxed);
        self.m.held.set(n as f64);
    }

    pub(crate) fn set_term(&self, term: Option<Term>) {
        let (leader, epoch) = term.map_or((0, 0), |t| (u64::from(t.leader.get()), t.epoch.get()));
        self.leader.store(leader, Relaxed);
        self.epoch.store(epoch, Relaxed);
        self.m.leader.set(leader as f64);
        self.m.epoch.set(epoch as f64);
    }

    pub(crate) fn leadership_changed(&self) {
        self.leadership_changes.fetch_add(1, Relaxed);
        self.m.leadership_changes.increment(1);
    }

    pub(crate) fn set_active(&self, active: bool) {
        self.active.store(active, Relaxed);
        self.m.active.set(f64::from(u8::from(active)));
    }

    pub(crate) fn set_fail_closed(&self, closed: bool) {
        self.fail_closed.store(closed, Relaxed);
        self.m.fail_closed.set(f64::from(u8::from(closed)));
    }
}

/// Help text for every metric, for the Prometheus exporter.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_counter!(
        "seguro_gatekeeper_received_total",
        Unit::Count,
        "Datagrams received on gatekeeper.listen"
    );
    describe_counter!(
        "seguro_gatekeeper_receive_batches_total",
        Unit::Count,
        "recvmmsg calls that returned datagrams (received / batches = mean batch size)"
    );
    describe_counter!(
        "seguro_gatekeeper_forwarded_total",
        Unit::Count,
        "Effects sent to their lanes from the ship's public address"
    );
    describe_counter!(
        "seguro_gatekeeper_dropped_total",
        Unit::Count,
        "Envelopes that did not leave, by reason"
    );
    describe_gauge!(
        "seguro_gatekeeper_held_effects",
        Unit::Count,
        "Effects waiting for their events to become durable"
    );
    describe_gauge!(
        "seguro_gatekeeper_epoch",
        "Epoch of the current leadership term as the gatekeeper knows it (0: none)"
    );
    describe_gauge!(
        "seguro_gatekeeper_leader",
        "Replica id of the current leader as the gatekeeper knows it (0: none)"
    );
    describe_counter!(
        "seguro_gatekeeper_leadership_changes_total",
        Unit::Count,
        "Times the observed leadership term changed after the first one seen"
    );
    describe_gauge!(
        "seguro_gatekeeper_active",
        "1 if this gatekeeper holds the etcd gatekeeper key and forwards, 0 if standby"
    );
    describe_gauge!(
        "seguro_gatekeeper_fail_closed",
        "1 while etcd has not confirmed the leadership for longer than the lease TTL"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_indexed_in_order() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        let s = Stats::new();
        s.dropped(DropReason::Replay, 2);
        s.dropped(DropReason::BadMac, 1);
        let snap = s.snapshot();
        assert_eq!(snap.dropped(DropReason::Replay), 2);
        assert_eq!(snap.dropped_total(), 3);
        assert!(snap.fail_closed && !snap.active);
    }
}
