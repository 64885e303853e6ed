//! `driftd run`'s /metrics against the real Prometheus tools: `promtool
//! check metrics` lints the exposition in every state the agent can be in,
//! and a real Prometheus server scrapes the agent and sees the drift.
//!
//! Needs `promtool` and `prometheus` on PATH (Debian: `apt-get install
//! prometheus`, which `.ci/setup` does). Without them the tests print a SKIP
//! line and pass, except when the `CI` environment variable is set: there a
//! missing tool fails the test.
//!
//! Every child (agent, Prometheus, promtool) is stopped by a guard (SIGTERM,
//! then SIGKILL) and every wait is a poll with a deadline.

mod common;

use common::{tool, Dir, BIN};
use serde_json::Value;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long any one wait (readiness, detection, a scrape showing up) may take.
const DEADLINE: Duration = Duration::from_secs(30);

/// Pause between two polls of something we wait for.
const POLL: Duration = Duration::from_millis(50);

/// Tries at a free port (another process may take the one we picked before
/// the child binds it).
const PORT_TRIES: usize = 5;

/// Agent settings: react to the tamper within a fraction of a second and
/// never start a periodic rescan during the test (detection must come from
/// the inotify hint and the confirmation re-check).
const AGENT_CONFIG: &str = r#"[agent]
debounce = "50ms"
confirm_delay = "50ms"
full_scan_interval = "1h"
full_scan_jitter = "0s"
read_rate_limit = "0"
"#;

// ---------------------------------------------------------------------------
// Tools

// ---------------------------------------------------------------------------
// Children

/// A running child, stopped on drop: SIGTERM, then SIGKILL if it is still
/// there after a few seconds. Its stdout and stderr go to `log`.
struct Proc {
    what: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(what: &str, cmd: &mut Command, stdin: Stdio, log: &Path) -> Proc {
        let out = File::create(log).unwrap_or_else(|e| panic!("create {log:?}: {e}"));
        let err = out.try_clone().expect("clone log file");
        let child = cmd
            .stdin(stdin)
            .stdout(out)
            .stderr(err)
            .env("NO_COLOR", "1")
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what} ({cmd:?}): {e}"));
        Proc {
            what: what.to_owned(),
            child,
            log: log.to_owned(),
        }
    }

    /// The exit status if the child has already exited.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("wait for child")
    }

    /// Everything the child logged so far.
    fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| format!("(cannot read {:?}: {e})", self.log))
    }

    /// The log, framed for a failure message.
    fn dump(&self) -> String {
        format!("--- {} log ({:?}) ---\n{}", self.what, self.log, self.log())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                _ => return,
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

// ---------------------------------------------------------------------------
// A tiny HTTP/1.0 client

struct Response {
    status: u16,
    headers: String,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn json(&self) -> Result<Value, String> {
        serde_json::from_str(&self.body).map_err(|e| format!("not JSON ({e}): {}", self.body))
    }
}

/// `GET path` from 127.0.0.1:port over HTTP/1.0 (the server closes the
/// connection after the response, so the body is everything that follows
/// the headers).
fn http_get(port: u16, path: &str) -> Result<Response, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let io = |e: std::io::Error| format!("GET http://{addr}{path}: {e}");
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(io)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io)?;
    s.set_write_timeout(Some(Duration::from_secs(10)))
        .map_err(io)?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: driftd-tests\r\n\r\n"
    )
    .map_err(io)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(io)?;
    let text = String::from_utf8(raw)
        .map_err(|e| format!("GET http://{addr}{path}: response is not UTF-8: {e}"))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET http://{addr}{path}: no end of headers in {text:?}"))?;
    let (status_line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("GET http://{addr}{path}: bad status line {status_line:?}"))?;
    Ok(Response {
        status,
        headers: headers.to_owned(),
        body: body.to_owned(),
    })
}

/// Percent-encode a query parameter value.
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

/// Poll `f` until it returns `Ok`, at most [`DEADLINE`]; on timeout panic
/// with `what`, the last error and `context()`.
fn poll<T>(
    what: &str,
    context: impl Fn() -> String,
    mut f: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if Instant::now() >= deadline => {
                panic!(
                    "timed out after {DEADLINE:?} waiting for {what}\nlast: {e}\n{}",
                    context()
                )
            }
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

// ---------------------------------------------------------------------------
// The agent

/// How starting a child on a port ended.
enum Started {
    Up,
    Exited(ExitStatus),
    /// Something else answers on the port (its identifying answer).
    Foreign(String),
}

/// `driftd run` serving a [`Dir`]'s root, with its manifest.
struct Agent {
    proc: Proc,
    port: u16,
}

impl Agent {
    /// Start the agent on a free port and wait until it answers as *this*
    /// agent (its /status names our root), whatever its verdict.
    fn start(d: &Dir, manifest: &Path) -> Agent {
        let config = d.outside("driftd.toml");
        std::fs::write(&config, AGENT_CONFIG).expect("write agent config");
        let state = d.outside("state");
        std::fs::create_dir_all(&state).expect("create state dir");
        for attempt in 1..=PORT_TRIES {
            let port = free_port();
            let mut proc = Proc::spawn(
                "driftd run",
                Command::new(BIN)
                    .arg("run")
                    .arg("--config")
                    .arg(&config)
                    .arg("--root")
                    .arg(&d.root)
                    .arg("--manifest")
                    .arg(manifest)
                    .arg("--allow-unsigned")
                    .arg("--state-dir")
                    .arg(&state)
                    .arg("--listen")
                    .arg(format!("127.0.0.1:{port}")),
                Stdio::null(),
                &d.outside(&format!("driftd-{attempt}.log")),
            );
            let deadline = Instant::now() + DEADLINE;
            let root = d.root.display().to_string();
            let up = loop {
                if let Some(st) = proc.exited() {
                    break Started::Exited(st);
                }
                if let Ok(r) = http_get(port, "/status") {
                    let doc = r.json().unwrap_or_default();
                    if doc["root"].as_str() == Some(root.as_str()) {
                        break Started::Up;
                    }
                    break Started::Foreign(r.body);
                }
                assert!(
                    Instant::now() < deadline,
                    "driftd run did not answer on 127.0.0.1:{port} within {DEADLINE:?}\n{}",
                    proc.dump()
                );
                std::thread::sleep(POLL);
            };
            match up {
                Started::Up => return Agent { proc, port },
                Started::Exited(st)
                    if attempt < PORT_TRIES && proc.log().contains("Address already in use") =>
                {
                    eprintln!("port {port} was taken ({st}); trying another");
                }
                Started::Foreign(body) if attempt < PORT_TRIES => {
                    eprintln!("another agent answers on port {port} ({body}); trying another");
                }
                Started::Exited(st) => panic!("driftd run exited early ({st})\n{}", proc.dump()),
                Started::Foreign(body) => panic!(
                    "127.0.0.1:{port} is not our agent: /status says {body}\n{}",
                    proc.dump()
                ),
            }
        }
        unreachable!("the loop returns or panics")
    }

    fn get(&self, path: &str) -> Result<Response, String> {
        http_get(self.port, path)
    }

    /// Wait until /healthz gives `code` with body `verdict`.
    fn wait_health(&self, code: u16, verdict: &str) {
        poll(
            &format!("/healthz to answer {code} {verdict:?}"),
            || self.proc.dump(),
            || {
                let r = self.get("/healthz")?;
                if r.status == code && r.body.trim_end() == verdict {
                    Ok(())
                } else {
                    Err(format!("{} {:?}", r.status, r.body))
                }
            },
        );
    }

    /// GET /metrics: must be 200 with the text format's content type.
    fn scrape(&self) -> String {
        let r = self
            .get("/metrics")
            .unwrap_or_else(|e| panic!("{e}\n{}", self.proc.dump()));
        assert_eq!(r.status, 200, "/metrics: {}\n{}", r.body, self.proc.dump());
        let ct = r.header("content-type").unwrap_or("");
        assert!(
            ct.starts_with("text/plain; version=0.0.4"),
            "/metrics content type {ct:?} is not the Prometheus text format"
        );
        r.body
    }

    /// Scrape until `series` has `value`; return that exposition.
    fn scrape_until(&self, series: &str, value: &str) -> String {
        poll(
            &format!("/metrics to show `{series} {value}`"),
            || self.proc.dump(),
            || {
                let text = self.scrape();
                match sample(&text, series) {
                    Some(v) if v == value => Ok(text),
                    other => Err(format!("{series} is {other:?}")),
                }
            },
        )
    }
}

/// The value of one series (`name` or `name{labels}` exactly as exposed).
fn sample<'a>(text: &'a str, series: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?.strip_prefix(' ')?;
        rest.split(' ').next()
    })
}

/// A small image with a manifest baked from it.
fn baked(name: &str) -> Dir {
    let d = Dir::standard(name);
    d.bake(&[]);
    d
}

// ---------------------------------------------------------------------------
// promtool

/// `promtool check metrics < file`: (exit code, stdout + stderr).
fn promtool_check(promtool: &Path, file: &Path) -> (i32, String) {
    let input = File::open(file).unwrap_or_else(|e| panic!("open {file:?}: {e}"));
    let mut p = Proc::spawn(
        "promtool check metrics",
        Command::new(promtool).args(["check", "metrics"]),
        input.into(),
        &file.with_extension("promtool.out"),
    );
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(st) = p.exited() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "promtool check metrics did not finish within {DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    (status.code().unwrap_or(-1), p.log())
}

/// Lint an exposition: promtool must exit 0 and say nothing.
fn assert_lints_clean(promtool: &Path, d: &Dir, state: &str, text: &str) {
    let file = d.outside(&format!("metrics-{state}.txt"));
    std::fs::write(&file, text).expect("write metrics");
    let (code, out) = promtool_check(promtool, &file);
    assert!(
        code == 0 && out.trim().is_empty(),
        "promtool check metrics rejects the {state} agent's /metrics (exit {code}):\n{out}\n\
         --- metrics ({file:?}) ---\n{text}"
    );
}

#[test]
fn promtool_lints_real_metrics() {
    let Some(promtool) = tool("promtool", "prometheus") else {
        return;
    };
    let d = baked("promtool_lints");

    // The lint is live: promtool flags a counter named against the
    // conventions, so a silent pass below means something.
    let bad = d.outside("bad-metrics.txt");
    std::fs::write(
        &bad,
        "# HELP x_events A counter.\n# TYPE x_events counter\nx_events 1\n",
    )
    .expect("write bad metrics");
    let (code, out) = promtool_check(&promtool, &bad);
    assert!(
        code != 0 && out.contains("_total"),
        "promtool accepted a counter without `_total` (exit {code}): {out}"
    );

    // Clean.
    let agent = Agent::start(&d, &d.manifest);
    agent.wait_health(200, "clean");
    let clean = agent.scrape();
    assert_eq!(
        sample(&clean, "driftd_drift_detected"),
        Some("0"),
        "{clean}"
    );
    assert_eq!(
        sample(&clean, "driftd_manifest_valid"),
        Some("1"),
        "{clean}"
    );
    assert_lints_clean(&promtool, &d, "clean", &clean);

    // Drifted: every kind of series now has non-zero values (findings,
    // timestamps, targeted-scan histograms).
    d.rewrite("/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n");
    let drifted = agent.scrape_until("driftd_drift_detected", "1");
    assert_eq!(
        sample(&drifted, "driftd_verdict{verdict=\"drifted\"}"),
        Some("1"),
        "{drifted}"
    );
    agent.wait_health(503, "drifted");
    assert_lints_clean(&promtool, &d, "drifted", &drifted);
    drop(agent);

    // The manifest gone after a restart: the drift verdict is latched in
    // the state file, so the host stays drifted (with the manifest error).
    let missing = d.outside("no-such-manifest");
    let agent = Agent::start(&d, &missing);
    let latched = agent.scrape_until("driftd_manifest_error{reason=\"missing\"}", "1");
    assert_eq!(
        sample(&latched, "driftd_drift_detected"),
        Some("1"),
        "{latched}"
    );
    agent.wait_health(503, "drifted");
    assert_lints_clean(&promtool, &d, "latched-manifest-missing", &latched);
    drop(agent);

    // Unknown: no usable manifest and nothing recorded (a first start: the
    // manifest_info family has no series).
    std::fs::remove_file(d.outside("state").join("state.json")).expect("remove state.json");
    let agent = Agent::start(&d, &missing);
    let unknown = agent.scrape_until("driftd_manifest_error{reason=\"missing\"}", "1");
    assert_eq!(
        sample(&unknown, "driftd_manifest_valid"),
        Some("0"),
        "{unknown}"
    );
    agent.wait_health(503, "unknown");
    assert_lints_clean(&promtool, &d, "manifest-missing", &unknown);
}

// ---------------------------------------------------------------------------
// A real Prometheus server

struct Prometheus {
    proc: Proc,
    port: u16,
}

impl Prometheus {
    /// Start Prometheus scraping `target` every second; wait until it is
    /// ready and is *ours* (its TSDB path is our directory).
    fn start(bin: &Path, d: &Dir, target: &str) -> Prometheus {
        let job =
            format!("  - job_name: driftd\n    static_configs:\n      - targets: ['{target}']\n");
        Prometheus::start_with(bin, d, &job)
    }

    /// [`Prometheus::start`] with these `scrape_configs` entries (YAML, each
    /// line indented by two spaces).
    fn start_with(bin: &Path, d: &Dir, jobs: &str) -> Prometheus {
        let config = d.outside("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n{jobs}"
            ),
        )
        .expect("write prometheus.yml");
        for attempt in 1..=PORT_TRIES {
            let port = free_port();
            let tsdb = d.outside(&format!("tsdb-{attempt}"));
            let mut proc = Proc::spawn(
                "prometheus",
                Command::new(bin)
                    .arg(format!("--config.file={}", config.display()))
                    .arg(format!("--storage.tsdb.path={}", tsdb.display()))
                    .arg(format!("--web.listen-address=127.0.0.1:{port}")),
                Stdio::null(),
                &d.outside(&format!("prometheus-{attempt}.log")),
            );
            let deadline = Instant::now() + DEADLINE;
            let tsdb_path = tsdb.display().to_string();
            let ready = loop {
                if let Some(st) = proc.exited() {
                    break Started::Exited(st);
                }
                if http_get(port, "/-/ready").is_ok_and(|r| r.status == 200) {
                    let flags = http_get(port, "/api/v1/status/flags")
                        .and_then(|r| r.json())
                        .unwrap_or_default();
                    let theirs = &flags["data"]["storage.tsdb.path"];
                    if theirs.as_str() == Some(tsdb_path.as_str()) {
                        break Started::Up;
                    }
                    break Started::Foreign(format!("storage.tsdb.path {theirs}"));
                }
                assert!(
                    Instant::now() < deadline,
                    "prometheus was not ready on 127.0.0.1:{port} within {DEADLINE:?}\n{}",
                    proc.dump()
                );
                std::thread::sleep(POLL);
            };
            match ready {
                Started::Up => return Prometheus { proc, port },
                Started::Exited(st)
                    if attempt < PORT_TRIES && proc.log().contains("address already in use") =>
                {
                    eprintln!("port {port} was taken ({st}); trying another");
                }
                Started::Foreign(who) if attempt < PORT_TRIES => {
                    eprintln!("another prometheus answers on port {port} ({who}); trying another");
                }
                Started::Exited(st) => panic!("prometheus exited early ({st})\n{}", proc.dump()),
                Started::Foreign(who) => panic!(
                    "127.0.0.1:{port} is not our prometheus ({who})\n{}",
                    proc.dump()
                ),
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// An instant query: the result vector.
    fn query(&self, q: &str) -> Result<Vec<Value>, String> {
        let r = http_get(self.port, &format!("/api/v1/query?query={}", urlencode(q)))?;
        let doc = r.json()?;
        if r.status != 200 || doc["status"] != "success" {
            return Err(format!("query {q}: {} {}", r.status, r.body));
        }
        doc["data"]["result"]
            .as_array()
            .cloned()
            .ok_or_else(|| format!("query {q}: no result vector in {}", r.body))
    }

    /// The value of the single series `q` returns, as Prometheus prints it.
    fn value(&self, q: &str) -> Result<String, String> {
        let result = self.query(q)?;
        match result.as_slice() {
            [one] => one["value"][1]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("query {q}: no value in {one}")),
            _ => Err(format!("query {q}: {} series: {result:?}", result.len())),
        }
    }

    /// Poll until `q` returns one series with `want`.
    fn wait_value(&self, q: &str, want: &str, context: impl Fn() -> String) {
        poll(
            &format!("prometheus: `{q}` == {want}"),
            || format!("{}\n{}", self.diagnose(), context()),
            || match self.value(q)? {
                v if v == want => Ok(()),
                v => Err(format!("{q} = {v}")),
            },
        );
    }

    /// Its view of the targets and its log.
    fn diagnose(&self) -> String {
        let targets = http_get(self.port, "/api/v1/targets")
            .map(|r| r.body)
            .unwrap_or_else(|e| e);
        format!(
            "--- prometheus targets ---\n{targets}\n{}",
            self.proc.dump()
        )
    }
}

#[test]
fn real_prometheus_scrapes_the_agent() {
    let Some(bin) = tool("prometheus", "prometheus") else {
        return;
    };
    let d = baked("real_prometheus");
    let agent = Agent::start(&d, &d.manifest);
    agent.wait_health(200, "clean");
    let target = format!("127.0.0.1:{}", agent.port);
    let prom = Prometheus::start(&bin, &d, &target);
    let agent_log = || agent.proc.dump();

    let sel = format!("{{job=\"driftd\",instance=\"{target}\"}}");
    prom.wait_value(&format!("driftd_drift_detected{sel}"), "0", agent_log);
    prom.wait_value("up{job=\"driftd\"}", "1", agent_log);
    // Prometheus ingested the whole exposition, not only its first lines:
    // it parsed as many samples as the agent serves (the set of series is
    // fixed from the start, so the count does not change between scrapes).
    let served = agent
        .scrape()
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    prom.wait_value(
        &format!("scrape_samples_scraped{sel}"),
        &served.to_string(),
        agent_log,
    );
    prom.wait_value(
        &format!("driftd_verdict{{job=\"driftd\",instance=\"{target}\",verdict=\"clean\"}}"),
        "1",
        agent_log,
    );

    d.rewrite("/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n");
    prom.wait_value(&format!("driftd_drift_detected{sel}"), "1", agent_log);
    prom.wait_value(
        &format!("driftd_verdict{{job=\"driftd\",instance=\"{target}\",verdict=\"drifted\"}}"),
        "1",
        agent_log,
    );
    prom.wait_value("up{job=\"driftd\"}", "1", agent_log);
}

// ---------------------------------------------------------------------------
// TLS and basic auth: the exporter-toolkit web config

/// `openssl ARGS` in `dir`, which must succeed.
fn openssl(openssl: &Path, dir: &Path, args: &[&str]) {
    let out = Command::new(openssl)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A server certificate for 127.0.0.1 signed by the CA in `dir`
/// (`ca.crt`, `ca.key`), as `NAME.crt` and `NAME.key`.
fn server_cert(ossl: &Path, dir: &Path, name: &str) {
    let ext = dir.join(format!("{name}.ext"));
    std::fs::write(
        &ext,
        "subjectAltName = IP:127.0.0.1\nextendedKeyUsage = serverAuth\n",
    )
    .unwrap();
    let (key, csr, crt) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
    );
    openssl(
        ossl,
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    openssl(
        ossl,
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &crt,
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}

/// The SHA-256 fingerprint of a PEM certificate, as openssl prints it.
fn fingerprint(ossl: &Path, pem: &[u8]) -> String {
    let mut c = Command::new(ossl)
        .args(["x509", "-noout", "-fingerprint", "-sha256"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run openssl x509");
    c.stdin.take().unwrap().write_all(pem).unwrap();
    let out = c.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The certificate the agent presents on `port`.
fn served_cert(ossl: &Path, port: u16) -> Vec<u8> {
    let out = Command::new(ossl)
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-showcerts",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run openssl s_client");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let begin = text
        .find("-----BEGIN CERTIFICATE-----")
        .unwrap_or_else(|| panic!("no certificate: {text}"));
    let end = text[begin..].find("-----END CERTIFICATE-----").unwrap() + begin + 25;
    text.as_bytes()[begin..end].to_vec()
}

/// `curl` a URL of the agent: the HTTP status (0 when there was none).
fn curl(curl: &Path, ca: &Path, url: &str, user: Option<&str>) -> u16 {
    let mut c = Command::new(curl);
    c.args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "5",
        "--cacert",
    ])
    .arg(ca);
    if let Some(u) = user {
        c.args(["-u", u]);
    }
    let out = c.arg(url).output().expect("run curl");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// The agent's port secured as node_exporter's would be, by the same web
/// config file: TLS and basic auth. A real Prometheus scrapes it with the
/// right password (and fails with 401 with a wrong one), the health
/// endpoints stay open, plain HTTP is not spoken, and a certificate
/// replaced on disk is served without a restart while the scrapes go on.
#[test]
fn a_real_prometheus_scrapes_over_tls_with_basic_auth_and_a_rotated_certificate() {
    let (Some(bin), Some(ossl), Some(curl_bin)) = (
        tool("prometheus", "prometheus"),
        tool("openssl", "openssl"),
        tool("curl", "curl"),
    ) else {
        return;
    };
    let d = baked("prometheus_tls");
    let pki = d.outside("pki");
    std::fs::create_dir_all(&pki).unwrap();
    openssl(
        &ossl,
        &pki,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=driftd test CA",
        ],
    );
    server_cert(&ossl, &pki, "one");
    server_cert(&ossl, &pki, "two");
    for f in ["crt", "key"] {
        std::fs::copy(
            pki.join(format!("one.{f}")),
            pki.join(format!("server.{f}")),
        )
        .unwrap();
    }
    let ca = pki.join("ca.crt");
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let web = pki.join("web-config.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
             basic_auth_users:\n  prometheus: '{hash}'\n"
        ),
    )
    .unwrap();
    let config = d.outside("driftd.toml");
    std::fs::write(&config, AGENT_CONFIG).unwrap();
    let port = free_port();
    let agent = Proc::spawn(
        "driftd run",
        Command::new(BIN)
            .args(["run", "--config"])
            .arg(&config)
            .arg("--root")
            .arg(&d.root)
            .arg("--manifest")
            .arg(&d.manifest)
            .arg("--allow-unsigned")
            .arg("--state-dir")
            .arg(d.outside("state"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--web.config.file")
            .arg(&web),
        Stdio::null(),
        &d.outside("driftd-tls.log"),
    );
    let base = format!("https://127.0.0.1:{port}");
    let get = |path: &str, user: Option<&str>| curl(&curl_bin, &ca, &format!("{base}{path}"), user);
    poll(
        "the agent clean over TLS",
        || agent.dump(),
        || match get("/healthz", None) {
            200 => Ok(()),
            c => Err(format!("/healthz: {c}")),
        },
    );
    assert_eq!(get("/metrics", Some("prometheus:s3cret")), 200);
    assert_eq!(get("/metrics", Some("prometheus:wrong")), 401);
    assert_eq!(get("/metrics", None), 401);
    assert_eq!(get("/status", None), 401);
    assert_eq!(get("/status", Some("prometheus:s3cret")), 200);
    assert_eq!(get("/livez", None), 200);
    assert_eq!(
        curl(
            &curl_bin,
            &ca,
            &format!("http://127.0.0.1:{port}/healthz"),
            None
        ),
        0,
        "plain HTTP on the TLS port"
    );

    let jobs = format!(
        "  - job_name: driftd\n    scheme: https\n    tls_config:\n      ca_file: {ca}\n\
         \x20   basic_auth:\n      username: prometheus\n      password: s3cret\n\
         \x20   static_configs:\n      - targets: ['127.0.0.1:{port}']\n\
         \x20 - job_name: driftd-wrong-password\n    scheme: https\n    tls_config:\n      ca_file: {ca}\n\
         \x20   basic_auth:\n      username: prometheus\n      password: guessed\n\
         \x20   static_configs:\n      - targets: ['127.0.0.1:{port}']\n",
        ca = ca.display()
    );
    let prom = Prometheus::start_with(&bin, &d, &jobs);
    let log = || agent.dump();
    prom.wait_value("up{job=\"driftd\"}", "1", log);
    prom.wait_value("driftd_drift_detected{job=\"driftd\"}", "0", log);
    prom.wait_value("up{job=\"driftd-wrong-password\"}", "0", log);
    let targets = http_get(prom.port, "/api/v1/targets").unwrap().body;
    assert!(
        targets.contains("401"),
        "the wrong password's scrape error: {targets}"
    );

    // Rotate the certificate on disk (key first, then the chain, each
    // replaced atomically, as a certificate manager does).
    let before = fingerprint(&ossl, &served_cert(&ossl, port));
    assert_eq!(
        before,
        fingerprint(&ossl, &std::fs::read(pki.join("one.crt")).unwrap())
    );
    let want = fingerprint(&ossl, &std::fs::read(pki.join("two.crt")).unwrap());
    for f in ["key", "crt"] {
        let tmp = pki.join(format!("server.{f}.new"));
        std::fs::copy(pki.join(format!("two.{f}")), &tmp).unwrap();
        std::fs::rename(&tmp, pki.join(format!("server.{f}"))).unwrap();
    }
    poll(
        "the new certificate served",
        || agent.dump(),
        || match fingerprint(&ossl, &served_cert(&ossl, port)) {
            f if f == want => Ok(()),
            f => Err(format!("still {f}")),
        },
    );
    // Scrapes go on (each new connection gets the new certificate, which
    // the same CA signed) and the drift is seen through them.
    d.rewrite("/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n");
    prom.wait_value("driftd_drift_detected{job=\"driftd\"}", "1", log);
    prom.wait_value("up{job=\"driftd\"}", "1", log);
}
