//! The parts of the verdict state machine's state ([`super::machine`]):
//! the manifest in use, the full scan, the targeted re-checks, the state
//! file's writes, reloads and the watcher.

use super::events::{ManifestFailure, ManifestId, ScanId};
use super::reason::RescanReason;
use super::timers::Backoff;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub(super) enum ManifestState {
    NotLoaded,
    Loaded(ManifestId),
    Unusable(ManifestFailure),
}

#[derive(Debug)]
pub(super) struct FullScan {
    pub running: Option<ScanId>,
    pub requested: Option<RescanReason>,
    pub done: bool,
    pub failure: Option<String>,
    pub backoff: Backoff,
    pub retry_at: Option<Instant>,
    pub next_interval: Instant,
    /// Paths re-checked while it runs: their targeted results are fresher.
    pub touched: Vec<Box<[u8]>>,
    pub last_done_unix: Option<f64>,
}

/// A re-check under way: its id, its paths, whether it confirms.
pub(super) type Running = (ScanId, Vec<Box<[u8]>>, bool);

#[derive(Debug)]
pub(super) struct Targeted {
    pub running: Option<Running>,
    pub backoff: Backoff,
    pub retry_at: Option<Instant>,
    pub retry: Vec<Box<[u8]>>,
    pub confirm: Vec<Box<[u8]>>,
    pub confirm_at: Option<Instant>,
}

#[derive(Debug)]
pub(super) struct Persist {
    pub wanted: bool,
    pub in_flight: bool,
    pub backoff: Backoff,
    pub retry_at: Option<Instant>,
}

/// Retrying loads that could not read the manifest or the state file.
#[derive(Debug)]
pub(super) struct ReloadState {
    pub backoff: Backoff,
    pub retry_at: Option<Instant>,
}

#[derive(Debug)]
pub(super) struct WatchState {
    pub restarting: bool,
    /// When a failure to watch last started a rescan.
    pub failed_rescan_at: Option<Instant>,
    pub backoff: Backoff,
    pub restart_at: Option<Instant>,
}
