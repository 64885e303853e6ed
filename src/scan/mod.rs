//! Walk, stat and hash a tree under a root, producing manifest entries.
//!
//! Security properties, each deliberate:
//! - Nothing is resolved by path but the configured root itself: every
//!   directory below it is opened with `openat(parent, name, O_DIRECTORY |
//!   O_NOFOLLOW)`, children are `lstat`ed with `fstatat(parent, name,
//!   AT_SYMLINK_NOFOLLOW)` (a file `getdents` calls regular is opened and
//!   `fstat`ed instead), and files are opened relative to their parent's
//!   descriptor, so a symlink is never followed, also one swapped in for a
//!   directory above a path mid-walk. Each directory the walk enters (or
//!   re-opens) is `fstat`ed and must be the one it listed (device and
//!   inode). A targeted scan reaches its start the same way, one
//!   `O_NOFOLLOW` component at a time.
//! - Only regular files are opened for reading, with `O_NOFOLLOW |
//!   O_NONBLOCK | O_NOCTTY`, and the descriptor is `fstat`ed before any read:
//!   unless it is a regular file (and the object the walk saw, when it had
//!   `lstat`ed it), nothing is read and the path is reported as changed. A
//!   FIFO, socket or device is recorded, never opened for reading; one
//!   swapped in for a listed file at the instant of the open is closed
//!   unread, and `O_NONBLOCK` means even a FIFO cannot hang us. Xattrs of
//!   symlinks and special files come through an `O_PATH` handle
//!   ([`xattr`]), never a path.
//! - A file is re-`fstat`ed after hashing; if it changed while being read it
//!   is read once more, and if it changes again it is reported unreadable.
//! - Files are read with large buffered reads, never mmap: a concurrent
//!   truncation would SIGBUS an mmap reader.
//! - Every per-path failure becomes an [`ScanEvent::Unreadable`], never an
//!   abort and never a silent skip; only a root that cannot be opened at all
//!   is an error. A path whose on-disk form reaches `PATH_MAX` is reported
//!   unreadable (name too long): the agent's watches and reports name paths.
//!
//! Descriptor budget: a scan holds at most [`DIR_FDS`] (32) directory
//! descriptors, the root's included, whatever the tree's depth or width
//! (a slot is taken before each directory is opened and given back when
//! the walker and the queued jobs are done with it), plus one transient
//! `O_PATH` handle in the walker and one open file per hashing thread: 33 +
//! threads in all, so a scan keeps working in a process that something else
//! has pushed close to its `RLIMIT_NOFILE`. The walker keeps at most
//! [`HELD_DIRS`] ancestors open and re-opens the others from where it
//! started (the root, or a targeted start's parent) when it needs them,
//! checking each directory again; the queue holds [`JOBS_PER_THREAD`] jobs
//! per hashing thread.
//!
//! Parallelism: one walker thread lists directories depth-first and stats
//! entries while `threads` hashing threads open and read files; results
//! arrive on the caller's thread in no particular order (callers sort).

mod dirfd;
mod hash;
pub mod ids;
mod meta;
mod mounts;
mod pacer;
#[cfg(test)]
mod tests;
mod walk;
mod xattr;

pub use meta::Meta;
pub use pacer::Pacer;
pub use xattr::trusted_visible;

/// A class of attribute this process cannot see, so a change in it would go
/// unnoticed: shown as `driftd_blind_spots{class}` and in `/status`, so a
/// blind spot is a known fact, never a silent one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlindSpot {
    /// `trusted.*` xattrs (overlayfs keeps `trusted.overlay.*` there): the
    /// kernel lists them only to a process with `CAP_SYS_ADMIN`, which the
    /// shipped unit does not grant.
    TrustedXattrs,
}

impl BlindSpot {
    pub const ALL: [BlindSpot; 1] = [BlindSpot::TrustedXattrs];

    pub fn label(self) -> &'static str {
        match self {
            BlindSpot::TrustedXattrs => "trusted_xattrs",
        }
    }

    /// What it hides, for the log.
    pub fn explain(self) -> &'static str {
        match self {
            BlindSpot::TrustedXattrs => {
                "trusted.* xattrs (such as overlayfs' trusted.overlay.*) are invisible without \
                 CAP_SYS_ADMIN: one added after baking goes unnoticed (README: Trust boundary)"
            }
        }
    }
}

/// The blind spots of this process.
pub fn blind_spots() -> Vec<BlindSpot> {
    let mut v = Vec::new();
    if !trusted_visible() {
        v.push(BlindSpot::TrustedXattrs);
    }
    v
}

use crate::manifest::diff::UnreadableKind;
use crate::manifest::Entry;
use crate::policy::CompiledPolicy;
use crossbeam_channel::bounded;
use hash::Job;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Directory descriptors one scan may hold at once (see the module doc).
pub const DIR_FDS: usize = 32;

/// Of [`DIR_FDS`], how many ancestors the walker keeps open (the root, or a
/// targeted start's parent, included). Real trees are rarely deeper; a
/// deeper chain costs re-opens, not descriptors.
pub const HELD_DIRS: usize = 16;

/// Jobs queued per hashing thread: enough to keep the threads busy, few
/// enough that the jobs' parent directories stay a small part of the budget.
pub const JOBS_PER_THREAD: usize = 32;

/// One result of a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanEvent {
    /// A path and what it looks like now. `mount` is set for a directory
    /// that is the root of a mount (a bind mount of a directory onto itself
    /// is not one: it shows the same files).
    Entry { entry: Entry, mount: Option<Mount> },
    /// A regular file (as listed) whose metadata was seen but whose content
    /// or xattrs could not be established: it could not be opened, it changed
    /// while being read, or something else was there when it was opened.
    /// `entry` is what the last look saw (its type, size, mode, owner; no
    /// hash, and xattrs only if they were read): what already differs from
    /// the manifest is drift, whatever the content; the rest is unknown.
    Partial {
        entry: Entry,
        cause: UnreadableKind,
        reason: String,
    },
    /// A path that could not be checked, and why; `unchecked` says how
    /// much of the tree that leaves unchecked.
    Unreadable {
        path: Box<[u8]>,
        cause: UnreadableKind,
        reason: String,
        unchecked: Unchecked,
    },
}

/// How much an [`ScanEvent::Unreadable`] path leaves unchecked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unchecked {
    /// The path itself.
    Path,
    /// The path and everything below it.
    Subtree,
    /// Everything below the path: its own entry was reported (an
    /// [`ScanEvent::Entry`] before this event, made of this metadata), its
    /// listing failed.
    Below(Meta),
}

impl Unchecked {
    /// Nothing below the path was checked.
    pub fn below(self) -> bool {
        self != Unchecked::Path
    }
}

/// A mount the walk found over a checked directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The policy expects one here (`mounts`): it is checked like any
    /// directory below which the walk goes on.
    pub expected: bool,
    /// The walk went below it (an expected mount, or `one_file_system`
    /// off).
    pub entered: bool,
    /// What is mounted, for people (`tmpfs mount of none`, `bind mount of
    /// /srv/x (ext4)`).
    pub what: String,
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
    /// Counters kept up to date while the scan runs, for a display (the
    /// CLI's progress line); the agent sets none.
    pub progress: Option<Arc<Progress>>,
}

/// How far a scan has come, readable from another thread while it runs:
/// paths done (every event: entries and paths that could not be read) and
/// bytes hashed. Added to, never reset: one handle may span several scans.
#[derive(Debug, Default)]
pub struct Progress {
    entries: AtomicU64,
    bytes: AtomicU64,
}

impl Progress {
    /// Paths done so far.
    pub fn entries(&self) -> u64 {
        self.entries.load(Ordering::Relaxed)
    }

    /// Bytes of file content hashed so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
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
    let root_error = |op, e: Errno| ScanError::Root {
        op,
        path: opts.root.to_path_buf(),
        source: e.into(),
    };
    // The root is the one path the scan opens; everything else is reached
    // from this descriptor.
    let root_fd = rustix::fs::open(
        opts.root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| root_error("open root directory", e))?;
    let root_meta = rustix::fs::fstat(&root_fd)
        .map(|st| Meta::from_stat(&st))
        .map_err(|e| root_error("stat root directory", e))?;
    let (budget, root) = dirfd::with_root(DIR_FDS, root_fd);
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        opts.threads
    };
    let mut stats = ScanStats::default();
    let (job_tx, job_rx) = bounded::<Job>(threads * JOBS_PER_THREAD);
    let (ev_tx, ev_rx) = bounded::<(ScanEvent, u64)>(4096);
    std::thread::scope(|s| {
        let root_path = opts.root.as_os_str().as_bytes();
        let walker = walk::Walker {
            root_len: root_path.strip_suffix(b"/").unwrap_or(root_path).len(),
            policy: opts.policy,
            jobs: job_tx,
            events: ev_tx.clone(),
            control,
            budget,
            mount_table: std::cell::OnceCell::new(),
        };
        s.spawn(move || match control.start.as_deref() {
            None | Some(b"/") => walker.run(root, root_meta),
            Some(start) => walker.run_from(root, start),
        });
        for _ in 0..threads {
            let rx = job_rx.clone();
            let tx = ev_tx.clone();
            s.spawn(move || hash::hash_worker(rx, tx, control));
        }
        drop(ev_tx);
        drop(job_rx);
        for (ev, bytes) in ev_rx.iter() {
            let mut hashed = 0;
            match &ev {
                ScanEvent::Entry { entry, .. } => {
                    stats.entries += 1;
                    if entry.hash.is_some() {
                        stats.files_hashed += 1;
                        stats.bytes_hashed = stats.bytes_hashed.saturating_add(bytes);
                        hashed = bytes;
                    }
                }
                ScanEvent::Partial { .. } | ScanEvent::Unreadable { .. } => stats.unreadable += 1,
            }
            if let Some(p) = &control.progress {
                p.entries.fetch_add(1, Ordering::Relaxed);
                p.bytes.fetch_add(hashed, Ordering::Relaxed);
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
    scan_collect_with(opts, &ScanControl::default())
}

/// [`scan_collect`] with [`ScanControl`] (a progress handle, for `bake`).
pub fn scan_collect_with(
    opts: &ScanOptions<'_>,
    control: &ScanControl,
) -> Result<Collected, ScanError> {
    let mut entries = Vec::new();
    let mut bad = Vec::new();
    let stats = scan_with(opts, control, &mut |ev| match ev {
        ScanEvent::Entry { entry, .. } => entries.push(entry),
        ScanEvent::Partial { entry, reason, .. } => bad.push((entry.path, reason)),
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

fn unreadable(
    path: &[u8],
    cause: UnreadableKind,
    reason: String,
    unchecked: Unchecked,
) -> ScanEvent {
    ScanEvent::Unreadable {
        path: path.into(),
        cause,
        reason,
        unchecked,
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
        // Out of descriptors or memory: nothing wrong with the path; the
        // check is retried (not left unknown until the next interval).
        Errno::MFILE | Errno::NFILE | Errno::NOMEM => UnreadableKind::ScanFailed,
        _ => UnreadableKind::Other,
    }
}

/// The typed cause of a failed I/O operation.
fn io_cause(e: &std::io::Error) -> UnreadableKind {
    e.raw_os_error().map_or(UnreadableKind::Other, |n| {
        cause_of(Errno::from_raw_os_error(n))
    })
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
