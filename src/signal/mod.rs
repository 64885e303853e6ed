//! Telling the control plane to retire and replace a drifted host.
//!
//! Backends (webhook, AWS Auto Scaling, Kubernetes, exec) sit behind one
//! trait, [`Backend`]; several can be active at once. A [`Signal`] is made
//! once per drift episode and carries a stable idempotency key (host,
//! manifest digest, episode), so every request for the same episode is
//! recognisably the same request. Delivery goes through a durable outbox
//! ([`outbox`]) in the state directory and a dispatcher ([`dispatch`]) that
//! retries with capped, jittered exponential backoff: a signal survives
//! crashes and restarts, is delivered at most once per episode and backend,
//! and a fleet that drifts at once does not stampede the control plane.

pub mod aws;
pub mod backend;
pub mod dispatch;
pub mod exec;
pub mod kubernetes;
pub mod outbox;
pub mod webhook;

pub use crate::clock::rfc3339;
use crate::manifest::diff::FindingRecord;
pub use backend::{build, Backend, BackendConfig, BackendSpec, Configured, SendFuture};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most findings a signal carries (the total is always given).
pub const SIGNAL_FINDINGS: usize = 20;

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

/// What a signal is about: one drift (or unknown) episode.
pub struct Episode<'a> {
    pub event: &'a str,
    pub verdict: &'a str,
    pub reason: Option<String>,
    pub manifest_digest: &'a str,
    pub image_id: &'a str,
    /// When the episode started (Unix time): part of the idempotency key.
    pub start_unix: f64,
    pub counts: &'a crate::manifest::diff::Counts,
    pub findings_total: u64,
    pub findings: Vec<FindingRecord>,
}

impl Signal {
    /// The signal of an episode, created now.
    pub fn new(host: &Host, ep: Episode<'_>) -> Signal {
        use crate::manifest::diff::FindingKind;
        let mut findings = ep.findings;
        findings.truncate(SIGNAL_FINDINGS);
        Signal {
            schema: "driftd.signal.v1".into(),
            event: ep.event.into(),
            idempotency_key: idempotency_key(&host.id, ep.manifest_digest, ep.event, ep.start_unix),
            host: host.clone(),
            image_id: ep.image_id.into(),
            manifest_digest: ep.manifest_digest.into(),
            verdict: ep.verdict.into(),
            reason: ep.reason,
            counts: FindingKind::ALL
                .iter()
                .map(|k| (k.name().to_string(), ep.counts.get(*k)))
                .collect(),
            findings_total: ep.findings_total,
            findings,
            first_detected: rfc3339(ep.start_unix),
            first_detected_unix: ep.start_unix,
            created: rfc3339(crate::clock::now_unix()),
        }
    }
}

/// An episode's idempotency key.
pub fn idempotency_key(host_id: &str, digest: &str, event: &str, start_unix: f64) -> String {
    let mut h = blake3::Hasher::new();
    for part in [host_id, digest, event, &format!("{start_unix:.6}")] {
        h.update(part.as_bytes());
        h.update(b"\0");
    }
    crate::manifest::escape::to_hex(&h.finalize().as_bytes()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
