//! Work that blocks, run off the event loop: scans (full and targeted) and
//! loads (the state file and the manifest). Each sends its result back over
//! one channel; the loop turns results into machine events.

use crate::check::{check_scope, CheckError, CheckReport};
use crate::manifest::bounded::Bounded;
use crate::scan::{Pacer, ScanControl, ScanError};
use crate::trust::{self, LoadError};
use crate::verdict::{LoadKind, Restored, ScanId, ScanKind};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

use super::state::StateStore;

/// What a job sends back.
pub enum JobResult {
    Scan(ScanDone),
    Loaded {
        kind: LoadKind,
        state: Box<Restored>,
        manifest: Result<trust::Loaded, LoadError>,
    },
}

/// A finished scan.
pub struct ScanDone {
    pub id: ScanId,
    pub kind: ScanKind,
    /// The paths a targeted scan re-checked (empty for a full scan).
    pub paths: Vec<Box<[u8]>>,
    /// One report per path (one for a full scan).
    pub result: Result<Vec<CheckReport>, CheckError>,
    pub elapsed: Duration,
}

impl ScanDone {
    pub fn cancelled(&self) -> bool {
        matches!(self.result, Err(CheckError::Scan(ScanError::Cancelled)))
    }
}

/// Where loads and scans read from.
pub struct Jobs {
    pub root: PathBuf,
    pub manifest_path: PathBuf,
    pub trusted_keys: Vec<PathBuf>,
    pub allow_unsigned: bool,
    pub store: StateStore,
    pub threads: usize,
    /// Most findings a scan result holds (`findings_limit`).
    pub findings_limit: usize,
    pub pacer: Option<Arc<Pacer>>,
    pub tx: mpsc::UnboundedSender<JobResult>,
    cancels: HashMap<ScanId, Arc<AtomicBool>>,
}

impl Jobs {
    /// The jobs of an agent with these options; results go to `tx`.
    pub fn new(opts: &super::RunOptions, tx: mpsc::UnboundedSender<JobResult>) -> Jobs {
        let a = &opts.agent;
        Jobs {
            root: a.root.clone(),
            manifest_path: a.manifest.clone(),
            trusted_keys: a.trusted_keys.clone(),
            allow_unsigned: a.allow_unsigned,
            store: StateStore::new(&a.state_dir),
            threads: opts.threads,
            findings_limit: a.findings_limit,
            pacer: (a.read_rate_limit > 0).then(|| Arc::new(Pacer::new(a.read_rate_limit))),
            tx,
            cancels: HashMap::new(),
        }
    }

    /// Read the state file, then the manifest (verified by the one trust
    /// rule), on a blocking thread.
    pub fn load(&self, kind: LoadKind) {
        let store = self.store.clone();
        let path = self.manifest_path.clone();
        let keys = self.trusted_keys.clone();
        let allow_unsigned = self.allow_unsigned;
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || {
            let state = store.restore();
            let manifest = trust::load(
                &path,
                trust::Rule::Enforce {
                    keys: &keys,
                    allow_unsigned,
                },
            );
            let _ = tx.send(JobResult::Loaded {
                kind,
                state: Box::new(state),
                manifest,
            });
        });
    }

    /// A full scan of the root, paced, cancellable.
    pub fn full(&mut self, id: ScanId, loaded: &trust::Loaded) {
        let cancel = Arc::new(AtomicBool::new(false));
        self.cancels.insert(id, cancel.clone());
        let control = ScanControl {
            start: None,
            cancel: Some(cancel),
            pacer: self.pacer.clone(),
            progress: None,
        };
        let (manifest, policy) = (loaded.manifest.clone(), loaded.policy.clone());
        let (root, threads, tx) = (self.root.clone(), self.threads, self.tx.clone());
        let limit = self.findings_limit;
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let result =
                check_scope(&manifest, &policy, &root, threads, &control, limit).map(|r| vec![r]);
            let _ = tx.send(JobResult::Scan(ScanDone {
                id,
                kind: ScanKind::Full,
                paths: Vec::new(),
                result,
                elapsed: started.elapsed(),
            }));
        });
    }

    /// A re-check of `paths` (each with its subtree), unpaced: it is small
    /// and it decides how fast drift is seen.
    pub fn targeted(&mut self, id: ScanId, paths: Vec<Box<[u8]>>, loaded: &trust::Loaded) {
        let cancel = Arc::new(AtomicBool::new(false));
        self.cancels.insert(id, cancel.clone());
        let (manifest, policy) = (loaded.manifest.clone(), loaded.policy.clone());
        let (root, tx, limit) = (self.root.clone(), self.tx.clone(), self.findings_limit);
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            // The findings of all paths are gathered into the first report
            // as each check ends, so the batch holds at most `limit`.
            let mut reports: Vec<CheckReport> = Vec::with_capacity(paths.len());
            let mut result = Ok(());
            for p in &paths {
                let control = ScanControl {
                    start: Some(p.clone()),
                    cancel: Some(cancel.clone()),
                    pacer: None,
                    progress: None,
                };
                match check_scope(&manifest, &policy, &root, 1, &control, limit) {
                    Ok(mut r) => {
                        if let Some(first) = reports.first_mut() {
                            let found = std::mem::replace(&mut r.found, Bounded::new(limit));
                            first.found.merge(found);
                        }
                        reports.push(r);
                    }
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            let result = result.map(|()| reports);
            let _ = tx.send(JobResult::Scan(ScanDone {
                id,
                kind: ScanKind::Targeted,
                paths,
                result,
                elapsed: started.elapsed(),
            }));
        });
    }

    /// Stop a scan (its result comes back as cancelled).
    pub fn cancel(&mut self, id: ScanId) {
        if let Some(c) = self.cancels.remove(&id) {
            c.store(true, Ordering::Relaxed);
        }
    }

    /// A scan's result arrived: forget its cancel flag.
    pub fn finished(&mut self, id: ScanId) {
        self.cancels.remove(&id);
    }

    /// Stop everything (shutting down).
    pub fn cancel_all(&mut self) {
        for (_, c) in self.cancels.drain() {
            c.store(true, Ordering::Relaxed);
        }
    }
}
