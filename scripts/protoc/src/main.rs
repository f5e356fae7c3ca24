//! Copies protoc and its well-known `.proto` files out of the
//! `protoc-bin-vendored` crate into one directory, which `.cargo/config.toml`
//! names as `PROTOC` and `PROTOC_INCLUDE` for every build script.
//!
//! Copied rather than pointed at, so that the build does not depend on the
//! cargo registry's cache staying where it was.

use std::path::{Path, PathBuf};
use std::{env, fs, io, process};

fn main() {
    let Some(dest) = env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: seguro-protoc DEST_DIR");
        process::exit(2);
    };
    if let Err(e) = install(&dest) {
        eprintln!("seguro-protoc: installing into {}: {e}", dest.display());
        process::exit(1);
    }
}

fn install(dest: &Path) -> io::Result<()> {
    let bin = protoc_bin_vendored::protoc_bin_path().map_err(io::Error::other)?;
    let include = protoc_bin_vendored::include_path().map_err(io::Error::other)?;
    // Build beside the destination, then rename: a build never sees half a copy.
    let staging = dest.with_extension("new");
    if staging.exists() {
        fs::remove_dir_all(&staging)?;
    }
    fs::create_dir_all(staging.join("bin"))?;
    fs::copy(&bin, staging.join("bin/protoc"))?;
    copy_tree(&include, &staging.join("include"))?;
    if dest.exists() {
        fs::remove_dir_all(dest)?;
    }
    fs::rename(&staging, dest)
}

fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
