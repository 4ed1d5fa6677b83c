//! The workload the source server itself recorded: `pg_stat_statements`, attributed to
//! services by role, and the connections open now (`pg_stat_activity`) for the
//! "connection counts" disintegrator. Thin I/O: rows go straight into a `Workload`.

use futures_util::{pin_mut, TryStreamExt};
use tokio_postgres::Client;

use super::{ServiceMap, Workload};

/// The `--workload` value that reads `pg_stat_statements` on the source.
pub const PG_STAT_STATEMENTS: &str = "pg_stat_statements";

/// How to make `pg_stat_statements` available, for the error when it is not.
fn how_to_enable(preloaded: bool) -> String {
    let mut steps = Vec::new();
    if !preloaded {
        steps.push(
            "add it to shared_preload_libraries in postgresql.conf (shared_preload_libraries = 'pg_stat_statements') and restart the server",
        );
    }
    steps.push("run CREATE EXTENSION pg_stat_statements; in this database");
    steps.push("let the services run for a representative while (a day or a week), then run discover again");
    format!(
        "to enable it: {}. Or give the workload as SQL files or server logs (--workload PATH)",
        steps.join(", then ")
    )
}

/// Loads every top-level statement `pg_stat_statements` recorded in the source's
/// database, each with its call count, as the workload of the role's service.
pub async fn load_stat_statements(
    client: &Client,
    services: &ServiceMap,
) -> anyhow::Result<Workload> {
    let preloaded = client
        .query_one("SELECT current_setting('shared_preload_libraries')", &[])
        .await?
        .get::<_, String>(0)
        .split(',')
        .any(|l| l.trim().trim_matches('"') == PG_STAT_STATEMENTS);
    let installed = client
        .query_opt(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_stat_statements'",
            &[],
        )
        .await?;
    let Some(schema) = installed.map(|r| r.get::<_, String>(0)) else {
        anyhow::bail!(
            "--workload {PG_STAT_STATEMENTS}: the extension is not installed in database {}; {}",
            current_database(client).await?,
            how_to_enable(preloaded)
        );
    };
    if !preloaded {
        anyhow::bail!(
            "--workload {PG_STAT_STATEMENTS}: the extension is installed but the server did not load it; {}",
            how_to_enable(false)
        );
    }
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await?
        .get(0);
    // Statements run inside functions are left out: carve reads function bodies itself.
    let toplevel = if version >= 140000 {
        "AND s.toplevel"
    } else {
        ""
    };
    let sql = format!(
        "SELECT r.rolname, s.query, s.calls, s.queryid::text
           FROM {} s LEFT JOIN pg_roles r ON r.oid = s.userid
          WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) {toplevel}
          ORDER BY s.calls DESC, s.queryid",
        crate::sql::qualified(&schema, "pg_stat_statements")
    );
    let rows = client
        .query_raw(&sql, std::iter::empty::<i32>())
        .await
        .map_err(|e| anyhow::anyhow!("--workload {PG_STAT_STATEMENTS}: {e}"))?;
    pin_mut!(rows);
    let mut workload = Workload::default();
    let mut hidden = 0u64;
    while let Some(row) = rows.try_next().await? {
        let role: Option<String> = row.get(0);
        let query: Option<String> = row.get(1);
        let calls: i64 = row.get(2);
        let id: Option<String> = row.get(3);
        let Some(query) = query.filter(|q| q != "<insufficient privilege>") else {
            hidden += 1;
            continue;
        };
        let Some(service) = services.service_for(role.as_deref(), None) else {
            workload.ignore(&format!("{PG_STAT_STATEMENTS}: ignored roles"));
            continue;
        };
        workload.saw(&service, role.as_deref(), None);
        let origin = format!(
            "{PG_STAT_STATEMENTS} queryid {}",
            id.unwrap_or_else(|| "?".into())
        );
        // pg_stat_statements knows no transactions: each entry stands alone.
        workload.add(
            &origin,
            &service,
            query,
            origin.clone(),
            calls.max(1) as u64,
        );
    }
    if hidden > 0 {
        workload.problems.push(super::Problem {
            origin: PG_STAT_STATEMENTS.into(),
            message: format!(
                "{hidden} statements of other roles are hidden from this role: connect as a superuser or GRANT pg_read_all_stats to it"
            ),
        });
    }
    workload.finish_sessions(false);
    Ok(workload)
}

/// Counts the client connections open now in the source's database, per service.
pub async fn count_connections(
    client: &Client,
    services: &ServiceMap,
    workload: &mut Workload,
) -> anyhow::Result<()> {
    let rows = client
        .query(
            "SELECT usename::text, application_name, count(*)
               FROM pg_stat_activity
              WHERE datname = current_database() AND backend_type = 'client backend'
                AND pid <> pg_backend_pid()
              GROUP BY 1, 2",
            &[],
        )
        .await?;
    let known = workload.services();
    for row in rows {
        let role: Option<String> = row.get(0);
        let app: Option<String> = row.get(1);
        let n: i64 = row.get(2);
        let Some(service) = services.service_for(role.as_deref(), app.as_deref()) else {
            continue;
        };
        // Only services the workload knows: anything else would be a service nobody
        // saw run a statement.
        if known.binary_search(&service).is_ok() {
            workload.saw(&service, role.as_deref(), app.as_deref());
            workload.seen.entry(service).or_default().connections_open += n as u64;
        }
    }
    Ok(())
}

async fn current_database(client: &Client) -> anyhow::Result<String> {
    Ok(client
        .query_one("SELECT current_database()::text", &[])
        .await?
        .get(0))
}
