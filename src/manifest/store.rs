//! A manifest that need not be whole in memory.
//!
//! A [`Store`] holds the header, the digest, the signature and the block
//! index of a manifest (a few dozen bytes per 2,048 entries); the entries
//! themselves are either in memory (a manifest parsed whole: version 1, a
//! plain text, a test's) or read from the file one block at a time, each
//! block inflated and checked against the index when it is read (see
//! [`super::v2`]), with the last few kept ([`CACHED_BLOCKS`]). A full check
//! reads the blocks in order as its walk goes; a targeted re-check of one
//! path reads the one block that holds it.
//!
//! PURE in the sense of this module: it reads bytes through [`ReadAt`] and
//! opens nothing itself.

use super::entry::Entry;
use super::format::{FormatError, ReadError};
use super::paths::cmp_components;
use super::v2::{self, BlockMeta};
use super::{Header, Manifest, ManifestSignature};
use std::cmp::Ordering;
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Arc, Mutex};

/// Blocks kept after they were read: a check moving through the tree in
/// order needs one at a time, concurrent checks a few.
pub const CACHED_BLOCKS: usize = 8;

/// Positional reads of an open file (or of bytes in memory).
pub trait ReadAt: Send + Sync {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()>;
    fn size(&self) -> std::io::Result<u64>;
}

impl ReadAt for Vec<u8> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let start = usize::try_from(offset).map_err(std::io::Error::other)?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn size(&self) -> std::io::Result<u64> {
        Ok(self.len() as u64)
    }
}

/// Some entries of a manifest, shared: a block, or a slice of a manifest
/// in memory.
#[derive(Debug, Clone)]
pub struct Block {
    all: Arc<Vec<Entry>>,
    range: Range<usize>,
}

impl std::ops::Deref for Block {
    type Target = [Entry];
    fn deref(&self) -> &[Entry] {
        &self.all[self.range.clone()]
    }
}

/// One entry of a [`Store`], with its number (its position in the
/// manifest, from 0).
#[derive(Debug, Clone)]
pub struct EntryRef {
    block: Block,
    at: usize,
    pub number: u64,
}

impl std::ops::Deref for EntryRef {
    type Target = Entry;
    fn deref(&self) -> &Entry {
        &self.block[self.at]
    }
}

#[derive(Debug)]
struct Slot {
    first: Box<[u8]>,
    /// Number of its first entry.
    start: u64,
    count: u32,
    place: Place,
}

#[derive(Debug)]
enum Place {
    /// Entries `start..start + count` of the manifest in memory.
    Memory,
    /// A frame of the file, and what the index says of it.
    File {
        offset: u64,
        len: u64,
        hash: [u8; 32],
    },
}

enum Source {
    Memory(Arc<Vec<Entry>>),
    File(Box<dyn ReadAt>),
}

/// A manifest, whole in memory or read block by block (see the module doc).
pub struct Store {
    pub header: Header,
    pub digest: [u8; 32],
    pub signature: Option<ManifestSignature>,
    len: u64,
    slots: Vec<Slot>,
    source: Source,
    cache: Mutex<VecDeque<(usize, Arc<Vec<Entry>>)>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("header", &self.header)
            .field("digest", &self.digest_string())
            .field("entries", &self.len)
            .field("blocks", &self.slots.len())
            .field("in_memory", &matches!(self.source, Source::Memory(_)))
            .finish()
    }
}

/// Read the frame of `len` bytes at `offset` and inflate it within `max`
/// bytes; a frame longer than zstd could make of `max` bytes is refused
/// unread.
fn read_frame(
    src: &dyn ReadAt,
    offset: u64,
    len: u64,
    max: usize,
    what: &str,
) -> Result<Vec<u8>, ReadError> {
    if len > (max + max / 128 + 1024) as u64 {
        return Err(other(format!("{what}: frame too long")));
    }
    let mut z = vec![0u8; len as usize];
    src.read_exact_at(&mut z, offset).map_err(ReadError::Io)?;
    Ok(v2::inflate(&z, max, what)?)
}

fn other(m: impl Into<String>) -> ReadError {
    ReadError::Format(FormatError::Other(m.into()))
}

impl Store {
    /// A manifest in memory (its entries in component order, as
    /// [`Manifest`] keeps them).
    pub fn from_manifest(m: Manifest) -> Store {
        let len = m.entries.len() as u64;
        let slots = m
            .entries
            .chunks(v2::BLOCK_ENTRIES)
            .enumerate()
            .map(|(i, c)| Slot {
                first: c[0].path.clone(),
                start: (i * v2::BLOCK_ENTRIES) as u64,
                count: c.len() as u32,
                place: Place::Memory,
            })
            .collect();
        Store {
            header: m.header,
            digest: m.digest,
            signature: m.signature,
            len,
            slots,
            source: Source::Memory(Arc::new(m.entries)),
            cache: Mutex::new(VecDeque::new()),
        }
    }

    /// Is `src` (by its last bytes) a version 2 file in blocks?
    pub fn is_blocks(src: &dyn ReadAt) -> std::io::Result<bool> {
        let size = src.size()?;
        if size < v2::TAIL_LEN as u64 {
            return Ok(false);
        }
        let mut tail = [0u8; v2::TAIL_LEN];
        src.read_exact_at(&mut tail, size - v2::TAIL_LEN as u64)?;
        Ok(v2::parse_tail(&tail, size).is_some())
    }

    /// Open a version 2 file in blocks: the header, the index and the
    /// digest are read and checked now, the blocks when they are needed.
    pub fn open(src: Box<dyn ReadAt>) -> Result<Store, ReadError> {
        let size = src.size().map_err(ReadError::Io)?;
        let mut tail = [0u8; v2::TAIL_LEN];
        if size < v2::TAIL_LEN as u64 {
            return Err(other("not a manifest in blocks (too short)"));
        }
        src.read_exact_at(&mut tail, size - v2::TAIL_LEN as u64)
            .map_err(ReadError::Io)?;
        let layout_at = v2::parse_tail(&tail, size)
            .ok_or_else(|| other("not a manifest in blocks (no tail)"))??;
        let layout_len = size - v2::TAIL_LEN as u64 - layout_at;
        if layout_len > 24 + 8 * v2::MAX_FRAMES {
            return Err(other("the manifest's layout is damaged (too long)"));
        }
        let mut layout = vec![0u8; layout_len as usize];
        src.read_exact_at(&mut layout, layout_at)
            .map_err(ReadError::Io)?;
        let frames = v2::parse_layout(&layout, layout_at)?;
        let mut offsets = Vec::with_capacity(frames.len());
        let mut at = 0u64;
        for &l in &frames {
            offsets.push(at);
            at += l;
        }
        let read_frame = |i: usize, max: usize, what: &str| {
            read_frame(src.as_ref(), offsets[i], frames[i], max, what)
        };
        let header_text = read_frame(0, v2::MAX_HEADER_TEXT, "header")?;
        let header = v2::parse_header(&header_text)?;
        let last = frames.len() - 1;
        let tail_text = read_frame(last, v2::MAX_INDEX_TEXT, "index")?;
        let (index_text, digest, signature) = super::format::split_trailer(&tail_text)?;
        if v2::digest(&header_text, index_text) != digest {
            return Err(other(
                "digest mismatch: the manifest is corrupt or was modified after baking",
            ));
        }
        let index = v2::parse_index(index_text)?;
        if index.blocks.len() != frames.len() - 2 {
            return Err(other(
                "the manifest's layout is damaged (frames and blocks differ)",
            ));
        }
        let mut start = 0u64;
        let slots = index
            .blocks
            .into_iter()
            .enumerate()
            .map(|(i, BlockMeta { count, hash, first })| {
                let s = Slot {
                    first,
                    start,
                    count,
                    place: Place::File {
                        offset: offsets[i + 1],
                        len: frames[i + 1],
                        hash,
                    },
                };
                start += u64::from(count);
                s
            })
            .collect();
        Ok(Store {
            header,
            digest,
            signature,
            len: index.entries,
            slots,
            source: Source::File(src),
            cache: Mutex::new(VecDeque::new()),
        })
    }

    /// Number of entries.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of blocks.
    pub fn blocks(&self) -> usize {
        self.slots.len()
    }

    /// Are the entries read from a file block by block?
    pub fn in_blocks(&self) -> bool {
        matches!(self.source, Source::File(_))
    }

    /// `blake3:<hex>`, the identity used in reports and metrics.
    pub fn digest_string(&self) -> String {
        format!("blake3:{}", super::escape::to_hex(&self.digest))
    }

    /// Block `i` (read, checked and cached if it comes from the file).
    pub fn block(&self, i: usize) -> Result<Block, ReadError> {
        let slot = &self.slots[i];
        match (&self.source, &slot.place) {
            (Source::Memory(all), _) => {
                let start = slot.start as usize;
                Ok(Block {
                    all: all.clone(),
                    range: start..start + slot.count as usize,
                })
            }
            (Source::File(src), Place::File { offset, len, hash }) => {
                {
                    let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(pos) = cache.iter().position(|(n, _)| *n == i) {
                        let hit = cache.remove(pos).expect("found");
                        let all = hit.1.clone();
                        cache.push_front(hit);
                        let n = all.len();
                        return Ok(Block { all, range: 0..n });
                    }
                }
                let what = format!("block {}", i + 1);
                let text = read_frame(src.as_ref(), *offset, *len, v2::MAX_BLOCK_TEXT, &what)?;
                let meta = BlockMeta {
                    count: slot.count,
                    hash: *hash,
                    first: slot.first.clone(),
                };
                let next = self.slots.get(i + 1).map(|s| &*s.first);
                let entries = Arc::new(v2::parse_block(&text, &meta, next, i + 1)?);
                let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                cache.push_front((i, entries.clone()));
                cache.truncate(CACHED_BLOCKS);
                let n = entries.len();
                Ok(Block {
                    all: entries,
                    range: 0..n,
                })
            }
            (Source::File(_), Place::Memory) => unreachable!("file slots have a place in it"),
        }
    }

    /// The block that would hold `path`: the last whose first path is not
    /// after it.
    fn block_for(&self, path: &[u8]) -> Option<usize> {
        self.slots
            .partition_point(|s| cmp_components(&s.first, path) != Ordering::Greater)
            .checked_sub(1)
    }

    /// The entry for `path`.
    pub fn find(&self, path: &[u8]) -> Result<Option<EntryRef>, ReadError> {
        let Some(i) = self.block_for(path) else {
            return Ok(None);
        };
        let block = self.block(i)?;
        Ok(block
            .binary_search_by(|e| cmp_components(&e.path, path))
            .ok()
            .map(|at| EntryRef {
                number: self.slots[i].start + at as u64,
                block,
                at,
            }))
    }

    /// The number of the first entry whose path is not before `key`.
    pub fn lower_bound(&self, key: &[u8]) -> Result<u64, ReadError> {
        let Some(i) = self.block_for(key) else {
            return Ok(0);
        };
        let block = self.block(i)?;
        let at = block.partition_point(|e| cmp_components(&e.path, key) == Ordering::Less);
        Ok(self.slots[i].start + at as u64)
    }

    /// The entries a check starting at `start` covers: the number of the
    /// entry for `start` itself (if any), and the range of the entries
    /// below it (contiguous in component order). The whole manifest for
    /// `None` or `/`.
    pub fn scope(&self, start: Option<&[u8]>) -> Result<(Option<u64>, Range<u64>), ReadError> {
        let Some(start) = start.filter(|s| *s != b"/") else {
            return Ok((None, 0..self.len));
        };
        // Below `start`: from `start/` up to `start` followed by the lowest
        // byte after `/` in component order (no path holds a NUL).
        let lo = self.lower_bound(&[start, b"/"].concat())?;
        let hi = self.lower_bound(&[start, b"\x01"].concat())?;
        let exact = self.find(start)?.map(|e| e.number);
        Ok((exact, lo..hi.max(lo)))
    }

    /// Does the manifest have entries below `path`?
    pub fn has_below(&self, path: &[u8]) -> Result<bool, ReadError> {
        Ok(!self.scope(Some(path))?.1.is_empty())
    }

    /// The entries numbered `range`, in order.
    pub fn range(&self, range: Range<u64>) -> Entries<'_> {
        Entries {
            store: self,
            next: range.start,
            end: range.end.min(self.len),
            block: None,
        }
    }

    /// Every entry, in order.
    pub fn iter(&self) -> Entries<'_> {
        self.range(0..self.len)
    }

    /// Which block holds entry `n`, and where in it.
    fn locate(&self, n: u64) -> (usize, usize) {
        let i = self.slots.partition_point(|s| s.start <= n) - 1;
        (i, (n - self.slots[i].start) as usize)
    }

    /// The numbers of the entries of block `i`.
    pub fn block_range(&self, i: usize) -> Range<u64> {
        let s = &self.slots[i];
        s.start..s.start + u64::from(s.count)
    }

    /// The numbers of the entries of the block that holds entry `n`.
    pub fn block_range_at(&self, n: u64) -> Range<u64> {
        self.block_range(self.locate(n).0)
    }

    /// Read every block once, checking each (`driftd validate`).
    pub fn verify_all(&self) -> Result<(), ReadError> {
        for i in 0..self.slots.len() {
            self.block(i)?;
        }
        Ok(())
    }

    /// The whole manifest in memory (for tools that need it all at once).
    pub fn to_manifest(&self) -> Result<Manifest, ReadError> {
        let entries = match &self.source {
            Source::Memory(all) => all.as_ref().clone(),
            Source::File(_) => {
                let mut v = Vec::with_capacity(usize::try_from(self.len).unwrap_or(0));
                for e in self.iter() {
                    let e = e?;
                    v.push(Entry::clone(&e));
                }
                v
            }
        };
        Ok(Manifest {
            header: self.header.clone(),
            entries,
            digest: self.digest,
            signature: self.signature.clone(),
        })
    }
}

/// Entries of a [`Store`] in order ([`Store::range`]); an error ends them.
pub struct Entries<'a> {
    store: &'a Store,
    next: u64,
    end: u64,
    block: Option<(usize, Block)>,
}

impl Iterator for Entries<'_> {
    type Item = Result<EntryRef, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.end {
            return None;
        }
        let (i, at) = self.store.locate(self.next);
        let block = match &self.block {
            Some((b, block)) if *b == i => block.clone(),
            _ => match self.store.block(i) {
                Ok(block) => {
                    self.block = Some((i, block.clone()));
                    block
                }
                Err(e) => {
                    self.next = self.end;
                    return Some(Err(e));
                }
            },
        };
        let number = self.next;
        self.next += 1;
        Some(Ok(EntryRef { block, at, number }))
    }
}

impl super::sign::Signed for Store {
    fn digest(&self) -> &[u8; 32] {
        &self.digest
    }
    fn signature(&self) -> Option<&ManifestSignature> {
        self.signature.as_ref()
    }
}
