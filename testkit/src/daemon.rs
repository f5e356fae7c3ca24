//! The names of a cluster's daemons, which both labs (loopback and
//! namespaces) start, stop and read the logs of.

use std::fmt;

/// One daemon of a cluster.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Daemon {
    /// The edge box's fan-out (`seguro lb`).
    Lb,
    /// Edge box `n`'s gatekeeper (1 is the first edge box, 2 its standby).
    Gatekeeper(u8),
    /// Replica `i`'s event log node.
    Eventlog(u8),
    /// Replica `i`'s agent with its ship (`seguro replica`, or a ship of
    /// the test's own linked against the C ABI).
    Replica(u8),
    /// Anything else a test runs beside the cluster.
    Other(String),
}

impl fmt::Display for Daemon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Daemon::Lb => f.write_str("lb"),
            Daemon::Gatekeeper(1) => f.write_str("gatekeeper"),
            Daemon::Gatekeeper(n) => write!(f, "gatekeeper-{n}"),
            Daemon::Eventlog(i) => write!(f, "eventlog-{i}"),
            Daemon::Replica(i) => write!(f, "replica-{i}"),
            Daemon::Other(name) => f.write_str(name),
        }
    }
}

impl Daemon {
    /// The `seguro` subcommand and arguments that run it, if it is one of
    /// Seguro's own daemons.
    pub fn seguro_args(&self) -> Option<Vec<String>> {
        Some(match self {
            Daemon::Lb => vec!["lb".into()],
            Daemon::Gatekeeper(_) => vec!["gatekeeper".into()],
            Daemon::Eventlog(i) => vec!["eventlog".into(), "--id".into(), i.to_string()],
            Daemon::Replica(i) => vec!["replica".into(), "--id".into(), i.to_string()],
            Daemon::Other(_) => return None,
        })
    }
}

impl Daemon {
    /// The component it is, as metric names and `seguro_build_info` say.
    pub fn component(&self) -> Option<&'static str> {
        Some(match self {
            Daemon::Lb => "lb",
            Daemon::Gatekeeper(_) => "gatekeeper",
            Daemon::Eventlog(_) => "eventlog",
            Daemon::Replica(_) => "replica",
            Daemon::Other(_) => return None,
        })
    }
}

/// The log filter daemons run with: `$SEGURO_TEST_LOG`, else info without
/// the Raft and log-store chatter.
pub fn log_filter() -> String {
    std::env::var("SEGURO_TEST_LOG")
        .unwrap_or_else(|_| "info,openraft=warn,chunked_wal=warn,raft_log=warn".into())
}
