//! The in-process runtime: a [`Ship`] driven by the agent's notices, with
//! its checkpoints on disk and, for a wiped replica, a peer's checkpoint.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use leadership::EventNum;
use metrics::{counter, gauge};
use tokio_util::sync::CancellationToken;
use trust::Credentials;

use crate::checkpoint::{Checkpoint, CheckpointError, CheckpointStore};
use crate::clock::Clock;
use crate::metrics as m;
use crate::peer;
use crate::peer::PeerCheckpoint;
use crate::port::{Command, Notice, RuntimePort};
use crate::ship::{Ship, ShipError};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Ship(#[from] ShipError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("told to lead from event {next}, but the ship's last event is {last}")]
    Lead { next: EventNum, last: EventNum },
}

/// Delays between rounds of asking peers for a checkpoint: from 200 ms
/// doubling to 5 s, jittered so that replicas wiped together do not ask
/// in step.
const PEER_RETRY: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_millis(200))
    .with_max_delay(Duration::from_secs(5))
    .with_factor(2.0)
    .with_jitter()
    .without_max_times();

/// A ship, its checkpoints, and where peers' checkpoints can be had.
pub struct ShipRuntime {
    ship: Box<dyn Ship>,
    store: CheckpointStore,
    clock: Clock,
    /// The time on the last applied event that carried one: what the next
    /// checkpoint records.
    last_us: Option<u64>,
    port: RuntimePort,
    checkpoint_every: u64,
    checkpointed: EventNum,
    leading: bool,
    /// Other agents' HTTP addresses, and the credential to ask them with.
    peers: Vec<PeerCheckpoint>,
    credentials: Credentials,
}

impl ShipRuntime {
    pub fn new(
        ship: Box<dyn Ship>,
        store: CheckpointStore,
        port: RuntimePort,
        checkpoint_every: u64,
        peers: Vec<PeerCheckpoint>,
        credentials: Credentials,
    ) -> Self {
        ShipRuntime {
            ship,
            store,
            clock: Clock::default(),
            last_us: None,
            port,
            checkpoint_every,
            checkpointed: EventNum::NONE,
            leading: false,
            peers,
            credentials,
        }
    }

    /// Serves the agent until it goes away or `shutdown` is cancelled.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), RuntimeError> {
        self.rewind()?;
        loop {
            let notice = tokio::select! {
                n = self.port.notices.recv() => match n { Some(n) => n, None => return Ok(()) },
                _ = shutdown.cancelled() => return Ok(()),
            };
            match notice {
                Notice::Replay { num, data, .. } => {
                    let applied = self.ship.apply(num, &data)?;
                    if let Some(us) = self.ship.time_of(&data) {
                        self.observe(us);
                    }
                    self.tell(Command::Applied {
                        num,
                        mug: Some(applied.mug),
                    });
                    // A replayed state is a committed one.
                    self.maybe_checkpoint().await;
                }
                Notice::Lead { next, .. } => {
                    let last = self.ship.last();
                    if next != last.next() {
                        return Err(RuntimeError::Lead { next, last });
                    }
                    self.leading = true;
                }
                Notice::Packet { lane, packet, id } if self.leading => {
                    let now_us = self.clock.now_us();
                    let data = self.ship.event_of(now_us, lane, &packet);
                    let num = self.ship.last().next();
                    let applied = self.ship.apply(num, &data)?;
                    self.last_us = Some(now_us);
                    self.tell(Command::Plan {
                        num,
                        mug: Some(applied.mug),
                        data: data.into(),
                        packet: Some(id),
                    });
                    for effect in applied.effects {
                        self.tell(Command::Send {
                            num,
                            lane: effect.lane,
                            payload: effect.payload,
                        });
                    }
                }
                Notice::Packet { .. } => {}
                Notice::Committed(num) => {
                    if self.ship.last() == num {
                        self.maybe_checkpoint().await;
                    }
                }
                // The in-process runtime keeps no log of its own: back to
                // the checkpoint, and the agent replays the rest.
                Notice::Rewind { .. } => {
                    self.leading = false;
                    self.rewind()?;
                }
                Notice::Purged { first_available } => {
                    self.leading = false;
                    let need = EventNum(first_available.get().saturating_sub(1));
                    if !self.restore_from_peers(need, &shutdown).await? {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Notes an applied event's time: the clock stamps after it from now on.
    fn observe(&mut self, us: u64) {
        self.clock.observe(us);
        self.last_us = Some(us);
    }

    /// Takes a checkpoint's state (and its time, which the clock stamps
    /// after from now on).
    fn restore(&mut self, checkpoint: &Checkpoint) -> Result<(), RuntimeError> {
        self.ship.restore(&checkpoint.state)?;
        self.last_us = checkpoint.last_us;
        if let Some(us) = checkpoint.last_us {
            self.clock.observe(us);
        }
        Ok(())
    }

    fn tell(&self, command: Command) {
        // The agent going away ends `run` at its next notice.
        let _ = self.port.commands.send(command);
    }

    /// Back to the last checkpoint (or the start), and says so.
    fn rewind(&mut self) -> Result<(), RuntimeError> {
        match self.store.load()? {
            Some(checkpoint) => {
                self.restore(&checkpoint)?;
                self.checkpointed = checkpoint.last;
                counter!(m::RESTORES, "source" => "local").increment(1);
            }
            None => {
                self.ship.reset();
                self.last_us = None;
                self.checkpointed = EventNum::NONE;
            }
        }
        gauge!(m::CHECKPOINT).set(self.checkpointed.get() as f64);
        self.tell(Command::Checkpointed(self.checkpointed));
        self.tell(Command::Restored {
            last: self.ship.last(),
        });
        Ok(())
    }

    /// Saves the ship's state if enough events passed since the last save.
    async fn maybe_checkpoint(&mut self) {
        let last = self.ship.last();
        if last.get() < self.checkpointed.get() + self.checkpoint_every {
            return;
        }
        let checkpoint = Checkpoint {
            last,
            last_us: self.last_us,
            state: self.ship.checkpoint(),
        };
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.save(&checkpoint)).await {
            Ok(Ok(())) => {
                self.checkpointed = last;
                counter!(m::CHECKPOINTS).increment(1);
                gauge!(m::CHECKPOINT).set(last.get() as f64);
                self.tell(Command::Checkpointed(last));
            }
            Ok(Err(e)) => tracing::error!(error = %e, "cannot save a checkpoint; will try again"),
            Err(e) => tracing::error!(error = %e, "the checkpoint task failed"),
        }
    }

    /// Restores the ship from the newest peer checkpoint at or after
    /// `at_least`, retrying until one exists. `false` if shut down first.
    async fn restore_from_peers(
        &mut self,
        at_least: EventNum,
        shutdown: &CancellationToken,
    ) -> Result<bool, RuntimeError> {
        let mut delays = PEER_RETRY.build();
        loop {
            let mut best: Option<Checkpoint> = None;
            for &peer in &self.peers {
                let fetched = peer::fetch(
                    peer,
                    &self.credentials,
                    self.store.max_bytes(),
                    Duration::from_secs(10),
                )
                .await;
                match fetched {
                    Ok(c)
                        if c.last >= at_least && best.as_ref().is_none_or(|b| c.last > b.last) =>
                    {
                        best = Some(c)
                    }
                    Ok(c) => {
                        tracing::info!(peer = %peer.id, event = %c.last, "this peer's checkpoint is too old")
                    }
                    Err(e) => tracing::info!(error = %e, "no checkpoint from this peer"),
                }
            }
            if let Some(checkpoint) = best {
                self.restore(&checkpoint)?;
                let store = self.store.clone();
                let saved = checkpoint.clone();
                // Only a checkpoint on this disk may be reported: the log
                // purges events every replica has reported.
                match tokio::task::spawn_blocking(move || store.save(&saved)).await {
                    Ok(Ok(())) => {
                        self.checkpointed = checkpoint.last;
                        gauge!(m::CHECKPOINT).set(checkpoint.last.get() as f64);
                        self.tell(Command::Checkpointed(checkpoint.last));
                    }
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "cannot save the checkpoint fetched from a peer")
                    }
                    Err(e) => tracing::error!(error = %e, "the checkpoint task failed"),
                }
                counter!(m::RESTORES, "source" => "peer").increment(1);
                tracing::info!(event = %checkpoint.last, "ship restored from a peer's checkpoint");
                self.tell(Command::Restored {
                    last: checkpoint.last,
                });
                return Ok(true);
            }
            tracing::warn!(need = %at_least, "no peer has a recent enough checkpoint yet; retrying");
            let delay = delays.next().unwrap_or(Duration::from_secs(5));
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.cancelled() => return Ok(false),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use config::{ReplicaId, Role};

    use super::*;
    use crate::event::PacketEvent;
    use crate::port;
    use crate::reference::{ReferenceShip, Variant};

    fn lane() -> ames::Lane {
        "192.0.2.1:4000".parse().unwrap()
    }

    #[tokio::test]
    async fn a_restarted_leader_stamps_after_the_last_event_even_with_its_clock_behind() {
        let dir = tempfile::tempdir().unwrap();
        let pki = testkit::Pki::new(dir.path().join("tls"), "test").unwrap();
        let credentials = pki
            .credentials(Role::Replica(ReplicaId::new(1).unwrap()))
            .unwrap();
        let store = CheckpointStore::new(dir.path().join("checkpoints"));
        let start = |store: CheckpointStore| {
            let (agent, runtime) = port::port(16);
            let ship = Box::new(ReferenceShip::new(Variant::Deterministic));
            let runtime = ShipRuntime::new(ship, store, runtime, 1, vec![], credentials.clone());
            let stop = CancellationToken::new();
            (agent, tokio::spawn(runtime.run(stop.clone())), stop)
        };
        // An hour ahead of this host's clock: the last leader's was.
        let future = Clock::default().now_us() + 3_600_000_000;

        let (mut agent, running, stop) = start(store.clone());
        let event = PacketEvent {
            now_us: future,
            lane: lane(),
            packet: b"hello".to_vec(),
        };
        let data = bytes::Bytes::from(event.encode());
        let num = EventNum(1);
        agent
            .notices
            .send(Notice::Replay {
                num,
                data,
                recorded: crate::port::Recorded::Boot,
            })
            .await
            .unwrap();
        loop {
            match agent.commands.recv().await.unwrap() {
                Command::Checkpointed(n) if n == num => break,
                _ => {}
            }
        }
        stop.cancel();
        running.await.unwrap().unwrap();

        // Restarted from that checkpoint, with nothing left to replay.
        let (mut agent, running, stop) = start(store);
        let restored = loop {
            if let Command::Restored { last } = agent.commands.recv().await.unwrap() {
                break last;
            }
        };
        assert_eq!(restored, num);
        let (epoch, next) = (leadership::Epoch(2), num.next());
        agent
            .notices
            .send(Notice::Lead { epoch, next })
            .await
            .unwrap();
        let packet = b"again".to_vec();
        let id = crate::buffer::PacketId::of(lane(), &packet);
        let lane = lane();
        agent
            .notices
            .send(Notice::Packet { lane, packet, id })
            .await
            .unwrap();
        let stamped = loop {
            if let Command::Plan { data, .. } = agent.commands.recv().await.unwrap() {
                break PacketEvent::decode(&data).unwrap().now_us;
            }
        };
        assert!(
            stamped > future,
            "stamped {stamped}, before the last event's {future}"
        );
        stop.cancel();
        running.await.unwrap().unwrap();
    }
}
