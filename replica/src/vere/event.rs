//! vere's events as jammed nouns: `[now ovum]` for a heard packet or a
//! timer, and `[%boot i]` for a boot event.
//!
//! `now` is the leader's clock in microseconds since the Unix epoch. The
//! ova: a classic Ames packet is `[[%ames ~] [%hear [%.n chub] blob]]` with
//! `chub = ip | port << 32` (vere's `u3_ames_encode_lane`), a mesa packet
//! `[[%mesa ~] [%heer [%if ip port] blob]]`, a timer `[[%behn ~] [%wake ~]]`;
//! `blob` is the packet as an atom (so its trailing zero bytes are lost, as
//! in vere's `u3i_bytes`). vere's lanes hold only IPv4: a packet from an IPv6
//! peer gets the lane `[%ip6 ip port]`, which no card reader accepts, so the
//! event is chained but never answered (vere's king drops such packets).

use std::net::{IpAddr, SocketAddr, SocketAddrV4};

use ames::Lane;

use super::noun::{Noun, Nouns};

/// What an event asks of the ship, when it is one [`VereShip`] acts on.
///
/// [`VereShip`]: super::VereShip
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Card {
    /// A classic Ames packet, `%hear` on wire `/ames`.
    Hear { lane: Lane, blob: Vec<u8> },
    /// A mesa packet, `%heer` on wire `/mesa`.
    Heer { lane: Lane, blob: Vec<u8> },
    /// A timer, `%wake` on wire `/behn`.
    Wake,
}

/// The event hearing `packet` from `lane` at `now_us`: `%heer` if its first
/// bytes say mesa (vere's `_mesa_hear` asks `mesa_is_new_pact` first), else
/// `%hear`. vere drops a mesa packet that then fails to parse; here it is
/// heard, and gets no answer.
pub fn packet_event(now_us: u64, lane: Lane, packet: &[u8]) -> Vec<u8> {
    let mesa = ames::classify_slice(packet) == ames::Class::Mesa;
    let mut n = Nouns::new();
    let lane = match lane.addr() {
        SocketAddr::V4(addr) if mesa => {
            let tag = n.cord("if");
            let ip = n.atom_u64(addr.ip().to_bits().into());
            let port = n.atom_u64(addr.port().into());
            n.tuple(&[tag, ip, port])
        }
        SocketAddr::V4(addr) => {
            let no = n.atom_u64(1);
            let chub = n.atom_u64(u64::from(addr.ip().to_bits()) | u64::from(addr.port()) << 32);
            n.tuple(&[no, chub])
        }
        SocketAddr::V6(addr) => {
            let tag = n.cord("ip6");
            let ip = n.atom(&addr.ip().to_bits().to_le_bytes());
            let port = n.atom_u64(addr.port().into());
            n.tuple(&[tag, ip, port])
        }
    };
    let lane = lane.expect("three nouns");
    let (wire, tag) = if mesa {
        ("mesa", "heer")
    } else {
        ("ames", "hear")
    };
    let tag = n.cord(tag);
    let blob = n.atom(packet);
    let card = n.tuple(&[tag, lane, blob]).expect("three nouns");
    event(&mut n, now_us, wire, card)
}

/// The timer event at `now_us`.
pub fn wake_event(now_us: u64) -> Vec<u8> {
    let mut n = Nouns::new();
    let wake = n.cord("wake");
    let nil = n.atom(&[]);
    let card = n.cell(wake, nil);
    event(&mut n, now_us, "behn", card)
}

/// Boot event `i` as the C runtime plans it: `[%boot i]`. Any noun will do
/// for a boot event; this one carries no time.
pub fn boot_event(i: u64) -> Vec<u8> {
    let mut n = Nouns::new();
    let boot = n.cord("boot");
    let i = n.atom_u64(i);
    let event = n.cell(boot, i);
    n.jam(event)
}

/// `jam([now [[wire ~] card]])`.
fn event(n: &mut Nouns, now_us: u64, wire: &str, card: Noun) -> Vec<u8> {
    let now = n.atom_u64(now_us);
    let wire = n.cord(wire);
    let nil = n.atom(&[]);
    let wire = n.cell(wire, nil);
    let event = n.tuple(&[now, wire, card]).expect("three nouns");
    n.jam(event)
}

/// Reads `[now [wire card]]`: the time, and the card if it is one of
/// [`Card`]'s shapes exactly. `None` if the bytes do not cue or are not
/// `[now ovum]` with a time of at most 64 bits.
pub fn read_event(event: &[u8]) -> Option<(u64, Option<Card>)> {
    let mut n = Nouns::new();
    let noun = n.cue(event).ok()?;
    let (now, ovum) = n.split(noun)?;
    let now = n.as_u64(now)?;
    let (wire, card) = n.split(ovum)?;
    // A wire is a path: a cell. This tells `[now ovum]` from `[%boot i]`.
    n.split(wire)?;
    Some((now, read_card(&n, wire, card)))
}

fn read_card(n: &Nouns, wire: Noun, card: Noun) -> Option<Card> {
    let (wire, end) = n.split(wire)?;
    if n.bytes(end)? != b"" {
        return None;
    }
    let (tag, rest) = n.split(card)?;
    match (n.bytes(wire)?, n.bytes(tag)?) {
        (b"behn", b"wake") if n.bytes(rest)? == b"" => Some(Card::Wake),
        (b"ames", b"hear") => {
            let (lane, blob) = n.split(rest)?;
            let (no, chub) = n.split(lane)?;
            if n.as_u64(no)? != 1 {
                return None;
            }
            let chub = n.as_u64(chub)?;
            let port = u16::try_from(chub >> 32).ok()?;
            let lane = SocketAddrV4::new((chub as u32).into(), port);
            Some(Card::Hear {
                lane: lane.into(),
                blob: n.bytes(blob)?.to_vec(),
            })
        }
        (b"mesa", b"heer") => {
            let (lane, blob) = n.split(rest)?;
            let (tag, addr) = n.split(lane)?;
            if n.bytes(tag)? != b"if" {
                return None;
            }
            let (ip, port) = n.split(addr)?;
            let ip = u32::try_from(n.as_u64(ip)?).ok()?;
            let port = u16::try_from(n.as_u64(port)?).ok()?;
            let lane = SocketAddr::new(IpAddr::V4(ip.into()), port);
            Some(Card::Heer {
                lane: lane.into(),
                blob: n.bytes(blob)?.to_vec(),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddrV6;

    use super::*;

    const NOW: u64 = 1_780_000_000_000_000;

    /// An Ames packet from ~marzod to ~nec carrying "ping".
    fn ping() -> Vec<u8> {
        ames::Packet {
            prelude: ames::Prelude::new(ames::Ship::new(0x1234), ames::Ship::new(1)),
            body: ames::Body::Ames(b"ping".to_vec()),
        }
        .to_bytes()
    }

    /// Header and cookie of a mesa packet: what tells mesa apart.
    fn mesa() -> Vec<u8> {
        let word: u32 = (1 << 4) | (3 << 7) | (0x1_2345 << 12);
        let mut out = word.to_le_bytes().to_vec();
        out.extend_from_slice(&[0x00, 0x02, 0xe0, 0x67, 1, 2, 3]);
        out
    }

    fn vector(description: &str) -> Vec<u8> {
        let file = include_str!("../../tests/data/jam-vectors.txt");
        let line = file
            .lines()
            .find(|l| l.split_once(' ').is_some_and(|(_, d)| d == description))
            .expect(description);
        let hex = line.split_once(' ').unwrap().0;
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn builds_the_events_the_vector_file_holds() {
        let lane: Lane = "192.0.2.9:4000".parse().unwrap();
        assert_eq!(
            packet_event(NOW, lane, &ping()),
            vector(
                "[0x652e68bb34000 [%ames ~] [%hear [1 0xfa0c0000209] 0x676e697000011234008bdc9800]]"
            )
        );
        assert_eq!(
            wake_event(NOW + 2),
            vector("[0x652e68bb34002 [%behn ~] [%wake ~]]")
        );
        assert_eq!(boot_event(1), vector("[%boot 1]"));
    }

    #[test]
    fn reads_back_what_it_builds() {
        let lane: Lane = "192.0.2.9:4000".parse().unwrap();
        let hear = packet_event(NOW, lane, &ping());
        assert_eq!(
            read_event(&hear),
            Some((NOW, Some(Card::Hear { lane, blob: ping() })))
        );
        assert_eq!(
            read_event(&packet_event(NOW, lane, &mesa())),
            Some((NOW, Some(Card::Heer { lane, blob: mesa() })))
        );
        assert_eq!(read_event(&wake_event(7)), Some((7, Some(Card::Wake))));
        // A blob is an atom: its trailing zero bytes are gone.
        let mut zeros = ping();
        zeros.extend_from_slice(&[0, 0]);
        assert_eq!(
            read_event(&packet_event(NOW, lane, &zeros)),
            read_event(&hear)
        );
    }

    #[test]
    fn boot_events_ipv6_and_odd_shapes_carry_no_card() {
        // A boot event is not `[now ovum]`: no time either.
        assert_eq!(read_event(&boot_event(1)), None);
        assert_eq!(read_event(b"\xff\x00garbage"), None);
        let v6 = Lane::from(SocketAddrV6::new(
            "2001:db8::1".parse().unwrap(),
            4000,
            0,
            0,
        ));
        assert_eq!(
            read_event(&packet_event(NOW, v6, &ping())),
            Some((NOW, None))
        );
        assert_eq!(
            read_event(&packet_event(NOW, v6, &mesa())),
            Some((NOW, None))
        );

        let mut n = Nouns::new();
        let event = |n: &mut Nouns, wire: &str, card: &str| {
            let text = format!("[{NOW} [{wire} ~] {card}]");
            let noun = crate::vere::text::parse(n, &text).expect(&text);
            read_event(&n.jam(noun))
        };
        // A chub over 48 bits, a lane that is not `%.n`, a card on the
        // wrong wire, a `%wake` with something after it.
        for (wire, card) in [
            ("%ames", "[%hear [1 0x1000000000000] 5]"),
            ("%ames", "[%hear [0 0xfa0c0000209] 5]"),
            ("%mesa", "[%hear [1 0xfa0c0000209] 5]"),
            ("%mesa", "[%heer [%if 0x100000000 1] 5]"),
            ("%ames", "[%heer [%if 1 1] 5]"),
            ("%behn", "[%wake 1]"),
        ] {
            assert_eq!(
                event(&mut n, wire, card),
                Some((NOW, None)),
                "{wire} {card}"
            );
        }
        assert_eq!(
            event(&mut n, "%mesa", "[%heer [%if 0xc0000209 4000] 5]"),
            Some((
                NOW,
                Some(Card::Heer {
                    lane: "192.0.2.9:4000".parse().unwrap(),
                    blob: vec![5]
                })
            ))
        );
    }
}
