//! What can stop the fan-out, and which of those are the operator's to fix.

/// What the kernel, aya or netlink said went wrong, kept as the cause.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

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
    /// The kernel refused to load or attach the programs for want of a
    /// privilege.
    #[error(
        "the kernel refused to load or attach eBPF programs ({source}): run as root, or with \
         CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON, and check kernel.unprivileged_bpf_disabled \
         and lockdown"
    )]
    BpfRefused { source: Cause },
    /// The kernel refused the relay's raw socket for want of a privilege.
    #[error(
        "lb.mode = \"userspace\" sends copies with the peer's source from a raw socket, \
         which needs root or CAP_NET_RAW: {source}"
    )]
    RawRefused { source: std::io::Error },
    /// The kernel cannot run eBPF programs at all.
    #[error("this kernel has no bpf() system call ({source}); use lb.mode = \"userspace\"")]
    BpfUnavailable { source: Cause },
    /// The embedded object is not what this loader expects, or the
    /// verifier refused a program (its log says why).
    #[error("loading the eBPF programs: {0}")]
    Load(String),
    /// aya could not load the embedded object.
    #[error("loading the eBPF programs: {0}")]
    Ebpf(#[source] aya::EbpfError),
    #[error("loading the eBPF programs: {what}: {source}")]
    Loading { what: &'static str, source: Cause },
    #[error("attaching the eBPF programs: {0}")]
    Attach(&'static str),
    #[error("attaching the eBPF programs: {what}: {source}")]
    Attaching { what: String, source: Cause },
    #[error("eBPF map: {what}: {source}")]
    Map {
        what: &'static str,
        source: aya::maps::MapError,
    },
    #[error("netlink: {what}: {source}")]
    Netlink { what: String, source: Cause },
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
            Error::NotPermitted(_) | Error::BpfRefused { .. } | Error::RawRefused { .. } => {
                ErrorKind::Permission
            }
            Error::BpfUnavailable { .. } => ErrorKind::Unavailable,
            _ => ErrorKind::Runtime,
        }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}
