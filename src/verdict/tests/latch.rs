//! The latch: kept by memory over anything the state file says, ended only
//! by a new image or an operator's explicit clearance.

use super::*;
use crate::verdict::episode::Clearance;

fn doc(latch: Option<DriftEpisode>) -> StateDoc {
    StateDoc {
        declared: latch,
        ..StateDoc::default()
    }
}

fn persisted_latch(t: &mut T) -> Option<DriftEpisode> {
    let docs = t.persisted_ok();
    assert!(!docs.is_empty(), "nothing written");
    docs.last().unwrap().declared.clone()
}

/// Finish the full scan a reload started, clean.
fn finish_full(t: &mut T) {
    t.drain();
    let running = t.log.iter().rev().find_map(|a| match a {
        Action::StartFullScan { id, .. } => Some(*id),
        _ => None,
    });
    t.m.handle_scan_done(
        running.expect("a full scan"),
        ScanOutcome::Done(Vec::new().into()),
    );
}

#[tokio::test(start_paused = true)]
async fn a_reload_after_the_state_file_was_deleted_keeps_the_latch_and_writes_it_back() {
    let mut t = T::clean();
    let ep = t.drift("/etc/x").await;
    let key = t.m.view().episode_key.unwrap();
    t.persisted_ok();
    t.recheck("/etc/x", vec![], None).await; // reverted
    t.reload(Restored::Missing, Ok(id("aa")));
    assert_eq!(
        t.verdict(),
        (Verdict::Drifted, VerdictReason::DriftConfirmed)
    );
    assert_eq!(
        persisted_latch(&mut t),
        Some(ep.clone()),
        "memory wins and is written back"
    );
    assert_eq!(t.m.view().episode_key.unwrap(), key, "one episode, one key");
    assert_eq!(t.last_full_reason(), Some(RescanReason::Sighup));
}

#[tokio::test(start_paused = true)]
async fn a_state_file_that_says_less_than_memory_does_not_drop_the_latch() {
    let mut t = T::clean();
    let ep = t.drift("/etc/x").await;
    t.persisted_ok();
    t.reload(Restored::Found(Box::new(doc(None))), Ok(id("aa")));
    assert_eq!(t.verdict().0, Verdict::Drifted);
    assert_eq!(persisted_latch(&mut t), Some(ep.clone()));
    t.reload(Restored::Unusable("corrupt".into()), Ok(id("aa")));
    assert_eq!(t.verdict().0, Verdict::Drifted);
    assert_eq!(persisted_latch(&mut t), Some(ep));
}

#[tokio::test(start_paused = true)]
async fn a_failed_persist_keeps_the_latch_and_is_retried_with_backoff() {
    let mut t = T::clean();
    t.manual_persist = true;
    let fnd = vec![f("/etc/x", FindingKind::Modified)];
    t.recheck("/etc/x", fnd.clone(), Some(fnd)).await;
    assert!(t.drain().iter().any(|a| matches!(a, Action::Persist(_))));
    t.m.handle_persisted(Err("write state file: No space left on device".into()));
    assert_eq!(t.verdict().0, Verdict::Drifted);
    let acts = t.drain();
    assert!(acts.iter().any(|a| matches!(a, Action::Report(Report::PersistFailed { retry_in, .. }) if *retry_in == Duration::from_secs(5))));
    assert!(
        !acts.iter().any(|a| matches!(a, Action::Persist(_))),
        "not before the backoff"
    );
    t.advance(Duration::from_secs(5)).await;
    assert!(t
        .drain()
        .iter()
        .any(|a| matches!(a, Action::Persist(d) if d.declared.is_some())));
    t.m.handle_persisted(Err("again".into()));
    t.advance(Duration::from_secs(9)).await;
    assert!(!t.drain().iter().any(|a| matches!(a, Action::Persist(_))));
    t.advance(Duration::from_secs(1)).await;
    assert!(t.drain().iter().any(|a| matches!(a, Action::Persist(_))));
    t.m.handle_persisted(Ok(()));
    t.advance(Duration::from_secs(600)).await;
    assert!(
        !t.drain().iter().any(|a| matches!(a, Action::Persist(_))),
        "written once it worked"
    );
}

#[tokio::test(start_paused = true)]
async fn only_a_manifest_with_another_digest_starts_a_new_life() {
    let mut t = T::clean();
    t.drift("/etc/x").await;
    t.persisted_ok();
    t.reload(Restored::Found(Box::new(t.m.state_doc())), missing());
    assert_eq!(
        t.verdict().0,
        Verdict::Drifted,
        "an unusable manifest is no new life"
    );
    t.reload(Restored::Found(Box::new(t.m.state_doc())), Ok(id("aa")));
    assert_eq!(t.verdict().0, Verdict::Drifted, "the same image again");
    t.drain();
    t.reload(Restored::Found(Box::new(t.m.state_doc())), Ok(id("bb")));
    let (scan, reason) = t.full_started();
    assert_eq!(reason, RescanReason::ManifestChanged);
    assert!(t.asked(|a| matches!(a, Action::Report(Report::NewImage { .. }))));
    assert_eq!(
        t.verdict(),
        (Verdict::Unknown, VerdictReason::FirstScanPending)
    );
    assert!(
        t.asked(|a| matches!(a, Action::Persist(d) if d.declared.is_none())),
        "the new life is recorded"
    );
    t.m.handle_persisted(Ok(()));
    t.m.handle_scan_done(scan, ScanOutcome::Done(Vec::new().into()));
    assert_eq!(t.verdict().0, Verdict::Clean);
}

#[tokio::test(start_paused = true)]
async fn clearing_is_an_explicit_act_naming_the_episode() {
    let mut t = T::clean();
    let ep = t.drift("/etc/x").await;
    t.persisted_ok();
    let clearance = |first: f64| Clearance {
        manifest_digest: "aa".into(),
        first_detected_unix: first,
        cleared_unix: T0 + 60.0,
        by: "root".into(),
        reason: Some("false positive fixed in image 42".into()),
    };
    // A clearance of another episode (an older one) is not this one's.
    let other = StateDoc {
        cleared: Some(clearance(ep.first_detected_unix - 100.0)),
        ..StateDoc::default()
    };
    t.reload(Restored::Found(Box::new(other)), Ok(id("aa")));
    assert_eq!(t.verdict().0, Verdict::Drifted);
    t.persisted_ok();
    finish_full(&mut t);
    // The operator's `driftd state clear` of this episode, then SIGHUP.
    let cleared = StateDoc {
        cleared: Some(clearance(ep.first_detected_unix)),
        ..StateDoc::default()
    };
    t.reload(Restored::Found(Box::new(cleared)), Ok(id("aa")));
    let (scan, _) = t.full_started();
    assert!(t.asked(|a| matches!(a, Action::Report(Report::LatchCleared(_)))));
    assert_ne!(t.verdict().0, Verdict::Drifted);
    t.m.handle_scan_done(scan, ScanOutcome::Done(Vec::new().into()));
    assert_eq!(t.verdict().0, Verdict::Clean);
    assert_eq!(
        t.m.state_doc().cleared.unwrap().by,
        "root",
        "kept for the record"
    );
}

#[tokio::test(start_paused = true)]
async fn a_latch_restored_at_start_holds_while_the_manifest_is_missing() {
    let mut t = T::clean();
    let ep = t.drift("/etc/x").await;
    let saved = t.m.state_doc();
    let mut again = T::start(Restored::Found(Box::new(saved.clone())), missing());
    let v = again.m.view();
    assert_eq!(
        (v.verdict, v.reason),
        (Verdict::Drifted, VerdictReason::DriftConfirmed)
    );
    assert_eq!(v.drift, Some(&ep));
    assert!(v.manifest_failure.is_some());
    assert!(again
        .drain()
        .iter()
        .any(|a| matches!(a, Action::Report(Report::LatchRestored(_)))));
    // ... and while it is unusable after a reload.
    again.reload(
        Restored::Found(Box::new(saved)),
        Err(ManifestFailure {
            problem: ManifestProblem::Signature,
            message: "bad signature".into(),
        }),
    );
    assert_eq!(again.verdict().0, Verdict::Drifted);
}

#[tokio::test(start_paused = true)]
async fn a_latch_in_the_file_that_memory_lacks_is_adopted() {
    let mut t = T::clean();
    let ep = t.drift("/etc/x").await;
    let mut other = T::start(Restored::Unusable("garbage".into()), Ok(id("aa")));
    assert_eq!(
        other.verdict(),
        (Verdict::Unknown, VerdictReason::StateUnusable)
    );
    other.reload(
        Restored::Found(Box::new(doc(Some(ep.clone())))),
        Ok(id("aa")),
    );
    assert_eq!(other.verdict().0, Verdict::Drifted);
    assert_eq!(other.m.view().drift, Some(&ep));
}

#[tokio::test(start_paused = true)]
async fn an_unreadable_state_file_is_never_overwritten_until_drift_is_declared() {
    let mut t = T::start(
        Restored::Unusable("state file is corrupt".into()),
        Ok(id("aa")),
    );
    let (scan, _) = t.full_started();
    t.m.handle_scan_done(scan, ScanOutcome::Done(vec![unreadable("/r")].into()));
    assert_eq!(
        t.verdict(),
        (Verdict::Unknown, VerdictReason::StateUnusable)
    );
    assert!(
        !t.asked(|a| matches!(a, Action::Persist(_))),
        "an unknown episode must not overwrite it"
    );
    t.recheck(
        "/etc/x",
        vec![f("/etc/x", FindingKind::Added)],
        Some(vec![f("/etc/x", FindingKind::Added)]),
    )
    .await;
    assert_eq!(t.verdict().0, Verdict::Drifted);
    let docs = t.persisted_ok();
    assert!(
        docs.last().unwrap().declared.is_some(),
        "drift is recorded over the broken file"
    );
}
