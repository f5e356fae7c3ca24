//! A pier's events into Seguro's event log as a leader appends them (fence
//! at the term's epoch, then append from the fence's last event on), and
//! the log's committed events out into a new pier.

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use eventlog_client::{AppendError, Client, EventNum, ReadError};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use leadership::{Leadership, LossReason};
use replica::frame;
use tokio::sync::mpsc;

use crate::error::PierError;
use crate::read::Pier;
use crate::write::{ExportMeta, write_log};

/// Events read from the pier per message to the appending task.
const CHUNK: usize = 1024;
/// Appends outstanding at once: enough to fill the appender's batches and
/// its pipeline (docs/PERFORMANCE.md, "Event log").
const WINDOW: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Pier(#[from] PierError),
    #[error("cannot fence the event log at epoch {epoch}: {source}")]
    Fence {
        epoch: u64,
        #[source]
        source: AppendError,
    },
    #[error(
        "the event log already holds {log} events, more than the pier's {pier}: it holds \
         another ship's log, or a newer one"
    )]
    LogAhead { log: u64, pier: u64 },
    #[error(
        "event {event}: the event log's {what} differs from the pier's: the log holds another \
         ship's events; import nothing over it"
    )]
    Mismatch { event: u64, what: &'static str },
    #[error("cannot read event {event} from the event log: {source}")]
    Read {
        event: u64,
        #[source]
        source: ReadError,
    },
    #[error("the event log ended at event {got} while checking up to {expected}")]
    ShortRead { got: u64, expected: u64 },
    #[error("cannot append event {event}: {source}")]
    Append {
        event: u64,
        #[source]
        source: AppendError,
    },
    #[error(
        "the leadership term ended during the import ({0:?}): events up to the last one \
         acknowledged are in the log; run the import again to continue"
    )]
    TermLost(LossReason),
    #[error("the pier reader stopped: {0}")]
    Reader(String),
}

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    /// Events the log already held (from an earlier, interrupted run),
    /// each checked identical to the pier's.
    pub verified: u64,
    /// Events appended by this run.
    pub appended: u64,
    /// The last event in the log now: the pier's last.
    pub last: u64,
}

/// Appends `pier`'s events to the log as the holder of `leadership`: fences
/// the log at its epoch (every older writer is refused from then on),
/// checks that the events the log already holds are the pier's own, byte
/// for byte, and appends the rest in order. `progress` is told the number
/// of the last event checked or acknowledged. `limit` is the event log's
/// `max_event_bytes`; the pier has been checked against it by
/// [`Pier::open`].
pub async fn import(
    pier: Arc<Pier>,
    client: &Client,
    leadership: &Leadership,
    limit: usize,
    mut progress: impl FnMut(u64),
) -> Result<Imported, ImportError> {
    let epoch = leadership.epoch();
    let held = client
        .fence(epoch)
        .await
        .map_err(|source| ImportError::Fence {
            epoch: epoch.get(),
            source,
        })?
        .get();
    if held > pier.last {
        return Err(ImportError::LogAhead {
            log: held,
            pier: pier.last,
        });
    }
    tracing::info!(%epoch, held, pier_last = pier.last, "fenced the event log");

    let (tx, mut rx) = mpsc::channel::<Vec<(u64, Bytes)>>(8);
    let reader = {
        let pier = pier.clone();
        tokio::task::spawn_blocking(move || {
            let mut chunk = Vec::with_capacity(CHUNK);
            pier.walk(1, limit, |n, value| {
                chunk.push((n, Bytes::copy_from_slice(value)));
                if chunk.len() == CHUNK {
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                    if tx.blocking_send(full).is_err() {
                        return ControlFlow::Break(());
                    }
                }
                ControlFlow::Continue(())
            })?;
            if !chunk.is_empty() {
                let _ = tx.blocking_send(chunk);
            }
            Ok::<(), PierError>(())
        })
    };

    let result = async {
        let mut log = std::pin::pin!(client.read(EventNum(1), Some(EventNum(held))));
        let appender = client.appender(epoch, EventNum(held + 1));
        let mut pending = FuturesOrdered::new();
        let mut appended = 0;
        while let Some(chunk) = rx.recv().await {
            if let Some(reason) = leadership.loss() {
                return Err(ImportError::TermLost(reason));
            }
            for (n, value) in chunk {
                let Some((mug, jam)) = crate::split(&value) else {
                    // Pier::walk refuses such a value before it gets here.
                    return Err(ImportError::Reader(format!(
                        "event {n} has no jammed event"
                    )));
                };
                if n <= held {
                    let stored = match log.next().await {
                        Some(Ok(e)) => e,
                        Some(Err(source)) => return Err(ImportError::Read { event: n, source }),
                        None => {
                            return Err(ImportError::ShortRead {
                                got: n - 1,
                                expected: held,
                            });
                        }
                    };
                    let what = if stored.num.get() != n {
                        Some("event number")
                    } else if stored.mug != mug {
                        Some("mug")
                    } else if frame::decode(&stored.data).is_none_or(|f| f.data != jam) {
                        Some("jammed event")
                    } else {
                        None
                    };
                    if let Some(what) = what {
                        return Err(ImportError::Mismatch { event: n, what });
                    }
                    progress(n);
                    continue;
                }
                // Appended here, in order; only the answers are awaited later.
                let answer = appender.append(EventNum(n), mug, frame::encode(jam, None, &[]));
                pending.push_back(async move { (n, answer.await) });
                while pending.len() >= WINDOW {
                    let (n, r) = pending.next().await.expect("not empty");
                    r.map_err(|source| ImportError::Append { event: n, source })?;
                    appended += 1;
                    progress(n);
                }
            }
        }
        while let Some((n, r)) = pending.next().await {
            r.map_err(|source| ImportError::Append { event: n, source })?;
            appended += 1;
            progress(n);
        }
        Ok(appended)
    }
    .await;
    drop(rx);
    let read = reader
        .await
        .map_err(|e| ImportError::Reader(e.to_string()))?;
    let appended = result?;
    read?;
    Ok(Imported {
        verified: held,
        appended,
        last: held + appended,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Pier(#[from] PierError),
    #[error("cannot read event {event} from the event log: {source}")]
    Read {
        event: u64,
        #[source]
        source: ReadError,
    },
    #[error("the event log gave event {got} where event {expected} was due")]
    OutOfOrder { expected: u64, got: u64 },
    #[error("event {event} in the event log is not framed as an agent writes events")]
    Unframed { event: u64 },
    #[error("the pier writer stopped: {0}")]
    Writer(String),
}

/// Writes every committed event of the log into a new pier's `.urb/log`
/// at `root` (see [`write_log`]). Returns the last event written.
pub async fn export(
    client: &Client,
    root: &Path,
    meta: ExportMeta,
    mut progress: impl FnMut(u64),
) -> Result<u64, ExportError> {
    let (tx, mut rx) = mpsc::channel::<Result<(u64, Vec<u8>), ExportError>>(4096);
    let writer = {
        let root = root.to_owned();
        tokio::task::spawn_blocking(move || {
            write_log(&root, &meta, std::iter::from_fn(|| rx.blocking_recv()))
        })
    };
    let mut log = std::pin::pin!(client.read(EventNum(1), None));
    let mut expected = 1;
    while let Some(item) = log.next().await {
        let item = match item {
            Ok(e) if e.num.get() != expected => Err(ExportError::OutOfOrder {
                expected,
                got: e.num.get(),
            }),
            Ok(e) => match frame::decode(&e.data) {
                Some(framed) => Ok((expected, crate::join(e.mug, &framed.data))),
                None => Err(ExportError::Unframed { event: expected }),
            },
            Err(source) => Err(ExportError::Read {
                event: expected,
                source,
            }),
        };
        let failed = item.is_err();
        // The writer may have stopped on its own error, which it reports.
        let sent = tx.send(item).await.is_ok();
        if failed || !sent {
            break;
        }
        progress(expected);
        expected += 1;
    }
    drop(tx);
    writer
        .await
        .map_err(|e| ExportError::Writer(e.to_string()))??
}
