//! `seguro lb`: the edge fan-out.

use std::process::ExitCode;

use anyhow::Context as _;
use config::KeyCheck;
use lb::ErrorKind;

use crate::cli::LbArgs;
use crate::cmd::{EXIT_NOPERM, EXIT_USAGE};

/// `EX_UNAVAILABLE` from sysexits.h: the kernel cannot run eBPF programs.
const EXIT_UNAVAILABLE: u8 = 69;

pub fn run(args: LbArgs) -> anyhow::Result<ExitCode> {
    // The fan-out reads only addresses: the key files stay with the
    // gatekeeper and the replicas.
    let config = super::load_config(
        &args.cluster.config,
        &args.cluster.overrides,
        KeyCheck::Skip,
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("seguro-lb")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let overrides = (&args.cluster.overrides).into();
    match runtime.block_on(lb::run(args.cluster.config.clone(), overrides, config)) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(match e.kind() {
                ErrorKind::Config => EXIT_USAGE,
                ErrorKind::Permission => EXIT_NOPERM,
                ErrorKind::Unavailable => EXIT_UNAVAILABLE,
                ErrorKind::Runtime => 1,
            }))
        }
    }
}
