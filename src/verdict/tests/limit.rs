//! More findings than `findings_limit`: the counts stay exact, at most the
//! limit is held and logged, drift is still confirmed and declared, and a
//! change where findings are only counted waits for a full scan.

use super::*;
use crate::manifest::bounded::Bounded;

const LIMIT: usize = 10;

fn limited() -> Settings {
    Settings {
        findings_limit: LIMIT,
        ..settings()
    }
}

fn added(n: usize, dir: &str) -> Bounded {
    Bounded::of(
        LIMIT,
        (0..n).map(|i| f(&format!("{dir}/f{i:07}"), FindingKind::Added)),
    )
}

fn findings_logged(acts: &[Action]) -> usize {
    acts.iter()
        .filter(|a| matches!(a, Action::Report(Report::Finding(_))))
        .count()
}

fn truncations(acts: &[Action]) -> Vec<(u64, usize)> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Report(Report::FindingsTruncated { total, held, .. }) => Some((*total, *held)),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_findings_is_counted_exactly_held_and_logged_up_to_the_limit_and_declared() {
    let mut t = T::start_with(limited(), Restored::Missing, Ok(id("aa")));
    let (scan, _) = t.full_started();
    t.m.handle_scan_done(scan, ScanOutcome::Done(added(100_000, "/usr/local/bin")));
    let acts = t.drain();
    assert_eq!(findings_logged(&acts), LIMIT, "one line per held finding");
    assert_eq!(truncations(&acts), vec![(100_000, LIMIT)], "one summary");
    let view = t.m.view();
    assert_eq!(view.counts.added, 100_000, "counts are exact");
    assert_eq!(view.findings.iter().count(), LIMIT);
    assert_eq!(
        t.verdict(),
        (Verdict::Unknown, VerdictReason::DriftUnconfirmed)
    );
    // Confirmation reads held paths again; its result is bounded too.
    t.advance(Duration::from_millis(100)).await;
    let (scan, paths, confirming) = t.targeted_started();
    assert!(confirming);
    assert!(paths.len() <= crate::verdict::machine::MAX_CONFIRM_PATHS);
    let again = Bounded::of(
        LIMIT,
        paths.iter().map(|p| Finding::simple(p, FindingKind::Added)),
    );
    t.m.handle_scan_done(scan, ScanOutcome::Done(again));
    assert_eq!(t.verdict().0, Verdict::Drifted);
    let acts = t.drain();
    assert_eq!(findings_logged(&acts), 0, "nothing new");
    assert!(truncations(&acts).is_empty(), "the total did not change");
    let view = t.m.view();
    assert_eq!(view.counts.added, 100_000);
    // The next full scan finds the same: nothing is logged again.
    t.m.handle_events_lost();
    let (scan, _) = t.full_started();
    t.m.handle_scan_done(scan, ScanOutcome::Done(added(100_000, "/usr/local/bin")));
    let acts = t.drain();
    assert_eq!(findings_logged(&acts), 0);
    assert!(truncations(&acts).is_empty());
}

#[tokio::test(start_paused = true)]
async fn drift_beyond_the_held_findings_is_still_confirmed() {
    // The first findings by path are unreadable; the drift sorts after
    // them and is only counted. The sample still names it for confirming.
    let mut t = T::start_with(limited(), Restored::Missing, Ok(id("aa")));
    let (scan, _) = t.full_started();
    let mut found = Bounded::new(LIMIT);
    for i in 0..LIMIT * 3 {
        found.insert(unreadable(&format!("/a/{i:04}")));
    }
    found.insert(f("/z/evil", FindingKind::Added));
    t.m.handle_scan_done(scan, ScanOutcome::Done(found));
    assert_eq!(t.m.view().counts.added, 1);
    assert!(t.m.view().findings.iter().all(|f| !f.is_drift()));
    t.advance(Duration::from_millis(100)).await;
    let (scan, paths, confirming) = t.targeted_started();
    assert_eq!((paths.clone(), confirming), (vec![p("/z/evil")], true));
    t.m.handle_scan_done(
        scan,
        ScanOutcome::Done(vec![f("/z/evil", FindingKind::Added)].into()),
    );
    assert_eq!(t.verdict().0, Verdict::Drifted);
    let d = t.m.view().drift.cloned().unwrap();
    assert_eq!(d.findings_total, 1);
    // /z/evil is beyond the cut: its re-check was not applied, a full scan
    // recounts.
    assert_eq!(t.last_full_reason(), Some(RescanReason::FindingsLimit));
}

#[tokio::test(start_paused = true)]
async fn a_recheck_before_the_cut_applies_exactly_one_beyond_it_waits_for_a_full_scan() {
    let mut t = T::start_with(limited(), Restored::Missing, Ok(id("aa")));
    let (scan, _) = t.full_started();
    t.m.handle_scan_done(scan, ScanOutcome::Done(added(1000, "/m")));
    t.drain();
    // Drift is latched first so confirmations stay out of the way.
    t.advance(Duration::from_millis(100)).await;
    let (scan, paths, _) = t.targeted_started();
    let again = Bounded::of(
        LIMIT,
        paths.iter().map(|p| Finding::simple(p, FindingKind::Added)),
    );
    t.m.handle_scan_done(scan, ScanOutcome::Done(again));
    assert_eq!(t.verdict().0, Verdict::Drifted);
    t.drain();
    // /a sorts before every held finding: applied exactly.
    t.recheck("/a", vec![f("/a", FindingKind::Added)], None)
        .await;
    assert_eq!(t.m.view().counts.added, 1001);
    let acts = t.drain();
    assert_eq!(truncations(&t.log), vec![(1000, LIMIT), (1001, LIMIT)]);
    assert!(acts
        .iter()
        .all(|a| !matches!(a, Action::StartFullScan { .. })));
    // /m reaches counted findings: nothing changes until a full scan.
    t.recheck("/m", Vec::new(), None).await;
    assert_eq!(t.m.view().counts.added, 1001, "not applied");
    let (scan, reason) = t.full_started();
    assert_eq!(reason, RescanReason::FindingsLimit);
    t.m.handle_scan_done(
        scan,
        ScanOutcome::Done(vec![f("/a", FindingKind::Added)].into()),
    );
    assert_eq!(t.m.view().counts.added, 1, "recounted");
    assert_eq!(t.m.view().findings.iter().count(), 1);
    // Still drifted: the latch holds until a new image.
    assert_eq!(t.verdict().0, Verdict::Drifted);
}
