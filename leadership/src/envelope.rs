//! Effect envelopes: the authenticated datagram a replica sends the
//! gatekeeper for each effect (docs/SPEC.md §7), sealed and opened here.
//!
//! Layout (all integers big-endian):
//!
//! ```text
//! 0      4 magic "SGEF"
//! 4      1 version (1)
//! 5      1 lane family (4 or 6)
//! 6      4 replica id (nonzero)
//! 10     8 epoch
//! 18     8 event number
//! 26     8 sequence number (per replica and epoch, from 1)
//! 34     2 lane port
//! 36  4|16 lane IP
//! 40|52  2 payload length P
//! 42|54  P payload (the Ames packet)
//! end-32 32 MAC: keyed BLAKE3 of every byte before it, with the replica's key
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::{Epoch, EventNum};
use ames::Lane;
use config::{Config, Key, KeyError, ReplicaId};

/// The first four bytes of every envelope.
pub const MAGIC: [u8; 4] = *b"SGEF";
/// The only version this code reads and writes.
pub const VERSION: u8 = 1;
/// Length of the MAC that ends every envelope.
pub const MAC_LEN: usize = 32;
/// Largest payload the length field can describe.
pub const MAX_PAYLOAD: usize = u16::MAX as usize;

/// Bytes before the payload with an IPv4 lane.
const HEADER_V4: usize = 42;
/// Bytes before the payload with an IPv6 lane.
const HEADER_V6: usize = 54;
/// Offset of the lane address.
const LANE_IP: usize = 36;

/// One effect, addressed to a lane, as the replica that computed it
/// describes it. Borrowed from the datagram it was opened from, or from the
/// caller's payload when sealing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The replica that sent it; its key signs the envelope.
    pub replica: ReplicaId,
    /// The leadership term the replica computed the effect in.
    pub epoch: Epoch,
    /// The event whose effect this is: it leaves once that event is durable.
    pub event: EventNum,
    /// Per replica and epoch, from 1; the gatekeeper accepts each once.
    pub seq: u64,
    /// The peer's IP:port the payload goes to.
    pub lane: Lane,
    /// The Ames packet, sent as is.
    pub payload: &'a [u8],
}

/// Why an envelope could not be sealed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("effect payload of {len} bytes is larger than an envelope carries ({MAX_PAYLOAD})")]
    PayloadTooLarge { len: usize },
    #[error("sequence number 0 is reserved: sequences start at 1")]
    ZeroSequence,
    #[error("sequence numbers for this replica and epoch are exhausted")]
    SequenceExhausted,
}

/// Why a datagram is not an envelope the gatekeeper may act on. Each
/// variant is one `reason` label of the gatekeeper's drop counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Not shaped like an envelope: see [`Malformed`].
    #[error("malformed envelope: {0}")]
    Malformed(Malformed),
    /// Well formed, but it names a replica whose key the gatekeeper lacks.
    #[error("envelope from unknown replica {0}")]
    UnknownReplica(ReplicaId),
    /// Well formed, but its MAC does not verify with the named replica's key.
    #[error("envelope claiming replica {0} has a bad MAC")]
    BadMac(ReplicaId),
}

/// How a datagram fails to be an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("{len} bytes is shorter than the smallest envelope")]
    TooShort { len: usize },
    #[error("bad magic (expected \"SGEF\")")]
    Magic,
    #[error("version {0} (expected {VERSION})")]
    Version(u8),
    #[error("lane family {0} (expected 4 or 6)")]
    Family(u8),
    #[error("replica id 0")]
    ZeroReplica,
    #[error("sequence number 0")]
    ZeroSequence,
    #[error("{len} bytes where the payload length says {expected}")]
    Length { len: usize, expected: usize },
}

impl From<Malformed> for OpenError {
    fn from(m: Malformed) -> Self {
        OpenError::Malformed(m)
    }
}

impl Envelope<'_> {
    /// The length of this envelope once sealed.
    pub fn sealed_len(&self) -> usize {
        header_len(self.lane) + self.payload.len() + MAC_LEN
    }

    /// Seals the envelope with the sending replica's key.
    pub fn seal(&self, key: &Key) -> Result<Vec<u8>, SealError> {
        let mut out = Vec::with_capacity(self.sealed_len());
        self.seal_into(key, &mut out)?;
        Ok(out)
    }

    /// Seals the envelope into `out` (cleared first), so that a sender can
    /// reuse one buffer.
    pub fn seal_into(&self, key: &Key, out: &mut Vec<u8>) -> Result<(), SealError> {
        let len = u16::try_from(self.payload.len()).map_err(|_| SealError::PayloadTooLarge {
            len: self.payload.len(),
        })?;
        if self.seq == 0 {
            return Err(SealError::ZeroSequence);
        }
        out.clear();
        out.reserve(self.sealed_len());
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        let lane = self.lane.addr();
        out.push(match lane.ip() {
            IpAddr::V4(_) => 4,
            IpAddr::V6(_) => 6,
        });
        out.extend_from_slice(&self.replica.get().to_be_bytes());
        out.extend_from_slice(&self.epoch.get().to_be_bytes());
        out.extend_from_slice(&self.event.get().to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&lane.port().to_be_bytes());
        match lane.ip() {
            IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
            IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
        }
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(self.payload);
        let mac = blake3::keyed_hash(key.as_bytes(), out);
        out.extend_from_slice(mac.as_bytes());
        Ok(())
    }
}

/// What an envelope's header says, read without its key: enough for the
/// gatekeeper to drop a datagram from the wrong replica or term before it
/// spends a MAC on it. Nothing here is authentic until [`Unverified::verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub replica: ReplicaId,
    pub epoch: Epoch,
    pub event: EventNum,
    pub seq: u64,
    pub lane: Lane,
    /// Bytes before the payload (42 with an IPv4 lane, 54 with IPv6).
    pub header_len: usize,
    pub payload_len: usize,
}

impl Header {
    /// Reads a datagram's header, with every check [`open`] makes short of
    /// the key and the MAC: the magic, the version, the lane family, the
    /// length, a nonzero replica and sequence. Never panics, whatever the
    /// bytes.
    pub fn parse(datagram: &[u8]) -> Result<Header, Malformed> {
        let len = datagram.len();
        let too_short = Malformed::TooShort { len };
        if len < HEADER_V4 + MAC_LEN {
            return Err(too_short);
        }
        if datagram[0..4] != MAGIC {
            return Err(Malformed::Magic);
        }
        if datagram[4] != VERSION {
            return Err(Malformed::Version(datagram[4]));
        }
        let header_len = match datagram[5] {
            4 => HEADER_V4,
            6 => HEADER_V6,
            f => return Err(Malformed::Family(f)),
        };
        if len < header_len + MAC_LEN {
            return Err(too_short);
        }
        let payload_len = usize::from(be_u16(&datagram[header_len - 2..header_len]));
        let expected = header_len + payload_len + MAC_LEN;
        if len != expected {
            return Err(Malformed::Length { len, expected });
        }
        let replica = ReplicaId::new(be_u32(&datagram[6..10])).ok_or(Malformed::ZeroReplica)?;
        let seq = be_u64(&datagram[26..34]);
        if seq == 0 {
            return Err(Malformed::ZeroSequence);
        }
        let port = be_u16(&datagram[34..36]);
        let ip = if header_len == HEADER_V4 {
            let o: [u8; 4] = datagram[LANE_IP..LANE_IP + 4].try_into().expect("4 bytes");
            IpAddr::V4(Ipv4Addr::from(o))
        } else {
            let o: [u8; 16] = datagram[LANE_IP..LANE_IP + 16]
                .try_into()
                .expect("16 bytes");
            IpAddr::V6(Ipv6Addr::from(o))
        };
        Ok(Header {
            replica,
            epoch: Epoch(be_u64(&datagram[10..18])),
            event: EventNum(be_u64(&datagram[18..26])),
            seq,
            lane: Lane::new(SocketAddr::new(ip, port)),
            header_len,
            payload_len,
        })
    }
}

/// A datagram whose header parsed, its MAC not checked yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unverified<'a> {
    header: Header,
    datagram: &'a [u8],
}

impl<'a> Unverified<'a> {
    /// [`Header::parse`], keeping the datagram for [`Unverified::verify`].
    pub fn parse(datagram: &'a [u8]) -> Result<Self, Malformed> {
        Ok(Unverified {
            header: Header::parse(datagram)?,
            datagram,
        })
    }

    /// What the header claims.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Checks the MAC, in constant time, with `key`: the key of the replica
    /// the header names. The one BLAKE3 pass over the datagram.
    pub fn verify(self, key: &Key) -> Result<Envelope<'a>, OpenError> {
        let Unverified {
            header: h,
            datagram,
        } = self;
        let (signed, mac) = datagram.split_at(datagram.len() - MAC_LEN);
        let mac: [u8; MAC_LEN] = mac.try_into().expect("MAC_LEN bytes");
        // `blake3::Hash`'s equality is constant time.
        if blake3::keyed_hash(key.as_bytes(), signed) != blake3::Hash::from_bytes(mac) {
            return Err(OpenError::BadMac(h.replica));
        }
        Ok(Envelope {
            replica: h.replica,
            epoch: h.epoch,
            event: h.event,
            seq: h.seq,
            lane: h.lane,
            payload: &signed[h.header_len..],
        })
    }
}

/// Opens a datagram: checks its shape, finds the named replica's key and
/// verifies the MAC in constant time. Never panics, whatever the bytes.
pub fn open<'a>(datagram: &'a [u8], keys: &Keyring) -> Result<Envelope<'a>, OpenError> {
    keys.verify(Unverified::parse(datagram)?)
}

fn header_len(lane: Lane) -> usize {
    if lane.addr().is_ipv4() {
        HEADER_V4
    } else {
        HEADER_V6
    }
}

fn be_u16(b: &[u8]) -> u16 {
    u16::from_be_bytes(b.try_into().expect("2 bytes"))
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b.try_into().expect("4 bytes"))
}

fn be_u64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b.try_into().expect("8 bytes"))
}

/// Every replica's signing key, as the gatekeeper holds them.
#[derive(Clone, Default)]
pub struct Keyring {
    keys: Vec<(ReplicaId, Key)>,
}

impl Keyring {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a replica's key.
    pub fn insert(&mut self, id: ReplicaId, key: Key) {
        match self.keys.iter_mut().find(|(i, _)| *i == id) {
            Some(slot) => slot.1 = key,
            None => self.keys.push((id, key)),
        }
    }

    /// Loads every replica's `key_file` named in the config.
    pub fn from_config(config: &Config) -> Result<Self, KeyError> {
        let mut ring = Self::new();
        for r in &config.replicas {
            ring.insert(r.id, Key::load(&r.key_file)?);
        }
        Ok(ring)
    }

    /// A cluster has at most `config::MAX_REPLICAS` replicas: a scan beats a map.
    pub fn get(&self, id: ReplicaId) -> Option<&Key> {
        self.keys.iter().find(|(i, _)| *i == id).map(|(_, k)| k)
    }

    /// Whether the ring holds `id`'s key.
    pub fn contains(&self, id: ReplicaId) -> bool {
        self.get(id).is_some()
    }

    /// Verifies an envelope's MAC with the key of the replica it names.
    pub fn verify<'a>(&self, envelope: Unverified<'a>) -> Result<Envelope<'a>, OpenError> {
        let replica = envelope.header().replica;
        let key = self
            .get(replica)
            .ok_or(OpenError::UnknownReplica(replica))?;
        envelope.verify(key)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field(
                "replicas",
                &self.keys.iter().map(|(i, _)| i).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A replica's side of the envelope stream for one leadership term: its
/// key, its epoch and the next sequence number. A new term takes a new
/// `Sealer`, so that sequences restart at 1 with the new epoch.
pub struct Sealer {
    replica: ReplicaId,
    epoch: Epoch,
    key: Key,
    next_seq: u64,
}

impl Sealer {
    pub fn new(replica: ReplicaId, epoch: Epoch, key: Key) -> Self {
        Self {
            replica,
            epoch,
            key,
            next_seq: 1,
        }
    }

    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The sequence number the next sealed envelope gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Seals one effect with the next sequence number.
    pub fn seal(
        &mut self,
        event: EventNum,
        lane: Lane,
        payload: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        let mut out = Vec::new();
        self.seal_into(event, lane, payload, &mut out)?;
        Ok(out)
    }

    /// Seals one effect into `out` (cleared first) with the next sequence
    /// number, and returns that number. A failed seal uses no number.
    pub fn seal_into(
        &mut self,
        event: EventNum,
        lane: Lane,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<u64, SealError> {
        let seq = self.next_seq;
        let next = seq.checked_add(1).ok_or(SealError::SequenceExhausted)?;
        Envelope {
            replica: self.replica,
            epoch: self.epoch,
            event,
            seq,
            lane,
            payload,
        }
        .seal_into(&self.key, out)?;
        self.next_seq = next;
        Ok(seq)
    }
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("replica", &self.replica)
            .field("epoch", &self.epoch)
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(n: u32) -> ReplicaId {
        ReplicaId::new(n).unwrap()
    }

    fn ring() -> Keyring {
        let mut ring = Keyring::new();
        ring.insert(id(1), Key::from_bytes([1; 32]));
        ring.insert(id(2), Key::from_bytes([2; 32]));
        ring
    }

    fn sample(lane: SocketAddr, payload: &[u8]) -> Envelope<'_> {
        let lane = lane.into();
        Envelope {
            replica: id(1),
            epoch: Epoch(0x0102_0304_0506_0708),
            event: EventNum(42),
            seq: 7,
            lane,
            payload,
        }
    }

    #[test]
    fn layout_is_exactly_the_spec() {
        let lane: SocketAddr = "192.0.2.7:34543".parse().unwrap();
        let sealed = sample(lane, b"hi").seal(&Key::from_bytes([1; 32])).unwrap();
        assert_eq!(sealed.len(), 42 + 2 + 32);
        assert_eq!(&sealed[0..4], b"SGEF");
        assert_eq!(sealed[4], 1);
        assert_eq!(sealed[5], 4);
        assert_eq!(&sealed[6..10], &[0, 0, 0, 1]);
        assert_eq!(&sealed[10..18], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&sealed[18..26], &[0, 0, 0, 0, 0, 0, 0, 42]);
        assert_eq!(&sealed[26..34], &[0, 0, 0, 0, 0, 0, 0, 7]);
        assert_eq!(&sealed[34..36], &34543u16.to_be_bytes());
        assert_eq!(&sealed[36..40], &[192, 0, 2, 7]);
        assert_eq!(&sealed[40..42], &[0, 2]);
        assert_eq!(&sealed[42..44], b"hi");
        let mac = blake3::keyed_hash(&[1; 32], &sealed[..44]);
        assert_eq!(&sealed[44..], mac.as_bytes());

        let lane6: SocketAddr = "[2001:db8::1]:9".parse().unwrap();
        let sealed6 = sample(lane6, b"").seal(&Key::from_bytes([1; 32])).unwrap();
        assert_eq!(sealed6.len(), 54 + 32);
        assert_eq!(sealed6[5], 6);
        assert_eq!(&sealed6[34..36], &[0, 9]);
        assert_eq!(&sealed6[36..38], &[0x20, 0x01]);
        assert_eq!(&sealed6[52..54], &[0, 0]);
    }

    #[test]
    fn seal_then_open_round_trips() {
        for lane in ["10.1.2.3:4", "[2001:db8::5]:6"] {
            let lane: SocketAddr = lane.parse().unwrap();
            let payload = vec![0xa5; 1000];
            let env = sample(lane, &payload);
            let sealed = env.seal(&Key::from_bytes([1; 32])).unwrap();
            assert_eq!(open(&sealed, &ring()), Ok(env));
        }
    }

    #[test]
    fn every_flaw_is_named() {
        let lane: SocketAddr = "10.1.2.3:4".parse().unwrap();
        let good = sample(lane, b"payload")
            .seal(&Key::from_bytes([1; 32]))
            .unwrap();
        let ring = ring();
        let with = |i: usize, b: u8| {
            let mut v = good.clone();
            v[i] = b;
            v
        };
        let m = |e| Err(OpenError::Malformed(e));
        assert_eq!(open(&good[..10], &ring), m(Malformed::TooShort { len: 10 }));
        assert_eq!(open(&with(0, b'X'), &ring), m(Malformed::Magic));
        assert_eq!(open(&with(4, 2), &ring), m(Malformed::Version(2)));
        assert_eq!(open(&with(5, 5), &ring), m(Malformed::Family(5)));
        let len = good.len();
        assert_eq!(
            open(&good[..len - 1], &ring),
            m(Malformed::Length {
                len: len - 1,
                expected: len
            })
        );
        let mut longer = good.clone();
        longer.push(0);
        assert!(matches!(
            open(&longer, &ring),
            Err(OpenError::Malformed(Malformed::Length { .. }))
        ));
        // Family 6 makes the header 12 bytes longer than this datagram holds.
        assert!(matches!(
            open(&with(5, 6), &ring),
            Err(OpenError::Malformed(_))
        ));
        let mut zero = good.clone();
        zero[6..10].fill(0);
        assert_eq!(open(&zero, &ring), m(Malformed::ZeroReplica));
        let mut zero_seq = good.clone();
        zero_seq[26..34].fill(0);
        assert_eq!(open(&zero_seq, &ring), m(Malformed::ZeroSequence));
        assert_eq!(
            open(&with(9, 9), &ring),
            Err(OpenError::UnknownReplica(id(9)))
        );
        // Any flipped bit of the signed part or the MAC fails the MAC.
        for i in [10, 20, 30, 35, 39, 43, 45, len - 1] {
            assert_eq!(
                open(&with(i, good[i] ^ 1), &ring),
                Err(OpenError::BadMac(id(1))),
                "byte {i}"
            );
        }
        // Replica 2's key does not open replica 1's envelope re-labelled as 2.
        assert_eq!(open(&with(9, 2), &ring), Err(OpenError::BadMac(id(2))));
    }

    #[test]
    fn seal_refuses_what_cannot_be_opened() {
        let lane: SocketAddr = "10.1.2.3:4".parse().unwrap();
        let key = Key::from_bytes([1; 32]);
        let big = vec![0; MAX_PAYLOAD + 1];
        assert_eq!(
            sample(lane, &big).seal(&key),
            Err(SealError::PayloadTooLarge {
                len: MAX_PAYLOAD + 1
            })
        );
        let mut env = sample(lane, b"x");
        env.seq = 0;
        assert_eq!(env.seal(&key), Err(SealError::ZeroSequence));
    }

    #[test]
    fn sealer_numbers_from_one() {
        let lane: SocketAddr = "10.1.2.3:4".parse().unwrap();
        let mut s = Sealer::new(id(2), Epoch(5), Key::from_bytes([2; 32]));
        let ring = ring();
        for want in 1..=3 {
            let sealed = s.seal(EventNum(want + 10), lane.into(), b"p").unwrap();
            let env = open(&sealed, &ring).unwrap();
            assert_eq!((env.seq, env.replica, env.epoch), (want, id(2), Epoch(5)));
            assert_eq!(env.event, EventNum(want + 10));
        }
        assert_eq!(s.next_seq(), 4);
        let big = vec![0; MAX_PAYLOAD + 1];
        assert!(s.seal(EventNum(1), lane.into(), &big).is_err());
        assert_eq!(s.next_seq(), 4, "a failed seal uses no number");
    }

    #[test]
    fn the_header_reads_without_the_key() {
        let lane: SocketAddr = "[2001:db8::5]:6".parse().unwrap();
        let env = sample(lane, b"payload");
        // Sealed with a key the ring does not hold for replica 1: the header
        // reads all the same.
        let sealed = env.seal(&Key::from_bytes([9; 32])).unwrap();
        let header = Header::parse(&sealed).unwrap();
        assert_eq!(
            header,
            Header {
                replica: env.replica,
                epoch: env.epoch,
                event: env.event,
                seq: env.seq,
                lane: env.lane,
                header_len: 54,
                payload_len: 7,
            }
        );
        let unverified = Unverified::parse(&sealed).unwrap();
        assert_eq!(unverified.header(), &header);
        assert_eq!(
            unverified.verify(&Key::from_bytes([1; 32])),
            Err(OpenError::BadMac(id(1)))
        );
        assert_eq!(unverified.verify(&Key::from_bytes([9; 32])), Ok(env));
        assert_eq!(
            Header::parse(&sealed[..40]),
            Err(Malformed::TooShort { len: 40 })
        );
    }

    proptest! {
        #[test]
        fn the_header_parse_and_open_agree(
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            v6 in any::<bool>(),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            cut in any::<usize>(),
        ) {
            let lane: SocketAddr = if v6 { "[::1]:1".parse().unwrap() } else { "127.0.0.1:1".parse().unwrap() };
            let mut bytes = sample(lane, &payload).seal(&Key::from_bytes([1; 32])).unwrap();
            let n = bytes.len();
            for (i, b) in flips {
                bytes[i % n] ^= b;
            }
            bytes.truncate(cut % (n + 1));
            match (Header::parse(&bytes), open(&bytes, &ring())) {
                (Err(m), opened) => prop_assert_eq!(opened, Err(OpenError::Malformed(m))),
                (Ok(h), Ok(env)) => {
                    prop_assert_eq!((h.replica, h.epoch, h.event, h.seq, h.lane), (env.replica, env.epoch, env.event, env.seq, env.lane));
                    prop_assert_eq!(h.payload_len, env.payload.len());
                }
                (Ok(h), Err(e)) => prop_assert!(
                    e == OpenError::BadMac(h.replica) || e == OpenError::UnknownReplica(h.replica)
                ),
            }
        }

        #[test]
        fn open_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = open(&bytes, &ring());
        }
    }
}
