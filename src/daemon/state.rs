//! The state file: what survives restarts (the drift latch, the start of
//! an unknown episode, an operator's clearance), as `state.json` in the
//! state directory.
//!
//! The file is written atomically by [`crate::fsutil::write_atomic_with`]
//! (a new file under a random name, fsync, rename, fsync of the
//! directory), so a crash leaves either the old or the new state, never
//! half of one, and nobody who can write into the directory can redirect
//! it. What it means is decided by the verdict state
//! machine: memory wins over the file, except for an operator's explicit
//! clearance (`driftd state clear`).

use crate::verdict::episode::{StateDoc, STATE_SCHEMA};
use crate::verdict::Restored;
use std::path::{Path, PathBuf};

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
    #[error("state file {} is corrupt ({reason}); fix or restore it, or clear the drift verdict explicitly with `driftd state clear` once you know the host is clean", path.display())]
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

    /// The state as found: a missing file is [`Restored::Missing`]; a file
    /// that cannot be read or parsed is [`Restored::Unusable`] (the caller
    /// fails closed).
    pub fn restore(&self) -> Restored {
        match self.load() {
            Ok(Some(doc)) => Restored::Found(Box::new(doc)),
            Ok(None) => Restored::Missing,
            Err(e) => Restored::Unusable(e.to_string()),
        }
    }

    /// The document, `None` if there is no file.
    pub fn load(&self) -> Result<Option<StateDoc>, StateError> {
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
        let doc: StateDoc = serde_json::from_str(&text).map_err(|e| StateError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if doc.schema != STATE_SCHEMA {
            return Err(StateError::Corrupt {
                path,
                reason: format!("unknown schema `{}`", doc.schema),
            });
        }
        Ok(Some(doc))
    }

    /// Write `doc` atomically. Written by root, the new file is given the
    /// owner and group of the state directory, so a file written by
    /// `driftd state clear` stays readable by the agent's user.
    pub fn save(&self, doc: &StateDoc) -> Result<(), StateError> {
        let path = self.path();
        let mut body = serde_json::to_vec_pretty(doc).map_err(|e| StateError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        body.push(b'\n');
        // The owner is set on the new file's descriptor before it is named
        // (never by path afterwards, which a symlink could redirect).
        let opts = crate::fsutil::WriteOptions {
            mode: 0o640,
            owner_of_dir: rustix::process::geteuid().is_root(),
        };
        crate::fsutil::write_atomic_with(&path, &body, opts).map_err(|source| StateError::Io {
            op: "write state file",
            path,
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::diff::{Finding, FindingKind};
    use crate::verdict::episode::DriftEpisode;

    #[test]
    fn round_trip_and_missing() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(&dir.path().join("sub"));
        assert_eq!(store.load().unwrap(), None);
        assert_eq!(store.restore(), Restored::Missing);
        let f = Finding::simple(b"/etc/x", FindingKind::Modified);
        let doc = StateDoc {
            declared: Some(DriftEpisode::declare(
                "blake3:00",
                "img",
                crate::manifest::diff::Counts::of(std::slice::from_ref(&f)),
                &[&f],
                1_700_000_000.5,
            )),
            ..StateDoc::default()
        };
        store.save(&doc).unwrap();
        assert_eq!(store.load().unwrap(), Some(doc.clone()));
        assert_eq!(store.restore(), Restored::Found(Box::new(doc)));
        store.save(&StateDoc::default()).unwrap();
        assert_eq!(store.load().unwrap(), Some(StateDoc::default()));
    }

    #[test]
    fn written_by_root_the_file_gets_the_state_directory_s_owner() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path());
        let me = rustix::process::geteuid().as_raw();
        let owner = if me == 0 {
            std::os::unix::fs::chown(dir.path(), Some(65534), Some(65533)).unwrap();
            (65534, 65533)
        } else {
            (me, rustix::process::getegid().as_raw())
        };
        store.save(&StateDoc::default()).unwrap();
        let md = std::fs::symlink_metadata(store.path()).unwrap();
        assert!(md.file_type().is_file());
        assert_eq!(
            (md.uid(), md.gid(), md.mode() & 0o7777),
            (owner.0, owner.1, 0o640)
        );
    }

    #[test]
    fn corrupt_state_is_unusable_not_a_clean_host() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path());
        std::fs::write(store.path(), "{ not json").unwrap();
        assert!(matches!(store.load(), Err(StateError::Corrupt { .. })));
        assert!(matches!(store.restore(), Restored::Unusable(m) if m.contains("corrupt")));
        std::fs::write(store.path(), r#"{"schema":"other","declared":null}"#).unwrap();
        assert!(matches!(store.load(), Err(StateError::Corrupt { .. })));
    }
}
