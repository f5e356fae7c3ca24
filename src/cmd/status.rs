//! `seguro status`: the whole cluster at a glance, from wherever etcd, the
//! event log and the metrics endpoints are reachable (the edge box): who
//! leads and in which epoch, the commit point, each replica's lag, the edge
//! fan-out's and the gatekeeper's counters, and optionally a probing peer's
//! answered ratio and round-trip time. A part that does not answer is shown
//! as such; it never stops the rest.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use config::{Config, KeyCheck};
use eventlog::{LogIndex, Role};
use serde::Serialize;
use telemetry::{Exposition, ProbeStats};
use trust::Credentials;

use crate::cli::StatusArgs;
use crate::cmd::{UsageError, load_config};

/// How long any one part may take to answer.
const PART_TIMEOUT: Duration = Duration::from_secs(1);

pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    // Only addresses and a certificate are needed, and the certificate is
    // checked as the etcd and event log parts (a host without it still sees
    // the rest).
    let config = load_config(
        &args.cluster.config,
        &args.cluster.overrides,
        KeyCheck::Skip,
    )?;
    let credentials = super::credentials(&config, args.identity).map_err(|e| format!("{e:#}"));
    if args.watch.is_some_and(|s| !(s.is_finite() && s > 0.0)) {
        return Err(UsageError("--watch takes a positive number of seconds".into()).into());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let Some(every) = args.watch else {
            let status = gather(&config, &credentials, args.probe.as_deref()).await;
            print(&status, args.json)?;
            return Ok(status.exit_code());
        };
        let every = Duration::from_secs_f64(every);
        // One listener for the whole watch: a signal that arrives while a
        // view is being gathered still stops it.
        let stop = crate::cmd::shutdown_signal();
        tokio::pin!(stop);
        loop {
            let status = tokio::select! {
                status = gather(&config, &credentials, args.probe.as_deref()) => status,
                _ = &mut stop => return Ok(ExitCode::SUCCESS),
            };
            if !args.json {
                // Clear the screen and go home, as `watch` does.
                print!("\x1b[H\x1b[2J");
            }
            print(&status, args.json)?;
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = &mut stop => return Ok(ExitCode::SUCCESS),
            }
        }
    })
}

/// Everything `seguro status` shows: `--json` prints it as is, the table is
/// rendered from it. A part that did not answer carries its error instead.
#[derive(Debug, Serialize)]
struct Status {
    cluster: String,
    leader: Reading<Leader>,
    eventlog: EventlogPart,
    replicas: Vec<ReplicaRow>,
    lb: Endpoint<LbView>,
    gatekeeper: Endpoint<GatekeeperView>,
    probe: Option<ProbePart>,
}

/// What a part said, or why it said nothing.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
enum Reading<T> {
    Ok(T),
    Failed { error: String },
}

impl<T> Reading<T> {
    fn failed(e: impl std::fmt::Display) -> Self {
        Reading::Failed {
            error: e.to_string(),
        }
    }

    fn ok(&self) -> Option<&T> {
        match self {
            Reading::Ok(t) => Some(t),
            Reading::Failed { .. } => None,
        }
    }
}

/// A metrics endpoint and what it said.
#[derive(Debug, Serialize)]
struct Endpoint<T> {
    addr: SocketAddr,
    #[serde(flatten)]
    reading: Reading<T>,
}

/// The leader key in etcd.
#[derive(Debug, Serialize)]
struct Leader {
    replica: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<&'static str>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum EventlogPart {
    Ok(EventlogView),
    Failed { error: String, usable: bool },
}

/// The event log as its nodes see it.
#[derive(Debug, Serialize)]
struct EventlogView {
    leader: Option<u32>,
    term: Option<u64>,
    last_event: Option<u64>,
    commit_index: Option<LogIndex>,
    epoch: Option<u64>,
    up: usize,
    usable: bool,
    nodes: Vec<NodeRow>,
}

/// One event log node.
#[derive(Debug, Clone, Serialize)]
struct NodeRow {
    id: Option<u32>,
    addr: String,
    role: Role,
    #[serde(flatten)]
    reading: Reading<NodeFacts>,
}

#[derive(Debug, Clone, Serialize)]
struct NodeFacts {
    term: u64,
    last_event: u64,
    committed_index: Option<LogIndex>,
    lag_entries: Option<u64>,
}

/// One replica: its agent and its event log node.
#[derive(Debug, Serialize)]
struct ReplicaRow {
    id: u32,
    agent: Endpoint<AgentView>,
    eventlog: Option<NodeRow>,
}

#[derive(Debug, Serialize)]
struct AgentView {
    leader: bool,
    epoch: u64,
    applied_event: u64,
    committed_event: u64,
    packets_received: u64,
    effects_sent: u64,
    mug_mismatches: u64,
    diverged: bool,
    /// Behind the highest committed event any agent reports.
    #[serde(skip_serializing_if = "Option::is_none")]
    lag_events: Option<u64>,
}

#[derive(Debug, Serialize)]
struct LbView {
    mode: Option<String>,
    packets: f64,
    copies: f64,
    dropped: f64,
    replicas_unresolved: f64,
}

#[derive(Debug, Serialize)]
struct GatekeeperView {
    active: bool,
    fail_closed: bool,
    leader: f64,
    epoch: f64,
    received: f64,
    forwarded: f64,
    dropped: f64,
    dropped_by_reason: BTreeMap<String, f64>,
}

/// The probe's stats file, or why it could not be read.
#[derive(Debug, Serialize)]
struct ProbePart {
    file: PathBuf,
    #[serde(flatten)]
    reading: Reading<ProbeStats>,
}

impl Status {
    /// 0 when a replica leads in etcd and the event log has a leader and a
    /// quorum; 1 otherwise.
    fn exit_code(&self) -> ExitCode {
        let leads = self.leader.ok().is_some_and(|l| l.replica.is_some());
        let log = matches!(&self.eventlog, EventlogPart::Ok(e) if e.usable);
        if leads && log {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}

/// Every part at once, each within its own time limit. Without
/// `credentials`, etcd and the event log are shown as unreachable, and why.
async fn gather(
    config: &Config,
    credentials: &Result<Credentials, String>,
    probe: Option<&Path>,
) -> Status {
    let agents = futures::future::join_all(config.replicas.iter().map(|r| agent(r.metrics)));
    let (leader, eventlog, lb, gatekeeper, agents) = tokio::join!(
        leader(config, credentials),
        eventlog(config, credentials),
        lb(config.lb.metrics),
        gatekeeper(config.gatekeeper.metrics),
        agents,
    );
    let mut agents: Vec<Endpoint<AgentView>> = agents;
    let committed = agents
        .iter()
        .filter_map(|a| a.reading.ok().map(|a| a.committed_event))
        .max();
    for a in &mut agents {
        if let (Some(c), Reading::Ok(view)) = (committed, &mut a.reading) {
            view.lag_events = Some(c.saturating_sub(view.applied_event));
        }
    }
    let replicas = config
        .replicas
        .iter()
        .zip(agents)
        .map(|(r, agent)| {
            let id = r.id.get();
            let node = match &eventlog {
                EventlogPart::Ok(e) => e.nodes.iter().find(|n| n.id == Some(id)).cloned(),
                EventlogPart::Failed { .. } => None,
            };
            ReplicaRow {
                id,
                agent,
                eventlog: node,
            }
        })
        .collect();
    Status {
        cluster: config.cluster.clone(),
        leader,
        eventlog,
        replicas,
        lb,
        gatekeeper,
        probe: probe.map(read_probe),
    }
}

/// The leader key in etcd: the replica and the epoch (its creation
/// revision).
async fn leader(config: &Config, credentials: &Result<Credentials, String>) -> Reading<Leader> {
    use leadership::election::{Election, connect};
    let credentials = match credentials {
        Ok(c) => c,
        Err(e) => return Reading::failed(e),
    };
    let limit = PART_TIMEOUT * 2;
    let ask = async {
        let client = connect(&config.etcd.endpoints, credentials).await?;
        Election::new(client, &config.etcd_root(), config.etcd.lease_ttl)
            .current(limit)
            .await
    };
    match tokio::time::timeout(limit, ask).await {
        Ok(Ok(Some(term))) => Reading::Ok(Leader {
            replica: Some(term.leader.get()),
            epoch: Some(term.epoch.get()),
            note: None,
        }),
        Ok(Ok(None)) => Reading::Ok(Leader {
            replica: None,
            epoch: None,
            note: Some("nobody leads"),
        }),
        Ok(Err(e)) => Reading::failed(e),
        Err(_) => Reading::failed(format!("etcd did not answer within {limit:?}")),
    }
}

/// The event log as its nodes see it.
async fn eventlog(config: &Config, credentials: &Result<Credentials, String>) -> EventlogPart {
    let credentials = match credentials {
        Ok(c) => c.clone(),
        Err(e) => {
            return EventlogPart::Failed {
                error: e.clone(),
                usable: false,
            };
        }
    };
    let mut opts = eventlog::ClientOptions::from_config(config);
    opts.request_timeout = PART_TIMEOUT;
    let nodes = config.replicas.iter().map(|r| (r.id, r.eventlog)).collect();
    let client = eventlog::Client::with_options(nodes, credentials, opts);
    let nodes = client.cluster_status().await;
    let summary = super::eventlog::summarize(&nodes);
    let leader = summary.leader;
    let lags: BTreeMap<u32, u64> = leader
        .map(|l| l.replication.iter().map(|p| (p.id, p.lag)).collect())
        .unwrap_or_default();
    let nodes = nodes
        .iter()
        .map(|(addr, r)| match r {
            Ok(s) => NodeRow {
                id: Some(s.id),
                addr: addr.clone(),
                role: s.role,
                reading: Reading::Ok(NodeFacts {
                    term: s.term,
                    last_event: s.last_event.get(),
                    committed_index: s.committed_index,
                    lag_entries: lags.get(&s.id).copied(),
                }),
            },
            Err(e) => NodeRow {
                id: config
                    .replicas
                    .iter()
                    .find(|c| c.eventlog.to_string() == *addr)
                    .map(|c| c.id.get()),
                addr: addr.clone(),
                role: Role::Down,
                reading: Reading::failed(e),
            },
        })
        .collect();
    EventlogPart::Ok(EventlogView {
        leader: leader.map(|l| l.id),
        term: leader.map(|l| l.term),
        last_event: leader.map(|l| l.last_event.get()),
        commit_index: leader.and_then(|l| l.committed_index),
        epoch: leader.map(|l| l.highest_epoch.get()),
        up: summary.up,
        usable: summary.usable(),
        nodes,
    })
}

/// Scrapes `addr` and reads what it says with `view`.
async fn endpoint<T>(addr: SocketAddr, view: impl FnOnce(&Exposition) -> T) -> Endpoint<T> {
    let reading = match telemetry::scrape(addr, PART_TIMEOUT).await {
        Ok(m) => Reading::Ok(view(&m)),
        Err(e) => Reading::failed(e),
    };
    Endpoint { addr, reading }
}

/// The edge fan-out's counters.
async fn lb(addr: SocketAddr) -> Endpoint<LbView> {
    endpoint(addr, |m| LbView {
        mode: m
            .by_label("seguro_lb_mode", "mode")
            .into_iter()
            .find(|(_, v)| *v == 1.0)
            .map(|(k, _)| k),
        packets: m.sum("seguro_lb_packets_total"),
        copies: m.sum("seguro_lb_copies_total"),
        dropped: m.sum("seguro_lb_dropped_total"),
        replicas_unresolved: m.sum("seguro_lb_replicas_unresolved"),
    })
    .await
}

/// The gatekeeper's state and counters.
async fn gatekeeper(addr: SocketAddr) -> Endpoint<GatekeeperView> {
    endpoint(addr, |m| GatekeeperView {
        active: m.sum("seguro_gatekeeper_active") == 1.0,
        fail_closed: m.sum("seguro_gatekeeper_fail_closed") == 1.0,
        leader: m.sum("seguro_gatekeeper_leader"),
        epoch: m.sum("seguro_gatekeeper_epoch"),
        received: m.sum("seguro_gatekeeper_received_total"),
        forwarded: m.sum("seguro_gatekeeper_forwarded_total"),
        dropped: m.sum("seguro_gatekeeper_dropped_total"),
        dropped_by_reason: m
            .by_label("seguro_gatekeeper_dropped_total", "reason")
            .into_iter()
            .filter(|(_, v)| *v > 0.0)
            .collect(),
    })
    .await
}

/// One agent's view of the ship.
async fn agent(addr: SocketAddr) -> Endpoint<AgentView> {
    endpoint(addr, |m| AgentView {
        leader: m.sum("seguro_replica_leader") == 1.0,
        epoch: m.sum("seguro_replica_epoch") as u64,
        applied_event: m.sum("seguro_replica_applied_event") as u64,
        committed_event: m.sum("seguro_replica_committed_event") as u64,
        packets_received: m.sum("seguro_replica_packets_received_total") as u64,
        effects_sent: m.sum("seguro_replica_effects_sent_total") as u64,
        mug_mismatches: m.sum("seguro_replica_mug_mismatches_total") as u64,
        diverged: m.sum("seguro_replica_diverged") == 1.0,
        lag_events: None,
    })
    .await
}

/// The probe's stats file (written by the peer of `make run`), or why not.
fn read_probe(path: &Path) -> ProbePart {
    let reading = match std::fs::read_to_string(path) {
        Err(e) => Reading::failed(e),
        Ok(text) => match serde_json::from_str::<serde_json::Value>(&text) {
            Err(e) => Reading::failed(format!("not JSON: {e}")),
            Ok(v) if !v.is_object() => Reading::failed("not a JSON object"),
            Ok(v) => serde_json::from_value(v).map_or_else(
                |e| Reading::failed(format!("not probe stats: {e}")),
                Reading::Ok,
            ),
        },
    };
    ProbePart {
        file: path.to_owned(),
        reading,
    }
}

fn print(status: &Status, json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(status)?)?;
    } else {
        out.write_all(render(status).as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

/// A counter read as a float: whole ones print without a fraction.
fn count(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        v.to_string()
    }
}

/// A value that may be missing.
fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// The human view.
fn render(s: &Status) -> String {
    let mut o = String::new();
    o += &format!("cluster {}\n", s.cluster);
    o += &match &s.leader {
        Reading::Failed { error } => format!("leader      unknown ({error})\n"),
        Reading::Ok(Leader { replica: None, .. }) => "leader      none\n".to_string(),
        Reading::Ok(l) => format!(
            "leader      replica {}, epoch {}\n",
            opt(l.replica),
            opt(l.epoch)
        ),
    };
    o += &match &s.eventlog {
        EventlogPart::Failed { error, .. } => format!("event log   unavailable ({error})\n"),
        EventlogPart::Ok(e) => format!(
            "event log   leader {}, term {}, last event {}, commit index {}, {} of {} nodes up{}\n",
            opt(e.leader),
            opt(e.term),
            opt(e.last_event),
            opt(e.commit_index),
            e.up,
            s.replicas.len(),
            if e.usable {
                ""
            } else {
                " (no quorum or no leader)"
            }
        ),
    };
    o +=
        "\nreplica  agent      applied  committed  lag  log role   log last  log lag  mismatches\n";
    for r in &s.replicas {
        let a = r.agent.reading.ok();
        let n = r.eventlog.as_ref();
        let facts = n.and_then(|n| n.reading.ok());
        let role = match a {
            None => "down",
            Some(a) if a.diverged => "DIVERGED",
            Some(a) if a.leader => "leader",
            Some(_) => "follower",
        };
        o += &format!(
            "{:<8} {:<10} {:>7}  {:>9}  {:>3}  {:<9}  {:>8}  {:>7}  {:>10}\n",
            r.id,
            role,
            opt(a.map(|a| a.applied_event)),
            opt(a.map(|a| a.committed_event)),
            opt(a.and_then(|a| a.lag_events)),
            n.map_or("-", |n| n.role.as_str()),
            opt(facts.map(|f| f.last_event)),
            opt(facts.and_then(|f| f.lag_entries)),
            opt(a.map(|a| a.mug_mismatches)),
        );
    }
    o += &match &s.lb.reading {
        Reading::Failed { error } => format!("\nedge lb     unreachable ({error})\n"),
        Reading::Ok(lb) => format!(
            "\nedge lb     {}: {} packets for the ship, {} copies, {} dropped, {} replicas unresolved\n",
            lb.mode.as_deref().unwrap_or("?"),
            count(lb.packets),
            count(lb.copies),
            count(lb.dropped),
            count(lb.replicas_unresolved),
        ),
    };
    o += &match &s.gatekeeper.reading {
        Reading::Failed { error } => format!("gatekeeper  unreachable ({error})\n"),
        Reading::Ok(g) => {
            let reasons: Vec<String> = g
                .dropped_by_reason
                .iter()
                .map(|(k, v)| format!("{k} {}", count(*v)))
                .collect();
            format!(
                "gatekeeper  {}{}: forwarded {}, dropped {}{}\n",
                if g.active { "active" } else { "standby" },
                if g.fail_closed { ", FAIL-CLOSED" } else { "" },
                count(g.forwarded),
                count(g.dropped),
                if reasons.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", reasons.join(", "))
                }
            )
        }
    };
    if let Some(p) = &s.probe {
        o += &match &p.reading {
            Reading::Failed { error } => format!("peer        no probe stats ({error})\n"),
            Reading::Ok(p) => format!(
                "peer        sent {}, answered {} ({:.2}%), duplicates {}, rtt p50 {} ms p99 {} ms (last 10 s)\n",
                p.sent,
                p.answered,
                p.answered_ratio * 100.0,
                p.duplicates,
                opt(p.rtt_p50_ms),
                opt(p.rtt_p99_ms),
            ),
        };
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_unreachable_parts_without_panicking() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let s = Status {
            cluster: "c".into(),
            leader: Reading::failed("etcd: refused"),
            eventlog: EventlogPart::Failed {
                error: "no key".into(),
                usable: false,
            },
            replicas: vec![ReplicaRow {
                id: 1,
                agent: Endpoint {
                    addr,
                    reading: Reading::failed("down"),
                },
                eventlog: None,
            }],
            lb: Endpoint {
                addr,
                reading: Reading::failed("refused"),
            },
            gatekeeper: Endpoint {
                addr,
                reading: Reading::failed("refused"),
            },
            probe: Some(ProbePart {
                file: "p.json".into(),
                reading: Reading::failed("no file"),
            }),
        };
        let text = render(&s);
        assert!(
            text.contains("leader      unknown (etcd: refused)"),
            "{text}"
        );
        assert!(text.contains("edge lb     unreachable"), "{text}");
        assert!(text.contains("1        down"), "{text}");
        assert_eq!(s.exit_code(), ExitCode::FAILURE);
        // The JSON keeps every part's error where scripts look for it.
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["leader"]["error"], "etcd: refused", "{v}");
        assert_eq!(v["eventlog"]["usable"], false, "{v}");
        assert_eq!(v["lb"]["addr"], "127.0.0.1:9", "{v}");
        assert_eq!(v["lb"]["error"], "refused", "{v}");
        assert_eq!(v["replicas"][0]["agent"]["error"], "down", "{v}");
        assert_eq!(v["probe"]["file"], "p.json", "{v}");
        assert_eq!(v["probe"]["error"], "no file", "{v}");
    }
}
