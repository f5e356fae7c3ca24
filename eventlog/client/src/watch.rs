//! The commit watch: the leader's commit state as a stream, followed across
//! leader changes, and as a `watch` channel that always holds the latest.

use futures::Stream;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use crate::backoff::Backoff;
use crate::client::Client;
use crate::error::ClientError;
use crate::proto;
use crate::types::CommitState;

impl Client {
    /// The commit state, from the leader, whenever it changes; across leader
    /// changes and restarts it reconnects, yielding an error for each
    /// interruption. The committed event number never goes back.
    pub fn watch_commits(&self) -> impl Stream<Item = Result<CommitState, ClientError>> + use<> {
        let (tx, rx) = mpsc::channel(16);
        let client = self.clone();
        tokio::spawn(async move {
            let mut last = CommitState::default();
            let mut backoff = Backoff::commit_watch();
            loop {
                let problem = match client.watch_once(&tx, &mut last).await {
                    WatchEnd::ReceiverGone => return,
                    WatchEnd::Moved => {
                        backoff = Backoff::commit_watch();
                        continue;
                    }
                    WatchEnd::Broken(why) => why,
                };
                if tx
                    .send(Err(ClientError::Unavailable(problem)))
                    .await
                    .is_err()
                {
                    return;
                }
                backoff.wait().await;
            }
        });
        ReceiverStream::new(rx)
    }

    async fn watch_once(
        &self,
        tx: &mpsc::Sender<Result<CommitState, ClientError>>,
        last: &mut CommitState,
    ) -> WatchEnd {
        let Some(addr) = self.leader().await else {
            return WatchEnd::Broken("no leader".into());
        };
        let mut api = match self.api(&addr) {
            Ok(a) => a,
            Err(e) => return WatchEnd::Broken(e.to_string()),
        };
        let mut stream = match api.watch_commits(proto::WatchRequest {}).await {
            Ok(s) => {
                tracing::debug!(%addr, "following the commit watch");
                s.into_inner()
            }
            Err(s) => {
                self.forget_leader();
                return WatchEnd::Broken(format!("{addr}: {}", s.message()));
            }
        };
        loop {
            let msg = match stream.message().await {
                Ok(Some(m)) => m,
                Ok(None) => {
                    self.forget_leader();
                    return WatchEnd::Broken(format!("{addr} ended the commit watch"));
                }
                Err(s) => {
                    self.forget_leader();
                    return WatchEnd::Broken(format!("{addr}: {}", s.message()));
                }
            };
            match msg.body {
                Some(proto::watch_response::Body::State(s)) => {
                    let s = CommitState::from(s);
                    if s.committed < last.committed {
                        continue;
                    }
                    *last = s;
                    if tx.send(Ok(s)).await.is_err() {
                        return WatchEnd::ReceiverGone;
                    }
                }
                Some(proto::watch_response::Body::NotLeader(h)) => {
                    let moved = !h.addr.is_empty() && h.addr != addr;
                    self.follow_hint(&h);
                    return if moved {
                        WatchEnd::Moved
                    } else {
                        WatchEnd::Broken(format!("{addr} is not the leader"))
                    };
                }
                Some(proto::watch_response::Body::Unavailable(why)) => {
                    self.forget_leader();
                    return WatchEnd::Broken(format!("{addr}: {why}"));
                }
                None => return WatchEnd::Broken("empty message".into()),
            }
        }
    }

    /// The latest commit state, kept current by a background task that
    /// reconnects on failure; while it is disconnected the receiver keeps
    /// the last state it had (effects wait longer; they never leave early).
    /// The task stops when every receiver is dropped.
    pub fn commit_watch(&self) -> watch::Receiver<CommitState> {
        let (tx, rx) = watch::channel(CommitState::default());
        let stream = self.watch_commits();
        tokio::spawn(async move {
            use futures::StreamExt;
            let mut stream = std::pin::pin!(stream);
            loop {
                tokio::select! {
                    item = stream.next() => match item {
                        Some(Ok(s)) => { tx.send_replace(s); }
                        Some(Err(e)) => tracing::debug!("commit watch interrupted: {e}"),
                        None => return,
                    },
                    _ = tx.closed() => return,
                }
            }
        });
        rx
    }
}

enum WatchEnd {
    ReceiverGone,
    Moved,
    Broken(String),
}
