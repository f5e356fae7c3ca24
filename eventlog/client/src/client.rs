//! [`Client`], a handle on the event log cluster, and the options it runs
//! with; its calls are in the modules beside this one, one per concern.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use config::{BatchLimits, Config, ReplicaId};
use tonic::transport::Channel;
use trust::Credentials;

use crate::channels::Channels;
use crate::error::ClientError;
use crate::proto::admin_client::AdminClient;
use crate::proto::event_log_client::EventLogClient;

pub(crate) type Api = EventLogClient<Channel>;
pub(crate) type AdminApi = AdminClient<Channel>;

/// How a client batches, waits and retries.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// One attempt of a request (status, fence, membership...).
    pub request_timeout: Duration,
    /// How long a request keeps retrying (leader changes, restarts).
    pub deadline: Duration,
    /// How long an appended batch may take to commit before its events fail
    /// with [`AppendError::Timeout`](crate::AppendError::Timeout).
    pub append_timeout: Duration,
    /// How the [`Appender`](crate::Appender) merges events into batches
    /// (`[eventlog.batch]`).
    pub batch: BatchLimits,
    /// `eventlog.max_event_bytes`: larger events are refused at once.
    pub max_event_bytes: usize,
    /// Most batches an [`Appender`](crate::Appender) has in flight; further
    /// events wait and join the next batch.
    pub max_in_flight: usize,
}

impl ClientOptions {
    pub fn from_config(config: &Config) -> Self {
        ClientOptions {
            request_timeout: Duration::from_secs(5),
            deadline: Duration::from_secs(15),
            append_timeout: Duration::from_secs(15),
            batch: config.eventlog.batch,
            max_event_bytes: config.eventlog.max_event_bytes,
            max_in_flight: 64,
        }
    }
}

/// A handle on the event log cluster. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// Every node known, by address: the config's, then members learnt.
    pub endpoints: Mutex<Vec<String>>,
    /// Which replica each known address is: the identity its certificate
    /// must name.
    pub nodes: Mutex<HashMap<String, ReplicaId>>,
    pub channels: Channels,
    /// The leader's address, while it is believed.
    pub leader: Mutex<Option<String>>,
    pub opts: ClientOptions,
}

impl Client {
    /// A client of the cluster the config describes, presenting
    /// `credentials` to its nodes.
    pub fn new(config: &Config, credentials: Credentials) -> Client {
        let nodes = config.replicas.iter().map(|r| (r.id, r.eventlog)).collect();
        Client::with_options(nodes, credentials, ClientOptions::from_config(config))
    }

    /// A client of the nodes `nodes` (each replica's event log address).
    pub fn with_options(
        nodes: Vec<(ReplicaId, SocketAddr)>,
        credentials: Credentials,
        opts: ClientOptions,
    ) -> Client {
        Client {
            inner: Arc::new(Inner {
                endpoints: Mutex::new(nodes.iter().map(|(_, a)| a.to_string()).collect()),
                nodes: Mutex::new(nodes.iter().map(|(id, a)| (a.to_string(), *id)).collect()),
                channels: Channels::new(credentials),
                leader: Mutex::new(None),
                opts,
            }),
        }
    }

    pub fn options(&self) -> &ClientOptions {
        &self.inner.opts
    }

    /// The channel to the node at `addr`, which must be a node this client
    /// knows (the config's, or one a node named).
    fn channel(&self, addr: &str) -> Result<Channel, ClientError> {
        let id = self
            .inner
            .nodes
            .lock()
            .unwrap()
            .get(addr)
            .copied()
            .ok_or_else(|| {
                ClientError::Unavailable(format!("{addr} is no event log node this client knows"))
            })?;
        self.inner
            .channels
            .get(addr, id)
            .map_err(|e| ClientError::Unavailable(e.to_string()))
    }

    /// The event log API of the node at `addr`.
    pub(crate) fn api(&self, addr: &str) -> Result<Api, ClientError> {
        Ok(EventLogClient::new(self.channel(addr)?)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX))
    }

    /// The admin API of the node at `addr`.
    pub(crate) fn admin_api(&self, addr: &str) -> Result<AdminApi, ClientError> {
        Ok(AdminClient::new(self.channel(addr)?))
    }
}
