//! The current findings: every one counted exactly, at most `findings_limit`
//! held (the first by path; see [`Bounded`]), replaced by scope as fresh
//! check results come in.
//!
//! A fresh result for a part of the tree replaces the findings there
//! exactly when every one of them is held (the part lies before the cut).
//! When some are only counted, which of them are gone cannot be known
//! without the whole tree: the result is not applied and the caller starts
//! a full scan, which replaces everything.

use crate::manifest::bounded::{Bounded, Tally};
use crate::manifest::diff::{Counts, Finding, FindingKind};
use crate::manifest::paths::in_scope;
use std::collections::HashSet;

#[derive(Debug)]
pub struct Findings {
    set: Bounded,
    /// The total last reported as beyond the limit.
    reported: Option<u64>,
}

/// What replacing findings by scope did.
#[derive(Debug, PartialEq)]
pub enum Replaced {
    /// The findings that were not there before (each to log once): held
    /// findings only, so at most the limit.
    Applied(Vec<Finding>),
    /// The scope reaches findings that are counted, not held: nothing
    /// changed; only a full scan can recount them.
    NeedsFullScan,
}

impl Findings {
    pub fn new(limit: usize) -> Findings {
        Findings {
            set: Bounded::new(limit),
            reported: None,
        }
    }

    pub fn counts(&self) -> Counts {
        self.set.counts()
    }

    pub fn tally(&self) -> &Tally {
        self.set.tally()
    }

    /// Held findings.
    pub fn len(&self) -> usize {
        self.set.held()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Every finding, held or not.
    pub fn total(&self) -> u64 {
        self.set.total()
    }

    /// Findings that are drift (not merely unreadable).
    pub fn drift(&self) -> u64 {
        self.set.drift()
    }

    /// Unreadable paths whose check failed as a whole.
    pub fn failed(&self) -> u64 {
        self.set.failed()
    }

    /// Some findings are counted, not held.
    pub fn truncated(&self) -> bool {
        self.set.truncated()
    }

    pub fn limit(&self) -> usize {
        self.set.limit()
    }

    /// The held findings, sorted by path, then kind.
    pub fn iter(&self) -> impl Iterator<Item = &Finding> {
        self.set.iter()
    }

    /// Paths to read again to confirm drift (held first), at most `max`.
    pub fn drift_paths(&self, max: usize) -> Vec<Box<[u8]>> {
        self.set.drift_paths(max)
    }

    pub fn contains(&self, path: &[u8], kind: FindingKind) -> bool {
        self.set.iter().any(|f| *f.path == *path && f.kind == kind)
    }

    pub fn clear(&mut self) {
        self.set = Bounded::new(self.set.limit());
        self.reported = None;
    }

    /// `(total, held)` if more findings exist than are held and the total
    /// changed since it was last returned (a log line per change, not per
    /// scan).
    pub fn truncation_news(&mut self) -> Option<(u64, usize)> {
        if !self.set.truncated() {
            self.reported = None;
            return None;
        }
        let total = self.set.total();
        if self.reported == Some(total) {
            return None;
        }
        self.reported = Some(total);
        Some((total, self.set.held()))
    }

    /// A re-check of `scopes` found `fresh`: replace the findings at or
    /// below them, if every one of those is held.
    pub fn replace_in(&mut self, scopes: &[Box<[u8]>], fresh: Bounded) -> Replaced {
        if !self.set.covers_all(scopes) {
            return Replaced::NeedsFullScan;
        }
        let old: HashSet<(Box<[u8]>, FindingKind)> = self
            .set
            .take_scopes(scopes)
            .into_iter()
            .map(|f| (f.path, f.kind))
            .collect();
        let new = fresh
            .iter()
            .filter(|f| !old.contains(&(f.path.clone(), f.kind)))
            .cloned()
            .collect();
        self.set.merge(fresh);
        Replaced::Applied(new)
    }

    /// A full scan found `fresh`: it replaces every finding except those
    /// at or below `keep` (paths re-checked while the full scan ran, whose
    /// findings are fresher). Returns the new findings, and the paths of
    /// `keep` to re-check because that could not be done exactly (findings
    /// there are counted, not held, in one of the two lists): the full
    /// scan's findings stand for them until the re-check.
    pub fn replace_outside(
        &mut self,
        keep: &[Box<[u8]>],
        mut fresh: Bounded,
    ) -> (Vec<Finding>, Vec<Box<[u8]>>) {
        // The fresher findings of `keep` stand only if that is exact.
        let exact = self.set.covers_all(keep) && fresh.covers_all(keep);
        // New: held now, and not a finding before. One at or after the old
        // cut may have been there, counted: it is not logged.
        let was: HashSet<(Box<[u8]>, FindingKind)> =
            self.set.iter().map(|f| (f.path.clone(), f.kind)).collect();
        let new: Vec<Finding> = fresh
            .iter()
            .filter(|f| self.set.before_cut(&f.path, f.kind))
            .filter(|f| !was.contains(&(f.path.clone(), f.kind)))
            .filter(|f| !exact || !keep.iter().any(|s| in_scope(&f.path, s)))
            .cloned()
            .collect();
        let mut recheck = Vec::new();
        if exact {
            fresh.take_scopes(keep);
            let kept = self.set.take_scopes(keep);
            fresh.merge(Bounded::of(self.set.limit(), kept));
        } else {
            recheck = keep.to_vec();
        }
        self.set = fresh;
        (new, recheck)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::diff::UnreadableKind;

    fn f(p: &str, k: FindingKind) -> Finding {
        Finding::simple(p.as_bytes(), k)
    }

    fn applied(r: Replaced) -> Vec<Finding> {
        match r {
            Replaced::Applied(v) => v,
            Replaced::NeedsFullScan => panic!("not applied"),
        }
    }

    #[test]
    fn counts_follow_inserts_replacements_and_removals() {
        let mut s = Findings::new(usize::MAX);
        let (new, _) = s.replace_outside(
            &[],
            Bounded::from(vec![
                f("/a", FindingKind::Added),
                Finding::unreadable(b"/b/c", UnreadableKind::ScanFailed, "x"),
                Finding::unreadable(b"/d", UnreadableKind::Other, "x"),
            ]),
        );
        assert_eq!(new.len(), 3);
        assert_eq!(
            (s.counts().added, s.counts().unreadable, s.failed()),
            (1, 2, 1)
        );
        assert_eq!(s.drift(), 1);
        let new = applied(s.replace_in(
            &[b"/b".as_slice().into()],
            vec![f("/b", FindingKind::Removed)].into(),
        ));
        assert_eq!(new, vec![f("/b", FindingKind::Removed)]);
        assert_eq!((s.counts().unreadable, s.failed(), s.drift()), (1, 0, 2));
        let new = applied(s.replace_in(
            &[b"/b".as_slice().into()],
            vec![f("/b", FindingKind::Removed)].into(),
        ));
        assert!(new.is_empty(), "seen again: not new");
        let (new, recheck) = s.replace_outside(
            &[b"/a".as_slice().into()],
            vec![
                f("/a", FindingKind::Removed),
                f("/d", FindingKind::Unreadable),
                f("/e", FindingKind::Type),
            ]
            .into(),
        );
        // /a was re-checked since: its finding stays and the fresh one is
        // dropped; /b is gone; /d was known; /e is new.
        assert_eq!(new, vec![f("/e", FindingKind::Type)]);
        assert!(recheck.is_empty());
        let paths: Vec<_> = s.iter().map(|f| (f.path.clone(), f.kind)).collect();
        assert_eq!(paths.len(), 3, "{paths:?}");
        assert_eq!(s.counts().total(), 3);
    }

    #[test]
    fn beyond_the_limit_counts_stay_exact_and_uncovered_scopes_wait_for_a_full_scan() {
        let mut s = Findings::new(3);
        let many = (0..1000).map(|i| f(&format!("/x/{i:04}"), FindingKind::Added));
        let (new, _) = s.replace_outside(&[], Bounded::of(3, many));
        assert_eq!(new.len(), 3, "only held findings are logged");
        assert_eq!((s.len(), s.total()), (3, 1000));
        assert!(s.truncated());
        // /a sorts before the cut: a re-check there applies exactly.
        let new = applied(s.replace_in(
            &[b"/a".as_slice().into()],
            Bounded::of(3, vec![f("/a", FindingKind::Added)]),
        ));
        assert_eq!(new, vec![f("/a", FindingKind::Added)]);
        assert_eq!((s.len(), s.total()), (3, 1001));
        // /x reaches counted findings: not applied.
        let r = s.replace_in(&[b"/x".as_slice().into()], Bounded::new(3));
        assert_eq!(r, Replaced::NeedsFullScan);
        assert_eq!(s.total(), 1001);
        // The full scan recounts; the touched scope beyond the cut is
        // handed back to be re-checked.
        let (_, recheck) = s.replace_outside(
            &[b"/x/0500".as_slice().into()],
            Bounded::of(
                3,
                (0..10).map(|i| f(&format!("/x/{i:04}"), FindingKind::Added)),
            ),
        );
        assert_eq!(recheck, vec![Box::<[u8]>::from(&b"/x/0500"[..])]);
        assert_eq!(s.total(), 10);
    }
}
