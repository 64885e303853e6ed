//! Configuration: TOML text -> raw tables -> validated [`Config`].
//!
//! Every problem is collected and reported at once, each with its dotted
//! key and the reason: a misspelt key is an error (never silently
//! ignored), and so is a value of the wrong type or a bad glob. Absent keys
//! take their documented defaults (`config/driftd.toml` documents each one
//! and a test checks that the file's values are the built-in defaults).

use crate::policy::{Allow, CompiledPolicy, Policy, Rule};
use serde::de::DeserializeOwned;
use std::fmt;
use std::path::{Path, PathBuf};

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub scan: ScanConfig,
    pub policy: Policy,
}

/// `[scan]`: how scans run on this machine (not part of the policy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanConfig {
    /// Hashing threads; 0 = one per CPU.
    pub threads: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            scan: ScanConfig { threads: 0 },
            policy: Policy::default(),
        }
    }
}

/// Everything wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: PathBuf,
    pub errors: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid config {} ({} error{}):",
            self.path.display(),
            self.errors.len(),
            if self.errors.len() == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            write!(f, "\n  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Takes typed values out of one TOML table, recording errors with keys.
struct Table<'e> {
    key: String,
    table: toml::Table,
    errors: &'e mut Vec<String>,
}

impl<'e> Table<'e> {
    fn new(key: &str, value: Option<toml::Value>, errors: &'e mut Vec<String>) -> Table<'e> {
        let table = match value {
            None => toml::Table::new(),
            Some(toml::Value::Table(t)) => t,
            Some(other) => {
                errors.push(format!(
                    "{key}: expected a table, found {}",
                    other.type_str()
                ));
                toml::Table::new()
            }
        };
        Table {
            key: key.into(),
            table,
            errors,
        }
    }

    fn path(&self, name: &str) -> String {
        if self.key.is_empty() {
            name.into()
        } else {
            format!("{}.{name}", self.key)
        }
    }

    fn take<T: DeserializeOwned>(&mut self, name: &str) -> Option<T> {
        let v = self.table.remove(name)?;
        match v.try_into::<T>() {
            Ok(t) => Some(t),
            Err(e) => {
                let key = self.path(name);
                self.errors.push(format!("{key}: {}", e.message().trim()));
                None
            }
        }
    }

    fn raw(&mut self, name: &str) -> Option<toml::Value> {
        self.table.remove(name)
    }

    /// Report whatever is left: unknown keys.
    fn finish(self, known: &[&str]) {
        for k in self.table.keys() {
            let key = if self.key.is_empty() {
                k.clone()
            } else {
                format!("{}.{k}", self.key)
            };
            self.errors.push(format!(
                "{key}: unknown key (known keys here: {})",
                known.join(", ")
            ));
        }
    }
}

/// Parse config text; `origin` names the file in errors.
pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
    let fail = |errors| ConfigError {
        path: origin.to_path_buf(),
        errors,
    };
    let doc: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| fail(vec![e.to_string().trim().replace('\n', "\n    ")]))?;
    let mut errors = Vec::new();
    let defaults = Config::default();
    let mut top = Table::new("", Some(toml::Value::Table(doc)), &mut errors);
    let scan_v = top.raw("scan");
    let policy_v = top.raw("policy");
    top.finish(&["scan", "policy"]);

    let mut scan = Table::new("scan", scan_v, &mut errors);
    let threads = scan
        .take::<usize>("threads")
        .unwrap_or(defaults.scan.threads);
    scan.finish(&["threads"]);

    let mut pol = Table::new("policy", policy_v, &mut errors);
    let d = &defaults.policy;
    let exclude = pol.take("exclude").unwrap_or_else(|| d.exclude.clone());
    let one_file_system = pol.take("one_file_system").unwrap_or(d.one_file_system);
    let rules_v = pol.raw("rules");
    let allow_v = pol.raw("allow");
    pol.finish(&["exclude", "one_file_system", "rules", "allow"]);

    let mut rules = Vec::new();
    match rules_v {
        None => {}
        Some(toml::Value::Array(items)) => {
            for (i, item) in items.into_iter().enumerate() {
                let key = format!("policy.rules[{i}]");
                let mut t = Table::new(&key, Some(item), &mut errors);
                let paths = t.take::<Vec<String>>("paths");
                let attributes = t.take::<Vec<String>>("attributes");
                let missing: Vec<&str> = [
                    ("paths", paths.is_none()),
                    ("attributes", attributes.is_none()),
                ]
                .iter()
                .filter(|(_, m)| *m)
                .map(|(n, _)| *n)
                .collect();
                t.finish(&["paths", "attributes"]);
                for m in missing {
                    errors.push(format!("{key}.{m}: required"));
                }
                if let (Some(paths), Some(attributes)) = (paths, attributes) {
                    rules.push(Rule { paths, attributes });
                }
            }
        }
        Some(other) => errors.push(format!(
            "policy.rules: expected an array of tables ([[policy.rules]]), found {}",
            other.type_str()
        )),
    }

    let mut allow = Table::new("policy.allow", allow_v, &mut errors);
    let content_may_differ = allow
        .take("content_may_differ")
        .unwrap_or_else(|| d.allow.content_may_differ.clone());
    let may_appear = allow
        .take("may_appear")
        .unwrap_or_else(|| d.allow.may_appear.clone());
    allow.finish(&["content_may_differ", "may_appear"]);

    let policy = Policy {
        exclude,
        one_file_system,
        rules,
        allow: Allow {
            content_may_differ,
            may_appear,
        },
    };
    // Semantic checks (globs, attribute names) even when other keys failed,
    // so one run shows every problem.
    if let Err(errs) = CompiledPolicy::new(policy.clone(), "policy") {
        errors.extend(errs.iter().map(|e| e.to_string()));
    }
    if errors.is_empty() {
        Ok(Config {
            scan: ScanConfig { threads },
            policy,
        })
    } else {
        Err(fail(errors))
    }
}

/// Read and parse a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        path: path.to_path_buf(),
        errors: vec![format!("cannot read config file: {e}")],
    })?;
    parse(&text, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Config, ConfigError> {
        parse(text, Path::new("test.toml"))
    }

    #[test]
    fn empty_config_is_the_default() {
        assert_eq!(p("").unwrap(), Config::default());
    }

    #[test]
    fn shipped_config_parses_and_matches_the_built_in_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/driftd.toml");
        let cfg = load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            cfg,
            Config::default(),
            "config/driftd.toml drifted from the code's defaults"
        );
    }

    #[test]
    fn every_error_at_once_with_keys() {
        let err = p(r#"
            [scan]
            threads = "many"
            thread = 2
            [policy]
            exlude = ["/x"]
            exclude = ["relative/path"]
            [[policy.rules]]
            paths = ["/etc/**"]
            attributes = ["mode", "colour"]
            [[policy.rules]]
            attributes = ["mode"]
            [policy.allow]
            may_apear = []
        "#)
        .unwrap_err();
        let all = err.to_string();
        for needle in [
            "scan.threads:",
            "scan.thread: unknown key",
            "policy.exlude: unknown key",
            "policy.exclude[0]: pattern `relative/path` must be an absolute path",
            "policy.rules[0].attributes: unknown attribute `colour`",
            "policy.rules[1].paths: required",
            "policy.allow.may_apear: unknown key",
        ] {
            assert!(all.contains(needle), "missing `{needle}` in:\n{all}");
        }
        assert_eq!(err.errors.len(), 7, "{all}");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = p("[policy\nexclude = 1").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn wrong_shapes() {
        let err = p("policy = 3\n").unwrap_err();
        assert!(err.errors[0].contains("policy: expected a table"), "{err}");
        let err = p("[policy]\nrules = 3\n").unwrap_err();
        assert!(
            err.errors[0].contains("policy.rules: expected an array"),
            "{err}"
        );
    }
}
