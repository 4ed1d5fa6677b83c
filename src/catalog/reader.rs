//! Reads a [`Catalog`] from a live server: a fixed number of queries whatever the size
//! of the database (never one per table), all in one read-only repeatable-read
//! snapshot so the pieces agree with each other. Sizes and row counts are the planner's
//! estimates (`relpages`, `reltuples`): exact figures would stat every file.
//!
//! Left out: the system schemas (`pg_catalog`, `information_schema`, `pg_toast*`,
//! `pg_temp*`), temporary relations, and objects that belong to an extension.

use std::collections::HashMap;

use futures_util::TryStreamExt;
use std::borrow::Borrow;

use tokio_postgres::{Client, Row};

use super::*;

/// `n` is a `pg_namespace` row of a user schema not owned by an extension.
const USER_NAMESPACE: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%' \
     AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_namespace'::regclass \
                     AND e.objid = n.oid AND e.deptype = 'e')";

/// `c` is a non-temporary `pg_class` row not owned by an extension.
const USER_RELATION: &str = "c.relpersistence <> 't' \
     AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_class'::regclass \
                     AND e.objid = c.oid AND e.deptype = 'e')";

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Shown with the server's detail and hint (the error is not also chained as a
    /// source, so messages do not repeat it).
    #[error(
        "reading the catalog failed ({what}): {}",
        crate::conn::describe_db_error(error)
    )]
    Query {
        what: &'static str,
        error: tokio_postgres::Error,
    },
    #[error("PostgreSQL {0} is too old: carve needs 12 or newer")]
    TooOld(String),
}

fn query_error(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> ReadError {
    move |error| ReadError::Query { what, error }
}

/// Reads the whole catalog of the database the clients are connected to.
///
/// With more than one client, the queries are shared out among them, each running in
/// a snapshot exported by the first (as `pg_dump --jobs` does), so the parts still
/// agree with each other while the server works on several at once.
pub async fn read_catalog<C: Borrow<Client> + Sync>(clients: &[C]) -> Result<Catalog, ReadError> {
    let clients: Vec<&Client> = clients.iter().map(Borrow::borrow).collect();
    let (first, others) = clients.split_first().expect("at least one connection");
    const BEGIN: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
    // With only pg_catalog on the search path, every name in a definition, default or
    // type comes out schema-qualified, so moving a table to another schema changes
    // the text in a way carve can map back (see `engine::gate`).
    const QUALIFY: &str = "SET LOCAL search_path = pg_catalog";
    first
        .batch_execute(&format!("{BEGIN}; {QUALIFY}"))
        .await
        .map_err(query_error("begin"))?;
    let result = async {
        if !others.is_empty() {
            let snapshot: String = first
                .query_one("SELECT pg_export_snapshot()", &[])
                .await
                .map_err(query_error("export snapshot"))?
                .get(0);
            let import = format!(
                "{BEGIN}; SET TRANSACTION SNAPSHOT {}; {QUALIFY}",
                crate::sql::literal(&snapshot).expect("snapshot ids have no NUL")
            );
            for client in others {
                client
                    .batch_execute(&import)
                    .await
                    .map_err(query_error("import snapshot"))?;
            }
        }
        read_in_snapshot(&clients).await
    }
    .await;
    // Read-only: ending the transactions either way is safe, and keeps the connections
    // usable.
    for client in &clients {
        let _ = client.batch_execute("ROLLBACK").await;
    }
    result
}

/// The catalog queries. Listed heaviest first, so that sharing them out in order keeps
/// the connections evenly busy.
#[derive(Debug, Clone, Copy)]
enum Query {
    Relations,
    /// Half of the views' definitions (by oid parity): after assign, a compatibility
    /// view per table makes this the heaviest query, so it is shared by two
    /// connections.
    ViewDefinitions(u8),
    Indexes,
    Columns,
    Constraints,
    ViewDependencies,
    Sequences,
    Triggers,
    Functions,
    Grants,
    Schemas,
    Roles,
    Extensions,
}

const QUERIES: [Query; 14] = [
    Query::Relations,
    Query::ViewDefinitions(0),
    Query::ViewDefinitions(1),
    Query::Indexes,
    Query::Columns,
    Query::Constraints,
    Query::ViewDependencies,
    Query::Sequences,
    Query::Triggers,
    Query::Functions,
    Query::Grants,
    Query::Schemas,
    Query::Roles,
    Query::Extensions,
];

/// One query's rows, already turned into model values (keyed by relation oid where
/// they belong to a relation), so no result set is held longer than its rows stream.
enum Output {
    Relations(Vec<(u32, Relation)>),
    ViewDefinitions(Vec<(u32, String)>),
    Indexes(Vec<(u32, Index)>),
    Columns(Vec<(u32, Column)>),
    Constraints(Vec<(u32, Constraint)>),
    ViewDependencies(Vec<(u32, QualName, Option<String>)>),
    Sequences(Vec<Sequence>),
    Triggers(Vec<(u32, Trigger)>),
    Functions(Vec<Function>),
    Grants(Vec<GrantRow>),
    Schemas(Vec<Schema>),
    Roles(Vec<Role>),
    Extensions(Vec<Extension>),
}

enum Relation {
    Table(Table),
    View(View),
}

struct GrantRow {
    kind: String,
    schema: String,
    name: Option<String>,
    column: Option<String>,
    grant: Grant,
}

impl Query {
    async fn run(self, client: &Client, version_num: i32) -> Result<Output, ReadError> {
        Ok(match self {
            Query::Relations => {
                Output::Relations(stream(client, "relations", &relations_sql(), relation).await?)
            }
            Query::ViewDefinitions(half) => {
                Output::ViewDefinitions(view_definitions(client, half).await?)
            }
            Query::Indexes => {
                Output::Indexes(stream(client, "indexes", &indexes_sql(), index).await?)
            }
            Query::Columns => {
                Output::Columns(stream(client, "columns", &columns_sql(), column).await?)
            }
            Query::Constraints => Output::Constraints(
                stream(client, "constraints", &constraints_sql(), constraint).await?,
            ),
            Query::ViewDependencies => Output::ViewDependencies(
                stream(client, "view dependencies", &view_dependencies_sql(), |r| {
                    (
                        r.get(0),
                        QualName {
                            schema: r.get(1),
                            name: r.get(2),
                        },
                        r.get(3),
                    )
                })
                .await?,
            ),
            Query::Sequences => {
                Output::Sequences(stream(client, "sequences", &sequences_sql(), sequence).await?)
            }
            Query::Triggers => {
                Output::Triggers(stream(client, "triggers", &triggers_sql(), trigger).await?)
            }
            Query::Functions => Output::Functions(
                stream(client, "functions", &functions_sql(version_num), function).await?,
            ),
            Query::Grants => {
                Output::Grants(stream(client, "grants", &grants_sql(), grant_row).await?)
            }
            Query::Schemas => Output::Schemas(
                stream(client, "schemas", &schemas_sql(), |r| Schema {
                    name: r.get(0),
                    owner: r.get(1),
                    comment: r.get(2),
                    grants: Vec::new(),
                })
                .await?,
            ),
            Query::Roles => Output::Roles(stream(client, "roles", ROLES_SQL, role).await?),
            Query::Extensions => Output::Extensions(
                stream(client, "extensions", EXTENSIONS_SQL, |r| Extension {
                    name: r.get(0),
                    version: r.get(1),
                    schema: r.get(2),
                })
                .await?,
            ),
        })
    }
}

/// Runs one query and maps each row as it arrives.
async fn stream<T>(
    client: &Client,
    what: &'static str,
    sql: &str,
    map: impl Fn(&Row) -> T,
) -> Result<Vec<T>, ReadError> {
    let start = std::time::Instant::now();
    let rows = client
        .query_raw(sql, Vec::<&str>::new())
        .await
        .map_err(query_error(what))?;
    futures_util::pin_mut!(rows);
    let mut out = Vec::new();
    while let Some(row) = rows.try_next().await.map_err(query_error(what))? {
        out.push(map(&row));
    }
    tracing::info!(
        target: "carve::timing",
        "{what} query {:.2}s ({} rows)",
        start.elapsed().as_secs_f64(),
        out.len()
    );
    Ok(out)
}

/// How many view definitions one savepoint reads (see [`view_definitions`]).
const VIEWS_PER_SAVEPOINT: usize = 100;

/// Every view's definition, in batches. `pg_get_viewdef` locks the view and every
/// relation it reads until the transaction ends, so 10,000 views would hold some
/// 20,000 locks and exhaust the server's shared lock table (64 × connections by
/// default). Each batch runs in a savepoint that is rolled back once its rows are
/// read: the locks go, the snapshot stays. A batch holds about 200 locks.
///
/// A batch is a list of view oids read beforehand, so `pg_get_viewdef` runs for
/// those views and no others whatever the plan: in one query with `ORDER BY oid
/// LIMIT 100`, the planner may (and at 10,000 tables after assign did) compute every
/// remaining view's definition below a Sort and keep 100, taking every one of their
/// locks.
async fn view_definitions(client: &Client, half: u8) -> Result<Vec<(u32, String)>, ReadError> {
    // The views once (the filters scan pg_class and pg_depend), then their
    // definitions by oid, a batch at a time.
    let list = format!(
        "SELECT c.oid
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('v', 'm') AND {USER_RELATION} AND {USER_NAMESPACE}
           AND c.oid::int8 % 2 = {half}
         ORDER BY c.oid"
    );
    let oids: Vec<u32> = stream(client, "view list", &list, |r| r.get(0)).await?;
    let started = std::time::Instant::now();
    let mut out: Vec<(u32, String)> = Vec::with_capacity(oids.len());
    for batch in oids.chunks(VIEWS_PER_SAVEPOINT) {
        client
            .batch_execute("SAVEPOINT carve_view_definitions")
            .await
            .map_err(query_error("view definitions"))?;
        let rows = client
            .query(
                "SELECT v.oid, pg_get_viewdef(v.oid) FROM unnest($1::oid[]) AS v(oid)",
                &[&batch],
            )
            .await
            .map_err(query_error("view definitions"))?;
        client
            .batch_execute(
                "ROLLBACK TO SAVEPOINT carve_view_definitions; RELEASE SAVEPOINT carve_view_definitions",
            )
            .await
            .map_err(query_error("view definitions"))?;
        out.extend(rows.iter().map(|r| {
            (
                r.get::<_, u32>(0),
                r.get::<_, Option<String>>(1).unwrap_or_default(),
            )
        }));
    }
    tracing::info!(
        target: "carve::timing",
        "view definitions {:.2}s ({} views)",
        started.elapsed().as_secs_f64(),
        out.len()
    );
    Ok(out)
}

async fn read_in_snapshot(clients: &[&Client]) -> Result<Catalog, ReadError> {
    let server = read_server(clients[0]).await?;
    if server.version_num < 120000 {
        return Err(ReadError::TooOld(server.version));
    }
    // Each connection takes the next query from the list until none is left.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let workers = clients.iter().map(|client| {
        let next = &next;
        let version_num = server.version_num;
        async move {
            let mut outputs = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(query) = QUERIES.get(i) else {
                    return Ok::<_, ReadError>(outputs);
                };
                outputs.push(query.run(client, version_num).await?);
                if std::env::var_os("CARVE_LOCK_PROBE").is_some() {
                    let n: i64 = client
                        .query_one(
                            "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid()",
                            &[],
                        )
                        .await
                        .unwrap()
                        .get(0);
                    eprintln!("LOCKPROBE {query:?}: {n}");
                }
            }
        }
    });
    let outputs = futures_util::future::try_join_all(workers).await?;
    let mut catalog = assemble(server, outputs.into_iter().flatten());
    catalog.normalize();
    Ok(catalog)
}

async fn read_server(client: &Client) -> Result<ServerInfo, ReadError> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version'), current_setting('server_version_num')::int4, \
                    current_database()::text, current_user::text, current_setting('wal_level')",
            &[],
        )
        .await
        .map_err(query_error("server"))?;
    Ok(ServerInfo {
        version: row.get(0),
        version_num: row.get(1),
        database: row.get(2),
        current_user: row.get(3),
        wal_level: row.get(4),
    })
}

fn schemas_sql() -> String {
    format!(
        "SELECT n.nspname::text, pg_get_userbyid(n.nspowner)::text, d.description
         FROM pg_namespace n
         LEFT JOIN pg_description d ON d.objoid = n.oid
              AND d.classoid = 'pg_namespace'::regclass AND d.objsubid = 0
         WHERE {USER_NAMESPACE}"
    )
}

fn relations_sql() -> String {
    format!(
        "SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text, c.relpersistence::text,
                pg_get_userbyid(c.relowner)::text,
                pn.nspname::text, pc.relname::text,
                CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) END,
                CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END,
                c.relreplident::text, ri.relname::text,
                (c.relpages::int8 + coalesce(toast.relpages, 0)
                  + coalesce((SELECT sum(ic.relpages) FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid
                              WHERE x.indrelid = c.oid), 0)::int8)
                  * current_setting('block_size')::int8,
                c.reltuples::int8,
                NULL::text, -- view definitions: Query::ViewDefinitions
                coalesce(c.reloptions, '{{}}')::text[],
                d.description
         FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace
         LEFT JOIN pg_class toast ON toast.oid = c.reltoastrelid
         LEFT JOIN pg_inherits i ON c.relispartition AND i.inhrelid = c.oid
         LEFT JOIN pg_class pc ON pc.oid = i.inhparent
         LEFT JOIN pg_namespace pn ON pn.oid = pc.relnamespace
         LEFT JOIN pg_index rix ON c.relreplident = 'i' AND rix.indrelid = c.oid AND rix.indisreplident
         LEFT JOIN pg_class ri ON ri.oid = rix.indexrelid
         LEFT JOIN pg_description d ON d.objoid = c.oid
              AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
         WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm') AND {USER_RELATION} AND {USER_NAMESPACE}"
    )
}

fn columns_sql() -> String {
    format!(
        "SELECT a.attrelid, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                pg_get_expr(ad.adbin, ad.adrelid), a.attidentity::text, a.attgenerated::text,
                d.description
         FROM pg_attribute a
         JOIN pg_class c ON c.oid = a.attrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
         LEFT JOIN pg_description d ON d.objoid = a.attrelid
              AND d.classoid = 'pg_class'::regclass AND d.objsubid = a.attnum
         WHERE a.attnum > 0 AND NOT a.attisdropped
           AND c.relkind IN ('r', 'p', 'f', 'v', 'm') AND {USER_RELATION} AND {USER_NAMESPACE}
         ORDER BY a.attrelid, a.attnum"
    )
}

/// Column names of `rel` for an array of attribute numbers, in the array's order.
fn attnames(rel: &str, nums: &str) -> String {
    format!(
        "ARRAY(SELECT att.attname::text FROM unnest({nums}) WITH ORDINALITY k(num, ord)
               JOIN pg_attribute att ON att.attrelid = {rel} AND att.attnum = k.num
               ORDER BY k.ord)"
    )
}

fn constraints_sql() -> String {
    format!(
        "SELECT con.conrelid, con.conname::text, con.contype::text, pg_get_constraintdef(con.oid),
                con.condeferrable, con.condeferred, con.conparentid <> 0,
                {cols}, fn.nspname::text, fc.relname::text, {refcols},
                con.confupdtype::text, con.confdeltype::text, con.confmatchtype::text
         FROM pg_constraint con
         JOIN pg_class c ON c.oid = con.conrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         LEFT JOIN pg_class fc ON fc.oid = con.confrelid
         LEFT JOIN pg_namespace fn ON fn.oid = fc.relnamespace
         WHERE con.contype IN ('p', 'u', 'f', 'c', 'x')
           AND c.relkind IN ('r', 'p', 'f') AND {USER_RELATION} AND {USER_NAMESPACE}",
        cols = attnames("con.conrelid", "con.conkey"),
        refcols = attnames("con.confrelid", "con.confkey"),
    )
}

fn indexes_sql() -> String {
    format!(
        "SELECT i.indrelid, ic.relname::text, pg_get_indexdef(i.indexrelid), i.indisunique,
                i.indisprimary, {cols}, con.conname::text
         FROM pg_index i
         JOIN pg_class ic ON ic.oid = i.indexrelid
         JOIN pg_class c ON c.oid = i.indrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid
              AND con.conrelid = i.indrelid AND con.contype IN ('p', 'u', 'x')
         WHERE c.relkind IN ('r', 'p', 'm') AND {USER_RELATION} AND {USER_NAMESPACE}",
        cols = attnames("i.indrelid", "i.indkey::int2[]"),
    )
}

fn triggers_sql() -> String {
    format!(
        "SELECT t.tgrelid, t.tgname::text, pn.nspname::text, p.proname::text, t.tgtype::int4,
                t.tgenabled::text, pg_get_triggerdef(t.oid), {cols}
         FROM pg_trigger t
         JOIN pg_class c ON c.oid = t.tgrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_proc p ON p.oid = t.tgfoid
         JOIN pg_namespace pn ON pn.oid = p.pronamespace
         WHERE NOT t.tgisinternal AND {USER_RELATION} AND {USER_NAMESPACE}",
        cols = attnames("t.tgrelid", "t.tgattr::int2[]"),
    )
}

fn view_dependencies_sql() -> String {
    format!(
        "SELECT DISTINCT r.ev_class, rn.nspname::text, rc.relname::text, a.attname::text
         FROM pg_rewrite r
         JOIN pg_class c ON c.oid = r.ev_class
         JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_depend dep ON dep.classid = 'pg_rewrite'::regclass AND dep.objid = r.oid
              AND dep.refclassid = 'pg_class'::regclass AND dep.deptype = 'n'
         JOIN pg_class rc ON rc.oid = dep.refobjid
         JOIN pg_namespace rn ON rn.oid = rc.relnamespace
         LEFT JOIN pg_attribute a ON dep.refobjsubid > 0
              AND a.attrelid = dep.refobjid AND a.attnum = dep.refobjsubid
         WHERE c.relkind IN ('v', 'm') AND dep.refobjid <> r.ev_class
           AND rn.nspname NOT IN ('pg_catalog', 'information_schema')
           AND {USER_RELATION} AND {USER_NAMESPACE}"
    )
}

fn sequences_sql() -> String {
    format!(
        "SELECT n.nspname::text, c.relname::text, format_type(s.seqtypid, NULL), s.seqstart,
                s.seqincrement, s.seqmin, s.seqmax, s.seqcycle, pg_get_userbyid(c.relowner)::text,
                tn.nspname::text, tc.relname::text, ta.attname::text, dep.deptype::text,
                d.description
         FROM pg_sequence s
         JOIN pg_class c ON c.oid = s.seqrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         LEFT JOIN pg_depend dep ON dep.classid = 'pg_class'::regclass AND dep.objid = c.oid
              AND dep.refclassid = 'pg_class'::regclass AND dep.deptype IN ('a', 'i')
              AND dep.refobjsubid > 0
         LEFT JOIN pg_class tc ON tc.oid = dep.refobjid
         LEFT JOIN pg_namespace tn ON tn.oid = tc.relnamespace
         LEFT JOIN pg_attribute ta ON ta.attrelid = dep.refobjid AND ta.attnum = dep.refobjsubid
         LEFT JOIN pg_description d ON d.objoid = c.oid
              AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
         WHERE {USER_RELATION} AND {USER_NAMESPACE}"
    )
}

fn functions_sql(version_num: i32) -> String {
    // SQL-standard bodies (BEGIN ATOMIC, PostgreSQL 14+) live in prosqlbody, not prosrc.
    let body = if version_num >= 140000 {
        "CASE WHEN p.prosqlbody IS NOT NULL THEN pg_get_function_sqlbody(p.oid) ELSE p.prosrc END"
    } else {
        "p.prosrc"
    };
    format!(
        "SELECT n.nspname::text, p.proname::text, pg_get_function_identity_arguments(p.oid),
                pg_get_function_result(p.oid), p.prokind::text, l.lanname::text, {body},
                p.provolatile::text, p.prosecdef, pg_get_userbyid(p.proowner)::text, d.description,
                p.pronargs::int4,
                CASE WHEN p.prokind IN ('f', 'p') THEN pg_get_functiondef(p.oid) END
         FROM pg_proc p
         JOIN pg_namespace n ON n.oid = p.pronamespace
         JOIN pg_language l ON l.oid = p.prolang
         LEFT JOIN pg_description d ON d.objoid = p.oid
              AND d.classoid = 'pg_proc'::regclass AND d.objsubid = 0
         WHERE {USER_NAMESPACE}
           AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_proc'::regclass
                           AND e.objid = p.oid AND e.deptype = 'e')"
    )
}

const ROLES_SQL: &str = "
    SELECT r.rolname::text, r.rolcanlogin, r.rolsuper, r.rolcreatedb, r.rolcreaterole,
           r.rolreplication, r.rolbypassrls, r.rolinherit, r.rolconnlimit,
           r.rolvaliduntil::text,
           ARRAY(SELECT g.rolname::text FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
                 WHERE m.member = r.oid ORDER BY 1),
           (SELECT substr(c, length('search_path=') + 1)
            FROM pg_db_role_setting s, unnest(s.setconfig) AS c
            WHERE c LIKE 'search_path=%'
              AND ((s.setrole = r.oid AND s.setdatabase IN (0, d.oid))
                   OR (s.setrole = 0 AND s.setdatabase = d.oid))
            ORDER BY s.setrole = r.oid AND s.setdatabase = d.oid DESC, s.setrole = r.oid DESC
            LIMIT 1)
    FROM pg_roles r, pg_database d
    WHERE r.rolname !~ '^pg_' AND d.datname = current_database()";

/// Grants that differ from the object's default privileges (`acldefault`), in ACL
/// order, as pg_dump prints them: an ACL that was granted and revoked back to its default is
/// then the same as one never touched (PostgreSQL keeps it explicit, not NULL).
fn grants_sql() -> String {
    let who = "CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text END, \
               a.privilege_type, a.is_grantable, pg_get_userbyid(a.grantor)::text";
    let not_default = |kind: &str, owner: &str| {
        format!(
            "NOT EXISTS (SELECT 1 FROM aclexplode(acldefault({kind}, {owner})) d
                 WHERE d.grantee = a.grantee AND d.grantor = a.grantor
                   AND d.privilege_type = a.privilege_type AND d.is_grantable = a.is_grantable)"
        )
    };
    let schema_default = not_default("'n'", "n.nspowner");
    let relation_default = not_default(
        "CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::\"char\"",
        "c.relowner",
    );
    format!(
        "SELECT 's', n.nspname::text, NULL::text, NULL::text, {who}, a.ord
         FROM pg_namespace n, aclexplode(n.nspacl) WITH ORDINALITY AS a(grantor, grantee, privilege_type, is_grantable, ord)
         WHERE {USER_NAMESPACE} AND {schema_default}
         UNION ALL
         SELECT c.relkind::text, n.nspname::text, c.relname::text, NULL::text, {who}, a.ord
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
              aclexplode(c.relacl) WITH ORDINALITY AS a(grantor, grantee, privilege_type, is_grantable, ord)
         WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm', 'S') AND {USER_RELATION} AND {USER_NAMESPACE}
           AND {relation_default}
         UNION ALL
         SELECT 'c', n.nspname::text, c.relname::text, att.attname::text, {who}, a.ord
         FROM pg_attribute att JOIN pg_class c ON c.oid = att.attrelid
              JOIN pg_namespace n ON n.oid = c.relnamespace,
              aclexplode(att.attacl) WITH ORDINALITY AS a(grantor, grantee, privilege_type, is_grantable, ord)
         WHERE att.attacl IS NOT NULL AND att.attnum > 0 AND NOT att.attisdropped
           AND c.relkind IN ('r', 'p', 'f', 'v', 'm') AND {USER_RELATION} AND {USER_NAMESPACE}
         ORDER BY 1, 2, 3, 4, 9"
    )
}

const EXTENSIONS_SQL: &str = "
    SELECT e.extname::text, e.extversion, n.nspname::text
    FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace";

/// Where a relation (by oid) went in the model.
#[derive(Clone, Copy)]
enum Slot {
    Table(usize),
    View(usize),
}

/// Stitches the queries' outputs into one catalog. Relations come first, since the
/// other parts attach to them by oid.
fn assemble(server: ServerInfo, outputs: impl Iterator<Item = Output>) -> Catalog {
    let mut catalog = Catalog {
        server,
        schemas: Vec::new(),
        tables: Vec::new(),
        views: Vec::new(),
        sequences: Vec::new(),
        functions: Vec::new(),
        roles: Vec::new(),
        extensions: Vec::new(),
    };
    let mut outputs: Vec<Output> = outputs.collect();
    outputs.sort_by_key(|o| !matches!(o, Output::Relations(_)));
    let mut slots: HashMap<u32, Slot> = HashMap::new();
    let mut grants = Vec::new();
    for output in outputs {
        match output {
            Output::Relations(rows) => {
                for (oid, relation) in rows {
                    match relation {
                        Relation::Table(t) => {
                            slots.insert(oid, Slot::Table(catalog.tables.len()));
                            catalog.tables.push(t);
                        }
                        Relation::View(v) => {
                            slots.insert(oid, Slot::View(catalog.views.len()));
                            catalog.views.push(v);
                        }
                    }
                }
            }
            Output::ViewDefinitions(rows) => {
                for (oid, definition) in rows {
                    if let Some(Slot::View(i)) = slots.get(&oid) {
                        catalog.views[*i].definition = definition;
                    }
                }
            }
            Output::Columns(rows) => {
                for (oid, column) in rows {
                    match slots.get(&oid) {
                        Some(Slot::Table(i)) => catalog.tables[*i].columns.push(column),
                        Some(Slot::View(i)) => catalog.views[*i].columns.push(column),
                        None => {}
                    }
                }
            }
            Output::Constraints(rows) => {
                for (oid, constraint) in rows {
                    if let Some(Slot::Table(i)) = slots.get(&oid) {
                        catalog.tables[*i].constraints.push(constraint);
                    }
                }
            }
            Output::Indexes(rows) => {
                for (oid, index) in rows {
                    if let Some(Slot::Table(i)) = slots.get(&oid) {
                        catalog.tables[*i].indexes.push(index);
                    }
                }
            }
            Output::Triggers(rows) => {
                for (oid, trigger) in rows {
                    match slots.get(&oid) {
                        Some(Slot::Table(i)) => catalog.tables[*i].triggers.push(trigger),
                        Some(Slot::View(i)) => catalog.views[*i].triggers.push(trigger),
                        None => {}
                    }
                }
            }
            Output::ViewDependencies(rows) => {
                for (oid, relation, column) in rows {
                    if let Some(Slot::View(i)) = slots.get(&oid) {
                        add_view_dependency(&mut catalog.views[*i], relation, column);
                    }
                }
            }
            Output::Sequences(rows) => catalog.sequences = rows,
            Output::Functions(rows) => catalog.functions = rows,
            Output::Schemas(rows) => catalog.schemas = rows,
            Output::Roles(rows) => catalog.roles = rows,
            Output::Extensions(rows) => catalog.extensions = rows,
            Output::Grants(rows) => grants = rows,
        }
    }
    for view in &mut catalog.views {
        for dep in &mut view.depends_on {
            dep.columns.sort();
            dep.columns.dedup();
        }
    }
    attach_grants(&mut catalog, grants);
    catalog
}

fn add_view_dependency(view: &mut View, relation: QualName, column: Option<String>) {
    let at = match view.depends_on.iter().position(|d| d.relation == relation) {
        Some(at) => at,
        None => {
            view.depends_on.push(ViewDependency {
                relation,
                columns: Vec::new(),
            });
            view.depends_on.len() - 1
        }
    };
    if let Some(column) = column {
        view.depends_on[at].columns.push(column);
    }
}

fn relation(r: &Row) -> (u32, Relation) {
    let oid: u32 = r.get(0);
    let name = QualName {
        schema: r.get(1),
        name: r.get(2),
    };
    let relkind: String = r.get(3);
    let owner: String = r.get(5);
    let comment: Option<String> = r.get(16);
    if relkind == "v" || relkind == "m" {
        return (
            oid,
            Relation::View(View {
                name,
                materialized: relkind == "m",
                owner,
                definition: r.get::<_, Option<String>>(14).unwrap_or_default(),
                columns: Vec::new(),
                options: r.get(15),
                depends_on: Vec::new(),
                triggers: Vec::new(),
                comment,
                grants: Vec::new(),
            }),
        );
    }
    let parent = match (r.get::<_, Option<String>>(6), r.get::<_, Option<String>>(7)) {
        (Some(schema), Some(name)) => Some(QualName { schema, name }),
        _ => None,
    };
    let replica_identity = match r.get::<_, String>(10).as_str() {
        "n" => ReplicaIdentity::Nothing,
        "f" => ReplicaIdentity::Full,
        "i" => ReplicaIdentity::Index(r.get::<_, Option<String>>(11).unwrap_or_default()),
        _ => ReplicaIdentity::Default,
    };
    let reltuples: i64 = r.get(13);
    let table = Table {
        name,
        kind: match relkind.as_str() {
            "p" => TableKind::Partitioned,
            "f" => TableKind::Foreign,
            _ => TableKind::Ordinary,
        },
        unlogged: r.get::<_, String>(4) == "u",
        owner,
        partition_of: parent,
        partition_bound: r.get(8),
        partition_key: r.get(9),
        columns: Vec::new(),
        constraints: Vec::new(),
        indexes: Vec::new(),
        triggers: Vec::new(),
        replica_identity,
        size_bytes: r.get(12),
        // reltuples is -1 until the first VACUUM or ANALYZE (PostgreSQL 14+).
        row_estimate: (reltuples >= 0).then_some(reltuples),
        comment,
        grants: Vec::new(),
    };
    (oid, Relation::Table(table))
}

fn column(r: &Row) -> (u32, Column) {
    let generated: String = r.get(6);
    let expr: Option<String> = r.get(4);
    let (default, generated) = if generated == "s" {
        (None, expr)
    } else {
        (expr, None)
    };
    let column = Column {
        name: r.get(1),
        type_name: r.get(2),
        not_null: r.get(3),
        default,
        identity: match r.get::<_, String>(5).as_str() {
            "a" => Some(Identity::Always),
            "d" => Some(Identity::ByDefault),
            _ => None,
        },
        generated,
        comment: r.get(7),
        grants: Vec::new(),
    };
    (r.get(0), column)
}

fn constraint(r: &Row) -> (u32, Constraint) {
    let kind = match r.get::<_, String>(2).as_str() {
        "p" => ConstraintKind::PrimaryKey,
        "u" => ConstraintKind::Unique,
        "f" => ConstraintKind::ForeignKey,
        "x" => ConstraintKind::Exclusion,
        _ => ConstraintKind::Check,
    };
    let foreign_key = (kind == ConstraintKind::ForeignKey).then(|| ForeignKey {
        references: QualName {
            schema: r.get::<_, Option<String>>(8).unwrap_or_default(),
            name: r.get::<_, Option<String>>(9).unwrap_or_default(),
        },
        referenced_columns: r.get(10),
        on_update: fk_action(&r.get::<_, String>(11)),
        on_delete: fk_action(&r.get::<_, String>(12)),
        match_full: r.get::<_, String>(13) == "f",
    });
    let constraint = Constraint {
        name: r.get(1),
        kind,
        definition: r.get(3),
        deferrable: r.get(4),
        initially_deferred: r.get(5),
        inherited: r.get(6),
        columns: r.get(7),
        foreign_key,
    };
    (r.get(0), constraint)
}

fn index(r: &Row) -> (u32, Index) {
    let index = Index {
        name: r.get(1),
        definition: r.get(2),
        unique: r.get(3),
        primary: r.get(4),
        columns: r.get(5),
        constraint: r.get(6),
    };
    (r.get(0), index)
}

fn trigger(r: &Row) -> (u32, Trigger) {
    let tgtype: i32 = r.get(4);
    let trigger = Trigger {
        name: r.get(1),
        function: QualName {
            schema: r.get(2),
            name: r.get(3),
        },
        timing: if tgtype & 64 != 0 {
            TriggerTiming::InsteadOf
        } else if tgtype & 2 != 0 {
            TriggerTiming::Before
        } else {
            TriggerTiming::After
        },
        events: [
            (4, TriggerEvent::Insert),
            (16, TriggerEvent::Update),
            (8, TriggerEvent::Delete),
            (32, TriggerEvent::Truncate),
        ]
        .into_iter()
        .filter(|(bit, _)| tgtype & bit != 0)
        .map(|(_, event)| event)
        .collect(),
        columns: r.get(7),
        for_each_row: tgtype & 1 != 0,
        enabled: r.get::<_, String>(5) != "D",
        definition: r.get(6),
    };
    (r.get(0), trigger)
}

fn sequence(r: &Row) -> Sequence {
    let owned_by = match (
        r.get::<_, Option<String>>(9),
        r.get::<_, Option<String>>(10),
        r.get::<_, Option<String>>(11),
    ) {
        (Some(schema), Some(name), Some(column)) => Some(ColumnRef {
            table: QualName { schema, name },
            column,
        }),
        _ => None,
    };
    Sequence {
        name: QualName {
            schema: r.get(0),
            name: r.get(1),
        },
        data_type: r.get(2),
        start: r.get(3),
        increment: r.get(4),
        min: r.get(5),
        max: r.get(6),
        cycle: r.get(7),
        owner: r.get(8),
        owned_by,
        identity: r.get::<_, Option<String>>(12).as_deref() == Some("i"),
        comment: r.get(13),
        grants: Vec::new(),
    }
}

fn function(r: &Row) -> Function {
    Function {
        name: QualName {
            schema: r.get(0),
            name: r.get(1),
        },
        arguments: r.get(2),
        arity: r.get(11),
        result: r.get(3),
        kind: match r.get::<_, String>(4).as_str() {
            "p" => FunctionKind::Procedure,
            "a" => FunctionKind::Aggregate,
            "w" => FunctionKind::Window,
            _ => FunctionKind::Function,
        },
        language: r.get(5),
        body: r.get::<_, Option<String>>(6).unwrap_or_default(),
        volatility: match r.get::<_, String>(7).as_str() {
            "i" => "immutable",
            "s" => "stable",
            _ => "volatile",
        }
        .to_string(),
        security_definer: r.get(8),
        owner: r.get(9),
        comment: r.get(10),
        definition: r.get(12),
    }
}

fn grant_row(r: &Row) -> GrantRow {
    GrantRow {
        kind: r.get(0),
        schema: r.get(1),
        name: r.get(2),
        column: r.get(3),
        grant: Grant {
            grantee: r.get(4),
            privilege: r.get(5),
            grantable: r.get(6),
            grantor: r.get(7),
        },
    }
}

fn attach_grants(catalog: &mut Catalog, rows: Vec<GrantRow>) {
    let mut relations: HashMap<QualName, Slot> = HashMap::new();
    for (i, t) in catalog.tables.iter().enumerate() {
        relations.insert(t.name.clone(), Slot::Table(i));
    }
    for (i, v) in catalog.views.iter().enumerate() {
        relations.insert(v.name.clone(), Slot::View(i));
    }
    let sequences: HashMap<QualName, usize> = catalog
        .sequences
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.clone(), i))
        .collect();
    for row in rows {
        let GrantRow {
            kind,
            schema,
            name,
            column,
            grant,
        } = row;
        if kind == "s" {
            if let Some(s) = catalog.schemas.iter_mut().find(|s| s.name == schema) {
                s.grants.push(grant);
            }
            continue;
        }
        let name = QualName {
            schema,
            name: name.unwrap_or_default(),
        };
        if kind == "S" {
            if let Some(i) = sequences.get(&name) {
                catalog.sequences[*i].grants.push(grant);
            }
            continue;
        }
        let columns = match relations.get(&name) {
            Some(Slot::Table(i)) if column.is_none() => {
                catalog.tables[*i].grants.push(grant);
                continue;
            }
            Some(Slot::View(i)) if column.is_none() => {
                catalog.views[*i].grants.push(grant);
                continue;
            }
            Some(Slot::Table(i)) => &mut catalog.tables[*i].columns,
            Some(Slot::View(i)) => &mut catalog.views[*i].columns,
            None => continue,
        };
        if let Some(c) = columns
            .iter_mut()
            .find(|c| Some(&c.name) == column.as_ref())
        {
            c.grants.push(grant);
        }
    }
}

fn role(r: &Row) -> Role {
    Role {
        name: r.get(0),
        login: r.get(1),
        superuser: r.get(2),
        create_db: r.get(3),
        create_role: r.get(4),
        replication: r.get(5),
        bypass_rls: r.get(6),
        inherit: r.get(7),
        connection_limit: r.get(8),
        valid_until: r.get(9),
        member_of: r.get(10),
        search_path: r.get(11),
    }
}

fn fk_action(code: &str) -> FkAction {
    match code {
        "r" => FkAction::Restrict,
        "c" => FkAction::Cascade,
        "n" => FkAction::SetNull,
        "d" => FkAction::SetDefault,
        _ => FkAction::NoAction,
    }
}
