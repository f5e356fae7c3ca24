//! Free loopback ports for servers a test starts.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::sync::Mutex;

/// Every port this process handed out: the kernel may offer the same free
/// port twice in a row, and a config with two servers on one port is
/// refused.
static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A loopback port that was free for TCP and UDP a moment ago and that this
/// process never handed out before: the kernel picks it, and the server the
/// caller starts next claims it.
pub fn free_port() -> u16 {
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    loop {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("binding 127.0.0.1:0 must succeed on any host that runs tests");
        let udp_free = UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok();
        if udp_free && given.insert(port) {
            return port;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn never_the_same_port_twice() {
        let ports: Vec<u16> = (0..200).map(|_| super::free_port()).collect();
        let unique: std::collections::HashSet<_> = ports.iter().collect();
        assert_eq!(unique.len(), ports.len());
    }
}
