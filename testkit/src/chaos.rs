//! The nemesis: a whole cluster in namespaces under the peer's load, one
//! fault at a time from a seeded schedule, each replica host's disks on a
//! file system that forgets what was never synced, and the history checked
//! at the end (docs/RELIABILITY.md).

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use config::{ReplicaId, Role};
use eventlog_client::EventNum;
use futures::StreamExt as _;

use crate::cluster::{ClusterLab, ClusterOptions, EDGE_BACKEND, backend_ip};
use crate::daemon::Daemon;
use crate::history::{self, Acked, History, Logged};
use crate::lazyfs::LazyFs;
use crate::probe::{Probe, ProbeConfig, ProbeReport};

/// The lease TTL the chaos cluster runs with: faults are held past it.
const TTL: Duration = Duration::from_secs(2);
/// How long after a fault is healed the cluster has to answer again
/// before the round counts as an outage that never ended.
const RECOVERY_LIMIT: Duration = Duration::from_secs(45);
/// The debug-only switch that makes the event log skip fdatasync
/// (eventlog's storage; compiled out of release builds).
pub const SKIP_FDATASYNC: &str = "SEGURO_UNSAFE_SKIP_FDATASYNC";

/// One kind of fault; a round applies one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// `kill -9` of one daemon (the leader's agent, any agent, any event
    /// log node, the gatekeeper, the fan-out), started again a second later.
    Kill,
    /// A replica host loses power: its daemons die and every byte its
    /// disks had not synced is gone.
    PowerLoss,
    /// Every replica host loses power at once (a data centre's outage):
    /// the power-loss check, not drawn in rounds.
    PowerLossAll,
    /// SIGSTOP past the lease TTL, then SIGCONT.
    Pause,
    /// The leading replica cannot reach etcd.
    CutLeaderFromEtcd,
    /// The leading replica reaches etcd but no other replica (so not the
    /// event log's quorum).
    CutLeaderFromQuorum,
    /// The edge box and one replica cannot reach each other.
    CutEdgeFromReplica,
    /// The leading replica hears nothing from the other replicas; what it
    /// sends still arrives.
    Asymmetric,
    /// A tenth of every replica's packets dropped, both ways.
    PacketLoss,
    /// fsync fails with EIO on one replica's event log disk.
    FsyncEio,
    /// etcd killed and started again after a TTL.
    EtcdRestart,
    /// A follower's event log node removed from the voters under load, and
    /// added back.
    RemoveReadd,
    /// etcd restored from a snapshot taken when the run began: its revision,
    /// and so the epochs it hands out, go back below the log's. Held past
    /// the TTL, then the documented recovery (docs/DEPLOY.md §12): restore
    /// again with the revision bumped past the log's highest epoch.
    EtcdRollback,
    /// One replica host's wall clock jumps 45 s back (libfaketime under its
    /// daemons), and later forward again. Not further: certificates are
    /// valid from a minute before they were issued, and the test's were
    /// issued minutes ago (a host whose clock is before its peers'
    /// certificates is refused by TLS: safe, but another fault).
    ClockJump,
}

impl FaultKind {
    /// Every kind a full run draws from.
    pub const ALL: [FaultKind; 13] = [
        FaultKind::Kill,
        FaultKind::PowerLoss,
        FaultKind::Pause,
        FaultKind::CutLeaderFromEtcd,
        FaultKind::CutLeaderFromQuorum,
        FaultKind::CutEdgeFromReplica,
        FaultKind::Asymmetric,
        FaultKind::PacketLoss,
        FaultKind::FsyncEio,
        FaultKind::EtcdRestart,
        FaultKind::RemoveReadd,
        FaultKind::EtcdRollback,
        FaultKind::ClockJump,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill -9",
            FaultKind::PowerLoss => "power loss (one host)",
            FaultKind::PowerLossAll => "power loss (every host at once)",
            FaultKind::Pause => "SIGSTOP past the TTL",
            FaultKind::CutLeaderFromEtcd => "partition leader ↔ etcd",
            FaultKind::CutLeaderFromQuorum => "partition leader ↔ event log quorum",
            FaultKind::CutEdgeFromReplica => "partition edge box ↔ one replica",
            FaultKind::Asymmetric => "asymmetric partition (leader deaf)",
            FaultKind::PacketLoss => "10% packet loss",
            FaultKind::FsyncEio => "EIO on fsync",
            FaultKind::EtcdRestart => "etcd killed and restarted",
            FaultKind::RemoveReadd => "replica removed and re-added",
            FaultKind::EtcdRollback => "etcd restored from an older snapshot",
            FaultKind::ClockJump => "clock jumps 45 s back",
        }
    }

    /// A name for the command line: `kill`, `power-loss`...
    pub fn slug(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::PowerLoss => "power-loss",
            FaultKind::PowerLossAll => "power-loss-all",
            FaultKind::Pause => "pause",
            FaultKind::CutLeaderFromEtcd => "cut-etcd",
            FaultKind::CutLeaderFromQuorum => "cut-quorum",
            FaultKind::CutEdgeFromReplica => "cut-edge",
            FaultKind::Asymmetric => "asymmetric",
            FaultKind::PacketLoss => "loss",
            FaultKind::FsyncEio => "eio",
            FaultKind::EtcdRestart => "etcd-restart",
            FaultKind::RemoveReadd => "remove-readd",
            FaultKind::EtcdRollback => "etcd-rollback",
            FaultKind::ClockJump => "clock-jump",
        }
    }

    pub fn from_slug(s: &str) -> Option<FaultKind> {
        FaultKind::ALL
            .into_iter()
            .chain([FaultKind::PowerLossAll])
            .find(|k| k.slug() == s)
    }
}

/// Whom a fault hits, decided when the schedule is drawn; the leader is
/// looked up when the fault is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The leading replica.
    Leader,
    /// A replica that does not lead (the lowest-numbered one after the
    /// leader, counting round).
    Follower,
    Replica(u8),
    Gatekeeper,
    Lb,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Leader => f.write_str("leader"),
            Target::Follower => f.write_str("a follower"),
            Target::Replica(i) => write!(f, "replica {i}"),
            Target::Gatekeeper => f.write_str("gatekeeper"),
            Target::Lb => f.write_str("lb"),
        }
    }
}

/// For kills and pauses: the agent, the event log node, or both (a host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Agent,
    Node,
}

/// One round's fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    pub target: Target,
    pub part: Part,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.kind, self.target) {
            (FaultKind::Kill | FaultKind::Pause, Target::Gatekeeper | Target::Lb) => {
                write!(f, "{} of the {}", self.kind.name(), self.target)
            }
            (FaultKind::Kill | FaultKind::Pause, t) => {
                let part = match self.part {
                    Part::Agent => "agent",
                    Part::Node => "event log node",
                };
                write!(f, "{} of {t}'s {part}", self.kind.name())
            }
            (
                FaultKind::PacketLoss
                | FaultKind::EtcdRestart
                | FaultKind::EtcdRollback
                | FaultKind::PowerLossAll,
                _,
            ) => f.write_str(self.kind.name()),
            (k, t) => write!(f, "{} ({t})", k.name()),
        }
    }
}

/// The faults of a run, drawn from `seed`: the same seed, kinds and count
/// give the same schedule.
pub fn schedule(seed: u64, kinds: &[FaultKind], rounds: usize, replicas: u8) -> Vec<Fault> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..rounds)
        .map(|_| {
            let kind = kinds[rng.usize(..kinds.len())];
            let any = Target::Replica(rng.u8(1..=replicas));
            let lead_or_not = if rng.bool() {
                Target::Leader
            } else {
                Target::Follower
            };
            let part = if rng.bool() { Part::Agent } else { Part::Node };
            let (target, part) = match kind {
                FaultKind::Kill | FaultKind::Pause => match rng.u8(0..10) {
                    0 => (Target::Gatekeeper, part),
                    1 if kind == FaultKind::Kill => (Target::Lb, part),
                    2..=5 => (Target::Leader, part),
                    _ => (any, part),
                },
                FaultKind::PowerLoss | FaultKind::ClockJump => (lead_or_not, part),
                FaultKind::CutEdgeFromReplica | FaultKind::FsyncEio => (lead_or_not, part),
                FaultKind::RemoveReadd => (Target::Follower, part),
                _ => (Target::Leader, part),
            };
            Fault { kind, target, part }
        })
        .collect()
}

/// How to run the nemesis.
#[derive(Debug, Clone)]
pub struct ChaosOptions {
    /// The `seguro` binary (a debug build: the skip-fdatasync switch exists
    /// only there).
    pub bin: PathBuf,
    pub seed: u64,
    /// At most this many rounds...
    pub rounds: usize,
    /// ...and no new round after this long.
    pub seconds: u64,
    pub kinds: Vec<FaultKind>,
    /// The peer's packets per second.
    pub rate: u32,
    /// The negative control: the event log skips fdatasync.
    pub skip_fdatasync: bool,
    /// Keep the cluster's files here (logs, data) instead of a temporary
    /// directory.
    pub dir: Option<PathBuf>,
    /// `replica.checkpoint_every`: checkpoints, and so watermarks and
    /// purges, every this many events.
    pub checkpoint_every: u64,
}

impl ChaosOptions {
    pub fn new(bin: impl Into<PathBuf>, seed: u64) -> Self {
        ChaosOptions {
            bin: bin.into(),
            seed,
            rounds: 10,
            seconds: 120,
            kinds: FaultKind::ALL.to_vec(),
            rate: 200,
            skip_fdatasync: false,
            dir: None,
            // Every few seconds of load: power loss hits them too.
            checkpoint_every: 2000,
        }
    }
}

/// One round as it went.
#[derive(Debug, Clone)]
pub struct Round {
    pub fault: Fault,
    /// What the target resolved to and anything notable (a node that
    /// exited, the leader before and after).
    pub notes: Vec<String>,
    pub started: Instant,
    pub healed: Instant,
    /// When the cluster answered again after the fault was healed (or
    /// before, if it never stopped); `None` if not within the limit.
    pub recovered: Option<Instant>,
    /// The longest time the peer went without an answer from the fault's
    /// start until the round ended.
    pub unavailable: Duration,
    /// Events the event log acknowledged from the fault's start until the
    /// round ended.
    pub acked: u64,
}

/// What a run saw.
#[derive(Debug)]
pub struct ChaosReport {
    pub seed: u64,
    pub rounds: Vec<Round>,
    pub check: history::Report,
    pub probe_sent: usize,
    pub elapsed: Duration,
}

impl ChaosReport {
    /// Rounds, unavailability p50/p99/max per fault kind, as a Markdown
    /// table.
    pub fn table(&self) -> String {
        let mut by_kind: BTreeMap<FaultKind, Vec<&Round>> = BTreeMap::new();
        for r in &self.rounds {
            by_kind.entry(r.fault.kind).or_default().push(r);
        }
        let mut out = String::from(
            "| fault | rounds | acknowledged during | not recovered | unavailable p50 | p99 | max |\n|---|---|---|---|---|---|---|\n",
        );
        for (kind, rounds) in by_kind {
            let u: Vec<Duration> = rounds.iter().map(|r| r.unavailable).collect();
            let q = |q| crate::probe::quantile(&mut u.clone(), q).unwrap_or_default();
            let max = u.iter().max().copied().unwrap_or_default();
            out += &format!(
                "| {} | {} | {} | {} | {:.2} s | {:.2} s | {:.2} s |\n",
                kind.name(),
                rounds.len(),
                rounds.iter().map(|r| r.acked).sum::<u64>(),
                rounds.iter().filter(|r| r.recovered.is_none()).count(),
                q(0.5).as_secs_f64(),
                q(0.99).as_secs_f64(),
                max.as_secs_f64(),
            );
        }
        out
    }
}

impl fmt::Display for ChaosReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {} · {} rounds in {:.0} s",
            self.seed,
            self.rounds.len(),
            self.elapsed.as_secs_f64()
        )?;
        for (n, r) in self.rounds.iter().enumerate() {
            writeln!(
                f,
                "round {n}: {} → {}; unavailable {:.2} s{}",
                r.fault,
                r.notes.join("; "),
                r.unavailable.as_secs_f64(),
                if r.recovered.is_none() {
                    " (NOT recovered)"
                } else {
                    ""
                }
            )?;
        }
        writeln!(f, "{}", self.table())?;
        write!(f, "{}", self.check)
    }
}

/// libfaketime (Debian's libfaketime): preloaded under a replica host's
/// daemons, it shifts their wall clock by what a file says, reread every
/// second; the monotonic clock (leases, timeouts) is left alone.
pub const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// Runs replica `i`'s daemons on a wall clock shifted by what
/// `dir/clock/replica-i` says (`+0` to start with).
fn fake_clock(lab: &mut ClusterLab, i: u8) -> io::Result<PathBuf> {
    if !Path::new(FAKETIME).exists() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{FAKETIME} is missing: the clock-jump fault needs libfaketime (scripts/deps.sh installs it)"
            ),
        ));
    }
    let file = lab.dir().join("clock").join(format!("replica-{i}"));
    std::fs::create_dir_all(file.parent().expect("a parent"))?;
    std::fs::write(&file, "+0\n")?;
    for d in [Daemon::Replica(i), Daemon::Eventlog(i)] {
        lab.set_env(d.clone(), "LD_PRELOAD", FAKETIME);
        lab.set_env(
            d.clone(),
            "FAKETIME_TIMESTAMP_FILE",
            &file.to_string_lossy(),
        );
        lab.set_env(d.clone(), "FAKETIME_CACHE_DURATION", "1");
        lab.set_env(d, "FAKETIME_DONT_FAKE_MONOTONIC", "1");
    }
    Ok(file)
}

/// A replica host's two disks (event log data, agent checkpoints), each a
/// [`LazyFs`] over a directory that plays the platter.
struct Disks {
    backing: [PathBuf; 2],
    mounts: [PathBuf; 2],
    fs: Option<[LazyFs; 2]>,
}

impl Disks {
    fn mount(dir: &Path, i: u8) -> io::Result<Disks> {
        let what = ["eventlog", "replica"];
        let backing = what.map(|w| dir.join("platters").join(format!("replica-{i}")).join(w));
        let mounts = what.map(|w| dir.join("data").join(w).join(format!("replica-{i}")));
        for p in backing.iter().chain(&mounts) {
            std::fs::create_dir_all(p)?;
        }
        let mut d = Disks {
            backing,
            mounts,
            fs: None,
        };
        d.remount()?;
        Ok(d)
    }

    fn remount(&mut self) -> io::Result<()> {
        let a = LazyFs::mount(&self.backing[0], &self.mounts[0])?;
        let b = LazyFs::mount(&self.backing[1], &self.mounts[1])?;
        self.fs = Some([a, b]);
        Ok(())
    }

    /// Power loss: what was not synced is gone. The host's daemons must be
    /// dead already.
    fn crash(&mut self) -> io::Result<String> {
        let mut notes = Vec::new();
        if let Some(fs) = self.fs.take() {
            for f in fs {
                let lost = f.crash();
                notes.push(format!(
                    "{} bytes in {} files never synced, gone",
                    lost.dropped_bytes, lost.dropped_files
                ));
            }
        }
        self.remount()?;
        Ok(notes.join(", "))
    }

    fn eventlog(&self) -> &LazyFs {
        &self.fs.as_ref().expect("mounted")[0]
    }
}

/// The cluster under test, with its disks.
pub struct Nemesis {
    lab: ClusterLab,
    disks: BTreeMap<u8, Disks>,
    replicas: u8,
    /// etcd's snapshot from when the run began, if etcd is rolled back in
    /// this run.
    etcd_snapshot: Option<PathBuf>,
    /// Each replica host's clock offset file, if clocks jump in this run.
    clocks: BTreeMap<u8, PathBuf>,
    acked: Arc<Mutex<Vec<Acked>>>,
    stop_watch: Arc<std::sync::atomic::AtomicBool>,
    watcher: Option<std::thread::JoinHandle<()>>,
}

impl Nemesis {
    /// Builds the cluster on lazy disks, starts it and the commit watcher.
    pub fn start(opts: &ChaosOptions) -> io::Result<Nemesis> {
        let cluster = ClusterOptions {
            dir: opts.dir.clone(),
            lease_ttl_secs: TTL.as_secs() as u32,
            checkpoint_every: opts.checkpoint_every,
            ..ClusterOptions::default()
        };
        let mut lab = ClusterLab::new(&opts.bin, &cluster)?;
        let mut disks = BTreeMap::new();
        let mut clocks = BTreeMap::new();
        for i in 1..=cluster.replicas {
            if opts.kinds.contains(&FaultKind::ClockJump) {
                clocks.insert(i, fake_clock(&mut lab, i)?);
            }
            disks.insert(i, Disks::mount(lab.dir(), i)?);
            if opts.skip_fdatasync {
                lab.set_env(Daemon::Eventlog(i), SKIP_FDATASYNC, "1");
            }
        }
        lab.start_all()?;
        eprintln!("chaos: the cluster is up in {}", lab.dir().display());
        let etcd_snapshot = if opts.kinds.contains(&FaultKind::EtcdRollback) {
            let path = lab.dir().join("etcd-at-start.db");
            lab.etcd_mut().snapshot(&path)?;
            Some(path)
        } else {
            None
        };
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop_watch = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watcher = watch_commits(&lab, acked.clone(), stop_watch.clone());
        Ok(Nemesis {
            lab,
            disks,
            replicas: cluster.replicas,
            etcd_snapshot,
            clocks,
            acked,
            stop_watch,
            watcher: Some(watcher),
        })
    }

    pub fn lab(&mut self) -> &mut ClusterLab {
        &mut self.lab
    }

    fn leader(&self) -> Option<u8> {
        self.lab.wait_leader(Duration::from_secs(30))
    }

    fn resolve(&self, target: Target) -> Option<u8> {
        let leader = self.leader();
        match target {
            Target::Leader => leader,
            Target::Follower => {
                let l = leader.unwrap_or(0);
                (1..=self.replicas)
                    .map(|k| (l + k - 1) % self.replicas + 1)
                    .find(|&i| Some(i) != leader)
            }
            Target::Replica(i) => Some(i),
            Target::Gatekeeper | Target::Lb => None,
        }
    }

    /// Power loss of replica `i`'s host: both daemons die, the disks forget
    /// what was not synced, and the host comes back.
    pub fn power_loss(&mut self, i: u8) -> io::Result<String> {
        self.lab.kill(&Daemon::Replica(i));
        self.lab.kill(&Daemon::Eventlog(i));
        eprintln!("chaos: replica {i} lost power: its disks forget what was not synced");
        let disks = self.disks.get_mut(&i).expect("a replica's disks");
        disks.crash()
    }

    /// Every replica host loses power at once (a data centre's outage), and
    /// comes back.
    pub fn power_loss_all(&mut self) -> io::Result<String> {
        let mut notes = Vec::new();
        for i in 1..=self.replicas {
            self.lab.kill(&Daemon::Replica(i));
            self.lab.kill(&Daemon::Eventlog(i));
        }
        for i in 1..=self.replicas {
            notes.push(format!("replica {i}: {}", self.power_loss(i)?));
        }
        for i in 1..=self.replicas {
            self.lab.start_replica(i)?;
        }
        Ok(notes.join("; "))
    }

    /// Applies `fault`, holds it past the TTL, heals it: notes on what
    /// happened.
    fn apply(&mut self, fault: Fault) -> io::Result<Vec<String>> {
        let mut notes = Vec::new();
        let hold = TTL * 2 + Duration::from_secs(1);
        let target = self.resolve(fault.target);
        if let Some(i) = target {
            notes.push(format!("{} = replica {i}", fault.target));
        }
        let replica_daemon = |i: u8| match fault.part {
            Part::Agent => Daemon::Replica(i),
            Part::Node => Daemon::Eventlog(i),
        };
        let daemon = match fault.target {
            Target::Gatekeeper => Some(Daemon::Gatekeeper(1)),
            Target::Lb => Some(Daemon::Lb),
            _ => target.map(replica_daemon),
        };
        let need = |what: Option<u8>| {
            what.ok_or_else(|| io::Error::other(format!("{fault}: no such replica now")))
        };
        match fault.kind {
            FaultKind::Kill => {
                let d = daemon.ok_or_else(|| io::Error::other("kill: no target"))?;
                self.lab.kill(&d);
                std::thread::sleep(Duration::from_secs(1));
                self.lab.start(d)?;
            }
            FaultKind::PowerLossAll => notes.push(self.power_loss_all()?),
            FaultKind::PowerLoss => {
                let i = need(target)?;
                notes.push(self.power_loss(i)?);
                std::thread::sleep(Duration::from_secs(1));
                self.lab.start_replica(i)?;
            }
            FaultKind::Pause => {
                let d = daemon.ok_or_else(|| io::Error::other("pause: no target"))?;
                self.lab.signal(&d, libc::SIGSTOP);
                std::thread::sleep(hold);
                self.lab.signal(&d, libc::SIGCONT);
            }
            FaultKind::CutLeaderFromEtcd => {
                let i = need(target)?;
                self.lab.cut_from_etcd(i);
                std::thread::sleep(hold);
                self.lab.reconnect_etcd(i);
            }
            FaultKind::CutLeaderFromQuorum | FaultKind::Asymmetric => {
                let i = need(target)?;
                let others: Vec<String> = (1..=self.replicas)
                    .filter(|&k| k != i)
                    .map(|k| backend_ip(k).to_string())
                    .collect();
                let set = others.join(", ");
                let out = if fault.kind == FaultKind::Asymmetric {
                    String::new()
                } else {
                    format!(
                        " chain out {{ type filter hook output priority 0; ip daddr {{ {set} }} drop\n }}\n"
                    )
                };
                self.hold_nft(
                    i,
                    &format!(
                        " chain in {{ type filter hook input priority 0; ip saddr {{ {set} }} drop\n }}\n{out}"
                    ),
                    hold,
                );
            }
            FaultKind::CutEdgeFromReplica => {
                let i = need(target)?;
                self.hold_nft(
                    i,
                    &format!(
                        " chain in {{ type filter hook input priority 0; iifname \"eth0\" drop; ip saddr {EDGE_BACKEND} drop\n }}\n chain out {{ type filter hook output priority 0; oifname \"eth0\" drop; ip daddr {EDGE_BACKEND} drop\n }}\n"
                    ),
                    hold,
                );
            }
            FaultKind::PacketLoss => {
                let rules = " chain in { type filter hook input priority 0; numgen random mod 100 < 10 drop\n }\n chain out { type filter hook output priority 0; numgen random mod 100 < 10 drop\n }\n";
                for i in 1..=self.replicas {
                    self.lab
                        .nft(i, &format!("table inet seguro_chaos {{\n{rules}}}\n"));
                }
                std::thread::sleep(hold * 2);
                for i in 1..=self.replicas {
                    self.lab.nft(i, "delete table inet seguro_chaos\n");
                }
            }
            FaultKind::FsyncEio => {
                let i = need(target)?;
                let disks = &self.disks[&i];
                disks.eventlog().set_fsync_error(true);
                let until = Instant::now() + hold;
                let node = Daemon::Eventlog(i);
                while Instant::now() < until {
                    if let Some((_, status)) =
                        self.lab.exited().into_iter().find(|(d, _)| *d == node)
                    {
                        notes.push(format!("eventlog-{i} stopped itself ({status})"));
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                self.disks[&i].eventlog().set_fsync_error(false);
            }
            FaultKind::ClockJump => {
                let i = need(target)?;
                let file = &self.clocks[&i];
                std::fs::write(file, "-45\n")?;
                std::thread::sleep(hold * 2);
                std::fs::write(file, "+0\n")?;
                // The daemons reread it within a second.
                std::thread::sleep(Duration::from_secs(2));
            }
            FaultKind::EtcdRollback => {
                let snapshot = self.etcd_snapshot.clone().expect("taken at the start");
                let highest = self.log_epoch();
                self.lab.etcd_mut().restore(&snapshot, None)?;
                std::thread::sleep(hold + TTL);
                let refused = self.sum_metric("seguro_eventlog_epoch_regressions_total");
                notes.push(format!(
                    "log epoch {highest}; with etcd rolled back the log refused {refused} regressed fences"
                ));
                // The recovery docs/DEPLOY.md §12 gives.
                let highest = self.log_epoch().max(highest);
                self.lab
                    .etcd_mut()
                    .restore(&snapshot, Some(highest + 100))?;
            }
            FaultKind::EtcdRestart => {
                self.lab.etcd_mut().kill();
                std::thread::sleep(TTL + Duration::from_secs(1));
                self.lab.etcd_mut().restart()?;
            }
            FaultKind::RemoveReadd => {
                let i = need(target)?;
                let id = i.to_string();
                let config = self.lab.config_path();
                let config = config.to_string_lossy();
                for verb in ["remove-replica", "add-replica"] {
                    let out = self
                        .lab
                        .run_seguro(&["eventlog", verb, "--id", &id, "-c", &config])?;
                    notes.push(format!(
                        "{verb}: {}",
                        if out.status.success() {
                            "ok".to_string()
                        } else {
                            String::from_utf8_lossy(&out.stderr).trim().to_string()
                        }
                    ));
                    std::thread::sleep(hold);
                }
            }
        }
        // What systemd would do: start again whatever exited.
        for (d, status) in self.lab.exited() {
            notes.push(format!("{d} had exited ({status}): started again"));
            self.lab.start(d)?;
        }
        Ok(notes)
    }

    /// The highest epoch any event log node has applied.
    fn log_epoch(&self) -> u64 {
        (1..=self.replicas)
            .filter_map(|i| {
                self.lab
                    .metric(&Daemon::Eventlog(i), "seguro_eventlog_epoch")
            })
            .fold(0.0, f64::max) as u64
    }

    /// A counter summed over every event log node that answers.
    fn sum_metric(&self, series: &str) -> f64 {
        (1..=self.replicas)
            .filter_map(|i| self.lab.metric(&Daemon::Eventlog(i), series))
            .sum()
    }

    /// An nftables table in replica `i`'s namespace for `hold`.
    fn hold_nft(&self, i: u8, chains: &str, hold: Duration) {
        self.lab
            .nft(i, &format!("table inet seguro_chaos {{\n{chains}}}\n"));
        std::thread::sleep(hold);
        self.lab.nft(i, "delete table inet seguro_chaos\n");
    }

    /// Stops the watcher, starts anything that is down, waits for every
    /// replica to catch up, and reads every replica's log.
    pub fn finish(&mut self, probe: &ProbeReport) -> io::Result<History> {
        for (d, _) in self.lab.exited() {
            self.lab.start(d)?;
        }
        for i in 1..=self.replicas {
            if !self.lab.is_running(&Daemon::Eventlog(i)) {
                self.lab.start(Daemon::Eventlog(i))?;
            }
            if !self.lab.is_running(&Daemon::Replica(i)) {
                self.lab.start(Daemon::Replica(i))?;
            }
        }
        eprintln!("chaos: waiting for every replica to catch up");
        for i in 1..=self.replicas {
            self.lab.wait_caught_up(i, Duration::from_secs(60))?;
        }
        // A follower's node learns the commit point from the leader's next
        // message: wait until every node says the same before reading.
        let nodes: Vec<Daemon> = (1..=self.replicas).map(Daemon::Eventlog).collect();
        let committed = |lab: &ClusterLab| -> Vec<Option<f64>> {
            nodes
                .iter()
                .map(|d| lab.metric(d, "seguro_eventlog_committed_event"))
                .collect()
        };
        crate::wait::until(
            Duration::from_secs(30),
            "every node at the same commit point",
            || {
                let all = committed(&self.lab);
                match all.first() {
                    Some(Some(c)) if all.iter().all(|x| *x == Some(*c)) => Ok(()),
                    _ => Err(format!("{all:?}")),
                }
            },
        )
        .map_err(|e| io::Error::new(io::ErrorKind::TimedOut, e.to_string()))?;
        eprintln!("chaos: reading every replica's log");
        // Let the watcher see the last commit point.
        std::thread::sleep(Duration::from_millis(500));
        self.stop_watch
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(w) = self.watcher.take() {
            let _ = w.join();
        }
        let from = (1..=self.replicas)
            .filter_map(|i| {
                self.lab
                    .metric(&Daemon::Eventlog(i), "seguro_eventlog_purge_point_event")
            })
            .fold(0.0f64, f64::max) as u64;
        let mut logs = BTreeMap::new();
        for i in 1..=self.replicas {
            let events = self.lab.read_log(i, EventNum(from + 1))?;
            let id = ReplicaId::new(i.into()).expect("replica ids start at 1");
            logs.insert(id, events.iter().map(Logged::from_event).collect());
        }
        let acked = self.acked.lock().unwrap().clone();
        Ok(history_of(probe, acked, logs))
    }
}

impl Drop for Nemesis {
    fn drop(&mut self) {
        self.stop_watch
            .store(true, std::sync::atomic::Ordering::Relaxed);
        // Daemons die before their disks are unmounted (the lab's drop kills
        // them; the disks are dropped after it, being declared after).
        for i in 1..=self.replicas {
            self.lab.kill(&Daemon::Replica(i));
            self.lab.kill(&Daemon::Eventlog(i));
        }
        // Unmounted before the lab removes its directory.
        self.disks.clear();
    }
}

/// The history the checker reads, from the probe's report, the watcher's
/// commit points and the final logs.
fn history_of(
    probe: &ProbeReport,
    acked: Vec<Acked>,
    logs: BTreeMap<ReplicaId, Vec<Logged>>,
) -> History {
    let mut history = History {
        acked,
        logs,
        ..History::default()
    };
    history.add_probe(probe);
    history
}

/// A thread in the edge namespace following the event log's commit point
/// as the edge box may (its certificate), noting each one it is told.
fn watch_commits(
    lab: &ClusterLab,
    acked: Arc<Mutex<Vec<Acked>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let config = crate::load_config(&lab.config_path());
    let credentials = lab.credentials(Role::Edge);
    let ns = lab.lab.edge.name().to_string();
    std::thread::spawn(move || {
        crate::netns::run_in(&ns, move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(async move {
                let client = eventlog_client::Client::new(&config, credentials);
                let mut commits = std::pin::pin!(client.watch_commits());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match tokio::time::timeout(Duration::from_millis(200), commits.next()).await {
                        Ok(Some(Ok(state))) => acked.lock().unwrap().push(Acked {
                            num: state.committed,
                            epoch: state.epoch,
                            at: Instant::now(),
                        }),
                        Ok(None) => return,
                        Ok(Some(Err(_))) | Err(_) => {}
                    }
                }
            })
        })
    })
}

/// The longest stretch without an answer between `from` and `until`, from
/// the answers' arrival times (sorted).
fn longest_silence(arrivals: &[Instant], from: Instant, until: Instant) -> Duration {
    let mut last = from;
    let mut longest = Duration::ZERO;
    for &t in arrivals.iter().filter(|t| **t > from && **t <= until) {
        longest = longest.max(t - last);
        last = t;
    }
    longest.max(until.saturating_duration_since(last))
}

/// Runs the nemesis as `opts` says: the schedule, the rounds, the check.
pub fn run(opts: &ChaosOptions) -> io::Result<ChaosReport> {
    let began = Instant::now();
    let mut nemesis = Nemesis::start(opts)?;
    let faults = schedule(opts.seed, &opts.kinds, opts.rounds, nemesis.replicas);
    // Load for the whole run, bounded by count and time.
    let budget = Duration::from_secs(opts.seconds) + RECOVERY_LIMIT * 2;
    let config = ProbeConfig::steady(nemesis.lab.ship(), opts.rate, budget);
    let probe = nemesis.lab.probe_with(config)?;
    let deadline = began + Duration::from_secs(opts.seconds);
    let mut rounds = Vec::new();
    for fault in faults {
        if Instant::now() >= deadline {
            break;
        }
        eprintln!("chaos: round {}: {fault}", rounds.len());
        let started = Instant::now();
        // A round that cannot be applied (no leader to aim at) is an
        // outage of its own: noted, and the run goes on.
        let notes = nemesis
            .apply(fault)
            .unwrap_or_else(|e| vec![format!("could not apply it: {e}")]);
        let healed = Instant::now();
        let recovered = wait_answering(&probe, healed, RECOVERY_LIMIT);
        eprintln!(
            "chaos:   {}; {}",
            notes.join("; "),
            match recovered {
                Some(t) => format!(
                    "answered again {:.2} s after the fault began",
                    (t - started).as_secs_f64()
                ),
                None => format!("NOT answered within {RECOVERY_LIMIT:?} after it was healed"),
            }
        );
        // A moment of normal service between faults.
        std::thread::sleep(Duration::from_secs(1));
        rounds.push(Round {
            fault,
            notes,
            started,
            healed,
            recovered,
            unavailable: Duration::ZERO,
            acked: 0,
        });
    }
    let report = probe.stop();
    let mut arrivals: Vec<Instant> = report.answers.iter().map(|a| a.received).collect();
    arrivals.sort();
    for r in &mut rounds {
        let end = r
            .recovered
            .unwrap_or(r.healed + RECOVERY_LIMIT)
            .max(r.healed);
        r.unavailable = longest_silence(&arrivals, r.started, end);
    }
    let probe_sent = report.sent.len();
    let history = nemesis.finish(&report)?;
    let acked_by = |t: Instant| {
        history
            .acked
            .iter()
            .filter(|a| a.at <= t)
            .map(|a| a.num.get())
            .max()
            .unwrap_or(0)
    };
    for r in &mut rounds {
        let end = r.recovered.unwrap_or(r.healed).max(r.healed);
        r.acked = acked_by(end).saturating_sub(acked_by(r.started));
    }
    let check = history::check(&history, &checker());
    Ok(ChaosReport {
        seed: opts.seed,
        rounds,
        check,
        probe_sent,
        elapsed: began.elapsed(),
    })
}

/// The power-loss check: load, then every replica host loses power at
/// once, then the history is checked. With fdatasync skipped (the negative
/// control) it must find acknowledged events lost.
pub fn power_loss_check(opts: &ChaosOptions, load: Duration) -> io::Result<ChaosReport> {
    let began = Instant::now();
    // No checkpoint: every event stays in the log, where the check reads
    // it (a log purged into a snapshot cannot be told from a lost one),
    // and with fdatasync skipped the agents' checkpoints cannot run ahead
    // of what the log kept.
    let opts = &ChaosOptions {
        checkpoint_every: 1_000_000,
        ..opts.clone()
    };
    let mut nemesis = Nemesis::start(opts)?;
    let probe = nemesis
        .lab
        .probe_with(ProbeConfig::steady(nemesis.lab.ship(), opts.rate, load))?;
    probe.wait(Duration::from_millis(500));
    let fault = Fault {
        kind: FaultKind::PowerLossAll,
        target: Target::Leader,
        part: Part::Node,
    };
    let started = Instant::now();
    let notes = nemesis.apply(fault)?;
    let healed = Instant::now();
    let report = probe.stop();
    let probe_sent = report.sent.len();
    let history = nemesis.finish(&report)?;
    let check = history::check(&history, &checker());
    Ok(ChaosReport {
        seed: opts.seed,
        rounds: vec![Round {
            fault,
            notes,
            started,
            healed,
            recovered: Some(healed),
            // No load during it: the time the hosts were down.
            unavailable: healed - started,
            acked: 0,
        }],
        check,
        probe_sent,
        elapsed: began.elapsed(),
    })
}

/// The checker's options: the harness waits for every replica to catch up
/// before it reads the logs.
fn checker() -> history::Options {
    history::Options {
        converged: true,
        ..history::Options::default()
    }
}

/// Waits until the peer gets an answer to a request sent after `after`.
fn wait_answering(probe: &Probe, after: Instant, limit: Duration) -> Option<Instant> {
    crate::wait::until(limit, "answers again", || {
        probe.answered_since(after).ok_or("no answer yet")
    })
    .ok()
}
