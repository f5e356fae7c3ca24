//! The admin API: membership changes and checkpoint watermarks, served by
//! the leader (a follower answers where the leader is).

use std::future::Future;

use config::ReplicaId;
use openraft::errors::{ClientWriteError, RaftError};
use openraft::rt::WatchReceiver;
use openraft::{BasicNode, ChangeMembers};
use tonic::{Request, Response, Status};

use super::hint;
use crate::app::{Ctx, Running};
use crate::authz::Action;
use crate::command::{Command, Outcome};
use crate::ids::NodeId;
use crate::proto::{self, admin_error::Kind, admin_server};
use crate::raft::TypeConfig;
use crate::types::EventNum;

pub(crate) struct AdminService {
    ctx: Ctx,
}

impl AdminService {
    pub fn new(ctx: Ctx) -> Self {
        AdminService { ctx }
    }

    /// Every admin call's preamble and answer: runs `op` on the Raft
    /// instance in service and turns its result, or why it could not run
    /// (Raft down, not the leader, refused), into the response.
    async fn serve<F, Fut>(&self, op: F) -> Result<Response<proto::AdminResponse>, Status>
    where
        F: FnOnce(Running) -> Fut,
        Fut: Future<Output = Result<EventNum, Failure>>,
    {
        let running = match self.ctx.running() {
            Ok(r) => r,
            Err(why) => return Ok(Response::new(refusal(Kind::Unavailable(why)))),
        };
        let answer = match op(running.clone()).await {
            Ok(purge_point) => proto::AdminResponse {
                error: None,
                purge_point: purge_point.get(),
            },
            Err(Failure::Rejected(why)) => refusal(Kind::Rejected(why)),
            Err(Failure::Write(e)) => refusal(match e {
                RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                    Kind::NotLeader(hint(&self.ctx, Some(&running), f.leader_id))
                }
                RaftError::APIError(e) => Kind::Rejected(e.to_string()),
                RaftError::Fatal(f) => Kind::Unavailable(f.to_string()),
            }),
        };
        Ok(Response::new(answer))
    }
}

/// Why an admin call did not happen.
enum Failure {
    /// Refused before it reached Raft, or by the state machine.
    Rejected(String),
    /// Raft did not take the change (not the leader, stopped, refused).
    Write(RaftError<TypeConfig, ClientWriteError<TypeConfig>>),
}

impl From<RaftError<TypeConfig, ClientWriteError<TypeConfig>>> for Failure {
    fn from(e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> Self {
        Failure::Write(e)
    }
}

fn refusal(kind: Kind) -> proto::AdminResponse {
    proto::AdminResponse {
        error: Some(proto::AdminError { kind: Some(kind) }),
        purge_point: 0,
    }
}

#[tonic::async_trait]
impl admin_server::Admin for AdminService {
    async fn add_replica(
        &self,
        req: Request<proto::AddReplicaRequest>,
    ) -> Result<Response<proto::AdminResponse>, Status> {
        self.ctx.authz.allow(&req, Action::ChangeMembership)?;
        let req = req.into_inner();
        self.serve(|running| async move {
            let id = ReplicaId::new(req.id)
                .filter(|_| !req.addr.is_empty())
                .ok_or_else(|| {
                    Failure::Rejected("a replica needs a nonzero id and an address".into())
                })?;
            let id = NodeId::from(id);
            // As a learner first, so that it catches up before it counts
            // toward the quorum.
            let node = BasicNode { addr: req.addr };
            running.raft.add_learner(id, node, true).await?;
            let add = ChangeMembers::AddVoterIds([id].into_iter().collect());
            running.raft.change_membership(add, false).await?;
            Ok(EventNum::NONE)
        })
        .await
    }

    async fn remove_replica(
        &self,
        req: Request<proto::RemoveReplicaRequest>,
    ) -> Result<Response<proto::AdminResponse>, Status> {
        self.ctx.authz.allow(&req, Action::ChangeMembership)?;
        let id = req.get_ref().id;
        self.serve(|running| async move {
            let id = ReplicaId::new(id)
                .map(NodeId::from)
                .ok_or_else(|| Failure::Rejected("a replica needs a nonzero id".into()))?;
            let voters: Vec<NodeId> = running
                .raft
                .metrics()
                .borrow_watched()
                .membership_config
                .membership()
                .voter_ids()
                .collect();
            if voters == [id] {
                return Err(Failure::Rejected("cannot remove the last voter".into()));
            }
            let remove = ChangeMembers::RemoveVoters([id].into_iter().collect());
            running.raft.change_membership(remove, false).await?;
            Ok(EventNum::NONE)
        })
        .await
    }

    async fn set_watermark(
        &self,
        req: Request<proto::SetWatermarkRequest>,
    ) -> Result<Response<proto::AdminResponse>, Status> {
        let replica = req.get_ref().replica;
        self.ctx.authz.allow(&req, Action::SetWatermark(replica))?;
        let req = req.into_inner();
        self.serve(|running| async move {
            let cmd = Command::Watermark {
                replica: req.replica,
                event: EventNum(req.event),
            };
            match running.raft.client_write(cmd).await?.data {
                Outcome::Watermark { purge_point } => Ok(purge_point),
                Outcome::WatermarkAhead { last } => Err(Failure::Rejected(format!(
                    "watermark {} is beyond the last event stored, {last}",
                    req.event
                ))),
                other => Err(Failure::Rejected(format!("unexpected outcome {other}"))),
            }
        })
        .await
    }
}
