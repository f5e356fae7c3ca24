//! gRPC channels to event log nodes over mutual TLS: one lazily connecting
//! HTTP/2 connection per address, shared by every user of that address (the
//! client's calls, and a node's Raft traffic to its peers). Each checks that
//! the node at the address is the replica it is meant to be.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use config::{Identity, ReplicaId, Role};
use tonic::transport::Channel;
use trust::Credentials;

/// A channel to each address, made on first use, presenting `credentials`.
#[derive(Clone)]
pub struct Channels {
    credentials: Credentials,
    map: Arc<Mutex<HashMap<(String, ReplicaId), Channel>>>,
}

/// An address that names no socket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an IP:PORT address")]
pub struct BadAddress(pub String);

impl Channels {
    pub fn new(credentials: Credentials) -> Channels {
        Channels {
            credentials,
            map: Arc::default(),
        }
    }

    /// The identity of replica `id` of this cluster.
    fn replica(&self, id: ReplicaId) -> Identity {
        Identity::new(
            self.credentials.identity().cluster.clone(),
            Role::Replica(id),
        )
    }

    /// The channel to replica `id`'s node at `addr`.
    pub fn get(&self, addr: &str, id: ReplicaId) -> Result<Channel, BadAddress> {
        let key = (addr.to_owned(), id);
        let mut map = self.map.lock().unwrap();
        if let Some(c) = map.get(&key) {
            return Ok(c.clone());
        }
        let socket: SocketAddr = addr.parse().map_err(|_| BadAddress(addr.to_owned()))?;
        // TCP_NODELAY is the connector's to set (tonic's option applies to
        // its own connector only).
        let c = trust::client::channel(socket, &self.replica(id), &self.credentials, |e| {
            e.connect_timeout(Duration::from_secs(1))
                .http2_keep_alive_interval(Duration::from_secs(5))
                .keep_alive_timeout(Duration::from_secs(5))
                .keep_alive_while_idle(true)
                // Batches and Raft entries are up to megabytes: HTTP/2's
                // default 64 KiB windows would stall each on flow control.
                .initial_stream_window_size(16 << 20)
                .initial_connection_window_size(64 << 20)
        });
        map.insert(key, c.clone());
        Ok(c)
    }
}
