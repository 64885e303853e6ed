//! The zstd container: a big manifest across many blocks, several frames,
//! and frames whose header lies about the size (refused without
//! allocating what they claim).

use super::*;

/// A manifest of 9,500 entries, over 1 MiB of text: its one frame spans
/// many zstd blocks (at most 128 KiB of content each) and announces its
/// size, so reading it sizes its buffer once (the claim is within the
/// budget) at a realistic scale rather than with the few lines the other
/// tests use.
#[test]
fn a_manifest_of_many_zstd_blocks_round_trips() {
    let entries = (0..9_500u64)
        .map(|i| Entry {
            mode: Some(0o644),
            uid: Some(0),
            gid: Some(0),
            size: Some(i),
            hash: Some(*blake3::hash(&i.to_le_bytes()).as_bytes()),
            xattrs: Some(Vec::new()),
            ..Entry::new(
                format!("/usr/share/big/{i:08}").into_bytes(),
                FileKind::File,
            )
        })
        .collect();
    let m = manifest(entries);
    let body = body_of(&m);
    assert!(body.len() > 1 << 20, "body is only {} bytes", body.len());
    let bytes = m.to_bytes().unwrap();
    assert_eq!(
        zstd::zstd_safe::get_frame_content_size(&bytes)
            .ok()
            .flatten(),
        Some(format::encode_text(&m).len() as u64),
        "the frame does not announce its content size"
    );
    let back = Manifest::from_bytes(&bytes).expect("big manifest parses");
    assert!(back == m, "big manifest changed through a round trip");
}

/// A zstd stream may hold several frames (RFC 8878: the content is their
/// concatenation); `zstd -dc` and `pzstd` read and write such files.
#[test]
fn concatenated_zstd_frames_are_read() {
    let m = base_manifest();
    let text = format::encode_text(&m);
    let (a, b) = text.split_at(text.len() / 2);
    let two_frames = [format::compress(a).unwrap(), format::compress(b).unwrap()].concat();
    assert_eq!(
        format::decompress(&two_frames).map(|t| String::from_utf8_lossy(&t).into_owned()),
        Ok(String::from_utf8_lossy(&text).into_owned()),
        "two concatenated zstd frames do not decompress to their concatenation"
    );
    assert_eq!(Manifest::from_bytes(&two_frames), Ok(m));
}

/// A frame header announcing more than the ceiling (or anything at all)
/// is only a claim: the frame is refused for what it holds.
#[test]
fn a_frame_announcing_a_huge_size_is_refused() {
    for claim in [format::MAX_TEXT + 1, u64::MAX - 2] {
        let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd];
        // Frame header descriptor: 8-byte content size, single segment.
        frame.push(0xe0);
        frame.extend_from_slice(&claim.to_le_bytes());
        // One last, raw, empty block.
        frame.extend_from_slice(&[0x01, 0x00, 0x00]);
        assert!(matches!(
            Manifest::from_bytes(&frame),
            Err(FormatError::Other(_))
        ));
    }
}

/// 15 bytes found by the fuzzer: a zstd frame header that claims 2 GiB of
/// content (the old ceiling) and holds nothing.
const HOSTILE_FRAME: [u8; 15] = [
    0x28, 0xb5, 0x2f, 0xfd, 0xe2, 0x25, 0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00,
];

/// A corrupt manifest (or a bomb claiming 3 GiB) must be an error, not an
/// allocation of whatever its header claims: a reader that sizes its buffer from the frame header
/// aborts the process (`memory allocation of 2147483648 bytes failed`)
/// wherever memory is limited. Run in a child process (this test binary,
/// running only the test below) with its address space capped at 1 GiB.
#[test]
fn a_tiny_frame_claiming_2_gib_is_refused_without_allocating_it() {
    use std::os::unix::process::CommandExt;
    const LIMIT: u64 = 1 << 30;
    let mut cmd = std::process::Command::new(std::env::current_exe().expect("test binary"));
    // The child's test name is this module's path without the crate name,
    // so the test keeps working wherever the module is moved.
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    let child = format!("{module}::hostile_frame_child");
    cmd.args(["--exact", &child, "--ignored", "--test-threads=1"]);
    cmd.env("RUST_BACKTRACE", "0");
    // SAFETY: setrlimit is a single system call, safe between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let limit = rustix::process::Rlimit {
                current: Some(LIMIT),
                maximum: Some(LIMIT),
            };
            rustix::process::setrlimit(rustix::process::Resource::As, limit)?;
            Ok(())
        });
    }
    let out = cmd.output().expect("run the child test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "reading a 15-byte manifest with a 1 GiB address-space limit failed ({}):\n\
         {stdout}\n{stderr}",
        out.status
    );
}

#[test]
#[ignore = "run by a_tiny_frame_claiming_2_gib_is_refused_without_allocating_it, \
            under an address-space limit"]
fn hostile_frame_child() {
    assert!(Manifest::from_bytes(&HOSTILE_FRAME).is_err());
    // A bomb whose frame claims 3 GiB (and holds 1 GiB): the claim sizes
    // nothing beyond the budget of its one declared entry.
    let bomb = super::budget::rle_frame_claiming(
        &super::budget::header_text(1),
        b'a',
        1 << 30,
        Some(3 << 30),
    );
    assert!(Manifest::from_bytes(&bomb).is_err());
    assert!(Manifest::from_reader(bomb.as_slice()).is_err());
}
