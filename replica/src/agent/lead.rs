//! Leading: fence the log, replay it to its end, hand the runtime the
//! packets the old leader never committed, then append what the runtime
//! plans and send its effects (docs/SPEC.md §2, §3, §6.3).

use std::fmt;
use std::time::Duration;

use eventlog_client::{AppendError, ReadError};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use leadership::{Epoch, EventNum, Sealer, StatelessBudget};
use metrics::{counter, gauge};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ports::{EffectSink, Elector, EventLog, LogWriter, Term};
use super::{Agent, AgentError, Verdict};
use crate::buffer::PacketId;
use crate::frame;
use crate::metrics as m;
use crate::port::{Command, Notice};

/// How a term ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    Shutdown,
    StepDown(StepDown),
}

/// Why a term ended: the `reason` label of
/// `seguro_replica_step_downs_total` (docs/METRICS.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepDown {
    /// The lease could not be kept alive, or the key was lost.
    LeaseLost,
    /// A newer leader fenced the log.
    Fenced,
    /// An append failed for another reason than a newer fence.
    AppendFailed,
    /// No commit for a lease TTL: the log may have lost its quorum.
    CommitStalled,
    /// The log could not be fenced at the new epoch.
    FenceFailed,
    /// The fence, the catch-up and the mug checks took longer than a TTL.
    PromotionStalled,
    /// While it was being promoted, the runtime contradicted mugs the log
    /// recorded (docs/SPEC.md §6.3.2).
    Diverged,
    /// The agent was stopped and resigned.
    Shutdown,
}

impl StepDown {
    pub const ALL: [StepDown; 8] = [
        StepDown::LeaseLost,
        StepDown::Fenced,
        StepDown::AppendFailed,
        StepDown::CommitStalled,
        StepDown::FenceFailed,
        StepDown::PromotionStalled,
        StepDown::Diverged,
        StepDown::Shutdown,
    ];

    /// The metric label, as dashboards and alerts know it.
    pub const fn label(self) -> &'static str {
        match self {
            StepDown::LeaseLost => "lease_lost",
            StepDown::Fenced => "fenced",
            StepDown::AppendFailed => "append_failed",
            StepDown::CommitStalled => "commit_stalled",
            StepDown::FenceFailed => "fence_failed",
            StepDown::PromotionStalled => "promotion_stalled",
            StepDown::Diverged => "diverged",
            StepDown::Shutdown => "shutdown",
        }
    }
}

impl fmt::Display for StepDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The leader's pipeline.
struct Pipeline<W: LogWriter> {
    writer: W,
    sealer: Sealer,
    /// Appends not yet committed, oldest first.
    in_flight: FuturesOrdered<W::Append>,
    committed: EventNum,
    /// When the oldest append still in flight was made, or the last commit.
    progress_at: Instant,
    /// Sealed effects waiting for the next send.
    outgoing: Vec<Vec<u8>>,
    /// Whether every event planned so far is a boot event from event 1:
    /// only then may the runtime plan one without a mug.
    booting: bool,
    /// Packets the runtime said it will never plan, for the next event's
    /// frame to tell followers.
    dropped: Vec<PacketId>,
    /// Stateless packets this term may still send now (a token bucket).
    stateless: StatelessBudget,
}

/// Most packet drops one event's frame carries; more wait for the next.
const DROPS_PER_EVENT: usize = 256;

/// Most commands handled before sealed effects are flushed.
const COMMAND_BATCH: usize = 256;

/// How a promotion ended.
enum Promotion {
    /// The runtime replayed the log to `last` and agrees with it: lead.
    Ready {
        last: EventNum,
    },
    StepDown(StepDown),
    Shutdown,
}

impl<L: EventLog, E: Elector, S: EffectSink> Agent<L, E, S> {
    pub(super) async fn lead(
        &mut self,
        leadership: E::Term,
        shutdown: &CancellationToken,
    ) -> Result<End, AgentError> {
        let epoch = leadership.epoch();
        self.runtime_led = false;
        self.term_committed = false;
        counter!(m::PROMOTIONS).increment(1);
        gauge!(m::EPOCH).set(epoch.get() as f64);
        tracing::info!(%epoch, "elected; fencing the event log");

        // A promotion that cannot finish within a TTL hands the term back:
        // another replica may reach the log, and the ship is silent
        // meanwhile. The lease is watched throughout.
        let deadline = Instant::now() + self.settings.ttl;
        let promoted = tokio::select! {
            promoted = self.promote(epoch, shutdown) => promoted?,
            reason = leadership.lost() => {
                tracing::warn!(%reason, "lost the leadership while being promoted");
                return Ok(End::StepDown(StepDown::LeaseLost));
            }
            _ = tokio::time::sleep_until(deadline) => {
                tracing::error!(
                    ttl = ?self.settings.ttl,
                    "the fence, the catch-up and the mug checks took longer than a lease TTL; \
                     handing the term back"
                );
                hand_back(leadership).await;
                return Ok(End::StepDown(StepDown::PromotionStalled));
            }
        };
        let last = match promoted {
            Promotion::Ready { last } => last,
            Promotion::Shutdown => return Ok(resign(leadership).await),
            Promotion::StepDown(StepDown::Diverged) => {
                hand_back(leadership).await;
                return Ok(End::StepDown(StepDown::Diverged));
            }
            Promotion::StepDown(reason) => return Ok(End::StepDown(reason)),
        };
        self.notify(Notice::Lead {
            epoch,
            next: last.next(),
        })
        .await?;
        self.runtime_led = true;
        gauge!(m::LEADER).set(1.0);
        gauge!(m::COMMITTED).set(last.get() as f64);
        tracing::info!(%epoch, %last, "leading");

        let mut term = Pipeline {
            writer: self.log.writer(epoch, last.next()),
            sealer: Sealer::new(self.settings.id, epoch, self.key.clone()),
            in_flight: FuturesOrdered::new(),
            committed: last,
            progress_at: Instant::now(),
            outgoing: Vec::new(),
            booting: last == EventNum::NONE,
            dropped: Vec::new(),
            stateless: StatelessBudget::new(self.settings.stateless_rate, Instant::now()),
        };
        self.committed = self.committed.max(last);
        // What the old leader heard but never committed (SPEC §4.4).
        let backlog = self.buffer.drain();
        gauge!(m::BUFFERED).set(0.0);
        if !backlog.is_empty() {
            tracing::info!(
                packets = backlog.len(),
                "sequencing packets the old leader did not commit"
            );
            counter!(m::RECOVERED).increment(backlog.len() as u64);
            for (lane, packet) in backlog {
                let id = PacketId::of(lane, &packet);
                self.notify(Notice::Packet { lane, packet, id }).await?;
            }
        }

        loop {
            let room = self.runtime_last.get().saturating_sub(term.committed.get())
                < self.settings.max_run_ahead;
            let stalled_at = term.progress_at + self.settings.ttl;
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(resign(leadership).await),
                reason = leadership.lost() => {
                    tracing::warn!(?reason, "lost the leadership");
                    return Ok(End::StepDown(StepDown::LeaseLost));
                }
                // Checked before the runtime's commands, which cannot starve it.
                _ = tokio::time::sleep_until(stalled_at), if !term.in_flight.is_empty() => {
                    tracing::error!(ttl = ?self.settings.ttl, "no commit for a lease TTL: the event log may have lost its quorum");
                    return Ok(End::StepDown(StepDown::CommitStalled));
                }
                Some(done) = term.in_flight.next(), if !term.in_flight.is_empty() => match done {
                    Ok(n) => {
                        self.term_committed = true;
                        term.committed = term.committed.max(n);
                        self.committed = self.committed.max(term.committed);
                        term.progress_at = Instant::now();
                        gauge!(m::COMMITTED).set(term.committed.get() as f64);
                        gauge!(m::RUN_AHEAD).set(self.runtime_last.get().saturating_sub(term.committed.get()) as f64);
                        self.notify(Notice::Committed(term.committed)).await?;
                    }
                    Err(AppendError::StaleEpoch { highest }) => {
                        tracing::warn!(%highest, "the event log was fenced by a newer leader");
                        return Ok(End::StepDown(StepDown::Fenced));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "an append failed");
                        return Ok(End::StepDown(StepDown::AppendFailed));
                    }
                },
                command = self.port.commands.recv() => {
                    if command.is_none() && shutdown.is_cancelled() {
                        // The runtime stopped along with the agent.
                        return Ok(resign(leadership).await);
                    }
                    let mut next = Some(command.ok_or(AgentError::RuntimeGone)?);
                    let mut handled = 0;
                    while let Some(command) = next.take() {
                        self.as_leader(&mut term, command)?;
                        handled += 1;
                        if handled < COMMAND_BATCH {
                            next = self.port.commands.try_recv().ok();
                        }
                    }
                    self.flush(&mut term).await?;
                }
                Some(batch) = self.inbound.recv(), if room => {
                    for (lane, packet) in batch {
                        let id = PacketId::of(lane, &packet);
                        self.notify(Notice::Packet { lane, packet, id }).await?;
                    }
                }
            }
        }
    }

    /// Fences the log at `epoch`, replays it to the fence and waits until
    /// the runtime's mug for every replayed event has been checked. [`lead`]
    /// bounds it by a TTL and the lease, dropping it half-way if need be:
    /// each step leaves the agent consistent at its awaits.
    ///
    /// [`lead`]: Agent::lead
    async fn promote(
        &mut self,
        epoch: Epoch,
        shutdown: &CancellationToken,
    ) -> Result<Promotion, AgentError> {
        let before = self.verdict;
        if before == Verdict::Diverged {
            return Ok(Promotion::StepDown(StepDown::Diverged));
        }
        // From the fence on, the log refuses every older leader (SPEC §6.2).
        let last = tokio::select! {
            fenced = self.log.fence(epoch) => match fenced {
                Ok(last) => last,
                Err(AppendError::StaleEpoch { highest }) => {
                    tracing::warn!(%highest, "a newer leader already fenced the log");
                    return Ok(Promotion::StepDown(StepDown::Fenced));
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot fence the event log");
                    return Ok(Promotion::StepDown(StepDown::FenceFailed));
                }
            },
            _ = shutdown.cancelled() => return Ok(Promotion::Shutdown),
        };
        if !self.catch_up(last, shutdown).await? {
            return Ok(Promotion::Shutdown);
        }
        // A runtime leads only from a state the log's mugs vouch for.
        while !self.pending.is_empty() {
            let command = tokio::select! {
                c = self.port.commands.recv() => match c {
                    Some(c) => c,
                    None if shutdown.is_cancelled() => return Ok(Promotion::Shutdown),
                    None => return Err(AgentError::RuntimeGone),
                },
                _ = shutdown.cancelled() => return Ok(Promotion::Shutdown),
            };
            self.on_command(command);
        }
        let worse = matches!(
            (before, self.verdict),
            (_, Verdict::Diverged) | (Verdict::Agrees, Verdict::Contradicts(_))
        );
        if worse {
            tracing::warn!(
                "the runtime contradicted the log while catching up; handing the term back"
            );
            return Ok(Promotion::StepDown(StepDown::Diverged));
        }
        Ok(Promotion::Ready { last })
    }

    /// Replays the committed log up to `last`. `false` if shut down first.
    async fn catch_up(
        &mut self,
        last: EventNum,
        shutdown: &CancellationToken,
    ) -> Result<bool, AgentError> {
        while self.runtime_last < last {
            let mut events = self.log.read(self.runtime_last.next(), last);
            loop {
                let item = tokio::select! {
                    item = events.next() => item,
                    _ = shutdown.cancelled() => return Ok(false),
                };
                match item {
                    Some(Ok(event)) => self.replay(event).await?,
                    Some(Err(ReadError::Purged { first_available })) => {
                        self.notify(Notice::Purged { first_available }).await?;
                        let Some(restored) = self.restored(shutdown).await? else {
                            return Ok(false);
                        };
                        self.runtime_last = restored;
                        self.forget_buffer(restored);
                        break;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "catching up; reading again");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        break;
                    }
                    None => break,
                }
            }
        }
        Ok(true)
    }

    /// A command from the runtime while leading.
    fn as_leader(
        &mut self,
        term: &mut Pipeline<L::Writer>,
        command: Command,
    ) -> Result<(), AgentError> {
        match command {
            Command::Plan {
                num,
                mug,
                data,
                packet,
            } => {
                let expected = self.runtime_last.next();
                if num != expected {
                    return Err(AgentError::OutOfOrderPlan { expected, got: num });
                }
                match mug {
                    None if !term.booting => return Err(AgentError::BootOutOfPlace { num }),
                    None => {}
                    Some(_) => term.booting = false,
                }
                if term.in_flight.is_empty() {
                    term.progress_at = Instant::now();
                }
                let cut = term.dropped.len().min(DROPS_PER_EVENT);
                let dropped: Vec<PacketId> = term.dropped.drain(..cut).collect();
                term.in_flight.push_back(term.writer.append(
                    num,
                    mug,
                    frame::encode(&data, packet, &dropped),
                ));
                self.runtime_last = num;
                counter!(m::SEQUENCED).increment(1);
                gauge!(m::APPLIED).set(num.get() as f64);
                gauge!(m::RUN_AHEAD).set(num.get().saturating_sub(term.committed.get()) as f64);
            }
            // Any state the runtime has may be revealed once committed: an
            // effect of this term's events, or a scry answer or retransmit
            // from the state as of a replayed one (docs/VERE.md).
            Command::Send { num, lane, payload }
                if num != EventNum::NONE && num <= self.runtime_last =>
            {
                self.seal(term, num, lane, &payload);
            }
            Command::Send { num, .. } => {
                counter!(m::EFFECTS_FAILED).increment(1);
                tracing::warn!(event = %num, last = %self.runtime_last, "dropping a packet that depends on an event the runtime does not have");
            }
            Command::SendStateless {
                kind,
                lane,
                payload,
            } => {
                // Checked as the gatekeeper does: what is refused anyway
                // spends none of the rate.
                match ames::stateless(&payload) {
                    Ok(found) if found == kind => {
                        if !term.stateless.take(Instant::now()) {
                            counter!(m::STATELESS_DROPPED, "reason" => "rate").increment(1);
                            return Ok(());
                        }
                        // Event 0 is the state before any event: the
                        // envelope says the packet depends on none
                        // (docs/SPEC.md §6.4).
                        self.seal(term, EventNum::NONE, lane, &payload)
                    }
                    Ok(found) => {
                        counter!(m::STATELESS_DROPPED, "reason" => "mismatch").increment(1);
                        tracing::warn!(claimed = ?kind, ?found, "dropping a stateless packet of another kind than claimed");
                    }
                    Err(e) => {
                        counter!(m::STATELESS_DROPPED, "reason" => "mismatch").increment(1);
                        tracing::warn!(claimed = ?kind, error = %e, "dropping a packet that may reveal the ship's state from the stateless path");
                    }
                }
            }
            Command::Dropped(id) => {
                if term.dropped.len() < self.settings.buffer_packets {
                    term.dropped.push(id);
                }
            }
            other => self.on_command(other),
        }
        Ok(())
    }

    fn seal(
        &self,
        term: &mut Pipeline<L::Writer>,
        num: EventNum,
        lane: ames::Lane,
        payload: &[u8],
    ) {
        match term.sealer.seal(num, lane, payload) {
            Ok(datagram) => term.outgoing.push(datagram),
            Err(e) => {
                counter!(m::EFFECTS_FAILED).increment(1);
                tracing::warn!(error = %e, event = %num, "cannot seal an effect");
            }
        }
    }

    /// Sends the sealed effects to the gatekeeper in one batch.
    async fn flush(&mut self, term: &mut Pipeline<L::Writer>) -> Result<(), AgentError> {
        if term.outgoing.is_empty() {
            return Ok(());
        }
        let to = self.settings.gatekeeper;
        let datagrams: Vec<_> = term.outgoing.iter().map(|d| (to, d.as_slice())).collect();
        let sent = self
            .effects
            .send(&datagrams)
            .await
            .map_err(AgentError::Effects)?;
        counter!(m::EFFECTS).increment(sent.sent as u64);
        counter!(m::EFFECTS_FAILED).increment(sent.failed as u64);
        term.outgoing.clear();
        Ok(())
    }
}

/// Ends the term at once so that the next leader need not wait a TTL.
async fn resign(leadership: impl Term) -> End {
    hand_back(leadership).await;
    counter!(m::STEP_DOWNS, "reason" => StepDown::Shutdown.label()).increment(1);
    End::Shutdown
}

/// Deletes the leader key, so that another replica can win at once.
async fn hand_back(leadership: impl Term) {
    gauge!(m::LEADER).set(0.0);
    match tokio::time::timeout(Duration::from_secs(2), leadership.resign()).await {
        Ok(Ok(())) => tracing::info!("resigned the leadership"),
        Ok(Err(e)) => tracing::warn!(error = %e, "resigning failed; the lease will expire"),
        Err(_) => tracing::warn!("resigning timed out; the lease will expire"),
    }
}
