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
//! shares (`type`, `name`, `dry_run`, `timeout`) here, the rest by the
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

/// A configured backend and whether it only pretends.
pub struct Configured {
    pub backend: Box<dyn Backend>,
    pub dry_run: bool,
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
    /// `dry_run` and `timeout` are already taken, and the leftovers are
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
    pub spec: Box<dyn BackendSpec>,
}

/// Specs are plain data: the same type and the same settings (their
/// `Debug` text) are the same spec.
impl PartialEq for BackendConfig {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.dry_run == other.dry_run
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
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[[signal]]` tables through `registry`: the configs and the errors.
    fn parse_in(registry: &[&BackendType], text: &str) -> (Vec<BackendConfig>, Vec<String>) {
        let mut doc: toml::Table = text.parse().unwrap_or_else(|e| panic!("{e}\n{text}"));
        let mut errors = Vec::new();
        let configs = parse_with(registry, doc.remove("signal"), &mut errors);
        (configs, errors)
    }

    fn signal(type_name: &str, body: &str) -> String {
        format!("[[signal]]\ntype = \"{type_name}\"\n{body}\n")
    }

    // A backend defined in this test alone: its type, its spec, its
    // `Backend`, and a registry holding it. Nothing else knows about it.

    static PIGEON: BackendType = BackendType {
        name: "carrier-pigeon",
        timeout: Some(Duration::from_secs(3600)),
        example: "loft = \"/var/lib/pigeons\"",
        parse: parse_pigeon,
    };

    #[derive(Debug, Clone)]
    struct PigeonSpec {
        loft: PathBuf,
        timeout: Duration,
    }

    fn parse_pigeon(t: &mut Table<'_>, timeout: Duration) -> Option<Box<dyn BackendSpec>> {
        let Some(loft) = t.take("loft") else {
            t.error("loft", "required");
            return None;
        };
        Some(Box::new(PigeonSpec { loft, timeout }))
    }

    impl BackendSpec for PigeonSpec {
        fn kind(&self) -> &'static str {
            PIGEON.name
        }
        fn preflight(&self) -> Result<String, String> {
            Ok(format!(
                "loft {} within {:?}",
                self.loft.display(),
                self.timeout
            ))
        }
        fn rebase(&mut self, image_root: &Path) {
            self.loft = in_image(image_root, &self.loft);
        }
        fn build(&self, name: &str) -> Result<Box<dyn Backend>, String> {
            Ok(Box::new(Pigeon(name.to_string())))
        }
    }

    struct Pigeon(String);

    impl Backend for Pigeon {
        fn name(&self) -> &str {
            &self.0
        }
        fn kind(&self) -> &'static str {
            PIGEON.name
        }
        fn send<'a>(&'a self, _signal: &'a Signal) -> SendFuture<'a> {
            Box::pin(async { Ok("released".to_string()) })
        }
    }

    #[test]
    fn a_backend_is_its_own_file_and_one_registry_line() {
        let registry: &[&BackendType] = &[&PIGEON, &exec::TYPE];
        let (configs, errors) = parse_in(
            registry,
            &signal(
                "carrier-pigeon",
                "name = \"coo\"\nloft = \"/srv/loft\"\ntimeout = \"2h\"",
            ),
        );
        assert_eq!(errors, Vec::<String>::new());
        let c = &configs[0];
        assert_eq!((c.name.as_str(), c.spec.kind()), ("coo", "carrier-pigeon"));
        assert_eq!(c.spec.preflight().unwrap(), "loft /srv/loft within 7200s");
        let built = build(&configs).unwrap();
        assert_eq!(built[0].backend.name(), "coo");
        assert_eq!(built[0].backend.kind(), "carrier-pigeon");
        let mut moved = c.clone();
        moved.spec.rebase(Path::new("/mnt/image"));
        assert_eq!(
            moved.spec.preflight().unwrap(),
            "loft /mnt/image/srv/loft within 7200s"
        );
        assert_ne!(&moved, c);
        assert_eq!(&c.clone(), c);

        // Its keys and its default timeout come from its type alone.
        let (configs, errors) = parse_in(registry, &signal("carrier-pigeon", "lof = \"/x\""));
        assert!(configs.is_empty());
        assert_eq!(
            errors,
            [
                "signal[0].loft: required",
                "signal[0].lof: unknown key (known keys here: type, name, dry_run, timeout, loft)",
            ]
        );
        let (configs, _) = parse_in(registry, &signal("carrier-pigeon", PIGEON.example));
        assert!(configs[0]
            .spec
            .preflight()
            .unwrap()
            .ends_with("within 3600s"));

        // Types are those of the registry, listed from it.
        let (_, errors) = parse_in(registry, &signal("webhook", ""));
        assert_eq!(
            errors,
            ["signal[0].type: unknown backend `webhook` (carrier-pigeon, exec)"]
        );
    }

    #[test]
    fn every_registered_backend_parses_its_example_and_reports_its_kind() {
        for ty in BACKENDS {
            let (configs, errors) = parse_in(BACKENDS, &signal(ty.name, ty.example));
            assert_eq!(errors, Vec::<String>::new(), "{}", ty.name);
            let c = &configs[0];
            assert_eq!(c.spec.kind(), ty.name);
            assert_eq!(c.name, ty.name, "the name defaults to the type");
            assert!(!c.dry_run);
            assert_eq!(&c.clone(), c);
            // A key no backend has is reported with the backend's own keys.
            let (_, errors) = parse_in(
                BACKENDS,
                &signal(ty.name, &format!("{}\nzzz = 1", ty.example)),
            );
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(
                errors[0].starts_with(
                    "signal[0].zzz: unknown key (known keys here: type, name, dry_run, timeout"
                ),
                "{errors:?}"
            );
        }
        let mut names: Vec<&str> = BACKENDS.iter().map(|t| t.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), BACKENDS.len(), "two backends of one type");
    }

    #[test]
    fn unknown_or_missing_type_lists_every_registered_backend() {
        let all = BACKENDS
            .iter()
            .map(|t| t.name)
            .collect::<Vec<_>>()
            .join(", ");
        let (configs, errors) = parse_in(
            BACKENDS,
            "[[signal]]\ntype = \"carrier-pigeon\"\nname = \"d\"\n[[signal]]\nname = \"e\"\n",
        );
        assert!(configs.is_empty());
        assert_eq!(
            errors,
            [
                format!("signal[0].type: unknown backend `carrier-pigeon` ({all})"),
                format!("signal[1].type: required ({all})"),
            ]
        );
    }

    #[test]
    fn timeouts_default_per_type_and_are_refused_where_unused() {
        for ty in BACKENDS {
            let (_, errors) = parse_in(
                BACKENDS,
                &signal(ty.name, &format!("{}\ntimeout = \"5s\"", ty.example)),
            );
            match ty.timeout {
                Some(_) => assert_eq!(errors, Vec::<String>::new(), "{}", ty.name),
                None => assert_eq!(
                    errors,
                    ["signal[0].timeout: not used by this backend (it has its own timeouts)"],
                    "{}",
                    ty.name
                ),
            }
        }
        let (_, errors) = parse_in(
            BACKENDS,
            &signal("exec", "command = [\"true\"]\ntimeout = \"soon\""),
        );
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("signal[0].timeout: `soon` is not a duration"));
    }

    #[test]
    fn names_are_checked_and_unique_also_across_broken_backends() {
        let (configs, errors) = parse_in(
            BACKENDS,
            r#"
            [[signal]]
            type = "webhook"
            name = "a"
            url = "http://127.0.0.1:9/hook"
            [[signal]]
            type = "exec"
            name = "a"
            command = ["/bin/true"]
            [[signal]]
            type = "exec"
            name = "Not OK"
            command = ["/bin/true"]
            [[signal]]
            type = "exec"
            command = ["/bin/true"]
            dry_run = true
            "#,
        );
        assert_eq!(
            errors,
            [
                "signal[0].secret_file: required for a webhook (the secret is read from a file, never written inline)",
                "signal[1].name: `a` is used twice; give each backend its own name",
                "signal[2].name: `Not OK` must be non-empty [a-z0-9_-]",
            ]
        );
        let names: Vec<(&str, bool)> = configs
            .iter()
            .map(|c| (c.name.as_str(), c.dry_run))
            .collect();
        assert_eq!(names, [("a", false), ("Not OK", false), ("exec", true)]);
    }

    #[test]
    fn signal_must_be_an_array_of_tables() {
        let (_, errors) = parse_in(BACKENDS, "signal = \"webhook\"\n");
        assert_eq!(
            errors,
            ["signal: expected an array of tables ([[signal]]), found string"]
        );
        let (_, errors) = parse_in(BACKENDS, "signal = [3]\n");
        assert_eq!(errors[0], "signal[0]: expected a table, found integer");
    }

    #[test]
    fn in_image_keeps_paths_inside_the_tree() {
        let img = Path::new("/mnt/image");
        assert_eq!(
            in_image(img, Path::new("/etc/a")),
            Path::new("/mnt/image/etc/a")
        );
        assert_eq!(
            in_image(img, Path::new("etc/a")),
            Path::new("/mnt/image/etc/a")
        );
    }
}
