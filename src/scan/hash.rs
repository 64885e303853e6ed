//! The hashing threads: open each regular file relative to its parent
//! directory, check what was opened, read it with a large buffer (never
//! mmap), and describe it from its own `fstat`.
//!
//! A job names a file by its parent's descriptor and its name, never by a
//! path. The open is `O_NOFOLLOW | O_NONBLOCK | O_NOCTTY`, so a symlink
//! swapped in fails with ELOOP and a FIFO or device swapped in does not
//! block or become a terminal; the `fstat` that follows must show a regular
//! file (and, when the walker had `lstat`ed it, the same device and inode),
//! or it is closed unread. When `getdents` said "regular file", that
//! `fstat` replaces the walker's `lstat`: one system call fewer per file.

use super::meta::Meta;
use super::{cause_of, errno_text, io_cause, unreadable, xattr, ScanControl, ScanEvent, Unchecked};
use crate::manifest::diff::UnreadableKind;
use crate::manifest::{Entry, FileKind};
use crate::policy::{Attr, AttrSet};
use crossbeam_channel::{Receiver, Sender};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::dirfd::DirFd;

/// Read buffer per hashing thread: large enough for BLAKE3's SIMD to work
/// on many chunks at once, small enough to keep memory flat.
const READ_BUF: usize = 256 * 1024;

/// One regular file to read.
pub(super) struct Job {
    pub rel: Box<[u8]>,
    /// Its directory, kept open (and counted in the budget) until the file
    /// itself is open.
    pub dir: Arc<DirFd>,
    pub name: CString,
    /// What the walker's `lstat` saw, or `None` when `getdents` reported a
    /// regular file and this thread's `fstat` is the first look.
    pub seen: Option<Meta>,
    pub attrs: AttrSet,
}

/// Why a file could not be read: a typed cause and a message.
type Failure = (UnreadableKind, String);

pub(super) fn hash_worker(
    jobs: Receiver<Job>,
    events: Sender<(ScanEvent, u64)>,
    control: &ScanControl,
) {
    let mut buf = vec![0u8; READ_BUF];
    for job in jobs.iter() {
        if control.cancelled() {
            continue; // drain the queue so the walker can finish
        }
        let outcome = match open_regular(job.dir.as_fd(), &job.name) {
            Ok(fd) => {
                // The directory is not needed past the open: give its budget
                // slot back before the (possibly long) read.
                drop(job.dir);
                hash_file(&fd, job.seen, &job.rel, job.attrs, &mut buf, control)
            }
            Err(Errno::NOENT) => continue, // vanished: it is not there now
            Err(e) => {
                let failure = match e {
                    Errno::LOOP => (
                        UnreadableKind::ChangedWhileRead,
                        "changed while being read (replaced by a symlink)".into(),
                    ),
                    // ENXIO: a socket or a device without a driver: not the
                    // regular file that was listed.
                    Errno::NXIO => (
                        UnreadableKind::ChangedWhileRead,
                        "changed while being read (replaced)".into(),
                    ),
                    e => (cause_of(e), format!("cannot open: {}", errno_text(e))),
                };
                // What is there now, by lstat: what already differs from the
                // manifest (its type, mode, owner, size) is drift even though
                // its content cannot be read.
                match looked_at(job.dir.as_fd(), &job.name, &job.rel, job.attrs) {
                    Some(entry) => Outcome::Partial(entry, failure),
                    None => Outcome::Failed(failure),
                }
            }
        };
        let (ev, bytes) = match outcome {
            Outcome::Hashed(entry, bytes) => (ScanEvent::Entry { entry, mount: None }, bytes),
            Outcome::Partial(entry, (cause, reason)) => (
                ScanEvent::Partial {
                    entry,
                    cause,
                    reason,
                },
                0,
            ),
            Outcome::Failed((cause, reason)) => {
                (unreadable(&job.rel, cause, reason, Unchecked::Path), 0)
            }
        };
        if events.send((ev, bytes)).is_err() {
            return;
        }
    }
}

/// How reading one listed file went.
enum Outcome {
    /// Read whole: every attribute known.
    Hashed(Entry, u64),
    /// Seen but not read: the metadata of the last look, and why.
    Partial(Entry, Failure),
    /// Not even seen.
    Failed(Failure),
}

/// The path's entry by `lstat` (and `readlink` for a symlink), without
/// content or xattrs; `None` if it cannot be seen either.
fn looked_at(dir: BorrowedFd<'_>, name: &CString, rel: &[u8], attrs: AttrSet) -> Option<Entry> {
    let st =
        rustix::fs::statat(dir, name.as_c_str(), rustix::fs::AtFlags::SYMLINK_NOFOLLOW).ok()?;
    let meta = Meta::from_stat(&st);
    let mut entry = meta.entry(rel.into(), attrs);
    if meta.kind() == FileKind::Symlink && attrs.contains(Attr::Target) {
        let target = rustix::fs::readlinkat(dir, name.as_c_str(), Vec::new()).ok()?;
        entry.target = Some(target.into_bytes().into_boxed_slice());
    }
    Some(entry)
}

fn open_regular(dir: BorrowedFd<'_>, name: &CString) -> Result<OwnedFd, Errno> {
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    // O_NOATIME keeps the scan from touching atimes on a production host;
    // it is refused (EPERM) for files we do not own without CAP_FOWNER, so
    // after the first refusal stop asking (one open per file, not two).
    static NOATIME_REFUSED: AtomicBool = AtomicBool::new(false);
    if !NOATIME_REFUSED.load(Ordering::Relaxed) {
        match rustix::fs::openat(dir, name.as_c_str(), flags | OFlags::NOATIME, Mode::empty()) {
            Err(Errno::PERM) => NOATIME_REFUSED.store(true, Ordering::Relaxed),
            r => return r,
        }
    }
    rustix::fs::openat(dir, name.as_c_str(), flags, Mode::empty())
}

/// Hash one opened file, which must be a regular file (and the one the
/// walker saw, if it saw one).
fn hash_file(
    fd: &OwnedFd,
    seen: Option<Meta>,
    rel: &[u8],
    attrs: AttrSet,
    buf: &mut [u8],
    control: &ScanControl,
) -> Outcome {
    let first = match rustix::fs::fstat(fd) {
        Ok(st) => Meta::from_stat(&st),
        Err(e) => return Outcome::Failed((cause_of(e), format!("cannot stat: {}", errno_text(e)))),
    };
    if first.kind() != FileKind::File || seen.is_some_and(|s| !first.same_object(&s)) {
        // Closed without a single read: a FIFO or device is never read. What
        // was opened is what is there now: its type and metadata count.
        return Outcome::Partial(
            first.entry(rel.into(), attrs),
            (
                UnreadableKind::ChangedWhileRead,
                "changed while being read (replaced)".into(),
            ),
        );
    }
    let want_hash = attrs.contains(Attr::Content);
    let mut before = first;
    for _attempt in 0..2 {
        let (hash, bytes) = if want_hash {
            match hash_fd(fd, buf, control) {
                Ok((h, n)) => (Some(h), n),
                Err(e) => {
                    let failure = (io_cause(&e), format!("read error: {e}"));
                    return Outcome::Partial(before.entry(rel.into(), attrs), failure);
                }
            }
        } else {
            (None, 0)
        };
        let xattrs = if attrs.contains(Attr::Xattrs) {
            match xattr::read_fd(fd.as_fd()) {
                Ok(x) => Some(x),
                Err(e) => {
                    let failure = (io_cause(&e), format!("cannot read xattrs: {e}"));
                    return Outcome::Partial(before.entry(rel.into(), attrs), failure);
                }
            }
        } else {
            None
        };
        let after = match rustix::fs::fstat(fd) {
            Ok(st) => Meta::from_stat(&st),
            Err(e) => {
                let failure = (cause_of(e), format!("cannot stat: {}", errno_text(e)));
                return Outcome::Partial(before.entry(rel.into(), attrs), failure);
            }
        };
        // Unchanged size and times (mtime and ctime, with nanoseconds)
        // while we read: the hash describes one version of the file.
        if after.same_version(&before) && (!want_hash || bytes == after.size) {
            let mut entry = after.entry(rel.into(), attrs);
            entry.hash = hash;
            entry.xattrs = xattrs;
            return Outcome::Hashed(entry, bytes);
        }
        before = after;
    }
    // It keeps changing: its content is unknown, but what its last look
    // already shows (a size, a mode, an owner unlike the image's) is drift.
    Outcome::Partial(
        before.entry(rel.into(), attrs),
        (
            UnreadableKind::ChangedWhileRead,
            "changed while being read (twice)".into(),
        ),
    )
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
