//! New signal settings from a reload of the config (SIGHUP).

use super::machine::{Action, Machine};
use std::time::Duration;

impl Machine {
    /// Signals are configured (`signals`: any backend) and an unknown
    /// verdict is signalled after `unknown_grace` (`None`: `on_unknown`
    /// off). The episode under way is asked for again, so a backend added
    /// by the reload gets it too (the outbox skips what was delivered or
    /// is queued).
    pub fn handle_signals_config(&mut self, signals: bool, unknown_grace: Option<Duration>) {
        self.settings.signals = signals;
        self.settings.unknown_grace = unknown_grace;
        if signals {
            if let Some(req) = self.drift_request() {
                self.actions.push_back(Action::Signal(req));
            }
            if self.unknown_signalled && unknown_grace.is_some() {
                if let Some(req) = self.unknown_request() {
                    self.actions.push_back(Action::Signal(req));
                }
            }
        }
        self.drive();
    }
}
