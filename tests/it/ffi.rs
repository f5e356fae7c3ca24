//! The replica's C ABI end to end: the C reference ship
//! (replica/ffi/examples/reference_ship.c), compiled with `cc` against the
//! cdylib, is replica 1 of a cluster with a real etcd, a real event log node
//! and a real gatekeeper. A peer on loopback sends it Ames packets and gets
//! its answers through the gatekeeper; the events are in the log with the
//! mugs the Rust reference ship computes from them; a restart resumes from
//! the C ship's snapshot. A mixed cluster of C ships and the Rust reference
//! ship (`seguro replica`) replays each other's events and fails over.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ames::{Body, Packet, Prelude, Ship as ShipName};
use eventlog::EventNum;
use futures::StreamExt;
use replica::{ReferenceShip, Ship, Variant};
use testkit::{Daemon, Lab};
use tokio::net::UdpSocket;
use tokio::task::block_in_place;
use tokio::time::timeout;

/// The ship the C replica runs, and its peer.
const OUR_SHIP: u32 = 1;
const PEER_SHIP: u32 = 0x1234;

/// The directory of the cdylib cargo built for this test run (the root
/// package dev-depends on `seguro-replica-ffi` for this): beside the test
/// binary, in `<target>/<profile>/deps`.
pub(crate) fn cdylib_dir() -> PathBuf {
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
    compile_c(lib_dir, &[ffi.join("examples/reference_ship.c")], out);
}

/// Compiles C `sources` into the program `out`, linked against the cdylib
/// in `lib_dir`, warnings as errors.
pub(crate) fn compile_c(lib_dir: &Path, sources: &[PathBuf], out: &Path) {
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
        .args(sources)
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

/// Replica `id`'s agent: the C ship, or `seguro replica`.
pub(crate) fn agent(id: u32) -> Daemon {
    Daemon::Replica(id.try_into().expect("a small replica id"))
}

/// Every daemon's last lines, for a failure message.
pub(crate) fn logs(c: &mut Lab) -> String {
    c.logs_tail(60)
}

/// Starts the C ship as replica `id`, snapshotting every `every` events.
fn spawn_ship(c: &mut Lab, ship: &Path, id: u32, every: u64) {
    let dir = c.dir().join(format!("ship-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut command = Command::new(ship);
    command
        .arg(c.config_path())
        .arg(id.to_string())
        .arg(dir)
        .arg(every.to_string());
    block_in_place(|| c.spawn(agent(id), command)).unwrap();
}

/// Starts `seguro replica`, the Rust reference ship in-process, as replica
/// `id`.
fn spawn_rust_replica(c: &mut Lab, id: u32) {
    block_in_place(|| c.start(agent(id))).unwrap();
}

/// Waits until `series` reads `value` on `daemon`.
pub(crate) fn wait_metric(c: &mut Lab, daemon: &Daemon, series: &str, value: f64) {
    block_in_place(|| {
        c.wait(
            Duration::from_secs(30),
            &format!("{series} = {value} on {daemon}"),
            |c| c.metric(daemon, series) == Some(value),
        )
    });
}

/// Waits until replica `id` leads and the gatekeeper follows its term: a
/// gatekeeper drops effects of a term it has not seen yet (a real peer
/// would retransmit; this one counts answers).
pub(crate) fn wait_leading(c: &mut Lab, id: u32) {
    wait_metric(c, &agent(id), "seguro_replica_leader", 1.0);
    let epoch = c
        .metric(&agent(id), "seguro_replica_epoch")
        .expect("a leader has an epoch");
    wait_metric(c, &Daemon::Gatekeeper(1), "seguro_gatekeeper_epoch", epoch);
}

/// Sends one Ames packet from the peer to every replica, as the edge box
/// copies it.
async fn send(c: &Lab, peer: &UdpSocket, content: &[u8]) {
    let request = Packet {
        prelude: Prelude::new(
            ShipName::new(PEER_SHIP.into()),
            ShipName::new(OUR_SHIP.into()),
        ),
        body: Body::Ames(content.to_vec()),
    }
    .to_bytes();
    for r in &c.file().replicas {
        peer.send_to(&request, r.ames).await.unwrap();
    }
}

/// Sends one Ames packet and returns the answer's `(event, mug)`.
async fn ask(c: &mut Lab, peer: &UdpSocket, content: &[u8]) -> (EventNum, u32) {
    send(c, peer, content).await;
    match answer(c, peer, Duration::from_secs(15)).await {
        Some(a) => a,
        None => panic!("no answer to {content:?}\n{}", logs(c)),
    }
}

/// The next answer's `(event, mug)`, checking it came through the
/// gatekeeper; `None` if none comes within `wait`.
async fn answer(c: &Lab, peer: &UdpSocket, wait: Duration) -> Option<(EventNum, u32)> {
    let mut buf = vec![0; 2048];
    let (len, from) = timeout(wait, peer.recv_from(&mut buf)).await.ok()?.unwrap();
    assert_eq!(
        from,
        c.file().ship.public,
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

/// Stops replica `id`'s ship with SIGTERM: it stops the agent, which
/// resigns; it exits 0.
pub(crate) fn stop_ship(c: &mut Lab, id: u32) {
    let status = block_in_place(|| c.stop(&agent(id), Duration::from_secs(15)));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        logs(c)
    );
}

/// Ends a test's cluster: each of `ships` (C runtimes) stopped as
/// [`stop_ship`] does, then the agents of `others` (whatever their exit),
/// then the gatekeeper.
pub(crate) fn stop_cluster(c: &mut Lab, ships: impl IntoIterator<Item = u32>, others: &[u32]) {
    for id in ships {
        stop_ship(c, id);
    }
    block_in_place(|| {
        for &id in others {
            c.stop(&agent(id), Duration::from_secs(10));
        }
        c.stop(&Daemon::Gatekeeper(1), Duration::from_secs(10));
    });
}

/// Event `num` from the log, with the runtime's bytes unframed.
async fn event(client: &eventlog::Client, num: u64) -> (eventlog::Event, bytes::Bytes) {
    let event = client
        .read(EventNum(num), Some(EventNum(num)))
        .next()
        .await
        .expect("the event is in the log")
        .expect("the event can be read");
    let framed = replica::frame::decode(&event.data).expect("framed by the agent");
    let data = framed.data;
    assert!(
        framed.packet.is_some(),
        "event {num} names the packet it came from"
    );
    (event, data)
}

/// What every test starts: etcd, `n` event log nodes, the config, the C
/// ship compiled against the library, a log client, an active gatekeeper.
struct Setup {
    c: Lab,
    ship: PathBuf,
    client: eventlog::Client,
}

async fn setup(n: u8) -> Setup {
    let lib_dir = cdylib_dir();
    let mut c = block_in_place(|| {
        let mut c = Lab::new(env!("CARGO_BIN_EXE_seguro"), "ffi-test", n)?;
        c.start_etcd()?;
        c.file_mut().etcd.lease_ttl = Some(Duration::from_secs(2));
        c.write_config()?;
        c.start_eventlog()?;
        std::io::Result::Ok(c)
    })
    .unwrap();
    let ship = c.dir().join("reference_ship");
    block_in_place(|| compile_ship(&lib_dir, &ship));
    let one = config::Role::Replica(config::ReplicaId::new(1).unwrap());
    let client = eventlog::Client::new(&testkit::load_config(&c.config_path()), c.credentials(one));
    block_in_place(|| c.start(Daemon::Gatekeeper(1))).unwrap();
    wait_metric(
        &mut c,
        &Daemon::Gatekeeper(1),
        "seguro_gatekeeper_active",
        1.0,
    );
    Setup { c, ship, client }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_c_ship_answers_peers_through_the_gatekeeper_and_its_events_commit() {
    let Setup {
        mut c,
        ship,
        client,
    } = setup(1).await;

    // A new ship leads and answers each packet with its event and mug. It
    // takes no snapshot yet, so that the log keeps every event.
    spawn_ship(&mut c, &ship, 1, 1000);
    wait_leading(&mut c, 1);
    let peer = UdpSocket::bind("127.0.0.4:0").await.unwrap();
    let mut answers = Vec::new();
    for i in 0..20u8 {
        answers.push(ask(&mut c, &peer, &[b'p', i]).await);
    }
    let nums: Vec<u64> = answers.iter().map(|(n, _)| n.get()).collect();
    assert_eq!(
        nums,
        (1..=20).collect::<Vec<_>>(),
        "one event per packet, in order"
    );
    stop_ship(&mut c, 1);

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
    spawn_ship(&mut c, &ship, 1, 5);
    wait_leading(&mut c, 1);
    let m = block_in_place(|| c.scrape(&agent(1))).unwrap();
    assert_eq!(
        m.value("seguro_replica_replayed_total"),
        Some(20.0),
        "{m:?}"
    );
    assert_eq!(
        m.value("seguro_replica_mug_mismatches_total"),
        Some(0.0),
        "{m:?}"
    );
    let (num, mug) = ask(&mut c, &peer, b"again").await;
    assert_eq!(num, EventNum(21), "{}", logs(&mut c));
    let (_, data) = event(&client, 21).await;
    assert_eq!(reference.apply(num, &data).unwrap().mug.get(), mug);
    stop_ship(&mut c, 1);

    // Restarted again, it starts from its snapshot of event 20, replays 21,
    // and answers the next packet as event 22.
    spawn_ship(&mut c, &ship, 1, 5);
    wait_leading(&mut c, 1);
    let log = c.log(&agent(1));
    assert!(
        log.contains("ship: started at event 20"),
        "the snapshot held event 20\n{log}"
    );
    let (num, mug) = ask(&mut c, &peer, b"once more").await;
    assert_eq!(num, EventNum(22), "{}", logs(&mut c));
    let (_, data) = event(&client, 22).await;
    assert_eq!(reference.apply(num, &data).unwrap().mug.get(), mug);

    stop_cluster(&mut c, [1], &[]);
}

/// Waits until one of `ids` leads, and returns it.
pub(crate) fn leader_among(c: &mut Lab, ids: &[u32]) -> u32 {
    block_in_place(|| {
        c.wait(
            Duration::from_secs(30),
            &format!("one of {ids:?} to lead"),
            |c| {
                ids.iter()
                    .copied()
                    .find(|&id| c.metric(&agent(id), "seguro_replica_leader") == Some(1.0))
            },
        )
    })
}

pub(crate) fn mismatches(c: &Lab, id: u32) -> Option<f64> {
    c.metric(&agent(id), "seguro_replica_mug_mismatches_total")
}

/// Three replicas on three event log nodes: the Rust reference ship
/// (`seguro replica`, replica 3) and two C ships. The Rust replica leads
/// first and the C ships replay its events through the ABI, their mugs
/// checked; it is killed (-9), a C ship takes over and answers, and the Rust
/// replica, back, replays the C ship's events: no mug differs anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_and_rust_ships_replay_each_other_and_a_c_ship_takes_over() {
    let Setup {
        mut c,
        ship,
        client,
    } = setup(3).await;

    spawn_rust_replica(&mut c, 3);
    wait_leading(&mut c, 3);
    spawn_ship(&mut c, &ship, 1, 10_000);
    spawn_ship(&mut c, &ship, 2, 10_000);
    for id in [1, 2] {
        wait_metric(&mut c, &agent(id), "seguro_replica_leader", 0.0);
    }

    let peer = UdpSocket::bind("127.0.0.4:0").await.unwrap();
    let mut answers = Vec::new();
    for i in 0..10u8 {
        answers.push(ask(&mut c, &peer, &[b'r', i]).await);
    }
    for id in [1, 2] {
        wait_metric(&mut c, &agent(id), "seguro_replica_applied_event", 10.0);
        assert_eq!(mismatches(&c, id), Some(0.0), "{}", logs(&mut c));
    }

    block_in_place(|| c.kill(&agent(3)));
    let new_leader = leader_among(&mut c, &[1, 2]);
    wait_leading(&mut c, new_leader);
    eprintln!("C ship {new_leader} took over");
    for i in 0..5u8 {
        answers.push(ask(&mut c, &peer, &[b'c', i]).await);
    }
    let nums: Vec<u64> = answers.iter().map(|(n, _)| n.get()).collect();
    assert_eq!(nums, (1..=15).collect::<Vec<_>>(), "{}", logs(&mut c));

    spawn_rust_replica(&mut c, 3);
    wait_metric(&mut c, &agent(3), "seguro_replica_applied_event", 15.0);
    for id in 1..=3 {
        assert_eq!(
            mismatches(&c, id),
            Some(0.0),
            "replica {id}\n{}",
            logs(&mut c)
        );
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

    stop_cluster(&mut c, [1, 2], &[3]);
}

/// Three C ships. The leader's term is ended behind its back (its key in
/// etcd deleted): its agent steps down and tells it REWIND, the ship goes
/// back to its last snapshot and answers `seguro_replica_restored`, and the
/// agent replays the committed events after it. A new term (any of the
/// three may win it) answers on from the next event number, and every ship
/// ends with the same state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_c_ship_that_loses_its_term_rewinds_to_its_snapshot_and_carries_on() {
    let Setup { mut c, ship, .. } = setup(3).await;
    // Snapshots every 4 events, so that the rewind has one to go back to.
    for id in 1..=3 {
        spawn_ship(&mut c, &ship, id, 4);
    }
    let first = leader_among(&mut c, &[1, 2, 3]);
    wait_leading(&mut c, first);

    let peer = UdpSocket::bind("127.0.0.4:0").await.unwrap();
    let mut answers = Vec::new();
    for i in 0..6u8 {
        answers.push(ask(&mut c, &peer, &[b'a', i]).await);
    }

    end_term(&c).await;
    wait_metric(
        &mut c,
        &agent(first),
        "seguro_replica_step_downs_total{reason=\"lease_lost\"}",
        1.0,
    );
    // The C ship says so on its own stdout, a moment after the agent
    // counts the step-down.
    let rewound: u64 = testkit::wait::until(
        Duration::from_secs(10),
        format!("replica {first} rewinding"),
        || {
            let log = c.log(&agent(first));
            log.lines()
                .find_map(|l| l.split("ship: rewound to event ").nth(1))
                .map(|n| n.trim().to_owned())
                .ok_or(log)
        },
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .parse()
    .unwrap();
    assert!(
        (4..=6).contains(&rewound),
        "replica {first} rewound to event {rewound}, not to its snapshot at 4 to 6"
    );
    // Back at its snapshot, it replays the committed events after it.
    wait_metric(&mut c, &agent(first), "seguro_replica_applied_event", 6.0);

    let next = leader_among(&mut c, &[1, 2, 3]);
    wait_leading(&mut c, next);
    eprintln!("replica {first} rewound to {rewound}; replica {next} leads now");
    for i in 0..6u8 {
        answers.push(ask(&mut c, &peer, &[b'b', i]).await);
    }
    let nums: Vec<u64> = answers.iter().map(|(n, _)| n.get()).collect();
    assert_eq!(nums, (1..=12).collect::<Vec<_>>(), "{}", logs(&mut c));
    // Each follower checks every replayed event's mug against the log's
    // (the events themselves are purged by now: every ship checkpoints
    // every 4 events).
    for id in 1..=3 {
        wait_metric(&mut c, &agent(id), "seguro_replica_applied_event", 12.0);
        assert_eq!(
            mismatches(&c, id),
            Some(0.0),
            "replica {id}\n{}",
            logs(&mut c)
        );
    }

    stop_cluster(&mut c, 1..=3, &[]);
}

/// Ends the leader's term behind its back: its key in etcd deleted (the
/// admin may not touch the leader key: the test plays etcd's root).
pub(crate) async fn end_term(c: &Lab) {
    let config = testkit::load_config(&c.config_path());
    let key = format!(
        "{}/{}",
        config.etcd_root(),
        leadership::election::LEADER_KEY
    );
    let root = leadership::access::as_root(testkit::etcd::ROOT_PASSWORD);
    let mut etcd = leadership::election::connect_with(
        &[c.etcd_endpoint()],
        &c.credentials(config::Role::Admin),
        root,
    )
    .await
    .unwrap();
    let deleted = etcd.delete(key.as_str(), None).await.unwrap();
    assert_eq!(deleted.deleted(), 1, "no leader key at {key}");
}
