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

use crate::manifest::diff::{
    compare, Change, Counts, Finding, FindingKind, UnreadableKind, Verdict,
};
use crate::manifest::{Entry, Manifest};
use crate::policy::{Admission, CompiledPolicy, Ids, Seen};
use crate::scan::{self, ScanControl, ScanEvent, ScanOptions, ScanStats};
use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

/// The outcome of one check.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// Sorted by path, then kind.
    pub findings: Vec<Finding>,
    pub verdict: Verdict,
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
    check_scope(manifest, &policy, root, threads, &ScanControl::default())
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
pub fn check_scope(
    manifest: &Manifest,
    policy: &CompiledPolicy,
    root: &Path,
    threads: usize,
    control: &ScanControl,
) -> Result<CheckReport, CheckError> {
    let (exact, below) = scope(manifest, control.start.as_deref());
    let in_scope = |i: usize| exact == Some(i) || below.contains(&i);
    let mut seen = vec![false; manifest.entries.len()];
    let mut findings = Vec::new();
    // Paths below which nothing was checked, with the index of the finding
    // that explains why (so unchecked manifest entries are counted there).
    // `None` for a mount point, which only becomes a finding if the
    // manifest expected something below it.
    let mut blind: HashMap<Box<[u8]>, Option<usize>> = HashMap::new();
    // Added directories, so a later "cannot list" for the same path adds its
    // reason to that finding instead of reporting the path twice.
    let mut added_dirs: HashMap<Box<[u8]>, usize> = HashMap::new();
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
        &mut |ev| match ev {
            ScanEvent::Entry { entry, mount_point } => {
                if entry.kind == crate::manifest::FileKind::Dir && !mount_point {
                    dirs.push(entry.path.clone());
                }
                match manifest.find(&entry.path) {
                    Some(i) => {
                        seen[i] = true;
                        let expected = &manifest.entries[i];
                        findings.extend(compare_live(expected, &entry, mount_point));
                        if mount_point {
                            // Only unknown if the image had something below it.
                            blind.insert(entry.path, None);
                        }
                    }
                    None => match admits(&entry.path, Some(&seen_as(&entry))) {
                        Admission::Admitted => {}
                        refused => {
                            if entry.kind == crate::manifest::FileKind::Dir {
                                added_dirs.insert(entry.path.clone(), findings.len());
                            }
                            findings.push(added(&entry.path, Some(refused)));
                        }
                    },
                }
            }
            ScanEvent::Unreadable {
                path,
                cause,
                reason,
                subtree,
            } => {
                let found = manifest.find(&path);
                let allowed = found.is_none().then(|| admits(&path, None));
                let named = allowed.as_ref().is_some_and(Admission::names);
                let index = match found {
                    Some(i) => {
                        seen[i] = true;
                        findings.push(Finding::unreadable(&path, cause, reason));
                        findings.len() - 1
                    }
                    // It exists (its directory listed it) and the image
                    // lacked it: that alone is drift, unless an allowance
                    // names it (then it was not verified: unreadable below).
                    None if !named || added_dirs.contains_key(&path) => match added_dirs.get(&path)
                    {
                        Some(&i) => {
                            findings[i].reason = Some(reason);
                            findings[i].cause = Some(cause);
                            i
                        }
                        None => {
                            let mut f = added(&path, allowed);
                            f.reason = Some(reason);
                            f.cause = Some(cause);
                            findings.push(f);
                            findings.len() - 1
                        }
                    },
                    None => {
                        findings.push(Finding::unreadable(&path, cause, reason));
                        findings.len() - 1
                    }
                };
                if subtree {
                    blind.insert(path, Some(index));
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
            None => findings.push(Finding::simple(&entry.path, FindingKind::Removed)),
        }
    }
    let mut notes: Vec<Finding> = Vec::new();
    for (path, n) in unchecked {
        let note = format!(
            "{n} manifest entr{} below not checked",
            if n == 1 { "y" } else { "ies" }
        );
        match blind.get(path).copied().flatten() {
            Some(i) => {
                let f = &mut findings[i];
                f.reason = Some(match f.reason.take() {
                    Some(r) => format!("{r}; {note}"),
                    None => note,
                });
            }
            None => notes.push(Finding::unreadable(
                path,
                UnreadableKind::NotEntered,
                format!("mount point not entered (one_file_system); {note}"),
            )),
        }
    }
    findings.extend(notes);
    findings.sort_by(|a, b| a.path.cmp(&b.path).then(a.kind.cmp(&b.kind)));
    let verdict = Verdict::from_findings(&findings);
    let counts = Counts::of(&findings);
    Ok(CheckReport {
        findings,
        verdict,
        counts,
        stats,
        dirs,
    })
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
    blind: &'a HashMap<Box<[u8]>, Option<usize>>,
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
