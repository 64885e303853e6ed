//! The standing adversarial suite: attacks on the scanner itself, run with
//! the real binary. Each class of attack appears in more than one form,
//! because a defence that stops one form by accident (a lucky ordering, a
//! limit that happens to be large enough) stops nothing:
//!
//! - descriptor exhaustion: trees shaped to make a scan hold many
//!   directories open at once (deep chains, wide fans of one-file
//!   directories) checked with a soft `RLIMIT_NOFILE` of 64, as if
//!   something else (an HTTP flood) had taken the rest;
//! - symlinks standing in for the object itself: a symlink's or special
//!   file's own xattrs must be read, never its target's;
//! - type swaps between bake and check: a regular file replaced by a FIFO,
//!   a symlink to a FIFO or to an endless device, a socket or a device
//!   node; reading any of them would hang or never end.
//!
//! Add new attacks here, each in at least two forms. Every driftd run is
//! killed after 60 s (which fails the test) and must not panic.

mod common;

use common::{exp, Dir};
use std::os::unix::process::CommandExt;

/// The soft descriptor limit the exhaustion cases run under: far below what
/// holding every directory of the hostile trees open would need, and above
/// the scan's stated budget (`driftd::scan::DIR_FDS` directories, one
/// transient handle, one file per hashing thread) plus stdio.
const NOFILE: u64 = 64;

/// `driftd check` of `d` with the soft `RLIMIT_NOFILE` lowered to
/// [`NOFILE`] (the hard limit is kept, as systemd's default soft limit of
/// 1024 leaves it).
fn check_with_few_descriptors(d: &Dir) -> common::Check {
    let mut cmd = d.check_command(&["--allow-unsigned"]);
    // SAFETY: getrlimit and setrlimit are single system calls, safe between
    // fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
            rustix::process::setrlimit(
                rustix::process::Resource::Nofile,
                rustix::process::Rlimit {
                    current: Some(NOFILE),
                    maximum: hard,
                },
            )?;
            Ok(())
        });
    }
    let c = common::Check::from_output(common::run(&mut cmd));
    assert!(
        !c.output.stderr.contains("Too many open files")
            && !c.json.to_string().contains("Too many open files"),
        "the scan ran out of descriptors\n{c}"
    );
    c
}

/// Under `CI` (which runs as root) a root-only case must not skip.
fn skip_unless_root(what: &str) -> bool {
    let skip = common::skip_unless_root(what);
    assert!(
        !(skip && std::env::var_os("CI").is_some()),
        "{what} needs root, and CI runs as root: failing instead of skipping"
    );
    skip
}

// ---------------------------------------------------------------- descriptor exhaustion

/// Below `top`, `depth` directories `d/d/...`, each with a file and a side
/// directory holding a 64 KiB file (so the hashing threads lag behind the
/// walker, and queued jobs keep many distinct parents open).
fn hostile_chain(d: &Dir, top: &str, depth: usize) -> String {
    let mut dir = top.to_string();
    for i in 0..depth {
        d.write(format!("{dir}/f"), format!("level {i}\n"));
        d.write(format!("{dir}/side/blob"), vec![(i % 251) as u8; 64 * 1024]);
        dir.push_str("/d");
    }
    d.write(format!("{dir}/bottom"), "the bottom\n");
    format!("{dir}/bottom")
}

#[test]
fn a_deep_chain_is_checked_correctly_with_64_descriptors() {
    let d = Dir::standard("deep-chain-nofile");
    let bottom = hostile_chain(&d, "/deep", 300);
    d.bake_and_assert_clean(&[]);
    let c = check_with_few_descriptors(&d);
    c.assert_clean();
    assert!(
        c.json["summary"]["entries_checked"].as_u64() > Some(1200),
        "the chain was not walked to the bottom\n{c}"
    );
    // Drift at the bottom and halfway are found, and nothing else.
    d.rewrite(&bottom, "THE BOTTOM\n");
    let mid = format!("/deep{}/side/blob", "/d".repeat(150));
    d.rewrite(&mid, vec![0xee; 64 * 1024]);
    check_with_few_descriptors(&d).assert_findings(
        1,
        &[
            exp(&bottom, "modified", &["content"]),
            exp(&mid, "modified", &["content"]),
        ],
    );
}

#[test]
fn a_wide_fan_of_one_file_directories_is_checked_with_64_descriptors() {
    let d = Dir::standard("wide-fan-nofile");
    // 3,000 directories each holding one file, in a two-level fan: every
    // queued job has a parent of its own.
    for i in 0..3000 {
        d.write(format!("/fan/g{}/dir{i}/file", i % 30), format!("{i}\n"));
    }
    d.bake_and_assert_clean(&[]);
    check_with_few_descriptors(&d).assert_clean();
    d.rewrite("/fan/g7/dir2407/file", "changed\n");
    d.remove("/fan/g0/dir0");
    check_with_few_descriptors(&d).assert_findings(
        1,
        &[
            exp("/fan/g0/dir0", "removed", &[]),
            exp("/fan/g0/dir0/file", "removed", &[]),
            exp("/fan/g7/dir2407/file", "modified", &["content", "size"]),
        ],
    );
}

// ---------------------------------------------------------------- a symlink's own xattrs

/// `trusted.*` xattrs can be set on a symlink and a FIFO (only by root);
/// a scan that read them through the link would see the target's.
#[test]
fn a_symlinks_own_xattrs_are_checked_not_its_targets() {
    if skip_unless_root("setting trusted.* xattrs on symlinks") {
        return;
    }
    let d = Dir::standard("symlink-own-xattrs");
    d.symlink("passwd", "/etc/passwd.link");
    d.symlink("/nonexistent/target", "/etc/dangling");
    d.fifo("/etc/pipe");
    d.set_xattr("/etc/passwd", "trusted.label", b"the file");
    d.set_xattr("/etc/passwd.link", "trusted.label", b"the link");
    d.set_xattr("/etc/dangling", "trusted.label", b"dangling");
    d.set_xattr("/etc/pipe", "trusted.label", b"pipe");
    d.bake_and_assert_clean(&[]);
    let m = d.manifest();
    let label = |p: &[u8]| m.entries[m.find(p).expect("in manifest")].xattrs.clone();
    assert_eq!(
        label(b"/etc/passwd.link"),
        Some(vec![(b"trusted.label"[..].into(), b"the link"[..].into())]),
        "the link's own xattrs were not the ones baked"
    );
    // The target's change is the target's finding only.
    d.set_xattr("/etc/passwd", "trusted.label", b"the file, relabelled");
    d.check()
        .assert_findings(1, &[exp("/etc/passwd", "metadata", &["xattrs"])]);
    d.set_xattr("/etc/passwd", "trusted.label", b"the file");
    d.check().assert_clean();
    // Each link's and the FIFO's own change is found, the dangling one too
    // (a read through it would fail, not see a change).
    d.set_xattr("/etc/passwd.link", "trusted.label", b"relinked");
    d.set_xattr("/etc/dangling", "trusted.label", b"moved");
    d.set_xattr("/etc/pipe", "trusted.extra", b"added");
    d.check().assert_findings(
        1,
        &[
            exp("/etc/dangling", "metadata", &["xattrs"]),
            exp("/etc/passwd.link", "metadata", &["xattrs"]),
            exp("/etc/pipe", "metadata", &["xattrs"]),
        ],
    );
}

// ---------------------------------------------------------------- type swaps between runs

/// Replace the file at `path` with something that must never be read, and
/// expect exactly a type change to `kind`.
fn swapped(name: &str, kind: &str, swap: impl FnOnce(&Dir, &str)) {
    let d = Dir::standard(name);
    d.bake_and_assert_clean(&[]);
    d.remove("/usr/lib/libx.so");
    swap(&d, "/usr/lib/libx.so");
    let c = d.check();
    c.assert_findings(1, &[exp("/usr/lib/libx.so", "type", &["type"])]);
    let (old, new) = c.change("/usr/lib/libx.so", "type");
    assert_eq!(
        (old.as_str(), new.as_str()),
        (Some("file"), Some(kind)),
        "{c}"
    );
}

#[test]
fn a_file_swapped_for_a_fifo_is_a_type_change_without_a_hang() {
    swapped("swap-fifo", "fifo", |d, p| d.fifo(p));
}

#[test]
fn a_file_swapped_for_a_symlink_to_a_fifo_is_a_type_change_without_a_hang() {
    swapped("swap-link-fifo", "symlink", |d, p| {
        let fifo = d.outside("pipe");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        d.symlink(common::s(&fifo), p);
    });
}

#[test]
fn a_file_swapped_for_a_symlink_to_an_endless_device_is_a_type_change() {
    // Following it would read /dev/zero until the timeout.
    swapped("swap-link-zero", "symlink", |d, p| {
        d.symlink("/dev/zero", p)
    });
}

#[test]
fn a_file_swapped_for_a_socket_is_a_type_change() {
    swapped("swap-socket", "socket", |d, p| d.socket(p));
}

#[test]
fn a_file_swapped_for_a_device_node_is_a_type_change_without_opening_it() {
    if skip_unless_root("mknod") {
        return;
    }
    // 1:5 is /dev/zero: opening and reading it would never end.
    swapped("swap-device", "char-device", |d, p| d.char_device(p, 1, 5));
}
