//! The exec backend: run a configured argv (no shell) with a timeout.
//!
//! The signal is in the environment (`DRIFTD_EVENT`, `DRIFTD_VERDICT`,
//! `DRIFTD_IDEMPOTENCY_KEY`, `DRIFTD_HOST_ID`, `DRIFTD_HOSTNAME`,
//! `DRIFTD_IMAGE_ID`, `DRIFTD_MANIFEST_DIGEST`, `DRIFTD_FINDINGS_TOTAL`,
//! `DRIFTD_FIRST_DETECTED`) and, as JSON, on standard input. Exit 0 is
//! success; anything else (or the timeout) is retried.

use super::{Backend, SendFuture, Signal};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

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
