//! How scan outcomes change the machine: findings replaced by scope,
//! drift confirmed and declared, failures turned into unknown scopes and
//! retries.

use super::episode::DriftEpisode;
use super::machine::{Machine, ManifestState, Report, MAX_CONFIRM_PATHS};
use super::reason::ScanKind;
use crate::manifest::diff::{Finding, UnreadableKind};
use crate::manifest::paths::in_scope;

/// A path left unchecked for want of resources, to be checked again.
fn starved(f: &Finding) -> bool {
    f.cause == Some(UnreadableKind::ScanFailed)
}

impl Machine {
    /// A full scan finished: its findings replace everything except the
    /// paths re-checked while it ran (their results are fresher).
    pub(super) fn full_done(&mut self, findings: Vec<Finding>) {
        let touched = std::mem::take(&mut self.full.touched);
        // Paths it could not check for want of resources (descriptors ran
        // out): the scan is retried, backing off, as if it had failed.
        let starved = findings.iter().any(starved);
        let new = self.findings.replace_outside(&touched, findings);
        self.full.done = true;
        self.full.failure = None;
        if starved {
            let delay = self.full.backoff.next_delay();
            self.full.retry_at = Some(self.clock.now() + delay);
        } else {
            self.full.backoff.reset();
            self.full.retry_at = None;
        }
        self.full.last_done_unix = Some(self.clock.unix());
        self.report_new(new);
        if self.latch.is_none() {
            let drift: Vec<Box<[u8]>> = self
                .findings
                .iter()
                .filter(|f| f.is_drift())
                .map(|f| f.path.clone())
                .collect();
            self.schedule_confirm(drift);
        }
    }

    /// A full scan could not run: the verdict is unknown (never the
    /// previous clean) until a retry succeeds.
    pub(super) fn full_failed(&mut self, message: String) {
        self.full.touched.clear();
        let delay = self.full.backoff.next_delay();
        self.full.retry_at = Some(self.clock.now() + delay);
        self.full.failure = Some(message.clone());
        self.report(Report::ScanFailed {
            kind: ScanKind::Full,
            message,
            retry_in: delay,
        });
    }

    /// A re-check of `scope` finished. With `confirming`, drift seen again
    /// is declared.
    pub(super) fn targeted_done(
        &mut self,
        scope: &[Box<[u8]>],
        findings: Vec<Finding>,
        confirming: bool,
    ) {
        if self.full.running.is_some() {
            self.full.touched.extend(scope.iter().cloned());
        }
        let starved: Vec<Box<[u8]>> = findings
            .iter()
            .filter(|f| starved(f))
            .map(|f| f.path.clone())
            .collect();
        if starved.is_empty() {
            self.targeted.backoff.reset();
        } else {
            self.retry_targeted(starved);
        }
        let new = self.findings.replace_in(scope, findings);
        self.report_new(new);
        if self.latch.is_some() {
            return;
        }
        let drift: Vec<Box<[u8]>> = self.drift_in(scope).map(|f| f.path.clone()).collect();
        if drift.is_empty() {
            return;
        }
        if confirming {
            self.declare_from_scope(scope);
        } else {
            self.schedule_confirm(drift);
        }
    }

    /// A re-check could not run: every path of the batch is unknown until a
    /// retry of the batch succeeds.
    pub(super) fn targeted_failed(&mut self, scope: Vec<Box<[u8]>>, message: String) {
        if self.full.running.is_some() {
            self.full.touched.extend(scope.iter().cloned());
        }
        let unknown = scope
            .iter()
            .map(|p| {
                Finding::unreadable(
                    p,
                    UnreadableKind::ScanFailed,
                    format!("re-check failed: {message}"),
                )
            })
            .collect();
        let new = self.findings.replace_in(&scope, unknown);
        self.report_new(new);
        let delay = self.retry_targeted(scope);
        self.report(Report::ScanFailed {
            kind: ScanKind::Targeted,
            message,
            retry_in: delay,
        });
    }

    /// Re-check these paths after the backoff.
    fn retry_targeted(&mut self, paths: Vec<Box<[u8]>>) -> std::time::Duration {
        for p in paths {
            if !self.targeted.retry.contains(&p) {
                self.targeted.retry.push(p);
            }
        }
        let delay = self.targeted.backoff.next_delay();
        self.targeted.retry_at = Some(self.clock.now() + delay);
        delay
    }

    fn declare_from_scope(&mut self, scope: &[Box<[u8]>]) {
        let ManifestState::Loaded(id) = &self.manifest else {
            return;
        };
        let drift: Vec<&Finding> = self.drift_in(scope).collect();
        let episode = DriftEpisode::declare(&id.digest, &id.image_id, &drift, self.clock.unix());
        self.latch = Some(episode.clone());
        self.targeted.confirm.clear();
        self.targeted.confirm_at = None;
        self.persist.wanted = true;
        self.report(Report::DriftDeclared(episode));
        if self.settings.signals {
            if let Some(req) = self.drift_request() {
                self.actions.push_back(super::machine::Action::Signal(req));
            }
        }
    }

    /// The drift findings at or below `scope`.
    fn drift_in<'a>(&'a self, scope: &'a [Box<[u8]>]) -> impl Iterator<Item = &'a Finding> {
        self.findings
            .iter()
            .filter(move |f| f.is_drift() && scope.iter().any(|s| in_scope(&f.path, s)))
    }

    /// Read these paths again after `confirm_delay` before declaring drift.
    fn schedule_confirm(&mut self, paths: Vec<Box<[u8]>>) {
        for p in paths {
            if self.targeted.confirm.len() >= MAX_CONFIRM_PATHS {
                break;
            }
            if !self.targeted.confirm.contains(&p) {
                self.targeted.confirm.push(p);
            }
        }
        if !self.targeted.confirm.is_empty() && self.targeted.confirm_at.is_none() {
            self.targeted.confirm_at = Some(self.clock.now() + self.settings.confirm_delay);
        }
    }

    fn report_new(&mut self, new: Vec<Finding>) {
        for f in new {
            self.report(Report::Finding(f));
        }
    }
}
