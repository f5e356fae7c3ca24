//! `seguro gatekeeper` as operators run it: two edge-box gatekeeper
//! processes against a real etcd; one forwards, the other stands by and
//! takes over within TTL + 1 s when the active one is killed (-9).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use assert_cmd::Command as Cmd;
use config::{Key, ReplicaId};
use eventlog::EventNum;
use gatekeeper::{Election, Sealer};
use predicates::prelude::*;
use tokio::net::UdpSocket;
use tokio::time::{Instant, sleep, timeout};

const TTL: Duration = Duration::from_secs(2);

/// One gatekeeper's addresses and its config file.
struct Box_ {
    config: PathBuf,
    listen: SocketAddr,
    public: SocketAddr,
    metrics: SocketAddr,
}

fn write_keys(dir: &Path) -> Vec<Key> {
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    Key::generate()
        .unwrap()
        .save_new(&dir.join("keys/eventlog.key"))
        .unwrap();
    (1..=3)
        .map(|i| {
            let k = Key::generate().unwrap();
            k.save_new(&dir.join(format!("keys/replica-{i}.key")))
                .unwrap();
            k
        })
        .collect()
}

fn write_config(dir: &Path, name: &str, public_ip: &str, etcd: &str, optimism: &str) -> Box_ {
    let port =
        |ip: &str| -> SocketAddr { format!("{ip}:{}", testkit::free_port()).parse().unwrap() };
    let b = Box_ {
        config: dir.join(format!("{name}.toml")),
        listen: port("127.0.0.1"),
        public: port(public_ip),
        metrics: port("127.0.0.1"),
    };
    let text = format!(
        r#"cluster = "gk-test"
optimism = "{optimism}"

[ship]
public = "{public}"

[[replicas]]
id = 1
ames = "127.0.1.1:34543"

[[replicas]]
id = 2
ames = "127.0.1.2:34543"

[[replicas]]
id = 3
ames = "127.0.1.3:34543"

[lb]
interface = "lo"

[gatekeeper]
listen = "{listen}"
metrics = "{metrics}"

[etcd]
endpoints = ["{etcd}"]
lease_ttl = "2s"
"#,
        public = b.public,
        listen = b.listen,
        metrics = b.metrics,
    );
    std::fs::write(&b.config, text).unwrap();
    b
}

fn spawn(b: &Box_, log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_seguro"))
        .arg("gatekeeper")
        .arg("-c")
        .arg(&b.config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Waits until `series` reads `value` on the box's /metrics.
async fn wait_metric(b: &Box_, series: &str, value: f64, logs: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = testkit::scrape(b.metrics).unwrap_or_default();
        if testkit::sample(&text, series) == Some(value) {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{series} never became {value} on {}; metrics:\n{text}\nlogs:\n{}",
                b.metrics,
                read_logs(logs)
            );
        }
        sleep(Duration::from_millis(50)).await;
    }
}

fn read_logs(dir: &Path) -> String {
    ["a.log", "b.log"]
        .iter()
        .map(|f| {
            format!(
                "--- {f}\n{}",
                std::fs::read_to_string(dir.join(f)).unwrap_or_default()
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gatekeeper_forwards_and_the_standby_takes_over_within_ttl_plus_1s() {
    let etcd = tokio::task::block_in_place(testkit::Etcd::start).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path();
    let keys = write_keys(dir.path());
    let a = write_config(dir.path(), "a", "127.0.0.2", &etcd.endpoint(), "leader");
    let b = write_config(dir.path(), "b", "127.0.0.3", &etcd.endpoint(), "leader");

    // A starts first and becomes active; B stands by.
    let mut child_a = spawn(&a, &logs.join("a.log"));
    wait_metric(&a, "seguro_gatekeeper_active", 1.0, logs).await;
    let mut child_b = spawn(&b, &logs.join("b.log"));
    wait_metric(&b, "seguro_gatekeeper_active", 0.0, logs).await;

    // This test is replica 1, and leads.
    let client = gatekeeper::election::connect(&[etcd.endpoint()])
        .await
        .unwrap();
    let election = Election::new(client.clone(), "/seguro/gk-test", TTL);
    let leadership = election.campaign(ReplicaId::new(1).unwrap()).await;
    let epoch = leadership.epoch();
    wait_metric(&a, "seguro_gatekeeper_epoch", epoch.get() as f64, logs).await;
    wait_metric(&b, "seguro_gatekeeper_epoch", epoch.get() as f64, logs).await;

    // The peer, and the leader sending one effect every 20 ms to both boxes.
    let peer = UdpSocket::bind("127.0.0.4:0").await.unwrap();
    let lane = peer.local_addr().unwrap();
    let sender = {
        let mut sealer = Sealer::new(ReplicaId::new(1).unwrap(), epoch, keys[0].clone());
        let to = [a.listen, b.listen];
        tokio::spawn(async move {
            let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            for event in 1.. {
                let d = sealer.seal(EventNum(event), lane, b"ack").unwrap();
                for addr in to {
                    socket.send_to(&d, addr).await.unwrap();
                }
                sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let mut buf = vec![0; 2048];
    let mut recv = async |wait: Duration| -> Option<SocketAddr> {
        let (_, from) = timeout(wait, peer.recv_from(&mut buf)).await.ok()?.unwrap();
        Some(from)
    };

    // Only A forwards.
    let mut from_a = 0;
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        match recv(Duration::from_secs(5)).await {
            Some(from) => {
                assert_eq!(from, a.public, "only the active gatekeeper forwards");
                from_a += 1;
            }
            None => panic!("no effect arrived\n{}", read_logs(logs)),
        }
    }
    assert!(from_a > 10, "{from_a} effects in a second");
    let text_b = testkit::scrape(b.metrics).unwrap();
    assert!(
        testkit::sample(
            &text_b,
            "seguro_gatekeeper_dropped_total{reason=\"standby\"}"
        )
        .unwrap()
            > 0.0
    );
    assert_eq!(
        testkit::sample(&text_b, "seguro_gatekeeper_forwarded_total"),
        Some(0.0)
    );

    // kill -9 the active one: the standby takes over when its lease expires.
    let killed = Instant::now();
    child_a.kill().unwrap();
    child_a.wait().unwrap();
    let takeover = loop {
        match recv(TTL * 3).await {
            Some(from) if from == b.public => break killed.elapsed(),
            Some(_) => assert!(killed.elapsed() < Duration::from_millis(100)),
            None => panic!("the standby never took over\n{}", read_logs(logs)),
        }
    };
    eprintln!("standby forwarded {takeover:?} after the active gatekeeper was killed");
    assert!(
        takeover <= TTL + Duration::from_secs(1),
        "takeover took {takeover:?}\n{}",
        read_logs(logs)
    );
    wait_metric(&b, "seguro_gatekeeper_active", 1.0, logs).await;

    // A clean stop resigns the key at once and exits 0.
    sender.abort();
    let status =
        tokio::task::block_in_place(|| testkit::terminate(&mut child_b, Duration::from_secs(10)));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        read_logs(logs)
    );
    let mut kv = client.clone();
    let key = kv.get("/seguro/gk-test/gatekeeper", None).await.unwrap();
    assert!(
        key.kvs().is_empty(),
        "the gatekeeper key is released on exit"
    );
    drop(leadership);
}

#[test]
fn quorum_needs_the_commit_watch_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    write_keys(dir.path());
    let b = write_config(dir.path(), "q", "127.0.0.2", "http://127.0.0.1:9", "quorum");
    Cmd::new(env!("CARGO_BIN_EXE_seguro"))
        .arg("gatekeeper")
        .arg("-c")
        .arg(&b.config)
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("commit watch").and(predicate::str::contains("-o leader")),
        );
}
