//! Directory descriptors under a fixed budget, and the chain of ancestors
//! the walk keeps open.
//!
//! Every directory below the root is opened with `openat(parent, name,
//! O_DIRECTORY | O_NOFOLLOW)`, never by a path: a symlink swapped in for a
//! directory mid-walk is refused by the kernel (ELOOP or ENOTDIR) instead of
//! followed, and nothing above the open parent is resolved again. Each open
//! directory holds one slot of a [`Budget`] ([`super::DIR_FDS`] in all),
//! taken before the open and given back when the last holder (the walker
//! or a queued hashing job) drops it, so no tree shape can make a scan hold
//! more. The walker keeps at most [`super::HELD_DIRS`] ancestors open;
//! deeper than that it closes the oldest and, when it needs one again to
//! list more of it, re-opens the chain from the base one component at a
//! time, checking each directory's device and inode against what it saw.

use super::meta::Meta;
use super::{cause_of, errno_text, unreadable, ScanControl, ScanEvent, Unchecked};
use crate::manifest::diff::UnreadableKind;
use rustix::fs::{FileType, Mode, OFlags, RawDir};
use rustix::io::Errno;
use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Flags for every directory the walk opens below the root.
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Counts the directory descriptors a scan may still open.
#[derive(Debug)]
pub(super) struct Budget {
    state: Mutex<Slots>,
    freed: Condvar,
}

#[derive(Debug)]
struct Slots {
    free: usize,
    /// The walker is waiting: only then is a wake-up (a system call) worth
    /// making when a slot comes back.
    waiting: bool,
}

impl Budget {
    fn new(slots: usize) -> Arc<Budget> {
        Arc::new(Budget {
            state: Mutex::new(Slots {
                free: slots,
                waiting: false,
            }),
            freed: Condvar::new(),
        })
    }

    /// Take a slot, waiting until a hashing job gives one back. `None` if
    /// the scan is cancelled meanwhile. The walker never holds more than
    /// `HELD_DIRS + 1` slots itself (far fewer than the budget), so a slot
    /// it waits for belongs to a queued job, which a hashing thread finishes.
    fn take(self: &Arc<Self>, control: &ScanControl) -> Option<Slot> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if st.free > 0 {
                st.free -= 1;
                st.waiting = false;
                return Some(Slot(self.clone()));
            }
            if control.cancelled() {
                st.waiting = false;
                return None;
            }
            st.waiting = true;
            st = self
                .freed
                .wait_timeout(st, Duration::from_millis(50))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// One slot of a [`Budget`], given back on drop.
#[derive(Debug)]
struct Slot(Arc<Budget>);

impl Drop for Slot {
    fn drop(&mut self) {
        let mut st = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
        st.free += 1;
        if st.waiting {
            self.0.freed.notify_one();
        }
    }
}

/// An open directory that counts against the budget.
#[derive(Debug)]
pub(super) struct DirFd {
    fd: OwnedFd,
    _slot: Slot,
}

impl AsFd for DirFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Why a directory could not be opened.
#[derive(Debug)]
pub(super) enum OpenError {
    Cancelled,
    Sys(Errno),
}

/// A budget of `slots` directory descriptors, the first of them taken by
/// the root (opened by path: the only path the scan opens).
pub(super) fn with_root(slots: usize, root: OwnedFd) -> (Arc<Budget>, Arc<DirFd>) {
    assert!(
        slots > super::HELD_DIRS + 1,
        "the walker alone must never exhaust the budget"
    );
    let budget = Budget::new(slots - 1);
    let root = Arc::new(DirFd {
        fd: root,
        _slot: Slot(budget.clone()),
    });
    (budget, root)
}

/// `openat(parent, name, O_DIRECTORY | O_NOFOLLOW)` under the budget.
pub(super) fn open_dir(
    budget: &Arc<Budget>,
    control: &ScanControl,
    parent: BorrowedFd<'_>,
    name: &CStr,
) -> Result<Arc<DirFd>, OpenError> {
    let slot = budget.take(control).ok_or(OpenError::Cancelled)?;
    let fd = rustix::fs::openat(parent, name, DIR_FLAGS, Mode::empty()).map_err(OpenError::Sys)?;
    Ok(Arc::new(DirFd { fd, _slot: slot }))
}

/// One name a directory listed, with the type `getdents` reported
/// (`Unknown` on filesystems that do not say).
#[derive(Debug, Clone)]
pub(super) struct Child {
    pub name: CString,
    pub kind: FileType,
}

/// Every name in an open directory but `.` and `..`. `buf` is reused
/// between directories (any size above one entry works).
pub(super) fn list(dir: BorrowedFd<'_>, buf: &mut Vec<u8>) -> Result<Vec<Child>, Errno> {
    let mut out = Vec::new();
    let mut raw = RawDir::new(dir, buf.spare_capacity_mut());
    while let Some(item) = raw.next() {
        let item = item?;
        let name = item.file_name();
        if name != c"." && name != c".." {
            out.push(Child {
                name: name.to_owned(),
                kind: item.file_type(),
            });
        }
    }
    Ok(out)
}

/// A directory being walked: what it was when opened, its descriptor (if
/// still held) and the names still to visit.
#[derive(Debug)]
pub(super) struct Level {
    pub rel: Box<[u8]>,
    /// Its name in the parent level (unused for the base).
    name: CString,
    /// What was opened, to recognise it when re-opened (`None` for the
    /// base, which is never closed).
    seen: Option<Meta>,
    fd: Option<Arc<DirFd>>,
    pub children: std::vec::IntoIter<Child>,
}

impl Level {
    pub fn new(
        rel: Box<[u8]>,
        name: CString,
        seen: Meta,
        fd: Arc<DirFd>,
        children: Vec<Child>,
    ) -> Level {
        Level {
            rel,
            name,
            seen: Some(seen),
            fd: Some(fd),
            children: children.into_iter(),
        }
    }

    /// Where a walk starts: the root, or a targeted start's parent.
    pub fn base(rel: Box<[u8]>, fd: Arc<DirFd>, children: Vec<Child>) -> Level {
        Level {
            rel,
            name: CString::default(),
            seen: None,
            fd: Some(fd),
            children: children.into_iter(),
        }
    }
}

/// Why the top directory could not be had again.
#[derive(Debug)]
pub(super) enum Reopen {
    Cancelled,
    /// The event to report; the failed level and those below it are gone.
    Failed(Box<ScanEvent>),
}

/// The directories from the base (the root, or a targeted start's parent)
/// down to the one being listed. The base is always held; of the others
/// only the deepest `held_max - 1` are, a contiguous run ending at the top
/// (`levels[held_from..]`): closing the oldest first keeps it so.
#[derive(Debug)]
pub(super) struct Ancestors {
    levels: Vec<Level>,
    held_from: usize,
    held_max: usize,
}

impl Ancestors {
    pub fn new(base: Level, held_max: usize) -> Ancestors {
        assert!(held_max >= 2, "the base and the top are held");
        Ancestors {
            levels: vec![base],
            held_from: 1,
            held_max,
        }
    }

    pub fn top_mut(&mut self) -> Option<&mut Level> {
        self.levels.last_mut()
    }

    pub fn pop(&mut self) {
        self.levels.pop();
        self.held_from = self.held_from.min(self.levels.len()).max(1);
    }

    /// Descend into `level`, closing the oldest ancestor beyond the limit.
    pub fn push(&mut self, level: Level) {
        if self.held_from >= self.levels.len() {
            self.held_from = self.levels.len();
        }
        self.levels.push(level);
        while self.levels.len() - self.held_from > self.held_max - 1 {
            self.levels[self.held_from].fd = None;
            self.held_from += 1;
        }
    }

    /// The descriptor of the top directory. If the budget closed it, the
    /// chain is re-opened from the base with `O_NOFOLLOW` on every step, and
    /// each directory must be the one the walk saw (device and inode): a
    /// directory replaced meanwhile makes its whole subtree "changed while
    /// being read", and its level and those below it are dropped.
    pub fn top_fd(
        &mut self,
        budget: &Arc<Budget>,
        control: &ScanControl,
    ) -> Result<Arc<DirFd>, Reopen> {
        let top = self.levels.len() - 1;
        if let Some(fd) = &self.levels[top].fd {
            return Ok(fd.clone());
        }
        // The held run ends at the top, so nothing between the base and
        // the top is held: start from the base, keep the deepest ones.
        let keep_from = (top + 1).saturating_sub(self.held_max - 1).max(1);
        let mut parent = self.levels[0].fd.clone().expect("the base is always held");
        for k in 1..=top {
            let level = &self.levels[k];
            let fd = match open_dir(budget, control, parent.as_fd(), &level.name) {
                Ok(fd) => fd,
                Err(OpenError::Cancelled) => return Err(Reopen::Cancelled),
                Err(OpenError::Sys(e)) => return Err(self.fail(k, keep_from, Some(e))),
            };
            match rustix::fs::fstat(&fd) {
                Ok(st)
                    if level
                        .seen
                        .is_some_and(|s| Meta::from_stat(&st).same_object(&s)) => {}
                Ok(_) => return Err(self.fail(k, keep_from, None)),
                Err(e) => return Err(self.fail(k, keep_from, Some(e))),
            }
            if k >= keep_from {
                self.levels[k].fd = Some(fd.clone());
            }
            parent = fd;
        }
        self.held_from = keep_from;
        Ok(parent)
    }

    /// Drop level `k` and everything below it, and say why: another object
    /// in its place (`None`), ENOENT, ELOOP and ENOTDIR all mean it was
    /// replaced (renamed, removed, or swapped for a symlink).
    fn fail(&mut self, k: usize, keep_from: usize, e: Option<Errno>) -> Reopen {
        let rel = self.levels[k].rel.clone();
        // Its entry was reported when the walk went in (always, below the
        // base): only what is below it goes unchecked.
        let unchecked = self.levels[k]
            .seen
            .map_or(Unchecked::Subtree, Unchecked::Below);
        self.levels.truncate(k);
        self.held_from = keep_from.min(k);
        Reopen::Failed(Box::new(match e {
            None | Some(Errno::NOENT | Errno::LOOP | Errno::NOTDIR) => unreadable(
                &rel,
                UnreadableKind::ChangedWhileRead,
                "changed while being read (directory replaced)".into(),
                unchecked,
            ),
            Some(e) => unreadable(
                &rel,
                cause_of(e),
                format!("cannot re-open directory: {}", errno_text(e)),
                unchecked,
            ),
        }))
    }

    /// Depth below the base (for tests).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.levels.len()
    }

    /// How many levels hold a descriptor (for tests).
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.levels.iter().filter(|l| l.fd.is_some()).count()
    }
}
