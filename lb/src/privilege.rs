//! Checks, before anything is touched, that the process may do what its mode
//! needs, so that a missing privilege is one clear error rather than a
//! failure halfway through.

use config::LbMode;

use crate::Error;

// Bit numbers from linux/capability.h.
const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Fails with [`Error::NotPermitted`] unless the effective capabilities
/// cover `mode`: loading and attaching XDP/TC programs needs CAP_BPF (or
/// CAP_SYS_ADMIN), CAP_PERFMON (or CAP_SYS_ADMIN) and CAP_NET_ADMIN; the
/// userspace relay's raw socket needs CAP_NET_RAW.
pub fn check(mode: LbMode) -> Result<(), Error> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(Error::io(
        "reading /proc/self/status for this process's capabilities",
    ))?;
    let caps = effective(&status).ok_or_else(|| {
        Error::NotPermitted("cannot read this process's capabilities from /proc/self/status".into())
    })?;
    let has = |cap: u32| caps & (1u64 << cap) != 0;
    let missing: Vec<&str> = match mode {
        LbMode::Xdp | LbMode::XdpGeneric => [
            (has(CAP_BPF) || has(CAP_SYS_ADMIN), "CAP_BPF"),
            (has(CAP_PERFMON) || has(CAP_SYS_ADMIN), "CAP_PERFMON"),
            (has(CAP_NET_ADMIN), "CAP_NET_ADMIN"),
        ]
        .into_iter()
        .filter(|(ok, _)| !ok)
        .map(|(_, name)| name)
        .collect(),
        LbMode::Userspace => {
            if has(CAP_NET_RAW) {
                vec![]
            } else {
                vec!["CAP_NET_RAW"]
            }
        }
    };
    if missing.is_empty() {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    let what = match mode {
        LbMode::Userspace => "to send copies with the peer's source address from a raw socket",
        _ => "to load and attach its XDP and TC programs",
    };
    Err(Error::NotPermitted(format!(
        "seguro lb (lb.mode = \"{mode}\") must run as root, or with {}, {what}; \
         this process (uid {uid}) lacks {}",
        needed(mode),
        missing.join(", "),
    )))
}

fn needed(mode: LbMode) -> &'static str {
    match mode {
        LbMode::Userspace => "CAP_NET_RAW",
        _ => "CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN",
    }
}

/// The `CapEff:` mask from `/proc/<pid>/status`.
fn effective(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(line.trim(), 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_effective_mask() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(effective(status), Some(0x1ff_ffff_ffff));
        assert_eq!(effective("Name: x\n"), None);
    }
}
