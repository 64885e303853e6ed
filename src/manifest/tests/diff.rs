//! Comparison: which attributes differ between two entries and what kind
//! of finding that is, the diff of two manifests in path order, and the
//! verdict and counts over findings.

use super::*;
use crate::manifest::diff::{
    compare, diff_manifests, Change, Counts, Finding, FindingKind, UnreadableKind, Verdict,
};

fn file(path: &[u8]) -> Entry {
    Entry {
        mode: Some(0o644),
        uid: Some(0),
        gid: Some(0),
        size: Some(5),
        hash: Some([1; 32]),
        xattrs: Some(Vec::new()),
        ..Entry::new(path, FileKind::File)
    }
}

#[test]
fn compare_equal_entries_is_no_finding() {
    let e = full_entry(b"/a", FileKind::File);
    assert_eq!(compare(&e, &e.clone(), false), None);
    assert_eq!(compare(&e, &e.clone(), true), None);
}

#[test]
fn compare_type_change() {
    let expected = file(b"/a");
    let mut actual = file(b"/a");
    actual.kind = FileKind::Symlink;
    actual.mode = Some(0o777); // also differs, but the type is what counts
    for type_only in [false, true] {
        let f = compare(&expected, &actual, type_only).expect("a finding");
        assert_eq!(f.kind, FindingKind::Type);
        assert_eq!(&*f.path, b"/a");
        assert_eq!(f.attributes, ["type"]);
        assert_eq!(
            f.changes,
            [Change {
                attribute: "type",
                expected: Some("file".into()),
                actual: Some("symlink".into()),
            }]
        );
        assert_eq!(f.reason, None);
    }
}

#[test]
fn compare_type_only_ignores_everything_but_the_type() {
    let expected = file(b"/mnt");
    let actual = full_entry(b"/mnt", FileKind::File);
    assert!(compare(&expected, &actual, false).is_some());
    assert_eq!(compare(&expected, &actual, true), None);
}

#[test]
fn compare_content_attributes_are_modified() {
    type Change = fn(&mut Entry);
    let cases: [(&str, Change); 4] = [
        ("content", |e| e.hash = Some([2; 32])),
        ("size", |e| e.size = Some(6)),
        ("target", |e| e.target = Some(b"/x".as_slice().into())),
        ("device", |e| e.device = Some((1, 3))),
    ];
    for (attr, change) in cases {
        let expected = file(b"/a");
        let mut actual = expected.clone();
        change(&mut actual);
        let f = compare(&expected, &actual, false).expect(attr);
        assert_eq!(f.kind, FindingKind::Modified, "{attr}");
        assert_eq!(f.attributes, [attr]);
        assert_eq!(f.changes.len(), 1);
        assert_eq!(f.changes[0].attribute, attr);
    }
}

#[test]
fn compare_metadata_attributes_are_metadata() {
    type Change = fn(&mut Entry);
    let cases: [(&str, Change); 8] = [
        ("mode", |e| e.mode = Some(0o600)),
        ("uid", |e| e.uid = Some(1)),
        ("gid", |e| e.gid = Some(1)),
        ("xattrs", |e| e.xattrs = Some(xattrs(&[(b"user.a", b"1")]))),
        ("mtime", |e| {
            e.times = Times {
                mtime: Some(ts(1, 0)),
                ..Times::default()
            }
            .boxed()
        }),
        ("ctime", |e| {
            e.times = Times {
                ctime: Some(ts(1, 0)),
                ..Times::default()
            }
            .boxed()
        }),
        ("atime", |e| {
            e.times = Times {
                atime: Some(ts(1, 0)),
                ..Times::default()
            }
            .boxed()
        }),
        ("inode", |e| {
            e.times = Times {
                inode: Some(1),
                ..Times::default()
            }
            .boxed()
        }),
    ];
    for (attr, change) in cases {
        let expected = file(b"/a");
        let mut actual = expected.clone();
        change(&mut actual);
        let f = compare(&expected, &actual, false).expect(attr);
        assert_eq!(f.kind, FindingKind::Metadata, "{attr}");
        assert_eq!(f.attributes, [attr]);
    }
}

#[test]
fn compare_lists_every_changed_attribute_in_order() {
    let expected = file(b"/a");
    let mut actual = expected.clone();
    actual.mode = Some(0o4755);
    actual.hash = Some([2; 32]);
    actual.uid = Some(1000);
    actual.xattrs = Some(xattrs(&[(b"security.capability", b"\x01\x02")]));
    let f = compare(&expected, &actual, false).unwrap();
    assert_eq!(f.kind, FindingKind::Modified, "content wins over metadata");
    assert_eq!(f.attributes, ["content", "mode", "uid", "xattrs"]);
    let rendered: Vec<(&str, Option<&str>, Option<&str>)> = f
        .changes
        .iter()
        .map(|c| (c.attribute, c.expected.as_deref(), c.actual.as_deref()))
        .collect();
    let h1 = format!("blake3:{}", to_hex(&[1; 32]));
    let h2 = format!("blake3:{}", to_hex(&[2; 32]));
    assert_eq!(
        rendered,
        [
            ("content", Some(h1.as_str()), Some(h2.as_str())),
            ("mode", Some("0644"), Some("4755")),
            ("uid", Some("0"), Some("1000")),
            ("xattrs", Some("none"), Some("security.capability=0x0102")),
        ]
    );
}

#[test]
fn compare_recorded_on_one_side_only_is_a_change() {
    let expected = file(b"/a");
    let mut actual = expected.clone();
    actual.mode = None;
    actual.times = Times {
        mtime: Some(ts(5, 6)),
        ..Times::default()
    }
    .boxed();
    let f = compare(&expected, &actual, false).unwrap();
    assert_eq!(f.kind, FindingKind::Metadata);
    assert_eq!(f.attributes, ["mode", "mtime"]);
    assert_eq!(f.changes[0].expected.as_deref(), Some("0644"));
    assert_eq!(f.changes[0].actual, None);
    assert_eq!(f.changes[1].expected, None);
    assert_eq!(f.changes[1].actual.as_deref(), Some("5.000000006"));
}

#[test]
fn diff_manifests_reports_added_removed_and_changed_in_path_order() {
    let old = manifest(vec![
        Entry::new(&b"/"[..], FileKind::Dir),
        file(b"/a-removed"),
        file(b"/b-same"),
        file(b"/c-modified"),
        file(b"/d-metadata"),
        file(b"/e-type"),
        file(b"/z-removed-last"),
    ]);
    let mut modified = file(b"/c-modified");
    modified.hash = Some([9; 32]);
    let mut metadata = file(b"/d-metadata");
    metadata.gid = Some(4);
    let mut type_changed = file(b"/e-type");
    type_changed.kind = FileKind::Dir;
    let new = manifest(vec![
        Entry::new(&b"/"[..], FileKind::Dir),
        file(b"/0-added-first"),
        file(b"/b-same"),
        modified,
        metadata,
        type_changed,
        file(b"/f-added"),
    ]);
    let findings = diff_of(&old, &new);
    let got: Vec<(String, FindingKind, Vec<&str>)> = findings
        .iter()
        .map(|f| {
            (
                String::from_utf8_lossy(&f.path).into_owned(),
                f.kind,
                f.attributes.clone(),
            )
        })
        .collect();
    let want: Vec<(String, FindingKind, Vec<&str>)> = vec![
        ("/0-added-first".into(), FindingKind::Added, vec![]),
        ("/a-removed".into(), FindingKind::Removed, vec![]),
        ("/c-modified".into(), FindingKind::Modified, vec!["content"]),
        ("/d-metadata".into(), FindingKind::Metadata, vec!["gid"]),
        ("/e-type".into(), FindingKind::Type, vec!["type"]),
        ("/f-added".into(), FindingKind::Added, vec![]),
        ("/z-removed-last".into(), FindingKind::Removed, vec![]),
    ];
    assert_eq!(got, want);
    // And the other way round, added and removed swap.
    let back: Vec<FindingKind> = diff_of(&new, &old).iter().map(|f| f.kind).collect();
    assert_eq!(
        back,
        [
            FindingKind::Removed,
            FindingKind::Added,
            FindingKind::Modified,
            FindingKind::Metadata,
            FindingKind::Type,
            FindingKind::Removed,
            FindingKind::Added,
        ]
    );
    let counts = Counts::of(&findings);
    assert_eq!(
        counts,
        Counts {
            added: 2,
            removed: 2,
            modified: 1,
            metadata: 1,
            type_changed: 1,
            unreadable: 0,
        }
    );
    assert_eq!(Verdict::from_findings(&findings), Verdict::Drifted);
}

#[test]
fn diff_manifests_edge_cases() {
    let m = manifest(varied_entries());
    assert_eq!(diff_of(&m, &m), Vec::<Finding>::new());
    let empty = manifest(Vec::new());
    assert!(diff_of(&empty, &empty).is_empty());
    let added = diff_of(&empty, &m);
    assert_eq!(added.len(), m.entries.len());
    assert!(added.iter().all(|f| f.kind == FindingKind::Added));
    let removed = diff_of(&m, &empty);
    assert_eq!(removed.len(), m.entries.len());
    assert!(removed.iter().all(|f| f.kind == FindingKind::Removed));
    let paths: Vec<&[u8]> = removed.iter().map(|f| &*f.path).collect();
    let want: Vec<&[u8]> = m.entries.iter().map(|e| &*e.path).collect();
    assert_eq!(paths, want);
    // A policy change: an attribute recorded only in the new manifest.
    let mut with_mtime = m.clone();
    let bare = with_mtime.find(b"/k/0/bare").unwrap();
    with_mtime.entries[bare].times = Times {
        mtime: Some(ts(1, 0)),
        ..Times::default()
    }
    .boxed();
    let f = diff_of(&m, &with_mtime);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].attributes, ["mtime"]);
}

#[test]
fn verdict_precedence() {
    let f = |k| Finding::simple(b"/x", k);
    let unreadable =
        Finding::unreadable(b"/y", UnreadableKind::PermissionDenied, "permission denied");
    assert_eq!(unreadable.reason.as_deref(), Some("permission denied"));
    assert_eq!(unreadable.kind, FindingKind::Unreadable);

    assert_eq!(Verdict::from_findings(&[]), Verdict::Clean);
    assert_eq!(
        Verdict::from_findings(std::slice::from_ref(&unreadable)),
        Verdict::Unknown,
        "unknown beats clean"
    );
    assert_eq!(
        Verdict::from_findings(&[unreadable.clone(), unreadable.clone()]),
        Verdict::Unknown
    );
    for k in FindingKind::ALL {
        if k == FindingKind::Unreadable {
            continue;
        }
        assert_eq!(Verdict::from_findings(&[f(k)]), Verdict::Drifted, "{k:?}");
        assert_eq!(
            Verdict::from_findings(&[unreadable.clone(), f(k)]),
            Verdict::Drifted,
            "drifted beats unknown ({k:?} after unreadable)"
        );
        assert_eq!(
            Verdict::from_findings(&[f(k), unreadable.clone()]),
            Verdict::Drifted,
            "drifted beats unknown ({k:?} before unreadable)"
        );
    }
    assert_eq!(Verdict::Clean.exit_code(), 0);
    assert_eq!(Verdict::Drifted.exit_code(), 1);
    assert_eq!(Verdict::Unknown.exit_code(), 2);
    assert_eq!(
        [Verdict::Clean, Verdict::Drifted, Verdict::Unknown].map(Verdict::name),
        ["clean", "drifted", "unknown"]
    );
}

#[test]
fn counts_count_each_kind() {
    assert_eq!(Counts::of(&[]), Counts::default());
    let mut findings = Vec::new();
    for (n, k) in FindingKind::ALL.into_iter().enumerate() {
        for _ in 0..=n {
            findings.push(Finding::simple(b"/x", k));
        }
    }
    let c = Counts::of(&findings);
    for (n, k) in FindingKind::ALL.into_iter().enumerate() {
        assert_eq!(c.get(k), n as u64 + 1, "{}", k.name());
    }
    assert_eq!(
        c,
        Counts {
            added: 1,
            removed: 2,
            modified: 3,
            metadata: 4,
            type_changed: 5,
            unreadable: 6,
        }
    );
    let json = serde_json::to_value(c).unwrap();
    assert_eq!(json["type"], 5, "type_changed is serialised as `type`");
}

/// [`diff_manifests`] of two manifests in memory.
fn diff_of(old: &Manifest, new: &Manifest) -> Vec<Finding> {
    diff_manifests(
        &crate::manifest::Store::from_manifest(old.clone()),
        &crate::manifest::Store::from_manifest(new.clone()),
    )
    .expect("in memory")
}
