//! The Rust side of a `seguro_replica *`: the agent on its own tokio
//! runtime, the notices it queued for the C runtime, the fd that wakes the C
//! runtime's loop, and the channel its commands go back on.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use config::{Config, KeyCheck, Overrides, ReplicaId};
use leadership::EventNum;
use replica::port::{self, Command, Notice};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;
use tokio_util::sync::CancellationToken;

use crate::types::seguro_error;

/// Notices forwarded to the C runtime but not yet taken: with the agent's
/// own queue ([`replica::NOTICE_QUEUE`]), how far a slow runtime lets the
/// agent run before it waits.
const HANDED_OVER: usize = 64;

/// How long `stop` waits for the agent to resign and stop.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Whether an agent runs in this process: one at a time, because the
/// metrics recorder and the logger are the process's.
static RUNNING: AtomicBool = AtomicBool::new(false);

/// This process's one agent slot, freed when dropped.
struct Slot {
    held: bool,
}

impl Slot {
    fn take() -> Result<Slot, Failure> {
        RUNNING
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| Slot { held: true })
            .map_err(|_| {
                Failure::new(
                    seguro_error::SEGURO_ERR_START,
                    "another agent runs in this process: stop it first",
                )
            })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.held {
            RUNNING.store(false, Ordering::Release);
        }
    }
}

/// An error and its message, for `seguro_replica_last_error`.
#[derive(Debug)]
pub struct Failure {
    pub code: seguro_error,
    pub message: String,
}

impl Failure {
    pub fn new(code: seguro_error, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

/// An eventfd: readable while notices may be waiting.
struct Wake(OwnedFd);

impl Wake {
    fn new() -> io::Result<Wake> {
        // SAFETY: eventfd(2) takes no pointers; a non-negative return is a
        // new descriptor nobody else owns.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created above and is owned by nothing else.
        Ok(Wake(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Makes the fd readable.
    fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own eventfd. It can
        // only fail if the counter would overflow, and then it is readable
        // anyway.
        unsafe { libc::write(self.0.as_raw_fd(), (&raw const one).cast(), 8) };
    }

    /// Makes the fd unreadable until the next signal.
    fn clear(&self) {
        let mut count: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from our own non-blocking
        // eventfd; EAGAIN (nothing to clear) is fine.
        unsafe { libc::read(self.0.as_raw_fd(), (&raw mut count).cast(), 8) };
    }
}

/// What the C runtime reads from.
struct Inbox {
    notices: mpsc::Receiver<Notice>,
    /// The notice last returned, whose bytes the C runtime may still read.
    current: Option<Notice>,
}

/// One agent and the C runtime's ends of its port.
pub struct Replica {
    runtime: Option<tokio::runtime::Runtime>,
    shutdown: CancellationToken,
    agent: Option<tokio::task::JoinHandle<()>>,
    commands: mpsc::UnboundedSender<Command>,
    inbox: Mutex<Inbox>,
    wake: Arc<Wake>,
    /// Why the agent stopped, once it has.
    stopped: Arc<Mutex<Option<String>>>,
    /// Dropped last: the next agent may start once this one is gone.
    _slot: Slot,
}

impl Replica {
    /// Loads the config, wires replica `id`'s agent (keys, sockets, etcd,
    /// metrics) and starts it, its runtime's state being as of `last`.
    pub fn start(config_path: &Path, id: u32, last: EventNum) -> Result<Replica, Failure> {
        let id = ReplicaId::new(id)
            .ok_or_else(|| Failure::new(seguro_error::SEGURO_ERR_INVALID, "replica id 0"))?;
        let config = match Config::load(config_path, &Overrides::default(), KeyCheck::Replica(id)) {
            Ok((config, warnings)) => {
                for w in warnings.iter() {
                    tracing::warn!("{w}");
                }
                config
            }
            Err(diagnostics) => {
                return Err(Failure::new(
                    seguro_error::SEGURO_ERR_CONFIG,
                    diagnostics.to_string(),
                ));
            }
        };
        if config.replica(id).is_none() {
            return Err(Failure::new(
                seguro_error::SEGURO_ERR_CONFIG,
                format!("{} has no replica with id {id}", config_path.display()),
            ));
        }
        let credentials = match trust::Credentials::of(&config, config::Role::Replica(id)) {
            Some(Ok(c)) => c,
            Some(Err(e)) => {
                return Err(Failure::new(seguro_error::SEGURO_ERR_CONFIG, e.to_string()));
            }
            None => {
                return Err(Failure::new(
                    seguro_error::SEGURO_ERR_CONFIG,
                    format!(
                        "{} names no certificate for replica {id}",
                        config_path.display()
                    ),
                ));
            }
        };
        let start =
            |e: &dyn std::fmt::Display| Failure::new(seguro_error::SEGURO_ERR_START, e.to_string());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("seguro-replica")
            .enable_all()
            .build()
            .map_err(|e| start(&format!("cannot start the async runtime: {e}")))?;

        let slot = Slot::take()?;
        let (agent_port, runtime_port) = port::port(replica::NOTICE_QUEUE);
        let wired = runtime
            .block_on(replica::Wired::new(&config, id, credentials, agent_port))
            .map_err(|e| start(&e))?;
        // The runtime's state at start, as the protocol opens (SPEC §6.3.1).
        let _ = runtime_port.commands.send(Command::Restored { last });
        let shutdown = CancellationToken::new();
        let stopping = shutdown.clone();
        let agent = async move {
            wired.run(stopping).await.map_err(|e| {
                tracing::error!(error = %e, "the replica agent stopped");
                e.to_string()
            })
        };
        Replica::serve(runtime, runtime_port, agent, shutdown, slot)
    }

    /// Runs `agent` on `runtime`; the C runtime takes its notices from
    /// `port` (woken through the fd) and hands commands back on it.
    fn serve(
        runtime: tokio::runtime::Runtime,
        port: port::RuntimePort,
        agent: impl Future<Output = Result<(), String>> + Send + 'static,
        shutdown: CancellationToken,
        slot: Slot,
    ) -> Result<Replica, Failure> {
        let wake =
            Arc::new(Wake::new().map_err(|e| {
                Failure::new(seguro_error::SEGURO_ERR_START, format!("eventfd: {e}"))
            })?);
        let (handed, notices) = mpsc::channel(HANDED_OVER);
        let stopped = Arc::new(Mutex::new(None));
        let agent = runtime.spawn(serve(
            agent,
            port.notices,
            handed,
            wake.clone(),
            shutdown.clone(),
            stopped.clone(),
        ));
        Ok(Replica {
            runtime: Some(runtime),
            shutdown,
            agent: Some(agent),
            commands: port.commands,
            inbox: Mutex::new(Inbox {
                notices,
                current: None,
            }),
            wake,
            stopped,
            _slot: slot,
        })
    }

    pub fn fd(&self) -> RawFd {
        self.wake.0.as_raw_fd()
    }

    /// The next notice, if one is waiting, kept until the next call; it
    /// clears the fd once nothing is left.
    pub fn next_notice<T>(&self, view: impl FnOnce(&Notice) -> T) -> Result<Option<T>, Failure> {
        let mut inbox = self.inbox.lock().unwrap_or_else(|e| e.into_inner());
        inbox.current = None;
        let mut received = inbox.notices.try_recv();
        if matches!(received, Err(TryRecvError::Empty)) {
            // Clear first, then look again: a notice forwarded after the
            // look signals the fd after it was cleared, so none is missed.
            self.wake.clear();
            received = inbox.notices.try_recv();
        }
        match received {
            Ok(notice) => Ok(Some(view(inbox.current.insert(notice)))),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => Err(self.stopped_failure()),
        }
    }

    /// Hands a command to the agent.
    pub fn tell(&self, command: Command) -> Result<(), Failure> {
        if self
            .stopped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
        {
            return Err(self.stopped_failure());
        }
        self.commands
            .send(command)
            .map_err(|_| self.stopped_failure())
    }

    fn stopped_failure(&self) -> Failure {
        let why = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        Failure::new(
            seguro_error::SEGURO_ERR_STOPPED,
            why.as_deref()
                .unwrap_or("the agent has stopped")
                .to_string(),
        )
    }

    /// Stops the agent (a leader resigns first) and its runtime.
    pub fn stop(mut self) {
        self.shutdown.cancel();
        if let (Some(runtime), Some(agent)) = (self.runtime.take(), self.agent.take()) {
            let _ = runtime.block_on(async { tokio::time::timeout(STOP_GRACE, agent).await });
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Says why the agent stopped, closes the inbox and wakes the C runtime
/// when serving ends, even by a panic (tokio then drops the task): a runtime
/// waiting on the fd must learn the agent is gone.
struct Finish {
    why: Option<String>,
    to_runtime: Option<mpsc::Sender<Notice>>,
    stopped: Arc<Mutex<Option<String>>>,
    wake: Arc<Wake>,
}

impl Drop for Finish {
    fn drop(&mut self) {
        let why = self
            .why
            .take()
            .unwrap_or_else(|| "the agent panicked (see its log)".to_string());
        *self.stopped.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
        // The inbox reads as stopped once drained; then the wake-up.
        self.to_runtime = None;
        self.wake.signal();
    }
}

/// Runs the agent (which stops on `shutdown`), forwarding its notices to
/// the C runtime and signalling the fd for each; then [`Finish`]es.
async fn serve(
    agent: impl Future<Output = Result<(), String>>,
    mut from_agent: mpsc::Receiver<Notice>,
    to_runtime: mpsc::Sender<Notice>,
    wake: Arc<Wake>,
    shutdown: CancellationToken,
    stopped: Arc<Mutex<Option<String>>>,
) {
    let mut finish = Finish {
        why: None,
        to_runtime: Some(to_runtime),
        stopped,
        wake: wake.clone(),
    };
    let stopping = shutdown;
    // Borrowed, never cloned: dropping `finish` alone closes the inbox.
    let Some(to_runtime) = finish.to_runtime.as_ref() else {
        return;
    };
    let forward = async {
        loop {
            let notice = tokio::select! {
                notice = from_agent.recv() => notice,
                // A C runtime that stopped reading must not hold up `stop`.
                _ = stopping.cancelled() => None,
            };
            let Some(notice) = notice else { break };
            tokio::select! {
                sent = to_runtime.send(notice) => if sent.is_err() { break },
                _ = stopping.cancelled() => break,
            }
            wake.signal();
        }
        // Nobody forwards any more: an agent waiting to hand over a notice
        // (its queue full) must fail now rather than wait for ever.
        from_agent.close();
    };
    // The agent dropping its port ends the forwarding once it is drained.
    let (result, ()) = tokio::join!(agent, forward);
    finish.why = Some(match result {
        Ok(()) => "the agent was stopped".to_string(),
        Err(e) => format!("the agent stopped: {e}"),
    });
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use bytes::Bytes;
    use tokio::sync::oneshot;

    use super::*;

    /// Whether `fd` becomes readable within `ms` milliseconds.
    fn readable(fd: RawFd, ms: i32) -> bool {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd, and its count is 1.
        unsafe { libc::poll(&mut pfd, 1, ms) == 1 }
    }

    /// Waits until the C side is told the agent stopped, says why with
    /// `why` in the message, and refuses commands from then on.
    fn assert_stopped(replica: &Replica, why: &str) {
        let failure = loop {
            match replica.next_notice(|_| ()) {
                Ok(_) => assert!(readable(replica.fd(), 5000)),
                Err(failure) => break failure,
            }
        };
        assert_eq!(failure.code, seguro_error::SEGURO_ERR_STOPPED);
        assert!(failure.message.contains(why), "{}", failure.message);
        let refused = replica
            .tell(Command::Checkpointed(EventNum(1)))
            .unwrap_err();
        assert_eq!(refused.code, seguro_error::SEGURO_ERR_STOPPED);
    }

    /// `stop` returns without waiting out [`STOP_GRACE`].
    fn assert_stops_before_its_grace(replica: Replica) {
        let started = Instant::now();
        replica.stop();
        assert!(
            started.elapsed() < STOP_GRACE,
            "stop took {:?}",
            started.elapsed()
        );
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    }

    /// A replica whose "agent" is the test: it sends notices on the
    /// returned sender, reads commands from the receiver, and ends the agent
    /// with the result it sends on the oneshot (or when stopped).
    #[allow(clippy::type_complexity)]
    fn fake() -> (
        Replica,
        mpsc::Sender<Notice>,
        mpsc::UnboundedReceiver<Command>,
        oneshot::Sender<Result<(), String>>,
    ) {
        let runtime = runtime();
        let (agent_port, runtime_port) = port::port(8);
        let (end, ended) = oneshot::channel();
        let shutdown = CancellationToken::new();
        let stopping = shutdown.clone();
        let notices = agent_port.notices.clone();
        let agent = async move {
            let port = agent_port.notices;
            let result = tokio::select! {
                r = ended => r.unwrap_or(Ok(())),
                _ = stopping.cancelled() => Ok(()),
            };
            drop(port);
            result
        };
        let replica =
            Replica::serve(runtime, runtime_port, agent, shutdown, Slot { held: false }).unwrap();
        (replica, notices, agent_port.commands, end)
    }

    #[test]
    fn a_panicking_agent_wakes_the_c_side_and_says_so() {
        let runtime = runtime();
        let (agent_port, runtime_port) = port::port(8);
        let agent = async move {
            let _port = agent_port;
            tokio::time::sleep(Duration::from_millis(50)).await;
            panic!("a bug in the agent");
        };
        let shutdown = CancellationToken::new();
        let replica =
            Replica::serve(runtime, runtime_port, agent, shutdown, Slot { held: false }).unwrap();
        assert!(readable(replica.fd(), 5000), "the panic wakes the C side");
        assert_stopped(&replica, "panicked");
        replica.stop();
    }

    #[test]
    fn the_fd_wakes_for_each_notice_and_next_notice_drains_it() {
        let (replica, notices, mut commands, end) = fake();
        let fd = replica.fd();
        assert!(!readable(fd, 0));
        assert!(replica.next_notice(|_| ()).unwrap().is_none());

        notices
            .blocking_send(Notice::Committed(EventNum(1)))
            .unwrap();
        assert!(readable(fd, 5000), "a notice makes the fd readable");
        let got = replica.next_notice(Notice::clone).unwrap();
        assert_eq!(got, Some(Notice::Committed(EventNum(1))));
        assert_eq!(replica.next_notice(|_| ()).unwrap(), None);
        assert!(!readable(fd, 0), "EMPTY clears the fd");

        for n in 1..=3 {
            let data = Bytes::from(vec![n as u8; 3]);
            notices
                .blocking_send(Notice::Replay {
                    num: EventNum(n),
                    data,
                    recorded: replica::port::Recorded::Boot,
                })
                .unwrap();
        }
        assert!(readable(fd, 5000));
        let mut seen = Vec::new();
        // Notices still in flight to the inbox arrive with the fd set again.
        while seen.len() < 3 {
            while let Some(n) = replica.next_notice(Notice::clone).unwrap() {
                seen.push(n);
            }
            assert!(seen.len() == 3 || readable(fd, 5000));
        }
        let nums: Vec<_> = seen
            .iter()
            .map(|n| match n {
                Notice::Replay { num, data, .. } => (num.get(), data[0]),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(nums, [(1, 1), (2, 2), (3, 3)], "in order");

        replica.tell(Command::Checkpointed(EventNum(3))).unwrap();
        assert_eq!(
            commands.blocking_recv(),
            Some(Command::Checkpointed(EventNum(3)))
        );

        // The agent stops with an error: the C side learns why.
        drop(notices);
        end.send(Err("the event log skipped from event 3 to 5".into()))
            .unwrap();
        assert!(readable(fd, 5000), "stopping wakes the C side");
        assert_stopped(&replica, "skipped from event 3");
        replica.stop();
    }

    #[test]
    fn stop_does_not_wait_for_a_c_side_that_stopped_reading() {
        let runtime = runtime();
        let (agent_port, runtime_port) = port::port(8);
        // Like the real agent mid-replay, it does not watch the stop: it
        // hands over notices until the queue refuses them.
        let agent = async move {
            let port = agent_port.notices;
            for n in 1.. {
                if port.send(Notice::Committed(EventNum(n))).await.is_err() {
                    break;
                }
            }
            Ok(())
        };
        let shutdown = CancellationToken::new();
        let replica =
            Replica::serve(runtime, runtime_port, agent, shutdown, Slot { held: false }).unwrap();
        // Both queues fill: the forwarder is stuck handing one over.
        std::thread::sleep(Duration::from_millis(200));
        assert_stops_before_its_grace(replica);
    }

    #[test]
    fn stop_does_not_wait_for_queues_left_full() {
        let (replica, notices, _commands, _end) = fake();
        // Fill both queues: the forwarder is stuck handing one over.
        let mut sent = 0;
        let _ = testkit::wait::every(
            Duration::from_millis(1),
            Duration::from_secs(5),
            "both queues to fill",
            || loop {
                match notices.try_send(Notice::Committed(EventNum(sent + 1))) {
                    Ok(()) => sent += 1,
                    Err(_) => return sent > HANDED_OVER as u64,
                }
            },
        );
        assert!(sent > HANDED_OVER as u64, "{sent} notices queued");
        assert_stops_before_its_grace(replica);
    }
}
