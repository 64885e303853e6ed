//! `driftd run`: the long-running agent loop.
//!
//! One task owns all state ([`engine::Engine`]) and reacts to: filesystem
//! hints (debounced, then a targeted re-check of the touched paths), the
//! full-rescan schedule (interval plus jitter, paced by a read-rate
//! limit), SIGHUP (reload the manifest and rescan), SIGTERM/SIGINT (stop,
//! cancelling a running scan), check results, and the systemd watchdog.
//! Checks run on blocking threads; their results come back over a channel.
//! Nothing polls: with nothing happening the loop sleeps until the next
//! timer (watchdog or scheduled rescan).

pub mod engine;
pub mod state;

use crate::check::{check_scope, manifest_policy, CheckError, CheckReport};
use crate::config::AgentConfig;
use crate::manifest::diff::{FindingKind, Verdict};
use crate::manifest::escape::escape;
use crate::manifest::{sign, Manifest};
use crate::policy::CompiledPolicy;
use crate::scan::{Pacer, ScanControl};
use crate::telemetry::http::Shared;
use crate::watch::{Debouncer, Watch, WatchMsg};
use engine::Engine;
use state::StateStore;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{error, info, warn};

/// Settings of one agent.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub agent: AgentConfig,
    /// Hashing threads (0 = one per CPU).
    pub threads: usize,
    pub signals: crate::config::SignalsConfig,
    /// Control-plane backends (none: only metrics and /healthz).
    pub backends: Vec<crate::config::BackendConfig>,
}

/// A verified manifest and its compiled policy.
pub struct Loaded {
    pub manifest: Arc<Manifest>,
    pub policy: Arc<CompiledPolicy>,
    /// The trusted key that verified the signature (`None`: not verified).
    pub key_id: Option<String>,
}

/// The result of a check job.
enum JobResult {
    Full {
        result: Result<CheckReport, CheckError>,
        elapsed: Duration,
        digest: String,
    },
    Targeted {
        scope: Vec<Box<[u8]>>,
        confirming: bool,
        result: Result<Vec<CheckReport>, CheckError>,
        elapsed: Duration,
        digest: String,
    },
}

pub use crate::clock::{now_unix, random_fraction};

/// The full-rescan schedule: every `interval` plus a fresh random delay of
/// up to `jitter` each time.
#[derive(Debug)]
pub struct Schedule {
    interval: Duration,
    jitter: Duration,
    next: Instant,
    random: fn() -> f64,
}

impl Schedule {
    pub fn new(interval: Duration, jitter: Duration, random: fn() -> f64) -> Schedule {
        let next = Instant::now() + next_full_scan_delay(interval, jitter, random());
        Schedule {
            interval,
            jitter,
            next,
            random,
        }
    }

    /// When the next rescan is due.
    pub fn next(&self) -> Instant {
        self.next
    }

    /// True (and the next one scheduled) if a rescan is due now.
    pub fn due(&mut self) -> bool {
        let now = Instant::now();
        if now < self.next {
            return false;
        }
        self.next = now + next_full_scan_delay(self.interval, self.jitter, (self.random)());
        true
    }
}

/// When the next full rescan is due: the interval plus up to `jitter`.
pub fn next_full_scan_delay(interval: Duration, jitter: Duration, fraction: f64) -> Duration {
    interval + jitter.mul_f64(fraction.clamp(0.0, 1.0))
}

/// Load and verify the manifest. Errors carry a bounded reason label
/// (`driftd_manifest_error`) and a message for people.
pub fn load_manifest(agent: &AgentConfig) -> Result<Loaded, (&'static str, String)> {
    let path = &agent.manifest;
    let bytes = std::fs::read(path).map_err(|e| {
        let reason = if e.kind() == std::io::ErrorKind::NotFound {
            "missing"
        } else {
            "unreadable"
        };
        (reason, format!("read manifest {}: {e}", path.display()))
    })?;
    let manifest = Manifest::from_vec(bytes).map_err(|e| {
        (
            "corrupt",
            format!("invalid manifest {}: {e}", path.display()),
        )
    })?;
    let key_id = if agent.allow_unsigned {
        None
    } else {
        if agent.trusted_keys.is_empty() {
            return Err((
                "signature",
                "no trusted_keys configured and allow_unsigned is false".into(),
            ));
        }
        let mut keys = Vec::new();
        for k in &agent.trusted_keys {
            let text = std::fs::read_to_string(k).map_err(|e| {
                (
                    "signature",
                    format!("read trusted key {}: {e}", k.display()),
                )
            })?;
            keys.push(
                sign::parse_public(&text)
                    .map_err(|e| ("signature", format!("trusted key {}: {e}", k.display())))?,
            );
        }
        Some(
            sign::verify(&manifest, &keys)
                .map_err(|e| ("signature", format!("manifest {}: {e}", path.display())))?,
        )
    };
    let policy = manifest_policy(&manifest).map_err(|e| ("policy", e.to_string()))?;
    Ok(Loaded {
        manifest: Arc::new(manifest),
        policy: Arc::new(policy),
        key_id,
    })
}

/// The agent.
struct Agent {
    opts: RunOptions,
    shared: Arc<Shared>,
    engine: Engine,
    store: StateStore,
    loaded: Option<Loaded>,
    watch: Option<Watch>,
    watch_rx: Option<mpsc::Receiver<WatchMsg>>,
    debouncer: Debouncer,
    results_tx: mpsc::UnboundedSender<JobResult>,
    full_running: Option<Arc<AtomicBool>>,
    full_requested: Option<&'static str>,
    targeted_running: bool,
    confirm: Vec<Box<[u8]>>,
    confirm_at: Option<Instant>,
    schedule: Schedule,
    pacer: Option<Arc<Pacer>>,
    /// The first full scan has ended (or there is no manifest to scan):
    /// from here on an unknown verdict counts toward `unknown_grace`.
    first_scan_ended: bool,
    /// The sd_notify STATUS= last sent (`None`: READY=1 not sent yet).
    sent_status: Option<String>,
    last_full_unix: Option<f64>,
    /// Queue to the signal dispatcher (`None` without backends).
    signal_tx: Option<mpsc::UnboundedSender<crate::signal::Signal>>,
    host: crate::signal::Host,
    /// Since when the verdict has been unknown (Unix time), and whether
    /// that period was signalled.
    unknown_since: Option<f64>,
    unknown_signalled: bool,
}

impl Agent {
    fn load(&mut self) {
        match load_manifest(&self.opts.agent) {
            Ok(loaded) => {
                let m = &loaded.manifest;
                let digest = m.digest_string();
                let restored = match self.store.load() {
                    Ok(d) => d,
                    Err(e) => {
                        error!(error = %e, "cannot use the state file: verdict unknown until it is fixed");
                        self.set_manifest_metrics(Some(&loaded), None);
                        self.engine.set_manifest(&digest, &m.header.image_id, None);
                        self.engine.set_problem(e.to_string());
                        self.loaded = Some(loaded);
                        // Still watch and scan: drift found now is
                        // declared (and recorded over the broken file).
                        self.setup_watches();
                        return;
                    }
                };
                let changed = self
                    .loaded
                    .as_ref()
                    .is_none_or(|l| l.manifest.digest != m.digest);
                info!(
                    manifest = %self.opts.agent.manifest.display(),
                    image_id = %escape(m.header.image_id.as_bytes()),
                    digest = %digest,
                    entries = m.entries.len(),
                    key_id = loaded.key_id.as_deref().unwrap_or("(signature not verified)"),
                    "manifest loaded"
                );
                if restored
                    .as_ref()
                    .is_some_and(|d| d.manifest_digest == digest)
                {
                    warn!(digest = %digest, "this host was already declared drifted for this manifest; it stays drifted");
                } else if restored.is_some() {
                    info!("state recorded drift against another manifest: a new manifest starts clean");
                    if let Err(e) = self.store.save(None) {
                        error!(error = %e, "cannot reset the state file");
                    }
                }
                self.engine
                    .set_manifest(&digest, &m.header.image_id, restored);
                self.set_manifest_metrics(Some(&loaded), None);
                self.loaded = Some(loaded);
                if changed {
                    self.setup_watches();
                }
            }
            Err((reason, message)) => {
                error!(reason, error = %message, "manifest unusable: verdict unknown");
                self.set_manifest_metrics(None, Some(reason));
                self.engine.set_problem(message);
                self.loaded = None;
            }
        }
    }

    fn set_manifest_metrics(&self, loaded: Option<&Loaded>, error: Option<&str>) {
        let m = &self.shared.metrics;
        m.manifest_info.reset();
        match loaded {
            Some(l) => {
                m.manifest_info
                    .with_label_values(&[
                        &escape(l.manifest.header.image_id.as_bytes()),
                        &l.manifest.digest_string(),
                    ])
                    .set(1);
                m.manifest_entries.set(l.manifest.entries.len() as i64);
            }
            None => m.manifest_entries.set(0),
        }
        m.set_manifest_error(error);
    }

    /// Watch every directory of the manifest (excluded ones are not in it).
    fn setup_watches(&mut self) {
        if !self.opts.agent.watch {
            return;
        }
        let Some(loaded) = &self.loaded else { return };
        if self.watch.is_none() {
            match Watch::new(&self.opts.agent.root, self.shared.watch.clone()) {
                Ok((w, rx)) => {
                    self.watch = Some(w);
                    self.watch_rx = Some(rx);
                }
                Err(e) => {
                    error!(error = %e, "cannot watch the filesystem: relying on full rescans");
                    self.shared.metrics.watch_failures.inc();
                    return;
                }
            }
        }
        let dirs: Vec<Box<[u8]>> = loaded
            .manifest
            .entries
            .iter()
            .filter(|e| e.kind == crate::manifest::FileKind::Dir)
            .map(|e| e.path.clone())
            .collect();
        self.watch_dirs(dirs.iter(), true);
    }

    /// Make sure these directories are watched (a no-op for those that
    /// are). A directory that cannot be watched is counted once and left to
    /// the full rescans; `rescan` asks for one now (not after a full scan,
    /// which would loop while the watch limit holds).
    fn watch_dirs<'a>(&mut self, dirs: impl Iterator<Item = &'a Box<[u8]>>, rescan: bool) {
        let Some(w) = self.watch.as_mut() else { return };
        let mut new_failures = 0u64;
        let mut first_error = None;
        for d in dirs {
            if let Err(e) = w.add(d) {
                if e.first {
                    new_failures += 1;
                    first_error.get_or_insert(e);
                }
            }
        }
        self.shared.metrics.watches.set(w.len() as i64);
        if let Some(err) = first_error {
            warn!(failed = new_failures, error = %err, limit = err.limit, "directories cannot be watched: full rescans cover them");
            self.shared.metrics.watch_failures.inc_by(new_failures);
            if rescan {
                self.request_full("watch_failed");
            }
        }
    }

    fn request_full(&mut self, reason: &'static str) {
        if self.full_requested.is_none() {
            self.full_requested = Some(reason);
        }
    }

    fn scan_control(&self, start: Option<Box<[u8]>>, paced: bool) -> ScanControl {
        ScanControl {
            start,
            cancel: None,
            pacer: if paced { self.pacer.clone() } else { None },
        }
    }

    fn start_jobs(&mut self) {
        let Some(loaded) = &self.loaded else {
            // Nothing to check against: drop what is pending, so no
            // deadline stays in the past (that would spin the loop).
            self.full_requested = None;
            self.debouncer.clear();
            self.confirm.clear();
            self.confirm_at = None;
            return;
        };
        if self.full_running.is_none() {
            if let Some(reason) = self.full_requested.take() {
                info!(reason, "full scan started");
                self.shared
                    .metrics
                    .rescans
                    .with_label_values(&[reason])
                    .inc();
                let cancel = Arc::new(AtomicBool::new(false));
                self.full_running = Some(cancel.clone());
                self.engine.full_scan_started();
                let (manifest, policy) = (loaded.manifest.clone(), loaded.policy.clone());
                let root = self.opts.agent.root.clone();
                let threads = self.opts.threads;
                let mut control = self.scan_control(None, true);
                control.cancel = Some(cancel);
                let tx = self.results_tx.clone();
                let digest = manifest.digest_string();
                tokio::task::spawn_blocking(move || {
                    let started = std::time::Instant::now();
                    let result = check_scope(&manifest, &policy, &root, threads, &control);
                    let _ = tx.send(JobResult::Full {
                        result,
                        elapsed: started.elapsed(),
                        digest,
                    });
                });
            }
        }
        if self.targeted_running {
            return;
        }
        let (scope, confirming) = match self.confirm_at {
            Some(at) if Instant::now() >= at => {
                self.confirm_at = None;
                (std::mem::take(&mut self.confirm), true)
            }
            _ => match self.debouncer.take_due() {
                Some(paths) => (paths, false),
                None => return,
            },
        };
        if scope.is_empty() {
            return;
        }
        self.targeted_running = true;
        let (manifest, policy) = (loaded.manifest.clone(), loaded.policy.clone());
        let root = self.opts.agent.root.clone();
        let tx = self.results_tx.clone();
        let digest = manifest.digest_string();
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let result: Result<Vec<CheckReport>, CheckError> = scope
                .iter()
                .map(|p| {
                    let control = ScanControl {
                        start: Some(p.clone()),
                        ..ScanControl::default()
                    };
                    check_scope(&manifest, &policy, &root, 1, &control)
                })
                .collect();
            let _ = tx.send(JobResult::Targeted {
                scope,
                confirming,
                result,
                elapsed: started.elapsed(),
                digest,
            });
        });
    }

    fn record_scan(
        &self,
        kind: &str,
        result: &str,
        elapsed: Duration,
        report: Option<&CheckReport>,
    ) {
        let m = &self.shared.metrics;
        m.scans.with_label_values(&[kind, result]).inc();
        m.scan_duration
            .with_label_values(&[kind])
            .observe(elapsed.as_secs_f64());
        if let Some(r) = report {
            m.bytes_hashed.inc_by(r.stats.bytes_hashed);
            for f in r
                .findings
                .iter()
                .filter(|f| f.kind == FindingKind::Unreadable)
            {
                let reason = f
                    .cause
                    .unwrap_or(crate::manifest::diff::UnreadableKind::Other)
                    .label();
                m.scan_errors.with_label_values(&[reason]).inc();
            }
        }
    }

    fn handle_result(&mut self, res: JobResult) {
        let current = self.loaded.as_ref().map(|l| l.manifest.digest_string());
        match res {
            JobResult::Full {
                result,
                elapsed,
                digest,
            } => {
                self.full_running = None;
                if current.as_deref() != Some(digest.as_str()) {
                    self.engine.full_scan_failed();
                    return; // a scan of a manifest since replaced
                }
                match result {
                    Ok(report) => {
                        let verdict = report.verdict.name();
                        self.record_scan("full", verdict, elapsed, Some(&report));
                        self.last_full_unix = Some(now_unix());
                        self.shared.metrics.last_full_scan_success.set(now_unix());
                        info!(
                            verdict,
                            findings = report.findings.len(),
                            entries = report.stats.entries,
                            bytes_hashed = report.stats.bytes_hashed,
                            seconds = elapsed.as_secs_f64(),
                            "full scan done"
                        );
                        // A full scan also repairs any watch that was lost.
                        self.watch_dirs(report.dirs.iter(), false);
                        let applied = self.engine.apply_full(report.findings);
                        self.after_apply(applied);
                    }
                    Err(CheckError::Scan(crate::scan::ScanError::Cancelled)) => {
                        self.record_scan("full", "cancelled", elapsed, None);
                        self.engine.full_scan_failed();
                    }
                    Err(e) => {
                        error!(error = %e, "full scan failed");
                        self.record_scan("full", "error", elapsed, None);
                        self.engine.full_scan_failed();
                    }
                }
                self.first_scan_ended = true;
                self.publish();
            }
            JobResult::Targeted {
                scope,
                confirming,
                result,
                elapsed,
                digest,
            } => {
                self.targeted_running = false;
                if current.as_deref() != Some(digest.as_str()) {
                    return;
                }
                match result {
                    Ok(reports) => {
                        let mut findings = Vec::new();
                        let mut worst = Verdict::Clean;
                        for r in &reports {
                            self.record_scan(
                                "targeted",
                                r.verdict.name(),
                                elapsed / reports.len().max(1) as u32,
                                Some(r),
                            );
                            worst = match (worst, r.verdict) {
                                (Verdict::Drifted, _) | (_, Verdict::Drifted) => Verdict::Drifted,
                                (Verdict::Unknown, _) | (_, Verdict::Unknown) => Verdict::Unknown,
                                _ => Verdict::Clean,
                            };
                            findings.extend(r.findings.iter().cloned());
                        }
                        // Every directory the re-check saw gets watched (new
                        // ones, and re-created ones whose old watch the
                        // kernel dropped), so what happens in them is seen.
                        self.watch_dirs(reports.iter().flat_map(|r| r.dirs.iter()), true);
                        if let Some(w) = self.watch.as_mut() {
                            for p in &scope {
                                let abs = crate::scan::display_path(&self.opts.agent.root, p);
                                if std::fs::symlink_metadata(&abs).is_err() {
                                    w.forget(p);
                                }
                            }
                            self.shared.metrics.watches.set(w.len() as i64);
                        }
                        let applied =
                            self.engine
                                .apply_targeted(&scope, findings, confirming, now_unix());
                        if confirming {
                            info!(
                                paths = scope.len(),
                                verdict = worst.name(),
                                "confirmation re-check done"
                            );
                        }
                        self.after_apply(applied);
                    }
                    Err(e) => {
                        error!(error = %e, "targeted re-check failed: rescanning everything");
                        self.record_scan("targeted", "error", elapsed, None);
                        self.request_full("watch_failed");
                    }
                }
            }
        }
    }

    fn after_apply(&mut self, applied: engine::Applied) {
        for f in &applied.new_findings {
            warn!(
                path = %escape(&f.path),
                kind = f.kind.name(),
                attributes = ?f.attributes,
                reason = f.reason.as_deref().unwrap_or(""),
                "finding"
            );
        }
        if !applied.confirm.is_empty() {
            for p in applied.confirm {
                if !self.confirm.contains(&p) {
                    self.confirm.push(p);
                }
            }
            if self.confirm_at.is_none() {
                self.confirm_at = Some(Instant::now() + self.opts.agent.confirm_delay);
            }
        }
        if applied.declared {
            if let Some(d) = self.engine.declared() {
                error!(
                    image_id = %escape(d.image_id.as_bytes()),
                    digest = %d.manifest_digest,
                    findings = d.findings_total,
                    "drift confirmed: this host no longer matches its image"
                );
                if let Err(e) = self.store.save(Some(d)) {
                    error!(error = %e, "cannot persist the drift verdict");
                }
            }
            self.signal_drift();
        }
        self.publish();
    }

    /// Queue the drift signal of the declared episode (the dispatcher skips
    /// backends that already have it, delivered or pending).
    fn signal_drift(&self) {
        let (Some(tx), Some(d)) = (&self.signal_tx, self.engine.declared()) else {
            return;
        };
        let signal = crate::signal::Signal::new(
            &self.host,
            crate::signal::Episode {
                event: "drift.detected",
                verdict: "drifted",
                reason: None,
                manifest_digest: &d.manifest_digest,
                image_id: &d.image_id,
                start_unix: d.first_detected_unix,
                counts: &self.engine.counts(),
                findings_total: d.findings_total,
                findings: d.findings.clone(),
            },
        );
        let _ = tx.send(signal);
    }

    /// Queue an unknown-verdict signal once the verdict has been unknown
    /// for the grace period (only with `[signals] on_unknown`).
    fn signal_unknown_if_due(&mut self) {
        let Some(tx) = &self.signal_tx else { return };
        let Some(since) = self.unknown_since else {
            return;
        };
        if !self.opts.signals.on_unknown
            || self.unknown_signalled
            || now_unix() < since + self.opts.signals.unknown_grace.as_secs_f64()
        {
            return;
        }
        self.unknown_signalled = true;
        let digest = self
            .loaded
            .as_ref()
            .map_or_else(|| "none".to_string(), |l| l.manifest.digest_string());
        let image_id = self
            .loaded
            .as_ref()
            .map(|l| l.manifest.header.image_id.clone())
            .unwrap_or_default();
        let counts = self.engine.counts();
        warn!(since = %crate::signal::rfc3339(since), "verdict unknown past the grace period: signalling");
        let _ = tx.send(crate::signal::Signal::new(
            &self.host,
            crate::signal::Episode {
                event: "verdict.unknown",
                verdict: "unknown",
                reason: self.engine.problem().map(str::to_string),
                manifest_digest: &digest,
                image_id: &image_id,
                start_unix: since,
                counts: &counts,
                findings_total: FindingKind::ALL.iter().map(|k| counts.get(*k)).sum(),
                findings: self
                    .engine
                    .findings()
                    .take(crate::signal::SIGNAL_FINDINGS)
                    .map(state::RecordedFinding::from)
                    .collect(),
            },
        ));
    }

    /// Follow how long the verdict has been unknown.
    fn track_unknown(&mut self) {
        if self.engine.verdict() == Verdict::Unknown && self.first_scan_ended {
            self.unknown_since.get_or_insert_with(now_unix);
        } else {
            self.unknown_since = None;
            self.unknown_signalled = false;
        }
    }

    /// When the unknown grace period ends, if that is pending.
    fn unknown_deadline(&self) -> Option<Instant> {
        let since = self.unknown_since?;
        if self.signal_tx.is_none() || !self.opts.signals.on_unknown || self.unknown_signalled {
            return None;
        }
        let due = since + self.opts.signals.unknown_grace.as_secs_f64();
        Some(Instant::now() + Duration::from_secs_f64((due - now_unix()).max(0.0)))
    }

    /// Push the engine's view to metrics, /healthz, /status and systemd's
    /// STATUS= line.
    fn publish(&mut self) {
        self.notify_status();
        let m = &self.shared.metrics;
        let verdict = self.engine.verdict();
        m.set_verdict(verdict);
        let declared = self.engine.declared();
        m.drift_detected.set(i64::from(declared.is_some()));
        m.first_detection
            .set(declared.map_or(0.0, |d| d.first_detected_unix));
        let counts = self.engine.counts();
        for k in FindingKind::ALL {
            m.drifted_entries
                .with_label_values(&[k.name()])
                .set(counts.get(k) as i64);
        }
        *self
            .shared
            .verdict
            .write()
            .unwrap_or_else(|p| p.into_inner()) = verdict.name();
        let limit = self.opts.agent.status_findings_limit;
        let findings: Vec<state::RecordedFinding> = self
            .engine
            .findings()
            .take(limit)
            .map(state::RecordedFinding::from)
            .collect();
        let total: u64 = FindingKind::ALL.iter().map(|k| counts.get(*k)).sum();
        let manifest = self.loaded.as_ref().map(|l| {
            serde_json::json!({
                "path": self.opts.agent.manifest.display().to_string(),
                "image_id": l.manifest.header.image_id,
                "digest": l.manifest.digest_string(),
                "entries": l.manifest.entries.len(),
                "signed": l.manifest.signature.is_some(),
                "key_id": l.manifest.signature.as_ref().map(|s| s.key_id.clone()),
                "signature_verified": l.key_id.is_some(),
            })
        });
        let first = declared.map(|d| crate::signal::rfc3339(d.first_detected_unix));
        let doc = serde_json::json!({
            "schema": "driftd.status.v1",
            "verdict": verdict.name(),
            "reason": self.engine.problem(),
            "drift_detected": declared.is_some(),
            "first_detected": first,
            "first_detected_unix": declared.map(|d| d.first_detected_unix),
            "manifest": manifest,
            "root": self.opts.agent.root.display().to_string(),
            "full_scan_done": self.engine.full_scan_done(),
            "full_scan_running": self.full_running.is_some(),
            "last_full_scan_unix": self.last_full_unix,
            "counts": counts,
            "findings_total": total,
            "findings_limit": limit,
            "findings": findings,
            "drift_record": declared.map(|d| &d.findings),
        });
        *self
            .shared
            .status
            .write()
            .unwrap_or_else(|p| p.into_inner()) = doc;
    }

    /// What `systemctl status driftd` shows on its Status: line.
    fn status_line(&self) -> String {
        let verdict = self.engine.verdict();
        if verdict != Verdict::Unknown {
            return format!("verdict {}", verdict.name());
        }
        if self.loaded.is_some() && !self.first_scan_ended {
            return "first full scan running, verdict unknown until it ends".into();
        }
        match self.engine.problem() {
            Some(p) => format!("verdict unknown: {p}"),
            None => "verdict unknown".into(),
        }
    }

    /// Tell systemd we are up (once) and keep its STATUS= line current.
    /// READY=1 goes out as soon as the agent serves its verdict, before
    /// the first full scan, which may take minutes when paced: a start must
    /// not time out, and the boot must not wait for the scan. Until the
    /// scan ends the verdict is *unknown* (/healthz answers 503).
    fn notify_status(&mut self) {
        let Some(sent) = &self.sent_status else {
            return;
        };
        let status = self.status_line();
        if *sent != status {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&status)]);
            self.sent_status = Some(status);
        }
    }

    fn notify_ready(&mut self) {
        let status = self.status_line();
        let _ = sd_notify::notify(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(&status),
        ]);
        info!(status = status.as_str(), "ready");
        self.sent_status = Some(status);
    }
}

/// Run the agent until `shutdown` resolves. `listener` serves the HTTP
/// endpoints.
pub async fn run(
    opts: RunOptions,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), std::io::Error> {
    use tokio::signal::unix::{signal, SignalKind};
    let shared = Arc::new(Shared::new());
    let (stop_http_tx, stop_http_rx) = tokio::sync::oneshot::channel::<()>();
    let app = crate::telemetry::http::router(shared.clone());
    let server = tokio::spawn(async move {
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop_http_rx.await;
            })
            .await;
        if let Err(e) = r {
            error!(error = %e, "HTTP server failed");
        }
    });
    let (results_tx, mut results_rx) = mpsc::unbounded_channel();
    let agent_cfg = opts.agent.clone();
    let backends = crate::signal::build(&opts.backends)
        .map_err(|e| std::io::Error::other(format!("signal backends: {e}")))?;
    shared
        .metrics
        .register_backends(backends.iter().map(|c| c.backend.name()));
    let signal_tx = (!backends.is_empty()).then(|| {
        crate::signal::dispatch::Dispatcher {
            backends,
            outbox: crate::signal::outbox::Outbox::new(&agent_cfg.state_dir),
            shared: shared.clone(),
            retry_initial: opts.signals.retry_initial,
            retry_max: opts.signals.retry_max,
        }
        .spawn()
    });
    let host = crate::signal::Host::local(opts.signals.host_id.as_deref());
    let mut agent = Agent {
        store: StateStore::new(&agent_cfg.state_dir),
        debouncer: Debouncer::new(agent_cfg.debounce),
        pacer: (agent_cfg.read_rate_limit > 0)
            .then(|| Arc::new(Pacer::new(agent_cfg.read_rate_limit))),
        schedule: Schedule::new(
            agent_cfg.full_scan_interval,
            agent_cfg.full_scan_jitter,
            random_fraction,
        ),
        opts,
        shared,
        engine: Engine::new(),
        loaded: None,
        watch: None,
        watch_rx: None,
        results_tx,
        full_running: None,
        full_requested: None,
        targeted_running: false,
        confirm: Vec::new(),
        confirm_at: None,
        first_scan_ended: false,
        sent_status: None,
        last_full_unix: None,
        signal_tx,
        host,
        unknown_since: None,
        unknown_signalled: false,
    };
    agent.request_full("startup");
    agent.load();
    agent.publish();
    // A drift declared before a restart whose signal never left (a crash
    // between the declaration and the outbox write): queue it again; the
    // dispatcher skips what was delivered or is pending.
    agent.signal_drift();
    if agent.loaded.is_none() {
        // Nothing to scan: serve "unknown" with the reason.
        agent.first_scan_ended = true;
    }
    // Serving: the HTTP listener is bound, the verdict is published.
    agent.notify_ready();
    let mut sighup = signal(SignalKind::hangup())?;
    let watchdog = sd_notify::watchdog_enabled().map(|d| d / 2);
    let mut next_watchdog = watchdog.map(|d| Instant::now() + d);
    tokio::pin!(shutdown);
    loop {
        // How long the verdict has been unknown is followed at every turn,
        // before the wake-up time is chosen (it may add a deadline).
        agent.track_unknown();
        agent.signal_unknown_if_due();
        let was_scanning = agent.full_running.is_some();
        agent.start_jobs();
        if !was_scanning && agent.full_running.is_some() {
            agent.publish(); // /status shows the running scan
        }
        let now = Instant::now();
        // Deadlines that cannot be acted on now (a re-check is running; its
        // result wakes the loop) must not count, or a past deadline would
        // turn the loop into a busy wait.
        let (batch, confirm) = if agent.targeted_running {
            (None, None)
        } else {
            (agent.debouncer.deadline(), agent.confirm_at)
        };
        let wake = [
            batch,
            confirm,
            Some(agent.schedule.next()),
            next_watchdog,
            agent.unknown_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(now + Duration::from_secs(3600));
        tokio::select! {
            _ = &mut shutdown => break,
            _ = sighup.recv() => {
                info!("SIGHUP: reloading the manifest and rescanning");
                let before = agent.loaded.as_ref().map(|l| l.manifest.digest);
                agent.load();
                let after = agent.loaded.as_ref().map(|l| l.manifest.digest);
                let changed = before.is_some() && after.is_some() && before != after;
                agent.request_full(if changed { "manifest_changed" } else { "sighup" });
                agent.publish();
            }
            msg = async {
                match agent.watch_rx.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => match msg {
                Some(WatchMsg::Touched(paths)) => agent.debouncer.push(paths),
                Some(WatchMsg::Overflow) => {
                    warn!("filesystem events were lost: full rescan");
                    agent.debouncer.clear();
                    agent.request_full("overflow");
                }
                None => {
                    error!("the filesystem watcher stopped: relying on full rescans");
                    agent.watch_rx = None;
                    agent.watch = None;
                }
            },
            Some(res) = results_rx.recv() => agent.handle_result(res),
            _ = tokio::time::sleep_until(wake) => {}
        }
        let now = Instant::now();
        if agent.schedule.due() {
            agent.request_full("interval");
        }

        if let (Some(d), Some(at)) = (watchdog, next_watchdog) {
            if now >= at {
                // Only this loop pings: if it stops turning, systemd
                // notices and restarts us.
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                next_watchdog = Some(now + d);
            }
        }
    }
    info!("shutting down");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    if let Some(cancel) = &agent.full_running {
        cancel.store(true, Ordering::Relaxed);
    }
    let _ = stop_http_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rescans_follow_the_interval_plus_fresh_jitter() {
        use std::sync::atomic::AtomicUsize;
        static CALLS: AtomicUsize = AtomicUsize::new(0);
        // 0.0, 0.5, 1.0, 0.0, ...: a different jitter every time.
        fn fake() -> f64 {
            [0.0, 0.5, 1.0][CALLS.fetch_add(1, Ordering::Relaxed) % 3]
        }
        let start = Instant::now();
        let mut s = Schedule::new(Duration::from_secs(100), Duration::from_secs(10), fake);
        assert_eq!(s.next() - start, Duration::from_secs(100));
        assert!(!s.due());
        tokio::time::advance(Duration::from_secs(99)).await;
        assert!(!s.due(), "not before the interval");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(s.due());
        assert_eq!(
            s.next() - start,
            Duration::from_secs(205),
            "interval + 0.5 jitter"
        );
        assert!(!s.due(), "once per period");
        tokio::time::advance(Duration::from_secs(105)).await;
        assert!(s.due());
        assert_eq!(
            s.next() - start,
            Duration::from_secs(315),
            "interval + full jitter"
        );
    }

    #[test]
    fn jitter_spreads_within_bounds() {
        let i = Duration::from_secs(3600);
        let j = Duration::from_secs(600);
        assert_eq!(next_full_scan_delay(i, j, 0.0), i);
        assert_eq!(
            next_full_scan_delay(i, j, 0.5),
            i + Duration::from_secs(300)
        );
        assert!(next_full_scan_delay(i, j, 0.999_999) < i + j);
        assert_eq!(next_full_scan_delay(i, j, 7.0), i + j, "clamped");
        let a = random_fraction();
        assert!((0.0..1.0).contains(&a));
    }
}
