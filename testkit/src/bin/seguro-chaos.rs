//! `make chaos`: the nemesis suite (docs/RELIABILITY.md). A cluster in
//! network namespaces on lazy disks under the peer's load, one fault per
//! round from a seeded schedule, the history checked at the end; then the
//! power-loss check and its negative control (fdatasync skipped), which
//! must find losses.
//!
//! ```text
//! seguro-chaos --seguro target/debug/seguro [--rounds 100] [--seconds 1500] [--seed N]
//!              [--faults kill,power-loss,...] [--rate 200] [--dir DIR] [--no-control]
//! ```
//!
//! The seed is printed first; the same seed replays the same schedule.
//! Exits 1 if the history has a violation, a round never recovered, or the
//! negative control found nothing. Needs root.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use seguro_testkit::chaos::{self, ChaosOptions, FaultKind};

struct Args {
    opts: ChaosOptions,
    control: bool,
}

fn parse_args() -> Result<Args, String> {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut opts = ChaosOptions::new("target/debug/seguro", seed);
    opts.rounds = 100;
    opts.seconds = 1500;
    let mut control = true;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        let number = |name: &str, v: String| {
            v.parse::<u64>()
                .map_err(|e| format!("{name} {v}: {e} (expected a whole number)"))
        };
        match a.as_str() {
            "--seguro" => opts.bin = value("--seguro")?.into(),
            "--rounds" => opts.rounds = number("--rounds", value("--rounds")?)? as usize,
            "--seconds" => opts.seconds = number("--seconds", value("--seconds")?)?,
            "--seed" => opts.seed = number("--seed", value("--seed")?)?,
            "--rate" => {
                opts.rate = u32::try_from(number("--rate", value("--rate")?)?)
                    .map_err(|_| "--rate: too large".to_string())?
            }
            "--dir" => opts.dir = Some(PathBuf::from(value("--dir")?)),
            "--faults" => {
                opts.kinds = value("--faults")?
                    .split(',')
                    .map(|s| {
                        FaultKind::from_slug(s.trim()).ok_or_else(|| {
                            let known: Vec<_> = FaultKind::ALL.iter().map(|k| k.slug()).collect();
                            format!(
                                "--faults: unknown fault {s:?} (known: {})",
                                known.join(", ")
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?
            }
            "--no-control" => control = false,
            "-h" | "--help" => {
                return Err(
                    "usage: seguro-chaos [--seguro BIN] [--rounds N] [--seconds S] \
                            [--seed N] [--faults a,b] [--rate R] [--dir DIR] [--no-control]"
                        .into(),
                );
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    if opts.kinds.is_empty() {
        return Err("--faults: name at least one fault".into());
    }
    Ok(Args { opts, control })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("seguro-chaos: {e}");
            return ExitCode::from(2);
        }
    };
    if !seguro_testkit::is_root() {
        eprintln!("seguro-chaos: needs root (network namespaces, XDP, FUSE)");
        return ExitCode::from(2);
    }
    let opts = args.opts;
    println!(
        "chaos: seed {} (replay with --seed {})",
        opts.seed, opts.seed
    );
    let mut failed = false;
    match chaos::run(&opts) {
        Ok(report) => {
            println!("{report}");
            if !report.check.violations.is_empty() {
                eprintln!("chaos: the history has violations");
                failed = true;
            }
            if report.rounds.iter().any(|r| r.recovered.is_none()) {
                eprintln!("chaos: a round never recovered");
                failed = true;
            }
        }
        Err(e) => {
            eprintln!("chaos: the run failed: {e}");
            return ExitCode::FAILURE;
        }
    }
    if args.control {
        for skip in [false, true] {
            let mut o = opts.clone();
            o.skip_fdatasync = skip;
            // A cluster of its own: its own directory under --dir.
            o.dir = opts.dir.as_ref().map(|d| {
                d.join(if skip {
                    "control-unsynced"
                } else {
                    "control-synced"
                })
            });
            let what = if skip {
                "negative control (fdatasync skipped)"
            } else {
                "power loss of every replica host"
            };
            match chaos::power_loss_check(&o, Duration::from_secs(10)) {
                Ok(report) => {
                    println!("{what}:\n{report}");
                    let found = !report.check.violations.is_empty();
                    if found != skip {
                        eprintln!(
                            "chaos: {what}: {}",
                            if skip {
                                "found no loss: the check cannot fail"
                            } else {
                                "lost events"
                            }
                        );
                        failed = true;
                    }
                }
                Err(e) => {
                    eprintln!("chaos: {what} failed to run: {e}");
                    failed = true;
                }
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
