//! Round trips: every kind, every field alone and together, odd paths,
//! targets, xattrs, times and headers go through the text and the
//! compressed bytes and come back equal; and the plain text has the
//! documented layout.

use super::*;
use crate::policy::{Allow, Rule};

#[test]
fn round_trip_every_kind_with_every_field_set() {
    let entries = ALL_KINDS
        .iter()
        .enumerate()
        .map(|(i, &k)| full_entry(format!("/full/{i}-{}", k.name()).as_bytes(), k))
        .collect();
    round_trip_entries(entries);
}

#[test]
fn round_trip_every_kind_with_no_field_set() {
    let entries = ALL_KINDS
        .iter()
        .enumerate()
        .map(|(i, &k)| Entry::new(format!("/bare/{i}").into_bytes(), k))
        .collect();
    let m = manifest(entries);
    let text = String::from_utf8(format::encode_text(&m)).unwrap();
    assert!(
        text.contains("/bare/0\tf\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\n"),
        "an entry with nothing recorded is all dashes:\n{text}"
    );
    assert_round_trip(&m);
}

#[test]
fn round_trip_each_optional_field_alone() {
    let full = full_entry(b"/x", FileKind::File);
    let mut entries = Vec::new();
    type Set = fn(&mut Entry, &Entry);
    let setters: [(&str, Set); 11] = [
        ("mode", |e, f| e.mode = f.mode),
        ("uid", |e, f| e.uid = f.uid),
        ("gid", |e, f| e.gid = f.gid),
        ("size", |e, f| e.size = f.size),
        ("hash", |e, f| e.hash = f.hash),
        ("target", |e, f| e.target = f.target.clone()),
        ("device", |e, f| e.device = f.device),
        ("xattrs", |e, f| e.xattrs = f.xattrs.clone()),
        ("mtime", |e, f| {
            e.times = Times {
                mtime: f.mtime(),
                ..Times::default()
            }
            .boxed()
        }),
        ("ctime", |e, f| {
            e.times = Times {
                ctime: f.ctime(),
                ..Times::default()
            }
            .boxed()
        }),
        ("atime+inode", |e, f| {
            e.times = Times {
                atime: f.atime(),
                inode: f.inode(),
                ..Times::default()
            }
            .boxed()
        }),
    ];
    for (i, (name, set)) in setters.iter().enumerate() {
        for (j, &kind) in ALL_KINDS.iter().enumerate() {
            let mut e = Entry::new(format!("/only-{name}/{i}-{j}").into_bytes(), kind);
            set(&mut e, &full);
            entries.push(e);
        }
    }
    round_trip_entries(entries);
}

#[test]
fn round_trip_symlink_targets() {
    let targets: [&[u8]; 10] = [
        b"-",
        b"",
        b"--",
        b"-x",
        b"\\x2d",
        b"/etc/a\nb",
        b"a\tb\rc\\d",
        b"\xff\xfe non-utf8",
        "caf\u{e9}/\u{1f600}".as_bytes(),
        b"\x01\x7f\x00",
    ];
    let entries = targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut e = Entry::new(format!("/link{i}").into_bytes(), FileKind::Symlink);
            e.target = Some((*t).into());
            e.size = Some(t.len() as u64);
            e
        })
        .collect();
    let m = manifest(entries);
    let text = String::from_utf8(format::encode_text(&m)).unwrap();
    assert!(
        text.contains("/link0\tl\t-\t-\t-\t1\t-\t\\x2d\t"),
        "a target that is literally `-` is written \\x2d:\n{text}"
    );
    assert!(
        text.contains("/link1\tl\t-\t-\t-\t0\t-\t\t"),
        "an empty target is an empty field:\n{text}"
    );
    assert_round_trip(&m);
    let back = Manifest::from_bytes(&format::encode_text(&m)).unwrap();
    assert_eq!(back.entries[0].target.as_deref(), Some(&b"-"[..]));
    assert_eq!(back.entries[1].target.as_deref(), Some(&b""[..]));
}

#[test]
fn round_trip_xattrs() {
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let cases: Vec<Option<Xattrs>> = vec![
        None,
        Some(Vec::new()),
        Some(xattrs(&[(b"user.plain", b"v")])),
        Some(xattrs(&[(b"-", b"")])),
        Some(xattrs(&[(b"-leading", b"\x00")])),
        Some(xattrs(&[(b"--", b"1"), (b"-=;", b"2"), (b"a-b", b"3")])),
        Some(xattrs(&[(b"user.a=b", b"=")])),
        Some(xattrs(&[(b"user.a;b", b";")])),
        Some(xattrs(&[(b"user.=;=;", b"x"), (b"user.==", b"y")])),
        Some(xattrs(&[(b"user.\t\n\r", b"\n"), (b"user.\\", b"\\")])),
        Some(xattrs(&[(b"user.\xff\xfe", &all_bytes)])),
        Some(xattrs(&[
            (b"security.capability", b"\x01\x00\x00\x02\x00\x20\x00\x00"),
            (
                b"security.selinux",
                b"unconfined_u:object_r:user_home_t:s0\0",
            ),
            (b"system.posix_acl_access", &all_bytes[..40]),
            (b"trusted.x", b""),
            (b"user.empty", b""),
        ])),
    ];
    let entries = cases
        .into_iter()
        .enumerate()
        .map(|(i, x)| {
            let mut e = Entry::new(format!("/x{i:02}").into_bytes(), FileKind::File);
            e.xattrs = x;
            e
        })
        .collect();
    let m = manifest(entries);
    let text = String::from_utf8(format::encode_text(&m)).unwrap();
    let xattr_field = |i: usize| {
        let prefix = format!("/x{i:02}\t");
        let line = text
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no line for {prefix}"));
        line.split('\t').nth(9).unwrap().to_string()
    };
    assert_eq!(xattr_field(0), "-", "unrecorded xattrs");
    assert_eq!(xattr_field(1), "", "recorded, none present");
    assert_eq!(xattr_field(3), "\\x2d=", "a name that is `-` is escaped");
    assert_eq!(xattr_field(6), "user.a\\x3db=3d");
    assert_eq!(xattr_field(7), "user.a\\x3bb=3b");
    assert_round_trip(&m);
}

#[test]
fn round_trip_times_and_extreme_numbers() {
    let mut entries = Vec::new();
    let times = [
        ts(0, 0),
        ts(0, 1),
        ts(-1, 0),
        ts(-1, 999_999_999),
        ts(i64::MIN, 0),
        ts(i64::MAX, 999_999_999),
        ts(1_700_000_000, 500_000_000),
    ];
    for (i, t) in times.iter().enumerate() {
        for (j, slot) in ["mtime", "ctime", "atime"].iter().enumerate() {
            let mut tm = Times::default();
            match *slot {
                "mtime" => tm.mtime = Some(*t),
                "ctime" => tm.ctime = Some(*t),
                _ => tm.atime = Some(*t),
            }
            let mut e = Entry::new(format!("/t{i}-{j}").into_bytes(), FileKind::File);
            e.times = tm.boxed();
            assert!(e.times.is_some());
            entries.push(e);
        }
    }
    for (i, inode) in [0u64, 1, u64::MAX].into_iter().enumerate() {
        let mut e = Entry::new(format!("/inode{i}").into_bytes(), FileKind::Dir);
        e.times = Times {
            inode: Some(inode),
            ..Times::default()
        }
        .boxed();
        entries.push(e);
    }
    let mut zeros = Entry::new(&b"/zeros"[..], FileKind::CharDevice);
    zeros.mode = Some(0);
    zeros.uid = Some(0);
    zeros.gid = Some(0);
    zeros.size = Some(0);
    zeros.hash = Some([0; 32]);
    zeros.device = Some((0, 0));
    let mut maxes = Entry::new(&b"/maxes"[..], FileKind::BlockDevice);
    maxes.mode = Some(0o7777);
    maxes.uid = Some(u32::MAX);
    maxes.gid = Some(u32::MAX);
    maxes.size = Some(u64::MAX);
    maxes.hash = Some([0xff; 32]);
    maxes.device = Some((u32::MAX, u32::MAX));
    entries.push(zeros);
    entries.push(maxes);
    round_trip_entries(entries);
}

#[test]
fn empty_times_are_not_boxed() {
    assert_eq!(Times::default().boxed(), None);
    let t = Times {
        inode: Some(0),
        ..Times::default()
    };
    assert_eq!(t.clone().boxed(), Some(Box::new(t)));
}

#[test]
fn round_trip_odd_paths() {
    let paths: [&[u8]; 16] = [
        b"/",
        b"/a\nb",
        b"/a\tb",
        b"/a\\b",
        b"/a\rb",
        b"/a\r\n",
        b"/a b",
        b"/\xff\xfe\xfd",
        b"/caf\xc3\xa9",
        b"/trunc\xe2\x82",
        b"/\x01\x1f\x7f",
        b"/-",
        b"/=;",
        b"/\\x41",
        b"/dir/...",
        "/\u{1f600}/\u{65e5}\u{672c}".as_bytes(),
    ];
    let entries: Vec<Entry> = paths
        .iter()
        .map(|p| full_entry(p, FileKind::File))
        .collect();
    let m = manifest(entries);
    // Sorted by raw bytes, not by their escaped form ("\t" < " " < "\\").
    let got: Vec<&[u8]> = m.entries.iter().map(|e| &*e.path).collect();
    let mut want = paths.to_vec();
    want.sort();
    assert_eq!(got, want);
    assert_round_trip(&m);
    for p in paths {
        assert!(
            m.find(p).is_some(),
            "find({:?})",
            String::from_utf8_lossy(p)
        );
    }
    assert_eq!(m.find(b"/nope"), None);
}

#[test]
fn round_trip_headers() {
    let policy = Policy {
        rules: vec![Rule {
            paths: vec!["/etc/**".into(), "/odd\n\t\\\"path".into()],
            attributes: vec!["all".into()],
        }],
        exclude: vec!["/proc".into(), "/\u{e9}t\u{e9}".into()],
        one_file_system: false,
        allow: Allow {
            content_may_differ: vec![],
            may_appear: vec!["/x".into()],
        },
        mounts: vec!["/data".into()],
    };
    for image_id in ["", "ami-0123", "a b\tc\nd\\e", "\u{1f600}", "-"] {
        let h = Header {
            image_id: image_id.into(),
            policy: policy.clone(),
            driftd_version: "9.9.9-rc.1 (x)".into(),
            ..header()
        };
        let m = Manifest::new(h, vec![Entry::new(&b"/"[..], FileKind::Dir)]);
        assert_round_trip(&m);
    }
}

#[test]
fn empty_manifest_round_trips() {
    assert_round_trip(&manifest(Vec::new()));
}

#[test]
fn uncompressed_text_parses_and_digest_covers_the_body() {
    let m = manifest(vec![full_entry(b"/a", FileKind::File)]);
    let text = format::encode_text(&m);
    let s = String::from_utf8(text.clone()).unwrap();
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(lines[0], "driftd-manifest 1");
    assert_eq!(lines[1], "driftd-version 0.1.0");
    assert_eq!(lines[2], "image-id test-image");
    assert!(lines[3].starts_with("policy {"), "{}", lines[3]);
    assert_eq!(lines[4], format!("columns {}", format::COLUMNS));
    assert_eq!(lines[5], "entries 1");
    assert_eq!(
        lines[7],
        format!(
            "digest blake3 {}",
            to_hex(blake3::hash(&body_of(&m)).as_bytes())
        )
    );
    assert_eq!(lines.len(), 8);
    assert_eq!(m.digest_string(), format!("blake3:{}", to_hex(&m.digest)));
    assert_eq!(Manifest::from_bytes(&text).unwrap(), m);
    let (body, digest, sig) = format::split_trailer(&text).unwrap();
    assert_eq!(body, body_of(&m).as_slice());
    assert_eq!(digest, m.digest);
    assert_eq!(sig, None);
    assert_eq!(format::decompress(&text).unwrap().as_ref(), text.as_slice());
}
