//! The reference ship: small, deterministic, and answers every Ames packet,
//! so that tests, demos and benchmarks can see the whole path work.

use ames::{Body, Lane, Mug, Packet, Prelude};
use leadership::EventNum;

use crate::event::PacketEvent;
use crate::ship::{Applied, Effect, Ship, ShipError};

/// Which behaviour the reference ship has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Deterministic: what every replica must compute.
    Deterministic,
    /// Mixes a per-process value into its state: the determinism check must
    /// catch it. For testing that check only.
    NonDeterministic { salt: u64 },
}

/// State: the last event applied and the mug chained through every event.
///
/// Each inbound Ames packet gets one answer to the sender's lane: an Ames
/// packet from the receiver to the sender whose content is the event number
/// (8 bytes) and the state mug after it (4 bytes), both big-endian. Other
/// packets (STUN, fine, mesa, malformed) change the state but get no answer.
#[derive(Debug, Clone)]
pub struct ReferenceShip {
    last: EventNum,
    mug: Mug,
    variant: Variant,
}

/// Size of a checkpoint: the last event and the mug.
const CHECKPOINT_LEN: usize = 12;

impl ReferenceShip {
    pub fn new(variant: Variant) -> Self {
        ReferenceShip {
            last: EventNum::NONE,
            mug: Mug::of(b"seguro reference ship"),
            variant,
        }
    }

    pub fn mug(&self) -> Mug {
        self.mug
    }

    /// The answer to an inbound Ames packet: what a peer receives.
    fn answer(&self, num: EventNum, lane: Lane, inbound: &[u8]) -> Option<Effect> {
        let payload = answer(num, self.mug, inbound)?;
        Some(Effect { lane, payload })
    }

    /// Reads an answer's content: `(event number, state mug)`.
    pub fn read_answer(content: &[u8]) -> Option<(EventNum, u32)> {
        let (num, rest) = content.split_first_chunk::<8>()?;
        let mug = rest.first_chunk::<4>()?;
        Some((EventNum(u64::from_be_bytes(*num)), u32::from_be_bytes(*mug)))
    }
}

impl Ship for ReferenceShip {
    fn apply(&mut self, num: EventNum, event: &[u8]) -> Result<Applied, ShipError> {
        if num != self.last.next() {
            return Err(ShipError::OutOfOrder {
                num,
                last: self.last,
            });
        }
        let packet = PacketEvent::decode(event).map_err(|e| ShipError::BadEvent {
            num,
            source: e.into(),
        })?;
        let mut chained = self.mug.get().to_be_bytes().to_vec();
        chained.extend_from_slice(event);
        if let Variant::NonDeterministic { salt } = self.variant {
            chained.extend_from_slice(&salt.to_be_bytes());
        }
        self.mug = Mug::of(&chained);
        self.last = num;
        let effects = self
            .answer(num, packet.lane, &packet.packet)
            .into_iter()
            .collect();
        Ok(Applied {
            mug: self.mug,
            effects,
        })
    }

    fn last(&self) -> EventNum {
        self.last
    }

    fn checkpoint(&self) -> Vec<u8> {
        checkpoint(self.last, self.mug)
    }

    fn reset(&mut self) {
        *self = ReferenceShip::new(self.variant);
    }

    fn restore(&mut self, checkpoint: &[u8]) -> Result<(), ShipError> {
        (self.last, self.mug) = restore(checkpoint)?;
        Ok(())
    }
}

/// The answer to an inbound classic Ames packet, after event `num` left
/// the state's mug at `mug`: an Ames packet from its receiver to its sender
/// whose content is `num` (8 bytes) and `mug` (4 bytes), both big-endian.
/// `None` for anything else. The vere-shaped ship answers the same way.
pub(crate) fn answer(num: EventNum, mug: Mug, inbound: &[u8]) -> Option<Vec<u8>> {
    let Ok(ames::Datagram::Ames(request)) = ames::parse(inbound) else {
        return None;
    };
    if !matches!(request.body, Body::Ames(_)) {
        return None;
    }
    let mut content = num.get().to_be_bytes().to_vec();
    content.extend_from_slice(&mug.get().to_be_bytes());
    let answer = Packet {
        prelude: Prelude::new(
            request.prelude.receiver.ship(),
            request.prelude.sender.ship(),
        ),
        body: Body::Ames(content),
    };
    Some(answer.to_bytes())
}

/// A chained ship's checkpoint: the last event and the mug, big-endian.
pub(crate) fn checkpoint(last: EventNum, mug: Mug) -> Vec<u8> {
    let mut out = last.get().to_be_bytes().to_vec();
    out.extend_from_slice(&mug.get().to_be_bytes());
    out
}

/// Reads back what [`checkpoint`] wrote.
pub(crate) fn restore(checkpoint: &[u8]) -> Result<(EventNum, Mug), ShipError> {
    let bytes: &[u8; CHECKPOINT_LEN] = checkpoint.try_into().map_err(|_| {
        ShipError::BadCheckpoint(format!(
            "{} bytes, expected {CHECKPOINT_LEN}",
            checkpoint.len()
        ))
    })?;
    let (last, mug) = bytes.split_first_chunk::<8>().expect("12 bytes hold 8");
    let mug = u32::from_be_bytes(*mug.first_chunk::<4>().expect("12 bytes hold 8 + 4"));
    let mug = Mug::from_stored(mug)
        .ok_or_else(|| ShipError::BadCheckpoint(format!("{mug:#x} is not a mug")))?;
    Ok((EventNum(u64::from_be_bytes(*last)), mug))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ames::Ship as ShipName;

    fn event(now_us: u64, packet: Vec<u8>) -> Vec<u8> {
        PacketEvent {
            now_us,
            lane: "192.0.2.9:4000".parse().unwrap(),
            packet,
        }
        .encode()
    }

    fn ames_packet(content: &[u8]) -> Vec<u8> {
        Packet {
            prelude: Prelude::new(ShipName::new(0x1234), ShipName::new(1)),
            body: Body::Ames(content.to_vec()),
        }
        .to_bytes()
    }

    #[test]
    fn answers_ames_with_event_number_and_mug() {
        let mut ship = ReferenceShip::new(Variant::Deterministic);
        let applied = ship
            .apply(EventNum(1), &event(1, ames_packet(b"ping")))
            .unwrap();
        let [effect] = &applied.effects[..] else {
            panic!("one answer")
        };
        assert_eq!(effect.lane, "192.0.2.9:4000".parse().unwrap());
        let Ok(ames::Datagram::Ames(answer)) = ames::parse(&effect.payload) else {
            panic!("an Ames packet")
        };
        assert_eq!(answer.prelude.sender.ship(), ShipName::new(1));
        assert_eq!(answer.prelude.receiver.ship(), ShipName::new(0x1234));
        let Body::Ames(content) = answer.body else {
            panic!()
        };
        assert_eq!(
            ReferenceShip::read_answer(&content),
            Some((EventNum(1), applied.mug.get()))
        );
    }

    #[test]
    fn non_ames_changes_state_without_answering() {
        let mut ship = ReferenceShip::new(Variant::Deterministic);
        let before = ship.mug();
        let applied = ship.apply(EventNum(1), &event(1, vec![0xff; 3])).unwrap();
        assert!(applied.effects.is_empty());
        assert_ne!(applied.mug, before);
    }

    #[test]
    fn deterministic_replicas_agree_and_salted_ones_do_not() {
        let events: Vec<_> = (1..=20)
            .map(|i| event(i, ames_packet(&[i as u8])))
            .collect();
        let run = |variant| {
            let mut ship = ReferenceShip::new(variant);
            for (i, e) in events.iter().enumerate() {
                ship.apply(EventNum(i as u64 + 1), e).unwrap();
            }
            ship.mug()
        };
        assert_eq!(run(Variant::Deterministic), run(Variant::Deterministic));
        assert_ne!(
            run(Variant::Deterministic),
            run(Variant::NonDeterministic { salt: 7 })
        );
    }

    #[test]
    fn refuses_out_of_order_and_garbage_events() {
        let mut ship = ReferenceShip::new(Variant::Deterministic);
        assert!(matches!(
            ship.apply(EventNum(2), &event(1, vec![])),
            Err(ShipError::OutOfOrder { .. })
        ));
        assert!(matches!(
            ship.apply(EventNum(1), b"x"),
            Err(ShipError::BadEvent { .. })
        ));
        assert_eq!(ship.last(), EventNum::NONE);
    }

    #[test]
    fn checkpoint_restores_the_chain() {
        let mut a = ReferenceShip::new(Variant::Deterministic);
        a.apply(EventNum(1), &event(1, ames_packet(b"a"))).unwrap();
        let mut b = ReferenceShip::new(Variant::Deterministic);
        b.restore(&a.checkpoint()).unwrap();
        let next = event(2, ames_packet(b"b"));
        assert_eq!(
            a.apply(EventNum(2), &next).unwrap(),
            b.apply(EventNum(2), &next).unwrap()
        );
        assert!(b.restore(&[0; 3]).is_err());
        assert!(b.restore(&[0; 12]).is_err(), "a zero mug is not a mug");
    }
}
