//! How large each message of the wire protocol may be: every gRPC message
//! limit, on the nodes and in the clients, derived here from `[eventlog]`'s
//! event and batch limits, so that nothing from the network is unbounded.
//!
//! tonic refuses a message over its service's decoding limit with
//! `ResourceExhausted` before any of it is handed to Seguro's code.

use config::{BatchLimits, EventlogConfig};

/// Room in every message for what is not event data: the request's own
/// fields (sequence, epoch, event numbers), a node's status (at most
/// `config::MAX_REPLICAS` members, their progress and watermarks), an admin
/// request, and in a Raft entry its log id, or a membership in place of a
/// batch.
pub const MESSAGE_OVERHEAD: usize = 64 << 10;

/// Most bytes protobuf spends on one event besides its data: the event's
/// tag and length (6), and in it the epoch (11), the mug (6) and the data's
/// tag and length (6), each at its widest varint. A Raft entry's postcard
/// encoding of a batch spends less per event than this.
pub const EVENT_OVERHEAD: usize = 32;

/// A read sends at most this much event data in one message (one event
/// larger than this goes alone).
pub const READ_CHUNK_BYTES: usize = 1 << 20;

/// ... and at most this many events: empty events cost no data.
pub const READ_CHUNK_EVENTS: u64 = 16 << 10;

/// A snapshot travels in chunks of this much data.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

/// The largest message each service takes and gives, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageLimits {
    /// The largest EventLog request: an append of one full batch
    /// (`batch.max_events` events, `batch.max_bytes` of data).
    pub api_request: usize,
    /// The largest EventLog response: a read chunk.
    pub api_response: usize,
    /// Admin requests and responses.
    pub admin: usize,
}

impl MessageLimits {
    /// The limits for a cluster whose events are at most `max_event_bytes`
    /// and whose writers send batches within `batch`.
    pub fn new(max_event_bytes: usize, batch: &BatchLimits) -> Self {
        // A batch always fits one event of the largest size, whatever it says.
        let batch_data = batch.max_bytes.max(max_event_bytes);
        let api_request = batch_data
            .saturating_add(batch.max_events.saturating_mul(EVENT_OVERHEAD))
            .saturating_add(MESSAGE_OVERHEAD);
        let chunk_events = usize::try_from(READ_CHUNK_EVENTS).unwrap_or(usize::MAX);
        let api_response = READ_CHUNK_BYTES
            .max(max_event_bytes)
            .saturating_add(chunk_events.saturating_mul(EVENT_OVERHEAD))
            .saturating_add(MESSAGE_OVERHEAD);
        MessageLimits {
            api_request,
            api_response,
            admin: MESSAGE_OVERHEAD,
        }
    }

    /// The limits the config's `[eventlog]` implies.
    pub fn from_config(config: &EventlogConfig) -> Self {
        Self::new(config.max_event_bytes, &config.batch)
    }

    /// The largest Raft request: an AppendEntries of `max_payload_entries`
    /// entries, each one batch as large as an append request (a batch
    /// encodes no larger in a Raft entry than in an append), or one
    /// snapshot chunk.
    pub fn raft_request(&self, max_payload_entries: u64) -> usize {
        let entries = usize::try_from(max_payload_entries).unwrap_or(usize::MAX);
        entries
            .saturating_mul(self.api_request)
            .saturating_add(MESSAGE_OVERHEAD)
            .max(SNAPSHOT_CHUNK_BYTES + MESSAGE_OVERHEAD)
    }

    /// The largest Raft response: votes, acknowledgements, a leader's hint.
    pub fn raft_response(&self) -> usize {
        MESSAGE_OVERHEAD
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use prost::Message;

    use super::*;
    use crate::proto;

    fn batch(max_events: usize, max_bytes: usize) -> BatchLimits {
        BatchLimits {
            max_events,
            max_bytes,
            max_linger: Duration::from_millis(1),
        }
    }

    #[test]
    fn limits_follow_the_config() {
        // The defaults: 1 MiB events, batches of 256 events or 4 MiB.
        let l = MessageLimits::new(1 << 20, &batch(256, 4 << 20));
        assert_eq!(l.api_request, (4 << 20) + 256 * 32 + (64 << 10));
        assert_eq!(l.api_response, (1 << 20) + (16 << 10) * 32 + (64 << 10));
        assert_eq!(l.admin, 64 << 10);
        assert_eq!(l.raft_request(64), 64 * l.api_request + (64 << 10));
        assert_eq!(l.raft_response(), 64 << 10);
        // An event larger than a read chunk goes alone.
        let big = MessageLimits::new(64 << 20, &batch(1, 64 << 20));
        assert_eq!(big.api_response, (64 << 20) + (16 << 10) * 32 + (64 << 10));
        // Tiny batches still leave room for a snapshot chunk.
        let tiny = MessageLimits::new(1, &batch(1, 1));
        assert_eq!(tiny.raft_request(1), (1 << 20) + (64 << 10));
        // Nothing overflows, whatever the numbers.
        let huge = MessageLimits::new(usize::MAX, &batch(usize::MAX, usize::MAX));
        assert_eq!(huge.raft_request(u64::MAX), usize::MAX);
    }

    fn widest_event(data: usize) -> (proto::NewEvent, proto::StoredEvent) {
        let data = Bytes::from(vec![0xa5; data]);
        (
            proto::NewEvent {
                mug: u32::MAX,
                data: data.clone(),
            },
            proto::StoredEvent {
                epoch: u64::MAX,
                mug: u32::MAX,
                data,
            },
        )
    }

    #[test]
    fn an_event_costs_at_most_its_data_and_the_overhead() {
        for size in [0, 1, 127, 128, 1 << 14, 1 << 21, 64 << 20] {
            let (new, stored) = widest_event(size);
            let append = proto::AppendRequest {
                events: vec![new],
                ..Default::default()
            };
            let chunk = proto::EventChunk {
                first: 0,
                events: vec![stored],
            };
            assert!(append.encoded_len() <= size + EVENT_OVERHEAD, "{size}");
            assert!(chunk.encoded_len() <= size + EVENT_OVERHEAD, "{size}");
        }
    }

    #[test]
    fn the_largest_messages_fit_their_limits() {
        let limits = batch(1000, 1 << 20);
        let l = MessageLimits::new(4 << 10, &limits);
        let events = (0..1000)
            .map(|i| proto::NewEvent {
                mug: u32::MAX,
                data: Bytes::from(vec![1; if i < 256 { 4 << 10 } else { 0 }]),
            })
            .collect();
        let append = proto::AppendRequest {
            seq: u64::MAX,
            epoch: u64::MAX,
            first: u64::MAX,
            events,
            retry: true,
        };
        assert!(append.encoded_len() <= l.api_request);

        // A read chunk: many empty events, or up to a chunk of data.
        for (n, each) in [(READ_CHUNK_EVENTS as usize, 0), (256, 4 << 10)] {
            let chunk = proto::ReadResponse {
                body: Some(proto::read_response::Body::Events(proto::EventChunk {
                    first: u64::MAX,
                    events: (0..n).map(|_| widest_event(each).1).collect(),
                })),
            };
            assert!(chunk.encoded_len() <= l.api_response);
        }
    }
}
