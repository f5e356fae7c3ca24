//! `seguro`: one binary for every part of a Seguro cluster.

mod cli;
mod cmd;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let result = match cli.command {
        Command::Config(args) => cmd::config::run(args),
        Command::Ames(args) => cmd::ames::run(args),
        Command::Keygen(args) => cmd::keygen::run(args),
        Command::Certs(args) => cmd::certs::run(args),
        Command::Etcd(args) => cmd::etcd::run(args),
        Command::Eventlog(args) => cmd::eventlog::run(args),
        Command::Gatekeeper(args) => cmd::gatekeeper::run(args),
        Command::Lb(args) => cmd::lb::run(args),
        Command::Replica(args) => cmd::replica::run(args),
        Command::Status(args) => cmd::status::run(args),
        Command::Pier(args) => cmd::pier::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => cmd::report(e),
    }
}

/// Logs go to stderr; `RUST_LOG` overrides the level `-v` sets.
fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    // openraft and raft-log narrate every election and flush at info.
    let default = match verbose {
        0 => "info,openraft=warn,chunked_wal=warn,raft_log=warn",
        1 => "debug,openraft=info,chunked_wal=info,raft_log=info",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // netlink-packet-route warns about every attribute newer kernels add,
    // each time `seguro lb` reads a link.
    let quiet = "netlink_packet_route=error"
        .parse()
        .expect("a valid directive");
    let filter = filter.add_directive(quiet);
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
