//! The durable outbox: one file per (backend, signal) in
//! `STATE_DIR/outbox/BACKEND/`.
//!
//! `KEY.pending.json` is written (atomically, fsynced) before the first
//! attempt and rewritten after each failure with the attempt count and the
//! next attempt's time; on success it is replaced by `KEY.delivered.json`.
//! A crash at any point leaves either a pending item (retried at start) or a
//! delivered marker (never sent again): at most once per episode and
//! backend, never lost.

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
        self.path(backend, key, "delivered").exists()
    }

    pub fn is_pending(&self, backend: &str, key: &str) -> bool {
        self.path(backend, key, "pending").exists()
    }

    /// Was this signal already shown in a dry run (kept apart from real
    /// deliveries)?
    pub fn is_dry_run_done(&self, backend: &str, key: &str) -> bool {
        self.path(backend, key, "dryrun").exists()
    }

    /// Record a dry run and drop the pending item.
    pub fn dry_run_done(&self, item: &Item) -> Result<(), String> {
        let key = &item.signal.idempotency_key;
        write_atomic(&self.path(&item.backend, key, "dryrun"), b"{}\n")?;
        self.remove_pending(item)
    }

    fn remove_pending(&self, item: &Item) -> Result<(), String> {
        let pending = self.path(&item.backend, &item.signal.idempotency_key, "pending");
        match std::fs::remove_file(&pending) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", &pending, e)),
        }
    }

    /// Record (or update) a pending item.
    pub fn save(&self, item: &Item) -> Result<(), String> {
        let body = serde_json::to_vec_pretty(item).map_err(|e| e.to_string())?;
        write_atomic(
            &self.path(&item.backend, &item.signal.idempotency_key, "pending"),
            &body,
        )
    }

    /// Mark an item delivered (the marker keeps what came back).
    pub fn delivered(&self, item: &Item, response: &str) -> Result<(), String> {
        let key = &item.signal.idempotency_key;
        let body = serde_json::to_vec_pretty(&serde_json::json!({
            "backend": item.backend,
            "idempotency_key": key,
            "attempts": item.attempts,
            "response": response,
        }))
        .map_err(|e| e.to_string())?;
        write_atomic(&self.path(&item.backend, key, "delivered"), &body)?;
        self.remove_pending(item)
    }

    /// Every pending item on disk. Unreadable items are reported, not
    /// dropped silently: the caller logs them and they stay on disk.
    pub fn load(&self) -> (Vec<Item>, Vec<String>) {
        let mut items = Vec::new();
        let mut errors = Vec::new();
        let Ok(backends) = std::fs::read_dir(&self.dir) else {
            return (items, errors);
        };
        for b in backends.flatten() {
            let Ok(files) = std::fs::read_dir(b.path()) else {
                continue;
            };
            for f in files.flatten() {
                let p = f.path();
                if !p.to_string_lossy().ends_with(".pending.json") {
                    continue;
                }
                match std::fs::read(&p)
                    .map_err(|e| io_err("read", &p, e))
                    .and_then(|b| {
                        serde_json::from_slice::<Item>(&b)
                            .map_err(|e| format!("corrupt outbox item {}: {e}", p.display()))
                    }) {
                    Ok(item) => items.push(item),
                    Err(e) => errors.push(e),
                }
            }
        }
        items.sort_by(|a, b| a.next_attempt_unix.total_cmp(&b.next_attempt_unix));
        (items, errors)
    }
}
