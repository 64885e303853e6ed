//! driftd: drift detection for immutable infrastructure.
//!
//! The data flows from the baked image to the verdict, bottom to top (a
//! module uses only those above it in this list; `tests/architecture.rs`
//! holds the house to it):
//!
//! - [`clock`], [`fsutil`]: time and jitter behind one trait; atomic writes
//!   nobody can redirect, and the one reader of secret files.
//! - [`spec`]: the TOML table reader under every config table: each key
//!   declared once, every error with its dotted key.
//! - [`policy`] (pure): which paths are checked and which attributes.
//! - [`manifest`] (pure): the versioned, signed on-disk format, its
//!   entries, the path codec, and the comparison of entries into findings.
//! - [`verdict`] (pure): the agent's verdict as one state machine (events
//!   in, actions and timers out), its episodes and typed reasons.
//! - [`scan`]: walk + stat + hash a tree under a root, by directory fd,
//!   safely and in parallel, producing entries.
//! - [`check`]: a live scan against a manifest -> findings and a verdict.
//! - [`trust`]: the one manifest loader and its one trust rule.
//! - [`watch`]: inotify events -> touched paths.
//! - [`telemetry`]: metric definitions in one place, `/status`, the HTTP
//!   endpoints.
//! - [`signal`]: control-plane backends behind one trait, a durable outbox
//!   and retries; one file per backend, registered in
//!   [`signal::backend::BACKENDS`] (its config keys included).
//! - [`config`]: TOML text -> validated [`config::Config`], every error at
//!   once; `[[signal]]` tables are dispatched to their backend by `type`.
//! - [`daemon`]: `driftd run`, IO around the verdict machine.
//! - [`cli`]: one file per subcommand; the only place that prints.

pub mod check;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod fsutil;
pub mod manifest;
pub mod policy;
pub mod scan;
pub mod signal;
pub mod spec;
pub mod telemetry;
pub mod trust;
pub mod verdict;
pub mod watch;
