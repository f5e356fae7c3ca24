//! The Ames wire format exactly as vere reads it.
//!
//! One UDP port carries four protocols, told apart the way vere's
//! `_mesa_hear` and `_ames_hear` do it:
//!
//! 1. **mesa**: bytes 4..8 hold the mesa cookie;
//! 2. **STUN**: a binding request or response with the STUN magic cookie
//!    and a valid FINGERPRINT;
//! 3. otherwise an **Ames-family** packet: a 4-byte [`Header`], a
//!    [`Prelude`], and a body that is either Ames content, a fine (remote
//!    scry) request or a fine response.
//!
//! The crate has two layers:
//!
//! - the `no_std`, allocation-free core: [`classify`] (small and bounded
//!   enough for the edge box's eBPF program), the [`Header`] and
//!   [`Prelude`], and the value types ([`Ship`], [`Rank`], [`Lane`],
//!   [`LifeTick`], [`Mug`]);
//! - with the default `std` feature: owned packets, [`parse`],
//!   [`Packet::to_bytes`], and the [`decode`]d view for `seguro ames decode`.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(any(feature = "std", test))]
extern crate std;

mod classify;
mod error;
mod header;
mod lane;
mod mug;
mod patp;
mod prelude;
mod ship;

#[cfg(feature = "std")]
mod decode;
#[cfg(feature = "std")]
mod fine;
#[cfg(feature = "std")]
mod mesa;
#[cfg(feature = "std")]
mod packet;
#[cfg(feature = "std")]
mod parse;
#[cfg(feature = "std")]
mod stateless;
#[cfg(feature = "std")]
mod stun;

pub use classify::{Class, Defect, PREFIX_LEN, classify, classify_slice};
pub use error::{Field, ParseError};
pub use header::{HEADER_LEN, Header, Kind, Version};
pub use lane::Lane;
pub use mug::{Checksum, Mug};
pub use prelude::{LifeTick, Prelude};
pub use ship::{Rank, RankedShip, Ship};

#[cfg(feature = "std")]
pub use decode::{Decoded, Value, decode};
#[cfg(feature = "std")]
pub use fine::{Meow, Peep, Purr, ScryPath};
#[cfg(feature = "std")]
pub use mesa::{Mesa, MesaKind, NextHop};
#[cfg(feature = "std")]
pub use packet::{Body, Packet};
#[cfg(feature = "std")]
pub use parse::{Datagram, parse};
#[cfg(feature = "std")]
pub use stateless::{NotStateless, Stateless, stateless};
#[cfg(feature = "std")]
pub use stun::{Stun, StunKind};
