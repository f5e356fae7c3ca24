//! docs/METRICS.md against what a daemon really exports: parses the
//! document's tables and a Prometheus text exposition, and lists every
//! difference (a documented metric missing, or with another type or other
//! labels; an exported `seguro_*` metric nobody documented).

use std::collections::{BTreeMap, BTreeSet};

use telemetry::{Exposition, Kind};

/// One row of a table in docs/METRICS.md.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Documented {
    pub name: String,
    pub kind: Kind,
    pub labels: BTreeSet<String>,
    /// The section (`## ...` heading) it is listed under.
    pub section: String,
    /// The meaning says "(appears on first occurrence)": the series may be
    /// absent until whatever it counts has happened.
    pub on_first_occurrence: bool,
}

/// The daemons, as metric names and `seguro_build_info{component}` say them.
pub const COMPONENTS: [&str; 4] = ["lb", "gatekeeper", "eventlog", "replica"];

/// The section whose metrics every daemon exports.
pub const EVERY_DAEMON: &str = "Every daemon";

const FIRST_OCCURRENCE: &str = "(appears on first occurrence)";

/// Every metric docs/METRICS.md lists, in document order.
#[derive(Debug, Clone)]
pub struct MetricsDoc {
    pub metrics: Vec<Documented>,
}

impl MetricsDoc {
    /// Parses the document's tables: rows whose first cell is a backticked
    /// `seguro_*` name. A malformed row is an error naming its line.
    pub fn parse(markdown: &str) -> Result<MetricsDoc, String> {
        let mut section = String::new();
        let mut metrics: Vec<Documented> = Vec::new();
        for (n, line) in markdown.lines().enumerate() {
            let line_no = n + 1;
            if let Some(h) = line.strip_prefix("## ") {
                section = h.trim().to_string();
                continue;
            }
            let Some(row) = line.trim().strip_prefix("| `seguro_") else {
                continue;
            };
            let cells: Vec<&str> = split_row(row);
            if cells.len() < 4 {
                return Err(format!(
                    "METRICS.md line {line_no}: expected `| name | type | labels | meaning |`"
                ));
            }
            let name = format!("seguro_{}", cells[0].trim().trim_end_matches('`'));
            let kind = Kind::parse(cells[1].trim()).ok_or_else(|| {
                format!(
                    "METRICS.md line {line_no}: type {:?} of {name} is not counter, gauge, histogram or summary",
                    cells[1].trim()
                )
            })?;
            let labels = backticked(&strip_parenthesised(cells[2]));
            if metrics.iter().any(|m| m.name == name) {
                return Err(format!("METRICS.md line {line_no}: {name} is listed twice"));
            }
            metrics.push(Documented {
                name,
                kind,
                labels,
                section: section.clone(),
                on_first_occurrence: cells[3..].join("|").contains(FIRST_OCCURRENCE),
            });
        }
        if metrics.is_empty() {
            return Err("METRICS.md lists no seguro_* metric".into());
        }
        Ok(MetricsDoc { metrics })
    }

    /// What a `component` daemon (`lb`, `gatekeeper`, `eventlog`,
    /// `replica`) must export: its `seguro_<component>_*` metrics and those
    /// of every daemon.
    pub fn expected(&self, component: &str) -> Vec<&Documented> {
        let prefix = format!("seguro_{component}_");
        self.metrics
            .iter()
            .filter(|m| m.name.starts_with(&prefix) || m.section == EVERY_DAEMON)
            .collect()
    }

    /// Where the document's own names break the conventions: a counter
    /// must end in `_total` and nothing else may; a daemon's metric is
    /// `seguro_<component>_<what>...` with a component of [`COMPONENTS`].
    pub fn convention_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for m in &self.metrics {
            let total = m.name.ends_with("_total");
            if m.kind == Kind::Counter && !total {
                problems.push(format!("{}: a counter's name ends in _total", m.name));
            }
            if m.kind != Kind::Counter && total {
                problems.push(format!("{}: only counters end in _total", m.name));
            }
            if m.section == EVERY_DAEMON {
                continue;
            }
            let component = COMPONENTS
                .iter()
                .find(|c| m.name.starts_with(&format!("seguro_{c}_")));
            match component {
                Some(c) if m.name.len() > format!("seguro_{c}_").len() => {}
                _ => problems.push(format!(
                    "{}: not seguro_<component>_<what> for a component of {COMPONENTS:?}",
                    m.name
                )),
            }
        }
        problems
    }

    /// The `seguro_*` metric names in `text` (PromQL, alert rules, a
    /// dashboard) that the document does not list; a histogram's
    /// `_bucket`, `_sum` and `_count` series count as the histogram.
    pub fn unknown_names(&self, text: &str) -> BTreeSet<String> {
        let known = |name: &str| {
            self.metrics.iter().any(|m| {
                m.name == name
                    || (m.kind == Kind::Histogram
                        && ["_bucket", "_sum", "_count"]
                            .iter()
                            .any(|s| name.strip_suffix(s) == Some(&m.name)))
            })
        };
        let mut unknown = BTreeSet::new();
        let mut rest = text;
        while let Some(at) = rest.find("seguro_") {
            let preceded = rest[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            let name = &tail[..end];
            // Job names (`seguro_lb`) and label values are not metrics:
            // only names with a component and a measure are looked up.
            if !preceded && name.matches('_').count() >= 2 && !known(name) {
                unknown.insert(name.to_string());
            }
            rest = &tail[end..];
        }
        unknown
    }

    /// Every difference between the document and `exported`, the union of
    /// what every daemon of `component` serves. Empty when they agree.
    pub fn check(&self, component: &str, exported: &Exposition) -> Vec<String> {
        let expected = self.expected(component);
        let mut problems = Vec::new();
        if expected.iter().all(|m| m.section == EVERY_DAEMON) {
            problems.push(format!("METRICS.md lists no seguro_{component}_* metric"));
        }
        for doc in &expected {
            let Some(got) = exported.family(&doc.name) else {
                if !doc.on_first_occurrence {
                    problems.push(format!(
                        "{component}: {} is documented but not exported (mark it \"{FIRST_OCCURRENCE}\" if it only exists after an event)",
                        doc.name
                    ));
                }
                continue;
            };
            if got.kind != doc.kind {
                problems.push(format!(
                    "{component}: {} is a {} but documented as a {}",
                    doc.name, got.kind, doc.kind
                ));
            }
            if got.label_names() != doc.labels {
                problems.push(format!(
                    "{component}: {} has labels {:?} but is documented with {:?}",
                    doc.name,
                    got.label_names(),
                    doc.labels
                ));
            }
        }
        for (name, got) in &exported.families {
            if !name.starts_with("seguro_") || expected.iter().any(|d| &d.name == name) {
                continue;
            }
            problems.push(format!(
                "{component}: exports {name} ({}, labels {:?}) which METRICS.md does not list under its component",
                got.kind,
                got.label_names()
            ));
        }
        problems
    }
}

/// Scrapes every target (`component`, its `/metrics` address), merges the
/// expositions per component (so that series only a leader exports count),
/// and checks each component against the document at `doc`: every
/// difference, and every target that could not be scraped, as one line.
/// Also checks that each target's `seguro_build_info` names its component.
pub fn check_targets(
    doc: &std::path::Path,
    targets: &[(&str, std::net::SocketAddr)],
) -> Vec<String> {
    let text = match std::fs::read_to_string(doc) {
        Ok(t) => t,
        Err(e) => return vec![format!("{}: {e}", doc.display())],
    };
    let doc = match MetricsDoc::parse(&text) {
        Ok(d) => d,
        Err(e) => return vec![e],
    };
    let mut problems = doc.convention_problems();
    let mut merged: BTreeMap<&str, Exposition> = BTreeMap::new();
    for &(component, addr) in targets {
        let one = match telemetry::scrape_blocking(addr, std::time::Duration::from_secs(5)) {
            Ok(e) => e,
            Err(e) => {
                problems.push(format!("{component} at {addr}: cannot scrape: {e}"));
                continue;
            }
        };
        let named = format!("component=\"{component}\"");
        let info = one.family("seguro_build_info");
        if !info.is_some_and(|m| {
            m.samples.iter().any(|s| {
                s.value == 1.0 && s.labels.get("component").map(String::as_str) == Some(component)
            })
        }) {
            problems.push(format!(
                "{component} at {addr}: no seguro_build_info{{{named}}} 1"
            ));
        }
        merged.entry(component).or_default().merge(one);
    }
    for (component, exposition) in &merged {
        problems.extend(doc.check(component, exposition));
    }
    problems
}

/// Splits a table row's cells on `|` outside backticks.
fn split_row(row: &str) -> Vec<&str> {
    let mut cells = Vec::new();
    let mut start = 0;
    let mut in_code = true; // the row began inside the name's backticks
    for (i, c) in row.char_indices() {
        match c {
            '`' => in_code = !in_code,
            '|' if !in_code => {
                cells.push(&row[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    cells.push(&row[start..]);
    cells
}

fn strip_parenthesised(s: &str) -> String {
    let mut depth = 0u32;
    s.chars()
        .filter(|&c| {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth = depth.saturating_sub(1);
                    return false;
                }
                _ => {}
            }
            depth == 0
        })
        .collect()
}

fn backticked(s: &str) -> BTreeSet<String> {
    s.split('`')
        .skip(1)
        .step_by(2)
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
# Metrics

## Every daemon

| name | type | labels | meaning |
|---|---|---|---|
| `seguro_build_info` | gauge | `component`, `version` | always 1 |

## Thing

| name | type | labels | meaning |
|---|---|---|---|
| `seguro_thing_sent_total` | counter | `reason` (`a`, `b`) | sent |
| `seguro_thing_wait_seconds` | histogram | | waits; `x | y` in code |
| `seguro_thing_rare_total` | counter | | rare (appears on first occurrence) |
| `seguro_other_x` | gauge | | another component's |
";

    #[test]
    fn parses_rows_types_labels_and_markers() {
        let doc = MetricsDoc::parse(DOC).unwrap();
        assert_eq!(doc.metrics.len(), 5);
        let sent = &doc.metrics[1];
        assert_eq!(sent.name, "seguro_thing_sent_total");
        assert_eq!(sent.kind, Kind::Counter);
        assert_eq!(sent.labels, BTreeSet::from(["reason".to_string()]));
        assert_eq!(sent.section, "Thing");
        assert!(!sent.on_first_occurrence);
        assert!(doc.metrics[3].on_first_occurrence);
        let names: Vec<_> = doc
            .expected("thing")
            .iter()
            .map(|m| m.name.clone())
            .collect();
        assert_eq!(
            names,
            [
                "seguro_build_info",
                "seguro_thing_sent_total",
                "seguro_thing_wait_seconds",
                "seguro_thing_rare_total"
            ]
        );
    }

    #[test]
    fn merging_parsed_scrapes_equals_parsing_their_text_together() {
        let a = "# TYPE x_total counter\nx_total{r=\"1\"} 1\n";
        let b = "x_total{s=\"2\"} 2\n# TYPE y gauge\ny 3\n";
        let added = Exposition::parse(&format!("{a}{b}")).unwrap();
        let mut merged = Exposition::parse(a).unwrap();
        merged.merge(Exposition::parse(b).unwrap());
        assert_eq!(merged.families, added.families);
        assert_eq!(merged.families["x_total"].kind, Kind::Counter);
        assert_eq!(merged.families["x_total"].samples.len(), 2);
    }

    #[test]
    fn finds_names_the_document_does_not_list() {
        let doc = MetricsDoc::parse(DOC).unwrap();
        let text = r#"rate(seguro_thing_sent_total{job="seguro_thing"}[5m])
            histogram_quantile(0.9, seguro_thing_wait_seconds_bucket) / seguro_thing_wait_seconds_count
            seguro_thing_sent > 0 or my_seguro_thing_x"#;
        let unknown: Vec<String> = doc.unknown_names(text).into_iter().collect();
        assert_eq!(unknown, ["seguro_thing_sent"]);
    }

    #[test]
    fn holds_names_to_the_conventions() {
        let doc = MetricsDoc::parse(
            "## Lb\n\
             | `seguro_lb_sent` | counter | | x |\n\
             | `seguro_lb_queue_total` | gauge | | x |\n\
             | `seguro_thing_x_total` | counter | | x |\n\
             | `seguro_lb_ok_total` | counter | | x |\n\
             | `seguro_lb_depth_packets` | gauge | | x |\n",
        )
        .unwrap();
        let problems = doc.convention_problems().join("\n");
        assert!(
            problems.contains("seguro_lb_sent: a counter's name ends in _total"),
            "{problems}"
        );
        assert!(
            problems.contains("seguro_lb_queue_total: only counters"),
            "{problems}"
        );
        assert!(
            problems.contains("seguro_thing_x_total: not seguro_<component>"),
            "{problems}"
        );
        assert_eq!(doc.convention_problems().len(), 3, "{problems}");
    }

    #[test]
    fn rejects_an_unknown_type_naming_the_line() {
        let err = MetricsDoc::parse("| `seguro_x` | number | | x |\n").unwrap_err();
        assert!(err.contains("line 1"), "{err}");
    }

    const GOOD: &str = r#"# TYPE seguro_build_info gauge
seguro_build_info{component="thing",version="0.1.0"} 1
# TYPE seguro_thing_sent_total counter
seguro_thing_sent_total{reason="a"} 0
seguro_thing_sent_total{reason="b, \"c\""} 3
# TYPE seguro_thing_wait_seconds histogram
seguro_thing_wait_seconds_bucket{le="0.1"} 1
seguro_thing_wait_seconds_bucket{le="+Inf"} 2
seguro_thing_wait_seconds_sum 0.3
seguro_thing_wait_seconds_count 2
"#;

    #[test]
    fn agreeing_exposition_has_no_problems() {
        let doc = MetricsDoc::parse(DOC).unwrap();
        let e = Exposition::parse(GOOD).unwrap();
        assert_eq!(
            e.families["seguro_thing_wait_seconds"].kind,
            Kind::Histogram
        );
        assert_eq!(e.families["seguro_thing_sent_total"].samples.len(), 2);
        assert_eq!(doc.check("thing", &e), Vec::<String>::new());
    }

    #[test]
    fn finds_every_kind_of_difference() {
        let doc = MetricsDoc::parse(DOC).unwrap();
        let text = r#"# TYPE seguro_build_info gauge
seguro_build_info{component="thing"} 1
# TYPE seguro_thing_sent_total gauge
seguro_thing_sent_total 0
# TYPE seguro_thing_new counter
seguro_thing_new 1
"#;
        let problems = doc.check("thing", &Exposition::parse(text).unwrap());
        let all = problems.join("\n");
        assert!(all.contains("seguro_build_info has labels"), "{all}");
        assert!(
            all.contains("seguro_thing_sent_total is a gauge but documented as a counter"),
            "{all}"
        );
        assert!(all.contains("seguro_thing_sent_total has labels"), "{all}");
        assert!(
            all.contains("seguro_thing_wait_seconds is documented but not exported"),
            "{all}"
        );
        assert!(all.contains("exports seguro_thing_new"), "{all}");
        assert!(!all.contains("seguro_thing_rare_total"), "{all}");
        assert_eq!(problems.len(), 5, "{all}");
    }

    #[test]
    fn a_component_the_document_does_not_know_is_a_problem() {
        let doc = MetricsDoc::parse(DOC).unwrap();
        let problems = doc.check("nothing", &Exposition::parse(GOOD).unwrap());
        assert!(problems[0].contains("no seguro_nothing_"), "{problems:?}");
    }
}
