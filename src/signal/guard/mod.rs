//! The guard: a brake on mass retirement.
//!
//! A bad image or a bad manifest makes every host of that image drift at
//! once, and every one of them would then ask the control plane to retire
//! it. With `[signals.guard]`, before any retirement signal goes out (every
//! guarded backend, `drift.detected` and `verdict.unknown` alike), the
//! agent asks the fleet's Prometheus how many hosts of its image (the same
//! manifest digest) are drifted, and holds the signal while that is over
//! `max_drifted`. A held signal stays in the durable outbox and is looked
//! at again every `recheck`; it goes out when a look finds the fleet
//! within the limit, or when the operator raises the limit and reloads.
//! It is a brake, not a rate limiter: a mass drift waits for a person.
//!
//! - [`spec`]: the `[signals.guard]` table, validated ([`limit`]: its
//!   `max_drifted`);
//! - [`selector`]: the label matchers of `selector`;
//! - [`query`]: the PromQL of a look and the reading of its answer (pure);
//! - [`machine`]: the decisions, a state machine with no IO ([`events`]:
//!   what goes in and out of it);
//! - [`client`]: the HTTP query, behind the [`client::FleetQuery`] trait.
//!
//! The dispatcher ([`super::dispatch`]) drives the machine: it tells it of
//! guarded signals, runs its looks, and sends, holds or drops the outbox
//! items of each episode as the machine decides.

pub mod client;
pub mod events;
pub mod limit;
pub mod machine;
pub mod query;
pub mod selector;
pub mod spec;

#[cfg(test)]
mod tests;

pub use client::{FleetQuery, PromClient};
pub use machine::{GuardAction, GuardMachine, GuardReport, GuardSettings, Phase};
pub use spec::{GuardConfig, Limit, OnError};

use std::path::Path;
use std::sync::Arc;

/// A guard ready to run: its settings, its query client and what it is.
#[derive(Clone)]
pub struct Guard {
    pub settings: GuardSettings,
    pub query: Arc<dyn FleetQuery>,
    /// The settings in one line (the log at start and reload, /status).
    pub describe: String,
    pub prometheus_url: String,
    pub max_drifted: String,
    pub on_error: &'static str,
}

impl Guard {
    /// Build the guard of a config: the client reads the CA file and checks
    /// the secret files; no network IO.
    pub fn build(cfg: &GuardConfig) -> Result<Guard, String> {
        let client = PromClient::new(cfg).map_err(|e| format!("signals.guard: {e}"))?;
        Ok(Guard {
            settings: GuardSettings::from(cfg),
            query: Arc::new(client),
            describe: cfg.describe(),
            prometheus_url: cfg.prometheus_url.clone(),
            max_drifted: cfg.max_drifted.to_string(),
            on_error: cfg.on_error.label(),
        })
    }
}

/// `driftd validate`: what [`Guard::build`] reads, and whether this host's
/// id can go into a query. `Ok` is the settings in one line.
pub fn preflight(cfg: &GuardConfig, host_id: &str) -> Result<String, String> {
    PromClient::new(cfg)?;
    if !query::safe_value(host_id) {
        return Err(format!(
            "the host id `{}` has characters a query cannot hold safely (letters, digits, `._:-` only): set [signals] host_id",
            host_id.escape_debug()
        ));
    }
    Ok(cfg.describe())
}

/// `driftd validate --image DIR`: the files of the guard, inside DIR.
pub fn rebase(cfg: &mut GuardConfig, image_root: &Path) {
    use super::backend::in_image;
    if let Some(ca) = &mut cfg.ca_file {
        *ca = in_image(image_root, ca);
    }
    match &mut cfg.auth {
        spec::Auth::None => {}
        spec::Auth::Bearer(f) => *f = in_image(image_root, f),
        spec::Auth::Basic { password_file, .. } => {
            *password_file = in_image(image_root, password_file)
        }
    }
}
