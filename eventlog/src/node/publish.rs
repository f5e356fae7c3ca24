//! Keeps the commit view current on every change of Raft's metrics, the
//! state machine's position or what is on disk, and refreshes the node's
//! gauges a few times a second from the same readings.

use std::time::{Duration, Instant};

use eventlog_client::LogIndex;
use openraft::rt::WatchReceiver;
use openraft::{RaftMetrics, ServerState};
use tokio::sync::watch;

use super::commit::{Inputs, commit_view};
use crate::app::{CommitView, Running};
use crate::ids::NodeId;
use crate::metrics as m;
use crate::raft::TypeConfig;
use crate::storage::LogStore;

/// Publishes the commit view to `tx` until Raft, the state machine or the
/// log store goes, or nobody listens.
pub(super) async fn publish_commits(running: Running, tx: watch::Sender<CommitView>) {
    let Running { raft, sm, log, .. } = running;
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
        let view = {
            let mt = metrics.borrow_and_update();
            let pos = *position.borrow_and_update();
            flushed.borrow_and_update();
            let leading = mt.state == ServerState::Leader;
            let matched = if leading {
                other_voters(&mt)
            } else {
                Vec::new()
            };
            let tracker = log.tracker().lock().unwrap();
            let flushed = tracker.flushed_index();
            let view = commit_view(&Inputs {
                leading,
                current_leader: mt.current_leader,
                applied: pos.fence,
                purge_point: pos.purge_point,
                flushed,
                matched: &matched,
                on_disk: &|i| tracker.at(i).map(|s| s.last),
            });
            drop(tracker);
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
            // Refresh the gauges when nothing changes, too.
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
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
