//! Why a datagram failed to parse, and at which byte.

use core::fmt;

use crate::Checksum;

/// A region of a packet that can be cut short.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// The 4-byte header.
    Header,
    /// The 6-byte origin lane of a relayed packet.
    Origin,
    /// Life ticks and the two ships.
    Prelude,
    /// A fine request's tag, fragment number and path length.
    RequestHead,
    /// A fine response's fragment number and path length.
    ResponseHead,
    /// A fine scry path.
    Path,
    /// A fine response's 64-byte signature.
    Signature,
    /// A mesa name's meta byte.
    MesaNameMeta,
    /// A mesa name's ship.
    MesaShip,
    /// A mesa name's rift.
    MesaRift,
    /// A mesa name's bloq.
    MesaBloq,
    /// A mesa name's fragment number.
    MesaFragmentNumber,
    /// A mesa name's 2-byte path length.
    MesaPathLength,
    /// A mesa name's path.
    MesaPath,
    /// A mesa data block's meta byte.
    MesaDataMeta,
    /// A mesa data block's total size.
    MesaTotal,
    /// A mesa data block's authenticator.
    MesaAuth,
    /// The byte giving a mesa fragment length's width.
    MesaLengthWidth,
    /// A mesa fragment's length.
    MesaFragmentLength,
    /// A mesa fragment.
    MesaFragment,
    /// A mesa page's 6-byte next-hop lane.
    MesaNextHop,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Header => "header",
            Field::Origin => "origin lane",
            Field::Prelude => "prelude (life ticks and ships)",
            Field::RequestHead => "fine request's tag, fragment and path length",
            Field::ResponseHead => "fine response's fragment and path length",
            Field::Path => "scry path",
            Field::Signature => "fine response's signature",
            Field::MesaNameMeta => {
                "mesa name's meta byte (rank, rift width, init, auth, fragment width)"
            }
            Field::MesaShip => "mesa name's ship",
            Field::MesaRift => "mesa name's rift",
            Field::MesaBloq => "mesa name's bloq",
            Field::MesaFragmentNumber => "mesa name's fragment number",
            Field::MesaPathLength => "mesa name's path length",
            Field::MesaPath => "mesa name's path",
            Field::MesaDataMeta => "mesa data's meta byte (total width, auth kind, length width)",
            Field::MesaTotal => "mesa data's total size",
            Field::MesaAuth => "mesa data's authenticator (signature, HMAC or hash pair)",
            Field::MesaLengthWidth => "mesa fragment length's width byte",
            Field::MesaFragmentLength => "mesa fragment's length",
            Field::MesaFragment => "mesa fragment",
            Field::MesaNextHop => "mesa page's 6-byte next hop",
        })
    }
}

/// Why vere would drop a datagram (or, for fine responses, why it does not
/// have the shape vere's etch gives them). Each message names the byte
/// offset; [`ParseError::offset`] returns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The packet ends inside `field`.
    #[error("the {field} needs bytes {start}..{end}, but the packet is only {len} bytes long")]
    Truncated {
        /// What was cut short.
        field: Field,
        /// Where it starts.
        start: usize,
        /// Where it would end.
        end: usize,
        /// The packet's length.
        len: usize,
    },

    /// The header's version is not the one vere accepts.
    #[error("byte 0: protocol version {found}, but vere only accepts 0")]
    BadVersion {
        /// The version found.
        found: u8,
    },

    /// The header checksum is not the mug of the bytes it covers.
    #[error(
        "bytes 0..4: header checksum {header} does not match {computed}, \
         the mug of bytes {start}..{len}"
    )]
    MugMismatch {
        /// What the header says.
        header: Checksum,
        /// What the bytes hash to.
        computed: Checksum,
        /// Where the hashed bytes start.
        start: usize,
        /// Where they end: the packet's length (for mesa, the end of the
        /// body vere read).
        len: usize,
    },

    /// A fine request whose tag is not 0, the only (unsigned) kind.
    #[error("byte {at}: fine request tag {tag}, but only 0 (unsigned) exists")]
    RequestTag {
        /// The tag found.
        tag: u8,
        /// Its offset.
        at: usize,
    },

    /// A scry path longer than vere's `FINE_PATH_MAX`.
    #[error("bytes {at}..{end}: scry path length {len} is over the 384-byte limit", end = .at + 2)]
    PathTooLong {
        /// The declared length.
        len: usize,
        /// Offset of the length field.
        at: usize,
    },

    /// An empty scry path; Hoon's path parser wants at least `/`.
    #[error("byte {at}: the scry path is empty, but it must start with '/'")]
    EmptyPath {
        /// Where the path would start.
        at: usize,
    },

    /// A scry path that Hoon's path parser rejects: it must start with `/`
    /// and hold printable ASCII only.
    #[error(
        "byte {at}: {byte:#04x} cannot appear there in a scry path (a '/' then printable ASCII)"
    )]
    BadPath {
        /// The offending byte.
        byte: u8,
        /// Its offset.
        at: usize,
    },

    /// Bytes after the point where the format says the packet ends.
    #[error("byte {end}: the packet should end here, but it goes on to byte {len}")]
    TrailingBytes {
        /// Where the packet should end.
        end: usize,
        /// Where it does end.
        len: usize,
    },

    /// A STUN message without the FINGERPRINT attribute vere requires.
    #[error("bytes 20..{len}: no STUN FINGERPRINT attribute")]
    StunNoFingerprint {
        /// The packet's length.
        len: usize,
    },

    /// vere only accepts the first FINGERPRINT if it closes the message.
    #[error("byte {at}: the STUN FINGERPRINT attribute is not the last 8 bytes")]
    StunFingerprintNotLast {
        /// Offset of the attribute.
        at: usize,
    },

    /// A FINGERPRINT that is not the CRC-32 of what precedes it.
    #[error(
        "bytes {value_at}..{end}: STUN FINGERPRINT {found:#010x}, but the \
         CRC-32 of bytes 0..{at} xor 0x5354554e is {expected:#010x}",
        value_at = .at + 4, end = .at + 8
    )]
    StunFingerprintMismatch {
        /// Offset of the attribute.
        at: usize,
        /// The value in the packet.
        found: u32,
        /// The value it should have.
        expected: u32,
    },

    /// A mesa packet longer than vere's `PACT_SIZE`.
    #[error("mesa packet of {len} bytes is over the {max}-byte limit", max = crate::classify::MESA_MAX_LEN)]
    MesaTooLong {
        /// The packet's length.
        len: usize,
    },

    /// A mesa header whose protocol is not 1.
    #[error("byte 0: mesa protocol {found}, but vere only accepts 1")]
    MesaVersion {
        /// The protocol found.
        found: u8,
    },

    /// A mesa page whose header says its next hop is long or many, which
    /// vere's `_mesa_sift_page_pact` refuses (pages take none or short).
    #[error(
        "bytes 0..4: the header gives this mesa page a {} next hop, but vere \
         takes only none or a 6-byte short one on pages",
        if *.many { "many" } else { "long" }
    )]
    MesaPageHop {
        /// `HOP_MANY` rather than `HOP_LONG`.
        many: bool,
    },

    /// An init mesa name (bit 4 of its meta byte) with the auth bit or a
    /// fragment-number width set: `_mesa_sift_name` asserts against both,
    /// so vere would abort.
    #[error(
        "byte {at}: a mesa init name with the auth bit or a fragment-number \
         width set, which vere asserts never happens"
    )]
    MesaInitName {
        /// Offset of the name's meta byte.
        at: usize,
    },

    /// A mesa fragment length wider than the 4 bytes `_sift_var_word`
    /// reads.
    #[error("byte {at}: mesa fragment length {width} bytes wide, but vere reads at most 4")]
    MesaLengthWidth {
        /// The width found.
        width: u8,
        /// Offset of the width byte.
        at: usize,
    },
}

impl ParseError {
    /// The offset of the first byte at fault.
    pub const fn offset(&self) -> usize {
        match *self {
            ParseError::Truncated { len, .. } => len,
            ParseError::BadVersion { .. }
            | ParseError::MugMismatch { .. }
            | ParseError::MesaVersion { .. }
            | ParseError::MesaPageHop { .. } => 0,
            ParseError::RequestTag { at, .. }
            | ParseError::PathTooLong { at, .. }
            | ParseError::EmptyPath { at }
            | ParseError::BadPath { at, .. }
            | ParseError::StunFingerprintNotLast { at }
            | ParseError::StunFingerprintMismatch { at, .. }
            | ParseError::MesaInitName { at }
            | ParseError::MesaLengthWidth { at, .. } => at,
            ParseError::TrailingBytes { end, .. } => end,
            ParseError::StunNoFingerprint { .. } => 20,
            ParseError::MesaTooLong { .. } => crate::classify::MESA_MAX_LEN,
        }
    }

    /// Whether [`classify`](crate::classify) also catches this defect.
    ///
    /// The classifier only sees the first [`PREFIX_LEN`](crate::PREFIX_LEN)
    /// bytes and the length, so it does not hash (mug, STUN CRC) and does not
    /// read fields at variable offsets (fine tags, paths). For every error
    /// where this is `true`, `classify` returns `Class::Malformed`.
    pub const fn is_shallow(&self) -> bool {
        match *self {
            ParseError::Truncated { field, .. } => matches!(
                field,
                Field::Header | Field::Origin | Field::Prelude | Field::RequestHead
            ),
            ParseError::BadVersion { .. }
            | ParseError::MesaTooLong { .. }
            | ParseError::MesaVersion { .. } => true,
            ParseError::MugMismatch { .. }
            | ParseError::RequestTag { .. }
            | ParseError::PathTooLong { .. }
            | ParseError::EmptyPath { .. }
            | ParseError::BadPath { .. }
            | ParseError::TrailingBytes { .. }
            | ParseError::StunNoFingerprint { .. }
            | ParseError::StunFingerprintNotLast { .. }
            | ParseError::StunFingerprintMismatch { .. }
            | ParseError::MesaPageHop { .. }
            | ParseError::MesaInitName { .. }
            | ParseError::MesaLengthWidth { .. } => false,
        }
    }
}
