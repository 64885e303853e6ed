//! `driftd run`: the always-on agent.

use super::{CliError, Status};
use crate::config::{self, Config};
use crate::daemon::{self, RunOptions};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
#[command(
    after_help = "The agent verifies the manifest, runs a full check, then watches \
every checked directory (inotify) and rescans on a schedule. It serves /metrics \
(Prometheus), /healthz (200 clean, 503 drifted or unknown), /livez (200 while it runs) \
and /status (JSON; loopback clients only unless authenticated or status_public) on \
--listen (default 0.0.0.0:9847), with TLS and basic auth from --web.config.file. Once drift is confirmed the host stays drifted, across \
restarts, until a new manifest. SIGHUP reloads the config ([signals], [signals.guard] and [[signal]] \
take effect; [agent] and [scan] need a restart) and the manifest, and rescans; SIGTERM stops. `driftd state clear` \
ends a drift verdict explicitly (a false positive fixed in the image pipeline).

Try it by hand:
  driftd bake --root /usr --output /tmp/driftd/manifest
  driftd run --config config/driftd.toml --root /usr --manifest /tmp/driftd/manifest \\
    --allow-unsigned --state-dir /tmp/driftd --listen 127.0.0.1:9847
  curl -s 127.0.0.1:9847/metrics | grep ^driftd_"
)]
pub struct RunArgs {
    #[command(flatten)]
    pub agent: AgentArgs,
    /// Hashing threads (overrides [scan] threads; 0 = one per CPU).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

/// The config file and the flags that override its `[agent]` table: shared
/// by `driftd run` and `driftd validate`, so both judge the same settings.
#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// Config file (default: built-in defaults, the same as the shipped
    /// config/driftd.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The live tree to check (overrides agent.root).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// The manifest (overrides agent.manifest).
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// HTTP listen address (overrides agent.listen).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// State directory (overrides agent.state_dir).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Trusted public key (repeatable; overrides agent.trusted_keys).
    #[arg(long, value_name = "FILE")]
    pub trusted_key: Vec<PathBuf>,
    /// Admit a manifest that carries no signature (overrides
    /// agent.allow_unsigned). A signed manifest is always verified.
    #[arg(long)]
    pub allow_unsigned: bool,
    /// TLS and basic auth for the HTTP port: a web config file in the
    /// format of every Prometheus exporter's --web.config.file (overrides
    /// agent.web_config_file).
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<PathBuf>,
}

impl AgentArgs {
    /// The config file (or the defaults) with the flags applied.
    pub fn load(&self) -> Result<Config, CliError> {
        let mut cfg = match &self.config {
            Some(p) => config::load(p)?,
            None => Config::default(),
        };
        self.apply(&mut cfg);
        Ok(cfg)
    }

    /// Apply the flags to a loaded config.
    pub fn apply(&self, cfg: &mut Config) {
        let ag = &mut cfg.agent;
        if let Some(v) = &self.root {
            ag.root = v.clone();
        }
        if let Some(v) = &self.manifest {
            ag.manifest = v.clone();
        }
        if let Some(v) = &self.listen {
            ag.listen = v.clone();
        }
        if let Some(v) = &self.state_dir {
            ag.state_dir = v.clone();
        }
        if !self.trusted_key.is_empty() {
            ag.trusted_keys = self.trusted_key.clone();
            ag.allow_unsigned = false;
        }
        if self.allow_unsigned {
            ag.allow_unsigned = true;
        }
        if let Some(v) = &self.web_config_file {
            ag.web_config_file = Some(v.clone());
        }
    }
}

/// The agent's listen address, parsed.
pub fn listen_addr(listen: &str) -> Result<std::net::SocketAddr, CliError> {
    listen.parse().map_err(|_| {
        CliError(format!(
            "listen address {listen}: not an address like 127.0.0.1:9847"
        ))
    })
}

pub fn run(a: RunArgs) -> Result<Status, CliError> {
    let mut cfg = a.agent.load()?;
    if let Some(t) = a.threads {
        cfg.scan.threads = t;
    }
    let listen = listen_addr(&cfg.agent.listen)?;
    // SIGHUP reads the file again, with the same flags applied.
    let config_source = a.agent.config.clone().map(|path| {
        let (agent, threads) = (a.agent.clone(), a.threads);
        daemon::ConfigSource(std::sync::Arc::new(move || {
            let mut cfg = config::load(&path)?;
            agent.apply(&mut cfg);
            if let Some(t) = threads {
                cfg.scan.threads = t;
            }
            Ok(cfg)
        }))
    });
    let opts = RunOptions {
        agent: cfg.agent.clone(),
        threads: cfg.scan.threads,
        signals: cfg.signals.clone(),
        backends: cfg.signal.clone(),
        config_source,
    };
    // One thread for the loop and the HTTP server; scans run on blocking
    // threads. Idle means idle: nothing wakes but timers and events.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError(format!("start the async runtime: {e}")))?;
    let result = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| CliError(format!("listen on {listen}: {e}")))?;
        let shutdown = async {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return std::future::pending().await;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        };
        daemon::run(opts, listener, shutdown)
            .await
            .map_err(|e| CliError(format!("run: {e}")))
    });
    // A cancelled scan stops within one read; do not wait on stragglers.
    rt.shutdown_timeout(Duration::from_secs(3));
    result.map(|()| 0)
}
