//! The proof before apply: a phase's steps run inside a transaction that is always
//! rolled back, then each statement of the workload is probed as the role that will
//! run it. What would fail is known before anything changes.
//!
//! A probe is what PostgreSQL itself checks without running the statement: PREPARE
//! (names, columns, view rewriting) and EXPLAIN EXECUTE with NULL parameters (table
//! and column privileges, function EXECUTE, planning), plus boolean checks for what
//! is only checked at run time (a trigger's or function body's tables, the sequence
//! behind a column default). `SET ROLE` applies the role's privileges and memberships
//! exactly as a login would; role settings (`ALTER ROLE … SET`) do not apply, so a
//! probe sets the `search_path` its role logs in with (`Probe::search_path`).

use std::collections::hash_map::Entry;
use std::time::Duration;

use serde::Serialize;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::{Action, Step};
use crate::conn::describe_db_error;
use crate::sql::ident;

/// One statement the proof runs as a service's role.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    pub service: String,
    pub role: String,
    /// The `search_path` the role or database is set to (`ALTER ROLE … SET`), which
    /// `SET ROLE` does not apply: the probe sets it. None: the session's.
    pub search_path: Option<Vec<String>>,
    pub origin: String,
    pub sql: String,
    /// Privileges checked only when the statement runs, each with a boolean SQL check.
    pub runtime: Vec<RuntimeCheck>,
    /// The decisions that deny part of this statement: a failure is then expected.
    pub accepted_by: Vec<String>,
}

/// A privilege checked only when a statement runs (a trigger's or function body's
/// tables, the sequence behind a column default), as a boolean SQL expression.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RuntimeCheck {
    pub what: String,
    pub check: String,
}

/// How one statement fared.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeResult {
    pub service: String,
    pub role: String,
    pub origin: String,
    pub sql: String,
    /// What would fail as the role, or nothing when it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// It fails already as carve's own (superuser) connection: not a privilege
    /// matter, and not restrict's doing.
    pub fails_already: bool,
    /// The decisions that deny part of it: a failure the plan expects.
    pub accepted_by: Vec<String>,
    /// The run-time checks the probe made (to probe again the same way).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub runtime: Vec<RuntimeCheck>,
}

impl ProbeResult {
    /// A failure the plan has not accepted: restrict must not apply.
    pub fn is_unexpected(&self) -> bool {
        self.error.is_some() && !self.fails_already && self.accepted_by.is_empty()
    }

    /// A failure the plan's decisions ask for.
    pub fn is_expected(&self) -> bool {
        self.error.is_some() && !self.fails_already && !self.accepted_by.is_empty()
    }
}

/// Probes one statement as the connection's current role: `None` when it would run,
/// else every reason it would not. Outside a transaction (inside one, the proof wraps
/// each part in a savepoint). Leaves no prepared statement behind.
pub async fn probe(client: &Client, sql: &str, runtime: &[RuntimeCheck]) -> Option<String> {
    let explained = explain(client, sql)
        .await
        .err()
        .map(|e| describe_db_error(&e));
    let _ = client.batch_execute("DEALLOCATE carve_probe").await;
    combine(explained, runtime_problems(client, runtime).await)
}

fn combine(explained: Option<String>, runtime: Vec<String>) -> Option<String> {
    let problems: Vec<String> = explained.into_iter().chain(runtime).collect();
    (!problems.is_empty()).then(|| problems.join("; "))
}

/// The run-time checks that say no (or cannot be evaluated).
async fn runtime_problems(client: &Client, runtime: &[RuntimeCheck]) -> Vec<String> {
    if runtime.is_empty() {
        return Vec::new();
    }
    let checks = runtime
        .iter()
        .map(|c| c.check.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let rows = match client.simple_query(&format!("SELECT {checks}")).await {
        Ok(rows) => rows,
        Err(e) => return vec![describe_db_error(&e)],
    };
    let mut problems = Vec::new();
    for message in rows {
        if let SimpleQueryMessage::Row(row) = message {
            for (i, check) in runtime.iter().enumerate() {
                if row.get(i) != Some("t") {
                    problems.push(format!("no {}", check.what));
                }
            }
        }
    }
    problems
}

/// For the rest of the transaction, the probe's `search_path`, else the session's.
async fn set_search_path(client: &Client, probe: &Probe, session: &str) -> anyhow::Result<()> {
    let path = match &probe.search_path {
        Some(names) => crate::sql::ident_list(names),
        None => session.to_string(),
    };
    client
        .execute(
            "SELECT pg_catalog.set_config('search_path', $1, true)",
            &[&path],
        )
        .await?;
    Ok(())
}

/// PREPARE, then EXPLAIN EXECUTE with a NULL for each parameter.
async fn explain(client: &Client, sql: &str) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(&format!("PREPARE carve_probe AS {sql}"))
        .await?;
    let result = async {
        let mut n = 0usize;
        for message in client
            .simple_query(
                "SELECT coalesce(array_length(parameter_types, 1), 0) FROM pg_catalog.pg_prepared_statements WHERE name = 'carve_probe'",
            )
            .await?
        {
            if let SimpleQueryMessage::Row(row) = message {
                n = row.get(0).and_then(|v| v.parse().ok()).unwrap_or(0);
            }
        }
        let args = if n > 0 {
            format!("({})", vec!["NULL"; n].join(", "))
        } else {
            String::new()
        };
        client
            .batch_execute(&format!("EXPLAIN EXECUTE carve_probe{args}"))
            .await
    }
    .await;
    result
}

/// Probes inside the proof's transaction: each part in a savepoint, so a failure
/// leaves the transaction usable; the prepared statement is dropped whatever happened.
async fn probe_in_transaction(
    client: &Client,
    sql: &str,
    runtime: &[RuntimeCheck],
) -> anyhow::Result<Option<String>> {
    client.batch_execute("SAVEPOINT carve_probe").await?;
    let explained = explain(client, sql)
        .await
        .err()
        .map(|e| describe_db_error(&e));
    client
        .batch_execute("ROLLBACK TO SAVEPOINT carve_probe")
        .await?;
    // Prepared statements outlive a rollback.
    let _ = client.batch_execute("DEALLOCATE carve_probe").await;
    let runtime = runtime_problems(client, runtime).await;
    client
        .batch_execute("ROLLBACK TO SAVEPOINT carve_probe; RELEASE SAVEPOINT carve_probe")
        .await?;
    Ok(combine(explained, runtime))
}

/// Runs `steps` and then every probe in one transaction, and rolls it back.
/// A step that fails stops the proof with its error: the plan would fail there too.
/// `prelude` (SQL, may be empty) runs first: the session settings the roles will
/// have, such as the `search_path` a login role gets on a domain's server (`SET
/// ROLE` does not apply a role's own settings).
pub async fn prove(
    client: &Client,
    prelude: &str,
    steps: &[&Step],
    probes: &[Probe],
    lock_timeout: Duration,
) -> anyhow::Result<Vec<ProbeResult>> {
    client
        .batch_execute(&format!(
            "BEGIN; SET LOCAL lock_timeout = '{}ms'; {prelude}",
            lock_timeout.as_millis()
        ))
        .await?;
    let result = prove_inside(client, steps, probes).await;
    // Always rolled back: nothing the proof did remains.
    let rolled_back = client.batch_execute("ROLLBACK").await;
    let results = result?;
    rolled_back?;
    Ok(results)
}

async fn prove_inside(
    client: &Client,
    steps: &[&Step],
    probes: &[Probe],
) -> anyhow::Result<Vec<ProbeResult>> {
    // The session's search_path (the prelude's), for probes without their own.
    let session_path: String = client
        .query_one("SELECT pg_catalog.current_setting('search_path')", &[])
        .await?
        .get(0);
    // As carve's own connection first: what fails already is not restrict's doing.
    let mut baseline = std::collections::HashMap::new();
    for p in probes {
        if let Entry::Vacant(entry) = baseline.entry((p.sql.as_str(), &p.search_path)) {
            set_search_path(client, p, &session_path).await?;
            let outcome = probe_in_transaction(client, &p.sql, &[]).await?;
            entry.insert(outcome.is_some());
        }
    }
    // Only SQL changes what a statement is checked on; a step with a secret (a
    // password) does not either.
    let changes = steps.iter().filter_map(|s| match &s.action {
        Action::Sql(a) if a.secret.is_none() => Some((s, a)),
        _ => None,
    });
    for (step, action) in changes {
        client.batch_execute(&action.sql).await.map_err(|e| {
            anyhow::anyhow!(
                "step {} fails in the proof: {}",
                step.id,
                describe_db_error(&e)
            )
        })?;
    }
    let mut results = Vec::with_capacity(probes.len());
    for p in probes {
        set_search_path(client, p, &session_path).await?;
        client
            .batch_execute(&format!("SET LOCAL ROLE {}", ident(&p.role)))
            .await?;
        let error = probe_in_transaction(client, &p.sql, &p.runtime).await?;
        client.batch_execute("RESET ROLE").await?;
        results.push(ProbeResult {
            service: p.service.clone(),
            role: p.role.clone(),
            origin: p.origin.clone(),
            sql: p.sql.clone(),
            error,
            fails_already: baseline
                .get(&(p.sql.as_str(), &p.search_path))
                .copied()
                .unwrap_or(false),
            accepted_by: p.accepted_by.clone(),
            runtime: p.runtime.clone(),
        });
    }
    Ok(results)
}
