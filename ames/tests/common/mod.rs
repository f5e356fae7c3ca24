//! A mesa etcher written for the tests from vere's `pkg/vere/io/mesa/pact.c`
//! (`_mesa_etch_head`, `_mesa_etch_name`, `_mesa_etch_data`), separate from
//! the crate's parser so each checks the other. Widths are chosen by the
//! caller, not minimised, since vere's sifter takes any width.
#![allow(dead_code)]

use seguro_ames::Mug;

pub const PAGE: u32 = 1;
pub const PEEK: u32 = 2;
pub const POKE: u32 = 3;

pub const HOP_NONE: u32 = 0;
pub const HOP_SHORT: u32 = 1;
pub const HOP_LONG: u32 = 2;
pub const HOP_MANY: u32 = 3;

/// Little-endian `n` in `width` bytes.
pub fn le(n: u128, width: usize) -> Vec<u8> {
    n.to_le_bytes()[..width].to_vec()
}

/// A name's fields, with its widths as the 2-bit codes vere writes.
#[derive(Clone, Debug)]
pub struct Name {
    /// Ship width is `2 << rank`.
    pub rank: u8,
    pub ship: u128,
    /// Rift width is `rift_code + 1`.
    pub rift_code: u8,
    pub rift: u32,
    pub bloq: u8,
    pub init: bool,
    pub auth: bool,
    /// Fragment number width is `1 << fragment_code` (absent if `init`).
    pub fragment_code: u8,
    pub fragment: u64,
    pub path: Vec<u8>,
}

impl Name {
    pub fn simple(path: &str) -> Name {
        Name {
            rank: 0,
            ship: 0x0100,
            rift_code: 0,
            rift: 1,
            bloq: 13,
            init: false,
            auth: false,
            fragment_code: 0,
            fragment: 0,
            path: path.as_bytes().to_vec(),
        }
    }

    pub fn meta(&self) -> u8 {
        self.rank
            | (self.rift_code << 2)
            | (u8::from(self.init) << 4)
            | (u8::from(self.auth) << 5)
            | (self.fragment_code << 6)
    }

    pub fn etch(&self, out: &mut Vec<u8>) {
        out.push(self.meta());
        out.extend(le(self.ship, 2 << self.rank));
        out.extend(le(self.rift.into(), usize::from(self.rift_code) + 1));
        out.push(self.bloq);
        if !self.init {
            out.extend(le(self.fragment.into(), 1 << self.fragment_code));
        }
        out.extend(le(self.path.len() as u128, 2));
        out.extend(&self.path);
    }
}

/// How a data block is authenticated, and the bytes that take.
#[derive(Clone, Copy, Debug)]
pub enum Auth {
    Sign,
    Hmac,
    None,
    Pair,
}

impl Auth {
    pub const ALL: [Auth; 4] = [Auth::Sign, Auth::Hmac, Auth::None, Auth::Pair];

    /// The `aut` and `auv` bits.
    fn bits(self) -> (u8, u8) {
        match self {
            Auth::Sign => (1, 1),
            Auth::Hmac => (1, 0),
            Auth::None => (0, 1),
            Auth::Pair => (0, 0),
        }
    }

    pub fn len(self) -> usize {
        match self {
            Auth::Sign | Auth::Pair => 64,
            Auth::Hmac => 16,
            Auth::None => 0,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Data {
    /// Total width is `1 << total_code`.
    pub total_code: u8,
    pub total: u64,
    pub auth: Auth,
    /// The fragment length's width in bytes (0 to 4); written in the meta
    /// byte when under 3, else in a byte of its own.
    pub len_width: u8,
    /// Force the 2-bit length code to 3 even for narrow widths.
    pub len_byte: bool,
    pub fragment: Vec<u8>,
}

impl Data {
    pub fn simple(fragment: &[u8]) -> Data {
        Data {
            total_code: 0,
            total: fragment.len() as u64,
            auth: Auth::Sign,
            len_width: if fragment.is_empty() { 0 } else { 2 },
            len_byte: false,
            fragment: fragment.to_vec(),
        }
    }

    pub fn etch(&self, out: &mut Vec<u8>) {
        let (aut, auv) = self.auth.bits();
        let men = if self.len_byte || self.len_width >= 3 {
            3
        } else {
            self.len_width
        };
        out.push(self.total_code | (aut << 2) | (auv << 3) | (men << 6));
        out.extend(le(self.total.into(), 1 << self.total_code));
        out.extend(std::iter::repeat_n(0xa5, self.auth.len()));
        if men == 3 {
            out.push(self.len_width);
        }
        out.extend(le(self.fragment.len() as u128, usize::from(self.len_width)));
        out.extend(&self.fragment);
    }
}

/// Header word and cookie for a body of type `kind`, checksummed over
/// `mugged` (vere mugs the bytes its sifter read, which is the body unless
/// a test wants otherwise).
pub fn head(kind: u32, next_hop: u32, hops: u32, mugged: &[u8]) -> Vec<u8> {
    let mug = Mug::of(mugged).checksum().get();
    let word = (next_hop << 2) | (1 << 4) | (kind << 7) | (hops << 9) | (mug << 12);
    let mut out = word.to_le_bytes().to_vec();
    out.extend_from_slice(&[0x00, 0x02, 0xe0, 0x67]);
    out
}

/// A whole packet with a checksum over all of `body`.
pub fn pact(kind: u32, next_hop: u32, body: &[u8]) -> Vec<u8> {
    let mut out = head(kind, next_hop, 0, body);
    out.extend_from_slice(body);
    out
}

pub fn peek_body(name: &Name) -> Vec<u8> {
    let mut out = vec![];
    name.etch(&mut out);
    out
}

pub fn page_body(name: &Name, data: &Data, hop: &[u8]) -> Vec<u8> {
    let mut out = vec![];
    name.etch(&mut out);
    data.etch(&mut out);
    out.extend_from_slice(hop);
    out
}

pub fn poke_body(name: &Name, payload: &Name, data: &Data) -> Vec<u8> {
    let mut out = vec![];
    name.etch(&mut out);
    payload.etch(&mut out);
    data.etch(&mut out);
    out
}

/// One well-formed packet of each type: (name, bytes).
pub fn samples() -> Vec<(&'static str, Vec<u8>)> {
    let name = Name::simple("/a/b");
    let data = Data::simple(b"fragment");
    vec![
        ("peek", pact(PEEK, HOP_NONE, &peek_body(&name))),
        ("page", pact(PAGE, HOP_NONE, &page_body(&name, &data, &[]))),
        (
            "page with a short hop",
            pact(
                PAGE,
                HOP_SHORT,
                &page_body(&name, &data, &[192, 0, 2, 1, 0x1f, 0x90]),
            ),
        ),
        (
            "poke",
            pact(
                POKE,
                HOP_NONE,
                &poke_body(&name, &Name::simple("/p"), &data),
            ),
        ),
    ]
}
