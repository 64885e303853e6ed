//! Mount points in the tree: found by `statx` (`STATX_ATTR_MOUNT_ROOT`, so a
//! bind mount of a directory on the same filesystem is found too, not only
//! a change of device), and told apart by `/proc/self/mountinfo`: a bind
//! mount of a directory onto itself (what systemd's `ProtectHome=`,
//! `ReadWritePaths=` and friends make in the agent's sandbox) shows the
//! same files and is transparent; anything else over a checked path is a
//! mount the image did not have.

use rustix::fs::{AtFlags, StatxAttributes, StatxFlags};
use std::collections::HashMap;
use std::ffi::CStr;
use std::os::fd::BorrowedFd;

/// What `statx` says about a directory.
pub(super) enum Probe {
    /// Not the root of a mount.
    Plain,
    /// The root of the mount with this id.
    MountRoot(u64),
    /// The kernel does not say (before Linux 5.8): only a change of device
    /// can tell.
    Unknown,
}

/// Is `name` in `dir` the root of a mount?
pub(super) fn probe(dir: BorrowedFd<'_>, name: &CStr) -> Probe {
    let flags = AtFlags::SYMLINK_NOFOLLOW | AtFlags::NO_AUTOMOUNT;
    match rustix::fs::statx(dir, name, flags, StatxFlags::MNT_ID) {
        Ok(st) if st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT) => {
            if st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT) {
                Probe::MountRoot(st.stx_mnt_id)
            } else {
                Probe::Plain
            }
        }
        _ => Probe::Unknown,
    }
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    parent: u64,
    dev: String,
    /// The directory of its filesystem that is mounted.
    root: Vec<u8>,
    mount_point: Vec<u8>,
    fstype: String,
    source: String,
}

/// The process's mount table.
#[derive(Debug, Default)]
pub(super) struct MountTable {
    lines: HashMap<u64, Line>,
}

/// How a mount root is to be judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Kind {
    /// A bind mount of a directory onto itself: the same files.
    SelfBind,
    /// Something else: what, for people.
    Mount(String),
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                out.push((oct[0] - b'0') * 64 + (oct[1] - b'0') * 8 + (oct[2] - b'0'));
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

impl MountTable {
    /// This process's mounts; `None` when /proc is not there (every mount
    /// root then counts as a mount: fail closed).
    pub fn read() -> Option<MountTable> {
        std::fs::read_to_string("/proc/self/mountinfo")
            .ok()
            .map(|t| MountTable::parse(&t))
    }

    fn parse(text: &str) -> MountTable {
        let mut lines = HashMap::new();
        for l in text.lines() {
            let f: Vec<&str> = l.split(' ').collect();
            let Some(sep) = f.iter().position(|x| *x == "-") else {
                continue;
            };
            if f.len() < 6 || f.len() < sep + 3 {
                continue;
            }
            let (Ok(id), Ok(parent)) = (f[0].parse::<u64>(), f[1].parse::<u64>()) else {
                continue;
            };
            lines.insert(
                id,
                Line {
                    parent,
                    dev: f[2].to_string(),
                    root: unescape(f[3]),
                    mount_point: unescape(f[4]),
                    fstype: f[sep + 1].to_string(),
                    source: String::from_utf8_lossy(&unescape(f[sep + 2])).into_owned(),
                },
            );
        }
        MountTable { lines }
    }

    /// Judge the mount with id `id`.
    pub fn kind(&self, id: u64) -> Kind {
        let Some(m) = self.lines.get(&id) else {
            return Kind::Mount(format!("mount {id} (not in /proc/self/mountinfo)"));
        };
        if let Some(p) = self.lines.get(&m.parent) {
            // Where the mount point lies in the parent's filesystem.
            let below = m
                .mount_point
                .strip_prefix(p.mount_point.as_slice())
                .map(|rest| {
                    let base = p.root.strip_suffix(b"/").unwrap_or(&p.root);
                    let rest = rest.strip_prefix(b"/").unwrap_or(rest);
                    let mut v = base.to_vec();
                    v.push(b'/');
                    v.extend_from_slice(rest);
                    v
                });
            if m.dev == p.dev && below.as_deref() == Some(m.root.as_slice()) {
                return Kind::SelfBind;
            }
            if m.dev == p.dev {
                let from = String::from_utf8_lossy(&m.root);
                return Kind::Mount(format!("bind mount of {from} ({})", m.fstype));
            }
        }
        let from = if m.root != b"/" {
            format!(" {}", String::from_utf8_lossy(&m.root))
        } else {
            String::new()
        };
        Kind::Mount(format!("{} mount of {}{from}", m.fstype, m.source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
23 22 0:21 / /proc rw,nosuid shared:2 - proc proc rw
30 22 8:1 /home /home ro,relatime shared:1 - ext4 /dev/sda1 rw
31 22 8:1 /tmp/evil /usr/local/bin rw,relatime shared:1 - ext4 /dev/sda1 rw
32 22 0:40 / /usr/local/sbin rw,relatime shared:9 - tmpfs driftd-test rw,size=1024k
33 22 8:2 / /boot rw,relatime shared:10 - vfat /dev/sda2 rw
34 32 0:40 /sub /usr/local/sbin/sub rw - tmpfs driftd-test rw
35 22 8:1 /my\\040dir /my\\040dir rw - ext4 /dev/sda1 rw
";

    #[test]
    fn self_binds_are_transparent_and_everything_else_is_named() {
        let t = MountTable::parse(INFO);
        assert_eq!(t.kind(30), Kind::SelfBind, "ProtectHome=read-only");
        assert_eq!(t.kind(35), Kind::SelfBind, "escaped names");
        assert_eq!(t.kind(34), Kind::SelfBind, "a self-bind inside a tmpfs");
        assert_eq!(
            t.kind(31),
            Kind::Mount("bind mount of /tmp/evil (ext4)".into())
        );
        assert_eq!(t.kind(32), Kind::Mount("tmpfs mount of driftd-test".into()));
        assert_eq!(t.kind(33), Kind::Mount("vfat mount of /dev/sda2".into()));
        assert!(
            matches!(t.kind(99), Kind::Mount(_)),
            "unknown ids fail closed"
        );
    }

    #[test]
    fn octal_escapes() {
        assert_eq!(unescape("a\\040b\\134c\\011"), b"a b\\c\t");
        assert_eq!(unescape("plain"), b"plain");
        assert_eq!(unescape("trailing\\04"), b"trailing\\04");
    }
}
