//! Hostile trees: FIFOs, symlink loops, links out of the root, huge sparse
//! files, very deep and very long paths, vanishing directories, many files
//! and files rewritten while they are read. Every driftd run is killed after
//! 60 s (which fails the test) and must not panic (see `common::run`).

mod common;

use common::{exp, Dir};
use driftd::manifest::escape::unescape;
use driftd::manifest::FileKind;
use rustix::fs::{Mode, OFlags};
use std::fs;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn kind_in_manifest(d: &Dir, path: &[u8]) -> FileKind {
    let m = d.manifest();
    let i = m
        .find(path)
        .unwrap_or_else(|| panic!("{} not in manifest", String::from_utf8_lossy(path)));
    m.entries[i].kind
}

// ---------------------------------------------------------------- FIFOs

#[test]
fn fifo_in_tree_does_not_hang_bake_or_check() {
    let d = Dir::standard("fifo-in-tree");
    d.fifo("/var/lib/app/pipe");
    // No writer ever opens the FIFO: opening it for reading would block
    // forever, which the 60 s timeout turns into a failure.
    d.bake_and_assert_clean(&[]);
    assert_eq!(kind_in_manifest(&d, b"/var/lib/app/pipe"), FileKind::Fifo);
}

#[test]
fn fifo_swapped_in_for_regular_file_is_type_change() {
    let d = Dir::standard("fifo-swap");
    d.bake_and_assert_clean(&[]);
    d.remove("/etc/passwd");
    d.fifo("/etc/passwd");
    let c = d.check();
    c.assert_findings(1, &[exp("/etc/passwd", "type", &["type"])]);
    let (old, new) = c.change("/etc/passwd", "type");
    assert_eq!(
        (old.as_str(), new.as_str()),
        (Some("file"), Some("fifo")),
        "{c}"
    );
}

// ---------------------------------------------------------------- symlinks

#[test]
fn symlink_loops_are_recorded_not_followed() {
    let d = Dir::standard("symlink-loops");
    d.symlink("b", "/loops/a");
    d.symlink("a", "/loops/b");
    d.symlink("..", "/loops/up");
    d.symlink(".", "/loops/self");
    d.symlink("../..", "/loops/dir/grandparent");
    d.symlink("/", "/loops/dir/root");
    d.bake_and_assert_clean(&[]);
    let m = d.manifest();
    let below: Vec<String> = m
        .entries
        .iter()
        .filter(|e| e.path.starts_with(b"/loops/"))
        .map(|e| String::from_utf8_lossy(&e.path).into_owned())
        .collect();
    assert_eq!(
        below,
        [
            "/loops/a",
            "/loops/b",
            "/loops/dir",
            "/loops/dir/grandparent",
            "/loops/dir/root",
            "/loops/self",
            "/loops/up",
        ],
        "a symlink was followed (or an entry is missing)"
    );
    for (path, target) in [
        (&b"/loops/a"[..], &b"b"[..]),
        (b"/loops/b", b"a"),
        (b"/loops/up", b".."),
        (b"/loops/self", b"."),
        (b"/loops/dir/grandparent", b"../.."),
        (b"/loops/dir/root", b"/"),
    ] {
        let e = &m.entries[m.find(path).expect("in manifest")];
        assert_eq!(e.kind, FileKind::Symlink, "{e:?}");
        assert_eq!(e.target.as_deref(), Some(target), "{e:?}");
        assert_eq!(e.hash, None, "a symlink's target was hashed: {e:?}");
    }
}

#[test]
fn symlink_to_secret_outside_root_is_not_followed() {
    let d = Dir::standard("symlink-outside");
    let secret = d.write_outside("secret.txt", "the secret v1\n");
    let secret_str = secret.to_str().expect("UTF-8 temp path").to_string();
    d.symlink(&secret_str, "/etc/creds");
    d.symlink("../secret.txt", "/escape");
    d.bake_and_assert_clean(&[]);
    let m = d.manifest();
    for (path, target) in [
        (&b"/etc/creds"[..], secret_str.as_bytes()),
        (b"/escape", b"../secret.txt"),
    ] {
        let e = &m.entries[m.find(path).expect("link in manifest")];
        assert_eq!(e.kind, FileKind::Symlink, "{e:?}");
        assert_eq!(e.target.as_deref(), Some(target), "{e:?}");
        assert_eq!(e.hash, None, "the secret was hashed through {e:?}");
        assert_eq!(
            e.size,
            Some(target.len() as u64),
            "size is not the link's: {e:?}"
        );
    }
    fs::write(&secret, "the secret v2, longer and different\n").unwrap();
    d.check().assert_clean();
}

#[test]
fn directory_replaced_by_symlink_to_another_directory_is_not_followed() {
    let d = Dir::standard("dir-to-symlink");
    d.bake_and_assert_clean(&[]);
    d.remove("/var/lib/app");
    // /usr holds bin/ and lib/, not data or sub: following the link would
    // give different findings (and "added" paths below /var/lib/app).
    d.symlink("/usr", "/var/lib/app");
    d.check().assert_findings(
        1,
        &[
            exp("/var/lib/app", "type", &["type"]),
            exp("/var/lib/app/data", "removed", &[]),
            exp("/var/lib/app/sub", "removed", &[]),
            exp("/var/lib/app/sub/more", "removed", &[]),
        ],
    );
}

// ---------------------------------------------------------------- big and deep

/// BLAKE3 of `len` zero bytes, streamed.
fn blake3_of_zeros(len: u64) -> [u8; 32] {
    let buf = vec![0u8; 1 << 20];
    let mut h = blake3::Hasher::new();
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        h.update(&buf[..n]);
        left -= n as u64;
    }
    *h.finalize().as_bytes()
}

#[test]
fn sparse_2gib_file_hashes_correctly() {
    const LEN: u64 = 2 << 30;
    let d = Dir::standard("sparse-2g");
    let path = d.path("/var/lib/disk.img");
    fs::File::create(&path).unwrap().set_len(LEN).unwrap();
    d.bake_and_assert_clean(&[]);
    let m = d.manifest();
    let e = &m.entries[m.find(b"/var/lib/disk.img").expect("in manifest")];
    assert_eq!(e.size, Some(LEN), "{e:?}");
    assert_eq!(
        e.hash,
        Some(blake3_of_zeros(LEN)),
        "hash of a 2 GiB sparse file is not BLAKE3 of 2 GiB of zeros"
    );
    // The check hashed it too (and found it equal).
    let c = d.check();
    assert!(
        c.json["summary"]["bytes_hashed"].as_u64() >= Some(LEN),
        "check did not hash the whole file\n{c}"
    );
}

/// A path of `depth` directories named `d` below `/deep`, as an image path.
fn deep_path(depth: usize) -> String {
    let mut p = String::from("/deep");
    for _ in 0..depth {
        p.push_str("/d");
    }
    p
}

#[test]
fn tree_of_depth_300_is_checked() {
    let d = Dir::standard("depth-300");
    let dir = deep_path(300);
    d.mkdir(&dir);
    let file = format!("{dir}/file");
    d.write(&file, "bottom\n");
    d.bake_and_assert_clean(&[]);
    assert!(
        d.manifest().find(file.as_bytes()).is_some(),
        "deepest file not in the manifest"
    );
    d.rewrite(&file, "BOTTOM\n");
    d.check()
        .assert_findings(1, &[exp(&file, "modified", &["content"])]);
}

/// Below `start`, a chain of `levels` directories each named `name`, with a
/// file `file` at the bottom. Built with `mkdirat`/`openat` so that the
/// total length may exceed PATH_MAX.
fn long_chain(start: &Path, name: &str, levels: usize) {
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut fd: OwnedFd = rustix::fs::open(start, dir_flags, Mode::empty()).unwrap();
    for i in 0..levels {
        rustix::fs::mkdirat(&fd, name, Mode::from_raw_mode(0o755))
            .unwrap_or_else(|e| panic!("mkdirat at level {i}: {e}"));
        fd = rustix::fs::openat(&fd, name, dir_flags, Mode::empty())
            .unwrap_or_else(|e| panic!("openat at level {i}: {e}"));
    }
    let f = rustix::fs::openat(
        &fd,
        "file",
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .unwrap();
    rustix::io::write(&f, b"at the bottom\n").unwrap();
}

const PATH_MAX: usize = 4096;

/// 200-byte directory names: 25 levels make 5,000 bytes.
fn long_name() -> String {
    "n".repeat(200)
}

#[test]
fn bake_of_path_longer_than_path_max_fails_cleanly() {
    let d = Dir::standard("path-max-bake");
    d.mkdir("/long");
    long_chain(&d.path("/long"), &long_name(), 25);
    let o = d.try_bake_to(&d.manifest, &[]);
    o.assert_code(2).assert_stderr_contains("too long");
    assert!(
        !d.manifest.exists(),
        "bake wrote a manifest with holes\n{o}"
    );
}

/// A path the image lacked and that cannot be read is *added* with the
/// reason (it exists: its directory listed it), never silently skipped.
#[test]
fn path_longer_than_path_max_is_reported_with_reason_not_clean() {
    let d = Dir::standard("path-max-check");
    d.mkdir("/long");
    d.bake_and_assert_clean(&[]);
    long_chain(&d.path("/long"), &long_name(), 25);
    let c = d.check();
    assert_eq!(c.verdict(), "drifted", "{c}");
    let root_len = d.root.as_os_str().len();
    let too_long: Vec<_> = c
        .findings_json()
        .iter()
        .filter(|f| {
            let p = unescape(f["path"].as_str().unwrap_or("").as_bytes()).unwrap_or_default();
            root_len + p.len() >= PATH_MAX
        })
        .collect();
    assert!(
        !too_long.is_empty()
            && too_long.iter().all(|f| {
                matches!(f["kind"].as_str(), Some("unreadable" | "added"))
                    && f["reason"].as_str().is_some_and(|r| r.contains("too long"))
            }),
        "the path beyond PATH_MAX is not reported as unreadable (with the reason)\n{c}"
    );
}

/// Regression: a directory whose full path first exceeds PATH_MAX at check
/// time (the host mounts the image deeper than the build did) could not be
/// read (its xattrs are read by full path: ENAMETOOLONG), and everything the
/// manifest holds below it was reported as *removed* (drift) instead of *not
/// checked* (unknown).
#[test]
fn path_max_exceeded_only_at_check_reports_children_unchecked_not_removed() {
    let d = Dir::standard("path-max-moved");
    let name = long_name();
    let root_len = d.root.as_os_str().len();
    // As deep as possible while every path stays below PATH_MAX at bake.
    let levels = (PATH_MAX - 64 - root_len) / (name.len() + 1);
    d.mkdir("/long");
    long_chain(&d.path("/long"), &name, levels);
    d.bake_and_assert_clean(&[]);
    // Move the root two long components deeper: the last levels are now
    // beyond PATH_MAX, although nothing in the image changed.
    let deeper = d.base.join(&name).join(&name);
    fs::create_dir_all(&deeper).unwrap();
    let moved_root = deeper.join("root");
    fs::rename(&d.root, &moved_root).unwrap();
    let c = common::check_json(&d.manifest, &moved_root, &["--allow-unsigned"]);
    // Nothing changed: the check may read everything (clean) or report what
    // it could not read (unknown), but nothing may be drift.
    assert!(
        c.findings_json().iter().all(|f| f["kind"] == "unreadable"),
        "paths that were never checked are reported as drift\n{c}"
    );
    assert_ne!(c.verdict(), "drifted", "{c}");
    if c.verdict() == "unknown" {
        assert!(
            c.findings_json().iter().any(|f| f["reason"]
                .as_str()
                .is_some_and(|r| r.contains("below not checked"))),
            "the unchecked manifest entries are not accounted for\n{c}"
        );
    }
    // Put it back so the temporary directory is removed normally.
    fs::rename(&moved_root, &d.root).unwrap();
}

// ---------------------------------------------------------------- mount points

/// A tmpfs mounted at a path, unmounted on drop (also when the test fails).
struct Mount(std::path::PathBuf);

impl Mount {
    /// `None` (after printing why) when mounting is impossible here; under
    /// CI that fails the test instead (see `common::skip`).
    fn tmpfs(at: &Path) -> Option<Mount> {
        if common::skip_unless_root("mounting a tmpfs") {
            return None;
        }
        let Some(mount) = [
            "/usr/bin/mount",
            "/bin/mount",
            "/usr/sbin/mount",
            "/sbin/mount",
        ]
        .into_iter()
        .find(|p| Path::new(p).exists()) else {
            common::skip("mount(8) (util-linux) is not installed");
            return None;
        };
        let o = common::run(
            std::process::Command::new(mount)
                .args(["-t", "tmpfs", "-o", "size=1m,mode=0755", "driftd-test"])
                .arg(at),
        );
        if o.code != 0 {
            common::skip(&format!(
                "cannot mount a tmpfs here (no CAP_SYS_ADMIN?)\n{o}"
            ));
            return None;
        }
        Some(Mount(at.to_path_buf()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// A filesystem mounted over a directory the image had files in: the
/// mount is drift (the policy does not expect one there), and what the
/// image had below it was not checked (not reported removed).
#[test]
fn mount_point_over_image_files_is_drift_and_what_is_below_unchecked() {
    let d = Dir::standard("mount-over-files");
    d.write("/data/a", "a\n");
    d.write("/data/b/c", "c\n");
    d.bake_and_assert_clean(&[]);
    let Some(_m) = Mount::tmpfs(&d.path("/data")) else {
        return;
    };
    let c = d.check();
    c.assert_findings(
        1,
        &[
            exp("/data", "metadata", &["mount"]),
            exp("/data", "unreadable", &[]),
        ],
    );
    let reason = c
        .findings_for("/data")
        .iter()
        .find(|f| f["kind"] == "unreadable")
        .and_then(|f| f["reason"].as_str())
        .unwrap_or("")
        .to_string();
    assert!(
        reason.contains("mount point") && reason.contains("3 manifest entries below not checked"),
        "{c}"
    );
}

/// A mount over a directory that was empty in the image used to be clean
/// (nothing below it was expected), hiding whatever it brings: now the
/// mount itself is drift.
#[test]
fn mount_point_over_empty_image_directory_is_drift() {
    let d = Dir::standard("mount-over-empty");
    d.mkdir("/data");
    d.bake_and_assert_clean(&[]);
    let Some(_m) = Mount::tmpfs(&d.path("/data")) else {
        return;
    };
    d.write("/data/runtime-file", "x\n");
    let c = d.check();
    c.assert_findings(1, &[exp("/data", "metadata", &["mount"])]);
    let (want, got) = c.change("/data", "mount");
    assert_eq!(want, "no mount", "{c}");
    assert!(got.as_str().unwrap_or("").contains("tmpfs"), "{c}");
}

// ---------------------------------------------------------------- vanishing and many

#[test]
fn directory_that_vanishes_between_bake_and_check_is_removed_with_contents() {
    let d = Dir::standard("vanishing-dir");
    d.write("/opt/vendor/bin/agent", "agent\n");
    d.write("/opt/vendor/etc/agent.conf", "conf\n");
    d.bake_and_assert_clean(&[]);
    d.remove("/opt/vendor");
    d.check().assert_findings(
        1,
        &[
            exp("/opt/vendor", "removed", &[]),
            exp("/opt/vendor/bin", "removed", &[]),
            exp("/opt/vendor/bin/agent", "removed", &[]),
            exp("/opt/vendor/etc", "removed", &[]),
            exp("/opt/vendor/etc/agent.conf", "removed", &[]),
        ],
    );
}

#[test]
fn five_thousand_files_in_one_directory() {
    let d = Dir::standard("many-files");
    d.mkdir("/many");
    for i in 0..5000 {
        fs::write(d.path(format!("/many/f{i:04}")), format!("file {i}\n")).unwrap();
    }
    d.bake_and_assert_clean(&[]);
    let entries = d.manifest().entries.len();
    assert!(entries > 5000, "only {entries} entries in the manifest");
    d.rewrite("/many/f2500", "FILE 2500\n");
    d.remove("/many/f0000");
    d.write("/many/f5000", "file 5000\n");
    let c = d.check();
    c.assert_findings(
        1,
        &[
            exp("/many/f0000", "removed", &[]),
            exp("/many/f2500", "modified", &["content"]),
            exp("/many/f5000", "added", &[]),
        ],
    );
    assert_eq!(
        c.json["summary"]["entries_checked"].as_u64(),
        Some(entries as u64),
        "{c}"
    );
}

// ---------------------------------------------------------------- concurrent writers

#[test]
fn file_rewritten_during_check_is_never_clean() {
    let d = Dir::standard("rewritten-during-check");
    d.write("/var/lib/app/data", vec![b'o'; 48 * 1024]);
    d.bake_and_assert_clean(&[]);
    let path = d.path("/var/lib/app/data");
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, writes) = (stop.clone(), writes.clone());
        std::thread::spawn(move || {
            let mut n: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                // Never the baked content: another byte, and sizes from
                // 16 KiB to 80 KiB.
                let len = 16 * 1024 + (n as usize * 4099) % (64 * 1024);
                let byte = b'a' + (n % 26) as u8;
                fs::write(&path, vec![byte; len]).expect("rewrite");
                n += 1;
                writes.store(n, Ordering::Relaxed);
            }
            n
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while writes.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "writer thread never wrote");
        std::thread::yield_now();
    }
    let c = d.check();
    stop.store(true, Ordering::Relaxed);
    let total = writer.join().expect("writer thread");
    assert!(total > 0);
    let fs = c.findings_for("/var/lib/app/data");
    assert_eq!(fs.len(), 1, "expected one finding for the file\n{c}");
    let f = fs[0];
    let ok = match f["kind"].as_str() {
        Some("modified") => f["attributes"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "content" || x == "size")),
        Some("unreadable") => f["reason"]
            .as_str()
            .is_some_and(|r| r.contains("changed while being read")),
        _ => false,
    };
    assert!(
        ok,
        "a file rewritten during the check was not reported as modified or changed-while-read\n{c}"
    );
    assert_eq!(
        c.findings_json().len(),
        1,
        "findings for paths that were not touched\n{c}"
    );
    assert_ne!(c.code(), 0, "{c}");
}
