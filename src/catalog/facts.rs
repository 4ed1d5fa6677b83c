//! Facts about a server that a phase's preflight weighs but that are not part of the
//! catalog (they change all the time and must not make a plan stale): settings,
//! replication slots and WAL senders in use, large objects, the oldest open
//! transaction, which tables already hold rows. Read-only queries.

use tokio_postgres::Client;

use super::QualName;
use crate::conn::describe_db_error;
use crate::sql::{literal, qualified};

/// What a preflight needs to know about a server.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerFacts {
    pub version: String,
    pub version_num: i32,
    pub wal_level: String,
    pub max_replication_slots: i32,
    pub replication_slots_used: i32,
    pub max_wal_senders: i32,
    pub wal_senders_used: i32,
    pub max_logical_replication_workers: i32,
    /// Logical replication workers running now (other subscriptions'), which take
    /// from both limits.
    pub logical_workers_used: i32,
    pub max_worker_processes: i32,
    /// Megabytes; -1 for unlimited.
    pub max_slot_wal_keep_size: i64,
    /// Large objects in the database (`pg_largeobject_metadata`).
    pub large_objects: i64,
    /// The oldest open transaction of another client backend: its age in seconds and
    /// its pid.
    pub oldest_transaction: Option<(f64, i32)>,
}

impl ServerFacts {
    pub async fn read(client: &Client) -> anyhow::Result<ServerFacts> {
        let fail = |e: tokio_postgres::Error| {
            anyhow::anyhow!("reading the server's settings: {}", describe_db_error(&e))
        };
        let row = client
            .query_one(
                "SELECT current_setting('server_version'),
                        current_setting('server_version_num')::int4,
                        current_setting('wal_level'),
                        current_setting('max_replication_slots')::int4,
                        (SELECT count(*) FROM pg_catalog.pg_replication_slots)::int4,
                        current_setting('max_wal_senders')::int4,
                        (SELECT count(*) FROM pg_catalog.pg_stat_replication)::int4,
                        current_setting('max_logical_replication_workers')::int4,
                        current_setting('max_worker_processes')::int4,
                        CASE WHEN current_setting('max_slot_wal_keep_size') = '-1' THEN -1
                             ELSE pg_size_bytes(current_setting('max_slot_wal_keep_size')) / 1048576 END::int8,
                        (SELECT count(*) FROM pg_catalog.pg_largeobject_metadata)::int8,
                        (SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE backend_type = 'logical replication worker')::int4",
                &[],
            )
            .await
            .map_err(fail)?;
        let oldest = client
            .query_opt(
                "SELECT extract(epoch FROM now() - xact_start)::float8, pid
                 FROM pg_catalog.pg_stat_activity
                 WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid()
                   AND backend_type = 'client backend'
                 ORDER BY xact_start LIMIT 1",
                &[],
            )
            .await
            .map_err(fail)?;
        Ok(ServerFacts {
            version: row.get(0),
            version_num: row.get(1),
            wal_level: row.get(2),
            max_replication_slots: row.get(3),
            replication_slots_used: row.get(4),
            max_wal_senders: row.get(5),
            wal_senders_used: row.get(6),
            max_logical_replication_workers: row.get(7),
            max_worker_processes: row.get(8),
            max_slot_wal_keep_size: row.get(9),
            large_objects: row.get(10),
            logical_workers_used: row.get(11),
            oldest_transaction: oldest.map(|r| (r.get(0), r.get(1))),
        })
    }
}

/// The tables of `schema` that hold at least one row (on a move's target, where
/// the initial copy needs them empty).
pub async fn non_empty_tables(client: &Client, schema: &str) -> anyhow::Result<Vec<QualName>> {
    let rows = client
        .query(
            &format!(
                "SELECT c.relname::text FROM pg_catalog.pg_class c
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = {} AND c.relkind IN ('r', 'p') ORDER BY 1",
                literal(schema).map_err(|e| anyhow::anyhow!(e))?
            ),
            &[],
        )
        .await
        .map_err(|e| anyhow::anyhow!("listing tables of {schema}: {}", describe_db_error(&e)))?;
    let mut out = Vec::new();
    for row in rows {
        let name: String = row.get(0);
        let any: bool = client
            .query_one(
                &format!("SELECT EXISTS (SELECT 1 FROM {})", qualified(schema, &name)),
                &[],
            )
            .await
            .map_err(|e| anyhow::anyhow!("reading {schema}.{name}: {}", describe_db_error(&e)))?
            .get(0);
        if any {
            out.push(QualName::new(schema, &name));
        }
    }
    Ok(out)
}

/// Every type outside the system schemas (enums, domains, composites, extensions'
/// types, and tables' row types), by schema and name.
pub async fn user_types(client: &Client) -> anyhow::Result<Vec<QualName>> {
    let rows = client
        .query(
            "SELECT n.nspname::text, t.typname::text FROM pg_catalog.pg_type t
             JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND n.nspname !~ '^pg_toast'",
            &[],
        )
        .await
        .map_err(|e| anyhow::anyhow!("listing types: {}", describe_db_error(&e)))?;
    Ok(rows
        .iter()
        .map(|r| QualName::new(r.get::<_, &str>(0), r.get::<_, &str>(1)))
        .collect())
}

/// Indexes of `schema`'s tables that are not valid (a `CREATE INDEX CONCURRENTLY`
/// that failed, a deferred index not yet built), as `schema.index`.
pub async fn invalid_indexes(client: &Client, schema: &str) -> anyhow::Result<Vec<String>> {
    let rows = client
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_index i
             JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND NOT (i.indisvalid AND i.indisready) ORDER BY 1",
            &[&schema],
        )
        .await
        .map_err(|e| {
            anyhow::anyhow!("listing the indexes of {schema}: {}", describe_db_error(&e))
        })?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Objects outside `schema` that depend on relations in it (views, foreign keys,
/// triggers, column defaults of other schemas' tables): what `DROP SCHEMA … CASCADE`
/// would drop with it, described as PostgreSQL names them.
pub async fn dependents_outside(client: &Client, schema: &str) -> anyhow::Result<Vec<String>> {
    let rows = client
        .query(
            "WITH inside AS (
                 SELECT c.oid FROM pg_catalog.pg_class c
                 WHERE c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = $1)
             )
             SELECT DISTINCT coalesce(r.ev_class::regclass::text, pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid))
             FROM pg_catalog.pg_depend d
             LEFT JOIN pg_catalog.pg_rewrite r ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND r.oid = d.objid
             LEFT JOIN pg_catalog.pg_constraint k ON d.classid = 'pg_catalog.pg_constraint'::regclass AND k.oid = d.objid
             LEFT JOIN pg_catalog.pg_trigger t ON d.classid = 'pg_catalog.pg_trigger'::regclass AND t.oid = d.objid
             LEFT JOIN pg_catalog.pg_attrdef a ON d.classid = 'pg_catalog.pg_attrdef'::regclass AND a.oid = d.objid
             WHERE d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid IN (SELECT oid FROM inside)
               AND d.deptype = 'n'
               AND coalesce(r.ev_class, k.conrelid, t.tgrelid, a.adrelid) IS NOT NULL
               AND coalesce(r.ev_class, k.conrelid, t.tgrelid, a.adrelid) NOT IN (SELECT oid FROM inside)
             ORDER BY 1",
            &[&schema],
        )
        .await
        .map_err(|e| {
            anyhow::anyhow!("looking for what depends on {schema}: {}", describe_db_error(&e))
        })?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

#[cfg(test)]
impl ServerFacts {
    /// A PostgreSQL 15 server ready for logical replication with room to spare, for
    /// the preflight's and the cut-over gate's tests.
    pub(crate) fn roomy_15() -> ServerFacts {
        ServerFacts {
            version: "15.18".into(),
            version_num: 150018,
            wal_level: "logical".into(),
            max_replication_slots: 10,
            replication_slots_used: 0,
            max_wal_senders: 10,
            wal_senders_used: 1,
            max_logical_replication_workers: 4,
            logical_workers_used: 0,
            max_worker_processes: 8,
            max_slot_wal_keep_size: 10_240,
            large_objects: 0,
            oldest_transaction: None,
        }
    }
}
