//! The event log API: fenced appends, reads, the commit watch and status.
//! Requests that only the leader can serve are answered with where the
//! leader is; the client goes there.

use std::pin::Pin;
use std::time::{Duration, Instant};

use eventlog_client::limits::{READ_CHUNK_BYTES, READ_CHUNK_EVENTS};
use eventlog_client::{AppendError, LogIndex, Role};
use futures::{Stream, StreamExt};
use openraft::errors::ClientWriteError;
use openraft::impls::ProgressResponder;
use openraft::raft::ClientWriteResult;
use openraft::rt::WatchReceiver;
use openraft::{ReadPolicy, ServerState};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::hint;
use crate::app::{CommitView, Ctx, Limits};
use crate::authz::{Action, Denied, refuse_unless};
use crate::command::{Batch, Command, NewEvent, Outcome};
use crate::ids::NodeId;
use crate::metrics as m;
use crate::proto::{self, event_log_server};
use crate::raft::TypeConfig;
use crate::types::{Epoch, EventNum};
use config::ReplicaId;

pub(crate) struct ApiService {
    ctx: Ctx,
}

impl ApiService {
    pub fn new(ctx: Ctx) -> Self {
        ApiService { ctx }
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn error_response(seq: u64, e: &AppendError) -> proto::AppendResponse {
    proto::AppendResponse {
        seq,
        result: Some(proto::append_response::Result::Error(e.into())),
    }
}

fn not_leader_response(seq: u64, hint: proto::LeaderHint) -> proto::AppendResponse {
    proto::AppendResponse {
        seq,
        result: Some(proto::append_response::Result::Error(proto::AppendError {
            kind: Some(proto::append_error::Kind::NotLeader(hint)),
        })),
    }
}

/// The replica a peer is, if it is one: the writer a batch records.
fn replica_of(peer: Option<&trust::Peer>) -> Option<ReplicaId> {
    match peer?.identity.role {
        config::Role::Replica(id) => Some(id),
        _ => None,
    }
}

/// Checks a batch against the limits before it is proposed; `by` wrote it.
fn validate(
    limits: Limits,
    req: proto::AppendRequest,
    by: Option<ReplicaId>,
) -> Result<Batch, AppendError> {
    let first = EventNum(req.first);
    let count = req.events.len() as u64;
    if count > 0 {
        if req.first == 0 {
            return Err(AppendError::Invalid("event numbers start at 1".into()));
        }
        if req.first.checked_add(count - 1).is_none() {
            return Err(AppendError::Invalid(
                "the batch's event numbers overflow".into(),
            ));
        }
    }
    let mut total = 0u64;
    for (i, e) in req.events.iter().enumerate() {
        let size = e.data.len() as u64;
        if size > limits.max_event_bytes {
            return Err(AppendError::EventTooLarge {
                event: EventNum(req.first + i as u64),
                size,
                limit: limits.max_event_bytes,
            });
        }
        total += size;
    }
    if total > limits.max_batch_bytes {
        return Err(AppendError::BatchTooLarge {
            first,
            size: total,
            limit: limits.max_batch_bytes,
        });
    }
    Ok(Batch {
        epoch: Epoch(req.epoch),
        first,
        events: req
            .events
            .into_iter()
            .map(|e| NewEvent {
                mug: e.mug,
                data: e.data,
            })
            .collect(),
        retry: req.retry,
        by,
    })
}

/// A batch on its way through Raft, or already answered.
enum Pending {
    Done(proto::AppendResponse),
    Waiting {
        seq: u64,
        started: Instant,
        rx: oneshot::Receiver<ClientWriteResult<TypeConfig>>,
        ctx: Ctx,
    },
}

impl Pending {
    async fn resolve(self) -> proto::AppendResponse {
        let (seq, started, rx, ctx) = match self {
            Pending::Done(r) => return r,
            Pending::Waiting {
                seq,
                started,
                rx,
                ctx,
            } => (seq, started, rx, ctx),
        };
        match rx.await {
            Ok(Ok(resp)) => match resp.data {
                Outcome::Stored { last } => {
                    m::committed(started.elapsed());
                    proto::AppendResponse {
                        seq,
                        result: Some(proto::append_response::Result::Last(last.get())),
                    }
                }
                Outcome::Rejected(r) => error_response(seq, &r.into()),
                other => error_response(
                    seq,
                    &AppendError::Invalid(format!("unexpected outcome {other}")),
                ),
            },
            // Not proposed here, or proposed and then discarded by a leader
            // change (it may still commit elsewhere): either way the writer
            // sends it again to the leader, marked as a retry.
            Ok(Err(
                ClientWriteError::ForwardToLeader(f) | ClientWriteError::LogEntryDiscarded(f),
            )) => {
                m::rejected("not_leader");
                let running = ctx.running().ok();
                not_leader_response(seq, hint(&ctx, running.as_ref(), f.leader_id))
            }
            Ok(Err(e)) => error_response(seq, &AppendError::Invalid(e.to_string())),
            Err(_) => {
                m::rejected("unavailable");
                error_response(
                    seq,
                    &AppendError::Unavailable("Raft stopped before the batch committed".into()),
                )
            }
        }
    }
}

/// What writing at `epoch` asks of the authorisation: below the log's
/// highest epoch the fence refuses the write whoever sends it (and tells a
/// deposed leader so); at or above it only the epoch's holder may write, or
/// anyone could raise the fence out of every leader's reach.
/// Allows `peer` to write at `epoch` (an append or a fence), or refuses it.
/// A Raft leader that cannot ask etcd who holds an epoch cannot let any
/// replica lead: it hands the Raft leadership to a voter that may be able
/// to (a host cut off from etcd, SPEC §6.5.3), at most every few seconds.
async fn allow_write(ctx: &Ctx, peer: Option<&trust::Peer>, epoch: Epoch) -> Result<(), Status> {
    let action = write_action(ctx, epoch);
    let decided = ctx.authz.judge(peer, action).await;
    if decided == Err(Denied::EpochUnverified)
        && ctx.authz.may_hand_over()
        && let Ok(running) = ctx.running()
    {
        hand_over(&running).await;
    }
    refuse_unless(peer, action, decided)
}

/// Transfers the Raft leadership, if this node has it, to the voter whose
/// log is furthest along.
async fn hand_over(running: &crate::app::Running) {
    let (leading, to) = {
        let mt = running.raft.metrics().borrow_watched().clone();
        let to = crate::node::other_voters(&mt)
            .into_iter()
            .max_by_key(|(_, matched)| *matched)
            .map(|(id, _)| id);
        (mt.current_leader == Some(mt.id), to)
    };
    if let (true, Some(to)) = (leading, to) {
        tracing::warn!(%to, "cannot ask etcd who holds the epoch: handing the Raft leadership to node {to}");
        if let Err(e) = running.raft.trigger().transfer_leader(to).await {
            tracing::warn!(error = %e, "cannot hand over the Raft leadership");
        }
    }
}

fn write_action(ctx: &Ctx, epoch: Epoch) -> Action {
    let highest = ctx.running().ok().map(|r| r.sm.position().fence.highest);
    match highest {
        Some(highest) if epoch < highest => Action::WriteStale,
        _ => Action::Write(epoch),
    }
}

async fn submit(ctx: &Ctx, req: proto::AppendRequest, by: Option<ReplicaId>) -> Pending {
    let seq = req.seq;
    let started = Instant::now();
    let batch = match validate(ctx.limits, req, by) {
        Ok(b) => b,
        Err(e) => {
            m::rejected(match e {
                AppendError::EventTooLarge { .. } | AppendError::BatchTooLarge { .. } => {
                    "too_large"
                }
                _ => "invalid",
            });
            return Pending::Done(error_response(seq, &e));
        }
    };
    let running = match ctx.running() {
        Ok(r) => r,
        Err(why) => {
            m::rejected("unavailable");
            return Pending::Done(error_response(seq, &AppendError::Unavailable(why)));
        }
    };
    let (responder, rx) = ProgressResponder::complete_only();
    if let Err(e) = running
        .raft
        .write(Command::Append(batch))
        .responder(responder)
        .await
    {
        m::rejected("unavailable");
        return Pending::Done(error_response(
            seq,
            &AppendError::Unavailable(e.to_string()),
        ));
    }
    Pending::Waiting {
        seq,
        started,
        rx,
        ctx: ctx.clone(),
    }
}

/// The highest epoch a `StaleEpoch` answer names.
fn stale_epoch(resp: &proto::AppendResponse) -> Option<Epoch> {
    use proto::append_error::Kind;
    match &resp.result {
        Some(proto::append_response::Result::Error(proto::AppendError {
            kind: Some(Kind::StaleEpoch(highest)),
        })) => Some(Epoch(*highest)),
        _ => None,
    }
}

fn role(state: ServerState) -> Role {
    match state {
        ServerState::Leader => Role::Leader,
        ServerState::Follower => Role::Follower,
        ServerState::Candidate => Role::Candidate,
        ServerState::Learner => Role::Learner,
        ServerState::Shutdown => Role::Shutdown,
    }
}

#[tonic::async_trait]
impl event_log_server::EventLog for ApiService {
    type AppendStream = BoxStream<proto::AppendResponse>;

    async fn append(
        &self,
        req: Request<Streaming<proto::AppendRequest>>,
    ) -> Result<Response<Self::AppendStream>, Status> {
        let peer = trust::peer_of(&req);
        let mut input = req.into_inner();
        let ctx = self.ctx.clone();
        let (tx, rx) = mpsc::unbounded_channel();
        // Batches are proposed in the order they arrive and answered in the
        // same order: Raft applies them in log order. Each is allowed on its
        // own: only the holder of its epoch may write at it.
        tokio::spawn(async move {
            while let Some(req) = input.next().await {
                // A request that cannot be read (over the message limit,
                // say) ends the stream, after the answers before it, with
                // why; so does a refusal.
                let next = match req {
                    Ok(req) => match allow_write(&ctx, peer.as_ref(), Epoch(req.epoch)).await {
                        Ok(_) => Ok(submit(&ctx, req, replica_of(peer.as_ref())).await),
                        Err(refused) => Err(refused),
                    },
                    Err(status) => Err(status),
                };
                let end = next.is_err();
                if tx.send(next).is_err() || end {
                    break;
                }
            }
        });
        let out = UnboundedReceiverStream::new(rx).then(|next| async move {
            match next {
                Ok(pending) => Ok(pending.resolve().await),
                Err(status) => Err(status),
            }
        });
        Ok(Response::new(Box::pin(out)))
    }

    async fn fence(
        &self,
        req: Request<proto::FenceRequest>,
    ) -> Result<Response<proto::AppendResponse>, Status> {
        let epoch = Epoch(req.get_ref().epoch);
        let peer = trust::peer_of(&req);
        allow_write(&self.ctx, peer.as_ref(), epoch).await?;
        let by = replica_of(peer.as_ref());
        let req = proto::AppendRequest {
            seq: 0,
            epoch: req.get_ref().epoch,
            first: 0,
            events: Vec::new(),
            retry: false,
        };
        let mut resp = submit(&self.ctx, req, by).await.resolve().await;
        // A fence refused as stale: a deposed leader's, or etcd's history
        // went back (`Authz::stale`).
        if let (Some(by), Some(highest)) = (by, stale_epoch(&resp)) {
            let why = self.ctx.authz.stale(by, epoch, highest).await;
            resp = error_response(resp.seq, &why);
        }
        Ok(Response::new(resp))
    }

    type ReadStream = BoxStream<proto::ReadResponse>;

    async fn read(
        &self,
        req: Request<proto::ReadRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        self.ctx.authz.allow(&req, Action::Read)?;
        let req = req.into_inner();
        let ctx = self.ctx.clone();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let error = |kind| proto::ReadResponse {
                body: Some(proto::read_response::Body::Error(proto::ReadError {
                    kind: Some(kind),
                })),
            };
            if req.from == 0 {
                let _ = tx
                    .send(Ok(error(proto::read_error::Kind::Invalid(
                        "event numbers start at 1".into(),
                    ))))
                    .await;
                return;
            }
            let mut next = EventNum(req.from);
            let to = (req.to != 0).then_some(EventNum(req.to));
            let mut end = to;
            loop {
                // Take the state machine only for one chunk: a long read must
                // not hold storage that a restart needs to reopen.
                let running = match ctx.running() {
                    Ok(r) => r,
                    Err(why) => {
                        let _ = tx
                            .send(Ok(error(proto::read_error::Kind::Unavailable(why))))
                            .await;
                        return;
                    }
                };
                let mut position = running.sm.watch_position();
                let pos = *position.borrow_and_update();
                if next <= pos.purge_point {
                    let kind = proto::read_error::Kind::Purged(pos.purge_point.next().get());
                    let _ = tx.send(Ok(error(kind))).await;
                    return;
                }
                if end.is_none() && !req.follow {
                    end = Some(pos.fence.last);
                }
                if end.is_some_and(|e| next > e) {
                    return;
                }
                let upto = end.map_or(pos.fence.last, |e| e.min(pos.fence.last));
                if next <= upto {
                    // A chunk's events are bounded in number as well as in
                    // bytes: the client's message limit counts both.
                    let upto = upto.min(EventNum(next.get().saturating_add(READ_CHUNK_EVENTS - 1)));
                    let events = running
                        .sm
                        .with_machine(|m| m.read(next, upto, READ_CHUNK_BYTES));
                    drop(running);
                    if let Some(last) = events.last() {
                        let first = next;
                        next = last.num.next();
                        let chunk = proto::EventChunk {
                            first: first.get(),
                            events: events
                                .into_iter()
                                .map(|e| proto::StoredEvent {
                                    epoch: e.epoch.get(),
                                    mug: e.mug,
                                    data: e.data,
                                })
                                .collect(),
                        };
                        let msg = proto::ReadResponse {
                            body: Some(proto::read_response::Body::Events(chunk)),
                        };
                        if tx.send(Ok(msg)).await.is_err() {
                            return;
                        }
                    }
                    continue;
                }
                drop(running);
                // Wait for more commits, the client to go, or a restart.
                tokio::select! {
                    r = position.changed() => if r.is_err() { continue },
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    type WatchCommitsStream = BoxStream<proto::WatchResponse>;

    async fn watch_commits(
        &self,
        req: Request<proto::WatchRequest>,
    ) -> Result<Response<Self::WatchCommitsStream>, Status> {
        self.ctx.authz.allow(&req, Action::WatchCommits)?;
        let ctx = self.ctx.clone();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            use proto::watch_response::Body;
            let send = |body| {
                let tx = tx.clone();
                async move {
                    tx.send(Ok(proto::WatchResponse { body: Some(body) }))
                        .await
                        .is_ok()
                }
            };
            let running = match ctx.running() {
                Ok(r) => r,
                Err(why) => {
                    send(Body::Unavailable(why)).await;
                    return;
                }
            };
            // Only the leader knows every voter's progress; and it serves the
            // watch only once it has applied everything committed before its
            // term, so the commit point never moves back.
            if let Err(e) = running
                .raft
                .ensure_linearizable(ReadPolicy::ReadIndex)
                .await
            {
                let leader = running.raft.metrics().borrow_watched().current_leader;
                let leader = leader.filter(|l| *l != NodeId::from(ctx.id));
                tracing::debug!("commit watch refused: {e}");
                send(Body::NotLeader(hint(&ctx, Some(&running), leader))).await;
                return;
            }
            let mut commit = running.commit.clone();
            drop(running);
            loop {
                let view = *commit.borrow_and_update();
                match view {
                    CommitView::Leader(state) => {
                        if !send(Body::State(state.into())).await {
                            return;
                        }
                    }
                    CommitView::NotLeader { leader } => {
                        let running = ctx.running().ok();
                        send(Body::NotLeader(hint(&ctx, running.as_ref(), leader))).await;
                        return;
                    }
                }
                tokio::select! {
                    r = commit.changed() => if r.is_err() {
                        send(Body::Unavailable("Raft restarted".into())).await;
                        return;
                    },
                    _ = tx.closed() => return,
                }
                // Coalesce bursts: changes that arrive meanwhile go out as one.
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn status(
        &self,
        req: Request<proto::StatusRequest>,
    ) -> Result<Response<proto::NodeStatus>, Status> {
        self.ctx.authz.allow(&req, Action::Status)?;
        let ctx = &self.ctx;
        let running = match ctx.running() {
            Ok(r) => r,
            Err(why) => {
                return Ok(Response::new(proto::NodeStatus {
                    id: ctx.id.get(),
                    role: proto::Role::from(Role::Down).into(),
                    error: why,
                    ..Default::default()
                }));
            }
        };
        let initialized = running
            .raft
            .is_initialized()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let pos = running.sm.position();
        let watermarks = running.sm.with_machine(|m| {
            m.watermarks()
                .iter()
                .map(|(r, e)| proto::Watermark {
                    replica: *r,
                    event: e.get(),
                })
                .collect()
        });
        let snapshot_index = running.sm.snapshot_index();
        let commit = match *running.commit.borrow() {
            CommitView::Leader(s) => Some(s.into()),
            CommitView::NotLeader { .. } => None,
        };
        let mt = running.raft.metrics().borrow_watched().clone();
        let membership = mt.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, n)| proto::Member {
                id: id.wire(),
                addr: n.addr.clone(),
                voter: voters.contains(id),
            })
            .collect();
        let last = mt.last_log_index.map(LogIndex);
        let progress = |id: NodeId, matched: Option<LogIndex>| proto::Progress {
            id: id.wire(),
            matched: matched.map(LogIndex::get),
            lag: LogIndex::lag(last, matched),
        };
        let mut replication: Vec<proto::Progress> = mt
            .replication
            .iter()
            .flatten()
            .map(|(id, matched)| progress(*id, matched.map(|l| LogIndex(l.index))))
            .collect();
        if mt.state == ServerState::Leader && !replication.iter().any(|p| p.id == mt.id.wire()) {
            let flushed = *running.log.watch_flushed().borrow();
            replication.push(progress(mt.id, flushed));
        }
        replication.sort_by_key(|p| p.id);
        let leader = mt.current_leader;
        Ok(Response::new(proto::NodeStatus {
            id: mt.id.wire(),
            role: proto::Role::from(role(mt.state)).into(),
            term: mt.current_term,
            leader: leader.map_or(0, NodeId::wire),
            leader_addr: leader
                .map(|l| ctx.addr_of(Some(&running), l))
                .unwrap_or_default(),
            initialized,
            last_log_index: last.map(LogIndex::get),
            committed_index: mt.local_committed.map(|l| l.index),
            applied_index: mt.last_applied.map(|l| l.index),
            snapshot_index: snapshot_index.map(LogIndex::get),
            purged_index: mt.purged.map(|l| l.index),
            last_event: pos.fence.last.get(),
            highest_epoch: pos.fence.highest.get(),
            purge_point: pos.purge_point.get(),
            members,
            replication,
            watermarks,
            commit,
            error: String::new(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn req(first: u64, sizes: &[usize]) -> proto::AppendRequest {
        proto::AppendRequest {
            seq: 1,
            epoch: 3,
            first,
            events: sizes
                .iter()
                .map(|s| proto::NewEvent {
                    mug: 0,
                    data: Bytes::from(vec![0u8; *s]),
                })
                .collect(),
            retry: false,
        }
    }

    #[test]
    fn oversize_events_and_batches_are_refused_naming_the_event_and_limit() {
        let limits = Limits {
            max_event_bytes: 100,
            max_batch_bytes: 250,
            // Not what `validate` looks at.
            messages: eventlog_client::MessageLimits {
                api_request: 0,
                api_response: 0,
                admin: 0,
            },
            max_snapshot_bytes: 0,
        };
        assert!(validate(limits, req(5, &[100, 100]), None).is_ok());
        assert_eq!(
            validate(limits, req(5, &[10, 101, 10]), None).unwrap_err(),
            AppendError::EventTooLarge {
                event: EventNum(6),
                size: 101,
                limit: 100
            }
        );
        assert_eq!(
            validate(limits, req(5, &[100, 100, 100]), None).unwrap_err(),
            AppendError::BatchTooLarge {
                first: EventNum(5),
                size: 300,
                limit: 250
            }
        );
        assert!(matches!(
            validate(limits, req(0, &[1]), None),
            Err(AppendError::Invalid(_))
        ));
        assert!(matches!(
            validate(limits, req(u64::MAX, &[1, 1]), None),
            Err(AppendError::Invalid(_))
        ));
        // A fence has no events and no first number.
        assert!(validate(limits, req(0, &[]), None).is_ok());
    }
}
