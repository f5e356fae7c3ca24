//! The whole Seguro cluster on one machine, in network namespaces: etcd, the
//! edge box (`seguro lb` in XDP mode and `seguro gatekeeper`), replicas
//! (`seguro eventlog` and `seguro replica` each), and a peer. The cluster
//! tests, the failover benchmark and `make run` use it.
//!
//! The public side is [`EdgeLab`]'s: the peer reaches only the edge box,
//! which does not forward; every replica gets the peer's packets from the
//! fan-out alone. The cluster's own traffic (etcd, Raft, effect envelopes,
//! metrics) runs on a second network, a bridge in the `backend` namespace:
//!
//! ```text
//!  peer p0 ── e0 edge er1 ── eth0 r1 b0 ─┐
//!                    er2 ── eth0 r2 b0 ─┤
//!                    er3 ── router ── r3 b0 ─┤  br0 (backend)
//!                    b0 ────────────────────┘
//! ```
//!
//! | who | backend address | listens there |
//! |---|---|---|
//! | edge | 10.98.0.254 | etcd :2379, gatekeeper :4720 (lb and gatekeeper metrics on the edge's 127.0.0.1 :9460, :9461) |
//! | replica i | 10.98.0.i | event log :4710, its metrics :9471, the agent's metrics :9470, its checkpoint (mutual TLS) :4712 |
//!
//! Every metrics endpoint is reachable from the edge namespace
//! ([`ClusterLab::metrics_targets`]), where a Prometheus would run.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use config::{Key, LbMode, Optimism, ReplicaId, Role};
use eventlog_client::{Event, EventNum};
use futures::StreamExt as _;
use telemetry::Exposition;

use crate::config_file::{ClusterFile, Replica};
use crate::daemon::{self, Daemon};
use crate::edge::{EDGE_IF, EdgeLab, Family};
use crate::etcd::Etcd;
use crate::netns::{self, Netns, veth};
use crate::pki::Pki;
use crate::probe::{Probe, ProbeConfig};
use crate::process::Supervisor;
use crate::wait;

/// The ship's Ames port, on the edge's public address and every replica's.
pub const AMES_PORT: u16 = 34543;
/// The edge box's address on the backend network.
pub const EDGE_BACKEND: Ipv4Addr = Ipv4Addr::new(10, 98, 0, 254);
pub const ETCD_PORT: u16 = 2379;
pub const GATEKEEPER_PORT: u16 = 4720;
pub const EVENTLOG_PORT: u16 = 4710;
pub const EVENTLOG_METRICS_PORT: u16 = 9471;
pub const REPLICA_METRICS_PORT: u16 = 9470;
/// Where each agent serves its checkpoint to its peers (mutual TLS).
pub const CHECKPOINT_PORT: u16 = 4712;
/// In the edge namespace, whose loopback is its own.
pub const LB_METRICS: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9460);
pub const GATEKEEPER_METRICS: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9461);

/// Replica `i`'s address on the backend network.
pub fn backend_ip(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 98, 0, i)
}

/// How to build a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// 1 to 9 replicas.
    pub replicas: u8,
    /// Namespaces named `<prefix>-peer`, `<prefix>-edge`, `<prefix>-r1`...,
    /// `<prefix>-backend` (a demo's, which users type); unique names if
    /// `None`.
    pub prefix: Option<String>,
    /// Where the config, keys, data and logs go; a temporary directory
    /// (removed on drop) if `None`.
    pub dir: Option<PathBuf>,
    /// `lb.mode`.
    pub lb_mode: LbMode,
    /// `etcd.lease_ttl` in seconds.
    pub lease_ttl_secs: u32,
    /// `optimism`.
    pub optimism: Optimism,
    /// `replica.checkpoint_every`.
    pub checkpoint_every: u64,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            replicas: 3,
            prefix: None,
            dir: None,
            lb_mode: LbMode::Xdp,
            lease_ttl_secs: 2,
            optimism: Optimism::Quorum,
            checkpoint_every: 1000,
        }
    }
}

/// A cluster in namespaces, with its etcd running; [`ClusterLab::start_all`]
/// starts the daemons. Dropping it kills every process and removes the
/// namespaces (and the directory, if temporary).
pub struct ClusterLab {
    pub lab: EdgeLab,
    pub backend: Netns,
    etcd: Etcd,
    pki: Pki,
    bin: PathBuf,
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    replicas: u8,
    daemons: Supervisor<Daemon>,
    /// `--ship` per replica, when not `reference`.
    ships: BTreeMap<u8, String>,
    /// The next probe's first sequence number.
    next_seq: std::sync::atomic::AtomicU64,
    /// Environment variables a daemon starts with, beyond the log filter.
    env: BTreeMap<Daemon, Vec<(String, String)>>,
}

impl ClusterLab {
    /// Builds the namespaces, writes the config and keys and starts etcd in
    /// the edge namespace. `bin` is the `seguro` binary. Needs root.
    pub fn new(bin: impl Into<PathBuf>, opts: &ClusterOptions) -> io::Result<ClusterLab> {
        assert!((1..10).contains(&opts.replicas), "1 to 9 replicas");
        let (tmp, dir) = match &opts.dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                (None, d.clone())
            }
            None => {
                let t = tempfile::tempdir()?;
                let d = t.path().to_path_buf();
                (Some(t), d)
            }
        };
        let lab = match &opts.prefix {
            Some(p) => EdgeLab::with_prefix(opts.replicas, p),
            None => EdgeLab::new(opts.replicas),
        };
        let backend = match &opts.prefix {
            Some(p) => Netns::named(&format!("{p}-backend")),
            None => Netns::new("backend"),
        };
        backend.ip(&["link", "add", "br0", "type", "bridge"]);
        backend.ip(&["link", "set", "br0", "up"]);
        let join = |ns: &Netns, ip: Ipv4Addr, port: &str| {
            veth(ns, "b0", &[&format!("{ip}/24")], &backend, port, &[]);
            backend.ip(&["link", "set", port, "master", "br0"]);
        };
        join(&lab.edge, EDGE_BACKEND, "bedge");
        for i in 1..=opts.replicas {
            join(lab.replica(i), backend_ip(i), &format!("br{i}"));
        }
        for sub in ["keys", "logs", "data"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let fresh_key = |path: PathBuf| -> io::Result<()> {
            if path.exists() {
                return Ok(());
            }
            Key::generate()
                .and_then(|k| k.save_new(&path))
                .map_err(io::Error::other)
        };
        for i in 1..=opts.replicas {
            fresh_key(dir.join(format!("keys/replica-{i}.key")))?;
        }
        cluster_file(&lab, opts).write(dir.join("seguro.toml"))?;
        let pki = Pki::new(dir.join("tls"), "demo")?;
        let ids: Vec<ReplicaId> = (1..=opts.replicas)
            .filter_map(|i| ReplicaId::new(i.into()))
            .collect();
        for role in ids
            .iter()
            .map(|id| Role::Replica(*id))
            .chain([Role::Edge, Role::Admin])
        {
            pki.issue(role)?;
        }
        let etcd = Etcd::start_tls_in(
            &lab.edge,
            SocketAddr::new(EDGE_BACKEND.into(), ETCD_PORT),
            &pki,
            "/seguro/demo",
            &ids,
        )?;
        Ok(ClusterLab {
            lab,
            backend,
            etcd,
            pki,
            bin: bin.into(),
            daemons: Supervisor::new(dir.join("logs"))?,
            dir,
            _tmp: tmp,
            replicas: opts.replicas,
            ships: BTreeMap::new(),
            next_seq: std::sync::atomic::AtomicU64::new(0),
            env: BTreeMap::new(),
        })
    }

    /// Kills whatever runs in namespaces a previous run with `prefix` left
    /// (a demo that was killed itself) and deletes them.
    pub fn clean_leftovers(prefix: &str, replicas: u8) {
        let mut names = EdgeLab::prefixed_names(replicas, prefix);
        names.push(format!("{prefix}-backend"));
        for name in names.iter().filter(|n| netns::exists(n)) {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<libc::pid_t>() {
                        // SAFETY: kill(2) has no memory-safety preconditions.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(100));
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The `seguro` binary every daemon runs.
    pub fn seguro_bin(&self) -> &Path {
        &self.bin
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("seguro.toml")
    }

    /// `role`'s credentials, from the cluster's certificates.
    pub fn credentials(&self, role: Role) -> trust::Credentials {
        let files = self.pki.files(role);
        trust::Credentials::load(self.pki.identity(role), files)
            .unwrap_or_else(|e| panic!("{role}'s credentials: {e}"))
    }

    /// Replica `i`'s committed log from event `from` up to its node's
    /// commit point, read from the edge namespace as replica `i` itself
    /// would (reading the log is a replica's right).
    pub fn read_log(&self, i: u8, from: EventNum) -> io::Result<Vec<Event>> {
        let config = crate::load_config(&self.config_path());
        let id = ReplicaId::new(i.into()).expect("replica ids start at 1");
        let credentials = self.credentials(Role::Replica(id));
        let addr = self.eventlog_addr(i).to_string();
        self.lab.edge.run(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(async {
                    let client = eventlog_client::Client::new(&config, credentials);
                    let mut stream = std::pin::pin!(client.read_from(&addr, from, None));
                    let mut events = Vec::new();
                    while let Some(e) = tokio::time::timeout(Duration::from_secs(10), stream.next())
                        .await
                        .map_err(|_| {
                            io::Error::other(format!("reading replica {i}'s log stalled"))
                        })?
                    {
                        events.push(e.map_err(|e| {
                            io::Error::other(format!("reading replica {i}'s log: {e}"))
                        })?);
                    }
                    Ok(events)
                })
        })
    }

    /// The ship's public address, on the edge box.
    pub fn ship(&self) -> SocketAddr {
        SocketAddr::new(self.lab.ship_ip(Family::V4), AMES_PORT)
    }

    /// The namespace `daemon` runs in.
    pub fn netns_of(&self, daemon: &Daemon) -> &Netns {
        match daemon {
            Daemon::Eventlog(i) | Daemon::Replica(i) => self.lab.replica(*i),
            _ => &self.lab.edge,
        }
    }

    /// Replica `i`'s event log node's client address (backend network).
    /// The cluster's CA and certificates (an attacker's too, in tests).
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// etcd's client URL, reachable from the edge namespace and the
    /// replicas'.
    pub fn etcd_endpoint(&self) -> String {
        self.etcd.endpoint()
    }

    /// Where replica `i`'s agent serves its checkpoint (mutual TLS).
    pub fn checkpoint_addr(&self, i: u8) -> SocketAddr {
        SocketAddr::new(backend_ip(i).into(), CHECKPOINT_PORT)
    }

    pub fn eventlog_addr(&self, i: u8) -> SocketAddr {
        SocketAddr::new(backend_ip(i).into(), EVENTLOG_PORT)
    }

    /// Every daemon's Prometheus endpoint as `(job, address)`, all reachable
    /// from the edge namespace: `lb`, `gatekeeper`, `eventlog` and `replica`
    /// (one per replica).
    pub fn metrics_targets(&self) -> Vec<(String, SocketAddr)> {
        let mut out = vec![
            ("lb".to_string(), LB_METRICS),
            ("gatekeeper".to_string(), GATEKEEPER_METRICS),
        ];
        for i in 1..=self.replicas {
            out.push((
                "eventlog".into(),
                SocketAddr::new(backend_ip(i).into(), EVENTLOG_METRICS_PORT),
            ));
        }
        for i in 1..=self.replicas {
            out.push((
                "replica".into(),
                SocketAddr::new(backend_ip(i).into(), REPLICA_METRICS_PORT),
            ));
        }
        out
    }

    /// Where `daemon` serves metrics (from the edge namespace).
    pub fn metrics_addr(&self, daemon: &Daemon) -> SocketAddr {
        match daemon {
            Daemon::Lb => LB_METRICS,
            Daemon::Eventlog(i) => SocketAddr::new(backend_ip(*i).into(), EVENTLOG_METRICS_PORT),
            Daemon::Replica(i) => SocketAddr::new(backend_ip(*i).into(), REPLICA_METRICS_PORT),
            _ => GATEKEEPER_METRICS,
        }
    }

    /// `GET /metrics` of `daemon`, from the edge namespace.
    pub fn scrape(&self, daemon: &Daemon) -> Result<Exposition, telemetry::ScrapeError> {
        let addr = self.metrics_addr(daemon);
        self.lab
            .edge
            .run(|| telemetry::scrape_blocking(addr, Duration::from_secs(5)))
    }

    /// One series of `daemon`'s metrics, if it answers and has it.
    pub fn metric(&self, daemon: &Daemon, series: &str) -> Option<f64> {
        self.scrape(daemon).ok()?.value(series)
    }

    /// Replicas whose agent says it leads (`seguro_replica_leader`).
    pub fn leaders(&self) -> Vec<u8> {
        (1..=self.replicas)
            .filter(|&i| {
                let agent = Daemon::Replica(i);
                self.daemons.is_started(&agent)
                    && self.metric(&agent, "seguro_replica_leader") == Some(1.0)
            })
            .collect()
    }

    /// The one leading replica, waiting up to `limit` for there to be one.
    pub fn wait_leader(&self, limit: Duration) -> Option<u8> {
        wait::until(limit, "one leader", || match self.leaders()[..] {
            [one] => Ok(one),
            ref many => Err(format!("leaders {many:?}")),
        })
        .ok()
    }

    /// Waits until exactly one replica other than `old` leads, giving up
    /// (`None`) at `deadline` or as soon as `give_up()` says so.
    pub fn wait_new_leader(
        &self,
        old: u8,
        deadline: Instant,
        give_up: impl Fn() -> bool,
    ) -> Option<u8> {
        // Finely: benchmarks time the election by it.
        wait::every(
            Duration::from_millis(10),
            deadline,
            "a new leader",
            || match self.leaders()[..] {
                [one] if one != old => Ok(Some(one)),
                _ if give_up() => Ok(None),
                _ => Err("not yet"),
            },
        )
        .ok()
        .flatten()
    }

    /// Waits up to `limit` until `series` of `daemon` satisfies `ok`.
    pub fn wait_metric(
        &mut self,
        daemon: &Daemon,
        series: &str,
        limit: Duration,
        ok: impl Fn(f64) -> bool,
    ) -> io::Result<f64> {
        let got = wait::until(limit, format_args!("{daemon}: {series}"), || {
            match self.metric(daemon, series) {
                Some(v) if ok(v) => Ok(v),
                v => Err(format!("{series} = {v:?}")),
            }
        });
        got.map_err(|e| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{e}; its log ends:\n{}",
                    crate::process::tail(&self.log(daemon), 30)
                ),
            )
        })
    }

    /// Runs replica `i` with `--ship SHIP` from its next start on.
    pub fn set_ship(&mut self, i: u8, ship: &str) {
        if ship == "reference" {
            self.ships.remove(&i);
        } else {
            self.ships.insert(i, ship.to_string());
        }
    }

    /// Starts `daemon` with `key=value` in its environment from its next
    /// start on (a debug switch, a preloaded library).
    pub fn set_env(&mut self, daemon: Daemon, key: &str, value: &str) {
        let vars = self.env.entry(daemon).or_default();
        vars.retain(|(k, _)| k != key);
        vars.push((key.into(), value.into()));
    }

    /// The cluster's etcd, to stop, restart or restore.
    pub fn etcd_mut(&mut self) -> &mut Etcd {
        &mut self.etcd
    }

    /// The daemons that were started and have exited by themselves since,
    /// and how.
    pub fn exited(&mut self) -> Vec<(Daemon, std::process::ExitStatus)> {
        self.daemons
            .names()
            .into_iter()
            .filter_map(|d| Some((d.clone(), self.daemons.exit_status(&d)?)))
            .collect()
    }

    /// What `daemon` printed over all its runs.
    pub fn log(&self, daemon: &Daemon) -> String {
        self.daemons.log(daemon)
    }

    /// Every daemon's log's last lines, for a failing test's message.
    pub fn logs_tail(&mut self, lines: usize) -> String {
        let mut all = vec![Daemon::Lb, Daemon::Gatekeeper(1)];
        for i in 1..=self.replicas {
            all.extend([Daemon::Eventlog(i), Daemon::Replica(i)]);
        }
        self.daemons.logs_tail(&all, lines)
    }

    /// Starts `daemon` (killing a running one first).
    pub fn start(&mut self, daemon: Daemon) -> io::Result<()> {
        let args = daemon
            .seguro_args()
            .unwrap_or_else(|| panic!("{daemon} is not one of the cluster's daemons"));
        let mut cmd = self.netns_of(&daemon).command(&self.bin);
        cmd.args(&args);
        if let Daemon::Replica(i) = daemon
            && let Some(ship) = self.ships.get(&i)
        {
            cmd.args(["--ship", ship]);
        }
        cmd.arg("-c").arg(self.config_path());
        use std::os::unix::process::CommandExt as _;
        if let Some(vars) = self.env.get(&daemon) {
            cmd.envs(vars.iter().map(|(k, v)| (k, v)));
        }
        cmd.env("RUST_LOG", daemon::log_filter())
            .env("NO_COLOR", "1")
            // Its own process group: a terminal's Ctrl-C reaches the demo,
            // which tears everything down in order.
            .process_group(0);
        self.daemons.start(daemon, cmd)
    }

    /// Starts everything and waits until the fan-out runs, the gatekeeper
    /// is active and a replica leads.
    pub fn start_all(&mut self) -> io::Result<()> {
        let limit = Duration::from_secs(60);
        self.start(Daemon::Lb)?;
        self.wait_metric(&Daemon::Lb, "seguro_lb_replicas", limit, |v| v > 0.0)?;
        for i in 1..=self.replicas {
            self.start(Daemon::Eventlog(i))?;
        }
        self.start(Daemon::Gatekeeper(1))?;
        for i in 1..=self.replicas {
            self.start(Daemon::Replica(i))?;
        }
        self.wait_metric(
            &Daemon::Gatekeeper(1),
            "seguro_gatekeeper_active",
            limit,
            |v| v == 1.0,
        )?;
        if self.wait_leader(limit).is_none() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no replica leads after {limit:?}:\n{}", self.logs_tail(20)),
            ));
        }
        Ok(())
    }

    /// Whether `daemon` was started and not stopped or killed since.
    pub fn is_running(&self, daemon: &Daemon) -> bool {
        self.daemons.is_started(daemon)
    }

    /// SIGKILL (`kill -9`): no chance to flush, resign or clean up.
    pub fn kill(&mut self, daemon: &Daemon) {
        self.daemons.kill(daemon);
    }

    /// SIGTERM, then SIGKILL after `grace`: the exit status if it exited.
    pub fn stop(&mut self, daemon: &Daemon, grace: Duration) -> Option<std::process::ExitStatus> {
        self.daemons.stop(daemon, grace)
    }

    /// Sends `signal` (SIGSTOP, SIGCONT...) to `daemon`.
    pub fn signal(&self, daemon: &Daemon, signal: libc::c_int) {
        self.daemons.signal(daemon, signal);
    }

    /// Kills `daemon` (-9) and starts it again.
    pub fn restart(&mut self, daemon: Daemon) -> io::Result<()> {
        self.kill(&daemon);
        self.start(daemon)
    }

    /// Kills replica `i`'s event log node and agent and deletes their data
    /// (not its keys): as if its disk was replaced.
    pub fn wipe(&mut self, i: u8) -> io::Result<()> {
        self.kill(&Daemon::Replica(i));
        self.kill(&Daemon::Eventlog(i));
        let data = self.dir.join("data");
        crate::remove_dirs(
            ["eventlog", "replica"].map(|what| data.join(what).join(format!("replica-{i}"))),
        )
    }

    /// A socket in the peer's namespace, on the peer's address.
    pub fn peer_socket(&self, port: u16) -> io::Result<UdpSocket> {
        let at = SocketAddr::new(self.lab.peer_ip(Family::V4), port);
        self.lab.peer.run(|| {
            let s = UdpSocket::bind(at)?;
            big_buffers(&s);
            Ok(s)
        })
    }

    /// Starts a probe in the peer's namespace that sends `rate` packets per
    /// second to the ship for `duration` (see [`ProbeConfig::steady`]).
    pub fn probe(&self, rate: u32, duration: Duration) -> io::Result<Probe> {
        self.probe_with(ProbeConfig::steady(self.ship(), rate, duration))
    }

    /// Starts a probe in the peer's namespace as `config` says, with
    /// sequence numbers no other probe of this cluster uses.
    pub fn probe_with(&self, mut config: ProbeConfig) -> io::Result<Probe> {
        let socket = self.peer_socket(0)?;
        config.first_seq = self.take_seqs(config.count);
        Probe::start(config, socket)
    }

    /// Kills (-9) the leading replica's agent and event log node, as a
    /// replica host dying would: which replica, and when.
    pub fn kill_leader(&mut self, limit: Duration) -> io::Result<(u8, Instant)> {
        let leader = self.wait_leader(limit).ok_or_else(|| {
            io::Error::new(io::ErrorKind::TimedOut, "no replica leads: nothing to kill")
        })?;
        let at = self.kill_replica(leader);
        Ok((leader, at))
    }

    /// Kills (-9) replica `i`'s agent, then its event log node, as a host
    /// dying would; returns when the agent was killed.
    pub fn kill_replica(&mut self, i: u8) -> Instant {
        self.kill(&Daemon::Replica(i));
        let at = Instant::now();
        self.kill(&Daemon::Eventlog(i));
        at
    }

    /// Starts replica `i`'s event log node and agent (again).
    pub fn start_replica(&mut self, i: u8) -> io::Result<()> {
        self.start(Daemon::Eventlog(i))?;
        self.start(Daemon::Replica(i))
    }

    /// Waits up to `limit` until replica `i` has applied what the leader
    /// committed when this was called.
    pub fn wait_caught_up(&mut self, i: u8, limit: Duration) -> io::Result<()> {
        let leader = self
            .wait_leader(limit)
            .ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "no replica leads"))?;
        let target = self
            .metric(&Daemon::Replica(leader), "seguro_replica_committed_event")
            .unwrap_or(0.0);
        self.wait_metric(
            &Daemon::Replica(i),
            "seguro_replica_applied_event",
            limit,
            |v| v >= target,
        )
        .map(|_| ())
    }

    /// Reserves `count` sequence numbers for a probe: the first of them.
    pub fn take_seqs(&self, count: u64) -> u64 {
        self.next_seq
            .fetch_add(count, std::sync::atomic::Ordering::Relaxed)
    }

    /// Applies an nftables ruleset in replica `i`'s namespace.
    pub fn nft(&self, i: u8, ruleset: &str) {
        self.lab.replica(i).nft(ruleset);
    }

    /// Drops replica `i`'s traffic to and from etcd (the etcd client's TCP
    /// connections); [`ClusterLab::reconnect_etcd`] lifts it.
    pub fn cut_from_etcd(&self, i: u8) {
        self.nft(
            i,
            &format!(
                "table inet seguro_cut {{\n chain out {{ type filter hook output priority 0; ip daddr {EDGE_BACKEND} tcp dport {ETCD_PORT} drop\n }}\n chain in {{ type filter hook input priority 0; ip saddr {EDGE_BACKEND} tcp sport {ETCD_PORT} drop\n }}\n}}\n"
            ),
        );
    }

    pub fn reconnect_etcd(&self, i: u8) {
        self.nft(i, "delete table inet seguro_cut\n");
    }

    /// Runs `seguro ARGS` inside the edge namespace to completion.
    pub fn run_seguro(&self, args: &[&str]) -> io::Result<std::process::Output> {
        self.lab.edge.command(&self.bin).args(args).output()
    }
}

impl Drop for ClusterLab {
    fn drop(&mut self) {
        // The edge box's daemons first, gently: lb detaches its programs.
        self.daemons
            .shutdown(&[Daemon::Lb, Daemon::Gatekeeper(1)], Duration::from_secs(3));
        self.etcd.kill();
    }
}

/// How long after `at` the peer got its first answer to a request it sent
/// after `at`: after a leader's death, when the new leader answered.
pub fn first_answer_after(report: &crate::probe::ProbeReport, at: Instant) -> Option<Duration> {
    report
        .answers
        .iter()
        .filter(|a| a.sent >= at)
        .map(|a| a.received.duration_since(at))
        .min()
}

fn big_buffers(s: &UdpSocket) {
    use std::os::fd::AsRawFd as _;
    let size: libc::c_int = 8 << 20;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_SNDBUFFORCE] {
        // SAFETY: setsockopt on a socket we own with a c_int value; failure
        // (not root) only leaves the default size.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&raw const size).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

/// The cluster file: addresses on the backend network, data and keys
/// relative to the cluster's directory.
fn cluster_file(lab: &EdgeLab, opts: &ClusterOptions) -> ClusterFile {
    let mut f = ClusterFile::new(
        "demo",
        SocketAddr::new(lab.ship_ip(Family::V4), AMES_PORT),
        SocketAddr::new(EDGE_BACKEND.into(), GATEKEEPER_PORT),
        format!("https://{EDGE_BACKEND}:{ETCD_PORT}"),
    );
    f.optimism = Some(opts.optimism);
    for i in 1..=opts.replicas {
        let b = IpAddr::V4(backend_ip(i));
        let mut r = Replica::new(
            u32::from(i),
            SocketAddr::new(lab.replica_ip(i, Family::V4), AMES_PORT),
        );
        r.eventlog = Some(SocketAddr::new(b, EVENTLOG_PORT));
        r.eventlog_metrics = Some(SocketAddr::new(b, EVENTLOG_METRICS_PORT));
        r.metrics = Some(SocketAddr::new(b, REPLICA_METRICS_PORT));
        r.checkpoint = Some(SocketAddr::new(b, CHECKPOINT_PORT));
        f.replicas.push(r);
    }
    f.lb.interface = EDGE_IF.into();
    f.lb.mode = Some(opts.lb_mode);
    f.lb.metrics = Some(LB_METRICS);
    f.gatekeeper.metrics = Some(GATEKEEPER_METRICS);
    f.etcd.lease_ttl = Some(Duration::from_secs(opts.lease_ttl_secs.into()));
    f.eventlog.data_dir = Some("data/eventlog".into());
    f.eventlog.batch.max_linger = Some(Duration::from_millis(1));
    f.replica.data_dir = Some("data/replica".into());
    f.replica.checkpoint_every = Some(opts.checkpoint_every);
    f.keys.dir = Some("keys".into());
    f.tls.dir = Some("tls".into());
    f
}
