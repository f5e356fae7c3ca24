//! What can stop the fan-out, and which of those are the operator's to fix.

/// An error from the fan-out.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config asks for something this host or the fan-out cannot do.
    #[error("{0}")]
    Config(String),
    /// `lb.interface` names no interface on this host.
    #[error("lb.interface: there is no interface `{0}` on this host (`ip link` lists them)")]
    NoInterface(String),
    /// The process lacks the privileges its mode needs.
    #[error("{0}")]
    NotPermitted(String),
    /// The kernel cannot run eBPF programs at all.
    #[error("{0}")]
    BpfUnavailable(String),
    /// Loading the programs failed (including the verifier's refusal).
    #[error("loading the eBPF programs: {0}")]
    Load(String),
    #[error("attaching the eBPF programs: {0}")]
    Attach(String),
    #[error("eBPF map: {0}")]
    Map(String),
    #[error("netlink: {0}")]
    Netlink(String),
    #[error(transparent)]
    Metrics(#[from] telemetry::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// Broad classes of [`Error`], for exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The config does not fit this host: fix the config (exit 2).
    Config,
    /// Not root, or missing capabilities (exit 77, `EX_NOPERM`).
    Permission,
    /// No eBPF on this kernel (exit 69, `EX_UNAVAILABLE`).
    Unavailable,
    /// Anything else (exit 1).
    Runtime,
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(_) | Error::NoInterface(_) => ErrorKind::Config,
            Error::NotPermitted(_) => ErrorKind::Permission,
            Error::BpfUnavailable(_) => ErrorKind::Unavailable,
            _ => ErrorKind::Runtime,
        }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}
