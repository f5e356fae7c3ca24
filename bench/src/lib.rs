//! Shared helpers for Seguro's benchmarks: percentiles, rates, medians, CPU
//! accounting, Markdown tables.

pub mod cpu;

use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;

pub use cpu::{CpuTimes, WorkloadCpu, cpus, process_cpu};

/// Percentiles of a set of durations, recorded to the microsecond.
pub struct Latencies {
    hist: Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    pub fn new() -> Self {
        Self {
            // 1 µs to 1 h, 3 significant digits.
            hist: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
        }
    }

    pub fn record(&mut self, d: Duration) {
        let us = (d.as_micros() as u64).clamp(1, 3_600_000_000);
        self.hist.record(us).expect("clamped into bounds");
    }

    pub fn len(&self) -> u64 {
        self.hist.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hist.is_empty()
    }

    /// The value at quantile `q` (0.5 for the median, 0.99 for p99).
    pub fn quantile(&self, q: f64) -> Duration {
        Duration::from_micros(self.hist.value_at_quantile(q))
    }

    pub fn min(&self) -> Duration {
        Duration::from_micros(self.hist.min())
    }

    pub fn max(&self) -> Duration {
        Duration::from_micros(self.hist.max())
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Latencies) {
        self.hist.add(&other.hist).expect("same bounds");
    }
}

impl fmt::Display for Latencies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "n={} min={} p50={} p99={} max={}",
            self.len(),
            ms(self.min()),
            ms(self.quantile(0.5)),
            ms(self.quantile(0.99)),
            ms(self.max())
        )
    }
}

/// A duration in milliseconds with two decimals, for tables: "1.25 ms".
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// The median of some numbers (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// A Markdown table, as docs/PERFORMANCE.md holds results.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!(
        "| {} |\n|{}|\n",
        header.join(" | "),
        vec!["---"; header.len()].join("|")
    );
    for row in rows {
        out += &format!("| {} |\n", row.join(" | "));
    }
    out
}

/// A whole-number knob from the environment (`BENCH_SECONDS=5`), clamped to
/// `range` so that no setting makes a load loop unbounded; `default` when
/// unset or unparsable.
pub fn knob(name: &str, default: u64, range: std::ops::RangeInclusive<u64>) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
        .clamp(*range.start(), *range.end())
}

/// The `seguro` binary a benchmark drives: `$SEGURO_BIN`, else the one
/// next to the benchmark's own (the `make bench-*` targets build both).
/// The directory a benchmark keeps its files in: `SEGURO_BENCH_DIR`, else
/// `default`; emptied and created. `None` if neither is given.
pub fn fresh_dir(default: Option<&str>) -> anyhow::Result<Option<std::path::PathBuf>> {
    use anyhow::Context as _;
    let Some(dir) = std::env::var_os("SEGURO_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| default.map(std::path::PathBuf::from))
    else {
        return Ok(None);
    };
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(Some(dir))
}

pub fn seguro_binary() -> anyhow::Result<std::path::PathBuf> {
    if let Some(path) = std::env::var_os("SEGURO_BIN") {
        return Ok(path.into());
    }
    let path = std::env::current_exe()?.with_file_name("seguro");
    anyhow::ensure!(
        path.exists(),
        "{} not found: build it with `cargo build --release` (the make bench-* targets do) or \
         set SEGURO_BIN",
        path.display()
    );
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_medians() {
        let mut l = Latencies::new();
        for ms in 1..=100 {
            l.record(Duration::from_millis(ms));
        }
        assert_eq!(l.len(), 100);
        let p50 = l.quantile(0.5).as_millis();
        assert!((49..=51).contains(&p50), "{p50}");
        assert!(l.quantile(0.99).as_millis() >= 98);
        let mut m = Latencies::new();
        m.merge(&l);
        assert_eq!(m.len(), 100);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn tables_are_markdown() {
        let t = table(&["a", "b"], &[vec!["1".into(), "2".into()]]);
        assert_eq!(t, "| a | b |\n|---|---|\n| 1 | 2 |\n");
    }
}
