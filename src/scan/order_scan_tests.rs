//! Ordered scans of real trees (see `order_tests` for the reorder buffer
//! and the window alone, and the helpers both use).

use super::order_tests::{
    assert_component_order, bytes_path, canonical, path_of, scan_tree, within,
};
use super::*;
use crate::policy::{CompiledPolicy, Policy};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- ordered scans

/// Names that sort differently bytewise and by component (`a/x` before
/// `a-b`), bytes above 0x7f, many small files of different sizes (hashing
/// threads finish out of order) and a few big ones.
fn mixed_tree(root: &Path) {
    let dirs: &[&[u8]] = &[
        b"a",
        b"a/x",
        b"a/x/y",
        b"a-b",
        b"a.b",
        b"b",
        b"b/\xc3\xa9t\xc3\xa9",
        b"b/\xff",
        b"many",
        b"many/sub",
        b"empty",
    ];
    for d in dirs {
        std::fs::create_dir_all(bytes_path(root, d)).unwrap();
    }
    let files: &[&[u8]] = &[
        b"a/x/y/z",
        b"a/x-",
        b"a/x.",
        b"a/x0",
        b"a-b/f",
        b"a.b/f",
        b"a0",
        b"A",
        b"a b",
        b"b/\xc3\xa9t\xc3\xa9/f",
        b"b/\xff/f",
        b"b/\x7f",
        b"b/\x80",
        b"b/~",
        b"z",
    ];
    for f in files {
        std::fs::write(bytes_path(root, f), f).unwrap();
    }
    for i in 0..1500u32 {
        let dir = if i % 3 == 0 { "many/sub" } else { "many" };
        let body = vec![i as u8; (i as usize * 37) % 5000];
        std::fs::write(root.join(format!("{dir}/f{i}")), body).unwrap();
    }
    for name in ["a/big", "many/big", "b/\u{e9}big"] {
        std::fs::write(root.join(name), vec![7u8; 3 << 20]).unwrap();
    }
    std::os::unix::fs::symlink("a/x", root.join("a/x/link")).unwrap();
}

#[test]
fn an_ordered_scan_yields_component_order_and_the_same_events_as_an_unordered_one() {
    let tmp = tempfile::tempdir().unwrap();
    mixed_tree(tmp.path());
    for threads in [1, 2, 4] {
        let (ordered, ostats, peak) = scan_tree(tmp.path(), true, threads, ScanControl::default());
        assert_component_order(&ordered);
        assert!(peak <= ORDER_WINDOW as usize, "{peak}");
        let (unordered, ustats, _) = scan_tree(tmp.path(), false, threads, ScanControl::default());
        assert_eq!(ostats, ustats);
        assert_eq!(ostats.entries, ordered.len() as u64);
        assert_eq!(canonical(ordered.clone()), canonical(unordered));
        // Spot checks of the order itself: '/' below every byte.
        let pos = |p: &[u8]| {
            ordered
                .iter()
                .position(|e| path_of(e) == p)
                .unwrap_or_else(|| panic!("{}", String::from_utf8_lossy(p)))
        };
        assert!(pos(b"/a") < pos(b"/a/x/y/z"));
        assert!(pos(b"/a/x/y/z") < pos(b"/a/x-"));
        assert!(pos(b"/a/x.") < pos(b"/a-b"));
        assert!(pos(b"/a-b/f") < pos(b"/a.b"));
        assert!(pos(b"/b/\x7f") < pos(b"/b/\x80"));
        assert!(pos(b"/b/\xff/f") < pos(b"/empty"));
        assert_eq!(path_of(&ordered[0]), b"/");
    }
}

#[test]
fn the_reorder_buffer_never_exceeds_the_window_behind_one_huge_file() {
    let tmp = tempfile::tempdir().unwrap();
    // Sorted first, read slowly: everything after it waits on it.
    let big = std::fs::File::create(tmp.path().join("0big")).unwrap();
    big.set_len(32 << 20).unwrap();
    drop(big);
    for i in 0..10_000 {
        std::fs::write(tmp.path().join(format!("f{i:05}")), i.to_string()).unwrap();
    }
    // 8 MiB/s: four seconds on the big file, usually time enough for the
    // other hashing thread to do a window's worth of small files (how many
    // it does depends on the machine's load: that the buffer reaches the
    // bound exactly is proved with simulated threads, in
    // the_reorder_buffer_fills_to_the_window_and_the_walker_waits).
    let control = ScanControl {
        pacer: Some(Arc::new(Pacer::new(8 << 20))),
        ..ScanControl::default()
    };
    let root = tmp.path().to_path_buf();
    let (evs, stats, peak) = within(Duration::from_secs(120), move || {
        scan_tree(&root, true, 2, control)
    });
    assert_eq!(evs.len(), 10_002);
    assert_eq!(stats.bytes_hashed, (32 << 20) + 38_890);
    assert_component_order(&evs);
    assert!(peak <= ORDER_WINDOW as usize, "peak {peak}");
    // Events did wait behind the big file.
    assert!(peak > 1, "peak {peak}");
}

#[test]
fn a_cancelled_ordered_scan_returns_promptly_while_the_walker_waits() {
    // One hashing thread, busy on a big file read slowly; a second file
    // queued behind it; then more symlinks than the window holds (no
    // hashing: the walker numbers them itself). The walker fills the
    // window behind the big file and waits. On cancel the big file's read
    // stops and its number arrives (the window moves one place, or the
    // walker sees the cancel while waiting, whichever comes first); the
    // queued file is dropped unread: its number never comes, and the
    // caller's thread must still finish, skipping it once every sender is
    // gone. (The walker's own look at the cancel flag while it waits is
    // proved by a_walker_waiting_for_the_window_sees_cancellation: here
    // the window moving one place also frees it.)
    let tmp = tempfile::tempdir().unwrap();
    let big = std::fs::File::create(tmp.path().join("0big")).unwrap();
    big.set_len(32 << 20).unwrap();
    drop(big);
    std::fs::write(tmp.path().join("0big2"), b"queued").unwrap();
    for i in 0..5000 {
        std::os::unix::fs::symlink("0big", tmp.path().join(format!("l{i:05}"))).unwrap();
    }
    let root = tmp.path().to_path_buf();
    let (result, seen, after_cancel) = within(Duration::from_secs(120), move || {
        let cancel = Arc::new(AtomicBool::new(false));
        let control = ScanControl {
            ordered: true,
            cancel: Some(cancel.clone()),
            // 32 seconds for the big file.
            pacer: Some(Arc::new(Pacer::new(1 << 20))),
            ..ScanControl::default()
        };
        let policy = CompiledPolicy::new(Policy::default(), "policy").unwrap();
        let opts = ScanOptions {
            root: &root,
            policy: &policy,
            threads: 1,
        };
        let timer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            cancel.store(true, Ordering::SeqCst);
            Instant::now()
        });
        let mut seen = 0usize;
        let result = scan_with(&opts, &control, &mut |_| seen += 1);
        (result, seen, timer.join().unwrap().elapsed())
    });
    assert!(matches!(result, Err(ScanError::Cancelled)), "{result:?}");
    // Held by the window until the cancel (numbers below 1 + the window:
    // only "/" was handed out), one more at most as the big file's number
    // arrives, none after; less the one dropped.
    assert!(
        seen <= ORDER_WINDOW as usize + 1,
        "{seen} events: the walker ran past the window"
    );
    assert!(after_cancel < Duration::from_secs(5), "{after_cancel:?}");
}

#[test]
fn a_file_that_vanishes_between_listing_and_open_does_not_stall_an_ordered_scan() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    std::fs::create_dir(&d).unwrap();
    // More than a window's worth after the files that vanish: were their
    // numbers left open, the walker would wait for them forever.
    for i in 0..10_000 {
        std::fs::write(d.join(format!("f{i:05}")), b"x").unwrap();
    }
    let root = tmp.path().to_path_buf();
    let evs = within(Duration::from_secs(120), move || {
        let mut out = Vec::new();
        let policy = CompiledPolicy::new(Policy::default(), "policy").unwrap();
        let opts = ScanOptions {
            root: &root,
            policy: &policy,
            threads: 2,
        };
        let control = ScanControl {
            ordered: true,
            ..ScanControl::default()
        };
        scan_with(&opts, &control, &mut |ev| {
            if path_of(&ev) == b"/d/f00000" {
                // /d is listed (f00000 was queued from its listing), and
                // the walker is at most ORDER_WINDOW numbers past f00000:
                // files from f04100 on are listed but not yet queued, so
                // each of these is opened after it is gone.
                for i in 4100..5000 {
                    std::fs::remove_file(root.join(format!("d/f{i:05}"))).unwrap();
                }
            }
            out.push(ev);
        })
        .unwrap();
        out
    });
    let paths: Vec<_> = evs.iter().map(|e| path_of(e).to_vec()).collect();
    let mut want = vec![b"/".to_vec(), b"/d".to_vec()];
    want.extend(
        (0..4100)
            .chain(5000..10_000)
            .map(|i| format!("/d/f{i:05}").into_bytes()),
    );
    assert_eq!(paths, want);
}

// ---------------------------------------------------------------- random trees

mod random_trees {
    use super::*;
    use proptest::prelude::*;

    /// One name from a small alphabet on which byte order and component
    /// order disagree (`-` and `.` sort below `/` bytewise, above it by
    /// component), with bytes above 0x7f.
    fn component() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            proptest::sample::select(vec![b'a', b'b', b'-', b'.', b'0', 0xc3, 0xff]),
            1..4,
        )
        .prop_map(|c| {
            if c == b"." || c == b".." {
                b"x".to_vec()
            } else {
                c
            }
        })
    }

    fn tree() -> impl Strategy<Value = Vec<(Vec<Vec<u8>>, usize)>> {
        proptest::collection::vec(
            (proptest::collection::vec(component(), 1..4), 0usize..3000),
            1..40,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn ordered_is_sorted_and_the_same_as_unordered(files in tree()) {
            let tmp = tempfile::tempdir().unwrap();
            for (components, size) in &files {
                let rel = components.join(&b'/');
                let path = bytes_path(tmp.path(), &rel);
                // A name already taken by a file (or a directory) is
                // skipped: the tree is whatever could be made.
                if std::fs::create_dir_all(path.parent().unwrap()).is_ok() {
                    let _ = std::fs::write(&path, vec![1u8; *size]);
                }
            }
            let (ordered, ostats, _) = scan_tree(tmp.path(), true, 2, ScanControl::default());
            let (unordered, ustats, _) = scan_tree(tmp.path(), false, 2, ScanControl::default());
            assert_component_order(&ordered);
            prop_assert_eq!(ostats, ustats);
            prop_assert_eq!(canonical(ordered), canonical(unordered));
        }
    }
}
