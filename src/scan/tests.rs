//! Unit tests of the scanner: pacing, the fd-relative walk and its
//! descriptor budget, targeted starts, and xattrs read through O_PATH.

use super::*;
use crate::manifest::FileKind;
use crate::policy::{CompiledPolicy, Policy};

#[test]
fn the_pacer_is_charged_what_was_read_not_the_buffer_size() {
    // 200 small files and one of three buffers and a bit: a scan must
    // charge exactly their bytes (charging a buffer per read made a
    // host of small files scan 100 times slower than its rate limit).
    let dir = tempfile::tempdir().unwrap();
    let mut total = 0u64;
    for i in 0..200u64 {
        let body = vec![b'x'; (i % 7 + 1) as usize];
        total += body.len() as u64;
        std::fs::write(dir.path().join(format!("f{i}")), body).unwrap();
    }
    let big = vec![7u8; 3 * 256 * 1024 + 5];
    total += big.len() as u64;
    std::fs::write(dir.path().join("big"), big).unwrap();
    let policy = CompiledPolicy::new(Policy::default(), "policy").unwrap();
    let pacer = Arc::new(Pacer::new(u64::MAX));
    let control = ScanControl {
        pacer: Some(pacer.clone()),
        ..ScanControl::default()
    };
    let opts = ScanOptions {
        root: dir.path(),
        policy: &policy,
        threads: 2,
    };
    let stats = scan_with(&opts, &control, &mut |_| {}).unwrap();
    assert_eq!(stats.bytes_hashed, total);
    assert_eq!(pacer.charged(), total);
}

// ---------------------------------------------------------------- helpers

fn default_policy() -> CompiledPolicy {
    CompiledPolicy::new(Policy::default(), "policy").unwrap()
}

/// Every event of a scan of `root` (from `start`, if given), sorted, and
/// the bytes the hashing threads read.
fn events(root: &Path, start: Option<&str>) -> (Vec<ScanEvent>, u64) {
    let policy = default_policy();
    let pacer = Arc::new(Pacer::new(u64::MAX));
    let control = ScanControl {
        start: start.map(|s| s.as_bytes().into()),
        pacer: Some(pacer.clone()),
        ..ScanControl::default()
    };
    let opts = ScanOptions {
        root,
        policy: &policy,
        threads: 2,
    };
    let mut out = Vec::new();
    scan_with(&opts, &control, &mut |ev| out.push(ev)).unwrap();
    out.sort_by(|a, b| path_of(a).cmp(path_of(b)));
    (out, pacer.charged())
}

fn path_of(ev: &ScanEvent) -> &[u8] {
    match ev {
        ScanEvent::Entry { entry, .. } | ScanEvent::Partial { entry, .. } => &entry.path,
        ScanEvent::Unreadable { path, .. } => path,
    }
}

fn entry<'a>(evs: &'a [ScanEvent], path: &str) -> &'a Entry {
    evs.iter()
        .find_map(|ev| match ev {
            ScanEvent::Entry { entry, .. } if *entry.path == *path.as_bytes() => Some(entry),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no entry for {path} in {evs:#?}"))
}

/// True when running as root. Otherwise prints SKIP and returns false,
/// except under `CI` (which runs as root), where skipping would hide a
/// missing proof: there it fails.
fn root_or_skip(what: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{what} needs root; CI runs the tests as root, so this fails instead of skipping"
    );
    eprintln!("SKIP: {what} needs root (under CI this fails instead)");
    false
}

fn write(p: &Path, body: &[u8]) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, body).unwrap();
}

// ---------------------------------------------------------------- targeted starts

/// Regression: the start's parent was opened by its full path, so only the
/// last component was `O_NOFOLLOW`: a symlinked ancestor was followed and
/// whatever it pointed to (inside or outside the root) was read and
/// reported under the start's name.
#[test]
fn a_targeted_start_under_a_symlinked_ancestor_yields_nothing_and_reads_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    write(&root.join("real/deeper/x"), b"inside the root\n");
    write(&outside.join("deeper/x"), b"a secret outside the root\n");
    std::fs::create_dir_all(root.join("mid")).unwrap();
    std::os::unix::fs::symlink("../real", root.join("mid/link")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("abs")).unwrap();
    std::os::unix::fs::symlink("real", root.join("top")).unwrap();
    for start in [
        "/mid/link/deeper/x",
        "/mid/link/deeper",
        "/abs/deeper/x",
        "/abs/deeper",
        "/top/deeper/x",
    ] {
        let (evs, read) = events(&root, Some(start));
        assert!(evs.is_empty(), "start {start}: {evs:#?}");
        assert_eq!(read, 0, "start {start}: a symlink's target was read");
    }
    // The same start through real directories is seen and read: the
    // harness can see what the cases above must not.
    let (evs, read) = events(&root, Some("/real/deeper/x"));
    assert_eq!(
        entry(&evs, "/real/deeper/x").kind,
        crate::manifest::FileKind::File
    );
    assert_eq!(read, 16);
    // A start that is itself a symlink is reported as the link.
    let (evs, read) = events(&root, Some("/abs"));
    assert_eq!(entry(&evs, "/abs").kind, crate::manifest::FileKind::Symlink);
    assert_eq!((evs.len(), read), (1, 0), "{evs:#?}");
}

#[test]
fn a_targeted_start_that_is_not_a_plain_path_yields_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    write(&root.join("a/x"), b"x\n");
    write(&tmp.path().join("beside"), b"outside the root\n");
    for start in ["/a/../a/x", "/../beside", "/a/./x", "/a//x", "a/x", "/a/"] {
        let (evs, read) = events(&root, Some(start));
        assert!(evs.is_empty() && read == 0, "start {start:?}: {evs:#?}");
    }
    assert_eq!(events(&root, Some("/a/x")).0.len(), 1);
}

// ---------------------------------------------------------------- depth and the budget

/// Below `dir`, `depth` levels `/d/d/...`: each holds files and a side
/// directory with a file of its own (a distinct parent for its job), all
/// named after the level so that the listing order differs from level to
/// level: some names come after `d`, and the walk must return to levels
/// whose descriptors it closed.
fn deep_tree(dir: &Path, depth: usize) -> Vec<(String, Option<[u8; 32]>)> {
    let mut expected = vec![("/".to_string(), None)];
    let mut rel = String::new();
    for i in 0..depth {
        expected.push((format!("{rel}/s{i}"), None));
        for name in ["a", "m", "z", "q"]
            .map(|n| format!("{n}{i}"))
            .into_iter()
            .chain([format!("s{i}/x")])
        {
            let body = format!("{name} at level {i}\n");
            write(&dir.join(format!(".{rel}/{name}")), body.as_bytes());
            let hash = *blake3::hash(body.as_bytes()).as_bytes();
            expected.push((format!("{rel}/{name}"), Some(hash)));
        }
        rel.push_str("/d");
        std::fs::create_dir(dir.join(format!(".{rel}"))).unwrap();
        expected.push((rel.clone(), None));
    }
    expected.sort();
    expected
}

#[test]
fn a_tree_deeper_than_the_held_descriptors_scans_completely() {
    let tmp = tempfile::tempdir().unwrap();
    let depth = 3 * HELD_DIRS + 7;
    let expected = deep_tree(tmp.path(), depth);
    let (evs, _) = events(tmp.path(), None);
    let got: Vec<(String, Option<[u8; 32]>)> = evs
        .iter()
        .map(|ev| match ev {
            ScanEvent::Entry { entry, .. } => {
                (String::from_utf8(entry.path.to_vec()).unwrap(), entry.hash)
            }
            ScanEvent::Partial { .. } | ScanEvent::Unreadable { .. } => {
                panic!("unreadable: {ev:?}")
            }
        })
        .collect();
    assert_eq!(got, expected);
    // A targeted start halfway down covers exactly its subtree.
    let start = "/d".repeat(depth / 2);
    let (evs, _) = events(tmp.path(), Some(&start));
    let below: Vec<&String> = expected
        .iter()
        .map(|(p, _)| p)
        .filter(|p| crate::manifest::paths::in_scope(p.as_bytes(), start.as_bytes()))
        .collect();
    let got: Vec<String> = evs
        .iter()
        .map(|ev| String::from_utf8(path_of(ev).to_vec()).unwrap())
        .collect();
    assert_eq!(got.iter().collect::<Vec<_>>(), below);
}

/// A chain `a/b/c/...` below a fresh directory, as levels pushed on an
/// [`Ancestors`] holding at most `held_max`.
fn chain(
    names: &[&str],
    held_max: usize,
) -> (tempfile::TempDir, dirfd::Ancestors, Arc<dirfd::Budget>) {
    let tmp = tempfile::tempdir().unwrap();
    let path: PathBuf = names
        .iter()
        .fold(tmp.path().to_path_buf(), |p, n| p.join(n));
    std::fs::create_dir_all(&path).unwrap();
    let root = rustix::fs::open(
        tmp.path(),
        OFlags::RDONLY | OFlags::DIRECTORY,
        Mode::empty(),
    )
    .unwrap();
    let (budget, root) = dirfd::with_root(DIR_FDS, root);
    let mut stack = dirfd::Ancestors::new(
        dirfd::Level::base(Box::from(&b"/"[..]), root.clone(), Vec::new()),
        held_max,
    );
    let control = ScanControl::default();
    let mut parent = root;
    let mut rel = String::new();
    for n in names {
        rel = format!("{rel}/{n}");
        let name = std::ffi::CString::new(*n).unwrap();
        let fd = dirfd::open_dir(&budget, &control, parent.as_fd(), &name).unwrap();
        let seen = Meta::from_stat(&rustix::fs::fstat(&fd).unwrap());
        stack.push(dirfd::Level::new(
            rel.as_bytes().into(),
            name,
            seen,
            fd.clone(),
            Vec::new(),
        ));
        parent = fd;
    }
    (tmp, stack, budget)
}

use std::os::fd::AsFd;

#[test]
fn ancestors_beyond_the_limit_are_closed_and_reopened_as_the_same_directories() {
    let names = ["a", "b", "c", "d", "e", "f", "g"];
    let (tmp, mut stack, budget) = chain(&names, 3);
    assert_eq!(
        (stack.len(), stack.held()),
        (8, 3),
        "the base and the deepest two"
    );
    let control = ScanControl::default();
    stack.pop();
    stack.pop();
    stack.pop(); // back at /a/b/c/d, closed
    assert_eq!(stack.held(), 1);
    let fd = stack.top_fd(&budget, &control).unwrap();
    let want = std::fs::metadata(tmp.path().join("a/b/c/d")).unwrap();
    let got = rustix::fs::fstat(&*fd).unwrap();
    assert_eq!(
        (got.st_dev as u64, got.st_ino as u64),
        (
            std::os::unix::fs::MetadataExt::dev(&want),
            std::os::unix::fs::MetadataExt::ino(&want)
        )
    );
    assert_eq!(stack.held(), 3, "re-opening keeps within the limit");
}

/// While its descriptor is closed (beyond the held limit), `/a/b` is
/// swapped for another directory with the same names below it, or for a
/// symlink to the original: re-opening must notice either, never descend
/// into the impostor and never follow the link.
#[test]
fn an_ancestor_swapped_while_closed_makes_its_subtree_changed_while_read() {
    let names = ["a", "b", "c", "d", "e"];
    for swap_for_symlink in [false, true] {
        let (tmp, mut stack, budget) = chain(&names, 2);
        stack.pop();
        stack.pop(); // back at /a/b/c, whose descriptor was closed
        assert_eq!(stack.held(), 1, "only the base is held");
        let a = tmp.path().join("a");
        std::fs::rename(a.join("b"), a.join("b.orig")).unwrap();
        if swap_for_symlink {
            std::os::unix::fs::symlink("b.orig", a.join("b")).unwrap();
        } else {
            std::fs::create_dir_all(a.join("b/c/d/e")).unwrap();
        }
        let Err(dirfd::Reopen::Failed(ev)) = stack.top_fd(&budget, &ScanControl::default()) else {
            panic!("the swapped directory was accepted (symlink: {swap_for_symlink})")
        };
        let ScanEvent::Unreadable {
            path,
            cause,
            reason,
            unchecked: Unchecked::Below(seen),
        } = *ev
        else {
            panic!("not an unreadable subtree below a reported entry: {ev:?}")
        };
        assert_eq!(
            (&*path, cause, reason.as_str()),
            (
                &b"/a/b"[..],
                UnreadableKind::ChangedWhileRead,
                "changed while being read (directory replaced)"
            )
        );
        // What the walk saw going in: the original, now /a/b.orig.
        let orig = std::fs::metadata(a.join("b.orig")).unwrap();
        assert_eq!(seen.ino, std::os::unix::fs::MetadataExt::ino(&orig));
        assert_eq!(stack.len(), 2, "/a/b and below are dropped, / and /a stay");
    }
}

// ---------------------------------------------------------------- the hashing threads

/// Run one job for `name` in `dir` as a hashing thread would.
fn run_job(dir: &Path, name: &str) -> Vec<ScanEvent> {
    let fd = rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
    let (_budget, dir) = dirfd::with_root(DIR_FDS, fd);
    let (job_tx, job_rx) = crossbeam_channel::bounded(1);
    let (ev_tx, ev_rx) = crossbeam_channel::bounded(4);
    job_tx
        .send(Job {
            rel: format!("/{name}").into_bytes().into(),
            dir,
            name: std::ffi::CString::new(name).unwrap(),
            seen: None,
            attrs: crate::policy::AttrSet::default_set(),
        })
        .unwrap();
    drop(job_tx);
    hash::hash_worker(job_rx, ev_tx, &ScanControl::default());
    ev_rx.iter().map(|(ev, _)| ev).collect()
}

/// When `getdents` said "regular file" the worker's open is the first look:
/// a FIFO, a symlink or nothing in its place must be told apart, without a
/// read (a FIFO with no writer would block a reader forever).
#[test]
fn a_listed_file_replaced_before_the_open_is_never_read() {
    let tmp = tempfile::tempdir().unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        tmp.path().join("fifo"),
        rustix::fs::FileType::Fifo,
        Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    std::os::unix::fs::symlink("/etc/passwd", tmp.path().join("link")).unwrap();
    // What is there instead is reported as seen (its type counts: drift),
    // with why its content was not read.
    for (name, kind, target, why) in [
        (
            "fifo",
            FileKind::Fifo,
            None,
            "changed while being read (replaced)",
        ),
        (
            "link",
            FileKind::Symlink,
            Some(b"/etc/passwd".as_slice()),
            "changed while being read (replaced by a symlink)",
        ),
    ] {
        let evs = run_job(tmp.path(), name);
        match evs.as_slice() {
            [ScanEvent::Partial {
                entry,
                cause,
                reason,
            }] => {
                assert_eq!(*entry.path, *format!("/{name}").as_bytes());
                assert_eq!(entry.kind, kind, "{name}");
                assert_eq!(entry.target.as_deref(), target, "{name}");
                assert_eq!(entry.hash, None);
                assert_eq!(
                    (*cause, reason.as_str()),
                    (UnreadableKind::ChangedWhileRead, why)
                );
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    assert!(run_job(tmp.path(), "vanished").is_empty());
    write(&tmp.path().join("file"), b"content\n");
    let evs = run_job(tmp.path(), "file");
    assert!(
        matches!(&evs[..], [ScanEvent::Entry { entry, .. }] if entry.hash == Some(*blake3::hash(b"content\n").as_bytes())),
        "{evs:?}"
    );
}

// ---------------------------------------------------------------- xattrs

/// The xattrs of a symlink are its own, read through an O_PATH handle and
/// `/proc/self/fd`, never its target's (trusted.* can be set on a symlink,
/// and on a FIFO, only by root).
#[test]
fn the_own_xattrs_of_a_symlink_and_a_fifo_are_read_not_their_targets() {
    if !root_or_skip("setting trusted.* xattrs on a symlink") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(&root.join("target"), b"target\n");
    std::os::unix::fs::symlink("target", root.join("link")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("fifo"),
        rustix::fs::FileType::Fifo,
        Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    let set = |name: &str, key: &str, value: &[u8]| {
        rustix::fs::lsetxattr(root.join(name), key, value, rustix::fs::XattrFlags::empty()).unwrap()
    };
    set("target", "trusted.a", b"target");
    set("link", "trusted.a", b"link");
    set("link", "trusted.only-link", b"1");
    set("fifo", "trusted.b", b"fifo");
    let (evs, _) = events(root, None);
    let x = |path: &str| -> Vec<(String, String)> {
        entry(&evs, path)
            .xattrs
            .as_ref()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into(),
                    String::from_utf8_lossy(v).into(),
                )
            })
            .collect()
    };
    let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
    assert_eq!(
        x("/link"),
        [pair("trusted.a", "link"), pair("trusted.only-link", "1")]
    );
    assert_eq!(x("/target"), [pair("trusted.a", "target")]);
    assert_eq!(x("/fifo"), [pair("trusted.b", "fifo")]);
}
