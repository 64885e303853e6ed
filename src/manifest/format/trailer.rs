//! The trailer: the digest line and the optional signature line that
//! follow the body. Splitting them off checks their shape only; verifying
//! the digest is `Manifest::from_vec`'s job, the signature `sign::verify`'s.

use super::{line_err, FormatError};
use crate::manifest::escape::{from_hex, hex32};
use crate::manifest::ManifestSignature;

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
            let bytes = from_hex(sig.as_bytes())
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
