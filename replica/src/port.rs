//! The line between the agent and the runtime that computes the ship: the
//! in-process [`ShipRuntime`](crate::ShipRuntime), or a C runtime such as
//! vere through the C ABI. The agent decides who leads and what is
//! committed; the runtime computes events and their effects.

use ames::{Lane, Mug};
use bytes::Bytes;
use leadership::{Epoch, EventNum};
use tokio::sync::mpsc;

use crate::buffer::PacketId;

/// What the agent tells the runtime, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Apply this committed event and answer [`Command::Applied`].
    Replay { num: EventNum, data: Bytes },
    /// You lead term `epoch`: every event up to `next - 1` has been sent as
    /// a replay; plan events from `next` on.
    Lead { epoch: Epoch, next: EventNum },
    /// An inbound packet to make an event of (only while leading).
    Packet {
        lane: Lane,
        packet: Vec<u8>,
        id: PacketId,
    },
    /// Events up to here are on a quorum of disks (only while leading).
    Committed(EventNum),
    /// You no longer lead, and your state may hold events the log will never
    /// have: go back to your last checkpoint and answer [`Command::Restored`].
    Rewind,
    /// The log no longer holds the events before `first_available`: restore
    /// your state at or after `first_available - 1` from elsewhere (a peer's
    /// checkpoint) and answer [`Command::Restored`].
    Purged { first_available: EventNum },
}

/// What the runtime tells the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// The runtime's state is as of `last`: at start, and after a
    /// [`Notice::Rewind`] or [`Notice::Purged`].
    Restored { last: EventNum },
    /// Replaying event `num` gave a state whose mug is `mug`.
    Applied { num: EventNum, mug: Mug },
    /// While leading: append event `num`, made from `packet` if it was.
    Plan {
        num: EventNum,
        mug: Mug,
        data: Bytes,
        packet: Option<PacketId>,
    },
    /// While leading: an effect of planned event `num`.
    Send {
        num: EventNum,
        lane: Lane,
        payload: Vec<u8>,
    },
    /// The runtime has durably saved its state as of this event: the log
    /// may purge up to it once every replica has.
    Checkpointed(EventNum),
}

/// The agent's ends of the two channels.
pub struct AgentPort {
    pub notices: mpsc::Sender<Notice>,
    pub commands: mpsc::UnboundedReceiver<Command>,
}

/// The runtime's ends of the two channels.
pub struct RuntimePort {
    pub notices: mpsc::Receiver<Notice>,
    pub commands: mpsc::UnboundedSender<Command>,
}

/// A connected pair. Notices are bounded (a slow runtime slows the agent);
/// commands are not, so that the agent never waits on a runtime that waits
/// on it.
pub fn port(capacity: usize) -> (AgentPort, RuntimePort) {
    let (notice_tx, notice_rx) = mpsc::channel(capacity);
    let (command_tx, command_rx) = mpsc::unbounded_channel();
    (
        AgentPort {
            notices: notice_tx,
            commands: command_rx,
        },
        RuntimePort {
            notices: notice_rx,
            commands: command_tx,
        },
    )
}
