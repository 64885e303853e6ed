//! What goes in and out of the verdict machine: its settings, the payloads of
//! its events (what was loaded, how a scan ended) and its actions and
//! reports.

use super::episode::{DriftEpisode, SignalRequest, StateDoc};
use super::reason::{ManifestProblem, RescanReason, ScanKind};
use crate::manifest::bounded::Bounded;
use crate::manifest::diff::Finding;
use crate::verdict::episode::Clearance;
use std::time::Duration;

/// Identifies a scan the machine asked for; outcomes of scans it no longer
/// waits for (a manifest was replaced meanwhile) are ignored.
pub type ScanId = u64;

/// What the machine is configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Quiet window after a filesystem hint before the touched paths are
    /// re-checked.
    pub debounce: Duration,
    /// Delay before drift is confirmed by reading again.
    pub confirm_delay: Duration,
    pub full_scan_interval: Duration,
    pub full_scan_jitter: Duration,
    /// First retry of a failed scan, doubling up to `retry_max`.
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// Whether a filesystem watcher is wanted (it is restarted when lost).
    pub watch: bool,
    /// Whether control-plane signals are configured.
    pub signals: bool,
    /// Signal an unknown verdict after this long (`on_unknown`).
    pub unknown_grace: Option<Duration>,
    /// The host id, for idempotency keys.
    pub host_id: String,
    /// Most findings held in detail and logged per result; every finding
    /// is counted.
    pub findings_limit: usize,
}

impl Settings {
    /// Retries of failed scans: 5 s doubling to 5 min.
    pub const RETRY_INITIAL: Duration = Duration::from_secs(5);
    pub const RETRY_MAX: Duration = Duration::from_secs(300);
}

/// The identity of a usable manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestId {
    pub digest: String,
    pub image_id: String,
    pub entries: u64,
}

/// Why no manifest can be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestFailure {
    pub problem: ManifestProblem,
    pub message: String,
}

/// What the state file held.
#[derive(Debug, Clone, PartialEq)]
pub enum Restored {
    /// No state file.
    Missing,
    Found(Box<StateDoc>),
    /// It exists but cannot be read or parsed.
    Unusable(String),
}

/// Why the state file and the manifest were loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadKind {
    /// At start.
    Start,
    /// SIGHUP: the operator asks for a reload (and a rescan).
    Reload,
    /// The last load could not read something (a manifest missing or
    /// unreadable, a state file unusable): try again, quietly.
    Retry,
}

/// A load (at start, or a reload on SIGHUP): the state file, then the
/// manifest, each as found.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub state: Restored,
    pub manifest: Result<ManifestId, ManifestFailure>,
}

/// How a scan ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ScanOutcome {
    /// It ran: its findings (every one counted, the first held).
    Done(Bounded),
    /// It could not run (the root could not be opened, ...).
    Failed(String),
    Cancelled,
}

/// What the machine asks the daemon to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    StartFullScan {
        id: ScanId,
        reason: RescanReason,
    },
    /// Re-check these paths (each with its subtree); `confirming` when
    /// drift seen there is declared if it is seen again.
    StartTargeted {
        id: ScanId,
        paths: Vec<Box<[u8]>>,
        confirming: bool,
    },
    /// Stop a scan whose outcome is no longer wanted.
    CancelScan {
        id: ScanId,
    },
    /// Write the state file; report with [`Machine::handle_persisted`].
    Persist(StateDoc),
    Signal(SignalRequest),
    /// Re-create the filesystem watcher; report with
    /// [`Machine::handle_watch_restarted`].
    RestartWatch,
    /// Load the state file and the manifest again
    /// ([`LoadKind::Retry`]), after a load that could not read them.
    Reload,
    /// Something worth a log line.
    Report(Report),
}

/// Notable decisions, for the log.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// A finding not seen before.
    Finding(Finding),
    /// More findings exist than are held (and logged): said once per
    /// change of the total.
    FindingsTruncated {
        total: u64,
        held: usize,
        limit: usize,
    },
    DriftDeclared(DriftEpisode),
    /// A latch read from the state file at start.
    LatchRestored(DriftEpisode),
    /// The state file held less than memory (missing, older, unreadable):
    /// memory is written back.
    StateRewritten,
    /// A latch found in the state file on reload and adopted.
    LatchAdopted(DriftEpisode),
    /// An operator cleared the latch held (`driftd state clear`).
    LatchCleared(Clearance),
    /// A manifest with another digest: a new life.
    NewImage {
        old: String,
        new: String,
    },
    ScanFailed {
        kind: ScanKind,
        message: String,
        retry_in: Duration,
    },
    PersistFailed {
        message: String,
        retry_in: Duration,
    },
    WatchLost {
        retry_in: Duration,
    },
}
