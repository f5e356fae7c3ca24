//! The follower's buffer of inbound packets not yet seen in the log, so
//! that a new leader can sequence what the old one heard but never
//! committed (docs/SPEC.md §4.4).

use std::collections::{BTreeMap, HashMap};

use ames::Lane;

/// A packet's identity: BLAKE3 of its lane and bytes, cut to 128 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PacketId([u8; PacketId::LEN]);

impl PacketId {
    pub const LEN: usize = 16;

    pub const fn from_bytes(bytes: [u8; Self::LEN]) -> PacketId {
        PacketId(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; Self::LEN] {
        &self.0
    }

    pub fn of(lane: Lane, packet: &[u8]) -> PacketId {
        let mut hasher = blake3::Hasher::new();
        hasher.update(lane.to_string().as_bytes());
        hasher.update(&[0]);
        hasher.update(packet);
        let mut id = [0; Self::LEN];
        id.copy_from_slice(&hasher.finalize().as_bytes()[..Self::LEN]);
        PacketId(id)
    }
}

/// The last `capacity` distinct packets heard, in arrival order.
#[derive(Debug)]
pub struct PacketBuffer {
    capacity: usize,
    next_seq: u64,
    by_id: HashMap<PacketId, (u64, Lane, Vec<u8>)>,
    by_arrival: BTreeMap<u64, PacketId>,
}

impl PacketBuffer {
    pub fn new(capacity: usize) -> Self {
        PacketBuffer {
            capacity: capacity.max(1),
            next_seq: 0,
            by_id: HashMap::new(),
            by_arrival: BTreeMap::new(),
        }
    }

    /// Keeps a packet (once: a duplicate keeps its first arrival). Returns
    /// how many old packets were evicted to make room.
    pub fn insert(&mut self, lane: Lane, packet: &[u8]) -> usize {
        let id = PacketId::of(lane, packet);
        if self.by_id.contains_key(&id) {
            return 0;
        }
        let mut evicted = 0;
        while self.by_id.len() >= self.capacity {
            let Some((_, oldest)) = self.by_arrival.pop_first() else {
                break;
            };
            self.by_id.remove(&oldest);
            evicted += 1;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_id.insert(id, (seq, lane, packet.to_vec()));
        self.by_arrival.insert(seq, id);
        evicted
    }

    /// Forgets a packet the log now holds. Returns whether it was here.
    pub fn remove(&mut self, id: PacketId) -> bool {
        match self.by_id.remove(&id) {
            Some((seq, ..)) => {
                self.by_arrival.remove(&seq);
                true
            }
            None => false,
        }
    }

    /// Takes every packet still here, oldest first.
    pub fn drain(&mut self) -> Vec<(Lane, Vec<u8>)> {
        let order = std::mem::take(&mut self.by_arrival);
        let mut packets = Vec::with_capacity(order.len());
        for id in order.into_values() {
            if let Some((_, lane, packet)) = self.by_id.remove(&id) {
                packets.push((lane, packet));
            }
        }
        packets
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(port: u16) -> Lane {
        format!("192.0.2.1:{port}").parse().unwrap()
    }

    #[test]
    fn drains_in_arrival_order_without_committed_or_duplicate_packets() {
        let mut buf = PacketBuffer::new(10);
        buf.insert(lane(1), b"a");
        buf.insert(lane(2), b"b");
        buf.insert(lane(1), b"a");
        buf.insert(lane(3), b"c");
        assert_eq!(buf.len(), 3);
        assert!(buf.remove(PacketId::of(lane(2), b"b")));
        assert!(!buf.remove(PacketId::of(lane(2), b"b")));
        assert_eq!(
            buf.drain(),
            vec![(lane(1), b"a".to_vec()), (lane(3), b"c".to_vec())]
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn same_bytes_from_another_lane_is_another_packet() {
        assert_ne!(PacketId::of(lane(1), b"x"), PacketId::of(lane(2), b"x"));
    }

    #[test]
    fn evicts_the_oldest_when_full() {
        let mut buf = PacketBuffer::new(2);
        assert_eq!(buf.insert(lane(1), b"1"), 0);
        assert_eq!(buf.insert(lane(1), b"2"), 0);
        assert_eq!(buf.insert(lane(1), b"3"), 1);
        assert_eq!(
            buf.drain(),
            vec![(lane(1), b"2".to_vec()), (lane(1), b"3".to_vec())]
        );
    }
}
