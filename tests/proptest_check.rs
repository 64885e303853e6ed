//! Property test: `check_tree` reports exactly the drift that a model of the
//! tree predicts.
//!
//! Each case builds a random tree (directories, files, symlinks, FIFOs, with
//! awkward names) in a fresh temporary directory, bakes it into a manifest,
//! applies a random sequence of operations to the real tree *and* to an
//! in-memory model of it, and then checks that the findings are exactly the
//! model's before/after difference: nothing missing, nothing extra, with the
//! right kinds and attribute names, the right verdict, and the same result
//! with one hashing thread as with four.
//!
//! The model never looks at the real tree after it is created (only at the
//! root's own mode and owner): what it predicts is computed from the
//! operations alone, so an operation that turns out to be a no-op (chmod to
//! the same mode, writing identical content) must be predicted as such.
//!
//! Operations with kernel side effects on the mode (writing to or chowning
//! a setuid file clears the bit) are followed by an explicit chmod back to
//! the model's mode, so the model does not have to mimic those rules.
//!
//! Owners (random uid/gid at creation, chown operations) need root; without
//! it they are left out (a SKIP line says so), and under CI (`CI` set) the
//! test fails instead.

mod common;

use driftd::check::{check_scope, check_tree, manifest_policy};
use driftd::manifest::diff::{diff_manifests, Finding, FindingKind, Verdict};
use driftd::manifest::{Entry, FileKind, Header, Manifest, FORMAT_VERSION};
use driftd::policy::{CompiledPolicy, Policy};
use driftd::scan::{scan_collect, ScanControl, ScanOptions};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::strategy::Union;
use proptest::test_runner::FileFailurePersistence;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const REGRESSIONS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/proptest-regressions/proptest_check.txt"
);

const LONG_NAME: [u8; 255] = [b'n'; 255];
const LONG_TARGET: [u8; 300] = [b't'; 300];

/// File names, including the awkward ones a manifest codec must survive.
const NAMES: &[&[u8]] = &[
    b"a",
    b"b",
    b"c d",
    b" lead",
    b"trail ",
    b"new\nline",
    b"back\\slash",
    b"\xff",
    b"\xff\xfe\x80",
    b"-dash",
    b"--",
    b".hidden",
    b"...",
    b"tab\tx",
    b"%2F",
    b"x=y",
    b"caf\xc3\xa9",
    b"#hash",
    b"\x01ctl",
    b"\x7f",
    b"\"q\"",
    b"a b\nc\\d\xff",
    &LONG_NAME,
];

/// Symlink targets (never followed by the scanner).
const TARGETS: &[&[u8]] = &[
    b"a",
    b"b",
    b"../a",
    b"/etc/passwd",
    b"/",
    b"..",
    b"b c",
    b"new\nline",
    b"\xff",
    b"-dash",
    &LONG_TARGET,
];

/// Small contents, so that identical and same-length rewrites are common.
const CONTENTS: &[&[u8]] = &[b"", b"a", b"b", b"ab", b"ba", b"hello\n", b"\0\xff"];

const XATTR_NAMES: &[&[u8]] = &[b"user.a", b"user.b", b"user.\xff odd"];
const XATTR_VALUES: &[&[u8]] = &[b"", b"v", b"w", b"\0\xff\n"];

/// Owners for chown (root only).
const IDS: &[u32] = &[0, 1, 1000, 65534];

// ---------------------------------------------------------------------------
// Operations

#[derive(Debug, Clone)]
enum NewNode {
    Dir { mode: u32 },
    File { content: Vec<u8>, mode: u32 },
    Symlink { target: Vec<u8> },
    Fifo { mode: u32 },
}

/// Create a node named `NAMES[name]` in the `dir`-th directory, then (as
/// root) give it to `owner`, so that trees have foreign-owned and
/// foreign-group (setgid) directories.
#[derive(Debug, Clone)]
struct Create {
    dir: Index,
    name: Index,
    what: NewNode,
    owner: Option<(u32, u32)>,
}

/// Operations pick their subject among the current candidates by `Index`,
/// so any generated sequence is applicable to any tree (an operation with
/// no candidate, or whose destination exists, does nothing).
#[derive(Debug, Clone)]
enum Op {
    /// Replace a file's content (truncate and write).
    Write {
        file: Index,
        content: Vec<u8>,
    },
    Append {
        file: Index,
        data: Vec<u8>,
    },
    /// Any node but a symlink, the root included.
    Chmod {
        node: Index,
        mode: u32,
    },
    Create(Create),
    /// Remove a non-directory.
    RemoveFile {
        node: Index,
    },
    /// Remove a directory (not the root) and everything below it.
    RemoveTree {
        dir: Index,
    },
    FileToSymlink {
        file: Index,
        target: Vec<u8>,
    },
    /// Remove a symlink and create it again with another (or the same)
    /// target, as `ln -sf` does.
    Retarget {
        link: Index,
        target: Vec<u8>,
    },
    /// Move a node (not the root) into a directory outside it, under a new
    /// name that does not exist yet.
    Rename {
        node: Index,
        dir: Index,
        name: Index,
    },
    /// Root only: lchown any node.
    Chown {
        node: Index,
        uid: u32,
        gid: u32,
    },
    /// Root only: set a `user.*` xattr on a file or directory.
    SetXattr {
        node: Index,
        name: Index,
        value: Vec<u8>,
    },
}

fn mode_strategy() -> impl Strategy<Value = u32> {
    prop_oneof![
        0u32..0o10000,
        select(vec![
            0o644u32, 0o755, 0o600, 0o700, 0o4755, 0o2755, 0o1777, 0o6711, 0o444
        ]),
    ]
}

fn bytes_from(pool: &'static [&'static [u8]]) -> impl Strategy<Value = Vec<u8>> {
    select(pool).prop_map(|b| b.to_vec())
}

fn content_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => bytes_from(CONTENTS),
        1 => vec(any::<u8>(), 0..300),
    ]
}

fn target_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => bytes_from(TARGETS),
        // No NUL: a symlink target is a C string.
        1 => vec(1u8.., 1..40),
    ]
}

fn new_node_strategy() -> impl Strategy<Value = NewNode> {
    prop_oneof![
        3 => mode_strategy().prop_map(|mode| NewNode::Dir { mode }),
        4 => (content_strategy(), mode_strategy())
            .prop_map(|(content, mode)| NewNode::File { content, mode }),
        2 => target_strategy().prop_map(|target| NewNode::Symlink { target }),
        1 => mode_strategy().prop_map(|mode| NewNode::Fifo { mode }),
    ]
}

fn create_strategy(as_root: bool) -> impl Strategy<Value = Create> {
    let owner = if as_root {
        proptest::option::of((select(IDS), select(IDS))).boxed()
    } else {
        Just(None).boxed()
    };
    (any::<Index>(), any::<Index>(), new_node_strategy(), owner).prop_map(
        |(dir, name, what, owner)| Create {
            dir,
            name,
            what,
            owner,
        },
    )
}

fn op_strategy(as_root: bool) -> impl Strategy<Value = Op> {
    let mut ops: Vec<BoxedStrategy<Op>> = vec![
        (any::<Index>(), content_strategy())
            .prop_map(|(file, content)| Op::Write { file, content })
            .boxed(),
        (any::<Index>(), vec(any::<u8>(), 0..4))
            .prop_map(|(file, data)| Op::Append { file, data })
            .boxed(),
        (any::<Index>(), mode_strategy())
            .prop_map(|(node, mode)| Op::Chmod { node, mode })
            .boxed(),
        create_strategy(as_root).prop_map(Op::Create).boxed(),
        any::<Index>()
            .prop_map(|node| Op::RemoveFile { node })
            .boxed(),
        any::<Index>()
            .prop_map(|dir| Op::RemoveTree { dir })
            .boxed(),
        (any::<Index>(), target_strategy())
            .prop_map(|(file, target)| Op::FileToSymlink { file, target })
            .boxed(),
        (any::<Index>(), target_strategy())
            .prop_map(|(link, target)| Op::Retarget { link, target })
            .boxed(),
        (any::<Index>(), any::<Index>(), any::<Index>())
            .prop_map(|(node, dir, name)| Op::Rename { node, dir, name })
            .boxed(),
    ];
    if as_root {
        ops.push(
            (any::<Index>(), select(IDS), select(IDS))
                .prop_map(|(node, uid, gid)| Op::Chown { node, uid, gid })
                .boxed(),
        );
        ops.push(
            (any::<Index>(), any::<Index>(), bytes_from(XATTR_VALUES))
                .prop_map(|(node, name, value)| Op::SetXattr { node, name, value })
                .boxed(),
        );
    }
    Union::new(ops)
}

// ---------------------------------------------------------------------------
// The model

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Dir,
    File(Vec<u8>),
    Symlink(Vec<u8>),
    Fifo,
}

impl Kind {
    fn file_kind(&self) -> FileKind {
        match self {
            Kind::Dir => FileKind::Dir,
            Kind::File(_) => FileKind::File,
            Kind::Symlink(_) => FileKind::Symlink,
            Kind::Fifo => FileKind::Fifo,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    kind: Kind,
    /// `mode & 0o7777`.
    mode: u32,
    uid: u32,
    gid: u32,
    /// Only the `user.*` xattrs this test sets.
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// Paths as the manifest spells them: `/` for the root, `/a/b` below it.
type Model = BTreeMap<Vec<u8>, Node>;

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = if dir == b"/" {
        Vec::new()
    } else {
        dir.to_vec()
    };
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

fn parent(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(0) | None => b"/",
        Some(i) => &path[..i],
    }
}

fn depth(path: &[u8]) -> usize {
    if path == b"/" {
        0
    } else {
        path.iter().filter(|&&b| b == b'/').count()
    }
}

/// `path` is `dir` or lies below it.
fn within(path: &[u8], dir: &[u8]) -> bool {
    path == dir
        || dir == b"/"
        || (path.len() > dir.len() && path.starts_with(dir) && path[dir.len()] == b'/')
}

fn show(path: &[u8]) -> String {
    path.escape_ascii().to_string()
}

/// The real tree and its model, changed together.
struct World {
    root: PathBuf,
    model: Model,
    as_root: bool,
    euid: u32,
    egid: u32,
}

const S_ISGID: u32 = 0o2000;

impl World {
    fn new(root: &Path) -> World {
        let st = rustix::fs::lstat(root).unwrap();
        let as_root = rustix::process::geteuid().is_root();
        let mut w = World {
            root: root.to_path_buf(),
            model: Model::new(),
            as_root,
            euid: rustix::process::geteuid().as_raw(),
            egid: rustix::process::getegid().as_raw(),
        };
        let mode = w.normalize(&Kind::Dir, st.st_mode & 0o7777);
        w.model.insert(
            b"/".to_vec(),
            Node {
                kind: Kind::Dir,
                mode,
                uid: st.st_uid,
                gid: st.st_gid,
                xattrs: BTreeMap::new(),
            },
        );
        w.set_mode(b"/", mode);
        w
    }

    fn fs(&self, rel: &[u8]) -> PathBuf {
        let mut p = self.root.as_os_str().as_bytes().to_vec();
        if rel != b"/" {
            p.extend_from_slice(rel);
        }
        PathBuf::from(OsStr::from_bytes(&p))
    }

    /// Without root, every directory must stay listable and writable and
    /// every file readable, or the scan (rightly) reports it unreadable.
    fn normalize(&self, kind: &Kind, mode: u32) -> u32 {
        let mode = mode & 0o7777;
        match kind {
            _ if self.as_root => mode,
            Kind::Dir => mode | 0o700,
            Kind::File(_) => mode | 0o400,
            Kind::Symlink(_) | Kind::Fifo => mode,
        }
    }

    fn pick(&self, idx: &Index, pred: impl Fn(&[u8], &Node) -> bool) -> Option<Vec<u8>> {
        let cands: Vec<&Vec<u8>> = self
            .model
            .iter()
            .filter(|(p, n)| pred(p, n))
            .map(|(p, _)| p)
            .collect();
        (!cands.is_empty()).then(|| idx.get(&cands).to_vec())
    }

    fn set_mode(&self, rel: &[u8], mode: u32) {
        std::fs::set_permissions(self.fs(rel), std::fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {:o} {}: {e}", mode, show(rel)));
    }

    /// A node as created now in `dir`: our uid, the directory's gid if it
    /// is setgid (BSD group semantics), else ours; no xattrs.
    fn fresh(&self, dir: &[u8], kind: Kind, mode: u32) -> Node {
        let d = &self.model[dir];
        Node {
            mode: self.normalize(&kind, mode),
            kind,
            uid: self.euid,
            gid: if d.mode & S_ISGID != 0 {
                d.gid
            } else {
                self.egid
            },
            xattrs: BTreeMap::new(),
        }
    }

    /// Create a node; `max_depth` limits where (tree building).
    fn create(&mut self, c: &Create, max_depth: usize) {
        let Some(dir) = self.pick(&c.dir, |p, n| n.kind == Kind::Dir && depth(p) < max_depth)
        else {
            return;
        };
        let path = join(&dir, c.name.get::<&[u8]>(NAMES));
        if self.model.contains_key(&path) {
            return;
        }
        let fs = self.fs(&path);
        let mut node = match &c.what {
            NewNode::Dir { mode } => {
                std::fs::create_dir(&fs).unwrap();
                self.fresh(&dir, Kind::Dir, *mode)
            }
            NewNode::File { content, mode } => {
                std::fs::write(&fs, content).unwrap();
                self.fresh(&dir, Kind::File(content.clone()), *mode)
            }
            NewNode::Symlink { target } => {
                std::os::unix::fs::symlink(OsStr::from_bytes(target), &fs).unwrap();
                self.fresh(&dir, Kind::Symlink(target.clone()), 0o777)
            }
            NewNode::Fifo { mode } => {
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &fs,
                    rustix::fs::FileType::Fifo,
                    rustix::fs::Mode::from_raw_mode(0o600),
                    0,
                )
                .unwrap();
                self.fresh(&dir, Kind::Fifo, *mode)
            }
        };
        if let (Some((uid, gid)), true) = (c.owner, self.as_root) {
            std::os::unix::fs::lchown(&fs, Some(uid), Some(gid)).unwrap();
            (node.uid, node.gid) = (uid, gid);
        }
        if !matches!(node.kind, Kind::Symlink(_)) {
            self.set_mode(&path, node.mode);
        }
        self.model.insert(path, node);
    }

    /// Change a file's content in place; restore the model's mode after
    /// (writing may clear setuid/setgid).
    fn rewrite(&mut self, path: &[u8], content: Vec<u8>, append: bool) {
        let fs = self.fs(path);
        self.set_mode(path, 0o600);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .append(append)
            .truncate(!append)
            .open(&fs)
            .unwrap();
        f.write_all(&content).unwrap();
        drop(f);
        let node = self.model.get_mut(path).unwrap();
        match &mut node.kind {
            Kind::File(c) if append => c.extend_from_slice(&content),
            Kind::File(c) => *c = content,
            _ => unreachable!(),
        }
        let mode = node.mode;
        self.set_mode(path, mode);
    }

    fn remove_subtree(&mut self, dir: &[u8]) {
        self.model.retain(|p, _| !within(p, dir));
    }

    fn relink(&mut self, path: &[u8], target: Vec<u8>) {
        let fs = self.fs(path);
        std::fs::remove_file(&fs).unwrap();
        std::os::unix::fs::symlink(OsStr::from_bytes(&target), &fs).unwrap();
        let node = self.fresh(parent(path), Kind::Symlink(target), 0o777);
        self.model.insert(path.to_vec(), node);
    }

    fn apply(&mut self, op: &Op) {
        let is_file = |_: &[u8], n: &Node| matches!(n.kind, Kind::File(_));
        match op {
            Op::Write { file, content } => {
                if let Some(p) = self.pick(file, is_file) {
                    self.rewrite(&p, content.clone(), false);
                }
            }
            Op::Append { file, data } => {
                if let Some(p) = self.pick(file, is_file) {
                    self.rewrite(&p, data.clone(), true);
                }
            }
            Op::Chmod { node, mode } => {
                let not_link = |_: &[u8], n: &Node| !matches!(n.kind, Kind::Symlink(_));
                if let Some(p) = self.pick(node, not_link) {
                    let mode = self.normalize(&self.model[&p].kind, *mode);
                    self.set_mode(&p, mode);
                    self.model.get_mut(&p).unwrap().mode = mode;
                }
            }
            Op::Create(c) => self.create(c, usize::MAX),
            Op::RemoveFile { node } => {
                if let Some(p) = self.pick(node, |_, n| n.kind != Kind::Dir) {
                    std::fs::remove_file(self.fs(&p)).unwrap();
                    self.model.remove(&p);
                }
            }
            Op::RemoveTree { dir } => {
                if let Some(p) = self.pick(dir, |p, n| n.kind == Kind::Dir && p != b"/") {
                    std::fs::remove_dir_all(self.fs(&p)).unwrap();
                    self.remove_subtree(&p);
                }
            }
            Op::FileToSymlink { file, target } => {
                if let Some(p) = self.pick(file, is_file) {
                    self.relink(&p, target.clone());
                }
            }
            Op::Retarget { link, target } => {
                if let Some(p) = self.pick(link, |_, n| matches!(n.kind, Kind::Symlink(_))) {
                    self.relink(&p, target.clone());
                }
            }
            Op::Rename { node, dir, name } => {
                let Some(src) = self.pick(node, |p, _| p != b"/") else {
                    return;
                };
                let Some(dir) = self.pick(dir, |p, n| n.kind == Kind::Dir && !within(p, &src))
                else {
                    return;
                };
                let dst = join(&dir, name.get::<&[u8]>(NAMES));
                if self.model.contains_key(&dst) {
                    return;
                }
                std::fs::rename(self.fs(&src), self.fs(&dst)).unwrap();
                let moved: Vec<(Vec<u8>, Node)> = self
                    .model
                    .iter()
                    .filter(|(p, _)| within(p, &src))
                    .map(|(p, n)| ([&dst[..], &p[src.len()..]].concat(), n.clone()))
                    .collect();
                self.remove_subtree(&src);
                self.model.extend(moved);
            }
            Op::Chown { node, uid, gid } => {
                if let Some(p) = self.pick(node, |_, _| true) {
                    std::os::unix::fs::lchown(self.fs(&p), Some(*uid), Some(*gid)).unwrap();
                    let n = self.model.get_mut(&p).unwrap();
                    n.uid = *uid;
                    n.gid = *gid;
                    let (is_link, mode) = (matches!(n.kind, Kind::Symlink(_)), n.mode);
                    if !is_link {
                        // chown clears setuid/setgid on non-directories.
                        self.set_mode(&p, mode);
                    }
                }
            }
            Op::SetXattr { node, name, value } => {
                let pred = |_: &[u8], n: &Node| matches!(n.kind, Kind::Dir | Kind::File(_));
                if let Some(p) = self.pick(node, pred) {
                    let name: &[u8] = name.get::<&[u8]>(XATTR_NAMES);
                    rustix::fs::lsetxattr(
                        self.fs(&p),
                        OsStr::from_bytes(name),
                        value,
                        rustix::fs::XattrFlags::empty(),
                    )
                    .unwrap();
                    let n = self.model.get_mut(&p).unwrap();
                    n.xattrs.insert(name.to_vec(), value.clone());
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Expectations

/// (escaped path, kind, sorted attribute names): what a finding means.
type Key = (String, FindingKind, Vec<&'static str>);

fn key_of(f: &Finding) -> Key {
    let mut attrs = f.attributes.clone();
    attrs.sort_unstable();
    (show(&f.path), f.kind, attrs)
}

fn keys(findings: &[Finding]) -> BTreeSet<Key> {
    let set: BTreeSet<Key> = findings.iter().map(key_of).collect();
    assert_eq!(
        set.len(),
        findings.len(),
        "duplicate findings: {findings:#?}"
    );
    set
}

/// The findings the model predicts between two states.
fn expected(before: &Model, after: &Model) -> BTreeSet<Key> {
    let mut out = BTreeSet::new();
    let paths: BTreeSet<&Vec<u8>> = before.keys().chain(after.keys()).collect();
    for p in paths {
        let (b, a) = match (before.get(p), after.get(p)) {
            (Some(_), None) => {
                out.insert((show(p), FindingKind::Removed, vec![]));
                continue;
            }
            (None, Some(_)) => {
                out.insert((show(p), FindingKind::Added, vec![]));
                continue;
            }
            (Some(b), Some(a)) => (b, a),
            (None, None) => unreachable!(),
        };
        if b.kind.file_kind() != a.kind.file_kind() {
            out.insert((show(p), FindingKind::Type, vec!["type"]));
            continue;
        }
        let mut attrs = Vec::new();
        match (&b.kind, &a.kind) {
            (Kind::File(x), Kind::File(y)) => {
                if x != y {
                    attrs.push("content");
                }
                if x.len() != y.len() {
                    attrs.push("size");
                }
            }
            (Kind::Symlink(x), Kind::Symlink(y)) => {
                if x != y {
                    attrs.push("target");
                }
                if x.len() != y.len() {
                    attrs.push("size");
                }
            }
            _ => {}
        }
        let content = !attrs.is_empty();
        for (name, same) in [
            ("mode", b.mode == a.mode),
            ("uid", b.uid == a.uid),
            ("gid", b.gid == a.gid),
            ("xattrs", b.xattrs == a.xattrs),
        ] {
            if !same {
                attrs.push(name);
            }
        }
        if attrs.is_empty() {
            continue;
        }
        attrs.sort_unstable();
        let kind = if content {
            FindingKind::Modified
        } else {
            FindingKind::Metadata
        };
        out.insert((show(p), kind, attrs));
    }
    out
}

/// The scanner saw what the model says is there (a check on the model as
/// much as on the scanner: it pins down failures to one side).
fn assert_scan_matches(model: &Model, entries: &[Entry], when: &str) {
    let scanned: Vec<String> = entries.iter().map(|e| show(&e.path)).collect();
    let modelled: Vec<String> = model.keys().map(|p| show(p)).collect();
    assert_eq!(scanned, modelled, "{when}: scanned paths differ from model");
    for e in entries {
        let n = &model[&*e.path];
        let at = format!("{when}: {}", show(&e.path));
        assert_eq!(e.kind, n.kind.file_kind(), "{at}: kind");
        assert_eq!(e.mode, Some(n.mode), "{at}: mode");
        assert_eq!(e.uid, Some(n.uid), "{at}: uid");
        assert_eq!(e.gid, Some(n.gid), "{at}: gid");
        let (size, hash, target) = match &n.kind {
            Kind::File(c) => (
                Some(c.len() as u64),
                Some(*blake3::hash(c).as_bytes()),
                None,
            ),
            Kind::Symlink(t) => (Some(t.len() as u64), None, Some(t.clone())),
            Kind::Dir | Kind::Fifo => (None, None, None),
        };
        assert_eq!(e.size, size, "{at}: size");
        assert_eq!(e.hash, hash, "{at}: hash");
        assert_eq!(e.target.as_deref(), target.as_deref(), "{at}: target");
        let user: BTreeMap<Vec<u8>, Vec<u8>> = e
            .xattrs
            .as_ref()
            .unwrap_or_else(|| panic!("{at}: no xattrs recorded"))
            .iter()
            .filter(|(k, _)| k.starts_with(b"user."))
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        assert_eq!(user, n.xattrs, "{at}: user xattrs");
    }
}

fn policy() -> Policy {
    Policy {
        exclude: Vec::new(),
        ..Policy::default()
    }
}

fn bake(root: &Path, policy: &Policy) -> Manifest {
    let compiled = CompiledPolicy::new(policy.clone(), "policy").unwrap();
    let collected = scan_collect(&ScanOptions {
        root,
        policy: &compiled,
        threads: 2,
    })
    .unwrap();
    assert!(
        collected.unreadable.is_empty(),
        "unreadable during bake: {:?}",
        collected.unreadable
    );
    Manifest::new(
        Header {
            format_version: FORMAT_VERSION,
            driftd_version: env!("CARGO_PKG_VERSION").into(),
            image_id: "proptest".into(),
            policy: policy.clone(),
        },
        collected.entries,
    )
}

/// One case: build `tree`, bake, apply `ops`, check.
fn run_case(tree: &[Create], ops: &[Op]) {
    let tmp = tempfile::Builder::new()
        .prefix("proptest-check-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let root = tmp.path();
    let mut world = World::new(root);
    for c in tree {
        world.create(c, 4);
    }
    let policy = policy();
    let manifest = bake(root, &policy);
    assert_scan_matches(&world.model, &manifest.entries, "before");

    // The manifest survives its on-disk encoding, odd path bytes and all.
    let reparsed = Manifest::from_bytes(&manifest.to_bytes().unwrap()).unwrap();
    assert_eq!(reparsed, manifest, "manifest changed in a round trip");

    let before = world.model.clone();
    for op in ops {
        world.apply(op);
    }
    let after_manifest = bake(root, &policy);
    assert_scan_matches(&world.model, &after_manifest.entries, "after");

    let want = expected(&before, &world.model);
    assert_eq!(
        want.is_empty(),
        before == world.model,
        "the model's diff disagrees with the model"
    );

    let one = check_tree(&manifest, root, 1).unwrap();
    let four = check_tree(&manifest, root, 4).unwrap();
    let all = one.found.clone().into_vec();
    assert_eq!(keys(&all), want, "check_tree findings (1 thread)");
    assert_eq!(
        one.counts.total(),
        all.len() as u64,
        "every finding held and counted once"
    );
    assert_eq!(
        one.verdict,
        if want.is_empty() {
            Verdict::Clean
        } else {
            Verdict::Drifted
        }
    );
    assert_eq!(one.found, four.found, "1 vs 4 threads: findings");
    assert_eq!(one.verdict, four.verdict, "1 vs 4 threads: verdict");
    assert_eq!(one.counts, four.counts, "1 vs 4 threads: counts");
    assert_eq!(one.stats, four.stats, "1 vs 4 threads: stats");

    // The root spelled with a trailing slash is the same root.
    let mut slashed = root.as_os_str().to_owned();
    slashed.push("/");
    let slash = check_tree(&manifest, Path::new(&slashed), 2).unwrap();
    assert_eq!(one.found, slash.found, "root with a trailing slash");

    // Holding at most two findings changes nothing but the list: the
    // counts and the verdict are the same, the list is its first two.
    let policy = manifest_policy(&manifest).unwrap();
    let small = check_scope(&manifest, &policy, root, 2, &ScanControl::default(), 2).unwrap();
    assert_eq!(small.counts, one.counts, "bounded: counts");
    assert_eq!(small.verdict, one.verdict, "bounded: verdict");
    assert_eq!(small.found.total(), one.found.total(), "bounded: total");
    let held: Vec<&Finding> = small.found.iter().collect();
    assert!(held.len() <= 2, "bounded: {} held", held.len());
    assert_eq!(held.len(), all.len().min(2), "bounded: the first are held");
    assert_eq!(
        held,
        all.iter().take(2).collect::<Vec<_>>(),
        "bounded: the first two"
    );

    // `diff` between the two manifests reports drift the same way.
    assert_eq!(
        keys(&diff_manifests(&manifest, &after_manifest)),
        want,
        "diff_manifests"
    );
}

/// Whether the strategies may generate owners and chown operations: only
/// as root. Without root the rest still runs, after a SKIP line; under CI
/// this fails instead (see `common::skip`).
fn owners_in_strategies() -> bool {
    if common::is_root() {
        return true;
    }
    common::skip("random owners and chown operations need root; only the rest of the model runs");
    false
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(REGRESSIONS))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn check_reports_exactly_the_modelled_drift(
        tree in vec(create_strategy(owners_in_strategies()), 0..=40),
        ops in vec(op_strategy(owners_in_strategies()), 0..6),
    ) {
        run_case(&tree, &ops);
    }
}
