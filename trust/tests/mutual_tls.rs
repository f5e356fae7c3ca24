//! The listener and the connector against each other on loopback: a client
//! with a certificate of the cluster's CA gets through and is known by its
//! identity; a client of another CA, without a certificate, with an expired
//! one, or speaking plaintext is refused and counted; a client that reaches
//! the wrong server refuses it.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use config::{Identity, ReplicaId, Role};
use futures::StreamExt as _;
use seguro_trust::issue::{Authority, LEAF_VALIDITY, Validity, write_new};
use seguro_trust::server::{Refused, incoming};
use seguro_trust::{Credentials, Files};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tower_service::Service as _;

fn replica(id: u32) -> Identity {
    Identity::new("c", Role::Replica(ReplicaId::new(id).unwrap()))
}

fn credentials(
    dir: &Path,
    ca: &Authority,
    ca_file: &Path,
    who: &Identity,
    validity: Validity,
) -> Files {
    let issued = ca.issue(who, validity).unwrap();
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let cert = dir.join(format!("{who}-{n}.crt"));
    let key = dir.join(format!("{who}-{n}.key"));
    write_new(&cert, &issued.cert_pem).unwrap();
    write_new(&key, &issued.key_pem).unwrap();
    Files {
        ca: ca_file.to_owned(),
        cert,
        key,
    }
}

#[tokio::test]
async fn only_clients_that_prove_an_identity_get_through() {
    let dir = tempfile::tempdir().unwrap();
    let now = || Validity::from_now(LEAF_VALIDITY);
    let ca = Authority::create("c", now()).unwrap();
    let ca_file = dir.path().join("ca.crt");
    write_new(&ca_file, ca.cert_pem()).unwrap();

    let server = Credentials::load(
        replica(1),
        credentials(dir.path(), &ca, &ca_file, &replica(1), now()),
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let refused = Arc::new(Mutex::new(Vec::new()));
    let seen = refused.clone();
    let mut accepted = Box::pin(incoming(listener, server, move |r| {
        seen.lock().unwrap().push(r.reason)
    }));
    // Echo the peer's identity back to it.
    tokio::spawn(async move {
        while let Some(Ok(mut tls)) = accepted.next().await {
            let who = seguro_trust::peer::identity_of(tls.get_ref().1.peer_certificates().unwrap());
            let _ = tls
                .write_all(format!("{}\n", who.unwrap()).as_bytes())
                .await;
            let _ = tls.shutdown().await;
        }
    });
    let ask = |files: Files, who: Identity, server: Identity| async move {
        let creds = Credentials::load(who, files).unwrap();
        let mut connector = seguro_trust::client::Connector::new(creds, &server);
        let uri: tonic::transport::Uri = format!("http://{addr}").parse().unwrap();
        let mut io = connector.call(uri).await?.into_inner();
        let mut out = String::new();
        io.read_to_string(&mut out).await?;
        std::io::Result::Ok(out)
    };

    // A replica and the edge box of this cluster get through, as themselves.
    let two = credentials(dir.path(), &ca, &ca_file, &replica(2), now());
    assert_eq!(
        ask(two, replica(2), replica(1)).await.unwrap(),
        "replica-2.c.seguro\n"
    );
    let edge = Identity::new("c", Role::Edge);
    let edge_files = credentials(dir.path(), &ca, &ca_file, &edge, now());
    assert_eq!(
        ask(edge_files.clone(), edge.clone(), replica(1))
            .await
            .unwrap(),
        "edge.c.seguro\n"
    );
    // Expecting another server, the client refuses this one (and the server
    // counts the aborted handshake).
    assert!(ask(edge_files, edge.clone(), replica(3)).await.is_err());

    // Another CA's certificate: the client trusts our CA, the server does
    // not trust the client's.
    let other = Authority::create("c", now()).unwrap();
    let mut bundle = ca.cert_pem().to_owned();
    bundle.push_str(other.cert_pem());
    let both = dir.path().join("both.crt");
    write_new(&both, &bundle).unwrap();
    let foreign = credentials(dir.path(), &other, &both, &replica(2), now());
    assert!(ask(foreign, replica(2), replica(1)).await.is_err());

    // An expired certificate, signed by our CA: refused by the server.
    let expired = Validity {
        not_before: SystemTime::now() - Duration::from_secs(7200),
        not_after: SystemTime::now() - Duration::from_secs(3600),
    };
    let old = credentials(dir.path(), &ca, &ca_file, &replica(3), expired);
    let client = old_client(&old);
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("replica-1.c.seguro").unwrap();
    let mut tls = client.connect(name, tcp).await.unwrap();
    let mut out = String::new();
    assert!(tls.read_to_string(&mut out).await.is_err() || out.is_empty());

    // No certificate at all, and plaintext.
    let anonymous = anonymous_client(&ca_file);
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("replica-1.c.seguro").unwrap();
    let mut tls = anonymous.connect(name, tcp).await.unwrap();
    let mut out = String::new();
    assert!(tls.read_to_string(&mut out).await.is_err() || out.is_empty());
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    let _ = plain.read_to_end(&mut out).await;
    assert!(!String::from_utf8_lossy(&out).contains("seguro"));

    testkit_wait(|| refused.lock().unwrap().len() >= 5).await;
    let mut reasons = refused.lock().unwrap().clone();
    reasons.sort_by_key(|r| r.label());
    assert_eq!(
        reasons,
        [
            Refused::Expired,
            Refused::Handshake,
            Refused::NoCertificate,
            Refused::NotTls,
            Refused::UnknownCa
        ]
    );
}

/// A client that presents `files`' certificate without checking it first
/// (as an attacker with an expired one would).
fn old_client(files: &Files) -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in seguro_trust::pem::certificates(&files.ca).unwrap() {
        roots.add(ca).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            seguro_trust::pem::certificates(&files.cert).unwrap(),
            seguro_trust::pem::private_key(&files.key).unwrap(),
        )
        .unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// A client that trusts the CA but presents no certificate.
fn anonymous_client(ca: &Path) -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in seguro_trust::pem::certificates(ca).unwrap() {
        roots.add(ca).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn testkit_wait(done: impl Fn() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the refusals were never all counted");
}

/// A member that accepts the connection but never answers the handshake
/// (hung, or a black hole behind a load balancer) costs the failover
/// connector its per-target time, and the next member is tried.
#[tokio::test]
async fn a_hanging_target_does_not_hide_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let now = || Validity::from_now(LEAF_VALIDITY);
    let ca = Authority::create("c", now()).unwrap();
    let ca_file = dir.path().join("ca.crt");
    write_new(&ca_file, ca.cert_pem()).unwrap();
    let server = Credentials::load(
        replica(1),
        credentials(dir.path(), &ca, &ca_file, &replica(1), now()),
    )
    .unwrap();
    let client = Credentials::load(
        replica(2),
        credentials(dir.path(), &ca, &ca_file, &replica(2), now()),
    )
    .unwrap();
    // The kernel completes the TCP handshake; nobody ever reads.
    let hung = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let good = listener.local_addr().unwrap();
    let mut accepted = Box::pin(incoming(listener, server, |_| {}));
    tokio::spawn(async move {
        while let Some(Ok(mut tls)) = accepted.next().await {
            let _ = tls.write_all(b"hello\n").await;
            let _ = tls.shutdown().await;
        }
    });
    let each = Duration::from_millis(300);
    let mut connector = seguro_trust::client::Connector::new(client, &replica(1)).with_targets(
        vec![hung.local_addr().unwrap().to_string(), good.to_string()],
        each,
    );
    let uri: tonic::transport::Uri = "http://failover.invalid".parse().unwrap();
    let started = std::time::Instant::now();
    let mut io = tokio::time::timeout(Duration::from_secs(10), connector.call(uri))
        .await
        .expect("the connector gives up on the hung target")
        .unwrap()
        .into_inner();
    assert!(started.elapsed() >= each, "the hung target was tried first");
    let mut out = String::new();
    io.read_to_string(&mut out).await.unwrap();
    assert_eq!(out, "hello\n");
    drop(hung);
}
