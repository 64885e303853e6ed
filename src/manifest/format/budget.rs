//! What reading a manifest may cost. The file is untrusted until its
//! signature is verified, and that needs the whole text: a 100 KB zstd
//! stream can inflate to gigabytes, and a header can understate its entry
//! count. So the text is inflated as a stream and never beyond a budget
//! fixed by the header, read from the first inflated bytes:
//!
//! ```text
//! budget = min(header bytes + entries * PER_ENTRY + TRAILER, MAX_TEXT)
//! ```
//!
//! The parsed entries are bounded too ([`MAX_ENTRY_MEMORY`]), so loading a
//! hostile file costs at most about `MAX_TEXT + MAX_ENTRY_MEMORY` (512 MiB),
//! half the unit's 1 GiB `MemoryMax`, and the time to inflate and parse
//! that much. Plain text (what golden fixtures and `zstd -dc` hold) gets
//! the same budget.
//!
//! The zstd frame's own content-size field is the attacker's to choose: it
//! only sizes the first allocation, and never beyond the budget.

use super::{parse, FormatError};
use crate::manifest::entry::{Entry, Times};
use std::io::Read;

/// The hard ceiling on a manifest's text, whatever its header declares: a
/// quarter of the unit's `MemoryMax` (1 GiB). A real manifest takes about
/// 150 bytes per entry (the 135,000 paths of a `/usr`: 20 MB), so this
/// is not what limits a real manifest ([`MAX_ENTRY_MEMORY`] is, at about a
/// million entries).
pub const MAX_TEXT: u64 = 256 << 20;

/// The most text one entry is allowed on average. The longest line a real
/// entry can have: a path of `PATH_MAX` (4,096) bytes, each escaped to at
/// most four characters (`\xHH`), 16 KiB; a symlink target as long, 16 KiB;
/// the xattrs, within the kernel's limits of 64 KiB of names
/// (`XATTR_LIST_MAX`, escaped: up to 256 KiB in theory, tens of bytes in
/// practice) and 64 KiB per value (`XATTR_SIZE_MAX`, 128 KiB in hex); and
/// under 400 bytes of fixed fields. 256 KiB covers a path, a target, a
/// maximal value and its name, and since the budget is for the whole text
/// one fat entry borrows from the thousands of 150-byte ones: any header
/// declaring 1,024 entries or more simply gets [`MAX_TEXT`].
pub const PER_ENTRY: u64 = 256 << 10;

/// The digest line (79 bytes) and the signature line (164 bytes with the
/// 16-digit key id `driftd keygen` makes), with room to spare.
pub const TRAILER: u64 = 1 << 10;

/// The longest header: six lines, of which only the policy (one line of
/// JSON: rules, excludes, allow lists) is long. A policy of a thousand
/// globs is some 50 KB.
pub const MAX_HEADER: usize = 1 << 20;

/// The most memory the parsed entries may take, estimated from what they
/// hold: [`size_of::<Entry>()`] for each declared entry (so a header may
/// declare at most about 1.7 million), plus each allocation (path, target,
/// xattr names and values, times) at its length and the allocator's
/// 32 bytes of overhead. A real manifest takes about 250 bytes per entry
/// here (the 135,000 of a `/usr`: 34 MB). Without this bound, 256 MiB of
/// text made of minimal 28-byte lines, or of few-byte xattrs, would parse
/// into gigabytes.
pub const MAX_ENTRY_MEMORY: usize = 256 << 20;

/// The most xattrs one entry may list. The kernel lists at most 64 KiB of
/// names (`XATTR_LIST_MAX`), each at least `user.x` and its NUL (7 bytes):
/// no file has more than 9,362. Checked before an entry's xattrs are
/// parsed, so one line of a million tiny pairs is refused, not built.
pub const MAX_XATTRS: usize = 1 << 14;

/// How much text the header at the start of `text` allows.
pub fn text_budget(header_len: usize, entries: usize) -> u64 {
    (header_len as u64)
        .saturating_add((entries as u64).saturating_mul(PER_ENTRY))
        .saturating_add(TRAILER)
        .min(MAX_TEXT)
}

/// What one allocation of `len` bytes costs at most (glibc rounds to 16
/// bytes with an 8-byte header, 32 bytes at least); nothing when empty.
fn alloc(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        len + 32
    }
}

/// The heap an entry holds beyond its slot in the entry array.
pub(super) fn entry_heap(e: &Entry) -> usize {
    let xattrs = e.xattrs.as_ref().map_or(0, |x| {
        alloc(std::mem::size_of_val(x.as_slice()))
            + x.iter()
                .map(|(n, v)| alloc(n.len()) + alloc(v.len()))
                .sum::<usize>()
    });
    alloc(e.path.len())
        + e.target.as_ref().map_or(0, |t| alloc(t.len()))
        + xattrs
        + e.times.as_ref().map_or(0, |_| alloc(size_of::<Times>()))
}

/// Where the header (its six lines) ends in `prefix`, if it is all there
/// within [`MAX_HEADER`] bytes.
fn header_end(prefix: &[u8]) -> Option<usize> {
    let window = &prefix[..prefix.len().min(MAX_HEADER)];
    window
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
        .nth(parse::HEADER_LINES - 1)
        .map(|(i, _)| i + 1)
}

/// How far a text may go, judged from its first bytes.
enum Judged {
    /// The header is not all there yet (and may still come).
    Incomplete,
    /// At most `budget` bytes; beyond, the error `over`.
    Budget { budget: u64, over: FormatError },
}

/// A header that does not parse leaves no budget to derive. The text is
/// then read only as far as a header and a trailer could reach, so that a
/// small damaged file is reported in the usual order (trailer, digest,
/// then the line: a flipped byte is a digest mismatch); a longer one is
/// refused for its header.
const UNREADABLE_HEADER_BUDGET: u64 = MAX_HEADER as u64 + TRAILER;

/// Judge a text beginning with `prefix`.
fn judge(prefix: &[u8]) -> Result<Judged, FormatError> {
    match header_end(prefix) {
        Some(end) => Ok(match parse::parse_header(&prefix[..end]) {
            Ok((_, count, _)) => {
                let budget = text_budget(end, count);
                Judged::Budget {
                    budget,
                    over: over_budget(budget, count),
                }
            }
            Err(e) => Judged::Budget {
                budget: UNREADABLE_HEADER_BUDGET,
                over: e,
            },
        }),
        None if prefix.len() >= MAX_HEADER => Err(FormatError::Other(format!(
            "the header is longer than {MAX_HEADER} bytes (six lines are expected)"
        ))),
        None => Ok(Judged::Incomplete),
    }
}

fn over_budget(budget: u64, count: usize) -> FormatError {
    let why = if budget == MAX_TEXT {
        format!("the ceiling of {MAX_TEXT} bytes")
    } else {
        format!(
            "the budget of {budget} bytes its header allows for {count} entries \
             ({PER_ENTRY} bytes each, plus the header and trailer)"
        )
    };
    FormatError::Other(format!(
        "the text exceeds {why}: refused (a decompression bomb, or a header \
         that understates its entries)"
    ))
}

/// Check the budget of a whole plain text already in memory.
pub fn check_plain(text: &[u8]) -> Result<(), FormatError> {
    match judge(text)? {
        Judged::Budget { budget, over } if text.len() as u64 > budget => Err(over),
        _ => Ok(()),
    }
}

/// Append up to `n` more bytes of `r` to `text`, reserving exactly that
/// room first; the count appended (less than `n` only at the end).
fn fill(r: &mut impl Read, text: &mut Vec<u8>, n: usize) -> std::io::Result<usize> {
    text.reserve_exact(n);
    // `read_to_end` stops when the `Take` is spent: with the room reserved
    // exactly it never grows the buffer past it.
    r.take(n as u64).read_to_end(text)
}

/// Read the text from `r` (plain text or inflated zstd) within the budget
/// of its header. `hint` is a size the input claims (the zstd frame's
/// content size): it only sizes the buffer once the budget is known.
pub(super) fn read_bounded<E: From<FormatError>>(
    mut r: impl Read,
    hint: Option<u64>,
    io_err: impl Fn(std::io::Error) -> E,
) -> Result<Vec<u8>, E> {
    const CHUNK: usize = 64 << 10;
    let mut text = Vec::new();
    let (budget, over) = loop {
        if let Judged::Budget { budget, over } = judge(&text)? {
            break (budget, over);
        }
        let want = CHUNK.min(MAX_HEADER - text.len());
        if fill(&mut r, &mut text, want).map_err(&io_err)? < want {
            // All of it, and no complete header: the parser says what is
            // wrong with it.
            return Ok(text);
        }
    };
    let limit = usize::try_from(budget + 1).unwrap_or(usize::MAX);
    if let Some(h) = hint.and_then(|h| usize::try_from(h).ok()) {
        text.reserve_exact(h.min(limit).saturating_sub(text.len()));
    }
    loop {
        if text.len() >= limit {
            return Err(over.into());
        }
        // Fill the room there is, else double it, never beyond the limit.
        let room = text.capacity() - text.len();
        let want = if room > 0 {
            room
        } else {
            text.len().max(CHUNK)
        };
        let want = want.min(limit - text.len());
        if fill(&mut r, &mut text, want).map_err(&io_err)? < want {
            return Ok(text);
        }
    }
}
