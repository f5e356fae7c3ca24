//! How a socket is set up before it is bound.

use std::io;
use std::net::SocketAddr;

use nix::sys::socket::{setsockopt, sockopt};
use socket2::{Domain, Protocol, Socket, Type};

/// Options set on a socket before it is bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketOptions {
    /// `SO_RCVBUF` asked for; the kernel may grant less. 0 keeps the
    /// kernel's default.
    pub recv_buffer: usize,
    /// `SO_SNDBUF`, likewise.
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

impl SocketOptions {
    /// Sets these options on `socket`, an IPv4 or IPv6 socket of any type
    /// not yet bound. A buffer the kernel will not grow stays as large as it
    /// will make it, without an error.
    pub fn apply(&self, socket: &Socket) -> io::Result<()> {
        if self.freebind {
            if socket.domain()? == Domain::IPV6 {
                socket.set_freebind_v6(true)?;
            } else {
                socket.set_freebind_v4(true)?;
            }
        }
        if self.recv_buffer > 0 {
            set_buffer(socket, self.recv_buffer, Direction::Recv);
        }
        if self.send_buffer > 0 {
            set_buffer(socket, self.send_buffer, Direction::Send);
        }
        Ok(())
    }
}

/// A bound, non-blocking UDP socket not yet tied to a runtime: bind where
/// convenient, then [`BatchSocket::register`](crate::BatchSocket::register)
/// it on the runtime that will drive it.
pub fn bind(addr: SocketAddr, opts: SocketOptions) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_nonblocking(true)?;
    opts.apply(&socket)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

enum Direction {
    Recv,
    Send,
}

/// As root (CAP_NET_ADMIN), the `*BUFFORCE` options pass the sysctl limits
/// (`net.core.rmem_max`, `wmem_max`); as anyone else, ask for what the limit
/// allows.
fn set_buffer(socket: &Socket, size: usize, dir: Direction) {
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

    /// TEST-NET-1: never an address of this host.
    const ELSEWHERE: &str = "192.0.2.1:0";

    #[test]
    fn freebind_binds_an_address_not_on_this_host() {
        let addr = ELSEWHERE.parse().unwrap();
        bind(addr, SocketOptions::default()).unwrap();
        let strict = SocketOptions {
            freebind: false,
            ..SocketOptions::default()
        };
        let e = bind(addr, strict).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrNotAvailable);
    }

    #[test]
    fn zero_keeps_the_kernels_buffer_size() {
        let plain = Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap();
        let default = plain.recv_buffer_size().unwrap();
        let opts = SocketOptions {
            recv_buffer: 0,
            // Less than any default: the kernel's floor, whoever asks.
            send_buffer: 4096,
            freebind: false,
        };
        let socket = bind("127.0.0.1:0".parse().unwrap(), opts).unwrap();
        assert_eq!(socket.recv_buffer_size().unwrap(), default);
        assert_ne!(
            socket.send_buffer_size().unwrap(),
            plain.send_buffer_size().unwrap()
        );
    }
}
