//! What the machine shows: the verdict and why, for metrics, `/healthz`,
//! `/status`, systemd's status line, and the signals it asks for.

use super::episode::{DriftEpisode, SignalRequest, UnknownEpisode, SIGNAL_FINDINGS};
use super::findings::Findings;
use super::machine::{Machine, ManifestFailure, ManifestId, ManifestState};
use super::reason::{SignalEvent, VerdictReason};
use crate::clock::rfc3339;
use crate::manifest::diff::{Counts, Verdict};

/// A read-only view of the machine.
pub struct View<'a> {
    pub verdict: Verdict,
    pub reason: VerdictReason,
    /// Why, for people (`None` when clean).
    pub message: Option<String>,
    pub manifest: Option<&'a ManifestId>,
    pub manifest_failure: Option<&'a ManifestFailure>,
    pub drift: Option<&'a DriftEpisode>,
    pub unknown: Option<&'a UnknownEpisode>,
    /// The idempotency key of the episode under way (drift, else unknown).
    pub episode_key: Option<String>,
    pub counts: Counts,
    pub findings: &'a Findings,
    pub full_scan_done: bool,
    pub full_scan_running: bool,
    pub last_full_scan_unix: Option<f64>,
}

impl Machine {
    /// The verdict and its reason, by precedence: drift confirmed; then
    /// whatever keeps the verdict unknown; then clean.
    pub fn judge(&self) -> (Verdict, VerdictReason) {
        use VerdictReason as R;
        if self.latch.is_some() {
            return (Verdict::Drifted, R::DriftConfirmed);
        }
        let reason = if matches!(self.manifest, ManifestState::Unusable(_)) {
            R::ManifestUnusable
        } else if self.state_problem.is_some() {
            R::StateUnusable
        } else if self.full.failure.is_some() || self.findings.failed() > 0 {
            R::ScanFailed
        } else if !self.full.done {
            R::FirstScanPending
        } else if self.findings.drift() > 0 {
            R::DriftUnconfirmed
        } else if self.findings.counts().unreadable > 0 {
            R::PathsUnreadable
        } else {
            return (Verdict::Clean, R::AllChecked);
        };
        (Verdict::Unknown, reason)
    }

    pub(super) fn message(&self, reason: VerdictReason) -> Option<String> {
        use VerdictReason as R;
        let n = |k: u64, what: &str| format!("{k} path{} {what}", if k == 1 { "" } else { "s" });
        Some(match reason {
            R::AllChecked => return None,
            R::DriftConfirmed => {
                let l = self.latch.as_ref()?;
                format!(
                    "drift confirmed at {} ({} finding{})",
                    rfc3339(l.first_detected_unix),
                    l.findings_total,
                    if l.findings_total == 1 { "" } else { "s" }
                )
            }
            R::ManifestUnusable => match &self.manifest {
                ManifestState::Unusable(f) => f.message.clone(),
                _ => "the manifest cannot be used".into(),
            },
            R::StateUnusable => self.state_problem.clone()?,
            R::ScanFailed => match &self.full.failure {
                Some(m) => format!("full scan failed: {m}; retrying"),
                None => format!(
                    "{}; retrying",
                    n(self.findings.failed(), "could not be re-checked")
                ),
            },
            R::FirstScanPending => match self.manifest {
                ManifestState::NotLoaded => "loading the manifest".into(),
                _ => "first full scan running, verdict unknown until it ends".into(),
            },
            R::DriftUnconfirmed => n(
                self.findings.drift(),
                "drifted, confirming by reading again",
            ),
            R::PathsUnreadable => n(self.findings.counts().unreadable, "could not be checked"),
        })
    }

    /// Everything shown, as of now.
    pub fn view(&self) -> View<'_> {
        let (verdict, reason) = self.judge();
        let episode_key = match (&self.latch, &self.unknown) {
            (Some(l), _) => Some(self.drift_key(l)),
            (None, Some(u)) => Some(super::episode::idempotency_key(
                &self.settings.host_id,
                u.digest(),
                SignalEvent::VerdictUnknown.label(),
                u.since_unix,
            )),
            (None, None) => None,
        };
        View {
            verdict,
            reason,
            message: self.message(reason),
            manifest: match &self.manifest {
                ManifestState::Loaded(id) => Some(id),
                _ => None,
            },
            manifest_failure: match &self.manifest {
                ManifestState::Unusable(f) => Some(f),
                _ => None,
            },
            drift: self.latch.as_ref(),
            unknown: self.unknown.as_ref(),
            episode_key,
            counts: self.findings.counts(),
            findings: &self.findings,
            full_scan_done: self.full.done,
            full_scan_running: self.full.running.is_some(),
            last_full_scan_unix: self.full.last_done_unix,
        }
    }

    fn drift_key(&self, l: &DriftEpisode) -> String {
        super::episode::idempotency_key(
            &self.settings.host_id,
            &l.manifest_digest,
            SignalEvent::DriftDetected.label(),
            l.first_detected_unix,
        )
    }

    /// The drift signal of the latch held, if any.
    pub(super) fn drift_request(&self) -> Option<SignalRequest> {
        let l = self.latch.as_ref()?;
        Some(SignalRequest {
            event: SignalEvent::DriftDetected,
            manifest_digest: l.manifest_digest.clone(),
            image_id: l.image_id.clone(),
            start_unix: l.first_detected_unix,
            reason: None,
            counts: l.counts,
            findings_total: l.findings_total,
            findings: l.findings.iter().take(SIGNAL_FINDINGS).cloned().collect(),
        })
    }
}
