//! Lossless text encoding of arbitrary path bytes.
//!
//! Unix paths are byte strings: they may hold newlines, tabs, backslashes and
//! bytes that are not UTF-8. The manifest is a line-and-tab text format, and
//! the JSON and text reports are read by people and machines, so every path
//! goes through this one codec:
//!
//! - a backslash becomes `\\`;
//! - tab, newline and carriage return become `\t`, `\n`, `\r`;
//! - any other byte below 0x20, 0x7f, and every byte that is not part of a
//!   valid UTF-8 sequence becomes `\xHH` (two lowercase hex digits);
//! - everything else (printable ASCII and valid UTF-8) stands for itself.
//!
//! Decoding is exact and strict: an unknown escape or a truncated `\x` is an
//! error, so a corrupt manifest is refused instead of silently misread.

use std::fmt::Write as _;

/// Encode `bytes` into the escaped text form. `extra` lists ASCII characters
/// that must also be escaped as `\xHH` (used for separators such as `=`/`;`
/// inside xattr fields).
pub fn escape_with(bytes: &[u8], extra: &[u8], out: &mut String) {
    let mut rest = bytes;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                push_valid(valid, extra, out);
                return;
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                // SAFETY-free: `valid_up_to` guarantees this prefix is UTF-8.
                push_valid(std::str::from_utf8(valid).unwrap_or_default(), extra, out);
                let bad = e.error_len().unwrap_or(after.len());
                for b in &after[..bad] {
                    let _ = write!(out, "\\x{b:02x}");
                }
                rest = &after[bad..];
            }
        }
    }
}

fn push_valid(s: &str, extra: &[u8], out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_ascii() && extra.contains(&(c as u8)) => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// Encode `bytes` with the standard path rules.
pub fn escape(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    escape_with(bytes, &[], &mut s);
    s
}

/// Why an escaped string could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnescapeError {
    /// The byte after the backslash (shown escaped: it may be anything).
    #[error("unknown escape sequence `\\{}`", escape(&[*.0]))]
    UnknownEscape(u8),
    #[error("truncated escape sequence at end of field")]
    Truncated,
    #[error("invalid hex digits in `\\x` escape")]
    BadHex,
    #[error("raw control byte 0x{0:02x} must be escaped")]
    RawControl(u8),
}

/// Decode the escaped text form back into the original bytes.
pub fn unescape(s: &[u8]) -> Result<Vec<u8>, UnescapeError> {
    let mut out = Vec::with_capacity(s.len());
    unescape_into(s, &mut out)?;
    Ok(out)
}

/// Decode into `out` (appending).
pub fn unescape_into(s: &[u8], out: &mut Vec<u8>) -> Result<(), UnescapeError> {
    // Fast path: nothing escaped (the overwhelmingly common case).
    if !s.iter().any(|&b| b == b'\\' || b < 0x20 || b == 0x7f) {
        out.extend_from_slice(s);
        return Ok(());
    }
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if b == b'\\' {
            let Some(&next) = s.get(i + 1) else {
                return Err(UnescapeError::Truncated);
            };
            match next {
                b'\\' => out.push(b'\\'),
                b't' => out.push(b'\t'),
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b'x' => {
                    let hex = s.get(i + 2..i + 4).ok_or(UnescapeError::Truncated)?;
                    let hi = hex_val(hex[0]).ok_or(UnescapeError::BadHex)?;
                    let lo = hex_val(hex[1]).ok_or(UnescapeError::BadHex)?;
                    out.push(hi << 4 | lo);
                    i += 4;
                    continue;
                }
                other => return Err(UnescapeError::UnknownEscape(other)),
            }
            i += 2;
        } else if b < 0x20 || b == 0x7f {
            return Err(UnescapeError::RawControl(b));
        } else {
            out.push(b);
            i += 1;
        }
    }
    Ok(())
}

/// Hex digit values; 0xff marks a non-digit. A table, because manifest
/// loading decodes millions of digits and this is its hottest loop.
const HEX: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

pub(crate) fn hex_val(b: u8) -> Option<u8> {
    let v = HEX[b as usize];
    (v != 0xff).then_some(v)
}

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Parse lowercase or uppercase hex; `None` on odd length or a bad digit.
pub fn from_hex(s: &[u8]) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.chunks_exact(2)
        .map(|p| Some(hex_val(p[0])? << 4 | hex_val(p[1])?))
        .collect()
}

/// Parse exactly 32 bytes of hex without allocating.
pub fn hex32(s: &[u8]) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    let mut bad = 0u8;
    for (o, p) in out.iter_mut().zip(s.chunks_exact(2)) {
        let (hi, lo) = (HEX[p[0] as usize], HEX[p[1] as usize]);
        bad |= hi | lo;
        *o = hi << 4 | lo;
    }
    // Any invalid digit sets the high bit of its table value.
    (bad & 0x80 == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_are_unchanged() {
        assert_eq!(escape(b"/usr/bin/ls"), "/usr/bin/ls");
        assert_eq!(escape("/etc/caf\u{e9}".as_bytes()), "/etc/caf\u{e9}");
    }

    #[test]
    fn specials_are_escaped() {
        assert_eq!(
            escape(b"a\\b\tc\nd\re\x01\x7f"),
            "a\\\\b\\tc\\nd\\re\\x01\\x7f"
        );
        assert_eq!(escape(b"bad\xff\xfe"), "bad\\xff\\xfe");
        // a truncated UTF-8 sequence at the end is escaped byte by byte
        assert_eq!(escape(b"x\xe2\x82"), "x\\xe2\\x82");
    }

    #[test]
    fn extra_separators() {
        let mut s = String::new();
        escape_with(b"user.a=b;c", b"=;", &mut s);
        assert_eq!(s, "user.a\\x3db\\x3bc");
    }

    #[test]
    fn round_trip_all_bytes() {
        let all: Vec<u8> = (0..=255u8).collect();
        assert_eq!(unescape(escape(&all).as_bytes()).unwrap(), all);
    }

    #[test]
    fn bad_escapes_are_errors() {
        assert_eq!(unescape(b"a\\q"), Err(UnescapeError::UnknownEscape(b'q')));
        assert_eq!(
            UnescapeError::UnknownEscape(0x1b).to_string(),
            "unknown escape sequence `\\\\x1b`",
            "the byte is shown escaped, never raw"
        );
        assert_eq!(unescape(b"a\\"), Err(UnescapeError::Truncated));
        assert_eq!(unescape(b"a\\x4"), Err(UnescapeError::Truncated));
        assert_eq!(unescape(b"a\\xzz"), Err(UnescapeError::BadHex));
        assert_eq!(unescape(b"a\tb"), Err(UnescapeError::RawControl(9)));
    }

    #[test]
    fn hex_helpers() {
        assert_eq!(to_hex(&[0, 0xab, 0xff]), "00abff");
        assert_eq!(from_hex(b"00abFF"), Some(vec![0, 0xab, 0xff]));
        assert_eq!(from_hex(b"0"), None);
        assert!(hex32(&[b'a'; 64]).is_some());
        assert!(hex32(&[b'g'; 64]).is_none());
    }
}
