//! Seguro's metrics, both ways: installs a daemon's Prometheus recorder
//! with `seguro_build_info`, so that every daemon says the same thing about
//! the build it runs (docs/METRICS.md, "Every daemon"), and reads what
//! daemons export ([`scrape`], [`Exposition`]) for `seguro status`, the
//! tests and the benchmarks.
//!
//! Each daemon keeps its own [`PrometheusBuilder`] (histogram buckets, say)
//! and hands it here instead of installing it itself.

pub mod exposition;
pub mod http;
mod probe;
mod scrape;

pub use exposition::{Exposition, Family, Kind, Sample};
pub use probe::ProbeStats;
pub use scrape::{ScrapeError, scrape, scrape_blocking};

use std::net::SocketAddr;

use metrics_exporter_prometheus::{BuildError, PrometheusBuilder, PrometheusHandle};

/// The crate version every Seguro binary carries (one workspace version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit the binary was built from, when the build said so
/// (`SEGURO_COMMIT`, which `make build` sets); `unknown` otherwise.
pub const COMMIT: &str = match option_env!("SEGURO_COMMIT") {
    Some(c) => c,
    None => "unknown",
};

pub const BUILD_INFO: &str = "seguro_build_info";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot serve metrics on {addr}: {source}")]
    Serve {
        addr: SocketAddr,
        source: BuildError,
    },
    #[error("cannot install the metrics recorder: {0}")]
    Install(#[source] BuildError),
}

/// Serves `builder`'s metrics at `GET /metrics` on `addr` from a task of the
/// current tokio runtime, with `seguro_build_info{component}` registered.
pub fn serve(
    builder: PrometheusBuilder,
    addr: SocketAddr,
    component: &'static str,
) -> Result<(), Error> {
    builder
        .with_http_listener(addr)
        .install()
        .map_err(|source| Error::Serve { addr, source })?;
    build_info(component);
    Ok(())
}

/// Installs `builder`'s recorder for a daemon that serves the exposition
/// itself (from the returned handle), with `seguro_build_info` registered.
pub fn install(
    builder: PrometheusBuilder,
    component: &'static str,
) -> Result<PrometheusHandle, Error> {
    let handle = builder.install_recorder().map_err(Error::Install)?;
    build_info(component);
    Ok(handle)
}

/// `seguro_build_info{component, version, commit} 1` on the installed
/// recorder: join on it to see which build each target runs.
fn build_info(component: &'static str) {
    metrics::describe_gauge!(
        BUILD_INFO,
        "Always 1; the labels say which build of which daemon is running"
    );
    metrics::gauge!(
        BUILD_INFO,
        "component" => component,
        "version" => VERSION,
        "commit" => COMMIT,
    )
    .set(1.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_carries_build_info() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || build_info("lb"));
        let text = handle.render();
        let line = format!(
            "seguro_build_info{{component=\"lb\",version=\"{VERSION}\",commit=\"{COMMIT}\"}} 1"
        );
        assert!(text.lines().any(|l| l == line), "{text}");
        assert!(text.contains("# TYPE seguro_build_info gauge"), "{text}");
    }
}
