//! gRPC channels to event log nodes, one lazily connecting HTTP/2
//! connection per address, shared by every user of that address (the
//! client's calls, and a node's Raft traffic to its peers).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

/// A lazily connecting channel to each address, made on first use.
#[derive(Clone, Default)]
pub struct Channels {
    map: Arc<Mutex<HashMap<String, Channel>>>,
}

impl Channels {
    pub fn get(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        let mut map = self.map.lock().unwrap();
        if let Some(c) = map.get(addr) {
            return Ok(c.clone());
        }
        let c = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true)
            // Batches and Raft entries are up to megabytes: HTTP/2's default
            // 64 KiB windows would stall each on flow control.
            .initial_stream_window_size(16 << 20)
            .initial_connection_window_size(64 << 20)
            .connect_lazy();
        map.insert(addr.to_string(), c.clone());
        Ok(c)
    }
}
