//! Reading a secret (a webhook secret, a signing key, a kubeconfig, a TLS
//! private key): refused unless nobody but its owner and group could have
//! read it and nobody but its owner could have written it.
//!
//! The rule ([`secret_problem`]): no permission bit for others (`o+r` leaks
//! it, `o+w` lets anyone replace it, `o+x` says the mode was never
//! thought about), no group write, and the owner is root or the user
//! driftd runs as (any other owner could rewrite it, or chmod it at
//! will). Group read is allowed: `root:driftd 0640` is how the agent's
//! unit reads its secrets. The rule is applied to the opened descriptor
//! (`fstat` after `open`), so a file swapped in between a check and the
//! read changes nothing. Symlinks are followed: a Kubernetes secret volume
//! is a tree of symlinks, and what counts is the file they lead to (whose
//! mode is the volume's `defaultMode`: 0440 or 0400).

use rustix::fs::{FileType, Mode, OFlags, CWD};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The largest secret read (a kubeconfig with embedded certificates is a
/// few KiB): anything bigger is refused, not read into memory.
pub const SECRET_MAX: u64 = 1 << 20;

/// Why a secret was not read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("read {what} {}: {source}", path.display())]
    Io {
        what: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not safe to use; `problem` says why and how to fix it.
    #[error("{what} {} {problem}", path.display())]
    Unsafe {
        what: String,
        path: PathBuf,
        problem: String,
    },
}

/// Read the secret at `path` (`what` names it in messages: "webhook
/// secret", "signing key"), if the file passes the rule (see the module
/// doc).
pub fn read_secret(path: &Path, what: &str) -> Result<Vec<u8>, SecretError> {
    let io = |source: std::io::Error| SecretError::Io {
        what: what.to_string(),
        path: path.to_path_buf(),
        source,
    };
    let refuse = |problem: String| SecretError::Unsafe {
        what: what.to_string(),
        path: path.to_path_buf(),
        problem,
    };
    // NONBLOCK: a FIFO planted at the path must not hang the open; it is
    // refused below.
    let fd = rustix::fs::openat(
        CWD,
        path,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
        Mode::empty(),
    )
    .map_err(|e| io(e.into()))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| io(e.into()))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(refuse("is not a regular file".into()));
    }
    let me = rustix::process::geteuid().as_raw();
    if let Some(problem) = secret_problem(st.st_mode, st.st_uid, me) {
        return Err(refuse(problem));
    }
    let mut bytes = Vec::new();
    std::fs::File::from(fd)
        .take(SECRET_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > SECRET_MAX {
        return Err(refuse(format!(
            "is larger than {} KiB: not a secret",
            SECRET_MAX >> 10
        )));
    }
    Ok(bytes)
}

/// What is wrong with a secret of this `mode` owned by `uid`, read by a
/// process running as `me`, and the fix; `None` if nothing is.
pub fn secret_problem(mode: u32, uid: u32, me: u32) -> Option<String> {
    let perm = mode & 0o7777;
    let mut problems = Vec::new();
    let others: Vec<&str> = [
        (0o004, "readable"),
        (0o002, "writable"),
        (0o001, "executable"),
    ]
    .iter()
    .filter(|(bit, _)| perm & bit != 0)
    .map(|(_, what)| *what)
    .collect();
    if !others.is_empty() {
        problems.push(format!("{} by others", list(&others)));
    }
    if perm & 0o020 != 0 {
        problems.push("writable by its group".to_string());
    }
    let mut fixes = Vec::new();
    if !problems.is_empty() {
        fixes.push(format!("chmod {:04o}", perm & 0o640));
    }
    if uid != 0 && uid != me {
        problems.push(if me == 0 {
            format!("owned by uid {uid}, who could rewrite it (only root may own it)")
        } else {
            format!(
                "owned by uid {uid}, who could rewrite it (only root or the user driftd runs as, uid {me}, may own it)"
            )
        });
        fixes.push("chown root".to_string());
    }
    if problems.is_empty() {
        return None;
    }
    Some(format!(
        "is {} (mode {perm:04o}): {}",
        list(&problems),
        fixes.join(" and ")
    ))
}

/// `a`, `a and b`, `a, b and c`.
fn list<S: AsRef<str>>(items: &[S]) -> String {
    match items {
        [] => String::new(),
        [one] => one.as_ref().to_string(),
        [init @ .., last] => {
            let init: Vec<&str> = init.iter().map(AsRef::as_ref).collect();
            format!("{} and {}", init.join(", "), last.as_ref())
        }
    }
}
