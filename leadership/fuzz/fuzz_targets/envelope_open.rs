//! `Header::parse`, `Unverified::verify` and `open` never panic on any
//! input, and agree: a datagram whose header does not parse never opens,
//! and one that opens says what its header said. Each input is tried as
//! is (its MAC almost never verifies) and with the MAC its named replica's
//! key would give it, so that the opened path is explored too.
#![no_main]

use config::{Key, ReplicaId};
use leadership::envelope::{self, Header, Keyring, MAC_LEN, OpenError, Unverified};
use libfuzzer_sys::fuzz_target;

fn key(replica: ReplicaId) -> Key {
    Key::from_bytes([replica.get() as u8; 32])
}

fn check(bytes: &[u8], ring: &Keyring) {
    let header = Header::parse(bytes);
    let opened = envelope::open(bytes, ring);
    match (header, opened) {
        (Err(m), opened) => assert_eq!(opened, Err(OpenError::Malformed(m))),
        (Ok(h), Ok(env)) => {
            assert_eq!(
                (h.replica, h.epoch, h.event, h.seq, h.lane),
                (env.replica, env.epoch, env.event, env.seq, env.lane)
            );
            assert_eq!(h.payload_len, env.payload.len());
            assert_eq!(h.header_len + h.payload_len + MAC_LEN, bytes.len());
            // What opens seals back to the same bytes.
            assert_eq!(env.seal(&key(env.replica)).unwrap(), bytes);
        }
        (Ok(h), Err(e)) => {
            assert!(e == OpenError::BadMac(h.replica) || e == OpenError::UnknownReplica(h.replica));
            let unverified = Unverified::parse(bytes).unwrap();
            assert_eq!(unverified.header(), &h);
            // The ring holds each replica's `key`: with it, the MAC that
            // failed in `open` fails again.
            if ring.contains(h.replica) {
                assert!(unverified.verify(&key(h.replica)).is_err());
            }
        }
    }
}

fuzz_target!(|bytes: &[u8]| {
    let mut ring = Keyring::new();
    for id in 1..=3 {
        let id = ReplicaId::new(id).unwrap();
        ring.insert(id, key(id));
    }
    check(bytes, &ring);
    if let Ok(h) = Header::parse(bytes) {
        let mut signed = bytes.to_vec();
        let at = signed.len() - MAC_LEN;
        let mac = blake3::keyed_hash(key(h.replica).as_bytes(), &signed[..at]);
        signed[at..].copy_from_slice(mac.as_bytes());
        check(&signed, &ring);
        if ring.contains(h.replica) {
            assert!(envelope::open(&signed, &ring).is_ok());
        }
    }
});
