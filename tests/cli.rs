//! The command line: keys and signatures, exit statuses, unreadable paths
//! (run as `nobody`), `diff`, text output, bake failures, config errors and
//! help texts.

mod common;

use common::{driftd_as_nobody, driftd_run, exp, prepare_for_nobody, run, s, Dir};
use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

// ---------------------------------------------------------------- keys

#[test]
fn keygen_writes_secret_key_with_mode_0600() {
    let d = Dir::new("keygen");
    let (sec, public) = d.keygen("k");
    let mode = fs::metadata(&sec).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "secret key mode is {mode:o}");
    let sec_text = fs::read_to_string(&sec).unwrap();
    let pub_text = fs::read_to_string(&public).unwrap();
    assert!(
        sec_text.starts_with("driftd-ed25519-secret-key "),
        "{sec_text:?}"
    );
    assert!(
        pub_text.starts_with("driftd-ed25519-public-key "),
        "{pub_text:?}"
    );
    assert!(
        !pub_text.contains(sec_text.split(' ').nth(1).unwrap().trim()),
        "the public key file holds the secret"
    );
}

#[test]
fn keygen_refuses_to_overwrite_without_force() {
    let d = Dir::new("keygen-overwrite");
    let (sec, public) = d.keygen("k");
    let before = fs::read(&sec).unwrap();
    let args = |force: bool| {
        let mut v = vec![
            "keygen",
            "--secret-key",
            s(&sec),
            "--public-key",
            s(&public),
        ];
        if force {
            v.push("--force");
        }
        v
    };
    driftd_run(args(false))
        .assert_code(2)
        .assert_stderr_contains("refusing to overwrite");
    assert_eq!(fs::read(&sec).unwrap(), before, "secret key was replaced");
    // --force writes a new file: the old one's looser mode must not survive.
    common::chmod_path(&sec, 0o644);
    driftd_run(args(true)).assert_code(0);
    assert_ne!(
        fs::read(&sec).unwrap(),
        before,
        "--force did not replace the key"
    );
    let mode = fs::metadata(&sec).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "secret key mode after --force is {mode:o}");
}

// ---------------------------------------------------------------- signatures

#[test]
fn signed_bake_verifies_with_trusted_key() {
    let d = Dir::standard("signed-ok");
    let (sec, public) = d.keygen("k");
    d.bake_signed(&sec);
    let c = d.check_with(&["--trusted-key", s(&public)]);
    c.assert_clean();
    let m = &c.json["manifest"];
    assert_eq!(m["signed"], true, "{c}");
    assert_eq!(m["signature_verified"], true, "{c}");
    assert!(m["key_id"].is_string(), "{c}");
}

#[test]
fn signed_manifest_verifies_with_any_of_several_trusted_keys() {
    let d = Dir::standard("signed-rotation");
    let (_, old_pub) = d.keygen("old");
    let (sec, public) = d.keygen("new");
    d.bake_signed(&sec);
    d.check_with(&["--trusted-key", s(&old_pub), "--trusted-key", s(&public)])
        .assert_clean();
}

#[test]
fn unsigned_manifest_with_trusted_key_is_refused() {
    let d = Dir::standard("unsigned-refused");
    let (_, public) = d.keygen("k");
    d.bake(&[]);
    let o = run(&mut d.check_command(&["--trusted-key", s(&public)]));
    o.assert_code(2).assert_stderr_contains("not signed");
    assert!(o.stdout.is_empty(), "a report was printed\n{o}");
}

#[test]
fn manifest_signed_by_another_key_is_refused() {
    let d = Dir::standard("wrong-key");
    let (sec, _) = d.keygen("signer");
    let (_, other_pub) = d.keygen("other");
    d.bake_signed(&sec);
    let o = run(&mut d.check_command(&["--trusted-key", s(&other_pub)]));
    o.assert_code(2)
        .assert_stderr_contains("not among the trusted keys");
    assert!(o.stdout.is_empty(), "a report was printed\n{o}");
}

#[test]
fn secret_key_given_as_trusted_key_is_refused() {
    let d = Dir::standard("secret-as-public");
    let (sec, _) = d.keygen("k");
    d.bake_signed(&sec);
    run(&mut d.check_command(&["--trusted-key", s(&sec)]))
        .assert_code(2)
        .assert_stderr_contains("not a driftd public key file");
}

/// The manifest as uncompressed text.
fn manifest_text(path: &Path) -> String {
    // What `zstd -dc` prints: every frame inflated, skippable ones passed.
    let bytes = fs::read(path).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut zstd::stream::read::Decoder::new(bytes.as_slice()).unwrap(),
        &mut text,
    )
    .expect("decompress manifest");
    text
}

/// Replace the first occurrence of `from` (which must be there) in `text`.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "test bug: {from:?} not in\n{text}");
    text.replacen(from, to, 1)
}

#[test]
fn flipped_byte_in_compressed_manifest_is_refused() {
    let d = Dir::standard("flip-compressed");
    let (sec, public) = d.keygen("k");
    d.bake_signed(&sec);
    let mut bytes = fs::read(&d.manifest).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x01;
    fs::write(&d.manifest, &bytes).unwrap();
    let o = run(&mut d.check_command(&["--trusted-key", s(&public)]));
    o.assert_code(2).assert_stderr_contains("invalid manifest");
    assert!(o.stdout.is_empty(), "a report was printed\n{o}");
}

#[test]
fn flipped_byte_in_manifest_text_is_digest_mismatch() {
    let d = Dir::standard("flip-text");
    let (sec, public) = d.keygen("k");
    d.bake_signed(&sec);
    let text = manifest_text(&d.manifest);
    // /etc/passwd's mode, 0644 -> 0645: one byte.
    let tampered = replace_once(&text, "/etc/passwd\tf\t0644", "/etc/passwd\tf\t0645");
    fs::write(&d.manifest, tampered).unwrap();
    for flags in [&["--trusted-key", s(&public)][..], &["--allow-unsigned"]] {
        let o = run(&mut d.check_command(flags));
        o.assert_code(2).assert_stderr_contains("digest mismatch");
        assert!(o.stdout.is_empty(), "a report was printed\n{o}");
    }
}

#[test]
fn tampered_manifest_with_recomputed_digest_fails_signature() {
    let d = Dir::standard("recomputed-digest");
    let (sec, public) = d.keygen("k");
    d.bake_signed(&sec);
    // A consistent manifest (block hashes, index and digest all redone for
    // the new content) carrying the old signature.
    let m = driftd::manifest::Manifest::from_bytes(&fs::read(&d.manifest).unwrap()).unwrap();
    let mut entries = m.entries.clone();
    let passwd = entries
        .iter_mut()
        .find(|e| &*e.path == b"/etc/passwd")
        .expect("/etc/passwd in the manifest");
    passwd.mode = Some(0o666);
    let mut tampered = driftd::manifest::Manifest::new(m.header.clone(), entries);
    assert_ne!(tampered.digest, m.digest);
    tampered.signature = m.signature.clone();
    let forged = tampered.to_bytes().unwrap();
    fs::write(&d.manifest, forged).unwrap();
    run(&mut d.check_command(&["--trusted-key", s(&public)]))
        .assert_code(2)
        .assert_stderr_contains("does not verify");
}

#[test]
fn stripped_signature_is_refused_with_trusted_key() {
    let d = Dir::standard("stripped-signature");
    let (sec, public) = d.keygen("k");
    d.bake_signed(&sec);
    let text = manifest_text(&d.manifest);
    let stripped: String = text
        .lines()
        .filter(|l| !l.starts_with("signature "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(stripped, text, "test bug: no signature line");
    fs::write(&d.manifest, stripped).unwrap();
    run(&mut d.check_command(&["--trusted-key", s(&public)]))
        .assert_code(2)
        .assert_stderr_contains("not signed");
}

#[test]
fn check_without_trusted_key_or_allow_unsigned_is_refused() {
    let d = Dir::standard("no-trust-flag");
    d.bake(&[]);
    let o = driftd_run(["check", "--manifest", s(&d.manifest), "--root", s(&d.root)]);
    o.assert_code(2)
        .assert_stderr_contains("--trusted-key")
        .assert_stderr_contains("--allow-unsigned");
    assert!(o.stdout.is_empty(), "a report was printed\n{o}");
}

/// One trust rule: a signed manifest is always verified against the
/// trusted keys, and `--allow-unsigned` admits only a manifest that carries
/// no signature (it used to skip the verification of a signed one).
#[test]
fn allow_unsigned_never_admits_a_signed_manifest_unverified() {
    let d = Dir::standard("one-trust-rule");
    let (sec, public) = d.keygen("k");
    let (_, other) = d.keygen("other");
    d.bake(&["--signing-key", s(&sec)]);
    run(&mut d.check_command(&["--allow-unsigned"]))
        .assert_code(2)
        .assert_stderr_contains("is signed")
        .assert_stderr_contains("--trusted-key");
    run(&mut d.check_command(&["--allow-unsigned", "--trusted-key", s(&other)]))
        .assert_code(2)
        .assert_stderr_contains("not among the trusted keys");
    let c = d.check_with(&["--allow-unsigned", "--trusted-key", s(&public)]);
    c.assert_clean();
    assert_eq!(c.json["manifest"]["signature_verified"], true, "{c}");
    // Both flags together: the key verifies signed manifests, the flag
    // admits unsigned ones.
    d.bake(&[]);
    let c = d.check_with(&["--allow-unsigned", "--trusted-key", s(&public)]);
    c.assert_clean();
    assert_eq!(c.json["manifest"]["signed"], false, "{c}");
}

#[test]
fn missing_manifest_is_an_error() {
    let d = Dir::standard("missing-manifest");
    run(&mut d.check_command(&["--allow-unsigned"]))
        .assert_code(2)
        .assert_stderr_contains("read manifest");
}

#[test]
fn missing_root_is_an_error() {
    let d = Dir::standard("missing-root");
    d.bake(&[]);
    d.remove("/");
    run(&mut d.check_command(&["--allow-unsigned"]))
        .assert_code(2)
        .assert_stderr_contains("root");
}

// ---------------------------------------------------------------- unreadable paths (as nobody)

/// A standard tree plus `/etc/shadow` and a directory `/root` holding two
/// files, everything world-readable except, if asked, `/etc/shadow` (0600)
/// and `/root` (0700); baked as root and checked clean as root. `None` when
/// driftd cannot run as nobody here (the reason is printed).
fn private_tree(name: &str, private_file: bool, private_dir: bool) -> Option<Dir> {
    let d = Dir::standard(name);
    d.write("/etc/shadow", "root:*:19000:0:99999:7:::\n");
    d.write("/root/.profile", "umask 077\n");
    d.write("/root/.ssh/authorized_keys", "ssh-ed25519 AAAA admin\n");
    if !prepare_for_nobody(&d) {
        return None;
    }
    if private_file {
        d.chmod("/etc/shadow", 0o600);
    }
    if private_dir {
        d.chmod("/root", 0o700);
    }
    d.bake_and_assert_clean(&[]);
    Some(d)
}

#[test]
fn unreadable_file_gives_verdict_unknown() {
    let Some(d) = private_tree("unreadable-file", true, false) else {
        return;
    };
    let c = d.check_as_nobody();
    c.assert_findings(2, &[exp("/etc/shadow", "unreadable", &[])]);
    assert_eq!(c.verdict(), "unknown", "{c}");
    let reason = c.finding("/etc/shadow")["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("Permission denied"),
        "reason does not say why\n{c}"
    );
}

/// Regression guard for the central promise: a directory that cannot be
/// listed makes its manifest children *not checked* (counted in the
/// reason), never *removed*.
#[test]
fn unreadable_directory_children_are_not_reported_removed() {
    let Some(d) = private_tree("unreadable-dir", false, true) else {
        return;
    };
    let c = d.check_as_nobody();
    c.assert_findings(2, &[exp("/root", "unreadable", &[])]);
    assert_eq!(c.verdict(), "unknown", "{c}");
    let reason = c.finding("/root")["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("3 manifest entries below not checked"),
        "reason does not count the unchecked children\n{c}"
    );
}

#[test]
fn drift_and_unreadable_together_are_drifted() {
    let Some(d) = private_tree("drift-and-unreadable", true, true) else {
        return;
    };
    d.rewrite(
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nevil:x:0:0::/:/bin/sh\n",
    );
    let c = d.check_as_nobody();
    c.assert_findings(
        1,
        &[
            exp("/etc/passwd", "modified", &["content", "size"]),
            exp("/etc/shadow", "unreadable", &[]),
            exp("/root", "unreadable", &[]),
        ],
    );
    assert_eq!(c.verdict(), "drifted", "{c}");
}

#[test]
fn bake_with_unreadable_file_fails_and_writes_nothing() {
    let d = Dir::standard("bake-unreadable");
    d.write("/etc/shadow", "root:*:19000:0:99999:7:::\n");
    if !prepare_for_nobody(&d) {
        return;
    }
    let mut nobody = driftd_as_nobody();
    d.chmod("/etc/shadow", 0o600);
    // An output directory nobody may write to, so that only the unreadable
    // file can stop the bake.
    let out_dir = d.outside("out");
    fs::create_dir(&out_dir).unwrap();
    common::chmod_path(&out_dir, 0o777);
    let out = out_dir.join("manifest.zst");
    nobody
        .arg("bake")
        .arg("--root")
        .arg(&d.root)
        .arg("--output")
        .arg(&out);
    let o = run(&mut nobody);
    o.assert_code(2)
        .assert_stderr_contains("could not be read")
        .assert_stderr_contains("/etc/shadow");
    let left: Vec<_> = fs::read_dir(&out_dir).unwrap().collect();
    assert!(left.is_empty(), "bake left files behind: {left:?}\n{o}");
}

#[test]
fn unreadable_root_is_an_error_without_a_report() {
    let Some(d) = private_tree("unreadable-root", false, false) else {
        return;
    };
    d.chmod("/", 0o700);
    let mut c = driftd_as_nobody();
    c.args(d.check_args(&["--allow-unsigned"]));
    let o = run(&mut c);
    o.assert_code(2)
        .assert_stderr_contains("open root directory");
    assert!(o.stdout.is_empty(), "a report was printed\n{o}");
}

/// `driftd check` of `d` as root without CAP_SYS_ADMIN (the agent's unit
/// grants only CAP_DAC_READ_SEARCH and CAP_FOWNER).
fn check_without_sys_admin(d: &Dir) -> Option<common::Check> {
    let setpriv = common::tool("setpriv", "util-linux")?;
    let mut c = std::process::Command::new(setpriv);
    c.arg("--bounding-set=-sys_admin")
        .arg(common::BIN)
        .args(d.check_args(&["--allow-unsigned"]));
    Some(common::Check::from_output(run(&mut c)))
}

#[test]
fn trusted_xattrs_that_cannot_be_seen_make_the_verdict_unknown_not_drifted() {
    if common::skip_unless_root("setting trusted.* xattrs") {
        return;
    }
    let d = Dir::standard("trusted-xattr");
    d.set_xattr("/usr/lib/libx.so", "trusted.overlay.opaque", b"y");
    d.bake(&[]);
    assert_eq!(d.check().verdict(), "clean", "root sees trusted.*");
    let Some(c) = check_without_sys_admin(&d) else {
        return;
    };
    // The kernel hides trusted.* from the agent: not "xattrs changed" (a
    // false alarm) and not clean (unchecked), but unknown.
    assert_eq!(c.verdict(), "unknown", "{c}");
    assert_eq!(
        c.findings(),
        vec![exp("/usr/lib/libx.so", "unreadable", &[])],
        "{c}"
    );
    let reason = c.findings_for("/usr/lib/libx.so")[0]["reason"].to_string();
    assert!(reason.contains("trusted.* xattrs"), "{reason}");
    // Everything else about the file is still checked.
    d.chmod("/usr/lib/libx.so", 0o600);
    let c = check_without_sys_admin(&d).unwrap();
    assert_eq!(c.verdict(), "drifted", "{c}");
    assert_eq!(
        c.findings(),
        vec![exp("/usr/lib/libx.so", "metadata", &["mode"])],
        "{c}"
    );
}

// ---------------------------------------------------------------- diff

fn diff_json(old: &Path, new: &Path) -> (common::Output, Value) {
    let o = driftd_run(["diff", s(old), s(new), "--format", "json"]);
    let v = o.json();
    (o, v)
}

#[test]
fn diff_reports_added_removed_modified() {
    let d = Dir::standard("diff");
    let m1 = d.outside("m1.zst");
    let m2 = d.outside("m2.zst");
    d.bake_to(&m1, &["--image-id", "build-1"]);
    d.rewrite("/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n");
    d.remove("/usr/lib/libx.so");
    d.write("/etc/motd", "welcome\n");
    d.chmod("/usr/bin/tool", 0o700);
    d.bake_to(&m2, &["--image-id", "build-2"]);
    let (o, v) = diff_json(&m1, &m2);
    o.assert_code(1);
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "findings",
            "identical",
            "new",
            "old",
            "policy_changed",
            "schema",
            "summary"
        ],
        "{o}"
    );
    assert_eq!(v["schema"], "driftd.diff.v1", "{o}");
    assert_eq!(v["identical"], false, "{o}");
    assert_eq!(v["policy_changed"], false, "{o}");
    assert_eq!(v["old"]["image_id"], "build-1", "{o}");
    assert_eq!(v["new"]["image_id"], "build-2", "{o}");
    for side in ["old", "new"] {
        for key in [
            "digest",
            "entries",
            "signed",
            "signature_verified",
            "format_version",
        ] {
            assert!(!v[side][key].is_null(), "{side}.{key} missing\n{o}");
        }
    }
    let mut got: Vec<common::Expect> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            exp(
                f["path"].as_str().unwrap(),
                f["kind"].as_str().unwrap(),
                &f["attributes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap())
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    got.sort();
    let mut want = vec![
        exp("/etc/motd", "added", &[]),
        exp("/etc/passwd", "modified", &["content", "size"]),
        exp("/usr/bin/tool", "metadata", &["mode"]),
        exp("/usr/lib/libx.so", "removed", &[]),
    ];
    want.sort();
    assert_eq!(got, want, "{o}");
    let sum = &v["summary"];
    assert_eq!(
        [
            &sum["findings"],
            &sum["added"],
            &sum["removed"],
            &sum["modified"],
            &sum["metadata"]
        ],
        [4, 1, 1, 1, 1],
        "{o}"
    );
}

#[test]
fn diff_of_identical_manifests_exits_0() {
    let d = Dir::standard("diff-identical");
    let m1 = d.outside("m1.zst");
    let m2 = d.outside("m2.zst");
    d.bake_to(&m1, &[]);
    d.bake_to(&m2, &[]);
    assert_eq!(
        fs::read(&m1).unwrap(),
        fs::read(&m2).unwrap(),
        "two bakes of one tree differ"
    );
    let (o, v) = diff_json(&m1, &m2);
    o.assert_code(0);
    assert_eq!(v["identical"], true, "{o}");
    assert_eq!(v["findings"], Value::Array(vec![]), "{o}");
    let text = driftd_run(["diff", s(&m1), s(&m2)]);
    text.assert_code(0);
    assert!(text.stdout_str().starts_with("identical: "), "{text}");
}

#[test]
fn diff_notes_a_policy_change() {
    let d = Dir::standard("diff-policy");
    let m1 = d.outside("m1.zst");
    let m2 = d.outside("m2.zst");
    d.bake_to(&m1, &[]);
    d.bake_to(&m2, &["--exclude", "/srv"]);
    let (o, v) = diff_json(&m1, &m2);
    o.assert_code(1);
    assert_eq!(v["policy_changed"], true, "{o}");
    let text = driftd_run(["diff", s(&m1), s(&m2)]);
    assert!(
        text.stdout_str().contains("policy differs"),
        "text diff does not note the policy change\n{text}"
    );
}

#[test]
fn diff_with_trusted_key_refuses_unsigned() {
    let d = Dir::standard("diff-trusted");
    let (sec, public) = d.keygen("k");
    let m1 = d.outside("m1.zst");
    d.bake_to(&m1, &["--signing-key", s(&sec)]);
    d.bake(&[]);
    driftd_run(["diff", s(&m1), s(&m1), "--trusted-key", s(&public)]).assert_code(0);
    driftd_run(["diff", s(&m1), s(&d.manifest), "--trusted-key", s(&public)])
        .assert_code(2)
        .assert_stderr_contains("not signed");
}

// ---------------------------------------------------------------- text output

#[test]
fn text_output_has_one_line_per_finding_and_a_summary_without_ansi() {
    let d = Dir::standard("text-output");
    d.bake_and_assert_clean(&[]);
    d.write("/etc/new", "x\n");
    d.chmod("/etc/passwd", 0o600);
    d.remove("/usr/lib/libx.so");
    let o = driftd_run([
        "check",
        "--manifest",
        s(&d.manifest),
        "--root",
        s(&d.root),
        "--allow-unsigned",
    ]);
    o.assert_code(1);
    let out = o.stdout_str();
    assert!(!out.contains('\x1b'), "ANSI escapes on a pipe\n{o}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "expected 3 findings and a summary\n{o}");
    let mut findings = lines[..3].to_vec();
    findings.sort();
    assert!(
        findings[0].starts_with("added") && findings[0].ends_with(" /etc/new"),
        "{o}"
    );
    assert!(
        findings[1].starts_with("metadata")
            && findings[1].contains(" /etc/passwd  mode 0644 -> 0600"),
        "{o}"
    );
    assert!(
        findings[2].starts_with("removed") && findings[2].ends_with(" /usr/lib/libx.so"),
        "{o}"
    );
    assert!(lines[3].starts_with("DRIFTED: "), "{o}");
    assert!(lines[3].contains("1 added, 1 removed, 1 metadata"), "{o}");
}

#[test]
fn text_output_of_clean_check_is_one_summary_line() {
    let d = Dir::standard("text-clean");
    d.bake(&["--image-id", "img-42"]);
    let o = driftd_run([
        "check",
        "--manifest",
        s(&d.manifest),
        "--root",
        s(&d.root),
        "--allow-unsigned",
    ]);
    o.assert_code(0);
    let out = o.stdout_str();
    assert_eq!(out.lines().count(), 1, "{o}");
    assert!(out.starts_with("clean: no findings"), "{o}");
    assert!(out.contains("image-id img-42"), "{o}");
}

#[test]
fn color_always_does_use_ansi() {
    // The counterpart of the no-ANSI test: proves that test can fail.
    let d = Dir::standard("color-always");
    d.bake_and_assert_clean(&[]);
    d.write("/etc/new", "x\n");
    let o = driftd_run([
        "check",
        "--manifest",
        s(&d.manifest),
        "--root",
        s(&d.root),
        "--allow-unsigned",
        "--color",
        "always",
    ]);
    o.assert_code(1);
    assert!(o.stdout_str().contains("\x1b["), "{o}");
}

#[test]
fn odd_path_in_text_output_stays_on_one_line() {
    let d = Dir::standard("text-odd");
    d.bake_and_assert_clean(&[]);
    d.write(b"/etc/evil\nclean: no findings".as_slice(), "x\n");
    let o = driftd_run([
        "check",
        "--manifest",
        s(&d.manifest),
        "--root",
        s(&d.root),
        "--allow-unsigned",
    ]);
    o.assert_code(1);
    let out = o.stdout_str();
    assert_eq!(
        out.lines().count(),
        2,
        "a path broke the one-line format\n{o}"
    );
    assert!(out.contains("/etc/evil\\nclean: no findings"), "{o}");
}

// ---------------------------------------------------------------- bake

#[test]
fn bake_output_inside_root_is_excluded() {
    let d = Dir::standard("output-inside");
    let inside = d.path("/var/lib/manifest[1].zst");
    d.bake_to(&inside, &[]);
    assert!(
        common::load_manifest(&inside)
            .find(b"/var/lib/manifest[1].zst")
            .is_none(),
        "the manifest lists itself"
    );
    // A second bake sees the first manifest on disk: still excluded.
    d.bake_to(&inside, &[]);
    common::check_json(&inside, &d.root, &["--allow-unsigned"]).assert_clean();
}

#[test]
fn bake_is_byte_identical_whatever_the_thread_count() {
    let d = Dir::standard("deterministic");
    for i in 0..300 {
        d.write(
            format!("/usr/share/doc/f{i}"),
            format!("doc {i}\n").repeat(i),
        );
    }
    let m1 = d.outside("m1.zst");
    let m4 = d.outside("m4.zst");
    d.bake_to(&m1, &["--threads", "1"]);
    d.bake_to(&m4, &["--threads", "4"]);
    assert!(
        fs::read(&m1).unwrap() == fs::read(&m4).unwrap(),
        "manifests baked with 1 and 4 threads differ"
    );
}

/// Regression: `bake` excludes its own output when written inside the root
/// by turning the path into a glob with `String::from_utf8_lossy`, so a
/// non-UTF-8 output name becomes U+FFFD in the pattern, matches nothing, and
/// the manifest file itself is reported as added by every check.
#[test]
/// Regression: a non-UTF-8 output name inside the root was turned into a
/// lossy glob that never matched, so the manifest listed itself and every
/// check reported it as added. Such a name cannot be excluded exactly by a
/// text glob, so bake refuses it, says why, and writes nothing.
fn bake_output_inside_root_with_non_utf8_name_is_refused() {
    let d = Dir::standard("output-inside-non-utf8");
    let inside = d.path(b"/var/lib/manifest-\xff.zst");
    d.try_bake_to(&inside, &[])
        .assert_code(2)
        .assert_stderr_contains("not valid UTF-8");
    assert!(!inside.exists(), "bake wrote a manifest it cannot exclude");
}

#[test]
fn bake_records_image_id_and_signature_in_check_report() {
    let d = Dir::standard("image-id");
    let (sec, public) = d.keygen("k");
    d.bake(&[
        "--image-id",
        "ami-0123 \"quoted\"",
        "--signing-key",
        s(&sec),
    ]);
    let c = d.check_with(&["--trusted-key", s(&public)]);
    c.assert_clean();
    assert_eq!(c.json["manifest"]["image_id"], "ami-0123 \"quoted\"", "{c}");
    assert_eq!(c.json["manifest"]["signed"], true, "{c}");
    assert_eq!(c.json["manifest"]["signature_verified"], true, "{c}");
}

/// Regression: the text summary printed the image id raw, so an id with a
/// newline (or a terminal escape) broke the one-summary-line format and let
/// an unsigned manifest write control sequences to the operator's terminal.
/// Paths are escaped; the image id must be too.
#[test]
fn image_id_with_control_characters_keeps_text_summary_on_one_line() {
    let d = Dir::standard("image-id-control");
    let id = "build\n42\x1b]0;pwned\x07";
    d.bake(&["--image-id", id]);
    let c = d.check();
    c.assert_clean();
    assert_eq!(c.json["manifest"]["image_id"], id, "JSON lost the id\n{c}");
    let o = driftd_run([
        "check",
        "--manifest",
        s(&d.manifest),
        "--root",
        s(&d.root),
        "--allow-unsigned",
    ]);
    o.assert_code(0);
    let out = o.stdout_str();
    assert!(
        out.lines().count() == 1 && !out.contains('\x1b'),
        "the image id broke the text summary\n{o}"
    );
}

// ---------------------------------------------------------------- config errors

#[test]
fn config_errors_are_all_listed_and_exit_2() {
    let d = Dir::standard("config-errors");
    let cfg = d.write_outside(
        "bad.toml",
        "bogus = 1\n\
         [scan]\n\
         threads = \"many\"\n\
         [policy]\n\
         exclud = [\"/x\"]\n\
         exclude = [\"relative/path\"]\n\
         [[policy.rules]]\n\
         paths = [\"/etc/**\"]\n\
         attributes = [\"type\", \"colour\"]\n\
         [policy.allow]\n\
         may_appear = [\"/a/[b\"]\n",
    );
    let o = d.try_bake_to(&d.manifest, &["--config", s(&cfg)]);
    o.assert_code(2);
    for needle in [
        "6 errors",
        "bogus",
        "scan.threads",
        "policy.exclud",
        "policy.exclude[0]",
        "policy.rules[0].attributes",
        "colour",
        "policy.allow.may_appear[0]",
    ] {
        o.assert_stderr_contains(needle);
    }
    assert!(!d.manifest.exists(), "a manifest was written\n{o}");
}

#[test]
fn bad_attribute_alone_is_an_error() {
    let d = Dir::standard("config-bad-attribute");
    let cfg = d.write_outside(
        "bad.toml",
        "[[policy.rules]]\npaths = [\"/etc/**\"]\nattributes = [\"sha256\"]\n",
    );
    d.try_bake_to(&d.manifest, &["--config", s(&cfg)])
        .assert_code(2)
        .assert_stderr_contains("policy.rules[0].attributes")
        .assert_stderr_contains("sha256");
    assert!(!d.manifest.exists());
}

#[test]
fn bad_exclude_glob_on_command_line_is_an_error() {
    let d = Dir::standard("bad-exclude-flag");
    d.try_bake_to(&d.manifest, &["--exclude", "relative"])
        .assert_code(2)
        .assert_stderr_contains("relative");
    assert!(!d.manifest.exists());
}

#[test]
fn shipped_config_bakes_the_same_manifest_as_the_default() {
    let d = Dir::standard("shipped-config");
    let m2 = d.outside("m2.zst");
    d.bake(&[]);
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/config/driftd.toml");
    d.bake_to(&m2, &["--config", shipped]);
    assert_eq!(
        fs::read(&d.manifest).unwrap(),
        fs::read(&m2).unwrap(),
        "config/driftd.toml is not the built-in policy"
    );
}

// ---------------------------------------------------------------- help

#[test]
fn help_of_every_subcommand_exits_0() {
    for sub in ["bake", "check", "diff", "keygen"] {
        for flag in ["--help", "-h"] {
            let o = driftd_run([sub, flag]);
            o.assert_code(0);
            assert!(
                o.stdout_str().contains("Usage: driftd"),
                "{sub} {flag} prints no usage\n{o}"
            );
        }
    }
    driftd_run(["--help"]).assert_code(0);
    driftd_run(["--version"]).assert_code(0);
}

#[test]
fn check_help_mentions_exit_statuses() {
    for flag in ["--help", "-h"] {
        let o = driftd_run(["check", flag]);
        o.assert_code(0);
        let out = o
            .stdout_str()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            out.contains("Exit status: 0 clean, 1 drifted, 2 unknown"),
            "check {flag} does not document the exit statuses\n{o}"
        );
    }
    let top = driftd_run(["--help"]);
    assert!(
        top.stdout_str().contains("Exit status"),
        "driftd --help does not document the exit statuses\n{top}"
    );
}

#[test]
fn unknown_subcommand_is_exit_2() {
    driftd_run(["frobnicate"])
        .assert_code(2)
        .assert_stderr_contains("frobnicate");
}
