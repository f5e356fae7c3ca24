//! The core builds without std: for the host always, and for the edge box's
//! eBPF target when asked (it needs nightly with rust-src).

use std::process::Command;

fn build(cargo: &mut Command, extra: &[&str]) {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let target_dir = concat!(env!("CARGO_TARGET_TMPDIR"), "/no-std");
    let output = cargo
        .args(["build", "--release", "--no-default-features"])
        .args(["--manifest-path", manifest, "--target-dir", target_dir])
        .args(extra)
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn core_builds_without_std() {
    build(&mut Command::new(env!("CARGO")), &[]);
}

/// Run with `cargo test -p seguro-ames -- --ignored`.
#[test]
#[ignore = "needs the nightly toolchain with rust-src"]
fn core_builds_for_bpf() {
    build(
        Command::new("rustup").args(["run", "nightly", "cargo"]),
        &["-Z", "build-std=core", "--target", "bpfel-unknown-none"],
    );
}
