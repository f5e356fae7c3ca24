//! `seguro eventlog`: run a replica's event log node, or inspect and change
//! the event log through any node.

use std::process::ExitCode;

use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;

use config::{Config, KeyCheck, Role as Identity};
use eventlog::{
    Client, ClientError, EtcdEpochs, EventNum, LogIndex, NodeError, NodeOptions, NodeStatus, Role,
};

use super::UsageError;
use crate::cli::{
    ClusterArgs, EventlogArgs, EventlogCommand, EventlogNodeArgs, EventlogReplicaArgs,
    EventlogStatusArgs, EventlogWatermarkArgs,
};

pub fn run(args: EventlogArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        None => node(args.node),
        Some(EventlogCommand::Status(a)) => status(a),
        Some(EventlogCommand::AddReplica(a)) => add_replica(a),
        Some(EventlogCommand::RemoveReplica(a)) => remove_replica(a),
        Some(EventlogCommand::SetWatermark(a)) => set_watermark(a),
    }
}

fn load(cluster: &ClusterArgs, keys: KeyCheck) -> anyhow::Result<Config> {
    super::load_config(&cluster.config, &cluster.overrides, keys)
}

async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

fn node(args: EventlogNodeArgs) -> anyhow::Result<ExitCode> {
    let id = args.id.expect("clap requires --id without a subcommand");
    let config = load(&args.cluster, KeyCheck::Replica(id))?;
    super::known_replica(&config, id)?;
    let credentials = super::credentials(&config, Identity::Replica(id))?;
    super::runtime()?.block_on(async {
        super::reload_on_sighup(credentials.clone());
        // Only the replica that holds an epoch in etcd may fence the
        // log at it: the node asks etcd's leader key (SPEC §6.5).
        let etcd = leadership::election::connect(&config.etcd.endpoints, &credentials)
            .await
            .with_context(|| format!("cannot use etcd at {}", config.etcd.endpoints.join(",")))?;
        let election = leadership::Election::new(etcd, &config.etcd_root(), config.etcd.lease_ttl);
        let epochs = Arc::new(EtcdEpochs {
            election,
            limit: Duration::from_secs(2),
        });
        let mut opts = NodeOptions::new(config, id, credentials, epochs);
        opts.data_dir = args.data_dir;
        eventlog::node::run(opts, terminated())
            .await
            .map_err(|e| match e {
                NodeError::UnknownReplica(_) => UsageError(e.to_string()).into(),
                other => anyhow::Error::new(other).context(format!("event log node {id}")),
            })
    })?;
    Ok(ExitCode::SUCCESS)
}

/// A client of the log presenting `identity`'s certificate.
fn client(cluster: &ClusterArgs, identity: Identity) -> anyhow::Result<(Config, Client)> {
    let keys = match identity {
        Identity::Replica(id) => KeyCheck::Replica(id),
        Identity::Edge => KeyCheck::Edge,
        _ => KeyCheck::Admin,
    };
    let config = load(cluster, keys)?;
    let credentials = super::credentials(&config, identity)?;
    let client = Client::new(&config, credentials);
    Ok((config, client))
}

fn add_replica(args: EventlogReplicaArgs) -> anyhow::Result<ExitCode> {
    let (config, client) = client(&args.cluster, Identity::Admin)?;
    let addr = super::known_replica(&config, args.id)?.eventlog;
    super::runtime()?
        .block_on(client.add_replica(args.id, addr))
        .with_context(|| format!("cannot add replica {} ({addr})", args.id))?;
    println!("replica {} ({addr}) is a voter", args.id);
    Ok(ExitCode::SUCCESS)
}

fn remove_replica(args: EventlogReplicaArgs) -> anyhow::Result<ExitCode> {
    let (_, client) = client(&args.cluster, Identity::Admin)?;
    super::runtime()?
        .block_on(client.remove_replica(args.id))
        .with_context(|| format!("cannot remove replica {}", args.id))?;
    println!("replica {} is removed", args.id);
    Ok(ExitCode::SUCCESS)
}

fn set_watermark(args: EventlogWatermarkArgs) -> anyhow::Result<ExitCode> {
    let (_, client) = client(&args.cluster, args.identity)?;
    let purge = super::runtime()?
        .block_on(client.set_watermark(args.replica, EventNum(args.event)))
        .with_context(|| format!("cannot set replica {}'s watermark", args.replica))?;
    println!(
        "replica {} checkpointed event {}; purge point {purge}",
        args.replica, args.event
    );
    Ok(ExitCode::SUCCESS)
}

/// The cluster as the nodes describe it: what `seguro eventlog status` and
/// `seguro status` both judge it by.
pub(crate) struct Summary<'a> {
    /// The node that says it leads, in the highest term.
    pub leader: Option<&'a NodeStatus>,
    pub voters: Vec<u32>,
    /// Voters that answered and are not down.
    pub up: usize,
}

impl Summary<'_> {
    /// Every voter up, and a leader.
    pub fn healthy(&self) -> bool {
        self.leader.is_some() && !self.voters.is_empty() && self.up == self.voters.len()
    }

    /// A leader and a quorum of voters up: appends can commit.
    pub fn usable(&self) -> bool {
        self.leader.is_some() && self.up > self.voters.len() / 2
    }
}

pub(crate) fn summarize(nodes: &[(String, Result<NodeStatus, ClientError>)]) -> Summary<'_> {
    let ok = || nodes.iter().filter_map(|(_, r)| r.as_ref().ok());
    let leader = ok()
        .filter(|s| s.role == Role::Leader)
        .max_by_key(|s| s.term);
    let voters: Vec<u32> = leader
        .or_else(|| ok().find(|s| !s.members.is_empty()))
        .map(|s| s.members.iter().filter(|m| m.voter).map(|m| m.id).collect())
        .unwrap_or_default();
    let up = ok()
        .filter(|s| s.role != Role::Down && voters.contains(&s.id))
        .count();
    Summary { leader, voters, up }
}

fn status(args: EventlogStatusArgs) -> anyhow::Result<ExitCode> {
    let (config, client) = client(&args.cluster, args.identity)?;
    let nodes = super::runtime()?.block_on(client.cluster_status());
    let s = summarize(&nodes);
    let (healthy, usable) = (s.healthy(), s.usable());
    if args.json {
        let nodes: Vec<_> = nodes
            .iter()
            .map(|(addr, r)| match r {
                Ok(s) => serde_json::json!({ "addr": addr, "status": s }),
                Err(e) => serde_json::json!({ "addr": addr, "error": e.to_string() }),
            })
            .collect();
        let out = serde_json::json!({
            "cluster": config.cluster,
            "leader": s.leader.map(|l| l.id),
            "voters": s.voters,
            "healthy": healthy,
            "nodes": nodes,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_table(&config, &nodes, &s);
        println!(
            "{}: {} of {} voters up{}",
            if healthy {
                "healthy"
            } else if usable {
                "degraded"
            } else {
                "unavailable"
            },
            s.up,
            s.voters.len(),
            if s.leader.is_none() {
                ", no leader"
            } else {
                ""
            }
        );
    }
    Ok(if usable {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_table(
    config: &Config,
    nodes: &[(String, Result<NodeStatus, ClientError>)],
    s: &Summary<'_>,
) {
    let opt = |v: Option<LogIndex>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    match s.leader {
        Some(l) => {
            println!(
                "event log of `{}`: leader {} ({}), term {}, commit index {}",
                config.cluster,
                l.id,
                l.addr,
                l.term,
                opt(l.committed_index)
            );
            if let Some(c) = l.commit {
                println!(
                    "committed event {} (epoch {}); on the leader's disk {}, on every voter's {}; purge point {}",
                    c.committed, c.epoch, c.leader_durable, c.all_durable, l.purge_point
                );
            }
        }
        None => println!("event log of `{}`: no leader", config.cluster),
    }
    let progress = |id: u32| {
        s.leader
            .and_then(|l| l.replication.iter().find(|p| p.id == id))
    };
    let rows: Vec<[String; 10]> = nodes
        .iter()
        .map(|(addr, r)| match r {
            Ok(n) => {
                let p = progress(n.id);
                let role =
                    if n.role != Role::Down && !s.voters.contains(&n.id) && !s.voters.is_empty() {
                        format!("{} (not a voter)", n.role)
                    } else {
                        n.role.to_string()
                    };
                [
                    n.id.to_string(),
                    addr.clone(),
                    role,
                    n.term.to_string(),
                    opt(n.last_log_index),
                    opt(n.committed_index),
                    opt(n.applied_index),
                    p.map_or("-".into(), |p| opt(p.matched)),
                    p.map_or("-".into(), |p| p.lag.to_string()),
                    n.error.clone().unwrap_or_else(|| n.last_event.to_string()),
                ]
            }
            Err(e) => {
                let id = config
                    .replicas
                    .iter()
                    .find(|r| r.eventlog.to_string() == *addr)
                    .map_or("?".into(), |r| r.id.to_string());
                let mut row: [String; 10] = Default::default();
                row[0] = id;
                row[1] = addr.clone();
                row[2] = "unreachable".into();
                row[9] = e.to_string();
                for c in &mut row[3..9] {
                    *c = "-".into();
                }
                row
            }
        })
        .collect();
    let header = [
        "ID",
        "ADDRESS",
        "ROLE",
        "TERM",
        "LAST LOG",
        "COMMITTED",
        "APPLIED",
        "MATCHED",
        "LAG",
        "LAST EVENT",
    ];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row.iter()).take(9) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i < 9 {
                out.push_str(&format!("{c:<w$}  ", w = widths[i]));
            } else {
                out.push_str(c);
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
}
