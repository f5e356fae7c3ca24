//! [`VereShip`]: vere's event shapes on the reference ship's mug chain.

use ames::{Lane, Mug};
use leadership::EventNum;

use super::event::{self, Card};
use crate::reference;
use crate::ship::{Applied, Effect, Ship, ShipError};

/// What the state's mug starts from, before event 1.
const SEED: &[u8] = b"seguro vere-shaped ship";

/// State: the last event applied and the mug chained through every event,
/// `mug' = mug(BE32(mug) ++ event)`, boot events and events it cannot read
/// included (vere would crash on the latter; chaining them keeps a mixed
/// cluster in step).
///
/// A `%hear` of a classic Ames packet gets the reference ship's answer
/// (event number and mug after it, from the packet's receiver to its sender)
/// sent to the heard lane; a `%heer` whose blob is a classic Ames packet gets
/// the same answer pushed to `[lane ~]`, which is one send. Mesa packets,
/// `%wake` and anything else change the state and get no answer.
#[derive(Debug, Clone)]
pub struct VereShip {
    last: EventNum,
    mug: Mug,
}

impl Default for VereShip {
    fn default() -> Self {
        Self::new()
    }
}

impl VereShip {
    pub fn new() -> Self {
        VereShip {
            last: EventNum::NONE,
            mug: Mug::of(SEED),
        }
    }

    pub fn mug(&self) -> Mug {
        self.mug
    }

    fn effects(&self, num: EventNum, event: &[u8]) -> Vec<Effect> {
        let (lane, blob) = match event::read_event(event) {
            Some((_, Some(Card::Hear { lane, blob } | Card::Heer { lane, blob }))) => (lane, blob),
            _ => return Vec::new(),
        };
        reference::answer(num, self.mug, &blob)
            .map(|payload| Effect { lane, payload })
            .into_iter()
            .collect()
    }
}

impl Ship for VereShip {
    fn apply(&mut self, num: EventNum, event: &[u8]) -> Result<Applied, ShipError> {
        if num != self.last.next() {
            return Err(ShipError::OutOfOrder {
                num,
                last: self.last,
            });
        }
        let mut chained = self.mug.get().to_be_bytes().to_vec();
        chained.extend_from_slice(event);
        self.mug = Mug::of(&chained);
        self.last = num;
        Ok(Applied {
            mug: self.mug,
            effects: self.effects(num, event),
        })
    }

    fn last(&self) -> EventNum {
        self.last
    }

    fn checkpoint(&self) -> Vec<u8> {
        reference::checkpoint(self.last, self.mug)
    }

    fn restore(&mut self, checkpoint: &[u8]) -> Result<(), ShipError> {
        (self.last, self.mug) = reference::restore(checkpoint)?;
        Ok(())
    }

    fn reset(&mut self) {
        *self = VereShip::new();
    }

    fn event_of(&self, now_us: u64, lane: Lane, packet: &[u8]) -> Vec<u8> {
        event::packet_event(now_us, lane, packet)
    }

    fn time_of(&self, event: &[u8]) -> Option<u64> {
        event::read_event(event).map(|(now, _)| now)
    }
}
