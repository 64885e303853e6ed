//! Reading the body back: the fixed header lines, then one entry per line.
//! Pure and total: any input gives entries or an error naming the line,
//! never a panic (the fuzz target holds it to that). Only the canonical
//! spelling of each field is accepted, so one manifest has one text.

use super::budget::{self, MAX_ENTRY_MEMORY, MAX_XATTRS};
use super::{line_err, FormatError, COLUMNS};
use crate::manifest::entry::{Entry, FileKind, Times, Timestamp, Xattrs};
use crate::manifest::escape::{escape, from_hex, hex32, unescape};
use crate::manifest::paths::non_canonical;
use crate::manifest::{Header, FORMAT_VERSION};
use crate::policy::Policy;

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
    let (header, count, end) = parse_header(body)?;
    let entries = parse_entries(&body[end..], count, HEADER_LINES)?;
    Ok((header, entries))
}

/// Parse the header at the start of `text` (which may hold only the
/// header: the budget reads it first): the header, the entry count it
/// declares and where the entry lines begin.
pub(super) fn parse_header(text: &[u8]) -> Result<(Header, usize, usize), FormatError> {
    // The header is a fixed number of lines; everything after it is entries.
    let mut header_lines: Vec<&[u8]> = Vec::with_capacity(HEADER_LINES);
    let mut pos = 0;
    while header_lines.len() < HEADER_LINES {
        let Some(nl) = text[pos..].iter().position(|&b| b == b'\n') else {
            break;
        };
        header_lines.push(&text[pos..pos + nl]);
        pos += nl + 1;
    }
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
    // serde's messages quote the offending text raw (`unknown field
    // `...``): escaped, as everything from a manifest is in a message.
    let policy: Policy = serde_json::from_str(&policy_json)
        .map_err(|e| line_err(no, format!("policy: {}", escape(e.to_string().as_bytes()))))?;
    let (no, v) = header_value(&mut lines, "columns")?;
    if v != COLUMNS.as_bytes() {
        return Err(line_err(
            no,
            format!("unknown column layout (expected `{COLUMNS}`)"),
        ));
    }
    let (no, v) = header_value(&mut lines, "entries")?;
    let count: usize = digits(v, 10).ok_or_else(|| line_err(no, "entry count is not a number"))?;
    // Each declared entry takes its slot in the entry array up front.
    let most = MAX_ENTRY_MEMORY / size_of::<Entry>();
    if count > most {
        return Err(line_err(
            no,
            format!(
                "{count} entries declared: at most {most} fit the memory budget of \
                 {MAX_ENTRY_MEMORY} bytes for parsed entries"
            ),
        ));
    }
    let header = Header {
        format_version,
        driftd_version,
        image_id,
        policy,
    };
    Ok((header, count, pos))
}

/// Lines before the first entry.
pub(super) const HEADER_LINES: usize = 6;

/// The shortest entry line: `/`, a type and twelve `-`, thirteen tabs and
/// the newline.
const MIN_LINE: usize = 28;

/// Parse the entry lines (`rest` holds exactly them). `line_offset` is the
/// line number before the first entry; errors name the line.
///
/// One thread on purpose: a parallel parse saves ~15 ms on 110,000 entries
/// but stitching the chunks together costs a transient copy of the entry
/// array (~10 MB), and the agent's memory budget matters more.
fn parse_entries(rest: &[u8], count: usize, line_offset: usize) -> Result<Vec<Entry>, FormatError> {
    let (entries, error) = parse_lines(rest, count);
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

/// The entries before the first error, and that error (0-based index among
/// the entry lines, reason).
type ParsedLines = (Vec<Entry>, Option<(usize, String)>);

/// Parse whole lines, stopping at the first bad one or at the first line
/// beyond `limit` (reported before anything wrong further down).
fn parse_lines(rest: &[u8], limit: usize) -> ParsedLines {
    let body = rest.strip_suffix(b"\n").unwrap_or(rest);
    // The declared count, which `parse_header` held to the memory budget
    // (no more than the text can hold: a header may overstate it).
    let mut out: Vec<Entry> = Vec::with_capacity(limit.min(rest.len() / MIN_LINE + 1));
    if rest.is_empty() {
        return (out, None);
    }
    // What the entries hold beyond their slots, charged as they are parsed.
    let mut heap_left = MAX_ENTRY_MEMORY.saturating_sub(limit.saturating_mul(size_of::<Entry>()));
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
        match heap_left.checked_sub(budget::entry_heap(&e)) {
            Some(left) => heap_left = left,
            None => {
                let reason = format!(
                    "the entries exceed the memory budget of {MAX_ENTRY_MEMORY} bytes for \
                     parsed entries"
                );
                return (out, Some((i, reason)));
            }
        }
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
    if path.contains(&0) {
        return Err("path contains a NUL byte".into());
    }
    // Signed or not: a signature says who made a manifest, not that its
    // paths stay inside the root.
    if let Some(why) = non_canonical(&path) {
        return Err(format!(
            "path `{}` {why}: a manifest path is `/` or `/`-separated names, none \
             empty, `.` or `..`",
            escape(&path)
        ));
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
    // Before any is built: a line of a million tiny pairs would take
    // gigabytes parsed.
    let pairs = field.iter().filter(|&&b| b == b';').count() + 1;
    if pairs > MAX_XATTRS {
        return Err(format!(
            "xattrs: {pairs} listed, more than the {MAX_XATTRS} any file can have"
        ));
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
        let value = from_hex(&pair[eq + 1..]).ok_or("xattrs: value is not hex")?;
        if let Some((prev, _)) = out.last() {
            if **prev >= *name {
                return Err("xattrs: names not strictly sorted".into());
            }
        }
        out.push((name.into_boxed_slice(), value.into_boxed_slice()));
    }
    Ok(out)
}
