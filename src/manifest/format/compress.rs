//! The zstd framing around the text. Compression is what driftd writes;
//! reading also accepts plain text, and inflating is bounded because the
//! file may be hostile.

use super::FormatError;

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// zstd level: 9 keeps a 110,000-entry bake well under a second to compress
/// while staying smaller than AIDE's gzip database for the same tree.
const ZSTD_LEVEL: i32 = 9;
/// Refuse to inflate anything larger: no real manifest comes near this, and a
/// hostile file must not make the agent allocate without bound.
pub const MAX_DECOMPRESSED: u64 = 2 << 30;
/// Largest compression ratio for which a frame's claimed size is used to
/// size the output buffer up front (real manifests compress about 3:1).
const MAX_RATIO: u64 = 64;

/// Compress the text form for writing to disk.
pub fn compress(text: &[u8]) -> std::io::Result<Vec<u8>> {
    zstd::bulk::compress(text, ZSTD_LEVEL)
}

/// Turn file bytes into the text form (decompressing if needed).
pub fn decompress(bytes: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, FormatError> {
    if !bytes.starts_with(&ZSTD_MAGIC) {
        return Ok(std::borrow::Cow::Borrowed(bytes));
    }
    let corrupt = |e: std::io::Error| FormatError::Other(format!("corrupt compressed data: {e}"));
    // driftd writes the content size into its single frame: then inflate
    // in one go into an exactly sized buffer (no regrowth, no copies). The
    // claimed size is trusted only when one frame spans the whole input and
    // the ratio is plausible for a manifest; anything else (several frames,
    // a tiny frame claiming gigabytes) takes the bounded streaming path,
    // which never allocates more than it has actually inflated.
    let single_frame = zstd::zstd_safe::find_frame_compressed_size(bytes) == Ok(bytes.len());
    if let (true, Ok(Some(size))) = (single_frame, zstd::zstd_safe::get_frame_content_size(bytes)) {
        if size <= MAX_DECOMPRESSED && size <= (bytes.len() as u64).saturating_mul(MAX_RATIO) {
            let out = zstd::bulk::decompress(bytes, size as usize).map_err(corrupt)?;
            return Ok(std::borrow::Cow::Owned(out));
        }
    }
    let mut out = Vec::new();
    let mut dec = zstd::stream::read::Decoder::new(bytes)
        .map_err(|e| FormatError::Other(format!("zstd: {e}")))?;
    use std::io::Read;
    (&mut dec)
        .take(MAX_DECOMPRESSED + 1)
        .read_to_end(&mut out)
        .map_err(corrupt)?;
    if out.len() as u64 > MAX_DECOMPRESSED {
        return Err(FormatError::Other(format!(
            "decompressed manifest exceeds {MAX_DECOMPRESSED} bytes"
        )));
    }
    Ok(std::borrow::Cow::Owned(out))
}
