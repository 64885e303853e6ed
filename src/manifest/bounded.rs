//! Findings with exact counts and a bounded list.
//!
//! A host can be made to produce any number of findings (an attacker adds a
//! million files). [`Bounded`] holds at most `limit` of them in detail: the
//! first by path, then kind. Every finding from its *cut* on is counted, not
//! held. So the counts (by kind, and the unreadable ones by cause) stay exact
//! whatever the number, memory does not grow with it, and a change to any
//! part of the tree before the cut can be applied exactly (every finding
//! there is known). PURE.

use super::diff::{Counts, Finding, FindingKind, UnreadableKind};
use super::paths::in_scope;
use std::collections::BTreeMap;

/// A finding's identity: its path, then its kind.
pub type Key = (Box<[u8]>, FindingKind);

/// Most paths of drift findings kept beyond the cut: enough to confirm
/// drift by reading some of them again (one confirmed path is enough).
pub const SAMPLE: usize = 64;

/// What is counted of every finding, held or not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// By kind.
    pub counts: Counts,
    /// Findings (of any kind) whose cause is a check that failed as a whole
    /// ([`UnreadableKind::ScanFailed`]): retried.
    pub failed: u64,
    /// `unreadable` findings by cause, in [`UnreadableKind::ALL`] order.
    pub causes: [u64; UnreadableKind::ALL.len()],
}

impl Tally {
    fn add(&mut self, f: &Finding) {
        self.counts.add(f.kind);
        if f.cause == Some(UnreadableKind::ScanFailed) {
            self.failed = self.failed.saturating_add(1);
        }
        if f.kind == FindingKind::Unreadable {
            let c = &mut self.causes[cause_index(f.cause)];
            *c = c.saturating_add(1);
        }
    }

    fn remove(&mut self, f: &Finding) {
        self.counts.remove(f.kind);
        if f.cause == Some(UnreadableKind::ScanFailed) {
            self.failed = self.failed.saturating_sub(1);
        }
        if f.kind == FindingKind::Unreadable {
            let c = &mut self.causes[cause_index(f.cause)];
            *c = c.saturating_sub(1);
        }
    }

    fn plus(&mut self, o: &Tally) {
        for k in FindingKind::ALL {
            self.counts.add_n(k, o.counts.get(k));
        }
        self.failed = self.failed.saturating_add(o.failed);
        for (a, b) in self.causes.iter_mut().zip(o.causes) {
            *a = a.saturating_add(b);
        }
    }

    /// `unreadable` findings with this cause.
    pub fn cause(&self, c: UnreadableKind) -> u64 {
        self.causes[cause_index(Some(c))]
    }
}

fn cause_index(c: Option<UnreadableKind>) -> usize {
    let c = c.unwrap_or(UnreadableKind::Other);
    UnreadableKind::ALL
        .iter()
        .position(|k| *k == c)
        .expect("ALL lists every cause")
}

/// Findings, at most `limit` of them held (the first by key), all counted.
///
/// Invariant: every finding whose key is before the cut is held; none at or
/// after it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Bounded {
    held: BTreeMap<Key, Finding>,
    limit: usize,
    cut: Option<Key>,
    tally: Tally,
    /// Paths of drift findings beyond the cut (at most [`SAMPLE`]).
    sample: Vec<Box<[u8]>>,
}

impl Bounded {
    /// An empty list holding at most `limit` findings.
    pub fn new(limit: usize) -> Bounded {
        Bounded {
            held: BTreeMap::new(),
            limit,
            cut: None,
            tally: Tally::default(),
            sample: Vec::new(),
        }
    }

    /// An empty list that holds everything (the CLI prints every finding).
    pub fn unbounded() -> Bounded {
        Bounded::new(usize::MAX)
    }

    /// A list of these findings (every one held if `limit` allows).
    pub fn of(limit: usize, findings: impl IntoIterator<Item = Finding>) -> Bounded {
        let mut b = Bounded::new(limit);
        for f in findings {
            b.insert(f);
        }
        b
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn counts(&self) -> Counts {
        self.tally.counts
    }

    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    /// Every finding, held or not.
    pub fn total(&self) -> u64 {
        self.tally.counts.total()
    }

    /// Findings that are drift (not merely unreadable).
    pub fn drift(&self) -> u64 {
        self.total() - self.tally.counts.unreadable
    }

    /// Findings whose check failed as a whole (retried).
    pub fn failed(&self) -> u64 {
        self.tally.failed
    }

    /// How many are held.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// No finding at all.
    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }

    /// Some findings are counted, not held.
    pub fn truncated(&self) -> bool {
        self.cut.is_some()
    }

    /// The held findings, sorted by path, then kind.
    pub fn iter(&self) -> impl Iterator<Item = &Finding> {
        self.held.values()
    }

    /// Into the held findings, sorted.
    pub fn into_vec(self) -> Vec<Finding> {
        self.held.into_values().collect()
    }

    /// Paths of drift findings to read again, at most `max`: the held
    /// ones, else (none is held) the sample of those beyond the cut.
    pub fn drift_paths(&self, max: usize) -> Vec<Box<[u8]>> {
        let mut out: Vec<Box<[u8]>> = Vec::new();
        for f in self.iter().filter(|f| f.is_drift()) {
            if out.len() >= max {
                return out;
            }
            if out.last() != Some(&f.path) {
                out.push(f.path.clone());
            }
        }
        if out.is_empty() {
            out.extend(self.sample.iter().take(max).cloned());
        }
        out
    }

    /// Add a finding (replacing a held one with the same key). A finding at
    /// or after the cut is only counted: the caller must not add one it has
    /// added before.
    pub fn insert(&mut self, f: Finding) {
        self.tally.add(&f);
        let key = (f.path.clone(), f.kind);
        if self.cut.as_ref().is_some_and(|c| key >= *c) {
            self.note_beyond(&f);
            return;
        }
        if let Some(old) = self.held.insert(key, f) {
            self.tally.remove(&old);
        }
        self.enforce();
    }

    /// Add the reason (and cause) of a path's failure to the finding
    /// already added for it, held or not. The counts follow the cause.
    pub fn annotate(
        &mut self,
        path: &[u8],
        kind: FindingKind,
        cause: UnreadableKind,
        reason: String,
    ) {
        match self.held.get_mut(&(Box::from(path), kind)) {
            Some(f) => {
                self.tally.remove(f);
                f.reason = Some(match f.reason.take() {
                    Some(r) => format!("{r}; {reason}"),
                    None => reason,
                });
                f.cause = Some(cause);
                self.tally.add(f);
            }
            None => {
                // Counted, not held: only the cause can change the counts
                // (the finding had none: it was added for an entry).
                if cause == UnreadableKind::ScanFailed {
                    self.tally.failed = self.tally.failed.saturating_add(1);
                }
            }
        }
    }

    /// Append a note to the reason of a held finding (nothing if not held).
    pub fn note(&mut self, path: &[u8], kind: FindingKind, note: &str) {
        if let Some(f) = self.held.get_mut(&(Box::from(path), kind)) {
            f.reason = Some(match f.reason.take() {
                Some(r) => format!("{r}; {note}"),
                None => note.to_string(),
            });
        }
    }

    /// Is this key before the cut (so it is held if it is a finding)?
    pub fn before_cut(&self, path: &[u8], kind: FindingKind) -> bool {
        self.cut
            .as_ref()
            .is_none_or(|(p, k)| (path, kind) < (&**p, *k))
    }

    /// Is every finding at or below `scope` held (so a fresh check of the
    /// scope can replace them exactly)?
    pub fn covers(&self, scope: &[u8]) -> bool {
        let Some((cut, _)) = &self.cut else {
            return true;
        };
        if scope == b"/" {
            return false;
        }
        // The scope is `scope` and `scope/...`: every such path sorts
        // before `scope` followed by '0' ('/' + 1).
        let end = [scope, b"0"].concat();
        **cut >= *end
    }

    /// Whether every scope is covered.
    pub fn covers_all(&self, scopes: &[Box<[u8]>]) -> bool {
        scopes.iter().all(|s| self.covers(s))
    }

    /// Drop the held findings at or below `scopes` (which must be
    /// covered); returns them.
    pub fn take_scopes(&mut self, scopes: &[Box<[u8]>]) -> Vec<Finding> {
        debug_assert!(self.covers_all(scopes));
        let keys: Vec<Key> = self
            .held
            .keys()
            .filter(|(p, _)| scopes.iter().any(|s| in_scope(p, s)))
            .cloned()
            .collect();
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            if let Some(f) = self.held.remove(&k) {
                self.tally.remove(&f);
                out.push(f);
            }
        }
        out
    }

    /// Add another list of findings (of a disjoint part of the tree): its
    /// held findings are added, its counted ones counted, and the cut moves
    /// to the earlier of the two.
    pub fn merge(&mut self, other: Bounded) {
        let mut beyond = other.tally;
        for f in other.held.values() {
            beyond.remove(f);
        }
        self.tally.plus(&beyond);
        for p in other.sample {
            self.push_sample(p);
        }
        if let Some(c) = other.cut {
            self.cut_at(c);
        }
        for f in other.held.into_values() {
            self.insert(f);
        }
    }

    /// Move the cut to `c` if that is earlier: held findings from `c` on
    /// become counted only.
    fn cut_at(&mut self, c: Key) {
        if self.cut.as_ref().is_some_and(|old| *old <= c) {
            return;
        }
        let beyond = self.held.split_off(&c);
        for f in beyond.values() {
            self.note_beyond(f);
        }
        self.cut = Some(c);
    }

    /// Hold at most `limit`: the last held ones become counted only.
    fn enforce(&mut self) {
        while self.held.len() > self.limit {
            let Some((k, f)) = self.held.pop_last() else {
                break;
            };
            self.note_beyond(&f);
            self.cut = Some(k);
        }
    }

    fn note_beyond(&mut self, f: &Finding) {
        if f.is_drift() {
            self.push_sample(f.path.clone());
        }
    }

    fn push_sample(&mut self, p: Box<[u8]>) {
        if self.sample.len() < SAMPLE && !self.sample.contains(&p) {
            self.sample.push(p);
        }
    }
}

impl From<Vec<Finding>> for Bounded {
    /// Every finding held.
    fn from(v: Vec<Finding>) -> Bounded {
        Bounded::of(usize::MAX, v)
    }
}
