//! Who may do what on an event log node. Every connection already proved an
//! identity of this cluster (mutual TLS, `trust::server`); each request is
//! then allowed by the role of that identity (docs/SPEC.md §6.5):
//!
//! | request | who |
//! |---|---|
//! | Raft (vote, append entries, snapshots...) | any replica's node; then, in `service::raft`, only a member, in its own name |
//! | append, fence at or above the log's highest epoch | the replica that holds the epoch in etcd |
//! | append, fence below it (the fence refuses them anyway) | any replica |
//! | read | any replica |
//! | commit watch | any replica, the edge box |
//! | status | anyone of the cluster |
//! | set watermark | a replica, for itself; the admin |
//! | add or remove a replica | the admin |
//!
//! Every refusal is counted by reason and logged with the peer's identity.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use config::{ReplicaId, Role};
use eventlog_client::AppendError;
use tonic::Status;
use trust::Peer;

use crate::metrics as m;
use crate::types::Epoch;

/// Which replica holds an epoch now: the leader key in etcd, whose creation
/// revision is the epoch and whose value is the replica. Only the holder
/// may fence the log at its epoch and append in it, so no replica can fence
/// at an epoch etcd never gave it (a huge one, say, that would refuse every
/// later leader).
pub trait Epochs: Send + Sync + 'static {
    /// The replica whose leader key has creation revision `epoch`, if that
    /// key exists now; an error if etcd cannot say.
    fn holder(
        &self,
        epoch: Epoch,
    ) -> Pin<Box<dyn Future<Output = Result<Option<ReplicaId>, String>> + Send + '_>>;
}

/// The epochs held by the leader key of `election`'s cluster.
pub struct EtcdEpochs {
    pub election: leadership::Election,
    /// How long one look at etcd may take.
    pub limit: std::time::Duration,
}

impl Epochs for EtcdEpochs {
    fn holder(
        &self,
        epoch: Epoch,
    ) -> Pin<Box<dyn Future<Output = Result<Option<ReplicaId>, String>> + Send + '_>> {
        Box::pin(async move {
            let term = self
                .election
                .current(self.limit)
                .await
                .map_err(|e| e.to_string())?;
            Ok(term.filter(|t| t.epoch == epoch).map(|t| t.leader))
        })
    }
}

/// What a request asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Raft,
    /// Append or fence at an epoch at or above the log's highest.
    Write(Epoch),
    /// Append or fence at an epoch below the log's highest: the fence
    /// refuses it, and says so (`StaleEpoch`) to a leader that lost its term.
    WriteStale,
    Read,
    WatchCommits,
    Status,
    SetWatermark(u32),
    ChangeMembership,
}

/// Why a request was refused (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Denied {
    /// It carries no identity (it did not come over the TLS listener).
    Unauthenticated,
    /// Its identity's role may not make this request.
    NotAllowed,
    /// A replica asked to set another replica's watermark.
    OtherReplica,
    /// A replica wrote at an epoch etcd does not say it holds.
    NotEpochHolder,
    /// etcd could not say who holds the epoch: refused, to be retried.
    EpochUnverified,
    /// A replica's node that is not a member of the Raft cluster (removed,
    /// or never added) sent Raft traffic.
    NotMember,
    /// A node's Raft message spoke for another node (a vote, a leader's
    /// append or snapshot in another node's name).
    Impersonation,
}

impl Denied {
    pub(crate) const ALL: [Denied; 7] = [
        Denied::Unauthenticated,
        Denied::NotAllowed,
        Denied::OtherReplica,
        Denied::NotEpochHolder,
        Denied::EpochUnverified,
        Denied::NotMember,
        Denied::Impersonation,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Denied::Unauthenticated => "unauthenticated",
            Denied::NotAllowed => "not_allowed",
            Denied::OtherReplica => "other_replica",
            Denied::NotEpochHolder => "not_epoch_holder",
            Denied::EpochUnverified => "epoch_unverified",
            Denied::NotMember => "not_a_member",
            Denied::Impersonation => "impersonation",
        }
    }
}

/// The node's authorisation: the rules above, and the epochs it has seen
/// held (a leader's appends do not each ask etcd).
#[derive(Clone)]
pub(crate) struct Authz {
    epochs: Arc<dyn Epochs>,
    held: Arc<Mutex<HashSet<(ReplicaId, Epoch)>>>,
    /// When this node last handed the Raft leadership over for want of
    /// etcd.
    handed_over: Arc<Mutex<Option<std::time::Instant>>>,
}

/// How often a node without etcd hands the Raft leadership over: long
/// enough for the new leader to be elected and asked.
const HAND_OVER_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

impl Authz {
    pub(crate) fn new(epochs: Arc<dyn Epochs>) -> Authz {
        Authz {
            epochs,
            held: Arc::default(),
            handed_over: Arc::default(),
        }
    }

    /// Whether it is time to hand the Raft leadership over again (and, if
    /// so, notes that it is being done now).
    pub(crate) fn may_hand_over(&self) -> bool {
        let mut last = self.handed_over.lock().unwrap();
        let now = std::time::Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < HAND_OVER_EVERY) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// The decision for `peer` doing `action`; a write's epoch may need a
    /// look at etcd. [`refuse_unless`] turns it into an answer.
    pub(crate) async fn judge(&self, peer: Option<&Peer>, action: Action) -> Result<(), Denied> {
        match (peer, action) {
            (Some(p), Action::Write(epoch)) => match p.identity.role {
                Role::Replica(me) => self.holds(me, epoch).await,
                _ => Err(Denied::NotAllowed),
            },
            _ => decide(peer, action),
        }
    }

    /// Allows `request` to do `action`, or refuses it: counted, logged, and
    /// answered with `PermissionDenied` (or `Unauthenticated`). For what
    /// needs no look at etcd (everything but writes, which go through
    /// [`Authz::judge`]); synchronous, so interceptors can call it too.
    pub(crate) fn allow<T>(
        &self,
        request: &tonic::Request<T>,
        action: Action,
    ) -> Result<(), Status> {
        let peer = trust::peer_of(request);
        let decided = match action {
            Action::Write(_) => Err(Denied::NotAllowed),
            _ => decide(peer.as_ref(), action),
        };
        refuse_unless(peer.as_ref(), action, decided)
    }

    /// Why `replica`'s fence at `epoch`, below the log's `highest`, was
    /// refused. Normally it is a leader that was deposed (`StaleEpoch`).
    /// But if etcd says `replica` holds `epoch` now, etcd's history went
    /// back: the log applied `highest` only once etcd had said its holder
    /// held it, and etcd's revisions only grow, so a leader key created at
    /// a lower revision cannot be current unless etcd was restored from an
    /// older snapshot or replaced. Logged at error level and counted: until
    /// etcd's revisions pass `highest` no leader can write.
    pub(crate) async fn stale(
        &self,
        replica: ReplicaId,
        epoch: Epoch,
        highest: Epoch,
    ) -> AppendError {
        match self.epochs.holder(epoch).await {
            Ok(Some(holder)) if holder == replica && epoch < highest => {
                let err = AppendError::EpochRegressed {
                    etcd: epoch,
                    log: highest,
                };
                tracing::error!(%replica, "{err}");
                m::epoch_regressed();
                err
            }
            _ => AppendError::StaleEpoch { highest },
        }
    }

    /// Whether `replica` holds `epoch`: remembered once etcd said so.
    async fn holds(&self, replica: ReplicaId, epoch: Epoch) -> Result<(), Denied> {
        if self.held.lock().unwrap().contains(&(replica, epoch)) {
            return Ok(());
        }
        match self.epochs.holder(epoch).await {
            Ok(Some(holder)) if holder == replica => {
                let mut held = self.held.lock().unwrap();
                // Old terms' entries are of no use: keep the set small.
                held.retain(|(_, e)| *e >= epoch);
                held.insert((replica, epoch));
                Ok(())
            }
            Ok(_) => Err(Denied::NotEpochHolder),
            Err(why) => {
                tracing::warn!("cannot ask etcd who holds epoch {epoch}: {why}");
                Err(Denied::EpochUnverified)
            }
        }
    }
}

/// The rules, for everything but a write's epoch (see [`Authz::holds`]).
fn decide(peer: Option<&Peer>, action: Action) -> Result<(), Denied> {
    let role = peer.ok_or(Denied::Unauthenticated)?.identity.role;
    match (role, action) {
        (
            Role::Replica(_),
            Action::Raft
            | Action::Read
            | Action::WatchCommits
            | Action::Status
            | Action::WriteStale,
        ) => Ok(()),
        (Role::Edge, Action::WatchCommits | Action::Status) => Ok(()),
        (Role::Admin, Action::Status | Action::SetWatermark(_) | Action::ChangeMembership) => {
            Ok(())
        }
        (Role::Replica(me), Action::SetWatermark(of)) if of == me.get() => Ok(()),
        (Role::Replica(_), Action::SetWatermark(_)) => Err(Denied::OtherReplica),
        _ => Err(Denied::NotAllowed),
    }
}

/// Nothing, if `decided` allows `peer`; else the refusal, counted and
/// logged with the peer's identity, and answered with `PermissionDenied`
/// (or `Unauthenticated`, or `Unavailable` while etcd cannot be asked).
pub(crate) fn refuse_unless(
    peer: Option<&Peer>,
    action: Action,
    decided: Result<(), Denied>,
) -> Result<(), Status> {
    let denied = match (decided, peer) {
        (Ok(()), Some(_)) => return Ok(()),
        (Ok(()), None) => Denied::Unauthenticated,
        (Err(denied), _) => denied,
    };
    let who = peer.map_or_else(|| "an unidentified peer".to_string(), |p| p.to_string());
    tracing::warn!(peer = %who, reason = denied.label(), "refused {action:?}");
    m::refused(denied.label());
    Err(match denied {
        Denied::Unauthenticated => {
            Status::unauthenticated("no client certificate naming an identity")
        }
        Denied::EpochUnverified => Status::unavailable("cannot ask etcd who holds the epoch"),
        _ => Status::permission_denied(format!("{who} may not {action:?} ({})", denied.label())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use config::Identity;

    /// etcd, as a map from epoch to holder.
    struct Fixed(Option<(Epoch, ReplicaId)>);

    impl Epochs for Fixed {
        fn holder(
            &self,
            epoch: Epoch,
        ) -> Pin<Box<dyn Future<Output = Result<Option<ReplicaId>, String>> + Send + '_>> {
            let held = self.0.filter(|(e, _)| *e == epoch).map(|(_, r)| r);
            Box::pin(async move { Ok(held) })
        }
    }

    struct Down;

    impl Epochs for Down {
        fn holder(
            &self,
            _: Epoch,
        ) -> Pin<Box<dyn Future<Output = Result<Option<ReplicaId>, String>> + Send + '_>> {
            Box::pin(async { Err("etcd is down".into()) })
        }
    }

    fn peer(role: Role) -> Peer {
        Peer {
            identity: Identity::new("c", role),
            addr: None,
        }
    }

    fn replica(id: u32) -> Role {
        Role::Replica(ReplicaId::new(id).unwrap())
    }

    #[tokio::test]
    async fn each_role_may_do_its_own_job_only() {
        let authz = Authz::new(Arc::new(Fixed(Some((
            Epoch(7),
            ReplicaId::new(1).unwrap(),
        )))));
        let decide = |role, action| {
            let authz = authz.clone();
            async move { authz.judge(Some(&peer(role)), action).await }
        };
        use Action::*;
        for action in [Raft, Read, WatchCommits, Status] {
            assert_eq!(decide(replica(2), action).await, Ok(()), "{action:?}");
        }
        assert_eq!(decide(Role::Edge, WatchCommits).await, Ok(()));
        assert_eq!(decide(Role::Edge, Status).await, Ok(()));
        for action in [
            Raft,
            Read,
            Write(Epoch(7)),
            SetWatermark(1),
            ChangeMembership,
        ] {
            assert_eq!(
                decide(Role::Edge, action).await,
                Err(Denied::NotAllowed),
                "{action:?}"
            );
        }
        assert_eq!(decide(Role::Admin, ChangeMembership).await, Ok(()));
        assert_eq!(decide(Role::Admin, SetWatermark(2)).await, Ok(()));
        for action in [Raft, Read, Write(Epoch(7))] {
            assert_eq!(
                decide(Role::Admin, action).await,
                Err(Denied::NotAllowed),
                "{action:?}"
            );
        }
        assert_eq!(
            decide(replica(2), ChangeMembership).await,
            Err(Denied::NotAllowed)
        );
        assert_eq!(decide(Role::Etcd, Status).await, Err(Denied::NotAllowed));
        assert_eq!(decide(replica(2), SetWatermark(2)).await, Ok(()));
        assert_eq!(
            decide(replica(2), SetWatermark(3)).await,
            Err(Denied::OtherReplica)
        );
        assert_eq!(
            authz.judge(None, Status).await,
            Err(Denied::Unauthenticated)
        );
    }

    #[tokio::test]
    async fn only_the_epochs_holder_writes_at_it() {
        let authz = Authz::new(Arc::new(Fixed(Some((
            Epoch(7),
            ReplicaId::new(1).unwrap(),
        )))));
        let write = |id, epoch| {
            let authz = authz.clone();
            async move {
                authz
                    .judge(Some(&peer(replica(id))), Action::Write(Epoch(epoch)))
                    .await
            }
        };
        assert_eq!(write(1, 7).await, Ok(()));
        assert_eq!(write(2, 7).await, Err(Denied::NotEpochHolder));
        // A huge epoch nobody holds.
        assert_eq!(write(1, u64::MAX).await, Err(Denied::NotEpochHolder));
        assert_eq!(write(1, 6).await, Err(Denied::NotEpochHolder));

        let blind = Authz::new(Arc::new(Down));
        let r = blind
            .judge(Some(&peer(replica(1))), Action::Write(Epoch(7)))
            .await;
        assert_eq!(r, Err(Denied::EpochUnverified));
    }

    #[tokio::test]
    async fn a_holder_seen_once_is_remembered() {
        struct Once(std::sync::atomic::AtomicUsize);
        impl Epochs for Once {
            fn holder(
                &self,
                _: Epoch,
            ) -> Pin<Box<dyn Future<Output = Result<Option<ReplicaId>, String>> + Send + '_>>
            {
                let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Box::pin(async move {
                    if n == 0 {
                        Ok(ReplicaId::new(1))
                    } else {
                        Err("asked twice".into())
                    }
                })
            }
        }
        let authz = Authz::new(Arc::new(Once(0.into())));
        let me = peer(replica(1));
        for _ in 0..3 {
            assert_eq!(
                authz.judge(Some(&me), Action::Write(Epoch(9))).await,
                Ok(())
            );
        }
    }

    #[tokio::test]
    async fn a_fence_below_the_log_by_the_replica_etcd_says_holds_it_is_a_regression() {
        let r1 = ReplicaId::new(1).unwrap();
        let r2 = ReplicaId::new(2).unwrap();
        // etcd, restored from an older snapshot, gave epoch 4 to replica 1;
        // the log has applied epoch 9.
        let authz = Authz::new(Arc::new(Fixed(Some((Epoch(4), r1)))));
        assert_eq!(
            authz.stale(r1, Epoch(4), Epoch(9)).await,
            AppendError::EpochRegressed {
                etcd: Epoch(4),
                log: Epoch(9)
            }
        );
        // A deposed leader: etcd does not say it holds its old epoch.
        assert_eq!(
            authz.stale(r2, Epoch(3), Epoch(9)).await,
            AppendError::StaleEpoch { highest: Epoch(9) }
        );
        assert_eq!(
            authz.stale(r2, Epoch(4), Epoch(9)).await,
            AppendError::StaleEpoch { highest: Epoch(9) }
        );
        // etcd cannot say: nothing is claimed.
        let blind = Authz::new(Arc::new(Down));
        assert_eq!(
            blind.stale(r1, Epoch(4), Epoch(9)).await,
            AppendError::StaleEpoch { highest: Epoch(9) }
        );
    }

    #[test]
    fn a_node_without_etcd_hands_over_at_most_every_few_seconds() {
        let authz = Authz::new(Arc::new(Fixed(None)));
        assert!(authz.may_hand_over());
        assert!(!authz.may_hand_over(), "not again at once");
        *authz.handed_over.lock().unwrap() = Some(std::time::Instant::now() - HAND_OVER_EVERY);
        assert!(authz.may_hand_over(), "again once the pause is over");
    }
}
