//! Showing the machine's view: metrics, `/healthz` and `/status` (through
//! the shared state the HTTP handlers read), and systemd's status line.

use crate::manifest::diff::{FindingKind, Verdict};
use crate::manifest::escape::escape;
use crate::telemetry::http::Shared;
use crate::telemetry::status::StatusDoc;
use crate::trust;
use crate::verdict::{Machine, VerdictReason, View};
use std::path::PathBuf;
use std::sync::Arc;
use tracing::info;

pub struct Publisher {
    pub shared: Arc<Shared>,
    root: PathBuf,
    limit: usize,
    /// The digest whose `driftd_manifest_info` series is set.
    info_digest: Option<String>,
    /// The sd_notify STATUS= last sent (`None`: READY=1 not sent yet).
    sent_status: Option<String>,
}

impl Publisher {
    pub fn new(shared: Arc<Shared>, root: PathBuf, limit: usize) -> Publisher {
        Publisher {
            shared,
            root,
            limit,
            info_digest: None,
            sent_status: None,
        }
    }

    /// Push the machine's view everywhere it is shown.
    pub fn publish(&mut self, machine: &Machine, manifest: Option<&trust::Loaded>) {
        let view = machine.view();
        self.metrics(&view, manifest);
        let info = manifest.map(trust::Loaded::info);
        self.shared
            .publish(StatusDoc::of(&view, info, &self.root, self.limit));
        self.notify_status(&view);
    }

    fn metrics(&mut self, view: &View<'_>, manifest: Option<&trust::Loaded>) {
        let m = &self.shared.metrics;
        m.set_verdict(view.verdict, view.reason);
        m.drift_detected.set(i64::from(view.drift.is_some()));
        m.first_detection
            .set(view.drift.map_or(0.0, |d| d.first_detected_unix));
        for k in FindingKind::ALL {
            m.drifted_entries
                .with_label_values(&[k.name()])
                .set(view.counts.get(k) as i64);
        }
        m.set_manifest_error(view.manifest_failure.map(|f| f.problem));
        m.manifest_valid.set(i64::from(manifest.is_some()));
        let digest = manifest.map(|l| l.manifest.digest_string());
        if digest != self.info_digest {
            m.manifest_info.reset();
            if let Some(l) = manifest {
                m.manifest_info
                    .with_label_values(&[
                        &escape(l.manifest.header.image_id.as_bytes()),
                        &l.manifest.digest_string(),
                    ])
                    .set(1);
            }
            m.manifest_entries
                .set(manifest.map_or(0, |l| l.manifest.len() as i64));
            self.info_digest = digest;
        }
    }

    /// What `systemctl status driftd` shows on its Status: line.
    fn status_line(view: &View<'_>) -> String {
        match (view.verdict, view.reason, &view.message) {
            (Verdict::Unknown, VerdictReason::FirstScanPending, Some(m)) => m.clone(),
            (Verdict::Unknown, _, Some(m)) => format!("verdict unknown: {m}"),
            (v, _, _) => format!("verdict {}", v.name()),
        }
    }

    /// Keep systemd's STATUS= line current (once READY=1 was sent).
    fn notify_status(&mut self, view: &View<'_>) {
        let Some(sent) = &self.sent_status else {
            return;
        };
        let status = Self::status_line(view);
        if *sent != status {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&status)]);
            self.sent_status = Some(status);
        }
    }

    /// Tell systemd we are up. READY=1 goes out as soon as the agent serves
    /// its verdict, before the first full scan, which may take minutes when
    /// paced: a start must not time out, and the boot must not wait for the
    /// scan. Until the scan ends the verdict is *unknown* (/healthz 503).
    pub fn notify_ready(&mut self, machine: &Machine) {
        let status = Self::status_line(&machine.view());
        let _ = sd_notify::notify(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(&status),
        ]);
        info!(status = status.as_str(), "ready");
        self.sent_status = Some(status);
    }
}
