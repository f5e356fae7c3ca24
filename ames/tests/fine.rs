//! Fine responses are let through as vere's `_ames_hear` lets them through:
//! header, version, mug and prelude are checked, then `_fine_hear_response`
//! injects the whole packet without reading its body.

use std::net::SocketAddrV4;

use seguro_ames::{
    Body, Class, Datagram, Header, Kind, Mug, Packet, Prelude, Rank, RankedShip, Ship, Version,
    classify_slice, decode, parse,
};

/// A fine response with `body` after the prelude, checksummed as vere
/// checks it (everything after the origin lane): the Ames packet with the
/// same bytes, its header's kind bits changed.
fn purr(prelude: &Prelude, body: &[u8]) -> Vec<u8> {
    let mut bytes = Packet {
        prelude: *prelude,
        body: Body::Ames(body.to_vec()),
    }
    .to_bytes();
    let header = Header {
        kind: Kind::FineResponse,
        ..Header::sift([bytes[0], bytes[1], bytes[2], bytes[3]])
    };
    bytes[..4].copy_from_slice(&header.etch());
    bytes
}

fn preludes() -> Vec<Prelude> {
    let mut out = vec![];
    for sender in Rank::ALL {
        for receiver in Rank::ALL {
            for origin in [None, Some(SocketAddrV4::new([10, 0, 0, 1].into(), 1))] {
                out.push(Prelude {
                    sender: RankedShip::with_rank(Ship::new(0x100), sender).unwrap(),
                    receiver: RankedShip::with_rank(Ship::new(1), receiver).unwrap(),
                    origin,
                    ..Prelude::new(Ship::new(0), Ship::new(0))
                });
            }
        }
    }
    out
}

/// Any body at all, the empty one included, as long as mug and prelude
/// pass: bodies shorter than the 71 bytes `_fine_etch_response` writes at
/// least, a path vere's path parser would refuse, a 385-byte path.
#[test]
fn any_body_after_a_good_mug_and_prelude_is_a_fine_response() {
    let mut long_path = vec![0, 0, 0, 0, 0x81, 0x01, b'/'];
    long_path.resize(6 + 385 + 64, b'a');
    let bodies: [&[u8]; 5] = [&[], &[1], &[9; 70], b"\x01\0\0\0\x02\0ab", &long_path];
    for prelude in preludes() {
        for body in bodies {
            let bytes = purr(&prelude, body);
            assert_eq!(classify_slice(&bytes), Class::FineResponse, "{body:02x?}");
            assert_eq!(
                parse(&bytes).map(|d| d.class()),
                Ok(Class::FineResponse),
                "{body:02x?}"
            );
            let Ok(Datagram::Ames(packet)) = parse(&bytes) else {
                unreachable!()
            };
            assert_eq!(packet.body, Body::OpaqueFineResponse(body.to_vec()));
            assert_eq!(packet.to_bytes(), bytes);
            let decoded = decode(&bytes);
            assert_eq!(decoded.class(), "fine-response");
            assert_eq!(
                decoded.get("body_hex").map(ToString::to_string),
                Some(body.iter().map(|b| format!("{b:02x}")).collect())
            );
        }
    }
}

/// The shortest fine response is header and prelude: one byte less is cut
/// inside the prelude.
#[test]
fn the_shortest_fine_response_is_header_and_prelude() {
    for prelude in preludes() {
        let bytes = purr(&prelude, &[]);
        assert_eq!(bytes.len(), 4 + prelude.encoded_len());
        assert!(matches!(parse(&bytes), Ok(Datagram::Ames(_))));
        let mut short = bytes[..bytes.len() - 1].to_vec();
        // Keep the mug right, so only the length is wrong.
        let fixed = purr_header_for(&prelude, &short);
        short[..4].copy_from_slice(&fixed);
        assert!(matches!(classify_slice(&short), Class::Malformed(_)));
        assert!(parse(&short).is_err());
    }
}

fn purr_header_for(prelude: &Prelude, bytes: &[u8]) -> [u8; 4] {
    let origin = if prelude.origin.is_some() { 6 } else { 0 };
    Header {
        kind: Kind::FineResponse,
        version: Version::AMES,
        sender_rank: prelude.sender.rank(),
        receiver_rank: prelude.receiver.rank(),
        checksum: Mug::of(&bytes[4 + origin..]).checksum(),
        relayed: prelude.origin.is_some(),
    }
    .etch()
}

/// The mug is still checked.
#[test]
fn a_bad_mug_is_still_dropped() {
    let prelude = Prelude::new(Ship::new(0x100), Ship::new(1));
    let mut bytes = purr(&prelude, &[1, 2, 3]);
    *bytes.last_mut().unwrap() ^= 1;
    assert!(parse(&bytes).is_err());
}
