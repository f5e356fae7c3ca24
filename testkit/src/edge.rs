//! The edge box's world in network namespaces: a peer on the public side,
//! the edge box, and replicas behind it, the last one behind a router, all
//! dual-stack. The fan-out tests and benchmark use it, and so can the
//! cluster tests.
//!
//! ```text
//!  peer p0 ──── e0 edge er1 ──── eth0 replica 1
//!                       er2 ──── eth0 replica 2
//!                       ...
//!                       erN ──── rt0 router rt1 ──── eth0 replica N
//! ```
//!
//! | link | IPv4 | IPv6 |
//! |---|---|---|
//! | peer–edge | 10.99.0.2 – 10.99.0.1 | fd99::2 – fd99::1 |
//! | edge–replica i | 10.99.i.1 – 10.99.i.2 | fd99:0:0:i::1 – ::2 |
//! | edge–router | 10.99.N.1 – 10.99.N.2 | fd99:0:0:N::1 – ::2 |
//! | router–replica N | 10.99.(100+N).1 – .2 | fd99:0:0:(100+N)::1 – ::2 |
//!
//! The edge box does not forward: anything a replica receives from the
//! peer, the fan-out put there. Checksum offload is off where packets are
//! received (and on the peer's sending side), so every hop verifies IP and
//! UDP checksums in software: a copy with a wrong checksum is dropped and
//! the test sees it missing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use crate::netns::{Netns, veth};

/// The edge box's interface towards the peer: `lb.interface`.
pub const EDGE_IF: &str = "e0";

pub struct EdgeLab {
    pub peer: Netns,
    pub edge: Netns,
    /// Replica 1 first.
    pub replicas: Vec<Netns>,
    /// In front of the last replica (when there are at least two).
    pub router: Option<Netns>,
}

/// Which address family to pick an address from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

fn v4(subnet: u8, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 99, subnet, host)
}

fn v6(subnet: u8, host: u8) -> Ipv6Addr {
    Ipv6Addr::new(0xfd99, 0, 0, u16::from(subnet), 0, 0, 0, u16::from(host))
}

fn pick(family: Family, subnet: u8, host: u8) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(v4(subnet, host)),
        Family::V6 => IpAddr::V6(v6(subnet, host)),
    }
}

fn cidrs(subnet: u8, host: u8) -> [String; 2] {
    [
        format!("{}/24", v4(subnet, host)),
        format!("{}/64", v6(subnet, host)),
    ]
}

impl EdgeLab {
    /// Builds the topology with `replicas` replicas (1 to 99), in
    /// namespaces with unique names.
    pub fn new(replicas: u8) -> EdgeLab {
        EdgeLab::build(replicas, None)
    }

    /// Builds the topology in namespaces named `<prefix>-peer`,
    /// `<prefix>-edge`, `<prefix>-r1`... (`<prefix>-router`), for a demo
    /// whose users type those names; panics if one exists.
    pub fn with_prefix(replicas: u8, prefix: &str) -> EdgeLab {
        EdgeLab::build(replicas, Some(prefix))
    }

    /// The namespace names [`EdgeLab::with_prefix`] uses.
    pub fn prefixed_names(replicas: u8, prefix: &str) -> Vec<String> {
        let mut names: Vec<String> = ["peer", "edge", "router"]
            .iter()
            .map(|role| format!("{prefix}-{role}"))
            .collect();
        names.extend((1..=replicas).map(|i| format!("{prefix}-r{i}")));
        names
    }

    fn build(replicas: u8, prefix: Option<&str>) -> EdgeLab {
        assert!((1..100).contains(&replicas), "1 to 99 replicas");
        let make = |role: &str| match prefix {
            Some(p) => Netns::named(&format!("{p}-{role}")),
            None => Netns::new(role),
        };
        let peer = make("peer");
        let edge = make("edge");
        let link = |a: &Netns, a_dev: &str, b: &Netns, b_dev: &str, subnet: u8| {
            let [a4, a6] = cidrs(subnet, 1);
            let [b4, b6] = cidrs(subnet, 2);
            veth(b, b_dev, &[&b4, &b6], a, a_dev, &[&a4, &a6]);
        };
        link(&edge, EDGE_IF, &peer, "p0", 0);
        default_routes(&peer, 0);
        let routed = replicas >= 2;
        let mut nodes = Vec::new();
        let mut router = None;
        for i in 1..=replicas {
            let replica = make(&format!("r{i}"));
            if routed && i == replicas {
                let r = make("router");
                link(&edge, &format!("er{i}"), &r, "rt0", i);
                link(&r, "rt1", &replica, "eth0", 100 + i);
                default_routes(&r, i);
                default_routes(&replica, 100 + i);
                r.sysctl("net.ipv4.ip_forward", "1");
                r.sysctl("net.ipv6.conf.all.forwarding", "1");
                edge.route(&format!("{}/24", v4(100 + i, 0)), &v4(i, 2).to_string());
                edge.route(&format!("{}/64", v6(100 + i, 0)), &v6(i, 2).to_string());
                strict_checksums(&r, "rt0");
                router = Some(r);
            } else {
                link(&edge, &format!("er{i}"), &replica, "eth0", i);
                default_routes(&replica, i);
            }
            strict_checksums(&replica, "eth0");
            nodes.push(replica);
        }
        // The peer computes its UDP checksums itself; the edge box and the
        // replicas check them.
        peer.exec("ethtool", &["-K", "p0", "tx", "off"]);
        strict_checksums(&edge, EDGE_IF);
        let lab = EdgeLab {
            peer,
            edge,
            replicas: nodes,
            router,
        };
        lab.introduce_peer();
        lab
    }

    /// Has the peer and the edge box exchange a datagram in each family, so
    /// that each knows the other's MAC before a test starts: a first
    /// neighbour solicitation lost while a test attaches programs would
    /// otherwise hold the peer's packets for a second.
    fn introduce_peer(&self) {
        for family in [Family::V4, Family::V6] {
            let at = SocketAddr::new(self.ship_ip(family), 9);
            let edge = self.edge.run(|| UdpSocket::bind(at).unwrap());
            edge.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            let peer = self
                .peer
                .run(|| UdpSocket::bind(SocketAddr::new(self.peer_ip(family), 0)).unwrap());
            let mut buf = [0u8; 8];
            let introduced = (0..5).any(|_| {
                peer.send_to(b"hello", at).unwrap();
                edge.recv_from(&mut buf)
                    .is_ok_and(|(_, from)| edge.send_to(b"hello", from).is_ok())
            });
            assert!(introduced, "the peer cannot reach the edge box at {at}");
        }
    }

    /// The edge box's public address: the ship's.
    pub fn ship_ip(&self, family: Family) -> IpAddr {
        pick(family, 0, 1)
    }

    pub fn peer_ip(&self, family: Family) -> IpAddr {
        pick(family, 0, 2)
    }

    /// Replica `i`'s address, counting from 1.
    pub fn replica_ip(&self, i: u8, family: Family) -> IpAddr {
        let routed = self.router.is_some() && usize::from(i) == self.replicas.len();
        pick(family, if routed { 100 + i } else { i }, 2)
    }

    /// Replica `i`'s namespace, counting from 1.
    pub fn replica(&self, i: u8) -> &Netns {
        &self.replicas[usize::from(i) - 1]
    }
}

/// Routes everything not on-link to host 1 of `subnet`, both families.
fn default_routes(ns: &Netns, subnet: u8) {
    ns.route("default", &v4(subnet, 1).to_string());
    ns.route("default", &v6(subnet, 1).to_string());
}

/// Makes `dev` verify checksums in software: a veth otherwise marks what it
/// receives as already checked.
fn strict_checksums(ns: &Netns, dev: &str) {
    ns.exec("ethtool", &["-K", dev, "rx", "off"]);
}

/// The longest scry path vere accepts in a fine packet, in bytes.
pub const LONGEST_SCRY_PATH: usize = 384;

/// A fine response between two 16-byte ships with a `path_bytes`-long path
/// and a full 1024-byte fragment of data: with the longest path
/// ([`LONGEST_SCRY_PATH`]) it is longer than one packet on the lab's
/// 1500-byte links, so the peer's kernel fragments it; with a path of 22
/// bytes or less it fits one.
pub fn fine_response(path_bytes: usize) -> Vec<u8> {
    use ames::{Body, Meow, Packet, Peep, Prelude, Purr, ScryPath, Ship};
    assert!(
        (1..=LONGEST_SCRY_PATH).contains(&path_bytes),
        "a path of 1 to {LONGEST_SCRY_PATH} bytes"
    );
    let path = format!("/{}", "p".repeat(path_bytes - 1));
    let ship = Ship::new(0x1234_5678_9abc_def0_0fed_cba9_8765_4321);
    let packet = Packet {
        prelude: Prelude::new(ship, ship),
        body: Body::FineResponse(Purr {
            peep: Peep {
                fragment: 7,
                path: ScryPath::new(&path).expect("a valid scry path"),
            },
            meow: Meow {
                signature: [0x5e; 64],
                num_fragments: 9,
                data: (0..1024).map(|b| (b * 7 % 251) as u8).collect(),
            },
        }),
    }
    .to_bytes();
    assert_eq!(ames::classify_slice(&packet), ames::Class::FineResponse);
    packet
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs root. The edge box reaches every replica in both families (the
    /// last through the router), and does not forward the peer's traffic.
    #[test]
    fn the_edge_reaches_every_replica_and_forwards_nothing() {
        let lab = EdgeLab::new(3);
        for family in [Family::V4, Family::V6] {
            for i in 1..=3 {
                let to = SocketAddr::new(lab.replica_ip(i, family), 7000);
                let rx = lab.replica(i).run(|| UdpSocket::bind(to).unwrap());
                rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let from = SocketAddr::new(lab.ship_ip(family), 0);
                let edge = lab.edge.run(|| UdpSocket::bind(from).unwrap());
                edge.send_to(b"from the edge", to).unwrap();
                let mut buf = [0u8; 32];
                let (n, _) = rx
                    .recv_from(&mut buf)
                    .unwrap_or_else(|e| panic!("{to}: {e}"));
                assert_eq!(&buf[..n], b"from the edge");

                let peer = lab
                    .peer
                    .run(|| UdpSocket::bind(SocketAddr::new(lab.peer_ip(family), 0)).unwrap());
                peer.send_to(b"from the peer", to).unwrap();
                rx.set_read_timeout(Some(Duration::from_millis(300)))
                    .unwrap();
                assert!(
                    rx.recv_from(&mut buf).is_err(),
                    "the edge box forwarded to {to}"
                );
            }
        }
    }
}
