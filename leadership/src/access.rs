//! etcd's own access control for a cluster's keys: a user per identity
//! (etcd takes it from the client certificate's name) and a role per kind
//! of identity, each allowed only what its job needs (docs/SPEC.md §6.5):
//!
//! | role | may |
//! |---|---|
//! | `<cluster>-replica` | read and write the leader key (campaign, resign; event log nodes read it to check fences) |
//! | `<cluster>-edge` | read and write the gatekeeper key; read the leader key |
//! | `<cluster>-admin` | read every key of the cluster (`seguro status` from anywhere) |
//!
//! [`grant`] sets them up, and turns etcd's authentication on; it is
//! idempotent, so an operator runs it after adding a replica too.

use config::{Identity, ReplicaId, Role};
use etcd_client::{Client, ConnectOptions, Permission, UserAddOptions};

use crate::election::{ElectionError, GATEKEEPER_KEY, LEADER_KEY};

/// etcd's user that may change users and roles.
pub const ROOT: &str = "root";

/// One role's name and the permissions it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleGrant {
    pub name: String,
    /// Key (or prefix, ending in `/`) and whether writes are allowed.
    pub keys: Vec<(String, bool)>,
}

/// What [`grant`] sets up for a cluster whose keys live under `root`
/// (`<etcd.prefix>/<cluster>`): the roles, and which user holds which.
pub fn plan(
    cluster: &str,
    root: &str,
    replicas: &[ReplicaId],
) -> (Vec<RoleGrant>, Vec<(String, String)>) {
    let leader = format!("{root}/{LEADER_KEY}");
    let gatekeeper = format!("{root}/{GATEKEEPER_KEY}");
    let role = |kind: &str| format!("{cluster}-{kind}");
    let roles = vec![
        RoleGrant {
            name: role("replica"),
            keys: vec![(leader.clone(), true)],
        },
        RoleGrant {
            name: role("edge"),
            keys: vec![(gatekeeper, true), (leader, false)],
        },
        RoleGrant {
            name: role("admin"),
            keys: vec![(format!("{root}/"), false)],
        },
    ];
    let user = |r| Identity::new(cluster, r).dns_name();
    let mut users: Vec<(String, String)> = replicas
        .iter()
        .map(|id| (user(Role::Replica(*id)), role("replica")))
        .collect();
    users.push((user(Role::Edge), role("edge")));
    users.push((user(Role::Admin), role("admin")));
    (roles, users)
}

/// Sets up the [`plan`]'s roles and users in etcd through `client`, which
/// must be allowed to (etcd's root, or any client while authentication is
/// off), creates the root user with `root_password` if it is missing, and
/// enables authentication. Running it again changes nothing.
pub async fn grant(
    client: &mut Client,
    cluster: &str,
    root: &str,
    replicas: &[ReplicaId],
    root_password: &str,
) -> Result<(), ElectionError> {
    let (roles, users) = plan(cluster, root, replicas);
    for r in &roles {
        if client.role_get(r.name.as_str()).await.is_err() {
            client.role_add(r.name.as_str()).await?;
        }
        for (key, write) in &r.keys {
            let perm = if *write {
                Permission::read_write(key.as_str())
            } else {
                Permission::read(key.as_str())
            };
            let perm = if key.ends_with('/') {
                perm.with_prefix()
            } else {
                perm
            };
            client.role_grant_permission(r.name.as_str(), perm).await?;
        }
    }
    for (user, role) in users.iter().chain(&[(ROOT.to_owned(), ROOT.to_owned())]) {
        if client.user_get(user.as_str()).await.is_err() {
            let options = (user != ROOT).then(|| UserAddOptions::new().with_no_pwd());
            let password = if user == ROOT { root_password } else { "" };
            client.user_add(user.as_str(), password, options).await?;
        }
        client.user_grant_role(user.as_str(), role.as_str()).await?;
    }
    client.auth_enable().await?;
    Ok(())
}

/// Connect options that authenticate as etcd's root (for [`grant`] once
/// authentication is on).
pub fn as_root(password: &str) -> ConnectOptions {
    ConnectOptions::new().with_user(ROOT, password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_identity_gets_its_own_roles_keys_only() {
        let ids: Vec<ReplicaId> = (1..=3).filter_map(ReplicaId::new).collect();
        let (roles, users) = plan("c", "/seguro/c", &ids);
        let keys = |name: &str| {
            roles
                .iter()
                .find(|r| r.name == name)
                .map(|r| r.keys.clone())
                .unwrap()
        };
        assert_eq!(keys("c-replica"), [("/seguro/c/leader".to_owned(), true)]);
        assert_eq!(
            keys("c-edge"),
            [
                ("/seguro/c/gatekeeper".to_owned(), true),
                ("/seguro/c/leader".to_owned(), false)
            ]
        );
        assert_eq!(keys("c-admin"), [("/seguro/c/".to_owned(), false)]);
        assert!(users.contains(&("replica-2.c.seguro".to_owned(), "c-replica".to_owned())));
        assert!(users.contains(&("edge.c.seguro".to_owned(), "c-edge".to_owned())));
        assert!(users.contains(&("admin.c.seguro".to_owned(), "c-admin".to_owned())));
        assert_eq!(users.len(), 5);
    }
}
