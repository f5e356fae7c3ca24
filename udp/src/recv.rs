//! Where received datagrams land, and what each one is.

use std::io::{self, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV6};
use std::os::fd::AsRawFd as _;

use nix::sys::socket::{self, MsgFlags, MultiHeaders, SockaddrLike, SockaddrStorage};
use socket2::Socket;

use crate::{BATCH, MAX_DATAGRAM};

/// Buffers for a batch of datagrams, and what the last receive put in them.
///
/// Allocated once and reused for every receive: [`RecvBatch::new`] is
/// [`BATCH`] slots of [`MAX_DATAGRAM`] bytes (4 MiB).
pub struct RecvBatch {
    data: Box<[u8]>,
    size: usize,
    received: Vec<Received>,
    /// Whether to ask the kernel for each datagram's source.
    sources: bool,
}

/// One datagram of the last receive, as the kernel reported it.
#[derive(Clone, Copy)]
struct Received {
    source: Option<SocketAddr>,
    len: usize,
    truncated: bool,
}

/// One received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// Who sent it: the address `recvmmsg` reported; `None` if it reported
    /// none, or if the batch is
    /// [`without_sources`](RecvBatch::without_sources). An IPv4-mapped IPv6
    /// source (`::ffff:a.b.c.d`, what a dual-stack IPv6 socket reports for
    /// an IPv4 peer) is given as the IPv4 address, so that one peer has one
    /// address whichever socket heard it;
    /// [`BatchSocket::send`](crate::BatchSocket::send) maps it back.
    pub source: Option<SocketAddr>,
    /// Its bytes, cut to the slot's size if it was longer.
    pub data: &'a [u8],
    /// Longer than the slot, so `data` is only its beginning (`MSG_TRUNC`).
    /// Cannot happen with [`MAX_DATAGRAM`]-byte slots, but a cut datagram
    /// must never pass for a whole one.
    pub truncated: bool,
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RecvBatch {
    /// [`BATCH`] slots of [`MAX_DATAGRAM`] bytes.
    pub fn new() -> Self {
        Self::with_capacity(BATCH, MAX_DATAGRAM)
    }

    /// `count` slots of `size` bytes: at most `count` datagrams per receive
    /// (the kernel takes at most 1024), each cut to `size` bytes.
    ///
    /// # Panics
    /// If `count` or `size` is zero.
    pub fn with_capacity(count: usize, size: usize) -> Self {
        assert!(
            count > 0 && size > 0,
            "a RecvBatch needs slots of some size"
        );
        Self {
            data: vec![0; count * size].into_boxed_slice(),
            size,
            received: Vec::with_capacity(count),
            sources: true,
        }
    }

    /// Does not ask for sources: every [`Datagram::source`] is `None`. For
    /// a receiver that never needs to know who sent a datagram (the
    /// gatekeeper: the lane is inside the envelope). Asking costs the
    /// kernel's copying each address out and ours converting it: 10–20%
    /// of a receive per datagram, measured on loopback.
    pub fn without_sources(mut self) -> Self {
        self.sources = false;
        self
    }

    /// How many datagrams the last receive brought.
    pub fn len(&self) -> usize {
        self.received.len()
    }

    pub fn is_empty(&self) -> bool {
        self.received.is_empty()
    }

    /// The `i`th datagram of the last receive, in arrival order.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn get(&self, i: usize) -> Datagram<'_> {
        let Received {
            source,
            len,
            truncated,
        } = self.received[i];
        let start = i * self.size;
        Datagram {
            source,
            data: &self.data[start..start + len.min(self.size)],
            truncated,
        }
    }

    /// The datagrams of the last receive, in arrival order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Datagram<'_>> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    pub(crate) fn clear(&mut self) {
        self.received.clear();
    }

    /// Receives what is queued on `socket`, without waiting: `WouldBlock`
    /// if nothing is.
    pub(crate) fn fill(&mut self, socket: &Socket) -> io::Result<usize> {
        if self.sources {
            self.fill_with::<SockaddrStorage>(socket)
        } else {
            self.fill_with::<()>(socket)
        }
    }

    fn fill_with<S: Source>(&mut self, socket: &Socket) -> io::Result<usize> {
        self.received.clear();
        let slots = self.data.len() / self.size;
        let mut iovs: Vec<[IoSliceMut<'_>; 1]> = self
            .data
            .chunks_exact_mut(self.size)
            .map(|slot| [IoSliceMut::new(slot)])
            .collect();
        let mut headers = MultiHeaders::<S>::preallocate(slots, None);
        let results = socket::recvmmsg(
            socket.as_raw_fd(),
            &mut headers,
            iovs.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )
        .map_err(io::Error::from)?;
        for msg in results {
            self.received.push(Received {
                source: msg.address.as_ref().and_then(S::socket_addr),
                len: msg.bytes,
                truncated: msg.flags.contains(MsgFlags::MSG_TRUNC),
            });
        }
        Ok(self.received.len())
    }
}

/// What `recvmmsg` is asked to report of each datagram's source: nothing
/// (`()`), or its address.
trait Source: SockaddrLike + Copy {
    fn socket_addr(&self) -> Option<SocketAddr>;
}

impl Source for () {
    fn socket_addr(&self) -> Option<SocketAddr> {
        None
    }
}

impl Source for SockaddrStorage {
    /// The peer's address, IPv4-mapped IPv6 given as IPv4.
    fn socket_addr(&self) -> Option<SocketAddr> {
        if let Some(v4) = self.as_sockaddr_in() {
            return Some(SocketAddr::V4((*v4).into()));
        }
        let v6 = SocketAddrV6::from(*self.as_sockaddr_in6()?);
        Some(match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => SocketAddr::V6(v6),
        })
    }
}
