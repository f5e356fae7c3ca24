//! `seguro status`: the whole cluster at a glance, from wherever etcd, the
//! event log and the metrics endpoints are reachable (the edge box): who
//! leads and in which epoch, the commit point, each replica's lag, the edge
//! fan-out's and the gatekeeper's counters, and optionally a probing peer's
//! answered ratio and round-trip time. A part that does not answer is shown
//! as such; it never stops the rest.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use config::{Config, Key, KeyCheck};
use serde_json::{Value, json};

use crate::cli::StatusArgs;
use crate::cmd::{UsageError, load_config};

/// How long any one part may take to answer.
const PART_TIMEOUT: Duration = Duration::from_secs(1);

pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    // Only addresses and the event log secret are needed, and the secret is
    // checked as the event log part (a host without it still sees the rest).
    let config = load_config(
        &args.cluster.config,
        &args.cluster.overrides,
        KeyCheck::Skip,
    )?;
    if args.watch.is_some_and(|s| !(s.is_finite() && s > 0.0)) {
        return Err(UsageError("--watch takes a positive number of seconds".into()).into());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let Some(every) = args.watch else {
            let status = gather(&config, args.probe.as_deref()).await;
            print(&status, args.json)?;
            return Ok(exit_code(&status));
        };
        let every = Duration::from_secs_f64(every);
        // One listener for the whole watch: a signal that arrives while a
        // view is being gathered still stops it.
        let stop = crate::cmd::shutdown_signal();
        tokio::pin!(stop);
        loop {
            let status = tokio::select! {
                status = gather(&config, args.probe.as_deref()) => status,
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

/// 0 when a replica leads in etcd and the event log has a leader and a
/// quorum; 1 otherwise.
fn exit_code(status: &Value) -> ExitCode {
    let leads = status["leader"]["replica"].is_u64();
    let log = status["eventlog"]["usable"] == Value::Bool(true);
    if leads && log {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Everything, as one JSON value (`--json` prints it as is).
async fn gather(config: &Config, probe: Option<&Path>) -> Value {
    let (leader, eventlog) = tokio::join!(leader(config), eventlog(config));
    let scrape_all = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || scrape_all(&config))
    };
    let (lb, gatekeeper, agents) = scrape_all
        .await
        .unwrap_or_else(|e| (part_error(&e), part_error(&e), BTreeMap::new()));
    let committed = agents
        .values()
        .filter_map(|a| a["committed_event"].as_u64())
        .max();
    let replicas: Vec<Value> = config
        .replicas
        .iter()
        .map(|r| {
            let id = r.id.get();
            let mut agent = agents.get(&id).cloned().unwrap_or(Value::Null);
            if let (Some(c), Some(applied)) = (committed, agent["applied_event"].as_u64()) {
                agent["lag_events"] = json!(c.saturating_sub(applied));
            }
            let node = eventlog["nodes"]
                .as_array()
                .and_then(|n| n.iter().find(|n| n["id"] == json!(id)))
                .cloned()
                .unwrap_or(Value::Null);
            json!({ "id": id, "agent": agent, "eventlog": node })
        })
        .collect();
    json!({
        "cluster": config.cluster,
        "leader": leader,
        "eventlog": eventlog,
        "replicas": replicas,
        "lb": lb,
        "gatekeeper": gatekeeper,
        "probe": probe.map(read_probe),
    })
}

fn part_error(e: impl std::fmt::Display) -> Value {
    json!({ "error": e.to_string() })
}

/// The leader key in etcd: the replica and the epoch (its creation
/// revision).
async fn leader(config: &Config) -> Value {
    use leadership::election::{Election, connect};
    let limit = PART_TIMEOUT * 2;
    let ask = async {
        let client = connect(&config.etcd.endpoints).await?;
        Election::new(client, &config.etcd_root(), config.etcd.lease_ttl)
            .current(limit)
            .await
    };
    match tokio::time::timeout(limit, ask).await {
        Ok(Ok(Some(term))) => json!({ "replica": term.leader.get(), "epoch": term.epoch.get() }),
        Ok(Ok(None)) => json!({ "replica": null, "note": "nobody leads" }),
        Ok(Err(e)) => json!({ "error": e.to_string() }),
        Err(_) => json!({ "error": format!("etcd did not answer within {limit:?}") }),
    }
}

/// The event log as its nodes see it.
async fn eventlog(config: &Config) -> Value {
    let key = match Key::load(&config.eventlog.secret_file) {
        Ok(k) => k,
        Err(e) => return json!({ "error": e.to_string(), "usable": false }),
    };
    let mut opts = eventlog::ClientOptions::from_config(config);
    opts.request_timeout = PART_TIMEOUT;
    let endpoints = config
        .replicas
        .iter()
        .map(|r| r.eventlog.to_string())
        .collect();
    let client = eventlog::Client::with_options(endpoints, key, opts);
    let nodes = client.cluster_status().await;
    let summary = super::eventlog::summarize(&nodes);
    let leader = summary.leader;
    let lags: BTreeMap<u32, u64> = leader
        .map(|l| l.replication.iter().map(|p| (p.id, p.lag)).collect())
        .unwrap_or_default();
    let shown: Vec<Value> = nodes
        .iter()
        .map(|(addr, r)| match r {
            Ok(s) => json!({
                "id": s.id,
                "addr": addr,
                "role": s.role,
                "term": s.term,
                "last_event": s.last_event.get(),
                "committed_index": s.committed_index,
                "lag_entries": lags.get(&s.id),
            }),
            Err(e) => {
                let id = config
                    .replicas
                    .iter()
                    .find(|c| c.eventlog.to_string() == *addr)
                    .map(|c| c.id.get());
                json!({ "id": id, "addr": addr, "role": "down", "error": e.to_string() })
            }
        })
        .collect();
    json!({
        "leader": leader.map(|l| l.id),
        "term": leader.map(|l| l.term),
        "last_event": leader.map(|l| l.last_event.get()),
        "commit_index": leader.and_then(|l| l.committed_index),
        "epoch": leader.map(|l| l.highest_epoch.get()),
        "up": summary.up,
        "usable": summary.usable(),
        "nodes": shown,
    })
}

/// The lb's and the gatekeeper's counters, and each agent's view.
fn scrape_all(config: &Config) -> (Value, Value, BTreeMap<u32, Value>) {
    let lb = match scrape(config.lb.metrics) {
        Ok(m) => json!({
            "addr": config.lb.metrics.to_string(),
            "mode": m.labels("seguro_lb_mode", "mode").into_iter()
                .find(|(_, v)| *v == 1.0).map(|(k, _)| k),
            "packets": m.sum("seguro_lb_packets_total"),
            "copies": m.sum("seguro_lb_copies_total"),
            "dropped": m.sum("seguro_lb_dropped_total"),
            "replicas_unresolved": m.sum("seguro_lb_replicas_unresolved"),
        }),
        Err(e) => json!({ "addr": config.lb.metrics.to_string(), "error": e }),
    };
    let gatekeeper = match scrape(config.gatekeeper.metrics) {
        Ok(m) => json!({
            "addr": config.gatekeeper.metrics.to_string(),
            "active": m.sum("seguro_gatekeeper_active") == 1.0,
            "fail_closed": m.sum("seguro_gatekeeper_fail_closed") == 1.0,
            "leader": m.sum("seguro_gatekeeper_leader"),
            "epoch": m.sum("seguro_gatekeeper_epoch"),
            "received": m.sum("seguro_gatekeeper_received_total"),
            "forwarded": m.sum("seguro_gatekeeper_forwarded_total"),
            "dropped": m.sum("seguro_gatekeeper_dropped_total"),
            "dropped_by_reason": m.labels("seguro_gatekeeper_dropped_total", "reason")
                .into_iter().filter(|(_, v)| *v > 0.0).collect::<BTreeMap<_, _>>(),
        }),
        Err(e) => json!({ "addr": config.gatekeeper.metrics.to_string(), "error": e }),
    };
    let agents = config
        .replicas
        .iter()
        .map(|r| {
            let v = match scrape(r.metrics) {
                Ok(m) => json!({
                    "addr": r.metrics.to_string(),
                    "leader": m.sum("seguro_replica_leader") == 1.0,
                    "epoch": m.sum("seguro_replica_epoch") as u64,
                    "applied_event": m.sum("seguro_replica_applied_event") as u64,
                    "committed_event": m.sum("seguro_replica_committed_event") as u64,
                    "packets_received": m.sum("seguro_replica_packets_received_total") as u64,
                    "effects_sent": m.sum("seguro_replica_effects_sent_total") as u64,
                    "mug_mismatches": m.sum("seguro_replica_mug_mismatches_total") as u64,
                    "diverged": m.sum("seguro_replica_diverged") == 1.0,
                }),
                Err(e) => json!({ "addr": r.metrics.to_string(), "error": e }),
            };
            (r.id.get(), v)
        })
        .collect();
    (lb, gatekeeper, agents)
}

/// A Prometheus text exposition, parsed just enough to sum series.
struct Exposition(Vec<(String, String, f64)>);

impl Exposition {
    fn parse(text: &str) -> Exposition {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let value: f64 = value.trim().parse().ok()?;
                let (name, labels) = match series.split_once('{') {
                    Some((n, rest)) => (n, rest.trim_end_matches('}')),
                    None => (series, ""),
                };
                Some((name.to_string(), labels.to_string(), value))
            })
            .collect();
        Exposition(samples)
    }

    /// The sum of every series named `name` (0 if there is none).
    fn sum(&self, name: &str) -> f64 {
        self.0
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, _, v)| v)
            .sum()
    }

    /// `name`'s series by the value of label `label`.
    fn labels(&self, name: &str, label: &str) -> Vec<(String, f64)> {
        let want = format!("{label}=\"");
        self.0
            .iter()
            .filter(|(n, _, _)| n == name)
            .filter_map(|(_, labels, v)| {
                let rest = &labels[labels.find(&want)? + want.len()..];
                Some((rest[..rest.find('"')?].to_string(), *v))
            })
            .collect()
    }
}

/// `GET /metrics` from `addr`, or why not.
fn scrape(addr: SocketAddr) -> Result<Exposition, String> {
    let get = || -> std::io::Result<String> {
        let mut s = TcpStream::connect_timeout(&addr, PART_TIMEOUT)?;
        s.set_read_timeout(Some(PART_TIMEOUT))?;
        s.set_write_timeout(Some(PART_TIMEOUT))?;
        write!(
            s,
            "GET /metrics HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        s.read_to_string(&mut response)?;
        Ok(response)
    };
    let response = get().map_err(|e| format!("{addr}: {e}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{addr}: not an HTTP answer"))?;
    let status = head.lines().next().unwrap_or("");
    if !status.contains(" 200") {
        return Err(format!("{addr}: {status}"));
    }
    Ok(Exposition::parse(body))
}

/// The probe's stats file (written by the peer of `make run`), or why not.
fn read_probe(path: &Path) -> Value {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return json!({ "file": path, "error": e.to_string() }),
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(mut v)) => {
            v.insert("file".into(), json!(path));
            Value::Object(v)
        }
        Ok(_) => json!({ "file": path, "error": "not a JSON object" }),
        Err(e) => json!({ "file": path, "error": format!("not JSON: {e}") }),
    }
}

fn print(status: &Value, json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(status)?)?;
    } else {
        out.write_all(render(status).as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

/// The human view.
fn render(s: &Value) -> String {
    let mut o = String::new();
    // Counters come as floats; whole ones print without a fraction.
    let num = |v: &Value| match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            _ => n.to_string(),
        },
        _ => "-".to_string(),
    };
    let err = |v: &Value| v["error"].as_str().map(str::to_string);
    o += &format!("cluster {}\n", s["cluster"].as_str().unwrap_or("?"));
    let l = &s["leader"];
    o += &match err(l) {
        Some(e) => format!("leader      unknown ({e})\n"),
        None if l["replica"].is_null() => "leader      none\n".to_string(),
        None => format!(
            "leader      replica {}, epoch {}\n",
            num(&l["replica"]),
            num(&l["epoch"])
        ),
    };
    let e = &s["eventlog"];
    o += &match err(e) {
        Some(why) => format!("event log   unavailable ({why})\n"),
        None => format!(
            "event log   leader {}, term {}, last event {}, commit index {}, {} of {} nodes up{}\n",
            num(&e["leader"]),
            num(&e["term"]),
            num(&e["last_event"]),
            num(&e["commit_index"]),
            num(&e["up"]),
            s["replicas"].as_array().map_or(0, Vec::len),
            if e["usable"] == Value::Bool(true) {
                ""
            } else {
                " (no quorum or no leader)"
            }
        ),
    };
    o +=
        "\nreplica  agent      applied  committed  lag  log role   log last  log lag  mismatches\n";
    for r in s["replicas"].as_array().into_iter().flatten() {
        let a = &r["agent"];
        let n = &r["eventlog"];
        let role = match (err(a), a["leader"].as_bool(), a["diverged"].as_bool()) {
            (Some(_), _, _) => "down",
            (_, _, Some(true)) => "DIVERGED",
            (_, Some(true), _) => "leader",
            _ => "follower",
        };
        o += &format!(
            "{:<8} {:<10} {:>7}  {:>9}  {:>3}  {:<9}  {:>8}  {:>7}  {:>10}\n",
            num(&r["id"]),
            role,
            num(&a["applied_event"]),
            num(&a["committed_event"]),
            num(&a["lag_events"]),
            n["role"].as_str().unwrap_or("-"),
            num(&n["last_event"]),
            num(&n["lag_entries"]),
            num(&a["mug_mismatches"]),
        );
    }
    let lb = &s["lb"];
    o += &match err(lb) {
        Some(why) => format!("\nedge lb     unreachable ({why})\n"),
        None => format!(
            "\nedge lb     {}: {} packets for the ship, {} copies, {} dropped, {} replicas unresolved\n",
            lb["mode"].as_str().unwrap_or("?"),
            num(&lb["packets"]),
            num(&lb["copies"]),
            num(&lb["dropped"]),
            num(&lb["replicas_unresolved"]),
        ),
    };
    let g = &s["gatekeeper"];
    o += &match err(g) {
        Some(why) => format!("gatekeeper  unreachable ({why})\n"),
        None => {
            let reasons: Vec<String> = g["dropped_by_reason"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k} {}", num(v)))
                .collect();
            format!(
                "gatekeeper  {}{}: forwarded {}, dropped {}{}\n",
                if g["active"] == Value::Bool(true) {
                    "active"
                } else {
                    "standby"
                },
                if g["fail_closed"] == Value::Bool(true) {
                    ", FAIL-CLOSED"
                } else {
                    ""
                },
                num(&g["forwarded"]),
                num(&g["dropped"]),
                if reasons.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", reasons.join(", "))
                }
            )
        }
    };
    let p = &s["probe"];
    if !p.is_null() {
        o += &match err(p) {
            Some(why) => format!("peer        no probe stats ({why})\n"),
            None => format!(
                "peer        sent {}, answered {} ({:.2}%), duplicates {}, rtt p50 {} ms p99 {} ms (last 10 s)\n",
                num(&p["sent"]),
                num(&p["answered"]),
                p["answered_ratio"].as_f64().unwrap_or(0.0) * 100.0,
                num(&p["duplicates"]),
                num(&p["rtt_p50_ms"]),
                num(&p["rtt_p99_ms"]),
            ),
        };
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_series_and_reads_labels() {
        let m = Exposition::parse(
            "# TYPE x counter\nx_total{reason=\"a\"} 2\nx_total{reason=\"b\"} 3\ny 1.5\n",
        );
        assert_eq!(m.sum("x_total"), 5.0);
        assert_eq!(m.sum("y"), 1.5);
        assert_eq!(m.sum("z"), 0.0);
        assert_eq!(
            m.labels("x_total", "reason"),
            vec![("a".to_string(), 2.0), ("b".to_string(), 3.0)]
        );
    }

    #[test]
    fn renders_unreachable_parts_without_panicking() {
        let s = json!({
            "cluster": "c",
            "leader": { "error": "etcd: refused" },
            "eventlog": { "error": "no key" },
            "replicas": [{ "id": 1, "agent": { "error": "down" }, "eventlog": null }],
            "lb": { "error": "refused" },
            "gatekeeper": { "error": "refused" },
            "probe": { "error": "no file" },
        });
        let text = render(&s);
        assert!(
            text.contains("leader      unknown (etcd: refused)"),
            "{text}"
        );
        assert!(text.contains("edge lb     unreachable"), "{text}");
        assert!(text.contains("1        down"), "{text}");
        assert_eq!(exit_code(&s), ExitCode::FAILURE);
    }
}
