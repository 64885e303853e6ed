//! The dispatcher with the guard: fake backends and a fake Prometheus,
//! real outbox files, paused time.

use super::*;
use crate::clock::ManualClock;
use crate::signal::backend::{Backend, SendFuture};
use crate::signal::guard::client::LookFuture;
use crate::signal::guard::query::{Answer, LookRequest};
use crate::signal::guard::{GuardSettings, Limit, OnError};
use crate::signal::Host;
use crate::telemetry::Metrics;
use std::sync::Mutex;

type Log = Arc<Mutex<Vec<(String, String)>>>;

/// Records every send as (backend, key); always succeeds.
struct Fake {
    name: String,
    sent: Log,
}

impl Backend for Fake {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "fake"
    }
    fn send<'a>(&'a self, signal: &'a Signal) -> SendFuture<'a> {
        self.sent
            .lock()
            .unwrap()
            .push((self.name.clone(), signal.idempotency_key.clone()));
        Box::pin(async { Ok("ok".to_string()) })
    }
}

/// Answers every look with the current answer; counts the looks.
#[derive(Default)]
struct FakeProm {
    answer: Mutex<Option<Result<Answer, String>>>,
    looks: Mutex<Vec<LookRequest>>,
}

impl FleetQuery for FakeProm {
    fn look<'a>(&'a self, req: &'a LookRequest) -> LookFuture<'a> {
        self.looks.lock().unwrap().push(req.clone());
        let a = self.answer.lock().unwrap().clone();
        Box::pin(async move { a.unwrap_or_else(|| Err("no answer set".into())) })
    }
}

impl FakeProm {
    fn set(&self, hosts: u64, drifted: u64) {
        *self.answer.lock().unwrap() = Some(Ok(Answer {
            hosts,
            drifted,
            unknown: 0,
        }));
    }
    fn fail(&self) {
        *self.answer.lock().unwrap() = Some(Err("connection refused".into()));
    }
    fn count(&self) -> usize {
        self.looks.lock().unwrap().len()
    }
}

const D: &str = "blake3:aa";

fn signal(key: &str, digest: &str) -> Signal {
    Signal {
        schema: "driftd.signal.v1".into(),
        event: "drift.detected".into(),
        idempotency_key: key.into(),
        host: Host {
            id: "h1".into(),
            hostname: "web-1".into(),
        },
        image_id: "img".into(),
        manifest_digest: digest.into(),
        verdict: "drifted".into(),
        reason: None,
        counts: Default::default(),
        findings_total: 1,
        findings: vec![],
        first_detected: "2027-01-15T08:00:00Z".into(),
        first_detected_unix: 1_800_000_000.0,
        created: "2027-01-15T08:00:00Z".into(),
    }
}

/// (name, dry_run, guard) for each backend.
fn backends(sent: &Log, specs: &[(&str, bool, bool)]) -> Vec<Configured> {
    specs
        .iter()
        .map(|(name, dry_run, guard)| Configured {
            backend: Box::new(Fake {
                name: name.to_string(),
                sent: sent.clone(),
            }),
            dry_run: *dry_run,
            guard: *guard,
        })
        .collect()
}

fn guard(prom: &Arc<FakeProm>, limit: &str) -> Guard {
    Guard {
        settings: GuardSettings {
            limit: Limit::parse(limit).unwrap(),
            settle: Duration::from_secs(10),
            recheck: Duration::from_secs(5),
            on_error: OnError::Hold,
        },
        query: prom.clone(),
        describe: "test".into(),
        prometheus_url: "http://prometheus:9090".into(),
        max_drifted: limit.into(),
        on_error: "hold",
    }
}

struct World {
    _dir: tempfile::TempDir,
    state: std::path::PathBuf,
    sent: Log,
    metrics: Metrics,
    prom: Arc<FakeProm>,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        World {
            state: dir.path().to_path_buf(),
            _dir: dir,
            sent: Log::default(),
            metrics: Metrics::new(),
            prom: Arc::default(),
        }
    }

    fn start(
        &self,
        specs: &[(&str, bool, bool)],
        limit: Option<&str>,
    ) -> mpsc::UnboundedSender<Command> {
        let cfg = DispatchConfig {
            backends: backends(&self.sent, specs),
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(10),
            guard: limit.map(|l| guard(&self.prom, l)),
        };
        self.metrics
            .register_backends(specs.iter().map(|(n, _, _)| *n));
        let clock = Arc::new(ManualClock::new(1_800_000_000.0, &[0.0]));
        Dispatcher::new(
            cfg,
            Outbox::new(&self.state),
            self.metrics.signal.clone(),
            "h1",
            clock,
        )
        .spawn()
    }

    fn sent(&self) -> Vec<(String, String)> {
        let mut v = self.sent.lock().unwrap().clone();
        v.sort();
        v
    }

    fn held(&self, backend: &str) -> bool {
        self.metrics
            .render()
            .contains(&format!("driftd_signal_held{{backend=\"{backend}\"}} 1"))
    }

    fn files(&self, backend: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.state.join("outbox").join(backend))
            .map(|rd| {
                rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

/// Let the dispatcher catch up (10 ms of paused time).
async fn tick() {
    tokio::time::sleep(Duration::from_millis(10)).await;
}

async fn wait(secs: u64) {
    tokio::time::sleep(Duration::from_secs(secs)).await;
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn without_a_guard_every_backend_is_sent_at_once() {
    let w = World::new();
    let tx = w.start(&[("a", false, true), ("b", false, true)], None);
    tx.send(Command::Signal(Box::new(signal("k1", D)))).unwrap();
    tick().await;
    assert_eq!(w.sent(), pairs(&[("a", "k1"), ("b", "k1")]));
    assert_eq!(w.metrics.signal.guard_status(), None);
    assert!(!w.held("a"));
}

#[tokio::test(start_paused = true)]
async fn one_decision_for_every_guarded_backend_and_none_for_the_others() {
    let w = World::new();
    w.prom.set(20, 5); // 6 of 20 > 2
    let tx = w.start(
        &[
            ("a", false, true),
            ("b", false, true),
            ("notify", false, false),
            ("dry", true, true),
        ],
        Some("10%"),
    );
    tx.send(Command::Manifest(D.into())).unwrap();
    tx.send(Command::Signal(Box::new(signal("k1", D)))).unwrap();
    wait(1).await;
    // The notify-only backend went at once; the dry run was shown.
    assert_eq!(w.sent(), pairs(&[("notify", "k1")]));
    assert_eq!(w.files("dry"), ["k1.dryrun.json"]);
    assert!(w.held("a") && w.held("b") && !w.held("notify") && !w.held("dry"));
    let st = w.metrics.signal.guard_status().unwrap();
    assert_eq!(st.signals[0].state, "settling");
    assert_eq!(st.signals[0].backends, ["a", "b"]);
    // Settled, looked: held, for both.
    wait(10).await;
    assert_eq!(w.prom.count(), 1);
    assert_eq!(w.sent(), pairs(&[("notify", "k1")]));
    let st = w.metrics.signal.guard_status().unwrap();
    assert!(st.held && st.signals[0].state == "held", "{st:?}");
    assert!(st.signals[0].why.starts_with("6 of 20 hosts"), "{st:?}");
    assert_eq!(st.last_answer.as_ref().unwrap().limit, Some(2));
    let text = w.metrics.render();
    assert!(
        text.contains("driftd_guard_drifted 6") && text.contains("driftd_guard_limit 2"),
        "{text}"
    );
    assert_eq!(w.files("a"), ["k1.pending.json"], "held in the outbox");
    // The fleet recovers: both sent, once.
    w.prom.set(20, 1);
    wait(5).await;
    assert_eq!(w.prom.count(), 2);
    assert_eq!(
        w.sent(),
        pairs(&[("a", "k1"), ("b", "k1"), ("notify", "k1")])
    );
    assert!(!w.held("a") && !w.held("b"));
    wait(60).await;
    assert_eq!(w.prom.count(), 2, "no more looks once released");
    assert_eq!(w.files("b"), ["k1.delivered.json"]);
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.state.join("outbox/b/k1.delivered.json")).unwrap())
            .unwrap();
    assert!(rec["released_unix"].as_f64().is_some(), "{rec}");
}

#[tokio::test(start_paused = true)]
async fn a_held_signal_of_a_replaced_manifest_is_dropped_and_counted() {
    let w = World::new();
    w.prom.set(20, 19);
    let tx = w.start(&[("a", false, true), ("notify", false, false)], Some("10%"));
    tx.send(Command::Manifest(D.into())).unwrap();
    tx.send(Command::Signal(Box::new(signal("k1", D)))).unwrap();
    wait(11).await;
    tx.send(Command::Manifest("blake3:bb".into())).unwrap();
    wait(1).await;
    assert_eq!(w.files("a"), ["k1.dropped.json"]);
    assert!(w.metrics.render().contains("driftd_guard_dropped_total 1"));
    assert!(!w.held("a"));
    // Asked again (a restart's request), it is not queued again.
    tx.send(Command::Signal(Box::new(signal("k1", D)))).unwrap();
    wait(30).await;
    assert_eq!(w.sent(), pairs(&[("notify", "k1")]));
    assert_eq!(w.files("a"), ["k1.dropped.json"]);
}

#[tokio::test(start_paused = true)]
async fn raising_the_limit_and_reloading_releases_at_once() {
    let w = World::new();
    w.prom.set(20, 19);
    let tx = w.start(&[("a", false, true)], Some("10%"));
    tx.send(Command::Signal(Box::new(signal("k1", D)))).unwrap();
    wait(11).await;
    assert!(w.held("a"));
    let looks = w.prom.count();
    let cfg = DispatchConfig {
        backends: backends(&w.sent, &[("a", false, true)]),
        retry_initial: Duration::from_secs(1),
        retry_max: Duration::from_secs(10),
        guard: Some(guard(&w.prom, "100%")),
    };
    tx.send(Command::Reconfigure(Box::new(cfg))).unwrap();
    tick().await;
    assert_eq!(w.prom.count(), looks + 1, "looked at once");
    assert_eq!(w.sent(), pairs(&[("a", "k1")]));
}

#[tokio::test(start_paused = true)]
async fn a_guard_removed_by_a_reload_lets_everything_go() {
    let w = World::new();
    w.prom.fail();
    let tx = w.start(&[("a", false, true)], Some("10%"));
    tx.send(Command::Signal(Box::new(signal("k1", D)))).unwrap();
    wait(30).await;
    assert!(w.held("a"), "on_error hold");
    assert!(w.metrics.render().contains("driftd_guard_errors_total 4"));
    let cfg = DispatchConfig {
        backends: backends(&w.sent, &[("a", false, true)]),
        retry_initial: Duration::from_secs(1),
        retry_max: Duration::from_secs(10),
        guard: None,
    };
    tx.send(Command::Reconfigure(Box::new(cfg))).unwrap();
    wait(1).await;
    assert_eq!(w.sent(), pairs(&[("a", "k1")]));
    assert_eq!(w.metrics.signal.guard_status(), None);
}

#[tokio::test(start_paused = true)]
async fn a_restart_keeps_the_decision_or_settles_again() {
    let w = World::new();
    // Released before the "crash": the record says so; a held one does not.
    let o = Outbox::new(&w.state);
    let item = |key: &str, released: Option<f64>| Item {
        backend: "a".into(),
        signal: signal(key, D),
        attempts: 1,
        next_attempt_unix: 0.0,
        last_error: Some("HTTP 500".into()),
        released_unix: released,
    };
    o.save(&item("released", Some(1_799_999_000.0))).unwrap();
    o.save(&item("held", None)).unwrap();
    w.prom.set(20, 19);
    let tx = w.start(&[("a", false, true)], Some("10%"));
    wait(1).await;
    assert_eq!(w.sent(), pairs(&[("a", "released")]), "not judged again");
    assert_eq!(w.prom.count(), 0, "the held one settles first");
    wait(10).await;
    assert_eq!(w.prom.count(), 1);
    assert_eq!(w.sent(), pairs(&[("a", "released")]));
    drop(tx);
}
