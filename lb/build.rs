//! Builds the eBPF programs (`ebpf/`, the pinned nightly + bpf-linker) into OUT_DIR,
//! from where `include_bytes_aligned!` embeds them in the binary.

use std::path::PathBuf;

use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let manifest =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?);
    let root = manifest.parent().context("lb/ has a parent")?;
    let ebpf = root.join("ebpf");
    let toolchain = nightly_channel(&ebpf.join("rust-toolchain.toml"))?;
    // The programs also compile these; aya-build watches only ebpf/.
    for dir in [
        root.join("ames/src"),
        root.join("ames/Cargo.toml"),
        manifest.join("abi"),
    ] {
        println!("cargo:rerun-if-changed={}", dir.display());
    }
    // aya-build relays every line the inner cargo prints as a warning; only
    // its errors are worth that.
    // SAFETY: the build script is single-threaded.
    unsafe { std::env::set_var("CARGO_TERM_QUIET", "true") };
    // aya-build runs `cargo build --package` in the current directory, and
    // ebpf/ is a workspace of its own.
    std::env::set_current_dir(&ebpf).with_context(|| format!("entering {}", ebpf.display()))?;
    let root_dir = ebpf
        .to_str()
        .ok_or_else(|| anyhow!("{} is not UTF-8", ebpf.display()))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "seguro-ebpf",
            root_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(&toolchain),
    )
    .with_context(|| {
        format!(
            "building the eBPF programs needs the {toolchain} toolchain with rust-src, and \
             bpf-linker: run `make deps` (docs/DEPENDENCIES.md)"
        )
    })
}

/// The pinned nightly, from the `channel = "..."` line of
/// ebpf/rust-toolchain.toml (the one place it is written). aya-build names
/// the toolchain to `rustup run` itself, which would otherwise ignore that
/// file.
fn nightly_channel(file: &std::path::Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    text.lines()
        .find_map(|line| {
            let value = line
                .strip_prefix("channel")?
                .trim_start()
                .strip_prefix('=')?;
            Some(value.trim().trim_matches('"').to_owned())
        })
        .filter(|channel| !channel.is_empty())
        .ok_or_else(|| anyhow!("{}: no `channel = \"...\"` line", file.display()))
}
