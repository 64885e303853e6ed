//! Properties: proptest over arbitrary entries (round trip, order
//! independence, no panic on any input), and a small deterministic fuzz of
//! single-byte mutations of the base body.

use super::*;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

fn kind() -> impl Strategy<Value = FileKind> {
    proptest::sample::select(ALL_KINDS.to_vec())
}

/// Bytes biased towards the ones the codec treats specially.
fn byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => proptest::sample::select(
            b"/\\\t\n\r-=;:x. \x01\x7f\x80\xc3\xa9\xe2\xff".to_vec()
        ),
        1 => any::<u8>(),
    ]
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    (any::<i64>(), 0u32..1_000_000_000).prop_map(|(sec, nsec)| Timestamp { sec, nsec })
}

prop_compose! {
    fn entry_body()(
        kind in kind(),
        mode in proptest::option::of(0u32..=0o7777),
        uid in proptest::option::of(any::<u32>()),
        gid in proptest::option::of(any::<u32>()),
        size in proptest::option::of(any::<u64>()),
        hash in proptest::option::of(any::<[u8; 32]>()),
        target in proptest::option::of(vec(byte(), 0..12)),
        device in proptest::option::of(any::<(u32, u32)>()),
        xattrs in proptest::option::of(
            btree_map(vec(byte(), 1..8), vec(any::<u8>(), 0..8), 0..4)
        ),
        mtime in proptest::option::of(timestamp()),
        ctime in proptest::option::of(timestamp()),
        atime in proptest::option::of(timestamp()),
        inode in proptest::option::of(any::<u64>()),
    ) -> Entry {
        Entry {
            path: Box::from(&b"/"[..]),
            kind,
            mode,
            uid,
            gid,
            size,
            hash,
            target: target.map(Vec::into_boxed_slice),
            device,
            xattrs: xattrs.map(|x| {
                x.into_iter()
                    .map(|(n, v)| (n.into_boxed_slice(), v.into_boxed_slice()))
                    .collect()
            }),
            times: Times { mtime, ctime, atime, inode }.boxed(),
        }
    }
}

/// `/` and the components of `p` that are not empty, `.` or `..`: the
/// canonical path the format requires.
fn canonical(p: &[u8]) -> Vec<u8> {
    let parts: Vec<&[u8]> = p
        .split(|&b| b == b'/')
        .filter(|c| !matches!(*c, b"" | b"." | b".."))
        .collect();
    [&b"/"[..], &parts.join(&b'/')].concat()
}

/// Entries with distinct canonical paths (no NUL: the format refuses it).
fn entries() -> impl Strategy<Value = Vec<Entry>> {
    btree_map(
        vec(byte().prop_filter("no NUL", |b| *b != 0), 0..10),
        entry_body(),
        0..12,
    )
    .prop_map(|m| {
        let by_path: std::collections::BTreeMap<Vec<u8>, Entry> =
            m.into_iter().map(|(p, e)| (canonical(&p), e)).collect();
        by_path
            .into_iter()
            .map(|(p, mut e)| {
                e.path = p.into_boxed_slice();
                e
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn any_entries_round_trip(entries in entries(), image_id in ".{0,8}") {
        let m = Manifest::new(Header { image_id, ..header() }, entries);
        let text = format::encode_text(&m);
        let back = Manifest::from_bytes(&text);
        prop_assert_eq!(back.as_ref(), Ok(&m), "{}", String::from_utf8_lossy(&text));
        let back = Manifest::from_bytes(&m.to_bytes().unwrap());
        prop_assert_eq!(back.as_ref(), Ok(&m));
    }

    #[test]
    fn any_order_gives_the_same_bytes(
        entries in entries().prop_flat_map(|e| (Just(e.clone()), Just(e).prop_shuffle()))
    ) {
        let (a, b) = entries;
        prop_assert_eq!(
            format::encode_text(&manifest(a)),
            format::encode_text(&manifest(b))
        );
    }

    /// The parser takes a path exactly when it is canonical (and has no
    /// NUL), however it is spelled: raw or through escapes.
    #[test]
    fn only_canonical_paths_parse(path in vec(byte(), 0..12), escape_all in any::<bool>()) {
        let field = if escape_all {
            path.iter().map(|b| format!("\\x{b:02x}")).collect::<String>()
        } else {
            crate::manifest::escape::escape(&path)
        };
        let line = format!("{field}\tf\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-");
        let got = format::parse_entry(line.as_bytes());
        let canonical = crate::manifest::paths::non_canonical(&path).is_none() && !path.contains(&0);
        prop_assert_eq!(got.is_ok(), canonical, "{:?}: {:?}", line, got);
    }

    #[test]
    fn parse_body_never_panics(data in vec(any::<u8>(), 0..512)) {
        let _ = format::parse_body(&data);
        let _ = Manifest::from_bytes(&data);
    }
}

/// A small deterministic fuzz of the body parser: every byte of the base
/// body replaced by each of a few interesting bytes, the digest recomputed.
/// Nothing may panic, and whatever parses must re-encode to itself.
#[test]
fn single_byte_mutations_never_panic_and_round_trip() {
    let base = join(&base_lines());
    let mut parsed = 0;
    for i in 0..base.len() {
        for b in [
            b'\t', b'\n', b'\\', b'-', b'0', b'9', b':', b'=', b';', 0x00, 0xff,
        ] {
            if base[i] == b {
                continue;
            }
            let mut body = base.clone();
            body[i] = b;
            let direct = format::parse_body(&body);
            let via = Manifest::from_bytes(&with_digest(&body));
            assert_eq!(
                direct.is_ok(),
                via.is_ok(),
                "byte {i} -> {b:#04x}: parse_body and from_bytes disagree"
            );
            if let Ok(m) = via {
                parsed += 1;
                let again = manifest(m.entries.clone());
                assert_eq!(again.entries, m.entries, "byte {i} -> {b:#04x}");
                let re = Manifest::from_bytes(&format::encode_text(&Manifest::new(
                    m.header.clone(),
                    m.entries.clone(),
                )))
                .unwrap_or_else(|e| panic!("byte {i} -> {b:#04x}: re-encoded fails: {e}"));
                assert_eq!((re.header, re.entries), (m.header, m.entries));
            }
        }
    }
    assert!(parsed > 0, "no mutation parsed: the test exercises nothing");
}
