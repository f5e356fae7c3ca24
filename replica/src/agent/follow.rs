//! Following: replay what the log commits, keep what arrives, campaign.

use std::pin::Pin;
use std::time::Duration;

use eventlog_client::ReadError;
use futures::StreamExt;
use metrics::{counter, gauge};
use tokio_util::sync::CancellationToken;

use super::ports::{Committed, EffectSink, Elector, EventLog};
use super::{Agent, AgentError};
use crate::metrics as m;
use crate::port::Notice;

impl<L: EventLog, E: Elector, S: EffectSink> Agent<L, E, S> {
    /// Follows until this replica is elected (`Some`) or shut down.
    pub(super) async fn follow(
        &mut self,
        shutdown: &CancellationToken,
    ) -> Result<Option<E::Term>, AgentError> {
        gauge!(m::LEADER).set(0.0);
        let mut committed = self.committed_from_here();
        let mut campaigning = !self.diverged;
        let mut campaign: Pin<Box<dyn Future<Output = E::Term> + Send>> = if self.diverged {
            Box::pin(std::future::pending())
        } else {
            let (election, id) = (self.election.clone(), self.settings.id);
            Box::pin(async move { election.campaign(id).await })
        };
        loop {
            if self.diverged && campaigning {
                // Found out while following: a runtime that computes other
                // states than the log's must not lead. Dropping the campaign
                // revokes its lease.
                campaign = Box::pin(std::future::pending());
                campaigning = false;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(None),
                leadership = &mut campaign => return Ok(Some(leadership)),
                item = committed.next() => match item {
                    Some(Ok(event)) => self.replay(event).await?,
                    Some(Err(ReadError::Purged { first_available })) => {
                        tracing::warn!(%first_available, "the log no longer holds what this replica needs");
                        self.notify(Notice::Purged { first_available }).await?;
                        let Some(last) = self.restored(shutdown).await? else { return Ok(None) };
                        self.runtime_last = last;
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
