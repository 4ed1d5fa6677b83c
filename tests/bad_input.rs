//! Unsafe input is refused before anything changes: for each case, the documented exit
//! code, a message naming the problem, and the plan file's bytes, `pg_dump
//! --schema-only` and the role listing exactly as they were. One test per way in which
//! bad input used to get through.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::{Duration, Instant};

use carve::pgtemp::TempServer;
use carve::plan::{Decision, Plan};
use serde_json::Value;
use support::*;

/// What a refused command must leave as it was.
/// Runs carve with `args` and checks it is refused with `exit` and `needle` on
/// stderr, changing nothing. Returns stderr.
async fn refused(
    server: &TempServer,
    m: &Monolith,
    args: &[&str],
    exit: i32,
    needle: &str,
) -> String {
    let before = state(server, m).await;
    let out = run(m, args);
    let err = stderr(&out);
    assert_eq!(code(&out), exit, "carve {args:?}: {err}");
    assert!(
        err.contains(needle),
        "carve {args:?}: {needle:?} not in:\n{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let after = state(server, m).await;
    assert!(before.plan == after.plan, "carve {args:?} changed the plan");
    assert_eq!(before.dump, after.dump, "carve {args:?} changed the schema");
    assert_eq!(before.roles, after.roles, "carve {args:?} changed roles");
    err
}

fn edit_plan(m: &Monolith, edit: impl FnOnce(&mut Plan)) {
    let mut plan = Plan::load(&m.plan).unwrap();
    edit(&mut plan);
    plan.save(&m.plan).unwrap();
}

async fn library(server: &TempServer, dir: &Path) -> Monolith {
    example_monolith(server, dir, "library", "library").await
}

/// The library with assign applied.
async fn assigned_library(server: &TempServer, dir: &Path) -> Monolith {
    let m = library(server, dir).await;
    assert_success(&run(&m, &["assign"]));
    m
}

/// 1. A domain named after a system schema would move tables out of every dump.
#[tokio::test]
async fn a_domain_named_like_a_system_schema_is_refused() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let m = library(&server, dir.path()).await;
    for name in ["pg_catalog", "pg_toast", "information_schema"] {
        edit_plan(&m, |p| p.domains[0].name = name.into());
        let err = refused(&server, &m, &["assign"], 1, &format!("{name} is reserved")).await;
        assert!(err.contains("nothing was changed"), "{err}");
    }
}

/// 2. A schema carve did not create, owned by another role, holding its own tables.
#[tokio::test]
async fn a_foreign_schema_of_the_domains_name_is_refused_naming_owner_and_objects() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let example = example("library");
    let sql = format!(
        "{}\n{}\nCREATE ROLE mallory;
         CREATE SCHEMA rival AUTHORIZATION mallory;
         CREATE TABLE rival.notes (id int PRIMARY KEY);
         ALTER TABLE rival.notes OWNER TO mallory;",
        example.schema, example.seed
    );
    let workload = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/library/workload");
    let m = monolith(&server, dir.path(), "library", &sql, workload).await;
    edit_plan(&m, |p| {
        for d in &mut p.domains {
            d.tables.retain(|t| t != "rival.notes");
        }
        p.domains[0].name = "rival".into();
    });
    let err = refused(&server, &m, &["assign"], 1, "schema rival already exists").await;
    assert!(err.contains("it belongs to mallory"), "{err}");
    assert!(err.contains("table rival.notes"), "{err}");
    assert!(err.contains("use-existing"), "{err}");

    // With the decision recorded, the schema is used as it is and never dropped.
    edit_plan(&m, |p| {
        p.decisions.push(Decision {
            subject: "schema rival".into(),
            choice: "use-existing".into(),
            reason: "the DBA team made it for this domain".into(),
            rows: None,
        })
    });
    assert_success(&run(&m, &["assign"]));
    assert_success(&run(&m, &["undo", "assign"]));
    assert!(schema_dump(&server, &m.db).contains("CREATE TABLE rival.notes"));
}

/// 3. Two [[domains]] with one name would be merged silently into one schema.
#[tokio::test]
async fn two_domains_with_one_name_are_refused_naming_both() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let m = library(&server, dir.path()).await;
    edit_plan(&m, |p| {
        assert!(p.domains.len() >= 2, "{:?}", p.domains);
        p.domains[1].name = p.domains[0].name.clone();
    });
    refused(&server, &m, &["assign"], 1, "#1 and #2 are both named").await;
}

/// 4. A role that is not a superuser is told what it lacks before anything is recorded.
#[tokio::test]
async fn a_non_superuser_is_refused_before_the_phase_is_recorded() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let m = library(&server, dir.path()).await;
    let admin = client(&m.conninfo).await;
    admin
        .batch_execute("CREATE ROLE bob LOGIN; GRANT CREATE ON DATABASE library TO bob")
        .await
        .unwrap();
    let as_bob = format!("{} user=bob", m.conninfo);
    let refused_to_bob = |args: Vec<&'static str>| {
        let (server, m, as_bob) = (&server, &m, as_bob.clone());
        async move {
            let mut args: Vec<&str> = args;
            args.extend(["--source", as_bob.as_str()]);
            let err = refused(server, m, &args, 1, "needs a superuser connection").await;
            assert!(err.contains("role bob is not a superuser"), "{err}");
            assert!(err.contains("rds_superuser"), "{err}");
        }
    };
    refused_to_bob(vec!["assign"]).await;
    assert!(Plan::load(&m.plan).unwrap().phases.is_empty());
    // A dry-run of assign only reads: it warns and goes on.
    let out = run(&m, &["assign", "--dry-run", "--source", &as_bob]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("this dry-run only reads"));

    assert_success(&run(&m, &["assign"]));
    grant_library_crossings(&m);
    refused_to_bob(vec!["restrict"]).await;
    refused_to_bob(vec!["undo", "assign"]).await;
}

/// 5. A workload source from which no statement can be read is an error; a source
///    with some bad statements lists them on stderr.
#[tokio::test]
async fn a_workload_that_cannot_be_read_is_an_error_and_problems_reach_stderr() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let m = library(&server, dir.path()).await;
    let bad = dir.path().join("Unterminated.sql");
    std::fs::write(
        &bad,
        "CREATE FUNCTION f() RETURNS int AS $body$\nBEGIN RETURN 1; END;\n",
    )
    .unwrap();
    let err = refused(
        &server,
        &m,
        &["discover", "--workload", bad.to_str().unwrap()],
        1,
        "no statement could be read from --workload",
    )
    .await;
    assert!(
        err.contains("unterminated $body$ quote opened on line 1"),
        "{err}"
    );

    let nothing_parses = dir.path().join("Garbage.sql");
    std::fs::write(&nothing_parses, "SELEKT everything FROM nowhere;").unwrap();
    refused(
        &server,
        &m,
        &["discover", "--workload", nothing_parses.to_str().unwrap()],
        1,
        "not one of the 1 statement(s) read from the workload parses",
    )
    .await;

    // Some good statements, one bad: the proposal is made, the bad one is on stderr.
    let mixed = dir.path().join("ReadingList.sql");
    std::fs::write(
        &mixed,
        "SELECT * FROM reading_list WHERE reader_id = $1;\nSELEKT 1;\n",
    )
    .unwrap();
    let out = run(&m, &["discover", "--workload", mixed.to_str().unwrap()]);
    assert_success(&out);
    let err = stderr(&out);
    assert!(err.contains("workload problem(s)"), "{err}");
    assert!(err.contains("ReadingList.sql:2"), "{err}");
    assert!(err.contains("does not parse"), "{err}");
}

/// 6. A password file carve cannot write is refused before the first step; the
///    passwords are set by journaled steps of their own.
#[tokio::test]
async fn an_unwritable_password_file_is_refused_before_any_step() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let m = assigned_library(&server, dir.path()).await;
    grant_library_crossings(&m);
    // Even root cannot create files in /proc.
    let err = refused(
        &server,
        &m,
        &["restrict", "--password-file", "/proc/carve-passwords"],
        1,
        "cannot create files in directory /proc",
    )
    .await;
    assert!(
        err.contains("--password-file /proc/carve-passwords"),
        "{err}"
    );

    // Without a file: the roles are made, and said to have no password.
    let out = run(&m, &["restrict"]);
    assert_success(&out);
    assert!(
        stderr(&out).contains("new login role(s) without a password"),
        "{}",
        stderr(&out)
    );
    // The same command with a file gives them their passwords, as steps.
    let passwords = dir.path().join("passwords");
    let out = run(
        &m,
        &["restrict", "--password-file", passwords.to_str().unwrap()],
    );
    assert_success(&out);
    let plan = Plan::load(&m.plan).unwrap();
    let record = plan.phase("restrict").unwrap();
    let set: Vec<&str> = record
        .steps
        .iter()
        .filter(|s| s.id.starts_with("set password "))
        .map(|s| s.id.as_str())
        .collect();
    assert_eq!(
        set,
        [
            "set password BookCatalog",
            "set password BookInventory",
            "set password ReadingList"
        ]
    );
    assert!(record.is_applied(), "{record:#?}");
    let text = std::fs::read_to_string(&passwords).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    for line in text.lines() {
        let password = line.rsplit(':').next().unwrap();
        assert!(!std::fs::read_to_string(&m.plan).unwrap().contains(password));
    }
    let admin = client(&m.conninfo).await;
    assert!(role_listing(&admin)
        .await
        .iter()
        .any(|r| r.starts_with("ReadingList ") && r.contains("password=true")));
}

/// 7. Ctrl-C while carve waits for a lock cancels the wait at once; the wait and the
///    session it waits for are shown without -v.
#[tokio::test]
async fn ctrl_c_while_waiting_for_a_lock_stops_at_once_and_the_rerun_finishes() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let m = library(&server, dir.path()).await;
    let dump_before = schema_dump(&server, &m.db);
    let report = client(&format!("{} application_name=long-report", m.conninfo)).await;
    report
        .batch_execute("BEGIN; SELECT count(*) FROM book_catalog, reading_list, audit")
        .await
        .unwrap();
    let mut child = spawn(
        &m,
        &["assign", "--lock-timeout", "2s", "--lock-retries", "50"],
    );
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let shown = lines_until(&mut lines, "waiting for a lock behind").join("\n");
    assert!(shown.contains("\"long-report\""), "{shown}");
    let started = Instant::now();
    // SAFETY: a plain kill(2) of our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    assert_eq!(status.code(), Some(130), "{shown}\n{}", rest.join("\n"));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        rest.join("\n").contains("cancelled and rolled back"),
        "{rest:?}"
    );
    // The journal is consistent: the plan loads, the phase is under way, and no
    // session of carve's is left waiting.
    let plan = Plan::load(&m.plan).unwrap();
    assert!(plan.phase("assign").unwrap().is_in_flight());
    // (Its backends end a moment after the process: wait for that, briefly. Asked
    // from outside any transaction: inside one, pg_stat_activity is read once and
    // kept until it ends.)
    let observer = client(&m.conninfo).await;
    let mut left = i64::MAX;
    for _ in 0..50 {
        left = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'carve%' AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "a carve session outlived carve");
    report.batch_execute("COMMIT").await.unwrap();
    assert_success(&run(&m, &["assign"]));
    assert_success(&run(&m, &["undo", "assign"]));
    assert_eq!(schema_dump(&server, &m.db), dump_before);
}

/// 8. A role created for something else does not make the plan stale.
#[tokio::test]
async fn an_unrelated_new_role_does_not_make_the_plan_stale() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let m = assigned_library(&server, dir.path()).await;
    let admin = client(&m.conninfo).await;
    admin
        .batch_execute("CREATE ROLE someone_else LOGIN; CREATE ROLE another_team")
        .await
        .unwrap();
    let out = run(&m, &["inspect", "--source", &m.conninfo]);
    assert_success(&out);
    assert_success(&run(&m, &["undo", "assign"]));
    // A role granted on the plan's tables does count.
    admin
        .batch_execute("GRANT SELECT ON audit TO another_team")
        .await
        .unwrap();
    refused(
        &server,
        &m,
        &["assign"],
        5,
        "grant added: SELECT on table public.audit to another_team",
    )
    .await;
}

/// 9. A plan whose fingerprint was cut at a line end is still valid TOML.
#[tokio::test]
async fn a_plan_cut_at_a_line_end_is_refused() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let m = library(&server, dir.path()).await;
    let text = std::fs::read_to_string(&m.plan).unwrap();
    let keep = text.lines().count() - 3;
    let cut: String = text.lines().take(keep).map(|l| format!("{l}\n")).collect();
    std::fs::write(&m.plan, cut).unwrap();
    let err = refused(&server, &m, &["assign"], 1, "does not add up").await;
    assert!(err.contains("run `carve discover` again"), "{err}");
}

/// 10. JSON failures, the lock holder's own pid, errors said once, option names.
#[tokio::test]
async fn failures_in_json_are_one_error_object_and_messages_are_exact() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let m = example_monolith(&server, dir.path(), "shop", "shop").await;
    let before = state(&server, &m).await;
    let out = carve()
        .arg("--plan")
        .arg(&m.plan)
        .args(["--format", "json", "assign"])
        .env("CARVE_SOURCE", &m.conninfo)
        .output()
        .unwrap();
    assert_eq!(code(&out), 6, "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(json["format_version"], 1);
    assert_eq!(json["command"], "assign");
    assert_eq!(json["error"]["code"], "gate-not-met");
    assert_eq!(json["error"]["exit_status"], 6);
    let objects = json["error"]["objects"].as_array().unwrap();
    let message = json["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("{} object(s) have no decision", objects.len())),
        "{message}"
    );
    assert!(objects
        .iter()
        .any(|o| o.as_str().unwrap().starts_with("foreign key ")));
    assert_eq!(state(&server, &m).await, before);

    // A plain error is an error object too.
    let out = carve()
        .args(["--format", "json", "--plan"])
        .arg(dir.path())
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(code(&out), 1);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["command"], "status");
    assert_eq!(json["error"]["code"], "error");
    // Said once, not "Is a directory (os error 21): Is a directory (os error 21)".
    let err = stderr(&out);
    assert_eq!(err.matches("Is a directory").count(), 1, "{err}");

    // A command line carve did not understand names the option.
    let out = carve()
        .args(["discover", "--source", "x", "--resolution", "-1"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("'--resolution <R>': \"-1\" is not a positive number"),
        "{}",
        stderr(&out)
    );
    let out = carve()
        .args([
            "--format",
            "json",
            "discover",
            "--source",
            "x",
            "--resolution",
            "-1",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&out), 2);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["error"]["code"], "usage");
    assert!(json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("--resolution"));
}
