//! A socket registered with tokio that receives and sends in batches.

use std::io::{self, IoSlice};
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::os::fd::AsRawFd as _;

use nix::errno::Errno;
use nix::sys::socket::{self, MsgFlags, MultiHeaders, SockaddrStorage};
use socket2::{Domain, Socket};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::{RecvBatch, SocketOptions};

/// Datagrams per `sendmmsg`: the kernel takes no more in one call
/// (`UIO_MAXIOV`).
const MAX_PER_SEND: usize = 1024;

/// A non-blocking datagram or raw socket, registered with a tokio runtime,
/// that moves datagrams in batches.
#[derive(Debug)]
pub struct BatchSocket {
    fd: AsyncFd<Socket>,
    v6: bool,
}

/// What became of a list of datagrams handed to a send.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    /// Taken by the kernel.
    pub sent: usize,
    /// Refused by the kernel (unreachable, wrong family, filtered, too
    /// long) or by us (an IPv6 destination on an IPv4 socket); skipped, the
    /// rest still went.
    pub failed: usize,
}

impl Sent {
    fn count(&mut self, went: bool) {
        if went {
            self.sent += 1;
        } else {
            self.failed += 1;
        }
    }
}

impl BatchSocket {
    /// Binds a UDP socket to `addr` (see [`bind`](crate::bind)) and
    /// registers it with the current runtime.
    pub fn bind(addr: SocketAddr, opts: SocketOptions) -> io::Result<Self> {
        Self::register(crate::bind(addr, opts)?)
    }

    /// Registers an IPv4 or IPv6 datagram or raw socket, bound or not (a
    /// raw socket that only sends need not be), with the current runtime,
    /// and makes it non-blocking.
    ///
    /// # Panics
    /// Outside a tokio runtime with I/O enabled.
    pub fn register(socket: Socket) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        let v6 = socket.domain()? == Domain::IPV6;
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
            .ok_or_else(|| io::Error::other("socket without an IP address"))
    }

    /// The socket itself, for options; receive and send through `self`.
    pub fn get_ref(&self) -> &Socket {
        self.fd.get_ref()
    }

    /// Waits for at least one datagram and receives as many as are queued,
    /// up to the batch's capacity. Cancel-safe: a datagram is either in
    /// `batch` or still queued.
    ///
    /// An error with an OS error code (`raw_os_error`) came from
    /// `recvmmsg`; one without means the runtime is shutting down.
    pub async fn recv(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        self.fd
            .async_io(Interest::READABLE, |socket| batch.fill(socket))
            .await
    }

    /// Receives what is queued now, without waiting: 0 if nothing is, or
    /// if the runtime has not seen the socket readable since it last found
    /// it empty (so call it after [`recv`](Self::recv), to drain).
    pub fn try_recv(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        match self
            .fd
            .try_io(Interest::READABLE, |socket| batch.fill(socket))
        {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                batch.clear();
                Ok(0)
            }
            r => r,
        }
    }

    /// Sends every datagram to its destination, many per system call,
    /// waiting while the socket's buffer is full. A datagram the kernel
    /// refuses is skipped and counted; only an error of the socket itself is
    /// returned.
    ///
    /// On an IPv6 socket, IPv4 destinations go to their IPv4-mapped
    /// address; on an IPv4 socket, IPv6 destinations fail.
    pub async fn send(&self, datagrams: &[(SocketAddr, &[u8])]) -> io::Result<Sent> {
        let to: Vec<_> = datagrams
            .iter()
            .map(|(to, _)| self.destination(*to))
            .collect();
        let parts: Vec<[IoSlice<'_>; 1]> = datagrams
            .iter()
            .map(|(_, payload)| [IoSlice::new(payload)])
            .collect();
        let mut out = Sent::default();
        self.send_each(&to, &parts, |went| out.count(went)).await?;
        Ok(out)
    }

    /// As [`send`](Self::send), for datagrams each gathered from `N` slices
    /// (say a header of its own and a payload shared with other copies),
    /// sent as one datagram each.
    ///
    /// `outcome` is cleared, then gets one entry per datagram in order:
    /// `true` if the kernel took it, `false` if it was refused. If the
    /// socket fails, the error is returned and the datagrams from
    /// `outcome.len()` on were not tried.
    pub async fn send_gathered<const N: usize>(
        &self,
        datagrams: &[(SocketAddr, [&[u8]; N])],
        outcome: &mut Vec<bool>,
    ) -> io::Result<Sent> {
        outcome.clear();
        let to: Vec<_> = datagrams
            .iter()
            .map(|(to, _)| self.destination(*to))
            .collect();
        let parts: Vec<[IoSlice<'_>; N]> = datagrams
            .iter()
            .map(|(_, slices)| slices.map(IoSlice::new))
            .collect();
        let mut out = Sent::default();
        self.send_each(&to, &parts, |went| {
            out.count(went);
            outcome.push(went);
        })
        .await?;
        Ok(out)
    }

    /// Sends `parts[i]` to `to[i]` for every `i`, in order, telling `went`
    /// of each; `None` destinations fail without a system call.
    async fn send_each<const N: usize>(
        &self,
        to: &[Option<SockaddrStorage>],
        parts: &[[IoSlice<'_>; N]],
        mut went: impl FnMut(bool),
    ) -> io::Result<()> {
        let mut next = 0;
        while next < parts.len() {
            let Some(dest) = to[next] else {
                went(false);
                next += 1;
                continue;
            };
            // A run of addressable datagrams, as long as one call takes.
            let end = to[next..]
                .iter()
                .take(MAX_PER_SEND)
                .position(Option::is_none)
                .map_or((next + MAX_PER_SEND).min(parts.len()), |n| next + n);
            let result = self
                .fd
                .async_io(Interest::WRITABLE, |socket| {
                    let mut headers =
                        MultiHeaders::<SockaddrStorage>::preallocate(end - next, None);
                    socket::sendmmsg(
                        socket.as_raw_fd(),
                        &mut headers,
                        &parts[next..end],
                        &to[next..end],
                        [],
                        MsgFlags::MSG_DONTWAIT,
                    )
                    .map(|r| r.count())
                    .map_err(io::Error::from)
                })
                .await;
            match result {
                Ok(n) if n > 0 => {
                    (0..n).for_each(|_| went(true));
                    next += n;
                }
                // Nothing taken and no error (never seen): count the first
                // as refused so that the loop always moves on.
                Ok(_) => {
                    went(false);
                    next += 1;
                }
                // `sendmmsg` fails only when the first datagram of the call
                // is refused: skip it.
                Err(e) if is_per_datagram(&e) => {
                    tracing::debug!(to = %dest, error = %e, "datagram refused");
                    went(false);
                    next += 1;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The kernel address for a destination, mapping IPv4 for an IPv6
    /// socket; `None` for IPv6 on an IPv4 socket.
    fn destination(&self, to: SocketAddr) -> Option<SockaddrStorage> {
        match (to.ip(), self.v6) {
            (IpAddr::V4(ip), true) => Some(SockaddrStorage::from(SocketAddrV6::new(
                ip.to_ipv6_mapped(),
                to.port(),
                0,
                0,
            ))),
            (IpAddr::V6(_), false) => None,
            _ => Some(SockaddrStorage::from(to)),
        }
    }
}

/// Errors that belong to one datagram (its destination, its length), not
/// to the socket.
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{BATCH, Datagram};

    fn loopback(addr: &str) -> BatchSocket {
        BatchSocket::bind(addr.parse().unwrap(), SocketOptions::default()).unwrap()
    }

    /// A sender and a receiver on 127.0.0.1, and the receiver's address.
    fn pair() -> (BatchSocket, BatchSocket, SocketAddr) {
        let (a, b) = (loopback("127.0.0.1:0"), loopback("127.0.0.1:0"));
        let to = b.local_addr().unwrap();
        (a, b, to)
    }

    /// Destinations an IPv4 socket cannot send to: IPv6 (refused by us),
    /// port 0 (refused by the kernel).
    fn unsendable() -> [SocketAddr; 2] {
        ["[::1]:9".parse().unwrap(), "127.0.0.1:0".parse().unwrap()]
    }

    /// Receives until `count` datagrams have come (all of them: loopback
    /// drops none while the receive buffer has room).
    async fn receive(socket: &BatchSocket, count: usize) -> Vec<(Option<SocketAddr>, Vec<u8>)> {
        let mut batch = RecvBatch::new();
        let mut got = Vec::new();
        while got.len() < count {
            let n = tokio::time::timeout(Duration::from_secs(10), socket.recv(&mut batch))
                .await
                .unwrap_or_else(|_| panic!("{} of {count} datagrams came", got.len()))
                .unwrap();
            assert!(n <= BATCH);
            assert_eq!(n, batch.len());
            got.extend(batch.iter().map(|d| {
                assert!(!d.truncated);
                (d.source, d.data.to_vec())
            }));
        }
        got
    }

    #[tokio::test]
    async fn a_batch_goes_out_and_comes_back() {
        let (a, b, to) = pair();
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
        let got = receive(&b, 100).await;
        let data: Vec<Vec<u8>> = got.into_iter().map(|(_, d)| d).collect();
        assert_eq!(data, payloads);
        let mut batch = RecvBatch::new();
        assert_eq!(b.try_recv(&mut batch).unwrap(), 0);
        assert!(batch.is_empty());
    }

    #[tokio::test]
    async fn a_refused_datagram_is_skipped_not_fatal() {
        let (a, b, to) = pair();
        let [v6, port0] = unsendable();
        let sent = a
            .send(&[(to, b"one"), (v6, b"x"), (port0, b"y"), (to, b"two")])
            .await
            .unwrap();
        assert_eq!(sent, Sent { sent: 2, failed: 2 });
        let got = receive(&b, 2).await;
        let data: Vec<Vec<u8>> = got.into_iter().map(|(_, d)| d).collect();
        assert_eq!(data, [b"one".to_vec(), b"two".to_vec()]);
    }

    #[tokio::test]
    async fn sources_are_the_senders_addresses_on_ipv4_and_ipv6() {
        for (a, b) in [("127.0.0.1:0", "127.0.0.1:0"), ("[::1]:0", "[::1]:0")] {
            let (a, b) = (loopback(a), loopback(b));
            let to = b.local_addr().unwrap();
            a.send(&[(to, b"from a")]).await.unwrap();
            let got = receive(&b, 1).await;
            assert_eq!(got, [(Some(a.local_addr().unwrap()), b"from a".to_vec())]);
        }
    }

    #[tokio::test]
    async fn a_dual_stack_socket_reports_ipv4_peers_as_ipv4_and_answers_them() {
        // An IPv6 socket on an IPv4-mapped address: dual-stack, loopback only.
        let dual = loopback("[::ffff:127.0.0.1]:0");
        let port = dual.local_addr().unwrap().port();
        let peer = loopback("127.0.0.1:0");
        peer.send(&[(SocketAddr::new([127, 0, 0, 1].into(), port), b"hi")])
            .await
            .unwrap();
        let got = receive(&dual, 1).await;
        let source = got[0].0.unwrap();
        assert_eq!(source, peer.local_addr().unwrap());
        // The IPv4 lane goes out through the IPv6 socket, mapped.
        let sent = dual.send(&[(source, b"back")]).await.unwrap();
        assert_eq!(sent, Sent { sent: 1, failed: 0 });
        let got = receive(&peer, 1).await;
        assert_eq!(got[0].1, b"back");
        assert_eq!(got[0].0.unwrap().port(), port);
    }

    #[tokio::test]
    async fn gathered_parts_arrive_as_one_datagram_and_refusals_are_placed() {
        let (a, b, to) = pair();
        let [v6, port0] = unsendable();
        let payload = b"shared payload";
        let datagrams: [(SocketAddr, [&[u8]; 2]); 4] = [
            (to, [b"h1:", payload]),
            (v6, [b"h2:", payload]),
            (port0, [b"h3:", payload]),
            (to, [b"h4:", payload]),
        ];
        let mut outcome = vec![true; 9];
        let sent = a.send_gathered(&datagrams, &mut outcome).await.unwrap();
        assert_eq!(sent, Sent { sent: 2, failed: 2 });
        assert_eq!(outcome, [true, false, false, true]);
        let got = receive(&b, 2).await;
        let data: Vec<Vec<u8>> = got.into_iter().map(|(_, d)| d).collect();
        assert_eq!(
            data,
            [b"h1:shared payload".to_vec(), b"h4:shared payload".to_vec()]
        );
    }

    #[tokio::test]
    async fn more_than_one_call_takes_goes_out_in_order() {
        let (a, b, to) = pair();
        let count = MAX_PER_SEND + 10;
        let payloads: Vec<[u8; 2]> = (0..count as u16).map(u16::to_be_bytes).collect();
        let datagrams: Vec<(SocketAddr, [&[u8]; 1])> =
            payloads.iter().map(|p| (to, [p.as_slice()])).collect();
        let mut outcome = Vec::new();
        let sent = a.send_gathered(&datagrams, &mut outcome).await.unwrap();
        assert_eq!(sent.sent, count);
        assert!(outcome.iter().all(|&went| went));
        let got = receive(&b, count).await;
        assert!(got.iter().zip(&payloads).all(|((_, d), p)| d == p));
    }

    #[tokio::test]
    async fn a_batch_without_sources_has_none() {
        let (a, b, to) = pair();
        a.send(&[(to, b"anonymous")]).await.unwrap();
        let mut batch = RecvBatch::new().without_sources();
        assert_eq!(b.recv(&mut batch).await.unwrap(), 1);
        assert_eq!(batch.get(0).source, None);
        assert_eq!(batch.get(0).data, b"anonymous");
    }

    #[tokio::test]
    async fn a_datagram_longer_than_its_slot_is_marked_truncated() {
        let (a, b, to) = pair();
        a.send(&[(to, b"0123456789abcdef")]).await.unwrap();
        let mut batch = RecvBatch::with_capacity(2, 8);
        assert_eq!(b.recv(&mut batch).await.unwrap(), 1);
        assert_eq!(
            batch.get(0),
            Datagram {
                source: Some(a.local_addr().unwrap()),
                data: b"01234567",
                truncated: true,
            }
        );
    }
}
