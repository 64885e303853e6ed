//! What goes in and out of the guard's machine: its settings, the state
//! of an episode, its actions and reports.

use super::query::LookRequest;
use super::spec::{GuardConfig, Limit, OnError};
use crate::verdict::SignalEvent;
use std::time::Duration;
use tokio::time::Instant;

/// What the machine decides with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardSettings {
    pub limit: Limit,
    pub settle: Duration,
    pub recheck: Duration,
    pub on_error: OnError,
}

impl From<&GuardConfig> for GuardSettings {
    fn from(c: &GuardConfig) -> Self {
        GuardSettings {
            limit: c.max_drifted,
            settle: c.settle,
            recheck: c.recheck,
            on_error: c.on_error,
        }
    }
}

/// Where an episode stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting before the first look.
    Settling,
    /// A look is under way.
    Looking,
    /// Held: over the limit, or the last look failed with `on_error =
    /// "hold"`; looks again at `next_look`.
    Held,
    /// Released: its signals go out.
    Released,
}

impl Phase {
    pub fn label(self) -> &'static str {
        match self {
            Phase::Settling => "settling",
            Phase::Looking => "looking",
            Phase::Held => "held",
            Phase::Released => "released",
        }
    }
}

/// A look, judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// *drifted* ≤ *limit*.
    Within {
        hosts: u64,
        drifted: u64,
        limit: u64,
    },
    /// *drifted* > *limit*.
    Over {
        hosts: u64,
        drifted: u64,
        limit: u64,
    },
    /// The look failed.
    Failed(String),
}

/// A judged look and when it was made.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub at_unix: f64,
    pub outcome: Outcome,
}

/// One signal the guard decides about.
#[derive(Debug, Clone, PartialEq)]
pub struct Episode {
    pub key: String,
    pub event: SignalEvent,
    pub digest: String,
    pub phase: Phase,
    /// When the next look is due (settling or held), or when the look
    /// under way counts as failed.
    pub next_look: Option<Instant>,
    pub next_look_unix: Option<f64>,
    pub last: Option<Judged>,
    /// Why it is where it is, for people.
    pub why: String,
    pub(super) mood: Option<Mood>,
}

/// The kind of decision, for logging each change once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mood {
    Over,
    Failed,
    Never,
}

/// What the machine asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum GuardAction {
    /// Ask Prometheus; answer with [`GuardMachine::handle_answer`].
    Look { key: String, request: LookRequest },
    /// Send this episode's signals on every guarded backend.
    Release { key: String },
    /// Drop this episode's signals: its manifest was replaced.
    Drop {
        key: String,
        digest: String,
        now: String,
    },
    /// Something to log.
    Report(GuardReport),
}

/// A change worth one log line.
#[derive(Debug, Clone, PartialEq)]
pub enum GuardReport {
    Settling {
        key: String,
        event: SignalEvent,
        wait: Duration,
    },
    Held {
        key: String,
        why: String,
    },
    Released {
        key: String,
        why: String,
    },
    Dropped {
        key: String,
        digest: String,
        now: String,
    },
}
