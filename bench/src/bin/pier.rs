//! `make bench-pier`: `seguro pier import` of a pier of 1,000,000 events of
//! 200 bytes into 3 real event log nodes (quorum fdatasync), against a plain
//! read of the same LMDB by the Python reader (pier/tests/vere_pier.py on
//! PyPI's lmdb), in one run.
//!
//! - Python: every EVENTS value of every epoch read once, nothing checked:
//!   the floor for touching the pier at all;
//! - the checking pass alone (`Pier::open`, in process): every event read
//!   and checked as the import does before its first append;
//! - the import: the `seguro` binary, start to exit (the checking pass, the
//!   election, the fence, and every append committed on a quorum).
//!
//! `SEGURO_BENCH_EVENTS` (default 1,000,000) and `SEGURO_BENCH_EVENT_BYTES`
//! (default 200) size the pier; the import is killed after
//! `SEGURO_BENCH_SECS` (default 300). Files go under `SEGURO_BENCH_DIR`
//! (default target/bench-pier), which must be on a real disk.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use seguro_bench::knob;
use testkit::Lab;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../pier/tests/vere_pier.py");

fn python(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("python3")
        .arg(SCRIPT)
        .args(args)
        .output()
        .context("cannot run python3 (run `make deps`)")?;
    if !out.status.success() {
        bail!(
            "vere_pier.py {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn rate(events: u64, took: Duration) -> f64 {
    events as f64 / took.as_secs_f64()
}

fn main() -> anyhow::Result<()> {
    let events = knob("SEGURO_BENCH_EVENTS", 1_000_000, 1_000..=100_000_000);
    let size = knob("SEGURO_BENCH_EVENT_BYTES", 200, 5..=1_000_000);
    let limit = Duration::from_secs(knob("SEGURO_BENCH_SECS", 300, 10..=3_600));
    let root = seguro_bench::fresh_dir(Some("target/bench-pier"))?
        .expect("a default directory")
        .canonicalize()?;
    let pier = root.join("pier");
    let pier_arg = pier.to_str().context("a UTF-8 path")?;

    // Two epochs, as a pier that has rolled once.
    let started = Instant::now();
    python(&[
        "write",
        pier_arg,
        "--events",
        &events.to_string(),
        "--size",
        &size.to_string(),
        "--epochs",
        &format!("0,{}", events / 2),
    ])?;
    eprintln!("wrote the pier in {:.1} s", started.elapsed().as_secs_f64());

    let read: serde_json::Value = serde_json::from_str(&python(&["read", pier_arg])?)?;
    let py_events = read["events"].as_u64().context("events")?;
    let py_took = Duration::from_secs_f64(read["seconds"].as_f64().context("seconds")?);
    if py_events != events {
        bail!("the Python reader saw {py_events} events, not {events}");
    }

    let started = Instant::now();
    let opened = pier::Pier::open(&pier, usize::MAX)?;
    let check_took = started.elapsed();
    if opened.last != events {
        bail!("the checking pass saw {} events, not {events}", opened.last);
    }

    let mut cluster = Lab::new(seguro_bench::seguro_binary()?, "bench", 3)?;
    cluster.file_mut().eventlog.data_dir = Some(root.join("data"));
    cluster.write_config()?;
    cluster
        .start_etcd()
        .map(drop)
        .context("cannot start etcd (run `make deps`)")?;
    cluster.start_eventlog()?;
    let import_took = import(&cluster, &pier, events, limit)?;

    println!("\n## Pier import: {events} events of {size} bytes, 2 epochs\n");
    println!("| what | events/s | seconds | vs the Python read |");
    println!("|---|---|---|---|");
    let py = rate(events, py_took);
    for (what, took) in [
        ("Python lmdb: plain read of EVENTS", py_took),
        ("seguro: checking pass (Pier::open)", check_took),
        (
            "seguro pier import (3 nodes, quorum fdatasync)",
            import_took,
        ),
    ] {
        let r = rate(events, took);
        println!(
            "| {what} | {r:.0} | {:.2} | {:.2}x |",
            took.as_secs_f64(),
            r / py
        );
    }
    std::fs::remove_dir_all(&root).ok();
    Ok(())
}

/// Runs `seguro pier import` to its end (all `events` in the log, as it
/// reports), killed after `limit`.
fn import(cluster: &Lab, pier: &Path, events: u64, limit: Duration) -> anyhow::Result<Duration> {
    let config = cluster.config_path();
    let started = Instant::now();
    let mut child = Command::new(cluster.bin())
        .args(["pier", "import", "-c"])
        .arg(&config)
        .args(["--id", "1"])
        .arg(pier)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start seguro")?;
    loop {
        if let Some(status) = child.try_wait()? {
            let took = started.elapsed();
            if !status.success() {
                bail!("seguro pier import failed: {status}");
            }
            let mut said = String::new();
            std::io::Read::read_to_string(&mut child.stdout.take().context("stdout")?, &mut said)?;
            if !said.contains(&format!("events 1 to {events} in the log")) {
                bail!("the import did not report all {events} events in the log: {said}");
            }
            return Ok(took);
        }
        if started.elapsed() > limit {
            child.kill().ok();
            child.wait().ok();
            bail!("the import took longer than {limit:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
