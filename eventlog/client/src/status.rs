//! What a node says about itself (and, on the leader, about every
//! replica), as `seguro eventlog status` shows it; asked of one node or of
//! every node known.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::client::Client;
use crate::error::ClientError;
use crate::index::LogIndex;
use crate::proto;
use crate::types::{CommitState, Epoch, EventNum};

impl Client {
    /// One node's own view of itself (and, on the leader, of everyone).
    pub async fn node_status(
        &self,
        addr: &str,
        timeout: Duration,
    ) -> Result<NodeStatus, ClientError> {
        let mut api = self.api(addr)?;
        let resp = tokio::time::timeout(timeout, api.status(proto::StatusRequest {}))
            .await
            .map_err(|_| ClientError::Timeout(timeout))?
            .map_err(|s| match s.code() {
                tonic::Code::Unauthenticated => ClientError::Rejected(s.message().to_string()),
                _ => ClientError::Unavailable(s.message().to_string()),
            })?;
        NodeStatus::from_proto(addr, resp.into_inner())
    }

    /// Every node's status: the config's replicas and any other member.
    pub async fn cluster_status(&self) -> Vec<(String, Result<NodeStatus, ClientError>)> {
        let timeout = self.inner.opts.request_timeout;
        let mut seen: Vec<String> = Vec::new();
        let mut out = Vec::new();
        loop {
            let todo: Vec<String> = self
                .inner
                .endpoints
                .lock()
                .unwrap()
                .iter()
                .filter(|e| !seen.contains(e))
                .cloned()
                .collect();
            if todo.is_empty() {
                break;
            }
            let asks = todo
                .iter()
                .map(|a| async move { (a.clone(), self.node_status(a, timeout).await) });
            for (addr, r) in futures::future::join_all(asks).await {
                if let Ok(s) = &r {
                    for m in &s.members {
                        self.learn(m.id, &m.addr);
                    }
                }
                seen.push(addr.clone());
                out.push((addr, r));
            }
        }
        out
    }
}

/// What a node does in the Raft cluster; `Down` while its Raft is not
/// running (its storage failed, say).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Leader,
    Follower,
    Candidate,
    Learner,
    Shutdown,
    Down,
}

impl Role {
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Learner => "learner",
            Role::Shutdown => "shutdown",
            Role::Down => "down",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One node's view, as `seguro eventlog status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub id: u32,
    pub addr: String,
    pub role: Role,
    pub term: u64,
    pub leader: Option<u32>,
    pub leader_addr: String,
    pub initialized: bool,
    pub last_log_index: Option<LogIndex>,
    pub committed_index: Option<LogIndex>,
    pub applied_index: Option<LogIndex>,
    pub snapshot_index: Option<LogIndex>,
    pub purged_index: Option<LogIndex>,
    pub last_event: EventNum,
    pub highest_epoch: Epoch,
    pub purge_point: EventNum,
    pub members: Vec<Member>,
    /// Leader only: every member's progress.
    pub replication: Vec<Progress>,
    pub watermarks: Vec<(u32, EventNum)>,
    /// Leader only.
    pub commit: Option<CommitState>,
    /// Why the node is down, if it is.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub id: u32,
    pub addr: String,
    pub voter: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    pub id: u32,
    /// The last log index on its disk, as far as the leader knows.
    pub matched: Option<LogIndex>,
    /// Entries behind the leader's last.
    pub lag: u64,
}

impl NodeStatus {
    /// A node's answer; one whose role this version does not know (a newer
    /// or older node) is refused as unreadable.
    fn from_proto(addr: &str, s: proto::NodeStatus) -> Result<Self, ClientError> {
        let role = proto::Role::try_from(s.role)
            .ok()
            .and_then(Role::from_proto)
            .ok_or_else(|| {
                ClientError::Unavailable(format!(
                    "{addr} answered with an unknown role ({}); is it another version?",
                    s.role
                ))
            })?;
        Ok(NodeStatus {
            id: s.id,
            addr: addr.to_string(),
            role,
            term: s.term,
            leader: (s.leader != 0).then_some(s.leader),
            leader_addr: s.leader_addr,
            initialized: s.initialized,
            last_log_index: s.last_log_index.map(LogIndex),
            committed_index: s.committed_index.map(LogIndex),
            applied_index: s.applied_index.map(LogIndex),
            snapshot_index: s.snapshot_index.map(LogIndex),
            purged_index: s.purged_index.map(LogIndex),
            last_event: EventNum(s.last_event),
            highest_epoch: Epoch(s.highest_epoch),
            purge_point: EventNum(s.purge_point),
            members: s
                .members
                .into_iter()
                .map(|m| Member {
                    id: m.id,
                    addr: m.addr,
                    voter: m.voter,
                })
                .collect(),
            replication: s
                .replication
                .into_iter()
                .map(|p| Progress {
                    id: p.id,
                    matched: p.matched.map(LogIndex),
                    lag: p.lag,
                })
                .collect(),
            watermarks: s
                .watermarks
                .into_iter()
                .map(|w| (w.replica, EventNum(w.event)))
                .collect(),
            commit: s.commit.map(CommitState::from),
            error: (!s.error.is_empty()).then_some(s.error),
        })
    }
}
