//! What a signal backend is, and the one list of them.
//!
//! A backend lives in one file of its own (`webhook.rs`, `exec.rs`,
//! `aws.rs`, `kubernetes.rs`) that owns everything about it: a
//! [`BackendType`] (its `type` name and the parser of its keys), the parsed
//! config ([`BackendSpec`]: the checks of `driftd validate`, the move into
//! an image tree for `validate --image`, and the constructor) and the
//! [`Backend`] that sends. One line in [`BACKENDS`] registers it; the
//! config, `driftd validate` and `driftd run` know backends only through
//! these traits.
//!
//! This module also reads the `[[signal]]` tables: the keys every backend
//! shares (`type`, `name`, `dry_run`, `guard`, `timeout`) here, the rest by the
//! backend's own parser, every error of every table at once. It depends on
//! [`crate::spec`], never on `config` (which imports this module).

use super::{aws, exec, kubernetes, webhook, Signal};
use crate::spec::{self, Table};
use std::fmt::Debug;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

/// Every backend type, in the order `driftd` lists them: one line each.
#[rustfmt::skip]
pub const BACKENDS: &[&BackendType] = &[
    &webhook::TYPE,
    &exec::TYPE,
    &aws::TYPE,
    &kubernetes::TYPE,
];

/// A send in progress.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>>;

/// A control-plane adapter. `send` returns a short description of the
/// response (logged) or why it failed; every failure is retried.
pub trait Backend: Send + Sync {
    /// The configured name (a metric label).
    fn name(&self) -> &str;
    /// The backend type (`webhook`, `exec`, ...).
    fn kind(&self) -> &'static str;
    fn send<'a>(&'a self, signal: &'a Signal) -> SendFuture<'a>;
}

/// A configured backend, whether it only pretends, and whether the guard
/// (`[signals.guard]`) decides when it sends.
pub struct Configured {
    pub backend: Box<dyn Backend>,
    pub dry_run: bool,
    pub guard: bool,
}

impl Configured {
    /// Does the guard decide when this backend sends? Only with a guard
    /// configured, and never for a dry run (it sends nothing).
    pub fn guarded(&self, guard_configured: bool) -> bool {
        guard_configured && self.guard && !self.dry_run
    }
}

/// One backend type: what `type = "..."` in a `[[signal]]` table selects.
pub struct BackendType {
    /// The `type` value (also the default `name`).
    pub name: &'static str,
    /// The default `timeout` of one send; `None` when the backend has its
    /// own timeouts, and then a configured `timeout` is an error.
    pub timeout: Option<Duration>,
    /// The smallest valid table besides `type`, as TOML lines: a test
    /// parses it for every registered backend.
    pub example: &'static str,
    /// Read the backend's own keys from its table; `type`, `name`,
    /// `dry_run`, `guard` and `timeout` are already taken, and the leftovers are
    /// reported as unknown keys afterwards. `timeout` is the configured or
    /// default one (zero for a backend without `timeout`). Errors go into
    /// the table (`table.error(key, ...)`); `None` when there were any.
    pub parse: fn(table: &mut Table<'_>, timeout: Duration) -> Option<Box<dyn BackendSpec>>,
}

/// One backend's parsed settings.
pub trait BackendSpec: Debug + Send + Sync + CloneSpec {
    /// The backend type: its [`BackendType::name`].
    fn kind(&self) -> &'static str;
    /// Everything that can be judged before running (`driftd validate`):
    /// files readable and valid, command executable, the cargo feature
    /// compiled in. `Ok` is a few words on what was found (may be empty),
    /// `Err` why the backend cannot work.
    fn preflight(&self) -> Result<String, String>;
    /// Read the files it names inside the image tree `image_root` instead
    /// (`driftd validate --image`; see [`in_image`]).
    fn rebase(&mut self, image_root: &Path) {
        let _ = image_root;
    }
    /// The backend, named `name`. No network IO: an agent starts even when
    /// the control plane is briefly unreachable.
    fn build(&self, name: &str) -> Result<Box<dyn Backend>, String>;
}

/// Cloning a boxed [`BackendSpec`]: implemented for every `Clone` spec.
pub trait CloneSpec {
    fn clone_spec(&self) -> Box<dyn BackendSpec>;
}

impl<T: BackendSpec + Clone + 'static> CloneSpec for T {
    fn clone_spec(&self) -> Box<dyn BackendSpec> {
        Box::new(self.clone())
    }
}

impl Clone for Box<dyn BackendSpec> {
    fn clone(&self) -> Self {
        self.clone_spec()
    }
}

/// One `[[signal]]` backend.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// Unique, `[a-z0-9_-]`: the metric label and the outbox directory.
    pub name: String,
    /// Log and count what would be sent; send nothing.
    pub dry_run: bool,
    /// Whether `[signals.guard]` decides when it sends (default true;
    /// `guard = false` for a notify-only backend).
    pub guard: bool,
    pub spec: Box<dyn BackendSpec>,
}

/// Specs are plain data: the same type and the same settings (their
/// `Debug` text) are the same spec.
impl PartialEq for BackendConfig {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.dry_run == other.dry_run
            && self.guard == other.guard
            && self.spec.kind() == other.spec.kind()
            && format!("{:?}", self.spec) == format!("{:?}", other.spec)
    }
}

impl Eq for BackendConfig {}

/// `path` as seen inside the image tree `image_root`.
pub fn in_image(image_root: &Path, path: &Path) -> PathBuf {
    image_root.join(path.strip_prefix("/").unwrap_or(path))
}

/// Why a backend whose client was left out of this build cannot run.
pub fn without_feature(feature: &str) -> String {
    format!("this driftd was built without the `{feature}` feature")
}

/// Parse the `[[signal]]` array (the value of the top-level key `signal`)
/// with the registered backends.
pub fn parse(value: Option<toml::Value>, errors: &mut Vec<String>) -> Vec<BackendConfig> {
    parse_with(BACKENDS, value, errors)
}

/// Parse the `[[signal]]` array with the backend types of `registry`.
pub fn parse_with(
    registry: &[&BackendType],
    value: Option<toml::Value>,
    errors: &mut Vec<String>,
) -> Vec<BackendConfig> {
    let types = || {
        registry
            .iter()
            .map(|t| t.name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for (key, item) in spec::array_of_tables("signal", value, errors) {
        let mut t = Table::new(&key, Some(item), errors);
        let type_name: Option<String> = t.take("type");
        let name: Option<String> = t.take("name");
        let dry_run = t.take("dry_run").unwrap_or(false);
        let guard = t.take("guard").unwrap_or(true);
        let timeout = t.duration("timeout");
        let spec = match type_name.as_deref() {
            None => {
                t.error("type", format_args!("required ({})", types()));
                None
            }
            Some(wanted) => match registry.iter().find(|ty| ty.name == wanted) {
                // Its other keys cannot be judged: they are not reported.
                None => {
                    t.error(
                        "type",
                        format_args!("unknown backend `{wanted}` ({})", types()),
                    );
                    None
                }
                Some(ty) => {
                    let timeout = match ty.timeout {
                        Some(default) => timeout.unwrap_or(default),
                        None => {
                            if timeout.is_some() {
                                t.error(
                                    "timeout",
                                    "not used by this backend (it has its own timeouts)",
                                );
                            }
                            Duration::ZERO
                        }
                    };
                    let spec = (ty.parse)(&mut t, timeout);
                    t.finish();
                    spec
                }
            },
        };
        let name = name.unwrap_or_else(|| type_name.clone().unwrap_or_default());
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            errors.push(format!("{key}.name: `{name}` must be non-empty [a-z0-9_-]"));
        } else if seen.contains(&name) {
            errors.push(format!(
                "{key}.name: `{name}` is used twice; give each backend its own name"
            ));
        } else {
            // Every valid name, also of backends with other errors, so one
            // run reports a clash with them too.
            seen.push(name.clone());
        }
        if let Some(spec) = spec {
            out.push(BackendConfig {
                name,
                dry_run,
                guard,
                spec,
            });
        }
    }
    out
}

/// Build every configured backend; errors name the backend.
pub fn build(configs: &[BackendConfig]) -> Result<Vec<Configured>, String> {
    configs
        .iter()
        .map(|c| {
            let backend = c
                .spec
                .build(&c.name)
                .map_err(|e| format!("signal `{}`: {e}", c.name))?;
            Ok(Configured {
                backend,
                dry_run: c.dry_run,
                guard: c.guard,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
