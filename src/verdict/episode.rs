//! Episodes and what survives a restart: the drift latch, the unknown
//! period, an operator's clearance, and the document the state file holds.
//!
//! These types sit here, below `signal` and `daemon`, so both can use them
//! without either reaching into the other. PURE: serialisation only; the
//! file itself is read and written by the daemon.

use super::reason::SignalEvent;
use crate::manifest::diff::{Counts, Finding, FindingRecord};
use serde::{Deserialize, Serialize};

/// Most findings kept with an episode (the total is always complete).
pub const MAX_RECORDED_FINDINGS: usize = 100;

/// Most findings a signal carries (the total is always given).
pub const SIGNAL_FINDINGS: usize = 20;

/// The schema of the state file (fields added since are optional, so an
/// older agent reads a newer file and the other way round).
pub const STATE_SCHEMA: &str = "driftd.state.v1";

/// A confirmed drift episode: the latch. Once declared for a manifest the
/// host stays drifted until an operator clears it or a manifest with
/// another digest (a new image) is installed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftEpisode {
    /// The manifest this host drifted from (`blake3:<hex>`).
    pub manifest_digest: String,
    pub image_id: String,
    /// Unix time of the confirmation: the episode's identity.
    pub first_detected_unix: f64,
    /// How many findings confirmed it.
    pub findings_total: u64,
    /// Those findings by kind (absent in files of older agents).
    #[serde(default)]
    pub counts: Counts,
    /// The first of them (at most [`MAX_RECORDED_FINDINGS`]).
    pub findings: Vec<FindingRecord>,
}

impl DriftEpisode {
    /// The episode declared now from drift findings: `counts` of all of
    /// them by kind, `drift` the first of them.
    pub fn declare(
        digest: &str,
        image_id: &str,
        counts: Counts,
        drift: &[&Finding],
        now_unix: f64,
    ) -> Self {
        DriftEpisode {
            manifest_digest: digest.to_string(),
            image_id: image_id.to_string(),
            first_detected_unix: now_unix,
            findings_total: counts.total(),
            counts,
            findings: drift
                .iter()
                .take(MAX_RECORDED_FINDINGS)
                .map(|f| FindingRecord::from(*f))
                .collect(),
        }
    }

    /// Is `c` a clearance of this very episode?
    pub fn is_cleared_by(&self, c: &Clearance) -> bool {
        c.manifest_digest == self.manifest_digest
            && same_time(c.first_detected_unix, self.first_detected_unix)
    }
}

/// Times written as JSON numbers and read back: equal to the microsecond
/// (the precision of the idempotency key).
fn same_time(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

/// A period during which the verdict has been unknown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnknownEpisode {
    /// When it started (Unix time): the episode's identity.
    pub since_unix: f64,
    /// The manifest in use when it started (`None`: none could be used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_digest: Option<String>,
}

impl UnknownEpisode {
    /// The digest as signals name it (`none` without a manifest).
    pub fn digest(&self) -> &str {
        self.manifest_digest.as_deref().unwrap_or("none")
    }
}

/// An operator's explicit clearing of a drift latch (`driftd state
/// clear`), recorded in the state file. A running agent honours it on its
/// next reload only if it names the episode the agent holds: deleting or
/// editing files never clears a latch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Clearance {
    /// The episode cleared.
    pub manifest_digest: String,
    pub first_detected_unix: f64,
    /// When, by whom and why.
    pub cleared_unix: f64,
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What the state file holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateDoc {
    pub schema: String,
    /// The drift latch.
    pub declared: Option<DriftEpisode>,
    /// The unknown episode under way, if the verdict is unknown: its start
    /// is kept so its idempotency key survives a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown: Option<UnknownEpisode>,
    /// The last clearance by an operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleared: Option<Clearance>,
}

impl Default for StateDoc {
    fn default() -> Self {
        StateDoc {
            schema: STATE_SCHEMA.into(),
            declared: None,
            unknown: None,
            cleared: None,
        }
    }
}

/// An episode's idempotency key: hex BLAKE3 (128 bits) of host id,
/// manifest digest, event and the episode's start (to the microsecond).
pub fn idempotency_key(host_id: &str, digest: &str, event: &str, start_unix: f64) -> String {
    let mut h = blake3::Hasher::new();
    for part in [host_id, digest, event, &format!("{start_unix:.6}")] {
        h.update(part.as_bytes());
        h.update(b"\0");
    }
    crate::manifest::escape::to_hex(&h.finalize().as_bytes()[..16])
}

/// A signal the state machine asks for: one per episode; the signal
/// module adds the host and the time of sending.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalRequest {
    pub event: SignalEvent,
    /// `none` when no manifest could be loaded.
    pub manifest_digest: String,
    pub image_id: String,
    /// When the episode started (drift confirmed, or unknown since).
    pub start_unix: f64,
    /// Why the verdict is unknown (for `verdict.unknown`).
    pub reason: Option<String>,
    pub counts: Counts,
    pub findings_total: u64,
    /// At most [`SIGNAL_FINDINGS`].
    pub findings: Vec<FindingRecord>,
}

impl SignalRequest {
    pub fn idempotency_key(&self, host_id: &str) -> String {
        idempotency_key(
            host_id,
            &self.manifest_digest,
            self.event.label(),
            self.start_unix,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::diff::FindingKind;

    #[test]
    fn keys_are_stable_and_distinct() {
        let a = idempotency_key("h", "blake3:aa", "drift.detected", 1.5);
        assert_eq!(a, idempotency_key("h", "blake3:aa", "drift.detected", 1.5));
        assert_eq!(a.len(), 32);
        assert_ne!(a, idempotency_key("h2", "blake3:aa", "drift.detected", 1.5));
        assert_ne!(a, idempotency_key("h", "blake3:bb", "drift.detected", 1.5));
        assert_ne!(a, idempotency_key("h", "blake3:aa", "drift.detected", 2.5));
        assert_ne!(a, idempotency_key("h", "blake3:aa", "verdict.unknown", 1.5));
    }

    #[test]
    fn state_files_of_older_agents_read_and_round_trip() {
        // What the agent of the previous release wrote.
        let old = r#"{"schema":"driftd.state.v1","declared":{"manifest_digest":"blake3:00",
            "image_id":"img","first_detected_unix":1700000000.5,"findings_total":1,
            "findings":[{"path":"/etc/x","kind":"modified","attributes":["content"]}]}}"#;
        let doc: StateDoc = serde_json::from_str(old).unwrap();
        let d = doc.declared.as_ref().unwrap();
        assert_eq!(d.findings[0].kind, FindingKind::Modified);
        assert_eq!(d.counts, Counts::default());
        assert_eq!(doc.unknown, None);
        let again: StateDoc = serde_json::from_str(&serde_json::to_string(&doc).unwrap()).unwrap();
        assert_eq!(again, doc);
    }

    #[test]
    fn a_clearance_names_one_episode() {
        let f = Finding::simple(b"/etc/x", FindingKind::Added);
        let e = DriftEpisode::declare(
            "blake3:aa",
            "img",
            Counts::of(std::slice::from_ref(&f)),
            &[&f],
            1_800_000_000.123_456,
        );
        let c = Clearance {
            manifest_digest: "blake3:aa".into(),
            first_detected_unix: 1_800_000_000.123_456,
            cleared_unix: 1_800_000_100.0,
            by: "root".into(),
            reason: None,
        };
        assert!(e.is_cleared_by(&c));
        assert!(!e.is_cleared_by(&Clearance {
            first_detected_unix: 1_800_000_000.2,
            ..c.clone()
        }));
        assert!(!e.is_cleared_by(&Clearance {
            manifest_digest: "blake3:bb".into(),
            ..c
        }));
        assert_eq!(e.counts.added, 1);
    }
}
