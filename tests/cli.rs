//! The command-line contract, driven through the real binary: options anywhere, JSON
//! with a format_version, exit codes, clear errors, plan staleness, and the demo.

mod support;

use carve::catalog::fingerprint::Fingerprint;
use carve::plan::{Plan, Source};
use predicates::prelude::*;
use support::*;

fn stdout_json(output: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

#[test]
fn help_teaches_the_commands_connections_and_exit_codes() {
    let out = carve()
        .arg("--help")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let help = String::from_utf8(out).unwrap();
    for needle in [
        "inspect",
        "demo",
        "--plan",
        "--format",
        "--yes",
        "PGPASSFILE",
        "sslmode",
        "Exit codes",
        "stale plan",
        "assign",
        "undo",
        "status",
        "restrict",
        "proof",
        "changes pending",
        "lock held",
        "gate not met",
        "cutover",
        "rollback",
        "retire",
        "completions",
        "wizard",
        "run",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
    // The cut-over's help teaches its order and its way back.
    let cutover = carve().args(["cutover", "--help"]).output().unwrap();
    let cutover = String::from_utf8_lossy(&cutover.stdout);
    for needle in [
        "PAUSE",
        "fence",
        "point of no return",
        "--abort",
        "carve rollback",
    ] {
        assert!(cutover.contains(needle), "cutover --help lacks {needle:?}");
    }
    carve()
        .args(["inspect", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("--source <CONN>"));
    carve().arg("frobnicate").assert().code(2);
    carve()
        .arg("inspect")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--source"));
}

#[tokio::test]
async fn inspect_json_has_format_version_and_the_full_model_with_options_anywhere() {
    let server = server();
    create_db(&server, "library", example("library").schema).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("carve.plan.toml");
    // Global options after the command, as well as before it.
    let output = carve()
        .args([
            "inspect",
            "--source",
            &server.conninfo("library"),
            "--format",
            "json",
            "--plan",
        ])
        .arg(&plan)
        .output()
        .unwrap();
    assert_success(&output);
    let json = stdout_json(&output);
    assert_eq!(json["format_version"], 1);
    assert_eq!(json["command"], "inspect");
    assert_eq!(json["catalog"]["tables"].as_array().unwrap().len(), 3);
    assert_eq!(json["catalog"]["tables"][0]["name"]["name"], "audit");
    assert_eq!(json["plan"]["state"], "missing");
    assert_eq!(json["fingerprint"].as_str().unwrap().len(), 64);

    let human = carve()
        .args(["--plan"])
        .arg(&plan)
        .args(["inspect", "--source", &server.conninfo("library")])
        .output()
        .unwrap();
    assert_success(&human);
    let text = String::from_utf8(human.stdout).unwrap();
    assert!(text.contains("tables              3"), "{text}");
    assert!(
        !text.contains('\x1b'),
        "no colour codes when not on a terminal"
    );
    assert!(!String::from_utf8_lossy(&human.stderr).contains('\x1b'));
}

#[tokio::test]
async fn stale_plan_is_refused_with_the_change_named() {
    let server = server();
    let client = create_db(&server, "library", example("library").schema).await;
    let catalog = catalog_of(&server, "library").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("carve.plan.toml");
    Plan::new(
        Source {
            conninfo: server.conninfo("library"),
            database: "library".into(),
        },
        Fingerprint::of(&catalog),
    )
    .save(&path)
    .unwrap();

    carve()
        .arg("--plan")
        .arg(&path)
        .args(["inspect", "--source", &server.conninfo("library")])
        .assert()
        .success()
        .stdout(predicate::str::contains("up to date"));

    client
        .batch_execute("ALTER TABLE book_catalog ADD COLUMN isbn13 text")
        .await
        .unwrap();
    let output = carve()
        .arg("--plan")
        .arg(&path)
        .args(["inspect", "--source", &server.conninfo("library")])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(5));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("STALE"), "{text}");
    assert!(
        text.contains("column added: public.book_catalog.isbn13 (type=text)"),
        "{text}"
    );

    let output = carve()
        .arg("--plan")
        .arg(&path)
        .args([
            "--format",
            "json",
            "inspect",
            "--source",
            &server.conninfo("library"),
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(5));
    let json = stdout_json(&output);
    assert_eq!(json["plan"]["state"], "stale");
    assert_eq!(json["plan"]["changes"][0]["change"], "added");
    assert_eq!(
        json["plan"]["changes"][0]["object"],
        "column public.book_catalog.isbn13"
    );
}

#[tokio::test]
async fn bad_plan_files_give_line_and_column_and_change_nothing() {
    let server = server();
    create_db(&server, "library", example("library").schema).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("carve.plan.toml");
    let source = server.conninfo("library");

    std::fs::write(
        &path,
        "format_version = 1\nwritten_by = \"x\"\nsurprise = true\n",
    )
    .unwrap();
    carve()
        .arg("--plan")
        .arg(&path)
        .args(["inspect", "--source", &source])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "carve.plan.toml:3:1: unknown field `surprise`",
        ));
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "format_version = 1\nwritten_by = \"x\"\nsurprise = true\n"
    );

    std::fs::write(&path, "format_version = 1\nsource = { conninfo = \"x\"\n").unwrap();
    carve()
        .arg("--plan")
        .arg(&path)
        .args(["inspect", "--source", &source])
        .assert()
        .code(1)
        .stderr(predicate::str::is_match(r"carve\.plan\.toml:2:\d+: ").unwrap());

    std::fs::write(&path, "format_version = 9\n").unwrap();
    carve()
        .arg("--plan")
        .arg(&path)
        .args(["inspect", "--source", &source])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("newer carve").and(predicate::str::contains("upgrade carve")),
        );
}

#[tokio::test]
async fn connection_errors_are_clear_and_hide_the_password() {
    let server = server();
    create_db(
        &server,
        "shop",
        "CREATE ROLE alice LOGIN PASSWORD 'right-one'",
    )
    .await;
    let url = format!(
        "postgresql://alice:Hunter2-leak@127.0.0.1:{}/shop",
        server.port()
    );
    carve()
        .args(["inspect", "--source", &url])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("password authentication failed for user \"alice\"")
                .and(predicate::str::contains(format!(
                    "host=127.0.0.1 port={} user=alice dbname=shop",
                    server.port()
                )))
                .and(predicate::str::contains("Hunter2-leak").not()),
        )
        .stdout(predicate::str::contains("Hunter2-leak").not());

    carve()
        .args(["inspect", "--source", "dbnmae=shop"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "invalid connection option \"dbnmae\"",
        ));

    // Settings come from the PG* variables when the string leaves them out.
    carve()
        .env("PGHOST", server.socket_dir())
        .env("PGPORT", server.port().to_string())
        .env("PGUSER", "postgres")
        .env("PGDATABASE", "shop")
        .args(["inspect", "--source", ""])
        .assert()
        .success()
        .stdout(predicate::str::contains("database shop"));
}

#[test]
fn demo_runs_each_example_and_removes_everything() {
    for example in ["library", "shop"] {
        let output = carve()
            .args(["demo", "--example", example, "--format", "json"])
            .output()
            .unwrap();
        assert_success(&output);
        let json = stdout_json(&output);
        assert_eq!(json["format_version"], 1);
        assert_eq!(json["example"], example);
        assert_eq!(json["kept"], false);
        assert!(
            json["assign_steps"].as_u64().unwrap() >= 5,
            "the demo runs assign: {json:#}"
        );
        assert!(
            json["restrict_steps"].as_u64().unwrap() >= 5,
            "the demo runs restrict: {json:#}"
        );
        assert!(
            json["split_steps"].as_u64().unwrap() >= 4,
            "the demo splits the jointly written table discover proposes: {json:#}"
        );
        let plan = std::path::PathBuf::from(json["plan"].as_str().unwrap());
        assert!(
            !plan.parent().unwrap().exists(),
            "{} left behind",
            plan.display()
        );
        assert!(
            json["moved"]["steps"].as_u64().unwrap() >= 10,
            "the demo moves a domain to a second server: {json:#}"
        );
        // Verified, then cut over through PgBouncer under a write load whose
        // acknowledged rows are all found on the domain's server.
        let moved = &json["moved"];
        if example == "library" {
            // The split catalog, both parts and the view over them.
            assert_eq!(moved["domain"], "book_catalog", "{json:#}");
        }
        assert!(moved["verified_rows"].as_u64().unwrap() > 0, "{json:#}");
        let cutover = &moved["cutover"];
        let acknowledged = cutover["acknowledged"].as_u64().unwrap();
        assert!(acknowledged > 10, "{json:#}");
        assert_eq!(cutover["found"].as_u64(), Some(acknowledged), "{json:#}");
        assert_eq!(cutover["client_errors"], 0, "{json:#}");
        assert!(cutover["pause_ms"].as_u64().is_some(), "{json:#}");
        for server in ["monolith", "moved"] {
            let server = if server == "moved" {
                &json["moved"]["server"]
            } else {
                &json[server]
            };
            let pid = server["pid"].as_u64().unwrap();
            assert!(
                !std::path::Path::new(&format!("/proc/{pid}")).exists(),
                "server {pid} still running"
            );
        }
    }
}

#[test]
fn demo_keep_leaves_a_server_to_look_into() {
    let output = carve()
        .args(["demo", "--keep", "--format", "json"])
        .output()
        .unwrap();
    assert_success(&output);
    let json = stdout_json(&output);
    let pid = json["monolith"]["pid"].as_u64().unwrap() as i32;
    let moved_pid = json["moved"]["server"]["pid"].as_u64().unwrap() as i32;
    let plan = std::path::PathBuf::from(json["plan"].as_str().unwrap());
    let root = plan.parent().unwrap().to_path_buf();
    let alive = |pid: i32| std::path::Path::new(&format!("/proc/{pid}")).exists();
    let kept_ok = alive(pid) && alive(moved_pid) && plan.exists();
    // Clean up before asserting, so a failure leaves nothing running. The domain's
    // server first: its subscription connects to the monolith.
    for pid in [moved_pid, pid] {
        // SAFETY: kill(2) on a pid the demo reported for its own server.
        unsafe { libc::kill(pid, libc::SIGINT) };
        for _ in 0..500 {
            if !alive(pid) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    std::fs::remove_dir_all(&root).unwrap();
    assert!(kept_ok, "the kept servers and the plan should exist");
    assert!(json["monolith"]["psql"]
        .as_str()
        .unwrap()
        .starts_with("psql -h "));
}

#[tokio::test]
async fn phase_commands_explain_a_missing_plan_an_unreachable_server_and_nothing_to_undo() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("carve.plan.toml");
    for args in [
        &["assign"][..],
        &["restrict"],
        &["undo", "restrict"],
        &["status"],
    ] {
        let out = carve()
            .arg("--plan")
            .arg(&plan)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("run `carve discover"), "{args:?}: {err}");
    }

    // A plan made, then its server gone: assign says which server it could not reach.
    let server = server();
    create_db(&server, "library", example("library").schema).await;
    carve()
        .arg("--plan")
        .arg(&plan)
        .args(["--yes", "discover", "--source", &server.conninfo("library")])
        .assert()
        .success();
    let text = std::fs::read(&plan).unwrap();
    let out = carve()
        .arg("--plan")
        .arg(&plan)
        .args(["undo", "assign"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("never applied"));
    let port = server.port();
    drop(server);
    let out = carve()
        .arg("--plan")
        .arg(&plan)
        .args(["--yes", "assign"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("port={port}")), "{err}");
    assert!(err.contains("is the server running"), "{err}");
    assert_eq!(std::fs::read(&plan).unwrap(), text, "plan untouched");
    let out = carve()
        .arg("--plan")
        .arg(&plan)
        .arg("status")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("no phase has changed the database yet"));
}

#[test]
fn completions_and_the_man_page_cover_every_command() {
    let bash = carve().args(["completions", "bash"]).output().unwrap();
    assert_success(&bash);
    let script = String::from_utf8_lossy(&bash.stdout);
    for word in [
        "cutover",
        "rollback",
        "retire",
        "--freeze-timeout",
        "--switch",
    ] {
        assert!(script.contains(word), "bash completion lacks {word}");
    }
    let zsh = carve().args(["completions", "zsh"]).output().unwrap();
    assert_success(&zsh);
    assert!(String::from_utf8_lossy(&zsh.stdout).contains("#compdef carve"));
    let man = carve().arg("man").output().unwrap();
    assert_success(&man);
    let page = String::from_utf8_lossy(&man.stdout);
    assert!(page.contains(".TH carve 1"), "{page}");
    assert!(page.contains("cutover"), "{page}");
    let unknown = carve().args(["completions", "cmd.exe"]).output().unwrap();
    assert_eq!(unknown.status.code(), Some(2));
}
