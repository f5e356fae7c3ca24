//! `make run` and `make failover`: a whole Seguro cluster on this machine, in
//! network namespaces named `seguro-peer`, `seguro-edge`, `seguro-r1`..`r3`
//! (`seguro-router` in front of r3) and `seguro-backend`, with a peer
//! sending Ames packets to the ship at a steady rate.
//!
//! ```text
//! seguro-demo --seguro target/release/seguro [--dir .run] [--rate 100] [--minutes 60] [--failover]
//! ```
//!
//! Without `--failover` it shows `seguro status --watch 1` until Ctrl-C; with
//! it, it kills the leader (-9) under load, prints the failover time and the
//! loss check, and stops. Either way it removes everything it started on the
//! way out (and, first, whatever a previous run left). Needs root.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use seguro_testkit::cluster::{ClusterLab, ClusterOptions, first_answer_after};
use seguro_testkit::probe::Probe;

const PREFIX: &str = "seguro";
const REPLICAS: u8 = 3;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

struct Args {
    seguro: PathBuf,
    dir: PathBuf,
    rate: u32,
    minutes: u64,
    failover: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seguro: PathBuf::from("target/release/seguro"),
        dir: PathBuf::from(".run"),
        rate: 100,
        minutes: 60,
        failover: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--seguro" => args.seguro = value("--seguro")?.into(),
            "--dir" => args.dir = value("--dir")?.into(),
            "--rate" => {
                args.rate = value("--rate")?
                    .parse()
                    .map_err(|e| format!("--rate: {e}"))?
            }
            "--minutes" => {
                args.minutes = value("--minutes")?
                    .parse()
                    .map_err(|e| format!("--minutes: {e}"))?
            }
            "--failover" => args.failover = true,
            "-h" | "--help" => {
                return Err(
                    "usage: seguro-demo [--seguro BIN] [--dir DIR] [--rate PPS] [--minutes N] [--failover]"
                        .into(),
                );
            }
            other => return Err(format!("unknown argument `{other}` (try --help)")),
        }
    }
    if !(1..=10_000).contains(&args.rate) {
        return Err("--rate takes 1 to 10000 packets per second".into());
    }
    // Every load loop is bounded: at most a day.
    if !(1..=1440).contains(&args.minutes) {
        return Err("--minutes takes 1 to 1440".into());
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("seguro-demo: {e}");
            return ExitCode::from(2);
        }
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("seguro-demo: needs root (network namespaces, XDP): run `sudo make run`");
        return ExitCode::from(77);
    }
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("seguro-demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<ExitCode, String> {
    let seguro = std::fs::canonicalize(&args.seguro)
        .map_err(|e| format!("{}: {e} (build it first)", args.seguro.display()))?;
    ClusterLab::clean_leftovers(PREFIX, REPLICAS);
    let dir = std::path::absolute(args.dir.join("cluster")).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "== building namespaces seguro-{{peer,edge,r1,r2,r3,router,backend}} and starting etcd"
    );
    let opts = ClusterOptions {
        prefix: Some(PREFIX.into()),
        dir: Some(dir.clone()),
        ..ClusterOptions::default()
    };
    let mut lab =
        ClusterLab::new(&seguro, &opts).map_err(|e| format!("building the cluster: {e}"))?;
    println!("== starting seguro lb (XDP), gatekeeper, 3 event log nodes, 3 replicas");
    lab.start_all().map_err(|e| {
        format!(
            "starting the cluster: {e}\nlogs: {}",
            dir.join("logs").display()
        )
    })?;
    let leader = lab.wait_leader(Duration::from_secs(10)).unwrap_or(0);
    println!(
        "== replica {leader} leads; config {}",
        lab.config_path().display()
    );

    let probe = lab
        .probe(args.rate, Duration::from_secs(args.minutes * 60))
        .map_err(|e| e.to_string())?;
    let stats = args.dir.join("probe.json");
    let ship = lab.ship();
    let code = std::thread::scope(|s| {
        let writer = s.spawn(|| write_stats(&probe, &stats, ship));
        let code = if args.failover {
            failover(&mut lab, &probe, &stats)
        } else {
            watch(&lab, &stats)
        };
        STOP.store(true, Ordering::Relaxed);
        let _ = writer.join();
        code
    });
    println!("== tearing down: processes, namespaces, {}", dir.display());
    drop(probe);
    drop(lab);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&stats);
    code
}

/// Writes the probe's stats for `seguro status --probe` twice a second.
fn write_stats(probe: &Probe, path: &std::path::Path, target: std::net::SocketAddr) {
    while !STOP.load(Ordering::Relaxed) {
        let tmp = path.with_extension("json.new");
        if std::fs::write(&tmp, probe.to_json(target)).is_ok() {
            let _ = std::fs::rename(&tmp, path);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn status_command(lab: &ClusterLab, stats: &std::path::Path) -> std::process::Command {
    let mut cmd = lab.lab.edge.command(lab.seguro_bin());
    cmd.arg("status")
        .arg("-c")
        .arg(lab.config_path())
        .arg("--probe")
        .arg(stats);
    cmd
}

/// `seguro status --watch 1` until Ctrl-C.
fn watch(lab: &ClusterLab, stats: &std::path::Path) -> Result<ExitCode, String> {
    println!(
        "== the peer sends to {} from seguro-peer; kill the leader with\n   \
         ip netns pids seguro-r<N> | xargs kill -9\n   and watch the status view; Ctrl-C stops everything",
        lab.ship()
    );
    std::thread::sleep(Duration::from_secs(3));
    let mut child = status_command(lab, stats)
        .args(["--watch", "1"])
        .spawn()
        .map_err(|e| format!("running seguro status: {e}"))?;
    while !STOP.load(Ordering::Relaxed) {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Ctrl-C reached it too; otherwise end it.
    seguro_testkit::terminate(&mut child, Duration::from_secs(2));
    Ok(ExitCode::SUCCESS)
}

/// Kills the leader under load and reports how the cluster coped.
fn failover(
    lab: &mut ClusterLab,
    probe: &Probe,
    stats: &std::path::Path,
) -> Result<ExitCode, String> {
    println!("== steady state for 5 s");
    sleep_unless_stopped(Duration::from_secs(5));
    let _ = status_command(lab, stats).status();
    let (old, killed) = lab
        .kill_leader(Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    println!("\n== kill -9 of replica {old}'s agent and event log node (namespace seguro-r{old})");
    let new = lab.wait_new_leader(old, killed + Duration::from_secs(30), || {
        STOP.load(Ordering::Relaxed)
    });
    let Some(new) = new else {
        println!(
            "no new leader within 30 s: see {}",
            lab.dir().join("logs").display()
        );
        return Ok(ExitCode::FAILURE);
    };
    println!(
        "== replica {new} leads after {:.2} s",
        killed.elapsed().as_secs_f64()
    );
    sleep_unless_stopped(Duration::from_secs(5));
    let report = probe.report();
    let first = first_answer_after(&report, killed);
    // Requests sent from 1 s before the kill to 2 s before now: each should
    // have its answer by now (the new leader sequences what the followers
    // buffered).
    let (window, lost) = report.unanswered_between(
        killed - Duration::from_secs(1),
        Instant::now() - Duration::from_secs(2),
    );
    println!(
        "== failover: first answer from the new leader {} after the kill",
        first.map_or("never".to_string(), |d| format!("{:.3} s", d.as_secs_f64()))
    );
    println!(
        "== loss check: {} of {} packets sent around the failover unanswered; {} duplicate answers overall",
        lost.len(),
        window,
        report.duplicates.len()
    );
    println!("== restarting replica {old}: it rejoins as a follower and catches up");
    lab.start_replica(old).map_err(|e| e.to_string())?;
    let caught = lab.wait_caught_up(old, Duration::from_secs(60));
    println!(
        "== replica {old} {}",
        if caught.is_ok() {
            "caught up"
        } else {
            "did not catch up within 60 s"
        }
    );
    let _ = status_command(lab, stats).status();
    Ok(if first.is_some() && lost.is_empty() && caught.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn sleep_unless_stopped(d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until && !STOP.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
}
