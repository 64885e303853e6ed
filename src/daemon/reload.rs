//! SIGHUP re-reads the config, as well as the manifest.
//!
//! What a reload applies: `[signals]` (`on_unknown`, `unknown_grace`,
//! `retry_initial`, `retry_max`), `[signals.guard]` (every key; its secret
//! and CA files are read again) and the `[[signal]]` backends (added,
//! removed or changed; their secret files read again). A held signal is
//! looked at again at once, so raising `max_drifted` and reloading
//! releases it if the fleet is within the new limit.
//!
//! What needs a restart: `[agent]` (the root, the manifest's path, the
//! trusted keys, the state directory, the listen address, the web config's
//! path, the watch and scan timings), `[scan]` and `[signals] host_id` (it
//! names the episodes). A change there is logged as a warning and waits
//! for the next start. `[policy]` is not read by `driftd run` at all: the
//! manifest carries the policy it was baked with.
//!
//! A config that cannot be used (invalid, or its backends or guard cannot
//! be built: an unreadable secret file, a bad CA file) changes nothing: the
//! running config stands, every error is logged, and
//! `driftd_config_reload_success` is 0 until a reload succeeds.

use super::{Agent, RunOptions};
use crate::config::{Config, ConfigError};
use crate::signal::dispatch::{Command, DispatchConfig};
use crate::signal::guard::Guard;
use std::fmt;
use std::sync::Arc;
use tracing::{error, info, warn};

/// Reads the config again (the file with the command line's overrides).
#[derive(Clone)]
pub struct ConfigSource(pub Arc<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>);

impl fmt::Debug for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConfigSource")
    }
}

/// The keys that differ and need a restart to take effect.
fn restart_only(old: &RunOptions, new: &Config) -> Vec<&'static str> {
    let (o, n) = (&old.agent, &new.agent);
    let mut v = Vec::new();
    macro_rules! differ {
        ($($field:ident),*) => {
            $(if o.$field != n.$field {
                v.push(concat!("agent.", stringify!($field)));
            })*
        };
    }
    differ!(
        root,
        manifest,
        trusted_keys,
        allow_unsigned,
        state_dir,
        listen,
        web_config_file,
        status_public,
        watch,
        debounce,
        confirm_delay,
        full_scan_interval,
        full_scan_jitter,
        read_rate_limit,
        status_findings_limit
    );
    if old.threads != new.scan.threads {
        v.push("scan.threads");
    }
    if old.signals.host_id != new.signals.host_id {
        v.push("signals.host_id");
    }
    v
}

impl Agent {
    /// Read the config again and apply what a reload applies (see the
    /// module doc); without a config file, nothing to do.
    pub(super) fn reload_config(&mut self) {
        let Some(source) = self.opts.config_source.clone() else {
            return;
        };
        let metrics = &self.publisher.shared.metrics;
        let cfg = match (source.0)() {
            Ok(c) => c,
            Err(e) => {
                for err in &e.errors {
                    error!(config = %e.path.display(), error = %err, "config reload: invalid config");
                }
                error!(config = %e.path.display(), errors = e.errors.len(), "config reload failed: the running config stands");
                metrics.config_reload_success.set(0);
                return;
            }
        };
        let built = crate::signal::build(&cfg.signal).and_then(|backends| {
            let guard = cfg.signals.guard.as_ref().map(Guard::build).transpose()?;
            Ok((backends, guard))
        });
        let (backends, guard) = match built {
            Ok(b) => b,
            Err(e) => {
                error!(error = %e, "config reload: cannot build the signals");
                error!("config reload failed: the running config stands");
                metrics.config_reload_success.set(0);
                return;
            }
        };
        for key in restart_only(&self.opts, &cfg) {
            warn!(
                key,
                "config reload: this setting changed and takes effect at the next restart"
            );
        }
        let s = &cfg.signals;
        info!(
            backends = backends.len(),
            guard = guard.as_ref().map_or("none", |g| g.describe.as_str()),
            on_unknown = s.on_unknown,
            "config reloaded: [signals], [signals.guard] and [[signal]] applied"
        );
        metrics.register_backends(backends.iter().map(|c| c.backend.name()));
        let _ = self
            .signal_tx
            .send(Command::Reconfigure(Box::new(DispatchConfig {
                backends,
                retry_initial: s.retry_initial,
                retry_max: s.retry_max,
                guard,
            })));
        self.machine.handle_signals_config(
            !cfg.signal.is_empty(),
            s.on_unknown.then_some(s.unknown_grace),
        );
        let host_id = self.opts.signals.host_id.clone();
        self.opts.signals = cfg.signals;
        self.opts.signals.host_id = host_id;
        self.opts.backends = cfg.signal;
        metrics.config_reload_success.set(1);
    }
}
