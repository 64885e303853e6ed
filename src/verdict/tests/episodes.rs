//! Episodes and signals: one episode, one idempotency key, whatever
//! restarts and reloads happen.

use super::*;

fn with_grace() -> Settings {
    Settings {
        unknown_grace: Some(Duration::from_secs(1800)),
        ..settings()
    }
}

#[tokio::test(start_paused = true)]
async fn a_drift_signal_is_asked_for_once_and_again_with_the_same_key_after_a_restart() {
    let mut t = T::clean();
    t.drift("/etc/x").await;
    let sent: Vec<_> = t
        .log
        .iter()
        .filter_map(|a| match a {
            Action::Signal(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].event, SignalEvent::DriftDetected);
    let key = sent[0].idempotency_key("host-1");
    assert_eq!(t.m.view().episode_key.as_deref(), Some(key.as_str()));
    // Reverted and rechecked: no second signal.
    t.recheck("/etc/x", vec![], None).await;
    assert!(t.signals().is_empty());
    // A restart asks again with the same key (the outbox drops duplicates).
    let mut again = T::start(Restored::Found(Box::new(t.m.state_doc())), Ok(id("aa")));
    let resent = again.signals();
    assert_eq!(resent.len(), 1);
    assert_eq!(resent[0].idempotency_key("host-1"), key);
    assert_eq!(resent[0].findings_total, 1);
    assert_eq!(resent[0].counts.modified, 1);
}

#[tokio::test(start_paused = true)]
async fn no_signal_is_asked_for_without_backends() {
    let s = Settings {
        signals: false,
        ..settings()
    };
    let mut t = T::start_with(s, Restored::Missing, Ok(id("aa")));
    let (scan, _) = t.full_started();
    t.m.handle_scan_done(scan, ScanOutcome::Done(Vec::new().into()));
    t.drift("/x").await;
    assert!(!t.asked(|a| matches!(a, Action::Signal(_))));
}

#[tokio::test(start_paused = true)]
async fn an_unknown_episode_starts_when_unknown_settles_and_ends_when_clean() {
    let mut t = T::start_with(with_grace(), Restored::Missing, Ok(id("aa")));
    assert!(
        t.m.view().unknown.is_none(),
        "the first scan is not an unknown period yet"
    );
    let (scan, _) = t.full_started();
    tokio::time::advance(Duration::from_secs(2)).await;
    t.m.handle_scan_done(scan, ScanOutcome::Done(vec![unreadable("/r")].into()));
    let u = t.m.view().unknown.cloned().unwrap();
    assert_eq!(
        (u.since_unix, u.manifest_digest.as_deref()),
        (T0 + 2.0, Some("aa"))
    );
    let docs = t.persisted_ok();
    assert_eq!(
        docs.last().unwrap().unknown.as_ref(),
        Some(&u),
        "its start is persisted"
    );
    t.recheck("/r", vec![], None).await;
    assert_eq!(t.verdict().0, Verdict::Clean);
    assert!(t.m.view().unknown.is_none());
    assert_eq!(t.persisted_ok().last().unwrap().unknown, None);
}

#[tokio::test(start_paused = true)]
async fn an_unknown_verdict_is_signalled_once_after_the_grace_with_a_key_that_survives_restarts() {
    let mut t = T::start_with(with_grace(), Restored::Missing, missing());
    assert_eq!(
        t.verdict(),
        (Verdict::Unknown, VerdictReason::ManifestUnusable)
    );
    let u =
        t.m.view()
            .unknown
            .cloned()
            .expect("nothing to scan: unknown at once");
    assert_eq!(u.digest(), "none");
    let key = t.m.view().episode_key.unwrap();
    t.persisted_ok();
    t.advance(Duration::from_secs(1799)).await;
    assert!(t.signals().is_empty(), "not before the grace period");
    // A restart in the middle keeps the episode's start.
    let doc = t.m.state_doc();
    let mut t = T::start_at(
        T0 + 1799.0,
        with_grace(),
        Restored::Found(Box::new(doc)),
        missing(),
    );
    assert_eq!(t.m.view().episode_key.unwrap(), key);
    tokio::time::advance(Duration::from_secs(1)).await;
    t.m.handle_timeout();
    let sent = t.signals();
    assert_eq!(
        sent.len(),
        1,
        "due 30 min after the episode's start, not the restart"
    );
    assert_eq!(sent[0].event, SignalEvent::VerdictUnknown);
    assert_eq!(sent[0].idempotency_key("host-1"), key);
    assert!(sent[0].reason.as_deref().unwrap().contains("No such file"));
    t.advance(Duration::from_secs(3600)).await;
    assert!(t.signals().is_empty(), "once per episode");
    assert!(t
        .m
        .poll_timeout()
        .is_some_and(|d| d > tokio::time::Instant::now()));
}

#[tokio::test(start_paused = true)]
async fn a_new_image_ends_the_unknown_episode() {
    let mut t = T::start_with(with_grace(), Restored::Missing, missing());
    assert!(t.m.view().unknown.is_some());
    t.reload(Restored::Missing, Ok(id("bb")));
    assert!(t.m.view().unknown.is_none());
    assert_eq!(t.full_started().1, RescanReason::Sighup);
}

#[tokio::test(start_paused = true)]
async fn drift_ends_an_unknown_episode() {
    let mut t = T::start_with(with_grace(), Restored::Missing, Ok(id("aa")));
    let (scan, _) = t.full_started();
    t.m.handle_scan_done(scan, ScanOutcome::Done(vec![unreadable("/r")].into()));
    assert!(t.m.view().unknown.is_some());
    t.drift("/x").await;
    assert!(t.m.view().unknown.is_none());
    t.advance(Duration::from_secs(7200)).await;
    assert!(!t.asked(|a| matches!(a, Action::Signal(s) if s.event == SignalEvent::VerdictUnknown)));
}
