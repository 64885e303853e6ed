#![cfg(feature = "aws")]
//! The `aws-autoscaling` signal backend against a real AWS API
//! implementation: moto's server (the Python package `moto[server]`), with SigV4
//! signatures and IAM policies checked. The real `driftd run` bakes, detects
//! a tamper and calls `SetInstanceHealth`; moto records the health flag (it
//! never replaces the instance) and a small boto3 helper reads it back.
//!
//! Run with `cargo test --features aws --test aws_moto`. moto comes from a
//! venv: `$DRIFTD_MOTO_VENV`, default `target/moto-venv` (`.ci/setup` makes
//! it: `python3 -m venv target/moto-venv && target/moto-venv/bin/pip install
//! 'moto[server]' boto3`). Without it the tests print a SKIP line and pass,
//! except when `CI` is set: there they fail.
//!
//! moto, the boto3 helper and the instance metadata stand-in are in
//! `tests/aws_util` (shared with `tests/fleet`), which explains why each is
//! what it is: every call but the set-up must be signed with the role's
//! session credentials and allowed by its policy, and IMDSv2 is served by a
//! stand-in, not moto's own.
//!
//! Every child (moto, the agent) is stopped by a guard, the IMDS thread too;
//! every wait is a poll with a deadline.

mod agent_util;
mod aws_util;
mod common;

use agent_util::{wait_for, Agent, Launch, Metrics};
use aws_util::{
    health, imds_for, no_aws_files, scrub_aws_env, setup, venv, Fleet, Imds, Moto, ROLE,
};
use common::Dir;
use std::path::Path;

/// The instance's health as moto has it.
fn health_of(venv: &Path, d: &Dir, moto: &Moto, fleet: &Fleet) -> String {
    let id = fleet.instance_ids[0].as_str();
    health(venv, d, moto, fleet, &[id])
        .remove(id)
        .unwrap_or_else(|| panic!("moto does not know instance {id}"))
}

/// The backend's name (the default: its type) as in metric labels.
const BACKEND: &str = "aws-autoscaling";

/// The `[signals]` and `[[signal]]` tables of the agent's config.
const SIGNAL_TOML: &str = r#"
[signals]
retry_initial = "200ms"
retry_max = "1s"

[[signal]]
type = "aws-autoscaling"
should_respect_grace_period = false
"#;

// ----------------------------------------------------------------- agent

/// A baked standard tree.
fn baked(name: &str) -> Dir {
    let d = Dir::standard(name);
    d.bake_and_assert_clean(&["--image-id", "image-1"]);
    d
}

/// The agent on `d`, configured with the aws-autoscaling backend, its AWS
/// endpoint moto and its IMDS the stand-in; READY and clean.
fn start_agent(d: &Dir, moto: &Moto, imds: &Imds) -> Agent {
    let (config, credentials) = no_aws_files(d);
    // Launch writes the `[agent]` keys one per line, in order, and `set`
    // moves a key last: the value of the last key carries the signal
    // tables after it.
    let mut a = Launch::new(d)
        .env("AWS_ENDPOINT_URL", &moto.endpoint())
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.endpoint())
        .env("AWS_CONFIG_FILE", &config)
        .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
        .set("status_findings_limit", &format!("10000\n{SIGNAL_TOML}"))
        .start();
    a.wait_ready();
    a.wait_metrics("verdict clean after the first full scan", |m| {
        m.verdict("clean") == 1.0
    });
    let m = a.metrics();
    assert_eq!(requests(&m, "success") + requests(&m, "failure"), 0.0);
    a
}

fn requests(m: &Metrics, result: &str) -> f64 {
    m.get(
        "driftd_signal_requests_total",
        &[("backend", BACKEND), ("result", result)],
    )
    .unwrap_or(0.0)
}

fn pending(m: &Metrics) -> f64 {
    m.val("driftd_signal_pending", &[("backend", BACKEND)])
}

fn tamper(d: &Dir) {
    d.rewrite(
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nevil:x:0:0::/:/bin/sh\n",
    );
}

// ----------------------------------------------------------------- tests

#[test]
fn drift_marks_the_instance_unhealthy_in_its_auto_scaling_group() {
    scrub_aws_env();
    let Some(venv) = venv() else { return };
    let d = baked("aws-moto-ok");
    let moto = Moto::start(&venv, &d);
    let fleet = setup(&venv, &d, &moto, 1);
    let imds = imds_for(&fleet, &fleet.instance_ids[0], &fleet.secret_access_key);
    let mut a = start_agent(&d, &moto, &imds);

    tamper(&d);
    wait_for(
        "moto to record the instance Unhealthy",
        || Ok(health_of(&venv, &d, &moto, &fleet)),
        |h| h == "Unhealthy",
        |h| format!("HealthStatus {h}\n--- agent log ---\n{}", a.log_tail(30)),
    );
    let m = a.wait_metrics("the delivery counted", |m| requests(m, "success") == 1.0);
    assert_eq!(requests(&m, "failure"), 0.0, "{m}");
    assert_eq!(pending(&m), 0.0, "{m}");
    let log = a.log_text();
    let response = format!(
        "SetInstanceHealth Unhealthy for {} (request id ",
        fleet.instance_ids[0]
    );
    assert!(
        log.contains(&response),
        "no `{response}` in the log:\n{log}"
    );

    // IMDSv2 only: a token first, every GET with it; the instance id and
    // the role's credentials came from it.
    let served = imds.served();
    assert_eq!(
        served.first().map(|(m, p, _)| (m.as_str(), p.as_str())),
        Some(("PUT", "/latest/api/token")),
        "{served:?}"
    );
    assert!(served.iter().all(|(_, _, st)| *st == 200), "{served:?}");
    for path in [
        "/latest/meta-data/instance-id",
        "/latest/meta-data/placement/region",
        &format!("/latest/meta-data/iam/security-credentials/{ROLE}"),
    ] {
        assert!(
            served.iter().any(|(m, p, _)| m == "GET" && p == path),
            "no GET {path}: {served:?}"
        );
    }
    for secret in [&fleet.secret_access_key, &fleet.token] {
        assert!(
            !log.contains(secret.as_str()),
            "a credential in the log:\n{log}"
        );
    }
}

#[test]
fn wrong_credentials_are_retried_and_leave_the_instance_healthy() {
    scrub_aws_env();
    let Some(venv) = venv() else { return };
    let d = baked("aws-moto-wrong");
    let moto = Moto::start(&venv, &d);
    let fleet = setup(&venv, &d, &moto, 1);
    let wrong = "wrong/secret/wrong/secret/wrong/secret/12";
    let imds = imds_for(&fleet, &fleet.instance_ids[0], wrong);
    let mut a = start_agent(&d, &moto, &imds);

    tamper(&d);
    let m = a.wait_metrics("two failed attempts, the signal still pending", |m| {
        requests(m, "failure") >= 2.0 && pending(m) == 1.0
    });
    assert_eq!(requests(&m, "success"), 0.0, "{m}");
    let log = a.log_text();
    let error = format!(
        "error=SetInstanceHealth for {}: HTTP 403: SignatureDoesNotMatch: ",
        fleet.instance_ids[0]
    );
    assert!(
        log.contains("signal failed; will retry") && log.contains(&error),
        "the failure is not logged with the AWS error code (`{error}`):\n{log}"
    );
    for secret in [wrong, &fleet.secret_access_key, &fleet.token] {
        assert!(!log.contains(secret), "a credential in the log:\n{log}");
    }
    assert_eq!(health_of(&venv, &d, &moto, &fleet), "Healthy");
}
