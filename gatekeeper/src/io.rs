//! Batched UDP: up to [`BATCH`] datagrams per system call (recvmmsg,
//! sendmmsg) on a non-blocking socket driven by tokio.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::sys::socket::{self, MsgFlags, MultiHeaders, SockaddrStorage};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Datagrams per system call.
pub const BATCH: usize = 64;

/// Room for any UDP datagram: a longer one cannot exist.
pub const MAX_DATAGRAM: usize = 65536;

/// How a socket is set up.
#[derive(Debug, Clone, Copy)]
pub struct SocketOptions {
    /// Asked for; the kernel may grant less.
    pub recv_buffer: usize,
    pub send_buffer: usize,
    /// Bind even if the address is not (yet) on this host: a standby edge
    /// box binds the ship's public address before a failover moves it here.
    pub freebind: bool,
}

impl Default for SocketOptions {
    fn default() -> Self {
        Self {
            recv_buffer: 8 << 20,
            send_buffer: 4 << 20,
            freebind: true,
        }
    }
}

/// A bound, non-blocking UDP socket that moves datagrams in batches.
#[derive(Debug)]
pub struct BatchSocket {
    fd: AsyncFd<Socket>,
    v6: bool,
}

/// Where received datagrams land: [`BATCH`] slots of [`MAX_DATAGRAM`] bytes.
pub struct RecvBatch {
    data: Box<[u8]>,
    lens: [usize; BATCH],
    truncated: [bool; BATCH],
    count: usize,
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RecvBatch {
    pub fn new() -> Self {
        Self {
            data: vec![0; BATCH * MAX_DATAGRAM].into_boxed_slice(),
            lens: [0; BATCH],
            truncated: [false; BATCH],
            count: 0,
        }
    }

    /// How many datagrams the last receive brought.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The `i`th datagram of the last receive, and whether the kernel cut it
    /// short (it cannot, given the slot size, but a cut one must not pass).
    pub fn get(&self, i: usize) -> (&[u8], bool) {
        let start = i * MAX_DATAGRAM;
        (&self.data[start..start + self.lens[i]], self.truncated[i])
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], bool)> {
        (0..self.count).map(|i| self.get(i))
    }
}

/// The outcome of sending a list of datagrams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    pub sent: usize,
    /// Refused by the kernel (unreachable, wrong family, filtered) or by us
    /// (an IPv6 lane on an IPv4 socket); skipped, the rest still go.
    pub failed: usize,
}

/// A bound, non-blocking UDP socket not yet tied to a runtime: bind where
/// convenient, then [`BatchSocket::register`] it on the runtime that will
/// drive it.
pub fn bind(addr: SocketAddr, opts: SocketOptions) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_nonblocking(true)?;
    if opts.freebind {
        if addr.is_ipv4() {
            socket.set_freebind_v4(true)?;
        } else {
            socket.set_freebind_v6(true)?;
        }
    }
    set_buffer(&socket, opts.recv_buffer, Direction::Recv);
    set_buffer(&socket, opts.send_buffer, Direction::Send);
    socket.bind(&addr.into())?;
    Ok(socket)
}

impl BatchSocket {
    /// Binds a UDP socket to `addr` and registers it with the current
    /// runtime.
    pub fn bind(addr: SocketAddr, opts: SocketOptions) -> io::Result<Self> {
        Self::register(bind(addr, opts)?)
    }

    /// Registers a socket from [`bind`] with the current runtime.
    pub fn register(socket: Socket) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        let v6 = socket
            .local_addr()?
            .as_socket()
            .is_some_and(|a| a.is_ipv6());
        // SAFETY: `socket` owns its descriptor, and the `AsyncFd` owns
        // `socket` from here on: nothing closes or replaces it meanwhile.
        let fd = unsafe { AsyncFd::register(socket) }?;
        Ok(Self { fd, v6 })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd
            .get_ref()
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("UDP socket without an IP address"))
    }

    /// Waits for at least one datagram and receives as many as are queued,
    /// up to [`BATCH`].
    pub async fn recv(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| recv_mmsg(fd.get_ref(), batch)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Receives what is queued now, without waiting: 0 if nothing is.
    pub fn try_recv(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        match self.fd.try_io(Interest::READABLE, |s| recv_mmsg(s, batch)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                batch.count = 0;
                Ok(0)
            }
            r => r,
        }
    }

    /// Sends every datagram, [`BATCH`] per system call, waiting while the
    /// socket's buffer is full. A datagram the kernel refuses is skipped
    /// and counted; only an error of the socket itself is returned.
    pub async fn send(&self, datagrams: &[(SocketAddr, &[u8])]) -> io::Result<Sent> {
        let mut out = Sent::default();
        let mut addrs: Vec<Option<SockaddrStorage>> = Vec::with_capacity(datagrams.len());
        let mut iovs: Vec<[IoSlice<'_>; 1]> = Vec::with_capacity(datagrams.len());
        for (lane, payload) in datagrams {
            match self.destination(*lane) {
                Some(to) => {
                    addrs.push(Some(to));
                    iovs.push([IoSlice::new(payload)]);
                }
                None => out.failed += 1,
            }
        }
        let mut next = 0;
        while next < iovs.len() {
            let end = (next + BATCH).min(iovs.len());
            let mut guard = self.fd.writable().await?;
            let result = guard.try_io(|fd| {
                let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(end - next, None);
                socket::sendmmsg(
                    fd.get_ref().as_raw_fd(),
                    &mut headers,
                    &iovs[next..end],
                    &addrs[next..end],
                    [],
                    MsgFlags::MSG_DONTWAIT,
                )
                .map(|r| r.count())
                .map_err(io::Error::from)
            });
            match result {
                Err(_would_block) => continue,
                Ok(Ok(n)) => {
                    out.sent += n;
                    next += n;
                }
                // The first datagram of this call was refused: skip it.
                Ok(Err(e)) if is_per_datagram(&e) => {
                    tracing::debug!(to = ?addrs[next], error = %e, "datagram refused");
                    out.failed += 1;
                    next += 1;
                }
                Ok(Err(e)) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The kernel address for a lane, mapping IPv4 lanes for an IPv6
    /// socket; `None` for an IPv6 lane on an IPv4 socket.
    fn destination(&self, lane: SocketAddr) -> Option<SockaddrStorage> {
        match (lane.ip(), self.v6) {
            (IpAddr::V4(ip), true) => Some(SockaddrStorage::from(SocketAddrV6::new(
                ip.to_ipv6_mapped(),
                lane.port(),
                0,
                0,
            ))),
            (IpAddr::V6(_), false) => None,
            _ => Some(SockaddrStorage::from(lane)),
        }
    }
}

fn recv_mmsg(socket: &Socket, batch: &mut RecvBatch) -> io::Result<usize> {
    batch.count = 0;
    let mut iovs: Vec<[IoSliceMut<'_>; 1]> = batch
        .data
        .chunks_exact_mut(MAX_DATAGRAM)
        .map(|slot| [IoSliceMut::new(slot)])
        .collect();
    let mut headers = MultiHeaders::<()>::preallocate(BATCH, None);
    let results = socket::recvmmsg(
        socket.as_raw_fd(),
        &mut headers,
        iovs.iter_mut(),
        MsgFlags::MSG_DONTWAIT,
        None,
    )
    .map_err(io::Error::from)?;
    let mut n = 0;
    for msg in results {
        batch.lens[n] = msg.bytes;
        batch.truncated[n] = msg.flags.contains(MsgFlags::MSG_TRUNC);
        n += 1;
    }
    batch.count = n;
    Ok(n)
}

/// Errors that belong to one datagram (its destination), not the socket.
fn is_per_datagram(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(
            Errno::EINVAL
                | Errno::EPERM
                | Errno::EACCES
                | Errno::ENETUNREACH
                | Errno::EHOSTUNREACH
                | Errno::EADDRNOTAVAIL
                | Errno::EAFNOSUPPORT
                | Errno::ECONNREFUSED
                | Errno::EMSGSIZE
                | Errno::EDESTADDRREQ
        )
    )
}

enum Direction {
    Recv,
    Send,
}

/// As root, the `*BUFFORCE` options pass the sysctl limits (rmem_max); as
/// anyone else, ask for what the limit allows.
fn set_buffer(socket: &Socket, size: usize, dir: Direction) {
    use nix::sys::socket::{setsockopt, sockopt};
    let forced = match dir {
        Direction::Recv => setsockopt(socket, sockopt::RcvBufForce, &size),
        Direction::Send => setsockopt(socket, sockopt::SndBufForce, &size),
    };
    if forced.is_err() {
        let _ = match dir {
            Direction::Recv => socket.set_recv_buffer_size(size),
            Direction::Send => socket.set_send_buffer_size(size),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_batch_goes_out_and_comes_back() {
        let opts = SocketOptions::default();
        let a = BatchSocket::bind("127.0.0.1:0".parse().unwrap(), opts).unwrap();
        let b = BatchSocket::bind("127.0.0.1:0".parse().unwrap(), opts).unwrap();
        let to = b.local_addr().unwrap();
        let payloads: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i; usize::from(i) + 1]).collect();
        let datagrams: Vec<(SocketAddr, &[u8])> =
            payloads.iter().map(|p| (to, p.as_slice())).collect();
        let sent = a.send(&datagrams).await.unwrap();
        assert_eq!(
            sent,
            Sent {
                sent: 100,
                failed: 0
            }
        );

        let mut batch = RecvBatch::new();
        let mut got = Vec::new();
        while got.len() < 100 {
            let n = b.recv(&mut batch).await.unwrap();
            assert!(n <= BATCH);
            got.extend(batch.iter().map(|(d, cut)| {
                assert!(!cut);
                d.to_vec()
            }));
        }
        assert_eq!(got, payloads);
        assert_eq!(b.try_recv(&mut batch).unwrap(), 0);
    }

    #[tokio::test]
    async fn a_refused_datagram_is_skipped_not_fatal() {
        let a =
            BatchSocket::bind("127.0.0.1:0".parse().unwrap(), SocketOptions::default()).unwrap();
        let b =
            BatchSocket::bind("127.0.0.1:0".parse().unwrap(), SocketOptions::default()).unwrap();
        let to = b.local_addr().unwrap();
        let v6: SocketAddr = "[::1]:9".parse().unwrap();
        let port0: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let sent = a
            .send(&[(to, b"one"), (v6, b"x"), (port0, b"y"), (to, b"two")])
            .await
            .unwrap();
        assert_eq!(sent, Sent { sent: 2, failed: 2 });
        let mut batch = RecvBatch::new();
        let mut got = Vec::new();
        while got.len() < 2 {
            b.recv(&mut batch).await.unwrap();
            got.extend(batch.iter().map(|(d, _)| d.to_vec()));
        }
        assert_eq!(got, [b"one".to_vec(), b"two".to_vec()]);
    }
}
