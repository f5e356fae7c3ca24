//! `make bench-eventlog`: the replicated event log (3 real `seguro eventlog`
//! processes, real fdatasync) against etcd 3.5 and the disk itself, in one
//! run, with 1 KiB events.
//!
//! - the disk: threads that each write 1 KiB and fdatasync, at each
//!   concurrency: what the disk allows when every event pays a sync;
//! - etcd: concurrent etcd-client puts of 1 KiB values (etcd fsyncs its WAL
//!   before answering, so a put is as durable as an append);
//! - Seguro: one writer keeping N events outstanding through an `Appender`
//!   whose batches hold at most 1, 16 or 256 events;
//! - both at a steady 5,000 events/s, for commit latency under load.
//!
//! Results are printed as Markdown (docs/PERFORMANCE.md keeps a copy).
//! `SEGURO_BENCH_ONLY=disk,etcd,seguro,steady` (any of them) runs only those
//! sections.
//! Every load loop is bounded in time: `SEGURO_BENCH_SECS` (default 4) per
//! measurement, `SEGURO_BENCH_STEADY_SECS` (default 10) for the steady
//! rate, whose p99 needs more samples than a throughput figure does.
//! Each section starts on a settled file system (`settle`), and etcd's data
//! is removed only at the end, so no section pays for the previous one's
//! writeback or deletions. The node data goes under `SEGURO_BENCH_DIR` (default
//! target/bench-eventlog), which must be on a real disk.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use config::ReplicaId;
use eventlog::{Client, ClientOptions, Epoch, EventNum, Role};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use seguro_bench::{Latencies, knob, ms};
use std::net::SocketAddr;
use telemetry::Exposition;
use testkit::{Daemon, Lab, wait};
use trust::Credentials;

const EVENT_BYTES: usize = 1024;
const CONCURRENCY: [usize; 4] = [1, 16, 256, 4096];
const BATCHES: [usize; 3] = [1, 16, 256];
const STEADY_RATE: u64 = 5_000;

struct Cell {
    events: u64,
    elapsed: Duration,
    lat: Latencies,
    errors: u64,
}

impl Cell {
    fn new() -> Cell {
        Cell {
            events: 0,
            elapsed: Duration::ZERO,
            lat: Latencies::new(),
            errors: 0,
        }
    }

    /// One operation's outcome: its latency, or an error (the first one
    /// is printed).
    fn record<E: std::fmt::Display>(&mut self, outcome: Result<Duration, E>) {
        match outcome {
            Ok(d) => {
                self.lat.record(d);
                self.events += 1;
            }
            Err(e) => {
                if self.errors == 0 {
                    eprintln!("failed: {e}");
                }
                self.errors += 1;
            }
        }
    }

    fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
}

fn secs() -> Duration {
    let s = std::env::var("SEGURO_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite())
        .unwrap_or(4.0)
        // Bounded whatever is set, as every load loop is.
        .clamp(0.1, 60.0);
    Duration::from_secs_f64(s)
}

/// Flushes the file system holding `dir` and waits a moment, so that a
/// section's timings do not include journal commits, writeback or discards
/// left by the section before it (the disk phase's and etcd's files).
fn settle(dir: &Path) -> anyhow::Result<()> {
    let f = std::fs::File::open(dir).with_context(|| format!("cannot open {}", dir.display()))?;
    // SAFETY: syncfs(2) on a descriptor we own and keep open for the call.
    if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&f)) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("syncfs {}", dir.display()));
    }
    std::thread::sleep(Duration::from_secs(1));
    Ok(())
}

/// The file system under `path`, by name.
fn fs_type(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: statfs writes into a zeroed struct we own; the path is a
    // valid C string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return "unknown".into();
    }
    match st.f_type as i64 {
        0xEF53 => "ext4".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x0102_1994 => "tmpfs".into(),
        0x794C_7630 => "overlayfs".into(),
        other => format!("0x{other:x}"),
    }
}

/// Threads that each append 1 KiB to one file and fdatasync, for `dur`:
/// syncs per second. Appending (the file grows, as a log does) makes every
/// fdatasync commit the new size too; concurrent ones share a journal
/// commit, which is the disk's own group commit.
fn raw_fdatasync(dir: &Path, threads: usize, dur: Duration) -> anyhow::Result<Cell> {
    use std::io::Write;
    let path = dir.join("fdatasync.bin");
    let _ = std::fs::remove_file(&path);
    let file = Arc::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (file, stop, count) = (file.clone(), stop.clone(), count.clone());
            std::thread::spawn(move || -> std::io::Result<Latencies> {
                let buf = vec![t as u8; EVENT_BYTES];
                let mut lat = Latencies::new();
                while !stop.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    (&*file).write_all(&buf)?;
                    file.sync_data()?;
                    lat.record(t0.elapsed());
                    count.fetch_add(1, Ordering::Relaxed);
                }
                Ok(lat)
            })
        })
        .collect();
    std::thread::sleep(dur);
    stop.store(true, Ordering::Relaxed);
    let mut lat = Latencies::new();
    for h in handles {
        lat.merge(&h.join().expect("fdatasync thread")?);
    }
    let elapsed = started.elapsed();
    std::fs::remove_file(&path)?;
    Ok(Cell {
        events: count.load(Ordering::Relaxed),
        elapsed,
        lat,
        errors: 0,
    })
}

/// `window` concurrent etcd-client puts of 1 KiB, for `dur`.
async fn etcd_cell(endpoint: &str, window: usize, dur: Duration) -> anyhow::Result<Cell> {
    let client = etcd_client::Client::connect([endpoint], None).await?;
    let value = vec![7u8; EVENT_BYTES];
    let started = Instant::now();
    let deadline = started + dur;
    let tasks: Vec<_> = (0..window)
        .map(|w| {
            let mut kv = client.kv_client();
            let value = value.clone();
            tokio::spawn(async move {
                let mut lat = Latencies::new();
                let (mut n, mut errors) = (0u64, 0u64);
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    match kv
                        .put(format!("bench/{w}/{}", n % 1024), value.clone(), None)
                        .await
                    {
                        Ok(_) => {
                            lat.record(t0.elapsed());
                            n += 1;
                        }
                        Err(_) => errors += 1,
                    }
                }
                (n, errors, lat)
            })
        })
        .collect();
    let mut cell = Cell::new();
    for t in tasks {
        let (n, e, lat) = t.await?;
        cell.events += n;
        cell.errors += e;
        cell.lat.merge(&lat);
    }
    cell.elapsed = started.elapsed();
    Ok(cell)
}

/// Puts at a steady `rate` per second for `dur`.
async fn etcd_steady(endpoint: &str, rate: u64, dur: Duration) -> anyhow::Result<Cell> {
    let client = etcd_client::Client::connect([endpoint], None).await?;
    let value = vec![7u8; EVENT_BYTES];
    let mut n = 0u64;
    Ok(paced(rate, dur, || {
        let mut kv = client.kv_client();
        let (key, value) = (format!("steady/{}", n % 4096), value.clone());
        n += 1;
        async move { kv.put(key, value, None).await.map(drop) }
    })
    .await)
}

/// Starts `rate` operations a second (a few every millisecond) for `dur`,
/// then waits for the last: each one's latency from its start to its
/// answer.
async fn paced<F, E>(rate: u64, dur: Duration, mut start: impl FnMut() -> F) -> Cell
where
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let started = Instant::now();
    let mut running = FuturesUnordered::new();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let per_tick = rate / 1000;
    let mut cell = Cell::new();
    while started.elapsed() < dur {
        tokio::select! {
            _ = tick.tick() => {
                for _ in 0..per_tick {
                    let t0 = Instant::now();
                    let op = start();
                    running.push(async move { op.await.map(|()| t0.elapsed()) });
                }
            }
            Some(r) = running.next() => cell.record(r),
        }
    }
    while let Some(r) = running.next().await {
        cell.record(r);
    }
    cell.elapsed = started.elapsed();
    cell
}

fn seguro_client(
    base: &ClientOptions,
    nodes: &[(ReplicaId, SocketAddr)],
    credentials: &Credentials,
    batch: usize,
    window: usize,
) -> Client {
    let mut opts = base.clone();
    opts.batch.max_events = batch;
    opts.max_in_flight = window.max(1);
    Client::with_options(nodes.to_vec(), credentials.clone(), opts)
}

/// One writer keeping `window` events outstanding, for `dur`.
async fn seguro_cell(
    client: &Client,
    epoch: Epoch,
    next: &mut u64,
    window: usize,
    dur: Duration,
) -> Cell {
    let appender = client.appender(epoch, EventNum(*next));
    let data = Bytes::from(vec![5u8; EVENT_BYTES]);
    let started = Instant::now();
    let deadline = started + dur;
    let mut running = FuturesUnordered::new();
    let mut cell = Cell::new();
    loop {
        if Instant::now() < deadline && running.len() < window && appender.failure().is_none() {
            let n = appender.next();
            let fut = appender.append(n, n.get() as u32, data.clone());
            let t0 = Instant::now();
            running.push(async move { fut.await.map(|_| t0.elapsed()) });
            continue;
        }
        match running.next().await {
            Some(r) => cell.record(r),
            None => break,
        }
    }
    cell.elapsed = started.elapsed();
    if appender.failure().is_some() {
        *next = appender.recover().await.map_or(*next, |l| l.get() + 1);
    } else {
        *next = appender.next().get();
    }
    cell
}

/// A steady `rate` events per second for `dur`, with the default batching.
async fn seguro_steady(
    client: &Client,
    epoch: Epoch,
    next: &mut u64,
    rate: u64,
    dur: Duration,
) -> Cell {
    let appender = client.appender(epoch, EventNum(*next));
    let data = Bytes::from(vec![6u8; EVENT_BYTES]);
    let cell = paced(rate, dur, || {
        let append = appender.append(appender.next(), 0, data.clone());
        async move { append.await.map(drop) }
    })
    .await;
    *next = appender.next().get();
    cell
}

fn row(label: &str, c: &Cell) -> String {
    format!(
        "| {label} | {:.0} | {} | {} |{}",
        c.rate(),
        ms(c.lat.quantile(0.5)),
        ms(c.lat.quantile(0.99)),
        if c.errors > 0 {
            format!(" {} errors", c.errors)
        } else {
            String::new()
        }
    )
}

/// `addr`'s metrics (none if it does not answer).
async fn scrape(addr: std::net::SocketAddr) -> Exposition {
    telemetry::scrape(addr, Duration::from_secs(2))
        .await
        .unwrap_or_default()
}

/// Every replica reports a checkpoint of the last event written, as the
/// agents would: the log is truncated behind it, and memory and disk stay
/// bounded across the run.
async fn checkpoint(client: &Client, next: u64) {
    for id in 1..=3 {
        let r = config::ReplicaId::new(id).expect("nonzero");
        if let Err(e) = client.set_watermark(r, EventNum(next - 1)).await {
            eprintln!("watermark of replica {id}: {e}");
        }
    }
    // Let the nodes snapshot and purge before the next measurement.
    tokio::time::sleep(Duration::from_secs(1)).await;
}

async fn wait_leader(client: &Client) -> anyhow::Result<()> {
    wait::until_async(Duration::from_secs(30), "an event log leader", || async {
        let nodes = client.cluster_status().await;
        let up = nodes.iter().filter(|(_, r)| r.is_ok()).count();
        up == 3
            && nodes
                .iter()
                .any(|(_, r)| r.as_ref().is_ok_and(|s| s.role == Role::Leader))
    })
    .await
    .context("the event log cluster did not elect a leader")
}

fn main() -> anyhow::Result<()> {
    let dur = secs();
    let steady_dur = Duration::from_secs(knob("SEGURO_BENCH_STEADY_SECS", 10, 1..=60));
    let root = seguro_bench::fresh_dir(Some("target/bench-eventlog"))?
        .expect("a default directory")
        .canonicalize()?;
    let fs = fs_type(&root);
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("# Event log benchmark\n");
    println!(
        "{cpus} CPUs; data in {} ({fs}); {EVENT_BYTES}-byte events; {:.0} s per measurement\n",
        root.display(),
        dur.as_secs_f64()
    );
    println!(
        "The steady-rate section runs {} s; each section starts after a syncfs of the data's \
         file system.\n",
        steady_dur.as_secs()
    );
    if fs == "tmpfs" {
        eprintln!(
            "warning: {} is a tmpfs: fdatasync costs nothing there",
            root.display()
        );
    }

    let only: Vec<String> = std::env::var("SEGURO_BENCH_ONLY")
        .map(|v| v.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    let runs = |section: &str| only.is_empty() || only.iter().any(|o| o == section);

    let mut disk = Vec::new();
    if runs("disk") {
        println!("## The disk: append 1 KiB + fdatasync per event\n");
        println!("| threads | syncs/s | p50 | p99 |");
        println!("|---|---|---|---|");
        for c in CONCURRENCY {
            // More threads than this measure the scheduler, not the disk.
            let threads = c.min(256);
            let cell = raw_fdatasync(&root, threads, dur.min(Duration::from_secs(2)))?;
            let label = if threads < c {
                format!("{threads} (for {c})")
            } else {
                threads.to_string()
            };
            println!("{}", row(&label, &cell));
            disk.push(cell.rate());
        }
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut etcd_rates = Vec::new();
        let mut etcd_steady_cell = None;
        // Stopped after its sections, but its data stays until the end.
        let mut _etcd_data = None;
        if runs("etcd") || runs("steady") {
            settle(&root)?;
            let mut etcd = testkit::Etcd::start().context("cannot start etcd (run `make deps`)")?;
            let endpoint = etcd.endpoint();
            if runs("etcd") {
                println!("\n## etcd 3.5 (1 member, WAL fdatasync): concurrent puts\n");
                println!("| concurrent puts | puts/s | p50 | p99 |");
                println!("|---|---|---|---|");
                for c in CONCURRENCY {
                    let cell = etcd_cell(&endpoint, c, dur).await?;
                    println!("{}", row(&c.to_string(), &cell));
                    etcd_rates.push(cell.rate());
                }
            }
            if runs("steady") {
                settle(&root)?;
                etcd_steady_cell = Some(etcd_steady(&endpoint, STEADY_RATE, steady_dur).await?);
            }
            etcd.stop();
            _etcd_data = Some(etcd);
        }
        if !runs("seguro") && !runs("steady") {
            return anyhow::Ok(());
        }

        let mut cluster = Lab::new(seguro_bench::seguro_binary()?, "bench", 3)?;
        cluster.file_mut().eventlog.data_dir = Some(root.join("data"));
        cluster.write_config()?;
        // The nodes let only the replica that holds an epoch in etcd write
        // at it: the writer is replica 1, in a term of its own, as a
        // leading agent is.
        tokio::task::block_in_place(|| cluster.start_etcd().map(drop))
            .context("cannot start etcd (run `make deps`)")?;
        cluster.start_eventlog()?;
        let config = testkit::load_config(&cluster.config_path());
        let writer = cluster.credentials(config::Role::Replica(ReplicaId::new(1).expect("nonzero")));
        let nodes: Vec<(ReplicaId, SocketAddr)> =
            config.replicas.iter().map(|r| (r.id, r.eventlog)).collect();
        let base = ClientOptions::from_config(&config);
        let probe = Client::with_options(nodes.clone(), writer.clone(), base.clone());
        // Every replica's watermark is the operator's to set at once.
        let admin = Client::with_options(nodes.clone(), cluster.credentials(config::Role::Admin), base.clone());
        wait_leader(&probe).await?;
        let term = cluster.term(1).await;
        let epoch: Epoch = term.epoch();
        let mut next = probe.fence(epoch).await?.get() + 1;

        if let Some(etcd_steady) = etcd_steady_cell {
            let leader = probe
                .cluster_status()
                .await
                .into_iter()
                .filter_map(|(_, r)| r.ok())
                .find(|s| s.role == Role::Leader)
                .map_or(1, |s| s.id);
            let metrics_addr = cluster.metrics_addr(&Daemon::Eventlog(leader as u8));
            settle(&root)?;
            let before = scrape(metrics_addr).await;
            let steady = seguro_steady(&probe, epoch, &mut next, STEADY_RATE, steady_dur).await;
            let after = scrape(metrics_addr).await;
            println!("\n## At a steady {STEADY_RATE} events/s (default batching)\n");
            println!("| system | events/s | p50 commit | p99 commit | p90 | p99.9 | max |");
            println!("|---|---|---|---|---|---|---|");
            for (name, c) in [("Seguro", &steady), ("etcd", &etcd_steady)] {
                println!(
                    "{} {} | {} | {} |",
                    row(name, c),
                    ms(c.lat.quantile(0.9)),
                    ms(c.lat.quantile(0.999)),
                    ms(c.lat.max())
                );
            }
            let counter = |m: &Exposition, name: &str| m.value(name).unwrap_or(0.0);
            let delta = |name: &str| counter(&after, name) - counter(&before, name);
            let (fsyncs, writes, batches) = (
                delta("seguro_eventlog_log_fsyncs_total"),
                delta("seguro_eventlog_log_writes_total"),
                delta("seguro_eventlog_append_batches_total"),
            );
            let fsync_ms =
                delta("seguro_eventlog_log_fsync_busy_seconds") * 1000.0 / fsyncs.max(1.0);
            let q = |p| {
                after
                    .histogram_quantile_bound("seguro_eventlog_log_flush_seconds", p)
                    .map_or("-".into(), |v| format!("≤ {:.2} ms", v * 1000.0))
            };
            println!(
                "\nOn the Raft leader: {batches:.0} batches stored, {writes:.0} log writes in \
                 {fsyncs:.0} fdatasyncs ({:.1} writes per fdatasync, {fsync_ms:.2} ms each on \
                 average); an append waited for its fdatasync p50 {} / p99 {} (histogram bucket \
                 bounds).",
                writes / fsyncs.max(1.0),
                q(0.5),
                q(0.99),
            );
            checkpoint(&admin, next).await;
        }

        let mut best = vec![0f64; CONCURRENCY.len()];
        if runs("seguro") {
            settle(&root)?;
            println!("\n## Seguro (3 nodes, quorum fdatasync): one pipelined writer\n");
            println!(
                "Batches close at the batch size, at 4 MiB, or 1 ms after their first event \
                 (`max_linger`). Between measurements every replica reports a checkpoint of the \
                 last event, so the log is truncated as it would be in service.\n"
            );
            println!("| batch size | events outstanding | events/s | p50 commit | p99 commit |");
            println!("|---|---|---|---|---|");
            for b in BATCHES {
                for (i, c) in CONCURRENCY.iter().enumerate() {
                    let client = seguro_client(&base, &nodes, &writer, b, *c);
                    let cell = seguro_cell(&client, epoch, &mut next, *c, dur).await;
                    println!("{}", row(&format!("{b} | {c}"), &cell));
                    best[i] = best[i].max(cell.rate());
                    checkpoint(&admin, next).await;
                }
            }
        }

        if !disk.is_empty() && !etcd_rates.is_empty() && runs("seguro") {
            println!("\n## Ratios at equal concurrency (Seguro's best batch size)\n");
            println!(
                "| outstanding | Seguro events/s | etcd puts/s | Seguro / etcd | disk syncs/s | Seguro / disk |"
            );
            println!("|---|---|---|---|---|---|");
            for (i, c) in CONCURRENCY.iter().enumerate() {
                let (e, d) = (etcd_rates[i], disk[i]);
                println!(
                    "| {c} | {:.0} | {e:.0} | {:.1}x | {d:.0} | {:.1}x |",
                    best[i],
                    best[i] / e,
                    best[i] / d
                );
            }
        }
        let status = probe.cluster_status().await;
        let lasts: Vec<String> = status
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok())
            .map(|s| format!("replica {}: event {} (purge point {})", s.id, s.last_event, s.purge_point))
            .collect();
        println!("\nAfter the run: {}", lasts.join(", "));
        for id in 1..=3 {
            cluster.stop(&Daemon::Eventlog(id), Duration::from_secs(10));
        }
        anyhow::Ok(())
    })?;
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}
