//! The agent's HTTP endpoints.
//!
//! - `/metrics`: Prometheus text format.
//! - `/healthz`: 200 when the verdict is clean, 503 when drifted or
//!   unknown, so a cloud health probe (GCP managed instance group
//!   autohealing, the Azure Application Health extension) acts on it.
//! - `/status`: the verdict, counts, first detection time, the manifest's
//!   identity and the current findings (at most `status_findings_limit`) as
//!   JSON.

use super::Metrics;
use crate::watch::WatchCounters;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

/// State shared between the agent loop and the HTTP handlers.
pub struct Shared {
    pub metrics: Metrics,
    pub watch: Arc<WatchCounters>,
    /// The /status document (replaced by the loop after every change).
    pub status: RwLock<serde_json::Value>,
    /// The verdict's name, for /healthz.
    pub verdict: RwLock<&'static str>,
}

impl Shared {
    pub fn new() -> Shared {
        Shared {
            metrics: Metrics::new(),
            watch: Arc::new(WatchCounters::default()),
            status: RwLock::new(serde_json::json!({"verdict": "unknown"})),
            verdict: RwLock::new("unknown"),
        }
    }

    /// Bring counters kept outside the registry up to date.
    fn sync_counters(&self) {
        let sync = |metric: &prometheus::IntCounter, value: u64| {
            let cur = metric.get();
            if value > cur {
                metric.inc_by(value - cur);
            }
        };
        sync(
            &self.metrics.fs_events,
            self.watch.events.load(Ordering::Relaxed),
        );
        sync(
            &self.metrics.fs_events_dropped,
            self.watch.dropped.load(Ordering::Relaxed),
        );
    }
}

impl Default for Shared {
    fn default() -> Self {
        Shared::new()
    }
}

/// The router of all endpoints.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/status", get(status))
        .with_state(shared)
}

async fn index() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "driftd: /metrics (Prometheus), /healthz (200 clean, 503 drifted or unknown), /status (JSON)\n",
    )
}

async fn metrics(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    s.sync_counters();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

async fn healthz(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    let verdict = *s.verdict.read().unwrap_or_else(|p| p.into_inner());
    let code = if verdict == "clean" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{verdict}\n"),
    )
}

async fn status(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    let doc = s.status.read().unwrap_or_else(|p| p.into_inner()).clone();
    axum::Json(doc)
}
