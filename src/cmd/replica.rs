//! `seguro replica`: the agent beside one ship.

use std::process::ExitCode;

use anyhow::Context as _;
use config::{KeyCheck, Role};
use replica::{ReferenceShip, Ship, Variant, VereShip};
use tokio_util::sync::CancellationToken;

use crate::cli::{ReplicaArgs, ShipKind};
use crate::cmd::{load_config, shutdown_signal};

pub fn run(args: ReplicaArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(
        &args.cluster.config,
        &args.cluster.overrides,
        KeyCheck::Replica(args.id),
    )?;
    super::known_replica(&config, args.id)?;
    let credentials = super::credentials(&config, Role::Replica(args.id))?;
    let ship: Box<dyn Ship> = match args.ship {
        ShipKind::Reference => Box::new(ReferenceShip::new(Variant::Deterministic)),
        ShipKind::Vere => Box::new(VereShip::new()),
        ShipKind::Nondeterministic => Box::new(ReferenceShip::new(Variant::NonDeterministic {
            salt: u64::from(std::process::id()),
        })),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("seguro-replica")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        super::reload_on_sighup(credentials.clone());
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            stop.cancel();
        });
        replica::run(&config, args.id, credentials, ship, shutdown)
            .await
            .context("the replica agent stopped")?;
        Ok(ExitCode::SUCCESS)
    })
}
