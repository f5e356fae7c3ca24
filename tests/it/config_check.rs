//! `seguro config check` on the example and on one broken file per class of
//! mistake: each must name FILE:LINE:COL, say what was expected, and exit 2.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;

/// A valid three-replica config with its key files, in a temporary directory.
struct Fixture {
    dir: tempfile::TempDir,
}

const VALID: &str = r#"cluster = "test"

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
endpoints = ["http://10.0.1.254:2379"]
"#;

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for name in ["replica-1", "replica-2", "replica-3", "eventlog"] {
            seguro()
                .arg("keygen")
                .arg(dir.path().join("keys").join(format!("{name}.key")))
                .assert()
                .success();
        }
        Self { dir }
    }

    fn write(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join("seguro.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The valid config with `from` replaced by `to`.
    fn edited(&self, from: &str, to: &str) -> PathBuf {
        assert!(VALID.contains(from), "fixture has no {from:?}");
        self.write(&VALID.replacen(from, to, 1))
    }
}

fn seguro() -> Command {
    Command::cargo_bin("seguro").unwrap()
}

/// Runs `config check`, expects exit 2, and returns stderr.
fn check_fails(path: &Path) -> String {
    let out = seguro()
        .args(["config", "check"])
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

fn at(path: &Path, line: usize, col: usize) -> String {
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
    std::fs::write(f.dir.path().join("keys/eventlog.key"), "not a key\n").unwrap();
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
