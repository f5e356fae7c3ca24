//! `seguro gatekeeper`: the edge box's effect gatekeeper.

use std::process::ExitCode;

use anyhow::Context;
use config::{KeyCheck, Optimism};
use gatekeeper::{Gatekeeper, Settings, election};

use crate::cli::GatekeeperArgs;
use crate::cmd::{UsageError, load_config, serve_metrics, shutdown_signal};

pub fn run(args: GatekeeperArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(
        &args.cluster.config,
        &args.cluster.overrides,
        KeyCheck::Edge,
    )?;
    // Under `quorum` and `all`, effects wait for the event log's commit
    // index, which reaches the gatekeeper through the event log client.
    // Until that is wired in, refuse rather than release effects early.
    if config.optimism != Optimism::Leader {
        return Err(UsageError(format!(
            "optimism \"{}\" holds each effect until the event log commits its event, and \
             this gatekeeper does not have the event log's commit watch yet; \
             run it with `-o leader` (effects leave as soon as they are authentic, new and \
             from the current leader's term)",
            config.optimism
        ))
        .into());
    }
    let settings = Settings::from_config(&config)?;
    // etcd, the metrics endpoint and signals; the forwarding loop gets a
    // thread of its own (see `Gatekeeper::run`).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        serve_metrics(config.gatekeeper.metrics)?;
        let client = election::connect(&config.etcd.endpoints)
            .await
            .with_context(|| format!("cannot use etcd at {}", config.etcd.endpoints.join(",")))?;
        let gatekeeper = Gatekeeper::bind(settings)?;
        tracing::info!(metrics = %config.gatekeeper.metrics, "serving metrics");
        gatekeeper.run(client, None, shutdown_signal()).await?;
        Ok(ExitCode::SUCCESS)
    })
}
