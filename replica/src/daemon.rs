//! An agent wired to its sockets, its HTTP endpoint, etcd and the event
//! log: beside an in-process ship (`seguro replica`), or beside a runtime
//! behind the C ABI (the `seguro-replica-ffi` crate).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::OnceLock;

use config::{Config, Key, KeyError, ReplicaId};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use trust::Credentials;

use crate::agent::{Agent, AgentError, Parts, Settings};
use crate::checkpoint::CheckpointStore;
use crate::peer::PeerCheckpoint;
use crate::port::AgentPort;
use crate::runtime::{RuntimeError, ShipRuntime};
use crate::ship::Ship;
use crate::{http, inbound, peer, port};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("replica {0} is not in the config")]
    UnknownReplica(ReplicaId),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot serve metrics: {0}")]
    Metrics(#[source] telemetry::Error),
    #[error("cannot use etcd at {endpoints}: {source}")]
    Etcd {
        endpoints: String,
        source: leadership::ElectionError,
    },
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// Notices the runtime may have queued: a slow runtime slows the agent.
pub const NOTICE_QUEUE: usize = 4096;

/// Runs replica `id`'s agent with `ship` until `shutdown` is cancelled,
/// presenting `credentials` (replica `id`'s certificate) to the event log,
/// etcd and its peers.
pub async fn run(
    config: &Config,
    id: ReplicaId,
    credentials: Credentials,
    ship: Box<dyn Ship>,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    let (agent_port, runtime_port) = port::port(NOTICE_QUEUE);
    let wired = Wired::new(config, id, credentials.clone(), agent_port).await?;
    let peers = config
        .replicas
        .iter()
        .filter(|r| r.id != id)
        .map(|r| PeerCheckpoint {
            id: r.id,
            addr: r.checkpoint,
        })
        .collect();
    let runtime = ShipRuntime::new(
        ship,
        wired.store.clone(),
        runtime_port,
        config.agent.checkpoint_every,
        peers,
        credentials,
    );
    // The agent stops first (a leader resigns), then the runtime: stopped
    // together, the agent could find its runtime gone and fail.
    let runtime_stop = CancellationToken::new();
    let computing = tokio::spawn(runtime.run(runtime_stop.clone()));
    let result = wired.run(shutdown.clone()).await;
    // Without the agent the runtime has nothing to do; without the runtime
    // the agent has already stopped.
    runtime_stop.cancel();
    let computed = computing.await.unwrap_or(Ok(()));
    result?;
    Ok(computed?)
}

/// An agent with its sockets bound, its metrics and HTTP endpoint served
/// and etcd connected, waiting for [`Wired::run`]; the runtime is at the
/// other end of the [`AgentPort`] it was given, in-process
/// ([`ShipRuntime`]) or behind the C ABI.
pub struct Wired {
    agent: Agent,
    receiving: tokio::task::JoinHandle<()>,
    serving: Vec<tokio::task::JoinHandle<()>>,
    store: CheckpointStore,
}

impl Wired {
    /// Binds, serves and connects everything replica `id`'s agent needs;
    /// the errors an operator must fix come out here, before anything runs.
    pub async fn new(
        config: &Config,
        id: ReplicaId,
        credentials: Credentials,
        port: AgentPort,
    ) -> Result<Wired, DaemonError> {
        let me = config.replica(id).ok_or(DaemonError::UnknownReplica(id))?;
        let key = Key::load(&me.key_file)?;

        let metrics = recorder()?;
        let bind = |what, addr| async move {
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| DaemonError::Bind { what, addr, source })
        };
        let http = bind("the metrics endpoint", me.metrics).await?;
        let sharing = bind("the checkpoint listener", me.checkpoint).await?;
        let store = CheckpointStore::new(config.agent.node_dir(id))
            .with_max_bytes(config.agent.max_checkpoint_bytes);
        let serving = vec![
            tokio::spawn(async move {
                if let Err(e) = http::serve(http, metrics).await {
                    tracing::error!(error = %e, "the metrics endpoint stopped");
                }
            }),
            tokio::spawn(peer::serve(sharing, credentials.clone(), store.clone())),
        ];

        let opts = udp::SocketOptions {
            freebind: false,
            ..Default::default()
        };
        let ames = udp::BatchSocket::bind(me.ames, opts).map_err(|source| DaemonError::Bind {
            what: "the Ames socket",
            addr: me.ames,
            source,
        })?;
        let any: IpAddr = if config.gatekeeper.listen.is_ipv4() {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            Ipv6Addr::UNSPECIFIED.into()
        };
        let effects_from = SocketAddr::new(any, 0);
        let effects =
            udp::BatchSocket::bind(effects_from, opts).map_err(|source| DaemonError::Bind {
                what: "the effects socket",
                addr: effects_from,
                source,
            })?;

        let etcd = leadership::election::connect(&config.etcd.endpoints, &credentials)
            .await
            .map_err(|source| DaemonError::Etcd {
                endpoints: config.etcd.endpoints.join(","),
                source,
            })?;
        let election = leadership::Election::new(etcd, &config.etcd_root(), config.etcd.lease_ttl);

        let (inbound_tx, inbound_rx) = mpsc::channel(1024);
        let receiving = tokio::spawn(inbound::receive(ames, inbound_tx));
        let agent = Agent::new(Parts {
            settings: Settings {
                id,
                ttl: config.etcd.lease_ttl,
                max_run_ahead: config.agent.max_run_ahead as u64,
                buffer_packets: config.agent.buffer_packets,
                buffer_bytes: config.agent.buffer_bytes,
                gatekeeper: config.gatekeeper.listen,
                stateless_rate: config.gatekeeper.stateless_rate,
            },
            log: eventlog_client::Client::new(config, credentials.clone()),
            election,
            key,
            inbound: inbound_rx,
            effects,
            port,
        });
        tracing::info!(%id, ames = %me.ames, metrics = %me.metrics, checkpoint = %me.checkpoint, "replica agent starting");
        Ok(Wired {
            agent,
            receiving,
            serving,
            store,
        })
    }

    /// Runs the agent until `shutdown` is cancelled, the runtime goes away,
    /// or the event log breaks its promises.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), DaemonError> {
        let result = self.agent.run(shutdown).await;
        self.receiving.abort();
        for task in self.serving {
            task.abort();
        }
        Ok(result?)
    }
}

/// The process's metrics recorder, installed by the first agent: a C
/// runtime may start an agent again after a failed start or a stop.
fn recorder() -> Result<PrometheusHandle, DaemonError> {
    static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(handle) = RECORDER.get() {
        return Ok(handle.clone());
    }
    let handle = telemetry::install(Default::default(), "replica").map_err(DaemonError::Metrics)?;
    Ok(RECORDER.get_or_init(|| handle).clone())
}
