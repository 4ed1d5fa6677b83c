//! A step: one change (or one wait) on one endpoint, as plain data in the plan file.
//!
//! `Step { id, description, target, action }`. The target says where it runs (the
//! source, a domain's server, a PgBouncer admin console); the action says what it
//! does, how to tell whether it is done, and how to take it back:
//!
//! - `Sql`: SQL with a boolean check and an undo, in a transaction or not, with a
//!   short lock timeout when it takes a strong lock (today's steps);
//! - `Wait`: a check polled until it is true (a copy finishing, lag falling), with a
//!   progress query a bar can show, a timeout and what to do then;
//! - `Console`: an admin command of PgBouncer's console, which speaks only the simple
//!   query protocol: no transactions, and its check is a `SHOW` and a predicate on one
//!   row of it;
//! - `PgbouncerEntry`: one `[databases]` entry of PgBouncer's configuration file
//!   pointed at another server (a file carve rewrites atomically; `RELOAD` on the
//!   console makes PgBouncer read it);
//! - `File` and `Hook` (target `local`, the machine carve runs on): a file written
//!   whole and atomically (a service's connection settings), and a command run by
//!   the shell (what makes services read them).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One change to one endpoint, and everything needed to redo, skip or undo it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Stable and unique within a phase (`create schema sales`), for the journal.
    pub id: String,
    /// One line for people: what this step does and why.
    pub description: String,
    /// Where it runs.
    pub target: Target,
    pub action: Action,
}

/// Where a step runs, resolved through the plan into a connection (no secret in the
/// plan): `source`, `domain:NAME` (that domain's own server), `console:NAME` (a
/// PgBouncer admin console the plan names), `local` (files and commands on the
/// machine carve runs on: no connection).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Target {
    Source,
    Domain(String),
    Console(String),
    Local,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Source => f.write_str("source"),
            Target::Domain(name) => write!(f, "domain:{name}"),
            Target::Console(name) => write!(f, "console:{name}"),
            Target::Local => f.write_str("local"),
        }
    }
}

impl From<Target> for String {
    fn from(target: Target) -> String {
        target.to_string()
    }
}

impl TryFrom<String> for Target {
    type Error = String;

    fn try_from(text: String) -> Result<Target, String> {
        if text == "source" {
            return Ok(Target::Source);
        }
        if text == "local" {
            return Ok(Target::Local);
        }
        match text.split_once(':') {
            Some(("domain", name)) if !name.is_empty() => Ok(Target::Domain(name.into())),
            Some(("console", name)) if !name.is_empty() => Ok(Target::Console(name.into())),
            _ => Err(format!(
                "unknown step target {text:?}: expected \"source\", \"domain:NAME\", \"console:NAME\" or \"local\""
            )),
        }
    }
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Action {
    Sql(SqlAction),
    Wait(WaitAction),
    Console(ConsoleAction),
    PgbouncerEntry(PgbouncerEntry),
    File(FileAction),
    Hook(HookAction),
}

/// A file written whole, atomically (a temporary file beside it, fsynced, renamed),
/// or removed when `content` is none: done when it is so. Its undo puts back
/// `previous` (none: there was no file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAction {
    pub path: std::path::PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
}

/// A command run by `sh -c` with `env` added to carve's environment; it succeeds
/// when it exits 0. It has no check (it runs each time its step is reached, so it
/// must be safe to run again); its undo is the same command with `undo_env`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookAction {
    pub command: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undo_env: Vec<(String, String)>,
}

/// SQL on a PostgreSQL endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlAction {
    /// The change.
    pub sql: String,
    /// A boolean SQL expression, true when the change is already in place.
    pub done_check: String,
    /// What reverses the change (run when the check says it is in place).
    pub undo: String,
    /// Runs inside `BEGIN … COMMIT` (false for what cannot, like `CREATE INDEX
    /// CONCURRENTLY`).
    pub transactional: bool,
    /// Takes a lock other clients would queue behind: run with a short
    /// `lock_timeout`, retried with backoff.
    pub strong_lock: bool,
    /// A secret the change needs, fetched when the step runs and never stored: `sql`
    /// names it as the psql variable `:'carve_secret'`, and the executor puts the
    /// secret's SQL literal there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretInput>,
    /// A value the change needs from another endpoint, read when the step runs (a
    /// sequence's position on the server it comes from): `sql` names it as the psql
    /// variable `:'carve_read'`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<Reading>,
}

/// A query on another endpoint whose one value (text, or NULL) a step's SQL uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reading {
    pub on: Target,
    pub query: String,
}

/// The psql variable a step's SQL names a `Reading`'s value by.
pub const READ_VARIABLE: &str = ":'carve_read'";

/// A condition on a PostgreSQL endpoint, polled until it holds. A wait changes
/// nothing, so its undo is nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitAction {
    /// A boolean SQL expression; the wait is over (the step done) when it is true.
    pub until: String,
    /// A query returning one row `(done, total)` (two bigints) for a progress bar:
    /// rows copied of rows to copy, bytes behind of bytes allowed …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// What the figures count (`tables`, `bytes`), for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub unit: String,
    /// How long between two looks.
    #[serde(with = "humantime_serde_compat")]
    pub every: Duration,
    /// How long at most.
    #[serde(with = "humantime_serde_compat")]
    pub timeout: Duration,
    pub on_timeout: OnTimeout,
    /// Waited for once per run of its phase: when the phase's journal records it
    /// done, a resumed run goes past it without looking again. For a wait on a
    /// moment (every write before the fence applied on the other side) whose
    /// subject a later step of the same run removes (the stream is turned
    /// around): looking again could never succeed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub once: bool,
}

/// What a wait that ran out of time does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnTimeout {
    /// The step fails (recorded): the run stops, and running the command again
    /// waits again.
    Fail,
    /// The step is recorded done and the run goes on (a wait that only paces).
    Continue,
}

/// An admin command on a PgBouncer console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleAction {
    /// `PAUSE app`, `RESUME app`, `RELOAD` …
    pub command: String,
    /// Done when this holds.
    pub check: RowCheck,
    /// The command that reverses it, and when that is done.
    pub undo: String,
    pub undo_check: RowCheck,
    /// How long the command may take (`PAUSE` waits for running transactions).
    /// When it runs out, the command's connection is closed, so nothing is left
    /// pending on the console, and the undo is sent on a fresh one: PgBouncer hangs a
    /// `PAUSE` that a `RESUME` races (pgbouncer#715).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "humantime_option"
    )]
    pub timeout: Option<Duration>,
}

/// Where a PgBouncer database entry points: the parts of its connection string carve
/// changes (the rest, pool sizes or a pinned user, is left as it is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryTarget {
    pub host: String,
    pub port: u16,
    pub dbname: String,
}

/// Database entry `entry` of PgBouncer's configuration file `file` made to point at
/// `to`; its undo points it back at `from`. The file is rewritten atomically (a new
/// file renamed over it, with the old one's owner and mode) and PgBouncer reads it
/// at the next `RELOAD`, a separate console step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgbouncerEntry {
    pub file: std::path::PathBuf,
    pub entry: String,
    pub to: EntryTarget,
    pub from: EntryTarget,
}

/// A check on a console: `show` (`SHOW DATABASES`) has a row whose `key_column`
/// is `key`, and its `column` is `equals`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowCheck {
    pub show: String,
    pub key_column: String,
    pub key: String,
    pub column: String,
    pub equals: String,
    /// Further columns of the same row and the values they must have.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub and: Vec<(String, String)>,
}

impl SqlAction {
    /// A change run in its own transaction, taking no strong lock and needing no
    /// secret: most steps.
    pub fn transactional(sql: String, done_check: String, undo: String) -> SqlAction {
        SqlAction {
            sql,
            done_check,
            undo,
            transactional: true,
            strong_lock: false,
            secret: None,
            read: None,
        }
    }
}

impl SqlAction {
    /// A change with nothing to undo that runs each time it is reached: a look that
    /// fails when something is wrong, ANALYZE, a value that only moves forward.
    pub fn always(sql: String) -> SqlAction {
        SqlAction::transactional(sql, "false".into(), "SELECT 1;".into())
    }
}

impl EntryTarget {
    pub fn describe(&self) -> String {
        format!(
            "host={} port={} dbname={}",
            self.host, self.port, self.dbname
        )
    }
}

impl RowCheck {
    /// PgBouncer's `SHOW DATABASES` row of database entry `name` has `column` =
    /// `equals` (`paused` = `1`, `host` = the new server …).
    pub fn pgbouncer_database(name: &str, column: &str, equals: &str) -> RowCheck {
        RowCheck {
            show: "SHOW DATABASES".into(),
            key_column: "name".into(),
            key: name.into(),
            column: column.into(),
            equals: equals.into(),
            and: Vec::new(),
        }
    }

    /// The same check, and `column` = `equals` in the same row.
    pub fn and(mut self, column: &str, equals: &str) -> RowCheck {
        self.and.push((column.into(), equals.into()));
        self
    }

    /// Whether `rows` (column name → value, as the console sent them) satisfy it.
    pub fn holds<'r>(&self, rows: impl IntoIterator<Item = &'r [(String, String)]>) -> bool {
        let value = |row: &'r [(String, String)], column: &str| {
            row.iter()
                .find(|(name, _)| name == column)
                .map(|(_, v)| v.as_str())
        };
        rows.into_iter().any(|row| {
            value(row, &self.key_column) == Some(self.key.as_str())
                && value(row, &self.column) == Some(self.equals.as_str())
                && self
                    .and
                    .iter()
                    .all(|(column, equals)| value(row, column) == Some(equals.as_str()))
        })
    }

    /// For people and the dry-run script.
    pub fn describe(&self) -> String {
        let mut wanted = format!("{} = {}", self.column, self.equals);
        for (column, equals) in &self.and {
            wanted.push_str(&format!(", {column} = {equals}"));
        }
        format!(
            "{} shows {wanted} for {} = {}",
            self.show, self.key_column, self.key
        )
    }
}

/// Where a step's secret comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SecretInput {
    /// The SCRAM verifier of `role`'s password in the password file (the line for
    /// host, port, database and role), a new password being generated and appended
    /// there first when the file has none. The password itself never reaches the
    /// server, the plan or the output.
    PasswordVerifier {
        file: std::path::PathBuf,
        host: String,
        port: u16,
        database: String,
        role: String,
    },
    /// A connection string (`conninfo`, without password) completed with `role`'s
    /// password from the password file (generated and appended when missing): what a
    /// subscription needs to reach its publisher. PostgreSQL keeps it in
    /// `pg_subscription`; carve keeps it nowhere but the file.
    ConninfoWithPassword {
        file: std::path::PathBuf,
        host: String,
        port: u16,
        database: String,
        role: String,
        conninfo: String,
    },
    /// `role`'s password as the source server keeps it (`pg_authid.rolpassword`: its
    /// SCRAM verifier), read from the source when the step runs, or NULL when it has
    /// none: how a role made on a domain's server logs in with the same password
    /// without carve ever knowing it.
    VerifierOnSource { role: String },
}

impl SecretInput {
    /// The file the secret is kept in (none for one read from the source).
    pub fn file(&self) -> Option<&std::path::Path> {
        match self {
            SecretInput::PasswordVerifier { file, .. }
            | SecretInput::ConninfoWithPassword { file, .. } => Some(file),
            SecretInput::VerifierOnSource { .. } => None,
        }
    }

    /// What the secret is, for people (never its value).
    pub fn describe(&self) -> String {
        match self {
            SecretInput::PasswordVerifier { file, role, .. } => format!(
                "the password of role {} from {}",
                crate::sql::display_ident(role),
                file.display()
            ),
            SecretInput::ConninfoWithPassword { file, role, .. } => format!(
                "a connection as role {} with its password from {}",
                crate::sql::display_ident(role),
                file.display()
            ),
            SecretInput::VerifierOnSource { role } => format!(
                "the password of role {} as the source keeps it (pg_authid)",
                crate::sql::display_ident(role)
            ),
        }
    }
}

/// The psql variable a step's SQL names its secret by.
pub const SECRET_VARIABLE: &str = ":'carve_secret'";

impl Step {
    /// A SQL step on `target`.
    pub fn sql(id: String, description: String, target: Target, action: SqlAction) -> Step {
        Step {
            id,
            description,
            target,
            action: Action::Sql(action),
        }
    }

    /// The SQL action, if this is a SQL step.
    pub fn sql_action(&self) -> Option<&SqlAction> {
        match &self.action {
            Action::Sql(sql) => Some(sql),
            _ => None,
        }
    }

    /// The step that undoes this one: its undo as the change, done when this step's
    /// check says the change is gone. A wait undoes nothing: its reverse is done at
    /// once.
    pub fn reversed(&self) -> Step {
        let action = match &self.action {
            Action::Sql(a) => Action::Sql(SqlAction {
                sql: a.undo.clone(),
                done_check: format!("NOT ({})", a.done_check),
                undo: a.sql.clone(),
                transactional: a.transactional,
                strong_lock: a.strong_lock,
                // An undo takes back what the secret set; it needs none itself.
                secret: None,
                read: None,
            }),
            Action::Wait(w) => Action::Wait(WaitAction {
                until: "true".into(),
                progress: None,
                ..w.clone()
            }),
            Action::Console(c) => Action::Console(ConsoleAction {
                command: c.undo.clone(),
                check: c.undo_check.clone(),
                undo: c.command.clone(),
                undo_check: c.check.clone(),
                timeout: None,
            }),
            Action::PgbouncerEntry(e) => Action::PgbouncerEntry(PgbouncerEntry {
                to: e.from.clone(),
                from: e.to.clone(),
                ..e.clone()
            }),
            Action::File(f) => Action::File(FileAction {
                path: f.path.clone(),
                content: f.previous.clone(),
                previous: f.content.clone(),
            }),
            Action::Hook(h) => Action::Hook(HookAction {
                command: h.command.clone(),
                env: h.undo_env.clone(),
                undo_env: h.env.clone(),
            }),
        };
        Step {
            id: format!("undo {}", self.id),
            description: format!("undo: {}", self.description),
            target: self.target.clone(),
            action,
        }
    }
}

/// The undo of a list of steps: each step reversed, last first.
pub fn undo_steps(steps: &[Step]) -> Vec<Step> {
    steps.iter().rev().map(Step::reversed).collect()
}

/// An optional duration in the plan, as people write it.
mod humantime_option {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => super::humantime_serde_compat::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| humantime::parse_duration(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Durations in the plan as people write them (`500ms`, `2m 30s`).
mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*value).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn step(id: &str) -> Step {
        Step::sql(
            id.into(),
            format!("do {id}"),
            Target::Source,
            SqlAction {
                sql: format!("CREATE SCHEMA {id}"),
                done_check: format!("EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = '{id}')"),
                undo: format!("DROP SCHEMA {id}"),
                transactional: true,
                strong_lock: false,
                secret: None,
                read: None,
            },
        )
    }

    fn pause() -> Step {
        let check = |paused: &str| RowCheck::pgbouncer_database("app", "paused", paused);
        Step {
            id: "pause app".into(),
            description: "clients of app queue".into(),
            target: Target::Console("bouncer".into()),
            action: Action::Console(ConsoleAction {
                command: "PAUSE app".into(),
                check: check("1"),
                undo: "RESUME app".into(),
                undo_check: check("0"),
                timeout: None,
            }),
        }
    }

    #[test]
    fn undo_runs_backwards_and_checks_the_opposite() {
        let undo = undo_steps(&[step("a"), step("b")]);
        assert_eq!(undo[0].id, "undo b");
        let b = undo[0].sql_action().unwrap();
        assert_eq!(b.sql, "DROP SCHEMA b");
        assert_eq!(
            b.done_check,
            "NOT (EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'b'))"
        );
        assert_eq!(undo[1].sql_action().unwrap().undo, "CREATE SCHEMA a");

        let resume = pause().reversed();
        let Action::Console(c) = &resume.action else {
            panic!("{resume:?}")
        };
        assert_eq!(
            (c.command.as_str(), c.check.equals.as_str()),
            ("RESUME app", "0")
        );
        assert_eq!(resume.reversed().action, pause().action);
    }

    #[test]
    fn targets_read_and_write_as_plain_words() {
        for (text, target) in [
            ("source", Target::Source),
            ("domain:sales", Target::Domain("sales".into())),
            ("console:edge 1", Target::Console("edge 1".into())),
        ] {
            assert_eq!(Target::try_from(text.to_string()).unwrap(), target);
            assert_eq!(String::from(target), text);
        }
        for bad in ["", "domain:", "server:x", "Source"] {
            assert!(Target::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_action_round_trips_through_toml() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Steps {
            steps: Vec<Step>,
        }
        let wait = Step {
            id: "copy".into(),
            description: "the initial copy".into(),
            target: Target::Domain("sales".into()),
            action: Action::Wait(WaitAction {
                until: "NOT EXISTS (SELECT 1 FROM pg_subscription_rel WHERE srsubstate <> 'r')"
                    .into(),
                progress: Some("SELECT 1::bigint, 2::bigint".into()),
                unit: "tables".into(),
                every: Duration::from_millis(500),
                timeout: Duration::from_secs(3600),
                on_timeout: OnTimeout::Fail,
                once: false,
            }),
        };
        let all = Steps {
            steps: vec![step("a"), wait, pause()],
        };
        let text = toml::to_string(&all).unwrap();
        assert!(text.contains("kind = \"wait\""), "{text}");
        assert!(text.contains("every = \"500ms\""), "{text}");
        assert!(text.contains("target = \"console:bouncer\""), "{text}");
        assert_eq!(toml::from_str::<Steps>(&text).unwrap(), all);
    }

    #[test]
    fn a_row_check_looks_at_the_row_of_its_key() {
        let check = RowCheck {
            show: "SHOW DATABASES".into(),
            key_column: "name".into(),
            key: "app".into(),
            column: "paused".into(),
            equals: "1".into(),
            and: Vec::new(),
        };
        let row = |name: &str, paused: &str| {
            vec![
                ("name".to_string(), name.to_string()),
                ("paused".to_string(), paused.to_string()),
            ]
        };
        let rows = [row("other", "1"), row("app", "0")];
        assert!(!check.holds(rows.iter().map(Vec::as_slice)));
        let rows = [row("other", "0"), row("app", "1")];
        assert!(check.holds(rows.iter().map(Vec::as_slice)));
    }
}
