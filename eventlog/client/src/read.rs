//! Reads: committed events in order, from the leader (or a chosen node),
//! resumed where they stopped across leader changes and restarts.

use futures::Stream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use crate::backoff::Backoff;
use crate::client::Client;
use crate::error::ReadError;
use crate::proto;
use crate::types::{Epoch, Event, EventNum};

impl Client {
    /// Committed events from `from` up to `to` (or up to the last committed
    /// when the read reaches the leader), in order.
    pub fn read(
        &self,
        from: EventNum,
        to: Option<EventNum>,
    ) -> impl Stream<Item = Result<Event, ReadError>> + use<> {
        self.spawn_read(from, to, false)
    }

    /// Committed events from `from` on, as they commit; the stream follows
    /// the leader and never ends unless an error does it.
    pub fn follow(&self, from: EventNum) -> impl Stream<Item = Result<Event, ReadError>> + use<> {
        self.spawn_read(from, None, true)
    }

    /// Like [`Client::read`], from the node at `addr` whether or not it
    /// leads (a replica agent reading its own node, a test comparing logs).
    /// Such a node has every event up to its own commit point.
    pub fn read_from(
        &self,
        addr: &str,
        from: EventNum,
        to: Option<EventNum>,
    ) -> impl Stream<Item = Result<Event, ReadError>> + use<> {
        self.spawn_read_at(Some(addr.to_string()), from, to, false)
    }

    fn spawn_read(
        &self,
        from: EventNum,
        to: Option<EventNum>,
        follow: bool,
    ) -> ReceiverStream<Result<Event, ReadError>> {
        self.spawn_read_at(None, from, to, follow)
    }

    fn spawn_read_at(
        &self,
        pinned: Option<String>,
        from: EventNum,
        to: Option<EventNum>,
        follow: bool,
    ) -> ReceiverStream<Result<Event, ReadError>> {
        let (tx, rx) = mpsc::channel(64);
        let client = self.clone();
        tokio::spawn(async move {
            let mut next = from;
            let mut backoff = Backoff::client();
            let mut stalled_since = Instant::now();
            loop {
                if to.is_some_and(|t| next > t) {
                    return;
                }
                let err = match client
                    .read_once(pinned.as_deref(), next, to, follow, &tx)
                    .await
                {
                    ReadEnd::Done => return,
                    ReadEnd::Progress(n) => {
                        next = n;
                        stalled_since = Instant::now();
                        backoff = Backoff::client();
                        continue;
                    }
                    ReadEnd::Failed(e) => e,
                    ReadEnd::Transient(n, why) => {
                        if n > next {
                            next = n;
                            stalled_since = Instant::now();
                        }
                        if !follow && stalled_since.elapsed() > client.inner.opts.deadline {
                            ReadError::Unavailable(why)
                        } else {
                            backoff.wait().await;
                            continue;
                        }
                    }
                };
                let _ = tx.send(Err(err)).await;
                return;
            }
        });
        ReceiverStream::new(rx)
    }

    async fn read_once(
        &self,
        pinned: Option<&str>,
        from: EventNum,
        to: Option<EventNum>,
        follow: bool,
        tx: &mpsc::Sender<Result<Event, ReadError>>,
    ) -> ReadEnd {
        let addr = match pinned {
            Some(a) => a.to_string(),
            None => match self.leader().await {
                Some(a) => a,
                None => return ReadEnd::Transient(from, "no leader".into()),
            },
        };
        let mut api = match self.api(&addr) {
            Ok(a) => a,
            Err(e) => return ReadEnd::Failed(ReadError::Unavailable(e.to_string())),
        };
        let req = proto::ReadRequest {
            from: from.get(),
            to: to.map_or(0, |t| t.get()),
            follow,
        };
        let mut stream = match api.read(req).await {
            Ok(s) => s.into_inner(),
            Err(s) if s.code() == tonic::Code::Unauthenticated => {
                return ReadEnd::Failed(ReadError::Unavailable(s.message().to_string()));
            }
            Err(s) => {
                self.forget_leader();
                return ReadEnd::Transient(from, s.message().to_string());
            }
        };
        let mut next = from;
        loop {
            match stream.message().await {
                Ok(Some(msg)) => match msg.body {
                    Some(proto::read_response::Body::Events(chunk)) => {
                        if chunk.first != next.get() {
                            return ReadEnd::Transient(next, "the node skipped events".into());
                        }
                        for e in chunk.events {
                            let event = Event {
                                num: next,
                                epoch: Epoch(e.epoch),
                                mug: e.mug,
                                data: e.data,
                            };
                            next = next.next();
                            if tx.send(Ok(event)).await.is_err() {
                                return ReadEnd::Done;
                            }
                        }
                    }
                    Some(proto::read_response::Body::Error(e)) => {
                        return match e.kind {
                            Some(proto::read_error::Kind::Purged(first)) => {
                                ReadEnd::Failed(ReadError::Purged {
                                    first_available: EventNum(first),
                                })
                            }
                            Some(proto::read_error::Kind::Invalid(why)) => {
                                ReadEnd::Failed(ReadError::Invalid(why))
                            }
                            Some(proto::read_error::Kind::Unavailable(why)) => {
                                self.forget_leader();
                                ReadEnd::Transient(next, why)
                            }
                            None => ReadEnd::Transient(next, "empty error".into()),
                        };
                    }
                    None => return ReadEnd::Transient(next, "empty message".into()),
                },
                Ok(None) if follow => return ReadEnd::Transient(next, "the stream ended".into()),
                Ok(None) if next == from => return ReadEnd::Done,
                Ok(None) => {
                    // A bounded read ends at the leader's commit point.
                    return if to.is_some_and(|t| next <= t) {
                        ReadEnd::Progress(next)
                    } else {
                        ReadEnd::Done
                    };
                }
                Err(s) => {
                    self.forget_leader();
                    return ReadEnd::Transient(next, s.message().to_string());
                }
            }
        }
    }
}

enum ReadEnd {
    Done,
    Progress(EventNum),
    Failed(ReadError),
    Transient(EventNum, String),
}
