//! Which outbound packets reveal nothing of the sending ship's state, and
//! so may leave the gatekeeper without waiting for a commit.

use crate::{Datagram, ParseError, StunKind, parse};

/// A packet that reveals no state, by what it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stateless {
    /// A STUN binding response: vere's `_stun_on_request` answers a
    /// request with the lane it came from, which the requester knows.
    Stun,
    /// Another ship's packet passed on: a classic Ames packet with its
    /// origin lane set, which vere's `_ames_forward` always adds
    /// (`_ames_serialize_packet(pac_u, c3y)`), or a mesa packet.
    Forward,
}

/// Why a packet may not take the stateless path.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotStateless {
    /// It is nothing vere would read.
    #[error("not a packet vere reads: {0}")]
    Unreadable(#[source] ParseError),
    /// A STUN request: vere sends those on its own timer, not as answers.
    #[error("a STUN binding request, not a response")]
    StunRequest,
    /// An Ames-family packet without an origin lane: the ship's own,
    /// which carries its state.
    #[error("an Ames packet without an origin lane is the ship's own, not forwarded")]
    NotRelayed,
}

/// What `payload` is, if it reveals no state of the ship that sends it.
///
/// Mesa packets are taken as forwarded whatever they name: their names
/// are not parsed here, so a mesa packet of the ship's own would pass.
/// The leader's agent checks the runtime's claim the same way.
pub fn stateless(payload: &[u8]) -> Result<Stateless, NotStateless> {
    match parse(payload).map_err(NotStateless::Unreadable)? {
        Datagram::Stun(stun) => match stun.kind {
            StunKind::Response { .. } => Ok(Stateless::Stun),
            StunKind::Request => Err(NotStateless::StunRequest),
        },
        Datagram::Ames(packet) if packet.prelude.origin.is_some() => Ok(Stateless::Forward),
        Datagram::Ames(_) => Err(NotStateless::NotRelayed),
        Datagram::Mesa(_) => Ok(Stateless::Forward),
    }
}
