//! Free loopback ports for servers a test starts.

use std::net::{Ipv4Addr, TcpListener};

/// A loopback TCP port that was free a moment ago: the kernel picks it, and
/// the server the caller starts next claims it.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0 must succeed on any host that runs tests")
}
