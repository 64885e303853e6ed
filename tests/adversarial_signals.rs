//! The adversarial suite of signal delivery, run with the real binary. Each
//! class appears in more than one form, because a defence that stops one
//! form by accident stops nothing:
//!
//! - an exec hook that exits 0 but leaves a child behind (holding its
//!   stderr, holding only its stdout, double-forked): one success, one
//!   run, nothing of its process group left (read from /proc); a child
//!   that detaches with `setsid` is left alone, as documented;
//! - an exec hook that hangs with children: killed as a group at the
//!   timeout, retried, no orphans, not even after the agent stops;
//! - a crash's leftovers in the state directory before start: a pending
//!   file beside its delivered marker, a delivery record still in the
//!   pending file, a pending file beside its dry-run marker (none sent
//!   again), and a pending file alone (sent once);
//! - SIGKILL of the agent around a delivery (while the receiver holds the
//!   request, after it answered but before the agent read the answer, from
//!   inside an exec hook that then exits 0, and after the marker): the
//!   receiver sees the same idempotency key every time the signal is sent,
//!   and nothing once it is recorded delivered. Delivery is at least once,
//!   which is what the README states.
//!
//! Nothing sleeps to synchronise: every wait polls with a deadline, and
//! "nothing more arrives" is proven over SIGHUP rescans that were waited
//! for.

mod agent_util;
mod common;
mod signal_util;

use agent_util::{Agent, Launch, POLL, WAIT};
use common::Dir;
use signal_util::{
    describe, exec, launch_with, outbox_files, pending, requests, rescan, signals_section, start,
    webhook, Receiver, Secret,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const IMAGE: &str = "ami-adversarial-signals-3";

/// A standard tree baked (unsigned, image id [`IMAGE`]) and checked clean.
fn baked(name: &str) -> Dir {
    let d = Dir::standard(name);
    d.bake_and_assert_clean(&["--image-id", IMAGE]);
    d
}

/// Wait until the agent died of SIGKILL (sent by the test or by a hook).
fn wait_killed(a: &mut Agent) {
    let deadline = Instant::now() + WAIT;
    let st = loop {
        if let Some(st) = a.poll_exit() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "the agent was not killed\n{}",
            a.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(st.signal(), Some(9), "killed by SIGKILL: {st}");
}

fn kill_and_reap(a: &mut Agent) {
    a.signal(rustix::process::Signal::KILL);
    wait_killed(a);
}

/// Restart after a crash: wait for READY and the drifted verdict (no
/// check that nothing is pending, unlike [`start`]).
fn restart(launch: &Launch) -> Agent {
    let mut a = launch.start();
    a.wait_ready();
    a.wait_drifted();
    a
}

// ------------------------------------------------------------- /proc

/// Live processes (zombies aside) in process group `pgid`, from /proc.
fn live_in_group(pgid: u32) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() > 2 && f[0] != "Z" && f[2] == pgid.to_string() {
            found.push(format!("{head}) {}", f[0]));
        }
    }
    found
}

/// Poll until group `pgid` has no live process (a SIGKILL is delivered
/// asynchronously); panic listing them after [`WAIT`].
fn wait_group_empty(pgid: u32, what: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = live_in_group(pgid);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: process group {pgid} still has {left:?}"
        );
        std::thread::sleep(POLL);
    }
}

/// Kill, when dropped, what a failed test left in the process groups of
/// the runs recorded in a file (see [`RECORD`]) and of the processes named
/// in `detached`. Only a group a run leads, and never the test's own: a
/// hook that did not get a group of its own shares the agent's, the test's.
struct Cleanup {
    runs: PathBuf,
    detached: Option<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let own = rustix::process::getpgrp().as_raw_nonzero().get() as u32;
        let mut leaders = runs(&self.runs);
        if let Some(p) = &self.detached {
            let pid = std::fs::read_to_string(p).unwrap_or_default();
            if let Ok(pid) = pid.trim().parse::<u32>() {
                leaders.push((pid, pid));
            }
        }
        for (pid, pgid) in leaders {
            if pid != pgid || pgid == own {
                continue;
            }
            if let Some(g) = rustix::process::Pid::from_raw(pgid as i32) {
                let _ = rustix::process::kill_process_group(g, rustix::process::Signal::KILL);
            }
        }
    }
}

/// The prologue of every exec script here: append "PID PGID" of this run
/// to the file `$1`.
const RECORD: &str = "read -r _ _ _ _ pg _ < /proc/$$/stat; echo \"$$ $pg\" >> \"$1\"; ";

/// The runs a script recorded: (pid, process group) each.
fn runs(file: &Path) -> Vec<(u32, u32)> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let (p, g) = l.split_once(' ').expect("PID PGID");
            (p.parse().expect("pid"), g.parse().expect("pgid"))
        })
        .collect()
}

/// An exec backend `hook` running `/bin/sh -c RECORD+body sh RUNS ARGS...`.
fn hook(runs_file: &Path, body: &str, args: &[&Path], timeout: &str) -> String {
    let script = format!("{RECORD}{body}");
    let mut argv = vec![
        "/bin/sh".to_string(),
        "-c".into(),
        script,
        "sh".into(),
        runs_file.display().to_string(),
    ];
    argv.extend(args.iter().map(|p| p.display().to_string()));
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    exec("hook", &argv, &format!("timeout = \"{timeout}\""))
}

// ------------------------------------- exec: exit 0, a child left behind

/// `body` exits 0 at once but leaves a child: counted as one success, run
/// once, and afterwards nothing of its process group is alive.
fn exit_0_with_a_child_left(name: &str, body: &str) {
    let d = baked(name);
    let runs_file = d.outside("runs");
    let _cleanup = Cleanup {
        runs: runs_file.clone(),
        detached: None,
    };
    let tables = signals_section("200ms", "1s") + &hook(&runs_file, body, &[], "5s");
    let mut a = start(&launch_with(&d, &tables), &["hook"]);
    d.append("/etc/passwd", b"evil\n");
    a.wait_drifted();
    a.wait_metrics("one success", |m| {
        requests(m, "hook", "success") == 1.0 && pending(m, "hook") == 0.0
    });
    rescan(&mut a);
    let m = rescan(&mut a);
    assert_eq!(
        requests(&m, "hook", "failure"),
        0.0,
        "a finished command was judged by its child:\n{m}\n{}",
        a.log_tail(20)
    );
    assert_eq!(requests(&m, "hook", "success"), 1.0, "{m}");
    let r = runs(&runs_file);
    assert_eq!(r.len(), 1, "run exactly once: {r:?}");
    let (pid, pgid) = r[0];
    assert_eq!(pid, pgid, "the command leads a process group of its own");
    wait_group_empty(pgid, "after the command exited 0");
    let log = a.log_text();
    assert!(
        log.contains("left processes behind in its process group"),
        "the leftover is not logged:\n{log}"
    );
}

#[test]
fn exec_exit_0_while_a_background_child_holds_its_stderr() {
    exit_0_with_a_child_left("advsig-stderr", "sleep 60 & exit 0");
}

#[test]
fn exec_exit_0_while_a_background_child_holds_its_stdout() {
    exit_0_with_a_child_left("advsig-stdout", "sleep 60 2>/dev/null & exit 0");
}

#[test]
fn exec_exit_0_after_a_double_fork() {
    exit_0_with_a_child_left("advsig-double-fork", "(sleep 60 &); exit 0");
}

/// The documented way out: a process meant to outlive the hook detaches
/// with `setsid` (a session and group of its own) and is left alone.
#[test]
fn exec_a_child_detached_with_setsid_is_left_alone() {
    let d = baked("advsig-setsid");
    let runs_file = d.outside("runs");
    let detached = d.outside("detached");
    let _cleanup = Cleanup {
        runs: runs_file.clone(),
        detached: Some(detached.clone()),
    };
    let body = "setsid sleep 60 </dev/null >/dev/null 2>&1 & echo $! > \"$2\"; exit 0";
    let tables = signals_section("200ms", "1s") + &hook(&runs_file, body, &[&detached], "5s");
    let mut a = start(&launch_with(&d, &tables), &["hook"]);
    d.append("/etc/passwd", b"evil\n");
    a.wait_drifted();
    a.wait_metrics("one success", |m| {
        requests(m, "hook", "success") == 1.0 && pending(m, "hook") == 0.0
    });
    let pid: u32 = std::fs::read_to_string(&detached)
        .expect("the detached pid")
        .trim()
        .parse()
        .expect("a pid");
    let (_, pgid) = runs(&runs_file)[0];
    wait_group_empty(pgid, "the hook's own group");
    // Still running well after the hook's group was killed.
    rescan(&mut a);
    assert_eq!(live_in_group(pid).len(), 1, "the detached sleep was killed");
}

// ------------------------------------------- exec: hangs with children

/// `body` never finishes and has children: each run is killed as a whole
/// group at the 1 s timeout and retried; when the agent stops, the run in
/// flight goes with it.
fn hangs_with_children(name: &str, body: &str) {
    let d = baked(name);
    let runs_file = d.outside("runs");
    let _cleanup = Cleanup {
        runs: runs_file.clone(),
        detached: None,
    };
    let tables = signals_section("200ms", "1s") + &hook(&runs_file, body, &[], "1s");
    let mut a = start(&launch_with(&d, &tables), &["hook"]);
    d.append("/etc/passwd", b"evil\n");
    a.wait_drifted();
    let m = a.wait_metrics("two timeouts counted", |m| {
        requests(m, "hook", "failure") >= 2.0
    });
    assert_eq!(requests(&m, "hook", "success"), 0.0, "{m}");
    let r = runs(&runs_file);
    assert!(r.len() >= 2, "retried: {r:?}");
    for &(pid, pgid) in &r[..2] {
        assert_eq!(pid, pgid, "the command leads a process group of its own");
        wait_group_empty(pgid, "after the timeout");
    }
    let log = a.log_text();
    assert!(
        log.contains("did not finish within 1s (killed with its process group)"),
        "{log}"
    );
    let (st, _) = a.terminate(Duration::from_secs(10));
    assert!(st.success(), "{st}");
    for &(_, pgid) in &runs(&runs_file) {
        wait_group_empty(pgid, "after the agent stopped");
    }
}

#[test]
fn exec_hanging_with_background_children_is_killed_as_a_group() {
    hangs_with_children("advsig-hang-bg", "sleep 60 & sleep 60 & wait");
}

#[test]
fn exec_hanging_with_a_double_forked_child_is_killed_as_a_group() {
    hangs_with_children(
        "advsig-hang-df",
        "(sleep 60 &); trap '' TERM HUP INT; sleep 60",
    );
}

// ----------------------------------------- a crash's leftovers at start

/// A webhook backend `cp` answering 500 until told otherwise; runs the
/// agent until one signal is pending and kills it. Returns the launch, the
/// receiver, the secret file and the idempotency key.
fn pending_after_a_crash(d: &Dir) -> (Launch, Receiver, PathBuf, String) {
    let secret = Secret::whsec();
    let secret_file = secret.write(d);
    let rx = Receiver::start();
    rx.set_refusing(true);
    let launch = launch_with(
        d,
        &(signals_section("200ms", "1s") + &webhook("cp", &rx.url("/hook"), &secret_file, "")),
    );
    let mut a = start(&launch, &["cp"]);
    d.append("/etc/passwd", b"evil\n");
    a.wait_drifted();
    a.wait_metrics("one signal pending after a refusal", |m| {
        pending(m, "cp") == 1.0 && requests(m, "cp", "failure") >= 1.0
    });
    let key = rx.wait_requests(1, &a)[0].webhook_id().to_string();
    kill_and_reap(&mut a);
    (launch, rx, secret_file, key)
}

/// The outbox directory of a backend.
fn outbox(a_state: &Path, backend: &str) -> PathBuf {
    a_state.join("outbox").join(backend)
}

/// Every file name in `outbox/BACKEND/`, sorted.
fn outbox_names(state: &Path, backend: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(outbox(state, backend))
        .expect("read the outbox")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Two waited-for rescans; the metrics after them.
fn settle(a: &mut Agent) -> agent_util::Metrics {
    rescan(a);
    rescan(a)
}

#[test]
fn a_pending_file_beside_its_delivered_marker_is_not_sent_again() {
    let d = baked("advsig-left-delivered");
    let (launch, rx, _, key) = pending_after_a_crash(&d);
    let state = d.outside("state");
    // What an older version left when it crashed between writing the
    // marker and removing the pending file.
    let marker = outbox(&state, "cp").join(format!("{key}.delivered.json"));
    let old = format!(
        "{{\"backend\":\"cp\",\"idempotency_key\":\"{key}\",\"attempts\":2,\"response\":\"200 OK\"}}"
    );
    std::fs::write(&marker, &old).expect("write the marker");
    let n = rx.requests().len();
    rx.set_refusing(false);

    let mut b = restart(&launch);
    let m = settle(&mut b);
    assert_eq!(
        rx.requests().len(),
        n,
        "sent again:\n{}",
        describe(&rx.requests())
    );
    for r in ["success", "failure", "dry_run"] {
        assert_eq!(requests(&m, "cp", r), 0.0, "{r}: {m}");
    }
    assert_eq!(pending(&m, "cp"), 0.0, "{m}");
    assert_eq!(
        outbox_names(&state, "cp"),
        [format!("{key}.delivered.json")]
    );
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), old);
    let log = b.log_text();
    assert!(
        log.contains("pending beside its delivered marker"),
        "the removal is not logged:\n{log}"
    );
}

#[test]
fn a_pending_file_beside_its_dry_run_marker_is_not_shown_again() {
    let d = baked("advsig-left-dryrun");
    let (_, rx, secret_file, key) = pending_after_a_crash(&d);
    let state = d.outside("state");
    std::fs::write(
        outbox(&state, "cp").join(format!("{key}.dryrun.json")),
        "{}\n",
    )
    .expect("write the marker");
    let n = rx.requests().len();
    // The same backend, now in dry run.
    let dry = launch_with(
        &d,
        &(signals_section("200ms", "1s")
            + &webhook("cp", &rx.url("/hook"), &secret_file, "dry_run = true")),
    );
    let mut b = restart(&dry);
    let m = settle(&mut b);
    for r in ["success", "failure", "dry_run"] {
        assert_eq!(requests(&m, "cp", r), 0.0, "{r}: {m}");
    }
    assert_eq!(pending(&m, "cp"), 0.0, "{m}");
    assert_eq!(rx.requests().len(), n, "\n{}", describe(&rx.requests()));
    assert_eq!(outbox_names(&state, "cp"), [format!("{key}.dryrun.json")]);
    let log = b.log_text();
    assert!(log.contains("beside its marker"), "{log}");
}

#[test]
fn a_delivery_record_left_in_the_pending_file_is_completed_not_run_again() {
    let d = baked("advsig-left-record");
    let runs_file = d.outside("runs");
    let ok = d.outside("ok");
    // Fails until the file $2 exists.
    let body = "cat >/dev/null; [ -e \"$2\" ] || { echo not yet >&2; exit 1; }";
    let launch = launch_with(
        &d,
        &(signals_section("200ms", "1s") + &hook(&runs_file, body, &[&ok], "5s")),
    );
    let mut a = start(&launch, &["hook"]);
    d.append("/etc/passwd", b"evil\n");
    a.wait_drifted();
    a.wait_metrics("a failure, one pending", |m| {
        requests(m, "hook", "failure") >= 1.0 && pending(m, "hook") == 1.0
    });
    kill_and_reap(&mut a);
    let state = d.outside("state");
    let pend = outbox_files(&state, "hook", ".pending.json");
    assert_eq!(pend.len(), 1, "{pend:?}");
    let name = pend[0].file_name().unwrap().to_string_lossy().into_owned();
    let key = name.strip_suffix(".pending.json").unwrap().to_string();
    // The crash came between the two steps of recording a delivery: the
    // record is written over the pending file, not yet renamed.
    let record = serde_json::json!({
        "state": "delivered", "backend": "hook", "idempotency_key": key,
        "attempts": 2, "response": "/bin/sh exited 0",
    });
    std::fs::write(&pend[0], record.to_string()).expect("write the record");
    std::fs::write(&ok, "").expect("let the hook succeed");
    let n = runs(&runs_file).len();

    let mut b = restart(&launch);
    let m = settle(&mut b);
    assert_eq!(runs(&runs_file).len(), n, "the hook ran again");
    for r in ["success", "failure"] {
        assert_eq!(requests(&m, "hook", r), 0.0, "{r}: {m}");
    }
    assert_eq!(pending(&m, "hook"), 0.0, "{m}");
    assert_eq!(
        outbox_names(&state, "hook"),
        [format!("{key}.delivered.json")]
    );
    let marker: serde_json::Value = serde_json::from_slice(
        &std::fs::read(outbox(&state, "hook").join(format!("{key}.delivered.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(marker, record);
    assert!(
        b.log_text().contains("record was still pending"),
        "{}",
        b.log_text()
    );
}

#[test]
fn a_pending_file_alone_is_run_once_more_with_the_same_key() {
    let d = baked("advsig-left-pending");
    let keys = d.outside("keys");
    let ok = d.outside("ok");
    let body = "echo \"$DRIFTD_IDEMPOTENCY_KEY\" >> \"$2\"; cat >/dev/null; \
                [ -e \"$3\" ] || exit 1";
    let runs_file = d.outside("runs");
    let launch = launch_with(
        &d,
        &(signals_section("200ms", "1s") + &hook(&runs_file, body, &[&keys, &ok], "5s")),
    );
    let mut a = start(&launch, &["hook"]);
    d.append("/etc/passwd", b"evil\n");
    a.wait_drifted();
    a.wait_metrics("a failure, one pending", |m| {
        requests(m, "hook", "failure") >= 1.0 && pending(m, "hook") == 1.0
    });
    kill_and_reap(&mut a);
    let n = runs(&runs_file).len();
    std::fs::write(&ok, "").expect("let the hook succeed");

    let mut b = restart(&launch);
    b.wait_metrics("delivered after the restart", |m| {
        requests(m, "hook", "success") == 1.0 && pending(m, "hook") == 0.0
    });
    let m = settle(&mut b);
    assert_eq!(requests(&m, "hook", "success"), 1.0, "{m}");
    assert_eq!(requests(&m, "hook", "failure"), 0.0, "{m}");
    assert_eq!(runs(&runs_file).len(), n + 1, "run once after the restart");
    let text = std::fs::read_to_string(&keys).unwrap();
    let k: Vec<&str> = text.lines().collect();
    assert_eq!(k.len(), n + 1, "{text}");
    assert!(
        k.iter().all(|l| l.len() == 32 && *l == k[0]),
        "one key: {text}"
    );
    let state = d.outside("state");
    assert_eq!(
        outbox_names(&state, "hook"),
        [format!("{}.delivered.json", k[0])]
    );
}

// ------------------------------------------ SIGKILL around a delivery

/// Start once more: nothing is sent, nothing pending.
fn nothing_more(launch: &Launch, rx: &Receiver) {
    let n = rx.requests().len();
    let mut c = restart(launch);
    let m = settle(&mut c);
    assert_eq!(
        rx.requests().len(),
        n,
        "a delivered signal was sent again:\n{}",
        describe(&rx.requests())
    );
    assert_eq!(requests(&m, "cp", "success"), 0.0, "{m}");
    assert_eq!(pending(&m, "cp"), 0.0, "{m}");
}

/// Every request carries `key` as its `webhook-id` and in its body, and the
/// bodies are identical.
fn same_key_every_time(rx: &Receiver, key: &str) {
    let reqs = rx.requests();
    for r in &reqs {
        assert_eq!(r.webhook_id(), key, "\n{}", describe(&reqs));
        assert_eq!(r.json()["idempotency_key"], key, "\n{}", describe(&reqs));
        assert_eq!(r.body, reqs[0].body, "the same signal every time");
    }
}

#[test]
fn sigkill_while_the_receiver_holds_the_request() {
    let d = baked("advsig-kill-held");
    let secret_file = Secret::whsec().write(&d);
    let rx = Receiver::start();
    rx.hang_next(1);
    let launch = launch_with(
        &d,
        &(signals_section("200ms", "1s") + &webhook("cp", &rx.url("/hook"), &secret_file, "")),
    );
    let mut a = start(&launch, &["cp"]);
    d.append("/etc/passwd", b"evil\n");
    a.wait_drifted();
    let key = rx.wait_requests(1, &a)[0].webhook_id().to_string();
    kill_and_reap(&mut a);
    let state = d.outside("state");
    assert_eq!(outbox_names(&state, "cp"), [format!("{key}.pending.json")]);

    let mut b = restart(&launch);
    b.wait_metrics("delivered after the restart", |m| {
        requests(m, "cp", "success") == 1.0 && pending(m, "cp") == 0.0
    });
    // Right after the marker: SIGKILL again.
    kill_and_reap(&mut b);
    assert_eq!(rx.requests().len(), 2, "\n{}", describe(&rx.requests()));
    assert_eq!(rx.successes().len(), 1);
    same_key_every_time(&rx, &key);
    assert_eq!(
        outbox_names(&state, "cp"),
        [format!("{key}.delivered.json")]
    );
    nothing_more(&launch, &rx);
}

/// The window the README owns up to: the receiver answered, the agent
/// died before recording it. The signal is sent again, with the same key.
#[test]
fn sigkill_after_the_receiver_answered_sends_again_with_the_same_key() {
    let d = baked("advsig-kill-answered");
    let secret_file = Secret::whsec().write(&d);
    let rx = Receiver::start();
    let launch = launch_with(
        &d,
        &(signals_section("200ms", "1s") + &webhook("cp", &rx.url("/hook"), &secret_file, "")),
    );
    let mut a = start(&launch, &["cp"]);
    rx.stop_before_next_answer(a.pid);
    d.append("/etc/passwd", b"evil\n");
    // No wait for the verdict: the agent may be stopped before it shows.
    let reqs = rx.wait_requests(1, &a);
    assert_eq!(reqs[0].answered, Some(200));
    let key = reqs[0].webhook_id().to_string();
    kill_and_reap(&mut a);
    let state = d.outside("state");
    assert_eq!(
        outbox_names(&state, "cp"),
        [format!("{key}.pending.json")],
        "the agent was stopped before it read the answer"
    );

    let mut b = restart(&launch);
    b.wait_metrics("delivered again after the restart", |m| {
        requests(m, "cp", "success") == 1.0 && pending(m, "cp") == 0.0
    });
    let m = settle(&mut b);
    assert_eq!(requests(&m, "cp", "success"), 1.0, "{m}");
    drop(b);
    assert_eq!(rx.successes().len(), 2, "\n{}", describe(&rx.requests()));
    assert_eq!(rx.requests().len(), 2, "\n{}", describe(&rx.requests()));
    same_key_every_time(&rx, &key);
    assert_eq!(
        outbox_names(&state, "cp"),
        [format!("{key}.delivered.json")]
    );
    nothing_more(&launch, &rx);
}

/// The exec form of the same window: the hook kills the agent, then exits
/// 0. It runs again after the restart, with the same key, and never after
/// the delivery is recorded.
#[test]
fn sigkill_from_inside_an_exec_hook_runs_it_again_with_the_same_key() {
    let d = baked("advsig-kill-exec");
    let runs_file = d.outside("runs");
    let keys = d.outside("keys");
    let killed = d.outside("killed");
    let body = "echo \"$DRIFTD_IDEMPOTENCY_KEY\" >> \"$2\"; cat >/dev/null; \
                if [ ! -e \"$3\" ]; then : > \"$3\"; kill -KILL \"$PPID\"; fi; exit 0";
    let launch = launch_with(
        &d,
        &(signals_section("200ms", "1s") + &hook(&runs_file, body, &[&keys, &killed], "5s")),
    );
    let mut a = start(&launch, &["hook"]);
    d.append("/etc/passwd", b"evil\n");
    // No wait for the verdict: the hook may kill the agent before it shows.
    wait_killed(&mut a);
    let state = d.outside("state");
    let pend = outbox_files(&state, "hook", ".pending.json");
    assert_eq!(pend.len(), 1, "{pend:?}");

    let mut b = restart(&launch);
    b.wait_metrics("delivered after the restart", |m| {
        requests(m, "hook", "success") == 1.0 && pending(m, "hook") == 0.0
    });
    kill_and_reap(&mut b);
    let mut c = restart(&launch);
    let m = settle(&mut c);
    assert_eq!(requests(&m, "hook", "success"), 0.0, "{m}");
    assert_eq!(pending(&m, "hook"), 0.0, "{m}");
    assert_eq!(runs(&runs_file).len(), 2, "run before and after the crash");
    let text = std::fs::read_to_string(&keys).unwrap();
    let k: Vec<&str> = text.lines().collect();
    assert_eq!(k.len(), 2, "{text}");
    assert!(k[0].len() == 32 && k[0] == k[1], "one key: {text}");
    assert_eq!(
        outbox_names(&state, "hook"),
        [format!("{}.delivered.json", k[0])]
    );
}
