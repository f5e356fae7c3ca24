//! `seguro certs`: the CA and every role's certificate made for a config are
//! private, never overwritten and loadable as the daemons load them, and
//! `config check` passes with them; a certificate that is missing, expired,
//! from another CA or for another role fails `config check` at the value
//! that named it.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

use config::{Identity, Role};
use predicates::prelude::*;
use trust::issue::{Authority, CA_VALIDITY, LEAF_VALIDITY, Validity};

use crate::config_check::{Fixture, VALID, at, check_fails, check_fails_with, seguro};

/// A directory with the fixture's config and key files, and no certificate.
fn config_without_certificates() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for name in ["replica-1", "replica-2", "replica-3"] {
        seguro()
            .arg("keygen")
            .arg(dir.path().join("keys").join(format!("{name}.key")))
            .assert()
            .success();
    }
    let path = dir.path().join("seguro.toml");
    std::fs::write(&path, VALID).unwrap();
    (dir, path)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_ca_and_every_role_s_certificate_make_the_config_check() {
    let (dir, config) = config_without_certificates();
    let tls = dir.path().join("tls");
    // Nothing issued yet: `config check` says how to start.
    let err = check_fails(&config);
    assert!(err.contains("seguro certs ca -c"), "{err}");

    seguro()
        .args(["certs", "ca", "-c"])
        .arg(&config)
        .assert()
        .success()
        .stdout(predicate::str::contains("keep it on this machine only"));
    seguro()
        .args(["certs", "issue", "-c"])
        .arg(&config)
        .arg("all")
        .assert()
        .success()
        .stdout(predicate::str::contains("for replica-2.test.seguro"));

    let ca = tls.join("ca.crt");
    assert_eq!(mode(&ca), 0o600);
    assert_eq!(mode(&tls.join("ca.key")), 0o600);
    let replica = |id| Role::Replica(config::ReplicaId::new(id).unwrap());
    for role in [
        replica(1),
        replica(2),
        replica(3),
        Role::Edge,
        Role::Admin,
        Role::Etcd,
    ] {
        let files = trust::Files {
            ca: ca.clone(),
            cert: tls.join(format!("{role}.crt")),
            key: tls.join(format!("{role}.key")),
        };
        assert_eq!(mode(&files.cert), 0o600, "{role}");
        assert_eq!(mode(&files.key), 0o600, "{role}");
        trust::Credentials::load(Identity::new("test", role), files)
            .unwrap_or_else(|e| panic!("{role}: {e}"));
    }
    seguro()
        .args(["config", "check"])
        .arg(&config)
        .assert()
        .success();

    // Nothing is ever overwritten.
    let before = std::fs::read(&ca).unwrap();
    seguro()
        .args(["certs", "ca", "-c"])
        .arg(&config)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "{} exists: it is never overwritten",
            ca.display()
        )));
    assert_eq!(std::fs::read(&ca).unwrap(), before);
    let edge = std::fs::read(tls.join("edge.crt")).unwrap();
    seguro()
        .args(["certs", "issue", "-c"])
        .arg(&config)
        .arg("edge")
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "edge: {} exists",
            tls.join("edge.crt").display()
        )));
    assert_eq!(std::fs::read(tls.join("edge.crt")).unwrap(), edge);
    // A role whose key is still there gets nothing; the others are issued.
    std::fs::remove_file(tls.join("replica-2.crt")).unwrap();
    std::fs::remove_file(tls.join("admin.crt")).unwrap();
    std::fs::remove_file(tls.join("admin.key")).unwrap();
    seguro()
        .args(["certs", "issue", "-c"])
        .arg(&config)
        .args(["replica-2", "admin"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "replica-2: {} exists",
            tls.join("replica-2.key").display()
        )))
        .stderr(predicate::str::contains("1 role not issued"));
    assert!(!tls.join("replica-2.crt").exists());
    assert!(tls.join("admin.crt").exists() && tls.join("admin.key").exists());

    // A replica the config does not have is bad usage, and writes nothing.
    seguro()
        .args(["certs", "issue", "-c"])
        .arg(&config)
        .args(["replica-7"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("replica 7 is not in"));

    seguro()
        .args(["certs", "show"])
        .arg(tls.join("edge.crt"))
        .assert()
        .success()
        .stdout(predicate::str::contains("identity:   edge.test.seguro"))
        .stdout(predicate::str::contains(
            "issuer:     CN=Seguro CA for test",
        ))
        .stdout(predicate::str::contains("expires:    in 36"));
    seguro()
        .args(["certs", "show", "--expires-within", "400"])
        .arg(tls.join("edge.crt"))
        .assert()
        .code(1);
}

#[test]
fn a_new_ca_in_the_bundle_issues_by_its_key() {
    let (dir, config) = config_without_certificates();
    let tls = dir.path().join("tls");
    let issue = |role: &str, ca_key: &Path| {
        seguro()
            .args(["certs", "issue", "-c"])
            .arg(&config)
            .arg(role)
            .arg("--ca-key")
            .arg(ca_key)
            .assert()
    };
    seguro()
        .args(["certs", "ca", "-c"])
        .arg(&config)
        .assert()
        .success();
    seguro()
        .args(["certs", "ca", "-c"])
        .arg(&config)
        .arg("--dir")
        .arg(tls.join("next"))
        .assert()
        .success();
    // Not in the bundle yet: refused rather than issuing what no part trusts.
    issue("edge", &tls.join("next/ca.key"))
        .code(1)
        .stderr(predicate::str::contains("is the CA whose key is"));
    let mut bundle = std::fs::read_to_string(tls.join("ca.crt")).unwrap();
    bundle.push_str(&std::fs::read_to_string(tls.join("next/ca.crt")).unwrap());
    std::fs::write(tls.join("ca.crt"), bundle).unwrap();
    issue("edge", &tls.join("next/ca.key")).success();
    // Issued by the new CA: it chains to it alone.
    let files = |ca: &Path| trust::Files {
        ca: ca.to_owned(),
        cert: tls.join("edge.crt"),
        key: tls.join("edge.key"),
    };
    let edge = Identity::new("test", Role::Edge);
    trust::Credentials::load(edge.clone(), files(&tls.join("next/ca.crt"))).unwrap();
    let old = Authority::load(&tls.join("ca.crt"), &tls.join("ca.key")).unwrap();
    std::fs::write(tls.join("old.crt"), old.cert_pem()).unwrap();
    assert!(trust::Credentials::load(edge, files(&tls.join("old.crt"))).is_err());
}

#[test]
fn a_missing_ca_bundle_is_said_once_with_how_to_make_it() {
    let f = Fixture::new();
    std::fs::remove_file(f.dir.path().join("tls/ca.crt")).unwrap();
    let path = f.write(VALID);
    let err = check_fails(&path);
    assert!(
        err.contains(&format!(
            "{}CA bundle: cannot read {}",
            at(&path, 1, 1),
            f.dir.path().join("tls/ca.crt").display()
        )),
        "{err}"
    );
    assert!(
        err.contains("hint: make the cluster's CA with `seguro certs ca -c"),
        "{err}"
    );
    assert_eq!(err.matches("CA bundle:").count(), 1, "{err}");
    assert!(err.contains("1 error in the config"), "{err}");
    // Named in [tls], it is said there.
    let path = f.write(&format!("{VALID}\n[tls]\nca = \"tls/bundle.crt\"\n"));
    let err = check_fails(&path);
    assert!(
        err.contains(&format!("{}CA bundle: cannot read", at(&path, 28, 6))),
        "{err}"
    );
}

#[test]
fn a_missing_certificate_file_is_said_where_its_role_is() {
    let f = Fixture::new();
    std::fs::remove_file(f.dir.path().join("tls/edge.key")).unwrap();
    let path = f.write(VALID);
    let err = check_fails(&path);
    assert!(
        err.contains(&format!(
            "{}TLS key of edge.test.seguro: cannot read {}",
            at(&path, 21, 1),
            f.dir.path().join("tls/edge.key").display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "hint: issue it with `seguro certs issue -c {} edge`",
            path.display()
        )),
        "{err}"
    );
    check_fails_with(&path, &["--keys", "edge"]);
    // A replica host and the operator's admin commands need other pairs.
    for keys in ["replica=2", "admin"] {
        seguro()
            .args(["config", "check", "--keys", keys])
            .arg(&path)
            .assert()
            .success();
    }
    std::fs::remove_file(f.dir.path().join("tls/admin.crt")).unwrap();
    let err = check_fails_with(&path, &["--keys", "admin"]);
    assert!(
        err.contains(&format!(
            "{}TLS certificate of admin.test.seguro: cannot read {}",
            at(&path, 1, 1),
            f.dir.path().join("tls/admin.crt").display()
        )),
        "{err}"
    );
}

#[test]
fn replica_2_given_replica_1_s_certificate_fails_at_that_value() {
    let f = Fixture::new();
    let path = f.edited(
        "ames = \"10.0.1.2:34543\"\n",
        "ames = \"10.0.1.2:34543\"\ntls_cert = \"tls/replica-1.crt\"\n",
    );
    let err = check_fails(&path);
    assert!(
        err.contains(&format!(
            "{}TLS certificate of replica-2.test.seguro: {} is not a certificate for replica-2.test.seguro",
            at(&path, 13, 12),
            f.dir.path().join("tls/replica-1.crt").display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "hint: `seguro certs issue -c {} replica-2` issues one for replica-2.test.seguro",
            path.display()
        )),
        "{err}"
    );
    // Replica 1's host does not look at replica 2's files.
    seguro()
        .args(["config", "check", "--keys", "replica=1"])
        .arg(&path)
        .assert()
        .success();
    check_fails_with(&path, &["--keys", "replica=2"]);
}

#[test]
fn an_expired_certificate_and_another_ca_s_fail_naming_the_file() {
    let f = Fixture::new();
    let past = Validity {
        not_before: SystemTime::now() - Duration::from_secs(7200),
        not_after: SystemTime::now() - Duration::from_secs(3600),
    };
    f.issue("expired", "replica-3", past);
    let other = Authority::create("test", Validity::from_now(CA_VALIDITY)).unwrap();
    let issued = other
        .issue(
            &Identity::new("test", Role::Edge),
            Validity::from_now(LEAF_VALIDITY),
        )
        .unwrap();
    let tls = f.dir.path().join("tls");
    trust::issue::write_new(&tls.join("foreign.crt"), &issued.cert_pem).unwrap();
    trust::issue::write_new(&tls.join("foreign.key"), &issued.key_pem).unwrap();

    let text = VALID
        .replace(
            "ames = \"10.0.1.3:34543\"\n",
            "ames = \"10.0.1.3:34543\"\ntls_cert = \"tls/expired.crt\"\ntls_key = \"tls/expired.key\"\n",
        )
        .replace(
            "listen = \"10.0.1.254:4720\"\n",
            "listen = \"10.0.1.254:4720\"\ntls_cert = \"tls/foreign.crt\"\ntls_key = \"tls/foreign.key\"\n",
        );
    let path = f.write(&text);
    let err = check_fails(&path);
    let ca = tls.join("ca.crt");
    assert!(
        err.contains(&format!(
            "{}TLS certificate of replica-3.test.seguro: {} does not chain to a CA in {} valid now: CertExpired",
            at(&path, 17, 12),
            tls.join("expired.crt").display(),
            ca.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{}TLS certificate of edge.test.seguro: {} does not chain to a CA in {} valid now",
            at(&path, 25, 12),
            tls.join("foreign.crt").display(),
            ca.display()
        )),
        "{err}"
    );
    assert!(err.contains("2 errors in the config"), "{err}");
    // `certs show` says it expired.
    seguro()
        .args(["certs", "show"])
        .arg(tls.join("expired.crt"))
        .assert()
        .success()
        .stdout(predicate::str::contains("expires:    EXPIRED 1 hour ago"));
}
