//! Delivering signals: the outbox drained with retries, behind the guard.
//!
//! Retries back off exponentially from `retry_initial` up to `retry_max`,
//! each delay randomised to between half and all of its value, so hosts
//! that failed together do not retry together. What was delivered (or,
//! on a dry-run backend, shown, or dropped by the guard) is never queued
//! again; a pending file a crash left beside its marker is removed, logged,
//! not sent. Delivery is at least once: see [`super::outbox`].
//!
//! With a guard (`[signals.guard]`), the items of guarded backends wait in
//! the outbox until the guard ([`super::guard::GuardMachine`]) releases
//! their episode: one decision per episode for all of them. Backends with
//! `guard = false` and dry-run backends are not held. The dispatcher runs
//! the guard's looks concurrently with deliveries, and takes commands
//! ([`Command`]): a signal to queue, the manifest now in use (a held
//! signal of a replaced manifest is dropped), and new settings (a reload:
//! backends, retries, the guard).

mod attempt;
mod gate;
#[cfg(test)]
mod tests;

pub use attempt::backoff;

use super::guard::{FleetQuery, Guard, GuardMachine};
use super::outbox::{Item, Outbox};
use super::{Configured, Signal};
use crate::clock::Clock;
use crate::telemetry::metrics::SignalMetrics;
use crate::verdict::SignalEvent;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::{Id, JoinSet};
use tokio::time::Instant;
use tracing::{error, info, warn};

/// What the dispatcher runs with; replaced as a whole on a reload.
pub struct DispatchConfig {
    pub backends: Vec<Configured>,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// `None`: no guard, every signal goes out at once.
    pub guard: Option<Guard>,
}

/// What the agent tells the dispatcher.
pub enum Command {
    /// Queue this signal for every backend (unless done or queued).
    Signal(Box<Signal>),
    /// The manifest now in use (its digest).
    Manifest(String),
    /// New settings (a reload of the config).
    Reconfigure(Box<DispatchConfig>),
}

/// The outbox's deliverer.
pub struct Dispatcher {
    backends: Vec<Arc<Configured>>,
    ctx: attempt::Ctx,
    query: Option<Arc<dyn FleetQuery>>,
    guard_info: Option<Guard>,
    guard: GuardMachine,
    /// Items waiting (held, or until their next attempt).
    items: Vec<Item>,
    /// Attempts under way: (backend, key) by task.
    in_flight: HashMap<Id, (String, String)>,
    attempts: JoinSet<Option<Item>>,
    looks: JoinSet<(String, Result<super::guard::query::Answer, String>)>,
}

/// The event of a signal, from its label.
fn event_of(sig: &Signal) -> SignalEvent {
    SignalEvent::ALL
        .iter()
        .copied()
        .find(|e| e.label() == sig.event)
        .unwrap_or(SignalEvent::DriftDetected)
}

impl Dispatcher {
    /// A dispatcher for `host_id`, reading and writing `outbox`.
    pub fn new(
        cfg: DispatchConfig,
        outbox: Outbox,
        metrics: SignalMetrics,
        host_id: &str,
        clock: Arc<dyn Clock>,
    ) -> Dispatcher {
        let settings = cfg.guard.as_ref().map(|g| g.settings);
        Dispatcher {
            backends: cfg.backends.into_iter().map(Arc::new).collect(),
            ctx: attempt::Ctx {
                outbox,
                metrics,
                clock: clock.clone(),
                retry_initial: cfg.retry_initial,
                retry_max: cfg.retry_max,
            },
            query: cfg.guard.as_ref().map(|g| g.query.clone()),
            guard_info: cfg.guard,
            guard: GuardMachine::new(settings, host_id, clock),
            items: Vec::new(),
            in_flight: HashMap::new(),
            attempts: JoinSet::new(),
            looks: JoinSet::new(),
        }
    }

    /// Start delivering; commands go to the returned channel.
    pub fn spawn(self) -> mpsc::UnboundedSender<Command> {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(self.run(rx));
        tx
    }

    fn backend(&self, name: &str) -> Option<&Arc<Configured>> {
        self.backends.iter().find(|c| c.backend.name() == name)
    }

    /// Does the guard decide when this item goes?
    fn gated(&self, item: &Item) -> bool {
        let on = self.guard.enabled();
        self.backend(&item.backend).is_some_and(|c| c.guarded(on))
    }

    /// May this item be attempted (its backend configured, and not held)?
    fn sendable(&self, item: &Item) -> bool {
        self.backend(&item.backend).is_some()
            && (!self.gated(item) || self.guard.is_released(&item.signal.idempotency_key))
    }

    fn queued(&self, backend: &str, key: &str) -> bool {
        self.items
            .iter()
            .any(|i| i.backend == backend && i.signal.idempotency_key == key)
            || self
                .in_flight
                .values()
                .any(|(b, k)| b == backend && k == key)
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        self.load();
        enum Ev {
            Cmd(Option<Command>),
            Attempt(Box<Result<(Id, Option<Item>), tokio::task::JoinError>>),
            Look(
                Result<
                    (String, Result<super::guard::query::Answer, String>),
                    tokio::task::JoinError,
                >,
            ),
            Timer,
        }
        loop {
            self.step();
            let wake = self.next_wake();
            let ev = tokio::select! {
                cmd = rx.recv() => Ev::Cmd(cmd),
                Some(done) = self.attempts.join_next_with_id(), if !self.attempts.is_empty() => Ev::Attempt(Box::new(done)),
                Some(done) = self.looks.join_next(), if !self.looks.is_empty() => Ev::Look(done),
                _ = tokio::time::sleep_until(wake) => Ev::Timer,
            };
            match ev {
                Ev::Cmd(None) => return,
                Ev::Cmd(Some(c)) => self.command(c),
                Ev::Attempt(done) => {
                    let done = *done;
                    let id = match &done {
                        Ok((id, _)) => *id,
                        Err(e) => e.id(),
                    };
                    self.in_flight.remove(&id);
                    match done {
                        Ok((_, Some(again))) => self.items.push(again),
                        Ok((_, None)) => {}
                        // Still pending on disk: sent again after a restart.
                        Err(e) => error!(error = %e, "a signal attempt failed to run"),
                    }
                }
                Ev::Look(Ok((key, answer))) => self.look_done(&key, answer),
                Ev::Look(Err(e)) => error!(error = %e, "a guard look failed to run"),
                Ev::Timer => {}
            }
        }
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Signal(sig) => self.enqueue(*sig),
            Command::Manifest(digest) => self.guard.handle_manifest(&digest),
            Command::Reconfigure(cfg) => self.reconfigure(*cfg),
        }
    }

    /// Everything that is due: the guard's looks and decisions, then the
    /// attempts; then publish.
    fn step(&mut self) {
        self.guard.handle_timeout();
        self.guard_actions();
        let now = self.ctx.clock.unix();
        let (due, later): (Vec<Item>, Vec<Item>) = std::mem::take(&mut self.items)
            .into_iter()
            .partition(|i| i.next_attempt_unix <= now && self.sendable(i));
        self.items = later;
        // Due attempts run concurrently: a backend that hangs until its
        // timeout does not hold the others back.
        for item in due {
            let Some(c) = self.backend(&item.backend).cloned() else {
                continue;
            };
            let who = (item.backend.clone(), item.signal.idempotency_key.clone());
            let h = self
                .attempts
                .spawn(attempt::attempt(c, self.ctx.clone(), item));
            self.in_flight.insert(h.id(), who);
        }
        self.publish();
    }

    /// When the loop must wake next: the next attempt due, or the guard's
    /// next deadline.
    fn next_wake(&self) -> Instant {
        let clock = &self.ctx.clock;
        let (now, unix) = (clock.now(), clock.unix());
        let next_item = self
            .items
            .iter()
            .filter(|i| self.sendable(i))
            .map(|i| {
                now + Duration::from_secs_f64((i.next_attempt_unix - unix).clamp(0.0, 86_400.0))
            })
            .min();
        [next_item, self.guard.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now + Duration::from_secs(86_400))
    }

    /// Read the outbox at start: what is due goes out; a guarded item not
    /// yet released settles again before its first look.
    fn load(&mut self) {
        let loaded = self.ctx.outbox.load();
        for e in loaded.errors {
            error!(error = %e, "outbox item cannot be read; left on disk");
        }
        for note in loaded.recovered {
            warn!(outbox = %note, "outbox recovered after a crash");
        }
        let mut items = loaded.items;
        // Items for backends no longer configured stay on disk, untouched.
        items.retain(|i| self.backend(&i.backend).is_some());
        // A pending item beside its dry-run marker (a crash in an older
        // version between the two) was shown already.
        items.retain(|i| !self.already_done(&i.backend, &i.signal.idempotency_key));
        if !items.is_empty() {
            info!(pending = items.len(), "resuming undelivered signals");
        }
        self.items = items;
        let gated: Vec<&Item> = self.items.iter().filter(|i| self.gated(i)).collect();
        let (released, waiting): (Vec<&Item>, Vec<&Item>) =
            gated.into_iter().partition(|i| i.released_unix.is_some());
        // Owned, so the guard can be borrowed mutably below.
        let episode = |i: &&Item| -> (String, SignalEvent, String) {
            (
                i.signal.idempotency_key.clone(),
                event_of(&i.signal),
                i.signal.manifest_digest.clone(),
            )
        };
        let released: Vec<_> = released.iter().map(episode).collect();
        let waiting: Vec<_> = waiting.iter().map(episode).collect();
        for (key, event, digest) in released {
            self.guard.adopt_released(&key, event, &digest);
        }
        for (key, event, digest) in waiting {
            if self.guard.is_released(&key) {
                self.mark_released(&key); // released before a crash cut the marking short
            } else {
                self.guard.handle_signal(&key, event, &digest);
            }
        }
    }

    /// Was this signal delivered (or, for a dry-run backend, shown; or
    /// dropped by the guard) on `backend`? A pending file still beside the
    /// marker is a crash's leftover: removed (and logged), never sent.
    fn already_done(&self, backend: &str, key: &str) -> bool {
        let Some(c) = self.backend(backend) else {
            return false;
        };
        let o = &self.ctx.outbox;
        // A dry run is recorded apart from real deliveries: switching
        // dry_run off later still sends the episode for real.
        let done = if c.dry_run {
            o.is_dry_run_done(backend, key)
        } else {
            o.is_delivered(backend, key) || o.is_dropped(backend, key)
        };
        if done && o.is_pending(backend, key) {
            match o.discard(backend, key) {
                Ok(()) => warn!(
                    backend,
                    key, "a pending signal beside its marker (a crash) removed, not sent again"
                ),
                Err(e) => error!(backend, error = %e, "cannot remove a stale pending signal"),
            }
        }
        done
    }

    fn enqueue(&mut self, sig: Signal) {
        let key = sig.idempotency_key.clone();
        let new: Vec<Arc<Configured>> = self
            .backends
            .iter()
            .filter(|c| {
                let name = c.backend.name();
                // Once done, never sent again for this backend.
                !self.already_done(name, &key) && !self.queued(name, &key)
            })
            .cloned()
            .collect();
        let on = self.guard.enabled();
        if new.iter().any(|c| c.guarded(on)) && self.guard.episode(&key).is_none() {
            let (event, digest) = (event_of(&sig), sig.manifest_digest.as_str());
            if self.ctx.outbox.released_mark(&key).is_some() {
                // Released before a restart: one decision per episode.
                self.guard.adopt_released(&key, event, digest);
            } else {
                self.guard.handle_signal(&key, event, digest);
            }
        }
        let now = self.ctx.clock.unix();
        for c in new {
            let name = c.backend.name();
            let item = Item {
                backend: name.to_string(),
                signal: sig.clone(),
                attempts: 0,
                next_attempt_unix: now,
                last_error: None,
                released_unix: (c.guarded(on) && self.guard.is_released(&key)).then_some(now),
            };
            // Durable before the first attempt: a crash now still sends.
            if let Err(e) = self.ctx.outbox.save(&item) {
                error!(backend = name, error = %e, "cannot persist the signal; sending anyway");
            }
            self.items.push(item);
        }
    }

    /// New settings: backends, retries and the guard. Items of backends no
    /// longer configured stay on disk; an episode the guard did not know
    /// (its signals were going out without one) counts as released.
    fn reconfigure(&mut self, cfg: DispatchConfig) {
        self.backends = cfg.backends.into_iter().map(Arc::new).collect();
        for c in &self.backends {
            self.ctx.metrics.register(c.backend.name());
        }
        self.ctx.retry_initial = cfg.retry_initial;
        self.ctx.retry_max = cfg.retry_max;
        let before: Vec<String> = self.items.iter().map(|i| i.backend.clone()).collect();
        self.items
            .retain(|i| self.backends.iter().any(|c| c.backend.name() == i.backend));
        if self.items.len() < before.len() {
            info!(
                left = before.len() - self.items.len(),
                "signals of backends no longer configured stay in the outbox, unsent"
            );
        }
        self.query = cfg.guard.as_ref().map(|g| g.query.clone());
        self.guard
            .handle_settings(cfg.guard.as_ref().map(|g| g.settings));
        self.guard_info = cfg.guard;
        let unknown: Vec<(String, SignalEvent, String)> = self
            .items
            .iter()
            .filter(|i| self.gated(i) && self.guard.episode(&i.signal.idempotency_key).is_none())
            .map(|i| {
                (
                    i.signal.idempotency_key.clone(),
                    event_of(&i.signal),
                    i.signal.manifest_digest.clone(),
                )
            })
            .collect();
        for (key, event, digest) in unknown {
            self.guard.adopt_released(&key, event, &digest);
            self.mark_released(&key);
        }
    }
}
