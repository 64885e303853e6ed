//! `stat` results in a portable shape, and turning them into entries.

use crate::manifest::{Entry, FileKind, Times, Timestamp};
use crate::policy::{Attr, AttrSet};

/// The parts of `struct stat` driftd uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub size: u64,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
    pub atime: Timestamp,
}

impl Meta {
    // Field widths differ between architectures; the casts are exact on
    // every Linux target (negative sizes do not exist).
    #[allow(clippy::unnecessary_cast)]
    pub fn from_stat(st: &rustix::fs::Stat) -> Meta {
        Meta {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            mode: st.st_mode as u32,
            uid: st.st_uid as u32,
            gid: st.st_gid as u32,
            rdev: st.st_rdev as u64,
            size: st.st_size.max(0) as u64,
            mtime: Timestamp {
                sec: st.st_mtime as i64,
                nsec: st.st_mtime_nsec as u32,
            },
            ctime: Timestamp {
                sec: st.st_ctime as i64,
                nsec: st.st_ctime_nsec as u32,
            },
            atime: Timestamp {
                sec: st.st_atime as i64,
                nsec: st.st_atime_nsec as u32,
            },
        }
    }

    pub fn kind(&self) -> FileKind {
        match self.mode & 0o170000 {
            0o040000 => FileKind::Dir,
            0o120000 => FileKind::Symlink,
            0o010000 => FileKind::Fifo,
            0o140000 => FileKind::Socket,
            0o020000 => FileKind::CharDevice,
            0o060000 => FileKind::BlockDevice,
            _ => FileKind::File,
        }
    }

    /// Same filesystem object (device and inode).
    pub fn same_object(&self, other: &Meta) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }

    /// Same object, same size and times: nothing was written in between.
    pub fn same_version(&self, other: &Meta) -> bool {
        self.same_object(other)
            && self.size == other.size
            && self.mtime == other.mtime
            && self.ctime == other.ctime
    }

    /// An entry with every stat-derived attribute the policy selects.
    /// Hash, link target and xattrs are filled in by the caller.
    pub fn entry(&self, path: Box<[u8]>, attrs: AttrSet) -> Entry {
        let kind = self.kind();
        let mut e = Entry::new(path, kind);
        let on = |a| attrs.contains(a);
        e.mode = on(Attr::Mode).then_some(self.mode & 0o7777);
        e.uid = on(Attr::Uid).then_some(self.uid);
        e.gid = on(Attr::Gid).then_some(self.gid);
        e.size = (on(Attr::Size) && matches!(kind, FileKind::File | FileKind::Symlink))
            .then_some(self.size);
        e.device = (on(Attr::Device)
            && matches!(kind, FileKind::CharDevice | FileKind::BlockDevice))
        .then(|| {
            (
                rustix::fs::major(self.rdev as _),
                rustix::fs::minor(self.rdev as _),
            )
        });
        e.times = Times {
            mtime: on(Attr::Mtime).then_some(self.mtime),
            ctime: on(Attr::Ctime).then_some(self.ctime),
            atime: on(Attr::Atime).then_some(self.atime),
            inode: on(Attr::Inode).then_some(self.ino),
        }
        .boxed();
        e
    }
}
