//! `seguro ames decode`.

use std::process::ExitCode;

use crate::cli::{AmesCommand, DecodeArgs};
use crate::cmd::UsageError;

pub fn run(command: AmesCommand) -> anyhow::Result<ExitCode> {
    match command {
        AmesCommand::Decode(args) => decode(args),
    }
}

fn decode(args: DecodeArgs) -> anyhow::Result<ExitCode> {
    let text: String = args
        .hex
        .concat()
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ':')
        .collect();
    let text = text.strip_prefix("0x").unwrap_or(&text);
    let bytes = hex::decode(text).map_err(|e| UsageError(format!("HEX: not hexadecimal: {e}")))?;
    let decoded = ames::decode(&bytes);
    if args.json {
        println!("{}", serde_json::to_string(&decoded)?);
    } else {
        println!("{decoded}");
    }
    Ok(if decoded.is_malformed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
