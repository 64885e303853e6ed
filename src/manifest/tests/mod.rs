//! Unit tests of the pure manifest module: the text format (round trips,
//! determinism, malformed input), signing, and the comparison of entries.
//!
//! Everything here is in memory (no filesystem, no clock), except one test
//! that re-runs this test binary with its address space capped.
//!
//! One file per subject: `round_trip` (every field and odd value through
//! the text and zstd), `determinism` (input order never changes the bytes),
//! `sign` (signatures and key files), `malformed_body` (the table of
//! corrupted header and entry lines), `malformed_file` (truncation, the
//! trailer, the container), `compression` (zstd frames, hostile ones
//! included), `budget` (what a hostile file may make a reader spend),
//! `diff` (comparing entries and manifests, verdicts), `bounded` (the
//! bounded list of findings against an unbounded one) and
//! `properties` (proptest, and a deterministic fuzz of single bytes). This
//! file holds what they share: entry builders, the base manifest the
//! corruptions start from, and the editors that corrupt it.

mod bounded;
mod budget;
mod compression;
mod determinism;
mod diff;
mod malformed_body;
mod malformed_file;
mod properties;
mod round_trip;
mod sign;

use super::entry::{Entry, FileKind, Times, Timestamp, Xattrs};
use super::escape::to_hex;
use super::format::{self, FormatError};
use super::{Header, Manifest, FORMAT_VERSION};
use crate::policy::Policy;
use ed25519_dalek::SigningKey;

// ---------------------------------------------------------------------------
// Entries and manifests
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

// ---------------------------------------------------------------------------
// The base manifest, and editors that corrupt its body
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

#[track_caller]
fn assert_refused(case: &str, got: Result<impl std::fmt::Debug, FormatError>, want: Expect) {
    match (got, want) {
        (Err(FormatError::Line { line, .. }), Expect::Line(n) | Expect::LineOrOther(n))
            if line == n => {}
        (Err(FormatError::Other(_)), Expect::Other | Expect::LineOrOther(_)) => {}
        (got, want) => panic!("{case}: expected {want:?}, got {got:?}"),
    }
}
