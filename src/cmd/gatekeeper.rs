//! `seguro gatekeeper`: the edge box's effect gatekeeper.

use std::process::ExitCode;

use anyhow::Context;
use config::{KeyCheck, Role};
use gatekeeper::{Gatekeeper, Settings};
use leadership::election;

use crate::cli::GatekeeperArgs;
use crate::cmd::{EXIT_NOPERM, load_config, serve_metrics, shutdown_signal};

pub fn run(args: GatekeeperArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(
        &args.cluster.config,
        &args.cluster.overrides,
        KeyCheck::Edge,
    )?;
    let settings = Settings::from_config(&config)?;
    let credentials = super::credentials(&config, Role::Edge)?;
    // etcd, the metrics endpoint and signals; the forwarding loop gets a
    // thread of its own (see `Gatekeeper::run`).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        serve_metrics(config.gatekeeper.metrics, "gatekeeper")?;
        // Sockets first: a missing privilege is the first thing said.
        let gatekeeper = match Gatekeeper::bind(settings) {
            Ok(g) => g,
            Err(e @ gatekeeper::Error::NotPermitted { .. }) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(EXIT_NOPERM));
            }
            Err(e) => return Err(e.into()),
        };
        super::reload_on_sighup(credentials.clone());
        let client = election::connect(&config.etcd.endpoints, &credentials)
            .await
            .with_context(|| format!("cannot use etcd at {}", config.etcd.endpoints.join(",")))?;
        // Every policy checks the commit watch's epoch (SPEC §6.4 rule 4);
        // `quorum` and `all` also wait on its event numbers.
        let commits = eventlog::Client::new(&config, credentials).commit_watch();
        tracing::info!(metrics = %config.gatekeeper.metrics, "serving metrics");
        gatekeeper
            .run(client, Some(commits), shutdown_signal())
            .await?;
        Ok(ExitCode::SUCCESS)
    })
}
