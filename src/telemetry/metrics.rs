//! Every metric driftd exports, defined in one place.
//!
//! Names follow Prometheus conventions (`driftd_` prefix, base units,
//! `_total` for counters, `_seconds`, `_bytes`). Labels are bounded enums:
//! never a file path. Every labelled series is created at start with its
//! zero value, so an alert on a series that never happened still evaluates.

use crate::manifest::diff::{FindingKind, Verdict};
use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// Why the manifest could not be used (label values of
/// `driftd_manifest_error`).
pub const MANIFEST_ERRORS: [&str; 5] = ["missing", "unreadable", "corrupt", "signature", "policy"];

/// Scan kinds: full rescans and targeted re-checks after events.
pub const SCAN_KINDS: [&str; 2] = ["full", "targeted"];

/// Scan results.
pub const SCAN_RESULTS: [&str; 5] = ["clean", "drifted", "unknown", "error", "cancelled"];

/// Why a full rescan was started.
pub const RESCAN_REASONS: [&str; 6] = [
    "startup",
    "interval",
    "sighup",
    "overflow",
    "watch_failed",
    "manifest_changed",
];

/// The metrics of one agent.
pub struct Metrics {
    registry: Registry,
    pub manifest_info: IntGaugeVec,
    pub manifest_entries: IntGauge,
    pub manifest_valid: IntGauge,
    pub manifest_error: IntGaugeVec,
    pub drift_detected: IntGauge,
    pub verdict: IntGaugeVec,
    pub drifted_entries: IntGaugeVec,
    pub first_detection: Gauge,
    pub scans: IntCounterVec,
    pub scan_duration: HistogramVec,
    pub last_full_scan_success: Gauge,
    pub bytes_hashed: IntCounter,
    pub fs_events: IntCounter,
    pub fs_events_dropped: IntCounter,
    pub rescans: IntCounterVec,
    pub scan_errors: IntCounterVec,
    pub watches: IntGauge,
    pub watch_failures: IntCounter,
    pub signal_requests: IntCounterVec,
    pub signal_last_success: prometheus::GaugeVec,
    pub signal_pending: IntGaugeVec,
}

/// Results of a signal request.
pub const SIGNAL_RESULTS: [&str; 3] = ["success", "failure", "dry_run"];

fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
    // Names are static and unique: registration cannot fail.
    r.register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let build = reg(
            &r,
            IntGaugeVec::new(
                Opts::new("driftd_build_info", "driftd build; the value is always 1."),
                &["version"],
            )
            .expect("valid metric"),
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let m = Metrics {
            manifest_info: reg(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "driftd_manifest_info",
                        "The manifest in use (image id and digest); the value is always 1.",
                    ),
                    &["image_id", "digest"],
                )
                .expect("valid metric"),
            ),
            manifest_entries: reg(
                &r,
                IntGauge::new("driftd_manifest_entries", "Entries in the manifest in use.")
                    .expect("valid metric"),
            ),
            manifest_valid: reg(
                &r,
                IntGauge::new(
                    "driftd_manifest_valid",
                    "1 if the manifest was loaded and verified, 0 if not (see driftd_manifest_error).",
                )
                .expect("valid metric"),
            ),
            manifest_error: reg(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "driftd_manifest_error",
                        "1 for the reason the manifest cannot be used, 0 for the others.",
                    ),
                    &["reason"],
                )
                .expect("valid metric"),
            ),
            drift_detected: reg(
                &r,
                IntGauge::new(
                    "driftd_drift_detected",
                    "1 once drift is confirmed on this host (until a new manifest), else 0.",
                )
                .expect("valid metric"),
            ),
            verdict: reg(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "driftd_verdict",
                        "1 for the current verdict (clean, drifted, unknown), 0 for the others.",
                    ),
                    &["verdict"],
                )
                .expect("valid metric"),
            ),
            drifted_entries: reg(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "driftd_drifted_entries",
                        "Current findings by kind (added, removed, modified, metadata, type, unreadable).",
                    ),
                    &["kind"],
                )
                .expect("valid metric"),
            ),
            first_detection: reg(
                &r,
                Gauge::new(
                    "driftd_first_detection_timestamp_seconds",
                    "When drift was first confirmed (Unix time), 0 if never.",
                )
                .expect("valid metric"),
            ),
            scans: reg(
                &r,
                IntCounterVec::new(
                    Opts::new("driftd_scans_total", "Scans by kind and result."),
                    &["kind", "result"],
                )
                .expect("valid metric"),
            ),
            scan_duration: reg(
                &r,
                HistogramVec::new(
                    HistogramOpts::new("driftd_scan_duration_seconds", "Scan durations by kind.")
                        .buckets(vec![
                            0.001, 0.01, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0,
                        ]),
                    &["kind"],
                )
                .expect("valid metric"),
            ),
            last_full_scan_success: reg(
                &r,
                Gauge::new(
                    "driftd_last_full_scan_success_timestamp_seconds",
                    "When the last full scan completed (Unix time), 0 if none yet.",
                )
                .expect("valid metric"),
            ),
            bytes_hashed: reg(
                &r,
                IntCounter::new("driftd_hashed_bytes_total", "Bytes read and hashed by scans.")
                    .expect("valid metric"),
            ),
            fs_events: reg(
                &r,
                IntCounter::new("driftd_fs_events_total", "Filesystem events received.")
                    .expect("valid metric"),
            ),
            fs_events_dropped: reg(
                &r,
                IntCounter::new(
                    "driftd_fs_events_dropped_total",
                    "Filesystem event queue overflows (each forces a full rescan).",
                )
                .expect("valid metric"),
            ),
            rescans: reg(
                &r,
                IntCounterVec::new(
                    Opts::new("driftd_rescans_total", "Full rescans started, by reason."),
                    &["reason"],
                )
                .expect("valid metric"),
            ),
            scan_errors: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "driftd_scan_errors_total",
                        "Paths that could not be checked, by reason.",
                    ),
                    &["reason"],
                )
                .expect("valid metric"),
            ),
            watches: reg(
                &r,
                IntGauge::new("driftd_watches", "Directories watched with inotify.")
                    .expect("valid metric"),
            ),
            watch_failures: reg(
                &r,
                IntCounter::new(
                    "driftd_watch_failures_total",
                    "Directories that could not be watched (e.g. the inotify watch limit).",
                )
                .expect("valid metric"),
            ),
            signal_requests: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "driftd_signal_requests_total",
                        "Control-plane signal requests by backend and result (success, failure, dry_run).",
                    ),
                    &["backend", "result"],
                )
                .expect("valid metric"),
            ),
            signal_last_success: reg(
                &r,
                prometheus::GaugeVec::new(
                    Opts::new(
                        "driftd_signal_last_success_timestamp_seconds",
                        "When a signal was last delivered, by backend (Unix time), 0 if never.",
                    ),
                    &["backend"],
                )
                .expect("valid metric"),
            ),
            signal_pending: reg(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "driftd_signal_pending",
                        "Signals waiting in the outbox for delivery, by backend.",
                    ),
                    &["backend"],
                )
                .expect("valid metric"),
            ),
            registry: r,
        };
        for reason in MANIFEST_ERRORS {
            m.manifest_error.with_label_values(&[reason]).set(0);
        }
        for v in [Verdict::Clean, Verdict::Drifted, Verdict::Unknown] {
            m.verdict.with_label_values(&[v.name()]).set(0);
        }
        for k in FindingKind::ALL {
            m.drifted_entries.with_label_values(&[k.name()]).set(0);
        }
        for kind in SCAN_KINDS {
            m.scan_duration.with_label_values(&[kind]);
            for result in SCAN_RESULTS {
                m.scans.with_label_values(&[kind, result]);
            }
        }
        for reason in RESCAN_REASONS {
            m.rescans.with_label_values(&[reason]);
        }
        for cause in crate::manifest::diff::UnreadableKind::ALL {
            m.scan_errors.with_label_values(&[cause.label()]);
        }
        m
    }

    /// Create the per-backend series with zero values (backend names come
    /// from the config: bounded).
    pub fn register_backends<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        for name in names {
            for result in SIGNAL_RESULTS {
                self.signal_requests.with_label_values(&[name, result]);
            }
            self.signal_last_success.with_label_values(&[name]).set(0.0);
            self.signal_pending.with_label_values(&[name]).set(0);
        }
    }

    /// Set the one-hot verdict gauges.
    pub fn set_verdict(&self, verdict: Verdict) {
        for v in [Verdict::Clean, Verdict::Drifted, Verdict::Unknown] {
            self.verdict
                .with_label_values(&[v.name()])
                .set(i64::from(v == verdict));
        }
    }

    /// Set the one-hot manifest error gauges (`None`: the manifest is valid).
    pub fn set_manifest_error(&self, reason: Option<&str>) {
        self.manifest_valid.set(i64::from(reason.is_none()));
        for r in MANIFEST_ERRORS {
            self.manifest_error
                .with_label_values(&[r])
                .set(i64::from(Some(r) == reason));
        }
    }

    /// The Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding our own well-formed families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_labelled_series_exists_from_the_start() {
        let text = Metrics::new().render();
        for needle in [
            "driftd_drift_detected 0",
            "driftd_verdict{verdict=\"unknown\"} 0",
            "driftd_drifted_entries{kind=\"unreadable\"} 0",
            "driftd_scans_total{kind=\"targeted\",result=\"drifted\"} 0",
            "driftd_rescans_total{reason=\"overflow\"} 0",
            "driftd_scan_errors_total{reason=\"permission_denied\"} 0",
            "driftd_manifest_error{reason=\"signature\"} 0",
            "driftd_scan_duration_seconds_count{kind=\"full\"} 0",
            "driftd_build_info{version=",
        ] {
            assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
        }
    }

    #[test]
    fn one_hot_gauges() {
        let m = Metrics::new();
        m.set_verdict(Verdict::Drifted);
        m.set_manifest_error(Some("corrupt"));
        let text = m.render();
        assert!(text.contains("driftd_verdict{verdict=\"drifted\"} 1"));
        assert!(text.contains("driftd_verdict{verdict=\"clean\"} 0"));
        assert!(text.contains("driftd_manifest_error{reason=\"corrupt\"} 1"));
        assert!(text.contains("driftd_manifest_valid 0"));
    }
}
