//! Helpers for the `driftd run` (agent) tests: start the real binary on a
//! temporary tree with a free port, a temporary config and a notify socket;
//! scrape `/metrics`, `/healthz` and `/status` over a tiny HTTP/1.0 client;
//! wait for conditions by polling with a deadline (never by sleeping).
//!
//! Every [`Agent`] is a guard: dropping it sends SIGTERM, then SIGKILL after
//! 5 s. When a test panics, the guard prints the tail of the agent's log.
//!
//! Test files using this module must also declare `mod common;` (it builds
//! on [`crate::common::Dir`]).

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use crate::common::{Dir, BIN};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long any wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// Poll interval of the waits.
pub const POLL: Duration = Duration::from_millis(50);

/// How long a stopping agent may take before the guard kills it.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Numbers the files of each start (logs, configs, sockets) in a test
/// binary, so that restarts never reuse a name.
static SEQ: AtomicUsize = AtomicUsize::new(0);

// ------------------------------------------------------------------ HTTP

/// `GET path` over HTTP/1.0 on 127.0.0.1:`port`: (status code, body).
pub fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    http_get_as(port, path, None)
}

/// [`http_get`] with basic-auth credentials (`user:password`), if any.
pub fn http_get_as(port: u16, path: &str, auth: Option<&str>) -> Result<(u16, String), String> {
    use base64::Engine as _;
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .map_err(|e| format!("connect 127.0.0.1:{port}: {e}"))?;
    let t = Some(Duration::from_secs(5));
    s.set_read_timeout(t).map_err(|e| e.to_string())?;
    s.set_write_timeout(t).map_err(|e| e.to_string())?;
    let auth = auth.map_or(String::new(), |a| {
        format!(
            "Authorization: Basic {}\r\n",
            base64::engine::general_purpose::STANDARD.encode(a)
        )
    });
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n{auth}\r\n").as_bytes())
        .map_err(|e| format!("send GET {path}: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("read the answer to GET {path}: {e}"))?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET {path}: no end of headers in {text:?}"))?;
    let code = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("GET {path}: bad status line in {head:?}"))?;
    Ok((code, body.to_string()))
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

// --------------------------------------------------------------- metrics

/// A parsed `/metrics` scrape: every sample by canonical series name
/// (`name{a="x",b="y"}` with the labels sorted by name).
#[derive(Clone)]
pub struct Metrics {
    pub text: String,
    pub samples: BTreeMap<String, f64>,
}

/// The canonical name of a series.
pub fn series(name: &str, labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return name.to_string();
    }
    let mut l: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    l.sort();
    canonical(name, &l)
}

fn canonical(name: &str, labels: &[(String, String)]) -> String {
    if labels.is_empty() {
        return name.to_string();
    }
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{name}{{{}}}", inner.join(","))
}

/// Parse `{a="x",b="y"}` (the part between the braces).
fn parse_labels(s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek() == Some(&',') || chars.peek() == Some(&' ') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            key.push(c);
        }
        if chars.next() != Some('"') {
            return None;
        }
        let mut val = String::new();
        loop {
            match chars.next()? {
                '\\' => match chars.next()? {
                    'n' => val.push('\n'),
                    c => val.push(c),
                },
                '"' => break,
                c => val.push(c),
            }
        }
        out.push((key.trim().to_string(), val));
    }
    out.sort();
    Some(out)
}

impl Metrics {
    pub fn parse(text: &str) -> Result<Metrics, String> {
        let mut samples = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line
                .rsplit_once(' ')
                .ok_or_else(|| format!("bad sample line {line:?}"))?;
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v
                    .parse()
                    .map_err(|_| format!("bad value in sample line {line:?}"))?,
            };
            let key = match key.split_once('{') {
                Some((name, rest)) => {
                    let inner = rest
                        .strip_suffix('}')
                        .ok_or_else(|| format!("bad labels in {line:?}"))?;
                    let labels =
                        parse_labels(inner).ok_or_else(|| format!("bad labels in {line:?}"))?;
                    canonical(name, &labels)
                }
                None => key.to_string(),
            };
            samples.insert(key, value);
        }
        Ok(Metrics {
            text: text.to_string(),
            samples,
        })
    }

    /// The value of a series, if present.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples.get(&series(name, labels)).copied()
    }

    /// The value of a series; panics (printing the scrape) if absent.
    pub fn val(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let key = series(name, labels);
        self.samples
            .get(&key)
            .copied()
            .unwrap_or_else(|| panic!("series {key} missing from /metrics:\n{self}"))
    }

    /// [`Metrics::val`] of an unlabelled series.
    pub fn v(&self, name: &str) -> f64 {
        self.val(name, &[])
    }

    /// `driftd_rescans_total{reason=...}`.
    pub fn rescans(&self, reason: &str) -> f64 {
        self.val("driftd_rescans_total", &[("reason", reason)])
    }

    /// `driftd_scans_total{kind=...,result=...}`.
    pub fn scans(&self, kind: &str, result: &str) -> f64 {
        self.val("driftd_scans_total", &[("kind", kind), ("result", result)])
    }

    /// Every `driftd_scans_total` series of one kind, summed.
    pub fn scans_of_kind(&self, kind: &str) -> f64 {
        SCAN_RESULTS.iter().map(|r| self.scans(kind, r)).sum()
    }

    /// `driftd_verdict{verdict=...}`.
    pub fn verdict(&self, verdict: &str) -> f64 {
        self.val("driftd_verdict", &[("verdict", verdict)])
    }

    /// The one verdict whose gauge is 1 (panics unless exactly one is).
    pub fn the_verdict(&self) -> &'static str {
        let on: Vec<&'static str> = VERDICTS
            .into_iter()
            .filter(|v| self.verdict(v) == 1.0)
            .collect();
        assert_eq!(on.len(), 1, "driftd_verdict is not one-hot:\n{self}");
        on[0]
    }

    /// `driftd_drifted_entries{kind=...}`.
    pub fn drifted(&self, kind: &str) -> f64 {
        self.val("driftd_drifted_entries", &[("kind", kind)])
    }

    /// `driftd_manifest_error{reason=...}`.
    pub fn manifest_error(&self, reason: &str) -> f64 {
        self.val("driftd_manifest_error", &[("reason", reason)])
    }

    /// Every series of a metric family (by name), with its labels.
    pub fn family(&self, name: &str) -> Vec<(&str, f64)> {
        self.samples
            .iter()
            .filter(|(k, _)| {
                k.as_str() == name || k.strip_prefix(name).is_some_and(|r| r.starts_with('{'))
            })
            .map(|(k, v)| (k.as_str(), *v))
            .collect()
    }
}

impl fmt::Display for Metrics {
    /// The driftd samples only (no HELP/TYPE lines, no histogram buckets).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in self.text.lines() {
            if line.starts_with("driftd_") && !line.contains("_bucket{") {
                writeln!(f, "  {line}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

pub const VERDICTS: [&str; 3] = ["clean", "drifted", "unknown"];
pub const SCAN_KINDS: [&str; 2] = ["full", "targeted"];
pub const SCAN_RESULTS: [&str; 5] = ["clean", "drifted", "unknown", "error", "cancelled"];
pub const RESCAN_REASONS: [&str; 10] = [
    "startup",
    "interval",
    "sighup",
    "overflow",
    "watch_failed",
    "watch_restarted",
    "manifest_changed",
    "mounts_changed",
    "retry",
    "findings_limit",
];
pub const MANIFEST_ERRORS: [&str; 5] = ["missing", "unreadable", "corrupt", "signature", "policy"];
pub const SCAN_ERROR_REASONS_ALL: [&str; 6] = [
    "permission_denied",
    "changed_while_read",
    "name_too_long",
    "not_entered",
    "scan_failed",
    "other",
];

// ----------------------------------------------------------------- waits

/// Poll `probe` every [`POLL`] until `pred` holds, for at most [`WAIT`];
/// then panic with `what` and the last probe (`show`n).
pub fn wait_for<T>(
    what: &str,
    mut probe: impl FnMut() -> Result<T, String>,
    pred: impl Fn(&T) -> bool,
    show: impl Fn(&T) -> String,
) -> T {
    let deadline = Instant::now() + WAIT;
    let last = loop {
        let r = probe();
        if let Ok(v) = &r {
            if pred(v) {
                return r.unwrap_or_else(|_| unreachable!());
            }
        }
        if Instant::now() >= deadline {
            break r;
        }
        std::thread::sleep(POLL);
    };
    let last = match last {
        Ok(v) => show(&v),
        Err(e) => format!("error: {e}"),
    };
    panic!("timed out after {WAIT:?} waiting for {what}; last seen:\n{last}");
}

// ---------------------------------------------------------------- launch

/// How the agent checks the manifest's signature.
#[derive(Debug, Clone)]
pub enum Trust {
    AllowUnsigned,
    Key(PathBuf),
}

/// How to start one agent. Defaults: the [`Dir`]'s root and manifest,
/// `--allow-unsigned`, state in `<base>/state`, and a config with short
/// delays and no scheduled rescan for an hour (so only events find drift).
pub struct Launch {
    base: PathBuf,
    root: PathBuf,
    manifest: PathBuf,
    trust: Trust,
    state_dir: PathBuf,
    config: Vec<(String, String)>,
    env: Vec<(String, String)>,
    watchdog_pid_self: bool,
    nofile: Option<(u64, u64)>,
    extra_args: Vec<String>,
    listen_any: bool,
    auth: Option<String>,
    wrapper: Vec<String>,
}

impl Launch {
    pub fn new(dir: &Dir) -> Launch {
        Launch {
            base: dir.base.clone(),
            root: dir.root.clone(),
            manifest: dir.manifest.clone(),
            trust: Trust::AllowUnsigned,
            state_dir: dir.outside("state"),
            config: [
                ("debounce", "\"100ms\""),
                ("confirm_delay", "\"50ms\""),
                ("full_scan_interval", "\"1h\""),
                ("full_scan_jitter", "\"0s\""),
                ("read_rate_limit", "\"0\""),
                ("status_findings_limit", "10000"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            env: Vec::new(),
            watchdog_pid_self: false,
            nofile: None,
            extra_args: Vec::new(),
            listen_any: false,
            auth: None,
            wrapper: Vec::new(),
        }
    }

    /// Start the agent through this command (e.g. `setpriv
    /// --bounding-set=-sys_admin --`), which must exec it (the pid stays the
    /// agent's).
    pub fn wrap(mut self, argv: &[&str]) -> Launch {
        self.wrapper = argv.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Send these basic-auth credentials (`user:password`) on every request
    /// the helpers make (for an agent with a web config).
    pub fn auth(mut self, user_password: &str) -> Launch {
        self.auth = Some(user_password.to_string());
        self
    }

    /// Listen on every address (0.0.0.0), not only loopback.
    pub fn listen_any(mut self) -> Launch {
        self.listen_any = true;
        self
    }

    /// Start under these soft and hard `RLIMIT_NOFILE` limits (through
    /// util-linux `prlimit`, which execs the agent: the pid is the agent's).
    pub fn nofile(mut self, soft: u64, hard: u64) -> Launch {
        self.nofile = Some((soft, hard));
        self
    }

    /// More arguments for `driftd run`.
    pub fn arg(mut self, a: &str) -> Launch {
        self.extra_args.push(a.to_string());
        self
    }

    /// Set an `[agent]` key of the config to a TOML literal
    /// (`"\"2s\""`, `"5000"`, `"false"`).
    pub fn set(mut self, key: &str, toml_value: &str) -> Launch {
        self.config.retain(|(k, _)| k != key);
        self.config.push((key.into(), toml_value.into()));
        self
    }

    /// Set an `[agent]` key to a string value.
    pub fn set_str(self, key: &str, value: &str) -> Launch {
        let lit = format!("{value:?}");
        self.set(key, &lit)
    }

    pub fn manifest(mut self, path: &Path) -> Launch {
        self.manifest = path.to_path_buf();
        self
    }

    pub fn trust(mut self, trust: Trust) -> Launch {
        self.trust = trust;
        self
    }

    pub fn state_dir(mut self, path: &Path) -> Launch {
        self.state_dir = path.to_path_buf();
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Launch {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Start through `bash -c 'export WATCHDOG_PID=$$; exec driftd ...'`
    /// so that `WATCHDOG_PID` is the agent's own pid.
    pub fn watchdog_pid_self(mut self) -> Launch {
        self.watchdog_pid_self = true;
        self
    }

    fn args(&self, port: u16, config: &Path) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "run".into(),
            "--config".into(),
            config.display().to_string(),
            "--root".into(),
            self.root.display().to_string(),
            "--manifest".into(),
            self.manifest.display().to_string(),
            "--state-dir".into(),
            self.state_dir.display().to_string(),
            "--listen".into(),
            format!(
                "{}:{port}",
                if self.listen_any {
                    "0.0.0.0"
                } else {
                    "127.0.0.1"
                }
            ),
        ];
        match &self.trust {
            Trust::AllowUnsigned => a.push("--allow-unsigned".into()),
            Trust::Key(k) => {
                a.push("--trusted-key".into());
                a.push(k.display().to_string());
            }
        }
        a.extend(self.extra_args.iter().cloned());
        a
    }

    /// Start the agent and wait until it answers HTTP (retrying with
    /// another port if the one picked was taken meanwhile).
    pub fn start(&self) -> Agent {
        for _attempt in 0..5 {
            let n = SEQ.fetch_add(1, Ordering::Relaxed);
            let config = self.base.join(format!("agent-{n}.toml"));
            let mut text = String::from("[agent]\n");
            for (k, v) in &self.config {
                text.push_str(&format!("{k} = {v}\n"));
            }
            std::fs::write(&config, text).unwrap_or_else(|e| panic!("write {config:?}: {e}"));
            let log = self.base.join(format!("agent-{n}.log"));
            let sock = self.base.join(format!("notify-{n}.sock"));
            assert!(
                sock.as_os_str().len() < 100,
                "notify socket path {sock:?} too long for sun_path"
            );
            let notify = Notifications::bind(&sock);
            let port = free_port();
            let args = self.args(port, &config);
            let mut cmd = if let Some((prog, rest)) = self.wrapper.split_first() {
                let mut c = Command::new(prog);
                c.args(rest).arg(BIN).args(&args);
                c
            } else if let Some((soft, hard)) = self.nofile {
                // util-linux, which .ci/setup installs (setpriv).
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={soft}:{hard}"))
                    .arg("--")
                    .arg(BIN)
                    .args(&args);
                c
            } else if self.watchdog_pid_self {
                let mut c = Command::new("bash");
                c.arg("-c")
                    .arg("export WATCHDOG_PID=$$; exec \"$0\" \"$@\"")
                    .arg(BIN)
                    .args(&args);
                c
            } else {
                let mut c = Command::new(BIN);
                c.args(&args);
                c
            };
            let log_file =
                std::fs::File::create(&log).unwrap_or_else(|e| panic!("create {log:?}: {e}"));
            cmd.stdin(Stdio::null())
                .stdout(Stdio::from(
                    log_file.try_clone().expect("clone the log file handle"),
                ))
                .stderr(Stdio::from(log_file))
                .env("NOTIFY_SOCKET", &sock)
                .env_remove("WATCHDOG_USEC")
                .env_remove("WATCHDOG_PID")
                .env_remove("RUST_LOG")
                .env("NO_COLOR", "1");
            for (k, v) in &self.env {
                cmd.env(k, v);
            }
            let cmdline = format!("{cmd:?}");
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {cmdline}: {e}"));
            let mut agent = Agent {
                pid: child.id(),
                child,
                port,
                state_dir: self.state_dir.clone(),
                log,
                config: config.clone(),
                cmdline,
                notify,
                exited: None,
                auth: self.auth.clone(),
            };
            match agent.wait_http() {
                Ok(()) => return agent,
                Err(log) if log.contains("Address already in use") => {
                    eprintln!("port {port} was taken: retrying with another");
                    continue;
                }
                Err(log) => panic!(
                    "the agent never answered HTTP\ncommand: {}\n--- log ---\n{log}",
                    agent.cmdline
                ),
            }
        }
        panic!("no free port after 5 attempts");
    }
}

// ---------------------------------------------------------------- notify

/// A datagram socket standing in for systemd's notify socket. A thread
/// drains it at once (the agent's sends block when the queue is full, as
/// they would under a systemd that stopped reading) and keeps every
/// message with its arrival time.
pub struct Notifications {
    msgs: Arc<Mutex<Vec<(Instant, String)>>>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
    path: PathBuf,
}

impl Notifications {
    fn bind(path: &Path) -> Notifications {
        let _ = std::fs::remove_file(path);
        let sock = UnixDatagram::bind(path).unwrap_or_else(|e| panic!("bind {path:?}: {e}"));
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("set a read timeout");
        let msgs: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (m, s) = (msgs.clone(), stop.clone());
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while !s.load(Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    m.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((Instant::now(), text));
                }
            }
        });
        Notifications {
            msgs,
            stop,
            reader: Some(reader),
            path: path.to_path_buf(),
        }
    }

    /// Every message so far, with its arrival time.
    pub fn all(&self) -> Vec<(Instant, String)> {
        self.msgs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for Notifications {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Does a notify message carry this assignment (`READY=1`) on a line?
pub fn has_line(msg: &str, line: &str) -> bool {
    msg.lines().any(|l| l == line)
}

// ----------------------------------------------------------------- agent

/// A running `driftd run`. Dropping it stops it (SIGTERM, then SIGKILL).
pub struct Agent {
    pub child: Child,
    pub pid: u32,
    pub port: u16,
    pub state_dir: PathBuf,
    pub log: PathBuf,
    /// The config file it was started with (rewrite it, then SIGHUP, to
    /// reload it).
    pub config: PathBuf,
    pub cmdline: String,
    pub notify: Notifications,
    exited: Option<ExitStatus>,
    /// Basic-auth credentials sent on every request, if any.
    pub auth: Option<String>,
}

impl Agent {
    /// Wait until `/metrics` answers; on failure, the log.
    fn wait_http(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok((200, _)) = http_get_as(self.port, "/metrics", self.auth.as_deref()) {
                return Ok(());
            }
            if let Some(st) = self.poll_exit() {
                return Err(format!("exited with {st}\n{}", self.log_text()));
            }
            if Instant::now() >= deadline {
                return Err(format!("no answer within {WAIT:?}\n{}", self.log_text()));
            }
            std::thread::sleep(POLL);
        }
    }

    /// The exit status if the agent has exited.
    pub fn poll_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.exited = Some(st);
            }
        }
        self.exited
    }

    /// Panic (with the log) if the agent is no longer running.
    pub fn assert_running(&mut self) {
        if let Some(st) = self.poll_exit() {
            panic!("the agent exited ({st})\n{}", self.log_text());
        }
    }

    /// Everything the agent logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    pub fn get(&self, path: &str) -> Result<(u16, String), String> {
        http_get_as(self.port, path, self.auth.as_deref())
    }

    pub fn try_metrics(&self) -> Result<Metrics, String> {
        match self.get("/metrics")? {
            (200, body) => Metrics::parse(&body),
            (code, body) => Err(format!("/metrics answered {code}: {body}")),
        }
    }

    /// One scrape; panics (with the log) if it fails.
    pub fn metrics(&self) -> Metrics {
        self.try_metrics()
            .unwrap_or_else(|e| panic!("scrape failed: {e}\n--- log ---\n{}", self.log_tail(40)))
    }

    /// `/healthz`: (status code, trimmed body).
    pub fn healthz(&self) -> (u16, String) {
        let (code, body) = self
            .get("/healthz")
            .unwrap_or_else(|e| panic!("GET /healthz: {e}\n--- log ---\n{}", self.log_tail(40)));
        (code, body.trim().to_string())
    }

    pub fn try_status(&self) -> Result<Value, String> {
        match self.get("/status")? {
            (200, body) => serde_json::from_str(&body)
                .map_err(|e| format!("/status is not JSON ({e}): {body}")),
            (code, body) => Err(format!("/status answered {code}: {body}")),
        }
    }

    /// `/status` as JSON; panics (with the log) if it fails.
    pub fn status(&self) -> Value {
        self.try_status().unwrap_or_else(|e| {
            panic!(
                "GET /status failed: {e}\n--- log ---\n{}",
                self.log_tail(40)
            )
        })
    }

    /// Poll `/metrics` until `pred` holds; panics with the last scrape and
    /// the log otherwise (or as soon as the agent exits).
    pub fn wait_metrics(&mut self, what: &str, pred: impl Fn(&Metrics) -> bool) -> Metrics {
        self.wait_endpoint(what, "/metrics", Metrics::parse, pred, |m| m.to_string())
    }

    /// Poll `/status` until `pred` holds (see [`Agent::wait_metrics`]).
    pub fn wait_status(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_endpoint(
            what,
            "/status",
            |body| {
                serde_json::from_str(body).map_err(|e| format!("/status is not JSON ({e}): {body}"))
            },
            pred,
            |v| format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default()),
        )
    }

    /// Poll an endpoint, parsed with `parse`, until `pred` holds; panics
    /// with the last answer (`show`) and the log's tail otherwise, or as
    /// soon as the agent exits.
    fn wait_endpoint<T>(
        &mut self,
        what: &str,
        path: &str,
        parse: impl Fn(&str) -> Result<T, String>,
        pred: impl Fn(&T) -> bool,
        show: impl Fn(&T) -> String,
    ) -> T {
        let port = self.port;
        let auth = self.auth.clone();
        let child = &mut self.child;
        let log = self.log.clone();
        wait_for(
            what,
            || {
                if let Ok(Some(st)) = child.try_wait() {
                    panic!(
                        "the agent exited ({st}) while waiting for {what}\n--- log ---\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                match http_get_as(port, path, auth.as_deref())? {
                    (200, body) => parse(&body),
                    (code, body) => Err(format!("{path} answered {code}: {body}")),
                }
            },
            pred,
            |v| {
                format!(
                    "{}--- log (tail) ---\n{}",
                    show(v),
                    tail(&std::fs::read_to_string(&log).unwrap_or_default(), 30)
                )
            },
        )
    }

    /// Wait until a notify message satisfies `pred`; returns all messages
    /// so far.
    pub fn wait_notify(
        &mut self,
        what: &str,
        pred: impl Fn(&[(Instant, String)]) -> bool,
    ) -> Vec<(Instant, String)> {
        let msgs = self.notify.msgs.clone();
        let child = &mut self.child;
        let log = self.log.clone();
        wait_for(
            what,
            || {
                let v = msgs.lock().unwrap_or_else(|p| p.into_inner()).clone();
                if !pred(&v) {
                    if let Ok(Some(st)) = child.try_wait() {
                        return Err(format!(
                            "the agent exited ({st}); notifications: {v:?}\n--- log ---\n{}",
                            std::fs::read_to_string(&log).unwrap_or_default()
                        ));
                    }
                }
                Ok(v)
            },
            |v| pred(v),
            |v| {
                format!(
                    "notifications: {:?}\n--- log (tail) ---\n{}",
                    v.iter().map(|(_, m)| m).collect::<Vec<_>>(),
                    tail(&std::fs::read_to_string(&log).unwrap_or_default(), 30)
                )
            },
        )
    }

    /// Wait until drift is declared (`driftd_drift_detected 1`).
    pub fn wait_drifted(&mut self) -> Metrics {
        self.wait_metrics("drift_detected 1", |m| m.v("driftd_drift_detected") == 1.0)
    }

    /// Wait until the agent has its first verdict: `READY=1` goes out as
    /// soon as it serves, then `STATUS=verdict ...` once the first full
    /// check ended (at once when the manifest is unusable, or when a drift
    /// declared before a restart is still on record).
    pub fn wait_ready(&mut self) {
        self.wait_notify("READY=1 and STATUS=verdict", |v| {
            v.iter().any(|(_, m)| has_line(m, "READY=1"))
                && v.iter()
                    .any(|(_, m)| m.lines().any(|l| l.starts_with("STATUS=verdict ")))
        });
    }

    pub fn signal(&self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid as i32).expect("a valid pid");
        rustix::process::kill_process(pid, sig)
            .unwrap_or_else(|e| panic!("kill -{sig:?} {}: {e}", self.pid));
    }

    /// SIGSTOP, and wait until every thread of the agent is stopped (so
    /// that, e.g., inotify events pile up in the kernel meanwhile).
    pub fn pause(&self) {
        self.signal(rustix::process::Signal::STOP);
        let dir = format!("/proc/{}/task", self.pid);
        let states = || -> Vec<String> {
            std::fs::read_dir(&dir)
                .map(|rd| {
                    rd.filter_map(|e| e.ok())
                        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
                        .map(|st| {
                            st[st.rfind(')').map_or(0, |i| i + 1)..]
                                .split_whitespace()
                                .next()
                                .unwrap_or("?")
                                .to_string()
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        wait_for(
            "every thread stopped",
            || Ok(states()),
            |v| !v.is_empty() && v.iter().all(|s| s == "T" || s == "t"),
            |v| format!("thread states: {v:?}"),
        );
    }

    /// SIGCONT after [`Agent::pause`].
    pub fn resume(&self) {
        self.signal(rustix::process::Signal::CONT);
    }

    pub fn sighup(&self) {
        self.signal(rustix::process::Signal::HUP);
    }

    /// SIGTERM and wait up to `within`: the exit status and how long it
    /// took. Panics (after SIGKILL) if the agent does not exit in time.
    pub fn terminate(&mut self, within: Duration) -> (ExitStatus, Duration) {
        if let Some(st) = self.poll_exit() {
            panic!("the agent had already exited ({st})\n{}", self.log_text());
        }
        let t0 = Instant::now();
        self.signal(rustix::process::Signal::TERM);
        loop {
            if let Some(st) = self.poll_exit() {
                return (st, t0.elapsed());
            }
            if t0.elapsed() >= within {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "the agent did not exit within {within:?} of SIGTERM (killed)\n--- log ---\n{}",
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// CPU time (user + system) the agent used so far, in clock ticks of
    /// 1/100 s (`USER_HZ`, which is 100 on every Linux architecture driftd
    /// targets). `tid` selects one thread (`/proc/PID/task/TID/stat`).
    pub fn cpu_ticks(&self, tid: Option<u32>) -> u64 {
        let path = match tid {
            Some(t) => format!("/proc/{}/task/{t}/stat", self.pid),
            None => format!("/proc/{}/stat", self.pid),
        };
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        // The command name may hold spaces and parentheses: fields start
        // after the last ')'. utime and stime are fields 14 and 15, i.e.
        // the 12th and 13th after it.
        let rest = &text[text.rfind(')').expect("stat has a ')'") + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = f[11].parse().expect("utime");
        let stime: u64 = f[12].parse().expect("stime");
        utime + stime
    }
}

/// Paths a process has open (its `/proc/PID/fd` links; empty once it is
/// gone).
pub fn open_files(pid: u32) -> Vec<PathBuf> {
    match std::fs::read_dir(format!("/proc/{pid}/fd")) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Poll (every 5 ms, up to [`WAIT`]) until `pid` has (`open`) or no
/// longer has (`!open`) `path` open. Reading /proc costs the agent nothing,
/// so this can watch a scan without disturbing it.
pub fn wait_file_open(pid: u32, path: &Path, open: bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let files = open_files(pid);
        if files.iter().any(|f| f == path) == open {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for pid {pid} to {} {path:?}; open: {files:?}",
            if open { "open" } else { "close" }
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.poll_exit().is_none() {
            if let Some(pid) = rustix::process::Pid::from_raw(self.pid as i32) {
                // In case a test paused it.
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::CONT);
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let t0 = Instant::now();
            while self.poll_exit().is_none() && t0.elapsed() < STOP_GRACE {
                std::thread::sleep(Duration::from_millis(10));
            }
            if self.poll_exit().is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "--- agent log ({}), last 60 lines ---\n{}",
                self.log.display(),
                self.log_tail(60)
            );
        }
    }
}

// -------------------------------------------------------------- findings

/// (path, kind) of every finding in a /status document.
pub fn status_findings(status: &Value) -> Vec<(String, String)> {
    status["findings"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| {
                    (
                        f["path"].as_str().unwrap_or("").to_string(),
                        f["kind"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Does /status list a finding of this path and kind?
pub fn has_finding(status: &Value, path: &str, kind: &str) -> bool {
    status_findings(status)
        .iter()
        .any(|(p, k)| p == path && k == kind)
}

/// Pretty JSON for messages.
pub fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}
