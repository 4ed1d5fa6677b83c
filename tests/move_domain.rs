//! Phase 4's building blocks against real servers (the command comes next): the
//! preflight weighs facts read from a throw-away source (the library after assign)
//! and target; the target schema, generated from the catalog model and run through
//! the executor on a `domain:` target, equals the source's domain schema in pg_dump.

mod support;

use carve::catalog::facts::{non_empty_tables, ServerFacts};
use carve::phases::move_domain::preflight::{check, Acceptances, TargetFacts};
use carve::plan::Plan;
use support::*;

/// `support::run`, named apart from the executor's `run`.
fn run_carve(m: &Monolith, args: &[&str]) -> std::process::Output {
    support::run(m, args)
}

#[tokio::test]
async fn the_preflight_weighs_what_the_servers_really_are() {
    let source = server();
    let dir = tempfile::tempdir().unwrap();
    let m = example_monolith(&source, dir.path(), "library", "library").await;
    assert_success(&run_carve(&m, &["assign"]));
    let plan = Plan::load(&m.plan).unwrap();
    let domain = plan
        .domains
        .iter()
        .find(|d| d.tables.iter().any(|t| t == "public.reading_list"))
        .unwrap()
        .name
        .clone();
    let catalog = catalog_of(&source, &m.db).await;
    let source_client = client(&m.conninfo).await;
    let source_facts = ServerFacts::read(&source_client).await.unwrap();
    assert_eq!(source_facts.wal_level, "logical");
    assert!(source_facts.version_num >= 150_000);

    let target = server();
    let target_client = create_db(&target, "library", "SELECT 1").await;
    let target_facts = |tables| TargetFacts {
        server: source_facts.clone(),
        non_empty_tables: tables,
    };
    let facts = target_facts(non_empty_tables(&target_client, &domain).await.unwrap());
    // PostgreSQL's default keeps WAL for a slot without limit: refused unless accepted.
    let found = check(
        &plan,
        &catalog,
        &domain,
        &source_facts,
        &facts,
        &Acceptances::default(),
    );
    let whats: Vec<&str> = found.iter().map(|r| r.what.as_str()).collect();
    assert_eq!(
        whats,
        ["max_slot_wal_keep_size on the source"],
        "{found:#?}"
    );
    let accepted = Acceptances {
        unlimited_slot_wal: true,
        ..Acceptances::default()
    };
    assert!(check(&plan, &catalog, &domain, &source_facts, &facts, &accepted).is_empty());

    // A table of the domain that already holds rows on the target.
    target_client
        .batch_execute(&format!(
            "CREATE SCHEMA {d}; CREATE TABLE {d}.reading_list (id int); INSERT INTO {d}.reading_list VALUES (1)",
            d = carve::sql::ident(&domain)
        ))
        .await
        .unwrap();
    let facts = target_facts(non_empty_tables(&target_client, &domain).await.unwrap());
    let found = check(&plan, &catalog, &domain, &source_facts, &facts, &accepted);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].why.contains("already holds rows"), "{found:#?}");

    // A long transaction on the source, named by its pid.
    let long = client(&m.conninfo).await;
    long.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let pid: i32 = long
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let waited = ServerFacts::read(&source_client).await.unwrap();
    let impatient = Acceptances {
        long_transaction_secs: 0.1,
        ..accepted.clone()
    };
    let found = check(
        &plan,
        &catalog,
        &domain,
        &waited,
        &target_facts(Vec::new()),
        &impatient,
    );
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].why.contains(&format!("backend pid {pid}")),
        "{found:#?}"
    );

    // A server without logical decoding.
    let replica_only = carve::pgtemp::TempServer::start_with(
        &carve::pgtemp::ServerOptions::default().setting("wal_level", "replica"),
    )
    .unwrap();
    let facts = ServerFacts::read(&client(&replica_only.conninfo("postgres")).await)
        .await
        .unwrap();
    let found = check(
        &plan,
        &catalog,
        &domain,
        &facts,
        &target_facts(Vec::new()),
        &accepted,
    );
    assert!(
        found.iter().any(|r| r.what == "wal_level on the source"),
        "{found:#?}"
    );
}

/// `pg_dump --schema-only` of one schema, without owners, privileges or comments
/// (roles and grants are not generated yet), as its statements in sorted order:
/// pg_dump orders some objects by OID, which differs between the two servers.
fn schema_shape(server: &carve::pgtemp::TempServer, db: &str, schema: &str) -> String {
    let out = std::process::Command::new(server.bin_dir().join("pg_dump"))
        .args([
            "--schema-only",
            "--no-owner",
            "--no-privileges",
            "--no-comments",
            "-n",
            schema,
            "-d",
        ])
        .arg(server.conninfo(db))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text: String = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict") && !l.starts_with("--")
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut statements: Vec<&str> = text
        .split(";\n")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    statements.sort();
    statements.join(";\n")
}

#[tokio::test]
async fn the_generated_schema_on_the_domain_server_is_the_source_schema() {
    use carve::engine::endpoint::{Endpoint, Endpoints, Session};
    use carve::engine::executor::{run, LockPolicy, Planned, RunContext, RunEnd};
    use carve::engine::Target;
    use carve::phases::move_domain::schema::target_schema;
    use carve::plan::{GateHints, PhaseId, PhaseRecord, StepStatus};

    let source = server();
    let dir = tempfile::tempdir().unwrap();
    let m = example_monolith(&source, dir.path(), "library", "library").await;
    assert_success(&run_carve(&m, &["assign"]));
    let mut plan = Plan::load(&m.plan).unwrap();
    let domain = plan
        .domains
        .iter()
        .find(|d| d.tables.iter().any(|t| t == "public.reading_list"))
        .unwrap()
        .name
        .clone();
    let catalog = catalog_of(&source, &m.db).await;
    let generated = target_schema(&catalog, &domain);
    let steps: Vec<carve::engine::Step> = generated
        .steps
        .iter()
        .chain(&generated.deferred)
        .cloned()
        .collect();

    let target = server();
    create_db(&target, "library", "SELECT 1").await;
    let session = |conninfo: String| async move {
        Session::new(client(&conninfo).await, client(&conninfo).await)
            .await
            .unwrap()
    };
    let mut endpoints = Endpoints::source_only(session(m.conninfo.clone()).await);
    endpoints.insert(
        Target::Domain(domain.clone()),
        Endpoint::Postgres(session(target.conninfo("library")).await),
    );
    let id = PhaseId::new("move", Some(&domain));
    plan.phases.push(PhaseRecord::planned(
        id.clone(),
        String::new(),
        GateHints::default(),
        steps.clone(),
    ));
    let events = carve::engine::events::Recorded::default();
    let interrupted = std::sync::atomic::AtomicBool::new(false);
    let end = run(
        RunContext {
            endpoints: &endpoints,
            plan: &mut plan,
            plan_path: &m.plan,
            policy: &LockPolicy::default(),
            events: &events,
            interrupted: &interrupted,
        },
        &id,
        &Planned::each(&steps),
        StepStatus::Done,
    )
    .await
    .unwrap();
    assert!(
        matches!(end, RunEnd::Completed { skipped: 0, .. }),
        "{end:?}"
    );
    assert_eq!(
        schema_shape(&target, "library", &domain),
        schema_shape(&source, &m.db, &domain)
    );
}
