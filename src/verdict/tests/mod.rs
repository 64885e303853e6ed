//! The machine's rules, each driven through its events with paused time.
//!
//! [`T`] wraps a machine with a [`ManualClock`]: wall time starts at
//! [`T0`] and moves with tokio's paused clock, so `advance` moves both.

mod episodes;
mod latch;
mod limit;
mod scans;
mod timers;

use super::episode::{DriftEpisode, StateDoc};
use super::machine::*;
use super::reason::*;
use crate::clock::ManualClock;
use crate::manifest::diff::{Finding, FindingKind, UnreadableKind, Verdict};
use std::sync::Arc;
use std::time::Duration;

/// Wall time at the start of every test.
pub const T0: f64 = 1_800_000_000.0;

pub fn settings() -> Settings {
    Settings {
        debounce: Duration::from_millis(200),
        confirm_delay: Duration::from_millis(100),
        full_scan_interval: Duration::from_secs(3600),
        full_scan_jitter: Duration::from_secs(600),
        retry_initial: Settings::RETRY_INITIAL,
        retry_max: Settings::RETRY_MAX,
        watch: true,
        signals: true,
        unknown_grace: None,
        host_id: "host-1".into(),
        findings_limit: 1000,
    }
}

pub fn id(digest: &str) -> ManifestId {
    ManifestId {
        digest: digest.into(),
        image_id: format!("img-{digest}"),
        entries: 10,
    }
}

pub fn missing() -> Result<ManifestId, ManifestFailure> {
    Err(ManifestFailure {
        problem: ManifestProblem::Missing,
        message: "read manifest /m: No such file or directory".into(),
    })
}

pub fn f(path: &str, kind: FindingKind) -> Finding {
    Finding::simple(path.as_bytes(), kind)
}

pub fn p(path: &str) -> Box<[u8]> {
    path.as_bytes().into()
}

/// A machine under test and the actions it has asked for. Persists are
/// answered with success as they are drained, unless `manual_persist`.
pub struct T {
    pub m: Machine,
    pub log: Vec<Action>,
    pub manual_persist: bool,
    pub written: Vec<StateDoc>,
}

impl T {
    /// A machine with these settings that has loaded `state` and
    /// `manifest` at start.
    pub fn start_with(
        s: Settings,
        state: Restored,
        manifest: Result<ManifestId, ManifestFailure>,
    ) -> T {
        T::start_at(T0, s, state, manifest)
    }

    /// [`T::start_with`] with the wall clock at `unix` (a restart later).
    pub fn start_at(
        unix: f64,
        s: Settings,
        state: Restored,
        manifest: Result<ManifestId, ManifestFailure>,
    ) -> T {
        let clock = Arc::new(ManualClock::new(unix, &[0.0]));
        let mut t = T::new(Machine::new(s, clock));
        t.m.handle_loaded(Loaded { state, manifest }, LoadKind::Start);
        t
    }

    pub fn start(state: Restored, manifest: Result<ManifestId, ManifestFailure>) -> T {
        T::start_with(settings(), state, manifest)
    }

    /// A clean machine on manifest `aa` whose first full scan is done.
    pub fn clean() -> T {
        let mut t = T::start(Restored::Missing, Ok(id("aa")));
        let (scan, _) = t.full_started();
        t.m.handle_scan_done(scan, ScanOutcome::Done(Vec::new().into()));
        t.persisted_ok();
        assert_eq!(t.verdict(), (Verdict::Clean, VerdictReason::AllChecked));
        t.drain();
        t
    }

    pub fn new(m: Machine) -> T {
        T {
            m,
            log: Vec::new(),
            manual_persist: false,
            written: Vec::new(),
        }
    }

    /// Every action asked for since the last call.
    pub fn drain(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        while let Some(a) = self.m.poll_action() {
            out.push(a.clone());
            self.log.push(a.clone());
            if let (Action::Persist(d), false) = (a, self.manual_persist) {
                self.written.push(d);
                self.m.handle_persisted(Ok(()));
            }
        }
        out
    }

    pub fn verdict(&self) -> (Verdict, VerdictReason) {
        self.m.judge()
    }

    /// The full scan the machine started (fails if none).
    pub fn full_started(&mut self) -> (ScanId, RescanReason) {
        let acts = self.drain();
        acts.iter()
            .find_map(|a| match a {
                Action::StartFullScan { id, reason } => Some((*id, *reason)),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no full scan started: {acts:?}"))
    }

    /// The targeted re-check the machine started (fails if none).
    pub fn targeted_started(&mut self) -> (ScanId, Vec<Box<[u8]>>, bool) {
        let acts = self.drain();
        acts.iter()
            .find_map(|a| match a {
                Action::StartTargeted {
                    id,
                    paths,
                    confirming,
                } => Some((*id, paths.clone(), *confirming)),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no re-check started: {acts:?}"))
    }

    /// The documents written since the last call.
    pub fn persisted_ok(&mut self) -> Vec<StateDoc> {
        self.drain();
        std::mem::take(&mut self.written)
    }

    /// Move time (both clocks) and let the machine act.
    pub async fn advance(&mut self, d: Duration) {
        tokio::time::advance(d).await;
        self.m.handle_timeout();
    }

    /// Touch `path`, let the debounce window close, and answer the
    /// re-check with `found` (then the confirmation, if one is asked for,
    /// with `confirm`).
    pub async fn recheck(
        &mut self,
        path: &str,
        found: Vec<Finding>,
        confirm: Option<Vec<Finding>>,
    ) {
        self.m.handle_touched(vec![p(path)]);
        self.advance(Duration::from_millis(200)).await;
        let (scan, paths, confirming) = self.targeted_started();
        assert_eq!((paths, confirming), (vec![p(path)], false));
        self.m
            .handle_scan_done(scan, ScanOutcome::Done(found.into()));
        if let Some(c) = confirm {
            self.advance(Duration::from_millis(100)).await;
            let (scan, _, confirming) = self.targeted_started();
            assert!(confirming);
            self.m.handle_scan_done(scan, ScanOutcome::Done(c.into()));
        }
    }

    /// Drift on `path` found and confirmed: the latch.
    pub async fn drift(&mut self, path: &str) -> DriftEpisode {
        let fnd = vec![f(path, FindingKind::Modified)];
        self.recheck(path, fnd.clone(), Some(fnd)).await;
        assert_eq!(self.verdict().0, Verdict::Drifted);
        self.drain();
        self.m.view().drift.cloned().expect("declared")
    }

    /// Signals asked for since the last drain.
    pub fn signals(&mut self) -> Vec<super::episode::SignalRequest> {
        self.drain()
            .into_iter()
            .filter_map(|a| match a {
                Action::Signal(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    pub fn reload(&mut self, state: Restored, manifest: Result<ManifestId, ManifestFailure>) {
        self.load(LoadKind::Reload, state, manifest);
    }

    pub fn load(
        &mut self,
        kind: LoadKind,
        state: Restored,
        manifest: Result<ManifestId, ManifestFailure>,
    ) {
        self.m.handle_loaded(Loaded { state, manifest }, kind);
    }

    /// The reason of the last full scan asked for (drained or not).
    pub fn last_full_reason(&mut self) -> Option<RescanReason> {
        self.drain();
        self.log.iter().rev().find_map(|a| match a {
            Action::StartFullScan { reason, .. } => Some(*reason),
            _ => None,
        })
    }

    /// Whether an action matching `pred` was ever asked for.
    pub fn asked(&self, pred: impl Fn(&Action) -> bool) -> bool {
        self.log.iter().any(pred)
    }
}

pub fn unreadable(path: &str) -> Finding {
    Finding::unreadable(path.as_bytes(), UnreadableKind::PermissionDenied, "denied")
}
