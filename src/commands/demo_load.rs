//! The demo's write load: a few clients inserting rows into a table of the moving
//! domain through PgBouncer the whole time the domain moves and is cut over, each
//! acknowledged row's key kept, so the demo can count them on the domain's server at
//! the end instead of claiming "nothing lost".
//!
//! Any example's domain: the table is the first of the domain (largest first) whose
//! row carve can make up: a one-column integer primary key the server fills in,
//! every other required column of a simple type, a foreign key's column given a key
//! that exists. Tried first in a transaction rolled back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::{Client, SimpleQueryMessage};

use crate::catalog::{Catalog, Table};
use crate::sql::{ident, literal, qualified};

/// How to insert one made-up row: the statement's text before and after its marker.
#[derive(Debug, Clone)]
pub struct RowMaker {
    pub table: String,
    /// `INSERT INTO … (cols) VALUES (` … `, <marker>)` RETURNING the key.
    prefix: String,
    suffix: String,
    key: String,
}

impl RowMaker {
    fn insert(&self, marker: i64) -> String {
        let marker = marker.to_string();
        format!(
            "{}{marker}{}",
            self.prefix,
            self.suffix.replace('\u{1}', &marker)
        )
    }

    /// How many of `keys` the table holds on `client`'s side.
    pub async fn count(&self, client: &Client, keys: &[i64]) -> anyhow::Result<i64> {
        if keys.is_empty() {
            return Ok(0);
        }
        let list: Vec<String> = keys.iter().map(i64::to_string).collect();
        let row = client
            .query_one(
                &format!(
                    "SELECT count(*) FROM {} WHERE {} IN ({})",
                    self.table,
                    self.key,
                    list.join(", ")
                ),
                &[],
            )
            .await?;
        Ok(row.get(0))
    }
}

/// A value for a required column of `type_name`, or None when carve would not
/// make one up.
fn made_up(type_name: &str, marker: &str) -> Option<String> {
    Some(match type_name {
        "bigint" | "integer" | "smallint" | "numeric" => marker.to_string(),
        "text" | "character varying" => format!("'carve-demo-' || {marker}"),
        "boolean" => "false".into(),
        "timestamp with time zone" | "timestamp without time zone" => "now()".into(),
        "date" => "current_date".into(),
        "jsonb" | "json" => "'{}'".into(),
        _ => return None,
    })
}

/// The insert for `table`: every required column without a default made up (the
/// marker in each that takes one), a foreign key's column given an existing key,
/// and when no required column carries the marker, the first optional one that
/// can. None when a row cannot be made up.
async fn maker_for(source: &Client, table: &Table) -> anyhow::Result<Option<RowMaker>> {
    const MARKER: &str = "\u{1}";
    let Some(pk) = table.primary_key().filter(|k| k.columns.len() == 1) else {
        return Ok(None);
    };
    let key = &pk.columns[0];
    let key_column = table.columns.iter().find(|c| &c.name == key);
    if !key_column.is_some_and(|c| c.default.is_some() || c.identity.is_some()) {
        return Ok(None);
    }
    let mut columns = Vec::new();
    let mut values = Vec::new();
    let mut optional_marker = None;
    for column in &table.columns {
        if column.name == *key || column.generated.is_some() {
            continue;
        }
        let required = column.not_null && column.default.is_none() && column.identity.is_none();
        let foreign = table
            .foreign_keys()
            .find(|(c, _)| c.columns == [column.name.clone()]);
        if let Some((_, fk)) = foreign {
            if !required {
                continue;
            }
            let referenced = qualified(&fk.references.schema, &fk.references.name);
            let row = source
                .query_one(
                    &format!(
                        "SELECT min({})::text FROM {referenced}",
                        ident(&fk.referenced_columns[0])
                    ),
                    &[],
                )
                .await?;
            let Some(existing): Option<String> = row.get(0) else {
                return Ok(None);
            };
            columns.push(ident(&column.name));
            values.push(literal(&existing).map_err(|e| anyhow::anyhow!(e))?);
            continue;
        }
        match made_up(&column.type_name, MARKER) {
            Some(value) if required => {
                columns.push(ident(&column.name));
                values.push(value);
            }
            Some(value) if value.contains(MARKER) && optional_marker.is_none() => {
                optional_marker = Some((ident(&column.name), value));
            }
            None if required => return Ok(None),
            _ => {}
        }
    }
    if !values.iter().any(|v| v.contains(MARKER)) {
        let Some((column, value)) = optional_marker else {
            return Ok(None);
        };
        columns.push(column);
        values.push(value);
    }
    let name = qualified(&table.name.schema, &table.name.name);
    let statement = format!(
        "INSERT INTO {name} ({}) VALUES ({}) RETURNING {}",
        columns.join(", "),
        values.join(", "),
        ident(key)
    );
    let (prefix, suffix) = statement
        .split_once(MARKER)
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .expect("a marker");
    // Every other marker takes the same number.
    Ok(Some(RowMaker {
        table: name,
        prefix,
        suffix,
        key: ident(key),
    }))
}

/// The first table of `domain` (largest first) whose made-up row the source takes,
/// tried in a transaction rolled back.
pub async fn row_maker(
    source: &Client,
    catalog: &Catalog,
    domain: &str,
) -> anyhow::Result<Option<RowMaker>> {
    let mut tables: Vec<&Table> = catalog
        .tables
        .iter()
        .filter(|t| t.name.schema == domain && t.partition_of.is_none())
        .collect();
    tables.sort_by_key(|t| std::cmp::Reverse(t.row_estimate.unwrap_or(0)));
    for table in tables {
        let Some(maker) = maker_for(source, table).await? else {
            continue;
        };
        let tried = source
            .batch_execute(&format!("BEGIN; {}; ROLLBACK", maker.insert(999_999_999)))
            .await;
        if tried.is_ok() {
            return Ok(Some(maker));
        }
        let _ = source.batch_execute("ROLLBACK").await;
    }
    Ok(None)
}

/// What the load saw.
#[derive(Debug, Default)]
pub struct LoadResult {
    /// The keys of the rows whose insert was acknowledged.
    pub keys: Vec<i64>,
    pub errors: Vec<String>,
}

/// `clients` connections inserting rows through `conninfo` (PgBouncer) about 50
/// times a second each, in the simple query protocol, until `stop`.
pub async fn run(
    conninfo: String,
    maker: RowMaker,
    clients: i64,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<LoadResult> {
    let mut tasks = Vec::new();
    for client_no in 0..clients {
        let (conninfo, maker, stop) = (conninfo.clone(), maker.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut seen = LoadResult::default();
            let client = match super::connect(&conninfo).await {
                Ok(c) => c,
                Err(e) => {
                    seen.errors.push(format!("{e:#}"));
                    return seen;
                }
            };
            let mut n = 0i64;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let marker = 1_000_000_000 + client_no * 10_000_000 + n;
                match client.simple_query(&maker.insert(marker)).await {
                    Ok(messages) => {
                        let key = messages.iter().find_map(|m| match m {
                            SimpleQueryMessage::Row(r) => {
                                r.get(0).and_then(|v| v.parse::<i64>().ok())
                            }
                            _ => None,
                        });
                        if let Some(key) = key {
                            seen.keys.push(key);
                        }
                    }
                    Err(e) => seen.errors.push(crate::conn::describe_db_error(&e)),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            seen
        }));
    }
    let mut all = LoadResult::default();
    for task in tasks {
        let seen = task.await?;
        all.keys.extend(seen.keys);
        all.errors.extend(seen.errors);
    }
    Ok(all)
}
