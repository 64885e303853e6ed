//! Control-plane signals, end to end: the real `driftd run` against a local
//! webhook receiver (which checks the Standard Webhooks signature itself)
//! and exec commands. What is checked: one signal per drift episode, with
//! the documented body; retries with backoff until a success; durability
//! across SIGKILL; dry run; the exec backend's environment and stdin; and
//! config errors.
//!
//! Nothing sleeps to synchronise: every wait polls with a deadline, and
//! "nothing more arrives" is proven over SIGHUP rescans that were waited
//! for.

mod agent_util;
mod common;
mod signal_util;

use agent_util::{free_port, has_finding, pretty, Agent, WAIT};
use common::{driftd_run, Dir, FINDING_KINDS};
use serde_json::Value;
use signal_util::{
    describe, exec, last_success, launch_with, outbox_files, pending, requests, rescan,
    signals_section, start, verify_signature, webhook, Receiver, Request, Secret,
};
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const IMAGE: &str = "ami-signal-test-7";

/// A standard tree baked (unsigned, image id [`IMAGE`]) and checked clean.
fn baked(name: &str) -> Dir {
    let d = Dir::standard(name);
    d.bake_and_assert_clean(&["--image-id", IMAGE]);
    d
}

/// The manifest digest as `driftd inspect --format json` reports it.
fn inspect_digest(d: &Dir) -> String {
    let o = driftd_run([
        "inspect".as_ref(),
        "--format".as_ref(),
        "json".as_ref(),
        d.manifest.as_os_str(),
    ]);
    o.assert_code(0);
    let j = o.json();
    j["manifest"]["digest"]
        .as_str()
        .unwrap_or_else(|| panic!("no manifest.digest in {}", pretty(&j)))
        .to_string()
}

/// This machine's identity as driftd computes it without `host_id`.
fn local_host() -> (String, String) {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let hostname = read("/proc/sys/kernel/hostname").unwrap_or_else(|| "unknown".into());
    let id = read("/etc/machine-id").unwrap_or_else(|| hostname.clone());
    (id, hostname)
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn rfc3339_unix(s: &str) -> f64 {
    humantime::parse_rfc3339(s)
        .unwrap_or_else(|e| panic!("`{s}` is not RFC 3339: {e}"))
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

fn has_signal_finding(body: &Value, path: &str, kind: &str) -> bool {
    body["findings"].as_array().is_some_and(|a| {
        a.iter()
            .any(|f| f["path"].as_str() == Some(path) && f["kind"].as_str() == Some(kind))
    })
}

/// Check a `driftd.signal.v1` drift body against the documented schema and
/// what the test knows: the image id, the manifest digest, this host, the
/// tampered path, the episode's start (`first_detection`, from /metrics).
fn check_drift_body(body: &Value, digest: &str, tampered: &str, first_detection: f64) {
    let show = pretty(body);
    let obj = body
        .as_object()
        .unwrap_or_else(|| panic!("body is not an object: {show}"));
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "counts",
            "created",
            "findings",
            "findings_total",
            "first_detected",
            "first_detected_unix",
            "host",
            "idempotency_key",
            "image_id",
            "manifest_digest",
            "schema",
            "type",
            "verdict",
        ],
        "the documented fields, and no `reason` for a drift: {show}"
    );
    assert_eq!(body["schema"], "driftd.signal.v1", "{show}");
    assert_eq!(body["type"], "drift.detected", "{show}");
    assert_eq!(body["verdict"], "drifted", "{show}");
    assert_eq!(body["image_id"], IMAGE, "{show}");
    assert_eq!(body["manifest_digest"], digest, "{show}");
    let (host_id, hostname) = local_host();
    assert_eq!(body["host"]["id"], host_id.as_str(), "{show}");
    assert_eq!(body["host"]["hostname"], hostname.as_str(), "{show}");

    let counts = body["counts"]
        .as_object()
        .unwrap_or_else(|| panic!("counts is not an object: {show}"));
    let mut ckeys: Vec<&str> = counts.keys().map(String::as_str).collect();
    ckeys.sort_unstable();
    let mut kinds = FINDING_KINDS.to_vec();
    kinds.sort_unstable();
    assert_eq!(ckeys, kinds, "counts has every finding kind: {show}");
    assert!(counts["modified"].as_u64() >= Some(1), "{show}");

    let total = body["findings_total"]
        .as_u64()
        .unwrap_or_else(|| panic!("findings_total is not a count: {show}"));
    let findings = body["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("findings is not an array: {show}"));
    assert!(total >= 1, "{show}");
    assert_eq!(findings.len() as u64, total.min(20), "{show}");
    assert!(
        has_signal_finding(body, tampered, "modified"),
        "the tampered path {tampered} is not among the findings: {show}"
    );

    let first_unix = body["first_detected_unix"]
        .as_f64()
        .unwrap_or_else(|| panic!("first_detected_unix is not a number: {show}"));
    assert!(
        (first_unix - first_detection).abs() < 1e-3,
        "first_detected_unix {first_unix} is not the episode's start {first_detection} \
         (driftd_first_detection_timestamp_seconds): {show}"
    );
    let first = body["first_detected"].as_str().unwrap_or_default();
    assert_eq!(
        rfc3339_unix(first),
        first_unix.floor(),
        "first_detected is first_detected_unix in RFC 3339 seconds: {show}"
    );
    let created = rfc3339_unix(body["created"].as_str().unwrap_or_default());
    assert!(
        created >= first_unix.floor() && created <= now_unix(),
        "created is between the episode's start and now: {show}"
    );

    let key = body["idempotency_key"].as_str().unwrap_or_default();
    assert!(
        key.len() == 32 && key.bytes().all(|b| b.is_ascii_hexdigit()),
        "idempotency_key is 32 hex digits: {show}"
    );
    assert_eq!(
        key,
        driftd::signal::idempotency_key(&host_id, digest, "drift.detected", first_unix),
        "idempotency_key is BLAKE3 of host id, digest, event and episode start: {show}"
    );
}

/// Assert the common shape of a webhook request: a signed JSON POST to
/// `/hook` whose `webhook-id` is the body's idempotency key.
fn check_webhook_request(r: &Request, key: &[u8]) -> Value {
    assert_eq!(r.method, "POST", "{r:?}");
    assert!(r.target.starts_with("/hook"), "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    verify_signature(key, r).unwrap_or_else(|e| panic!("signature: {e}\n{r:?}"));
    let body = r.json();
    assert_eq!(
        body["idempotency_key"].as_str(),
        Some(r.webhook_id()),
        "webhook-id is the body's idempotency key: {}",
        pretty(&body)
    );
    body
}

fn kill_and_reap(a: &mut Agent) {
    a.signal(rustix::process::Signal::KILL);
    let deadline = Instant::now() + WAIT;
    let st = loop {
        if let Some(st) = a.poll_exit() {
            break st;
        }
        assert!(Instant::now() < deadline, "SIGKILLed agent did not exit");
        std::thread::sleep(Duration::from_millis(10));
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(st.signal(), Some(9), "killed by SIGKILL: {st}");
}

// --------------------------------------------------- one per episode

fn one_signed_request_per_episode(name: &str, secret: Secret) {
    let d = baked(name);
    let digest = inspect_digest(&d);
    let secret_file = secret.write(&d);
    let rx = Receiver::start();
    let launch = launch_with(
        &d,
        &(signals_section("200ms", "1s") + &webhook("cp", &rx.url("/hook"), &secret_file, "")),
    );
    let mut a = start(&launch, &["cp"]);

    d.append("/etc/passwd", b"evil:x:0:0::/:/bin/sh\n");
    let m = a.wait_drifted();
    let first_detection = m.v("driftd_first_detection_timestamp_seconds");
    // A second drift in the same episode.
    d.append("/usr/lib/libx.so", b"patched");
    a.wait_status("the second tampered file among the findings", |s| {
        has_finding(s, "/usr/lib/libx.so", "modified")
    });
    let m = a.wait_metrics("one delivery, nothing pending", |m| {
        requests(m, "cp", "success") == 1.0 && pending(m, "cp") == 0.0
    });
    assert!(
        last_success(&m, "cp") >= first_detection.floor() && last_success(&m, "cp") <= now_unix(),
        "{m}"
    );
    // A few rescans later, still one request.
    rescan(&mut a);
    let m = rescan(&mut a);
    assert_eq!(requests(&m, "cp", "success"), 1.0, "{m}");
    assert_eq!(requests(&m, "cp", "failure"), 0.0, "{m}");
    assert_eq!(requests(&m, "cp", "dry_run"), 0.0, "{m}");
    assert_eq!(m.v("driftd_drift_detected"), 1.0, "{m}");

    let reqs = rx.requests();
    assert_eq!(reqs.len(), 1, "exactly one request:\n{}", describe(&reqs));
    let r = &reqs[0];
    assert_eq!(r.answered, Some(200));
    let body = check_webhook_request(r, &secret.key);
    check_drift_body(&body, &digest, "/etc/passwd", first_detection);

    // The outbox holds the delivery, nothing pending.
    let key = r.webhook_id();
    let delivered = outbox_files(&a.state_dir, "cp", ".delivered.json");
    assert_eq!(
        delivered,
        vec![a
            .state_dir
            .join("outbox/cp")
            .join(format!("{key}.delivered.json"))],
    );
    assert!(outbox_files(&a.state_dir, "cp", ".pending.json").is_empty());
    // The secret is never logged.
    let log = a.log_text();
    let secret_text = String::from_utf8_lossy(&secret.file_text)
        .trim()
        .to_string();
    assert!(
        !log.contains(&secret_text),
        "the secret is in the log:\n{log}"
    );
}

#[test]
fn one_signed_request_per_episode_with_a_whsec_secret() {
    one_signed_request_per_episode("sig-once-whsec", Secret::whsec());
}

#[test]
fn one_signed_request_per_episode_with_a_raw_secret() {
    one_signed_request_per_episode("sig-once-raw", Secret::raw());
}

// ----------------------------------------------------------- retries

#[test]
fn failed_requests_are_retried_with_the_same_id_until_one_succeeds() {
    let d = baked("sig-retry");
    let secret = Secret::whsec();
    let secret_file = secret.write(&d);
    let rx = Receiver::start();
    rx.fail_next(3);
    // A credential in the query: the URL must never be logged whole.
    let url = rx.url("/hook?token=do-not-log-this-token");
    let launch = launch_with(
        &d,
        &(signals_section("200ms", "1s") + &webhook("cp", &url, &secret_file, "")),
    );
    let mut a = start(&launch, &["cp"]);
    d.append("/etc/passwd", b"evil\n");
    a.wait_drifted();
    let m = a.wait_metrics("a success after the failures, nothing pending", |m| {
        requests(m, "cp", "success") == 1.0 && pending(m, "cp") == 0.0
    });
    assert_eq!(requests(&m, "cp", "failure"), 3.0, "{m}");
    assert_eq!(requests(&m, "cp", "dry_run"), 0.0, "{m}");
    assert!(last_success(&m, "cp") > 0.0, "{m}");

    let reqs = rx.requests();
    let answered: Vec<Option<u16>> = reqs.iter().map(|r| r.answered).collect();
    assert_eq!(
        answered,
        [Some(500), Some(500), Some(500), Some(200)],
        "\n{}",
        describe(&reqs)
    );
    let bodies: Vec<Value> = reqs
        .iter()
        .map(|r| check_webhook_request(r, &secret.key))
        .collect();
    let id = reqs[0].webhook_id();
    for (r, b) in reqs.iter().zip(&bodies) {
        assert_eq!(
            r.webhook_id(),
            id,
            "one id for every try:\n{}",
            describe(&reqs)
        );
        assert_eq!(b, &bodies[0], "every try carries the same signal");
    }
    assert_eq!(
        reqs[0].target, "/hook?token=do-not-log-this-token",
        "the query reaches the receiver"
    );

    let delivered = outbox_files(&a.state_dir, "cp", ".delivered.json");
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    let marker: Value = serde_json::from_slice(&std::fs::read(&delivered[0]).expect("read marker"))
        .expect("the marker is JSON");
    assert_eq!(marker["attempts"], 4, "{}", pretty(&marker));
    assert_eq!(marker["idempotency_key"], id, "{}", pretty(&marker));
    assert!(outbox_files(&a.state_dir, "cp", ".pending.json").is_empty());

    let log = a.log_text();
    assert!(
        !log.contains("do-not-log-this-token"),
        "the webhook URL's query is in the log:\n{log}"
    );
    assert!(log.contains("signal failed; will retry"), "{log}");
    assert!(log.contains("signal delivered"), "{log}");
}

#[test]
fn a_hanging_receiver_times_out_counts_as_a_failure_and_is_retried() {
    let d = baked("sig-hang");
    let secret = Secret::raw();
    let secret_file = secret.write(&d);
    let rx = Receiver::start();
    rx.hang_next(1);
    let launch = launch_with(
        &d,
        &(signals_section("200ms", "1s")
            + &webhook("cp", &rx.url("/hook"), &secret_file, "timeout = \"500ms\"")),
    );
    let mut a = start(&launch, &["cp"]);
    d.append("/etc/passwd", b"evil\n");
    a.wait_drifted();
    // The agent keeps serving while the request hangs (wait_metrics scrapes).
    let m = a.wait_metrics("a success after the timeout", |m| {
        requests(m, "cp", "success") == 1.0 && pending(m, "cp") == 0.0
    });
    assert_eq!(requests(&m, "cp", "failure"), 1.0, "{m}");
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 2, "\n{}", describe(&reqs));
    assert_eq!(reqs[0].answered, None);
    assert_eq!(reqs[1].answered, Some(200));
    assert_eq!(reqs[0].webhook_id(), reqs[1].webhook_id());
    let gap = reqs[1].at.duration_since(reqs[0].at);
    assert!(
        gap >= Duration::from_millis(500),
        "the retry came {gap:?} after the hung request, before the 500ms timeout"
    );
    check_webhook_request(&reqs[1], &secret.key);
}

// ------------------------------------------------------- durability

#[test]
fn a_signal_survives_sigkill_and_is_delivered_once_after_restart() {
    let d = baked("sig-kill");
    let secret = Secret::whsec();
    let secret_file = secret.write(&d);
    let rx = Receiver::start();
    rx.set_refusing(true);
    let launch = launch_with(
        &d,
        &(signals_section("200ms", "1s") + &webhook("cp", &rx.url("/hook"), &secret_file, "")),
    );
    let mut a = start(&launch, &["cp"]);
    let state_dir = a.state_dir.clone();
    d.append("/etc/passwd", b"evil\n");
    a.wait_drifted();
    let m = a.wait_metrics("one signal pending after a refusal", |m| {
        pending(m, "cp") == 1.0 && requests(m, "cp", "failure") >= 1.0
    });
    assert_eq!(requests(&m, "cp", "success"), 0.0, "{m}");
    let pend = outbox_files(&state_dir, "cp", ".pending.json");
    assert_eq!(pend.len(), 1, "{pend:?}");
    let refused = rx.wait_requests(1, &a);
    let id = refused[0].webhook_id().to_string();
    let refused_body = check_webhook_request(&refused[0], &secret.key);
    assert_eq!(
        pend[0],
        state_dir
            .join("outbox/cp")
            .join(format!("{id}.pending.json"))
    );

    kill_and_reap(&mut a);
    drop(a);
    let before = rx.requests();
    assert!(before.iter().all(|r| r.answered == Some(500)));
    assert!(before.iter().all(|r| r.webhook_id() == id));
    rx.set_refusing(false);

    let mut b = launch.start();
    b.wait_ready();
    let m = b.wait_metrics("the pending signal delivered after the restart", |m| {
        requests(m, "cp", "success") == 1.0 && pending(m, "cp") == 0.0
    });
    assert_eq!(m.v("driftd_drift_detected"), 1.0, "{m}");
    assert!(b.log_text().contains("resuming undelivered signals"));
    let reqs = rx.requests();
    let ok = rx.successes();
    assert_eq!(ok.len(), 1, "one success:\n{}", describe(&reqs));
    assert_eq!(reqs.len(), before.len() + 1, "\n{}", describe(&reqs));
    assert_eq!(ok[0].webhook_id(), id, "\n{}", describe(&reqs));
    let body = check_webhook_request(&ok[0], &secret.key);
    assert_eq!(body, refused_body, "the same signal as before the crash");
    assert_eq!(
        outbox_files(&state_dir, "cp", ".delivered.json"),
        vec![state_dir
            .join("outbox/cp")
            .join(format!("{id}.delivered.json"))]
    );
    assert!(outbox_files(&state_dir, "cp", ".pending.json").is_empty());
    let (st, _) = b.terminate(Duration::from_secs(10));
    assert!(st.success(), "{st}");
    drop(b);

    // Once more: nothing is sent again.
    let n = rx.requests().len();
    let mut c = launch.start();
    c.wait_ready();
    c.wait_drifted();
    rescan(&mut c);
    let m = rescan(&mut c);
    assert_eq!(
        rx.requests().len(),
        n,
        "a delivered signal was sent again:\n{}",
        describe(&rx.requests())
    );
    for r in ["success", "failure", "dry_run"] {
        assert_eq!(requests(&m, "cp", r), 0.0, "{r}: {m}");
    }
    assert_eq!(pending(&m, "cp"), 0.0, "{m}");
    assert!(outbox_files(&state_dir, "cp", ".pending.json").is_empty());
}

// ---------------------------------------------------------- dry run

#[test]
fn dry_run_sends_nothing_but_counts_and_logs() {
    let d = baked("sig-dry");
    let secret_file = Secret::whsec().write(&d);
    let rx = Receiver::start();
    let launch = launch_with(
        &d,
        &(signals_section("200ms", "1s")
            + &webhook("cp", &rx.url("/hook"), &secret_file, "dry_run = true")),
    );
    let mut a = start(&launch, &["cp"]);
    d.append("/etc/passwd", b"evil\n");
    a.wait_drifted();
    a.wait_metrics("the dry run counted", |m| {
        requests(m, "cp", "dry_run") == 1.0 && pending(m, "cp") == 0.0
    });
    rescan(&mut a);
    let m = rescan(&mut a);
    assert_eq!(requests(&m, "cp", "dry_run"), 1.0, "{m}");
    assert_eq!(requests(&m, "cp", "success"), 0.0, "{m}");
    assert_eq!(requests(&m, "cp", "failure"), 0.0, "{m}");
    assert_eq!(last_success(&m, "cp"), 0.0, "{m}");
    assert!(
        rx.requests().is_empty(),
        "dry run sent:\n{}",
        describe(&rx.requests())
    );
    // The receiver was listening all along: a probe arrives.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", rx.port)).expect("connect");
    s.write_all(b"POST /probe HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        .expect("send the probe");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    let reqs = rx.wait_requests(1, &a);
    assert_eq!(reqs.len(), 1, "\n{}", describe(&reqs));
    assert_eq!(reqs[0].target, "/probe");
    let log = a.log_text();
    assert!(
        log.contains("dry run"),
        "the log does not mention the dry run:\n{log}"
    );
}

// ------------------------------------------------------------- exec

/// `DRIFTD_*` variables from `env` output.
fn driftd_env(text: &str) -> std::collections::BTreeMap<String, String> {
    text.lines()
        .filter(|l| l.starts_with("DRIFTD_"))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn exec_gets_the_signal_in_its_environment_and_on_stdin_beside_a_webhook() {
    let d = baked("sig-exec");
    let digest = inspect_digest(&d);
    let env_out = d.outside("exec.env");
    let stdin_out = d.outside("exec.json");
    let secret = Secret::raw();
    let secret_file = secret.write(&d);
    let rx = Receiver::start();
    let tables = signals_section("200ms", "1s")
        + &exec(
            "script",
            &[
                "/bin/sh",
                "-c",
                "env > \"$1.tmp\" && mv \"$1.tmp\" \"$1\" && cat > \"$2\"",
                "sh",
                &env_out.display().to_string(),
                &stdin_out.display().to_string(),
            ],
            "timeout = \"5s\"",
        )
        + &webhook("cp", &rx.url("/hook"), &secret_file, "");
    let mut a = start(&launch_with(&d, &tables), &["script", "cp"]);
    d.append("/etc/passwd", b"evil\n");
    let m = a.wait_drifted();
    let first_detection = m.v("driftd_first_detection_timestamp_seconds");
    let m = a.wait_metrics("both backends delivered", |m| {
        requests(m, "script", "success") == 1.0
            && requests(m, "cp", "success") == 1.0
            && pending(m, "script") == 0.0
            && pending(m, "cp") == 0.0
    });
    assert_eq!(requests(&m, "script", "failure"), 0.0, "{m}");

    let env = driftd_env(&std::fs::read_to_string(&env_out).expect("read the env output"));
    let stdin_text = std::fs::read_to_string(&stdin_out).expect("read the stdin copy");
    let body: Value = serde_json::from_str(&stdin_text)
        .unwrap_or_else(|e| panic!("stdin is not JSON ({e}): {stdin_text}"));
    check_drift_body(&body, &digest, "/etc/passwd", first_detection);
    let key = body["idempotency_key"].as_str().unwrap_or_default();
    let (host_id, hostname) = local_host();
    let want = [
        ("DRIFTD_EVENT", "drift.detected"),
        ("DRIFTD_VERDICT", "drifted"),
        ("DRIFTD_IDEMPOTENCY_KEY", key),
        ("DRIFTD_HOST_ID", &host_id),
        ("DRIFTD_HOSTNAME", &hostname),
        ("DRIFTD_IMAGE_ID", IMAGE),
        ("DRIFTD_MANIFEST_DIGEST", &digest),
        ("DRIFTD_FINDINGS_TOTAL", &body["findings_total"].to_string()),
        (
            "DRIFTD_FIRST_DETECTED",
            body["first_detected"].as_str().unwrap_or_default(),
        ),
    ];
    for (k, v) in want {
        assert_eq!(env.get(k).map(String::as_str), Some(v), "{k} in {env:#?}");
    }
    assert_eq!(
        env.len(),
        want.len(),
        "unexpected DRIFTD_ variables: {env:#?}"
    );

    // The webhook got the very same signal.
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 1, "\n{}", describe(&reqs));
    let hook_body = check_webhook_request(&reqs[0], &secret.key);
    assert_eq!(hook_body, body, "webhook and exec carry the same signal");
}

#[test]
fn a_failing_exec_is_retried_until_it_exits_0() {
    let d = baked("sig-exec-retry");
    let counter = d.outside("counter");
    let keys = d.outside("keys");
    let script = "n=$(cat \"$1\" 2>/dev/null || echo 0); n=$((n+1)); echo \"$n\" > \"$1\"; \
                  echo \"$DRIFTD_IDEMPOTENCY_KEY\" >> \"$2\"; cat > /dev/null; \
                  if [ \"$n\" -lt 3 ]; then echo \"attempt $n fails\" >&2; exit 1; fi";
    let tables = signals_section("200ms", "1s")
        + &exec(
            "script",
            &[
                "/bin/sh",
                "-c",
                script,
                "sh",
                &counter.display().to_string(),
                &keys.display().to_string(),
            ],
            "timeout = \"5s\"",
        );
    let mut a = start(&launch_with(&d, &tables), &["script"]);
    d.append("/etc/passwd", b"evil\n");
    a.wait_drifted();
    a.wait_metrics("a success after two failures", |m| {
        requests(m, "script", "success") == 1.0 && pending(m, "script") == 0.0
    });
    rescan(&mut a);
    let m = rescan(&mut a);
    assert_eq!(requests(&m, "script", "failure"), 2.0, "{m}");
    assert_eq!(requests(&m, "script", "success"), 1.0, "{m}");
    let count = std::fs::read_to_string(&counter).expect("read the counter");
    assert_eq!(count.trim(), "3", "the command ran three times");
    let keys_text = std::fs::read_to_string(&keys).expect("read the keys");
    let lines: Vec<&str> = keys_text.lines().collect();
    assert_eq!(lines.len(), 3, "{keys_text}");
    assert!(
        lines.iter().all(|l| l.len() == 32 && *l == lines[0]),
        "one key for every try: {keys_text}"
    );
    let log = a.log_text();
    assert!(
        log.contains("attempt 1 fails"),
        "the failing command's stderr is logged:\n{log}"
    );
}

#[test]
fn the_exec_timeout_kills_a_command_that_hangs() {
    let d = baked("sig-exec-timeout");
    let tables =
        signals_section("200ms", "1s") + &exec("script", &["/bin/sleep", "60"], "timeout = \"1s\"");
    let mut a = start(&launch_with(&d, &tables), &["script"]);
    d.append("/etc/passwd", b"evil\n");
    a.wait_drifted();
    let t0 = Instant::now();
    let m = a.wait_metrics("two timeouts counted as failures", |m| {
        requests(m, "script", "failure") >= 2.0
    });
    assert_eq!(requests(&m, "script", "success"), 0.0, "{m}");
    assert_eq!(pending(&m, "script"), 1.0, "{m}");
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    let log = a.log_text();
    assert!(log.contains("did not finish within"), "{log}");
}

/// Regression: `signal::exec::Exec::run` writes the signal to the
/// command's stdin (`stdin.write_all(&body).await`) before, and outside,
/// the `tokio::time::timeout` that wraps only `wait_with_output`. A command
/// that does not read its stdin, given a signal larger than the pipe buffer
/// (64 KiB: 20 findings of long paths), blocks the write until the command
/// exits on its own: the configured timeout is not enforced, and the whole
/// dispatcher (every backend) waits meanwhile.
#[test]
fn the_exec_timeout_holds_for_a_command_that_does_not_read_a_large_signal() {
    let d = Dir::standard("sig-exec-big");
    // 24 files at paths of about 3.8 KB (15 components of 250 bytes).
    let deep: String = (0..15)
        .map(|i| format!("/{}", char::from(b'a' + i as u8).to_string().repeat(250)))
        .collect();
    let files: Vec<String> = (0..24)
        .map(|i| format!("/srv/deep{deep}/f{i:02}"))
        .collect();
    for f in &files {
        d.write(f, "original\n");
    }
    d.bake_and_assert_clean(&["--image-id", IMAGE]);
    let tables =
        signals_section("200ms", "1s") + &exec("script", &["/bin/sleep", "60"], "timeout = \"1s\"");
    let mut a = start(&launch_with(&d, &tables), &["script"]);
    // Tamper with all of them while the agent is stopped: one batch, one
    // declaration carrying 20 findings.
    a.pause();
    for f in &files {
        d.rewrite(f, "tampered\n");
    }
    a.resume();
    a.wait_drifted();
    let body_len = {
        let m = a.metrics();
        assert!(m.drifted("modified") >= 20.0, "{m}");
        let s = a.status();
        let n: usize = s["findings"]
            .as_array()
            .map_or(0, |v| v.iter().take(20).map(|f| f.to_string().len()).sum());
        n
    };
    assert!(
        body_len > 64 << 10,
        "the signal is only about {body_len} bytes"
    );
    let t0 = Instant::now();
    let m = a.wait_metrics("the 1s exec timeout to count a failure", |m| {
        requests(m, "script", "failure") >= 1.0
    });
    assert_eq!(requests(&m, "script", "success"), 0.0, "{m}");
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
}

// ---------------------------------------------------------- backoff

#[test]
fn retries_back_off_exponentially_up_to_retry_max() {
    let d = baked("sig-backoff");
    let secret = Secret::whsec();
    let secret_file = secret.write(&d);
    let rx = Receiver::start();
    rx.set_refusing(true);
    let launch = launch_with(
        &d,
        &(signals_section("200ms", "800ms") + &webhook("cp", &rx.url("/hook"), &secret_file, "")),
    );
    let mut a = start(&launch, &["cp"]);
    d.append("/etc/passwd", b"evil\n");
    a.wait_drifted();
    const N: usize = 8;
    let reqs = rx.wait_requests(N, &a);
    let reqs = &reqs[..N];
    let id = reqs[0].webhook_id();
    assert!(
        reqs.iter().all(|r| r.webhook_id() == id),
        "\n{}",
        describe(reqs)
    );
    let gaps: Vec<f64> = reqs
        .windows(2)
        .map(|w| w[1].at.duration_since(w[0].at).as_secs_f64())
        .collect();
    // Delay after the k-th failure (k from 0): 0.2 s * 2^k capped at
    // 0.8 s, randomised to between half and all of it. Slack for
    // scheduling on a loaded machine.
    for (k, gap) in gaps.iter().enumerate() {
        let nominal = (0.2 * 2f64.powi(k as i32)).min(0.8);
        assert!(
            *gap >= 0.5 * nominal - 0.05,
            "gap {k} is {gap:.3}s, below half the nominal {nominal}s; gaps {gaps:.3?}\n{}",
            describe(reqs)
        );
        assert!(
            *gap <= nominal + 0.35,
            "gap {k} is {gap:.3}s, above the nominal {nominal}s (+ slack); gaps {gaps:.3?}\n{}",
            describe(reqs)
        );
    }
    assert!(
        gaps[2..].iter().all(|g| *g > gaps[0]),
        "the gaps do not grow: {gaps:.3?}"
    );
    let m = a.metrics();
    assert!(requests(&m, "cp", "failure") >= N as f64, "{m}");
    assert_eq!(requests(&m, "cp", "success"), 0.0, "{m}");
    assert_eq!(pending(&m, "cp"), 1.0, "{m}");
}

// ---------------------------------------------------- config errors

/// `driftd run --config` with `tables` after a valid `[agent]`: must exit
/// 2 before starting, naming every problem in `needles`.
fn assert_config_rejected(d: &Dir, name: &str, tables: &str, needles: &[&str]) -> String {
    let cfg = d.write_outside(name, format!("[agent]\ndebounce = \"50ms\"\n\n{tables}"));
    let port = free_port();
    let o = driftd_run([
        "run".as_ref(),
        "--config".as_ref(),
        cfg.as_os_str(),
        "--root".as_ref(),
        d.root.as_os_str(),
        "--manifest".as_ref(),
        d.manifest.as_os_str(),
        "--allow-unsigned".as_ref(),
        "--state-dir".as_ref(),
        d.outside("state").as_os_str(),
        "--listen".as_ref(),
        format!("127.0.0.1:{port}").as_ref(),
    ]);
    o.assert_code(2);
    for n in needles {
        o.assert_stderr_contains(n);
    }
    assert!(
        !Path::new(&d.outside("state")).join("outbox").exists(),
        "a rejected config created an outbox"
    );
    o.stderr
}

#[test]
fn config_errors_are_all_reported_and_exit_2() {
    let d = baked("sig-config");
    let secret_file = Secret::raw().write(&d);
    let sf = secret_file.display().to_string();
    let missing_secret =
        "[[signal]]\ntype = \"webhook\"\nname = \"a\"\nurl = \"http://127.0.0.1:9/hook\"\n";
    let inline_secret = format!(
        "[[signal]]\ntype = \"webhook\"\nname = \"b\"\nurl = \"http://127.0.0.1:9/hook\"\n\
         secret_file = {}\nsecret = \"hunter2-inline\"\n",
        signal_util::lit(&sf)
    );
    // Named like the inline-secret webhook, which is otherwise complete.
    let duplicate = "[[signal]]\ntype = \"exec\"\nname = \"b\"\ncommand = [\"/bin/true\"]\n";
    let unknown = "[[signal]]\ntype = \"carrier-pigeon\"\nname = \"d\"\n";
    let e_missing = "signal[0].secret_file: required for a webhook";
    let e_inline = "signal[1].secret: unknown key";
    let e_dup = "signal[2].name: `b` is used twice";
    let e_unknown = "signal[3].type: unknown backend `carrier-pigeon`";

    // Each alone (a lone backend is signal[0]).
    let s = assert_config_rejected(&d, "missing.toml", missing_secret, &[e_missing]);
    assert!(s.contains("(1 error)"), "{s}");
    let s = assert_config_rejected(
        &d,
        "inline.toml",
        &inline_secret,
        &["signal[0].secret: unknown key"],
    );
    assert!(s.contains("(1 error)"), "{s}");
    assert!(
        !s.contains("hunter2-inline"),
        "an inline secret is echoed: {s}"
    );
    let s = assert_config_rejected(
        &d,
        "dup.toml",
        &format!("{duplicate}{duplicate}"),
        &["signal[1].name: `b` is used twice"],
    );
    assert!(s.contains("(1 error)"), "{s}");
    let s = assert_config_rejected(
        &d,
        "unknown.toml",
        unknown,
        &["signal[0].type: unknown backend `carrier-pigeon`"],
    );
    assert!(s.contains("(1 error)"), "{s}");

    // All at once: every one listed.
    let all = format!("{missing_secret}{inline_secret}{duplicate}{unknown}");
    let s = assert_config_rejected(
        &d,
        "all.toml",
        &all,
        &[e_missing, e_inline, e_dup, e_unknown],
    );
    assert!(s.contains("(4 errors)"), "{s}");
    assert!(
        !s.contains("hunter2-inline"),
        "an inline secret is echoed: {s}"
    );
}

/// Regression: the duplicate-name check in `config::parse_backends` only
/// compares with backends that parsed without error, so a name reused from
/// a broken backend is reported only after that backend is fixed (one run
/// no longer shows every problem).
#[test]
fn a_name_reused_from_a_backend_with_an_error_is_reported_too() {
    let d = baked("sig-config-dup");
    let broken =
        "[[signal]]\ntype = \"webhook\"\nname = \"a\"\nurl = \"http://127.0.0.1:9/hook\"\n";
    let again = "[[signal]]\ntype = \"exec\"\nname = \"a\"\ncommand = [\"/bin/true\"]\n";
    let s = assert_config_rejected(
        &d,
        "dup-of-broken.toml",
        &format!("{broken}{again}"),
        &[
            "signal[0].secret_file: required for a webhook",
            "signal[1].name: `a` is used twice",
        ],
    );
    assert!(s.contains("(2 errors)"), "{s}");
}

#[test]
fn an_unreadable_secret_file_stops_the_agent_at_start() {
    let d = baked("sig-nosecret");
    let missing = d.outside("no-such.secret");
    assert_config_rejected(
        &d,
        "agent.toml",
        &webhook("cp", "http://127.0.0.1:9/hook", &missing, ""),
        &["signal `cp`", &missing.display().to_string()],
    );
}

// ------------------------------------------------- unknown verdict and TLS

/// `[signals] on_unknown`: a verdict that stays unknown past the grace
/// period (here: the manifest is corrupt) is signalled once, as
/// `verdict.unknown`, with the reason.
#[test]
fn an_unknown_verdict_is_signalled_once_after_the_grace_period() {
    let d = baked("sig-unknown");
    std::fs::write(&d.manifest, b"not a manifest\n").unwrap();
    let rx = Receiver::start();
    let secret = Secret::whsec();
    let tables = format!(
        "[signals]\non_unknown = true\nunknown_grace = \"300ms\"\nretry_initial = \"200ms\"\n\n{}",
        webhook("cp", &rx.url("/hook"), &secret.write(&d), "")
    );
    let mut a = launch_with(&d, &tables).start();
    a.wait_ready();
    let reqs = rx.wait_requests(1, &a);
    let r = &reqs[0];
    verify_signature(&secret.key, r).unwrap_or_else(|e| panic!("{e}\n{}", describe(&reqs)));
    let body = r.json();
    assert_eq!(body["type"], "verdict.unknown", "{body}");
    assert_eq!(body["verdict"], "unknown", "{body}");
    assert_eq!(body["manifest_digest"], "none", "{body}");
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("invalid manifest"),
        "reason: {reason}\n{body}"
    );
    assert_eq!(r.webhook_id(), body["idempotency_key"].as_str().unwrap());
    // Still unknown, but the period was signalled: nothing more.
    let m = a.wait_metrics("one success", |m| requests(m, "cp", "success") == 1.0);
    assert_eq!(m.verdict("unknown"), 1.0, "{m}");
    // Absence takes a wait to show: five grace periods, during which a
    // second signal of the same unknown period would have gone out.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(rx.requests().len(), 1, "{}", describe(&rx.requests()));
}

/// TLS: a receiver with a certificate from a private CA is trusted only
/// through `ca_file`; without it the request fails (and is retried), never
/// sent in clear or without verification. The HTTPS receiver is Python's
/// http.server wrapped in its ssl module; the certificate is made with the
/// openssl command.
#[test]
fn webhook_tls_trusts_the_configured_ca_and_nothing_else() {
    let d = baked("sig-tls");
    let dir = d.base.join("tls");
    std::fs::create_dir_all(&dir).unwrap();
    // A private CA and a server certificate it signed (rustls, rightly,
    // refuses a CA certificate used as the server's own).
    let (ca, ca_key) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
    let (cert, key, csr) = (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("cert.csr"),
    );
    let ext = dir.join("ext.cnf");
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    let openssl = |args: &[&std::ffi::OsStr]| {
        let st = std::process::Command::new("openssl")
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("run openssl (package openssl)");
        assert!(st.success(), "openssl {args:?} failed");
    };
    let os = |s: &str| std::ffi::OsString::from(s);
    openssl(&[
        &os("req"),
        &os("-x509"),
        &os("-newkey"),
        &os("rsa:2048"),
        &os("-nodes"),
        &os("-days"),
        &os("2"),
        &os("-subj"),
        &os("/CN=driftd test CA"),
        &os("-keyout"),
        ca_key.as_os_str(),
        &os("-out"),
        ca.as_os_str(),
    ]);
    openssl(&[
        &os("req"),
        &os("-newkey"),
        &os("rsa:2048"),
        &os("-nodes"),
        &os("-subj"),
        &os("/CN=127.0.0.1"),
        &os("-keyout"),
        key.as_os_str(),
        &os("-out"),
        csr.as_os_str(),
    ]);
    openssl(&[
        &os("x509"),
        &os("-req"),
        &os("-in"),
        csr.as_os_str(),
        &os("-CA"),
        ca.as_os_str(),
        &os("-CAkey"),
        ca_key.as_os_str(),
        &os("-CAcreateserial"),
        &os("-days"),
        &os("2"),
        &os("-extfile"),
        ext.as_os_str(),
        &os("-out"),
        cert.as_os_str(),
    ]);
    let server = dir.join("server.py");
    std::fs::write(
        &server,
        r#"import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["content-length"]))
        with open(sys.argv[3], "a") as f:
            f.write(self.headers["webhook-id"] + "\n")
        self.send_response(200)
        self.end_headers()
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
s.socket = ctx.wrap_socket(s.socket, server_side=True)
print(s.server_address[1], flush=True)
s.serve_forever()
"#,
    )
    .unwrap();
    let got = dir.join("received");
    let mut child = std::process::Command::new("python3")
        .arg(&server)
        .arg(&cert)
        .arg(&key)
        .arg(&got)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start python3");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let _guard = Kill(child);
    let url = format!("https://127.0.0.1:{}/hook", line.trim());
    let secret = Secret::raw().write(&d);
    let tables = format!(
        "{}{}{}",
        signals_section("200ms", "400ms"),
        webhook(
            "with-ca",
            &url,
            &secret,
            &format!("ca_file = {}", signal_util::lit(&ca.display().to_string()))
        ),
        webhook("system-roots", &url, &secret, ""),
    );
    let mut a = start(&launch_with(&d, &tables), &["with-ca", "system-roots"]);
    d.append("/etc/passwd", b"tls\n");
    let m = a.wait_metrics("with-ca delivered, system-roots failing", |m| {
        requests(m, "with-ca", "success") == 1.0 && requests(m, "system-roots", "failure") >= 2.0
    });
    assert_eq!(requests(&m, "system-roots", "success"), 0.0, "{m}");
    assert_eq!(pending(&m, "system-roots"), 1.0, "{m}");
    let received = std::fs::read_to_string(&got).unwrap_or_default();
    assert_eq!(
        received.lines().count(),
        1,
        "only the verified request arrived: {received}"
    );
    let log = a.log_tail(400);
    assert!(
        log.contains("backend=\"system-roots\"") && log.contains("certificate"),
        "the failing backend and the certificate problem are in the log:\n{log}"
    );
}
