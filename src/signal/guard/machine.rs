//! The guard's decisions, as a state machine with no IO (in the style of
//! [`crate::verdict::Machine`]): events in through `handle_*`, timers
//! through [`GuardMachine::poll_timeout`] and
//! [`GuardMachine::handle_timeout`], decisions out through
//! [`GuardMachine::poll_action`]. Time and jitter come from a
//! [`Clock`], so every rule is a unit test under paused time.
//!
//! One episode (one idempotency key), one decision, for every guarded
//! backend at once:
//!
//! - a new episode *settles*: `settle` plus a random jitter of up to half
//!   of it, before its first look (again after a restart, since the
//!   fleet's view may have moved meanwhile);
//! - a look asks Prometheus ([`GuardAction::Look`]); the answer is judged
//!   with the settings in force when it arrives: *hosts* is the answer's
//!   count, at least 1; *drifted* is the other hosts of the image drifted
//!   (for a `verdict.unknown` signal: unknown) plus 1 for this host; the
//!   signal is released if *drifted* ≤ the limit, else held and looked at
//!   again after `recheck`. A failed look holds or releases by `on_error`;
//!   a limit of `"0"` never releases, not even on an error;
//! - new settings (a reload) make every held episode look again at once:
//!   the way an operator lets a held signal go is to raise the limit and
//!   reload; without a guard in the new settings, every waiting episode is
//!   released;
//! - a manifest with another digest drops every episode of the old one
//!   still waiting ([`GuardAction::Drop`]): that image is gone.
//!
//! Reports ([`GuardReport`]) are made once per change of the decision, so
//! the log says each state once, however often the guard looks.

pub use super::events::*;
use super::query::{Answer, LookRequest};
use super::spec::{Limit, OnError};
use crate::clock::Clock;
use crate::verdict::SignalEvent;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How long a look may stay unanswered before it counts as failed (the
/// client's own timeout is shorter; this only guards against a lost task).
pub const LOOK_DEADLINE: Duration = Duration::from_secs(60);

/// The guard.
pub struct GuardMachine {
    settings: Option<GuardSettings>,
    host_id: String,
    clock: Arc<dyn Clock>,
    episodes: BTreeMap<String, Episode>,
    digest: Option<String>,
    last: Option<(Judged, SignalEvent)>,
    actions: VecDeque<GuardAction>,
    changed: bool,
}

fn hosts_word(event: SignalEvent) -> &'static str {
    match event {
        SignalEvent::DriftDetected => "drifted",
        SignalEvent::VerdictUnknown => "with an unknown verdict",
    }
}

impl GuardMachine {
    /// A guard with these settings (`None`: no guard; nothing waits).
    pub fn new(settings: Option<GuardSettings>, host_id: &str, clock: Arc<dyn Clock>) -> Self {
        GuardMachine {
            settings,
            host_id: host_id.to_string(),
            clock,
            episodes: BTreeMap::new(),
            digest: None,
            last: None,
            actions: VecDeque::new(),
            changed: true,
        }
    }

    pub fn enabled(&self) -> bool {
        self.settings.is_some()
    }

    pub fn settings(&self) -> Option<&GuardSettings> {
        self.settings.as_ref()
    }

    pub fn episode(&self, key: &str) -> Option<&Episode> {
        self.episodes.get(key)
    }

    pub fn episodes(&self) -> impl Iterator<Item = &Episode> {
        self.episodes.values()
    }

    /// Is this episode released (its signals may go out)?
    pub fn is_released(&self, key: &str) -> bool {
        self.episodes
            .get(key)
            .is_some_and(|e| e.phase == Phase::Released)
    }

    /// The last judged look of any episode, and that episode's event.
    pub fn last(&self) -> Option<&(Judged, SignalEvent)> {
        self.last.as_ref()
    }

    /// Did anything shown change since the last call?
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    pub fn poll_action(&mut self) -> Option<GuardAction> {
        self.actions.pop_front()
    }

    /// The next deadline, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.episodes.values().filter_map(|e| e.next_look).min()
    }

    // ------------------------------------------------------------ events

    /// A guarded signal of a new episode (or one found pending at start,
    /// not yet released): it settles before its first look.
    pub fn handle_signal(&mut self, key: &str, event: SignalEvent, digest: &str) {
        if self.episodes.contains_key(key) {
            return;
        }
        let Some(s) = self.settings else {
            self.adopt_released(key, event, digest);
            return;
        };
        self.changed = true;
        let mut e = Episode {
            key: key.to_string(),
            event,
            digest: digest.to_string(),
            phase: Phase::Settling,
            next_look: None,
            next_look_unix: None,
            last: None,
            why: String::new(),
            mood: None,
        };
        if self.digest.as_deref().is_some_and(|d| d != digest) {
            let now = self.digest.clone().unwrap_or_default();
            self.drop_episode(e, now);
            return;
        }
        let wait = s.settle + s.settle.mul_f64(self.clock.random().clamp(0.0, 1.0) / 2.0);
        self.schedule(&mut e, wait);
        e.why = format!(
            "waiting {} for the fleet's metrics to settle before asking Prometheus",
            humantime::format_duration(Duration::from_secs(wait.as_secs()))
        );
        self.actions
            .push_back(GuardAction::Report(GuardReport::Settling {
                key: key.to_string(),
                event,
                wait,
            }));
        self.episodes.insert(key.to_string(), e);
    }

    /// An episode already released (recorded so in the outbox, or sent
    /// while there was no guard): its signals go out, never judged again.
    pub fn adopt_released(&mut self, key: &str, event: SignalEvent, digest: &str) {
        if self.is_released(key) {
            return;
        }
        self.changed = true;
        self.episodes.insert(
            key.to_string(),
            Episode {
                key: key.to_string(),
                event,
                digest: digest.to_string(),
                phase: Phase::Released,
                next_look: None,
                next_look_unix: None,
                last: None,
                why: "released before".into(),
                mood: None,
            },
        );
    }

    /// Forget a released episode whose signals are all out.
    pub fn forget(&mut self, key: &str) {
        if self.is_released(key) {
            self.episodes.remove(key);
            self.changed = true;
        }
    }

    /// The manifest in use now: episodes of another digest still waiting
    /// are dropped.
    pub fn handle_manifest(&mut self, digest: &str) {
        self.digest = Some(digest.to_string());
        let stale: Vec<String> = self
            .episodes
            .values()
            .filter(|e| e.phase != Phase::Released && e.digest != digest)
            .map(|e| e.key.clone())
            .collect();
        for key in stale {
            if let Some(e) = self.episodes.remove(&key) {
                self.drop_episode(e, digest.to_string());
            }
        }
    }

    fn drop_episode(&mut self, e: Episode, now: String) {
        self.changed = true;
        self.actions.push_back(GuardAction::Drop {
            key: e.key.clone(),
            digest: e.digest.clone(),
            now: now.clone(),
        });
        self.actions
            .push_back(GuardAction::Report(GuardReport::Dropped {
                key: e.key,
                digest: e.digest,
                now,
            }));
    }

    /// New settings (a reload). Every held episode looks again at once;
    /// without a guard, every waiting episode is released.
    pub fn handle_settings(&mut self, settings: Option<GuardSettings>) {
        self.settings = settings;
        self.changed = true;
        let keys: Vec<String> = self.episodes.keys().cloned().collect();
        for key in keys {
            let Some(phase) = self.episodes.get(&key).map(|e| e.phase) else {
                continue;
            };
            match (settings.is_some(), phase) {
                (_, Phase::Released) => {}
                (false, _) => self.release(&key, "the guard was removed from the config".into()),
                (true, Phase::Held) => {
                    let (now, unix) = (self.clock.now(), self.clock.unix());
                    if let Some(e) = self.episodes.get_mut(&key) {
                        e.next_look = Some(now);
                        e.next_look_unix = Some(unix);
                    }
                }
                (true, _) => {}
            }
        }
    }

    /// Start the looks that are due; a look unanswered past its deadline
    /// counts as failed.
    pub fn handle_timeout(&mut self) {
        let now = self.clock.now();
        let due: Vec<String> = self
            .episodes
            .values()
            .filter(|e| e.next_look.is_some_and(|t| t <= now))
            .map(|e| e.key.clone())
            .collect();
        for key in due {
            let phase = self.episodes.get(&key).map(|e| e.phase);
            if phase == Some(Phase::Looking) {
                self.handle_answer(&key, Err("no answer in time".into()));
                continue;
            }
            let host_id = self.host_id.clone();
            let unix = self.clock.unix();
            let Some(e) = self.episodes.get_mut(&key) else {
                continue;
            };
            e.phase = Phase::Looking;
            e.next_look = Some(now + LOOK_DEADLINE);
            e.next_look_unix = Some(unix + LOOK_DEADLINE.as_secs_f64());
            let request = LookRequest {
                event: e.event,
                digest: e.digest.clone(),
                host_id,
            };
            self.changed = true;
            self.actions.push_back(GuardAction::Look { key, request });
        }
    }

    /// The answer to a look (ignored unless that episode is looking).
    pub fn handle_answer(&mut self, key: &str, answer: Result<Answer, String>) {
        let Some(e) = self.episodes.get(key) else {
            return;
        };
        if e.phase != Phase::Looking {
            return;
        }
        let event = e.event;
        let Some(s) = self.settings else {
            self.release(key, "the guard was removed from the config".into());
            return;
        };
        let outcome = judge(&s, event, &answer);
        let judged = Judged {
            at_unix: self.clock.unix(),
            outcome: outcome.clone(),
        };
        self.last = Some((judged.clone(), event));
        self.changed = true;
        if let Some(e) = self.episodes.get_mut(key) {
            e.last = Some(judged);
        }
        let limit_text = s.limit.to_string();
        let (mood, why) = match &outcome {
            Outcome::Within {
                hosts,
                drifted,
                limit,
            } => {
                let why = format!(
                    "{drifted} of {hosts} hosts of this image {} (this one included), within the limit of {limit} (max_drifted {limit_text})",
                    hosts_word(event)
                );
                self.release(key, why);
                return;
            }
            Outcome::Failed(err) if s.on_error == OnError::Send && s.limit != Limit::Count(0) => {
                self.release(key, format!("the look failed ({err}); on_error = \"send\""));
                return;
            }
            Outcome::Failed(err) => (
                Mood::Failed,
                if s.limit == Limit::Count(0) {
                    format!("the look failed ({err}); max_drifted is \"0\": never released automatically")
                } else {
                    format!("the look failed ({err}); on_error = \"hold\"")
                },
            ),
            Outcome::Over {
                hosts,
                drifted,
                limit,
            } => (
                if s.limit == Limit::Count(0) {
                    Mood::Never
                } else {
                    Mood::Over
                },
                format!(
                    "{drifted} of {hosts} hosts of this image {} (this one included), over the limit of {limit} (max_drifted {limit_text}): held until a look finds the fleet within it, or the limit is raised and the agent reloaded",
                    hosts_word(event)
                ),
            ),
        };
        let now = self.clock.now();
        let unix = self.clock.unix();
        let Some(e) = self.episodes.get_mut(key) else {
            return;
        };
        e.phase = Phase::Held;
        e.next_look = Some(now + s.recheck);
        e.next_look_unix = Some(unix + s.recheck.as_secs_f64());
        e.why = why.clone();
        if e.mood != Some(mood) {
            e.mood = Some(mood);
            self.actions
                .push_back(GuardAction::Report(GuardReport::Held {
                    key: key.to_string(),
                    why,
                }));
        }
    }

    fn release(&mut self, key: &str, why: String) {
        let Some(e) = self.episodes.get_mut(key) else {
            return;
        };
        e.phase = Phase::Released;
        e.next_look = None;
        e.next_look_unix = None;
        e.why = why.clone();
        self.changed = true;
        self.actions.push_back(GuardAction::Release {
            key: key.to_string(),
        });
        self.actions
            .push_back(GuardAction::Report(GuardReport::Released {
                key: key.to_string(),
                why,
            }));
    }

    fn schedule(&self, e: &mut Episode, wait: Duration) {
        e.next_look = Some(self.clock.now() + wait);
        e.next_look_unix = Some(self.clock.unix() + wait.as_secs_f64());
    }
}

/// Judge an answer: *hosts* at least 1, *drifted* the others plus this
/// host, against the limit of those hosts.
pub fn judge(s: &GuardSettings, event: SignalEvent, answer: &Result<Answer, String>) -> Outcome {
    match answer {
        Err(e) => Outcome::Failed(e.clone()),
        Ok(a) => {
            let hosts = a.hosts.max(1);
            let drifted = a.others(event).saturating_add(1);
            let limit = s.limit.of(hosts);
            if drifted <= limit {
                Outcome::Within {
                    hosts,
                    drifted,
                    limit,
                }
            } else {
                Outcome::Over {
                    hosts,
                    drifted,
                    limit,
                }
            }
        }
    }
}
