//! Reading a snapshot (a file on disk, or one a leader sent) never panics
//! on any input. Each input is tried as is, and with the BLAKE3 hash that
//! ends a snapshot made right, so that the metadata decoded once the hash
//! checks out is explored too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    eventlog::fuzzing::snapshot(bytes);
    if let Some(at) = bytes.len().checked_sub(32) {
        let mut hashed = bytes.to_vec();
        let hash = blake3::hash(&hashed[..at]);
        hashed[at..].copy_from_slice(hash.as_bytes());
        eventlog::fuzzing::snapshot(&hashed);
    }
});
