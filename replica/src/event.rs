//! How an inbound packet is written into the event log: the leader's clock,
//! the peer's lane, and the packet, as the reference ship reads them.
//!
//! vere would write the jammed `%hear` ovum instead; the log does not care.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ames::Lane;

const VERSION: u8 = 1;

/// An inbound packet as an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketEvent {
    /// The leader's clock when it sequenced the packet, in microseconds since
    /// the Unix epoch; strictly increasing along the log.
    pub now_us: u64,
    pub lane: Lane,
    pub packet: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventDecodeError {
    #[error("event is {len} bytes, shorter than a packet event's {need}-byte header")]
    Short { len: usize, need: usize },
    #[error("event version {0} is not one this agent reads (it reads {VERSION})")]
    Version(u8),
    #[error("event's lane family {0} is neither 4 nor 6")]
    Family(u8),
}

impl PacketEvent {
    pub fn encode(&self) -> Vec<u8> {
        let addr = self.lane.addr();
        let mut out = Vec::with_capacity(1 + 8 + 1 + 2 + 16 + self.packet.len());
        out.push(VERSION);
        out.extend_from_slice(&self.now_us.to_be_bytes());
        match addr.ip() {
            IpAddr::V4(ip) => {
                out.push(4);
                out.extend_from_slice(&addr.port().to_be_bytes());
                out.extend_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                out.push(6);
                out.extend_from_slice(&addr.port().to_be_bytes());
                out.extend_from_slice(&ip.octets());
            }
        }
        out.extend_from_slice(&self.packet);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, EventDecodeError> {
        let short = |need| EventDecodeError::Short {
            len: bytes.len(),
            need,
        };
        let [version, rest @ ..] = bytes else {
            return Err(short(12));
        };
        if *version != VERSION {
            return Err(EventDecodeError::Version(*version));
        }
        let (now, rest) = rest.split_first_chunk::<8>().ok_or(short(12))?;
        let ([family], rest) = rest.split_first_chunk::<1>().ok_or(short(12))?;
        let (port, rest) = rest.split_first_chunk::<2>().ok_or(short(12))?;
        let port = u16::from_be_bytes(*port);
        let (ip, packet): (IpAddr, _) = match family {
            4 => {
                let (ip, rest) = rest.split_first_chunk::<4>().ok_or(short(16))?;
                (Ipv4Addr::from(*ip).into(), rest)
            }
            6 => {
                let (ip, rest) = rest.split_first_chunk::<16>().ok_or(short(28))?;
                (Ipv6Addr::from(*ip).into(), rest)
            }
            other => return Err(EventDecodeError::Family(*other)),
        };
        Ok(PacketEvent {
            now_us: u64::from_be_bytes(*now),
            lane: Lane::new(SocketAddr::new(ip, port)),
            packet: packet.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_v4_and_v6() {
        for lane in ["192.0.2.1:34543", "[2001:db8::1]:1"] {
            let event = PacketEvent {
                now_us: 1_700_000_000_000_001,
                lane: lane.parse().unwrap(),
                packet: vec![1, 2, 3],
            };
            assert_eq!(PacketEvent::decode(&event.encode()), Ok(event));
        }
    }

    #[test]
    fn rejects_short_unknown_version_and_family() {
        let good = PacketEvent {
            now_us: 5,
            lane: "192.0.2.1:1".parse().unwrap(),
            packet: vec![],
        }
        .encode();
        for cut in 0..good.len() {
            assert!(
                matches!(
                    PacketEvent::decode(&good[..cut]),
                    Err(EventDecodeError::Short { .. })
                ),
                "cut {cut}"
            );
        }
        let mut bad = good.clone();
        bad[0] = 9;
        assert_eq!(PacketEvent::decode(&bad), Err(EventDecodeError::Version(9)));
        let mut bad = good;
        bad[9] = 5;
        assert_eq!(PacketEvent::decode(&bad), Err(EventDecodeError::Family(5)));
    }
}
