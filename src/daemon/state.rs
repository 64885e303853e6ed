//! The verdict that survives restarts.
//!
//! Once drift is confirmed the host stays drifted: reverting the file does
//! not clear it, and neither does restarting driftd. `state.json` in the
//! state directory records the manifest digest, the first detection time
//! and the findings that caused it; only a manifest with another digest (a
//! new image) starts clean. The file is written atomically (temporary
//! file, fsync, rename, fsync of the directory), so a crash leaves either
//! the old or the new state, never half of one.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Most findings kept in the state file (the count is always complete).
pub const MAX_RECORDED_FINDINGS: usize = 100;

pub use crate::manifest::diff::FindingRecord as RecordedFinding;

/// A confirmed drift episode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Declared {
    /// The manifest this host drifted from (`blake3:<hex>`).
    pub manifest_digest: String,
    pub image_id: String,
    /// Unix time of the first confirmation.
    pub first_detected_unix: f64,
    /// How many findings confirmed it.
    pub findings_total: u64,
    /// The first of them (at most [`MAX_RECORDED_FINDINGS`]).
    pub findings: Vec<RecordedFinding>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    schema: String,
    declared: Option<Declared>,
}

const SCHEMA: &str = "driftd.state.v1";

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state file {} is corrupt ({reason}); delete it only if you know the host is clean", path.display())]
    Corrupt { path: PathBuf, reason: String },
}

/// The state file in a state directory.
#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
}

impl StateStore {
    pub fn new(dir: &Path) -> StateStore {
        StateStore {
            dir: dir.to_path_buf(),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// The recorded episode, if any. A missing file is no episode; a file
    /// that cannot be read or parsed is an error (the caller fails closed).
    pub fn load(&self) -> Result<Option<Declared>, StateError> {
        let path = self.path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateError::Io {
                    op: "read state file",
                    path,
                    source,
                })
            }
        };
        let file: StateFile = serde_json::from_str(&text).map_err(|e| StateError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if file.schema != SCHEMA {
            return Err(StateError::Corrupt {
                path,
                reason: format!("unknown schema `{}`", file.schema),
            });
        }
        Ok(file.declared)
    }

    /// Record `declared` (or a clean state) atomically.
    pub fn save(&self, declared: Option<&Declared>) -> Result<(), StateError> {
        let path = self.path();
        let mut body = serde_json::to_vec_pretty(&StateFile {
            schema: SCHEMA.into(),
            declared: declared.cloned(),
        })
        .map_err(|e| StateError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        body.push(b'\n');
        crate::fsutil::write_atomic(&path, &body, 0o640).map_err(|source| StateError::Io {
            op: "write state file",
            path,
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_missing() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(&dir.path().join("sub"));
        assert_eq!(store.load().unwrap(), None);
        let d = Declared {
            manifest_digest: "blake3:00".into(),
            image_id: "img".into(),
            first_detected_unix: 1_700_000_000.5,
            findings_total: 1,
            findings: vec![RecordedFinding::from(
                &crate::manifest::diff::Finding::simple(
                    b"/etc/x",
                    crate::manifest::diff::FindingKind::Modified,
                ),
            )],
        };
        store.save(Some(&d)).unwrap();
        assert_eq!(store.load().unwrap(), Some(d));
        store.save(None).unwrap();
        assert_eq!(store.load().unwrap(), None);
    }

    #[test]
    fn corrupt_state_is_an_error_not_a_clean_host() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path());
        std::fs::write(store.path(), "{ not json").unwrap();
        assert!(matches!(store.load(), Err(StateError::Corrupt { .. })));
        std::fs::write(store.path(), r#"{"schema":"other","declared":null}"#).unwrap();
        assert!(matches!(store.load(), Err(StateError::Corrupt { .. })));
    }
}
