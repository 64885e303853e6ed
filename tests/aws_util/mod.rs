//! Helpers for the tests of the `aws-autoscaling` backend against moto's
//! server (a real implementation of the AWS API, with SigV4 signatures and
//! IAM policies checked), shared by `tests/aws_moto.rs` and `tests/fleet`:
//! the moto venv, a `moto_server` child (killed on drop), a boto3 helper
//! that sets up an Auto Scaling group of N instances and reads their health,
//! and a stand-in for each instance's metadata service (IMDSv2).
//!
//! moto is started with `INITIAL_NO_AUTH_ACTION_COUNT`: the helper's set-up
//! calls (an IAM role and its policy, the role's session credentials, a
//! launch configuration and an Auto Scaling group) are the only unsigned
//! ones; every later call, the agents' included, must be signed with the
//! role's session credentials and allowed by its policy.
//!
//! The instance metadata service is a stand-in ([`Imds`]), not moto's own:
//! moto's IMDS answers the IMDSv2 token request without the
//! `x-aws-ec2-metadata-token-ttl-seconds` header, and the Rust SDK then
//! refuses the token (TokenError NoTtl). The stand-in serves what an EC2
//! host's IMDSv2 does for this backend, and nothing else: the session token
//! (PUT, with the TTL header), then, only with that token, the instance id,
//! the region, the identity document and the instance profile's role
//! credentials (moto's session credentials for the role).
//!
//! Test files using this module must also declare `mod agent_util;` and
//! `mod common;`.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use crate::agent_util::{free_port, http_get};
use crate::common::{self, Dir, LocalServer};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

/// The region of the fleet: not the SDK's usual default, so a pass shows
/// the region came from IMDS.
pub const REGION: &str = "eu-west-1";

/// The instance profile's role.
pub const ROLE: &str = "driftd-host";

/// Unsigned calls moto accepts: exactly the helper's `setup`.
pub const SETUP_CALLS: u32 = 6;

/// boto3 helper run with the venv's python. `setup N`: the unsigned set-up
/// of a group of N instances (prints their ids and the role's session
/// credentials as JSON); `health ID...`: each instance's HealthStatus, read
/// with a signed call (the credentials come from the environment), as a
/// JSON object.
const HELPER: &str = r#"
import json, sys
import boto3

endpoint, region, cmd = sys.argv[1:4]

def client(service):
    return boto3.client(service, endpoint_url=endpoint, region_name=region)

if cmd == "setup":
    iam = client("iam")
    iam.create_role(
        RoleName=ROLE,
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
             "Action": "sts:AssumeRole"}]}))
    iam.put_role_policy(
        RoleName=ROLE, PolicyName="replace-on-drift",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Resource": "*",
             "Action": ["autoscaling:SetInstanceHealth",
                        "autoscaling:DescribeAutoScalingInstances"]}]}))
    creds = client("sts").assume_role(
        RoleArn="arn:aws:iam::123456789012:role/" + ROLE,
        RoleSessionName="instance-profile")["Credentials"]
    asg = client("autoscaling")
    asg.create_launch_configuration(
        LaunchConfigurationName="image-1", ImageId="ami-12c6146b", InstanceType="t3.micro")
    n = int(sys.argv[4])
    asg.create_auto_scaling_group(
        AutoScalingGroupName="fleet", LaunchConfigurationName="image-1",
        MinSize=n, MaxSize=n, DesiredCapacity=n, AvailabilityZones=[region + "a"])
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["fleet"])
    instances = group["AutoScalingGroups"][0]["Instances"]
    print(json.dumps({
        "instance_ids": [i["InstanceId"] for i in instances],
        "health": [i["HealthStatus"] for i in instances],
        "AccessKeyId": creds["AccessKeyId"],
        "SecretAccessKey": creds["SecretAccessKey"],
        "Token": creds["SessionToken"],
        "Expiration": creds["Expiration"].strftime("%Y-%m-%dT%H:%M:%SZ"),
    }))
elif cmd == "health":
    out = client("autoscaling").describe_auto_scaling_instances(InstanceIds=sys.argv[4:])
    print(json.dumps({i["InstanceId"]: i["HealthStatus"] for i in out["AutoScalingInstances"]}))
else:
    sys.exit("unknown command " + cmd)
"#;

// ---------------------------------------------------------------- set-up

/// The moto venv, if there is one. If not: fail under CI, else print a
/// SKIP line and return `None`.
pub fn venv() -> Option<PathBuf> {
    let dir = std::env::var_os("DRIFTD_MOTO_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/moto-venv"));
    let ok = ["bin/python", "bin/moto_server"]
        .iter()
        .all(|b| dir.join(b).is_file());
    if ok {
        return Some(dir);
    }
    let test = std::thread::current().name().unwrap_or("?").to_owned();
    let how = format!(
        "python3 -m venv {0} && {0}/bin/pip install 'moto[server]' boto3",
        dir.display()
    );
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: no moto venv at {} (DRIFTD_MOTO_VENV), but CI is set and .ci/setup makes it ({how})",
        dir.display()
    );
    eprintln!(
        "SKIP {test}: no moto venv at {} (DRIFTD_MOTO_VENV; make it with {how}; CI fails instead)",
        dir.display()
    );
    None
}

/// Remove every `AWS_*` variable from this process, once, before any test
/// starts a child: the agent must find its region and credentials through
/// IMDS alone, whatever the developer's shell holds. Every test calls this
/// first, so no other thread of ours reads the environment meanwhile.
pub fn scrub_aws_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("AWS_") {
                std::env::remove_var(&k);
            }
        }
    });
}

/// Empty shared config and credentials files, for children that must have
/// no AWS configuration but what a test gives: (`AWS_CONFIG_FILE`,
/// `AWS_SHARED_CREDENTIALS_FILE`).
pub fn no_aws_files(d: &Dir) -> (String, String) {
    let path = |name: &str| {
        let p = d.outside(name);
        if !p.exists() {
            std::fs::write(&p, "").unwrap_or_else(|e| panic!("write {p:?}: {e}"));
        }
        p.to_str().expect("a UTF-8 temporary path").to_string()
    };
    (path("aws-config-empty"), path("aws-credentials-empty"))
}

// ------------------------------------------------------------------ moto

/// A running `moto_server` on 127.0.0.1, killed on drop.
pub struct Moto {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl Moto {
    pub fn start(venv: &Path, d: &Dir) -> Moto {
        for attempt in 0..5 {
            let port = free_port();
            let log = d.outside(&format!("moto-{attempt}.log"));
            let file =
                std::fs::File::create(&log).unwrap_or_else(|e| panic!("create {log:?}: {e}"));
            let child = Command::new(venv.join("bin/moto_server"))
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env("INITIAL_NO_AUTH_ACTION_COUNT", SETUP_CALLS.to_string())
                // Its own process group: killed as a whole on drop.
                .process_group(0)
                .stdin(Stdio::null())
                .stdout(Stdio::from(file.try_clone().expect("clone a file handle")))
                .stderr(Stdio::from(file))
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("spawn {}: {e}", venv.join("bin/moto_server").display())
                });
            let mut moto = Moto { child, port, log };
            // Any answer will do (the dashboard path is not an AWS call, so
            // it does not use up the unsigned calls).
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if http_get(port, "/moto-api/").is_ok() {
                    return moto;
                }
                if let Ok(Some(st)) = moto.child.try_wait() {
                    let log = std::fs::read_to_string(&moto.log).unwrap_or_default();
                    if log.contains("Address already in use") {
                        eprintln!("port {port} was taken: retrying with another");
                        break;
                    }
                    panic!("moto_server exited ({st}) before answering\n{log}");
                }
                assert!(
                    Instant::now() < deadline,
                    "moto_server did not answer on port {port} within 30 s\n{}",
                    std::fs::read_to_string(&moto.log).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("no free port for moto_server after 5 attempts");
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(pgid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- moto log ({}), last 30 lines ---\n{}",
                self.log.display(),
                tail(&std::fs::read_to_string(&self.log).unwrap_or_default(), 30)
            );
        }
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// What the helper's `setup` made: the instances and the role's session
/// credentials.
pub struct Fleet {
    pub instance_ids: Vec<String>,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub token: String,
    pub expiration: String,
}

/// Run the boto3 helper: its standard output.
pub fn helper(venv: &Path, d: &Dir, moto: &Moto, args: &[&str], creds: Option<&Fleet>) -> String {
    let script = d.outside("moto_helper.py");
    if !script.exists() {
        std::fs::write(&script, HELPER.replace("ROLE", &format!("{ROLE:?}")))
            .unwrap_or_else(|e| panic!("write {script:?}: {e}"));
    }
    let mut cmd = Command::new(venv.join("bin/python"));
    cmd.arg(&script).arg(moto.endpoint()).arg(REGION).args(args);
    let (config, credentials) = no_aws_files(d);
    cmd.env("AWS_CONFIG_FILE", config)
        .env("AWS_SHARED_CREDENTIALS_FILE", credentials);
    match creds {
        Some(f) => cmd
            .env("AWS_ACCESS_KEY_ID", &f.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &f.secret_access_key)
            .env("AWS_SESSION_TOKEN", &f.token),
        // Unsigned calls: moto does not check these.
        None => cmd
            .env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
            .env("AWS_SECRET_ACCESS_KEY", "unchecked"),
    };
    let out = common::run(&mut cmd);
    assert_eq!(out.code, 0, "moto helper {args:?} failed\n{out}");
    out.stdout_str()
}

/// The unsigned set-up: a role, its credentials, and a group of `n`
/// instances, all healthy.
pub fn setup(venv: &Path, d: &Dir, moto: &Moto, n: usize) -> Fleet {
    let text = helper(venv, d, moto, &["setup", &n.to_string()], None);
    let v: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("setup output ({e}): {text}"));
    let s = |k: &str| {
        v[k].as_str()
            .unwrap_or_else(|| panic!("setup output lacks {k}: {text}"))
            .to_string()
    };
    let list = |k: &str| -> Vec<String> {
        v[k].as_array()
            .unwrap_or_else(|| panic!("setup output lacks {k}: {text}"))
            .iter()
            .map(|x| x.as_str().unwrap_or_default().to_string())
            .collect()
    };
    let instance_ids = list("instance_ids");
    assert_eq!(instance_ids.len(), n, "{text}");
    assert!(
        list("health").iter().all(|h| h == "Healthy"),
        "new instances are healthy: {text}"
    );
    Fleet {
        instance_ids,
        access_key_id: s("AccessKeyId"),
        secret_access_key: s("SecretAccessKey"),
        token: s("Token"),
        expiration: s("Expiration"),
    }
}

/// The health of these instances as moto has it (a signed describe call),
/// by instance id.
pub fn health(
    venv: &Path,
    d: &Dir,
    moto: &Moto,
    fleet: &Fleet,
    ids: &[&str],
) -> BTreeMap<String, String> {
    let mut args = vec!["health"];
    args.extend_from_slice(ids);
    let text = helper(venv, d, moto, &args, Some(fleet));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("health output ({e}): {text}"))
}

// ------------------------------------------------------------------ IMDS

/// One request the stand-in answered: method, path, status.
pub type Served = (String, String, u16);

/// A stand-in for the EC2 instance metadata service, IMDSv2 only (see the
/// module comment for why it is not moto's): a `std` listener on
/// 127.0.0.1 and a thread per connection, one request per connection
/// (`Connection: close`). A GET without the session token gets 401, as
/// from an instance that requires IMDSv2.
pub struct Imds {
    pub port: u16,
    served: Arc<Mutex<Vec<Served>>>,
    _server: LocalServer,
}

/// What the stand-in serves.
pub struct ImdsData {
    instance_id: String,
    region: String,
    role: String,
    /// The role credentials document.
    credentials: String,
}

const IMDS_TOKEN: &str = "stand-in-imdsv2-session-token";

impl Imds {
    pub fn start(data: ImdsData) -> Imds {
        let served: Arc<Mutex<Vec<Served>>> = Arc::default();
        let s = served.clone();
        let server = LocalServer::start("the IMDS stand-in", move |conn, _, _| {
            if let Some(entry) = imds_answer(conn, &data) {
                s.lock().unwrap_or_else(|p| p.into_inner()).push(entry);
            }
        });
        Imds {
            port: server.port,
            served,
            _server: server,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn served(&self) -> Vec<Served> {
        self.served
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Read one request and answer it; `None` if none could be read.
fn imds_answer(mut conn: TcpStream, data: &ImdsData) -> Option<Served> {
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if raw.len() > 64 * 1024 {
            return None;
        }
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split_whitespace();
    let (method, path) = (first.next()?.to_string(), first.next()?.to_string());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    // Drain a body, if any (the token PUT has none).
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut have = raw.len() - head_end - 4;
    while have < length {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => have += n,
        }
    }

    let creds_path = format!("/latest/meta-data/iam/security-credentials/{}", data.role);
    let identity = serde_json::json!({
        "instanceId": data.instance_id,
        "region": data.region,
        "availabilityZone": format!("{}a", data.region),
        "accountId": "123456789012",
    })
    .to_string();
    let mut extra = String::new();
    let (status, body) = match (method.as_str(), path.as_str()) {
        ("PUT", "/latest/api/token") => match header("x-aws-ec2-metadata-token-ttl-seconds") {
            Some(ttl) => {
                extra = format!("x-aws-ec2-metadata-token-ttl-seconds: {ttl}\r\n");
                (200, IMDS_TOKEN.to_string())
            }
            None => (400, "missing x-aws-ec2-metadata-token-ttl-seconds".into()),
        },
        ("GET", _) if header("x-aws-ec2-metadata-token") != Some(IMDS_TOKEN) => {
            (401, String::new())
        }
        ("GET", "/latest/meta-data/instance-id") => (200, data.instance_id.clone()),
        ("GET", "/latest/meta-data/placement/region") => (200, data.region.clone()),
        ("GET", "/latest/dynamic/instance-identity/document") => (200, identity),
        ("GET", "/latest/meta-data/iam/security-credentials/") => (200, data.role.clone()),
        ("GET", p) if p == creds_path => (200, data.credentials.clone()),
        _ => (404, String::new()),
    };
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        _ => "Not Found",
    };
    let answer = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n{extra}connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(answer.as_bytes());
    let _ = conn.flush();
    Some((method, path, status))
}

/// The stand-in for the instance `instance_id` of `fleet`, serving the
/// role's credentials with `secret` as the secret key.
pub fn imds_for(fleet: &Fleet, instance_id: &str, secret: &str) -> Imds {
    let credentials = serde_json::json!({
        "Code": "Success",
        "LastUpdated": "2026-01-01T00:00:00Z",
        "Type": "AWS-HMAC",
        "AccessKeyId": fleet.access_key_id,
        "SecretAccessKey": secret,
        "Token": fleet.token,
        "Expiration": fleet.expiration,
    })
    .to_string();
    Imds::start(ImdsData {
        instance_id: instance_id.to_string(),
        region: REGION.into(),
        role: ROLE.into(),
        credentials,
    })
}
