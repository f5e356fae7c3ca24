//! The edge box's fan-out (`seguro lb`): every packet for the ship's public
//! address reaches every replica, with the peer's source address and port
//! intact, so that any replica can take over without losing a packet.
//!
//! Two engines do the copying:
//!
//! - [`kernel`]: the XDP classifier and TC cloner from `ebpf/`, embedded in
//!   this crate, loaded and attached to `lb.interface`. This crate keeps
//!   their plan (ship address, replicas, next hops from [`nexthop`]) current
//!   and reads their per-CPU counters.
//! - [`relay`]: a userspace relay for hosts without XDP, with the same
//!   classification and the same counters.
//!
//! [`run`] is `seguro lb`: it starts an engine, serves Prometheus metrics,
//! reloads the replica set on SIGHUP and when the config file changes, and
//! detaches everything on SIGTERM or SIGINT. docs/EDGE.md has the design.

mod error;
pub mod kernel;
mod metrics;
pub mod nexthop;
pub mod plan;
mod privilege;
mod qdisc;
pub mod relay;
mod run;
mod watch;

pub use error::{Error, ErrorKind};
pub use run::run;

/// The kernel's index for the interface `name`.
pub fn interface_index(name: &str) -> Result<u32, Error> {
    let c = std::ffi::CString::new(name).map_err(|_| Error::NoInterface(name.to_owned()))?;
    // SAFETY: a valid NUL-terminated string; the call only reads it.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(Error::NoInterface(name.to_owned())),
        index => Ok(index),
    }
}
