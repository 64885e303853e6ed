//! One manifest entry: what a path looked like in the image.

use crate::policy::Attr;
use std::fmt;

/// The type of a filesystem object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl FileKind {
    /// One-letter code used in the manifest.
    pub fn code(self) -> u8 {
        match self {
            FileKind::File => b'f',
            FileKind::Dir => b'd',
            FileKind::Symlink => b'l',
            FileKind::Fifo => b'p',
            FileKind::Socket => b's',
            FileKind::CharDevice => b'c',
            FileKind::BlockDevice => b'b',
        }
    }

    pub fn from_code(c: &[u8]) -> Option<FileKind> {
        Some(match c {
            b"f" => FileKind::File,
            b"d" => FileKind::Dir,
            b"l" => FileKind::Symlink,
            b"p" => FileKind::Fifo,
            b"s" => FileKind::Socket,
            b"c" => FileKind::CharDevice,
            b"b" => FileKind::BlockDevice,
            _ => return None,
        })
    }

    /// Human name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            FileKind::File => "file",
            FileKind::Dir => "directory",
            FileKind::Symlink => "symlink",
            FileKind::Fifo => "fifo",
            FileKind::Socket => "socket",
            FileKind::CharDevice => "char-device",
            FileKind::BlockDevice => "block-device",
        }
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A point in time with nanoseconds, as stat reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp {
    pub sec: i64,
    pub nsec: u32,
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:09}", self.sec, self.nsec)
    }
}

/// Extended attributes, sorted by name.
pub type Xattrs = Vec<(Box<[u8]>, Box<[u8]>)>;

/// Everything recorded about one path. A field is `None` when the policy did
/// not select that attribute for the path (or it does not apply to the type,
/// e.g. a hash for a directory). `check` computes the live entry with the
/// same policy, so the two line up field by field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    /// Absolute path inside the scanned root; the root itself is `/`.
    pub path: Box<[u8]>,
    pub kind: FileKind,
    /// Permission bits including setuid, setgid and sticky (`mode & 0o7777`).
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Size in bytes (regular files and symlinks only: directory sizes
    /// depend on the filesystem, not on the image).
    pub size: Option<u64>,
    /// BLAKE3 of the content (regular files only).
    pub hash: Option<[u8; 32]>,
    /// Symlink target, byte for byte.
    pub target: Option<Box<[u8]>>,
    /// (major, minor) for character and block devices.
    pub device: Option<(u32, u32)>,
    pub xattrs: Option<Xattrs>,
    /// Times and inode number: off by default, so boxed to keep the
    /// common entry small (a 110,000-entry manifest stays in a few MB).
    pub times: Option<Box<Times>>,
}

/// The attributes images normalise, recorded only when a rule asks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Times {
    pub mtime: Option<Timestamp>,
    pub ctime: Option<Timestamp>,
    pub atime: Option<Timestamp>,
    pub inode: Option<u64>,
}

impl Times {
    /// `None` when nothing is recorded, so entries stay comparable.
    pub fn boxed(self) -> Option<Box<Times>> {
        (self != Times::default()).then(|| Box::new(self))
    }
}

impl Entry {
    /// An entry with only its path and type.
    pub fn new(path: impl Into<Box<[u8]>>, kind: FileKind) -> Entry {
        Entry {
            path: path.into(),
            kind,
            mode: None,
            uid: None,
            gid: None,
            size: None,
            hash: None,
            target: None,
            device: None,
            xattrs: None,
            times: None,
        }
    }

    pub fn mtime(&self) -> Option<Timestamp> {
        self.times.as_ref()?.mtime
    }

    pub fn ctime(&self) -> Option<Timestamp> {
        self.times.as_ref()?.ctime
    }

    pub fn atime(&self) -> Option<Timestamp> {
        self.times.as_ref()?.atime
    }

    pub fn inode(&self) -> Option<u64> {
        self.times.as_ref()?.inode
    }

    /// The attributes (other than type) whose recorded values differ.
    pub fn differing_attrs(&self, other: &Entry) -> Vec<Attr> {
        let mut out = Vec::new();
        let mut check = |a: Attr, same: bool| {
            if !same {
                out.push(a)
            }
        };
        check(Attr::Content, self.hash == other.hash);
        check(Attr::Size, self.size == other.size);
        check(Attr::Target, self.target == other.target);
        check(Attr::Device, self.device == other.device);
        check(Attr::Mode, self.mode == other.mode);
        check(Attr::Uid, self.uid == other.uid);
        check(Attr::Gid, self.gid == other.gid);
        check(Attr::Xattrs, self.xattrs == other.xattrs);
        check(Attr::Mtime, self.mtime() == other.mtime());
        check(Attr::Ctime, self.ctime() == other.ctime());
        check(Attr::Atime, self.atime() == other.atime());
        check(Attr::Inode, self.inode() == other.inode());
        out
    }

    /// A human rendering of one attribute's value (for reports).
    pub fn render(&self, a: Attr) -> Option<String> {
        use crate::manifest::escape::{escape, to_hex};
        Some(match a {
            Attr::Type => self.kind.name().to_string(),
            Attr::Content => format!("blake3:{}", to_hex(&self.hash?)),
            Attr::Size => self.size?.to_string(),
            Attr::Target => escape(self.target.as_ref()?),
            Attr::Device => {
                let (ma, mi) = self.device?;
                format!("{ma}:{mi}")
            }
            Attr::Mode => format!("{:04o}", self.mode?),
            Attr::Uid => self.uid?.to_string(),
            Attr::Gid => self.gid?.to_string(),
            Attr::Xattrs => render_xattrs(self.xattrs.as_ref()?),
            Attr::Mtime => self.mtime()?.to_string(),
            Attr::Ctime => self.ctime()?.to_string(),
            Attr::Atime => self.atime()?.to_string(),
            Attr::Inode => self.inode()?.to_string(),
        })
    }
}

/// `name=0xHEX, ...` (names escaped), or `none`.
pub fn render_xattrs(x: &Xattrs) -> String {
    use crate::manifest::escape::{escape, to_hex};
    if x.is_empty() {
        return "none".into();
    }
    x.iter()
        .map(|(n, v)| format!("{}=0x{}", escape(n), to_hex(v)))
        .collect::<Vec<_>>()
        .join(", ")
}
