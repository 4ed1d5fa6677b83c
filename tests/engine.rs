//! The step engine's dry-run script, run by the real psql: idempotent, resumable after
//! a failure, switching databases with `\connect`, and undone by the reversed steps.
//! Hostile names throughout.

mod support;

use std::collections::BTreeMap;
use std::process::Command;

use carve::engine::{script, undo_steps, Action, SqlAction, Step, Target};
use carve::pgtemp::TempServer;
use carve::sql::{ident, literal, qualified};
use support::*;

const SCHEMA: &str = "Odd \"Schema\" ü; DROP";
const TABLE: &str = "select";

fn steps(broken: bool) -> Vec<Step> {
    let schema_exists = |s: &str| {
        format!(
            "EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = {})",
            literal(s).unwrap()
        )
    };
    vec![
        Step {
            id: format!("create-schema {SCHEMA}"),
            description: "a schema for the domain".into(),
            target: Target::Source,
            action: Action::Sql(SqlAction {
                sql: format!("CREATE SCHEMA {}", ident(SCHEMA)),
                done_check: schema_exists(SCHEMA),
                undo: format!("DROP SCHEMA {}", ident(SCHEMA)),
                transactional: true,
                strong_lock: false,
                secret: None,
                read: None,
            }),
        },
        Step {
            id: format!("create-table {TABLE}"),
            description: "a table in it".into(),
            target: Target::Source,
            action: Action::Sql(SqlAction {
                sql: if broken {
                    "CREATE TABLE nowhere.x (id int)".into()
                } else {
                    format!("CREATE TABLE {} (id int)", qualified(SCHEMA, TABLE))
                },
                done_check: format!(
                    "to_regclass({}) IS NOT NULL",
                    literal(&qualified(SCHEMA, TABLE)).unwrap()
                ),
                undo: format!("DROP TABLE {}", qualified(SCHEMA, TABLE)),
                transactional: true,
                strong_lock: true,
                secret: None,
                read: None,
            }),
        },
        Step {
            id: "create-schema elsewhere".into(),
            description: "the same schema on the domain's database".into(),
            target: Target::Domain("the domain".into()),
            action: Action::Sql(SqlAction {
                sql: format!("CREATE SCHEMA {}", ident(SCHEMA)),
                done_check: schema_exists(SCHEMA),
                undo: format!("DROP SCHEMA {}", ident(SCHEMA)),
                transactional: false,
                strong_lock: false,
                secret: None,
                read: None,
            }),
        },
    ]
}

fn targets(server: &TempServer) -> BTreeMap<Target, String> {
    [
        (Target::Source, server.conninfo("shop")),
        (
            Target::Domain("the domain".into()),
            server.conninfo("the 'domain' db"),
        ),
    ]
    .into()
}

/// Runs a script with psql as a user would; returns (exit code, stdout + stderr).
fn psql_file(server: &TempServer, text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.sql");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(server.bin_dir().join("psql"))
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(&path)
        .args(["-h"])
        .arg(server.socket_dir())
        .args([
            "-p",
            &server.port().to_string(),
            "-U",
            "postgres",
            "postgres",
        ])
        .output()
        .expect("psql runs");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn exists(server: &TempServer, db: &str, check: &str) -> bool {
    server.psql(db, &format!("SELECT {check}")).unwrap().trim() == "t"
}

#[tokio::test]
async fn the_dry_run_script_is_idempotent_resumable_and_undoable() {
    let server = server();
    create_db(&server, "shop", "SELECT 1").await;
    create_db(&server, "the 'domain' db", "SELECT 1").await;
    let targets = targets(&server);
    let done = |db: &str, i: usize| {
        let step = &steps(false)[i];
        exists(&server, db, &step.sql_action().unwrap().done_check)
    };

    // A step that fails stops the script; what ran before it stays done.
    let broken = script::render("assign", &steps(true), &targets).unwrap();
    let (code, out) = psql_file(&server, &broken);
    assert_eq!(code, 3, "psql stops at the error: {out}");
    assert!(out.contains("schema \"nowhere\" does not exist"), "{out}");
    assert!(done("shop", 0) && !done("shop", 1));

    // The fixed script finishes the work without redoing the first step.
    let fixed = script::render("assign", &steps(false), &targets).unwrap();
    let (code, out) = psql_file(&server, &fixed);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("step 1/3 already done"), "{out}");
    assert!(done("shop", 0) && done("shop", 1) && done("the 'domain' db", 2));

    // Again: nothing left to do.
    let (code, out) = psql_file(&server, &fixed);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches("already done").count(), 3, "{out}");

    // The undo script, twice: everything gone, and the second run does nothing.
    let undo = script::render("undo assign", &undo_steps(&steps(false)), &targets).unwrap();
    for round in 0..2 {
        let (code, out) = psql_file(&server, &undo);
        assert_eq!(code, 0, "round {round}: {out}");
    }
    assert!(!done("shop", 0) && !done("shop", 1) && !done("the 'domain' db", 2));
}

/// The phase these tests record their steps under.
fn drill() -> carve::plan::PhaseId {
    carve::plan::PhaseId::new("drill", Some("sales"))
}

/// A plan with one phase of `steps`, saved in `dir`.
fn plan_with(dir: &std::path::Path, steps: Vec<Step>) -> (carve::plan::Plan, std::path::PathBuf) {
    use carve::plan::{GateHints, PhaseRecord, PhaseState, Plan, Source};
    let mut plan = Plan::new(
        Source {
            conninfo: "dbname=shop".into(),
            database: "shop".into(),
        },
        Default::default(),
    );
    let mut record = PhaseRecord::planned(drill(), String::new(), GateHints::default(), steps);
    record.state = PhaseState::Running;
    plan.phases.push(record);
    let path = dir.join("carve.plan.toml");
    plan.save(&path).unwrap();
    (plan, path)
}

/// A wait step polled on a real server while rows arrive, and console steps on a
/// real PgBouncer's admin console (PAUSE, then RESUME as its undo), through the
/// executor; a wait that runs out of time fails the run and says why.
#[tokio::test]
async fn wait_and_console_steps_run_against_a_real_server_and_pgbouncer() {
    use carve::engine::endpoint::{Console, Endpoint, Endpoints, Session};
    use carve::engine::events::Event;
    use carve::engine::executor::RunEnd;
    use carve::engine::{ConsoleAction, OnTimeout, RowCheck, WaitAction};
    use carve::plan::StepStatus;
    use std::time::Duration;

    let server = server();
    create_db(&server, "shop", "CREATE TABLE arrivals (id int)").await;
    let bouncer = carve::pgtemp::TempBouncer::start(&server, &[("app", "shop")])
        .unwrap_or_else(|e| panic!("cannot start a throw-away PgBouncer: {e}"));
    let source = Session::new(
        client(&server.conninfo("shop")).await,
        client(&server.conninfo("shop")).await,
    )
    .await
    .unwrap();
    let mut endpoints = Endpoints::source_only(source);
    let console = Target::Console("edge".into());
    endpoints.insert(
        console.clone(),
        Endpoint::Console(Console::new(client(&bouncer.console_conninfo()).await)),
    );

    let paused = |equals: &str| RowCheck::pgbouncer_database("app", "paused", equals);
    let wait = |until: &str, timeout: Duration| Step {
        id: format!("wait {until}"),
        description: "rows arrive".into(),
        target: Target::Source,
        action: Action::Wait(WaitAction {
            until: until.into(),
            progress: Some("SELECT count(*), 3::bigint FROM arrivals".into()),
            unit: "rows".into(),
            every: Duration::from_millis(50),
            timeout,
            on_timeout: OnTimeout::Fail,
            once: false,
        }),
    };
    let steps = vec![
        wait(
            "(SELECT count(*) FROM arrivals) >= 3",
            Duration::from_secs(20),
        ),
        Step {
            id: "pause app".into(),
            description: "clients of app queue".into(),
            target: console.clone(),
            action: Action::Console(ConsoleAction {
                command: "PAUSE app".into(),
                check: paused("1"),
                undo: "RESUME app".into(),
                undo_check: paused("0"),
                timeout: None,
            }),
        },
    ];
    let dir = tempfile::tempdir().unwrap();
    let (mut plan, path) = plan_with(dir.path(), steps.clone());

    // Rows arrive one by one while the wait polls.
    let writer = client(&server.conninfo("shop")).await;
    let arriving = tokio::spawn(async move {
        for i in 0..3 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            writer
                .execute("INSERT INTO arrivals VALUES ($1)", &[&i])
                .await
                .unwrap();
        }
    });
    let (end, events) = run_steps(
        &endpoints,
        &mut plan,
        &path,
        &drill(),
        &steps,
        StepStatus::Done,
    )
    .await;
    arriving.await.unwrap();
    assert_eq!(end, RunEnd::Completed { ran: 2, skipped: 0 }, "{events:#?}");
    let seen: Vec<i64> = events
        .iter()
        .filter_map(|e| match e {
            Event::WaitProgress {
                done: Some(d),
                total: Some(3),
                ..
            } => Some(*d),
            _ => None,
        })
        .collect();
    assert!(
        seen.len() >= 3 && seen.windows(2).all(|w| w[0] <= w[1]),
        "{seen:?}"
    );
    assert!(seen.contains(&0) && seen.iter().any(|d| *d > 0), "{seen:?}");
    let admin = Console::new(client(&bouncer.console_conninfo()).await);
    assert!(
        admin.holds(&paused("1")).await.unwrap(),
        "PgBouncer paused app"
    );
    let record = plan.phase(drill()).unwrap();
    assert!(record
        .steps
        .iter()
        .all(|s| record.status(&s.id) == StepStatus::Done));

    // Again: both checks say done, nothing is sent.
    let (end, _) = run_steps(
        &endpoints,
        &mut plan,
        &path,
        &drill(),
        &steps,
        StepStatus::Done,
    )
    .await;
    assert_eq!(end, RunEnd::Completed { ran: 0, skipped: 2 });

    // The undo resumes the database; a wait's undo is nothing.
    let undo = undo_steps(&steps);
    let (end, _) = run_steps(
        &endpoints,
        &mut plan,
        &path,
        &drill(),
        &undo,
        StepStatus::Undone,
    )
    .await;
    assert_eq!(end, RunEnd::Completed { ran: 1, skipped: 1 });
    assert!(
        admin.holds(&paused("0")).await.unwrap(),
        "PgBouncer resumed app"
    );
    // Clients get through PgBouncer again.
    let through = client(&bouncer.conninfo("app")).await;
    let n: i64 = through
        .query_one("SELECT count(*) FROM arrivals", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);

    // A wait that does not come true in time fails the run, naming the condition.
    let never = vec![wait("false", Duration::from_millis(300))];
    let (end, events) = run_steps(
        &endpoints,
        &mut plan,
        &path,
        &drill(),
        &never,
        StepStatus::Done,
    )
    .await;
    let RunEnd::Failed { error, .. } = end else {
        panic!("{end:?}")
    };
    assert!(
        error.contains("still not the case after 300ms: false"),
        "{error}"
    );
    assert!(
        matches!(events.last(), Some(Event::StepFailed { .. })),
        "{events:?}"
    );
}

/// `SET ROLE` does not apply a role's settings: a probe runs on the search_path its
/// role logs in with (hostile schema name included), and only that probe does.
#[tokio::test]
async fn a_probe_runs_on_its_roles_search_path_and_no_other() {
    use carve::engine::proof::{prove, Probe};
    let server = server();
    let client = create_db(
        &server,
        "paths",
        &format!(
            "CREATE SCHEMA {s}; CREATE TABLE {s}.orders (id int);
             CREATE ROLE sales_app LOGIN;
             GRANT USAGE ON SCHEMA {s} TO sales_app;
             GRANT SELECT ON {s}.orders TO sales_app;",
            s = ident(SCHEMA)
        ),
    )
    .await;
    let probe = |search_path: Option<Vec<String>>| Probe {
        service: "sales".into(),
        role: "sales_app".into(),
        search_path,
        origin: "sales.sql:1".into(),
        sql: "SELECT id FROM orders".into(),
        runtime: vec![],
        accepted_by: vec![],
    };
    let results = prove(
        &client,
        "",
        &[],
        &[
            probe(Some(vec![SCHEMA.into(), "public".into()])),
            probe(None),
        ],
        std::time::Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(results[0].error, None, "on the role's path");
    assert!(!results[0].fails_already);
    let error = results[1].error.as_deref().unwrap_or_default();
    assert!(
        error.contains("does not exist"),
        "on the session's: {error}"
    );
    assert!(results[1].fails_already);
}
