//! The agent's verdict as one state machine, with no IO.
//!
//! In the style of quinn-proto's `Connection`: events come in through
//! `handle_*` (what was loaded, paths touched, a scan's outcome, a write
//! that failed), timers through [`Machine::poll_timeout`] and
//! [`Machine::handle_timeout`], and decisions go out through
//! [`Machine::poll_action`] (start this scan, persist this state, send this
//! signal). The daemon only turns IO into events and actions into IO, so
//! every rule of the verdict is a unit test here, driven with paused time.
//!
//! The rules, failing closed:
//! - `drifted` once drift is confirmed (a second read sees it again) for
//!   the manifest in use: the latch. Only a manifest with another digest
//!   (a new image) or an operator's explicit clearance ends it; a reload, a
//!   missing or shorter state file, a failed write never do (memory wins
//!   and is written back).
//! - otherwise `unknown` while the manifest or the state file is unusable,
//!   a scan failed (its scope is unknown; it is retried after 5 s, doubling
//!   to 5 min), the first full scan has not finished, drift awaits
//!   confirmation, or a path could not be checked;
//! - otherwise `clean`.
//!
//! One episode, one idempotency key: the drift latch and the start of an
//! unknown period are persisted, so restarts and reloads keep both.

use super::episode::{Clearance, DriftEpisode, StateDoc, UnknownEpisode};
pub use super::events::*;
use super::findings::Findings;
pub(super) use super::parts::{
    FullScan, ManifestState, Persist, ReloadState, Targeted, WatchState,
};
use super::reason::{ManifestProblem, RescanReason};
use super::timers::{next_full_scan_delay, Backoff, Debouncer};
use crate::clock::Clock;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Most paths re-read to confirm drift: one confirmed path is enough.
pub const MAX_CONFIRM_PATHS: usize = 64;

/// The state machine.
pub struct Machine {
    pub(super) settings: Settings,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) manifest: ManifestState,
    /// The digest of the last manifest that could be used.
    pub(super) last_digest: Option<String>,
    pub(super) findings: Findings,
    pub(super) full: FullScan,
    pub(super) targeted: Targeted,
    pub(super) debounce: Debouncer,
    pub(super) latch: Option<DriftEpisode>,
    pub(super) cleared: Option<Clearance>,
    pub(super) state_problem: Option<String>,
    pub(super) unknown: Option<UnknownEpisode>,
    pub(super) unknown_signalled: bool,
    pub(super) persist: Persist,
    pub(super) watch: WatchState,
    pub(super) reload: ReloadState,
    next_id: ScanId,
    pub(super) actions: VecDeque<Action>,
    changed: bool,
}

impl Machine {
    /// A machine that has loaded nothing yet; the startup scan is
    /// requested and runs once a manifest is loaded.
    pub fn new(settings: Settings, clock: Arc<dyn Clock>) -> Machine {
        let now = clock.now();
        let first = next_full_scan_delay(
            settings.full_scan_interval,
            settings.full_scan_jitter,
            clock.random(),
        );
        let backoff = Backoff::new(settings.retry_initial, settings.retry_max);
        Machine {
            debounce: Debouncer::new(settings.debounce),
            manifest: ManifestState::NotLoaded,
            last_digest: None,
            findings: Findings::new(settings.findings_limit),
            full: FullScan {
                running: None,
                requested: Some(RescanReason::Startup),
                done: false,
                failure: None,
                backoff,
                retry_at: None,
                next_interval: now + first,
                touched: Vec::new(),
                last_done_unix: None,
            },
            targeted: Targeted {
                running: None,
                backoff,
                retry_at: None,
                retry: Vec::new(),
                confirm: Vec::new(),
                confirm_at: None,
            },
            latch: None,
            cleared: None,
            state_problem: None,
            unknown: None,
            unknown_signalled: false,
            persist: Persist {
                wanted: false,
                in_flight: false,
                backoff,
                retry_at: None,
            },
            watch: WatchState {
                restarting: false,
                failed_rescan_at: None,
                backoff: Backoff::new(Duration::from_secs(1), settings.retry_max),
                restart_at: None,
            },
            reload: ReloadState {
                backoff,
                retry_at: None,
            },
            next_id: 0,
            actions: VecDeque::new(),
            changed: true,
            settings,
            clock,
        }
    }

    // ------------------------------------------------------------ events

    /// The state file and the manifest as loaded (at start, on SIGHUP, or
    /// again after a load that could not read them).
    pub fn handle_loaded(&mut self, loaded: Loaded, kind: LoadKind) {
        self.changed = true;
        let at_start = kind == LoadKind::Start;
        // A manifest or state file that could not be read may be readable
        // in a moment (descriptors ran out, a disk hiccup, an image not yet
        // installed): try again, backing off. One that is corrupt or
        // untrusted is not retried: it stays unknown until a SIGHUP.
        let transient = matches!(loaded.state, Restored::Unusable(_))
            || matches!(&loaded.manifest, Err(f) if matches!(
                f.problem,
                ManifestProblem::Missing | ManifestProblem::Unreadable
            ));
        if transient {
            let delay = self.reload.backoff.next_delay();
            self.reload.retry_at = Some(self.clock.now() + delay);
        } else {
            self.reload.backoff.reset();
            self.reload.retry_at = None;
        }
        self.apply_state(loaded.state, at_start);
        self.apply_manifest(loaded.manifest, kind);
        if at_start && self.settings.signals {
            // A drift declared before a restart whose signal never left:
            // ask again (the outbox skips what was delivered or is pending).
            if let Some(req) = self.drift_request() {
                self.actions.push_back(Action::Signal(req));
            }
        }
        self.drive();
    }

    /// Filesystem hints: these paths were touched.
    pub fn handle_touched(&mut self, paths: Vec<Box<[u8]>>) {
        let now = self.clock.now();
        self.debounce.push(paths, now);
        self.drive();
    }

    /// Filesystem events were lost: only a full rescan can tell.
    pub fn handle_events_lost(&mut self) {
        self.debounce.clear();
        self.request_full(RescanReason::Overflow);
        self.drive();
    }

    /// Something was mounted or unmounted: only a full scan can tell what
    /// it covers.
    pub fn handle_mounts_changed(&mut self) {
        self.request_full(RescanReason::MountsChanged);
        self.drive();
    }

    /// Some directories could not be watched (the inotify watch limit):
    /// rescan, at most once per `full_scan_interval` (directories created
    /// in a flood would otherwise rescan the host back to back); the
    /// scheduled full scans cover them meanwhile.
    pub fn handle_watch_failed(&mut self) {
        let now = self.clock.now();
        if self
            .watch
            .failed_rescan_at
            .is_none_or(|t| now >= t + self.settings.full_scan_interval)
        {
            self.watch.failed_rescan_at = Some(now);
            self.request_full(RescanReason::WatchFailed);
        }
        self.drive();
    }

    /// The watcher could not start or its reader died: re-create it after
    /// a backoff.
    pub fn handle_watch_lost(&mut self) {
        if !self.settings.watch || self.watch.restart_at.is_some() {
            return;
        }
        self.watch.restarting = false;
        let delay = self.watch.backoff.next_delay();
        self.watch.restart_at = Some(self.clock.now() + delay);
        self.report(Report::WatchLost { retry_in: delay });
        self.drive();
    }

    /// A [`Action::RestartWatch`] worked (every directory watched again:
    /// a full rescan covers the gap) or did not (try again later).
    pub fn handle_watch_restarted(&mut self, ok: bool) {
        self.watch.restarting = false;
        if ok {
            self.watch.backoff.reset();
            self.request_full(RescanReason::WatchRestarted);
            self.drive();
        } else {
            self.handle_watch_lost();
        }
    }

    /// A scan this machine started has ended.
    pub fn handle_scan_done(&mut self, id: ScanId, outcome: ScanOutcome) {
        self.changed = true;
        if self.full.running == Some(id) {
            self.full.running = None;
            match outcome {
                ScanOutcome::Done(findings) => self.full_done(findings),
                ScanOutcome::Failed(message) => self.full_failed(message),
                ScanOutcome::Cancelled => self.full_failed("the scan was cancelled".into()),
            }
        } else if self.targeted.running.as_ref().is_some_and(|r| r.0 == id) {
            let (_, paths, confirming) = self.targeted.running.take().expect("checked");
            match outcome {
                ScanOutcome::Done(findings) => self.targeted_done(&paths, findings, confirming),
                ScanOutcome::Failed(message) => self.targeted_failed(paths, message),
                ScanOutcome::Cancelled => {
                    self.targeted_failed(paths, "the re-check was cancelled".into())
                }
            }
        }
        // Else: a scan of a manifest since replaced; nothing to learn.
        self.drive();
    }

    /// How the last [`Action::Persist`] went.
    pub fn handle_persisted(&mut self, result: Result<(), String>) {
        self.persist.in_flight = false;
        match result {
            Ok(()) => {
                self.persist.backoff.reset();
                self.persist.retry_at = None;
                // The file now holds what memory holds.
                self.state_problem = None;
            }
            Err(message) => {
                self.persist.wanted = true;
                let delay = self.persist.backoff.next_delay();
                self.persist.retry_at = Some(self.clock.now() + delay);
                self.report(Report::PersistFailed {
                    message,
                    retry_in: delay,
                });
            }
        }
        self.changed = true;
        self.drive();
    }

    /// Time passed: fire whatever is due.
    pub fn handle_timeout(&mut self) {
        self.drive();
    }

    // ------------------------------------------------------------ output

    /// The next decision, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Machine::handle_timeout`] should be called next. Only
    /// deadlines that can be acted on when they pass count, so a past one
    /// never turns the caller's loop into a busy wait.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let idle = self.targeted.running.is_none();
        [
            Some(self.full.next_interval),
            self.full.retry_at,
            self.targeted.retry_at.filter(|_| idle),
            self.targeted.confirm_at.filter(|_| idle),
            self.debounce.deadline().filter(|_| idle),
            self.watch.restart_at,
            self.reload.retry_at,
            self.persist
                .retry_at
                .filter(|_| self.persist.wanted && !self.persist.in_flight),
            self.unknown_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Whether anything shown (metrics, /status) changed since the last
    /// call.
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    // ---------------------------------------------------------- internal

    pub(super) fn report(&mut self, r: Report) {
        self.actions.push_back(Action::Report(r));
    }

    pub(super) fn request_full(&mut self, reason: RescanReason) {
        if self.full.requested.is_none() {
            self.full.requested = Some(reason);
        }
    }

    fn new_id(&mut self) -> ScanId {
        self.next_id += 1;
        self.next_id
    }

    /// Fire due timers, start what can start, persist what must be.
    pub(super) fn drive(&mut self) {
        let now = self.clock.now();
        let queued = self.actions.len();
        self.settle_unknown();
        if now >= self.full.next_interval {
            self.request_full(RescanReason::Interval);
            self.full.next_interval = now
                + next_full_scan_delay(
                    self.settings.full_scan_interval,
                    self.settings.full_scan_jitter,
                    self.clock.random(),
                );
        }
        if self.full.retry_at.is_some_and(|t| now >= t) {
            self.full.retry_at = None;
            self.request_full(RescanReason::Retry);
        }
        if self.reload.retry_at.is_some_and(|t| now >= t) {
            self.reload.retry_at = None;
            self.actions.push_back(Action::Reload);
        }
        if self.watch.restart_at.is_some_and(|t| now >= t) {
            self.watch.restart_at = None;
            self.watch.restarting = true;
            self.actions.push_back(Action::RestartWatch);
        }
        self.signal_unknown_if_due();
        if matches!(self.manifest, ManifestState::Loaded(_)) {
            self.start_scans(now);
        } else {
            // Nothing to check against: drop what is pending, so no
            // deadline stays in the past.
            self.full.requested = None;
            self.debounce.clear();
            self.targeted.confirm.clear();
            self.targeted.confirm_at = None;
            self.targeted.retry.clear();
            self.targeted.retry_at = None;
        }
        // Never write over a state file that could not be read unless
        // memory holds a latch: it may hold one we could not see.
        let may_write = self.state_problem.is_none() || self.latch.is_some();
        if self.persist.wanted
            && !self.persist.in_flight
            && may_write
            && self.persist.retry_at.is_none_or(|t| now >= t)
        {
            self.persist.wanted = false;
            self.persist.in_flight = true;
            self.persist.retry_at = None;
            self.actions.push_back(Action::Persist(self.state_doc()));
        }
        // Anything decided (a scan started, an episode begun, a signal) is
        // worth showing; a hint added to the debounce window is not.
        if self.actions.len() > queued {
            self.changed = true;
        }
    }

    fn start_scans(&mut self, now: Instant) {
        if self.full.running.is_none() {
            if let Some(reason) = self.full.requested.take() {
                let id = self.new_id();
                self.full.running = Some(id);
                self.full.touched.clear();
                self.full.retry_at = None;
                self.actions.push_back(Action::StartFullScan { id, reason });
            }
        }
        if self.targeted.running.is_some() {
            return;
        }
        let (paths, confirming) = if self.targeted.confirm_at.is_some_and(|t| now >= t) {
            self.targeted.confirm_at = None;
            // Folded: a path re-checked twice would count its findings twice.
            let paths = std::mem::take(&mut self.targeted.confirm);
            (crate::manifest::paths::fold_subtrees(paths), true)
        } else if self.targeted.retry_at.is_some_and(|t| now >= t) {
            self.targeted.retry_at = None;
            let paths = std::mem::take(&mut self.targeted.retry);
            (crate::manifest::paths::fold_subtrees(paths), false)
        } else if let Some(paths) = self.debounce.take_due(now) {
            (paths, false)
        } else {
            return;
        };
        if paths.is_empty() {
            return;
        }
        let id = self.new_id();
        self.targeted.running = Some((id, paths.clone(), confirming));
        self.actions.push_back(Action::StartTargeted {
            id,
            paths,
            confirming,
        });
    }

    /// The state file's content: what memory holds.
    pub fn state_doc(&self) -> StateDoc {
        StateDoc {
            declared: self.latch.clone(),
            unknown: self.unknown.clone(),
            cleared: self.cleared.clone(),
            ..StateDoc::default()
        }
    }

    pub(super) fn digest(&self) -> Option<&str> {
        match &self.manifest {
            ManifestState::Loaded(id) => Some(&id.digest),
            _ => None,
        }
    }
}
