//! Noticing that the config file changed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long the file must stay untouched before a change counts: editors
/// write a file in several steps (truncate, write, rename).
const QUIET: Duration = Duration::from_millis(250);

/// Watches one file, through its directory, so that editors that replace the
/// file by renaming a new one over it are noticed too.
pub struct ConfigWatch {
    _watcher: RecommendedWatcher,
    events: mpsc::Receiver<()>,
    /// When the last change not yet reported was seen. Kept here, not in
    /// [`changed`](Self::changed)'s future, so that a caller that drops that
    /// future (a `select!` taking another branch) loses nothing.
    pending: Option<Instant>,
}

impl ConfigWatch {
    pub fn new(path: &Path) -> notify::Result<Self> {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let dir = path
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let name = path.file_name().map(ToOwned::to_owned);
        let (tx, events) = mpsc::channel(1);
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let ours = match &event {
                    Ok(e) => {
                        !e.kind.is_access()
                            && e.paths.iter().any(|p| p.file_name() == name.as_deref())
                    }
                    Err(_) => true,
                };
                if ours {
                    // Full means a change is already pending: this one joins it.
                    let _ = tx.try_send(());
                }
            })?;
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
        Ok(Self {
            _watcher: watcher,
            events,
            pending: None,
        })
    }

    /// Returns once the file has changed and then stayed quiet for [`QUIET`].
    /// Cancel-safe.
    pub async fn changed(&mut self) {
        loop {
            match self.pending {
                None => match self.events.recv().await {
                    Some(()) => self.pending = Some(Instant::now()),
                    None => return std::future::pending().await,
                },
                Some(seen) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(seen + QUIET) => {
                            self.pending = None;
                            return;
                        }
                        Some(()) = self.events.recv() => self.pending = Some(Instant::now()),
                    }
                }
            }
        }
    }
}
