//! Applying steps: the I/O half of the engine.
//!
//! One run holds carve's advisory lock on the source database for its whole length, so
//! two runs never interleave; a second run learns who holds it. Each step runs only
//! when its check says it is not done yet, inside its own transaction, and the plan's
//! journal is saved (atomically) after every step, so a run killed at any moment is
//! finished by running the same command again. Steps that take a strong lock wait for
//! it at most `lock_timeout` and are retried with backoff: a long transaction in
//! production makes carve wait, never every other client queued behind carve.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::Step;
use crate::conn::describe_db_error;
use crate::plan::{JournalFile, Plan, StepStatus};
use crate::sql::literal;
use crate::ui::Output;

/// The advisory lock every carve run takes on the source database: the two-key form,
/// so `pg_locks` shows it as classid 'carv' (0x63617276), objid 1.
const LOCK_CLASS: i32 = 0x6361_7276;
const LOCK_OBJECT: i32 = 1;

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

/// Another session holds carve's lock on this database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHeld {
    pub pid: i32,
    pub application: String,
    pub user: String,
    pub client: String,
    pub since: String,
}

impl fmt::Display for LockHeld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "another carve run holds the lock on this database: {:?} (its application_name: carve's process id and machine), server backend pid {}, user {}, from {}, connected since {}",
            self.application, self.pid, self.user, self.client, self.since
        )
    }
}

/// A session whose lock a step waited for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocker {
    pub pid: i32,
    pub application: String,
    pub user: String,
    pub state: String,
    pub transaction_since: String,
    pub query: String,
}

impl fmt::Display for Blocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pid {} (application {:?}, user {}, {}, transaction open since {}, last query: {})",
            self.pid,
            self.application,
            self.user,
            self.state,
            self.transaction_since,
            one_line(&self.query)
        )
    }
}

fn one_line(text: &str) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > 120 {
        format!("{}…", line.chars().take(120).collect::<String>())
    } else {
        line
    }
}

/// The two connections of a run: `work` holds the lock and runs the steps; `watch`
/// looks at what a waiting step waits for.
pub struct Session {
    pub work: Client,
    pub watch: Client,
    work_pid: i32,
}

impl Session {
    pub async fn new(work: Client, watch: Client) -> anyhow::Result<Session> {
        let work_pid = work.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
        Ok(Session {
            work,
            watch,
            work_pid,
        })
    }

    /// Takes carve's advisory lock for the rest of the session, or says who has it.
    pub async fn lock(&self) -> anyhow::Result<Result<(), LockHeld>> {
        let got: bool = self
            .work
            .query_one(
                "SELECT pg_try_advisory_lock($1, $2)",
                &[&LOCK_CLASS, &LOCK_OBJECT],
            )
            .await?
            .get(0);
        if got {
            return Ok(Ok(()));
        }
        let row = self
            .watch
            .query_opt(
                "SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.usename::text, ''),
                        coalesce(host(a.client_addr), 'a local socket'),
                        to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS TZ')
                 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                 WHERE l.locktype = 'advisory' AND l.granted
                   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                   AND l.classid::bigint = $1 AND l.objid::bigint = $2 AND l.objsubid = 2",
                &[&i64::from(LOCK_CLASS), &i64::from(LOCK_OBJECT)],
            )
            .await?;
        Ok(Err(match row {
            Some(row) => LockHeld {
                pid: row.get(0),
                application: row.get(1),
                user: row.get(2),
                client: row.get(3),
                since: row.get(4),
            },
            // Released between the two queries: say so rather than invent a holder.
            None => LockHeld {
                pid: 0,
                application: "(released just now; run again)".into(),
                user: String::new(),
                client: String::new(),
                since: String::new(),
            },
        }))
    }

    /// Whether each step's check says it is done, in one read-only transaction.
    pub async fn done(&self, steps: &[Step]) -> anyhow::Result<Vec<bool>> {
        self.watch
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
        let mut done = Vec::with_capacity(steps.len());
        let mut result = Ok(());
        for step in steps {
            match is_done(&self.watch, step).await {
                Ok(d) => done.push(d),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.watch.batch_execute("ROLLBACK").await?;
        result.map(|()| done)
    }

    /// Runs one step (already known not to be done), retrying lock timeouts. Ctrl-C
    /// (`interrupted`) cancels a waiting statement and ends a pause at once.
    async fn apply(
        &self,
        step: &Step,
        policy: &LockPolicy,
        out: &Output,
        interrupted: &AtomicBool,
    ) -> Result<(), StepError> {
        let body = body(step, policy);
        let mut seen_blockers: Vec<Blocker> = Vec::new();
        let attempts = if step.strong_lock {
            policy.retries + 1
        } else {
            1
        };
        for attempt in 0..attempts {
            let (result, blockers) = self.execute_watching(&body, policy, out, interrupted).await;
            if !blockers.is_empty() {
                seen_blockers = blockers;
            }
            match result {
                Ok(()) => return Ok(()),
                Err(e) => {
                    let _ = self.work.batch_execute("ROLLBACK").await;
                    if interrupted.load(Ordering::SeqCst) {
                        return Err(StepError::Interrupted);
                    }
                    let timed_out = e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE);
                    if timed_out && attempt + 1 < attempts {
                        let pause = policy.pause(attempt);
                        out.progress(&format!(
                            "  lock not granted within {} (attempt {}/{attempts}): other clients go first; trying again in {} (Ctrl-C stops carve cleanly)",
                            humantime::format_duration(policy.timeout),
                            attempt + 1,
                            humantime::format_duration(pause)
                        ));
                        tokio::select! {
                            _ = tokio::time::sleep(pause) => {}
                            _ = until_interrupted(interrupted) => return Err(StepError::Interrupted),
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
                            humantime::format_duration(policy.timeout)
                        )));
                    }
                    return Err(StepError::Failed(describe_db_error(&e)));
                }
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Runs `body` on `work`; if it is still running halfway through the lock timeout,
    /// asks `watch` which sessions it waits for and says so. On Ctrl-C the statement
    /// is cancelled (its transaction then rolls back) rather than left to finish.
    async fn execute_watching(
        &self,
        body: &str,
        policy: &LockPolicy,
        out: &Output,
        interrupted: &AtomicBool,
    ) -> (Result<(), tokio_postgres::Error>, Vec<Blocker>) {
        let run = self.work.batch_execute(body);
        tokio::pin!(run);
        let mut blockers = Vec::new();
        tokio::select! {
            result = &mut run => return (result, blockers),
            _ = tokio::time::sleep(policy.timeout / 2) => {}
            _ = until_interrupted(interrupted) => {}
        }
        if !interrupted.load(Ordering::SeqCst) {
            blockers = self.blockers().await.unwrap_or_default();
            if !blockers.is_empty() {
                let who: Vec<String> = blockers.iter().map(ToString::to_string).collect();
                out.progress(&format!("  waiting for a lock behind {}", who.join("; ")));
            }
            tokio::select! {
                result = &mut run => return (result, blockers),
                _ = until_interrupted(interrupted) => {}
            }
        }
        // Ctrl-C while the statement runs: cancel it from the other connection.
        let _ = self
            .watch
            .execute("SELECT pg_catalog.pg_cancel_backend($1)", &[&self.work_pid])
            .await;
        (run.await, blockers)
    }

    async fn blockers(&self) -> Result<Vec<Blocker>, tokio_postgres::Error> {
        let rows = self
            .watch
            .query(
                "SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.usename::text, ''),
                        coalesce(a.state, ''),
                        coalesce(to_char(a.xact_start, 'YYYY-MM-DD HH24:MI:SS TZ'), '(no transaction)'),
                        coalesce(a.query, '')
                 FROM pg_stat_activity a WHERE a.pid = ANY (pg_blocking_pids($1))
                 ORDER BY a.pid",
                &[&self.work_pid],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Blocker {
                pid: r.get(0),
                application: r.get(1),
                user: r.get(2),
                state: r.get(3),
                transaction_since: r.get(4),
                query: r.get(5),
            })
            .collect())
    }
}

/// Why a step did not complete.
enum StepError {
    /// It failed; the message says why (recorded in the journal).
    Failed(String),
    /// Ctrl-C: its transaction was cancelled and rolled back; nothing is recorded.
    Interrupted,
}

/// Resolves once Ctrl-C has been pressed.
async fn until_interrupted(interrupted: &AtomicBool) {
    while !interrupted.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn is_done(client: &Client, step: &Step) -> anyhow::Result<bool> {
    let row = client
        .query_one(&format!("SELECT ({})::boolean", step.done_check), &[])
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "checking whether step {:?} is done: {}",
                step.id,
                describe_db_error(&e)
            )
        })?;
    Ok(row.get::<_, Option<bool>>(0).unwrap_or(false))
}

/// The SQL sent for a step: in its own transaction, with the lock timeout for strong
/// locks.
fn body(step: &Step, policy: &LockPolicy) -> String {
    let sql = step.sql.trim().trim_end_matches(';');
    if !step.transactional {
        return sql.to_string();
    }
    let timeout = if step.strong_lock {
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

/// How a run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum RunEnd {
    /// Every step is in place.
    Completed { ran: usize, skipped: usize },
    /// A step failed; the journal says which and why. Earlier steps stay done.
    Failed { step: String, error: String },
    /// Ctrl-C between two steps.
    Interrupted,
}

/// Runs `steps` of phase `phase` in order. Each is skipped when its check says done,
/// otherwise applied; either way the journal records `done_as` for it, on disk (the
/// plan's journal file) before the next step. The plan is saved with every entry
/// folded in when the run ends, however it ends.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    session: &Session,
    phase: &str,
    steps: &[Planned<'_>],
    done_as: StepStatus,
    plan: &mut Plan,
    plan_path: &Path,
    policy: &LockPolicy,
    out: &Output,
    interrupted: &AtomicBool,
) -> anyhow::Result<RunEnd> {
    let mut journal = JournalFile::open(plan_path)?;
    let end = run_steps(
        session,
        phase,
        steps,
        done_as,
        plan,
        &mut journal,
        policy,
        out,
        interrupted,
    )
    .await;
    plan.save(plan_path)?;
    end
}

#[allow(clippy::too_many_arguments)]
async fn run_steps(
    session: &Session,
    phase: &str,
    steps: &[Planned<'_>],
    done_as: StepStatus,
    plan: &mut Plan,
    journal: &mut JournalFile,
    policy: &LockPolicy,
    out: &Output,
    interrupted: &AtomicBool,
) -> anyhow::Result<RunEnd> {
    let total = steps.len();
    let (mut ran, mut skipped) = (0, 0);
    for (i, planned) in steps.iter().enumerate() {
        if interrupted.load(Ordering::SeqCst) {
            return Ok(RunEnd::Interrupted);
        }
        let step = planned.step;
        if step.target != "source" {
            anyhow::bail!(
                "step {:?} runs on {:?}, which this carve cannot connect to yet",
                step.id,
                step.target
            );
        }
        let outcome = if is_done(&session.work, step).await? {
            skipped += 1;
            out.progress(&format!(
                "[{}/{total}] already done: {}",
                i + 1,
                step.description
            ));
            Ok(())
        } else {
            out.progress(&format!("[{}/{total}] {}", i + 1, step.description));
            tracing::debug!("step {:?}: {}", step.id, step.sql);
            let result = match super::secret::resolve(step) {
                Ok(resolved) => session.apply(&resolved, policy, out, interrupted).await,
                Err(e) => Err(StepError::Failed(e)),
            };
            let result = match result {
                Err(StepError::Interrupted) => return Ok(RunEnd::Interrupted),
                Err(StepError::Failed(e)) => Err(e),
                Ok(()) => Ok(()),
            };
            if result.is_ok() {
                ran += 1;
            }
            result
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

    fn step(strong: bool, transactional: bool) -> Step {
        Step {
            id: "x".into(),
            description: "x".into(),
            target: "source".into(),
            sql: "ALTER TABLE t SET SCHEMA s;".into(),
            done_check: "true".into(),
            undo: String::new(),
            transactional,
            strong_lock: strong,
            secret: None,
        }
    }

    #[test]
    fn strong_locks_get_a_short_timeout_in_their_transaction() {
        let policy = LockPolicy {
            timeout: Duration::from_millis(250),
            ..LockPolicy::default()
        };
        assert_eq!(
            body(&step(true, true), &policy),
            "BEGIN; SET LOCAL lock_timeout = '250ms'; ALTER TABLE t SET SCHEMA s; COMMIT"
        );
        assert_eq!(
            body(&step(false, true), &policy),
            "BEGIN; ALTER TABLE t SET SCHEMA s; COMMIT"
        );
        assert_eq!(
            body(&step(false, false), &policy),
            "ALTER TABLE t SET SCHEMA s"
        );
    }

    #[test]
    fn pauses_double_up_to_thirty_seconds() {
        let policy = LockPolicy::default();
        assert_eq!(policy.pause(0), Duration::from_secs(1));
        assert_eq!(policy.pause(3), Duration::from_secs(8));
        assert_eq!(policy.pause(10), Duration::from_secs(30));
    }
}
