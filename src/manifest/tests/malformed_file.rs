//! Malformed files: bodies and whole files cut at every byte, and damage
//! to what surrounds the body (the digest and signature lines, the zstd
//! container, trailing bytes).

use super::*;
use crate::manifest::sign::{self, SignError};

#[test]
fn truncated_bodies_are_refused() {
    let base = join(&base_lines());
    for cut in 0..base.len() {
        let body = &base[..cut];
        assert!(
            format::parse_body(body).is_err(),
            "body cut at {cut} of {} parsed",
            base.len()
        );
        // With a recomputed digest: a cut mid-line joins the digest line to
        // the last line, a cut at a line end leaves the entries short.
        assert!(
            Manifest::from_bytes(&with_digest(body)).is_err(),
            "text with body cut at {cut} parsed"
        );
    }
}

#[test]
fn truncated_files_are_refused() {
    let unsigned = format::encode_text(&base_manifest());
    for cut in 0..unsigned.len() {
        assert!(
            Manifest::from_bytes(&unsigned[..cut]).is_err(),
            "unsigned text cut at {cut} of {} parsed",
            unsigned.len()
        );
    }
    let key = signing_key(5);
    let mut m = base_manifest();
    sign::sign(&mut m, &key);
    let signed_text = format::encode_text(&m);
    for cut in 0..signed_text.len() {
        match Manifest::from_bytes(&signed_text[..cut]) {
            Err(_) => {}
            // Only a cut exactly before the signature line parses, and it is
            // then unsigned, which verify refuses.
            Ok(m) => {
                assert_eq!(cut, unsigned.len(), "signed text cut at {cut} parsed");
                assert_eq!(
                    sign::verify(&m, &[key.verifying_key()]),
                    Err(SignError::Unsigned)
                );
            }
        }
    }
    let z = base_manifest().to_bytes().unwrap();
    for cut in 0..z.len() {
        assert!(
            Manifest::from_bytes(&z[..cut]).is_err(),
            "compressed file cut at {cut} of {} parsed",
            z.len()
        );
    }
}

#[test]
fn malformed_files_are_refused() {
    let base = base_manifest();
    let text = format::encode_text(&base);
    let body = body_of(&base);
    let n_lines = text.iter().filter(|&&b| b == b'\n').count();
    let digest_line = n_lines; // unsigned: the digest is the last line
    let mut signed_m = base.clone();
    sign::sign(&mut signed_m, &signing_key(6));
    let signed_text = format::encode_text(&signed_m);
    let sig_line = n_lines + 1;

    let cat = |parts: &[&[u8]]| parts.concat();
    let mut corrupt_z = base.to_bytes().unwrap();
    let mid = corrupt_z.len() / 2;
    corrupt_z[mid] ^= 0xff;
    let mut bad_checksum_z = format::compress(&text).unwrap();
    let last = bad_checksum_z.len() - 1;
    bad_checksum_z[last] ^= 0x01;

    let cases: Vec<(&str, Vec<u8>, Option<Expect>)> = vec![
        ("empty file", Vec::new(), Some(Expect::Other)),
        ("a single newline", b"\n".to_vec(), Some(Expect::Line(1))),
        (
            "no final newline",
            text[..text.len() - 1].to_vec(),
            Some(Expect::Other),
        ),
        ("body only, no digest", body.clone(), Some(Expect::Line(10))),
        (
            "garbage after trailer",
            cat(&[&text, b"garbage\n"]),
            Some(Expect::Line(n_lines + 1)),
        ),
        (
            "garbage after trailer, no newline",
            cat(&[&text, b"garbage"]),
            Some(Expect::Other),
        ),
        (
            "blank line after trailer",
            cat(&[&text, b"\n"]),
            Some(Expect::Line(n_lines + 1)),
        ),
        (
            "garbage after signature",
            cat(&[&signed_text, b"x\n"]),
            Some(Expect::Line(sig_line + 1)),
        ),
        (
            "two signature lines",
            cat(&[&signed_text, &signed_text[text.len()..]]),
            Some(Expect::Line(sig_line)),
        ),
        (
            "digest not hex",
            cat(&[&body, b"digest blake3 ", &[b'z'; 64], b"\n"]),
            Some(Expect::Line(digest_line)),
        ),
        (
            "digest too short",
            cat(&[&body, b"digest blake3 abcd\n"]),
            Some(Expect::Line(digest_line)),
        ),
        (
            "digest of another algorithm",
            cat(&[&body, b"digest sha256 ", &[b'0'; 64], b"\n"]),
            Some(Expect::Line(digest_line)),
        ),
        (
            "digest mismatch",
            cat(&[&body, b"digest blake3 ", &[b'0'; 64], b"\n"]),
            Some(Expect::Other),
        ),
        (
            "signature not hex",
            cat(&[&text, b"signature ed25519 00 zz\n"]),
            Some(Expect::Line(sig_line)),
        ),
        (
            "signature too short",
            cat(&[&text, b"signature ed25519 00 ", &[b'a'; 126], b"\n"]),
            Some(Expect::Line(sig_line)),
        ),
        (
            "signature key id not hex",
            cat(&[&text, b"signature ed25519 xyz ", &[b'a'; 128], b"\n"]),
            Some(Expect::Line(sig_line)),
        ),
        (
            "signature key id empty",
            cat(&[&text, b"signature ed25519  ", &[b'a'; 128], b"\n"]),
            Some(Expect::Line(sig_line)),
        ),
        (
            "signature wrong algorithm",
            cat(&[&text, b"signature rsa 00 ", &[b'a'; 128], b"\n"]),
            Some(Expect::Line(sig_line)),
        ),
        (
            "signature line only",
            cat(&[b"signature ed25519 00 ", &[b'a'; 128], b"\n"]),
            Some(Expect::Other),
        ),
        (
            "signature without digest",
            cat(&[&body, b"signature ed25519 00 ", &[b'a'; 128], b"\n"]),
            Some(Expect::Line(10)),
        ),
        ("not zstd and not text", (0..=255u8).rev().collect(), None),
        (
            "binary with final newline",
            cat(&[&[0u8, 1, 2, 0xff], b"\n"]),
            None,
        ),
        (
            "zstd magic only",
            vec![0x28, 0xb5, 0x2f, 0xfd],
            Some(Expect::Other),
        ),
        (
            "zstd magic then garbage",
            cat(&[&[0x28, 0xb5, 0x2f, 0xfd], &[0x55; 64]]),
            Some(Expect::Other),
        ),
        ("corrupt zstd", corrupt_z, None),
        ("zstd with a bad checksum byte", bad_checksum_z, None),
        (
            "zstd of garbage",
            format::compress(b"hello world\n").unwrap(),
            None,
        ),
        (
            "zstd of nothing",
            format::compress(b"").unwrap(),
            Some(Expect::Other),
        ),
        (
            "zstd of zstd",
            format::compress(&base.to_bytes().unwrap()).unwrap(),
            None,
        ),
        (
            "zstd then trailing bytes",
            cat(&[&base.to_bytes().unwrap(), b"junk"]),
            None,
        ),
        ("gzip", cat(&[&[0x1f, 0x8b, 0x08, 0x00], &text]), None),
    ];
    for (name, bytes, want) in cases {
        let got = Manifest::from_bytes(&bytes);
        match want {
            Some(want) => assert_refused(name, got, want),
            None => assert!(got.is_err(), "{name}: parsed: {got:?}"),
        }
    }
}
