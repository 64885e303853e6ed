//! `driftd run` under lowered inotify limits: a queue that overflows and a
//! watch limit that leaves directories unwatched. Both must fall back to
//! full rescans and still find everything.
//!
//! This is a test binary of its own so that lowering system-wide limits
//! cannot disturb other tests; its tests take turns (a static mutex), need
//! root (else they print SKIP, or fail under CI), and restore every limit
//! in a Drop guard.
//! The limits are lowered only while the agent starts: the queue length is
//! fixed when an inotify instance is created, and the agent adds its
//! watches before it reports READY.

mod agent_util;
mod common;

use agent_util::{pretty, status_findings, Launch};
use common::{skip_unless_root, Dir};
use driftd::manifest::FileKind;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

static LIMITS: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    LIMITS.lock().unwrap_or_else(|p| p.into_inner())
}

/// A sysctl set to a lower value until dropped.
struct Sysctl {
    path: PathBuf,
    old: String,
    restored: bool,
}

impl Sysctl {
    fn set(name: &str, value: u64) -> Sysctl {
        let path = PathBuf::from("/proc/sys/fs/inotify").join(name);
        let old = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {path:?}: {e}"))
            .trim()
            .to_string();
        std::fs::write(&path, value.to_string())
            .unwrap_or_else(|e| panic!("write {value} to {path:?}: {e}"));
        eprintln!("{name}: {old} -> {value} (until restored)");
        Sysctl {
            path,
            old,
            restored: false,
        }
    }

    fn restore(&mut self) {
        if !self.restored {
            self.restored = true;
            if let Err(e) = std::fs::write(&self.path, &self.old) {
                eprintln!("RESTORE FAILED: write {} to {:?}: {e}", self.old, self.path);
            }
        }
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        self.restore();
    }
}

#[test]
fn queue_overflow_falls_back_to_a_full_rescan() {
    if skip_unless_root("lowering fs.inotify.max_queued_events") {
        return;
    }
    let _turn = one_at_a_time();
    let d = Dir::new("limits-overflow");
    d.write("/etc/a", "a\n");
    d.mkdir("/data");
    d.bake(&[]);

    let mut limit = Sysctl::set("max_queued_events", 64);
    let mut a = Launch::new(&d).start();
    a.wait_ready();
    limit.restore();
    a.wait_metrics("clean", |m| m.verdict("clean") == 1.0);

    // 2000 files, each three events (create, modify, close-after-write):
    // far more than a queue of 64 holds while the agent is not reading
    // (stopped, as a busy host may deschedule it). The default queue
    // (16384) would hold them all.
    const N: usize = 2000;
    a.pause();
    for i in 0..N {
        let p = d.path(format!("/data/f{i:04}"));
        if let Err(e) = std::fs::write(&p, b"x") {
            a.resume();
            panic!("write {p:?}: {e}");
        }
    }
    a.resume();
    let m = a.wait_metrics("an overflow rescan", |m| {
        m.rescans("overflow") >= 1.0 && m.v("driftd_fs_events_dropped_total") >= 1.0
    });
    assert!(m.scans_of_kind("full") >= 1.0, "{m}");
    assert!(
        m.v("driftd_fs_events_total") <= 64.0 + 1.0,
        "at most a queue's worth of events arrived:\n{m}"
    );
    let s = a.wait_status("all 2000 files reported added", |s| {
        s["counts"]["added"] == N && s["findings_total"] == N
    });
    let mut got = status_findings(&s);
    got.sort();
    let want: Vec<(String, String)> = (0..N)
        .map(|i| (format!("/data/f{i:04}"), "added".to_string()))
        .collect();
    assert!(
        got == want,
        "findings differ from the 2000 added files: first of them {:?}\n{}",
        &got[..got.len().min(5)],
        s["counts"]
    );
    let m = a.wait_metrics("drift declared", |m| m.v("driftd_drift_detected") == 1.0);
    assert_eq!(m.drifted("added"), N as f64, "{m}");
    for k in ["removed", "modified", "metadata", "type", "unreadable"] {
        assert_eq!(m.drifted(k), 0.0, "{m}");
    }
    assert_eq!(a.healthz(), (503, "drifted".into()));
    let s = a.status();
    assert_eq!(s["verdict"], "drifted", "{}", s["counts"]);
}

#[test]
fn unwatched_directories_are_covered_by_rescans() {
    if skip_unless_root("lowering fs.inotify.max_user_watches") {
        return;
    }
    let _turn = one_at_a_time();
    let d = Dir::new("limits-watches");
    for i in 0..50 {
        d.write(format!("/d{i:02}/f"), format!("file {i}\n"));
    }
    d.bake(&[]);
    let dirs = d
        .manifest()
        .entries
        .iter()
        .filter(|e| e.kind == FileKind::Dir)
        .count();
    assert_eq!(dirs, 51, "precondition: the root and 50 directories");

    let mut limit = Sysctl::set("max_user_watches", 8);
    let mut a = Launch::new(&d)
        .set_str("full_scan_interval", "2s")
        .set_str("full_scan_jitter", "0s")
        .start();
    a.wait_ready();
    limit.restore();
    let m = a.wait_metrics("clean", |m| m.verdict("clean") == 1.0);
    let failures = m.v("driftd_watch_failures_total");
    let watches = m.v("driftd_watches");
    assert!(failures >= 1.0, "{m}");
    assert!(watches <= 8.0, "at most the limit is watched:\n{m}");
    assert_eq!(
        watches + failures,
        dirs as f64,
        "every directory is either watched or counted as a failure:\n{m}"
    );
    // The failures happen while the manifest loads, before the startup scan
    // has run: that scan covers them (one pending full scan, counted under
    // its first reason, "startup").
    assert!(
        m.rescans("watch_failed") + m.rescans("startup") >= 1.0,
        "{m}"
    );

    // /d49 comes last: certainly not watched. Only a rescan can see this.
    let before = m.rescans("interval");
    let p = d.path("/d49/f");
    std::fs::write(&p, "tampered\n").unwrap_or_else(|e| panic!("write {p:?}: {e}"));
    let m = a.wait_metrics("drift found by a scheduled rescan", |m| {
        m.v("driftd_drift_detected") == 1.0
    });
    assert!(
        m.rescans("interval") > before,
        "found by an interval rescan:\n{m}"
    );
    assert_eq!(
        m.v("driftd_fs_events_total"),
        0.0,
        "no event came from the unwatched directory:\n{m}"
    );
    let s = a.status();
    assert!(
        agent_util::has_finding(&s, "/d49/f", "modified"),
        "{}",
        pretty(&s)
    );
}

/// The watcher heals itself: with no inotify instance to be had at start
/// (`fs.inotify.max_user_instances` reached, as on a host full of
/// containers), the agent runs on full rescans and keeps trying to create
/// the watcher, backing off (1 s, 2 s, ...); once it can, every directory is
/// watched again, a full rescan covers the gap (`rescans_total{reason=
/// "watch_restarted"}`), and events find drift within a second again.
#[test]
fn a_watcher_that_cannot_start_is_recreated_and_a_rescan_covers_the_gap() {
    if skip_unless_root("lowering fs.inotify.max_user_instances") {
        return;
    }
    let _turn = one_at_a_time();
    let d = Dir::new("limits-instances");
    d.write("/etc/a", "a\n");
    d.mkdir("/data");
    d.bake(&[]);
    let mut limit = Sysctl::set("max_user_instances", 0);
    let mut a = Launch::new(&d).start();
    a.wait_ready();
    let m = a.wait_metrics("clean on full scans alone", |m| m.verdict("clean") == 1.0);
    assert_eq!(m.v("driftd_watches"), 0.0, "{m}");
    assert!(m.v("driftd_watch_failures_total") >= 1.0, "{m}");
    assert!(
        a.log_text().contains("no filesystem watcher"),
        "{}",
        a.log_tail(20)
    );
    limit.restore();
    let m = a.wait_metrics("the watcher re-created and a rescan for the gap", |m| {
        m.rescans("watch_restarted") == 1.0 && m.v("driftd_watches") == 3.0
    });
    assert_eq!(m.rescans("interval"), 0.0, "{m}");
    // The startup scan and the one covering the gap.
    let fulls_done = a.wait_metrics("the gap rescan done", |m| m.scans_of_kind("full") == 2.0);
    d.write("/data/evil", "x\n");
    let m = a.wait_metrics("drift found by an event", |m| {
        m.v("driftd_drift_detected") == 1.0
    });
    assert_eq!(
        m.scans_of_kind("full"),
        fulls_done.scans_of_kind("full"),
        "found without another full scan:\n{m}"
    );
    assert!(m.v("driftd_fs_events_total") >= 1.0, "{m}");
}
