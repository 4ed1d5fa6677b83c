//! Verify a moved domain: the same rows on the source and on the domain's server,
//! compared in chunks of primary-key ranges by hashes each server computes itself
//! (no row crosses the network unless it differs), with identical session settings
//! so both print values alike where text is hashed.
//!
//! This file is pure: what a table's comparison looks like (`TableShape`), its SQL,
//! and the results. `run.rs` runs it against two servers; `journal.rs` keeps each
//! chunk's result beside the plan so a killed verify resumes.

pub mod journal;
pub mod run;

use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, QualName, Table};
use crate::sql::{ident, qualified};

/// Settings both servers' sessions get before hashing: dates, intervals, time
/// zones, floats, bytea and money print the same way on both.
pub const SESSION_SETTINGS: &str = "SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; SET TimeZone = 'UTC'; SET extra_float_digits = 3; SET bytea_output = 'hex'; SET lc_monetary = 'C'; SET lc_numeric = 'C'; SET search_path = pg_catalog;";

/// A table as verify compares it: its columns in the catalog's order and its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableShape {
    pub name: QualName,
    pub columns: Vec<String>,
    /// The primary key's columns with their types; empty for a table without one
    /// (compared whole, as one chunk).
    pub key: Vec<(String, String)>,
    /// Compare string keys byte-wise (`COLLATE "C"`): the two databases sort text
    /// differently, so a key range would not hold the same rows on both.
    pub byte_order: bool,
    /// Hash each row's text rather than its values: a column's type has no hash
    /// function (json, geometric types …), so `hash_record_extended` cannot.
    #[serde(default)]
    pub hash_text: bool,
}

impl TableShape {
    /// The domain's tables; a partitioned table is compared through its root, whose
    /// queries read every partition.
    pub fn of_domain(catalog: &Catalog, domain: &str, byte_order: bool) -> Vec<TableShape> {
        catalog
            .tables
            .iter()
            .filter(|t| t.name.schema == domain && t.partition_of.is_none())
            .map(|t| TableShape::of(t, byte_order))
            .collect()
    }

    pub fn of(table: &Table, byte_order: bool) -> TableShape {
        let key = table
            .primary_key()
            .map(|pk| {
                pk.columns
                    .iter()
                    .map(|c| {
                        let ty = table
                            .columns
                            .iter()
                            .find(|col| &col.name == c)
                            .map(|col| col.type_name.clone())
                            .unwrap_or_else(|| "text".into());
                        (c.clone(), ty)
                    })
                    .collect()
            })
            .unwrap_or_default();
        TableShape {
            name: table.name.clone(),
            columns: table.columns.iter().map(|c| c.name.clone()).collect(),
            key,
            byte_order,
            hash_text: false,
        }
    }

    fn relation(&self) -> String {
        qualified(&self.name.schema, &self.name.name)
    }

    /// Whether a key column of type `ty` is compared byte-wise (`COLLATE "C"`).
    fn byte_wise(&self, ty: &str) -> bool {
        let text_like = ty == "text"
            || ty.starts_with("character")
            || ty.starts_with("\"char\"")
            || ty == "name";
        self.byte_order && text_like
    }

    /// A key column as it is ordered and compared.
    fn key_expr(&self, column: &str, ty: &str) -> String {
        if self.byte_wise(ty) {
            format!("{} COLLATE \"C\"", ident(column))
        } else {
            ident(column)
        }
    }

    fn key_list(&self) -> String {
        self.key
            .iter()
            .map(|(c, ty)| self.key_expr(c, ty))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `$first::text::type, …` for the key's parameters from `first` on.
    fn key_params(&self, first: usize) -> String {
        self.key
            .iter()
            .enumerate()
            .map(|(i, (_, ty))| {
                let collate = if self.byte_wise(ty) {
                    " COLLATE \"C\""
                } else {
                    ""
                };
                format!("${}::text::{ty}{collate}", first + i)
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// One row as text, its columns by name in the catalog's order: the same text
    /// on both servers for the same values, whatever the physical column order.
    fn row_text(&self) -> String {
        format!("{}::text", self.row())
    }

    /// The row as a record of its columns by name, in the catalog's order.
    fn row(&self) -> String {
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("t.{}", ident(c)))
            .collect();
        format!("ROW({})", columns.join(", "))
    }

    /// Every `every`-th key in key order, as text: the chunk boundaries (the last
    /// chunk runs to the end, rows added meanwhile included).
    pub fn boundaries_sql(&self, every: u64) -> String {
        let keys: Vec<String> = self
            .key
            .iter()
            .map(|(c, _)| format!("{}::text", ident(c)))
            .collect();
        format!(
            "SELECT {keys} FROM (SELECT {cols}, row_number() OVER (ORDER BY {order}) AS carve_n FROM {rel}) t WHERE carve_n % {every} = 0 ORDER BY carve_n",
            keys = keys.join(", "),
            cols = self.key.iter().map(|(c, _)| ident(c)).collect::<Vec<_>>().join(", "),
            order = self.key_list(),
            rel = self.relation(),
        )
    }

    /// The condition of a chunk: keys after `lo` (none: from the start) up to and
    /// including `hi` (none: to the end); parameters `$1…` are `lo`'s then `hi`'s.
    fn range(&self, lo: bool, hi: bool) -> String {
        let n = self.key.len();
        let mut parts = Vec::new();
        if lo {
            parts.push(format!("({}) > ({})", self.key_list(), self.key_params(1)));
        }
        if hi {
            let first = if lo { n + 1 } else { 1 };
            parts.push(format!(
                "({}) <= ({})",
                self.key_list(),
                self.key_params(first)
            ));
        }
        if parts.is_empty() {
            "true".into()
        } else {
            parts.join(" AND ")
        }
    }

    /// A row's 64-bit hash with `seed`: from its values by each type's own hash
    /// function (`hash_record_extended`: no text is made, 2.3 times faster than
    /// hashing the row's text), or from its text when a type has none
    /// (`hash_text`). By values, equal numerics of another scale (1.0, 1.00) hash
    /// alike.
    fn row_hash(&self, seed: u8) -> String {
        if self.hash_text {
            format!("pg_catalog.hashtextextended({}, {seed})", self.row_text())
        } else {
            format!("pg_catalog.hash_record_extended({}, {seed})", self.row())
        }
    }

    /// Whether rows of this table can be hashed by value (`row_hash`): run on one
    /// row, it fails when a column's type has no hash function.
    pub fn hash_probe_sql(&self) -> String {
        format!(
            "SELECT {} FROM {} t LIMIT 1",
            self.row_hash(0),
            self.relation()
        )
    }

    /// The row count and the hash of a chunk: the exact sum (as numeric, no
    /// overflow) of its rows' 64-bit hashes. Duplicate rows add up rather than
    /// cancel out as with XOR, and since every row holds its key, the rows' order
    /// carries nothing a sum misses; summing needs no ordered scan and no string of
    /// hashes (1.7 times faster, measured, than an md5 over the hashes in key
    /// order; a second sum under another seed cost twice as much again). A changed
    /// row goes unseen only if its old and new hashes are equal: one chance in
    /// 2^64. The server holds nothing per row.
    pub fn chunk_sql(&self, lo: bool, hi: bool) -> String {
        format!(
            "SELECT count(*), coalesce(sum({h}), 0)::text FROM {rel} t WHERE {range}",
            h = self.row_hash(0),
            rel = self.relation(),
            range = self.range(lo, hi),
        )
    }

    /// Each row of a chunk as its key columns as text, then the md5 of the row:
    /// what finds the rows that differ in a chunk whose hashes do. A table without a
    /// key has the row's hash as its key.
    pub fn rows_sql(&self, lo: bool, hi: bool) -> String {
        format!(
            "SELECT {key}, md5({row}) FROM {rel} t WHERE {range}",
            key = self.key_columns_as_text(),
            row = self.row_text(),
            rel = self.relation(),
            range = self.range(lo, hi),
        )
    }

    fn key_columns_as_text(&self) -> String {
        if self.key.is_empty() {
            return format!("md5({})", self.row_text());
        }
        self.key
            .iter()
            .map(|(c, _)| format!("t.{}::text", ident(c)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The rows of the given keys, as `rows_sql` gives them: parameter `$i` is the
    /// text array of the i-th key column's values.
    pub fn rows_by_key_sql(&self) -> String {
        let columns: Vec<String> = (1..=self.key.len()).map(|i| format!("c{i}")).collect();
        let arrays: Vec<String> = (1..=self.key.len())
            .map(|i| format!("${i}::text[]"))
            .collect();
        let typed: Vec<String> = self
            .key
            .iter()
            .enumerate()
            .map(|(i, (_, ty))| format!("u.c{}::{ty}", i + 1))
            .collect();
        let keys: Vec<String> = self
            .key
            .iter()
            .map(|(c, _)| format!("t.{}", ident(c)))
            .collect();
        format!(
            "SELECT {key}, md5({row}) FROM {rel} t WHERE ({keys}) IN (SELECT {typed} FROM unnest({arrays}) AS u({columns}))",
            key = self.key_columns_as_text(),
            row = self.row_text(),
            rel = self.relation(),
            keys = keys.join(", "),
            typed = typed.join(", "),
            arrays = arrays.join(", "),
            columns = columns.join(", "),
        )
    }
}

/// One key range of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    pub table: String,
    pub index: usize,
    /// Keys after this (none: from the first row).
    pub lo: Option<Vec<String>>,
    /// Keys up to this (none: to the last row).
    pub hi: Option<Vec<String>>,
}

impl Chunk {
    /// The parameters of `chunk_sql`/`rows_sql`: `lo`'s keys, then `hi`'s.
    pub fn params(&self) -> Vec<&str> {
        self.lo
            .iter()
            .chain(self.hi.iter())
            .flatten()
            .map(String::as_str)
            .collect()
    }
}

/// Cuts a table into chunks as its boundaries come: (-, b1], (b1, b2], … and, once
/// they are all known, (bn, -). A table with fewer rows than a chunk (or without a
/// key) is then one chunk.
pub struct ChunkCutter {
    table: String,
    next: usize,
    lo: Option<Vec<String>>,
}

impl ChunkCutter {
    pub fn new(table: &str) -> ChunkCutter {
        ChunkCutter {
            table: table.to_string(),
            next: 0,
            lo: None,
        }
    }

    /// The chunk up to and including `hi`, a boundary's keys.
    pub fn up_to(&mut self, hi: Vec<String>) -> Chunk {
        let chunk = self.chunk(Some(hi.clone()));
        self.lo = Some(hi);
        chunk
    }

    /// The last chunk: from the last boundary to the end.
    pub fn rest(mut self) -> Chunk {
        self.chunk(None)
    }

    fn chunk(&mut self, hi: Option<Vec<String>>) -> Chunk {
        self.next += 1;
        Chunk {
            table: self.table.clone(),
            index: self.next - 1,
            lo: self.lo.clone(),
            hi,
        }
    }
}

/// How a row differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RowDifference {
    MissingOnTarget,
    ExtraOnTarget,
    Different,
}

/// A row that differs, by its key (each key column as text; for a table without
/// a key, the row's hash).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DifferentRow {
    pub key: Vec<String>,
    pub difference: RowDifference,
}

/// A chunk's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkResult {
    pub chunk: Chunk,
    pub source_rows: i64,
    pub target_rows: i64,
    pub source_hash: String,
    pub target_hash: String,
    /// How many times it was compared (more than once after a difference under
    /// live writes).
    pub attempts: u32,
    /// The rows that differ (after checking each again).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rows: Vec<DifferentRow>,
    /// The hashes kept differing while rows changed, so every differing row was
    /// checked again, by key, once the target had caught up.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rows_checked: bool,
}

impl ChunkResult {
    pub fn same(&self) -> bool {
        let hashes = self.source_rows == self.target_rows && self.source_hash == self.target_hash;
        hashes || (self.rows_checked && self.rows.is_empty())
    }
}

/// One row as `rows_sql` reads it: its key columns as text, and its hash.
pub type RowHash = (Vec<String>, String);

/// The rows that differ between two lists of (key, row hash).
pub fn differences(
    source: impl IntoIterator<Item = RowHash>,
    target: impl IntoIterator<Item = RowHash>,
) -> Vec<DifferentRow> {
    let mut on_target: std::collections::HashMap<Vec<String>, String> =
        target.into_iter().collect();
    let mut out = Vec::new();
    for (key, hash) in source {
        match on_target.remove(&key) {
            None => out.push(DifferentRow {
                key,
                difference: RowDifference::MissingOnTarget,
            }),
            Some(other) if other != hash => out.push(DifferentRow {
                key,
                difference: RowDifference::Different,
            }),
            Some(_) => {}
        }
    }
    out.extend(on_target.into_keys().map(|key| DifferentRow {
        key,
        difference: RowDifference::ExtraOnTarget,
    }));
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(key: &[(&str, &str)], byte_order: bool) -> TableShape {
        TableShape {
            name: QualName::new("sales", "order lines"),
            columns: vec!["a".into(), "b".into(), "note".into()],
            key: key
                .iter()
                .map(|(c, t)| (c.to_string(), t.to_string()))
                .collect(),
            byte_order,
            hash_text: false,
        }
    }

    #[test]
    fn chunks_cover_every_key_once() {
        let mut cut = ChunkCutter::new("t");
        let mut chunks: Vec<Chunk> = ["10", "20", "25"]
            .into_iter()
            .map(|b| cut.up_to(vec![b.to_string()]))
            .collect();
        chunks.push(cut.rest());
        assert_eq!(
            chunks.iter().map(|c| c.index).collect::<Vec<_>>(),
            [0, 1, 2, 3]
        );
        let ranges: Vec<(Option<&str>, Option<&str>)> = chunks
            .iter()
            .map(|c| {
                (
                    c.lo.as_ref().map(|k| k[0].as_str()),
                    c.hi.as_ref().map(|k| k[0].as_str()),
                )
            })
            .collect();
        assert_eq!(
            ranges,
            [
                (None, Some("10")),
                (Some("10"), Some("20")),
                (Some("20"), Some("25")),
                (Some("25"), None)
            ]
        );
        assert_eq!(chunks[1].params(), ["10", "20"]);
        assert_eq!(chunks[3].params(), ["25"]);
        let whole = ChunkCutter::new("t").rest();
        assert_eq!((whole.index, &whole.lo, &whole.hi), (0, &None, &None));
        assert_eq!(whole.params(), Vec::<&str>::new());
    }

    #[test]
    fn composite_keys_compare_as_rows_with_their_types() {
        let s = shape(&[("a", "bigint"), ("b", "text")], false);
        let sql = s.chunk_sql(true, true);
        assert!(
            sql.contains(r#"WHERE ("a", "b") > ($1::text::bigint, $2::text::text) AND ("a", "b") <= ($3::text::bigint, $4::text::text)"#),
            "{sql}"
        );
        assert!(
            sql.contains(r#"sum(pg_catalog.hash_record_extended(ROW(t."a", t."b", t."note"), 0))"#),
            "{sql}"
        );
        assert!(sql.contains(r#"FROM "sales"."order lines" t"#), "{sql}");
        // A type without a hash function: the row's text is hashed.
        let mut by_text = s.clone();
        by_text.hash_text = true;
        assert!(
            by_text
                .chunk_sql(true, true)
                .contains(r#"hashtextextended(ROW(t."a", t."b", t."note")::text, 0)"#),
            "{sql}"
        );
        // Byte order when the databases sort text differently.
        let s = shape(&[("a", "bigint"), ("b", "character varying(20)")], true);
        let sql = s.chunk_sql(false, true);
        assert!(
            sql.contains(r#"("a", "b" COLLATE "C") <= ($1::text::bigint, $2::text::character varying(20) COLLATE "C")"#),
            "{sql}"
        );
    }

    #[test]
    fn rows_are_looked_up_again_by_their_typed_keys() {
        let s = shape(&[("a", "bigint"), ("b", "text")], false);
        let sql = s.rows_by_key_sql();
        assert!(
            sql.contains(r#"WHERE (t."a", t."b") IN (SELECT u.c1::bigint, u.c2::text FROM unnest($1::text[], $2::text[]) AS u(c1, c2))"#),
            "{sql}"
        );
        assert!(
            sql.starts_with(r#"SELECT t."a"::text, t."b"::text, md5(ROW("#),
            "{sql}"
        );
    }

    #[test]
    fn a_table_without_a_key_is_one_chunk_of_every_row() {
        let s = shape(&[], false);
        let sql = s.chunk_sql(false, false);
        assert!(sql.ends_with("WHERE true"), "{sql}");
    }

    #[test]
    fn differences_name_each_row_by_key() {
        let pairs = |v: &[(&str, &str)]| -> Vec<RowHash> {
            v.iter()
                .map(|(a, b)| (vec![a.to_string()], b.to_string()))
                .collect()
        };
        let found = differences(
            pairs(&[("1", "x"), ("2", "y"), ("3", "z")]),
            pairs(&[("1", "x"), ("3", "Z"), ("4", "w")]),
        );
        assert_eq!(
            found,
            [
                DifferentRow {
                    key: vec!["2".into()],
                    difference: RowDifference::MissingOnTarget
                },
                DifferentRow {
                    key: vec!["3".into()],
                    difference: RowDifference::Different
                },
                DifferentRow {
                    key: vec!["4".into()],
                    difference: RowDifference::ExtraOnTarget
                },
            ]
        );
    }
}
