//! `cue` never panics on any input (an event read from the log or a
//! peer), stays within its limit, and what it reads jams to bytes that cue
//! to the same noun and jam to themselves again; the vere-shaped ship reads
//! and applies any event without panicking.
#![no_main]

use leadership::EventNum;
use libfuzzer_sys::fuzz_target;
use replica::vere::{MAX_CUE_BYTES, Nouns, read_event};
use replica::{Ship, VereShip};

fuzz_target!(|bytes: &[u8]| {
    let mut nouns = Nouns::new();
    if let Ok(noun) = nouns.cue(bytes) {
        assert!(bytes.len() <= MAX_CUE_BYTES);
        let jammed = nouns.jam(noun);
        assert_eq!(nouns.cue(&jammed), Ok(noun));
        let mut again = Nouns::new();
        let copy = again.cue(&jammed).expect("a jam cues");
        assert_eq!(again.jam(copy), jammed);
    }
    let _ = read_event(bytes);
    let mut ship = VereShip::new();
    let applied = ship.apply(EventNum(1), bytes).expect("event 1 applies");
    assert!(applied.effects.len() <= 1);
});
