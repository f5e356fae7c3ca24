//! `seguro certs`: the cluster's CA, each role's certificate at the path
//! the config names, and what a certificate file says.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use config::{CertPair, Config, KeyCheck, Role};
use trust::issue::{Authority, Validity, write_new};

use crate::cli::{CertsCaArgs, CertsCommand, CertsIssueArgs, CertsShowArgs, RoleArg};
use crate::cmd::{known_replica, load_config};

const DAY: Duration = Duration::from_secs(24 * 3600);

pub fn run(command: CertsCommand) -> anyhow::Result<ExitCode> {
    match command {
        CertsCommand::Ca(args) => ca(args),
        CertsCommand::Issue(args) => issue(args),
        CertsCommand::Show(args) => show(args),
    }
}

/// The config, for its paths: nothing it names need exist yet.
fn load(cluster: &crate::cli::ClusterArgs) -> anyhow::Result<Config> {
    load_config(&cluster.config, &cluster.overrides, KeyCheck::Skip)
}

fn ca(args: CertsCaArgs) -> anyhow::Result<ExitCode> {
    let config = load(&args.cluster)?;
    let dir = args.dir.unwrap_or_else(|| config.tls.dir.clone());
    let (cert, key) = (dir.join("ca.crt"), dir.join("ca.key"));
    refuse_existing(&[&cert, &key])?;
    let validity = Validity::from_now(DAY * args.days);
    let authority = Authority::create(&config.cluster, validity)?;
    create_parent(&cert)?;
    write_new(&key, &authority.key_pem())
        .with_context(|| format!("cannot write {}", key.display()))?;
    if let Err(e) = write_new(&cert, authority.cert_pem()) {
        remove_written(&key);
        return Err(e).with_context(|| format!("cannot write {}", cert.display()));
    }
    println!(
        "{}: the CA certificate of cluster `{}`",
        cert.display(),
        config.cluster
    );
    if cert != config.tls.ca {
        println!(
            "  every part trusts the CAs in {} (tls.ca): put this certificate there",
            config.tls.ca.display()
        );
    }
    println!(
        "{}: the CA's key: keep it on this machine only, never on a replica host or the edge box; it signs every certificate of the cluster",
        key.display()
    );
    println!(
        "next: seguro certs issue -c {} all",
        args.cluster.config.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn issue(args: CertsIssueArgs) -> anyhow::Result<ExitCode> {
    let config = load(&args.cluster)?;
    let roles = expand(&config, &args.roles)?;
    let ca_key = args.ca_key.unwrap_or_else(|| config.tls.dir.join("ca.key"));
    let authority = Authority::load(&config.tls.ca, &ca_key).context(
        "cannot use the cluster's CA (make it with `seguro certs ca`, or name its key with --ca-key)",
    )?;
    let validity = Validity::from_now(DAY * args.days);
    let mut failed = 0;
    for role in roles {
        let pair = pair_of(&config, role);
        match issue_one(&config, &authority, role, &pair, validity) {
            Ok(()) => println!(
                "{role}: {} and {}, for {}",
                pair.cert.display(),
                pair.key.display(),
                config.identity(role)
            ),
            Err(e) => {
                eprintln!("error: {role}: {}", super::causes(&e));
                failed += 1;
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "{failed} role{} not issued",
            if failed == 1 { "" } else { "s" }
        );
        ExitCode::FAILURE
    })
}

/// The roles asked for, `all` expanded, each once, in order; a replica the
/// config does not have is a usage error before anything is written.
fn expand(config: &Config, asked: &[RoleArg]) -> anyhow::Result<Vec<Role>> {
    let mut roles = Vec::new();
    for arg in asked {
        match *arg {
            RoleArg::One(role) => {
                if let Role::Replica(id) = role {
                    known_replica(config, id)?;
                }
                roles.push(role);
            }
            RoleArg::All => {
                roles.extend(config.replicas.iter().map(|r| Role::Replica(r.id)));
                roles.extend([Role::Edge, Role::Admin, Role::Etcd]);
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    roles.retain(|r| seen.insert(*r));
    Ok(roles)
}

/// Where `role`'s pair goes: where the config names it, and for etcd (whose
/// own flags name its files) under `tls.dir`.
fn pair_of(config: &Config, role: Role) -> CertPair {
    config
        .cert_pair(role)
        .cloned()
        .unwrap_or_else(|| config.tls.default_pair(role))
}

/// Issues one role's pair: neither file may exist, and a key is never left
/// without its certificate.
fn issue_one(
    config: &Config,
    authority: &Authority,
    role: Role,
    pair: &CertPair,
    validity: Validity,
) -> anyhow::Result<()> {
    refuse_existing(&[&pair.cert, &pair.key])?;
    let issued = authority.issue(&config.identity(role), validity)?;
    create_parent(&pair.key)?;
    create_parent(&pair.cert)?;
    write_new(&pair.key, &issued.key_pem)
        .with_context(|| format!("cannot write {}", pair.key.display()))?;
    if let Err(e) = write_new(&pair.cert, &issued.cert_pem) {
        remove_written(&pair.key);
        return Err(e).with_context(|| format!("cannot write {}", pair.cert.display()));
    }
    Ok(())
}

fn refuse_existing(paths: &[&Path]) -> anyhow::Result<()> {
    for path in paths {
        if path.symlink_metadata().is_ok() {
            anyhow::bail!(
                "{} exists: it is never overwritten (to renew, move it aside first)",
                path.display()
            );
        }
    }
    Ok(())
}

fn create_parent(path: &Path) -> anyhow::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
        }
        None => Ok(()),
    }
}

/// Removes a key this command has just written and cannot complete.
fn remove_written(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove the key written for a certificate that failed");
    }
}

fn show(args: CertsShowArgs) -> anyhow::Result<ExitCode> {
    let now = SystemTime::now();
    let soon = args.expires_within.map(|n| DAY * n);
    let mut expiring = 0;
    for (i, file) in args.files.iter().enumerate() {
        let shown = trust::inspect::read(file)?;
        for (j, summary) in shown.iter().enumerate() {
            if i + j > 0 {
                println!();
            }
            println!(
                "{} (certificate {} of {})",
                file.display(),
                j + 1,
                shown.len()
            );
            println!("{summary}");
            let left = summary.remaining(now);
            match left {
                Ok(left) => println!("expires:    in {}", in_days(left)),
                Err(ago) => println!("expires:    EXPIRED {} ago", in_days(ago)),
            }
            if summary.not_before > now {
                println!("            not valid yet");
            }
            if soon.is_some_and(|soon| left.is_err() || left.is_ok_and(|l| l <= soon)) {
                expiring += 1;
            }
        }
    }
    if expiring > 0 {
        let within = args.expires_within.unwrap_or_default();
        eprintln!(
            "{expiring} certificate{} expired or expiring within {within} days",
            if expiring == 1 { "" } else { "s" }
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `12 days`, `1 day`, or hours under a day.
fn in_days(d: Duration) -> String {
    let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    match d.as_secs() / DAY.as_secs() {
        0 => plural(d.as_secs() / 3600, "hour"),
        days => plural(days, "day"),
    }
}
