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
use super::{cause_of, errno_text, io_cause, unreadable, xattr, ScanControl, ScanEvent};
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
        let opened = open_regular(job.dir.as_fd(), &job.name);
        // The directory is not needed past the open: give its budget slot
        // back before the (possibly long) read.
        drop(job.dir);
        let result = match opened {
            Ok(fd) => hash_file(&fd, job.seen, &job.rel, job.attrs, &mut buf, control),
            Err(Errno::NOENT) => continue, // vanished: it is not there now
            Err(Errno::LOOP) => Err((
                UnreadableKind::ChangedWhileRead,
                "changed while being read (replaced by a symlink)".into(),
            )),
            // ENXIO comes from a socket or a device without a driver: not the
            // regular file that was listed.
            Err(Errno::NXIO) => Err((
                UnreadableKind::ChangedWhileRead,
                "changed while being read (replaced)".into(),
            )),
            Err(e) => Err((cause_of(e), format!("cannot open: {}", errno_text(e)))),
        };
        let (ev, bytes) = match result {
            Ok((entry, bytes)) => (
                ScanEvent::Entry {
                    entry,
                    mount_point: false,
                },
                bytes,
            ),
            Err((cause, reason)) => (unreadable(&job.rel, cause, reason, false), 0),
        };
        if events.send((ev, bytes)).is_err() {
            return;
        }
    }
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
) -> Result<(Entry, u64), Failure> {
    let stat = |fd: &OwnedFd| {
        rustix::fs::fstat(fd)
            .map(|st| Meta::from_stat(&st))
            .map_err(|e| (cause_of(e), format!("cannot stat: {}", errno_text(e))))
    };
    let first = stat(fd)?;
    if first.kind() != FileKind::File || seen.is_some_and(|s| !first.same_object(&s)) {
        // Closed without a single read: a FIFO or device is never read.
        return Err((
            UnreadableKind::ChangedWhileRead,
            "changed while being read (replaced)".into(),
        ));
    }
    let want_hash = attrs.contains(Attr::Content);
    let mut before = first;
    for _attempt in 0..2 {
        let (hash, bytes) = if want_hash {
            let (h, n) = hash_fd(fd, buf, control)
                .map_err(|e| (io_cause(&e), format!("read error: {e}")))?;
            (Some(h), n)
        } else {
            (None, 0)
        };
        let xattrs = if attrs.contains(Attr::Xattrs) {
            Some(
                xattr::read_fd(fd.as_fd())
                    .map_err(|e| (io_cause(&e), format!("cannot read xattrs: {e}")))?,
            )
        } else {
            None
        };
        let after = stat(fd)?;
        // Unchanged size and times (mtime and ctime, with nanoseconds)
        // while we read: the hash describes one version of the file.
        if after.same_version(&before) && (!want_hash || bytes == after.size) {
            let mut entry = after.entry(rel.into(), attrs);
            entry.hash = hash;
            entry.xattrs = xattrs;
            return Ok((entry, bytes));
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
