//! Telling the control plane to retire and replace a drifted host.
//!
//! Backends (webhook, AWS Auto Scaling, Kubernetes, exec) sit behind one
//! trait, [`Backend`]; several can be active at once. A [`Signal`] is made
//! once per drift episode and carries a stable idempotency key (host,
//! manifest digest, episode), so every request for the same episode is
//! recognisably the same request. Delivery goes through a durable outbox
//! ([`outbox`]) in the state directory and a dispatcher ([`dispatch`]) that
//! retries with capped, jittered exponential backoff: a signal survives
//! crashes and restarts, is delivered at least once per episode and backend
//! (a crash between the receiver's answer and the delivered marker sends it
//! again, with the same idempotency key, so receivers deduplicate on it; the
//! AWS call and the Kubernetes patches are idempotent themselves), and a
//! fleet that drifts at once does not stampede the control plane.

pub mod aws;
pub mod backend;
pub mod dispatch;
pub mod exec;
pub mod guard;
pub mod kubernetes;
pub mod outbox;
pub mod redact;
pub mod webhook;

pub use crate::clock::rfc3339;
use crate::manifest::diff::FindingRecord;
use crate::verdict::episode::SignalRequest;
use crate::verdict::SignalEvent;
pub use backend::{build, Backend, BackendConfig, BackendSpec, Configured, SendFuture};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use crate::verdict::episode::{idempotency_key, SIGNAL_FINDINGS};

/// The host a signal is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Host {
    /// A stable id: `[signals] host_id`, else /etc/machine-id, else the
    /// hostname.
    pub id: String,
    pub hostname: String,
}

/// A one-line system file, trimmed; `None` if unreadable or empty.
fn read_line_file(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// This machine's hostname (the kernel's, as `hostname` prints it). From
/// uname(2), not /proc/sys, which the unit's `ProcSubset=pid` hides.
pub fn hostname() -> Option<String> {
    let name = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .trim()
        .to_string();
    (!name.is_empty()).then_some(name)
}

impl Host {
    /// This machine's identity (`configured` overrides the id).
    pub fn local(configured: Option<&str>) -> Host {
        let read = read_line_file;
        let hostname = hostname().unwrap_or_else(|| "unknown".into());
        let id = configured
            .map(str::to_string)
            .or_else(|| read("/etc/machine-id"))
            .unwrap_or_else(|| hostname.clone());
        Host { id, hostname }
    }
}

/// What is sent: the JSON body of a webhook, the environment of an exec,
/// the reason/message of a Kubernetes condition. Schema `driftd.signal.v1`
/// (documented in the README).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    pub schema: String,
    /// `drift.detected` or `verdict.unknown`.
    #[serde(rename = "type")]
    pub event: String,
    /// Stable for the episode: hex BLAKE3 of host id, manifest digest and
    /// the episode's start.
    pub idempotency_key: String,
    pub host: Host,
    pub image_id: String,
    pub manifest_digest: String,
    /// `drifted` or `unknown`.
    pub verdict: String,
    /// Why the verdict is unknown, if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub counts: BTreeMap<String, u64>,
    pub findings_total: u64,
    /// The first findings (at most [`SIGNAL_FINDINGS`]).
    pub findings: Vec<FindingRecord>,
    /// When the episode started (drift first confirmed, or unknown since).
    pub first_detected: String,
    pub first_detected_unix: f64,
    /// When driftd decided to signal.
    pub created: String,
}

impl Signal {
    /// The signal the verdict machine asked for, from this host, created
    /// at `now_unix`.
    pub fn new(host: &Host, req: &SignalRequest, now_unix: f64) -> Signal {
        use crate::manifest::diff::FindingKind;
        let verdict = match req.event {
            SignalEvent::DriftDetected => "drifted",
            SignalEvent::VerdictUnknown => "unknown",
        };
        Signal {
            schema: "driftd.signal.v1".into(),
            event: req.event.label().into(),
            idempotency_key: req.idempotency_key(&host.id),
            host: host.clone(),
            image_id: req.image_id.clone(),
            manifest_digest: req.manifest_digest.clone(),
            verdict: verdict.into(),
            reason: req.reason.clone(),
            counts: FindingKind::ALL
                .iter()
                .map(|k| (k.name().to_string(), req.counts.get(*k)))
                .collect(),
            findings_total: req.findings_total,
            findings: req.findings.iter().take(SIGNAL_FINDINGS).cloned().collect(),
            first_detected: rfc3339(req.start_unix),
            first_detected_unix: req.start_unix,
            created: rfc3339(now_unix),
        }
    }
}
