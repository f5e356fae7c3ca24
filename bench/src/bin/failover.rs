//! The whole cluster's benchmark (docs/PERFORMANCE.md, "Failover"), in
//! network namespaces as `make run` builds it: etcd, `seguro lb` (XDP),
//! `seguro gatekeeper`, three replicas (event log node + agent with the
//! reference ship), lease TTL 2 s, optimism `quorum`.
//!
//! 1. **Steady state**: answered packets per second end to end (peer → edge
//!    fan-out → replicas → event log commit → gatekeeper → peer), closed
//!    loop with a window of requests in flight, against a real peer in the
//!    same run: a plain UDP echo on the edge box's public address, the same
//!    probe, the same window, so the ratio is what the cluster costs over
//!    the bare network path. Rounds alternate.
//! 2. **Failover**: `FAILOVER_RUNS` (default 20) times, under a steady load
//!    of 200 packets/s: kill -9 of the leader's agent and event log node;
//!    time from the kill to the peer's first answer to a packet sent after
//!    the kill (the new leader's); packets sent around the failover never
//!    answered, against the edge box's own count of what it delivered; then
//!    the killed replica is restarted and caught up before the next run.
//!
//! Environment: `BENCH_SECONDS` (each steady-state run, default 3),
//! `BENCH_ROUNDS` (default 3), `FAILOVER_RUNS` (default 20), `SEGURO_BIN`,
//! `SEGURO_BENCH_DIR` (keep the cluster's config, data and daemons' logs
//! there, emptied first, to read a slow failover's timeline against the
//! kill times printed; a temporary directory otherwise).

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use seguro_bench::{Latencies, knob, median, ms, table};
use testkit::Daemon;
use testkit::cluster::{ClusterLab, ClusterOptions, first_answer_after};
use testkit::probe::{ProbeConfig, ProbeReport, request_seq};

const WINDOW: u32 = 64;
const LOAD_RATE: u32 = 200;
const ECHO_PORT: u16 = 7777;

fn main() -> anyhow::Result<()> {
    if !testkit::is_root() {
        bail!("needs root: network namespaces, XDP");
    }
    let seconds = knob("BENCH_SECONDS", 3, 1..=60);
    let rounds = knob("BENCH_ROUNDS", 3, 1..=10);
    let runs = knob("FAILOVER_RUNS", 20, 1..=100);

    let options = ClusterOptions {
        // Nothing is purged: each run reads back the events around its kill.
        checkpoint_every: 10_000_000,
        dir: seguro_bench::fresh_dir(None)?,
        ..ClusterOptions::default()
    };
    let mut lab = ClusterLab::new(seguro_bench::seguro_binary()?, &options)
        .context("building the cluster")?;
    lab.start_all().context("starting the cluster")?;
    println!(
        "failover benchmark: 3 replicas, lb xdp, TTL 2 s, optimism quorum, {} CPUs\n",
        seguro_bench::cpus()
    );
    warm_up(&mut lab)?;

    // 1. Steady state against a UDP echo on the same path.
    let stop = Arc::new(AtomicBool::new(false));
    let echo_at = SocketAddr::new(lab.ship().ip(), ECHO_PORT);
    let echo = lab.lab.edge.run(|| UdpSocket::bind(echo_at))?;
    echo.set_read_timeout(Some(Duration::from_millis(50)))?;
    let echo_thread = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, from)) = echo.recv_from(&mut buf) {
                    let _ = echo.send_to(&buf[..n], from);
                }
            }
        })
    };
    let (mut cluster_rates, mut echo_rates) = (Vec::new(), Vec::new());
    let (mut cluster_rtt, mut echo_rtt) = (Latencies::new(), Latencies::new());
    for _ in 0..rounds {
        for (target, rates, rtt) in [
            (lab.ship(), &mut cluster_rates, &mut cluster_rtt),
            (echo_at, &mut echo_rates, &mut echo_rtt),
        ] {
            let r = closed_loop(&lab, target, Duration::from_secs(seconds))?;
            rates.push(r.answers.len() as f64 / seconds as f64);
            for a in &r.answers {
                rtt.record(a.rtt());
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = echo_thread.join();
    let (c, e) = (median(&cluster_rates), median(&echo_rates));
    println!("## Steady state ({rounds} rounds of {seconds} s each, window {WINDOW})\n");
    println!(
        "{}",
        table(
            &["path", "answered/s (median)", "RTT p50", "RTT p99"],
            &[
                vec![
                    "cluster: lb → replicas → log → gatekeeper".into(),
                    format!("{c:.0}"),
                    ms(cluster_rtt.quantile(0.5)),
                    ms(cluster_rtt.quantile(0.99)),
                ],
                vec![
                    "UDP echo on the edge box (real peer)".into(),
                    format!("{e:.0}"),
                    ms(echo_rtt.quantile(0.5)),
                    ms(echo_rtt.quantile(0.99)),
                ],
            ]
        )
    );
    println!("cluster / echo: {:.3}\n", c / e);

    // 2. Failover.
    let mut failover = Latencies::new();
    let mut elected = Latencies::new();
    let mut rows = Vec::new();
    let (mut lost_total, mut sent_total, mut undelivered_total) = (0usize, 0usize, 0i64);
    let mut committed_total = 0usize;
    for run in 1..=runs {
        let r = one_failover(&mut lab)?;
        if let Some(d) = r.first_answer {
            failover.record(d);
        }
        elected.record(r.elected);
        lost_total += r.lost;
        committed_total += r.committed_unanswered;
        sent_total += r.window;
        undelivered_total += r.undelivered;
        println!(
            "run {run}: killed at {:.3} (Unix time), replica {} → {}, elected {}, first answer {}, {} of {} unanswered ({} of them committed), edge delivered all: {}",
            r.killed_unix.as_secs_f64(),
            r.old,
            r.new,
            ms(r.elected),
            r.first_answer.map_or("never".into(), ms),
            r.lost,
            r.window,
            r.committed_unanswered,
            r.undelivered == 0
        );
        rows.push(r);
    }
    println!("\n## Failover ({runs} leader kills under {LOAD_RATE} packets/s)\n");
    println!(
        "{}",
        table(
            &["measure", "p50", "p99", "max"],
            &[
                vec![
                    "kill → first answer from the new leader at the peer".into(),
                    ms(failover.quantile(0.5)),
                    ms(failover.quantile(0.99)),
                    ms(failover.max()),
                ],
                vec![
                    "kill → new leader's agent reports leading".into(),
                    ms(elected.quantile(0.5)),
                    ms(elected.quantile(0.99)),
                    ms(elected.max()),
                ],
            ]
        )
    );
    let never = rows.iter().filter(|r| r.first_answer.is_none()).count();
    println!(
        "packets sent from 1 s before each kill to the end of its run: {sent_total}; unanswered: {lost_total}, \
         of which committed events whose held answer was dropped at the epoch change: {committed_total}, \
         not in the log: {}; packets the edge box failed to count: {undelivered_total}; runs without an answer from a new leader: {never}",
        lost_total - committed_total
    );
    Ok(())
}

/// Waits until the ship answers.
fn warm_up(lab: &mut ClusterLab) -> anyhow::Result<()> {
    let p = lab.probe(50, Duration::from_secs(2))?;
    p.wait(Duration::from_secs(10));
    if p.stop().answers.is_empty() {
        bail!("the ship never answered:\n{}", lab.logs_tail(20));
    }
    Ok(())
}

/// `duration` of closed-loop load on `target`.
fn closed_loop(
    lab: &ClusterLab,
    target: SocketAddr,
    duration: Duration,
) -> anyhow::Result<ProbeReport> {
    let p = lab.probe_with(ProbeConfig {
        window: Some(WINDOW),
        // Closed loop: the window, not the count, sets the pace; it runs
        // for `duration`.
        duration,
        ..ProbeConfig::steady(target, 200_000, duration)
    })?;
    p.wait(Duration::from_secs(2));
    Ok(p.stop())
}

struct Run {
    /// When the leader was killed, to find it in the daemons' logs.
    killed_unix: Duration,
    old: u8,
    new: u8,
    elected: Duration,
    first_answer: Option<Duration>,
    /// Requests sent from 1 s before the kill on, and how many of them were
    /// never answered.
    window: usize,
    lost: usize,
    /// Of the unanswered: those whose packet is a committed event (its
    /// answer, held at the gatekeeper, was dropped at the epoch change).
    committed_unanswered: usize,
    /// Ames packets the probe sent minus those the edge box counted.
    undelivered: i64,
}

fn lb_ames(lab: &ClusterLab) -> f64 {
    lab.metric(&Daemon::Lb, "seguro_lb_packets_total{class=\"ames\"}")
        .unwrap_or(f64::NAN)
}

fn one_failover(lab: &mut ClusterLab) -> anyhow::Result<Run> {
    let ames_before = lb_ames(lab);
    let probe = lab.probe(LOAD_RATE, Duration::from_secs(9))?;
    std::thread::sleep(Duration::from_secs(2));
    let (old, killed) = lab.kill_leader(Duration::from_secs(10))?;
    let killed_unix = (SystemTime::now() - killed.elapsed())
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let Some(new) = lab.wait_new_leader(old, killed + Duration::from_secs(30), || false) else {
        bail!(
            "no new leader 30 s after killing replica {old}:\n{}",
            lab.logs_tail(20)
        );
    };
    let elected = killed.elapsed();
    probe.wait(Duration::from_secs(5));
    let report = probe.stop();
    // The XDP counters are exported every half second.
    std::thread::sleep(Duration::from_millis(1200));
    let ames_after = lb_ames(lab);
    let first_answer = first_answer_after(&report, killed);
    let (window, lost) = report.unanswered_between(killed - Duration::from_secs(1), Instant::now());
    let undelivered = report.sent.len() as i64 - (ames_after - ames_before) as i64;
    let from_event = report.answers.iter().map(|a| a.num).min().unwrap_or(1);
    let committed = committed_requests(lab, new, from_event)?;
    let committed_unanswered = lost.iter().filter(|s| committed.contains(s)).count();
    let lost = lost.len();
    lab.start_replica(old)?;
    lab.wait_caught_up(old, Duration::from_secs(60))?;
    Ok(Run {
        killed_unix,
        old,
        new,
        elected,
        first_answer,
        window,
        lost,
        committed_unanswered,
        undelivered,
    })
}

/// The probe requests in replica `i`'s committed log from event `from` on,
/// read from the edge namespace.
fn committed_requests(lab: &ClusterLab, i: u8, from: u64) -> anyhow::Result<HashSet<u64>> {
    let seqs = lab
        .read_log(i, eventlog::EventNum(from))?
        .iter()
        .filter_map(|e| {
            replica::frame::decode(&e.data)
                .and_then(|f| replica::PacketEvent::decode(&f.data).ok())
                .and_then(|p| request_seq(&p.packet))
        })
        .collect();
    Ok(seqs)
}
