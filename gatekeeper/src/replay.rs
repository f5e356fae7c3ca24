//! The replay window (docs/SPEC.md §7.2): each sequence number of a replica
//! and epoch is accepted at most once.

use std::collections::HashMap;

use config::ReplicaId;
use leadership::Epoch;

/// Bits in a window: how far below the highest sequence number seen an
/// envelope may still arrive (reordered) and be accepted.
pub const WINDOW_BITS: u64 = 4096;

const WORDS: usize = (WINDOW_BITS / 64) as usize;

/// The highest sequence number accepted and a bitmap of the
/// [`WINDOW_BITS`] numbers at and below it.
#[derive(Clone)]
pub struct ReplayWindow {
    highest: u64,
    bits: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayWindow {
    /// A window that has accepted nothing: every number from 1 is new.
    pub const fn new() -> Self {
        Self {
            highest: 0,
            bits: [0; WORDS],
        }
    }

    /// The highest sequence number accepted so far (0 for none).
    pub fn highest(&self) -> u64 {
        self.highest
    }

    /// Accepts `seq` if it is new: above the highest, or inside the window
    /// and not seen. Returns false for a replay (or 0, which is never sent).
    pub fn accept(&mut self, seq: u64) -> bool {
        if seq == 0 {
            return false;
        }
        if seq > self.highest {
            let ahead = seq - self.highest;
            if ahead >= WINDOW_BITS {
                self.bits = [0; WORDS];
            } else {
                // Numbers between the old highest and `seq` are not seen yet.
                for s in self.highest + 1..seq {
                    self.clear(s);
                }
            }
            self.highest = seq;
            self.set(seq);
            return true;
        }
        if self.highest - seq >= WINDOW_BITS || self.is_set(seq) {
            return false;
        }
        self.set(seq);
        true
    }

    fn index(seq: u64) -> (usize, u64) {
        let i = seq % WINDOW_BITS;
        ((i / 64) as usize, 1 << (i % 64))
    }

    fn set(&mut self, seq: u64) {
        let (w, b) = Self::index(seq);
        self.bits[w] |= b;
    }

    fn clear(&mut self, seq: u64) {
        let (w, b) = Self::index(seq);
        self.bits[w] &= !b;
    }

    fn is_set(&self, seq: u64) -> bool {
        let (w, b) = Self::index(seq);
        self.bits[w] & b != 0
    }
}

/// Windows per (replica, epoch). Only the current leader's current epoch is
/// ever accepted, but the gatekeeper keeps a few recent ones: when etcd goes
/// away and comes back with the same term, its window must still be there.
pub struct ReplayWindows {
    windows: HashMap<(ReplicaId, Epoch), ReplayWindow>,
    keep: usize,
}

impl ReplayWindows {
    /// Keeps at most `keep` windows, forgetting the lowest epochs first.
    pub fn new(keep: usize) -> Self {
        Self {
            windows: HashMap::new(),
            keep: keep.max(1),
        }
    }

    /// [`ReplayWindow::accept`] in the window of `replica` and `epoch`.
    pub fn accept(&mut self, replica: ReplicaId, epoch: Epoch, seq: u64) -> bool {
        if let Some(w) = self.windows.get_mut(&(replica, epoch)) {
            return w.accept(seq);
        }
        if self.windows.len() >= self.keep {
            let oldest = self.windows.keys().min_by_key(|(_, e)| *e).copied();
            if let Some(k) = oldest {
                self.windows.remove(&k);
            }
        }
        self.windows
            .entry((replica, epoch))
            .or_default()
            .accept(seq)
    }

    pub fn len(&self) -> usize {
        self.windows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[test]
    fn in_order_then_replays() {
        let mut w = ReplayWindow::new();
        assert!(!w.accept(0));
        for s in 1..=10_000 {
            assert!(w.accept(s));
        }
        for s in [10_000, 9_999, 5_905, 1] {
            assert!(!w.accept(s), "{s}");
        }
        assert_eq!(w.highest(), 10_000);
    }

    #[test]
    fn reordered_inside_the_window_is_accepted_once() {
        let mut w = ReplayWindow::new();
        assert!(w.accept(5000));
        assert!(w.accept(905), "5000 - 905 = 4095 is inside the window");
        assert!(!w.accept(904), "4096 below the highest is outside");
        assert!(!w.accept(905));
        assert!(w.accept(4999));
        assert!(!w.accept(4999));
        // A jump of more than a window clears it.
        assert!(w.accept(20_000));
        assert!(w.accept(19_999));
        assert!(!w.accept(4999));
    }

    #[test]
    fn sliding_clears_reused_bits() {
        let mut w = ReplayWindow::new();
        assert!(w.accept(1));
        // 4097 shares bit 1 with seq 1; it must read as new.
        assert!(w.accept(4097));
        assert!(!w.accept(1));
        assert!(w.accept(4096));
    }

    #[test]
    fn windows_are_per_replica_and_epoch() {
        let a = ReplicaId::new(1).unwrap();
        let b = ReplicaId::new(2).unwrap();
        let mut ws = ReplayWindows::new(2);
        assert!(ws.accept(a, Epoch(1), 1));
        assert!(ws.accept(b, Epoch(1), 1));
        assert!(!ws.accept(a, Epoch(1), 1));
        // A third window evicts the lowest epoch.
        assert!(ws.accept(a, Epoch(2), 1));
        assert_eq!(ws.len(), 2);
        assert!(!ws.accept(a, Epoch(2), 1));
    }

    proptest! {
        /// Against a model that remembers everything: the window accepts a
        /// number iff it was never accepted and is within the window of the
        /// highest accepted so far.
        #[test]
        fn matches_a_model(seqs in proptest::collection::vec(1u64..12_000, 1..600)) {
            let mut w = ReplayWindow::new();
            let mut seen = HashSet::new();
            let mut highest = 0u64;
            for s in seqs {
                let fresh = !seen.contains(&s) && (s > highest || highest - s < WINDOW_BITS);
                prop_assert_eq!(w.accept(s), fresh, "seq {}", s);
                if fresh {
                    seen.insert(s);
                    highest = highest.max(s);
                }
            }
        }
    }
}
