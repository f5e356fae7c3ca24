//! Prometheus's text exposition format (version 0.0.4), parsed: the one
//! reader of `/metrics` for `seguro status`, the tests and the benchmarks.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A metric family's type, as its `# TYPE` line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
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

/// A series' labels, by name.
pub type Labels = BTreeMap<String, String>;

/// One sample: a series (name and labels) and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// As written: a histogram's samples are `<family>_bucket`, `_sum`, `_count`.
    pub name: String,
    pub labels: Labels,
    pub value: f64,
}

impl fmt::Display for Sample {
    /// The series as Prometheus writes it: `name{a="b",c="d"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if !self.labels.is_empty() {
            f.write_str("{")?;
            for (i, (k, v)) in self.labels.iter().enumerate() {
                let sep = if i == 0 { "" } else { "," };
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                write!(f, "{sep}{k}=\"{v}\"")?;
            }
            f.write_str("}")?;
        }
        Ok(())
    }
}

/// One metric family: its type, help text and samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub kind: Kind,
    pub help: Option<String>,
    pub samples: Vec<Sample>,
}

impl Family {
    /// The label names its samples carry, without a histogram's `le` or a
    /// summary's `quantile`.
    pub fn label_names(&self) -> BTreeSet<String> {
        self.samples
            .iter()
            .flat_map(|s| s.labels.keys())
            .filter(|k| !matches!(k.as_str(), "le" | "quantile"))
            .cloned()
            .collect()
    }
}

/// Where and why a line does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("exposition line {line}: {problem}")]
pub struct ParseError {
    pub line: usize,
    pub problem: String,
}

/// The metric families of one scrape, or of several merged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    pub families: BTreeMap<String, Family>,
}

impl Exposition {
    /// Parses an exposition; a line that breaks the format is an error
    /// naming it.
    pub fn parse(text: &str) -> Result<Exposition, ParseError> {
        let mut e = Exposition::default();
        for (n, line) in text.lines().enumerate() {
            let fail = |problem: String| ParseError {
                line: n + 1,
                problem,
            };
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix('#') {
                let mut words = comment.trim_start().splitn(3, [' ', '\t']);
                match (words.next(), words.next(), words.next()) {
                    (Some("TYPE"), Some(name), Some(kind)) => {
                        let kind = Kind::parse(kind.trim())
                            .ok_or_else(|| fail(format!("unknown type `{}`", kind.trim())))?;
                        e.family_mut(name).kind = kind;
                    }
                    (Some("HELP"), Some(name), help) => {
                        e.family_mut(name).help = Some(unescape_help(help.unwrap_or("")));
                    }
                    // Any other comment is a comment.
                    _ => {}
                }
                continue;
            }
            let sample = parse_sample(line).map_err(fail)?;
            let family = e.family_of(&sample.name).to_owned();
            e.family_mut(&family).samples.push(sample);
        }
        Ok(e)
    }

    /// Adds another scrape's families and samples (a family's type and help
    /// stay as first seen).
    pub fn merge(&mut self, other: Exposition) {
        for (name, family) in other.families {
            match self.families.get_mut(&name) {
                Some(mine) => mine.samples.extend(family.samples),
                None => {
                    self.families.insert(name, family);
                }
            }
        }
    }

    pub fn family(&self, name: &str) -> Option<&Family> {
        self.families.get(name)
    }

    /// Every sample of every family.
    pub fn samples(&self) -> impl Iterator<Item = &Sample> {
        self.families.values().flat_map(|f| &f.samples)
    }

    /// The value of one series, written as Prometheus writes it: `name` or
    /// `name{label="value",...}` (every label, in any order).
    pub fn value(&self, series: &str) -> Option<f64> {
        let (name, labels) = parse_series(series).ok()?;
        self.samples()
            .find(|s| s.name == name && s.labels == labels)
            .map(|s| s.value)
    }

    /// The sum of every series named `name` (0 if there is none).
    pub fn sum(&self, name: &str) -> f64 {
        self.samples()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .sum()
    }

    /// The series named `name`, by the value of their label `label`.
    pub fn by_label(&self, name: &str, label: &str) -> Vec<(String, f64)> {
        self.samples()
            .filter(|s| s.name == name)
            .filter_map(|s| Some((s.labels.get(label)?.clone(), s.value)))
            .collect()
    }

    /// The upper bound of the bucket of histogram `name` (all its series
    /// together) that its `q` quantile falls in: the quantile is at most
    /// that. `None` if it has no observations.
    pub fn histogram_quantile_bound(&self, name: &str, q: f64) -> Option<f64> {
        let mut buckets: Vec<(f64, f64)> = Vec::new();
        let bucket = format!("{name}_bucket");
        for s in self
            .family(name)?
            .samples
            .iter()
            .filter(|s| s.name == bucket)
        {
            let le: f64 = match s.labels.get("le")?.as_str() {
                "+Inf" => f64::INFINITY,
                v => v.parse().ok()?,
            };
            match buckets.iter_mut().find(|(b, _)| *b == le) {
                Some((_, count)) => *count += s.value,
                None => buckets.push((le, s.value)),
            }
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total = buckets.last()?.1;
        if total <= 0.0 {
            return None;
        }
        buckets
            .iter()
            .find(|(_, count)| *count >= q * total)
            .map(|(le, _)| *le)
    }

    /// The family a sample belongs to: its own name if a `# TYPE` names it,
    /// else a histogram's or summary's whose suffixed series it is.
    fn family_of<'a>(&self, sample: &'a str) -> &'a str {
        if self.families.contains_key(sample) {
            return sample;
        }
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(stem) = sample.strip_suffix(suffix)
                && self
                    .families
                    .get(stem)
                    .is_some_and(|f| matches!(f.kind, Kind::Histogram | Kind::Summary))
            {
                return stem;
            }
        }
        sample
    }

    fn family_mut(&mut self, name: &str) -> &mut Family {
        self.families
            .entry(name.to_owned())
            .or_insert_with(|| Family {
                kind: Kind::Untyped,
                help: None,
                samples: Vec::new(),
            })
    }
}

/// `name{labels} value [timestamp]`.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let (series, rest) = match line.find('{') {
        Some(open) => {
            let close = closing_brace(line, open)
                .ok_or_else(|| format!("`{line}`: the label set is not closed with `}}`"))?;
            line.split_at(close + 1)
        }
        None => line
            .find(char::is_whitespace)
            .map(|at| line.split_at(at))
            .ok_or_else(|| format!("`{line}`: expected `name value`"))?,
    };
    let (name, labels) = parse_series(series)?;
    let mut fields = rest.split_whitespace();
    let value = fields
        .next()
        .ok_or_else(|| format!("`{line}`: no value after the series"))?;
    let value = parse_value(value).ok_or_else(|| format!("`{line}`: `{value}` is not a number"))?;
    if let Some(ts) = fields.next()
        && ts.parse::<i64>().is_err()
    {
        return Err(format!(
            "`{line}`: `{ts}` is not a timestamp in milliseconds"
        ));
    }
    if fields.next().is_some() {
        return Err(format!("`{line}`: more than a value and a timestamp"));
    }
    Ok(Sample {
        name,
        labels,
        value,
    })
}

/// `name` or `name{a="b",...}`: the name and the labels.
fn parse_series(series: &str) -> Result<(String, Labels), String> {
    let series = series.trim();
    let (name, body) = match series.find('{') {
        Some(open) => {
            if !series.ends_with('}') || closing_brace(series, open) != Some(series.len() - 1) {
                return Err(format!("`{series}`: the label set is not closed with `}}`"));
            }
            (&series[..open], &series[open + 1..series.len() - 1])
        }
        None => (series, ""),
    };
    let name = name.trim();
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) || !name.chars().all(valid)
    {
        return Err(format!("`{series}`: `{name}` is not a metric name"));
    }
    Ok((name.to_owned(), parse_labels(body)?))
}

/// `a="b",c="d\"e"` (a trailing comma is allowed).
fn parse_labels(body: &str) -> Result<Labels, String> {
    let mut labels = Labels::new();
    let mut rest = body.trim_start();
    while !rest.is_empty() {
        let eq = rest
            .find('=')
            .ok_or_else(|| format!("`{body}`: expected `label=\"value\"`"))?;
        let key = rest[..eq].trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("`{body}`: `{key}` is not a label name"));
        }
        let after = rest[eq + 1..].trim_start();
        let quoted = after
            .strip_prefix('"')
            .ok_or_else(|| format!("`{body}`: the value of `{key}` is not quoted"))?;
        let (value, used) = unescape_quoted(quoted)
            .ok_or_else(|| format!("`{body}`: the value of `{key}` is not closed with `\"`"))?;
        if labels.insert(key.to_owned(), value).is_some() {
            return Err(format!("`{body}`: label `{key}` appears twice"));
        }
        rest = quoted[used..].trim_start();
        match rest.strip_prefix(',') {
            Some(more) => rest = more.trim_start(),
            None if rest.is_empty() => {}
            None => return Err(format!("`{body}`: expected `,` after `{key}`")),
        }
    }
    Ok(labels)
}

/// A label value up to its closing quote, with `\\`, `\"` and `\n`
/// unescaped: the value and how many bytes it took, quote included.
fn unescape_quoted(s: &str) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, i + 1)),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

/// The `}` that closes the `{` at `open`, skipping quoted values.
fn closing_brace(s: &str, open: usize) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s[open..].char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(open + i),
            _ => {}
        }
    }
    None
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

fn unescape_help(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('\\', Some('n')) => {
                out.push('\n');
                chars.next();
            }
            ('\\', Some('\\')) => {
                out.push('\\');
                chars.next();
            }
            (c, _) => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP x_total Things, counted.\n\
# TYPE x_total counter\n\
x_total 3\n\
x_total{reason=\"a\"} 4\n\
x_total{reason=\"b,c=d\",kind=\"q\\\"}\"} 5 1700000000000\n\
x_totally 9\n\
# TYPE lat_seconds histogram\n\
lat_seconds_bucket{le=\"0.1\"} 2\n\
lat_seconds_bucket{le=\"0.2\"} 6\n\
lat_seconds_bucket{le=\"+Inf\"} 8\n\
lat_seconds_sum 1.2\n\
lat_seconds_count 8\n\
up NaN\n";

    #[test]
    fn reads_types_help_labels_and_values() {
        let e = Exposition::parse(TEXT).unwrap();
        let x = e.family("x_total").unwrap();
        assert_eq!(x.kind, Kind::Counter);
        assert_eq!(x.help.as_deref(), Some("Things, counted."));
        assert_eq!(x.samples.len(), 3);
        assert_eq!(
            x.label_names(),
            ["kind", "reason"].map(String::from).into_iter().collect()
        );
        assert_eq!(e.value("x_total"), Some(3.0));
        assert_eq!(e.value("x_total{reason=\"a\"}"), Some(4.0));
        assert_eq!(
            e.value("x_total{kind=\"q\\\"}\",reason=\"b,c=d\"}"),
            Some(5.0)
        );
        assert_eq!(e.value("x_total{reason=\"c\"}"), None);
        assert_eq!(e.value("x_totally"), Some(9.0));
        assert_eq!(e.family("x_totally").unwrap().kind, Kind::Untyped);
        assert_eq!(e.sum("x_total"), 12.0);
        assert_eq!(e.sum("z"), 0.0);
        assert!(e.value("up").unwrap().is_nan());
        let mut by = e.by_label("x_total", "reason");
        by.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(by, vec![("a".into(), 4.0), ("b,c=d".into(), 5.0)]);
    }

    #[test]
    fn a_histogram_is_one_family_with_its_quantiles() {
        let e = Exposition::parse(TEXT).unwrap();
        let h = e.family("lat_seconds").unwrap();
        assert_eq!(h.kind, Kind::Histogram);
        assert_eq!(h.samples.len(), 5);
        assert!(
            h.label_names().is_empty(),
            "le is not a label of the family"
        );
        assert!(e.family("lat_seconds_bucket").is_none());
        // 4 of the 8 observations: in the (0.1, 0.2] bucket.
        assert_eq!(e.histogram_quantile_bound("lat_seconds", 0.5), Some(0.2));
        assert_eq!(e.histogram_quantile_bound("lat_seconds", 0.25), Some(0.1));
        assert_eq!(
            e.histogram_quantile_bound("lat_seconds", 0.9),
            Some(f64::INFINITY)
        );
        assert_eq!(e.histogram_quantile_bound("nothing", 0.5), None);
    }

    #[test]
    fn series_print_as_prometheus_writes_them() {
        let e = Exposition::parse("y{b=\"2\",a=\"1\"} 1\n").unwrap();
        let s = e.samples().next().unwrap();
        assert_eq!(s.to_string(), "y{a=\"1\",b=\"2\"}");
    }

    #[test]
    fn merging_keeps_every_sample() {
        let mut a = Exposition::parse("# TYPE z gauge\nz{r=\"1\"} 1\n").unwrap();
        a.merge(Exposition::parse("# TYPE z gauge\nz{r=\"2\"} 2\nw 5\n").unwrap());
        assert_eq!(a.family("z").unwrap().samples.len(), 2);
        assert_eq!(a.sum("z"), 3.0);
        assert_eq!(a.value("w"), Some(5.0));
    }

    #[test]
    fn broken_lines_are_named() {
        for (text, line) in [
            ("ok 1\nbad{a=\"1\" 2\n", 2),
            ("x notanumber\n", 1),
            ("# TYPE x wibble\n", 1),
            ("x{a=1} 1\n", 1),
            ("x{a=\"1\"b=\"2\"} 1\n", 1),
            ("x{a=\"1\",a=\"2\"} 1\n", 1),
            ("x\n", 1),
            ("x 1 2 3\n", 1),
            ("9x 1\n", 1),
        ] {
            let err = Exposition::parse(text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
        }
    }

    #[test]
    fn reads_what_the_exporter_writes() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
            .set_buckets(&[0.5, 1.0])
            .unwrap()
            .build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!("a_total", "why" => "x \"y\"").increment(2);
            metrics::gauge!("g").set(-1.5);
            metrics::histogram!("h_seconds").record(0.7);
        });
        let e = Exposition::parse(&handle.render()).unwrap();
        assert_eq!(e.value("a_total{why=\"x \\\"y\\\"\"}"), Some(2.0));
        assert_eq!(e.family("a_total").unwrap().kind, Kind::Counter);
        assert_eq!(e.value("g"), Some(-1.5));
        assert_eq!(e.family("h_seconds").unwrap().kind, Kind::Histogram);
        assert_eq!(e.value("h_seconds_count"), Some(1.0));
    }
}
