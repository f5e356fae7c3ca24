//! A cluster of real `seguro eventlog` processes on loopback: its config
//! file, its secret, and one process per replica that the test starts,
//! kills and restarts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use config::Key;

use crate::free_port;
use crate::process::spawn_logged;

/// One replica's addresses.
#[derive(Debug, Clone, Copy)]
pub struct Replica {
    pub id: u32,
    pub eventlog: SocketAddr,
    pub metrics: SocketAddr,
}

/// Event log nodes of one cluster, each a `seguro eventlog` process.
/// Dropping it kills them.
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    data_dir: PathBuf,
    replicas: BTreeMap<u32, Replica>,
    children: BTreeMap<u32, Child>,
    extra_args: Vec<String>,
}

impl Cluster {
    /// A cluster of replicas `1..=n` whose config lists all of them; none is
    /// started yet. `bin` is the `seguro` binary.
    pub fn new(bin: impl Into<PathBuf>, n: u32) -> io::Result<Cluster> {
        let dir = tempfile::tempdir()?;
        let data_dir = dir.path().join("data");
        Key::generate()
            .and_then(|k| k.save_new(&dir.path().join("eventlog.key")))
            .map_err(io::Error::other)?;
        let mut cluster = Cluster {
            bin: bin.into(),
            data_dir,
            replicas: BTreeMap::new(),
            children: BTreeMap::new(),
            extra_args: Vec::new(),
            dir,
        };
        for id in 1..=n {
            cluster.add(id);
        }
        cluster.write_config("cluster.toml", &(1..=n).collect::<Vec<_>>())?;
        Ok(cluster)
    }

    /// Keeps every node's files under `dir` (say, a small tmpfs).
    pub fn set_data_dir(&mut self, dir: &Path) {
        self.data_dir = dir.to_path_buf();
    }

    /// More arguments for every node started from now on.
    pub fn set_node_args(&mut self, args: &[&str]) {
        self.extra_args = args.iter().map(|a| a.to_string()).collect();
    }

    /// Gives replica `id` addresses (it appears in configs written after).
    pub fn add(&mut self, id: u32) -> Replica {
        // The kernel may hand out a port twice in a row; the config refuses
        // two replicas (or two roles) on one address.
        let used: Vec<u16> = self
            .replicas
            .values()
            .flat_map(|r| [r.eventlog.port(), r.metrics.port()])
            .collect();
        let fresh = || loop {
            let p = free_port();
            if !used.contains(&p) && !(36000..38000).contains(&p) {
                break p;
            }
        };
        let eventlog = fresh();
        let metrics = loop {
            let p = fresh();
            if p != eventlog {
                break p;
            }
        };
        let r = Replica {
            id,
            eventlog: SocketAddr::from(([127, 0, 0, 1], eventlog)),
            metrics: SocketAddr::from(([127, 0, 0, 1], metrics)),
        };
        self.replicas.insert(id, r);
        r
    }

    pub fn replica(&self, id: u32) -> Replica {
        self.replicas[&id]
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The config every node of the initial cluster uses.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("cluster.toml")
    }

    pub fn key(&self) -> Key {
        Key::load(&self.dir.path().join("eventlog.key"))
            .expect("the cluster's key file is readable")
    }

    /// Writes a config listing replicas `ids`, as `name` in the cluster's
    /// directory, and returns its path.
    pub fn write_config(&self, name: &str, ids: &[u32]) -> io::Result<PathBuf> {
        let mut text = String::from("cluster = \"test\"\n\n[ship]\npublic = \"127.0.0.1:34543\"\n");
        for id in ids {
            let r = self.replicas[id];
            let _ = write!(
                text,
                "\n[[replicas]]\nid = {id}\names = \"127.0.0.1:{}\"\neventlog = \"{}\"\neventlog_metrics = \"{}\"\nmetrics = \"127.0.0.1:{}\"\n",
                36000 + id,
                r.eventlog,
                r.metrics,
                37000 + id,
            );
        }
        let _ = write!(
            text,
            "\n[lb]\ninterface = \"lo\"\n\n[gatekeeper]\nlisten = \"127.0.0.1:4720\"\n\n[etcd]\nendpoints = [\"http://127.0.0.1:2379\"]\n\n[eventlog]\ndata_dir = \"{}\"\n\n[eventlog.batch]\nmax_linger = \"1ms\"\n\n[keys]\neventlog = \"eventlog.key\"\n",
            self.data_dir.display()
        );
        let path = self.dir.path().join(name);
        std::fs::write(&path, text)?;
        Ok(path)
    }

    /// The directory of replica `id`'s node.
    pub fn node_dir(&self, id: u32) -> PathBuf {
        self.data_dir.join(format!("replica-{id}"))
    }

    fn log_path(&self, id: u32) -> PathBuf {
        self.dir.path().join(format!("node-{id}.log"))
    }

    /// What replica `id`'s node printed, over all its runs.
    pub fn log(&self, id: u32) -> String {
        std::fs::read_to_string(self.log_path(id)).unwrap_or_default()
    }

    /// Starts replica `id`'s node with the cluster's config.
    pub fn start(&mut self, id: u32) -> io::Result<()> {
        let config = self.config_path();
        self.start_with(id, &config)
    }

    /// Starts replica `id`'s node with the config at `config`.
    pub fn start_with(&mut self, id: u32, config: &Path) -> io::Result<()> {
        self.kill(id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(id))?;
        let child = spawn_logged(
            Command::new(&self.bin)
                .arg("eventlog")
                .arg("-c")
                .arg(config)
                .arg("--id")
                .arg(id.to_string())
                .args(&self.extra_args)
                .env(
                    "RUST_LOG",
                    std::env::var("SEGURO_TEST_LOG")
                        .unwrap_or_else(|_| "info,openraft=warn".into()),
                ),
            log,
        )?;
        self.children.insert(id, child);
        Ok(())
    }

    /// Runs `seguro eventlog` with `args` once, to completion: its exit
    /// status and output.
    pub fn run_once(&self, args: &[&str]) -> io::Result<std::process::Output> {
        Command::new(&self.bin).arg("eventlog").args(args).output()
    }

    pub fn is_running(&mut self, id: u32) -> bool {
        self.children
            .get_mut(&id)
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Waits up to `limit` for replica `id`'s node to exit by itself.
    pub fn wait_exit(&mut self, id: u32, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        let child = self.children.get_mut(&id)?;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.children.remove(&id);
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGKILL: the process gets no chance to flush or clean up.
    pub fn kill(&mut self, id: u32) {
        if let Some(mut child) = self.children.remove(&id) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for a clean exit (SIGKILL after 10 s).
    pub fn stop(&mut self, id: u32) -> Option<std::process::ExitStatus> {
        let mut child = self.children.remove(&id)?;
        // SAFETY: kill(2) on our own child, which has not been reaped, so its
        // pid cannot have been reused.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok()
    }

    /// Deletes replica `id`'s files (its node must be stopped).
    pub fn wipe(&mut self, id: u32) -> io::Result<()> {
        self.kill(id);
        match std::fs::remove_dir_all(self.node_dir(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let ids: Vec<u32> = self.children.keys().copied().collect();
        for id in ids {
            self.kill(id);
        }
    }
}
