//! Following: replay what the log commits, keep what arrives, campaign
//! when the determinism check allows it.

use std::pin::Pin;
use std::time::Duration;

use eventlog_client::ReadError;
use futures::StreamExt;
use futures::future::OptionFuture;
use leadership::{ElectionError, Epoch};
use metrics::{counter, gauge};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ports::{Committed, EffectSink, Elector, EventLog};
use super::{Agent, AgentError, Verdict};
use crate::metrics as m;
use crate::port::Notice;

type Boxed<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<L: EventLog, E: Elector, S: EffectSink> Agent<L, E, S> {
    /// Follows until this replica is elected (`Some`) or shut down; it
    /// starts campaigning no sooner than `wait` from now.
    pub(super) async fn follow(
        &mut self,
        wait: Duration,
        shutdown: &CancellationToken,
    ) -> Result<Option<E::Term>, AgentError> {
        gauge!(m::LEADER).set(0.0);
        let mut committed = self.committed_from_here();
        let not_before = Instant::now() + wait;
        let mut campaign: Option<Boxed<E::Term>> = None;
        // A replica that contradicted a leader asks etcd who leads, and
        // campaigns once nobody has for a TTL (`vacant_since`).
        let mut probe: Option<Boxed<Result<Option<Epoch>, ElectionError>>> = None;
        let mut vacant_since: Option<Instant> = None;
        let mut tick =
            tokio::time::interval((self.settings.ttl / 4).max(Duration::from_millis(10)));
        loop {
            let may_campaign = match self.verdict {
                Verdict::Agrees => true,
                Verdict::Contradicts(_) => {
                    vacant_since.is_some_and(|t| t.elapsed() >= self.settings.ttl)
                }
                Verdict::Diverged => false,
            };
            if !may_campaign && campaign.is_some() {
                // Found out while following: a runtime that computes other
                // states than the log's must not lead while a replica that
                // agrees with the log may. Dropping the campaign revokes its
                // lease.
                campaign = None;
            } else if may_campaign && campaign.is_none() {
                let (election, id) = (self.election.clone(), self.settings.id);
                campaign = Some(Box::pin(async move {
                    if Instant::now() < not_before {
                        tokio::time::sleep_until(not_before).await;
                    }
                    election.campaign(id).await
                }));
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(None),
                Some(leadership) = OptionFuture::from(campaign.as_mut()), if campaign.is_some() => {
                    return Ok(Some(leadership));
                }
                Some(read) = OptionFuture::from(probe.as_mut()), if probe.is_some() => {
                    probe = None;
                    match read {
                        Ok(None) => {
                            vacant_since.get_or_insert_with(Instant::now);
                        }
                        Ok(Some(_)) => vacant_since = None,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot read who leads from etcd");
                            vacant_since = None;
                        }
                    }
                }
                _ = tick.tick() => {
                    if matches!(self.verdict, Verdict::Contradicts(_)) {
                        if probe.is_none() {
                            let election = self.election.clone();
                            probe = Some(Box::pin(async move { election.current().await }));
                        }
                    } else {
                        vacant_since = None;
                    }
                }
                item = committed.next() => match item {
                    Some(Ok(event)) => self.replay(event).await?,
                    Some(Err(ReadError::Purged { first_available })) => {
                        tracing::warn!(%first_available, "the log no longer holds what this replica needs");
                        self.notify(Notice::Purged { first_available }).await?;
                        let Some(last) = self.restored(shutdown).await? else { return Ok(None) };
                        self.runtime_last = last;
                        self.forget_buffer(last);
                        committed = self.committed_from_here();
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "reading the event log; following again");
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        committed = self.committed_from_here();
                    }
                    None => committed = self.committed_from_here(),
                },
                command = self.port.commands.recv() => match command {
                    Some(c) => self.on_command(c),
                    // The runtime may stop along with the agent.
                    None if shutdown.is_cancelled() => return Ok(None),
                    None => return Err(AgentError::RuntimeGone),
                },
                Some(batch) = self.inbound.recv() => {
                    for (lane, packet) in batch {
                        let evicted = self.buffer.insert(lane, &packet);
                        counter!(m::EVICTED).increment(evicted as u64);
                    }
                    gauge!(m::BUFFERED).set(self.buffer.len() as f64);
                }
            }
        }
    }

    /// Committed events from the one after the runtime's last, as they commit.
    fn committed_from_here(&self) -> Committed {
        self.log.follow(self.runtime_last.next())
    }
}
