//! Holding effects until their events are durable (docs/SPEC.md §3, §6.4
//! rule 4): the commit gate's verdict, and the bounded queue that releases
//! effects in arrival order.

use std::collections::VecDeque;
use std::time::Duration;

use config::Optimism;
use leadership::{CommitState, Epoch, EventNum};
use tokio::time::Instant;

/// What the commit watch says about one effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Its event is durable per the policy, in the epoch it was computed in.
    Release,
    /// Not yet: the event is not durable, or the log has not applied the
    /// leader's fence yet (its epoch is behind the envelope's).
    Hold,
    /// The log has fenced a newer epoch: this effect's event can never
    /// commit in its own term, so it must never leave.
    Stale,
}

/// Rule 4 of §6.4: the commit watch's epoch must equal the envelope's, and
/// the event must be durable per `policy`.
pub fn verdict(state: &CommitState, policy: Optimism, epoch: Epoch, event: EventNum) -> Verdict {
    if state.epoch > epoch {
        Verdict::Stale
    } else if state.epoch < epoch || event > state.releasable(policy) {
        Verdict::Hold
    } else {
        Verdict::Release
    }
}

/// One held effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held<T> {
    pub epoch: Epoch,
    pub event: EventNum,
    /// When it arrived: it is dropped at `since + timeout`.
    pub since: Instant,
    pub item: T,
}

/// Effects waiting for their events, in arrival order, at most `limit` of
/// them, each for at most `timeout`.
#[derive(Debug)]
pub struct HoldQueue<T> {
    items: VecDeque<Held<T>>,
    limit: usize,
    timeout: Duration,
}

impl<T> HoldQueue<T> {
    pub fn new(limit: usize, timeout: Duration) -> Self {
        Self {
            items: VecDeque::new(),
            limit,
            timeout,
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Appends an effect, or gives it back if the queue is full.
    pub fn push(&mut self, held: Held<T>) -> Result<(), Held<T>> {
        if self.items.len() >= self.limit {
            return Err(held);
        }
        self.items.push_back(held);
        Ok(())
    }

    /// When the oldest effect times out.
    pub fn deadline(&self) -> Option<Instant> {
        self.items.front().map(|h| h.since + self.timeout)
    }

    /// Takes the oldest effect off if it has waited `timeout` by `now`.
    pub fn pop_expired(&mut self, now: Instant) -> Option<Held<T>> {
        match self.deadline() {
            Some(d) if d <= now => self.items.pop_front(),
            _ => None,
        }
    }

    /// Takes the oldest effect off if `decide` says it is done waiting
    /// (released or stale), with that verdict. Effects behind one that must
    /// still wait keep waiting too: effects leave in arrival order.
    pub fn pop_decided(
        &mut self,
        decide: impl Fn(&Held<T>) -> Verdict,
    ) -> Option<(Verdict, Held<T>)> {
        let v = decide(self.items.front()?);
        match v {
            Verdict::Hold => None,
            _ => self.items.pop_front().map(|h| (v, h)),
        }
    }

    /// Removes every effect that fails `keep`, returning how many.
    pub fn drop_unless(&mut self, keep: impl Fn(&Held<T>) -> bool) -> usize {
        let before = self.items.len();
        self.items.retain(keep);
        before - self.items.len()
    }

    /// Removes everything, returning how many.
    pub fn clear(&mut self) -> usize {
        let n = self.items.len();
        self.items.clear();
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(committed: u64, epoch: u64) -> CommitState {
        CommitState {
            committed: EventNum(committed),
            epoch: Epoch(epoch),
            leader_durable: EventNum(committed + 5),
            all_durable: EventNum(committed.saturating_sub(5)),
        }
    }

    #[test]
    fn verdict_follows_rule_four() {
        let s = state(10, 3);
        let q = Optimism::Quorum;
        assert_eq!(verdict(&s, q, Epoch(3), EventNum(10)), Verdict::Release);
        assert_eq!(verdict(&s, q, Epoch(3), EventNum(11)), Verdict::Hold);
        assert_eq!(verdict(&s, q, Epoch(4), EventNum(1)), Verdict::Hold);
        assert_eq!(verdict(&s, q, Epoch(2), EventNum(1)), Verdict::Stale);
        assert_eq!(
            verdict(&s, Optimism::Leader, Epoch(3), EventNum(15)),
            Verdict::Release
        );
        assert_eq!(
            verdict(&s, Optimism::All, Epoch(3), EventNum(6)),
            Verdict::Hold
        );
    }

    #[test]
    fn releases_in_arrival_order_only() {
        let t = Instant::now();
        let mut q = HoldQueue::new(3, Duration::from_secs(1));
        for (i, ev) in [5, 3, 6].into_iter().enumerate() {
            q.push(Held {
                epoch: Epoch(1),
                event: EventNum(ev),
                since: t,
                item: i,
            })
            .unwrap();
        }
        assert!(
            q.push(Held {
                epoch: Epoch(1),
                event: EventNum(7),
                since: t,
                item: 9
            })
            .is_err()
        );
        let s = state(4, 1);
        let decide = |h: &Held<usize>| verdict(&s, Optimism::Quorum, h.epoch, h.event);
        // Event 3 is committed but waits behind event 5.
        assert!(q.pop_decided(decide).is_none());
        let s = state(5, 1);
        let decide = |h: &Held<usize>| verdict(&s, Optimism::Quorum, h.epoch, h.event);
        assert_eq!(q.pop_decided(decide).unwrap().1.item, 0);
        assert_eq!(q.pop_decided(decide).unwrap().1.item, 1);
        assert!(q.pop_decided(decide).is_none());
        assert_eq!(q.len(), 1);
        assert_eq!(q.deadline(), Some(t + Duration::from_secs(1)));
        assert!(q.pop_expired(t).is_none());
        assert_eq!(q.pop_expired(t + Duration::from_secs(1)).unwrap().item, 2);
        assert!(q.is_empty());
    }
}
