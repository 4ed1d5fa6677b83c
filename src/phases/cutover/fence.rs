//! The fence: the domain's tables on the side clients leave, locked against writers
//! for a moment and then blocked for good by a statement trigger that raises. The
//! logical-replication apply worker runs with `session_replication_role = replica`,
//! so an ordinary trigger does not fire for it: the stream from the live side still
//! writes there, while a client that bypasses PgBouncer fails loudly instead of
//! writing where nobody reads. The fence also records the WAL position at which it
//! closed (`carve_fenced_at()`), read inside the fence, after every writer is out.

use std::time::Duration;

use super::super::lit;
use crate::catalog::{Catalog, Table, TableKind};
use crate::engine::{Action, OnTimeout, SqlAction, Step, Target, WaitAction};
use crate::phases::move_domain::replication::side;
use crate::sql::{display_ident, ident, qualified};

/// The trigger (on each table) and the function it runs.
pub const TRIGGER: &str = "carve_fence";
/// The function returning the WAL position at which the fence closed.
pub const FENCED_AT: &str = "carve_fenced_at";

/// The domain's tables, each of which gets the trigger: partitions too, since a
/// write straight into a partition does not fire its parent's statement triggers.
pub fn tables<'c>(catalog: &'c Catalog, domain: &str) -> Vec<&'c Table> {
    catalog
        .tables
        .iter()
        .filter(|t| t.name.schema == domain && t.kind != TableKind::Foreign)
        .collect()
}

/// `schema.carve_fenced_at()`, as `to_regprocedure` takes it.
fn fenced_at_signature(domain: &str) -> String {
    format!("{}()", qualified(domain, FENCED_AT))
}

/// The position the fence closed at, as a SQL expression: NULL while there is no
/// fence (the function's comment holds it, so a check evaluated before the fence,
/// by a dry-run, reads NULL rather than failing on a function not there yet).
pub fn fenced_at(domain: &str) -> String {
    format!(
        "pg_catalog.obj_description(pg_catalog.to_regprocedure({}), 'pg_proc')::pg_lsn",
        lit(&fenced_at_signature(domain))
    )
}

/// True when every table of the domain on that side carries the fence.
fn fenced_check(domain: &str, count: usize) -> String {
    format!(
        "(SELECT count(*) FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = {} AND t.tgname = {}) = {count} AND pg_catalog.to_regprocedure({}) IS NOT NULL",
        lit(domain),
        lit(TRIGGER),
        lit(&fenced_at_signature(domain))
    )
}

/// True when no table of the domain on that side carries the fence.
fn unfenced_check(domain: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = {} AND t.tgname = {}) AND pg_catalog.to_regprocedure({}) IS NULL",
        lit(domain),
        lit(TRIGGER),
        lit(&fenced_at_signature(domain))
    )
}

fn fence_sql(domain: &str, tables: &[&Table], live: &str) -> String {
    let names: Vec<String> = tables
        .iter()
        .map(|t| qualified(&t.name.schema, &t.name.name))
        .collect();
    let function = qualified(domain, TRIGGER);
    let hint = lit(&format!(
        "The domain's clients use {live} now; this copy is kept in step for a rollback and takes no writes of its own."
    ));
    // The fence is durable before the position is used, and its commit flushes the
    // WAL before it: the WAL sender only sends what is flushed.
    let mut sql = format!(
        "SET LOCAL synchronous_commit = on;\nLOCK TABLE {} IN EXCLUSIVE MODE;\n\
         CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $carve$\n\
         BEGIN\n  RAISE EXCEPTION 'carve: table %.% is fenced: its domain has moved', TG_TABLE_SCHEMA, TG_TABLE_NAME\n    USING ERRCODE = 'read_only_sql_transaction', HINT = {hint};\nEND $carve$;\n",
        names.join(", ")
    );
    for name in &names {
        sql.push_str(&format!(
            "CREATE TRIGGER {} BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON {name} FOR EACH STATEMENT EXECUTE FUNCTION {function}();\n",
            ident(TRIGGER)
        ));
    }
    // The position is read here, after the lock: every write to these tables that
    // committed before is behind it, and none can come after it.
    sql.push_str(&format!(
        "DO $carve$ DECLARE at text := pg_catalog.pg_current_wal_insert_lsn()::text; BEGIN\n\
           EXECUTE format('CREATE OR REPLACE FUNCTION %s() RETURNS pg_lsn LANGUAGE sql IMMUTABLE AS %L', {name}, format('SELECT %L::pg_lsn', at));\n\
           EXECUTE format('COMMENT ON FUNCTION %s() IS %L', {name}, at);\n\
         END $carve$;",
        name = lit(&qualified(domain, FENCED_AT))
    ));
    sql
}

fn unfence_sql(domain: &str, tables: &[&Table]) -> String {
    let mut sql = String::new();
    for t in tables {
        sql.push_str(&format!(
            "DROP TRIGGER IF EXISTS {} ON {};\n",
            ident(TRIGGER),
            qualified(&t.name.schema, &t.name.name)
        ));
    }
    sql.push_str(&drop_functions_sql(domain));
    sql
}

/// The fence's functions dropped, when there: what a rollback leaves on the
/// domain's server, which dropping its schema needs gone first.
pub fn drop_functions_sql(domain: &str) -> String {
    format!(
        "DROP FUNCTION IF EXISTS {}(), {}();",
        qualified(domain, TRIGGER),
        qualified(domain, FENCED_AT)
    )
}

/// The fence on `on` (the side clients leave), naming `live` (where they go) in its
/// error's hint.
pub fn fence(catalog: &Catalog, domain: &str, on: &Target, live: &Target) -> Step {
    let tables = tables(catalog, domain);
    Step::sql(
        format!("fence {} on {}", display_ident(domain), on),
        format!(
            "writers of {} on {} wait out (EXCLUSIVE lock), then a trigger refuses every write there but the replication stream's; the WAL position is read inside the fence",
            display_ident(domain),
            side(on)
        ),
        on.clone(),
        SqlAction {
            sql: fence_sql(domain, &tables, &side(live)),
            done_check: fenced_check(domain, tables.len()),
            undo: unfence_sql(domain, &tables),
            transactional: true,
            strong_lock: true,
            secret: None,
            read: None,
        },
    )
}

/// The fence taken away on `on` (the side clients come to).
pub fn unfence(catalog: &Catalog, domain: &str, on: &Target) -> Step {
    let tables = tables(catalog, domain);
    Step::sql(
        format!("unfence {} on {}", display_ident(domain), on),
        format!(
            "{} takes writes again: the fence of an earlier switch is removed",
            side(on)
        ),
        on.clone(),
        SqlAction {
            sql: unfence_sql(domain, &tables),
            done_check: unfenced_check(domain),
            undo: fence_sql(domain, &tables, "the other side"),
            transactional: true,
            strong_lock: true,
            secret: None,
            read: None,
        },
    )
}

/// A wait on the fenced side until the subscriber's slot there has confirmed the
/// position at which the fence closed: every write made before it is applied on the
/// other side (the slot's `confirmed_flush_lsn`, not a lag estimate).
pub fn caught_up(domain: &str, fenced: &Target, slot: &str, timeout: Duration) -> Step {
    let confirmed = format!(
        "(SELECT confirmed_flush_lsn FROM pg_catalog.pg_replication_slots WHERE slot_name = {})",
        lit(slot)
    );
    let position = fenced_at(domain);
    Step {
        id: format!("wait for every write to {} before the fence", display_ident(domain)),
        description: format!(
            "the other side has applied every change {} made before the fence closed",
            side(fenced)
        ),
        target: fenced.clone(),
        action: Action::Wait(WaitAction {
            until: format!("coalesce({confirmed} >= {position}, false)"),
            progress: Some(format!(
                "SELECT greatest(pg_catalog.pg_wal_lsn_diff({position}, {confirmed}), 0)::bigint, 0::bigint"
            )),
            unit: "bytes still to apply".into(),
            every: Duration::from_millis(20),
            timeout,
            on_timeout: OnTimeout::Fail,
            // Once every write before the fence is applied, the stream is turned
            // around and its slot dropped: a resumed switch must not wait on it.
            once: true,
        }),
    }
}

/// A write of every table on `on` that changes nothing (`UPDATE … WHERE false` still
/// fires statement triggers, and fails on a read-only server): the fence is gone
/// and the tables take writes.
pub fn canary(catalog: &Catalog, domain: &str, on: &Target) -> Step {
    let mut sql = String::new();
    for t in tables(catalog, domain) {
        let column = t
            .columns
            .iter()
            .find(|c| c.identity.is_none() && c.generated.is_none());
        if let Some(c) = column {
            sql.push_str(&format!(
                "UPDATE {} SET {col} = {col} WHERE false;\n",
                qualified(&t.name.schema, &t.name.name),
                col = ident(&c.name)
            ));
        }
    }
    if sql.is_empty() {
        sql.push_str("SELECT 1;");
    }
    Step::sql(
        format!("canary write to {} on {}", display_ident(domain), on),
        format!(
            "a write to every table of {} on {} that changes no row: it is not fenced and takes writes",
            display_ident(domain),
            side(on)
        ),
        on.clone(),
        // A look, always taken again; it changes nothing to undo.
        SqlAction::always(sql),
    )
}
