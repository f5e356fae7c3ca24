//! Hand-built packets, worked from vere's etch functions, and round-trips.
//!
//! The hex literals were produced by a separate script written from a
//! reading of `_ames_etch_head`, `_ames_etch_prel`, `_fine_etch_peep`,
//! `_fine_etch_meow` and `u3r_mug_bytes` (its own MurmurHash3, checked
//! against retrieve_tests.c), not by this crate.

use std::net::SocketAddrV4;

use seguro_ames::{
    Body, Class, Datagram, Kind, LifeTick, Meow, Packet, ParseError, Peep, Prelude, Purr, Rank,
    RankedShip, ScryPath, Ship, classify_slice, parse,
};

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn tick(n: u8) -> LifeTick {
    LifeTick::new(n).unwrap()
}

fn prelude(sender: u128, receiver: u128, ticks: (u8, u8)) -> Prelude {
    Prelude {
        sender_tick: tick(ticks.0),
        receiver_tick: tick(ticks.1),
        ..Prelude::new(Ship::new(sender), Ship::new(receiver))
    }
}

fn kelvin() -> ScryPath {
    ScryPath::new("/c/x/1/kids/sys/kelvin").unwrap()
}

/// Checks that `hex` parses to `packet`, classifies as `class`, and that
/// `packet` emits exactly `hex`.
fn check(hex: &str, packet: &Packet, class: Class) {
    let bytes = unhex(hex);
    assert_eq!(Packet::parse(&bytes).as_ref(), Ok(packet));
    assert_eq!(parse(&bytes), Ok(Datagram::Ames(packet.clone())));
    assert_eq!(classify_slice(&bytes), class);
    assert_eq!(packet.to_bytes(), bytes);
}

/// ~zod to ~nec, ticks 1 and 2: header word 0xbb50f000 (Ames, version 0,
/// ranks 0/0, checksum 0x76a1e, bit 31 set: not relayed), tick byte 0x21,
/// ships `0000` and `0100`, content.
#[test]
fn ames_zod_to_nec() {
    let packet = Packet {
        prelude: prelude(0, 1, (1, 2)),
        body: Body::Ames(vec![0xde, 0xad, 0xbe, 0xef]),
    };
    check("00f050bb2100000100deadbeef", &packet, Class::Ames);
}

/// Relayed from 1.2.3.4:5678, ~sampel-palnet (rank 1) to a comet (rank 3):
/// bit 31 clear, then the origin `04030201 2e16` (not mugged).
#[test]
fn ames_relayed_planet_to_comet() {
    let packet = Packet {
        prelude: Prelude {
            origin: Some(SocketAddrV4::new([1, 2, 3, 4].into(), 5678)),
            ..prelude(1_624_961_343, (1 << 64) + 5, (15, 0))
        },
        body: Body::Ames(vec![1, 2, 3]),
    };
    check(
        "80d6a13e040302012e160f3ff1da6005000000000000000100000000000000010203",
        &packet,
        Class::Ames,
    );
}

/// A galaxy spelled in 16 bytes to a star spelled in 4: ranks are kept.
#[test]
fn ames_wide_ranks_are_kept() {
    let packet = Packet {
        prelude: Prelude {
            sender: RankedShip::with_rank(Ship::new(2), Rank::Sixteen).unwrap(),
            receiver: RankedShip::with_rank(Ship::new(3), Rank::Four).unwrap(),
            ..prelude(0, 0, (0, 0))
        },
        body: Body::Ames(vec![]),
    };
    check(
        "805b09ea000200000000000000000000000000000003000000",
        &packet,
        Class::Ames,
    );
}

/// A fine request from ~marzod: header bit 3 set (not Ames), bit 2 clear
/// (request); body tag 0, fragment 1, length 0x16, path.
#[test]
fn fine_request() {
    let packet = Packet {
        prelude: prelude(0x100, 0, (0, 0)),
        body: Body::FineRequest(Peep {
            fragment: 1,
            path: kelvin(),
        }),
    };
    check(
        "08e87c890000010000000100000016002f632f782f312f6b6964732f7379732f6b656c76696e",
        &packet,
        Class::FineRequest,
    );
}

/// The response: bits 2 and 3 set; peep, 64-byte signature, 4-byte count
/// (there is data), data.
#[test]
fn fine_response() {
    let packet = Packet {
        prelude: prelude(0, 0x100, (0, 0)),
        body: Body::FineResponse(Purr {
            peep: Peep {
                fragment: 1,
                path: kelvin(),
            },
            meow: Meow {
                signature: [0xab; 64],
                num_fragments: 3,
                data: b"hello".to_vec(),
            },
        }),
    };
    let signature = "ab".repeat(64);
    check(
        &format!(
            "0ce894eb00000000010100000016002f632f782f312f6b6964732f7379732f6b656c76696e\
             {signature}0300000068656c6c6f"
        ),
        &packet,
        Class::FineResponse,
    );
}

/// Without data, the count takes only the bytes it needs (`3412`).
#[test]
fn fine_response_without_data() {
    let packet = Packet {
        prelude: prelude(0, 0x100, (0, 0)),
        body: Body::FineResponse(Purr {
            peep: Peep {
                fragment: 7,
                path: ScryPath::new("/").unwrap(),
            },
            meow: Meow {
                signature: [1; 64],
                num_fragments: 0x1234,
                data: vec![],
            },
        }),
    };
    let signature = "01".repeat(64);
    check(
        &format!("0ca81cc800000000010700000001002f{signature}3412"),
        &packet,
        Class::FineResponse,
    );
}

#[test]
fn mug_mismatch_is_reported_with_both_checksums() {
    let mut bytes = unhex("00f050bb2100000100deadbeef");
    bytes[12] ^= 1;
    let Err(ParseError::MugMismatch {
        header,
        computed,
        start,
        len,
    }) = Packet::parse(&bytes)
    else {
        panic!("expected a mug mismatch");
    };
    assert_eq!(header.get(), 0x76a1e);
    assert_ne!(computed, header);
    assert_eq!((start, len), (4, 13));
    // The classifier does not hash, so it still says Ames.
    assert_eq!(classify_slice(&bytes), Class::Ames);
}

fn bodies() -> [Body; 4] {
    [
        Body::Ames(vec![]),
        Body::Ames(b"some content".to_vec()),
        Body::FineRequest(Peep {
            fragment: 0x0102_0304,
            path: kelvin(),
        }),
        Body::FineResponse(Purr {
            peep: Peep {
                fragment: 9,
                path: kelvin(),
            },
            meow: Meow {
                signature: [0x5a; 64],
                num_fragments: 10,
                data: vec![0; 1024],
            },
        }),
    ]
}

/// The widest ship each rank holds, so every byte of the field is used.
fn widest(rank: Rank) -> Ship {
    Ship::new(u128::MAX >> (128 - 8 * rank.width()))
}

#[test]
fn every_rank_pair_relayed_or_not_round_trips() {
    let origins = [None, Some(SocketAddrV4::new([192, 0, 2, 1].into(), 65535))];
    for sender_rank in Rank::ALL {
        for receiver_rank in Rank::ALL {
            for origin in origins {
                for body in bodies() {
                    let packet = Packet {
                        prelude: Prelude {
                            sender: RankedShip::with_rank(widest(sender_rank), sender_rank)
                                .unwrap(),
                            receiver: RankedShip::with_rank(Ship::new(1), receiver_rank).unwrap(),
                            sender_tick: tick(15),
                            receiver_tick: tick(7),
                            origin,
                        },
                        body,
                    };
                    let bytes = packet.to_bytes();
                    let expected_len = 4 + packet.prelude.encoded_len();
                    assert!(bytes.len() >= expected_len);
                    assert_eq!(Packet::parse(&bytes), Ok(packet.clone()), "{bytes:02x?}");
                    let class = classify_slice(&bytes);
                    assert_eq!(parse(&bytes).map(|d| d.class()), Ok(class));
                    let kind = match class {
                        Class::Ames => Kind::Ames,
                        Class::FineRequest => Kind::FineRequest,
                        Class::FineResponse => Kind::FineResponse,
                        other => panic!("classified as {other:?}"),
                    };
                    assert_eq!(kind, packet.body.kind());
                }
            }
        }
    }
}

#[test]
fn encode_into_appends() {
    let packet = Packet {
        prelude: prelude(0, 1, (1, 2)),
        body: Body::Ames(vec![0xde, 0xad, 0xbe, 0xef]),
    };
    let mut out = vec![0xff];
    packet.encode_into(&mut out);
    assert_eq!(out[0], 0xff);
    assert_eq!(out[1..], packet.to_bytes());
}

/// The shortest packet of each kind sits exactly on the classifier's
/// length bound, for every rank pair, relayed or not: one byte less and
/// both `classify` and `parse` reject it.
#[test]
fn shortest_packets_sit_on_the_classifier_bound() {
    let slash = || ScryPath::new("/").unwrap();
    let shortest = [
        Body::Ames(vec![]),
        Body::FineRequest(Peep {
            fragment: 0,
            path: slash(),
        }),
        // vere reads no fine response body (`_fine_hear_response`).
        Body::OpaqueFineResponse(vec![]),
    ];
    let origins = [None, Some(SocketAddrV4::new([10, 0, 0, 1].into(), 1))];
    for sender_rank in Rank::ALL {
        for receiver_rank in Rank::ALL {
            for origin in origins {
                for body in shortest.clone() {
                    let packet = Packet {
                        prelude: Prelude {
                            sender: RankedShip::with_rank(Ship::new(0), sender_rank).unwrap(),
                            receiver: RankedShip::with_rank(Ship::new(0), receiver_rank).unwrap(),
                            origin,
                            ..prelude(0, 0, (0, 0))
                        },
                        body,
                    };
                    let bytes = packet.to_bytes();
                    assert!(!matches!(classify_slice(&bytes), Class::Malformed(_)));
                    assert!(parse(&bytes).is_ok());
                    let short = &bytes[..bytes.len() - 1];
                    assert_eq!(
                        classify_slice(short),
                        Class::Malformed(seguro_ames::Defect::Truncated),
                        "{packet:?}"
                    );
                    assert!(parse(short).is_err());
                }
            }
        }
    }
}
