//! `seguro status` where nothing answers, and with bad usage: every part is
//! shown as unreachable (never a panic) and the exit code says so. The live
//! cluster's status is checked in the cluster tests.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use testkit::config_file::{ClusterFile, Replica};

/// A config whose etcd, event log and metrics addresses are free loopback
/// ports nobody listens on.
fn dead_cluster(dir: &Path) -> std::path::PathBuf {
    let local = || SocketAddr::from(([127, 0, 0, 1], testkit::free_port()));
    // The edge box's certificate, as `seguro status` presents by default.
    testkit::Pki::new(dir.join("tls"), "dead")
        .unwrap()
        .issue(config::Role::Edge)
        .unwrap();
    let mut file = ClusterFile::new("dead", local(), local(), format!("https://{}", local()));
    let mut replica = Replica::new(1, local());
    replica.eventlog = Some(local());
    replica.eventlog_metrics = Some(local());
    replica.metrics = Some(local());
    replica.checkpoint = Some(local());
    file.replicas.push(replica);
    file.tls.dir = Some("tls".into());
    file.lb.metrics = Some(local());
    file.gatekeeper.metrics = Some(local());
    file.write(dir.join("seguro.toml")).unwrap()
}

fn status(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_seguro"))
        .arg("status")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn nothing_answers_so_everything_is_unreachable_and_it_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let config = dead_cluster(dir.path());
    let probe = dir.path().join("probe.json");
    std::fs::write(
        &probe,
        r#"{"sent":10,"answered":9,"duplicates":0,"answered_ratio":0.9,"rtt_p50_ms":1.5,"rtt_p99_ms":2.5}"#,
    )
    .unwrap();
    let out = status(&[
        "-c",
        config.to_str().unwrap(),
        "--probe",
        probe.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}\n{stderr}");
    assert!(text.contains("leader      unknown (etcd"), "{text}");
    assert!(text.contains("edge lb     unreachable"), "{text}");
    assert!(text.contains("gatekeeper  unreachable"), "{text}");
    assert!(text.contains("1        down"), "{text}");
    assert!(text.contains("answered 9 (90.00%)"), "{text}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let out = status(&["-c", config.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["leader"]["error"].is_string(), "{v}");
    assert!(v["lb"]["error"].is_string(), "{v}");
    assert_eq!(v["eventlog"]["usable"], false, "{v}");
    assert!(v["replicas"][0]["agent"]["error"].is_string(), "{v}");
    assert!(v["probe"].is_null(), "{v}");

    // A probe file that is JSON but not an object is named, not a panic.
    std::fs::write(&probe, "[1, 2]").unwrap();
    let args = ["-c", config.to_str().unwrap(), "--json", "--probe"];
    let out = status(&[&args[..], &[probe.to_str().unwrap()]].concat());
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["probe"]["error"], "not a JSON object", "{v}");
}

#[test]
fn bad_usage_and_bad_config_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = dead_cluster(dir.path());
    let out = status(&["-c", config.to_str().unwrap(), "--watch", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--watch"));
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "cluster = 3\n").unwrap();
    let out = status(&["-c", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
}
