//! `driftd validate`: check a config and its manifest without running.
//!
//! Everything `driftd run` needs before it can start is judged here, the
//! same way the agent judges it (the same loaders), and every problem is
//! reported, not just the first. The unit runs it as `ExecStartPre`, and
//! image pipelines run it with `--image` after baking.

use super::run::{listen_addr, AgentArgs};
use super::{CliError, Format, Status};
use crate::config::{self, BackendConfig, Config};
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Debug, Args)]
#[command(after_help = "\
Checks, in order: the config file (every error at once), the listen \
address, the root, the state directory, the manifest (readable, intact, \
signed by a trusted key, its embedded policy compiles), every [[signal]] \
backend (secret files readable by driftd and safe from others, TLS roots \
valid, commands executable, built with the feature it needs) and the guard \
([signals.guard]: its settings, CA and secret files, this host's id). With \
--online, the guard also asks its Prometheus the query a held signal would \
ask, and shows the answer and what it would decide for a drift signal now.

Exit status: 0 valid, 2 invalid (each problem is listed).

Examples:
  driftd validate --config /etc/driftd/driftd.toml
  driftd validate --config /etc/driftd/driftd.toml --online   # ask the guard's Prometheus
  driftd validate --image /mnt/image      # an image tree, after baking")]
pub struct ValidateArgs {
    #[command(flatten)]
    pub agent: AgentArgs,
    /// Validate an image tree instead of this host: the config (default
    /// DIR/etc/driftd/driftd.toml), the manifest, the trusted keys, the
    /// state directory and the signals' files are read inside DIR, and DIR
    /// is the root.
    #[arg(long, value_name = "DIR", conflicts_with = "root")]
    pub image: Option<PathBuf>,
    /// Also run the guard's query against its Prometheus ([signals.guard])
    /// and report the answer.
    #[arg(long)]
    pub online: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// One thing that was checked.
#[derive(Debug, Serialize)]
struct Item {
    check: &'static str,
    ok: bool,
    message: String,
}

#[derive(Default)]
struct Items(Vec<Item>);

impl Items {
    fn ok(&mut self, check: &'static str, message: impl Into<String>) {
        self.0.push(Item {
            check,
            ok: true,
            message: message.into(),
        });
    }
    fn fail(&mut self, check: &'static str, message: impl Into<String>) {
        self.0.push(Item {
            check,
            ok: false,
            message: message.into(),
        });
    }
    fn valid(&self) -> bool {
        self.0.iter().all(|i| i.ok)
    }
}

pub fn run(a: ValidateArgs) -> Result<Status, CliError> {
    let mut items = Items::default();
    let config_path = match (&a.agent.config, &a.image) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(img)) => Some(img.join("etc/driftd/driftd.toml")),
        (None, None) => None,
    };
    let mut cfg = match &config_path {
        None => {
            items.ok("config", "no --config: the built-in defaults");
            Config::default()
        }
        Some(p) => match config::load(p) {
            Ok(c) => {
                items.ok("config", super::shown(p));
                c
            }
            Err(e) => {
                // Nothing else can be judged without the config. With
                // --image it is the image's, and its errors quote it:
                // escaped line by line (the codec), the layout kept.
                let text = e.to_string();
                let lines: Vec<String> = text
                    .split('\n')
                    .map(|l| crate::manifest::escape::escape(l.as_bytes()))
                    .collect();
                items.fail("config", lines.join("\n"));
                return Ok(finish(&items, a.format));
            }
        },
    };
    a.agent.apply(&mut cfg);
    if let Some(img) = &a.image {
        let ag = &mut cfg.agent;
        ag.root = img.clone();
        let inside = crate::signal::backend::in_image;
        ag.manifest = inside(img, &ag.manifest);
        ag.state_dir = inside(img, &ag.state_dir);
        ag.trusted_keys = ag.trusted_keys.iter().map(|k| inside(img, k)).collect();
        ag.web_config_file = ag.web_config_file.as_ref().map(|w| inside(img, w));
        for s in &mut cfg.signal {
            s.spec.rebase(img);
        }
        if let Some(g) = &mut cfg.signals.guard {
            crate::signal::guard::rebase(g, img);
        }
    }
    let ag = &cfg.agent;

    match listen_addr(&ag.listen) {
        Ok(addr) => items.ok("listen", addr.to_string()),
        Err(e) => items.fail("listen", e.to_string()),
    }
    match std::fs::metadata(&ag.root) {
        Ok(m) if m.is_dir() => items.ok("root", super::shown(&ag.root)),
        Ok(_) => items.fail(
            "root",
            format!("{}: not a directory", super::shown(&ag.root)),
        ),
        Err(e) => items.fail("root", format!("{}: {e}", super::shown(&ag.root))),
    }
    // The agent creates the state directory (systemd does under the unit);
    // in an image it need not exist yet.
    match std::fs::metadata(&ag.state_dir) {
        Ok(m) if m.is_dir() => items.ok("state_dir", super::shown(&ag.state_dir)),
        Ok(_) => items.fail(
            "state_dir",
            format!("{}: not a directory", super::shown(&ag.state_dir)),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => items.ok(
            "state_dir",
            format!(
                "{} (created when the agent starts)",
                super::shown(&ag.state_dir)
            ),
        ),
        Err(e) => items.fail("state_dir", format!("{}: {e}", super::shown(&ag.state_dir))),
    }
    let rule = crate::trust::Rule::Enforce {
        keys: &ag.trusted_keys,
        allow_unsigned: ag.allow_unsigned,
    };
    let mut digest = None;
    // Every block read and checked, as the agent does when it loads it.
    match crate::trust::load(&ag.manifest, rule).and_then(|mut l| l.collect_dirs().map(|()| l)) {
        Ok(l) => {
            let m = &l.manifest;
            digest = Some(m.digest_string());
            let trust = match l.trust.key_id() {
                Some(k) => format!("signed by trusted key {k}"),
                None => "unsigned, NOT verified (allow_unsigned)".to_string(),
            };
            items.ok(
                "manifest",
                format!(
                    "{}: image {}, {} entries, {trust}",
                    super::shown(&ag.manifest),
                    if m.header.image_id.is_empty() {
                        "(none)".to_string()
                    } else {
                        crate::manifest::escape::escape(m.header.image_id.as_bytes())
                    },
                    m.len()
                ),
            );
        }
        Err(e) => items.fail("manifest", e.message),
    }
    match &ag.web_config_file {
        None => items.ok(
            "web",
            format!(
                "no web config: plain HTTP, no auth; /status for {}",
                if ag.status_public {
                    "anyone (status_public)"
                } else {
                    "loopback clients only"
                }
            ),
        ),
        Some(p) => match crate::telemetry::webconfig::load(p) {
            Ok(w) => items.ok("web", format!("{}: {}", super::shown(p), w.describe())),
            Err(e) => items.fail("web", e.to_string()),
        },
    }
    for s in &cfg.signal {
        check_signal(s, &mut items);
    }
    let host = crate::signal::Host::local(cfg.signals.host_id.as_deref());
    match &cfg.signals.guard {
        None if a.online => items.fail("guard", "--online: no [signals.guard] to ask"),
        None => {}
        Some(g) => match crate::signal::guard::preflight(g, &host.id) {
            Err(e) => items.fail("guard", e),
            Ok(found) => {
                items.ok("guard", found);
                if a.online {
                    online(g, &host.id, digest.as_deref(), &mut items);
                }
            }
        },
    }
    Ok(finish(&items, a.format))
}

/// `--online`: the query a drift signal of this host would send now, and
/// what the guard would decide.
fn online(g: &config::GuardConfig, host_id: &str, digest: Option<&str>, items: &mut Items) {
    use crate::signal::guard::machine::{judge, Outcome};
    use crate::signal::guard::query::LookRequest;
    use crate::signal::guard::{FleetQuery, GuardSettings, PromClient};
    use crate::verdict::SignalEvent;
    let req = LookRequest {
        event: SignalEvent::DriftDetected,
        digest: digest.unwrap_or("none").to_string(),
        host_id: host_id.to_string(),
    };
    let client = match PromClient::new(g) {
        Ok(c) => c,
        Err(e) => return items.fail("guard", e),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return items.fail("guard", format!("start the async runtime: {e}")),
    };
    let started = std::time::Instant::now();
    let answer = rt.block_on(client.look(&req));
    let ms = started.elapsed().as_millis();
    let a = match answer {
        Ok(a) => a,
        Err(e) => return items.fail("guard", format!("--online: {e}")),
    };
    let settings = GuardSettings::from(g);
    let decision = match judge(&settings, req.event, &Ok(a)) {
        Outcome::Within {
            hosts,
            drifted,
            limit,
        } => format!(
            "a drift signal now: {drifted} of {hosts} drifted with this host, limit {limit}: sent"
        ),
        Outcome::Over {
            hosts,
            drifted,
            limit,
        } => format!(
            "a drift signal now: {drifted} of {hosts} drifted with this host, limit {limit}: HELD"
        ),
        Outcome::Failed(e) => e,
    };
    items.ok(
        "guard",
        format!(
            "--online: Prometheus answered in {ms} ms for {} and host {host_id}: {} hosts, {} other drifted, {} other unknown; {decision}",
            req.digest, a.hosts, a.drifted, a.unknown
        ),
    );
}

/// `` `name`: kind (dry run): what preflight found `` or why it failed.
fn check_signal(s: &BackendConfig, items: &mut Items) {
    let label = format!("`{}`", s.name);
    match s.spec.preflight() {
        Ok(found) => {
            let dry = if s.dry_run { " (dry run)" } else { "" };
            let found = if found.is_empty() {
                found
            } else {
                format!(": {found}")
            };
            items.ok("signal", format!("{label}: {}{dry}{found}", s.spec.kind()));
        }
        Err(e) => items.fail("signal", format!("{label}: {e}")),
    }
}

fn finish(items: &Items, format: Format) -> Status {
    let valid = items.valid();
    match format {
        Format::Json => {
            #[derive(Serialize)]
            struct Out<'a> {
                valid: bool,
                checks: &'a [Item],
            }
            let out = Out {
                valid,
                checks: &items.0,
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&out).expect("serialising plain data")
            );
        }
        Format::Text => {
            for i in &items.0 {
                let tag = if i.ok { "ok   " } else { "ERROR" };
                println!("{tag} {:<9} {}", i.check, i.message);
            }
            println!("{}", if valid { "valid" } else { "INVALID" });
        }
    }
    if valid {
        0
    } else {
        2
    }
}
