//! The agent's HTTP port, attacked: nothing a client does there can starve
//! the agent, and `/status` is not public by default. The real binary, run
//! under systemd's default soft descriptor limit (1,024) where it matters.
//!
//! - a flood of connections that never finish their request (more than
//!   the descriptor limit), while a file is tampered with;
//! - request bodies trickled in slowly;
//! - request heads too large;
//! - `/livez` for liveness, `/healthz` for health;
//! - `/status` from another host (a network namespace of the test's own,
//!   through a veth pair, so the client is really not on loopback).

mod agent_util;
mod common;

use agent_util::{Agent, Launch};
use common::Dir;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The agent's bounds (src/telemetry/http/server.rs).
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_CONNECTIONS: usize = 64;

fn baked(name: &str) -> Dir {
    let d = Dir::standard(name);
    d.bake_and_assert_clean(&["--image-id", "image-1"]);
    d
}

fn start_clean(launch: &Launch) -> Agent {
    let mut a = launch.start();
    a.wait_ready();
    a.wait_metrics("clean", |m| m.verdict("clean") == 1.0);
    a
}

/// This test process may hold `n` descriptors more.
fn allow_descriptors(n: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let l = getrlimit(Resource::Nofile);
    let want = l.maximum.unwrap_or(u64::MAX).min(n + 256);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(want),
            maximum: l.maximum,
        },
    )
    .expect("raise the test's own soft descriptor limit");
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// `GET path` on a fresh connection; the status code, or why not, and how
/// long it took.
fn get(port: u16, path: &str) -> (Result<u16, String>, Duration) {
    let t = Instant::now();
    (
        agent_util::http_get(port, path).map(|(c, _)| c),
        t.elapsed(),
    )
}

/// Read until the peer closes (or `limit` passes): true if it closed.
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true, // reset
        }
    }
}

/// More half-open connections than the agent has descriptors, held while a
/// file is tampered with: `/healthz` keeps answering, the drift is declared
/// within seconds, the agent never holds more than its limit allows, and it
/// closes every one of those connections itself.
#[test]
fn a_flood_of_half_open_connections_never_starves_the_agent() {
    if common::tool("prlimit", "util-linux").is_none() {
        return;
    }
    const FLOOD: usize = 1100;
    allow_descriptors(FLOOD as u64 + 64);
    let d = baked("http-flood");
    let mut a = start_clean(&Launch::new(&d).nofile(1024, 1024));
    let mut flood = Vec::new();
    for i in 0..FLOOD {
        match TcpStream::connect(("127.0.0.1", a.port)) {
            Ok(mut c) => {
                let _ = c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n");
                flood.push(c);
            }
            Err(e) => panic!("connection {i} of the flood: {e}"),
        }
    }
    let flooded = Instant::now();
    // The port keeps answering while the flood is held.
    for _ in 0..5 {
        let (code, took) = get(a.port, "/healthz");
        assert_eq!(code, Ok(200), "/healthz during the flood ({took:?})");
        assert!(took < Duration::from_secs(2), "/healthz took {took:?}");
    }
    let tampered = Instant::now();
    d.write("/etc/evil", "x\n");
    a.wait_drifted();
    assert!(
        tampered.elapsed() < Duration::from_secs(5),
        "drift declared {:?} after the tamper",
        tampered.elapsed()
    );
    let (code, _) = get(a.port, "/healthz");
    assert_eq!(code, Ok(503));
    let fds = open_fds(a.pid);
    assert!(
        fds < 200,
        "the agent holds {fds} descriptors during the flood"
    );
    // Every connection of the flood is closed by the agent, within the
    // head timeout of when it was accepted (the last ones are accepted
    // last: allow the flood's own duration on top).
    let mut open = 0;
    for c in &mut flood {
        let left = (HEADER_TIMEOUT * 2 + Duration::from_secs(5)).saturating_sub(flooded.elapsed());
        if !closed_within(c, left.max(Duration::from_millis(10))) {
            open += 1;
        }
    }
    assert_eq!(open, 0, "connections the agent never closed");
    let m = a.metrics();
    assert!(
        m.v("driftd_http_connections_evicted_total") >= (FLOOD - MAX_CONNECTIONS) as f64 - 50.0,
        "{m}"
    );
    assert!(
        m.v("driftd_http_connections") <= MAX_CONNECTIONS as f64,
        "{m}"
    );
}

/// A body trickled in byte by byte never holds a connection: every endpoint
/// is a GET, so the body is not read and the connection not kept.
#[test]
fn slow_request_bodies_are_not_waited_for() {
    let d = baked("http-slow-body");
    let a = start_clean(&Launch::new(&d));
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut c = TcpStream::connect(("127.0.0.1", a.port)).unwrap();
        c.write_all(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nx")
            .unwrap();
        slow.push(c);
    }
    let started = Instant::now();
    let mut answered = 0;
    for c in &mut slow {
        // Keep trickling while we wait for the answer and the close.
        let _ = c.write_all(b"y");
        let mut buf = Vec::new();
        c.set_read_timeout(Some(HEADER_TIMEOUT * 3)).unwrap();
        let _ = c.read_to_end(&mut buf);
        let text = String::from_utf8_lossy(&buf);
        if text.starts_with("HTTP/1.1 405") {
            answered += 1;
        }
    }
    assert_eq!(answered, 20, "each slow POST is answered 405 and closed");
    assert!(
        started.elapsed() < HEADER_TIMEOUT * 3,
        "closing the slow bodies took {:?}",
        started.elapsed()
    );
    assert_eq!(get(a.port, "/healthz").0, Ok(200));
}

/// A request head over the limit (16 KiB) is answered 431 and closed; one
/// that never ends is closed at the head timeout.
#[test]
fn oversized_and_endless_request_heads_are_refused() {
    let d = baked("http-oversized");
    let a = start_clean(&Launch::new(&d));
    let mut c = TcpStream::connect(("127.0.0.1", a.port)).unwrap();
    let big = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let _ = c.write_all(big.as_bytes());
    let mut buf = Vec::new();
    c.set_read_timeout(Some(HEADER_TIMEOUT * 2)).unwrap();
    let _ = c.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 431"), "{text:?}");
    // A head that never ends: closed within the head timeout.
    let mut c = TcpStream::connect(("127.0.0.1", a.port)).unwrap();
    let started = Instant::now();
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(500));
        if c.write_all(b"X-More: 1\r\n").is_err() {
            break;
        }
    }
    assert!(
        closed_within(&mut c, HEADER_TIMEOUT * 2),
        "an endless head was not closed"
    );
    let took = started.elapsed();
    assert!(
        took >= HEADER_TIMEOUT - Duration::from_millis(500) && took < HEADER_TIMEOUT * 2,
        "closed after {took:?}"
    );
    // An idle keep-alive connection is closed at the same timeout.
    let mut c = TcpStream::connect(("127.0.0.1", a.port)).unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut head = [0u8; 12];
    c.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let idle = Instant::now();
    assert!(
        closed_within(&mut c, HEADER_TIMEOUT * 2),
        "an idle keep-alive connection stayed open"
    );
    assert!(
        idle.elapsed() >= HEADER_TIMEOUT - Duration::from_millis(500),
        "{:?}",
        idle.elapsed()
    );
    assert_eq!(get(a.port, "/healthz").0, Ok(200));
}

/// `/livez` says the agent runs, whatever the verdict; `/healthz` says
/// whether the host is clean.
#[test]
fn livez_is_liveness_and_healthz_is_health() {
    let d = baked("http-livez");
    let mut a = start_clean(&Launch::new(&d));
    assert_eq!(a.get("/livez").unwrap(), (200, "alive\n".into()));
    d.write("/etc/evil", "x\n");
    a.wait_drifted();
    assert_eq!(a.get("/livez").unwrap(), (200, "alive\n".into()));
    assert_eq!(a.healthz().0, 503);
    // A stopped loop does not answer: /livez fails (here the whole process
    // is stopped, so the connection itself waits; resume and it answers).
    a.pause();
    let port = a.port;
    let t = std::thread::spawn(move || agent_util::http_get(port, "/livez"));
    std::thread::sleep(Duration::from_millis(300));
    a.resume();
    assert_eq!(t.join().unwrap().unwrap().0, 200);
}

// ------------------------------------------------ /status from another host

/// A network namespace with a veth pair to this one: the host side is
/// 10.213.N.1, the namespace side 10.213.N.2. Removed on drop.
struct Netns {
    name: String,
    host_ip: String,
}

impl Netns {
    fn new(tag: u8) -> Netns {
        let name = format!("driftd-test-{tag}-{}", std::process::id());
        let (veth, peer) = (format!("dth{tag}"), format!("dtp{tag}"));
        let host_ip = format!("10.213.{tag}.1");
        let ns_ip = format!("10.213.{tag}.2");
        let ip = |args: &[&str]| {
            let out = std::process::Command::new("ip")
                .args(args)
                .output()
                .expect("run ip");
            assert!(
                out.status.success(),
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &veth])
            .output();
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &name])
            .output();
        ip(&["netns", "add", &name]);
        let ns = Netns {
            name: name.clone(),
            host_ip: host_ip.clone(),
        };
        ip(&["link", "add", &veth, "type", "veth", "peer", "name", &peer]);
        ip(&["link", "set", &peer, "netns", &name]);
        ip(&["addr", "add", &format!("{host_ip}/24"), "dev", &veth]);
        ip(&["link", "set", &veth, "up"]);
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("{ns_ip}/24"),
            "dev",
            &peer,
        ]);
        ip(&["-n", &name, "link", "set", &peer, "up"]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        ns
    }

    /// `GET path` from inside the namespace: (status code, body).
    fn get(&self, port: u16, path: &str) -> (u16, String) {
        self.get_with(port, path, "")
    }

    /// [`Netns::get`] with more header lines (`"Authorization: ...\r\n"`).
    fn get_with(&self, port: u16, path: &str, headers: &str) -> (u16, String) {
        let ns = std::fs::File::open(format!("/run/netns/{}", self.name)).expect("open the netns");
        let (host, path, headers) = (self.host_ip.clone(), path.to_string(), headers.to_string());
        std::thread::spawn(move || {
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&ns),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .expect("enter the netns");
            let mut s = TcpStream::connect((host.as_str(), port)).expect("connect from the netns");
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n{headers}\r\n").as_bytes())
                .unwrap();
            let mut raw = String::new();
            let _ = s.read_to_string(&mut raw);
            let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
            let code = head
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            (code, body.to_string())
        })
        .join()
        .expect("the netns client")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

#[test]
fn status_answers_only_loopback_clients_unless_status_public() {
    if common::skip_unless_root("making a network namespace") {
        return;
    }
    let d = baked("http-status-remote");
    let ns = Netns::new(1);
    // The default: /status for loopback clients only.
    let a = start_clean(&Launch::new(&d).listen_any());
    assert_eq!(a.get("/status").unwrap().0, 200, "loopback");
    let (code, body) = ns.get(a.port, "/status");
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("status_public"), "{body}");
    assert_eq!(ns.get(a.port, "/metrics").0, 200);
    assert_eq!(ns.get(a.port, "/healthz").0, 200);
    assert_eq!(ns.get(a.port, "/livez").0, 200);
    drop(a);
    // status_public = true: anyone.
    let a = start_clean(&Launch::new(&d).listen_any().set("status_public", "true"));
    let (code, body) = ns.get(a.port, "/status");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("driftd.status.v1"), "{body}");
    drop(a);
    // Basic auth (a web config): anyone with the credentials, from anywhere;
    // the health endpoints stay open.
    let web = d.write_outside(
        "web-config.yml",
        format!(
            "basic_auth_users:\n  ops: '{}'\n",
            bcrypt::hash("pw", 4).unwrap()
        ),
    );
    let a = start_clean(
        &Launch::new(&d)
            .listen_any()
            .arg("--web.config.file")
            .arg(common::s(&web))
            .auth("ops:pw"),
    );
    let creds = "Authorization: Basic b3BzOnB3\r\n"; // ops:pw
    assert_eq!(ns.get(a.port, "/status").0, 401);
    assert_eq!(ns.get_with(a.port, "/status", creds).0, 200);
    assert_eq!(ns.get_with(a.port, "/metrics", creds).0, 200);
    assert_eq!(ns.get(a.port, "/healthz").0, 200);
    assert_eq!(ns.get(a.port, "/livez").0, 200);
}

/// Descriptors: started under a soft limit below the hard one (systemd's
/// default is 1,024 soft), the agent raises its soft limit to the hard one.
#[test]
fn the_agent_raises_its_soft_descriptor_limit_to_the_hard_one() {
    if common::tool("prlimit", "util-linux").is_none() {
        return;
    }
    let d = baked("http-nofile");
    let a = start_clean(&Launch::new(&d).nofile(1024, 4096));
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", a.pid)).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_string();
    let nums: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(nums, ["4096", "4096"], "{line}");
}
