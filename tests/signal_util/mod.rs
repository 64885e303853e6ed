//! Helpers for the control-plane signal tests: a webhook receiver (a
//! `std::net::TcpListener` thread that records every request with its
//! arrival time and can be told to fail, to hang, or to freeze the agent
//! with SIGSTOP before answering), an independent
//! Standard Webhooks signature check (hmac + sha2 + base64, not driftd's
//! own code), and config snippets for `[signals]` / `[[signal]]`.
//!
//! Test files using this module must also declare `mod agent_util;` and
//! `mod common;`.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use crate::agent_util::{Agent, Launch, Metrics, POLL, WAIT};
use crate::common::{Dir, LocalServer};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

// -------------------------------------------------------------- receiver

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Request {
    /// When the connection was accepted.
    pub at: Instant,
    pub method: String,
    pub target: String,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The status answered; `None` if the receiver hung on it.
    pub answered: Option<u16>,
}

impl Request {
    /// The first value of a header (name in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics (showing the request) if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "request body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// `webhook-id`, which must be present.
    pub fn webhook_id(&self) -> &str {
        self.header("webhook-id")
            .unwrap_or_else(|| panic!("no webhook-id header in {self:?}"))
    }
}

#[derive(Default)]
struct Plan {
    /// Answer 500 to this many more requests.
    fail_left: usize,
    /// Never answer this many more requests (hold the connection).
    hang_left: usize,
    /// Answer 500 to every request while set.
    refusing: bool,
    /// SIGSTOP this process (the agent) before writing the next answer.
    stop_before_answer: Option<u32>,
}

enum Answer {
    Status(u16),
    Hang,
}

struct Inner {
    requests: Mutex<Vec<Request>>,
    plan: Mutex<Plan>,
}

/// A local HTTP server standing in for the control plane. By default it
/// answers 200 to everything. Dropping it stops it (hung connections are
/// released and closed).
pub struct Receiver {
    pub port: u16,
    inner: Arc<Inner>,
    _server: LocalServer,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Receiver {
    pub fn start() -> Receiver {
        let inner = Arc::new(Inner {
            requests: Mutex::default(),
            plan: Mutex::default(),
        });
        let i = inner.clone();
        let server = LocalServer::start("the receiver", move |stream, at, stop| {
            serve(&i, stream, at, stop)
        });
        Receiver {
            port: server.port,
            inner,
            _server: server,
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Answer 500 to the next `n` requests.
    pub fn fail_next(&self, n: usize) {
        lock(&self.inner.plan).fail_left = n;
    }

    /// Never answer the next `n` requests (until the receiver is dropped).
    pub fn hang_next(&self, n: usize) {
        lock(&self.inner.plan).hang_left = n;
    }

    /// Before answering the next request, SIGSTOP `pid` (the agent): the
    /// answer then sits unread in its socket, as if the agent crashed
    /// right after the receiver answered. The request is recorded first.
    pub fn stop_before_next_answer(&self, pid: u32) {
        lock(&self.inner.plan).stop_before_answer = Some(pid);
    }

    /// Answer 500 to everything while `on`.
    pub fn set_refusing(&self, on: bool) {
        lock(&self.inner.plan).refusing = on;
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        let mut v = lock(&self.inner.requests).clone();
        v.sort_by_key(|r| r.at);
        v
    }

    /// Requests that were answered 2xx.
    pub fn successes(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.answered.is_some_and(|s| (200..300).contains(&s)))
            .collect()
    }

    /// Poll until at least `n` requests arrived; panic after [`WAIT`],
    /// showing what did arrive and the agent's log.
    pub fn wait_requests(&self, n: usize, agent: &Agent) -> Vec<Request> {
        let deadline = Instant::now() + WAIT;
        loop {
            let v = self.requests();
            if v.len() >= n {
                return v;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {WAIT:?} waiting for {n} request(s) at the receiver; got {}:\n{}\n--- agent log (tail) ---\n{}",
                    v.len(),
                    describe(&v),
                    agent.log_tail(40)
                );
            }
            std::thread::sleep(POLL);
        }
    }
}

/// A short listing of requests for failure messages.
pub fn describe(reqs: &[Request]) -> String {
    let t0 = reqs.first().map(|r| r.at);
    reqs.iter()
        .map(|r| {
            format!(
                "  +{:.3}s {} {} webhook-id={:?} -> {:?} ({} bytes)",
                t0.map_or(0.0, |t| r.at.duration_since(t).as_secs_f64()),
                r.method,
                r.target,
                r.header("webhook-id"),
                r.answered,
                r.body.len()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A request as read off the wire.
pub struct RawRequest {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Read one HTTP/1.x request (Content-Length or chunked body).
pub fn read_request(s: &mut TcpStream) -> Result<RawRequest, String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        let n = s.read(&mut chunk).map_err(|e| format!("read head: {e}"))?;
        if n == 0 {
            return Err("connection closed before the end of the head".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut rest = buf[head_end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let start = lines.next().unwrap_or_default();
    let mut parts = start.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut fill = |rest: &mut Vec<u8>, want: usize| -> Result<(), String> {
        while rest.len() < want {
            let n = s.read(&mut chunk).map_err(|e| format!("read body: {e}"))?;
            if n == 0 {
                return Err("connection closed in the body".into());
            }
            rest.extend_from_slice(&chunk[..n]);
        }
        Ok(())
    };
    let body = if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        let mut pos = 0;
        loop {
            let line_end = loop {
                if let Some(i) = find(&rest[pos..], b"\r\n") {
                    break pos + i;
                }
                let want = rest.len() + 1;
                fill(&mut rest, want)?;
            };
            let size_text = String::from_utf8_lossy(&rest[pos..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|e| format!("bad chunk size {size_text:?}: {e}"))?;
            let data = line_end + 2;
            fill(&mut rest, data + size + 2)?;
            if size == 0 {
                break body;
            }
            body.extend_from_slice(&rest[data..data + size]);
            pos = data + size + 2;
        }
    } else {
        let len: usize = get("content-length")
            .map(|v| {
                v.parse()
                    .map_err(|e| format!("bad content-length {v:?}: {e}"))
            })
            .transpose()?
            .unwrap_or(0);
        fill(&mut rest, len)?;
        rest.truncate(len);
        rest
    };
    Ok(RawRequest {
        method,
        target,
        headers,
        body,
    })
}

fn serve(inner: &Inner, mut s: TcpStream, at: Instant, stop: &AtomicBool) {
    if stop.load(Ordering::SeqCst) {
        return;
    }
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(RawRequest {
        method,
        target,
        headers,
        body,
    }) = read_request(&mut s)
    else {
        return;
    };
    let answer = {
        let mut p = lock(&inner.plan);
        if p.hang_left > 0 {
            p.hang_left -= 1;
            Answer::Hang
        } else if p.refusing {
            Answer::Status(500)
        } else if p.fail_left > 0 {
            p.fail_left -= 1;
            Answer::Status(500)
        } else {
            Answer::Status(200)
        }
    };
    let answered = match answer {
        Answer::Status(c) => Some(c),
        Answer::Hang => None,
    };
    let freeze = match answer {
        Answer::Status(_) => lock(&inner.plan).stop_before_answer.take(),
        Answer::Hang => None,
    };
    let request = Request {
        at,
        method,
        target,
        headers,
        body,
        answered,
    };
    // Recorded before answering, except when freezing the agent: then
    // only once the answer is written, so that a test that sees the
    // request knows the answer was sent.
    let mut request = match freeze {
        None => {
            lock(&inner.requests).push(request);
            None
        }
        Some(_) => Some(request),
    };
    if let Some(pid) = freeze.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::STOP);
    }
    match answer {
        Answer::Status(code) => {
            let text = if code == 200 {
                "OK"
            } else {
                "Internal Server Error"
            };
            let body = format!("{code} {text}\n");
            let _ = s.write_all(
                format!(
                    "HTTP/1.1 {code} {text}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
            let _ = s.flush();
            if let Some(r) = request.take() {
                lock(&inner.requests).push(r);
            }
        }
        Answer::Hang => {
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

// ------------------------------------------------------------ signatures

/// A webhook secret: what the secret file holds and the HMAC key it means.
pub struct Secret {
    pub file_text: Vec<u8>,
    pub key: Vec<u8>,
}

impl Secret {
    /// The Standard Webhooks form: `whsec_` + base64 of the key.
    pub fn whsec() -> Secret {
        let key: Vec<u8> = (0u8..32)
            .map(|i| i.wrapping_mul(37).wrapping_add(11))
            .collect();
        let text = format!(
            "whsec_{}\n",
            base64::engine::general_purpose::STANDARD.encode(&key)
        );
        Secret {
            file_text: text.into_bytes(),
            key,
        }
    }

    /// Raw bytes (the file's content, trimmed, is the key).
    pub fn raw() -> Secret {
        Secret {
            file_text: b"correct horse battery staple 4711\n".to_vec(),
            key: b"correct horse battery staple 4711".to_vec(),
        }
    }

    /// Write the secret file (mode 0600) beside the root.
    pub fn write(&self, d: &Dir) -> PathBuf {
        let p = d.write_outside("webhook.secret", &self.file_text);
        crate::common::chmod_path(&p, 0o600);
        p
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Check a request the way a Standard Webhooks receiver does: the
/// headers are present, the timestamp is within 5 minutes of now, and one
/// of the `v1,` signatures is the HMAC-SHA256 of `id.timestamp.body`.
pub fn verify_signature(key: &[u8], r: &Request) -> Result<(), String> {
    let id = r.header("webhook-id").ok_or("no webhook-id header")?;
    let ts_text = r
        .header("webhook-timestamp")
        .ok_or("no webhook-timestamp header")?;
    let ts: u64 = ts_text
        .parse()
        .map_err(|e| format!("webhook-timestamp {ts_text:?} is not Unix seconds: {e}"))?;
    if ts.abs_diff(now_unix()) > 300 {
        return Err(format!(
            "webhook-timestamp {ts} is more than 5 minutes from now ({})",
            now_unix()
        ));
    }
    let sigs = r
        .header("webhook-signature")
        .ok_or("no webhook-signature header")?;
    for sig in sigs.split_whitespace() {
        let Some(b64) = sig.strip_prefix("v1,") else {
            continue;
        };
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64) else {
            continue;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(ts_text.as_bytes());
        mac.update(b".");
        mac.update(&r.body);
        if mac.verify_slice(&raw).is_ok() {
            return Ok(());
        }
    }
    Err(format!(
        "no v1 signature verifies: webhook-signature: {sigs}"
    ))
}

// ---------------------------------------------------------------- config

/// A TOML string literal.
pub fn lit(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A TOML array of strings.
pub fn lit_array(items: &[&str]) -> String {
    let v: Vec<String> = items.iter().map(|s| lit(s)).collect();
    format!("[{}]", v.join(", "))
}

/// `[signals]` with these retry delays (`"200ms"`, ...).
pub fn signals_section(retry_initial: &str, retry_max: &str) -> String {
    format!(
        "[signals]\nretry_initial = {}\nretry_max = {}\n",
        lit(retry_initial),
        lit(retry_max)
    )
}

/// A `[[signal]]` webhook; `extra` holds more `key = value` lines.
pub fn webhook(name: &str, url: &str, secret_file: &Path, extra: &str) -> String {
    format!(
        "[[signal]]\ntype = \"webhook\"\nname = {}\nurl = {}\nsecret_file = {}\n{extra}\n",
        lit(name),
        lit(url),
        lit(&secret_file.display().to_string())
    )
}

/// A `[[signal]]` exec backend.
pub fn exec(name: &str, argv: &[&str], extra: &str) -> String {
    format!(
        "[[signal]]\ntype = \"exec\"\nname = {}\ncommand = {}\n{extra}\n",
        lit(name),
        lit_array(argv)
    )
}

/// The agent test launcher with extra config tables after `[agent]`.
///
/// `Launch` writes its `[agent]` keys one per line as `key = <TOML
/// literal>`, in order, and `set` moves a key to the end: a literal
/// followed by a newline and more tables therefore appends those tables to
/// the file. Call no other `set` on the result (it would land in the last
/// table). [`start`] checks that the backends were configured.
pub fn launch_with(d: &Dir, tables: &str) -> Launch {
    Launch::new(d).set("status_findings_limit", &format!("10000\n\n{tables}"))
}

/// Start the agent, wait for READY and the clean verdict, and check that
/// each of `backends` is configured (its series exist, nothing pending,
/// nothing sent).
pub fn start(launch: &Launch, backends: &[&str]) -> Agent {
    let mut a = launch.start();
    a.wait_ready();
    let m = a.wait_metrics("verdict clean after the first full scan", |m| {
        m.verdict("clean") == 1.0
    });
    for b in backends {
        assert_eq!(
            m.get("driftd_signal_pending", &[("backend", b)]),
            Some(0.0),
            "backend {b} is not configured (or has something pending) at start:\n{m}\n--- log ---\n{}",
            a.log_tail(40)
        );
        for r in ["success", "failure", "dry_run"] {
            assert_eq!(requests(&m, b, r), 0.0, "{b} {r} at start:\n{m}");
        }
    }
    a
}

/// `driftd_signal_requests_total{backend,result}`.
pub fn requests(m: &Metrics, backend: &str, result: &str) -> f64 {
    m.val(
        "driftd_signal_requests_total",
        &[("backend", backend), ("result", result)],
    )
}

/// `driftd_signal_pending{backend}`.
pub fn pending(m: &Metrics, backend: &str) -> f64 {
    m.val("driftd_signal_pending", &[("backend", backend)])
}

/// `driftd_signal_last_success_timestamp_seconds{backend}`.
pub fn last_success(m: &Metrics, backend: &str) -> f64 {
    m.val(
        "driftd_signal_last_success_timestamp_seconds",
        &[("backend", backend)],
    )
}

/// Files in `STATE/outbox/BACKEND/` whose names end with `suffix`.
pub fn outbox_files(state_dir: &Path, backend: &str, suffix: &str) -> Vec<PathBuf> {
    let dir = state_dir.join("outbox").join(backend);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with(suffix))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// SIGHUP and wait until that rescan finished (`rescans_total{sighup}`
/// advanced and one more full scan completed).
pub fn rescan(a: &mut Agent) -> Metrics {
    let m = a.metrics();
    let (hups, fulls) = (m.rescans("sighup"), m.scans_of_kind("full"));
    a.sighup();
    a.wait_metrics("the SIGHUP rescan to finish", |m| {
        m.rescans("sighup") > hups && m.scans_of_kind("full") > fulls
    })
}
