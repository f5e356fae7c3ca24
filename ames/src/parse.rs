//! Telling apart the protocols that share Ames's port, in vere's order.

use crate::classify::{is_mesa, is_stun, prefix_of};
use crate::{Body, Class, Mesa, Packet, ParseError, Stun};

/// A datagram vere would accept.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Datagram {
    /// An Ames, fine request or fine response packet.
    Ames(Packet),
    /// A STUN binding request or response.
    Stun(Stun),
    /// A mesa packet.
    Mesa(Mesa),
}

impl Datagram {
    /// The class [`classify`](crate::classify) gives it.
    pub fn class(&self) -> Class {
        match self {
            Datagram::Ames(packet) => match packet.body {
                Body::Ames(_) => Class::Ames,
                Body::FineRequest(_) => Class::FineRequest,
                Body::FineResponse(_) | Body::OpaqueFineResponse(_) => Class::FineResponse,
            },
            Datagram::Stun(_) => Class::Stun,
            Datagram::Mesa(_) => Class::Mesa,
        }
    }
}

/// Parses a UDP payload the way vere's `_mesa_hear` and `_ames_hear`
/// dispatch it: mesa if its cookie is there, else STUN if it is a binding
/// request or response with a valid FINGERPRINT, else an Ames-family
/// [`Packet`].
///
/// As in vere, a STUN look-alike whose FINGERPRINT fails is tried as an
/// Ames packet; if that fails too, the STUN error is returned. So in the
/// (1 in 2^20) case where such a datagram also passes the Ames checksum,
/// this returns an Ames packet where [`classify`](crate::classify) says
/// STUN. Otherwise a successful parse always agrees with `classify`.
pub fn parse(bytes: &[u8]) -> Result<Datagram, ParseError> {
    let prefix = prefix_of(bytes);
    if is_mesa(&prefix, bytes.len()) {
        return Mesa::sift(bytes).map(Datagram::Mesa);
    }
    if is_stun(&prefix, bytes.len()) {
        return match Stun::sift(bytes) {
            Ok(stun) => Ok(Datagram::Stun(stun)),
            Err(stun) => Packet::parse(bytes).map(Datagram::Ames).map_err(|_| stun),
        };
    }
    Packet::parse(bytes).map(Datagram::Ames)
}
