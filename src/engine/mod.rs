//! The step engine every database-changing phase runs on. A phase turns (plan,
//! catalog) into a list of `Step`s by a pure function; a step is plain data: where it
//! runs, its SQL, the check that says whether it is already done, its undo, and
//! whether it runs in a transaction. No closures and no connections here.
//!
//! `script.rs` renders steps as a psql script (the dry-run); the executor that applies
//! them with a lock and a checkpointed journal builds on the same data.

pub mod executor;
pub mod gate;
pub mod proof;
pub mod script;
pub mod secret;

use serde::{Deserialize, Serialize};

/// One change to one database, and everything needed to redo, skip or undo it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Stable and unique within a phase (`create-schema sales`), for the journal.
    pub id: String,
    /// One line for people: what this step does and why.
    pub description: String,
    /// Which database it runs in: a name the plan resolves to a connection
    /// (`source`, or a domain's server).
    pub target: String,
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
}

impl SecretInput {
    /// The file the secret is kept in.
    pub fn file(&self) -> &std::path::Path {
        match self {
            SecretInput::PasswordVerifier { file, .. } => file,
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
        }
    }
}

/// The psql variable a step's SQL names its secret by.
pub const SECRET_VARIABLE: &str = ":'carve_secret'";

impl Step {
    /// The step that undoes this one: its undo as the change, done when this step's
    /// check says the change is gone.
    pub fn reversed(&self) -> Step {
        Step {
            id: format!("undo {}", self.id),
            description: format!("undo: {}", self.description),
            target: self.target.clone(),
            sql: self.undo.clone(),
            done_check: format!("NOT ({})", self.done_check),
            undo: self.sql.clone(),
            transactional: self.transactional,
            strong_lock: self.strong_lock,
            // An undo takes back what the secret set; it needs none itself.
            secret: None,
        }
    }
}

/// The undo of a list of steps: each step reversed, last first.
pub fn undo_steps(steps: &[Step]) -> Vec<Step> {
    steps.iter().rev().map(Step::reversed).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(id: &str) -> Step {
        Step {
            id: id.into(),
            description: format!("do {id}"),
            target: "source".into(),
            sql: format!("CREATE SCHEMA {id}"),
            done_check: format!("EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = '{id}')"),
            undo: format!("DROP SCHEMA {id}"),
            transactional: true,
            strong_lock: false,
            secret: None,
        }
    }

    #[test]
    fn undo_runs_backwards_and_checks_the_opposite() {
        let undo = undo_steps(&[step("a"), step("b")]);
        assert_eq!(undo[0].id, "undo b");
        assert_eq!(undo[0].sql, "DROP SCHEMA b");
        assert_eq!(
            undo[0].done_check,
            "NOT (EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'b'))"
        );
        assert_eq!(undo[1].undo, "CREATE SCHEMA a");
    }
}
