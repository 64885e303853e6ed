//! Writing format 2 as entries come: the on-disk form ([`Writer`]) and
//! the text ([`write_text`]).

use super::{
    digest, encode_header, encode_trailer, Blocker, WriteError, LAYOUT_TAG, SKIPPABLE, TAIL_TAG,
    ZSTD_LEVEL,
};
use crate::manifest::{Entry, Header, ManifestSignature, Store};
use std::io::Write;

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

/// Write the whole text of a manifest read block by block, a block at a
/// time (`driftd inspect --entries`). A failure to write (a closed pipe)
/// stops it quietly; a block that cannot be read is an error.
pub fn write_text(
    store: &Store,
    out: &mut impl Write,
) -> Result<(), crate::manifest::format::ReadError> {
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
