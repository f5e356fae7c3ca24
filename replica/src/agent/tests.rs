//! The agent against in-memory doubles of its ports (no network, no etcd),
//! with each test playing the runtime's side of the port by hand.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ames::{Lane, Mug, Stateless};
use bytes::Bytes;
use config::{Key, ReplicaId};
use eventlog_client::{AppendError, ClientError, Event, ReadError};
use futures::stream;
use leadership::{ElectionError, Epoch, EventNum, Keyring, LossReason};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{sleep, timeout};
use tokio_util::sync::CancellationToken;

use super::lead::{End, StepDown};
use super::ports::{Committed, EffectSink, Elector, EventLog, LogWriter, Term};
use super::{Agent, AgentError, Parts, Settings};
use crate::buffer::PacketId;
use crate::frame;
use crate::port::{self, Command, Notice, Recorded, RuntimePort};

type Appended = oneshot::Sender<Result<EventNum, AppendError>>;

/// An event log in memory: commits at once, or holds appends until the
/// test commits them.
#[derive(Clone)]
struct MemLog(Arc<Mutex<LogState>>);

struct LogState {
    /// Committed: `events[i]` is event `i + 1`.
    events: Vec<Event>,
    fenced: Epoch,
    fences: usize,
    hold: bool,
    held: VecDeque<(Event, Appended)>,
    last: watch::Sender<EventNum>,
    /// Fences never answer (a log without a quorum).
    hang_fences: bool,
    /// What every fence answers instead of fencing.
    fence_error: Option<AppendError>,
    /// Reads of a range yield nothing and never end.
    hang_reads: bool,
    /// Events below it are purged: reading from one yields `Purged`.
    purged_below: EventNum,
}

impl MemLog {
    fn new() -> MemLog {
        MemLog(Arc::new(Mutex::new(LogState {
            events: Vec::new(),
            fenced: Epoch(0),
            fences: 0,
            hold: false,
            held: VecDeque::new(),
            last: watch::channel(EventNum::NONE).0,
            hang_fences: false,
            fence_error: None,
            hang_reads: false,
            purged_below: EventNum::NONE,
        })))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LogState> {
        self.0.lock().unwrap()
    }

    /// Commits `event` as the fence allows, as the real log's state
    /// machine would.
    fn commit(&self, event: Event) -> Result<EventNum, AppendError> {
        let mut s = self.state();
        if event.epoch < s.fenced {
            return Err(AppendError::StaleEpoch { highest: s.fenced });
        }
        let expected = EventNum(s.events.len() as u64).next();
        if event.num != expected {
            return Err(AppendError::Gap { expected });
        }
        let num = event.num;
        s.events.push(event);
        s.last.send_replace(num);
        Ok(num)
    }

    /// Another leader fences the log.
    fn fence_by_another(&self, epoch: Epoch) {
        self.state().fenced = epoch;
    }

    /// Holds appends uncommitted until [`MemLog::release`].
    fn hold(&self) {
        self.state().hold = true;
    }

    fn held(&self) -> usize {
        self.state().held.len()
    }

    /// Commits every held append, in order.
    fn release(&self) {
        let held = std::mem::take(&mut self.state().held);
        for (event, done) in held {
            let _ = done.send(self.commit(event));
        }
    }

    /// Commits the oldest held append.
    fn release_one(&self) {
        let first = self.state().held.pop_front();
        if let Some((event, done)) = first {
            let _ = done.send(self.commit(event));
        }
    }

    fn fences(&self) -> usize {
        self.state().fences
    }
}

impl EventLog for MemLog {
    type Writer = MemWriter;

    fn fence(&self, epoch: Epoch) -> impl Future<Output = Result<EventNum, AppendError>> + Send {
        let mut s = self.state();
        let hang = s.hang_fences;
        let result = if let Some(e) = s.fence_error.clone() {
            Err(e)
        } else if epoch < s.fenced {
            Err(AppendError::StaleEpoch { highest: s.fenced })
        } else {
            s.fenced = epoch;
            s.fences += 1;
            Ok(EventNum(s.events.len() as u64))
        };
        async move {
            if hang {
                std::future::pending::<()>().await;
            }
            result
        }
    }

    fn writer(&self, epoch: Epoch, _next: EventNum) -> MemWriter {
        MemWriter {
            log: self.clone(),
            epoch,
        }
    }

    fn read(&self, from: EventNum, to: EventNum) -> Committed {
        let s = self.state();
        if s.hang_reads {
            return Box::pin(stream::pending());
        }
        let events: Vec<_> = s
            .events
            .iter()
            .filter(|e| (from..=to).contains(&e.num))
            .cloned()
            .map(Ok)
            .collect();
        Box::pin(stream::iter(events))
    }

    fn follow(&self, from: EventNum) -> Committed {
        let last = self.state().last.subscribe();
        Box::pin(stream::unfold(
            (self.clone(), from, last),
            |(log, next, mut last)| async move {
                loop {
                    let (event, purged) = {
                        let s = log.state();
                        (
                            s.events.get(next.get() as usize - 1).cloned(),
                            s.purged_below,
                        )
                    };
                    if next < purged {
                        let first_available = purged;
                        let gone = Err(ReadError::Purged { first_available });
                        return Some((gone, (log, purged, last)));
                    }
                    if let Some(event) = event {
                        return Some((Ok(event), (log, next.next(), last)));
                    }
                    last.changed().await.ok()?;
                }
            },
        ))
    }

    fn set_watermark(
        &self,
        _replica: ReplicaId,
        _event: EventNum,
    ) -> impl Future<Output = Result<EventNum, ClientError>> + Send {
        std::future::ready(Ok(EventNum::NONE))
    }
}

struct MemWriter {
    log: MemLog,
    epoch: Epoch,
}

impl LogWriter for MemWriter {
    type Append = Pin<Box<dyn Future<Output = Result<EventNum, AppendError>> + Send>>;

    fn append(&self, num: EventNum, mug: Option<Mug>, data: Bytes) -> Self::Append {
        let event = Event {
            num,
            epoch: self.epoch,
            mug: mug.map_or(0, Mug::get),
            data,
        };
        let mut s = self.log.state();
        if !s.hold {
            drop(s);
            return Box::pin(std::future::ready(self.log.commit(event)));
        }
        let (done, committed) = oneshot::channel();
        s.held.push_back((event, done));
        Box::pin(async move {
            committed
                .await
                .unwrap_or(Err(AppendError::Unavailable("dropped".into())))
        })
    }
}

/// An election the test decides: each campaign wins the next granted term.
#[derive(Clone)]
struct FakeElection(Arc<ElectionState>);

struct ElectionState {
    grant: mpsc::UnboundedSender<FakeTerm>,
    grants: tokio::sync::Mutex<mpsc::UnboundedReceiver<FakeTerm>>,
    campaigns: AtomicUsize,
    /// The epoch of the term etcd holds, as `current` reads it.
    leader: Mutex<Option<Epoch>>,
    /// When set, every campaign wins at once, each a term one epoch newer.
    auto: Mutex<Option<Epoch>>,
}

impl FakeElection {
    fn new() -> FakeElection {
        let (grant, grants) = mpsc::unbounded_channel();
        FakeElection(Arc::new(ElectionState {
            grant,
            grants: tokio::sync::Mutex::new(grants),
            campaigns: AtomicUsize::new(0),
            leader: Mutex::new(None),
            auto: Mutex::new(None),
        }))
    }

    /// Says which term etcd holds (`None`: nobody leads).
    fn set_leader(&self, epoch: Option<Epoch>) {
        *self.0.leader.lock().unwrap() = epoch;
    }

    /// Makes every campaign from now on win at once, from epoch `from` up.
    fn win_always(&self, from: Epoch) {
        *self.0.auto.lock().unwrap() = Some(from);
    }

    /// Makes the next campaign win term `epoch`; the sender ends it.
    fn grant(&self, epoch: Epoch) -> watch::Sender<Option<LossReason>> {
        let (term, lose) = FakeTerm::new(epoch);
        self.0.grant.send(term).unwrap();
        lose
    }

    /// Whether a granted term is still waiting for a campaign.
    fn unclaimed(&self) -> bool {
        self.0.grants.try_lock().is_ok_and(|g| !g.is_empty())
    }

    fn campaigns(&self) -> usize {
        self.0.campaigns.load(Ordering::SeqCst)
    }
}

impl Elector for FakeElection {
    type Term = FakeTerm;

    fn campaign(&self, _id: ReplicaId) -> impl Future<Output = FakeTerm> + Send {
        let state = self.0.clone();
        async move {
            state.campaigns.fetch_add(1, Ordering::SeqCst);
            let auto = {
                let mut auto = state.auto.lock().unwrap();
                let epoch = *auto;
                *auto = epoch.map(|e| Epoch(e.get() + 1));
                epoch
            };
            if let Some(epoch) = auto {
                return FakeTerm::new(epoch).0;
            }
            let mut grants = state.grants.lock().await;
            match grants.recv().await {
                Some(term) => term,
                None => std::future::pending().await,
            }
        }
    }

    fn current(&self) -> impl Future<Output = Result<Option<Epoch>, ElectionError>> + Send {
        std::future::ready(Ok(*self.0.leader.lock().unwrap()))
    }
}

struct FakeTerm {
    epoch: Epoch,
    lost: watch::Receiver<Option<LossReason>>,
    resigned: Arc<AtomicBool>,
}

impl FakeTerm {
    fn new(epoch: Epoch) -> (FakeTerm, watch::Sender<Option<LossReason>>) {
        let (lose, lost) = watch::channel(None);
        let term = FakeTerm {
            epoch,
            lost,
            resigned: Arc::new(AtomicBool::new(false)),
        };
        (term, lose)
    }
}

impl Term for FakeTerm {
    fn epoch(&self) -> Epoch {
        self.epoch
    }

    fn lost(&self) -> impl Future<Output = LossReason> + Send {
        let mut lost = self.lost.clone();
        async move {
            let reason = lost.wait_for(Option::is_some).await.ok().and_then(|r| *r);
            match reason {
                Some(reason) => reason,
                None => std::future::pending().await,
            }
        }
    }

    fn resign(self) -> impl Future<Output = Result<(), ElectionError>> + Send {
        self.resigned.store(true, Ordering::SeqCst);
        std::future::ready(Ok(()))
    }
}

/// Keeps what the agent sends the gatekeeper.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Datagrams>>);

type Datagrams = Vec<(SocketAddr, Vec<u8>)>;

impl Sink {
    fn take(&self) -> Datagrams {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

impl EffectSink for Sink {
    fn send(
        &self,
        datagrams: &[(SocketAddr, &[u8])],
    ) -> impl Future<Output = io::Result<udp::Sent>> + Send {
        let mut sent = self.0.lock().unwrap();
        sent.extend(datagrams.iter().map(|&(to, d)| (to, d.to_vec())));
        std::future::ready(Ok(udp::Sent {
            sent: datagrams.len(),
            failed: 0,
        }))
    }
}

type TestAgent = Agent<MemLog, FakeElection, Sink>;

struct Harness {
    agent: TestAgent,
    runtime: RuntimePort,
    inbound: mpsc::Sender<Vec<(Lane, Vec<u8>)>>,
    log: MemLog,
    election: FakeElection,
    sink: Sink,
    shutdown: CancellationToken,
}

fn harness(max_run_ahead: u64) -> Harness {
    // Long enough that no test sees a commit stall.
    harness_with(max_run_ahead, Duration::from_secs(60))
}

/// A harness whose lease TTL is `ttl`.
fn harness_with(max_run_ahead: u64, ttl: Duration) -> Harness {
    let (agent_port, runtime) = port::port(64);
    let (inbound, inbound_rx) = mpsc::channel(16);
    let (log, election, sink) = (MemLog::new(), FakeElection::new(), Sink::default());
    let agent = Agent::new(Parts {
        settings: Settings {
            id: ReplicaId::new(1).unwrap(),
            ttl,
            max_run_ahead,
            buffer_packets: 64,
            buffer_bytes: crate::DEFAULT_BUFFER_BYTES,
            gatekeeper: GATEKEEPER.parse().unwrap(),
            stateless_rate: 1000,
        },
        log: log.clone(),
        election: election.clone(),
        key: Key::from_bytes([1; 32]),
        inbound: inbound_rx,
        effects: sink.clone(),
        port: agent_port,
    });
    Harness {
        agent,
        runtime,
        inbound,
        log,
        election,
        sink,
        shutdown: CancellationToken::new(),
    }
}

const GATEKEEPER: &str = "127.0.0.1:9";

fn lane(port: u16) -> Lane {
    format!("192.0.2.1:{port}").parse().unwrap()
}

fn mug(n: u64) -> Mug {
    Mug::of(&n.to_be_bytes())
}

/// Event `n` of epoch 1, as a leader that planned it from `packet` wrote it.
fn event(n: u64, packet: Option<PacketId>) -> Event {
    Event {
        num: EventNum(n),
        epoch: Epoch(1),
        mug: mug(n).get(),
        data: frame::encode(format!("event {n}").as_bytes(), packet, &[]),
    }
}

/// The next notice, within a generous bound.
async fn next(runtime: &mut RuntimePort) -> Notice {
    timeout(Duration::from_secs(10), runtime.notices.recv())
        .await
        .expect("no notice within 10 s")
        .expect("the agent dropped its port")
}

/// Asserts that the agent says nothing for a while.
async fn quiet(runtime: &mut RuntimePort) {
    if let Ok(notice) = timeout(Duration::from_millis(300), runtime.notices.recv()).await {
        panic!("expected no notice, got {notice:?}");
    }
}

fn tell(runtime: &RuntimePort, command: Command) {
    runtime.commands.send(command).unwrap();
}

#[tokio::test]
async fn steps_down_when_the_lease_is_lost() {
    let Harness {
        mut agent,
        mut runtime,
        shutdown,
        ..
    } = harness(16);
    let (term, lose) = FakeTerm::new(Epoch(5));
    let script = async {
        let lead = next(&mut runtime).await;
        assert_eq!(
            lead,
            Notice::Lead {
                epoch: Epoch(5),
                next: EventNum(1)
            }
        );
        lose.send_replace(Some(LossReason::KeepAliveTimeout));
    };
    let (end, ()) = tokio::join!(agent.lead(term, &shutdown), script);
    assert_eq!(end.unwrap(), End::StepDown(StepDown::LeaseLost));
}

#[tokio::test]
async fn a_leader_that_lost_its_term_rewinds_its_runtime_and_campaigns_again() {
    let Harness {
        agent,
        mut runtime,
        election,
        shutdown,
        ..
    } = harness(16);
    let script = async {
        tell(
            &runtime,
            Command::Restored {
                last: EventNum::NONE,
            },
        );
        let lose = election.grant(Epoch(5));
        assert!(matches!(next(&mut runtime).await, Notice::Lead { .. }));
        lose.send_replace(Some(LossReason::KeyLost));
        assert_eq!(
            next(&mut runtime).await,
            Notice::Rewind {
                committed: EventNum::NONE
            }
        );
        tell(
            &runtime,
            Command::Restored {
                last: EventNum::NONE,
            },
        );
        let _lose = election.grant(Epoch(9));
        assert_eq!(
            next(&mut runtime).await,
            Notice::Lead {
                epoch: Epoch(9),
                next: EventNum(1)
            }
        );
        assert_eq!(election.campaigns(), 2);
        shutdown.cancel();
    };
    let (result, ()) = tokio::join!(agent.run(shutdown.clone()), script);
    result.unwrap();
}

#[tokio::test]
async fn steps_down_when_a_newer_leader_fenced_the_log() {
    let Harness {
        mut agent,
        mut runtime,
        inbound,
        log,
        shutdown,
        ..
    } = harness(16);
    let (term, _lose) = FakeTerm::new(Epoch(5));
    let script = async {
        assert!(matches!(next(&mut runtime).await, Notice::Lead { .. }));
        // A newer leader fences between this term's fence and its first
        // append: the log refuses the append.
        log.fence_by_another(Epoch(6));
        inbound.send(vec![(lane(1), b"p".to_vec())]).await.unwrap();
        let Notice::Packet { id, .. } = next(&mut runtime).await else {
            panic!("expected the packet");
        };
        tell(
            &runtime,
            Command::Plan {
                num: EventNum(1),
                mug: Some(mug(1)),
                data: Bytes::from_static(b"e"),
                packet: Some(id),
            },
        );
    };
    let (end, ()) = tokio::join!(agent.lead(term, &shutdown), script);
    assert_eq!(end.unwrap(), End::StepDown(StepDown::Fenced));

    // A term older than the log's fence steps down at its own fence.
    let (older, _lose) = FakeTerm::new(Epoch(4));
    let end = agent.lead(older, &shutdown).await.unwrap();
    assert_eq!(end, End::StepDown(StepDown::Fenced));
    quiet(&mut runtime).await;
}

#[tokio::test]
async fn stops_taking_packets_at_the_run_ahead_limit() {
    let Harness {
        mut agent,
        mut runtime,
        inbound,
        log,
        shutdown,
        ..
    } = harness(2);
    log.hold();
    let (term, _lose) = FakeTerm::new(Epoch(5));
    let script = async {
        assert!(matches!(next(&mut runtime).await, Notice::Lead { .. }));
        for n in 1..=2 {
            inbound.send(vec![(lane(1), vec![n as u8])]).await.unwrap();
            let Notice::Packet { id, .. } = next(&mut runtime).await else {
                panic!("expected packet {n}");
            };
            let data = Bytes::from(vec![n as u8]);
            let (num, mug, packet) = (EventNum(n), mug(n), Some(id));
            tell(
                &runtime,
                Command::Plan {
                    num,
                    mug: Some(mug),
                    data,
                    packet,
                },
            );
        }
        // Two events planned, none committed: the third packet waits.
        inbound.send(vec![(lane(1), vec![3])]).await.unwrap();
        quiet(&mut runtime).await;
        assert_eq!(log.held(), 2);

        log.release();
        assert_eq!(next(&mut runtime).await, Notice::Committed(EventNum(1)));
        assert_eq!(next(&mut runtime).await, Notice::Committed(EventNum(2)));
        match next(&mut runtime).await {
            Notice::Packet { packet, .. } => assert_eq!(packet, vec![3]),
            other => panic!("expected the third packet, got {other:?}"),
        }
        shutdown.cancel();
    };
    let (end, ()) = tokio::join!(agent.lead(term, &shutdown), script);
    assert_eq!(end.unwrap(), End::Shutdown);
}

#[tokio::test]
async fn a_replica_whose_mug_differs_stops_campaigning() {
    let Harness {
        agent,
        mut runtime,
        log,
        election,
        shutdown,
        ..
    } = harness(16);
    for n in 1..=2 {
        log.commit(event(n, None)).unwrap();
    }
    let script = async {
        tell(
            &runtime,
            Command::Restored {
                last: EventNum::NONE,
            },
        );
        for n in 1..=2 {
            let Notice::Replay { num, .. } = next(&mut runtime).await else {
                panic!("expected a replay");
            };
            assert_eq!(num, EventNum(n));
            // Event 2 leaves this ship in another state than the leader's.
            let computed = if n == 2 { Mug::of(b"other") } else { mug(n) };
            tell(
                &runtime,
                Command::Applied {
                    num,
                    mug: Some(computed),
                },
            );
        }
        // Let the agent take the answer before a term is on offer.
        sleep(Duration::from_millis(50)).await;
        assert_eq!(election.campaigns(), 1, "it campaigned while it agreed");
        let _lose = election.grant(Epoch(2));
        quiet(&mut runtime).await;
        assert!(election.unclaimed(), "a diverged replica took a term");
        assert_eq!(log.fences(), 0);
        assert_eq!(election.campaigns(), 1);
        shutdown.cancel();
    };
    let (result, ()) = tokio::join!(agent.run(shutdown.clone()), script);
    result.unwrap();
}

#[tokio::test]
async fn a_new_leader_sequences_the_packets_the_old_one_did_not_commit() {
    let Harness {
        agent,
        mut runtime,
        inbound,
        log,
        election,
        shutdown,
        ..
    } = harness(16);
    let (a, b, c) = (
        (lane(1), b"a".to_vec()),
        (lane(2), b"b".to_vec()),
        (lane(3), b"c".to_vec()),
    );
    let script = async {
        tell(
            &runtime,
            Command::Restored {
                last: EventNum::NONE,
            },
        );
        // Heard as a follower, `a` twice.
        let batch = vec![a.clone(), b.clone(), a.clone(), c.clone()];
        inbound.send(batch).await.unwrap();
        sleep(Duration::from_millis(50)).await;
        // The old leader committed `b` only.
        log.commit(event(1, Some(PacketId::of(b.0, &b.1)))).unwrap();
        let replay = next(&mut runtime).await;
        assert_eq!(
            replay,
            Notice::Replay {
                num: EventNum(1),
                data: Bytes::from_static(b"event 1"),
                recorded: Recorded::Mug(mug(1)),
            }
        );
        tell(
            &runtime,
            Command::Applied {
                num: EventNum(1),
                mug: Some(mug(1)),
            },
        );
        sleep(Duration::from_millis(50)).await;
        let _lose = election.grant(Epoch(2));
        assert_eq!(
            next(&mut runtime).await,
            Notice::Lead {
                epoch: Epoch(2),
                next: EventNum(2)
            }
        );
        for (lane, packet) in [a, c] {
            let id = PacketId::of(lane, &packet);
            assert_eq!(
                next(&mut runtime).await,
                Notice::Packet { lane, packet, id }
            );
        }
        quiet(&mut runtime).await;
        shutdown.cancel();
    };
    let (result, ()) = tokio::join!(agent.run(shutdown.clone()), script);
    result.unwrap();
}

#[tokio::test]
async fn a_replica_behind_replays_the_log_before_it_leads() {
    let Harness {
        mut agent,
        mut runtime,
        log,
        sink,
        shutdown,
        ..
    } = harness(16);
    for n in 1..=3 {
        log.commit(event(n, None)).unwrap();
    }
    let (term, _lose) = FakeTerm::new(Epoch(4));
    let resigned = term.resigned.clone();
    let script = async {
        for n in 1..=3 {
            let replay = next(&mut runtime).await;
            let data = Bytes::from(format!("event {n}"));
            assert_eq!(
                replay,
                Notice::Replay {
                    num: EventNum(n),
                    data,
                    recorded: Recorded::Mug(mug(n)),
                }
            );
            let (num, mug) = (EventNum(n), mug(n));
            tell(
                &runtime,
                Command::Applied {
                    num,
                    mug: Some(mug),
                },
            );
        }
        assert_eq!(
            next(&mut runtime).await,
            Notice::Lead {
                epoch: Epoch(4),
                next: EventNum(4)
            }
        );
        // Its own event's effect goes to the gatekeeper, sealed for this
        // term, and so does a packet from the state as of a replayed event
        // (a scry answer); one from a state it does not have is dropped.
        let (num, mug, data) = (EventNum(4), mug(4), Bytes::from_static(b"e"));
        tell(
            &runtime,
            Command::Plan {
                num,
                mug: Some(mug),
                data,
                packet: None,
            },
        );
        for num in [EventNum(2), EventNum(4), EventNum(5), EventNum::NONE] {
            let (lane, payload) = (lane(7), b"effect".to_vec());
            tell(&runtime, Command::Send { num, lane, payload });
        }
        assert_eq!(next(&mut runtime).await, Notice::Committed(EventNum(4)));
        shutdown.cancel();
    };
    let (end, ()) = tokio::join!(agent.lead(term, &shutdown), script);
    assert_eq!(end.unwrap(), End::Shutdown);
    assert!(resigned.load(Ordering::SeqCst));
    assert_eq!(log.fences(), 1);

    let sent = sink.take();
    assert_eq!(sent.len(), 2, "{sent:?}");
    let mut keys = Keyring::new();
    keys.insert(ReplicaId::new(1).unwrap(), Key::from_bytes([1; 32]));
    let opened: Vec<_> = sent
        .iter()
        .map(|(to, datagram)| {
            assert_eq!(*to, GATEKEEPER.parse().unwrap());
            let e = leadership::envelope::open(datagram, &keys).unwrap();
            (e.epoch, e.event, e.seq, e.payload.to_vec())
        })
        .collect();
    assert_eq!(
        opened,
        [
            (Epoch(4), EventNum(2), 1, b"effect".to_vec()),
            (Epoch(4), EventNum(4), 2, b"effect".to_vec())
        ]
    );
}

/// Event `n` written by the leader of `epoch`, with `mug` recorded.
fn event_by(n: u64, epoch: u64, mug: Mug) -> Event {
    Event {
        num: EventNum(n),
        epoch: Epoch(epoch),
        mug: mug.get(),
        data: frame::encode(format!("event {n}").as_bytes(), None, &[]),
    }
}

/// Plays the runtime for replays: answers each with `computed(n)`.
async fn answer_replays(
    runtime: &mut RuntimePort,
    nums: std::ops::RangeInclusive<u64>,
    computed: impl Fn(u64) -> Mug,
) {
    for n in nums {
        match next(runtime).await {
            Notice::Replay { num, .. } => {
                assert_eq!(num, EventNum(n));
                tell(
                    runtime,
                    Command::Applied {
                        num,
                        mug: Some(computed(n)),
                    },
                );
            }
            other => panic!("expected the replay of {n}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_follower_that_jumps_to_a_checkpoint_forgets_its_buffered_packets() {
    let Harness {
        agent,
        mut runtime,
        inbound,
        log,
        election,
        shutdown,
        ..
    } = harness(16);
    let script = async {
        tell(
            &runtime,
            Command::Restored {
                last: EventNum::NONE,
            },
        );
        // Packets the edge box copied to this follower, which the leader
        // sequences as events 1 and 2...
        inbound
            .send(vec![(lane(1), b"a".to_vec()), (lane(1), b"b".to_vec())])
            .await
            .unwrap();
        quiet(&mut runtime).await;
        // ...which this follower never reads: they are purged before it
        // gets there, and its runtime takes a peer's checkpoint at event 2.
        log.state().purged_below = EventNum(3);
        for n in 1..=2 {
            log.commit(event(n, None)).unwrap();
        }
        match next(&mut runtime).await {
            Notice::Purged { first_available } => assert_eq!(first_available, EventNum(3)),
            other => panic!("expected Purged, got {other:?}"),
        }
        tell(&runtime, Command::Restored { last: EventNum(2) });
        quiet(&mut runtime).await;
        // Leading now, it must not sequence "a" and "b" a second time.
        let _lose = election.grant(Epoch(2));
        assert!(matches!(next(&mut runtime).await, Notice::Lead { .. }));
        quiet(&mut runtime).await;
        shutdown.cancel();
    };
    let (result, ()) = tokio::join!(agent.run(shutdown.clone()), script);
    result.unwrap();
}

#[tokio::test]
async fn a_replica_does_not_lead_before_its_mugs_are_checked() {
    let Harness {
        agent,
        mut runtime,
        log,
        election,
        shutdown,
        ..
    } = harness(16);
    log.commit(event(1, None)).unwrap();
    let script = async {
        tell(
            &runtime,
            Command::Restored {
                last: EventNum::NONE,
            },
        );
        assert!(matches!(next(&mut runtime).await, Notice::Replay { .. }));
        // The runtime has not answered event 1 yet when the term comes.
        let _lose = election.grant(Epoch(2));
        quiet(&mut runtime).await;
        // Its state differs from the one the log recorded.
        let (num, mug) = (EventNum(1), Mug::of(b"other"));
        tell(
            &runtime,
            Command::Applied {
                num,
                mug: Some(mug),
            },
        );
        quiet(&mut runtime).await;
        assert!(!election.unclaimed(), "it never campaigned");
        shutdown.cancel();
    };
    let (result, ()) = tokio::join!(agent.run(shutdown.clone()), script);
    result.unwrap();
}

#[tokio::test]
async fn a_healthy_follower_leads_once_a_diverged_leader_is_gone() {
    let ttl = Duration::from_millis(300);
    let Harness {
        agent,
        mut runtime,
        log,
        election,
        shutdown,
        ..
    } = harness_with(16, ttl);
    // Epoch 2's leader was not deterministic: the mugs it recorded for
    // events 2 and 3 are not what a healthy ship computes.
    log.commit(event_by(1, 1, mug(1))).unwrap();
    for n in 2..=3 {
        log.commit(event_by(n, 2, mug(n))).unwrap();
    }
    election.set_leader(Some(Epoch(2)));
    let script = async {
        tell(
            &runtime,
            Command::Restored {
                last: EventNum::NONE,
            },
        );
        let healthy = |n| {
            if n == 1 {
                mug(1)
            } else {
                Mug::of(format!("healthy {n}").as_bytes())
            }
        };
        answer_replays(&mut runtime, 1..=3, healthy).await;
        // Let the agent take the answers before a term is on offer.
        sleep(Duration::from_millis(50)).await;
        // While epoch 2's leader holds the key, this replica stays out.
        let _lose = election.grant(Epoch(4));
        sleep(ttl * 4).await;
        assert!(
            election.unclaimed(),
            "it campaigned against the leader it contradicted"
        );
        // That leader dies, and nobody else takes over: this one does.
        election.set_leader(None);
        assert_eq!(
            next(&mut runtime).await,
            Notice::Lead {
                epoch: Epoch(4),
                next: EventNum(4)
            }
        );
        let (num, mug, data) = (EventNum(4), mug(4), Bytes::from_static(b"e"));
        tell(
            &runtime,
            Command::Plan {
                num,
                mug: Some(mug),
                data,
                packet: None,
            },
        );
        assert_eq!(next(&mut runtime).await, Notice::Committed(EventNum(4)));
        shutdown.cancel();
    };
    let (result, ()) = tokio::join!(agent.run(shutdown.clone()), script);
    result.unwrap();
    assert_eq!(log.state().events[3].epoch, Epoch(4));
}

#[tokio::test]
async fn agreeing_with_a_later_leader_clears_a_mismatch() {
    let Harness {
        agent,
        mut runtime,
        log,
        election,
        shutdown,
        ..
    } = harness(16);
    // Epoch 2's leader recorded a mug nobody else computes; epoch 3's
    // leader computed what this replica computes.
    log.commit(event_by(1, 2, Mug::of(b"broken"))).unwrap();
    log.commit(event_by(2, 3, mug(2))).unwrap();
    election.set_leader(Some(Epoch(3)));
    let script = async {
        tell(
            &runtime,
            Command::Restored {
                last: EventNum::NONE,
            },
        );
        answer_replays(&mut runtime, 1..=2, mug).await;
        let _lose = election.grant(Epoch(5));
        assert_eq!(
            next(&mut runtime).await,
            Notice::Lead {
                epoch: Epoch(5),
                next: EventNum(3)
            }
        );
        shutdown.cancel();
    };
    let (result, ()) = tokio::join!(agent.run(shutdown.clone()), script);
    result.unwrap();
}

#[tokio::test]
async fn a_replica_that_contradicts_two_leaders_never_campaigns_again() {
    let ttl = Duration::from_millis(300);
    let Harness {
        agent,
        mut runtime,
        log,
        election,
        shutdown,
        ..
    } = harness_with(16, ttl);
    log.commit(event_by(1, 2, mug(1))).unwrap();
    log.commit(event_by(2, 3, mug(2))).unwrap();
    let script = async {
        tell(
            &runtime,
            Command::Restored {
                last: EventNum::NONE,
            },
        );
        answer_replays(&mut runtime, 1..=2, |n| {
            Mug::of(format!("mine {n}").as_bytes())
        })
        .await;
        sleep(Duration::from_millis(50)).await;
        let _lose = election.grant(Epoch(5));
        sleep(ttl * 5).await;
        assert!(
            election.unclaimed(),
            "a replica two leaders contradicted took a term"
        );
        assert_eq!(log.fences(), 0);
        shutdown.cancel();
    };
    let (result, ()) = tokio::join!(agent.run(shutdown.clone()), script);
    result.unwrap();
}

#[tokio::test]
async fn promotion_gives_up_after_a_ttl_when_the_fence_hangs() {
    let ttl = Duration::from_millis(300);
    let Harness {
        mut agent,
        shutdown,
        log,
        ..
    } = harness_with(16, ttl);
    log.state().hang_fences = true;
    let (term, _lose) = FakeTerm::new(Epoch(5));
    let resigned = term.resigned.clone();
    let end = timeout(ttl * 10, agent.lead(term, &shutdown))
        .await
        .expect("the promotion outlived its TTL");
    assert_eq!(end.unwrap(), End::StepDown(StepDown::PromotionStalled));
    assert!(
        resigned.load(Ordering::SeqCst),
        "the term was not handed back"
    );
}

#[tokio::test]
async fn catching_up_stops_when_the_lease_is_lost() {
    let Harness {
        mut agent,
        shutdown,
        log,
        ..
    } = harness(16);
    for n in 1..=2 {
        log.commit(event(n, None)).unwrap();
    }
    log.state().hang_reads = true;
    let (term, lose) = FakeTerm::new(Epoch(5));
    let script = async {
        sleep(Duration::from_millis(100)).await;
        lose.send_replace(Some(LossReason::KeepAliveTimeout));
    };
    let (end, ()) = tokio::join!(
        timeout(Duration::from_secs(5), agent.lead(term, &shutdown)),
        script
    );
    let end = end.expect("catching up ignored the lost lease");
    assert_eq!(end.unwrap(), End::StepDown(StepDown::LeaseLost));
}

#[tokio::test]
async fn catching_up_gives_up_after_a_ttl() {
    let ttl = Duration::from_millis(300);
    let Harness {
        mut agent,
        shutdown,
        log,
        ..
    } = harness_with(16, ttl);
    for n in 1..=2 {
        log.commit(event(n, None)).unwrap();
    }
    log.state().hang_reads = true;
    let (term, _lose) = FakeTerm::new(Epoch(5));
    let end = timeout(ttl * 10, agent.lead(term, &shutdown))
        .await
        .expect("catching up outlived the TTL");
    assert_eq!(end.unwrap(), End::StepDown(StepDown::PromotionStalled));
}

#[tokio::test]
async fn a_leader_steps_down_when_its_appends_stop_committing() {
    let ttl = Duration::from_millis(300);
    let Harness {
        mut agent,
        mut runtime,
        log,
        shutdown,
        ..
    } = harness_with(16, ttl);
    log.hold();
    let (term, _lose) = FakeTerm::new(Epoch(5));
    let script = async {
        assert!(matches!(next(&mut runtime).await, Notice::Lead { .. }));
        let (num, mug, data) = (EventNum(1), mug(1), Bytes::from_static(b"e"));
        tell(
            &runtime,
            Command::Plan {
                num,
                mug: Some(mug),
                data,
                packet: None,
            },
        );
    };
    let (end, ()) = tokio::join!(timeout(ttl * 10, agent.lead(term, &shutdown)), script);
    let end = end.expect("a stalled leader kept its term");
    assert_eq!(end.unwrap(), End::StepDown(StepDown::CommitStalled));
}

#[tokio::test]
async fn a_failing_fence_backs_off_instead_of_campaigning_in_a_loop() {
    let Harness {
        agent,
        mut runtime,
        log,
        election,
        shutdown,
        ..
    } = harness(16);
    log.state().fence_error = Some(AppendError::Refused(
        "epoch regressed: etcd's history went back".into(),
    ));
    election.win_always(Epoch(10));
    let script = async {
        tell(
            &runtime,
            Command::Restored {
                last: EventNum::NONE,
            },
        );
        let until = tokio::time::Instant::now() + Duration::from_secs(1);
        loop {
            tokio::select! {
                notice = runtime.notices.recv() => match notice {
                    Some(Notice::Rewind { .. }) => tell(&runtime, Command::Restored { last: EventNum::NONE }),
                    Some(other) => panic!("unexpected {other:?}"),
                    None => break,
                },
                _ = tokio::time::sleep_until(until) => break,
            }
        }
        let campaigns = election.campaigns();
        assert!(campaigns <= 6, "{campaigns} campaigns in a second");
        shutdown.cancel();
    };
    let (result, ()) = tokio::join!(agent.run(shutdown.clone()), script);
    result.unwrap();
}

/// A STUN binding response, as vere's `_stun_on_request` sends one.
fn stun_response() -> Vec<u8> {
    ames::Stun::binding_response([7; 12], "198.51.100.7:4000".parse().unwrap())
}

/// An Ames packet between two ships, relayed (with an origin) or not.
fn ames_packet(relayed: bool) -> Vec<u8> {
    let mut prelude = ames::Prelude::new(ames::Ship::new(0x100), ames::Ship::new(0x200));
    if relayed {
        prelude.origin = Some("198.51.100.7:4000".parse().unwrap());
    }
    ames::Packet {
        prelude,
        body: ames::Body::Ames(b"hi".to_vec()),
    }
    .to_bytes()
}

#[tokio::test]
async fn the_boot_sequence_is_planned_without_mugs_and_only_from_event_1() {
    let Harness {
        mut agent,
        mut runtime,
        log,
        shutdown,
        ..
    } = harness(16);
    let (term, _lose) = FakeTerm::new(Epoch(3));
    let script = async {
        assert!(matches!(
            next(&mut runtime).await,
            Notice::Lead {
                next: EventNum(1),
                ..
            }
        ));
        for n in 1..=3 {
            let data = Bytes::from(format!("formula {n}"));
            let (num, mug, packet) = (EventNum(n), None, None);
            tell(
                &runtime,
                Command::Plan {
                    num,
                    mug,
                    data,
                    packet,
                },
            );
        }
        let data = Bytes::from_static(b"first real event");
        let (num, mug, packet) = (EventNum(4), Some(mug(4)), None);
        tell(
            &runtime,
            Command::Plan {
                num,
                mug,
                data,
                packet,
            },
        );
        for n in 1..=4 {
            assert_eq!(next(&mut runtime).await, Notice::Committed(EventNum(n)));
        }
        // Once the ship has a mug, a mugless plan is a broken runtime.
        let data = Bytes::from_static(b"late formula");
        let (num, mug, packet) = (EventNum(5), None, None);
        tell(
            &runtime,
            Command::Plan {
                num,
                mug,
                data,
                packet,
            },
        );
    };
    let (end, ()) = tokio::join!(agent.lead(term, &shutdown), script);
    assert!(
        matches!(end, Err(AgentError::BootOutOfPlace { num: EventNum(5) })),
        "{end:?}"
    );
    let mugs: Vec<u32> = log.state().events.iter().map(|e| e.mug).collect();
    assert_eq!(mugs, [0, 0, 0, mug(4).get()]);
}

#[tokio::test]
async fn a_leader_after_event_1_may_not_plan_a_boot_event() {
    let Harness {
        mut agent,
        mut runtime,
        log,
        shutdown,
        ..
    } = harness(16);
    log.commit(event(1, None)).unwrap();
    agent.runtime_last = EventNum(1);
    let (term, _lose) = FakeTerm::new(Epoch(3));
    let script = async {
        assert!(matches!(
            next(&mut runtime).await,
            Notice::Lead {
                next: EventNum(2),
                ..
            }
        ));
        let (num, mug, data, packet) = (EventNum(2), None, Bytes::new(), None);
        tell(
            &runtime,
            Command::Plan {
                num,
                mug,
                data,
                packet,
            },
        );
    };
    let (end, ()) = tokio::join!(agent.lead(term, &shutdown), script);
    assert!(
        matches!(end, Err(AgentError::BootOutOfPlace { num: EventNum(2) })),
        "{end:?}"
    );
}

#[tokio::test]
async fn boot_events_replay_with_no_mug_to_check() {
    let Harness {
        agent,
        mut runtime,
        log,
        election,
        shutdown,
        ..
    } = harness(16);
    for n in 1..=2 {
        let mut boot = event(n, None);
        boot.mug = 0;
        log.commit(boot).unwrap();
    }
    log.commit(event(3, None)).unwrap();
    let script = async {
        let last = EventNum::NONE;
        tell(&runtime, Command::Restored { last });
        for n in 1..=3 {
            let Notice::Replay { num, recorded, .. } = next(&mut runtime).await else {
                panic!("expected replay {n}");
            };
            let expected = if n < 3 {
                Recorded::Boot
            } else {
                Recorded::Mug(mug(3))
            };
            assert_eq!((num, recorded), (EventNum(n), expected));
        }
        // Boot events answered without a mug, or with any mug: neither is
        // a mismatch. Event 3's mug is checked as ever.
        tell(
            &runtime,
            Command::Applied {
                num: EventNum(1),
                mug: None,
            },
        );
        let (num, answer) = (EventNum(2), Some(Mug::of(b"anything")));
        tell(&runtime, Command::Applied { num, mug: answer });
        let (num, computed) = (EventNum(3), Some(mug(3)));
        tell(&runtime, Command::Applied { num, mug: computed });
        sleep(Duration::from_millis(50)).await;
        let _lose = election.grant(Epoch(2));
        assert_eq!(
            next(&mut runtime).await,
            Notice::Lead {
                epoch: Epoch(2),
                next: EventNum(4)
            }
        );
        shutdown.cancel();
    };
    let (result, ()) = tokio::join!(agent.run(shutdown.clone()), script);
    result.unwrap();
}

#[tokio::test]
async fn stateless_packets_leave_as_event_0_only_if_they_reveal_no_state() {
    let Harness {
        mut agent,
        mut runtime,
        sink,
        shutdown,
        ..
    } = harness(16);
    let (term, _lose) = FakeTerm::new(Epoch(3));
    let script = async {
        assert!(matches!(next(&mut runtime).await, Notice::Lead { .. }));
        let sends = [
            (Stateless::Stun, stun_response()),
            (Stateless::Forward, ames_packet(true)),
            // The ship's own packet, or a kind other than claimed: refused.
            (Stateless::Forward, ames_packet(false)),
            (Stateless::Stun, ames_packet(true)),
            (Stateless::Forward, b"junk".to_vec()),
        ];
        for (kind, payload) in sends {
            let lane = lane(7);
            tell(
                &runtime,
                Command::SendStateless {
                    kind,
                    lane,
                    payload,
                },
            );
        }
        quiet(&mut runtime).await;
        shutdown.cancel();
    };
    let (end, ()) = tokio::join!(agent.lead(term, &shutdown), script);
    assert_eq!(end.unwrap(), End::Shutdown);
    let mut keys = Keyring::new();
    keys.insert(ReplicaId::new(1).unwrap(), Key::from_bytes([1; 32]));
    let sent: Vec<_> = sink
        .take()
        .iter()
        .map(|(_, d)| {
            let e = leadership::envelope::open(d, &keys).unwrap();
            (e.event, e.payload.to_vec())
        })
        .collect();
    assert_eq!(
        sent,
        [
            (EventNum::NONE, stun_response()),
            (EventNum::NONE, ames_packet(true))
        ]
    );
}

#[tokio::test]
async fn the_stateless_rate_is_bounded_per_term_and_spent_only_on_packets_that_leave() {
    let Harness {
        mut agent,
        mut runtime,
        sink,
        shutdown,
        ..
    } = harness(16);
    agent.settings.stateless_rate = 5;
    let (term, _lose) = FakeTerm::new(Epoch(3));
    let script = async {
        assert!(matches!(next(&mut runtime).await, Notice::Lead { .. }));
        // Refused packets first: they must not spend the rate.
        let refused = (0..50).map(|_| (Stateless::Forward, ames_packet(false)));
        let allowed = (0..50).map(|_| (Stateless::Stun, stun_response()));
        for (kind, payload) in refused.chain(allowed) {
            let lane = lane(7);
            tell(
                &runtime,
                Command::SendStateless {
                    kind,
                    lane,
                    payload,
                },
            );
        }
        quiet(&mut runtime).await;
        shutdown.cancel();
    };
    let (end, ()) = tokio::join!(agent.lead(term, &shutdown), script);
    assert_eq!(end.unwrap(), End::Shutdown);
    // A burst of a second's worth, and what 300 ms more allow.
    let sent = sink.take().len();
    assert!((5..=7).contains(&sent), "{sent} sent");
}

#[tokio::test]
async fn a_packet_the_leaders_runtime_dropped_is_not_kept_by_followers() {
    let Harness {
        mut agent,
        mut runtime,
        inbound,
        log,
        shutdown,
        ..
    } = harness(16);
    let (term, _lose) = FakeTerm::new(Epoch(3));
    let dropped = PacketId::of(lane(1), b"over the cap");
    let script = async {
        assert!(matches!(next(&mut runtime).await, Notice::Lead { .. }));
        tell(&runtime, Command::Dropped(dropped));
        inbound
            .send(vec![(lane(2), b"kept".to_vec())])
            .await
            .unwrap();
        let Notice::Packet { id, .. } = next(&mut runtime).await else {
            panic!("expected the packet");
        };
        let (num, mug, data) = (EventNum(1), Some(mug(1)), Bytes::from_static(b"e"));
        tell(
            &runtime,
            Command::Plan {
                num,
                mug,
                data,
                packet: Some(id),
            },
        );
        assert_eq!(next(&mut runtime).await, Notice::Committed(EventNum(1)));
        shutdown.cancel();
    };
    let (end, ()) = tokio::join!(agent.lead(term, &shutdown), script);
    assert_eq!(end.unwrap(), End::Shutdown);
    let written = log.state().events[0].data.clone();
    let framed = frame::decode(&written).unwrap();
    assert_eq!(framed.dropped, [dropped]);
    assert_eq!(framed.data, Bytes::from_static(b"e"));

    // A follower that holds the dropped packet forgets it on replay.
    let Harness {
        agent: mut follower,
        runtime: mut follower_runtime,
        ..
    } = harness(16);
    follower.buffer.insert(lane(1), b"over the cap");
    let event = log.state().events[0].clone();
    let (replayed, notice) = tokio::join!(follower.replay(event), next(&mut follower_runtime));
    replayed.unwrap();
    assert!(matches!(notice, Notice::Replay { .. }));
    assert!(follower.buffer.is_empty(), "the dropped packet is gone");
}

#[tokio::test]
async fn a_rewind_says_how_far_the_log_is_known_committed() {
    let Harness {
        agent,
        mut runtime,
        log,
        election,
        shutdown,
        ..
    } = harness(16);
    log.commit(event(1, None)).unwrap();
    let script = async {
        let last = EventNum::NONE;
        tell(&runtime, Command::Restored { last });
        assert!(matches!(next(&mut runtime).await, Notice::Replay { .. }));
        let (num, answer) = (EventNum(1), Some(mug(1)));
        tell(&runtime, Command::Applied { num, mug: answer });
        sleep(Duration::from_millis(50)).await;
        let lose = election.grant(Epoch(5));
        assert!(matches!(
            next(&mut runtime).await,
            Notice::Lead {
                next: EventNum(2),
                ..
            }
        ));
        log.hold();
        // Event 2 commits, event 3 is planned but never commits.
        for n in 2..=3 {
            let (num, computed, data) = (EventNum(n), Some(mug(n)), Bytes::from_static(b"e"));
            tell(
                &runtime,
                Command::Plan {
                    num,
                    mug: computed,
                    data,
                    packet: None,
                },
            );
        }
        sleep(Duration::from_millis(50)).await;
        log.release_one();
        assert_eq!(next(&mut runtime).await, Notice::Committed(EventNum(2)));
        lose.send_replace(Some(LossReason::KeyLost));
        assert_eq!(
            next(&mut runtime).await,
            Notice::Rewind {
                committed: EventNum(2)
            }
        );
        shutdown.cancel();
    };
    let (result, ()) = tokio::join!(agent.run(shutdown.clone()), script);
    result.unwrap();
}
