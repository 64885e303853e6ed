//! What the loop logs and counts: the machine's reports as log lines, scan
//! results as metrics and as the machine's outcomes.

use super::jobs::ScanDone;
use crate::check::CheckError;
use crate::manifest::bounded::Bounded;
use crate::manifest::diff::{UnreadableKind, Verdict};
use crate::manifest::escape::escape;
use crate::scan::ScanError;
use crate::telemetry::Metrics;
use crate::trust;
use crate::verdict::{Report, ScanKind, ScanOutcome, ScanResult};
use tracing::{error, info, warn};

/// Log one of the machine's reports.
pub fn log(r: &Report) {
    match r {
        Report::FindingsTruncated { total, held, limit } => warn!(
            findings = total,
            listed = held,
            findings_limit = limit,
            "more findings than findings_limit: the first are listed in /status and logged, all are counted (driftd_drifted_entries)"
        ),
        Report::Finding(f) => warn!(
            path = %escape(&f.path),
            kind = f.kind.name(),
            attributes = ?f.attributes,
            reason = f.reason.as_deref().unwrap_or(""),
            "finding"
        ),
        Report::DriftDeclared(d) => error!(
            image_id = %escape(d.image_id.as_bytes()),
            digest = %d.manifest_digest,
            findings = d.findings_total,
            "drift confirmed: this host no longer matches its image"
        ),
        Report::LatchRestored(d) => warn!(
            digest = %d.manifest_digest,
            first_detected = %crate::clock::rfc3339(d.first_detected_unix),
            "this host was already declared drifted; it stays drifted"
        ),
        Report::StateRewritten => warn!(
            "the state file holds less than memory (missing, older or unreadable): the verdict held in memory stands and is written back"
        ),
        Report::LatchAdopted(d) => warn!(
            digest = %d.manifest_digest,
            "the state file records drift this agent did not hold: the host is drifted"
        ),
        Report::LatchCleared(c) => warn!(
            by = %c.by,
            reason = c.reason.as_deref().unwrap_or(""),
            cleared_at = %crate::clock::rfc3339(c.cleared_unix),
            "the drift verdict was cleared by an operator (driftd state clear): the host is checked afresh"
        ),
        Report::NewImage { old, new } => info!(
            old = %old,
            new = %new,
            "a manifest with another digest: a new image starts clean"
        ),
        Report::ScanFailed {
            kind,
            message,
            retry_in,
        } => error!(
            kind = kind.label(),
            error = %message,
            retry_in_seconds = retry_in.as_secs_f64(),
            "scan failed: what it covers is unknown until a retry succeeds"
        ),
        Report::PersistFailed { message, retry_in } => error!(
            error = %message,
            retry_in_seconds = retry_in.as_secs_f64(),
            "cannot persist the verdict: it stands in memory and the write is retried"
        ),
        Report::WatchLost { retry_in } => error!(
            retry_in_seconds = retry_in.as_secs_f64(),
            "no filesystem watcher: relying on full rescans until it is re-created"
        ),
    }
}

/// A load found a usable manifest.
pub fn loaded(l: &trust::Loaded) {
    let m = &l.manifest;
    info!(
        manifest = %l.path.display(),
        image_id = %escape(m.header.image_id.as_bytes()),
        digest = %m.digest_string(),
        entries = m.entries.len(),
        key_id = l.trust.key_id().unwrap_or("(unsigned manifest, NOT verified: allow_unsigned)"),
        "manifest loaded"
    );
}

/// Count a finished scan.
pub fn record_scan(done: &ScanDone, m: &Metrics) {
    let seconds = done.elapsed.as_secs_f64();
    let reports = match &done.result {
        Ok(r) => r,
        Err(_) => {
            let result = if done.cancelled() {
                ScanResult::Cancelled
            } else {
                ScanResult::Error
            };
            m.scan(done.kind, result, seconds);
            return;
        }
    };
    for r in reports {
        let result = match r.verdict {
            Verdict::Clean => ScanResult::Clean,
            Verdict::Drifted => ScanResult::Drifted,
            Verdict::Unknown => ScanResult::Unknown,
        };
        m.scan(done.kind, result, seconds / reports.len().max(1) as f64);
        m.bytes_hashed.inc_by(r.stats.bytes_hashed);
        for cause in UnreadableKind::ALL {
            let n = r.found.tally().cause(cause);
            if n > 0 {
                m.scan_errors.with_label_values(&[cause.label()]).inc_by(n);
            }
        }
    }
    if done.kind == ScanKind::Full {
        let r = &reports[0];
        m.last_full_scan_success.set(crate::clock::now_unix());
        info!(
            verdict = r.verdict.name(),
            findings = r.counts.total(),
            entries = r.stats.entries,
            bytes_hashed = r.stats.bytes_hashed,
            seconds,
            "full scan done"
        );
    }
}

/// What the machine learns from a finished scan.
pub fn outcome(done: ScanDone) -> ScanOutcome {
    match done.result {
        Ok(reports) => {
            let mut found = reports.into_iter().map(|r| r.found);
            let mut all = found.next().unwrap_or_else(Bounded::unbounded);
            for f in found {
                all.merge(f);
            }
            ScanOutcome::Done(all)
        }
        Err(CheckError::Scan(ScanError::Cancelled)) => ScanOutcome::Cancelled,
        Err(e) => ScanOutcome::Failed(e.to_string()),
    }
}
