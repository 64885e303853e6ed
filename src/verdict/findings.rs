//! The current findings, by path and kind, with their counts kept exact as
//! findings come and go (so the verdict never walks the set).

use crate::manifest::diff::{Counts, Finding, FindingKind, UnreadableKind};
use crate::manifest::paths::in_scope;
use std::collections::BTreeMap;

type Key = (Box<[u8]>, FindingKind);

/// Findings sorted by path, then kind.
#[derive(Debug, Default)]
pub struct Findings {
    map: BTreeMap<Key, Finding>,
    counts: Counts,
    /// Unreadable findings whose cause is a failed check (retried).
    failed: u64,
}

impl Findings {
    pub fn counts(&self) -> Counts {
        self.counts
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Findings that are drift (not merely unreadable).
    pub fn drift(&self) -> u64 {
        self.counts.total() - self.counts.unreadable
    }

    /// Unreadable paths whose check failed as a whole.
    pub fn failed(&self) -> u64 {
        self.failed
    }

    pub fn iter(&self) -> impl Iterator<Item = &Finding> {
        self.map.values()
    }

    fn account(&mut self, f: &Finding, add: bool) {
        let failed = f.cause == Some(UnreadableKind::ScanFailed);
        if add {
            self.counts.add(f.kind);
            self.failed += u64::from(failed);
        } else {
            self.counts.remove(f.kind);
            self.failed -= u64::from(failed);
        }
    }

    /// Add or replace a finding; true if it is new (to log once).
    pub fn insert(&mut self, f: Finding) -> bool {
        self.account(&f, true);
        match self.map.insert((f.path.clone(), f.kind), f) {
            Some(old) => {
                self.account(&old, false);
                false
            }
            None => true,
        }
    }

    pub fn contains(&self, path: &[u8], kind: FindingKind) -> bool {
        self.map.contains_key(&(Box::from(path), kind))
    }

    pub fn clear(&mut self) {
        *self = Findings::default();
    }

    /// A re-check of `scopes` found `fresh`: replace the findings at or
    /// below them. Returns the findings that were not there before.
    pub fn replace_in(&mut self, scopes: &[Box<[u8]>], fresh: Vec<Finding>) -> Vec<Finding> {
        self.replace_where(|p| scopes.iter().any(|s| in_scope(p, s)), fresh)
    }

    /// A full scan found `fresh`: replace every finding except those at or
    /// below `keep` (paths re-checked after the full scan read them, whose
    /// findings are fresher). Returns the findings that are new.
    pub fn replace_outside(&mut self, keep: &[Box<[u8]>], fresh: Vec<Finding>) -> Vec<Finding> {
        self.replace_where(|p| !keep.iter().any(|s| in_scope(p, s)), fresh)
    }

    fn replace_where(
        &mut self,
        replaced: impl Fn(&[u8]) -> bool,
        fresh: Vec<Finding>,
    ) -> Vec<Finding> {
        let old = std::mem::take(&mut self.map);
        *self = Findings::default();
        let mut known = std::collections::HashSet::new();
        for (k, f) in old {
            if replaced(&k.0) {
                known.insert(k);
            } else {
                self.account(&f, true);
                self.map.insert(k, f);
            }
        }
        let mut new = Vec::new();
        for f in fresh.into_iter().filter(|f| replaced(&f.path)) {
            if !known.contains(&(f.path.clone(), f.kind)) {
                new.push(f.clone());
            }
            self.insert(f);
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(p: &str, k: FindingKind) -> Finding {
        Finding::simple(p.as_bytes(), k)
    }

    #[test]
    fn counts_follow_inserts_replacements_and_removals() {
        let mut s = Findings::default();
        assert!(s.insert(f("/a", FindingKind::Added)));
        assert!(!s.insert(f("/a", FindingKind::Added)), "a replacement");
        s.insert(Finding::unreadable(
            b"/b/c",
            UnreadableKind::ScanFailed,
            "x",
        ));
        s.insert(Finding::unreadable(b"/d", UnreadableKind::Other, "x"));
        assert_eq!(
            (s.counts().added, s.counts().unreadable, s.failed()),
            (1, 2, 1)
        );
        assert_eq!(s.drift(), 1);
        let new = s.replace_in(
            &[b"/b".as_slice().into()],
            vec![f("/b", FindingKind::Removed)],
        );
        assert_eq!(new, vec![f("/b", FindingKind::Removed)]);
        assert_eq!((s.counts().unreadable, s.failed(), s.drift()), (1, 0, 2));
        let new = s.replace_in(
            &[b"/b".as_slice().into()],
            vec![f("/b", FindingKind::Removed)],
        );
        assert!(new.is_empty(), "seen again: not new");
        let new = s.replace_outside(
            &[b"/a".as_slice().into()],
            vec![
                f("/a", FindingKind::Removed),
                f("/d", FindingKind::Unreadable),
                f("/e", FindingKind::Type),
            ],
        );
        // /a was re-checked since: its finding stays and the fresh one is
        // dropped; /d was known; /e is new.
        assert_eq!(new, vec![f("/e", FindingKind::Type)]);
        let paths: Vec<_> = s.iter().map(|f| (f.path.clone(), f.kind)).collect();
        assert_eq!(paths.len(), 3, "{paths:?}");
        assert_eq!(s.counts().total(), 3);
    }
}
