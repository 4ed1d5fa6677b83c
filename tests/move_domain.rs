//! Phase 4's building blocks against real servers (`move_command.rs` runs the command): the
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
    let moving = library_moving().await;
    let (plan, catalog, domain) = (&moving.plan, &moving.catalog, moving.domain.clone());
    let m = &moving.m;
    let source_client = client(&m.conninfo).await;
    let source_facts = ServerFacts::read(&source_client).await.unwrap();
    assert_eq!(source_facts.wal_level, "logical");
    assert!(source_facts.version_num >= 150_000);

    let target_client = client(&moving.target.conninfo("library")).await;
    let target_facts = |tables| TargetFacts {
        server: source_facts.clone(),
        non_empty_tables: tables,
        types: Vec::new(),
    };
    let facts = target_facts(non_empty_tables(&target_client, &domain).await.unwrap());
    // PostgreSQL's default keeps WAL for a slot without limit: refused unless accepted.
    let found = check(
        plan,
        catalog,
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
    assert!(check(plan, catalog, &domain, &source_facts, &facts, &accepted).is_empty());

    // A table of the domain that already holds rows on the target.
    target_client
        .batch_execute(&format!(
            "CREATE SCHEMA {d}; CREATE TABLE {d}.reading_list (id int); INSERT INTO {d}.reading_list VALUES (1)",
            d = carve::sql::ident(&domain)
        ))
        .await
        .unwrap();
    let facts = target_facts(non_empty_tables(&target_client, &domain).await.unwrap());
    let found = check(plan, catalog, &domain, &source_facts, &facts, &accepted);
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
        plan,
        catalog,
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
        plan,
        catalog,
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

/// The library after assign, its catalog pinned to the reading list's domain, a
/// second server for that domain, and the endpoints of both.
struct Moving {
    source: carve::pgtemp::TempServer,
    target: carve::pgtemp::TempServer,
    dir: tempfile::TempDir,
    m: Monolith,
    plan: Plan,
    domain: String,
    catalog: carve::catalog::Catalog,
    endpoints: carve::engine::endpoint::Endpoints,
}

async fn library_moving() -> Moving {
    use carve::engine::endpoint::{Endpoint, Endpoints, Session};
    let source = server();
    let dir = tempfile::tempdir().unwrap();
    let m = example_monolith(&source, dir.path(), "library", "library").await;
    pin_library_catalog_to_reading_list(&m);
    assert_success(&run_carve(&m, &["assign"]));
    let plan = Plan::load(&m.plan).unwrap();
    let domain = domain_of(&m, "public.reading_list");
    let catalog = catalog_of(&source, &m.db).await;
    let target = server();
    create_db(&target, "library", "SELECT 1").await;
    let session = |conninfo: String| async move {
        Session::new(client(&conninfo).await, client(&conninfo).await)
            .await
            .unwrap()
    };
    let mut endpoints = Endpoints::source_only(session(m.conninfo.clone()).await);
    endpoints.insert(
        carve::engine::Target::Domain(domain.clone()),
        Endpoint::Postgres(session(target.conninfo("library")).await),
    );
    Moving {
        source,
        target,
        dir,
        m,
        plan,
        domain,
        catalog,
        endpoints,
    }
}

impl Moving {
    /// Records `steps` as the domain's move phase and runs them.
    async fn run(
        &mut self,
        steps: &[carve::engine::Step],
        done_as: carve::plan::StepStatus,
    ) -> carve::engine::executor::RunEnd {
        let id = carve::plan::PhaseId::new("move", Some(&self.domain));
        if self.plan.phase(&id).is_none() {
            self.plan.phases.push(carve::plan::PhaseRecord::planned(
                id.clone(),
                String::new(),
                Default::default(),
                steps.to_vec(),
            ));
        }
        run_steps(
            &self.endpoints,
            &mut self.plan,
            &self.m.plan,
            &id,
            steps,
            done_as,
        )
        .await
        .0
    }
}

#[tokio::test]
async fn the_generated_schema_on_the_domain_server_is_the_source_schema() {
    use carve::engine::executor::RunEnd;
    use carve::phases::move_domain::schema::target_schema;

    let mut moving = library_moving().await;
    // A view over the domain, reading another view of it: made after it, in order.
    client(&moving.m.conninfo)
        .await
        .batch_execute(&format!(
            "CREATE VIEW {d}.unread AS SELECT * FROM {d}.reading_list WHERE status = 'want-to-read';
             CREATE VIEW {d}.\"Unread \"\"books\"\"\" WITH (security_invoker = true) AS
                 SELECT b.title FROM {d}.unread u JOIN {d}.book_catalog b ON b.id = u.book_id;",
            d = carve::sql::ident(&moving.domain)
        ))
        .await
        .unwrap();
    moving.catalog = catalog_of(&moving.source, &moving.m.db).await;
    let generated = target_schema(&moving.catalog, &moving.domain);
    assert_eq!(
        generated
            .steps
            .iter()
            .filter(|s| s.id.starts_with("create view"))
            .count(),
        2
    );
    let steps: Vec<carve::engine::Step> = generated
        .steps
        .iter()
        .chain(&generated.deferred)
        .cloned()
        .collect();
    let end = moving.run(&steps, carve::plan::StepStatus::Done).await;
    assert!(
        matches!(end, RunEnd::Completed { skipped: 0, .. }),
        "{end:?}"
    );
    assert_eq!(
        schema_shape(&moving.target, "library", &moving.domain),
        schema_shape(&moving.source, &moving.m.db, &moving.domain)
    );
}

/// The library's reading-list domain copied to a second server by the generated
/// steps on PostgreSQL's logical replication, through the executor: equal rows, a
/// new row followed within seconds, and the undo leaving no slot, publication,
/// subscription or role behind. No password reaches the plan.
#[tokio::test]
async fn the_domain_is_copied_and_followed_by_logical_replication_and_undone_cleanly() {
    use carve::engine::executor::RunEnd;
    use carve::engine::undo_steps;
    use carve::phases::move_domain::replication::{ready_steps, replication_steps, Link};
    use carve::phases::move_domain::schema::target_schema;
    use carve::plan::StepStatus;

    let mut moving = library_moving().await;
    let passwords = moving.dir.path().join("passwords");
    let link = Link {
        conninfo: format!(
            "host=127.0.0.1 port={} dbname=library",
            moving.source.port()
        ),
        password_file: passwords.clone(),
        host: "127.0.0.1".into(),
        port: moving.source.port(),
        database: "library".into(),
    };
    let domain = moving.domain.clone();
    let schema = target_schema(&moving.catalog, &domain);
    let steps: Vec<carve::engine::Step> = schema
        .steps
        .iter()
        .cloned()
        .chain(replication_steps(
            &domain,
            &link,
            std::time::Duration::from_secs(60),
        ))
        .chain(schema.deferred.iter().cloned())
        .chain(ready_steps(
            &domain,
            1 << 20,
            std::time::Duration::from_secs(60),
        ))
        .collect();
    let end = moving.run(&steps, StepStatus::Done).await;
    assert!(matches!(end, RunEnd::Completed { .. }), "{end:?}");

    let source_client = client(&moving.m.conninfo).await;
    let target_client = client(&moving.target.conninfo("library")).await;
    for table in ["reading_list", "book_catalog"] {
        let name = format!("{}.{table}", carve::sql::ident(&domain));
        assert_eq!(
            rows(&target_client, &name).await,
            rows(&source_client, &name).await,
            "{table}"
        );
        assert!(rows(&source_client, &name).await.0 > 0, "{table} has rows");
    }
    // A change made through the compatibility view reaches the new server.
    source_client
        .batch_execute("UPDATE book_catalog SET title = 'Followed' WHERE id = 1")
        .await
        .unwrap();
    let mut followed = false;
    for _ in 0..100 {
        let n: i64 = target_client
            .query_one(
                &format!(
                    "SELECT count(*) FROM {}.book_catalog WHERE id = 1 AND title = 'Followed'",
                    carve::sql::ident(&domain)
                ),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if n == 1 {
            followed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(followed, "the update did not reach the domain's server");
    // The password is in the file (0600) and nowhere in the plan.
    let secret = std::fs::read_to_string(&passwords).unwrap();
    let password = secret.trim_end().rsplit(':').next().unwrap().to_string();
    assert_eq!(password.len(), 32);
    moving.plan.save(&moving.m.plan).unwrap();
    assert!(!std::fs::read_to_string(&moving.m.plan)
        .unwrap()
        .contains(&password));

    // Undo: everything on both servers is gone.
    let end = moving.run(&undo_steps(&steps), StepStatus::Undone).await;
    assert!(matches!(end, RunEnd::Completed { .. }), "{end:?}");
    assert_no_move_left(&source_client, &target_client, &domain).await;
}
