//! `driftd run`: the long-running agent, as IO around the verdict machine.
//!
//! Every decision is made by [`crate::verdict::Machine`]; this loop only
//! turns IO into its events (a load finished, paths were touched, a scan
//! ended, SIGHUP) and its actions into IO (start a scan on a blocking
//! thread, write the state file, queue a signal, re-create the watcher),
//! then publishes its view (metrics, `/healthz`, `/status`, systemd's
//! status line). Nothing polls: with nothing happening the loop sleeps
//! until the machine's next deadline or the watchdog's.

mod jobs;
mod publish;
mod reload;
mod report;
pub mod state;
mod watcher;

use crate::clock::SystemClock;
use crate::config::{AgentConfig, BackendConfig, SignalsConfig};
use crate::signal::dispatch::Command;
use crate::signal::{Host, Signal};
use crate::telemetry::http::Shared;
use crate::telemetry::status::StatusDoc;
use crate::trust;
use crate::verdict::{Action, LoadKind, Loaded, Machine, Settings};
use jobs::{JobResult, Jobs};
use publish::Publisher;
pub use reload::ConfigSource;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{error, info, warn};
use watcher::Watcher;

/// Settings of one agent.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub agent: AgentConfig,
    /// Hashing threads (0 = one per CPU).
    pub threads: usize,
    pub signals: SignalsConfig,
    /// Control-plane backends (none: only metrics and /healthz).
    pub backends: Vec<BackendConfig>,
    /// Reads the config again on SIGHUP (`None`: no config file).
    pub config_source: Option<ConfigSource>,
}

/// The agent: the machine and the IO it drives.
struct Agent {
    machine: Machine,
    jobs: Jobs,
    watcher: Watcher,
    watch_enabled: bool,
    publisher: Publisher,
    /// The manifest in use (the machine knows it as loaded).
    current: Option<Arc<trust::Loaded>>,
    signal_tx: mpsc::UnboundedSender<Command>,
    host: Host,
    /// The settings running (a reload replaces what it applies).
    opts: RunOptions,
    /// A load is running; another SIGHUP came meanwhile.
    loading: bool,
    reload_again: bool,
}

impl Agent {
    fn shared(&self) -> &Shared {
        &self.publisher.shared
    }

    /// Carry out every action the machine asks for, then publish.
    fn step(&mut self) {
        while let Some(action) = self.machine.poll_action() {
            self.execute(action);
        }
        if self.machine.take_changed() {
            self.publisher
                .publish(&self.machine, self.current.as_deref());
        }
    }

    fn execute(&mut self, action: Action) {
        match action {
            Action::StartFullScan { id, reason } => {
                info!(reason = reason.label(), "full scan started");
                self.shared()
                    .metrics
                    .rescans
                    .with_label_values(&[reason.label()])
                    .inc();
                match &self.current {
                    Some(l) => self.jobs.full(id, l),
                    None => self.machine.handle_scan_done(
                        id,
                        crate::verdict::ScanOutcome::Failed("no manifest loaded".into()),
                    ),
                }
            }
            Action::StartTargeted { id, paths, .. } => match &self.current {
                Some(l) => self.jobs.targeted(id, paths, l),
                None => self.machine.handle_scan_done(
                    id,
                    crate::verdict::ScanOutcome::Failed("no manifest loaded".into()),
                ),
            },
            Action::CancelScan { id } => self.jobs.cancel(id),
            Action::Persist(doc) => {
                let result = self.jobs.store.save(&doc).map_err(|e| e.to_string());
                if result.is_err() {
                    self.shared().metrics.state_persist_errors.inc();
                }
                self.machine.handle_persisted(result);
            }
            Action::Signal(req) => {
                let sig = Signal::new(&self.host, &req, crate::clock::now_unix());
                let _ = self.signal_tx.send(Command::Signal(Box::new(sig)));
            }
            Action::RestartWatch => {
                let metrics = &self.publisher.shared.metrics;
                let ok = self.watcher.start(metrics);
                if ok {
                    if let Some(l) = &self.current {
                        self.watcher.watch_manifest(l, metrics);
                    }
                    info!("the filesystem watcher is back");
                }
                self.machine.handle_watch_restarted(ok);
            }
            Action::Reload => self.reload(LoadKind::Retry),
            Action::Report(r) => report::log(&r),
        }
    }

    fn on_result(&mut self, result: JobResult) {
        match result {
            JobResult::Scan(done) => {
                let metrics = &self.publisher.shared.metrics;
                report::record_scan(&done, metrics);
                self.jobs.finished(done.id);
                if let Ok(reports) = &done.result {
                    let dirs = reports.iter().flat_map(|r| r.dirs.iter());
                    let added = self.watcher.watch_dirs(dirs, metrics);
                    if done.kind == crate::verdict::ScanKind::Targeted {
                        // Re-created directories get watched again; a new
                        // one that cannot be means a full scan now.
                        self.watcher.forget_vanished(&done.paths, metrics);
                        if added.new_failures > 0 {
                            self.machine.handle_watch_failed();
                        }
                    }
                }
                let id = done.id;
                self.machine.handle_scan_done(id, report::outcome(done));
            }
            JobResult::Loaded {
                kind,
                state,
                manifest,
            } => {
                self.loading = false;
                let before = self.current.as_ref().map(|l| l.manifest.digest);
                let manifest = match manifest {
                    Ok(l) => {
                        report::loaded(&l);
                        // A held signal of another manifest is dropped.
                        let digest = l.manifest.digest_string();
                        let _ = self.signal_tx.send(Command::Manifest(digest));
                        let l = Arc::new(l);
                        self.current = Some(l.clone());
                        Ok(l)
                    }
                    Err(e) => {
                        error!(reason = e.problem.label(), error = %e.message, "manifest unusable: verdict unknown");
                        self.current = None;
                        Err(e)
                    }
                };
                let mut lost = false;
                if let Ok(l) = &manifest {
                    if self.watch_enabled && before != Some(l.manifest.digest) {
                        let metrics = &self.publisher.shared.metrics;
                        if self.watcher.start(metrics) {
                            self.watcher.watch_manifest(l, metrics);
                        } else {
                            lost = true;
                        }
                    }
                }
                let manifest = manifest.map(|l| l.id()).map_err(Into::into);
                self.machine.handle_loaded(
                    Loaded {
                        state: *state,
                        manifest,
                    },
                    kind,
                );
                if lost {
                    self.machine.handle_watch_lost();
                }
                if std::mem::take(&mut self.reload_again) {
                    self.reload(LoadKind::Reload);
                }
            }
        }
    }

    /// Read the state file and the manifest again, off the loop (SIGHUP,
    /// or a retry the machine asks for). One load at a time: a SIGHUP
    /// during a load loads again after it; a retry during one is moot.
    fn reload(&mut self, kind: LoadKind) {
        if self.loading {
            self.reload_again |= kind == LoadKind::Reload;
            return;
        }
        self.loading = true;
        self.jobs.load(kind);
    }

    fn on_watch(&mut self, msg: Option<crate::watch::WatchMsg>) {
        use crate::watch::WatchMsg;
        match msg {
            Some(WatchMsg::Touched(paths)) => self.machine.handle_touched(paths),
            Some(WatchMsg::Overflow) => {
                warn!("filesystem events were lost: full rescan");
                self.machine.handle_events_lost();
            }
            None => {
                error!("the filesystem watcher stopped");
                self.watcher.lost();
                self.machine.handle_watch_lost();
            }
        }
    }
}

/// Descriptors: raise the soft limit to the hard one (at most 65536), as
/// the unit's `LimitNOFILE=` does; where a system-call filter forbids it
/// (the unit's `~@resources`), the unit's setting stands.
fn raise_descriptor_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let now = getrlimit(Resource::Nofile);
    let want = now.maximum.map_or(65536, |m| m.min(65536));
    if now.current.is_some_and(|c| c < want) {
        let new = Rlimit {
            current: Some(want),
            maximum: now.maximum,
        };
        match setrlimit(Resource::Nofile, new) {
            Ok(()) => info!(
                from = now.current,
                to = want,
                "raised the soft descriptor limit"
            ),
            Err(e) => {
                info!(error = %e, soft = now.current, "cannot raise the soft descriptor limit")
            }
        }
    }
}

/// Run the agent until `shutdown` resolves. `listener` serves the HTTP
/// endpoints.
pub async fn run(
    opts: RunOptions,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), std::io::Error> {
    use tokio::signal::unix::{signal, SignalKind};
    let a = &opts.agent;
    raise_descriptor_limit();
    for b in crate::scan::blind_spots() {
        warn!(class = b.label(), "blind spot: {}", b.explain());
    }
    let web = match &a.web_config_file {
        Some(p) => Some(Arc::new(
            crate::telemetry::webconfig::WebConfigSource::open(p)
                .map_err(|e| std::io::Error::other(e.to_string()))?,
        )),
        None => None,
    };
    if let Some(w) = &web {
        let cfg = w.current();
        info!(web_config = %w.path().display(), config = %cfg.describe(), "HTTP port secured by the web config");
        if cfg.auth_required() && cfg.tls().is_none() {
            warn!("basic auth without TLS: passwords cross the network in the clear; add tls_server_config");
        }
    }
    let tls: crate::telemetry::http::server::TlsSource = match web.clone() {
        Some(w) => Arc::new(move || w.current().tls()),
        None => Arc::new(|| None),
    };
    let access = crate::telemetry::http::Access {
        status_public: a.status_public,
        web,
    };
    let (shared, mut pings) = Shared::new(
        StatusDoc::starting(&a.root, a.status_findings_limit),
        access,
    );
    let shared = Arc::new(shared);
    let (stop_http_tx, stop_http_rx) = tokio::sync::oneshot::channel::<()>();
    let app = crate::telemetry::http::router(shared.clone());
    let server = tokio::spawn(crate::telemetry::http::server::serve(
        listener,
        app,
        tls,
        crate::telemetry::http::server::Limits::default(),
        shared.server.clone(),
        async {
            let _ = stop_http_rx.await;
        },
    ));
    let backends = crate::signal::build(&opts.backends)
        .map_err(|e| std::io::Error::other(format!("signal backends: {e}")))?;
    let guard = match &opts.signals.guard {
        Some(g) => Some(crate::signal::guard::Guard::build(g).map_err(std::io::Error::other)?),
        None => None,
    };
    shared
        .metrics
        .register_backends(backends.iter().map(|c| c.backend.name()));
    let signals = !backends.is_empty();
    let host = Host::local(opts.signals.host_id.as_deref());
    shared.metrics.set_host(&host.id, &host.hostname);
    if let Some(g) = &guard {
        info!(guard = %g.describe, "retirement signals are guarded: held while too many hosts of this image are drifted");
    }
    let signal_tx = crate::signal::dispatch::Dispatcher::new(
        crate::signal::dispatch::DispatchConfig {
            backends,
            retry_initial: opts.signals.retry_initial,
            retry_max: opts.signals.retry_max,
            guard,
        },
        crate::signal::outbox::Outbox::new(&a.state_dir),
        shared.metrics.signal.clone(),
        &host.id,
        Arc::new(SystemClock),
    )
    .spawn();
    let settings = Settings {
        debounce: a.debounce,
        confirm_delay: a.confirm_delay,
        full_scan_interval: a.full_scan_interval,
        full_scan_jitter: a.full_scan_jitter,
        retry_initial: Settings::RETRY_INITIAL,
        retry_max: Settings::RETRY_MAX,
        watch: a.watch,
        signals,
        unknown_grace: opts
            .signals
            .on_unknown
            .then_some(opts.signals.unknown_grace),
        host_id: host.id.clone(),
        findings_limit: a.findings_limit,
    };
    let (tx, mut results) = mpsc::unbounded_channel();
    let mut agent = Agent {
        machine: Machine::new(settings, Arc::new(SystemClock)),
        jobs: Jobs::new(&opts, tx),
        watcher: Watcher::new(a.root.clone(), shared.watch.clone()),
        watch_enabled: a.watch,
        publisher: Publisher::new(shared.clone(), a.root.clone(), a.status_findings_limit),
        current: None,
        signal_tx,
        host,
        opts: opts.clone(),
        loading: true,
        reload_again: false,
    };
    let mut sighup = signal(SignalKind::hangup())?;
    let mut mounts = if a.watch {
        crate::watch::watch_mounts()
    } else {
        None
    };
    // The first load runs off the loop: the HTTP server answers (unknown)
    // meanwhile, and a SIGTERM is heard.
    agent.jobs.load(LoadKind::Start);
    let mut ready = false;
    let watchdog = sd_notify::watchdog_enabled().map(|d| d / 2);
    let mut next_watchdog = watchdog.map(|d| Instant::now() + d);
    tokio::pin!(shutdown);
    loop {
        agent.step();
        if !ready && !agent.loading {
            // Serving: the listener is bound, the loaded verdict published.
            agent.publisher.notify_ready(&agent.machine);
            ready = true;
        }
        let wake = [agent.machine.poll_timeout(), next_watchdog]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = &mut shutdown => break,
            _ = sighup.recv() => {
                info!("SIGHUP: reloading the config and the manifest, and rescanning");
                agent.reload_config();
                agent.reload(LoadKind::Reload);
            }
            msg = agent.watcher.recv() => agent.on_watch(msg),
            Some(()) = async {
                match mounts.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                info!("the mount table changed: full rescan");
                agent.machine.handle_mounts_changed();
            }
            // /livez: the loop answers while it turns.
            Some(reply) = pings.recv() => { let _ = reply.send(()); }
            Some(r) = results.recv() => agent.on_result(r),
            _ = tokio::time::sleep_until(wake) => {}
        }
        agent.machine.handle_timeout();
        if let (Some(d), Some(at)) = (watchdog, next_watchdog) {
            let now = Instant::now();
            if now >= at {
                // Only this loop pings: if it stops turning, systemd
                // notices and restarts us.
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                next_watchdog = Some(now + d);
            }
        }
    }
    info!("shutting down");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    agent.jobs.cancel_all();
    let _ = stop_http_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    Ok(())
}
