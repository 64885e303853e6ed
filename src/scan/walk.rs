//! The walker: a depth-first walk of directory descriptors that reports
//! every path, queues regular files for the hashing threads, and never
//! resolves a path.
//!
//! Each directory is listed once, completely, right after it is opened, and
//! the walk descends into each subdirectory as it meets it, so the only
//! state is the chain of ancestors ([`Ancestors`]) with the names each still
//! has to visit. Children are looked at relative to their open parent:
//! `fstatat(AT_SYMLINK_NOFOLLOW)`, `readlinkat`, `openat(O_NOFOLLOW)`, and an
//! `O_PATH` handle for the xattrs of what must not be opened. A targeted
//! scan reaches its start the same way, one `O_NOFOLLOW` component at a
//! time from the root, so a symlink anywhere above the start ends it.

use super::dirfd::{self, Ancestors, Budget, Child, DirFd, Level, OpenError, Reopen};
use super::hash::Job;
use super::meta::Meta;
use super::mounts::{self, Kind as MountKind, MountTable, Probe};
use super::xattr::{self, BesideError};
use super::{
    cause_of, errno_text, io_cause, unreadable, Mount, ScanControl, ScanEvent, Unchecked, HELD_DIRS,
};
use crate::manifest::diff::UnreadableKind;
use crate::manifest::paths::join;
use crate::manifest::FileKind;
use crate::policy::{Attr, AttrSet, CompiledPolicy};
use crossbeam_channel::Sender;
use rustix::fs::{AtFlags, FileType};
use rustix::io::Errno;
use std::ffi::CString;
use std::os::fd::AsFd;
use std::sync::Arc;

/// The kernel's limit on a path, terminating NUL included.
const PATH_MAX: usize = 4096;

/// `getdents` buffer, reused for every directory.
const LIST_BUF: usize = 32 * 1024;

pub(super) struct Walker<'a> {
    /// Length of the root's on-disk path as [`super::display_path`] joins
    /// it (no trailing slash), for the path-length rule.
    pub root_len: usize,
    pub policy: &'a CompiledPolicy,
    pub jobs: Sender<Job>,
    pub events: Sender<(ScanEvent, u64)>,
    pub control: &'a ScanControl,
    pub budget: Arc<Budget>,
    /// The mount table, read when the first mount root is met.
    pub mount_table: std::cell::OnceCell<Option<MountTable>>,
}

/// What to do after visiting one child.
enum Step {
    Next,
    Descend(Level),
    /// The scan is shutting down.
    Stop,
}

fn listing_buf() -> Vec<u8> {
    Vec::with_capacity(LIST_BUF)
}

impl Walker<'_> {
    fn send(&self, ev: ScanEvent) {
        // The receiver only goes away when the caller is gone; nothing to do.
        let _ = self.events.send((ev, 0));
    }

    /// The whole tree: the root entry (its xattrs from the root
    /// descriptor), then everything below it.
    pub fn run(self, root: Arc<DirFd>, root_meta: Meta) {
        let rel: Box<[u8]> = Box::from(&b"/"[..]);
        let attrs = self.policy.attrs_for(&rel);
        let mut entry = root_meta.entry(rel.clone(), attrs);
        if attrs.contains(Attr::Xattrs) {
            match xattr::read_fd(root.as_fd()) {
                Ok(x) => entry.xattrs = Some(x),
                Err(e) => self.send(unreadable(
                    &rel,
                    io_cause(&e),
                    format!("cannot read xattrs: {e}"),
                    Unchecked::Path,
                )),
            }
        }
        self.send(ScanEvent::Entry { entry, mount: None });
        let mut buf = listing_buf();
        match dirfd::list(root.as_fd(), &mut buf) {
            Ok(children) => self.walk(Level::base(rel, root, children), buf),
            Err(e) => self.send(unreadable(
                &rel,
                cause_of(e),
                format!("cannot list directory: {}", errno_text(e)),
                Unchecked::Below(root_meta),
            )),
        }
    }

    /// One path (and its subtree) inside the root. Its parent is reached
    /// from the root one component at a time with `O_NOFOLLOW`: a missing
    /// component, a non-directory or a symlink means the start does not
    /// exist in this tree (no event); nothing a symlink points to is opened.
    pub fn run_from(self, root: Arc<DirFd>, start: &[u8]) {
        if !start.starts_with(b"/") || start.ends_with(b"/") {
            return;
        }
        // Plain names only: `.`, `..` or an empty component would name
        // something other than the path it spells, even outside the root.
        if start[1..]
            .split(|&b| b == b'/')
            .any(|c| c.is_empty() || c == b"." || c == b"..")
        {
            return;
        }
        // Nothing at or below an excluded path is ever reported.
        let mut p = start;
        while let Some(i) = p.iter().rposition(|&b| b == b'/') {
            if self.policy.is_excluded(p) {
                return;
            }
            if i == 0 {
                break;
            }
            p = &p[..i];
        }
        let cut = start.iter().rposition(|&b| b == b'/').unwrap_or(0);
        let (parent, name) = (&start[..cut.max(1)], &start[cut + 1..]);
        let Ok(name) = CString::new(name) else {
            return;
        };
        let mut dir = root;
        for component in parent.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            let Ok(component) = CString::new(component) else {
                return;
            };
            dir = match dirfd::open_dir(&self.budget, self.control, dir.as_fd(), &component) {
                Ok(fd) => fd,
                Err(OpenError::Cancelled) => return,
                Err(OpenError::Sys(Errno::NOENT | Errno::NOTDIR | Errno::LOOP)) => return,
                Err(OpenError::Sys(e)) => {
                    self.send(unreadable(
                        start,
                        cause_of(e),
                        format!("cannot open parent directory: {}", errno_text(e)),
                        Unchecked::Subtree,
                    ));
                    return;
                }
            };
        }
        let only = Child {
            name,
            kind: FileType::Unknown,
        };
        self.walk(Level::base(parent.into(), dir, vec![only]), listing_buf());
    }

    /// Depth first from `base`, holding at most [`HELD_DIRS`] ancestors.
    fn walk(&self, base: Level, mut buf: Vec<u8>) {
        let mut stack = Ancestors::new(base, HELD_DIRS);
        while let Some(top) = stack.top_mut() {
            if self.control.cancelled() {
                return;
            }
            let Some(child) = top.children.next() else {
                stack.pop();
                continue;
            };
            let rel = join(&top.rel, child.name.to_bytes());
            if self.policy.is_excluded(&rel) {
                continue;
            }
            if self.root_len + rel.len() >= PATH_MAX {
                self.send(self.too_long(&rel, &child));
                continue;
            }
            let dir = match stack.top_fd(&self.budget, self.control) {
                Ok(fd) => fd,
                Err(Reopen::Cancelled) => return,
                Err(Reopen::Failed(ev)) => {
                    self.send(*ev);
                    continue;
                }
            };
            match self.visit(&dir, rel, child, &mut buf) {
                Step::Next => {}
                Step::Descend(level) => stack.push(level),
                Step::Stop => return,
            }
        }
    }

    /// A path the kernel's path-based interfaces cannot name (inotify
    /// watches, the reports' paths, an operator's tools) is reported, not
    /// checked: the agent could never watch it, and a manifest must not
    /// record what a host cannot address.
    fn too_long(&self, rel: &[u8], child: &Child) -> ScanEvent {
        let len = self.root_len + rel.len();
        unreadable(
            rel,
            UnreadableKind::NameTooLong,
            format!(
                "path too long ({len} bytes on disk; the kernel accepts {})",
                PATH_MAX - 1
            ),
            if matches!(child.kind, FileType::RegularFile | FileType::Symlink) {
                Unchecked::Path
            } else {
                Unchecked::Subtree
            },
        )
    }

    /// Look at one child of the open directory `dir`: report it, queue it
    /// for hashing, or open it to descend.
    fn visit(&self, dir: &Arc<DirFd>, rel: Box<[u8]>, child: Child, buf: &mut Vec<u8>) -> Step {
        let attrs = self.policy.attrs_for(&rel);
        let wants_read = attrs.contains(Attr::Content) || attrs.contains(Attr::Xattrs);
        // getdents says "regular file": the hashing thread's openat + fstat
        // is the first look, no lstat here.
        if child.kind == FileType::RegularFile && wants_read {
            return self.queue(Job {
                rel,
                dir: dir.clone(),
                name: child.name,
                seen: None,
                attrs,
            });
        }
        let meta = match rustix::fs::statat(dir, &child.name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Meta::from_stat(&st),
            Err(Errno::NOENT) => return Step::Next, // vanished: it is not there now
            Err(e) => {
                self.send(unreadable(
                    &rel,
                    cause_of(e),
                    format!("cannot stat: {}", errno_text(e)),
                    Unchecked::Subtree,
                ));
                return Step::Next;
            }
        };
        let kind = meta.kind();
        if kind == FileKind::File && wants_read {
            return self.queue(Job {
                rel,
                dir: dir.clone(),
                name: child.name,
                seen: Some(meta),
                attrs,
            });
        }
        if kind == FileKind::Dir {
            return self.visit_dir(dir, rel, child.name, meta, attrs, buf);
        }
        let mut entry = meta.entry(rel.clone(), attrs);
        if kind == FileKind::Symlink && attrs.contains(Attr::Target) {
            match rustix::fs::readlinkat(dir, &child.name, Vec::new()) {
                Ok(t) => entry.target = Some(t.into_bytes().into_boxed_slice()),
                Err(Errno::NOENT) => return Step::Next,
                Err(e) => {
                    self.send(unreadable(
                        &rel,
                        cause_of(e),
                        format!("cannot read link: {}", errno_text(e)),
                        Unchecked::Path,
                    ));
                    return Step::Next;
                }
            }
        }
        if attrs.contains(Attr::Xattrs) {
            let failure = match xattr::read_beside(dir.as_fd(), &child.name, &meta) {
                Ok(x) => {
                    entry.xattrs = Some(x);
                    None
                }
                Err(BesideError::Vanished) => return Step::Next,
                Err(BesideError::Replaced) => Some((
                    UnreadableKind::ChangedWhileRead,
                    "changed while being read (replaced)".to_string(),
                )),
                Err(BesideError::NoProc) => Some((
                    UnreadableKind::Other,
                    "cannot read xattrs: /proc/self/fd is not available (the own xattrs of a \
                     symlink or special file are read through it, never by path)"
                        .to_string(),
                )),
                Err(BesideError::Io(e)) => Some((io_cause(&e), format!("cannot read xattrs: {e}"))),
            };
            if let Some((cause, reason)) = failure {
                self.send(unreadable(&rel, cause, reason, Unchecked::Path));
                return Step::Next;
            }
        }
        self.send(ScanEvent::Entry { entry, mount: None });
        Step::Next
    }

    fn queue(&self, job: Job) -> Step {
        match self.jobs.send(job) {
            Ok(()) => Step::Next,
            Err(_) => Step::Stop,
        }
    }

    /// Is the directory `name` in `parent` the root of a mount (a self-bind
    /// does not count), and is it expected there?
    fn mount_at(
        &self,
        parent: &Arc<DirFd>,
        name: &CString,
        rel: &[u8],
        meta: &Meta,
    ) -> Option<Mount> {
        let what = match mounts::probe(parent.as_fd(), name) {
            Probe::Plain => return None,
            Probe::MountRoot(id) => match self.mount_table.get_or_init(MountTable::read) {
                Some(table) => match table.kind(id) {
                    MountKind::SelfBind => return None,
                    MountKind::Mount(what) => what,
                },
                // No /proc: a self-bind cannot be told apart; fail closed.
                None => format!("mount {id} (/proc/self/mountinfo is not available)"),
            },
            // A kernel before 5.8 does not say: a change of device does.
            Probe::Unknown => {
                let parent_dev = rustix::fs::fstat(parent).map(|st| Meta::from_stat(&st).dev);
                if parent_dev.map_or(true, |d| d == meta.dev) {
                    return None;
                }
                format!(
                    "another filesystem (device {}:{})",
                    rustix::fs::major(meta.dev as _),
                    rustix::fs::minor(meta.dev as _)
                )
            }
        };
        let expected = self.policy.mount_expected(rel);
        Some(Mount {
            expected,
            entered: expected || !self.policy.one_file_system(),
            what,
        })
    }

    /// A directory: opened once (relative to its parent, `O_NOFOLLOW`) for
    /// its xattrs, the check that it is what `lstat` saw, and its listing.
    /// An unexpected mount (with `one_file_system`) is reported, not
    /// descended, and opened only if its xattrs are wanted.
    fn visit_dir(
        &self,
        parent: &Arc<DirFd>,
        rel: Box<[u8]>,
        name: CString,
        meta: Meta,
        attrs: AttrSet,
        buf: &mut Vec<u8>,
    ) -> Step {
        let mut entry = meta.entry(rel.clone(), attrs);
        let mount = self.mount_at(parent, &name, &rel, &meta);
        let enter = mount.as_ref().is_none_or(|m| m.entered);
        let want_xattrs = attrs.contains(Attr::Xattrs);
        if !enter && !want_xattrs {
            self.send(ScanEvent::Entry { entry, mount });
            return Step::Next;
        }
        let replaced = || {
            unreadable(
                &rel,
                UnreadableKind::ChangedWhileRead,
                "changed while being read (directory replaced)".into(),
                Unchecked::Subtree,
            )
        };
        let fd = match dirfd::open_dir(&self.budget, self.control, parent.as_fd(), &name) {
            Ok(fd) => fd,
            Err(OpenError::Cancelled) => return Step::Stop,
            Err(OpenError::Sys(Errno::NOENT)) => return Step::Next, // vanished
            Err(OpenError::Sys(Errno::LOOP | Errno::NOTDIR)) => {
                self.send(replaced());
                return Step::Next;
            }
            Err(OpenError::Sys(e)) => {
                // Without its xattrs the entry is incomplete: only the
                // failure is reported. Otherwise the entry stands, and
                // the subtree is what could not be checked.
                if !want_xattrs {
                    self.send(ScanEvent::Entry { entry, mount });
                }
                self.send(unreadable(
                    &rel,
                    cause_of(e),
                    format!("cannot open directory: {}", errno_text(e)),
                    if want_xattrs {
                        Unchecked::Subtree
                    } else {
                        Unchecked::Below(meta)
                    },
                ));
                return Step::Next;
            }
        };
        match rustix::fs::fstat(&fd) {
            Ok(st) if Meta::from_stat(&st).same_object(&meta) => {}
            Ok(_) => {
                self.send(replaced());
                return Step::Next;
            }
            Err(e) => {
                self.send(unreadable(
                    &rel,
                    cause_of(e),
                    format!("cannot stat directory: {}", errno_text(e)),
                    Unchecked::Subtree,
                ));
                return Step::Next;
            }
        }
        if want_xattrs {
            match xattr::read_fd(fd.as_fd()) {
                Ok(x) => entry.xattrs = Some(x),
                Err(e) => {
                    // Skipping a directory skips its subtree: say so, so its
                    // manifest entries are "not checked", never "removed".
                    self.send(unreadable(
                        &rel,
                        io_cause(&e),
                        format!("cannot read xattrs: {e}"),
                        Unchecked::Subtree,
                    ));
                    return Step::Next;
                }
            }
        }
        self.send(ScanEvent::Entry { entry, mount });
        if !enter {
            return Step::Next;
        }
        match dirfd::list(fd.as_fd(), buf) {
            Ok(children) => Step::Descend(Level::new(rel, name, meta, fd, children)),
            Err(e) => {
                self.send(unreadable(
                    &rel,
                    cause_of(e),
                    format!("cannot list directory: {}", errno_text(e)),
                    Unchecked::Below(meta),
                ));
                Step::Next
            }
        }
    }
}
