//! Every metric driftd exports, defined in one place.
//!
//! Names follow Prometheus conventions (`driftd_` prefix, base units,
//! `_total` for counters, `_seconds`, `_bytes`). Labels are bounded enums
//! (their values come from the typed reasons' `ALL` lists): never a file
//! path. Every labelled series is created at start with its zero value, so
//! an alert on a series that never happened still evaluates.

use super::status::GuardStatus;
use crate::manifest::diff::{FindingKind, UnreadableKind, Verdict};
use crate::verdict::{ManifestProblem, RescanReason, ScanKind, ScanResult, VerdictReason};
use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::{Arc, RwLock};

/// Results of a signal request (`driftd_signal_requests_total{result}`).
pub const SIGNAL_RESULTS: [&str; 3] = ["success", "failure", "dry_run"];

/// Register a new collector; names are static and unique, so this cannot
/// fail.
fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
    r.register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    reg(r, IntGauge::new(name, help).expect("valid metric"))
}

fn fgauge(r: &Registry, name: &str, help: &str) -> Gauge {
    reg(r, Gauge::new(name, help).expect("valid metric"))
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    reg(r, IntCounter::new(name, help).expect("valid metric"))
}

fn gauges(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    reg(
        r,
        IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

fn counters(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    reg(
        r,
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

/// The metrics of one agent.
pub struct Metrics {
    registry: Registry,
    pub manifest_info: IntGaugeVec,
    pub manifest_entries: IntGauge,
    pub manifest_valid: IntGauge,
    pub manifest_error: IntGaugeVec,
    pub drift_detected: IntGauge,
    pub verdict: IntGaugeVec,
    pub verdict_reason: IntGaugeVec,
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
    pub state_persist_errors: IntCounter,
    pub http_connections: IntGauge,
    pub http_evicted: IntCounter,
    pub http_refused: IntCounter,
    pub http_auth_failures: IntCounter,
    pub blind_spots: IntGaugeVec,
    pub host_info: IntGaugeVec,
    pub config_reload_success: IntGauge,
    pub signal: SignalMetrics,
}

/// The signal dispatcher's metrics and its part of `/status` (the
/// guard's state): a handle the `signal` module is given, so it never
/// reaches into the HTTP layer.
#[derive(Clone)]
pub struct SignalMetrics {
    requests: IntCounterVec,
    last_success: GaugeVec,
    pending: IntGaugeVec,
    held: IntGaugeVec,
    pub guard_hosts: IntGauge,
    pub guard_drifted: IntGauge,
    pub guard_limit: IntGauge,
    pub guard_errors: IntCounter,
    pub guard_dropped: IntCounter,
    guard_status: Arc<RwLock<Option<GuardStatus>>>,
}

impl SignalMetrics {
    /// One request to `backend` ended with `result` (one of
    /// [`SIGNAL_RESULTS`]).
    pub fn request(&self, backend: &str, result: &str) {
        self.requests.with_label_values(&[backend, result]).inc();
    }

    /// A signal was delivered at `unix`.
    pub fn delivered(&self, backend: &str, unix: f64) {
        self.last_success.with_label_values(&[backend]).set(unix);
    }

    /// `n` signals wait for `backend`.
    pub fn pending(&self, backend: &str, n: usize) {
        self.pending.with_label_values(&[backend]).set(n as i64);
    }

    /// Create the series of a backend (a new one, or one added by a
    /// reload), keeping what an existing one counted.
    pub fn register(&self, name: &str) {
        for result in SIGNAL_RESULTS {
            self.requests.with_label_values(&[name, result]);
        }
        self.last_success.with_label_values(&[name]);
        self.pending.with_label_values(&[name]);
        self.held.with_label_values(&[name]);
    }

    /// Whether the guard holds a signal for `backend`.
    pub fn held(&self, backend: &str, held: bool) {
        self.held.with_label_values(&[backend]).set(i64::from(held));
    }

    /// The guard's part of `/status` (`None`: no guard).
    pub fn set_guard_status(&self, status: Option<GuardStatus>) {
        *self.guard_status.write().unwrap_or_else(|p| p.into_inner()) = status;
    }

    pub fn guard_status(&self) -> Option<GuardStatus> {
        self.guard_status
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let build = gauges(
            &r,
            "driftd_build_info",
            "driftd build; the value is always 1.",
            &["version"],
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let signal = SignalMetrics {
            requests: counters(
                &r,
                "driftd_signal_requests_total",
                "Control-plane signal requests by backend and result (success, failure, dry_run).",
                &["backend", "result"],
            ),
            last_success: reg(
                &r,
                GaugeVec::new(
                    Opts::new(
                        "driftd_signal_last_success_timestamp_seconds",
                        "When a signal was last delivered, by backend (Unix time), 0 if never.",
                    ),
                    &["backend"],
                )
                .expect("valid metric"),
            ),
            pending: gauges(
                &r,
                "driftd_signal_pending",
                "Signals waiting in the outbox for delivery, by backend.",
                &["backend"],
            ),
            held: gauges(
                &r,
                "driftd_signal_held",
                "1 while the guard holds a signal for this backend (settling, or held over the limit or on a failed look), else 0.",
                &["backend"],
            ),
            guard_hosts: gauge(&r, "driftd_guard_hosts", "Hosts of this host's image the guard's last look counted (at least 1; 0 before any look)."),
            guard_drifted: gauge(&r, "driftd_guard_drifted", "Drifted (or, for an unknown-verdict signal, unknown) hosts of the image at the guard's last look, this host included."),
            guard_limit: gauge(&r, "driftd_guard_limit", "The limit (max_drifted for the hosts counted) at the guard's last look."),
            guard_errors: counter(&r, "driftd_guard_errors_total", "Guard looks that failed (Prometheus unreachable, timeout, error status, partial answer)."),
            guard_dropped: counter(&r, "driftd_guard_dropped_total", "Held signals dropped because the manifest was replaced (another digest)."),
            guard_status: Arc::default(),
        };
        let m = Metrics {
            manifest_info: gauges(&r, "driftd_manifest_info", "The manifest in use (image id and digest); the value is always 1.", &["image_id", "digest"]),
            manifest_entries: gauge(&r, "driftd_manifest_entries", "Entries in the manifest in use."),
            manifest_valid: gauge(&r, "driftd_manifest_valid", "1 if the manifest was loaded and verified, 0 if not (see driftd_manifest_error)."),
            manifest_error: gauges(&r, "driftd_manifest_error", "1 for the reason the manifest cannot be used, 0 for the others.", &["reason"]),
            drift_detected: gauge(&r, "driftd_drift_detected", "1 once drift is confirmed on this host (until a new manifest or an operator's clearance), else 0."),
            verdict: gauges(&r, "driftd_verdict", "1 for the current verdict (clean, drifted, unknown), 0 for the others.", &["verdict"]),
            verdict_reason: gauges(&r, "driftd_verdict_reason", "1 for the reason the verdict is what it is, 0 for the others.", &["reason"]),
            drifted_entries: gauges(&r, "driftd_drifted_entries", "Current findings by kind (added, removed, modified, metadata, type, unreadable).", &["kind"]),
            first_detection: fgauge(&r, "driftd_first_detection_timestamp_seconds", "When drift was first confirmed (Unix time), 0 if never."),
            scans: counters(&r, "driftd_scans_total", "Scans by kind and result.", &["kind", "result"]),
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
            last_full_scan_success: fgauge(&r, "driftd_last_full_scan_success_timestamp_seconds", "When the last full scan completed (Unix time), 0 if none yet."),
            bytes_hashed: counter(&r, "driftd_hashed_bytes_total", "Bytes read and hashed by scans."),
            fs_events: counter(&r, "driftd_fs_events_total", "Filesystem events received."),
            fs_events_dropped: counter(&r, "driftd_fs_events_dropped_total", "Filesystem event queue overflows (each forces a full rescan)."),
            rescans: counters(&r, "driftd_rescans_total", "Full rescans started, by reason.", &["reason"]),
            scan_errors: counters(&r, "driftd_scan_errors_total", "Paths that could not be checked, by reason.", &["reason"]),
            watches: gauge(&r, "driftd_watches", "Directories watched with inotify."),
            watch_failures: counter(&r, "driftd_watch_failures_total", "Directories that could not be watched (e.g. the inotify watch limit)."),
            state_persist_errors: counter(&r, "driftd_state_persist_errors_total", "Failed writes of the state file (each is retried; the verdict in memory stands)."),
            http_connections: gauge(&r, "driftd_http_connections", "Open connections to the agent's HTTP port."),
            http_evicted: counter(&r, "driftd_http_connections_evicted_total", "Idle or unfinished connections closed to make room for a new one (the connection limit was reached)."),
            http_refused: counter(&r, "driftd_http_connections_refused_total", "Connections closed at once because every connection was busy with a request."),
            http_auth_failures: counter(&r, "driftd_http_auth_failures_total", "Requests refused for missing or wrong basic-auth credentials."),
            blind_spots: gauges(&r, "driftd_blind_spots", "1 for each class of attribute this agent cannot see (a change there goes unnoticed), 0 for the others.", &["class"]),
            host_info: gauges(&r, "driftd_host_info", "This host (the id signals carry, and the hostname); the value is always 1.", &["host_id", "hostname"]),
            config_reload_success: gauge(&r, "driftd_config_reload_success", "1 if the last reload of the config (SIGHUP) succeeded, or none was tried; 0 if it failed (the running config stands)."),
            signal,
            registry: r,
        };
        m.set_manifest_error(None);
        m.manifest_valid.set(0);
        m.config_reload_success.set(1);
        m.set_verdict(Verdict::Unknown, VerdictReason::FirstScanPending);
        for k in FindingKind::ALL {
            m.drifted_entries.with_label_values(&[k.name()]).set(0);
        }
        for kind in ScanKind::ALL {
            m.scan_duration.with_label_values(&[kind.label()]);
            for result in ScanResult::ALL {
                m.scans.with_label_values(&[kind.label(), result.label()]);
            }
        }
        for reason in RescanReason::ALL {
            m.rescans.with_label_values(&[reason.label()]);
        }
        for cause in UnreadableKind::ALL {
            m.scan_errors.with_label_values(&[cause.label()]);
        }
        let blind = crate::scan::blind_spots();
        for class in crate::scan::BlindSpot::ALL {
            m.blind_spots
                .with_label_values(&[class.label()])
                .set(i64::from(blind.contains(&class)));
        }
        m
    }

    /// Create the per-backend series with zero values (backend names come
    /// from the config: bounded).
    pub fn register_backends<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        for name in names {
            self.signal.register(name);
        }
    }

    /// Name this host (`driftd_host_info`), once at start.
    pub fn set_host(&self, id: &str, hostname: &str) {
        self.host_info.reset();
        self.host_info.with_label_values(&[id, hostname]).set(1);
    }

    /// Set the one-hot verdict and verdict-reason gauges.
    pub fn set_verdict(&self, verdict: Verdict, reason: VerdictReason) {
        for v in Verdict::ALL {
            self.verdict
                .with_label_values(&[v.name()])
                .set(i64::from(v == verdict));
        }
        for r in VerdictReason::ALL {
            self.verdict_reason
                .with_label_values(&[r.label()])
                .set(i64::from(*r == reason));
        }
    }

    /// Set the one-hot manifest error gauges (`None`: no error).
    pub fn set_manifest_error(&self, problem: Option<ManifestProblem>) {
        for p in ManifestProblem::ALL {
            self.manifest_error
                .with_label_values(&[p.label()])
                .set(i64::from(Some(*p) == problem));
        }
    }

    /// A scan ended.
    pub fn scan(&self, kind: ScanKind, result: ScanResult, seconds: f64) {
        self.scans
            .with_label_values(&[kind.label(), result.label()])
            .inc();
        self.scan_duration
            .with_label_values(&[kind.label()])
            .observe(seconds);
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
            "driftd_verdict{verdict=\"unknown\"} 1",
            "driftd_verdict_reason{reason=\"first_scan_pending\"} 1",
            "driftd_verdict_reason{reason=\"scan_failed\"} 0",
            "driftd_drifted_entries{kind=\"unreadable\"} 0",
            "driftd_scans_total{kind=\"targeted\",result=\"drifted\"} 0",
            "driftd_rescans_total{reason=\"retry\"} 0",
            "driftd_rescans_total{reason=\"watch_restarted\"} 0",
            "driftd_scan_errors_total{reason=\"scan_failed\"} 0",
            "driftd_manifest_error{reason=\"signature\"} 0",
            "driftd_scan_duration_seconds_count{kind=\"full\"} 0",
            "driftd_state_persist_errors_total 0",
            "driftd_http_connections 0",
            "driftd_http_connections_evicted_total 0",
            "driftd_http_auth_failures_total 0",
            "driftd_build_info{version=",
            "driftd_guard_hosts 0",
            "driftd_guard_drifted 0",
            "driftd_guard_limit 0",
            "driftd_guard_errors_total 0",
            "driftd_guard_dropped_total 0",
            "driftd_config_reload_success 1",
        ] {
            assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
        }
    }

    #[test]
    fn per_backend_and_host_series() {
        let m = Metrics::new();
        m.register_backends(["cp"]);
        m.set_host("5f1c", "web-17");
        let text = m.render();
        for needle in [
            "driftd_signal_held{backend=\"cp\"} 0",
            "driftd_signal_pending{backend=\"cp\"} 0",
            "driftd_host_info{host_id=\"5f1c\",hostname=\"web-17\"} 1",
        ] {
            assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
        }
        m.signal.held("cp", true);
        assert!(m.render().contains("driftd_signal_held{backend=\"cp\"} 1"));
    }

    #[test]
    fn one_hot_gauges() {
        let m = Metrics::new();
        m.set_verdict(Verdict::Drifted, VerdictReason::DriftConfirmed);
        m.set_manifest_error(Some(ManifestProblem::Corrupt));
        let text = m.render();
        assert!(text.contains("driftd_verdict{verdict=\"drifted\"} 1"));
        assert!(text.contains("driftd_verdict{verdict=\"clean\"} 0"));
        assert!(text.contains("driftd_verdict_reason{reason=\"drift_confirmed\"} 1"));
        assert!(text.contains("driftd_verdict_reason{reason=\"first_scan_pending\"} 0"));
        assert!(text.contains("driftd_manifest_error{reason=\"corrupt\"} 1"));
        assert!(text.contains("driftd_manifest_error{reason=\"missing\"} 0"));
    }
}
