//! The follower's buffer of inbound packets not yet seen in the log, so
//! that a new leader can sequence what the old one heard but never
//! committed (docs/SPEC.md §4.4).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

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

/// A follower keeps at most this many bytes of packets unless told
/// otherwise (the config's default, one constant).
pub use config::DEFAULT_BUFFER_BYTES;

/// The last distinct packets heard, in arrival order: at most `capacity`
/// of them and `max_bytes` of their bytes, the oldest evicted first.
#[derive(Debug)]
pub struct PacketBuffer {
    capacity: usize,
    max_bytes: usize,
    /// The packets' bytes held (not counting their lanes and ids).
    bytes: usize,
    next_seq: u64,
    by_id: HashMap<PacketId, (u64, Lane, Vec<u8>)>,
    by_arrival: BTreeMap<u64, PacketId>,
    /// Committed packets that were not here when their event was read, the
    /// last `capacity` of them: a copy that arrives after its event (a
    /// follower paused, or catching up, reads the log before its socket)
    /// must not be kept, or a new leader would sequence it a second time.
    committed: VecDeque<PacketId>,
    committed_set: HashSet<PacketId>,
}

impl PacketBuffer {
    pub fn new(capacity: usize, max_bytes: usize) -> Self {
        PacketBuffer {
            capacity: capacity.max(1),
            max_bytes,
            bytes: 0,
            next_seq: 0,
            by_id: HashMap::new(),
            by_arrival: BTreeMap::new(),
            committed: VecDeque::new(),
            committed_set: HashSet::new(),
        }
    }

    /// Keeps a packet (once: a duplicate keeps its first arrival). Returns
    /// how many packets were evicted to make room: the oldest first, and
    /// the packet itself if it is larger than the whole buffer.
    pub fn insert(&mut self, lane: Lane, packet: &[u8]) -> usize {
        let id = PacketId::of(lane, packet);
        if self.by_id.contains_key(&id) || self.committed_set.contains(&id) {
            return 0;
        }
        if packet.len() > self.max_bytes {
            return 1;
        }
        let mut evicted = 0;
        while self.by_id.len() >= self.capacity || self.bytes + packet.len() > self.max_bytes {
            let Some((_, oldest)) = self.by_arrival.pop_first() else {
                break;
            };
            if let Some((_, _, gone)) = self.by_id.remove(&oldest) {
                self.bytes -= gone.len();
            }
            evicted += 1;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.bytes += packet.len();
        self.by_id.insert(id, (seq, lane, packet.to_vec()));
        self.by_arrival.insert(seq, id);
        evicted
    }

    /// Forgets a packet the log now holds, and remembers it if it was not
    /// here yet (its copy may still arrive). Returns whether it was here.
    pub fn remove(&mut self, id: PacketId) -> bool {
        match self.by_id.remove(&id) {
            Some((seq, _, packet)) => {
                self.by_arrival.remove(&seq);
                self.bytes -= packet.len();
                true
            }
            None if self.committed_set.insert(id) => {
                self.committed.push_back(id);
                if self.committed.len() > self.capacity
                    && let Some(old) = self.committed.pop_front()
                {
                    self.committed_set.remove(&old);
                }
                false
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
        self.bytes = 0;
        packets
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// The packets' bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
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
        let mut buf = PacketBuffer::new(10, DEFAULT_BUFFER_BYTES);
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
    fn a_copy_that_arrives_after_its_event_is_not_kept() {
        let mut buf = PacketBuffer::new(2, DEFAULT_BUFFER_BYTES);
        // The log's event for "late" is read before the socket's copy.
        assert!(!buf.remove(PacketId::of(lane(1), b"late")));
        buf.insert(lane(1), b"late");
        assert!(buf.is_empty(), "a committed packet was kept");
        // As many such ids are remembered as the buffer holds packets.
        for p in [b"x", b"y"] {
            buf.remove(PacketId::of(lane(1), p));
        }
        buf.insert(lane(1), b"late");
        assert_eq!(buf.len(), 1, "the oldest remembered id is forgotten");
    }

    #[test]
    fn same_bytes_from_another_lane_is_another_packet() {
        assert_ne!(PacketId::of(lane(1), b"x"), PacketId::of(lane(2), b"x"));
    }

    #[test]
    fn evicts_the_oldest_when_full() {
        let mut buf = PacketBuffer::new(2, DEFAULT_BUFFER_BYTES);
        assert_eq!(buf.insert(lane(1), b"1"), 0);
        assert_eq!(buf.insert(lane(1), b"2"), 0);
        assert_eq!(buf.insert(lane(1), b"3"), 1);
        assert_eq!(
            buf.drain(),
            vec![(lane(1), b"2".to_vec()), (lane(1), b"3".to_vec())]
        );
    }

    #[test]
    fn evicts_the_oldest_when_over_its_bytes() {
        let mut buf = PacketBuffer::new(100, 10);
        assert_eq!(buf.insert(lane(1), b"aaaa"), 0);
        assert_eq!(buf.insert(lane(1), b"bbbb"), 0);
        assert_eq!(buf.bytes(), 8);
        // 8 + 3 > 10: the oldest goes, only as many as make room.
        assert_eq!(buf.insert(lane(1), b"ccc"), 1);
        assert_eq!((buf.len(), buf.bytes()), (2, 7));
        // A packet the size of the whole buffer pushes out everything.
        assert_eq!(buf.insert(lane(1), b"dddddddddd"), 2);
        assert_eq!((buf.len(), buf.bytes()), (1, 10));
        // One larger than the whole buffer is not kept, and keeps the rest.
        assert_eq!(buf.insert(lane(1), b"eeeeeeeeeee"), 1);
        assert_eq!((buf.len(), buf.bytes()), (1, 10));
        // Removing and draining give their bytes back.
        assert!(buf.remove(PacketId::of(lane(1), b"dddddddddd")));
        assert_eq!(buf.bytes(), 0);
        buf.insert(lane(1), b"ff");
        assert_eq!(buf.drain(), vec![(lane(1), b"ff".to_vec())]);
        assert_eq!(buf.bytes(), 0);
        assert_eq!(buf.insert(lane(1), b"gggggggggg"), 0);
    }

    #[test]
    fn either_bound_evicts() {
        // Bytes to spare: the count evicts.
        let mut by_count = PacketBuffer::new(3, 1000);
        for p in [b"1", b"2", b"3"] {
            assert_eq!(by_count.insert(lane(1), p), 0);
        }
        assert_eq!(by_count.insert(lane(1), b"4"), 1);
        assert_eq!((by_count.len(), by_count.bytes()), (3, 3));
        // Count to spare: the bytes evict.
        let mut by_bytes = PacketBuffer::new(1000, 3);
        for p in [b"1", b"2", b"3"] {
            assert_eq!(by_bytes.insert(lane(1), p), 0);
        }
        assert_eq!(by_bytes.insert(lane(1), b"4"), 1);
        assert_eq!(
            by_bytes.drain(),
            [b"2", b"3", b"4"].map(|p| (lane(1), p.to_vec()))
        );
    }
}
