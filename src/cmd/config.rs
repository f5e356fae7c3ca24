//! `seguro config check`.

use std::process::ExitCode;

use ::config::KeyCheck;

use crate::cli::{CheckArgs, ConfigCommand, KeysScope};

pub fn run(command: ConfigCommand) -> anyhow::Result<ExitCode> {
    match command {
        ConfigCommand::Check(args) => check(args),
    }
}

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let keys = match args.keys {
        KeysScope::All => KeyCheck::All,
        KeysScope::Edge => KeyCheck::Edge,
        KeysScope::Replica(id) => KeyCheck::Replica(id),
        KeysScope::Admin => KeyCheck::Admin,
        KeysScope::None => KeyCheck::Skip,
    };
    let config = super::load_config(&args.file, &args.overrides, keys)?;
    println!(
        "{}: ok: cluster `{}`, {} replicas (quorum {}), optimism {}",
        args.file.display(),
        config.cluster,
        config.replicas.len(),
        config.quorum(),
        config.optimism
    );
    Ok(ExitCode::SUCCESS)
}
