//! Writing the text form: the header, one line per entry, and the trailer
//! (digest and signature). Every field is written in exactly one way (the
//! parser refuses any other spelling), so equal manifests are equal bytes.

use super::COLUMNS;
use crate::manifest::entry::Entry;
use crate::manifest::escape::{escape, escape_with, to_hex};
use crate::manifest::{Header, Manifest};
use std::fmt::Write as _;

/// Render the signed body (header and entries) of a version 1 manifest:
/// entries sorted by path bytes.
pub fn encode_body(header: &Header, entries: &[Entry]) -> Vec<u8> {
    let mut s = String::with_capacity(entries.len() * 128 + 1024);
    encode_header_lines(header, &mut s);
    let _ = writeln!(s, "entries {}", entries.len());
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    for e in sorted {
        encode_entry(e, &mut s);
    }
    s.into_bytes()
}

/// The header lines every version starts with (version, driftd version,
/// image id, policy, columns).
pub fn encode_header_lines(header: &Header, s: &mut String) {
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

/// Serialise a complete manifest (body, digest, signature) as plain text,
/// in the format version of its header.
pub fn encode_text(m: &Manifest) -> Vec<u8> {
    if m.header.format_version != 1 {
        return crate::manifest::v2::encode_text(
            &m.header,
            &m.entries,
            &m.digest,
            m.signature.as_ref(),
        );
    }
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
