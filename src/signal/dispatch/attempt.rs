//! One delivery attempt on one backend, and the backoff between attempts.

use super::super::outbox::{Item, Outbox};
use super::super::Configured;
use crate::clock::Clock;
use crate::telemetry::metrics::SignalMetrics;
use std::sync::Arc;
use std::time::Duration;
use tracing::{error, info, warn};

/// The delay before attempt `attempts + 1`: `initial * 2^(attempts-1)`,
/// capped at `max`, scaled by `0.5 + fraction / 2`.
pub fn backoff(attempts: u32, initial: Duration, max: Duration, fraction: f64) -> Duration {
    let exp = 2f64.powi(attempts.saturating_sub(1).min(30) as i32);
    let base = initial.mul_f64(exp).min(max);
    base.mul_f64(0.5 + fraction.clamp(0.0, 1.0) / 2.0)
}

/// What an attempt needs besides the item.
#[derive(Clone)]
pub struct Ctx {
    pub outbox: Outbox,
    pub metrics: SignalMetrics,
    pub clock: Arc<dyn Clock>,
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

/// One attempt; returns the item to retry, if it failed.
pub async fn attempt(c: Arc<Configured>, ctx: Ctx, mut item: Item) -> Option<Item> {
    let name = c.backend.name();
    let m = &ctx.metrics;
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
        if let Err(e) = ctx.outbox.dry_run_done(&item) {
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
            m.delivered(name, ctx.clock.unix());
            if let Err(e) = ctx.outbox.delivered(&item, &response) {
                error!(backend = name, error = %e, "cannot record the delivery");
            }
            None
        }
        Err(reason) => {
            let delay = backoff(
                item.attempts,
                ctx.retry_initial,
                ctx.retry_max,
                ctx.clock.random(),
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
            item.next_attempt_unix = ctx.clock.unix() + delay.as_secs_f64();
            if let Err(e) = ctx.outbox.save(&item) {
                error!(backend = name, error = %e, "cannot persist the retry");
            }
            Some(item)
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
