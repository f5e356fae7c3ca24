//! The event log's client, for replica agents, the gatekeeper and the CLI:
//! it finds the Raft leader, follows it when it moves, and retries with
//! backoff within a deadline. [`Appender`] is the writer's pipelined,
//! batching handle.

mod appender;
mod timer;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use config::{BatchLimits, Config, Key, ReplicaId};
use futures::Stream;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub use appender::{AppendFuture, Appender};

use crate::auth::Signer;
use crate::error::{AppendError, ClientError, ReadError};
use crate::network::Channels;
use crate::proto::{self, AppendVerdict, event_log_client::EventLogClient};
use crate::types::{CommitState, Epoch, Event, EventNum};

pub(crate) type Api = EventLogClient<InterceptedService<Channel, Signer>>;

/// How a client batches, waits and retries.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// One attempt of a request (status, fence, membership...).
    pub request_timeout: Duration,
    /// How long a request keeps retrying (leader changes, restarts).
    pub deadline: Duration,
    /// How long an appended batch may take to commit before its events fail
    /// with [`AppendError::Timeout`].
    pub append_timeout: Duration,
    /// How the [`Appender`] merges events into batches (`[eventlog.batch]`).
    pub batch: BatchLimits,
    /// `eventlog.max_event_bytes`: larger events are refused at once.
    pub max_event_bytes: usize,
    /// Most batches an [`Appender`] has in flight; further events wait and
    /// join the next batch.
    pub max_in_flight: usize,
}

impl ClientOptions {
    pub fn from_config(config: &Config) -> Self {
        ClientOptions {
            request_timeout: Duration::from_secs(5),
            deadline: Duration::from_secs(15),
            append_timeout: Duration::from_secs(15),
            batch: config.eventlog.batch,
            max_event_bytes: config.eventlog.max_event_bytes,
            max_in_flight: 64,
        }
    }
}

/// A handle on the event log cluster. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    endpoints: Mutex<Vec<String>>,
    signer: Signer,
    channels: Channels,
    leader: Mutex<Option<String>>,
    opts: ClientOptions,
}

/// One step of a request against the leader.
enum Attempt<T> {
    Done(T),
    /// The node says the leader is elsewhere.
    Redirect(proto::LeaderHint),
    /// The node cannot serve now; try again (possibly elsewhere).
    Retry(String),
}

impl Client {
    /// A client of the cluster the config describes, authenticating with the
    /// event log secret.
    pub fn new(config: &Config, key: Key) -> Client {
        let endpoints = config
            .replicas
            .iter()
            .map(|r| r.eventlog.to_string())
            .collect();
        Client::with_options(endpoints, key, ClientOptions::from_config(config))
    }

    pub fn with_options(endpoints: Vec<String>, key: Key, opts: ClientOptions) -> Client {
        Client {
            inner: Arc::new(Inner {
                endpoints: Mutex::new(endpoints),
                signer: Signer::new(key, 0),
                channels: Channels::default(),
                leader: Mutex::new(None),
                opts,
            }),
        }
    }

    pub fn options(&self) -> &ClientOptions {
        &self.inner.opts
    }

    pub(crate) fn api(&self, addr: &str) -> Result<Api, ClientError> {
        let channel = self
            .inner
            .channels
            .get(addr)
            .map_err(|e| ClientError::Unavailable(format!("bad address {addr}: {e}")))?;
        Ok(
            EventLogClient::with_interceptor(channel, self.inner.signer.clone())
                .max_decoding_message_size(usize::MAX)
                .max_encoding_message_size(usize::MAX),
        )
    }

    fn learn(&self, addr: &str) {
        let mut eps = self.inner.endpoints.lock().unwrap();
        if !addr.is_empty() && !eps.iter().any(|e| e == addr) {
            eps.push(addr.to_string());
        }
    }

    pub(crate) fn follow_hint(&self, hint: &proto::LeaderHint) {
        if hint.addr.is_empty() {
            self.forget_leader();
        } else {
            self.learn(&hint.addr);
            *self.inner.leader.lock().unwrap() = Some(hint.addr.clone());
        }
    }

    pub(crate) fn forget_leader(&self) {
        *self.inner.leader.lock().unwrap() = None;
    }

    /// The leader's address: the last one seen, or asked of every node.
    /// Fails with [`ClientError::Rejected`] if the nodes refuse this
    /// client's credentials.
    pub(crate) async fn find_leader(&self) -> Result<String, ClientError> {
        if let Some(l) = self.inner.leader.lock().unwrap().clone() {
            return Ok(l);
        }
        let endpoints = self.inner.endpoints.lock().unwrap().clone();
        let asks = endpoints.iter().map(|addr| async move {
            (
                addr.clone(),
                self.node_status(addr, Duration::from_secs(1)).await,
            )
        });
        let answers = futures::future::join_all(asks).await;
        let mut hinted = None;
        let mut refused = None;
        for (addr, status) in answers {
            let s = match status {
                Ok(s) => s,
                Err(ClientError::Rejected(why)) => {
                    refused = Some(format!("{addr}: {why}"));
                    continue;
                }
                Err(_) => continue,
            };
            for m in &s.members {
                self.learn(&m.addr);
            }
            if s.role == "leader" {
                *self.inner.leader.lock().unwrap() = Some(addr.clone());
                return Ok(addr);
            }
            if !s.leader_addr.is_empty() {
                hinted = Some(s.leader_addr.clone());
            }
        }
        if let Some(h) = hinted {
            *self.inner.leader.lock().unwrap() = Some(h.clone());
            return Ok(h);
        }
        match refused {
            Some(why) => Err(ClientError::Rejected(why)),
            None => Err(ClientError::Unavailable(
                "no event log node knows a leader".into(),
            )),
        }
    }

    pub(crate) async fn leader(&self) -> Option<String> {
        self.find_leader().await.ok()
    }

    /// Runs `call` against the leader until it is done, fails, or the
    /// deadline passes, following redirects and backing off between tries.
    async fn on_leader<T, F, Fut>(&self, mut call: F) -> Result<T, ClientError>
    where
        F: FnMut(Api) -> Fut,
        Fut: Future<Output = Result<Attempt<T>, tonic::Status>>,
    {
        let deadline = Instant::now() + self.inner.opts.deadline;
        let mut backoff = Backoff::new();
        let mut last_problem = String::from("no event log node answered");
        loop {
            let found = match self.find_leader().await {
                Err(ClientError::Rejected(why)) => return Err(ClientError::Rejected(why)),
                Err(e) => {
                    last_problem = e.to_string();
                    None
                }
                Ok(addr) => Some(addr),
            };
            if let Some(addr) = found {
                let api = self.api(&addr)?;
                match tokio::time::timeout(self.inner.opts.request_timeout, call(api)).await {
                    Ok(Ok(Attempt::Done(t))) => return Ok(t),
                    Ok(Ok(Attempt::Redirect(hint))) => {
                        let moved = !hint.addr.is_empty() && hint.addr != addr;
                        self.follow_hint(&hint);
                        last_problem = format!("{addr} is not the leader");
                        if moved {
                            continue;
                        }
                    }
                    Ok(Ok(Attempt::Retry(why))) => {
                        self.forget_leader();
                        last_problem = format!("{addr}: {why}");
                    }
                    Ok(Err(status)) => {
                        if status.code() == tonic::Code::Unauthenticated {
                            return Err(ClientError::Rejected(format!(
                                "{addr}: {}",
                                status.message()
                            )));
                        }
                        self.forget_leader();
                        last_problem = format!("{addr}: {}", status.message());
                    }
                    Err(_) => {
                        self.forget_leader();
                        last_problem = format!("{addr} did not answer in time");
                    }
                }
            }
            if Instant::now() + backoff.peek() > deadline {
                return Err(ClientError::Unavailable(last_problem));
            }
            backoff.wait().await;
        }
    }

    /// One node's own view of itself (and, on the leader, of everyone).
    pub async fn node_status(
        &self,
        addr: &str,
        timeout: Duration,
    ) -> Result<NodeStatus, ClientError> {
        let mut api = self.api(addr)?;
        let resp = tokio::time::timeout(timeout, api.status(proto::StatusRequest {}))
            .await
            .map_err(|_| ClientError::Timeout(timeout))?
            .map_err(|s| match s.code() {
                tonic::Code::Unauthenticated => ClientError::Rejected(s.message().to_string()),
                _ => ClientError::Unavailable(s.message().to_string()),
            })?;
        Ok(NodeStatus::from_proto(addr, resp.into_inner()))
    }

    /// Every node's status: the config's replicas and any other member.
    pub async fn cluster_status(&self) -> Vec<(String, Result<NodeStatus, ClientError>)> {
        let timeout = self.inner.opts.request_timeout;
        let mut seen: Vec<String> = Vec::new();
        let mut out = Vec::new();
        loop {
            let todo: Vec<String> = self
                .inner
                .endpoints
                .lock()
                .unwrap()
                .iter()
                .filter(|e| !seen.contains(e))
                .cloned()
                .collect();
            if todo.is_empty() {
                break;
            }
            let asks = todo
                .iter()
                .map(|a| async move { (a.clone(), self.node_status(a, timeout).await) });
            for (addr, r) in futures::future::join_all(asks).await {
                if let Ok(s) = &r {
                    for m in &s.members {
                        self.learn(&m.addr);
                    }
                }
                seen.push(addr.clone());
                out.push((addr, r));
            }
        }
        out
    }

    /// Commits a fence at `epoch` (docs/SPEC.md §6.2): from now on the log
    /// refuses batches of older epochs. Returns the last event number.
    pub async fn fence(&self, epoch: Epoch) -> Result<EventNum, AppendError> {
        self.on_leader(|mut api| async move {
            let resp = api
                .fence(proto::FenceRequest { epoch: epoch.get() })
                .await?
                .into_inner();
            Ok(match resp.result {
                Some(proto::append_response::Result::Last(l)) => Attempt::Done(Ok(EventNum(l))),
                Some(proto::append_response::Result::Error(e)) => match AppendVerdict::from(e) {
                    AppendVerdict::NotLeader(h) => Attempt::Redirect(h),
                    AppendVerdict::Error(AppendError::Unavailable(why)) => Attempt::Retry(why),
                    AppendVerdict::Error(e) => Attempt::Done(Err(e)),
                },
                None => Attempt::Retry("empty answer".into()),
            })
        })
        .await
        .map_err(|e| match e {
            ClientError::Rejected(why) => AppendError::Refused(why),
            e => AppendError::Unavailable(e.to_string()),
        })?
    }

    /// A writer's handle for epoch `epoch`, whose next event is `next`.
    pub fn appender(&self, epoch: Epoch, next: EventNum) -> Appender {
        Appender::spawn(self.clone(), epoch, next)
    }

    /// Committed events from `from` up to `to` (or up to the last committed
    /// when the read reaches the leader), in order.
    pub fn read(
        &self,
        from: EventNum,
        to: Option<EventNum>,
    ) -> impl Stream<Item = Result<Event, ReadError>> + use<> {
        self.spawn_read(from, to, false)
    }

    /// Committed events from `from` on, as they commit; the stream follows
    /// the leader and never ends unless an error does it.
    pub fn follow(&self, from: EventNum) -> impl Stream<Item = Result<Event, ReadError>> + use<> {
        self.spawn_read(from, None, true)
    }

    /// Like [`Client::read`], from the node at `addr` whether or not it
    /// leads (a replica agent reading its own node, a test comparing logs).
    /// Such a node has every event up to its own commit point.
    pub fn read_from(
        &self,
        addr: &str,
        from: EventNum,
        to: Option<EventNum>,
    ) -> impl Stream<Item = Result<Event, ReadError>> + use<> {
        self.spawn_read_at(Some(addr.to_string()), from, to, false)
    }

    fn spawn_read(
        &self,
        from: EventNum,
        to: Option<EventNum>,
        follow: bool,
    ) -> ReceiverStream<Result<Event, ReadError>> {
        self.spawn_read_at(None, from, to, follow)
    }

    fn spawn_read_at(
        &self,
        pinned: Option<String>,
        from: EventNum,
        to: Option<EventNum>,
        follow: bool,
    ) -> ReceiverStream<Result<Event, ReadError>> {
        let (tx, rx) = mpsc::channel(64);
        let client = self.clone();
        tokio::spawn(async move {
            let mut next = from;
            let mut backoff = Backoff::new();
            let mut stalled_since = Instant::now();
            loop {
                if to.is_some_and(|t| next > t) {
                    return;
                }
                let err = match client
                    .read_once(pinned.as_deref(), next, to, follow, &tx)
                    .await
                {
                    ReadEnd::Done => return,
                    ReadEnd::Progress(n) => {
                        next = n;
                        stalled_since = Instant::now();
                        backoff = Backoff::new();
                        continue;
                    }
                    ReadEnd::Failed(e) => e,
                    ReadEnd::Transient(n, why) => {
                        if n > next {
                            next = n;
                            stalled_since = Instant::now();
                        }
                        if !follow && stalled_since.elapsed() > client.inner.opts.deadline {
                            ReadError::Unavailable(why)
                        } else {
                            backoff.wait().await;
                            continue;
                        }
                    }
                };
                let _ = tx.send(Err(err)).await;
                return;
            }
        });
        ReceiverStream::new(rx)
    }

    async fn read_once(
        &self,
        pinned: Option<&str>,
        from: EventNum,
        to: Option<EventNum>,
        follow: bool,
        tx: &mpsc::Sender<Result<Event, ReadError>>,
    ) -> ReadEnd {
        let addr = match pinned {
            Some(a) => a.to_string(),
            None => match self.leader().await {
                Some(a) => a,
                None => return ReadEnd::Transient(from, "no leader".into()),
            },
        };
        let mut api = match self.api(&addr) {
            Ok(a) => a,
            Err(e) => return ReadEnd::Failed(ReadError::Unavailable(e.to_string())),
        };
        let req = proto::ReadRequest {
            from: from.get(),
            to: to.map_or(0, |t| t.get()),
            follow,
        };
        let mut stream = match api.read(req).await {
            Ok(s) => s.into_inner(),
            Err(s) if s.code() == tonic::Code::Unauthenticated => {
                return ReadEnd::Failed(ReadError::Unavailable(s.message().to_string()));
            }
            Err(s) => {
                self.forget_leader();
                return ReadEnd::Transient(from, s.message().to_string());
            }
        };
        let mut next = from;
        loop {
            match stream.message().await {
                Ok(Some(msg)) => match msg.body {
                    Some(proto::read_response::Body::Events(chunk)) => {
                        if chunk.first != next.get() {
                            return ReadEnd::Transient(next, "the node skipped events".into());
                        }
                        for e in chunk.events {
                            let event = Event {
                                num: next,
                                epoch: Epoch(e.epoch),
                                mug: e.mug,
                                data: e.data,
                            };
                            next = next.next();
                            if tx.send(Ok(event)).await.is_err() {
                                return ReadEnd::Done;
                            }
                        }
                    }
                    Some(proto::read_response::Body::Error(e)) => {
                        return match e.kind {
                            Some(proto::read_error::Kind::Purged(first)) => {
                                ReadEnd::Failed(ReadError::Purged {
                                    first_available: EventNum(first),
                                })
                            }
                            Some(proto::read_error::Kind::Invalid(why)) => {
                                ReadEnd::Failed(ReadError::Invalid(why))
                            }
                            Some(proto::read_error::Kind::Unavailable(why)) => {
                                self.forget_leader();
                                ReadEnd::Transient(next, why)
                            }
                            None => ReadEnd::Transient(next, "empty error".into()),
                        };
                    }
                    None => return ReadEnd::Transient(next, "empty message".into()),
                },
                Ok(None) if follow => return ReadEnd::Transient(next, "the stream ended".into()),
                Ok(None) if next == from => return ReadEnd::Done,
                Ok(None) => {
                    // A bounded read ends at the leader's commit point.
                    return if to.is_some_and(|t| next <= t) {
                        ReadEnd::Progress(next)
                    } else {
                        ReadEnd::Done
                    };
                }
                Err(s) => {
                    self.forget_leader();
                    return ReadEnd::Transient(next, s.message().to_string());
                }
            }
        }
    }

    /// The commit state, from the leader, whenever it changes; across leader
    /// changes and restarts it reconnects, yielding an error for each
    /// interruption. The committed event number never goes back.
    pub fn watch_commits(&self) -> impl Stream<Item = Result<CommitState, ClientError>> + use<> {
        let (tx, rx) = mpsc::channel(16);
        let client = self.clone();
        tokio::spawn(async move {
            let mut last = CommitState::default();
            let mut backoff = Backoff::new();
            loop {
                let problem = match client.watch_once(&tx, &mut last).await {
                    WatchEnd::ReceiverGone => return,
                    WatchEnd::Moved => {
                        backoff = Backoff::new();
                        continue;
                    }
                    WatchEnd::Broken(why) => why,
                };
                if tx
                    .send(Err(ClientError::Unavailable(problem)))
                    .await
                    .is_err()
                {
                    return;
                }
                backoff.wait().await;
            }
        });
        ReceiverStream::new(rx)
    }

    async fn watch_once(
        &self,
        tx: &mpsc::Sender<Result<CommitState, ClientError>>,
        last: &mut CommitState,
    ) -> WatchEnd {
        let Some(addr) = self.leader().await else {
            return WatchEnd::Broken("no leader".into());
        };
        let mut api = match self.api(&addr) {
            Ok(a) => a,
            Err(e) => return WatchEnd::Broken(e.to_string()),
        };
        let mut stream = match api.watch_commits(proto::WatchRequest {}).await {
            Ok(s) => s.into_inner(),
            Err(s) => {
                self.forget_leader();
                return WatchEnd::Broken(format!("{addr}: {}", s.message()));
            }
        };
        loop {
            let msg = match stream.message().await {
                Ok(Some(m)) => m,
                Ok(None) => {
                    self.forget_leader();
                    return WatchEnd::Broken(format!("{addr} ended the commit watch"));
                }
                Err(s) => {
                    self.forget_leader();
                    return WatchEnd::Broken(format!("{addr}: {}", s.message()));
                }
            };
            match msg.body {
                Some(proto::watch_response::Body::State(s)) => {
                    let s = CommitState::from(s);
                    if s.committed < last.committed {
                        continue;
                    }
                    *last = s;
                    if tx.send(Ok(s)).await.is_err() {
                        return WatchEnd::ReceiverGone;
                    }
                }
                Some(proto::watch_response::Body::NotLeader(h)) => {
                    let moved = !h.addr.is_empty() && h.addr != addr;
                    self.follow_hint(&h);
                    return if moved {
                        WatchEnd::Moved
                    } else {
                        WatchEnd::Broken(format!("{addr} is not the leader"))
                    };
                }
                Some(proto::watch_response::Body::Unavailable(why)) => {
                    self.forget_leader();
                    return WatchEnd::Broken(format!("{addr}: {why}"));
                }
                None => return WatchEnd::Broken("empty message".into()),
            }
        }
    }

    /// The latest commit state, kept current by a background task that
    /// reconnects on failure; while it is disconnected the receiver keeps
    /// the last state it had (effects wait longer; they never leave early).
    /// The task stops when every receiver is dropped.
    pub fn commit_watch(&self) -> watch::Receiver<CommitState> {
        let (tx, rx) = watch::channel(CommitState::default());
        let stream = self.watch_commits();
        tokio::spawn(async move {
            use futures::StreamExt;
            let mut stream = std::pin::pin!(stream);
            loop {
                tokio::select! {
                    item = stream.next() => match item {
                        Some(Ok(s)) => { tx.send_replace(s); }
                        Some(Err(e)) => tracing::debug!("commit watch interrupted: {e}"),
                        None => return,
                    },
                    _ = tx.closed() => return,
                }
            }
        });
        rx
    }

    async fn admin(
        &self,
        call: impl Fn(
            Api,
        ) -> std::pin::Pin<
            Box<
                dyn Future<Output = Result<tonic::Response<proto::AdminResponse>, tonic::Status>>
                    + Send,
            >,
        >,
    ) -> Result<u64, ClientError> {
        self.on_leader(|api| {
            let fut = call(api);
            async move {
                let resp = fut.await?.into_inner();
                Ok(match resp.error.and_then(|e| e.kind) {
                    None => Attempt::Done(Ok(resp.purge_point)),
                    Some(proto::admin_error::Kind::NotLeader(h)) => Attempt::Redirect(h),
                    Some(proto::admin_error::Kind::Unavailable(why)) => Attempt::Retry(why),
                    Some(proto::admin_error::Kind::Rejected(why)) => {
                        Attempt::Done(Err(ClientError::Rejected(why)))
                    }
                })
            }
        })
        .await?
    }

    /// Adds a replica: it catches up as a learner, then becomes a voter.
    pub async fn add_replica(&self, id: ReplicaId, addr: SocketAddr) -> Result<(), ClientError> {
        let addr = addr.to_string();
        self.learn(&addr);
        self.admin(move |mut api| {
            let req = proto::AddReplicaRequest {
                id: id.get(),
                addr: addr.clone(),
            };
            Box::pin(async move { api.add_replica(req).await })
        })
        .await
        .map(drop)
    }

    /// Removes a replica from the voters and the cluster.
    pub async fn remove_replica(&self, id: ReplicaId) -> Result<(), ClientError> {
        self.admin(move |mut api| {
            let req = proto::RemoveReplicaRequest { id: id.get() };
            Box::pin(async move { api.remove_replica(req).await })
        })
        .await
        .map(drop)
    }

    /// Records `replica`'s checkpoint watermark (docs/SPEC.md §5) and
    /// returns the purge point after it.
    pub async fn set_watermark(
        &self,
        replica: ReplicaId,
        event: EventNum,
    ) -> Result<EventNum, ClientError> {
        self.admin(move |mut api| {
            let req = proto::SetWatermarkRequest {
                replica: replica.get(),
                event: event.get(),
            };
            Box::pin(async move { api.set_watermark(req).await })
        })
        .await
        .map(EventNum)
    }
}

enum ReadEnd {
    Done,
    Progress(EventNum),
    Failed(ReadError),
    Transient(EventNum, String),
}

enum WatchEnd {
    ReceiverGone,
    Moved,
    Broken(String),
}

/// Exponential backoff from 25 ms to 1 s.
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub fn new() -> Self {
        Backoff {
            next: Duration::from_millis(25),
        }
    }

    pub fn peek(&self) -> Duration {
        self.next
    }

    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(Duration::from_secs(1));
    }
}

/// One node's view, as `seguro eventlog status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub id: u32,
    pub addr: String,
    /// leader, follower, candidate, learner, shutdown, or down.
    pub role: String,
    pub term: u64,
    pub leader: Option<u32>,
    pub leader_addr: String,
    pub initialized: bool,
    pub last_log_index: Option<u64>,
    pub committed_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    pub last_event: EventNum,
    pub highest_epoch: Epoch,
    pub purge_point: EventNum,
    pub members: Vec<Member>,
    /// Leader only: every member's progress.
    pub replication: Vec<Progress>,
    pub watermarks: Vec<(u32, EventNum)>,
    /// Leader only.
    pub commit: Option<CommitState>,
    /// Why the node is down, if it is.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub id: u32,
    pub addr: String,
    pub voter: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    pub id: u32,
    /// The last log index on its disk, as far as the leader knows.
    pub matched: Option<u64>,
    /// Entries behind the leader's last.
    pub lag: u64,
}

impl NodeStatus {
    fn from_proto(addr: &str, s: proto::NodeStatus) -> Self {
        NodeStatus {
            id: s.id,
            addr: addr.to_string(),
            role: s.role,
            term: s.term,
            leader: (s.leader != 0).then_some(s.leader),
            leader_addr: s.leader_addr,
            initialized: s.initialized,
            last_log_index: s.last_log_index,
            committed_index: s.committed_index,
            applied_index: s.applied_index,
            snapshot_index: s.snapshot_index,
            purged_index: s.purged_index,
            last_event: EventNum(s.last_event),
            highest_epoch: Epoch(s.highest_epoch),
            purge_point: EventNum(s.purge_point),
            members: s
                .members
                .into_iter()
                .map(|m| Member {
                    id: m.id,
                    addr: m.addr,
                    voter: m.voter,
                })
                .collect(),
            replication: s
                .replication
                .into_iter()
                .map(|p| Progress {
                    id: p.id,
                    matched: p.matched,
                    lag: p.lag,
                })
                .collect(),
            watermarks: s
                .watermarks
                .into_iter()
                .map(|w| (w.replica, EventNum(w.event)))
                .collect(),
            commit: s.commit.map(CommitState::from),
            error: (!s.error.is_empty()).then_some(s.error),
        }
    }
}
