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

use super::entry::{Entry, FileKind, Times, Timestamp, Xattrs};
use super::escape::{escape, escape_with, hex32, to_hex, unescape};
use super::{Header, Manifest, ManifestSignature, FORMAT_VERSION};
use crate::policy::Policy;
use std::fmt::Write as _;

/// The column list, written in the header so a reader can tell at once that
/// a file is of a layout it does not know.
pub const COLUMNS: &str =
    "path type mode uid gid size hash target device xattrs mtime ctime atime inode";

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

/// Render the signed body (header and entries) of a manifest.
pub fn encode_body(header: &Header, entries: &[Entry]) -> Vec<u8> {
    let mut s = String::with_capacity(entries.len() * 128 + 1024);
    let policy = serde_json::to_string(&header.policy).unwrap_or_default();
    let _ = writeln!(s, "driftd-manifest {}", header.format_version);
    let _ = writeln!(
        s,
        "driftd-version {}",
        escape(header.driftd_version.as_bytes())
    );
    let _ = writeln!(s, "image-id {}", escape(header.image_id.as_bytes()));
    let _ = writeln!(s, "policy {}", escape(policy.as_bytes()));
    let _ = writeln!(s, "columns {COLUMNS}");
    let _ = writeln!(s, "entries {}", entries.len());
    for e in entries {
        encode_entry(e, &mut s);
    }
    s.into_bytes()
}

fn dash_or<T>(s: &mut String, v: Option<T>, f: impl FnOnce(&mut String, T)) {
    match v {
        Some(v) => f(s, v),
        None => s.push('-'),
    }
}

/// Append one entry line (with its newline).
pub fn encode_entry(e: &Entry, s: &mut String) {
    escape_with(&e.path, &[], s);
    s.push('\t');
    s.push(e.kind.code() as char);
    s.push('\t');
    dash_or(s, e.mode, |s, m| {
        let _ = write!(s, "{m:04o}");
    });
    s.push('\t');
    dash_or(s, e.uid, |s, v| {
        let _ = write!(s, "{v}");
    });
    s.push('\t');
    dash_or(s, e.gid, |s, v| {
        let _ = write!(s, "{v}");
    });
    s.push('\t');
    dash_or(s, e.size, |s, v| {
        let _ = write!(s, "{v}");
    });
    s.push('\t');
    dash_or(s, e.hash.as_ref(), |s, h| s.push_str(&to_hex(h)));
    s.push('\t');
    dash_or(s, e.target.as_deref(), |s, t| {
        if t == b"-" {
            s.push_str("\\x2d");
        } else {
            escape_with(t, &[], s);
        }
    });
    s.push('\t');
    dash_or(s, e.device, |s, (ma, mi)| {
        let _ = write!(s, "{ma}:{mi}");
    });
    s.push('\t');
    dash_or(s, e.xattrs.as_ref(), |s, x| {
        for (i, (name, value)) in x.iter().enumerate() {
            if i > 0 {
                s.push(';');
            }
            if name.first() == Some(&b'-') {
                s.push_str("\\x2d");
                escape_with(&name[1..], b"=;", s);
            } else {
                escape_with(name, b"=;", s);
            }
            s.push('=');
            s.push_str(&to_hex(value));
        }
    });
    for t in [e.mtime(), e.ctime(), e.atime()] {
        s.push('\t');
        dash_or(s, t, |s, t| {
            let _ = write!(s, "{t}");
        });
    }
    s.push('\t');
    dash_or(s, e.inode(), |s, v| {
        let _ = write!(s, "{v}");
    });
    s.push('\n');
}

/// Serialise a complete manifest (body, digest, signature) as plain text.
pub fn encode_text(m: &Manifest) -> Vec<u8> {
    let mut out = encode_body(&m.header, &m.entries);
    out.extend_from_slice(format!("digest blake3 {}\n", to_hex(&m.digest)).as_bytes());
    if let Some(sig) = &m.signature {
        out.extend_from_slice(
            format!(
                "signature ed25519 {} {}\n",
                sig.key_id,
                to_hex(&sig.signature)
            )
            .as_bytes(),
        );
    }
    out
}

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

/// The parts of a manifest's text: body, digest line, signature line.
pub type Split<'a> = (&'a [u8], [u8; 32], Option<ManifestSignature>);

/// Split the text into (body, digest, signature), checking the trailer's
/// shape. The digest is *not* verified here.
pub fn split_trailer(text: &[u8]) -> Result<Split<'_>, FormatError> {
    if !text.ends_with(b"\n") {
        return Err(FormatError::Other(
            "manifest is truncated (no final newline)".into(),
        ));
    }
    // Line numbers are only needed for errors: count lazily.
    let total_lines = || text.iter().filter(|&&b| b == b'\n').count();
    let without_nl = &text[..text.len() - 1];
    let last_start = without_nl
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let last = &without_nl[last_start..];
    let (digest_start, signature) = if last.starts_with(b"signature ") {
        let sig = parse_signature_line(last).map_err(|r| line_err(total_lines(), r))?;
        let before = &text[..last_start];
        if before.is_empty() {
            return Err(FormatError::Other("manifest has no digest line".into()));
        }
        let prev = &before[..before.len() - 1];
        let start = prev.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        (start, Some(sig))
    } else {
        (last_start, None)
    };
    let has_sig = signature.is_some();
    let digest_line_no = || total_lines() - usize::from(has_sig);
    let digest_line = &text[digest_start..];
    let digest_line = &digest_line[..digest_line.iter().position(|&b| b == b'\n').unwrap_or(0)];
    let hex = digest_line.strip_prefix(b"digest blake3 ").ok_or_else(|| {
        line_err(
            digest_line_no(),
            "expected `digest blake3 <hex>` (the manifest is truncated or not a driftd manifest)",
        )
    })?;
    let digest =
        hex32(hex).ok_or_else(|| line_err(digest_line_no(), "digest is not 64 hex digits"))?;
    Ok((&text[..digest_start], digest, signature))
}

fn parse_signature_line(line: &[u8]) -> Result<ManifestSignature, String> {
    let s = std::str::from_utf8(line).map_err(|_| "signature line is not UTF-8".to_string())?;
    let parts: Vec<&str> = s.split(' ').collect();
    match parts.as_slice() {
        ["signature", "ed25519", key_id, sig] => {
            let bytes = super::escape::from_hex(sig.as_bytes())
                .filter(|b| b.len() == 64)
                .ok_or("signature is not 128 hex digits")?;
            if key_id.is_empty() || !key_id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err("signature key id is not hex".into());
            }
            let mut signature = [0u8; 64];
            signature.copy_from_slice(&bytes);
            Ok(ManifestSignature {
                key_id: key_id.to_string(),
                signature,
            })
        }
        _ => Err("expected `signature ed25519 <key id> <hex>`".into()),
    }
}

fn header_value<'a>(
    lines: &mut impl Iterator<Item = (usize, &'a [u8])>,
    key: &str,
) -> Result<(usize, &'a [u8]), FormatError> {
    let (no, line) = lines
        .next()
        .ok_or_else(|| FormatError::Other(format!("header ends before `{key}`")))?;
    let rest = line
        .strip_prefix(key.as_bytes())
        .and_then(|r| r.strip_prefix(b" "))
        .ok_or_else(|| line_err(no, format!("expected header `{key} ...`")))?;
    Ok((no, rest))
}

fn utf8_field(no: usize, what: &str, v: &[u8]) -> Result<String, FormatError> {
    let raw = unescape(v).map_err(|e| line_err(no, format!("{what}: {e}")))?;
    String::from_utf8(raw).map_err(|_| line_err(no, format!("{what} is not UTF-8")))
}

/// Parse the body (header and entries). Pure and total: any input gives a
/// manifest or an error naming the line, never a panic.
pub fn parse_body(body: &[u8]) -> Result<(Header, Vec<Entry>), FormatError> {
    if !body.is_empty() && !body.ends_with(b"\n") {
        return Err(FormatError::Other("manifest body is truncated".into()));
    }
    // The header is a fixed number of lines; everything after it is entries.
    let mut header_lines: Vec<&[u8]> = Vec::with_capacity(HEADER_LINES);
    let mut pos = 0;
    while header_lines.len() < HEADER_LINES {
        let Some(nl) = body[pos..].iter().position(|&b| b == b'\n') else {
            break;
        };
        header_lines.push(&body[pos..pos + nl]);
        pos += nl + 1;
    }
    let rest = &body[pos..];
    let mut lines = header_lines
        .into_iter()
        .enumerate()
        .map(|(i, l)| (i + 1, l));
    let (no, v) = header_value(&mut lines, "driftd-manifest").map_err(|_| {
        FormatError::Other("not a driftd manifest (missing `driftd-manifest` header)".into())
    })?;
    let format_version: u32 =
        digits(v, 10).ok_or_else(|| line_err(no, "format version is not a number"))?;
    if format_version != FORMAT_VERSION {
        return Err(line_err(
            no,
            format!(
                "manifest format version {format_version} is not supported (this driftd reads version {FORMAT_VERSION})"
            ),
        ));
    }
    let (no, v) = header_value(&mut lines, "driftd-version")?;
    let driftd_version = utf8_field(no, "driftd-version", v)?;
    let (no, v) = header_value(&mut lines, "image-id")?;
    let image_id = utf8_field(no, "image-id", v)?;
    let (no, v) = header_value(&mut lines, "policy")?;
    let policy_json = utf8_field(no, "policy", v)?;
    let policy: Policy =
        serde_json::from_str(&policy_json).map_err(|e| line_err(no, format!("policy: {e}")))?;
    let (no, v) = header_value(&mut lines, "columns")?;
    if v != COLUMNS.as_bytes() {
        return Err(line_err(
            no,
            format!("unknown column layout (expected `{COLUMNS}`)"),
        ));
    }
    let (no, v) = header_value(&mut lines, "entries")?;
    let count: usize = digits(v, 10).ok_or_else(|| line_err(no, "entry count is not a number"))?;
    let entries = parse_entries(rest, count, HEADER_LINES)?;
    Ok((
        Header {
            format_version,
            driftd_version,
            image_id,
            policy,
        },
        entries,
    ))
}

/// Lines before the first entry.
const HEADER_LINES: usize = 6;

/// Parse the entry lines (`rest` holds exactly them). `line_offset` is the
/// line number before the first entry; errors name the line.
///
/// One thread on purpose: a parallel parse saves ~15 ms on 110,000 entries
/// but stitching the chunks together costs a transient copy of the entry
/// array (~10 MB), and the agent's memory budget matters more.
fn parse_entries(rest: &[u8], count: usize, line_offset: usize) -> Result<Vec<Entry>, FormatError> {
    let (entries, error) = parse_chunk(rest, count);
    if let Some((i, reason)) = error {
        return Err(line_err(line_offset + i + 1, reason));
    }
    if entries.len() < count {
        return Err(FormatError::Other(format!(
            "manifest ends before its {count} entries (found {})",
            entries.len()
        )));
    }
    Ok(entries)
}

/// A parsed chunk: the entries before the first error, and that error
/// (0-based line index in the chunk, reason).
type Chunk = (Vec<Entry>, Option<(usize, String)>);

/// Parse whole lines, stopping at the first bad one or at the first line
/// beyond `limit` (reported before anything wrong further down).
fn parse_chunk(chunk: &[u8], limit: usize) -> Chunk {
    let body = chunk.strip_suffix(b"\n").unwrap_or(chunk);
    let mut out: Vec<Entry> = Vec::with_capacity(chunk.len() / 100 + 1);
    if chunk.is_empty() {
        return (out, None);
    }
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        if i == limit {
            return (
                out,
                Some((i, format!("more lines than the {limit} entries announced"))),
            );
        }
        if line.is_empty() {
            return (
                out,
                Some((i, "empty line where an entry was expected".into())),
            );
        }
        let e = match parse_entry(line) {
            Ok(e) => e,
            Err(r) => return (out, Some((i, r))),
        };
        if let Some(prev) = out.last() {
            if prev.path >= e.path {
                let reason = "entries are not strictly sorted by path (duplicate or out of order)";
                return (out, Some((i, reason.into())));
            }
        }
        out.push(e);
    }
    (out, None)
}

/// A canonical unsigned number: ASCII digits only (no sign, no spaces),
/// in `radix` (8 or 10), that fits `T`. Rust's own parsers accept a leading
/// `+`, which would let two different texts mean the same manifest.
fn digits<T: TryFrom<u64>>(s: &[u8], radix: u32) -> Option<T> {
    if s.is_empty() || s.len() > 20 || !s.iter().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let text = std::str::from_utf8(s).ok()?;
    T::try_from(u64::from_str_radix(text, radix).ok()?).ok()
}

fn num<T: TryFrom<u64>>(field: &[u8], what: &str) -> Result<Option<T>, String> {
    if field == b"-" {
        return Ok(None);
    }
    digits(field, 10)
        .map(Some)
        .ok_or_else(|| format!("{what}: `{}` is not a valid number", escape(field)))
}

fn timestamp(field: &[u8], what: &str) -> Result<Option<Timestamp>, String> {
    if field == b"-" {
        return Ok(None);
    }
    let bad = || format!("{what}: `{}` is not seconds.nanoseconds", escape(field));
    let s = std::str::from_utf8(field).map_err(|_| bad())?;
    let (sec, nsec) = s.split_once('.').ok_or_else(bad)?;
    if nsec.len() != 9 {
        return Err(bad());
    }
    // Seconds may be negative (before 1970), never signed with `+`.
    let (negative, magnitude) = match sec.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, sec),
    };
    let magnitude: u64 = digits(magnitude.as_bytes(), 10).ok_or_else(bad)?;
    if negative && magnitude == 0 {
        return Err(bad());
    }
    let signed = if negative {
        -i128::from(magnitude)
    } else {
        i128::from(magnitude)
    };
    Ok(Some(Timestamp {
        sec: i64::try_from(signed).map_err(|_| bad())?,
        nsec: digits(nsec.as_bytes(), 10).ok_or_else(bad)?,
    }))
}

/// Parse one entry line (without its newline).
pub fn parse_entry(line: &[u8]) -> Result<Entry, String> {
    let mut f = line.split(|&b| b == b'\t');
    let mut next = |what: &str| f.next().ok_or_else(|| format!("missing field `{what}`"));
    let path_f = next("path")?;
    let kind_f = next("type")?;
    let mode_f = next("mode")?;
    let uid_f = next("uid")?;
    let gid_f = next("gid")?;
    let size_f = next("size")?;
    let hash_f = next("hash")?;
    let target_f = next("target")?;
    let device_f = next("device")?;
    let xattrs_f = next("xattrs")?;
    let mtime_f = next("mtime")?;
    let ctime_f = next("ctime")?;
    let atime_f = next("atime")?;
    let inode_f = next("inode")?;
    if f.next().is_some() {
        return Err("too many fields".into());
    }
    let path = unescape(path_f).map_err(|e| format!("path: {e}"))?;
    if path.first() != Some(&b'/') {
        return Err("path must start with `/`".into());
    }
    if path.contains(&0) {
        return Err("path contains a NUL byte".into());
    }
    let kind =
        FileKind::from_code(kind_f).ok_or_else(|| format!("unknown type `{}`", escape(kind_f)))?;
    let mode = if mode_f == b"-" {
        None
    } else {
        let m = Some(mode_f)
            .filter(|s| s.len() == 4 && s.iter().all(|b| (b'0'..=b'7').contains(b)))
            .and_then(|s| digits(s, 8))
            .ok_or_else(|| format!("mode: `{}` is not four octal digits", escape(mode_f)))?;
        Some(m)
    };
    let hash = if hash_f == b"-" {
        None
    } else {
        Some(hex32(hash_f).ok_or("hash: not 64 hex digits")?)
    };
    let target = if target_f == b"-" {
        None
    } else {
        Some(
            unescape(target_f)
                .map_err(|e| format!("target: {e}"))?
                .into_boxed_slice(),
        )
    };
    let device = if device_f == b"-" {
        None
    } else {
        let colon = device_f
            .iter()
            .position(|&b| b == b':')
            .ok_or("device: not major:minor")?;
        Some((
            digits(&device_f[..colon], 10).ok_or("device: bad major")?,
            digits(&device_f[colon + 1..], 10).ok_or("device: bad minor")?,
        ))
    };
    let xattrs = if xattrs_f == b"-" {
        None
    } else {
        Some(parse_xattrs(xattrs_f)?)
    };
    Ok(Entry {
        path: path.into_boxed_slice(),
        kind,
        mode,
        uid: num(uid_f, "uid")?,
        gid: num(gid_f, "gid")?,
        size: num(size_f, "size")?,
        hash,
        target,
        device,
        xattrs,
        times: Times {
            mtime: timestamp(mtime_f, "mtime")?,
            ctime: timestamp(ctime_f, "ctime")?,
            atime: timestamp(atime_f, "atime")?,
            inode: num(inode_f, "inode")?,
        }
        .boxed(),
    })
}

fn parse_xattrs(field: &[u8]) -> Result<Xattrs, String> {
    let mut out: Xattrs = Vec::new();
    if field.is_empty() {
        return Ok(out);
    }
    for pair in field.split(|&b| b == b';') {
        let eq = pair
            .iter()
            .position(|&b| b == b'=')
            .ok_or("xattrs: expected name=hex")?;
        let name = unescape(&pair[..eq]).map_err(|e| format!("xattr name: {e}"))?;
        if name.is_empty() {
            return Err("xattrs: empty name".into());
        }
        let value = super::escape::from_hex(&pair[eq + 1..]).ok_or("xattrs: value is not hex")?;
        if let Some((prev, _)) = out.last() {
            if **prev >= *name {
                return Err("xattrs: names not strictly sorted".into());
            }
        }
        out.push((name.into_boxed_slice(), value.into_boxed_slice()));
    }
    Ok(out)
}
