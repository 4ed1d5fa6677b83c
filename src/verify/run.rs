//! Runs a verify against the source and the domain's server (I/O, read-only): the
//! chunk boundaries from the source's keys, then each chunk hashed on both servers
//! by `jobs` pairs of connections side by side. A chunk that differs is compared
//! again once the domain's server has applied everything the source had when it
//! was read (its subscription's slot confirms that position), up to `retries` more
//! times; one that still differs is compared row by row, and each differing key is
//! named.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use super::journal::{Entry, VerifyJournal};
use super::{
    differences, Chunk, ChunkCutter, ChunkResult, DifferentRow, RowHash, TableShape,
    SESSION_SETTINGS,
};
use crate::conn::describe_db_error;

/// How a verify runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Rows per chunk.
    pub chunk_rows: u64,
    /// How many more times a differing chunk is compared before its rows are.
    pub retries: u32,
    /// How long to wait for the domain's server to apply the source's position.
    pub catch_up_timeout: Duration,
}

/// What a verify tells as it goes (the command shows it).
pub trait Progress: Sync {
    /// A table's chunks are known (`resumed` of them were compared by an earlier run).
    fn table(&self, table: &str, chunks: usize, resumed: usize);
    /// A chunk was compared.
    fn chunk(&self, result: &ChunkResult);
}

fn db(what: &str) -> impl Fn(tokio_postgres::Error) -> anyhow::Error + '_ {
    move |e| anyhow::anyhow!("{what}: {}", describe_db_error(&e))
}

/// Gives a connection verify's session settings, so both servers print values alike.
pub async fn prepare_session(client: &Client) -> anyhow::Result<()> {
    client
        .batch_execute(SESSION_SETTINGS)
        .await
        .map_err(db("setting up the session for verify"))
}

/// Marks the tables whose rows cannot be hashed by value on one of the servers (a
/// column type without a hash function): they are hashed by their text.
pub async fn choose_row_hash(
    source: &Client,
    target: &Client,
    tables: &mut [TableShape],
) -> anyhow::Result<()> {
    for shape in tables.iter_mut() {
        let sql = shape.hash_probe_sql();
        for client in [source, target] {
            match client.query(&sql, &[]).await {
                Ok(_) => {}
                Err(e)
                    if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_FUNCTION) =>
                {
                    shape.hash_text = true;
                }
                Err(e) => return Err(db(&format!("reading {}", shape.name))(e)),
            }
        }
    }
    Ok(())
}

/// Whether the two databases sort text differently (their `datcollate`): key ranges
/// are then compared byte-wise.
pub async fn collations_differ(source: &Client, target: &Client) -> anyhow::Result<bool> {
    let sql = "SELECT datcollate::text FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()";
    let a: String = source
        .query_one(sql, &[])
        .await
        .map_err(db("reading the collation"))?
        .get(0);
    let b: String = target
        .query_one(sql, &[])
        .await
        .map_err(db("reading the collation"))?
        .get(0);
    Ok(a != b)
}

/// The two sides of a verify: as many connections to each server as jobs, one
/// more to the source that reads the chunk boundaries while the others compare,
/// and the move's slot on the source (whose confirmed position says what the
/// target has applied).
pub struct Servers<'a> {
    pub sources: &'a [Client],
    pub targets: &'a [Client],
    pub reader: &'a Client,
    pub slot: &'a str,
}

/// What the boundary reader and the workers send the recorder.
enum Found {
    /// A table's chunks, all known: with how many an earlier run compared.
    Planned(Vec<Chunk>, usize),
    Compared(ChunkResult),
}

/// Compares `tables` on `servers`, resuming from `earlier`, recording every chunk in
/// `journal`. A table's chunks are compared as its boundaries stream in; `jobs`
/// workers take one chunk at a time. Returns every chunk's result (earlier ones
/// included), in table and chunk order.
pub async fn verify(
    servers: &Servers<'_>,
    tables: &[TableShape],
    options: &Options,
    journal: &mut VerifyJournal,
    earlier: Vec<Entry>,
    progress: &dyn Progress,
) -> anyhow::Result<Vec<ChunkResult>> {
    let mut planned: BTreeMap<String, Vec<Chunk>> = BTreeMap::new();
    let mut compared: BTreeMap<(String, usize), ChunkResult> = BTreeMap::new();
    for entry in earlier {
        match entry {
            Entry::Planned { table, chunks } => {
                planned.insert(table, chunks);
            }
            Entry::Compared(result) => {
                compared.insert((result.chunk.table.clone(), result.chunk.index), result);
            }
            Entry::Started { .. } => {}
        }
    }
    // An earlier result counts only for the very range it compared (a table whose
    // chunks were not all recorded is read again, and its ranges may differ).
    let earlier_result = |chunk: &Chunk| {
        compared
            .get(&(chunk.table.clone(), chunk.index))
            .filter(|r| &r.chunk == chunk)
    };
    let earlier_done = |chunk: &Chunk| earlier_result(chunk).is_some();
    let mut done: BTreeMap<(String, usize), ChunkResult> = BTreeMap::new();

    let (queue_in, queue_out) = tokio::sync::mpsc::unbounded_channel::<(usize, Chunk)>();
    let queue_out = tokio::sync::Mutex::new(queue_out);
    let (found_in, mut found_out) = tokio::sync::mpsc::unbounded_channel::<anyhow::Result<Found>>();

    // The chunks, table by table: recorded ones at once, the others as the source
    // gives their boundaries.
    let producer = {
        let found_in = found_in.clone();
        let earlier_done = &earlier_done;
        let planned = &planned;
        async move {
            for (i, shape) in tables.iter().enumerate() {
                let name = shape.name.to_string();
                let mut chunks = Vec::new();
                let mut push = |chunk: Chunk| {
                    if !earlier_done(&chunk) {
                        let _ = queue_in.send((i, chunk.clone()));
                    }
                    chunks.push(chunk);
                };
                match planned.get(&name) {
                    Some(recorded) => recorded.iter().cloned().for_each(&mut push),
                    None => {
                        if let Err(e) = boundaries(servers.reader, shape, options, &mut push).await
                        {
                            let _ = found_in.send(Err(e));
                            return;
                        }
                    }
                }
                let resumed = chunks.iter().filter(|c| earlier_done(c)).count();
                let _ = found_in.send(Ok(Found::Planned(chunks, resumed)));
            }
        }
    };
    let slot = servers.slot;
    let workers: Vec<_> = servers
        .sources
        .iter()
        .zip(servers.targets)
        .map(|(source, target)| {
            let (queue, found_in) = (&queue_out, found_in.clone());
            async move {
                let mut statements = Statements::default();
                loop {
                    let next = queue.lock().await.recv().await;
                    let Some((i, chunk)) = next else { break };
                    let shape = &tables[i];
                    let result =
                        compare(source, target, slot, shape, chunk, options, &mut statements).await;
                    let failed = result.is_err();
                    let _ = found_in.send(result.map(Found::Compared));
                    if failed {
                        break;
                    }
                }
            }
        })
        .collect();
    drop(found_in);
    let record = async {
        while let Some(found) = found_out.recv().await {
            match found? {
                Found::Planned(chunks, resumed) => {
                    let table = chunks[0].table.clone();
                    for r in chunks.iter().filter_map(&earlier_result) {
                        done.insert((table.clone(), r.chunk.index), r.clone());
                    }
                    progress.table(&table, chunks.len(), resumed);
                    if !planned.contains_key(&table) {
                        journal.append(&Entry::Planned { table, chunks })?;
                    }
                }
                Found::Compared(result) => {
                    journal.append(&Entry::Compared(result.clone()))?;
                    progress.chunk(&result);
                    done.insert((result.chunk.table.clone(), result.chunk.index), result);
                }
            }
        }
        anyhow::Ok(())
    };
    let ((), recorded, _) = tokio::join!(producer, record, futures_util::future::join_all(workers));
    recorded?;
    journal.sync()?;
    let order: BTreeMap<String, usize> = tables
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.to_string(), i))
        .collect();
    let mut results: Vec<ChunkResult> = done.into_values().collect();
    results.sort_by_key(|r| (order.get(&r.chunk.table).copied(), r.chunk.index));
    Ok(results)
}

/// A table's chunks from the source's keys, each handed to `push` as soon as its
/// upper boundary arrives (the query streams every N-th key); a table without a
/// key is one chunk.
async fn boundaries(
    reader: &Client,
    shape: &TableShape,
    options: &Options,
    push: &mut impl FnMut(Chunk),
) -> anyhow::Result<()> {
    use futures_util::{pin_mut, TryStreamExt};
    let mut cut = ChunkCutter::new(&shape.name.to_string());
    if !shape.key.is_empty() {
        let what = format!("reading the keys of {}", shape.name);
        let failed = db(&what);
        let rows = reader
            .query_raw(
                &shape.boundaries_sql(options.chunk_rows.max(1)),
                std::iter::empty::<&str>(),
            )
            .await
            .map_err(&failed)?;
        pin_mut!(rows);
        while let Some(row) = rows.try_next().await.map_err(&failed)? {
            let hi: Vec<String> = (0..shape.key.len())
                .map(|i| row.get::<_, Option<String>>(i).unwrap_or_default())
                .collect();
            push(cut.up_to(hi));
        }
    }
    push(cut.rest());
    Ok(())
}

/// A worker's prepared statements, by table and range shape: each chunk's query is
/// then one round trip, not a parse and plan too.
#[derive(Default)]
struct Statements {
    by_shape: std::collections::HashMap<(String, bool, bool), (Statement, Statement)>,
}

impl Statements {
    async fn get(
        &mut self,
        source: &Client,
        target: &Client,
        shape: &TableShape,
        lo: bool,
        hi: bool,
    ) -> anyhow::Result<(Statement, Statement)> {
        let key = (shape.name.to_string(), lo, hi);
        if let Some(found) = self.by_shape.get(&key) {
            return Ok(found.clone());
        }
        let sql = shape.chunk_sql(lo, hi);
        let prepared = tokio::try_join!(source.prepare(&sql), target.prepare(&sql))
            .map_err(db(&format!("preparing the hash of {}", shape.name)))?;
        self.by_shape.insert(key, prepared.clone());
        Ok(prepared)
    }
}

/// One chunk's count and hash on one server.
async fn hash(
    client: &Client,
    sql: &Statement,
    params: &[&str],
    side: &str,
) -> anyhow::Result<(i64, String)> {
    let row = client
        .query_one(sql, &as_sql(params))
        .await
        .map_err(db(&format!("hashing a chunk on the {side}")))?;
    Ok((row.get(0), row.get(1)))
}

/// Waits until the subscription's slot on the source confirms `lsn`: the domain's
/// server has applied everything the source had then.
async fn applied(source: &Client, slot: &str, lsn: &str, timeout: Duration) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    loop {
        let row = source
            .query_opt(
                "SELECT confirmed_flush_lsn >= $2::text::pg_lsn FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
                &[&slot, &lsn],
            )
            .await
            .map_err(db("reading the move's slot"))?;
        match row.map(|r| r.get::<_, Option<bool>>(0)) {
            None => anyhow::bail!(
                "the move's replication slot {slot} is not on the source: is the move still in place (`carve status`)?"
            ),
            Some(Some(true)) => return Ok(()),
            Some(_) if started.elapsed() > timeout => anyhow::bail!(
                "the domain's server did not apply the source's changes up to {lsn} within {}; `carve status` shows its replication",
                humantime::format_duration(timeout)
            ),
            Some(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Rows as `rows_sql` reads them: the key columns as text, then the row's hash.
fn row_hash(row: &tokio_postgres::Row) -> RowHash {
    let n = row.len() - 1;
    let key = (0..n)
        .map(|i| {
            row.get::<_, Option<String>>(i)
                .unwrap_or_else(|| "NULL".into())
        })
        .collect();
    (key, row.get(n))
}

/// Values as query parameters.
fn as_sql<T: ToSql + Sync>(values: &[T]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

/// Rows as `rows_sql` or `rows_by_key_sql` read them, on one server.
async fn row_hashes(
    client: &Client,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    side: &str,
) -> anyhow::Result<Vec<RowHash>> {
    let rows = client
        .query(sql, params)
        .await
        .map_err(db(&format!("reading rows on the {side}")))?;
    Ok(rows.iter().map(row_hash).collect())
}

/// The rows of `differing` read again on both servers (the target once it has
/// applied what the source had): those that still differ.
async fn again(
    source: &Client,
    target: &Client,
    slot: &str,
    shape: &TableShape,
    differing: &[DifferentRow],
    options: &Options,
) -> anyhow::Result<Vec<DifferentRow>> {
    let columns: Vec<Vec<String>> = (0..shape.key.len())
        .map(|i| differing.iter().map(|r| r.key[i].clone()).collect())
        .collect();
    let params = as_sql(&columns);
    let sql = shape.rows_by_key_sql();
    let on_source = row_hashes(source, &sql, &params, "source").await?;
    caught_up_with(source, slot, options).await?;
    let on_target = row_hashes(target, &sql, &params, "target").await?;
    Ok(differences(on_source, on_target))
}

/// Waits until the domain's server has applied everything the source has now.
async fn caught_up_with(source: &Client, slot: &str, options: &Options) -> anyhow::Result<()> {
    applied(
        source,
        slot,
        &current_lsn(source).await?,
        options.catch_up_timeout,
    )
    .await
}

/// The source's current WAL position.
async fn current_lsn(source: &Client) -> anyhow::Result<String> {
    Ok(source
        .query_one("SELECT pg_catalog.pg_current_wal_lsn()::text", &[])
        .await
        .map_err(db("reading the source's position"))?
        .get(0))
}

/// Compares one chunk: again after the target caught up while it differs, then
/// row by row.
async fn compare(
    source: &Client,
    target: &Client,
    slot: &str,
    shape: &TableShape,
    chunk: Chunk,
    options: &Options,
    statements: &mut Statements,
) -> anyhow::Result<ChunkResult> {
    let (lo, hi) = (chunk.lo.is_some(), chunk.hi.is_some());
    let (on_source, on_target) = statements.get(source, target, shape, lo, hi).await?;
    let params = chunk.params();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let ((source_rows, source_hash), (target_rows, target_hash)) = if attempts == 1 {
            // Most chunks are the same: both servers hash at once, no waiting.
            tokio::try_join!(
                hash(source, &on_source, &params, "source"),
                hash(target, &on_target, &params, "target")
            )?
        } else {
            // Then the target is read once it has applied what the source had.
            let source_hash = hash(source, &on_source, &params, "source").await?;
            caught_up_with(source, slot, options).await?;
            (
                source_hash,
                hash(target, &on_target, &params, "target").await?,
            )
        };
        let mut result = ChunkResult {
            chunk: chunk.clone(),
            source_rows,
            target_rows,
            source_hash,
            target_hash,
            attempts,
            rows: Vec::new(),
            rows_checked: false,
        };
        if result.same() {
            return Ok(result);
        }
        if attempts <= options.retries {
            // Under live writes: the rows may have changed between the two reads.
            tokio::time::sleep(Duration::from_millis(20 * u64::from(attempts))).await;
            continue;
        }
        let rows_sql = shape.rows_sql(lo, hi);
        // As for the hashes: the target is read once it has applied what the
        // source had when its rows were read.
        let on_source = row_hashes(source, &rows_sql, &as_sql(&params), "source").await?;
        caught_up_with(source, slot, options).await?;
        let on_target = row_hashes(target, &rows_sql, &as_sql(&params), "target").await?;
        result.rows = differences(on_source, on_target);
        result.rows_checked = true;
        // A row written between the two reads differs only for a moment: each is
        // read again by key, as many times, and only a lasting difference is kept.
        if !shape.key.is_empty() {
            for _ in 0..options.retries {
                if result.rows.is_empty() {
                    break;
                }
                result.rows = again(source, target, slot, shape, &result.rows, options).await?;
            }
        }
        return Ok(result);
    }
}

/// Tables whose chunks were all compared equal, and the rows counted.
pub fn summary(results: &[ChunkResult]) -> (u64, BTreeSet<String>) {
    let rows = results.iter().map(|r| r.source_rows.max(0) as u64).sum();
    let differing = results
        .iter()
        .filter(|r| !r.same())
        .map(|r| r.chunk.table.clone())
        .collect();
    (rows, differing)
}
