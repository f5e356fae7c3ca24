//! Checks a Grafana dashboard (docs/dashboards/*.json) for the structure
//! Grafana needs to import it, and hands back every panel's PromQL ready
//! for a real Prometheus ([`crate::prometheus::Prometheus::query`]).

use std::collections::BTreeSet;

use serde_json::Value;

/// One query of one panel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub panel: String,
    pub ref_id: String,
    /// As written in the dashboard.
    pub expr: String,
    /// With Grafana's built-in variables replaced, as Prometheus takes it.
    pub promql: String,
}

/// Grafana's built-in interval variables and what a test evaluates them as.
const BUILT_INS: &[(&str, &str)] = &[
    ("$__rate_interval", "1m"),
    ("$__interval", "15s"),
    ("$__range", "1h"),
];

/// Validates `dashboard` (the parsed JSON): a title and uid; a
/// `datasource` template variable of type `datasource` for Prometheus;
/// panels with unique ids, a type, a title and a `gridPos` inside Grafana's
/// 24 columns; every panel and target on `${datasource}`; every target with
/// a unique `refId` and a non-empty `expr` that uses no variable but the
/// built-in intervals. Returns the queries, or every problem found.
pub fn check(dashboard: &Value) -> Result<Vec<Query>, Vec<String>> {
    let mut problems = Vec::new();
    let mut queries = Vec::new();
    for key in ["title", "uid"] {
        if dashboard[key].as_str().is_none_or(str::is_empty) {
            problems.push(format!("no {key}"));
        }
    }
    if dashboard["schemaVersion"].as_u64().is_none() {
        problems.push("no schemaVersion".into());
    }
    let variables = dashboard["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ds = variables.iter().find(|v| v["name"] == "datasource");
    match ds {
        Some(v) if v["type"] == "datasource" && v["query"] == "prometheus" => {}
        _ => problems
            .push("no template variable `datasource` of type datasource for prometheus".into()),
    }
    if variables.len() != 1 {
        problems.push(format!(
            "{} template variables; queries here may use only $datasource",
            variables.len()
        ));
    }
    let Some(panels) = dashboard["panels"].as_array().filter(|p| !p.is_empty()) else {
        problems.push("no panels".into());
        return Err(problems);
    };
    let mut ids = BTreeSet::new();
    for (i, panel) in panels.iter().enumerate() {
        let title = panel["title"].as_str().unwrap_or("").to_string();
        let name = format!("panel {i} ({title:?})");
        if title.is_empty() {
            problems.push(format!("{name}: no title"));
        }
        if panel["type"].as_str().is_none_or(str::is_empty) {
            problems.push(format!("{name}: no type"));
        }
        match panel["id"].as_u64() {
            Some(id) if !ids.insert(id) => problems.push(format!("{name}: id {id} used twice")),
            Some(_) => {}
            None => problems.push(format!("{name}: no numeric id")),
        }
        let g = &panel["gridPos"];
        let dims: Vec<Option<u64>> = ["h", "w", "x", "y"].iter().map(|k| g[k].as_u64()).collect();
        match dims[..] {
            [Some(h), Some(w), Some(x), Some(_)] if h > 0 && w > 0 && x + w <= 24 => {}
            _ => problems.push(format!(
                "{name}: gridPos {g} needs h, w > 0 and x + w <= 24"
            )),
        }
        if panel["type"] == "row" {
            continue;
        }
        if !uses_datasource_variable(&panel["datasource"]) {
            problems.push(format!(
                "{name}: datasource {} is not ${{datasource}}",
                panel["datasource"]
            ));
        }
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            problems.push(format!("{name}: no targets"));
        }
        let mut refs = BTreeSet::new();
        for t in &targets {
            let ref_id = t["refId"].as_str().unwrap_or("").to_string();
            if ref_id.is_empty() || !refs.insert(ref_id.clone()) {
                problems.push(format!("{name}: refId {ref_id:?} missing or used twice"));
            }
            if !t["datasource"].is_null() && !uses_datasource_variable(&t["datasource"]) {
                problems.push(format!(
                    "{name} target {ref_id}: datasource {} is not ${{datasource}}",
                    t["datasource"]
                ));
            }
            let expr = t["expr"].as_str().unwrap_or("").trim().to_string();
            if expr.is_empty() {
                problems.push(format!("{name} target {ref_id}: no expr"));
                continue;
            }
            let promql = substitute(&expr);
            if promql.contains('$') {
                problems.push(format!(
                    "{name} target {ref_id}: {expr:?} uses a variable this dashboard does not define"
                ));
            }
            queries.push(Query {
                panel: title.clone(),
                ref_id,
                expr,
                promql,
            });
        }
    }
    if problems.is_empty() {
        Ok(queries)
    } else {
        Err(problems)
    }
}

/// Checks every dashboard (`*.json`) in `dir` with [`check`], then runs
/// each of its queries on `prometheus`: each must parse and, within
/// `patience` (rate windows need two scrapes), return data. Returns how
/// many dashboards there were, or every problem found.
pub fn check_dir(
    dir: &std::path::Path,
    prometheus: &crate::prometheus::Prometheus,
    patience: std::time::Duration,
) -> Result<usize, Vec<String>> {
    let mut problems = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| vec![format!("{}: {e}", dir.display())])?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    for path in &paths {
        let name = path.display();
        let json: Value = match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
        {
            Ok(j) => j,
            Err(e) => {
                problems.push(format!("{name}: {e}"));
                continue;
            }
        };
        let queries = match check(&json) {
            Ok(q) => q,
            Err(e) => {
                problems.extend(e.into_iter().map(|e| format!("{name}: {e}")));
                continue;
            }
        };
        for q in queries {
            let answered = crate::wait::every(
                std::time::Duration::from_millis(500),
                patience,
                "data",
                || match prometheus.samples(&q.promql) {
                    Err(e) => Ok(Some(e.to_string())),
                    Ok(s) if !s.is_empty() => Ok(None),
                    Ok(_) => Err("returns no data"),
                },
            );
            let verdict = answered.unwrap_or_else(|_| Some("returns no data".into()));
            if let Some(why) = verdict {
                problems.push(format!(
                    "{name}: panel {:?} query {} `{}`: {why}",
                    q.panel, q.ref_id, q.promql
                ));
            }
        }
    }
    if paths.is_empty() {
        problems.push(format!("{}: no dashboards", dir.display()));
    }
    if problems.is_empty() {
        Ok(paths.len())
    } else {
        Err(problems)
    }
}

fn uses_datasource_variable(ds: &Value) -> bool {
    let uid = ds.get("uid").unwrap_or(ds);
    matches!(uid.as_str(), Some("${datasource}" | "$datasource"))
}

/// Replaces Grafana's built-in interval variables (`$__rate_interval` and
/// friends) with fixed durations.
pub fn substitute(expr: &str) -> String {
    let mut out = expr.to_string();
    for (var, value) in BUILT_INS {
        out = out.replace(&format!("${{{}}}", &var[1..]), value);
        out = out.replace(var, value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn good() -> Value {
        json!({
            "uid": "x", "title": "X", "schemaVersion": 39,
            "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus"}]},
            "panels": [
                {"id": 1, "type": "timeseries", "title": "A",
                 "datasource": {"type": "prometheus", "uid": "${datasource}"},
                 "gridPos": {"h": 8, "w": 12, "x": 0, "y": 0},
                 "targets": [{"refId": "A", "expr": "rate(x_total[$__rate_interval])"}]},
                {"id": 2, "type": "stat", "title": "B",
                 "datasource": {"type": "prometheus", "uid": "$datasource"},
                 "gridPos": {"h": 8, "w": 12, "x": 12, "y": 0},
                 "targets": [{"refId": "A", "expr": "up"}, {"refId": "B", "expr": "sum(up)"}]}
            ]
        })
    }

    #[test]
    fn a_good_dashboard_gives_its_queries() {
        let q = check(&good()).unwrap();
        let promql: Vec<&str> = q.iter().map(|q| q.promql.as_str()).collect();
        assert_eq!(promql, ["rate(x_total[1m])", "up", "sum(up)"]);
    }

    #[test]
    fn finds_structural_problems() {
        let mut d = good();
        d["panels"][1]["id"] = json!(1);
        d["panels"][1]["gridPos"]["x"] = json!(13);
        d["panels"][1]["datasource"] = json!({"uid": "prom-1"});
        d["panels"][1]["targets"][1]["refId"] = json!("A");
        d["panels"][0]["targets"][0]["expr"] = json!("up{instance=~\"$instance\"}");
        let all = check(&d).unwrap_err().join("\n");
        for want in [
            "id 1 used twice",
            "gridPos",
            "is not ${datasource}",
            "refId \"A\" missing or used twice",
            "uses a variable",
        ] {
            assert!(all.contains(want), "{want}: {all}");
        }
    }

    #[test]
    fn needs_the_datasource_variable_and_panels() {
        let all = check(&json!({"uid": "x", "title": "X", "schemaVersion": 39}))
            .unwrap_err()
            .join("\n");
        assert!(all.contains("template variable `datasource`"), "{all}");
        assert!(all.contains("no panels"), "{all}");
    }
}
