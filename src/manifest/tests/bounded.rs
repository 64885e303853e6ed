//! The bounded list of findings against a plain map of every finding: the
//! counts always agree, the held findings are exactly the ones before the
//! cut, and replacing a covered scope is exact.

use crate::manifest::bounded::{Bounded, SAMPLE};
use crate::manifest::diff::{Counts, Finding, FindingKind, UnreadableKind};
use crate::manifest::paths::in_scope;
use proptest::prelude::*;
use std::collections::BTreeMap;

type Reference = BTreeMap<(Box<[u8]>, FindingKind), Finding>;

fn finding(path: &str, kind: FindingKind) -> Finding {
    if kind == FindingKind::Unreadable {
        Finding::unreadable(path.as_bytes(), UnreadableKind::ScanFailed, "x")
    } else {
        Finding::simple(path.as_bytes(), kind)
    }
}

/// Every check the list must pass against the reference.
fn agrees(b: &Bounded, r: &Reference) {
    let counts = Counts::of(&r.values().cloned().collect::<Vec<_>>());
    assert_eq!(b.counts(), counts, "counts");
    let failed = r
        .values()
        .filter(|f| f.cause == Some(UnreadableKind::ScanFailed))
        .count() as u64;
    assert_eq!(b.failed(), failed, "failed");
    assert!(
        b.held() <= b.limit(),
        "held {} > limit {}",
        b.held(),
        b.limit()
    );
    // The held findings are the first of the reference, in order.
    let held: Vec<&Finding> = b.iter().collect();
    let first: Vec<&Finding> = r.values().take(held.len()).collect();
    assert_eq!(held, first, "held findings are the first ones");
    if !b.truncated() {
        assert_eq!(held.len(), r.len(), "nothing cut: everything held");
    }
}

fn paths() -> impl Strategy<Value = String> {
    // A small alphabet with '-' and '.' (which sort before '/') so scopes
    // and their neighbours interleave.
    prop::collection::vec(prop::sample::select(vec!["a", "b", "a-", "a.b", "c"]), 1..4)
        .prop_map(|parts| format!("/{}", parts.join("/")))
}

fn kinds() -> impl Strategy<Value = FindingKind> {
    prop::sample::select(FindingKind::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Inserting distinct findings in any order keeps the counts exact and
    /// the first findings held.
    #[test]
    fn inserts_keep_counts_exact(
        limit in 0usize..6,
        found in prop::collection::vec((paths(), kinds()), 0..40),
    ) {
        let mut b = Bounded::new(limit);
        let mut r = Reference::new();
        for (p, k) in found {
            let f = finding(&p, k);
            if r.insert((f.path.clone(), k), f.clone()).is_some() {
                continue; // a check never reports one key twice
            }
            b.insert(f);
            agrees(&b, &r);
        }
    }

    /// A fresh check of a covered scope replaces what was there exactly;
    /// one of a scope that is not covered is refused (the caller rescans).
    #[test]
    fn replacing_a_covered_scope_is_exact(
        limit in 1usize..6,
        before in prop::collection::vec((paths(), kinds()), 0..30),
        scope in paths(),
        fresh in prop::collection::vec((paths(), kinds()), 0..30),
    ) {
        let mut b = Bounded::new(limit);
        let mut r = Reference::new();
        for (p, k) in before {
            let f = finding(&p, k);
            if r.insert((f.path.clone(), k), f.clone()).is_none() {
                b.insert(f);
            }
        }
        let scopes: Vec<Box<[u8]>> = vec![scope.as_bytes().into()];
        if !b.covers_all(&scopes) {
            // Then some finding in scope may be counted, not held: the
            // list must indeed have cut something.
            prop_assert!(b.truncated());
            return Ok(());
        }
        // Everything in scope was held.
        let in_ref = r.keys().filter(|(p, _)| in_scope(p, scope.as_bytes())).count();
        let taken = b.take_scopes(&scopes);
        prop_assert_eq!(taken.len(), in_ref);
        r.retain(|(p, _), _| !in_scope(p, scope.as_bytes()));
        // The fresh check of the scope, itself bounded.
        let mut check = Bounded::new(limit);
        for (p, k) in fresh {
            let p = format!("{scope}{p}");
            let f = finding(&p, k);
            if r.insert((f.path.clone(), k), f.clone()).is_none() {
                check.insert(f);
            }
        }
        b.merge(check);
        agrees(&b, &r);
    }
}

#[test]
fn a_cut_list_keeps_a_sample_of_drift_beyond_it() {
    let mut b = Bounded::new(2);
    b.insert(Finding::unreadable(
        b"/a",
        UnreadableKind::PermissionDenied,
        "x",
    ));
    b.insert(Finding::unreadable(
        b"/b",
        UnreadableKind::PermissionDenied,
        "x",
    ));
    for i in 0..100 {
        b.insert(Finding::simple(
            format!("/z{i:03}").as_bytes(),
            FindingKind::Added,
        ));
    }
    assert_eq!((b.held(), b.total(), b.drift()), (2, 102, 100));
    assert!(b.truncated());
    // No held finding is drift: the sample still names some to confirm.
    let drift = b.drift_paths(10);
    assert_eq!(drift.len(), 10);
    assert!(drift.iter().all(|p| p.starts_with(b"/z")));
    assert!(b.drift_paths(1000).len() <= SAMPLE);
    assert_eq!(b.tally().cause(UnreadableKind::PermissionDenied), 2);
}

#[test]
fn covers_only_scopes_wholly_before_the_cut() {
    let mut b = Bounded::new(2);
    for p in ["/a/1", "/a/2", "/b/1"] {
        b.insert(Finding::simple(p.as_bytes(), FindingKind::Added));
    }
    // Held: /a/1, /a/2; cut at /b/1.
    assert!(b.covers(b"/a"));
    assert!(b.covers(b"/a/1"));
    assert!(!b.covers(b"/b"));
    assert!(!b.covers(b"/"));
    assert!(!b.covers(b"/c"));
    // "/a-" sorts between "/a" and "/a/": still before the cut.
    assert!(b.covers(b"/a-"));
    let unbounded = Bounded::of(usize::MAX, b.iter().cloned());
    assert!(unbounded.covers(b"/"));
}

#[test]
fn annotating_follows_the_cause_held_or_not() {
    let mut b = Bounded::new(1);
    b.insert(Finding::simple(b"/a", FindingKind::Added));
    b.insert(Finding::simple(b"/b", FindingKind::Added));
    b.annotate(
        b"/a",
        FindingKind::Added,
        UnreadableKind::ScanFailed,
        "cannot list".into(),
    );
    b.annotate(
        b"/b",
        FindingKind::Added,
        UnreadableKind::ScanFailed,
        "cannot list".into(),
    );
    assert_eq!(b.failed(), 2, "both counted, one held");
    let a = b.iter().next().unwrap();
    assert_eq!(a.reason.as_deref(), Some("cannot list"));
    assert_eq!(b.total(), 2);
}
