//! What each subcommand does, and how failures become exit codes.

pub mod ames;
pub mod certs;
pub mod config;
pub mod etcd;
pub mod eventlog;
pub mod gatekeeper;
pub mod keygen;
pub mod lb;
pub mod pier;
pub mod replica;
pub mod status;

use std::net::SocketAddr;
use std::process::ExitCode;

use ::config::{Config, Diagnostics, KeyCheck, Overrides, ReplicaConfig, ReplicaId};

use crate::cli::OverrideArgs;

/// Exit code for bad usage or an unusable config.
pub const EXIT_USAGE: u8 = 2;
/// `EX_NOPERM` from sysexits.h: not root, or missing capabilities.
pub const EXIT_NOPERM: u8 = 77;

/// A failure that is the user's input, not the program: exits 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Prints an error the way its kind deserves and picks the exit code.
pub fn report(e: anyhow::Error) -> ExitCode {
    if let Some(d) = e.downcast_ref::<Diagnostics>() {
        eprintln!("{d}");
        let n = d.errors().count();
        eprintln!("{n} error{} in the config", if n == 1 { "" } else { "s" });
        return ExitCode::from(EXIT_USAGE);
    }
    eprintln!("error: {}", causes(&e));
    if e.downcast_ref::<UsageError>().is_some() {
        ExitCode::from(EXIT_USAGE)
    } else {
        ExitCode::FAILURE
    }
}

/// `e` and its causes joined by `: `, as `{:#}` does, but without a cause
/// whose text the error before it already ends with: many errors say their
/// source in their own message as well as return it.
fn causes(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let said = cause.to_string();
        if text.ends_with(&said) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&said);
    }
    text
}

impl From<&OverrideArgs> for Overrides {
    fn from(args: &OverrideArgs) -> Self {
        Overrides {
            replicas: args.replicas.clone(),
            optimism: args.optimism,
        }
    }
}

/// Loads the config for a command, printing its warnings; errors come back
/// as [`Diagnostics`] so that [`report`] exits 2. The certificates `keys`
/// asks for are checked as the daemons load them (chain, validity,
/// identity, key).
pub fn load_config(
    path: &std::path::Path,
    overrides: &OverrideArgs,
    keys: KeyCheck,
) -> anyhow::Result<Config> {
    let certs = trust::check::Certificates;
    let (config, warnings) = Config::load_with(path, &overrides.into(), keys, &certs)?;
    for w in warnings.iter() {
        eprintln!("{w}");
    }
    Ok(config)
}

/// `role`'s credentials from the files the config names (the CA bundle and
/// the role's certificate pair), checked; a usage error (exit 2) if they do
/// not load.
pub fn credentials(config: &Config, role: ::config::Role) -> anyhow::Result<trust::Credentials> {
    match trust::Credentials::of(config, role) {
        Some(Ok(c)) => Ok(c),
        Some(Err(e)) => Err(UsageError(e.to_string()).into()),
        None => Err(UsageError(format!("the config names no certificate for {role}")).into()),
    }
}

/// A runtime for a command that is not a daemon.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context as _;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Reads `credentials`' files again on every SIGHUP, from a task of the
/// current runtime: new connections use the renewed certificate and CA
/// bundle; if they do not load, the old ones stay and the error is logged.
pub fn reload_on_sighup(credentials: trust::Credentials) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch for SIGHUP: certificates reload only on restart");
            return;
        }
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match credentials.reload() {
                Ok(()) => tracing::info!(
                    identity = %credentials.identity(),
                    "SIGHUP: reloaded the certificate and the CA bundle"
                ),
                Err(e) => tracing::error!(
                    error = %e,
                    "SIGHUP: cannot reload the certificate; keeping the one in use"
                ),
            }
        }
    });
}

/// Serves Prometheus metrics on `addr` (`GET /metrics`) from the current
/// tokio runtime. Install it before the daemon registers its metrics.
pub fn serve_metrics(addr: SocketAddr, component: &'static str) -> anyhow::Result<()> {
    let builder = metrics_exporter_prometheus::PrometheusBuilder::new();
    Ok(telemetry::serve(builder, addr, component)?)
}

/// Resolves on SIGINT or SIGTERM: a daemon's cue to shut down cleanly.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch for SIGTERM; only Ctrl-C stops this");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
}

/// Replica `id`'s entry in `config`, or a usage error (exit 2) that names
/// the ids the config has.
pub fn known_replica(config: &Config, id: ReplicaId) -> anyhow::Result<&ReplicaConfig> {
    config.replica(id).ok_or_else(|| {
        let ids: Vec<String> = config.replicas.iter().map(|r| r.id.to_string()).collect();
        UsageError(format!(
            "replica {id} is not in {}: its [[replicas]] have ids {}",
            config.source.display(),
            ids.join(", ")
        ))
        .into()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cause_its_effect_already_says_is_not_said_twice() {
        let source = std::io::Error::other("disk on fire");
        let read = config::KeyError::Read {
            path: "k.key".into(),
            source,
        };
        let e = anyhow::Error::new(read).context("cannot start");
        assert_eq!(
            super::causes(&e),
            "cannot start: cannot read key file k.key: disk on fire"
        );
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(super::causes(&e), "outer: inner");
    }
}
