//! The attributes a rule can check, and a small bit set of them. The names
//! are the ones config files, manifests and reports use.

use std::fmt;

/// One attribute of a path that a rule can check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Attr {
    Type,
    Content,
    Size,
    Target,
    Device,
    Mode,
    Uid,
    Gid,
    Xattrs,
    Mtime,
    Ctime,
    Atime,
    Inode,
}

impl Attr {
    pub const ALL: [Attr; 13] = [
        Attr::Type,
        Attr::Content,
        Attr::Size,
        Attr::Target,
        Attr::Device,
        Attr::Mode,
        Attr::Uid,
        Attr::Gid,
        Attr::Xattrs,
        Attr::Mtime,
        Attr::Ctime,
        Attr::Atime,
        Attr::Inode,
    ];

    /// The name used in config files, manifests and reports.
    pub fn name(self) -> &'static str {
        match self {
            Attr::Type => "type",
            Attr::Content => "content",
            Attr::Size => "size",
            Attr::Target => "target",
            Attr::Device => "device",
            Attr::Mode => "mode",
            Attr::Uid => "uid",
            Attr::Gid => "gid",
            Attr::Xattrs => "xattrs",
            Attr::Mtime => "mtime",
            Attr::Ctime => "ctime",
            Attr::Atime => "atime",
            Attr::Inode => "inode",
        }
    }

    pub fn from_name(s: &str) -> Option<Attr> {
        Attr::ALL.iter().copied().find(|a| a.name() == s)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Attr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of attributes (a small bit set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AttrSet(u16);

impl AttrSet {
    pub const EMPTY: AttrSet = AttrSet(0);

    /// What is checked when no rule says otherwise: everything an image
    /// build controls. Times and inode numbers are off because image
    /// builders normalise (or randomise) them.
    pub fn default_set() -> AttrSet {
        [
            Attr::Type,
            Attr::Content,
            Attr::Size,
            Attr::Target,
            Attr::Device,
            Attr::Mode,
            Attr::Uid,
            Attr::Gid,
            Attr::Xattrs,
        ]
        .into_iter()
        .collect()
    }

    pub fn all() -> AttrSet {
        Attr::ALL.into_iter().collect()
    }

    pub fn contains(self, a: Attr) -> bool {
        self.0 & a.bit() != 0
    }

    pub fn with(self, a: Attr) -> AttrSet {
        AttrSet(self.0 | a.bit())
    }

    pub fn without(self, a: Attr) -> AttrSet {
        AttrSet(self.0 & !a.bit())
    }

    pub fn iter(self) -> impl Iterator<Item = Attr> {
        Attr::ALL.into_iter().filter(move |a| self.contains(*a))
    }

    /// Parse a list of names; `default` and `all` expand to those sets.
    pub fn parse_names<S: AsRef<str>>(names: &[S]) -> Result<AttrSet, String> {
        let mut set = AttrSet::EMPTY;
        for n in names {
            let n = n.as_ref();
            match n {
                "default" => set = AttrSet(set.0 | AttrSet::default_set().0),
                "all" => set = AttrSet::all(),
                _ => match Attr::from_name(n) {
                    Some(a) => set = set.with(a),
                    None => {
                        return Err(format!(
                            "unknown attribute `{n}`, expected one of: default, all, {}",
                            Attr::ALL.map(Attr::name).join(", ")
                        ))
                    }
                },
            }
        }
        // The type is what every other comparison hangs on: always checked.
        Ok(set.with(Attr::Type))
    }
}

impl FromIterator<Attr> for AttrSet {
    fn from_iter<I: IntoIterator<Item = Attr>>(iter: I) -> Self {
        AttrSet(iter.into_iter().fold(0, |acc, a| acc | a.bit()))
    }
}

/// Attributes that an allowance in `content_may_differ` stops checking.
/// Type, mode, owner and xattrs are still checked for those paths.
pub const CONTENT_ATTRS: [Attr; 7] = [
    Attr::Content,
    Attr::Size,
    Attr::Target,
    Attr::Mtime,
    Attr::Ctime,
    Attr::Atime,
    Attr::Inode,
];
