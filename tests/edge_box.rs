//! One edge box running both daemons that use the ship's public address, at
//! once: `seguro lb` in userspace mode, whose relay binds `ship.public` to
//! receive the peers' packets, and `seguro gatekeeper`, which sends the
//! leader's effects from `ship.public` through a raw socket and binds
//! nothing there. Both start, and both work: a peer's packet reaches the
//! replica from the peer's own lane, and the leader's effect reaches the
//! peer from the ship's address.
//!
//! On loopback (all of 127/8 is this host's), against a real etcd and a real
//! event log node. Needs root (raw sockets), as CI runs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ames::{Body, Packet, Prelude, Ship};
use config::{Config, Key, KeyCheck, Overrides, ReplicaId};
use leadership::{Election, Sealer};
use testkit::KillOnDrop;
use tokio::net::UdpSocket;
use tokio::time::{Instant, sleep, timeout};

const TTL: Duration = Duration::from_secs(2);
const CLUSTER: &str = "edge-test";

/// The edge box's addresses.
struct Addrs {
    public: SocketAddr,
    replica: SocketAddr,
    listen: SocketAddr,
    lb_metrics: SocketAddr,
    gk_metrics: SocketAddr,
}

fn write_config(dir: &Path, a: &Addrs, etcd: &str, log: &testkit::eventlog::Cluster) -> PathBuf {
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    Key::generate()
        .unwrap()
        .save_new(&dir.join("keys/replica-1.key"))
        .unwrap();
    let text = format!(
        r#"cluster = "{CLUSTER}"
optimism = "leader"

[ship]
public = "{public}"

[[replicas]]
id = 1
ames = "{replica}"
eventlog = "{eventlog}"
eventlog_metrics = "{eventlog_metrics}"

[lb]
interface = "lo"
mode = "userspace"
metrics = "{lb_metrics}"

[gatekeeper]
listen = "{listen}"
metrics = "{gk_metrics}"

[etcd]
endpoints = ["{etcd}"]
lease_ttl = "2s"

[keys]
eventlog = "{secret}"
"#,
        public = a.public,
        replica = a.replica,
        eventlog = log.replica(1).eventlog,
        eventlog_metrics = log.replica(1).metrics,
        lb_metrics = a.lb_metrics,
        listen = a.listen,
        gk_metrics = a.gk_metrics,
        secret = log.dir().join("eventlog.key").display(),
    );
    let path = dir.join("seguro.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `seguro <daemon> -c config`, logging to `dir/<daemon>.log`.
fn spawn(daemon: &str, config: &Path, dir: &Path) -> KillOnDrop {
    let log = std::fs::File::create(dir.join(format!("{daemon}.log"))).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_seguro"))
        .args([daemon, "-c"])
        .arg(config)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    KillOnDrop(child)
}

fn logs(dir: &Path) -> String {
    ["lb", "gatekeeper"]
        .iter()
        .map(|d| {
            let text = std::fs::read_to_string(dir.join(format!("{d}.log"))).unwrap_or_default();
            format!("--- seguro {d}\n{text}")
        })
        .collect()
}

/// Waits until `ok`, failing with both logs if either daemon exits first
/// or 20 s pass.
async fn wait_until(
    what: &str,
    children: &mut [&mut Child],
    dir: &Path,
    mut ok: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok() {
        for c in children.iter_mut() {
            if let Some(status) = c.try_wait().unwrap() {
                panic!("a daemon exited ({status}) before {what}\n{}", logs(dir));
            }
        }
        assert!(Instant::now() < deadline, "never {what}\n{}", logs(dir));
        sleep(Duration::from_millis(50)).await;
    }
}

fn metric(addr: SocketAddr, series: &str) -> Option<f64> {
    testkit::sample(&testkit::scrape(addr).ok()?, series)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_and_the_gatekeeper_share_the_ships_address() {
    let etcd = tokio::task::block_in_place(testkit::Etcd::start).unwrap();
    let mut log = tokio::task::block_in_place(|| {
        testkit::eventlog::Cluster::new(env!("CARGO_BIN_EXE_seguro"), 1)
    })
    .unwrap();
    tokio::task::block_in_place(|| log.start(1)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();

    let replica = UdpSocket::bind("127.0.1.1:0").await.unwrap();
    let peer = UdpSocket::bind("127.0.0.4:0").await.unwrap();
    let lane = peer.local_addr().unwrap();
    let port =
        |ip: &str| -> SocketAddr { format!("{ip}:{}", testkit::free_port()).parse().unwrap() };
    let a = Addrs {
        public: port("127.0.0.2"),
        replica: replica.local_addr().unwrap(),
        listen: port("127.0.0.1"),
        lb_metrics: port("127.0.0.1"),
        gk_metrics: port("127.0.0.1"),
    };
    let config = write_config(dir, &a, &etcd.endpoint(), &log);

    // The relay binds the ship's address first; the gatekeeper starts
    // beside it (it used to bind the same address and port, and fail).
    let mut lb = spawn("lb", &config, dir);
    wait_until("the relay was ready", &mut [&mut *lb], dir, || {
        std::fs::read_to_string(dir.join("lb.log")).is_ok_and(|l| l.contains("ready"))
    })
    .await;
    let mut gk = spawn("gatekeeper", &config, dir);
    wait_until(
        "the gatekeeper was active",
        &mut [&mut *lb, &mut *gk],
        dir,
        || metric(a.gk_metrics, "seguro_gatekeeper_active") == Some(1.0),
    )
    .await;

    // A peer's packet to the ship reaches the replica, from the peer's lane.
    let packet = Packet {
        prelude: Prelude::new(Ship::new(0x1234), Ship::new(0x5678)),
        body: Body::Ames(b"to the ship".to_vec()),
    }
    .to_bytes();
    peer.send_to(&packet, a.public).await.unwrap();
    let mut buf = vec![0; 2048];
    let (n, from) = timeout(Duration::from_secs(5), replica.recv_from(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("the relay delivered nothing\n{}", logs(dir)))
        .unwrap();
    assert_eq!((from, &buf[..n]), (lane, packet.as_slice()));

    // The replica leads, fences the log, commits an event and sends its
    // effect to the gatekeeper: the peer gets it from the ship's address.
    let client = leadership::election::connect(&[etcd.endpoint()])
        .await
        .unwrap();
    let election = Election::new(client, &format!("/seguro/{CLUSTER}"), TTL);
    let leadership = election.campaign(ReplicaId::new(1).unwrap()).await;
    let epoch = leadership.epoch();
    let series = "seguro_gatekeeper_epoch";
    wait_until(
        "the gatekeeper saw the leader",
        &mut [&mut *lb, &mut *gk],
        dir,
        || metric(a.gk_metrics, series) == Some(epoch.get() as f64),
    )
    .await;
    let (cfg, _) = Config::load(&config, &Overrides::default(), KeyCheck::Edge).unwrap();
    let events = eventlog::Client::new(&cfg, log.key());
    let last = events.fence(epoch).await.unwrap();
    let event = last.next();
    events
        .appender(epoch, event)
        .append(event, 1, bytes::Bytes::from_static(b"e"))
        .await
        .unwrap();
    let key = Key::load(&dir.join("keys/replica-1.key")).unwrap();
    let mut sealer = Sealer::new(ReplicaId::new(1).unwrap(), epoch, key);
    let envelope = sealer.seal(event, lane.into(), b"from the ship").unwrap();
    let replica_side = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    replica_side.send_to(&envelope, a.listen).await.unwrap();
    let (n, from) = timeout(Duration::from_secs(5), peer.recv_from(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("the effect never reached the peer\n{}", logs(dir)))
        .unwrap();
    assert_eq!((from, &buf[..n]), (a.public, b"from the ship".as_slice()));

    // Both still run, and both stop cleanly.
    for (name, child) in [("gatekeeper", &mut gk), ("lb", &mut lb)] {
        let status =
            tokio::task::block_in_place(|| testkit::terminate(child, Duration::from_secs(10)));
        assert!(
            status.is_some_and(|s| s.success()),
            "seguro {name}: {status:?}\n{}",
            logs(dir)
        );
    }
    drop(leadership);
}
