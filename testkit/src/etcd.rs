//! A real etcd server on loopback (or on an address inside a network
//! namespace), in its own data directory, for one test.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use crate::netns::{Netns, command_in, run_in};
use crate::process::{self, spawn_logged};
use crate::{free_port, wait};

/// A single-member etcd cluster listening on free loopback ports. It is
/// killed and its data removed when dropped.
pub struct Etcd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// Where it listens for clients; its peer URL is on loopback.
    ip: IpAddr,
    client_port: u16,
    peer_port: u16,
    /// The network namespace it runs in, if not the caller's.
    netns: Option<String>,
}

impl Etcd {
    /// The etcd binary: `$SEGURO_ETCD`, else `etcd` on the PATH.
    pub fn binary() -> PathBuf {
        std::env::var_os("SEGURO_ETCD").map_or_else(|| PathBuf::from("etcd"), PathBuf::from)
    }

    /// Starts etcd and waits until it reports healthy.
    pub fn start() -> io::Result<Self> {
        let mut etcd = Etcd {
            child: None,
            dir: tempfile::tempdir()?,
            ip: Ipv4Addr::LOCALHOST.into(),
            client_port: free_port(),
            peer_port: free_port(),
            netns: None,
        };
        etcd.spawn()?;
        Ok(etcd)
    }

    /// Starts etcd inside `ns`, serving clients on `client` (an address of
    /// that namespace), and waits until it reports healthy.
    pub fn start_in(ns: &Netns, client: SocketAddr) -> io::Result<Self> {
        let mut etcd = Etcd {
            child: None,
            dir: tempfile::tempdir()?,
            ip: client.ip(),
            client_port: client.port(),
            // The namespace's own loopback: nothing else uses it.
            peer_port: 2380,
            netns: Some(ns.name().to_owned()),
        };
        etcd.spawn()?;
        Ok(etcd)
    }

    /// The client URL, `http://IP:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", SocketAddr::new(self.ip, self.client_port))
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
            .arg("--log-level=warn");
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
        let addr = SocketAddr::new(self.ip, self.client_port);
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
