//! The verdict: one explicit state machine and the types around it.
//!
//! PURE: no filesystem, no network, no clock of its own (time comes from a
//! [`crate::clock::Clock`] passed in). The daemon feeds it events and
//! carries out its actions; `signal` and `telemetry` use its types
//! (episodes, typed reasons) without reaching into the daemon.
//!
//! - [`machine`]: the state machine (events in, actions and timers out);
//! - [`events`]: its settings, the payloads of its events, its actions;
//! - `load` (private): what a load of the state file and manifest changes;
//! - [`apply`]: how scan outcomes change it;
//! - [`view`]: the verdict and its reason as shown;
//! - [`findings`]: the current findings with exact counts;
//! - [`timers`]: debounce, backoff, the rescan schedule;
//! - [`episode`]: the drift latch, the unknown period, the state document,
//!   idempotency keys, signal requests;
//! - [`reason`]: the typed reasons and their labels;
//! - `reconfig` (private): new signal settings from a reload.

mod apply;
pub mod episode;
pub mod events;
pub mod findings;
mod load;
pub mod machine;
mod parts;
pub mod reason;
mod reconfig;
pub mod timers;
mod unknown;
pub mod view;

pub use machine::{
    Action, LoadKind, Loaded, Machine, ManifestFailure, ManifestId, Report, Restored, ScanId,
    ScanOutcome, Settings,
};
pub use reason::{ManifestProblem, RescanReason, ScanKind, ScanResult, SignalEvent, VerdictReason};
pub use view::View;

#[cfg(test)]
mod tests;
