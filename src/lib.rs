//! driftd: drift detection for immutable infrastructure.
//!
//! The data flows from the baked image to the verdict:
//!
//! - [`spec`]: the TOML table reader under every config table: each key
//!   declared once, every error with its dotted key (at the bottom: it
//!   imports nothing of the crate).
//! - [`config`]: TOML text -> validated [`config::Config`], every error at once.
//! - [`policy`] (pure): which paths are checked and which attributes.
//! - [`manifest`] (pure): the versioned, signed on-disk format, its
//!   entries, the path codec, and the comparison of entries into findings.
//! - [`scan`]: walk + stat + hash a tree under a root, safely and in
//!   parallel, producing entries.
//! - [`check`]: a live scan against a manifest -> findings and a verdict.
//! - [`watch`]: inotify events -> debounced hints for targeted re-checks.
//! - [`daemon`]: `driftd run`, the long-running loop: schedule, confirm,
//!   persist, shut down.
//! - [`telemetry`]: metric definitions in one place and the HTTP endpoints.
//! - [`signal`]: control-plane backends behind one trait, a durable outbox
//!   and retries; one file per backend, registered in
//!   [`signal::backend::BACKENDS`] (its config keys included).
//! - [`cli`]: one file per subcommand; the only place that prints.
//!
//! `manifest` and `policy` touch no filesystem and no clock; `scan` and
//! `check` depend on them, never the reverse.

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
pub mod watch;
