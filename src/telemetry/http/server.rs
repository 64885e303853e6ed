//! The HTTP server under the endpoints: every resource a client can spend
//! is bounded, so nothing done to the port can starve the agent.
//!
//! - **Connections**: at most [`Limits::max_connections`] at once, far
//!   below the descriptor limit (scans keep their own budget). When the
//!   table is full, a new connection evicts the oldest one that is not in
//!   the middle of a request (a half-open or idle one); if every one is
//!   busy, the new one is closed at once. So a flood of connections that
//!   never finish their request cannot keep `/healthz` from answering: the
//!   probe's connection takes an idle one's place.
//! - **Time**: the request head (and a TLS handshake) must arrive within
//!   [`Limits::header_timeout`], also between keep-alive requests (hyper's
//!   header-read timer, with a real timer set: without one hyper silently
//!   disables it); a connection lives at most
//!   [`Limits::connection_lifetime`], whatever it does (a slow body, a
//!   client that never reads the answer).
//! - **Size**: a request head over [`Limits::max_header_bytes`] is answered
//!   431 and the connection closed; request bodies are never read (every
//!   endpoint is a GET), and a connection whose request had one is not
//!   kept alive.
//!
//! Modelled on node_exporter's bounds (`--web.max-requests`) and Go's
//! `ReadHeaderTimeout`.

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tower::ServiceExt;
use tracing::{debug, warn};

/// The bounds of the server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub connection_lifetime: Duration,
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 64,
            header_timeout: Duration::from_secs(5),
            connection_lifetime: Duration::from_secs(60),
            max_header_bytes: 16 * 1024,
        }
    }
}

/// Counters the server keeps (exported as metrics by the caller).
#[derive(Debug, Default)]
pub struct ServerCounters {
    pub open: AtomicU64,
    pub evicted: AtomicU64,
    pub refused: AtomicU64,
}

/// How a connection is secured: `None` for plain HTTP. Asked for every
/// new connection, so a rotated certificate is used at once.
pub type TlsSource = Arc<dyn Fn() -> Option<Arc<rustls::ServerConfig>> + Send + Sync>;

/// One open connection, as the table sees it.
struct Entry {
    busy: Arc<AtomicBool>,
    kill: Arc<Notify>,
}

/// The open connections, oldest first (ids are handed out in order).
#[derive(Default)]
struct Table {
    next: u64,
    open: BTreeMap<u64, Entry>,
}

impl Table {
    /// Make room for one more: evict the oldest idle connection if full.
    /// False if every connection is busy.
    fn make_room(&mut self, max: usize, counters: &ServerCounters) -> bool {
        if self.open.len() < max {
            return true;
        }
        let victim = self
            .open
            .iter()
            .find(|(_, e)| !e.busy.load(Ordering::Relaxed))
            .map(|(id, _)| *id);
        match victim.and_then(|id| self.open.remove(&id)) {
            Some(e) => {
                e.kill.notify_one();
                counters.evicted.fetch_add(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }
}

/// Serve `app` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: TlsSource,
    limits: Limits,
    counters: Arc<ServerCounters>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let table = Arc::new(Mutex::new(Table::default()));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors (or a similar passing failure):
                    // back off a little rather than spin; the connections
                    // already open time out and free their descriptors.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let busy = Arc::new(AtomicBool::new(false));
        let kill = Arc::new(Notify::new());
        let id = {
            let mut t = table.lock().unwrap_or_else(|p| p.into_inner());
            if !t.make_room(limits.max_connections, &counters) {
                counters.refused.fetch_add(1, Ordering::Relaxed);
                debug!(%peer, "every connection is busy: refused");
                continue; // dropping the stream closes it
            }
            let id = t.next;
            t.next += 1;
            t.open.insert(
                id,
                Entry {
                    busy: busy.clone(),
                    kill: kill.clone(),
                },
            );
            id
        };
        counters.open.fetch_add(1, Ordering::Relaxed);
        let (app, tls, table, counters) = (app.clone(), tls(), table.clone(), counters.clone());
        tokio::spawn(async move {
            let work = async {
                match tls {
                    None => connection(stream, peer, app, busy, limits).await,
                    Some(cfg) => {
                        let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
                        match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(tls)) => connection(tls, peer, app, busy, limits).await,
                            Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                            Err(_) => debug!(%peer, "TLS handshake timed out"),
                        }
                    }
                }
            };
            tokio::select! {
                _ = kill.notified() => debug!(%peer, "evicted"),
                r = tokio::time::timeout(limits.connection_lifetime, work) => {
                    if r.is_err() {
                        debug!(%peer, "connection lifetime reached: closed");
                    }
                }
            }
            table
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .open
                .remove(&id);
            counters.open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Serve one connection with hyper's HTTP/1, bounded.
async fn connection<IO>(
    io: IO,
    peer: SocketAddr,
    app: Router,
    busy: Arc<AtomicBool>,
    limits: Limits,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let (app, busy) = (app.clone(), busy.clone());
        busy.store(true, Ordering::Relaxed);
        async move {
            let resp = app.oneshot(req).await;
            busy.store(false, Ordering::Relaxed);
            resp
        }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    if let Err(e) = http.serve_connection(TokioIo::new(io), service).await {
        debug!(%peer, error = %e, "connection ended");
    }
}
