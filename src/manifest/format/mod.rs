//! The on-disk manifest format, version 1.
//!
//! A manifest is UTF-8 text (paths escaped by [`super::escape`]), stored
//! zstd-compressed; readers also accept the uncompressed text, which is what
//! `zstd -dc` prints and what golden fixtures hold. The layout:
//!
//! ```text
//! driftd-manifest 1
//! driftd-version 0.1.0
//! image-id <escaped text>
//! policy <policy as one line of JSON>
//! columns path type mode uid gid size hash target device xattrs mtime ctime atime inode
//! entries <N>
//! <N entry lines, tab separated, sorted by path bytes, no duplicates>
//! digest blake3 <hex of BLAKE3 over every byte above this line>
//! [signature ed25519 <key id> <hex signature over the digest>]
//! ```
//!
//! In an entry line a field is `-` when the attribute was not recorded.
//! `mode` is octal, times are `seconds.nanoseconds`, `device` is
//! `major:minor`, `hash` is 64 hex digits, `target` is escaped (a target
//! that is literally `-` is written `\x2d`), and `xattrs` is `name=hex`
//! pairs joined by `;` with `=`, `;` and a leading `-` escaped in names (an
//! empty field means "recorded, none present").
//!
//! The same tree and policy always give byte-identical output: entries are
//! sorted, nothing depends on the thread count, the clock or the host.
//!
//! An entry's path is canonical: `/` alone (the root), or `/` and
//! components none of which is empty, `.` or `..` (no `//`, no trailing
//! `/`), so that no entry names a place outside the root or one place
//! twice. A manifest is read within a budget its header sets (see
//! [`budget`]): at most [`MAX_TEXT`] of text, whatever it declares.
//!
//! The code is split by direction: `encode` writes the text, `parse` reads
//! the header and entry lines back, `trailer` splits off and checks the
//! digest and signature lines, `compress` holds the zstd framing around
//! the text and `budget` what reading it may cost. Everything is
//! re-exported here, so callers name one module (`manifest::format::X`)
//! whatever file an item lives in.

pub mod budget;
mod compress;
mod encode;
mod parse;
mod trailer;

pub use budget::{MAX_ENTRY_MEMORY, MAX_TEXT};
pub use compress::{compress, decompress, read_text, ReadError, MAX_INPUT};
pub use encode::{encode_body, encode_entry, encode_text};
pub use parse::{parse_body, parse_entry};
pub use trailer::{split_trailer, Split};

/// The column list, written in the header so a reader can tell at once that
/// a file is of a layout it does not know.
pub const COLUMNS: &str =
    "path type mode uid gid size hash target device xattrs mtime ctime atime inode";

/// Where and why a manifest could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
    #[error("{0}")]
    Other(String),
}

fn line_err(line: usize, reason: impl Into<String>) -> FormatError {
    FormatError::Line {
        line,
        reason: reason.into(),
    }
}
