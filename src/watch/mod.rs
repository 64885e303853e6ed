//! Filesystem events as hints: inotify watches on every checked directory,
//! read by a thread that turns events into touched paths.
//!
//! Events are hints, never truth: the verdict machine batches touched paths
//! (`verdict::timers::Debouncer`) and re-checks them against the manifest,
//! and on any doubt -- a queue overflow, an event channel that filled up, a
//! directory that could not be watched (e.g. the inotify watch limit), a
//! reader that died -- the agent falls back to a full rescan (and re-creates
//! a dead reader).
//!
//! Why the `inotify` crate and not `notify` (which wraps it): notify's
//! inotify backend always asks for `IN_OPEN`, so every file the agent's own
//! scans open would queue an event -- a full scan of 110,000 files
//! overflows the kernel queue (16,384 events by default), which forces a
//! full rescan, which opens every file again. We ask only for events that
//! mean a change: modify, attrib, close-after-write, create, delete, move.

use crate::manifest::paths::join;
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// What the watcher tells the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchMsg {
    /// Paths (inside the root) that something touched.
    Touched(Vec<Box<[u8]>>),
    /// Events were lost (kernel queue overflow or our channel full):
    /// rescan everything.
    Overflow,
}

/// Capacity of the channel from the reader thread (in batches); beyond it
/// events are dropped and a full rescan is forced.
const CHANNEL: usize = 1024;

/// Events that mean something changed. Never `IN_OPEN`/`IN_ACCESS`/
/// `IN_CLOSE_NOWRITE`: the agent's own reads must not wake it.
fn mask() -> WatchMask {
    WatchMask::MODIFY
        | WatchMask::ATTRIB
        | WatchMask::CLOSE_WRITE
        | WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::DELETE_SELF
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::MOVE_SELF
        | WatchMask::DONT_FOLLOW
        | WatchMask::ONLYDIR
}

/// Shared counters the agent exports.
#[derive(Debug, Default)]
pub struct WatchCounters {
    pub events: AtomicU64,
    pub dropped: AtomicU64,
}

type WdMap = Arc<Mutex<HashMap<WatchDescriptor, Box<[u8]>>>>;

/// inotify watches on directories under a root.
pub struct Watch {
    watches: Watches,
    root: PathBuf,
    by_wd: WdMap,
    by_path: HashMap<Box<[u8]>, WatchDescriptor>,
    /// Directories whose last watch attempt failed.
    failed: std::collections::HashSet<Box<[u8]>>,
}

/// A directory that could not be watched.
#[derive(Debug, thiserror::Error)]
#[error("watch {}: {reason}", path.display())]
pub struct WatchError {
    pub path: PathBuf,
    pub reason: String,
    /// The inotify watch limit was reached (fs.inotify.max_user_watches).
    pub limit: bool,
    /// The first failure for this directory (a retry that fails again is
    /// not counted twice).
    pub first: bool,
}

impl Watch {
    /// Start inotify and a reader thread; messages go to the receiver.
    pub fn new(
        root: &Path,
        counters: Arc<WatchCounters>,
    ) -> Result<(Watch, mpsc::Receiver<WatchMsg>), WatchError> {
        let mut inotify = Inotify::init().map_err(|e| WatchError {
            path: root.to_path_buf(),
            reason: format!("cannot start inotify: {e}"),
            limit: false,
            first: true,
        })?;
        let watches = inotify.watches();
        let by_wd: WdMap = Arc::default();
        let (tx, rx) = mpsc::channel(CHANNEL);
        let map = by_wd.clone();
        std::thread::Builder::new()
            .name("driftd-inotify".into())
            .spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                let mut behind = false;
                loop {
                    let events = match inotify.read_events_blocking(&mut buf) {
                        Ok(ev) => ev,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(_) => {
                            let _ = tx.blocking_send(WatchMsg::Overflow);
                            return;
                        }
                    };
                    let mut paths = Vec::new();
                    let mut overflow = false;
                    {
                        let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
                        for ev in events {
                            if ev.mask.contains(EventMask::Q_OVERFLOW) {
                                overflow = true;
                                continue;
                            }
                            counters.events.fetch_add(1, Ordering::Relaxed);
                            let Some(dir) = map.get(&ev.wd).cloned() else {
                                continue;
                            };
                            if ev.mask.contains(EventMask::IGNORED) {
                                map.remove(&ev.wd);
                            }
                            paths.push(match ev.name {
                                Some(name) => join(&dir, name.as_bytes()),
                                None => dir,
                            });
                        }
                    }
                    let msg = if overflow {
                        counters.dropped.fetch_add(1, Ordering::Relaxed);
                        WatchMsg::Overflow
                    } else if paths.is_empty() {
                        continue;
                    } else {
                        WatchMsg::Touched(paths)
                    };
                    match tx.try_send(msg) {
                        Ok(()) => behind = false,
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            // The agent is behind and events are being lost:
                            // make sure one overflow gets through.
                            if !behind {
                                behind = true;
                                counters.dropped.fetch_add(1, Ordering::Relaxed);
                                if tx.blocking_send(WatchMsg::Overflow).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                }
            })
            .map_err(|e| WatchError {
                path: root.to_path_buf(),
                reason: format!("cannot start the inotify reader thread: {e}"),
                limit: false,
                first: true,
            })?;
        Ok((
            Watch {
                watches,
                root: root.to_path_buf(),
                by_wd,
                by_path: HashMap::new(),
                failed: Default::default(),
            },
            rx,
        ))
    }

    /// Watch one directory (a path inside the root). Watching an already
    /// watched directory is a no-op.
    pub fn add(&mut self, rel: &[u8]) -> Result<(), WatchError> {
        if let Some(wd) = self.by_path.get(rel) {
            // Still live unless the kernel dropped it (the directory was
            // deleted: IN_IGNORED removed it from the reader's map).
            let live = self
                .by_wd
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(wd);
            if live {
                return Ok(());
            }
            self.by_path.remove(rel);
        }
        let abs = crate::scan::display_path(&self.root, rel);
        match self.watches.add(&abs, mask()) {
            Ok(wd) => {
                self.by_wd
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(wd.clone(), rel.into());
                self.by_path.insert(rel.into(), wd);
                self.failed.remove(rel);
                Ok(())
            }
            Err(e) => Err(WatchError {
                limit: e.raw_os_error() == Some(28), // ENOSPC: max_user_watches
                reason: e.to_string(),
                path: abs,
                first: self.failed.insert(rel.into()),
            }),
        }
    }

    /// Forget the watch of a directory that no longer exists.
    pub fn forget(&mut self, rel: &[u8]) {
        if let Some(wd) = self.by_path.remove(rel) {
            self.by_wd
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&wd);
            let _ = self.watches.remove(wd);
        }
    }

    pub fn len(&self) -> usize {
        self.by_path.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }
}

/// Watch the mount table: a mount or unmount anywhere wakes the receiver
/// (inotify sees no event for a mount over a watched directory). The kernel
/// signals a change of `/proc/self/mountinfo` to `poll` as `POLLPRI`; the
/// file is read again after each to take the next. `None` without
/// `/proc`.
pub fn watch_mounts() -> Option<mpsc::Receiver<()>> {
    use rustix::event::{poll, PollFd, PollFlags};
    use std::io::Read;
    let mut file = std::fs::File::open("/proc/self/mountinfo").ok()?;
    let (tx, rx) = mpsc::channel(1);
    std::thread::Builder::new()
        .name("driftd-mounts".into())
        .spawn(move || {
            let mut sink = Vec::new();
            let _ = file.read_to_end(&mut sink);
            loop {
                let mut fds = [PollFd::new(&file, PollFlags::PRI | PollFlags::ERR)];
                match poll(&mut fds, None) {
                    Ok(_) => {}
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(_) => return,
                }
                sink.clear();
                use std::io::Seek;
                let _ = file.seek(std::io::SeekFrom::Start(0));
                let _ = file.read_to_end(&mut sink);
                match tx.try_send(()) {
                    // One pending wake-up covers any number of changes.
                    Ok(()) | Err(mpsc::error::TrySendError::Full(())) => {}
                    Err(mpsc::error::TrySendError::Closed(())) => return,
                }
            }
        })
        .ok()?;
    Some(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn events_in_watched_directories_arrive_as_touched_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        let counters = Arc::new(WatchCounters::default());
        let (mut w, mut rx) = Watch::new(dir.path(), counters.clone()).unwrap();
        w.add(b"/").unwrap();
        w.add(b"/etc").unwrap();
        assert_eq!(w.len(), 2);
        std::fs::write(dir.path().join("etc/passwd"), "x").unwrap();
        let msg = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap();
        match msg {
            Some(WatchMsg::Touched(paths)) => {
                assert!(paths.iter().any(|p| &**p == b"/etc/passwd"), "{paths:?}")
            }
            other => panic!("{other:?}"),
        }
        assert!(counters.events.load(Ordering::Relaxed) >= 1);
        // A directory that is gone cannot be watched; the error says so.
        let e = w.add(b"/nope").unwrap_err();
        assert!(e.first && !e.limit, "{e}");
        assert!(!w.add(b"/nope").unwrap_err().first, "counted once");
        w.forget(b"/etc");
        assert_eq!(w.len(), 1);
    }
}
