//! Helpers shared by the integration tests, in the style of ripgrep's
//! `tests/util.rs`: a [`Dir`] is a fresh temporary directory holding an image
//! root (`<dir>/root`) and room for manifests, keys and configs beside it;
//! every command runs the real `driftd` binary with a hard timeout.
//!
//! Conventions for the test files:
//! - paths in assertions are image paths (`/etc/passwd`), escaped the way
//!   driftd reports them;
//! - a regression test is named after what broke
//!   (`unreadable_dir_children_are_not_reported_removed`), never after an
//!   issue number alone;
//! - a case that needs root calls [`skip_unless_root`] first and returns
//!   when it says so; a case that cannot run for another reason calls
//!   [`skip`]. Both fail the test instead when `CI` is set: a green CI run
//!   means every case ran in full, never that some quietly skipped.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

pub mod trees;

use serde_json::Value;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Every child is killed (and the test fails) after this long.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// The driftd binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_driftd");

/// A (temp) path as the `&str` a command line wants.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// Finding kinds, as reports and the `kind` label spell them.
pub const FINDING_KINDS: [&str; 6] = [
    "added",
    "removed",
    "modified",
    "metadata",
    "type",
    "unreadable",
];

/// The uid/gid the "unreadable" cases run as.
pub const NOBODY: u32 = 65534;

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// True when the `CI` environment variable is set: there a test that
/// cannot do its whole job (no root, a missing tool) fails instead of
/// skipping, so a green run means every case ran.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// The name of the running test (its thread's name).
fn test_name() -> String {
    std::thread::current().name().unwrap_or("?").to_owned()
}

/// A case (or part of one) cannot run here because `why`: fail under CI,
/// else print a SKIP line. Callers then return (or leave the part out).
pub fn skip(why: &str) {
    let test = test_name();
    assert!(
        !in_ci(),
        "{test}: {why}; CI is set, so this fails instead of skipping"
    );
    eprintln!("SKIP {test}: {why} (CI fails instead)");
}

/// True (after printing why) when the test must be skipped because it
/// needs root. Use as `if skip_unless_root("mknod") { return; }`. Under CI
/// (`CI` set) a run without root fails here instead: CI runs as root, and
/// a root-only case that quietly skips would make a green run a lie.
pub fn skip_unless_root(what: &str) -> bool {
    if is_root() {
        return false;
    }
    skip(&format!(
        "{what} needs root (euid {}); run the tests as root, as CI does",
        rustix::process::geteuid().as_raw()
    ));
    true
}

/// `driftd check --manifest M --root R --format json EXTRA...` (give
/// `--allow-unsigned` or `--trusted-key` in `extra`): the parsed report,
/// with exit status, verdict and summary already checked for consistency.
pub fn check_json(manifest: &Path, root: &Path, extra: &[&str]) -> Check {
    Check::from_output(run(driftd()
        .arg("check")
        .arg("--manifest")
        .arg(manifest)
        .arg("--root")
        .arg(root)
        .args(["--format", "json"])
        .args(extra)))
}

/// [`check_json`] as the bare (exit status, JSON) pair.
pub fn check_code_json(manifest: &Path, root: &Path, extra: &[&str]) -> (i32, Value) {
    let c = check_json(manifest, root, extra);
    (c.code(), c.json)
}

/// A `driftd` command with no arguments yet.
pub fn driftd() -> Command {
    Command::new(BIN)
}

/// What a finished child did.
#[derive(Debug, Clone)]
pub struct Output {
    pub cmdline: String,
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Output {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Panic (with everything printed) unless the exit status is `code`.
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit status\n{self}");
        self
    }

    /// Panic unless stderr contains `needle`.
    pub fn assert_stderr_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n{self}"
        );
        self
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{self}"))
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "command: {}\nexit status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmdline,
            self.code,
            String::from_utf8_lossy(&self.stdout),
            self.stderr
        )
    }
}

fn cmdline(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&format!("{:?}", a.to_string_lossy()));
    }
    s
}

/// Run `cmd` to completion with [`TIMEOUT`]: the child is killed and the
/// test fails if it takes longer. Any exit by a signal or a Rust panic
/// message on stderr also fails the test: driftd must never crash, whatever
/// the tree holds.
pub fn run(cmd: &mut Command) -> Output {
    let line = cmdline(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {line}: {e}"));
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                let stderr = err_t.join().unwrap_or_default();
                panic!(
                    "timed out after {TIMEOUT:?} (child killed): {line}\n--- stderr ---\n{}",
                    String::from_utf8_lossy(&stderr)
                );
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("wait for {line}: {e}"),
        }
    };
    let stdout = out_t.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&err_t.join().unwrap_or_default()).into_owned();
    let o = Output {
        cmdline: line,
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    };
    assert!(
        status.code().is_some(),
        "killed by a signal ({status})\n{o}"
    );
    assert!(
        o.code != 101 && !o.stderr.contains("panicked"),
        "driftd panicked\n{o}"
    );
    o
}

/// `driftd ARGS...` to completion.
pub fn driftd_run<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(driftd().args(args))
}

/// Turn an image path (`/etc/passwd`, any bytes) into a path relative to the
/// root (`etc/passwd`).
fn rel(image_path: &[u8]) -> &OsStr {
    let p = image_path.strip_prefix(b"/").unwrap_or(image_path);
    OsStr::from_bytes(p)
}

/// A temporary directory for one test: `root/` is the image, everything
/// else lives beside it (outside the scanned tree).
pub struct Dir {
    _tmp: tempfile::TempDir,
    /// The temporary directory itself.
    pub base: PathBuf,
    /// The image root.
    pub root: PathBuf,
    /// Where [`Dir::bake`] writes and [`Dir::check`] reads the manifest.
    pub manifest: PathBuf,
}

impl Dir {
    /// An empty root in a fresh directory named after the test.
    pub fn new(name: &str) -> Dir {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("{name}-"))
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("create temp dir");
        let base = tmp.path().to_path_buf();
        let root = base.join("root");
        std::fs::create_dir(&root).expect("create root");
        chmod_path(&root, 0o755);
        Dir {
            manifest: base.join("manifest.zst"),
            _tmp: tmp,
            base,
            root,
        }
    }

    /// A root holding the small standard image most cases start from:
    ///
    /// ```text
    /// /etc/passwd              0644
    /// /etc/machine-id          0444  (allow.content_may_differ, may_appear)
    /// /etc/ssh/sshd_config     0644
    /// /usr/bin/tool            0755
    /// /usr/bin/alias -> tool
    /// /usr/lib/libx.so         0644
    /// /srv/share/              0755
    /// /var/lib/app/data        0644
    /// /var/lib/app/sub/more    0644
    /// /tmp/scratch             0644  (excluded by default)
    /// ```
    pub fn standard(name: &str) -> Dir {
        let d = Dir::new(name);
        d.write("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
        d.write("/etc/machine-id", "0123456789abcdef0123456789abcdef\n");
        d.chmod("/etc/machine-id", 0o444);
        d.write("/etc/ssh/sshd_config", "PermitRootLogin no\n");
        d.write("/usr/bin/tool", "#!/bin/sh\necho tool\n");
        d.chmod("/usr/bin/tool", 0o755);
        d.symlink("tool", "/usr/bin/alias");
        d.write(
            "/usr/lib/libx.so",
            b"\x7fELF\x02\x01\x01\0library".as_slice(),
        );
        d.mkdir("/srv/share");
        d.write("/var/lib/app/data", "state 1\n");
        d.write("/var/lib/app/sub/more", "more\n");
        d.write("/tmp/scratch", "scratch\n");
        d
    }

    /// The on-disk path of an image path.
    pub fn path(&self, image_path: impl AsRef<[u8]>) -> PathBuf {
        self.root.join(rel(image_path.as_ref()))
    }

    /// A path beside the root (not scanned).
    pub fn outside(&self, name: &str) -> PathBuf {
        self.base.join(name)
    }

    /// Create parent directories (0755) of an image path.
    fn parents(&self, image_path: &[u8]) {
        if let Some(parent) = self.path(image_path).parent() {
            std::fs::create_dir_all(parent).expect("create parent directories");
        }
    }

    /// Write a regular file (mode 0644, parents created).
    pub fn write(&self, image_path: impl AsRef<[u8]>, content: impl AsRef<[u8]>) {
        let p = image_path.as_ref();
        self.parents(p);
        let path = self.path(p);
        std::fs::write(&path, content).unwrap_or_else(|e| panic!("write {path:?}: {e}"));
        chmod_path(&path, 0o644);
    }

    /// Replace a file's content in place (same inode, mode kept).
    pub fn rewrite(&self, image_path: impl AsRef<[u8]>, content: impl AsRef<[u8]>) {
        let path = self.path(image_path);
        std::fs::write(&path, content).unwrap_or_else(|e| panic!("rewrite {path:?}: {e}"));
    }

    /// Append to a file in place (same inode, mode kept).
    pub fn append(&self, image_path: impl AsRef<[u8]>, bytes: &[u8]) {
        use std::io::Write;
        let p = self.path(image_path);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap_or_else(|e| panic!("open {p:?} for append: {e}"));
        f.write_all(bytes)
            .unwrap_or_else(|e| panic!("append to {p:?}: {e}"));
    }

    pub fn read(&self, image_path: impl AsRef<[u8]>) -> Vec<u8> {
        let path = self.path(image_path);
        std::fs::read(&path).unwrap_or_else(|e| panic!("read {path:?}: {e}"))
    }

    /// Create a directory (mode 0755, parents created).
    pub fn mkdir(&self, image_path: impl AsRef<[u8]>) {
        let path = self.path(image_path);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {path:?}: {e}"));
        chmod_path(&path, 0o755);
    }

    pub fn symlink(&self, target: impl AsRef<[u8]>, image_path: impl AsRef<[u8]>) {
        let p = image_path.as_ref();
        self.parents(p);
        let path = self.path(p);
        std::os::unix::fs::symlink(OsStr::from_bytes(target.as_ref()), &path)
            .unwrap_or_else(|e| panic!("symlink {path:?}: {e}"));
    }

    pub fn hard_link(&self, existing: impl AsRef<[u8]>, image_path: impl AsRef<[u8]>) {
        let (from, to) = (self.path(existing), self.path(image_path));
        std::fs::hard_link(&from, &to).unwrap_or_else(|e| panic!("link {from:?} {to:?}: {e}"));
    }

    pub fn chmod(&self, image_path: impl AsRef<[u8]>, mode: u32) {
        chmod_path(&self.path(image_path), mode);
    }

    pub fn mode(&self, image_path: impl AsRef<[u8]>) -> u32 {
        let path = self.path(image_path);
        std::fs::symlink_metadata(&path)
            .unwrap_or_else(|e| panic!("stat {path:?}: {e}"))
            .permissions()
            .mode()
            & 0o7777
    }

    /// `lchown`: change owner and/or group without following symlinks.
    pub fn chown(&self, image_path: impl AsRef<[u8]>, uid: Option<u32>, gid: Option<u32>) {
        let path = self.path(image_path);
        std::os::unix::fs::lchown(&path, uid, gid)
            .unwrap_or_else(|e| panic!("chown {path:?}: {e}"));
    }

    /// Remove a file, symlink, special file or whole directory tree.
    pub fn remove(&self, image_path: impl AsRef<[u8]>) {
        let path = self.path(image_path);
        let md = std::fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("stat {path:?}: {e}"));
        let r = if md.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        r.unwrap_or_else(|e| panic!("remove {path:?}: {e}"));
    }

    pub fn fifo(&self, image_path: impl AsRef<[u8]>) {
        self.mknod(image_path.as_ref(), rustix::fs::FileType::Fifo, 0);
    }

    /// A character device node (needs root).
    pub fn char_device(&self, image_path: impl AsRef<[u8]>, major: u32, minor: u32) {
        let dev = rustix::fs::makedev(major, minor);
        self.mknod(
            image_path.as_ref(),
            rustix::fs::FileType::CharacterDevice,
            dev,
        );
    }

    /// A special file (mode 0644, parents created).
    fn mknod(&self, image_path: &[u8], kind: rustix::fs::FileType, dev: rustix::fs::Dev) {
        self.parents(image_path);
        let path = self.path(image_path);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &path,
            kind,
            rustix::fs::Mode::from_raw_mode(0o644),
            dev,
        )
        .unwrap_or_else(|e| panic!("mknod {path:?} ({kind:?}, dev {dev:#x}): {e}"));
    }

    /// A Unix socket bound at the path (the listener is dropped; the socket
    /// file stays). Bound through `/proc/self/fd/N/name` so that a long
    /// temporary directory cannot exceed `sun_path`'s 108 bytes.
    pub fn socket(&self, image_path: impl AsRef<[u8]>) {
        let p = image_path.as_ref();
        self.parents(p);
        let path = self.path(p);
        let parent = std::fs::File::open(path.parent().expect("socket parent"))
            .unwrap_or_else(|e| panic!("open parent of {path:?}: {e}"));
        let mut short = OsString::from(format!(
            "/proc/self/fd/{}/",
            std::os::fd::AsRawFd::as_raw_fd(&parent)
        ));
        short.push(path.file_name().expect("socket name"));
        std::os::unix::net::UnixListener::bind(&short)
            .unwrap_or_else(|e| panic!("bind socket {path:?} (via {short:?}): {e}"));
        assert!(
            std::fs::symlink_metadata(&path).is_ok(),
            "socket {path:?} not created"
        );
    }

    pub fn set_xattr(&self, image_path: impl AsRef<[u8]>, name: &str, value: &[u8]) {
        let path = self.path(image_path);
        rustix::fs::lsetxattr(&path, name, value, rustix::fs::XattrFlags::empty())
            .unwrap_or_else(|e| panic!("setxattr {name} on {path:?}: {e}"));
    }

    pub fn remove_xattr(&self, image_path: impl AsRef<[u8]>, name: &str) {
        let path = self.path(image_path);
        rustix::fs::lremovexattr(&path, name)
            .unwrap_or_else(|e| panic!("removexattr {name} on {path:?}: {e}"));
    }

    /// Write a file beside the root (configs, keys, secrets).
    pub fn write_outside(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.outside(name);
        std::fs::write(&p, content).unwrap_or_else(|e| panic!("write {p:?}: {e}"));
        p
    }

    /// `driftd bake --root ROOT --output MANIFEST EXTRA...`, which must
    /// succeed.
    pub fn bake(&self, extra: &[&str]) -> Output {
        self.bake_to(&self.manifest, extra)
    }

    /// Bake into another manifest file; must succeed.
    pub fn bake_to(&self, manifest: &Path, extra: &[&str]) -> Output {
        let o = self.try_bake_to(manifest, extra);
        o.assert_code(0);
        assert!(manifest.is_file(), "bake wrote no manifest\n{o}");
        o
    }

    /// Bake, whatever the outcome.
    pub fn try_bake_to(&self, manifest: &Path, extra: &[&str]) -> Output {
        run(driftd()
            .arg("bake")
            .arg("--root")
            .arg(&self.root)
            .arg("--output")
            .arg(manifest)
            .args(extra))
    }

    /// Bake and sign with `secret`.
    pub fn bake_signed(&self, secret: &Path) -> Output {
        self.bake_to(
            &self.manifest,
            &["--signing-key", secret.to_str().expect("UTF-8 key path")],
        )
    }

    /// `driftd check --allow-unsigned --format json` of the root against
    /// the manifest.
    pub fn check(&self) -> Check {
        self.check_with(&["--allow-unsigned"])
    }

    /// `driftd check --manifest M --root R --format json EXTRA...`.
    pub fn check_with(&self, extra: &[&str]) -> Check {
        Check::from_output(run(&mut self.check_command(extra)))
    }

    /// The command line of [`Dir::check_with`], to run it some other way.
    pub fn check_command(&self, extra: &[&str]) -> Command {
        let mut c = driftd();
        c.args(self.check_args(extra));
        c
    }

    /// The arguments of [`Dir::check_with`].
    pub fn check_args(&self, extra: &[&str]) -> Vec<OsString> {
        let mut v: Vec<OsString> = vec!["check".into(), "--manifest".into()];
        v.push(self.manifest.clone().into_os_string());
        v.push("--root".into());
        v.push(self.root.clone().into_os_string());
        v.extend(["--format", "json"].map(OsString::from));
        v.extend(extra.iter().map(OsString::from));
        v
    }

    /// [`Dir::check`] run as `nobody`; call [`prepare_for_nobody`] first.
    pub fn check_as_nobody(&self) -> Check {
        let mut c = driftd_as_nobody();
        c.args(self.check_args(&["--allow-unsigned"]));
        Check::from_output(run(&mut c))
    }

    /// Bake the current tree and assert that checking it right away is
    /// clean: the precondition of every tamper case.
    pub fn bake_and_assert_clean(&self, extra: &[&str]) {
        self.bake(extra);
        self.check().assert_clean();
    }

    /// The parsed manifest written by [`Dir::bake`].
    pub fn manifest(&self) -> driftd::manifest::Manifest {
        load_manifest(&self.manifest)
    }

    /// `driftd keygen` into `<base>/<name>.sec` and `<base>/<name>.pub`.
    pub fn keygen(&self, name: &str) -> (PathBuf, PathBuf) {
        let sec = self.outside(&format!("{name}.sec"));
        let public = self.outside(&format!("{name}.pub"));
        run(driftd()
            .arg("keygen")
            .arg("--secret-key")
            .arg(&sec)
            .arg("--public-key")
            .arg(&public))
        .assert_code(0);
        (sec, public)
    }

    /// Make the base, the root and everything in it readable and searchable
    /// by everyone (so a run as `nobody` fails only where a test wants).
    pub fn make_world_readable(&self) {
        chmod_path(&self.base, 0o755);
        walk(&self.base, &mut |p, md| {
            let m = md.permissions().mode() & 0o7777;
            if md.is_dir() {
                chmod_path(p, m | 0o755);
            } else if md.is_file() {
                chmod_path(p, m | 0o444);
            }
        });
    }
}

/// Parse a manifest file with the library (digest verified).
pub fn load_manifest(path: &Path) -> driftd::manifest::Manifest {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {path:?}: {e}"));
    driftd::manifest::Manifest::from_bytes(&bytes)
        .unwrap_or_else(|e| panic!("parse manifest {path:?}: {e}"))
}

fn walk(dir: &Path, f: &mut dyn FnMut(&Path, &std::fs::Metadata)) {
    for item in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("list {dir:?}: {e}")) {
        let p = item.expect("directory entry").path();
        let md = std::fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("stat {p:?}: {e}"));
        f(&p, &md);
        if md.is_dir() {
            walk(&p, f);
        }
    }
}

pub fn chmod_path(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {path:?}: {e}"));
}

/// An image path from raw bytes, for names that are not UTF-8.
pub fn bytes_path(b: &[u8]) -> PathBuf {
    PathBuf::from(OsString::from_vec(b.to_vec()))
}

/// One expected finding: escaped path, kind, attribute names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Expect {
    pub path: String,
    pub kind: String,
    pub attributes: Vec<String>,
}

/// Shorthand for an [`Expect`].
pub fn exp(path: &str, kind: &str, attributes: &[&str]) -> Expect {
    Expect {
        path: path.into(),
        kind: kind.into(),
        attributes: attributes.iter().map(|s| s.to_string()).collect(),
    }
}

/// The outcome of `driftd check --format json`.
pub struct Check {
    pub output: Output,
    pub json: Value,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "command: {}\nexit status: {}\n--- JSON ---\n{}\n--- stderr ---\n{}",
            self.output.cmdline,
            self.output.code,
            serde_json::to_string_pretty(&self.json).unwrap_or_default(),
            self.output.stderr
        )
    }
}

impl Check {
    /// Parse the JSON report; panics (printing everything) if there is none.
    pub fn from_output(output: Output) -> Check {
        let json = output.json();
        let c = Check { output, json };
        c.assert_consistent();
        c
    }

    pub fn code(&self) -> i32 {
        self.output.code
    }

    pub fn verdict(&self) -> &str {
        self.json["verdict"].as_str().unwrap_or("")
    }

    pub fn findings_json(&self) -> &[Value] {
        self.json["findings"]
            .as_array()
            .map(|v| v.as_slice())
            .unwrap_or_else(|| panic!("no findings array\n{self}"))
    }

    /// The findings as sorted (path, kind, attributes).
    pub fn findings(&self) -> Vec<Expect> {
        let mut v: Vec<Expect> = self
            .findings_json()
            .iter()
            .map(|f| Expect {
                path: f["path"].as_str().unwrap_or("").into(),
                kind: f["kind"].as_str().unwrap_or("").into(),
                attributes: f["attributes"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|s| s.as_str().unwrap_or("").to_string())
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect();
        v.sort();
        v
    }

    /// The findings for one (escaped) path.
    pub fn findings_for(&self, path: &str) -> Vec<&Value> {
        self.findings_json()
            .iter()
            .filter(|f| f["path"] == path)
            .collect()
    }

    /// The single finding for one (escaped) path.
    pub fn finding(&self, path: &str) -> &Value {
        let v = self.findings_for(path);
        assert_eq!(v.len(), 1, "expected one finding for {path:?}\n{self}");
        v[0]
    }

    /// The `changes[]` entry of a finding for one attribute:
    /// (expected, actual).
    pub fn change(&self, path: &str, attribute: &str) -> (Value, Value) {
        let f = self.finding(path);
        let c = f["changes"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["attribute"] == attribute))
            .unwrap_or_else(|| panic!("no change of {attribute} for {path:?}\n{self}"));
        (c["expected"].clone(), c["actual"].clone())
    }

    /// Exit status, verdict and summary agree with each other and with the
    /// findings (checked for every report).
    fn assert_consistent(&self) {
        let verdict = self.verdict();
        let expected_code = match verdict {
            "clean" => 0,
            "drifted" => 1,
            "unknown" => 2,
            other => panic!("unknown verdict {other:?}\n{self}"),
        };
        assert_eq!(
            self.code(),
            expected_code,
            "exit status does not match verdict\n{self}"
        );
        let n = self.findings_json().len() as u64;
        assert_eq!(
            self.json["summary"]["findings"].as_u64(),
            Some(n),
            "summary.findings disagrees with findings[]\n{self}"
        );
        for kind in FINDING_KINDS {
            let count = self
                .findings_json()
                .iter()
                .filter(|f| f["kind"] == kind)
                .count() as u64;
            assert_eq!(
                self.json["summary"][kind].as_u64(),
                Some(count),
                "summary.{kind} disagrees with findings[]\n{self}"
            );
        }
        let drift = self
            .findings_json()
            .iter()
            .any(|f| f["kind"] != "unreadable");
        let want = if drift {
            "drifted"
        } else if n > 0 {
            "unknown"
        } else {
            "clean"
        };
        assert_eq!(
            verdict, want,
            "verdict does not follow the findings\n{self}"
        );
    }

    /// Exit 0, verdict clean, no findings.
    pub fn assert_clean(&self) -> &Self {
        assert!(
            self.code() == 0 && self.verdict() == "clean" && self.findings_json().is_empty(),
            "expected a clean check\n{self}"
        );
        self
    }

    /// Exactly these findings (in any order) and this exit status.
    pub fn assert_findings(&self, code: i32, expected: &[Expect]) -> &Self {
        let mut want = expected.to_vec();
        want.sort();
        assert_eq!(
            self.findings(),
            want,
            "finding set differs (left: actual, right: expected)\n{self}"
        );
        assert_eq!(self.code(), code, "unexpected exit status\n{self}");
        self
    }
}

fn setpriv() -> Option<&'static str> {
    ["/usr/bin/setpriv", "/bin/setpriv", "/usr/sbin/setpriv"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

/// `program` run as uid/gid 65534 with no supplementary groups, through
/// `setpriv` (util-linux). Call [`prepare_for_nobody`] first.
pub fn as_nobody(program: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new(setpriv().expect("setpriv (checked by prepare_for_nobody)"));
    c.arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"))
        .arg("--clear-groups")
        .arg(program);
    c
}

/// A `driftd` command run as `nobody` (see [`as_nobody`]).
pub fn driftd_as_nobody() -> Command {
    as_nobody(BIN)
}

/// Make `dir` world-readable (see [`Dir::make_world_readable`]) and make
/// sure `nobody` can run driftd on it. False (after printing why) when that
/// is impossible here: not root, no `setpriv` (util-linux), or the binary
/// or the directory lies below a directory `nobody` cannot search. Make
/// paths private only after this call.
pub fn prepare_for_nobody(dir: &Dir) -> bool {
    if skip_unless_root("running driftd as nobody") {
        return false;
    }
    if setpriv().is_none() {
        skip("setpriv (util-linux) is not installed");
        return false;
    }
    dir.make_world_readable();
    let probe = run(driftd_as_nobody().arg("--version"));
    if probe.code != 0 {
        skip(&format!(
            "uid {NOBODY} cannot run {BIN} (a parent directory is not world-searchable: \
             put the checkout where everyone may search, e.g. not below /root)\n{probe}"
        ));
        return false;
    }
    let probe = run(as_nobody("/bin/sh")
        .args(["-c", "test -r \"$1\" && test -x \"$1\"", "sh"])
        .arg(&dir.root));
    if probe.code != 0 {
        skip(&format!(
            "uid {NOBODY} cannot read {:?} (a parent directory is not world-searchable: \
             put the checkout where everyone may search, e.g. not below /root)",
            dir.root
        ));
        return false;
    }
    true
}

/// The path of `name` on PATH. If it is missing: fail under CI, else print a
/// SKIP line and return `None`.
pub fn tool(name: &str, package: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| {
                use std::os::unix::fs::PermissionsExt;
                p.metadata()
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
    });
    if found.is_none() {
        let test = test_name();
        assert!(
            !in_ci(),
            "{test}: `{name}` is not on PATH, but CI is set and .ci/setup installs it \
             (apt-get install --no-install-recommends {package})"
        );
        eprintln!(
            "SKIP {test}: `{name}` is not on PATH \
             (apt-get install --no-install-recommends {package}; CI fails instead)"
        );
    }
    found
}

// ---------------------------------------------------------------- stand-in servers

/// A local TCP server for the tests' stand-ins (a webhook receiver, a
/// Kubernetes API server, an instance-metadata service): it listens on a
/// free port of 127.0.0.1 and hands each connection, with its arrival time
/// and the server's stop flag, to `serve` on a thread of its own. Dropping
/// it sets the flag (a handler that holds a connection open must return
/// once it is set), stops accepting and joins every thread.
pub struct LocalServer {
    pub port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>>,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

impl LocalServer {
    pub fn start<F>(what: &str, serve: F) -> LocalServer
    where
        F: Fn(std::net::TcpStream, Instant, &std::sync::atomic::AtomicBool) + Send + Sync + 'static,
    {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("bind {what} on 127.0.0.1: {e}"));
        let port = listener.local_addr().expect("local address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<std::thread::JoinHandle<()>>>> = Arc::default();
        let serve = Arc::new(serve);
        let (st, cs) = (stop.clone(), conns.clone());
        let acceptor = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = conn else { continue };
                let at = Instant::now();
                let (serve, st2) = (serve.clone(), st.clone());
                let h = std::thread::spawn(move || serve(stream, at, &st2));
                cs.lock().unwrap_or_else(|p| p.into_inner()).push(h);
            }
        });
        LocalServer {
            port,
            stop,
            conns,
            acceptor: Some(acceptor),
        }
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the blocking accept so that it sees the flag.
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        let conns = std::mem::take(&mut *self.conns.lock().unwrap_or_else(|p| p.into_inner()));
        for c in conns {
            let _ = c.join();
        }
    }
}
