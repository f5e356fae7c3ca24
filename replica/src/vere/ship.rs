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

#[cfg(test)]
mod tests {
    use ames::{Body, Packet, Prelude, Ship as ShipName};
    use config::{ReplicaId, Role};
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::checkpoint::CheckpointStore;
    use crate::port::{self, Command, Notice};
    use crate::runtime::ShipRuntime;
    use crate::vere::{boot_event, packet_event, wake_event};

    const NOW: u64 = 1_780_000_000_000_000;

    fn lane() -> Lane {
        "192.0.2.9:4000".parse().unwrap()
    }

    fn ping(content: &[u8]) -> Vec<u8> {
        Packet {
            prelude: Prelude::new(ShipName::new(0x1234), ShipName::new(1)),
            body: Body::Ames(content.to_vec()),
        }
        .to_bytes()
    }

    /// Boot events, packets, a timer and bytes that do not cue.
    fn events() -> Vec<Vec<u8>> {
        let mut events: Vec<_> = (1..=3).map(boot_event).collect();
        events.push(packet_event(NOW, lane(), &ping(b"a")));
        events.push(wake_event(NOW + 1));
        events.push(b"\x01\x02 not a noun".to_vec());
        events.push(packet_event(NOW + 2, lane(), &ping(b"b")));
        events
    }

    /// The chain, computed here from the spec: the seed's mug, then
    /// `mug(BE32(mug) ++ event)` for every event.
    fn chain(events: &[Vec<u8>]) -> Vec<Mug> {
        let mut mug = Mug::of(b"seguro vere-shaped ship");
        events
            .iter()
            .map(|e| {
                mug = Mug::of(&[&mug.get().to_be_bytes()[..], e].concat());
                mug
            })
            .collect()
    }

    #[test]
    fn chains_every_event_as_the_spec_says() {
        let events = events();
        let mut ship = VereShip::new();
        let mugs: Vec<Mug> = events
            .iter()
            .enumerate()
            .map(|(i, e)| ship.apply(EventNum(i as u64 + 1), e).unwrap().mug)
            .collect();
        assert_eq!(mugs, chain(&events));
        assert_eq!(ship.last(), EventNum(events.len() as u64));
    }

    /// The answer to a `%hear` is the reference ship's answer for the same
    /// event number and mug, built here independently.
    #[test]
    fn answers_a_hear_as_the_reference_ship_does() {
        let events = events();
        let mugs = chain(&events);
        let mut ship = VereShip::new();
        for (i, e) in events.iter().enumerate() {
            let num = EventNum(i as u64 + 1);
            let applied = ship.apply(num, e).unwrap();
            let answered = [4, 7].contains(&num.get());
            assert_eq!(applied.effects.len(), usize::from(answered), "event {num}");
            if !answered {
                continue;
            }
            let mut content = num.get().to_be_bytes().to_vec();
            content.extend_from_slice(&mugs[i].get().to_be_bytes());
            let expected = Packet {
                prelude: Prelude::new(ShipName::new(1), ShipName::new(0x1234)),
                body: Body::Ames(content.clone()),
            }
            .to_bytes();
            assert_eq!(
                applied.effects,
                [Effect {
                    lane: lane(),
                    payload: expected
                }]
            );
            assert_eq!(
                crate::ReferenceShip::read_answer(&content),
                Some((num, mugs[i].get()))
            );
        }
    }

    /// `%heer` pushes the same answer to its one lane, if its blob is a
    /// classic Ames packet; a real mesa packet gets none.
    #[test]
    fn answers_a_heer_of_an_ames_packet_and_not_of_mesa() {
        let mut n = crate::vere::Nouns::new();
        let text = format!(
            "[{NOW} [%mesa ~] [%heer [%if 0xc0000209 4001] 0x{}]]",
            ping(b"c")
                .iter()
                .rev()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let noun = crate::vere::text::parse(&mut n, &text).unwrap();
        let heer = n.jam(noun);
        let mut ship = VereShip::new();
        let applied = ship.apply(EventNum(1), &heer).unwrap();
        let [effect] = &applied.effects[..] else {
            panic!("one push: {applied:?}")
        };
        assert_eq!(effect.lane, "192.0.2.9:4001".parse().unwrap());
        assert_eq!(
            Some(effect.payload.clone()),
            reference::answer(EventNum(1), applied.mug, &ping(b"c"))
        );

        let word: u32 = (1 << 4) | (3 << 7);
        let mut mesa = word.to_le_bytes().to_vec();
        mesa.extend_from_slice(&[0x00, 0x02, 0xe0, 0x67, 9]);
        let applied = ship
            .apply(EventNum(2), &packet_event(NOW, lane(), &mesa))
            .unwrap();
        assert!(applied.effects.is_empty());
    }

    #[test]
    fn refuses_events_out_of_order_only() {
        let mut ship = VereShip::new();
        assert!(matches!(
            ship.apply(EventNum(2), &wake_event(1)),
            Err(ShipError::OutOfOrder { .. })
        ));
        assert_eq!(ship.last(), EventNum::NONE);
        let applied = ship.apply(EventNum(1), b"").unwrap();
        assert!(applied.effects.is_empty());
    }

    #[test]
    fn checkpoint_restores_the_chain_and_reset_forgets_it() {
        let events = events();
        let mut a = VereShip::new();
        for (i, e) in events[..4].iter().enumerate() {
            a.apply(EventNum(i as u64 + 1), e).unwrap();
        }
        let mut b = VereShip::new();
        b.restore(&a.checkpoint()).unwrap();
        assert_eq!(b.last(), EventNum(4));
        for (i, e) in events.iter().enumerate().skip(4) {
            let num = EventNum(i as u64 + 1);
            assert_eq!(a.apply(num, e).unwrap(), b.apply(num, e).unwrap());
        }
        assert!(b.restore(&[0; 5]).is_err());
        b.reset();
        assert_eq!((b.last(), b.mug()), (EventNum::NONE, VereShip::new().mug()));
    }

    #[test]
    fn reads_the_time_of_its_events_only() {
        let ship = VereShip::new();
        assert_eq!(ship.time_of(&wake_event(NOW)), Some(NOW));
        assert_eq!(ship.time_of(&boot_event(1)), None);
        let event = ship.event_of(NOW, lane(), &ping(b"d"));
        assert_eq!(event, packet_event(NOW, lane(), &ping(b"d")));
        assert_eq!(ship.time_of(&event), Some(NOW));
        // A reference ship's event is not one of vere's.
        let reference = crate::ReferenceShip::new(crate::Variant::Deterministic);
        assert_eq!(ship.time_of(&reference.event_of(NOW, lane(), b"x")), None);
    }

    /// The in-process runtime plans vere's events for a `VereShip`, and
    /// stamps after the time of the events it replayed: it asks the ship
    /// to build and read them.
    #[tokio::test]
    async fn the_runtime_plans_and_reads_veres_events() {
        let dir = tempfile::tempdir().unwrap();
        let pki = testkit::Pki::new(dir.path().join("tls"), "test").unwrap();
        let credentials = pki
            .credentials(Role::Replica(ReplicaId::new(1).unwrap()))
            .unwrap();
        let store = CheckpointStore::new(dir.path().join("checkpoints"));
        let (mut agent, runtime) = port::port(16);
        let runtime = ShipRuntime::new(
            Box::new(VereShip::new()),
            store,
            runtime,
            1000,
            vec![],
            credentials,
        );
        let stop = CancellationToken::new();
        let running = tokio::spawn(runtime.run(stop.clone()));

        // An hour ahead of this host's clock: the last leader's was.
        let future = crate::clock::Clock::default().now_us() + 3_600_000_000;
        let replayed = [boot_event(1), packet_event(future, lane(), &ping(b"e"))];
        for (i, data) in replayed.iter().enumerate() {
            let num = EventNum(i as u64 + 1);
            let data = bytes::Bytes::from(data.clone());
            agent
                .notices
                .send(Notice::Replay {
                    num,
                    data,
                    recorded: crate::port::Recorded::Boot,
                })
                .await
                .unwrap();
        }
        let next = EventNum(3);
        let epoch = leadership::Epoch(2);
        agent
            .notices
            .send(Notice::Lead { epoch, next })
            .await
            .unwrap();
        let packet = ping(b"f");
        let id = crate::buffer::PacketId::of(lane(), &packet);
        let lane = lane();
        agent
            .notices
            .send(Notice::Packet { lane, packet, id })
            .await
            .unwrap();
        let (num, mug, data) = loop {
            if let Command::Plan { num, mug, data, .. } = agent.commands.recv().await.unwrap() {
                break (num, mug, data);
            }
        };
        assert_eq!(num, next);
        let stamped = VereShip::new().time_of(&data).expect("a vere event");
        assert!(stamped > future, "stamped {stamped}, before {future}");
        assert_eq!(data[..], packet_event(stamped, lane, &ping(b"f"))[..]);
        let mut expected = replayed.to_vec();
        expected.push(data.to_vec());
        let mug = mug.expect("a planned event has a mug");
        assert_eq!(mug, chain(&expected)[2]);
        let Command::Send { num, payload, .. } = agent.commands.recv().await.unwrap() else {
            panic!("the answer follows the plan")
        };
        assert_eq!(num, next);
        assert_eq!(Some(payload), reference::answer(next, mug, &ping(b"f")));
        stop.cancel();
        running.await.unwrap().unwrap();
    }
}
