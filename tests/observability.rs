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

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ames::{Body, Packet, Prelude, Ship};
use config::Key;
use testkit::metrics_doc::MetricsDoc;
use testkit::prometheus::{Job, Prometheus};

const IDS: [u32; 3] = [1, 2, 3];
const LIMIT: Duration = Duration::from_secs(60);

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Loopback ports no other server of this test was given.
struct Ports(Vec<u16>);

impl Ports {
    fn fresh(&mut self) -> u16 {
        loop {
            let p = testkit::free_port();
            if !self.0.contains(&p) {
                self.0.push(p);
                return p;
            }
        }
    }

    fn local(&mut self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.fresh()))
    }
}

/// One daemon's scrape target.
#[derive(Debug, Clone)]
struct Target {
    component: &'static str,
    name: String,
    metrics: SocketAddr,
}

/// The running cluster: every daemon a child process of the test.
struct Lab {
    dir: tempfile::TempDir,
    _etcd: testkit::Etcd,
    /// Each daemon's config file, by daemon name (default: `cluster.toml`).
    configs: BTreeMap<String, PathBuf>,
    children: BTreeMap<String, Child>,
    targets: Vec<Target>,
    /// Where the peer sends: the relay's copy of the ship's public address.
    ship: SocketAddr,
}

impl Lab {
    fn start() -> Lab {
        let etcd = testkit::Etcd::start().expect("starting etcd");
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        Key::generate()
            .unwrap()
            .save_new(&keys.join("eventlog.key"))
            .unwrap();
        for id in IDS {
            Key::generate()
                .unwrap()
                .save_new(&keys.join(format!("replica-{id}.key")))
                .unwrap();
        }
        let mut ports = Ports(Vec::new());
        let mut targets = Vec::new();
        let mut replicas = String::new();
        let ames_port = ports.fresh();
        for id in IDS {
            let (eventlog, eventlog_metrics, metrics) =
                (ports.local(), ports.local(), ports.local());
            let _ = write!(
                replicas,
                "\n[[replicas]]\nid = {id}\names = \"127.0.1.{id}:{ames_port}\"\neventlog = \"{eventlog}\"\n\
                 eventlog_metrics = \"{eventlog_metrics}\"\nmetrics = \"{metrics}\"\n"
            );
            targets.push(Target {
                component: "eventlog",
                name: format!("eventlog-{id}"),
                metrics: eventlog_metrics,
            });
            targets.push(Target {
                component: "replica",
                name: format!("replica-{id}"),
                metrics,
            });
        }
        let (lb_metrics, gk_metrics, gk_listen) = (ports.local(), ports.local(), ports.local());
        // A second edge box's gatekeeper, started once the first is active:
        // it stands by.
        let (standby_metrics, standby_listen) = (ports.local(), ports.local());
        targets.push(Target {
            component: "lb",
            name: "lb".into(),
            metrics: lb_metrics,
        });
        targets.push(Target {
            component: "gatekeeper",
            name: "gatekeeper".into(),
            metrics: gk_metrics,
        });
        targets.push(Target {
            component: "gatekeeper",
            name: "gatekeeper-standby".into(),
            metrics: standby_metrics,
        });
        // One public address, as on an edge box: the userspace relay binds
        // it, the gatekeepers send from it through raw sockets.
        let ship = ports.local();
        let rest = |gk_listen: SocketAddr, gk_metrics: SocketAddr| {
            format!(
                "\n[lb]\ninterface = \"lo\"\nmode = \"userspace\"\nmetrics = \"{lb_metrics}\"\n\
             \n[gatekeeper]\nlisten = \"{gk_listen}\"\nmetrics = \"{gk_metrics}\"\n\
             \n[etcd]\nendpoints = [\"{etcd}\"]\nlease_ttl = \"2s\"\n\
             \n[eventlog]\ndata_dir = \"{data}/eventlog\"\n\n[eventlog.batch]\nmax_linger = \"1ms\"\n\
             \n[replica]\ndata_dir = \"{data}/replica\"\n\
             \n[keys]\ndir = \"keys\"\neventlog = \"keys/eventlog.key\"\n",
                etcd = etcd.endpoint(),
                data = dir.path().display(),
            )
        };
        let head = "cluster = \"observability\"\noptimism = \"quorum\"\n\n[ship]\n";
        let mut configs = BTreeMap::new();
        for (name, public, listen, metrics) in [
            ("cluster", ship, gk_listen, gk_metrics),
            ("lb", ship, gk_listen, gk_metrics),
            ("gatekeeper-standby", ship, standby_listen, standby_metrics),
        ] {
            let path = dir.path().join(format!("{name}.toml"));
            let text = format!(
                "{head}public = \"{public}\"\n{replicas}{}",
                rest(listen, metrics)
            );
            std::fs::write(&path, text).unwrap();
            configs.insert(name.to_string(), path);
        }
        let mut lab = Lab {
            dir,
            _etcd: etcd,
            configs,
            children: BTreeMap::new(),
            targets,
            ship,
        };
        for id in IDS {
            lab.spawn(
                &format!("eventlog-{id}"),
                &["eventlog", "--id", &id.to_string()],
            );
        }
        for id in IDS {
            lab.spawn(
                &format!("replica-{id}"),
                &["replica", "--id", &id.to_string()],
            );
        }
        lab.spawn("gatekeeper", &["gatekeeper"]);
        lab.spawn("lb", &["lb"]);
        let deadline = Instant::now() + LIMIT;
        while testkit::scrape(gk_metrics)
            .ok()
            .and_then(|t| testkit::sample(&t, "seguro_gatekeeper_active"))
            != Some(1.0)
        {
            assert!(
                Instant::now() < deadline,
                "the first gatekeeper never became active\n{}",
                lab.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        lab.spawn("gatekeeper-standby", &["gatekeeper"]);
        lab
    }

    fn spawn(&mut self, name: &str, args: &[&str]) {
        let config = self.configs.get(name).unwrap_or(&self.configs["cluster"]);
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_seguro"))
            .args(&args[..1])
            .arg("-c")
            .arg(config)
            .args(&args[1..])
            .env("RUST_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        self.children.insert(name.to_string(), child);
    }

    fn kill(&mut self, name: &str) {
        let mut child = self.children.remove(name).expect("a running daemon");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Every daemon's log, for a failure message.
    fn logs(&mut self) -> String {
        let mut out = String::new();
        for (name, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                let _ = writeln!(out, "!! {name} exited: {status}");
            }
        }
        for t in &self.targets {
            let log = std::fs::read_to_string(self.dir.path().join(format!("{}.log", t.name)))
                .unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(25).collect();
            let _ = writeln!(out, "--- {} (last lines)", t.name);
            for l in tail.iter().rev() {
                let _ = writeln!(out, "{l}");
            }
        }
        out
    }

    fn jobs(&self) -> Vec<Job> {
        ["lb", "gatekeeper", "eventlog", "replica"]
            .into_iter()
            .map(|c| {
                Job::new(
                    format!("seguro_{c}"),
                    self.targets
                        .iter()
                        .filter(|t| t.component == c)
                        .map(|t| t.metrics),
                )
            })
            .collect()
    }

    fn replica_of(&self, instance: &str) -> u32 {
        self.targets
            .iter()
            .find(|t| t.component == "replica" && t.metrics.to_string() == instance)
            .and_then(|t| t.name.strip_prefix("replica-")?.parse().ok())
            .unwrap_or_else(|| panic!("{instance} is no replica's metrics address"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in self.children.values_mut() {
            testkit::terminate(child, Duration::from_secs(5));
        }
    }
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
            let deadline = Instant::now() + Duration::from_secs(5);
            while let Err(e) = self.socket.send_to(&bytes, to) {
                // Non-blocking: a full buffer waits; anything else is a bug.
                assert!(
                    e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline,
                    "sending to {to}: {e}"
                );
                std::thread::sleep(Duration::from_millis(1));
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
    r.unwrap_or_else(|e| panic!("{what}: {e}\n{}\n--- prometheus\n{}", lab.logs(), p.log()))
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
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "seguro lb's relay sends from a raw socket: run this test as root (CI does)"
    );
    let mut lab = Lab::start();
    let alerts = repo("docs/prometheus/alerts.yml");
    let prom = Prometheus::start(&lab.jobs(), &[&alerts]).expect("starting prometheus");
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
    let mut answers = peer.send(lab.ship, 300);
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
        answers += peer.send(lab.ship, 0);
    }
    let r = p.value("sum(seguro_replica_sequenced_total)");
    let sequenced = check("sequenced", &mut lab, p, r).unwrap_or(0.0);
    assert!(
        sequenced <= 300.0,
        "{sequenced} events sequenced from 300 packets"
    );
    // The gatekeeper's forwarded effects are the ship's answers, which
    // reach the peer's own address (the relay kept it as the source).
    let deadline = Instant::now() + Duration::from_secs(10);
    while answers == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        answers += peer.send(lab.ship, 0);
    }
    assert!(answers > 0, "the peer got no answer\n{}", lab.logs());

    // docs/METRICS.md against every daemon's exposition; the dashboards'
    // queries; the alert rules, none firing on a healthy cluster.
    let targets: Vec<(&str, SocketAddr)> = lab
        .targets
        .iter()
        .map(|t| (t.component, t.metrics))
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
    let old = lab.replica_of(&instance);
    let r = p.value("max(seguro_gatekeeper_leadership_changes_total)");
    let changes = check("changes", &mut lab, p, r).unwrap();
    let r = p.value("max(seguro_gatekeeper_epoch)");
    let epoch = check("epoch", &mut lab, p, r).unwrap();
    lab.kill(&format!("replica-{old}"));

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
    let new = lab.replica_of(leaders[0].0["instance"].as_str().unwrap());
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
    peer.send(lab.ship, 100);
    let r = p.wait_for(&before, LIMIT, |v| v > sequenced);
    check("the new leader sequences", &mut lab, p, r);
}
