//! `seguro keygen`: fresh secret key files.

use std::process::ExitCode;

use anyhow::Context;
use config::Key;

use crate::cli::KeygenArgs;

pub fn run(args: KeygenArgs) -> anyhow::Result<ExitCode> {
    for path in &args.files {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        Key::generate()?.save_new(path)?;
        println!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
