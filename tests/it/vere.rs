//! The vere-shaped runtime in C (replica/ffi/examples/vere/): a king and a
//! serf in two processes talking in newt-framed jam, compiled with `cc`
//! against the cdylib, run as replicas of a cluster with a real etcd, real
//! event log nodes and a real gatekeeper. A peer on loopback speaks classic
//! Ames, fine (remote scry), mesa and STUN to the ship's replicas as the
//! edge box copies packets to them, and reads what leaves the gatekeeper.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ames::{Body, Packet, Peep, Prelude, ScryPath, Ship as ShipName};
use eventlog::EventNum;
use futures::StreamExt;
use replica::PacketId;
use testkit::{Daemon, Lab};
use tokio::net::UdpSocket;
use tokio::task::block_in_place;
use tokio::time::{Instant, timeout};

use super::ffi::{
    agent, cdylib_dir, compile_c, end_term, leader_among, logs, mismatches, stop_cluster,
    stop_ship, wait_leading, wait_metric,
};

/// The ship the replicas run, its peer, and a ship the peer reaches
/// through it (forwarding).
const OUR_SHIP: u64 = 1;
const PEER_SHIP: u64 = 0x1234;
const THIRD_SHIP: u64 = 0x5678;
/// vere's `life` for a new ship, as the C runtime boots one.
const LIFE: u64 = 3;

fn vere_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("replica/ffi/examples/vere")
}

/// Compiles every C file of the runtime into `out`, against the cdylib in
/// `lib_dir`.
fn compile_vere(lib_dir: &Path, out: &Path) {
    let mut sources: Vec<PathBuf> = std::fs::read_dir(vere_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "c"))
        .collect();
    sources.sort();
    compile_c(lib_dir, &sources, out);
}

/// This test run's `seguro` binary and cdylib, linked where no other build
/// reaches them: worktrees share the target directory, and another one's
/// build may replace both while a cluster runs (cargo writes new files, so
/// a hard link keeps this run's).
struct Pinned {
    _dir: tempfile::TempDir,
    bin: PathBuf,
    lib_dir: PathBuf,
}

fn pin() -> Pinned {
    let dir = tempfile::tempdir().unwrap();
    let lib_dir = dir.path().join("lib");
    std::fs::create_dir_all(&lib_dir).unwrap();
    let link = |from: &Path, to: &Path| {
        if std::fs::hard_link(from, to).is_err() {
            std::fs::copy(from, to).unwrap();
        }
    };
    let bin = dir.path().join("seguro");
    link(Path::new(env!("CARGO_BIN_EXE_seguro")), &bin);
    let lib = "libseguro_replica.so";
    link(&cdylib_dir().join(lib), &lib_dir.join(lib));
    Pinned {
        _dir: dir,
        bin,
        lib_dir,
    }
}

/// etcd, `n` event log nodes, the config (leases of `ttl`), the runtime
/// compiled, a log client, an active gatekeeper.
struct Setup {
    c: Lab,
    vere: PathBuf,
    client: eventlog::Client,
    _pinned: Pinned,
}

async fn setup(n: u8, ttl: Duration) -> Setup {
    let pinned = pin();
    let mut c = block_in_place(|| {
        let mut c = Lab::new(&pinned.bin, "vere-test", n)?;
        c.start_etcd()?;
        c.file_mut().etcd.lease_ttl = Some(ttl);
        c.write_config()?;
        c.start_eventlog()?;
        std::io::Result::Ok(c)
    })
    .unwrap();
    let vere = c.dir().join("vere");
    block_in_place(|| compile_vere(&pinned.lib_dir, &vere));
    let one = config::Role::Replica(config::ReplicaId::new(1).unwrap());
    let client = eventlog::Client::new(&testkit::load_config(&c.config_path()), c.credentials(one));
    block_in_place(|| c.start(Daemon::Gatekeeper(1))).unwrap();
    wait_metric(
        &mut c,
        &Daemon::Gatekeeper(1),
        "seguro_gatekeeper_active",
        1.0,
    );
    Setup {
        c,
        vere,
        client,
        _pinned: pinned,
    }
}

/// Starts the runtime as replica `id` with `extra` options.
fn spawn_vere(c: &mut Lab, vere: &Path, id: u32, extra: &[&str]) {
    let dir = c.dir().join(format!("vere-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut command = Command::new(vere);
    // cargo's LD_LIBRARY_PATH names the shared target directory, where an
    // older libseguro_replica.so may sit; it would win over the runpath.
    command
        .env_remove("LD_LIBRARY_PATH")
        .env("VERE_VERBOSE", "1")
        .arg(c.config_path())
        .arg(id.to_string())
        .arg(dir)
        .args(["--ship", &OUR_SHIP.to_string()])
        .args(extra);
    block_in_place(|| c.spawn(agent(id), command)).unwrap();
}

fn ship(n: u64) -> ShipName {
    ShipName::new(n.into())
}

/// A classic Ames packet from the peer to `to`. `content` must not end in
/// a zero byte: events carry the packet as an atom (vere's `u3i_bytes`),
/// which has none, so the serf would read it shorter and its checksum
/// wrong.
fn ames_packet(to: u64, content: &[u8]) -> Vec<u8> {
    Packet {
        prelude: Prelude::new(ship(PEER_SHIP), ship(to)),
        body: Body::Ames(content.to_vec()),
    }
    .to_bytes()
}

/// A fine (remote scry) request for `path` from the peer to our ship.
fn fine_request(path: &str) -> Vec<u8> {
    Packet {
        prelude: Prelude::new(ship(PEER_SHIP), ship(OUR_SHIP)),
        body: Body::FineRequest(Peep {
            fragment: 1,
            path: ScryPath::new(path).unwrap(),
        }),
    }
    .to_bytes()
}

/// A fine response from the peer to our ship: one fragment of `data` at
/// `path` (`data` must not end in a zero byte, see [`ames_packet`]).
fn fine_response(path: &str, data: &[u8]) -> Vec<u8> {
    Packet {
        prelude: Prelude::new(ship(PEER_SHIP), ship(OUR_SHIP)),
        body: Body::FineResponse(ames::Purr {
            peep: Peep {
                fragment: 1,
                path: ScryPath::new(path).unwrap(),
            },
            meow: ames::Meow {
                signature: [0; 64],
                num_fragments: 1,
                data: data.to_vec(),
            },
        }),
    }
    .to_bytes()
}

/// A mesa name (`_mesa_etch_name`) of a 2-byte ship: rank 0, a 1-byte
/// rift, an init name (no fragment number), then the path.
fn mesa_name(ship: u64, path: &[u8]) -> Vec<u8> {
    let mut out = vec![1 << 4];
    out.extend_from_slice(&(ship as u16).to_le_bytes());
    out.push(1); // rift
    out.push(13); // bloq
    out.extend_from_slice(&(path.len() as u16).to_le_bytes());
    out.extend_from_slice(path);
    out
}

/// A mesa packet of type `kind` (1 page, 2 peek, 3 poke) with `body`.
fn mesa_packet(kind: u32, body: &[u8]) -> Vec<u8> {
    let sum = ames::Mug::of(body).checksum().get();
    let word = (1 << 4) | (kind << 7) | (sum << 12);
    let mut out = word.to_le_bytes().to_vec();
    out.extend_from_slice(&0x67e0_0200u32.to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// A mesa poke to our ship from the peer.
fn mesa_poke(content: &[u8]) -> Vec<u8> {
    let mut body = mesa_name(OUR_SHIP, b"/a/poke");
    body.extend(mesa_name(PEER_SHIP, b"/a/payload"));
    body.extend_from_slice(content);
    mesa_packet(3, &body)
}

/// A mesa peek from the peer for our ship's `path` (an init name).
fn mesa_peek(path: &[u8]) -> Vec<u8> {
    mesa_packet(2, &mesa_name(OUR_SHIP, path))
}

/// A mesa page's name and data (`_mesa_sift_name`, `_mesa_sift_data`):
/// the name's ship and path, the data's total length and its fragment.
/// `ames::parse` has checked the layout; this reads the fields.
fn read_page(body: &[u8]) -> (ShipName, String, u64, Vec<u8>) {
    let mut at = 0;
    let mut take = |n: usize| {
        let out = &body[at..at + n];
        at += n;
        out
    };
    let le = |b: &[u8]| b.iter().rev().fold(0u64, |n, &x| (n << 8) | u64::from(x));
    let meta = take(1)[0];
    let her = le(take(2 << (meta & 3)));
    take(usize::from((meta >> 2) & 3) + 1); // rift
    take(1); // bloq
    if (meta >> 4) & 1 == 0 {
        take(1 << (meta >> 6)); // fragment number
    }
    let path_len = le(take(2)) as usize;
    let path = String::from_utf8(take(path_len).to_vec()).unwrap();
    let meta = take(1)[0];
    let total = le(take(1 << (meta & 3)));
    take(match ((meta >> 2) & 1, (meta >> 3) & 1) {
        (1, 1) => 64,
        (1, _) => 16,
        (_, 1) => 0,
        _ => 64,
    });
    let mut width = usize::from(meta >> 6);
    if width == 3 {
        width = usize::from(take(1)[0]);
    }
    let len = le(take(width)) as usize;
    let data = take(len).to_vec();
    (ship(her), path, total, data)
}

/// CRC-32 (IEEE), for STUN's FINGERPRINT.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xedb8_8320 & 0u32.wrapping_sub(crc & 1));
        }
    }
    !crc
}

/// A STUN binding request with FINGERPRINT, as vere sends them.
fn stun_request(tid: [u8; 12]) -> Vec<u8> {
    let mut out = vec![0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42];
    out.extend_from_slice(&tid);
    let fingerprint = crc32(&out) ^ 0x5354_554e;
    out.extend_from_slice(&[0x80, 0x28, 0x00, 0x04]);
    out.extend_from_slice(&fingerprint.to_be_bytes());
    out
}

/// Sends `packet` to every replica, as the edge box copies it; returns its
/// identity as the agents compute it.
async fn send(c: &Lab, peer: &UdpSocket, packet: &[u8]) -> PacketId {
    for r in &c.file().replicas {
        peer.send_to(packet, r.ames).await.unwrap();
    }
    PacketId::of(peer.local_addr().unwrap().into(), packet)
}

/// The next datagram within `wait`, checked to come from the ship's public
/// address (through the gatekeeper).
async fn recv(c: &Lab, sock: &UdpSocket, wait: Duration) -> Option<Vec<u8>> {
    let mut buf = vec![0; 4096];
    let (len, from) = timeout(wait, sock.recv_from(&mut buf)).await.ok()?.unwrap();
    assert_eq!(
        from,
        c.file().ship.public,
        "it leaves from the ship's public address"
    );
    buf.truncate(len);
    Some(buf)
}

/// What the ship said to the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Said {
    /// An Ames answer: the event it came from and the state's mug after it.
    Answer { num: u64, mug: u32 },
    /// A fine response: the path and the state it was computed from.
    Scry { path: String, last: u64, mug: u32 },
    /// A mesa page of our ship's: the path and the state it was computed
    /// from.
    Page { path: String, last: u64, mug: u32 },
}

fn read_said(bytes: &[u8]) -> Said {
    let state = |b: &[u8]| -> (u64, u32) {
        assert_eq!(b.len(), 12, "event or state (8 bytes) and mug (4)");
        (
            u64::from_be_bytes(b[..8].try_into().unwrap()),
            u32::from_be_bytes(b[8..].try_into().unwrap()),
        )
    };
    let p = match ames::parse(bytes) {
        Ok(ames::Datagram::Ames(p)) => p,
        Ok(ames::Datagram::Mesa(m)) => {
            assert_eq!(m.kind, ames::MesaKind::Page, "{m:?}");
            let (her, path, total, data) = read_page(&m.body);
            assert_eq!(her, ship(OUR_SHIP), "the page is in our ship's namespace");
            assert_eq!(total, data.len() as u64, "a one-fragment message");
            let (last, mug) = state(&data);
            return Said::Page { path, last, mug };
        }
        _ => panic!("neither Ames-family nor mesa: {bytes:02x?}"),
    };
    assert_eq!(p.prelude.sender.ship(), ship(OUR_SHIP));
    assert_eq!(p.prelude.receiver.ship(), ship(PEER_SHIP));
    match p.body {
        Body::Ames(b) => {
            let (num, mug) = state(&b);
            Said::Answer { num, mug }
        }
        Body::FineResponse(purr) => {
            let (last, mug) = state(&purr.meow.data);
            Said::Scry {
                path: purr.peep.path.to_string(),
                last,
                mug,
            }
        }
        other => panic!("unexpected body {other:?}"),
    }
}

/// Everything said to the peer until nothing comes for `quiet` (or
/// `limit` passes).
async fn collect(c: &Lab, sock: &UdpSocket, quiet: Duration, limit: Duration) -> Vec<Said> {
    let end = Instant::now() + limit;
    let mut out = Vec::new();
    while Instant::now() < end {
        match recv(c, sock, quiet).await {
            Some(b) => out.push(read_said(&b)),
            None => break,
        }
    }
    out
}

/// Sends an Ames request and waits for its answer.
async fn ask(c: &mut Lab, peer: &UdpSocket, content: &[u8]) -> (PacketId, Said) {
    let id = send(c, peer, &ames_packet(OUR_SHIP, content)).await;
    match recv(c, peer, Duration::from_secs(15)).await {
        Some(b) => (id, read_said(&b)),
        None => panic!("no answer to {content:?}\n{}", logs(c)),
    }
}

/// One committed event as the agent framed it.
struct Logged {
    num: u64,
    mug: u32,
    /// The packet it was made from.
    packet: Option<PacketId>,
    /// Packets the leader's runtime said it dropped before it.
    dropped: Vec<PacketId>,
    /// The runtime's bytes.
    data: bytes::Bytes,
}

/// Every committed event.
async fn log_events(client: &eventlog::Client) -> Vec<Logged> {
    let events: Vec<_> = client.read(EventNum(1), None).collect().await;
    events
        .into_iter()
        .map(|e| {
            let e = e.expect("the event can be read");
            let framed = replica::frame::decode(&e.data).expect("framed by the agent");
            Logged {
                num: e.num.get(),
                mug: e.mug,
                packet: framed.packet,
                dropped: framed.dropped,
                data: framed.data,
            }
        })
        .collect()
}

/// The committed event made from packet `id`, once there is one (within
/// 15 s).
async fn logged(client: &eventlog::Client, id: PacketId) -> Option<Logged> {
    let end = Instant::now() + Duration::from_secs(15);
    while Instant::now() < end {
        let events = log_events(client).await;
        if let Some(e) = events.into_iter().find(|e| e.packet == Some(id)) {
            return Some(e);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// `jam([%boot i])`, the C runtime's boot event `i` (worked by hand from
/// Hoon's `++jam`: cell tag, %boot's mat, i's mat).
fn boot_event(i: u64) -> Vec<u8> {
    match i {
        1 => vec![1, 95, 236, 237, 141, 206],
        2 => vec![1, 95, 236, 237, 141, 142, 4],
        3 => vec![1, 95, 236, 237, 141, 142, 6],
        _ => unreachable!(),
    }
}

/// Waits until the runtime's stderr (the lab's log of `id`) has a line
/// with `needle`, and returns the log.
fn wait_log(c: &mut Lab, id: u32, needle: &str) -> String {
    testkit::wait::until(
        Duration::from_secs(20),
        format!("replica {id} to log {needle:?}"),
        || {
            let log = c.log(&agent(id));
            if log.contains(needle) {
                Ok(log)
            } else {
                Err(log)
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Waits until `series` on replica `id` reads at least `value` (the
/// leader's timer keeps adding events).
fn wait_at_least(c: &mut Lab, id: u32, series: &str, value: f64) {
    block_in_place(|| {
        c.wait(
            Duration::from_secs(30),
            &format!("{series} >= {value} on replica {id}"),
            |c| c.metric(&agent(id), series).is_some_and(|v| v >= value),
        )
    });
}

/// Freezes (SIGSTOP) or thaws (SIGCONT) the event log nodes other than
/// `keep`'s: without a quorum nothing commits.
fn freeze_log(c: &Lab, keep: u32, signal: libc::c_int) {
    for id in c.replica_ids() {
        if u32::from(id) != keep {
            c.signal(&Daemon::Eventlog(id), signal);
        }
    }
}

/// Three C runtimes boot a new ship: the leader plans the boot sequence
/// (events 1..3, mug 0, `jam([%boot i])`) and followers apply it as one
/// batch; they answer the peer; the leader is killed (-9) while requests
/// keep coming, and another takes over. In the log every request is one
/// event (none lost, none twice); every answer carries its request's event
/// and the log's mug, and no answer comes twice. The leader's %wake timer
/// made events too. The killed replica comes back and replays: no mug
/// differs anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vere_cluster_boots_a_new_ship_and_fails_over_without_duplicates() {
    let Setup {
        mut c,
        vere,
        client,
        _pinned,
    } = setup(3, Duration::from_secs(2)).await;
    for id in 1..=3 {
        spawn_vere(&mut c, &vere, id, &["--wake-ms", "700"]);
    }
    let first = leader_among(&mut c, &[1, 2, 3]);
    wait_leading(&mut c, first);
    wait_log(
        &mut c,
        first,
        "mars: new ship: boot events 1..3 planned with mug 0",
    );

    let peer = UdpSocket::bind("127.0.0.4:0").await.unwrap();
    let mut requests = HashSet::new();
    let mut said = Vec::new();
    for i in 0..10u8 {
        let (id, answer) = ask(&mut c, &peer, format!("a{i}").as_bytes()).await;
        requests.insert(id);
        said.push(answer);
    }
    for id in (1..=3).filter(|&id| id != first) {
        wait_log(&mut c, id, "mars: booted: events 1..3 as one batch");
    }

    // Killed mid-stream: requests sent while nobody leads wait in the
    // followers' buffers, and the next leader plans them.
    block_in_place(|| c.kill(&agent(first)));
    for i in 0..5u8 {
        requests.insert(
            send(
                &c,
                &peer,
                &ames_packet(OUR_SHIP, format!("g{i}").as_bytes()),
            )
            .await,
        );
    }
    let others: Vec<u32> = (1..=3).filter(|&id| id != first).collect();
    let next = leader_among(&mut c, &others);
    wait_leading(&mut c, next);
    eprintln!("replica {first} killed; replica {next} leads");
    for i in 0..5u8 {
        requests.insert(
            send(
                &c,
                &peer,
                &ames_packet(OUR_SHIP, format!("b{i}").as_bytes()),
            )
            .await,
        );
    }
    said.extend(collect(&c, &peer, Duration::from_secs(4), Duration::from_secs(30)).await);

    let committed = c
        .metric(&agent(next), "seguro_replica_committed_event")
        .unwrap() as u64;
    let events = log_events(&client).await;
    assert!(events.len() as u64 >= committed, "{}", logs(&mut c));
    for (i, e) in events.iter().take(LIFE as usize).enumerate() {
        let num = e.num;
        assert_eq!(num, i as u64 + 1);
        assert_eq!(e.mug, 0, "boot event {num} has mug 0");
        assert!(e.packet.is_none());
        assert_eq!(
            e.data.as_ref(),
            boot_event(num),
            "boot event {num} is [%boot {num}]"
        );
    }
    let mut by_packet: HashMap<PacketId, Vec<u64>> = HashMap::new();
    let mut wakes = 0;
    for e in &events[LIFE as usize..] {
        assert_ne!(e.mug, 0, "event {}", e.num);
        match e.packet {
            Some(id) => by_packet.entry(id).or_default().push(e.num),
            None => wakes += 1,
        }
    }
    assert!(wakes > 0, "the leader's %wake timer made events");
    for id in &requests {
        let nums = by_packet.get(id).cloned().unwrap_or_default();
        assert_eq!(
            nums.len(),
            1,
            "request {id:?} is in the log once: {nums:?}\n{}",
            logs(&mut c)
        );
    }
    let mugs: HashMap<u64, u32> = events.iter().map(|e| (e.num, e.mug)).collect();
    let request_of: HashMap<u64, PacketId> =
        by_packet.iter().map(|(id, nums)| (nums[0], *id)).collect();
    let mut answered = HashSet::new();
    for s in &said {
        let Said::Answer { num, mug } = s else {
            panic!("only answers: {s:?}")
        };
        assert!(answered.insert(*num), "event {num} answered twice");
        assert!(request_of.contains_key(num), "event {num} is a request's");
        assert_eq!(
            mugs[num], *mug,
            "event {num}: the answer's mug is the log's"
        );
    }
    // The killed leader's unreleased answers may be lost (Ames would
    // retransmit); everything planned by the new leader is answered.
    assert!(answered.len() >= 15, "{} answers: {said:?}", answered.len());

    spawn_vere(&mut c, &vere, first, &["--wake-ms", "700"]);
    wait_at_least(
        &mut c,
        first,
        "seguro_replica_applied_event",
        committed as f64,
    );
    for id in 1..=3 {
        assert_eq!(
            mismatches(&c, id),
            Some(0.0),
            "replica {id}\n{}",
            logs(&mut c)
        );
    }
    stop_cluster(&mut c, 1..=3, &[]);
}

/// With commits blocked (a quorum of event log nodes frozen, `last`
/// committed), an Ames packet `content` makes event `last + 1` and `probe`
/// (a scry) follows it; nothing reaches the peer while that event is
/// uncommitted. Once the nodes are back: the Ames answer's event and mug,
/// and everything said.
async fn held_until_commit(
    c: &mut Lab,
    leader: u32,
    peer: &UdpSocket,
    last: u64,
    content: &[u8],
    probe: &[u8],
) -> (u64, u32, Vec<Said>) {
    freeze_log(c, leader, libc::SIGSTOP);
    send(c, peer, &ames_packet(OUR_SHIP, content)).await;
    wait_metric(
        c,
        &agent(leader),
        "seguro_replica_applied_event",
        (last + 1) as f64,
    );
    send(c, peer, probe).await;
    let early = recv(c, peer, Duration::from_secs(2)).await;
    let committed = c.metric(&agent(leader), "seguro_replica_committed_event");
    freeze_log(c, leader, libc::SIGCONT);
    assert_eq!(
        early.map(|b| read_said(&b)),
        None,
        "nothing leaves while event {} is uncommitted (committed: {committed:?})",
        last + 1
    );
    let said = collect(c, peer, Duration::from_secs(5), Duration::from_secs(30)).await;
    let answer = said.iter().find_map(|s| match s {
        Said::Answer { num, mug } => Some((*num, *mug)),
        _ => None,
    });
    let Some((num, mug)) = answer else {
        panic!("no answer once committed: {said:?}\n{}", logs(c))
    };
    assert_eq!(num, last + 1, "{said:?}");
    (num, mug, said)
}

/// A scry answer names the event its state is as of, and the gatekeeper
/// holds it until that event commits: with commits blocked (a quorum of
/// event log nodes frozen), a request makes event n and a fine request
/// right after reads the state through n; neither answer reaches the peer
/// while n is uncommitted, and both do once the nodes are back, the scry
/// claiming event n with the request's mug. Then the same with a mesa
/// peek, answered by a page (`_mesa_hear_peek` → scry →
/// `_mesa_send_piece`) for event n + 1. A fine response to our ship is no
/// scry: it becomes an event (`_fine_hear_response`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_scry_answer_leaves_before_its_state_commits() {
    let Setup {
        mut c,
        vere,
        client,
        _pinned,
    } = setup(3, Duration::from_secs(8)).await;
    for id in 1..=3 {
        spawn_vere(&mut c, &vere, id, &[]);
    }
    let leader = leader_among(&mut c, &[1, 2, 3]);
    wait_leading(&mut c, leader);
    let peer = UdpSocket::bind("127.0.0.4:0").await.unwrap();
    let mut last = 0;
    for i in 0..3u8 {
        if let (_, Said::Answer { num, .. }) = ask(&mut c, &peer, format!("a{i}").as_bytes()).await
        {
            last = num;
        }
    }
    assert_eq!(last, LIFE + 3, "{}", logs(&mut c));

    // Committed state: the scry answer comes at once.
    send(&c, &peer, &fine_request("/x/state")).await;
    let scry = recv(&c, &peer, Duration::from_secs(10))
        .await
        .map(|b| read_said(&b));
    assert!(
        matches!(&scry, Some(Said::Scry { last: l, .. }) if *l == last),
        "{scry:?}\n{}",
        logs(&mut c)
    );
    send(&c, &peer, &mesa_peek(b"/x/state")).await;
    let page = recv(&c, &peer, Duration::from_secs(10))
        .await
        .map(|b| read_said(&b));
    assert!(
        matches!(&page, Some(Said::Page { path, last: l, .. }) if *l == last && path == "/x/state"),
        "the mesa peek is answered by a page: {page:?}\n{}",
        logs(&mut c)
    );

    // The gatekeeper releases in arrival order, so a held answer holds
    // back what comes after it: each scry gets a frozen window of its own.
    let (num, mug, said) = held_until_commit(
        &mut c,
        leader,
        &peer,
        last,
        b"uncommitted",
        &fine_request("/x/state/after"),
    )
    .await;
    assert_eq!(
        said.iter().find(|s| matches!(s, Said::Scry { .. })),
        Some(&Said::Scry {
            path: "/x/state/after".to_owned(),
            last: num,
            mug
        }),
        "the scry read the state through event {num}: {said:?}"
    );
    let (num, mug, said) = held_until_commit(
        &mut c,
        leader,
        &peer,
        num,
        b"uncommitted too",
        &mesa_peek(b"/x/page/after"),
    )
    .await;
    assert_eq!(
        said.iter().find(|s| matches!(s, Said::Page { .. })),
        Some(&Said::Page {
            path: "/x/page/after".to_owned(),
            last: num,
            mug
        }),
        "the page read the state through event {num}: {said:?}"
    );

    // _fine_hear_response: an answer to a scry of ours is heard by Arvo,
    // an event on wire [%fine ~] with card [%hear [%.n chub] blob].
    let purr = fine_response("/x/theirs", b"their data");
    let id = send(&c, &peer, &purr).await;
    let Some(event) = logged(&client, id).await else {
        panic!("the fine response made no event\n{}", logs(&mut c))
    };
    let mut n = replica::vere::Nouns::new();
    let root = n.cue(&event.data).expect("the event is a jam");
    let (_now, ovum) = n.split(root).expect("[now ovum]");
    let (wire, card) = n.split(ovum).expect("[wire card]");
    let (wire_head, wire_tail) = n.split(wire).expect("a wire");
    let (tag, rest) = n.split(card).expect("a card");
    let (lane, blob) = n.split(rest).expect("[lane blob]");
    let (flag, chub) = n.split(lane).expect("[%.n chub]");
    let SocketAddr::V4(v4) = peer.local_addr().unwrap() else {
        unreachable!()
    };
    assert_eq!(
        (
            n.bytes(wire_head),
            n.as_u64(wire_tail),
            n.bytes(tag),
            n.as_u64(flag),
            n.as_u64(chub),
            n.bytes(blob),
        ),
        (
            Some(&b"fine"[..]),
            Some(0),
            Some(&b"hear"[..]),
            Some(1),
            Some(u64::from(v4.ip().to_bits()) | u64::from(v4.port()) << 32),
            Some(&purr[..]),
        ),
        "event {}: [[%fine ~] [%hear [%.n chub] blob]]",
        event.num
    );

    stop_cluster(&mut c, 1..=3, &[]);
}

/// The leader loses its term while its last events are uncommitted (the
/// log's quorum frozen, then its etcd key deleted): REWIND gives the last
/// committed event; the runtime cuts its local log back to it
/// (`u3_disk_trim`), reloads its snapshot and replays its own log up to
/// it. Once the log thaws, a leader answers on and no mug differs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewind_trims_the_local_log_after_the_last_committed_event() {
    let Setup {
        mut c,
        vere,
        _pinned,
        ..
    } = setup(3, Duration::from_secs(4)).await;
    for id in 1..=3 {
        spawn_vere(&mut c, &vere, id, &["--snapshot-every", "2"]);
    }
    let leader = leader_among(&mut c, &[1, 2, 3]);
    wait_leading(&mut c, leader);
    let peer = UdpSocket::bind("127.0.0.4:0").await.unwrap();
    for i in 0..3u8 {
        ask(&mut c, &peer, format!("a{i}").as_bytes()).await;
    }
    let committed = LIFE + 3;
    wait_metric(
        &mut c,
        &agent(leader),
        "seguro_replica_committed_event",
        committed as f64,
    );

    freeze_log(&c, leader, libc::SIGSTOP);
    for i in 0..2u8 {
        send(
            &c,
            &peer,
            &ames_packet(OUR_SHIP, format!("u{i}").as_bytes()),
        )
        .await;
    }
    wait_metric(
        &mut c,
        &agent(leader),
        "seguro_replica_applied_event",
        (committed + 2) as f64,
    );
    end_term(&c).await;
    let log = wait_log(&mut c, leader, "mars: rewound to event");
    freeze_log(&c, leader, libc::SIGCONT);
    let trim = format!(
        "mars: local log trimmed after event {committed} (it held {})",
        committed + 2
    );
    assert!(log.contains(&trim), "{trim:?} in\n{log}");

    let next = leader_among(&mut c, &[1, 2, 3]);
    wait_leading(&mut c, next);
    let (_, said) = ask(&mut c, &peer, b"after").await;
    let Said::Answer { num, .. } = said else {
        panic!("{said:?}")
    };
    assert!(num > committed, "{num}");
    for id in 1..=3 {
        wait_metric(
            &mut c,
            &agent(id),
            "seguro_replica_applied_event",
            num as f64,
        );
        assert_eq!(
            mismatches(&c, id),
            Some(0.0),
            "replica {id}\n{}",
            logs(&mut c)
        );
    }
    stop_cluster(&mut c, 1..=3, &[]);
}

/// What only the leader's king sends, and its queue caps: a STUN binding
/// request is answered once (by the leader; the followers got it too), with
/// the peer's address; an Ames packet for another ship is forwarded once,
/// relayed with the peer's lane as origin, to the route given on the
/// command line; a mesa poke is answered by a %push that the king sends
/// again each second under the same event until a page from the peer
/// answers it; a burst of Ames packets past QUEUE_MAX (the serf slowed to
/// 100 ms a poke) is cut by dropping the oldest, and the followers keep
/// none of what the leader dropped or never planned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_packets_pushes_and_queue_caps_follow_vere() {
    let Setup {
        mut c,
        vere,
        client,
        _pinned,
    } = setup(3, Duration::from_secs(4)).await;
    let third = UdpSocket::bind("127.0.0.5:0").await.unwrap();
    let route = format!("{THIRD_SHIP}={}", third.local_addr().unwrap());
    for id in 1..=3 {
        spawn_vere(&mut c, &vere, id, &["--route", &route, "--work-ms", "100"]);
    }
    let leader = leader_among(&mut c, &[1, 2, 3]);
    wait_leading(&mut c, leader);
    let peer = UdpSocket::bind("127.0.0.4:0").await.unwrap();
    let peer_addr = peer.local_addr().unwrap();
    ask(&mut c, &peer, b"hello").await;

    // STUN: one answer, the leader's.
    let tid = *b"seguro-stun!";
    send(&c, &peer, &stun_request(tid)).await;
    let stun = recv(&c, &peer, Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("no STUN answer\n{}", logs(&mut c)));
    assert_eq!(stun.len(), 40);
    assert_eq!(&stun[..2], &[0x01, 0x01], "a binding success response");
    assert_eq!(&stun[8..20], &tid);
    let SocketAddr::V4(v4) = peer_addr else {
        unreachable!()
    };
    assert_eq!(
        u16::from_be_bytes([stun[26], stun[27]]) ^ 0x2112,
        v4.port(),
        "XOR-MAPPED-ADDRESS port"
    );
    assert_eq!(
        u32::from_be_bytes(stun[28..32].try_into().unwrap()) ^ 0x2112_a442,
        u32::from(*v4.ip())
    );

    // Forwarding: one copy, relayed, at the route.
    let to_third = ames_packet(THIRD_SHIP, b"for the third ship");
    send(&c, &peer, &to_third).await;
    let forwarded = recv(&c, &third, Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("nothing forwarded\n{}", logs(&mut c)));
    let Ok(ames::Datagram::Ames(p)) = ames::parse(&forwarded) else {
        panic!("{forwarded:02x?}")
    };
    assert_eq!(p.prelude.origin, Some(v4), "the origin is the peer's lane");
    assert_eq!(p.prelude.sender.ship(), ship(PEER_SHIP));
    assert_eq!(p.prelude.receiver.ship(), ship(THIRD_SHIP));
    assert_eq!(p.body, Body::Ames(b"for the third ship".to_vec()));
    assert_eq!(
        recv(&c, &third, Duration::from_secs(2)).await,
        None,
        "forwarded once"
    );
    assert_eq!(
        recv(&c, &peer, Duration::from_millis(500)).await,
        None,
        "one STUN answer"
    );

    // mesa: %push, resent under the same event until answered by a page.
    send(&c, &peer, &mesa_poke(b"poke")).await;
    let mut pushes = Vec::new();
    let until = Instant::now() + Duration::from_millis(3500);
    while let Some(b) = recv(&c, &peer, until.saturating_duration_since(Instant::now())).await {
        pushes.push(b);
    }
    assert!(
        pushes.len() >= 2,
        "the push and its resends: {} copies\n{}",
        pushes.len(),
        logs(&mut c)
    );
    assert!(
        pushes.iter().all(|p| p == &pushes[0]),
        "every resend is the same packet"
    );
    let Said::Answer { num: push_num, .. } = read_said(&pushes[0]) else {
        panic!()
    };
    send(&c, &peer, &mesa_packet(1, &mesa_name(PEER_SHIP, b"/a/ack"))).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    while recv(&c, &peer, Duration::from_millis(100)).await.is_some() {}
    assert_eq!(
        recv(&c, &peer, Duration::from_millis(2500)).await,
        None,
        "the page stopped the resends of event {push_num}"
    );

    // The queue cap: 60 packets at once; the king keeps 30 waiting.
    let mut burst = HashSet::new();
    for i in 0..60u8 {
        burst.insert(
            send(
                &c,
                &peer,
                &ames_packet(OUR_SHIP, format!("q{i}").as_bytes()),
            )
            .await,
        );
    }
    wait_log(&mut c, leader, "king: ames: packet dropped");
    let _ = collect(&c, &peer, Duration::from_secs(3), Duration::from_secs(30)).await;
    // One more event carries the last drops to the followers.
    ask(&mut c, &peer, b"after the burst").await;
    for id in (1..=3).filter(|&id| id != leader) {
        wait_metric(&mut c, &agent(id), "seguro_replica_buffered_packets", 0.0);
    }
    let events = log_events(&client).await;
    let planned: Vec<PacketId> = events
        .iter()
        .filter_map(|e| e.packet.filter(|p| burst.contains(p)))
        .collect();
    let dropped: Vec<PacketId> = events
        .iter()
        .flat_map(|e| e.dropped.iter().copied())
        .filter(|p| burst.contains(p))
        .collect();
    assert!(
        (30..60).contains(&planned.len()),
        "{} of the burst planned; the rest dropped at the cap",
        planned.len()
    );
    let mut accounted: Vec<PacketId> = planned.iter().chain(&dropped).copied().collect();
    accounted.sort_by_key(|p| *p.as_bytes());
    accounted.dedup();
    assert_eq!(
        (accounted.len(), planned.len() + dropped.len()),
        (60, 60),
        "each packet of the burst is planned or recorded dropped, once"
    );

    stop_cluster(&mut c, 1..=3, &[]);
}

/// Jam vectors both runtimes check: the C runtime's `jam-check` reads
/// `<hex> <noun>` lines and checks that each jam cues to the noun and the
/// noun jams to those bytes. Always checked: vectors worked from Hoon's
/// `++jam` (the boot event among them), and wrong ones, which must fail;
/// `replica/tests/data/jam-vectors.txt` (the Rust side's file) once it
/// exists.
#[test]
fn the_c_runtime_jams_and_cues_the_shared_vectors() {
    let pinned = pin();
    let dir = tempfile::tempdir().unwrap();
    let vere = dir.path().join("vere");
    compile_vere(&pinned.lib_dir, &vere);
    let check = |name: &str, vectors: &str| {
        let file = dir.path().join(name);
        std::fs::write(&file, vectors).unwrap();
        let out = Command::new(&vere)
            .env_remove("LD_LIBRARY_PATH")
            .arg("jam-check")
            .arg(&file)
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let known = format!(
        "# jam  noun\n02 0\n0c 1\n3112 [1 2]\n29 [0 0]\nc5c849 [[1 2] [1 2]]\n{} [%boot 1]\n",
        hex(&boot_event(1))
    );
    let (ok, out) = check("known.txt", &known);
    assert!(ok && out.contains("6 vectors, 0 failed"), "{out}");
    for wrong in ["3112 [1 3]", "1d [0 0]", "0c 2"] {
        let (ok, out) = check("wrong.txt", &format!("{wrong}\n"));
        assert!(!ok, "{wrong:?} must fail: {out}");
    }

    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("replica/tests/data/jam-vectors.txt");
    if shared.exists() {
        let vectors = std::fs::read_to_string(&shared).unwrap();
        let (ok, out) = check("shared.txt", &vectors);
        assert!(ok, "{}: {out}", shared.display());
    } else {
        eprintln!(
            "{} is not there yet: only the known vectors were checked",
            shared.display()
        );
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A mixed cluster: `seguro replica --ship vere` (the same state machine in
/// Rust, replica/src/vere/) as replica 3 beside two C runtimes. A C
/// runtime boots the ship (events 1..3 with mug 0) and leads; the Rust
/// replica replays the boot batch and its events; with the C runtimes
/// stopped, the Rust replica leads and the C runtimes, back, replay its
/// events; it is killed, a C runtime takes over, and the Rust replica,
/// back, replays those. No mug differs anywhere, and every answer's mug is
/// the log's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_and_rust_vere_ships_stay_in_step() {
    let Setup {
        mut c,
        vere,
        client,
        _pinned,
    } = setup(3, Duration::from_secs(2)).await;
    let spawn_rust = |c: &mut Lab| {
        let mut command = Command::new(c.bin());
        command
            .arg("replica")
            .arg("-c")
            .arg(c.config_of(&agent(3)))
            .args(["--id", "3", "--ship", "vere"]);
        block_in_place(|| c.spawn(agent(3), command)).unwrap();
    };
    let peer = UdpSocket::bind("127.0.0.4:0").await.unwrap();
    let mut answers = Vec::new();
    let last_answer = |answers: &[Said]| match answers.last() {
        Some(Said::Answer { num, .. }) => *num,
        other => panic!("{other:?}"),
    };
    let in_step = |c: &mut Lab, ids: &[u32], num: u64| {
        for &id in ids {
            wait_metric(c, &agent(id), "seguro_replica_applied_event", num as f64);
            assert_eq!(mismatches(c, id), Some(0.0), "replica {id}\n{}", logs(c));
        }
    };

    // A C runtime boots the ship; the Rust replica replays it.
    for id in [1, 2] {
        spawn_vere(&mut c, &vere, id, &[]);
    }
    let first = leader_among(&mut c, &[1, 2]);
    wait_leading(&mut c, first);
    spawn_rust(&mut c);
    for i in 0..3u8 {
        answers.push(ask(&mut c, &peer, format!("c{i}").as_bytes()).await.1);
    }
    in_step(&mut c, &[1, 2, 3], last_answer(&answers));

    // The Rust replica leads; the C runtimes replay its events.
    for id in [1, 2] {
        stop_ship(&mut c, id);
    }
    wait_leading(&mut c, 3);
    for i in 0..3u8 {
        answers.push(ask(&mut c, &peer, format!("r{i}").as_bytes()).await.1);
    }
    for id in [1, 2] {
        spawn_vere(&mut c, &vere, id, &[]);
    }
    in_step(&mut c, &[1, 2, 3], last_answer(&answers));

    // Killed, it hands over to a C runtime, and replays its events.
    block_in_place(|| c.kill(&agent(3)));
    let next = leader_among(&mut c, &[1, 2]);
    wait_leading(&mut c, next);
    for i in 0..3u8 {
        answers.push(ask(&mut c, &peer, format!("d{i}").as_bytes()).await.1);
    }
    spawn_rust(&mut c);
    in_step(&mut c, &[1, 2, 3], last_answer(&answers));

    let events = log_events(&client).await;
    assert!(
        events.iter().take(LIFE as usize).all(|e| e.mug == 0),
        "the C runtime booted the ship"
    );
    let mugs: HashMap<u64, u32> = events.iter().map(|e| (e.num, e.mug)).collect();
    let nums: Vec<u64> = answers
        .iter()
        .map(|a| {
            let Said::Answer { num, mug } = a else {
                panic!("{a:?}")
            };
            assert_eq!(mugs[num], *mug, "event {num}");
            *num
        })
        .collect();
    assert_eq!(
        nums,
        (LIFE + 1..=LIFE + 9).collect::<Vec<_>>(),
        "one event per request, in order, across three terms"
    );
    stop_cluster(&mut c, [1, 2], &[3]);
}
