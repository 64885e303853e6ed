//! `allow.may_appear`: what may exist on a host although the image lacks
//! it, stated narrowly: its paths, its type, the widest permission bits,
//! its owner and group, and whether anything may appear below it.
//!
//! An item is either a bare pattern, which means the narrow default ([a
//! regular file, within 0644, owned by root:root](Allowance::narrow)), or a
//! table ([`Allowance`]). In the manifest's JSON a bare pattern stays a
//! string, so manifests signed before tables existed keep their meaning;
//! a table is an object. An agent that predates tables refuses an object
//! there (its policy no longer parses) rather than misreading it.
//!
//! Names of users and groups are resolved by the caller against the
//! scanned image's own `/etc/passwd` and `/etc/group` (IO, in `scan`) and
//! handed in as [`Ids`]; `root` is always 0. A name that does not resolve
//! admits nothing: an allowance fails closed, never silently open.

use serde::{Deserialize, Deserializer, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The type names an allowance can admit: exactly the names reports use
/// for types (`manifest::FileKind::name`; a test holds the two together).
pub const TYPE_NAMES: [&str; 7] = [
    "file",
    "directory",
    "symlink",
    "fifo",
    "socket",
    "char-device",
    "block-device",
];

/// A user or group, by number or by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Id {
    Num(u32),
    Name(String),
}

impl From<&str> for Id {
    fn from(s: &str) -> Id {
        Id::Name(s.into())
    }
}

impl From<u32> for Id {
    fn from(n: u32) -> Id {
        Id::Num(n)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Num(n) => write!(f, "{n}"),
            Id::Name(s) => f.write_str(s),
        }
    }
}

/// One allowance in table form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allowance {
    /// Globs; a path matching one may appear (as the rest allows).
    pub paths: Vec<String>,
    /// The types it may have (names of [`TYPE_NAMES`]).
    #[serde(rename = "type", default = "narrow_types")]
    pub types: Vec<String>,
    /// The widest permission bits, as an octal string (`"0644"`): any bit
    /// outside it is drift, setuid, setgid and sticky included. Not
    /// applied to symlinks (always 0777 on Linux).
    #[serde(default = "narrow_mode")]
    pub mode: String,
    /// Owners it may have (any one of them).
    #[serde(default = "narrow_ids")]
    pub owner: Vec<Id>,
    /// Groups it may have (any one of them).
    #[serde(default = "narrow_ids")]
    pub group: Vec<Id>,
    /// Anything may appear below it (a directory); otherwise a path below
    /// it is drift.
    #[serde(default)]
    pub below: bool,
}

fn narrow_types() -> Vec<String> {
    vec!["file".into()]
}

fn narrow_mode() -> String {
    "0644".into()
}

fn narrow_ids() -> Vec<Id> {
    vec![Id::Name("root".into())]
}

impl Allowance {
    /// What a bare pattern means: a regular file, mode within 0644, owner
    /// root, group root, nothing below it.
    pub fn narrow(paths: Vec<String>) -> Allowance {
        Allowance {
            paths,
            types: narrow_types(),
            mode: narrow_mode(),
            owner: narrow_ids(),
            group: narrow_ids(),
            below: false,
        }
    }
}

/// One item of `allow.may_appear`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Appear {
    /// A bare pattern: [`Allowance::narrow`].
    Pattern(String),
    /// A table.
    Table(Allowance),
}

impl From<&str> for Appear {
    fn from(s: &str) -> Appear {
        Appear::Pattern(s.into())
    }
}

impl Appear {
    /// The allowance this item states.
    pub fn allowance(&self) -> Allowance {
        match self {
            Appear::Pattern(p) => Allowance::narrow(vec![p.clone()]),
            Appear::Table(a) => a.clone(),
        }
    }
}

// By hand rather than `untagged`, so that a malformed table in a manifest
// says what is wrong with it (an unknown field, a wrong type) instead of
// "did not match any variant".
impl<'de> Deserialize<'de> for Appear {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Appear, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Appear;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a pattern string or an allowance object")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Appear, E> {
                Ok(Appear::Pattern(s.into()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Appear, A::Error> {
                let d = serde::de::value::MapAccessDeserializer::new(map);
                Allowance::deserialize(d).map(Appear::Table)
            }
        }
        d.deserialize_any(V)
    }
}

/// Names an allowance mentions (other than `root`), for the caller to
/// resolve against the image's user database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdNames {
    pub users: BTreeSet<String>,
    pub groups: BTreeSet<String>,
}

impl IdNames {
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.groups.is_empty()
    }
}

/// Names resolved in one database (`/etc/passwd` or `/etc/group`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdMap {
    /// The names found, with their ids.
    pub found: BTreeMap<String, u32>,
    /// Why the database could not be read (then no name resolves).
    pub error: Option<String>,
}

/// Users and groups resolved in the scanned image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ids {
    pub users: IdMap,
    pub groups: IdMap,
}

/// What a scan saw at a path the manifest lacks. A field is `None` when
/// the policy's rules did not record it there: an allowance that limits
/// it then refuses (it cannot be verified).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen<'a> {
    /// The type's name (one of [`TYPE_NAMES`]).
    pub kind: &'a str,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// One thing an allowance refused, in report terms: the attribute (`type`,
/// `mode`, `uid`, `gid` or `below`), what it allows and what is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub attribute: &'static str,
    pub allowed: String,
    pub actual: String,
}

/// The answer for a path the manifest lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// No allowance names it (nor an ancestor): plain drift.
    NotAllowed,
    /// An allowance admits it.
    Admitted,
    /// An allowance names it, but what it is was not given (it could not
    /// be read): it may appear, yet nothing about it was verified.
    Unverified,
    /// Allowances name it and refuse what is there: the first one's
    /// reasons (in the order of `may_appear`).
    Refused(Vec<Violation>),
}

impl Admission {
    /// Does an allowance name the path and let it be there (verified or
    /// not)? False for plain drift and for a refusal.
    pub fn names(&self) -> bool {
        matches!(self, Admission::Admitted | Admission::Unverified)
    }
}

/// One allowance, checked and ready to match.
#[derive(Debug, Clone)]
pub(super) struct Compiled {
    pub set: globset::GlobSet,
    pub patterns: Vec<String>,
    /// Indices into [`TYPE_NAMES`].
    pub types: Vec<usize>,
    pub mask: u32,
    pub owner: Vec<Id>,
    pub group: Vec<Id>,
    pub below: bool,
}

/// Parse an octal mask (`"0644"`, `"644"`, `"4755"`): 1 to 4 octal digits.
pub fn parse_mask(s: &str) -> Result<u32, String> {
    let ok = !s.is_empty() && s.len() <= 4 && s.bytes().all(|b| (b'0'..=b'7').contains(&b));
    if !ok {
        return Err(format!(
            "`{s}` is not an octal mask like \"0644\" (up to four digits 0-7)"
        ));
    }
    u32::from_str_radix(s, 8).map_err(|e| format!("`{s}`: {e}"))
}

/// A user or group name as `/etc/passwd` and `/etc/group` can hold it.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && !s.starts_with(['+', '-'])
        && s.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

/// Check one allowance's values; each problem with its key under `key`
/// (`policy.allow.may_appear[1]`). The globs are compiled by the caller.
pub(super) fn check_values(a: &Allowance, key: &str, errors: &mut Vec<(String, String)>) {
    let mut err = |k: &str, reason: String| errors.push((format!("{key}.{k}"), reason));
    if a.paths.is_empty() {
        err("paths", "an allowance needs at least one pattern".into());
    }
    if a.types.is_empty() {
        err("type", "an allowance needs at least one type".into());
    }
    for t in &a.types {
        if !TYPE_NAMES.contains(&t.as_str()) {
            err(
                "type",
                format!(
                    "unknown type `{t}`, expected one of: {}",
                    TYPE_NAMES.join(", ")
                ),
            );
        }
    }
    if let Err(reason) = parse_mask(&a.mode) {
        err("mode", reason);
    }
    for (k, ids) in [("owner", &a.owner), ("group", &a.group)] {
        if ids.is_empty() {
            err(k, format!("an allowance needs at least one {k}"));
        }
        for id in ids {
            if let Id::Name(n) = id {
                if !valid_name(n) {
                    err(k, format!("`{n}` is not a user or group name"));
                }
            }
        }
    }
    if a.below && !a.types.iter().any(|t| t == "directory") {
        err(
            "below",
            "`below = true` lets things appear below a directory: add \"directory\" to type".into(),
        );
    }
}

impl Compiled {
    pub(super) fn new(a: &Allowance, set: globset::GlobSet) -> Compiled {
        Compiled {
            set,
            patterns: a.paths.clone(),
            types: (a.types.iter())
                .filter_map(|t| TYPE_NAMES.iter().position(|n| n == t))
                .collect(),
            // A bad mask fails the compile; 0 (the narrowest) is never used.
            mask: parse_mask(&a.mode).unwrap_or(0),
            owner: a.owner.clone(),
            group: a.group.clone(),
            below: a.below,
        }
    }

    /// The pattern matching an ancestor of `path`, if one does.
    pub(super) fn ancestor_match(&self, path: &[u8]) -> Option<&str> {
        let mut p = path;
        while let Some(i) = p.iter().rposition(|&b| b == b'/') {
            if i == 0 {
                return None;
            }
            p = &p[..i];
            if let Some(&j) = self.set.matches(super::compiled::bytes_path(p)).first() {
                return Some(&self.patterns[j]);
            }
        }
        None
    }

    /// What this allowance refuses of `seen` at a path it names (empty:
    /// admitted).
    pub(super) fn violations(&self, seen: &Seen<'_>, ids: &Ids) -> Vec<Violation> {
        let mut out = Vec::new();
        let mut refuse = |attribute, allowed: String, actual: String| {
            out.push(Violation {
                attribute,
                allowed,
                actual,
            })
        };
        if !self.types.iter().any(|&t| TYPE_NAMES[t] == seen.kind) {
            let allowed: Vec<&str> = self.types.iter().map(|&t| TYPE_NAMES[t]).collect();
            refuse("type", allowed.join(" or "), seen.kind.into());
        }
        // A symlink's own bits are always 0777 on Linux and mean nothing.
        if seen.kind != "symlink" {
            let within = format!("within {:04o}", self.mask);
            match seen.mode {
                Some(m) if m & !self.mask == 0 => {}
                Some(m) => refuse("mode", within, format!("{m:04o}")),
                None => refuse("mode", within, NOT_RECORDED.into()),
            }
        }
        for (attribute, allowed, actual, db) in [
            ("uid", &self.owner, seen.uid, Db::Users(&ids.users)),
            ("gid", &self.group, seen.gid, Db::Groups(&ids.groups)),
        ] {
            let resolved: Vec<Result<u32, String>> =
                allowed.iter().map(|id| db.resolve(id)).collect();
            if let Some(v) = actual {
                if resolved.iter().any(|r| r.as_ref() == Ok(&v)) {
                    continue;
                }
            }
            let shown: Vec<String> = (allowed.iter().zip(&resolved))
                .map(|(id, r)| match (id, r) {
                    (Id::Num(n), _) => n.to_string(),
                    (Id::Name(n), Ok(v)) => format!("{n} ({v})"),
                    (Id::Name(n), Err(why)) => format!("{n} ({why})"),
                })
                .collect();
            let actual = actual.map_or_else(|| NOT_RECORDED.to_string(), |v| v.to_string());
            refuse(attribute, shown.join(" or "), actual);
        }
        out
    }
}

const NOT_RECORDED: &str = "not recorded (a policy rule leaves it out here)";

/// One of the image's two databases, for resolving names.
enum Db<'a> {
    Users(&'a IdMap),
    Groups(&'a IdMap),
}

impl Db<'_> {
    fn resolve(&self, id: &Id) -> Result<u32, String> {
        let (map, what, file) = match self {
            Db::Users(m) => (m, "user", "/etc/passwd"),
            Db::Groups(m) => (m, "group", "/etc/group"),
        };
        let name = match id {
            Id::Num(n) => return Ok(*n),
            // root is 0 everywhere, whatever the database says.
            Id::Name(n) if n == "root" => return Ok(0),
            Id::Name(n) => n,
        };
        if let Some(&v) = map.found.get(name) {
            return Ok(v);
        }
        Err(match &map.error {
            Some(e) => format!("unknown {what}: {e}"),
            None => format!("unknown {what}: not in the image's {file}"),
        })
    }
}
