//! The whole stack in network namespaces, as `make run` starts it: etcd, the
//! edge box (`seguro lb` in XDP mode, `seguro gatekeeper`), three replicas
//! (`seguro eventlog` + `seguro replica` with the reference ship) and a peer
//! that probes the ship. Needs root (CI runs as root).
//!
//! One cluster serves every check, in order: steady state (each peer packet
//! answered exactly once), `seguro status`, kill -9 of the leader under load,
//! a restarted and a wiped follower catching up, the leader cut off from
//! etcd, and a non-deterministic ship being caught. After each phase the
//! answers the peer got are checked against the committed log: every answer
//! is the reference ship's output for the committed event that holds that
//! very request, so no answer for an uncommitted event or from a stale
//! epoch reached the peer.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use config::ReplicaId;
use eventlog::EventNum;
use testkit::Daemon;
use testkit::cluster::{ClusterLab, ClusterOptions};
use testkit::history::{self, History, Logged};
use testkit::probe::ProbeReport;

const TTL: Duration = Duration::from_secs(2);

/// Reads the committed log from replica `i`'s node (up to its own commit
/// point), from the edge namespace, by event number.
fn read_log(c: &ClusterLab, i: u8) -> BTreeMap<u64, Logged> {
    let events = c.read_log(i, EventNum(1)).unwrap_or_else(|e| panic!("{e}"));
    events
        .iter()
        .map(|e| (e.num.get(), Logged::from_event(e)))
        .collect()
}

/// The history checker (testkit::history) on what the peer got and one
/// replica's log: every answer is the ship's output for a committed event
/// that holds that very request, once; no request is in the log twice; the
/// log has no gap, its epochs never go back and its timestamps always go
/// forward.
fn check_answers(report: &ProbeReport, log: &BTreeMap<u64, Logged>, phase: &str) {
    let mut history = History::default();
    history.add_probe(report);
    let id = ReplicaId::new(1).expect("1 is a replica id");
    history.logs.insert(id, log.values().cloned().collect());
    let checked = history::check(&history, &history::Options::default());
    assert!(checked.is_clean(), "{phase}:\n{checked}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_answers_once_survives_failures_and_catches_a_bad_ship() {
    testkit::require_root("builds network namespaces and attaches XDP programs");
    tokio::task::block_in_place(run_all);
}

fn run_all() {
    let options = ClusterOptions {
        // Nothing is purged: the test reads every log from event 1.
        checkpoint_every: 1_000_000,
        ..ClusterOptions::default()
    };
    let mut c =
        ClusterLab::new(env!("CARGO_BIN_EXE_seguro"), &options).expect("building the cluster");
    if let Err(e) = c.start_all() {
        panic!("starting the cluster: {e}\n{}", c.logs_tail(30));
    }

    steady_state(&mut c);
    status_shows_the_cluster(&mut c);
    leader_killed_under_load(&mut c);
    follower_restarted_and_wiped(&mut c);
    leader_cut_off_from_etcd(&mut c);
    eventlog_leader_cut_off_from_etcd(&mut c);
    non_deterministic_ship_is_caught(&mut c);
}

/// Each peer packet is answered exactly once: the followers' effects never
/// reach the peer.
fn steady_state(c: &mut ClusterLab) {
    // Warm up: the first packets can wait for the new leader to catch up.
    let warm = c.probe(50, Duration::from_secs(2)).unwrap();
    warm.wait(Duration::from_secs(10));
    let warm = warm.stop();
    assert!(
        !warm.answers.is_empty(),
        "the ship never answered:\n{}",
        c.logs_tail(30)
    );

    let probe = c.probe(200, Duration::from_secs(3)).unwrap();
    probe.wait(Duration::from_secs(5));
    let report = probe.stop();
    assert_eq!(report.sent.len(), 600);
    assert!(
        report.duplicates.is_empty(),
        "answered twice: {:?}",
        report.duplicates
    );
    assert_eq!(
        report.answers.len(),
        report.sent.len(),
        "unanswered: {:?}\n{}",
        report.unanswered(),
        c.logs_tail(20)
    );
    assert_eq!(report.unknown, 0);
    let leader = c.wait_leader(TTL).expect("a leader");
    check_answers(&report, &read_log(c, leader), "steady state");
}

fn status_shows_the_cluster(c: &mut ClusterLab) {
    let config = c.config_path();
    let out = c
        .run_seguro(&["status", "-c", config.to_str().unwrap(), "--json"])
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let leader = c.wait_leader(TTL).unwrap();
    assert_eq!(v["leader"]["replica"], u64::from(leader), "{stdout}");
    assert!(v["leader"]["epoch"].as_u64().unwrap() > 0, "{stdout}");
    assert!(
        v["eventlog"]["last_event"].as_u64().unwrap() > 0,
        "{stdout}"
    );
    assert_eq!(v["gatekeeper"]["active"], true, "{stdout}");
    assert!(v["lb"]["packets"].as_f64().unwrap() > 0.0, "{stdout}");
    assert_eq!(v["replicas"].as_array().unwrap().len(), 3, "{stdout}");

    // Every daemon's metrics endpoint answers from the edge namespace,
    // where a Prometheus would scrape them.
    let targets = c.metrics_targets();
    assert_eq!(targets.len(), 2 + 3 + 3);
    for (job, addr) in &targets {
        let metrics = c
            .lab
            .edge
            .run(|| telemetry::scrape_blocking(*addr, Duration::from_secs(5)))
            .unwrap_or_else(|e| panic!("{job} at {addr}: {e}"));
        let prefix = format!("seguro_{job}_");
        assert!(
            metrics.families.keys().any(|f| f.starts_with(&prefix)),
            "{job} at {addr}"
        );
    }
    // And what they export, the lb in XDP mode included, is what
    // docs/METRICS.md says.
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/METRICS.md");
    let targets: Vec<(&str, SocketAddr)> = targets.iter().map(|(j, a)| (j.as_str(), *a)).collect();
    let problems = c
        .lab
        .edge
        .run(|| testkit::metrics_doc::check_targets(&doc, &targets));
    assert!(
        problems.is_empty(),
        "docs/METRICS.md:\n{}",
        problems.join("\n")
    );
}

fn leader_killed_under_load(c: &mut ClusterLab) {
    let old = c.wait_leader(TTL).expect("a leader");
    let probe = c.probe(200, Duration::from_secs(8)).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let before = probe.report();
    c.kill_replica(old);
    let killed = std::time::Instant::now();
    let new = c
        .wait_leader(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no new leader:\n{}", c.logs_tail(30)));
    assert_ne!(new, old);
    probe.wait(Duration::from_secs(10));
    let report = probe.stop();
    assert!(
        report
            .answers
            .iter()
            .any(|a| a.received > killed + TTL / 4 && a.sent > killed),
        "the new leader never answered:\n{}",
        c.logs_tail(30)
    );
    let survivors: Vec<u8> = (1..=3).filter(|&i| i != old).collect();
    let logs: Vec<_> = survivors.iter().map(|&i| read_log(c, i)).collect();
    // The same events wherever both have them (each up to its own commit
    // point).
    let common = logs.iter().map(|l| l.len()).min().unwrap() as u64;
    for num in 1..=common {
        assert_eq!(
            logs[0][&num], logs[1][&num],
            "replicas {survivors:?} differ at event {num}"
        );
    }
    let longest = logs.iter().max_by_key(|l| l.len()).unwrap();
    // Acknowledged before the kill: in the survivors' log.
    for a in &before.answers {
        assert!(
            longest.get(&a.num).is_some_and(|e| e.seq == Some(a.seq)),
            "event {} (request {}) was answered before the kill and is not in the survivors' log",
            a.num,
            a.seq
        );
    }
    check_answers(&report, longest, "leader killed");
    assert!(report.duplicates.is_empty(), "{:?}", report.duplicates);
    // The killed replica comes back as a follower and catches up.
    c.start_replica(old).unwrap();
    wait_caught_up(c, old);
}

/// Waits until replica `i` has applied what the leader committed.
fn wait_caught_up(c: &mut ClusterLab, i: u8) {
    c.wait_caught_up(i, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("replica {i} did not catch up: {e}"));
}

fn follower_restarted_and_wiped(c: &mut ClusterLab) {
    let leader = c.wait_leader(TTL).unwrap();
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    c.kill_replica(follower);
    let load = c.probe(100, Duration::from_secs(2)).unwrap();
    load.wait(Duration::from_secs(5));
    let r = load.stop();
    assert_eq!(r.answers.len(), r.sent.len(), "a quorum is still up");
    c.start_replica(follower).unwrap();
    wait_caught_up(c, follower);

    c.wipe(follower).unwrap();
    let load = c.probe(100, Duration::from_secs(2)).unwrap();
    load.wait(Duration::from_secs(5));
    drop(load);
    c.start_replica(follower).unwrap();
    wait_caught_up(c, follower);
    let leader_log = read_log(c, leader);
    let wiped_log = read_log(c, follower);
    for (num, e) in &wiped_log {
        if let Some(l) = leader_log.get(num) {
            assert_eq!(l, e, "the wiped replica's event {num} differs");
        }
    }
}

/// The leader cut off from etcd: its effects stop reaching the peer within
/// the TTL, and a new leader takes over.
fn leader_cut_off_from_etcd(c: &mut ClusterLab) {
    let old = c.wait_leader(TTL).unwrap();
    let probe = c.probe(100, Duration::from_secs(10)).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    c.cut_from_etcd(old);
    let cut = std::time::Instant::now();
    // The old leader steps down by itself within about a TTL...
    c.wait_metric(
        &Daemon::Replica(old),
        "seguro_replica_leader",
        TTL * 4,
        |v| v == 0.0,
    )
    .unwrap();
    // ...and another replica leads.
    let new = c
        .wait_new_leader(old, cut + Duration::from_secs(30), || false)
        .unwrap_or_else(|| panic!("no new leader: {:?}\n{}", c.leaders(), c.logs_tail(30)));
    let new_epoch = c
        .metric(&Daemon::Replica(new), "seguro_replica_epoch")
        .expect("the new leader's epoch") as u64;
    probe.wait(Duration::from_secs(10));
    let report = probe.stop();
    c.reconnect_etcd(old);
    assert!(
        report.answers.iter().any(|a| a.sent > cut + TTL * 2),
        "the new leader never answered"
    );
    let log = read_log(c, new);
    check_answers(&report, &log, "leader cut off from etcd");
    // The old leader's effects stopped reaching the peer within the TTL
    // (plus a second for scheduling): everything answered later is the new
    // term's.
    for a in report.answers.iter().chain(&report.duplicates) {
        let epoch = log[&a.num].epoch.get();
        assert!(
            a.received < cut + TTL + Duration::from_secs(1) || epoch >= new_epoch,
            "event {} of epoch {epoch} reached the peer {:?} after the old leader was cut off (new epoch {new_epoch})",
            a.num,
            a.received.duration_since(cut)
        );
    }
    wait_caught_up(c, old);
}

/// The event log's Raft leader loses etcd while a new term starts: it
/// cannot check who holds the new epoch (SPEC §6.5.3), so it hands the Raft
/// leadership to a node that can, and the new leader's fence goes through.
fn eventlog_leader_cut_off_from_etcd(c: &mut ClusterLab) {
    let raft_leaders = |c: &ClusterLab| -> Vec<u8> {
        (1..=3)
            .filter(|&i| {
                c.metric(&Daemon::Eventlog(i), "seguro_eventlog_is_leader")
                    .is_some_and(|v| v == 1.0)
            })
            .collect()
    };
    let cut = raft_leaders(c)[0];
    let agent = c.wait_leader(TTL).unwrap();
    c.cut_from_etcd(cut);
    let at = std::time::Instant::now();
    // A new term: the leading agent goes (cut off with its host, or
    // killed), and another replica campaigns with a new epoch.
    if agent != cut {
        c.kill(&Daemon::Replica(agent));
    }
    let new = c
        .wait_new_leader(agent, at + Duration::from_secs(30), || false)
        .unwrap_or_else(|| panic!("no new leader: {:?}\n{}", c.leaders(), c.logs_tail(30)));
    assert_ne!(new, cut, "the replica cut off from etcd cannot lead");
    testkit::wait::until(
        Duration::from_secs(5),
        "the event log's leadership moved",
        || {
            let now = raft_leaders(c);
            if now.len() == 1 && now[0] != cut {
                Ok(())
            } else {
                Err(format!("{now:?}"))
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let probe = c.probe(100, Duration::from_secs(2)).unwrap();
    probe.wait(Duration::from_secs(10));
    assert!(
        !probe.stop().answers.is_empty(),
        "the new leader never answered"
    );
    c.reconnect_etcd(cut);
    if agent != cut {
        c.start(Daemon::Replica(agent)).unwrap();
    }
    wait_caught_up(c, agent);
}

fn non_deterministic_ship_is_caught(c: &mut ClusterLab) {
    let leader = c.wait_leader(TTL).unwrap();
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    c.set_ship(follower, "nondeterministic");
    c.restart(Daemon::Replica(follower)).unwrap();
    let probe = c.probe(100, Duration::from_secs(2)).unwrap();
    probe.wait(Duration::from_secs(5));
    drop(probe);
    c.wait_metric(
        &Daemon::Replica(follower),
        "seguro_replica_mug_mismatches_total",
        Duration::from_secs(30),
        |v| v > 0.0,
    )
    .unwrap();
    c.wait_metric(
        &Daemon::Replica(follower),
        "seguro_replica_diverged",
        Duration::from_secs(5),
        |v| v == 1.0,
    )
    .unwrap();
    // The leader's agent, stopped, resigns and exits 0; the diverged
    // replica, campaigning since before it diverged, must not take over.
    let status = c.stop(&Daemon::Replica(leader), Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "the leader's agent exited with {status:?}\n{}",
        c.logs_tail(30)
    );
    let third = (1..=3).find(|&i| i != leader && i != follower).unwrap();
    let next = c.wait_new_leader(leader, Instant::now() + TTL * 5, || false);
    assert_eq!(
        next,
        Some(third),
        "replica {follower} diverged and must not lead\n{}",
        c.logs_tail(30)
    );
}
