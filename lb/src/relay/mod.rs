//! The userspace relay (`lb.mode = "userspace"`), for hosts without XDP.
//!
//! It receives on a UDP socket bound to the ship's public address with
//! `recvmmsg`, classifies each datagram with the same `ames::classify` the
//! kernel programs run, and sends each accepted one to every replica with
//! `sendmmsg` on a raw socket (`IPPROTO_RAW`, so IP_HDRINCL): the relay
//! writes the IP and UDP headers itself, with the peer's address and port as
//! the source, which is what needs CAP_NET_RAW. The kernel routes each copy
//! and resolves its next hop as for any locally sent packet.
//!
//! It never sees packets that are not for the ship, and the kernel has
//! already reassembled fragments and checked lengths and checksums.

mod mmsg;
mod packet;

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd as _;
use std::sync::{Arc, Mutex, PoisonError};

use lb_abi::{Counters, DropReason};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::sync::{oneshot, watch};
use tracing::{debug, warn};

use crate::Error;
use crate::plan::Desired;

/// Datagrams per `recvmmsg`.
const BATCH: usize = 64;
/// The largest datagram taken whole; UDP allows no more.
const MAX_DATAGRAM: usize = 65_535;
/// Socket buffers asked for: a burst of several batches.
const SOCKET_BUFFER: usize = 8 << 20;

/// The relay's view of the plan.
#[derive(Clone, Debug, PartialEq)]
struct Targets {
    drop_malformed: bool,
    /// Each replica: where the raw socket routes to (its address, port 0),
    /// its Ames address, and its counter slot.
    to: Vec<(SocketAddr, SocketAddr, u8)>,
}

/// A running relay.
pub struct Relay {
    targets: watch::Sender<Arc<Targets>>,
    counters: Arc<Mutex<Counters>>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Binds the ship's address and starts relaying; needs a tokio runtime.
    pub fn start(desired: &Desired) -> Result<Relay, Error> {
        let ship = desired.ship;
        let domain = Domain::for_address(ship);
        let udp = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))
            .map_err(Error::io("creating the relay's UDP socket"))?;
        if ship.is_ipv6() {
            udp.set_only_v6(true)
                .map_err(Error::io("setting IPV6_V6ONLY"))?;
        }
        grow_buffer(&udp, true);
        udp.bind(&ship.into()).map_err(|e| bind_error(ship, e))?;
        udp.set_nonblocking(true)
            .map_err(Error::io("making the UDP socket non-blocking"))?;

        let raw = Socket::new(domain, Type::RAW, Some(Protocol::from(libc::IPPROTO_RAW))).map_err(|e| {
            if e.raw_os_error() == Some(libc::EPERM) {
                Error::NotPermitted(format!(
                    "lb.mode = \"userspace\" sends copies with the peer's source from a raw socket, \
                     which needs root or CAP_NET_RAW: {e}"
                ))
            } else {
                Error::io("creating the relay's raw socket")(e)
            }
        })?;
        grow_buffer(&raw, false);
        raw.set_nonblocking(true)
            .map_err(Error::io("making the raw socket non-blocking"))?;

        let udp = register(udp).map_err(Error::io("registering the UDP socket"))?;
        let raw = register(raw).map_err(Error::io("registering the raw socket"))?;
        let (targets, watch) = watch::channel(Arc::new(Targets::from(desired)));
        let counters = Arc::new(Mutex::new(Counters::ZERO));
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(relay(udp, raw, watch, counters.clone(), stopped));
        Ok(Relay {
            targets,
            counters,
            stop: Some(stop),
            task,
        })
    }

    /// Switches to a new replica set; the next batch uses it.
    pub fn publish(&self, desired: &Desired) {
        self.targets.send_replace(Arc::new(Targets::from(desired)));
    }

    pub fn counters(&self) -> Counters {
        *self.counters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops relaying and closes both sockets.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Err(e) = (&mut self.task).await
            && e.is_panic()
        {
            warn!("the relay task panicked");
        }
    }
}

impl From<&Desired> for Targets {
    fn from(d: &Desired) -> Self {
        Targets {
            drop_malformed: d.drop_malformed,
            to: d
                .replicas
                .iter()
                .map(|r| {
                    // A raw IPv6 socket reads the port of the destination as
                    // a protocol number: it must be zero.
                    let route_to = SocketAddr::new(r.ames.ip(), 0);
                    (route_to, r.ames, r.slot)
                })
                .collect(),
        }
    }
}

async fn relay(
    udp: AsyncFd<Socket>,
    raw: AsyncFd<Socket>,
    targets: watch::Receiver<Arc<Targets>>,
    counters: Arc<Mutex<Counters>>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut batch = mmsg::RecvBatch::new(BATCH, MAX_DATAGRAM);
    let mut headers: Vec<[u8; packet::MAX_HEADER]> = Vec::new();
    loop {
        let ready = tokio::select! {
            _ = &mut stopped => return,
            ready = udp.readable() => ready,
        };
        let mut guard = match ready {
            Ok(guard) => guard,
            Err(e) => {
                warn!(error = %e, "waiting for the relay's socket; stopping the relay");
                return;
            }
        };
        let n = match guard.try_io(|fd| batch.recv(fd.get_ref().as_fd())) {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                warn!(error = %e, "recvmmsg");
                continue;
            }
            Err(_would_block) => continue,
        };
        let plan = targets.borrow().clone();
        let mut local = Counters::ZERO;
        // Accepted datagrams: (index in batch, source, payload sum).
        let mut accepted = Vec::with_capacity(n);
        for i in 0..n {
            let Some((source, payload, truncated)) = batch.get(i) else {
                continue;
            };
            if truncated {
                local.dropped[DropReason::BadLength as usize] += 1;
                continue;
            }
            let class = ames::classify_slice(payload);
            let tag = usize::from(class.tag());
            local.packets[tag] += 1;
            local.bytes[tag] += payload.len() as u64;
            if let ames::Class::Malformed(defect) = class
                && plan.drop_malformed
            {
                local.dropped[DropReason::malformed(defect) as usize] += 1;
                continue;
            }
            if plan.to.is_empty() {
                local.dropped[DropReason::Undelivered as usize] += 1;
                continue;
            }
            accepted.push((i, source, packet::sum(payload)));
        }
        // One header per copy, then one message per copy pointing at its
        // header and at the payload it shares with the other copies.
        headers.resize(accepted.len() * plan.to.len(), [0; packet::MAX_HEADER]);
        let mut outgoing = Vec::with_capacity(headers.len());
        let mut slots = Vec::with_capacity(headers.len());
        let mut header_iter = headers.iter_mut();
        for &(i, source, payload_sum) in &accepted {
            let Some((_, payload, _)) = batch.get(i) else {
                continue;
            };
            for (route_to, to, slot) in &plan.to {
                let Some(h) = header_iter.next() else { break };
                let len = packet::header(h, source, *to, payload.len(), payload_sum);
                outgoing.push(mmsg::Outgoing::new(*route_to, &h[..len], payload));
                slots.push(*slot);
            }
        }
        send_all(&raw, &outgoing, &slots, &mut local).await;
        let mut shared = counters.lock().unwrap_or_else(PoisonError::into_inner);
        shared.add(&local);
    }
}

/// Sends every message, waiting while the socket is full; a message the
/// kernel refuses is counted as a failure for its replica and skipped.
async fn send_all(
    raw: &AsyncFd<Socket>,
    msgs: &[mmsg::Outgoing<'_>],
    slots: &[u8],
    counters: &mut Counters,
) {
    let mut at = 0;
    while at < msgs.len() {
        // At most UIO_MAXIOV messages per call.
        let end = (at + 1024).min(msgs.len());
        match mmsg::send(raw.get_ref().as_fd(), &msgs[at..end]) {
            Ok(0) => {
                // Nothing taken and no error (never seen): count the first as
                // failed so that the loop always advances.
                counters.clone_failures[usize::from(slots[at])] += 1;
                at += 1;
            }
            Ok(sent) => {
                for &slot in &slots[at..at + sent] {
                    counters.copies[usize::from(slot)] += 1;
                }
                at += sent;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => match raw.writable().await {
                Ok(mut guard) => guard.clear_ready(),
                Err(e) => {
                    warn!(error = %e, "waiting for the raw socket");
                    fail_rest(&slots[at..], counters);
                    return;
                }
            },
            Err(e) => {
                // EHOSTUNREACH, ENETUNREACH, EMSGSIZE...: this copy only.
                debug!(error = %e, slot = slots[at], "sending a copy");
                counters.clone_failures[usize::from(slots[at])] += 1;
                at += 1;
            }
        }
    }
}

fn fail_rest(slots: &[u8], counters: &mut Counters) {
    for &slot in slots {
        counters.clone_failures[usize::from(slot)] += 1;
    }
}

/// Asks for large socket buffers: past the sysctl limit if CAP_NET_ADMIN
/// allows it, else as large as the limit.
fn grow_buffer(socket: &Socket, receive: bool) {
    use nix::sys::socket::{setsockopt, sockopt};
    let forced = if receive {
        setsockopt(socket, sockopt::RcvBufForce, &SOCKET_BUFFER)
    } else {
        setsockopt(socket, sockopt::SndBufForce, &SOCKET_BUFFER)
    };
    if forced.is_err() {
        // Without CAP_NET_ADMIN: as much as net.core.*mem_max allows.
        let _ = if receive {
            socket.set_recv_buffer_size(SOCKET_BUFFER)
        } else {
            socket.set_send_buffer_size(SOCKET_BUFFER)
        };
    }
}

fn register(socket: Socket) -> io::Result<AsyncFd<Socket>> {
    // SAFETY: the `Socket` owns its descriptor, so it stays open and the same
    // for as long as the `AsyncFd` that owns the `Socket` lives.
    unsafe { AsyncFd::register(socket) }.map_err(|e| e.into_parts().1)
}

fn bind_error(ship: SocketAddr, e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::EADDRNOTAVAIL) => Error::Config(format!(
            "ship.public: {} is not an address of this host, so the relay cannot receive on it",
            ship.ip()
        )),
        Some(libc::EADDRINUSE) => Error::Config(format!(
            "ship.public: {ship} is already bound by another socket on this host"
        )),
        _ => Error::io(format!("binding {ship}"))(e),
    }
}
