//! Reading extended attributes without following symlinks.
//!
//! Every attribute the kernel lists is recorded (`security.capability`,
//! `security.selinux`, `security.ima`, `user.*`, ACLs in `system.*`, and
//! `trusted.*` when running as root), sorted by name. A filesystem without
//! xattr support simply has none.

use crate::manifest::Xattrs;
use rustix::io::Errno;
use std::os::fd::BorrowedFd;

/// Largest list or value we accept (the kernel's own limit is 64 KiB).
const MAX: usize = 1 << 20;

enum Src<'a> {
    Path(&'a [u8]),
    Fd(BorrowedFd<'a>),
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
        Src::Path(p) => rustix::fs::llistxattr(*p, b),
        Src::Fd(fd) => rustix::fs::flistxattr(fd, b),
    }) {
        Ok(l) => l,
        Err(Errno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out: Xattrs = Vec::new();
    for name in list.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let value = match grow(|b| match &src {
            Src::Path(p) => rustix::fs::lgetxattr(*p, name, b),
            Src::Fd(fd) => rustix::fs::fgetxattr(fd, name, b),
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

/// The xattrs of the path itself (a symlink's own, never its target's).
pub fn read_path(path: &[u8]) -> std::io::Result<Xattrs> {
    read(Src::Path(path))
}

/// The xattrs of an open file.
pub fn read_fd(fd: BorrowedFd<'_>) -> std::io::Result<Xattrs> {
    read(Src::Fd(fd))
}
