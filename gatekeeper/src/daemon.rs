//! The gatekeeper daemon: receives envelopes on `gatekeeper.listen`, follows
//! the election and its own active/standby key in etcd, and sends the
//! effects that pass from the ship's public address.
//!
//! Effects leave through a raw socket ([`udp::raw`]) whose headers carry
//! `ship.public` as their source: the gatekeeper binds nothing there, so the
//! userspace relay of `seguro lb` (which must receive on `ship.public`) runs
//! beside it on the same edge box. Raw sends need `CAP_NET_RAW`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use config::{Config, KeyError, Optimism};
use tokio::sync::{oneshot, watch};
use tokio::time::{Instant, sleep_until, timeout};
use udp::raw::{self, Family, Outgoing, PayloadSum};
use udp::{BatchSocket, RecvBatch, Socket, SocketOptions};

use crate::forward::{Decision, Effect, Forwarder, Gate};
use crate::stats::{DropReason, Stats};
use leadership::election::{Client, GATEKEEPER_KEY};
use leadership::{CommitState, Election, Keyring, LeaderView};

/// Batches received in a row before the loop looks at etcd and timers again.
const BATCHES_PER_TURN: usize = 16;

/// Everything the gatekeeper needs, usually from the cluster config.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `<etcd.prefix>/<cluster>`.
    pub root: String,
    /// Where envelopes arrive.
    pub listen: SocketAddr,
    /// The ship's public address, which effects are sent from (written in
    /// their headers: nothing is bound to it). A specific address and port.
    pub public: SocketAddr,
    pub keys: Keyring,
    pub optimism: Optimism,
    pub hold_limit: usize,
    pub hold_timeout: Duration,
    /// Most envelopes a second that need no commit (`gatekeeper.stateless_rate`).
    pub stateless_rate: u32,
    /// The etcd lease TTL: of the gatekeeper's own lease, and the longest
    /// the leadership may go unconfirmed before failing closed.
    pub lease_ttl: Duration,
    /// This gatekeeper's value in `<root>/gatekeeper`, for operators.
    pub name: String,
    /// The envelope socket's options; its `send_buffer` is also the raw
    /// socket's.
    pub socket: SocketOptions,
}

impl Settings {
    /// The settings of the edge box in `config`, with every replica's key
    /// loaded.
    pub fn from_config(config: &Config) -> Result<Self, KeyError> {
        let name = format!("{} pid {}", config.gatekeeper.listen, std::process::id());
        Ok(Self {
            root: config.etcd_root(),
            listen: config.gatekeeper.listen,
            public: config.ship.public,
            keys: Keyring::from_config(config)?,
            optimism: config.optimism,
            hold_limit: config.gatekeeper.hold_limit,
            hold_timeout: config.gatekeeper.hold_timeout,
            stateless_rate: config.gatekeeper.stateless_rate,
            lease_ttl: config.etcd.lease_ttl,
            name,
            socket: SocketOptions::default(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot bind the envelope socket to {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "ship.public: effects are sent from `{0}`, which must be a specific \
         address and port"
    )]
    Public(SocketAddr),
    #[error(
        "the gatekeeper needs CAP_NET_RAW to send from the ship's address {public} \
         through a raw socket (it binds nothing there, so that `seguro lb`'s \
         userspace relay can receive on it): run it as root or grant it \
         CAP_NET_RAW ({source})"
    )]
    NotPermitted {
        public: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open the raw socket that sends effects from {public}: {source}")]
    Raw {
        public: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "optimism \"{0}\" releases effects by the event log's commit index, \
         and this gatekeeper has no commit watch from the event log"
    )]
    NoCommitWatch(Optimism),
    #[error("receiving envelopes on {addr}: {source}")]
    Receive {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0} stopped unexpectedly")]
    Stopped(&'static str),
    #[error("cannot start the forwarding thread: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("sending effects from {addr}: {source}")]
    Send {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A gatekeeper with its envelope socket bound and its raw socket open,
/// ready to [`run`](Gatekeeper::run).
pub struct Gatekeeper {
    settings: Settings,
    rx: Socket,
    tx: Socket,
    listen: SocketAddr,
    public: SocketAddr,
    stats: Arc<Stats>,
}

impl Gatekeeper {
    /// Binds the envelope socket (port 0 picks a free one) and opens the
    /// raw socket that sends effects from the ship's public address, of
    /// that address's family. Install the metrics recorder before this, if
    /// any.
    ///
    /// Fails with [`Error::NotPermitted`] without `CAP_NET_RAW`.
    pub fn bind(settings: Settings) -> Result<Self, Error> {
        let public = settings.public;
        if public.port() == 0 || public.ip().is_unspecified() {
            return Err(Error::Public(public));
        }
        let addr = settings.listen;
        let (rx, listen) = udp::bind(addr, settings.socket)
            .and_then(|s| {
                let local = s.local_addr()?.as_socket();
                Ok((s, local.unwrap_or(addr)))
            })
            .map_err(|source| Error::Bind { addr, source })?;
        let tx = raw::socket(Family::of(public.ip()), settings.socket.send_buffer).map_err(
            |source| match source.kind() {
                std::io::ErrorKind::PermissionDenied => Error::NotPermitted { public, source },
                _ => Error::Raw { public, source },
            },
        )?;
        Ok(Self {
            settings,
            rx,
            tx,
            listen,
            public,
            stats: Arc::new(Stats::new()),
        })
    }

    /// Where envelopes are received.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    /// Where effects are sent from: the source their headers carry.
    pub fn public_addr(&self) -> SocketAddr {
        self.public
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Runs until `shutdown` resolves, then resigns the gatekeeper key so a
    /// standby takes over at once.
    ///
    /// `commits` is the event log's commit watch. Without one, only
    /// `optimism = "leader"` can run, and effects of the current leader's
    /// term leave as soon as they are authentic and new.
    ///
    /// The etcd side (the election observer, the gatekeeper key's campaign
    /// and keep-alive) runs in tasks spawned on the current runtime; the
    /// forwarding loop runs on a thread of its own with its own
    /// single-threaded runtime, so that a flood of envelopes can never delay
    /// etcd's answers past a lease TTL (which would fail closed), and each
    /// batch costs no hand-off between threads.
    pub async fn run(
        self,
        client: Client,
        commits: Option<watch::Receiver<CommitState>>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), Error> {
        let s = &self.settings;
        let gate = match (&commits, s.optimism) {
            (Some(_), policy) => Gate::Commits(policy),
            (None, Optimism::Leader) => Gate::Ungated,
            (None, policy) => return Err(Error::NoCommitWatch(policy)),
        };
        let view = Election::new(client.clone(), &s.root, s.lease_ttl).observe();
        let own = Election::on_key(client, format!("{}/{GATEKEEPER_KEY}", s.root), s.lease_ttl);
        let (active_tx, active) = watch::channel(false);
        let (resign_tx, resign_rx) = watch::channel(false);
        let holder = tokio::spawn(hold_key(own, s.name.clone(), active_tx, resign_rx));
        tracing::info!(
            listen = %self.listen,
            public = %self.public,
            optimism = %s.optimism,
            replicas = s.keys.len(),
            "gatekeeper started (standby until it holds {}/{GATEKEEPER_KEY})",
            s.root
        );

        let mut fwd = Forwarder::new(
            s.keys.clone(),
            gate,
            s.hold_limit,
            s.hold_timeout,
            s.lease_ttl,
            s.stateless_rate,
            self.stats.clone(),
        );
        let mut commits = commits;
        if let Some(c) = &mut commits {
            fwd.set_commit(*c.borrow_and_update());
        }
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (done_tx, done_rx) = oneshot::channel();
        let forwarding = Loop {
            rx: self.rx,
            tx: self.tx,
            listen: self.listen,
            public: self.public,
            stats: self.stats.clone(),
            fwd,
            view,
            active,
            commits,
        };
        let thread = std::thread::Builder::new()
            .name("gk-forward".into())
            .spawn(move || {
                let result = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(forwarding.serve(async move {
                        let _ = stop_rx.await;
                    })),
                    Err(e) => Err(Error::Runtime(e)),
                };
                let _ = done_tx.send(result);
            })
            .map_err(Error::Runtime)?;

        tokio::pin!(shutdown);
        tokio::pin!(done_rx);
        let result = tokio::select! {
            _ = &mut shutdown => {
                let _ = stop_tx.send(());
                (&mut done_rx).await
            }
            r = &mut done_rx => r,
        };
        let result = result.unwrap_or(Err(Error::Stopped("the forwarding thread")));
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;

        let _ = resign_tx.send(true);
        if timeout(self.settings.lease_ttl, holder).await.is_err() {
            tracing::warn!(
                "could not resign the gatekeeper key in time; it expires with its lease"
            );
        }
        result
    }
}

/// The forwarding loop and everything it owns.
struct Loop {
    rx: Socket,
    tx: Socket,
    listen: SocketAddr,
    public: SocketAddr,
    stats: Arc<Stats>,
    fwd: Forwarder,
    view: watch::Receiver<LeaderView>,
    active: watch::Receiver<bool>,
    commits: Option<watch::Receiver<CommitState>>,
}

impl Loop {
    /// Registers both sockets with this thread's runtime and forwards until
    /// `stop` resolves.
    async fn serve(self, stop: impl Future<Output = ()>) -> Result<(), Error> {
        let Loop {
            rx,
            tx,
            listen,
            public,
            stats,
            mut fwd,
            mut view,
            mut active,
            mut commits,
        } = self;
        let rx = BatchSocket::register(rx).map_err(|source| Error::Bind {
            addr: listen,
            source,
        })?;
        let tx = raw::Sender::register(tx).map_err(|source| Error::Raw { public, source })?;
        let mut io = Io {
            tx,
            public,
            stats,
            outcome: Vec::new(),
        };
        tokio::pin!(stop);
        // Lanes are inside the envelopes: who sent one does not matter.
        let mut batch = RecvBatch::new().without_sources();
        let mut released: Vec<Effect> = Vec::new();
        loop {
            let deadline = fwd.next_deadline();
            tokio::select! {
                biased;
                _ = &mut stop => return Ok(()),
                r = view.changed() => {
                    r.map_err(|_| Error::Stopped("the election observer"))?;
                    let v = *view.borrow_and_update();
                    fwd.set_view(v, Instant::now());
                }
                r = active.changed() => {
                    r.map_err(|_| Error::Stopped("the gatekeeper key's campaign"))?;
                    let a = *active.borrow_and_update();
                    fwd.set_active(a);
                }
                Some(state) = next_commit(&mut commits) => fwd.set_commit(state),
                _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    fwd.refresh(Instant::now());
                }
                r = rx.recv(&mut batch) => {
                    r.map_err(|source| Error::Receive { addr: listen, source })?;
                    io.forward_batch(&mut fwd, &batch, &mut released).await?;
                    // Drain what else is queued, a bounded number of times.
                    for _ in 1..BATCHES_PER_TURN {
                        let n = rx.try_recv(&mut batch)
                            .map_err(|source| Error::Receive { addr: listen, source })?;
                        if n == 0 {
                            break;
                        }
                        io.forward_batch(&mut fwd, &batch, &mut released).await?;
                    }
                    continue;
                }
            }
            // Something other than envelopes changed: held effects may go.
            io.send_released(&mut fwd, &mut released).await?;
        }
    }
}

/// The sending side, registered on the forwarding thread.
struct Io {
    tx: raw::Sender,
    public: SocketAddr,
    stats: Arc<Stats>,
    /// Reused from send to send.
    outcome: Vec<bool>,
}

impl Io {
    /// Decides a received batch and sends what passes: first what the hold
    /// queue releases, then this batch's effects, in arrival order.
    async fn forward_batch(
        &mut self,
        fwd: &mut Forwarder,
        batch: &RecvBatch,
        released: &mut Vec<Effect>,
    ) -> Result<(), Error> {
        let now = Instant::now();
        self.stats.received(batch.len() as u64);
        fwd.refresh(now);
        fwd.release(now, released);
        let mut out: Vec<(SocketAddr, &[u8])> = Vec::with_capacity(released.len() + batch.len());
        out.extend(released.iter().map(|e| (e.lane, e.payload.as_slice())));
        for d in batch.iter() {
            if let Decision::Forward { lane, payload } = fwd.admit(d.data, d.truncated, now) {
                out.push((lane, payload));
            }
        }
        fwd.flush_stats();
        self.send(&out).await?;
        released.clear();
        Ok(())
    }

    async fn send_released(
        &mut self,
        fwd: &mut Forwarder,
        released: &mut Vec<Effect>,
    ) -> Result<(), Error> {
        let now = Instant::now();
        fwd.refresh(now);
        fwd.release(now, released);
        fwd.flush_stats();
        if !released.is_empty() {
            let out: Vec<(SocketAddr, &[u8])> = released
                .iter()
                .map(|e| (e.lane, e.payload.as_slice()))
                .collect();
            self.send(&out).await?;
            released.clear();
        }
        Ok(())
    }

    /// Sends each `(lane, payload)` from the ship's public address. A lane
    /// of the other family than `ship.public`'s cannot be written, and
    /// counts as refused.
    async fn send(&mut self, out: &[(SocketAddr, &[u8])]) -> Result<(), Error> {
        if out.is_empty() {
            return Ok(());
        }
        let datagrams: Vec<Outgoing<'_>> = out
            .iter()
            .map(|&(to, payload)| Outgoing {
                from: self.public,
                to,
                payload,
                sum: PayloadSum::of(payload),
            })
            .collect();
        let sent = self
            .tx
            .send(&datagrams, &mut self.outcome)
            .await
            .map_err(|source| Error::Send {
                addr: self.public,
                source,
            })?;
        self.stats.forwarded(sent.sent as u64);
        self.stats
            .dropped(DropReason::SendFailed, sent.failed as u64);
        Ok(())
    }
}

/// The next commit state, or never if there is no commit watch (or it ended:
/// then nothing more can be released, and held effects time out).
async fn next_commit(commits: &mut Option<watch::Receiver<CommitState>>) -> Option<CommitState> {
    match commits {
        Some(rx) => match rx.changed().await {
            Ok(()) => Some(*rx.borrow_and_update()),
            Err(_) => {
                tracing::error!("the commit watch ended: no held effect can be released");
                *commits = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

/// Campaigns for the gatekeeper key, and reports whether this gatekeeper
/// holds it, until told to stop; then resigns.
async fn hold_key(
    election: Election,
    name: String,
    active: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let term = tokio::select! {
            term = election.campaign_as(name.clone()) => term,
            _ = stopped(&mut stop) => return,
        };
        active.send_replace(true);
        tokio::select! {
            reason = term.lost() => {
                active.send_replace(false);
                tracing::warn!(%reason, "lost the gatekeeper key");
            }
            _ = stopped(&mut stop) => {
                active.send_replace(false);
                if let Err(e) = term.resign().await {
                    tracing::warn!(error = %e, "could not resign the gatekeeper key");
                }
                return;
            }
        }
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
