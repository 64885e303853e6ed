//! The tree as an attacker shapes it: attacks that used to leave a drifted
//! host *unknown* (or *clean*), each class in more than one form, with the
//! real binary. Needs root for mounts and for checking as another user (CI
//! runs as root; without it those cases fail under `CI`, else skip).
//!
//! - What is already known to differ is drift: a file that keeps growing
//!   (or is replaced over and over) while it is read, a file the checker
//!   may not open whose mode already differs.

mod agent_util;
mod common;

use agent_util::Launch;
use common::{exp, Dir};
use std::fs;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Run `f` in a thread until the returned guard is dropped.
struct Busy {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Busy {
    fn start(mut f: impl FnMut(u64) + Send + 'static) -> Busy {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut n = 0;
            while !flag.load(Ordering::Relaxed) {
                f(n);
                n += 1;
            }
            n
        });
        // Let it get going.
        std::thread::sleep(Duration::from_millis(50));
        Busy {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let n = t.join().expect("the busy thread");
            assert!(n > 0, "the busy thread never ran");
        }
    }
}

/// A file that keeps growing while it is read: its size already differs
/// from the image's on the first look, so it is drift (`modified`, size),
/// not "unreadable (changed while being read)" forever.
#[test]
fn a_file_that_keeps_growing_while_read_is_drift_not_unknown() {
    let d = Dir::standard("adv-growing");
    d.write("/etc/app.db", vec![b'x'; 8 << 20]);
    d.bake_and_assert_clean(&[]);
    let path = d.path("/etc/app.db");
    let _writer = Busy::start(move |_| {
        let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[b'y'; 4096]).unwrap();
    });
    let c = d.check();
    let f = c.finding("/etc/app.db");
    assert_eq!(f["kind"], "modified", "{c}");
    let attrs = f["attributes"].as_array().unwrap();
    assert!(attrs.iter().any(|a| a == "size"), "{c}");
    assert_eq!(c.verdict(), "drifted", "{c}");
    assert_eq!(c.code(), 1);
}

/// The same class, the other form: a file replaced over and over by
/// rename while the check runs is drift too, never unknown.
#[test]
fn a_file_replaced_in_a_loop_is_drift_not_unknown() {
    let d = Dir::standard("adv-replaced");
    d.write("/etc/app.conf", vec![b'x'; 1 << 20]);
    d.bake_and_assert_clean(&[]);
    let (path, tmp) = (d.path("/etc/app.conf"), d.path("/etc/.app.conf.new"));
    let _writer = Busy::start(move |n| {
        fs::write(
            &tmp,
            vec![b'a' + (n % 26) as u8; (1 << 20) + 1 + (n as usize % 4096)],
        )
        .unwrap();
        fs::rename(&tmp, &path).unwrap();
    });
    let c = d.check();
    let f = c.finding("/etc/app.conf");
    assert_eq!(f["kind"], "modified", "{c}");
    assert_eq!(c.verdict(), "drifted", "{c}");
}

/// A file the checker may not open (as another user: mode 0000 now) whose
/// mode already differs from the image's is `metadata` drift, not
/// unreadable: what is seen is enough.
#[test]
fn a_file_that_cannot_be_opened_but_whose_mode_differs_is_drift() {
    let d = Dir::standard("adv-unopenable");
    d.write("/etc/app.conf", "setting = 1\n");
    d.bake_and_assert_clean(&[]);
    if !common::prepare_for_nobody(&d) {
        return;
    }
    d.chmod("/etc/app.conf", 0o000);
    let c = d.check_as_nobody();
    c.assert_findings(1, &[exp("/etc/app.conf", "metadata", &["mode"])]);
    let reason = c.finding("/etc/app.conf")["reason"].as_str().unwrap_or("");
    assert!(reason.contains("content not read"), "{c}");
    // Its mode as baked but still unreadable to this user: unknown, never
    // clean.
    d.chmod("/etc/app.conf", 0o600);
    let c = d.check_as_nobody();
    let f = c.finding("/etc/app.conf");
    assert!(
        f["kind"] == "metadata" || f["kind"] == "unreadable",
        "never clean: {c}"
    );
    assert_ne!(c.verdict(), "clean");
}

/// The agent declares such drift (the confirmation re-reads the metadata
/// and sees it again), where it used to stay unknown forever.
#[test]
fn the_agent_declares_a_growing_file_drifted() {
    let d = Dir::standard("adv-growing-agent");
    d.write("/etc/app.db", vec![b'x'; 8 << 20]);
    d.bake_and_assert_clean(&[]);
    let mut a = Launch::new(&d).start();
    a.wait_ready();
    a.wait_metrics("clean", |m| m.verdict("clean") == 1.0);
    let path = d.path("/etc/app.db");
    let _writer = Busy::start(move |_| {
        let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[b'y'; 4096]).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    });
    a.wait_drifted();
    let s = a.status();
    assert!(
        agent_util::has_finding(&s, "/etc/app.db", "modified"),
        "{s}"
    );
}

/// Blind spots are visible: without CAP_SYS_ADMIN (as under the shipped
/// unit) `trusted.*` xattrs cannot be seen; the agent says so in a metric,
/// in /status and in its log, instead of silently missing them.
#[test]
fn blind_spots_are_visible() {
    let d = Dir::standard("adv-blind");
    d.bake_and_assert_clean(&[]);
    let Some(setpriv) = common::tool("setpriv", "util-linux") else {
        return;
    };
    if common::skip_unless_root("dropping CAP_SYS_ADMIN") {
        return;
    }
    let mut a = Launch::new(&d).start();
    a.wait_ready();
    let m = a.metrics();
    assert_eq!(
        m.val("driftd_blind_spots", &[("class", "trusted_xattrs")]),
        0.0,
        "{m}"
    );
    assert_eq!(a.status()["blind_spots"], serde_json::json!([]));
    drop(a);
    let setpriv = setpriv.display().to_string();
    let mut a = Launch::new(&d)
        .wrap(&[&setpriv, "--bounding-set=-sys_admin", "--"])
        .start();
    a.wait_ready();
    let m = a.metrics();
    assert_eq!(
        m.val("driftd_blind_spots", &[("class", "trusted_xattrs")]),
        1.0,
        "{m}"
    );
    assert_eq!(
        a.status()["blind_spots"],
        serde_json::json!(["trusted_xattrs"])
    );
    assert!(a.log_text().contains("blind spot"), "{}", a.log_tail(10));
}

// ------------------------------------------------------------------ mounts

/// Something mounted at a path, unmounted on drop (also when a test fails).
struct Mounted(std::path::PathBuf);

impl Mounted {
    /// `mount ARGS... TARGET`; `None` (after saying why) when mounting is
    /// impossible here (under CI that fails the test).
    fn new(args: &[&str], target: &std::path::Path) -> Option<Mounted> {
        if common::skip_unless_root("mounting") {
            return None;
        }
        let mount = common::tool("mount", "mount")?;
        let o = common::run(std::process::Command::new(mount).args(args).arg(target));
        assert_eq!(o.code, 0, "mount {args:?} {target:?}\n{o}");
        Some(Mounted(target.to_path_buf()))
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// A tmpfs over a directory that is empty in the image, holding a setuid
/// file: it used to be clean (a mount point was compared by type only, and
/// nothing below it was expected). The mount is drift.
#[test]
fn a_tmpfs_over_an_empty_image_directory_is_drift() {
    let d = Dir::standard("adv-mount-tmpfs");
    d.mkdir("/usr/local/bin");
    d.bake_and_assert_clean(&[]);
    let Some(_m) = Mounted::new(
        &["-t", "tmpfs", "-o", "size=1m,mode=0755", "adv-tmpfs"],
        &d.path("/usr/local/bin"),
    ) else {
        return;
    };
    d.write("/usr/local/bin/sudo", "#!/bin/sh\n");
    d.chmod("/usr/local/bin/sudo", 0o4755);
    let c = d.check();
    c.assert_findings(1, &[exp("/usr/local/bin", "metadata", &["mount"])]);
    let (_, what) = c.change("/usr/local/bin", "mount");
    assert!(what.as_str().unwrap().contains("tmpfs"), "{c}");
}

/// A bind mount of another directory of the same filesystem over a checked
/// one: no change of device, found by the mount id (statx).
#[test]
fn a_bind_mount_of_another_directory_is_drift_though_the_device_is_the_same() {
    let d = Dir::standard("adv-mount-bind");
    d.write("/usr/lib/libx.so.2", "library\n");
    d.bake_and_assert_clean(&[]);
    let evil = d.outside("evil-lib");
    fs::create_dir_all(&evil).unwrap();
    fs::write(evil.join("libx.so.2"), "library\n").unwrap();
    fs::copy(d.path("/usr/lib/libx.so"), evil.join("libx.so")).unwrap();
    let Some(_m) = Mounted::new(&["--bind", common::s(&evil)], &d.path("/usr/lib")) else {
        return;
    };
    let c = d.check();
    let fs = c.findings_for("/usr/lib");
    let mount = fs
        .iter()
        .find(|f| f["kind"] == "metadata")
        .unwrap_or_else(|| panic!("no metadata finding for /usr/lib\n{c}"));
    assert!(
        mount["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "mount"),
        "{c}"
    );
    let what = mount["changes"]
        .as_array()
        .and_then(|cs| cs.iter().find(|x| x["attribute"] == "mount"))
        .map(|x| x["actual"].as_str().unwrap_or("").to_string())
        .unwrap_or_default();
    assert!(what.contains("bind mount of"), "{c}");
    // What the image had below it was not checked (not "removed").
    assert!(fs.iter().any(|f| f["kind"] == "unreadable"), "{c}");
    assert_eq!(c.verdict(), "drifted");
}

/// A bind mount of a directory onto itself (what systemd's sandbox makes:
/// ProtectHome=, ReadWritePaths=) shows the same files: transparent.
#[test]
fn a_bind_mount_of_a_directory_onto_itself_is_transparent() {
    let d = Dir::standard("adv-mount-self");
    d.bake_and_assert_clean(&[]);
    let target = d.path("/usr/lib");
    let Some(_m) = Mounted::new(&["--bind", common::s(&target)], &target) else {
        return;
    };
    let Some(_ro) = Mounted::new(&["-o", "remount,ro,bind"], &target) else {
        return;
    };
    d.check().assert_clean();
    // What is below it is still checked.
    let c = d.check_with(&["--allow-unsigned"]);
    assert_eq!(c.verdict(), "clean");
}

/// A mount the policy expects (`[policy] mounts`): the walk goes into it
/// and checks what is below as usual.
#[test]
fn an_expected_mount_is_entered_and_checked() {
    let d = Dir::standard("adv-mount-expected");
    d.write("/data/seed", "seed\n");
    let config = d.write_outside("policy.toml", "[policy]\nmounts = [\"/data\"]\n");
    d.bake(&["--config", common::s(&config)]);
    d.check().assert_clean();
    let Some(_m) = Mounted::new(
        &["-t", "tmpfs", "-o", "size=1m,mode=0755", "adv-data"],
        &d.path("/data"),
    ) else {
        return;
    };
    // The volume holds the image's file, unchanged: clean.
    d.write("/data/seed", "seed\n");
    d.check().assert_clean();
    // Below it, drift is drift.
    d.write("/data/seed", "changed\n");
    d.write("/data/new", "x\n");
    d.check().assert_findings(
        1,
        &[
            exp("/data/new", "added", &[]),
            exp("/data/seed", "modified", &["content", "size"]),
        ],
    );
}

/// The agent sees a mount as soon as it happens (inotify reports none): the
/// mount table is watched and a change means a full rescan.
#[test]
fn the_agent_declares_a_new_mount_drifted_within_seconds() {
    let d = Dir::standard("adv-mount-agent");
    d.mkdir("/usr/local/bin");
    d.bake_and_assert_clean(&[]);
    if common::skip_unless_root("mounting") {
        return;
    }
    let mut a = Launch::new(&d).start();
    a.wait_ready();
    a.wait_metrics("clean", |m| m.verdict("clean") == 1.0);
    let Some(_m) = Mounted::new(
        &["-t", "tmpfs", "-o", "size=1m,mode=0755", "adv-agent"],
        &d.path("/usr/local/bin"),
    ) else {
        return;
    };
    let m = a.wait_drifted();
    assert!(m.rescans("mounts_changed") >= 1.0, "{m}");
    let s = a.status();
    assert!(
        agent_util::has_finding(&s, "/usr/local/bin", "metadata"),
        "{s}"
    );
}
