//! Ordered delivery: with [`super::ScanControl::ordered`], a scan hands its
//! events to the caller in the walker's emission order (component order of
//! paths, see [`crate::manifest::paths::cmp_components`]), though files
//! are hashed in parallel and finish when they finish.
//!
//! The walker numbers everything it produces, in the order it produces
//! it: each event it sends and each file it queues. A hashing thread's one
//! result for a job carries the job's number (and a file that vanished
//! before it was opened sends "nothing", so no number is left open). The
//! caller's thread puts what arrives in a reorder buffer and hands events
//! out by number ([`Delivery`]).
//!
//! The buffer is bounded: the walker takes a number only while it is less
//! than [`super::ORDER_WINDOW`] ahead of the next one to be handed out,
//! and otherwise waits ([`Window`]), so a huge file being hashed holds back
//! at most that many events, never the rest of the tree. No deadlock: the
//! walker waits only for the caller's thread; that thread waits only for
//! numbers below the walker's next one, each already sent or queued when
//! it was taken; the hashing threads finish those without waiting for
//! either (they only send, and the caller's thread always receives: its
//! buffer has a place for every number the walker may take). The walker
//! checks for cancellation while it waits; cancelled hashing threads drop
//! their jobs unsent, and the caller's thread skips the numbers still
//! missing once every sender is gone.
//!
//! A thread that panics must not leave the others waiting forever (the
//! scope would then never return, nor the panic reach the caller): the
//! caller's thread gone (its [`Delivery`] dropped) or a hashing thread
//! panicking ([`AbandonOnPanic`]) abandons the window, and the walker
//! stops as if cancelled. Without `ordered` events are handed out as they
//! arrive: no buffer, no waiting.

use super::{ScanControl, ScanEvent};
use crossbeam_channel::Receiver;
use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// What the walker and the hashing threads send to the caller's thread.
#[derive(Debug)]
pub(super) struct Sent {
    /// The walker's number for it.
    pub seq: u64,
    /// `None`: the number yields no event (a queued file that vanished
    /// before it was opened); sent only in an ordered scan.
    pub ev: Option<ScanEvent>,
    /// Bytes hashed for it.
    pub bytes: u64,
}

/// How far the caller's thread has handed out, shared with the walker.
#[derive(Debug)]
pub(super) struct Window {
    size: u64,
    /// Every number below this one has been handed out (or was nothing).
    handed_out: AtomicU64,
    /// The walker is asleep in [`Window::admit`]: only then is a wake-up
    /// (a system call) worth making.
    waiting: AtomicBool,
    /// Nothing will be handed out any more (see [`Window::abandon`]).
    abandoned: AtomicBool,
    lock: Mutex<()>,
    moved: Condvar,
}

impl Window {
    pub fn new(size: u64) -> Arc<Window> {
        assert!(size > 0, "a window of 0 admits nothing");
        Arc::new(Window {
            size,
            handed_out: AtomicU64::new(0),
            waiting: AtomicBool::new(false),
            abandoned: AtomicBool::new(false),
            lock: Mutex::new(()),
            moved: Condvar::new(),
        })
    }

    fn fits(&self, seq: u64) -> bool {
        seq < self
            .handed_out
            .load(Ordering::SeqCst)
            .saturating_add(self.size)
    }

    /// Wait until `seq` is within the window; `false` if the scan is
    /// cancelled or the window abandoned meanwhile.
    fn admit(&self, seq: u64, control: &ScanControl) -> bool {
        if self.abandoned.load(Ordering::SeqCst) {
            return false;
        }
        if self.fits(seq) {
            return true;
        }
        let mut guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            // Announce the wait before looking again: the caller's thread
            // stores its progress before it looks at `waiting`, so one of
            // the two sees the other (and the timeout covers the rest).
            self.waiting.store(true, Ordering::SeqCst);
            if self.fits(seq) {
                self.waiting.store(false, Ordering::SeqCst);
                return true;
            }
            if control.cancelled() || self.abandoned.load(Ordering::SeqCst) {
                self.waiting.store(false, Ordering::SeqCst);
                return false;
            }
            guard = self
                .moved
                .wait_timeout(guard, Duration::from_millis(50))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Every number below `next` has been handed out.
    fn advance(&self, next: u64) {
        self.handed_out.store(next, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) {
            // Taking the lock means the walker is inside `wait_timeout`
            // (or has not yet looked again): the wake-up is not lost.
            let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.moved.notify_one();
        }
    }

    /// Nothing more will be handed out (the caller's thread is gone, or a
    /// hashing thread panicked and its number will never come): a walker
    /// waiting for room stops waiting, and takes no more numbers.
    pub fn abandon(&self) {
        self.abandoned.store(true, Ordering::SeqCst);
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.moved.notify_one();
    }
}

/// Abandons the window if the thread holding it panics.
#[derive(Debug)]
pub(super) struct AbandonOnPanic(pub Option<Arc<Window>>);

impl Drop for AbandonOnPanic {
    fn drop(&mut self) {
        if let (Some(w), true) = (&self.0, std::thread::panicking()) {
            w.abandon();
        }
    }
}

/// The walker's numbering; in an ordered scan each number waits for room
/// in the [`Window`].
#[derive(Debug)]
pub(super) struct Numbering {
    next: Cell<u64>,
    window: Option<Arc<Window>>,
    /// A number was refused: the scan is stopping.
    refused: Cell<bool>,
}

impl Numbering {
    pub fn new(window: Option<Arc<Window>>) -> Numbering {
        Numbering {
            next: Cell::new(0),
            window,
            refused: Cell::new(false),
        }
    }

    /// The next number, once it is within the window; `None` if the scan
    /// was cancelled or the window abandoned while waiting (the number is
    /// not used: the next call may return it).
    pub fn take(&self, control: &ScanControl) -> Option<u64> {
        let seq = self.next.get();
        if let Some(w) = &self.window {
            if !w.admit(seq, control) {
                self.refused.set(true);
                return None;
            }
        }
        self.next.set(seq + 1);
        Some(seq)
    }

    /// A number was refused: whatever the walker produces now is dropped,
    /// so it should stop.
    pub fn refused(&self) -> bool {
        self.refused.get()
    }
}

/// One number in the reorder buffer.
#[derive(Debug)]
enum Slot {
    /// Not arrived yet.
    Awaited,
    /// Arrived, with no event.
    Nothing,
    Event(ScanEvent, u64),
}

/// The events of a scan, with the bytes hashed for each, on the caller's
/// thread: as they arrive, or, with a [`Window`], by number. It owns the
/// receiving end: once it is dropped (the caller's thread done, or
/// unwinding) every send fails and the window is abandoned, so no other
/// thread waits for it.
#[derive(Debug)]
pub(super) struct Delivery<'a> {
    rx: Receiver<Sent>,
    window: Option<&'a Window>,
    /// `pending[i]` is number `next + i`; never longer than the window.
    pending: VecDeque<Slot>,
    next: u64,
    /// Every sender is gone: what is still awaited never comes (only a
    /// cancelled scan leaves such gaps; they are skipped).
    closed: bool,
    /// The longest `pending` has been.
    #[cfg(test)]
    peak: usize,
}

impl<'a> Delivery<'a> {
    pub fn new(rx: Receiver<Sent>, window: Option<&'a Window>) -> Delivery<'a> {
        Delivery {
            rx,
            window,
            pending: VecDeque::new(),
            next: 0,
            closed: false,
            #[cfg(test)]
            peak: 0,
        }
    }

    fn place(&mut self, sent: Sent) {
        let i = usize::try_from(sent.seq - self.next).expect("within the window");
        if i >= self.pending.len() {
            self.pending.resize_with(i + 1, || Slot::Awaited);
        }
        debug_assert!(matches!(self.pending[i], Slot::Awaited), "numbered twice");
        self.pending[i] = match sent.ev {
            Some(ev) => Slot::Event(ev, sent.bytes),
            None => Slot::Nothing,
        };
        #[cfg(test)]
        {
            self.peak = self.peak.max(self.pending.len());
        }
    }
}

impl Iterator for Delivery<'_> {
    type Item = (ScanEvent, u64);

    fn next(&mut self) -> Option<(ScanEvent, u64)> {
        let Some(window) = self.window else {
            return self.rx.iter().find_map(|s| s.ev.map(|ev| (ev, s.bytes)));
        };
        loop {
            match self.pending.front() {
                Some(Slot::Awaited) | None if !self.closed => {
                    match self.rx.recv() {
                        Ok(sent) => self.place(sent),
                        Err(_) => self.closed = true,
                    }
                    continue;
                }
                None => return None,
                Some(_) => {}
            }
            let slot = self.pending.pop_front().expect("a front slot");
            self.next += 1;
            window.advance(self.next);
            if let Slot::Event(ev, bytes) = slot {
                return Some((ev, bytes));
            }
        }
    }
}

#[cfg(test)]
thread_local! {
    /// The longest the reorder buffer of the last scan on this thread has
    /// been (0 for an unordered scan), for tests.
    pub(super) static LAST_PEAK: Cell<usize> = const { Cell::new(0) };
}

impl Drop for Delivery<'_> {
    fn drop(&mut self) {
        if let Some(w) = self.window {
            w.abandon();
        }
        #[cfg(test)]
        LAST_PEAK.with(|p| p.set(self.peak));
    }
}
