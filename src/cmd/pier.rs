//! `seguro pier import` and `seguro pier export`: a ship's event log from a
//! vere pier into Seguro's event log, as a leader appends, and back out.

use std::io::IsTerminal as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use config::{KeyCheck, Role};
use eventlog::Client;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::{PierCommand, PierExportArgs, PierImportArgs};
use crate::cmd::UsageError;

pub fn run(command: PierCommand) -> anyhow::Result<ExitCode> {
    match command {
        PierCommand::Import(args) => import(args),
        PierCommand::Export(args) => export(args),
    }
}

/// A bar on stderr when it is a terminal; nothing otherwise (logs and
/// scripts get the summary line only).
fn bar(total: u64, what: &str) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{what} {{bar:40}} {{pos}}/{{len}} events, {{per_sec}}, {{eta}} left"
        ))
        .expect("a valid template"),
    );
    bar
}

fn import(args: PierImportArgs) -> anyhow::Result<ExitCode> {
    let config = super::load_config(
        &args.cluster.config,
        &args.cluster.overrides,
        KeyCheck::Replica(args.id),
    )?;
    super::known_replica(&config, args.id)?;
    let credentials = super::credentials(&config, Role::Replica(args.id))?;
    let limit = config.eventlog.max_event_bytes;
    let wait = Duration::try_from_secs_f64(args.wait)
        .map_err(|e| UsageError(format!("--wait {}: {e}", args.wait)))?;

    // The whole pier is checked before anything touches the log: a pier
    // that fails halfway must not leave half a ship in it.
    let pier = Arc::new(
        pier::Pier::open(&args.pier, limit)
            .with_context(|| format!("cannot import {}", args.pier.display()))?,
    );
    eprintln!(
        "pier {}: {} events in {} epoch(s), {}",
        args.pier.display(),
        pier.last,
        pier.epochs.len(),
        pier.meta
    );

    super::runtime()?.block_on(async {
        // An import writes as a leader does: it holds the leader key, so
        // the event log lets it fence at that epoch (docs/SPEC.md §6.5.3),
        // and the fence refuses every older writer from then on (§6.2).
        let etcd = leadership::election::connect(&config.etcd.endpoints, &credentials)
            .await
            .with_context(|| format!("cannot use etcd at {}", config.etcd.endpoints.join(",")))?;
        let election = leadership::Election::new(etcd, &config.etcd_root(), config.etcd.lease_ttl);
        let leadership = tokio::time::timeout(wait, election.campaign(args.id))
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "another replica still leads after {wait:?}: stop every agent (seguro replica) \
                     before importing a pier"
                )
            })?;
        let client = Client::new(&config, credentials);
        let bar = bar(pier.last, "import");
        let result = pier::import(pier.clone(), &client, &leadership, limit, |n| {
            bar.set_position(n)
        })
        .await;
        bar.finish_and_clear();
        if let Err(e) = leadership.resign().await {
            tracing::warn!(error = %e, "cannot resign; the leader key expires with its lease");
        }
        let done = result.context("import failed")?;
        println!(
            "imported {}: events 1 to {} in the log ({} already there and identical, {} appended)",
            args.pier.display(),
            done.last,
            done.verified,
            done.appended
        );
        Ok(ExitCode::SUCCESS)
    })
}

fn export(args: PierExportArgs) -> anyhow::Result<ExitCode> {
    let config = super::load_config(
        &args.cluster.config,
        &args.cluster.overrides,
        KeyCheck::Replica(args.id),
    )?;
    super::known_replica(&config, args.id)?;
    let credentials = super::credentials(&config, Role::Replica(args.id))?;
    let meta = match &args.meta_from {
        Some(from) => {
            let source = pier::Pier::open(from, config.eventlog.max_event_bytes)
                .with_context(|| format!("cannot read META from {}", from.display()))?;
            pier::ExportMeta::of(&source, &args.vere)
        }
        None => {
            let who = args.who.as_deref().expect("clap requires --who");
            let who = parse_who(who).ok_or_else(|| {
                UsageError(format!("--who {who}: not a number (decimal or 0x hex)"))
            })?;
            let meta = pier::Meta {
                version: pier::meta::LOG_VERSION,
                who,
                fake: args.fake,
                life: args.life.expect("clap requires --life"),
            };
            pier::ExportMeta::new(meta, &args.vere)
        }
    };
    super::runtime()?.block_on(async {
        let client = Client::new(&config, credentials);
        let status = client.cluster_status().await;
        let last = status
            .iter()
            .filter_map(|(_, s)| s.as_ref().ok())
            .map(|s| s.last_event.get())
            .max()
            .unwrap_or(0);
        let bar = bar(last, "export");
        let result = pier::export(&client, &args.dir, meta, |n| bar.set_position(n)).await;
        bar.finish_and_clear();
        let last = result.with_context(|| format!("cannot export to {}", args.dir.display()))?;
        println!(
            "exported events 1 to {last} to {}",
            pier::log_dir(Path::new(&args.dir)).display()
        );
        Ok(ExitCode::SUCCESS)
    })
}

fn parse_who(text: &str) -> Option<u128> {
    match text.strip_prefix("0x") {
        Some(hex) => u128::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}
