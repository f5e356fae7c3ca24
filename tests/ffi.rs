//! The replica's C ABI end to end: the C reference ship
//! (replica/ffi/examples/reference_ship.c), compiled with `cc` against the
//! cdylib, is replica 1 of a cluster with a real etcd, a real event log node
//! and a real gatekeeper. A peer on loopback sends it Ames packets and gets
//! its answers through the gatekeeper; the events are in the log with the
//! mugs the Rust reference ship computes from them; a restart resumes from
//! the C ship's snapshot. A mixed cluster of C ships and the Rust reference
//! ship (`seguro replica`) replays each other's events and fails over.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use ames::{Body, Packet, Prelude, Ship as ShipName};
use config::Key;
use eventlog::EventNum;
use futures::StreamExt;
use replica::{ReferenceShip, Ship, Variant};
use testkit::KillOnDrop;
use tokio::net::UdpSocket;
use tokio::time::{Instant, sleep, timeout};

/// The ship the C replica runs, and its peer.
const OUR_SHIP: u32 = 1;
const PEER_SHIP: u32 = 0x1234;

/// The directory of the cdylib cargo built for this test run (the root
/// package dev-depends on `seguro-replica-ffi` for this): beside the test
/// binary, in `<target>/<profile>/deps`.
fn cdylib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    [deps, deps.parent().unwrap()]
        .into_iter()
        .find(|dir| dir.join("libseguro_replica.so").exists())
        .unwrap_or_else(|| panic!("no libseguro_replica.so near {}", exe.display()))
        .to_path_buf()
}

/// Compiles the C ship against the cdylib in `lib_dir`, warnings as errors.
fn compile_ship(lib_dir: &Path, out: &Path) {
    let ffi = Path::new(env!("CARGO_MANIFEST_DIR")).join("replica/ffi");
    let output = Command::new("cc")
        .args([
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-O1",
        ])
        .arg("-I")
        .arg(ffi.join("include"))
        .arg(ffi.join("examples/reference_ship.c"))
        .arg("-L")
        .arg(lib_dir)
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .arg("-lseguro_replica")
        .arg("-o")
        .arg(out)
        .output()
        .expect("cc runs (scripts/deps.sh installs gcc)");
    assert!(
        output.status.success(),
        "cc failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

struct Cluster {
    dir: tempfile::TempDir,
    config: PathBuf,
    /// Each replica's Ames and metrics addresses, by id from 1.
    replicas: Vec<(SocketAddr, SocketAddr)>,
    public: SocketAddr,
    gatekeeper_metrics: SocketAddr,
}

impl Cluster {
    fn metrics(&self, id: u32) -> SocketAddr {
        self.replicas[id as usize - 1].1
    }
}

/// A cluster of as many replicas as `log` has nodes, with a gatekeeper.
fn write_config(etcd: &str, log: &testkit::eventlog::Cluster, n: u32) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("keys")).unwrap();
    let port =
        |ip: &str| -> SocketAddr { format!("{ip}:{}", testkit::free_port()).parse().unwrap() };
    let mut replicas = Vec::new();
    let mut text = String::new();
    for id in 1..=n {
        Key::generate()
            .unwrap()
            .save_new(&dir.path().join(format!("keys/replica-{id}.key")))
            .unwrap();
        std::fs::create_dir_all(dir.path().join(format!("ship-{id}"))).unwrap();
        let (ames, metrics) = (port("127.0.0.1"), port("127.0.0.1"));
        replicas.push((ames, metrics));
        text += &format!(
            r#"
[[replicas]]
id = {id}
ames = "{ames}"
eventlog = "{eventlog}"
eventlog_metrics = "{eventlog_metrics}"
metrics = "{metrics}"
"#,
            eventlog = log.replica(id).eventlog,
            eventlog_metrics = log.replica(id).metrics,
        );
    }
    let (listen, public, gatekeeper_metrics) =
        (port("127.0.0.1"), port("127.0.0.2"), port("127.0.0.1"));
    let text = format!(
        r#"cluster = "ffi-test"
optimism = "quorum"

[ship]
public = "{public}"
{text}
[lb]
interface = "lo"

[gatekeeper]
listen = "{listen}"
metrics = "{gatekeeper_metrics}"

[etcd]
endpoints = ["{etcd}"]
lease_ttl = "2s"

[replica]
data_dir = "{data}"

[keys]
eventlog = "{secret}"
"#,
        secret = log.dir().join("eventlog.key").display(),
        data = dir.path().join("agent").display(),
    );
    let config = dir.path().join("cluster.toml");
    std::fs::write(&config, text).unwrap();
    Cluster {
        dir,
        config,
        replicas,
        public,
        gatekeeper_metrics,
    }
}

fn log_file(c: &Cluster, name: &str) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(c.dir.path().join(name))
        .unwrap()
}

fn logs(c: &Cluster) -> String {
    let names = (1..=c.replicas.len()).map(|id| format!("replica-{id}.log"));
    std::iter::once("gatekeeper.log".to_string())
        .chain(names)
        .map(|f| {
            let text = std::fs::read_to_string(c.dir.path().join(&f)).unwrap_or_default();
            format!("--- {f}\n{text}")
        })
        .collect()
}

/// Starts `command` with its output appended to `log` in the test's
/// directory, RUST_LOG=info.
fn spawn(c: &Cluster, command: &mut Command, log: &str) -> KillOnDrop {
    command.env("RUST_LOG", "info");
    KillOnDrop(testkit::process::spawn_logged(command, log_file(c, log)).unwrap())
}

fn spawn_gatekeeper(c: &Cluster) -> KillOnDrop {
    let mut command = Command::new(env!("CARGO_BIN_EXE_seguro"));
    command.args(["gatekeeper", "-c"]).arg(&c.config);
    spawn(c, &mut command, "gatekeeper.log")
}

/// Starts the C ship as replica `id`, snapshotting every `every` events.
fn spawn_ship(c: &Cluster, ship: &Path, id: u32, every: u64) -> KillOnDrop {
    let mut command = Command::new(ship);
    command
        .arg(&c.config)
        .arg(id.to_string())
        .arg(c.dir.path().join(format!("ship-{id}")))
        .arg(every.to_string());
    spawn(c, &mut command, &format!("replica-{id}.log"))
}

/// Starts `seguro replica`, the Rust reference ship in-process, as replica
/// `id`.
fn spawn_rust_replica(c: &Cluster, id: u32) -> KillOnDrop {
    let mut command = Command::new(env!("CARGO_BIN_EXE_seguro"));
    command
        .args(["replica", "-c"])
        .arg(&c.config)
        .args(["--id", &id.to_string()]);
    spawn(c, &mut command, &format!("replica-{id}.log"))
}

/// Waits until `series` reads `value` at `addr`.
async fn wait_metric(c: &Cluster, addr: SocketAddr, series: &str, value: f64) {
    let limit = Duration::from_secs(30);
    if let Err(e) =
        tokio::task::block_in_place(|| testkit::metrics::wait_sample(addr, series, value, limit))
    {
        panic!("{e}\n{}", logs(c));
    }
}

/// Waits until replica `id` leads and the gatekeeper follows its term: a
/// gatekeeper drops effects of a term it has not seen yet (a real peer
/// would retransmit; this one counts answers).
async fn wait_leading(c: &Cluster, id: u32) {
    wait_metric(c, c.metrics(id), "seguro_replica_leader", 1.0).await;
    let text = testkit::scrape(c.metrics(id)).unwrap();
    let epoch = testkit::sample(&text, "seguro_replica_epoch").expect("a leader has an epoch");
    wait_metric(c, c.gatekeeper_metrics, "seguro_gatekeeper_epoch", epoch).await;
}

/// Sends one Ames packet from the peer to every replica, as the edge box
/// copies it.
async fn send(c: &Cluster, peer: &UdpSocket, content: &[u8]) {
    let request = Packet {
        prelude: Prelude::new(
            ShipName::new(PEER_SHIP.into()),
            ShipName::new(OUR_SHIP.into()),
        ),
        body: Body::Ames(content.to_vec()),
    }
    .to_bytes();
    for (ames, _) in &c.replicas {
        peer.send_to(&request, ames).await.unwrap();
    }
}

/// Sends one Ames packet and returns the answer's `(event, mug)`.
async fn ask(c: &Cluster, peer: &UdpSocket, content: &[u8]) -> (EventNum, u32) {
    send(c, peer, content).await;
    answer(c, peer, Duration::from_secs(15))
        .await
        .unwrap_or_else(|| panic!("no answer to {content:?}\n{}", logs(c)))
}

/// The next answer's `(event, mug)`, checking it came through the
/// gatekeeper; `None` if none comes within `wait`.
async fn answer(c: &Cluster, peer: &UdpSocket, wait: Duration) -> Option<(EventNum, u32)> {
    let mut buf = vec![0; 2048];
    let (len, from) = timeout(wait, peer.recv_from(&mut buf)).await.ok()?.unwrap();
    assert_eq!(
        from, c.public,
        "answers leave from the ship's public address"
    );
    let Ok(ames::Datagram::Ames(answer)) = ames::parse(&buf[..len]) else {
        panic!("the answer is not an Ames packet: {:02x?}", &buf[..len]);
    };
    assert_eq!(answer.prelude.sender.ship(), ShipName::new(OUR_SHIP.into()));
    assert_eq!(
        answer.prelude.receiver.ship(),
        ShipName::new(PEER_SHIP.into())
    );
    let Body::Ames(body) = answer.body else {
        panic!("an Ames body")
    };
    Some(ReferenceShip::read_answer(&body).expect("12 bytes of event and mug"))
}

/// Stops the C ship with SIGTERM: it stops the agent, which resigns; it
/// exits 0.
fn stop_ship(c: &Cluster, ship: &mut Child) {
    let status = tokio::task::block_in_place(|| testkit::terminate(ship, Duration::from_secs(15)));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        logs(c)
    );
}

/// Event `num` from the log, with the runtime's bytes unframed.
async fn event(client: &eventlog::Client, num: u64) -> (eventlog::Event, bytes::Bytes) {
    let event = client
        .read(EventNum(num), Some(EventNum(num)))
        .next()
        .await
        .expect("the event is in the log")
        .expect("the event can be read");
    let (packet, data) = replica::frame::decode(&event.data).expect("framed by the agent");
    assert!(
        packet.is_some(),
        "event {num} names the packet it came from"
    );
    (event, data)
}

/// What both tests start: etcd, `n` event log nodes, the config, the C
/// ship compiled against the library, a log client, an active gatekeeper.
struct Setup {
    etcd: testkit::Etcd,
    log: testkit::eventlog::Cluster,
    c: Cluster,
    ship: PathBuf,
    client: eventlog::Client,
    gatekeeper: KillOnDrop,
}

async fn setup(n: u32) -> Setup {
    let lib_dir = cdylib_dir();
    let etcd = tokio::task::block_in_place(testkit::Etcd::start).unwrap();
    let mut log = tokio::task::block_in_place(|| {
        testkit::eventlog::Cluster::new(env!("CARGO_BIN_EXE_seguro"), n)
    })
    .unwrap();
    for id in 1..=n {
        tokio::task::block_in_place(|| log.start(id)).unwrap();
    }
    let c = write_config(&etcd.endpoint(), &log, n);
    let ship = c.dir.path().join("reference_ship");
    tokio::task::block_in_place(|| compile_ship(&lib_dir, &ship));
    let client = eventlog::Client::new(&testkit::load_config(&c.config), log.key());
    let gatekeeper = spawn_gatekeeper(&c);
    wait_metric(&c, c.gatekeeper_metrics, "seguro_gatekeeper_active", 1.0).await;
    Setup {
        etcd,
        log,
        c,
        ship,
        client,
        gatekeeper,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_c_ship_answers_peers_through_the_gatekeeper_and_its_events_commit() {
    let Setup {
        etcd,
        // Kept to the end: dropping it stops the event log.
        log: _log,
        c,
        ship,
        client,
        mut gatekeeper,
    } = setup(1).await;

    // A new ship leads and answers each packet with its event and mug. It
    // takes no snapshot yet, so that the log keeps every event.
    let mut replica = spawn_ship(&c, &ship, 1, 1000);
    wait_leading(&c, 1).await;
    let peer = UdpSocket::bind("127.0.0.4:0").await.unwrap();
    let mut answers = Vec::new();
    for i in 0..20u8 {
        answers.push(ask(&c, &peer, &[b'p', i]).await);
    }
    let nums: Vec<u64> = answers.iter().map(|(n, _)| n.get()).collect();
    assert_eq!(
        nums,
        (1..=20).collect::<Vec<_>>(),
        "one event per packet, in order"
    );
    stop_ship(&c, &mut replica);

    // The log holds the events with the mugs the C ship answered with,
    // which are the mugs the Rust reference ship computes from the events.
    let mut reference = ReferenceShip::new(Variant::Deterministic);
    for (num, mug) in &answers {
        let (event, data) = event(&client, num.get()).await;
        assert_eq!(
            event.mug, *mug,
            "event {num}: the log's mug is the answer's"
        );
        let applied = reference.apply(*num, &data).unwrap();
        assert_eq!(
            applied.mug.get(),
            *mug,
            "event {num}: the C ship computes as the Rust one"
        );
        assert_eq!(applied.effects.len(), 1);
    }

    // Restarted without a snapshot, it replays the log through the ABI (the
    // agent checks every mug), snapshots every 5 events, and leads again.
    let mut replica = spawn_ship(&c, &ship, 1, 5);
    wait_leading(&c, 1).await;
    let text = testkit::scrape(c.metrics(1)).unwrap();
    assert_eq!(
        testkit::sample(&text, "seguro_replica_replayed_total"),
        Some(20.0),
        "{text}"
    );
    assert_eq!(
        testkit::sample(&text, "seguro_replica_mug_mismatches_total"),
        Some(0.0),
        "{text}"
    );
    let (num, mug) = ask(&c, &peer, b"again").await;
    assert_eq!(num, EventNum(21), "{}", logs(&c));
    let (_, data) = event(&client, 21).await;
    assert_eq!(reference.apply(num, &data).unwrap().mug.get(), mug);
    stop_ship(&c, &mut replica);

    // Restarted again, it starts from its snapshot of event 20, replays 21,
    // and answers the next packet as event 22.
    let mut replica = spawn_ship(&c, &ship, 1, 5);
    wait_leading(&c, 1).await;
    assert!(
        logs(&c).contains("ship: started at event 20"),
        "the snapshot held event 20\n{}",
        logs(&c)
    );
    let (num, mug) = ask(&c, &peer, b"once more").await;
    assert_eq!(num, EventNum(22), "{}", logs(&c));
    let (_, data) = event(&client, 22).await;
    assert_eq!(reference.apply(num, &data).unwrap().mug.get(), mug);

    stop_ship(&c, &mut replica);
    tokio::task::block_in_place(|| testkit::terminate(&mut gatekeeper, Duration::from_secs(10)));
    drop(etcd);
}

/// Waits until one of `ids` leads, and returns it.
async fn leader_among(c: &Cluster, ids: &[u32]) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for &id in ids {
            let text = testkit::scrape(c.metrics(id)).unwrap_or_default();
            if testkit::sample(&text, "seguro_replica_leader") == Some(1.0) {
                return id;
            }
        }
        assert!(
            Instant::now() < deadline,
            "none of {ids:?} took over\n{}",
            logs(c)
        );
        sleep(Duration::from_millis(50)).await;
    }
}

fn mismatches(c: &Cluster, id: u32) -> Option<f64> {
    let text = testkit::scrape(c.metrics(id)).ok()?;
    testkit::sample(&text, "seguro_replica_mug_mismatches_total")
}

/// Three replicas on three event log nodes: the Rust reference ship
/// (`seguro replica`, replica 3) and two C ships. The Rust replica leads
/// first and the C ships replay its events through the ABI, their mugs
/// checked; it is killed (-9), a C ship takes over and answers, and the Rust
/// replica, back, replays the C ship's events: no mug differs anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_and_rust_ships_replay_each_other_and_a_c_ship_takes_over() {
    let Setup {
        etcd,
        // Kept to the end: dropping it stops the event log.
        log: _log,
        c,
        ship,
        client,
        mut gatekeeper,
    } = setup(3).await;

    let mut rust = spawn_rust_replica(&c, 3);
    wait_leading(&c, 3).await;
    let mut ships = [
        spawn_ship(&c, &ship, 1, 10_000),
        spawn_ship(&c, &ship, 2, 10_000),
    ];
    for id in [1, 2] {
        wait_metric(&c, c.metrics(id), "seguro_replica_leader", 0.0).await;
    }

    let peer = UdpSocket::bind("127.0.0.4:0").await.unwrap();
    let mut answers = Vec::new();
    for i in 0..10u8 {
        answers.push(ask(&c, &peer, &[b'r', i]).await);
    }
    for id in [1, 2] {
        wait_metric(&c, c.metrics(id), "seguro_replica_applied_event", 10.0).await;
        assert_eq!(mismatches(&c, id), Some(0.0), "{}", logs(&c));
    }

    rust.kill().unwrap();
    rust.wait().unwrap();
    let new_leader = leader_among(&c, &[1, 2]).await;
    wait_leading(&c, new_leader).await;
    eprintln!("C ship {new_leader} took over");
    for i in 0..5u8 {
        answers.push(ask(&c, &peer, &[b'c', i]).await);
    }
    let nums: Vec<u64> = answers.iter().map(|(n, _)| n.get()).collect();
    assert_eq!(nums, (1..=15).collect::<Vec<_>>(), "{}", logs(&c));

    let mut rust = spawn_rust_replica(&c, 3);
    wait_metric(&c, c.metrics(3), "seguro_replica_applied_event", 15.0).await;
    for id in 1..=3 {
        assert_eq!(mismatches(&c, id), Some(0.0), "replica {id}\n{}", logs(&c));
    }
    let mut reference = ReferenceShip::new(Variant::Deterministic);
    for (num, mug) in &answers {
        let (event, data) = event(&client, num.get()).await;
        assert_eq!(
            event.mug, *mug,
            "event {num}: the log's mug is the answer's"
        );
        assert_eq!(reference.apply(*num, &data).unwrap().mug.get(), *mug);
    }

    for ship in &mut ships {
        stop_ship(&c, ship);
    }
    tokio::task::block_in_place(|| {
        testkit::terminate(&mut rust, Duration::from_secs(10));
        testkit::terminate(&mut gatekeeper, Duration::from_secs(10));
    });
    drop(etcd);
}

/// Three C ships. The leader's term is ended behind its back (its key in
/// etcd deleted): its agent steps down and tells it REWIND, the ship goes
/// back to its last snapshot and answers `seguro_replica_restored`, and the
/// agent replays the committed events after it. A new term (any of the
/// three may win it) answers on from the next event number, and every ship
/// ends with the same state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_c_ship_that_loses_its_term_rewinds_to_its_snapshot_and_carries_on() {
    let Setup {
        etcd,
        log: _log,
        c,
        ship,
        mut gatekeeper,
        ..
    } = setup(3).await;
    // Snapshots every 4 events, so that the rewind has one to go back to.
    let mut ships = [1, 2, 3].map(|id| spawn_ship(&c, &ship, id, 4));
    let first = leader_among(&c, &[1, 2, 3]).await;
    wait_leading(&c, first).await;

    let peer = UdpSocket::bind("127.0.0.4:0").await.unwrap();
    let mut answers = Vec::new();
    for i in 0..6u8 {
        answers.push(ask(&c, &peer, &[b'a', i]).await);
    }

    let config = testkit::load_config(&c.config);
    let key = format!(
        "{}/{}",
        config.etcd_root(),
        leadership::election::LEADER_KEY
    );
    let mut etcd_client = leadership::election::connect(&[etcd.endpoint()])
        .await
        .unwrap();
    let deleted = etcd_client.delete(key.as_str(), None).await.unwrap();
    assert_eq!(deleted.deleted(), 1, "no leader key at {key}");
    wait_metric(
        &c,
        c.metrics(first),
        "seguro_replica_step_downs_total{reason=\"lease_lost\"}",
        1.0,
    )
    .await;
    let log = std::fs::read_to_string(c.dir.path().join(format!("replica-{first}.log"))).unwrap();
    let rewound: u64 = log
        .lines()
        .find_map(|l| l.split("ship: rewound to event ").nth(1))
        .unwrap_or_else(|| panic!("replica {first} never rewound:\n{log}"))
        .trim()
        .parse()
        .unwrap();
    assert!(
        (4..=6).contains(&rewound),
        "replica {first} rewound to event {rewound}, not to its snapshot at 4 to 6"
    );
    // Back at its snapshot, it replays the committed events after it.
    wait_metric(&c, c.metrics(first), "seguro_replica_applied_event", 6.0).await;

    let next = leader_among(&c, &[1, 2, 3]).await;
    wait_leading(&c, next).await;
    eprintln!("replica {first} rewound to {rewound}; replica {next} leads now");
    for i in 0..6u8 {
        answers.push(ask(&c, &peer, &[b'b', i]).await);
    }
    let nums: Vec<u64> = answers.iter().map(|(n, _)| n.get()).collect();
    assert_eq!(nums, (1..=12).collect::<Vec<_>>(), "{}", logs(&c));
    // Each follower checks every replayed event's mug against the log's
    // (the events themselves are purged by now: every ship checkpoints
    // every 4 events).
    for id in 1..=3 {
        wait_metric(&c, c.metrics(id), "seguro_replica_applied_event", 12.0).await;
        assert_eq!(mismatches(&c, id), Some(0.0), "replica {id}\n{}", logs(&c));
    }

    for ship in &mut ships {
        stop_ship(&c, ship);
    }
    tokio::task::block_in_place(|| testkit::terminate(&mut gatekeeper, Duration::from_secs(10)));
    drop(etcd);
}
