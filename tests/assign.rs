//! Phase 2, assign, and the step engine under it, on real servers: every workload
//! statement keeps running, data stays identical, undo restores the catalog exactly,
//! the dry-run script does the same work, SIGKILL at any point is finished by a re-run,
//! and the lock, stale-plan and lock-timeout paths behave as documented.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use carve::catalog::fingerprint::Fingerprint;
use carve::pgtemp::TempServer;
use carve::plan::Plan;
use support::*;

/// Every statement of the workload files, without transaction control.
fn statements(workload: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(workload)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    let mut all = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for piece in carve::workload::split::split(&text) {
            let first = piece.text.split_whitespace().next().unwrap_or("");
            let control = ["BEGIN", "COMMIT", "ROLLBACK", "START", "END"]
                .iter()
                .any(|w| first.eq_ignore_ascii_case(w));
            if !control {
                all.push(piece.text);
            }
        }
    }
    assert!(!all.is_empty(), "no statements in {}", workload.display());
    all
}

/// Whether each statement still plans as the connection's role (`engine::proof`):
/// "ok" or the error.
async fn outcomes(client: &tokio_postgres::Client, statements: &[String]) -> Vec<String> {
    let mut results = Vec::new();
    for s in statements {
        results.push(match carve::engine::proof::probe(client, s, &[]).await {
            None => "ok".to_string(),
            Some(e) => format!("{s}: {e}"),
        });
    }
    results
}

/// Row count and a checksum of every table the plan assigns, read by its original name.
async fn data(client: &tokio_postgres::Client, plan: &Plan) -> Vec<(String, i64, String)> {
    let mut rows = Vec::new();
    for domain in &plan.domains {
        for table in &domain.tables {
            let (schema, name) = carve::sql::parse_qualified(table).unwrap();
            let q = carve::sql::qualified(&schema, &name);
            let row = client
                .query_one(
                    &format!(
                        "SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM {q} t"
                    ),
                    &[],
                )
                .await
                .unwrap_or_else(|e| panic!("{table}: {e:?}"));
            rows.push((table.clone(), row.get(0), row.get(1)));
        }
    }
    rows
}

/// The whole before / assign / undo round trip on one monolith.
async fn round_trip(server: &TempServer, m: &Monolith) {
    let client = client(&m.conninfo).await;
    let plan = Plan::load(&m.plan).unwrap();
    let statements = statements(&m.workload);
    let before = outcomes(&client, &statements).await;
    let failing: Vec<_> = before.iter().filter(|o| *o != "ok").collect();
    assert!(
        failing.is_empty(),
        "statements failing before assign: {failing:#?}"
    );
    let data_before = data(&client, &plan).await;
    let dump_before = schema_dump(server, &m.db);
    let fingerprint_before = Fingerprint::of(&catalog_of(server, &m.db).await);

    let out = run(m, &["assign"]);
    assert_eq!(code(&out), 0, "assign: {}", stderr(&out));
    let plan_after = Plan::load(&m.plan).unwrap();
    let record = plan_after.phase("assign").expect("phase recorded");
    assert!(record.is_applied(), "{record:#?}");
    let moved = record
        .steps
        .iter()
        .filter(|s| s.id.starts_with("move table"))
        .count();
    assert!(moved > 0, "no table moved");
    let fingerprint_after = Fingerprint::of(&catalog_of(server, &m.db).await);
    assert_eq!(plan_after.fingerprint.digest, fingerprint_after.digest);
    // Every assigned table now lives in its domain's schema, a view in its old place.
    for domain in &plan.domains {
        for table in &domain.tables {
            let (_, name) = carve::sql::parse_qualified(table).unwrap();
            let key = format!(
                "table {}",
                carve::sql::display_qualified(&domain.name, &name)
            );
            assert!(
                fingerprint_after.objects.contains_key(&key),
                "{key} missing"
            );
            assert!(
                fingerprint_after
                    .objects
                    .contains_key(&format!("view {table}")),
                "no compatibility view for {table}"
            );
        }
    }
    assert_eq!(outcomes(&client, &statements).await, before, "after assign");
    assert_eq!(data(&client, &plan).await, data_before, "data after assign");

    // Applying again finds everything in place.
    let out = run(m, &["assign"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!(
            "0 step(s) applied, {} already in place",
            record.steps.len()
        )),
        "{}",
        stdout(&out)
    );

    let out = run(m, &["undo", "assign"]);
    assert_eq!(code(&out), 0, "undo: {}", stderr(&out));
    assert!(
        !stderr(&out).contains("not exactly as it was"),
        "{}",
        stderr(&out)
    );
    assert_eq!(outcomes(&client, &statements).await, before, "after undo");
    assert_eq!(data(&client, &plan).await, data_before, "data after undo");
    let fingerprint_undone = Fingerprint::of(&catalog_of(server, &m.db).await);
    assert_eq!(
        fingerprint_before.diff(&fingerprint_undone),
        vec![],
        "catalog after undo"
    );
    assert_eq!(fingerprint_before.digest, fingerprint_undone.digest);
    assert_eq!(
        schema_dump(server, &m.db),
        dump_before,
        "pg_dump --schema-only after undo"
    );
    let plan_undone = Plan::load(&m.plan).unwrap();
    assert!(plan_undone.phase("assign").unwrap().is_undone());
    assert_eq!(plan_undone.fingerprint.digest, fingerprint_before.digest);
}

#[tokio::test]
async fn library_round_trip_keeps_every_statement_and_row() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let m = example_monolith(&server, dir.path(), "library", "library").await;
    round_trip(&server, &m).await;
}

#[tokio::test]
async fn shop_round_trip_and_the_dry_run_script_does_the_same_work() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let m = example_monolith(&server, dir.path(), "shop", "shop").await;
    let scripted = example_monolith(&server, dir.path(), "shop", "shop_scripted").await;

    // The dry-run: exit 3, no change to the plan file, a script that psql runs.
    let plan_text = std::fs::read(&scripted.plan).unwrap();
    let out = run(&scripted, &["assign", "--dry-run"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(
        std::fs::read(&scripted.plan).unwrap(),
        plan_text,
        "dry-run changed the plan"
    );
    let script = dir.path().join("assign.sql");
    std::fs::write(&script, stdout(&out)).unwrap();
    let psql = Command::new(server.bin_dir().join("psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(&script)
        .arg("-d")
        .arg(&scripted.conninfo)
        .output()
        .unwrap();
    assert!(psql.status.success(), "psql: {}", stderr(&psql));

    round_trip(&server, &m).await;
    let out = run(&m, &["assign"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        schema_dump(&server, &scripted.db),
        schema_dump(&server, &m.db),
        "the psql script and carve assign end in different states"
    );
}

#[tokio::test]
async fn benchbase_round_trip_keeps_every_statement() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let data = benchbase();
    let sql = std::fs::read_to_string(data.join("schema.sql")).unwrap();
    let m = monolith(&server, dir.path(), "bench", &sql, data.join("workload")).await;
    round_trip(&server, &m).await;
}

#[tokio::test]
async fn sigkill_at_any_point_then_rerun_ends_in_the_same_state() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let reference = example_monolith(&server, dir.path(), "shop", "shop_ref").await;
    let original = schema_dump(&server, &reference.db);
    let out = run(&reference, &["assign"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let expected = schema_dump(&server, &reference.db);

    for k in [1, 9, 10, 27, 40] {
        let m = example_monolith(&server, dir.path(), "shop", &format!("shop_kill_{k}")).await;
        let c = client(&m.conninfo).await;
        let plan = Plan::load(&m.plan).unwrap();
        // Each copy seeds its own rows (timestamps differ), so each is its own reference.
        let data_before = data(&c, &plan).await;
        kill_after(&m, &["assign"], k);
        // The plan file is whole after the kill, the kill came part-way, and the run is
        // finished by re-running.
        let killed =
            Plan::load(&m.plan).unwrap_or_else(|e| panic!("plan after SIGKILL at {k}: {e}"));
        assert!(
            killed.phase("assign").unwrap().is_in_flight(),
            "SIGKILL at {k} came too late"
        );
        // The checkpoints since the run began are in the journal file beside the plan.
        let journal = carve::plan::journal_path(&m.plan);
        assert!(journal.exists(), "no journal file after SIGKILL at {k}");
        let out = run(&m, &["assign"]);
        assert_eq!(
            code(&out),
            0,
            "re-run after SIGKILL at step {k}: {}",
            stderr(&out)
        );
        assert_eq!(
            schema_dump(&server, &m.db),
            expected,
            "end state after SIGKILL at step {k}"
        );
        assert_eq!(
            data(&c, &plan).await,
            data_before,
            "data after SIGKILL at step {k}"
        );
        assert!(Plan::load(&m.plan)
            .unwrap()
            .phase("assign")
            .unwrap()
            .is_applied());
        // Undo, killed too, is finished the same way.
        if k == 10 || k == 40 {
            kill_after(&m, &["undo", "assign"], k);
            assert!(Plan::load(&m.plan)
                .unwrap()
                .phase("assign")
                .unwrap()
                .is_in_flight());
            let out = run(&m, &["undo", "assign"]);
            assert_eq!(code(&out), 0, "undo after SIGKILL at {k}: {}", stderr(&out));
            assert_eq!(
                schema_dump(&server, &m.db),
                original,
                "undo after SIGKILL at {k}"
            );
        }
    }
}

#[tokio::test]
async fn a_stale_plan_is_refused_with_the_change_named() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let m = example_monolith(&server, dir.path(), "library", "library").await;
    let c = client(&m.conninfo).await;
    c.batch_execute("ALTER TABLE reading_list ADD COLUMN note text")
        .await
        .unwrap();
    let plan_text = std::fs::read(&m.plan).unwrap();
    for args in [&["assign"][..], &["assign", "--dry-run"][..]] {
        let out = run(&m, args);
        assert_eq!(code(&out), 5, "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("column added: public.reading_list.note"),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(std::fs::read(&m.plan).unwrap(), plan_text);
    assert!(
        !schema_dump(&server, &m.db).contains("CREATE SCHEMA"),
        "nothing changed"
    );
}

#[tokio::test]
async fn missing_decisions_stop_assign_unless_yes_accepts_the_defaults() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let m = example_monolith(&server, dir.path(), "shop", "shop").await;
    let plan_text = std::fs::read(&m.plan).unwrap();
    let out = carve()
        .arg("--plan")
        .arg(&m.plan)
        .arg("assign")
        .env("CARVE_SOURCE", &m.conninfo)
        .output()
        .unwrap();
    assert_eq!(code(&out), 6, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("foreign key public.orders.orders_customer_id_fkey: NO DECISION"),
        "{err}"
    );
    assert!(err.contains("view public.order_summary"), "{err}");
    assert_eq!(std::fs::read(&m.plan).unwrap(), plan_text, "plan untouched");

    // A decision with a choice that does not exist is named.
    let mut plan = Plan::load(&m.plan).unwrap();
    plan.decisions.push(carve::plan::Decision {
        subject: "view public.order_summary".into(),
        choice: "ignore".into(),
        reason: String::new(),
        rows: None,
    });
    plan.save(&m.plan).unwrap();
    let out = run(&m, &["assign"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("\"ignore\" is not one of keep-until-move"),
        "{}",
        stderr(&out)
    );

    plan.decisions.pop();
    plan.save(&m.plan).unwrap();
    let out = run(&m, &["assign"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let plan = Plan::load(&m.plan).unwrap();
    let fk = plan
        .decision("foreign key public.orders.orders_customer_id_fkey")
        .expect("default recorded");
    assert_eq!(fk.choice, "keep-until-move");
    assert!(fk.reason.contains("--yes"), "{}", fk.reason);
}

/// Names PostgreSQL allows and SQL generators get wrong.
const HOSTILE: &str = r#"
CREATE SCHEMA "Odd ""Schema""";
CREATE ROLE "app user" LOGIN;
CREATE TABLE "Odd ""Schema"""."select" (
    "id" bigserial PRIMARY KEY,
    "Näme ""q""" text NOT NULL DEFAULT 'ünïcode',
    "order" integer UNIQUE,
    "created at" timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE "Odd ""Schema"""."abcdefghij_abcdefghij_abcdefghij_abcdefghij_abcdefghij_abcdefgh" (
    id int PRIMARY KEY,
    sel bigint REFERENCES "Odd ""Schema"""."select" ("id")
);
CREATE TABLE public."with space" (k text PRIMARY KEY, v int);
GRANT USAGE ON SCHEMA "Odd ""Schema""" TO "app user";
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "Odd ""Schema""" TO "app user";
GRANT USAGE ON ALL SEQUENCES IN SCHEMA "Odd ""Schema""" TO "app user";
GRANT SELECT ("k"), UPDATE ("v") ON public."with space" TO "app user";
INSERT INTO "Odd ""Schema"""."select" ("order") VALUES (1), (2);
"#;

#[tokio::test]
async fn hostile_identifiers_go_through_assign_and_undo_intact() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let workload = dir.path().join("workload");
    std::fs::create_dir(&workload).unwrap();
    std::fs::write(
        workload.join("app.sql"),
        r#"SELECT * FROM "Odd ""Schema"""."select" WHERE "order" = $1;
           INSERT INTO "Odd ""Schema"""."abcdefghij_abcdefghij_abcdefghij_abcdefghij_abcdefghij_abcdefgh" VALUES ($1, $2);
           UPDATE public."with space" SET v = $1 WHERE k = $2;"#,
    )
    .unwrap();
    let m = monolith(&server, dir.path(), "odd db", HOSTILE, workload).await;
    // Domain names as hostile as table names: each becomes a schema.
    let mut plan = Plan::load(&m.plan).unwrap();
    let all: Vec<String> = plan.domains.iter().flat_map(|d| d.tables.clone()).collect();
    plan.domains = vec![
        carve::plan::Domain {
            name: "Dömain \"one\"; DROP TABLE x; --".into(),
            tables: all
                .iter()
                .filter(|t| t.starts_with("\"Odd"))
                .cloned()
                .collect(),
            ..Default::default()
        },
        carve::plan::Domain {
            name: "x".repeat(63),
            tables: vec!["public.\"with space\"".into()],
            ..Default::default()
        },
    ];
    plan.save(&m.plan).unwrap();
    let dump_before = schema_dump(&server, &m.db);

    let out = run(&m, &["assign"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // The service, as its own role, uses the old names through the views: defaults,
    // RETURNING, ON CONFLICT, UPDATE, DELETE, and its column grants.
    let app = client(&format!("{} user='app user'", m.conninfo)).await;
    let row = app
        .query_one(
            r#"INSERT INTO "Odd ""Schema"""."select" ("order") VALUES (3) RETURNING "id", "Näme ""q""""#,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 3);
    assert_eq!(row.get::<_, String>(1), "ünïcode");
    let n = app
        .execute(
            r#"INSERT INTO "Odd ""Schema"""."select" ("order", "Näme ""q""") VALUES (3, 'again')
               ON CONFLICT ("order") DO UPDATE SET "Näme ""q""" = excluded."Näme ""q""""#,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    app.batch_execute(r#"UPDATE "Odd ""Schema"""."select" SET "order" = 30 WHERE "order" = 3; DELETE FROM "Odd ""Schema"""."select" WHERE "order" = 30"#)
        .await
        .unwrap();
    app.batch_execute(r#"UPDATE public."with space" SET v = 1 WHERE k = 'a'"#)
        .await
        .unwrap();
    let denied = app
        .batch_execute(r#"UPDATE public."with space" SET k = 'b'"#)
        .await
        .unwrap_err();
    assert!(
        format!("{denied:?}").contains("permission denied"),
        "column grants copied to the view: {denied:?}"
    );
    let dump_assigned = schema_dump(&server, &m.db);
    assert!(
        dump_assigned.contains(&format!("CREATE SCHEMA {};", "x".repeat(63))),
        "{dump_assigned}"
    );
    assert!(dump_assigned.contains(r#"CREATE SCHEMA "Dömain ""one""; DROP TABLE x; --";"#));

    let out = run(&m, &["undo", "assign"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // The rows written through the view are still there (ids 1, 2 and the third's
    // sequence value used), and the schema is as before.
    assert_eq!(schema_dump(&server, &m.db), dump_before);
}

#[tokio::test]
async fn a_long_transaction_makes_assign_wait_politely_then_give_up_clearly() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let m = example_monolith(&server, dir.path(), "library", "library").await;
    // A long report holds a lock on every table.
    let report = client(&format!("{} application_name=long-report", m.conninfo)).await;
    report
        .batch_execute("BEGIN; SELECT count(*) FROM book_catalog, reading_list, audit")
        .await
        .unwrap();
    let report_pid: i32 = report
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);

    let mut first = spawn(
        &m,
        &["assign", "--lock-timeout", "300ms", "--lock-retries", "2"],
    );
    let mut lines = BufReader::new(first.stderr.take().unwrap()).lines();
    let seen = lines_until(&mut lines, "move table");

    // While it waits: other clients still get through (each attempt holds them back
    // at most 300 ms), and a second carve is turned away naming the first.
    let other = client(&m.conninfo).await;
    other
        .batch_execute("SET statement_timeout = '10s'")
        .await
        .unwrap();
    for _ in 0..5 {
        other
            .query_one("SELECT count(*) FROM book_catalog", &[])
            .await
            .expect("a reader is not queued behind carve");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let second = run(&m, &["assign"]);
    assert_eq!(code(&second), 4, "{}", stderr(&second));
    let err = stderr(&second);
    assert!(err.contains("another carve run holds the lock"), "{err}");
    // carve's own process id and machine, and the server backend it holds the lock in.
    assert!(err.contains("\"carve (pid "), "{err}");
    assert!(err.contains(&format!("pid {} on ", first.id())), "{err}");
    assert!(err.contains("server backend pid "), "{err}");
    // A dry-run takes no lock, so it still answers: work pending.
    let dry = run(&m, &["assign", "--dry-run"]);
    assert_eq!(code(&dry), 3, "{}", stderr(&dry));

    let status = first.wait().unwrap();
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let all = format!("{}\n{}", seen.join("\n"), rest.join("\n"));
    assert_eq!(status.code(), Some(1), "{all}");
    assert!(all.contains("gave up after 3 attempts"), "{all}");
    assert!(all.contains(&format!("pid {report_pid}")), "{all}");
    assert!(all.contains("\"long-report\""), "{all}");

    // status names the failed step and its error.
    let out = carve()
        .arg("--plan")
        .arg(&m.plan)
        .arg("status")
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(text.contains("assign: failed"), "{text}");
    assert!(text.contains("FAILED"), "{text}");
    assert!(text.contains("gave up after"), "{text}");

    // Once the report ends, the same command finishes the work.
    report.batch_execute("COMMIT").await.unwrap();
    let out = run(&m, &["assign"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = carve()
        .arg("--plan")
        .arg(&m.plan)
        .arg("status")
        .output()
        .unwrap();
    assert!(stdout(&out).contains("assign: applied"), "{}", stdout(&out));
}
