//! `seguro etcd grant` against a real etcd run as an operator runs it (TLS,
//! client certificates): the first run creates the roles and users and
//! turns authentication on, each identity may then touch only its own keys,
//! and a later run (after adding a replica) logs in as root and grants the
//! new replica its role.

use std::os::unix::fs::PermissionsExt as _;

use config::{ReplicaId, Role};
use testkit::{Etcd, Lab};

fn rid(i: u32) -> ReplicaId {
    ReplicaId::new(i).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_gives_each_identity_its_own_keys_only() {
    let mut lab = Lab::new(env!("CARGO_BIN_EXE_seguro"), "grant", 3).unwrap();
    let etcd = tokio::task::block_in_place(|| Etcd::start_tls_open(lab.pki())).unwrap();
    lab.file_mut().etcd.endpoints = vec![etcd.endpoint()];
    let config = lab.write_config().unwrap();
    let config = config.to_str().unwrap();
    let password = lab.dir().join("etcd-root.password");
    let grant = |lab: &Lab| {
        lab.run_seguro(&[
            "etcd",
            "grant",
            "-c",
            config,
            "--root-password-file",
            password.to_str().unwrap(),
        ])
        .unwrap()
    };

    // A short password is bad usage, and nothing changes.
    std::fs::write(&password, "short\n").unwrap();
    let out = tokio::task::block_in_place(|| grant(&lab));
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("at least 16 characters"),
        "{out:?}"
    );
    let mut as_edge = etcd.client(lab.pki(), Role::Edge).await.unwrap();
    as_edge
        .put("/seguro/grant/leader", "open", None)
        .await
        .expect("without authentication, anyone of the CA may write");

    std::fs::write(&password, "a-root-password-for-tests\n").unwrap();
    std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = tokio::task::block_in_place(|| grant(&lab));
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("user replica-2.grant.seguro: role grant-replica"),
        "{said}"
    );
    assert!(said.contains("etcd's authentication is on"), "{said}");

    let denied = |e: etcd_client::Error| {
        assert!(e.to_string().contains("permission denied"), "{e}");
    };
    let mut as_edge = etcd.client(lab.pki(), Role::Edge).await.unwrap();
    denied(
        as_edge
            .put("/seguro/grant/leader", "2", None)
            .await
            .unwrap_err(),
    );
    as_edge
        .put("/seguro/grant/gatekeeper", "edge", None)
        .await
        .expect("the edge box writes its own key");
    let mut as_replica = etcd.client(lab.pki(), Role::Replica(rid(1))).await.unwrap();
    as_replica
        .put("/seguro/grant/leader", "1", None)
        .await
        .expect("a replica writes the leader key");
    denied(
        as_replica
            .get("/seguro/grant/gatekeeper", None)
            .await
            .unwrap_err(),
    );
    denied(
        as_replica
            .put("/seguro/other/leader", "1", None)
            .await
            .unwrap_err(),
    );
    let mut as_admin = etcd.client(lab.pki(), Role::Admin).await.unwrap();
    let all = as_admin
        .get(
            "/seguro/grant/",
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .expect("the admin reads every key");
    assert_eq!(all.kvs().len(), 2);
    denied(
        as_admin
            .put("/seguro/grant/leader", "9", None)
            .await
            .unwrap_err(),
    );

    // A fourth replica: it has no user until the operator grants again,
    // now as etcd's root.
    lab.add_replica(4).unwrap();
    let config4 = lab.write_config().unwrap();
    assert_eq!(config4.to_str().unwrap(), config);
    let four = etcd.client(lab.pki(), Role::Replica(rid(4))).await;
    let refused = match four {
        Err(e) => e.to_string(),
        Ok(mut c) => c
            .put("/seguro/grant/leader", "4", None)
            .await
            .unwrap_err()
            .to_string(),
    };
    assert!(
        refused.contains("user name not found") || refused.contains("permission denied"),
        "{refused}"
    );
    let out = tokio::task::block_in_place(|| grant(&lab));
    assert!(out.status.success(), "{out:?}");
    let mut four = etcd.client(lab.pki(), Role::Replica(rid(4))).await.unwrap();
    four.put("/seguro/grant/leader", "4", None)
        .await
        .expect("the new replica may campaign");

    // A wrong root password is refused, and says so.
    std::fs::write(&password, "not-the-root-password-at-all\n").unwrap();
    let out = tokio::task::block_in_place(|| grant(&lab));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot set up etcd's access control"),
        "{out:?}"
    );
}
