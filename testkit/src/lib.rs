//! Real parts for Seguro's tests and benchmarks, started and stopped by the
//! test itself: an etcd server on loopback, a cluster of event log nodes,
//! free ports, a Prometheus scrape, network namespaces and the edge box's
//! topology in them, the whole cluster in namespaces, a peer that probes the
//! ship, hand-made Ethernet frames.

pub mod cluster;
pub mod config_file;
pub mod dashboard;
pub mod edge;
pub mod etcd;
pub mod eventlog;
pub mod frame;
pub mod metrics;
pub mod metrics_doc;
pub mod netns;
pub mod port;
pub mod probe;
pub mod process;
pub mod prometheus;
pub mod wait;

pub use etcd::Etcd;
pub use metrics::{sample, scrape};
pub use port::free_port;
pub use process::{KillOnDrop, terminate};

/// Loads a config file that the kit or a test wrote, without checking its
/// key files. Panics with the loader's diagnostics if it does not load:
/// whoever wrote it has a bug.
pub fn load_config(path: &std::path::Path) -> config::Config {
    config::Config::load(path, &config::Overrides::default(), config::KeyCheck::Skip)
        .unwrap_or_else(|d| panic!("{} does not load:\n{d}", path.display()))
        .0
}
