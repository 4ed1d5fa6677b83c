//! The human summary of `carve inspect`: counts, what needs attention before the later
//! phases, the largest tables, and whether the plan is still current.

use crate::catalog::fingerprint::{Change, Fingerprint};
use crate::catalog::{Catalog, ReplicaIdentity, TableKind};

use super::{bytes, count};

/// How the catalog compares with the plan file.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PlanState {
    /// No plan file at that path.
    Missing {
        path: String,
    },
    /// The plan is for another database; not compared.
    OtherDatabase {
        path: String,
        database: String,
    },
    Current {
        path: String,
    },
    Stale {
        path: String,
        changes: Vec<Change>,
    },
}

/// Things a person should know before carving this database.
pub fn findings(catalog: &Catalog) -> Vec<String> {
    let mut out = Vec::new();
    if catalog.server.wal_level != "logical" {
        out.push(format!(
            "wal_level is {}: moving domains to new servers needs wal_level = logical (a restart)",
            catalog.server.wal_level
        ));
    }
    for table in &catalog.tables {
        if table.kind == TableKind::Partitioned || table.kind == TableKind::Foreign {
            continue;
        }
        if !table.has_usable_replica_identity() {
            let why = match table.replica_identity {
                ReplicaIdentity::Nothing => "replica identity NOTHING".to_string(),
                _ => "no primary key".to_string(),
            };
            out.push(format!(
                "{} has {why}: logical replication could not publish its UPDATEs and DELETEs",
                table.name
            ));
        }
        if table.unlogged {
            out.push(format!(
                "{} is UNLOGGED: logical replication does not carry its rows",
                table.name
            ));
        }
    }
    for table in catalog
        .tables
        .iter()
        .filter(|t| t.kind == TableKind::Foreign)
    {
        out.push(format!(
            "{} is a foreign table: its data lives elsewhere",
            table.name
        ));
    }
    out
}

pub fn render(
    catalog: &Catalog,
    fingerprint: &Fingerprint,
    source: &str,
    plan: &PlanState,
) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    let s = &catalog.server;
    line(format!(
        "database {} on PostgreSQL {} ({source})",
        crate::sql::display_ident(&s.database),
        s.version
    ));
    line(String::new());

    let tables = &catalog.tables;
    let partitioned = tables
        .iter()
        .filter(|t| t.kind == TableKind::Partitioned)
        .count();
    let partitions = tables.iter().filter(|t| t.partition_of.is_some()).count();
    let unlogged = tables.iter().filter(|t| t.unlogged).count();
    let foreign = tables
        .iter()
        .filter(|t| t.kind == TableKind::Foreign)
        .count();
    let columns: usize = tables.iter().map(|t| t.columns.len()).sum();
    let fks = tables
        .iter()
        .flat_map(|t| t.foreign_keys())
        .filter(|(c, _)| !c.inherited)
        .count();
    let indexes: usize = tables.iter().map(|t| t.indexes.len()).sum();
    let matviews = catalog.views.iter().filter(|v| v.materialized).count();
    let owned_seqs = catalog
        .sequences
        .iter()
        .filter(|s| s.owned_by.is_some())
        .count();
    let logins = catalog.roles.iter().filter(|r| r.login).count();
    let size: i64 = tables.iter().map(|t| t.size_bytes).sum();
    let rows: i64 = tables
        .iter()
        .filter(|t| t.kind != TableKind::Partitioned)
        .filter_map(|t| t.row_estimate)
        .sum();
    let schema_names: Vec<String> = catalog
        .schemas
        .iter()
        .take(6)
        .map(|s| crate::sql::display_ident(&s.name).to_string())
        .collect();
    let more = catalog.schemas.len().saturating_sub(6);
    let rows_table = [
        ("schemas", catalog.schemas.len(), {
            let mut names = schema_names.join(", ");
            if more > 0 {
                names.push_str(&format!(" and {more} more"));
            }
            names
        }),
        (
            "tables",
            tables.len(),
            format!(
                "{partitioned} partitioned ({partitions} partitions), {unlogged} unlogged, {foreign} foreign"
            ),
        ),
        ("columns", columns, String::new()),
        ("foreign keys", fks, String::new()),
        ("indexes", indexes, String::new()),
        ("views", catalog.views.len(), format!("{matviews} materialized")),
        (
            "sequences",
            catalog.sequences.len(),
            format!(
                "{owned_seqs} owned by a column, {} free-standing",
                catalog.sequences.len() - owned_seqs
            ),
        ),
        ("functions", catalog.functions.len(), String::new()),
        ("triggers", catalog.triggers().count(), String::new()),
        ("roles", catalog.roles.len(), format!("{logins} can log in")),
    ];
    for (what, n, detail) in rows_table {
        line(
            format!("  {what:<13}{:>8}   {detail}", count(n as i64))
                .trim_end()
                .to_string(),
        );
    }
    line(format!(
        "  {:<13}{:>8}   about {} rows",
        "size",
        bytes(size),
        count(rows)
    ));

    let findings = findings(catalog);
    if !findings.is_empty() {
        line(String::new());
        line("needs attention".into());
        for f in findings.iter().take(20) {
            line(format!("  ! {f}"));
        }
        if findings.len() > 20 {
            line(format!("  … and {} more", findings.len() - 20));
        }
    }

    let mut largest: Vec<_> = tables
        .iter()
        .filter(|t| t.kind != TableKind::Partitioned && t.size_bytes > 0)
        .collect();
    largest.sort_by(|a, b| b.size_bytes.cmp(&a.size_bytes).then(a.name.cmp(&b.name)));
    if !largest.is_empty() {
        line(String::new());
        line("largest tables".into());
        let width = largest
            .iter()
            .take(5)
            .map(|t| t.name.to_string().len())
            .max()
            .unwrap_or(0);
        for t in largest.iter().take(5) {
            line(format!(
                "  {:<width$}  {:>9}  {} rows",
                t.name.to_string(),
                bytes(t.size_bytes),
                t.row_estimate.map(count).unwrap_or_else(|| "?".into())
            ));
        }
    }

    line(String::new());
    line(format!(
        "fingerprint {} ({} objects)",
        fingerprint.short(),
        count(fingerprint.objects.len() as i64)
    ));
    match plan {
        PlanState::Missing { path } => line(format!("plan {path}: none yet")),
        PlanState::OtherDatabase { path, database } => line(format!(
            "plan {path}: made for database {database}, not compared"
        )),
        PlanState::Current { path } => line(format!("plan {path}: up to date with this catalog")),
        PlanState::Stale { path, changes } => {
            line(format!(
                "plan {path}: STALE, the catalog changed in {} place(s) since the plan was made:",
                changes.len()
            ));
            out.push_str(&super::change_list(changes, 50));
        }
    }
    out
}
