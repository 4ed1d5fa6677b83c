//! The engine's events for people and for scripts, all on stderr (stdout keeps the
//! command's report or its one JSON document): lines as before (`[3/25] …`), an
//! indicatif bar for a wait with figures on a terminal, or one JSON object per line
//! with `--format json` (`{"format_version": 1, "event": "step-started", …}`).

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

use super::{Output, JSON_FORMAT_VERSION};
use crate::engine::events::{Event, Events};

/// The sink for `out`'s format: JSON lines, or text for people (nothing with `-q`).
pub fn sink(out: &Output) -> Box<dyn Events> {
    if out.is_json() {
        Box::new(JsonLines)
    } else {
        Box::new(Lines {
            quiet: out.quiet,
            bars: std::io::stderr().is_terminal() && !out.quiet,
            bar: Mutex::new(None),
            last_figures: Mutex::new(None),
        })
    }
}

/// One JSON object per event, on stderr.
struct JsonLines;

impl Events for JsonLines {
    fn emit(&self, event: Event) {
        #[derive(serde::Serialize)]
        struct Line<'a> {
            format_version: u32,
            #[serde(flatten)]
            event: &'a Event,
        }
        if let Ok(text) = serde_json::to_string(&Line {
            format_version: JSON_FORMAT_VERSION,
            event: &event,
        }) {
            eprintln!("{text}");
        }
    }
}

/// Lines for people; a bar for a wait's figures on a terminal.
struct Lines {
    quiet: bool,
    bars: bool,
    /// The bar of the wait under way, by step.
    bar: Mutex<Option<(String, ProgressBar)>>,
    /// The figures last printed as a line (off a terminal, a line only when they
    /// change).
    last_figures: Mutex<Option<Figures>>,
}

/// A wait's step and its (done, total) figures.
type Figures = (String, Option<i64>, Option<i64>);

impl Lines {
    fn line(&self, text: &str) {
        self.finish_bar();
        eprintln!("{}", console::style(text).dim());
    }

    fn finish_bar(&self) {
        if let Some((_, bar)) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            bar.finish_and_clear();
        }
    }

    fn progress(&self, step: &str, done: Option<i64>, total: Option<i64>, unit: &str, secs: u64) {
        if self.bars {
            if let (Some(done), Some(total)) = (done, total) {
                let mut slot = self.bar.lock().unwrap_or_else(|e| e.into_inner());
                if slot.as_ref().is_none_or(|(s, _)| s != step) {
                    let bar = ProgressBar::new(total.max(0) as u64);
                    bar.set_style(
                        ProgressStyle::with_template("  {bar:40} {pos}/{len} {msg} ({elapsed})")
                            .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    bar.set_message(unit.to_string());
                    *slot = Some((step.to_string(), bar));
                }
                if let Some((_, bar)) = slot.as_ref() {
                    bar.set_length(total.max(0) as u64);
                    bar.set_position(done.max(0) as u64);
                }
                return;
            }
        }
        let mut last = self.last_figures.lock().unwrap_or_else(|e| e.into_inner());
        let now = (step.to_string(), done, total);
        if last.as_ref() == Some(&now) {
            return;
        }
        *last = Some(now);
        drop(last);
        let figures = match (done, total) {
            (Some(d), Some(t)) => format!("{d} of {t} {unit}"),
            (Some(d), None) => format!("{d} {unit}"),
            _ => "not yet".to_string(),
        };
        self.line(&format!("  waiting: {figures} ({secs} s)"));
    }
}

impl Events for Lines {
    fn emit(&self, event: Event) {
        if self.quiet {
            return;
        }
        match event {
            Event::StepStarted {
                index,
                total,
                description,
                ..
            } => self.line(&format!("[{index}/{total}] {description}")),
            Event::StepSkipped {
                index,
                total,
                description,
                ..
            } => self.line(&format!("[{index}/{total}] already done: {description}")),
            Event::StepDone { .. } | Event::StepFailed { .. } | Event::Interrupted { .. } => {
                self.finish_bar()
            }
            Event::LockWait { blockers, .. } => {
                self.line(&format!("  waiting for a lock behind {}", blockers.join("; ")))
            }
            Event::LockRetry {
                attempt,
                attempts,
                timeout,
                pause,
                ..
            } => self.line(&format!(
                "  lock not granted within {} (attempt {attempt}/{attempts}): other clients go first; trying again in {} (Ctrl-C stops carve cleanly)",
                humantime::format_duration(timeout),
                humantime::format_duration(pause)
            )),
            Event::WaitProgress {
                step,
                done,
                total,
                unit,
                elapsed,
            } => self.progress(&step, done, total, &unit, elapsed.as_secs()),
        }
    }
}
