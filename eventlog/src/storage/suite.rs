//! openraft's storage conformance suite (`openraft::testing::log::Suite`)
//! run against the node's real log store and state machine, each test on
//! a fresh directory.
//!
//! Every suite test is its own `#[tokio::test]` (not `Suite::test_all`), so
//! that a failure names the suite test and nextest runs them apart. The
//! whole suite runs twice: with the node's default log options, and with
//! chunk files so small that every flush starts a new one, so that purges
//! really delete files and reads cross chunk boundaries.

use std::io;

use openraft::testing::log::{StoreBuilder, Suite};
use openraft::{ErrorSubject, ErrorVerb, StorageError};
use tempfile::TempDir;

use super::{LogOptions, LogStore};
use crate::ids::NodeId;
use crate::raft::TypeConfig;
use crate::sm::StateMachine;

/// The suite builds node ids from small integers (its own entries are
/// written by node 0); production code only makes them from replica ids.
impl From<u64> for NodeId {
    fn from(id: u64) -> Self {
        NodeId(id)
    }
}

/// Opens a node's storage in a fresh temporary directory the way the
/// supervisor does (`node::supervisor`): snapshots first, then the log,
/// its durability tracker restarted from the snapshot's fence and fed the
/// log, and the log attached to the state machine for snapshot installs.
struct Builder {
    options: LogOptions,
}

fn store_error(
    verb: ErrorVerb,
    e: impl std::error::Error + Send + Sync + 'static,
) -> StorageError<TypeConfig> {
    StorageError::from_io_error(ErrorSubject::Store, verb, io::Error::other(e))
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().map_err(|e| store_error(ErrorVerb::Write, e))?;
        // As the node opens them (node/supervisor.rs).
        let (log, sm) = crate::node::open_storage(dir.path(), &self.options)
            .map_err(|e| store_error(ErrorVerb::Read, e))?;
        Ok((dir, log, sm))
    }
}

type S = Suite<TypeConfig, LogStore, StateMachine, Builder, TempDir>;

/// Runs one suite test on fresh storage; the suite asserts (panics) on a
/// wrong answer and returns an error when the store failed.
async fn run<F, Fut>(options: LogOptions, test: F)
where
    F: FnOnce(LogStore, StateMachine) -> Fut,
    Fut: Future<Output = io::Result<()>>,
{
    let builder = Builder { options };
    let (_dir, log, sm) = builder.build().await.expect("opening fresh storage");
    test(log, sm).await.expect("the store returned an error");
}

macro_rules! suite {
    ($options:expr; $($(#[$attr:meta])* $name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            $(#[$attr])*
            async fn $name() {
                run($options, S::$name).await;
            }
        )*

        #[tokio::test]
        async fn transfer_snapshot() {
            S::transfer_snapshot(&Builder { options: $options })
                .await
                .expect("the store returned an error");
        }
    };
}

/// Every test `Suite::test_store` runs (openraft 0.10.0-alpha.37), in its
/// order; `transfer_snapshot` takes the builder and is added by `suite!`.
macro_rules! all_tests {
    ($options:expr) => {
        suite!($options;
            last_membership_in_log_initial,
            last_membership_in_log,
            last_membership_in_log_multi_step,
            get_membership_initial,
            get_membership_from_log_and_empty_sm,
            get_membership_from_empty_log_and_sm,
            get_membership_from_log_le_sm_last_applied,
            get_membership_from_log_gt_sm_last_applied_1,
            get_membership_from_log_gt_sm_last_applied_2,
            get_initial_state_without_init,
            get_initial_state_membership_from_empty_log_and_sm,
            get_initial_state_membership_from_sm_inlog_is_smaller,
            get_initial_state_membership_from_log_insm_is_smaller,
            get_initial_state_with_state,
            get_initial_state_last_log_gt_sm,
            get_initial_state_last_log_lt_sm,
            get_initial_state_inverted_log_order,
            get_initial_state_conflict_at_same_index,
            get_initial_state_log_ids,
            get_initial_state_re_apply_committed,
            save_vote,
            get_log_entries,
            limited_get_log_entries,
            leader_bounded_stream,
            entries_stream,
            try_get_log_entry,
            log_reader_reads_new_entries,
            initial_logs,
            get_log_state,
            get_log_id,
            last_id_in_log,
            last_applied_state,
            purge_logs_upto_0,
            purge_logs_upto_5,
            purge_logs_upto_20,
            delete_logs_after_11,
            delete_logs_after_5,
            delete_logs_after_0,
            delete_logs_after_none,
            append_to_log,
            snapshot_meta,
            snapshot_meta_optional,
            apply_single,
            apply_multiple,
        );
    };
}

mod default_options {
    use super::*;

    all_tests!(LogOptions::default());
}

mod small_chunks {
    use super::*;

    all_tests!(LogOptions {
        chunk_max_size: 64,
        ..LogOptions::default()
    });
}

/// The small-chunk run means what it says: entries spread over many chunk
/// files, and a purge deletes the ones wholly below it.
#[tokio::test]
async fn small_chunks_rotate_and_purge_deletes_them() {
    use openraft::storage::RaftLogStorage;

    let builder = Builder {
        options: LogOptions {
            chunk_max_size: 64,
            ..LogOptions::default()
        },
    };
    let (dir, mut log, _sm) = builder.build().await.unwrap();
    let chunks = || {
        std::fs::read_dir(dir.path().join("log"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "wal")
            })
            .count()
    };
    S::feed_10_logs_vote_self(&mut log).await.unwrap();
    let before = chunks();
    assert!(before > 5, "{before} chunk files for 11 entries");
    log.purge(openraft::testing::log_id::<TypeConfig>(1, NodeId(0), 8))
        .await
        .unwrap();
    log.sync().unwrap();
    let after = chunks();
    assert!(
        after < before - 5,
        "{before} chunk files, {after} after the purge"
    );
}
