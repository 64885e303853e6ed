//! The unknown episode: a period during which the verdict has been
//! unknown for a reason other than a first scan or a confirmation under
//! way. Its start is persisted, so its idempotency key survives restarts,
//! and with `on_unknown` it is signalled once, `unknown_grace` after it
//! began.

use super::episode::{SignalRequest, UnknownEpisode, SIGNAL_FINDINGS};
use super::machine::{Action, Machine, ManifestState};
use super::reason::{SignalEvent, VerdictReason};
use crate::manifest::diff::{FindingRecord, Verdict};
use std::time::Duration;
use tokio::time::Instant;

impl Machine {
    /// Start or end the unknown episode as the verdict moves.
    pub(super) fn settle_unknown(&mut self) {
        let (verdict, reason) = self.judge();
        match verdict {
            Verdict::Unknown => {
                // Waiting for a first scan or a confirmation is not yet a
                // period of not knowing; it does not end one either.
                let transient = matches!(
                    reason,
                    VerdictReason::FirstScanPending | VerdictReason::DriftUnconfirmed
                );
                if !transient && self.unknown.is_none() {
                    self.unknown = Some(UnknownEpisode {
                        since_unix: self.clock.unix(),
                        manifest_digest: self.digest().map(str::to_string),
                    });
                    self.unknown_signalled = false;
                    self.persist.wanted = true;
                }
            }
            Verdict::Clean | Verdict::Drifted => {
                if self.unknown.take().is_some() {
                    self.unknown_signalled = false;
                    self.persist.wanted = true;
                }
            }
        }
    }

    pub(super) fn unknown_deadline(&self) -> Option<Instant> {
        let grace = self.settings.unknown_grace?;
        let u = self.unknown.as_ref()?;
        if !self.settings.signals || self.unknown_signalled {
            return None;
        }
        let left = u.since_unix + grace.as_secs_f64() - self.clock.unix();
        Some(self.clock.now() + Duration::from_secs_f64(left.max(0.0)))
    }

    pub(super) fn signal_unknown_if_due(&mut self) {
        let due = self
            .unknown_deadline()
            .is_some_and(|t| self.clock.now() >= t);
        if due {
            self.unknown_signalled = true;
            if let Some(req) = self.unknown_request() {
                self.actions.push_back(Action::Signal(req));
            }
        }
    }

    /// The signal of the unknown episode under way, if any.
    pub(super) fn unknown_request(&self) -> Option<SignalRequest> {
        let u = self.unknown.as_ref()?;
        let (_, reason) = self.judge();
        let image_id = match &self.manifest {
            ManifestState::Loaded(id) => id.image_id.clone(),
            _ => String::new(),
        };
        Some(SignalRequest {
            event: SignalEvent::VerdictUnknown,
            manifest_digest: u.digest().to_string(),
            image_id,
            start_unix: u.since_unix,
            reason: self.message(reason),
            counts: self.findings.counts(),
            findings_total: self.findings.counts().total(),
            findings: self
                .findings
                .iter()
                .take(SIGNAL_FINDINGS)
                .map(FindingRecord::from)
                .collect(),
        })
    }
}
