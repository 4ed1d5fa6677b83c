//! `carve move` and `carve undo move` as users run them, on real servers: the
//! library after assign and restrict moved to a second server, the services' roles
//! logging in there with their own passwords and finding their tables by the old
//! names, and a cancel that leaves neither server with anything of the move.

mod support;

use carve::pgtemp::TempServer;
use support::*;

/// Asserts `table` holds the same rows on both servers, looking again for up to 10
/// s: a slot's confirmed position can run a moment ahead of what the target's
/// queries see.
async fn assert_same_rows(
    source: &tokio_postgres::Client,
    target: &tokio_postgres::Client,
    table: &str,
) -> i64 {
    let mut attempts = 0;
    loop {
        let (want, got) = (rows(source, table).await, rows(target, table).await);
        if want == got {
            return want.0;
        }
        attempts += 1;
        if attempts == 100 {
            assert_eq!(got, want, "{table} differs on the target");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The library after discover, assign and restrict (with passwords for new roles),
/// and the name of its reading-list domain.
async fn library_restricted(source: &TempServer, dir: &std::path::Path) -> (Monolith, String) {
    let m = example_monolith(source, dir, "library", "library").await;
    assert_success(&run(&m, &["assign"]));
    decide_library_crossings(&m);
    let passwords = dir.join("service-passwords");
    assert_success(&run(
        &m,
        &["restrict", "--password-file", passwords.to_str().unwrap()],
    ));
    let domain = domain_of(&m, "public.reading_list");
    (m, domain)
}

#[tokio::test]
async fn a_domain_moves_to_its_own_server_and_the_cancel_leaves_nothing_behind() {
    let source = server();
    let dir = tempfile::tempdir().unwrap();
    let (m, domain) = library_restricted(&source, dir.path()).await;
    let (target, target_conninfo) = target_server("library").await;
    let before = schema_dump(&source, "library");
    let roles_before = role_listing(&client(&m.conninfo).await).await;

    let out = move_to(&m, &domain, &target_conninfo, &[]);
    assert_success(&out);
    let said = stdout(&out);
    assert!(said.contains("ready"), "{said}");
    // restrict's proof, run on the new server as the domain's services' roles.
    assert!(said.contains("on the new server"), "{said}");
    assert!(
        said.contains("4 run, 1 fail as the plan decided, 0 fail unexpectedly"),
        "{said}"
    );

    let source_client = client(&m.conninfo).await;
    let target_client = client(&target_conninfo).await;
    let reading_list = carve::sql::qualified(&domain, "reading_list");
    let n = assert_same_rows(&source_client, &target_client, &reading_list).await;
    assert!(n > 0, "reading_list has rows");
    // ReadingList's read of the catalog is replicated: every row, the columns it reads.
    let catalog_domain = domain_of(&m, "public.book_catalog");
    let catalog = carve::sql::qualified(&catalog_domain, "book_catalog");
    let every_row = format!("SELECT count(*) FROM {catalog}");
    assert_eq!(
        count(&target_client, &every_row).await,
        count(&source_client, &every_row).await
    );
    // The plan records the domain's server, without a password.
    let plan = carve::plan::Plan::load(&m.plan).unwrap();
    let recorded = plan.domains.iter().find(|d| d.name == domain).unwrap();
    let reference = carve::conn::ConnInfo::parse(&target_conninfo)
        .unwrap()
        .redacted();
    assert_eq!(recorded.server.as_deref(), Some(reference.as_str()));

    // The reading-list service logs in on the new server with the password restrict
    // gave it, and its unchanged SQL finds the table by its old name.
    let as_service = service_client(
        &target,
        "library",
        &dir.path().join("service-passwords"),
        "reading",
    )
    .await;
    let n: i64 = as_service
        .query_one("SELECT count(*) FROM reading_list", &[])
        .await
        .unwrap()
        .get(0);
    assert!(n > 0);

    // A change on the new server that breaks a service's statement is caught by the
    // proof when the move runs again: listed, the move itself still ready.
    let rename = |from: &str, to: &str| {
        format!(
            "ALTER TABLE {}.reading_list RENAME COLUMN {from} TO {to}",
            carve::sql::ident(&domain)
        )
    };
    target_client
        .batch_execute(&rename("status", "state"))
        .await
        .unwrap();
    let out = run(&m, &["--format", "json", "move", "--domain", &domain]);
    assert_success(&out);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["state"], "ready", "{json}");
    assert!(json["failing_statements"].as_u64().unwrap() >= 1, "{json}");
    assert!(
        stderr(&out).contains("would break at cut-over"),
        "{}",
        stderr(&out)
    );
    target_client
        .batch_execute(&rename("state", "status"))
        .await
        .unwrap();

    // status reads where the replication stands on both servers.
    let out = run(&m, &["--format", "json", "status", "--domain", &domain]);
    assert_success(&out);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let phase = json["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "move")
        .unwrap();
    let replication = &phase["replication"];
    assert_eq!(replication["slot"]["active"], true, "{replication}");
    // The domain's table on one stream, the replicated catalog on its own.
    for (stream, table) in [
        (
            &replication["subscription"],
            format!("{domain}.reading_list"),
        ),
        (
            &replication["copies"]["subscription"],
            format!("{catalog_domain}.book_catalog"),
        ),
    ] {
        let tables = stream["tables"].as_array().unwrap();
        assert_eq!(tables.len(), 1, "{replication}");
        assert_eq!(tables[0]["table"], table.as_str(), "{replication}");
        assert_eq!(tables[0]["state"], "ready", "{replication}");
        assert_eq!(stream["apply_errors"], 0, "{replication}");
    }
    let out = run(&m, &["status"]);
    assert!(stdout(&out).contains("ready        "), "{}", stdout(&out));
    assert!(stdout(&out).contains("in use"), "{}", stdout(&out));

    // Cancel: nothing of the move is left on either server.
    let out = run(&m, &["undo", "move", "--domain", &domain]);
    assert_success(&out);
    assert_no_move_left(&source_client, &target_client, &domain).await;
    assert_eq!(role_listing(&source_client).await, roles_before);
    assert_eq!(schema_dump(&source, "library"), before);

    // A slot of carve's that no move owns is reported by status.
    source_client
        .batch_execute("SELECT pg_create_logical_replication_slot('carve_left_behind', 'pgoutput')")
        .await
        .unwrap();
    let out = run(&m, &["status"]);
    assert!(
        stderr(&out).contains("carve_left_behind on the source belongs to no move"),
        "{}",
        stderr(&out)
    );
    source_client
        .batch_execute("SELECT pg_drop_replication_slot('carve_left_behind')")
        .await
        .unwrap();
}

/// What the load generator was told succeeded: each order it placed (by id) with its
/// last acknowledged status, or None once deleted.
type Ledger = std::collections::BTreeMap<i64, Option<String>>;

/// Writes to `public.orders` (the compatibility view over the orders domain) from
/// `workers` connections until `stop`: inserts, status updates and deletes of its
/// own rows, each its own transaction, recording every acknowledged write.
async fn order_load(
    conninfo: String,
    workers: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (Ledger, u64) {
    use std::sync::atomic::Ordering;
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let conninfo = conninfo.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let c = client(&conninfo).await;
            let mut ledger = Ledger::new();
            let mut mine: Vec<i64> = Vec::new();
            let mut transactions = 0u64;
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                match i % 5 {
                    // Place an order for an existing customer.
                    0..=2 => {
                        let id: i64 = c
                            .query_one(
                                "INSERT INTO orders (customer_id, total) SELECT min(id) + $1, 9.99 FROM customers RETURNING id",
                                &[&((worker as i64) % 3)],
                            )
                            .await
                            .unwrap()
                            .get(0);
                        ledger.insert(id, Some("placed".into()));
                        mine.push(id);
                    }
                    // Pay the oldest of them (the status trigger writes its history).
                    3 if !mine.is_empty() => {
                        let id = mine[(i as usize / 5) % mine.len()];
                        c.execute("UPDATE orders SET status = 'paid' WHERE id = $1", &[&id])
                            .await
                            .unwrap();
                        ledger.insert(id, Some("paid".into()));
                    }
                    // Cancel one outright.
                    _ if !mine.is_empty() => {
                        let id = mine.swap_remove(0);
                        c.execute("DELETE FROM orders WHERE id = $1", &[&id])
                            .await
                            .unwrap();
                        ledger.insert(id, None);
                    }
                    _ => continue,
                }
                transactions += 1;
            }
            (ledger, transactions)
        }));
    }
    let mut all = Ledger::new();
    let mut total = 0;
    for task in tasks {
        let (ledger, n) = task.await.unwrap();
        all.extend(ledger);
        total += n;
    }
    (all, total)
}

/// Waits until the subscription's slot has confirmed everything the source wrote up
/// to now.
async fn caught_up(source: &tokio_postgres::Client) {
    let lsn: String = source
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    for _ in 0..300 {
        let done: bool = source
            .query_one(
                "SELECT coalesce(bool_and(confirmed_flush_lsn >= $1::text::pg_lsn), false) FROM pg_replication_slots WHERE slot_name LIKE 'carve%'",
                &[&lsn],
            )
            .await
            .unwrap()
            .get(0);
        if done {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the target did not catch up with {lsn}");
}

/// The shop with every cross-domain object decided drop-at-move (what a move needs
/// of them), after assign.
async fn shop_assigned(source: &TempServer, dir: &std::path::Path) -> Monolith {
    let m = example_monolith(source, dir, "shop", "shop").await;
    assign_letting_crossings_go(&m);
    m
}

#[tokio::test]
async fn the_orders_domain_moves_under_a_write_load_and_nothing_acknowledged_is_lost() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let source = server();
    let dir = tempfile::tempdir().unwrap();
    let m = shop_assigned(&source, dir.path()).await;
    let domain = domain_of(&m, "public.orders");
    let (_target, target_conninfo) = target_server("shop").await;

    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(order_load(m.conninfo.clone(), 4, stop.clone()));
    let started = std::time::Instant::now();
    let out = move_in_background(&m, &domain, &target_conninfo).await;
    let moved_in = started.elapsed();
    assert_success(&out);
    // Writes go on after ready, as they would in production, and verify finds no
    // false difference while they do (the chunks they touch are compared again).
    let verified = {
        let (plan, conninfo, domain) = (m.plan.clone(), m.conninfo.clone(), domain.clone());
        tokio::task::spawn_blocking(move || {
            carve()
                .args([
                    "--plan",
                    plan.to_str().unwrap(),
                    "--format",
                    "json",
                    "verify",
                ])
                .args(["--domain", &domain, "--chunk-rows", "50"])
                .env("CARVE_SOURCE", conninfo)
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    };
    let loaded_for = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let (ledger, transactions) = load.await.unwrap();
    assert_success(&verified);
    let report: serde_json::Value = serde_json::from_str(&stdout(&verified)).unwrap();
    assert_eq!(report["same"], true, "{report:#}");
    eprintln!(
        "verify under load: {} rows in {} s",
        report["rows"], report["seconds"]
    );
    let rate = transactions as f64 / loaded_for.as_secs_f64();
    assert!(rate >= 100.0, "only {rate:.0} transactions/s");
    eprintln!(
        "move of {domain} under load: {transactions} transactions ({rate:.0}/s) in {:.1}s",
        moved_in.as_secs_f64()
    );

    let source_client = client(&m.conninfo).await;
    let target_client = client(&target_conninfo).await;
    caught_up(&source_client).await;
    let tables = assert_schema_equal(&source_client, &target_client, &domain).await;
    assert!(tables >= 5, "{tables} tables");
    // Every acknowledged write is on the new server as it was acknowledged.
    let orders = format!("{}.orders", carve::sql::ident(&domain));
    for (id, status) in &ledger {
        let found: Option<String> = target_client
            .query_opt(&format!("SELECT status FROM {orders} WHERE id = $1"), &[id])
            .await
            .unwrap()
            .map(|r| r.get(0));
        assert_eq!(&found, status, "order {id}");
    }
    assert!(ledger.values().any(Option::is_none), "some deletes ran");
    assert!(
        ledger.values().any(|s| s.as_deref() == Some("paid")),
        "some updates ran"
    );
}

/// Everything a refused move must leave as it was: the plan file, both servers'
/// schemas and roles, and the source's slots and publications.
struct Untouched {
    plan: Vec<u8>,
    source_schema: String,
    target_schema: String,
    source_roles: Vec<String>,
    target_roles: Vec<String>,
}

impl Untouched {
    async fn of(m: &Monolith, source: &TempServer, target: &TempServer, db: &str) -> Untouched {
        Untouched {
            plan: std::fs::read(&m.plan).unwrap(),
            source_schema: schema_dump(source, &m.db),
            target_schema: schema_dump(target, db),
            source_roles: role_listing(&client(&m.conninfo).await).await,
            target_roles: role_listing(&client(&target.conninfo(db)).await).await,
        }
    }

    async fn assert_same(&self, m: &Monolith, source: &TempServer, target: &TempServer, db: &str) {
        let now = Untouched::of(m, source, target, db).await;
        assert!(now.plan == self.plan, "the plan changed");
        assert_eq!(now.source_schema, self.source_schema);
        assert_eq!(now.target_schema, self.target_schema);
        assert_eq!(now.source_roles, self.source_roles);
        assert_eq!(now.target_roles, self.target_roles);
        let source_client = client(&m.conninfo).await;
        assert_eq!(
            count(&source_client, "SELECT count(*) FROM pg_replication_slots").await,
            0
        );
        assert_eq!(
            count(&source_client, "SELECT count(*) FROM pg_publication").await,
            0
        );
    }
}

/// One move that fails every check of the preflight the servers here can show at
/// once: each reason is named (exit 6), and nothing changes anywhere.
#[tokio::test]
async fn the_preflight_refuses_with_every_reason_at_once_and_changes_nothing() {
    use carve::pgtemp::ServerOptions;
    let source = TempServer::start_with(
        &ServerOptions::default()
            .setting("wal_level", "replica")
            .setting("max_replication_slots", "2")
            .setting("max_wal_senders", "2"),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let example = example("library");
    let workload =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/library/workload");
    let m = monolith(
        &source,
        dir.path(),
        "library",
        &format!(
            "{}\n{}\nCREATE TABLE no_key (note text);
             CREATE UNLOGGED TABLE scratch (id int PRIMARY KEY);
             CREATE TYPE mood AS ENUM ('calm', 'busy');
             CREATE TABLE full_identity (id int PRIMARY KEY, x text, m mood);
             ALTER TABLE full_identity REPLICA IDENTITY FULL;",
            example.schema, example.seed
        ),
        workload,
    )
    .await;
    // The three odd tables go with the reading list; one access is granted across.
    let mut plan = carve::plan::Plan::load(&m.plan).unwrap();
    let extra = ["public.no_key", "public.scratch", "public.full_identity"];
    for d in plan.domains.iter_mut() {
        d.tables.retain(|t| !extra.contains(&t.as_str()));
    }
    let home = plan
        .domains
        .iter_mut()
        .find(|d| d.tables.iter().any(|t| t == "public.reading_list"))
        .unwrap();
    home.tables.extend(extra.iter().map(|t| t.to_string()));
    let domain = home.name.clone();
    plan.decisions.push(carve::plan::Decision {
        subject: "read public.reading_list by Reporting".into(),
        choice: "temporary-grant".into(),
        reason: "until reporting has its own copy".into(),
        rows: None,
    });
    plan.save(&m.plan).unwrap();
    assert_success(&run(&m, &["assign"]));

    let target = TempServer::start_with(
        &ServerOptions::default()
            .setting("max_logical_replication_workers", "1")
            .setting("max_worker_processes", "2"),
    )
    .unwrap();
    let target_client = create_db(&target, "library", "SELECT 1").await;
    target_client
        .batch_execute(&format!(
            "CREATE SCHEMA {d}; CREATE TABLE {d}.reading_list (id bigint); INSERT INTO {d}.reading_list VALUES (1);",
            d = carve::sql::ident(&domain)
        ))
        .await
        .unwrap();
    let source_client = client(&m.conninfo).await;
    source_client
        .batch_execute("SELECT lo_create(0)")
        .await
        .unwrap();
    let long = client(&m.conninfo).await;
    long.batch_execute("BEGIN; SELECT 1").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let before = Untouched::of(&m, &source, &target, "library").await;

    let out = run(
        &m,
        &[
            "--format",
            "json",
            "move",
            "--domain",
            &domain,
            "--target",
            &target.conninfo("library"),
            "--max-transaction-age",
            "100ms",
        ],
    );
    assert_eq!(code(&out), 6, "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let named: Vec<String> = json["error"]["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap().to_string())
        .collect();
    let d = carve::sql::display_ident(&domain).to_string();
    for expected in [
        "wal_level on the source".to_string(),
        "max_replication_slots on the source".into(),
        "max_wal_senders on the source".into(),
        "max_logical_replication_workers on the target".into(),
        "max_worker_processes on the target".into(),
        "max_slot_wal_keep_size on the source".into(),
        "large objects".into(),
        "a long transaction on the source".into(),
        format!("table {d}.no_key"),
        format!("table {d}.scratch"),
        format!("table {d}.full_identity"),
        format!("table {d}.reading_list on the target"),
        "read public.reading_list by Reporting".into(),
        "type public.mood".into(),
        // The catalog is a domain of its own, and the foreign key into it was kept.
        "foreign key public.reading_list.reading_list_book_id_fkey".into(),
    ] {
        assert!(named.contains(&expected), "{expected} not in {named:#?}");
    }
    assert_eq!(named.len(), 15, "{named:#?}");
    let err = stderr(&out);
    assert!(err.contains("Nothing was changed"), "{err}");
    before.assert_same(&m, &source, &target, "library").await;

    // An unreachable target: a clear error, nothing changed either.
    let closed = TempServer::start().unwrap();
    let unreachable = closed.conninfo("library");
    drop(closed);
    let out = run(&m, &["move", "--domain", &domain, "--target", &unreachable]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("connect"), "{}", stderr(&out));
    before.assert_same(&m, &source, &target, "library").await;
}

#[tokio::test]
async fn a_move_before_assign_or_of_an_unknown_domain_is_refused() {
    let source = server();
    let dir = tempfile::tempdir().unwrap();
    let m = example_monolith(&source, dir.path(), "library", "library").await;
    let (_target, target_conninfo) = target_server("library").await;
    let plan_before = std::fs::read(&m.plan).unwrap();
    let out = run(
        &m,
        &["move", "--domain", "nope", "--target", &target_conninfo],
    );
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("has no domain \"nope\""),
        "{}",
        stderr(&out)
    );
    let domain = domain_of(&m, "public.reading_list");
    let out = run(
        &m,
        &["move", "--domain", &domain, "--target", &target_conninfo],
    );
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("run `carve assign` first"),
        "{}",
        stderr(&out)
    );
    assert!(std::fs::read(&m.plan).unwrap() == plan_before);
    assert_success(&run(&m, &["assign"]));
    let plan_before = std::fs::read(&m.plan).unwrap();
    let out = run(&m, &["move", "--domain", &domain]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("Pass --target"), "{}", stderr(&out));
    // A password file others may read is refused before anything connects.
    let open = dir.path().join("open-passwords");
    std::fs::write(&open, "").unwrap();
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = run(
        &m,
        &[
            "move",
            "--domain",
            &domain,
            "--target",
            &target_conninfo,
            "--password-file",
            open.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
    assert!(std::fs::read(&m.plan).unwrap() == plan_before);
}

/// Runs carve with `args` until a progress line contains `needle`, then kills it
/// with SIGKILL (no chance to clean up or save anything), and returns the lines. A
/// run that finds the lock still held by the previous, killed one (its session
/// ends when its last statement does) is started again.
fn kill_when(m: &Monolith, args: &[&str], needle: &str) -> Vec<String> {
    use std::io::BufRead;
    for _ in 0..50 {
        let mut child = spawn(m, args);
        let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let seen = lines_until(&mut lines, needle);
        child.kill().unwrap();
        child.wait().unwrap();
        if seen.last().is_some_and(|l| l.contains(needle)) {
            return seen;
        }
        assert!(
            seen.iter().any(|l| l.contains("holds the lock")),
            "never reached {needle:?}: {seen:#?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    panic!("the lock stayed held");
}

#[tokio::test]
async fn a_move_killed_during_schema_copy_or_index_build_is_finished_by_the_same_command() {
    let source = server();
    let dir = tempfile::tempdir().unwrap();
    let m = example_monolith(&source, dir.path(), "library", "library").await;
    // Both tables in one domain: the foreign key between them is deferred too.
    pin_library_catalog_to_reading_list(&m);
    assert_success(&run(&m, &["assign"]));
    let domain = domain_of(&m, "public.reading_list");
    // Enough rows that the copy and the index build take a moment.
    client(&m.conninfo)
        .await
        .batch_execute(
            "INSERT INTO book_catalog (isbn, title, author)
             SELECT 'bulk-' || g, 'Title ' || g, 'Author ' || (g % 997) FROM generate_series(1, 200000) g;
             INSERT INTO reading_list (reader_id, book_id)
             SELECT g % 5000, id FROM book_catalog b, generate_series(1, 2) g WHERE b.isbn LIKE 'bulk-%';",
        )
        .await
        .unwrap();
    let (_target, target_conninfo) = target_server("library").await;
    let args = [
        "move",
        "--domain",
        &domain,
        "--target",
        &target_conninfo,
        "--accept-unlimited-slot-wal",
    ];
    let id = carve::plan::PhaseId::new("move", Some(&domain));
    for needle in ["] table ", "] the initial copy", "] index "] {
        kill_when(&m, &args, needle);
        let plan = carve::plan::Plan::load(&m.plan).unwrap();
        let record = plan.phase(&id).expect("recorded before the first step");
        assert!(!record.is_applied(), "killed at {needle:?}, yet applied");
    }
    // The killed run's session on a server lives on until its last statement
    // (the index build) ends; until then its lock is held (exit 4) and the user runs
    // the command again.
    let mut out = run(&m, &args);
    for _ in 0..50 {
        if code(&out) != 4 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        out = run(&m, &args);
    }
    assert_success(&out);
    assert!(stderr(&out).contains("already done"), "{}", stderr(&out));
    let plan = carve::plan::Plan::load(&m.plan).unwrap();
    assert!(plan.phase(&id).unwrap().is_applied());

    let source_client = client(&m.conninfo).await;
    let target_client = client(&target_conninfo).await;
    caught_up(&source_client).await;
    let d = carve::sql::ident(&domain);
    for table in ["reading_list", "book_catalog"] {
        let name = format!("{d}.{table}");
        let n = assert_same_rows(&source_client, &target_client, &name).await;
        assert!(n >= 200_000, "{table}: {n}");
    }
    // The deferred index and key are there, the key validated.
    assert_eq!(
        count(
            &target_client,
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'reading_list_book_idx'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &target_client,
            "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND convalidated"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn hostile_names_survive_a_whole_move_and_its_cancel() {
    let source = server();
    let dir = tempfile::tempdir().unwrap();
    // 63 bytes: the longest name PostgreSQL keeps whole.
    let long_table = format!("t{}", "ü".repeat(31));
    assert_eq!(long_table.len(), 63);
    let books = "Bücher \"rare\" list";
    let role = "Ünï \"app\" role";
    let workload = dir.path().join("workload");
    std::fs::create_dir(&workload).unwrap();
    std::fs::write(
        workload.join("Shelf.sql"),
        format!(
            "SELECT \"select\" FROM {b} WHERE \"id mit Leerzeichen\" = $1;\nINSERT INTO {b} (\"select\") VALUES ($1);\nSELECT * FROM {l} l JOIN {b} b ON b.\"id mit Leerzeichen\" = l.book;\n",
            b = carve::sql::ident(books),
            l = carve::sql::ident(&long_table)
        ),
    )
    .unwrap();
    let schema = format!(
        "CREATE ROLE {r} LOGIN PASSWORD 'hostile pw';
         CREATE TABLE {b} (\"id mit Leerzeichen\" bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, \"select\" text NOT NULL DEFAULT 'x', \"ÿ\" int);
         CREATE INDEX \"idx \"\"q\"\"\" ON {b} (\"select\");
         CREATE TABLE {l} (id int PRIMARY KEY, book bigint REFERENCES {b});
         GRANT SELECT, INSERT ON {b} TO {r};
         GRANT SELECT ({l_id}) ON {l} TO {r};
         INSERT INTO {b} (\"select\", \"ÿ\") SELECT 'row ' || g, g FROM generate_series(1, 100) g;
         INSERT INTO {l} SELECT g, g FROM generate_series(1, 50) g;",
        r = carve::sql::ident(role),
        b = carve::sql::ident(books),
        l = carve::sql::ident(&long_table),
        l_id = carve::sql::ident("id"),
    );
    let m = monolith(&source, dir.path(), "hostile", &schema, workload).await;
    // One domain of both tables, under a hostile 63-byte name.
    let domain = format!("Dö \"{}\"x", "ä".repeat(28));
    assert_eq!(domain.len(), 63);
    let mut plan = carve::plan::Plan::load(&m.plan).unwrap();
    let tables: Vec<String> = plan.domains.iter().flat_map(|d| d.tables.clone()).collect();
    plan.domains.truncate(1);
    plan.domains[0].name = domain.clone();
    plan.domains[0].tables = tables;
    plan.save(&m.plan).unwrap();
    assert_success(&run(&m, &["assign"]));

    let (target, target_conninfo) = target_server("hostile").await;
    let before = schema_dump(&source, "hostile");
    assert_success(&move_to(&m, &domain, &target_conninfo, &[]));
    let source_client = client(&m.conninfo).await;
    let target_client = client(&target_conninfo).await;
    // A row written through the compatibility view reaches the new server.
    source_client
        .execute(
            &format!(
                "INSERT INTO {} (\"select\") VALUES ('late')",
                carve::sql::ident(books)
            ),
            &[],
        )
        .await
        .unwrap();
    caught_up(&source_client).await;
    for table in [books, long_table.as_str()] {
        let name = carve::sql::qualified(&domain, table);
        assert_same_rows(&source_client, &target_client, &name).await;
    }
    // The role logs in on the new server with its own password, holds its grants
    // (the column grant too), and finds the tables by their old names.
    let as_role = client(&format!(
        "host=127.0.0.1 port={} dbname=hostile user={} password='hostile pw'",
        target.port(),
        carve::conn::quote_value(role)
    ))
    .await;
    let n: i64 = as_role
        .query_one(
            &format!("SELECT count(*) FROM {}", carve::sql::ident(books)),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 101);
    as_role
        .query_one(
            &format!("SELECT max(id) FROM {}", carve::sql::ident(&long_table)),
            &[],
        )
        .await
        .unwrap();
    assert!(as_role
        .query_one(
            &format!("SELECT max(book) FROM {}", carve::sql::ident(&long_table)),
            &[],
        )
        .await
        .is_err());

    assert_success(&run(&m, &["undo", "move", "--domain", &domain]));
    assert_eq!(schema_dump(&source, "hostile"), before);
    assert_no_move_left(&source_client, &target_client, &domain).await;
}

/// Runs `statements` in turn, each its own transaction, from `workers` connections
/// until `stop`; returns how many were acknowledged.
async fn statement_load(
    conninfo: String,
    workers: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    statements: &'static [&'static str],
) -> u64 {
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (conninfo, stop) = (conninfo.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let c = client(&conninfo).await;
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let sql = statements[n as usize % statements.len()];
                c.batch_execute(sql)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total
}

/// Moves `domain` with carve in a blocking task (so a load can run beside it).
async fn move_in_background(m: &Monolith, domain: &str, target: &str) -> std::process::Output {
    let (plan, conninfo, target, domain) = (
        m.plan.clone(),
        m.conninfo.clone(),
        target.to_string(),
        domain.to_string(),
    );
    tokio::task::spawn_blocking(move || {
        carve()
            .args([
                "--plan",
                plan.to_str().unwrap(),
                "--yes",
                "move",
                "--domain",
            ])
            .arg(&domain)
            .args(["--target", &target, "--accept-unlimited-slot-wal"])
            .env("CARVE_SOURCE", conninfo)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// Every table of `schema` has the same rows on both servers; returns how many
/// tables.
async fn assert_schema_equal(
    source: &tokio_postgres::Client,
    target: &tokio_postgres::Client,
    schema: &str,
) -> usize {
    let tables: Vec<String> = source
        .query(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE schemaname = $1 ORDER BY 1",
            &[&schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for table in &tables {
        assert_same_rows(source, target, table).await;
    }
    tables.len()
}

#[tokio::test]
async fn a_benchbase_domain_moves_under_a_write_load() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let source = server();
    let dir = tempfile::tempdir().unwrap();
    let data = benchbase();
    let sql = std::fs::read_to_string(data.join("schema.sql")).unwrap();
    let m = monolith(&source, dir.path(), "bench", &sql, data.join("workload")).await;
    assign_letting_crossings_go(&m);
    let domain = domain_of(&m, "public.user_profiles");
    client(&m.conninfo)
        .await
        .batch_execute(
            "INSERT INTO user_profiles (uid, name, followers) SELECT g, 'user ' || g, 0 FROM generate_series(1, 1000) g;
             INSERT INTO tweets SELECT g, g % 1000 + 1, 'tweet ' || g, now() FROM generate_series(1, 20000) g;",
        )
        .await
        .unwrap();
    let (_target, target_conninfo) = target_server("bench").await;

    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(statement_load(
        m.conninfo.clone(),
        4,
        stop.clone(),
        &[
            "INSERT INTO added_tweets (uid, text, createdate) VALUES ((random() * 999)::int + 1, 'new', now())",
            "INSERT INTO followers VALUES ((random() * 999)::int + 1, (random() * 999)::int + 1) ON CONFLICT (f1, f2) DO NOTHING",
            "UPDATE user_profiles SET followers = followers + 1 WHERE uid = (random() * 999)::int + 1",
            "DELETE FROM added_tweets WHERE id = (SELECT min(id) FROM added_tweets)",
        ],
    ));
    let started = std::time::Instant::now();
    let out = move_in_background(&m, &domain, &target_conninfo).await;
    let took = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    let transactions = load.await.unwrap();
    assert_success(&out);
    assert!(
        transactions as f64 / took >= 100.0,
        "{transactions} in {took:.1}s"
    );

    let source_client = client(&m.conninfo).await;
    let target_client = client(&target_conninfo).await;
    caught_up(&source_client).await;
    let tables = assert_schema_equal(&source_client, &target_client, &domain).await;
    assert!(tables >= 5, "{tables} tables in {domain}");
}

/// The shop after assign, every domain of it movable: cross-domain objects go at the
/// move, and the carriers' webhook table (no key) is published with every column as
/// its identity, accepted by a decision.
async fn shop_every_domain_movable(source: &TempServer, dir: &std::path::Path) -> Monolith {
    let example = example("shop");
    let workload = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/shop/workload");
    let m = monolith(
        source,
        dir,
        "shop",
        &format!(
            "{}\n{}\nALTER TABLE tracking_events REPLICA IDENTITY FULL;",
            example.schema, example.seed
        ),
        workload,
    )
    .await;
    assert_success(&run(&m, &["assign"]));
    let tracking = domain_of(&m, "public.tracking_events");
    let mut plan = carve::plan::Plan::load(&m.plan).unwrap();
    plan.let_kept_crossings_go("objects kept across domains go at the move");
    plan.decisions.push(carve::plan::Decision {
        subject: format!(
            "replica identity {}.tracking_events",
            carve::sql::display_ident(&tracking)
        ),
        choice: "accept-full".into(),
        reason: "webhook rows are only inserted".into(),
        rows: None,
    });
    plan.save(&m.plan).unwrap();
    m
}

#[tokio::test]
async fn every_shop_domain_moves_to_one_second_server() {
    use carve::pgtemp::ServerOptions;
    let source = TempServer::start_with(
        &ServerOptions::default()
            .setting("max_replication_slots", "24")
            .setting("max_wal_senders", "24"),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let m = shop_every_domain_movable(&source, dir.path()).await;
    let plan = carve::plan::Plan::load(&m.plan).unwrap();
    let domains: Vec<String> = plan.domains.iter().map(|d| d.name.clone()).collect();
    assert!(domains.len() >= 4, "{domains:?}");

    let target = TempServer::start_with(
        &ServerOptions::default()
            .setting("max_logical_replication_workers", "24")
            .setting("max_worker_processes", "32"),
    )
    .unwrap();
    create_db(&target, "shop", "SELECT 1").await;
    let target_conninfo = target.conninfo("shop");
    for domain in &domains {
        let out = move_in_background(&m, domain, &target_conninfo).await;
        assert_success(&out);
    }
    let source_client = client(&m.conninfo).await;
    let target_client = client(&target_conninfo).await;
    caught_up(&source_client).await;
    let mut tables = 0;
    for domain in &domains {
        tables += assert_schema_equal(&source_client, &target_client, domain).await;
    }
    assert!(tables >= 30, "{tables} tables moved");
    let out = run(&m, &["--format", "json", "status"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let moves: Vec<&serde_json::Value> = json["phases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "move")
        .collect();
    assert_eq!(moves.len(), domains.len());
    for p in moves {
        assert_eq!(p["state"], "applied", "{p}");
        let tables = p["replication"]["subscription"]["tables"]
            .as_array()
            .unwrap();
        assert!(tables.iter().all(|t| t["state"] == "ready"), "{p}");
    }
}

#[tokio::test]
async fn a_dry_run_prints_the_move_as_a_script_and_changes_nothing() {
    let source = server();
    let dir = tempfile::tempdir().unwrap();
    let m = example_monolith(&source, dir.path(), "library", "library").await;
    assign_letting_crossings_go(&m);
    let domain = domain_of(&m, "public.reading_list");
    let (target, target_conninfo) = target_server("library").await;
    let before = Untouched::of(&m, &source, &target, "library").await;
    let out = move_to(&m, &domain, &target_conninfo, &["--dry-run"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let script = stdout(&out);
    for needle in [
        "CREATE SCHEMA",
        "CREATE PUBLICATION",
        "not run by this script",
        "\\connect",
        "CREATE INDEX",
    ] {
        assert!(script.contains(needle), "{needle} not in\n{script}");
    }
    assert!(!script.contains("password="), "{script}");
    before.assert_same(&m, &source, &target, "library").await;
}

/// A connection to `db` on `server` as the service role whose name contains
/// `needle`, with the password restrict gave it (from its password file).
async fn service_client(
    server: &TempServer,
    db: &str,
    passwords: &std::path::Path,
    needle: &str,
) -> tokio_postgres::Client {
    let text = std::fs::read_to_string(passwords).unwrap();
    let (role, password) = text
        .lines()
        .map(|l| {
            let fields: Vec<&str> = l.split(':').collect();
            (fields[3].to_string(), fields[4].to_string())
        })
        .find(|(role, _)| role.to_lowercase().contains(needle))
        .unwrap_or_else(|| panic!("no {needle} role in {text}"));
    client(&format!(
        "host=127.0.0.1 port={} dbname={db} user={} password={}",
        server.port(),
        carve::conn::quote_value(&role),
        carve::conn::quote_value(&password)
    ))
    .await
}

#[tokio::test]
async fn a_replicated_read_is_copied_to_the_readers_server_and_kept_current() {
    let source = server();
    let dir = tempfile::tempdir().unwrap();
    let m = shop_every_domain_movable(&source, dir.path()).await;
    let shipping = domain_of(&m, "public.shipments");
    let orders = domain_of(&m, "public.orders");

    // Every crossing decided: reads replicated (shipping's reads of the orders with
    // a row filter on their keys: even orders only), writes delegated to the owner.
    let out = run(&m, &["--format", "json", "restrict", "--dry-run"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut plan = carve::plan::Plan::load(&m.plan).unwrap();
    for c in json["crossings"].as_array().unwrap() {
        let subject = c["subject"].as_str().unwrap().to_string();
        let write = c["write"].as_bool().unwrap();
        let rows = match subject.as_str() {
            "read public.orders by shipping" => Some("id % 2 = 0".to_string()),
            "read public.order_items by shipping" => Some("order_id % 2 = 0".to_string()),
            _ => None,
        };
        plan.decisions.push(carve::plan::Decision {
            choice: if write {
                format!("delegate:{}-service", c["table_domain"].as_str().unwrap())
            } else {
                "replicate".into()
            },
            subject,
            reason: "the owners keep their data".into(),
            rows,
        });
    }
    plan.save(&m.plan).unwrap();
    let passwords = dir.path().join("service-passwords");
    assert_success(&run(
        &m,
        &["restrict", "--password-file", passwords.to_str().unwrap()],
    ));

    let (target, target_conninfo) = target_server("shop").await;
    let out = move_to(&m, &shipping, &target_conninfo, &["--format", "json"]);
    assert_success(&out);
    let said = stderr(&out);
    assert!(
        said.contains(&format!("{orders}.orders is copied to the {shipping} server for shipping: columns id, shipping_address_id, status, rows where (id % 2 = 0)")),
        "{said}"
    );
    // Every statement of shipping's proves on its new server, its reads of the
    // orders included.
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["failing_statements"], 0, "{json}");

    let source_client = client(&m.conninfo).await;
    let target_client = client(&target_conninfo).await;
    let q = |table: &str| carve::sql::qualified(&orders, table);
    let even: i64 = source_client
        .query_one(
            &format!("SELECT count(*) FROM {} WHERE id % 2 = 0", q("orders")),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let copied: i64 = target_client
        .query_one(&format!("SELECT count(*) FROM {}", q("orders")), &[])
        .await
        .unwrap()
        .get(0);
    assert!(even > 0);
    assert_eq!(copied, even, "only the even orders are copied");
    let columns: Vec<String> = target_client
        .query(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = $1::text::regclass AND attnum > 0 ORDER BY attnum",
            &[&q("order_items")],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(columns, ["order_id", "line_no", "variant_id", "quantity"]);

    // As shipping's role on its server: its read runs; what it does not read is not
    // there; the copy is read-only to it.
    let as_shipping = service_client(&target, "shop", &passwords, "shipping").await;
    let paid: i64 = source_client
        .query_one(
            &format!(
                "SELECT o.id FROM {} o JOIN {} i ON i.order_id = o.id WHERE o.id % 2 = 0 ORDER BY o.id LIMIT 1",
                q("orders"),
                q("order_items")
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let read = "SELECT o.id, o.shipping_address_id, i.line_no, i.variant_id, i.quantity FROM orders o JOIN order_items i ON i.order_id = o.id WHERE o.id = $1 AND o.status = 'paid'";
    let before = as_shipping.query(read, &[&paid]).await.unwrap().len();
    let err = as_shipping
        .query("SELECT total FROM orders", &[])
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("does not exist"), "{err:?}");
    let err = as_shipping
        .execute(&format!("DELETE FROM {}", q("orders")), &[])
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("permission denied"), "{err:?}");

    // The owner's change on the source reaches the copy.
    let started = std::time::Instant::now();
    source_client
        .execute(
            &format!(
                "UPDATE {} SET status = CASE WHEN status = 'paid' THEN 'shipped' ELSE 'paid' END WHERE id = $1",
                q("orders")
            ),
            &[&paid],
        )
        .await
        .unwrap();
    loop {
        let now = as_shipping.query(read, &[&paid]).await.unwrap().len();
        if now != before {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the change did not reach the copy"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    eprintln!(
        "a change on the source reached the copy in {} ms",
        started.elapsed().as_millis()
    );

    // status shows the copies' stream.
    let out = run(&m, &["status", "--domain", &shipping]);
    let text = stdout(&out);
    assert!(
        text.contains("copies of other domains' columns its services read"),
        "{text}"
    );
    assert!(text.contains("_reads on the source: in use"), "{text}");

    // The move's undo takes the copies with it, on both servers.
    assert_success(&run(&m, &["undo", "move", "--domain", &shipping, "--yes"]));
    let left: i64 = target_client
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
            &[&orders],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "the copies' schema is gone");
    let left: i64 = source_client
        .query_one(
            "SELECT (SELECT count(*) FROM pg_publication WHERE pubname LIKE '%_reads') + (SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE '%_reads')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "no publication or slot of the copies is left");
    assert!(
        target_client
            .query_one("SELECT 1 FROM pg_namespace WHERE nspname = 'public'", &[])
            .await
            .is_ok(),
        "public stays"
    );
}
