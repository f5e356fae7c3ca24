//! A Seguro cluster on loopback, each daemon a real process of the `seguro`
//! binary (or of the test's own, such as a C ship): the config file, the
//! keys, etcd if the test needs it, and every daemon's start, stop, kill,
//! restart and log. The event log, gatekeeper, C ABI and observability
//! tests and the benchmarks run on it; [`crate::cluster::ClusterLab`] is
//! the same in network namespaces.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};
use std::time::Duration;

use config::{Key, ReplicaId, Role};
use telemetry::Exposition;
use trust::Credentials;

use crate::config_file::{ClusterFile, Replica};
use crate::daemon::{self, Daemon};
use crate::etcd::Etcd;
use crate::pki::Pki;
use crate::process::Supervisor;
use crate::{port, wait};

/// How long a scrape of a daemon may take.
const SCRAPE: Duration = Duration::from_secs(5);

/// A cluster on loopback. Dropping it kills every daemon and etcd and
/// removes its directory.
pub struct Lab {
    dir: tempfile::TempDir,
    bin: PathBuf,
    file: ClusterFile,
    daemons: Supervisor<Daemon>,
    /// The cluster's CA and every role's certificate, in `<dir>/tls`.
    pki: Pki,
    etcd: Option<Etcd>,
    /// A daemon's own config file, where it is not `cluster.toml`.
    configs: BTreeMap<Daemon, PathBuf>,
    /// More arguments for every event log node started from now on.
    node_args: Vec<String>,
}

impl Lab {
    /// Replicas `1..=n` of a cluster called `cluster`, each with its event
    /// log node, its agent's metrics and checkpoint listener and its Ames
    /// socket on a fresh loopback port, the ship's public address on
    /// 127.0.0.2, and a gatekeeper listening on loopback; `cluster.toml`
    /// written, the cluster's CA and every role's certificate issued, each
    /// replica's key made, nothing started. etcd's endpoint is a port nobody
    /// listens on until [`Lab::start_etcd`]. `bin` is the `seguro` binary.
    pub fn new(bin: impl Into<PathBuf>, cluster: &str, n: u8) -> io::Result<Lab> {
        let dir = tempfile::tempdir()?;
        let keys = dir.path().join("keys");
        std::fs::create_dir_all(&keys)?;
        let pki = Pki::new(dir.path().join("tls"), cluster)?;
        pki.issue(Role::Edge)?;
        pki.issue(Role::Admin)?;
        let mut file = ClusterFile::new(
            cluster,
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), port::free_port()),
            local(),
            format!("https://{}", local()),
        );
        file.tls.dir = Some(pki.dir().to_owned());
        file.eventlog.data_dir = Some(dir.path().join("data/eventlog"));
        file.eventlog.batch.max_linger = Some(Duration::from_millis(1));
        file.replica.data_dir = Some(dir.path().join("data/replica"));
        file.keys.dir = Some(keys.clone());
        file.gatekeeper.metrics = Some(local());
        file.lb.metrics = Some(local());
        let mut lab = Lab {
            daemons: Supervisor::new(dir.path().join("logs"))?,
            dir,
            bin: bin.into(),
            file,
            pki,
            etcd: None,
            configs: BTreeMap::new(),
            node_args: Vec::new(),
        };
        for id in 1..=n {
            lab.add_replica(id)?;
        }
        lab.write_config()?;
        Ok(lab)
    }

    /// Starts etcd on loopback as Seguro runs it (TLS, client certificates,
    /// a role per identity) and points the config at it.
    pub fn start_etcd(&mut self) -> io::Result<&Etcd> {
        let root = format!("/seguro/{}", self.file.cluster);
        let ids: Vec<ReplicaId> = self
            .file
            .replicas
            .iter()
            .filter_map(|r| ReplicaId::new(r.id))
            .collect();
        let etcd = Etcd::start_tls(&self.pki, &root, &ids)?;
        self.file.etcd.endpoints = vec![etcd.endpoint()];
        self.write_config()?;
        Ok(self.etcd.insert(etcd))
    }

    pub fn etcd(&mut self) -> &mut Etcd {
        self.etcd.as_mut().expect("the lab's etcd was started")
    }

    /// etcd's client URL (once started).
    pub fn etcd_endpoint(&self) -> String {
        self.etcd
            .as_ref()
            .expect("the lab's etcd was started")
            .endpoint()
    }

    /// A campaign for replica `id`'s term in the lab's etcd, as its agent
    /// runs one: it resolves once the replica leads, with the epoch etcd
    /// gave it (the event log lets only that replica fence and write at
    /// it). Dropping the [`leadership::Leadership`] ends the term.
    pub async fn term(&self, id: u8) -> leadership::Leadership {
        let replica = ReplicaId::new(id.into()).expect("replica ids start at 1");
        let credentials = self.credentials(Role::Replica(replica));
        let etcd = leadership::election::connect(&[self.etcd_endpoint()], &credentials)
            .await
            .unwrap_or_else(|e| panic!("replica {id} cannot reach etcd: {e}"));
        let lease_ttl = self.file.etcd.lease_ttl.unwrap_or(config::MIN_LEASE_TTL);
        let root = format!("/seguro/{}", self.file.cluster);
        leadership::Election::new(etcd, &root, lease_ttl)
            .campaign(replica)
            .await
    }

    /// The cluster file every daemon reads unless given its own.
    pub fn file(&self) -> &ClusterFile {
        &self.file
    }

    /// Changes the cluster file; [`Lab::write_config`] writes it.
    pub fn file_mut(&mut self) -> &mut ClusterFile {
        &mut self.file
    }

    /// Writes `cluster.toml` from [`Lab::file`].
    pub fn write_config(&self) -> io::Result<PathBuf> {
        self.file.write(self.config_path())
    }

    /// Writes `file` as `<name>.toml` in the lab's directory: a daemon's own
    /// view of the cluster.
    pub fn write_config_as(&self, name: &str, file: &ClusterFile) -> io::Result<PathBuf> {
        file.write(self.dir.path().join(format!("{name}.toml")))
    }

    /// Gives `daemon` its own config from now on (`None`: `cluster.toml`).
    pub fn set_config(&mut self, daemon: Daemon, config: Option<PathBuf>) {
        match config {
            Some(c) => self.configs.insert(daemon, c),
            None => self.configs.remove(&daemon),
        };
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("cluster.toml")
    }

    /// The config file `daemon` starts with.
    pub fn config_of(&self, daemon: &Daemon) -> PathBuf {
        self.configs
            .get(daemon)
            .cloned()
            .unwrap_or_else(|| self.config_path())
    }

    /// Adds replica `id` to the cluster file (not written), with fresh
    /// addresses, its own key and its certificate.
    pub fn add_replica(&mut self, id: u8) -> io::Result<Replica> {
        let mut r = Replica::new(u32::from(id), local());
        r.eventlog = Some(local());
        r.eventlog_metrics = Some(local());
        r.metrics = Some(local());
        r.checkpoint = Some(local());
        let replica = ReplicaId::new(id.into()).expect("replica ids start at 1");
        self.pki.issue(Role::Replica(replica))?;
        if let Some(etcd) = &mut self.etcd {
            // The new replica's etcd user and role, as an operator grants
            // them (`leadership::access` is idempotent).
            let root = format!("/seguro/{}", self.file.cluster);
            let mut ids: Vec<ReplicaId> = self
                .file
                .replicas
                .iter()
                .filter_map(|r| ReplicaId::new(r.id))
                .collect();
            ids.push(replica);
            etcd.grant(&self.pki, &root, &ids)?;
        }
        let key = self.keys_dir().join(format!("replica-{id}.key"));
        if !key.exists() {
            new_key(&key)?;
        }
        self.file.replicas.retain(|x| x.id != u32::from(id));
        self.file.replicas.push(r.clone());
        Ok(r)
    }

    /// Replica `id`'s table in the cluster file.
    pub fn replica(&self, id: u8) -> &Replica {
        self.file
            .replica(u32::from(id))
            .unwrap_or_else(|| panic!("replica {id} is not in the lab"))
    }

    /// The ids of the replicas in the cluster file.
    pub fn replica_ids(&self) -> Vec<u8> {
        self.file.replicas.iter().map(|r| r.id as u8).collect()
    }

    /// A loopback address on a port no other server of this process was
    /// given.
    pub fn fresh_addr(&self) -> SocketAddr {
        local()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn keys_dir(&self) -> PathBuf {
        self.dir.path().join("keys")
    }

    /// The cluster's CA and certificates.
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// `role`'s credentials (its certificate is issued if it was not).
    pub fn credentials(&self, role: Role) -> Credentials {
        self.pki
            .credentials(role)
            .unwrap_or_else(|e| panic!("{role}'s credentials: {e}"))
    }

    /// The `seguro` binary the daemons run.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// More arguments for every event log node started from now on.
    pub fn set_node_args(&mut self, args: &[&str]) {
        self.node_args = args.iter().map(|a| a.to_string()).collect();
    }

    /// Replica `id`'s event log node's directory.
    pub fn node_dir(&self, id: u8) -> PathBuf {
        self.data_dir("eventlog").join(format!("replica-{id}"))
    }

    /// Replica `id`'s agent's directory.
    pub fn agent_dir(&self, id: u8) -> PathBuf {
        self.data_dir("replica").join(format!("replica-{id}"))
    }

    fn data_dir(&self, what: &str) -> PathBuf {
        let set = match what {
            "eventlog" => self.file.eventlog.data_dir.clone(),
            _ => self.file.replica.data_dir.clone(),
        };
        set.unwrap_or_else(|| self.dir.path().join("data").join(what))
    }

    /// Where `daemon` serves metrics.
    pub fn metrics_addr(&self, daemon: &Daemon) -> SocketAddr {
        let none = || panic!("{daemon} has no metrics address in the lab");
        match daemon {
            Daemon::Lb => self.file.lb.metrics.unwrap_or_else(none),
            Daemon::Gatekeeper(_) => {
                let file = crate::load_config(&self.config_of(daemon));
                file.gatekeeper.metrics
            }
            Daemon::Eventlog(i) => self.replica(*i).eventlog_metrics.unwrap_or_else(none),
            Daemon::Replica(i) => self.replica(*i).metrics.unwrap_or_else(none),
            Daemon::Other(_) => none(),
        }
    }

    /// Starts one of Seguro's daemons with its config (killing a running
    /// one first).
    pub fn start(&mut self, daemon: Daemon) -> io::Result<()> {
        let args = daemon
            .seguro_args()
            .unwrap_or_else(|| panic!("{daemon} is not a seguro daemon: spawn it"));
        let mut cmd = Command::new(&self.bin);
        cmd.arg(&args[0])
            .arg("-c")
            .arg(self.config_of(&daemon))
            .args(&args[1..]);
        if matches!(daemon, Daemon::Eventlog(_)) {
            cmd.args(&self.node_args);
        }
        self.spawn(daemon, cmd)
    }

    /// Starts `daemon` with `config` from now on.
    pub fn start_with(&mut self, daemon: Daemon, config: &Path) -> io::Result<()> {
        self.set_config(daemon.clone(), Some(config.to_owned()));
        self.start(daemon)
    }

    /// Starts `command` as `daemon`, with the lab's log filter.
    pub fn spawn(&mut self, daemon: Daemon, mut command: Command) -> io::Result<()> {
        command
            .env("RUST_LOG", daemon::log_filter())
            .env("NO_COLOR", "1");
        self.daemons.start(daemon, command)
    }

    /// Starts every replica's event log node.
    pub fn start_eventlog(&mut self) -> io::Result<()> {
        for id in self.replica_ids() {
            self.start(Daemon::Eventlog(id))?;
        }
        Ok(())
    }

    pub fn is_running(&mut self, daemon: &Daemon) -> bool {
        self.daemons.is_running(daemon)
    }

    pub fn pid(&self, daemon: &Daemon) -> Option<u32> {
        self.daemons.pid(daemon)
    }

    /// SIGKILL (`kill -9`).
    pub fn kill(&mut self, daemon: &Daemon) {
        self.daemons.kill(daemon);
    }

    /// SIGTERM, then SIGKILL after `grace`: the exit status if it exited.
    pub fn stop(&mut self, daemon: &Daemon, grace: Duration) -> Option<ExitStatus> {
        self.daemons.stop(daemon, grace)
    }

    /// Sends `signal` to `daemon`.
    pub fn signal(&self, daemon: &Daemon, signal: libc::c_int) {
        self.daemons.signal(daemon, signal);
    }

    /// Waits up to `limit` for `daemon` to exit by itself.
    pub fn wait_exit(&mut self, daemon: &Daemon, limit: Duration) -> Option<ExitStatus> {
        self.daemons.wait_exit(daemon, limit)
    }

    /// What `daemon` printed over all its runs.
    pub fn log(&self, daemon: &Daemon) -> String {
        self.daemons.log(daemon)
    }

    pub fn log_path(&self, daemon: &Daemon) -> PathBuf {
        self.daemons.log_path(daemon)
    }

    /// The last `lines` of every daemon's log this lab ever started.
    pub fn logs_tail(&mut self, lines: usize) -> String {
        let mut names: Vec<Daemon> = std::fs::read_dir(self.daemons.logs_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e
                    .file_name()
                    .to_string_lossy()
                    .strip_suffix(".log")?
                    .to_owned();
                Some(self.daemon_named(&name))
            })
            .collect();
        names.sort();
        let mut out = self.daemons.logs_tail(&names, lines);
        if let Some(etcd) = &self.etcd {
            out += &format!("--- etcd\n{}\n", crate::process::tail(&etcd.log(), lines));
        }
        out
    }

    fn daemon_named(&self, name: &str) -> Daemon {
        let all = self
            .replica_ids()
            .into_iter()
            .flat_map(|i| [Daemon::Eventlog(i), Daemon::Replica(i)]);
        [Daemon::Lb, Daemon::Gatekeeper(1), Daemon::Gatekeeper(2)]
            .into_iter()
            .chain(all)
            .find(|d| d.to_string() == name)
            .unwrap_or_else(|| Daemon::Other(name.to_owned()))
    }

    /// Kills replica `id`'s event log node and agent and deletes their data
    /// (not its keys): as if its disk was replaced.
    pub fn wipe(&mut self, id: u8) -> io::Result<()> {
        self.kill(&Daemon::Replica(id));
        self.kill(&Daemon::Eventlog(id));
        crate::remove_dirs([self.node_dir(id), self.agent_dir(id)])
    }

    /// Runs `seguro ARGS` to completion.
    pub fn run_seguro(&self, args: &[&str]) -> io::Result<Output> {
        Command::new(&self.bin).args(args).output()
    }

    /// `daemon`'s metrics.
    pub fn scrape(&self, daemon: &Daemon) -> Result<Exposition, telemetry::ScrapeError> {
        telemetry::scrape_blocking(self.metrics_addr(daemon), SCRAPE)
    }

    /// One series of `daemon`'s metrics, if it answers and has it.
    pub fn metric(&self, daemon: &Daemon, series: &str) -> Option<f64> {
        self.scrape(daemon).ok()?.value(series)
    }

    /// Waits up to `limit` for `probe`; fails the test with every daemon's
    /// log if it times out, or as soon as a daemon exits by itself.
    pub fn wait<T, O: wait::Outcome<T>>(
        &mut self,
        limit: Duration,
        what: &str,
        mut probe: impl FnMut(&Lab) -> O,
    ) -> T {
        let got = wait::until(limit, what, || {
            if let Some(gone) = self.exited() {
                return Ok(Err(gone));
            }
            probe(self)
                .into_outcome()
                .map(Ok)
                .map_err(Option::unwrap_or_default)
        });
        match got {
            Ok(Ok(t)) => t,
            Ok(Err(gone)) => panic!("{gone} before {what}\n{}", self.logs_tail(40)),
            Err(e) => panic!("{e}\n{}", self.logs_tail(40)),
        }
    }

    /// A daemon that was started and exited by itself, if one did.
    fn exited(&mut self) -> Option<String> {
        self.daemons
            .names()
            .into_iter()
            .find_map(|d| (!self.daemons.is_running(&d)).then(|| format!("{d} exited")))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // The edge box's daemons first, gently: they resign and detach.
        let edge: Vec<Daemon> = self
            .daemons
            .names()
            .into_iter()
            .filter(|d| matches!(d, Daemon::Lb | Daemon::Gatekeeper(_)))
            .collect();
        self.daemons.shutdown(&edge, Duration::from_secs(3));
    }
}

/// A loopback address on a fresh port.
fn local() -> SocketAddr {
    SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port::free_port())
}

fn new_key(path: &Path) -> io::Result<()> {
    Key::generate()
        .and_then(|k| k.save_new(path))
        .map_err(io::Error::other)
}
