//! Which events a node's disk holds, entry by entry, counting only the
//! batches the fence will accept.
//!
//! The gatekeeper's `leader` and `all` policies (docs/SPEC.md §3) release
//! effects by what is on disk before it is committed. A batch on disk that
//! the fence will refuse (an old leader's, a duplicate) must not count, so
//! the log store runs the fence over every entry it writes, in log order,
//! and remembers the fence state after each one. Entries that commit are
//! applied in the same order from the same starting point, so the state
//! after entry *i* here is the state the state machine will reach there.

use std::collections::VecDeque;

use eventlog_client::LogIndex;

use crate::command::Command;
use crate::fence::FenceState;
use crate::raft::EntryPayload;

#[derive(Debug, Default)]
pub(crate) struct Tracker {
    /// The index of `states[0]`'s entry.
    next: u64,
    /// The state before entry `next`.
    base: FenceState,
    /// The state after each entry from `next` on.
    states: VecDeque<FenceState>,
    /// The last index on disk (fdatasync returned), if any.
    flushed: Option<u64>,
}

impl Tracker {
    /// Starts over at log index `next` from state `base` (what the snapshot
    /// the state machine starts from holds).
    pub fn reset(&mut self, next: LogIndex, base: FenceState) {
        let next = next.get();
        self.next = next;
        self.base = base;
        self.states.clear();
        self.flushed = self.flushed.filter(|f| *f < next);
    }

    fn last_state(&self) -> FenceState {
        self.states.back().copied().unwrap_or(self.base)
    }

    /// Entry `index` was written. Entries come in log order; one that
    /// replaces later ones (after a conflict) drops them first.
    pub fn append(&mut self, index: LogIndex, payload: &EntryPayload) {
        let index = index.get();
        if index < self.next {
            return;
        }
        let pos = (index - self.next) as usize;
        if pos > self.states.len() {
            // A hole: the store never writes one. Start over from what is
            // known rather than guess.
            tracing::warn!(index, next = self.next, "durability tracker saw a hole");
            return;
        }
        self.states.truncate(pos);
        let prev = self.last_state();
        let state = match payload {
            openraft::EntryPayload::Normal(Command::Append(b)) => prev
                .check(b.epoch, b.first, b.count(), b.by)
                .unwrap_or(prev),
            _ => prev,
        };
        self.states.push_back(state);
    }

    /// Entries after `index` are gone (`None`: all of them).
    pub fn truncate_after(&mut self, index: Option<LogIndex>) {
        let index = index.map(LogIndex::get);
        let keep = match index {
            Some(i) if i >= self.next => (i - self.next + 1) as usize,
            _ => 0,
        };
        self.states.truncate(keep);
        if let Some(f) = self.flushed {
            self.flushed = index.map(|i| i.min(f));
        }
    }

    /// Entries up to `index` are purged: their states are no longer needed.
    pub fn purge(&mut self, index: LogIndex) {
        while self.next <= index.get() {
            match self.states.pop_front() {
                Some(s) => {
                    self.base = s;
                    self.next += 1;
                }
                None => break,
            }
        }
    }

    /// Everything up to `index` is on disk.
    pub fn flushed(&mut self, index: LogIndex) {
        let index = index.get();
        let end = self.next + self.states.len() as u64;
        if index < end {
            self.flushed = Some(self.flushed.map_or(index, |f| f.max(index)));
        }
    }

    pub fn flushed_index(&self) -> Option<LogIndex> {
        self.flushed.map(LogIndex)
    }

    /// The fence state after entry `index`: `None` if that is before what
    /// this node tracks (the caller then knows less and must assume less).
    pub fn at(&self, index: LogIndex) -> Option<FenceState> {
        let index = index.get();
        if index + 1 == self.next {
            return Some(self.base);
        }
        if index < self.next {
            return None;
        }
        let pos = (index - self.next) as usize;
        Some(
            self.states
                .get(pos)
                .copied()
                .unwrap_or_else(|| self.last_state()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Batch, NewEvent};
    use crate::types::{Epoch, EventNum};

    fn batch(epoch: u64, first: u64, n: u64) -> EntryPayload {
        openraft::EntryPayload::Normal(Command::Append(Batch {
            epoch: Epoch(epoch),
            first: EventNum(first),
            events: (0..n)
                .map(|_| NewEvent {
                    mug: 0,
                    data: bytes::Bytes::new(),
                })
                .collect(),
            retry: false,
            by: None,
        }))
    }

    fn last(t: &Tracker, i: u64) -> Option<u64> {
        t.at(LogIndex(i)).map(|s| s.last.get())
    }

    #[test]
    fn counts_only_batches_the_fence_accepts() {
        let mut t = Tracker::default();
        t.append(LogIndex(0), &openraft::EntryPayload::Blank);
        t.append(LogIndex(1), &batch(5, 1, 3));
        t.append(LogIndex(2), &batch(4, 4, 3)); // stale epoch: refused
        t.append(LogIndex(3), &batch(5, 9, 1)); // gap: refused
        t.append(LogIndex(4), &batch(5, 4, 2));
        assert_eq!(last(&t, 0), Some(0));
        assert_eq!(last(&t, 1), Some(3));
        assert_eq!(last(&t, 3), Some(3));
        assert_eq!(last(&t, 4), Some(5));
        assert_eq!(last(&t, 99), Some(5));
    }

    #[test]
    fn follows_truncation_purge_and_flushes() {
        let mut t = Tracker::default();
        t.reset(
            LogIndex(10),
            FenceState {
                last: EventNum(20),
                highest: Epoch(2),
                holder: None,
            },
        );
        t.append(LogIndex(10), &batch(2, 21, 2));
        t.append(LogIndex(11), &batch(2, 23, 2));
        t.flushed(LogIndex(11));
        assert_eq!(t.flushed_index(), Some(LogIndex(11)));
        t.truncate_after(Some(LogIndex(10)));
        assert_eq!(t.flushed_index(), Some(LogIndex(10)));
        // A new leader's entry 11 replaces the old one.
        t.append(LogIndex(11), &batch(3, 23, 1));
        assert_eq!(last(&t, 11), Some(23));
        assert_eq!(last(&t, 9), Some(20));
        assert_eq!(last(&t, 8), None);
        t.purge(LogIndex(10));
        assert_eq!(last(&t, 10), Some(22));
        assert_eq!(last(&t, 9), None);
        assert_eq!(last(&t, 11), Some(23));
    }
}
