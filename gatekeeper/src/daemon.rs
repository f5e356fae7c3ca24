//! The gatekeeper daemon: receives envelopes on `gatekeeper.listen`, follows
//! the election and its own active/standby key in etcd, and sends the
//! effects that pass from a socket bound to the ship's public address.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use config::{Config, KeyError, Optimism};
use etcd_client::Client;
use eventlog::CommitState;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until, timeout};

use crate::election::{Election, GATEKEEPER_KEY};
use crate::envelope::Keyring;
use crate::forward::{Decision, Effect, Forwarder, Gate};
use crate::io::{BatchSocket, RecvBatch, SocketOptions};
use crate::stats::{DropReason, Stats};

/// Batches received in a row before the loop looks at etcd and timers again.
const BATCHES_PER_TURN: usize = 16;

/// Everything the gatekeeper needs, usually from the cluster config.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `<etcd.prefix>/<cluster>`.
    pub root: String,
    /// Where envelopes arrive.
    pub listen: SocketAddr,
    /// The ship's public address, which effects are sent from.
    pub public: SocketAddr,
    pub keys: Keyring,
    pub optimism: Optimism,
    pub hold_limit: usize,
    pub hold_timeout: Duration,
    /// The etcd lease TTL: of the gatekeeper's own lease, and the longest
    /// the leadership may go unconfirmed before failing closed.
    pub lease_ttl: Duration,
    /// This gatekeeper's value in `<root>/gatekeeper`, for operators.
    pub name: String,
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
            lease_ttl: config.etcd.lease_ttl,
            name,
            socket: SocketOptions::default(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot bind the {what} socket to {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error(
        "optimism \"{0}\" releases effects by the event log's commit index, \
         and this gatekeeper has no commit watch from the event log"
    )]
    NoCommitWatch(Optimism),
    #[error("receiving envelopes on {addr}: {source}")]
    Receive { addr: SocketAddr, source: io::Error },
    #[error("{0} stopped unexpectedly")]
    Stopped(&'static str),
    #[error("sending effects from {addr}: {source}")]
    Send { addr: SocketAddr, source: io::Error },
}

/// A gatekeeper with its sockets bound, ready to [`run`](Gatekeeper::run).
pub struct Gatekeeper {
    settings: Settings,
    rx: BatchSocket,
    tx: BatchSocket,
    listen: SocketAddr,
    public: SocketAddr,
    stats: Arc<Stats>,
}

impl Gatekeeper {
    /// Binds the envelope socket and the ship's public socket (port 0 picks
    /// a free one). Must be called inside a tokio runtime. Install the
    /// metrics recorder before this, if any.
    pub fn bind(settings: Settings) -> Result<Self, Error> {
        let bind = |what, addr| {
            BatchSocket::bind(addr, settings.socket)
                .and_then(|s| s.local_addr().map(|a| (s, a)))
                .map_err(|source| Error::Bind { what, addr, source })
        };
        let (rx, listen) = bind("envelope", settings.listen)?;
        let (tx, public) = bind("ship's public", settings.public)?;
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

    /// Where effects are sent from.
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
    /// and keep-alive) runs in tasks this spawns. Poll `run` itself with
    /// `block_on` on a multi-thread runtime, as `seguro gatekeeper` does, so
    /// that a flood of envelopes never delays those tasks: if they fell a
    /// lease TTL behind, the gatekeeper would fail closed.
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
        let mut view = Election::new(client.clone(), &s.root, s.lease_ttl).observe();
        let own = Election::on_key(client, format!("{}/{GATEKEEPER_KEY}", s.root), s.lease_ttl);
        let (active_tx, mut active) = watch::channel(false);
        let (stop_tx, stop_rx) = watch::channel(false);
        let holder = tokio::spawn(hold_key(own, s.name.clone(), active_tx, stop_rx));
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
            self.stats.clone(),
        );
        let mut commits = commits;
        if let Some(c) = &mut commits {
            fwd.set_commit(*c.borrow_and_update());
        }
        let result = self
            .serve(&mut fwd, &mut view, &mut active, commits, shutdown)
            .await;

        let _ = stop_tx.send(true);
        if timeout(s.lease_ttl, holder).await.is_err() {
            tracing::warn!(
                "could not resign the gatekeeper key in time; it expires with its lease"
            );
        }
        result
    }

    async fn serve(
        &self,
        fwd: &mut Forwarder,
        view: &mut watch::Receiver<crate::election::LeaderView>,
        active: &mut watch::Receiver<bool>,
        mut commits: Option<watch::Receiver<CommitState>>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), Error> {
        tokio::pin!(shutdown);
        let mut batch = RecvBatch::new();
        let mut released: Vec<Effect> = Vec::new();
        loop {
            let deadline = fwd.next_deadline();
            tokio::select! {
                biased;
                _ = &mut shutdown => return Ok(()),
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
                r = self.rx.recv(&mut batch) => {
                    r.map_err(|source| Error::Receive { addr: self.listen, source })?;
                    self.forward_batch(fwd, &batch, &mut released).await?;
                    // Drain what else is queued, a bounded number of times.
                    for _ in 1..BATCHES_PER_TURN {
                        let n = self.rx.try_recv(&mut batch)
                            .map_err(|source| Error::Receive { addr: self.listen, source })?;
                        if n == 0 {
                            break;
                        }
                        self.forward_batch(fwd, &batch, &mut released).await?;
                    }
                    continue;
                }
            }
            // Something other than envelopes changed: held effects may go.
            self.send_released(fwd, &mut released).await?;
        }
    }

    /// Decides a received batch and sends what passes: first what the hold
    /// queue releases, then this batch's effects, in arrival order.
    async fn forward_batch(
        &self,
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
        for (datagram, truncated) in batch.iter() {
            if let Decision::Forward { lane, payload } = fwd.admit(datagram, truncated, now) {
                out.push((lane, payload));
            }
        }
        fwd.flush_stats();
        self.send(&out).await?;
        released.clear();
        Ok(())
    }

    async fn send_released(
        &self,
        fwd: &mut Forwarder,
        released: &mut Vec<Effect>,
    ) -> Result<(), Error> {
        fwd.refresh(Instant::now());
        fwd.release(Instant::now(), released);
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

    async fn send(&self, out: &[(SocketAddr, &[u8])]) -> Result<(), Error> {
        if out.is_empty() {
            return Ok(());
        }
        let sent = self.tx.send(out).await.map_err(|source| Error::Send {
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
