//! The nemesis suite's short run and the power-loss check with its negative
//! control (docs/RELIABILITY.md): a whole cluster in namespaces on lazy
//! disks that forget what was never synced. Needs root, FUSE and XDP.
//!
//! The seed is printed; `SEGURO_CHAOS_SEED=N` replays a run's schedule.

use std::time::Duration;

use testkit::chaos::{self, ChaosOptions};

fn options() -> ChaosOptions {
    let seed = std::env::var("SEGURO_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
    eprintln!("chaos: seed {seed} (replay with SEGURO_CHAOS_SEED={seed})");
    ChaosOptions::new(env!("CARGO_BIN_EXE_seguro"), seed)
}

/// Faults drawn from every kind for at most 100 s (then the check): the history has no
/// violation and every round ends with the peer answered again.
#[test]
fn a_short_nemesis_run_loses_nothing_and_recovers() {
    testkit::require_root("builds namespaces, attaches XDP and mounts FUSE");
    let mut opts = options();
    opts.rounds = 12;
    opts.seconds = 100;
    let report = chaos::run(&opts).unwrap_or_else(|e| panic!("seed {}: {e}", opts.seed));
    eprintln!("{report}");
    assert!(
        report.check.violations.is_empty(),
        "seed {}: the history has violations:\n{}",
        opts.seed,
        report.check
    );
    assert!(
        report.rounds.len() >= 3,
        "only {} rounds ran",
        report.rounds.len()
    );
    let stuck: Vec<String> = report
        .rounds
        .iter()
        .filter(|r| r.recovered.is_none())
        .map(|r| r.fault.to_string())
        .collect();
    assert!(
        stuck.is_empty(),
        "seed {}: never recovered from {stuck:?}",
        opts.seed
    );
}

/// Every replica host loses power at once after acknowledging events: with
/// fdatasync nothing acknowledged is lost; with it skipped (the negative
/// control) the same check finds acknowledged events lost, so the check can
/// fail.
#[test]
fn power_loss_loses_nothing_acknowledged_and_the_check_can_fail() {
    testkit::require_root("builds namespaces, attaches XDP and mounts FUSE");
    let mut opts = options();
    opts.skip_fdatasync = false;
    let synced = chaos::power_loss_check(&opts, Duration::from_secs(8)).unwrap();
    eprintln!("with fdatasync:\n{synced}");
    assert!(
        synced.check.violations.is_empty(),
        "power loss lost acknowledged events:\n{}",
        synced.check
    );
    assert!(
        synced.check.summary.acked_max.get() > 100,
        "too little was acknowledged to tell"
    );

    opts.skip_fdatasync = true;
    let unsynced = chaos::power_loss_check(&opts, Duration::from_secs(8)).unwrap();
    eprintln!("without fdatasync:\n{unsynced}");
    assert!(
        unsynced
            .check
            .violations
            .iter()
            .any(|v| matches!(v, testkit::history::Violation::Lost { .. })),
        "without fdatasync the power-loss check found no loss:\n{}",
        unsynced.check
    );
}

/// EIO on fsync under the leader's and a follower's event log node: each
/// node stops itself with a non-zero exit rather than go on with what its
/// cache says, comes back (as systemd would start it) from what is on its
/// disk, and nothing acknowledged is lost.
#[test]
fn eio_on_fsync_stops_the_node_and_it_recovers_from_its_disk() {
    testkit::require_root("builds namespaces, attaches XDP and mounts FUSE");
    let mut opts = options();
    opts.kinds = vec![chaos::FaultKind::FsyncEio];
    opts.rounds = 2;
    let report = chaos::run(&opts).unwrap_or_else(|e| panic!("seed {}: {e}", opts.seed));
    eprintln!("{report}");
    assert!(report.check.violations.is_empty(), "{}", report.check);
    for round in &report.rounds {
        assert!(
            round
                .notes
                .iter()
                .any(|n| n.contains("stopped itself (exit status: 1)")),
            "{}: the node did not stop itself: {:?}",
            round.fault,
            round.notes
        );
        assert!(
            round.recovered.is_some(),
            "{}: never recovered",
            round.fault
        );
    }
}
