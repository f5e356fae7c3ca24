//! `recvmmsg` and `sendmmsg`: many datagrams per system call.

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd as _, BorrowedFd};

use socket2::{SockAddr, SockAddrStorage};

/// Buffers for up to `capacity` datagrams of up to `size` bytes each.
pub struct RecvBatch {
    bufs: Vec<Box<[u8]>>,
    names: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    received: usize,
}

// SAFETY: the raw pointers inside point into the batch's own heap buffers
// and are rebuilt before every call; nothing is shared.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    pub fn new(capacity: usize, size: usize) -> Self {
        Self {
            bufs: (0..capacity)
                .map(|_| vec![0u8; size].into_boxed_slice())
                .collect(),
            // SAFETY: all-zero is a valid sockaddr_storage (AF_UNSPEC).
            names: vec![unsafe { mem::zeroed() }; capacity],
            iovs: Vec::with_capacity(capacity),
            hdrs: Vec::with_capacity(capacity),
            received: 0,
        }
    }

    /// Receives what is queued, without waiting; `WouldBlock` if nothing is.
    pub fn recv(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        self.iovs.clear();
        self.hdrs.clear();
        for buf in &mut self.bufs {
            self.iovs.push(libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            });
        }
        for (name, iov) in self.names.iter_mut().zip(&mut self.iovs) {
            // SAFETY: all-zero is a valid msghdr; the fields set below point
            // into buffers that outlive the call.
            let mut hdr: libc::msghdr = unsafe { mem::zeroed() };
            hdr.msg_name = std::ptr::from_mut(name).cast();
            hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = iov;
            hdr.msg_iovlen = 1;
            self.hdrs.push(libc::mmsghdr {
                msg_hdr: hdr,
                msg_len: 0,
            });
        }
        // SAFETY: `hdrs` holds `len` initialised headers whose buffers stay
        // alive and unaliased for the duration of the call.
        let n = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            self.received = 0;
            return Err(io::Error::last_os_error());
        }
        self.received = n as usize;
        Ok(self.received)
    }

    /// The `i`th datagram of the last [`recv`](Self::recv): its source, its
    /// bytes, and whether it was longer than the buffer.
    pub fn get(&self, i: usize) -> Option<(SocketAddr, &[u8], bool)> {
        if i >= self.received {
            return None;
        }
        let hdr = &self.hdrs[i];
        let len = (hdr.msg_len as usize).min(self.bufs[i].len());
        let truncated = hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        let mut storage = SockAddrStorage::zeroed();
        // SAFETY: both are sockaddr_storage; the kernel wrote `msg_namelen`
        // bytes of a socket address into `names[i]`.
        let source = unsafe {
            *storage.view_as::<libc::sockaddr_storage>() = self.names[i];
            SockAddr::new(storage, hdr.msg_hdr.msg_namelen)
        }
        .as_socket()?;
        Some((source, &self.bufs[i][..len], truncated))
    }
}

/// One datagram to send: up to two buffers, gathered.
pub struct Outgoing<'a> {
    pub to: &'a SockAddr,
    pub parts: [&'a [u8]; 2],
}

/// Sends as many of `msgs` as the socket takes without waiting; returns how
/// many were sent. An error means the first of them was not.
pub fn send(fd: BorrowedFd<'_>, msgs: &[Outgoing<'_>]) -> io::Result<usize> {
    let mut iovs: Vec<[libc::iovec; 2]> = msgs
        .iter()
        .map(|m| {
            m.parts.map(|p| libc::iovec {
                iov_base: p.as_ptr().cast_mut().cast(),
                iov_len: p.len(),
            })
        })
        .collect();
    let mut hdrs: Vec<libc::mmsghdr> = msgs
        .iter()
        .zip(&mut iovs)
        .map(|(m, iov)| {
            // SAFETY: all-zero is a valid msghdr.
            let mut hdr: libc::msghdr = unsafe { mem::zeroed() };
            hdr.msg_name = m.to.as_ptr().cast_mut().cast();
            hdr.msg_namelen = m.to.len();
            hdr.msg_iov = iov.as_mut_ptr();
            hdr.msg_iovlen = 2;
            libc::mmsghdr {
                msg_hdr: hdr,
                msg_len: 0,
            }
        })
        .collect();
    // SAFETY: every header points at buffers borrowed for this call; the
    // kernel only reads them.
    let n = unsafe {
        libc::sendmmsg(
            fd.as_raw_fd(),
            hdrs.as_mut_ptr(),
            hdrs.len() as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}
