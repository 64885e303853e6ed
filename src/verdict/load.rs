//! Loads: what the state file and the manifest say, weighed against what
//! memory holds. Memory wins over the state file except for an operator's
//! explicit clearance; only a manifest with another digest starts a new
//! life.

use super::events::{LoadKind, ManifestFailure, ManifestId, Report, Restored};
use super::machine::{Action, Machine, ManifestState};
use super::reason::RescanReason;

impl Machine {
    pub(super) fn apply_state(&mut self, state: Restored, at_start: bool) {
        let memory_holds = self.latch.is_some() || self.unknown.is_some();
        match state {
            Restored::Unusable(message) => {
                if self.latch.is_some() {
                    // Memory wins: what it knows is written over the file.
                    self.persist.wanted = true;
                    self.report(Report::StateRewritten);
                } else {
                    self.state_problem = Some(message);
                }
            }
            Restored::Missing => {
                self.state_problem = None;
                if !at_start && memory_holds {
                    self.persist.wanted = true;
                    self.report(Report::StateRewritten);
                }
            }
            Restored::Found(doc) => {
                self.state_problem = None;
                let doc = *doc;
                if at_start {
                    if let Some(l) = &doc.declared {
                        self.report(Report::LatchRestored(l.clone()));
                    }
                    self.latch = doc.declared;
                    self.unknown = doc.unknown;
                    self.cleared = doc.cleared;
                    return;
                }
                match (&self.latch, doc.cleared) {
                    (Some(l), Some(c)) if l.is_cleared_by(&c) => {
                        self.latch = None;
                        self.cleared = Some(c.clone());
                        self.report(Report::LatchCleared(c));
                        self.persist.wanted = true;
                    }
                    (Some(_), _) => {
                        if doc.declared != self.latch || doc.unknown != self.unknown {
                            self.persist.wanted = true;
                            self.report(Report::StateRewritten);
                        }
                    }
                    (None, c) => {
                        if let Some(l) = doc.declared {
                            // The file knows of drift memory does not (it
                            // was unreadable at start): drift is drift.
                            self.report(Report::LatchAdopted(l.clone()));
                            self.latch = Some(l);
                        }
                        self.cleared = c.or(self.cleared.take());
                        if doc.unknown != self.unknown {
                            self.persist.wanted = true;
                        }
                    }
                }
            }
        }
    }

    pub(super) fn apply_manifest(
        &mut self,
        manifest: Result<ManifestId, ManifestFailure>,
        kind: LoadKind,
    ) {
        let before = match &self.manifest {
            ManifestState::Loaded(id) => Some(id.digest.clone()),
            _ => None,
        };
        match manifest {
            Ok(id) => {
                if let Some(l) = self.latch.take_if(|l| l.manifest_digest != id.digest) {
                    self.report(Report::NewImage {
                        old: l.manifest_digest,
                        new: id.digest.clone(),
                    });
                    self.persist.wanted = true;
                }
                if self
                    .unknown
                    .take_if(|u| u.manifest_digest.as_ref() != Some(&id.digest))
                    .is_some()
                {
                    self.unknown_signalled = false;
                    self.persist.wanted = true;
                }
                if before.as_deref() != Some(id.digest.as_str()) {
                    self.forget_scans();
                    let first = kind == LoadKind::Retry && self.last_digest.is_none();
                    let reason = if kind == LoadKind::Start || first {
                        RescanReason::Startup
                    } else if self.last_digest.as_ref().is_some_and(|d| *d != id.digest) {
                        RescanReason::ManifestChanged
                    } else {
                        RescanReason::Sighup
                    };
                    self.full.requested = Some(reason);
                } else if kind == LoadKind::Reload {
                    self.request_full(RescanReason::Sighup);
                }
                self.last_digest = Some(id.digest.clone());
                self.manifest = ManifestState::Loaded(id);
            }
            Err(failure) => {
                self.forget_scans();
                self.manifest = ManifestState::Unusable(failure);
            }
        }
    }

    /// A manifest was replaced (or lost): what was found against the old
    /// one means nothing now; scans of it are cancelled and ignored.
    fn forget_scans(&mut self) {
        if let Some(id) = self.full.running.take() {
            self.actions.push_back(Action::CancelScan { id });
        }
        if let Some((id, _, _)) = self.targeted.running.take() {
            self.actions.push_back(Action::CancelScan { id });
        }
        self.findings.clear();
        self.full.requested = None;
        self.full.done = false;
        self.full.failure = None;
        self.full.retry_at = None;
        self.full.backoff.reset();
        self.full.touched.clear();
        self.targeted.retry.clear();
        self.targeted.retry_at = None;
        self.targeted.backoff.reset();
        self.targeted.confirm.clear();
        self.targeted.confirm_at = None;
        self.debounce.clear();
    }
}
