//! Observability end to end, on loopback: a real etcd, three replica hosts
//! (`seguro eventlog` + `seguro replica` each), the edge box's `seguro
//! gatekeeper` (and a second edge box's, standing by) and `seguro lb`
//! (userspace relay), and a real Prometheus
//! scraping all of them with docs/prometheus/alerts.yml loaded. A peer
//! sends Ames packets, then the leading replica is killed.
//!
//! Checked: docs/METRICS.md matches what every daemon exports
//! (`testkit::metrics_doc`); every dashboard in docs/dashboards/ is well
//! formed and each of its queries parses and returns data in Prometheus
//! (`testkit::dashboard`); every alert rule evaluates, none fires on the
//! healthy cluster; the series move as traffic flows and as the leadership
//! fails over.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ames::{Body, Packet, Prelude, Ship};
use config::{LbMode, Optimism};
use testkit::metrics_doc::MetricsDoc;
use testkit::prometheus::{Job, Prometheus};
use testkit::{Daemon, Lab};

const LIMIT: Duration = Duration::from_secs(60);

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Three replicas, the userspace relay and two edge boxes' gatekeepers on
/// loopback: every daemon runs, the first gatekeeper is active and the
/// second stands by.
fn start_lab() -> Lab {
    let mut lab = Lab::new(env!("CARGO_BIN_EXE_seguro"), "observability", 3).unwrap();
    lab.start_etcd().unwrap();
    // One public address, as on an edge box: the userspace relay binds it,
    // the gatekeepers send from it through raw sockets.
    let public = lab.fresh_addr();
    let ames_port = testkit::free_port();
    let f = lab.file_mut();
    f.optimism = Some(Optimism::Quorum);
    f.ship.public = public;
    f.lb.mode = Some(LbMode::Userspace);
    f.etcd.lease_ttl = Some(Duration::from_secs(2));
    for r in &mut f.replicas {
        r.ames = SocketAddr::from(([127, 0, 1, r.id as u8], ames_port));
    }
    lab.write_config().unwrap();
    // A second edge box's gatekeeper, started once the first is active: it
    // stands by.
    let mut standby = lab.file().clone();
    standby.gatekeeper.listen = lab.fresh_addr();
    standby.gatekeeper.metrics = Some(lab.fresh_addr());
    let config = lab.write_config_as("gatekeeper-2", &standby).unwrap();
    lab.set_config(Daemon::Gatekeeper(2), Some(config));

    lab.start_eventlog().unwrap();
    for id in lab.replica_ids() {
        lab.start(Daemon::Replica(id)).unwrap();
    }
    lab.start(Daemon::Gatekeeper(1)).unwrap();
    lab.start(Daemon::Lb).unwrap();
    lab.wait(LIMIT, "the first gatekeeper to be active", |lab| {
        lab.metric(&Daemon::Gatekeeper(1), "seguro_gatekeeper_active") == Some(1.0)
    });
    lab.start(Daemon::Gatekeeper(2)).unwrap();
    lab
}

/// Every daemon of the lab, with the component it is.
fn daemons(lab: &Lab) -> Vec<(&'static str, Daemon)> {
    let mut all = vec![Daemon::Lb, Daemon::Gatekeeper(1), Daemon::Gatekeeper(2)];
    for id in lab.replica_ids() {
        all.extend([Daemon::Eventlog(id), Daemon::Replica(id)]);
    }
    all.into_iter()
        .map(|d| (d.component().expect("a seguro daemon"), d))
        .collect()
}

/// One Prometheus job per component, as docs/prometheus/prometheus.yml has.
fn jobs(lab: &Lab) -> Vec<Job> {
    ["lb", "gatekeeper", "eventlog", "replica"]
        .into_iter()
        .map(|c| {
            Job::new(
                format!("seguro_{c}"),
                daemons(lab)
                    .iter()
                    .filter(|(component, _)| *component == c)
                    .map(|(_, d)| lab.metrics_addr(d)),
            )
        })
        .collect()
}

/// The replica whose agent serves metrics at `instance`.
fn replica_of(lab: &Lab, instance: &str) -> u8 {
    lab.replica_ids()
        .into_iter()
        .find(|&id| lab.metrics_addr(&Daemon::Replica(id)).to_string() == instance)
        .unwrap_or_else(|| panic!("{instance} is no replica's metrics address"))
}

/// A peer on loopback sending the ship Ames packets, each different.
struct Peer {
    socket: UdpSocket,
    sent: u64,
}

impl Peer {
    fn new() -> Peer {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        Peer { socket, sent: 0 }
    }

    /// Sends `n` packets in bursts of 10, paced so that no socket buffer
    /// on the way overflows; counts the answers that came meanwhile.
    fn send(&mut self, to: SocketAddr, n: u64) -> u64 {
        let mut answers = 0;
        let mut buf = [0u8; 2048];
        for _ in 0..n {
            self.sent += 1;
            let packet = Packet {
                prelude: Prelude::new(Ship::new(0x1234), Ship::new(0xbeef)),
                body: Body::Ames(format!("observability packet {}", self.sent).into_bytes()),
            };
            let bytes = packet.to_bytes();
            // Non-blocking: a full buffer waits; anything else is a bug.
            let sent = testkit::wait::every(
                Duration::from_millis(1),
                Duration::from_secs(5),
                format_args!("room to send to {to}"),
                || match self.socket.send_to(&bytes, to) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Err(e),
                    done => Ok(done),
                },
            );
            match sent {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("sending to {to}: {e}"),
                Err(e) => panic!("{e}"),
            }
            if self.sent.is_multiple_of(10) {
                std::thread::sleep(Duration::from_millis(20));
            }
            answers += self.drain(to, &mut buf);
        }
        answers + self.drain(to, &mut buf)
    }

    /// Counts the answers waiting, each of which must come from `ship`, the
    /// address the peer wrote to.
    fn drain(&self, ship: SocketAddr, buf: &mut [u8]) -> u64 {
        let mut answers = 0;
        while let Ok((_, from)) = self.socket.recv_from(buf) {
            assert_eq!(from, ship, "an answer from {from}, not the ship's address");
            answers += 1;
        }
        answers
    }
}

fn check<T>(what: &str, lab: &mut Lab, p: &Prometheus, r: std::io::Result<T>) -> T {
    r.unwrap_or_else(|e| {
        panic!(
            "{what}: {e}\n{}\n--- prometheus\n{}",
            lab.logs_tail(25),
            p.log()
        )
    })
}

/// The documented names follow the conventions (counters end in `_total`,
/// nothing else does, `seguro_<component>_...`). And an alert on a
/// misspelled metric never fires: every metric the alert
/// rules, their unit tests and the dashboards name must be in
/// docs/METRICS.md (which the test below holds to what the daemons export).
#[test]
fn metric_names_follow_the_conventions_and_the_document() {
    let doc = MetricsDoc::parse(&std::fs::read_to_string(repo("docs/METRICS.md")).unwrap())
        .unwrap_or_else(|e| panic!("{e}"));
    let broken = doc.convention_problems();
    assert!(
        broken.is_empty(),
        "docs/METRICS.md breaks the naming conventions:\n{}",
        broken.join("\n")
    );
    let mut files = vec![
        repo("docs/prometheus/alerts.yml"),
        repo("docs/prometheus/alerts_test.yml"),
    ];
    for entry in std::fs::read_dir(repo("docs/dashboards")).unwrap() {
        files.push(entry.unwrap().path());
    }
    for file in files {
        let unknown = doc.unknown_names(&std::fs::read_to_string(&file).unwrap());
        assert!(
            unknown.is_empty(),
            "{} names metrics docs/METRICS.md does not list: {unknown:?}",
            file.display()
        );
    }
}

#[test]
fn metrics_dashboards_and_alerts_against_a_running_cluster() {
    testkit::require_root("runs seguro lb's relay, which sends from a raw socket");
    let mut lab = start_lab();
    let ship = lab.file().ship.public;
    let alerts = repo("docs/prometheus/alerts.yml");
    let prom = Prometheus::start(&jobs(&lab), &[&alerts]).expect("starting prometheus");
    let p = &prom;

    let r = p.wait_targets_up(LIMIT);
    check("every daemon scraped", &mut lab, p, r);
    for (expr, want) in [
        ("sum(seguro_replica_leader)", 1.0),
        ("sum(seguro_eventlog_is_leader)", 1.0),
        ("sum(seguro_gatekeeper_active)", 1.0),
        ("count(seguro_gatekeeper_active == 0)", 1.0),
        ("max(seguro_gatekeeper_fail_closed)", 0.0),
        ("count(seguro_build_info)", 9.0),
        ("count(count by (component) (seguro_build_info))", 4.0),
    ] {
        let r = p.wait_for(expr, LIMIT, |v| v == want);
        check(expr, &mut lab, p, r);
    }

    // Traffic: every packet is classed, copied to every replica, sequenced
    // by the leader, committed, and answered through the gatekeeper.
    let mut peer = Peer::new();
    let mut answers = peer.send(ship, 300);
    for (expr, want) in [
        (r#"sum(seguro_lb_packets_total{class="ames"})"#, 300.0),
        ("count(seguro_lb_copies_total >= 300)", 3.0),
        ("count(seguro_replica_packets_received_total > 0)", 3.0),
        ("sum(seguro_replica_sequenced_total)", 1.0),
        ("min(seguro_eventlog_committed_event)", 1.0),
        ("max(seguro_eventlog_append_events_total)", 1.0),
        ("sum(seguro_eventlog_commit_seconds_count)", 1.0),
        ("sum(seguro_gatekeeper_forwarded_total)", 1.0),
        (
            r#"sum(rate(seguro_lb_packets_total{class="ames"}[1m]))"#,
            f64::MIN_POSITIVE,
        ),
        (
            "sum(rate(seguro_replica_sequenced_total[1m]))",
            f64::MIN_POSITIVE,
        ),
        (
            "sum(rate(seguro_gatekeeper_forwarded_total[1m]))",
            f64::MIN_POSITIVE,
        ),
    ] {
        let r = p.wait_for(expr, LIMIT, |v| v >= want);
        check(expr, &mut lab, p, r);
        answers += peer.send(ship, 0);
    }
    let r = p.value("sum(seguro_replica_sequenced_total)");
    let sequenced = check("sequenced", &mut lab, p, r).unwrap_or(0.0);
    assert!(
        sequenced <= 300.0,
        "{sequenced} events sequenced from 300 packets"
    );
    // The gatekeeper's forwarded effects are the ship's answers, which
    // reach the peer's own address (the relay kept it as the source).
    let answered = testkit::wait::until(Duration::from_secs(10), "an answer", || {
        answers += peer.send(ship, 0);
        answers > 0
    });
    assert!(
        answered.is_ok(),
        "the peer got no answer\n{}",
        lab.logs_tail(25)
    );

    // docs/METRICS.md against every daemon's exposition; the dashboards'
    // queries; the alert rules, none firing on a healthy cluster.
    let targets: Vec<(&str, SocketAddr)> = daemons(&lab)
        .iter()
        .map(|(component, d)| (*component, lab.metrics_addr(d)))
        .collect();
    let problems = testkit::metrics_doc::check_targets(&repo("docs/METRICS.md"), &targets);
    assert!(
        problems.is_empty(),
        "docs/METRICS.md disagrees with the daemons:\n{}",
        problems.join("\n")
    );
    let dashboards =
        testkit::dashboard::check_dir(&repo("docs/dashboards"), p, Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("docs/dashboards:\n{}", e.join("\n")));
    assert!(
        dashboards >= 3,
        "docs/dashboards has {dashboards} dashboards"
    );
    let written = std::fs::read_to_string(&alerts)
        .unwrap()
        .matches("- alert:")
        .count();
    let r = p.check_alert_rules(written);
    let firing = check("alert rules", &mut lab, p, r);
    assert!(
        firing.is_empty(),
        "alerts firing on a healthy cluster: {firing:?}"
    );

    // Failover: kill the leading replica; another wins, the gatekeeper
    // sees a new term, and the dead target raises SeguroTargetDown.
    let r = p.samples("seguro_replica_leader == 1");
    let leaders = check("leader", &mut lab, p, r);
    let [(labels, _)] = &leaders[..] else {
        panic!("leaders: {leaders:?}");
    };
    let instance = labels["instance"].as_str().unwrap().to_string();
    let old = replica_of(&lab, &instance);
    let r = p.value("max(seguro_gatekeeper_leadership_changes_total)");
    let changes = check("changes", &mut lab, p, r).unwrap();
    let r = p.value("max(seguro_gatekeeper_epoch)");
    let epoch = check("epoch", &mut lab, p, r).unwrap();
    lab.kill(&Daemon::Replica(old));

    let dead = format!("up{{job=\"seguro_replica\",instance=\"{instance}\"}}");
    for (expr, ok) in [
        (
            dead.as_str(),
            Box::new(|v| v == 0.0) as Box<dyn Fn(f64) -> bool>,
        ),
        (
            "max(seguro_gatekeeper_leadership_changes_total)",
            Box::new(move |v| v > changes),
        ),
        ("max(seguro_gatekeeper_epoch)", Box::new(move |v| v > epoch)),
        ("sum(seguro_replica_leader)", Box::new(|v| v == 1.0)),
        (
            "sum(seguro_replica_promotions_total)",
            Box::new(|v| v >= 1.0),
        ),
        (
            r#"count(ALERTS{alertname="SeguroTargetDown",alertstate="pending"})"#,
            Box::new(|v| v == 1.0),
        ),
    ] {
        let r = p.wait_for(expr, LIMIT, ok);
        check(expr, &mut lab, p, r);
    }
    let r = p.samples("seguro_replica_leader == 1");
    let leaders = check("new leader", &mut lab, p, r);
    let new = replica_of(&lab, leaders[0].0["instance"].as_str().unwrap());
    assert_ne!(new, old, "the killed replica still leads");
    // Both gatekeepers, active and standby, follow the new leader.
    let new_id = f64::from(new);
    for expr in [
        "min(seguro_gatekeeper_leader)",
        "max(seguro_gatekeeper_leader)",
    ] {
        let r = p.wait_for(expr, LIMIT, |v| v == new_id);
        check("the gatekeepers follow the new leader", &mut lab, p, r);
    }

    // The new leader sequences the packets that arrive now.
    let before = format!(
        "sum(seguro_replica_sequenced_total{{instance=\"{}\"}})",
        leaders[0].0["instance"].as_str().unwrap()
    );
    let r = p.value(&before);
    let sequenced = check("sequenced", &mut lab, p, r).unwrap_or(0.0);
    peer.send(ship, 100);
    let r = p.wait_for(&before, LIMIT, |v| v > sequenced);
    check("the new leader sequences", &mut lab, p, r);
}
