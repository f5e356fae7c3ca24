//! The line between the agent and the runtime that computes the ship: the
//! in-process [`ShipRuntime`](crate::ShipRuntime), or a C runtime such as
//! vere through the C ABI. The agent decides who leads and what is
//! committed; the runtime computes events and their effects.

use ames::{Lane, Mug, Stateless};
use bytes::Bytes;
use leadership::{Epoch, EventNum};
use tokio::sync::mpsc;

use crate::buffer::PacketId;

/// What the agent tells the runtime, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Apply this committed event and answer [`Command::Applied`].
    Replay {
        num: EventNum,
        data: Bytes,
        /// The mug the log recorded beside the event.
        recorded: Recorded,
    },
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
    /// Events up to `committed` are known committed: a runtime that keeps a
    /// local log (vere) cuts it after `committed` and may replay its own copy
    /// up to there.
    Rewind { committed: EventNum },
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
    /// Replaying event `num` gave a state whose mug is `mug`; `None` only
    /// for a boot event (recorded [`Recorded::Boot`]), whose state no
    /// runtime has until the whole boot sequence is applied.
    Applied { num: EventNum, mug: Option<Mug> },
    /// While leading: append event `num`, made from `packet` if it was.
    /// `mug` is `None` only for the boot sequence: events 1 to the ship's
    /// `life`, which vere applies as one batch (`u3v_boot`).
    Plan {
        num: EventNum,
        mug: Option<Mug>,
        data: Bytes,
        packet: Option<PacketId>,
    },
    /// While leading: a packet whose bytes depend on the ship's state
    /// through event `num` (an effect of planned event `num`; a scry answer
    /// or a retransmit from the state as of `num`). It leaves once `num` is
    /// committed.
    Send {
        num: EventNum,
        lane: Lane,
        payload: Vec<u8>,
    },
    /// While leading: a packet that reveals nothing of the ship's state (a
    /// STUN answer; a packet of another ship's forwarded on). It leaves at
    /// once, rate limited, only from the leader.
    SendStateless {
        kind: Stateless,
        lane: Lane,
        payload: Vec<u8>,
    },
    /// While leading: the runtime will never make an event of this packet
    /// (its queue was full), so followers may drop their copies.
    Dropped(PacketId),
    /// The runtime has durably saved its state as of this event: the log
    /// may purge up to it once every replica has.
    Checkpointed(EventNum),
}

/// The mug the log recorded beside an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The state's mug after the event, for the determinism check.
    Mug(Mug),
    /// 0: one of the boot sequence's events, planned without a mug.
    Boot,
    /// A word no ship computes (not 31 bits): no runtime's mug matches it.
    Unreadable(u32),
}

impl Recorded {
    pub fn of_stored(word: u32) -> Recorded {
        match (word, Mug::from_stored(word)) {
            (0, _) => Recorded::Boot,
            (_, Some(mug)) => Recorded::Mug(mug),
            (word, None) => Recorded::Unreadable(word),
        }
    }

    /// The word as the log stores it.
    pub fn stored(self) -> u32 {
        match self {
            Recorded::Mug(mug) => mug.get(),
            Recorded::Boot => 0,
            Recorded::Unreadable(word) => word,
        }
    }
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
