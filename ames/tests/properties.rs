//! Property tests: `classify` and `parse` never panic and agree, and every
//! packet round-trips through `to_bytes` and `parse`.

mod common;

use std::net::SocketAddrV4;

use common::{Auth, Data, Name};
use proptest::prelude::*;
use seguro_ames::{
    Body, Class, Datagram, LifeTick, Meow, Packet, Peep, Prelude, Purr, Rank, RankedShip, ScryPath,
    Ship, classify_slice, decode, parse,
};

/// What `classify` and `parse` must agree on, for any input:
///
/// - a successful parse has the class `classify` gives, except that a STUN
///   look-alike with a bad FINGERPRINT may parse as an Ames-family packet
///   (vere tries it as one);
/// - whatever `classify` calls malformed does not parse;
/// - every error `is_shallow` is also caught by `classify`;
/// - errors point inside the packet (or just past its end).
fn check_agreement(bytes: &[u8]) -> Result<(), TestCaseError> {
    let class = classify_slice(bytes);
    let parsed = parse(bytes);
    let _ = decode(bytes).to_string();
    match &parsed {
        Ok(datagram) => {
            let stun_fallback = class == Class::Stun && matches!(datagram, Datagram::Ames(_));
            prop_assert!(
                datagram.class() == class || stun_fallback,
                "{class:?} vs {datagram:?}"
            );
        }
        Err(error) => {
            prop_assert!(error.offset() <= bytes.len(), "{error}");
            if error.is_shallow() {
                prop_assert!(matches!(class, Class::Malformed(_)), "{class:?}: {error}");
            }
        }
    }
    if matches!(class, Class::Malformed(_)) {
        prop_assert!(parsed.is_err(), "{class:?} but parsed");
    }
    if let Ok(Datagram::Ames(packet)) = parsed {
        let emitted = packet.to_bytes();
        prop_assert_eq!(Packet::parse(&emitted), Ok(packet.clone()));
        // Emitting only normalizes what vere ignores: the reserved header
        // bits (and an Ames packet's request bit), and the width of a fine
        // response's fragment count when it has no data.
        if !matches!(packet.body, Body::FineResponse(_)) {
            prop_assert_eq!(&emitted[4..], &bytes[4..]);
            let ignored = 0b111u8;
            prop_assert_eq!(emitted[0] & !ignored, bytes[0] & !ignored);
            prop_assert_eq!(&emitted[1..4], &bytes[1..4]);
        }
    }
    Ok(())
}

fn ranked_ship() -> impl Strategy<Value = RankedShip> {
    prop::sample::select(Rank::ALL.to_vec()).prop_flat_map(|rank| {
        let max = u128::MAX >> (128 - 8 * rank.width());
        (0..=max).prop_map(move |n| RankedShip::with_rank(Ship::new(n), rank).unwrap())
    })
}

fn prelude() -> impl Strategy<Value = Prelude> {
    (
        ranked_ship(),
        ranked_ship(),
        0..16u8,
        0..16u8,
        prop::option::of(any::<(u32, u16)>()),
    )
        .prop_map(
            |(sender, receiver, sender_tick, receiver_tick, origin)| Prelude {
                sender,
                receiver,
                sender_tick: LifeTick::new(sender_tick).unwrap(),
                receiver_tick: LifeTick::new(receiver_tick).unwrap(),
                origin: origin.map(|(ip, port)| SocketAddrV4::new(ip.into(), port)),
            },
        )
}

fn scry_path() -> impl Strategy<Value = ScryPath> {
    "/[ -~]{0,383}".prop_map(|path| ScryPath::new(&path).unwrap())
}

fn peep() -> impl Strategy<Value = Peep> {
    (any::<u32>(), scry_path()).prop_map(|(fragment, path)| Peep { fragment, path })
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200).prop_map(Body::Ames),
        peep().prop_map(Body::FineRequest),
        (
            peep(),
            any::<[u8; 64]>(),
            any::<u32>(),
            prop::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(peep, signature, num_fragments, data)| {
                Body::FineResponse(Purr {
                    peep,
                    meow: Meow {
                        signature,
                        num_fragments,
                        data,
                    },
                })
            }),
        // Shorter than any etched purr (peep of at least 7 bytes and a
        // 64-byte signature), so it parses back opaque.
        prop::collection::vec(any::<u8>(), 0..71).prop_map(Body::OpaqueFineResponse),
    ]
}

fn packet() -> impl Strategy<Value = Packet> {
    (prelude(), body()).prop_map(|(prelude, body)| Packet { prelude, body })
}

/// Ways to damage a valid datagram.
#[derive(Clone, Debug)]
enum Damage {
    None,
    Truncate(usize),
    Flip(usize, u8),
    Append(Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        Just(Damage::None),
        any::<usize>().prop_map(Damage::Truncate),
        (any::<usize>(), 1..=255u8).prop_map(|(at, bits)| Damage::Flip(at, bits)),
        prop::collection::vec(any::<u8>(), 1..8).prop_map(Damage::Append),
    ]
}

fn apply(mut bytes: Vec<u8>, damage: &Damage) -> Vec<u8> {
    match damage {
        Damage::None => {}
        Damage::Truncate(at) => bytes.truncate(at % (bytes.len() + 1)),
        Damage::Flip(at, bits) => {
            if !bytes.is_empty() {
                let at = at % bytes.len();
                bytes[at] ^= bits;
            }
        }
        Damage::Append(tail) => bytes.extend_from_slice(tail),
    }
    bytes
}

/// RFC 8489's FINGERPRINT CRC, written out bit by bit so the test does not
/// share the crate's CRC implementation.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A STUN binding request with extra attribute bytes before FINGERPRINT.
fn stun_request() -> impl Strategy<Value = Vec<u8>> {
    (any::<[u8; 12]>(), prop::collection::vec(0..0x80u8, 0..24)).prop_map(|(id, middle)| {
        let mut out = vec![0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42];
        out.extend_from_slice(&id);
        out.extend_from_slice(&middle);
        let fingerprint = crc32(&out) ^ 0x5354_554e;
        out.extend_from_slice(&[0x80, 0x28, 0x00, 0x04]);
        out.extend_from_slice(&fingerprint.to_be_bytes());
        out
    })
}

fn mesa_name() -> impl Strategy<Value = Name> {
    (
        (0..4u8, any::<u128>(), 0..4u8, any::<u32>(), any::<u8>()),
        (any::<bool>(), any::<bool>(), 0..4u8, any::<u64>()),
        prop::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(
            |((rank, ship, rift_code, rift, bloq), (init, auth, fragment_code, fragment), path)| {
                Name {
                    rank,
                    ship,
                    rift_code,
                    rift,
                    bloq,
                    init,
                    // An init name has neither (vere asserts it).
                    auth: auth && !init,
                    fragment_code: if init { 0 } else { fragment_code },
                    fragment,
                    path,
                }
            },
        )
}

fn mesa_data() -> impl Strategy<Value = Data> {
    (
        (
            0..4u8,
            any::<u64>(),
            prop::sample::select(Auth::ALL.to_vec()),
        ),
        (0..=4u8, any::<bool>()),
        prop::collection::vec(any::<u8>(), 1..60),
    )
        .prop_map(
            |((total_code, total, auth), (len_width, len_byte), fragment)| {
                Data {
                    total_code,
                    total,
                    auth,
                    len_width,
                    len_byte,
                    // A zero-width length says the fragment is empty.
                    fragment: if len_width == 0 { vec![] } else { fragment },
                }
            },
        )
}

/// A well-formed mesa packet of a non-reserved type, etched as vere's
/// `_mesa_etch_pact` would (widths not minimised), with any hop count and,
/// on peeks and pokes, any next-hop bits.
fn mesa() -> impl Strategy<Value = Vec<u8>> {
    (
        1..4u32,
        0..4u32,
        0..8u32,
        mesa_name(),
        mesa_name(),
        mesa_data(),
        any::<[u8; 6]>(),
    )
        .prop_map(|(kind, next_hop, hops, name, payload, data, lane)| {
            let (next_hop, body) = match kind {
                common::PAGE => {
                    // Pages take only none or short.
                    let short = next_hop & 1;
                    let lane = if short == 1 { &lane[..] } else { &[] };
                    (short, common::page_body(&name, &data, lane))
                }
                common::PEEK => (next_hop, common::peek_body(&name)),
                _ => (next_hop, common::poke_body(&name, &payload, &data)),
            };
            let mut out = common::head(kind, next_hop, hops, &body);
            out.extend_from_slice(&body);
            out
        })
}

/// Random bytes behind a chosen first 8: an Ames-family header word, or a
/// mesa or STUN prefix, so the classifier's branches all get exercised.
fn near_misses() -> impl Strategy<Value = Vec<u8>> {
    let prefix = prop_oneof![
        any::<[u8; 4]>().prop_map(|word| [word[0] & 0x8f, word[1], word[2], word[3], 0, 0, 0, 0]),
        any::<[u8; 4]>()
            .prop_map(|word| [word[0], word[1], word[2], word[3], 0x00, 0x02, 0xe0, 0x67]),
        prop::sample::select(vec![0x00u8, 0x01])
            .prop_map(|kind| [kind, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42]),
    ];
    (
        prefix,
        prop::collection::vec(any::<u8>(), 0..80),
        0..=8usize,
    )
        .prop_map(|(prefix, tail, keep)| {
            let mut out = prefix[..keep].to_vec();
            if keep == 8 {
                out.extend_from_slice(&tail);
            }
            out
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn arbitrary_bytes_agree(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        check_agreement(&bytes)?;
    }

    #[test]
    fn near_misses_agree(bytes in near_misses()) {
        check_agreement(&bytes)?;
    }

    #[test]
    fn packets_round_trip(packet in packet()) {
        let bytes = packet.to_bytes();
        prop_assert_eq!(Packet::parse(&bytes), Ok(packet.clone()));
        prop_assert_eq!(parse(&bytes), Ok(Datagram::Ames(packet)));
        check_agreement(&bytes)?;
    }

    #[test]
    fn damaged_packets_agree(packet in packet(), damage in damage()) {
        check_agreement(&apply(packet.to_bytes(), &damage))?;
    }

    #[test]
    fn stun_requests_parse(request in stun_request(), damage in damage()) {
        prop_assert_eq!(parse(&request).map(|d| d.class()), Ok(Class::Stun));
        check_agreement(&apply(request, &damage))?;
    }

    #[test]
    fn mesa_packets_parse(packet in mesa(), damage in damage()) {
        prop_assert_eq!(parse(&packet).map(|d| d.class()), Ok(Class::Mesa));
        check_agreement(&apply(packet, &damage))?;
    }
}
