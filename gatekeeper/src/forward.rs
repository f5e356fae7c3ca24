//! The decision for each envelope (docs/SPEC.md §6.4): forward, hold or
//! drop, from what the gatekeeper knows of the leadership, its own
//! active/standby state and the commit watch. No sockets and no etcd here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use config::Optimism;
use tokio::time::Instant;

use crate::hold::{Held, HoldQueue, Verdict, verdict};
use crate::replay::ReplayWindows;
use crate::stats::{DropReason, Stats};
use config::ReplicaId;
use leadership::envelope::{Envelope, Keyring, OpenError, Unverified};
use leadership::{CommitState, EventNum, LeaderView, StatelessBudget, Term};

/// Replay windows kept: the current term's, and a few before it in case a
/// term comes back after an etcd outage.
const WINDOWS_KEPT: usize = 8;

/// A held effect: where it goes and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effect {
    pub lane: SocketAddr,
    pub payload: Vec<u8>,
}

/// What becomes of one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision<'a> {
    /// Send `payload` to `lane` now.
    Forward {
        lane: SocketAddr,
        payload: &'a [u8],
    },
    /// Copied into the hold queue, to leave once its event is durable.
    Held,
    Dropped(DropReason),
}

/// How effects are gated on the event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// By the commit watch, under the given policy (§3, §6.4 rule 4).
    Commits(Optimism),
    /// Not at all: every authentic envelope of the current term leaves at
    /// once. Only for `optimism = "leader"` without an event log client.
    Ungated,
}

/// The replicas' keys, as the forwarder uses them: the [`Keyring`]; in
/// tests, a double that counts the MACs it computes.
pub trait Keys {
    /// Whether `replica` is one of the cluster's (no MAC computed).
    fn contains(&self, replica: ReplicaId) -> bool;
    /// Verifies the envelope's MAC: the one costly step of a decision.
    fn verify<'a>(&self, envelope: Unverified<'a>) -> Result<Envelope<'a>, OpenError>;
}

impl Keys for Keyring {
    fn contains(&self, replica: ReplicaId) -> bool {
        Keyring::contains(self, replica)
    }

    fn verify<'a>(&self, envelope: Unverified<'a>) -> Result<Envelope<'a>, OpenError> {
        Keyring::verify(self, envelope)
    }
}

/// The gatekeeper's state and rules, fed by the daemon.
pub struct Forwarder<K = Keyring> {
    keys: K,
    gate: Gate,
    commit: CommitState,
    ttl: Duration,
    view: LeaderView,
    /// The last term seen, kept through "no leader" to count changes.
    last_term: Option<Term>,
    active: bool,
    closed: bool,
    windows: ReplayWindows,
    hold: HoldQueue<Effect>,
    /// Envelopes of event 0 (no state: STUN answers, forwarding) leave at
    /// once, within this budget.
    stateless: StatelessBudget,
    stats: Arc<Stats>,
    /// Drops counted since the last [`Forwarder::flush_stats`].
    pending: [u64; DropReason::ALL.len()],
}

impl<K: Keys> Forwarder<K> {
    /// A forwarder that is standby and fail closed until told otherwise.
    /// `ttl` is the lease TTL: the longest etcd may go unheard from;
    /// `stateless_rate` bounds the envelopes a second that need no commit
    /// (`gatekeeper.stateless_rate`).
    pub fn new(
        keys: K,
        gate: Gate,
        hold_limit: usize,
        hold_timeout: Duration,
        ttl: Duration,
        stateless_rate: u32,
        stats: Arc<Stats>,
    ) -> Self {
        Self {
            keys,
            gate,
            commit: CommitState::default(),
            ttl,
            view: LeaderView::default(),
            last_term: None,
            active: false,
            closed: true,
            windows: ReplayWindows::new(WINDOWS_KEPT),
            hold: HoldQueue::new(hold_limit, hold_timeout),
            stateless: StatelessBudget::new(stateless_rate, Instant::now()),
            stats,
            pending: [0; DropReason::ALL.len()],
        }
    }

    /// Decides one received datagram. `truncated` datagrams (cut short by
    /// the kernel) are malformed whatever they hold.
    pub fn admit<'a>(&mut self, datagram: &'a [u8], truncated: bool, now: Instant) -> Decision<'a> {
        match self.decide(datagram, truncated, now) {
            Ok(d) => d,
            Err(reason) => {
                self.pending[reason as usize] += 1;
                Decision::Dropped(reason)
            }
        }
    }

    fn decide<'a>(
        &mut self,
        datagram: &'a [u8],
        truncated: bool,
        now: Instant,
    ) -> Result<Decision<'a>, DropReason> {
        if !self.active {
            // Without etcd a gatekeeper loses its own key too; say why.
            return Err(if self.is_fail_closed(now) {
                DropReason::FailClosed
            } else {
                DropReason::Standby
            });
        }
        if truncated {
            return Err(DropReason::Malformed);
        }
        // Every check that needs no key comes before the MAC, the one pass
        // over the whole datagram (SPEC §7): a flood from the wrong replica
        // or term costs a header read each.
        let unverified = Unverified::parse(datagram).map_err(|_| DropReason::Malformed)?;
        let claimed = *unverified.header();
        if !self.keys.contains(claimed.replica) {
            return Err(DropReason::UnknownReplica);
        }
        if self.is_fail_closed(now) {
            return Err(DropReason::FailClosed);
        }
        let term = self.view.term.ok_or(DropReason::NotLeader)?;
        if claimed.replica != term.leader {
            return Err(DropReason::NotLeader);
        }
        if claimed.epoch != term.epoch {
            return Err(DropReason::StaleEpoch);
        }
        let env = self.keys.verify(unverified).map_err(|e| match e {
            OpenError::Malformed(_) => DropReason::Malformed,
            OpenError::UnknownReplica(_) => DropReason::UnknownReplica,
            OpenError::BadMac(_) => DropReason::BadMac,
        })?;
        // Only authentic envelopes of the current term reach the window.
        if !self.windows.accept(env.replica, env.epoch, env.seq) {
            return Err(DropReason::Replay);
        }
        // Event 0 is the state before any event: a packet that depends on
        // none needs no commit, if it is what reveals none (SPEC §6.4).
        if env.event == EventNum::NONE {
            ames::stateless(env.payload).map_err(|_| DropReason::NotStateless)?;
            if !self.stateless.take(now) {
                return Err(DropReason::StatelessRate);
            }
            return Ok(Decision::Forward {
                lane: env.lane.addr(),
                payload: env.payload,
            });
        }
        let Gate::Commits(policy) = self.gate else {
            return Ok(Decision::Forward {
                lane: env.lane.addr(),
                payload: env.payload,
            });
        };
        match verdict(&self.commit, policy, env.epoch, env.event) {
            Verdict::Stale => Err(DropReason::StaleEpoch),
            // Behind held effects, a releasable one waits its turn.
            Verdict::Release if self.hold.is_empty() => Ok(Decision::Forward {
                lane: env.lane.addr(),
                payload: env.payload,
            }),
            _ => {
                let held = Held {
                    epoch: env.epoch,
                    event: env.event,
                    since: now,
                    item: Effect {
                        lane: env.lane.addr(),
                        payload: env.payload.to_vec(),
                    },
                };
                self.hold.push(held).map_err(|_| DropReason::QueueFull)?;
                Ok(Decision::Held)
            }
        }
    }

    /// Moves every held effect that may leave now into `out`, in arrival
    /// order, and drops (counting) those that timed out or went stale.
    pub fn release(&mut self, now: Instant, out: &mut Vec<Effect>) {
        loop {
            if self.hold.pop_expired(now).is_some() {
                self.pending[DropReason::HeldTooLong as usize] += 1;
                continue;
            }
            if !self.active || self.is_fail_closed(now) {
                return;
            }
            let Gate::Commits(policy) = self.gate else {
                return;
            };
            let commit = self.commit;
            match self
                .hold
                .pop_decided(|h| verdict(&commit, policy, h.epoch, h.event))
            {
                Some((Verdict::Release, h)) => out.push(h.item),
                Some((_, _)) => self.pending[DropReason::StaleEpoch as usize] += 1,
                None => return,
            }
        }
    }

    /// Takes a new view of the leadership. A new term (or none) drops every
    /// effect held for another epoch.
    pub fn set_view(&mut self, view: LeaderView, now: Instant) {
        let old = self.view.term;
        self.view = view;
        if view.term != old {
            match view.term {
                Some(t) => {
                    if self.last_term.is_some_and(|last| last != t) {
                        self.stats.leadership_changed();
                    }
                    self.last_term = Some(t);
                    tracing::info!(term = %t, "leader");
                }
                None => tracing::info!("no leader"),
            }
            self.stats.set_term(view.term);
            let epoch = view.term.map(|t| t.epoch);
            let n = self.hold.drop_unless(|h| Some(h.epoch) == epoch);
            self.pending[DropReason::StaleEpoch as usize] += n as u64;
        }
        self.refresh(now);
    }

    /// Becomes active (holds the gatekeeper key) or standby. A standby
    /// holds nothing.
    pub fn set_active(&mut self, active: bool) {
        if active != self.active {
            tracing::info!(
                "{}",
                if active {
                    "active: forwarding effects"
                } else {
                    "standby: forwarding nothing"
                }
            );
        }
        self.active = active;
        self.stats.set_active(active);
        if !active {
            let n = self.hold.clear();
            self.pending[DropReason::Standby as usize] += n as u64;
        }
    }

    /// Takes the commit watch's latest state.
    pub fn set_commit(&mut self, state: CommitState) {
        self.commit = state;
    }

    /// Re-evaluates the fail-closed state at `now`.
    pub fn refresh(&mut self, now: Instant) {
        let closed = !self.view.is_confirmed(now, self.ttl);
        if closed != self.closed {
            if closed {
                tracing::warn!(
                    ttl = ?self.ttl,
                    "etcd has not confirmed the leadership for a lease TTL: failing closed"
                );
            } else {
                tracing::info!("etcd confirms the leadership: forwarding allowed");
            }
            self.closed = closed;
            self.stats.set_fail_closed(closed);
        }
    }

    fn is_fail_closed(&self, now: Instant) -> bool {
        !self.view.is_confirmed(now, self.ttl)
    }

    /// The next moment something changes without input: the oldest held
    /// effect times out, or the confirmation from etcd gets too old.
    pub fn next_deadline(&self) -> Option<Instant> {
        let confirmation = if self.closed {
            None
        } else {
            self.view
                .confirmation_expires(self.ttl)
                .map(|t| t + Duration::from_millis(1))
        };
        match (self.hold.deadline(), confirmation) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Publishes the drops counted since the last call and the queue depth.
    pub fn flush_stats(&mut self) {
        for r in DropReason::ALL {
            let n = std::mem::take(&mut self.pending[r as usize]);
            self.stats.dropped(r, n);
        }
        self.stats.set_held(self.hold.len());
    }

    pub fn held(&self) -> usize {
        self.hold.len()
    }

    pub fn is_active(&self) -> bool {
        self.active
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use super::*;
    use config::Key;
    use leadership::{Epoch, EventNum, Sealer};

    fn id(n: u32) -> ReplicaId {
        ReplicaId::new(n).unwrap()
    }

    fn key(n: u8) -> Key {
        Key::from_bytes([n; 32])
    }

    const LANE: &str = "192.0.2.9:1234";

    struct Rig {
        f: Forwarder,
        stats: Arc<Stats>,
        now: Instant,
    }

    impl Rig {
        fn new(gate: Gate) -> Self {
            Rig::with_stateless_rate(gate, 1000)
        }

        fn with_stateless_rate(gate: Gate, stateless_rate: u32) -> Self {
            let mut keys = Keyring::new();
            keys.insert(id(1), key(1));
            keys.insert(id(2), key(2));
            let stats = Arc::new(Stats::new());
            let now = Instant::now();
            let mut f = Forwarder::new(
                keys,
                gate,
                3,
                Duration::from_secs(10),
                Duration::from_secs(2),
                stateless_rate,
                stats.clone(),
            );
            f.set_active(true);
            f.set_view(view(1, 5, now), now);
            Rig { f, stats, now }
        }

        fn admit(&mut self, bytes: &[u8]) -> Decision<'static> {
            let bytes: &'static [u8] = Box::leak(bytes.to_vec().into_boxed_slice());
            let d = self.f.admit(bytes, false, self.now);
            self.f.flush_stats();
            d
        }
    }

    fn view(leader: u32, epoch: u64, at: Instant) -> LeaderView {
        LeaderView {
            term: Some(Term {
                leader: id(leader),
                epoch: Epoch(epoch),
            }),
            revision: Epoch(epoch).revision(),
            confirmed_at: Some(at),
        }
    }

    fn forwarded(d: Decision<'_>) -> Option<Vec<u8>> {
        match d {
            Decision::Forward { lane, payload } => {
                assert_eq!(lane, LANE.parse().unwrap());
                Some(payload.to_vec())
            }
            _ => None,
        }
    }

    #[test]
    fn only_the_current_leader_and_epoch_pass() {
        let mut r = Rig::new(Gate::Ungated);
        let lane = LANE.parse().unwrap();
        let mut leader = Sealer::new(id(1), Epoch(5), key(1));
        let mut other = Sealer::new(id(2), Epoch(5), key(2));
        let mut old = Sealer::new(id(1), Epoch(4), key(1));

        let e = leader.seal(EventNum(1), lane, b"a").unwrap();
        assert_eq!(forwarded(r.admit(&e)), Some(b"a".to_vec()));
        assert_eq!(
            r.admit(&e),
            Decision::Dropped(DropReason::Replay),
            "the same envelope twice"
        );
        let e = other.seal(EventNum(1), lane, b"b").unwrap();
        assert_eq!(r.admit(&e), Decision::Dropped(DropReason::NotLeader));
        let e = old.seal(EventNum(1), lane, b"c").unwrap();
        assert_eq!(r.admit(&e), Decision::Dropped(DropReason::StaleEpoch));

        // Replica 2's key cannot speak for replica 1.
        let mut forged = Sealer::new(id(1), Epoch(5), key(2));
        forged.seal(EventNum(1), lane, b"x").unwrap();
        let e = forged.seal(EventNum(1), lane, b"x").unwrap();
        assert_eq!(r.admit(&e), Decision::Dropped(DropReason::BadMac));
        assert_eq!(r.admit(&e[..20]), Decision::Dropped(DropReason::Malformed));
        let mut stranger = Sealer::new(id(7), Epoch(5), key(7));
        let e = stranger.seal(EventNum(1), lane, b"x").unwrap();
        assert_eq!(r.admit(&e), Decision::Dropped(DropReason::UnknownReplica));

        // The forged envelope did not burn sequence 2 of the real leader.
        let e = leader.seal(EventNum(2), lane, b"d").unwrap();
        assert_eq!(forwarded(r.admit(&e)), Some(b"d".to_vec()));

        // A new term: the old leader's next envelope is dropped at once.
        r.f.set_view(view(2, 9, r.now), r.now);
        let e = leader.seal(EventNum(3), lane, b"e").unwrap();
        assert_eq!(r.admit(&e), Decision::Dropped(DropReason::NotLeader));
        let mut two = Sealer::new(id(2), Epoch(9), key(2));
        let e = two.seal(EventNum(3), lane, b"f").unwrap();
        assert_eq!(forwarded(r.admit(&e)), Some(b"f".to_vec()));

        let s = r.stats.snapshot();
        assert_eq!(s.leadership_changes, 1);
        assert_eq!((s.leader, s.epoch), (2, 9));
        for reason in [
            DropReason::Replay,
            DropReason::StaleEpoch,
            DropReason::BadMac,
            DropReason::Malformed,
            DropReason::UnknownReplica,
        ] {
            assert_eq!(s.dropped(reason), 1, "{reason:?}");
        }
        assert_eq!(s.dropped(DropReason::NotLeader), 2);
    }

    /// The keyring, counting the MACs it computes.
    struct CountingKeys {
        ring: Keyring,
        macs: Rc<Cell<u32>>,
    }

    impl Keys for CountingKeys {
        fn contains(&self, replica: ReplicaId) -> bool {
            self.ring.contains(replica)
        }

        fn verify<'a>(&self, envelope: Unverified<'a>) -> Result<Envelope<'a>, OpenError> {
            self.macs.set(self.macs.get() + 1);
            self.ring.verify(envelope)
        }
    }

    #[test]
    fn the_wrong_replica_or_term_is_dropped_before_any_mac() {
        let macs = Rc::new(Cell::new(0));
        let mut ring = Keyring::new();
        ring.insert(id(1), key(1));
        ring.insert(id(2), key(2));
        let stats = Arc::new(Stats::new());
        let now = Instant::now();
        let mut f = Forwarder::new(
            CountingKeys {
                ring,
                macs: macs.clone(),
            },
            Gate::Ungated,
            3,
            Duration::from_secs(10),
            Duration::from_secs(2),
            1000,
            stats.clone(),
        );
        f.set_active(true);
        f.set_view(view(1, 5, now), now);
        let lane = LANE.parse().unwrap();
        // Every envelope below is sealed with a key that fails its MAC: had
        // the MAC been checked first, each would be dropped as bad_mac.
        let forged = |replica: u32, epoch: u64| {
            Sealer::new(id(replica), Epoch(epoch), key(9))
                .seal(EventNum(1), lane, b"x")
                .unwrap()
        };
        for (bytes, reason) in [
            (forged(7, 5), DropReason::UnknownReplica),
            (forged(2, 5), DropReason::NotLeader),
            (forged(1, 4), DropReason::StaleEpoch),
            (forged(1, 6), DropReason::StaleEpoch),
            (forged(1, 5)[..50].to_vec(), DropReason::Malformed),
        ] {
            assert_eq!(f.admit(&bytes, false, now), Decision::Dropped(reason));
        }
        // etcd unheard from for longer than the TTL: fail closed, no MAC.
        let later = now + Duration::from_secs(3);
        assert_eq!(
            f.admit(&forged(1, 5), false, later),
            Decision::Dropped(DropReason::FailClosed)
        );
        assert_eq!(macs.get(), 0, "no MAC for what a cheap check drops");

        // The current leader's envelopes are the ones that cost a MAC.
        assert_eq!(
            f.admit(&forged(1, 5), false, now),
            Decision::Dropped(DropReason::BadMac)
        );
        let mut leader = Sealer::new(id(1), Epoch(5), key(1));
        let good = leader.seal(EventNum(1), lane, b"ok").unwrap();
        assert!(matches!(
            f.admit(&good, false, now),
            Decision::Forward { payload: b"ok", .. }
        ));
        assert_eq!(macs.get(), 2);

        f.flush_stats();
        let s = stats.snapshot();
        for (reason, n) in [
            (DropReason::UnknownReplica, 1),
            (DropReason::NotLeader, 1),
            (DropReason::StaleEpoch, 2),
            (DropReason::Malformed, 1),
            (DropReason::FailClosed, 1),
            (DropReason::BadMac, 1),
        ] {
            assert_eq!(s.dropped(reason), n, "{reason:?}");
        }
    }

    #[test]
    fn standby_and_fail_closed_forward_nothing() {
        let mut r = Rig::new(Gate::Ungated);
        let lane = LANE.parse().unwrap();
        let mut leader = Sealer::new(id(1), Epoch(5), key(1));

        r.f.set_active(false);
        let e = leader.seal(EventNum(1), lane, b"a").unwrap();
        assert_eq!(r.admit(&e), Decision::Dropped(DropReason::Standby));
        r.f.set_active(true);

        // The view was confirmed at `now`; 2 s later it still counts, past
        // that it does not.
        r.now += Duration::from_secs(2);
        assert!(forwarded(r.admit(&e)).is_some());
        r.now += Duration::from_millis(1);
        let e = leader.seal(EventNum(2), lane, b"b").unwrap();
        assert_eq!(r.admit(&e), Decision::Dropped(DropReason::FailClosed));
        r.f.refresh(r.now);
        assert!(r.stats.snapshot().fail_closed);

        // Confirmed again: forwarding resumes; the dropped envelope's
        // sequence was not used up by the fail-closed drop.
        r.f.set_view(view(1, 5, r.now), r.now);
        assert!(!r.stats.snapshot().fail_closed);
        assert_eq!(forwarded(r.admit(&e)), Some(b"b".to_vec()));
        // No leader at all: nothing passes.
        r.f.set_view(
            LeaderView {
                term: None,
                revision: 99,
                confirmed_at: Some(r.now),
            },
            r.now,
        );
        let e = leader.seal(EventNum(3), lane, b"c").unwrap();
        assert_eq!(r.admit(&e), Decision::Dropped(DropReason::NotLeader));
    }

    #[test]
    fn commits_release_in_order_and_fence_old_epochs() {
        let mut r = Rig::new(Gate::Commits(Optimism::Quorum));
        let lane = LANE.parse().unwrap();
        let mut leader = Sealer::new(id(1), Epoch(5), key(1));
        let state = |committed, epoch| CommitState {
            committed: EventNum(committed),
            epoch: Epoch(epoch),
            ..CommitState::default()
        };
        // The log has not applied this leader's fence yet: hold.
        r.f.set_commit(state(10, 4));
        for (ev, p) in [(11, b"a"), (12, b"b"), (13, b"c")] {
            let e = leader.seal(EventNum(ev), lane, p).unwrap();
            assert_eq!(r.admit(&e), Decision::Held);
        }
        let e = leader.seal(EventNum(14), lane, b"d").unwrap();
        assert_eq!(r.admit(&e), Decision::Dropped(DropReason::QueueFull));
        let mut out = Vec::new();
        r.f.release(r.now, &mut out);
        assert!(out.is_empty());

        // Fenced and committed up to 12: two leave, in order.
        r.f.set_commit(state(12, 5));
        r.f.release(r.now, &mut out);
        let got: Vec<_> = out.iter().map(|e| e.payload.clone()).collect();
        assert_eq!(got, [b"a".to_vec(), b"b".to_vec()]);
        out.clear();
        // A committed event behind a held one waits its turn.
        let e = leader.seal(EventNum(12), lane, b"late").unwrap();
        assert_eq!(r.admit(&e), Decision::Held);
        r.f.set_commit(state(13, 5));
        r.f.release(r.now, &mut out);
        let got: Vec<_> = out.iter().map(|e| e.payload.clone()).collect();
        assert_eq!(got, [b"c".to_vec(), b"late".to_vec()]);
        out.clear();

        // Held past the timeout: dropped, not sent.
        let e = leader.seal(EventNum(20), lane, b"slow").unwrap();
        assert_eq!(r.admit(&e), Decision::Held);
        // The earlier of the hold timeout and the confirmation's expiry.
        assert_eq!(
            r.f.next_deadline(),
            Some(r.now + Duration::from_millis(2001))
        );
        r.f.set_view(view(1, 5, r.now + Duration::from_secs(9)), r.now);
        assert_eq!(r.f.next_deadline(), Some(r.now + Duration::from_secs(10)));
        r.f.set_commit(state(20, 5));
        r.f.release(r.now + Duration::from_secs(10), &mut out);
        assert!(out.is_empty());

        // The log fences a newer epoch: held and new effects are stale.
        let e = leader.seal(EventNum(21), lane, b"x").unwrap();
        assert_eq!(r.admit(&e), Decision::Held);
        r.f.set_commit(state(20, 6));
        r.f.release(r.now, &mut out);
        assert!(out.is_empty());
        let e = leader.seal(EventNum(22), lane, b"y").unwrap();
        assert_eq!(r.admit(&e), Decision::Dropped(DropReason::StaleEpoch));
        r.f.flush_stats();
        let s = r.stats.snapshot();
        assert_eq!(s.dropped(DropReason::QueueFull), 1);
        assert_eq!(s.dropped(DropReason::HeldTooLong), 1);
        assert_eq!(s.dropped(DropReason::StaleEpoch), 2);
        assert_eq!(s.held, 0);
    }

    #[test]
    fn a_new_term_drops_what_the_old_one_held() {
        let mut r = Rig::new(Gate::Commits(Optimism::Quorum));
        let lane = LANE.parse().unwrap();
        let mut leader = Sealer::new(id(1), Epoch(5), key(1));
        let e = leader.seal(EventNum(1), lane, b"a").unwrap();
        assert_eq!(r.admit(&e), Decision::Held);
        r.f.set_view(view(2, 7, r.now), r.now);
        r.f.flush_stats();
        let s = r.stats.snapshot();
        assert_eq!((s.held, s.dropped(DropReason::StaleEpoch)), (0, 1));
    }

    #[test]
    fn event_0_leaves_at_once_only_if_it_reveals_no_state_and_within_the_rate() {
        let mut r = Rig::with_stateless_rate(Gate::Commits(Optimism::Quorum), 2);
        let lane = LANE.parse().unwrap();
        let mut leader = Sealer::new(id(1), Epoch(5), key(1));
        // Nothing is committed in epoch 5, yet a STUN answer leaves.
        let stun = ames::Stun::binding_response([3; 12], "192.0.2.9:1234".parse().unwrap());
        let e = leader.seal(EventNum::NONE, lane, &stun).unwrap();
        assert_eq!(forwarded(r.admit(&e)), Some(stun.clone()));
        // The ship's own Ames packet (no origin lane) would reveal its
        // state: it needs a commit like any effect.
        let own = ames::Packet {
            prelude: ames::Prelude::new(ames::Ship::new(1), ames::Ship::new(2)),
            body: ames::Body::Ames(b"state".to_vec()),
        };
        let e = leader.seal(EventNum::NONE, lane, &own.to_bytes()).unwrap();
        assert_eq!(r.admit(&e), Decision::Dropped(DropReason::NotStateless));
        let mut relayed = own.clone();
        relayed.prelude.origin = Some("198.51.100.1:4000".parse().unwrap());
        let e = leader
            .seal(EventNum::NONE, lane, &relayed.to_bytes())
            .unwrap();
        assert_eq!(forwarded(r.admit(&e)), Some(relayed.to_bytes()));
        // The budget (2 a second) is spent.
        let e = leader.seal(EventNum::NONE, lane, &stun).unwrap();
        assert_eq!(r.admit(&e), Decision::Dropped(DropReason::StatelessRate));
        // Only the leader's, as for effects.
        let mut other = Sealer::new(id(2), Epoch(5), key(2));
        let e = other.seal(EventNum::NONE, lane, &stun).unwrap();
        assert_eq!(r.admit(&e), Decision::Dropped(DropReason::NotLeader));
        // And an effect of event 1 still waits for its commit.
        let e = leader.seal(EventNum(1), lane, b"effect").unwrap();
        assert_eq!(r.admit(&e), Decision::Held);
        let s = r.stats.snapshot();
        assert_eq!(
            (
                s.dropped(DropReason::NotStateless),
                s.dropped(DropReason::StatelessRate)
            ),
            (1, 1)
        );
    }
}
