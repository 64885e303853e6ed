//! Scans: the first full scan, failures and retries, confirmation.

use super::*;

#[tokio::test(start_paused = true)]
async fn unknown_until_the_first_full_scan_then_clean() {
    let mut t = T::start(Restored::Missing, Ok(id("aa")));
    assert_eq!(
        t.verdict(),
        (Verdict::Unknown, VerdictReason::FirstScanPending)
    );
    let (scan, reason) = t.full_started();
    assert_eq!(reason, RescanReason::Startup);
    t.m.handle_scan_done(scan, ScanOutcome::Done(Vec::new().into()));
    assert_eq!(t.verdict(), (Verdict::Clean, VerdictReason::AllChecked));
    assert!(t.m.view().message.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_failed_full_scan_is_unknown_never_the_previous_clean_and_retried_5s_doubling_to_5min() {
    let mut t = T::clean();
    t.m.handle_events_lost();
    let (scan, reason) = t.full_started();
    assert_eq!(reason, RescanReason::Overflow);
    t.m.handle_scan_done(
        scan,
        ScanOutcome::Failed("open root: Too many open files".into()),
    );
    assert_eq!(t.verdict(), (Verdict::Unknown, VerdictReason::ScanFailed));
    let msg = t.m.view().message.unwrap();
    assert!(msg.contains("Too many open files"), "{msg}");
    // Retries after 5 s, 10 s, 20 s, ... capped at 5 min, each counted as
    // a rescan for `retry`.
    let mut waits = Vec::new();
    for _ in 0..8 {
        let before = tokio::time::Instant::now();
        let deadline = t.m.poll_timeout().unwrap();
        waits.push((deadline - before).as_secs());
        t.advance(deadline - before).await;
        let (scan, reason) = t.full_started();
        assert_eq!(reason, RescanReason::Retry);
        t.m.handle_scan_done(scan, ScanOutcome::Failed("EMFILE".into()));
        assert_eq!(t.verdict().0, Verdict::Unknown);
    }
    assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300]);
    // A retry that works finds the drift the failed scans hid.
    let deadline = t.m.poll_timeout().unwrap();
    t.advance(deadline - tokio::time::Instant::now()).await;
    let (scan, _) = t.full_started();
    t.m.handle_scan_done(
        scan,
        ScanOutcome::Done(vec![f("/etc/evil", FindingKind::Added)].into()),
    );
    assert_eq!(
        t.verdict(),
        (Verdict::Unknown, VerdictReason::DriftUnconfirmed)
    );
    t.advance(Duration::from_millis(100)).await;
    let (scan, paths, confirming) = t.targeted_started();
    assert_eq!((paths, confirming), (vec![p("/etc/evil")], true));
    t.m.handle_scan_done(
        scan,
        ScanOutcome::Done(vec![f("/etc/evil", FindingKind::Added)].into()),
    );
    assert_eq!(
        t.verdict(),
        (Verdict::Drifted, VerdictReason::DriftConfirmed)
    );
    // And the backoff starts over after a success.
    t.m.handle_events_lost();
    let (scan, _) = t.full_started();
    t.m.handle_scan_done(scan, ScanOutcome::Failed("x".into()));
    let left = t.m.poll_timeout().unwrap() - tokio::time::Instant::now();
    assert_eq!(left, Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_full_scan_is_unknown_and_retried() {
    let mut t = T::clean();
    t.m.handle_events_lost();
    let (scan, _) = t.full_started();
    t.m.handle_scan_done(scan, ScanOutcome::Cancelled);
    assert_eq!(t.verdict(), (Verdict::Unknown, VerdictReason::ScanFailed));
    t.advance(Duration::from_secs(5)).await;
    assert_eq!(t.full_started().1, RescanReason::Retry);
}

#[tokio::test(start_paused = true)]
async fn a_failed_recheck_makes_every_path_of_its_batch_unknown_and_retries_the_batch() {
    let mut t = T::clean();
    t.m.handle_touched(vec![p("/etc/a"), p("/usr/b")]);
    t.advance(Duration::from_millis(200)).await;
    let (scan, paths, _) = t.targeted_started();
    assert_eq!(paths, vec![p("/etc/a"), p("/usr/b")]);
    t.m.handle_scan_done(scan, ScanOutcome::Failed("open root: EMFILE".into()));
    assert_eq!(t.verdict(), (Verdict::Unknown, VerdictReason::ScanFailed));
    let v = t.m.view();
    let unknown: Vec<_> = v
        .findings
        .iter()
        .map(|f| (f.path.clone(), f.kind, f.cause))
        .collect();
    assert_eq!(
        unknown,
        vec![
            (
                p("/etc/a"),
                FindingKind::Unreadable,
                Some(UnreadableKind::ScanFailed)
            ),
            (
                p("/usr/b"),
                FindingKind::Unreadable,
                Some(UnreadableKind::ScanFailed)
            ),
        ]
    );
    assert_eq!(v.counts.unreadable, 2);
    // The batch is retried after 5 s; a second failure waits 10 s.
    t.advance(Duration::from_secs(5)).await;
    let (scan, paths, confirming) = t.targeted_started();
    assert_eq!((paths.len(), confirming), (2, false));
    t.m.handle_scan_done(scan, ScanOutcome::Failed("EMFILE".into()));
    t.advance(Duration::from_secs(9)).await;
    let early = t.drain();
    assert!(
        !early
            .iter()
            .any(|a| matches!(a, Action::StartTargeted { .. })),
        "not before 10 s: {early:?}"
    );
    t.advance(Duration::from_secs(1)).await;
    let (scan, _, _) = t.targeted_started();
    t.m.handle_scan_done(scan, ScanOutcome::Done(Vec::new().into()));
    assert_eq!(t.verdict(), (Verdict::Clean, VerdictReason::AllChecked));
}

#[tokio::test(start_paused = true)]
async fn drift_is_confirmed_before_it_is_declared_and_then_sticks() {
    let mut t = T::clean();
    t.recheck("/etc/x", vec![f("/etc/x", FindingKind::Modified)], None)
        .await;
    assert_eq!(
        t.verdict(),
        (Verdict::Unknown, VerdictReason::DriftUnconfirmed)
    );
    t.advance(Duration::from_millis(100)).await;
    let (scan, paths, confirming) = t.targeted_started();
    assert_eq!((paths, confirming), (vec![p("/etc/x")], true));
    t.m.handle_scan_done(
        scan,
        ScanOutcome::Done(vec![f("/etc/x", FindingKind::Modified)].into()),
    );
    assert_eq!(
        t.verdict(),
        (Verdict::Drifted, VerdictReason::DriftConfirmed)
    );
    let ep = t.m.view().drift.cloned().unwrap();
    assert_eq!(ep.first_detected_unix, T0 + 0.3);
    assert_eq!((ep.findings_total, ep.counts.modified), (1, 1));
    let acts = t.drain();
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::Persist(d) if d.declared.as_ref() == Some(&ep))));
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::Report(Report::DriftDeclared(_)))));
    // Reverting the file does not clear it.
    t.recheck("/etc/x", vec![], None).await;
    assert_eq!(t.verdict().0, Verdict::Drifted);
    assert_eq!(t.m.view().drift.unwrap().first_detected_unix, T0 + 0.3);
}

#[tokio::test(start_paused = true)]
async fn drift_that_does_not_confirm_is_not_declared() {
    let mut t = T::clean();
    t.recheck("/a", vec![f("/a", FindingKind::Removed)], Some(vec![]))
        .await;
    assert_eq!(t.verdict(), (Verdict::Clean, VerdictReason::AllChecked));
    assert!(!t.asked(|a| matches!(a, Action::Signal(_))));
}

#[tokio::test(start_paused = true)]
async fn drift_found_by_a_full_scan_is_confirmed_too() {
    let mut t = T::start(Restored::Missing, Ok(id("aa")));
    let (scan, _) = t.full_started();
    t.m.handle_scan_done(
        scan,
        ScanOutcome::Done(vec![f("/x", FindingKind::Added), unreadable("/r")].into()),
    );
    assert_eq!(
        t.verdict(),
        (Verdict::Unknown, VerdictReason::DriftUnconfirmed)
    );
    t.advance(Duration::from_millis(100)).await;
    let (scan, paths, confirming) = t.targeted_started();
    assert_eq!(
        (paths, confirming),
        (vec![p("/x")], true),
        "unreadable paths are not drift to confirm"
    );
    t.m.handle_scan_done(
        scan,
        ScanOutcome::Done(vec![f("/x", FindingKind::Added)].into()),
    );
    assert_eq!(t.verdict().0, Verdict::Drifted);
}

#[tokio::test(start_paused = true)]
async fn unreadable_paths_are_unknown_until_they_can_be_checked() {
    let mut t = T::start(Restored::Missing, Ok(id("aa")));
    let (scan, _) = t.full_started();
    t.m.handle_scan_done(scan, ScanOutcome::Done(vec![unreadable("/root/x")].into()));
    assert_eq!(
        t.verdict(),
        (Verdict::Unknown, VerdictReason::PathsUnreadable)
    );
    t.recheck("/root", vec![], None).await;
    assert_eq!(t.verdict().0, Verdict::Clean);
}

#[tokio::test(start_paused = true)]
async fn recheck_results_during_a_full_scan_win() {
    let mut t = T::clean();
    t.m.handle_events_lost();
    let (full, _) = t.full_started();
    t.recheck("/etc", vec![f("/etc/new", FindingKind::Added)], None)
        .await;
    // The full scan read /etc before the change and saw nothing there.
    t.m.handle_scan_done(full, ScanOutcome::Done(vec![unreadable("/usr/old")].into()));
    let paths: Vec<_> = t.m.view().findings.iter().map(|f| f.path.clone()).collect();
    assert_eq!(paths, vec![p("/etc/new"), p("/usr/old")]);
}

#[tokio::test(start_paused = true)]
async fn each_finding_is_reported_once() {
    let mut t = T::start(Restored::Missing, Ok(id("aa")));
    let (scan, _) = t.full_started();
    t.m.handle_scan_done(scan, ScanOutcome::Done(vec![unreadable("/x")].into()));
    let reports = |acts: Vec<Action>| {
        acts.into_iter()
            .filter(|a| matches!(a, Action::Report(Report::Finding(_))))
            .count()
    };
    assert_eq!(reports(t.drain()), 1);
    t.m.handle_events_lost();
    let (scan, _) = t.full_started();
    t.m.handle_scan_done(scan, ScanOutcome::Done(vec![unreadable("/x")].into()));
    assert_eq!(reports(t.drain()), 0);
}

#[tokio::test(start_paused = true)]
async fn outcomes_of_scans_of_a_replaced_manifest_are_ignored() {
    let mut t = T::clean();
    t.m.handle_events_lost();
    let (old, _) = t.full_started();
    t.reload(Restored::Missing, Ok(id("bb")));
    let acts = t.drain();
    assert!(acts.contains(&Action::CancelScan { id: old }), "{acts:?}");
    let new = acts
        .iter()
        .find_map(|a| match a {
            Action::StartFullScan { id, reason } => Some((*id, *reason)),
            _ => None,
        })
        .unwrap();
    assert_eq!(new.1, RescanReason::ManifestChanged);
    t.m.handle_scan_done(
        old,
        ScanOutcome::Done(vec![f("/x", FindingKind::Added)].into()),
    );
    assert_eq!(
        t.verdict(),
        (Verdict::Unknown, VerdictReason::FirstScanPending)
    );
    t.m.handle_scan_done(new.0, ScanOutcome::Done(Vec::new().into()));
    assert_eq!(t.verdict().0, Verdict::Clean);
}

#[tokio::test(start_paused = true)]
async fn paths_a_scan_could_not_check_for_want_of_descriptors_are_checked_again() {
    let starved = |p: &str| {
        Finding::unreadable(
            p.as_bytes(),
            UnreadableKind::ScanFailed,
            "cannot open: EMFILE",
        )
    };
    let mut t = T::start(Restored::Missing, Ok(id("aa")));
    let (scan, _) = t.full_started();
    t.m.handle_scan_done(scan, ScanOutcome::Done(vec![starved("/usr/x")].into()));
    assert_eq!(t.verdict(), (Verdict::Unknown, VerdictReason::ScanFailed));
    t.advance(Duration::from_secs(5)).await;
    let (scan, reason) = t.full_started();
    assert_eq!(reason, RescanReason::Retry);
    t.m.handle_scan_done(scan, ScanOutcome::Done(Vec::new().into()));
    assert_eq!(t.verdict().0, Verdict::Clean);
    // A re-check that ran short retries just those paths.
    t.recheck("/etc", vec![starved("/etc/a")], None).await;
    assert_eq!(t.verdict(), (Verdict::Unknown, VerdictReason::ScanFailed));
    t.advance(Duration::from_secs(5)).await;
    let (scan, paths, _) = t.targeted_started();
    assert_eq!(paths, vec![p("/etc/a")]);
    t.m.handle_scan_done(scan, ScanOutcome::Done(Vec::new().into()));
    assert_eq!(t.verdict().0, Verdict::Clean);
}
