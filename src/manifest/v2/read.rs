//! Reading format 2: the tail, the layout, the frames, the header, the
//! index and the blocks, each checked (see the parent module's doc).

use super::{
    digest, encode_index, BlockMeta, BLOCK_ENTRIES, LAYOUT_TAG, MAX_INDEX_TEXT, SKIPPABLE,
    TAIL_LEN, TAIL_TAG, VERSION,
};
use crate::manifest::entry::Entry;
use crate::manifest::escape::{hex32, unescape};
use crate::manifest::format::{self, FormatError};
use crate::manifest::paths::{cmp_components, non_canonical};
use crate::manifest::{Header, ManifestSignature};
use std::cmp::Ordering;
use std::io::Read;

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
    if total != layout_at || lens.contains(&0) {
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
            "digest mismatch: its hash differs from the signed index (the manifest is \
             corrupt or was modified after baking)"
                .into(),
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

/// A manifest's parts: header, entries, digest, signature.
pub type Parsed = (Header, Vec<Entry>, [u8; 32], Option<ManifestSignature>);

/// A whole version 2 text in memory (plain, or inflated from one stream):
/// the header, the entries, the digest and signature, all checked.
pub fn parse_text(text: &[u8]) -> Result<Parsed, FormatError> {
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
