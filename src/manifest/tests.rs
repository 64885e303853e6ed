//! Unit tests of the pure manifest module: the text format (round trips,
//! determinism, malformed input), signing, and the comparison of entries.
//!
//! Everything here is in memory (no filesystem, no clock), except one test
//! that re-runs this test binary with its address space capped.

use super::diff::{
    compare, diff_manifests, Change, Counts, Finding, FindingKind, UnreadableKind, Verdict,
};
use super::entry::{Entry, FileKind, Times, Timestamp, Xattrs};
use super::escape::to_hex;
use super::format::{self, FormatError};
use super::sign::{self, SignError};
use super::{Header, Manifest, ManifestSignature, FORMAT_VERSION};
use crate::policy::{Allow, Policy, Rule};
use ed25519_dalek::{SigningKey, VerifyingKey};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const ALL_KINDS: [FileKind; 7] = [
    FileKind::File,
    FileKind::Dir,
    FileKind::Symlink,
    FileKind::Fifo,
    FileKind::Socket,
    FileKind::CharDevice,
    FileKind::BlockDevice,
];

fn header() -> Header {
    Header {
        format_version: FORMAT_VERSION,
        driftd_version: "0.1.0".into(),
        image_id: "test-image".into(),
        policy: Policy::default(),
    }
}

fn ts(sec: i64, nsec: u32) -> Timestamp {
    Timestamp { sec, nsec }
}

fn xattrs(pairs: &[(&[u8], &[u8])]) -> Xattrs {
    pairs
        .iter()
        .map(|(n, v)| (Box::<[u8]>::from(*n), Box::<[u8]>::from(*v)))
        .collect()
}

/// An entry with every optional field set (whether or not it makes sense
/// for the type: the format must carry whatever it is given).
fn full_entry(path: &[u8], kind: FileKind) -> Entry {
    Entry {
        path: path.into(),
        kind,
        mode: Some(0o4755),
        uid: Some(1000),
        gid: Some(u32::MAX),
        size: Some(u64::MAX),
        hash: Some(*blake3::hash(path).as_bytes()),
        target: Some(b"../target\twith\ttabs".as_slice().into()),
        device: Some((8, 1)),
        xattrs: Some(xattrs(&[
            (b"security.selinux", b"system_u:object_r:bin_t:s0\0"),
            (b"user.x", b""),
        ])),
        times: Times {
            mtime: Some(ts(1_700_000_000, 123_456_789)),
            ctime: Some(ts(-1, 999_999_999)),
            atime: Some(ts(0, 0)),
            inode: Some(u64::MAX),
        }
        .boxed(),
    }
}

fn manifest(entries: Vec<Entry>) -> Manifest {
    Manifest::new(header(), entries)
}

/// `m` through the compressed bytes and through the plain text; both must
/// give back exactly `m`.
#[track_caller]
fn assert_round_trip(m: &Manifest) {
    let bytes = m.to_bytes().expect("compress");
    assert!(
        bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]),
        "to_bytes must write zstd"
    );
    let back = Manifest::from_bytes(&bytes).unwrap_or_else(|e| {
        panic!(
            "compressed manifest does not parse: {e}\n{}",
            String::from_utf8_lossy(&format::encode_text(m))
        )
    });
    assert_eq!(&back, m, "compressed round trip changed the manifest");
    let text = format::encode_text(m);
    let back = Manifest::from_bytes(&text).unwrap_or_else(|e| {
        panic!(
            "plain text manifest does not parse: {e}\n{}",
            String::from_utf8_lossy(&text)
        )
    });
    assert_eq!(&back, m, "plain text round trip changed the manifest");
    let back = Manifest::from_vec(bytes).expect("from_vec");
    assert_eq!(&back, m, "from_vec round trip changed the manifest");
}

fn round_trip_entries(entries: Vec<Entry>) {
    assert_round_trip(&manifest(entries));
}

fn signing_key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// The text of a manifest with the digest line recomputed over `body`.
fn with_digest(body: &[u8]) -> Vec<u8> {
    let mut text = body.to_vec();
    text.extend_from_slice(
        format!("digest blake3 {}\n", to_hex(blake3::hash(body).as_bytes())).as_bytes(),
    );
    text
}

fn body_of(m: &Manifest) -> Vec<u8> {
    format::encode_body(&m.header, &m.entries)
}

// ---------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------

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
        b"/dir/",
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

// ---------------------------------------------------------------------------
// Determinism
// ---------------------------------------------------------------------------

/// A varied set of entries with distinct paths.
fn varied_entries() -> Vec<Entry> {
    let mut v = Vec::new();
    for (i, &k) in ALL_KINDS.iter().enumerate() {
        v.push(full_entry(format!("/k/{i}").as_bytes(), k));
        v.push(Entry::new(format!("/k/{i}/bare").into_bytes(), k));
    }
    for p in [
        &b"/"[..],
        b"/a\nb",
        b"/a\tb",
        b"/a b",
        b"/a\\b",
        b"/\xff",
        b"/\xc3\xa9",
    ] {
        v.push(full_entry(p, FileKind::File));
    }
    v
}

#[test]
fn entry_order_does_not_change_the_bytes() {
    let entries = varied_entries();
    let reference = manifest(entries.clone());
    let bytes = reference.to_bytes().unwrap();
    let text = format::encode_text(&reference);
    let mut orders = vec![entries.iter().rev().cloned().collect::<Vec<_>>()];
    for rot in [1, 5, 11] {
        let mut e = entries.clone();
        e.rotate_left(rot);
        orders.push(e);
    }
    // A few deterministic pseudo-random shuffles (xorshift Fisher-Yates).
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..8 {
        let mut e = entries.clone();
        for i in (1..e.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            e.swap(i, (seed % (i as u64 + 1)) as usize);
        }
        orders.push(e);
    }
    for (n, order) in orders.into_iter().enumerate() {
        let m = manifest(order);
        assert_eq!(m, reference, "order #{n}: different manifest");
        assert_eq!(
            String::from_utf8_lossy(&format::encode_text(&m)),
            String::from_utf8_lossy(&text),
            "order #{n}: different text"
        );
        assert!(
            m.to_bytes().unwrap() == bytes,
            "order #{n}: different bytes"
        );
    }
}

#[test]
fn new_drops_exact_duplicates() {
    let e = full_entry(b"/dup", FileKind::File);
    let m = manifest(vec![e.clone(), Entry::new(&b"/"[..], FileKind::Dir), e]);
    assert_eq!(m.entries.len(), 2);
    assert_round_trip(&m);
}

/// Two entries for one path that differ (no scan yields them, but a caller
/// could) must not make the output depend on the input order: whichever is
/// kept, it is the same one whatever order they came in.
#[test]
fn conflicting_duplicates_do_not_depend_on_input_order() {
    let mut a = full_entry(b"/dup", FileKind::File);
    a.mode = Some(0o644);
    let mut b = a.clone();
    b.mode = Some(0o600);
    let first = manifest(vec![a.clone(), b.clone()]);
    let second = manifest(vec![b, a]);
    assert_eq!(
        String::from_utf8_lossy(&format::encode_text(&first)),
        String::from_utf8_lossy(&format::encode_text(&second)),
        "Manifest::new keeps whichever of two conflicting /dup entries came first \
         (kept mode {:o} vs {:o}): the bytes depend on the input order",
        first.entries[0].mode.unwrap(),
        second.entries[0].mode.unwrap(),
    );
}

// ---------------------------------------------------------------------------
// Signing
// ---------------------------------------------------------------------------

fn signed(key: &SigningKey) -> Manifest {
    let mut m = manifest(varied_entries());
    sign::sign(&mut m, key);
    m
}

#[test]
fn good_signature_verifies_and_survives_the_file_round_trip() {
    let key = sign::generate().expect("OS random source");
    let other = signing_key(7);
    let m = signed(&key);
    let sig = m.signature.as_ref().expect("signed");
    assert_eq!(sig.key_id, sign::key_id(&key.verifying_key()));
    assert_eq!(sig.key_id.len(), 16);
    let trusted = [other.verifying_key(), key.verifying_key()];
    assert_eq!(sign::verify(&m, &trusted), Ok(sig.key_id.clone()));
    let back = Manifest::from_bytes(&m.to_bytes().unwrap()).unwrap();
    assert_eq!(back, m);
    assert_eq!(sign::verify(&back, &trusted), Ok(sig.key_id.clone()));
    let text = String::from_utf8(format::encode_text(&m)).unwrap();
    let last = text.lines().last().unwrap();
    assert_eq!(
        last,
        format!(
            "signature ed25519 {} {}",
            sig.key_id,
            to_hex(&sig.signature)
        )
    );
}

#[test]
fn signing_is_deterministic() {
    let key = signing_key(1);
    assert_eq!(
        format::encode_text(&signed(&key)),
        format::encode_text(&signed(&key))
    );
    assert_ne!(
        sign::key_id(&signing_key(1).verifying_key()),
        sign::key_id(&signing_key(2).verifying_key())
    );
}

#[test]
fn a_flipped_byte_in_the_body_is_a_digest_mismatch() {
    let key = signing_key(1);
    let trusted = [key.verifying_key()];
    let mut m = base_manifest();
    sign::sign(&mut m, &key);
    let text = format::encode_text(&m);
    let body_len = body_of(&m).len();
    for i in 0..body_len {
        let mut t = text.clone();
        t[i] ^= 0x01;
        match Manifest::from_bytes(&t) {
            Err(FormatError::Other(msg)) if msg.contains("digest mismatch") => {}
            // The body's final newline merges the last entry with the digest
            // line: the trailer itself is then malformed.
            Err(FormatError::Line { .. }) if i == body_len - 1 => {}
            other => panic!(
                "byte {i} ({:?}) flipped: expected a digest mismatch, got {other:?}",
                text[i] as char
            ),
        }
        // The rest is slow in a debug build (zstd, ed25519): a sample of
        // positions, the first byte of every line included.
        if i % 23 != 0 && text[i.saturating_sub(1)] != b'\n' {
            continue;
        }
        // Also through the compressed form.
        let z = format::compress(&t).unwrap();
        assert!(Manifest::from_bytes(&z).is_err(), "byte {i}, compressed");
        // An attacker without the key recomputes the digest: the signature
        // must then fail.
        let (body, _, sig) = match format::split_trailer(&t) {
            Ok(parts) => parts,
            Err(_) => continue,
        };
        let mut forged = with_digest(body);
        let sig = sig.expect("signature line untouched");
        forged.extend_from_slice(
            format!(
                "signature ed25519 {} {}\n",
                sig.key_id,
                to_hex(&sig.signature)
            )
            .as_bytes(),
        );
        if let Ok(m) = Manifest::from_bytes(&forged) {
            assert_eq!(
                sign::verify(&m, &trusted),
                Err(SignError::BadSignature(sig.key_id.clone())),
                "byte {i} flipped and digest recomputed: the signature still verified"
            );
        }
    }
}

#[test]
fn a_flipped_byte_anywhere_is_refused() {
    let key = signing_key(3);
    let trusted = [key.verifying_key()];
    let mut m = base_manifest();
    sign::sign(&mut m, &key);
    let text = format::encode_text(&m);
    for i in 0..text.len() {
        for mask in [0x01u8, 0x80] {
            let mut t = text.clone();
            t[i] ^= mask;
            if let Ok(m) = Manifest::from_bytes(&t) {
                assert!(
                    sign::verify(&m, &trusted).is_err(),
                    "byte {i} ^ {mask:#04x} ({:?}) was accepted",
                    text[i] as char
                );
            }
        }
    }
}

#[test]
fn signature_from_another_key_is_unknown_key() {
    let trusted_key = signing_key(1);
    let rogue = signing_key(2);
    let m = signed(&rogue);
    let rogue_id = sign::key_id(&rogue.verifying_key());
    let trusted_id = sign::key_id(&trusted_key.verifying_key());
    assert_eq!(
        sign::verify(&m, &[trusted_key.verifying_key()]),
        Err(SignError::UnknownKey(rogue_id.clone(), trusted_id))
    );
    assert_eq!(
        sign::verify(&m, &[]),
        Err(SignError::UnknownKey(rogue_id, String::new()))
    );
}

#[test]
fn forged_signature_with_the_right_key_id_is_bad_signature() {
    let key = signing_key(1);
    let id = sign::key_id(&key.verifying_key());
    let trusted = [key.verifying_key()];
    let mut m = manifest(varied_entries());
    // Random-looking bytes.
    for fill in [0x00u8, 0x55, 0xff] {
        m.signature = Some(ManifestSignature {
            key_id: id.clone(),
            signature: [fill; 64],
        });
        assert_eq!(
            sign::verify(&m, &trusted),
            Err(SignError::BadSignature(id.clone())),
            "fill {fill:#x}"
        );
    }
    // A real signature by another key, relabelled with the trusted id.
    let mut relabelled = signed(&signing_key(2));
    relabelled.signature.as_mut().unwrap().key_id = id.clone();
    assert_eq!(
        sign::verify(&relabelled, &trusted),
        Err(SignError::BadSignature(id.clone()))
    );
    // A real signature by the trusted key, over another manifest.
    let mut other = manifest(vec![Entry::new(&b"/"[..], FileKind::Dir)]);
    sign::sign(&mut other, &key);
    let mut replayed = manifest(varied_entries());
    replayed.signature = other.signature.clone();
    assert_eq!(
        sign::verify(&replayed, &trusted),
        Err(SignError::BadSignature(id.clone()))
    );
    // ... and through the file: the text still parses, the signature fails.
    let back = Manifest::from_bytes(&format::encode_text(&replayed)).unwrap();
    assert_eq!(
        sign::verify(&back, &trusted),
        Err(SignError::BadSignature(id))
    );
}

#[test]
fn unsigned_is_refused() {
    let m = manifest(varied_entries());
    assert_eq!(
        sign::verify(&m, &[signing_key(1).verifying_key()]),
        Err(SignError::Unsigned)
    );
    assert_eq!(sign::verify(&m, &[]), Err(SignError::Unsigned));
}

#[test]
fn stripping_the_signature_line_gives_an_unsigned_manifest() {
    let key = signing_key(4);
    let m = signed(&key);
    let text = format::encode_text(&m);
    let sig_start = text[..text.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    let stripped = Manifest::from_bytes(&text[..sig_start]).unwrap();
    assert_eq!(stripped.signature, None);
    assert_eq!(
        sign::verify(&stripped, &[key.verifying_key()]),
        Err(SignError::Unsigned)
    );
}

#[test]
fn key_files_round_trip() {
    let key = signing_key(9);
    let secret = sign::encode_secret(&key);
    let public = sign::encode_public(&key.verifying_key());
    assert!(secret.starts_with("driftd-ed25519-secret-key ") && secret.ends_with('\n'));
    assert!(public.starts_with("driftd-ed25519-public-key ") && public.ends_with('\n'));
    assert_eq!(
        sign::parse_secret(&secret).unwrap().to_bytes(),
        key.to_bytes()
    );
    assert_eq!(
        sign::parse_public(&public).unwrap(),
        key.verifying_key(),
        "public key"
    );
    // Surrounding whitespace (an editor's extra newline) is tolerated.
    assert!(sign::parse_public(&format!("\n  {public}\n\n")).is_ok());
    assert!(sign::parse_secret(secret.trim_end()).is_ok());
}

#[test]
fn key_file_errors() {
    let key = signing_key(9);
    let secret = sign::encode_secret(&key);
    let public = sign::encode_public(&key.verifying_key());
    let hex = to_hex(key.as_bytes());
    let bad_secret = SignError::BadKeyFile("secret", "driftd-ed25519-secret-key");
    let bad_public = SignError::BadKeyFile("public", "driftd-ed25519-public-key");
    let garbage = [
        String::new(),
        "\n".into(),
        "garbage".into(),
        hex.clone(),
        format!("driftd-ed25519-secret-key{hex}"),
        format!("driftd-ed25519-secret-key {}", &hex[..62]),
        format!("driftd-ed25519-secret-key {hex}00"),
        format!("driftd-ed25519-secret-key {}zz", &hex[..62]),
        format!("DRIFTD-ED25519-SECRET-KEY {hex}"),
        format!("driftd-ed25519-secret-key {hex} extra"),
        format!("driftd-ed25519-secret-key {hex}\ndriftd-ed25519-secret-key {hex}"),
        format!("ssh-ed25519 {hex}"),
        "\u{fffd}\0\u{1}".into(),
    ];
    for g in &garbage {
        assert_eq!(
            sign::parse_secret(g).err(),
            Some(bad_secret.clone()),
            "parse_secret({g:?})"
        );
        let as_public = g.replace("secret", "public").replace("SECRET", "PUBLIC");
        assert_eq!(
            sign::parse_public(&as_public).err(),
            Some(bad_public.clone()),
            "parse_public({as_public:?})"
        );
    }
    // A key pasted into the wrong flag is recognised.
    assert_eq!(sign::parse_secret(&public).err(), Some(bad_secret));
    assert_eq!(sign::parse_public(&secret).err(), Some(bad_public));
    // 32 bytes that are not a curve point.
    let not_a_point = (0..=255u8)
        .map(|b| {
            let mut bytes = [0u8; 32];
            bytes[0] = b;
            bytes
        })
        .find(|bytes| VerifyingKey::from_bytes(bytes).is_err())
        .expect("some y coordinate is not on the curve");
    assert_eq!(
        sign::parse_public(&format!(
            "driftd-ed25519-public-key {}",
            to_hex(&not_a_point)
        ))
        .err(),
        Some(SignError::BadPublicKey)
    );
}

// ---------------------------------------------------------------------------
// Malformed manifests
// ---------------------------------------------------------------------------

/// The base manifest the corruptions start from. Its body lines:
///
/// ```text
///  1 driftd-manifest 1
///  2 driftd-version 0.1.0
///  3 image-id base
///  4 policy {...}
///  5 columns ...
///  6 entries 4
///  7 /   (directory)
///  8 /a  (file, every column set)
///  9 /b  (symlink)
/// 10 /c  (char device)
/// ```
fn base_manifest() -> Manifest {
    let root = Entry {
        mode: Some(0o755),
        uid: Some(0),
        gid: Some(0),
        xattrs: Some(Vec::new()),
        ..Entry::new(&b"/"[..], FileKind::Dir)
    };
    let file = Entry {
        target: None,
        device: None,
        xattrs: Some(xattrs(&[(b"user.a", b"\x01"), (b"user.b", b"\x02")])),
        mode: Some(0o644),
        ..full_entry(b"/a", FileKind::File)
    };
    let link = Entry {
        mode: Some(0o777),
        size: Some(2),
        target: Some(b"/a".as_slice().into()),
        ..Entry::new(&b"/b"[..], FileKind::Symlink)
    };
    let dev = Entry {
        mode: Some(0o666),
        device: Some((1, 3)),
        ..Entry::new(&b"/c"[..], FileKind::CharDevice)
    };
    Manifest::new(
        Header {
            image_id: "base".into(),
            ..header()
        },
        vec![root, file, link, dev],
    )
}

fn base_lines() -> Vec<Vec<u8>> {
    let body = body_of(&base_manifest());
    let mut lines: Vec<Vec<u8>> = body.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    assert_eq!(lines.pop(), Some(Vec::new()), "body ends with a newline");
    assert_eq!(lines.len(), 10, "the base body has 10 lines");
    lines
}

fn join(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    out
}

/// The base body with field `field` (0-based) of line `line` (1-based)
/// replaced.
fn set_field(line: usize, field: usize, value: &[u8]) -> Vec<u8> {
    let mut lines = base_lines();
    set_field_in(&mut lines, line, field, value);
    join(&lines)
}

fn set_field_in(lines: &mut [Vec<u8>], line: usize, field: usize, value: &[u8]) {
    let mut fields: Vec<Vec<u8>> = lines[line - 1]
        .split(|&b| b == b'\t')
        .map(<[u8]>::to_vec)
        .collect();
    assert_eq!(fields.len(), 14, "line {line} is an entry line");
    fields[field] = value.to_vec();
    lines[line - 1] = fields.join(&b'\t');
}

fn field_of(lines: &[Vec<u8>], line: usize, field: usize) -> Vec<u8> {
    lines[line - 1]
        .split(|&b| b == b'\t')
        .nth(field)
        .unwrap_or_else(|| panic!("line {line} has no field {field}"))
        .to_vec()
}

fn set_line(line: usize, value: &[u8]) -> Vec<u8> {
    let mut lines = base_lines();
    lines[line - 1] = value.to_vec();
    join(&lines)
}

fn remove_line(line: usize) -> Vec<u8> {
    let mut lines = base_lines();
    lines.remove(line - 1);
    join(&lines)
}

/// What a corrupted input must give.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// `FormatError::Line` naming this line.
    Line(usize),
    /// `FormatError::Other`.
    Other,
    /// `FormatError::Other`, or `FormatError::Line` naming this line: both
    /// are reasonable (the input ends early or has a hole).
    LineOrOther(usize),
}

// Field numbers in an entry line.
const PATH: usize = 0;
const TYPE: usize = 1;
const MODE: usize = 2;
const UID: usize = 3;
const GID: usize = 4;
const SIZE: usize = 5;
const HASH: usize = 6;
const TARGET: usize = 7;
const DEVICE: usize = 8;
const XATTRS: usize = 9;
const MTIME: usize = 10;
const CTIME: usize = 11;
const ATIME: usize = 12;
const INODE: usize = 13;

const POLICY_UNKNOWN_FIELD: &[u8] = b"policy {\"exclude\":[],\"one_file_system\":true,\
    \"rules\":[],\"allow\":{\"content_may_differ\":[],\"may_appear\":[]},\"x\":1}";
const COLUMNS_SHORT: &[u8] =
    b"columns path type mode uid gid size hash target device xattrs mtime ctime atime";
const COLUMNS_REORDERED: &[u8] =
    b"columns type path mode uid gid size hash target device xattrs mtime ctime atime inode";

/// Body-level corruptions: each is checked with `parse_body` and, with the
/// digest recomputed, with `Manifest::from_bytes` (plain and compressed), so
/// the parser itself (not the digest check) refuses them.
fn body_corruptions() -> Vec<(&'static str, Vec<u8>, Expect)> {
    use Expect::{Line, LineOrOther, Other};
    let mut swapped = base_lines();
    swapped.swap(7, 8);
    let mut header_swapped = base_lines();
    header_swapped.swap(1, 2);
    let mut extra_line = base_lines();
    extra_line.push(b"/d\tf\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-".to_vec());
    let mut blank_between = base_lines();
    blank_between.insert(8, Vec::new());
    let mut trailing_blank = base_lines();
    trailing_blank.push(Vec::new());
    let policy_line = base_lines()[3].clone();
    let mut crlf = base_lines();
    crlf[0].push(b'\r');

    let v = vec![
        // Header.
        ("empty body", Vec::new(), Other),
        ("only a newline", b"\n".to_vec(), Other),
        ("missing driftd-manifest line", remove_line(1), Other),
        (
            "magic in the wrong case",
            set_line(1, b"Driftd-manifest 1"),
            Other,
        ),
        ("wrong version", set_line(1, b"driftd-manifest 2"), Line(1)),
        ("version 0", set_line(1, b"driftd-manifest 0"), Line(1)),
        (
            "version not a number",
            set_line(1, b"driftd-manifest one"),
            Line(1),
        ),
        (
            "version with two spaces",
            set_line(1, b"driftd-manifest  1"),
            Line(1),
        ),
        (
            "version too large",
            set_line(1, b"driftd-manifest 99999999999"),
            Line(1),
        ),
        ("CRLF line ending", join(&crlf), Line(1)),
        ("missing driftd-version line", remove_line(2), Line(2)),
        ("header lines out of order", join(&header_swapped), Line(2)),
        ("missing image-id line", remove_line(3), Line(3)),
        (
            "image-id bad escape",
            set_line(3, b"image-id a\\qb"),
            Line(3),
        ),
        (
            "image-id not UTF-8",
            set_line(3, b"image-id \\xff"),
            Line(3),
        ),
        (
            "image-id raw control byte",
            set_line(3, b"image-id a\x01b"),
            Line(3),
        ),
        (
            "image-id without its space",
            set_line(3, b"image-id"),
            Line(3),
        ),
        ("missing policy line", remove_line(4), Line(4)),
        ("policy not JSON", set_line(4, b"policy {not json"), Line(4)),
        (
            "policy unknown field",
            set_line(4, POLICY_UNKNOWN_FIELD),
            Line(4),
        ),
        (
            "policy missing field",
            set_line(4, b"policy {\"exclude\":[]}"),
            Line(4),
        ),
        (
            "policy truncated",
            set_line(4, &policy_line[..policy_line.len() - 1]),
            Line(4),
        ),
        ("missing columns line", remove_line(5), Line(5)),
        ("bad column line", set_line(5, COLUMNS_SHORT), Line(5)),
        ("columns reordered", set_line(5, COLUMNS_REORDERED), Line(5)),
        (
            "columns trailing space",
            set_line(5, format!("columns {} ", format::COLUMNS).as_bytes()),
            Line(5),
        ),
        ("missing entries line", remove_line(6), Line(6)),
        (
            "entry count not a number",
            set_line(6, b"entries four"),
            Line(6),
        ),
        ("entry count negative", set_line(6, b"entries -1"), Line(6)),
        ("entry count empty", set_line(6, b"entries "), Line(6)),
        ("entry count too high", set_line(6, b"entries 5"), Other),
        (
            "entry count huge",
            set_line(6, b"entries 18446744073709551615"),
            Other,
        ),
        ("entry count too low", set_line(6, b"entries 3"), Line(10)),
        ("entry count zero", set_line(6, b"entries 0"), Line(7)),
        ("header only", join(&base_lines()[..6]), Other),
        ("body cut after an entry", join(&base_lines()[..8]), Other),
        ("extra entry line", join(&extra_line), Line(11)),
        (
            "blank line between entries",
            join(&blank_between),
            LineOrOther(9),
        ),
        ("blank line after entries", join(&trailing_blank), Line(11)),
        // Entry lines.
        ("unsorted paths", join(&swapped), Line(9)),
        ("duplicate path", set_field(9, PATH, b"/a"), Line(9)),
        (
            "duplicate path via an escape",
            set_field(9, PATH, b"/\\x61"),
            Line(9),
        ),
        ("root not first", set_field(7, PATH, b"/z"), Line(8)),
        ("relative path", set_field(8, PATH, b"a"), Line(8)),
        ("empty path", set_field(8, PATH, b""), Line(8)),
        ("bad escape in path", set_field(8, PATH, b"/a\\q"), Line(8)),
        (
            "truncated escape in path",
            set_field(8, PATH, b"/a\\x4"),
            Line(8),
        ),
        (
            "bad hex escape in path",
            set_field(8, PATH, b"/a\\xzz"),
            Line(8),
        ),
        (
            "trailing backslash in path",
            set_field(8, PATH, b"/a\\"),
            Line(8),
        ),
        (
            "raw control byte in path",
            set_field(8, PATH, b"/a\x01"),
            Line(8),
        ),
        ("raw CR in path", set_field(8, PATH, b"/a\r"), Line(8)),
        ("raw DEL in path", set_field(8, PATH, b"/a\x7f"), Line(8)),
        ("NUL in path", set_field(8, PATH, b"/a\\x00"), Line(8)),
        ("raw NUL in path", set_field(8, PATH, b"/a\x00"), Line(8)),
        ("unknown type", set_field(8, TYPE, b"x"), Line(8)),
        ("type in upper case", set_field(8, TYPE, b"F"), Line(8)),
        ("type too long", set_field(8, TYPE, b"ff"), Line(8)),
        ("type empty", set_field(8, TYPE, b""), Line(8)),
        ("bad mode 0999", set_field(8, MODE, b"0999"), Line(8)),
        ("mode too long", set_field(8, MODE, b"10644"), Line(8)),
        ("mode empty", set_field(8, MODE, b""), Line(8)),
        ("mode hex", set_field(8, MODE, b"0x1f"), Line(8)),
        ("mode negative", set_field(8, MODE, b"-644"), Line(8)),
        ("uid negative", set_field(8, UID, b"-1"), Line(8)),
        ("uid too large", set_field(8, UID, b"4294967296"), Line(8)),
        ("uid with sign", set_field(8, UID, b"+1"), Line(8)),
        ("uid empty", set_field(8, UID, b""), Line(8)),
        ("gid not a number", set_field(8, GID, b"root"), Line(8)),
        ("gid with space", set_field(8, GID, b" 0"), Line(8)),
        ("size fractional", set_field(8, SIZE, b"1.5"), Line(8)),
        (
            "size too large",
            set_field(8, SIZE, b"18446744073709551616"),
            Line(8),
        ),
        ("bad hex in hash", set_field(8, HASH, &[b'g'; 64]), Line(8)),
        ("hash too short", set_field(8, HASH, &[b'a'; 63]), Line(8)),
        ("hash too long", set_field(8, HASH, &[b'a'; 66]), Line(8)),
        ("hash empty", set_field(8, HASH, b""), Line(8)),
        (
            "bad escape in target",
            set_field(9, TARGET, b"/a\\q"),
            Line(9),
        ),
        (
            "raw control byte in target",
            set_field(9, TARGET, b"/a\x02"),
            Line(9),
        ),
        ("bad device 1:x", set_field(10, DEVICE, b"1:x"), Line(10)),
        ("bad device x:1", set_field(10, DEVICE, b"x:1"), Line(10)),
        (
            "device without colon",
            set_field(10, DEVICE, b"13"),
            Line(10),
        ),
        (
            "device with three parts",
            set_field(10, DEVICE, b"1:3:0"),
            Line(10),
        ),
        ("device empty", set_field(10, DEVICE, b""), Line(10)),
        ("device negative", set_field(10, DEVICE, b"-1:3"), Line(10)),
        (
            "xattrs not sorted",
            set_field(8, XATTRS, b"user.b=02;user.a=01"),
            Line(8),
        ),
        (
            "xattrs duplicate name",
            set_field(8, XATTRS, b"user.a=01;user.a=02"),
            Line(8),
        ),
        ("xattr without =", set_field(8, XATTRS, b"user.a"), Line(8)),
        ("xattr empty name", set_field(8, XATTRS, b"=01"), Line(8)),
        ("xattr odd hex", set_field(8, XATTRS, b"user.a=0"), Line(8)),
        ("xattr bad hex", set_field(8, XATTRS, b"user.a=zz"), Line(8)),
        (
            "xattr bad escape in name",
            set_field(8, XATTRS, b"user.\\q=00"),
            Line(8),
        ),
        (
            "xattrs trailing separator",
            set_field(8, XATTRS, b"user.a=01;"),
            Line(8),
        ),
        (
            "xattrs leading separator",
            set_field(8, XATTRS, b";user.a=01"),
            Line(8),
        ),
        (
            "bad mtime: short nanoseconds",
            set_field(8, MTIME, b"1.5"),
            Line(8),
        ),
        (
            "bad mtime: no dot",
            set_field(8, MTIME, b"1700000000"),
            Line(8),
        ),
        (
            "bad mtime: letters",
            set_field(8, MTIME, b"x.000000000"),
            Line(8),
        ),
        (
            "bad mtime: no seconds",
            set_field(8, MTIME, b".000000000"),
            Line(8),
        ),
        (
            "bad ctime: 10 digit nanoseconds",
            set_field(8, CTIME, b"1.0000000000"),
            Line(8),
        ),
        (
            "bad ctime: signed nanoseconds",
            set_field(8, CTIME, b"1.+00000000"),
            Line(8),
        ),
        (
            "bad atime: two dots",
            set_field(8, ATIME, b"1.000000000.0"),
            Line(8),
        ),
        (
            "bad atime: seconds overflow",
            set_field(8, ATIME, b"9223372036854775808.000000000"),
            Line(8),
        ),
        ("bad inode", set_field(8, INODE, b"0x10"), Line(8)),
        ("inode negative", set_field(8, INODE, b"-5"), Line(8)),
        ("too many fields", set_field(8, INODE, b"1\t2"), Line(8)),
        (
            "too few fields",
            {
                let mut l = base_lines();
                let cut = l[7].iter().rposition(|&b| b == b'\t').unwrap();
                l[7].truncate(cut);
                join(&l)
            },
            Line(8),
        ),
        ("one field only", set_line(9, b"/b"), Line(9)),
        ("empty entry line after a space", set_line(9, b" "), Line(9)),
        (
            "spaces instead of tabs",
            {
                let mut l = base_lines();
                for b in l[9].iter_mut() {
                    if *b == b'\t' {
                        *b = b' ';
                    }
                }
                join(&l)
            },
            Line(10),
        ),
    ];
    v
}

#[track_caller]
fn assert_refused(case: &str, got: Result<impl std::fmt::Debug, FormatError>, want: Expect) {
    match (got, want) {
        (Err(FormatError::Line { line, .. }), Expect::Line(n) | Expect::LineOrOther(n))
            if line == n => {}
        (Err(FormatError::Other(_)), Expect::Other | Expect::LineOrOther(_)) => {}
        (got, want) => panic!("{case}: expected {want:?}, got {got:?}"),
    }
}

#[test]
fn malformed_bodies_are_refused_with_the_right_line() {
    let cases = body_corruptions();
    assert!(cases.len() >= 25, "only {} cases", cases.len());
    // The base itself is valid: the corruptions are what fails.
    let base = join(&base_lines());
    assert_eq!(
        format::parse_body(&base).unwrap(),
        (base_manifest().header, base_manifest().entries)
    );
    assert_eq!(
        Manifest::from_bytes(&with_digest(&base)).unwrap(),
        base_manifest()
    );
    for (name, body, want) in cases {
        assert_ne!(body, base, "{name}: the corruption changed nothing");
        assert_refused(name, format::parse_body(&body), want);
        let text = with_digest(&body);
        assert_refused(name, Manifest::from_bytes(&text), want);
        let z = format::compress(&text).unwrap();
        assert_refused(name, Manifest::from_bytes(&z), want);
    }
}

/// A body announcing fewer entries than it holds is wrong at the first line
/// past the count, whatever follows: a later malformed line must not be
/// reported instead (the parser documents "errors name the line, as a
/// sequential parse would").
#[test]
fn an_extra_line_is_reported_before_a_later_bad_line() {
    let mut l = base_lines();
    l[5] = b"entries 2".to_vec();
    set_field_in(&mut l, 10, MODE, b"0999");
    let body = join(&l);
    let want = Expect::Line(9);
    assert_refused(
        "count 2, bad mode on line 10",
        format::parse_body(&body),
        want,
    );
    let text = with_digest(&body);
    assert_refused(
        "count 2, bad mode on line 10",
        Manifest::from_bytes(&text),
        want,
    );
}

#[test]
fn truncated_bodies_are_refused() {
    let base = join(&base_lines());
    for cut in 0..base.len() {
        let body = &base[..cut];
        assert!(
            format::parse_body(body).is_err(),
            "body cut at {cut} of {} parsed",
            base.len()
        );
        // With a recomputed digest: a cut mid-line joins the digest line to
        // the last line, a cut at a line end leaves the entries short.
        assert!(
            Manifest::from_bytes(&with_digest(body)).is_err(),
            "text with body cut at {cut} parsed"
        );
    }
}

/// Entries whose body is well over 1 MiB (the size where a parser may
/// switch to parsing chunks in parallel).
fn big_manifest() -> Manifest {
    let entries = (0..9_500u64)
        .map(|i| Entry {
            mode: Some(0o644),
            uid: Some(0),
            gid: Some(0),
            size: Some(i),
            hash: Some(*blake3::hash(&i.to_le_bytes()).as_bytes()),
            xattrs: Some(Vec::new()),
            ..Entry::new(
                format!("/usr/share/big/{i:08}").into_bytes(),
                FileKind::File,
            )
        })
        .collect();
    manifest(entries)
}

#[test]
fn big_manifest_round_trips() {
    let m = big_manifest();
    let body = body_of(&m);
    assert!(body.len() > 1 << 20, "body is only {} bytes", body.len());
    let (h, e) = format::parse_body(&body).expect("big body parses");
    assert!(
        h == m.header && e == m.entries,
        "big body parsed differently"
    );
    let back = Manifest::from_bytes(&m.to_bytes().unwrap()).expect("big manifest parses");
    assert!(back == m, "big manifest changed through a round trip");
}

/// However a big body is parsed (line by line or in chunks), an error names
/// the *first* bad line, as in a small one. Checked around every place a
/// split into 2, 3 or 4 chunks at line boundaries could fall.
#[test]
fn big_manifest_errors_name_the_first_bad_line() {
    let m = big_manifest();
    let body = body_of(&m);
    let mut lines: Vec<Vec<u8>> = body.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    assert_eq!(lines.pop(), Some(Vec::new()));
    let n_lines = lines.len();
    // 1-based line number of the line holding byte `offset`.
    let line_at = |offset: usize| body[..offset].iter().filter(|&&b| b == b'\n').count() + 1;
    let header_len: usize = lines[..6].iter().map(|l| l.len() + 1).sum();
    let rest_len = body.len() - header_len;
    let mut candidates = std::collections::BTreeSet::new();
    for parts in 2..=4 {
        for k in 1..parts {
            let at = line_at(header_len + rest_len * k / parts);
            // A split at the first line boundary after that byte makes
            // `at + 1` the first line of a chunk; `at` covers a split before.
            for l in at..=at + 1 {
                if (8..n_lines - 2).contains(&l) {
                    candidates.insert(l);
                }
            }
        }
    }
    assert!(candidates.len() >= 4, "{candidates:?}");
    let check = |name: &str, l: usize, lines: &[Vec<u8>], want: Expect| {
        let case = format!("{name} at line {l} of {n_lines}");
        assert_refused(&case, format::parse_body(&join(lines)), want);
    };
    for &l in &candidates {
        // A bad field alone.
        let mut ls = lines.clone();
        set_field_in(&mut ls, l, MODE, b"0999");
        check("bad mode", l, &ls, Expect::Line(l));
        // A duplicate of the previous path, with a later bad line too: the
        // duplicate comes first.
        let mut ls = lines.clone();
        let prev = field_of(&ls, l - 1, PATH);
        set_field_in(&mut ls, l, PATH, &prev);
        set_field_in(&mut ls, l + 2, MODE, b"0999");
        check("duplicate path then a bad mode", l, &ls, Expect::Line(l));
        // Out of order with the previous line, and a later bad line.
        let mut ls = lines.clone();
        ls.swap(l - 2, l - 1);
        set_field_in(&mut ls, l + 2, HASH, b"zz");
        check("swapped lines then a bad hash", l, &ls, Expect::Line(l));
        // A blank line.
        let mut ls = lines.clone();
        ls[l - 1].clear();
        check("blank line", l, &ls, Expect::LineOrOther(l));
    }
}

#[test]
fn truncated_files_are_refused() {
    let unsigned = format::encode_text(&base_manifest());
    for cut in 0..unsigned.len() {
        assert!(
            Manifest::from_bytes(&unsigned[..cut]).is_err(),
            "unsigned text cut at {cut} of {} parsed",
            unsigned.len()
        );
    }
    let key = signing_key(5);
    let mut m = base_manifest();
    sign::sign(&mut m, &key);
    let signed_text = format::encode_text(&m);
    for cut in 0..signed_text.len() {
        match Manifest::from_bytes(&signed_text[..cut]) {
            Err(_) => {}
            // Only a cut exactly before the signature line parses, and it is
            // then unsigned, which verify refuses.
            Ok(m) => {
                assert_eq!(cut, unsigned.len(), "signed text cut at {cut} parsed");
                assert_eq!(
                    sign::verify(&m, &[key.verifying_key()]),
                    Err(SignError::Unsigned)
                );
            }
        }
    }
    let z = base_manifest().to_bytes().unwrap();
    for cut in 0..z.len() {
        assert!(
            Manifest::from_bytes(&z[..cut]).is_err(),
            "compressed file cut at {cut} of {} parsed",
            z.len()
        );
    }
}

#[test]
fn malformed_files_are_refused() {
    let base = base_manifest();
    let text = format::encode_text(&base);
    let body = body_of(&base);
    let n_lines = text.iter().filter(|&&b| b == b'\n').count();
    let digest_line = n_lines; // unsigned: the digest is the last line
    let mut signed_m = base.clone();
    sign::sign(&mut signed_m, &signing_key(6));
    let signed_text = format::encode_text(&signed_m);
    let sig_line = n_lines + 1;

    let cat = |parts: &[&[u8]]| parts.concat();
    let mut corrupt_z = base.to_bytes().unwrap();
    let mid = corrupt_z.len() / 2;
    corrupt_z[mid] ^= 0xff;
    let mut bad_checksum_z = format::compress(&text).unwrap();
    let last = bad_checksum_z.len() - 1;
    bad_checksum_z[last] ^= 0x01;

    let cases: Vec<(&str, Vec<u8>, Option<Expect>)> = vec![
        ("empty file", Vec::new(), Some(Expect::Other)),
        ("a single newline", b"\n".to_vec(), Some(Expect::Line(1))),
        (
            "no final newline",
            text[..text.len() - 1].to_vec(),
            Some(Expect::Other),
        ),
        ("body only, no digest", body.clone(), Some(Expect::Line(10))),
        (
            "garbage after trailer",
            cat(&[&text, b"garbage\n"]),
            Some(Expect::Line(n_lines + 1)),
        ),
        (
            "garbage after trailer, no newline",
            cat(&[&text, b"garbage"]),
            Some(Expect::Other),
        ),
        (
            "blank line after trailer",
            cat(&[&text, b"\n"]),
            Some(Expect::Line(n_lines + 1)),
        ),
        (
            "garbage after signature",
            cat(&[&signed_text, b"x\n"]),
            Some(Expect::Line(sig_line + 1)),
        ),
        (
            "two signature lines",
            cat(&[&signed_text, &signed_text[text.len()..]]),
            Some(Expect::Line(sig_line)),
        ),
        (
            "digest not hex",
            cat(&[&body, b"digest blake3 ", &[b'z'; 64], b"\n"]),
            Some(Expect::Line(digest_line)),
        ),
        (
            "digest too short",
            cat(&[&body, b"digest blake3 abcd\n"]),
            Some(Expect::Line(digest_line)),
        ),
        (
            "digest of another algorithm",
            cat(&[&body, b"digest sha256 ", &[b'0'; 64], b"\n"]),
            Some(Expect::Line(digest_line)),
        ),
        (
            "digest mismatch",
            cat(&[&body, b"digest blake3 ", &[b'0'; 64], b"\n"]),
            Some(Expect::Other),
        ),
        (
            "signature not hex",
            cat(&[&text, b"signature ed25519 00 zz\n"]),
            Some(Expect::Line(sig_line)),
        ),
        (
            "signature too short",
            cat(&[&text, b"signature ed25519 00 ", &[b'a'; 126], b"\n"]),
            Some(Expect::Line(sig_line)),
        ),
        (
            "signature key id not hex",
            cat(&[&text, b"signature ed25519 xyz ", &[b'a'; 128], b"\n"]),
            Some(Expect::Line(sig_line)),
        ),
        (
            "signature key id empty",
            cat(&[&text, b"signature ed25519  ", &[b'a'; 128], b"\n"]),
            Some(Expect::Line(sig_line)),
        ),
        (
            "signature wrong algorithm",
            cat(&[&text, b"signature rsa 00 ", &[b'a'; 128], b"\n"]),
            Some(Expect::Line(sig_line)),
        ),
        (
            "signature line only",
            cat(&[b"signature ed25519 00 ", &[b'a'; 128], b"\n"]),
            Some(Expect::Other),
        ),
        (
            "signature without digest",
            cat(&[&body, b"signature ed25519 00 ", &[b'a'; 128], b"\n"]),
            Some(Expect::Line(10)),
        ),
        ("not zstd and not text", (0..=255u8).rev().collect(), None),
        (
            "binary with final newline",
            cat(&[&[0u8, 1, 2, 0xff], b"\n"]),
            None,
        ),
        (
            "zstd magic only",
            vec![0x28, 0xb5, 0x2f, 0xfd],
            Some(Expect::Other),
        ),
        (
            "zstd magic then garbage",
            cat(&[&[0x28, 0xb5, 0x2f, 0xfd], &[0x55; 64]]),
            Some(Expect::Other),
        ),
        ("corrupt zstd", corrupt_z, None),
        ("zstd with a bad checksum byte", bad_checksum_z, None),
        (
            "zstd of garbage",
            format::compress(b"hello world\n").unwrap(),
            None,
        ),
        (
            "zstd of nothing",
            format::compress(b"").unwrap(),
            Some(Expect::Other),
        ),
        (
            "zstd of zstd",
            format::compress(&base.to_bytes().unwrap()).unwrap(),
            None,
        ),
        (
            "zstd then trailing bytes",
            cat(&[&base.to_bytes().unwrap(), b"junk"]),
            None,
        ),
        ("gzip", cat(&[&[0x1f, 0x8b, 0x08, 0x00], &text]), None),
    ];
    for (name, bytes, want) in cases {
        let got = Manifest::from_bytes(&bytes);
        match want {
            Some(want) => assert_refused(name, got, want),
            None => assert!(got.is_err(), "{name}: parsed: {got:?}"),
        }
    }
}

/// A zstd stream may hold several frames (RFC 8878: the content is their
/// concatenation); `zstd -dc` and `pzstd` read and write such files.
#[test]
fn concatenated_zstd_frames_are_read() {
    let m = base_manifest();
    let text = format::encode_text(&m);
    let (a, b) = text.split_at(text.len() / 2);
    let two_frames = [format::compress(a).unwrap(), format::compress(b).unwrap()].concat();
    assert_eq!(
        format::decompress(&two_frames).map(|t| String::from_utf8_lossy(&t).into_owned()),
        Ok(String::from_utf8_lossy(&text).into_owned()),
        "two concatenated zstd frames do not decompress to their concatenation"
    );
    assert_eq!(Manifest::from_bytes(&two_frames), Ok(m));
}

/// A frame header announcing more than MAX_DECOMPRESSED is refused before
/// anything is inflated.
#[test]
fn a_frame_announcing_a_huge_size_is_refused() {
    let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd];
    // Frame header descriptor: 8-byte content size, single segment.
    frame.push(0xe0);
    frame.extend_from_slice(&(format::MAX_DECOMPRESSED + 1).to_le_bytes());
    // One last, raw, empty block.
    frame.extend_from_slice(&[0x01, 0x00, 0x00]);
    assert!(matches!(
        Manifest::from_bytes(&frame),
        Err(FormatError::Other(_))
    ));
}

/// 15 bytes found by the fuzzer: a zstd frame header that claims 2 GiB of
/// content (exactly MAX_DECOMPRESSED) and holds nothing.
const HOSTILE_FRAME: [u8; 15] = [
    0x28, 0xb5, 0x2f, 0xfd, 0xe2, 0x25, 0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00,
];

/// A corrupt manifest must be an error, not an allocation of whatever its
/// header claims: a reader that sizes its buffer from the frame header
/// aborts the process (`memory allocation of 2147483648 bytes failed`)
/// wherever memory is limited. Run in a child process (this test binary,
/// running only the test below) with its address space capped at 1 GiB.
#[test]
fn a_tiny_frame_claiming_2_gib_is_refused_without_allocating_it() {
    use std::os::unix::process::CommandExt;
    const LIMIT: u64 = 1 << 30;
    let mut cmd = std::process::Command::new(std::env::current_exe().expect("test binary"));
    cmd.args([
        "--exact",
        "manifest::tests::hostile_frame_child",
        "--ignored",
        "--test-threads=1",
    ]);
    cmd.env("RUST_BACKTRACE", "0");
    // SAFETY: setrlimit is a single system call, safe between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let limit = rustix::process::Rlimit {
                current: Some(LIMIT),
                maximum: Some(LIMIT),
            };
            rustix::process::setrlimit(rustix::process::Resource::As, limit)?;
            Ok(())
        });
    }
    let out = cmd.output().expect("run the child test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "reading a 15-byte manifest with a 1 GiB address-space limit failed ({}):\n\
         {stdout}\n{stderr}",
        out.status
    );
}

#[test]
#[ignore = "run by a_tiny_frame_claiming_2_gib_is_refused_without_allocating_it, \
            under an address-space limit"]
fn hostile_frame_child() {
    assert!(Manifest::from_bytes(&HOSTILE_FRAME).is_err());
}

/// A small deterministic fuzz of the body parser: every byte of the base
/// body replaced by each of a few interesting bytes, the digest recomputed.
/// Nothing may panic, and whatever parses must re-encode to itself.
#[test]
fn single_byte_mutations_never_panic_and_round_trip() {
    let base = join(&base_lines());
    let mut parsed = 0;
    for i in 0..base.len() {
        for b in [
            b'\t', b'\n', b'\\', b'-', b'0', b'9', b':', b'=', b';', 0x00, 0xff,
        ] {
            if base[i] == b {
                continue;
            }
            let mut body = base.clone();
            body[i] = b;
            let direct = format::parse_body(&body);
            let via = Manifest::from_bytes(&with_digest(&body));
            assert_eq!(
                direct.is_ok(),
                via.is_ok(),
                "byte {i} -> {b:#04x}: parse_body and from_bytes disagree"
            );
            if let Ok(m) = via {
                parsed += 1;
                let again = manifest(m.entries.clone());
                assert_eq!(again.entries, m.entries, "byte {i} -> {b:#04x}");
                let re = Manifest::from_bytes(&format::encode_text(&Manifest::new(
                    m.header.clone(),
                    m.entries.clone(),
                )))
                .unwrap_or_else(|e| panic!("byte {i} -> {b:#04x}: re-encoded fails: {e}"));
                assert_eq!((re.header, re.entries), (m.header, m.entries));
            }
        }
    }
    assert!(parsed > 0, "no mutation parsed: the test exercises nothing");
}

/// Numbers are ASCII digits only. Rust's `str::parse`/`from_str_radix`
/// accept a leading `+`; a parser built on them would accept text the
/// encoder never writes (two bodies, two digests, one manifest) in the
/// mode, the device, a timestamp's seconds, the version or the count.
#[test]
fn numbers_with_a_plus_sign_are_refused() {
    use Expect::Line;
    let cases = [
        ("mode +755", set_field(8, MODE, b"+644"), Line(8)),
        ("device +1:+3", set_field(10, DEVICE, b"+1:+3"), Line(10)),
        (
            "mtime +1700000000",
            set_field(8, MTIME, b"+1700000000.123456789"),
            Line(8),
        ),
        (
            "format version +1",
            set_line(1, b"driftd-manifest +1"),
            Line(1),
        ),
        ("entry count +4", set_line(6, b"entries +4"), Line(6)),
    ];
    let accepted: Vec<&str> = cases
        .iter()
        .filter(|(_, body, _)| format::parse_body(body).is_ok())
        .map(|(name, _, _)| *name)
        .collect();
    assert!(
        accepted.is_empty(),
        "non-canonical numbers were accepted: {accepted:?}"
    );
    for (name, body, want) in cases {
        assert_refused(name, format::parse_body(&body), want);
    }
}

// ---------------------------------------------------------------------------
// Comparison
// ---------------------------------------------------------------------------

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
    let findings = diff_manifests(&old, &new);
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
    let back: Vec<FindingKind> = diff_manifests(&new, &old).iter().map(|f| f.kind).collect();
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
    assert_eq!(diff_manifests(&m, &m), Vec::<Finding>::new());
    let empty = manifest(Vec::new());
    assert!(diff_manifests(&empty, &empty).is_empty());
    let added = diff_manifests(&empty, &m);
    assert_eq!(added.len(), m.entries.len());
    assert!(added.iter().all(|f| f.kind == FindingKind::Added));
    let removed = diff_manifests(&m, &empty);
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
    let f = diff_manifests(&m, &with_mtime);
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

// ---------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------

mod props {
    use super::*;
    use proptest::collection::{btree_map, vec};
    use proptest::prelude::*;

    fn kind() -> impl Strategy<Value = FileKind> {
        proptest::sample::select(ALL_KINDS.to_vec())
    }

    /// Bytes biased towards the ones the codec treats specially.
    fn byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            3 => proptest::sample::select(
                b"/\\\t\n\r-=;:x. \x01\x7f\x80\xc3\xa9\xe2\xff".to_vec()
            ),
            1 => any::<u8>(),
        ]
    }

    fn timestamp() -> impl Strategy<Value = Timestamp> {
        (any::<i64>(), 0u32..1_000_000_000).prop_map(|(sec, nsec)| Timestamp { sec, nsec })
    }

    prop_compose! {
        fn entry_body()(
            kind in kind(),
            mode in proptest::option::of(0u32..=0o7777),
            uid in proptest::option::of(any::<u32>()),
            gid in proptest::option::of(any::<u32>()),
            size in proptest::option::of(any::<u64>()),
            hash in proptest::option::of(any::<[u8; 32]>()),
            target in proptest::option::of(vec(byte(), 0..12)),
            device in proptest::option::of(any::<(u32, u32)>()),
            xattrs in proptest::option::of(
                btree_map(vec(byte(), 1..8), vec(any::<u8>(), 0..8), 0..4)
            ),
            mtime in proptest::option::of(timestamp()),
            ctime in proptest::option::of(timestamp()),
            atime in proptest::option::of(timestamp()),
            inode in proptest::option::of(any::<u64>()),
        ) -> Entry {
            Entry {
                path: Box::from(&b"/"[..]),
                kind,
                mode,
                uid,
                gid,
                size,
                hash,
                target: target.map(Vec::into_boxed_slice),
                device,
                xattrs: xattrs.map(|x| {
                    x.into_iter()
                        .map(|(n, v)| (n.into_boxed_slice(), v.into_boxed_slice()))
                        .collect()
                }),
                times: Times { mtime, ctime, atime, inode }.boxed(),
            }
        }
    }

    /// Entries with distinct paths (no NUL: the format refuses it).
    fn entries() -> impl Strategy<Value = Vec<Entry>> {
        btree_map(
            vec(byte().prop_filter("no NUL", |b| *b != 0), 0..10),
            entry_body(),
            0..12,
        )
        .prop_map(|m| {
            m.into_iter()
                .map(|(p, mut e)| {
                    e.path = [&b"/"[..], &p].concat().into_boxed_slice();
                    e
                })
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn any_entries_round_trip(entries in entries(), image_id in ".{0,8}") {
            let m = Manifest::new(Header { image_id, ..header() }, entries);
            let text = format::encode_text(&m);
            let back = Manifest::from_bytes(&text);
            prop_assert_eq!(back.as_ref(), Ok(&m), "{}", String::from_utf8_lossy(&text));
            let back = Manifest::from_bytes(&m.to_bytes().unwrap());
            prop_assert_eq!(back.as_ref(), Ok(&m));
        }

        #[test]
        fn any_order_gives_the_same_bytes(
            entries in entries().prop_flat_map(|e| (Just(e.clone()), Just(e).prop_shuffle()))
        ) {
            let (a, b) = entries;
            prop_assert_eq!(
                format::encode_text(&manifest(a)),
                format::encode_text(&manifest(b))
            );
        }

        #[test]
        fn parse_body_never_panics(data in vec(any::<u8>(), 0..512)) {
            let _ = format::parse_body(&data);
            let _ = Manifest::from_bytes(&data);
        }
    }
}
