//! `driftd run`: the always-on agent, end to end. Every test starts the real
//! binary on its own temporary tree, port, state directory and notify
//! socket, and observes it only from outside: /metrics, /healthz, /status,
//! sd_notify messages, signals, exit status and /proc.
//!
//! Nothing sleeps to synchronise: every wait polls with a deadline
//! (`agent_util::WAIT`) and fails with the last scrape and the agent's log.

mod agent_util;
mod common;

use agent_util::{
    has_finding, has_line, pretty, status_findings, Agent, Launch, Metrics, Trust, MANIFEST_ERRORS,
    RESCAN_REASONS, SCAN_ERROR_REASONS_ALL, SCAN_KINDS, SCAN_RESULTS,
};
use common::{load_manifest, Dir, FINDING_KINDS};
use driftd::manifest::FileKind;
use serde_json::Value;
use std::time::{Duration, Instant};

/// A standard tree baked (unsigned, image id `image-1`) and checked clean.
fn baked(name: &str) -> Dir {
    let d = Dir::standard(name);
    d.bake_and_assert_clean(&["--image-id", "image-1"]);
    d
}

/// Start an agent on `d` with the default test config, wait for READY and
/// for the clean verdict.
fn start_clean(d: &Dir) -> Agent {
    let mut a = Launch::new(d).start();
    a.wait_ready();
    a.wait_metrics("verdict clean after the first full scan", |m| {
        m.verdict("clean") == 1.0
    });
    a
}

/// Number of directories in a manifest (what the agent watches).
fn manifest_dirs(d: &Dir) -> usize {
    d.manifest()
        .entries
        .iter()
        .filter(|e| e.kind == FileKind::Dir)
        .count()
}

fn state_json(a: &Agent) -> Value {
    let p = a.state_dir.join("state.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {p:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{p:?} is not JSON ({e}): {text}"))
}

/// Exactly one full rescan so far, the one at startup.
fn assert_only_the_startup_rescan(m: &Metrics) {
    for reason in RESCAN_REASONS {
        let want = if reason == "startup" { 1.0 } else { 0.0 };
        assert_eq!(
            m.rescans(reason),
            want,
            "rescans_total{{reason={reason}}}:\n{m}"
        );
    }
}

/// `driftd_drifted_entries` is 0 for every kind.
fn assert_no_drifted_entries(m: &Metrics) {
    for k in FINDING_KINDS {
        assert_eq!(m.drifted(k), 0.0, "drifted_entries{{kind={k}}}:\n{m}");
    }
}

/// `driftd_manifest_error` is 0 for every reason.
fn assert_no_manifest_error(m: &Metrics) {
    for reason in MANIFEST_ERRORS {
        assert_eq!(
            m.manifest_error(reason),
            0.0,
            "manifest_error{{{reason}}}:\n{m}"
        );
    }
}

// ------------------------------------------------------------ clean start

#[test]
fn clean_start_serves_clean_and_every_series_from_the_start() {
    let d = Dir::standard("agent-clean");
    // 8 MiB read at 2 MiB/s: the first full scan takes about 4 s, so the
    // first scrape sees the agent before its first verdict.
    let big = d.path("/srv/big.bin");
    std::fs::File::create(&big)
        .and_then(|f| f.set_len(8 << 20))
        .unwrap_or_else(|e| panic!("create {big:?}: {e}"));
    d.bake_and_assert_clean(&["--image-id", "image-1"]);
    let manifest = load_manifest(&d.manifest);
    let digest = manifest.digest_string();
    let mut a = Launch::new(&d).set_str("read_rate_limit", "2MiB").start();

    // Before the first full scan completes: unknown, every series at 0.
    let m = a.metrics();
    let early_status = a.status();
    assert_eq!(
        m.scans_of_kind("full"),
        0.0,
        "precondition: the first scrape must come before the first (paced) full scan ends:\n{m}"
    );
    assert_eq!(
        m.verdict("unknown"),
        1.0,
        "unknown until the first full scan:\n{m}"
    );
    assert_eq!(m.verdict("clean"), 0.0, "{m}");
    assert_eq!(m.verdict("drifted"), 0.0, "{m}");
    assert_eq!(m.v("driftd_drift_detected"), 0.0, "{m}");
    assert_eq!(m.v("driftd_manifest_valid"), 1.0, "{m}");
    assert_no_drifted_entries(&m);
    for kind in SCAN_KINDS {
        for result in SCAN_RESULTS {
            assert_eq!(
                m.scans(kind, result),
                0.0,
                "scans_total{{{kind},{result}}}:\n{m}"
            );
        }
    }
    assert_only_the_startup_rescan(&m);
    assert_no_manifest_error(&m);
    for reason in SCAN_ERROR_REASONS_ALL {
        assert_eq!(
            m.val("driftd_scan_errors_total", &[("reason", reason)]),
            0.0,
            "{m}"
        );
    }
    for name in [
        "driftd_fs_events_total",
        "driftd_fs_events_dropped_total",
        "driftd_watch_failures_total",
        "driftd_first_detection_timestamp_seconds",
        "driftd_last_full_scan_success_timestamp_seconds",
        "driftd_hashed_bytes_total",
    ] {
        assert_eq!(m.v(name), 0.0, "{name}:\n{m}");
    }
    assert_eq!(
        a.healthz(),
        (503, "unknown".into()),
        "before the first verdict"
    );
    assert_eq!(
        early_status["verdict"],
        "unknown",
        "{}",
        pretty(&early_status)
    );
    assert_eq!(
        early_status["full_scan_done"],
        false,
        "{}",
        pretty(&early_status)
    );
    // Ready (serving) before the scan ends, so a long first scan cannot
    // time out the start; the verdict follows on the STATUS= line.
    let v = a.wait_notify("READY=1", |v| v.iter().any(|(_, n)| has_line(n, "READY=1")));
    assert!(
        v.iter().all(|(_, n)| !n.contains("STATUS=verdict clean")),
        "a verdict before the first full scan ended: {v:?}"
    );

    // After the first full scan: clean.
    a.wait_ready();
    let m = a.wait_metrics("verdict clean", |m| m.verdict("clean") == 1.0);
    assert_eq!(m.verdict("drifted"), 0.0, "{m}");
    assert_eq!(m.verdict("unknown"), 0.0, "{m}");
    assert_eq!(m.v("driftd_drift_detected"), 0.0, "{m}");
    assert_eq!(m.v("driftd_manifest_valid"), 1.0, "{m}");
    assert_eq!(
        m.val(
            "driftd_manifest_info",
            &[("image_id", "image-1"), ("digest", &digest)]
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        m.v("driftd_manifest_entries"),
        manifest.entries.len() as f64,
        "{m}"
    );
    assert_eq!(m.v("driftd_watches"), manifest_dirs(&d) as f64, "{m}");
    assert_no_drifted_entries(&m);
    for kind in SCAN_KINDS {
        for result in SCAN_RESULTS {
            let want = if (kind, result) == ("full", "clean") {
                1.0
            } else {
                0.0
            };
            assert_eq!(
                m.scans(kind, result),
                want,
                "scans_total{{kind={kind},result={result}}}:\n{m}"
            );
        }
    }
    assert_only_the_startup_rescan(&m);
    assert_no_manifest_error(&m);
    assert_eq!(
        m.v("driftd_fs_events_total"),
        0.0,
        "the agent's own reads are no events:\n{m}"
    );
    assert_eq!(m.v("driftd_fs_events_dropped_total"), 0.0, "{m}");
    assert_eq!(m.v("driftd_watch_failures_total"), 0.0, "{m}");
    assert_eq!(m.v("driftd_first_detection_timestamp_seconds"), 0.0, "{m}");
    assert!(
        m.v("driftd_hashed_bytes_total") >= (8 << 20) as f64,
        "the big file was hashed:\n{m}"
    );
    assert!(
        m.v("driftd_last_full_scan_success_timestamp_seconds") > 1.6e9,
        "{m}"
    );
    assert_eq!(a.healthz(), (200, "clean".into()));

    let s = a.status();
    let ctx = pretty(&s);
    assert_eq!(s["schema"], "driftd.status.v1", "{ctx}");
    assert_eq!(s["verdict"], "clean", "{ctx}");
    assert_eq!(s["reason"], Value::Null, "{ctx}");
    assert_eq!(s["drift_detected"], false, "{ctx}");
    assert_eq!(s["first_detected"], Value::Null, "{ctx}");
    assert_eq!(s["full_scan_done"], true, "{ctx}");
    assert_eq!(s["findings_total"], 0, "{ctx}");
    assert_eq!(s["findings"], serde_json::json!([]), "{ctx}");
    assert_eq!(s["manifest"]["digest"], digest.as_str(), "{ctx}");
    assert_eq!(s["manifest"]["image_id"], "image-1", "{ctx}");
    assert_eq!(s["manifest"]["entries"], manifest.entries.len(), "{ctx}");
    assert_eq!(s["manifest"]["signed"], false, "{ctx}");
    assert_eq!(s["manifest"]["signature_verified"], false, "{ctx}");
    for k in FINDING_KINDS {
        assert_eq!(s["counts"][k], 0, "counts.{k}: {ctx}");
    }
}

// ------------------------------------------------------ tamper detection

#[test]
fn inotify_finds_every_kind_of_tamper_without_a_rescan() {
    let d = baked("agent-tamper");
    let mut a = start_clean(&d);

    // Content.
    d.append("/etc/passwd", b"evil:x:0:0::/:/bin/sh\n");
    let m = a.wait_drifted();
    assert_eq!(m.verdict("drifted"), 1.0, "{m}");
    assert_eq!(m.verdict("clean"), 0.0, "{m}");
    assert_eq!(m.drifted("modified"), 1.0, "{m}");
    assert!(m.v("driftd_fs_events_total") >= 1.0, "{m}");
    assert!(
        m.v("driftd_first_detection_timestamp_seconds") > 1.6e9,
        "{m}"
    );
    assert_eq!(a.healthz(), (503, "drifted".into()));
    let s = a.status();
    assert!(has_finding(&s, "/etc/passwd", "modified"), "{}", pretty(&s));
    assert_eq!(s["verdict"], "drifted", "{}", pretty(&s));
    assert_eq!(s["drift_detected"], true, "{}", pretty(&s));
    assert!(s["first_detected"].is_string(), "{}", pretty(&s));

    // Metadata.
    d.chmod("/usr/lib/libx.so", 0o600);
    a.wait_status("/usr/lib/libx.so metadata", |s| {
        has_finding(s, "/usr/lib/libx.so", "metadata")
    });

    // A new file.
    d.write("/srv/share/new.conf", "x\n");
    a.wait_status("/srv/share/new.conf added", |s| {
        has_finding(s, "/srv/share/new.conf", "added")
    });

    // A removed file.
    std::fs::remove_file(d.path("/var/lib/app/data")).expect("remove /var/lib/app/data");
    a.wait_status("/var/lib/app/data removed", |s| {
        has_finding(s, "/var/lib/app/data", "removed")
    });

    // A new directory is watched too: a file created in it later is seen.
    d.mkdir("/srv/fresh");
    a.wait_status("/srv/fresh added", |s| {
        has_finding(s, "/srv/fresh", "added")
    });
    d.write("/srv/fresh/inner", "inner\n");
    let s = a.wait_status("/srv/fresh/inner added", |s| {
        has_finding(s, "/srv/fresh/inner", "added")
    });

    // All of it was found by events: no full scan after the first.
    let m = a.metrics();
    assert_eq!(m.scans_of_kind("full"), 1.0, "only the startup scan:\n{m}");
    assert_only_the_startup_rescan(&m);
    assert!(m.scans_of_kind("targeted") >= 5.0, "{m}");
    assert_eq!(m.v("driftd_fs_events_dropped_total"), 0.0, "{m}");
    assert_eq!(m.v("driftd_watch_failures_total"), 0.0, "{m}");
    assert_eq!(
        m.v("driftd_watches"),
        (manifest_dirs(&d) + 1) as f64,
        "the new directory is watched:\n{m}"
    );
    // Metrics and /status agree with each other and with what was done.
    let mut want = vec![
        ("/etc/passwd".to_string(), "modified".to_string()),
        ("/srv/fresh".into(), "added".into()),
        ("/srv/fresh/inner".into(), "added".into()),
        ("/srv/share/new.conf".into(), "added".into()),
        ("/usr/lib/libx.so".into(), "metadata".into()),
        ("/var/lib/app/data".into(), "removed".into()),
    ];
    want.sort();
    let mut got = status_findings(&s);
    got.sort();
    assert_eq!(got, want, "{}", pretty(&s));
    let m = a.metrics();
    for k in FINDING_KINDS {
        let n = want.iter().filter(|(_, kind)| kind == k).count();
        assert_eq!(m.drifted(k), n as f64, "drifted_entries{{kind={k}}}:\n{m}");
        assert_eq!(s["counts"][k], n, "counts.{k}: {}", pretty(&s));
    }
    assert_eq!(s["findings_total"], want.len(), "{}", pretty(&s));
}

#[test]
fn drift_reverted_before_confirmation_is_not_declared() {
    let d = baked("agent-transient");
    // A long confirmation delay: the change is undone before it.
    let mut a = Launch::new(&d).set_str("confirm_delay", "3s").start();
    a.wait_ready();
    a.wait_metrics("clean", |m| m.verdict("clean") == 1.0);
    let original = d.read("/etc/passwd");
    d.append("/etc/passwd", b"transient\n");
    let s = a.wait_status("/etc/passwd modified, awaiting confirmation", |s| {
        has_finding(s, "/etc/passwd", "modified")
    });
    // Seen but not confirmed: not clean, not (yet) drifted.
    assert_eq!(s["verdict"], "unknown", "{}", pretty(&s));
    assert_eq!(s["drift_detected"], false, "{}", pretty(&s));
    let m = a.metrics();
    assert_eq!(m.v("driftd_drift_detected"), 0.0, "{m}");
    assert_eq!(m.verdict("unknown"), 1.0, "{m}");
    assert_eq!(m.drifted("modified"), 1.0, "{m}");
    assert_eq!(a.healthz(), (503, "unknown".into()));
    d.rewrite("/etc/passwd", &original);
    // Re-checked after the revert, then the confirmation read: three
    // targeted checks in all.
    let m = a.wait_metrics("the confirmation re-check", |m| {
        m.scans_of_kind("targeted") >= 3.0
    });
    assert_eq!(
        m.v("driftd_drift_detected"),
        0.0,
        "not confirmed, not declared:\n{m}"
    );
    assert_eq!(m.verdict("clean"), 1.0, "{m}");
    assert_eq!(m.v("driftd_first_detection_timestamp_seconds"), 0.0, "{m}");
    assert_eq!(a.healthz(), (200, "clean".into()));
    assert!(
        !a.state_dir.join("state.json").exists() || state_json(&a)["declared"] == Value::Null,
        "nothing declared in the state file"
    );
}

#[test]
fn status_lists_at_most_the_findings_limit() {
    let d = baked("agent-limit");
    let mut a = Launch::new(&d).set("status_findings_limit", "2").start();
    a.wait_ready();
    a.wait_metrics("clean", |m| m.verdict("clean") == 1.0);
    for i in 0..5 {
        d.write(format!("/srv/share/n{i}"), "x\n");
    }
    let s = a.wait_status("5 added", |s| s["counts"]["added"] == 5);
    assert_eq!(s["findings_total"], 5, "{}", pretty(&s));
    assert_eq!(s["findings_limit"], 2, "{}", pretty(&s));
    assert_eq!(
        status_findings(&s),
        vec![
            ("/srv/share/n0".to_string(), "added".to_string()),
            ("/srv/share/n1".into(), "added".into())
        ],
        "the first two by path: {}",
        pretty(&s)
    );
    let m = a.metrics();
    assert_eq!(m.drifted("added"), 5.0, "counts are complete:\n{m}");
}

#[test]
fn recreated_directory_is_watched_again() {
    // `rm -r dir; mkdir dir` drops the kernel's watch on it: the agent
    // must watch the new directory, or files added to it are never seen
    // by events.
    let d = baked("agent-recreate");
    let mut a = start_clean(&d);
    std::fs::remove_dir(d.path("/srv/share")).expect("rmdir /srv/share");
    d.mkdir("/srv/share");
    a.wait_metrics("the re-check of /srv/share, clean again", |m| {
        m.scans_of_kind("targeted") >= 1.0 && m.verdict("clean") == 1.0
    });
    d.write("/srv/share/evil", "x\n");
    let s = a.wait_status(
        "/srv/share/evil added (seen by events; the watch on the re-created \
         /srv/share was lost: a watch is re-added only for directories reported added, \
         and Watch::add skips a path still in by_path after the kernel dropped its watch)",
        |s| has_finding(s, "/srv/share/evil", "added"),
    );
    assert_ne!(s["verdict"], "clean", "{}", pretty(&s));
    let m = a.metrics();
    assert_eq!(m.scans_of_kind("full"), 1.0, "found without a rescan:\n{m}");
}

#[test]
fn unusable_manifest_after_reload_does_not_spin_on_events() {
    // Events still arrive while the manifest is unusable; with nothing to
    // check them against they must not keep the agent busy.
    let d = baked("agent-broken-reload");
    let mut a = start_clean(&d);
    std::fs::write(&d.manifest, b"garbage\n").expect("break the manifest");
    a.sighup();
    a.wait_metrics("manifest_error{corrupt} after SIGHUP", |m| {
        m.manifest_error("corrupt") == 1.0 && m.verdict("unknown") == 1.0
    });
    assert_eq!(a.healthz(), (503, "unknown".into()));
    d.write("/etc/new", "x\n");
    a.wait_metrics("the event received", |m| {
        m.v("driftd_fs_events_total") >= 1.0
    });
    let cpu0 = a.cpu_ticks(None);
    let t0 = Instant::now();
    // Measure (not synchronise): two seconds after the event.
    std::thread::sleep(Duration::from_secs(2));
    let used_ms = (a.cpu_ticks(None) - cpu0) * 10;
    let wall = t0.elapsed();
    a.assert_running();
    let m = a.metrics();
    assert!(
        used_ms < 100,
        "with an unusable manifest, one filesystem event made the agent use {used_ms} ms of \
         CPU in {wall:?} (busy loop: start_jobs returns before taking the debounced batch, \
         so the expired debounce deadline wakes the loop at once, forever)\n{m}"
    );
}

// -------------------------------------------------------------- stickiness

#[test]
fn reverting_the_change_does_not_clear_drift() {
    let d = baked("agent-revert");
    let mut a = start_clean(&d);
    let original = d.read("/etc/passwd");
    let mode = d.mode("/etc/passwd");

    d.append("/etc/passwd", b"evil\n");
    d.chmod("/etc/passwd", 0o666);
    let m = a.wait_drifted();
    let first = m.v("driftd_first_detection_timestamp_seconds");
    assert!(first > 1.6e9, "{m}");

    // Restore the bytes and the mode, then force a full rescan.
    d.rewrite("/etc/passwd", &original);
    d.chmod("/etc/passwd", mode);
    common::check_json(&d.manifest, &d.root, &["--allow-unsigned"]).assert_clean();
    let full_before = m.scans_of_kind("full");
    a.sighup();
    let m = a.wait_metrics("a SIGHUP rescan that completed", |m| {
        m.rescans("sighup") == 1.0 && m.scans_of_kind("full") >= full_before + 1.0
    });
    let s = a.wait_status("the rescan's result in /status", |s| {
        s["full_scan_running"] == false && s["findings_total"] == 0
    });
    assert_eq!(
        m.scans("full", "clean"),
        full_before + 1.0,
        "the tree is clean again:\n{m}"
    );
    assert_eq!(m.v("driftd_drift_detected"), 1.0, "drift is sticky:\n{m}");
    assert_eq!(m.verdict("drifted"), 1.0, "{m}");
    assert_same_time(
        m.v("driftd_first_detection_timestamp_seconds"),
        first,
        &format!("the first detection time is kept:\n{m}"),
    );
    assert_eq!(a.healthz(), (503, "drifted".into()));
    assert_eq!(s["verdict"], "drifted", "{}", pretty(&s));
    assert_eq!(s["drift_detected"], true, "{}", pretty(&s));
    let record = s["drift_record"].to_string();
    assert!(
        record.contains("/etc/passwd"),
        "drift_record keeps what confirmed the drift: {}",
        pretty(&s)
    );
}

#[test]
fn restart_keeps_drifted_until_a_new_manifest() {
    let d = baked("agent-restart");
    let state = d.outside("state");
    let digest = d.manifest().digest_string();
    let mut a = start_clean(&d);
    let original = d.read("/usr/bin/tool");
    d.append("/usr/bin/tool", b"\n# backdoor\n");
    let m = a.wait_drifted();
    let first = m.v("driftd_first_detection_timestamp_seconds");
    let (st, took) = a.terminate(Duration::from_secs(5));
    assert_eq!(
        st.code(),
        Some(0),
        "SIGTERM exits 0 ({st}, after {took:?})\n{}",
        a.log_tail(20)
    );
    let sj = state_json(&a);
    assert_eq!(
        sj["declared"]["manifest_digest"],
        digest.as_str(),
        "{}",
        pretty(&sj)
    );
    drop(a);

    // Restore the file: the host stays drifted across a restart.
    d.rewrite("/usr/bin/tool", &original);
    common::check_json(&d.manifest, &d.root, &["--allow-unsigned"]).assert_clean();
    let mut a = Launch::new(&d).state_dir(&state).start();
    let early = a.metrics();
    assert_eq!(
        early.verdict("clean"),
        0.0,
        "a restarted drifted host never reports clean:\n{early}"
    );
    a.wait_ready();
    let m = a.metrics();
    assert_eq!(
        m.v("driftd_drift_detected"),
        1.0,
        "first scrape after READY:\n{m}"
    );
    assert_eq!(m.verdict("drifted"), 1.0, "{m}");
    assert_same_time(
        m.v("driftd_first_detection_timestamp_seconds"),
        first,
        &format!("first detection time survives the restart:\n{m}"),
    );
    assert_eq!(
        m.scans("full", "clean"),
        1.0,
        "the tree itself is clean:\n{m}"
    );
    assert_eq!(a.healthz(), (503, "drifted".into()));
    let s = a.status();
    assert_eq!(s["drift_detected"], true, "{}", pretty(&s));
    assert_same_time(
        s["first_detected_unix"].as_f64().unwrap_or(0.0),
        first,
        &pretty(&s),
    );
    assert!(
        s["drift_record"].to_string().contains("/usr/bin/tool"),
        "{}",
        pretty(&s)
    );
    let (st, _) = a.terminate(Duration::from_secs(5));
    assert_eq!(st.code(), Some(0), "{}", a.log_tail(20));
    drop(a);

    // A new image (another digest) starts clean.
    d.bake(&["--image-id", "image-2"]);
    let new_digest = d.manifest().digest_string();
    assert_ne!(new_digest, digest, "precondition: another digest");
    let mut a = Launch::new(&d).state_dir(&state).start();
    a.wait_ready();
    let m = a.wait_metrics("clean with the new manifest", |m| m.verdict("clean") == 1.0);
    assert_eq!(m.v("driftd_drift_detected"), 0.0, "{m}");
    assert_eq!(m.v("driftd_first_detection_timestamp_seconds"), 0.0, "{m}");
    assert_eq!(a.healthz(), (200, "clean".into()));
    let sj = state_json(&a);
    assert_eq!(
        sj["declared"],
        Value::Null,
        "the old episode is reset: {}",
        pretty(&sj)
    );
}

/// The same first detection time, give or take a microsecond: the exact
/// value is checked by `recorded_first_detection_time_is_reported_exactly`
/// (the state file does not round-trip it exactly, see there).
fn assert_same_time(got: f64, want: f64, ctx: &str) {
    assert!(
        (got - want).abs() < 1e-6,
        "first detection time {got} differs from {want}\n{ctx}"
    );
}

/// The first detection time survives restarts to the bit. This timestamp
/// is one whose shortest decimal form serde_json (without its
/// `float_roundtrip` feature) parses one ULP off: about one timestamp in
/// eight is like that, so a real episode hits it often.
#[test]
fn recorded_first_detection_time_is_reported_exactly() {
    let d = baked("agent-exact-time");
    let digest = d.manifest().digest_string();
    let recorded = "1764116755.5652559";
    let want: f64 = recorded.parse().expect("a float");
    assert_eq!(format!("{want}"), recorded, "precondition: shortest form");
    let state = d.outside("state");
    std::fs::create_dir_all(&state).expect("mkdir state");
    std::fs::write(
        state.join("state.json"),
        format!(
            r#"{{"schema":"driftd.state.v1","declared":{{"manifest_digest":"{digest}","image_id":"image-1","first_detected_unix":{recorded},"findings_total":1,"findings":[{{"path":"/etc/passwd","kind":"modified","attributes":["content"]}}]}}}}"#
        ),
    )
    .expect("write state.json");
    let mut a = Launch::new(&d).start();
    a.wait_ready();
    let m = a.metrics();
    assert_eq!(
        m.v("driftd_drift_detected"),
        1.0,
        "the recorded episode is restored:\n{m}"
    );
    let (_, body) = a.get("/status").expect("GET /status");
    let got = m.v("driftd_first_detection_timestamp_seconds");
    assert!(
        got == want && body.contains(&format!("\"first_detected_unix\":{recorded}")),
        "state.json records first_detected_unix {recorded}; the agent reports {got} in \
         /metrics and this in /status:\n{body}\n(StateStore::load parses it with serde_json, \
         which without the float_roundtrip feature can be one ULP off)"
    );
}

#[test]
fn sighup_with_a_new_manifest_starts_clean() {
    let d = baked("agent-hup-new");
    let mut a = start_clean(&d);
    d.append("/etc/ssh/sshd_config", b"PermitRootLogin yes\n");
    a.wait_drifted();
    // The new image includes the change.
    d.bake(&["--image-id", "image-2"]);
    let digest = d.manifest().digest_string();
    a.sighup();
    let m = a.wait_metrics("clean after reloading a new manifest", |m| {
        m.verdict("clean") == 1.0
    });
    assert_eq!(m.v("driftd_drift_detected"), 0.0, "{m}");
    assert_eq!(m.rescans("manifest_changed"), 1.0, "{m}");
    assert_eq!(m.rescans("sighup"), 0.0, "{m}");
    assert_eq!(
        m.val(
            "driftd_manifest_info",
            &[("image_id", "image-2"), ("digest", &digest)]
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        m.family("driftd_manifest_info").len(),
        1,
        "only the new manifest is listed:\n{m}"
    );
    assert_eq!(a.healthz(), (200, "clean".into()));
    assert_eq!(state_json(&a)["declared"], Value::Null);
}

// ---------------------------------------------------------- bad manifests

/// The agent is up, says unknown for `reason`, scans nothing and keeps
/// answering.
fn assert_unusable(a: &mut Agent, reason: &str, reason_text: &[&str]) {
    a.wait_ready();
    let m = a.wait_metrics(&format!("manifest_error{{reason={reason}}} 1"), |m| {
        m.manifest_error(reason) == 1.0
    });
    for r in MANIFEST_ERRORS {
        let want = if r == reason { 1.0 } else { 0.0 };
        assert_eq!(
            m.manifest_error(r),
            want,
            "manifest_error{{reason={r}}}:\n{m}"
        );
    }
    assert_eq!(m.v("driftd_manifest_valid"), 0.0, "{m}");
    assert_eq!(m.verdict("unknown"), 1.0, "{m}");
    assert_eq!(m.the_verdict(), "unknown", "{m}");
    assert_eq!(m.v("driftd_drift_detected"), 0.0, "{m}");
    assert_eq!(m.v("driftd_manifest_entries"), 0.0, "{m}");
    assert!(m.family("driftd_manifest_info").is_empty(), "{m}");
    for kind in SCAN_KINDS {
        assert_eq!(m.scans_of_kind(kind), 0.0, "nothing to scan with:\n{m}");
    }
    assert_eq!(a.healthz(), (503, "unknown".into()));
    let s = a.status();
    assert_eq!(s["verdict"], "unknown", "{}", pretty(&s));
    let text = s["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("no reason: {}", pretty(&s)));
    for needle in reason_text {
        assert!(
            text.contains(needle),
            "reason lacks {needle:?}: {}",
            pretty(&s)
        );
    }
    // `systemctl status` says the same on its Status: line.
    let status = format!("STATUS=verdict unknown: {text}");
    assert!(
        a.notify.all().iter().any(|(_, n)| has_line(n, &status)),
        "no {status:?} in {:?}",
        a.notify.all()
    );
    // It keeps running and serving.
    for _ in 0..5 {
        a.assert_running();
        let again = a.metrics();
        assert_eq!(again.manifest_error(reason), 1.0, "{again}");
        std::thread::sleep(agent_util::POLL);
    }
    a.assert_running();
}

#[test]
fn missing_manifest_is_unknown_and_recovers_on_sighup() {
    let d = Dir::standard("agent-missing");
    let mut a = Launch::new(&d).start();
    let path = d.manifest.display().to_string();
    assert_unusable(&mut a, "missing", &[&path]);
    // Install it and reload: the agent recovers without a restart.
    d.bake(&[]);
    a.sighup();
    let m = a.wait_metrics("clean once the manifest exists", |m| {
        m.verdict("clean") == 1.0
    });
    assert_eq!(m.v("driftd_manifest_valid"), 1.0, "{m}");
    for r in MANIFEST_ERRORS {
        assert_eq!(m.manifest_error(r), 0.0, "{m}");
    }
    assert_eq!(m.rescans("sighup"), 1.0, "{m}");
    assert_eq!(m.v("driftd_watches"), manifest_dirs(&d) as f64, "{m}");
    assert_eq!(a.healthz(), (200, "clean".into()));
    assert_eq!(a.status()["reason"], Value::Null);
}

#[test]
fn corrupt_manifest_is_unknown() {
    let d = baked("agent-corrupt");
    let mut bytes = std::fs::read(&d.manifest).expect("read the manifest");
    let mid = bytes.len() / 2;
    bytes.truncate(mid);
    std::fs::write(&d.manifest, &bytes).expect("truncate the manifest");
    let mut a = Launch::new(&d).start();
    let path = d.manifest.display().to_string();
    assert_unusable(&mut a, "corrupt", &[&path]);
}

#[test]
fn garbage_manifest_is_unknown() {
    let d = Dir::standard("agent-garbage");
    std::fs::write(&d.manifest, b"this is not a manifest\n").expect("write garbage");
    let mut a = Launch::new(&d).start();
    assert_unusable(&mut a, "corrupt", &[]);
}

#[test]
fn manifest_signed_with_another_key_is_unknown() {
    let d = Dir::standard("agent-wrongkey");
    let (sec_a, _pub_a) = d.keygen("a");
    let (_sec_b, pub_b) = d.keygen("b");
    d.bake_signed(&sec_a);
    let mut a = Launch::new(&d).trust(Trust::Key(pub_b)).start();
    assert_unusable(&mut a, "signature", &[]);
}

#[test]
fn unsigned_manifest_with_a_trusted_key_is_unknown() {
    let d = Dir::standard("agent-unsigned");
    let (_sec, public) = d.keygen("k");
    d.bake(&[]);
    let mut a = Launch::new(&d).trust(Trust::Key(public)).start();
    assert_unusable(&mut a, "signature", &[]);
}

#[test]
fn manifest_signed_with_the_trusted_key_is_verified() {
    let d = Dir::standard("agent-signed");
    let (sec, public) = d.keygen("k");
    d.bake_signed(&sec);
    let mut a = Launch::new(&d).trust(Trust::Key(public)).start();
    a.wait_ready();
    let m = a.wait_metrics("clean", |m| m.verdict("clean") == 1.0);
    assert_eq!(m.v("driftd_manifest_valid"), 1.0, "{m}");
    let s = a.status();
    assert_eq!(s["manifest"]["signed"], true, "{}", pretty(&s));
    assert_eq!(s["manifest"]["signature_verified"], true, "{}", pretty(&s));
}

// ---------------------------------------------------------------- signals

#[test]
fn sigterm_mid_scan_stops_within_seconds() {
    let d = Dir::new("agent-midscan");
    d.write("/etc/a", "a\n");
    let big = d.path("/data/big.bin");
    std::fs::create_dir_all(big.parent().expect("parent")).expect("mkdir /data");
    // 64 MiB at 1 MiB/s: the first full scan would take a minute.
    std::fs::File::create(&big)
        .and_then(|f| f.set_len(64 << 20))
        .unwrap_or_else(|e| panic!("create {big:?}: {e}"));
    d.bake(&[]);
    let mut a = Launch::new(&d).set_str("read_rate_limit", "1MiB").start();
    // The first full scan is reading the big file.
    agent_util::wait_file_open(a.pid, &big, true);
    let s = a.status();
    assert_eq!(s["full_scan_done"], false, "{}", pretty(&s));
    let m = a.metrics();
    assert_eq!(
        m.scans_of_kind("full"),
        0.0,
        "the scan is still running:\n{m}"
    );
    let (st, took) = a.terminate(Duration::from_secs(5));
    assert_eq!(
        st.code(),
        Some(0),
        "exit status after SIGTERM mid-scan ({st})\n{}",
        a.log_tail(20)
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    a.wait_notify("STOPPING=1", |v| {
        v.iter().any(|(_, n)| has_line(n, "STOPPING=1"))
    });
    assert!(
        !a.log_text().contains("full scan done"),
        "the scan must have been interrupted, not finished:\n{}",
        a.log_text()
    );
}

#[test]
fn sigint_stops_cleanly() {
    let d = baked("agent-sigint");
    let mut a = start_clean(&d);
    a.signal(rustix::process::Signal::INT);
    let deadline = Instant::now() + Duration::from_secs(5);
    let st = loop {
        if let Some(st) = a.poll_exit() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "no exit within 5 s of SIGINT\n{}",
            a.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(st.code(), Some(0), "{st}\n{}", a.log_tail(20));
}

#[test]
fn status_shows_a_running_full_scan() {
    let d = Dir::new("agent-running");
    let big = d.path("/data/big.bin");
    std::fs::create_dir_all(big.parent().expect("parent")).expect("mkdir /data");
    // 64 MiB at 1 MiB/s: the first full scan runs for a minute.
    std::fs::File::create(&big)
        .and_then(|f| f.set_len(64 << 20))
        .unwrap_or_else(|e| panic!("create {big:?}: {e}"));
    d.bake(&[]);
    let mut a = Launch::new(&d).set_str("read_rate_limit", "1MiB").start();
    agent_util::wait_file_open(a.pid, &big, true);
    let s = a.wait_status("/status full_scan_running true while the scan reads", |s| {
        s["full_scan_running"] == true
    });
    assert_eq!(s["full_scan_done"], false, "{}", pretty(&s));
    assert_eq!(s["verdict"], "unknown", "{}", pretty(&s));
}

// ---------------------------------------------------------------- systemd

fn watchdog_pings(v: &[(Instant, String)]) -> Vec<Instant> {
    v.iter()
        .filter(|(_, n)| has_line(n, "WATCHDOG=1"))
        .map(|(t, _)| *t)
        .collect()
}

#[test]
fn sd_notify_ready_watchdog_stopping() {
    let d = baked("agent-notify");
    let mut a = Launch::new(&d)
        .env("WATCHDOG_USEC", "400000")
        .watchdog_pid_self()
        .start();
    let v = a.wait_notify("READY=1", |v| v.iter().any(|(_, n)| has_line(n, "READY=1")));
    let ready = v
        .iter()
        .find(|(_, n)| has_line(n, "READY=1"))
        .expect("READY=1");
    let ready_at = ready.0;
    // The verdict follows on systemd's STATUS= line once the scan ends.
    a.wait_notify("STATUS=verdict clean", |v| {
        v.iter()
            .any(|(t, n)| *t >= ready_at && has_line(n, "STATUS=verdict clean"))
    });
    let v = a.wait_notify("two WATCHDOG=1 after READY", |v| {
        watchdog_pings(v).iter().filter(|t| **t > ready_at).count() >= 2
    });
    let pings = watchdog_pings(&v);
    for w in pings.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap >= Duration::from_millis(100),
            "pings every WATCHDOG_USEC/2 = 200 ms, not in a storm: gap {gap:?} in {v:?}"
        );
        assert!(
            gap < Duration::from_millis(400),
            "a gap of WATCHDOG_USEC (400 ms) or more gets the service killed: {gap:?} in {v:?}"
        );
    }
    assert!(
        a.notify
            .all()
            .iter()
            .all(|(_, n)| !has_line(n, "STOPPING=1")),
        "STOPPING=1 before SIGTERM"
    );
    let (st, _) = a.terminate(Duration::from_secs(5));
    assert_eq!(st.code(), Some(0), "{st}\n{}", a.log_tail(20));
    a.wait_notify("STOPPING=1", |v| {
        v.iter().any(|(_, n)| has_line(n, "STOPPING=1"))
    });
}

#[test]
fn no_watchdog_pings_when_watchdog_pid_is_another_process() {
    let d = baked("agent-notify-other");
    let mut a = Launch::new(&d)
        .env("WATCHDOG_USEC", "200000")
        .env("WATCHDOG_PID", "1")
        .start();
    a.wait_ready();
    // Measure (not synchronise): ten watchdog periods without a ping.
    std::thread::sleep(Duration::from_secs(1));
    let v = a.notify.all();
    assert!(
        watchdog_pings(&v).is_empty(),
        "WATCHDOG_PID names another process: no pings expected, got {v:?}"
    );
}

// ------------------------------------------------------------------- idle

#[test]
fn idle_means_idle() {
    let d = baked("agent-idle");
    let a = start_clean(&d);
    let before = a.metrics();
    let cpu0 = a.cpu_ticks(None);
    let t0 = Instant::now();
    // Measure (not synchronise): three seconds of nothing happening.
    std::thread::sleep(Duration::from_secs(3));
    let cpu1 = a.cpu_ticks(None);
    let wall = t0.elapsed();
    // Scrapes generate no filesystem events and no scans.
    let mut last = before.clone();
    for _ in 0..5 {
        last = a.metrics();
        assert_eq!(last.scans_of_kind("targeted"), 0.0, "{last}");
        assert_eq!(last.v("driftd_fs_events_total"), 0.0, "{last}");
        std::thread::sleep(agent_util::POLL);
    }
    let _ = a.status();
    let _ = a.healthz();
    let last2 = a.metrics();
    for m in [&before, &last, &last2] {
        assert_eq!(m.scans_of_kind("targeted"), 0.0, "{m}");
        assert_eq!(m.scans_of_kind("full"), 1.0, "{m}");
        assert_eq!(m.v("driftd_fs_events_total"), 0.0, "{m}");
        assert_eq!(m.v("driftd_fs_events_dropped_total"), 0.0, "{m}");
        assert_eq!(m.verdict("clean"), 1.0, "{m}");
    }
    let used_ms = (cpu1 - cpu0) * 10;
    assert!(
        used_ms < 100,
        "an idle agent used {used_ms} ms of CPU in {wall:?} (busy loop?)\n{}",
        a.log_tail(20)
    );
}

#[test]
fn loop_does_not_spin_while_a_targeted_recheck_runs() {
    // A re-check of a big file takes a while (re-checks are not paced).
    // An event arriving meanwhile must wait for it without the agent's
    // loop turning constantly: its thread (the main thread: the runtime is
    // single-threaded, checks run on other threads) must stay nearly idle.
    let d = Dir::new("agent-spin");
    d.write("/etc/a", "a\n");
    let big = d.path("/data/big.bin");
    std::fs::create_dir_all(big.parent().expect("parent")).expect("mkdir /data");
    std::fs::File::create(&big)
        .and_then(|f| f.set_len(1 << 30))
        .unwrap_or_else(|e| panic!("create {big:?}: {e}"));
    d.bake(&[]);
    // A long confirmation delay keeps the re-check and its confirmation
    // apart, so the end of the first is visible.
    let mut a = Launch::new(&d).set_str("confirm_delay", "2s").start();
    a.wait_ready();
    a.wait_metrics("clean", |m| m.verdict("clean") == 1.0);
    let pid = a.pid;
    d.append("/data/big.bin", b"x");
    agent_util::wait_file_open(pid, &big, true);
    let main0 = a.cpu_ticks(Some(pid));
    let t0 = Instant::now();
    // An event while the re-check runs: its debounce window closes long
    // before the re-check ends.
    d.write("/etc/b", "b\n");
    agent_util::wait_file_open(pid, &big, false);
    let wall = t0.elapsed();
    let used = Duration::from_millis((a.cpu_ticks(Some(pid)) - main0) * 10);
    eprintln!("main thread: {used:?} of CPU in {wall:?} while the re-check ran");
    a.wait_status("/etc/b added", |s| has_finding(s, "/etc/b", "added"));
    assert!(
        used < Duration::from_millis(100),
        "the agent's loop used {used:?} of CPU in {wall:?} while a re-check ran: it spins \
         (an expired debounce deadline wakes it at once while the re-check blocks the batch)\n{}",
        a.log_tail(20)
    );
    a.wait_drifted();
}
