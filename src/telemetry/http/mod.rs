//! The agent's HTTP endpoints, and who may reach them.
//!
//! - `/metrics`: Prometheus text format.
//! - `/healthz`: 200 when the verdict is clean, 503 when drifted or
//!   unknown, so a cloud health probe (GCP managed instance group
//!   autohealing, the Azure Application Health extension) acts on it.
//! - `/livez`: 200 while the agent's loop turns (it answers a ping, as it
//!   pings systemd's watchdog), whatever the verdict: for liveness probes,
//!   which must not restart a drifted agent.
//! - `/status`: the typed status document ([`super::status::StatusDoc`]).
//!   It names paths, the root and the manifest, so without authentication
//!   it answers loopback clients only, unless `status_public` is set.
//!
//! With a web config (`--web.config.file`, the exporter-toolkit format),
//! the port speaks TLS and/or asks for basic auth: `/metrics`, `/status`
//! and the index need the credentials, `/healthz` and `/livez` stay open
//! (cloud health checkers and kubelet probes send none).

pub mod server;

use super::status::StatusDoc;
use super::Metrics;
use crate::manifest::diff::Verdict;
use crate::watch::WatchCounters;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long `/livez` waits for the loop to answer.
pub const LIVEZ_TIMEOUT: Duration = Duration::from_secs(5);

/// Who may see what.
#[derive(Default)]
pub struct Access {
    /// `/status` for any client, not only loopback ones (without auth).
    pub status_public: bool,
    /// The web config (TLS, basic auth, headers), re-read when it changes.
    pub web: Option<Arc<super::webconfig::WebConfigSource>>,
}

/// State shared between the agent loop and the HTTP handlers.
pub struct Shared {
    pub metrics: Metrics,
    pub watch: Arc<WatchCounters>,
    pub server: Arc<server::ServerCounters>,
    /// The /status document (replaced by the loop after every change).
    pub status: RwLock<Arc<StatusDoc>>,
    /// The verdict, for /healthz.
    pub verdict: RwLock<Verdict>,
    pub access: Access,
    /// Pings to the loop, for /livez.
    livez: mpsc::Sender<oneshot::Sender<()>>,
}

impl Shared {
    /// The shared state and the receiving end of /livez pings, which the
    /// loop must answer.
    pub fn new(status: StatusDoc, access: Access) -> (Shared, mpsc::Receiver<oneshot::Sender<()>>) {
        let (livez, pings) = mpsc::channel(16);
        let shared = Shared {
            metrics: Metrics::new(),
            watch: Arc::new(WatchCounters::default()),
            server: Arc::default(),
            verdict: RwLock::new(status.verdict),
            status: RwLock::new(Arc::new(status)),
            access,
            livez,
        };
        (shared, pings)
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
        let m = &self.metrics;
        sync(&m.fs_events, self.watch.events.load(Ordering::Relaxed));
        sync(
            &m.fs_events_dropped,
            self.watch.dropped.load(Ordering::Relaxed),
        );
        sync(&m.http_evicted, self.server.evicted.load(Ordering::Relaxed));
        sync(&m.http_refused, self.server.refused.load(Ordering::Relaxed));
        m.http_connections
            .set(self.server.open.load(Ordering::Relaxed) as i64);
    }
}

/// The router of all endpoints.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/livez", get(livez))
        .route("/status", get(status))
        .layer(axum::middleware::from_fn_with_state(shared.clone(), guard))
        .with_state(shared)
}

fn text(code: StatusCode, body: impl Into<String>) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

/// Is this client on this machine? (An IPv4 client of a dual-stack socket
/// arrives as an IPv4-mapped IPv6 address.)
pub fn is_loopback(peer: &SocketAddr) -> bool {
    match peer.ip() {
        std::net::IpAddr::V4(a) => a.is_loopback(),
        std::net::IpAddr::V6(a) => {
            a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Authentication, the /status exposure rule and the web config's headers,
/// in front of every endpoint.
async fn guard(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let open = matches!(path.as_str(), "/healthz" | "/livez");
    let web = s.access.web.as_ref().map(|w| w.current());
    let mut authenticated = false;
    if let Some(auth) = web.as_ref().and_then(|c| c.basic_auth()) {
        if !open {
            match auth.check(req.headers().get(header::AUTHORIZATION)).await {
                Ok(_) => authenticated = true,
                Err(e) => {
                    s.metrics.http_auth_failures.inc();
                    tracing::debug!(?peer, error = %e, "HTTP authentication failed");
                    let code = e.status();
                    let mut r = text(code, format!("{code}\n"));
                    if code == StatusCode::UNAUTHORIZED {
                        r.headers_mut().insert(
                            header::WWW_AUTHENTICATE,
                            header::HeaderValue::from_static("Basic realm=\"driftd\""),
                        );
                    }
                    return with_headers(r, web.as_deref());
                }
            }
        }
    }
    if path == "/status"
        && !authenticated
        && !s.access.status_public
        && !peer.is_some_and(|p| is_loopback(&p))
    {
        let r = text(
            StatusCode::FORBIDDEN,
            "403 Forbidden: /status names paths, so it answers loopback clients only; \
             configure basic auth (web_config_file) or set [agent] status_public = true\n",
        );
        return with_headers(r, web.as_deref());
    }
    let r = next.run(req).await;
    with_headers(r, web.as_deref())
}

/// Add the web config's response headers.
fn with_headers(mut r: Response, web: Option<&super::webconfig::WebConfig>) -> Response {
    if let Some(cfg) = web {
        for (k, v) in cfg.headers() {
            r.headers_mut().insert(k.clone(), v.clone());
        }
    }
    r
}

async fn index() -> Response {
    text(
        StatusCode::OK,
        "driftd: /metrics (Prometheus), /healthz (200 clean, 503 drifted or unknown), \
         /livez (200 while the agent runs), /status (JSON)\n",
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

async fn healthz(State(s): State<Arc<Shared>>) -> Response {
    let verdict = *s.verdict.read().unwrap_or_else(|p| p.into_inner());
    let code = if verdict == Verdict::Clean {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    text(code, format!("{}\n", verdict.name()))
}

/// 200 if the loop answers a ping within [`LIVEZ_TIMEOUT`].
async fn livez(State(s): State<Arc<Shared>>) -> Response {
    let (tx, rx) = oneshot::channel();
    let answered = async {
        s.livez.send(tx).await.ok()?;
        rx.await.ok()
    };
    match tokio::time::timeout(LIVEZ_TIMEOUT, answered).await {
        Ok(Some(())) => text(StatusCode::OK, "alive\n"),
        _ => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent's loop did not answer\n",
        ),
    }
}

async fn status(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    /// The verdict's document and the guard's state, kept apart: the
    /// signal dispatcher updates the guard's on its own.
    #[derive(serde::Serialize)]
    struct Doc<'a> {
        #[serde(flatten)]
        doc: &'a StatusDoc,
        guard: Option<super::status::GuardStatus>,
    }
    let doc = s.status.read().unwrap_or_else(|p| p.into_inner()).clone();
    let out = Doc {
        doc: &doc,
        guard: s.metrics.signal.guard_status(),
    };
    // Serialising plain data cannot fail.
    let body = serde_json::to_vec(&out).unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_clients_in_every_form() {
        for (addr, want) in [
            ("127.0.0.1:1", true),
            ("127.9.9.9:1", true),
            ("[::1]:1", true),
            ("[::ffff:127.0.0.1]:1", true),
            ("10.0.0.1:1", false),
            ("[::ffff:10.0.0.1]:1", false),
            ("[2001:db8::1]:1", false),
        ] {
            assert_eq!(is_loopback(&addr.parse().unwrap()), want, "{addr}");
        }
    }
}
