//! [`Client`], a handle on the event log cluster, and the options it runs
//! with; its calls are in the modules beside this one, one per concern.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use config::{BatchLimits, Config, Key};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::auth::Signer;
use crate::channels::Channels;
use crate::error::ClientError;
use crate::proto::admin_client::AdminClient;
use crate::proto::event_log_client::EventLogClient;

/// The authenticated channel every call goes through.
type Authed = InterceptedService<Channel, Signer>;
pub(crate) type Api = EventLogClient<Authed>;
pub(crate) type AdminApi = AdminClient<Authed>;

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
    /// Every node address known: the config's, then members learnt.
    pub endpoints: Mutex<Vec<String>>,
    pub signer: Signer,
    pub channels: Channels,
    /// The leader's address, while it is believed.
    pub leader: Mutex<Option<String>>,
    pub opts: ClientOptions,
}

impl Client {
    /// A client of the cluster the config describes, authenticating with the
    /// event log secret.
    pub fn new(config: &Config, key: Key) -> Client {
        let endpoints = config
            .replicas
            .iter()
            .map(|r| r.eventlog.to_string())
            .collect();
        Client::with_options(endpoints, key, ClientOptions::from_config(config))
    }

    pub fn with_options(endpoints: Vec<String>, key: Key, opts: ClientOptions) -> Client {
        Client {
            inner: Arc::new(Inner {
                endpoints: Mutex::new(endpoints),
                signer: Signer::new(key, 0),
                channels: Channels::default(),
                leader: Mutex::new(None),
                opts,
            }),
        }
    }

    pub fn options(&self) -> &ClientOptions {
        &self.inner.opts
    }

    fn authed(&self, addr: &str) -> Result<Authed, ClientError> {
        let channel = self
            .inner
            .channels
            .get(addr)
            .map_err(|e| ClientError::Unavailable(format!("bad address {addr}: {e}")))?;
        Ok(InterceptedService::new(channel, self.inner.signer.clone()))
    }

    /// The event log API of the node at `addr`.
    pub(crate) fn api(&self, addr: &str) -> Result<Api, ClientError> {
        Ok(EventLogClient::new(self.authed(addr)?)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX))
    }

    /// The admin API of the node at `addr`.
    pub(crate) fn admin_api(&self, addr: &str) -> Result<AdminApi, ClientError> {
        Ok(AdminClient::new(self.authed(addr)?))
    }
}
