#![cfg(feature = "aws")]
//! A fleet on one machine, for real (issue 13, item 4): 22 agents, each
//! with its own small root, state directory, port, host id and instance
//! metadata; one real Prometheus scraping them all every second with the
//! shipped rules (`packaging/prometheus/driftd.rules.yml`); a real
//! Alertmanager with the shipped `alertmanager.yml`; a real `moto_server`
//! with an Auto Scaling group of one instance per agent; and the fleet
//! guard (`[signals.guard]`) on every agent, in front of two guarded
//! backends: a signed webhook and `aws-autoscaling`.
//!
//! Stand-ins, not real components: the webhook receiver (it records every
//! request; the test checks each signature the way a Standard Webhooks
//! receiver does, with its own HMAC code), the receiver of Alertmanager's
//! PagerDuty and ticket notifications (the shipped config with only those
//! URLs and the secret files changed), and each agent's instance metadata
//! service (IMDSv2, see `tests/aws_util`: moto's own omits a header the
//! SDK requires).
//!
//! The fleet: image A on 20 hosts (`a-00` to `a-19`, `max_drifted =
//! "10%"`, so 2 of 20), image B on 2 (`b-hold` with `on_error = "hold"`,
//! `b-send` with `"send"`, `max_drifted = "2"`); `settle = "3s"`,
//! `recheck = "1s"`. The scenarios run in order, each asserted:
//!
//! - (a) one host tampered: exactly that host is signalled (both
//!   backends), no sooner than `settle` after the tamper, after a look that
//!   counted 1 drifted host of 20; its page reaches the pager.
//! - (b) a bad image: every host of image A drifts at once. At most
//!   `max_drifted` retirement signals of the image are out; every other
//!   host holds (`driftd_signal_held` 1 for both backends, `/status`
//!   `guard.held`, the last look 20 drifted of 20 over a limit of 2), the
//!   fleet recording rule counts them; `DriftdFleetMassDrift` reaches the
//!   pager once and the per-host pages of the image are inhibited in the
//!   Alertmanager (and never sent: checked at the end).
//! - (c) `max_drifted` raised to 100% in every config, SIGHUP: every held
//!   signal goes out, once per host and backend.
//! - (d) Prometheus down, both image-B hosts tampered: `b-send` sends,
//!   `b-hold` holds (its looks fail, counted); Prometheus back: `b-hold`
//!   goes out.
//!
//! After each, the instances moto has marked Unhealthy are exactly the
//! hosts whose signals were released. At the end: one signal per host,
//! each signature valid; the pages were exactly a-00's, image A's fleet
//! page, and the two image-B hosts' pages, each once.
//!
//! Run with `cargo test --features aws --test fleet` (about a minute and a
//! half); needs `prometheus`, `prometheus-alertmanager` and the moto venv
//! (see `tests/aws_moto.rs`), which `.ci/setup` installs. Without them it
//! prints a SKIP line and passes, except under `CI`, where it fails.
//! Every child (agents, Prometheus, Alertmanager, moto) is stopped on
//! drop, also on a panic; every wait is a poll with a generous deadline.

#[path = "../agent_util/mod.rs"]
mod agent_util;
#[path = "../aws_util/mod.rs"]
mod aws_util;
#[path = "../common/mod.rs"]
mod common;
mod monitoring;
#[path = "../signal_util/mod.rs"]
mod signal_util;

use agent_util::{Agent, Metrics};
use aws_util::{health, imds_for, no_aws_files, scrub_aws_env, setup, venv, Fleet, Imds, Moto};
use common::{tool, Dir};
use monitoring::{Alertmanager, Page, Prometheus};
use serde_json::Value;
use signal_util::{launch_with, lit, verify_signature, webhook, Receiver, Request, Secret};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

/// Hosts of image A.
const A_HOSTS: usize = 20;
const IMAGE_A: &str = "image-a";
const IMAGE_B: &str = "image-b";
const B_HOLD: &str = "b-hold";
const B_SEND: &str = "b-send";

/// `settle` of every guard: the least time from a drift to its signal.
const SETTLE: Duration = Duration::from_secs(3);

/// The deadline of every wait: generous, for a slow 2-CPU machine.
const DEADLINE: Duration = Duration::from_secs(120);

/// The guarded backends of every agent, by name.
const WEBHOOK: &str = "retire";
const AWS: &str = "aws-autoscaling";

// --------------------------------------------------------------- hosts

/// One agent and what is its own. Fields drop in order: the agent stops
/// before its metadata service and its directory go.
struct Host {
    agent: Agent,
    _imds: Imds,
    id: String,
    instance_id: String,
    dir: Dir,
}

impl Host {
    fn instance(&self) -> String {
        format!("127.0.0.1:{}", self.agent.port)
    }
}

/// The `[signals]`, `[signals.guard]` and `[[signal]]` tables of a host.
fn tables(
    id: &str,
    prom: &str,
    max_drifted: &str,
    on_error: &str,
    rx: &str,
    secret: &Path,
) -> String {
    format!(
        "[signals]\nhost_id = {}\nretry_initial = \"200ms\"\nretry_max = \"1s\"\n\n\
         [signals.guard]\nprometheus_url = {}\nmax_drifted = {}\nsettle = \"{}s\"\n\
         recheck = \"1s\"\non_error = {}\n\n{}\
         [[signal]]\ntype = \"aws-autoscaling\"\nshould_respect_grace_period = false\n",
        lit(id),
        lit(prom),
        lit(max_drifted),
        SETTLE.as_secs(),
        lit(on_error),
        webhook(WEBHOOK, rx, secret, ""),
    )
}

/// `cp -a FROM/. TO`: an identical copy of an image's root.
fn copy_tree(from: &Path, to: &Path) {
    let out = common::run(
        std::process::Command::new("cp")
            .arg("-a")
            .arg(from.join("."))
            .arg(to),
    );
    assert_eq!(out.code, 0, "cp -a {from:?} {to:?}\n{out}");
}

/// What every host is started with.
struct Env<'a> {
    prom: &'a Prometheus,
    moto: &'a Moto,
    fleet: &'a Fleet,
    rx: &'a Receiver,
    secret: &'a Secret,
}

/// Start host `id` on a copy of `image`'s root, with its own instance of
/// the group; it answers HTTP when this returns (see [`ready`]).
fn launch(env: &Env, image: &Dir, id: &str, instance_id: &str, guard: (&str, &str)) -> Host {
    let dir = Dir::new(&format!("fleet-{id}"));
    copy_tree(&image.root, &dir.root);
    let secret_file = env.secret.write(&dir);
    let imds = imds_for(env.fleet, instance_id, &env.fleet.secret_access_key);
    let (config, credentials) = no_aws_files(&dir);
    let t = tables(
        id,
        &env.prom.url(),
        guard.0,
        guard.1,
        &env.rx.url("/retire"),
        &secret_file,
    );
    let agent = launch_with(&dir, &t)
        .manifest(&image.manifest)
        .env("AWS_ENDPOINT_URL", &env.moto.endpoint())
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.endpoint())
        .env("AWS_CONFIG_FILE", &config)
        .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
        .start();
    Host {
        agent,
        _imds: imds,
        id: id.to_string(),
        instance_id: instance_id.to_string(),
        dir,
    }
}

/// Wait until the host is READY and clean, with both backends configured
/// and nothing sent.
fn ready(h: &mut Host) {
    h.agent.wait_ready();
    let m = h
        .agent
        .wait_metrics("verdict clean after the first full scan", |m| {
            m.verdict("clean") == 1.0
        });
    for b in [WEBHOOK, AWS] {
        assert_eq!(
            m.get("driftd_signal_pending", &[("backend", b)]),
            Some(0.0),
            "{}: backend {b} not configured\n{m}",
            h.id
        );
    }
}

fn held(m: &Metrics, backend: &str) -> f64 {
    m.val("driftd_signal_held", &[("backend", backend)])
}

// ---------------------------------------------------------------- waits

/// Poll `probe` every 200 ms until it gives `Ok`, for at most
/// [`DEADLINE`]; then panic with `what` and its last `Err`.
fn poll<T>(what: &str, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match probe() {
            Ok(v) => return v,
            Err(e) if Instant::now() >= deadline => {
                panic!("timed out after {DEADLINE:?} waiting for {what}; last seen:\n{e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// The signals the webhook receiver got, by host id, each checked: a
/// valid signature, a `drift.detected` of the host's own episode
/// (`webhook-id` is its idempotency key).
fn signals(rx: &Receiver, secret: &Secret) -> BTreeMap<String, Vec<Request>> {
    let mut by_host: BTreeMap<String, Vec<Request>> = BTreeMap::new();
    for r in rx.requests() {
        assert_eq!(r.target, "/retire", "{r:?}");
        verify_signature(&secret.key, &r).unwrap_or_else(|e| panic!("{e}: {r:?}"));
        let body = r.json();
        assert_eq!(body["type"], "drift.detected", "{body}");
        assert_eq!(body["idempotency_key"], r.webhook_id(), "{body}");
        let host = body["host"]["id"].as_str().unwrap_or_default().to_string();
        by_host.entry(host).or_default().push(r);
    }
    by_host
}

/// The hosts the webhook got a signal from.
fn signalled(rx: &Receiver, secret: &Secret) -> BTreeSet<String> {
    signals(rx, secret).into_keys().collect()
}

/// The hosts whose instances moto has as Unhealthy (a signed describe).
fn unhealthy(venv: &Path, d: &Dir, moto: &Moto, fleet: &Fleet, hosts: &[Host]) -> BTreeSet<String> {
    let ids: Vec<&str> = hosts.iter().map(|h| h.instance_id.as_str()).collect();
    let health = health(venv, d, moto, fleet, &ids);
    hosts
        .iter()
        .filter(|h| match health.get(&h.instance_id).map(String::as_str) {
            Some("Unhealthy") => true,
            Some("Healthy") => false,
            other => panic!("{} ({}): health {other:?}", h.id, h.instance_id),
        })
        .map(|h| h.id.clone())
        .collect()
}

/// The pages the Alertmanager sent so far.
fn pages(pager: &Receiver) -> Vec<Page> {
    pager
        .requests()
        .iter()
        .filter(|r| r.target == "/pagerduty")
        .map(|r| Page::parse(r).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

/// How many triggers paged about each (alertname, instance or digest).
fn triggers(pager: &Receiver) -> BTreeMap<(String, String), usize> {
    let mut n = BTreeMap::new();
    for p in pages(pager).iter().filter(|p| p.action == "trigger") {
        for k in p.keys() {
            *n.entry(k).or_default() += 1;
        }
    }
    n
}

fn ids<'a>(hosts: impl IntoIterator<Item = &'a Host>) -> BTreeSet<String> {
    hosts.into_iter().map(|h| h.id.clone()).collect()
}

fn guard_of(st: &Value) -> &Value {
    &st["guard"]
}

// ----------------------------------------------------------------- test

#[test]
fn a_fleet_with_the_guard_against_real_prometheus_alertmanager_and_moto() {
    scrub_aws_env();
    let Some(venv) = venv() else { return };
    let Some(prometheus) = tool("prometheus", "prometheus") else {
        return;
    };
    let Some(alertmanager) = tool("prometheus-alertmanager", "prometheus-alertmanager") else {
        return;
    };
    let t_start = Instant::now();
    let mut timings: Vec<(&str, Duration)> = Vec::new();
    let mut lap = Instant::now();
    let mut mark = |what: &'static str, timings: &mut Vec<(&str, Duration)>| {
        timings.push((what, lap.elapsed()));
        eprintln!("fleet: {what} in {:.1}s", lap.elapsed().as_secs_f64());
        lap = Instant::now();
    };

    // The images: A, and B (another file, so another digest).
    let image_a = Dir::standard("fleet-image-a");
    image_a.bake_and_assert_clean(&["--image-id", IMAGE_A]);
    let image_b = Dir::standard("fleet-image-b");
    image_b.write("/etc/motd", "image b\n");
    image_b.bake_and_assert_clean(&["--image-id", IMAGE_B]);
    let digest_a = image_a.manifest().digest_string();
    let digest_b = image_b.manifest().digest_string();

    // The control plane, the monitoring and the receivers. Declared
    // before the hosts, so dropped after them.
    let aws = Dir::new("fleet-aws");
    let moto = Moto::start(&venv, &aws);
    let fleet = setup(&venv, &aws, &moto, A_HOSTS + 2);
    let pager = Receiver::start();
    let am = Alertmanager::start(&alertmanager, &aws.base, &pager.url(""));
    let mut prom = Prometheus::start(&prometheus, &aws.base, am.port);
    let rx = Receiver::start();
    let secret = Secret::whsec();
    let env = Env {
        prom: &prom,
        moto: &moto,
        fleet: &fleet,
        rx: &rx,
        secret: &secret,
    };

    let mut hosts: Vec<Host> = (0..A_HOSTS)
        .map(|i| {
            let id = format!("a-{i:02}");
            launch(&env, &image_a, &id, &fleet.instance_ids[i], ("10%", "hold"))
        })
        .collect();
    hosts.push(launch(
        &env,
        &image_b,
        B_HOLD,
        &fleet.instance_ids[A_HOSTS],
        ("2", "hold"),
    ));
    hosts.push(launch(
        &env,
        &image_b,
        B_SEND,
        &fleet.instance_ids[A_HOSTS + 1],
        ("2", "send"),
    ));
    for h in &mut hosts {
        ready(h);
    }
    prom.set_targets(&hosts.iter().map(|h| h.agent.port).collect::<Vec<_>>());
    // Every host counted per image by the shipped recording rule: the
    // scrapes, the host ids and the rules all work.
    for (digest, n) in [(&digest_a, A_HOSTS), (&digest_b, 2)] {
        let q = format!("digest:driftd_host_info:count{{digest=\"{digest}\"}}");
        poll(
            &format!("Prometheus to count {n} hosts of {digest}"),
            || match prom.value(&q) {
                Ok(v) if v == n as f64 => Ok(()),
                other => Err(format!("{q}: {other:?}")),
            },
        );
    }
    assert!(unhealthy(&venv, &aws, &moto, &fleet, &hosts).is_empty());
    mark(
        "set-up (moto, Alertmanager, Prometheus, 22 agents)",
        &mut timings,
    );

    // ------------------------------------------------ (a) one host tampered
    let (a_hosts, b_hosts) = hosts.split_at(A_HOSTS);
    let a00 = &a_hosts[0];
    let t_tamper = Instant::now();
    a00.dir.append("/etc/passwd", b"evil:x:0:0::/:/bin/sh\n");
    let got = poll("a-00's signal at the webhook", || {
        let s = signals(&rx, &secret);
        if s.is_empty() {
            Err("no signal yet".into())
        } else {
            Ok(s)
        }
    });
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        ["a-00"],
        "exactly the tampered host is signalled"
    );
    let first = &got["a-00"][0];
    assert!(
        first.at.duration_since(t_tamper) >= SETTLE,
        "signalled {:?} after the tamper, before settle ({SETTLE:?})",
        first.at.duration_since(t_tamper)
    );
    let st = a00.agent.status();
    let look = &guard_of(&st)["last_answer"];
    // 1 drifted of the image's 20 hosts, limit 2 (a host whose last
    // scrape failed on a loaded machine is not counted: any count from 11
    // to 20 gives the same limit).
    assert_eq!(
        (&look["drifted"], &look["limit"]),
        (&Value::from(1), &Value::from(2)),
        "a-00's look: 1 drifted, limit 2\n{st}"
    );
    assert!(
        look["hosts"]
            .as_u64()
            .is_some_and(|n| (11..=20).contains(&n)),
        "a-00's look: the image's hosts\n{st}"
    );
    poll(
        "moto to mark a-00's instance Unhealthy",
        || match unhealthy(&venv, &aws, &moto, &fleet, &hosts) {
            u if u == ids([a00]) => Ok(()),
            u => Err(format!("unhealthy: {u:?}")),
        },
    );
    // Its page reaches the pager (before (b) could inhibit it).
    let a00_page = ("DriftdDriftDetected".to_string(), a00.instance());
    poll("a-00's DriftdDriftDetected page", || {
        let t = triggers(&pager);
        if t.contains_key(&a00_page) {
            Ok(())
        } else {
            Err(format!("{t:?}\n--- alertmanager ---\n{}", am.log()))
        }
    });
    assert_eq!(signalled(&rx, &secret), ids([a00]));
    mark("(a) one host tampered", &mut timings);

    // ------------------------------------------------------ (b) a bad image
    // The image writes a file its policy does not allow, on every host at
    // once (a-00 is drifted already).
    for h in a_hosts {
        h.dir
            .write("/etc/cron.d/bad-image", "* * * * * root /usr/bin/tool\n");
    }
    let limit = 2;
    let released_a = poll("every host of image A released or held", || {
        let released: BTreeSet<String> = signalled(&rx, &secret)
            .into_iter()
            .filter(|id| id.starts_with("a-"))
            .collect();
        if released.len() > limit {
            panic!(
                "{} signals of image A out, max_drifted allows {limit}: {released:?}",
                released.len()
            );
        }
        for h in a_hosts.iter().filter(|h| !released.contains(&h.id)) {
            let m = h.agent.try_metrics()?;
            let st = h.agent.try_status()?;
            let g = guard_of(&st);
            let look = &g["last_answer"];
            let ok = held(&m, WEBHOOK) == 1.0
                && held(&m, AWS) == 1.0
                && g["held"] == true
                && g["signals"][0]["state"] == "held"
                && look["hosts"] == 20
                && look["drifted"] == 20
                && look["limit"] == 2
                && m.v("driftd_guard_drifted") == 20.0;
            if !ok {
                return Err(format!(
                    "{} not held yet: held {}/{}, guard {g}",
                    h.id,
                    held(&m, WEBHOOK),
                    held(&m, AWS)
                ));
            }
        }
        Ok(released)
    });
    assert!(released_a.contains("a-00"), "{released_a:?}");
    // The fleet's view: the shipped recording rule counts the held hosts.
    let q = format!("digest:driftd_signal_held:sum{{digest=\"{digest_a}\"}}");
    let held_a = (A_HOSTS - released_a.len()) as f64;
    poll(
        "Prometheus to count the held hosts of image A",
        || match prom.value(&q) {
            Ok(v) if v == held_a => Ok(()),
            other => Err(format!("{q}: {other:?} (want {held_a})")),
        },
    );
    // One fleet page for the image; every per-host page of the image is
    // inhibited in the Alertmanager (that none was sent is checked at the
    // end, long after their group_wait).
    let mass = ("DriftdFleetMassDrift".to_string(), digest_a.clone());
    poll("DriftdFleetMassDrift for image A at the pager", || {
        let t = triggers(&pager);
        match t.get(&mass) {
            Some(1) => Ok(()),
            Some(n) => panic!("DriftdFleetMassDrift paged {n} times: {t:?}"),
            None => Err(format!("{t:?}\n--- alertmanager ---\n{}", am.log())),
        }
    });
    let mass_page = pages(&pager)
        .into_iter()
        .find(|p| p.keys().contains(&mass))
        .expect("the fleet page");
    assert_eq!(
        mass_page.alerts[0].get("image_id").map(String::as_str),
        Some(IMAGE_A),
        "{mass_page:?}"
    );
    let a_instances: BTreeSet<String> = a_hosts.iter().map(Host::instance).collect();
    poll(
        "the Alertmanager to inhibit every per-host page of image A",
        || {
            let alerts = am.alerts()?;
            let suppressed: BTreeSet<String> = alerts
                .iter()
                .filter(|a| {
                    a["labels"]["alertname"] == "DriftdDriftDetected"
                        && a["labels"]["digest"] == digest_a.as_str()
                        && a["status"]["state"] == "suppressed"
                        && a["status"]["inhibitedBy"]
                            .as_array()
                            .is_some_and(|v| !v.is_empty())
                })
                .filter_map(|a| a["labels"]["instance"].as_str().map(str::to_string))
                .collect();
            if suppressed == a_instances {
                Ok(())
            } else {
                Err(format!(
                    "{} of {} suppressed\n{}",
                    suppressed.len(),
                    a_instances.len(),
                    serde_json::to_string_pretty(&alerts).unwrap_or_default()
                ))
            }
        },
    );
    poll(
        "moto: Unhealthy exactly where released",
        || match unhealthy(&venv, &aws, &moto, &fleet, &hosts) {
            u if u == released_a => Ok(()),
            u => Err(format!("unhealthy {u:?}, released {released_a:?}")),
        },
    );
    mark("(b) a bad image", &mut timings);

    // ------------------------------------------- (c) the limit raised, SIGHUP
    for h in a_hosts {
        let text = std::fs::read_to_string(&h.agent.config).expect("the agent's config");
        let from = "max_drifted = \"10%\"";
        assert!(text.contains(from), "{}", text);
        std::fs::write(
            &h.agent.config,
            text.replace(from, "max_drifted = \"100%\""),
        )
        .expect("rewrite the config");
        h.agent.sighup();
    }
    let all_a = ids(a_hosts);
    poll("every held signal of image A released", || {
        let s = signalled(&rx, &secret);
        if all_a.is_subset(&s) {
            Ok(())
        } else {
            Err(format!("signalled: {s:?}"))
        }
    });
    for h in a_hosts {
        let m = h.agent.metrics();
        assert_eq!(m.v("driftd_config_reload_success"), 1.0, "{}: {m}", h.id);
        let st = h.agent.status();
        assert_eq!(guard_of(&st)["max_drifted"], "100%", "{}", h.id);
    }
    poll("no signal held on image A, both backends delivered", || {
        for h in a_hosts {
            let m = h.agent.try_metrics()?;
            let sent = signal_util::requests(&m, AWS, "success");
            if held(&m, WEBHOOK) + held(&m, AWS) != 0.0
                || signal_util::requests(&m, WEBHOOK, "success") != 1.0
                || sent != 1.0
            {
                return Err(format!("{}: {m}", h.id));
            }
        }
        Ok(())
    });
    poll(
        "moto: every instance of image A Unhealthy, B's Healthy",
        || match unhealthy(&venv, &aws, &moto, &fleet, &hosts) {
            u if u == all_a => Ok(()),
            u => Err(format!("unhealthy {u:?}")),
        },
    );
    mark("(c) the limit raised and reloaded", &mut timings);

    // ------------------------------------------------- (d) Prometheus down
    let (b_hold, b_send) = (&b_hosts[0], &b_hosts[1]);
    prom.stop();
    for h in b_hosts {
        h.dir.append("/etc/passwd", b"evil:x:0:0::/:/bin/sh\n");
    }
    poll("b-send's signal, sent on the failed look", || {
        let s = signalled(&rx, &secret);
        if s.contains(B_SEND) {
            Ok(())
        } else {
            Err(format!("signalled: {s:?}"))
        }
    });
    let st = b_send.agent.status();
    assert!(
        guard_of(&st)["last_answer"]["error"].is_string(),
        "b-send's look failed: {st}"
    );
    poll("b-hold to hold after failed looks", || {
        let m = b_hold.agent.try_metrics()?;
        let st = b_hold.agent.try_status()?;
        let g = guard_of(&st);
        if held(&m, WEBHOOK) == 1.0
            && held(&m, AWS) == 1.0
            && g["held"] == true
            && g["last_answer"]["error"].is_string()
            && m.v("driftd_guard_errors_total") >= 2.0
        {
            Ok(())
        } else {
            Err(format!("{g}\n{m}"))
        }
    });
    assert!(!signalled(&rx, &secret).contains(B_HOLD));
    let mut released = all_a.clone();
    released.insert(B_SEND.to_string());
    poll("moto: b-send Unhealthy, b-hold not", || {
        match unhealthy(&venv, &aws, &moto, &fleet, &hosts) {
            u if u == released => Ok(()),
            u => Err(format!("unhealthy {u:?}, released {released:?}")),
        }
    });
    // Prometheus back: the next look finds 2 drifted of 2, within "2".
    prom.restart();
    poll("b-hold's signal once Prometheus answers", || {
        let s = signalled(&rx, &secret);
        if s.contains(B_HOLD) {
            Ok(())
        } else {
            Err(format!("signalled: {s:?}\n{}", b_hold.agent.log_tail(10)))
        }
    });
    let everyone = ids(&hosts);
    poll("moto: every instance Unhealthy", || {
        match unhealthy(&venv, &aws, &moto, &fleet, &hosts) {
            u if u == everyone => Ok(()),
            u => Err(format!("unhealthy {u:?}")),
        }
    });
    mark("(d) Prometheus down, then back", &mut timings);

    // ---------------------------------------------------------- the end
    // Image B's per-host pages arrive (not inhibited: two drifted hosts
    // are no mass drift); then the pages are exactly these, once each.
    let b_pages: Vec<(String, String)> = b_hosts
        .iter()
        .map(|h| ("DriftdDriftDetected".to_string(), h.instance()))
        .collect();
    poll("the image-B hosts' pages", || {
        let t = triggers(&pager);
        if b_pages.iter().all(|k| t.contains_key(k)) {
            Ok(())
        } else {
            Err(format!("{t:?}\n--- alertmanager ---\n{}", am.log()))
        }
    });
    let want: BTreeMap<(String, String), usize> = [a00_page, mass]
        .into_iter()
        .chain(b_pages)
        .map(|k| (k, 1))
        .collect();
    assert_eq!(
        triggers(&pager),
        want,
        "pages: a-00's, image A's fleet page and image B's hosts', once each (the per-host pages of image A inhibited)"
    );
    let pages_sent = pages(&pager);
    assert!(
        pages_sent.iter().all(|p| p.action == "trigger"),
        "{pages_sent:?}"
    );
    assert!(
        pager.requests().iter().all(|r| r.target == "/pagerduty"),
        "no ticket expected"
    );
    // One signal per host, each signed (checked by `signals`), each its
    // own episode.
    let all = signals(&rx, &secret);
    assert_eq!(all.keys().cloned().collect::<BTreeSet<_>>(), everyone);
    for (host, reqs) in &all {
        assert_eq!(reqs.len(), 1, "{host} signalled {} times", reqs.len());
    }
    let keys: BTreeSet<&str> = all.values().map(|r| r[0].webhook_id()).collect();
    assert_eq!(keys.len(), hosts.len(), "one episode per host");
    for h in &hosts {
        let m = h.agent.metrics();
        assert_eq!(
            (held(&m, WEBHOOK), held(&m, AWS)),
            (0.0, 0.0),
            "{}: nothing held at the end",
            h.id
        );
    }
    mark("the end", &mut timings);
    eprintln!(
        "fleet: {} hosts, {:.1}s in all: {timings:?}",
        hosts.len(),
        t_start.elapsed().as_secs_f64()
    );
    // Prometheus and the Alertmanager ran clean: nothing they refused.
    for (what, log) in [("prometheus", prom.log()), ("alertmanager", am.log())] {
        assert!(
            !log.contains("level=error"),
            "{what} logged an error:\n{log}"
        );
    }
}
