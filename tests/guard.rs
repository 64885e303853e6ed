//! The guard (`[signals.guard]`) in the real `driftd run` and `driftd
//! validate`, against a stand-in for the Prometheus query API: a local
//! server that records each query (the form it was POSTed with, and its
//! credentials) and answers what the test says (counts, an error status, a
//! partial answer with warnings). The stand-in checks only what driftd
//! sends; `tests/fleet` runs the guard against a real Prometheus.
//!
//! Every agent is stopped by its guard; every wait is a poll with a
//! deadline.

mod agent_util;
mod common;
mod signal_util;

use agent_util::{wait_for, Agent, Metrics};
use common::{driftd_run, Dir, LocalServer};
use signal_util::{
    describe, launch_with, lit, outbox_files, read_request, requests, start, verify_signature,
    webhook, Receiver, Secret,
};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ------------------------------------------------------ the stand-in

/// What the stand-in answers.
#[derive(Clone, Debug)]
enum Reply {
    /// hosts, other drifted, other unknown.
    Counts(u64, u64, u64),
    /// An HTTP error status with Prometheus's error body.
    Status(u16),
    /// A success carrying a warning (partial data).
    Warnings,
}

/// One query received: its PromQL and its Authorization header.
#[derive(Clone, Debug)]
struct Query {
    query: String,
    timeout: String,
    auth: Option<String>,
    target: String,
}

#[derive(Default)]
struct PromState {
    reply: Option<Reply>,
    queries: Vec<Query>,
}

struct FakeProm {
    port: u16,
    state: Arc<Mutex<PromState>>,
    _server: LocalServer,
}

fn form_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl FakeProm {
    fn start(reply: Reply) -> FakeProm {
        let state = Arc::new(Mutex::new(PromState {
            reply: Some(reply),
            queries: Vec::new(),
        }));
        let st = state.clone();
        let server = LocalServer::start("the Prometheus stand-in", move |mut conn, _, _| {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let Ok(req) = read_request(&mut conn) else {
                return;
            };
            let body = String::from_utf8_lossy(&req.body).into_owned();
            let field = |name: &str| {
                body.split('&')
                    .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                    .map(form_decode)
                    .unwrap_or_default()
            };
            let auth = req
                .headers
                .iter()
                .find(|(k, _)| k == "authorization")
                .map(|(_, v)| v.clone());
            let reply = {
                let mut s = st.lock().unwrap_or_else(|p| p.into_inner());
                s.queries.push(Query {
                    query: field("query"),
                    timeout: field("timeout"),
                    auth,
                    target: format!("{} {}", req.method, req.target),
                });
                s.reply.clone()
            };
            let (code, body) = match reply {
                Some(Reply::Counts(h, d, u)) => (
                    200,
                    format!(
                        r#"{{"status":"success","data":{{"resultType":"vector","result":[
                        {{"metric":{{"guard":"hosts"}},"value":[1.5,"{h}"]}},
                        {{"metric":{{"guard":"drifted"}},"value":[1.5,"{d}"]}},
                        {{"metric":{{"guard":"unknown"}},"value":[1.5,"{u}"]}}]}}}}"#
                    ),
                ),
                None => (
                    503,
                    r#"{"status":"error","errorType":"unavailable","error":"no reply set"}"#.to_string(),
                ),
                Some(Reply::Warnings) => (
                    200,
                    r#"{"status":"success","warnings":["store 10.0.0.7 unavailable"],"data":{"resultType":"vector","result":[]}}"#.to_string(),
                ),
                Some(Reply::Status(c)) => (
                    c,
                    r#"{"status":"error","errorType":"unavailable","error":"the stand-in says no"}"#.to_string(),
                ),
            };
            let _ = conn.write_all(
                format!(
                    "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        });
        FakeProm {
            port: server.port,
            state,
            _server: server,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn set(&self, reply: Reply) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).reply = Some(reply);
    }

    fn queries(&self) -> Vec<Query> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .queries
            .clone()
    }
}

// ------------------------------------------------------------ set-up

const IMAGE: &str = "ami-guard-test-3";

fn baked(name: &str) -> Dir {
    let d = Dir::standard(name);
    d.bake_and_assert_clean(&["--image-id", IMAGE]);
    d
}

fn digest_of(d: &Dir) -> String {
    d.manifest().digest_string()
}

/// `[signals]` with a host id, `[signals.guard]` with `guard_keys`, a
/// guarded webhook `cp` and a notify-only webhook `notify`.
fn tables(d: &Dir, prom: &str, guard_keys: &str, rx: &Receiver, secret: &Secret) -> String {
    let secret_file = secret.write(d);
    format!(
        "[signals]\nhost_id = \"host-a\"\nretry_initial = \"200ms\"\nretry_max = \"1s\"\n\n\
         [signals.guard]\nprometheus_url = {}\nsettle = \"1s\"\nrecheck = \"1s\"\n{guard_keys}\n\n{}{}",
        lit(prom),
        webhook("cp", &rx.url("/cp"), &secret_file, ""),
        webhook("notify", &rx.url("/notify"), &secret_file, "guard = false"),
    )
}

fn held(m: &Metrics, backend: &str) -> f64 {
    m.val("driftd_signal_held", &[("backend", backend)])
}

fn to(rx: &Receiver, path: &str) -> Vec<signal_util::Request> {
    rx.requests()
        .into_iter()
        .filter(|r| r.target == path)
        .collect()
}

fn tamper(d: &Dir) {
    d.append("/etc/passwd", b"evil:x:0:0::/:/bin/sh\n");
}

/// Tamper, and wait until the guard holds `cp` after a look.
fn held_after_a_look(a: &mut Agent, d: &Dir) -> serde_json::Value {
    tamper(d);
    a.wait_drifted();
    a.wait_status("the guard to hold the signal after a look", |s| {
        s["guard"]["signals"][0]["state"] == "held"
    })
}

/// Rewrite the agent's config file: `from` replaced by `to`.
fn edit_config(a: &Agent, from: &str, to: &str) {
    let text = std::fs::read_to_string(&a.config).expect("the agent's config");
    assert!(text.contains(from), "no `{from}` in\n{text}");
    std::fs::write(&a.config, text.replace(from, to)).expect("rewrite the config");
}

// ------------------------------------------------------------- tests

#[test]
fn a_held_signal_waits_in_the_outbox_and_goes_out_once_when_the_fleet_recovers() {
    let d = baked("guard-held");
    let digest = digest_of(&d);
    let prom = FakeProm::start(Reply::Counts(20, 5, 0));
    let token = d.write_outside("prom.token", "s3cr3t-t0ken\n");
    common::chmod_path(&token, 0o600);
    let rx = Receiver::start();
    let secret = Secret::whsec();
    let keys = format!(
        "max_drifted = \"10%\"\nbearer_token_file = {}",
        lit(common::s(&token))
    );
    let launch = launch_with(&d, &tables(&d, &prom.url(), &keys, &rx, &secret));
    let mut a = start(&launch, &["cp", "notify"]);
    let m = a.metrics();
    assert_eq!(
        m.get(
            "driftd_host_info",
            &[("host_id", "host-a"), ("hostname", &signal_util_hostname())]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!((held(&m, "cp"), held(&m, "notify")), (0.0, 0.0));
    let t0 = Instant::now();
    let st = held_after_a_look(&mut a, &d);
    // The notify-only webhook went at once; the guarded one waits.
    let notified = rx.wait_requests(1, &a);
    assert_eq!(notified[0].target, "/notify", "{}", describe(&notified));
    let g = &st["guard"];
    assert_eq!(g["held"], true, "{st}");
    assert_eq!(g["max_drifted"], "10%");
    assert_eq!(g["last_answer"]["hosts"], 20);
    assert_eq!(g["last_answer"]["drifted"], 6, "5 others and this host");
    assert_eq!(g["last_answer"]["limit"], 2);
    let sig = &g["signals"][0];
    assert_eq!(sig["backends"], serde_json::json!(["cp"]));
    assert_eq!(sig["manifest_digest"], digest.as_str());
    assert!(
        sig["why"]
            .as_str()
            .unwrap()
            .starts_with("6 of 20 hosts of this image drifted"),
        "{sig}"
    );
    assert!(sig["next_look_unix"].as_f64().is_some(), "{sig}");
    let m = a.metrics();
    assert_eq!((held(&m, "cp"), held(&m, "notify")), (1.0, 0.0), "{m}");
    assert_eq!(m.v("driftd_guard_hosts"), 20.0);
    assert_eq!(m.v("driftd_guard_drifted"), 6.0);
    assert_eq!(m.v("driftd_guard_limit"), 2.0);
    assert_eq!(m.val("driftd_signal_pending", &[("backend", "cp")]), 1.0);
    assert_eq!(
        a.healthz(),
        (503, "drifted".to_string()),
        "held or not, /healthz tells the truth"
    );
    assert_eq!(outbox_files(&a.state_dir, "cp", ".pending.json").len(), 1);
    // The first look waited settle (1 s, plus up to half).
    let q = prom.queries();
    assert!(!q.is_empty());
    assert!(t0.elapsed() >= Duration::from_secs(1));
    // What was asked: this host, this digest, the token, the timeout.
    let first = &q[0];
    assert_eq!(first.target, "POST /api/v1/query");
    assert_eq!(first.auth.as_deref(), Some("Bearer s3cr3t-t0ken"));
    assert_eq!(first.timeout, "10s");
    for part in [
        format!("driftd_manifest_info{{digest=\"{digest}\"}}"),
        "driftd_host_info{host_id!=\"host-a\"}".to_string(),
        "\"guard\", \"drifted\"".to_string(),
    ] {
        assert!(
            first.query.contains(&part),
            "no `{part}` in {}",
            first.query
        );
    }
    // Rechecked every second; still held; logged once.
    let n = q.len();
    wait_for(
        "two more looks",
        || Ok(prom.queries().len()),
        |l| *l >= n + 2,
        |l| format!("{l} looks"),
    );
    assert!(to(&rx, "/cp").is_empty());
    let log = a.log_text();
    assert_eq!(
        log.matches("the guard holds the signal key=").count(),
        1,
        "one line per change:\n{log}"
    );
    assert!(
        !log.contains("s3cr3t-t0ken"),
        "the token is in the log:\n{log}"
    );

    // The fleet recovers: released, sent once, signed.
    prom.set(Reply::Counts(20, 1, 0));
    let m = a.wait_metrics("the guarded signal delivered", |m| {
        requests(m, "cp", "success") == 1.0
    });
    assert_eq!(held(&m, "cp"), 0.0, "{m}");
    let sent = to(&rx, "/cp");
    assert_eq!(sent.len(), 1, "{}", describe(&rx.requests()));
    verify_signature(&secret.key, &sent[0]).unwrap();
    assert_eq!(
        sent[0].webhook_id(),
        notified[0].webhook_id(),
        "one episode"
    );
    let delivered = outbox_files(&a.state_dir, "cp", ".delivered.json");
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&delivered[0]).unwrap()).unwrap();
    assert!(rec["released_unix"].as_f64().is_some(), "{rec}");
    let st = a.status();
    assert_eq!(st["guard"]["held"], false, "{st}");
    // No more looks once released.
    std::thread::sleep(Duration::from_millis(1500));
    let n = prom.queries().len();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(prom.queries().len(), n);
    assert_eq!(to(&rx, "/cp").len(), 1);
}

/// The hostname the agent reports (uname's nodename).
fn signal_util_hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .trim()
        .to_string()
}

#[test]
fn raising_the_limit_and_reloading_releases_a_held_signal_at_once() {
    let d = baked("guard-reload");
    let prom = FakeProm::start(Reply::Counts(20, 19, 0));
    let rx = Receiver::start();
    let secret = Secret::raw();
    let keys = "max_drifted = \"10%\"\nrecheck = \"1h\"";
    let launch = launch_with(
        &d,
        &tables(&d, &prom.url(), keys, &rx, &secret).replace("recheck = \"1s\"\n", ""),
    );
    let mut a = start(&launch, &["cp"]);
    held_after_a_look(&mut a, &d);
    assert_eq!(prom.queries().len(), 1);
    edit_config(&a, "max_drifted = \"10%\"", "max_drifted = \"100%\"");
    a.sighup();
    let m = a.wait_metrics("released by the reload, well before the 1h recheck", |m| {
        requests(m, "cp", "success") == 1.0
    });
    assert_eq!(m.v("driftd_config_reload_success"), 1.0);
    assert_eq!(prom.queries().len(), 2, "one look at the reload");
    assert_eq!(to(&rx, "/cp").len(), 1);
    assert!(
        a.log_text().contains("config reloaded"),
        "{}",
        a.log_tail(20)
    );
}

#[test]
fn an_unusable_config_on_reload_keeps_the_running_one() {
    let d = baked("guard-bad-reload");
    let prom = FakeProm::start(Reply::Counts(20, 19, 0));
    let rx = Receiver::start();
    let secret = Secret::raw();
    let launch = launch_with(
        &d,
        &tables(&d, &prom.url(), "max_drifted = \"10%\"", &rx, &secret),
    );
    let mut a = start(&launch, &["cp"]);
    assert_eq!(a.metrics().v("driftd_config_reload_success"), 1.0);
    let good = std::fs::read_to_string(&a.config).unwrap();
    // Two errors at once: both logged; the running config stands.
    edit_config(
        &a,
        "max_drifted = \"10%\"",
        "max_drifted = \"0%\"\non_error = \"maybe\"",
    );
    a.sighup();
    a.wait_metrics("the failed reload", |m| {
        m.v("driftd_config_reload_success") == 0.0
    });
    let log = a.log_text();
    for needle in [
        "signals.guard.max_drifted: `0%`",
        "signals.guard.on_error: `maybe`",
        "config reload failed: the running config stands",
    ] {
        assert!(log.contains(needle), "no `{needle}` in:\n{log}");
    }
    // The running guard still holds.
    held_after_a_look(&mut a, &d);
    // A secret file that cannot be read is as bad as a syntax error.
    std::fs::write(&a.config, good.replace("webhook.secret", "missing.secret")).unwrap();
    a.sighup();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !a.log_text().contains("missing.secret") {
        assert!(Instant::now() < deadline, "{}", a.log_tail(20));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(a.metrics().v("driftd_config_reload_success"), 0.0);
    // Fixed, with a restart-only change too: applied, and the change named.
    std::fs::write(
        &a.config,
        good.replace("[signals]\n", "[signals]\non_unknown = true\n")
            .replace("host_id = \"host-a\"", "host_id = \"host-b\""),
    )
    .unwrap();
    a.sighup();
    a.wait_metrics("the reload to succeed", |m| {
        m.v("driftd_config_reload_success") == 1.0
    });
    let log = a.log_text();
    assert!(
        log.contains("key=\"signals.host_id\"") && log.contains("takes effect at the next restart"),
        "{log}"
    );
    assert_eq!(to(&rx, "/cp").len(), 0, "still held");
}

#[test]
fn a_held_signal_whose_manifest_is_replaced_is_dropped_and_counted() {
    let d = baked("guard-drop");
    let prom = FakeProm::start(Reply::Counts(20, 19, 0));
    let rx = Receiver::start();
    let secret = Secret::raw();
    let launch = launch_with(&d, &tables(&d, &prom.url(), "", &rx, &secret));
    let mut a = start(&launch, &["cp"]);
    held_after_a_look(&mut a, &d);
    // A new image: the tampered tree baked as another image id.
    d.bake_and_assert_clean(&["--image-id", "ami-guard-test-4"]);
    a.sighup();
    let m = a.wait_metrics("the held signal dropped", |m| {
        m.v("driftd_guard_dropped_total") == 1.0
    });
    assert_eq!(held(&m, "cp"), 0.0, "{m}");
    assert_eq!(
        m.val("driftd_signal_pending", &[("backend", "cp")]),
        0.0,
        "{m}"
    );
    assert_eq!(outbox_files(&a.state_dir, "cp", ".dropped.json").len(), 1);
    assert!(outbox_files(&a.state_dir, "cp", ".pending.json").is_empty());
    assert!(
        a.log_text().contains("a held signal was dropped"),
        "{}",
        a.log_tail(20)
    );
    prom.set(Reply::Counts(20, 0, 0));
    std::thread::sleep(Duration::from_millis(2500));
    assert!(to(&rx, "/cp").is_empty(), "{}", describe(&rx.requests()));
}

#[test]
fn failed_looks_hold_with_on_error_hold_and_send_with_send() {
    for (reply, on_error) in [
        (Reply::Status(503), "hold"),
        (Reply::Warnings, "hold"),
        (Reply::Warnings, "send"),
    ] {
        let d = baked(&format!("guard-err-{on_error}"));
        let prom = FakeProm::start(reply.clone());
        let rx = Receiver::start();
        let secret = Secret::raw();
        let keys = format!("on_error = \"{on_error}\"");
        let launch = launch_with(&d, &tables(&d, &prom.url(), &keys, &rx, &secret));
        let mut a = start(&launch, &["cp"]);
        tamper(&d);
        a.wait_drifted();
        if on_error == "send" {
            a.wait_metrics("sent despite the failed look", |m| {
                requests(m, "cp", "success") == 1.0
            });
            assert!(
                a.log_text().contains("on_error = \"send\""),
                "{}",
                a.log_tail(20)
            );
        } else {
            let st = a.wait_status("held after failed looks", |s| {
                s["guard"]["signals"][0]["state"] == "held"
            });
            let err = st["guard"]["last_answer"]["error"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let want = match reply {
                Reply::Warnings => "partial answer (warnings: store 10.0.0.7 unavailable)",
                _ => {
                    "HTTP 503 Service Unavailable: query failed: unavailable: the stand-in says no"
                }
            };
            assert!(err.contains(want), "{reply:?}: {err}");
            assert!(
                err.contains(&format!("POST http://127.0.0.1:{}/api/v1/query", prom.port)),
                "{err}"
            );
            a.wait_metrics("failed looks counted", |m| {
                m.v("driftd_guard_errors_total") >= 2.0
            });
            assert!(to(&rx, "/cp").is_empty());
        }
    }
}

#[test]
fn validate_checks_the_guard_and_online_asks_its_prometheus() {
    let d = baked("guard-validate");
    let prom = FakeProm::start(Reply::Counts(20, 2, 0));
    let rx = Receiver::start();
    let secret = Secret::raw();
    let pw = d.write_outside("prom.password", "hunter2\n");
    common::chmod_path(&pw, 0o600);
    let keys = format!(
        "max_drifted = \"10%\"\nbasic_auth_user = \"driftd\"\nbasic_auth_password_file = {}",
        lit(common::s(&pw))
    );
    let config = d.write_outside(
        "validate.toml",
        tables(&d, &prom.url(), &keys, &rx, &secret),
    );
    let args = |extra: &[&str]| {
        let mut v: Vec<String> = vec![
            "validate".into(),
            "--config".into(),
            common::s(&config).into(),
            "--root".into(),
            common::s(&d.root).into(),
            "--manifest".into(),
            common::s(&d.manifest).into(),
            "--state-dir".into(),
            common::s(&d.outside("state")).into(),
            "--allow-unsigned".into(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let o = driftd_run(args(&[]));
    o.assert_code(0);
    let out = o.stdout_str();
    assert!(
        out.contains("ok    guard     Prometheus at http://127.0.0.1:")
            && out.contains("max_drifted 10%, settle 1s"),
        "{out}"
    );
    assert!(prom.queries().is_empty(), "no network without --online");
    let o = driftd_run(args(&["--online"]));
    o.assert_code(0);
    let out = o.stdout_str();
    assert!(
        out.contains("20 hosts, 2 other drifted, 0 other unknown; a drift signal now: 3 of 20 drifted with this host, limit 2: HELD"),
        "{out}"
    );
    let q = prom.queries();
    assert_eq!(q.len(), 1);
    assert!(
        q[0].query.contains(&digest_of(&d)) && q[0].query.contains("host-a"),
        "{q:?}"
    );
    assert!(q[0]
        .auth
        .as_deref()
        .is_some_and(|a| a.starts_with("Basic ")));
    assert!(!out.contains("hunter2"));
    // Prometheus gone: --online fails, naming the URL.
    let url = prom.url();
    drop(prom);
    let o = driftd_run(args(&["--online"]));
    o.assert_code(2);
    assert!(
        o.stdout_str().contains(&format!(
            "ERROR guard     --online: POST {url}/api/v1/query: "
        )),
        "{}",
        o.stdout_str()
    );
    // A password file others could read is refused (the secret-file
    // rule), without the network and without its content.
    common::chmod_path(&pw, 0o644);
    let o = driftd_run(args(&[]));
    o.assert_code(2);
    let out = o.stdout_str();
    assert!(
        out.contains("basic auth password file ")
            && out.contains("readable by others")
            && !out.contains("hunter2"),
        "{out}"
    );
    // An unreadable password file is found without the network.
    std::fs::remove_file(&pw).unwrap();
    let o = driftd_run(args(&[]));
    o.assert_code(2);
    assert!(
        o.stdout_str().contains("read basic auth password file"),
        "{}",
        o.stdout_str()
    );
}
