//! Child processes the way an operator's service manager runs them: each
//! with its output in a log file, stopped with SIGTERM and then SIGKILL,
//! killed (`kill -9`) on request, and never left running by a test that
//! fails half-way.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::wait;

/// Spawns `command` with no input and its stdout and stderr appended to
/// `log`; a failure names the program.
pub fn spawn_logged(command: &mut Command, log: File) -> io::Result<Child> {
    command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot start {}: {e}", command.get_program().display()),
            )
        })
}

/// Sends `signal` to a child that has not been reaped.
pub fn signal(child: &Child, signal: libc::c_int) {
    // SAFETY: kill(2) on our own child, which has not been reaped, so its
    // pid cannot have been reused.
    unsafe { libc::kill(child.id() as libc::pid_t, signal) };
}

/// Sends SIGTERM and waits up to `grace` for the child to exit; kills it
/// (SIGKILL) if it does not. Returns the exit status if it exited by itself.
pub fn terminate(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    signal(child, libc::SIGTERM);
    // A stopped process must run to see its SIGTERM.
    signal(child, libc::SIGCONT);
    match wait::every(Duration::from_millis(20), grace, "exit", || {
        child.try_wait().ok().flatten()
    }) {
        Ok(status) => Some(status),
        Err(_) => {
            kill(child);
            None
        }
    }
}

/// SIGKILL and reap: no chance to flush, resign or clean up.
pub fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A child process that is killed (SIGKILL) and reaped when dropped: a test
/// that fails half-way leaves no daemon running. Stop it gracefully with
/// [`terminate`] first where the exit status matters.
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            kill(&mut self.0);
        }
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A set of daemons, each known by a name of type `K`, each appending its
/// output to `<dir>/<name>.log` over all its runs. Dropping it kills them.
#[derive(Debug)]
pub struct Supervisor<K: Ord + Clone + fmt::Display> {
    logs: PathBuf,
    children: BTreeMap<K, Child>,
}

impl<K: Ord + Clone + fmt::Display> Supervisor<K> {
    /// Daemons whose logs go in `logs` (created if missing).
    pub fn new(logs: impl Into<PathBuf>) -> io::Result<Self> {
        let logs = logs.into();
        std::fs::create_dir_all(&logs)?;
        Ok(Supervisor {
            logs,
            children: BTreeMap::new(),
        })
    }

    /// Starts `command` as `name`, killing a running `name` first.
    pub fn start(&mut self, name: K, mut command: Command) -> io::Result<()> {
        self.kill(&name);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(&name))?;
        let child = spawn_logged(&mut command, log)?;
        self.children.insert(name, child);
        Ok(())
    }

    /// Whether `name` was started and has not exited.
    pub fn is_running(&mut self, name: &K) -> bool {
        self.children
            .get_mut(name)
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// How `name` exited by itself, if it was started and has.
    pub fn exit_status(&mut self, name: &K) -> Option<ExitStatus> {
        self.children.get_mut(name)?.try_wait().ok().flatten()
    }

    /// Whether `name` was started and not yet stopped or killed (it may have
    /// exited by itself).
    pub fn is_started(&self, name: &K) -> bool {
        self.children.contains_key(name)
    }

    pub fn pid(&self, name: &K) -> Option<u32> {
        self.children.get(name).map(Child::id)
    }

    /// The names started and not yet stopped or killed.
    pub fn names(&self) -> Vec<K> {
        self.children.keys().cloned().collect()
    }

    /// SIGKILL (`kill -9`) and reap.
    pub fn kill(&mut self, name: &K) {
        if let Some(mut child) = self.children.remove(name) {
            kill(&mut child);
        }
    }

    /// SIGTERM, then SIGKILL after `grace`: the exit status if it exited.
    pub fn stop(&mut self, name: &K, grace: Duration) -> Option<ExitStatus> {
        terminate(&mut self.children.remove(name)?, grace)
    }

    /// Sends `sig` (SIGSTOP, SIGCONT, SIGHUP...) to `name` if it runs.
    pub fn signal(&self, name: &K, sig: libc::c_int) {
        if let Some(child) = self.children.get(name) {
            signal(child, sig);
        }
    }

    /// Waits up to `limit` for `name` to exit by itself: its status.
    pub fn wait_exit(&mut self, name: &K, limit: Duration) -> Option<ExitStatus> {
        let child = self.children.get_mut(name)?;
        let status = wait::every(
            Duration::from_millis(20),
            limit,
            format_args!("{name} to exit"),
            || child.try_wait().ok().flatten(),
        )
        .ok()?;
        self.children.remove(name);
        Some(status)
    }

    /// Where `name` writes.
    pub fn log_path(&self, name: &K) -> PathBuf {
        self.logs.join(format!("{name}.log"))
    }

    pub fn logs_dir(&self) -> &Path {
        &self.logs
    }

    /// What `name` printed over all its runs.
    pub fn log(&self, name: &K) -> String {
        std::fs::read_to_string(self.log_path(name)).unwrap_or_default()
    }

    /// The last `lines` of each of `names`' logs, saying which have exited:
    /// for a failing test's message.
    pub fn logs_tail<'a>(&mut self, names: impl IntoIterator<Item = &'a K>, lines: usize) -> String
    where
        K: 'a,
    {
        let mut out = String::new();
        for name in names {
            let exited = self
                .children
                .get_mut(name)
                .and_then(|c| c.try_wait().ok().flatten())
                .map(|s| format!(" (exited: {s})"))
                .unwrap_or_default();
            out += &format!("--- {name}{exited}\n{}\n", tail(&self.log(name), lines));
        }
        out
    }

    /// Stops every daemon: `first` gently (SIGTERM, `grace`), in order, then
    /// the rest with SIGKILL.
    pub fn shutdown(&mut self, first: &[K], grace: Duration) {
        for name in first {
            self.stop(name, grace);
        }
        for name in self.names() {
            self.kill(&name);
        }
    }
}

impl<K: Ord + Clone + fmt::Display> Drop for Supervisor<K> {
    fn drop(&mut self) {
        for name in self.names() {
            self.kill(&name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }

    #[test]
    fn logs_stops_kills_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Supervisor::<String>::new(dir.path().join("logs")).unwrap();
        let a = "a".to_string();
        // Exits 0 on SIGTERM.
        s.start(
            a.clone(),
            sh("trap 'echo bye; exit 0' TERM; echo hello; while :; do sleep 0.05; done"),
        )
        .unwrap();
        wait::until(Duration::from_secs(5), "a's greeting", || {
            s.log(&a).contains("hello")
        })
        .unwrap();
        assert!(s.is_running(&a));
        let status = s
            .stop(&a, Duration::from_secs(5))
            .expect("exits on SIGTERM");
        assert!(status.success());
        assert!(s.log(&a).contains("bye"), "{}", s.log(&a));

        // Ignores SIGTERM: killed after the grace.
        let b = "b".to_string();
        s.start(b.clone(), sh("trap '' TERM; while :; do sleep 0.05; done"))
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(s.stop(&b, Duration::from_millis(200)), None);
        assert!(!s.is_started(&b));

        // Restarting appends to the same log.
        s.start(a.clone(), sh("echo again")).unwrap();
        let status = s.wait_exit(&a, Duration::from_secs(5)).unwrap();
        assert!(status.success());
        assert!(s.log(&a).contains("hello") && s.log(&a).contains("again"));
        assert!(
            s.logs_tail([&a], 1).contains("--- a\nagain"),
            "{}",
            s.logs_tail([&a], 1)
        );

        // Dropped: whatever runs is killed.
        let c = "c".to_string();
        s.start(c.clone(), sh("sleep 60")).unwrap();
        let pid = s.pid(&c).unwrap();
        drop(s);
        // SAFETY: kill(2) with signal 0 only asks whether the pid exists.
        let alive = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0;
        assert!(!alive, "the child survived its supervisor");
    }
}
