//! The interface between the agent and a ship: apply an event, get the new
//! state's mug and the effects.

use ames::{Lane, Mug};
use leadership::EventNum;

use crate::event::PacketEvent;

/// One outbound Ames packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effect {
    pub lane: Lane,
    pub payload: Vec<u8>,
}

/// What applying one event produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The mug of the ship's state after the event: what the event log
    /// records beside the event and followers check theirs against.
    pub mug: Mug,
    pub effects: Vec<Effect>,
}

#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error("event {num} is out of order: the ship's last event is {last}")]
    OutOfOrder { num: EventNum, last: EventNum },
    #[error("event {num} cannot be read: {source}")]
    BadEvent {
        num: EventNum,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("checkpoint cannot be restored: {0}")]
    BadCheckpoint(String),
}

/// A deterministic state machine fed the ship's events in order: the same
/// events give the same mugs and effects on every replica.
pub trait Ship: Send {
    /// Applies event `num`, which must be `self.last().next()`.
    fn apply(&mut self, num: EventNum, event: &[u8]) -> Result<Applied, ShipError>;

    /// The last event applied; [`EventNum::NONE`] for a new ship.
    fn last(&self) -> EventNum;

    /// The state as of [`Ship::last`], to be saved and later restored.
    fn checkpoint(&self) -> Vec<u8>;

    /// Replaces the state with a checkpoint's.
    fn restore(&mut self, checkpoint: &[u8]) -> Result<(), ShipError>;

    /// Goes back to the state before event 1.
    fn reset(&mut self);

    /// The event that hears `packet` from `lane` at the leader's clock
    /// `now_us`: what the leader plans. By default a [`PacketEvent`].
    fn event_of(&self, now_us: u64, lane: Lane, packet: &[u8]) -> Vec<u8> {
        PacketEvent {
            now_us,
            lane,
            packet: packet.to_vec(),
        }
        .encode()
    }

    /// The leader's clock written in `event` by [`Ship::event_of`]; `None`
    /// if it carries none (a boot event, say).
    fn time_of(&self, event: &[u8]) -> Option<u64> {
        PacketEvent::decode(event).ok().map(|p| p.now_us)
    }
}
