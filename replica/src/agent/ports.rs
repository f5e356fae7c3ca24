//! What the agent needs of the event log, the election and the socket
//! effects leave by, as traits; implemented here for the real ones
//! (`eventlog_client::Client`, `leadership::Election`, `udp::BatchSocket`), and by
//! in-memory doubles in the agent's tests.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;

use ames::Mug;
use bytes::Bytes;
use config::ReplicaId;
use eventlog_client::{AppendError, AppendFuture, Appender, ClientError, Event, ReadError};
use futures::Stream;
use leadership::{ElectionError, Epoch, EventNum, Leadership, LossReason};

/// Committed events, in order.
pub type Committed = Pin<Box<dyn Stream<Item = Result<Event, ReadError>> + Send>>;

/// The replicated event log (docs/SPEC.md §3, §4, §6.2).
pub trait EventLog: Clone + Send + Sync + 'static {
    type Writer: LogWriter;

    /// Fences the log at `epoch`: from then on it refuses older epochs.
    /// The last event it holds.
    fn fence(&self, epoch: Epoch) -> impl Future<Output = Result<EventNum, AppendError>> + Send;

    /// The writer for term `epoch`, whose first event is `next`.
    fn writer(&self, epoch: Epoch, next: EventNum) -> Self::Writer;

    /// Committed events from `from` to `to`, then the end.
    fn read(&self, from: EventNum, to: EventNum) -> Committed;

    /// Committed events from `from` on, as they commit.
    fn follow(&self, from: EventNum) -> Committed;

    /// Records that this replica's runtime has checkpointed up to `event`
    /// (SPEC §5); the log's purge point after it.
    fn set_watermark(
        &self,
        replica: ReplicaId,
        event: EventNum,
    ) -> impl Future<Output = Result<EventNum, ClientError>> + Send;
}

/// One term's writer: appends in order, each resolving once committed.
pub trait LogWriter: Send {
    type Append: Future<Output = Result<EventNum, AppendError>> + Send;

    /// Appends event `num`, after which the ship's state has mug `mug`
    /// (`None`: a boot event, recorded as 0).
    fn append(&self, num: EventNum, mug: Option<Mug>, data: Bytes) -> Self::Append;
}

/// The leader election in etcd (SPEC §6.1).
pub trait Elector: Clone + Send + Sync + 'static {
    type Term: Term;

    /// Campaigns as `id` until it wins. Dropping the future gives up.
    fn campaign(&self, id: ReplicaId) -> impl Future<Output = Self::Term> + Send;

    /// The epoch of the term etcd holds now, `None` while nobody leads:
    /// one read, bounded by a third of the lease TTL.
    fn current(&self) -> impl Future<Output = Result<Option<Epoch>, ElectionError>> + Send;
}

/// A term this replica holds.
pub trait Term: Send + Sync + 'static {
    fn epoch(&self) -> Epoch;

    /// Resolves when the term ends without a resignation.
    fn lost(&self) -> impl Future<Output = LossReason> + Send;

    /// Ends the term at once, so that the next leader need not wait a TTL.
    fn resign(self) -> impl Future<Output = Result<(), ElectionError>> + Send;
}

/// Where sealed effect envelopes go: the gatekeeper (SPEC §7).
pub trait EffectSink: Send + Sync {
    /// Sends each datagram to its address, as one batch.
    fn send(
        &self,
        datagrams: &[(SocketAddr, &[u8])],
    ) -> impl Future<Output = io::Result<udp::Sent>> + Send;
}

impl EventLog for eventlog_client::Client {
    type Writer = Appender;

    fn fence(&self, epoch: Epoch) -> impl Future<Output = Result<EventNum, AppendError>> + Send {
        eventlog_client::Client::fence(self, epoch)
    }

    fn writer(&self, epoch: Epoch, next: EventNum) -> Appender {
        self.appender(epoch, next)
    }

    fn read(&self, from: EventNum, to: EventNum) -> Committed {
        Box::pin(eventlog_client::Client::read(self, from, Some(to)))
    }

    fn follow(&self, from: EventNum) -> Committed {
        Box::pin(eventlog_client::Client::follow(self, from))
    }

    fn set_watermark(
        &self,
        replica: ReplicaId,
        event: EventNum,
    ) -> impl Future<Output = Result<EventNum, ClientError>> + Send {
        eventlog_client::Client::set_watermark(self, replica, event)
    }
}

impl LogWriter for Appender {
    type Append = AppendFuture;

    fn append(&self, num: EventNum, mug: Option<Mug>, data: Bytes) -> AppendFuture {
        // The log keeps a mug as the 32-bit word vere writes: 0 for the
        // boot sequence's events.
        Appender::append(self, num, mug.map_or(0, Mug::get), data)
    }
}

impl Elector for leadership::Election {
    type Term = Leadership;

    fn campaign(&self, id: ReplicaId) -> impl Future<Output = Leadership> + Send {
        leadership::Election::campaign(self, id)
    }

    fn current(&self) -> impl Future<Output = Result<Option<Epoch>, ElectionError>> + Send {
        let limit = self.ttl() / 3;
        async move {
            let term = leadership::Election::current(self, limit).await?;
            Ok(term.map(|t| t.epoch))
        }
    }
}

impl Term for Leadership {
    fn epoch(&self) -> Epoch {
        Leadership::epoch(self)
    }

    fn lost(&self) -> impl Future<Output = LossReason> + Send {
        Leadership::lost(self)
    }

    fn resign(self) -> impl Future<Output = Result<(), ElectionError>> + Send {
        Leadership::resign(self)
    }
}

impl EffectSink for udp::BatchSocket {
    fn send(
        &self,
        datagrams: &[(SocketAddr, &[u8])],
    ) -> impl Future<Output = io::Result<udp::Sent>> + Send {
        udp::BatchSocket::send(self, datagrams)
    }
}
