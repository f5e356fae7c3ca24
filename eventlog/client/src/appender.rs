//! The writer's side: the fence (docs/SPEC.md §6.2), and the handle that
//! merges appended events into batches and pipelines them to the leader on
//! one stream, in the order they were appended (§4).
//!
//! A batch closes when it holds `max_events` events or `max_bytes` bytes, or
//! `max_linger` after its first event. Up to `max_in_flight` batches are
//! outstanding; events that arrive meanwhile wait and form the next batches.
//! If the stream breaks or the leader moves, every unanswered batch is sent
//! again, in order, marked as a retry (the log accepts a retried batch it
//! already holds unchanged), until `append_timeout`. If a batch is refused
//! (stale epoch, gap, duplicate, too large) or times out, it and every later
//! event fail with that error, and so does every append until the writer
//! calls [`Appender::recover`] or [`Appender::resume`].

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use crate::backoff::Backoff;
use crate::client::Client;
use crate::error::{AppendError, ClientError};
use crate::leader::Attempt;
use crate::proto::{self, AppendVerdict};
use crate::timer::LingerTimer;
use crate::types::{Epoch, EventNum};

impl Client {
    /// Commits a fence at `epoch` (docs/SPEC.md §6.2): from now on the log
    /// refuses batches of older epochs. Returns the last event number.
    pub async fn fence(&self, epoch: Epoch) -> Result<EventNum, AppendError> {
        self.on_leader(Client::api, |mut api| async move {
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
}

type Done = oneshot::Sender<Result<EventNum, AppendError>>;

/// When a batch whose first event came `at` is due.
fn due(at: Instant, max_linger: std::time::Duration) -> Instant {
    at + max_linger
}

/// A pipelined, batching writer for one epoch. Cheap to clone; clones share
/// the same sequence of events.
#[derive(Clone)]
pub struct Appender {
    tx: mpsc::UnboundedSender<Msg>,
    shared: Arc<Mutex<Shared>>,
    client: Client,
    epoch: Epoch,
}

struct Shared {
    /// The number the next appended event must have.
    next: EventNum,
    failed: Option<AppendError>,
}

enum Msg {
    Event(Pending),
    /// The writer recovered: fail nothing more, and mark what follows as
    /// retries (batches from before the failure may have been stored).
    Resume,
}

struct Pending {
    mug: u32,
    data: Bytes,
    num: EventNum,
    at: Instant,
    done: Done,
}

/// Resolves once the event's batch is committed and applied, to the last
/// event number stored, or to why it was not.
pub struct AppendFuture(Inner);

enum Inner {
    Ready(Option<Result<EventNum, AppendError>>),
    Waiting(oneshot::Receiver<Result<EventNum, AppendError>>),
}

impl Future for AppendFuture {
    type Output = Result<EventNum, AppendError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            Inner::Ready(r) => Poll::Ready(r.take().expect("AppendFuture polled after completion")),
            Inner::Waiting(rx) => Pin::new(rx).poll(cx).map(|r| {
                r.unwrap_or_else(|_| Err(AppendError::Unavailable("the appender stopped".into())))
            }),
        }
    }
}

impl Appender {
    pub(crate) fn spawn(client: Client, epoch: Epoch, next: EventNum) -> Appender {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Mutex::new(Shared { next, failed: None }));
        let driver = Driver {
            shared: shared.clone(),
            client: client.clone(),
            epoch,
            rx,
            queue: VecDeque::new(),
            queued_bytes: 0,
            in_flight: VecDeque::new(),
            seq: 0,
            conn: None,
            failed: None,
            retry_next: false,
            reconnect_at: None,
            backoff: Backoff::client(),
            closing: false,
            linger: LingerTimer::new().ok(),
        };
        tokio::spawn(driver.run());
        Appender {
            tx,
            shared,
            client,
            epoch,
        }
    }

    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The number the next appended event must have.
    pub fn next(&self) -> EventNum {
        self.shared.lock().unwrap().next
    }

    /// The error that stopped this appender, until it recovers.
    pub fn failure(&self) -> Option<AppendError> {
        self.shared.lock().unwrap().failed.clone()
    }

    /// Appends event `num` (the mug of the ship's state after it, and the
    /// jammed event). Events must be appended in order without gaps; the
    /// order of calls is the order in the log.
    pub fn append(&self, num: EventNum, mug: u32, data: Bytes) -> AppendFuture {
        let ready = |r| AppendFuture(Inner::Ready(Some(r)));
        let limit = self.client.options().max_event_bytes;
        let mut shared = self.shared.lock().unwrap();
        if let Some(e) = &shared.failed {
            return ready(Err(e.clone()));
        }
        if num != shared.next {
            return ready(Err(AppendError::OutOfOrder {
                expected: shared.next,
                given: num,
            }));
        }
        if data.len() > limit {
            return ready(Err(AppendError::EventTooLarge {
                event: num,
                size: data.len() as u64,
                limit: limit as u64,
            }));
        }
        let (done, rx) = oneshot::channel();
        let pending = Pending {
            mug,
            data,
            num,
            at: Instant::now(),
            done,
        };
        if self.tx.send(Msg::Event(pending)).is_err() {
            return ready(Err(AppendError::Unavailable("the appender stopped".into())));
        }
        shared.next = num.next();
        AppendFuture(Inner::Waiting(rx))
    }

    /// After a failure: fences the log at this appender's epoch, which
    /// returns the last event stored, and resumes right after it. The
    /// writer appends again from the returned number + 1.
    pub async fn recover(&self) -> Result<EventNum, AppendError> {
        let last = self.client.fence(self.epoch).await?;
        self.resume(last.next());
        Ok(last)
    }

    /// Clears a failure and makes `next` the next event number.
    pub fn resume(&self, next: EventNum) {
        let mut shared = self.shared.lock().unwrap();
        shared.failed = None;
        shared.next = next;
        let _ = self.tx.send(Msg::Resume);
    }
}

struct InFlight {
    req: proto::AppendRequest,
    done: Vec<Done>,
    first_sent: Instant,
}

struct Conn {
    addr: String,
    tx: mpsc::Sender<proto::AppendRequest>,
    rx: Streaming<proto::AppendResponse>,
}

struct Driver {
    shared: Arc<Mutex<Shared>>,
    client: Client,
    epoch: Epoch,
    rx: mpsc::UnboundedReceiver<Msg>,
    /// Appended, not yet sent.
    queue: VecDeque<Pending>,
    queued_bytes: usize,
    /// Sent, not yet answered, in order.
    in_flight: VecDeque<InFlight>,
    seq: u64,
    conn: Option<Conn>,
    failed: Option<AppendError>,
    retry_next: bool,
    reconnect_at: Option<Instant>,
    backoff: Backoff,
    /// Every handle is gone: send what is queued, then stop.
    closing: bool,
    /// Wakes the driver when a batch's linger runs out (`None`: tokio's
    /// millisecond timers do, late by up to a millisecond).
    linger: Option<LingerTimer>,
}

enum Problem {
    /// Send everything unanswered again, to the leader.
    Reconnect(String),
}

impl Driver {
    async fn run(mut self) {
        loop {
            if self.closing && self.queue.is_empty() && self.in_flight.is_empty() {
                return;
            }
            let now = Instant::now();
            self.expire(now);
            if self.conn.is_none()
                && (!self.queue.is_empty() || !self.in_flight.is_empty())
                && self.reconnect_at.is_none_or(|t| t <= now)
            {
                self.connect().await;
            }
            self.send_ready(Instant::now());

            let mut linger_at = self.linger_deadline();
            if let Some(timer) = &mut self.linger {
                if timer.arm(linger_at).is_err() {
                    self.linger = None;
                } else {
                    linger_at = None;
                }
            }
            let timeout_at = self.timeout_deadline();
            let reconnect_at = self.reconnect_at.filter(|_| self.conn.is_none());
            let wake_at = [linger_at, timeout_at, reconnect_at]
                .into_iter()
                .flatten()
                .min();
            let precise = self.linger.is_some() && self.linger_deadline().is_some();
            tokio::select! {
                msg = self.rx.recv(), if !self.closing => {
                    self.on_message(msg);
                    // Take every append already waiting, so that a burst
                    // forms one batch.
                    while let Ok(msg) = self.rx.try_recv() {
                        self.on_message(Some(msg));
                    }
                }
                resp = async { self.conn.as_mut().unwrap().rx.message().await }, if self.conn.is_some() => {
                    let problem = match resp {
                        Ok(Some(r)) => self.on_response(r).err(),
                        Ok(None) => Some(Problem::Reconnect("the leader closed the stream".into())),
                        Err(s) => Some(Problem::Reconnect(s.message().to_string())),
                    };
                    if let Some(Problem::Reconnect(why)) = problem {
                        let addr = self.conn.take().map(|c| c.addr).unwrap_or_default();
                        tracing::debug!(%addr, "append stream broke: {why}; reconnecting");
                        self.reconnect_at = Some(Instant::now() + self.backoff.peek());
                    }
                },
                r = async { self.linger.as_mut().unwrap().fired().await }, if precise => {
                    if r.is_err() {
                        self.linger = None;
                    }
                }
                _ = sleep_until(wake_at.unwrap_or(now)), if wake_at.is_some() => {}
            }
        }
    }

    fn on_message(&mut self, msg: Option<Msg>) {
        match msg {
            Some(Msg::Event(p)) => self.enqueue(p),
            Some(Msg::Resume) => {
                self.failed = None;
                self.retry_next = true;
            }
            None => self.closing = true,
        }
    }

    fn enqueue(&mut self, p: Pending) {
        if let Some(e) = &self.failed {
            let _ = p.done.send(Err(e.clone()));
            return;
        }
        self.queued_bytes += p.data.len();
        self.queue.push_back(p);
    }

    fn linger_deadline(&self) -> Option<Instant> {
        let first = self.queue.front()?;
        let limits = &self.client.options().batch;
        if self.conn.is_none() || self.in_flight.len() >= self.client.options().max_in_flight {
            return None;
        }
        if self.queue.len() >= limits.max_events || self.queued_bytes >= limits.max_bytes {
            return Some(Instant::now());
        }
        Some(due(first.at, limits.max_linger))
    }

    fn timeout_deadline(&self) -> Option<Instant> {
        let t = self.client.options().append_timeout;
        let oldest = match (self.in_flight.front(), self.queue.front()) {
            (Some(f), Some(q)) => f.first_sent.min(q.at),
            (Some(f), None) => f.first_sent,
            (None, Some(q)) => q.at,
            (None, None) => return None,
        };
        Some(oldest + t)
    }

    /// Fails everything if the oldest event waited too long.
    fn expire(&mut self, now: Instant) {
        if self.timeout_deadline().is_some_and(|d| d <= now) {
            let t = self.client.options().append_timeout;
            self.fail(AppendError::Timeout(t));
        }
    }

    /// Fails every event in flight or queued, and every append until the
    /// writer recovers.
    fn fail(&mut self, e: AppendError) {
        tracing::warn!(epoch = %self.epoch, "appends failed: {e}");
        for f in self.in_flight.drain(..) {
            for d in f.done {
                let _ = d.send(Err(e.clone()));
            }
        }
        for p in self.queue.drain(..) {
            let _ = p.done.send(Err(e.clone()));
        }
        self.queued_bytes = 0;
        self.shared.lock().unwrap().failed = Some(e.clone());
        self.failed = Some(e);
    }

    /// Sends every batch that is due, while the pipeline has room.
    fn send_ready(&mut self, now: Instant) {
        let opts = self.client.options().clone();
        while let Some(conn) = &self.conn {
            let Some(first) = self.queue.front() else {
                return;
            };
            if self.in_flight.len() >= opts.max_in_flight {
                return;
            }
            let full = self.queue.len() >= opts.batch.max_events
                || self.queued_bytes >= opts.batch.max_bytes;
            if !full && !self.closing && due(first.at, opts.batch.max_linger) > now {
                return;
            }
            let first_num = first.num;
            let mut events = Vec::new();
            let mut done = Vec::new();
            let mut bytes = 0;
            while let Some(p) = self.queue.front() {
                if events.len() >= opts.batch.max_events
                    || (!events.is_empty() && bytes + p.data.len() > opts.batch.max_bytes)
                {
                    break;
                }
                let p = self.queue.pop_front().unwrap();
                bytes += p.data.len();
                self.queued_bytes -= p.data.len();
                events.push(proto::NewEvent {
                    mug: p.mug,
                    data: p.data,
                });
                done.push(p.done);
            }
            self.seq += 1;
            let req = proto::AppendRequest {
                seq: self.seq,
                epoch: self.epoch.get(),
                first: first_num.get(),
                events,
                retry: self.retry_next,
            };
            if conn.tx.try_send(req.clone()).is_err() {
                // The stream is gone; the batch goes with the others when
                // the appender reconnects.
                self.conn = None;
            }
            self.in_flight.push_back(InFlight {
                req,
                done,
                first_sent: now,
            });
        }
    }

    fn on_response(&mut self, r: proto::AppendResponse) -> Result<(), Problem> {
        let Some(front) = self.in_flight.front() else {
            return Err(Problem::Reconnect("an answer to nothing".into()));
        };
        if r.seq != front.req.seq {
            return Err(Problem::Reconnect(format!(
                "answer {} out of order (expected {})",
                r.seq, front.req.seq
            )));
        }
        match r.result {
            Some(proto::append_response::Result::Last(last)) => {
                let f = self.in_flight.pop_front().unwrap();
                for d in f.done {
                    let _ = d.send(Ok(EventNum(last)));
                }
                if self.in_flight.is_empty() && self.failed.is_none() {
                    self.retry_next = false;
                }
                self.backoff = Backoff::client();
                Ok(())
            }
            Some(proto::append_response::Result::Error(e)) => match AppendVerdict::from(e) {
                AppendVerdict::NotLeader(hint) => {
                    self.client.follow_hint(&hint);
                    Err(Problem::Reconnect("not the leader".into()))
                }
                AppendVerdict::Error(AppendError::Unavailable(why)) => {
                    self.client.forget_leader();
                    Err(Problem::Reconnect(why))
                }
                AppendVerdict::Error(e) => {
                    self.fail(e);
                    Ok(())
                }
            },
            None => Err(Problem::Reconnect("an empty answer".into())),
        }
    }

    /// Opens a stream to the leader and sends every unanswered batch again.
    async fn connect(&mut self) {
        let opts = self.client.options().clone();
        let attempt = async {
            let addr = self.client.leader().await.ok_or("no leader found")?;
            let mut api = self.client.api(&addr).map_err(|e| e.to_string())?;
            let (tx, rx) = mpsc::channel(opts.max_in_flight + 1);
            let resp =
                tokio::time::timeout(opts.request_timeout, api.append(ReceiverStream::new(rx)))
                    .await
                    .map_err(|_| format!("{addr} did not answer"))?
                    .map_err(|s| format!("{addr}: {}", s.message()))?;
            Ok::<_, String>(Conn {
                addr,
                tx,
                rx: resp.into_inner(),
            })
        };
        match attempt.await {
            Ok(conn) => {
                let mut ok = true;
                for f in &mut self.in_flight {
                    f.req.retry = true;
                    ok &= conn.tx.try_send(f.req.clone()).is_ok();
                }
                if !self.in_flight.is_empty() {
                    self.retry_next = true;
                }
                if ok {
                    self.conn = Some(conn);
                    self.reconnect_at = None;
                } else {
                    self.reconnect_at = Some(Instant::now() + self.backoff.peek());
                }
            }
            Err(why) => {
                tracing::debug!("cannot reach the event log leader: {why}");
                self.client.forget_leader();
                self.reconnect_at = Some(Instant::now() + self.backoff.advance());
            }
        }
    }
}
