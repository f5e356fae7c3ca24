//! `Checkpoint::decode` never panics on any input (a file on disk, a
//! peer's answer), refuses anything over its limit, and reads back exactly
//! what `encode` wrote: each input is tried as a checkpoint's bytes, and as
//! an event number, perhaps a time, and a state to encode.
#![no_main]

use leadership::EventNum;
use libfuzzer_sys::fuzz_target;
use replica::{Checkpoint, CheckpointDecodeError, DEFAULT_MAX_CHECKPOINT_BYTES};

fuzz_target!(|bytes: &[u8]| {
    let len = bytes.len() as u64;
    match Checkpoint::decode(bytes, DEFAULT_MAX_CHECKPOINT_BYTES) {
        Ok(c) => assert_eq!(c.encode(), bytes),
        Err(e) => {
            let _ = e.to_string();
        }
    }
    if len > 0 {
        assert_eq!(
            Checkpoint::decode(bytes, len - 1),
            Err(CheckpointDecodeError::TooLarge {
                len,
                limit: len - 1
            })
        );
    }

    if let Some((last, rest)) = bytes.split_first_chunk::<8>() {
        // An odd first byte: a version 2 checkpoint, with the next 8 bytes
        // its time; else a version 1 one, without.
        let (last_us, state) = match rest.split_first_chunk::<8>() {
            Some((us, state)) if last[0] % 2 == 1 => (Some(u64::from_be_bytes(*us)), state),
            _ => (None, rest),
        };
        let checkpoint = Checkpoint {
            last: EventNum(u64::from_be_bytes(*last)),
            last_us,
            state: state.to_vec(),
        };
        let encoded = checkpoint.encode();
        let limit = encoded.len() as u64;
        assert_eq!(Checkpoint::decode(&encoded, limit), Ok(checkpoint));
    }
});
