//! The command line: every subcommand and option, with its help text.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use config::Optimism;

/// Keeps an Urbit ship alive through a hardware failure.
///
/// Seguro runs one ship on several replica hosts behind one edge box: the edge
/// box copies every inbound Ames packet to every replica, the replicas keep
/// the event log on a quorum of disks, and only the elected leader's effects
/// leave, once their events are committed.
#[derive(Debug, Parser)]
#[command(
    name = "seguro",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// More log output (-v debug, -vv trace); RUST_LOG overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a cluster config file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Inspect Ames packets.
    #[command(subcommand)]
    Ames(AmesCommand),
    /// Create secret key files (each replica's effect envelope key).
    Keygen(KeygenArgs),
    /// Make the cluster's CA, issue each role's certificate, show a certificate.
    ///
    /// Every TCP connection between Seguro's parts is mutual TLS under one
    /// cluster CA; docs/DEPLOY.md walks through issuing, distributing and
    /// rotating the certificates.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Set up etcd's access control for the cluster.
    #[command(subcommand)]
    Etcd(EtcdCommand),
    /// Run this replica's event log node, or inspect and change the event log.
    ///
    /// Without a subcommand, runs the node for replica `--id` (SIGTERM or
    /// SIGINT stop it cleanly).
    Eventlog(EventlogArgs),
    /// Run the edge box's effect gatekeeper.
    ///
    /// Receives effect envelopes from the replicas on `gatekeeper.listen`
    /// and sends the current leader's authentic, new effects to their lanes
    /// from `ship.public`. Follows the election in etcd, fails closed when
    /// etcd cannot confirm it for a lease TTL, and forwards only while it
    /// holds the etcd key `<prefix>/<cluster>/gatekeeper` (one active edge
    /// box; others stand by). Exits 0 on SIGINT/SIGTERM after resigning.
    Gatekeeper(GatekeeperArgs),
    /// Run the edge fan-out: copy every packet for the ship to every replica.
    ///
    /// Attaches the XDP classifier and TC cloner to `lb.interface` (or, with
    /// `lb.mode = "userspace"`, relays through sockets), serves metrics on
    /// `lb.metrics`, reloads the replica set on SIGHUP and when the config
    /// file changes, and detaches everything on SIGTERM or SIGINT.
    ///
    /// Exit codes: 0 after a clean stop; 2 for a config that is invalid or
    /// does not fit this host (e.g. no such interface); 69 when this kernel
    /// cannot run eBPF programs; 77 when not root (or without the
    /// capabilities the mode needs); 1 for anything else.
    Lb(LbArgs),
    /// Run the agent beside replica `--id`'s ship.
    ///
    /// Receives the edge box's copies of inbound packets on the replica's
    /// `ames` address, campaigns for leadership in etcd, and then either
    /// leads (turns packets into events, appends them to the event log, sends
    /// the effects to the gatekeeper) or follows (applies committed events
    /// and checks its ship's state against the leader's). Serves metrics and
    /// its latest checkpoint on the replica's `metrics` address. SIGTERM or
    /// SIGINT: a leader resigns at once, then it exits 0.
    Replica(ReplicaArgs),
    /// Show the whole cluster: leader and epoch, commit point, each replica's
    /// lag, the edge fan-out's and the gatekeeper's counters.
    ///
    /// Reads the leader key from etcd, asks every event log node, and scrapes
    /// the lb, gatekeeper and replica metrics endpoints the config names;
    /// run it where those are reachable (the edge box). A part that does not
    /// answer is shown as unreachable. With `--probe FILE`, also shows the
    /// answered ratio and round-trip times a probing peer wrote to FILE
    /// (`make run`'s peer writes .run/probe.json).
    ///
    /// Exit codes: 0 when a replica leads in etcd and the event log has a
    /// leader and a quorum; 1 when not; 2 for bad usage or config. With
    /// `--watch`, runs until SIGINT/SIGTERM and exits 0.
    Status(StatusArgs),
    /// Move a ship between an urbit pier and Seguro's event log.
    ///
    /// docs/DEPLOY.md, "Moving an existing ship onto Seguro", walks through
    /// it; docs/PERFORMANCE.md has the import rate.
    #[command(subcommand)]
    Pier(PierCommand),
}

#[derive(Debug, Subcommand)]
pub enum PierCommand {
    /// Append a stopped pier's whole event log to Seguro's event log.
    ///
    /// Checks the whole pier first (not running, META version 3, every epoch
    /// and event readable and contiguous from event 1) and appends nothing
    /// if any check fails. Then takes the leadership in etcd as replica
    /// `--id` (stop every agent first), fences the log at its epoch, checks
    /// that events already in the log (an interrupted import) are the
    /// pier's, and appends the rest. Run it again to resume.
    ///
    /// Exit codes: 0 when the log holds the whole pier; 1 when the pier is
    /// unusable, the log holds other events, or appending failed; 2 for bad
    /// usage or config.
    Import(PierImportArgs),
    /// Write the event log's committed events as a new pier's `.urb/log`.
    ///
    /// One epoch, 0i0, with every event and no snapshot: vere replays the
    /// ship from its first event. META comes from `--meta-from` (a pier of
    /// the same ship, e.g. the one imported) or from `--who`/`--life`/`--fake`.
    Export(PierExportArgs),
}

#[derive(Debug, Args)]
pub struct PierImportArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// The replica whose certificate and election key the import uses.
    #[arg(long, value_name = "N")]
    pub id: config::ReplicaId,

    /// Give up if another replica still leads after SECS seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub wait: f64,

    /// The pier directory (the one holding `.urb`).
    #[arg(value_name = "PIER")]
    pub pier: PathBuf,
}

#[derive(Debug, Args)]
pub struct PierExportArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// The replica whose certificate reads the log.
    #[arg(long, value_name = "N")]
    pub id: config::ReplicaId,

    /// Copy META, `epoc.txt` and `vere.txt` from this pier (exactly as stored).
    #[arg(long, value_name = "PIER", conflicts_with_all = ["who", "life", "fake"])]
    pub meta_from: Option<PathBuf>,

    /// The ship's address as a number (decimal or 0x hex).
    #[arg(long, value_name = "N", required_unless_present = "meta_from")]
    pub who: Option<String>,

    /// META `life`: how many boot events the log begins with.
    #[arg(long, value_name = "N", required_unless_present = "meta_from")]
    pub life: Option<u32>,

    /// A fake ship (`urbit -F`).
    #[arg(long)]
    pub fake: bool,

    /// What to write in `vere.txt` when no pier gives it.
    #[arg(long, value_name = "VERSION", default_value = "4.5")]
    pub vere: String,

    /// The pier directory to write `.urb/log` into (created if absent; its
    /// `.urb/log` must not exist or be empty).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Whose certificate to present to the event log and etcd: `edge` (the
    /// edge box's, where this usually runs), `admin`, or `replica-N`.
    #[arg(long = "as", value_name = "ROLE", default_value = "edge")]
    pub identity: config::Role,

    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Refresh every SECS seconds until interrupted.
    #[arg(long, value_name = "SECS")]
    pub watch: Option<f64>,

    /// A probing peer's stats file (JSON) to show too.
    #[arg(long, value_name = "FILE")]
    pub probe: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct EventlogArgs {
    #[command(subcommand)]
    pub command: Option<EventlogCommand>,

    #[command(flatten)]
    pub node: EventlogNodeArgs,
}

#[derive(Debug, Args)]
pub struct EventlogNodeArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// This replica's id in the config.
    #[arg(long, value_name = "N", required = true)]
    pub id: Option<config::ReplicaId>,

    /// Keep the node's files under DIR/replica-N instead of eventlog.data_dir.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum EventlogCommand {
    /// Show every node: role, term, log and commit indexes, lag.
    ///
    /// Exits 0 if the cluster has a leader and a quorum of voters up, 1 if not.
    Status(EventlogStatusArgs),
    /// Add replica N (from the config) to the event log: it catches up, then votes.
    AddReplica(EventlogReplicaArgs),
    /// Remove replica N from the event log's voters.
    RemoveReplica(EventlogReplicaArgs),
    /// Record that replica N's ship has checkpointed event E (the log is
    /// purged below the lowest such watermark of all voters).
    SetWatermark(EventlogWatermarkArgs),
}

#[derive(Debug, Args)]
pub struct EventlogStatusArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Whose certificate to present: `admin`, `edge`, or `replica-N`.
    #[arg(long = "as", value_name = "ROLE", default_value = "admin")]
    pub identity: config::Role,

    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EventlogReplicaArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// The replica's id in the config.
    #[arg(long, value_name = "N")]
    pub id: config::ReplicaId,
}

#[derive(Debug, Args)]
pub struct EventlogWatermarkArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Whose certificate to present: `admin`, or the replica itself
    /// (`replica-N`); no one else may.
    #[arg(long = "as", value_name = "ROLE", default_value = "admin")]
    pub identity: config::Role,

    /// The replica whose ship checkpointed.
    #[arg(long, value_name = "N")]
    pub replica: config::ReplicaId,

    /// The last event in its checkpoint.
    #[arg(long, value_name = "E")]
    pub event: u64,
}

#[derive(Debug, Args)]
pub struct GatekeeperArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Debug, Args)]
pub struct LbArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Debug, Args)]
pub struct ReplicaArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// This replica's id in the config.
    #[arg(long, value_name = "N")]
    pub id: config::ReplicaId,

    /// The ship to run: `reference` (deterministic; answers every Ames
    /// packet with its event number and state mug), `vere` (the same answers
    /// and chain, with vere's jammed `%hear`/`%heer` events: it can share a
    /// cluster with the C vere-shaped runtime) or `nondeterministic` (the
    /// reference ship salted per process: only for testing the determinism
    /// check).
    #[arg(long, value_name = "SHIP", default_value = "reference")]
    pub ship: ShipKind,
}

/// The in-process ships `seguro replica` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ShipKind {
    Reference,
    Vere,
    Nondeterministic,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file; print every problem as FILE:LINE:COL.
    ///
    /// Exits 0 if the file is usable (warnings are printed), 2 if not.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The config file to check.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Which key and certificate files must be present (and the
    /// certificates valid for their role): `all` (the operator's master
    /// copy), `edge` (the edge box's), `replica=ID` (one replica host's),
    /// `admin` (the operator's admin certificate) or `none`.
    #[arg(long, value_name = "WHERE", default_value = "all")]
    pub keys: KeysScope,

    #[command(flatten)]
    pub overrides: OverrideArgs,
}

/// Whose key files `config check` insists on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeysScope {
    All,
    Edge,
    Replica(config::ReplicaId),
    Admin,
    None,
}

impl std::str::FromStr for KeysScope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => Ok(Self::All),
            "edge" => Ok(Self::Edge),
            "admin" => Ok(Self::Admin),
            "none" => Ok(Self::None),
            _ => match s.strip_prefix("replica=") {
                Some(id) => id.parse().map(Self::Replica),
                None => Err(format!(
                    "`{s}` is not one of: all, edge, replica=ID, admin, none"
                )),
            },
        }
    }
}

/// The options every daemon takes to find and adjust the cluster config.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// The cluster config file.
    #[arg(
        short,
        long,
        value_name = "FILE",
        env = "SEGURO_CONFIG",
        default_value = "/etc/seguro/seguro.toml"
    )]
    pub config: PathBuf,

    #[command(flatten)]
    pub overrides: OverrideArgs,
}

/// Command-line replacements for parts of the config file.
#[derive(Debug, Args)]
pub struct OverrideArgs {
    /// Replace the config's replicas with these Ames addresses, numbered 1, 2, 3...
    /// in order; their other settings take the defaults.
    #[arg(
        short = 'r',
        long = "replicas",
        visible_alias = "machines",
        short_alias = 'm',
        value_name = "IP:PORT,...",
        value_delimiter = ','
    )]
    pub replicas: Option<Vec<SocketAddr>>,

    /// When effects may leave: quorum (default), leader or all.
    #[arg(short, long, value_name = "POLICY")]
    pub optimism: Option<Optimism>,
}

#[derive(Debug, Subcommand)]
pub enum AmesCommand {
    /// Decode one packet given as hex and say what it is.
    ///
    /// Prints the packet's class (ames, fine-request, fine-response, stun,
    /// mesa or malformed) and, for Ames, its header, prelude and mug check.
    /// Exits 1 if the packet is malformed, saying why.
    Decode(DecodeArgs),
}

#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// The UDP payload in hex; spaces and colons are ignored.
    #[arg(value_name = "HEX", num_args = 1.., required = true)]
    pub hex: Vec<String>,

    /// Print one JSON object instead of `key: value` lines.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Key files to create (readable by their owner only); existing files are
    /// never overwritten.
    #[arg(value_name = "FILE", num_args = 1.., required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Make the cluster's CA: `ca.crt` and `ca.key` in `tls.dir`.
    ///
    /// Both are written readable by their owner only (0600), and an
    /// existing file is never overwritten. `ca.crt` is the CA bundle every
    /// host trusts (`tls.ca`); `ca.key` signs every certificate of the
    /// cluster: keep it on the operator's machine, never on a replica host
    /// or the edge box.
    Ca(CertsCaArgs),
    /// Issue each ROLE a certificate and key, signed by the cluster's CA,
    /// at the paths the config names (defaults under `tls.dir`).
    ///
    /// ROLE is `replica-<id>`, `edge`, `admin`, `etcd` (etcd's server
    /// certificate, `<tls.dir>/etcd.crt` and `etcd.key`) or `all`. The CA's
    /// certificate is the one in the config's CA bundle (`tls.ca`) whose key
    /// is `--ca-key`. Files are written 0600 and never overwritten: to
    /// renew, move the old ones aside first.
    ///
    /// Exit codes: 0 when every role was issued; 1 when a file exists or
    /// cannot be written (that role gets nothing, the others are issued) or
    /// the CA cannot be read; 2 for bad usage or config.
    Issue(CertsIssueArgs),
    /// Show what certificate files say: identity, issuer, validity.
    ///
    /// Exit codes: 0; 1 when a file cannot be read or holds no certificate,
    /// or, with `--expires-within`, when a certificate expires that soon.
    Show(CertsShowArgs),
}

#[derive(Debug, Subcommand)]
pub enum EtcdCommand {
    /// Give each identity of the cluster an etcd user and role allowed only
    /// its own keys, and turn etcd's authentication on.
    ///
    /// Replicas may read and write the leader key; the edge box the
    /// gatekeeper key, and read the leader key; the admin may read every
    /// key of the cluster (docs/SPEC.md §6.5). Users are the certificates'
    /// names: etcd must run with `--client-cert-auth`. The first run creates
    /// etcd's `root` user with the password in `--root-password-file`; later
    /// runs (after adding a replica) log in as root with it. Run it with the
    /// admin certificate, from the operator's machine. Changes nothing that
    /// is already as it should be.
    ///
    /// Exit codes: 0 when done; 1 when etcd cannot be reached or refuses;
    /// 2 for bad usage or config.
    Grant(EtcdGrantArgs),
}

#[derive(Debug, Args)]
pub struct EtcdGrantArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// A file holding etcd's root password (one line; keep it 0600, on the
    /// operator's machine only). The password never appears on a command
    /// line.
    #[arg(long, value_name = "FILE")]
    pub root_password_file: PathBuf,
}

#[derive(Debug, Args)]
pub struct CertsCaArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Write `ca.crt` and `ca.key` in DIR instead of `tls.dir` (a new CA
    /// during a rotation).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// How many days the CA is valid.
    #[arg(long, value_name = "N", default_value_t = days(trust::issue::CA_VALIDITY), value_parser = clap::value_parser!(u32).range(1..))]
    pub days: u32,
}

#[derive(Debug, Args)]
pub struct CertsIssueArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// `replica-<id>`, `edge`, `admin`, `etcd` or `all`.
    #[arg(value_name = "ROLE", num_args = 1.., required = true)]
    pub roles: Vec<RoleArg>,

    /// The CA's private key [default: <tls.dir>/ca.key].
    #[arg(long, value_name = "PATH")]
    pub ca_key: Option<PathBuf>,

    /// How many days each certificate is valid.
    #[arg(long, value_name = "N", default_value_t = days(trust::issue::LEAF_VALIDITY), value_parser = clap::value_parser!(u32).range(1..))]
    pub days: u32,
}

/// A role to issue a certificate for, or all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleArg {
    One(config::Role),
    All,
}

impl std::str::FromStr for RoleArg {
    type Err = config::IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => Ok(Self::All),
            _ => s.parse().map(Self::One),
        }
    }
}

#[derive(Debug, Args)]
pub struct CertsShowArgs {
    /// Certificate files (PEM); every certificate in each is shown.
    #[arg(value_name = "FILE", num_args = 1.., required = true)]
    pub files: Vec<PathBuf>,

    /// Exit 1 if a certificate has expired or expires within N days (for
    /// monitoring).
    #[arg(long, value_name = "N")]
    pub expires_within: Option<u32>,
}

/// Whole days in `d`, for the defaults of `--days`.
fn days(d: std::time::Duration) -> u32 {
    u32::try_from(d.as_secs() / (24 * 3600)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn replicas_take_a_list_and_machines_is_an_alias() {
        let cli = Cli::try_parse_from([
            "seguro",
            "config",
            "check",
            "f.toml",
            "-m",
            "10.0.0.1:1,10.0.0.2:1",
            "-o",
            "leader",
        ])
        .unwrap();
        let Command::Config(ConfigCommand::Check(args)) = cli.command else {
            panic!()
        };
        assert_eq!(args.overrides.replicas.unwrap().len(), 2);
        assert_eq!(args.overrides.optimism, Some(Optimism::Leader));
        assert!(
            Cli::try_parse_from(["seguro", "config", "check", "f.toml", "-o", "fast"]).is_err()
        );
    }

    #[test]
    fn eventlog_runs_a_node_or_a_subcommand() {
        let cli = Cli::try_parse_from(["seguro", "eventlog", "-c", "f.toml", "--id", "2"]).unwrap();
        let Command::Eventlog(args) = cli.command else {
            panic!()
        };
        assert!(args.command.is_none());
        assert_eq!(args.node.id.unwrap().get(), 2);
        assert!(Cli::try_parse_from(["seguro", "eventlog", "-c", "f.toml"]).is_err());
        let cli = Cli::try_parse_from(["seguro", "eventlog", "status", "-c", "f.toml", "--json"])
            .unwrap();
        let Command::Eventlog(args) = cli.command else {
            panic!()
        };
        assert!(matches!(args.command, Some(EventlogCommand::Status(s)) if s.json));
    }

    #[test]
    fn certs_issue_takes_roles_and_all() {
        let cli = Cli::try_parse_from([
            "seguro",
            "certs",
            "issue",
            "-c",
            "f.toml",
            "replica-2",
            "edge",
            "all",
        ])
        .unwrap();
        let Command::Certs(CertsCommand::Issue(args)) = cli.command else {
            panic!()
        };
        let two = config::ReplicaId::new(2).unwrap();
        assert_eq!(
            args.roles,
            [
                RoleArg::One(config::Role::Replica(two)),
                RoleArg::One(config::Role::Edge),
                RoleArg::All
            ]
        );
        assert_eq!(args.days, 365);
        for bad in ["replica-0", "boss"] {
            assert!(
                Cli::try_parse_from(["seguro", "certs", "issue", "-c", "f.toml", bad]).is_err(),
                "{bad}"
            );
        }
        assert!(Cli::try_parse_from(["seguro", "certs", "ca", "--days", "0"]).is_err());
    }
}
