//! `seguro etcd grant`: etcd's users and roles for the cluster
//! (`leadership::access`), and its authentication turned on.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use config::{KeyCheck, ReplicaId, Role};
use leadership::access;
use leadership::election::{self, ElectionError};

use crate::cli::{EtcdCommand, EtcdGrantArgs};
use crate::cmd::UsageError;

/// A root password shorter than this is refused.
const MIN_PASSWORD: usize = 16;
/// Nor is a password file longer than this read.
const MAX_PASSWORD_FILE: u64 = 4096;

pub fn run(command: EtcdCommand) -> anyhow::Result<ExitCode> {
    match command {
        EtcdCommand::Grant(args) => grant(args),
    }
}

fn grant(args: EtcdGrantArgs) -> anyhow::Result<ExitCode> {
    let config = super::load_config(
        &args.cluster.config,
        &args.cluster.overrides,
        KeyCheck::Admin,
    )?;
    let password = read_password(&args.root_password_file)?;
    let credentials = super::credentials(&config, Role::Admin)?;
    let replicas: Vec<ReplicaId> = config.replicas.iter().map(|r| r.id).collect();
    let root = config.etcd_root();
    let endpoints = &config.etcd.endpoints;
    super::runtime()?
        .block_on(async {
            // As root once authentication is on; before, etcd takes any client
            // of the cluster's CA (and has no root to log in as).
            let mut client =
                match election::connect_with(endpoints, &credentials, access::as_root(&password))
                    .await
                {
                    Ok(client) => client,
                    Err(e) if auth_not_enabled(&e) => {
                        election::connect(endpoints, &credentials).await?
                    }
                    Err(e) => return Err(e),
                };
            access::grant(&mut client, &config.cluster, &root, &replicas, &password).await
        })
        .with_context(|| {
            format!(
                "cannot set up etcd's access control at {}",
                endpoints.join(",")
            )
        })?;
    let (roles, users) = access::plan(&config.cluster, &root, &replicas);
    for role in roles {
        let keys: Vec<String> = role
            .keys
            .iter()
            .map(|(key, write)| format!("{key} ({})", if *write { "read, write" } else { "read" }))
            .collect();
        println!("role {}: {}", role.name, keys.join(", "));
    }
    for (user, role) in users {
        println!("user {user}: role {role}");
    }
    println!(
        "etcd's authentication is on; its root user's password is in {}",
        args.root_password_file.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Whether connecting as root failed only because etcd has no
/// authentication yet.
fn auth_not_enabled(e: &ElectionError) -> bool {
    e.to_string().contains("authentication is not enabled")
}

/// The password in `path`: its first line, at least [`MIN_PASSWORD`] long.
fn read_password(path: &Path) -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PASSWORD_FILE).read_to_string(&mut text))
        .map_err(|e| {
            UsageError(format!(
                "cannot read etcd's root password from {}: {e}",
                path.display()
            ))
        })?;
    let password = text.lines().next().unwrap_or("").trim().to_owned();
    if password.chars().count() < MIN_PASSWORD {
        return Err(UsageError(format!(
            "{}: etcd's root password must be at least {MIN_PASSWORD} characters on the file's first line (e.g. `head -c 24 /dev/urandom | base64 > {}`)",
            path.display(),
            path.display()
        ))
        .into());
    }
    Ok(password)
}
