//! Applying steps: the I/O half of the engine.
//!
//! One run holds carve's advisory lock on each PostgreSQL endpoint it changes for its
//! whole length, so two runs never interleave; a second run learns who holds it.
//! Each step runs only when its check says it is not done yet; a SQL step in its own
//! transaction, a wait polled until its condition holds, a console command on its
//! console. The journal file gets the step's status (fsynced) before the next step,
//! so a run killed at any moment is finished by running the same command again.
//! Steps that take a strong lock wait for it at most `lock_timeout` and are retried
//! with backoff: a long transaction in production makes carve wait, never every other
//! client queued behind carve. What happens is told as `Event`s; nothing is printed.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;

use super::endpoint::{Blocker, Endpoints, Session};
use super::events::{Event, Events};
use super::{Action, ConsoleAction, OnTimeout, SqlAction, Step, WaitAction};
use crate::conn::describe_db_error;
use crate::plan::{JournalFile, PhaseId, Plan, StepStatus};
use crate::sql::literal;

/// How strong-lock steps wait.
#[derive(Debug, Clone, Copy)]
pub struct LockPolicy {
    /// The longest one attempt waits for its lock (`SET LOCAL lock_timeout`).
    pub timeout: Duration,
    /// Attempts after the first, each after a pause that doubles (1 s, 2 s, … 30 s).
    pub retries: u32,
    /// The first pause between attempts.
    pub first_pause: Duration,
}

impl Default for LockPolicy {
    fn default() -> Self {
        LockPolicy {
            timeout: Duration::from_secs(2),
            retries: 8,
            first_pause: Duration::from_secs(1),
        }
    }
}

impl LockPolicy {
    fn pause(&self, attempt: u32) -> Duration {
        let doubled = self.first_pause.saturating_mul(1u32 << attempt.min(16));
        doubled.min(Duration::from_secs(30))
    }
}

/// Why a step did not complete.
enum StepError {
    /// It failed; the message says why (recorded in the journal).
    Failed(String),
    /// Ctrl-C: its transaction was cancelled and rolled back; nothing is recorded.
    Interrupted,
}

/// Session settings under which a statement holding a secret runs (a superuser's
/// to change), and their reset.
const UNLOGGED: &str = "SET log_statement = 'none'; SET log_min_error_statement = 'panic'; SET log_min_duration_statement = -1; SET pg_stat_statements.track_utility = off";
const LOGGED_AGAIN: &str = "RESET log_statement; RESET log_min_error_statement; RESET log_min_duration_statement; RESET pg_stat_statements.track_utility";

/// Resolves once Ctrl-C has been pressed.
async fn until_interrupted(interrupted: &AtomicBool) {
    while !interrupted.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What every step of one run shares.
struct Run<'a> {
    endpoints: &'a Endpoints,
    policy: &'a LockPolicy,
    events: &'a dyn Events,
    interrupted: &'a AtomicBool,
}

impl Run<'_> {
    async fn apply(&self, step: &Step) -> Result<(), StepError> {
        let failed = |e: anyhow::Error| StepError::Failed(format!("{e:#}"));
        match &step.action {
            Action::Sql(action) => {
                let session = self.endpoints.session(&step.target).map_err(failed)?;
                let source = &self.endpoints.source().watch;
                let secret = action.secret.is_some();
                let action = super::secret::resolve(action, source)
                    .await
                    .map_err(StepError::Failed)?;
                let action = self.with_reading(action).await?;
                if !secret {
                    return self.sql(session, step, &action).await;
                }
                // The statement holds a secret: the server must not write it to its
                // log (log_statement, or the statement of an error) nor keep its
                // text in pg_stat_statements.
                let db = |e: tokio_postgres::Error| StepError::Failed(describe_db_error(&e));
                session.work.batch_execute(UNLOGGED).await.map_err(db)?;
                let result = self.sql(session, step, &action).await;
                session.work.batch_execute(LOGGED_AGAIN).await.map_err(db)?;
                result
            }
            Action::Wait(action) => {
                let session = self.endpoints.session(&step.target).map_err(failed)?;
                self.wait(session, step, action).await
            }
            Action::Console(action) => self.console(step, action).await,
            Action::PgbouncerEntry(entry) => {
                super::pgbouncer_file::point(&entry.file, &entry.entry, &entry.to)
                    .map_err(StepError::Failed)
            }
            Action::File(file) => super::local::write_file(file).map_err(StepError::Failed),
            Action::Hook(hook) => {
                let hook = hook.clone();
                tokio::task::spawn_blocking(move || super::local::run_hook(&hook))
                    .await
                    .map_err(|e| StepError::Failed(e.to_string()))?
                    .map_err(StepError::Failed)
            }
        }
    }

    /// `action` with its `Reading`'s value (read now, on its endpoint) in place of
    /// `:'carve_read'`.
    async fn with_reading<'s>(
        &self,
        action: std::borrow::Cow<'s, SqlAction>,
    ) -> Result<std::borrow::Cow<'s, SqlAction>, StepError> {
        let Some(reading) = &action.read else {
            return Ok(action);
        };
        let session = self
            .endpoints
            .session(&reading.on)
            .map_err(|e| StepError::Failed(format!("{e:#}")))?;
        let row = session
            .work
            .query_one(&format!("SELECT ({})::text", reading.query), &[])
            .await
            .map_err(|e| {
                StepError::Failed(format!(
                    "reading on {}: {}",
                    reading.on,
                    describe_db_error(&e)
                ))
            })?;
        let value: Option<String> = row.get(0);
        let quoted = match value {
            Some(v) => literal(&v).map_err(|e| StepError::Failed(e.to_string()))?,
            None => "NULL".into(),
        };
        Ok(std::borrow::Cow::Owned(SqlAction {
            sql: action.sql.replace(super::READ_VARIABLE, &quoted),
            read: None,
            ..action.into_owned()
        }))
    }

    /// A SQL step (already known not to be done), retrying lock timeouts. Ctrl-C
    /// cancels a waiting statement and ends a pause at once.
    async fn sql(
        &self,
        session: &Session,
        step: &Step,
        action: &SqlAction,
    ) -> Result<(), StepError> {
        let body = body(action, self.policy);
        let mut seen_blockers: Vec<Blocker> = Vec::new();
        let attempts = if action.strong_lock {
            self.policy.retries + 1
        } else {
            1
        };
        for attempt in 0..attempts {
            let (result, blockers) = self.execute_watching(session, step, &body).await;
            if !blockers.is_empty() {
                seen_blockers = blockers;
            }
            let Err(e) = result else {
                return Ok(());
            };
            let _ = session.work.batch_execute("ROLLBACK").await;
            if self.interrupted.load(Ordering::SeqCst) {
                return Err(StepError::Interrupted);
            }
            let timed_out = e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE);
            if timed_out && attempt + 1 < attempts {
                let pause = self.policy.pause(attempt);
                self.events.emit(Event::LockRetry {
                    step: step.id.clone(),
                    attempt: attempt + 1,
                    attempts,
                    timeout: self.policy.timeout,
                    pause,
                });
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = until_interrupted(self.interrupted) => return Err(StepError::Interrupted),
                }
                continue;
            }
            if timed_out {
                let who = if seen_blockers.is_empty() {
                    "a session that had finished before carve could look".to_string()
                } else {
                    seen_blockers
                        .iter()
                        .map(|b| b.to_string())
                        .collect::<Vec<_>>()
                        .join("; ")
                };
                return Err(StepError::Failed(format!(
                    "gave up after {attempts} attempts, each waiting at most {} for its lock: it waits behind {who}. Nothing of this step was applied, and no other client was kept waiting longer than one attempt. Run the same command again once that transaction has ended",
                    humantime::format_duration(self.policy.timeout)
                )));
            }
            return Err(StepError::Failed(describe_db_error(&e)));
        }
        unreachable!("the last attempt returns")
    }

    /// Runs `body` on `work`; if it is still running halfway through the lock timeout,
    /// asks `watch` which sessions it waits for and says so. On Ctrl-C the statement
    /// is cancelled (its transaction then rolls back) rather than left to finish.
    async fn execute_watching(
        &self,
        session: &Session,
        step: &Step,
        body: &str,
    ) -> (Result<(), tokio_postgres::Error>, Vec<Blocker>) {
        let run = session.work.batch_execute(body);
        tokio::pin!(run);
        let mut blockers = Vec::new();
        tokio::select! {
            result = &mut run => return (result, blockers),
            _ = tokio::time::sleep(self.policy.timeout / 2) => {}
            _ = until_interrupted(self.interrupted) => {}
        }
        if !self.interrupted.load(Ordering::SeqCst) {
            blockers = session.blockers().await.unwrap_or_default();
            if !blockers.is_empty() {
                self.events.emit(Event::LockWait {
                    step: step.id.clone(),
                    blockers: blockers.iter().map(ToString::to_string).collect(),
                });
            }
            tokio::select! {
                result = &mut run => return (result, blockers),
                _ = until_interrupted(self.interrupted) => {}
            }
        }
        // Ctrl-C while the statement runs: cancel it from the other connection.
        session.cancel_work().await;
        (run.await, blockers)
    }

    /// Polls a wait's condition until it holds, its progress told as events.
    async fn wait(
        &self,
        session: &Session,
        step: &Step,
        action: &WaitAction,
    ) -> Result<(), StepError> {
        let started = Instant::now();
        loop {
            let ready = session
                .holds(&step.id, &action.until)
                .await
                .map_err(|e| StepError::Failed(format!("{e:#}")))?;
            if ready {
                return Ok(());
            }
            let (done, total) = match &action.progress {
                Some(query) => session
                    .progress(query)
                    .await
                    .map_err(|e| StepError::Failed(format!("{e:#}")))?,
                None => (None, None),
            };
            self.events.emit(Event::WaitProgress {
                step: step.id.clone(),
                done,
                total,
                unit: action.unit.clone(),
                elapsed: started.elapsed(),
            });
            if started.elapsed() >= action.timeout {
                return match action.on_timeout {
                    OnTimeout::Continue => Ok(()),
                    OnTimeout::Fail => Err(StepError::Failed(format!(
                        "still not the case after {}: {}. Nothing was changed by this step; run the same command again to wait again",
                        humantime::format_duration(action.timeout),
                        action.until
                    ))),
                };
            }
            let left = action.timeout.saturating_sub(started.elapsed());
            tokio::select! {
                _ = tokio::time::sleep(action.every.min(left)) => {}
                _ = until_interrupted(self.interrupted) => return Err(StepError::Interrupted),
            }
        }
    }

    /// A console command, then its check: a command the console accepted whose
    /// effect does not show is a failure, not a success.
    async fn console(&self, step: &Step, action: &ConsoleAction) -> Result<(), StepError> {
        let console = self
            .endpoints
            .console(&step.target)
            .map_err(|e| StepError::Failed(format!("{e:#}")))?;
        match action.timeout {
            None => {
                console
                    .run(&action.command)
                    .await
                    .map_err(|e| StepError::Failed(format!("{}: {e}", action.command)))?;
            }
            Some(timeout) => {
                let outcome = console
                    .run_bounded(
                        &action.command,
                        timeout,
                        until_interrupted(self.interrupted),
                    )
                    .await;
                match outcome {
                    Ok(()) => {}
                    Err(Some(e)) => {
                        return Err(StepError::Failed(format!("{}: {e}", action.command)))
                    }
                    Err(None) => {
                        // Its connection is closed: nothing pending races the undo.
                        let undone = console.run(&action.undo).await;
                        if self.interrupted.load(Ordering::SeqCst) {
                            return Err(StepError::Interrupted);
                        }
                        return Err(StepError::Failed(format!(
                            "{} did not finish within {} (transactions still running through PgBouncer); it was cancelled with {}{}",
                            action.command,
                            humantime::format_duration(timeout),
                            action.undo,
                            match undone {
                                Ok(_) => String::new(),
                                Err(e) => format!(", which failed: {e}. Run `{}` on the console by hand", action.undo),
                            }
                        )));
                    }
                }
            }
        }
        match console.holds(&action.check).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(StepError::Failed(format!(
                "{} was accepted, but {} does not hold",
                action.command,
                action.check.describe()
            ))),
            Err(e) => Err(StepError::Failed(e)),
        }
    }
}

/// The SQL sent for a step: in its own transaction, with the lock timeout for strong
/// locks.
fn body(action: &SqlAction, policy: &LockPolicy) -> String {
    let sql = action.sql.trim().trim_end_matches(';');
    if !action.transactional {
        return sql.to_string();
    }
    let timeout = if action.strong_lock {
        let ms = format!("{}ms", policy.timeout.as_millis().max(1));
        format!(
            "SET LOCAL lock_timeout = {}; ",
            literal(&ms).expect("no NUL")
        )
    } else {
        String::new()
    };
    format!("BEGIN; {timeout}{sql}; COMMIT")
}

/// One step to run, and the journal entry that records it (an undo records under the
/// step it reverses).
pub struct Planned<'a> {
    pub journal_id: &'a str,
    pub step: &'a Step,
}

impl<'a> Planned<'a> {
    /// Each step, recorded under its own id.
    pub fn each(steps: &'a [Step]) -> Vec<Planned<'a>> {
        steps
            .iter()
            .map(|step| Planned {
                journal_id: &step.id,
                step,
            })
            .collect()
    }
}

/// How a run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum RunEnd {
    /// Every step is in place.
    Completed { ran: usize, skipped: usize },
    /// A step failed; the journal says which and why. Earlier steps stay done.
    Failed { step: String, error: String },
    /// Ctrl-C: between two steps, or during one (then cancelled and rolled back).
    Interrupted,
}

/// Everything a run needs besides its steps.
pub struct RunContext<'a> {
    pub endpoints: &'a Endpoints,
    pub plan: &'a mut Plan,
    pub plan_path: &'a Path,
    pub policy: &'a LockPolicy,
    pub events: &'a dyn Events,
    pub interrupted: &'a AtomicBool,
}

/// Runs `steps` of phase `phase` in order. Each is skipped when its check says done,
/// otherwise applied; either way the journal records `done_as` for it in the plan's
/// journal file before the next step (flushed to disk when the run ends). The caller
/// saves the plan, folding the journal in, once it has recorded how the run ended;
/// until then the journal file holds every entry, and `Plan::load` applies it.
pub async fn run(
    cx: RunContext<'_>,
    phase: &PhaseId,
    steps: &[Planned<'_>],
    done_as: StepStatus,
) -> anyhow::Result<RunEnd> {
    let mut journal = JournalFile::open(cx.plan_path)?;
    let run = Run {
        endpoints: cx.endpoints,
        policy: cx.policy,
        events: cx.events,
        interrupted: cx.interrupted,
    };
    let end = run_steps(&run, phase, steps, done_as, cx.plan, &mut journal).await;
    journal.sync()?;
    end
}

/// A wait marked `once` that this run of the phase has recorded done.
fn waited_for_once(
    plan: &Plan,
    phase: &PhaseId,
    planned: &Planned<'_>,
    done_as: StepStatus,
) -> bool {
    done_as == StepStatus::Done
        && matches!(&planned.step.action, Action::Wait(w) if w.once)
        && plan
            .phase(phase)
            .is_some_and(|r| r.status(planned.journal_id) == StepStatus::Done)
}

async fn run_steps(
    run: &Run<'_>,
    phase: &PhaseId,
    steps: &[Planned<'_>],
    done_as: StepStatus,
    plan: &mut Plan,
    journal: &mut JournalFile,
) -> anyhow::Result<RunEnd> {
    let total = steps.len();
    let (mut ran, mut skipped) = (0, 0);
    for (i, planned) in steps.iter().enumerate() {
        if run.interrupted.load(Ordering::SeqCst) {
            return Ok(RunEnd::Interrupted);
        }
        let step = planned.step;
        let outcome = if waited_for_once(plan, phase, planned, done_as)
            || run.endpoints.is_done(step).await?
        {
            skipped += 1;
            run.events.emit(Event::skipped(i + 1, total, step));
            Ok(())
        } else {
            run.events.emit(Event::started(i + 1, total, step));
            tracing::debug!("step {:?}: {:?}", step.id, step.action);
            let started = std::time::Instant::now();
            let applied = run.apply(step).await;
            tracing::info!(
                target: "carve::timing",
                "step {}/{total} {} {:.2}s",
                i + 1,
                step.id,
                started.elapsed().as_secs_f64()
            );
            match applied {
                Ok(()) => {
                    ran += 1;
                    run.events.emit(Event::StepDone {
                        index: i + 1,
                        total,
                        step: step.id.clone(),
                    });
                    Ok(())
                }
                Err(StepError::Interrupted) => {
                    run.events.emit(Event::Interrupted {
                        step: step.id.clone(),
                    });
                    return Ok(RunEnd::Interrupted);
                }
                Err(StepError::Failed(e)) => Err(e),
            }
        };
        let record = plan
            .phase_mut(phase)
            .ok_or_else(|| anyhow::anyhow!("the plan has no {phase} phase"))?;
        match outcome {
            Ok(()) => {
                let entry = record.record(planned.journal_id, done_as, None);
                journal.append(phase, &entry)?;
            }
            Err(error) => {
                let entry =
                    record.record(planned.journal_id, StepStatus::Failed, Some(error.clone()));
                journal.append(phase, &entry)?;
                run.events.emit(Event::StepFailed {
                    index: i + 1,
                    total,
                    step: step.id.clone(),
                    error: error.clone(),
                });
                return Ok(RunEnd::Failed {
                    step: format!("{}/{total} {}", i + 1, step.description),
                    error,
                });
            }
        }
    }
    Ok(RunEnd::Completed { ran, skipped })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(strong: bool, transactional: bool) -> SqlAction {
        SqlAction {
            sql: "ALTER TABLE t SET SCHEMA s;".into(),
            done_check: "true".into(),
            undo: String::new(),
            transactional,
            strong_lock: strong,
            secret: None,
            read: None,
        }
    }

    #[test]
    fn strong_locks_get_a_short_timeout_in_their_transaction() {
        let policy = LockPolicy {
            timeout: Duration::from_millis(250),
            ..LockPolicy::default()
        };
        assert_eq!(
            body(&action(true, true), &policy),
            "BEGIN; SET LOCAL lock_timeout = '250ms'; ALTER TABLE t SET SCHEMA s; COMMIT"
        );
        assert_eq!(
            body(&action(false, true), &policy),
            "BEGIN; ALTER TABLE t SET SCHEMA s; COMMIT"
        );
        assert_eq!(
            body(&action(false, false), &policy),
            "ALTER TABLE t SET SCHEMA s"
        );
    }

    #[test]
    fn a_wait_marked_once_is_not_waited_for_again_once_recorded_done() {
        use crate::plan::{GateHints, PhaseRecord, Source};
        let wait = |once| Step {
            id: "caught up".into(),
            description: String::new(),
            target: super::super::Target::Source,
            action: Action::Wait(WaitAction {
                until: "false".into(),
                progress: None,
                unit: String::new(),
                every: Duration::from_millis(20),
                timeout: Duration::from_secs(1),
                on_timeout: OnTimeout::Fail,
                once,
            }),
        };
        let id = PhaseId::new("cutover", Some("orders"));
        let mut plan = Plan::new(
            Source {
                conninfo: "host=/tmp".into(),
                database: "db".into(),
            },
            crate::catalog::fingerprint::Fingerprint::from_objects(Default::default()),
        );
        let (once, every_time) = (wait(true), wait(false));
        plan.phases.push(PhaseRecord::planned(
            id.clone(),
            String::new(),
            GateHints::default(),
            vec![once.clone()],
        ));
        let settled = |plan: &Plan, step: &Step, done_as| {
            waited_for_once(
                plan,
                &id,
                &Planned {
                    journal_id: &step.id,
                    step,
                },
                done_as,
            )
        };
        // Not yet recorded: looked at.
        assert!(!settled(&plan, &once, StepStatus::Done));
        plan.phases[0].record("caught up", StepStatus::Done, None);
        assert!(settled(&plan, &once, StepStatus::Done));
        // A wait not marked once, and an undo run, look again.
        assert!(!settled(&plan, &every_time, StepStatus::Done));
        assert!(!settled(&plan, &once, StepStatus::Undone));
    }

    #[test]
    fn pauses_double_up_to_thirty_seconds() {
        let policy = LockPolicy::default();
        assert_eq!(policy.pause(0), Duration::from_secs(1));
        assert_eq!(policy.pause(3), Duration::from_secs(8));
        assert_eq!(policy.pause(10), Duration::from_secs(30));
    }
}
