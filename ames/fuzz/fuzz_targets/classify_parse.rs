//! `classify`, `parse` and `decode` never panic on any input, and agree:
//! the same properties as tests/properties.rs, driven by libFuzzer.
#![no_main]

use ames::{Class, Datagram, Packet, classify_slice, decode, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let class = classify_slice(bytes);
    let parsed = parse(bytes);
    let _ = decode(bytes).to_string();
    match &parsed {
        Ok(datagram) => {
            // vere tries a STUN look-alike with a bad FINGERPRINT as Ames.
            let stun_fallback = class == Class::Stun && matches!(datagram, Datagram::Ames(_));
            assert!(datagram.class() == class || stun_fallback);
        }
        Err(error) => {
            assert!(error.offset() <= bytes.len());
            assert!(!error.is_shallow() || matches!(class, Class::Malformed(_)));
        }
    }
    if matches!(class, Class::Malformed(_)) {
        assert!(parsed.is_err());
    }
    if let Ok(Datagram::Ames(packet)) = parsed {
        assert_eq!(Packet::parse(&packet.to_bytes()), Ok(packet));
    }
});
