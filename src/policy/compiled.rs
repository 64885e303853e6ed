//! The policy compiled into glob matchers, and the errors compiling it
//! reports (every one at once, each naming its config key).

use super::allowance::{self, Admission, Compiled, IdNames, Ids, Seen};
use super::{AttrSet, Id, Policy, CONTENT_ATTRS};
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
    may_appear: Vec<Compiled>,
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
        let appear = compile_allowances(&policy, key_prefix, &mut errors);
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

    /// May `path`, which the manifest lacks, exist on the host as `seen`?
    /// Each allowance that names the path (its patterns match it) judges
    /// the type, mode, owner and group; one that names an ancestor admits
    /// it only with `below = true`. The first allowance that admits wins;
    /// if none does, the first refusal is the answer. With `seen` absent
    /// (the path could not be read) only where it lies is judged, and an
    /// allowance naming it answers [`Admission::Unverified`]. `ids` holds
    /// the names of [`CompiledPolicy::id_names`] resolved in the image.
    pub fn admits(&self, path: &[u8], seen: Option<&Seen<'_>>, ids: &Ids) -> Admission {
        let mut refused = None;
        let mut unverified = false;
        for a in &self.may_appear {
            if a.set.is_match(bytes_path(path)) {
                let Some(seen) = seen else {
                    unverified = true;
                    continue;
                };
                let v = a.violations(seen, ids);
                if v.is_empty() {
                    return Admission::Admitted;
                }
                refused.get_or_insert(v);
            } else if let Some(pattern) = a.ancestor_match(path) {
                if a.below {
                    return Admission::Admitted;
                }
                refused.get_or_insert_with(|| vec![below(pattern, seen)]);
            }
        }
        match refused {
            _ if unverified => Admission::Unverified,
            Some(v) => Admission::Refused(v),
            None => Admission::NotAllowed,
        }
    }

    /// The user and group names (other than `root`, always 0) that the
    /// allowances name: what [`CompiledPolicy::admits`] needs resolved.
    pub fn id_names(&self) -> IdNames {
        let mut names = IdNames::default();
        for a in &self.may_appear {
            for (ids, set) in [(&a.owner, &mut names.users), (&a.group, &mut names.groups)] {
                for id in ids {
                    match id {
                        Id::Name(n) if n != "root" => {
                            set.insert(n.clone());
                        }
                        _ => {}
                    }
                }
            }
        }
        names
    }
}

/// The refusal of a path below one an allowance names without `below`.
fn below(pattern: &str, seen: Option<&Seen<'_>>) -> allowance::Violation {
    allowance::Violation {
        attribute: "below",
        allowed: format!("nothing below {pattern}"),
        actual: seen.map_or("something".into(), |s| s.kind.to_string()),
    }
}

/// Compile `allow.may_appear`: each item's globs and values, every error
/// with its key (a bare pattern is `may_appear[i]`, a table's keys are
/// `may_appear[i].paths[j]`, `may_appear[i].mode`, ...).
fn compile_allowances(
    policy: &Policy,
    key_prefix: &str,
    errors: &mut Vec<PolicyError>,
) -> Option<Vec<Compiled>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in policy.allow.may_appear.iter().enumerate() {
        let key = format!("{key_prefix}.allow.may_appear[{i}]");
        let a = item.allowance();
        let set = match item {
            super::Appear::Pattern(p) => match glob(p) {
                Ok(g) => GlobSetBuilder::new().add(g).build().ok(),
                Err(reason) => {
                    errors.push(PolicyError {
                        key: key.clone(),
                        reason,
                    });
                    None
                }
            },
            super::Appear::Table(_) => build_set(&a.paths, &format!("{key}.paths"), errors),
        };
        let mut problems = Vec::new();
        allowance::check_values(&a, &key, &mut problems);
        ok &= problems.is_empty();
        errors.extend(
            problems
                .into_iter()
                .map(|(key, reason)| PolicyError { key, reason }),
        );
        match set {
            Some(set) => out.push(Compiled::new(&a, set)),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

#[cfg(unix)]
pub(super) fn bytes_path(b: &[u8]) -> &std::path::Path {
    use std::os::unix::ffi::OsStrExt;
    std::path::Path::new(std::ffi::OsStr::from_bytes(b))
}
