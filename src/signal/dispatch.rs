//! Delivering signals: the outbox drained with retries.
//!
//! Retries back off exponentially from `retry_initial` up to `retry_max`,
//! each delay randomised to between half and all of its value, so hosts
//! that failed together do not retry together. What was delivered (or,
//! on a dry-run backend, shown) is never queued again; a pending file a
//! crash left beside its marker is removed, logged, not sent. Delivery is at
//! least once: see [`super::outbox`].

use super::outbox::{Item, Outbox};
use super::{Configured, Signal};
use crate::clock::{now_unix, random_fraction};
use crate::telemetry::metrics::SignalMetrics;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

/// The delay before attempt `attempts + 1`: `initial * 2^(attempts-1)`,
/// capped at `max`, scaled by `0.5 + fraction / 2`.
pub fn backoff(attempts: u32, initial: Duration, max: Duration, fraction: f64) -> Duration {
    let exp = 2f64.powi(attempts.saturating_sub(1).min(30) as i32);
    let base = initial.mul_f64(exp).min(max);
    base.mul_f64(0.5 + fraction.clamp(0.0, 1.0) / 2.0)
}

/// Settings of the dispatcher.
pub struct Dispatcher {
    pub backends: Vec<Configured>,
    pub outbox: Outbox,
    pub metrics: SignalMetrics,
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

impl Dispatcher {
    /// Start delivering; signals sent to the returned channel are queued
    /// for every backend (unless already delivered or pending).
    pub fn spawn(self) -> mpsc::UnboundedSender<Signal> {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(Arc::new(self).run(rx));
        tx
    }

    fn set_pending(&self, items: &[Item]) {
        for c in &self.backends {
            let n = items
                .iter()
                .filter(|i| i.backend == c.backend.name())
                .count();
            self.metrics.pending(c.backend.name(), n);
        }
    }

    async fn run(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Signal>) {
        let loaded = self.outbox.load();
        for e in loaded.errors {
            error!(error = %e, "outbox item cannot be read; left on disk");
        }
        for note in loaded.recovered {
            warn!(outbox = %note, "outbox recovered after a crash");
        }
        let mut items = loaded.items;
        // Items for backends no longer configured stay on disk, untouched.
        items.retain(|i| self.backends.iter().any(|c| c.backend.name() == i.backend));
        // A pending item beside its dry-run marker (a crash in an older
        // version between the two) was shown already.
        items.retain(|i| !self.already_done(&i.backend, &i.signal.idempotency_key));
        if !items.is_empty() {
            info!(pending = items.len(), "resuming undelivered signals");
        }
        self.set_pending(&items);
        loop {
            let next = items
                .iter()
                .map(|i| i.next_attempt_unix)
                .fold(f64::INFINITY, f64::min);
            let wait = if next.is_finite() {
                Duration::from_secs_f64((next - now_unix()).max(0.0))
            } else {
                Duration::from_secs(86_400)
            };
            tokio::select! {
                sig = rx.recv() => match sig {
                    Some(sig) => self.enqueue(sig, &mut items),
                    None => return,
                },
                _ = tokio::time::sleep(wait) => {}
            }
            // Due attempts run concurrently: a backend that hangs until its
            // timeout does not hold the others back.
            let now = now_unix();
            let (due, later): (Vec<Item>, Vec<Item>) =
                items.drain(..).partition(|i| i.next_attempt_unix <= now);
            items = later;
            let mut set = tokio::task::JoinSet::new();
            for item in due {
                let me = self.clone();
                set.spawn(async move { me.attempt(item).await });
            }
            while let Some(done) = set.join_next().await {
                if let Ok(Some(again)) = done {
                    items.push(again);
                }
            }
            self.set_pending(&items);
        }
    }

    /// Was this signal delivered (or, for a dry-run backend, shown) on
    /// `backend`? A pending file still beside the marker is a crash's
    /// leftover: removed (and logged), never sent.
    fn already_done(&self, backend: &str, key: &str) -> bool {
        let Some(c) = self.backends.iter().find(|c| c.backend.name() == backend) else {
            return false;
        };
        // A dry run is recorded apart from real deliveries: switching
        // dry_run off later still sends the episode for real.
        let done = if c.dry_run {
            self.outbox.is_dry_run_done(backend, key)
        } else {
            self.outbox.is_delivered(backend, key)
        };
        if done && self.outbox.is_pending(backend, key) {
            match self.outbox.discard(backend, key) {
                Ok(()) => warn!(
                    backend,
                    key, "a pending signal beside its marker (a crash) removed, not sent again"
                ),
                Err(e) => error!(backend, error = %e, "cannot remove a stale pending signal"),
            }
        }
        done
    }

    fn enqueue(&self, sig: Signal, items: &mut Vec<Item>) {
        for c in &self.backends {
            let name = c.backend.name();
            let key = &sig.idempotency_key;
            if self.already_done(name, key)
                || items
                    .iter()
                    .any(|i| i.backend == name && &i.signal.idempotency_key == key)
            {
                continue; // once done, never sent again for this backend
            }
            let item = Item {
                backend: name.to_string(),
                signal: sig.clone(),
                attempts: 0,
                next_attempt_unix: now_unix(),
                last_error: None,
            };
            // Durable before the first attempt: a crash now still sends.
            if let Err(e) = self.outbox.save(&item) {
                error!(backend = name, error = %e, "cannot persist the signal; sending anyway");
            }
            items.push(item);
        }
        self.set_pending(items);
    }

    /// One attempt; returns the item to retry, if it failed.
    async fn attempt(&self, mut item: Item) -> Option<Item> {
        let c = self
            .backends
            .iter()
            .find(|c| c.backend.name() == item.backend)?;
        let name = c.backend.name();
        let m = &self.metrics;
        item.attempts = item.attempts.saturating_add(1);
        let key = item.signal.idempotency_key.clone();
        if c.dry_run {
            info!(
                backend = name,
                kind = c.backend.kind(),
                key = %key,
                event = %item.signal.event,
                "dry run: would signal the control plane; nothing sent"
            );
            m.request(name, "dry_run");
            if let Err(e) = self.outbox.dry_run_done(&item) {
                error!(backend = name, error = %e, "cannot record the dry-run signal");
            }
            return None;
        }
        match c.backend.send(&item.signal).await {
            Ok(response) => {
                info!(
                    backend = name,
                    kind = c.backend.kind(),
                    key = %key,
                    event = %item.signal.event,
                    attempts = item.attempts,
                    response = %response,
                    "signal delivered"
                );
                m.request(name, "success");
                m.delivered(name, now_unix());
                if let Err(e) = self.outbox.delivered(&item, &response) {
                    error!(backend = name, error = %e, "cannot record the delivery");
                }
                None
            }
            Err(reason) => {
                let delay = backoff(
                    item.attempts,
                    self.retry_initial,
                    self.retry_max,
                    random_fraction(),
                );
                warn!(
                    backend = name,
                    kind = c.backend.kind(),
                    key = %key,
                    attempts = item.attempts,
                    error = %reason,
                    retry_in_seconds = delay.as_secs_f64(),
                    "signal failed; will retry"
                );
                m.request(name, "failure");
                item.last_error = Some(reason);
                item.next_attempt_unix = now_unix() + delay.as_secs_f64();
                if let Err(e) = self.outbox.save(&item) {
                    error!(backend = name, error = %e, "cannot persist the retry");
                }
                Some(item)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let (i, m) = (Duration::from_secs(5), Duration::from_secs(600));
        assert_eq!(backoff(1, i, m, 1.0), Duration::from_secs(5));
        assert_eq!(backoff(1, i, m, 0.0), Duration::from_millis(2500));
        assert_eq!(backoff(2, i, m, 1.0), Duration::from_secs(10));
        assert_eq!(backoff(4, i, m, 1.0), Duration::from_secs(40));
        assert_eq!(backoff(20, i, m, 1.0), m, "capped");
        assert_eq!(backoff(u32::MAX, i, m, 0.0), m / 2, "no overflow");
    }
}
