//! `seguro lb` on a real kernel: a peer, the edge box and three replicas (the
//! last behind a router) in network namespaces this test makes, with the
//! XDP/TC programs really attached, and the userspace relay.
//!
//! Every replica must receive exactly the packets the peer sent that are not
//! malformed, byte for byte, from the peer's own address and port; garbage
//! is counted and reaches no one; the edge box's own traffic still works;
//! replicas come and go with the config; and stopping leaves nothing behind.
//!
//! Needs root (CI runs as root); fails, rather than skips, without it.

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use ames::{Body, Meow, Packet, Peep, Prelude, Purr, Rank, ScryPath, Ship};
use config::{LbMode, TcAttach};
use testkit::Daemon;
use testkit::config_file::{ClusterFile, Replica};
use testkit::edge::{EDGE_IF, EdgeLab, Family, LONGEST_SCRY_PATH, fine_response};
use testkit::process::Supervisor;
use testkit::wait;

const SHIP_PORT: u16 = 34543;
const REPLICA_PORT: u16 = 4000;
const PEER_PORT: u16 = 5555;
/// Inside the edge box's namespace, whose loopback is its own.
const METRICS: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9460);

fn require_root() {
    testkit::require_root("attaches eBPF programs in network namespaces it creates");
}

// ---------------------------------------------------------------------------
// The packets

/// What the peer sends: every Ames rank pair relayed and not, fine request
/// and response, STUN request and response, mesa; then garbage, each piece
/// with the drop reason it must be counted under.
struct Mix {
    accepted: Vec<Vec<u8>>,
    garbage: Vec<(Vec<u8>, &'static str)>,
}

fn ship_of(rank: Rank) -> Ship {
    match rank {
        Rank::Two => Ship::new(0x1234),
        Rank::Four => Ship::new(0x1234_5678),
        Rank::Eight => Ship::new(0x1234_5678_9abc_def0),
        Rank::Sixteen => Ship::new(0x1234_5678_9abc_def0_0fed_cba9_8765_4321),
    }
}

fn mix() -> Mix {
    let mut accepted = Vec::new();
    let origin = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 7), 40_000);
    for sender in Rank::ALL {
        for receiver in Rank::ALL {
            for relayed in [false, true] {
                let n = accepted.len();
                let packet = Packet {
                    prelude: Prelude {
                        origin: relayed.then_some(origin),
                        ..Prelude::new(ship_of(sender), ship_of(receiver))
                    },
                    body: Body::Ames((0..(n * 13) % 200 + 1).map(|b| b as u8).collect()),
                };
                accepted.push(packet.to_bytes());
            }
        }
    }
    let peep = Peep {
        fragment: 1,
        path: ScryPath::new("/c/x/1/kids/sys/kelvin").unwrap(),
    };
    let prelude = Prelude::new(ship_of(Rank::Four), ship_of(Rank::Two));
    accepted.push(
        Packet {
            prelude,
            body: Body::FineRequest(peep.clone()),
        }
        .to_bytes(),
    );
    accepted.push(
        Packet {
            prelude,
            body: Body::FineResponse(Purr {
                peep,
                meow: Meow {
                    signature: [7; 64],
                    num_fragments: 1,
                    data: b"the data".to_vec(),
                },
            }),
        }
        .to_bytes(),
    );
    // STUN binding request (header + FINGERPRINT) and our 40-byte response.
    let mut request = vec![0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42];
    request.extend([0x5a; 12]);
    request.extend([0x80, 0x28, 0x00, 0x04, 1, 2, 3, 4]);
    accepted.push(request);
    let mut response = vec![0x01, 0x01, 0x00, 0x14, 0x21, 0x12, 0xa4, 0x42];
    response.extend([0x5b; 32]);
    accepted.push(response);
    // Mesa: version 1, the cookie little-endian at bytes 4..8.
    let mut mesa = vec![0x10, 0, 0, 0, 0x00, 0x02, 0xe0, 0x67];
    mesa.extend([0x6d; 56]);
    accepted.push(mesa.clone());

    // A fine request whose path would be longer than vere allows.
    let mut too_long = accepted[32].clone();
    too_long.resize(too_long.len() + 400, b'a');
    let truncated = accepted[31][..12].to_vec();
    let garbage = vec![
        (b"ab".to_vec(), "no_header"),
        (b"garbage! not ames".to_vec(), "bad_version"),
        (
            vec![0x10, 0, 0, 0x80, 1, 2, 3, 4, 5, 6, 7, 8],
            "bad_version",
        ),
        (truncated, "truncated"),
        (too_long, "too_long"),
    ];
    for (bytes, reason) in &garbage {
        assert!(
            matches!(ames::classify_slice(bytes), ames::Class::Malformed(_)),
            "test garbage {reason} is not garbage"
        );
    }
    for bytes in &accepted {
        assert!(!matches!(
            ames::classify_slice(bytes),
            ames::Class::Malformed(_)
        ));
    }
    Mix { accepted, garbage }
}

// ---------------------------------------------------------------------------
// The topology, the config and the running `seguro lb`

struct Edge {
    lab: EdgeLab,
    family: Family,
    dir: tempfile::TempDir,
    /// Replica sockets, replica 1 first.
    replicas: Vec<UdpSocket>,
    peer: UdpSocket,
}

impl Edge {
    fn new(family: Family) -> Edge {
        require_root();
        let lab = EdgeLab::new(3);
        let replicas = (1..=3)
            .map(|i| {
                let addr = SocketAddr::new(lab.replica_ip(i, family), REPLICA_PORT);
                let socket = lab.replica(i).run(|| UdpSocket::bind(addr).unwrap());
                socket
                    .set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                big_receive_buffer(&socket);
                socket
            })
            .collect();
        let peer_addr = SocketAddr::new(lab.peer_ip(family), PEER_PORT);
        let peer = lab.peer.run(|| UdpSocket::bind(peer_addr).unwrap());
        Edge {
            lab,
            family,
            dir: tempfile::tempdir().unwrap(),
            replicas,
            peer,
        }
    }

    fn ship(&self) -> SocketAddr {
        SocketAddr::new(self.lab.ship_ip(self.family), SHIP_PORT)
    }

    fn peer_addr(&self) -> SocketAddr {
        self.peer.local_addr().unwrap()
    }

    /// The config with these replicas, `seguro lb` in `mode`.
    fn config(&self, mode: &str, replicas: &[u8]) -> ClusterFile {
        let ship = self.ship();
        let mut f = ClusterFile::new(
            "lbtest",
            ship,
            SocketAddr::new(ship.ip(), 4720),
            "https://127.0.0.1:2379",
        );
        for &i in replicas {
            let ames = SocketAddr::new(self.lab.replica_ip(i, self.family), REPLICA_PORT);
            f.replicas.push(Replica::new(i.into(), ames));
        }
        f.lb.interface = EDGE_IF.into();
        f.lb.mode = Some(mode.parse().unwrap());
        f.lb.metrics = Some(METRICS);
        f
    }

    /// The path `seguro lb` is given: a symlink in a directory of its own,
    /// to a file elsewhere. Editing that file is invisible to the config
    /// watcher (it watches the link's directory), so a test can tell a
    /// SIGHUP reload from a watched one.
    fn link(&self) -> PathBuf {
        self.dir.path().join("etc").join("seguro.toml")
    }

    /// Writes `file` as the config and points the link at it, replacing the
    /// link atomically as a deploy tool would: the watcher sees this.
    fn install(&self, file: &ClusterFile) -> PathBuf {
        let n = self.next();
        let real = file
            .write(self.dir.path().join(format!("seguro-{n}.toml")))
            .unwrap();
        let link = self.link();
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        let tmp = link.with_extension("new");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&real, &tmp).unwrap();
        std::fs::rename(&tmp, &link).unwrap();
        link
    }

    /// Rewrites the file the link points at in place: only a SIGHUP makes
    /// `seguro lb` notice.
    fn edit_quietly(&self, file: &ClusterFile) {
        let real = std::fs::read_link(self.link()).unwrap();
        file.write(real).unwrap();
    }

    /// A number no earlier call gave: names of files that must not clash.
    fn next(&self) -> u32 {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Starts `seguro lb` in the edge box's namespace, with a log of its
    /// own, and waits until it is ready.
    fn start(&self, config: &Path) -> Lb {
        let logs = self.dir.path().join(format!("run-{}", self.next()));
        let mut daemons = Supervisor::new(logs).unwrap();
        let mut cmd = self.lab.edge.command(env!("CARGO_BIN_EXE_seguro"));
        cmd.args(["lb", "-c"])
            .arg(config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1");
        daemons.start(Daemon::Lb, cmd).unwrap();
        let lb = Lb { daemons };
        lb.wait_for("ready", 1);
        lb
    }

    /// Sends `packets` from the peer to the ship's address.
    fn send(&self, packets: &[Vec<u8>]) {
        for p in packets {
            self.peer.send_to(p, self.ship()).unwrap();
        }
    }

    /// What replica `i` received until `quiet` passed without a packet.
    fn received(&self, i: u8, quiet: Duration) -> Vec<(SocketAddr, Vec<u8>)> {
        drain(&self.replicas[usize::from(i) - 1], quiet, quiet)
    }

    /// What replica `i` received, waiting up to three seconds for the first
    /// packet (a neighbour resolution retried takes a second) and then
    /// until `quiet` passes without one.
    fn expected_at(&self, i: u8, quiet: Duration) -> Vec<(SocketAddr, Vec<u8>)> {
        drain(
            &self.replicas[usize::from(i) - 1],
            Duration::from_secs(3),
            quiet,
        )
    }

    /// Checks that every replica in `present` got exactly `expected`, in
    /// order, from the peer, and the others got nothing.
    fn assert_delivered(&self, expected: &[Vec<u8>], present: &[u8]) {
        let peer = self.peer_addr();
        for i in 1..=3u8 {
            if !present.contains(&i) {
                let got = self.received(i, Duration::from_millis(600));
                assert!(
                    got.is_empty(),
                    "replica {i} is not in the config but received {} packets",
                    got.len()
                );
                continue;
            }
            let got = self.expected_at(i, Duration::from_millis(600));
            assert_eq!(got.len(), expected.len(), "replica {i}: packets received");
            for (n, ((from, bytes), want)) in got.iter().zip(expected).enumerate() {
                assert_eq!(*from, peer, "replica {i}, packet {n}: source lane");
                assert_eq!(bytes, want, "replica {i}, packet {n}: payload");
            }
        }
    }

    fn metrics(&self) -> Metrics {
        let m = self
            .lab
            .edge
            .run(|| telemetry::scrape_blocking(METRICS, Duration::from_secs(5)));
        Metrics(m.unwrap_or_else(|e| panic!("{e}")))
    }

    /// Waits until the exported counters include what was just sent (they
    /// are exported every half second).
    fn metrics_when(&self, what: &str, ok: impl Fn(&Metrics) -> bool) -> Metrics {
        let got = wait::every(
            Duration::from_millis(200),
            Duration::from_secs(10),
            what,
            || {
                let m = self.metrics();
                if ok(&m) { Ok(m) } else { Err(format!("{m:?}")) }
            },
        );
        got.unwrap_or_else(|e| panic!("metrics never showed {e}"))
    }
}

/// Room for every packet a test sends before it reads any.
fn big_receive_buffer(socket: &UdpSocket) {
    use std::os::fd::AsRawFd as _;
    let size: libc::c_int = 16 << 20;
    // SAFETY: setsockopt with a pointer to a live c_int and its size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            std::ptr::from_ref(&size).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
}

/// Reads until nothing came for `first` (before the first packet) or
/// `quiet` (after it).
fn drain(socket: &UdpSocket, first: Duration, quiet: Duration) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    let start = Instant::now();
    let mut last = start;
    while last.elapsed() < if got.is_empty() { first } else { quiet } {
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            got.push((from, buf[..n].to_vec()));
            last = Instant::now();
        }
    }
    got
}

/// A running `seguro lb`.
struct Lb {
    daemons: Supervisor<Daemon>,
}

impl Lb {
    /// Waits until `needle` has appeared `times` times in the log.
    fn wait_for(&self, needle: &str, times: usize) -> String {
        let what = format!("`{needle}` (x{times}) in the log");
        wait::until(Duration::from_secs(30), &what, || {
            let log = self.log();
            (log.matches(needle).count() >= times).then_some(log)
        })
        .unwrap_or_else(|e| panic!("{e}; the log:\n{}", self.log()))
    }

    fn log(&self) -> String {
        self.daemons.log(&Daemon::Lb)
    }

    /// The number logged as `key=N` on the "ready" line.
    fn logged_number(&self, key: &str) -> u32 {
        let log = self.log();
        let line = log
            .lines()
            .find(|l| l.contains(" ready"))
            .expect("a ready line");
        let at = line
            .find(&format!("{key}="))
            .unwrap_or_else(|| panic!("{key} in {line}"))
            + key.len()
            + 1;
        line[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap()
    }

    fn signal(&self, signal: libc::c_int) {
        self.daemons.signal(&Daemon::Lb, signal);
    }

    /// SIGTERM, then waits (bounded) for the exit.
    fn stop(mut self) -> ExitStatus {
        let log = self.log();
        self.daemons
            .stop(&Daemon::Lb, Duration::from_secs(15))
            .unwrap_or_else(|| panic!("seguro lb did not stop within 15 s of SIGTERM; log:\n{log}"))
    }
}

/// The lb's metrics.
#[derive(Debug)]
struct Metrics(telemetry::Exposition);

impl Metrics {
    /// The series' value; a series that is not exported fails the test,
    /// so that an expected 0 cannot pass for a renamed or missing one.
    fn get(&self, key: &str) -> f64 {
        self.0
            .value(key)
            .unwrap_or_else(|| panic!("{key} is not exported"))
    }
}

/// Whether the kernel still has a program with this id.
fn program_exists(id: u32) -> bool {
    const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
    let mut attr = [0u32; 4];
    attr[0] = id;
    // SAFETY: bpf(2) with an attribute buffer of the size given.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_GET_FD_BY_ID, attr.as_mut_ptr(), 16) };
    if fd >= 0 {
        // SAFETY: closing the descriptor we were just given.
        unsafe { libc::close(fd as i32) };
        return true;
    }
    false
}

/// Whether program `id` is gone from the kernel within a few seconds: the
/// kernel frees a program after an RCU grace period once its last
/// reference (link, filter, descriptor) is dropped, not at once.
fn program_gone(id: u32) -> bool {
    wait::every(
        Duration::from_millis(20),
        Duration::from_secs(5),
        "",
        || !program_exists(id),
    )
    .is_ok()
}

/// The edge box's own services: a UDP and a TCP port on the public address
/// that are not the ship's must work as if nothing were attached.
fn assert_edge_traffic_untouched(edge: &Edge) {
    let udp_addr = SocketAddr::new(edge.ship().ip(), 7000);
    let udp = edge.lab.edge.run(|| UdpSocket::bind(udp_addr).unwrap());
    udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    edge.peer.send_to(b"for the edge box", udp_addr).unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = udp
        .recv_from(&mut buf)
        .expect("the edge box's own UDP port");
    assert_eq!(&buf[..n], b"for the edge box");
    assert_eq!(from, edge.peer_addr());

    let tcp_addr = SocketAddr::new(edge.ship().ip(), 7001);
    let listener = edge.lab.edge.run(|| TcpListener::bind(tcp_addr).unwrap());
    let client = edge.lab.peer.run(|| {
        TcpStream::connect_timeout(&tcp_addr, Duration::from_secs(5))
            .expect("the edge box's own TCP port")
    });
    let (mut conn, _) = listener.accept().unwrap();
    (&client).write_all(b"ssh-ish").unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = [0u8; 7];
    conn.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ssh-ish");
    for i in 1..=3 {
        assert!(
            edge.received(i, Duration::from_millis(200)).is_empty(),
            "replica {i} got the edge box's traffic"
        );
    }
}

/// Sends the mix and checks delivery and counters.
fn check_mix(edge: &Edge, lb_mode: &str) {
    let mix = mix();
    edge.send(&mix.accepted);
    let garbage: Vec<Vec<u8>> = mix.garbage.iter().map(|(b, _)| b.clone()).collect();
    edge.send(&garbage);
    edge.assert_delivered(&mix.accepted, &[1, 2, 3]);

    let n = mix.accepted.len() as f64;
    let m = edge.metrics_when("every copy", |m| {
        (1..=3).all(|i| m.get(&format!("seguro_lb_copies_total{{replica=\"{i}\"}}")) == n)
            && m.get("seguro_lb_packets_total{class=\"malformed\"}") == garbage.len() as f64
    });
    assert_eq!(m.get("seguro_lb_packets_total{class=\"ames\"}"), 32.0);
    assert_eq!(
        m.get("seguro_lb_packets_total{class=\"fine-request\"}"),
        1.0
    );
    assert_eq!(
        m.get("seguro_lb_packets_total{class=\"fine-response\"}"),
        1.0
    );
    assert_eq!(m.get("seguro_lb_packets_total{class=\"stun\"}"), 2.0);
    assert_eq!(m.get("seguro_lb_packets_total{class=\"mesa\"}"), 1.0);
    let bytes: usize = mix
        .accepted
        .iter()
        .filter(|p| ames::classify_slice(p) == ames::Class::Mesa)
        .map(Vec::len)
        .sum();
    assert_eq!(m.get("seguro_lb_bytes_total{class=\"mesa\"}"), bytes as f64);
    for reason in ["no_header", "bad_version", "truncated", "too_long"] {
        let want = mix.garbage.iter().filter(|(_, r)| *r == reason).count();
        assert_eq!(
            m.get(&format!("seguro_lb_dropped_total{{reason=\"{reason}\"}}")),
            want as f64,
            "dropped {reason} ({lb_mode})"
        );
    }
    for i in 1..=3 {
        assert_eq!(
            m.get(&format!(
                "seguro_lb_clone_failures_total{{replica=\"{i}\"}}"
            )),
            0.0
        );
    }
    assert_eq!(m.get("seguro_lb_replicas"), 3.0);
    assert_eq!(m.get(&format!("seguro_lb_mode{{mode=\"{lb_mode}\"}}")), 1.0);
}

/// Removes replica 3 on SIGHUP while the peer sends, then adds it back by
/// replacing the file (no signal): 1 and 2 miss nothing, 3 gets nothing
/// while out. A config with errors changes nothing.
fn check_reloads(edge: &Edge, lb: &Lb, mode: &str) {
    let numbered = |n: usize| -> Vec<Vec<u8>> {
        (0..n)
            .map(|k| {
                Packet {
                    prelude: Prelude::new(ship_of(Rank::Two), ship_of(Rank::Four)),
                    body: Body::Ames(format!("packet {k:05}").into_bytes()),
                }
                .to_bytes()
            })
            .collect()
    };
    let stream = numbered(1500);
    std::thread::scope(|s| {
        s.spawn(|| {
            for p in &stream {
                edge.peer.send_to(p, edge.ship()).unwrap();
                std::thread::sleep(Duration::from_micros(400));
            }
        });
        std::thread::sleep(Duration::from_millis(150));
        edge.edit_quietly(&edge.config(mode, &[1, 2]));
        lb.signal(libc::SIGHUP);
        lb.wait_for("reloaded", 1);
    });
    assert!(lb.log().contains("reason=\"SIGHUP\""), "{}", lb.log());
    for i in [1u8, 2] {
        let got = edge.expected_at(i, Duration::from_millis(600));
        let payloads: Vec<&Vec<u8>> = got.iter().map(|(_, p)| p).collect();
        let want: Vec<&Vec<u8>> = stream.iter().collect();
        assert_eq!(
            payloads.len(),
            want.len(),
            "replica {i} lost packets during the reload"
        );
        assert!(
            payloads == want,
            "replica {i}: packets out of order or changed during the reload"
        );
    }
    let third = edge.received(3, Duration::from_millis(300));
    assert!(
        third.len() < stream.len(),
        "replica 3 kept receiving after it was removed"
    );
    let after = numbered(20);
    edge.send(&after);
    edge.assert_delivered(&after, &[1, 2]);

    edge.install(&edge.config(mode, &[1, 2, 3]));
    let log = lb.wait_for("reloaded", 2);
    assert!(log.contains("reason=\"the config file changed\""), "{log}");
    edge.send(&after);
    edge.assert_delivered(&after, &[1, 2, 3]);

    let mut broken = edge.config(mode, &[1, 2, 3]);
    broken.replicas[2].id = 0;
    edge.edit_quietly(&broken);
    lb.signal(libc::SIGHUP);
    lb.wait_for("reload refused", 1);
    edge.send(&after);
    edge.assert_delivered(&after, &[1, 2, 3]);
    let m = edge.metrics_when("the refused reload", |m| {
        m.get("seguro_lb_reloads_total{result=\"error\"}") == 1.0
    });
    assert_eq!(m.get("seguro_lb_reloads_total{result=\"ok\"}"), 2.0);
}

// ---------------------------------------------------------------------------
// The tests

#[test]
fn xdp_fans_out_to_every_replica_and_detaches_cleanly() {
    let edge = Edge::new(Family::V4);
    let config = edge.install(&edge.config("xdp", &[1, 2, 3]));
    let lb = edge.start(&config);
    let (xdp_prog, tc_prog) = (lb.logged_number("xdp_prog"), lb.logged_number("tc_prog"));
    assert!(program_exists(xdp_prog) && program_exists(tc_prog));
    let link = edge.lab.edge.ip(&["link", "show", EDGE_IF]);
    assert!(
        String::from_utf8_lossy(&link.stdout).contains("xdp"),
        "no XDP program on {EDGE_IF}"
    );

    check_mix(&edge, "xdp-native");
    assert_edge_traffic_untouched(&edge);
    check_reloads(&edge, &lb, "xdp");

    let status = lb.stop();
    assert!(status.success(), "seguro lb exited with {status}");
    // Nothing left: no XDP program, no qdisc, no programs, no pinned maps.
    let link =
        String::from_utf8_lossy(&edge.lab.edge.ip(&["link", "show", EDGE_IF]).stdout).into_owned();
    assert!(
        !link.contains("xdp"),
        "an XDP program is still attached: {link}"
    );
    let qdisc = edge.lab.edge.exec("tc", &["qdisc", "show", "dev", EDGE_IF]);
    assert!(!String::from_utf8_lossy(&qdisc.stdout).contains("clsact"));
    assert!(program_gone(xdp_prog), "the XDP program is still loaded");
    assert!(program_gone(tc_prog), "the TC program is still loaded");
    let pinned: Vec<_> = std::fs::read_dir("/sys/fs/bpf")
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        !pinned
            .iter()
            .any(|n| n.to_string_lossy().to_lowercase().contains("seguro")),
        "pinned: {pinned:?}"
    );
    // Packets for the ship now go to the edge box's stack, and nowhere else.
    edge.send(&mix().accepted[..3]);
    edge.assert_delivered(&[], &[]);
    assert_edge_traffic_untouched(&edge);
}

#[test]
fn userspace_relay_fans_out_with_the_peers_source() {
    let edge = Edge::new(Family::V4);
    let config = edge.install(&edge.config("userspace", &[1, 2, 3]));
    let lb = edge.start(&config);
    check_mix(&edge, "userspace");
    assert_edge_traffic_untouched(&edge);
    check_reloads(&edge, &lb, "userspace");
    let status = lb.stop();
    assert!(status.success(), "seguro lb exited with {status}");
    // The ship's port is free again.
    let ship = edge.ship();
    assert!(edge.lab.edge.run(|| UdpSocket::bind(ship).is_ok()));
}

#[test]
fn ipv6_fans_out_in_both_modes() {
    let edge = Edge::new(Family::V6);
    // A second lane of the peer's whose packets carry a hop-by-hop options
    // header: the XDP program leaves those to the TC program.
    let options_lane = SocketAddr::new(edge.lab.peer_ip(Family::V6), PEER_PORT + 1);
    let with_options = edge.lab.peer.run(|| UdpSocket::bind(options_lane).unwrap());
    // Next header (set by the kernel), length 0, PadN of 4.
    set_option(
        &with_options,
        libc::IPPROTO_IPV6,
        libc::IPV6_HOPOPTS,
        &[0, 0, 1, 4, 0, 0, 0, 0],
    );
    for (mode, shown) in [("xdp", "xdp-native"), ("userspace", "userspace")] {
        let config = edge.install(&edge.config(mode, &[1, 2, 3]));
        let lb = edge.start(&config);
        check_mix(&edge, shown);
        let packet = mix().accepted[7].clone();
        with_options.send_to(&packet, edge.ship()).unwrap();
        for i in 1..=3 {
            let got = edge.expected_at(i, Duration::from_millis(300));
            assert_eq!(
                got,
                vec![(options_lane, packet.clone())],
                "{mode}: replica {i}, hop-by-hop options"
            );
        }
        let status = lb.stop();
        assert!(status.success(), "{mode}: seguro lb exited with {status}");
    }
}

#[test]
fn vlan_tags_and_ip_options_take_their_own_paths() {
    let edge = Edge::new(Family::V4);
    // IPv4 options move the UDP header: the TC program parses these alone.
    let options_lane = SocketAddr::new(edge.lab.peer_ip(Family::V4), PEER_PORT + 1);
    let with_options = edge.lab.peer.run(|| UdpSocket::bind(options_lane).unwrap());
    set_option(
        &with_options,
        libc::IPPROTO_IP,
        libc::IP_OPTIONS,
        &[1, 1, 1, 0],
    );
    // 802.1Q-tagged frames, written whole on the peer's link (this kernel
    // may have no VLAN devices): the XDP program reads past the tag, and
    // the copies leave untagged.
    let tagged_lane = SocketAddr::new(edge.lab.peer_ip(Family::V4), PEER_PORT + 2);
    let mac = |ns: &testkit::netns::Netns, dev: &str| -> [u8; 6] {
        let text = ns
            .exec("cat", &[&format!("/sys/class/net/{dev}/address")])
            .stdout;
        let text = String::from_utf8_lossy(&text);
        let bytes: Vec<u8> = text
            .trim()
            .split(':')
            .map(|h| u8::from_str_radix(h, 16).unwrap())
            .collect();
        bytes.try_into().unwrap()
    };
    let (p0, e0) = (mac(&edge.lab.peer, "p0"), mac(&edge.lab.edge, EDGE_IF));
    let raw = edge.lab.peer.run(|| PacketSocket::open("p0"));
    let tagged = |payload: &[u8]| {
        let frame = testkit::frame::Frame::udp(tagged_lane, edge.ship(), payload)
            .tagged(testkit::frame::ETH_P_8021Q, 100)
            .macs(p0, e0);
        raw.send(&frame.bytes());
    };

    let config = edge.install(&edge.config("xdp", &[1, 2, 3]));
    let lb = edge.start(&config);
    let mix = mix();
    for lane in [options_lane, tagged_lane] {
        for p in mix
            .accepted
            .iter()
            .chain(mix.garbage.iter().map(|(p, _)| p))
        {
            if lane == options_lane {
                with_options.send_to(p, edge.ship()).unwrap();
            } else {
                tagged(p);
            }
        }
        for i in 1..=3 {
            let got = edge.expected_at(i, Duration::from_millis(600));
            let want: Vec<(SocketAddr, Vec<u8>)> =
                mix.accepted.iter().map(|p| (lane, p.clone())).collect();
            assert!(
                got == want,
                "replica {i} from {lane}: got {} of {} packets, or wrong ones",
                got.len(),
                want.len()
            );
        }
    }
    let n = 2.0 * mix.accepted.len() as f64;
    edge.metrics_when("both lanes' copies and drops", |m| {
        (1..=3).all(|i| m.get(&format!("seguro_lb_copies_total{{replica=\"{i}\"}}")) == n)
            && m.get("seguro_lb_packets_total{class=\"malformed\"}")
                == 2.0 * mix.garbage.len() as f64
    });
    assert!(lb.stop().success());
}

/// An AF_PACKET socket that writes whole frames on one interface.
struct PacketSocket {
    fd: std::os::fd::OwnedFd,
    ifindex: i32,
}

impl PacketSocket {
    fn open(dev: &str) -> PacketSocket {
        use std::os::fd::FromRawFd as _;
        // SAFETY: plain system calls; the descriptor is owned from here on.
        unsafe {
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
            assert!(
                fd >= 0,
                "AF_PACKET socket: {}",
                std::io::Error::last_os_error()
            );
            let name = std::ffi::CString::new(dev).unwrap();
            let ifindex = libc::if_nametoindex(name.as_ptr()) as i32;
            assert!(ifindex > 0, "no {dev}");
            PacketSocket {
                fd: std::os::fd::OwnedFd::from_raw_fd(fd),
                ifindex,
            }
        }
    }

    fn send(&self, frame: &[u8]) {
        use std::os::fd::AsRawFd as _;
        // SAFETY: all-zero is a valid sockaddr_ll; the fields set make it
        // name our interface.
        let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_ifindex = self.ifindex;
        to.sll_halen = 6;
        to.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: sendto with the frame's buffer and a valid sockaddr_ll.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                std::ptr::from_ref(&to).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        assert_eq!(
            n,
            frame.len() as isize,
            "AF_PACKET send: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// setsockopt with a byte buffer.
fn set_option(socket: &UdpSocket, level: libc::c_int, name: libc::c_int, value: &[u8]) {
    use std::os::fd::AsRawFd as _;
    // SAFETY: setsockopt with a pointer to `value` and its length.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            value.as_ptr().cast(),
            value.len() as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "setsockopt({level}, {name}): {}",
        std::io::Error::last_os_error()
    );
}

#[test]
fn a_clsact_qdisc_is_removed_only_if_ours() {
    let edge = Edge::new(Family::V4);
    let tc = |args: &[&str]| -> String {
        String::from_utf8_lossy(&edge.lab.edge.exec("tc", args).stdout).into_owned()
    };
    let mix = mix();
    for preexisting in [false, true] {
        if preexisting {
            edge.lab
                .edge
                .exec("tc", &["qdisc", "add", "dev", EDGE_IF, "clsact"]);
        }
        let mut file = edge.config("xdp", &[1, 2, 3]);
        file.lb.tc_attach = Some(TcAttach::Clsact);
        let config = edge.install(&file);
        let lb = edge.start(&config);
        assert!(lb.log().contains("tc=\"clsact\""), "{}", lb.log());
        assert!(tc(&["qdisc", "show", "dev", EDGE_IF]).contains("clsact"));
        assert!(tc(&["filter", "show", "dev", EDGE_IF, "ingress"]).contains("seguro_tc"));
        edge.send(&mix.accepted[..5]);
        edge.assert_delivered(&mix.accepted[..5], &[1, 2, 3]);
        let tc_prog = lb.logged_number("tc_prog");
        assert!(lb.stop().success());
        assert!(program_gone(tc_prog), "the TC program is still loaded");
        assert!(!tc(&["filter", "show", "dev", EDGE_IF, "ingress"]).contains("seguro_tc"));
        assert_eq!(
            tc(&["qdisc", "show", "dev", EDGE_IF]).contains("clsact"),
            preexisting,
            "the clsact qdisc must stay exactly when it was there before (preexisting: {preexisting})"
        );
    }
}

#[test]
fn generic_xdp_mode_fans_out_too() {
    let edge = Edge::new(Family::V4);
    let config = edge.install(&edge.config("xdp-generic", &[1, 2, 3]));
    let lb = edge.start(&config);
    let mix = mix();
    edge.send(&mix.accepted);
    edge.assert_delivered(&mix.accepted, &[1, 2, 3]);
    edge.metrics_when("generic mode", |m| {
        m.get("seguro_lb_mode{mode=\"xdp-generic\"}") == 1.0
    });
    assert!(lb.stop().success());
}

#[test]
fn a_missing_interface_is_a_config_error() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let config = minimal_config(LbMode::Xdp, "nosuch0")
        .write(dir.path().join("seguro.toml"))
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_seguro"))
        .args(["lb", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no interface `nosuch0`"), "{stderr}");
}

#[test]
fn not_root_is_refused_with_its_own_exit_code() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    // Readable by the unprivileged user the command runs as.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    for (mode, needs) in [(LbMode::Xdp, "CAP_BPF"), (LbMode::Userspace, "CAP_NET_RAW")] {
        let config = minimal_config(mode, "lo")
            .write(dir.path().join(format!("{mode}.toml")))
            .unwrap();
        let out = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
            ])
            .arg(env!("CARGO_BIN_EXE_seguro"))
            .args(["lb", "-c"])
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(77), "{mode}: {stderr}");
        assert!(
            stderr.contains("must run as root") && stderr.contains(needs),
            "{mode}: {stderr}"
        );
    }
}

fn minimal_config(mode: LbMode, interface: &str) -> ClusterFile {
    let local = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let mut f = ClusterFile::new("t", local(34543), local(4720), "https://127.0.0.1:2379");
    f.replicas
        .push(Replica::new(1, SocketAddr::from(([127, 0, 0, 2], 4000))));
    f.lb.interface = interface.into();
    f.lb.mode = Some(mode);
    f.lb.metrics = Some(local(9460));
    f
}

// ---------------------------------------------------------------------------
// IP fragments

/// A fine response with the longest path vere accepts: longer than one
/// packet on a 1500-byte link, so the peer's kernel fragments it.
fn fragmented_fine_response() -> Vec<u8> {
    let packet = fine_response(LONGEST_SCRY_PATH);
    assert!(packet.len() > 1472, "{} bytes fit one packet", packet.len());
    packet
}

/// The peer sends a datagram its kernel fragments, between two small ones:
/// every replica gets all three, whole, from the peer's lane, and the fine
/// response is counted as one. The edge box's own fragmented UDP to another
/// port still reaches it whole, and its other traffic works.
fn check_fragments(edge: &Edge, mode: &str) {
    let big = fragmented_fine_response();
    let small = mix().accepted[..2].to_vec();
    let sent = vec![small[0].clone(), big.clone(), small[1].clone()];
    let before = edge.metrics();
    let fine_before = before.get("seguro_lb_packets_total{class=\"fine-response\"}");
    edge.send(&sent);
    for i in 1..=3u8 {
        let mut got = edge.expected_at(i, Duration::from_millis(600));
        // The fragmented datagram takes a path of its own and may overtake
        // or trail the others; each arrives exactly once.
        got.sort_by_key(|(_, bytes)| bytes.len());
        let mut want: Vec<(SocketAddr, Vec<u8>)> =
            sent.iter().map(|p| (edge.peer_addr(), p.clone())).collect();
        want.sort_by_key(|(_, bytes)| bytes.len());
        assert_eq!(got.len(), 3, "{mode}: replica {i}: datagrams received");
        assert!(
            got == want,
            "{mode}: replica {i} got the datagrams wrong (lanes {:?}, lengths {:?})",
            got.iter().map(|(from, _)| *from).collect::<Vec<_>>(),
            got.iter().map(|(_, b)| b.len()).collect::<Vec<_>>()
        );
    }
    let m = edge.metrics_when("the fragmented fine response, counted once", |m| {
        m.get("seguro_lb_packets_total{class=\"fine-response\"}") == fine_before + 1.0
            && m.get("seguro_lb_dropped_total{reason=\"fragment\"}") == 0.0
    });
    // The kernel programs passed its first fragment to the edge box's stack;
    // the relay alone never sees fragments.
    let passed = if mode == "userspace" { 0.0 } else { 1.0 };
    assert_eq!(
        m.get("seguro_lb_fragments_total") - before.get("seguro_lb_fragments_total"),
        passed,
        "{mode}: first fragments passed to the stack"
    );
    for i in 1..=3 {
        let copies = format!("seguro_lb_copies_total{{replica=\"{i}\"}}");
        assert_eq!(
            m.get(&copies) - before.get(&copies),
            3.0,
            "{mode}: {copies}"
        );
    }

    // A large datagram for the edge box itself, on a port not the ship's.
    let own = SocketAddr::new(edge.ship().ip(), 7002);
    let socket = edge.lab.edge.run(|| UdpSocket::bind(own).unwrap());
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let payload: Vec<u8> = (0..4000).map(|b| (b % 253) as u8).collect();
    edge.peer.send_to(&payload, own).unwrap();
    let mut buf = vec![0u8; 8192];
    let (n, from) = socket
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("{mode}: the edge box's own fragmented UDP: {e}"));
    assert_eq!((&buf[..n], from), (&payload[..], edge.peer_addr()));
    assert_edge_traffic_untouched(edge);
}

#[test]
fn fragmented_datagrams_reach_every_replica_whole() {
    let edge = Edge::new(Family::V4);
    for (mode, shown) in [("xdp", "xdp-native"), ("userspace", "userspace")] {
        let config = edge.install(&edge.config(mode, &[1, 2, 3]));
        let lb = edge.start(&config);
        check_fragments(&edge, shown);
        assert!(lb.stop().success(), "{mode}: seguro lb failed");
    }
}

#[test]
fn fragmented_datagrams_reach_every_replica_whole_over_ipv6() {
    let edge = Edge::new(Family::V6);
    for (mode, shown) in [("xdp", "xdp-native"), ("userspace", "userspace")] {
        let config = edge.install(&edge.config(mode, &[1, 2, 3]));
        let lb = edge.start(&config);
        check_fragments(&edge, shown);
        assert!(lb.stop().success(), "{mode}: seguro lb failed");
    }
}

/// In an XDP mode with the ship's port taken on the edge box, `seguro lb`
/// cannot receive reassembled datagrams: it says so, and the TC program
/// drops and counts first fragments instead of passing them on; whole
/// packets still reach every replica.
#[test]
fn without_the_relay_socket_first_fragments_are_dropped_and_counted() {
    let edge = Edge::new(Family::V4);
    let squatter = edge.lab.edge.run(|| UdpSocket::bind(edge.ship()).unwrap());
    squatter
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let config = edge.install(&edge.config("xdp", &[1, 2, 3]));
    let lb = edge.start(&config);
    lb.wait_for("no relay for fragmented datagrams", 1);
    // The warning says "already bound", which `start` took for "ready".
    lb.wait_for("run: ready", 1);
    let small = mix().accepted[0].clone();
    edge.send(&[fragmented_fine_response(), small.clone()]);
    edge.assert_delivered(&[small], &[1, 2, 3]);
    edge.metrics_when("the first fragment dropped", |m| {
        m.get("seguro_lb_dropped_total{reason=\"fragment\"}") == 1.0
            && m.get("seguro_lb_fragments_total") == 0.0
    });
    let mut buf = [0u8; 4096];
    assert!(
        squatter.recv_from(&mut buf).is_err(),
        "the fragmented datagram reached the edge box's stack"
    );
    assert!(lb.stop().success());
}
