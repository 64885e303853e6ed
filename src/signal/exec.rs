//! The exec backend: run a configured argv (no shell) with a timeout.
//!
//! The signal is in the environment (`DRIFTD_EVENT`, `DRIFTD_VERDICT`,
//! `DRIFTD_IDEMPOTENCY_KEY`, `DRIFTD_HOST_ID`, `DRIFTD_HOSTNAME`,
//! `DRIFTD_IMAGE_ID`, `DRIFTD_MANIFEST_DIGEST`, `DRIFTD_FINDINGS_TOTAL`,
//! `DRIFTD_FIRST_DETECTED`) and, as JSON, on standard input. Exit 0 is
//! success; anything else (or the timeout) is retried.
//!
//! Config: `command` (required, a non-empty argv list), `timeout` (default
//! 60s; the command is killed then).

use super::backend::{Backend, BackendSpec, BackendType, SendFuture};
use super::Signal;
use crate::spec::Table;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

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
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| format!("spawn {prog}: {e}"))?;
        let body = serde_json::to_vec(s).map_err(|e| e.to_string())?;
        let stdin = child.stdin.take();
        // The timeout covers everything, writing the input included: a
        // command that never reads a large signal must not block us.
        let interaction = async move {
            if let Some(mut stdin) = stdin {
                // A command that ignores its input must not make us fail.
                let _ = stdin.write_all(&body).await;
            }
            child.wait_with_output().await
        };
        match tokio::time::timeout(self.timeout, interaction).await {
            // Dropping the future kills the child (kill_on_drop).
            Err(_) => Err(format!(
                "{prog} did not finish within {:?} (killed)",
                self.timeout
            )),
            Ok(Err(e)) => Err(format!("wait for {prog}: {e}")),
            Ok(Ok(out)) if out.status.success() => Ok(format!("{prog} exited 0")),
            Ok(Ok(out)) => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                let stderr = stderr.trim();
                let start = stderr.char_indices().rev().nth(199).map_or(0, |(i, _)| i);
                Err(format!(
                    "{prog} failed ({}): {}",
                    out.status,
                    &stderr[start..]
                ))
            }
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
}
