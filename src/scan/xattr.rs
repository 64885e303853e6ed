//! Reading extended attributes through descriptors, never by path.
//!
//! Every attribute the kernel lists is recorded (`security.capability`,
//! `security.selinux`, `security.ima`, `user.*`, ACLs in `system.*`, and
//! `trusted.*` when running as root), sorted by name. A filesystem without
//! xattr support simply has none.
//!
//! Regular files and directories are read through the descriptor the scan
//! opened anyway (`flistxattr`/`fgetxattr`). Symlinks, FIFOs, sockets and
//! devices must not be opened for reading (a FIFO would block, a device
//! open can have effects), so they get an `O_PATH | O_NOFOLLOW` handle
//! relative to their parent, which opens nothing but names the inode; it is
//! checked to be the object the walk saw, and read through its
//! `/proc/self/fd/N` magic link with the *following* `listxattr`/`getxattr`:
//! the magic link resolves to the object itself (for a symlink, the link,
//! not its target), the way systemd's `getxattr_at_malloc` reads O_PATH
//! descriptors. There is no `getxattrat` in rustix, and a path-based
//! `lgetxattr` would resolve every parent component again.

use super::meta::Meta;
use crate::manifest::Xattrs;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

/// Largest list or value we accept (the kernel's own limit is 64 KiB).
const MAX: usize = 1 << 20;

/// `statfs` magic of procfs.
const PROC_SUPER_MAGIC: i64 = 0x9fa0;

enum Src<'a> {
    Fd(BorrowedFd<'a>),
    /// `/proc/self/fd/N` of an O_PATH descriptor.
    Proc(&'a CStr),
}

fn grow<F: FnMut(&mut [u8]) -> Result<usize, Errno>>(mut f: F) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; 256];
    loop {
        match f(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::RANGE) if buf.len() < MAX => {
                let len = buf.len() * 8;
                buf.resize(len, 0);
            }
            Err(e) => return Err(e),
        }
    }
}

fn read(src: Src<'_>) -> std::io::Result<Xattrs> {
    let list = match grow(|b| match &src {
        Src::Fd(fd) => rustix::fs::flistxattr(fd, b),
        Src::Proc(p) => rustix::fs::listxattr(*p, b),
    }) {
        Ok(l) => l,
        Err(Errno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out: Xattrs = Vec::new();
    for name in list.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let value = match grow(|b| match &src {
            Src::Fd(fd) => rustix::fs::fgetxattr(fd, name, b),
            Src::Proc(p) => rustix::fs::getxattr(*p, name, b),
        }) {
            Ok(v) => v,
            // Removed between listing and reading: it is not there now.
            Err(Errno::NODATA) => continue,
            Err(e) => {
                return Err(std::io::Error::other(format!(
                    "{}: {}",
                    crate::manifest::escape::escape(name),
                    std::io::Error::from(e)
                )))
            }
        };
        out.push((name.into(), value.into_boxed_slice()));
    }
    out.sort();
    Ok(out)
}

/// Whether this process sees `trusted.*` xattrs: the kernel lists them only
/// to a process with `CAP_SYS_ADMIN`, and silently leaves them out for
/// everyone else (such as the agent under its unit).
pub fn trusted_visible() -> bool {
    static VISIBLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *VISIBLE.get_or_init(|| {
        rustix::thread::capabilities(None)
            .map(|c| {
                c.effective
                    .contains(rustix::thread::CapabilitySet::SYS_ADMIN)
            })
            .unwrap_or(false)
    })
}

/// The xattrs of an open file or directory.
pub fn read_fd(fd: BorrowedFd<'_>) -> std::io::Result<Xattrs> {
    read(Src::Fd(fd))
}

/// Why the own xattrs of a symlink or special file could not be read.
#[derive(Debug)]
pub(super) enum BesideError {
    /// It is gone: nothing to report.
    Vanished,
    /// Another object is in its place now.
    Replaced,
    /// `/proc/self/fd` is missing (or is not procfs): there is no safe way
    /// to name an O_PATH descriptor, and a path is never used instead.
    NoProc,
    Io(std::io::Error),
}

/// Whether `/proc/self/fd` is procfs, asked once.
// `f_type`'s width differs between architectures.
#[allow(clippy::unnecessary_cast)]
fn proc_fd_available() -> bool {
    static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OK.get_or_init(|| {
        rustix::fs::statfs("/proc/self/fd").is_ok_and(|s| s.f_type as i64 == PROC_SUPER_MAGIC)
    })
}

/// The own xattrs of `name` in the open directory `dir`, a symlink, FIFO,
/// socket or device that the walk saw as `seen` (see the module doc).
pub(super) fn read_beside(
    dir: BorrowedFd<'_>,
    name: &CStr,
    seen: &Meta,
) -> Result<Xattrs, BesideError> {
    if !proc_fd_available() {
        return Err(BesideError::NoProc);
    }
    let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Err(BesideError::Vanished),
        Err(e) => return Err(BesideError::Io(e.into())),
    };
    match rustix::fs::fstat(&fd) {
        Ok(st) if Meta::from_stat(&st).same_object(seen) => {}
        Ok(_) => return Err(BesideError::Replaced),
        Err(e) => return Err(BesideError::Io(e.into())),
    }
    let path = CString::new(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd()))
        .expect("no NUL in a number");
    read(Src::Proc(&path)).map_err(|e| {
        // The descriptor is held, so its magic link always resolves:
        // ENOENT here means procfs went away under us.
        if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) {
            BesideError::NoProc
        } else {
            BesideError::Io(e)
        }
    })
}
