//! Truncation behind the watermarks (docs/SPEC.md §5): snapshots and log
//! purges as the purge point moves.

use std::time::Duration;

use eventlog_client::LogIndex;
use openraft::rt::WatchReceiver;

use crate::raft::{Raft, TypeConfig};
use crate::sm::StateMachine;
use crate::types::EventNum;

/// Truncation behind the watermarks (docs/SPEC.md §5): once the purge point
/// moves, snapshot the state machine (it holds every event above the purge
/// point) and purge the Raft entries whose events all lie at or below it.
pub(super) async fn compact(raft: Raft, sm: StateMachine) {
    let mut position = sm.watch_position();
    let mut metrics = raft.metrics();
    // What openraft itself knows (it purges only below a snapshot it has
    // been told about, and may put a purge off while it replicates).
    let known = |m: &openraft::RaftMetrics<TypeConfig>| {
        (m.snapshot.map(|l| l.index), m.purged.map(|l| l.index))
    };
    loop {
        let pos = *position.borrow_and_update();
        let upto = if pos.purge_point == EventNum::NONE {
            None
        } else {
            match pos.first_needed_index {
                Some(i) => i.get().checked_sub(1),
                None => pos.applied.map(LogIndex::get),
            }
        };
        let (snapshot, purged) = known(&metrics.borrow_watched());
        if let Some(upto) = upto.filter(|u| purged.is_none_or(|p| *u > p)) {
            if snapshot.is_none_or(|s| s < upto) && raft.trigger().snapshot().await.is_err() {
                return;
            }
            if raft.trigger().purge_log(upto).await.is_err() {
                return;
            }
            // Wait until openraft has the snapshot and has purged; retry
            // (after a second) whatever it has not done in time.
            let done = tokio::time::timeout(Duration::from_secs(60), async {
                let mut asked_with_snapshot = snapshot.is_some_and(|s| s >= upto);
                loop {
                    let (snapshot, purged) = known(&metrics.borrow_and_update());
                    if purged.is_some_and(|p| p >= upto) {
                        return true;
                    }
                    // Asked before openraft had the snapshot, the purge was
                    // refused: ask again, once, now that it has it.
                    if !asked_with_snapshot && snapshot.is_some_and(|s| s >= upto) {
                        asked_with_snapshot = true;
                        if raft.trigger().purge_log(upto).await.is_err() {
                            return false;
                        }
                    }
                    if metrics.changed().await.is_err() {
                        return false;
                    }
                }
            })
            .await;
            match done {
                Ok(true) => {
                    tracing::info!(upto, purge_point = %pos.purge_point, "purged the Raft log");
                }
                Ok(false) => return,
                Err(_) => tracing::warn!(upto, "the Raft log is not purged yet; will retry"),
            }
            // One compaction per second at most: snapshots cost a pass over
            // every event held.
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        if position.changed().await.is_err() {
            return;
        }
    }
}
