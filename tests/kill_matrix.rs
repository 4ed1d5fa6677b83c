//! The kill matrix: every phase that changes a database, and its undo, killed with
//! SIGKILL at the start of each of its steps and at a seeded random moment inside
//! each, then the same command run again. Its end state must equal an uninterrupted
//! run's from the same start. Each test prints its matrix (command × point → same).
//!
//! - On the source (the library): assign, split, restrict and their undos. The end
//!   state is the schema, every table's rows, the roles, and the plan's phases with
//!   each step's status.
//! - On two servers and PgBouncer (the shop's orders domain): move, undo move,
//!   verify, cutover, rollback, retire; and the move and undo move of the
//!   library's catalog domain, split between its two writers. The end state adds, on both servers, the
//!   replication slots, publications (tables, columns, row filters) and
//!   subscriptions, and PgBouncer's configuration file and its view of the entry.
//!   A start is a copy of both stopped servers' data directories, put back for each
//!   trial (then, as an operator would after a restart, the streams run again
//!   before carve does). By default six seeded step starts per command (the
//!   suite's time budget); `CARVE_KILL_FULL=1` kills at every step's start and a
//!   moment inside each, as the source phases do.
//!
//! `CARVE_KILL_SEED=N` changes the moments inside steps and the sample;
//! `CARVE_KILL_ONLY=NAME` kills only that row's command (`rollback`).

mod support;

use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use carve::pgtemp::{TempBouncer, TempServer};
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

/// Where trials run: how a start is put back, and what a run leaves there.
trait Scene {
    type Start;
    fn monolith(&self) -> &Monolith;
    async fn restore(&mut self, start: &Self::Start);
    async fn end_state(&mut self) -> String;
    /// The servers' logs' last lines, to tell why a run failed.
    fn logs(&self) -> String;
}

/// The last lines of a server's log.
fn log_tail(server: &TempServer) -> String {
    let text = std::fs::read_to_string(server.log_path()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// The library on one server.
struct Library<'a> {
    server: &'a TempServer,
    m: &'a Monolith,
}

impl Scene for Library<'_> {
    type Start = Start;

    fn monolith(&self) -> &Monolith {
        self.m
    }

    async fn restore(&mut self, start: &Start) {
        restore(self.server, self.m, start).await
    }

    async fn end_state(&mut self) -> String {
        end_state(self.server, self.m).await
    }

    fn logs(&self) -> String {
        log_tail(self.server)
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
    put_plan_back(m, &start.plan);
    if let Some(args) = start.then {
        assert_success(&run(m, args));
    }
}

/// The plan's bytes as they were, and no journal.
fn put_plan_back(m: &Monolith, plan: &[u8]) {
    std::fs::write(&m.plan, plan).unwrap();
    let journal = carve::plan::journal_path(&m.plan);
    let _ = std::fs::remove_file(journal);
}

/// A database as a run leaves it: its schema, every table's rows (as an ordered
/// digest) and the roles.
async fn database_state(server: &TempServer, db: &str) -> String {
    let c = client(&server.conninfo(db)).await;
    let tables = texts(
        &c,
        "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
        &[],
    )
    .await;
    let mut out = schema_dump(server, db);
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
    out
}

/// The source's state, then each phase of the plan with its state and every
/// step's status.
async fn end_state(server: &TempServer, m: &Monolith) -> String {
    let mut out = database_state(server, &m.db).await;
    out.push_str(&plan_state(m));
    out
}

fn plan_state(m: &Monolith) -> String {
    let mut out = String::new();
    let plan = carve::plan::Plan::load(&m.plan).unwrap();
    for p in &plan.phases {
        // Whether the catalog after was recorded; its digest is of the schema,
        // which is compared itself (and a retired schema's name holds the time).
        out.push_str(&format!(
            "\nphase {} {:?} {:?} after recorded: {}",
            p.name,
            p.domain,
            p.state,
            p.after.is_some()
        ));
        for s in &p.steps {
            out.push_str(&format!("\n  {:?} {}", p.status(&s.id), s.id));
        }
    }
    out
}

/// The shop's source and its orders domain's server, with PgBouncer in front.
struct Servers {
    source: TempServer,
    target: TempServer,
    bouncer: TempBouncer,
    m: Monolith,
    /// Where each start's copies of the data directories are kept, and the plan.
    files: tempfile::TempDir,
}

/// A start on two servers: copies of both data directories, taken stopped, the
/// plan's bytes and PgBouncer's configuration file.
struct Snapshot {
    dir: PathBuf,
    plan: Vec<u8>,
    ini: String,
}

/// `cp -a`: the copy keeps the server user's ownership and modes.
fn copy_tree(from: &Path, to: &Path) {
    let out = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .output()
        .unwrap();
    assert!(out.status.success(), "cp: {}", stderr(&out));
}

impl Servers {
    /// `m` on `source`, a server for its domain with an empty database of the
    /// monolith's name, and PgBouncer in front of the source with the domain's
    /// `entry`.
    async fn around(
        source: TempServer,
        m: Monolith,
        files: tempfile::TempDir,
        entry: &str,
    ) -> Servers {
        let target = server();
        create_db(&target, &m.db, "SELECT 1").await;
        let bouncer = TempBouncer::start(&source, &[(entry, m.db.as_str())])
            .unwrap_or_else(|e| panic!("cannot start a throw-away PgBouncer: {e}"));
        Servers {
            source,
            target,
            bouncer,
            m,
            files,
        }
    }

    fn stop(&mut self) {
        self.bouncer.stop();
        self.target.stop();
        self.source.stop();
    }

    fn start(&mut self) {
        self.source.start_again().unwrap();
        self.target.start_again().unwrap();
        self.bouncer.start_again().unwrap();
    }

    /// Keeps both servers as they are now under `name`, with the plan and
    /// PgBouncer's file.
    fn keep(&mut self, name: &str) -> Snapshot {
        let dir = self.files.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        self.stop();
        copy_tree(&self.source.data_dir(), &dir.join("source"));
        copy_tree(&self.target.data_dir(), &dir.join("target"));
        self.start();
        Snapshot {
            dir,
            plan: std::fs::read(&self.m.plan).unwrap(),
            ini: std::fs::read_to_string(self.bouncer.config_path()).unwrap(),
        }
    }

    async fn put_back(&mut self, start: &Snapshot) {
        self.stop();
        for (server, name) in [(&self.source, "source"), (&self.target, "target")] {
            std::fs::remove_dir_all(server.data_dir()).unwrap();
            copy_tree(&start.dir.join(name), &server.data_dir());
        }
        std::fs::write(self.bouncer.config_path(), &start.ini).unwrap();
        self.start();
        put_plan_back(&self.m, &start.plan);
        // As an operator would after a restart: the streams run again before carve
        // does (a gate refuses while an apply worker is not yet started).
        for server in [&self.source, &self.target] {
            let c = client(&server.conninfo(&self.m.db)).await;
            let waiting = "SELECT count(*)::int8 FROM pg_subscription s WHERE s.subenabled AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND NOT EXISTS (SELECT 1 FROM pg_stat_subscription w WHERE w.subid = s.oid AND w.relid IS NULL AND w.pid IS NOT NULL)";
            for _ in 0..500 {
                if c.query_one(waiting, &[]).await.unwrap().get::<_, i64>(0) == 0 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
}

/// The replication objects of a database: slots (of the whole server), and the
/// database's publications with their tables, columns and row filters, and its
/// subscriptions. What moves as the stream runs (positions, whether a slot is in
/// use this instant) is left out.
async fn replication_state(server: &TempServer, db: &str) -> String {
    let c = client(&server.conninfo(db)).await;
    let mut out = String::new();
    for (what, sql) in [
        ("slot", "SELECT concat_ws(' ', slot_name, plugin, slot_type, database, temporary) FROM pg_replication_slots ORDER BY 1"),
        ("publication", "SELECT concat_ws(' ', p.pubname, p.puballtables, p.pubinsert, p.pubupdate, p.pubdelete, p.pubtruncate, p.pubviaroot, (SELECT string_agg(format('%I.%I(%s) where %s', t.schemaname, t.tablename, array_to_string(t.attnames, ','), coalesce(t.rowfilter, 'true')), ' ' ORDER BY t.schemaname, t.tablename) FROM pg_publication_tables t WHERE t.pubname = p.pubname)) FROM pg_publication p ORDER BY 1"),
        ("subscription", "SELECT concat_ws(' ', s.subname, s.subenabled, s.subslotname, s.subpublications::text, regexp_replace(s.subconninfo, 'password=\\S+', 'password=…'), (SELECT string_agg(r.srrelid::regclass::text || ':' || r.srsubstate::text, ',' ORDER BY r.srrelid::regclass::text) FROM pg_subscription_rel r WHERE r.srsubid = s.oid)) FROM pg_subscription s WHERE s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()) ORDER BY 1"),
    ] {
        for row in texts(&c, sql, &[]).await {
            out.push_str(&format!("\n{what} {row}"));
        }
    }
    out
}

/// PgBouncer's file and what it serves now for each entry: where it points and
/// whether it is paused or disabled.
async fn bouncer_state(bouncer: &TempBouncer) -> String {
    let mut out = format!(
        "\npgbouncer.ini:\n{}",
        std::fs::read_to_string(bouncer.config_path()).unwrap()
    );
    let console = client(&bouncer.console_conninfo()).await;
    for message in console.simple_query("SHOW DATABASES").await.unwrap() {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
            let field = |name: &str| row.get(name).unwrap_or("").to_string();
            if field("name") != "pgbouncer" {
                out.push_str(&format!(
                    "\nentry {} host={} port={} database={} paused={} disabled={}",
                    field("name"),
                    field("host"),
                    field("port"),
                    field("database"),
                    field("paused"),
                    field("disabled")
                ));
            }
        }
    }
    out
}

/// A retired schema's name carries the time of the retire: the same for every run.
fn without_retire_times(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("__retired_") {
        let (head, tail) = rest.split_at(at + "__retired_".len());
        out.push_str(head);
        out.push_str("<time>");
        rest = tail.trim_start_matches(|c: char| c.is_ascii_alphanumeric() || c == '_');
    }
    out.push_str(rest);
    out
}

impl Scene for Servers {
    type Start = Snapshot;

    fn monolith(&self) -> &Monolith {
        &self.m
    }

    async fn restore(&mut self, start: &Snapshot) {
        self.put_back(start).await;
    }

    async fn end_state(&mut self) -> String {
        let mut out = String::new();
        for (name, server) in [("source", &self.source), ("target", &self.target)] {
            out.push_str(&format!("\n== {name}\n"));
            out.push_str(&database_state(server, &self.m.db).await);
            out.push_str(&replication_state(server, &self.m.db).await);
        }
        out.push_str(&bouncer_state(&self.bouncer).await);
        out.push_str(&plan_state(&self.m));
        without_retire_times(&out)
    }

    fn logs(&self) -> String {
        format!(
            "source's log:\n{}\ntarget's log:\n{}",
            log_tail(&self.source),
            log_tail(&self.target)
        )
    }
}

/// A progress line that starts a kill point: a step's start (`[k/n] …`).
fn step_start(line: &str) -> bool {
    line.starts_with('[')
}

/// Verify runs no steps: its points are the tables it has compared.
fn table_compared(line: &str) -> bool {
    line.trim_start().starts_with("compared ")
}

/// Starts `args`, kills it (SIGKILL) `delay_ms` after its `k`-th point, and
/// returns whether it got there (a run that ends first is not killed).
fn kill_at(m: &Monolith, args: &[&str], point: fn(&str) -> bool, k: usize, delay_ms: u64) -> bool {
    let mut child = spawn(m, args);
    let lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let reached = lines
        .map_while(Result::ok)
        .filter(|l| point(l))
        .nth(k - 1)
        .is_some();
    if reached && delay_ms > 0 {
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    reached
}

/// `CARVE_KILL_SEED`, or 2026.
fn seed() -> u64 {
    std::env::var("CARVE_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2026)
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
struct Matrix<S> {
    scene: S,
    seed: u64,
    points: Points,
    rows: Vec<String>,
    different: Vec<String>,
}

impl<S: Scene> Matrix<S> {
    fn new(scene: S, points: Points) -> Self {
        Matrix {
            scene,
            seed: seed(),
            points,
            rows: Vec::new(),
            different: Vec::new(),
        }
    }

    /// Every kill point of `args` from `start`: at each step's start, and a seeded
    /// moment inside it.
    async fn trials(&mut self, name: &str, args: &[&str], start: &S::Start) {
        self.trials_at(name, args, start, step_start).await
    }

    /// As `trials`, with the kill points at the progress lines `point` accepts.
    async fn trials_at(
        &mut self,
        name: &str,
        args: &[&str],
        start: &S::Start,
        point: fn(&str) -> bool,
    ) {
        if std::env::var("CARVE_KILL_ONLY").is_ok_and(|only| only != name) {
            return;
        }
        let began = std::time::Instant::now();
        self.scene.restore(start).await;
        let out = run(self.scene.monolith(), args);
        self.assert_success(name, &out);
        let steps = stderr(&out).lines().filter(|l| point(l)).count();
        assert!(steps > 0, "{name}: no kill points\n{}", stderr(&out));
        let expected = self.scene.end_state().await;
        let mut row = Vec::new();
        let (chosen, moments): (Vec<usize>, &[bool]) = match self.points {
            Points::Every => ((1..=steps).collect(), &[false, true]),
            Points::Sample(n) => (self.sample(steps, n), &[false]),
        };
        for k in chosen {
            for &inside in moments {
                self.scene.restore(start).await;
                let delay = if inside {
                    next(&mut self.seed) % 40 + 1
                } else {
                    0
                };
                let m = self.scene.monolith();
                let killed = kill_at(m, args, point, k, delay);
                let out = run_past_lock(m, args);
                let state = self.scene.end_state().await;
                let ok = out.status.success() && state == expected;
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
                        "{name} killed at {point}: exit {}\n{}\n{}",
                        code(&out),
                        stderr(&out),
                        differences(&expected, &state)
                    ));
                }
            }
        }
        self.rows.push(format!(
            "{name:<14} {}   ({} s)",
            row.join("  "),
            began.elapsed().as_secs()
        ));
    }

    /// Up to `n` of the points 1..=`steps`, in order: the first, the last, and
    /// seeded others.
    fn sample(&mut self, steps: usize, n: usize) -> Vec<usize> {
        let mut chosen = BTreeSet::from([1, steps]);
        while chosen.len() < n.min(steps) {
            chosen.insert(1 + (next(&mut self.seed) % steps as u64) as usize);
        }
        chosen.into_iter().collect()
    }

    /// Puts `start` back and runs `args` through, uninterrupted: where the next
    /// phase's trials start.
    async fn run_from(&mut self, start: &S::Start, args: &[&str]) {
        self.scene.restore(start).await;
        let out = run(self.scene.monolith(), args);
        self.assert_success(&args.join(" "), &out);
    }

    fn assert_success(&self, name: &str, out: &std::process::Output) {
        assert!(
            out.status.success(),
            "{name}, uninterrupted: exit {}\n{}\n{}",
            code(out),
            stderr(out),
            self.scene.logs()
        );
    }

    /// Prints the matrix; every point must have ended the same.
    fn report(&self, what: &str) {
        let points: usize = self.rows.iter().map(|r| r.matches(':').count()).sum();
        eprintln!(
            "kill matrix, {what} ({points} points, seed {}):\n{}",
            seed(),
            self.rows.join("\n")
        );
        assert!(self.different.is_empty(), "{}", self.different.join("\n\n"));
    }
}

/// `carve cutover` or `carve rollback` (`command`) of `domain` through the
/// PgBouncer at `console`, its `entry`.
fn switch_args<'a>(
    command: &'a str,
    domain: &'a str,
    console: &'a str,
    entry: &'a str,
) -> [&'a str; 7] {
    [
        command,
        "--domain",
        domain,
        "--pgbouncer",
        console,
        "--entry",
        entry,
    ]
}

/// The points a two-server matrix kills at: six seeded step starts per command,
/// every point with `CARVE_KILL_FULL`.
fn two_server_points() -> Points {
    match std::env::var_os("CARVE_KILL_FULL") {
        Some(_) => Points::Every,
        None => Points::Sample(6),
    }
}

/// Which points a matrix kills at.
#[derive(Clone, Copy)]
enum Points {
    /// Every step's start, and a seeded moment inside each.
    Every,
    /// Up to this many step starts per command, seeded: the suite's time budget.
    Sample(usize),
}

/// The lines only one of two end states has, each marked with the side it is on.
fn differences(expected: &str, found: &str) -> String {
    let (a, b): (BTreeSet<&str>, BTreeSet<&str>) =
        (expected.lines().collect(), found.lines().collect());
    let mut out: Vec<String> = a.difference(&b).map(|l| format!("- {l}")).collect();
    out.extend(b.difference(&a).map(|l| format!("+ {l}")));
    out.truncate(40);
    out.join("\n")
}

#[tokio::test]
async fn every_source_phase_killed_at_every_step_ends_as_an_uninterrupted_run() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let m = example_monolith(&server, dir.path(), DB, DB).await;
    let mut matrix = Matrix::new(
        Library {
            server: &server,
            m: &m,
        },
        Points::Every,
    );

    let discovered = keep(&server, &m, "after_discover").await;
    matrix.trials("assign", &["assign"], &discovered).await;
    // Each phase starts where an uninterrupted run of the one before ends.
    restore(&server, &m, &discovered).await;
    assert_success(&run(&m, &["assign"]));
    decide_library_crossings(&m);
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
    matrix.report("the source phases");
}

/// The shop, assigned, its orders domain's server created empty, PgBouncer in
/// front of the source with the domain's entry.
async fn shop_on_two_servers() -> (Servers, String) {
    let source = server();
    let files = tempfile::tempdir().unwrap();
    let m = example_monolith(&source, files.path(), "shop", "shop").await;
    assign_letting_crossings_go(&m);
    let domain = domain_of(&m, "public.orders");
    (Servers::around(source, m, files, "orders_db").await, domain)
}

#[tokio::test]
async fn every_two_server_phase_killed_at_every_step_ends_as_an_uninterrupted_run() {
    let (servers, domain) = shop_on_two_servers().await;
    let points = two_server_points();
    let target = servers.target.conninfo("shop");
    let console = servers.bouncer.console_conninfo();
    let mut matrix = Matrix::new(servers, points);
    let d = domain.as_str();
    let moving = move_args(d, &target);
    let switch = |command: &'static str| switch_args(command, d, &console, "orders_db");

    let verifying = ["verify", "--domain", d];
    let retiring = ["retire", "--domain", d, "--after", "0s"];

    let assigned = matrix.scene.keep("assigned");
    matrix.trials("move", &moving, &assigned).await;
    matrix.run_from(&assigned, &moving).await;
    let moved = matrix.scene.keep("moved");
    let undo_move = ["undo", "move", "--domain", d];
    matrix.trials("undo move", &undo_move, &moved).await;
    matrix
        .trials_at("verify", &verifying, &moved, table_compared)
        .await;
    matrix.run_from(&moved, &verifying).await;
    let verified = matrix.scene.keep("verified");
    matrix
        .trials("cutover", &switch("cutover"), &verified)
        .await;
    matrix.run_from(&verified, &switch("cutover")).await;
    let cut_over = matrix.scene.keep("cut_over");
    matrix
        .trials("rollback", &switch("rollback"), &cut_over)
        .await;
    matrix.trials("retire", &retiring, &cut_over).await;
    matrix.report("the two-server phases");
}

/// The library with its catalog split between its two writers and restricted,
/// the catalog domain's server created empty, PgBouncer in front of the source.
async fn split_library_on_two_servers() -> (Servers, String) {
    library_on_two_servers(|m, _| {
        decide_library_crossings(m);
        for phase in ["assign", "split", "restrict"] {
            assert_success(&run(m, &[phase]));
        }
    })
    .await
}

/// The library made ready by `prepare` (given its catalog's domain), that
/// domain's server created empty, PgBouncer in front of the source.
async fn library_on_two_servers(prepare: impl FnOnce(&Monolith, &str)) -> (Servers, String) {
    let source = server();
    let files = tempfile::tempdir().unwrap();
    let m = example_monolith(&source, files.path(), DB, DB).await;
    let domain = domain_of(&m, "public.book_catalog");
    prepare(&m, &domain);
    (
        Servers::around(source, m, files, "catalog_db").await,
        domain,
    )
}

/// A domain holding both parts of a split moves with the view over them, its
/// trigger and functions: that move and its undo, killed, end as uninterrupted.
#[tokio::test]
async fn a_split_domains_move_killed_at_its_steps_ends_as_an_uninterrupted_run() {
    let (servers, domain) = split_library_on_two_servers().await;
    let points = two_server_points();
    let target = servers.target.conninfo(DB);
    let mut matrix = Matrix::new(servers, points);
    let d = domain.as_str();
    let moving = move_args(d, &target);
    let restricted = matrix.scene.keep("restricted");
    matrix.trials("move", &moving, &restricted).await;
    matrix.run_from(&restricted, &moving).await;
    let moved = matrix.scene.keep("moved");
    matrix
        .trials("undo move", &["undo", "move", "--domain", d], &moved)
        .await;
    matrix.report("a split domain's move");
}

/// The library with its catalog split across two domains (the inventory part in
/// BookInventory's) and restricted, the catalog domain's server created empty,
/// PgBouncer in front of the source.
async fn split_across_library_on_two_servers() -> (Servers, String) {
    library_on_two_servers(split_library_across).await
}

/// A split's table moves and is cut over leaving its part on the source, kept
/// whole there by a trigger the move adds: the move, its undo, the cut-over and
/// the rollback, killed, end as uninterrupted.
#[tokio::test]
async fn a_split_tables_move_leaving_its_part_killed_at_its_steps_ends_as_an_uninterrupted_run() {
    let (servers, domain) = split_across_library_on_two_servers().await;
    let points = two_server_points();
    let target = servers.target.conninfo(DB);
    let console = servers.bouncer.console_conninfo();
    let mut matrix = Matrix::new(servers, points);
    let d = domain.as_str();
    let moving = move_args(d, &target);
    let switch = |command: &'static str| switch_args(command, d, &console, "catalog_db");
    let verifying = ["verify", "--domain", d];
    let restricted = matrix.scene.keep("restricted");
    matrix.trials("move", &moving, &restricted).await;
    matrix.run_from(&restricted, &moving).await;
    let moved = matrix.scene.keep("moved");
    matrix
        .trials("undo move", &["undo", "move", "--domain", d], &moved)
        .await;
    matrix.run_from(&moved, &verifying).await;
    let verified = matrix.scene.keep("verified");
    matrix
        .trials("cutover", &switch("cutover"), &verified)
        .await;
    matrix.run_from(&verified, &switch("cutover")).await;
    let cut_over = matrix.scene.keep("cut_over");
    matrix
        .trials("rollback", &switch("rollback"), &cut_over)
        .await;
    matrix.report("a split's table moving without its part");
}
