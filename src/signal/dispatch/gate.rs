//! The dispatcher's side of the guard: carrying out the guard's decisions
//! on the outbox items (release, drop), running its looks, and showing its
//! state (`driftd_signal_held`, the `driftd_guard_*` gauges, `/status`,
//! one log line per change).

use super::Dispatcher;
use crate::signal::guard::machine::{Episode, Judged, Outcome};
use crate::signal::guard::{GuardAction, GuardReport, Phase};
use crate::telemetry::status::{GuardAnswer, GuardSignal, GuardStatus};
use crate::verdict::SignalEvent;
use tracing::{debug, error, info, warn};

fn shown(j: &Judged, event: SignalEvent) -> GuardAnswer {
    let (hosts, drifted, limit, error) = match &j.outcome {
        Outcome::Within {
            hosts,
            drifted,
            limit,
        }
        | Outcome::Over {
            hosts,
            drifted,
            limit,
        } => (Some(*hosts), Some(*drifted), Some(*limit), None),
        Outcome::Failed(e) => (None, None, None, Some(e.clone())),
    };
    GuardAnswer {
        at: crate::clock::rfc3339(j.at_unix),
        at_unix: j.at_unix,
        event: event.label().to_string(),
        hosts,
        drifted,
        limit,
        error,
    }
}

impl Dispatcher {
    /// Carry out what the guard decided.
    pub(super) fn guard_actions(&mut self) {
        while let Some(a) = self.guard.poll_action() {
            match a {
                GuardAction::Look { key, request } => match &self.query {
                    Some(q) => {
                        let q = q.clone();
                        debug!(key = %key, digest = %request.digest, "the guard asks Prometheus");
                        self.looks.spawn(async move {
                            let answer = q.look(&request).await;
                            (key, answer)
                        });
                    }
                    None => self
                        .guard
                        .handle_answer(&key, Err("no guard configured".into())),
                },
                GuardAction::Release { key } => self.mark_released(&key),
                GuardAction::Drop { key, digest, now } => self.drop_held(&key, &digest, &now),
                GuardAction::Report(r) => report(&r),
            }
        }
    }

    /// Record the release in every waiting guarded item of the episode
    /// before any of them is sent (so a restart keeps the decision).
    pub(super) fn mark_released(&mut self, key: &str) {
        let now = self.ctx.clock.unix();
        let gated: Vec<usize> = (0..self.items.len())
            .filter(|&n| self.items[n].signal.idempotency_key == key && self.gated(&self.items[n]))
            .collect();
        for n in gated {
            let item = &mut self.items[n];
            if item.released_unix.is_none() {
                item.released_unix = Some(now);
                if let Err(e) = self.ctx.outbox.save(item) {
                    error!(backend = %item.backend, error = %e, "cannot record the guard's release");
                }
            }
        }
    }

    /// A held episode whose manifest was replaced: its guarded items are
    /// ended as dropped, never sent.
    fn drop_held(&mut self, key: &str, digest: &str, now: &str) {
        let why = format!("dropped by the guard: manifest {digest} replaced by {now}");
        let (drop, keep): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.items).into_iter().partition(|i| {
                i.signal.idempotency_key == key && self.gated(i) && i.released_unix.is_none()
            });
        self.items = keep;
        for item in &drop {
            if let Err(e) = self.ctx.outbox.dropped(item, &why) {
                error!(backend = %item.backend, error = %e, "cannot record the dropped signal");
            }
        }
        self.ctx.metrics.guard_dropped.inc();
        let backends: Vec<&str> = drop.iter().map(|i| i.backend.as_str()).collect();
        warn!(
            key,
            digest,
            now,
            ?backends,
            "a held signal was dropped: its manifest was replaced (a new image)"
        );
    }

    /// A look's answer (an error is counted).
    pub(super) fn look_done(
        &mut self,
        key: &str,
        answer: Result<crate::signal::guard::query::Answer, String>,
    ) {
        match &answer {
            Ok(a) => debug!(
                key,
                hosts = a.hosts,
                drifted = a.drifted,
                unknown = a.unknown,
                "the guard's look"
            ),
            Err(e) => {
                self.ctx.metrics.guard_errors.inc();
                debug!(key, error = %e, "the guard's look failed");
            }
        }
        self.guard.handle_answer(key, answer);
    }

    /// The outbox items (waiting or under way) of an episode on guarded
    /// backends.
    fn guarded_backends(&self, key: &str) -> Vec<String> {
        let on = self.guard.enabled();
        let mut v: Vec<String> = self
            .items
            .iter()
            .filter(|i| i.signal.idempotency_key == key)
            .map(|i| i.backend.clone())
            .chain(
                self.in_flight
                    .values()
                    .filter(|(_, k)| k == key)
                    .map(|(b, _)| b.clone()),
            )
            .filter(|b| self.backend(b).is_some_and(|c| c.guarded(on)))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Show the outbox and the guard: metrics and `/status`.
    pub(super) fn publish(&mut self) {
        let m = &self.ctx.metrics;
        for c in &self.backends {
            let name = c.backend.name();
            let pending = self.items.iter().filter(|i| i.backend == name).count()
                + self.in_flight.values().filter(|(b, _)| b == name).count();
            m.pending(name, pending);
            let held = self.items.iter().any(|i| {
                i.backend == name
                    && self.gated(i)
                    && !self.guard.is_released(&i.signal.idempotency_key)
            });
            m.held(name, held);
        }
        // Released episodes with nothing left to send are forgotten.
        let done: Vec<String> = self
            .guard
            .episodes()
            .filter(|e| e.phase == Phase::Released)
            .map(|e| e.key.clone())
            .filter(|k| self.guarded_backends(k).is_empty())
            .collect();
        for k in done {
            self.guard.forget(&k);
        }
        if !self.guard.take_changed() {
            return;
        }
        if let Some((j, _)) = self.guard.last() {
            if let Outcome::Within {
                hosts,
                drifted,
                limit,
            }
            | Outcome::Over {
                hosts,
                drifted,
                limit,
            } = j.outcome
            {
                m.guard_hosts.set(hosts as i64);
                m.guard_drifted.set(drifted as i64);
                m.guard_limit.set(limit as i64);
            }
        }
        let status = self.guard_info.as_ref().map(|g| {
            let signals: Vec<GuardSignal> = self
                .guard
                .episodes()
                .map(|e| self.signal_status(e))
                .collect();
            GuardStatus {
                prometheus_url: g.prometheus_url.clone(),
                max_drifted: g.max_drifted.clone(),
                on_error: g.on_error,
                held: signals.iter().any(|s| s.held),
                last_answer: self.guard.last().map(|(j, ev)| shown(j, *ev)),
                signals,
            }
        });
        m.set_guard_status(status);
    }

    fn signal_status(&self, e: &Episode) -> GuardSignal {
        GuardSignal {
            idempotency_key: e.key.clone(),
            event: e.event.label().to_string(),
            manifest_digest: e.digest.clone(),
            state: e.phase.label(),
            held: e.phase != Phase::Released,
            why: e.why.clone(),
            backends: self.guarded_backends(&e.key),
            last_answer: e.last.as_ref().map(|j| shown(j, e.event)),
            next_look: e.next_look_unix.map(crate::clock::rfc3339),
            next_look_unix: e.next_look_unix,
        }
    }
}

/// One log line per change of the guard's decision.
fn report(r: &GuardReport) {
    match r {
        GuardReport::Settling { key, event, wait } => info!(
            key = %key,
            event = event.label(),
            wait_seconds = wait.as_secs_f64(),
            "the guard waits for the fleet's metrics to settle before asking Prometheus; the signal waits in the outbox"
        ),
        GuardReport::Held { key, why } => {
            warn!(key = %key, why = %why, "the guard holds the signal")
        }
        GuardReport::Released { key, why } => {
            info!(key = %key, why = %why, "the guard released the signal")
        }
        GuardReport::Dropped { .. } => {} // logged with the backends by drop_held
    }
}
