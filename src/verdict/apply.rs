//! How scan outcomes change the machine: findings replaced by scope,
//! drift confirmed and declared, failures turned into unknown scopes and
//! retries.

use super::episode::DriftEpisode;
use super::findings::Replaced;
use super::machine::{Machine, ManifestState, Report, MAX_CONFIRM_PATHS};
use super::reason::{RescanReason, ScanKind};
use crate::manifest::bounded::Bounded;
use crate::manifest::diff::{Counts, Finding, UnreadableKind};

/// A path left unchecked for want of resources, to be checked again.
fn starved(f: &Finding) -> bool {
    f.cause == Some(UnreadableKind::ScanFailed)
}

impl Machine {
    /// A full scan finished: its findings replace everything except the
    /// paths re-checked while it ran (their results are fresher).
    pub(super) fn full_done(&mut self, found: Bounded) {
        let touched = std::mem::take(&mut self.full.touched);
        // Paths it could not check for want of resources (descriptors ran
        // out): the scan is retried, backing off, as if it had failed.
        let starved = found.failed() > 0;
        let (new, recheck) = self.findings.replace_outside(&touched, found);
        if !recheck.is_empty() {
            let now = self.clock.now();
            self.debounce.push(recheck, now);
        }
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
            let drift = self.findings.drift_paths(MAX_CONFIRM_PATHS);
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
    pub(super) fn targeted_done(&mut self, scope: &[Box<[u8]>], found: Bounded, confirming: bool) {
        let mut starved: Vec<Box<[u8]>> = found
            .iter()
            .filter(|f| starved(f))
            .map(|f| f.path.clone())
            .collect();
        if found.failed() > starved.len() as u64 {
            // Some are counted, not held: the whole batch again.
            starved = scope.to_vec();
        }
        if starved.is_empty() {
            self.targeted.backoff.reset();
        } else {
            self.retry_targeted(starved);
        }
        // What a confirmation declares: the drift seen in the scope now.
        let drift = (found.drift() > 0).then(|| {
            let mut counts = found.counts();
            counts.unreadable = 0;
            let held: Vec<Finding> = found
                .iter()
                .filter(|f| f.is_drift())
                .take(super::episode::MAX_RECORDED_FINDINGS)
                .cloned()
                .collect();
            (counts, held, found.drift_paths(MAX_CONFIRM_PATHS))
        });
        match self.findings.replace_in(scope, found) {
            Replaced::Applied(new) => {
                if self.full.running.is_some() {
                    self.full.touched.extend(scope.iter().cloned());
                }
                self.report_new(new);
            }
            // Findings there are counted, not held: a full scan recounts.
            Replaced::NeedsFullScan => self.request_full(RescanReason::FindingsLimit),
        }
        if self.latch.is_some() {
            return;
        }
        let Some((counts, held, paths)) = drift else {
            return;
        };
        if confirming {
            self.declare(counts, &held);
        } else {
            self.schedule_confirm(paths);
        }
    }

    /// A re-check could not run: every path of the batch is unknown until a
    /// retry of the batch succeeds.
    pub(super) fn targeted_failed(&mut self, scope: Vec<Box<[u8]>>, message: String) {
        if self.full.running.is_some() {
            self.full.touched.extend(scope.iter().cloned());
        }
        let unknown: Vec<Finding> = scope
            .iter()
            .map(|p| {
                Finding::unreadable(
                    p,
                    UnreadableKind::ScanFailed,
                    format!("re-check failed: {message}"),
                )
            })
            .collect();
        match self.findings.replace_in(&scope, Bounded::from(unknown)) {
            Replaced::Applied(new) => self.report_new(new),
            Replaced::NeedsFullScan => self.request_full(RescanReason::FindingsLimit),
        }
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

    /// Declare drift: `counts` by kind (exact), `held` the first of them.
    fn declare(&mut self, counts: Counts, held: &[Finding]) {
        let ManifestState::Loaded(id) = &self.manifest else {
            return;
        };
        let drift: Vec<&Finding> = held.iter().collect();
        let episode =
            DriftEpisode::declare(&id.digest, &id.image_id, counts, &drift, self.clock.unix());
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

    /// Log the new findings (at most the limit: only held ones are new),
    /// and once per change of the total, that more exist than are held.
    fn report_new(&mut self, new: Vec<Finding>) {
        for f in new {
            self.report(Report::Finding(f));
        }
        if let Some((total, held)) = self.findings.truncation_news() {
            self.report(Report::FindingsTruncated {
                total,
                held,
                limit: self.findings.limit(),
            });
        }
    }
}
