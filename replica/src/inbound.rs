//! The agent's Ames socket: every inbound packet the edge box copies here,
//! with the peer's lane, handed to the agent a batch at a time.

use ames::Lane;
use metrics::counter;
use tokio::sync::mpsc;

use crate::metrics as m;

/// Receives until the agent goes away. Truncated datagrams cannot be Ames
/// packets (the buffer holds any UDP datagram) and are not passed on.
pub async fn receive(socket: udp::BatchSocket, to: mpsc::Sender<Vec<(Lane, Vec<u8>)>>) {
    let mut batch = udp::RecvBatch::new();
    loop {
        match socket.recv(&mut batch).await {
            Ok(_) => {}
            // From recvmmsg itself: this batch only (the relay's rule too).
            Err(e) if e.raw_os_error().is_some() => {
                tracing::warn!(error = %e, "receiving inbound packets");
                continue;
            }
            // Waiting on the socket failed: retrying would only spin.
            Err(e) => {
                tracing::error!(error = %e, "the Ames socket broke; no more inbound packets");
                return;
            }
        }
        let packets: Vec<_> = batch
            .iter()
            .filter(|d| !d.truncated)
            .filter_map(|d| Some((Lane::from(d.source?), d.data.to_vec())))
            .collect();
        counter!(m::PACKETS).increment(packets.len() as u64);
        if to.send(packets).await.is_err() {
            return;
        }
    }
}
