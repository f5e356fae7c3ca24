//! IP and UDP headers for datagrams sent on raw sockets, and the sender
//! that writes them.
//!
//! A raw socket (`IPPROTO_RAW`, which implies `IP_HDRINCL`) sends the IP
//! and UDP headers it is given, so each datagram may carry any source
//! address and port without a socket bound to them: the relay sends copies
//! from each peer's lane, and the gatekeeper sends effects from
//! `ship.public` while the relay's socket is bound there. The kernel routes
//! each datagram by its destination and resolves the next hop as for any
//! locally sent packet. Opening one needs `CAP_NET_RAW`.
//!
//! - [`socket`] opens an unbound raw socket for one address family;
//! - [`PayloadSum`] and [`write_header`] write a datagram's headers and UDP
//!   checksum, the payload summed once for all the copies of it;
//! - [`Sender`] does both for a batch and sends it in one `sendmmsg`
//!   ([`BatchSocket::send_gathered`]: each datagram's header apart from its
//!   payload).

mod header;

use std::io;
use std::net::{IpAddr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};

use crate::{BatchSocket, Sent, SocketOptions};

pub use header::{Header, MAX_HEADER, PayloadSum, write_header};

/// An IP address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// The family of `ip` on the wire: an IPv4-mapped IPv6 address is IPv4.
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

/// An unbound, non-blocking raw socket (`IPPROTO_RAW`) that sends datagrams
/// of `family` whose headers the caller writes, with `send_buffer` bytes of
/// `SO_SNDBUF` (0 keeps the kernel's default). Not yet tied to a runtime:
/// [`Sender::register`] it on the one that will drive it.
///
/// Without `CAP_NET_RAW` the kernel refuses with `EPERM`
/// ([`io::ErrorKind::PermissionDenied`]); callers say what needs it.
pub fn socket(family: Family, send_buffer: usize) -> io::Result<Socket> {
    let domain = match family {
        Family::V4 => Domain::IPV4,
        Family::V6 => Domain::IPV6,
    };
    let socket = Socket::new(
        domain,
        Type::RAW,
        Some(Protocol::from(nix::libc::IPPROTO_RAW)),
    )?;
    socket.set_nonblocking(true)?;
    // Nothing reads it. An IPv4 IPPROTO_RAW socket receives nothing, but an
    // IPv6 one is handed every packet whose next header is 255, which anyone
    // may send the edge box: a filter that keeps no byte drops them all
    // before they take buffer space.
    socket.attach_filter(&[socket2::SockFilter::new(BPF_RET_K, 0, 0, 0)])?;
    SocketOptions {
        recv_buffer: 0,
        send_buffer,
        freebind: false,
    }
    .apply(&socket)?;
    Ok(socket)
}

/// The classic BPF instruction `ret #k` (`BPF_RET | BPF_K`): with k = 0,
/// "keep no byte of this packet".
const BPF_RET_K: u16 = 0x06;

/// One UDP datagram to send from a raw socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outgoing<'a> {
    /// The source written in its headers: any address of the socket's
    /// family, local or not.
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub payload: &'a [u8],
    /// [`PayloadSum::of`] `payload`.
    pub sum: PayloadSum,
}

/// A raw socket registered with a tokio runtime, sending UDP datagrams in
/// batches with the headers it writes for each.
#[derive(Debug)]
pub struct Sender {
    socket: BatchSocket,
    family: Family,
    // Reused from batch to batch: each datagram's headers, their length
    // (`None`: it cannot be written), and what the kernel took.
    headers: Vec<Header>,
    lens: Vec<Option<usize>>,
    went: Vec<bool>,
}

impl Sender {
    /// Registers a socket from [`socket`] with the current runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime with I/O enabled.
    pub fn register(socket: Socket) -> io::Result<Self> {
        let family = match socket.domain()? {
            Domain::IPV6 => Family::V6,
            _ => Family::V4,
        };
        Ok(Self {
            socket: BatchSocket::register(socket)?,
            family,
            headers: Vec::new(),
            lens: Vec::new(),
            went: Vec::new(),
        })
    }

    /// Sends every datagram, many per system call, waiting while the
    /// socket's buffer is full. A datagram is refused, skipped and counted
    /// if it cannot be written (its addresses are not both of the socket's
    /// family, or it cannot fit one IP packet) or the kernel refuses it
    /// (unreachable, filtered, longer than the MTU). Only an error of the
    /// socket itself is returned.
    ///
    /// `outcome` is cleared, then gets one entry per datagram in order,
    /// even when the socket fails: `true` if the kernel took it, `false`
    /// if it was refused or, after a failure of the socket, never tried.
    pub async fn send(
        &mut self,
        datagrams: &[Outgoing<'_>],
        outcome: &mut Vec<bool>,
    ) -> io::Result<Sent> {
        outcome.clear();
        self.headers.resize(datagrams.len(), [0; MAX_HEADER]);
        self.lens.clear();
        for (d, h) in datagrams.iter().zip(&mut self.headers) {
            let len = if Family::of(d.from.ip()) == self.family {
                write_header(h, d.from, d.to, d.payload.len(), d.sum)
            } else {
                None
            };
            self.lens.push(len);
        }
        let gathered: Vec<(SocketAddr, [&[u8]; 2])> = datagrams
            .iter()
            .zip(&self.headers)
            .zip(&self.lens)
            .filter_map(|((d, h), len)| {
                // An IPv6 raw socket reads the destination's port as a
                // protocol number: it must be zero. The port is in the
                // header.
                len.map(|len| {
                    let route_to = SocketAddr::new(d.to.ip().to_canonical(), 0);
                    (route_to, [&h[..len], d.payload])
                })
            })
            .collect();
        let result = self.socket.send_gathered(&gathered, &mut self.went).await;
        let mut went = self.went.iter();
        let mut sent = Sent::default();
        for len in &self.lens {
            let ok = len.is_some() && went.next() == Some(&true);
            if ok {
                sent.sent += 1;
            } else {
                sent.failed += 1;
            }
            outcome.push(ok);
        }
        result.map(|_| sent)
    }
}

#[cfg(test)]
mod tests;
