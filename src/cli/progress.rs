//! Progress of `bake` and `check` for a person at a terminal: one line on
//! stderr (indicatif), redrawn at most [`HZ`] times a second by a ticker
//! thread from the scan's [`Progress`] counters, and cleared before the
//! report is printed. When stderr is not a terminal (a log, a pipe, CI),
//! or the caller does not want it (`--format json`), there is nothing at
//! all: no bar, no thread, no counters in the scan, so what scripts read
//! is byte for byte what it was.

use super::Color;
use crate::manifest::Manifest;
use crate::scan::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use std::io::IsTerminal;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Redraws per second, at most.
const HZ: u8 = 10;

/// What a scan is measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// Nothing known ahead (`bake`): a spinner.
    Open,
    /// The manifest's entries and the bytes its hashed files hold (`check`).
    Known { entries: u64, bytes: u64 },
}

/// The goal of a check against `manifest`: its entry count and the recorded
/// sizes of the files it has a content hash for (the files the scan reads).
/// One pass over the entries, done only when progress is shown.
pub fn goal_of(manifest: &Manifest) -> Goal {
    let bytes = manifest
        .entries
        .iter()
        .filter(|e| e.hash.is_some())
        .fold(0u64, |n, e| n.saturating_add(e.size.unwrap_or(0)));
    Goal::Known {
        entries: manifest.entries.len() as u64,
        bytes,
    }
}

/// A progress line on stderr, or nothing.
pub struct Shown {
    progress: Option<Arc<Progress>>,
    live: Option<(ProgressBar, mpsc::Sender<()>, JoinHandle<()>)>,
}

impl Shown {
    /// Show `verb`'s progress if `wanted` and stderr is a terminal; `goal`
    /// is computed only then. `color` decides colour as `--color` does, for
    /// stderr (so `NO_COLOR` turns it off).
    pub fn start(verb: &str, goal: impl FnOnce() -> Goal, color: Color, wanted: bool) -> Shown {
        let terminal = std::io::stderr().is_terminal();
        if !wanted || !terminal {
            return Shown {
                progress: None,
                live: None,
            };
        }
        let goal = goal();
        let by_entries = matches!(goal, Goal::Known { bytes: 0, .. });
        let len = match goal {
            Goal::Open => None,
            Goal::Known { entries, .. } if by_entries => Some(entries),
            Goal::Known { bytes, .. } => Some(bytes),
        };
        let progress = Arc::new(Progress::default());
        // Neither draws: the ticker's first update does. The style is set
        // once the target is stderr, so colour is judged for stderr.
        let bar = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr_with_hz(HZ))
            .with_prefix(verb.to_owned());
        bar.set_style(style(goal, color.enabled_on(terminal), progress.clone()));
        let (stop, stopped) = mpsc::channel::<()>();
        let (p, b) = (progress.clone(), bar.clone());
        // One redraw per tick (a new position ticks the spinner and draws).
        let ticker = std::thread::spawn(move || loop {
            b.set_position(if by_entries { p.entries() } else { p.bytes() });
            match stopped.recv_timeout(Duration::from_millis(1000 / u64::from(HZ))) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => break,
            }
        });
        Shown {
            progress: Some(progress),
            live: Some((bar, stop, ticker)),
        }
    }

    /// The counters for [`crate::scan::ScanControl::progress`]: `None` when
    /// nothing is shown, so the scan does not count.
    pub fn handle(&self) -> Option<Arc<Progress>> {
        self.progress.clone()
    }

    /// Stop and clear the line (before the report is printed); dropping
    /// does the same.
    pub fn finish(self) {
        drop(self);
    }
}

impl Drop for Shown {
    fn drop(&mut self) {
        if let Some((bar, stop, ticker)) = self.live.take() {
            drop(stop);
            let _ = ticker.join();
            bar.finish_and_clear();
        }
    }
}

/// The line's template: a spinner, the paths done (`{entries}`, read from
/// `progress`), and against a known goal a bar, the total, the rate and the
/// time left.
fn style(goal: Goal, color: bool, progress: Arc<Progress>) -> ProgressStyle {
    let (spinner, bar) = if color {
        ("{spinner:.green} {prefix:.bold}", "{wide_bar:.cyan/blue}")
    } else {
        ("{spinner} {prefix}", "{wide_bar}")
    };
    let rest = match goal {
        Goal::Open => {
            "{entries}, {binary_bytes} hashed, {binary_bytes_per_sec}, {elapsed}".to_owned()
        }
        Goal::Known { bytes: 0, .. } => format!("{{entries}} {bar} {{per_sec}} ETA {{eta}}"),
        Goal::Known { .. } => format!(
            "{{entries}} {bar} {{binary_bytes}}/{{binary_total_bytes}} \
             {{binary_bytes_per_sec}} ETA {{eta}}"
        ),
    };
    let entries = move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
        let done = progress.entries();
        let _ = match goal {
            Goal::Open => write!(w, "{done} entries"),
            Goal::Known { entries, .. } => write!(w, "{done}/{entries} entries"),
        };
    };
    ProgressStyle::with_template(&format!("{spinner} {rest}"))
        .expect("a valid progress template")
        .with_key("entries", entries)
        .progress_chars("=> ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_is_valid() {
        for goal in [
            Goal::Open,
            Goal::Known {
                entries: 3,
                bytes: 0,
            },
            Goal::Known {
                entries: 3,
                bytes: 9,
            },
        ] {
            for color in [false, true] {
                let _ = style(goal, color, Arc::default());
            }
        }
    }
}
