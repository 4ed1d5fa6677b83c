//! What the executor tells while it runs, as data: `ui` turns events into lines for
//! people, progress bars on a terminal, or JSON lines for runbooks. The engine never
//! prints.

use std::time::Duration;

use serde::Serialize;

use super::Step;

/// One thing that happened during a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// A step starts (`index` counts from 1).
    StepStarted {
        index: usize,
        total: usize,
        step: String,
        description: String,
    },
    /// Its check says it is in place already.
    StepSkipped {
        index: usize,
        total: usize,
        step: String,
        description: String,
    },
    StepDone {
        index: usize,
        total: usize,
        step: String,
    },
    StepFailed {
        index: usize,
        total: usize,
        step: String,
        error: String,
    },
    /// A step has waited half its lock timeout; these sessions hold it up.
    LockWait { step: String, blockers: Vec<String> },
    /// An attempt ran out of lock timeout; the next comes after `pause`.
    LockRetry {
        step: String,
        attempt: u32,
        attempts: u32,
        #[serde(with = "millis")]
        timeout: Duration,
        #[serde(with = "millis")]
        pause: Duration,
    },
    /// A wait step looked again: its figures, when it has a progress query.
    WaitProgress {
        step: String,
        done: Option<i64>,
        total: Option<i64>,
        unit: String,
        #[serde(with = "millis")]
        elapsed: Duration,
    },
    /// Ctrl-C: the step under way was cancelled and rolled back.
    Interrupted { step: String },
}

impl Event {
    pub(crate) fn started(index: usize, total: usize, step: &Step) -> Event {
        Event::StepStarted {
            index,
            total,
            step: step.id.clone(),
            description: step.description.clone(),
        }
    }

    pub(crate) fn skipped(index: usize, total: usize, step: &Step) -> Event {
        Event::StepSkipped {
            index,
            total,
            step: step.id.clone(),
            description: step.description.clone(),
        }
    }
}

/// Where events go.
pub trait Events: Send + Sync {
    fn emit(&self, event: Event);
}

/// Drops every event (tests, nested runs that report nothing).
pub struct Silent;

impl Events for Silent {
    fn emit(&self, _: Event) {}
}

/// Events kept in memory, in order (tests).
#[derive(Default)]
pub struct Recorded(pub std::sync::Mutex<Vec<Event>>);

impl Events for Recorded {
    fn emit(&self, event: Event) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(event);
    }
}

mod millis {
    use std::time::Duration;

    use serde::Serializer;

    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(value.as_millis() as u64)
    }
}
