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
//! `exclude`); an allowance to appear covers what is below it only when it
//! says `below = true`.
//!
//! The attributes and sets of them are in `attr`, the allowances to appear
//! (and their pure matcher) in `allowance`, the reading of their config
//! tables in `parse`, the shipped defaults in `defaults`, and the glob
//! matcher (with its errors) in `compiled`; all are
//! re-exported here, so callers name `policy::X` whatever file it lives in.

mod allowance;
mod attr;
mod compiled;
mod defaults;
mod parse;

pub use allowance::{
    parse_mask, Admission, Allowance, Appear, Id, IdMap, IdNames, Ids, Seen, Violation, TYPE_NAMES,
};
pub use attr::{Attr, AttrSet, CONTENT_ATTRS};
pub use compiled::{CompiledPolicy, PolicyError};
pub use defaults::{
    default_may_appear, DEFAULT_CONTENT_MAY_DIFFER, DEFAULT_EXCLUDES, DEFAULT_MOUNTS,
};
pub use parse::may_appear as parse_may_appear;

use serde::{Deserialize, Serialize};

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
    /// What may appear on the host though the image lacks it: bare
    /// patterns (the narrow default) or tables.
    pub may_appear: Vec<Appear>,
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
    /// Paths where a mount is expected (`/boot`, a data volume): the walk
    /// goes into it and checks what is below as usual. A mount anywhere else
    /// over a checked path is drift. Left out of a manifest when it is the
    /// default list (so a default policy bakes the same bytes as before this
    /// key existed, and older agents read it); manifests without it get the
    /// default list.
    #[serde(
        default = "defaults::default_mounts",
        skip_serializing_if = "defaults::is_default_mounts"
    )]
    pub mounts: Vec<String>,
}

#[cfg(test)]
#[allow(clippy::field_reassign_with_default)]
mod tests;

#[cfg(test)]
mod allowance_tests;

#[cfg(test)]
mod parse_tests;
