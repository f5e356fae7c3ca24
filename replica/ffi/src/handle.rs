//! The Rust side of a `seguro_replica *`: the agent on its own tokio
//! runtime, the notices it queued for the C runtime, the fd that wakes the C
//! runtime's loop, and the channel its commands go back on.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use config::{Config, KeyCheck, Overrides, ReplicaId};
use eventlog::EventNum;
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
}

impl Replica {
    /// Loads the config, wires replica `id`'s agent (keys, sockets, etcd,
    /// metrics) and starts it, its runtime's state being as of `last`.
    pub fn start(config_path: &Path, id: u32, last: EventNum) -> Result<Replica, Failure> {
        let id = ReplicaId::new(id)
            .ok_or_else(|| Failure::new(seguro_error::SEGURO_ERR_INVALID, "replica id 0"))?;
        let config = match Config::load(config_path, &Overrides::default(), KeyCheck::Replica(id)) {
            Ok((config, _warnings)) => config,
            Err(diagnostics) => {
                let message = diagnostics
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("\n");
                return Err(Failure::new(seguro_error::SEGURO_ERR_CONFIG, message));
            }
        };
        if config.replica(id).is_none() {
            return Err(Failure::new(
                seguro_error::SEGURO_ERR_CONFIG,
                format!("{} has no replica with id {id}", config_path.display()),
            ));
        }
        let start =
            |e: &dyn std::fmt::Display| Failure::new(seguro_error::SEGURO_ERR_START, e.to_string());
        let wake = Arc::new(Wake::new().map_err(|e| start(&format!("eventfd: {e}")))?);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("seguro-replica")
            .enable_all()
            .build()
            .map_err(|e| start(&format!("cannot start the async runtime: {e}")))?;

        let (agent_port, runtime_port) = port::port(replica::NOTICE_QUEUE);
        let wired = runtime
            .block_on(replica::Wired::new(&config, id, agent_port))
            .map_err(|e| start(&e))?;
        // The runtime's state at start, as the protocol opens (SPEC §6.3.1).
        let _ = runtime_port.commands.send(Command::Restored { last });

        let (handed, notices) = mpsc::channel(HANDED_OVER);
        let shutdown = CancellationToken::new();
        let stopped = Arc::new(Mutex::new(None));
        let agent = runtime.spawn(serve(
            wired,
            runtime_port.notices,
            handed,
            wake.clone(),
            shutdown.clone(),
            stopped.clone(),
        ));
        Ok(Replica {
            runtime: Some(runtime),
            shutdown,
            agent: Some(agent),
            commands: runtime_port.commands,
            inbox: Mutex::new(Inbox {
                notices,
                current: None,
            }),
            wake,
            stopped,
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

/// Runs the agent, forwarding its notices to the C runtime and signalling
/// the fd for each; records why it stopped, then closes the inbox.
async fn serve(
    wired: replica::Wired,
    mut from_agent: mpsc::Receiver<Notice>,
    to_runtime: mpsc::Sender<Notice>,
    wake: Arc<Wake>,
    shutdown: CancellationToken,
    stopped: Arc<Mutex<Option<String>>>,
) {
    let stopping = shutdown.clone();
    let forward = async {
        loop {
            let notice = tokio::select! {
                notice = from_agent.recv() => notice,
                // A C runtime that stopped reading must not hold up `stop`.
                _ = stopping.cancelled() => None,
            };
            let Some(notice) = notice else { return };
            tokio::select! {
                sent = to_runtime.send(notice) => if sent.is_err() { return },
                _ = stopping.cancelled() => return,
            }
            wake.signal();
        }
    };
    // The agent dropping its port ends the forwarding once it is drained.
    let (result, ()) = tokio::join!(wired.run(shutdown), forward);
    let why = match result {
        Ok(()) => "the agent was stopped".to_string(),
        Err(e) => {
            tracing::error!(error = %e, "the replica agent stopped");
            format!("the agent stopped: {e}")
        }
    };
    *stopped.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
    drop(to_runtime);
    wake.signal();
}
