//! Where a move's logical replication stands, read from both servers (read-only):
//! per table its copy state and progress on the target, the subscription's worker,
//! errors and last contact, and on the source the slot's lag and the WAL it holds
//! back. Also every slot of carve's on the source, to find one left behind.

use serde::Serialize;
use tokio_postgres::Client;

use crate::conn::describe_db_error;

/// One table of the subscription.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableSync {
    pub table: String,
    /// `copying`, `catching up` or `ready` (from `pg_subscription_rel.srsubstate`).
    pub state: &'static str,
    /// While copying: bytes copied and the table's size (`pg_stat_progress_copy`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copied_bytes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<i64>,
}

/// The subscription on the domain's server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubscriptionState {
    pub enabled: bool,
    /// Its apply worker runs.
    pub worker_alive: bool,
    /// Seconds since the source last told the worker how far its WAL goes (the lag
    /// in time while changes flow; it grows while the link is down).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_contact_secs: Option<f64>,
    pub apply_errors: i64,
    pub sync_errors: i64,
    pub tables: Vec<TableSync>,
}

/// The subscription's slot on the source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlotState {
    pub name: String,
    pub active: bool,
    /// Bytes of WAL the target has not confirmed yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<i64>,
    /// Bytes of WAL the slot keeps on the source's disk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retained_bytes: Option<i64>,
    /// `reserved`, `extended`, `unreserved` or `lost` (`pg_replication_slots.wal_status`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal_status: Option<String>,
}

fn failed(what: &str) -> impl Fn(tokio_postgres::Error) -> anyhow::Error + '_ {
    move |e| anyhow::anyhow!("reading {what}: {}", describe_db_error(&e))
}

/// The slot `name` on the source, if it exists.
pub async fn slot(source: &Client, name: &str) -> anyhow::Result<Option<SlotState>> {
    Ok(slots(source, name)
        .await?
        .into_iter()
        .find(|s| s.name == name))
}

/// Every logical slot whose name starts with `prefix` (`carve_` finds carve's).
pub async fn slots(source: &Client, prefix: &str) -> anyhow::Result<Vec<SlotState>> {
    let rows = source
        .query(
            "SELECT slot_name::text, active,
                    pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_insert_lsn(), confirmed_flush_lsn)::int8,
                    pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), restart_lsn)::int8,
                    wal_status
             FROM pg_catalog.pg_replication_slots
             WHERE slot_type = 'logical' AND starts_with(slot_name::text, $1)
             ORDER BY 1",
            &[&prefix],
        )
        .await
        .map_err(failed("the replication slots"))?;
    Ok(rows
        .iter()
        .map(|r| SlotState {
            name: r.get(0),
            active: r.get(1),
            lag_bytes: r.get(2),
            retained_bytes: r.get(3),
            wal_status: r.get(4),
        })
        .collect())
}

/// The subscription `name` on the domain's server, if it exists.
pub async fn subscription(
    target: &Client,
    name: &str,
) -> anyhow::Result<Option<SubscriptionState>> {
    let Some(row) = target
        .query_opt(
            "SELECT s.subenabled,
                    EXISTS (SELECT 1 FROM pg_catalog.pg_stat_subscription w WHERE w.subid = s.oid AND w.relid IS NULL AND w.pid IS NOT NULL),
                    (SELECT extract(epoch FROM now() - max(w.latest_end_time))::float8 FROM pg_catalog.pg_stat_subscription w WHERE w.subid = s.oid),
                    coalesce(st.apply_error_count, 0), coalesce(st.sync_error_count, 0)
             FROM pg_catalog.pg_subscription s
             LEFT JOIN pg_catalog.pg_stat_subscription_stats st ON st.subid = s.oid
             WHERE s.subname = $1",
            &[&name],
        )
        .await
        .map_err(failed("the subscription"))?
    else {
        return Ok(None);
    };
    let tables = target
        .query(
            "SELECT format('%s.%s', n.nspname, c.relname), r.srsubstate::text,
                    p.bytes_processed, p.bytes_total
             FROM pg_catalog.pg_subscription_rel r
             JOIN pg_catalog.pg_subscription s ON s.oid = r.srsubid
             JOIN pg_catalog.pg_class c ON c.oid = r.srrelid
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_catalog.pg_stat_progress_copy p ON p.relid = r.srrelid
             WHERE s.subname = $1
             ORDER BY 1",
            &[&name],
        )
        .await
        .map_err(failed("the subscription's tables"))?;
    Ok(Some(SubscriptionState {
        enabled: row.get(0),
        worker_alive: row.get(1),
        last_contact_secs: row.get(2),
        apply_errors: row.get(3),
        sync_errors: row.get(4),
        tables: tables
            .iter()
            .map(|r| TableSync {
                table: r.get(0),
                state: match r.get::<_, String>(1).as_str() {
                    "r" => "ready",
                    "s" | "f" => "catching up",
                    _ => "copying",
                },
                copied_bytes: r.get(2),
                total_bytes: r.get(3),
            })
            .collect(),
    }))
}
