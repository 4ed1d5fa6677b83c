//! The playbooks in `playbooks/` run against a real server and branch on carve's exit
//! codes as documented.

mod support;

use std::process::Command;

use carve::catalog::fingerprint::Fingerprint;
use carve::plan::{Plan, Source};
use support::*;

fn check_plan(plan: &std::path::Path, conn: &str) -> (i32, String) {
    let out = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/playbooks/check-plan.sh"
        ))
        .arg(plan)
        .arg(conn)
        .env("CARVE", env!("CARGO_BIN_EXE_carve"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn check_plan_passes_a_current_plan_and_stops_on_a_stale_one() {
    let server = server();
    let client = create_db(&server, "library", example("library").schema).await;
    let conn = server.conninfo("library");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("carve.plan.toml");

    let (code, text) = check_plan(&path, &conn);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("no plan file"), "{text}");

    let catalog = catalog_of(&server, "library").await;
    Plan::new(
        Source {
            conninfo: conn.clone(),
            database: "library".into(),
        },
        Fingerprint::of(&catalog),
    )
    .save(&path)
    .unwrap();
    let (code, text) = check_plan(&path, &conn);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("is current"), "{text}");

    client
        .batch_execute("DROP INDEX audit_entity_idx")
        .await
        .unwrap();
    let (code, text) = check_plan(&path, &conn);
    assert_eq!(code, 5, "{text}");
    assert!(
        text.contains("index removed: public.audit.audit_entity_idx"),
        "{text}"
    );

    let (code, text) = check_plan(&path, "host=/nonexistent port=1 dbname=x");
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("carve inspect failed"), "{text}");
}
