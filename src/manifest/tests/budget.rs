//! What reading may cost: decompression bombs (a zstd frame built by hand
//! from RLE blocks, and the zstd encoder's own output), headers that
//! understate their entries, plain text under the same budget, the
//! ceiling, an endless input, and the limits on parsed entries.

use super::*;
use crate::manifest::format::budget::{self, text_budget, MAX_HEADER, PER_ENTRY, TRAILER};
use crate::manifest::format::{ReadError, MAX_ENTRY_MEMORY, MAX_INPUT, MAX_TEXT};
use std::io::Read;

/// The base manifest's header lines, declaring `entries` entries.
pub(super) fn header_text(entries: u64) -> Vec<u8> {
    let mut lines = base_lines();
    lines.truncate(5);
    lines.push(format!("entries {entries}").into_bytes());
    join(&lines)
}

/// A zstd frame holding `prefix` and then `run` bytes of `byte`, built by
/// hand: a raw block, then RLE blocks of 128 KiB (four bytes each, so a
/// gigabyte costs 32 KB). The frame claims no content size.
fn rle_frame(prefix: &[u8], byte: u8, run: u64) -> Vec<u8> {
    rle_frame_claiming(prefix, byte, run, None)
}

/// [`rle_frame`] whose header claims `claim` bytes of content (a lie
/// unless it is the real size).
pub(super) fn rle_frame_claiming(prefix: &[u8], byte: u8, run: u64, claim: Option<u32>) -> Vec<u8> {
    const BLOCK: u64 = 128 << 10;
    let header = |last: bool, kind: u32, size: u64| {
        let v = u32::from(last) | kind << 1 | (size as u32) << 3;
        v.to_le_bytes()[..3].to_vec()
    };
    // Magic; descriptor: a 4-byte content size or none, not single
    // segment; window 128 KiB.
    let mut f = vec![
        0x28,
        0xb5,
        0x2f,
        0xfd,
        if claim.is_some() { 0x80 } else { 0 },
        7 << 3,
    ];
    if let Some(c) = claim {
        f.extend_from_slice(&c.to_le_bytes());
    }
    for (i, chunk) in prefix.chunks(BLOCK as usize).enumerate() {
        let last = run == 0 && (i + 1) * BLOCK as usize >= prefix.len();
        f.extend(header(last, 0, chunk.len() as u64));
        f.extend_from_slice(chunk);
    }
    let mut left = run;
    while left > 0 {
        let n = left.min(BLOCK);
        left -= n;
        f.extend(header(left == 0, 1, n));
        f.push(byte);
    }
    f
}

fn inflate_with_zstd(frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    zstd::stream::read::Decoder::new(frame)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[track_caller]
fn assert_over_budget(got: Result<Manifest, FormatError>, want: &str) {
    match got {
        Err(FormatError::Other(m)) if m.contains(want) => {}
        other => panic!("expected a refusal mentioning {want:?}, got {other:?}"),
    }
}

#[test]
fn the_hand_built_frame_is_what_zstd_reads() {
    let mut want = b"head\n".to_vec();
    want.resize(5 + (300 << 10), b'a');
    for claim in [None, Some(want.len() as u32)] {
        let frame = rle_frame_claiming(b"head\n", b'a', 300 << 10, claim);
        assert_eq!(inflate_with_zstd(&frame), want);
    }
}

#[test]
fn the_budget_follows_the_declared_entries_up_to_the_ceiling() {
    assert_eq!(text_budget(700, 0), 700 + TRAILER);
    assert_eq!(text_budget(700, 3), 700 + 3 * PER_ENTRY + TRAILER);
    assert_eq!(text_budget(700, 1 << 20), MAX_TEXT);
    assert_eq!(text_budget(usize::MAX, usize::MAX), MAX_TEXT);
    // A real manifest is far inside its budget: about 130 bytes a line.
    let m = base_manifest();
    let text = format::encode_text(&m);
    let header_len = header_text(4).len();
    assert!((text.len() as u64) < text_budget(header_len, m.entries.len()));
}

/// A header declaring one entry, then a gigabyte of one byte: refused once
/// the budget is inflated, whatever comes after (and quickly: the rest is
/// never inflated).
#[test]
fn a_bomb_declaring_few_entries_is_refused_at_its_budget() {
    let head = header_text(1);
    let budget = text_budget(head.len(), 1);
    let frame = rle_frame(&head, b'a', 1 << 30);
    assert!(frame.len() < 40_000, "{} bytes", frame.len());
    let started = std::time::Instant::now();
    let want = format!("budget of {budget} bytes its header allows for 1 entries");
    assert_over_budget(Manifest::from_bytes(&frame), &want);
    match Manifest::from_reader(frame.as_slice()) {
        Err(ReadError::Format(FormatError::Other(m))) if m.contains(&want) => {}
        other => panic!("{other:?}"),
    }
    // The zstd encoder's own output, with the real size in its frame.
    let mut text = head.clone();
    text.resize(head.len() + (8 << 20), b'\n');
    let z = zstd::bulk::compress(&text, 3).unwrap();
    assert_over_budget(Manifest::from_bytes(&z), &want);
    // Plain text gets the same budget.
    assert_over_budget(Manifest::from_bytes(&text), &want);
    assert_over_budget(Manifest::from_vec(text), &want);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

/// Fewer entries declared than present: the count check refuses it when
/// the text is within the budget, the budget when it is not.
#[test]
fn a_header_understating_its_entries_is_refused() {
    let line = |i: usize| format!("/f{i:07}\tf\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\n");
    let mut body = header_text(2);
    for i in 0..3 {
        body.extend(line(i).bytes());
    }
    assert_refused(
        "3 lines, 2 declared",
        Manifest::from_bytes(&with_digest(&body)),
        Expect::Line(9),
    );
    let mut body = header_text(2);
    for i in 0..40_000 {
        body.extend(line(i).bytes());
    }
    let text = with_digest(&body);
    assert!(text.len() as u64 > text_budget(header_text(2).len(), 2));
    assert_over_budget(Manifest::from_bytes(&text), "allows for 2 entries");
    assert_over_budget(
        Manifest::from_bytes(&format::compress(&text).unwrap()),
        "allows for 2 entries",
    );
}

/// Whatever the header declares, no more than the ceiling is inflated.
#[test]
fn a_bomb_declaring_many_entries_stops_at_the_ceiling() {
    let head = header_text(1_000_000);
    let frame = rle_frame(&head, b'a', MAX_TEXT + (64 << 20));
    assert_over_budget(
        Manifest::from_bytes(&frame),
        &format!("the ceiling of {MAX_TEXT} bytes"),
    );
}

#[test]
fn a_header_without_its_six_lines_is_refused_at_its_limit() {
    let mut text = b"driftd-manifest 1\ndriftd-version ".to_vec();
    text.resize(MAX_HEADER + 10, b'x');
    let want = format!("the header is longer than {MAX_HEADER} bytes");
    assert_over_budget(Manifest::from_bytes(&text), &want);
    assert_over_budget(
        Manifest::from_bytes(&rle_frame(&text[..40], b'x', 1 << 30)),
        &want,
    );
}

/// Only up to the budget is the frame's claimed size believed: a 3 GiB
/// claim in front of a small text is read like any other.
#[test]
fn a_claimed_content_size_sizes_nothing_beyond_the_budget() {
    let text = format::encode_text(&base_manifest());
    let mut frame = Vec::new();
    let mut enc = zstd::stream::write::Encoder::new(&mut frame, 3).unwrap();
    enc.include_contentsize(true).unwrap();
    enc.set_pledged_src_size(Some(text.len() as u64)).unwrap();
    std::io::Write::write_all(&mut enc, &text).unwrap();
    enc.finish().unwrap();
    assert_eq!(Manifest::from_bytes(&frame).unwrap(), base_manifest());
    // The claim, rewritten (the descriptor's 2-byte size field holds
    // size - 256); the frame is then corrupt, and refused as such.
    assert_eq!(frame[4] & 0xc0, 0x40, "expected a 2-byte content size");
    frame[5..7].copy_from_slice(&u16::MAX.to_le_bytes());
    assert!(Manifest::from_bytes(&frame).is_err());
}

/// An input that never ends (skippable frames inflate to nothing) is cut
/// at [`MAX_INPUT`] bytes; an input that fails is an I/O error, not a
/// corrupt manifest.
#[test]
fn endless_and_failing_inputs() {
    struct Skippable(u64);
    impl Read for Skippable {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            // A skippable frame of 4 GiB - 1 every so often, zeros between.
            const FRAME: u64 = u32::MAX as u64 + 8;
            let at = self.0 % FRAME;
            let n = if at < 8 {
                let head = [0x50, 0x2a, 0x4d, 0x18, 0xff, 0xff, 0xff, 0xff];
                let n = (8 - at as usize).min(buf.len());
                buf[..n].copy_from_slice(&head[at as usize..at as usize + n]);
                n
            } else {
                let n = buf.len().min((FRAME - at) as usize);
                buf[..n].fill(0);
                n
            };
            self.0 += n as u64;
            Ok(n)
        }
    }
    // A real (empty) frame first, so that the input is taken for zstd.
    let endless = std::io::Cursor::new(format::compress(b"").unwrap()).chain(Skippable(0));
    match Manifest::from_reader(endless) {
        Err(ReadError::Format(FormatError::Other(m))) => {
            assert!(m.contains(&format!("exceeds {MAX_INPUT} bytes")), "{m}")
        }
        other => panic!("{other:?}"),
    }
    struct Failing(bool);
    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if std::mem::replace(&mut self.0, true) {
                return Err(std::io::Error::other("disk on fire"));
            }
            buf[..4].copy_from_slice(&[0x28, 0xb5, 0x2f, 0xfd]);
            Ok(4)
        }
    }
    for plain in [false, true] {
        let r: Box<dyn Read> = if plain {
            Box::new(b"driftd-manifest 1\n".chain(Failing(true)))
        } else {
            Box::new(Failing(false))
        };
        match Manifest::from_reader(r) {
            Err(ReadError::Io(e)) => assert_eq!(e.to_string(), "disk on fire"),
            other => panic!("plain {plain}: {other:?}"),
        }
    }
}

/// The parsed entries have a budget too: a header may not declare more
/// entries than fit, and one line may not list more xattrs than a file
/// can have.
#[test]
fn parsed_entries_are_bounded() {
    let most = MAX_ENTRY_MEMORY / size_of::<Entry>();
    assert!(most > 1_000_000, "{most} entries only");
    let mut lines = base_lines();
    lines[5] = format!("entries {}", most + 1).into_bytes();
    let body = join(&lines);
    assert_refused(
        "too many entries",
        format::parse_body(&body),
        Expect::Line(6),
    );
    // Sorted names: user.0, user.1, user.10, ... as bytes.
    let sorted = |n: usize| {
        let mut names: Vec<String> = (0..n).map(|i| format!("user.{i}")).collect();
        names.sort();
        names
            .iter()
            .map(|n| format!("{n}="))
            .collect::<Vec<_>>()
            .join(";")
    };
    let ok = set_field(8, XATTRS, sorted(budget::MAX_XATTRS).as_bytes());
    assert!(format::parse_body(&ok).is_ok());
    let bad = set_field(8, XATTRS, sorted(budget::MAX_XATTRS + 1).as_bytes());
    assert_refused("too many xattrs", format::parse_body(&bad), Expect::Line(8));
    const { assert!(budget::MAX_XATTRS > 9_362, "below what a file can have") };
}
