//! Files written so that a crash never leaves half of one and nobody can
//! redirect them; secrets read so that nobody else could have read or
//! written them ([`read_secret`]).
//!
//! [`write_atomic`] is used for every file driftd writes (manifests, keys,
//! the agent's state, the signal outbox). Everything happens relative to
//! one descriptor of the parent directory, opened once: the new file is an
//! anonymous `O_TMPFILE` where the filesystem has them, else a new file
//! (`O_CREAT|O_EXCL|O_NOFOLLOW`) under a random name, so a name planted in
//! advance (a symlink, a file of another user) can only make the create
//! fail and be retried under another name, never be opened. The owner and
//! the final mode are set on the descriptor before any byte is written (no
//! umask can widen or narrow them), the bytes are fsynced, the file gets a
//! random name beside the target (`linkat` of the anonymous file through
//! `/proc/self/fd`, which needs no capability) and is renamed over the
//! target, which replaces whatever entry was there (a symlink is replaced,
//! not followed), and the directory is fsynced so the rename is durable.
//! A failure at any step leaves no temporary file behind.

mod secret;

pub use secret::{read_secret, secret_problem, SecretError, SECRET_MAX};

use rustix::fs::{AtFlags, Mode, OFlags, CWD};
use rustix::io::Errno;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

/// How [`write_atomic_with`] writes a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    /// The file's mode, exactly (the umask does not apply).
    pub mode: u32,
    /// Give the file the owner and group of its directory (needs root;
    /// the state file written by `driftd state clear` as root stays the
    /// agent's).
    pub owner_of_dir: bool,
}

/// How the new file came into being (for the tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// An anonymous `O_TMPFILE`, linked under a random name.
    TmpFile,
    /// `O_CREAT|O_EXCL|O_NOFOLLOW` of a random name.
    Named,
}

/// Atomically replace `path` with `bytes`, created with exactly `mode`
/// (see the module doc). Creates the parent directory if needed.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    write_atomic_with(
        path,
        bytes,
        WriteOptions {
            mode,
            owner_of_dir: false,
        },
    )
}

/// [`write_atomic`] with all its options.
pub fn write_atomic_with(path: &Path, bytes: &[u8], opts: WriteOptions) -> std::io::Result<()> {
    write_by(path, bytes, opts, true).map(|_| ())
}

/// How many random names are tried before giving up: each is 64 random
/// bits, so only someone who can read our names could make two collide.
const NAME_TRIES: usize = 16;

/// The writer; `tmpfile` false forces the named fallback (tests).
pub(crate) fn write_by(
    path: &Path,
    bytes: &[u8],
    opts: WriteOptions,
    tmpfile: bool,
) -> std::io::Result<Method> {
    let name = path
        .file_name()
        .filter(|n| !n.is_empty() && n.as_bytes() != b"..")
        .ok_or_else(|| std::io::Error::other("not a file name"))?;
    let dir_path = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // Safe to create: the directory's path is the operator's (a command
    // line or the root-owned config), trusted as a whole like any path
    // given to a tool. A directory made here is 0755 at most whatever the
    // umask (mode & ~umask), so never writable by others; an existing one
    // is used as found. Everything after this works through the one
    // descriptor opened below, so a directory swapped in afterwards under
    // the same path changes nothing.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir_path)?;
    let dir = rustix::fs::openat(
        CWD,
        dir_path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let owner = if opts.owner_of_dir {
        let st = rustix::fs::fstat(&dir)?;
        Some((st.st_uid, st.st_gid))
    } else {
        None
    };
    let prepare = |fd: &OwnedFd| -> std::io::Result<()> {
        if let Some((uid, gid)) = owner {
            // Before the mode: chown may clear set-id bits.
            rustix::fs::fchown(
                fd,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            )?;
        }
        rustix::fs::fchmod(fd, Mode::from_raw_mode(opts.mode & 0o7777))?;
        let mut f = std::fs::File::from(fd.try_clone()?);
        f.write_all(bytes)?;
        f.sync_all()
    };
    let linked = if tmpfile {
        tmpfile_link(&dir, name.as_bytes(), &prepare)?
    } else {
        None
    };
    let (tmp, method) = match linked {
        Some(tmp) => (tmp, Method::TmpFile),
        None => (named(&dir, name.as_bytes(), &prepare)?, Method::Named),
    };
    // From here the temporary name exists: remove it on any failure.
    let mut guard = Remove {
        dir: &dir,
        name: Some(tmp.clone()),
    };
    rustix::fs::renameat(&dir, tmp.as_slice(), &dir, name.as_bytes())?;
    guard.name = None;
    rustix::fs::fsync(&dir)?;
    Ok(method)
}

/// Removes a temporary name when dropped, unless it was disarmed.
struct Remove<'a> {
    dir: &'a OwnedFd,
    name: Option<Vec<u8>>,
}

impl Drop for Remove<'_> {
    fn drop(&mut self) {
        if let Some(n) = self.name.take() {
            let _ = rustix::fs::unlinkat(self.dir, n.as_slice(), AtFlags::empty());
        }
    }
}

/// `.NAME.tmp.` + 16 random hex digits (NAME cut so the whole fits in
/// NAME_MAX).
fn random_name(target: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut r = [0u8; 8];
    getrandom::getrandom(&mut r).map_err(|e| std::io::Error::other(format!("random: {e}")))?;
    let mut n = Vec::with_capacity(255);
    n.push(b'.');
    n.extend_from_slice(&target[..target.len().min(200)]);
    n.extend_from_slice(b".tmp.");
    for b in r {
        n.extend_from_slice(format!("{b:02x}").as_bytes());
    }
    Ok(n)
}

/// Write an anonymous file and link it under a random name; `None` when
/// the filesystem (or `/proc`) does not allow it, and nothing was created.
fn tmpfile_link(
    dir: &OwnedFd,
    target: &[u8],
    prepare: &dyn Fn(&OwnedFd) -> std::io::Result<()>,
) -> std::io::Result<Option<Vec<u8>>> {
    let fd = match rustix::fs::openat(
        dir,
        ".",
        OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    ) {
        Ok(fd) => fd,
        // No O_TMPFILE here (EISDIR: a kernel that predates it).
        Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    // Unnamed until linked: a failure here leaves nothing behind.
    prepare(&fd)?;
    let proc = format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd());
    for _ in 0..NAME_TRIES {
        let tmp = random_name(target)?;
        match rustix::fs::linkat(
            CWD,
            proc.as_str(),
            dir,
            tmp.as_slice(),
            AtFlags::SYMLINK_FOLLOW,
        ) {
            Ok(()) => return Ok(Some(tmp)),
            Err(Errno::EXIST) => continue,
            // No /proc (a chroot): the named way, from the start.
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
    Err(collisions())
}

/// Create a new file under a random name, never opening one that exists.
fn named(
    dir: &OwnedFd,
    target: &[u8],
    prepare: &dyn Fn(&OwnedFd) -> std::io::Result<()>,
) -> std::io::Result<Vec<u8>> {
    for _ in 0..NAME_TRIES {
        let tmp = random_name(target)?;
        let fd = match rustix::fs::openat(
            dir,
            tmp.as_slice(),
            OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        ) {
            Ok(fd) => fd,
            Err(Errno::EXIST) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut guard = Remove {
            dir,
            name: Some(tmp),
        };
        prepare(&fd)?;
        return Ok(guard.name.take().expect("armed above"));
    }
    Err(collisions())
}

fn collisions() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        format!("{NAME_TRIES} random temporary names were all taken"),
    )
}

#[cfg(test)]
mod tests;
