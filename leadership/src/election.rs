//! Leader election in etcd (docs/SPEC.md §6.1): campaign with a lease, learn
//! the epoch, notice losing the term, resign; and observe who leads.
//!
//! A replica campaigns with [`Election::campaign`] and holds the returned
//! [`Leadership`] while it leads; the gatekeeper (and followers) call
//! [`Election::observe`] for a [`LeaderView`] that also says how recently
//! etcd confirmed it. The gatekeeper's own active/standby election is the
//! same mechanism on another key ([`Election::on_key`], [`Election::campaign_as`]).
//!
//! ```no_run
//! # async fn f(endpoints: Vec<String>, id: config::ReplicaId, credentials: trust::Credentials) -> Result<(), seguro_leadership::ElectionError> {
//! use std::time::Duration;
//! use seguro_leadership::election::{self, Election};
//!
//! // Over mutual TLS, as the replica's identity (etcd's user for it).
//! let client = election::connect(&endpoints, &credentials).await?;
//! let election = Election::new(client, "/seguro/sampel-palnet", Duration::from_secs(2));
//! let leadership = election.campaign(id).await; // blocks while another replica leads
//! let epoch = leadership.epoch(); // fences appends, goes in every envelope
//! tokio::select! {
//!     reason = leadership.lost() => eprintln!("stepped down: {reason}"),
//!     _ = tokio::signal::ctrl_c() => leadership.resign().await?,
//! }
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder, Retryable};
use config::ReplicaId;
/// The etcd client the election runs on: what [`connect`] returns.
pub use etcd_client::{Client, ConnectOptions};
use etcd_client::{
    Compare, CompareOp, EventType, KeyValue, LeaseKeepAliveStream, LeaseKeeper, PutOptions, Txn,
    TxnOp, TxnOpResponse, WatchOptions, WatchStream,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior, interval, sleep, sleep_until, timeout};

use config::{Identity, Role};
use trust::Credentials;

use crate::Epoch;

/// The leader key's name under the cluster's root.
pub const LEADER_KEY: &str = "leader";
/// The active gatekeeper's key's name under the cluster's root.
pub const GATEKEEPER_KEY: &str = "gatekeeper";

/// An etcd request that failed; the election code retries these itself, so
/// callers only see them from [`connect`] and [`Leadership::resign`].
#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("etcd did not answer within {0:?}")]
    Timeout(Duration),
    /// etcd granted a lease a TTL no live lease has.
    #[error("etcd granted a lease with a TTL of {ttl} s")]
    BadGrant { ttl: i64 },
}

/// A client for `endpoints` (`https://host:port`, the first that answers),
/// over mutual TLS: it presents `credentials` (etcd takes the certificate's
/// name as its user) and expects etcd's own certificate
/// (`etcd.<cluster>.seguro`). It connects lazily and reconnects by itself,
/// with the credentials as they are at each connection (they reload on
/// SIGHUP); every request the election makes has its own deadline.
pub async fn connect(
    endpoints: &[String],
    credentials: &Credentials,
) -> Result<Client, ElectionError> {
    connect_with(endpoints, credentials, ConnectOptions::new()).await
}

/// [`connect`] with etcd-client's options (a user and password, for
/// [`crate::access`]'s root).
pub async fn connect_with(
    endpoints: &[String],
    credentials: &Credentials,
    options: ConnectOptions,
) -> Result<Client, ElectionError> {
    let targets = endpoints
        .iter()
        .map(|e| e.strip_prefix("https://").unwrap_or(e).to_owned())
        .collect();
    let etcd = Identity::new(credentials.identity().cluster.clone(), Role::Etcd);
    // Each member gets a second to connect and finish the handshake, so a
    // member that hangs does not hide the others.
    let each = Duration::from_secs(1);
    let channel = trust::client::failover_channel(targets, each, &etcd, credentials, |e| {
        // etcd refuses client pings more often than every 5 s by default.
        e.http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(false)
    });
    let channel = etcd_client::Channel::Tonic(channel);
    Ok(Client::from_channel(channel, Some(options)).await?)
}

impl Epoch {
    /// The epoch of a term whose leader key etcd created at `revision`: the
    /// one place an etcd revision becomes an epoch. `None` for a revision
    /// no key can have (etcd's start at 1).
    pub fn from_revision(revision: i64) -> Option<Epoch> {
        u64::try_from(revision).ok().filter(|&r| r > 0).map(Epoch)
    }

    /// The etcd revision this epoch's leader key was created at. An epoch
    /// past etcd's range (from a bad envelope, say) is `i64::MAX`, which
    /// no key's creation revision equals.
    pub fn revision(self) -> i64 {
        i64::try_from(self.get()).unwrap_or(i64::MAX)
    }
}

/// The epoch of the term a leader key `kv` stands for.
fn epoch_of(kv: &KeyValue) -> Option<Epoch> {
    Epoch::from_revision(kv.create_revision())
}

/// One leadership term: who leads and its epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Term {
    pub leader: ReplicaId,
    /// The leader key's creation revision.
    pub epoch: Epoch,
}

impl Term {
    /// The term a leader key describes, if its value is a replica id.
    fn from_kv(kv: &KeyValue) -> Option<Term> {
        let id = std::str::from_utf8(kv.value()).ok()?.parse().ok()?;
        Some(Term {
            leader: id,
            epoch: epoch_of(kv)?,
        })
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "replica {} (epoch {})", self.leader, self.epoch)
    }
}

/// What an observer knows about the leadership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LeaderView {
    /// The current term; `None` while no replica holds the key (or it holds
    /// something that is not a replica id).
    pub term: Option<Term>,
    /// The etcd revision `term` is as of.
    pub revision: i64,
    /// When the last read that etcd answered was *sent*: etcd's state was
    /// `term` (or newer, from the watch) at or after this moment. `None`
    /// until etcd first answers.
    pub confirmed_at: Option<Instant>,
}

impl LeaderView {
    /// Whether etcd confirmed the view within `max_age` of `now`.
    pub fn is_confirmed(&self, now: Instant, max_age: Duration) -> bool {
        self.confirmed_at
            .is_some_and(|t| now.saturating_duration_since(t) <= max_age)
    }

    /// When the view stops counting as confirmed, given `max_age`.
    pub fn confirmation_expires(&self, max_age: Duration) -> Option<Instant> {
        self.confirmed_at.map(|t| t + max_age)
    }
}

/// Why a [`Leadership`] ended without resigning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossReason {
    /// etcd says the lease no longer exists (expired or revoked).
    LeaseExpired,
    /// No keep-alive succeeded for a whole TTL: etcd may have expired the
    /// lease already, so the term must be assumed over.
    KeepAliveTimeout,
    /// The key was deleted or now belongs to another term.
    KeyLost,
    /// A task that kept the lease alive or watched the key stopped without
    /// saying why (a bug: it panicked); the term cannot be vouched for.
    TaskFailed,
}

impl fmt::Display for LossReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LossReason::LeaseExpired => "the lease expired",
            LossReason::KeepAliveTimeout => "no keep-alive succeeded for a lease TTL",
            LossReason::KeyLost => "the key was deleted or replaced",
            LossReason::TaskFailed => "the election's background task failed",
        })
    }
}

/// Campaigns for, and observes, one election key.
#[derive(Clone)]
pub struct Election {
    client: Client,
    key: String,
    ttl: Duration,
}

impl fmt::Debug for Election {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Election")
            .field("key", &self.key)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Election {
    /// The replicas' election: `<root>/leader`, with leases of `ttl` (whole
    /// seconds, at least 1; `config.etcd.lease_ttl` is validated to be).
    pub fn new(client: Client, root: &str, ttl: Duration) -> Self {
        Self::on_key(client, format!("{root}/{LEADER_KEY}"), ttl)
    }

    /// An election on any key, such as the gatekeepers' `<root>/gatekeeper`.
    /// `ttl` is rounded down to whole seconds within 1 s and etcd's maximum.
    pub fn on_key(client: Client, key: String, ttl: Duration) -> Self {
        let ttl = lease_ttl(ttl);
        Self { client, key, ttl }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Campaigns as replica `id` (the key's value is the id in decimal)
    /// until it wins. See [`Election::campaign_as`].
    pub async fn campaign(&self, id: ReplicaId) -> Leadership {
        self.campaign_as(id.to_string()).await
    }

    /// Campaigns with `value` until it wins: takes a lease (kept alive while
    /// this waits), creates the key if it is absent, else watches it and
    /// tries again once it is deleted. etcd errors are logged and retried;
    /// to give up, drop the future (the lease is then revoked).
    pub async fn campaign_as(&self, value: impl Into<Vec<u8>>) -> Leadership {
        let value = value.into();
        let mut delays = RETRY.build();
        loop {
            let lease = match self.grant().await {
                Ok(lease) => lease,
                Err(e) => {
                    tracing::warn!(key = %self.key, error = %e, "cannot take a lease; retrying");
                    pause(&mut delays).await;
                    continue;
                }
            };
            delays = RETRY.build();
            if let Some(epoch) = self.contend(&lease, &value, &mut delays).await {
                tracing::info!(key = %self.key, %epoch, lease = lease.id, "won the election");
                let watch = TermTask::spawn(
                    guard_key(self.clone(), epoch, lease.lost_tx.clone()),
                    lease.lost_tx.clone(),
                );
                return Leadership {
                    election: self.clone(),
                    epoch,
                    lease,
                    key_watch: watch,
                };
            }
            tracing::info!(key = %self.key, "lease lost while campaigning; taking a new one");
        }
    }

    /// Follows the key: a background task reads it, watches it, and re-reads
    /// it every TTL/4 so that [`LeaderView::confirmed_at`] stays fresh while
    /// etcd answers. The task ends when every receiver is dropped.
    pub fn observe(&self) -> watch::Receiver<LeaderView> {
        let (tx, rx) = watch::channel(LeaderView::default());
        tokio::spawn(observe(self.clone(), tx));
        rx
    }

    /// How long one etcd request may take before it is abandoned.
    fn request_timeout(&self) -> Duration {
        self.ttl / 3
    }

    async fn grant(&self) -> Result<Lease, ElectionError> {
        let mut client = self.client.clone();
        let sent = Instant::now();
        let limit = self.request_timeout();
        let asked = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let resp = timeout(limit, client.lease_grant(asked, None))
            .await
            .map_err(|_| ElectionError::Timeout(limit))??;
        let Some(ttl) = lease_validity(resp.ttl(), self.ttl) else {
            tokio::spawn(revoke(self.client.clone(), resp.id(), self.ttl));
            return Err(ElectionError::BadGrant { ttl: resp.ttl() });
        };
        let valid_until = sent.checked_add(ttl).unwrap_or(sent);
        let (lost_tx, lost_rx) = watch::channel(None);
        let lost_tx = Arc::new(lost_tx);
        let keeper = TermTask::spawn(
            keep_alive(self.clone(), resp.id(), ttl, valid_until, lost_tx.clone()),
            lost_tx.clone(),
        );
        Ok(Lease {
            client: self.client.clone(),
            id: resp.id(),
            lost_tx,
            lost_rx,
            keeper,
            revoke_on_drop: true,
        })
    }

    /// Tries to take the key with `lease` until it wins (the epoch) or the
    /// lease is lost (`None`).
    async fn contend(
        &self,
        lease: &Lease,
        value: &[u8],
        delays: &mut ExponentialBackoff,
    ) -> Option<Epoch> {
        let mut lost = lease.lost_rx.clone();
        loop {
            if lost.borrow().is_some() {
                return None;
            }
            let outcome = tokio::select! {
                r = self.try_take(lease.id, value) => r,
                _ = lost.changed() => return None,
            };
            match outcome {
                Ok(Take::Won(epoch)) => return Some(epoch),
                Ok(Take::Held { revision }) => {
                    *delays = RETRY.build();
                    tokio::select! {
                        _ = self.until_deleted(revision) => {}
                        _ = lost.changed() => return None,
                    }
                }
                Err(e) => {
                    tracing::warn!(key = %self.key, error = %e, "campaign request failed; retrying");
                    pause(delays).await;
                }
            }
        }
    }

    /// One "create if absent" transaction.
    async fn try_take(&self, lease: i64, value: &[u8]) -> Result<Take, ElectionError> {
        let key = self.key.as_str();
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([
                TxnOp::put(key, value, Some(PutOptions::new().with_lease(lease))),
                TxnOp::get(key, None),
            ])
            .or_else([TxnOp::get(key, None)]);
        let mut client = self.client.clone();
        let limit = self.request_timeout();
        let resp = timeout(limit, client.txn(txn))
            .await
            .map_err(|_| ElectionError::Timeout(limit))??;
        let revision = resp.header().map_or(0, |h| h.revision());
        let holder = resp.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(mut get) => get.take_kvs().into_iter().next(),
            _ => None,
        });
        Ok(match holder {
            // Our own lease holds it: this transaction won, or an earlier one
            // whose answer was lost did.
            Some(kv) if kv.lease() == lease => match epoch_of(&kv) {
                Some(epoch) => Take::Won(epoch),
                // No key etcd created has such a revision: ask again.
                None => Take::Held { revision },
            },
            Some(_) => Take::Held { revision },
            // Deleted between the compare and the read: impossible in one
            // transaction, but harmless: try again.
            None => Take::Held { revision: 0 },
        })
    }

    /// Returns once the key is deleted after `revision`, or after a TTL in
    /// any case (the caller then reads the key again: a watch that went
    /// silent must not keep a standby waiting forever).
    async fn until_deleted(&self, revision: i64) {
        let started = Instant::now();
        let wait = async {
            let Ok(mut stream) = self.watch_from(revision.saturating_add(1)).await else {
                return false;
            };
            while let Ok(Some(resp)) = stream.message().await {
                if resp
                    .events()
                    .iter()
                    .any(|e| e.event_type() == EventType::Delete)
                {
                    return true;
                }
                if resp.canceled() {
                    return false;
                }
            }
            false
        };
        let deleted = timeout(self.ttl, wait).await.unwrap_or(false);
        // A watch that fails at once must not turn the campaign into a busy
        // loop of transactions.
        if !deleted {
            sleep_until(started + Duration::from_millis(100)).await;
        }
    }

    async fn watch_from(&self, revision: i64) -> Result<WatchStream, ElectionError> {
        let mut client = self.client.clone();
        let limit = self.request_timeout();
        let options = WatchOptions::new().with_start_revision(revision.max(0));
        Ok(
            timeout(limit, client.watch(self.key.as_str(), Some(options)))
                .await
                .map_err(|_| ElectionError::Timeout(limit))??,
        )
    }

    /// Watches the key from revision `from` on, and again whenever the
    /// watch breaks (etcd restarted, the connection dropped, the watch was
    /// cancelled): `on_event` sees each change in order and ends the whole
    /// thing with `Break`; after a break and a retry delay, `resume` gets
    /// the revision after the last change seen and says where to watch
    /// from again (or ends it).
    async fn follow_key<T, F>(
        &self,
        mut from: i64,
        mut on_event: impl FnMut(EventType, &KeyValue) -> ControlFlow<T>,
        mut resume: impl FnMut(i64) -> F,
    ) -> T
    where
        F: Future<Output = ControlFlow<T, i64>>,
    {
        let mut delays = RETRY.build();
        loop {
            if let Ok(mut stream) = self.watch_from(from).await {
                delays = RETRY.build();
                while let Ok(Some(resp)) = stream.message().await {
                    if resp.canceled() {
                        break;
                    }
                    for e in resp.events() {
                        let Some(kv) = e.kv() else { continue };
                        if let ControlFlow::Break(end) = on_event(e.event_type(), kv) {
                            return end;
                        }
                        from = kv.mod_revision().saturating_add(1);
                    }
                }
            }
            pause(&mut delays).await;
            from = match resume(from).await {
                ControlFlow::Continue(from) => from,
                ControlFlow::Break(end) => return end,
            };
        }
    }

    /// The current term, read once (linearizable) within `limit`: `None`
    /// while nobody leads. For tools such as `seguro status`; a daemon
    /// follows the key with [`Election::observe`] instead.
    pub async fn current(&self, limit: Duration) -> Result<Option<Term>, ElectionError> {
        let (kv, _) = self.read_within(limit).await?;
        Ok(kv.as_ref().and_then(Term::from_kv))
    }

    /// A linearizable read of the key: its kv (if any) and etcd's revision.
    async fn read(&self) -> Result<(Option<KeyValue>, i64), ElectionError> {
        self.read_within(self.request_timeout()).await
    }

    async fn read_within(&self, limit: Duration) -> Result<(Option<KeyValue>, i64), ElectionError> {
        let mut client = self.client.clone();
        let mut resp = timeout(limit, client.get(self.key.as_str(), None))
            .await
            .map_err(|_| ElectionError::Timeout(limit))??;
        let revision = resp.header().map_or(0, |h| h.revision());
        Ok((resp.take_kvs().into_iter().next(), revision))
    }
}

/// The longest lease etcd grants (its `MaxLeaseTTL`), in seconds: a TTL
/// past it is refused, and this bound keeps every deadline we compute from
/// a TTL far from `Instant`'s range.
const MAX_LEASE_TTL_SECS: u64 = 9_000_000_000;

/// The lease TTL an election asks for: whole seconds, from 1 to etcd's
/// maximum.
fn lease_ttl(ttl: Duration) -> Duration {
    Duration::from_secs(ttl.as_secs().clamp(1, MAX_LEASE_TTL_SECS))
}

/// Until when a lease counts as valid after etcd answered a grant or a
/// renewal sent at `sent` with `granted_ttl` seconds: `None` when that
/// TTL is no live lease's (0 or less). It never counts past `asked`, our
/// own TTL: etcd may say more (it raises short TTLs to its minimum), and
/// trusting a longer one, or an absurd one from a broken etcd, would keep
/// a leader leading after other replicas may take over.
fn valid_until(sent: Instant, granted_ttl: i64, asked: Duration) -> Option<Instant> {
    let validity = lease_validity(granted_ttl, asked)?;
    // Only a caller's absurd `asked` can overflow: such a lease is
    // counted as already lapsed rather than panicking.
    Some(sent.checked_add(validity).unwrap_or(sent))
}

/// How long a lease etcd says has `granted_ttl` seconds left counts as
/// valid: that, but at most `asked`; `None` for 0 or less.
fn lease_validity(granted_ttl: i64, asked: Duration) -> Option<Duration> {
    let granted = u64::try_from(granted_ttl).ok().filter(|&s| s > 0)?;
    Some(Duration::from_secs(granted).min(asked))
}

/// A background task of a term (the keep-alive, the key's watch), run so
/// that however it ends, a panic included, the term counts as lost:
/// otherwise [`Leadership::lost`] would never fire and the replica would
/// go on leading on a lease nobody renews. Only [`TermTask::stop`] ends it
/// quietly.
struct TermTask {
    handle: JoinHandle<()>,
    stopped: Arc<AtomicBool>,
}

impl TermTask {
    fn spawn(
        task: impl Future<Output = ()> + Send + 'static,
        lost: Arc<watch::Sender<Option<LossReason>>>,
    ) -> TermTask {
        let stopped = Arc::new(AtomicBool::new(false));
        let handle = tokio::spawn(supervise(task, lost, stopped.clone()));
        TermTask { handle, stopped }
    }

    /// Ends the task on purpose (resigning, dropping the term).
    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.handle.abort();
    }
}

/// Runs `task`; if it ends without having recorded why the term is over
/// (it panicked), and was not `stopped` on purpose, records
/// [`LossReason::TaskFailed`].
async fn supervise(
    task: impl Future<Output = ()>,
    lost: Arc<watch::Sender<Option<LossReason>>>,
    stopped: Arc<AtomicBool>,
) {
    let _guard = LossOnDrop { lost, stopped };
    task.await
}

struct LossOnDrop {
    lost: Arc<watch::Sender<Option<LossReason>>>,
    stopped: Arc<AtomicBool>,
}

impl Drop for LossOnDrop {
    fn drop(&mut self) {
        if self.stopped.load(Ordering::Acquire) {
            return;
        }
        self.lost.send_if_modified(|r| {
            if r.is_some() {
                return false;
            }
            tracing::error!("an election task stopped without recording why; the term is over");
            *r = Some(LossReason::TaskFailed);
            true
        });
    }
}

enum Take {
    Won(Epoch),
    Held { revision: i64 },
}

/// A lease kept alive by a background task. Dropping it stops the task and
/// revokes the lease (in the background, best effort).
struct Lease {
    client: Client,
    id: i64,
    lost_tx: Arc<watch::Sender<Option<LossReason>>>,
    lost_rx: watch::Receiver<Option<LossReason>>,
    keeper: TermTask,
    revoke_on_drop: bool,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.keeper.stop();
        if self.revoke_on_drop
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let (client, id) = (self.client.clone(), self.id);
            rt.spawn(revoke(client, id, Duration::from_secs(10)));
        }
    }
}

/// Revokes a lease, retrying for up to `patience`: after an etcd outage
/// the lease can outlive our giving up on it, and until it is revoked the
/// key it holds keeps the next leader out.
async fn revoke(client: Client, id: i64, patience: Duration) {
    let once = || {
        let mut client = client.clone();
        async move {
            match timeout(Duration::from_secs(1), client.lease_revoke(id)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) if is_lease_not_found(&e) => Ok(()),
                Ok(Err(e)) => Err(ElectionError::Etcd(e)),
                Err(_) => Err(ElectionError::Timeout(Duration::from_secs(1))),
            }
        }
    };
    // Best effort: giving up leaves the lease to expire by itself.
    let _ = timeout(patience, once.retry(RETRY)).await;
}

fn is_lease_not_found(e: &etcd_client::Error) -> bool {
    e.to_string().contains("lease not found")
}

/// Keeps a lease alive every TTL/3 and declares it lost when etcd says it
/// is gone, or when no renewal has succeeded for a TTL.
///
/// Renewals are pipelined on one stream and never abandoned: etcd answers
/// them in order, so each answer is matched with the moment its request
/// was sent, and the lease is valid until that moment + TTL (etcd renewed
/// it after we sent, so this errs on the safe side). A slow etcd therefore
/// costs nothing until an answer takes longer than a TTL.
async fn keep_alive(
    election: Election,
    id: i64,
    ttl: Duration,
    mut valid_until: Instant,
    lost: Arc<watch::Sender<Option<LossReason>>>,
) {
    let interval = ttl / 3;
    let mut client = election.client.clone();
    let mut lost_rx = lost.subscribe();
    let mut stream: Option<(LeaseKeeper, LeaseKeepAliveStream)> = None;
    let mut sent: VecDeque<Instant> = VecDeque::new();
    let mut next = Instant::now() + interval;
    let reason = loop {
        let Some((keeper, responses)) = &mut stream else {
            // Opening a stream sends one renewal and waits for its answer.
            let opened = Instant::now();
            let retry = tokio::select! {
                r = client.lease_keep_alive(id) => match r {
                    Ok(s) => {
                        valid_until = valid_until.max(opened + ttl);
                        stream = Some(s);
                        sent.clear();
                        next = opened + interval;
                        false
                    }
                    Err(e) if is_lease_not_found(&e) => break LossReason::LeaseExpired,
                    Err(e) => {
                        tracing::debug!(lease = id, error = %e, "cannot open a keep-alive stream");
                        true
                    }
                },
                _ = sleep_until(valid_until) => break LossReason::KeepAliveTimeout,
                _ = lost_rx.changed() => break LossReason::KeyLost,
            };
            if retry {
                tokio::select! {
                    _ = sleep(Duration::from_millis(100)) => {}
                    _ = sleep_until(valid_until) => break LossReason::KeepAliveTimeout,
                }
            }
            continue;
        };
        tokio::select! {
            _ = sleep_until(next) => {
                let now = Instant::now();
                next = now + interval;
                if keeper.keep_alive().await.is_ok() {
                    sent.push_back(now);
                } else {
                    stream = None;
                }
            }
            r = responses.message() => match r {
                // A TTL of 0 or less: etcd says the lease is gone.
                Ok(Some(resp)) if resp.ttl() <= 0 => break LossReason::LeaseExpired,
                Ok(Some(resp)) => {
                    let at = sent.pop_front();
                    if let Some(renewed) = at.and_then(|at| self::valid_until(at, resp.ttl(), ttl)) {
                        valid_until = valid_until.max(renewed);
                    }
                }
                Ok(None) | Err(_) => {
                    tracing::debug!(lease = id, "keep-alive stream ended; opening another");
                    stream = None;
                }
            },
            _ = sleep_until(valid_until) => break LossReason::KeepAliveTimeout,
            _ = lost_rx.changed() => break LossReason::KeyLost,
        }
    };
    if reason != LossReason::KeyLost {
        tracing::warn!(key = %election.key, lease = id, %reason, "lost the lease");
        lost.send_if_modified(|r| r.replace(reason).is_none());
    }
    // Step down all the same when the key watch saw the term end.
    tokio::spawn(revoke(client, id, election.ttl * 10));
}

/// Watches the leader's own key and declares the term lost when the key is
/// deleted or re-created (another term).
async fn guard_key(election: Election, epoch: Epoch, lost: Arc<watch::Sender<Option<LossReason>>>) {
    let ours = move |kv: &KeyValue| epoch_of(kv) == Some(epoch);
    let reader = &election;
    election
        .follow_key(
            epoch.revision().saturating_add(1),
            |kind, kv| match kind {
                EventType::Put if ours(kv) => ControlFlow::Continue(()),
                _ => ControlFlow::Break(()),
            },
            // The watch broke: read the key before watching again.
            |from| async move {
                match reader.read().await {
                    Ok((kv, _)) if !kv.as_ref().is_some_and(ours) => ControlFlow::Break(()),
                    Ok((_, revision)) => {
                        ControlFlow::Continue(from.max(revision.saturating_add(1)))
                    }
                    Err(_) => ControlFlow::Continue(from),
                }
            },
        )
        .await;
    lost.send_if_modified(|r| r.replace(LossReason::KeyLost).is_none());
}

/// The observer: a watch for changes as they happen and a read every TTL/4
/// that confirms the view, both publishing into `tx`, until nobody listens.
async fn observe(election: Election, tx: watch::Sender<LeaderView>) {
    let confirm = async {
        // A read every TTL/4, each allowed up to a TTL: reads overlap when
        // etcd is slow, so the view stays confirmed as long as answers come
        // back within a TTL of being asked for.
        let mut tick = interval(election.ttl / 4);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut reads = JoinSet::new();
        let mut warned = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if reads.len() < 8 {
                        let e = election.clone();
                        reads.spawn(async move {
                            let sent = Instant::now();
                            (sent, e.read_within(e.ttl).await)
                        });
                    }
                }
                Some(Ok((sent, read))) = reads.join_next() => match read {
                    Ok((kv, revision)) => {
                        warned = false;
                        let term = kv.as_ref().and_then(Term::from_kv);
                        if kv.is_some() && term.is_none() {
                            tracing::warn!(key = %election.key, "the leader key does not hold a replica id");
                        }
                        tx.send_modify(|v| {
                            if revision >= v.revision {
                                v.term = term;
                                v.revision = revision;
                            }
                            v.confirmed_at = Some(v.confirmed_at.map_or(sent, |t| t.max(sent)));
                        });
                    }
                    Err(e) if !warned => {
                        warned = true;
                        tracing::warn!(key = %election.key, error = %e, "cannot read the leader key");
                    }
                    Err(_) => {}
                },
            }
        }
    };
    let follow = async {
        // Watch from just after what the reads have seen, first and after
        // every break.
        let tx = &tx;
        let seen = |_| async move {
            let mut rx = tx.subscribe();
            match rx.wait_for(|v| v.confirmed_at.is_some()).await {
                Ok(v) => ControlFlow::Continue(v.revision.saturating_add(1)),
                Err(_) => ControlFlow::Break(()),
            }
        };
        let ControlFlow::Continue(from) = seen(0).await else {
            return;
        };
        election
            .follow_key(
                from,
                |kind, kv| {
                    let term = match kind {
                        EventType::Put => Term::from_kv(kv),
                        EventType::Delete => None,
                    };
                    let revision = kv.mod_revision();
                    tx.send_if_modified(|v| {
                        if revision <= v.revision {
                            return false;
                        }
                        v.term = term;
                        v.revision = revision;
                        true
                    });
                    ControlFlow::Continue(())
                },
                seen,
            )
            .await
    };
    tokio::select! {
        _ = confirm => {}
        _ = follow => {}
        _ = tx.closed() => {}
    }
}

/// A term this replica (or gatekeeper) holds. Keep it while leading; its
/// lease is kept alive in the background.
///
/// Dropping it without [`resign`](Leadership::resign) revokes the lease in
/// the background (best effort), which deletes the key.
pub struct Leadership {
    election: Election,
    epoch: Epoch,
    lease: Lease,
    key_watch: TermTask,
}

impl fmt::Debug for Leadership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leadership")
            .field("key", &self.election.key)
            .field("epoch", &self.epoch)
            .field("lease", &self.lease.id)
            .field("lost", &*self.lease.lost_rx.borrow())
            .finish()
    }
}

impl Leadership {
    /// The term's epoch: the key's creation revision.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    pub fn lease_id(&self) -> i64 {
        self.lease.id
    }

    /// `Some` once the term is over.
    pub fn loss(&self) -> Option<LossReason> {
        *self.lease.lost_rx.borrow()
    }

    /// Resolves when the term ends without a resignation: the lease could not
    /// be kept alive for a TTL, the key was deleted or replaced, or a
    /// background task of the term failed. The lease is then revoked in the
    /// background.
    pub async fn lost(&self) -> LossReason {
        let mut rx = self.lease.lost_rx.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(r) => r.expect("waited for Some"),
            // The sender lives as long as `self`.
            Err(_) => LossReason::KeepAliveTimeout,
        }
    }

    /// A receiver that turns `Some` when the term ends, for callers that
    /// select over it.
    pub fn loss_signal(&self) -> watch::Receiver<Option<LossReason>> {
        self.lease.lost_rx.clone()
    }

    /// Ends the term at once: deletes the key if it is still this term's,
    /// and revokes the lease, so that the next campaign wins without waiting
    /// for a TTL.
    pub async fn resign(mut self) -> Result<(), ElectionError> {
        self.key_watch.stop();
        self.lease.keeper.stop();
        let key = self.election.key.as_str();
        let txn = Txn::new()
            .when([Compare::create_revision(
                key,
                CompareOp::Equal,
                self.epoch.revision(),
            )])
            .and_then([TxnOp::delete(key, None)]);
        let mut client = self.election.client.clone();
        let limit = self.election.request_timeout();
        let deleted = timeout(limit, client.txn(txn))
            .await
            .map_err(|_| ElectionError::Timeout(limit));
        let revoked = timeout(limit, client.lease_revoke(self.lease.id))
            .await
            .map_err(|_| ElectionError::Timeout(limit));
        // Revoking deletes the key too; either is enough.
        match (deleted, revoked) {
            (Ok(Ok(_)), _) | (_, Ok(Ok(_))) => {
                self.lease.revoke_on_drop = false;
                tracing::info!(key, epoch = %self.epoch, "resigned");
                Ok(())
            }
            (Ok(Err(e)), _) => Err(e.into()),
            (Err(e), _) => Err(e),
        }
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.key_watch.stop();
    }
}

/// Delays between retries of etcd requests: from 50 ms doubling to 1 s,
/// each with up to as much again of jitter, so that replicas and
/// gatekeepers that lost etcd together do not retry in step.
const RETRY: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_millis(50))
    .with_max_delay(Duration::from_secs(1))
    .with_factor(2.0)
    .with_jitter()
    .without_max_times();

/// Waits for the next of `delays` (never ending: [`RETRY`] has no limit).
async fn pause(delays: &mut ExponentialBackoff) {
    sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_and_epochs_convert_both_ways() {
        assert_eq!(Epoch::from_revision(7), Some(Epoch(7)));
        assert_eq!(Epoch(7).revision(), 7);
        assert_eq!(
            Epoch::from_revision(i64::MAX).map(Epoch::revision),
            Some(i64::MAX)
        );
        // No key is created at revision 0 or before.
        assert_eq!(Epoch::from_revision(0), None);
        assert_eq!(Epoch::from_revision(-1), None);
        // An epoch no revision can be compares equal to no key's.
        assert_eq!(Epoch(u64::MAX).revision(), i64::MAX);
    }

    #[test]
    fn a_lease_is_valid_for_what_etcd_granted_but_never_longer_than_asked() {
        let sent = Instant::now();
        let ttl = Duration::from_secs(2);
        assert_eq!(valid_until(sent, 2, ttl), Some(sent + ttl));
        assert_eq!(
            valid_until(sent, 1, ttl),
            Some(sent + Duration::from_secs(1))
        );
        // etcd may not extend our lease past what we asked for.
        assert_eq!(valid_until(sent, 3600, ttl), Some(sent + ttl));
        assert_eq!(valid_until(sent, i64::MAX, ttl), Some(sent + ttl));
        // No lease has a TTL of 0 or less: it is gone.
        assert_eq!(valid_until(sent, 0, ttl), None);
        assert_eq!(valid_until(sent, -1, ttl), None);
        assert_eq!(valid_until(sent, i64::MIN, ttl), None);
    }

    #[tokio::test]
    async fn the_term_is_lost_when_the_keep_alive_task_dies() {
        let (tx, mut rx) = watch::channel(None);
        let tx = Arc::new(tx);
        let task = TermTask::spawn(
            async { panic!("an etcd value the keep-alive did not expect") },
            tx.clone(),
        );
        assert!(task.handle.await.unwrap_err().is_panic());
        let lost = timeout(Duration::from_secs(1), rx.wait_for(Option::is_some))
            .await
            .expect("the loss is signalled at once")
            .map(|r| *r)
            .unwrap();
        assert_eq!(lost, Some(LossReason::TaskFailed));
    }

    #[tokio::test]
    async fn a_task_that_recorded_why_the_term_ended_keeps_its_reason() {
        let (tx, rx) = watch::channel(None);
        let tx = Arc::new(tx);
        let ends = tx.clone();
        let task = TermTask::spawn(
            async move {
                ends.send_replace(Some(LossReason::KeyLost));
            },
            tx,
        );
        task.handle.await.unwrap();
        assert_eq!(*rx.borrow(), Some(LossReason::KeyLost));
    }

    #[tokio::test]
    async fn stopping_a_task_on_purpose_is_no_loss() {
        let (tx, rx) = watch::channel(None);
        let task = TermTask::spawn(std::future::pending(), Arc::new(tx));
        task.stop();
        assert!(task.handle.await.unwrap_err().is_cancelled());
        assert_eq!(*rx.borrow(), None);
    }

    #[test]
    fn lease_ttls_are_whole_seconds_within_etcds_range() {
        assert_eq!(lease_ttl(Duration::ZERO), Duration::from_secs(1));
        assert_eq!(
            lease_ttl(Duration::from_millis(2500)),
            Duration::from_secs(2)
        );
        assert_eq!(
            lease_ttl(Duration::MAX),
            Duration::from_secs(MAX_LEASE_TTL_SECS)
        );
        // The longest TTL still leaves deadlines computable.
        let now = Instant::now();
        assert!(valid_until(now, i64::MAX, lease_ttl(Duration::MAX)).is_some());
        assert!(now.checked_add(lease_ttl(Duration::MAX) * 10).is_some());
    }

    #[test]
    fn confirmation_ages() {
        let now = Instant::now();
        let mut v = LeaderView::default();
        assert!(!v.is_confirmed(now, Duration::from_secs(2)));
        v.confirmed_at = Some(now);
        assert!(v.is_confirmed(now + Duration::from_secs(2), Duration::from_secs(2)));
        assert!(!v.is_confirmed(now + Duration::from_millis(2001), Duration::from_secs(2)));
        assert_eq!(
            v.confirmation_expires(Duration::from_secs(2)),
            Some(now + Duration::from_secs(2))
        );
    }
}
