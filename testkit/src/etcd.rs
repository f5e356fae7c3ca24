//! A real etcd server on loopback (or on an address inside a network
//! namespace), in its own data directory, for one test: as Seguro runs it
//! (TLS, client certificates required, and etcd's own authentication with a
//! role per identity), or plain (the peer the event log benchmark measures);
//! snapshots of it, and restoring one (etcd's history going back).

use std::io;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use config::{ReplicaId, Role};
use leadership::election::{Client, ConnectOptions};
use trust::{Credentials, Files};

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
    /// The certificate [`Etcd::snapshot`] and [`Etcd::restore`] present
    /// to a TLS etcd (the admin's; with etcd's authentication on they log in
    /// as root).
    operator: Option<Credentials>,
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
        let operator = pki.credentials(Role::Admin)?;
        let mut etcd = Etcd::on_loopback(Some(pki.issue(Role::Etcd)?))?;
        etcd.operator = Some(operator);
        etcd.spawn()?;
        Ok(etcd)
    }

    /// etcd on free loopback ports, serving TLS with `tls` if given.
    fn start_on_loopback(tls: Option<Files>) -> io::Result<Self> {
        let mut etcd = Etcd::on_loopback(tls)?;
        etcd.spawn()?;
        Ok(etcd)
    }

    /// An etcd on free loopback ports, not started yet.
    fn on_loopback(tls: Option<Files>) -> io::Result<Self> {
        Ok(Etcd {
            child: None,
            dir: tempfile::tempdir()?,
            ip: Ipv4Addr::LOCALHOST.into(),
            client_port: free_port(),
            peer_port: free_port(),
            metrics_port: free_port(),
            netns: None,
            tls,
            auth: false,
            operator: None,
        })
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
            operator: Some(pki.credentials(Role::Admin)?),
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

    /// etcd's own binaries beside the server's: `$SEGURO_ETCDUTL`, else the
    /// `etcdutl` in the directory [`Etcd::binary`] really is in (a link to
    /// it may stand alone on the PATH), else `etcdutl` on the PATH.
    pub fn etcdutl() -> PathBuf {
        if let Some(p) = std::env::var_os("SEGURO_ETCDUTL") {
            return PathBuf::from(p);
        }
        let beside = which(&Self::binary())
            .and_then(|p| std::fs::canonicalize(p).ok())
            .map(|p| p.with_file_name("etcdutl"))
            .filter(|p| p.is_file());
        beside.unwrap_or_else(|| PathBuf::from("etcdutl"))
    }

    /// Saves a snapshot of etcd's keyspace to `path`, as `etcdctl snapshot
    /// save` does: over the client port, as root once authentication is on
    /// (a TLS etcd is reached with the admin's certificate). etcd appends
    /// its checksum, which [`Etcd::restore`] checks.
    pub fn snapshot(&self, path: &Path) -> io::Result<()> {
        let mut file = std::fs::File::create(path)?;
        let blob = self.as_operator(async |client: &mut Client| {
            let mut stream = client.snapshot().await?;
            let mut blob = Vec::new();
            while let Some(part) = stream.message().await? {
                blob.extend_from_slice(part.blob());
            }
            Ok(blob)
        })?;
        file.write_all(&blob)?;
        file.sync_all()
    }

    /// Replaces etcd by one restored from `snapshot` ([`Etcd::snapshot`]):
    /// kills it, restores the snapshot into a fresh data directory with
    /// `etcdutl snapshot restore`, and starts it again on the same
    /// addresses with the same TLS settings (users, roles and whether
    /// authentication is on come back from the snapshot). Its revision is
    /// the snapshot's again: the history since is gone, as after an
    /// operator restores an old backup.
    ///
    /// `bump_revision` raises the revision by that much after the restore,
    /// as etcdutl's `--bump-revision N --mark-compacted` does (etcd 3.5.10
    /// and later), so that what etcd hands out next is past what it had
    /// handed out before. An etcdutl without those flags (etcd 3.5.1, what
    /// `make deps` installs) gets the same effect from writes: N changes to
    /// a scratch key, then a compaction of the history below them.
    pub fn restore(&mut self, snapshot: &Path, bump_revision: Option<u64>) -> io::Result<()> {
        let bump = bump_revision.filter(|&n| n > 0);
        let native = bump.is_some() && etcdutl_bumps()?;
        self.kill();
        let data = self.data_dir();
        if data.exists() {
            std::fs::remove_dir_all(&data)?;
        }
        let peer = self.peer_url();
        let mut command = Command::new(Self::etcdutl());
        command
            .args(["snapshot", "restore"])
            .arg(snapshot)
            .arg(format!("--data-dir={}", data.display()))
            .arg("--name=test")
            .arg(format!("--initial-cluster=test={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"));
        if let Some(n) = bump.filter(|_| native) {
            command
                .arg(format!("--bump-revision={n}"))
                .arg("--mark-compacted");
        }
        let out = command.output().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{e} (etcdutl: {})", Self::etcdutl().display()),
            )
        })?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "etcdutl snapshot restore failed with {}:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        self.spawn()?;
        match bump {
            Some(n) if !native => self.bump_by_writes(n),
            _ => Ok(()),
        }
    }

    /// Raises etcd's revision by `n` with `n` changes to a scratch key (the
    /// last one deletes it), then compacts the history below, as etcdutl's
    /// `--bump-revision n --mark-compacted` would have.
    fn bump_by_writes(&self, n: u64) -> io::Result<()> {
        const KEY: &str = "/seguro-testkit/bump-revision";
        self.as_operator(async |client: &mut Client| {
            let mut done = 0;
            // Puts in flight together: each is its own revision all the same.
            while done + 1 < n {
                let batch = (n - 1 - done).min(64);
                let puts = (0..batch).map(|_| {
                    let mut c = client.clone();
                    async move { c.put(KEY, "", None).await }
                });
                for put in futures::future::join_all(puts).await {
                    put?;
                }
                done += batch;
            }
            let deleted = client.delete(KEY, None).await?;
            let revision = deleted.header().map_or(0, |h| h.revision());
            client.compact(revision, None).await?;
            Ok(())
        })
    }

    /// Runs `ask` with a client that may do anything: etcd's root (or
    /// anyone, while authentication is off), from etcd's namespace.
    fn as_operator<T: Send>(
        &self,
        ask: impl AsyncFnOnce(&mut Client) -> Result<T, leadership::ElectionError> + Send,
    ) -> io::Result<T> {
        let endpoint = self.endpoint();
        let options = || {
            if self.auth {
                leadership::access::as_root(ROOT_PASSWORD)
            } else {
                ConnectOptions::new()
            }
        };
        let run = || -> io::Result<T> {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(async {
                    let mut client = match &self.operator {
                        Some(operator) => {
                            leadership::election::connect_with(&[endpoint], operator, options())
                                .await
                                .map_err(io::Error::other)?
                        }
                        None => Client::connect([endpoint], Some(options()))
                            .await
                            .map_err(io::Error::other)?,
                    };
                    ask(&mut client).await.map_err(io::Error::other)
                })
        };
        match &self.netns {
            Some(ns) => run_in(ns, run),
            None => run(),
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    fn spawn(&mut self) -> io::Result<()> {
        let client = self.endpoint();
        let peer = self.peer_url();
        let log = std::fs::File::create(self.dir.path().join("etcd.log"))?;
        let mut command = match &self.netns {
            Some(ns) => command_in(ns, Self::binary()),
            None => Command::new(Self::binary()),
        };
        command
            .arg("--name=test")
            .arg(format!("--data-dir={}", self.data_dir().display()))
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

/// Whether the installed etcdutl restores with `--bump-revision` (etcd
/// 3.5.10 and later).
fn etcdutl_bumps() -> io::Result<bool> {
    let help = Command::new(Etcd::etcdutl())
        .args(["snapshot", "restore", "--help"])
        .output()?;
    Ok(String::from_utf8_lossy(&help.stdout).contains("--bump-revision"))
}

/// Where `program` is: itself if it names a path, else the first match on
/// the PATH.
fn which(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return Some(program.to_owned());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
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

    /// etcd's history going back (docs/DEPLOY.md, "etcd restored from an
    /// older snapshot"): epochs are the leader key's creation revisions, so
    /// after a restore the next term's epoch is below those handed out
    /// since the snapshot, indeed one of them again; bumping the revision
    /// past them at the restore puts the next epoch above.
    #[test]
    fn a_restored_snapshot_takes_epochs_back_unless_the_revision_is_bumped() {
        use leadership::Election;
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path().join("tls"), "c").unwrap();
        let ids: Vec<ReplicaId> = (1..=2).filter_map(ReplicaId::new).collect();
        let mut etcd = Etcd::start_tls(&pki, "/seguro/c", &ids).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // One term, won and resigned: its epoch.
        let term = |etcd: &Etcd| {
            rt.block_on(async {
                let client = etcd.client(&pki, Role::Replica(ids[0])).await.unwrap();
                let election = Election::new(client, "/seguro/c", Duration::from_secs(2));
                let won = tokio::time::timeout(Duration::from_secs(20), election.campaign(ids[0]))
                    .await
                    .expect("the campaign wins within 20 s");
                let epoch = won.epoch();
                won.resign().await.unwrap();
                epoch
            })
        };
        term(&etcd);
        let snapshot = dir.path().join("etcd.snapshot");
        etcd.snapshot(&snapshot).unwrap();
        let since: Vec<_> = (0..3).map(|_| term(&etcd)).collect();
        let highest = *since.last().unwrap();

        etcd.restore(&snapshot, None).unwrap();
        let rolled_back = term(&etcd);
        assert!(rolled_back < highest, "{rolled_back} after {since:?}");
        assert_eq!(
            rolled_back, since[0],
            "the restored etcd hands out the first epoch after the snapshot again"
        );

        etcd.restore(&snapshot, Some(highest.get())).unwrap();
        let bumped = term(&etcd);
        assert!(bumped > highest, "{bumped} after {since:?}");
        // Users, roles and authentication came back with the snapshot.
        let edge = rt.block_on(async {
            let mut client = etcd.client(&pki, Role::Edge).await.unwrap();
            client.put("/seguro/c/leader", "2", None).await
        });
        let refused = edge.unwrap_err().to_string();
        assert!(refused.contains("permission denied"), "{refused}");
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
