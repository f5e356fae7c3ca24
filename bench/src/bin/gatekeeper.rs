//! The gatekeeper's benchmark (docs/PERFORMANCE.md, "Gatekeeper"):
//!
//! 1. **Throughput**: effects forwarded per second on loopback, by the
//!    gatekeeper (optimism `leader`, real etcd, every envelope opened, MAC
//!    checked, leader/epoch/replay checked) and by a plain UDP relay with
//!    the same recvmmsg/sendmmsg batching, alternating in the same run, fed
//!    by the same sender. Reported as the ratio gatekeeper / relay. The
//!    gatekeeper sends from a raw socket (IP and UDP headers and checksum
//!    written per effect, source `ship.public`); the relay from a bound UDP
//!    socket.
//! 2. **Failover**: `kill -9` of a campaigning leader process, at a random
//!    moment, until an observer (the gatekeeper's own `Election::observe`)
//!    sees the new epoch, with a standby process campaigning; TTL 2 s.
//!
//! `gatekeeper campaign ENDPOINT ROOT ID TLS_DIR` is the process the failover part
//! starts and kills: it campaigns, prints `leader EPOCH`, and waits.
//!
//! Environment: `BENCH_SECONDS` (each throughput run, default 3),
//! `BENCH_ROUNDS` (runs per size and forwarder, default 5),
//! `FAILOVER_RUNS` (default 20).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use anyhow::{Context, bail};
use config::{Identity, Key, Optimism, ReplicaId, Role};
use eventlog::EventNum;
use gatekeeper::{Gatekeeper, Settings, Stats};
use leadership::{Election, Keyring, Sealer, election};
use seguro_bench::{Latencies, knob, median, ms};
use tokio::sync::oneshot;
use tokio::time::{Instant, sleep, timeout};
use udp::{BATCH, BatchSocket, RecvBatch, SocketOptions};

const TTL: Duration = Duration::from_secs(2);
const CLUSTER: &str = "bench";
const ROOT: &str = "/seguro/bench";
/// Effect sizes: a small Ames ack and a full-size Ames packet.
const PAYLOADS: [usize; 2] = [100, 1000];
/// At most this many envelopes per run, whatever the time limit.
const MAX_PER_RUN: u64 = 20_000_000;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("campaign") {
        return campaign_child(&args[2..]);
    }
    let seconds = knob("BENCH_SECONDS", 3, 1..=60);
    let rounds = knob("BENCH_ROUNDS", 5, 1..=10);
    let failovers = knob("FAILOVER_RUNS", 20, 1..=100);

    // etcd as Seguro runs it: TLS, client certificates, a role per identity.
    let pki = testkit::Pki::temporary(CLUSTER)?;
    let ids: Vec<ReplicaId> = (1..=2).filter_map(ReplicaId::new).collect();
    let etcd =
        testkit::Etcd::start_tls(&pki, ROOT, &ids).context("starting etcd (run `make deps`)")?;
    let place = EtcdAt {
        endpoint: etcd.endpoint(),
        tls: pki.dir().to_owned(),
    };
    println!(
        "gatekeeper benchmark: etcd {} at {} (mutual TLS), {} CPUs",
        testkit::Etcd::binary().display(),
        place.endpoint,
        thread::available_parallelism().map_or(0, |n| n.get())
    );
    throughput(&place, Duration::from_secs(seconds), rounds)?;
    failover(&place, failovers)?;
    Ok(())
}

/// The benchmark's etcd, and the directory of the certificates each role
/// reaches it with.
#[derive(Clone)]
struct EtcdAt {
    endpoint: String,
    tls: PathBuf,
}

impl EtcdAt {
    /// A client of etcd as `role`.
    async fn client(&self, role: Role) -> anyhow::Result<election::Client> {
        let files = trust::Files {
            ca: self.tls.join("ca.crt"),
            cert: self.tls.join(format!("{role}.crt")),
            key: self.tls.join(format!("{role}.key")),
        };
        let credentials = trust::Credentials::load(Identity::new(CLUSTER, role), files)?;
        Ok(election::connect(std::slice::from_ref(&self.endpoint), &credentials).await?)
    }
}

/// A forwarder (gatekeeper or relay) running on its own thread and runtime.
struct Forwarder {
    listen: SocketAddr,
    /// The thread that forwards (the gatekeeper's is its own).
    thread_name: &'static str,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<anyhow::Result<()>>>,
}

impl Forwarder {
    /// CPU time (user + system) the forwarding thread has used so far: on a
    /// machine whose cores the sender and the peer share, CPU per effect
    /// says what the forwarder would do with a core of its own.
    fn cpu_time(&self) -> anyhow::Result<Duration> {
        thread_cpu_time(self.thread_name)
    }

    fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.stop.take().expect("stopped once").send(());
        self.thread
            .take()
            .expect("joined once")
            .join()
            .map_err(|_| anyhow::anyhow!("forwarder thread panicked"))?
    }
}

fn current_thread_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// The gatekeeper, in this process: `run` on a thread of its own (the etcd
/// side), which starts the forwarding thread `gk-forward`.
fn start_gatekeeper(etcd: &EtcdAt, keys: Keyring) -> anyhow::Result<(Forwarder, Arc<Stats>)> {
    let etcd = etcd.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let thread =
        thread::Builder::new()
            .name("gk-etcd".into())
            .spawn(move || -> anyhow::Result<()> {
                current_thread_runtime()?.block_on(async move {
                    let settings = Settings {
                        root: ROOT.into(),
                        listen: "127.0.0.1:0".parse()?,
                        // Written in the effects' headers by its raw
                        // socket: nothing binds it.
                        public: "127.0.0.2:34543".parse()?,
                        keys,
                        optimism: Optimism::Leader,
                        hold_limit: 65536,
                        hold_timeout: Duration::from_secs(10),
                        stateless_rate: 1000,
                        lease_ttl: TTL,
                        name: "bench".into(),
                        socket: SocketOptions::default(),
                    };
                    let client = etcd.client(Role::Edge).await?;
                    let gk = Gatekeeper::bind(settings)?;
                    ready_tx.send((gk.listen_addr(), gk.stats()))?;
                    gk.run(client, None, async move {
                        let _ = stopped.await;
                    })
                    .await?;
                    Ok(())
                })
            })?;
    let (listen, stats) = ready_rx.recv().context("the gatekeeper did not start")?;
    Ok((
        Forwarder {
            listen,
            thread_name: "gk-forward",
            stop: Some(stop),
            thread: Some(thread),
        },
        stats,
    ))
}

/// CPU time of this process's thread named `name` (there must be one),
/// from the kernel's per-thread CPU clock.
fn thread_cpu_time(name: &str) -> anyhow::Result<Duration> {
    let mut found = None;
    for entry in std::fs::read_dir("/proc/self/task")? {
        let path = entry?.path();
        if std::fs::read_to_string(path.join("comm"))?.trim_end() == name {
            let tid: libc::pid_t = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse().ok())
                .context("a /proc task name that is not a thread id")?;
            found = Some(tid);
        }
    }
    let tid = found.with_context(|| format!("no thread named {name}"))?;
    // The kernel's clock id for a thread's CPU time (what glibc's
    // pthread_getcpuclockid computes): CPUCLOCK_PERTHREAD | CPUCLOCK_SCHED.
    let clock: libc::clockid_t = ((!tid) << 3) | 4 | 2;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a live local the call writes into.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        bail!(
            "clock_gettime on thread {tid}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// The peer: a plain relay with the gatekeeper's batching (recvmmsg of up to
/// [`BATCH`], up to 16 batches per turn, sendmmsg), forwarding every
/// datagram as is to `to`.
fn start_relay(to: SocketAddr) -> anyhow::Result<Forwarder> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop, mut stopped) = oneshot::channel::<()>();
    let thread =
        thread::Builder::new()
            .name("relay".into())
            .spawn(move || -> anyhow::Result<()> {
                current_thread_runtime()?.block_on(async move {
                    let opts = SocketOptions::default();
                    let rx = BatchSocket::bind("127.0.0.1:0".parse()?, opts)?;
                    let tx = BatchSocket::bind("127.0.0.5:0".parse()?, opts)?;
                    ready_tx.send(rx.local_addr()?)?;
                    let mut batch = RecvBatch::new().without_sources();
                    loop {
                        tokio::select! {
                            _ = &mut stopped => return Ok(()),
                            r = rx.recv(&mut batch) => {
                                r?;
                                for turn in 0..16 {
                                    if turn > 0 && rx.try_recv(&mut batch)? == 0 {
                                        break;
                                    }
                                    let out: Vec<(SocketAddr, &[u8])> =
                                        batch.iter().map(|d| (to, d.data)).collect();
                                    tx.send(&out).await?;
                                }
                            }
                        }
                    }
                })
            })?;
    let listen = ready_rx.recv().context("the relay did not start")?;
    Ok(Forwarder {
        listen,
        thread_name: "relay",
        stop: Some(stop),
        thread: Some(thread),
    })
}

/// The peer: counts what arrives on a socket of its own (on 127.0.0.3)
/// until the sender is done and nothing has come for 300 ms. Returns its
/// address, and at the end (datagrams, first to last arrival).
type Counted = thread::JoinHandle<anyhow::Result<(u64, Duration)>>;

fn start_peer(sender_done: Arc<AtomicBool>) -> anyhow::Result<(SocketAddr, Counted)> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let handle = thread::Builder::new().name("peer".into()).spawn(move || {
        current_thread_runtime()?.block_on(async move {
            let socket = BatchSocket::bind("127.0.0.3:0".parse()?, SocketOptions::default())?;
            ready_tx.send(socket.local_addr()?)?;
            let mut batch = RecvBatch::new().without_sources();
            let (mut count, mut first, mut last) = (0u64, None, Instant::now());
            let deadline = Instant::now() + Duration::from_secs(120);
            while Instant::now() < deadline {
                match timeout(Duration::from_millis(300), socket.recv(&mut batch)).await {
                    Ok(r) => {
                        count += r? as u64;
                        last = Instant::now();
                        first.get_or_insert(last);
                    }
                    Err(_) if sender_done.load(Ordering::Acquire) => break,
                    Err(_) => {}
                }
            }
            Ok((count, first.map_or(Duration::ZERO, |f| last - f)))
        })
    })?;
    let addr = ready_rx.recv().context("the peer did not start")?;
    Ok((addr, handle))
}

/// Seals and sends envelopes to `to` in batches of [`BATCH`] for `length`
/// (or [`MAX_PER_RUN`] envelopes). Returns the sealer (its sequence goes
/// on) and how many it sent.
fn run_sender(
    to: SocketAddr,
    lane: SocketAddr,
    mut sealer: Sealer,
    payload_len: usize,
    length: Duration,
) -> anyhow::Result<(Sealer, u64)> {
    current_thread_runtime()?.block_on(async move {
        let socket = BatchSocket::bind("127.0.0.1:0".parse()?, SocketOptions::default())?;
        let payload = vec![0x5a; payload_len];
        let mut bufs: Vec<Vec<u8>> = vec![Vec::new(); BATCH];
        let mut event = 0u64;
        let mut sent = 0u64;
        let end = Instant::now() + length;
        while Instant::now() < end && sent < MAX_PER_RUN {
            for buf in &mut bufs {
                event += 1;
                sealer.seal_into(EventNum(event), lane.into(), &payload, buf)?;
            }
            let out: Vec<(SocketAddr, &[u8])> = bufs.iter().map(|b| (to, b.as_slice())).collect();
            sent += socket.send(&out).await?.sent as u64;
        }
        Ok((sealer, sent))
    })
}

/// One timed run: the sender floods `to` with envelopes whose lane is the
/// peer; returns (sealer, forwarded/s at the peer, sent, received).
fn timed_run(
    to: SocketAddr,
    peer: (SocketAddr, Counted),
    done: Arc<AtomicBool>,
    sealer: Sealer,
    payload_len: usize,
    length: Duration,
) -> anyhow::Result<(Sealer, f64, u64, u64)> {
    let (lane, counted) = peer;
    let (sealer, sent) = run_sender(to, lane, sealer, payload_len, length)?;
    done.store(true, Ordering::Release);
    let (received, span) = counted
        .join()
        .map_err(|_| anyhow::anyhow!("peer thread panicked"))??;
    let rate = if span.is_zero() {
        0.0
    } else {
        received as f64 / span.as_secs_f64()
    };
    Ok((sealer, rate, sent, received))
}

fn throughput(etcd: &EtcdAt, length: Duration, rounds: u64) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let key = Key::generate()?;
    let id = ReplicaId::new(1).expect("nonzero");
    let mut keys = Keyring::new();
    keys.insert(id, key.clone());
    let (gatekeeper, stats) = rt.block_on(async {
        let (gk, stats) = start_gatekeeper(etcd, keys)?;
        let client = etcd.client(Role::Replica(id)).await?;
        let leadership = Election::new(client, ROOT, TTL).campaign(id).await;
        anyhow::Ok(((gk, leadership), stats))
    })?;
    let (gatekeeper, leadership) = gatekeeper;
    let epoch = leadership.epoch();
    // Active, confirmed, following replica 1.
    testkit::wait::every(
        Duration::from_millis(20),
        Duration::from_secs(20),
        "the gatekeeper to be active",
        || {
            let s = stats.snapshot();
            if s.active && !s.fail_closed && s.epoch == epoch.get() && s.leader == 1 {
                Ok(())
            } else {
                Err(format!("{s:?}"))
            }
        },
    )?;
    let mut sealer = Sealer::new(id, epoch, key);

    println!(
        "\n## Throughput: {rounds} alternating runs of {}s per forwarder and payload size",
        length.as_secs()
    );
    println!(
        "| payload | forwarder | run | sent/s | forwarded/s | delivered | forwarder CPU/effect |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut summary = Vec::new();
    for &size in &PAYLOADS {
        let (mut gk_rates, mut relay_rates) = (Vec::new(), Vec::new());
        let (mut gk_cpu, mut relay_cpu) = (Vec::new(), Vec::new());
        for round in 1..=rounds {
            for which in ["gatekeeper", "relay"] {
                let done = Arc::new(AtomicBool::new(false));
                let peer = start_peer(done.clone())?;
                // The relay forwards everything to one peer: one relay per run.
                let relay = match which {
                    "relay" => Some(start_relay(peer.0)?),
                    _ => None,
                };
                let forwarder = relay.as_ref().unwrap_or(&gatekeeper);
                let cpu_before = forwarder.cpu_time()?;
                let (s, rate, sent, received) =
                    timed_run(forwarder.listen, peer, done, sealer, size, length)?;
                let cpu = forwarder.cpu_time()?.saturating_sub(cpu_before);
                let cpu_per_effect = cpu.as_secs_f64() * 1e6 / received.max(1) as f64;
                sealer = s;
                if let Some(relay) = relay {
                    relay.stop()?;
                }
                println!(
                    "| {size} B | {which} | {round} | {:.0} | {rate:.0} | {:.1}% | {cpu_per_effect:.2} µs |",
                    sent as f64 / length.as_secs_f64(),
                    100.0 * received as f64 / sent.max(1) as f64
                );
                if which == "gatekeeper" {
                    gk_rates.push(rate);
                    gk_cpu.push(cpu_per_effect);
                } else {
                    relay_rates.push(rate);
                    relay_cpu.push(cpu_per_effect);
                }
            }
        }
        summary.push((
            size,
            median(&gk_rates),
            median(&relay_rates),
            median(&gk_cpu),
            median(&relay_cpu),
        ));
    }
    let s = stats.snapshot();
    println!(
        "\ngatekeeper totals: received {} in {} batches (mean batch {:.1}), forwarded {}, dropped {}{}",
        s.received,
        s.batches,
        s.received as f64 / s.batches.max(1) as f64,
        s.forwarded,
        s.dropped_total(),
        gatekeeper::DropReason::ALL
            .iter()
            .filter(|r| s.dropped(**r) > 0)
            .map(|r| format!(", {} {}", s.dropped(*r), r.as_str()))
            .collect::<String>(),
    );
    println!(
        "\n| payload | gatekeeper forwarded/s | relay forwarded/s | ratio | gatekeeper CPU/effect | relay CPU/effect | per-core ratio |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (size, gk, relay, gk_cpu, relay_cpu) in summary {
        println!(
            "| {size} B | {gk:.0} | {relay:.0} | {:.2}x | {gk_cpu:.2} µs | {relay_cpu:.2} µs | {:.2}x |",
            gk / relay,
            relay_cpu / gk_cpu
        );
    }
    gatekeeper.stop()?;
    rt.block_on(async { leadership.resign().await })?;
    Ok(())
}

/// A campaigning process, and the epoch it printed when it won.
struct Campaigner {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Campaigner {
    fn spawn(etcd: &EtcdAt, id: u32) -> anyhow::Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["campaign", &etcd.endpoint, ROOT, &id.to_string()])
            .arg(&etcd.tls)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()?;
        let lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        Ok(Self { child, lines })
    }

    /// Blocks until the process prints that it leads.
    fn wait_leader(&mut self) -> anyhow::Result<u64> {
        let line = self
            .lines
            .next()
            .context("campaigner exited before leading")??;
        line.strip_prefix("leader ")
            .and_then(|e| e.parse().ok())
            .with_context(|| format!("unexpected line from the campaigner: {line}"))
    }
}

impl Drop for Campaigner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn failover(etcd: &EtcdAt, runs: u64) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let client = rt.block_on(etcd.client(Role::Edge))?;
    let mut view = {
        let _g = rt.enter();
        Election::new(client.clone(), ROOT, TTL).observe()
    };
    let mut latencies = Latencies::new();
    let mut leader = Campaigner::spawn(etcd, 1)?;
    let mut epoch = leader.wait_leader()?;
    println!(
        "\n## Failover: kill -9 the leader's process until an observer sees the new epoch (TTL {}s, {runs} runs)",
        TTL.as_secs()
    );
    for run in 1..=runs {
        let mut standby = Campaigner::spawn(etcd, if run % 2 == 1 { 2 } else { 1 })?;
        // The standby is campaigning once it holds a lease of its own.
        rt.block_on(async {
            let c = client.clone();
            testkit::wait::until_async(Duration::from_secs(20), "the standby's lease", || {
                let mut c = c.clone();
                async move {
                    c.leases()
                        .await
                        .map(|l| l.leases().len() >= 2)
                        .unwrap_or(false)
                }
            })
            .await
            .context("the standby never took a lease")?;
            // ...and has sent its transaction and is watching the key.
            sleep(Duration::from_millis(200)).await;
            anyhow::Ok(())
        })?;
        rt.block_on(async {
            view.wait_for(|v| v.term.is_some_and(|t| t.epoch.get() == epoch))
                .await
                .map(|_| ())
        })?;

        // Kill at a random point of the leader's keep-alive cycle (TTL/3)
        // and of etcd's lease-expiry check (every 500 ms), not in step with
        // the previous run.
        thread::sleep(jitter(Duration::from_secs(1)));
        let killed = Instant::now();
        leader.child.kill()?;
        leader.child.wait()?;
        let seen = rt.block_on(async {
            timeout(
                TTL * 5,
                view.wait_for(|v| v.term.is_some_and(|t| t.epoch.get() > epoch)),
            )
            .await
            .map(|r| r.map(|v| v.term.expect("checked").epoch.get()))
        });
        let new_epoch = match seen {
            Ok(Ok(e)) => e,
            _ => bail!("run {run}: no new epoch within {:?}", TTL * 5),
        };
        let took = killed.elapsed();
        latencies.record(took);
        let printed = standby.wait_leader()?;
        if printed != new_epoch {
            bail!("run {run}: the observer saw epoch {new_epoch}, the new leader has {printed}");
        }
        println!("run {run:2}: epoch {epoch} -> {new_epoch} in {}", ms(took));
        epoch = new_epoch;
        leader = standby;
    }
    println!(
        "\nfailover, kill -9 to the new epoch observed: {latencies}\n\
         p50 {} / p99 {} (target: p99 < 3 s)",
        ms(latencies.quantile(0.5)),
        ms(latencies.quantile(0.99))
    );
    drop(leader);
    Ok(())
}

/// A delay uniform in [0, `max`), from the clock's nanoseconds and a
/// per-process random hash key (no generator needed for this).
fn jitter(max: Duration) -> Duration {
    use std::hash::{BuildHasher, RandomState};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let r = RandomState::new().hash_one(nanos);
    Duration::from_nanos(r % max.as_nanos() as u64)
}

/// The child process of the failover benchmark.
fn campaign_child(args: &[String]) -> anyhow::Result<()> {
    let [endpoint, root, id, tls] = args else {
        bail!("usage: gatekeeper campaign ENDPOINT ROOT ID TLS_DIR");
    };
    let id: ReplicaId = id.parse().map_err(anyhow::Error::msg)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let etcd = EtcdAt {
            endpoint: endpoint.clone(),
            tls: tls.into(),
        };
        let client = etcd.client(Role::Replica(id)).await?;
        let leadership = Election::new(client, root, TTL).campaign(id).await;
        println!("leader {}", leadership.epoch());
        use std::io::Write;
        std::io::stdout().flush()?;
        let reason = leadership.lost().await;
        bail!("lost the leadership: {reason}")
    })
}
