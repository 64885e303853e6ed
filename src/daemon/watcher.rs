//! The filesystem watcher as the loop uses it: inotify on every directory
//! of the manifest, re-created when it is lost, with its counters kept in
//! the metrics.

use crate::telemetry::Metrics;
use crate::watch::{Watch, WatchCounters, WatchMsg};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::mpsc;
use tracing::{error, warn};

/// The watcher, or the lack of one.
pub struct Watcher {
    root: PathBuf,
    counters: Arc<WatchCounters>,
    live: Option<(Watch, mpsc::Receiver<WatchMsg>)>,
}

/// What adding watches found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Added {
    /// Directories that could not be watched for the first time.
    pub new_failures: u64,
}

impl Watcher {
    pub fn new(root: PathBuf, counters: Arc<WatchCounters>) -> Watcher {
        Watcher {
            root,
            counters,
            live: None,
        }
    }

    /// Start inotify and its reader (a no-op if running).
    pub fn start(&mut self, metrics: &Metrics) -> bool {
        if self.live.is_some() {
            return true;
        }
        match Watch::new(&self.root, self.counters.clone()) {
            Ok(pair) => {
                self.live = Some(pair);
                true
            }
            Err(e) => {
                error!(error = %e, "cannot watch the filesystem: relying on full rescans until it can");
                metrics.watch_failures.inc();
                false
            }
        }
    }

    /// Drop the watcher (its reader died).
    pub fn lost(&mut self) {
        self.live = None;
    }

    /// The next message of the reader; pending forever without one. `None`
    /// means the reader stopped.
    pub async fn recv(&mut self) -> Option<WatchMsg> {
        match self.live.as_mut() {
            Some((_, rx)) => rx.recv().await,
            None => std::future::pending().await,
        }
    }

    /// Watch every directory of the manifest (collected when it was loaded).
    pub fn watch_manifest(&mut self, loaded: &crate::trust::Loaded, metrics: &Metrics) -> Added {
        self.watch_dirs(loaded.dirs.iter(), metrics)
    }

    /// Make sure these directories are watched (a no-op for those that
    /// are). A directory that cannot be watched is counted once and left to
    /// the full rescans.
    pub fn watch_dirs<'a>(
        &mut self,
        dirs: impl Iterator<Item = &'a Box<[u8]>>,
        metrics: &Metrics,
    ) -> Added {
        let Some((w, _)) = self.live.as_mut() else {
            return Added::default();
        };
        let mut added = Added::default();
        let mut first_error = None;
        for d in dirs {
            if let Err(e) = w.add(d) {
                if e.first {
                    added.new_failures += 1;
                    first_error.get_or_insert(e);
                }
            }
        }
        metrics.watches.set(w.len() as i64);
        if let Some(err) = first_error {
            warn!(failed = added.new_failures, error = %err, limit = err.limit, "directories cannot be watched: full rescans cover them");
            metrics.watch_failures.inc_by(added.new_failures);
        }
        added
    }

    /// Forget the watches of re-checked paths that no longer exist.
    pub fn forget_vanished(&mut self, paths: &[Box<[u8]>], metrics: &Metrics) {
        let Some((w, _)) = self.live.as_mut() else {
            return;
        };
        for p in paths {
            let abs = crate::scan::display_path(&self.root, p);
            if std::fs::symlink_metadata(&abs).is_err() {
                w.forget(p);
            }
        }
        metrics.watches.set(w.len() as i64);
    }
}
