//! `make bench-lb`: the edge fan-out under a flood, against the kernel's own
//! duplicator (nftables `dup`) and the userspace relay, in one run.
//!
//! Topology: testkit's edge lab (a peer, the edge box, three replicas, the
//! third behind a router), in network namespaces on this machine. For each
//! engine in turn, the peer floods the ship's address with one Ames packet
//! for a bounded time, from one thread, with `sendmmsg`; each replica counts
//! what reaches its interface (an nftables counter at ingress, which then
//! drops it, so the replicas cost the same whatever the engine). Reported:
//! delivered packets per second per replica, machine CPU use during the
//! flood, and the ratios. Then the XDP program alone, in the kernel, on
//! single frames (`BPF_PROG_TEST_RUN`): nanoseconds per packet.
//!
//! Fragmented datagrams (docs/EDGE.md): with `seguro lb` (XDP and relay
//! modes), a fine response with the longest path vere accepts (two IPv4
//! fragments on the lab's links, reassembled by the edge box and copied by
//! the relay in every mode) against one that fits a packet, flat out, in
//! the same rounds: the ratio is what fragmentation costs each mode.
//!
//! Environment: `BENCH_ENGINES` (see [`selected`]), `BENCH_SECONDS` (length
//! of each measurement, default 4), `BENCH_ROUNDS` (default 3; engines
//! interleave within a round, and the tables show medians), `BENCH_RATE`
//! (the "same load" rate, default 20000 packets per second),
//! `BENCH_SENDERS` (default 1), `BENCH_SPLIT` (see [`split`]), `SEGURO_BIN`
//! (the `seguro` binary; default: next to this one).

use std::io::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use ames::{Body, Packet, Prelude, Ship};
use config::LbMode;
use lb::kernel::Programs;
use lb_abi::{FAMILY_V4, Plan};
use seguro_bench::{CpuTimes, WorkloadCpu, cpus, knob, median, process_cpu, table};
use testkit::config_file::{ClusterFile, Replica};
use testkit::edge::{EDGE_IF, EdgeLab, Family, LONGEST_SCRY_PATH, fine_response};
use testkit::frame::{ETH_P_8021Q, Frame};
use testkit::netns::Netns;
use testkit::process::Supervisor;
use testkit::{Daemon, wait};

const SHIP_PORT: u16 = 34543;
const REPLICA_PORT: u16 = 4000;
/// Every load loop is bounded in count as well as time.
const MAX_PACKETS: u64 = 500_000_000;
const BATCH: usize = 64;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Engine {
    Xdp,
    XdpGeneric,
    NftDup,
    Userspace,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Xdp => "XDP + TC (seguro lb, xdp)",
            Engine::XdpGeneric => "generic XDP + TC (seguro lb, xdp-generic)",
            Engine::NftDup => "nftables dup (netdev ingress)",
            Engine::Userspace => "userspace relay (seguro lb, userspace)",
        }
    }
}

struct Measured {
    engine: Engine,
    seconds: f64,
    sent: u64,
    delivered: [u64; 3],
    /// CPUs the machine was busy (everyone's work).
    machine_cpus: f64,
    /// CPUs this workload used: sender, `seguro lb`, softirq.
    workload_cpus: f64,
    /// CPUs `seguro lb` itself used (the relay's process; ~0 for XDP).
    process_cpus: Option<f64>,
}

impl Measured {
    /// The slowest replica's rate: what every replica is guaranteed.
    fn min_pps(&self) -> f64 {
        self.delivered.iter().copied().min().unwrap_or(0) as f64 / self.seconds
    }

    /// Copies delivered per CPU-second the workload spent.
    fn per_cpu_second(&self) -> f64 {
        self.delivered.iter().sum::<u64>() as f64 / (self.workload_cpus * self.seconds)
    }

    /// Microseconds of CPU per packet every replica received (the slowest
    /// replica's count), fanned out to all three.
    fn cpu_us_per_packet(&self) -> f64 {
        self.workload_cpus * self.seconds * 1e6
            / self.delivered.iter().copied().min().unwrap_or(1).max(1) as f64
    }
}

const ENGINES: [Engine; 4] = [
    Engine::Xdp,
    Engine::XdpGeneric,
    Engine::NftDup,
    Engine::Userspace,
];

fn main() {
    assert!(
        testkit::is_root(),
        "the benchmark builds network namespaces and loads eBPF: run it as root"
    );
    let duration = Duration::from_secs(knob("BENCH_SECONDS", 4, 1..=60));
    let rounds = knob("BENCH_ROUNDS", 3, 1..=10) as usize;
    let paced = knob("BENCH_RATE", 20_000, 1_000..=1_000_000);
    let seguro = seguro_bench::seguro_binary().unwrap_or_else(|e| panic!("{e}"));
    let lab = EdgeLab::new(3);
    for i in 1..=3 {
        count_at_ingress(lab.replica(i));
    }
    if split() {
        // The sender keeps CPU 0; the edge box's receive processing (and
        // with it the replicas') goes to CPU 1, so the engines, not the
        // sender, are what saturates.
        lab.edge.exec(
            "sh",
            &[
                "-c",
                &format!("echo 2 > /sys/class/net/{EDGE_IF}/queues/rx-0/rps_cpus"),
            ],
        );
    }
    let ship = SocketAddr::new(lab.ship_ip(Family::V4), SHIP_PORT);
    let packet = Packet {
        prelude: Prelude::new(Ship::new(0x1234_5678), Ship::new(0x9abc)),
        body: Body::Ames(vec![0x5a; 80]),
    }
    .to_bytes();
    let dir = std::env::temp_dir().join(format!("seguro-bench-lb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    println!(
        "edge fan-out: {} CPUs, {}-byte Ames packets, 3 replicas, {} rounds of {} s per engine and load, \
         {} sender thread(s)\n",
        cpus(),
        packet.len(),
        rounds,
        duration.as_secs(),
        senders()
    );
    let whole = fine_response(22);
    let fragmented = fine_response(LONGEST_SCRY_PATH);
    assert!(whole.len() <= 1472 && fragmented.len() > 1472);
    let mut flat_out = Vec::new();
    let mut same_load = Vec::new();
    let (mut fine_whole, mut fine_fragmented) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        // Engines interleaved, so that load from others on the machine
        // spreads over all of them.
        for engine in ENGINES.into_iter().filter(|e| selected(*e)) {
            eprintln!("round {round}: {}", engine.name());
            let running = Running::start(engine, &lab, &seguro, &dir);
            // Warm up (neighbours, the relay's socket), and check every
            // replica gets copies at all before measuring.
            let warm = counts(&lab);
            flood(&lab, ship, &packet, Duration::from_millis(300), None);
            std::thread::sleep(Duration::from_millis(300));
            let warmed = counts(&lab);
            for i in 0..3 {
                assert!(
                    warmed[i] > warm[i],
                    "{}: replica {} receives nothing",
                    engine.name(),
                    i + 1
                );
            }
            flat_out.push(measure(
                engine, &lab, &running, ship, &packet, duration, None,
            ));
            same_load.push(measure(
                engine,
                &lab,
                &running,
                ship,
                &packet,
                duration,
                Some(paced),
            ));
            if matches!(engine, Engine::Xdp | Engine::Userspace) {
                for (packet, results) in [
                    (&whole, &mut fine_whole),
                    (&fragmented, &mut fine_fragmented),
                ] {
                    results.push(measure(
                        engine, &lab, &running, ship, packet, duration, None,
                    ));
                }
            }
            running.stop(&lab);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    report("Flat out: the sender as fast as it goes", &flat_out);
    report(
        &format!("Same load: {paced} packets per second offered to every engine"),
        &same_load,
    );
    report(
        &format!("Fine response, whole ({} bytes), flat out", whole.len()),
        &fine_whole,
    );
    report(
        &format!(
            "Fine response, fragmented ({} bytes: two IPv4 fragments), flat out",
            fragmented.len()
        ),
        &fine_fragmented,
    );
    fragment_cost(&fine_whole, &fine_fragmented);
    test_run_report();
}

fn measure(
    engine: Engine,
    lab: &EdgeLab,
    running: &Running,
    ship: SocketAddr,
    packet: &[u8],
    duration: Duration,
    rate: Option<u64>,
) -> Measured {
    let mut pids = vec![std::process::id()];
    pids.extend(running.pid());
    let before = counts(lab);
    let (machine0, ours0, proc0) = (
        CpuTimes::now(),
        WorkloadCpu::now(&pids),
        running.pid().map(process_cpu),
    );
    let start = Instant::now();
    let sent = flood(lab, ship, packet, duration, rate);
    let seconds = start.elapsed().as_secs_f64();
    let (machine1, ours1, proc1) = (
        CpuTimes::now(),
        WorkloadCpu::now(&pids),
        running.pid().map(process_cpu),
    );
    std::thread::sleep(Duration::from_millis(300));
    let after = counts(lab);
    Measured {
        engine,
        seconds,
        sent,
        delivered: [
            after[0] - before[0],
            after[1] - before[1],
            after[2] - before[2],
        ],
        machine_cpus: machine0.busy_cpus(&machine1),
        workload_cpus: ours0.seconds_until(&ours1) / seconds,
        process_cpus: proc0
            .zip(proc1)
            .map(|(a, b)| (b - a).as_secs_f64() / seconds),
    }
}

/// The replicas' view: packets counted at each one's ingress.
fn counts(lab: &EdgeLab) -> [u64; 3] {
    [1, 2, 3].map(|i| read_counter(lab.replica(i)))
}

/// Counts, then drops, every copy at `ns`'s eth0 ingress, before its stack:
/// a fragmented copy once, by its first fragment (the one with the UDP
/// header); its other fragments are dropped uncounted.
fn count_at_ingress(ns: &Netns) {
    nft(
        ns,
        &format!(
            "table netdev bench {{\n chain count {{\n  type filter hook ingress device \"eth0\" priority 0;\n  \
             udp dport {REPLICA_PORT} counter drop\n  ip frag-off & 0x1fff != 0 drop\n }}\n}}\n"
        ),
    );
}

fn read_counter(ns: &Netns) -> u64 {
    let out = ns.exec("nft", &["-j", "list", "table", "netdev", "bench"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("nft -j output");
    json["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o.get("rule")?.get("expr")?.as_array())
        .flatten()
        .find_map(|e| e.get("counter")?.get("packets")?.as_u64())
        .expect("the ingress counter")
}

fn nft(ns: &Netns, ruleset: &str) {
    let mut child = ns
        .command("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(ruleset.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "nft -f: {ruleset}");
}

/// Sends `packet` to `to` from the peer, from `senders` threads as fast as
/// each can, for `duration` (and at most [`MAX_PACKETS`] in all); returns how
/// many were sent.
fn flood(
    lab: &EdgeLab,
    to: SocketAddr,
    packet: &[u8],
    duration: Duration,
    rate: Option<u64>,
) -> u64 {
    let senders = senders();
    let rate = rate.map(|r| r / senders as u64);
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..senders)
            .map(|k| {
                let max = MAX_PACKETS / senders as u64;
                s.spawn(move || send_from(lab, 5555 + k as u16, to, packet, duration, max, rate))
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).sum()
    })
}

/// `BENCH_SPLIT=1`: the sender keeps CPU 0 and the edge box's receive
/// processing moves to CPU 1 (RPS), so that the engines rather than the
/// sender saturate. Off by default: RPS work runs in whatever context CPU 1
/// is in, often idle, so [`WorkloadCpu`] misses it.
fn split() -> bool {
    cpus() >= 2 && std::env::var("BENCH_SPLIT").is_ok_and(|v| v == "1")
}

/// `BENCH_ENGINES`: a comma-separated subset of `xdp`, `generic`, `nft`
/// and `userspace` to run (default: all), say to profile one engine. A ratio
/// row needs both of its engines.
fn selected(engine: Engine) -> bool {
    let Ok(list) = std::env::var("BENCH_ENGINES") else {
        return true;
    };
    let key = match engine {
        Engine::Xdp => "xdp",
        Engine::XdpGeneric => "generic",
        Engine::NftDup => "nft",
        Engine::Userspace => "userspace",
    };
    list.split(',').any(|k| k.trim() == key)
}

/// `BENCH_SENDERS`, default 1.
fn senders() -> usize {
    knob("BENCH_SENDERS", 1, 1..=16) as usize
}

/// One sender: flat out, or paced to `rate` packets per second.
fn send_from(
    lab: &EdgeLab,
    port: u16,
    to: SocketAddr,
    packet: &[u8],
    duration: Duration,
    max: u64,
    rate: Option<u64>,
) -> u64 {
    if split() {
        // SAFETY: a CPU set on this stack, for this thread only.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(0, &mut set);
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
        }
    }
    let from = SocketAddr::new(lab.peer_ip(Family::V4), port);
    let socket = lab.peer.run(|| UdpSocket::bind(from).unwrap());
    socket.connect(to).unwrap();
    let mut iov = libc::iovec {
        iov_base: packet.as_ptr().cast_mut().cast(),
        iov_len: packet.len(),
    };
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH)
        .map(|_| {
            // SAFETY: all-zero is a valid msghdr; it points at `iov`.
            let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
            hdr.msg_iov = &raw mut iov;
            hdr.msg_iovlen = 1;
            libc::mmsghdr {
                msg_hdr: hdr,
                msg_len: 0,
            }
        })
        .collect();
    let start = Instant::now();
    let deadline = start + duration;
    let mut sent = 0u64;
    while Instant::now() < deadline && sent < max {
        if let Some(rate) = rate {
            let due = start + Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        // SAFETY: the headers point at `iov` and `packet`, alive and
        // unaliased for the call.
        let n = unsafe {
            libc::sendmmsg(
                socket.as_raw_fd(),
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                0,
            )
        };
        if n > 0 {
            sent += n as u64;
        }
    }
    sent
}

/// An engine doing the fan-out on the edge box.
enum Running {
    /// `seguro lb`, alone in its supervisor.
    Lb(Supervisor<Daemon>),
    Nft,
}

impl Running {
    fn start(engine: Engine, lab: &EdgeLab, seguro: &PathBuf, dir: &std::path::Path) -> Running {
        let ship = SocketAddr::new(lab.ship_ip(Family::V4), SHIP_PORT);
        let replicas: Vec<SocketAddr> = (1..=3)
            .map(|i| SocketAddr::new(lab.replica_ip(i, Family::V4), REPLICA_PORT))
            .collect();
        match engine {
            Engine::Xdp | Engine::XdpGeneric | Engine::Userspace => {
                let mode = match engine {
                    Engine::Xdp => LbMode::Xdp,
                    Engine::XdpGeneric => LbMode::XdpGeneric,
                    _ => LbMode::Userspace,
                };
                let mut file = ClusterFile::new(
                    "bench",
                    ship,
                    SocketAddr::new(ship.ip(), 4720),
                    "https://127.0.0.1:2379",
                );
                for (i, r) in (1..).zip(&replicas) {
                    file.replicas.push(Replica::new(i, *r));
                }
                file.lb.interface = EDGE_IF.into();
                file.lb.mode = Some(mode);
                file.lb.metrics = Some(SocketAddr::from(([127, 0, 0, 1], 9460)));
                let config = file.write(dir.join(format!("{mode}.toml"))).unwrap();
                let mut daemons = Supervisor::new(dir.join(format!("logs-{mode}"))).unwrap();
                let mut cmd = lab.edge.command(seguro);
                cmd.args(["lb", "-c"])
                    .arg(&config)
                    .env("NO_COLOR", "1")
                    .env("RUST_LOG", "info");
                daemons.start(Daemon::Lb, cmd).unwrap();
                wait::until(Duration::from_secs(30), "seguro lb to be ready", || {
                    let log = daemons.log(&Daemon::Lb);
                    if log.contains(" ready") {
                        Ok(Ok(()))
                    } else if !daemons.is_running(&Daemon::Lb) {
                        Ok(Err(format!("seguro lb exited:\n{log}")))
                    } else {
                        Err("not yet")
                    }
                })
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|e| panic!("{e}"));
                Running::Lb(daemons)
            }
            Engine::NftDup => {
                let mac = |ns: &Netns, dev: &str| {
                    let out = ns.exec("cat", &[&format!("/sys/class/net/{dev}/address")]);
                    String::from_utf8_lossy(&out.stdout).trim().to_owned()
                };
                let router = lab.router.as_ref().expect("the lab has a router");
                let next_hops = [
                    (mac(&lab.edge, "er1"), mac(lab.replica(1), "eth0"), "er1"),
                    (mac(&lab.edge, "er2"), mac(lab.replica(2), "eth0"), "er2"),
                    (mac(&lab.edge, "er3"), mac(router, "rt0"), "er3"),
                ];
                // One rule, as TOOLCHAIN.md describes: rewrite, dup, rewrite,
                // dup, rewrite, forward. nft fixes the checksums and keeps
                // the source; it does no classification.
                let mut rule = format!("ip daddr {} udp dport {SHIP_PORT}", ship.ip());
                for (i, ((smac, dmac, dev), to)) in next_hops.iter().zip(&replicas).enumerate() {
                    rule += &format!(
                        " ether saddr set {smac} ether daddr set {dmac} ip daddr set {} udp dport set {}",
                        to.ip(),
                        to.port()
                    );
                    rule += &if i < 2 {
                        format!(" dup to \"{dev}\"")
                    } else {
                        format!(" fwd to \"{dev}\"")
                    };
                }
                nft(
                    &lab.edge,
                    &format!(
                        "table netdev seguro_bench {{\n chain fanout {{\n  type filter hook ingress device \
                         \"{EDGE_IF}\" priority 0;\n  {rule}\n }}\n}}\n"
                    ),
                );
                Running::Nft
            }
        }
    }

    fn pid(&self) -> Option<u32> {
        match self {
            Running::Lb(daemons) => daemons.pid(&Daemon::Lb),
            Running::Nft => None,
        }
    }

    fn stop(self, lab: &EdgeLab) {
        match self {
            Running::Lb(mut daemons) => {
                let status = daemons.stop(&Daemon::Lb, Duration::from_secs(30));
                assert!(
                    status.is_some_and(|s| s.success()),
                    "seguro lb exited with {status:?}"
                );
            }
            Running::Nft => nft(&lab.edge, "delete table netdev seguro_bench"),
        }
    }
}

/// Medians over rounds, per engine, then the ratios.
fn report(title: &str, results: &[Measured]) {
    let of = |e: Engine| -> Vec<&Measured> { results.iter().filter(|m| m.engine == e).collect() };
    let med = |e: Engine, f: &dyn Fn(&Measured) -> f64| {
        median(&of(e).iter().map(|m| f(m)).collect::<Vec<_>>())
    };
    let range = |e: Engine, f: &dyn Fn(&Measured) -> f64| {
        let v: Vec<f64> = of(e).iter().map(|m| f(m)).collect();
        let (lo, hi) = v.iter().fold((f64::INFINITY, 0f64), |(lo, hi), x| {
            (lo.min(*x), hi.max(*x))
        });
        format!("{:.0} ({lo:.0}–{hi:.0})", median(&v))
    };
    println!("### {title}\n");
    let rows: Vec<Vec<String>> = ENGINES
        .iter()
        .filter(|e| !of(**e).is_empty())
        .map(|&e| {
            vec![
                e.name().to_owned(),
                format!("{:.0}", med(e, &|m| m.sent as f64 / m.seconds)),
                range(e, &|m| m.min_pps()),
                format!("{:.2}", med(e, &|m| m.workload_cpus)),
                format!("{:.2}", med(e, &|m| m.machine_cpus)),
                of(e)
                    .first()
                    .and_then(|m| m.process_cpus)
                    .map_or("-".into(), |_| {
                        format!("{:.2}", med(e, &|m| m.process_cpus.unwrap_or(0.0)))
                    }),
                format!("{:.1}", med(e, &|m| m.cpu_us_per_packet())),
                format!("{:.0}", med(e, &|m| m.per_cpu_second())),
            ]
        })
        .collect();
    println!(
        "{}",
        table(
            &[
                "engine",
                "offered pps",
                "delivered pps per replica (slowest; median, range)",
                "CPUs (workload)",
                "CPUs (machine)",
                "CPUs (seguro lb process)",
                "CPU µs per packet",
                "copies per CPU-second",
            ],
            &rows
        )
    );
    let ratio = |a: Engine, b: Engine| {
        vec![
            format!("{} / {}", short(a), short(b)),
            format!(
                "{:.2}x",
                med(a, &|m| m.min_pps()) / med(b, &|m| m.min_pps())
            ),
            format!(
                "{:.2}x",
                med(a, &|m| m.per_cpu_second()) / med(b, &|m| m.per_cpu_second())
            ),
        ]
    };
    println!(
        "{}",
        table(
            &["ratio", "delivered pps", "copies per CPU-second"],
            &[
                (Engine::Xdp, Engine::NftDup),
                (Engine::Xdp, Engine::Userspace)
            ]
            .into_iter()
            .filter(|(a, b)| !of(*a).is_empty() && !of(*b).is_empty())
            .map(|(a, b)| ratio(a, b))
            .collect::<Vec<_>>()
        )
    );
}

/// What fragmentation costs each engine: fragmented over whole datagrams,
/// medians over rounds.
fn fragment_cost(whole: &[Measured], fragmented: &[Measured]) {
    let med = |results: &[Measured], e: Engine, f: &dyn Fn(&Measured) -> f64| {
        let v: Vec<f64> = results.iter().filter(|m| m.engine == e).map(f).collect();
        (!v.is_empty()).then(|| median(&v))
    };
    let rows: Vec<Vec<String>> = [Engine::Xdp, Engine::Userspace]
        .into_iter()
        .filter_map(|e| {
            let pps = med(fragmented, e, &|m| m.min_pps())? / med(whole, e, &|m| m.min_pps())?;
            let cpu = med(fragmented, e, &|m| m.cpu_us_per_packet())?
                / med(whole, e, &|m| m.cpu_us_per_packet())?;
            Some(vec![
                short(e).to_owned(),
                format!("{pps:.2}x"),
                format!("{cpu:.2}x"),
            ])
        })
        .collect();
    println!("### Fragmented / whole fine responses\n");
    println!(
        "{}",
        table(
            &[
                "engine",
                "delivered datagrams/s per replica",
                "CPU µs per datagram"
            ],
            &rows
        )
    );
}

fn short(e: Engine) -> &'static str {
    match e {
        Engine::Xdp => "XDP+TC",
        Engine::XdpGeneric => "generic XDP+TC",
        Engine::NftDup => "nftables dup",
        Engine::Userspace => "userspace relay",
    }
}

/// The XDP program alone, run in the kernel on one frame at a time.
fn test_run_report() {
    const REPEAT: u32 = 2_000_000;
    let ship: SocketAddr = "10.99.0.1:34543".parse().unwrap();
    let peer: SocketAddr = "10.99.0.2:5555".parse().unwrap();
    let mut programs = Programs::load().expect("loading the programs");
    let mut plan = Plan::OFF;
    plan.family = FAMILY_V4;
    plan.ship_addr[0] = u32::from_ne_bytes([10, 99, 0, 1]);
    plan.ship_port = u16::from_ne_bytes(SHIP_PORT.to_be_bytes());
    programs.publish(&plan).unwrap();
    let ames = Packet {
        prelude: Prelude::new(Ship::new(0x1234_5678), Ship::new(0x9abc)),
        body: Body::Ames(vec![0x5a; 80]),
    }
    .to_bytes();
    let cases = [
        (
            "Ames packet for the ship: classified, marked, passed",
            Frame::udp(peer, ship, &ames),
        ),
        (
            "the same behind an 802.1Q tag",
            Frame::udp(peer, ship, &ames).tagged(ETH_P_8021Q, 100),
        ),
        (
            "garbage for the ship: classified, dropped",
            Frame::udp(peer, ship, b"garbage! garbage!"),
        ),
        (
            "UDP for another port: passed",
            Frame::udp(peer, "10.99.0.1:22".parse().unwrap(), &ames),
        ),
    ];
    let rows: Vec<Vec<String>> = cases
        .iter()
        .map(|(what, frame)| {
            let run = programs
                .test_xdp(&frame.bytes(), REPEAT)
                .unwrap_or_else(|e| {
                    panic!(
                        "BPF_PROG_TEST_RUN: {e:?} {:?}",
                        std::io::Error::last_os_error()
                    )
                });
            vec![(*what).to_owned(), format!("{}", run.per_run.as_nanos())]
        })
        .collect();
    println!("XDP program under BPF_PROG_TEST_RUN ({REPEAT} runs each, kernel's mean):\n");
    println!("{}", table(&["frame", "ns per packet"], &rows));
}
