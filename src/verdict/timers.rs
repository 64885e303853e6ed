//! The machine's timers, each a small value with the time passed in:
//! the debounce window of filesystem hints, exponential backoff for
//! retries, and the full-rescan schedule (interval plus fresh jitter).

use crate::manifest::paths::fold_subtrees;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::time::Instant;

/// Batches touched paths: the first hint opens a window of `delay`; when it
/// closes, everything touched in it is re-checked together. A path whose
/// ancestor is also touched is folded into the ancestor (a re-check covers
/// the subtree). Later hints never extend the window, so a steady stream of
/// events cannot postpone a re-check forever.
#[derive(Debug)]
pub struct Debouncer {
    delay: Duration,
    pending: BTreeSet<Box<[u8]>>,
    deadline: Option<Instant>,
}

impl Debouncer {
    pub fn new(delay: Duration) -> Debouncer {
        Debouncer {
            delay,
            pending: BTreeSet::new(),
            deadline: None,
        }
    }

    pub fn push(&mut self, paths: impl IntoIterator<Item = Box<[u8]>>, now: Instant) {
        self.pending.extend(paths);
        if self.deadline.is_none() && !self.pending.is_empty() {
            self.deadline = Some(now + self.delay);
        }
    }

    /// When the current window closes, if one is open.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Take the batch if its window has closed.
    pub fn take_due(&mut self, now: Instant) -> Option<Vec<Box<[u8]>>> {
        match self.deadline {
            Some(d) if now >= d => {
                self.deadline = None;
                let set = std::mem::take(&mut self.pending);
                Some(fold_subtrees(set.into_iter().collect()))
            }
            _ => None,
        }
    }

    /// Drop everything pending (a full rescan covers it).
    pub fn clear(&mut self) {
        self.pending.clear();
        self.deadline = None;
    }
}

/// Exponential backoff: `initial`, doubling after each failure, at most
/// `max`; a success starts over.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            failures: 0,
        }
    }

    /// One more failure: how long to wait before the next try.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.failures.min(30);
        self.failures = self.failures.saturating_add(1);
        self.initial
            .saturating_mul(2u32.saturating_pow(exp))
            .min(self.max)
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// When the next full rescan is due: the interval plus up to `jitter`.
pub fn next_full_scan_delay(interval: Duration, jitter: Duration, fraction: f64) -> Duration {
    interval + jitter.mul_f64(fraction.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Box<[u8]> {
        s.as_bytes().into()
    }

    #[tokio::test(start_paused = true)]
    async fn batches_within_the_window_and_folds_subtrees() {
        let mut d = Debouncer::new(Duration::from_millis(200));
        assert_eq!(d.deadline(), None);
        d.push([b("/etc/a/b")], Instant::now());
        let first = d.deadline().unwrap();
        tokio::time::advance(Duration::from_millis(150)).await;
        d.push([b("/etc/a"), b("/etc/a-b"), b("/usr/x")], Instant::now());
        assert_eq!(
            d.deadline(),
            Some(first),
            "later events do not extend the window"
        );
        assert_eq!(d.take_due(Instant::now()), None, "window still open");
        tokio::time::advance(Duration::from_millis(50)).await;
        assert_eq!(
            d.take_due(Instant::now()),
            Some(vec![b("/etc/a"), b("/etc/a-b"), b("/usr/x")])
        );
        assert_eq!(d.deadline(), None);
        assert_eq!(d.take_due(Instant::now()), None);
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_and_starts_over() {
        let mut b = Backoff::new(Duration::from_secs(5), Duration::from_secs(300));
        let delays: Vec<u64> = (0..9).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        for _ in 0..100 {
            b.next_delay();
        }
        assert_eq!(b.next_delay(), Duration::from_secs(300), "no overflow");
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(5));
    }

    #[test]
    fn jitter_spreads_within_bounds() {
        let i = Duration::from_secs(3600);
        let j = Duration::from_secs(600);
        assert_eq!(next_full_scan_delay(i, j, 0.0), i);
        assert_eq!(
            next_full_scan_delay(i, j, 0.5),
            i + Duration::from_secs(300)
        );
        assert!(next_full_scan_delay(i, j, 0.999_999) < i + j);
        assert_eq!(next_full_scan_delay(i, j, 7.0), i + j, "clamped");
    }
}
