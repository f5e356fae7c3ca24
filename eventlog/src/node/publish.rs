//! Keeps the commit view current on every change of Raft's metrics, the
//! state machine's position or what is on disk, and refreshes the node's
//! gauges a few times a second from the same readings.

use std::time::{Duration, Instant};

use eventlog_client::LogIndex;
use openraft::rt::WatchReceiver;
use openraft::{RaftMetrics, ServerState};
use tokio::sync::watch;

use super::commit::{Inputs, commit_view, leadership_confirmed};
use crate::app::{CommitView, Running};
use crate::ids::NodeId;
use crate::metrics as m;
use crate::raft::TypeConfig;
use crate::storage::LogStore;
use crate::types::EventNum;

/// Publishes the commit view to `tx` until Raft, the state machine or the
/// log store goes, or nobody listens.
pub(super) async fn publish_commits(running: Running, tx: watch::Sender<CommitView>) {
    let Running { raft, sm, log, .. } = running;
    // openraft's leader lease: followers grant no vote for this long after
    // accepting the leader's message.
    let lease = Duration::from_millis(raft.config().election_timeout_max);
    // The leader durable number last published while the leadership was
    // confirmed, and its term.
    let mut confirmed_durable = (0, EventNum::NONE);
    let mut metrics = raft.metrics();
    let mut position = sm.watch_position();
    let mut flushed = log.watch_flushed();
    drop(sm);
    // Gauges are refreshed a few times a second; the view on every change.
    let mut gauges_at = Instant::now() - Duration::from_secs(1);
    loop {
        let gauges = gauges_at.elapsed() >= Duration::from_millis(250);
        if gauges {
            gauges_at = Instant::now();
        }
        // When the leadership stops being confirmed unless a quorum acks
        // again.
        let mut doubt_in = None;
        let view = {
            let mt = metrics.borrow_and_update();
            let pos = *position.borrow_and_update();
            flushed.borrow_and_update();
            let leading = mt.state == ServerState::Leader;
            let acked_age = mt
                .last_quorum_acked
                .as_ref()
                .map(|t| openraft::Instant::elapsed(&**t));
            let self_quorum = mt.membership_config.voter_ids().eq([mt.id]);
            let confirmed = leadership_confirmed(leading, self_quorum, acked_age, lease);
            if confirmed && !self_quorum {
                doubt_in = acked_age.map(|age| lease.saturating_sub(age));
            }
            if !leading || confirmed_durable.0 != mt.current_term {
                confirmed_durable = (mt.current_term, EventNum::NONE);
            }
            let matched = if leading {
                other_voters(&mt)
            } else {
                Vec::new()
            };
            let tracker = log.tracker().lock().unwrap();
            let flushed = tracker.flushed_index();
            let view = commit_view(&Inputs {
                leading,
                confirmed,
                confirmed_durable: confirmed_durable.1,
                current_leader: mt.current_leader,
                applied: pos.fence,
                purge_point: pos.purge_point,
                flushed,
                matched: &matched,
                on_disk: &|i| tracker.at(i).map(|s| s.last),
            });
            drop(tracker);
            if let (true, CommitView::Leader(s)) = (confirmed, view) {
                confirmed_durable.1 = s.leader_durable;
            }
            if gauges {
                export_gauges(&log, &mt, flushed, &matched, view);
            }
            view
        };
        tx.send_if_modified(|v| {
            let changed = *v != view;
            *v = view;
            changed
        });
        tokio::select! {
            r = metrics.changed() => if r.is_err() { return },
            r = position.changed() => if r.is_err() { return },
            r = flushed.changed() => if r.is_err() { return },
            _ = tx.closed() => return,
            // Refresh the gauges when nothing changes, too, and the view
            // once the leadership's confirmation runs out.
            _ = tokio::time::sleep(doubt_in.map_or(Duration::from_millis(500), |d| {
                d.min(Duration::from_millis(500))
            })) => {}
        }
    }
}

/// Every voter but this node, with its last index on disk as replication
/// knows it.
pub(crate) fn other_voters(mt: &RaftMetrics<TypeConfig>) -> Vec<(NodeId, Option<LogIndex>)> {
    mt.membership_config
        .voter_ids()
        .filter(|v| *v != mt.id)
        .map(|v| {
            let matched = mt
                .replication
                .as_ref()
                .and_then(|r| r.get(&v).cloned().flatten())
                .map(|l| LogIndex(l.index));
            (v, matched)
        })
        .collect()
}

/// Raft's gauges; on the leader, every voter's progress and the commit
/// view's durable events too. Also makes the committed index durable when
/// no append has lately (it rides the same few-times-a-second tick).
fn export_gauges(
    log: &LogStore,
    mt: &RaftMetrics<TypeConfig>,
    flushed: Option<LogIndex>,
    matched: &[(NodeId, Option<LogIndex>)],
    view: CommitView,
) {
    log.sync_committed();
    log.export_stats();
    let last_log = mt.last_log_index.map(LogIndex);
    m::raft(
        mt.current_term,
        mt.state == ServerState::Leader,
        last_log,
        mt.local_committed.map(|l| LogIndex(l.index)),
        mt.last_applied.map(|l| LogIndex(l.index)),
    );
    let CommitView::Leader(state) = view else {
        return;
    };
    for &(v, at) in matched {
        m::replica(v, at, LogIndex::lag(last_log, at));
    }
    m::replica(mt.id, flushed, LogIndex::lag(last_log, flushed));
    m::durable(state.leader_durable, state.all_durable);
}
