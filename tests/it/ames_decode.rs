//! `seguro ames decode` on upstream mug vectors and on packets of every rank
//! combination, relayed and not.

use std::net::SocketAddrV4;

use ames::{Body, Checksum, Header, Kind, Packet, Prelude, Rank, Ship, Version};
use assert_cmd::Command;
use serde_json::Value;

fn decode_json(bytes: &[u8]) -> (Option<i32>, Value) {
    let out = Command::cargo_bin("seguro")
        .unwrap()
        .args(["ames", "decode", "--json", &hex::encode(bytes)])
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code(), json)
}

/// The smallest ship of each rank, and the largest.
fn ships(rank: Rank) -> [Ship; 2] {
    match rank {
        Rank::Two => [Ship::new(0), Ship::new(0xffff)],
        Rank::Four => [Ship::new(0x1_0000), Ship::new(0xffff_ffff)],
        Rank::Eight => [Ship::new(1 << 32), Ship::new(u64::MAX.into())],
        Rank::Sixteen => [Ship::new(1 << 64), Ship::new(u128::MAX)],
    }
}

/// How the JSON shows a ship: a number when it fits in u64, else a string.
fn ship_json(ship: Ship) -> Value {
    match u64::try_from(ship.get()) {
        Ok(n) => Value::from(n),
        Err(_) => Value::from(ship.get().to_string()),
    }
}

#[test]
fn every_rank_pair_relayed_and_not() {
    let origin = SocketAddrV4::new([198, 51, 100, 7].into(), 40_000);
    let mut checked = 0;
    for sender_rank in Rank::ALL {
        for receiver_rank in Rank::ALL {
            for relayed in [false, true] {
                let [sender, _] = ships(sender_rank);
                let [_, receiver] = ships(receiver_rank);
                let content = vec![0xab; 1 + checked % 7];
                let packet = Packet {
                    prelude: Prelude {
                        origin: relayed.then_some(origin),
                        ..Prelude::new(sender, receiver)
                    },
                    body: Body::Ames(content.clone()),
                };
                let (code, json) = decode_json(&packet.to_bytes());
                assert_eq!(code, Some(0), "{json}");
                assert_eq!(json["class"], "ames");
                assert_eq!(json["version"], 0);
                // vere's rank is the 2-bit code (`sac_y`, `rac_y`); the
                // width in bytes is printed beside it.
                assert_eq!(json["sender_rank"], sender_rank.bits());
                assert_eq!(json["sender_width"], sender_rank.width());
                assert_eq!(json["receiver_rank"], receiver_rank.bits());
                assert_eq!(json["receiver_width"], receiver_rank.width());
                assert_eq!(json["sender"], ship_json(sender));
                assert_eq!(json["receiver"], ship_json(receiver));
                assert_eq!(json["sender_p"], sender.to_string());
                assert_eq!(json["receiver_p"], receiver.to_string());
                let want_origin = if relayed {
                    Value::from(origin.to_string())
                } else {
                    Value::Null
                };
                assert_eq!(json["origin"], want_origin);
                assert_eq!(json["mug_ok"], true);
                assert_eq!(json["mug_header"], json["mug_computed"]);
                assert_eq!(json["content_hex"], hex::encode(&content));
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 32);
}

/// vere mugs everything after the header (and origin): a packet whose
/// prelude and content spell an upstream vector must show that vector's mug
/// (retrieve_tests.c), cut to the header's 20 bits.
#[test]
fn upstream_mug_vectors() {
    for (text, mug) in [
        (&b"Hello, world!"[..], 0x4d44_1035u32),
        (&[b'x'; 28][..], 0x64df_da5c),
    ] {
        let header = Header {
            kind: Kind::Ames,
            version: Version::AMES,
            sender_rank: Rank::Two,
            receiver_rank: Rank::Two,
            checksum: Checksum::from_bits(mug & Checksum::MASK),
            relayed: false,
        };
        let packet = [&header.etch()[..], text].concat();
        let (code, json) = decode_json(&packet);
        assert_eq!(code, Some(0), "{json}");
        assert_eq!(json["mug_computed"], mug & 0xf_ffff);
        assert_eq!(json["mug_ok"], true);
    }
}

#[test]
fn a_wrong_mug_is_shown_not_hidden() {
    let mut bytes = Packet {
        prelude: Prelude::new(Ship::new(0), Ship::new(1)),
        body: Body::Ames(b"hi".to_vec()),
    }
    .to_bytes();
    *bytes.last_mut().unwrap() ^= 1;
    let (code, json) = decode_json(&bytes);
    assert_eq!(code, Some(1));
    assert_eq!(json["class"], "malformed");
    assert_eq!(json["mug_ok"], false);
    assert!(json["reason"].as_str().unwrap().contains("mug"), "{json}");
}

#[test]
fn malformed_says_why_and_exits_1() {
    let out = Command::cargo_bin("seguro")
        .unwrap()
        .args(["ames", "decode", "00000000"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("class: malformed\nreason: the origin lane needs bytes 4..10"),
        "{text}"
    );
}

#[test]
fn bad_hex_is_a_usage_error() {
    Command::cargo_bin("seguro")
        .unwrap()
        .args(["ames", "decode", "zz"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("HEX: not hexadecimal"));
}
