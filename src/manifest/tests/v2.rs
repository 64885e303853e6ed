//! Format version 2: blocks, the index, the layout, and a manifest read
//! block by block ([`Store`]).

use super::*;
use crate::manifest::paths::cmp_components;
use crate::manifest::store::Store;
use crate::manifest::v2::{self, BLOCK_ENTRIES};
use std::io::Read;

/// A tree of `n` files in directories of 100, with names that sort
/// differently by bytes and by components (`d`, `d-x`, `d/…`).
fn tree(n: usize) -> Vec<Entry> {
    let mut v = vec![Entry::new(b"/".to_vec(), FileKind::Dir)];
    for d in 0..n.div_ceil(100) {
        v.push(Entry::new(format!("/d{d}").into_bytes(), FileKind::Dir));
        v.push(Entry::new(format!("/d{d}-x").into_bytes(), FileKind::File));
        v.push(Entry::new(format!("/d{d}.y").into_bytes(), FileKind::File));
        for f in 0..100.min(n - d * 100) {
            let mut e = Entry::new(format!("/d{d}/f{f:03}").into_bytes(), FileKind::File);
            e.size = Some(f as u64);
            e.hash = Some(*blake3::hash(&e.path).as_bytes());
            v.push(e);
        }
    }
    v
}

fn big() -> Manifest {
    Manifest::new(header_v2(), tree(5_000))
}

fn open(bytes: Vec<u8>) -> Store {
    Store::open(Box::new(bytes)).expect("opens")
}

/// What `zstd -dc` prints of the file: every frame inflated, the
/// skippable ones passed over.
fn zstd_dc(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    zstd::stream::read::Decoder::new(bytes)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn a_manifest_in_blocks_round_trips_through_the_file_and_the_text() {
    let m = big();
    assert!(m.entries.len() > 2 * BLOCK_ENTRIES, "several blocks");
    assert!(m
        .entries
        .windows(2)
        .all(|w| cmp_components(&w[0].path, &w[1].path).is_lt()));
    let bytes = m.to_bytes().unwrap();
    assert_eq!(Manifest::from_bytes(&bytes).unwrap(), m);
    let text = format::encode_text(&m);
    assert!(text.starts_with(b"driftd-manifest 2\n"));
    assert_eq!(Manifest::from_bytes(&text).unwrap(), m);
    // `zstd -dc` of the file is the text. Compressed as one stream (which
    // declares its size only at the end) it is refused, whoever made it.
    assert_eq!(zstd_dc(&bytes), text);
    let one_frame = zstd::bulk::compress(&text, 3).unwrap();
    let e = Manifest::from_bytes(&one_frame).unwrap_err();
    assert!(e.to_string().contains("one zstd stream"), "{e}");
    assert!(Manifest::from_reader(bytes.as_slice()).is_err());
    // The digest is over the header and the index, whatever compressed it.
    assert_eq!(
        m.digest,
        v2::digest_of(&m.header, &m.entries).unwrap(),
        "digest"
    );
    let mut shuffled = m.entries.clone();
    shuffled.reverse();
    assert_eq!(
        Manifest::new(header_v2(), shuffled).to_bytes().unwrap(),
        bytes
    );
    assert_round_trip(&m);
    assert_round_trip(&Manifest::new(header_v2(), vec![]));
    assert_round_trip(&Manifest::new(header_v2(), varied_entries()));
}

#[test]
fn blocks_are_cut_by_count_and_by_size() {
    let store = open(big().to_bytes().unwrap());
    assert_eq!(store.blocks(), 5_151usize.div_ceil(BLOCK_ENTRIES));
    // Entries with 64 KiB of xattrs: a block ends at 1 MiB of text.
    let fat: Vec<Entry> = (0..100)
        .map(|i| {
            let mut e = Entry::new(format!("/f{i:03}").into_bytes(), FileKind::File);
            e.xattrs = Some(xattrs(&[(b"user.big", &[7u8; 32 << 10])]));
            e
        })
        .collect();
    let m = Manifest::new(header_v2(), fat);
    let store = open(m.to_bytes().unwrap());
    assert!(store.blocks() >= 6, "{} blocks", store.blocks());
    assert_eq!(store.to_manifest().unwrap(), m);
}

#[test]
fn a_store_finds_every_entry_and_scopes_subtrees_across_blocks() {
    let m = big();
    let store = open(m.to_bytes().unwrap());
    assert!(store.in_blocks());
    assert_eq!(store.len(), m.entries.len() as u64);
    for (i, e) in m.entries.iter().enumerate() {
        let found = store.find(&e.path).unwrap().expect("found");
        assert_eq!(found.number, i as u64);
        assert_eq!(&*found, e);
    }
    for missing in [&b"/d1/f1000"[..], b"/d0-", b"/a", b"/zzz", b"/d1/"] {
        assert!(store.find(missing).unwrap().is_none(), "{missing:?}");
    }
    let all: Vec<Entry> = store.iter().map(|e| Entry::clone(&e.unwrap())).collect();
    assert_eq!(all, m.entries);
    // Every directory's subtree, compared with a filter of all entries:
    // d20 straddles the first block boundary (entry 2048).
    for d in [0, 19, 20, 21, 49] {
        let dir = format!("/d{d}");
        let (exact, below) = store.scope(Some(dir.as_bytes())).unwrap();
        let want: Vec<u64> = (0..m.entries.len() as u64)
            .filter(|&i| {
                m.entries[i as usize]
                    .path
                    .starts_with(format!("{dir}/").as_bytes())
            })
            .collect();
        assert_eq!(below.clone().collect::<Vec<_>>(), want, "{dir}");
        assert_eq!(exact, m.find(dir.as_bytes()).map(|i| i as u64));
        assert!(store.has_below(dir.as_bytes()).unwrap());
        assert!(!store.has_below(format!("{dir}-x").as_bytes()).unwrap());
    }
    let (exact, below) = store.scope(None).unwrap();
    assert_eq!((exact, below), (None, 0..store.len()));
    let memory = Store::from_manifest(m.clone());
    for d in [0, 20, 49] {
        let dir = format!("/d{d}");
        assert_eq!(
            memory.scope(Some(dir.as_bytes())).unwrap(),
            store.scope(Some(dir.as_bytes())).unwrap()
        );
    }
}

#[test]
fn a_damaged_block_is_refused_when_it_is_read() {
    let m = big();
    let bytes = m.to_bytes().unwrap();
    let store = open(bytes.clone());
    // Rewrite block 2 with other (valid) text: it no longer matches the
    // index's hash. Header frame, then blocks: find block 2's frame by
    // compressing the text the writer would have made of its entries.
    let mut other = m.entries[BLOCK_ENTRIES..2 * BLOCK_ENTRIES].to_vec();
    other[5].size = Some(999);
    let mut text = String::new();
    for e in &other {
        format::encode_entry(e, &mut text);
    }
    let forged = zstd::bulk::compress(text.as_bytes(), 9).unwrap();
    let first = store.block(0).unwrap();
    drop(first);
    // The layout says where block 2 (frame 2) is.
    let tail = &bytes[bytes.len() - v2::TAIL_LEN..];
    let layout_at = v2::parse_tail(tail, bytes.len() as u64).unwrap().unwrap();
    let lens = v2::parse_layout(
        &bytes[layout_at as usize..bytes.len() - v2::TAIL_LEN],
        layout_at,
    )
    .unwrap();
    let at: u64 = lens[..2].iter().sum();
    let mut damaged = bytes[..at as usize].to_vec();
    damaged.extend_from_slice(&forged);
    damaged.extend_from_slice(&bytes[(at + lens[2]) as usize..layout_at as usize]);
    let mut new_lens = lens.clone();
    new_lens[2] = forged.len() as u64;
    let new_at: u64 = new_lens.iter().sum();
    damaged.extend_from_slice(&0x184D_2A5Du32.to_le_bytes());
    damaged.extend_from_slice(&((16 + 8 * new_lens.len()) as u32).to_le_bytes());
    damaged.extend_from_slice(b"DRFTLAY2");
    damaged.extend_from_slice(&(new_lens.len() as u64).to_le_bytes());
    for l in &new_lens {
        damaged.extend_from_slice(&l.to_le_bytes());
    }
    damaged.extend_from_slice(&0x184D_2A5Du32.to_le_bytes());
    damaged.extend_from_slice(&16u32.to_le_bytes());
    damaged.extend_from_slice(b"DRFTEND2");
    damaged.extend_from_slice(&new_at.to_le_bytes());
    // It opens (the header and index are intact) ...
    let store = open(damaged.clone());
    assert!(store.find(b"/d0/f000").unwrap().is_some());
    // ... and the damaged block fails its hash when it is needed.
    let e = store.find(&other[5].path).unwrap_err();
    assert!(e.to_string().contains("block 2"), "{e}");
    assert!(e.to_string().contains("hash"), "{e}");
    assert!(store.iter().any(|r| r.is_err()));
    assert!(store.verify_all().is_err());
    assert!(Manifest::from_bytes(&damaged).is_err());
    // As plain text (`zstd -dc`), the same damage is a block mismatch too.
    let e = Manifest::from_bytes(&zstd_dc(&damaged)).unwrap_err();
    assert!(e.to_string().contains("block 2"), "{e}");
}

#[test]
fn every_truncation_and_every_flipped_byte_of_a_small_manifest_is_refused_or_harmless() {
    let mut entries = varied_entries();
    entries.extend(tree(150));
    let m = Manifest::new(header_v2(), entries);
    let bytes = m.to_bytes().unwrap();
    let tail = &bytes[bytes.len() - v2::TAIL_LEN..];
    let layout_at = v2::parse_tail(tail, bytes.len() as u64).unwrap().unwrap() as usize;
    for cut in 0..bytes.len() {
        match Manifest::from_bytes(&bytes[..cut]) {
            Err(_) => {}
            Ok(_) => panic!(
                "cut at {cut} of {} (layout at {layout_at}) was accepted",
                bytes.len()
            ),
        }
    }
    let step = (bytes.len() / 3000).max(1);
    for i in (0..bytes.len()).step_by(step) {
        for flip in [0x01u8, 0x80] {
            let mut b = bytes.clone();
            b[i] ^= flip;
            // Either refused, or (a flip in a zstd frame's checksum-free
            // padding, a layout length that still adds up) the very same
            // manifest: never another one.
            if let Ok(back) = Manifest::from_bytes(&b) {
                assert_eq!(back, m, "byte {i} ^ {flip:#x} gave another manifest");
            }
        }
    }
}

#[test]
fn out_of_order_or_mislabelled_blocks_are_refused_even_with_matching_hashes() {
    let h = v2::encode_header(&header_v2());
    let lines = |paths: &[&str]| {
        let mut s = String::new();
        for p in paths {
            format::encode_entry(&Entry::new(p.as_bytes().to_vec(), FileKind::File), &mut s);
        }
        s.into_bytes()
    };
    // A text whose index matches its block, signed digest and all: only
    // the order (or the first path) is wrong.
    let text_of = |paths: &[&str], first: &str| {
        let block = lines(paths);
        let meta = v2::BlockMeta {
            count: paths.len() as u32,
            hash: *blake3::hash(&block).as_bytes(),
            first: first.as_bytes().into(),
        };
        let index = v2::encode_index(&[meta], paths.len() as u64);
        let digest = v2::digest(&h, &index);
        let mut t = h.clone();
        t.extend_from_slice(&block);
        t.extend_from_slice(&index);
        t.extend_from_slice(&v2::encode_trailer(&digest, None));
        t
    };
    assert!(Manifest::from_bytes(&text_of(&["/a", "/a/x", "/a-b"], "/a")).is_ok());
    // Byte order (version 1's) is not component order.
    let e = Manifest::from_bytes(&text_of(&["/a", "/a-b", "/a/x"], "/a")).unwrap_err();
    assert!(e.to_string().contains("order"), "{e}");
    let e = Manifest::from_bytes(&text_of(&["/a", "/a"], "/a")).unwrap_err();
    assert!(e.to_string().contains("order"), "{e}");
    let e = Manifest::from_bytes(&text_of(&["/a", "/b"], "/b")).unwrap_err();
    assert!(e.to_string().contains("first path"), "{e}");
    // Non-canonical paths are refused in the index as in the entries.
    let e = Manifest::from_bytes(&text_of(&["/a/../b"], "/a/../b")).unwrap_err();
    assert!(
        e.to_string().contains("canonical") || e.to_string().contains(".."),
        "{e}"
    );
}

#[test]
fn a_signed_manifest_in_blocks_verifies_and_a_version_1_one_still_does() {
    let key = signing_key(3);
    let mut m = big();
    crate::manifest::sign::sign(&mut m, &key);
    let store = open(m.to_bytes().unwrap());
    let trusted = [key.verifying_key()];
    assert!(crate::manifest::sign::verify(&store, &trusted).is_ok());
    assert_eq!(store.signature, m.signature);
    // The same entries as version 1: another digest (another text), read
    // back in component order.
    let mut v1 = Manifest::new(header(), m.entries.clone());
    assert_ne!(v1.digest, m.digest);
    crate::manifest::sign::sign(&mut v1, &key);
    let back = Manifest::from_bytes(&v1.to_bytes().unwrap()).unwrap();
    assert_eq!(back, v1);
    assert_eq!(back.entries, m.entries, "component order in memory");
    assert!(crate::manifest::sign::verify(&back, &trusted).is_ok());
    let text = String::from_utf8(format::encode_text(&v1)).unwrap();
    assert!(text.starts_with("driftd-manifest 1\n"));
    // Version 1 text is in byte order.
    let a = text.find("\n/d0-x\t").unwrap();
    let b = text.find("\n/d0/f000\t").unwrap();
    assert!(a < b, "version 1 sorts by bytes");
}

#[test]
fn a_writer_streams_the_same_bytes_as_a_manifest_in_memory() {
    let m = big();
    let mut w = v2::Writer::new(Vec::new(), &m.header).unwrap();
    for e in &m.entries {
        w.push(e).unwrap();
    }
    assert_eq!(w.entries(), m.entries.len() as u64);
    let done = w.finish(|_| None).unwrap();
    assert_eq!(done.digest, m.digest);
    assert_eq!(done.bytes, done.out.len() as u64);
    assert_eq!(done.out, m.to_bytes().unwrap());
    // Out of order, or a path twice: refused, naming both paths.
    let mut w = v2::Writer::new(Vec::new(), &m.header).unwrap();
    w.push(&Entry::new(b"/a/x".to_vec(), FileKind::File))
        .unwrap();
    let e = w
        .push(&Entry::new(b"/a-b".to_vec(), FileKind::File))
        .map(|_| ())
        .and_then(|_| w.push(&Entry::new(b"/a".to_vec(), FileKind::Dir)))
        .unwrap_err();
    assert!(e.to_string().contains("/a after /a-b"), "{e}");
}
