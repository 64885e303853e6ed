//! The scanned image's own users and groups: the names an allowance to
//! appear mentions (`group = ["root", "ssh_keys"]`) resolved against
//! `<root>/etc/passwd` and `<root>/etc/group`, never against the machine
//! running the check (its database, or NSS, may say otherwise; the image's
//! files are covered by the manifest, so a forged entry is drift itself).
//!
//! The files are reached from the root's descriptor one component at a time
//! with `O_NOFOLLOW`, like the scan: a symlinked `/etc/group` is not
//! followed out of the root. Only regular files are read, at most
//! [`MAX_DB_BYTES`] each. A database that cannot be read resolves no name,
//! and the policy's matcher then refuses (fails closed) with the reason.

use crate::policy::{IdMap, IdNames, Ids};
use rustix::fs::{Mode, OFlags};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;

/// The most a user database may hold (real ones hold kilobytes).
pub const MAX_DB_BYTES: u64 = 16 << 20;

/// Resolve `names` in the image under `root`. Reads nothing when there is
/// nothing to resolve.
pub fn resolve(root: &Path, names: &IdNames) -> Ids {
    let mut ids = Ids::default();
    if names.is_empty() {
        return ids;
    }
    let root_fd = rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("cannot open the root {}: {}", root.display(), errno(e)));
    for (wanted, map, file) in [
        (&names.users, &mut ids.users, "passwd"),
        (&names.groups, &mut ids.groups, "group"),
    ] {
        if wanted.is_empty() {
            continue;
        }
        let text = match &root_fd {
            Ok(fd) => read_db(fd, file),
            Err(e) => Err(e.clone()),
        };
        *map = match text {
            Ok(text) => IdMap {
                found: parse_db(&text, wanted),
                error: None,
            },
            Err(e) => IdMap {
                found: BTreeMap::new(),
                error: Some(format!("cannot read the image's /etc/{file}: {e}")),
            },
        };
    }
    ids
}

fn errno(e: rustix::io::Errno) -> String {
    std::io::Error::from(e).to_string()
}

/// `<root>/etc/<file>`, reached without following a symlink.
fn read_db(root: &OwnedFd, file: &str) -> Result<Vec<u8>, String> {
    let nofollow = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let etc = rustix::fs::openat(root, "etc", nofollow | OFlags::DIRECTORY, Mode::empty())
        .map_err(|e| format!("/etc: {}", errno(e)))?;
    let fd = rustix::fs::openat(
        &etc,
        file,
        nofollow | OFlags::NONBLOCK | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(errno)?;
    let st = rustix::fs::fstat(&fd).map_err(errno)?;
    if st.st_mode & 0o170000 != 0o100000 {
        return Err("not a regular file".into());
    }
    let mut text = Vec::new();
    std::fs::File::from(fd)
        .take(MAX_DB_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_DB_BYTES {
        return Err(format!("larger than {MAX_DB_BYTES} bytes"));
    }
    Ok(text)
}

/// The ids of `wanted` names in a `passwd` or `group` file (`name:x:id:...`,
/// the id third in both). The first line naming a user wins, as for
/// `getpwnam`; malformed lines are skipped.
pub fn parse_db(text: &[u8], wanted: &BTreeSet<String>) -> BTreeMap<String, u32> {
    let mut found = BTreeMap::new();
    for line in text.split(|&b| b == b'\n') {
        let mut fields = line.split(|&b| b == b':');
        let (Some(name), Some(_), Some(id)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        if !wanted.contains(name) || found.contains_key(name) {
            continue;
        }
        let id = std::str::from_utf8(id)
            .ok()
            .and_then(|s| s.parse::<u32>().ok());
        if let Some(id) = id {
            found.insert(name.to_string(), id);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(users: &[&str], groups: &[&str]) -> IdNames {
        IdNames {
            users: users.iter().map(|s| s.to_string()).collect(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_first_line_naming_it_wins_and_bad_lines_are_skipped() {
        let text = b"root:x:0:\nssh_keys:x:abc:\nssh_keys:x:996:\nssh_keys:x:5:\nshort\n\
                     wheel:x:10:alice\n";
        let wanted: BTreeSet<String> = ["ssh_keys", "wheel", "absent"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let found = parse_db(text, &wanted);
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            [("ssh_keys".to_string(), 996), ("wheel".to_string(), 10)]
        );
    }

    #[test]
    fn names_resolve_in_the_scanned_root_not_on_this_machine() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("etc")).unwrap();
        std::fs::write(
            tmp.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nsshd:x:4242:65534::/run/sshd:/usr/sbin/nologin\n",
        )
        .unwrap();
        std::fs::write(
            tmp.path().join("etc/group"),
            "root:x:0:\nssh_keys:x:4343:\n",
        )
        .unwrap();
        let ids = resolve(tmp.path(), &names(&["sshd"], &["ssh_keys", "nogroup"]));
        assert_eq!(ids.users.found.get("sshd"), Some(&4242));
        assert_eq!(ids.groups.found.get("ssh_keys"), Some(&4343));
        // This machine's nogroup is not the image's.
        assert_eq!(ids.groups.found.get("nogroup"), None);
        assert_eq!((ids.users.error, ids.groups.error), (None, None));
    }

    #[test]
    fn a_database_that_cannot_be_read_resolves_nothing_and_says_why() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("etc")).unwrap();
        // A symlink out of the root is not followed.
        std::os::unix::fs::symlink("/etc/group", tmp.path().join("etc/group")).unwrap();
        let ids = resolve(tmp.path(), &names(&["sshd"], &["root", "ssh_keys"]));
        assert!(ids.groups.found.is_empty());
        let e = ids.groups.error.unwrap();
        assert!(e.starts_with("cannot read the image's /etc/group: "), "{e}");
        let e = ids.users.error.unwrap();
        assert!(
            e.starts_with("cannot read the image's /etc/passwd: "),
            "{e}"
        );
        // Nothing to resolve: nothing read, no error.
        assert_eq!(
            resolve(Path::new("/nonexistent"), &IdNames::default()),
            Ids::default()
        );
    }
}
