//! The plain C types of the ABI: status codes, notices and lanes, and their
//! conversions from and to the agent's [`port`](replica::port) types.

#![allow(non_camel_case_types)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ames::Lane;
use replica::port::Notice;

/// What every function returns (and `seguro_replica_start` writes to its
/// `err`). Negative values are errors; `seguro_replica_last_error` gives the
/// message of the last one on the calling thread.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum seguro_error {
    /// Done.
    SEGURO_OK = 0,
    /// `seguro_replica_next_notice`: no notice is waiting; poll the fd.
    SEGURO_EMPTY = 1,
    /// A pointer argument that must not be null was null.
    SEGURO_ERR_NULL = -1,
    /// An argument is out of range: a mug that is not 31 bits and non-zero,
    /// a lane family other than 4 or 6, a path that is not UTF-8, event 0,
    /// event `UINT64_MAX`.
    SEGURO_ERR_INVALID = -2,
    /// The config file cannot be read or is invalid, or names no such
    /// replica; the message lists every problem.
    SEGURO_ERR_CONFIG = -3,
    /// The agent could not start: a key file, a socket (the message names
    /// the address), the metrics recorder (another agent runs in this
    /// process), etcd's endpoints.
    SEGURO_ERR_START = -4,
    /// The agent has stopped (the message says why); the handle only
    /// accepts `seguro_replica_stop` from now on.
    SEGURO_ERR_STOPPED = -5,
    /// A bug inside the library: it panicked, and the panic was caught at
    /// the boundary.
    SEGURO_ERR_PANIC = -6,
}

/// Which notice `seguro_replica_next_notice` returned (docs/SPEC.md §6.3.1).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum seguro_notice_kind {
    /// Apply committed event `num` (`data`, `len`) and answer
    /// `seguro_replica_applied`.
    SEGURO_NOTICE_REPLAY = 1,
    /// You lead term `epoch`: every event before `num` has been replayed;
    /// plan events from `num` on.
    SEGURO_NOTICE_LEAD = 2,
    /// An inbound packet (`data`, `len`) from `lane` to make an event of
    /// (only while leading); give `packet_id` back with its plan.
    SEGURO_NOTICE_PACKET = 3,
    /// Events up to `num` are on a quorum of disks (only while leading).
    SEGURO_NOTICE_COMMITTED = 4,
    /// You no longer lead, and your state may hold events the log will
    /// never have: cut your local log after event `num` (the last known
    /// committed), go back to your last snapshot (and replay your own log
    /// up to `num` if you like), and answer `seguro_replica_restored`.
    SEGURO_NOTICE_REWIND = 5,
    /// The log no longer holds the events before `num`: restore a state at
    /// or after event `num - 1` from elsewhere (a peer's snapshot) and
    /// answer `seguro_replica_restored`.
    SEGURO_NOTICE_PURGED = 6,
}

/// What a packet sent with `seguro_replica_send_stateless` is.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum seguro_stateless_kind {
    /// A STUN binding response (vere's `_stun_on_request`).
    SEGURO_STATELESS_STUN = 1,
    /// Another ship's packet passed on (vere's `_ames_forward`: a classic
    /// Ames packet with its origin lane set, or a mesa packet).
    SEGURO_STATELESS_FORWARD = 2,
}

/// Most lanes one `seguro_replica_push` sends to.
pub const SEGURO_PUSH_MAX_LANES: usize = 16;

/// A UDP address: `family` 4 (the first 4 bytes of `addr` are the IPv4
/// address) or 6 (all 16 bytes); `addr` in network order, `port` in host
/// order.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct seguro_lane {
    pub family: u8,
    pub port: u16,
    pub addr: [u8; 16],
}

/// Bytes in a packet's identity.
pub const SEGURO_PACKET_ID_LEN: usize = 16;

/// One notice from the agent. Fields a kind does not use are zero.
///
/// `data` points into memory the library owns: it stays valid until the
/// next `seguro_replica_next_notice` or `seguro_replica_stop` on the same
/// handle. Copy what you keep.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct seguro_notice {
    pub kind: seguro_notice_kind,
    /// REPLAY, COMMITTED: the event. LEAD: the next event to plan. PURGED:
    /// the first event the log still holds. REWIND: the last event known
    /// committed.
    pub num: u64,
    /// LEAD: the term's epoch.
    pub epoch: u64,
    /// PACKET: where the packet came from; answers go back to it.
    pub lane: seguro_lane,
    /// PACKET: the packet's identity, for `seguro_replica_plan`.
    pub packet_id: [u8; SEGURO_PACKET_ID_LEN],
    /// REPLAY: the event's bytes, as the leader planned them. PACKET: the
    /// packet.
    pub data: *const u8,
    pub len: usize,
    /// REPLAY: the mug the leader recorded after the event; 0 for an event
    /// of the boot sequence (planned with `seguro_replica_plan_boot`),
    /// which a runtime applies as one batch.
    pub mug: u32,
}

impl seguro_lane {
    pub(crate) fn from_lane(lane: Lane) -> seguro_lane {
        let addr = lane.addr();
        let mut out = seguro_lane {
            family: 4,
            port: addr.port(),
            addr: [0; 16],
        };
        match addr.ip() {
            IpAddr::V4(ip) => out.addr[..4].copy_from_slice(&ip.octets()),
            IpAddr::V6(ip) => {
                out.family = 6;
                out.addr = ip.octets();
            }
        }
        out
    }

    /// `None` unless `family` is 4 or 6.
    pub(crate) fn to_lane(self) -> Option<Lane> {
        let ip: IpAddr = match self.family {
            4 => {
                let [a, b, c, d, ..] = self.addr;
                Ipv4Addr::new(a, b, c, d).into()
            }
            6 => Ipv6Addr::from(self.addr).into(),
            _ => return None,
        };
        Some(Lane::new(SocketAddr::new(ip, self.port)))
    }
}

impl seguro_notice {
    /// The C view of `notice`, borrowing its bytes.
    pub(crate) fn of(notice: &Notice) -> seguro_notice {
        let mut out = seguro_notice {
            kind: seguro_notice_kind::SEGURO_NOTICE_REWIND,
            num: 0,
            epoch: 0,
            lane: seguro_lane {
                family: 0,
                port: 0,
                addr: [0; 16],
            },
            packet_id: [0; SEGURO_PACKET_ID_LEN],
            data: std::ptr::null(),
            len: 0,
            mug: 0,
        };
        match notice {
            Notice::Replay {
                num,
                data,
                recorded,
            } => {
                out.kind = seguro_notice_kind::SEGURO_NOTICE_REPLAY;
                out.num = num.get();
                out.data = data.as_ptr();
                out.len = data.len();
                out.mug = recorded.stored();
            }
            Notice::Lead { epoch, next } => {
                out.kind = seguro_notice_kind::SEGURO_NOTICE_LEAD;
                out.epoch = epoch.get();
                out.num = next.get();
            }
            Notice::Packet { lane, packet, id } => {
                out.kind = seguro_notice_kind::SEGURO_NOTICE_PACKET;
                out.lane = seguro_lane::from_lane(*lane);
                out.packet_id = *id.as_bytes();
                out.data = packet.as_ptr();
                out.len = packet.len();
            }
            Notice::Committed(num) => {
                out.kind = seguro_notice_kind::SEGURO_NOTICE_COMMITTED;
                out.num = num.get();
            }
            Notice::Rewind { committed } => out.num = committed.get(),
            Notice::Purged { first_available } => {
                out.kind = seguro_notice_kind::SEGURO_NOTICE_PURGED;
                out.num = first_available.get();
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_round_trip_and_bad_families_are_refused() {
        for lane in ["192.0.2.1:34543", "[2001:db8::1]:1"] {
            let lane: Lane = lane.parse().unwrap();
            assert_eq!(seguro_lane::from_lane(lane).to_lane(), Some(lane));
        }
        let v4 = seguro_lane::from_lane("10.1.2.3:4".parse().unwrap());
        assert_eq!(
            (v4.family, v4.port, &v4.addr[..4]),
            (4, 4, &[10, 1, 2, 3][..])
        );
        let bad = seguro_lane { family: 5, ..v4 };
        assert_eq!(bad.to_lane(), None);
    }
}
