//! Real parts for Seguro's tests and benchmarks, started and stopped by the
//! test itself. The harness: a typed cluster file ([`config_file`]), a
//! process supervisor with log files ([`process`]), one deadline poll loop
//! ([`wait`]); on it, a cluster on loopback ([`Lab`]) and a cluster in
//! network namespaces ([`cluster::ClusterLab`]). Around them: etcd,
//! Prometheus, free ports, metrics, network namespaces and the edge box's
//! topology, a peer that probes the ship, hand-made Ethernet frames.

pub mod chaos;
pub mod cluster;
pub mod config_file;
pub mod daemon;
pub mod dashboard;
pub mod edge;
pub mod etcd;
pub mod frame;
pub mod history;
pub mod lab;
pub mod lazyfs;
pub mod metrics_doc;
pub mod netns;
pub mod pki;
pub mod port;
pub mod probe;
pub mod process;
pub mod prometheus;
pub mod wait;

pub use daemon::Daemon;
pub use etcd::Etcd;
pub use lab::Lab;
pub use pki::Pki;
pub use port::free_port;
pub use process::{KillOnDrop, terminate};

/// Deletes each of `dirs` with what it holds; one that is not there is
/// fine.
pub fn remove_dirs(dirs: impl IntoIterator<Item = std::path::PathBuf>) -> std::io::Result<()> {
    for dir in dirs {
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Fails the test, saying why it needs root, unless it runs as root (CI
/// does): `why` names what it does that only root may.
pub fn require_root(why: &str) {
    assert!(is_root(), "this test {why}: run it as root (CI does)");
}

/// Loads a config file that the kit or a test wrote, without checking its
/// key files. Panics with the loader's diagnostics if it does not load:
/// whoever wrote it has a bug.
pub fn load_config(path: &std::path::Path) -> config::Config {
    config::Config::load(path, &config::Overrides::default(), config::KeyCheck::Skip)
        .unwrap_or_else(|d| panic!("{} does not load:\n{d}", path.display()))
        .0
}
