//! `driftd state`: show the agent's persisted verdict, or clear a drift
//! verdict explicitly.
//!
//! Once drift is confirmed a host stays drifted: neither reverting the
//! file, nor restarting, nor deleting or editing the state file clears it
//! (the running agent writes back what it holds). The only way out besides
//! a new image is this command, an explicit and recorded operator act: it
//! writes a clearance naming the episode (when, by whom, why) and the agent
//! honours it on its next reload.

use super::{CliError, Format, Status};
use crate::clock::{now_unix, rfc3339};
use crate::daemon::state::{StateError, StateStore};
use crate::manifest::escape::escape;
use crate::verdict::episode::{Clearance, StateDoc};
use clap::{Args, Subcommand};
use serde::Serialize;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct StateArgs {
    #[command(subcommand)]
    pub command: StateCommand,
    /// Config file whose agent.state_dir to use (default: the built-in
    /// default, /var/lib/driftd).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// The state directory (overrides agent.state_dir).
    #[arg(long, value_name = "DIR", global = true)]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Show the persisted drift verdict, unknown period and last clearance.
    Show {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Clear the drift verdict (e.g. a false positive fixed in the image
    /// pipeline); a running agent applies it on reload.
    #[command(after_help = "\
The clearance names the episode it clears (its first detection time and \
manifest digest), who cleared it and why; the agent applies it on its next \
reload (`systemctl reload driftd`, or SIGHUP) and logs it. An agent that \
holds another episode ignores it. Deleting state.json does NOT clear a \
verdict: a running agent writes back what it holds.

Exit status: 0 cleared (or nothing to clear), 2 error.")]
    Clear {
        /// Why (recorded in the state file and logged by the agent).
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
}

pub fn run(a: StateArgs) -> Result<Status, CliError> {
    let dir = match (&a.state_dir, &a.config) {
        (Some(d), _) => d.clone(),
        (None, Some(c)) => crate::config::load(c)?.agent.state_dir,
        (None, None) => crate::config::AgentConfig::default().state_dir,
    };
    let store = StateStore::new(&dir);
    match a.command {
        StateCommand::Show { format } => show(&store, format),
        StateCommand::Clear { reason } => clear(&store, reason),
    }
}

fn show(store: &StateStore, format: Format) -> Result<Status, CliError> {
    // The state file's content is quoted by serde in some errors: escaped.
    let doc = store
        .load()
        .map_err(|e| CliError(escape(e.to_string().as_bytes())))?;
    let doc = doc.unwrap_or_default();
    match format {
        Format::Json => {
            #[derive(Serialize)]
            struct Out<'a> {
                path: String,
                #[serde(flatten)]
                doc: &'a StateDoc,
            }
            let out = Out {
                path: store.path().display().to_string(),
                doc: &doc,
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&out).expect("serialising plain data")
            );
        }
        Format::Text => {
            // The state file is only a file: everything from it is escaped.
            println!("state file:  {}", super::shown(&store.path()));
            match &doc.declared {
                Some(d) => println!(
                    "drift:       DRIFTED since {} from manifest {} (image {}), {} finding(s)",
                    rfc3339(d.first_detected_unix),
                    escape(d.manifest_digest.as_bytes()),
                    escape(d.image_id.as_bytes()),
                    d.findings_total
                ),
                None => println!("drift:       none recorded"),
            }
            if let Some(u) = &doc.unknown {
                println!("unknown:     since {}", rfc3339(u.since_unix));
            }
            if let Some(c) = &doc.cleared {
                println!(
                    "cleared:     the episode of {} was cleared by {} at {}{}",
                    rfc3339(c.first_detected_unix),
                    escape(c.by.as_bytes()),
                    rfc3339(c.cleared_unix),
                    c.reason
                        .as_deref()
                        .map(|r| format!(": {}", escape(r.as_bytes())))
                        .unwrap_or_default()
                );
            }
        }
    }
    Ok(0)
}

/// Who is clearing: the invoking user behind sudo, else this user (by
/// name from the environment or /etc/passwd, else by uid).
fn operator() -> String {
    for var in ["SUDO_USER", "USER", "LOGNAME"] {
        if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            return v.to_string_lossy().into_owned();
        }
    }
    let uid = rustix::process::getuid().as_raw();
    let by_uid = |line: &str| {
        let mut f = line.split(':');
        let name = f.next()?;
        (f.nth(1)? == uid.to_string()).then(|| name.to_string())
    };
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|t| t.lines().find_map(by_uid))
        .unwrap_or_else(|| format!("uid {uid}"))
}

fn clear(store: &StateStore, reason: String) -> Result<Status, CliError> {
    let reason = reason.trim().to_string();
    if reason.is_empty() {
        return Err(CliError(
            "state clear: --reason must say why the verdict is cleared".into(),
        ));
    }
    let mut doc = match store.load() {
        Ok(Some(doc)) => doc,
        Ok(None) => StateDoc::default(),
        Err(e @ StateError::Corrupt { .. }) => {
            eprintln!(
                "driftd: warning: {}; replacing it with a cleared state",
                escape(e.to_string().as_bytes())
            );
            StateDoc::default()
        }
        Err(e) => return Err(CliError(e.to_string())),
    };
    let Some(latch) = doc.declared.take() else {
        println!(
            "no drift verdict recorded in {}: nothing to clear",
            super::shown(&store.path())
        );
        return Ok(0);
    };
    let by = operator();
    doc.cleared = Some(Clearance {
        manifest_digest: latch.manifest_digest.clone(),
        first_detected_unix: latch.first_detected_unix,
        cleared_unix: now_unix(),
        by: by.clone(),
        reason: Some(reason.clone()),
    });
    store.save(&doc).map_err(|e| CliError(e.to_string()))?;
    tracing::warn!(
        by = %by,
        reason = %reason,
        first_detected = %rfc3339(latch.first_detected_unix),
        digest = %latch.manifest_digest,
        "drift verdict cleared"
    );
    println!(
        "cleared the drift verdict of {} (manifest {}, {} finding(s)) in {}.\n\
         A running agent applies it on reload: systemctl reload driftd (or send it SIGHUP).",
        rfc3339(latch.first_detected_unix),
        escape(latch.manifest_digest.as_bytes()),
        latch.findings_total,
        super::shown(&store.path())
    );
    Ok(0)
}
