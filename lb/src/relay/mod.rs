//! The userspace relay (`lb.mode = "userspace"`), for hosts without XDP.
//!
//! It receives on a UDP socket bound to the ship's public address with
//! `recvmmsg`, classifies each datagram with the same `ames::classify` the
//! kernel programs run, and sends each accepted one to every replica with
//! `sendmmsg` on a raw socket ([`udp::raw`]: `IPPROTO_RAW`, so IP_HDRINCL):
//! the headers carry the peer's address and port as the source, which is
//! what needs CAP_NET_RAW. The kernel routes each copy and resolves its next
//! hop as for any locally sent packet. The gatekeeper sends its effects the
//! same way, from `ship.public`, so the relay's socket is the only one bound
//! there.
//!
//! It never sees packets that are not for the ship, and the kernel has
//! already reassembled fragments and checked lengths and checksums. A copy
//! longer than the route to its replica carries (a fine response with a
//! long path is) leaves as IP fragments the relay cuts itself
//! ([`fragment`]): a raw socket refuses anything over the MTU.
//!
//! In the XDP modes the same relay receives only what the kernel programs
//! pass to the edge box's stack: fragmented datagrams, once reassembled.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use lb_abi::{Counters, DropReason};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::{oneshot, watch};
use tracing::warn;
use udp::raw::{self, Family, Outgoing, PayloadSum};
use udp::{BatchSocket, RecvBatch, SocketOptions};

use crate::Error;
use crate::plan::Desired;

mod fragment;

/// Assumed when the route to a replica cannot be looked up: the smallest
/// MTU each family guarantees.
const MIN_MTU_V4: usize = 576;
const MIN_MTU_V6: usize = 1280;

/// Socket buffers asked for: a burst of several batches.
const SOCKET_BUFFER: usize = 8 << 20;
/// The UDP socket receives only; the ship's address must be this host's.
const RECEIVER: SocketOptions = SocketOptions {
    recv_buffer: SOCKET_BUFFER,
    send_buffer: 0,
    freebind: false,
};

/// The relay's view of the plan.
#[derive(Clone, Debug, PartialEq)]
struct Targets {
    drop_malformed: bool,
    /// Each replica: its Ames address, its counter slot, and the MTU of
    /// the route to it (looked up when the plan is published).
    to: Vec<(SocketAddr, u8, usize)>,
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
        RECEIVER
            .apply(&udp)
            .map_err(Error::io("setting up the relay's UDP socket"))?;
        udp.bind(&ship.into()).map_err(|e| bind_error(ship, e))?;

        let raw = raw::socket(Family::of(ship.ip()), SOCKET_BUFFER).map_err(|e| {
            if e.kind() == io::ErrorKind::PermissionDenied {
                Error::RawRefused { source: e }
            } else {
                Error::io("creating the relay's raw socket")(e)
            }
        })?;

        let udp = BatchSocket::register(udp).map_err(Error::io("registering the UDP socket"))?;
        let raw = raw::Sender::register(raw).map_err(Error::io("registering the raw socket"))?;
        // Fragments, whose headers the relay writes whole.
        let fragments = raw::socket(Family::of(ship.ip()), SOCKET_BUFFER)
            .and_then(BatchSocket::register)
            .map_err(Error::io("creating the relay's raw socket for fragments"))?;
        let (targets, watch) = watch::channel(Arc::new(Targets::from(desired)));
        let counters = Arc::new(Mutex::new(Counters::ZERO));
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(relay(
            udp,
            Senders {
                raw,
                fragments,
                id: first_id(),
            },
            watch,
            counters.clone(),
            stopped,
        ));
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
                .map(|r| (r.ames, r.slot, route_mtu(r.ames)))
                .collect(),
        }
    }
}

/// What the relay sends with.
struct Senders {
    /// Copies that fit one packet: headers written per copy.
    raw: raw::Sender,
    /// Fragments of longer copies, headers written by [`fragment::split`].
    fragments: BatchSocket,
    /// The identification of the next fragmented copy.
    id: u32,
}

async fn relay(
    udp: BatchSocket,
    mut send: Senders,
    targets: watch::Receiver<Arc<Targets>>,
    counters: Arc<Mutex<Counters>>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut batch = RecvBatch::new();
    let mut outcome = Vec::new();
    loop {
        let received = tokio::select! {
            _ = &mut stopped => return,
            received = udp.recv(&mut batch) => received,
        };
        match received {
            Ok(_) => {}
            // From recvmmsg itself: this batch only.
            Err(e) if e.raw_os_error().is_some() => {
                warn!(error = %e, "recvmmsg");
                continue;
            }
            Err(e) => {
                warn!(error = %e, "waiting for the relay's socket; stopping the relay");
                return;
            }
        }
        let plan = targets.borrow().clone();
        let mut local = Counters::ZERO;
        // Accepted datagrams: (index in batch, source, payload sum).
        let mut accepted = Vec::with_capacity(batch.len());
        for (i, d) in batch.iter().enumerate() {
            let Some(source) = d.source else {
                continue;
            };
            if d.truncated {
                local.dropped_for(DropReason::BadLength);
                continue;
            }
            let payload = d.data;
            let class = ames::classify_slice(payload);
            local.classified(class, payload.len() as u64);
            if let Some(reason) = lb_abi::judge(plan.drop_malformed, class) {
                local.dropped_for(reason);
                continue;
            }
            if plan.to.is_empty() {
                local.dropped_for(DropReason::Undelivered);
                continue;
            }
            accepted.push((i, source, PayloadSum::of(payload)));
        }
        // One copy per replica, each with headers of its own around the
        // payload it shares (and its checksum's sum) with the other copies.
        let copies = accepted.len() * plan.to.len();
        let mut outgoing = Vec::with_capacity(copies);
        let mut slots = Vec::with_capacity(copies);
        let mut long = Vec::new();
        for &(i, from, sum) in &accepted {
            let payload = batch.get(i).data;
            for &(to, slot, mtu) in &plan.to {
                let copy = Outgoing {
                    from,
                    to,
                    payload,
                    sum,
                };
                if fragment::fits(from, payload.len(), mtu) {
                    outgoing.push(copy);
                    slots.push(slot);
                } else {
                    long.push((copy, slot, mtu));
                }
            }
        }
        if let Err(e) = send.raw.send(&outgoing, &mut outcome).await {
            warn!(error = %e, "sending copies from the raw socket");
        }
        for (copy, slot, mtu) in long {
            outcome.push(send.fragmented(&copy, mtu).await);
            slots.push(slot);
        }
        // Each copy counts for its replica: taken, or refused (unreachable,
        // too long, filtered...) or never tried because the socket failed.
        for (i, &slot) in slots.iter().enumerate() {
            let sent = outcome.get(i) == Some(&true);
            local.count_replica(slot, |c| {
                if sent {
                    &mut c.copies
                } else {
                    &mut c.clone_failures
                }
            });
        }
        let mut shared = counters.lock().unwrap_or_else(PoisonError::into_inner);
        shared.add(&local);
    }
}

impl Senders {
    /// Sends `copy` as IP fragments of at most `mtu` bytes; true if the
    /// kernel took every one (a receiver can do nothing with fewer).
    async fn fragmented(&mut self, copy: &Outgoing<'_>, mtu: usize) -> bool {
        // IPv4 takes the low 16 bits, and zero would have the kernel number
        // each fragment on its own.
        self.id = self.id.wrapping_add(1);
        if self.id as u16 == 0 {
            self.id = self.id.wrapping_add(1);
        }
        let mut pieces = Vec::new();
        if !fragment::split(
            copy.from,
            copy.to,
            copy.payload.len(),
            copy.sum,
            mtu,
            self.id,
            &mut pieces,
        ) {
            return false;
        }
        // As for whole copies: an IPv6 raw socket reads the port as a
        // protocol number, and the headers hold the real one.
        let route_to = SocketAddr::new(copy.to.ip().to_canonical(), 0);
        let gathered: Vec<(SocketAddr, [&[u8]; 2])> = pieces
            .iter()
            .map(|f| (route_to, [f.header(), &copy.payload[f.payload.clone()]]))
            .collect();
        let mut went = Vec::new();
        match self.fragments.send_gathered(&gathered, &mut went).await {
            Ok(sent) => sent.failed == 0 && sent.sent == pieces.len(),
            Err(e) => {
                warn!(error = %e, "sending fragments from the raw socket");
                false
            }
        }
    }
}

/// A first identification for fragmented copies that another run of the
/// relay is unlikely to have just used towards the same replica.
fn first_id() -> u32 {
    use std::hash::{BuildHasher as _, Hasher as _};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish() as u32
}

/// The MTU of the route to `to`, as the kernel would use for a datagram
/// sent there (`IP_MTU` of a connected UDP socket); the family's minimum if
/// there is no route now.
fn route_mtu(to: SocketAddr) -> usize {
    let floor = if to.is_ipv4() { MIN_MTU_V4 } else { MIN_MTU_V6 };
    let lookup = || -> io::Result<usize> {
        let socket = Socket::new(Domain::for_address(to), Type::DGRAM, Some(Protocol::UDP))?;
        socket.connect(&to.into())?;
        let (level, name) = if to.is_ipv4() {
            (libc::IPPROTO_IP, libc::IP_MTU)
        } else {
            (libc::IPPROTO_IPV6, libc::IPV6_MTU)
        };
        let mut mtu: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt on a live descriptor, into a c_int of the
        // size given.
        let rc = unsafe {
            libc::getsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&socket),
                level,
                name,
                std::ptr::from_mut(&mut mtu).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(usize::try_from(mtu).unwrap_or(0))
    };
    match lookup() {
        Ok(mtu) => mtu.max(floor),
        Err(e) => {
            warn!(replica = %to, error = %e, mtu = floor, "cannot look up the route's MTU; fragmenting long copies to the minimum");
            floor
        }
    }
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
