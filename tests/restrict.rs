//! Phase 3, restrict, on real servers: each service's workload runs as its own login
//! role (connected over TCP with the generated password), statements the plan's
//! decisions take away fail with a permission error, the proof predicts exactly what
//! fails, and undo gives back the roles and privileges byte for byte.

mod support;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use carve::catalog::fingerprint::Fingerprint;
use carve::engine::proof::probe;
use carve::pgtemp::TempServer;
use carve::phases::restrict::RuntimeCheck;
use carve::plan::{Decision, Plan};
use serde_json::Value;
use support::*;

/// `carve restrict` with JSON output, parsed.
fn restrict_json(m: &Monolith, extra: &[&str]) -> (Value, i32, String) {
    let mut args = vec!["--format", "json", "restrict"];
    args.extend_from_slice(extra);
    let out = run(m, &args);
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (json, code(&out), stderr(&out))
}

/// Decides every crossing: alternately one that keeps the access (a temporary grant)
/// and one that takes it away (api, delegate), so both kinds are exercised.
fn decide_all(m: &Monolith, crossings: &[Value]) -> usize {
    let mut plan = Plan::load(&m.plan).unwrap();
    let mut denied = 0;
    for (i, c) in crossings.iter().enumerate() {
        let subject = c["subject"].as_str().unwrap().to_string();
        let write = c["write"].as_bool().unwrap();
        let owner = format!("{}-service", c["table_domain"].as_str().unwrap_or("x"));
        let grant = i % 2 == 0;
        if !grant {
            denied += 1;
        }
        let choice = match (write, grant) {
            (true, true) => format!("temporary-grant:{owner}"),
            (true, false) => format!("delegate:{owner}"),
            (false, true) => "temporary-grant".into(),
            (false, false) => "api".into(),
        };
        plan.decisions.push(Decision {
            subject,
            choice,
            reason: "until the owner's API exists".into(),
            rows: None,
        });
    }
    plan.save(&m.plan).unwrap();
    denied
}

/// The password the file holds for a role.
fn password_of(file: &Path, server: &TempServer, db: &str, role: &str) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    carve::conn::pgpass::lookup(&text, "localhost", server.port(), db, role)
        .unwrap_or_else(|| panic!("no password for {role} in the file"))
}

/// Every probe of the proof, probed again as the real role after apply: returns the
/// (service, statement) pairs that fail.
async fn real_failures(
    server: &TempServer,
    m: &Monolith,
    proof: &[Value],
    password_file: &Path,
) -> BTreeSet<(String, String)> {
    let mut clients = std::collections::BTreeMap::new();
    let mut failing = BTreeSet::new();
    for p in proof {
        let role = p["role"].as_str().unwrap().to_string();
        if !clients.contains_key(&role) {
            let password = password_of(password_file, server, &m.db, &role);
            let conninfo = format!(
                "{} password={}",
                server.tcp_conninfo(&role, &m.db),
                carve::conn::quote_value(&password)
            );
            let c = client(&conninfo).await;
            let me: String = c
                .query_one("SELECT current_user", &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(me, role);
            clients.insert(role.clone(), c);
        }
        let runtime: Vec<RuntimeCheck> =
            serde_json::from_value(p.get("runtime").cloned().unwrap_or(Value::Array(vec![])))
                .unwrap();
        let sql = p["sql"].as_str().unwrap();
        if let Some(error) = probe(&clients[&role], sql, &runtime).await {
            let accepted = !p["accepted_by"].as_array().unwrap().is_empty();
            if accepted {
                assert!(
                    error.contains("42501") || error.contains("no "),
                    "a statement the plan takes away fails for another reason: {sql}: {error}"
                );
            }
            failing.insert((p["service"].as_str().unwrap().to_string(), sql.to_string()));
        }
    }
    failing
}

/// assign, then restrict with every crossing decided, checked as each role; then undo.
async fn restrict_round_trip(server: &TempServer, m: &Monolith) {
    let out = run(m, &["assign"]);
    assert_eq!(code(&out), 0, "assign: {}", stderr(&out));
    let admin = client(&m.conninfo).await;
    let dump_before = schema_dump(server, &m.db);
    let roles_before = role_listing(&admin).await;
    let fingerprint_before = Fingerprint::of(&catalog_of(server, &m.db).await);

    // Undecided crossings stop restrict, naming each subject and statement.
    let (json, status, err) = restrict_json(m, &["--dry-run"]);
    let crossings = json["crossings"].as_array().cloned().unwrap_or_default();
    if crossings.is_empty() {
        assert_eq!(status, 3, "nothing to decide, work pending: {err}");
        assert_eq!(json["status"], "dry-run");
    } else {
        assert_eq!(status, 6, "{err}");
        assert_eq!(json["status"], "decisions-missing");
        for c in &crossings {
            assert!(err.contains(c["subject"].as_str().unwrap()), "{err}");
            assert!(!c["statements"].as_array().unwrap().is_empty());
        }
        assert_eq!(schema_dump(server, &m.db), dump_before, "nothing changed");
    }
    let denied = decide_all(m, &crossings);

    let dir = m.plan.parent().unwrap();
    let password_file = dir.join(format!("{}.passwords", m.db));
    let out = run(
        m,
        &[
            "--format",
            "json",
            "restrict",
            "--password-file",
            password_file.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&out), 0, "restrict: {}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["status"], "applied");
    let proof = json["proof"].as_array().unwrap().clone();
    assert!(!proof.is_empty());
    let predicted: BTreeSet<(String, String)> = proof
        .iter()
        .filter(|p| p.get("error").is_some() && p["fails_already"] == false)
        .map(|p| {
            (
                p["service"].as_str().unwrap().to_string(),
                p["sql"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // Nothing fails that the plan did not ask for; what it takes away does fail.
    for p in &proof {
        let accepted = !p["accepted_by"].as_array().unwrap().is_empty();
        assert_eq!(
            p.get("error").is_some(),
            accepted,
            "only what a decision takes away fails: {p:#}"
        );
    }
    if denied > 0 {
        assert!(
            !predicted.is_empty(),
            "{denied} access(es) taken away, none fails"
        );
    }

    // The password file: mode 0600, a line per new role, the passwords nowhere else.
    let mode = std::fs::metadata(&password_file)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let new_roles = json["applied"]["passwords_written"].as_array().unwrap();
    assert!(!new_roles.is_empty());
    let plan_text = std::fs::read_to_string(&m.plan).unwrap();
    let log = std::fs::read_to_string(server.log_path()).unwrap_or_default();
    for role in new_roles {
        let password = password_of(&password_file, server, &m.db, role.as_str().unwrap());
        for (what, text) in [
            ("plan", plan_text.as_str()),
            ("stdout", &String::from_utf8_lossy(&out.stdout)),
            ("stderr", &stderr(&out)),
            ("server log", &log),
        ] {
            assert!(!text.contains(&password), "a password is in the {what}");
        }
    }

    // As each real role, logged in over TCP with its password: exactly what the proof
    // predicted fails.
    let real = real_failures(server, m, &proof, &password_file).await;
    assert_eq!(real, predicted, "the proof predicts exactly what fails");

    // A second run finds every step in place.
    let out = run(m, &["restrict"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("0 step(s) applied"),
        "{}",
        stdout(&out)
    );

    // undo assign is refused while restrict is in place.
    let out = run(m, &["undo", "assign"]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("undo restrict"), "{}", stderr(&out));

    let out = run(m, &["undo", "restrict"]);
    assert_eq!(code(&out), 0, "undo: {}", stderr(&out));
    let fingerprint_after = Fingerprint::of(&catalog_of(server, &m.db).await);
    assert_eq!(fingerprint_before.diff(&fingerprint_after), vec![]);
    assert!(
        !stderr(&out).contains("not exactly as it was"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        schema_dump(server, &m.db),
        dump_before,
        "pg_dump after undo"
    );
    assert_eq!(role_listing(&admin).await, roles_before, "roles after undo");
}

#[tokio::test]
async fn library_services_get_their_own_roles_and_the_proof_is_exact() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let m = example_monolith(&server, dir.path(), "library", "library").await;
    restrict_round_trip(&server, &m).await;
}

#[tokio::test]
async fn shop_services_get_their_own_roles_and_the_proof_is_exact() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let m = example_monolith(&server, dir.path(), "shop", "shop").await;
    restrict_round_trip(&server, &m).await;
}

#[tokio::test]
async fn benchbase_services_get_their_own_roles_and_the_proof_is_exact() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let data = benchbase();
    let schema = std::fs::read_to_string(data.join("schema.sql")).unwrap();
    let m = monolith(
        &server,
        dir.path(),
        "benchbase",
        &schema,
        data.join("workload"),
    )
    .await;
    restrict_round_trip(&server, &m).await;
}

/// Connection string over the Unix socket as `role` (trusted locally).
fn socket_conninfo(server: &TempServer, role: &str, db: &str) -> String {
    server.conninfo(db).replace(
        "user=postgres",
        &format!("user={}", carve::conn::quote_value(role)),
    )
}

#[tokio::test]
async fn roles_already_there_are_restricted_and_undo_gives_everything_back() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let kept = "reading \"list\" rw";
    // 63 bytes of unicode, quotes and spaces: PostgreSQL's longest name.
    let long = format!("Bøøk \"Inv\" {}", "é".repeat(25));
    assert_eq!(long.len(), 63);
    let group = "Dömain \"rl\" group";
    let example = example("library");
    let setup = format!(
        "{}\n{}\n
         CREATE ROLE {k} LOGIN;
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {k};
         GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {k};
         GRANT CREATE ON SCHEMA public TO {k};
         CREATE ROLE reporting NOLOGIN;
         GRANT SELECT ON audit TO reporting;
         GRANT reporting TO {k};
         CREATE ROLE app LOGIN;
         GRANT ALL ON ALL TABLES IN SCHEMA public TO app;
         GRANT SELECT ON book_catalog TO PUBLIC;
         CREATE ROLE nobody LOGIN;",
        example.schema,
        example.seed,
        k = carve::sql::ident(kept)
    );
    let workload = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/library/workload");
    let m = monolith(&server, dir.path(), "library", &setup, workload).await;
    let out = run(&m, &["assign"]);
    assert_eq!(code(&out), 0, "assign: {}", stderr(&out));

    let mut plan = Plan::load(&m.plan).unwrap();
    for s in &mut plan.services {
        match s.name.as_str() {
            "ReadingList" => {
                s.roles = vec![kept.into()];
                s.connection_limit = Some(5);
            }
            "BookInventory" => {
                s.roles = vec!["app".into()];
                s.login_role = Some(long.clone());
            }
            _ => s.roles = vec!["app".into()],
        }
    }
    let domain = plan
        .domains
        .iter_mut()
        .find(|d| d.name == "reading_list")
        .unwrap();
    domain.role = Some(group.into());
    let catalog = plan
        .domains
        .iter_mut()
        .find(|d| d.name == "book_catalog")
        .unwrap();
    catalog.column_privileges = true;
    for (subject, choice) in [
        (
            "write public.audit by ReadingList",
            "temporary-grant:audit-service",
        ),
        (
            "write public.audit by BookCatalog",
            "delegate:audit-service",
        ),
        (
            "write public.audit by BookInventory",
            "temporary-grant:audit-service",
        ),
        ("read public.book_catalog by ReadingList", "replicate"),
    ] {
        plan.decisions.push(Decision {
            subject: subject.into(),
            choice: choice.into(),
            reason: "until the audit service exists".into(),
            rows: None,
        });
    }
    plan.save(&m.plan).unwrap();

    let admin = client(&m.conninfo).await;
    let dump_before = schema_dump(&server, &m.db);
    let roles_before = role_listing(&admin).await;
    let passwords = dir.path().join("passwords");
    let out = run(
        &m,
        &["restrict", "--password-file", passwords.to_str().unwrap()],
    );
    assert_eq!(code(&out), 0, "restrict: {}", stderr(&out));
    let report = stdout(&out);
    assert!(report.contains("(kept)"), "{report}");
    assert!(
        report.contains("role app (used by BookCatalog, BookInventory) keeps its privileges"),
        "{report}"
    );
    for taken in [
        "membership of \"reading \"\"list\"\" rw\" in reporting",
        "SELECT on view public.book_catalog from PUBLIC",
        "SELECT on table book_catalog.book_catalog from PUBLIC",
        "CREATE on schema public from \"reading \"\"list\"\" rw\"",
        "DELETE on table audit.audit from \"reading \"\"list\"\" rw\"",
    ] {
        assert!(report.contains(taken), "{taken} not taken away:\n{report}");
    }

    // The kept role: its own domain, its decided write, nothing else.
    let reading = client(&socket_conninfo(&server, kept, &m.db)).await;
    for ok in [
        "SELECT count(*) FROM reading_list",
        "SELECT count(*) FROM book_catalog",
        "INSERT INTO audit (service, action, entity, entity_id) VALUES ('ReadingList', 'x', 'y', 1)",
    ] {
        reading.batch_execute(ok).await.unwrap_or_else(|e| panic!("{ok}: {e:?}"));
    }
    for denied in [
        "SELECT count(*) FROM audit",
        "DELETE FROM audit",
        "CREATE TABLE public.sneaky (id int)",
        "SET ROLE reporting",
    ] {
        let e = reading.batch_execute(denied).await.err();
        assert!(e.is_some(), "{denied} still allowed");
    }
    let limit: i32 = admin
        .query_one(
            "SELECT rolconnlimit FROM pg_roles WHERE rolname = $1",
            &[&kept],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(limit, 5);
    // PUBLIC lost its grant on a domain's table.
    let nobody = client(&socket_conninfo(&server, "nobody", &m.db)).await;
    assert!(nobody
        .batch_execute("SELECT 1 FROM book_catalog")
        .await
        .is_err());
    // The 63-byte role logs in over TCP with its generated password.
    let password = password_of(&passwords, &server, &m.db, &long);
    let inventory = client(&format!(
        "{} password={}",
        server.tcp_conninfo(&long, &m.db),
        carve::conn::quote_value(&password)
    ))
    .await;
    inventory
        .batch_execute("UPDATE book_catalog SET copies_available = copies_available WHERE id = 1")
        .await
        .unwrap();
    // Column privileges: no service of the catalog's domain updates isbn.
    let e = inventory
        .batch_execute("UPDATE book_catalog SET isbn = isbn WHERE id = 1")
        .await
        .unwrap_err();
    assert!(format!("{e:?}").contains("permission denied"), "{e:?}");

    let out = run(&m, &["undo", "restrict"]);
    assert_eq!(code(&out), 0, "undo: {}", stderr(&out));
    assert!(
        !stderr(&out).contains("not exactly as it was"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        schema_dump(&server, &m.db),
        dump_before,
        "pg_dump after undo"
    );
    assert_eq!(role_listing(&admin).await, roles_before, "roles after undo");
}

#[tokio::test]
async fn bad_input_is_refused_clearly_and_changes_nothing() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let m = example_monolith(&server, dir.path(), "library", "library").await;
    let admin = client(&m.conninfo).await;
    let roles_before = role_listing(&admin).await;

    let out = run(&m, &["restrict"]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("run `carve assign` first"),
        "{}",
        stderr(&out)
    );

    assert_eq!(code(&run(&m, &["assign"])), 0);
    grant_library_crossings(&m);
    let plan_before = std::fs::read(&m.plan).unwrap();

    // A password file others can read is refused before anything happens.
    let open = dir.path().join("open-passwords");
    std::fs::write(&open, "").unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(&m, &["restrict", "--password-file", open.to_str().unwrap()]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));

    // An unknown choice is named with the allowed ones.
    let mut plan = Plan::load(&m.plan).unwrap();
    let audit_write = plan
        .decisions
        .iter_mut()
        .find(|d| d.subject.starts_with("write public.audit"))
        .unwrap();
    audit_write.choice = "ask nicely".into();
    plan.save(&m.plan).unwrap();
    let out = run(&m, &["restrict"]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out)
            .contains("\"ask nicely\" is not one of delegate:<service>, temporary-grant:<service>"),
        "{}",
        stderr(&out)
    );

    // A plan without a recorded workload, and none given.
    let mut plan = Plan::load(&m.plan).unwrap();
    plan.workload = None;
    plan.save(&m.plan).unwrap();
    let out = run(&m, &["restrict"]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("pass --workload"), "{}", stderr(&out));

    std::fs::write(&m.plan, &plan_before).unwrap();
    assert_eq!(role_listing(&admin).await, roles_before, "no role was made");
    assert_eq!(std::fs::read(&m.plan).unwrap(), plan_before);
}

#[tokio::test]
async fn the_proof_stops_restrict_when_a_statement_would_fail_unexpectedly() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    // The library's workload, and one statement only a superuser may run.
    let workload = dir.path().join("workload");
    std::fs::create_dir(&workload).unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/library/workload");
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        let mut text = std::fs::read_to_string(&path).unwrap();
        if path.file_stem().unwrap() == "ReadingList" {
            text.push_str("\nSELECT count(*) FROM pg_catalog.pg_authid;\n");
        }
        std::fs::write(workload.join(path.file_name().unwrap()), text).unwrap();
    }
    let example = example("library");
    let sql = format!("{}\n{}", example.schema, example.seed);
    let m = monolith(&server, dir.path(), "library", &sql, workload).await;
    assert_eq!(code(&run(&m, &["assign"])), 0);
    grant_library_crossings(&m);
    let admin = client(&m.conninfo).await;
    let roles_before = role_listing(&admin).await;
    let dump_before = schema_dump(&server, &m.db);

    let (json, status, err) = restrict_json(&m, &[]);
    assert_eq!(status, 6, "{err}");
    assert_eq!(json["status"], "proof-failed");
    assert!(err.contains("1 statement(s) that would fail"), "{err}");
    let failing: Vec<&Value> = json["proof"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p.get("error").is_some())
        .collect();
    assert_eq!(failing.len(), 1, "{failing:#?}");
    assert!(failing[0]["sql"].as_str().unwrap().contains("pg_authid"));
    assert!(failing[0]["error"].as_str().unwrap().contains("42501"));
    assert_eq!(
        role_listing(&admin).await,
        roles_before,
        "the proof was rolled back"
    );
    assert_eq!(schema_dump(&server, &m.db), dump_before);
    assert!(Plan::load(&m.plan).unwrap().phase("restrict").is_none());
}

#[tokio::test]
async fn sigkill_during_restrict_then_rerun_finishes_with_every_password_set() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let m = example_monolith(&server, dir.path(), "library", "library").await;
    assert_eq!(code(&run(&m, &["assign"])), 0);
    grant_library_crossings(&m);
    let admin = client(&m.conninfo).await;
    let dump_before = schema_dump(&server, &m.db);
    let roles_before = role_listing(&admin).await;
    let passwords = dir.path().join("passwords");
    let file = passwords.to_str().unwrap();

    // Killed after the 5th step: a role exists, others do not, no password yet.
    kill_after(&m, &["restrict", "--password-file", file], 5);
    let plan = Plan::load(&m.plan).unwrap();
    assert!(plan.phase("restrict").unwrap().is_in_flight());
    let out = run(&m, &["restrict", "--password-file", file]);
    assert_eq!(code(&out), 0, "re-run: {}", stderr(&out));
    for (role, table) in [
        ("BookCatalog", "book_catalog"),
        ("BookInventory", "book_catalog"),
        ("ReadingList", "reading_list"),
    ] {
        let password = password_of(&passwords, &server, &m.db, role);
        let conninfo = format!(
            "{} password={}",
            server.tcp_conninfo(role, &m.db),
            carve::conn::quote_value(&password)
        );
        client(&conninfo)
            .await
            .batch_execute(&format!("SELECT count(*) FROM {table}"))
            .await
            .unwrap();
    }

    // Killed part-way through the undo: the same command finishes it.
    kill_after(&m, &["undo", "restrict"], 10);
    let out = run(&m, &["undo", "restrict"]);
    assert_eq!(code(&out), 0, "undo re-run: {}", stderr(&out));
    assert_eq!(schema_dump(&server, &m.db), dump_before);
    assert_eq!(role_listing(&admin).await, roles_before);
}

#[tokio::test]
async fn a_table_delegated_to_its_owner_is_written_by_the_others_only_through_a_decision() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let workload = dir.path().join("workload");
    std::fs::create_dir_all(&workload).unwrap();
    // The owner makes the rows; the other service only changes a column the owner
    // writes too: nothing to split off, so discover proposes delegation.
    std::fs::write(
        workload.join("ledger.sql"),
        "INSERT INTO entries (account, amount) VALUES ($1, $2);\nUPDATE entries SET amount = $2 WHERE id = $1;\nSELECT account, amount FROM entries WHERE id = $1;\nINSERT INTO accounts (name) VALUES ($1);\n",
    )
    .unwrap();
    std::fs::write(
        workload.join("fixer.sql"),
        "UPDATE entries SET amount = $2 WHERE id = $1;\nINSERT INTO fixes (entry) VALUES ($1);\n",
    )
    .unwrap();
    let m = monolith(
        &server,
        dir.path(),
        "ledger",
        "CREATE TABLE entries (id serial PRIMARY KEY, account text NOT NULL, amount numeric NOT NULL); CREATE TABLE accounts (name text PRIMARY KEY); CREATE TABLE fixes (id serial PRIMARY KEY, entry integer NOT NULL);",
        workload,
    )
    .await;
    let plan = Plan::load(&m.plan).unwrap();
    let decided = plan
        .decision("ownership of public.entries")
        .unwrap_or_else(|| panic!("{:#?}", plan.decisions));
    assert_eq!(decided.choice, "delegate:ledger");
    // One domain for the three tables: both services are at home in it.
    let mut plan = Plan::load(&m.plan).unwrap();
    let tables: Vec<String> = plan.domains.iter().flat_map(|d| d.tables.clone()).collect();
    plan.domains.truncate(1);
    plan.domains[0].tables = tables;
    plan.save(&m.plan).unwrap();
    assert_success(&run(&m, &["assign"]));
    // Both services live in the one domain, yet the fixer's direct write is a
    // crossing the plan must decide.
    let (json, status, err) = restrict_json(&m, &["--dry-run"]);
    assert_eq!(status, 6, "{err}");
    let subjects: Vec<&str> = json["crossings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["write public.entries by fixer"]);
    // Delegated: the fixer's write is taken away, and the proof shows it failing as
    // decided.
    let mut plan = Plan::load(&m.plan).unwrap();
    plan.decisions.push(Decision {
        subject: "write public.entries by fixer".into(),
        choice: "delegate:ledger".into(),
        reason: String::new(),
        rows: None,
    });
    plan.save(&m.plan).unwrap();
    let (json, status, err) = restrict_json(&m, &[]);
    assert_eq!(status, 0, "{err}");
    let proof = json["proof"].as_array().unwrap();
    let fixer = proof.iter().find(|p| p["service"] == "fixer").unwrap();
    assert!(fixer["error"].is_string(), "{fixer}");
    assert_eq!(fixer["accepted_by"][0], "write public.entries by fixer");
    assert!(proof
        .iter()
        .filter(|p| p["service"] == "ledger")
        .all(|p| p["error"].is_null()));
}
