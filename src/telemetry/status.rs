//! `/status`: the agent's state as one typed JSON document, schema
//! `driftd.status.v1` (documented in the README).

use crate::clock::rfc3339;
use crate::manifest::diff::{Counts, FindingRecord, Verdict};
use crate::trust::ManifestInfo;
use crate::verdict::episode::DriftEpisode;
use crate::verdict::{ManifestProblem, VerdictReason, View};
use serde::Serialize;
use std::path::Path;

pub const SCHEMA: &str = "driftd.status.v1";

/// Why the manifest cannot be used.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ManifestError {
    pub reason: ManifestProblem,
    pub message: String,
}

/// The `/status` document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusDoc {
    pub schema: &'static str,
    pub verdict: Verdict,
    /// Why the verdict is what it is (the `driftd_verdict_reason` label).
    pub verdict_reason: VerdictReason,
    /// The same, for people; `null` when clean.
    pub reason: Option<String>,
    pub drift_detected: bool,
    pub first_detected: Option<String>,
    pub first_detected_unix: Option<f64>,
    /// The idempotency key of the episode under way (drift, else an unknown
    /// period), as signals carry it.
    pub idempotency_key: Option<String>,
    /// Since when the verdict has been unknown (not while the first scan
    /// runs or drift is being confirmed).
    pub unknown_since: Option<String>,
    pub unknown_since_unix: Option<f64>,
    pub manifest: Option<ManifestInfo>,
    pub manifest_error: Option<ManifestError>,
    pub root: String,
    pub full_scan_done: bool,
    pub full_scan_running: bool,
    pub last_full_scan_unix: Option<f64>,
    pub counts: Counts,
    pub findings_total: u64,
    pub findings_limit: usize,
    /// More findings exist than `findings` lists (see `findings_total`).
    pub findings_truncated: bool,
    pub findings: Vec<FindingRecord>,
    /// The findings that confirmed the drift (kept across restarts).
    pub drift_record: Option<DriftEpisode>,
    /// Classes of attributes this agent cannot see (`trusted_xattrs`).
    pub blind_spots: Vec<crate::scan::BlindSpot>,
}

impl StatusDoc {
    /// The document before anything is known.
    pub fn starting(root: &Path, limit: usize) -> StatusDoc {
        StatusDoc {
            schema: SCHEMA,
            verdict: Verdict::Unknown,
            verdict_reason: VerdictReason::FirstScanPending,
            reason: Some("starting".into()),
            drift_detected: false,
            first_detected: None,
            first_detected_unix: None,
            idempotency_key: None,
            unknown_since: None,
            unknown_since_unix: None,
            manifest: None,
            manifest_error: None,
            root: root.display().to_string(),
            full_scan_done: false,
            full_scan_running: false,
            last_full_scan_unix: None,
            counts: Counts::default(),
            findings_total: 0,
            findings_limit: limit,
            findings_truncated: false,
            findings: Vec::new(),
            drift_record: None,
            blind_spots: crate::scan::blind_spots(),
        }
    }

    /// The document of a view of the verdict machine; at most `limit`
    /// findings are listed.
    pub fn of(view: &View<'_>, manifest: Option<ManifestInfo>, root: &Path, limit: usize) -> Self {
        let total = view.counts.total();
        let findings: Vec<FindingRecord> = view
            .findings
            .iter()
            .take(limit)
            .map(FindingRecord::from)
            .collect();
        StatusDoc {
            schema: SCHEMA,
            verdict: view.verdict,
            verdict_reason: view.reason,
            reason: view.message.clone(),
            drift_detected: view.drift.is_some(),
            first_detected: view.drift.map(|d| rfc3339(d.first_detected_unix)),
            first_detected_unix: view.drift.map(|d| d.first_detected_unix),
            idempotency_key: view.episode_key.clone(),
            unknown_since: view.unknown.map(|u| rfc3339(u.since_unix)),
            unknown_since_unix: view.unknown.map(|u| u.since_unix),
            manifest,
            manifest_error: view.manifest_failure.map(|f| ManifestError {
                reason: f.problem,
                message: f.message.clone(),
            }),
            root: root.display().to_string(),
            full_scan_done: view.full_scan_done,
            full_scan_running: view.full_scan_running,
            last_full_scan_unix: view.last_full_scan_unix,
            counts: view.counts,
            findings_total: total,
            findings_limit: limit,
            findings_truncated: (findings.len() as u64) < total,
            findings,
            drift_record: view.drift.cloned(),
            blind_spots: crate::scan::blind_spots(),
        }
    }
}

/// The guard's part of `/status` (`guard`; `null` without a guard).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuardStatus {
    /// The query API asked (it holds no credentials: the config refuses
    /// them).
    pub prometheus_url: String,
    pub max_drifted: String,
    pub on_error: &'static str,
    /// Whether any signal is held (waiting on the guard).
    pub held: bool,
    /// The last look of any signal.
    pub last_answer: Option<GuardAnswer>,
    /// The signals the guard decides about (those still in the outbox).
    pub signals: Vec<GuardSignal>,
}

/// One judged look.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuardAnswer {
    pub at: String,
    pub at_unix: f64,
    /// `drift.detected` or `verdict.unknown`: which hosts were counted.
    pub event: String,
    /// Hosts of the image (at least 1), the drifted (or unknown) ones
    /// with this host, and the limit for that many hosts; absent when the
    /// look failed.
    pub hosts: Option<u64>,
    pub drifted: Option<u64>,
    pub limit: Option<u64>,
    /// Why the look failed.
    pub error: Option<String>,
}

/// One signal waiting on (or released by) the guard.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuardSignal {
    pub idempotency_key: String,
    pub event: String,
    pub manifest_digest: String,
    /// `settling`, `looking`, `held` or `released`.
    pub state: &'static str,
    /// Whether the guard keeps it from being sent now.
    pub held: bool,
    /// Why, for people.
    pub why: String,
    /// The guarded backends whose outbox items it is.
    pub backends: Vec<String>,
    pub last_answer: Option<GuardAnswer>,
    pub next_look: Option<String>,
    pub next_look_unix: Option<f64>,
}
