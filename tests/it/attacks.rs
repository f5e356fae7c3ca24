//! An attacker on the replica network, against a real cluster in network
//! namespaces with a real TLS etcd: every attack is refused, each refusal is
//! counted by reason where Seguro counts it, and the log, the membership and
//! the watermarks are as they were before (docs/SPEC.md §6.5).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use config::{Identity, ReplicaId, Role};
use eventlog::{Client, ClientOptions, EventNum};
use eventlog_client::Channels;
use eventlog_client::proto::admin_client::AdminClient;
use eventlog_client::proto::event_log_client::EventLogClient;
use eventlog_client::proto::raft_client::RaftClient;
use eventlog_client::proto::{self, RaftMessage, SnapshotChunk};
use testkit::Daemon;
use testkit::cluster::{ClusterLab, ClusterOptions};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tonic::Code;
use trust::issue::Validity;
use trust::{Credentials, Files};

fn rid(i: u8) -> ReplicaId {
    ReplicaId::new(i.into()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attack_is_refused_counted_and_changes_nothing() {
    testkit::require_root("builds network namespaces");
    tokio::task::block_in_place(run);
}

/// What the attacker knows and holds, all of it usable from the edge
/// namespace (the replica network).
struct Target {
    /// Each replica's event log node.
    nodes: Vec<(ReplicaId, SocketAddr)>,
    /// A replica that does not lead: the compromised agent.
    follower: ReplicaId,
    leader: ReplicaId,
    ca: std::path::PathBuf,
    admin: Credentials,
    edge: Credentials,
    agent: Credentials,
    /// A certificate naming replica 1 from another CA, with a bundle that
    /// trusts both (the cluster's CA certificate is no secret).
    forged: Files,
    /// Replica 1's identity, signed by the cluster's CA, but expired.
    expired: Files,
    replica_metrics: SocketAddr,
    checkpoint: SocketAddr,
    etcd: String,
    etcd_root: String,
    options: ClientOptions,
}

/// What no refused attack may change, as each node reports it.
#[derive(Debug, Clone, PartialEq)]
struct State {
    last_event: EventNum,
    highest_epoch: u64,
    members: Vec<(u32, bool)>,
    watermarks: Vec<(u32, EventNum)>,
}

fn run() {
    let mut c = ClusterLab::new(env!("CARGO_BIN_EXE_seguro"), &ClusterOptions::default())
        .expect("building the cluster");
    if let Err(e) = c.start_all() {
        panic!("starting the cluster: {e}\n{}", c.logs_tail(30));
    }
    // Events in the log, and a leader, before the attacks.
    let probe = c.probe(50, Duration::from_secs(2)).unwrap();
    probe.wait(Duration::from_secs(15));
    let report = probe.stop();
    assert!(
        !report.answers.is_empty(),
        "the ship never answered:\n{}",
        c.logs_tail(30)
    );
    let leader = c
        .wait_leader(Duration::from_secs(30))
        .expect("a leading replica");
    let follower = if leader == 1 { 2 } else { 1 };

    let pki = c.pki();
    let mut forged = testkit::Pki::new(c.dir().join("attacker-ca"), "demo")
        .unwrap()
        .issue(Role::Replica(rid(1)))
        .unwrap();
    let both = c.dir().join("attacker-ca/both.crt");
    let mut bundle = std::fs::read(pki.ca_path()).unwrap();
    bundle.extend(std::fs::read(&forged.ca).unwrap());
    std::fs::write(&both, bundle).unwrap();
    forged.ca = both;
    let expired = Files {
        ca: pki.ca_path(),
        cert: c.dir().join("expired.crt"),
        key: c.dir().join("expired.key"),
    };
    let day = Duration::from_secs(86_400);
    pki.issue_as(
        &pki.identity(Role::Replica(rid(1))),
        Validity {
            not_before: SystemTime::now() - 2 * day,
            not_after: SystemTime::now() - day,
        },
        &expired,
    )
    .unwrap();
    let target = Target {
        nodes: (1..=3).map(|i| (rid(i), c.eventlog_addr(i))).collect(),
        follower: rid(follower),
        leader: rid(leader),
        ca: pki.ca_path(),
        admin: c.credentials(Role::Admin),
        edge: c.credentials(Role::Edge),
        agent: c.credentials(Role::Replica(rid(follower))),
        forged,
        expired,
        replica_metrics: c.metrics_addr(&Daemon::Replica(follower)),
        checkpoint: c.checkpoint_addr(follower),
        etcd: c.etcd_endpoint(),
        etcd_root: "/seguro/demo".into(),
        options: ClientOptions::from_config(&testkit::load_config(&c.config_path())),
    };

    let before = c.lab.edge.run(|| runtime().block_on(settled(&target)));
    let node = Daemon::Eventlog(1);
    let counted = |c: &ClusterLab, daemon: &Daemon, metric: &str, reason: &str| {
        c.metric(daemon, &format!("{metric}{{reason=\"{reason}\"}}"))
            .unwrap_or(0.0)
    };
    const EVENTLOG: &str = "seguro_eventlog_auth_refused_total";
    const CHECKPOINT: &str = "seguro_replica_checkpoint_refused_total";
    let handshakes = ["no_certificate", "unknown_ca", "expired", "not_tls"];
    let first: BTreeMap<&str, f64> = handshakes
        .iter()
        .map(|r| (*r, counted(&c, &node, EVENTLOG, r)))
        .collect();
    let sum = |c: &ClusterLab, metric: &str, reason: &str| -> f64 {
        (1..=3)
            .map(|i| counted(c, &Daemon::Eventlog(i), metric, reason))
            .sum()
    };
    let not_allowed = sum(&c, EVENTLOG, "not_allowed");
    let other_replica = sum(&c, EVENTLOG, "other_replica");
    let not_holder = sum(&c, EVENTLOG, "not_epoch_holder");
    let agent = Daemon::Replica(follower);
    let not_a_replica = counted(&c, &agent, CHECKPOINT, "not_a_replica");
    let no_certificate = counted(&c, &agent, CHECKPOINT, "no_certificate");

    c.lab.edge.run(|| runtime().block_on(attack(&target)));

    let after = c.lab.edge.run(|| runtime().block_on(settled(&target)));
    assert_eq!(before, after, "an attack changed the log");
    for reason in handshakes {
        let now = counted(&c, &node, EVENTLOG, reason);
        assert!(
            now > first[reason],
            "{reason}: {now} refusals counted, {} before",
            first[reason]
        );
    }
    // The edge box's five calls, and the agent's own Add/Remove.
    assert!(sum(&c, EVENTLOG, "not_allowed") >= not_allowed + 7.0);
    assert!(sum(&c, EVENTLOG, "other_replica") > other_replica);
    assert!(sum(&c, EVENTLOG, "not_epoch_holder") >= not_holder + 2.0);
    assert!(counted(&c, &agent, CHECKPOINT, "not_a_replica") > not_a_replica);
    assert!(counted(&c, &agent, CHECKPOINT, "no_certificate") > no_certificate);
    // Refusals are logged with the peer's identity.
    let log = c.log(&Daemon::Eventlog(target.leader.get() as u8));
    assert!(
        log.contains("edge.demo.seguro") && log.contains("not_allowed"),
        "the leader's log names the refused peer:\n{log}"
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The cluster's state once two looks a second apart agree (the probe's
/// last events replicate, the agents report checkpoints).
async fn settled(t: &Target) -> Vec<State> {
    let admin = Client::with_options(t.nodes.clone(), t.admin.clone(), t.options.clone());
    let look = || async {
        let mut states = Vec::new();
        for (addr, status) in admin.cluster_status().await {
            let s = status.unwrap_or_else(|e| panic!("status of {addr}: {e}"));
            states.push(State {
                last_event: s.last_event,
                highest_epoch: s.highest_epoch.get(),
                members: s.members.iter().map(|m| (m.id, m.voter)).collect(),
                watermarks: s.watermarks.clone(),
            });
        }
        states
    };
    let mut last = look().await;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = look().await;
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("the cluster never settled: {last:?}");
}

/// Every attack, each asserted refused where the attacker sees it.
async fn attack(t: &Target) {
    let (one, node) = t.nodes[0];
    let replica_one = Identity::new("demo", Role::Replica(one));

    // Connections without an acceptable certificate never reach a service.
    let none = tls_client(&t.ca, None);
    assert!(
        refused_at_handshake(node, none.clone(), &replica_one).await,
        "no certificate"
    );
    let forged = tls_client(&t.forged.ca, Some(&t.forged));
    assert!(
        refused_at_handshake(node, forged.clone(), &replica_one).await,
        "another CA"
    );
    let expired = tls_client(&t.ca, Some(&t.expired));
    assert!(
        refused_at_handshake(node, expired, &replica_one).await,
        "expired"
    );
    assert!(plaintext_refused(node).await, "plaintext");

    // The edge box's identity may watch commits and read status: nothing
    // else.
    let edge = Channels::new(t.edge.clone());
    let leader_addr = t.nodes[t.leader.get() as usize - 1].1;
    let to_leader = edge.get(&leader_addr.to_string(), t.leader).unwrap();
    let mut api = EventLogClient::new(to_leader.clone());
    denied(
        api.fence(proto::FenceRequest { epoch: u64::MAX }).await,
        "edge: Fence",
    );
    let append = proto::AppendRequest {
        seq: 1,
        epoch: u64::MAX,
        first: 1,
        events: vec![proto::NewEvent {
            mug: 0,
            data: Bytes::from_static(b"forged"),
        }],
        retry: false,
    };
    let answered = match api.append(futures::stream::iter([append.clone()])).await {
        Ok(stream) => {
            let mut stream = stream.into_inner();
            futures::StreamExt::next(&mut stream)
                .await
                .expect("an answer")
                .map(drop)
        }
        Err(status) => Err(status),
    };
    denied(answered, "edge: Append");
    let mut admin = AdminClient::new(to_leader.clone());
    let watermark = proto::SetWatermarkRequest {
        replica: t.follower.get(),
        event: u64::MAX,
    };
    denied(admin.set_watermark(watermark).await, "edge: SetWatermark");
    let add = proto::AddReplicaRequest {
        id: 9,
        addr: "10.98.0.9:4710".into(),
    };
    denied(admin.add_replica(add.clone()).await, "edge: AddReplica");
    let mut raft = RaftClient::new(to_leader);
    denied(
        raft.vote(RaftMessage {
            data: Bytes::from_static(&[0; 16]),
        })
        .await,
        "edge: Raft Vote",
    );
    let chunk = SnapshotChunk {
        meta: Bytes::from_static(&[0; 16]),
        data: Bytes::from_static(&[0; 16]),
    };
    denied(
        raft.install_snapshot(futures::stream::iter([chunk])).await,
        "edge: InstallSnapshot",
    );

    // A compromised agent may act only as itself, and write only in an
    // epoch etcd says it holds.
    let agent = Channels::new(t.agent.clone());
    let to_leader = agent.get(&leader_addr.to_string(), t.leader).unwrap();
    let mut admin = AdminClient::new(to_leader.clone());
    denied(
        admin
            .set_watermark(proto::SetWatermarkRequest {
                replica: t.leader.get(),
                event: u64::MAX,
            })
            .await,
        "agent: another replica's watermark",
    );
    denied(admin.add_replica(add).await, "agent: AddReplica");
    denied(
        admin
            .remove_replica(proto::RemoveReplicaRequest { id: t.leader.get() })
            .await,
        "agent: RemoveReplica",
    );
    let mut api = EventLogClient::new(to_leader);
    denied(
        api.fence(proto::FenceRequest { epoch: u64::MAX }).await,
        "agent: a fence at an epoch it does not hold",
    );
    let held = current_epoch(t).await;
    denied(
        api.fence(proto::FenceRequest { epoch: held }).await,
        "agent: a fence at the leader's epoch",
    );

    // The metrics port serves metrics, and nothing else.
    let got = telemetry::http::get(t.replica_metrics, "/checkpoint", Duration::from_secs(5))
        .await
        .expect("the metrics port answers");
    assert_eq!(
        got.status.as_u16(),
        404,
        "GET /checkpoint on the metrics port"
    );
    // The checkpoint listener: not without a certificate, not for the edge.
    let replica = Identity::new("demo", Role::Replica(t.follower));
    assert!(refused_at_handshake(t.checkpoint, none.clone(), &replica).await);
    let edge_tls = t.edge.client_config();
    assert_eq!(
        checkpoint_status(t.checkpoint, edge_tls, &replica).await,
        Some(403),
        "the edge box asking for a checkpoint"
    );

    // etcd: not without a certificate, and each role only its own keys.
    let etcd_addr: SocketAddr = t.etcd.trim_start_matches("https://").parse().unwrap();
    let etcd = Identity::new("demo", Role::Etcd);
    assert!(
        refused_at_handshake(etcd_addr, none, &etcd).await,
        "etcd: no certificate"
    );
    assert!(
        refused_at_handshake(etcd_addr, forged, &etcd).await,
        "etcd: another CA"
    );
    let leader_key = format!("{}/leader", t.etcd_root);
    let mut as_edge = leadership::election::connect(std::slice::from_ref(&t.etcd), &t.edge)
        .await
        .unwrap();
    let err = as_edge
        .put(leader_key.as_str(), "2", None)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("permission denied"),
        "edge writing the leader key: {err}"
    );
    let err = as_edge.delete(leader_key.as_str(), None).await.unwrap_err();
    assert!(
        err.to_string().contains("permission denied"),
        "edge deleting the leader key: {err}"
    );
    let mut as_agent = leadership::election::connect(std::slice::from_ref(&t.etcd), &t.agent)
        .await
        .unwrap();
    let gatekeeper_key = format!("{}/gatekeeper", t.etcd_root);
    let err = as_agent
        .put(gatekeeper_key.as_str(), "x", None)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("permission denied"),
        "a replica writing the gatekeeper key: {err}"
    );
    let still = as_edge.get(leader_key.as_str(), None).await.unwrap();
    assert_eq!(
        still.kvs().first().map(|kv| kv.value().to_vec()),
        Some(t.leader.get().to_string().into_bytes()),
        "the leader key is the leader's"
    );
}

/// The epoch the leader holds, as etcd says.
async fn current_epoch(t: &Target) -> u64 {
    let etcd = leadership::election::connect(std::slice::from_ref(&t.etcd), &t.admin)
        .await
        .unwrap();
    let term = leadership::Election::new(etcd, &t.etcd_root, Duration::from_secs(2))
        .current(Duration::from_secs(5))
        .await
        .unwrap()
        .expect("a leader");
    assert_eq!(term.leader, t.leader);
    term.epoch.get()
}

fn denied<T: std::fmt::Debug>(answer: Result<T, tonic::Status>, what: &str) {
    match answer {
        Err(s) if s.code() == Code::PermissionDenied => {}
        other => panic!("{what}: expected PermissionDenied, got {other:?}"),
    }
}

/// A TLS client trusting `ca`, presenting `cert` if any, built by hand:
/// the attacker's, with none of [`Credentials`]' checks.
fn tls_client(ca: &Path, cert: Option<&Files>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in trust::pem::certificates(ca).unwrap() {
        roots.add(c).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut config = match cert {
        None => builder.with_no_client_auth(),
        Some(files) => builder
            .with_client_auth_cert(
                trust::pem::certificates(&files.cert).unwrap(),
                trust::pem::private_key(&files.key).unwrap(),
            )
            .unwrap(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// Whether the server at `addr` refuses a TLS client with `config`: the
/// handshake fails, or the server closes the connection without a byte of
/// HTTP/2 (a server that accepted sends its SETTINGS at once).
async fn refused_at_handshake(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    server: &Identity,
) -> bool {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from(server.dns_name()).unwrap();
    let connecting = tokio_rustls::TlsConnector::from(config).connect(name, tcp);
    let Ok(mut tls) = connecting.await else {
        return true;
    };
    let hello = tls
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await;
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf)).await;
    hello.is_err() || !matches!(read, Ok(Ok(n)) if http2_settings(&buf[..n]))
}

/// Whether `bytes` start with an HTTP/2 SETTINGS frame: what a server that
/// took the connection sends first.
fn http2_settings(bytes: &[u8]) -> bool {
    bytes.len() >= 9 && bytes[3] == 0x4
}

/// Whether a plaintext HTTP/2 client at `addr` is refused: no answer, or a
/// TLS alert.
async fn plaintext_refused(addr: SocketAddr) -> bool {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let _ = tcp
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await;
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await;
    !matches!(read, Ok(Ok(n)) if http2_settings(&buf[..n]))
}

/// The HTTP status a checkpoint request over TLS with `config` gets.
async fn checkpoint_status(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    server: &Identity,
) -> Option<u16> {
    let tcp = TcpStream::connect(addr).await.ok()?;
    let name = rustls_pki_types::ServerName::try_from(server.dns_name()).unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .ok()?;
    tls.write_all(
        format!("GET /checkpoint HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .ok()?;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}
