//! Walk, stat and hash a tree under a root, producing manifest entries.
//!
//! Security properties, each deliberate:
//! - Symlinks are never followed: directories are opened with `O_NOFOLLOW`
//!   and children are `lstat`ed relative to the open directory (`fstatat`
//!   with `AT_SYMLINK_NOFOLLOW`).
//! - Only regular files are opened for reading, with `O_NOFOLLOW |
//!   O_NONBLOCK`, and the open descriptor is `fstat`ed and compared with
//!   what the walk saw (device and inode): if a FIFO, a device or a symlink
//!   was swapped in between, nothing is read and the path is reported as
//!   changed. `O_NONBLOCK` means even a swapped-in FIFO cannot hang us.
//! - A file is re-`fstat`ed after hashing; if it changed while being read it
//!   is read once more, and if it changes again it is reported unreadable.
//! - Files are read with large buffered reads, never mmap: a concurrent
//!   truncation would SIGBUS an mmap reader.
//! - Every per-path failure becomes an [`ScanEvent::Unreadable`], never an
//!   abort and never a silent skip; only a root that cannot be opened at all
//!   is an error.
//!
//! Parallelism: one walker thread lists directories and stats entries while
//! `threads` hashing threads read files; results arrive on the caller's
//! thread in no particular order (callers sort).

mod meta;
mod xattr;
pub use xattr::trusted_visible;

pub use meta::Meta;

use crate::manifest::diff::UnreadableKind;
use crate::manifest::{Entry, FileKind};
use crate::policy::{Attr, AttrSet, CompiledPolicy};
use crossbeam_channel::{bounded, Receiver, Sender};
use rustix::fs::{AtFlags, Dir, Mode, OFlags, CWD};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Read buffer per hashing thread: large enough for BLAKE3's SIMD to work
/// on many chunks at once, small enough to keep memory flat.
const READ_BUF: usize = 256 * 1024;

/// One result of a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanEvent {
    /// A path and what it looks like now. `mount_point` is set for a
    /// directory on another filesystem that was not descended into
    /// (`one_file_system`): only its type is meaningful.
    Entry { entry: Entry, mount_point: bool },
    /// A path that could not be checked, and why. `subtree` is set when
    /// nothing below it could be checked either.
    Unreadable {
        path: Box<[u8]>,
        cause: UnreadableKind,
        reason: String,
        subtree: bool,
    },
}

/// Counters from one scan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanStats {
    pub entries: u64,
    pub files_hashed: u64,
    pub bytes_hashed: u64,
    pub unreadable: u64,
}

/// A scan that could not start, or was cancelled.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("{op} {}: {source}", path.display())]
    Root {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("scan cancelled")]
    Cancelled,
}

/// Paces reads to at most `bytes_per_second`, shared by all hashing
/// threads, so a full scan never saturates a production host's disks.
#[derive(Debug)]
pub struct Pacer {
    bytes_per_second: f64,
    /// Every byte accounted for so far.
    charged: std::sync::atomic::AtomicU64,
    /// (when the budget was last refilled, bytes that may still be read)
    state: std::sync::Mutex<(std::time::Instant, f64)>,
}

impl Pacer {
    pub fn new(bytes_per_second: u64) -> Pacer {
        Pacer {
            bytes_per_second: bytes_per_second.max(1) as f64,
            charged: std::sync::atomic::AtomicU64::new(0),
            state: std::sync::Mutex::new((std::time::Instant::now(), 0.0)),
        }
    }

    /// Account for `bytes` about to be read, sleeping as long as needed.
    /// A burst of at most a quarter second's worth is allowed.
    pub fn pace(&self, bytes: u64) {
        self.charged
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        let wait = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let now = std::time::Instant::now();
            let refill = now.duration_since(st.0).as_secs_f64() * self.bytes_per_second;
            st.0 = now;
            st.1 = (st.1 + refill).min(self.bytes_per_second / 4.0) - bytes as f64;
            if st.1 < 0.0 {
                std::time::Duration::from_secs_f64(-st.1 / self.bytes_per_second)
            } else {
                std::time::Duration::ZERO
            }
        };
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }

    /// Bytes accounted for so far.
    pub fn charged(&self) -> u64 {
        self.charged.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Optional controls for a scan: where to start, how to stop, how fast.
#[derive(Debug, Clone, Default)]
pub struct ScanControl {
    /// Scan only this path inside the root (and everything below it, for a
    /// directory) instead of the whole tree. A path that does not exist
    /// yields no event at all.
    pub start: Option<Box<[u8]>>,
    /// Set to stop the scan early; it then returns [`ScanError::Cancelled`].
    pub cancel: Option<Arc<AtomicBool>>,
    /// Limits the read rate of the hashing threads.
    pub pacer: Option<Arc<Pacer>>,
}

impl ScanControl {
    fn cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    }
}

/// How to scan.
#[derive(Debug, Clone)]
pub struct ScanOptions<'a> {
    pub root: &'a Path,
    pub policy: &'a CompiledPolicy,
    /// Hashing threads; 0 means one per CPU.
    pub threads: usize,
}

struct Job {
    rel: Box<[u8]>,
    fs_path: Vec<u8>,
    meta: Meta,
    attrs: AttrSet,
}

/// Scan the tree, calling `sink` for every event on the calling thread.
pub fn scan(
    opts: &ScanOptions<'_>,
    sink: &mut dyn FnMut(ScanEvent),
) -> Result<ScanStats, ScanError> {
    scan_with(opts, &ScanControl::default(), sink)
}

/// [`scan`] with a start path, cancellation and pacing.
pub fn scan_with(
    opts: &ScanOptions<'_>,
    control: &ScanControl,
    sink: &mut dyn FnMut(ScanEvent),
) -> Result<ScanStats, ScanError> {
    let root_fd = rustix::fs::open(
        opts.root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ScanError::Root {
        op: "open root directory",
        path: opts.root.to_path_buf(),
        source: e.into(),
    })?;
    let root_meta = rustix::fs::fstat(&root_fd)
        .map(|st| Meta::from_stat(&st))
        .map_err(|e| ScanError::Root {
            op: "stat root directory",
            path: opts.root.to_path_buf(),
            source: e.into(),
        })?;
    drop(root_fd);
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        opts.threads
    };
    let mut stats = ScanStats::default();
    let (job_tx, job_rx) = bounded::<Job>(threads * 256);
    let (ev_tx, ev_rx) = bounded::<(ScanEvent, u64)>(4096);
    std::thread::scope(|s| {
        let walker = Walker {
            root: opts.root.as_os_str().as_bytes(),
            policy: opts.policy,
            root_dev: root_meta.dev,
            jobs: job_tx,
            events: ev_tx.clone(),
            control,
        };
        s.spawn(move || match control.start.as_deref() {
            None | Some(b"/") => walker.run(root_meta),
            Some(start) => walker.run_from(start),
        });
        for _ in 0..threads {
            let rx = job_rx.clone();
            let tx = ev_tx.clone();
            s.spawn(move || hash_worker(rx, tx, control));
        }
        drop(ev_tx);
        drop(job_rx);
        for (ev, bytes) in ev_rx.iter() {
            match &ev {
                ScanEvent::Entry { entry, .. } => {
                    stats.entries += 1;
                    if entry.hash.is_some() {
                        stats.files_hashed += 1;
                        stats.bytes_hashed = stats.bytes_hashed.saturating_add(bytes);
                    }
                }
                ScanEvent::Unreadable { .. } => stats.unreadable += 1,
            }
            sink(ev);
        }
    });
    if control.cancelled() {
        return Err(ScanError::Cancelled);
    }
    Ok(stats)
}

/// A whole scan: sorted entries, unreadable paths with reasons, counters.
#[derive(Debug, Default)]
pub struct Collected {
    pub entries: Vec<Entry>,
    pub unreadable: Vec<(Box<[u8]>, String)>,
    pub stats: ScanStats,
}

/// Scan into a sorted list of entries and a list of unreadable paths.
pub fn scan_collect(opts: &ScanOptions<'_>) -> Result<Collected, ScanError> {
    let mut entries = Vec::new();
    let mut bad = Vec::new();
    let stats = scan(opts, &mut |ev| match ev {
        ScanEvent::Entry { entry, .. } => entries.push(entry),
        ScanEvent::Unreadable { path, reason, .. } => bad.push((path, reason)),
    })?;
    entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    bad.sort();
    Ok(Collected {
        entries,
        unreadable: bad,
        stats,
    })
}

struct Walker<'a> {
    root: &'a [u8],
    policy: &'a CompiledPolicy,
    root_dev: u64,
    jobs: Sender<Job>,
    events: Sender<(ScanEvent, u64)>,
    control: &'a ScanControl,
}

fn unreadable(path: &[u8], cause: UnreadableKind, reason: String, subtree: bool) -> ScanEvent {
    ScanEvent::Unreadable {
        path: path.into(),
        cause,
        reason,
        subtree,
    }
}

fn errno_text(e: Errno) -> String {
    std::io::Error::from(e).to_string()
}

/// The typed cause of a failed system call.
fn cause_of(e: Errno) -> UnreadableKind {
    match e {
        Errno::ACCESS | Errno::PERM => UnreadableKind::PermissionDenied,
        Errno::NAMETOOLONG => UnreadableKind::NameTooLong,
        _ => UnreadableKind::Other,
    }
}

/// The typed cause of a failed I/O operation.
fn io_cause(e: &std::io::Error) -> UnreadableKind {
    e.raw_os_error().map_or(UnreadableKind::Other, |n| {
        cause_of(Errno::from_raw_os_error(n))
    })
}

impl Walker<'_> {
    fn fs_path(&self, rel: &[u8]) -> Vec<u8> {
        if rel == b"/" {
            return self.root.to_vec();
        }
        let root = self.root.strip_suffix(b"/").unwrap_or(self.root);
        [root, rel].concat()
    }

    fn send(&self, ev: ScanEvent) {
        // The receiver only goes away when the caller is gone; nothing to do.
        let _ = self.events.send((ev, 0));
    }

    fn run(self, root_meta: Meta) {
        let root_rel: Box<[u8]> = Box::from(&b"/"[..]);
        let attrs = self.policy.attrs_for(&root_rel);
        let root_path = self.fs_path(&root_rel);
        let mut root_entry = root_meta.entry(root_rel.clone(), attrs);
        if attrs.contains(Attr::Xattrs) {
            match xattr::read_path(&root_path) {
                Ok(x) => root_entry.xattrs = Some(x),
                Err(e) => {
                    self.send(unreadable(
                        &root_rel,
                        io_cause(&e),
                        format!("cannot read xattrs: {e}"),
                        false,
                    ));
                }
            }
        }
        self.send(ScanEvent::Entry {
            entry: root_entry,
            mount_point: false,
        });
        let mut stack: Vec<(Box<[u8]>, Meta)> = vec![(root_rel, root_meta)];
        self.drain(&mut stack);
    }

    fn drain(&self, stack: &mut Vec<(Box<[u8]>, Meta)>) {
        while let Some((rel, meta)) = stack.pop() {
            if self.control.cancelled() {
                return;
            }
            self.walk_dir(&rel, meta, stack);
        }
    }

    /// Scan one path (and its subtree) inside the root: its parent is
    /// opened like any directory of a full walk, so the same checks apply.
    fn run_from(self, start: &[u8]) {
        if !start.starts_with(b"/") || start.ends_with(b"/") {
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
        let Ok(name) = std::ffi::CString::new(name) else {
            return;
        };
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        let fd =
            match rustix::fs::openat(CWD, self.fs_path(parent).as_slice(), flags, Mode::empty()) {
                Ok(fd) => fd,
                // The parent is gone or is no longer a directory: so is `start`.
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => return,
                Err(e) => {
                    self.send(unreadable(
                        start,
                        cause_of(e),
                        format!("cannot open parent directory: {}", errno_text(e)),
                        true,
                    ));
                    return;
                }
            };
        let mut stack = Vec::new();
        self.visit(&fd, &name, start.into(), &mut stack);
        self.drain(&mut stack);
    }

    fn walk_dir(&self, rel: &[u8], expect: Meta, stack: &mut Vec<(Box<[u8]>, Meta)>) {
        let fs_path = self.fs_path(rel);
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        let fd: OwnedFd = match rustix::fs::openat(CWD, fs_path.as_slice(), flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return, // vanished: the parent listing tells
            Err(Errno::LOOP | Errno::NOTDIR) => {
                self.send(unreadable(
                    rel,
                    UnreadableKind::ChangedWhileRead,
                    "changed while being read (directory replaced)".into(),
                    true,
                ));
                return;
            }
            Err(e) => {
                self.send(unreadable(
                    rel,
                    cause_of(e),
                    format!("cannot open directory: {}", errno_text(e)),
                    true,
                ));
                return;
            }
        };
        match rustix::fs::fstat(&fd) {
            Ok(st) if Meta::from_stat(&st).same_object(&expect) => {}
            Ok(_) => {
                self.send(unreadable(
                    rel,
                    UnreadableKind::ChangedWhileRead,
                    "changed while being read (directory replaced)".into(),
                    true,
                ));
                return;
            }
            Err(e) => {
                self.send(unreadable(
                    rel,
                    cause_of(e),
                    format!("cannot stat directory: {}", errno_text(e)),
                    true,
                ));
                return;
            }
        }
        let names = match Dir::read_from(&fd).and_then(|dir| {
            let mut names = Vec::new();
            for item in dir {
                let item = item?;
                let name = item.file_name().to_bytes();
                if name != b"." && name != b".." {
                    names.push(item.file_name().to_owned());
                }
            }
            Ok(names)
        }) {
            Ok(n) => n,
            Err(e) => {
                self.send(unreadable(
                    rel,
                    cause_of(e),
                    format!("cannot list directory: {}", errno_text(e)),
                    true,
                ));
                return;
            }
        };
        let prefix: &[u8] = if rel == b"/" { b"" } else { rel };
        for name in names {
            let child: Box<[u8]> = [prefix, b"/", name.to_bytes()].concat().into();
            if self.policy.is_excluded(&child) {
                continue;
            }
            if !self.visit(&fd, &name, child, stack) {
                return;
            }
        }
    }

    /// Stat one child of an open directory and report it (or queue it for
    /// hashing, or push it to be walked). Returns false when the scan is
    /// shutting down.
    fn visit(
        &self,
        fd: &OwnedFd,
        name: &std::ffi::CStr,
        child: Box<[u8]>,
        stack: &mut Vec<(Box<[u8]>, Meta)>,
    ) -> bool {
        let st = match rustix::fs::statat(fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return true, // vanished mid-scan: it is not there now
            Err(e) => {
                self.send(unreadable(
                    &child,
                    cause_of(e),
                    format!("cannot stat: {}", errno_text(e)),
                    true,
                ));
                return true;
            }
        };
        let meta = Meta::from_stat(&st);
        let attrs = self.policy.attrs_for(&child);
        let kind = meta.kind();
        if kind == FileKind::File && (attrs.contains(Attr::Content) || attrs.contains(Attr::Xattrs))
        {
            let job = Job {
                fs_path: self.fs_path(&child),
                rel: child,
                meta,
                attrs,
            };
            return self.jobs.send(job).is_ok();
        }
        let mut entry = meta.entry(child.clone(), attrs);
        if kind == FileKind::Symlink && attrs.contains(Attr::Target) {
            match rustix::fs::readlinkat(fd, name, Vec::new()) {
                Ok(t) => entry.target = Some(t.into_bytes().into_boxed_slice()),
                Err(Errno::NOENT) => return true,
                Err(e) => {
                    self.send(unreadable(
                        &child,
                        cause_of(e),
                        format!("cannot read link: {}", errno_text(e)),
                        false,
                    ));
                    return true;
                }
            }
        }
        if attrs.contains(Attr::Xattrs) {
            // A directory's xattrs are read through a descriptor opened
            // relative to its parent (no path length limit, no symlink
            // followed); other types cannot be opened safely, so their own
            // xattrs are read by path without following the last component.
            let read = if kind == FileKind::Dir {
                let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                rustix::fs::openat(fd, name, flags, Mode::empty())
                    .map_err(std::io::Error::from)
                    .and_then(|dfd| xattr::read_fd(dfd.as_fd()))
            } else {
                xattr::read_path(&self.fs_path(&child))
            };
            match read {
                Ok(x) => entry.xattrs = Some(x),
                Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => return true,
                Err(e) => {
                    // Skipping a directory skips its subtree: say so, so its
                    // manifest entries are "not checked", never "removed".
                    let subtree = kind == FileKind::Dir;
                    self.send(unreadable(
                        &child,
                        io_cause(&e),
                        format!("cannot read xattrs: {e}"),
                        subtree,
                    ));
                    return true;
                }
            }
        }
        let mount_point =
            kind == FileKind::Dir && self.policy.one_file_system() && meta.dev != self.root_dev;
        if kind == FileKind::Dir && !mount_point {
            stack.push((child, meta));
        }
        self.send(ScanEvent::Entry { entry, mount_point });
        true
    }
}

fn hash_worker(jobs: Receiver<Job>, events: Sender<(ScanEvent, u64)>, control: &ScanControl) {
    let mut buf = vec![0u8; READ_BUF];
    for job in jobs.iter() {
        if control.cancelled() {
            continue; // drain the queue so the walker can finish
        }
        let (ev, bytes) = match hash_file(&job, &mut buf, control) {
            Ok(Some((entry, bytes))) => (
                ScanEvent::Entry {
                    entry,
                    mount_point: false,
                },
                bytes,
            ),
            Ok(None) => continue, // vanished
            Err((cause, reason)) => (unreadable(&job.rel, cause, reason, false), 0),
        };
        if events.send((ev, bytes)).is_err() {
            return;
        }
    }
}

fn open_regular(path: &[u8]) -> Result<OwnedFd, Errno> {
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    // O_NOATIME keeps the scan from touching atimes on a production host;
    // it is refused (EPERM) for files we do not own without CAP_FOWNER, so
    // after the first refusal stop asking (one open per file, not two).
    static NOATIME_REFUSED: AtomicBool = AtomicBool::new(false);
    if !NOATIME_REFUSED.load(Ordering::Relaxed) {
        match rustix::fs::openat(CWD, path, flags | OFlags::NOATIME, Mode::empty()) {
            Err(Errno::PERM) => NOATIME_REFUSED.store(true, Ordering::Relaxed),
            r => return r,
        }
    }
    rustix::fs::openat(CWD, path, flags, Mode::empty())
}

/// Hash one regular file. `Ok(None)` means it vanished before we opened it.
fn hash_file(
    job: &Job,
    buf: &mut [u8],
    control: &ScanControl,
) -> Result<Option<(Entry, u64)>, (UnreadableKind, String)> {
    let fd = match open_regular(&job.fs_path) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(Errno::LOOP) => {
            return Err((
                UnreadableKind::ChangedWhileRead,
                "changed while being read (replaced by a symlink)".into(),
            ))
        }
        Err(e) => return Err((cause_of(e), format!("cannot open: {}", errno_text(e)))),
    };
    let stat = |fd: &OwnedFd| {
        rustix::fs::fstat(fd)
            .map(|st| Meta::from_stat(&st))
            .map_err(|e| (cause_of(e), format!("cannot stat: {}", errno_text(e))))
    };
    let first = stat(&fd)?;
    if first.kind() != FileKind::File || !first.same_object(&job.meta) {
        return Err((
            UnreadableKind::ChangedWhileRead,
            "changed while being read (replaced)".into(),
        ));
    }
    let want_hash = job.attrs.contains(Attr::Content);
    let mut before = first;
    for _attempt in 0..2 {
        let (hash, bytes) = if want_hash {
            let (h, n) = hash_fd(&fd, buf, control)
                .map_err(|e| (io_cause(&e), format!("read error: {e}")))?;
            (Some(h), n)
        } else {
            (None, 0)
        };
        let xattrs = if job.attrs.contains(Attr::Xattrs) {
            Some(
                xattr::read_fd(fd.as_fd())
                    .map_err(|e| (io_cause(&e), format!("cannot read xattrs: {e}")))?,
            )
        } else {
            None
        };
        let after = stat(&fd)?;
        // Unchanged size and times (mtime and ctime, with nanoseconds)
        // while we read: the hash describes one version of the file.
        if after.same_version(&before) && (!want_hash || bytes == after.size) {
            let mut entry = after.entry(job.rel.clone(), job.attrs);
            entry.hash = hash;
            entry.xattrs = xattrs;
            return Ok(Some((entry, bytes)));
        }
        before = after;
    }
    Err((
        UnreadableKind::ChangedWhileRead,
        "changed while being read (twice)".into(),
    ))
}

fn hash_fd(
    fd: &OwnedFd,
    buf: &mut [u8],
    control: &ScanControl,
) -> std::io::Result<([u8; 32], u64)> {
    let mut hasher = blake3::Hasher::new();
    let mut offset: u64 = 0;
    loop {
        if control.cancelled() {
            return Err(std::io::Error::other("scan cancelled"));
        }
        let n = match rustix::io::pread(fd, &mut *buf, offset) {
            Ok(n) => n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            break;
        }
        // Charge what was read, not the buffer size: a small file costs
        // its size, not a whole buffer (and the final empty read nothing).
        if let Some(p) = &control.pacer {
            p.pace(n as u64);
        }
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    Ok((*hasher.finalize().as_bytes(), offset))
}

/// The on-disk path for a path inside `root` (for messages).
pub fn display_path(root: &Path, rel: &[u8]) -> PathBuf {
    let mut p = root.as_os_str().as_bytes().to_vec();
    if rel != b"/" {
        if p.ends_with(b"/") {
            p.pop();
        }
        p.extend_from_slice(rel);
    }
    PathBuf::from(OsStr::from_bytes(&p))
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
