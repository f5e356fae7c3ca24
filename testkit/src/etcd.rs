//! A real etcd server on loopback (or on an address inside a network
//! namespace), in its own data directory, for one test: as Seguro runs it
//! (TLS, client certificates required, and etcd's own authentication with a
//! role per identity), or plain (the peer the event log benchmark measures).

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use config::{ReplicaId, Role};
use trust::Files;

use crate::netns::{Netns, command_in, run_in};
use crate::pki::Pki;
use crate::process::{self, spawn_logged};
use crate::{free_port, wait};

/// etcd's root password in tests.
pub const ROOT_PASSWORD: &str = "seguro-test-root";

/// A single-member etcd cluster listening on free loopback ports. It is
/// killed and its data removed when dropped.
pub struct Etcd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// Where it listens for clients; its peer URL is on loopback.
    ip: IpAddr,
    client_port: u16,
    peer_port: u16,
    /// Where it answers `/health` in plain HTTP (beside the client port,
    /// which may require a client certificate).
    metrics_port: u16,
    /// The network namespace it runs in, if not the caller's.
    netns: Option<String>,
    /// Its certificate and the CA it trusts: clients must present one of
    /// that CA's certificates.
    tls: Option<Files>,
    /// Whether etcd's authentication is on: changes to users and roles are
    /// then root's.
    auth: bool,
}

impl Etcd {
    /// The etcd binary: `$SEGURO_ETCD`, else `etcd` on the PATH.
    pub fn binary() -> PathBuf {
        std::env::var_os("SEGURO_ETCD").map_or_else(|| PathBuf::from("etcd"), PathBuf::from)
    }

    /// Starts a plain etcd (no TLS, no authentication) on loopback and
    /// waits until it reports healthy.
    pub fn start() -> io::Result<Self> {
        Etcd::start_on_loopback(None)
    }

    /// Starts etcd as Seguro runs it, on loopback: TLS with `pki`'s etcd
    /// certificate, clients' certificates required and checked against its
    /// CA, and etcd's authentication on with [`Etcd::grant`]'s roles.
    pub fn start_tls(pki: &Pki, etcd_root: &str, replicas: &[ReplicaId]) -> io::Result<Self> {
        let mut etcd = Etcd::start_tls_open(pki)?;
        etcd.grant(pki, etcd_root, replicas)?;
        Ok(etcd)
    }

    /// [`Etcd::start_tls`] before any user or role exists and with etcd's
    /// authentication off, as a new etcd is (what `seguro etcd grant`
    /// starts from).
    pub fn start_tls_open(pki: &Pki) -> io::Result<Self> {
        Etcd::start_on_loopback(Some(pki.issue(Role::Etcd)?))
    }

    /// etcd on free loopback ports, serving TLS with `tls` if given.
    fn start_on_loopback(tls: Option<Files>) -> io::Result<Self> {
        let mut etcd = Etcd {
            child: None,
            dir: tempfile::tempdir()?,
            ip: Ipv4Addr::LOCALHOST.into(),
            client_port: free_port(),
            peer_port: free_port(),
            metrics_port: free_port(),
            netns: None,
            tls,
            auth: false,
        };
        etcd.spawn()?;
        Ok(etcd)
    }

    /// [`Etcd::start_tls`] inside `ns`, serving clients on `client` (an
    /// address of that namespace).
    pub fn start_tls_in(
        ns: &Netns,
        client: SocketAddr,
        pki: &Pki,
        etcd_root: &str,
        replicas: &[ReplicaId],
    ) -> io::Result<Self> {
        let mut etcd = Etcd {
            child: None,
            dir: tempfile::tempdir()?,
            ip: client.ip(),
            client_port: client.port(),
            // The namespace's own loopback: nothing else uses it.
            peer_port: 2380,
            metrics_port: 2381,
            netns: Some(ns.name().to_owned()),
            tls: Some(pki.issue(Role::Etcd)?),
            auth: false,
        };
        etcd.spawn()?;
        etcd.grant(pki, etcd_root, replicas)?;
        Ok(etcd)
    }

    /// Creates the cluster's etcd roles and users (`leadership::access`)
    /// for `replicas`, and turns etcd's authentication on: at first as the
    /// admin identity (authentication is off), later as etcd's root (its
    /// password is [`ROOT_PASSWORD`]), as an operator does after adding a
    /// replica.
    pub fn grant(&mut self, pki: &Pki, etcd_root: &str, replicas: &[ReplicaId]) -> io::Result<()> {
        let admin = pki.credentials(Role::Admin)?;
        let cluster = admin.identity().cluster.clone();
        let endpoints = vec![self.endpoint()];
        let options = if self.auth {
            leadership::access::as_root(ROOT_PASSWORD)
        } else {
            // No user of its own: the certificate's name is.
            leadership::election::ConnectOptions::new()
        };
        let ask = || -> io::Result<()> {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(async {
                    let mut client =
                        leadership::election::connect_with(&endpoints, &admin, options).await?;
                    leadership::access::grant(
                        &mut client,
                        &cluster,
                        etcd_root,
                        replicas,
                        ROOT_PASSWORD,
                    )
                    .await
                })
                .map_err(io::Error::other)
        };
        match &self.netns {
            Some(ns) => run_in(ns, ask)?,
            None => ask()?,
        }
        self.auth = true;
        Ok(())
    }

    /// A client of this (TLS) etcd as `role`, with `pki`'s credentials for
    /// it, as Seguro's parts connect.
    pub async fn client(&self, pki: &Pki, role: Role) -> io::Result<leadership::election::Client> {
        let credentials = pki.credentials(role)?;
        leadership::election::connect(&[self.endpoint()], &credentials)
            .await
            .map_err(io::Error::other)
    }

    /// The client URL: `https://IP:PORT` (`http://` for a plain etcd).
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", SocketAddr::new(self.ip, self.client_port))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server (SIGKILL) and reaps it; its data stays for a restart.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::kill(&mut child);
        }
    }

    /// Stops the server gracefully (SIGTERM) and reaps it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::terminate(&mut child, Duration::from_secs(10));
        }
    }

    /// Starts the server again on the same ports and data.
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        self.spawn()
    }

    fn spawn(&mut self) -> io::Result<()> {
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::File::create(self.dir.path().join("etcd.log"))?;
        let mut command = match &self.netns {
            Some(ns) => command_in(ns, Self::binary()),
            None => Command::new(Self::binary()),
        };
        command
            .arg("--name=test")
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            .arg(format!(
                "--listen-metrics-urls=http://{}",
                SocketAddr::new(self.ip, self.metrics_port)
            ))
            .arg("--log-level=warn");
        if let Some(tls) = &self.tls {
            command
                .arg(format!("--cert-file={}", tls.cert.display()))
                .arg(format!("--key-file={}", tls.key.display()))
                .arg(format!("--trusted-ca-file={}", tls.ca.display()))
                .arg("--client-cert-auth");
        }
        let child = spawn_logged(&mut command, log).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{e} (etcd: {}; run `make deps`)", Self::binary().display()),
            )
        })?;
        self.child = Some(child);
        self.wait_healthy(Duration::from_secs(20))
    }

    fn wait_healthy(&mut self, limit: Duration) -> io::Result<()> {
        let log = self.dir.path().join("etcd.log");
        let child = self.child.as_mut().expect("etcd was just spawned");
        let addr = SocketAddr::new(self.ip, self.metrics_port);
        let netns = self.netns.clone();
        let healthy = || is_healthy(addr, netns.as_deref());
        wait::until(limit, "etcd to report healthy", || {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                return Ok(Err(io::Error::other(format!(
                    "etcd exited with {status}:\n{log}"
                ))));
            }
            if healthy() {
                Ok(Ok(()))
            } else {
                Err("not yet")
            }
        })?
    }

    /// What etcd printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }

    #[cfg(test)]
    fn healthy(&self) -> bool {
        is_healthy(
            SocketAddr::new(self.ip, self.client_port),
            self.netns.as_deref(),
        )
    }
}

/// `GET /health` at `addr` (from inside `netns`) says `"health":"true"`.
fn is_healthy(addr: SocketAddr, netns: Option<&str>) -> bool {
    let ask = || {
        telemetry::http::get_blocking(addr, "/health", Duration::from_secs(1))
            .is_ok_and(|r| r.text().contains("\"health\":\"true\""))
    };
    match netns {
        Some(ns) => run_in(ns, ask),
        None => ask(),
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tls_etcd_lets_each_identity_touch_only_its_own_keys() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path().join("tls"), "c").unwrap();
        let ids: Vec<ReplicaId> = (1..=2).filter_map(ReplicaId::new).collect();
        let etcd = Etcd::start_tls(&pki, "/seguro/c", &ids).unwrap();
        assert!(etcd.endpoint().starts_with("https://"));
        let endpoints = vec![etcd.endpoint()];
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let replica = pki.credentials(Role::Replica(ids[0])).unwrap();
            let mut client = leadership::election::connect(&endpoints, &replica)
                .await
                .unwrap();
            client
                .put("/seguro/c/leader", "1", None)
                .await
                .expect("a replica writes the leader key");
            let err = client
                .put("/seguro/c/gatekeeper", "1", None)
                .await
                .unwrap_err();
            assert!(err.to_string().contains("permission denied"), "{err}");

            let edge = pki.credentials(Role::Edge).unwrap();
            let mut client = leadership::election::connect(&endpoints, &edge)
                .await
                .unwrap();
            let got = client.get("/seguro/c/leader", None).await.unwrap();
            assert_eq!(got.kvs()[0].value(), b"1");
            let err = client.put("/seguro/c/leader", "2", None).await.unwrap_err();
            assert!(err.to_string().contains("permission denied"), "{err}");
            client
                .put("/seguro/c/gatekeeper", "x", None)
                .await
                .expect("the edge box writes its own key");

            // Another CA's certificate gets no connection at all.
            let other = Pki::new(dir.path().join("other"), "c").unwrap();
            let stranger = other.credentials(Role::Replica(ids[0])).unwrap();
            let refused = async {
                let mut c = leadership::election::connect(&endpoints, &stranger)
                    .await
                    .map_err(|e| e.to_string())?;
                c.get("/seguro/c/leader", None)
                    .await
                    .map_err(|e| e.to_string())
            };
            assert!(refused.await.is_err());
        });
    }

    #[test]
    fn starts_answers_and_restarts() {
        let mut etcd = Etcd::start().expect("etcd starts");
        assert!(etcd.healthy());
        etcd.kill();
        assert!(!etcd.healthy());
        etcd.restart().unwrap();
        assert!(etcd.healthy());
        etcd.stop();
        assert!(etcd.pid().is_none());
    }
}
