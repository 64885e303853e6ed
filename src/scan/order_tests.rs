//! Tests of ordered delivery: the reorder buffer and the window on their
//! own, then ordered scans of real trees (component order, the same events
//! as an unordered scan, the buffer's bound, cancellation, vanished files).

use super::order::{AbandonOnPanic, Delivery, Numbering, Sent, Window, LAST_PEAK};
use super::*;
use crate::manifest::paths::cmp_components;
use crate::policy::{CompiledPolicy, Policy};
use std::cmp::Ordering as CmpOrdering;
use std::ffi::OsStr;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- helpers

/// A distinct event for number `i`.
fn ev(i: u64) -> ScanEvent {
    unreadable(
        format!("/e{i}").as_bytes(),
        UnreadableKind::Other,
        String::new(),
        Unchecked::Path,
    )
}

fn sent(seq: u64, event: bool) -> Sent {
    Sent {
        seq,
        ev: event.then(|| ev(seq)),
        bytes: seq,
    }
}

/// A control whose cancel flag is already set: `Numbering::take` then
/// never waits, and says whether the number fits the window.
fn cancelled() -> ScanControl {
    ScanControl {
        cancel: Some(Arc::new(AtomicBool::new(true))),
        ..ScanControl::default()
    }
}

/// Run `f` on a thread and wait for it at most `limit`: a deadlock fails
/// the test instead of hanging it (the stuck thread is left behind).
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|e| panic!("not done within {limit:?} ({e}): a deadlock?"))
}

fn path_of(ev: &ScanEvent) -> &[u8] {
    match ev {
        ScanEvent::Entry { entry, .. } | ScanEvent::Partial { entry, .. } => &entry.path,
        ScanEvent::Unreadable { path, .. } => path,
    }
}

fn bytes_path(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(OsStr::from_bytes(rel))
}

/// A scan of `root` with `control` (its `ordered` as given): the events in
/// the order the sink saw them, the counters, and the reorder buffer's peak.
fn scan_tree(
    root: &Path,
    ordered: bool,
    threads: usize,
    control: ScanControl,
) -> (Vec<ScanEvent>, ScanStats, usize) {
    let policy = CompiledPolicy::new(Policy::default(), "policy").unwrap();
    let opts = ScanOptions {
        root,
        policy: &policy,
        threads,
    };
    let control = ScanControl { ordered, ..control };
    let mut out = Vec::new();
    let stats = scan_with(&opts, &control, &mut |ev| out.push(ev)).unwrap();
    (out, stats, LAST_PEAK.with(|p| p.get()))
}

fn assert_component_order(evs: &[ScanEvent]) {
    for w in evs.windows(2) {
        assert_ne!(
            cmp_components(path_of(&w[0]), path_of(&w[1])),
            CmpOrdering::Greater,
            "{:?} before {:?}",
            String::from_utf8_lossy(path_of(&w[0])),
            String::from_utf8_lossy(path_of(&w[1])),
        );
    }
}

/// Events in one canonical order, to compare two scans as multisets.
fn canonical(mut evs: Vec<ScanEvent>) -> Vec<ScanEvent> {
    evs.sort_by_cached_key(|e| (path_of(e).to_vec(), format!("{e:?}")));
    evs
}

// ---------------------------------------------------------------- the reorder buffer

#[test]
fn out_of_order_arrivals_are_handed_out_in_order() {
    let window = Window::new(8);
    let (tx, rx) = crossbeam_channel::unbounded();
    for seq in [3, 1, 5, 0, 2, 4] {
        tx.send(sent(seq, true)).unwrap();
    }
    drop(tx);
    let got: Vec<_> = Delivery::new(rx, Some(&window)).collect();
    let want: Vec<_> = (0..6).map(|i| (ev(i), i)).collect();
    assert_eq!(got, want);
    assert_eq!(
        LAST_PEAK.with(|p| p.get()),
        6,
        "all six waited for number 0"
    );
}

#[test]
fn numbers_with_nothing_are_skipped_and_still_move_the_window() {
    let window = Window::new(4);
    let (tx, rx) = crossbeam_channel::unbounded();
    for (seq, event) in [(2, false), (1, true), (0, false), (3, true)] {
        tx.send(sent(seq, event)).unwrap();
    }
    drop(tx);
    // Kept alive: a dropped Delivery abandons the window.
    let mut delivery = Delivery::new(rx, Some(&window));
    let got: Vec<_> = delivery.by_ref().map(|(e, _)| e).collect();
    assert_eq!(got, vec![ev(1), ev(3)]);
    // 0..4 are handed out: numbers up to 7 fit, 8 does not.
    let numbering = Numbering::new(Some(window.clone()));
    let control = cancelled();
    let taken: Vec<_> = (0..9).map(|_| numbering.take(&control)).collect();
    assert_eq!(taken[7], Some(7));
    assert_eq!(taken[8], None);
}

#[test]
fn gaps_left_when_every_sender_is_gone_are_skipped() {
    // A cancelled scan: numbers 1 and 3 never come.
    let window = Window::new(8);
    let (tx, rx) = crossbeam_channel::unbounded();
    let events = within(Duration::from_secs(30), move || {
        let producer = std::thread::spawn(move || {
            for seq in [4, 2, 0] {
                tx.send(sent(seq, true)).unwrap();
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let got: Vec<_> = Delivery::new(rx, Some(&window)).map(|(e, _)| e).collect();
        producer.join().unwrap();
        got
    });
    assert_eq!(events, vec![ev(0), ev(2), ev(4)]);
}

#[test]
fn unordered_delivery_hands_out_as_things_arrive_and_drops_nothing() {
    let (tx, rx) = crossbeam_channel::unbounded();
    for (seq, event) in [(3, true), (9, false), (1, true)] {
        tx.send(sent(seq, event)).unwrap();
    }
    drop(tx);
    let got: Vec<_> = Delivery::new(rx, None).map(|(e, _)| e).collect();
    assert_eq!(got, vec![ev(3), ev(1)]);
    assert_eq!(LAST_PEAK.with(|p| p.get()), 0, "no buffer");
}

// ---------------------------------------------------------------- the window

#[test]
fn the_walker_takes_numbers_only_within_the_window() {
    let window = Window::new(4);
    let numbering = Numbering::new(Some(window.clone()));
    let control = cancelled();
    let taken: Vec<_> = (0..6).map(|_| numbering.take(&control)).collect();
    assert_eq!(
        taken,
        [Some(0), Some(1), Some(2), Some(3), None, None],
        "4 numbers ahead of the last handed out, no more"
    );
    assert!(numbering.refused());
    // Number 0 handed out: one more fits.
    let (tx, rx) = crossbeam_channel::unbounded();
    tx.send(sent(0, true)).unwrap();
    let mut delivery = Delivery::new(rx, Some(&window));
    assert_eq!(delivery.next(), Some((ev(0), 0)));
    assert_eq!(numbering.take(&control), Some(4));
    assert_eq!(numbering.take(&control), None);
}

/// One number held back ("a huge file"): the walker takes numbers until
/// the window is full and then waits; the buffer holds exactly the window,
/// and everything comes out in order once the held number arrives.
#[test]
fn the_reorder_buffer_fills_to_the_window_and_the_walker_waits() {
    let size = ORDER_WINDOW;
    let total = 2 * size;
    let window = Window::new(size);
    let (tx, rx) = crossbeam_channel::unbounded();
    let taken = Arc::new(AtomicU64::new(0));
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let held_tx = tx.clone();
    let held = std::thread::spawn(move || {
        if release_rx.recv().is_ok() {
            held_tx.send(sent(1, true)).unwrap();
        }
    });
    let (w, t) = (window.clone(), taken.clone());
    let walker = std::thread::spawn(move || {
        let numbering = Numbering::new(Some(w));
        let control = ScanControl::default();
        for _ in 0..total {
            let seq = numbering.take(&control).unwrap();
            t.store(seq + 1, Ordering::SeqCst);
            if seq != 1 {
                tx.send(sent(seq, true)).unwrap();
            }
        }
    });
    let consumer = std::thread::spawn(move || {
        let out: Vec<_> = Delivery::new(rx, Some(&window)).map(|(e, _)| e).collect();
        (out, LAST_PEAK.with(|p| p.get()))
    });
    // Number 0 handed out, number 1 held: numbers up to `size` fit.
    let deadline = Instant::now() + Duration::from_secs(60);
    while taken.load(Ordering::SeqCst) < size + 1 {
        assert!(
            Instant::now() < deadline,
            "the walker never filled the window"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(taken.load(Ordering::SeqCst), size + 1, "the walker waits");
    release_tx.send(()).unwrap();
    let (out, peak) = within(Duration::from_secs(60), move || {
        walker.join().unwrap();
        held.join().unwrap();
        consumer.join().unwrap()
    });
    assert_eq!(out, (0..total).map(ev).collect::<Vec<_>>());
    assert_eq!(peak, size as usize, "numbers 1..=size waited for number 1");
}

#[test]
fn a_waiting_walker_is_woken_when_the_caller_hands_out() {
    let window = Window::new(2);
    let (tx, rx) = crossbeam_channel::unbounded();
    let w = window.clone();
    let walker = std::thread::spawn(move || {
        let numbering = Numbering::new(Some(w));
        let control = ScanControl::default();
        let mut got = Vec::new();
        for _ in 0..6 {
            let seq = numbering.take(&control).unwrap();
            got.push(seq);
            tx.send(sent(seq, true)).unwrap();
        }
        got
    });
    let events = within(Duration::from_secs(30), move || {
        let out: Vec<_> = Delivery::new(rx, Some(&window)).map(|(e, _)| e).collect();
        (out, walker.join().unwrap())
    });
    assert_eq!(events.0, (0..6).map(ev).collect::<Vec<_>>());
    assert_eq!(events.1, (0..6).collect::<Vec<_>>());
}

#[test]
fn a_walker_waiting_for_the_window_sees_cancellation() {
    let window = Window::new(2);
    let cancel = Arc::new(AtomicBool::new(false));
    let control = ScanControl {
        cancel: Some(cancel.clone()),
        ..ScanControl::default()
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let numbering = Numbering::new(Some(window));
        numbering.take(&control).unwrap();
        numbering.take(&control).unwrap();
        // Nothing is ever handed out: only the cancel ends this wait.
        let _ = tx.send(numbering.take(&control));
    });
    std::thread::sleep(Duration::from_millis(100));
    assert!(rx.try_recv().is_err(), "number 2 must wait");
    cancel.store(true, Ordering::SeqCst);
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(None));
}

#[test]
fn a_walker_waiting_for_the_window_stops_when_the_caller_is_gone() {
    // The sink panicked: the caller's Delivery is dropped while unwinding.
    let window = Window::new(1);
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
    let (tx, rx) = mpsc::channel();
    let w = window.clone();
    std::thread::spawn(move || {
        let numbering = Numbering::new(Some(w));
        let control = ScanControl::default();
        numbering.take(&control).unwrap();
        let _ = tx.send(numbering.take(&control));
    });
    std::thread::sleep(Duration::from_millis(100));
    drop(Delivery::new(ev_rx, Some(&window)));
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(None));
    assert!(ev_tx.send(sent(0, true)).is_err(), "nobody receives");
}

#[test]
fn a_hashing_thread_that_panics_abandons_the_window() {
    let window = Window::new(1);
    let (tx, rx) = mpsc::channel();
    let w = window.clone();
    std::thread::spawn(move || {
        let numbering = Numbering::new(Some(w));
        let control = ScanControl::default();
        numbering.take(&control).unwrap();
        let _ = tx.send(numbering.take(&control));
    });
    let guard = AbandonOnPanic(Some(window.clone()));
    let hasher = std::thread::spawn(move || {
        let _guard = guard;
        panic!("a bug in a hashing thread (expected by this test)");
    });
    assert!(hasher.join().is_err());
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(None));
    // Dropped without a panic, it abandons nothing.
    let window = Window::new(1);
    drop(AbandonOnPanic(Some(window.clone())));
    assert_eq!(Numbering::new(Some(window)).take(&cancelled()), Some(0));
}

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
