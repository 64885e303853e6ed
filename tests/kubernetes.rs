#![cfg(feature = "kube")]
//! The Kubernetes backend (`cargo test --features kube --test kubernetes`).
//!
//! No real kube-apiserver can be installed here (the distribution packages
//! only etcd), so these tests talk to a local stand-in: a small plain-HTTP
//! server on 127.0.0.1 ([`ApiServer`]) that records every request (method,
//! path, headers, body) and answers the way the API server does to these
//! calls (200 with the Node as JSON, or a `Status` object on failure). The
//! kubeconfig the backend gets points at it with a bearer token. What is
//! checked is therefore the exact requests driftd makes; that a real API
//! server merges them as intended rests on the documented strategic merge
//! semantics of `status.conditions` (merge key `type`).

mod agent_util;
mod common;

use agent_util::{Agent, Launch, Metrics, POLL, WAIT};
use common::{Dir, LocalServer};
use driftd::signal::kubernetes::{condition_patch, cordon_patch, NodeCondition};
use driftd::signal::{Backend, Host, Signal};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

const TOKEN: &str = "stand-in-token-8d1f0c2a";
const STRATEGIC: &str = "application/strategic-merge-patch+json";

// ------------------------------------------------------------ stand-in

/// One request the stand-in got.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    /// The path without the query.
    path: String,
    query: String,
    /// Names lower-cased, in arrival order.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    answered: u16,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The non-empty `k=v` parts of the query (kube writes `?&k=v`).
    fn query_pairs(&self) -> Vec<&str> {
        self.query.split('&').filter(|p| !p.is_empty()).collect()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "request body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

struct Inner {
    requests: Mutex<Vec<Request>>,
    /// Answer the next requests with these status codes (then 200).
    failures: Mutex<Vec<u16>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A stand-in for kube-apiserver (see the file's comment). HTTP/1.1 with
/// keep-alive, as the client expects. Dropping it stops every thread.
struct ApiServer {
    port: u16,
    inner: Arc<Inner>,
    _server: LocalServer,
}

impl ApiServer {
    fn start() -> ApiServer {
        let inner = Arc::new(Inner {
            requests: Mutex::default(),
            failures: Mutex::default(),
        });
        let i = inner.clone();
        let server = LocalServer::start("the stand-in", move |stream, _, stop| {
            serve(&i, stream, stop)
        });
        ApiServer {
            port: server.port,
            inner,
            _server: server,
        }
    }

    /// Answer the next requests with these codes (a `Status` body each).
    fn fail_next(&self, codes: &[u16]) {
        *lock(&self.inner.failures) = codes.to_vec();
    }

    fn requests(&self) -> Vec<Request> {
        lock(&self.inner.requests).clone()
    }

    /// A kubeconfig for this server with a bearer token, written into `d`
    /// (mode 0600: driftd refuses a kubeconfig others can read).
    fn kubeconfig(&self, d: &Dir) -> PathBuf {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: stand-in\n  cluster:\n    server: http://127.0.0.1:{}\ncontexts:\n- name: stand-in\n  context:\n    cluster: stand-in\n    user: driftd\ncurrent-context: stand-in\nusers:\n- name: driftd\n  user:\n    token: {TOKEN}\n",
            self.port
        );
        let p = d.write_outside("kubeconfig", text);
        common::chmod_path(&p, 0o600);
        p
    }

    /// Poll until `n` requests arrived; panic after [`WAIT`] with what did
    /// and the agent's log.
    fn wait_requests(&self, n: usize, agent: &Agent) -> Vec<Request> {
        let deadline = Instant::now() + WAIT;
        loop {
            let v = self.requests();
            if v.len() >= n {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {WAIT:?} waiting for {n} request(s) at the stand-in; got {v:#?}\n--- agent log (tail) ---\n{}",
                agent.log_tail(40)
            );
            std::thread::sleep(POLL);
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One whole request at the start of `buf`, if there is one: (method,
/// target, headers, body, bytes used).
#[allow(clippy::type_complexity)]
fn parse(buf: &[u8]) -> Option<(String, String, Vec<(String, String)>, Vec<u8>, usize)> {
    let head_end = find(buf, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut start = lines.next().unwrap_or_default().split_whitespace();
    let method = start.next().unwrap_or_default().to_string();
    let target = start.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    assert!(
        !headers.iter().any(|(k, _)| k == "transfer-encoding"),
        "the stand-in expects Content-Length bodies: {headers:?}"
    );
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map_or(0, |(_, v)| v.parse().expect("a numeric content-length"));
    let body_start = head_end + 4;
    if buf.len() < body_start + len {
        return None;
    }
    let body = buf[body_start..body_start + len].to_vec();
    Some((method, target, headers, body, body_start + len))
}

/// What the API server answers to a PATCH of node `NAME` (or its status).
fn node_json(path: &str) -> Value {
    let name = path
        .trim_start_matches("/api/v1/nodes/")
        .trim_end_matches("/status");
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "resourceVersion": "4242"},
        "spec": {},
        "status": {}
    })
}

fn serve(inner: &Inner, mut s: TcpStream, stop: &AtomicBool) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some((method, target, headers, body, used)) = parse(&buf) {
            buf.drain(..used);
            let (path, query) = match target.split_once('?') {
                Some((p, q)) => (p.to_string(), q.to_string()),
                None => (target.clone(), String::new()),
            };
            let failure = {
                let mut f = lock(&inner.failures);
                (!f.is_empty()).then(|| f.remove(0))
            };
            let n = lock(&inner.requests).len();
            let (code, text, answer) = match failure {
                None => (200, "OK", node_json(&path)),
                Some(code) => (
                    code,
                    if code == 403 {
                        "Forbidden"
                    } else {
                        "Internal Server Error"
                    },
                    json!({
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Failure",
                        "message": format!("stand-in failure {}", n + 1),
                        "reason": if code == 403 { "Forbidden" } else { "InternalError" },
                        "code": code
                    }),
                ),
            };
            lock(&inner.requests).push(Request {
                method,
                path,
                query,
                headers,
                body,
                answered: code,
            });
            let body = answer.to_string();
            let reply = format!(
                "HTTP/1.1 {code} {text}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if s.write_all(reply.as_bytes()).is_err() {
                return;
            }
            continue;
        }
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match s.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

// --------------------------------------------------------------- agent

/// `[signals]` and one `[[signal]] type = "kubernetes"` named `k8s`.
fn tables(kubeconfig: &std::path::Path, cordon: bool) -> String {
    format!(
        "[signals]\nretry_initial = \"200ms\"\nretry_max = \"1s\"\n\n\
         [[signal]]\ntype = \"kubernetes\"\nname = \"k8s\"\nnode_name = \"node-a\"\n\
         kubeconfig = {}\ncordon = {cordon}\n",
        toml::Value::String(kubeconfig.display().to_string())
    )
}

/// Start the agent on a baked tree with these extra tables. `Launch`
/// writes its `[agent]` keys one per line and `set` moves a key to the
/// end, so a value followed by a newline appends whole tables.
fn start(d: &Dir, tables: &str) -> Agent {
    let mut a = Launch::new(d)
        .set("status_findings_limit", &format!("10000\n\n{tables}"))
        .start();
    a.wait_ready();
    let m = a.wait_metrics("verdict clean after the first full scan", |m| {
        m.verdict("clean") == 1.0
    });
    assert_eq!(
        m.get("driftd_signal_pending", &[("backend", "k8s")]),
        Some(0.0),
        "the kubernetes backend is not configured:\n{m}\n--- log ---\n{}",
        a.log_tail(40)
    );
    a
}

fn tamper(d: &Dir) {
    let p = d.path("/etc/passwd");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&p)
        .unwrap_or_else(|e| panic!("open {p:?}: {e}"));
    f.write_all(b"evil:x:0:0::/:/bin/sh\n").expect("append");
}

fn requests(m: &Metrics, result: &str) -> f64 {
    m.val(
        "driftd_signal_requests_total",
        &[("backend", "k8s"), ("result", result)],
    )
}

/// The one delivered marker of backend `k8s` (from the outbox).
fn delivered_marker(a: &Agent) -> Value {
    let dir = a.state_dir.join("outbox").join("k8s");
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {dir:?}: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".delivered.json"))
        .collect();
    assert_eq!(files.len(), 1, "delivered items in {dir:?}: {files:?}");
    let text = std::fs::read_to_string(&files[0]).expect("read the delivered marker");
    serde_json::from_str(&text).expect("the delivered marker is JSON")
}

/// The declared drift episode in the agent's state file.
fn declared(a: &Agent) -> Value {
    let p = a.state_dir.join("state.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {p:?}: {e}"));
    let v: Value = serde_json::from_str(&text).expect("state.json is JSON");
    v["declared"].clone()
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect();
    k.sort();
    k
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

#[test]
fn drift_sets_the_node_condition_and_cordons_the_node() {
    let api = ApiServer::start();
    let d = Dir::standard("k8s-e2e");
    d.bake_and_assert_clean(&["--image-id", "image-1"]);
    let kubeconfig = api.kubeconfig(&d);
    let mut a = start(&d, &tables(&kubeconfig, true));
    assert!(api.requests().is_empty(), "requests before any drift");

    let before = SystemTime::now();
    tamper(&d);
    let m = a.wait_metrics("the signal delivered", |m| requests(m, "success") == 1.0);
    assert_eq!(requests(&m, "failure"), 0.0, "{m}");
    let reqs = api.wait_requests(2, &a);
    assert_eq!(reqs.len(), 2, "exactly two requests: {reqs:#?}");
    let after = SystemTime::now();
    let marker = delivered_marker(&a);
    let key = marker["idempotency_key"].as_str().expect("a key");
    assert_eq!(
        marker["response"],
        "node node-a: condition DriftDetected=True (reason DriftDetected) set; cordoned"
    );
    let episode = declared(&a);
    assert_eq!(episode["image_id"], "image-1", "{episode}");

    // 1. The condition: a strategic merge patch of the status subresource.
    let st = &reqs[0];
    assert_eq!(st.method, "PATCH");
    assert_eq!(st.path, "/api/v1/nodes/node-a/status");
    assert_eq!(st.query_pairs(), ["fieldManager=driftd"]);
    assert_eq!(st.header("content-type"), Some(STRATEGIC));
    assert_eq!(
        st.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(st.answered, 200);
    let body = st.json();
    assert_eq!(keys(&body), ["status"], "{body}");
    assert_eq!(keys(&body["status"]), ["conditions"], "{body}");
    let conds = body["status"]["conditions"].as_array().expect("an array");
    assert_eq!(conds.len(), 1, "{body}");
    let c = &conds[0];
    assert_eq!(
        keys(c),
        [
            "lastHeartbeatTime",
            "lastTransitionTime",
            "message",
            "reason",
            "status",
            "type"
        ]
    );
    assert_eq!(c["type"], "DriftDetected");
    assert_eq!(c["status"], "True");
    assert_eq!(c["reason"], "DriftDetected");
    let msg = c["message"].as_str().expect("a message");
    for part in [
        "image-1",
        key,
        episode["manifest_digest"].as_str().expect("a digest"),
    ] {
        assert!(msg.contains(part), "message {msg:?} lacks {part:?}");
    }
    assert!(msg.len() < 400, "message too long: {msg:?}");
    for field in ["lastHeartbeatTime", "lastTransitionTime"] {
        let t = c[field].as_str().expect("a time");
        assert!(
            t.ends_with('Z') && t.len() == "2026-01-01T00:00:00Z".len(),
            "{field} {t:?} is not RFC 3339 in seconds (UTC)"
        );
        let at = unix(humantime::parse_rfc3339(t).unwrap_or_else(|e| panic!("{field} {t:?}: {e}")));
        assert!(
            at >= unix(before).floor() && at <= unix(after).ceil(),
            "{field} {t} is not the time of the patch"
        );
    }

    // 2. The cordon: a strategic merge patch of the Node itself.
    let co = &reqs[1];
    assert_eq!(co.method, "PATCH");
    assert_eq!(co.path, "/api/v1/nodes/node-a");
    assert_eq!(co.query_pairs(), ["fieldManager=driftd"]);
    assert_eq!(co.header("content-type"), Some(STRATEGIC));
    assert_eq!(
        co.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(co.json(), json!({"spec": {"unschedulable": true}}));

    let log = a.log_text();
    assert!(
        log.contains(
            "node node-a: condition DriftDetected=True (reason DriftDetected) set; cordoned"
        ),
        "the delivery is not logged:\n{log}"
    );
    assert!(!log.contains(TOKEN), "the token is in the log:\n{log}");
}

#[test]
fn api_failures_are_retried_until_the_patch_succeeds() {
    let api = ApiServer::start();
    api.fail_next(&[500, 500]);
    let d = Dir::standard("k8s-retry");
    d.bake_and_assert_clean(&["--image-id", "image-1"]);
    let kubeconfig = api.kubeconfig(&d);
    let mut a = start(&d, &tables(&kubeconfig, false));

    tamper(&d);
    let m = a.wait_metrics("two failures, then the signal delivered", |m| {
        requests(m, "success") == 1.0
    });
    assert_eq!(requests(&m, "failure"), 2.0, "{m}");
    assert_eq!(
        m.val("driftd_signal_pending", &[("backend", "k8s")]),
        0.0,
        "{m}"
    );
    let reqs = api.wait_requests(3, &a);
    assert_eq!(
        reqs.iter().map(|r| r.answered).collect::<Vec<_>>(),
        [500, 500, 200],
        "{reqs:#?}"
    );
    // Every attempt is the same status patch (no cordon asked for).
    for r in &reqs {
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("PATCH", "/api/v1/nodes/node-a/status")
        );
        assert_eq!(r.json()["status"]["conditions"][0]["type"], "DriftDetected");
    }
    let log = a.log_text();
    for n in [1, 2] {
        let want = format!("HTTP 500 (InternalError): stand-in failure {n}");
        assert!(log.contains(&want), "the log lacks {want:?}:\n{log}");
    }
    assert!(!log.contains(TOKEN), "the token is in the log:\n{log}");
}

// ---------------------------------------------------------- unit level

fn signal(event: &str) -> Signal {
    let unknown = event == "verdict.unknown";
    Signal {
        schema: "driftd.signal.v1".into(),
        event: event.into(),
        idempotency_key: "1e8c33dd7095ff2762dabf641036fa26".into(),
        host: Host {
            id: "host-1".into(),
            hostname: "node-a".into(),
        },
        image_id: "ami-build-2041".into(),
        manifest_digest: "blake3:e4a2".into(),
        verdict: if unknown { "unknown" } else { "drifted" }.into(),
        reason: unknown.then(|| "manifest signature".to_string()),
        counts: BTreeMap::new(),
        findings_total: 2,
        findings: Vec::new(),
        first_detected: "2026-11-26T05:33:11Z".into(),
        first_detected_unix: 1_795_671_191.0,
        created: "2026-11-26T05:33:11Z".into(),
    }
}

#[test]
fn condition_patch_is_exactly_one_merge_keyed_condition() {
    let now = "2026-11-26T05:40:00Z";
    assert_eq!(
        condition_patch(&signal("drift.detected"), now),
        json!({
            "status": {
                "conditions": [{
                    "type": "DriftDetected",
                    "status": "True",
                    "reason": "DriftDetected",
                    "message": "driftd: drifted from image ami-build-2041 (manifest blake3:e4a2): 2 finding(s); idempotency key 1e8c33dd7095ff2762dabf641036fa26",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now
                }]
            }
        })
    );
    assert_eq!(
        condition_patch(&signal("verdict.unknown"), now),
        json!({
            "status": {
                "conditions": [{
                    "type": "DriftDetected",
                    "status": "True",
                    "reason": "VerdictUnknown",
                    "message": "driftd: verdict unknown (manifest signature) from image ami-build-2041 (manifest blake3:e4a2): 2 finding(s); idempotency key 1e8c33dd7095ff2762dabf641036fa26",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now
                }]
            }
        })
    );
    assert_eq!(cordon_patch(), json!({"spec": {"unschedulable": true}}));
}

#[test]
fn a_long_image_id_is_clipped_in_the_message() {
    let mut s = signal("drift.detected");
    s.image_id = "i".repeat(1000);
    let p = condition_patch(&s, "2026-11-26T05:40:00Z");
    let msg = p["status"]["conditions"][0]["message"].as_str().unwrap();
    assert!(msg.chars().count() < 300, "{msg}");
    assert!(msg.contains(&s.idempotency_key), "{msg}");
}

#[test]
fn new_checks_the_node_name_and_the_kubeconfig_without_network() {
    let d = Dir::new("k8s-new");
    let bad = NodeCondition::new("k8s", Some("node/a".into()), false, None)
        .err()
        .expect("a node name with '/' is refused");
    assert!(bad.contains("not a valid Kubernetes Node name"), "{bad}");
    let missing = d.outside("no-such-kubeconfig");
    let err = NodeCondition::new("k8s", Some("node-a".into()), true, Some(missing))
        .err()
        .expect("a missing kubeconfig is refused");
    assert!(err.contains("no-such-kubeconfig"), "{err}");
    // Nothing listens there: `new` must not connect.
    let kc = d.write_outside(
        "kubeconfig",
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:9\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: t\n",
    );
    // A kubeconfig others can read is refused, naming the file and the fix.
    common::chmod_path(&kc, 0o644);
    let err = NodeCondition::new("k8s", Some("node-a".into()), true, Some(kc.clone()))
        .err()
        .expect("a kubeconfig readable by others is refused");
    assert_eq!(
        err,
        format!(
            "kubeconfig {} is readable by others (mode 0644): chmod 0640",
            kc.display()
        )
    );
    common::chmod_path(&kc, 0o640);
    let b = NodeCondition::new("k8s", Some("node-a".into()), true, Some(kc)).expect("new");
    assert_eq!(b.kind(), "kubernetes");
    assert_eq!(b.name(), "k8s");
    assert_eq!(b.node(), "node-a");
}

#[tokio::test]
async fn api_errors_name_the_status_and_message_but_not_the_token() {
    let api = ApiServer::start();
    api.fail_next(&[403]);
    let d = Dir::new("k8s-403");
    let b = NodeCondition::new("k8s", Some("node-a".into()), true, Some(api.kubeconfig(&d)))
        .expect("new");
    let err = b
        .send(&signal("drift.detected"))
        .await
        .expect_err("a 403 is a failure");
    assert!(
        err.contains("HTTP 403 (Forbidden): stand-in failure 1") && err.contains("node-a"),
        "{err}"
    );
    assert!(!err.contains(TOKEN), "{err}");
    // The same backend (and client) then succeeds: status, then cordon.
    let ok = b.send(&signal("drift.detected")).await.expect("delivered");
    assert_eq!(
        ok,
        "node node-a: condition DriftDetected=True (reason DriftDetected) set; cordoned"
    );
    let paths: Vec<String> = api.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        [
            "/api/v1/nodes/node-a/status",
            "/api/v1/nodes/node-a/status",
            "/api/v1/nodes/node-a"
        ]
    );
}

#[tokio::test]
async fn an_unreachable_api_server_is_a_failure_without_the_token() {
    // Bind then drop: a port that refuses connections.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let d = Dir::new("k8s-refused");
    let kc = d.write_outside(
        "kubeconfig",
        format!("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: {TOKEN}\n"),
    );
    common::chmod_path(&kc, 0o600);
    let b = NodeCondition::new("k8s", Some("node-a".into()), false, Some(kc)).expect("new");
    let err = b
        .send(&signal("drift.detected"))
        .await
        .expect_err("no server");
    assert!(
        err.contains("node-a") && err.contains("Connection refused"),
        "{err}"
    );
    assert!(!err.contains(TOKEN), "{err}");
}
