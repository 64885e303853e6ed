//! Configuration: TOML text -> raw tables -> validated [`Config`].
//!
//! Every problem is collected and reported at once, each with its dotted
//! key and the reason: a misspelt key is an error (never silently
//! ignored), and so is a value of the wrong type or a bad glob. Absent keys
//! take their documented defaults (`config/driftd.toml` documents each one
//! and a test checks that the file's values are the built-in defaults).
//!
//! Each table is read with [`crate::spec::Table`], which declares every key
//! where it is read. The `[[signal]]` tables belong to the backends: they
//! are parsed by [`crate::signal::backend`], which dispatches on `type`
//! through its registry, so nothing here knows one backend from another.

use crate::policy::{Allow, CompiledPolicy, Policy, Rule};
use crate::signal::backend;
pub use crate::signal::backend::BackendConfig;
pub use crate::signal::guard::GuardConfig;
use crate::spec::Table;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub agent: AgentConfig,
    pub scan: ScanConfig,
    pub policy: Policy,
    pub signals: SignalsConfig,
    /// `[[signal]]`: control-plane backends, in order.
    pub signal: Vec<BackendConfig>,
}

/// `[signals]`: settings shared by every backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalsConfig {
    /// The host id in signals (default: /etc/machine-id, else the hostname).
    pub host_id: Option<String>,
    /// Also signal when the verdict has been unknown for `unknown_grace`.
    pub on_unknown: bool,
    pub unknown_grace: Duration,
    /// First retry delay, doubled each attempt up to `retry_max` (each
    /// randomised to between half and all of its value).
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// `[signals.guard]`: hold retirement signals while too many hosts of
    /// this image are drifted (`None`: no guard).
    pub guard: Option<GuardConfig>,
}

impl Default for SignalsConfig {
    fn default() -> Self {
        SignalsConfig {
            host_id: None,
            on_unknown: false,
            unknown_grace: Duration::from_secs(1800),
            retry_initial: Duration::from_secs(5),
            retry_max: Duration::from_secs(600),
            guard: None,
        }
    }
}

/// `[agent]`: what `driftd run` watches and where it reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// The live tree to check.
    pub root: PathBuf,
    /// The manifest baked from the image.
    pub manifest: PathBuf,
    /// Public keys the manifest must be signed with (any one of them).
    pub trusted_keys: Vec<PathBuf>,
    /// Accept a manifest without verifying a signature.
    pub allow_unsigned: bool,
    /// Where the verdict survives restarts.
    pub state_dir: PathBuf,
    /// HTTP listen address for /metrics, /healthz, /livez and /status.
    pub listen: String,
    /// TLS and basic auth for the HTTP port, in the exporter-toolkit web
    /// config format (`None`: plain HTTP, no auth).
    pub web_config_file: Option<PathBuf>,
    /// Serve /status to any client, not only loopback ones, even without
    /// authentication.
    pub status_public: bool,
    /// Watch checked directories with inotify for near-real-time detection.
    pub watch: bool,
    /// Quiet period after a filesystem event before the touched paths are
    /// re-checked (events in the window are batched).
    pub debounce: Duration,
    /// Delay before drift is confirmed by reading the paths again.
    pub confirm_delay: Duration,
    /// Time between full rescans.
    pub full_scan_interval: Duration,
    /// Random extra delay, up to this much, added to each interval so a
    /// fleet does not scan in lockstep.
    pub full_scan_jitter: Duration,
    /// Bytes per second a full scan may read; 0 = unlimited.
    pub read_rate_limit: u64,
    /// Most findings listed by /status (counts are always complete).
    pub status_findings_limit: usize,
    /// Most findings the agent holds in detail and logs per scan (the
    /// first by path); every finding is counted.
    pub findings_limit: usize,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            root: PathBuf::from("/"),
            manifest: PathBuf::from("/var/lib/driftd/manifest"),
            trusted_keys: vec![PathBuf::from("/etc/driftd/trusted.pub")],
            allow_unsigned: false,
            state_dir: PathBuf::from("/var/lib/driftd"),
            listen: "0.0.0.0:9847".into(),
            web_config_file: None,
            status_public: false,
            watch: true,
            debounce: Duration::from_millis(200),
            confirm_delay: Duration::from_millis(100),
            full_scan_interval: Duration::from_secs(3600),
            full_scan_jitter: Duration::from_secs(600),
            read_rate_limit: 64 << 20,
            status_findings_limit: 1000,
            findings_limit: 2000,
        }
    }
}

/// The largest `findings_limit` (about 200 MB of findings at most).
pub const MAX_FINDINGS_LIMIT: usize = 1_000_000;

/// `[scan]`: how scans run on this machine (not part of the policy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanConfig {
    /// Hashing threads; 0 = one per CPU.
    pub threads: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            agent: AgentConfig::default(),
            scan: ScanConfig { threads: 0 },
            signals: SignalsConfig::default(),
            signal: Vec::new(),
            policy: Policy::default(),
        }
    }
}

/// Everything wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: PathBuf,
    pub errors: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid config {} ({} error{}):",
            self.path.display(),
            self.errors.len(),
            if self.errors.len() == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            write!(f, "\n  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Parse config text; `origin` names the file in errors.
pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
    let fail = |errors| ConfigError {
        path: origin.to_path_buf(),
        errors,
    };
    // The parser quotes the offending line, which may hold a webhook URL
    // with credentials: shown redacted.
    let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let msg = crate::signal::redact::urls_in(e.to_string().trim());
        fail(vec![msg.replace('\n', "\n    ")])
    })?;
    let mut errors = Vec::new();
    let defaults = Config::default();
    let mut top = Table::root(doc, &mut errors);
    let agent_v = top.raw("agent");
    let scan_v = top.raw("scan");
    let policy_v = top.raw("policy");
    let signals_v = top.raw("signals");
    let signal_v = top.raw("signal");
    top.finish();

    let ds = &defaults.signals;
    let mut sg = Table::new("signals", signals_v, &mut errors);
    let host_id: Option<String> = sg.take("host_id");
    let on_unknown = sg.take("on_unknown").unwrap_or(ds.on_unknown);
    let unknown_grace = sg.duration("unknown_grace").unwrap_or(ds.unknown_grace);
    let retry_initial = sg.duration("retry_initial").unwrap_or(ds.retry_initial);
    let retry_max = sg.duration("retry_max").unwrap_or(ds.retry_max);
    let guard_v = sg.raw("guard");
    sg.finish();
    let guard = crate::signal::guard::spec::parse(guard_v, &mut errors);
    if let (Some(_), Some(id)) = (&guard, &host_id) {
        if !crate::signal::guard::query::safe_value(id) {
            errors.push(format!(
                "signals.host_id: `{}` cannot go into the guard's query (letters, digits, `._:-` only)",
                id.escape_debug()
            ));
        }
    }
    let signals = SignalsConfig {
        host_id,
        on_unknown,
        unknown_grace,
        retry_initial,
        retry_max,
        guard,
    };
    let signal = backend::parse(signal_v, &mut errors);

    let da = &defaults.agent;
    let mut ag = Table::new("agent", agent_v, &mut errors);
    let agent = AgentConfig {
        root: ag.take("root").unwrap_or_else(|| da.root.clone()),
        manifest: ag.take("manifest").unwrap_or_else(|| da.manifest.clone()),
        trusted_keys: ag
            .take("trusted_keys")
            .unwrap_or_else(|| da.trusted_keys.clone()),
        allow_unsigned: ag.take("allow_unsigned").unwrap_or(da.allow_unsigned),
        state_dir: ag.take("state_dir").unwrap_or_else(|| da.state_dir.clone()),
        listen: ag.take("listen").unwrap_or_else(|| da.listen.clone()),
        web_config_file: ag
            .take::<PathBuf>("web_config_file")
            .filter(|p| !p.as_os_str().is_empty()),
        status_public: ag.take("status_public").unwrap_or(da.status_public),
        watch: ag.take("watch").unwrap_or(da.watch),
        debounce: ag.duration("debounce").unwrap_or(da.debounce),
        confirm_delay: ag.duration("confirm_delay").unwrap_or(da.confirm_delay),
        full_scan_interval: ag
            .duration("full_scan_interval")
            .unwrap_or(da.full_scan_interval),
        full_scan_jitter: ag
            .duration("full_scan_jitter")
            .unwrap_or(da.full_scan_jitter),
        read_rate_limit: ag.bytes("read_rate_limit").unwrap_or(da.read_rate_limit),
        status_findings_limit: ag
            .take("status_findings_limit")
            .unwrap_or(da.status_findings_limit),
        findings_limit: ag.take("findings_limit").unwrap_or(da.findings_limit),
    };
    ag.finish();
    if !(1..=MAX_FINDINGS_LIMIT).contains(&agent.findings_limit) {
        errors.push(format!(
            "agent.findings_limit: {} is out of range (1 to {MAX_FINDINGS_LIMIT}): it bounds the agent's memory",
            agent.findings_limit
        ));
    }
    if agent.listen.parse::<std::net::SocketAddr>().is_err() {
        errors.push(format!(
            "agent.listen: `{}` is not an address like 127.0.0.1:9847 or [::]:9847",
            agent.listen
        ));
    }
    if agent.full_scan_interval < Duration::from_secs(1) {
        errors.push("agent.full_scan_interval: must be at least 1s".into());
    }

    let mut scan = Table::new("scan", scan_v, &mut errors);
    let threads = scan
        .take::<usize>("threads")
        .unwrap_or(defaults.scan.threads);
    scan.finish();

    let mut pol = Table::new("policy", policy_v, &mut errors);
    let d = &defaults.policy;
    let exclude = pol.take("exclude").unwrap_or_else(|| d.exclude.clone());
    let one_file_system = pol.take("one_file_system").unwrap_or(d.one_file_system);
    let mounts = pol.take("mounts").unwrap_or_else(|| d.mounts.clone());
    let rule_items = pol.tables("rules");
    let allow_v = pol.raw("allow");
    pol.finish();

    let mut rules = Vec::new();
    for (key, item) in rule_items {
        let mut t = Table::new(&key, Some(item), &mut errors);
        let paths = t.take::<Vec<String>>("paths");
        let attributes = t.take::<Vec<String>>("attributes");
        if paths.is_none() {
            t.error("paths", "required");
        }
        if attributes.is_none() {
            t.error("attributes", "required");
        }
        t.finish();
        if let (Some(paths), Some(attributes)) = (paths, attributes) {
            rules.push(Rule { paths, attributes });
        }
    }

    let mut allow = Table::new("policy.allow", allow_v, &mut errors);
    let content_may_differ = allow
        .take("content_may_differ")
        .unwrap_or_else(|| d.allow.content_may_differ.clone());
    let may_appear_v = allow.raw("may_appear");
    allow.finish();
    let may_appear =
        crate::policy::parse_may_appear("policy.allow.may_appear", may_appear_v, &mut errors)
            .unwrap_or_else(|| d.allow.may_appear.clone());

    let policy = Policy {
        exclude,
        one_file_system,
        rules,
        allow: Allow {
            content_may_differ,
            may_appear,
        },
        mounts,
    };
    // Semantic checks (globs, attribute names) even when other keys failed,
    // so one run shows every problem; a key already reported for its shape
    // is not reported again for its value.
    if let Err(errs) = CompiledPolicy::new(policy.clone(), "policy") {
        let shaped = |k: &str| errors.iter().any(|e| related(e.split(": ").next(), k));
        let fresh: Vec<String> = errs
            .iter()
            .filter(|e| !shaped(&e.key))
            .map(|e| e.to_string())
            .collect();
        errors.extend(fresh);
    }
    if errors.is_empty() {
        Ok(Config {
            agent,
            scan: ScanConfig { threads },
            policy,
            signals,
            signal,
        })
    } else {
        Err(fail(errors))
    }
}

/// Is one key the other or inside it (`a.b` and `a.b[0]`, `a.b` and `a.b.c`)?
fn related(a: Option<&str>, b: &str) -> bool {
    let Some(a) = a else { return false };
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    long.strip_prefix(short)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// Read and parse a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        path: path.to_path_buf(),
        errors: vec![format!("cannot read config file: {e}")],
    })?;
    parse(&text, path)
}

#[cfg(test)]
mod tests;
