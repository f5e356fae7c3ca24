//! `seguro gatekeeper` as operators run it, against a real etcd and a real
//! event log node: two edge-box gatekeepers, one forwards and the other
//! stands by and takes over within TTL + 1 s when the active one is killed
//! (-9); under `quorum`, effects wait for their events to commit and leave
//! in order.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use config::{Key, ReplicaId};
use eventlog::EventNum;
use leadership::{Election, Sealer};
use testkit::KillOnDrop;
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

/// A one-node event log (a quorum of one) for the gatekeepers' commit watch.
fn event_log() -> testkit::eventlog::Cluster {
    let mut log = testkit::eventlog::Cluster::new(env!("CARGO_BIN_EXE_seguro"), 1).unwrap();
    log.start(1).unwrap();
    log
}

/// Replica 1's signing key, in `dir/keys`.
fn write_key(dir: &Path) -> Key {
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    let k = Key::generate().unwrap();
    k.save_new(&dir.join("keys/replica-1.key")).unwrap();
    k
}

/// A client of the test's event log, patient enough for its first election.
fn log_client(log: &testkit::eventlog::Cluster) -> eventlog::Client {
    eventlog::Client::with_options(
        vec![log.replica(1).eventlog.to_string()],
        log.key(),
        eventlog::ClientOptions {
            request_timeout: Duration::from_secs(2),
            deadline: Duration::from_secs(30),
            append_timeout: Duration::from_secs(30),
            batch: config::BatchLimits {
                max_events: 16,
                max_bytes: 1 << 20,
                max_linger: Duration::from_millis(1),
            },
            max_event_bytes: 1 << 20,
            max_in_flight: 8,
        },
    )
}

fn write_config(
    dir: &Path,
    name: &str,
    public_ip: &str,
    etcd: &str,
    log: &testkit::eventlog::Cluster,
    optimism: &str,
) -> Box_ {
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
eventlog = "{eventlog}"
eventlog_metrics = "{eventlog_metrics}"

[lb]
interface = "lo"

[gatekeeper]
listen = "{listen}"
metrics = "{metrics}"

[etcd]
endpoints = ["{etcd}"]
lease_ttl = "2s"

[keys]
eventlog = "{secret}"
"#,
        eventlog = log.replica(1).eventlog,
        eventlog_metrics = log.replica(1).metrics,
        secret = log.dir().join("eventlog.key").display(),
        public = b.public,
        listen = b.listen,
        metrics = b.metrics,
    );
    std::fs::write(&b.config, text).unwrap();
    b
}

fn spawn(b: &Box_, log: &Path) -> KillOnDrop {
    let log = std::fs::File::create(log).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_seguro"));
    command
        .arg("gatekeeper")
        .arg("-c")
        .arg(&b.config)
        .env("RUST_LOG", "info");
    KillOnDrop(testkit::process::spawn_logged(&mut command, log).unwrap())
}

/// Waits until `series` reads `value` on the box's /metrics.
async fn wait_metric(b: &Box_, series: &str, value: f64, logs: &Path) {
    let limit = Duration::from_secs(20);
    if let Err(e) = tokio::task::block_in_place(|| {
        testkit::metrics::wait_sample(b.metrics, series, value, limit)
    }) {
        panic!("{e}\nlogs:\n{}", read_logs(logs));
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
    let log = tokio::task::block_in_place(event_log);
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path();
    let key = write_key(dir.path());
    let a = write_config(
        dir.path(),
        "a",
        "127.0.0.2",
        &etcd.endpoint(),
        &log,
        "leader",
    );
    let b = write_config(
        dir.path(),
        "b",
        "127.0.0.3",
        &etcd.endpoint(),
        &log,
        "leader",
    );

    // A starts first and becomes active; B stands by.
    let mut child_a = spawn(&a, &logs.join("a.log"));
    wait_metric(&a, "seguro_gatekeeper_active", 1.0, logs).await;
    let mut child_b = spawn(&b, &logs.join("b.log"));
    wait_metric(&b, "seguro_gatekeeper_active", 0.0, logs).await;

    // This test is replica 1, and leads.
    let client = leadership::election::connect(&[etcd.endpoint()])
        .await
        .unwrap();
    let election = Election::new(client.clone(), "/seguro/gk-test", TTL);
    let leadership = election.campaign(ReplicaId::new(1).unwrap()).await;
    let epoch = leadership.epoch();
    wait_metric(&a, "seguro_gatekeeper_epoch", epoch.get() as f64, logs).await;
    wait_metric(&b, "seguro_gatekeeper_epoch", epoch.get() as f64, logs).await;
    // As a new leader does (SPEC §6.3): fence the log at its epoch.
    let events = log_client(&log);
    let last = events.fence(epoch).await.unwrap();

    // The peer, and the leader appending one event every 20 ms and sending
    // its effect to both boxes once it is durable.
    let peer = UdpSocket::bind("127.0.0.4:0").await.unwrap();
    let lane = peer.local_addr().unwrap();
    let sender = {
        let mut sealer = Sealer::new(ReplicaId::new(1).unwrap(), epoch, key.clone());
        let appender = events.appender(epoch, last.next());
        let to = [a.listen, b.listen];
        tokio::spawn(async move {
            let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            for event in last.get() + 1.. {
                appender
                    .append(EventNum(event), 1, bytes::Bytes::from_static(b"e"))
                    .await
                    .unwrap();
                let d = sealer.seal(EventNum(event), lane.into(), b"ack").unwrap();
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
    // One every 20 ms when idle; a loaded 2-core CI machine commits fewer.
    assert!(from_a >= 3, "{from_a} effects in a second");
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
    // What A sent before it died is queued already (loopback delivers in
    // the send); after that, only B may forward.
    while let Some(from) = recv(Duration::ZERO).await {
        assert_eq!(from, a.public, "the standby forwarded while A was active");
    }
    let takeover = match recv(TTL * 3).await {
        Some(from) if from == b.public => killed.elapsed(),
        Some(from) => panic!("{from} forwarded after the active gatekeeper died"),
        None => panic!("the standby never took over\n{}", read_logs(logs)),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_quorum_effects_wait_for_their_events_and_leave_in_order() {
    let etcd = tokio::task::block_in_place(testkit::Etcd::start).unwrap();
    let log = tokio::task::block_in_place(event_log);
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path();
    let key = write_key(dir.path());
    let a = write_config(
        dir.path(),
        "a",
        "127.0.0.2",
        &etcd.endpoint(),
        &log,
        "quorum",
    );
    let mut child = spawn(&a, &logs.join("a.log"));
    wait_metric(&a, "seguro_gatekeeper_active", 1.0, logs).await;

    let etcd_client = leadership::election::connect(&[etcd.endpoint()])
        .await
        .unwrap();
    let election = Election::new(etcd_client, "/seguro/gk-test", TTL);
    let leadership = election.campaign(ReplicaId::new(1).unwrap()).await;
    let epoch = leadership.epoch();
    wait_metric(&a, "seguro_gatekeeper_epoch", epoch.get() as f64, logs).await;
    let client = log_client(&log);
    let last = client.fence(epoch).await.unwrap();

    // Ten effects for events the log does not have yet: all held.
    let peer = UdpSocket::bind("127.0.0.4:0").await.unwrap();
    let lane = peer.local_addr().unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut sealer = Sealer::new(ReplicaId::new(1).unwrap(), epoch, key);
    let events: Vec<u64> = (last.get() + 1..=last.get() + 10).collect();
    for &n in &events {
        let d = sealer
            .seal(EventNum(n), lane.into(), &n.to_be_bytes())
            .unwrap();
        socket.send_to(&d, a.listen).await.unwrap();
    }
    wait_metric(&a, "seguro_gatekeeper_held_effects", 10.0, logs).await;
    let mut buf = [0u8; 64];
    assert!(
        timeout(Duration::from_millis(500), peer.recv_from(&mut buf))
            .await
            .is_err(),
        "nothing leaves before its event commits"
    );

    // Commit them: the effects leave, in order.
    let appender = client.appender(epoch, last.next());
    let appended: Vec<_> = events
        .iter()
        .map(|&n| appender.append(EventNum(n), 1, bytes::Bytes::from_static(b"e")))
        .collect();
    for &n in &events {
        let (len, from) = timeout(Duration::from_secs(10), peer.recv_from(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("effect of event {n} never left\n{}", read_logs(logs)))
            .unwrap();
        assert_eq!(from, a.public);
        assert_eq!(&buf[..len], &n.to_be_bytes(), "in order");
    }
    for commit in appended {
        commit.await.unwrap();
    }
    wait_metric(&a, "seguro_gatekeeper_held_effects", 0.0, logs).await;
    let status =
        tokio::task::block_in_place(|| testkit::terminate(&mut child, Duration::from_secs(10)));
    assert!(status.is_some_and(|s| s.success()));
    drop(leadership);
}

#[test]
fn without_cap_net_raw_it_says_so_and_exits_77() {
    // Root, with CAP_NET_RAW gone from the bounding set: the raw socket
    // that sends from the ship's address is refused before etcd is asked.
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test drops CAP_NET_RAW with setpriv: run it as root (CI does)"
    );
    let dir = tempfile::tempdir().unwrap();
    write_key(dir.path());
    let secret = dir.path().join("eventlog.key");
    Key::generate().unwrap().save_new(&secret).unwrap();
    let config = dir.path().join("seguro.toml");
    let port = testkit::free_port;
    std::fs::write(
        &config,
        format!(
            "cluster = \"t\"\n[ship]\npublic = \"127.0.0.2:34543\"\n\
             [[replicas]]\nid = 1\names = \"127.0.1.1:34543\"\n\
             [lb]\ninterface = \"lo\"\n\
             [gatekeeper]\nlisten = \"127.0.0.1:{}\"\nmetrics = \"127.0.0.1:{}\"\n\
             [etcd]\nendpoints = [\"http://127.0.0.1:{}\"]\n\
             [keys]\neventlog = \"{}\"\n",
            port(),
            port(),
            port(),
            secret.display()
        ),
    )
    .unwrap();
    let out = Command::new("setpriv")
        .args(["--inh-caps=-net_raw", "--bounding-set=-net_raw"])
        .arg(env!("CARGO_BIN_EXE_seguro"))
        .args(["gatekeeper", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(77), "{stderr}");
    assert!(
        stderr.contains("the gatekeeper needs CAP_NET_RAW to send from the ship's address"),
        "{stderr}"
    );
}
