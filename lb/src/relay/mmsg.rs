//! `recvmmsg` and `sendmmsg` through nix: many datagrams per system call,
//! without unsafe code of ours around `mmsghdr`.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd as _, BorrowedFd};

use nix::sys::socket::{self, MsgFlags, MultiHeaders, SockaddrStorage};

/// Buffers for up to `capacity` datagrams of up to `size` bytes each, and
/// what the last [`recv`](RecvBatch::recv) put in them.
pub struct RecvBatch {
    data: Box<[u8]>,
    size: usize,
    capacity: usize,
    /// Source, length, truncated.
    received: Vec<(Option<SocketAddr>, usize, bool)>,
}

impl RecvBatch {
    pub fn new(capacity: usize, size: usize) -> Self {
        Self {
            data: vec![0u8; capacity * size].into_boxed_slice(),
            size,
            capacity,
            received: Vec::with_capacity(capacity),
        }
    }

    /// Receives what is queued, without waiting; `WouldBlock` if nothing is.
    pub fn recv(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        self.received.clear();
        let mut iovs: Vec<[IoSliceMut<'_>; 1]> = self
            .data
            .chunks_exact_mut(self.size)
            .map(|slot| [IoSliceMut::new(slot)])
            .collect();
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(self.capacity, None);
        let results = socket::recvmmsg(
            fd.as_raw_fd(),
            &mut headers,
            iovs.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )
        .map_err(io::Error::from)?;
        for msg in results {
            self.received.push((
                msg.address.and_then(|a| socket_addr(&a)),
                msg.bytes,
                msg.flags.contains(MsgFlags::MSG_TRUNC),
            ));
        }
        Ok(self.received.len())
    }

    /// The `i`th datagram of the last [`recv`](Self::recv): its source, its
    /// bytes, and whether it was longer than the buffer.
    pub fn get(&self, i: usize) -> Option<(SocketAddr, &[u8], bool)> {
        let &(source, len, truncated) = self.received.get(i)?;
        let start = i * self.size;
        Some((
            source?,
            &self.data[start..start + len.min(self.size)],
            truncated,
        ))
    }
}

fn socket_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

/// One datagram to send: a header and a payload, gathered.
pub struct Outgoing<'a> {
    pub to: SockaddrStorage,
    pub parts: [IoSlice<'a>; 2],
}

impl<'a> Outgoing<'a> {
    pub fn new(to: SocketAddr, header: &'a [u8], payload: &'a [u8]) -> Self {
        Self {
            to: SockaddrStorage::from(to),
            parts: [IoSlice::new(header), IoSlice::new(payload)],
        }
    }
}

/// Sends as many of `msgs` as the socket takes without waiting; returns how
/// many were sent. An error means the first of them was not.
pub fn send(fd: BorrowedFd<'_>, msgs: &[Outgoing<'_>]) -> io::Result<usize> {
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(msgs.len(), None);
    let slices: Vec<&[IoSlice<'_>; 2]> = msgs.iter().map(|m| &m.parts).collect();
    let addrs: Vec<Option<SockaddrStorage>> = msgs.iter().map(|m| Some(m.to)).collect();
    let sent = socket::sendmmsg(
        fd.as_raw_fd(),
        &mut headers,
        &slices,
        &addrs,
        [],
        MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io::Error::from)?;
    Ok(sent.count())
}
