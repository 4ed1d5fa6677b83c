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

/// The shop's servers for a playbook (`shop_with_pgbouncer`) and the environment the
/// playbooks read.
struct Journey {
    _source: carve::pgtemp::TempServer,
    _target: carve::pgtemp::TempServer,
    bouncer: carve::pgtemp::TempBouncer,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

async fn journey() -> Journey {
    let (source, target, bouncer) = shop_with_pgbouncer().await;
    let workload = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/shop/workload");
    let env = vec![
        ("SOURCE".to_string(), source.conninfo("shop")),
        ("WORKLOAD".into(), workload.display().to_string()),
        ("DOMAIN".into(), "orders".into()),
        ("TARGET".into(), target.conninfo("shop")),
        ("PGBOUNCER".into(), bouncer.console_conninfo()),
        ("ENTRY".into(), "orders".into()),
    ];
    Journey {
        _source: source,
        _target: target,
        bouncer,
        dir: tempfile::tempdir().unwrap(),
        env,
    }
}

impl Journey {
    fn plan(&self) -> std::path::PathBuf {
        self.dir.path().join("shop.plan.toml")
    }

    fn run(&self, playbook: &str) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_carve"));
        cmd.arg("--plan")
            .arg(self.plan())
            .args(["--format", "json", "run"])
            .arg(format!(
                "{}/playbooks/{playbook}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .envs(self.env.iter().cloned())
            .env("CARVE_SOURCE", &self.env[0].1);
        cmd
    }
}

/// Every line of a run's stdout is a versioned JSON event with its step; returns
/// them.
fn events(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|line| {
            let event: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            assert_eq!(event["format_version"], 1, "{line}");
            let kind = event["event"].as_str().unwrap_or_else(|| panic!("{line}"));
            if kind.starts_with("playbook-step") || kind.starts_with("playbook-rollback") {
                for field in ["playbook", "index", "total", "step"] {
                    assert!(!event[field].is_null(), "{field} missing: {line}");
                }
            }
            event
        })
        .collect()
}

/// The events of a run that must have succeeded (its events and stderr shown if not).
fn succeeded(out: &std::process::Output) -> Vec<serde_json::Value> {
    let seen = events(&out.stdout);
    assert!(
        out.status.success(),
        "{seen:#?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    seen
}

/// The shop's whole journey as a pipeline runs it, killed during its move and run
/// again: it goes on at the move and ends with the orders domain cut over; then
/// the rollback drill.
#[tokio::test(flavor = "multi_thread")]
async fn the_shipped_playbooks_run_the_journey_resume_after_a_kill_and_drill_a_rollback() {
    use std::io::BufRead;
    let j = journey().await;
    // Killed once the move has started.
    let mut child = j
        .run("shop-journey.toml")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if line.contains("\"playbook-step-started\"") && line.contains("\"move\"") {
            std::thread::sleep(std::time::Duration::from_millis(300));
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // Again: the steps done before are skipped, the rest run.
    let out = tokio::task::block_in_place(|| {
        let mut tries = 0;
        loop {
            let out = j.run("shop-journey.toml").output().unwrap();
            // The killed carve's lock goes when its session does.
            if out.status.code() == Some(4) && tries < 20 {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(300));
                continue;
            }
            break out;
        }
    });
    let seen = succeeded(&out);
    let skipped: Vec<&str> = seen
        .iter()
        .filter(|e| e["event"] == "playbook-step-skipped")
        .map(|e| e["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        skipped,
        ["discover", "assign", "drop crossing objects at the move"]
    );
    let last = seen.last().unwrap();
    assert_eq!(last["event"], "playbook-finished", "{last}");
    let done: Vec<&serde_json::Value> = seen
        .iter()
        .filter(|e| e["event"] == "playbook-step-done")
        .collect();
    assert_eq!(
        done.last().unwrap()["result"]["live"],
        "server",
        "{seen:#?}"
    );
    assert_eq!(
        live_side(&j.plan(), "orders"),
        (carve::plan::Side::Server, false)
    );
    let plan = Plan::load(&j.plan()).unwrap();
    assert!(plan
        .runs
        .iter()
        .any(|r| r.playbook == "shop journey" && r.finished));

    // Writes go through PgBouncer to the new server.
    let through = client(&j.bouncer.conninfo("orders")).await;
    through
        .simple_query("UPDATE orders SET status = status WHERE false")
        .await
        .unwrap();

    // The drill: back, verified, and over again.
    let out = tokio::task::block_in_place(|| j.run("rollback-drill.toml").output().unwrap());
    let seen = succeeded(&out);
    assert_eq!(
        seen.iter()
            .filter(|e| e["event"] == "playbook-step-done")
            .count(),
        3,
        "{seen:#?}"
    );
    assert_eq!(
        live_side(&j.plan(), "orders"),
        (carve::plan::Side::Server, false)
    );
}

/// A playbook that cannot run changes nothing and says why: a missing variable, a
/// failing step with its own exit code and a rollback, a changed playbook after a
/// stopped run.
#[tokio::test(flavor = "multi_thread")]
async fn a_playbook_stops_with_the_failing_steps_exit_code_and_names_what_is_missing() {
    let j = journey().await;
    let out = tokio::task::block_in_place(|| {
        j.run("shop-journey.toml")
            .env_remove("TARGET")
            .output()
            .unwrap()
    });
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("TARGET"));
    assert!(!j.plan().exists(), "nothing ran");

    // A move whose preflight refuses (keep-until-move objects still cross into
    // orders): exit 6, the move undone (nothing to undo), the run stopped there.
    let book = j.dir.path().join("book.toml");
    std::fs::write(
        &book,
        "version = 1\nname = \"refused\"\n[[steps]]\nname = \"discover\"\ncarve = [\"discover\", \"--source\", \"${SOURCE}\", \"--workload\", \"${WORKLOAD}\"]\n[[steps]]\nname = \"assign\"\ncarve = [\"assign\"]\n[[steps]]\nname = \"move\"\ncarve = [\"move\", \"--domain\", \"orders\", \"--target\", \"${TARGET}\"]\non_failure = \"rollback\"\n",
    )
    .unwrap();
    let run = |path: &std::path::Path, extra: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_carve"));
        cmd.arg("--plan")
            .arg(j.plan())
            .args(["--format", "json", "run"])
            .arg(path)
            .args(extra)
            .envs(j.env.iter().cloned())
            .env("CARVE_SOURCE", &j.env[0].1);
        tokio::task::block_in_place(|| cmd.output().unwrap())
    };
    let out = run(&book, &[]);
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = events(&out.stdout);
    let failed = seen
        .iter()
        .find(|e| e["event"] == "playbook-step-failed")
        .unwrap();
    assert_eq!(failed["step"], "move");
    assert_eq!(failed["exit_code"], 6);
    assert!(seen.iter().any(|e| e["event"] == "playbook-rollback-done"));
    // Changed since it stopped: refused, unless --restart.
    std::fs::write(
        &book,
        std::fs::read_to_string(&book).unwrap() + "# changed\n",
    )
    .unwrap();
    let out = run(&book, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--restart"));
}

/// `move-and-cut-over.toml` on a shop after discover and assign (with crossing
/// objects let go at the move).
#[tokio::test(flavor = "multi_thread")]
async fn the_move_and_cut_over_playbook_ends_with_the_domain_on_its_server() {
    let j = journey().await;
    let carve = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_carve"))
            .arg("--plan")
            .arg(j.plan())
            .arg("--yes")
            .args(args)
            .env("CARVE_SOURCE", &j.env[0].1)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    tokio::task::block_in_place(|| {
        carve(&[
            "discover",
            "--source",
            &j.env[0].1,
            "--workload",
            &j.env[1].1,
        ]);
        carve(&["assign"]);
    });
    let mut plan = Plan::load(&j.plan()).unwrap();
    plan.let_kept_crossings_go("objects kept across domains go at the move");
    plan.save(&j.plan()).unwrap();
    let out = tokio::task::block_in_place(|| j.run("move-and-cut-over.toml").output().unwrap());
    let seen = succeeded(&out);
    let steps: Vec<&str> = seen
        .iter()
        .filter(|e| e["event"] == "playbook-step-done")
        .map(|e| e["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["move", "lag under 1 MiB", "verify", "cut over"]);
    assert_eq!(
        live_side(&j.plan(), "orders"),
        (carve::plan::Side::Server, false)
    );
}
