//! Network namespaces for tests that need a real topology: veth links,
//! addresses, routes, sysctls, commands and closures run inside. Each
//! namespace is named uniquely (process id and a counter), so tests run in
//! parallel, and is deleted when its [`Netns`] is dropped, even on panic; the
//! links inside go with it.
//!
//! Everything goes through iproute2 (`ip`), which the test machines have
//! (scripts/deps.sh installs it), and needs root.

use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A network namespace that lives as long as this value.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace called `sg<pid>-<n>-<role>` with its loopback up.
    ///
    /// Panics, saying why, if the namespace cannot be made (not root, no
    /// iproute2): a test that needs one cannot run without it.
    pub fn new(role: &str) -> Netns {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Netns::named(&format!("sg{}-{n}-{role}", std::process::id()))
    }

    /// Creates a namespace called exactly `name` (a demo's, which users
    /// type); panics if it exists.
    pub fn named(name: &str) -> Netns {
        run(Command::new("ip").args(["netns", "add", name]));
        let ns = Netns {
            name: name.to_owned(),
        };
        ns.ip(&["link", "set", "lo", "up"]);
        // Links made later get usable IPv6 link-local addresses at once:
        // duplicate address detection would hold them "tentative" for a
        // second or two, and neighbour discovery fails meanwhile.
        ns.sysctl("net.ipv6.conf.default.accept_dad", "0");
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <ns> <args>`; panics with its stderr if it fails.
    pub fn ip(&self, args: &[&str]) -> Output {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// A command that runs `program` inside the namespace (`ip netns exec`,
    /// which also gives it the namespace's /sys).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        command_in(&self.name, program)
    }

    /// Runs `program args` inside the namespace; panics with its stderr if it
    /// fails.
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        run(self.command(program).args(args))
    }

    /// Sets a sysctl in this namespace's own `net.*` tree.
    pub fn sysctl(&self, key: &str, value: &str) {
        self.exec("sysctl", &["-qw", &format!("{key}={value}")]);
    }

    /// Adds `cidr` (e.g. `10.0.0.1/24` or `fd00::1/64`) to `dev`. IPv6
    /// addresses skip duplicate address detection, so they are usable at
    /// once (see [`Netns::new`]).
    pub fn addr(&self, dev: &str, cidr: &str) {
        if cidr.contains(':') {
            self.ip(&["addr", "add", cidr, "dev", dev, "nodad"]);
        } else {
            self.ip(&["addr", "add", cidr, "dev", dev]);
        }
    }

    /// Adds a route: `route("default", "10.0.0.1")`.
    pub fn route(&self, to: &str, via: &str) {
        self.ip(&["route", "add", to, "via", via]);
    }

    /// A command that runs `program` inside namespace `name`.
    pub fn command_in(name: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", name]).arg(program);
        cmd
    }

    /// Runs `f` on a thread that has entered this namespace, and returns its
    /// result. Sockets `f` creates belong to the namespace and keep working
    /// from any thread afterwards.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        run_in(&self.name, f)
    }

    /// Applies an nftables ruleset (`nft -f -`) in this namespace; panics
    /// with nft's complaint if it is refused.
    pub fn nft(&self, ruleset: &str) {
        use std::io::Write as _;
        let mut child = self
            .command("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("running nft in {}: {e} (is nftables installed?)", self.name)
            });
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(ruleset.as_bytes())
            .expect("writing to nft");
        let out = child.wait_with_output().expect("waiting for nft");
        assert!(
            out.status.success(),
            "nft -f in {} refused:\n{ruleset}\n{}",
            self.name,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
}

/// A command that runs `program` inside namespace `name` (`ip netns exec`,
/// which also gives it the namespace's /sys).
pub fn command_in(name: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", name]).arg(program);
    cmd
}

/// Runs `f` on a thread that has entered the namespace called `name` (see
/// [`Netns::run`]); for code that knows a namespace only by name.
pub fn run_in<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = format!("/var/run/netns/{name}");
    let file = File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on a descriptor we own, affecting only this
            // thread, which exits when `f` returns.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(
                rc,
                0,
                "setns into {name}: {}",
                std::io::Error::last_os_error()
            );
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// Whether a namespace called `name` exists.
pub fn exists(name: &str) -> bool {
    std::path::Path::new("/var/run/netns").join(name).exists()
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Not `run`: a failure here must not turn a passing test into a
        // panic during unwinding.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Links `a`'s `a_dev` and `b`'s `b_dev` with a veth pair, brings both up
/// and gives them the addresses in `a_addrs` and `b_addrs`.
pub fn veth(a: &Netns, a_dev: &str, a_addrs: &[&str], b: &Netns, b_dev: &str, b_addrs: &[&str]) {
    a.ip(&[
        "link",
        "add",
        a_dev,
        "type",
        "veth",
        "peer",
        "name",
        b_dev,
        "netns",
        b.name(),
    ]);
    for (ns, dev, addrs) in [(a, a_dev, a_addrs), (b, b_dev, b_addrs)] {
        for cidr in addrs {
            ns.addr(dev, cidr);
        }
        ns.ip(&["link", "set", dev, "up"]);
    }
}

/// Runs a command, panicking with its output if it fails.
fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("running {cmd:?}: {e} (is iproute2 installed, and are we root?)")
    });
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs root, like every test that uses this module.
    #[test]
    fn a_namespace_is_isolated_and_removed_on_drop() {
        let name = {
            let a = Netns::new("a");
            let b = Netns::new("b");
            veth(
                &a,
                "left",
                &["10.200.0.1/30"],
                &b,
                "right",
                &["10.200.0.2/30"],
            );
            // A closure run inside is in the namespace: its address exists
            // there and nowhere else, and the link carries traffic.
            let rx = b.run(|| std::net::UdpSocket::bind("10.200.0.2:7000").unwrap());
            rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let tx = a.run(|| std::net::UdpSocket::bind("10.200.0.1:0").unwrap());
            assert!(std::net::UdpSocket::bind("10.200.0.1:0").is_err());
            tx.send_to(b"hello", "10.200.0.2:7000").unwrap();
            let mut buf = [0u8; 16];
            let (n, from) = rx.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"hello");
            assert_eq!(from, tx.local_addr().unwrap());
            a.name().to_owned()
        };
        let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
        assert!(!String::from_utf8_lossy(&list.stdout).contains(&name));
    }
}
