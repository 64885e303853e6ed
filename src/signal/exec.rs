//! The exec backend: run a configured argv (no shell) with a timeout.
//!
//! The signal is in the environment (`DRIFTD_EVENT`, `DRIFTD_VERDICT`,
//! `DRIFTD_IDEMPOTENCY_KEY`, `DRIFTD_HOST_ID`, `DRIFTD_HOSTNAME`,
//! `DRIFTD_IMAGE_ID`, `DRIFTD_MANIFEST_DIGEST`, `DRIFTD_FINDINGS_TOTAL`,
//! `DRIFTD_FIRST_DETECTED`) and, as JSON, on standard input. The command's
//! own exit status decides: exit 0 is success; anything else (or the
//! timeout) is retried.
//!
//! The command runs in a process group of its own. Its stderr is read
//! (the last 200 characters are reported when it fails) only until it
//! exits, plus a short grace: a background child that keeps the pipe open
//! does not make a finished command look hung. Once the command has exited
//! (or at the timeout) the whole group is killed (SIGKILL), so a hook
//! leaves nothing behind in the agent's cgroup; something meant to outlive
//! the hook must detach itself (`setsid`).
//!
//! Config: `command` (required, a non-empty argv list), `timeout` (default
//! 60s; the command and its process group are killed then).

use super::backend::{Backend, BackendSpec, BackendType, SendFuture};
use super::Signal;
use crate::spec::Table;
use rustix::io::Errno;
use rustix::process::{kill_process_group, waitid, Pid, Signal as Sig, WaitId, WaitIdOptions};
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::ChildStderr;
use tracing::warn;

/// `type = "exec"`.
pub static TYPE: BackendType = BackendType {
    name: "exec",
    timeout: Some(Duration::from_secs(60)),
    example: "command = [\"/usr/local/bin/retire-host\"]",
    parse,
};

/// An exec backend's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecSpec {
    /// The argv, run without a shell; never empty.
    pub command: Vec<String>,
    pub timeout: Duration,
}

fn parse(t: &mut Table<'_>, timeout: Duration) -> Option<Box<dyn BackendSpec>> {
    match t.take::<Vec<String>>("command") {
        Some(command) if !command.is_empty() => Some(Box::new(ExecSpec { command, timeout })),
        _ => {
            t.error("command", "required, a non-empty argv list (no shell)");
            None
        }
    }
}

impl BackendSpec for ExecSpec {
    fn kind(&self) -> &'static str {
        TYPE.name
    }

    /// The program exists and is executable (the one PATH would run).
    fn preflight(&self) -> Result<String, String> {
        let prog = self.command.first().ok_or("empty command")?;
        let found = executable(Path::new(prog)).map_err(|e| format!("command {prog}: {e}"))?;
        Ok(format!("runs {}", found.display()))
    }

    fn build(&self, name: &str) -> Result<Box<dyn Backend>, String> {
        Ok(Box::new(Exec::new(
            name,
            self.command.clone(),
            self.timeout,
        )))
    }
}

/// The executable regular file `prog` names (a bare name is looked up in
/// PATH).
fn executable(prog: &Path) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let candidates: Vec<PathBuf> = if prog.components().count() > 1 {
        vec![prog.to_path_buf()]
    } else {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|d| d.join(prog))
            .collect()
    };
    let mut last = "not found in PATH".to_string();
    for c in candidates {
        match std::fs::metadata(&c) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => return Ok(c),
            Ok(_) => last = "not an executable file".into(),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

pub struct Exec {
    name: String,
    argv: Vec<String>,
    timeout: Duration,
}

/// How long stderr is still read after the command exited: the last words
/// of a command whose stderr a leftover child still holds open.
const STDERR_GRACE: Duration = Duration::from_millis(250);
/// How often the command is checked for having exited.
const EXIT_POLL: Duration = Duration::from_millis(20);
/// The bytes of stderr kept (the last ones); 200 characters are reported.
const STDERR_KEEP: usize = 4096;

/// The command's process group, whose id is the command's pid. Killed
/// (SIGKILL) when dropped unless [`Group::kill`] ran: a dropped send (the
/// agent stopping) takes the hook down with it. Safe as long as the command
/// is not reaped: until then its pid, and so the group's id, cannot be
/// given to another process.
struct Group(Option<Pid>);

impl Group {
    /// Kill the whole group; returns how many processes besides the
    /// (exited) command were still in it.
    fn kill(&mut self) -> usize {
        let Some(id) = self.0.take() else { return 0 };
        let left = group_members(id);
        let _ = kill_process_group(id, Sig::KILL);
        left
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Live processes (zombies aside) in process group `pgid`, its leader
/// excepted, from /proc.
fn group_members(pgid: Pid) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let leader = pgid.as_raw_nonzero().to_string();
    dir.flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name != leader.as_str() && name.bytes().all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            // PID (COMM) STATE PPID PGRP ...; COMM may hold anything but
            // ends at the last ')'.
            let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
            let mut f = rest.split_whitespace();
            let (state, pgrp) = (f.next(), f.nth(1));
            state != Some("Z") && pgrp == Some(leader.as_str())
        })
        .count()
}

/// Keep the last [`STDERR_KEEP`] bytes.
fn keep_tail(tail: &mut Vec<u8>, new: &[u8]) {
    tail.extend_from_slice(new);
    if tail.len() > STDERR_KEEP {
        tail.drain(..tail.len() - STDERR_KEEP);
    }
}

/// The last 200 characters of what the command wrote to stderr.
fn last_words(tail: &[u8]) -> String {
    let text = String::from_utf8_lossy(tail);
    let text = text.trim();
    let start = text.char_indices().rev().nth(199).map_or(0, |(i, _)| i);
    text[start..].to_string()
}

/// Read some stderr into `tail`; at EOF or on an error stop reading
/// (`stderr` becomes `None`). Never returns while `stderr` is `None`.
async fn read_stderr(stderr: &mut Option<ChildStderr>, tail: &mut Vec<u8>) {
    let Some(r) = stderr.as_mut() else {
        return std::future::pending().await;
    };
    let mut buf = [0u8; 1024];
    match r.read(&mut buf).await {
        Ok(n) if n > 0 => keep_tail(tail, &buf[..n]),
        _ => *stderr = None,
    }
}

/// Until the command `pid` has exited, without reaping it (the group's id
/// stays ours to kill).
async fn exited(pid: Pid) -> std::io::Result<()> {
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
    loop {
        match waitid(WaitId::Pid(pid), options) {
            Ok(Some(_)) => return Ok(()),
            Ok(None) | Err(Errno::INTR) => tokio::time::sleep(EXIT_POLL).await,
            Err(e) => return Err(e.into()),
        }
    }
}

/// What became of a run before the group was killed.
enum Ended {
    Exited,
    TimedOut,
}

impl Exec {
    pub fn new(name: &str, argv: Vec<String>, timeout: Duration) -> Exec {
        Exec {
            name: name.to_string(),
            argv,
            timeout,
        }
    }

    async fn run(&self, s: &Signal) -> Result<String, String> {
        let (prog, args) = self.argv.split_first().ok_or("empty command")?;
        let body = serde_json::to_vec(s).map_err(|e| e.to_string())?;
        let mut cmd = tokio::process::Command::new(prog);
        cmd.args(args)
            .env("DRIFTD_EVENT", &s.event)
            .env("DRIFTD_VERDICT", &s.verdict)
            .env("DRIFTD_IDEMPOTENCY_KEY", &s.idempotency_key)
            .env("DRIFTD_HOST_ID", &s.host.id)
            .env("DRIFTD_HOSTNAME", &s.host.hostname)
            .env("DRIFTD_IMAGE_ID", &s.image_id)
            .env("DRIFTD_MANIFEST_DIGEST", &s.manifest_digest)
            .env("DRIFTD_FINDINGS_TOTAL", s.findings_total.to_string())
            .env("DRIFTD_FIRST_DETECTED", &s.first_detected)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own group, so that its children can be killed with it.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| format!("spawn {prog}: {e}"))?;
        let pid = child
            .id()
            .and_then(|id| Pid::from_raw(i32::try_from(id).ok()?))
            // Never kill(-1): that is every process we may signal.
            .filter(|p| p.as_raw_nonzero().get() > 1)
            .ok_or_else(|| format!("spawn {prog}: no process id"))?;
        // Declared after `child`, so dropped (killed) before it is reaped.
        let mut group = Group(Some(pid));
        let mut stdin = child.stdin.take();
        let mut stderr = child.stderr.take();
        let mut tail = Vec::new();

        // The command's own exit decides; its pipes may stay open in
        // children it left behind. The timeout covers writing the input
        // too: a command that never reads a large signal must not block
        // us. The write runs beside the wait, so a child that holds stdin
        // open without reading it does not hold us either.
        let ended = {
            let write = async {
                if let Some(w) = stdin.as_mut() {
                    // A command that ignores its input must not make us fail.
                    let _ = w.write_all(&body).await;
                }
                stdin = None; // EOF for the command
            };
            let mut write = pin!(write);
            let mut written = false;
            let mut exit = pin!(exited(pid));
            let mut deadline = pin!(tokio::time::sleep(self.timeout));
            loop {
                tokio::select! {
                    r = &mut exit => break r.map(|()| Ended::Exited),
                    () = &mut deadline => break Ok(Ended::TimedOut),
                    () = &mut write, if !written => written = true,
                    () = read_stderr(&mut stderr, &mut tail) => {}
                }
            }
        };
        if let Ok(Ended::Exited) = ended {
            let drain = async {
                while stderr.is_some() {
                    read_stderr(&mut stderr, &mut tail).await;
                }
            };
            let _ = tokio::time::timeout(STDERR_GRACE, drain).await;
        }
        drop(stderr);
        if ended.is_err() {
            // waitid failed: the command may not be ours to wait for any
            // more (reaped elsewhere), so its pid may not name its group.
            group.0 = None;
        }
        // Nothing of the run outlives it: a hook that must leave something
        // running detaches it with setsid (its own group).
        let left = group.kill();
        if left > 0 {
            warn!(
                backend = %self.name,
                command = %prog,
                processes = left,
                "the exec command left processes behind in its process group; killed them"
            );
        }
        let status = child.wait().await;
        match ended {
            Err(e) => Err(format!("wait for {prog}: {e}")),
            Ok(Ended::TimedOut) => {
                let words = last_words(&tail);
                let sep = if words.is_empty() { "" } else { ": " };
                Err(format!(
                    "{prog} did not finish within {:?} (killed with its process group){sep}{words}",
                    self.timeout
                ))
            }
            Ok(Ended::Exited) => match status {
                Err(e) => Err(format!("wait for {prog}: {e}")),
                Ok(st) if st.success() => Ok(format!("{prog} exited 0")),
                Ok(st) => Err(format!("{prog} failed ({st}): {}", last_words(&tail))),
            },
        }
    }
}

impl Backend for Exec {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "exec"
    }

    fn send<'a>(&'a self, signal: &'a Signal) -> SendFuture<'a> {
        Box::pin(self.run(signal))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preflight_finds_the_program() {
        let spec = |argv: &[&str]| ExecSpec {
            command: argv.iter().map(|a| a.to_string()).collect(),
            timeout: Duration::from_secs(1),
        };
        let ok = spec(&["sh", "-c", "true"]).preflight().unwrap();
        assert!(ok.starts_with("runs /") && ok.ends_with("/sh"), "{ok}");
        let err = spec(&["/nonexistent/retire-host"]).preflight().unwrap_err();
        assert!(
            err.starts_with("command /nonexistent/retire-host: "),
            "{err}"
        );
        let err = spec(&["/etc"]).preflight().unwrap_err();
        assert_eq!(err, "command /etc: not an executable file");
        let err = spec(&["no-such-driftd-helper"]).preflight().unwrap_err();
        assert!(err.starts_with("command no-such-driftd-helper: "), "{err}");
    }

    fn signal() -> Signal {
        serde_json::from_value(serde_json::json!({
            "schema": "driftd.signal.v1", "type": "drift.detected",
            "idempotency_key": "1e8c33dd7095ff2762dabf641036fa26",
            "host": {"id": "h", "hostname": "web-17"}, "image_id": "ami-1",
            "manifest_digest": "blake3:00", "verdict": "drifted", "counts": {},
            "findings_total": 0, "findings": [],
            "first_detected": "2026-11-26T05:33:11Z", "first_detected_unix": 1.0,
            "created": "2026-11-26T05:33:11Z"
        }))
        .unwrap()
    }

    /// Run `script` (sh -c; `$1` is a file it writes its pid to) with
    /// `timeout`: the outcome, how long it took, and the group's id.
    async fn run(script: &str, timeout: Duration) -> (Result<String, String>, Duration, Pid) {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let argv = ["/bin/sh", "-c", script, "sh", pid_file.to_str().unwrap()];
        let exec = Exec::new("t", argv.iter().map(|a| a.to_string()).collect(), timeout);
        let t0 = std::time::Instant::now();
        let out = exec.send(&signal()).await;
        let took = t0.elapsed();
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        (out, took, Pid::from_raw(pid).unwrap())
    }

    /// Poll until no live process is left in group `pgid` (a SIGKILL is
    /// delivered asynchronously); false if some still are after 2 s.
    fn group_empties(pgid: Pid) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while group_members(pgid) > 0 {
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    #[tokio::test]
    async fn the_command_decides_not_a_child_that_holds_its_stderr() {
        let script = "echo $$ > \"$1\"; sleep 30 & echo started >&2; exit 0";
        let (out, took, pgid) = run(script, Duration::from_secs(10)).await;
        assert_eq!(out, Ok("/bin/sh exited 0".into()));
        assert!(took < Duration::from_secs(3), "{took:?}");
        assert!(group_empties(pgid), "the background child was not killed");
    }

    #[tokio::test]
    async fn a_failure_reports_the_end_of_stderr_and_leaves_nothing() {
        let script = "echo $$ > \"$1\"; (sleep 30 &); echo it broke >&2; exit 3";
        let (out, took, pgid) = run(script, Duration::from_secs(10)).await;
        assert_eq!(out, Err("/bin/sh failed (exit status: 3): it broke".into()));
        assert!(took < Duration::from_secs(3), "{took:?}");
        assert!(
            group_empties(pgid),
            "the double-forked child was not killed"
        );
    }

    #[tokio::test]
    async fn the_timeout_kills_the_whole_group() {
        let script = "echo $$ > \"$1\"; sleep 30 & echo waiting >&2; wait";
        let (out, took, pgid) = run(script, Duration::from_millis(300)).await;
        assert_eq!(
            out,
            Err(
                "/bin/sh did not finish within 300ms (killed with its process group): waiting"
                    .into()
            )
        );
        assert!(took < Duration::from_secs(3), "{took:?}");
        assert!(group_empties(pgid), "the group survived the timeout");
    }

    #[test]
    fn stderr_keeps_its_last_bytes_and_reports_200_characters() {
        let mut tail = Vec::new();
        for _ in 0..100 {
            keep_tail(&mut tail, "é".repeat(50).as_bytes());
        }
        keep_tail(&mut tail, b"the end\n");
        assert_eq!(tail.len(), STDERR_KEEP);
        let words = last_words(&tail);
        assert_eq!(words.chars().count(), 200);
        assert!(words.ends_with("éthe end"), "{words}");
    }

    /// The count the leftover warning and the tests rely on sees members
    /// other than the leader, and only live ones.
    #[test]
    fn group_members_counts_the_live_processes_of_a_group() {
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "sleep 30 & sleep 30 & wait"])
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = Pid::from_raw(child.id() as i32).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while group_members(pgid) < 2 {
            assert!(std::time::Instant::now() < deadline, "never saw 2 members");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(group_members(pgid), 2, "the leader is not counted");
        kill_process_group(pgid, Sig::KILL).unwrap();
        child.wait().unwrap();
        assert!(group_empties(pgid));
    }
}
