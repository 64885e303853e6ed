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
pub(super) fn ev(i: u64) -> ScanEvent {
    unreadable(
        format!("/e{i}").as_bytes(),
        UnreadableKind::Other,
        String::new(),
        Unchecked::Path,
    )
}

pub(super) fn sent(seq: u64, event: bool) -> Sent {
    Sent {
        seq,
        ev: event.then(|| ev(seq)),
        bytes: seq,
    }
}

/// A control whose cancel flag is already set: `Numbering::take` then
/// never waits, and says whether the number fits the window.
pub(super) fn cancelled() -> ScanControl {
    ScanControl {
        cancel: Some(Arc::new(AtomicBool::new(true))),
        ..ScanControl::default()
    }
}

/// Run `f` on a thread and wait for it at most `limit`: a deadlock fails
/// the test instead of hanging it (the stuck thread is left behind).
pub(super) fn within<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|e| panic!("not done within {limit:?} ({e}): a deadlock?"))
}

pub(super) fn path_of(ev: &ScanEvent) -> &[u8] {
    match ev {
        ScanEvent::Entry { entry, .. } | ScanEvent::Partial { entry, .. } => &entry.path,
        ScanEvent::Unreadable { path, .. } => path,
    }
}

pub(super) fn bytes_path(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(OsStr::from_bytes(rel))
}

/// A scan of `root` with `control` (its `ordered` as given): the events in
/// the order the sink saw them, the counters, and the reorder buffer's peak.
pub(super) fn scan_tree(
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

pub(super) fn assert_component_order(evs: &[ScanEvent]) {
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
pub(super) fn canonical(mut evs: Vec<ScanEvent>) -> Vec<ScanEvent> {
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
