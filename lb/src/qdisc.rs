//! Removing the `clsact` qdisc the loader added on kernels without TCX.
//!
//! Synchronous, over a plain netlink socket, because it also runs from
//! `Drop`, where there may be no async runtime.

use netlink_packet_core::{NLM_F_ACK, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::tc::{TcHandle, TcMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::Error;

/// Deletes `interface`'s clsact qdisc and every filter under it.
pub fn delete_clsact(interface: &str) -> Result<(), Error> {
    let fail = |what: &str, e: std::io::Error| Error::Attaching {
        what: format!("removing the clsact qdisc from {interface}: {what}"),
        source: e.into(),
    };
    let index = crate::interface_index(interface)?;
    let mut tc = TcMessage::with_index(index as i32);
    tc.header.parent = TcHandle::CLSACT;
    let mut request = NetlinkMessage::from(RouteNetlinkMessage::DelQueueDiscipline(tc));
    request.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    request.header.sequence_number = 1;
    request.finalize();
    let mut buf = vec![0; request.buffer_len()];
    request.serialize(&mut buf);

    let mut socket = Socket::new(NETLINK_ROUTE).map_err(|e| fail("socket", e))?;
    socket.bind_auto().map_err(|e| fail("bind", e))?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .map_err(|e| fail("connect", e))?;
    socket.send(&buf, 0).map_err(|e| fail("send", e))?;
    let mut reply = vec![0u8; 8192];
    let n = socket
        .recv(&mut &mut reply[..], 0)
        .map_err(|e| fail("recv", e))?;
    let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply[..n]).map_err(|e| {
        Error::Attaching {
            what: format!("removing the clsact qdisc from {interface}: reply"),
            source: e.into(),
        }
    })?;
    match reply.payload {
        NetlinkPayload::Error(e) if e.code.is_some() => Err(fail("kernel", e.to_io())),
        _ => Ok(()),
    }
}
