//! The fleet test's monitoring: a real Prometheus (the Debian package)
//! scraping every agent each second with the shipped rules, a real
//! Alertmanager with the shipped `alertmanager.yml` (only its receivers'
//! URLs and secret files pointed at the test), and what the test receiver
//! got from it, parsed.
//!
//! Both servers are children stopped on drop (SIGTERM, then SIGKILL), also
//! when the test panics; their logs are shown then.

use crate::agent_util::{free_port, http_get};
use crate::signal_util::Request;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The repository, for the shipped files.
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// How long a server may take to be ready.
const READY: Duration = Duration::from_secs(30);

// ------------------------------------------------------------ children

/// A server child: started again with the same arguments by
/// [`Proc::spawn`], stopped on drop. Each start logs to its own file.
pub struct Proc {
    what: &'static str,
    program: PathBuf,
    args: Vec<String>,
    dir: PathBuf,
    starts: usize,
    child: Option<Child>,
}

impl Proc {
    fn new(what: &'static str, program: &Path, args: Vec<String>, dir: &Path) -> Proc {
        Proc {
            what,
            program: program.to_path_buf(),
            args,
            dir: dir.to_path_buf(),
            starts: 0,
            child: None,
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join(format!("{}-{}.log", self.what, self.starts))
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.what);
        self.starts += 1;
        let log = self.log_path();
        let out = std::fs::File::create(&log).unwrap_or_else(|e| panic!("create {log:?}: {e}"));
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone a file handle"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.program.display()));
        self.child = Some(child);
    }

    /// Its exit status, if it has exited.
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let st = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(st)
    }

    /// The log of the current (or last) start.
    fn last_log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The logs of every start, in order.
    pub fn log(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                let p = self.dir.join(format!("{}-{n}.log", self.what));
                std::fs::read_to_string(p).unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("--- restarted ---\n")
    }

    /// SIGTERM, and SIGKILL after 10 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let log = self.last_log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- {} log ({}), last 30 lines ---\n{}",
                self.what,
                self.log_path().display(),
                lines[lines.len().saturating_sub(30)..].join("\n")
            );
        }
    }
}

/// Start `proc` and wait until `GET /-/ready` on `port` answers 200:
/// `Err` with its log if it exited because the port was taken.
fn start_ready(proc: &mut Proc, port: u16) -> Result<(), String> {
    proc.spawn();
    let deadline = Instant::now() + READY;
    loop {
        if matches!(http_get(port, "/-/ready"), Ok((200, _))) {
            return Ok(());
        }
        if let Some(st) = proc.exited() {
            let log = proc.last_log();
            if log.contains("address already in use") {
                return Err(log);
            }
            panic!("{} exited ({st}) before it was ready\n{log}", proc.what);
        }
        assert!(
            Instant::now() < deadline,
            "{} was not ready on 127.0.0.1:{port} within {READY:?}\n{}",
            proc.what,
            proc.last_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `%XX` for everything but the unreserved characters.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---------------------------------------------------------- Prometheus

/// A real Prometheus: scrape and rule evaluation every second, the
/// shipped `driftd.rules.yml`, alerts to the Alertmanager, targets from a
/// file the test writes once the agents listen.
pub struct Prometheus {
    pub port: u16,
    targets: PathBuf,
    proc: Proc,
}

impl Prometheus {
    pub fn start(bin: &Path, dir: &Path, alertmanager_port: u16) -> Prometheus {
        let targets = dir.join("targets.json");
        write_atomically(&targets, "[]");
        let rules = Path::new(ROOT).join("packaging/prometheus/driftd.rules.yml");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {rules}\n\
                 alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{alertmanager_port}']\n\
                 scrape_configs:\n  - job_name: driftd\n    file_sd_configs:\n      - files: ['{targets}']\n        refresh_interval: 1s\n",
                rules = rules.display(),
                targets = targets.display(),
            ),
        )
        .expect("write prometheus.yml");
        for _ in 0..5 {
            let port = free_port();
            let args = vec![
                format!("--config.file={}", config.display()),
                format!("--storage.tsdb.path={}", dir.join("tsdb").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
            ];
            let mut proc = Proc::new("prometheus", bin, args, dir);
            match start_ready(&mut proc, port) {
                Ok(()) => {
                    return Prometheus {
                        port,
                        targets,
                        proc,
                    }
                }
                Err(_) => eprintln!("port {port} was taken: trying another"),
            }
        }
        panic!("no free port for prometheus after 5 attempts");
    }

    /// Where the agents' guards ask.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Scrape these agents (by port) from now on.
    pub fn set_targets(&self, ports: &[u16]) {
        let list: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        write_atomically(
            &self.targets,
            &serde_json::json!([{ "targets": list }]).to_string(),
        );
    }

    /// Stop it (SIGTERM): its guards' looks fail from now on.
    pub fn stop(&mut self) {
        self.proc.stop();
    }

    /// Start it again, on the same port and storage, and wait until it is
    /// ready (the port may take a moment to be free again).
    pub fn restart(&mut self) {
        let deadline = Instant::now() + READY;
        while let Err(log) = start_ready(&mut self.proc, self.port) {
            assert!(
                Instant::now() < deadline,
                "prometheus could not listen on its port {} again:\n{log}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// An instant query: the result vector.
    pub fn query(&self, q: &str) -> Result<Vec<Value>, String> {
        let (code, body) = http_get(self.port, &format!("/api/v1/query?query={}", urlencode(q)))?;
        let doc: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if code != 200 || doc["status"] != "success" {
            return Err(format!("query {q}: {code} {body}"));
        }
        doc["data"]["result"]
            .as_array()
            .cloned()
            .ok_or_else(|| format!("query {q}: no result vector in {body}"))
    }

    /// The value of the one series `q` returns.
    pub fn value(&self, q: &str) -> Result<f64, String> {
        match self.query(q)?.as_slice() {
            [one] => one["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("query {q}: no value in {one}")),
            other => Err(format!("query {q}: {} series: {other:?}", other.len())),
        }
    }

    pub fn log(&self) -> String {
        self.proc.log()
    }
}

/// Write through a temporary file and a rename, so Prometheus's file
/// discovery never reads half a file.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap_or_else(|e| panic!("write {tmp:?}: {e}"));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename {tmp:?}: {e}"));
}

// -------------------------------------------------------- Alertmanager

/// A real Alertmanager with the shipped `alertmanager.yml`: its routes,
/// grouping, timings and inhibit rules as shipped; the pager's PagerDuty
/// receiver posts to the test receiver's `/pagerduty` (the config's
/// `url`), the ticket webhook to `/ticket`, and their secret files are
/// temporary files.
pub struct Alertmanager {
    pub port: u16,
    proc: Proc,
}

impl Alertmanager {
    pub fn start(bin: &Path, dir: &Path, receiver: &str) -> Alertmanager {
        let shipped =
            std::fs::read_to_string(Path::new(ROOT).join("packaging/prometheus/alertmanager.yml"))
                .expect("read packaging/prometheus/alertmanager.yml");
        let key = dir.join("pagerduty-routing-key");
        std::fs::write(&key, "fleet-test-routing-key\n").expect("write the routing key");
        let token = dir.join("ticket-token");
        std::fs::write(&token, "fleet-test-ticket-token\n").expect("write the ticket token");
        let mut config = shipped.clone();
        for (from, to) in [
            (
                "      - routing_key_file: /etc/alertmanager/secrets/pagerduty-routing-key\n",
                format!(
                    "      - routing_key_file: {}\n        url: {receiver}/pagerduty\n",
                    key.display()
                ),
            ),
            (
                "url: https://tickets.example.internal/alertmanager\n",
                format!("url: {receiver}/ticket\n"),
            ),
            (
                "credentials_file: /etc/alertmanager/secrets/ticket-token\n",
                format!("credentials_file: {}\n", token.display()),
            ),
        ] {
            assert_eq!(
                config.matches(from).count(),
                1,
                "the shipped alertmanager.yml changed: `{}` is no longer there once",
                from.trim()
            );
            config = config.replace(from, &to);
        }
        let path = dir.join("alertmanager.yml");
        std::fs::write(&path, config).expect("write alertmanager.yml");
        for _ in 0..5 {
            let port = free_port();
            let args = vec![
                format!("--config.file={}", path.display()),
                format!("--storage.path={}", dir.join("alertmanager-data").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
                // No gossip: a single instance.
                "--cluster.listen-address=".to_string(),
            ];
            let mut proc = Proc::new("alertmanager", bin, args, dir);
            match start_ready(&mut proc, port) {
                Ok(()) => return Alertmanager { port, proc },
                Err(_) => eprintln!("port {port} was taken: trying another"),
            }
        }
        panic!("no free port for alertmanager after 5 attempts");
    }

    /// Every alert it holds (`GET /api/v2/alerts`), with its state
    /// (`active`, `suppressed`) and what inhibits it.
    pub fn alerts(&self) -> Result<Vec<Value>, String> {
        let (code, body) = http_get(self.port, "/api/v2/alerts")?;
        if code != 200 {
            return Err(format!("GET /api/v2/alerts: {code} {body}"));
        }
        serde_json::from_str::<Value>(&body)
            .map_err(|e| format!("{e}: {body}"))?
            .as_array()
            .cloned()
            .ok_or_else(|| format!("not a list: {body}"))
    }

    pub fn log(&self) -> String {
        self.proc.log()
    }
}

// -------------------------------------------------------------- pages

/// One notification the Alertmanager sent to the PagerDuty receiver (the
/// Events API v2 body): `trigger` or `resolve`, and the labels of each
/// alert it carries (from the default `custom_details.firing` text, one
/// `Labels:` block per alert).
#[derive(Debug, Clone)]
pub struct Page {
    pub action: String,
    pub alerts: Vec<BTreeMap<String, String>>,
}

impl Page {
    pub fn parse(r: &Request) -> Result<Page, String> {
        let v: Value = serde_json::from_slice(&r.body).map_err(|e| {
            format!(
                "a page that is not JSON ({e}): {}",
                String::from_utf8_lossy(&r.body)
            )
        })?;
        let action = v["event_action"]
            .as_str()
            .ok_or_else(|| format!("no event_action in {v}"))?
            .to_string();
        let text = v["payload"]["custom_details"]["firing"]
            .as_str()
            .unwrap_or_default();
        let mut alerts = Vec::new();
        for block in text.split("Labels:\n").skip(1) {
            let labels: BTreeMap<String, String> = block
                .lines()
                .take_while(|l| l.starts_with(" - "))
                .filter_map(|l| l[3..].split_once(" = "))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            alerts.push(labels);
        }
        if action == "trigger" && alerts.is_empty() {
            return Err(format!("a trigger without alerts: {v}"));
        }
        Ok(Page { action, alerts })
    }

    /// `(alertname, instance or digest)` of each alert: who it pages about.
    pub fn keys(&self) -> Vec<(String, String)> {
        self.alerts
            .iter()
            .map(|l| {
                let name = l.get("alertname").cloned().unwrap_or_default();
                let about = l
                    .get("instance")
                    .or_else(|| l.get("digest"))
                    .cloned()
                    .unwrap_or_default();
                (name, about)
            })
            .collect()
    }
}
