//! The guard's rules, one test each, under paused time.

use super::machine::*;
use super::query::Answer;
use super::spec::{Limit, OnError};
use crate::clock::ManualClock;
use crate::verdict::SignalEvent::{self, DriftDetected, VerdictUnknown};
use std::sync::Arc;
use std::time::Duration;

const D: &str = "blake3:aa";

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn settings(limit: &str, on_error: OnError) -> GuardSettings {
    GuardSettings {
        limit: Limit::parse(limit).unwrap(),
        settle: secs(120),
        recheck: secs(60),
        on_error,
    }
}

/// A guard whose jitter fraction is `jitter` every time.
fn guard(limit: &str, on_error: OnError, jitter: f64) -> GuardMachine {
    let clock = Arc::new(ManualClock::new(1_800_000_000.0, &[jitter]));
    GuardMachine::new(Some(settings(limit, on_error)), "h1", clock)
}

fn actions(g: &mut GuardMachine) -> Vec<GuardAction> {
    std::iter::from_fn(|| g.poll_action()).collect()
}

/// The keys of the looks among `actions`.
fn looks(actions: &[GuardAction]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            GuardAction::Look { key, .. } => Some(key.clone()),
            _ => None,
        })
        .collect()
}

fn released(actions: &[GuardAction]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            GuardAction::Release { key } => Some(key.clone()),
            _ => None,
        })
        .collect()
}

fn held_reports(actions: &[GuardAction]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, GuardAction::Report(GuardReport::Held { .. })))
        .count()
}

async fn advance(g: &mut GuardMachine, d: Duration) -> Vec<GuardAction> {
    tokio::time::advance(d).await;
    g.handle_timeout();
    actions(g)
}

fn answer(hosts: u64, drifted: u64, unknown: u64) -> Result<Answer, String> {
    Ok(Answer {
        hosts,
        drifted,
        unknown,
    })
}

/// Settle (no jitter), then the first look is asked for.
async fn settled(g: &mut GuardMachine, key: &str, event: SignalEvent) {
    g.handle_signal(key, event, D);
    let a = actions(g);
    assert!(
        matches!(&a[..], [GuardAction::Report(GuardReport::Settling { .. })]),
        "{a:?}"
    );
    assert_eq!(looks(&advance(g, secs(120)).await), [key]);
}

#[tokio::test(start_paused = true)]
async fn the_first_look_waits_settle_plus_a_jitter_of_up_to_half() {
    for (jitter, wait) in [(0.0, 120), (0.5, 150), (0.999, 180)] {
        let mut g = guard("10%", OnError::Hold, jitter);
        g.handle_signal("k", DriftDetected, D);
        actions(&mut g);
        assert_eq!(g.episode("k").unwrap().phase, Phase::Settling);
        assert!(
            looks(&advance(&mut g, secs(wait - 1)).await).is_empty(),
            "{jitter}"
        );
        assert_eq!(looks(&advance(&mut g, secs(1)).await), ["k"], "{jitter}");
        assert_eq!(g.episode("k").unwrap().phase, Phase::Looking);
    }
}

#[tokio::test(start_paused = true)]
async fn within_the_limit_is_released_once() {
    let mut g = guard("10%", OnError::Hold, 0.0);
    settled(&mut g, "k", DriftDetected).await;
    // 20 hosts, 1 other drifted: 2 of 20, the limit is ceil(2) = 2.
    g.handle_answer("k", answer(20, 1, 0));
    let a = actions(&mut g);
    assert_eq!(released(&a), ["k"]);
    assert!(g.is_released("k"));
    assert_eq!(g.poll_timeout(), None, "no more looks");
    // A late or repeated answer changes nothing.
    g.handle_answer("k", answer(20, 19, 0));
    assert!(actions(&mut g).is_empty());
    assert!(matches!(
        g.last(),
        Some((
            Judged {
                outcome: Outcome::Within {
                    hosts: 20,
                    drifted: 2,
                    limit: 2
                },
                ..
            },
            _
        ))
    ));
}

#[tokio::test(start_paused = true)]
async fn over_the_limit_is_held_rechecked_and_logged_once() {
    let mut g = guard("10%", OnError::Hold, 0.0);
    settled(&mut g, "k", DriftDetected).await;
    g.handle_answer("k", answer(20, 2, 0)); // 3 of 20 > 2
    let a = actions(&mut g);
    assert!(released(&a).is_empty());
    assert_eq!(held_reports(&a), 1);
    let e = g.episode("k").unwrap();
    assert_eq!(e.phase, Phase::Held);
    assert!(
        e.why.starts_with(
            "3 of 20 hosts of this image drifted (this one included), over the limit of 2"
        ),
        "{}",
        e.why
    );
    // Looks again every recheck; the same decision is not logged again.
    for others in [5, 19, 3] {
        assert!(looks(&advance(&mut g, secs(59)).await).is_empty());
        assert_eq!(looks(&advance(&mut g, secs(1)).await), ["k"]);
        g.handle_answer("k", answer(20, others, 0));
        assert_eq!(held_reports(&actions(&mut g)), 0);
    }
    // The fleet recovered (replaced hosts): released.
    advance(&mut g, secs(60)).await;
    g.handle_answer("k", answer(20, 1, 0));
    assert_eq!(released(&actions(&mut g)), ["k"]);
}

#[tokio::test(start_paused = true)]
async fn hosts_count_at_least_one_and_this_host_always_counts() {
    let s = settings("10%", OnError::Hold);
    // An empty answer: 1 host, this one: 1 of 1, limit 1.
    assert_eq!(
        judge(&s, DriftDetected, &answer(0, 0, 0)),
        Outcome::Within {
            hosts: 1,
            drifted: 1,
            limit: 1
        }
    );
    // One host of a small fleet can always be replaced.
    assert_eq!(
        judge(&s, DriftDetected, &answer(3, 0, 0)),
        Outcome::Within {
            hosts: 3,
            drifted: 1,
            limit: 1
        }
    );
    assert_eq!(
        judge(&s, DriftDetected, &answer(3, 1, 0)),
        Outcome::Over {
            hosts: 3,
            drifted: 2,
            limit: 1
        }
    );
    // A count is a count.
    let three = settings("3", OnError::Hold);
    assert!(matches!(
        judge(&three, DriftDetected, &answer(1000, 2, 0)),
        Outcome::Within {
            drifted: 3,
            limit: 3,
            ..
        }
    ));
    assert!(matches!(
        judge(&three, DriftDetected, &answer(1000, 3, 0)),
        Outcome::Over { drifted: 4, .. }
    ));
    // An unknown verdict is judged by the unknown hosts, drift by the
    // drifted ones.
    assert!(matches!(
        judge(&three, VerdictUnknown, &answer(10, 9, 1)),
        Outcome::Within { drifted: 2, .. }
    ));
    assert!(matches!(
        judge(&three, DriftDetected, &answer(10, 1, 9)),
        Outcome::Within { drifted: 2, .. }
    ));
    assert!(matches!(
        judge(&three, VerdictUnknown, &answer(10, 0, 5)),
        Outcome::Over { drifted: 6, .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn a_failed_look_holds_or_sends_by_on_error() {
    let mut g = guard("10%", OnError::Hold, 0.0);
    settled(&mut g, "k", DriftDetected).await;
    g.handle_answer(
        "k",
        Err("POST http://p/api/v1/query: connection refused".into()),
    );
    let a = actions(&mut g);
    assert!(released(&a).is_empty());
    assert_eq!(held_reports(&a), 1);
    assert!(g.episode("k").unwrap().why.contains("on_error = \"hold\""));
    // A different decision (now over the limit) is logged; back to an
    // error is logged again.
    advance(&mut g, secs(60)).await;
    g.handle_answer("k", answer(20, 5, 0));
    assert_eq!(held_reports(&actions(&mut g)), 1);
    advance(&mut g, secs(60)).await;
    g.handle_answer("k", Err("timeout".into()));
    assert_eq!(held_reports(&actions(&mut g)), 1);

    let mut g = guard("10%", OnError::Send, 0.0);
    settled(&mut g, "k", DriftDetected).await;
    g.handle_answer("k", Err("HTTP 503".into()));
    assert_eq!(released(&actions(&mut g)), ["k"]);
    assert!(g.episode("k").unwrap().why.contains("on_error = \"send\""));
}

#[tokio::test(start_paused = true)]
async fn a_limit_of_zero_never_releases_not_even_on_an_error() {
    let mut g = guard("0", OnError::Send, 0.0);
    settled(&mut g, "k", DriftDetected).await;
    g.handle_answer("k", answer(1000, 0, 0));
    assert!(released(&actions(&mut g)).is_empty());
    advance(&mut g, secs(60)).await;
    g.handle_answer("k", Err("refused".into()));
    assert!(released(&actions(&mut g)).is_empty());
    assert!(g
        .episode("k")
        .unwrap()
        .why
        .contains("never released automatically"));
}

#[tokio::test(start_paused = true)]
async fn a_reload_looks_again_at_once_and_a_raised_limit_releases() {
    let mut g = guard("10%", OnError::Hold, 0.0);
    settled(&mut g, "k", DriftDetected).await;
    g.handle_answer("k", answer(20, 19, 0));
    actions(&mut g);
    // Settling episodes keep their time; held ones look at once.
    g.handle_signal("k2", VerdictUnknown, D);
    actions(&mut g);
    g.handle_settings(Some(settings("100%", OnError::Hold)));
    let a = advance(&mut g, Duration::ZERO).await;
    assert_eq!(looks(&a), ["k"]);
    g.handle_answer("k", answer(20, 19, 0));
    assert_eq!(released(&actions(&mut g)), ["k"]);
    assert_eq!(g.episode("k2").unwrap().phase, Phase::Settling);
}

#[tokio::test(start_paused = true)]
async fn a_guard_removed_by_a_reload_releases_everything_waiting() {
    let mut g = guard("10%", OnError::Hold, 0.0);
    settled(&mut g, "k", DriftDetected).await;
    g.handle_answer("k", answer(20, 19, 0));
    g.handle_signal("k2", DriftDetected, D);
    g.handle_signal("k3", DriftDetected, D);
    advance(&mut g, secs(120)).await; // k2, k3: looking
    g.handle_settings(None);
    let mut r = released(&actions(&mut g));
    r.sort();
    assert_eq!(r, ["k", "k2", "k3"]);
    // Their answers, when they come, change nothing.
    g.handle_answer("k2", answer(20, 19, 0));
    assert!(actions(&mut g).is_empty());
    // A new signal without a guard is released at once.
    g.handle_signal("k4", DriftDetected, D);
    assert!(g.is_released("k4"));
}

#[tokio::test(start_paused = true)]
async fn a_replaced_manifest_drops_what_waits_and_keeps_what_was_released() {
    let mut g = guard("10%", OnError::Hold, 0.0);
    g.handle_manifest(D);
    settled(&mut g, "sent", DriftDetected).await;
    g.handle_answer("sent", answer(20, 0, 0));
    g.handle_signal("held", DriftDetected, D);
    advance(&mut g, secs(120)).await;
    g.handle_answer("held", answer(20, 19, 0));
    g.handle_signal("settling", VerdictUnknown, D);
    actions(&mut g);
    g.handle_manifest(D);
    assert!(actions(&mut g).is_empty(), "the same digest drops nothing");
    g.handle_manifest("blake3:bb");
    let a = actions(&mut g);
    let mut dropped: Vec<&str> = a
        .iter()
        .filter_map(|a| match a {
            GuardAction::Drop { key, digest, now } => {
                assert_eq!((digest.as_str(), now.as_str()), (D, "blake3:bb"));
                Some(key.as_str())
            }
            _ => None,
        })
        .collect();
    dropped.sort();
    assert_eq!(dropped, ["held", "settling"]);
    assert!(g.is_released("sent"));
    assert!(g.episode("held").is_none());
    // A signal of the old image arriving now is dropped at once.
    g.handle_signal("late", DriftDetected, D);
    assert!(matches!(
        &actions(&mut g)[..],
        [GuardAction::Drop { .. }, GuardAction::Report(_)]
    ));
    assert!(g.episode("late").is_none());
}

#[tokio::test(start_paused = true)]
async fn a_look_that_never_answers_counts_as_failed() {
    let mut g = guard("10%", OnError::Hold, 0.0);
    settled(&mut g, "k", DriftDetected).await;
    let a = advance(&mut g, LOOK_DEADLINE).await;
    assert_eq!(held_reports(&a), 1);
    let e = g.episode("k").unwrap();
    assert_eq!(e.phase, Phase::Held);
    assert!(e.why.contains("no answer in time"), "{}", e.why);
}

#[tokio::test(start_paused = true)]
async fn episodes_are_decided_apart_and_released_ones_adopted() {
    let mut g = guard("10%", OnError::Hold, 0.0);
    g.adopt_released("old", DriftDetected, D);
    assert!(g.is_released("old"));
    g.handle_signal("old", DriftDetected, D);
    assert!(g.is_released("old"), "never judged again");
    settled(&mut g, "k", DriftDetected).await;
    g.handle_answer("other", answer(20, 0, 0));
    assert!(actions(&mut g).is_empty(), "an answer to no look");
    g.forget("old");
    assert!(g.episode("old").is_none());
    g.forget("k");
    assert!(
        g.episode("k").is_some(),
        "only released episodes are forgotten"
    );
}
