//! `seguro config check` on the example and on one broken file per class of
//! mistake: each must name FILE:LINE:COL, say what was expected, and exit 2.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use trust::issue::{Authority, CA_VALIDITY, LEAF_VALIDITY, Validity, write_new};

/// A valid three-replica config with its key files and certificates (the
/// defaults' paths: `keys/`, `tls/`), in a temporary directory.
pub(crate) struct Fixture {
    pub(crate) dir: tempfile::TempDir,
    /// The cluster's CA, whose certificate is `tls/ca.crt`.
    pub(crate) ca: Authority,
}

pub(crate) const VALID: &str = r#"cluster = "test"

[ship]
public = "192.0.2.1:34543"

[[replicas]]
id = 1
ames = "10.0.1.1:34543"

[[replicas]]
id = 2
ames = "10.0.1.2:34543"

[[replicas]]
id = 3
ames = "10.0.1.3:34543"

[lb]
interface = "eth0"

[gatekeeper]
listen = "10.0.1.254:4720"

[etcd]
endpoints = ["https://10.0.1.254:2379"]
"#;

impl Fixture {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for name in ["replica-1", "replica-2", "replica-3"] {
            seguro()
                .arg("keygen")
                .arg(dir.path().join("keys").join(format!("{name}.key")))
                .assert()
                .success();
        }
        std::fs::create_dir(dir.path().join("tls")).unwrap();
        let ca = Authority::create("test", Validity::from_now(CA_VALIDITY)).unwrap();
        write_new(&dir.path().join("tls/ca.crt"), ca.cert_pem()).unwrap();
        let f = Self { dir, ca };
        for role in ["replica-1", "replica-2", "replica-3", "edge", "admin"] {
            f.issue(role, role, Validity::from_now(LEAF_VALIDITY));
        }
        f
    }

    /// Issues `role` a certificate from the fixture's CA, as
    /// `tls/<name>.crt` and `tls/<name>.key`.
    pub(crate) fn issue(&self, name: &str, role: &str, validity: Validity) {
        let identity = config::Identity::new("test", role.parse().unwrap());
        let issued = self.ca.issue(&identity, validity).unwrap();
        let tls = self.dir.path().join("tls");
        write_new(&tls.join(format!("{name}.crt")), &issued.cert_pem).unwrap();
        write_new(&tls.join(format!("{name}.key")), &issued.key_pem).unwrap();
    }

    pub(crate) fn write(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join("seguro.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The valid config with `from` replaced by `to`.
    pub(crate) fn edited(&self, from: &str, to: &str) -> PathBuf {
        assert!(VALID.contains(from), "fixture has no {from:?}");
        self.write(&VALID.replacen(from, to, 1))
    }
}

pub(crate) fn seguro() -> Command {
    Command::cargo_bin("seguro").unwrap()
}

/// Runs `config check`, expects exit 2, and returns stderr.
pub(crate) fn check_fails(path: &Path) -> String {
    check_fails_with(path, &[])
}

/// Runs `config check` with `args`, expects exit 2, and returns stderr.
pub(crate) fn check_fails_with(path: &Path, args: &[&str]) -> String {
    let out = seguro()
        .args(["config", "check"])
        .args(args)
        .arg(path)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    String::from_utf8(out.stderr).unwrap()
}

pub(crate) fn at(path: &Path, line: usize, col: usize) -> String {
    format!("{}:{line}:{col}: error: ", path.display())
}

#[test]
fn example_config_is_valid() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples/seguro.toml");
    seguro()
        .args(["config", "check"])
        .arg(&example)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "ok: cluster `sampel-palnet`, 3 replicas (quorum 2), optimism quorum",
        ))
        .stderr(predicate::str::is_empty());
}

#[test]
fn valid_fixture_is_valid() {
    let f = Fixture::new();
    seguro()
        .args(["config", "check"])
        .arg(f.write(VALID))
        .assert()
        .success();
}

#[test]
fn syntax_error() {
    let f = Fixture::new();
    let path = f.edited("interface = \"eth0\"", "interface = \"eth0");
    let err = check_fails(&path);
    assert!(err.contains(&at(&path, 19, 18)), "{err}");
    assert!(err.contains("invalid basic string"), "{err}");
}

#[test]
fn unknown_keys_are_all_reported_with_a_suggestion() {
    let f = Fixture::new();
    let text = VALID
        .replace("interface = \"eth0\"", "interfase = \"eth0\"")
        .replace("id = 3\n", "id = 3\ncolour = \"red\"\n");
    let path = f.write(&text);
    let err = check_fails(&path);
    assert!(
        err.contains(&format!(
            "{}unknown key `colour` in [replicas]",
            at(&path, 16, 1)
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{}unknown key `interfase` in [lb]",
            at(&path, 20, 1)
        )),
        "{err}"
    );
    assert!(err.contains("hint: did you mean `interface`?"), "{err}");
    // The misspelt key leaves [lb] without its required one: said at the table.
    assert!(
        err.contains(&format!("{}missing `interface` in [lb]", at(&path, 19, 1))),
        "{err}"
    );
}

#[test]
fn lb_tc_attach_is_one_of_its_choices() {
    let f = Fixture::new();
    let path = f.edited(
        "interface = \"eth0\"",
        "interface = \"eth0\"\ntc_attach = \"sometimes\"",
    );
    let err = check_fails(&path);
    assert!(
        err.contains("lb.tc_attach: `sometimes` is not one of: auto, tcx, clsact"),
        "{err}"
    );
    let path = f.edited(
        "interface = \"eth0\"",
        "interface = \"eth0\"\ntc_attach = \"clsact\"",
    );
    seguro()
        .arg("config")
        .arg("check")
        .arg(&path)
        .assert()
        .success();
}

#[test]
fn unparsable_address() {
    let f = Fixture::new();
    let path = f.edited("ames = \"10.0.1.2:34543\"", "ames = \"10.0.1.2\"");
    let err = check_fails(&path);
    assert!(
        err.contains(&format!(
            "{}replicas.ames: `10.0.1.2` is not an IP:PORT address",
            at(&path, 12, 8)
        )),
        "{err}"
    );
    assert!(err.contains("hint: write it like"), "{err}");
}

#[test]
fn the_public_address_needs_an_ip_and_a_port() {
    let f = Fixture::new();
    for (public, says) in [
        ("0.0.0.0:34543", "`0.0.0.0:34543` is not a public address"),
        ("192.0.2.1:0", "ship.public: `192.0.2.1:0` has port 0"),
    ] {
        let path = f.edited(
            "public = \"192.0.2.1:34543\"",
            &format!("public = \"{public}\""),
        );
        let err = check_fails(&path);
        assert!(
            err.contains(&format!("{}{says}", at(&path, 4, 10))),
            "{err}"
        );
        assert!(err.contains("hint:"), "{err}");
    }
}

#[test]
fn duplicate_replica_id() {
    let f = Fixture::new();
    let path = f.edited("id = 3", "id = 2");
    let err = check_fails(&path);
    assert!(
        err.contains(&format!("{}duplicate replica id 2", at(&path, 15, 6))),
        "{err}"
    );
    assert!(err.contains("first given at line 11"), "{err}");
}

#[test]
fn duplicate_replica_address() {
    let f = Fixture::new();
    let path = f.edited("ames = \"10.0.1.3:34543\"", "ames = \"10.0.1.1:34543\"");
    let err = check_fails(&path);
    assert!(
        err.contains(&format!(
            "{}duplicate Ames address 10.0.1.1:34543",
            at(&path, 16, 8)
        )),
        "{err}"
    );
    // The eventlog addresses default from the same IP, so they collide too.
    assert!(
        err.contains(&format!(
            "{}duplicate eventlog address 10.0.1.1:4710 (the default from the `ames` IP)",
            at(&path, 14, 1)
        )),
        "{err}"
    );
}

#[test]
fn zero_replicas() {
    let f = Fixture::new();
    let start = VALID.find("[[replicas]]").unwrap();
    let end = VALID.find("[lb]").unwrap();
    let path = f.write(&format!("{}{}", &VALID[..start], &VALID[end..]));
    let err = check_fails(&path);
    assert!(
        err.contains(&format!("{}no replicas", at(&path, 1, 1))),
        "{err}"
    );
    assert!(err.contains("hint: add one `[[replicas]]` table"), "{err}");
}

#[test]
fn lease_ttl_below_etcd_minimum() {
    let f = Fixture::new();
    let path = f.edited("[etcd]\n", "[etcd]\nlease_ttl = \"1s\"\n");
    let err = check_fails(&path);
    assert!(
        err.contains(&format!(
            "{}etcd.lease_ttl: 1s is below etcd's minimum",
            at(&path, 25, 13)
        )),
        "{err}"
    );
}

#[test]
fn unreadable_key_file() {
    let f = Fixture::new();
    std::fs::remove_file(f.dir.path().join("keys/replica-2.key")).unwrap();
    let path = f.write(VALID);
    let err = check_fails(&path);
    assert!(
        err.contains(&format!(
            "{}replica 2: cannot read key file",
            at(&path, 10, 1)
        )),
        "{err}"
    );
    assert!(err.contains("hint: create it with `seguro keygen"), "{err}");
    // A replica host needs only its own key.
    seguro()
        .args(["config", "check", "--keys", "replica=1"])
        .arg(&path)
        .assert()
        .success();
}

#[test]
fn malformed_key_file() {
    let f = Fixture::new();
    std::fs::write(f.dir.path().join("keys/replica-1.key"), "not a key\n").unwrap();
    let err = check_fails(&f.write(VALID));
    assert!(
        err.contains("does not hold a key: expected 64 hex digits"),
        "{err}"
    );
}

#[test]
fn even_replica_count_warns_but_passes() {
    let f = Fixture::new();
    let start = VALID.find("[[replicas]]\nid = 3").unwrap();
    let end = VALID.find("[lb]").unwrap();
    let path = f.write(&format!("{}{}", &VALID[..start], &VALID[end..]));
    seguro()
        .args(["config", "check"])
        .arg(&path)
        .assert()
        .success()
        .stderr(predicate::str::contains(format!("{}:6:1: warning: 2 replicas need 2 for a quorum and survive 0 failures, the same as 1 replica", path.display())))
        .stderr(predicate::str::contains("hint: use an odd number of replicas"));
}

#[test]
fn every_error_is_reported_at_once() {
    let f = Fixture::new();
    let text = VALID
        .replace("public = \"192.0.2.1:34543\"", "public = \"nowhere\"")
        .replace("id = 3", "id = 0")
        .replace("listen = \"10.0.1.254:4720\"", "listen = \"10.0.1.254:0\"");
    let err = check_fails(&f.write(&text));
    assert!(err.contains("ship.public: `nowhere`"), "{err}");
    assert!(err.contains("replica id 0 is out of range"), "{err}");
    assert!(
        err.contains("gatekeeper.listen: `10.0.1.254:0` has port 0"),
        "{err}"
    );
    assert!(err.contains("3 errors in the config"), "{err}");
}

#[test]
fn replicas_option_replaces_the_list() {
    let f = Fixture::new();
    let path = f.write(VALID);
    seguro()
        .args([
            "config",
            "check",
            "--keys",
            "none",
            "-r",
            "10.9.0.1:1,10.9.0.2:1,10.9.0.3:1,10.9.0.4:1,10.9.0.5:1",
            "-o",
            "all",
        ])
        .arg(&path)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "5 replicas (quorum 3), optimism all",
        ));
    seguro()
        .args([
            "config",
            "check",
            "--keys",
            "none",
            "--machines",
            "10.9.0.1:1,10.9.0.1:1,10.9.0.3:1",
        ])
        .arg(&path)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "--replicas: error: duplicate Ames address 10.9.0.1:1",
        ));
    seguro()
        .args(["config", "check", "-r", "10.9.0.1"])
        .arg(&path)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "invalid value '10.9.0.1' for '--replicas",
        ));
}

#[test]
fn missing_file_is_a_usage_error() {
    let f = Fixture::new();
    let path = f.dir.path().join("absent.toml");
    let err = check_fails(&path);
    assert!(
        err.contains(&format!("{}cannot read the config file", at(&path, 1, 1))),
        "{err}"
    );
}

#[test]
fn etcd_endpoints_must_be_https() {
    let f = Fixture::new();
    for endpoint in ["http://10.0.1.254:2379", "10.0.1.254:2379"] {
        let path = f.edited(
            "\"https://10.0.1.254:2379\"",
            &format!("\"https://10.0.1.253:2379\", \"{endpoint}\""),
        );
        let err = check_fails(&path);
        assert!(
            err.contains(&format!(
                "{}etcd.endpoints: `{endpoint}` is not an https:// URL",
                at(&path, 25, 41)
            )),
            "{err}"
        );
        assert!(
            err.contains(
                "hint: etcd is reached over TLS with client certificates: use https:// and see docs/DEPLOY.md"
            ),
            "{err}"
        );
        assert!(err.contains("1 error in the config"), "{err}");
    }
}

#[test]
fn a_checkpoint_listener_must_not_collide() {
    let f = Fixture::new();
    // Replica 1's own listeners.
    let path = f.edited(
        "ames = \"10.0.1.1:34543\"\n",
        "ames = \"10.0.1.1:34543\"\ncheckpoint = \"10.0.1.1:4710\"\n",
    );
    let err = check_fails(&path);
    assert!(
        err.contains(&format!(
            "{}replica's eventlog and checkpoint both listen on 10.0.1.1:4710",
            at(&path, 6, 1)
        )),
        "{err}"
    );
    // Another replica's, defaulted from its `ames` IP.
    let path = f.edited(
        "ames = \"10.0.1.3:34543\"\n",
        "ames = \"10.0.1.3:34543\"\ncheckpoint = \"10.0.1.2:4712\"\n",
    );
    let err = check_fails(&path);
    assert!(
        err.contains(&format!(
            "{}duplicate checkpoint address 10.0.1.2:4712",
            at(&path, 17, 14)
        )),
        "{err}"
    );
    assert!(err.contains("first given at line 10"), "{err}");
    // The default port moves with [replica] checkpoint_port.
    let path = f.write(&format!("{VALID}\n[replica]\ncheckpoint_port = 4710\n"));
    let err = check_fails(&path);
    assert!(
        err.contains("replica's eventlog and checkpoint both listen on 10.0.1.2:4710"),
        "{err}"
    );
}

#[test]
fn size_limits_are_within_their_ranges() {
    let f = Fixture::new();
    let path = f.write(&format!(
        "{VALID}\n[eventlog]\nmax_snapshot_bytes = 1024\n\n[replica]\nbuffer_bytes = 4294967297\nmax_checkpoint_bytes = 68719476737\n"
    ));
    let err = check_fails(&path);
    for (line, col, says, expected) in [
        (
            28,
            22,
            "eventlog.max_snapshot_bytes: 1024 is out of range",
            "expected 1048576 to 1099511627776 bytes",
        ),
        (
            31,
            16,
            "replica.buffer_bytes: 4294967297 is out of range",
            "expected 1048576 to 4294967296 bytes",
        ),
        (
            32,
            24,
            "replica.max_checkpoint_bytes: 68719476737 is out of range",
            "expected 1048576 to 68719476736 bytes",
        ),
    ] {
        assert!(
            err.contains(&format!("{}{says}", at(&path, line, col))),
            "{err}"
        );
        assert!(err.contains(&format!("hint: {expected}")), "{err}");
    }
    let path = f.write(&format!(
        "{VALID}\n[eventlog]\nmax_snapshot_bytes = 1048576\n\n[replica]\nbuffer_bytes = 4294967296\nmax_checkpoint_bytes = 68719476736\n"
    ));
    seguro()
        .args(["config", "check"])
        .arg(&path)
        .assert()
        .success();
}

#[test]
fn unknown_tls_key_is_reported_with_a_suggestion() {
    let f = Fixture::new();
    let path = f.write(&format!("{VALID}\n[tls]\nadmin_crt = \"tls/admin.crt\"\n"));
    let err = check_fails(&path);
    assert!(
        err.contains(&format!(
            "{}unknown key `admin_crt` in [tls]",
            at(&path, 28, 1)
        )),
        "{err}"
    );
    assert!(err.contains("hint: did you mean `admin_cert`?"), "{err}");
}

#[test]
fn two_replicas_may_not_share_a_key_file() {
    let f = Fixture::new();
    let path = f.edited("id = 3\n", "id = 3\nkey_file = \"keys/replica-1.key\"\n");
    let err = check_fails(&path);
    let key = f.dir.path().join("keys/replica-1.key");
    assert!(
        err.contains(&format!(
            "{}replica 3's envelope key {} is also replica 1's envelope key",
            at(&path, 16, 12),
            key.display()
        )),
        "{err}"
    );
    assert!(
        err.contains("hint: replica 1's envelope key is named at line 6; every replica and every role needs a secret of its own"),
        "{err}"
    );
    // Even where the key files are not read.
    check_fails_with(&path, &["--keys", "none"]);
}

#[test]
fn two_replicas_may_not_hold_the_same_key() {
    let f = Fixture::new();
    let keys = f.dir.path().join("keys");
    std::fs::copy(keys.join("replica-1.key"), keys.join("replica-3.key")).unwrap();
    let path = f.write(VALID);
    let err = check_fails(&path);
    assert!(
        err.contains(&format!(
            "{}replica 3's envelope key file {} holds the same key as replica 1's ({})",
            at(&path, 14, 1),
            keys.join("replica-3.key").display(),
            keys.join("replica-1.key").display()
        )),
        "{err}"
    );
    assert!(err.contains("replica 1's is named at line 6"), "{err}");
    // A replica host reads only its own key: nothing to compare.
    seguro()
        .args(["config", "check", "--keys", "replica=3"])
        .arg(&path)
        .assert()
        .success();
}

#[test]
fn a_secret_may_not_serve_two_roles() {
    let f = Fixture::new();
    let path = f.edited(
        "listen = \"10.0.1.254:4720\"\n",
        "listen = \"10.0.1.254:4720\"\ntls_key = \"tls/./replica-2.key\"\n",
    );
    let err = check_fails(&path);
    assert!(
        err.contains(&format!(
            "{}the edge box's TLS key {} is also replica 2's TLS key",
            at(&path, 23, 11),
            f.dir.path().join("tls/./replica-2.key").display()
        )),
        "{err}"
    );
    assert!(
        err.contains("replica 2's TLS key is named at line 10"),
        "{err}"
    );

    // A replica's envelope key as its own TLS key, through a symbolic link.
    std::os::unix::fs::symlink("../keys/replica-1.key", f.dir.path().join("tls/link.key")).unwrap();
    let path = f.edited(
        "ames = \"10.0.1.1:34543\"\n",
        "ames = \"10.0.1.1:34543\"\ntls_key = \"tls/link.key\"\n",
    );
    let err = check_fails_with(&path, &["--keys", "none"]);
    assert!(
        err.contains(&format!(
            "{}replica 1's TLS key {} is also replica 1's envelope key",
            at(&path, 9, 11),
            f.dir.path().join("tls/link.key").display()
        )),
        "{err}"
    );
}

#[test]
fn the_ca_bundle_may_not_be_a_key() {
    let f = Fixture::new();
    let path = f.write(&format!("{VALID}\n[tls]\nca = \"keys/replica-1.key\"\n"));
    let err = check_fails_with(&path, &["--keys", "none"]);
    assert!(
        err.contains(&format!(
            "{}the CA bundle {} is also replica 1's envelope key",
            at(&path, 28, 6),
            f.dir.path().join("keys/replica-1.key").display()
        )),
        "{err}"
    );
    assert!(
        err.contains("the CA bundle goes to every host, so it must hold no key"),
        "{err}"
    );
}
