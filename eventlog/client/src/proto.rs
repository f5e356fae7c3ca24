//! The generated gRPC code (proto/eventlog.proto) and conversions between
//! its messages and the crate's types.

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("seguro.eventlog.v1");

use config::ReplicaId;

use crate::error::AppendError as Err;
use crate::types::{Epoch, EventNum};

impl From<crate::Role> for Role {
    fn from(r: crate::Role) -> Self {
        match r {
            crate::Role::Leader => Role::Leader,
            crate::Role::Follower => Role::Follower,
            crate::Role::Candidate => Role::Candidate,
            crate::Role::Learner => Role::Learner,
            crate::Role::Shutdown => Role::Shutdown,
            crate::Role::Down => Role::Down,
        }
    }
}

impl crate::Role {
    /// `None` for a role this version does not know.
    pub(crate) fn from_proto(r: Role) -> Option<Self> {
        Some(match r {
            Role::Unspecified => return None,
            Role::Leader => crate::Role::Leader,
            Role::Follower => crate::Role::Follower,
            Role::Candidate => crate::Role::Candidate,
            Role::Learner => crate::Role::Learner,
            Role::Shutdown => crate::Role::Shutdown,
            Role::Down => crate::Role::Down,
        })
    }
}

impl From<&Err> for AppendError {
    fn from(e: &Err) -> Self {
        use append_error::Kind;
        let kind = match e {
            Err::StaleEpoch { highest } => Kind::StaleEpoch(highest.get()),
            Err::EpochReused { epoch, holder, by } => Kind::EpochReused(EpochReused {
                epoch: epoch.get(),
                holder: holder.get(),
                by: by.get(),
            }),
            Err::EpochRegressed { etcd, log } => Kind::EpochRegressed(EpochRegressed {
                etcd: etcd.get(),
                log: log.get(),
            }),
            Err::Gap { expected } => Kind::Gap(expected.get()),
            Err::Duplicate { last } => Kind::Duplicate(last.get()),
            Err::EventTooLarge { event, size, limit } => Kind::TooLarge(TooLarge {
                event: event.get(),
                size: *size,
                limit: *limit,
                batch: false,
            }),
            Err::BatchTooLarge { first, size, limit } => Kind::TooLarge(TooLarge {
                event: first.get(),
                size: *size,
                limit: *limit,
                batch: true,
            }),
            Err::OutOfOrder { .. } | Err::Invalid(_) | Err::Refused(_) => {
                Kind::Invalid(e.to_string())
            }
            Err::Unavailable(why) => Kind::Unavailable(why.clone()),
            Err::Timeout(_) => Kind::Unavailable(e.to_string()),
        };
        AppendError { kind: Some(kind) }
    }
}

/// What an `AppendError` message says: a typed error, or that the leader is
/// elsewhere.
pub(crate) enum AppendVerdict {
    Error(Err),
    NotLeader(LeaderHint),
}

impl From<AppendError> for AppendVerdict {
    fn from(e: AppendError) -> Self {
        use append_error::Kind;
        let err = match e.kind {
            Some(Kind::StaleEpoch(h)) => Err::StaleEpoch { highest: Epoch(h) },
            Some(Kind::EpochReused(r)) => match (ReplicaId::new(r.holder), ReplicaId::new(r.by)) {
                (Some(holder), Some(by)) => Err::EpochReused {
                    epoch: Epoch(r.epoch),
                    holder,
                    by,
                },
                _ => Err::Invalid(format!(
                    "the server said epoch {} was reused, naming replica 0",
                    r.epoch
                )),
            },
            Some(Kind::EpochRegressed(r)) => Err::EpochRegressed {
                etcd: Epoch(r.etcd),
                log: Epoch(r.log),
            },
            Some(Kind::Gap(x)) => Err::Gap {
                expected: EventNum(x),
            },
            Some(Kind::Duplicate(l)) => Err::Duplicate { last: EventNum(l) },
            Some(Kind::TooLarge(t)) if t.batch => Err::BatchTooLarge {
                first: EventNum(t.event),
                size: t.size,
                limit: t.limit,
            },
            Some(Kind::TooLarge(t)) => Err::EventTooLarge {
                event: EventNum(t.event),
                size: t.size,
                limit: t.limit,
            },
            Some(Kind::NotLeader(h)) => return AppendVerdict::NotLeader(h),
            Some(Kind::Unavailable(why)) => Err::Unavailable(why),
            Some(Kind::Invalid(why)) => Err::Invalid(why),
            None => Err::Invalid("the server sent an empty error".into()),
        };
        AppendVerdict::Error(err)
    }
}

impl From<crate::types::CommitState> for CommitState {
    fn from(s: crate::types::CommitState) -> Self {
        CommitState {
            committed: s.committed.get(),
            epoch: s.epoch.get(),
            leader_durable: s.leader_durable.get(),
            all_durable: s.all_durable.get(),
        }
    }
}

impl From<CommitState> for crate::types::CommitState {
    fn from(s: CommitState) -> Self {
        crate::types::CommitState {
            committed: EventNum(s.committed),
            epoch: Epoch(s.epoch),
            leader_durable: EventNum(s.leader_durable),
            all_durable: EventNum(s.all_durable),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(e: Err) -> Err {
        match AppendVerdict::from(AppendError::from(&e)) {
            AppendVerdict::Error(back) => back,
            AppendVerdict::NotLeader(h) => panic!("{e} came back as not-leader {h:?}"),
        }
    }

    #[test]
    fn the_fences_verdicts_cross_the_wire_typed() {
        let r = |n| ReplicaId::new(n).unwrap();
        for e in [
            Err::StaleEpoch { highest: Epoch(9) },
            Err::EpochReused {
                epoch: Epoch(9),
                holder: r(1),
                by: r(2),
            },
            Err::EpochRegressed {
                etcd: Epoch(4),
                log: Epoch(9),
            },
            Err::Gap {
                expected: EventNum(3),
            },
            Err::Duplicate { last: EventNum(3) },
        ] {
            assert_eq!(round_trip(e.clone()), e);
            assert!(e.is_rejection(), "{e}");
        }
        let zero = AppendError {
            kind: Some(append_error::Kind::EpochReused(EpochReused {
                epoch: 9,
                holder: 0,
                by: 2,
            })),
        };
        assert!(matches!(
            AppendVerdict::from(zero),
            AppendVerdict::Error(Err::Invalid(_))
        ));
    }

    #[test]
    fn an_epoch_regression_says_what_happened_and_where_recovery_is() {
        let msg = Err::EpochRegressed {
            etcd: Epoch(4),
            log: Epoch(9),
        }
        .to_string();
        for part in ["etcd", "older snapshot", "docs/DEPLOY.md", "4", "9"] {
            assert!(msg.contains(part), "{msg}");
        }
    }
}
