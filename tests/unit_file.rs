//! The systemd unit (`systemd/driftd.service`) as systemd itself judges it:
//! `systemd-analyze verify` must print nothing (it exits 0 on a typo, so any
//! output fails), `systemd-analyze security --offline=yes` must rate it 2.0
//! or better, and the sandbox must not hide what driftd checks. The boot
//! test (tests/boot) runs the packaged unit under a real systemd and checks
//! that the agent inside it sees the same tree as a check outside it.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/driftd.service");

fn unit_text() -> String {
    fs::read_to_string(UNIT).expect("read systemd/driftd.service")
}

/// `Key=value` settings of the unit (comments and sections dropped), in
/// order; a key set twice appears twice.
fn settings(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn values<'a>(s: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    s.iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn one<'a>(s: &'a [(String, String)], key: &str) -> &'a str {
    match values(s, key).as_slice() {
        [v] => v,
        other => panic!("{key}= is set {} times in the unit", other.len()),
    }
}

/// A root for `systemd-analyze --root`: the unit and the binaries its
/// Exec lines name (verify checks they exist and are executable).
fn verify_root(name: &str, unit: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{name}-"))
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let r = tmp.path().to_path_buf();
    for d in ["usr/bin", "bin", "etc/systemd/system"] {
        fs::create_dir_all(r.join(d)).unwrap();
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_driftd"));
    if fs::hard_link(bin, r.join("usr/bin/driftd")).is_err() {
        fs::copy(bin, r.join("usr/bin/driftd")).unwrap();
    }
    // ExecReload= runs the shell's kill builtin: /bin/kill (procps) is not
    // on a minimal system.
    fs::copy("/bin/sh", r.join("bin/sh")).unwrap();
    fs::write(r.join("etc/systemd/system/driftd.service"), unit).unwrap();
    (tmp, r)
}

/// stdout and stderr of `systemd-analyze verify` on `unit`, with the status.
fn verify(name: &str, unit: &str) -> Option<(bool, String)> {
    let sa = common::tool("systemd-analyze", "systemd")?;
    let (_tmp, root) = verify_root(name, unit);
    let o = Command::new(sa)
        .args(["verify", "--man=no", "--recursive-errors=no"])
        .arg(format!("--root={}", root.display()))
        .arg("driftd.service")
        .output()
        .expect("run systemd-analyze verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    Some((o.status.success(), text))
}

#[test]
fn systemd_analyze_verify_prints_nothing() {
    let Some((ok, out)) = verify("unit-verify", &unit_text()) else {
        return;
    };
    assert!(ok && out.is_empty(), "systemd-analyze verify:\n{out}");
}

#[test]
fn verify_would_catch_a_typo() {
    // The check above can fail: a misspelt directive is reported (as a
    // warning, which is why any output counts as a failure).
    let bad = unit_text().replace("ProtectSystem=strict", "ProtectSytem=strict");
    assert_ne!(bad, unit_text());
    let Some((_, out)) = verify("unit-verify-typo", &bad) else {
        return;
    };
    assert!(out.contains("ProtectSytem"), "no complaint:\n{out}");
}

/// The overall exposure level `systemd-analyze security --offline=yes`
/// gives the unit text.
fn exposure(name: &str, unit: &str) -> Option<f64> {
    let sa = common::tool("systemd-analyze", "systemd")?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{name}-"))
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let path = tmp.path().join("driftd.service");
    fs::write(&path, unit).unwrap();
    let o = Command::new(sa)
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&path)
        .output()
        .expect("run systemd-analyze security");
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure level in:\n{out}\n{o:?}"));
    let level = line
        .split(':')
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unparsable: {line}"));
    Some(level)
}

#[test]
fn systemd_analyze_security_rates_the_unit_2_0_or_better() {
    let Some(level) = exposure("unit-security", &unit_text()) else {
        return;
    };
    assert!(level <= 2.0, "exposure level {level} (needs 2.0 or better)");
    // And the rating reacts to the sandbox: without it the unit is exposed.
    let bare: String = unit_text()
        .lines()
        .filter(|l| {
            !l.starts_with("Protect")
                && !l.starts_with("SystemCall")
                && !l.starts_with("Restrict")
                && !l.starts_with("CapabilityBoundingSet")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let level_bare = exposure("unit-security-bare", &bare).unwrap();
    assert!(level_bare > 5.0, "unsandboxed unit rated {level_bare}");
}

#[test]
fn unit_runs_the_agent_the_way_the_issue_and_readme_say() {
    let s = settings(&unit_text());
    assert_eq!(one(&s, "Type"), "notify");
    assert_eq!(one(&s, "Restart"), "always");
    assert_eq!(one(&s, "StateDirectory"), "driftd");
    assert!(!one(&s, "WatchdogSec").is_empty());
    assert_eq!(one(&s, "IOSchedulingClass"), "idle");
    assert!(one(&s, "Nice").parse::<i32>().unwrap() > 0);
    let config = "/etc/driftd/driftd.toml";
    assert_eq!(
        one(&s, "ExecStartPre"),
        format!("/usr/bin/driftd validate --config {config}")
    );
    assert_eq!(
        one(&s, "ExecStart"),
        format!("/usr/bin/driftd run --config {config}")
    );
    // The config it names is the one the packages install.
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/config/driftd.toml");
    driftd::config::load(Path::new(shipped)).expect("config/driftd.toml loads");
    assert_eq!(one(&s, "NoNewPrivileges"), "yes");
    assert_eq!(one(&s, "ProtectSystem"), "strict");
    let caps: Vec<&str> = one(&s, "CapabilityBoundingSet")
        .split_whitespace()
        .collect();
    assert_eq!(caps, ["CAP_DAC_READ_SEARCH", "CAP_FOWNER"]);
    assert_eq!(
        one(&s, "AmbientCapabilities"),
        one(&s, "CapabilityBoundingSet")
    );
    assert!(!one(&s, "MemoryMax").is_empty());
    assert!(!values(&s, "SystemCallFilter").is_empty());
    assert!(!one(&s, "RestrictAddressFamilies").is_empty());
}

#[test]
fn the_sandbox_hides_nothing_driftd_checks() {
    // Each of these would make real files look removed (or re-owned) to
    // the agent: hidden home directories, a private /tmp, remapped owners,
    // an inaccessible /usr/lib/modules, bind-mounted or masked paths.
    let s = settings(&unit_text());
    let hiding: &[(&str, &[&str])] = &[
        ("ProtectHome", &["yes", "tmpfs", "true", "on", "1"]),
        ("PrivateTmp", &["yes", "true", "on", "1"]),
        (
            "PrivateUsers",
            &["yes", "true", "on", "1", "self", "identity"],
        ),
        ("DynamicUser", &["yes", "true", "on", "1"]),
        ("ProtectKernelModules", &["yes", "true", "on", "1"]),
    ];
    for (key, bad) in hiding {
        for v in values(&s, key) {
            assert!(!bad.contains(&v), "{key}={v} hides files from the agent");
        }
    }
    for key in [
        "InaccessiblePaths",
        "TemporaryFileSystem",
        "BindPaths",
        "BindReadOnlyPaths",
        "RootDirectory",
        "RootImage",
        "MountImages",
        "ExtensionImages",
    ] {
        assert!(
            values(&s, key).is_empty(),
            "{key}= changes the agent's view"
        );
    }
}
