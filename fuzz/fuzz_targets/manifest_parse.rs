//! Fuzz the manifest parser: any input must give a manifest or an error,
//! never a panic, and whatever parses must survive a re-encode.

#![no_main]

use driftd::manifest::{format, Manifest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The body parser alone (no trailer, no digest): the path a fuzzer can
    // reach most easily, since it needs no valid BLAKE3.
    if let Ok((header, entries)) = format::parse_body(data) {
        let body = format::encode_body(&header, &entries);
        let (header2, entries2) = format::parse_body(&body)
            .unwrap_or_else(|e| panic!("re-encoded body does not parse: {e}"));
        assert_eq!(header, header2, "header changed through a re-encode");
        assert_eq!(entries, entries2, "entries changed through a re-encode");
        // The canonical form is a fixed point.
        assert_eq!(
            body,
            format::encode_body(&header2, &entries2),
            "encoding is not stable"
        );
    }

    // The whole file: format 2 in blocks (layout, frames, index, blocks),
    // or one text (decompression, trailer, digest, body).
    if let Ok(m) = Manifest::from_bytes(data) {
        // Re-encode from the parsed parts: a fresh digest over the canonical
        // body, the signature carried over unchanged.
        let mut fresh = Manifest::new(m.header.clone(), m.entries.clone());
        fresh.signature = m.signature.clone();
        assert_eq!(
            fresh.entries, m.entries,
            "parsed entries were not sorted and unique"
        );
        for bytes in [
            format::encode_text(&fresh),
            fresh.to_bytes().expect("compressing to memory cannot fail"),
        ] {
            let again = Manifest::from_bytes(&bytes)
                .unwrap_or_else(|e| panic!("re-encoded manifest does not parse: {e}"));
            assert_eq!(again, fresh, "manifest changed through a re-encode");
        }
        // Format 2 read from blocks or its text: the round trip above is
        // the property (its header text may spell the policy another way
        // than the encoder would, so the digest may differ).
        if m.header.format_version != 1 {
            return;
        }
        // Format 1: when the input body was already canonical, the digest
        // is the same.
        let text = format::decompress(data).expect("it parsed, so it decompresses");
        let (body, _, _) = format::split_trailer(&text).expect("it parsed, so it splits");
        if body == format::encode_body(&m.header, &m.entries) {
            assert_eq!(fresh.digest, m.digest, "same body, different digest");
        }
    }
});
