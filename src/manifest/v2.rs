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
//! PURE: the reading side takes bytes; [`super::store`] fetches them.

use super::entry::Entry;
use super::escape::{escape_with, hex32, to_hex, unescape};
use super::format::budget::PER_ENTRY;
use super::format::{self, FormatError};
use super::paths::{cmp_components, non_canonical};
use super::{Header, ManifestSignature};
use std::cmp::Ordering;
use std::fmt::Write as _;
use std::io::{Read, Write};

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
const SKIPPABLE: u32 = 0x184D_2A5D;
const LAYOUT_TAG: &[u8; 8] = b"DRFTLAY2";
const TAIL_TAG: &[u8; 8] = b"DRFTEND2";
/// The fixed tail: magic, length, tag, offset.
pub const TAIL_LEN: usize = 24;
/// zstd level of every frame (see `format::compress`).
const ZSTD_LEVEL: i32 = 9;

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

/// Writes the on-disk form as entries come (see the module doc): memory
/// is one block, whatever the number of entries.
pub struct Writer<W: Write> {
    out: W,
    header_text: Vec<u8>,
    blocker: Blocker,
    frames: Vec<u64>,
    written: u64,
}

/// What [`Writer::finish`] returns.
#[derive(Debug)]
pub struct Finished<W> {
    pub out: W,
    pub digest: [u8; 32],
    pub signature: Option<ManifestSignature>,
    pub entries: u64,
    /// Bytes written.
    pub bytes: u64,
}

impl<W: Write> Writer<W> {
    /// Start a manifest with `header`: its frame is written at once.
    pub fn new(out: W, header: &Header) -> Result<Writer<W>, WriteError> {
        let mut w = Writer {
            out,
            header_text: encode_header(header),
            blocker: Blocker::new(),
            frames: Vec::new(),
            written: 0,
        };
        let text = std::mem::take(&mut w.header_text);
        w.frame(&text)?;
        w.header_text = text;
        Ok(w)
    }

    fn frame(&mut self, text: &[u8]) -> Result<(), WriteError> {
        let z = zstd::bulk::compress(text, ZSTD_LEVEL)?;
        self.out.write_all(&z)?;
        self.frames.push(z.len() as u64);
        self.written += z.len() as u64;
        Ok(())
    }

    /// The next entry; entries must come in component order, each path once.
    pub fn push(&mut self, e: &Entry) -> Result<(), WriteError> {
        if let Some(block) = self.blocker.push(e)? {
            self.frame(&block)?;
        }
        Ok(())
    }

    /// Entries pushed so far.
    pub fn entries(&self) -> u64 {
        self.blocker.entries
    }

    /// Write the last block, the index, the digest and the signature that
    /// `sign` makes of the digest, and the layout.
    pub fn finish(
        mut self,
        sign: impl FnOnce(&[u8; 32]) -> Option<ManifestSignature>,
    ) -> Result<Finished<W>, WriteError> {
        let entries = self.blocker.entries;
        let (last, index, _) = std::mem::take(&mut self.blocker).finish();
        if let Some(block) = last {
            self.frame(&block)?;
        }
        let digest = digest(&self.header_text, &index);
        let signature = sign(&digest);
        let mut tail_text = index;
        tail_text.extend_from_slice(&encode_trailer(&digest, signature.as_ref()));
        self.frame(&tail_text)?;
        let layout_at = self.written;
        let mut layout = Vec::with_capacity(24 + 8 * self.frames.len());
        layout.extend_from_slice(&SKIPPABLE.to_le_bytes());
        let size = 16 + 8 * self.frames.len();
        let size = u32::try_from(size).map_err(|_| std::io::Error::other("too many blocks"))?;
        layout.extend_from_slice(&size.to_le_bytes());
        layout.extend_from_slice(LAYOUT_TAG);
        layout.extend_from_slice(&(self.frames.len() as u64).to_le_bytes());
        for f in &self.frames {
            layout.extend_from_slice(&f.to_le_bytes());
        }
        layout.extend_from_slice(&SKIPPABLE.to_le_bytes());
        layout.extend_from_slice(&16u32.to_le_bytes());
        layout.extend_from_slice(TAIL_TAG);
        layout.extend_from_slice(&layout_at.to_le_bytes());
        self.out.write_all(&layout)?;
        self.out.flush()?;
        Ok(Finished {
            out: self.out,
            digest,
            signature,
            entries,
            bytes: layout_at + layout.len() as u64,
        })
    }
}

fn other(m: impl Into<String>) -> FormatError {
    FormatError::Other(m.into())
}

/// Where the layout frame starts, if `tail` (the last [`TAIL_LEN`] bytes of
/// a file of `size` bytes) is this format's tail.
pub fn parse_tail(tail: &[u8], size: u64) -> Option<Result<u64, FormatError>> {
    if tail.len() != TAIL_LEN || tail[..4] != SKIPPABLE.to_le_bytes() || tail[8..16] != TAIL_TAG[..]
    {
        return None;
    }
    let at = u64::from_le_bytes(tail[16..24].try_into().expect("8 bytes"));
    if tail[4..8] != 16u32.to_le_bytes() || at.checked_add(24 + TAIL_LEN as u64)? > size {
        return Some(Err(other("the manifest's layout is damaged (tail)")));
    }
    Some(Ok(at))
}

/// The most frames a layout may list: the index's bound on blocks.
pub const MAX_FRAMES: u64 = (MAX_INDEX_TEXT / 80) as u64 + 2;

/// The frame lengths of a layout frame (`bytes`: from its start to the
/// tail), checked to add up to `layout_at` (where it starts).
pub fn parse_layout(bytes: &[u8], layout_at: u64) -> Result<Vec<u64>, FormatError> {
    let bad = || other("the manifest's layout is damaged");
    if bytes.len() < 24 || bytes[..4] != SKIPPABLE.to_le_bytes() || bytes[8..16] != LAYOUT_TAG[..] {
        return Err(bad());
    }
    let size = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes")) as usize;
    let n = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
    if !(2..=MAX_FRAMES).contains(&n) || size != 16 + 8 * n as usize || bytes.len() != 8 + size {
        return Err(bad());
    }
    let lens: Vec<u64> = bytes[24..]
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    let total = lens
        .iter()
        .try_fold(0u64, |t, &l| t.checked_add(l))
        .ok_or_else(bad)?;
    if total != layout_at || lens.iter().any(|&l| l == 0) {
        return Err(bad());
    }
    Ok(lens)
}

/// Inflate one frame, refusing more than `max` bytes of text.
pub fn inflate(frame: &[u8], max: usize, what: &str) -> Result<Vec<u8>, FormatError> {
    let mut out = Vec::new();
    let dec = zstd::stream::read::Decoder::new(frame)
        .map_err(|e| other(format!("{what}: corrupt compressed data: {e}")))?;
    dec.take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| other(format!("{what}: corrupt compressed data: {e}")))?;
    if out.len() > max {
        return Err(other(format!(
            "{what}: inflates beyond {max} bytes: refused"
        )));
    }
    Ok(out)
}

/// Parse the header text (exactly the header lines).
pub fn parse_header(text: &[u8]) -> Result<Header, FormatError> {
    let (header, count, end) = format::parse_header(text)?;
    if header.format_version != VERSION || count.is_some() || end != text.len() {
        return Err(other("the header frame is not a version 2 header"));
    }
    Ok(header)
}

/// The index: entries, and each block's description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    pub entries: u64,
    pub blocks: Vec<BlockMeta>,
}

/// Parse and check the index lines (`text` holds exactly them).
pub fn parse_index(text: &[u8]) -> Result<Index, FormatError> {
    let bad = |what: &str| other(format!("index: {what}"));
    let body = text.strip_suffix(b"\n").ok_or_else(|| bad("truncated"))?;
    let mut lines = body.split(|&b| b == b'\n');
    let mut number = |key: &str| -> Result<u64, FormatError> {
        let l = lines
            .next()
            .ok_or_else(|| bad(&format!("no `{key}` line")))?;
        let v = l
            .strip_prefix(key.as_bytes())
            .and_then(|r| r.strip_prefix(b" "))
            .ok_or_else(|| bad(&format!("expected `{key} <number>`")))?;
        std::str::from_utf8(v)
            .ok()
            .filter(|s| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(&format!("`{key}` is not a number")))
    };
    let entries = number("entries")?;
    let count = number("blocks")?;
    if count > MAX_FRAMES {
        return Err(bad("too many blocks"));
    }
    let mut blocks: Vec<BlockMeta> = Vec::new();
    let mut sum = 0u64;
    for l in lines {
        let mut f = l.splitn(4, |&b| b == b' ');
        let (Some(b"block"), Some(n), Some(h), Some(p)) = (f.next(), f.next(), f.next(), f.next())
        else {
            return Err(bad("expected `block <count> <hash> <first path>`"));
        };
        let n: u32 = std::str::from_utf8(n)
            .ok()
            .filter(|s| !s.starts_with('0') && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
            .filter(|&n| n >= 1 && n as usize <= BLOCK_ENTRIES)
            .ok_or_else(|| bad("a block count is not a number from 1 to 2048"))?;
        let hash = hex32(h).ok_or_else(|| bad("a block hash is not 64 hex digits"))?;
        let first = unescape(p).map_err(|e| bad(&format!("a first path: {e}")))?;
        if first.contains(&0) || non_canonical(&first).is_some() {
            return Err(bad("a first path is not canonical"));
        }
        if let Some(prev) = blocks.last() {
            if cmp_components(&prev.first, &first) != Ordering::Less {
                return Err(bad("blocks are not in path order"));
            }
        }
        sum += u64::from(n);
        blocks.push(BlockMeta {
            count: n,
            hash,
            first: first.into(),
        });
    }
    if blocks.len() as u64 != count {
        return Err(bad("the number of block lines differs from `blocks`"));
    }
    if sum != entries {
        return Err(bad("the block counts do not add up to `entries`"));
    }
    // One index, one text: a spelling the writer would not make is refused.
    if encode_index(&blocks, entries) != text {
        return Err(bad("not in canonical form"));
    }
    Ok(Index { entries, blocks })
}

/// Parse and check one block's text against its description, and against
/// the next block's first path (`next`).
pub fn parse_block(
    text: &[u8],
    meta: &BlockMeta,
    next: Option<&[u8]>,
    number: usize,
) -> Result<Vec<Entry>, FormatError> {
    let bad = |what: String| other(format!("block {number}: {what}"));
    if *blake3::hash(text).as_bytes() != meta.hash {
        return Err(bad(
            "its hash differs from the index: the manifest is corrupt or was modified".into(),
        ));
    }
    let body = text
        .strip_suffix(b"\n")
        .ok_or_else(|| bad("truncated".into()))?;
    let mut out: Vec<Entry> = Vec::with_capacity(meta.count as usize);
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        if i == meta.count as usize {
            return Err(bad("more entries than the index says".into()));
        }
        let e = format::parse_entry(line).map_err(|r| bad(format!("entry {}: {r}", i + 1)))?;
        let in_order = match out.last() {
            Some(prev) => cmp_components(&prev.path, &e.path) == Ordering::Less,
            None => *e.path == *meta.first,
        };
        if !in_order {
            return Err(bad(format!(
                "entry {}: not in path order (or not the first path the index names)",
                i + 1
            )));
        }
        out.push(e);
    }
    if out.len() != meta.count as usize {
        return Err(bad("fewer entries than the index says".into()));
    }
    if let (Some(last), Some(next)) = (out.last(), next) {
        if cmp_components(&last.path, next) != Ordering::Less {
            return Err(bad("its last entry is not before the next block".into()));
        }
    }
    Ok(out)
}

/// A whole version 2 text in memory (plain, or inflated from one stream):
/// the header, the entries, the digest and signature, all checked.
pub fn parse_text(
    text: &[u8],
) -> Result<(Header, Vec<Entry>, [u8; 32], Option<ManifestSignature>), FormatError> {
    let (body, digest, signature) = format::split_trailer(text)?;
    let (header, _, end) = format::parse_header(body)?;
    if header.format_version != VERSION {
        return Err(other("not a version 2 manifest"));
    }
    // Entry lines start with `/`; the index lines after them do not.
    let mut pos = end;
    while pos < body.len() && body[pos] == b'/' {
        match body[pos..].iter().position(|&b| b == b'\n') {
            Some(nl) => pos += nl + 1,
            None => return Err(other("manifest body is truncated")),
        }
    }
    let (header_text, entry_text, index_text) = (&body[..end], &body[end..pos], &body[pos..]);
    if self::digest(header_text, index_text) != digest {
        return Err(other(
            "digest mismatch: the manifest is corrupt or was modified after baking",
        ));
    }
    let index = parse_index(index_text)?;
    let mut entries = Vec::with_capacity(
        usize::try_from(index.entries)
            .unwrap_or(usize::MAX)
            .min(entry_text.len() / 28 + 1),
    );
    let mut rest = entry_text;
    let mut heap_left = format::budget::MAX_ENTRY_MEMORY;
    for (i, meta) in index.blocks.iter().enumerate() {
        // The block's text: `count` lines.
        let mut len = 0;
        for _ in 0..meta.count {
            match rest[len..].iter().position(|&b| b == b'\n') {
                Some(nl) => len += nl + 1,
                None => return Err(other(format!("block {}: truncated", i + 1))),
            }
        }
        let next = index.blocks.get(i + 1).map(|m| &*m.first);
        for e in parse_block(&rest[..len], meta, next, i + 1)? {
            heap_left = heap_left
                .checked_sub(format::budget::entry_heap(&e) + size_of::<Entry>())
                .ok_or_else(|| {
                    other(format!(
                        "the entries exceed the memory budget of {} bytes for parsed entries",
                        format::budget::MAX_ENTRY_MEMORY
                    ))
                })?;
            entries.push(e);
        }
        rest = &rest[len..];
    }
    if !rest.is_empty() {
        return Err(other("more entry lines than the index lists"));
    }
    Ok((header, entries, digest, signature))
}

/// Write the whole text of a manifest read block by block, a block at a
/// time (`driftd inspect --entries`). A failure to write (a closed pipe)
/// stops it quietly; a block that cannot be read is an error.
pub fn write_text(
    store: &super::Store,
    out: &mut impl Write,
) -> Result<(), super::format::ReadError> {
    let mut w = |b: &[u8]| out.write_all(b).is_ok();
    if !w(&encode_header(&store.header)) {
        return Ok(());
    }
    let mut b = Blocker::new();
    for e in store.iter() {
        let e = e?;
        if let Ok(Some(block)) = b.push(&e) {
            if !w(&block) {
                return Ok(());
            }
        }
    }
    let (last, index, _) = b.finish();
    if w(&last.unwrap_or_default()) && w(&index) {
        w(&encode_trailer(&store.digest, store.signature.as_ref()));
    }
    Ok(())
}
