//! Golden fixtures for the manifest format.
//!
//! - `tree.manifest.txt`: a small, fully deterministic tree is built in a
//!   temp dir, baked with the real binary, decompressed, and compared byte
//!   for byte with the committed plain text. Any change to the format, the
//!   scanner or the default policy shows up here as a diff to review.
//!   Regenerate with `DRIFTD_BLESS=1 cargo test --test golden` (and review
//!   the diff before committing it). Needs root (to own the files as 0:0):
//!   skipped otherwise, and a failure under CI (`CI` set).
//! - `handwritten.manifest.txt`: a hand-checked manifest using every column
//!   and every escape, parsed and compared field by field.

mod common;

use driftd::manifest::escape::from_hex;
use driftd::manifest::{format, sign, Entry, FileKind, Manifest, Times, Timestamp, Xattrs};
use driftd::policy::{Allow, Policy, Rule};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden")
}

// ---------------------------------------------------------------------------
// The baked tree
// ---------------------------------------------------------------------------

/// What the tree holds, relative to the root. Every mode is set explicitly
/// (umask does not matter) and everything is owned by 0:0.
enum Node {
    Dir(u32),
    File(&'static [u8], u32),
    /// Generated content (too big to spell out), so reads span buffers.
    BigFile(usize, u32),
    Symlink(&'static [u8]),
    Fifo(u32),
    Socket(u32),
}

const TREE: &[(&[u8], Node)] = &[
    (b"bin", Node::Dir(0o755)),
    (b"bin/tool", Node::File(b"#!/bin/sh\necho golden\n", 0o755)),
    (b"bin/suid", Node::File(b"setuid\n", 0o4755)),
    (b"data", Node::Dir(0o750)),
    (b"data/big", Node::BigFile(300 * 1024 + 7, 0o644)),
    (b"data/empty", Node::File(b"", 0o644)),
    (b"data/fifo", Node::Fifo(0o640)),
    (b"data/sock", Node::Socket(0o755)),
    (
        b"data/new\nline",
        Node::File(b"newline in the name\n", 0o644),
    ),
    (b"data/non-utf8-\xff\xfe", Node::File(b"bytes\n", 0o600)),
    (b"data/tab\there", Node::File(b"tab\n", 0o644)),
    (b"etc", Node::Dir(0o755)),
    (b"etc/config", Node::File(b"key = value\n", 0o644)),
    (b"etc/secret", Node::File(b"s3cret\n", 0o600)),
    (b"etc/link", Node::Symlink(b"config")),
    (b"etc/abs-link", Node::Symlink(b"/etc/config")),
    (b"etc/dangling", Node::Symlink(b"../nowhere")),
    (b"etc/dash", Node::Symlink(b"-")),
    // Default policy: content may differ (no hash, no size), mode checked.
    (
        b"etc/machine-id",
        Node::File(b"0123456789abcdef0123456789abcdef\n", 0o444),
    ),
    (b"sticky", Node::Dir(0o1777)),
    (b"sticky/.hidden", Node::File(b"hidden\n", 0o400)),
    // Default policy: excluded, must not appear.
    (b"tmp", Node::Dir(0o1777)),
    (b"tmp/scratch", Node::File(b"scratch\n", 0o644)),
    (b"var", Node::Dir(0o755)),
    (b"var/log", Node::Dir(0o755)),
    (b"var/log/syslog", Node::File(b"log\n", 0o640)),
];

fn big_content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(31) % 251) as u8).collect()
}

fn path_in(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(OsStr::from_bytes(rel))
}

/// Build the tree under a fresh directory in CARGO_TARGET_TMPDIR (the same
/// filesystem as the build, so what the bake records is this machine's).
fn build_tree() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::Builder::new()
        .prefix("golden-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir");
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).expect("mkdir root");
    // Owner first: chown clears the setuid and setgid bits.
    let set_mode = |p: &Path, mode: u32| {
        std::os::unix::fs::lchown(p, Some(0), Some(0))
            .unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()))
    };
    for (rel, node) in TREE {
        let p = path_in(&root, rel);
        let mknod = |kind: rustix::fs::FileType| {
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &p,
                kind,
                rustix::fs::Mode::from_raw_mode(0o600),
                0,
            )
            .unwrap_or_else(|e| panic!("mknod {}: {e}", p.display()))
        };
        match node {
            Node::Dir(mode) => {
                std::fs::create_dir(&p).expect("mkdir");
                set_mode(&p, *mode);
            }
            Node::File(content, mode) => {
                std::fs::write(&p, content).expect("write");
                set_mode(&p, *mode);
            }
            Node::BigFile(len, mode) => {
                std::fs::write(&p, big_content(*len)).expect("write");
                set_mode(&p, *mode);
            }
            Node::Symlink(target) => {
                std::os::unix::fs::symlink(OsStr::from_bytes(target), &p).expect("symlink");
                // A symlink's own mode cannot be set (it is always 0777).
                std::os::unix::fs::lchown(&p, Some(0), Some(0)).expect("lchown");
            }
            Node::Fifo(mode) => {
                mknod(rustix::fs::FileType::Fifo);
                set_mode(&p, *mode);
            }
            Node::Socket(mode) => {
                mknod(rustix::fs::FileType::Socket);
                set_mode(&p, *mode);
            }
        }
    }
    set_mode(&root, 0o755);
    (tmp, root)
}

/// Run `driftd bake` and return the file it wrote.
fn bake(root: &Path, output: &Path, threads: Option<usize>) -> Vec<u8> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_driftd"));
    cmd.arg("bake")
        .arg("--root")
        .arg(root)
        .arg("--output")
        .arg(output)
        .args(["--image-id", "golden"]);
    if let Some(t) = threads {
        cmd.args(["--threads", &t.to_string()]);
    }
    let out = cmd.output().expect("run driftd");
    assert!(
        out.status.success(),
        "driftd bake failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(output).unwrap_or_else(|e| panic!("read {}: {e}", output.display()))
}

fn first_difference(want: &[u8], got: &[u8]) -> String {
    let w: Vec<&[u8]> = want.split(|&b| b == b'\n').collect();
    let g: Vec<&[u8]> = got.split(|&b| b == b'\n').collect();
    for i in 0..w.len().max(g.len()) {
        let (a, b) = (w.get(i), g.get(i));
        if a != b {
            let show = |l: Option<&&[u8]>| match l {
                Some(l) => l.escape_ascii().to_string(),
                None => "<end of file>".into(),
            };
            return format!(
                "first difference at line {}:\n  golden: {}\n  baked:  {}",
                i + 1,
                show(a),
                show(b)
            );
        }
    }
    "no line differs (trailing bytes?)".into()
}

#[test]
fn golden_tree_bakes_to_the_committed_manifest() {
    if common::skip_unless_root("owning the golden tree as 0:0") {
        return;
    }
    let (tmp, root) = build_tree();
    let baked = bake(&root, &tmp.path().join("tree.manifest"), None);
    // What `zstd -dc` prints: every frame inflated, skippable ones passed.
    let mut text = Vec::new();
    std::io::Read::read_to_end(
        &mut zstd::stream::read::Decoder::new(baked.as_slice()).expect("zstd"),
        &mut text,
    )
    .expect("the bake output decompresses");
    let golden_path = fixtures().join("tree.manifest.txt");
    if std::env::var_os("DRIFTD_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(fixtures()).expect("mkdir fixtures");
        std::fs::write(&golden_path, &text).expect("write golden file");
        eprintln!("blessed {}", golden_path.display());
    }
    let golden = std::fs::read(&golden_path).unwrap_or_else(|e| {
        panic!(
            "read {}: {e} (run with DRIFTD_BLESS=1 to create it)",
            golden_path.display()
        )
    });
    assert!(
        text == golden,
        "the baked manifest differs from {}\n{}\nIf the change is intended, regenerate it with \
         `DRIFTD_BLESS=1 cargo test --test golden` and review the diff.",
        golden_path.display(),
        first_difference(&golden, &text)
    );

    // Whatever the golden file says, these must hold: a wrong bless is caught.
    let m = Manifest::from_bytes(&baked).expect("the bake output parses");
    assert_eq!(m.header.image_id, "golden");
    assert_eq!(m.header.policy, Policy::default());
    assert_eq!(m.signature, None);
    let get = |p: &[u8]| -> &Entry {
        let i = m
            .find(p)
            .unwrap_or_else(|| panic!("no entry for {}", p.escape_ascii()));
        &m.entries[i]
    };
    let paths: Vec<&[u8]> = m.entries.iter().map(|e| &*e.path).collect();
    let mut want: Vec<Vec<u8>> = TREE
        .iter()
        .map(|(rel, _)| [b"/", *rel].concat())
        .filter(|p| !p.starts_with(b"/tmp") && !p.starts_with(b"/var/log"))
        .collect();
    want.push(b"/".to_vec());
    want.sort();
    assert_eq!(paths, want, "the baked paths (excluded ones left out)");
    for e in &m.entries {
        assert_eq!(
            (e.uid, e.gid),
            (Some(0), Some(0)),
            "{}",
            e.path.escape_ascii()
        );
        assert!(e.xattrs.is_some(), "xattrs are recorded by default");
        assert_eq!(e.times, None, "times are not recorded by default");
    }
    assert_eq!(get(b"/").kind, FileKind::Dir);
    assert_eq!(get(b"/").mode, Some(0o755));
    assert_eq!(get(b"/sticky").mode, Some(0o1777));
    let suid = get(b"/bin/suid");
    assert_eq!(suid.mode, Some(0o4755));
    assert_eq!(suid.hash, Some(*blake3::hash(b"setuid\n").as_bytes()));
    assert_eq!(suid.size, Some(7));
    let big = get(b"/data/big");
    let content = big_content(300 * 1024 + 7);
    assert_eq!(big.hash, Some(*blake3::hash(&content).as_bytes()));
    assert_eq!(big.size, Some(content.len() as u64));
    let empty = get(b"/data/empty");
    assert_eq!(
        (empty.size, empty.hash),
        (Some(0), Some(*blake3::hash(b"").as_bytes()))
    );
    assert_eq!(get(b"/data/fifo").kind, FileKind::Fifo);
    assert_eq!(get(b"/data/fifo").mode, Some(0o640));
    assert_eq!(get(b"/data/sock").kind, FileKind::Socket);
    assert_eq!(get(b"/data/new\nline").kind, FileKind::File);
    assert_eq!(get(b"/data/non-utf8-\xff\xfe").mode, Some(0o600));
    let link = get(b"/etc/link");
    assert_eq!(link.kind, FileKind::Symlink);
    assert_eq!(link.target.as_deref(), Some(&b"config"[..]));
    assert_eq!(link.size, Some(6));
    assert_eq!(get(b"/etc/dash").target.as_deref(), Some(&b"-"[..]));
    let machine_id = get(b"/etc/machine-id");
    assert_eq!(
        (machine_id.hash, machine_id.size, machine_id.mode),
        (None, None, Some(0o444)),
        "content_may_differ: no content, but the mode"
    );
    assert_eq!(get(b"/data").size, None, "no size for directories");
}

#[test]
fn bake_is_byte_identical_whatever_the_thread_count() {
    if common::skip_unless_root("owning the golden tree as 0:0") {
        return;
    }
    let (tmp, root) = build_tree();
    let one = bake(&root, &tmp.path().join("t1"), Some(1));
    let eight = bake(&root, &tmp.path().join("t8"), Some(8));
    let again = bake(&root, &tmp.path().join("t1-again"), Some(1));
    let default = bake(&root, &tmp.path().join("t-default"), None);
    let text = |b: &[u8]| format::decompress(b).unwrap().into_owned();
    assert!(
        one == eight,
        "--threads 1 and --threads 8 differ\n{}",
        first_difference(&text(&one), &text(&eight))
    );
    assert!(one == again, "two bakes with --threads 1 differ");
    assert!(one == default, "--threads 1 and the default differ");
}

// ---------------------------------------------------------------------------
// The hand-written manifest
// ---------------------------------------------------------------------------

fn hex32(s: &str) -> [u8; 32] {
    from_hex(s.as_bytes())
        .and_then(|v| v.try_into().ok())
        .unwrap_or_else(|| panic!("bad hex {s}"))
}

fn ts(sec: i64, nsec: u32) -> Option<Timestamp> {
    Some(Timestamp { sec, nsec })
}

fn xattrs(pairs: &[(&[u8], &[u8])]) -> Option<Xattrs> {
    Some(
        pairs
            .iter()
            .map(|(n, v)| ((*n).into(), (*v).into()))
            .collect(),
    )
}

/// The key the fixture is signed with (a fixed test key, not a secret).
fn fixture_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[7; 32])
}

fn handwritten_entries() -> Vec<Entry> {
    let empty_hash = hex32("af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262");
    let ping_hash = hex32("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
    vec![
        // `/	d	0755	0	0	-	-	-	-		-	-	-	-`: xattrs recorded, none.
        Entry {
            mode: Some(0o755),
            uid: Some(0),
            gid: Some(0),
            xattrs: Some(Vec::new()),
            ..Entry::new(&b"/"[..], FileKind::Dir)
        },
        // Every column set.
        Entry {
            path: b"/bin/ping".as_slice().into(),
            kind: FileKind::File,
            mode: Some(0o4755),
            uid: Some(0),
            gid: Some(4294967295),
            size: Some(18446744073709551615),
            hash: Some(ping_hash),
            target: None,
            device: None,
            xattrs: xattrs(&[
                (b"-odd", b""),
                (b"security.capability", b"\x01\x00\x00\x02\x00\x20\x00\x00"),
                (b"user.a=b;c", b"\xff\x00"),
            ]),
            times: Times {
                mtime: ts(1700000000, 123456789),
                ctime: ts(1700000001, 0),
                atime: ts(-1, 999999999),
                inode: Some(131),
            }
            .boxed(),
        },
        // Only the inode among the times.
        Entry {
            mode: Some(0o666),
            uid: Some(0),
            gid: Some(0),
            device: Some((1, 3)),
            times: Times {
                inode: Some(6),
                ..Times::default()
            }
            .boxed(),
            ..Entry::new(&b"/dev/null"[..], FileKind::CharDevice)
        },
        Entry {
            mode: Some(0o660),
            uid: Some(0),
            gid: Some(6),
            device: Some((8, 0)),
            ..Entry::new(&b"/dev/sda"[..], FileKind::BlockDevice)
        },
        // A name with a leading dash needs no escape in a path.
        Entry {
            mode: Some(0o644),
            size: Some(0),
            hash: Some(empty_hash),
            ..Entry::new(&b"/etc/-weird"[..], FileKind::File)
        },
        Entry {
            mode: Some(0o644),
            ..Entry::new(&b"/etc/back\\slash"[..], FileKind::File)
        },
        // A symlink whose target is literally `-`.
        Entry {
            mode: Some(0o777),
            size: Some(1),
            target: Some(b"-".as_slice().into()),
            ..Entry::new(&b"/etc/link"[..], FileKind::Symlink)
        },
        // An empty target and nothing else.
        Entry {
            target: Some(b"".as_slice().into()),
            ..Entry::new(&b"/etc/link2"[..], FileKind::Symlink)
        },
        Entry {
            target: Some(b"a\tb\nc\\d\xff".as_slice().into()),
            ..Entry::new(&b"/etc/link3"[..], FileKind::Symlink)
        },
        Entry::new(&b"/etc/tab\there"[..], FileKind::File),
        Entry::new(&b"/etc/x\ny\r"[..], FileKind::File),
        // UTF-8 (0xc3 ...) sorts before the invalid byte 0xff.
        Entry::new("/etc/\u{e9}t\u{e9}".as_bytes(), FileKind::File),
        Entry::new(&b"/etc/\xff\xfe"[..], FileKind::File),
        Entry {
            mode: Some(0o755),
            ..Entry::new(&b"/run/sock"[..], FileKind::Socket)
        },
        Entry {
            mode: Some(0o600),
            times: Times {
                mtime: ts(0, 0),
                ..Times::default()
            }
            .boxed(),
            ..Entry::new(&b"/var/fifo"[..], FileKind::Fifo)
        },
    ]
}

#[test]
fn handwritten_manifest_parses_field_by_field() {
    let path = fixtures().join("handwritten.manifest.txt");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let m = Manifest::from_bytes(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));

    assert_eq!(m.header.format_version, 1);
    assert_eq!(m.header.driftd_version, "0.1.0");
    assert_eq!(m.header.image_id, "hand written\tfixture");
    assert_eq!(
        m.header.policy,
        Policy {
            exclude: vec!["/proc".into(), "/tmp".into()],
            one_file_system: true,
            rules: vec![Rule {
                paths: vec!["/etc/**".into()],
                attributes: vec!["all".into()],
            }],
            allow: Allow {
                content_may_differ: vec!["/etc/machine-id".into()],
                may_appear: vec![],
            },
            // Not in the fixture: the default list.
            mounts: driftd::policy::DEFAULT_MOUNTS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    );
    let want = handwritten_entries();
    assert_eq!(m.entries.len(), want.len(), "entry count");
    for (got, want) in m.entries.iter().zip(&want) {
        assert_eq!(got, want, "entry {}", want.path.escape_ascii());
    }

    // The fixture is signed by the fixed test key.
    let key = fixture_key();
    assert_eq!(
        sign::verify(&m, &[key.verifying_key()]),
        Ok(sign::key_id(&key.verifying_key()))
    );

    // The fixture is in canonical form: building the same manifest from
    // the entries above and signing it gives exactly the file.
    let mut built = Manifest::new(m.header.clone(), want);
    sign::sign(&mut built, &key);
    let text = format::encode_text(&built);
    assert!(
        text == bytes,
        "the fixture is not what the encoder writes:\n{}",
        first_difference(&bytes, &text)
    );
    assert_eq!(built, m);
}

/// Manifests of format version 1 (what driftd baked before format 2) stay
/// readable: the golden tree's version 1 manifest, committed as it was
/// baked then, reads back with the same entries as today's bake (in
/// component order), keeps its own digest, and `driftd check` of the same
/// tree against it is clean, the version shown as 1.
#[test]
fn a_version_1_manifest_is_still_read_and_checks_the_same() {
    if common::skip_unless_root("owning the golden tree as 0:0") {
        return;
    }
    let v1_path = fixtures().join("tree.v1.manifest.txt");
    let v1_bytes = std::fs::read(&v1_path).expect("read the version 1 fixture");
    assert!(v1_bytes.starts_with(b"driftd-manifest 1\n"));
    let v1 = Manifest::from_bytes(&v1_bytes).expect("version 1 parses");
    assert_eq!(v1.header.format_version, 1);
    let (tmp, root) = build_tree();
    let baked = bake(&root, &tmp.path().join("tree.manifest"), None);
    let v2 = Manifest::from_bytes(&baked).expect("the bake output parses");
    assert_eq!(v2.header.format_version, 2);
    assert_eq!(v1.entries, v2.entries, "the same tree, the same entries");
    assert_ne!(v1.digest, v2.digest, "another text, another digest");
    // Compressed as version 1 was written (one zstd frame), too.
    let v1_file = tmp.path().join("v1.manifest");
    std::fs::write(&v1_file, zstd::bulk::compress(&v1_bytes, 9).unwrap()).unwrap();
    for file in [&v1_path, &v1_file] {
        let out = Command::new(env!("CARGO_BIN_EXE_driftd"))
            .args([
                "check",
                "--allow-unsigned",
                "--format",
                "json",
                "--manifest",
            ])
            .arg(file)
            .arg("--root")
            .arg(&root)
            .output()
            .expect("run driftd check");
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "check output: {e}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert_eq!(out.status.code(), Some(0), "{doc:#}");
        assert_eq!(doc["verdict"], "clean", "{doc:#}");
        assert_eq!(doc["manifest"]["format_version"], 1, "{doc:#}");
        assert_eq!(doc["manifest"]["digest"], v1.digest_string().as_str());
    }
}
