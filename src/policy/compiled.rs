//! The policy compiled into glob matchers, and the errors compiling it
//! reports (every one at once, each naming its config key).

use super::{AttrSet, Policy, CONTENT_ATTRS};
use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use std::fmt;

/// A problem in a policy, naming where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// Dotted key, e.g. `policy.rules[2].paths[0]`.
    pub key: String,
    pub reason: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

fn glob(pattern: &str) -> Result<Glob, String> {
    if !pattern.starts_with('/') && !pattern.starts_with("**") {
        return Err(format!(
            "pattern `{pattern}` must be an absolute path inside the root (start with `/`) or start with `**`"
        ));
    }
    let trimmed = if pattern.len() > 1 {
        pattern.trim_end_matches('/')
    } else {
        pattern
    };
    GlobBuilder::new(trimmed)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| format!("invalid glob `{pattern}`: {}", e.kind()))
}

fn build_set(patterns: &[String], key: &str, errors: &mut Vec<PolicyError>) -> Option<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for (i, p) in patterns.iter().enumerate() {
        match glob(p) {
            Ok(g) => {
                b.add(g);
            }
            Err(reason) => errors.push(PolicyError {
                key: format!("{key}[{i}]"),
                reason,
            }),
        }
    }
    b.build().ok()
}

/// A policy ready to answer questions about paths.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    policy: Policy,
    exclude: GlobSet,
    rule_sets: Vec<(GlobSet, AttrSet)>,
    content_may_differ: GlobSet,
    may_appear: GlobSet,
    mounts: GlobSet,
}

impl CompiledPolicy {
    /// Compile, reporting every problem at once (with its key under
    /// `key_prefix`, e.g. `policy`).
    pub fn new(policy: Policy, key_prefix: &str) -> Result<CompiledPolicy, Vec<PolicyError>> {
        let mut errors = Vec::new();
        let exclude = build_set(
            &policy.exclude,
            &format!("{key_prefix}.exclude"),
            &mut errors,
        );
        let mut rule_sets = Vec::new();
        for (i, rule) in policy.rules.iter().enumerate() {
            let key = format!("{key_prefix}.rules[{i}]");
            if rule.paths.is_empty() {
                errors.push(PolicyError {
                    key: format!("{key}.paths"),
                    reason: "a rule needs at least one pattern".into(),
                });
            }
            let set = build_set(&rule.paths, &format!("{key}.paths"), &mut errors);
            let attrs = match AttrSet::parse_names(&rule.attributes) {
                Ok(a) => a,
                Err(reason) => {
                    errors.push(PolicyError {
                        key: format!("{key}.attributes"),
                        reason,
                    });
                    AttrSet::EMPTY
                }
            };
            if let Some(set) = set {
                rule_sets.push((set, attrs));
            }
        }
        let cmd = build_set(
            &policy.allow.content_may_differ,
            &format!("{key_prefix}.allow.content_may_differ"),
            &mut errors,
        );
        let appear = build_set(
            &policy.allow.may_appear,
            &format!("{key_prefix}.allow.may_appear"),
            &mut errors,
        );
        let mounts = build_set(&policy.mounts, &format!("{key_prefix}.mounts"), &mut errors);
        match (exclude, cmd, appear, mounts) {
            (Some(exclude), Some(content_may_differ), Some(may_appear), Some(mounts))
                if errors.is_empty() =>
            {
                Ok(CompiledPolicy {
                    policy,
                    exclude,
                    rule_sets,
                    content_may_differ,
                    may_appear,
                    mounts,
                })
            }
            _ => {
                if errors.is_empty() {
                    errors.push(PolicyError {
                        key: key_prefix.into(),
                        reason: "could not compile the glob patterns".into(),
                    });
                }
                Err(errors)
            }
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn one_file_system(&self) -> bool {
        self.policy.one_file_system
    }

    /// Is this path (and so its subtree) excluded? The walker asks this for
    /// every path top-down, so an excluded directory is never entered and
    /// ancestors need not be tested here.
    pub fn is_excluded(&self, path: &[u8]) -> bool {
        self.exclude.is_match(bytes_path(path))
    }

    /// Which attributes are checked for `path`.
    pub fn attrs_for(&self, path: &[u8]) -> AttrSet {
        let p = bytes_path(path);
        let mut attrs = self
            .rule_sets
            .iter()
            .find(|(set, _)| set.is_match(p))
            .map(|(_, a)| *a)
            .unwrap_or_else(AttrSet::default_set);
        if self.content_may_differ.is_match(p) {
            for a in CONTENT_ATTRS {
                attrs = attrs.without(a);
            }
        }
        attrs
    }

    /// Is a mount expected at exactly this path (`mounts`)?
    pub fn mount_expected(&self, path: &[u8]) -> bool {
        self.mounts.is_match(bytes_path(path))
    }

    /// May `path` exist on the host although the manifest lacks it? True
    /// when it or one of its ancestors matches `allow.may_appear`.
    pub fn may_appear(&self, path: &[u8]) -> bool {
        if self.may_appear.is_empty() {
            return false;
        }
        let mut p = path;
        loop {
            if self.may_appear.is_match(bytes_path(p)) {
                return true;
            }
            match p.iter().rposition(|&b| b == b'/') {
                Some(0) | None => return false,
                Some(i) => p = &p[..i],
            }
        }
    }
}

#[cfg(unix)]
fn bytes_path(b: &[u8]) -> &std::path::Path {
    use std::os::unix::ffi::OsStrExt;
    std::path::Path::new(std::ffi::OsStr::from_bytes(b))
}
