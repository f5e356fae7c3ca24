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
//! already reassembled fragments and checked lengths and checksums.

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
    /// Each replica: its Ames address and its counter slot.
    to: Vec<(SocketAddr, u8)>,
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
            to: d.replicas.iter().map(|r| (r.ames, r.slot)).collect(),
        }
    }
}

async fn relay(
    udp: BatchSocket,
    mut raw: raw::Sender,
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
        for &(i, from, sum) in &accepted {
            let payload = batch.get(i).data;
            for &(to, slot) in &plan.to {
                outgoing.push(Outgoing {
                    from,
                    to,
                    payload,
                    sum,
                });
                slots.push(slot);
            }
        }
        if let Err(e) = raw.send(&outgoing, &mut outcome).await {
            warn!(error = %e, "sending copies from the raw socket");
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
