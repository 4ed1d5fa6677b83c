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
