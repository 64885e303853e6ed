//! Format version 2: a manifest in blocks, so that it can be read one block
//! at a time (a check streams it; a targeted re-check reads one block).
//!
//! The text, which is what `zstd -dc` prints and golden fixtures hold:
//!
//! ```text
//! driftd-manifest 2
//! driftd-version 0.1.0
//! image-id <escaped text>
//! policy <policy as one line of JSON>
//! columns path type mode uid gid size hash target device xattrs mtime ctime atime inode
//! <entry lines, as in version 1, in component order>
//! entries <N>
//! blocks <M>
//! block <count> <BLAKE3 hex of the block's text> <first path, escaped>   (M lines)
//! digest blake3 <hex of BLAKE3 over the header lines and the index lines>
//! [signature ed25519 <key id> <hex signature over the digest>]
//! ```
//!
//! Entries are in *component order* ([`cmp_components`]: `/a`, `/a/x`,
//! `/a-b`), the order a depth-first walk that lists each directory by name
//! produces, so a bake writes them and a check merges them as the walk
//! goes. They are cut into blocks: a block ends after [`BLOCK_ENTRIES`]
//! entries or once its text reaches [`BLOCK_BYTES`], whichever comes first
//! (a rule of the entries alone, so the same entries always make the same
//! blocks). The index after them lists each block's entry count, the
//! BLAKE3 of its text and its first path; the digest covers the header and
//! the index, and through the block hashes every entry. The digest is one
//! value that names the image, whatever compressed the file.
//!
//! On disk (what `bake` writes) each part is its own zstd frame: the header,
//! each block, and the index with the digest and signature lines; then two
//! zstd *skippable* frames (which every zstd decoder passes over, so
//! `zstd -dc` still prints the text above): the layout, the compressed
//! length of every frame, and a fixed 24-byte tail pointing at the layout:
//!
//! ```text
//! [zstd header] [zstd block 1] ... [zstd block M] [zstd index+trailer]
//! [skippable 0x184D2A5D: "DRFTLAY2" u64 F, F x u64 frame lengths]
//! [skippable 0x184D2A5D: "DRFTEND2" u64 offset of the layout frame]
//! ```
//!
//! A reader reads the tail, the layout, the header and the index (bounded:
//! [`MAX_INDEX_TEXT`]), checks the digest, and then any block on demand:
//! inflated within [`MAX_BLOCK_TEXT`], its hash checked against the index,
//! its entries against the index's count and first path and the next
//! block's first path. The layout is not covered by the digest and needs
//! not be: a wrong length only makes a block fail its hash.
//!
//! PURE: the reading side ([`read`]) takes bytes; [`super::store`] fetches
//! them. [`write`] has the streaming writer.

use super::entry::Entry;
use super::escape::{escape_with, to_hex};
use super::format;
use super::format::budget::PER_ENTRY;
use super::paths::cmp_components;
use super::{Header, ManifestSignature};
use std::cmp::Ordering;
use std::fmt::Write as _;

/// The version number of this format.
pub const VERSION: u32 = 2;

/// A block ends after this many entries ...
pub const BLOCK_ENTRIES: usize = 2048;
/// ... or once its text is this long.
pub const BLOCK_BYTES: usize = 1 << 20;
/// The longest block text a reader accepts: a block is cut once it reaches
/// [`BLOCK_BYTES`], so it exceeds that by at most one entry line, and no
/// entry line may be longer than [`PER_ENTRY`] (see
/// [`super::format::budget`]).
pub const MAX_BLOCK_TEXT: usize = BLOCK_BYTES + PER_ENTRY as usize;
/// The longest index text (with the trailer) a reader accepts: a block line
/// is about 100 bytes plus its first path, so a manifest of a billion
/// entries fits.
pub const MAX_INDEX_TEXT: usize = 64 << 20;
/// The longest header text.
pub const MAX_HEADER_TEXT: usize = format::budget::MAX_HEADER;

/// The magic number of the skippable frames (any of 0x184D2A50..5F is
/// skippable; this one is ours).
pub(super) const SKIPPABLE: u32 = 0x184D_2A5D;
pub(super) const LAYOUT_TAG: &[u8; 8] = b"DRFTLAY2";
pub(super) const TAIL_TAG: &[u8; 8] = b"DRFTEND2";
/// The fixed tail: magic, length, tag, offset.
pub const TAIL_LEN: usize = 24;
/// zstd level of every frame. Each block is compressed alone, so it cannot
/// borrow from its neighbours as one stream does: level 13 keeps a manifest
/// of 1M entries at 41.7 MB (level 9: 43.8 MB, above format 1's 43.3 MB),
/// for about 10 ms of compression per block of 2,048 entries.
pub(super) const ZSTD_LEVEL: i32 = 13;

/// One block, as the index describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockMeta {
    /// Entries in it (at least 1).
    pub count: u32,
    /// BLAKE3 of its text.
    pub hash: [u8; 32],
    /// Its first entry's path.
    pub first: Box<[u8]>,
}

/// Why entries could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("entries out of order: {0}")]
    Order(String),
    #[error("entry {0}: its line is longer than {PER_ENTRY} bytes")]
    TooLong(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The header lines (the first five lines of the text).
pub fn encode_header(header: &Header) -> Vec<u8> {
    let mut s = String::new();
    format::encode_header_lines(header, &mut s);
    s.into_bytes()
}

/// Cuts entries, given in component order, into blocks.
#[derive(Debug, Default)]
pub struct Blocker {
    text: String,
    count: usize,
    first: Option<Box<[u8]>>,
    last: Option<Box<[u8]>>,
    metas: Vec<BlockMeta>,
    entries: u64,
}

impl Blocker {
    pub fn new() -> Blocker {
        Blocker::default()
    }

    /// Add the next entry; the text of the block it completed, if it did.
    pub fn push(&mut self, e: &Entry) -> Result<Option<Vec<u8>>, WriteError> {
        if let Some(last) = &self.last {
            if cmp_components(last, &e.path) != Ordering::Less {
                let mut m = String::new();
                escape_with(&e.path, &[], &mut m);
                m.push_str(" after ");
                escape_with(last, &[], &mut m);
                return Err(WriteError::Order(m));
            }
        }
        let before = self.text.len();
        format::encode_entry(e, &mut self.text);
        if (self.text.len() - before) as u64 > PER_ENTRY {
            self.text.truncate(before);
            let mut m = String::new();
            escape_with(&e.path, &[], &mut m);
            return Err(WriteError::TooLong(m));
        }
        if self.first.is_none() {
            self.first = Some(e.path.clone());
        }
        self.last = Some(e.path.clone());
        self.count += 1;
        self.entries += 1;
        if self.count >= BLOCK_ENTRIES || self.text.len() >= BLOCK_BYTES {
            return Ok(Some(self.cut()));
        }
        Ok(None)
    }

    fn cut(&mut self) -> Vec<u8> {
        let text = std::mem::take(&mut self.text).into_bytes();
        self.metas.push(BlockMeta {
            count: self.count as u32,
            hash: *blake3::hash(&text).as_bytes(),
            first: self.first.take().expect("a block has a first entry"),
        });
        self.count = 0;
        text
    }

    /// The last block's text (if any entries are left), and the index text.
    pub fn finish(mut self) -> (Option<Vec<u8>>, Vec<u8>, Vec<BlockMeta>) {
        let last = (self.count > 0).then(|| self.cut());
        let index = encode_index(&self.metas, self.entries);
        (last, index, self.metas)
    }
}

/// The index lines.
pub fn encode_index(metas: &[BlockMeta], entries: u64) -> Vec<u8> {
    let mut s = String::with_capacity(metas.len() * 128 + 32);
    let _ = writeln!(s, "entries {entries}");
    let _ = writeln!(s, "blocks {}", metas.len());
    for m in metas {
        let _ = write!(s, "block {} {} ", m.count, to_hex(&m.hash));
        escape_with(&m.first, &[], &mut s);
        s.push('\n');
    }
    s.into_bytes()
}

/// The digest: BLAKE3 over the header text and the index text.
pub fn digest(header_text: &[u8], index_text: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(header_text);
    h.update(index_text);
    *h.finalize().as_bytes()
}

/// The digest and signature lines.
pub fn encode_trailer(digest: &[u8; 32], signature: Option<&ManifestSignature>) -> Vec<u8> {
    let mut s = format!("digest blake3 {}\n", to_hex(digest));
    if let Some(sig) = signature {
        let _ = writeln!(
            s,
            "signature ed25519 {} {}",
            sig.key_id,
            to_hex(&sig.signature)
        );
    }
    s.into_bytes()
}

/// The digest of a header and entries (in component order).
pub fn digest_of(header: &Header, entries: &[Entry]) -> Result<[u8; 32], WriteError> {
    let mut b = Blocker::new();
    for e in entries {
        b.push(e)?;
    }
    let (_, index, _) = b.finish();
    Ok(digest(&encode_header(header), &index))
}

/// The whole text of a manifest (see the module doc).
pub fn encode_text(
    header: &Header,
    entries: &[Entry],
    digest: &[u8; 32],
    signature: Option<&ManifestSignature>,
) -> Vec<u8> {
    let mut out = encode_header(header);
    let mut b = Blocker::new();
    for e in entries {
        // Entries of a `Manifest` are sorted and unique, and their lines
        // were held to the length rule when it was made.
        if let Ok(Some(block)) = b.push(e) {
            out.extend_from_slice(&block);
        }
    }
    let (last, index, _) = b.finish();
    out.extend_from_slice(&last.unwrap_or_default());
    out.extend_from_slice(&index);
    out.extend_from_slice(&encode_trailer(digest, signature));
    out
}

mod read;
mod write;

pub use read::{
    inflate, parse_block, parse_header, parse_index, parse_layout, parse_tail, parse_text, Index,
    MAX_FRAMES,
};
pub use write::{write_text, Finished, Writer};
