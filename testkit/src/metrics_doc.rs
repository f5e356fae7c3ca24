//! docs/METRICS.md against what a daemon really exports: parses the
//! document's tables and a Prometheus text exposition, and lists every
//! difference (a documented metric missing, or with another type or other
//! labels; an exported `seguro_*` metric nobody documented).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A metric's type, as the document and `# TYPE` lines say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
}

impl Kind {
    fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "counter" => Kind::Counter,
            "gauge" => Kind::Gauge,
            "histogram" => Kind::Histogram,
            "summary" => Kind::Summary,
            "untyped" => Kind::Untyped,
            _ => return None,
        })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
            Kind::Untyped => "untyped",
        })
    }
}

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
            let Some(got) = exported.metrics.get(&doc.name) else {
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
            if got.labels != doc.labels {
                problems.push(format!(
                    "{component}: {} has labels {:?} but is documented with {:?}",
                    doc.name, got.labels, doc.labels
                ));
            }
        }
        for (name, got) in &exported.metrics {
            if !name.starts_with("seguro_") || expected.iter().any(|d| &d.name == name) {
                continue;
            }
            problems.push(format!(
                "{component}: exports {name} ({}, labels {:?}) which METRICS.md does not list under its component",
                got.kind, got.labels
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
        let text = match crate::scrape(addr) {
            Ok(t) => t,
            Err(e) => {
                problems.push(format!("{component} at {addr}: cannot scrape: {e}"));
                continue;
            }
        };
        let one = match Exposition::parse(&text) {
            Ok(e) => e,
            Err(e) => {
                problems.push(format!("{component} at {addr}: {e}"));
                continue;
            }
        };
        let info = one.metrics.get("seguro_build_info");
        let named = format!("component=\"{component}\"");
        if !info.is_some_and(|m| {
            m.samples
                .iter()
                .any(|(s, v)| *v == 1.0 && s.contains(&named))
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

/// What an exposition says about one metric family.
#[derive(Debug, Clone, PartialEq)]
pub struct Exported {
    pub kind: Kind,
    /// Label names seen on its samples (`le` and `quantile` excluded).
    pub labels: BTreeSet<String>,
    /// Its samples: series as written (`name{a="b"}`) and value.
    pub samples: Vec<(String, f64)>,
}

/// The metric families of one or more scrapes.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    pub metrics: BTreeMap<String, Exported>,
}

impl Exposition {
    /// Parses Prometheus's text format (version 0.0.4).
    pub fn parse(text: &str) -> Result<Exposition, String> {
        let mut e = Exposition::default();
        e.add(text)?;
        Ok(e)
    }

    /// Adds another scrape's families (labels and samples are merged).
    pub fn add(&mut self, text: &str) -> Result<(), String> {
        let mut types: BTreeMap<String, Kind> = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split_whitespace();
                let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                    return Err(format!("exposition line {}: bad TYPE line", n + 1));
                };
                let kind = Kind::parse(kind)
                    .ok_or_else(|| format!("exposition line {}: unknown type {kind}", n + 1))?;
                types.insert(name.to_string(), kind);
                continue;
            }
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (series, labels, value) =
                parse_sample(line).map_err(|e| format!("exposition line {}: {e}", n + 1))?;
            let family = family_of(&series, &types);
            let kind = types.get(&family).copied().unwrap_or(Kind::Untyped);
            let entry = self
                .metrics
                .entry(family.clone())
                .or_insert_with(|| Exported {
                    kind,
                    labels: BTreeSet::new(),
                    samples: Vec::new(),
                });
            if entry.kind == Kind::Untyped {
                entry.kind = kind;
            }
            entry
                .labels
                .extend(labels.into_iter().filter(|l| l != "le" && l != "quantile"));
            entry.samples.push((
                line.rsplit_once(' ').map_or(line, |(s, _)| s).to_string(),
                value,
            ));
        }
        Ok(())
    }

    /// Adds the families of another parsed scrape, as [`Exposition::add`]
    /// adds a scrape's text.
    pub fn merge(&mut self, other: Exposition) {
        for (name, theirs) in other.metrics {
            let ours = self.metrics.entry(name).or_insert_with(|| Exported {
                kind: theirs.kind,
                labels: BTreeSet::new(),
                samples: Vec::new(),
            });
            if ours.kind == Kind::Untyped {
                ours.kind = theirs.kind;
            }
            ours.labels.extend(theirs.labels);
            ours.samples.extend(theirs.samples);
        }
    }
}

/// The family a sample belongs to: `x_bucket`, `x_sum` and `x_count`
/// belong to histogram or summary `x`.
fn family_of(series: &str, types: &BTreeMap<String, Kind>) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = series.strip_suffix(suffix)
            && matches!(types.get(base), Some(Kind::Histogram | Kind::Summary))
        {
            return base.to_string();
        }
    }
    series.to_string()
}

/// `name{a="x",b="y"} 1.5 [timestamp]` → name, label names, value.
fn parse_sample(line: &str) -> Result<(String, Vec<String>, f64), String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("a sample without a value")?;
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices();
        let mut label = String::new();
        let close = loop {
            let Some((i, c)) = chars.next() else {
                return Err("unterminated label set".into());
            };
            match c {
                '}' => break i,
                '=' => {
                    if chars.next().map(|(_, c)| c) != Some('"') {
                        return Err(format!("label {label} without a quoted value"));
                    }
                    loop {
                        match chars.next() {
                            Some((_, '\\')) => {
                                chars.next();
                            }
                            Some((_, '"')) => break,
                            Some(_) => {}
                            None => return Err("unterminated label value".into()),
                        }
                    }
                    labels.push(std::mem::take(&mut label).trim().to_string());
                }
                ',' => {}
                c => label.push(c),
            }
        };
        rest = &body[close + 1..];
    }
    let value = rest
        .split_whitespace()
        .next()
        .ok_or("a sample without a value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().map_err(|_| format!("bad value {v:?}"))?,
    };
    Ok((name, labels, value))
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
    fn merging_parsed_scrapes_equals_adding_their_text() {
        let a = "# TYPE x_total counter\nx_total{r=\"1\"} 1\n";
        let b = "x_total{s=\"2\"} 2\n# TYPE y gauge\ny 3\n";
        let mut added = Exposition::parse(a).unwrap();
        added.add(b).unwrap();
        let mut merged = Exposition::parse(a).unwrap();
        merged.merge(Exposition::parse(b).unwrap());
        assert_eq!(merged.metrics, added.metrics);
        assert_eq!(merged.metrics["x_total"].kind, Kind::Counter);
        assert_eq!(merged.metrics["x_total"].samples.len(), 2);
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
        assert_eq!(e.metrics["seguro_thing_wait_seconds"].kind, Kind::Histogram);
        assert_eq!(e.metrics["seguro_thing_sent_total"].samples.len(), 2);
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
