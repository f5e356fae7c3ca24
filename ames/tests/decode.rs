//! The decoded view `seguro ames decode` prints.

use std::net::SocketAddrV4;

use seguro_ames::{Body, Decoded, Packet, Prelude, Ship, Value, decode};
use serde_json::json;

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn json(decoded: &Decoded) -> serde_json::Value {
    serde_json::to_value(decoded).unwrap()
}

#[test]
fn ames_packet_json() {
    let decoded = decode(&unhex("00f050bb2100000100deadbeef"));
    assert_eq!(
        json(&decoded),
        json!({
            "class": "ames",
            "version": 0,
            "sender_rank": 0,
            "sender_width": 2,
            "receiver_rank": 0,
            "receiver_width": 2,
            "sender": 0,
            "sender_p": "~zod",
            "receiver": 1,
            "receiver_p": "~nec",
            "sender_tick": 1,
            "receiver_tick": 2,
            "origin": null,
            "mug_header": 0x76a1e,
            "mug_computed": 0x76a1e,
            "mug_ok": true,
            "content_hex": "deadbeef",
        })
    );
    // Same fields, same order, one per line.
    let keys: Vec<&str> = decoded.fields().iter().map(|(key, _)| *key).collect();
    let object = json(&decoded);
    let json_keys: Vec<&str> = object
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, json_keys, "serde_json sorts keys");
    let text = decoded.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), keys.len());
    assert_eq!(lines[0], "class: ames");
    assert!(!text.ends_with('\n'));
    assert!(!decoded.is_malformed());
    assert!(lines.contains(&"origin: none"));
    assert!(lines.contains(&"mug_header: 0x76a1e"));
    assert!(lines.contains(&"sender_p: ~zod"));
    assert!(lines.contains(&"sender_rank: 0"));
    assert!(lines.contains(&"sender_width: 2"));
}

#[test]
fn relayed_comet_sender_is_a_decimal_string() {
    let comet = (1u128 << 64) + 5;
    let packet = Packet {
        prelude: Prelude {
            origin: Some(SocketAddrV4::new([1, 2, 3, 4].into(), 5678)),
            ..Prelude::new(Ship::new(comet), Ship::new(1_624_961_343))
        },
        body: Body::Ames(vec![]),
    };
    let object = json(&decode(&packet.to_bytes()));
    assert_eq!(object["sender"], json!(comet.to_string()));
    // vere's rank is the 2-bit code; the width in bytes is beside it.
    assert_eq!(object["sender_rank"], json!(3));
    assert_eq!(object["sender_width"], json!(16));
    assert_eq!(object["receiver_rank"], json!(1));
    assert_eq!(object["receiver_width"], json!(4));
    assert_eq!(object["receiver"], json!(1_624_961_343u64));
    assert_eq!(object["receiver_p"], json!("~sampel-palnet"));
    assert_eq!(object["origin"], json!("1.2.3.4:5678"));
    assert_eq!(object["content_hex"], json!(""));
}

#[test]
fn fine_fields() {
    let request = decode(&unhex(
        "08e87c890000010000000100000016002f632f782f312f6b6964732f7379732f6b656c76696e",
    ));
    assert_eq!(request.class(), "fine-request");
    assert_eq!(request.get("fragment"), Some(&Value::Int(1)));
    assert_eq!(
        request.get("path"),
        Some(&Value::Text("/c/x/1/kids/sys/kelvin".into()))
    );
    assert_eq!(
        request.get("sender_p"),
        Some(&Value::Text("~marzod".into()))
    );

    let signature = "01".repeat(64);
    let response = decode(&unhex(&format!(
        "0ca81cc800000000010700000001002f{signature}3412"
    )));
    let object = json(&response);
    assert_eq!(object["class"], "fine-response");
    assert_eq!(object["fragment"], 7);
    assert_eq!(object["path"], "/");
    assert_eq!(object["num_fragments"], 0x1234);
    assert_eq!(object["signature_hex"], json!(signature));
    assert_eq!(object["data_hex"], "");
}

#[test]
fn bad_mug_is_malformed_with_the_head_fields() {
    let mut bytes = unhex("00f050bb2100000100deadbeef");
    bytes[12] ^= 1;
    let decoded = decode(&bytes);
    assert!(decoded.is_malformed());
    assert_eq!(decoded.get("mug_ok"), Some(&Value::Bool(false)));
    assert_eq!(decoded.get("receiver_p"), Some(&Value::Text("~nec".into())));
    let Some(Value::Text(reason)) = decoded.get("reason") else {
        panic!("no reason");
    };
    assert!(
        reason.starts_with("bytes 0..4: header checksum 0x76a1e"),
        "{reason}"
    );
    assert!(reason.ends_with("the mug of bytes 4..13"), "{reason}");
    assert!(decoded.get("content_hex").is_none());
}

#[test]
fn malformed_reasons_name_offsets() {
    let cases: [(&[u8], &str); 3] = [
        (
            &[],
            "the header needs bytes 0..4, but the packet is only 0 bytes long",
        ),
        (
            &[0x10, 0, 0, 0x80, 0],
            "byte 0: protocol version 1, but vere only accepts 0",
        ),
        (
            // vere mugs before it checks that the prelude fits.
            &[0x08, 0, 0, 0x80],
            "bytes 0..4: header checksum 0x00000 does not match 0xf04e8, the mug of bytes 4..4",
        ),
    ];
    for (bytes, reason) in cases {
        let object = json(&decode(bytes));
        assert_eq!(object["class"], "malformed");
        assert_eq!(object["reason"], reason, "{bytes:02x?}");
    }
}

#[test]
fn stun_and_mesa() {
    // A binding request as `u3_stun_make_request` builds it; FINGERPRINT
    // from Python's zlib.crc32.
    let request = "000100082112a442000102030405060708090a0b802800045b0ff6fc";
    assert_eq!(
        json(&decode(&unhex(request))),
        json!({
            "class": "stun",
            "stun_type": "request",
            "transaction_id": "000102030405060708090a0b",
            "mapped": null,
        })
    );
    // A response mapping 203.0.113.7:34543, as `u3_stun_make_response`.
    let response = decode(&unhex(
        "010100142112a4420b0b0b0b0b0b0b0b0b0b0b0b002000080001a7fdea12d545\
         80280004a1e5d259",
    ));
    assert_eq!(
        response.get("mapped"),
        Some(&Value::Text("203.0.113.7:34543".into()))
    );

    let mut bad = unhex(request);
    bad[27] ^= 1;
    let stun = decode(&bad);
    // vere drops it: not STUN, and not an Ames packet either.
    assert_eq!(stun.class(), "malformed");
    let Some(Value::Text(reason)) = stun.get("reason") else {
        panic!("no reason");
    };
    assert!(
        reason.starts_with("bytes 24..28: STUN FINGERPRINT"),
        "{reason}"
    );
    assert!(stun.get("mug_ok").is_none(), "STUN look-alikes get no head");

    // Mesa, reserved type, empty body: checksum of nothing is 0xf04e8.
    // `_mesa_hear` hands type 0 to `_mesa_hear_poke` (its `default:`).
    let word: u32 = (1 << 4) | (0xf_04e8 << 12);
    let mut mesa = word.to_le_bytes().to_vec();
    mesa.extend_from_slice(&[0x00, 0x02, 0xe0, 0x67]);
    let object = json(&decode(&mesa));
    assert_eq!(
        object,
        json!({
            "class": "mesa",
            "mesa_type": "reserved",
            "handled_as": "poke",
            "next_hop": "none",
            "hop_count": 0,
            "mug_header": 0xf04e8,
            "mug_computed": 0xf04e8,
            "mug_ok": true,
            "body_hex": "",
        })
    );
}
