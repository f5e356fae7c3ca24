//! The agent's side of a replica: who leads, what is committed, what the
//! buffer keeps, where effects go. It follows the committed log, campaigns,
//! leads, steps down, and follows again (docs/SPEC.md §2, §4.4, §6), while
//! a runtime computes the ship (see [`crate::port`]).

mod follow;
mod lead;
pub mod ports;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use ames::{Lane, Mug};
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use config::{Key, ReplicaId};
use eventlog_client::Event;
use leadership::{Epoch, EventNum};
use metrics::{counter, gauge};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::buffer::PacketBuffer;
use crate::frame;
use crate::metrics as m;
use crate::port::{AgentPort, Command, Notice, Recorded};

pub use lead::StepDown;
use ports::{EffectSink, Elector, EventLog};

/// What an agent needs to know of its cluster.
#[derive(Debug, Clone)]
pub struct Settings {
    pub id: ReplicaId,
    /// The etcd lease TTL: also how long a leader waits for a commit before
    /// it steps down.
    pub ttl: Duration,
    pub max_run_ahead: u64,
    pub buffer_packets: usize,
    /// Most bytes of packets a follower keeps for a promotion.
    pub buffer_bytes: usize,
    /// Where effect envelopes go (`gatekeeper.listen`).
    pub gatekeeper: SocketAddr,
    /// Most stateless packets (STUN answers, forwarding) a second the
    /// leader passes on (`gatekeeper.stateless_rate`).
    pub stateless_rate: u32,
}

/// Inbound packets, a batch at a time, from the agent's Ames socket.
pub type Inbound = mpsc::Receiver<Vec<(Lane, Vec<u8>)>>;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the event log skipped from event {last} to {got}")]
    Gap { last: EventNum, got: EventNum },
    #[error("the runtime stopped")]
    RuntimeGone,
    #[error("the runtime planned event {got} where {expected} was next")]
    OutOfOrderPlan { expected: EventNum, got: EventNum },
    #[error(
        "the runtime planned event {num} without a mug, but only the boot sequence (from event 1, before any other event) may"
    )]
    BootOutOfPlace { num: EventNum },
    #[error("cannot send effects to the gatekeeper: {0}")]
    Effects(#[source] std::io::Error),
}

/// Delays before campaigning again after terms that committed nothing
/// (a fence the log refuses, say, because etcd's history went back): from
/// 250 ms doubling to 5 s, jittered, so that a failing promotion is retried
/// without spinning through etcd and the log.
const CAMPAIGN_RETRY: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_millis(250))
    .with_max_delay(Duration::from_secs(5))
    .with_factor(2.0)
    .with_jitter()
    .without_max_times();

/// What the determinism check found: the runtime's mugs against those the
/// log recorded, and whose they were (docs/SPEC.md §6.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Every mug checked matched, or a mismatch was cleared by matching a
    /// later leader's.
    Agrees,
    /// The runtime contradicted the mugs recorded in epoch `0`, and no
    /// other epoch's: that leader's ship or this one is not deterministic.
    /// Campaigns only once nobody has led for a TTL.
    Contradicts(Epoch),
    /// The runtime contradicted two leaders: it is the odd one out, and
    /// never campaigns again until an operator restores it.
    Diverged,
}

/// The parts an agent runs with: by default the real event log, etcd
/// election and effects socket; any [`ports`] implementations otherwise.
pub struct Parts<L = eventlog_client::Client, E = leadership::Election, S = udp::BatchSocket> {
    pub settings: Settings,
    pub log: L,
    pub election: E,
    /// This replica's effect-signing key.
    pub key: Key,
    pub inbound: Inbound,
    pub effects: S,
    pub port: AgentPort,
}

/// One replica's agent.
pub struct Agent<L = eventlog_client::Client, E = leadership::Election, S = udp::BatchSocket> {
    settings: Settings,
    log: L,
    election: E,
    key: Key,
    inbound: Inbound,
    effects: S,
    port: AgentPort,
    buffer: PacketBuffer,
    /// The last event the runtime has (replayed to it, or planned by it).
    runtime_last: EventNum,
    /// The mugs the log recorded for replays the runtime has not answered,
    /// with the epoch that wrote each.
    pending: VecDeque<(EventNum, Epoch, Recorded)>,
    /// The last event this agent knows is committed: replayed, or reported
    /// committed while leading. A rewinding runtime keeps its local log up
    /// to here.
    committed: EventNum,
    watermark: watch::Sender<EventNum>,
    verdict: Verdict,
    /// Whether the runtime was told to lead in the last term (so that its
    /// state may hold events the log never will).
    runtime_led: bool,
    /// Whether the last term committed an event of its own.
    term_committed: bool,
}

impl<L: EventLog, E: Elector, S: EffectSink> Agent<L, E, S> {
    pub fn new(parts: Parts<L, E, S>) -> Self {
        let Parts {
            settings,
            log,
            election,
            key,
            inbound,
            effects,
            port,
        } = parts;
        Agent {
            buffer: PacketBuffer::new(settings.buffer_packets, settings.buffer_bytes),
            settings,
            log,
            election,
            key,
            inbound,
            effects,
            port,
            runtime_last: EventNum::NONE,
            pending: VecDeque::new(),
            committed: EventNum::NONE,
            watermark: watch::channel(EventNum::NONE).0,
            verdict: Verdict::Agrees,
            runtime_led: false,
            term_committed: false,
        }
    }

    /// Runs until `shutdown` is cancelled (a leader resigns first), the
    /// runtime stops, or the log breaks its promises.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), AgentError> {
        m::register();
        self.report_watermarks(shutdown.clone());
        let Some(last) = self.restored(&shutdown).await? else {
            return Ok(());
        };
        self.runtime_last = last;
        let mut retries: ExponentialBackoff = CAMPAIGN_RETRY.build();
        let mut wait = Duration::ZERO;
        loop {
            let Some(leadership) = self.follow(wait, &shutdown).await? else {
                return Ok(());
            };
            match self.lead(leadership, &shutdown).await? {
                lead::End::Shutdown => return Ok(()),
                lead::End::StepDown(reason) => {
                    counter!(m::STEP_DOWNS, "reason" => reason.label()).increment(1);
                    gauge!(m::LEADER).set(0.0);
                    // A term that got nothing done is retried after a
                    // growing delay: whatever failed it may fail the next.
                    wait = if self.term_committed {
                        retries = CAMPAIGN_RETRY.build();
                        Duration::ZERO
                    } else {
                        retries.next().unwrap_or(Duration::from_secs(5))
                    };
                    if !self.runtime_led {
                        // The runtime holds only committed events.
                        tracing::warn!(%reason, campaign_in = ?wait, "stepped down before leading");
                        continue;
                    }
                    tracing::warn!(
                        %reason,
                        campaign_in = ?wait,
                        "stepped down; the runtime goes back to its checkpoint"
                    );
                    self.runtime_led = false;
                    let committed = self.committed.min(self.runtime_last);
                    self.notify(Notice::Rewind { committed }).await?;
                    let Some(last) = self.restored(&shutdown).await? else {
                        return Ok(());
                    };
                    self.runtime_last = last;
                }
            }
        }
    }

    async fn notify(&self, notice: Notice) -> Result<(), AgentError> {
        self.port
            .notices
            .send(notice)
            .await
            .map_err(|_| AgentError::RuntimeGone)
    }

    /// Waits for the runtime to say where its state is, handling whatever
    /// else it says meanwhile. `None` if shut down first.
    async fn restored(
        &mut self,
        shutdown: &CancellationToken,
    ) -> Result<Option<EventNum>, AgentError> {
        loop {
            let command = tokio::select! {
                c = self.port.commands.recv() => match c {
                    Some(c) => c,
                    // The runtime may stop along with the agent.
                    None if shutdown.is_cancelled() => return Ok(None),
                    None => return Err(AgentError::RuntimeGone),
                },
                _ = shutdown.cancelled() => return Ok(None),
            };
            match command {
                Command::Restored { last } => {
                    // Replays before the rewind no longer count.
                    self.pending.clear();
                    gauge!(m::APPLIED).set(last.get() as f64);
                    tracing::info!(%last, "runtime restored");
                    return Ok(Some(last));
                }
                other => self.on_command(other),
            }
        }
    }

    /// The runtime took a peer's checkpoint at `last`, past events this
    /// replica never read: which buffered packets those events held cannot
    /// be told, so none may be sequenced again. Dropping them loses at most
    /// what no leader sequenced yet, which Ames retransmits; keeping them
    /// answered requests twice (found by the nemesis).
    fn forget_buffer(&mut self, last: EventNum) {
        let dropped = self.buffer.drain().len();
        gauge!(m::BUFFERED).set(0.0);
        if dropped > 0 {
            tracing::warn!(dropped, %last, "jumped to a checkpoint past unread events: forgot the packets buffered before it");
        }
    }

    /// Sends a committed event to the runtime, noting its mug for the check.
    async fn replay(&mut self, event: Event) -> Result<(), AgentError> {
        if event.num <= self.runtime_last {
            return Ok(());
        }
        if event.num != self.runtime_last.next() {
            return Err(AgentError::Gap {
                last: self.runtime_last,
                got: event.num,
            });
        }
        let (num, epoch, recorded) = (event.num, event.epoch, Recorded::of_stored(event.mug));
        let data = match frame::decode(&event.data) {
            Some(framed) => {
                if let Some(id) = framed.packet {
                    self.buffer.remove(id);
                }
                for id in &framed.dropped {
                    self.buffer.remove(*id);
                }
                counter!(m::RUNTIME_DROPPED).increment(framed.dropped.len() as u64);
                gauge!(m::BUFFERED).set(self.buffer.len() as f64);
                framed.data
            }
            None => {
                tracing::warn!(event = %event.num, "an event no agent framed; passing it on as it is");
                event.data.clone()
            }
        };
        self.notify(Notice::Replay {
            num,
            data,
            recorded,
        })
        .await?;
        // Noted once sent: a replay abandoned half-way is not awaited.
        self.pending.push_back((num, epoch, recorded));
        self.runtime_last = num;
        self.committed = self.committed.max(num);
        counter!(m::REPLAYED).increment(1);
        gauge!(m::COMMITTED).set(num.get() as f64);
        Ok(())
    }

    /// What any role does with the runtime's answers; plans and effects
    /// outside a term are stale and dropped.
    fn on_command(&mut self, command: Command) {
        match command {
            Command::Applied { num, mug } => self.check(num, mug),
            Command::Checkpointed(num) => {
                self.watermark.send_if_modified(|w| {
                    let newer = num > *w;
                    *w = (*w).max(num);
                    newer
                });
            }
            Command::Plan { num, .. } | Command::Send { num, .. } => {
                tracing::debug!(event = %num, "dropping a plan or effect from outside a term");
            }
            Command::SendStateless { .. } | Command::Dropped(_) => {
                tracing::debug!("dropping a stateless packet or a drop notice from outside a term");
            }
            Command::Restored { last } => {
                tracing::warn!(%last, "the runtime restored itself unasked");
                self.runtime_last = last;
                self.pending.clear();
            }
        }
    }

    /// The determinism check: the runtime's mug after a replayed event must
    /// be the one the leader of its epoch recorded. A mismatch is held
    /// against that leader or this replica, whichever later leaders side
    /// with (docs/SPEC.md §6.3.2).
    fn check(&mut self, num: EventNum, mug: Option<Mug>) {
        while let Some(&(pending, epoch, recorded)) = self.pending.front() {
            if pending > num {
                break;
            }
            self.pending.pop_front();
            if pending < num {
                continue;
            }
            gauge!(m::APPLIED).set(num.get() as f64);
            let computed = match (recorded, mug) {
                // The boot sequence has no mug until all of it is applied:
                // nothing to compare.
                (Recorded::Boot, _) => continue,
                (_, Some(mug)) => mug,
                (Recorded::Mug(_) | Recorded::Unreadable(_), None) => {
                    counter!(m::MISMATCHES).increment(1);
                    tracing::error!(event = %num, "the runtime answered a replay with no mug, but the event is not a boot event");
                    self.verdict = Verdict::Diverged;
                    gauge!(m::DIVERGED).set(1.0);
                    continue;
                }
            };
            let mug = computed;
            let verdict = if recorded == Recorded::Mug(mug) {
                match self.verdict {
                    Verdict::Contradicts(wrong) if epoch > wrong => {
                        tracing::warn!(
                            event = %num,
                            %epoch,
                            contradicted = %wrong,
                            "this replica computes what a later leader computed: the mugs epoch \
                             {wrong} recorded were its leader's fault; campaigning again"
                        );
                        Verdict::Agrees
                    }
                    v => v,
                }
            } else {
                counter!(m::MISMATCHES).increment(1);
                let recorded = match recorded {
                    Recorded::Mug(m) => m.to_string(),
                    _ => format!("{:#x} (not a mug)", recorded.stored()),
                };
                let verdict = match self.verdict {
                    Verdict::Agrees => Verdict::Contradicts(epoch),
                    Verdict::Contradicts(wrong) if wrong == epoch => Verdict::Contradicts(wrong),
                    _ => Verdict::Diverged,
                };
                if verdict == Verdict::Diverged {
                    tracing::error!(
                        event = %num,
                        %epoch,
                        %recorded,
                        computed = %mug,
                        "the ship is not deterministic: its state after this event differs from \
                         what two leaders computed; this replica will not lead until it is \
                         restored from a healthy peer"
                    );
                } else {
                    tracing::error!(
                        event = %num,
                        %epoch,
                        %recorded,
                        computed = %mug,
                        "a ship is not deterministic: this replica's state after this event \
                         differs from what epoch {epoch}'s leader recorded; it campaigns only once \
                         nobody has led for a lease TTL, or once it agrees with a later leader"
                    );
                }
                verdict
            };
            if verdict != self.verdict {
                self.verdict = verdict;
                let diverged = if verdict == Verdict::Agrees { 0.0 } else { 1.0 };
                gauge!(m::DIVERGED).set(diverged);
            }
        }
    }

    /// Keeps the event log told of the last event this replica's runtime
    /// has checkpointed (SPEC §5), retrying until it is recorded.
    fn report_watermarks(&self, shutdown: CancellationToken) {
        let mut rx = self.watermark.subscribe();
        let log = self.log.clone();
        let id = self.settings.id;
        tokio::spawn(async move {
            let mut reported = EventNum::NONE;
            loop {
                let wanted = *rx.borrow_and_update();
                if wanted > reported {
                    match log.set_watermark(id, wanted).await {
                        Ok(purge) => {
                            reported = wanted;
                            tracing::debug!(watermark = %wanted, purge_point = %purge, "watermark recorded");
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot record the checkpoint watermark; retrying");
                            tokio::select! {
                                _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                                _ = shutdown.cancelled() => return,
                            }
                        }
                    }
                }
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() { return },
                    _ = shutdown.cancelled() => return,
                }
            }
        });
    }
}
