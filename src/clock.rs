//! Time and chance, at the bottom of the house.
//!
//! Everything that asks "what time is it" or "give me some jitter" asks
//! here, so the decisions built on them can be driven by a test: the
//! verdict state machine takes a [`Clock`], and its tests use
//! [`ManualClock`] under tokio's paused time, where `advance` moves both
//! the monotonic and the wall clock. Wall time (Unix seconds) is what is
//! recorded and shown (first detection, episode starts); monotonic time is
//! what deadlines are measured in.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// Now, as Unix time in seconds.
pub fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A uniformly random fraction in [0, 1) from the OS (jitter must differ
/// between hosts, so no fixed seed).
pub fn random_fraction() -> f64 {
    let mut b = [0u8; 8];
    if getrandom::getrandom(&mut b).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// RFC 3339 (seconds, UTC) of a Unix time.
pub fn rfc3339(unix: f64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs_f64(unix.max(0.0)))
        .to_string()
}

/// Where time and jitter come from.
pub trait Clock: Send + Sync {
    /// Monotonic now (tokio's, so paused time in tests moves it).
    fn now(&self) -> Instant;
    /// Wall-clock now, Unix seconds.
    fn unix(&self) -> f64;
    /// A fraction in [0, 1) for jitter.
    fn random(&self) -> f64;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn unix(&self) -> f64 {
        now_unix()
    }
    fn random(&self) -> f64 {
        random_fraction()
    }
}

/// A clock for tests: wall time starts at `start_unix` and moves with
/// tokio's (paused) monotonic time; the jitter fractions come from a list,
/// round and round.
#[derive(Debug)]
pub struct ManualClock {
    origin: Instant,
    start_unix: f64,
    fractions: Vec<f64>,
    next: Mutex<usize>,
}

impl ManualClock {
    pub fn new(start_unix: f64, fractions: &[f64]) -> ManualClock {
        ManualClock {
            origin: Instant::now(),
            start_unix,
            fractions: if fractions.is_empty() {
                vec![0.0]
            } else {
                fractions.to_vec()
            },
            next: Mutex::new(0),
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn unix(&self) -> f64 {
        self.start_unix + (Instant::now() - self.origin).as_secs_f64()
    }
    fn random(&self) -> f64 {
        let mut i = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let f = self.fractions[*i % self.fractions.len()];
        *i += 1;
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_are_in_range_and_times_format() {
        let a = random_fraction();
        assert!((0.0..1.0).contains(&a));
        assert_eq!(rfc3339(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_671_191.58), "2026-11-26T05:33:11Z");
    }

    #[tokio::test(start_paused = true)]
    async fn the_manual_clock_moves_with_paused_time() {
        let c = ManualClock::new(1000.0, &[0.25, 0.75]);
        assert_eq!(c.unix(), 1000.0);
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(c.unix(), 1001.5);
        assert_eq!((c.random(), c.random(), c.random()), (0.25, 0.75, 0.25));
    }
}
