use super::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

fn opts(mode: u32) -> WriteOptions {
    WriteOptions {
        mode,
        owner_of_dir: false,
    }
}

fn mode_of(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A directory on tmpfs (which has O_TMPFILE) when there is one.
fn tmpfs_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    }
}

#[test]
fn replaces_whole_files_with_the_mode_asked_both_ways() {
    for tmpfile in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/file");
        write_by(&p, b"one", opts(0o600), tmpfile).unwrap();
        write_by(&p, b"two", opts(0o644), tmpfile).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(mode_of(&p), 0o644);
        assert_eq!(
            names(&dir.path().join("sub")),
            ["file"],
            "no temporary file"
        );
    }
}

#[test]
fn o_tmpfile_is_used_where_the_filesystem_has_it_and_the_fallback_when_forced() {
    let dir = tmpfs_dir();
    let p = dir.path().join("f");
    assert_eq!(
        write_by(&p, b"a", opts(0o640), true).unwrap(),
        Method::TmpFile
    );
    assert_eq!(mode_of(&p), 0o640);
    assert_eq!(
        write_by(&p, b"b", opts(0o600), false).unwrap(),
        Method::Named
    );
    assert_eq!(mode_of(&p), 0o600);
    assert_eq!(std::fs::read(&p).unwrap(), b"b");
    assert_eq!(names(dir.path()), ["f"]);
}

#[test]
fn no_temporary_file_is_left_when_a_write_fails() {
    for tmpfile in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        // The rename over a non-empty directory fails after the temporary
        // file was written and named.
        let target = dir.path().join("target");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("inside"), "x").unwrap();
        let e = write_by(&target, b"data", opts(0o600), tmpfile).unwrap_err();
        assert!(
            matches!(
                e.raw_os_error(),
                Some(n) if n == Errno::ISDIR.raw_os_error()
                    || n == Errno::NOTEMPTY.raw_os_error()
            ),
            "{e}"
        );
        assert_eq!(names(dir.path()), ["target"], "tmpfile={tmpfile}");
    }
    let dir = tempfile::tempdir().unwrap();
    for bad in ["..", ""] {
        assert!(write_atomic(&dir.path().join(bad), b"x", 0o600).is_err());
    }
    assert!(names(dir.path()).is_empty());
}

#[test]
fn a_symlink_at_the_target_is_replaced_not_followed() {
    for tmpfile in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let target = dir.path().join("target");
        std::os::unix::fs::symlink(&victim, &target).unwrap();
        write_by(&target, b"new", opts(0o600), tmpfile).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        let md = std::fs::symlink_metadata(&target).unwrap();
        assert!(md.file_type().is_file(), "tmpfile={tmpfile}");
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
    }
}

#[test]
fn temporary_names_are_random() {
    let a = random_name(b"state.json").unwrap();
    let b = random_name(b"state.json").unwrap();
    assert_ne!(a, b);
    assert!(a.starts_with(b".state.json.tmp.") && a.len() == ".state.json.tmp.".len() + 16);
    assert!(random_name(&[b'n'; 255]).unwrap().len() <= 255);
}

#[test]
fn owner_of_dir_gives_the_file_the_directory_s_owner() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("state.json");
    let o = WriteOptions {
        mode: 0o640,
        owner_of_dir: true,
    };
    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::chown(dir.path(), Some(65534), Some(65533)).unwrap();
        for tmpfile in [true, false] {
            write_by(&p, b"{}", o, tmpfile).unwrap();
            let md = std::fs::metadata(&p).unwrap();
            assert_eq!((md.uid(), md.gid(), mode_of(&p)), (65534, 65533, 0o640));
        }
    } else {
        // Our own directory: a no-op chown.
        write_atomic_with(&p, b"{}", o).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().uid(),
            rustix::process::geteuid().as_raw()
        );
    }
}

/// The umask is the process's: the writes run in a child (this test
/// binary, this test alone) under each umask, the parent checks.
const UMASK_ENV: &str = "DRIFTD_TEST_FSUTIL_UMASK";

#[test]
fn modes_are_exact_under_a_hostile_umask() {
    if let Some(spec) = std::env::var_os(UMASK_ENV) {
        let spec = spec.to_string_lossy().into_owned();
        let (mask, dir) = spec.split_once(':').unwrap();
        rustix::process::umask(Mode::from_raw_mode(u32::from_str_radix(mask, 8).unwrap()));
        let dir = PathBuf::from(dir);
        for (name, mode) in [("a", 0o600), ("b", 0o640), ("c", 0o644), ("d", 0o755)] {
            write_by(&dir.join(format!("t-{name}")), b"x", opts(mode), true).unwrap();
            write_by(&dir.join(format!("n-{name}")), b"x", opts(mode), false).unwrap();
        }
        if mask == "000" {
            write_atomic(&dir.join("new/sub/f"), b"x", 0o600).unwrap();
        }
        return;
    }
    for mask in ["000", "077", "777", "027"] {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "fsutil::tests::modes_are_exact_under_a_hostile_umask",
                "--test-threads=1",
            ])
            .env(UMASK_ENV, format!("{mask}:{}", dir.path().display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "umask {mask}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("1 passed"),
            "the child ran the test: {out:?}"
        );
        for (name, mode) in [("a", 0o600), ("b", 0o640), ("c", 0o644), ("d", 0o755)] {
            for way in ["t", "n"] {
                let p = dir.path().join(format!("{way}-{name}"));
                assert_eq!(mode_of(&p), mode, "umask {mask}: {p:?}");
            }
        }
        if mask == "000" {
            // Directories made on the way are never writable by others.
            for d in ["new", "new/sub"] {
                let m = mode_of(&dir.path().join(d));
                assert_eq!(m, 0o755, "umask 000: {d} is {m:o}");
            }
            assert_eq!(mode_of(&dir.path().join("new/sub/f")), 0o600);
        }
    }
}

// ------------------------------------------------------------ secrets

#[test]
fn the_secret_rule_for_each_mode() {
    let refused = [
        (0o100644, "is readable by others (mode 0644): chmod 0640"),
        (
            0o100666,
            "is readable and writable by others and writable by its group (mode 0666): chmod 0640",
        ),
        (0o100604, "is readable by others (mode 0604): chmod 0600"),
        (0o100602, "is writable by others (mode 0602): chmod 0600"),
        (0o100601, "is executable by others (mode 0601): chmod 0600"),
        (0o100660, "is writable by its group (mode 0660): chmod 0640"),
        (0o100620, "is writable by its group (mode 0620): chmod 0600"),
        (
            0o100677,
            "is readable, writable and executable by others and writable by its group (mode 0677): chmod 0640",
        ),
    ];
    for (mode, want) in refused {
        assert_eq!(
            secret_problem(mode, 0, 0).as_deref(),
            Some(want),
            "{mode:o}"
        );
    }
    for mode in [0o100640, 0o100600, 0o100440, 0o100400, 0o100700, 0o100750] {
        assert_eq!(secret_problem(mode, 0, 0), None, "{mode:o}");
        assert_eq!(secret_problem(mode, 998, 998), None, "own file, {mode:o}");
    }
    assert_eq!(
        secret_problem(0o100600, 65534, 0).as_deref(),
        Some("is owned by uid 65534, who could rewrite it (only root may own it) (mode 0600): chown root")
    );
    let other = secret_problem(0o100640, 1000, 998).unwrap();
    assert!(
        other.contains("uid 998, may own it") && other.ends_with("chown root"),
        "{other}"
    );
    let both = secret_problem(0o100644, 65534, 0).unwrap();
    assert!(both.ends_with(": chmod 0640 and chown root"), "{both}");
}

#[test]
fn read_secret_checks_the_opened_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("hook.secret");
    std::fs::write(&p, "s3cret\n").unwrap();
    for (mode, ok) in [(0o600, true), (0o640, true), (0o644, false), (0o660, false)] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        match read_secret(&p, "webhook secret") {
            Ok(b) => {
                assert!(ok, "{mode:o} was read");
                assert_eq!(b, b"s3cret\n");
            }
            Err(e) => {
                assert!(!ok, "{mode:o}: {e}");
                let msg = e.to_string();
                assert!(
                    msg.starts_with(&format!("webhook secret {} is ", p.display())),
                    "{msg}"
                );
            }
        }
    }
    // Through a symlink (a Kubernetes secret volume): the target counts.
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&p, &link).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o440)).unwrap();
    assert_eq!(read_secret(&link, "x").unwrap(), b"s3cret\n");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o444)).unwrap();
    assert!(matches!(
        read_secret(&link, "x"),
        Err(SecretError::Unsafe { .. })
    ));

    let missing = read_secret(&dir.path().join("missing"), "signing key").unwrap_err();
    assert!(matches!(missing, SecretError::Io { .. }), "{missing}");
    assert!(
        missing.to_string().starts_with("read signing key "),
        "{missing}"
    );

    let e = read_secret(dir.path(), "x").unwrap_err();
    assert!(e.to_string().ends_with("is not a regular file"), "{e}");
    let fifo = dir.path().join("fifo");
    rustix::fs::mknodat(
        CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let e = read_secret(&fifo, "x").unwrap_err();
    assert!(e.to_string().ends_with("is not a regular file"), "{e}");

    let big = dir.path().join("big");
    std::fs::write(&big, vec![b'k'; SECRET_MAX as usize + 1]).unwrap();
    std::fs::set_permissions(&big, std::fs::Permissions::from_mode(0o600)).unwrap();
    let e = read_secret(&big, "x").unwrap_err();
    assert!(e.to_string().contains("is larger than 1024 KiB"), "{e}");

    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::chown(&p, Some(65534), None).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = read_secret(&p, "x").unwrap_err();
        assert!(e.to_string().contains("owned by uid 65534"), "{e}");
    }
}
