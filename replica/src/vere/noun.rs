//! Nouns in a hash-consed arena, and Urbit's `jam`/`cue` serialisation of
//! them (vere's `u3s_jam_xeno`/`u3s_cue_xeno`, hoon's `++jam`/`++cue`).
//!
//! Every noun of an arena is stored once: equal nouns have equal [`Noun`]
//! handles, so `jam` finds back-references by handle and comparing two nouns
//! costs nothing, however much a hostile `cue` input shares. Nothing here
//! recurses: deep nouns are walked with explicit stacks.

use std::collections::HashMap;

/// The largest input [`Nouns::cue`] reads, in bytes.
///
/// A `cue` makes at most one noun per two bits of input and keeps about 70
/// bytes per noun, so 256 KiB of input costs at most about 70 MiB; events
/// are Ames packets (at most a few KiB) or small boot formulas.
pub const MAX_CUE_BYTES: usize = 256 * 1024;

/// A noun of one [`Nouns`] arena; meaningless in another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Noun(u32);

/// What a noun is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View<'a> {
    /// An atom: its little-endian bytes, without trailing zero bytes (so 0
    /// is empty).
    Atom(&'a [u8]),
    Cell(Noun, Noun),
}

#[derive(Debug)]
enum Node {
    Atom(Box<[u8]>),
    Cell(Noun, Noun),
}

/// An arena of nouns, each stored once.
#[derive(Debug, Default)]
pub struct Nouns {
    nodes: Vec<Node>,
    atoms: HashMap<Box<[u8]>, Noun>,
    cells: HashMap<(Noun, Noun), Noun>,
}

/// Why bytes are not a jammed noun.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CueError {
    #[error("{len} bytes is over the {limit}-byte limit on a jammed noun")]
    TooLarge { len: usize, limit: usize },
    #[error("the input ends inside the noun (at bit {bit})")]
    Truncated { bit: u64 },
    #[error("the length at bit {bit} is too long")]
    TooLong { bit: u64 },
    #[error("the back-reference at bit {bit} points to bit {target}, where no noun starts")]
    BadReference { bit: u64, target: u64 },
}

impl Nouns {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many distinct nouns the arena holds.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn push(&mut self, node: Node) -> Noun {
        let id = Noun(u32::try_from(self.nodes.len()).expect("an arena holds under 2^32 nouns"));
        self.nodes.push(node);
        id
    }

    /// The atom whose little-endian bytes are `bytes` (trailing zeros do not
    /// count).
    pub fn atom(&mut self, bytes: &[u8]) -> Noun {
        let bytes = trim(bytes);
        if let Some(&n) = self.atoms.get(bytes) {
            return n;
        }
        let n = self.push(Node::Atom(bytes.into()));
        self.atoms.insert(bytes.into(), n);
        n
    }

    pub fn atom_u64(&mut self, value: u64) -> Noun {
        self.atom(&value.to_le_bytes())
    }

    /// A cord: text as an atom, first character least significant
    /// (`%ames` is 0x73656d61).
    pub fn cord(&mut self, text: &str) -> Noun {
        self.atom(text.as_bytes())
    }

    pub fn cell(&mut self, head: Noun, tail: Noun) -> Noun {
        if let Some(&n) = self.cells.get(&(head, tail)) {
            return n;
        }
        let n = self.push(Node::Cell(head, tail));
        self.cells.insert((head, tail), n);
        n
    }

    /// `[a b c]`, that is `[a [b c]]`; `None` for no nouns.
    pub fn tuple(&mut self, nouns: &[Noun]) -> Option<Noun> {
        let (&last, rest) = nouns.split_last()?;
        Some(
            rest.iter()
                .rev()
                .fold(last, |tail, &head| self.cell(head, tail)),
        )
    }

    pub fn view(&self, noun: Noun) -> View<'_> {
        match &self.nodes[noun.0 as usize] {
            Node::Atom(bytes) => View::Atom(bytes),
            &Node::Cell(head, tail) => View::Cell(head, tail),
        }
    }

    /// The atom's bytes; `None` for a cell.
    pub fn bytes(&self, noun: Noun) -> Option<&[u8]> {
        match self.view(noun) {
            View::Atom(bytes) => Some(bytes),
            View::Cell(..) => None,
        }
    }

    /// The atom's value if it fits 64 bits.
    pub fn as_u64(&self, noun: Noun) -> Option<u64> {
        let bytes = self.bytes(noun)?;
        let mut le = [0; 8];
        le.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(u64::from_le_bytes(le))
    }

    /// Head and tail; `None` for an atom.
    pub fn split(&self, noun: Noun) -> Option<(Noun, Noun)> {
        match self.view(noun) {
            View::Cell(head, tail) => Some((head, tail)),
            View::Atom(_) => None,
        }
    }

    /// `jam`: the noun as bytes (an atom's, so without trailing zeros),
    /// bit for bit what vere's `u3s_jam_xeno` writes. A noun met again is
    /// written as a back-reference to where it was first written: always
    /// for a cell, and for an atom only when the reference is shorter.
    pub fn jam(&self, noun: Noun) -> Vec<u8> {
        let mut out = BitWriter::default();
        let mut seen: HashMap<Noun, u64> = HashMap::new();
        let mut stack = vec![noun];
        while let Some(n) = stack.pop() {
            match (self.view(n), seen.get(&n)) {
                (View::Atom(bytes), Some(&at)) if bit_len(bytes) > bit_len_u64(at) => out.back(at),
                (View::Atom(bytes), Some(_)) => out.atom(bytes),
                (View::Cell(..), Some(&at)) => out.back(at),
                (view, None) => {
                    seen.insert(n, out.bits);
                    match view {
                        View::Atom(bytes) => out.atom(bytes),
                        View::Cell(head, tail) => {
                            out.bit(true);
                            out.bit(false);
                            stack.push(tail);
                            stack.push(head);
                        }
                    }
                }
            }
        }
        let mut bytes = out.bytes;
        bytes.truncate(trim(&bytes).len());
        bytes
    }

    /// `cue`: the noun `bytes` jam, read as vere's `u3s_cue_xeno` reads it
    /// (bits past the end of the input read as zeros inside an atom or a
    /// length's value, as there; bytes after the noun are ignored).
    /// Refuses inputs over [`MAX_CUE_BYTES`]. Nouns it makes stay in the
    /// arena even when it fails.
    pub fn cue(&mut self, bytes: &[u8]) -> Result<Noun, CueError> {
        if bytes.len() > MAX_CUE_BYTES {
            return Err(CueError::TooLarge {
                len: bytes.len(),
                limit: MAX_CUE_BYTES,
            });
        }
        let mut input = BitReader { bytes, pos: 0 };
        let mut found: HashMap<u64, Noun> = HashMap::new();
        // Cells being read: where each started, and its head once read.
        let mut frames: Vec<(u64, Option<Noun>)> = Vec::new();
        loop {
            let start = input.pos;
            let mut noun = match input.tag()? {
                Tag::Cell => {
                    frames.push((start, None));
                    continue;
                }
                Tag::Atom => {
                    let len = input.rub_len()?;
                    // vere allocates the atom's bytes up front and refuses
                    // over 2^32 of them.
                    if len.div_ceil(8) > u64::from(u32::MAX) {
                        return Err(CueError::TooLong { bit: start });
                    }
                    let bits = input.read_bytes(len);
                    let atom = self.atom(&bits);
                    found.insert(start, atom);
                    atom
                }
                Tag::Back => {
                    let len = input.rub_len()?;
                    if len > 62 {
                        return Err(CueError::TooLong { bit: start });
                    }
                    let target = input.read_u64(len as u32);
                    *found
                        .get(&target)
                        .ok_or(CueError::BadReference { bit: start, target })?
                }
            };
            loop {
                match frames.last_mut() {
                    None => return Ok(noun),
                    Some((_, head @ None)) => {
                        *head = Some(noun);
                        break;
                    }
                    Some((at, Some(head))) => {
                        let (at, head) = (*at, *head);
                        frames.pop();
                        noun = self.cell(head, noun);
                        found.insert(at, noun);
                    }
                }
            }
        }
    }
}

/// `bytes` without its trailing zero bytes.
fn trim(bytes: &[u8]) -> &[u8] {
    let len = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    &bytes[..len]
}

/// `(met 0 a)` of a trimmed atom.
fn bit_len(bytes: &[u8]) -> u64 {
    match bytes.last() {
        None => 0,
        Some(&top) => (bytes.len() as u64 - 1) * 8 + u64::from(8 - top.leading_zeros()),
    }
}

fn bit_len_u64(value: u64) -> u64 {
    u64::from(64 - value.leading_zeros())
}

/// A stream of bits, least significant first.
#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    bits: u64,
}

impl BitWriter {
    fn bit(&mut self, set: bool) {
        let offset = (self.bits % 8) as u32;
        if offset == 0 {
            self.bytes.push(0);
        }
        if set {
            *self.bytes.last_mut().expect("pushed above") |= 1 << offset;
        }
        self.bits += 1;
    }

    /// The low `count` bits of `bytes` (little-endian); zeros past its end.
    fn bits_of(&mut self, bytes: &[u8], count: u64) {
        for i in 0..count {
            let byte = bytes.get((i / 8) as usize).copied().unwrap_or(0);
            self.bit(byte >> (i % 8) & 1 == 1);
        }
    }

    /// `++mat`: a length-prefixed atom. 0 is a single 1 bit; else, with
    /// `b` the atom's bit length and `c` that of `b`: `c` zeros, a 1, the
    /// low `c - 1` bits of `b`, then the atom's `b` bits.
    fn mat(&mut self, bytes: &[u8]) {
        let b = bit_len(bytes);
        if b == 0 {
            self.bit(true);
            return;
        }
        let c = bit_len_u64(b);
        for _ in 0..c {
            self.bit(false);
        }
        self.bit(true);
        self.bits_of(&b.to_le_bytes(), c - 1);
        self.bits_of(bytes, b);
    }

    fn atom(&mut self, bytes: &[u8]) {
        self.bit(false);
        self.mat(bytes);
    }

    fn back(&mut self, at: u64) {
        self.bit(true);
        self.bit(true);
        self.mat(trim(&at.to_le_bytes()));
    }
}

enum Tag {
    Atom,
    Cell,
    Back,
}

/// Reads a jammed noun's bits, least significant first.
struct BitReader<'a> {
    bytes: &'a [u8],
    /// May pass the end: an atom's bits past the end read as zeros.
    pos: u64,
}

impl BitReader<'_> {
    fn total(&self) -> u64 {
        self.bytes.len() as u64 * 8
    }

    /// The bit at `pos`; zero past the end.
    fn get(&self, pos: u64) -> bool {
        let byte = usize::try_from(pos / 8)
            .ok()
            .and_then(|i| self.bytes.get(i))
            .copied()
            .unwrap_or(0);
        byte >> (pos % 8) & 1 == 1
    }

    /// Tags must lie within the input (vere's `ur_bsr_tag`).
    fn tag(&mut self) -> Result<Tag, CueError> {
        let truncated = CueError::Truncated { bit: self.pos };
        if self.pos >= self.total() {
            return Err(truncated);
        }
        if !self.get(self.pos) {
            self.pos += 1;
            return Ok(Tag::Atom);
        }
        if self.pos + 1 >= self.total() {
            return Err(truncated);
        }
        let back = self.get(self.pos + 1);
        self.pos += 2;
        Ok(if back { Tag::Back } else { Tag::Cell })
    }

    /// `++rub`'s length: `c` zeros and a 1 (within the input, `c` under
    /// 64, as vere's `ur_bsr_rub_len`), then `c - 1` bits under an implied
    /// top bit.
    fn rub_len(&mut self) -> Result<u64, CueError> {
        let start = self.pos;
        let mut zeros = 0u32;
        loop {
            if self.pos >= self.total() {
                return Err(CueError::Truncated { bit: start });
            }
            if self.get(self.pos) {
                break;
            }
            zeros += 1;
            self.pos += 1;
            if zeros >= 64 {
                return Err(CueError::TooLong { bit: start });
            }
        }
        self.pos += 1;
        Ok(match zeros {
            0 => 0,
            c => self.read_u64(c - 1) | 1 << (c - 1),
        })
    }

    fn read_u64(&mut self, count: u32) -> u64 {
        let mut value = 0;
        for i in 0..u64::from(count) {
            value |= u64::from(self.get(self.pos + i)) << i;
        }
        self.pos += u64::from(count);
        value
    }

    /// `count` bits as little-endian bytes. Only the bits within the input
    /// are read (the rest are zeros), so a huge length costs nothing.
    fn read_bytes(&mut self, count: u64) -> Vec<u8> {
        let within = count.min(self.total().saturating_sub(self.pos));
        let mut out = vec![0u8; within.div_ceil(8) as usize];
        if within == 0 {
            // Past the end already (the length's own bits ran over it).
        } else if self.pos.is_multiple_of(8) {
            let from = (self.pos / 8) as usize;
            let len = out.len();
            out.copy_from_slice(&self.bytes[from..from + len]);
            if !within.is_multiple_of(8) {
                *out.last_mut().expect("within > 0") &= (1u8 << (within % 8)) - 1;
            }
        } else {
            for i in 0..within {
                if self.get(self.pos + i) {
                    out[(i / 8) as usize] |= 1 << (i % 8);
                }
            }
        }
        self.pos = self.pos.saturating_add(count);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vere::text;

    fn jam_text(text: &str) -> Vec<u8> {
        let mut n = Nouns::new();
        let noun = text::parse(&mut n, text).expect(text);
        n.jam(noun)
    }

    /// vere's own vectors (pkg/noun/serial_tests.c, `_test_jam_roundtrip`).
    #[test]
    fn jams_and_cues_veres_vectors() {
        let alpha = "%abcdefjhijklmnopqrstuvwxyz";
        let cases: &[(&str, &[u8])] = &[
            ("0", &[0x2]),
            ("1", &[0xc]),
            ("2", &[0x48]),
            ("%fast", &[0xc0, 0x37, 0xb, 0x9b, 0xa3, 0x3]),
            ("%full", &[0xc0, 0x37, 0xab, 0x63, 0x63, 0x3]),
            ("[0 0]", &[0x29]),
            ("[1 1]", &[0x31, 0x3]),
            ("[1 2]", &[0x31, 0x12]),
            ("[2 3]", &[0x21, 0xd1]),
            (
                "[%fast %full]",
                &[
                    0x1, 0xdf, 0x2c, 0x6c, 0x8e, 0xe, 0x7c, 0xb3, 0x3a, 0x36, 0x36,
                ],
            ),
            ("[1 1 1]", &[0x71, 0xcc]),
            ("[1 2 3]", &[0x71, 0x48, 0x34]),
            (
                "[%fast %full %fast]",
                &[
                    0x1, 0xdf, 0x2c, 0x6c, 0x8e, 0x1e, 0xf0, 0xcd, 0xea, 0xd8, 0xd8, 0x93,
                ],
            ),
            ("[[1 2] 3]", &[0xc5, 0x48, 0x34]),
            ("[[1 2] [1 2] 1 2]", &[0xc5, 0xc8, 0x26, 0x27, 0x1]),
            (
                "[[0 0] [[0 0] 1 1] 1 1]",
                &[0xa5, 0x35, 0x19, 0xf3, 0x18, 0x5],
            ),
            (
                "[[[1 [[2 [[3 [[4 [[5 6 [7 [[8 0] 0]]] 0]] 0]] 0]] 0]] 0] 0]",
                &[
                    0x15, 0x17, 0xb2, 0xd0, 0x85, 0x59, 0xb8, 0x61, 0x87, 0x5f, 0x10, 0x54, 0x55,
                    0x5,
                ],
            ),
            (
                "0x10000000000000000000000000000000000000000000000000000000000000000",
                &[
                    0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                    0, 0, 0, 0, 0, 0, 0, 0, 8,
                ],
            ),
            (
                "0x8000000d2def60aba80c000000000000",
                &[
                    0x0, 0x2, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x18, 0x50, 0x57, 0xc1, 0xde, 0x5b,
                    0x1a, 0x0, 0x0, 0x0, 0x1,
                ],
            ),
        ];
        for (text, jammed) in cases {
            assert_eq!(jam_text(text), *jammed, "jam {text}");
            let mut n = Nouns::new();
            let expected = text::parse(&mut n, text).unwrap();
            assert_eq!(n.cue(jammed), Ok(expected), "cue {text}");
        }
        let alpha_list = format!("[{alpha} 2 3 {alpha}]");
        let jammed = jam_text(&alpha_list);
        assert_eq!(
            jammed,
            [
                0x1, 0xf8, 0xc, 0x13, 0x1b, 0x23, 0x2b, 0x33, 0x53, 0x43, 0x4b, 0x53, 0x5b, 0x63,
                0x6b, 0x73, 0x7b, 0x83, 0x8b, 0x93, 0x9b, 0xa3, 0xab, 0xb3, 0xbb, 0xc3, 0xcb, 0xd3,
                0x87, 0xc, 0x3d, 0x9
            ]
        );
    }

    /// The vector file the C vere-shaped ship's tests read too.
    #[test]
    fn jams_and_cues_the_shared_vectors() {
        let file = include_str!("../../tests/data/jam-vectors.txt");
        let mut count = 0;
        for line in file.lines() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (hex, text) = line.split_once(' ').expect(line);
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect(line))
                .collect();
            let mut n = Nouns::new();
            let expected = text::parse(&mut n, text).expect(line);
            assert_eq!(n.cue(&bytes), Ok(expected), "cue {line}");
            assert_eq!(n.jam(expected), bytes, "jam {line}");
            count += 1;
        }
        assert!(count >= 30, "only {count} vectors");
    }

    #[test]
    fn atoms_are_trimmed_and_read_back() {
        let mut n = Nouns::new();
        assert_eq!(n.atom(&[1, 0, 0]), n.atom(&[1]));
        assert_eq!(n.atom(&[0, 0]), n.atom(&[]));
        let big = n.atom(&[0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(n.as_u64(big), None);
        let x = n.atom_u64(0x1_0000);
        assert_eq!(n.bytes(x), Some(&[0, 0, 1][..]));
        assert_eq!(n.as_u64(x), Some(0x1_0000));
        assert_eq!(n.cord("ames"), n.atom_u64(0x7365_6d61));
    }

    /// By hand from `++jam`. vere's `[1 1]` (0x331: cell 1,0; atom 1 as
    /// 0,0,1,1 twice) shows an atom written again when a reference (to bit
    /// 2: 1,1 then mat 2 = 0,0,1,0,0,1) would be longer. A cell met again
    /// is always a reference, and a long atom is one when it is shorter.
    #[test]
    fn refers_back_to_cells_always_and_to_atoms_only_when_shorter() {
        let mut n = Nouns::new();
        let one_two = text::parse(&mut n, "[1 2]").unwrap();
        let pair = n.cell(one_two, one_two);
        let jammed = n.jam(pair);
        // 01 (cell) | 01 (cell at bit 2) 0 01 1 (atom 1) 0 001 0 01 (atom 2)
        // | 11 (back) 001 0 01 (mat 2: bit 2)
        let mut expected = BitWriter::default();
        for bit in [
            1, 0, 1, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 1, 1, 1, 0, 0, 1, 0, 0, 1,
        ] {
            expected.bit(bit == 1);
        }
        assert_eq!(jammed, expected.bytes);
        assert_eq!(n.cue(&jammed), Ok(pair));

        // A long atom met twice: the second is a reference to bit 2.
        let long = n.atom_u64(u64::MAX);
        let twice = n.cell(long, long);
        let jammed = n.jam(twice);
        // cell (2) + atom (1 + 7*2 - 1 + 1... mat of 64 bits) + back (2 + mat 2)
        let atom_bits = 1 + (7 + 1 + 6) + 64;
        assert_eq!(jammed.len(), (2 + atom_bits + 2 + 6usize).div_ceil(8));
        assert_eq!(n.cue(&jammed), Ok(twice));
    }

    #[test]
    fn refuses_malformed_input_without_panicking() {
        let mut n = Nouns::new();
        assert_eq!(n.cue(&[]), Err(CueError::Truncated { bit: 0 }));
        // A cell, and an atom whose length never ends.
        assert_eq!(n.cue(&[0x01]), Err(CueError::Truncated { bit: 3 }));
        // A cell whose head (4 zeros and a 1: a length of 8 bits, its last
        // 3 bits and the atom's 8 past the end) ends at bit 19: no tail.
        assert_eq!(n.cue(&[0x81]), Err(CueError::Truncated { bit: 19 }));
        // A tag cut after its first bit: [2 [0 [<cut>: cell (10), atom 2
        // (0 001 0 01), cell, atom 0 (0 1), cell, and the lone last bit 1.
        let mut w = BitWriter::default();
        for bit in [1, 0, 0, 0, 0, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 1] {
            w.bit(bit == 1);
        }
        assert_eq!(n.cue(&w.bytes), Err(CueError::Truncated { bit: 15 }));
        // A cell whose head refers back to bit 5, where nothing starts: 1,0
        // | 1,1 | mat 5 = 0,0,1 (two zeros, a one), 1 (3 without its top
        // bit), 1,0,1.
        let mut w = BitWriter::default();
        for bit in [1, 0, 1, 1, 0, 0, 1, 1, 1, 0, 1] {
            w.bit(bit == 1);
        }
        assert!(matches!(
            n.cue(&w.bytes),
            Err(CueError::BadReference { target: 5, .. })
        ));
        // A back-reference to the cell that holds it (bit 0): 1,0 | 1,1 | 1.
        let mut w = BitWriter::default();
        for bit in [1, 0, 1, 1, 1] {
            w.bit(bit == 1);
        }
        assert!(matches!(
            n.cue(&w.bytes),
            Err(CueError::BadReference { target: 0, .. })
        ));
        // A length of 64 zeros and more.
        assert!(matches!(
            n.cue(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
            Err(CueError::TooLong { .. })
        ));
        // Over the limit.
        assert!(matches!(
            n.cue(&vec![2; MAX_CUE_BYTES + 1]),
            Err(CueError::TooLarge { .. })
        ));
    }

    /// An atom whose length runs past the input reads zeros, as in vere:
    /// and a huge length costs nothing.
    #[test]
    fn an_atom_past_the_end_reads_zeros() {
        let mut n = Nouns::new();
        // Tag 0; 3 zeros and a 1; 2 bits 0,1: a length of 0b10 | 1 << 2 =
        // 6 bits, of which one (1) is in the input and five past it.
        let mut w = BitWriter::default();
        for bit in [0, 0, 0, 0, 1, 0, 1, 1] {
            w.bit(bit == 1);
        }
        let atom = n.cue(&w.bytes).unwrap();
        assert_eq!(n.as_u64(atom), Some(1));
        // An atom of 2^62 bits (2^59 bytes, over vere's 2^32) in 9 bytes.
        let mut w = BitWriter::default();
        w.bit(false);
        for _ in 0..63 {
            w.bit(false);
        }
        w.bit(true);
        w.bits_of(&[0; 8], 62);
        assert!(matches!(n.cue(&w.bytes), Err(CueError::TooLong { .. })));
    }

    #[test]
    fn deep_nouns_do_not_overflow_the_stack() {
        let mut n = Nouns::new();
        let mut list = n.atom(&[]);
        for i in 0..200_000u64 {
            let item = n.atom_u64(i % 7);
            list = n.cell(item, list);
        }
        let jammed = n.jam(list);
        let mut m = Nouns::new();
        let back = m.cue(&jammed).unwrap();
        assert_eq!(m.jam(back), jammed);
        // Left-nested too: the stack holds every open cell.
        let mut deep = n.atom(&[]);
        for _ in 0..200_000 {
            let one = n.atom_u64(1);
            deep = n.cell(deep, one);
        }
        let jammed = n.jam(deep);
        assert_eq!(Nouns::new().cue(&jammed).map(|_| ()), Ok(()));
    }

    /// A doubling chain `x = [x x]` 10,000 deep: 2^10000 leaves, but 10,000
    /// distinct cells, so `jam` writes each once and back-refers to it.
    #[test]
    fn shared_nouns_cost_their_distinct_size() {
        let mut n = Nouns::new();
        let mut x = n.atom_u64(5);
        for _ in 0..10_000 {
            x = n.cell(x, x);
        }
        let jammed = n.jam(x);
        assert!(jammed.len() < 10_000 * 8, "{} bytes", jammed.len());
        let mut m = Nouns::new();
        let back = m.cue(&jammed).unwrap();
        assert_eq!(m.len(), 10_001);
        assert_eq!(m.jam(back), jammed);
    }

    /// Round trips of pseudo-random nouns (no proptest in this crate): a
    /// fixed xorshift, so a failure reproduces.
    #[test]
    fn random_nouns_round_trip() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..300 {
            let mut n = Nouns::new();
            let mut pool = vec![];
            for _ in 0..(next() % 40 + 1) {
                let noun = match next() % 5 {
                    0 | 1 if pool.len() >= 2 => {
                        let a = pool[(next() % pool.len() as u64) as usize];
                        let b = pool[(next() % pool.len() as u64) as usize];
                        n.cell(a, b)
                    }
                    2 => {
                        let len = (next() % 40) as usize;
                        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                        n.atom(&bytes)
                    }
                    _ => n.atom_u64(next() % 300),
                };
                pool.push(noun);
            }
            let root = *pool.last().unwrap();
            let jammed = n.jam(root);
            assert_eq!(n.cue(&jammed), Ok(root));
            let mut m = Nouns::new();
            let back = m.cue(&jammed).unwrap();
            assert_eq!(m.jam(back), jammed);
        }
    }
}
