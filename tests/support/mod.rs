//! Shared helpers for the integration tests: real throw-away servers, never mocks.
#![allow(dead_code)]

use carve::catalog::reader::read_catalog;
use carve::catalog::Catalog;
use carve::conn::{self, ConnSpec, Environment};
use carve::pgtemp::TempServer;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A fresh server; the test fails (never skips) when PostgreSQL is not installed.
pub fn server() -> TempServer {
    TempServer::start().unwrap_or_else(|e| panic!("cannot start a throw-away PostgreSQL: {e}"))
}

/// An environment with no PG* variables, so tests do not depend on the caller's shell.
pub fn clean_env() -> Environment {
    Environment {
        os_user: Some("postgres".into()),
        ..Environment::default()
    }
}

pub async fn client(conninfo: &str) -> tokio_postgres::Client {
    let spec = ConnSpec::resolve(conninfo, &clean_env()).expect("conninfo");
    conn::connect(&spec).await.unwrap_or_else(|e| panic!("{e}"))
}

/// Creates database `db` on `server` and runs `sql` in it.
pub async fn create_db(server: &TempServer, db: &str, sql: &str) -> tokio_postgres::Client {
    let admin = client(&server.conninfo("postgres")).await;
    admin
        .batch_execute(&format!("CREATE DATABASE {}", carve::sql::ident(db)))
        .await
        .expect("create database");
    let c = client(&server.conninfo(db)).await;
    c.batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("loading SQL into {db}: {e:?}"));
    c
}

/// Reads the catalog over two connections, so the shared-snapshot path is exercised.
pub async fn catalog_of(server: &TempServer, db: &str) -> Catalog {
    let clients = vec![
        client(&server.conninfo(db)).await,
        client(&server.conninfo(db)).await,
    ];
    read_catalog(&clients).await.expect("read catalog")
}

pub fn example(name: &str) -> &'static carve::examples::Example {
    carve::examples::Example::all()
        .into_iter()
        .find(|e| e.name == name)
        .expect("example exists")
}

/// The `carve` binary, with an environment that does not leak the caller's settings.
pub fn carve() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("carve").expect("carve binary");
    for var in [
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGPASSWORD",
        "PGSSLMODE",
        "CARVE_PLAN",
        "CARVE_SOURCE",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("NO_COLOR", "1");
    cmd
}

/// Fails the test with the command's stderr unless it exited 0.
pub fn assert_success(output: &std::process::Output) {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Adjusted Rand index of two clusterings of the same items (1.0: identical), by
/// carve's own `leiden::adjusted_rand_index` over the labels numbered.
pub fn adjusted_rand_index(
    truth: &[(&str, &str)],
    predicted: &std::collections::HashMap<String, String>,
) -> f64 {
    carve::analysis::leiden::adjusted_rand_index_of(truth.iter().map(|(item, t)| {
        let p = predicted
            .get(*item)
            .unwrap_or_else(|| panic!("{item} has no predicted domain"));
        (*t, p)
    }))
}

/// The benchbase test data beside the repository; a clear failure when it is missing.
pub fn benchbase() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/benchbase");
    assert!(
        dir.join("schema.sql").is_file(),
        "the benchbase test data is missing at {}: it comes with the shared/ folder beside the repository",
        dir.display()
    );
    dir
}

/// Runs `carve --format json discover` and returns its JSON and exit code.
pub fn discover_json(plan: &std::path::Path, args: &[&str]) -> (serde_json::Value, i32, String) {
    let out = carve()
        .arg("--plan")
        .arg(plan)
        .args(["--format", "json", "discover"])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (json, out.status.code().unwrap_or(-1), stderr)
}

/// A table of a discover JSON report, by its `schema.table` name.
pub fn table<'a>(json: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    json["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in report"))
}

pub fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// A monolith database with its plan made by discover.
pub struct Monolith {
    pub db: String,
    pub conninfo: String,
    pub plan: PathBuf,
    pub workload: PathBuf,
}

pub async fn monolith(
    server: &TempServer,
    dir: &Path,
    db: &str,
    sql: &str,
    workload: PathBuf,
) -> Monolith {
    create_db(server, db, sql).await;
    let m = Monolith {
        db: db.to_string(),
        conninfo: server.conninfo(db),
        plan: dir.join(format!("{db}.plan.toml")),
        workload,
    };
    let out = run(
        &m,
        &["discover", "--workload", m.workload.to_str().unwrap()],
    );
    assert_eq!(code(&out), 0, "discover: {}", stderr(&out));
    m
}

pub async fn example_monolith(server: &TempServer, dir: &Path, name: &str, db: &str) -> Monolith {
    let example = example(name);
    let workload = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
        .join("workload");
    let sql = format!("{}\n{}", example.schema, example.seed);
    monolith(server, dir, db, &sql, workload).await
}

/// Runs carve with the monolith's plan and source, `--yes` unless asked otherwise.
pub fn run(m: &Monolith, args: &[&str]) -> std::process::Output {
    carve()
        .arg("--plan")
        .arg(&m.plan)
        .arg("--yes")
        .args(args)
        .env("CARVE_SOURCE", &m.conninfo)
        .output()
        .unwrap()
}

pub fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `pg_dump --schema-only`, without the random `\restrict` key newer pg_dumps print.
pub fn schema_dump(server: &TempServer, db: &str) -> String {
    let out = Command::new(server.bin_dir().join("pg_dump"))
        .arg("--schema-only")
        .arg("-d")
        .arg(server.conninfo(db))
        .output()
        .expect("pg_dump runs");
    assert!(out.status.success(), "pg_dump: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Starts carve with the monolith's plan and source, `--yes`, and `args`, its stderr
/// piped so a test can follow its progress lines.
pub fn spawn(m: &Monolith, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_carve"))
        .arg("--plan")
        .arg(&m.plan)
        .arg("--yes")
        .args(args)
        .env("CARVE_SOURCE", &m.conninfo)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs carve (blocking) until it does not find the lock of a killed run still held
/// (the killed run's session ends when its last statement does).
pub fn run_past_lock(m: &Monolith, args: &[&str]) -> std::process::Output {
    for _ in 0..150 {
        let out = run(m, args);
        if code(&out) != 4 {
            return out;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    panic!("the lock stayed held");
}

/// Runs carve with `args`, waits for its `k`-th progress line on stderr, then kills it
/// with SIGKILL.
pub fn kill_after(m: &Monolith, args: &[&str], k: usize) {
    let mut child = spawn(m, args);
    let lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = 0;
    for line in lines {
        if line.unwrap().starts_with('[') {
            seen += 1;
            if seen == k {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

/// The first column of every row `sql` returns, as text.
pub async fn texts(
    client: &tokio_postgres::Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Vec<String> {
    client
        .query(sql, params)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Every role with its attributes, password presence and memberships: what a
/// refused command must leave exactly as it was.
pub async fn role_listing(client: &tokio_postgres::Client) -> Vec<String> {
    client
        .query(
            "SELECT r.rolname || ' ' || r.rolsuper || r.rolinherit || r.rolcreaterole || r.rolcreatedb || r.rolcanlogin || r.rolreplication || r.rolbypassrls || ' limit=' || r.rolconnlimit || ' password=' || (a.rolpassword IS NOT NULL) || ' in=' || coalesce((SELECT string_agg(g.rolname || '/' || m.admin_option, ',' ORDER BY g.rolname) FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid), '')
             FROM pg_roles r JOIN pg_authid a ON a.oid = r.oid WHERE r.rolname !~ '^pg_' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Reads `lines` (a child's stderr) up to and including the first that contains
/// `needle`, and returns them.
pub fn lines_until(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    needle: &str,
) -> Vec<String> {
    let mut seen = Vec::new();
    for line in lines {
        let line = line.unwrap();
        let found = line.contains(needle);
        seen.push(line);
        if found {
            break;
        }
    }
    seen
}

/// Runs `steps` through the executor as phase `id` (its record already in `plan`),
/// with a recording event sink; returns how the run ended and what it told.
pub async fn run_steps(
    endpoints: &carve::engine::endpoint::Endpoints,
    plan: &mut carve::plan::Plan,
    path: &Path,
    id: &carve::plan::PhaseId,
    steps: &[carve::engine::Step],
    done_as: carve::plan::StepStatus,
) -> (
    carve::engine::executor::RunEnd,
    Vec<carve::engine::events::Event>,
) {
    use carve::engine::executor::{run, LockPolicy, Planned, RunContext};
    let events = carve::engine::events::Recorded::default();
    let interrupted = std::sync::atomic::AtomicBool::new(false);
    let end = run(
        RunContext {
            endpoints,
            plan,
            plan_path: path,
            policy: &LockPolicy::default(),
            events: &events,
            interrupted: &interrupted,
        },
        id,
        &Planned::each(steps),
        done_as,
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    (end, events.0.into_inner().unwrap())
}

/// Row count and an ordered hash of a table: equal on two servers when they hold
/// the same rows.
pub async fn rows(client: &tokio_postgres::Client, table: &str) -> (i64, String) {
    let row = client
        .query_one(
            &format!("SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM {table} t"),
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{table}: {e:?}"));
    (row.get(0), row.get(1))
}

/// The one bigint a query returns.
pub async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .get(0)
}

/// Nothing of a move of `domain` is left: no slot, publication or replication role
/// of carve's on the source; no subscription, no schema `domain` and no role but
/// superusers on the target.
pub async fn assert_no_move_left(
    source: &tokio_postgres::Client,
    target: &tokio_postgres::Client,
    domain: &str,
) {
    for (client, sql) in [
        (
            source,
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'carve%'",
        ),
        (
            source,
            "SELECT count(*) FROM pg_publication WHERE pubname LIKE 'carve%'",
        ),
        (
            source,
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'carve%repl'",
        ),
        (target, "SELECT count(*) FROM pg_subscription"),
        (
            target,
            "SELECT count(*) FROM pg_roles WHERE rolname !~ '^pg_' AND NOT rolsuper",
        ),
    ] {
        assert_eq!(
            count(client, sql).await,
            0,
            "{sql}: {:?}",
            role_listing(target).await
        );
    }
    let schema = format!(
        "SELECT count(*) FROM pg_namespace WHERE nspname = {}",
        carve::sql::literal(domain).unwrap()
    );
    assert_eq!(count(target, &schema).await, 0, "schema {domain} left");
}

/// The domain of the plan that holds `table` (`public.orders`).
pub fn domain_of(m: &Monolith, table: &str) -> String {
    let plan = carve::plan::Plan::load(&m.plan).unwrap();
    plan.domains
        .iter()
        .find(|d| d.tables.iter().any(|t| t == table))
        .unwrap_or_else(|| panic!("no domain holds {table}"))
        .name
        .clone()
}

/// `carve move` of `domain` to `target` (unlimited slot WAL accepted: the
/// throw-away servers keep PostgreSQL's default), with `extra` arguments.
pub fn move_to(m: &Monolith, domain: &str, target: &str, extra: &[&str]) -> std::process::Output {
    let mut args = move_args(domain, target).to_vec();
    args.extend_from_slice(extra);
    run(m, &args)
}

/// The arguments of [`move_to`] without its extras.
pub fn move_args<'a>(domain: &'a str, target: &'a str) -> [&'a str; 6] {
    [
        "move",
        "--domain",
        domain,
        "--target",
        target,
        "--accept-unlimited-slot-wal",
    ]
}

/// A second server for the domains, with an empty database of the monolith's name.
pub async fn target_server(db: &str) -> (TempServer, String) {
    let target = server();
    create_db(&target, db, "SELECT 1").await;
    let conninfo = target.conninfo(db);
    (target, conninfo)
}

/// Assign, then every object assign kept working across domains decided to go at
/// the move: a plan whose domains may move.
pub fn assign_letting_crossings_go(m: &Monolith) {
    assert_success(&run(m, &["assign"]));
    let mut plan = carve::plan::Plan::load(&m.plan).unwrap();
    plan.let_kept_crossings_go("objects kept across domains go at the move");
    plan.save(&m.plan).unwrap();
}

/// Pins the library's catalog to the reading list's domain and proposes again, as
/// a team would that keeps the books next to the lists referring to them: one
/// domain of two tables with a foreign key inside it.
pub fn pin_library_catalog_to_reading_list(m: &Monolith) {
    let mut plan = carve::plan::Plan::load(&m.plan).unwrap();
    plan.pins.push(carve::plan::Pin {
        tables: vec!["public.reading_list".into(), "public.book_catalog".into()],
        domain: Some("reading_list".into()),
    });
    plan.save(&m.plan).unwrap();
    let out = run(m, &["discover", "--workload", m.workload.to_str().unwrap()]);
    assert_success(&out);
}

/// The kinds of a table's ranked resolutions in discover's JSON, best first.
pub fn resolution_kinds(table: &serde_json::Value) -> Vec<String> {
    table["resolutions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap().to_string())
        .collect()
}

/// Decides the library's crossings as the source texts do: every service's writes
/// of the common audit table are delegated to an audit service, and ReadingList's
/// read of the catalog (another domain) is replicated to it. No write grant
/// reaches across domains (or servers). The reading list's foreign key to the
/// catalog goes at the move.
pub fn decide_library_crossings(m: &Monolith) {
    decide_library_crossings_reading(m, "replicate");
}

/// [`decide_library_crossings`], with ReadingList's reads of the catalog decided
/// `reads` (`api`: the reading list asks the catalog's service instead).
pub fn decide_library_crossings_reading(m: &Monolith, reads: &str) {
    library_crossings(
        m,
        "delegate:audit-service",
        "the audit service records it",
        reads,
    );
    let mut plan = carve::plan::Plan::load(&m.plan).unwrap();
    let subject = "foreign key public.reading_list.reading_list_book_id_fkey";
    plan.decisions.retain(|d| d.subject != subject);
    plan.decisions.push(carve::plan::Decision {
        subject: subject.into(),
        choice: "drop-at-move".into(),
        reason: "the catalog's service checks its books".into(),
        rows: None,
    });
    plan.save(&m.plan).unwrap();
}

/// Decides the library's crossings so that every service keeps working: the audit
/// writes are granted until an audit service exists, the catalog read replicated.
pub fn grant_library_crossings(m: &Monolith) {
    library_crossings(
        m,
        "temporary-grant:audit-service",
        "until the audit service exists",
        "replicate",
    );
}

fn library_crossings(m: &Monolith, audit_writes: &str, reason: &str, reads: &str) {
    let mut plan = carve::plan::Plan::load(&m.plan).unwrap();
    for service in ["ReadingList", "BookCatalog", "BookInventory"] {
        plan.decisions.push(carve::plan::Decision {
            subject: format!("write public.audit by {service}"),
            choice: audit_writes.into(),
            reason: reason.into(),
            rows: None,
        });
    }
    // Once the catalog is split, its view joins the inventory part too.
    for table in [
        "public.book_catalog",
        "book_catalog.book_catalog_book_inventory",
    ] {
        plan.decisions.push(carve::plan::Decision {
            subject: format!("read {table} by ReadingList"),
            choice: reads.into(),
            reason: "the reading list shows the catalog's titles".into(),
            rows: None,
        });
    }
    plan.save(&m.plan).unwrap();
}

/// Where the plan at `plan` says `domain`'s clients are, and whether a switch is
/// under way.
pub fn live_side(plan: &Path, domain: &str) -> (carve::plan::Side, bool) {
    let plan = carve::plan::Plan::load(plan).unwrap();
    let d = plan.domains.iter().find(|d| d.name == domain).unwrap();
    match &d.cutover {
        None => (carve::plan::Side::Source, false),
        Some(c) => (c.live, c.switching.is_some()),
    }
}

/// The shop loaded on a monolith whose slots may keep 1 GB of WAL (as move's
/// preflight asks), an empty `shop` database on a second server, and PgBouncer in
/// front of the monolith with entry `orders`. The domain's trigger functions name
/// their tables unqualified and the tests' clients log in as postgres, so postgres
/// gets the services' search_path on the second server.
pub async fn shop_with_pgbouncer() -> (TempServer, TempServer, carve::pgtemp::TempBouncer) {
    let options = carve::pgtemp::ServerOptions::default().setting("max_slot_wal_keep_size", "1GB");
    let source = TempServer::start_with(&options).unwrap();
    let shop = example("shop");
    create_db(&source, "shop", &format!("{}\n{}", shop.schema, shop.seed)).await;
    let target = TempServer::start_with(&options).unwrap();
    create_db(&target, "shop", "SELECT 1").await;
    client(&target.conninfo("shop"))
        .await
        .batch_execute("ALTER ROLE postgres IN DATABASE shop SET search_path = orders, public")
        .await
        .unwrap();
    let bouncer = carve::pgtemp::TempBouncer::start(&source, &[("orders", "shop")])
        .unwrap_or_else(|e| panic!("cannot start a throw-away PgBouncer: {e}"));
    (source, target, bouncer)
}

/// What a refused command must leave as it was: the plan file's bytes, the source's
/// schema dump and its roles.
#[derive(Debug, PartialEq)]
pub struct State {
    pub plan: Vec<u8>,
    pub dump: String,
    pub roles: Vec<String>,
}

pub async fn state(server: &TempServer, m: &Monolith) -> State {
    State {
        plan: std::fs::read(&m.plan).unwrap(),
        dump: schema_dump(server, &m.db),
        roles: role_listing(&client(&m.conninfo).await).await,
    }
}

/// Connection string to `db` over the Unix socket as `role` (trusted locally).
pub fn as_role(server: &TempServer, db: &str, role: &str) -> String {
    server.conninfo(db).replace(
        "user=postgres",
        &format!("user={}", carve::conn::quote_value(role)),
    )
}

/// The library's catalog split with its inventory part in a domain of its own,
/// BookInventory's (`book_inventory`), then assigned, split and restricted: each
/// crossing decided so that it holds once each side has moved (reads of the
/// catalog's domain `domain`, and ReadingList's, replicated; what only holds on
/// one server granted).
pub fn split_library_across(m: &Monolith, domain: &str) {
    let inventory = "book_inventory";
    let mut plan = carve::plan::Plan::load(&m.plan).unwrap();
    let mut part_domain = plan.domains[0].clone();
    part_domain.name = inventory.into();
    part_domain.tables.clear();
    part_domain.server = None;
    plan.domains.push(part_domain);
    let s = plan
        .services
        .iter_mut()
        .find(|s| s.name == "BookInventory")
        .unwrap();
    s.domain = Some(inventory.into());
    plan.splits[0].domain = Some(inventory.into());
    plan.save(&m.plan).unwrap();
    decide_library_crossings(m);
    for phase in ["assign", "split"] {
        assert_success(&run(m, &[phase]));
    }
    let out = run(m, &["restrict", "--dry-run", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let mut plan = carve::plan::Plan::load(&m.plan).unwrap();
    for c in report["crossings"].as_array().unwrap() {
        if !c["decision"].is_null() {
            continue;
        }
        let choice = if c["write"] == true {
            format!("temporary-grant:{}", c["table_domain"].as_str().unwrap())
        } else if c["table_domain"] == domain || c["service"] == "ReadingList" {
            // Kept on the source for its readers when it moves.
            "replicate".into()
        } else {
            "temporary-grant".into()
        };
        plan.decisions.push(carve::plan::Decision {
            subject: c["subject"].as_str().unwrap().into(),
            choice,
            reason: "the test decides".into(),
            rows: None,
        });
    }
    plan.save(&m.plan).unwrap();
    assert_success(&run(m, &["restrict"]));
}
