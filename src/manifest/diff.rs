//! Comparing entries: findings, their kinds, and the verdict.
//!
//! PURE. Used by `check` (manifest against a live scan) and by `diff`
//! (manifest against manifest), so both report drift the same way.

use super::entry::Entry;
use super::Manifest;
use crate::policy::Attr;
use serde::Serialize;

/// What happened to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FindingKind {
    /// Present now, absent from the manifest (and not allowed to appear).
    Added,
    /// In the manifest, gone now.
    Removed,
    /// Content changed: hash, size, symlink target or device numbers.
    Modified,
    /// Only metadata changed (mode, owner, xattrs, times, inode).
    Metadata,
    /// The path is now of another type (file became a symlink, ...).
    Type,
    /// The path could not be checked. Never counts as clean.
    Unreadable,
}

impl FindingKind {
    pub const ALL: [FindingKind; 6] = [
        FindingKind::Added,
        FindingKind::Removed,
        FindingKind::Modified,
        FindingKind::Metadata,
        FindingKind::Type,
        FindingKind::Unreadable,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FindingKind::Added => "added",
            FindingKind::Removed => "removed",
            FindingKind::Modified => "modified",
            FindingKind::Metadata => "metadata",
            FindingKind::Type => "type",
            FindingKind::Unreadable => "unreadable",
        }
    }
}

/// One attribute's expected and actual value, rendered for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub attribute: &'static str,
    pub expected: Option<String>,
    pub actual: Option<String>,
}

/// One finding. `path` is the raw path bytes; reports escape it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub path: Box<[u8]>,
    pub kind: FindingKind,
    /// Names of the attributes that changed (empty for added/removed).
    pub attributes: Vec<&'static str>,
    pub changes: Vec<Change>,
    /// Why a path is unreadable.
    pub reason: Option<String>,
}

impl Finding {
    pub fn simple(path: &[u8], kind: FindingKind) -> Finding {
        Finding {
            path: path.into(),
            kind,
            attributes: Vec::new(),
            changes: Vec::new(),
            reason: None,
        }
    }

    pub fn unreadable(path: &[u8], reason: impl Into<String>) -> Finding {
        Finding {
            reason: Some(reason.into()),
            ..Finding::simple(path, FindingKind::Unreadable)
        }
    }
}

/// The overall result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Clean,
    Drifted,
    Unknown,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Clean => "clean",
            Verdict::Drifted => "drifted",
            Verdict::Unknown => "unknown",
        }
    }

    /// Drift is a fact even when other paths could not be checked, so it
    /// wins; otherwise any unreadable path makes the verdict unknown. Only
    /// no findings at all is clean.
    pub fn from_findings(findings: &[Finding]) -> Verdict {
        let mut unknown = false;
        for f in findings {
            if f.kind == FindingKind::Unreadable {
                unknown = true;
            } else {
                return Verdict::Drifted;
            }
        }
        if unknown {
            Verdict::Unknown
        } else {
            Verdict::Clean
        }
    }

    /// Process exit status: 0 clean, 1 drifted, 2 unknown.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Clean => 0,
            Verdict::Drifted => 1,
            Verdict::Unknown => 2,
        }
    }
}

/// Compare an expected entry with an actual one at the same path.
/// `type_only` is set for mount points, whose metadata belongs to another
/// filesystem.
pub fn compare(expected: &Entry, actual: &Entry, type_only: bool) -> Option<Finding> {
    if expected.kind != actual.kind {
        return Some(Finding {
            path: expected.path.clone(),
            kind: FindingKind::Type,
            attributes: vec![Attr::Type.name()],
            changes: vec![Change {
                attribute: Attr::Type.name(),
                expected: Some(expected.kind.name().into()),
                actual: Some(actual.kind.name().into()),
            }],
            reason: None,
        });
    }
    if type_only {
        return None;
    }
    let changed = expected.differing_attrs(actual);
    if changed.is_empty() {
        return None;
    }
    let content = changed
        .iter()
        .any(|a| matches!(a, Attr::Content | Attr::Size | Attr::Target | Attr::Device));
    Some(Finding {
        path: expected.path.clone(),
        kind: if content {
            FindingKind::Modified
        } else {
            FindingKind::Metadata
        },
        attributes: changed.iter().map(|a| a.name()).collect(),
        changes: changed
            .iter()
            .map(|&a| Change {
                attribute: a.name(),
                expected: expected.render(a),
                actual: actual.render(a),
            })
            .collect(),
        reason: None,
    })
}

/// Per-kind counts of a list of findings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub added: u64,
    pub removed: u64,
    pub modified: u64,
    pub metadata: u64,
    #[serde(rename = "type")]
    pub type_changed: u64,
    pub unreadable: u64,
}

impl Counts {
    pub fn of(findings: &[Finding]) -> Counts {
        let mut c = Counts::default();
        for f in findings {
            *c.slot(f.kind) = c.slot(f.kind).saturating_add(1);
        }
        c
    }

    fn slot(&mut self, k: FindingKind) -> &mut u64 {
        match k {
            FindingKind::Added => &mut self.added,
            FindingKind::Removed => &mut self.removed,
            FindingKind::Modified => &mut self.modified,
            FindingKind::Metadata => &mut self.metadata,
            FindingKind::Type => &mut self.type_changed,
            FindingKind::Unreadable => &mut self.unreadable,
        }
    }

    pub fn get(&self, k: FindingKind) -> u64 {
        let mut c = *self;
        *c.slot(k)
    }
}

/// What changed from one manifest to another (both sorted by path).
/// Attributes recorded in only one of them (a policy change) count as
/// changes too: the reviewer should see them.
pub fn diff_manifests(old: &Manifest, new: &Manifest) -> Vec<Finding> {
    let (a, b) = (&old.entries, &new.entries);
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x.path == y.path => {
                out.extend(compare(x, y, false));
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x.path < y.path => {
                out.push(Finding::simple(&x.path, FindingKind::Removed));
                i += 1;
            }
            (Some(x), None) => {
                out.push(Finding::simple(&x.path, FindingKind::Removed));
                i += 1;
            }
            (_, Some(y)) => {
                out.push(Finding::simple(&y.path, FindingKind::Added));
                j += 1;
            }
            (None, None) => break,
        }
    }
    out
}
