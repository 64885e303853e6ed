//! The agent's verdict as a state machine, free of IO and clocks.
//!
//! Check results flow in (full scans, targeted re-checks after events, and
//! confirmation re-checks); the engine keeps the current findings, decides
//! when drift needs confirming, and declares it once a confirmation read
//! sees it again. A declared episode is sticky until a new manifest.
//!
//! Verdict, failing closed:
//! - `drifted` once drift is declared for this manifest;
//! - otherwise `unknown` while the manifest or the state file is unusable,
//!   before the first full scan completes, while any path could not be
//!   checked, or while a drift finding awaits confirmation;
//! - otherwise `clean`.

use super::state::{Declared, RecordedFinding, MAX_RECORDED_FINDINGS};
use crate::manifest::diff::{Counts, Finding, FindingKind, Verdict};
use std::collections::{BTreeMap, HashSet};

/// Most paths re-read to confirm drift: one confirmed path is enough.
pub const MAX_CONFIRM_PATHS: usize = 64;

type Key = (Box<[u8]>, FindingKind);

/// What an applied result asks the caller to do.
#[derive(Debug, Default, PartialEq)]
pub struct Applied {
    /// Findings not seen before (to log once each).
    pub new_findings: Vec<Finding>,
    /// Paths to read again before drift is declared.
    pub confirm: Vec<Box<[u8]>>,
    /// Drift was declared by this result (persist it, log it).
    pub declared: bool,
}

/// The engine. `digest` and `image_id` identify the manifest in use.
#[derive(Debug, Default)]
pub struct Engine {
    digest: Option<String>,
    image_id: String,
    problem: Option<String>,
    findings: BTreeMap<Key, Finding>,
    full_scan_done: bool,
    full_in_flight: bool,
    touched_during_full: Vec<Box<[u8]>>,
    declared: Option<Declared>,
    logged: HashSet<Key>,
}

/// Is `path` at or below `start`?
pub fn in_scope(path: &[u8], start: &[u8]) -> bool {
    start == b"/"
        || path == start
        || (path.len() > start.len() && path.starts_with(start) && path[start.len()] == b'/')
}

fn is_drift(f: &Finding) -> bool {
    f.kind != FindingKind::Unreadable
}

impl Engine {
    pub fn new() -> Engine {
        Engine::default()
    }

    /// A usable manifest is in place. `restored` is the episode from the
    /// state file: kept only if it is for this very manifest.
    pub fn set_manifest(&mut self, digest: &str, image_id: &str, restored: Option<Declared>) {
        if self.digest.as_deref() != Some(digest) {
            self.findings.clear();
            self.logged.clear();
            self.full_scan_done = false;
            self.touched_during_full.clear();
        }
        self.digest = Some(digest.to_string());
        self.image_id = image_id.to_string();
        self.problem = None;
        self.declared = restored.filter(|d| d.manifest_digest == digest);
    }

    /// The manifest (or the state file) cannot be used: verdict unknown,
    /// with the reason, until it can. An episode already declared for the
    /// manifest in use stays declared.
    pub fn set_problem(&mut self, reason: String) {
        self.problem = Some(reason);
    }

    pub fn problem(&self) -> Option<&str> {
        self.problem.as_deref()
    }

    pub fn declared(&self) -> Option<&Declared> {
        self.declared.as_ref()
    }

    pub fn full_scan_done(&self) -> bool {
        self.full_scan_done
    }

    pub fn verdict(&self) -> Verdict {
        if self.declared.is_some() {
            return Verdict::Drifted;
        }
        if self.problem.is_some() || self.digest.is_none() || !self.full_scan_done {
            return Verdict::Unknown;
        }
        if self.findings.is_empty() {
            Verdict::Clean
        } else {
            // Unreadable paths, or drift not yet confirmed.
            Verdict::Unknown
        }
    }

    /// Current findings, sorted by path.
    pub fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.findings.values()
    }

    pub fn counts(&self) -> Counts {
        let all: Vec<Finding> = self.findings.values().cloned().collect();
        Counts::of(&all)
    }

    /// A full scan is starting: targeted results from now on override it.
    pub fn full_scan_started(&mut self) {
        self.full_in_flight = true;
        self.touched_during_full.clear();
    }

    /// A full scan ended without a result (error or cancelled).
    pub fn full_scan_failed(&mut self) {
        self.full_in_flight = false;
        self.touched_during_full.clear();
    }

    /// Apply a full scan's findings.
    pub fn apply_full(&mut self, findings: Vec<Finding>) -> Applied {
        let touched = std::mem::take(&mut self.touched_during_full);
        self.full_in_flight = false;
        let fresher = |p: &[u8]| touched.iter().any(|t| in_scope(p, t));
        let mut next: BTreeMap<Key, Finding> = self
            .findings
            .iter()
            .filter(|((p, _), _)| fresher(p))
            .map(|(k, f)| (k.clone(), f.clone()))
            .collect();
        for f in findings.into_iter().filter(|f| !fresher(&f.path)) {
            next.insert((f.path.clone(), f.kind), f);
        }
        self.findings = next;
        self.full_scan_done = true;
        let mut applied = self.log_new();
        applied.confirm = self.unconfirmed_paths();
        applied
    }

    /// Apply a targeted re-check of the subtrees at `scope`. With
    /// `confirming`, drift seen again is declared.
    pub fn apply_targeted(
        &mut self,
        scope: &[Box<[u8]>],
        findings: Vec<Finding>,
        confirming: bool,
        now_unix: f64,
    ) -> Applied {
        self.findings
            .retain(|(p, _), _| !scope.iter().any(|s| in_scope(p, s)));
        if self.full_in_flight {
            self.touched_during_full.extend(scope.iter().cloned());
        }
        let drift: Vec<Finding> = findings.iter().filter(|f| is_drift(f)).cloned().collect();
        for f in findings {
            self.findings.insert((f.path.clone(), f.kind), f);
        }
        let mut applied = self.log_new();
        if self.declared.is_none() && !drift.is_empty() {
            if confirming {
                self.declare(&drift, now_unix);
                applied.declared = true;
            } else {
                applied.confirm = self.unconfirmed_paths();
            }
        }
        applied
    }

    fn declare(&mut self, drift: &[Finding], now_unix: f64) {
        self.declared = Some(Declared {
            manifest_digest: self.digest.clone().unwrap_or_default(),
            image_id: self.image_id.clone(),
            first_detected_unix: now_unix,
            findings_total: drift.len() as u64,
            findings: drift
                .iter()
                .take(MAX_RECORDED_FINDINGS)
                .map(RecordedFinding::from)
                .collect(),
        });
    }

    /// Paths of drift findings awaiting confirmation (none once declared).
    fn unconfirmed_paths(&self) -> Vec<Box<[u8]>> {
        if self.declared.is_some() {
            return Vec::new();
        }
        let mut paths: Vec<Box<[u8]>> = self
            .findings
            .values()
            .filter(|f| is_drift(f))
            .map(|f| f.path.clone())
            .collect();
        paths.dedup();
        paths.truncate(MAX_CONFIRM_PATHS);
        paths
    }

    fn log_new(&mut self) -> Applied {
        let mut applied = Applied::default();
        for (k, f) in &self.findings {
            if self.logged.insert(k.clone()) {
                applied.new_findings.push(f.clone());
            }
        }
        applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(path: &str, kind: FindingKind) -> Finding {
        Finding::simple(path.as_bytes(), kind)
    }

    fn scope(p: &str) -> Vec<Box<[u8]>> {
        vec![p.as_bytes().into()]
    }

    fn engine() -> Engine {
        let mut e = Engine::new();
        e.set_manifest("blake3:aa", "img", None);
        e
    }

    #[test]
    fn unknown_until_the_first_full_scan_then_clean() {
        let mut e = engine();
        assert_eq!(e.verdict(), Verdict::Unknown);
        e.full_scan_started();
        let a = e.apply_full(vec![]);
        assert_eq!(a, Applied::default());
        assert_eq!(e.verdict(), Verdict::Clean);
    }

    #[test]
    fn drift_is_confirmed_before_it_is_declared_and_then_sticks() {
        let mut e = engine();
        e.apply_full(vec![]);
        let a = e.apply_targeted(
            &scope("/etc/x"),
            vec![f("/etc/x", FindingKind::Modified)],
            false,
            1.0,
        );
        assert_eq!(a.confirm, scope("/etc/x"));
        assert!(!a.declared);
        assert_eq!(
            e.verdict(),
            Verdict::Unknown,
            "unconfirmed drift is not clean"
        );
        let a = e.apply_targeted(
            &scope("/etc/x"),
            vec![f("/etc/x", FindingKind::Modified)],
            true,
            2.0,
        );
        assert!(a.declared);
        assert_eq!(e.verdict(), Verdict::Drifted);
        assert_eq!(e.declared().unwrap().first_detected_unix, 2.0);
        // Reverting the file does not clear it.
        let a = e.apply_targeted(&scope("/etc/x"), vec![], false, 3.0);
        assert!(!a.declared && a.confirm.is_empty());
        assert_eq!(e.verdict(), Verdict::Drifted);
        assert_eq!(e.declared().unwrap().first_detected_unix, 2.0);
    }

    #[test]
    fn transient_drift_that_does_not_confirm_is_not_declared() {
        let mut e = engine();
        e.apply_full(vec![]);
        e.apply_targeted(
            &scope("/a"),
            vec![f("/a", FindingKind::Removed)],
            false,
            1.0,
        );
        let a = e.apply_targeted(&scope("/a"), vec![], true, 2.0);
        assert!(!a.declared);
        assert_eq!(e.verdict(), Verdict::Clean);
    }

    #[test]
    fn restored_episode_only_for_the_same_manifest() {
        let mut e = engine();
        e.apply_full(vec![]);
        e.apply_targeted(&scope("/a"), vec![f("/a", FindingKind::Added)], true, 5.0);
        let declared = e.declared().cloned();
        let mut again = Engine::new();
        again.set_manifest("blake3:aa", "img", declared.clone());
        assert_eq!(
            again.verdict(),
            Verdict::Drifted,
            "a restart keeps the host drifted"
        );
        let mut new_image = Engine::new();
        new_image.set_manifest("blake3:bb", "img2", declared);
        new_image.apply_full(vec![]);
        assert_eq!(
            new_image.verdict(),
            Verdict::Clean,
            "a new manifest starts clean"
        );
    }

    #[test]
    fn unreadable_is_unknown_and_problems_are_unknown() {
        let mut e = engine();
        let a = e.apply_full(vec![f("/root/x", FindingKind::Unreadable)]);
        assert!(
            a.confirm.is_empty(),
            "unreadable paths are not drift to confirm"
        );
        assert_eq!(e.verdict(), Verdict::Unknown);
        e.apply_targeted(&scope("/root"), vec![], false, 1.0);
        assert_eq!(e.verdict(), Verdict::Clean);
        e.set_problem("manifest missing".into());
        assert_eq!(e.verdict(), Verdict::Unknown);
    }

    #[test]
    fn targeted_results_during_a_full_scan_win() {
        let mut e = engine();
        e.apply_full(vec![]);
        e.full_scan_started();
        e.apply_targeted(
            &scope("/etc"),
            vec![f("/etc/new", FindingKind::Added)],
            false,
            1.0,
        );
        // The full scan read /etc before the change and saw nothing there.
        e.apply_full(vec![f("/usr/old", FindingKind::Unreadable)]);
        let paths: Vec<_> = e.findings().map(|f| f.path.clone()).collect();
        assert_eq!(
            paths,
            vec![b"/etc/new".as_slice().into(), b"/usr/old".as_slice().into()] as Vec<Box<[u8]>>
        );
    }

    #[test]
    fn each_finding_is_logged_once() {
        let mut e = engine();
        let a = e.apply_full(vec![f("/x", FindingKind::Unreadable)]);
        assert_eq!(a.new_findings.len(), 1);
        let a = e.apply_full(vec![f("/x", FindingKind::Unreadable)]);
        assert!(a.new_findings.is_empty());
    }

    #[test]
    fn scope_matching() {
        assert!(in_scope(b"/a/b", b"/a"));
        assert!(in_scope(b"/a", b"/a"));
        assert!(!in_scope(b"/ab", b"/a"));
        assert!(in_scope(b"/anything", b"/"));
    }
}
