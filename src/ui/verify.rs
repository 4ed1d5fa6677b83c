//! verify's progress on stderr (a bar with rows/s on a terminal, a line per table
//! otherwise, JSON lines with `--format json`) and its report for people.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

use super::{Output, JSON_FORMAT_VERSION};
use crate::verify::run::Progress;
use crate::verify::{ChunkResult, RowDifference};

/// One table's progress: its chunks once all are known, how many an earlier run
/// compared, how many this run has, and the rows.
#[derive(Default)]
struct TableProgress {
    chunks: Option<usize>,
    resumed: usize,
    compared: usize,
    rows: i64,
}

impl TableProgress {
    fn finished(&self) -> bool {
        self.chunks == Some(self.resumed + self.compared)
    }
}

/// The progress sink for `out`'s format.
pub struct VerifyProgress {
    json: bool,
    quiet: bool,
    bar: Option<ProgressBar>,
    tables: Mutex<std::collections::BTreeMap<String, TableProgress>>,
}

impl VerifyProgress {
    pub fn new(out: &Output) -> VerifyProgress {
        let bar = (!out.is_json() && !out.quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template("  {bar:30} {pos}/{len} chunks, {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        VerifyProgress {
            json: out.is_json(),
            quiet: out.quiet,
            bar,
            tables: Mutex::new(Default::default()),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn json_line(&self, value: serde_json::Value) {
        let mut value = value;
        value["format_version"] = JSON_FORMAT_VERSION.into();
        eprintln!("{value}");
    }

    /// Updates a table's progress; a line for people when it is finished (off a
    /// terminal).
    fn update(&self, table: &str, change: impl FnOnce(&mut TableProgress)) {
        let (finished, rows, total_rows) = {
            let mut tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
            let entry = tables.entry(table.to_string()).or_default();
            let was = entry.finished();
            change(entry);
            let now = entry.finished() && !was;
            let rows = entry.rows;
            (now, rows, tables.values().map(|t| t.rows).sum::<i64>())
        };
        if let Some(bar) = &self.bar {
            let secs = bar.elapsed().as_secs_f64().max(0.001);
            bar.set_message(format!(
                "{total_rows} rows, {:.0} rows/s",
                total_rows as f64 / secs
            ));
        } else if finished && !self.quiet && !self.json {
            eprintln!(
                "{}",
                console::style(format!("  compared {table}: {rows} rows")).dim()
            );
        }
    }
}

impl Progress for VerifyProgress {
    fn table(&self, table: &str, chunks: usize, resumed: usize) {
        if self.json {
            self.json_line(serde_json::json!({"event": "verify-table", "table": table, "chunks": chunks, "resumed": resumed}));
        }
        if let Some(bar) = &self.bar {
            bar.inc_length(chunks as u64);
            bar.inc(resumed as u64);
        }
        self.update(table, |t| {
            t.chunks = Some(chunks);
            t.resumed = resumed;
        });
    }

    fn chunk(&self, result: &ChunkResult) {
        let table = &result.chunk.table;
        if self.json {
            self.json_line(serde_json::json!({
                "event": "verify-chunk", "table": table, "chunk": result.chunk.index,
                "rows": result.source_rows, "same": result.same(), "attempts": result.attempts,
            }));
        }
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
        self.update(table, |t| {
            t.compared += 1;
            t.rows += result.source_rows;
        });
    }
}

/// The report for people: per table its chunks and rows, and every differing row by
/// key (the first `limit` per table).
pub fn render(results: &[ChunkResult], limit: usize) -> String {
    let mut by_table: Vec<(&str, Vec<&ChunkResult>)> = Vec::new();
    for r in results {
        match by_table.last_mut() {
            Some((t, list)) if *t == r.chunk.table => list.push(r),
            _ => by_table.push((&r.chunk.table, vec![r])),
        }
    }
    let mut out = String::new();
    for (table, chunks) in by_table {
        let rows: i64 = chunks.iter().map(|c| c.source_rows).sum();
        let differing: Vec<&&ChunkResult> = chunks.iter().filter(|c| !c.same()).collect();
        let retried = chunks.iter().filter(|c| c.attempts > 1).count();
        let again = if retried > 0 {
            format!(", {retried} compared again while rows changed")
        } else {
            String::new()
        };
        if differing.is_empty() {
            let _ = writeln!(
                out,
                "  same      {table}: {rows} rows in {} chunk(s){again}",
                chunks.len()
            );
            continue;
        }
        let rows_differing: usize = differing.iter().map(|c| c.rows.len()).sum();
        let _ = writeln!(
            out,
            "  DIFFERENT {table}: {rows_differing} row(s) in {} of {} chunk(s){again}",
            differing.len(),
            chunks.len()
        );
        let mut shown = 0;
        for c in &differing {
            if c.rows.is_empty() {
                let _ = writeln!(
                    out,
                    "      chunk {}: {} rows on the source, {} on the target, hashes differ (rows changed while compared)",
                    c.chunk.index, c.source_rows, c.target_rows
                );
            }
            for row in &c.rows {
                if shown == limit {
                    break;
                }
                shown += 1;
                let what = match row.difference {
                    RowDifference::MissingOnTarget => "missing on the target",
                    RowDifference::ExtraOnTarget => "extra on the target",
                    RowDifference::Different => "different",
                };
                let _ = writeln!(out, "      key ({}): {what}", row.key.join(", "));
            }
        }
        if rows_differing > shown {
            let _ = writeln!(
                out,
                "      … and {} more (--format json lists them all)",
                rows_differing - shown
            );
        }
    }
    out
}
