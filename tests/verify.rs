//! `carve verify` on real servers: a moved domain of varied types (bytea of 10 MB,
//! floats, time stamps, NULLs, a composite key, a table without a key) verifies
//! clean even though the two servers print values differently by default; each
//! difference injected on the target is found and named by key, with the exact
//! count; a verify killed part-way and resumed reports what an uninterrupted one
//! does.

mod support;

use carve::pgtemp::{ServerOptions, TempServer};
use serde_json::Value;
use support::*;

const SCHEMA: &str = "
    -- json has no hash function: items' rows are hashed by their text.
    CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, note text, price float8,
                        at timestamptz, blob bytea, doc json);
    CREATE TABLE pairs (a int, b text, v numeric, PRIMARY KEY (a, b));
    CREATE TABLE loose (x int, y text);
    ALTER TABLE loose REPLICA IDENTITY FULL;
    INSERT INTO items
    SELECT g, 'item ' || g, CASE WHEN g % 7 = 0 THEN NULL ELSE 'note ' || g END, g / 3.0,
           '2026-01-01 00:00:00+00'::timestamptz + g * interval '1 minute', decode(md5(g::text), 'hex'),
           json_build_object('g', g)
    FROM generate_series(1, 20000) g;
    -- One row of 10 MB.
    UPDATE items SET blob = (SELECT string_agg(decode(md5(i::text), 'hex'), ''::bytea)
                             FROM generate_series(1, 655360) i) WHERE id = 5;
    INSERT INTO pairs SELECT g % 100, 'k' || g, g / 7.0 FROM generate_series(1, 5000) g;
    INSERT INTO loose SELECT g, 'y' || g FROM generate_series(1, 300) g;";

/// A monolith of those tables in one domain `inv`, assigned and moved to a second
/// server whose defaults print dates, floats and bytea differently.
async fn moved() -> (TempServer, TempServer, tempfile::TempDir, Monolith) {
    let source = server();
    let dir = tempfile::tempdir().unwrap();
    let workload = dir.path().join("workload");
    std::fs::create_dir(&workload).unwrap();
    std::fs::write(
        workload.join("Inventory.sql"),
        "SELECT * FROM items WHERE id = $1;\nSELECT * FROM pairs WHERE a = $1;\nSELECT * FROM loose;\n",
    )
    .unwrap();
    let m = monolith(&source, dir.path(), "inv", SCHEMA, workload).await;
    let mut plan = carve::plan::Plan::load(&m.plan).unwrap();
    let tables: Vec<String> = plan.domains.iter().flat_map(|d| d.tables.clone()).collect();
    plan.domains.truncate(1);
    plan.domains[0].name = "inv".into();
    plan.domains[0].tables = tables;
    plan.decisions.push(carve::plan::Decision {
        subject: "replica identity inv.loose".into(),
        choice: "accept-full".into(),
        reason: "a small table".into(),
        rows: None,
    });
    plan.save(&m.plan).unwrap();
    assert_success(&run(&m, &["assign"]));
    let target = TempServer::start_with(
        &ServerOptions::default()
            .setting("TimeZone", "Asia/Tokyo")
            .setting("DateStyle", "SQL, DMY")
            .setting("extra_float_digits", "0")
            .setting("bytea_output", "escape"),
    )
    .unwrap();
    create_db(&target, "inv", "SELECT 1").await;
    assert_success(&run(
        &m,
        &[
            "move",
            "--domain",
            "inv",
            "--target",
            &target.conninfo("inv"),
            "--accept-unlimited-slot-wal",
        ],
    ));
    (source, target, dir, m)
}

fn verify_json(m: &Monolith, extra: &[&str]) -> (Value, i32) {
    let mut args = vec!["--format", "json", "verify", "--domain", "inv"];
    args.extend_from_slice(extra);
    let out = run(m, &args);
    let json = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(&out), stderr(&out)));
    (json, code(&out))
}

/// Every differing row: (table, key, difference).
fn differing(json: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for chunk in json["chunks"].as_array().unwrap() {
        for row in chunk["rows"].as_array().into_iter().flatten() {
            let key: Vec<&str> = row["key"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k.as_str().unwrap())
                .collect();
            out.push((
                chunk["chunk"]["table"].as_str().unwrap().to_string(),
                key.join(", "),
                row["difference"].as_str().unwrap().to_string(),
            ));
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn equal_data_verifies_clean_and_every_injected_difference_is_named() {
    let (_source, target, _dir, m) = moved().await;
    let (json, status) = verify_json(&m, &["--chunk-rows", "1000"]);
    assert_eq!(status, 0, "{json:#}");
    assert_eq!(json["same"], true);
    assert_eq!(json["rows"], 20_000 + 5_000 + 300);
    assert!(json["chunks"].as_array().unwrap().len() >= 25, "{json:#}");
    let plan = carve::plan::Plan::load(&m.plan).unwrap();
    let verified = plan.domains[0].verified.clone().expect("recorded");
    assert_eq!(verified.rows, 25_300);
    let out = run(&m, &["--format", "json", "status", "--domain", "inv"]);
    let status: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let moved = status["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "move")
        .unwrap();
    assert_eq!(moved["verified"]["rows"], 25_300, "{moved:#}");

    let t = client(&target.conninfo("inv")).await;
    t.batch_execute(
        "DELETE FROM inv.items WHERE id = 100;
         INSERT INTO inv.items (id, name) VALUES (999999, 'extra');
         UPDATE inv.items SET name = 'changed' WHERE id = 200;
         UPDATE inv.items SET note = '' WHERE id = 7;
         SET TimeZone = 'America/New_York';
         UPDATE inv.items SET at = '2026-01-01 06:40:00' WHERE id = 400;
         UPDATE inv.items SET price = 'NaN' WHERE id = 500;
         UPDATE inv.items SET blob = blob || '\\x00'::bytea WHERE id = 5;
         DELETE FROM inv.pairs WHERE a = 1 AND b = 'k101';
         UPDATE inv.loose SET y = 'z' WHERE x = 3;",
    )
    .await
    .unwrap();
    let (json, status) = verify_json(&m, &["--chunk-rows", "1000", "--retries", "1"]);
    assert_eq!(status, 7, "{json:#}");
    assert_eq!(json["same"], false);
    let found = differing(&json);
    let items =
        |key: &str, what: &str| ("inv.items".to_string(), key.to_string(), what.to_string());
    let expected_items = [
        items("100", "missing-on-target"),
        items("200", "different"),
        items("400", "different"),
        items("5", "different"),
        items("500", "different"),
        items("7", "different"),
        items("999999", "extra-on-target"),
    ];
    for e in &expected_items {
        assert!(found.contains(e), "{e:?} not in {found:#?}");
    }
    assert!(found.contains(&(
        "inv.pairs".into(),
        "1, k101".into(),
        "missing-on-target".into()
    )));
    // Without a key, a changed row is one missing and one extra row (by hash).
    let loose: Vec<&str> = found
        .iter()
        .filter(|(t, _, _)| t == "inv.loose")
        .map(|(_, _, d)| d.as_str())
        .collect();
    assert_eq!(
        loose,
        ["extra-on-target", "missing-on-target"],
        "{found:#?}"
    );
    assert_eq!(found.len(), 10, "{found:#?}");
    assert_eq!(json["differing_rows"], 10);
    let plan = carve::plan::Plan::load(&m.plan).unwrap();
    assert!(
        plan.domains[0].verified.is_none(),
        "a failed verify clears it"
    );
}

#[tokio::test]
async fn a_killed_verify_resumes_to_the_same_result() {
    use std::io::BufRead;
    let (_source, _target, _dir, m) = moved().await;
    let (whole, status) = verify_json(&m, &["--chunk-rows", "200"]);
    assert_eq!(status, 0, "{whole:#}");
    let total = whole["chunks"].as_array().unwrap().len();
    assert!(total > 100, "{total} chunks");

    // Killed after 30 chunks (SIGKILL: nothing saved at exit).
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_carve"))
        .args(["--plan", m.plan.to_str().unwrap(), "--format", "json"])
        .args([
            "verify",
            "--domain",
            "inv",
            "--chunk-rows",
            "200",
            "--jobs",
            "1",
        ])
        .env("CARVE_SOURCE", &m.conninfo)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = 0;
    for line in lines.by_ref() {
        if line.unwrap().contains("\"verify-chunk\"") {
            seen += 1;
            if seen == 30 {
                break;
            }
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(seen, 30);

    let out = run(
        &m,
        &[
            "--format",
            "json",
            "verify",
            "--domain",
            "inv",
            "--chunk-rows",
            "200",
            "--resume",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let compared_now = stderr(&out).matches("\"verify-chunk\"").count();
    assert!(
        compared_now <= total - 30,
        "the resumed run compared {compared_now} of {total} chunks"
    );
    let resumed: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let summary = |json: &Value| -> Vec<(String, u64, String)> {
        json["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["chunk"]["table"].as_str().unwrap().to_string(),
                    c["chunk"]["index"].as_u64().unwrap(),
                    c["source_hash"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(summary(&resumed), summary(&whole));
    assert_eq!(resumed["rows"], whole["rows"]);

    // A different chunk size cannot resume that journal.
    let out = run(
        &m,
        &[
            "verify",
            "--domain",
            "inv",
            "--chunk-rows",
            "300",
            "--resume",
        ],
    );
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("--chunk-rows 200"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn verify_needs_a_moved_domain() {
    let source = server();
    let dir = tempfile::tempdir().unwrap();
    let m = example_monolith(&source, dir.path(), "library", "library").await;
    let plan = carve::plan::Plan::load(&m.plan).unwrap();
    let domain = plan.domains[0].name.clone();
    let out = run(&m, &["verify", "--domain", &domain]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("carve move --domain"),
        "{}",
        stderr(&out)
    );
    let out = run(&m, &["verify", "--domain", "nope"]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("no domain \"nope\""),
        "{}",
        stderr(&out)
    );
}
