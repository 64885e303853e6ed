//! Timers: the rescan schedule, the watcher's healing, and a loop that
//! never spins.

use super::*;
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn rescans_follow_the_interval_plus_fresh_jitter() {
    let clock = Arc::new(crate::clock::ManualClock::new(T0, &[0.0, 0.5, 1.0]));
    let start = Instant::now();
    let s = Settings {
        full_scan_interval: Duration::from_secs(100),
        full_scan_jitter: Duration::from_secs(10),
        ..settings()
    };
    let mut t = T::new(Machine::new(s, clock));
    t.m.handle_loaded(
        Loaded {
            state: Restored::Missing,
            manifest: Ok(id("aa")),
        },
        LoadKind::Start,
    );
    let (scan, _) = t.full_started();
    t.m.handle_scan_done(scan, ScanOutcome::Done(Vec::new().into()));
    assert_eq!(
        t.m.poll_timeout().unwrap() - start,
        Duration::from_secs(100)
    );
    t.advance(Duration::from_secs(99)).await;
    assert!(t
        .drain()
        .iter()
        .all(|a| !matches!(a, Action::StartFullScan { .. })));
    t.advance(Duration::from_secs(1)).await;
    let (scan, reason) = t.full_started();
    assert_eq!(reason, RescanReason::Interval);
    t.m.handle_scan_done(scan, ScanOutcome::Done(Vec::new().into()));
    assert_eq!(
        t.m.poll_timeout().unwrap() - start,
        Duration::from_secs(205),
        "interval + 0.5 jitter"
    );
    t.advance(Duration::from_secs(105)).await;
    t.full_started();
    assert_eq!(
        t.m.poll_timeout().unwrap() - start,
        Duration::from_secs(315),
        "interval + full jitter"
    );
}

#[tokio::test(start_paused = true)]
async fn a_lost_watcher_is_recreated_with_backoff_and_a_full_scan_covers_the_gap() {
    let mut t = T::clean();
    t.m.handle_watch_lost();
    let acts = t.drain();
    assert!(acts.iter().any(|a| matches!(a, Action::Report(Report::WatchLost { retry_in }) if *retry_in == Duration::from_secs(1))));
    t.advance(Duration::from_secs(1)).await;
    assert!(t.drain().contains(&Action::RestartWatch));
    t.m.handle_watch_restarted(false);
    t.advance(Duration::from_secs(1)).await;
    assert!(
        !t.drain().contains(&Action::RestartWatch),
        "the second try waits 2 s"
    );
    t.advance(Duration::from_secs(1)).await;
    assert!(t.drain().contains(&Action::RestartWatch));
    t.m.handle_watch_restarted(true);
    assert_eq!(t.full_started().1, RescanReason::WatchRestarted);
}

#[tokio::test(start_paused = true)]
async fn lost_events_and_unwatchable_directories_mean_a_full_rescan() {
    let mut t = T::clean();
    t.m.handle_touched(vec![p("/etc/x")]);
    t.m.handle_events_lost();
    assert_eq!(t.full_started().1, RescanReason::Overflow);
    t.advance(Duration::from_secs(1)).await;
    assert!(
        !t.drain()
            .iter()
            .any(|a| matches!(a, Action::StartTargeted { .. })),
        "the pending hints are covered by the full scan"
    );
    let mut t = T::clean();
    t.m.handle_watch_failed();
    let (scan, reason) = t.full_started();
    assert_eq!(reason, RescanReason::WatchFailed);
    t.m.handle_scan_done(scan, ScanOutcome::Done(Vec::new().into()));
    // More directories that cannot be watched (a flood of new ones at the
    // watch limit): no storm, at most one rescan per full_scan_interval.
    for _ in 0..100 {
        t.advance(Duration::from_secs(1)).await;
        t.m.handle_watch_failed();
        assert!(
            !t.drain()
                .iter()
                .any(|a| matches!(a, Action::StartFullScan { .. })),
            "a rescan storm"
        );
    }
    // An interval later (its own scan runs meanwhile), a failure rescans
    // again.
    t.advance(Duration::from_secs(3600)).await;
    let (scan, reason) = t.full_started();
    assert_eq!(reason, RescanReason::Interval);
    t.m.handle_scan_done(scan, ScanOutcome::Done(Vec::new().into()));
    t.m.handle_watch_failed();
    assert_eq!(t.full_started().1, RescanReason::WatchFailed);
}

#[tokio::test(start_paused = true)]
async fn no_deadline_in_the_past_while_a_recheck_runs_or_without_a_manifest() {
    let mut t = T::clean();
    t.m.handle_touched(vec![p("/a")]);
    t.advance(Duration::from_millis(200)).await;
    let (scan, _, _) = t.targeted_started();
    t.m.handle_touched(vec![p("/b")]);
    t.advance(Duration::from_millis(500)).await;
    let now = Instant::now();
    assert!(
        t.m.poll_timeout().unwrap() > now,
        "a due batch waits for the running re-check"
    );
    t.m.handle_scan_done(scan, ScanOutcome::Done(Vec::new().into()));
    let (_, paths, _) = t.targeted_started();
    assert_eq!(paths, vec![p("/b")]);
    // Without a manifest nothing is scanned and nothing stays due.
    let mut t = T::start(Restored::Missing, missing());
    t.m.handle_touched(vec![p("/a")]);
    t.m.handle_events_lost();
    t.advance(Duration::from_secs(1)).await;
    assert!(t.m.poll_timeout().unwrap() > Instant::now());
    assert!(!t.asked(|a| matches!(
        a,
        Action::StartFullScan { .. } | Action::StartTargeted { .. }
    )));
}

#[tokio::test(start_paused = true)]
async fn an_unusable_manifest_after_a_reload_stops_the_scans_and_keeps_the_reason() {
    let mut t = T::clean();
    t.m.handle_events_lost();
    let (scan, _) = t.full_started();
    t.reload(Restored::Missing, missing());
    assert!(t.drain().contains(&Action::CancelScan { id: scan }));
    let v = t.m.view();
    assert_eq!(
        (v.verdict, v.reason),
        (Verdict::Unknown, VerdictReason::ManifestUnusable)
    );
    assert_eq!(v.counts.total(), 0);
    assert!(v.message.unwrap().contains("No such file"));
}

#[tokio::test(start_paused = true)]
async fn a_manifest_that_could_not_be_read_is_loaded_again_with_backoff() {
    let mut t = T::start(Restored::Missing, missing());
    let mut waits = Vec::new();
    for _ in 0..4 {
        let left = t.m.poll_timeout().unwrap() - Instant::now();
        waits.push(left.as_secs());
        t.advance(left).await;
        assert!(t.drain().contains(&Action::Reload));
        t.load(LoadKind::Retry, Restored::Missing, missing());
    }
    assert_eq!(waits, [5, 10, 20, 40]);
    t.advance(Duration::from_secs(80)).await;
    assert!(t.drain().contains(&Action::Reload));
    t.load(LoadKind::Retry, Restored::Missing, Ok(id("aa")));
    assert_eq!(
        t.full_started().1,
        RescanReason::Startup,
        "the first scan of this life"
    );
    t.advance(Duration::from_secs(600)).await;
    assert!(
        !t.drain().contains(&Action::Reload),
        "no retry once it loaded"
    );
}

#[tokio::test(start_paused = true)]
async fn a_corrupt_or_untrusted_manifest_is_not_retried_but_an_unreadable_state_file_is() {
    let corrupt = Err(ManifestFailure {
        problem: ManifestProblem::Signature,
        message: "bad signature".into(),
    });
    let mut t = T::start(Restored::Missing, corrupt);
    t.advance(Duration::from_secs(3600)).await;
    assert!(!t.asked(|a| *a == Action::Reload));
    let mut t = T::start(
        Restored::Unusable("read state file: EMFILE".into()),
        Ok(id("aa")),
    );
    let (scan, _) = t.full_started();
    t.m.handle_scan_done(scan, ScanOutcome::Done(Vec::new().into()));
    assert_eq!(
        t.verdict(),
        (Verdict::Unknown, VerdictReason::StateUnusable)
    );
    t.advance(Duration::from_secs(5)).await;
    assert!(t.drain().contains(&Action::Reload));
    t.load(LoadKind::Retry, Restored::Missing, Ok(id("aa")));
    assert_eq!(t.verdict(), (Verdict::Clean, VerdictReason::AllChecked));
    assert!(
        !t.drain()
            .iter()
            .any(|a| matches!(a, Action::StartFullScan { .. })),
        "a retry of the same manifest does not rescan"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hint_alone_changes_nothing_shown_and_a_started_recheck_does() {
    let mut t = T::clean();
    t.m.take_changed();
    t.m.handle_touched(vec![p("/a")]);
    t.m.handle_timeout();
    assert!(!t.m.take_changed(), "nothing to publish for a hint");
    t.advance(Duration::from_millis(200)).await;
    assert!(t.m.take_changed(), "a re-check started");
    let (scan, _, _) = t.targeted_started();
    t.m.handle_scan_done(scan, ScanOutcome::Done(Vec::new().into()));
    assert!(t.m.take_changed());
}
