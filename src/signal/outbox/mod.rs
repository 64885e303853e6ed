//! The durable outbox: one file per (backend, signal) in
//! `STATE_DIR/outbox/BACKEND/`.
//!
//! `KEY.pending.json` (an [`Item`]) is written atomically (fsynced, through
//! [`crate::fsutil::write_atomic`]) before the first attempt and rewritten
//! after each failure with the attempt count and the next attempt's time.
//! When an attempt succeeds, the outcome is recorded in two steps that
//! each replace one file by one rename: the pending file is rewritten with
//! the delivery record (`"state": "delivered"`), then renamed to
//! `KEY.delivered.json` (and the directory fsynced). So there is never a
//! moment with both files or with neither. A dry run does the same with
//! `"state": "dryrun"` and `KEY.dryrun.json`.
//!
//! At start ([`Outbox::load`]) a pending file that already holds a record
//! is renamed to its marker (the crash came between the two steps), and a
//! pending file beside a delivered marker (left by a crash in an older
//! version, which wrote the marker and then removed the pending file) is
//! removed: neither is sent again.
//!
//! With a guard (`[signals.guard]`), the pending file of a guarded backend
//! also records when the guard released its episode (`released_unix`),
//! before any of the episode's signals is sent, and the delivery record
//! keeps it: after a restart a released episode goes out without being
//! judged again, so one episode has one decision for every backend. A
//! held item whose manifest was replaced is ended the same two-step way
//! as a delivery, as `KEY.dropped.json` (`"state": "dropped"`): it is never
//! sent.
//!
//! Delivery is at least once per episode and backend, never lost: a crash
//! after the receiver answered and before the record is written sends the
//! signal again, with the same idempotency key, so receivers deduplicate on
//! it. A signal with a delivered marker is never sent again.

use super::Signal;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A signal waiting for one backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub backend: String,
    pub signal: Signal,
    pub attempts: u32,
    pub next_attempt_unix: f64,
    #[serde(default)]
    pub last_error: Option<String>,
    /// When the guard released the episode (guarded backends only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_unix: Option<f64>,
}

/// The record that ends an item: `KEY.delivered.json` or `KEY.dryrun.json`
/// (briefly `KEY.pending.json`, between the two steps).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Record {
    /// [`DELIVERED`] or [`DRY_RUN`]: also the marker's name.
    state: String,
    backend: String,
    idempotency_key: String,
    attempts: u32,
    /// What came back from the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    response: Option<String>,
    /// When the guard released the episode, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    released_unix: Option<f64>,
}

const PENDING: &str = "pending";
const DELIVERED: &str = "delivered";
const DRY_RUN: &str = "dryrun";
const DROPPED: &str = "dropped";

/// Just the `state` of a pending file (set only when it holds a record)
/// and the guard's release of either kind of file.
#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    released_unix: Option<f64>,
}

/// What [`Outbox::load`] found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Pending items, the next one due first.
    pub items: Vec<Item>,
    /// Items that cannot be read: left on disk, to be logged.
    pub errors: Vec<String>,
    /// Leftovers of a crash that were resolved (and are not sent): to be
    /// logged.
    pub recovered: Vec<String>,
}

/// The outbox under a state directory.
#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
}

fn io_err(op: &str, path: &Path, e: std::io::Error) -> String {
    format!("{op} {}: {e}", path.display())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    crate::fsutil::write_atomic(path, bytes, 0o640).map_err(|e| io_err("write", path, e))
}

/// Make a rename in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), String> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("fsync", dir, e))
}

impl Outbox {
    pub fn new(state_dir: &Path) -> Outbox {
        Outbox {
            dir: state_dir.join("outbox"),
        }
    }

    fn path(&self, backend: &str, key: &str, state: &str) -> PathBuf {
        // Backend names are validated ([a-z0-9_-]); keys are hex.
        self.dir.join(backend).join(format!("{key}.{state}.json"))
    }

    pub fn is_delivered(&self, backend: &str, key: &str) -> bool {
        self.path(backend, key, DELIVERED).exists()
    }

    pub fn is_pending(&self, backend: &str, key: &str) -> bool {
        self.path(backend, key, PENDING).exists()
    }

    /// Was this signal already shown in a dry run (kept apart from real
    /// deliveries)?
    pub fn is_dry_run_done(&self, backend: &str, key: &str) -> bool {
        self.path(backend, key, DRY_RUN).exists()
    }

    /// Was this signal dropped (its manifest replaced while it was held)?
    pub fn is_dropped(&self, backend: &str, key: &str) -> bool {
        self.path(backend, key, DROPPED).exists()
    }

    /// Record a held item dropped: the pending item becomes
    /// `KEY.dropped.json`, never sent.
    pub fn dropped(&self, item: &Item, why: &str) -> Result<(), String> {
        self.finish(item, DROPPED, Some(why))
    }

    /// When the guard released this episode, as recorded in any backend's
    /// pending item or delivery record of it.
    pub fn released_mark(&self, key: &str) -> Option<f64> {
        let backends = std::fs::read_dir(&self.dir).ok()?;
        backends.flatten().find_map(|b| {
            [PENDING, DELIVERED].iter().find_map(|state| {
                let p = b.path().join(format!("{key}.{state}.json"));
                let bytes = std::fs::read(p).ok()?;
                serde_json::from_slice::<Probe>(&bytes).ok()?.released_unix
            })
        })
    }

    /// Record a dry run: the pending item becomes `KEY.dryrun.json`.
    pub fn dry_run_done(&self, item: &Item) -> Result<(), String> {
        self.finish(item, DRY_RUN, None)
    }

    /// Mark an item delivered: the pending item becomes
    /// `KEY.delivered.json`, which keeps what came back.
    pub fn delivered(&self, item: &Item, response: &str) -> Result<(), String> {
        self.finish(item, DELIVERED, Some(response))
    }

    /// Rewrite the pending file with the record, then rename it to the
    /// marker: each step replaces one file by one rename.
    fn finish(&self, item: &Item, state: &str, response: Option<&str>) -> Result<(), String> {
        let key = &item.signal.idempotency_key;
        self.seal(item, state, response)?;
        self.promote(&item.backend, key, state)
    }

    /// Step one: the pending file holds the record.
    fn seal(&self, item: &Item, state: &str, response: Option<&str>) -> Result<(), String> {
        let record = Record {
            state: state.to_string(),
            backend: item.backend.clone(),
            idempotency_key: item.signal.idempotency_key.clone(),
            attempts: item.attempts,
            response: response.map(str::to_string),
            released_unix: item.released_unix,
        };
        let body = serde_json::to_vec_pretty(&record).map_err(|e| e.to_string())?;
        let pending = self.path(&item.backend, &item.signal.idempotency_key, PENDING);
        write_atomic(&pending, &body)
    }

    /// Step two: the pending file becomes the marker.
    fn promote(&self, backend: &str, key: &str, state: &str) -> Result<(), String> {
        let (from, to) = (
            self.path(backend, key, PENDING),
            self.path(backend, key, state),
        );
        std::fs::rename(&from, &to).map_err(|e| io_err("rename", &from, e))?;
        sync_dir(&self.dir.join(backend))
    }

    /// Remove a pending file that must not be sent (its signal is already
    /// delivered, or shown in a dry run).
    pub fn discard(&self, backend: &str, key: &str) -> Result<(), String> {
        let pending = self.path(backend, key, PENDING);
        match std::fs::remove_file(&pending) {
            Ok(()) => sync_dir(&self.dir.join(backend)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", &pending, e)),
        }
    }

    /// Record (or update) a pending item.
    pub fn save(&self, item: &Item) -> Result<(), String> {
        let body = serde_json::to_vec_pretty(item).map_err(|e| e.to_string())?;
        write_atomic(
            &self.path(&item.backend, &item.signal.idempotency_key, PENDING),
            &body,
        )
    }

    /// Every pending item on disk, after resolving what a crash left (see
    /// the module doc). Unreadable items are reported, not dropped
    /// silently: the caller logs them and they stay on disk.
    pub fn load(&self) -> Loaded {
        let mut out = Loaded::default();
        let Ok(backends) = std::fs::read_dir(&self.dir) else {
            return out;
        };
        for b in backends.flatten() {
            let backend = b.file_name().to_string_lossy().into_owned();
            let Ok(files) = std::fs::read_dir(b.path()) else {
                continue;
            };
            for f in files.flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                let Some(key) = name.strip_suffix(".pending.json") else {
                    continue;
                };
                match self.load_one(&backend, key, &f.path()) {
                    Found::Item(item) => out.items.push(*item),
                    Found::Recovered(note) => out.recovered.push(note),
                    Found::Error(e) => out.errors.push(e),
                }
            }
        }
        out.items
            .sort_by(|a, b| a.next_attempt_unix.total_cmp(&b.next_attempt_unix));
        out
    }

    /// One pending file: the item to send, or why it is not sent.
    fn load_one(&self, backend: &str, key: &str, p: &Path) -> Found {
        let bytes = match std::fs::read(p) {
            Ok(b) => b,
            Err(e) => return Found::Error(io_err("read", p, e)),
        };
        let shown = format!("outbox/{backend}/{key}");
        let state = serde_json::from_slice::<Probe>(&bytes)
            .ok()
            .and_then(|probe| probe.state);
        if let Some(state) = state.filter(|s| s == DELIVERED || s == DRY_RUN || s == DROPPED) {
            // Crashed between the two steps: finish the second.
            return match self.promote(backend, key, &state) {
                Ok(()) => Found::Recovered(format!(
                    "{shown}: its {state} record was still pending (a crash); completed, not sent again"
                )),
                Err(e) => Found::Error(e),
            };
        }
        if self.is_delivered(backend, key) {
            return match self.discard(backend, key) {
                Ok(()) => Found::Recovered(format!(
                    "{shown}: pending beside its delivered marker (a crash); removed, not sent again"
                )),
                Err(e) => Found::Error(e),
            };
        }
        match serde_json::from_slice::<Item>(&bytes) {
            Ok(item) => Found::Item(Box::new(item)),
            Err(e) => Found::Error(format!("corrupt outbox item {}: {e}", p.display())),
        }
    }
}

/// What one pending file turned out to be.
enum Found {
    Item(Box<Item>),
    /// A crash's leftover, resolved; nothing to send.
    Recovered(String),
    Error(String),
}

#[cfg(test)]
mod tests;
