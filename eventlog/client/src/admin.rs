//! Admin calls, served by the leader's admin service: membership changes
//! and checkpoint watermarks.

use std::future::Future;
use std::net::SocketAddr;

use config::ReplicaId;

use crate::client::{AdminApi, Client};
use crate::error::ClientError;
use crate::leader::Attempt;
use crate::proto;
use crate::types::EventNum;

impl Client {
    /// Runs an admin call on the leader; on success, the purge point the
    /// leader answered with.
    async fn admin<F, Fut>(&self, mut call: F) -> Result<u64, ClientError>
    where
        F: FnMut(AdminApi) -> Fut,
        Fut: Future<Output = Result<tonic::Response<proto::AdminResponse>, tonic::Status>>,
    {
        self.on_leader(Client::admin_api, |api| {
            let fut = call(api);
            async move {
                let resp = fut.await?.into_inner();
                Ok(match resp.error.and_then(|e| e.kind) {
                    None => Attempt::Done(Ok(resp.purge_point)),
                    Some(proto::admin_error::Kind::NotLeader(h)) => Attempt::Redirect(h),
                    Some(proto::admin_error::Kind::Unavailable(why)) => Attempt::Retry(why),
                    Some(proto::admin_error::Kind::Rejected(why)) => {
                        Attempt::Done(Err(ClientError::Rejected(why)))
                    }
                })
            }
        })
        .await?
    }

    /// Adds a replica: it catches up as a learner, then becomes a voter.
    pub async fn add_replica(&self, id: ReplicaId, addr: SocketAddr) -> Result<(), ClientError> {
        let addr = addr.to_string();
        self.learn(id.get(), &addr);
        self.admin(move |mut api| {
            let req = proto::AddReplicaRequest {
                id: id.get(),
                addr: addr.clone(),
            };
            async move { api.add_replica(req).await }
        })
        .await
        .map(drop)
    }

    /// Removes a replica from the voters and the cluster.
    pub async fn remove_replica(&self, id: ReplicaId) -> Result<(), ClientError> {
        self.admin(move |mut api| {
            let req = proto::RemoveReplicaRequest { id: id.get() };
            async move { api.remove_replica(req).await }
        })
        .await
        .map(drop)
    }

    /// Records `replica`'s checkpoint watermark (docs/SPEC.md §5) and
    /// returns the purge point after it.
    pub async fn set_watermark(
        &self,
        replica: ReplicaId,
        event: EventNum,
    ) -> Result<EventNum, ClientError> {
        self.admin(move |mut api| {
            let req = proto::SetWatermarkRequest {
                replica: replica.get(),
                event: event.get(),
            };
            async move { api.set_watermark(req).await }
        })
        .await
        .map(EventNum)
    }
}
