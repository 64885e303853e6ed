//! The agent's HTTP endpoints.
//!
//! - `/metrics`: Prometheus text format.
//! - `/healthz`: 200 when the verdict is clean, 503 when drifted or
//!   unknown, so a cloud health probe (GCP managed instance group
//!   autohealing, the Azure Application Health extension) acts on it.
//! - `/status`: the typed status document ([`super::status::StatusDoc`]).

use super::status::StatusDoc;
use super::Metrics;
use crate::manifest::diff::Verdict;
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
    pub status: RwLock<Arc<StatusDoc>>,
    /// The verdict, for /healthz.
    pub verdict: RwLock<Verdict>,
}

impl Shared {
    pub fn new(status: StatusDoc) -> Shared {
        Shared {
            metrics: Metrics::new(),
            watch: Arc::new(WatchCounters::default()),
            verdict: RwLock::new(status.verdict),
            status: RwLock::new(Arc::new(status)),
        }
    }

    /// Publish a new verdict and status document.
    pub fn publish(&self, status: StatusDoc) {
        *self.verdict.write().unwrap_or_else(|p| p.into_inner()) = status.verdict;
        *self.status.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(status);
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
    let code = if verdict == Verdict::Clean {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{}\n", verdict.name()),
    )
}

async fn status(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    let doc = s.status.read().unwrap_or_else(|p| p.into_inner()).clone();
    // Serialising plain data cannot fail.
    let body = serde_json::to_vec(&*doc).unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], body)
}
