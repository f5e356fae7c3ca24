//! Decoding a Raft message from a peer (every request the Raft service
//! takes, every response the Raft network reads) never panics on any
//! input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    eventlog::fuzzing::raft_message(bytes);
});
