//! Checking a live tree against a manifest.
//!
//! The scan runs with the manifest's own policy; each live entry is looked
//! up in the manifest and compared, and whatever the manifest has that the
//! scan never saw is *removed* -- unless it lies below a directory that
//! could not be read or a mount point that was not entered, in which case
//! it was not checked and the finding says so (*unreadable*). Nothing that
//! went unchecked can yield a clean verdict.
//!
//! The same code checks the whole tree (`check`, the agent's full scans)
//! or one path and its subtree (the agent's targeted re-checks after a
//! filesystem event): only the manifest entries in scope can be removed.

use crate::manifest::bounded::Bounded;
use crate::manifest::diff::{
    compare, Change, Counts, Finding, FindingKind, UnreadableKind, Verdict,
};
use crate::manifest::{Entry, Manifest};
use crate::policy::{Admission, CompiledPolicy, Ids, Seen};
use crate::scan::{self, Mount, ScanControl, ScanEvent, ScanOptions, ScanStats, Unchecked};
use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

/// The outcome of one check.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// The findings: every one counted, the first (by path, then kind)
    /// held up to the check's limit.
    pub found: Bounded,
    pub verdict: Verdict,
    /// Every finding by kind (exact, held or not).
    pub counts: Counts,
    pub stats: ScanStats,
    /// Directories the scan entered (the agent keeps them watched).
    pub dirs: Vec<Box<[u8]>>,
}

/// Why a check could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("the manifest's embedded policy is invalid: {0}")]
    Policy(String),
    #[error(transparent)]
    Scan(#[from] scan::ScanError),
}

/// Compile the manifest's embedded policy.
pub fn manifest_policy(manifest: &Manifest) -> Result<CompiledPolicy, CheckError> {
    CompiledPolicy::new(manifest.header.policy.clone(), "policy").map_err(|errs| {
        CheckError::Policy(
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        )
    })
}

/// Check `root` against `manifest` with `threads` hashing threads.
pub fn check_tree(
    manifest: &Manifest,
    root: &Path,
    threads: usize,
) -> Result<CheckReport, CheckError> {
    let policy = manifest_policy(manifest)?;
    check_scope(
        manifest,
        &policy,
        root,
        threads,
        &ScanControl::default(),
        usize::MAX,
    )
}

/// [`compare`] for a live entry. A process without `CAP_SYS_ADMIN` is not
/// shown `trusted.*` xattrs, so when the manifest recorded some (baked as
/// root) they cannot be checked here: the rest of the entry is compared as
/// usual (drift is still drift), and if nothing else differs the entry is
/// reported unreadable, never clean and never "xattrs changed".
fn compare_live(expected: &Entry, actual: &Entry, type_only: bool) -> Option<Finding> {
    let hidden = |n: &[u8]| n.starts_with(b"trusted.");
    let blind = !type_only
        && actual.xattrs.is_some()
        && !scan::trusted_visible()
        && expected
            .xattrs
            .as_ref()
            .is_some_and(|x| x.iter().any(|(n, _)| hidden(n)));
    if !blind {
        return compare(expected, actual, type_only);
    }
    let mut visible = expected.clone();
    if let Some(x) = &mut visible.xattrs {
        x.retain(|(n, _)| !hidden(n));
    }
    compare(&visible, actual, type_only).or_else(|| {
        Some(Finding::unreadable(
            &expected.path,
            UnreadableKind::PermissionDenied,
            "cannot check its trusted.* xattrs: they are visible only with CAP_SYS_ADMIN",
        ))
    })
}

/// A mount the policy does not expect over a directory of the image: drift,
/// reported as `metadata` with the attribute `mount` (and whatever else of
/// the directory differs, its mode and owner compared like any directory's).
fn mount_finding(expected: &Entry, actual: &Entry, mount: &Mount) -> Finding {
    let mut f = compare_live(expected, actual, false)
        .unwrap_or_else(|| Finding::simple(&expected.path, FindingKind::Metadata));
    if f.kind != FindingKind::Type {
        f.attributes.push("mount");
        f.changes.push(Change {
            attribute: "mount",
            expected: Some("no mount".into()),
            actual: Some(mount.what.clone()),
        });
    }
    f
}

/// A file seen but not read that the manifest lacks is handled like any
/// unreadable path the manifest lacks (it is there: `added`, unless it may
/// appear).
fn partial_as_unreadable(manifest: &Manifest, ev: ScanEvent) -> ScanEvent {
    match ev {
        ScanEvent::Partial {
            entry,
            cause,
            reason,
        } if manifest.find(&entry.path).is_none() => ScanEvent::Unreadable {
            path: entry.path,
            cause,
            reason,
            unchecked: Unchecked::Path,
        },
        other => other,
    }
}

/// A file seen but not read (it could not be opened, or changed while
/// read): what its metadata already shows (its type, size, mode, owner,
/// link target) is drift, whatever its content; if nothing does, it is
/// unreadable.
fn partial_finding(
    expected: &Entry,
    actual: &Entry,
    cause: UnreadableKind,
    reason: String,
) -> Finding {
    let mut known = expected.clone();
    if actual.hash.is_none() {
        known.hash = None;
    }
    if actual.xattrs.is_none() {
        known.xattrs = None;
    }
    match compare_live(&known, actual, false) {
        Some(mut f) => {
            f.reason = Some(format!("content not read: {reason}"));
            f
        }
        None => Finding::unreadable(&expected.path, cause, reason),
    }
}

/// The manifest entries a scan starting at `start` covers: the path itself
/// and everything below it (contiguous, since entries are sorted by bytes).
fn scope(manifest: &Manifest, start: Option<&[u8]>) -> (Option<usize>, Range<usize>) {
    let Some(start) = start.filter(|s| *s != b"/") else {
        return (None, 0..manifest.entries.len());
    };
    let prefix = [start, b"/"].concat();
    let entries = &manifest.entries;
    let lo = entries.partition_point(|e| *e.path < *prefix);
    let hi = lo + entries[lo..].partition_point(|e| e.path.starts_with(&prefix));
    (manifest.find(start), lo..hi)
}

/// Check the part of the tree `control.start` selects (all of it by
/// default) against the manifest, with the manifest's compiled `policy`.
/// At most `limit` findings are held in the report (the first by path);
/// every one is counted.
pub fn check_scope(
    manifest: &Manifest,
    policy: &CompiledPolicy,
    root: &Path,
    threads: usize,
    control: &ScanControl,
    limit: usize,
) -> Result<CheckReport, CheckError> {
    let (exact, below) = scope(manifest, control.start.as_deref());
    let in_scope = |i: usize| exact == Some(i) || below.contains(&i);
    let mut seen = vec![false; manifest.entries.len()];
    let mut found = Bounded::new(limit);
    // Paths of the manifest below which nothing was checked, with the kind
    // of the finding that explains why (so unchecked manifest entries are
    // counted there). `None` for a mount point, which only becomes a
    // finding if the manifest expected something below it. Only paths with
    // manifest entries below them: bounded by the manifest, not the tree.
    let mut blind: HashMap<Box<[u8]>, Option<FindingKind>> = HashMap::new();
    let mut dirs: Vec<Box<[u8]>> = Vec::new();
    // A path the manifest lacks, judged by `allow.may_appear`; the names
    // it mentions are looked up in the image once, and only if needed.
    let mut ids: Option<Ids> = None;
    let mut admits = |path: &[u8], seen: Option<&Seen<'_>>| {
        let ids = ids.get_or_insert_with(|| scan::ids::resolve(root, &policy.id_names()));
        policy.admits(path, seen, ids)
    };
    let stats = scan::scan_with(
        &ScanOptions {
            root,
            policy,
            threads,
        },
        control,
        &mut |ev| match partial_as_unreadable(manifest, ev) {
            ScanEvent::Partial {
                entry,
                cause,
                reason,
            } => {
                if let Some(i) = manifest.find(&entry.path) {
                    seen[i] = true;
                    found.insert(partial_finding(&manifest.entries[i], &entry, cause, reason));
                }
            }
            ScanEvent::Entry { entry, mount } => {
                let entered = mount.as_ref().is_none_or(|m| m.entered);
                if entry.kind == crate::manifest::FileKind::Dir && entered {
                    dirs.push(entry.path.clone());
                }
                match manifest.find(&entry.path) {
                    Some(i) => {
                        seen[i] = true;
                        let expected = &manifest.entries[i];
                        let finding = match &mount {
                            None => compare_live(expected, &entry, false),
                            // The root of another filesystem, where the
                            // policy expects one: its type counts, its mode
                            // and owner are that filesystem's business.
                            Some(m) if m.expected => compare_live(expected, &entry, true),
                            Some(m) => Some(mount_finding(expected, &entry, m)),
                        };
                        if let Some(f) = finding {
                            found.insert(f);
                        }
                        if !entered {
                            // What the image had below it was not checked.
                            blind.insert(entry.path, None);
                        }
                    }
                    None => match admits(&entry.path, Some(&seen_as(&entry))) {
                        Admission::Admitted => {}
                        refused => found.insert(added(&entry.path, Some(refused))),
                    },
                }
            }
            ScanEvent::Unreadable {
                path,
                cause,
                reason,
                unchecked,
            } => {
                let kind = match manifest.find(&path) {
                    Some(i) => {
                        seen[i] = true;
                        found.insert(Finding::unreadable(&path, cause, reason));
                        FindingKind::Unreadable
                    }
                    None => {
                        // Judged as its entry was, if that was reported (a
                        // directory that could not be listed): the
                        // finding made then takes the reason.
                        let reported = match unchecked {
                            Unchecked::Below(meta) => {
                                let entry = meta.entry(path.clone(), policy.attrs_for(&path));
                                Some(admits(&path, Some(&seen_as(&entry))))
                            }
                            _ => None,
                        };
                        match reported {
                            Some(Admission::Admitted) => {
                                found.insert(Finding::unreadable(&path, cause, reason));
                                FindingKind::Unreadable
                            }
                            Some(_) => {
                                found.annotate(&path, FindingKind::Added, cause, reason);
                                FindingKind::Added
                            }
                            None => {
                                // It exists (its directory listed it) and
                                // the image lacked it: that alone is drift,
                                // unless an allowance names it (then it was
                                // not verified: unreadable).
                                let allowed = admits(&path, None);
                                if allowed.names() {
                                    found.insert(Finding::unreadable(&path, cause, reason));
                                    FindingKind::Unreadable
                                } else {
                                    let mut f = added(&path, Some(allowed));
                                    f.reason = Some(reason);
                                    f.cause = Some(cause);
                                    found.insert(f);
                                    FindingKind::Added
                                }
                            }
                        }
                    }
                };
                if unchecked.below() && !scope(manifest, Some(&path)).1.is_empty() {
                    blind.insert(path, Some(kind));
                }
            }
        },
    )?;
    let mut unchecked: HashMap<&[u8], u64> = HashMap::new();
    let candidates = exact.into_iter().chain(below.clone());
    for i in candidates.filter(|&i| in_scope(i) && !seen[i]) {
        let entry = &manifest.entries[i];
        match blind_ancestor(&blind, &entry.path) {
            Some(p) => *unchecked.entry(p).or_default() += 1,
            None => found.insert(Finding::simple(&entry.path, FindingKind::Removed)),
        }
    }
    for (path, n) in unchecked {
        let note = format!(
            "{n} manifest entr{} below not checked",
            if n == 1 { "y" } else { "ies" }
        );
        match blind.get(path).copied().flatten() {
            Some(kind) => found.note(path, kind, &note),
            None => found.insert(Finding::unreadable(
                path,
                UnreadableKind::NotEntered,
                format!("mount point not entered (one_file_system: the mount itself is reported); {note}"),
            )),
        }
    }
    Ok(CheckReport {
        verdict: verdict_of(&found),
        counts: found.counts(),
        found,
        stats,
        dirs,
    })
}

/// Drifted if anything is drift, else unknown if anything could not be
/// checked, else clean.
fn verdict_of(found: &Bounded) -> Verdict {
    if found.drift() > 0 {
        Verdict::Drifted
    } else if found.total() > 0 {
        Verdict::Unknown
    } else {
        Verdict::Clean
    }
}

/// What an allowance to appear is shown of a live entry.
fn seen_as(entry: &Entry) -> Seen<'static> {
    Seen {
        kind: entry.kind.name(),
        mode: entry.mode,
        uid: entry.uid,
        gid: entry.gid,
    }
}

/// An `added` finding; when allowances named the path but refused it,
/// its attributes and changes say what they refused and what is there.
fn added(path: &[u8], admission: Option<Admission>) -> Finding {
    let mut f = Finding::simple(path, FindingKind::Added);
    if let Some(Admission::Refused(violations)) = admission {
        for v in violations {
            f.attributes.push(v.attribute);
            f.changes.push(Change {
                attribute: v.attribute,
                expected: Some(v.allowed),
                actual: Some(v.actual),
            });
        }
    }
    f
}

/// The nearest ancestor of `path` below which nothing was checked.
fn blind_ancestor<'a>(
    blind: &'a HashMap<Box<[u8]>, Option<FindingKind>>,
    path: &[u8],
) -> Option<&'a [u8]> {
    if blind.is_empty() {
        return None;
    }
    let mut p = path;
    while let Some(i) = p.iter().rposition(|&b| b == b'/') {
        p = if i == 0 { b"/" } else { &p[..i] };
        if let Some((k, _)) = blind.get_key_value(p) {
            return Some(k);
        }
        if i == 0 {
            break;
        }
    }
    None
}
