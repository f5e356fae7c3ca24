//! A real Prometheus server for a test: scrapes the targets the test names
//! every half second, loads alert rules, and answers PromQL over its HTTP
//! API. The binary is `$SEGURO_PROMETHEUS`, else `prometheus` on PATH
//! (Debian's package; scripts/deps.sh installs it). Dropping it kills it.

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::process::{KillOnDrop, spawn_logged};
use crate::{free_port, wait};

/// How long one API call may take.
const CALL: Duration = Duration::from_secs(10);

/// How often its API is polled while waiting.
const POLL: Duration = Duration::from_millis(250);

/// How often the server scrapes and evaluates rules.
pub const INTERVAL: &str = "500ms";

/// One scrape job: Prometheus's `job` label and its targets.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub targets: Vec<SocketAddr>,
}

impl Job {
    pub fn new(name: impl Into<String>, targets: impl IntoIterator<Item = SocketAddr>) -> Job {
        Job {
            name: name.into(),
            targets: targets.into_iter().collect(),
        }
    }
}

/// A running Prometheus.
pub struct Prometheus {
    child: KillOnDrop,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// The binary tests run.
    pub fn binary() -> PathBuf {
        std::env::var_os("SEGURO_PROMETHEUS")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("prometheus"))
    }

    /// Starts a server on a free loopback port scraping `jobs`, with the
    /// rule files `rules` loaded, and waits until it is ready.
    pub fn start(jobs: &[Job], rules: &[&Path]) -> io::Result<Prometheus> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, config_yaml(jobs, rules))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log = std::fs::File::create(dir.path().join("prometheus.log"))?;
        let child = KillOnDrop(spawn_logged(
            Command::new(Self::binary())
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--log.level=warn"),
            log,
        )?);
        let mut p = Prometheus { child, addr, dir };
        let ready = wait::until(Duration::from_secs(30), "prometheus to be ready", || {
            if let Ok(Some(status)) = p.child.try_wait() {
                return Ok(Err(format!(
                    "prometheus exited ({status}) before it was ready"
                )));
            }
            match telemetry::http::get_blocking(addr, "/-/ready", CALL) {
                Ok(r) if r.status == 200 => Ok(Ok(())),
                Ok(r) => Err(format!("HTTP {}", r.status)),
                Err(e) => Err(e.to_string()),
            }
        });
        match ready {
            Ok(Ok(())) => Ok(p),
            Ok(Err(why)) => Err(io::Error::other(format!("{why}:\n{}", p.log()))),
            Err(e) => Err(io::Error::other(format!("{e}:\n{}", p.log()))),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the server logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Evaluates `expr` now: the `data` object of a successful answer
    /// (`resultType`, `result`), or the server's error (a parse error, say).
    pub fn query(&self, expr: &str) -> io::Result<Value> {
        self.api(&format!("/api/v1/query?query={}", encode(expr)))
    }

    /// The samples `expr` returns now, as (labels, value); a scalar is one
    /// sample without labels. Matrix and string results are errors.
    pub fn samples(&self, expr: &str) -> io::Result<Vec<(Value, f64)>> {
        let data = self.query(expr)?;
        let value = |v: &Value| -> io::Result<f64> {
            v.get(1)
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| io::Error::other(format!("{expr}: bad sample {v}")))
        };
        match data["resultType"].as_str() {
            Some("vector") => data["result"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| Ok((s["metric"].clone(), value(&s["value"])?)))
                .collect(),
            Some("scalar") => Ok(vec![(Value::Null, value(&data["result"])?)]),
            other => Err(io::Error::other(format!(
                "{expr}: expected a vector or scalar, got {other:?}"
            ))),
        }
    }

    /// The sum of what `expr` returns now (None if it returns nothing).
    pub fn value(&self, expr: &str) -> io::Result<Option<f64>> {
        let samples = self.samples(expr)?;
        Ok((!samples.is_empty()).then(|| samples.iter().map(|(_, v)| v).sum()))
    }

    /// Polls `expr` until its value satisfies `ok` or `limit` passes;
    /// returns the last value seen.
    pub fn wait_for(
        &self,
        expr: &str,
        limit: Duration,
        ok: impl Fn(f64) -> bool,
    ) -> io::Result<f64> {
        wait::every(
            POLL,
            limit,
            format_args!("{expr} as expected"),
            || match self.value(expr) {
                Err(e) => Ok(Err(e)),
                Ok(Some(v)) if ok(v) => Ok(Ok(v)),
                Ok(v) => Err(format!("{expr} = {v:?}")),
            },
        )?
    }

    /// The `data` of `GET /api/v1/targets`, `/api/v1/rules`, and so on.
    pub fn api(&self, path_and_query: &str) -> io::Result<Value> {
        let answer = telemetry::http::get_blocking(self.addr, path_and_query, CALL)
            .map_err(io::Error::other)?;
        let (status, body) = (answer.status, answer.text());
        let json: Value = serde_json::from_str(&body).map_err(|e| {
            io::Error::other(format!(
                "{path_and_query}: HTTP {status}, not JSON ({e}): {body}"
            ))
        })?;
        if json["status"] != "success" {
            return Err(io::Error::other(format!(
                "{path_and_query}: {} {}",
                json["errorType"].as_str().unwrap_or("error"),
                json["error"].as_str().unwrap_or(&body)
            )));
        }
        Ok(json["data"].clone())
    }

    /// The alerting rules loaded from the rule files: fails unless there
    /// are `expected` of them and every one evaluated without an error
    /// (`health` ok). Returns the names of those firing now.
    pub fn check_alert_rules(&self, expected: usize) -> io::Result<Vec<String>> {
        let data = self.api("/api/v1/rules?type=alert")?;
        let rules: Vec<&Value> = data["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        if rules.len() != expected {
            return Err(io::Error::other(format!(
                "{} alerting rules loaded, {expected} expected: {data}",
                rules.len()
            )));
        }
        let sick: Vec<String> = rules
            .iter()
            .filter(|r| r["health"] != "ok")
            .map(|r| format!("{}: {} {}", r["name"], r["health"], r["lastError"]))
            .collect();
        if !sick.is_empty() {
            return Err(io::Error::other(format!("rules not evaluating: {sick:?}")));
        }
        Ok(rules
            .iter()
            .filter(|r| r["state"] == "firing")
            .map(|r| r["name"].as_str().unwrap_or("?").to_string())
            .collect())
    }

    /// Waits until every target of every job was scraped successfully.
    pub fn wait_targets_up(&self, limit: Duration) -> io::Result<()> {
        wait::every(POLL, limit, "every target up", || {
            let data = match self.api("/api/v1/targets?state=active") {
                Ok(d) => d,
                Err(e) => return Ok(Err(e)),
            };
            let targets = data["activeTargets"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let down: Vec<String> = targets
                .iter()
                .filter(|t| t["health"] != "up")
                .map(|t| {
                    format!(
                        "{} {} ({}: {})",
                        t["labels"]["job"], t["scrapeUrl"], t["health"], t["lastError"]
                    )
                })
                .collect();
            if !targets.is_empty() && down.is_empty() {
                Ok(Ok(()))
            } else {
                Err(format!("targets not up: {down:?}"))
            }
        })?
    }
}

/// The server's config: one static job per [`Job`], scraped every
/// [`INTERVAL`], and the rule files.
pub fn config_yaml(jobs: &[Job], rules: &[&Path]) -> String {
    let mut y = format!(
        "global:\n  scrape_interval: {INTERVAL}\n  scrape_timeout: {INTERVAL}\n  evaluation_interval: {INTERVAL}\n"
    );
    if !rules.is_empty() {
        y.push_str("rule_files:\n");
        for r in rules {
            let _ = writeln!(y, "  - {:?}", r.display().to_string());
        }
    }
    y.push_str("scrape_configs:\n");
    for job in jobs {
        let targets: Vec<String> = job
            .targets
            .iter()
            .map(|t| format!("{:?}", t.to_string()))
            .collect();
        let _ = write!(
            y,
            "  - job_name: {:?}\n    static_configs:\n      - targets: [{}]\n",
            job.name,
            targets.join(", ")
        );
    }
    y
}

/// Percent-encodes a query parameter (RFC 3986 unreserved kept).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_promql() {
        assert_eq!(
            encode("sum(rate(x{a=\"b c\"}[1m]))"),
            "sum%28rate%28x%7Ba%3D%22b%20c%22%7D%5B1m%5D%29%29"
        );
    }

    #[test]
    fn config_lists_jobs_and_rules() {
        let y = config_yaml(
            &[Job::new(
                "seguro_lb",
                [SocketAddr::from(([127, 0, 0, 1], 9460))],
            )],
            &[Path::new("/x/alerts.yml")],
        );
        assert!(y.contains("rule_files:\n  - \"/x/alerts.yml\"\n"), "{y}");
        assert!(
            y.contains("  - job_name: \"seguro_lb\"\n    static_configs:\n      - targets: [\"127.0.0.1:9460\"]\n"),
            "{y}"
        );
    }
}
