//! Which paths are checked, and which of their attributes.
//!
//! PURE: no filesystem, no clock. A [`Policy`] is plain data: it is parsed
//! from the `[policy]` table of the config, embedded verbatim (as JSON) in
//! every manifest, and compiled into a [`CompiledPolicy`] of glob matchers.
//! `check` always uses the policy embedded in the manifest, so a host is
//! judged by the rules the image was baked with, never by a local file that
//! an intruder could edit.
//!
//! Patterns are globs (`globset`) matched against the absolute path inside
//! the scanned root (`/etc/passwd`, whatever the root is on disk). `*` and
//! `?` never match `/`; `**` matches any number of path components. A
//! pattern that matches a directory also covers everything below it (for
//! `exclude` and `may_appear`).

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};
use std::fmt;

/// One attribute of a path that a rule can check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Attr {
    Type,
    Content,
    Size,
    Target,
    Device,
    Mode,
    Uid,
    Gid,
    Xattrs,
    Mtime,
    Ctime,
    Atime,
    Inode,
}

impl Attr {
    pub const ALL: [Attr; 13] = [
        Attr::Type,
        Attr::Content,
        Attr::Size,
        Attr::Target,
        Attr::Device,
        Attr::Mode,
        Attr::Uid,
        Attr::Gid,
        Attr::Xattrs,
        Attr::Mtime,
        Attr::Ctime,
        Attr::Atime,
        Attr::Inode,
    ];

    /// The name used in config files, manifests and reports.
    pub fn name(self) -> &'static str {
        match self {
            Attr::Type => "type",
            Attr::Content => "content",
            Attr::Size => "size",
            Attr::Target => "target",
            Attr::Device => "device",
            Attr::Mode => "mode",
            Attr::Uid => "uid",
            Attr::Gid => "gid",
            Attr::Xattrs => "xattrs",
            Attr::Mtime => "mtime",
            Attr::Ctime => "ctime",
            Attr::Atime => "atime",
            Attr::Inode => "inode",
        }
    }

    pub fn from_name(s: &str) -> Option<Attr> {
        Attr::ALL.iter().copied().find(|a| a.name() == s)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Attr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of attributes (a small bit set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AttrSet(u16);

impl AttrSet {
    pub const EMPTY: AttrSet = AttrSet(0);

    /// What is checked when no rule says otherwise: everything an image
    /// build controls. Times and inode numbers are off because image
    /// builders normalise (or randomise) them.
    pub fn default_set() -> AttrSet {
        [
            Attr::Type,
            Attr::Content,
            Attr::Size,
            Attr::Target,
            Attr::Device,
            Attr::Mode,
            Attr::Uid,
            Attr::Gid,
            Attr::Xattrs,
        ]
        .into_iter()
        .collect()
    }

    pub fn all() -> AttrSet {
        Attr::ALL.into_iter().collect()
    }

    pub fn contains(self, a: Attr) -> bool {
        self.0 & a.bit() != 0
    }

    pub fn with(self, a: Attr) -> AttrSet {
        AttrSet(self.0 | a.bit())
    }

    pub fn without(self, a: Attr) -> AttrSet {
        AttrSet(self.0 & !a.bit())
    }

    pub fn iter(self) -> impl Iterator<Item = Attr> {
        Attr::ALL.into_iter().filter(move |a| self.contains(*a))
    }

    /// Parse a list of names; `default` and `all` expand to those sets.
    pub fn parse_names<S: AsRef<str>>(names: &[S]) -> Result<AttrSet, String> {
        let mut set = AttrSet::EMPTY;
        for n in names {
            let n = n.as_ref();
            match n {
                "default" => set = AttrSet(set.0 | AttrSet::default_set().0),
                "all" => set = AttrSet::all(),
                _ => match Attr::from_name(n) {
                    Some(a) => set = set.with(a),
                    None => {
                        return Err(format!(
                            "unknown attribute `{n}`, expected one of: default, all, {}",
                            Attr::ALL.map(Attr::name).join(", ")
                        ))
                    }
                },
            }
        }
        // The type is what every other comparison hangs on: always checked.
        Ok(set.with(Attr::Type))
    }
}

impl FromIterator<Attr> for AttrSet {
    fn from_iter<I: IntoIterator<Item = Attr>>(iter: I) -> Self {
        AttrSet(iter.into_iter().fold(0, |acc, a| acc | a.bit()))
    }
}

/// Attributes that an allowance in `content_may_differ` stops checking.
/// Type, mode, owner and xattrs are still checked for those paths.
pub const CONTENT_ATTRS: [Attr; 7] = [
    Attr::Content,
    Attr::Size,
    Attr::Target,
    Attr::Mtime,
    Attr::Ctime,
    Attr::Atime,
    Attr::Inode,
];

/// One ordered rule: the first rule whose pattern matches a path decides
/// which attributes of that path are checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub paths: Vec<String>,
    pub attributes: Vec<String>,
}

/// Per-host allowances that a real immutable host needs on first boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allow {
    /// Paths whose content may differ from the image, but whose type, mode,
    /// owner and xattrs may not.
    pub content_may_differ: Vec<String>,
    /// Paths that may appear on the host though the image lacks them.
    pub may_appear: Vec<String>,
}

/// The policy as data (validated, not yet compiled).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Paths (and everything below them) that are not checked at all.
    pub exclude: Vec<String>,
    /// Do not descend into other filesystems (mount points).
    pub one_file_system: bool,
    /// Ordered rules; the first match wins; no match means the default set.
    pub rules: Vec<Rule>,
    pub allow: Allow,
}

/// The exclusions a host scan needs whatever the image: kernel and runtime
/// filesystems, scratch space, logs and caches, and driftd's own state.
pub const DEFAULT_EXCLUDES: &[&str] = &[
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/tmp",
    "/var/tmp",
    "/var/log",
    "/var/cache",
    "/var/lib/driftd",
    "/var/lib/systemd",
    "/var/lib/dhcp",
    "/var/backups",
    "/lost+found",
    "/mnt",
    "/media",
];

/// Files systemd, cloud-init and sshd legitimately rewrite on first boot.
pub const DEFAULT_CONTENT_MAY_DIFFER: &[&str] = &[
    "/etc/machine-id",
    "/etc/hostname",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/ssh/ssh_host_*",
];

/// Files that appear on first boot though no image contains them.
pub const DEFAULT_MAY_APPEAR: &[&str] = &["/etc/ssh/ssh_host_*", "/etc/machine-id"];

impl Default for Policy {
    fn default() -> Self {
        Policy {
            exclude: DEFAULT_EXCLUDES.iter().map(|s| s.to_string()).collect(),
            one_file_system: true,
            rules: Vec::new(),
            allow: Allow {
                content_may_differ: DEFAULT_CONTENT_MAY_DIFFER
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                may_appear: DEFAULT_MAY_APPEAR.iter().map(|s| s.to_string()).collect(),
            },
        }
    }
}

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
        match (exclude, cmd, appear) {
            (Some(exclude), Some(content_may_differ), Some(may_appear)) if errors.is_empty() => {
                Ok(CompiledPolicy {
                    policy,
                    exclude,
                    rule_sets,
                    content_may_differ,
                    may_appear,
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

#[cfg(test)]
#[allow(clippy::field_reassign_with_default)]
mod tests {
    use super::*;

    fn compiled(p: Policy) -> CompiledPolicy {
        CompiledPolicy::new(p, "policy").unwrap()
    }

    #[test]
    fn defaults_exclude_runtime_trees() {
        let p = compiled(Policy::default());
        assert!(p.is_excluded(b"/proc"));
        assert!(p.is_excluded(b"/var/log"));
        assert!(!p.is_excluded(b"/var/lib"));
        assert!(!p.is_excluded(b"/procfs"));
        assert!(!p.is_excluded(b"/etc/passwd"));
    }

    #[test]
    fn first_matching_rule_wins() {
        let mut pol = Policy::default();
        pol.rules = vec![
            Rule {
                paths: vec!["/etc/special".into()],
                attributes: vec!["all".into()],
            },
            Rule {
                paths: vec!["/etc/**".into()],
                attributes: vec!["mode".into(), "uid".into()],
            },
        ];
        let p = compiled(pol);
        assert_eq!(p.attrs_for(b"/etc/special"), AttrSet::all());
        let etc = p.attrs_for(b"/etc/x/y");
        assert!(etc.contains(Attr::Mode) && etc.contains(Attr::Type));
        assert!(!etc.contains(Attr::Content));
        assert_eq!(p.attrs_for(b"/usr/bin/ls"), AttrSet::default_set());
        assert!(!AttrSet::default_set().contains(Attr::Mtime));
    }

    #[test]
    fn star_does_not_cross_directories() {
        let mut pol = Policy::default();
        pol.exclude = vec!["/data/*.tmp".into()];
        let p = compiled(pol);
        assert!(p.is_excluded(b"/data/a.tmp"));
        assert!(!p.is_excluded(b"/data/sub/a.tmp"));
    }

    #[test]
    fn content_may_differ_keeps_mode_and_owner() {
        let p = compiled(Policy::default());
        let a = p.attrs_for(b"/etc/machine-id");
        assert!(!a.contains(Attr::Content) && !a.contains(Attr::Size));
        assert!(a.contains(Attr::Mode) && a.contains(Attr::Uid) && a.contains(Attr::Gid));
        assert!(a.contains(Attr::Type));
    }

    #[test]
    fn may_appear_covers_subtrees() {
        let mut pol = Policy::default();
        pol.allow.may_appear = vec!["/var/lib/cloud".into()];
        let p = compiled(pol);
        assert!(p.may_appear(b"/var/lib/cloud"));
        assert!(p.may_appear(b"/var/lib/cloud/instance/x"));
        assert!(!p.may_appear(b"/var/lib/cloudy"));
        assert!(!p.may_appear(b"/var/lib"));
    }

    #[test]
    fn non_utf8_paths_match() {
        let mut pol = Policy::default();
        pol.exclude = vec!["/odd/**".into()];
        let p = compiled(pol);
        assert!(p.is_excluded(b"/odd/\xff\xfe"));
    }

    #[test]
    fn every_error_is_reported_with_its_key() {
        let mut pol = Policy::default();
        pol.exclude = vec!["relative".into(), "/ok".into(), "/bad/[".into()];
        pol.rules = vec![Rule {
            paths: vec![],
            attributes: vec!["mod".into()],
        }];
        let errs = CompiledPolicy::new(pol, "policy").unwrap_err();
        let keys: Vec<_> = errs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "policy.exclude[0]",
                "policy.exclude[2]",
                "policy.rules[0].paths",
                "policy.rules[0].attributes"
            ]
        );
        assert!(errs[3].reason.contains("unknown attribute `mod`"));
    }
}
