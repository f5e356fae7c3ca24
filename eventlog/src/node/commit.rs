//! The commit view: the commit state the leader publishes (docs/SPEC.md §3,
//! §6.4), decided from plain values read off Raft's metrics, the state
//! machine and the log's durability tracker. What the gatekeeper may
//! release follows from it, so each of its rules has a test below.

use std::time::Duration;

use eventlog_client::LogIndex;

use crate::app::CommitView;
use crate::fence::FenceState;
use crate::ids::NodeId;
use crate::types::{CommitState, EventNum};

/// What the commit view is decided from.
pub(crate) struct Inputs<'a> {
    /// Whether this node leads; only the leader knows every voter's
    /// progress.
    pub leading: bool,
    /// Whether its leadership is confirmed now ([`leadership_confirmed`]):
    /// no other leader can have been elected.
    pub confirmed: bool,
    /// The leader durable number last published while it was confirmed,
    /// in this term (nothing at its start).
    pub confirmed_durable: EventNum,
    /// Who this node believes leads.
    pub current_leader: Option<NodeId>,
    /// What the state machine has applied: the last event and the highest
    /// epoch.
    pub applied: FenceState,
    /// The state machine's purge point: every event at or below it is on
    /// every voter's disk (each checkpointed it).
    pub purge_point: EventNum,
    /// The last index on this node's disk.
    pub flushed: Option<LogIndex>,
    /// Each other voter's last index on its disk, as far as replication
    /// knows (`None`: not known yet).
    pub matched: &'a [(NodeId, Option<LogIndex>)],
    /// The last event in the entries up to an index, counting only the
    /// batches the fence accepts; `None` for an index before what the
    /// tracker holds.
    pub on_disk: &'a dyn Fn(LogIndex) -> Option<EventNum>,
}

/// The commit view those inputs give.
pub(crate) fn commit_view(i: &Inputs<'_>) -> CommitView {
    if !i.leading {
        return CommitView::NotLeader {
            leader: i.current_leader,
        };
    }
    let committed = i.applied.last;
    let on_disk = |index: Option<LogIndex>| match index {
        None => Some(EventNum::NONE),
        Some(index) => (i.on_disk)(index),
    };
    // Only while no other leader can have been elected: a deposed leader
    // that has not noticed yet keeps writing entries that never commit.
    let on_leader_disk = if i.confirmed {
        on_disk(i.flushed).unwrap_or(i.purge_point)
    } else {
        i.confirmed_durable
    };
    // What is committed is on the leader's disk, whatever the tracker says.
    let leader_durable = on_leader_disk.max(committed);
    // The lowest index every voter has; unknown if any voter's is.
    let lowest = i
        .matched
        .iter()
        .fold(i.flushed, |lowest, (_, matched)| match (lowest, matched) {
            (Some(a), Some(b)) => Some(a.min(*b)),
            _ => None,
        });
    let all_durable = on_disk(lowest).unwrap_or(i.purge_point).min(leader_durable);
    CommitView::Leader(CommitState {
        committed,
        epoch: i.applied.highest,
        leader_durable,
        all_durable,
    })
}

/// Whether a leader is confirmed now: it alone is a quorum, or a quorum
/// acknowledged an AppendEntries (or heartbeat) it sent less than `lease`
/// ago (`quorum_acked_age`). openraft's followers do not vote for another
/// candidate for `lease` (its leader lease, `election_timeout_max`) after
/// they accepted the leader's message, so while this holds no other leader
/// exists. Ages are measured on this node's monotonic clock; a pause
/// (SIGSTOP, a VM freeze) only makes them older.
pub(crate) fn leadership_confirmed(
    leading: bool,
    self_quorum: bool,
    quorum_acked_age: Option<Duration>,
    lease: Duration,
) -> bool {
    leading && (self_quorum || quorum_acked_age.is_some_and(|age| age < lease))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Epoch;

    /// Entries 1..=10 on disk; entry i holds events up to 10 * i; the
    /// tracker knows nothing before entry 3.
    fn tracked(index: LogIndex) -> Option<EventNum> {
        (index.get() >= 3).then(|| EventNum(10 * index.get().min(10)))
    }

    fn leader<'a>(
        flushed: Option<LogIndex>,
        matched: &'a [(NodeId, Option<LogIndex>)],
        applied: u64,
        purge_point: u64,
    ) -> Inputs<'a> {
        Inputs {
            leading: true,
            confirmed: true,
            confirmed_durable: EventNum::NONE,
            current_leader: Some(NodeId(1)),
            applied: FenceState {
                last: EventNum(applied),
                highest: Epoch(4),
                holder: None,
            },
            purge_point: EventNum(purge_point),
            flushed,
            matched,
            on_disk: &tracked,
        }
    }

    fn state(view: CommitView) -> CommitState {
        match view {
            CommitView::Leader(s) => s,
            other => panic!("not a leader's view: {other:?}"),
        }
    }

    fn at(index: u64) -> Option<LogIndex> {
        Some(LogIndex(index))
    }

    #[test]
    fn a_follower_publishes_only_whom_it_believes_leads() {
        let mut i = leader(at(9), &[], 50, 0);
        i.leading = false;
        i.current_leader = Some(NodeId(2));
        assert_eq!(
            commit_view(&i),
            CommitView::NotLeader {
                leader: Some(NodeId(2))
            }
        );
        i.current_leader = None;
        assert_eq!(commit_view(&i), CommitView::NotLeader { leader: None });
    }

    #[test]
    fn committed_and_epoch_are_what_the_state_machine_applied() {
        let s = state(commit_view(&leader(at(9), &[], 50, 0)));
        assert_eq!((s.committed, s.epoch), (EventNum(50), Epoch(4)));
    }

    #[test]
    fn every_voter_matched_gives_the_lowest_index_on_every_disk() {
        let matched = [(NodeId(2), at(7)), (NodeId(3), at(5))];
        let s = state(commit_view(&leader(at(9), &matched, 40, 0)));
        assert_eq!(s.leader_durable, EventNum(90));
        assert_eq!(s.all_durable, EventNum(50));
    }

    #[test]
    fn the_leader_behind_a_voter_bounds_all_durable() {
        let matched = [(NodeId(2), at(9)), (NodeId(3), at(8))];
        let s = state(commit_view(&leader(at(6), &matched, 40, 0)));
        assert_eq!(s.leader_durable, EventNum(60));
        assert_eq!(s.all_durable, EventNum(60));
    }

    #[test]
    fn a_voter_not_matched_yet_makes_all_durable_nothing() {
        let matched = [(NodeId(2), at(9)), (NodeId(3), None)];
        let s = state(commit_view(&leader(at(9), &matched, 40, 30)));
        assert_eq!(s.leader_durable, EventNum(90));
        assert_eq!(s.all_durable, EventNum::NONE);
    }

    #[test]
    fn nothing_on_the_leaders_disk_counts_only_what_is_committed() {
        let matched = [(NodeId(2), at(9))];
        let s = state(commit_view(&leader(None, &matched, 0, 0)));
        assert_eq!(s.leader_durable, EventNum::NONE);
        assert_eq!(s.all_durable, EventNum::NONE);
    }

    #[test]
    fn an_index_before_the_tracker_falls_back_to_the_purge_point() {
        // The leader's disk: entry 2, before what the tracker holds.
        let s = state(commit_view(&leader(at(2), &[], 10, 15)));
        assert_eq!(s.leader_durable, EventNum(15));
        assert_eq!(s.all_durable, EventNum(15));
        // A voter at entry 1: on every disk is what every voter
        // checkpointed.
        let matched = [(NodeId(2), at(1))];
        let s = state(commit_view(&leader(at(9), &matched, 10, 15)));
        assert_eq!(s.leader_durable, EventNum(90));
        assert_eq!(s.all_durable, EventNum(15));
    }

    #[test]
    fn leader_durable_is_never_below_committed() {
        // Applied beyond what the tracker says is on the leader's disk (a
        // restarted leader whose tracker starts over, say).
        let s = state(commit_view(&leader(at(4), &[], 70, 0)));
        assert_eq!(s.leader_durable, EventNum(70));
        let s = state(commit_view(&leader(at(2), &[], 70, 15)));
        assert_eq!(s.leader_durable, EventNum(70));
    }

    #[test]
    fn all_durable_is_never_above_leader_durable() {
        // The purge point beyond what the leader has on disk: all_durable
        // still stops at leader_durable.
        let matched = [(NodeId(2), at(1))];
        let s = state(commit_view(&leader(at(4), &matched, 20, 60)));
        assert_eq!(s.leader_durable, EventNum(40));
        assert_eq!(s.all_durable, EventNum(40));
    }

    #[test]
    fn a_leader_whose_leadership_is_in_doubt_does_not_advance_leader_durable() {
        let matched = [(NodeId(2), at(9)), (NodeId(3), at(9))];
        let mut i = leader(at(9), &matched, 40, 0);
        i.confirmed = false;
        i.confirmed_durable = EventNum(60);
        let s = state(commit_view(&i));
        // Entries 7 to 9 reached the disk since: they may never commit.
        assert_eq!(s.leader_durable, EventNum(60));
        assert_eq!(s.all_durable, EventNum(60));
        // Never below what is committed.
        i.confirmed_durable = EventNum(10);
        assert_eq!(state(commit_view(&i)).leader_durable, EventNum(40));
        // Confirmed again, it counts its disk again.
        i.confirmed = true;
        assert_eq!(state(commit_view(&i)).leader_durable, EventNum(90));
    }

    #[test]
    fn leadership_is_confirmed_only_within_the_lease_of_a_quorums_ack() {
        let lease = Duration::from_secs(1);
        let ms = Duration::from_millis;
        assert!(leadership_confirmed(true, false, Some(ms(999)), lease));
        assert!(!leadership_confirmed(true, false, Some(ms(1000)), lease));
        assert!(!leadership_confirmed(true, false, None, lease));
        assert!(leadership_confirmed(true, true, None, lease));
        assert!(!leadership_confirmed(false, true, Some(ms(1)), lease));
    }
}
