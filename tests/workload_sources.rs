//! The workload as production records it: server logs (csvlog, jsonlog, stderr) and
//! `pg_stat_statements`. The library's three services run real transactions with
//! pgbench, each as its own role; discover must find the same ownership from every
//! source as from the services' SQL files.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use carve::pgtemp::{ServerOptions, TempServer};
use support::*;

/// (role, application_name, pgbench script) per service.
const SERVICES: [(&str, &str, &str); 3] = [
    (
        "catalog_rw",
        "book-catalog",
        "\\set id random(1, 40)
SELECT id, isbn, title, author FROM book_catalog WHERE id = :id;
UPDATE book_catalog SET title = title, genre = genre WHERE id = :id;
INSERT INTO book_catalog (isbn, title, author) VALUES (md5(random()::text), 'New', 'Someone');
INSERT INTO audit (service, action, entity, entity_id) VALUES ('BookCatalog', 'edit', 'book_catalog', :id);
",
    ),
    (
        "inventory_rw",
        "book-inventory",
        "\\set id random(1, 40)
BEGIN;
UPDATE book_catalog SET copies_available = copies_available - 1 WHERE id = :id AND copies_available > 0;
UPDATE book_catalog SET shelf_location = 'S1-1', last_stocktake = now() WHERE id = :id;
INSERT INTO audit (service, action, entity, entity_id) VALUES ('BookInventory', 'lend', 'book_catalog', :id);
COMMIT;
",
    ),
    (
        "reading_rw",
        "reading-list",
        "\\set reader random(1, 25)
\\set book random(1, 40)
BEGIN;
SELECT r.id, b.title FROM reading_list r JOIN book_catalog b ON b.id = r.book_id WHERE r.reader_id = :reader;
INSERT INTO reading_list (reader_id, book_id) VALUES (:reader, :book) ON CONFLICT DO NOTHING;
INSERT INTO audit (service, action, entity, entity_id) VALUES ('ReadingList', 'add', 'reading_list', :book);
COMMIT;
",
    ),
];

const SERVICE_MAP: &str = r#"
ignore = ["postgres"]
[roles]
catalog_rw = "BookCatalog"
inventory_rw = "BookInventory"
reading_rw = "ReadingList"
"#;

fn logging_server() -> TempServer {
    let options = ServerOptions::default()
        .setting("shared_preload_libraries", "pg_stat_statements")
        .setting("logging_collector", "on")
        .setting("log_destination", "stderr,csvlog,jsonlog")
        .setting("log_directory", "log")
        .setting("log_filename", "workload.log")
        .setting("log_statement", "all")
        .setting("log_line_prefix", "%m [%p] %q%u@%d %a: ");
    TempServer::start_with(&options)
        .unwrap_or_else(|e| panic!("cannot start a throw-away PostgreSQL: {e}"))
}

/// Runs each service's script with pgbench, as that service's role and application.
fn run_services(server: &TempServer, db: &str) {
    let dir = tempfile::tempdir().unwrap();
    for (role, app, script) in SERVICES {
        let path = dir.path().join(format!("{app}.sql"));
        std::fs::write(&path, script).unwrap();
        let out = Command::new(server.bin_dir().join("pgbench"))
            .args(["-n", "-t", "5", "-c", "2", "-h"])
            .arg(server.socket_dir())
            .args(["-p", &server.port().to_string(), "-U", role, "-f"])
            .arg(&path)
            .arg(db)
            .env("PGAPPNAME", app)
            .output()
            .expect("pgbench runs (it comes with the PostgreSQL client packages)");
        assert!(
            out.status.success(),
            "pgbench as {role}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Waits until the logging collector has written the last service's COMMIT to `file`.
fn wait_for_log(file: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if text.matches("reading_rw").count() >= 50 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} was not written",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn assert_library_ownership(json: &serde_json::Value, source: &str) {
    let list = table(json, "public.reading_list");
    assert_eq!(list["ownership"], "single", "{source}");
    assert_eq!(strings(&list["writers"]), ["ReadingList"], "{source}");
    let audit = table(json, "public.audit");
    assert_eq!(audit["ownership"], "common", "{source}");
    let books = table(json, "public.book_catalog");
    assert_eq!(books["ownership"], "joint", "{source}");
    assert_eq!(
        strings(&books["writers"]),
        ["BookCatalog", "BookInventory"],
        "{source}"
    );
    assert_eq!(books["resolutions"][0]["kind"], "table-split", "{source}");
    let inventory = books["split"]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["service"] == "BookInventory")
        .unwrap_or_else(|| panic!("{source}: {:#}", books["split"]));
    assert_eq!(
        strings(&inventory["columns"]),
        ["copies_available", "last_stocktake", "shelf_location"],
        "{source}"
    );
}

fn service<'a>(json: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    json["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("service {name} not in {:#}", json["services"]))
}

#[tokio::test]
async fn server_logs_and_pg_stat_statements_give_the_same_ownership_as_sql_files() {
    let server = logging_server();
    let lib = example("library");
    let c = create_db(&server, "library", lib.schema).await;
    c.batch_execute(lib.seed).await.unwrap();
    c.batch_execute(
        "CREATE EXTENSION pg_stat_statements;
         CREATE ROLE catalog_rw LOGIN; CREATE ROLE inventory_rw LOGIN; CREATE ROLE reading_rw LOGIN;
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public
            TO catalog_rw, inventory_rw, reading_rw;
         GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO catalog_rw, inventory_rw, reading_rw;",
    )
    .await
    .unwrap();
    run_services(&server, "library");
    let logs = server.data_dir().join("log");
    for ext in ["csv", "json", "log"] {
        wait_for_log(&logs.join(format!("workload.{ext}")));
    }

    let dir = tempfile::tempdir().unwrap();
    let map = dir.path().join("services.toml");
    std::fs::write(&map, SERVICE_MAP).unwrap();
    let sources: Vec<(String, PathBuf)> = ["csv", "json", "log"]
        .iter()
        .map(|ext| (ext.to_string(), logs.join(format!("workload.{ext}"))))
        .chain([("pgss".to_string(), PathBuf::from("pg_stat_statements"))])
        .collect();
    for (name, source) in &sources {
        let plan = dir.path().join(format!("{name}.plan.toml"));
        let (json, code, stderr) = discover_json(
            &plan,
            &[
                "--source",
                &server.conninfo("library"),
                "--workload",
                source.to_str().unwrap(),
                "--service-map",
                map.to_str().unwrap(),
            ],
        );
        assert_eq!(code, 0, "{name}: {stderr}");
        assert_library_ownership(&json, name);
        let names: Vec<&str> = json["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["BookCatalog", "BookInventory", "ReadingList"],
            "{name}: postgres is ignored, carve's own queries too"
        );
        assert_eq!(
            strings(&service(&json, "BookInventory")["roles"]),
            ["inventory_rw"],
            "{name}"
        );
        let problems = &json["problems"];
        assert_eq!(problems["unparsed"], serde_json::json!([]), "{name}");
        assert_eq!(problems["unknown"], serde_json::json!([]), "{name}");
        let q = &json["quality"];
        if name == "pgss" {
            // Call counts: 2 clients × 5 transactions of each statement.
            assert_eq!(service(&json, "ReadingList")["statements"], 30, "{name}");
            assert_eq!(q["transactions"], q["statements"], "{name}");
        } else {
            // Each pgbench client is a session; BEGIN … COMMIT groups transactions.
            assert_eq!(
                service(&json, "ReadingList")["sessions_logged"],
                2,
                "{name}"
            );
            assert_eq!(
                strings(&service(&json, "ReadingList")["applications"]),
                ["reading-list"],
                "{name}"
            );
            assert!(
                q["transactions"].as_u64() < q["statements"].as_u64(),
                "{name}: {q:#}"
            );
        }
        // The plan remembers each service's roles for the restrict phase.
        let written = carve::plan::Plan::load(&plan).unwrap();
        let inventory = written
            .services
            .iter()
            .find(|s| s.name == "BookInventory")
            .unwrap();
        assert_eq!(inventory.roles, ["inventory_rw"]);
    }

    // All three logs and the statistics at once: the same answer.
    let plan = dir.path().join("all.plan.toml");
    let mut args = vec![
        "--source".to_string(),
        server.conninfo("library"),
        "--service-map".into(),
        map.display().to_string(),
    ];
    for (_, source) in &sources {
        args.push("--workload".into());
        args.push(source.display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (json, code, stderr) = discover_json(&plan, &args);
    assert_eq!(code, 0, "{stderr}");
    assert_library_ownership(&json, "all sources");
}

#[tokio::test]
async fn a_missing_extension_or_a_useless_log_is_a_clear_error_and_writes_nothing() {
    let server = server();
    create_db(&server, "library", example("library").schema).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("carve.plan.toml");
    let source = server.conninfo("library");

    let (_, code, stderr) = discover_json(
        &plan,
        &["--source", &source, "--workload", "pg_stat_statements"],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("not installed"), "{stderr}");
    assert!(
        stderr.contains("shared_preload_libraries") && stderr.contains("CREATE EXTENSION"),
        "{stderr}"
    );
    assert!(!plan.exists());

    // Installed but not loaded at server start.
    server
        .psql("library", "CREATE EXTENSION pg_stat_statements")
        .unwrap();
    let (_, code, stderr) = discover_json(
        &plan,
        &["--source", &source, "--workload", "pg_stat_statements"],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("did not load it"), "{stderr}");
    assert!(!plan.exists());

    // A stderr log written without %u or %a cannot say who ran what.
    let log = dir.path().join("postgresql.log");
    std::fs::write(
        &log,
        "2026-11-21 10:00:00.001 UTC [7] LOG:  statement: SELECT 1\n",
    )
    .unwrap();
    let (_, code, stderr) = discover_json(
        &plan,
        &[
            "--source",
            &source,
            "--workload",
            log.to_str().unwrap(),
            "--log-line-prefix",
            "%m [%p] ",
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("neither %u nor %a"), "{stderr}");
    assert!(!plan.exists());

    // A log of another database only: every statement left out, and said so.
    let csv = dir.path().join("other.csv");
    std::fs::write(
        &csv,
        "2026-11-21 10:00:00.001 UTC,\"app\",\"otherdb\",7,\"[local]\",65.7,1,\"idle\",2026-11-21 10:00:00 UTC,3/1,0,LOG,00000,\"statement: SELECT * FROM audit\",,,,,,,,,\"psql\",client backend,,0\n",
    )
    .unwrap();
    let (_, code, stderr) = discover_json(
        &plan,
        &["--source", &source, "--workload", csv.to_str().unwrap()],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("other databases: 1 statements left out"),
        "{stderr}"
    );
    assert!(!plan.exists());

    // A broken log beside a good SQL file: a source that gave nothing is an error
    // naming it, and nothing is written.
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{\"message\": \"statement: SELECT 1\"\n").unwrap();
    let sql = dir.path().join("ReadingList.sql");
    std::fs::write(&sql, "SELECT * FROM reading_list;").unwrap();
    let (_, code, stderr) = discover_json(
        &plan,
        &[
            "--source",
            &source,
            "--workload",
            broken.to_str().unwrap(),
            "--workload",
            sql.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("no statement could be read from --workload")
            && stderr.contains("broken.json: line 1: not a jsonlog record"),
        "{stderr}"
    );
    assert!(!plan.exists());

    // A source with a good statement and a bad tail: the proposal is made, the
    // problem listed in the report and on stderr.
    std::fs::write(
        &sql,
        "SELECT * FROM reading_list;\nSELECT 'never closed FROM audit;\n",
    )
    .unwrap();
    let (json, code, stderr) = discover_json(
        &plan,
        &["--source", &source, "--workload", sql.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{stderr}");
    let problem = &json["problems"]["workload"][0];
    assert!(
        problem["message"]
            .as_str()
            .unwrap()
            .contains("unterminated '…' string opened on line 2"),
        "{problem}"
    );
    assert!(stderr.contains("unterminated '…' string"), "{stderr}");
    assert!(plan.exists());
}
