//! Comparing entries: findings, their kinds, and the verdict.
//!
//! PURE. Used by `check` (manifest against a live scan) and by `diff`
//! (manifest against manifest), so both report drift the same way.

use super::entry::Entry;
use super::Manifest;
use crate::policy::Attr;
use serde::{Deserialize, Serialize};

/// What happened to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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

/// Why a path could not be checked: a bounded set, so it can label
/// metrics (`driftd_scan_errors_total{reason}`) and be matched by machines
/// without reading the English `reason` beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnreadableKind {
    /// The kernel refused (EACCES, EPERM), or the attribute is visible
    /// only with a capability this process lacks.
    PermissionDenied,
    /// The file or directory changed (or was replaced) while it was read.
    ChangedWhileRead,
    /// The path is longer than the kernel accepts.
    NameTooLong,
    /// A mount point that was not entered, or a subtree that could not be
    /// listed: what the manifest has below it was not checked.
    NotEntered,
    /// The check that would have covered it failed as a whole (the root
    /// could not be opened, descriptors ran out); it is retried.
    ScanFailed,
    /// Anything else (an I/O error, ...).
    Other,
}

impl UnreadableKind {
    pub const ALL: [UnreadableKind; 6] = [
        UnreadableKind::PermissionDenied,
        UnreadableKind::ChangedWhileRead,
        UnreadableKind::NameTooLong,
        UnreadableKind::NotEntered,
        UnreadableKind::ScanFailed,
        UnreadableKind::Other,
    ];

    /// The label (as serialised).
    pub fn label(self) -> &'static str {
        match self {
            UnreadableKind::PermissionDenied => "permission_denied",
            UnreadableKind::ChangedWhileRead => "changed_while_read",
            UnreadableKind::NameTooLong => "name_too_long",
            UnreadableKind::NotEntered => "not_entered",
            UnreadableKind::ScanFailed => "scan_failed",
            UnreadableKind::Other => "other",
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
    /// Why a path could not be checked, for people (also set on an added
    /// directory that could not be listed).
    pub reason: Option<String>,
    /// Why a path could not be checked, typed: set on every `unreadable`
    /// finding (and beside `reason` on an added directory that could not
    /// be listed).
    pub cause: Option<UnreadableKind>,
}

impl Finding {
    pub fn simple(path: &[u8], kind: FindingKind) -> Finding {
        Finding {
            path: path.into(),
            kind,
            attributes: Vec::new(),
            changes: Vec::new(),
            reason: None,
            cause: None,
        }
    }

    pub fn unreadable(path: &[u8], cause: UnreadableKind, reason: impl Into<String>) -> Finding {
        Finding {
            reason: Some(reason.into()),
            cause: Some(cause),
            ..Finding::simple(path, FindingKind::Unreadable)
        }
    }

    /// Is this drift (as opposed to a path that could not be checked)?
    pub fn is_drift(&self) -> bool {
        self.kind != FindingKind::Unreadable
    }
}

/// One attribute's change, as serialised (owned, so it reads back).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRecord {
    pub attribute: String,
    pub expected: Option<String>,
    pub actual: Option<String>,
}

/// A finding as every JSON document shows it (`check --format json`,
/// `diff`, `/status`, the state file, signals): the one serialised form.
/// The path is escaped losslessly (see the README).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingRecord {
    pub path: String,
    pub kind: FindingKind,
    pub attributes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<ChangeRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The typed reason of an unreadable path (`permission_denied`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<UnreadableKind>,
}

impl From<&Finding> for FindingRecord {
    fn from(f: &Finding) -> FindingRecord {
        FindingRecord {
            path: super::escape::escape(&f.path),
            kind: f.kind,
            attributes: f.attributes.iter().map(|a| a.to_string()).collect(),
            changes: f
                .changes
                .iter()
                .map(|c| ChangeRecord {
                    attribute: c.attribute.to_string(),
                    expected: c.expected.clone(),
                    actual: c.actual.clone(),
                })
                .collect(),
            reason: f.reason.clone(),
            cause: f.cause,
        }
    }
}

/// The overall result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Clean,
    Drifted,
    Unknown,
}

impl Verdict {
    pub const ALL: [Verdict; 3] = [Verdict::Clean, Verdict::Drifted, Verdict::Unknown];

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
            cause: None,
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
        cause: None,
    })
}

/// Per-kind counts of a list of findings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
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
            c.add(f.kind);
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

    /// Count one more finding of kind `k`.
    pub fn add(&mut self, k: FindingKind) {
        let slot = self.slot(k);
        *slot = slot.saturating_add(1);
    }

    /// Count one finding of kind `k` less.
    pub fn remove(&mut self, k: FindingKind) {
        self.remove_n(k, 1);
    }

    /// Count `n` more findings of kind `k`.
    pub fn add_n(&mut self, k: FindingKind, n: u64) {
        let slot = self.slot(k);
        *slot = slot.saturating_add(n);
    }

    /// Count `n` fewer findings of kind `k`.
    pub fn remove_n(&mut self, k: FindingKind, n: u64) {
        let slot = self.slot(k);
        *slot = slot.saturating_sub(n);
    }

    /// Every finding, of all kinds.
    pub fn total(&self) -> u64 {
        FindingKind::ALL
            .iter()
            .fold(0u64, |t, k| t.saturating_add(self.get(*k)))
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
