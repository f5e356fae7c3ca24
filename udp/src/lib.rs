//! Batched UDP on tokio: many datagrams per recvmmsg/sendmmsg.
//!
//! - [`bind`] makes a bound, non-blocking UDP socket with [`SocketOptions`]
//!   (buffer sizes, `IP_FREEBIND`), not yet tied to a runtime, so that a
//!   daemon can bind on one thread and drive the socket from another.
//! - [`BatchSocket`] registers any datagram or raw socket with the current
//!   tokio runtime and moves datagrams in batches: [`BatchSocket::recv`]
//!   into a [`RecvBatch`] (data, source address, truncation of each),
//!   [`BatchSocket::send`] of `(destination, payload)` pairs, and
//!   [`BatchSocket::send_gathered`] of datagrams gathered from several
//!   slices (a header written apart from a payload shared by many copies).
//! - [`raw`]: IP and UDP headers for datagrams sent on raw sockets, so that
//!   a datagram leaves from an address and port no socket is bound to.
//!
//! A send skips and counts each datagram the kernel refuses (unreachable,
//! filtered, too long): one bad destination never holds up the others.
//! Only an error of the socket itself is returned.
//!
//! The `mmsghdr` plumbing is nix's; nothing here is `unsafe` but the
//! registration of a socket that the [`BatchSocket`] then owns.

mod options;
pub mod raw;
mod recv;
mod socket;

pub use options::{SocketOptions, bind};
pub use recv::{Datagram, RecvBatch};
pub use socket::{BatchSocket, Sent};
/// The socket type [`bind`] returns and [`BatchSocket::register`] takes.
pub use socket2::Socket;

/// Datagrams per receive: the slots of a [`RecvBatch::new`].
pub const BATCH: usize = 64;

/// Room for any UDP datagram: a longer one cannot exist.
pub const MAX_DATAGRAM: usize = 65536;
