//! Next hops for the copies: the interface each replica is reached by, that
//! interface's MAC, and the MAC of the replica or of the router in front of
//! it, read from the kernel's routing table and neighbour cache.
//!
//! The TC program writes these into each copy. Copies bypass the kernel's
//! neighbour machinery, so nothing would ever resolve a missing entry or
//! re-check a stale one: [`NextHops::resolve`] does what the first packet of
//! ordinary traffic would, asking the kernel to resolve (`NTF_USE`) every
//! entry that is missing, failed or stale. It is called every second, so an
//! entry resolved meanwhile is picked up within a second; until then that
//! replica's copies are skipped and counted.

use std::collections::HashMap;
use std::net::IpAddr;

use futures::{StreamExt as _, TryStreamExt as _};
use netlink_packet_core::{NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    link::{LinkAttribute, LinkLayerType, LinkMessage},
    neighbour::{
        NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
    },
    route::{RouteAddress, RouteAttribute, RouteMessage, RouteType},
};
use rtnetlink::Handle;
use tracing::debug;

use crate::Error;

/// How to reach one replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hop {
    Ready {
        ifindex: u32,
        /// The outgoing interface's MAC.
        smac: [u8; 6],
        /// The replica's MAC, or its router's.
        dmac: [u8; 6],
    },
    Unresolved(Unresolved),
}

/// Why a replica cannot be sent its copy yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unresolved {
    /// The routing table has no route to it.
    NoRoute,
    /// Its address is the edge box's own.
    Local,
    /// It is reached through an interface without Ethernet addresses (a
    /// tunnel, say), where the TC program cannot write a frame.
    NotEthernet,
    /// The neighbour cache has no MAC for the next hop yet; resolution has
    /// been asked for.
    NoNeighbour,
}

impl Hop {
    pub fn is_ready(&self) -> bool {
        matches!(self, Hop::Ready { .. })
    }
}

impl std::fmt::Display for Unresolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unresolved::NoRoute => "no route to it",
            Unresolved::Local => "its address is the edge box's own",
            Unresolved::NotEthernet => "it is reached through an interface that is not Ethernet",
            Unresolved::NoNeighbour => "its next hop's MAC is not known yet (ARP/NDP asked)",
        })
    }
}

/// A connection to the kernel's routing netlink.
pub struct NextHops {
    handle: Handle,
    connection: tokio::task::JoinHandle<()>,
}

impl Drop for NextHops {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

impl NextHops {
    /// Opens the netlink socket; needs a tokio runtime.
    pub fn new() -> Result<Self, Error> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(|e| Error::Netlink {
            what: "opening a socket".into(),
            source: e.into(),
        })?;
        let connection = tokio::spawn(connection);
        Ok(Self { handle, connection })
    }

    /// The next hop of each address, in order.
    pub async fn resolve(&mut self, addrs: &[IpAddr]) -> Result<Vec<Hop>, Error> {
        let neighbours = self.neighbours().await?;
        let mut links: HashMap<u32, Option<[u8; 6]>> = HashMap::new();
        let mut hops = Vec::with_capacity(addrs.len());
        for &addr in addrs {
            let hop = match self.route(addr).await? {
                Route::None => Hop::Unresolved(Unresolved::NoRoute),
                Route::Local => Hop::Unresolved(Unresolved::Local),
                Route::Via { ifindex, gateway } => {
                    let smac = match links.get(&ifindex) {
                        Some(mac) => *mac,
                        None => {
                            let mac = self.link_mac(ifindex).await?;
                            links.insert(ifindex, mac);
                            mac
                        }
                    };
                    match smac {
                        None => Hop::Unresolved(Unresolved::NotEthernet),
                        Some(smac) => {
                            let entry = neighbours.get(&(ifindex, gateway));
                            if entry.is_none_or(|e| e.needs_probe()) {
                                self.probe(ifindex, gateway).await;
                            }
                            match entry.and_then(Neighbour::mac) {
                                Some(dmac) => Hop::Ready {
                                    ifindex,
                                    smac,
                                    dmac,
                                },
                                None => Hop::Unresolved(Unresolved::NoNeighbour),
                            }
                        }
                    }
                }
            };
            hops.push(hop);
        }
        Ok(hops)
    }

    /// `ip route get ADDR`: the kernel's own lookup, policy rules included.
    async fn route(&mut self, addr: IpAddr) -> Result<Route, Error> {
        let mut message = RouteMessage::default();
        let (family, len) = match addr {
            IpAddr::V4(_) => (AddressFamily::Inet, 32),
            IpAddr::V6(_) => (AddressFamily::Inet6, 128),
        };
        message.header.address_family = family;
        message.header.destination_prefix_length = len;
        message
            .attributes
            .push(RouteAttribute::Destination(addr.into()));
        let mut request = NetlinkMessage::from(RouteNetlinkMessage::GetRoute(message));
        request.header.flags = NLM_F_REQUEST;
        let mut replies = self.request(request)?;
        let mut route = Route::None;
        while let Some(reply) = replies.next().await {
            match reply.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)) => {
                    route = Route::from_reply(addr, &r);
                }
                NetlinkPayload::Error(e) => {
                    // ENETUNREACH and the like: no route, which is a state,
                    // not a failure of ours.
                    debug!(%addr, error = %e, "no route");
                    return Ok(Route::None);
                }
                _ => {}
            }
        }
        Ok(route)
    }

    /// The MAC of an Ethernet interface; `None` for other kinds.
    async fn link_mac(&mut self, ifindex: u32) -> Result<Option<[u8; 6]>, Error> {
        let mut links = self.handle.link().get().match_index(ifindex).execute();
        let mut mac = None;
        while let Some(link) = links.try_next().await.map_err(|e| Error::Netlink {
            what: format!("reading link {ifindex}"),
            source: e.into(),
        })? {
            let link: LinkMessage = link;
            if link.header.link_layer_type != LinkLayerType::Ether {
                return Ok(None);
            }
            mac = link.attributes.iter().find_map(|a| match a {
                LinkAttribute::Address(bytes) => <[u8; 6]>::try_from(bytes.as_slice()).ok(),
                _ => None,
            });
        }
        Ok(mac)
    }

    /// The neighbour cache, both families.
    async fn neighbours(&mut self) -> Result<HashMap<(u32, IpAddr), Neighbour>, Error> {
        let mut found = HashMap::new();
        let mut dump = self.handle.neighbours().get().execute();
        while let Some(entry) = dump.try_next().await.map_err(|e| Error::Netlink {
            what: "reading neighbours".into(),
            source: e.into(),
        })? {
            let entry: NeighbourMessage = entry;
            let mut addr = None;
            let mut mac = None;
            for attribute in &entry.attributes {
                match attribute {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                        addr = Some(IpAddr::V4(a.to_owned()))
                    }
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                        addr = Some(IpAddr::V6(a.to_owned()))
                    }
                    NeighbourAttribute::LinkLocalAddress(bytes) => {
                        mac = <[u8; 6]>::try_from(bytes.as_slice()).ok()
                    }
                    _ => {}
                }
            }
            if let Some(addr) = addr {
                found.insert(
                    (entry.header.ifindex, addr),
                    Neighbour {
                        state: entry.header.state,
                        mac,
                    },
                );
            }
        }
        Ok(found)
    }

    /// Asks the kernel to resolve `addr` on `ifindex` as if a packet were
    /// waiting for it: creates the entry if missing and starts ARP/NDP.
    async fn probe(&mut self, ifindex: u32, addr: IpAddr) {
        let request = self
            .handle
            .neighbours()
            .add(ifindex, addr)
            .state(NeighbourState::None)
            .flags(NeighbourFlags::Use)
            .replace();
        if let Err(e) = request.execute().await {
            debug!(%addr, ifindex, error = %e, "asking for neighbour resolution");
        }
    }

    fn request(
        &mut self,
        message: NetlinkMessage<RouteNetlinkMessage>,
    ) -> Result<impl futures::Stream<Item = NetlinkMessage<RouteNetlinkMessage>> + use<>, Error>
    {
        self.handle.request(message).map_err(|e| Error::Netlink {
            what: "sending a request".into(),
            source: e.into(),
        })
    }
}

enum Route {
    None,
    Local,
    /// Out of `ifindex`, to `gateway` (the destination itself when on-link).
    Via {
        ifindex: u32,
        gateway: IpAddr,
    },
}

impl Route {
    fn from_reply(dst: IpAddr, reply: &RouteMessage) -> Route {
        match reply.header.kind {
            RouteType::Unicast => {}
            RouteType::Local => return Route::Local,
            _ => return Route::None,
        }
        let mut ifindex = None;
        let mut gateway = dst;
        for attribute in &reply.attributes {
            match attribute {
                RouteAttribute::Oif(i) => ifindex = Some(*i),
                RouteAttribute::Gateway(RouteAddress::Inet(a)) => gateway = IpAddr::V4(*a),
                RouteAttribute::Gateway(RouteAddress::Inet6(a)) => gateway = IpAddr::V6(*a),
                _ => {}
            }
        }
        match ifindex {
            Some(ifindex) => Route::Via { ifindex, gateway },
            None => Route::None,
        }
    }
}

struct Neighbour {
    state: NeighbourState,
    mac: Option<[u8; 6]>,
}

impl Neighbour {
    /// The MAC, if the kernel vouches for it.
    fn mac(&self) -> Option<[u8; 6]> {
        match self.state {
            NeighbourState::Reachable
            | NeighbourState::Stale
            | NeighbourState::Delay
            | NeighbourState::Probe
            | NeighbourState::Permanent => self.mac,
            _ => None,
        }
    }

    /// Whether to ask the kernel to (re)check this entry: it would if
    /// ordinary traffic used it.
    fn needs_probe(&self) -> bool {
        matches!(
            self.state,
            NeighbourState::None
                | NeighbourState::Incomplete
                | NeighbourState::Failed
                | NeighbourState::Stale
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_vouched_for_macs_count() {
        let mac = Some([2, 0, 0, 0, 0, 1]);
        for state in [
            NeighbourState::Reachable,
            NeighbourState::Stale,
            NeighbourState::Permanent,
        ] {
            assert_eq!(Neighbour { state, mac }.mac(), mac);
        }
        for state in [
            NeighbourState::Incomplete,
            NeighbourState::Failed,
            NeighbourState::None,
        ] {
            assert_eq!(Neighbour { state, mac }.mac(), None);
        }
        assert!(
            Neighbour {
                state: NeighbourState::Stale,
                mac
            }
            .needs_probe()
        );
        assert!(
            !Neighbour {
                state: NeighbourState::Reachable,
                mac
            }
            .needs_probe()
        );
    }

    #[test]
    fn a_route_reply_gives_the_gateway_or_the_destination() {
        let dst: IpAddr = "10.0.1.1".parse().unwrap();
        let mut reply = RouteMessage::default();
        reply.header.kind = RouteType::Unicast;
        reply.attributes.push(RouteAttribute::Oif(7));
        assert!(
            matches!(Route::from_reply(dst, &reply), Route::Via { ifindex: 7, gateway } if gateway == dst)
        );
        let gw: std::net::Ipv4Addr = "10.0.0.254".parse().unwrap();
        reply
            .attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gw)));
        assert!(
            matches!(Route::from_reply(dst, &reply), Route::Via { gateway, .. } if gateway == IpAddr::V4(gw))
        );
        reply.header.kind = RouteType::Local;
        assert!(matches!(Route::from_reply(dst, &reply), Route::Local));
        reply.header.kind = RouteType::Unreachable;
        assert!(matches!(Route::from_reply(dst, &reply), Route::None));
    }
}
