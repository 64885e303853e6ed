//! Read-rate pacing shared by all hashing threads, so a full scan never
//! saturates a production host's disks.
//!
//! The hashing threads charge every read to one [`Pacer`] with the bytes it
//! actually returned (a small file costs its size, not a whole buffer), and
//! sleep when they run ahead of the budget.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Paces reads to at most `bytes_per_second`, shared by all hashing
/// threads, so a full scan never saturates a production host's disks.
#[derive(Debug)]
pub struct Pacer {
    bytes_per_second: f64,
    /// Every byte accounted for so far.
    charged: AtomicU64,
    /// (when the budget was last refilled, bytes that may still be read)
    state: Mutex<(Instant, f64)>,
}

impl Pacer {
    pub fn new(bytes_per_second: u64) -> Pacer {
        Pacer {
            bytes_per_second: bytes_per_second.max(1) as f64,
            charged: AtomicU64::new(0),
            state: Mutex::new((Instant::now(), 0.0)),
        }
    }

    /// Account for `bytes` about to be read, sleeping as long as needed.
    /// A burst of at most a quarter second's worth is allowed.
    pub fn pace(&self, bytes: u64) {
        self.charged.fetch_add(bytes, Ordering::Relaxed);
        let wait = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let refill = now.duration_since(st.0).as_secs_f64() * self.bytes_per_second;
            st.0 = now;
            st.1 = (st.1 + refill).min(self.bytes_per_second / 4.0) - bytes as f64;
            if st.1 < 0.0 {
                Duration::from_secs_f64(-st.1 / self.bytes_per_second)
            } else {
                Duration::ZERO
            }
        };
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }

    /// Bytes accounted for so far.
    pub fn charged(&self) -> u64 {
        self.charged.load(Ordering::Relaxed)
    }
}
