//! `Checkpoint::decode` never panics on any input (a file on disk, a
//! peer's answer), refuses anything over its limit, and reads back exactly
//! what `encode` wrote: each input is tried as a checkpoint's bytes, and as
//! an event number and a state to encode.
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

    if let Some((last, state)) = bytes.split_first_chunk::<8>() {
        let checkpoint = Checkpoint {
            last: EventNum(u64::from_be_bytes(*last)),
            state: state.to_vec(),
        };
        let encoded = checkpoint.encode();
        let limit = encoded.len() as u64;
        assert_eq!(Checkpoint::decode(&encoded, limit), Ok(checkpoint));
    }
});
