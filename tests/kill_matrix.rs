//! The kill matrix for the phases that change the source (assign, split, restrict)
//! and their undos, on the library: each is killed with SIGKILL at the start of
//! every one of its steps, and at a seeded random moment inside each, then the same
//! command is run again. Its end state (schema, every table's rows, roles, and the
//! plan's phases with each step's status) must equal an uninterrupted run's. The
//! test prints the matrix. Move, verify, cut-over, rollback and retire have their
//! own kill tests (tests/move_command.rs, verify.rs, cutover.rs).
//!
//! `CARVE_KILL_SEED=N` changes the moments inside steps.

mod support;

use std::collections::BTreeSet;
use std::io::BufRead;

use carve::pgtemp::TempServer;
use support::*;

const DB: &str = "library";

/// A state to start a trial from: the database as a template, the plan's bytes and
/// the roles there were.
struct Start {
    template: String,
    plan: Vec<u8>,
    roles: BTreeSet<String>,
    /// A command run after the restore: a state whose roles hold privileges cannot
    /// be kept as a template (a role is not dropped while another database, the
    /// template, grants it anything), so it is made again each time.
    then: Option<&'static [&'static str]>,
}

async fn role_names(admin: &tokio_postgres::Client) -> BTreeSet<String> {
    let sql = "SELECT rolname::text FROM pg_roles WHERE rolname !~ '^pg_'";
    texts(admin, sql, &[]).await.into_iter().collect()
}

/// Keeps the database as it is now under `name`, with the plan and the roles.
async fn keep(server: &TempServer, m: &Monolith, name: &str) -> Start {
    let admin = client(&server.conninfo("postgres")).await;
    for sql in [
        format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{DB}' AND pid <> pg_backend_pid()"),
        format!("CREATE DATABASE {name} TEMPLATE {DB}"),
    ] {
        admin.batch_execute(&sql).await.unwrap();
    }
    Start {
        template: name.to_string(),
        plan: std::fs::read(&m.plan).unwrap(),
        roles: role_names(&admin).await,
        then: None,
    }
}

/// Puts the database, the plan and the roles back as `start` has them.
async fn restore(server: &TempServer, m: &Monolith, start: &Start) {
    let admin = client(&server.conninfo("postgres")).await;
    for sql in [
        format!("DROP DATABASE IF EXISTS {DB} WITH (FORCE)"),
        format!("CREATE DATABASE {DB} TEMPLATE {}", start.template),
    ] {
        admin.batch_execute(&sql).await.unwrap();
    }
    // Roles a killed run made are cluster-wide: dropped, groups last.
    let mut extra: Vec<String> = role_names(&admin)
        .await
        .difference(&start.roles)
        .cloned()
        .collect();
    extra.sort_by_key(|r| r.starts_with("domain_"));
    for role in extra {
        admin
            .batch_execute(&format!("DROP ROLE {}", carve::sql::ident(&role)))
            .await
            .unwrap();
    }
    std::fs::write(&m.plan, &start.plan).unwrap();
    let journal = carve::plan::journal_path(&m.plan);
    let _ = std::fs::remove_file(journal);
    if let Some(args) = start.then {
        assert_success(&run(m, args));
    }
}

/// What a run leaves: the schema, every table's rows (as an ordered digest), the
/// roles, and each phase of the plan with its state and every step's status.
async fn end_state(server: &TempServer, m: &Monolith) -> String {
    let c = client(&m.conninfo).await;
    let tables = texts(
        &c,
        "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
        &[],
    )
    .await;
    let mut out = schema_dump(server, DB);
    for t in tables {
        let digest: Option<String> = c
            .query_one(
                &format!("SELECT md5(string_agg(x::text, ',' ORDER BY x::text)) FROM {t} x"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        out.push_str(&format!("\nrows {t}: {digest:?}"));
    }
    for role in role_listing(&c).await {
        out.push_str(&format!("\nrole {role}"));
    }
    let plan = carve::plan::Plan::load(&m.plan).unwrap();
    for p in &plan.phases {
        out.push_str(&format!(
            "\nphase {} {:?} {:?} after={:?}",
            p.name, p.domain, p.state, p.after
        ));
        for s in &p.steps {
            out.push_str(&format!("\n  {:?} {}", p.status(&s.id), s.id));
        }
    }
    out
}

/// Starts `args`, kills it (SIGKILL) `delay_ms` after the start of step `k`, and
/// returns whether it got there (a run that ends first is not killed).
fn kill_at(m: &Monolith, args: &[&str], k: usize, delay_ms: u64) -> bool {
    let mut child = spawn(m, args);
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let marker = format!("[{k}/");
    let seen = lines_until(&mut lines, &marker);
    let reached = seen.last().is_some_and(|l| l.contains(&marker));
    if reached && delay_ms > 0 {
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    reached
}

/// A small seeded generator (SplitMix64): the moments inside steps are the same
/// from run to run.
fn next(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The matrix as it fills: a row per command, a cell per kill point.
struct Matrix<'a> {
    server: &'a TempServer,
    m: &'a Monolith,
    seed: u64,
    rows: Vec<String>,
    different: Vec<String>,
}

impl Matrix<'_> {
    /// Every kill point of `args` from `start`: at each step's start, and a seeded
    /// moment inside it.
    async fn trials(&mut self, name: &str, args: &[&str], start: &Start) {
        let (server, m) = (self.server, self.m);
        restore(server, m, start).await;
        let out = run(m, args);
        assert_success(&out);
        let steps = stderr(&out).lines().filter(|l| l.starts_with('[')).count();
        assert!(steps > 0, "{name}: no steps\n{}", stderr(&out));
        let expected = end_state(server, m).await;
        let mut row = Vec::new();
        for k in 1..=steps {
            for inside in [false, true] {
                restore(server, m, start).await;
                let delay = if inside {
                    next(&mut self.seed) % 40 + 1
                } else {
                    0
                };
                let killed = kill_at(m, args, k, delay);
                let out = run_past_lock(m, args);
                let ok = out.status.success() && end_state(server, m).await == expected;
                let point = if inside {
                    format!("{k}+{delay}ms")
                } else {
                    k.to_string()
                };
                row.push(format!(
                    "{point}:{}",
                    match (ok, killed) {
                        (true, true) => "same",
                        (true, false) => "same (ended first)",
                        (false, _) => "DIFFERENT",
                    }
                ));
                if !ok {
                    self.different.push(format!(
                        "{name} killed at {point}: exit {}\n{}",
                        code(&out),
                        stderr(&out)
                    ));
                }
            }
        }
        self.rows.push(format!("{name:<14} {}", row.join("  ")));
    }
}

#[tokio::test]
async fn every_source_phase_killed_at_every_step_ends_as_an_uninterrupted_run() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let m = example_monolith(&server, dir.path(), DB, DB).await;
    let seed: u64 = std::env::var("CARVE_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2026);
    let mut matrix = Matrix {
        server: &server,
        m: &m,
        seed,
        rows: Vec::new(),
        different: Vec::new(),
    };

    let discovered = keep(&server, &m, "after_discover").await;
    matrix.trials("assign", &["assign"], &discovered).await;
    // Each phase starts where an uninterrupted run of the one before ends.
    restore(&server, &m, &discovered).await;
    assert_success(&run(&m, &["assign"]));
    delegate_library_audit_writes(&m);
    let assigned = keep(&server, &m, "after_assign").await;
    matrix
        .trials("undo assign", &["undo", "assign"], &assigned)
        .await;
    matrix.trials("split", &["split"], &assigned).await;
    restore(&server, &m, &assigned).await;
    assert_success(&run(&m, &["split"]));
    let split = keep(&server, &m, "after_split").await;
    matrix
        .trials("undo split", &["undo", "split"], &split)
        .await;
    matrix.trials("restrict", &["restrict"], &split).await;
    let restricted = Start {
        template: split.template.clone(),
        plan: split.plan.clone(),
        roles: split.roles.clone(),
        then: Some(&["restrict"]),
    };
    matrix
        .trials("undo restrict", &["undo", "restrict"], &restricted)
        .await;

    let points: usize = matrix.rows.iter().map(|r| r.matches(':').count()).sum();
    eprintln!(
        "kill matrix ({points} points, seed {seed}):\n{}",
        matrix.rows.join("\n")
    );
    assert!(
        matrix.different.is_empty(),
        "{}",
        matrix.different.join("\n\n")
    );
}
