//! The endpoints a run talks to, one per step target: a PostgreSQL `Session` (the
//! source, a domain's server) or a PgBouncer admin `Console`. Commands resolve each
//! target through the plan and `conn` (libpq conventions, no secret in the plan) and
//! hand the connections here; the executor reaches them only through `Endpoints`.

use std::collections::BTreeMap;
use std::fmt;

use tokio_postgres::{Client, SimpleQueryMessage};

use super::{Action, RowCheck, Step, Target};
use crate::conn::describe_db_error;

/// The advisory lock every carve run takes on each PostgreSQL endpoint it changes:
/// the two-key form, so `pg_locks` shows it as classid 'carv' (0x63617276), objid 1.
const LOCK_CLASS: i32 = 0x6361_7276;
const LOCK_OBJECT: i32 = 1;

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

/// The two connections of a PostgreSQL endpoint: `work` holds the lock and runs the
/// steps; `watch` reads the catalog, evaluates checks and waits, and looks at what a
/// waiting step waits for (and cancels it on Ctrl-C).
pub struct Session {
    pub work: Client,
    pub watch: Client,
    pub(crate) work_pid: i32,
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

    /// A boolean SQL expression, evaluated on `watch` in one round trip (the simple
    /// query protocol: a prepared statement would take two, once per step).
    pub async fn holds(&self, step: &str, expression: &str) -> anyhow::Result<bool> {
        let messages = self
            .watch
            .simple_query(&format!("SELECT ({expression})::boolean"))
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "checking whether step {step:?} is done: {}",
                    describe_db_error(&e)
                )
            })?;
        Ok(messages.iter().any(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0) == Some("t"),
            _ => false,
        }))
    }

    /// The figures of a wait's progress query: one row of two bigints.
    pub async fn progress(&self, query: &str) -> anyhow::Result<(Option<i64>, Option<i64>)> {
        let row = self
            .watch
            .query_one(query, &[])
            .await
            .map_err(|e| anyhow::anyhow!("progress query: {}", describe_db_error(&e)))?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    /// The sessions `work` waits for.
    pub(crate) async fn blockers(&self) -> Result<Vec<Blocker>, tokio_postgres::Error> {
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

    /// Cancels what `work` is running (Ctrl-C), from `watch`.
    pub(crate) async fn cancel_work(&self) {
        let _ = self
            .watch
            .execute("SELECT pg_catalog.pg_cancel_backend($1)", &[&self.work_pid])
            .await;
    }
}

/// A PgBouncer admin console: simple query protocol only, no transactions.
pub struct Console {
    client: Client,
    /// How to open another connection to it, for a command that may have to be
    /// abandoned (a `PAUSE` that times out).
    spec: Option<crate::conn::ConnSpec>,
}

/// One row of a console's answer: (column, value) pairs in order.
pub type ConsoleRow = Vec<(String, String)>;

impl Console {
    pub fn new(client: Client) -> Console {
        Console { client, spec: None }
    }

    /// A console that can open a connection of its own for a command with a timeout.
    pub fn reconnecting(client: Client, spec: crate::conn::ConnSpec) -> Console {
        Console {
            client,
            spec: Some(spec),
        }
    }

    /// Runs `command` on a connection of its own, giving up after `timeout` (or when
    /// `stop` resolves): the connection is then closed, so PgBouncer has no admin
    /// command of carve's pending. Err(None) when it gave up.
    pub async fn run_bounded(
        &self,
        command: &str,
        timeout: std::time::Duration,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), Option<String>> {
        let own = match &self.spec {
            Some(spec) => crate::conn::connect(spec)
                .await
                .map_err(|e| Some(e.to_string()))?,
            None => return Err(Some("no way to open a second console connection".into())),
        };
        let result = tokio::select! {
            r = own.simple_query(command) => r.map(|_| ()).map_err(|e| Some(describe_db_error(&e))),
            _ = tokio::time::sleep(timeout) => Err(None),
            _ = stop => Err(None),
        };
        drop(own);
        if result == Err(None) {
            // Let PgBouncer see the connection close before anything else is sent.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        result
    }

    /// Runs an admin command (`PAUSE app`, `RELOAD`, `SHOW DATABASES`) and returns
    /// the rows it answers with.
    pub async fn run(&self, command: &str) -> Result<Vec<ConsoleRow>, String> {
        let messages = self
            .client
            .simple_query(command)
            .await
            .map_err(|e| describe_db_error(&e))?;
        Ok(messages
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(row) => Some(
                    row.columns()
                        .iter()
                        .enumerate()
                        .map(|(i, c)| (c.name().to_string(), row.get(i).unwrap_or("").to_string()))
                        .collect(),
                ),
                _ => None,
            })
            .collect())
    }

    /// Whether a row check holds now.
    pub async fn holds(&self, check: &RowCheck) -> Result<bool, String> {
        let rows = self.run(&check.show).await?;
        Ok(check.holds(rows.iter().map(Vec::as_slice)))
    }
}

/// One connection set per target.
pub enum Endpoint {
    Postgres(Session),
    Console(Console),
}

/// Every endpoint of a run, by target. The source is always there.
pub struct Endpoints {
    endpoints: BTreeMap<Target, Endpoint>,
}

impl Endpoints {
    /// The endpoints of a run on the source alone.
    pub fn source_only(source: Session) -> Endpoints {
        Endpoints {
            endpoints: BTreeMap::from([(Target::Source, Endpoint::Postgres(source))]),
        }
    }

    pub fn insert(&mut self, target: Target, endpoint: Endpoint) {
        self.endpoints.insert(target, endpoint);
    }

    pub fn source(&self) -> &Session {
        self.session(&Target::Source)
            .expect("the source is always an endpoint")
    }

    pub fn session(&self, target: &Target) -> anyhow::Result<&Session> {
        match self.endpoints.get(target) {
            Some(Endpoint::Postgres(s)) => Ok(s),
            Some(Endpoint::Console(_)) => {
                anyhow::bail!("{target} is a PgBouncer console, not a PostgreSQL server")
            }
            None => anyhow::bail!("no connection for step target {target}"),
        }
    }

    pub fn console(&self, target: &Target) -> anyhow::Result<&Console> {
        match self.endpoints.get(target) {
            Some(Endpoint::Console(c)) => Ok(c),
            Some(Endpoint::Postgres(_)) => {
                anyhow::bail!("{target} is a PostgreSQL server, not a PgBouncer console")
            }
            None => anyhow::bail!("no connection for step target {target}"),
        }
    }

    /// Whether `step` is in place: its check on its own endpoint.
    pub async fn is_done(&self, step: &Step) -> anyhow::Result<bool> {
        match &step.action {
            Action::Sql(a) => {
                self.session(&step.target)?
                    .holds(&step.id, &a.done_check)
                    .await
            }
            Action::Wait(w) => self.session(&step.target)?.holds(&step.id, &w.until).await,
            Action::Console(c) => self
                .console(&step.target)?
                .holds(&c.check)
                .await
                .map_err(|e| anyhow::anyhow!("checking step {:?}: {e}", step.id)),
            Action::PgbouncerEntry(e) => Ok(super::pgbouncer_file::read(&e.file, &e.entry)
                .map_err(|why| anyhow::anyhow!("checking step {:?}: {why}", step.id))?
                == e.to),
            Action::File(f) => super::local::file_is_done(f)
                .map_err(|why| anyhow::anyhow!("checking step {:?}: {why}", step.id)),
            // A hook has no check: it runs each time its step is reached.
            Action::Hook(_) => Ok(false),
        }
    }

    /// Whether each step's check says it is done (the dry-run), each PostgreSQL
    /// endpoint's checks in one read-only snapshot.
    pub async fn done(&self, steps: &[Step]) -> anyhow::Result<Vec<bool>> {
        for endpoint in self.endpoints.values() {
            if let Endpoint::Postgres(s) = endpoint {
                s.watch
                    .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?;
            }
        }
        let mut done = Vec::with_capacity(steps.len());
        let mut result = Ok(());
        for step in steps {
            match self.is_done(step).await {
                Ok(d) => done.push(d),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        for endpoint in self.endpoints.values() {
            if let Endpoint::Postgres(s) = endpoint {
                s.watch.batch_execute("ROLLBACK").await?;
            }
        }
        result.map(|()| done)
    }
}
