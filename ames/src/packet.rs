//! Whole Ames-family packets: header, prelude and body, parsed and emitted.

use std::vec::Vec;

use crate::fine::{self, Peep, Purr};
use crate::{Field, HEADER_LEN, Header, Kind, Mug, ParseError, Prelude, Version};

/// What follows the prelude.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Body {
    /// Ames content: opaque to vere, which hands it to arvo.
    Ames(Vec<u8>),
    /// A fine request ("wail"); its tag is always 0 (unsigned).
    FineRequest(Peep),
    /// A fine response ("purr") in the shape `_fine_etch_response` writes.
    FineResponse(Purr),
    /// A fine response of any other shape (shorter than a peep and a
    /// signature, or with a path vere's path parser refuses), kept as
    /// bytes: vere injects it all the same, since `_fine_hear_response`
    /// reads no body.
    OpaqueFineResponse(Vec<u8>),
}

impl Body {
    /// The header flags this body goes with.
    pub fn kind(&self) -> Kind {
        match self {
            Body::Ames(_) => Kind::Ames,
            Body::FineRequest(_) => Kind::FineRequest,
            Body::FineResponse(_) | Body::OpaqueFineResponse(_) => Kind::FineResponse,
        }
    }
}

/// An Ames-family packet (vere's `u3_pact`).
///
/// The header is not stored: its flags, ranks and relayed bit follow from
/// the prelude and body, its version is always 0 and its checksum is
/// computed when emitting.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Packet {
    /// Ships, life ticks, origin.
    pub prelude: Prelude,
    /// The body.
    pub body: Body,
}

impl Packet {
    /// Parses an Ames-family packet with the checks of `_ames_hear`, in its
    /// order: header, version, checksum, prelude, then the body (fine
    /// requests as `_fine_sift_wail` and `_fine_scry_path` check them).
    ///
    /// This does not look for mesa or STUN first; [`parse`](crate::parse)
    /// does. vere hands fine responses to arvo unread
    /// (`_fine_hear_response`), so any body is accepted: one in the shape
    /// `_fine_etch_response` gives them (with a valid scry path) becomes a
    /// [`Body::FineResponse`], anything else a [`Body::OpaqueFineResponse`].
    pub fn parse(bytes: &[u8]) -> Result<Packet, ParseError> {
        let len = bytes.len();
        let header = Header::sift(bytes.first_chunk().copied().ok_or(ParseError::Truncated {
            field: Field::Header,
            start: 0,
            end: HEADER_LEN,
            len,
        })?);
        if header.version != Version::AMES {
            return Err(ParseError::BadVersion {
                found: header.version.get(),
            });
        }
        // vere mugs before checking that the prelude fits (and, for a
        // relayed packet under 10 bytes, mugs from past the end).
        let mugged = HEADER_LEN + header.origin_len();
        let computed = Mug::of(bytes.get(mugged..).ok_or(ParseError::Truncated {
            field: Field::Origin,
            start: HEADER_LEN,
            end: mugged,
            len,
        })?)
        .checksum();
        if computed != header.checksum {
            return Err(ParseError::MugMismatch {
                header: header.checksum,
                computed,
                start: mugged,
                len,
            });
        }
        let prelude = Prelude::sift(&header, bytes)?;
        let at = HEADER_LEN + header.prelude_len();
        let body = match header.kind {
            Kind::Ames => Body::Ames(bytes.get(at..).unwrap_or_default().to_vec()),
            Kind::FineRequest => Body::FineRequest(fine::sift_request(bytes, at)?),
            Kind::FineResponse => match fine::sift_response(bytes, at) {
                Ok(purr) => Body::FineResponse(purr),
                Err(_) => Body::OpaqueFineResponse(bytes.get(at..).unwrap_or_default().to_vec()),
            },
        };
        Ok(Packet { prelude, body })
    }

    /// The bytes vere's etch functions produce for this packet.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Appends the packet to `out`: header, prelude, body, then the header
    /// is filled in with the checksum of everything after the origin, as
    /// `_fine_etch_response` does.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; HEADER_LEN]);
        let mugged = self.prelude.etch(out);
        match &self.body {
            Body::Ames(content) => out.extend_from_slice(content),
            Body::FineRequest(peep) => fine::etch_request(peep, out),
            Body::FineResponse(purr) => fine::etch_response(purr, out),
            Body::OpaqueFineResponse(body) => out.extend_from_slice(body),
        }
        let header = Header {
            kind: self.body.kind(),
            version: Version::AMES,
            sender_rank: self.prelude.sender.rank(),
            receiver_rank: self.prelude.receiver.rank(),
            checksum: Mug::of(&out[mugged..]).checksum(),
            relayed: self.prelude.origin.is_some(),
        };
        out[start..start + HEADER_LEN].copy_from_slice(&header.etch());
    }
}
