//! Attacks on `allow.may_appear`, run with the real binary and the shipped
//! default policy: what an intruder can plant at the names a host may
//! legitimately grow on first boot (`/etc/ssh/ssh_host_*`,
//! `/etc/machine-id`). Each must be drift (`added`, naming what the
//! allowance refused, with the allowed and the actual value), while the
//! real host keys beside them stay clean:
//!
//! - a privileged program: a setuid copy of `sh`, a setgid file, a
//!   world-writable key;
//! - another type: a symlink to `/etc/shadow`, a FIFO, a directory (and
//!   what is below it), `/etc/machine-id` as a symlink;
//! - another owner: a key owned by uid 1000;
//! - what cannot be read (checked as `nobody`): never clean, and below an
//!   allowed name still drift.
//!
//! Ownership matters to every case, so each needs root (CI runs as root;
//! [`common::skip_unless_root`] fails there instead of skipping).

mod common;

use common::{exp, prepare_for_nobody, skip_unless_root, Check, Dir};

const SSH: &str = "/etc/ssh/ssh_host_";

fn key(name: &str) -> String {
    format!("{SSH}{name}")
}

/// The standard tree without `/etc/machine-id` (the image ships none: it
/// appears on first boot) and with RHEL's `ssh_keys` group in the image's
/// `/etc/group`, baked with the default policy and checked clean; then
/// the real host keys of Debian and RHEL appear, which must stay clean.
fn host(name: &str) -> Dir {
    let d = Dir::standard(name);
    d.remove("/etc/machine-id");
    d.write("/etc/group", "root:x:0:\nssh_keys:x:4242:\n");
    d.bake_and_assert_clean(&[]);
    for (k, mode, gid) in [
        ("ed25519_key", 0o600, 0),
        ("ed25519_key.pub", 0o644, 0),
        ("ecdsa_key", 0o640, 4242),
        ("ecdsa_key.pub", 0o644, 0),
    ] {
        d.write(key(k), "key material\n");
        d.chmod(key(k), mode);
        d.chown(key(k), Some(0), Some(gid));
    }
    d.check().assert_clean();
    d
}

/// The (allowed, actual) of one refused attribute, as strings.
fn refused(c: &Check, path: &str, attribute: &str) -> (String, String) {
    let (a, b) = c.change(path, attribute);
    let text = |v: serde_json::Value| v.as_str().unwrap_or_default().to_string();
    (text(a), text(b))
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_string(), b.to_string())
}

#[test]
fn every_form_planted_at_an_allowed_name_is_drift_beside_clean_host_keys() {
    if skip_unless_root("files owned by root and by uid 1000") {
        return;
    }
    let d = host("every-form");
    let sh = ["/bin/sh", "/usr/bin/sh"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("a shell to copy");
    std::fs::copy(sh, d.path(key("evil_key"))).unwrap();
    d.chmod(key("evil_key"), 0o4755);
    d.write(key("sgid_key"), "key\n");
    d.chmod(key("sgid_key"), 0o2644);
    d.symlink("/etc/shadow", key("x_key"));
    d.fifo(key("fifo_key"));
    d.mkdir(key("dir_key"));
    d.write(
        format!("{}/authorized_keys", key("dir_key")),
        "ssh-ed25519 AAAA intruder\n",
    );
    d.write(key("rw_key"), "key\n");
    d.chmod(key("rw_key"), 0o666);
    d.write(key("user_key"), "key\n");
    d.chmod(key("user_key"), 0o600);
    d.chown(key("user_key"), Some(1000), Some(0));
    d.symlink("/run/machine-id", "/etc/machine-id");

    let c = d.check();
    let below = format!("{}/authorized_keys", key("dir_key"));
    c.assert_findings(
        1,
        &[
            exp(&key("evil_key"), "added", &["mode"]),
            exp(&key("sgid_key"), "added", &["mode"]),
            exp(&key("x_key"), "added", &["type"]),
            exp(&key("fifo_key"), "added", &["type"]),
            exp(&key("dir_key"), "added", &["type", "mode"]),
            exp(&below, "added", &["below"]),
            exp(&key("rw_key"), "added", &["mode"]),
            exp(&key("user_key"), "added", &["uid"]),
            exp("/etc/machine-id", "added", &["type"]),
        ],
    );
    let within = |m| pair("within 0644", m);
    assert_eq!(refused(&c, &key("evil_key"), "mode"), within("4755"), "{c}");
    assert_eq!(refused(&c, &key("sgid_key"), "mode"), within("2644"), "{c}");
    assert_eq!(refused(&c, &key("rw_key"), "mode"), within("0666"), "{c}");
    assert_eq!(
        refused(&c, &key("x_key"), "type"),
        pair("file", "symlink"),
        "{c}"
    );
    assert_eq!(
        refused(&c, &key("fifo_key"), "type"),
        pair("file", "fifo"),
        "{c}"
    );
    assert_eq!(
        refused(&c, &key("dir_key"), "type"),
        pair("file", "directory"),
        "{c}"
    );
    assert_eq!(
        refused(&c, &below, "below"),
        pair("nothing below /etc/ssh/ssh_host_*", "file"),
        "{c}"
    );
    assert_eq!(
        refused(&c, &key("user_key"), "uid"),
        pair("root (0)", "1000"),
        "{c}"
    );
    assert_eq!(
        refused(&c, "/etc/machine-id", "type"),
        pair("file", "symlink"),
        "{c}"
    );
    // The real keys are not among the findings (assert_findings is exact).
}

#[test]
fn the_text_report_says_what_the_allowance_refused() {
    if skip_unless_root("a file owned by root") {
        return;
    }
    let d = host("text-report");
    d.write(key("evil_key"), "#!/bin/sh\n");
    d.chmod(key("evil_key"), 0o4755);
    let o = common::run(
        common::driftd()
            .arg("check")
            .arg("--manifest")
            .arg(&d.manifest)
            .arg("--root")
            .arg(&d.root)
            .args(["--allow-unsigned", "--color", "never"]),
    );
    o.assert_code(1);
    let out = o.stdout_str();
    assert!(
        out.contains("added      /etc/ssh/ssh_host_evil_key  mode within 0644 -> 4755"),
        "{o}"
    );
}

#[test]
fn a_machine_id_that_appears_wider_or_owned_by_another_user_is_drift() {
    if skip_unless_root("files owned by root and by uid 1000") {
        return;
    }
    let d = host("machine-id-forms");
    d.write("/etc/machine-id", "0123456789abcdef0123456789abcdef\n");
    d.chmod("/etc/machine-id", 0o444);
    d.check().assert_clean();
    d.chmod("/etc/machine-id", 0o644);
    let c = d.check();
    c.assert_findings(1, &[exp("/etc/machine-id", "added", &["mode"])]);
    assert_eq!(
        refused(&c, "/etc/machine-id", "mode"),
        pair("within 0444", "0644")
    );
    d.chmod("/etc/machine-id", 0o444);
    d.chown("/etc/machine-id", Some(1000), Some(1000));
    let c = d.check();
    c.assert_findings(1, &[exp("/etc/machine-id", "added", &["uid", "gid"])]);
    assert_eq!(
        refused(&c, "/etc/machine-id", "gid"),
        pair("root (0)", "1000")
    );
    d.remove("/etc/machine-id");
    d.mkdir("/etc/machine-id");
    d.write("/etc/machine-id/x", "x\n");
    let c = d.check();
    c.assert_findings(
        1,
        &[
            exp("/etc/machine-id", "added", &["type", "mode"]),
            exp("/etc/machine-id/x", "added", &["below"]),
        ],
    );
}

#[test]
fn what_cannot_be_read_at_an_allowed_name_is_never_clean() {
    let d = Dir::standard("unreadable-forms");
    d.remove("/etc/machine-id");
    if !prepare_for_nobody(&d) {
        return;
    }
    d.bake_and_assert_clean(&[]);
    // A real key nobody cannot open: allowed by name, but not verified.
    d.write(key("ed25519_key"), "key\n");
    d.chmod(key("ed25519_key"), 0o600);
    let c = d.check_as_nobody();
    c.assert_findings(2, &[exp(&key("ed25519_key"), "unreadable", &[])]);
    assert_eq!(c.verdict(), "unknown", "{c}");
    // Below an allowed name, what cannot be read is drift all the same.
    d.mkdir(key("dir_key"));
    d.write(format!("{}/secret", key("dir_key")), "x\n");
    d.chmod(format!("{}/secret", key("dir_key")), 0o600);
    let c = d.check_as_nobody();
    let secret = format!("{}/secret", key("dir_key"));
    c.assert_findings(
        1,
        &[
            exp(&key("ed25519_key"), "unreadable", &[]),
            exp(&key("dir_key"), "added", &["type", "mode"]),
            exp(&secret, "added", &["below"]),
        ],
    );
    assert_eq!(
        refused(&c, &secret, "below"),
        pair("nothing below /etc/ssh/ssh_host_*", "something"),
        "{c}"
    );
    let reason = c.finding(&secret)["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("Permission denied"), "{c}");
}

#[test]
fn type_names_of_allowances_are_the_names_reports_use() {
    use driftd::manifest::FileKind;
    let kinds = [
        FileKind::File,
        FileKind::Dir,
        FileKind::Symlink,
        FileKind::Fifo,
        FileKind::Socket,
        FileKind::CharDevice,
        FileKind::BlockDevice,
    ];
    assert_eq!(kinds.map(FileKind::name), driftd::policy::TYPE_NAMES);
}
