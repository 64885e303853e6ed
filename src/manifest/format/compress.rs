//! The zstd framing around the text. Compression is what driftd writes;
//! reading also accepts plain text, and inflating is bounded (see
//! [`super::budget`]) because the file may be hostile.

use super::budget::{self, MAX_TEXT};
use super::FormatError;
use std::borrow::Cow;
use std::io::Read;

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// zstd level: 9 keeps a 110,000-entry bake well under a second to compress
/// while staying smaller than AIDE's gzip database for the same tree.
const ZSTD_LEVEL: i32 = 9;
/// The longest zstd frame header (`ZSTD_FRAMEHEADERSIZE_MAX`): enough of
/// the input to read the frame's claimed content size.
const FRAME_HEADER_MAX: usize = 18;
/// The most input read: zstd never grows a text within [`MAX_TEXT`] by more
/// than 1/256 (`ZSTD_compressBound`), so a longer input is padding (empty
/// or skippable frames) that would only cost time.
pub const MAX_INPUT: u64 = MAX_TEXT + MAX_TEXT / 128;

/// Why a manifest could not be read from a stream.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Reading the input failed (the file may be fine a moment later).
    #[error("{0}")]
    Io(std::io::Error),
    /// What was read is not a usable manifest.
    #[error(transparent)]
    Format(#[from] FormatError),
}

/// Compress the text form for writing to disk.
pub fn compress(text: &[u8]) -> std::io::Result<Vec<u8>> {
    zstd::bulk::compress(text, ZSTD_LEVEL)
}

/// Turn file bytes into the text form (inflating if needed), within the
/// budget.
pub fn decompress(bytes: &[u8]) -> Result<Cow<'_, [u8]>, FormatError> {
    if !bytes.starts_with(&ZSTD_MAGIC) {
        budget::check_plain(bytes)?;
        return Ok(Cow::Borrowed(bytes));
    }
    match read_text(bytes) {
        Ok(text) => Ok(Cow::Owned(text)),
        Err(ReadError::Format(e)) => Err(e),
        // Reading a slice cannot fail.
        Err(ReadError::Io(e)) => Err(FormatError::Other(e.to_string())),
    }
}

/// Read the text form from a stream (a file: compressed or not), never
/// holding more than the budget of its header, nor reading more than
/// [`MAX_INPUT`] bytes.
pub fn read_text(r: impl Read) -> Result<Vec<u8>, ReadError> {
    let mut input = Capped {
        inner: r,
        left: MAX_INPUT,
    };
    let mut head = [0u8; FRAME_HEADER_MAX];
    let mut n = 0;
    while n < head.len() {
        match input.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(got) => n += got,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(classify(e, false)),
        }
    }
    let head = &head[..n];
    let rest = head.chain(input);
    if !head.starts_with(&ZSTD_MAGIC) {
        return budget::read_bounded(rest, None, |e| classify(e, false));
    }
    // A size the frame claims: trusted for nothing but the first
    // allocation, and only up to the budget.
    let hint = zstd::zstd_safe::get_frame_content_size(head).ok().flatten();
    let dec = zstd::stream::read::Decoder::new(rest).map_err(|e| classify(e, true))?;
    budget::read_bounded(dec, hint, |e| classify(e, true))
}

/// An error of the input itself, as opposed to one of the decoder.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct InputFailed(std::io::Error);

/// The input was longer than [`MAX_INPUT`].
#[derive(Debug, thiserror::Error)]
#[error("the compressed input exceeds {MAX_INPUT} bytes: refused unread")]
struct InputTooLong;

/// Tell an error of the input (`Io`), the cap, and a decoder's complaint
/// about the data (`corrupt`) apart.
fn classify(e: std::io::Error, compressed: bool) -> ReadError {
    let marker = e.get_ref();
    if marker.is_some_and(|m| m.is::<InputTooLong>()) {
        return ReadError::Format(FormatError::Other(InputTooLong.to_string()));
    }
    if marker.is_some_and(|m| m.is::<InputFailed>()) {
        let kind = e.kind();
        return match e.into_inner().map(|m| m.downcast::<InputFailed>()) {
            Some(Ok(inner)) => ReadError::Io(inner.0),
            _ => ReadError::Io(kind.into()),
        };
    }
    let what = if compressed {
        "corrupt compressed data"
    } else {
        "read"
    };
    ReadError::Format(FormatError::Other(format!("{what}: {e}")))
}

/// A reader that fails once more than `left` bytes would be read, and
/// marks its own errors so that they survive the decoder recognisably.
struct Capped<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mark = |e: std::io::Error| std::io::Error::new(e.kind(), InputFailed(e));
        if self.left == 0 {
            // At the cap: only the end of the input is acceptable.
            return match self.inner.read(&mut [0u8; 1]).map_err(mark)? {
                0 => Ok(0),
                _ => Err(std::io::Error::new(
                    std::io::ErrorKind::FileTooLarge,
                    InputTooLong,
                )),
            };
        }
        let n = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let got = self.inner.read(&mut buf[..n]).map_err(mark)?;
        self.left -= got as u64;
        Ok(got)
    }
}
