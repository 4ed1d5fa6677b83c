//! `carve plan` on real servers: the whole remaining journey listed before anything
//! runs equals, step for step, what the phases then execute (their journals in the
//! plan), and listing it changes neither the plan file nor any database.

mod support;

use carve::pgtemp::{ServerOptions, TempBouncer, TempServer};
use carve::plan::{ConsoleRef, PhaseId, Plan};
use serde_json::Value;
use support::*;

/// `carve plan --format json`: the exit code and the document.
fn plan_json(m: &Monolith, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["--format", "json", "plan"];
    args.extend(extra);
    let out = run(m, &args);
    let text = stdout(&out);
    let doc = serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .filter_map(Result::ok)
        .find(|v| v.get("phases").is_some())
        .unwrap_or_else(|| {
            panic!(
                "no plan document (exit {}): {text}\n{}",
                code(&out),
                stderr(&out)
            )
        });
    (code(&out), doc)
}

/// The domains without a server are named once, in one note.
fn assert_one_staying_note(doc: &Value) {
    let staying = doc["notes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n.as_str().unwrap().contains("stay in the monolith"))
        .count();
    assert_eq!(staying, 1, "{doc:#}");
}

/// The steps a section of the document lists for `phase` (of `domain`).
fn listed(doc: &Value, phase: &str, domain: Option<&str>) -> Vec<Value> {
    doc["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["phase"] == phase && s["domain"].as_str() == domain)
        .unwrap_or_else(|| panic!("the plan lists no {phase} {domain:?}: {doc:#}"))["steps"]
        .as_array()
        .unwrap()
        .clone()
}

/// Whether `doc` has a section for `phase` (of `domain`).
fn lists(doc: &Value, phase: &str, domain: Option<&str>) -> bool {
    doc["phases"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["phase"] == phase && s["domain"].as_str() == domain)
}

/// Runs what `doc` lists of the journey of `domain` (assign, the plan's splits,
/// restrict, move, verify, cut-over) and checks that each phase's journal holds
/// exactly the steps `doc` listed.
fn assert_ran_as_listed(m: &Monolith, doc: &Value, domain: &str, cutover_extra: &[&str]) {
    let mut cutover = vec!["cutover", "--domain", domain];
    cutover.extend(cutover_extra);
    let journey = [
        vec!["assign"],
        vec!["split"],
        vec!["restrict"],
        vec!["move", "--domain", domain],
        vec!["verify", "--domain", domain],
        cutover,
    ];
    let on = |args: &[&str]| (args.len() > 1).then_some(domain);
    let journey: Vec<Vec<&str>> = journey
        .into_iter()
        .filter(|a| lists(doc, a[0], on(a)))
        .collect();
    assert!(journey.iter().any(|a| a[0] == "cutover"), "{doc:#}");
    for args in &journey {
        let out = run(m, args);
        assert_eq!(
            code(&out),
            0,
            "carve {args:?}: {}\n{}",
            stderr(&out),
            stdout(&out)
        );
    }
    let plan = Plan::load(&m.plan).unwrap();
    let phases = [
        ("assign", None),
        ("split", None),
        ("restrict", None),
        ("move", Some(domain)),
        ("cutover", Some(domain)),
    ];
    for (phase, on) in phases.into_iter().filter(|p| lists(doc, p.0, p.1)) {
        let ran = &plan.phase(PhaseId::new(phase, on)).unwrap().steps;
        let ran: Vec<Value> = ran
            .iter()
            .map(|s| serde_json::to_value(s).unwrap())
            .collect();
        let listed = listed(doc, phase, on);
        let ids = |steps: &[Value]| -> Vec<String> {
            steps
                .iter()
                .map(|s| s["id"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(
            ids(&listed),
            ids(&ran),
            "{phase}: the steps listed are not the steps run"
        );
        for (l, r) in listed.iter().zip(&ran) {
            assert_eq!(l, r, "{phase}: step {} differs", r["id"]);
        }
    }
}

/// Records in the plan where `domain` goes and how its clients switch: its server,
/// PgBouncer's console, and `service` connecting through `entry`.
fn record_destination(
    m: &Monolith,
    domain: &str,
    server: String,
    bouncer: &TempBouncer,
    service: &str,
    entry: &str,
) {
    let mut plan = Plan::load(&m.plan).unwrap();
    let d = plan.domains.iter_mut().find(|d| d.name == domain).unwrap();
    d.server = Some(server);
    plan.consoles.retain(|c| c.name != "pgbouncer");
    plan.consoles.push(ConsoleRef {
        name: "pgbouncer".into(),
        conninfo: bouncer.console_conninfo(),
        config: Some(bouncer.config_path()),
    });
    let s = plan
        .services
        .iter_mut()
        .find(|s| s.name == service)
        .unwrap();
    s.domain = Some(domain.to_string());
    s.pgbouncer_entry = Some(entry.to_string());
    plan.save(&m.plan).unwrap();
}

/// The library, discovered, with a second server for its reading-list domain and a
/// PgBouncer entry its services connect through, all recorded in the plan.
async fn library_journey() -> (
    TempServer,
    TempServer,
    TempBouncer,
    tempfile::TempDir,
    Monolith,
    String,
) {
    library_journey_of("public.reading_list", &["ReadingList"]).await
}

/// The library, discovered, with a second server for the domain of `table` and a
/// PgBouncer entry (`app`) that `services` connect through, all recorded in the
/// plan.
async fn library_journey_of(
    table: &str,
    services: &[&str],
) -> (
    TempServer,
    TempServer,
    TempBouncer,
    tempfile::TempDir,
    Monolith,
    String,
) {
    let options = ServerOptions::default().setting("max_slot_wal_keep_size", "1GB");
    let source = TempServer::start_with(&options).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let m = example_monolith(&source, dir.path(), "library", "library").await;
    let target = TempServer::start_with(&options).unwrap();
    create_db(&target, "library", "SELECT 1").await;
    let bouncer = TempBouncer::start(&source, &[("app", "library")]).unwrap();
    let domain = domain_of(&m, table);
    for service in services {
        record_destination(
            &m,
            &domain,
            target.conninfo("library"),
            &bouncer,
            service,
            "app",
        );
    }
    (source, target, bouncer, dir, m, domain)
}

#[tokio::test]
async fn the_plan_lists_every_step_the_phases_then_run_and_changes_nothing() {
    let (source, target, _bouncer, _dir, m, domain) = library_journey().await;

    // Fresh: the writes of the common audit table have no decision yet.
    let plan_before = std::fs::read(&m.plan).unwrap();
    let (dumps_before, target_before) = (
        schema_dump(&source, "library"),
        schema_dump(&target, "library"),
    );
    let (exit, doc) = plan_json(&m, &[]);
    assert_eq!(exit, 6, "decisions are missing: {doc:#}");
    let missing: Vec<&str> = doc["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["subject"].as_str().unwrap())
        .collect();
    assert_eq!(
        missing,
        [
            "foreign key public.reading_list.reading_list_book_id_fkey",
            // The split's view joins both parts: a read through it reaches both.
            "read book_catalog.book_catalog_book_inventory by ReadingList",
            "read public.book_catalog by ReadingList",
            "write public.audit by BookCatalog",
            "write public.audit by BookInventory",
            "write public.audit by ReadingList"
        ],
        "{doc:#}"
    );
    // discover's split of book_catalog is forecast between assign and restrict.
    assert!(!listed(&doc, "split", None).is_empty(), "{doc:#}");
    assert_eq!(
        std::fs::read(&m.plan).unwrap(),
        plan_before,
        "carve plan wrote the plan"
    );
    assert_eq!(
        schema_dump(&source, "library"),
        dumps_before,
        "carve plan changed the source"
    );
    assert_eq!(
        schema_dump(&target, "library"),
        target_before,
        "carve plan changed the target"
    );

    // The team decides: the audit service records those writes, the reference to the
    // catalog goes at the move, and the reading list reads a copy of the catalog
    // (both parts of the split table, and the view that joins them) on its server.
    decide_library_crossings(&m);
    let plan_before = std::fs::read(&m.plan).unwrap();
    let (exit, doc) = plan_json(&m, &[]);
    assert_eq!(exit, 3, "work pending, nothing missing: {doc:#}");
    assert_eq!(
        std::fs::read(&m.plan).unwrap(),
        plan_before,
        "carve plan wrote the plan"
    );
    assert_eq!(schema_dump(&source, "library"), dumps_before);
    let sections: Vec<(String, Option<String>)> = doc["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["phase"].as_str().unwrap().to_string(),
                s["domain"].as_str().map(String::from),
            )
        })
        .collect();
    assert_one_staying_note(&doc);
    let moves: Vec<String> = listed(&doc, "move", Some(&domain))
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        moves.contains(&"create view public.book_catalog over copies".to_string()),
        "the reading list's server gets the split's view over both copies: {moves:#?}"
    );
    let d = Some(domain.clone());
    assert_eq!(
        sections,
        [
            ("assign".to_string(), None),
            ("split".into(), None),
            ("restrict".into(), None),
            ("move".into(), d.clone()),
            ("verify".into(), d.clone()),
            ("cutover".into(), d.clone()),
        ],
        "{doc:#}"
    );
    // The psql form is one script of the same steps.
    let script = stdout(&run(&m, &["--format", "psql", "plan"]));
    assert!(
        script.contains("-- carve assign:")
            && script.contains(&format!("-- carve cutover --domain {domain}:")),
        "{script}"
    );

    // Now run the journey and compare what ran with what was listed.
    assert_ran_as_listed(&m, &doc, &domain, &[]);
    // A move run again after the cut-over has nothing to do: its stream was turned
    // around, and making it again would copy the source's rows into the live side.
    let again = run(&m, &["move", "--domain", &domain]);
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert!(
        stdout(&again).contains("nothing for move to do"),
        "{}",
        stdout(&again)
    );
    // Nothing left to plan through the cut-over of this domain.
    let (exit, doc) = plan_json(&m, &[]);
    assert!(
        doc["phases"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["domain"].as_str() != Some(&domain)),
        "exit {exit}: {doc:#}"
    );
}

#[tokio::test]
async fn on_the_shop_the_forecast_of_assign_and_restrict_holds_for_move_and_cutover() {
    let (source, target, bouncer) = shop_with_pgbouncer().await;
    let dir = tempfile::tempdir().unwrap();
    let workload = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/shop/workload");
    let m = Monolith {
        db: "shop".into(),
        conninfo: source.conninfo("shop"),
        plan: dir.path().join("shop.plan.toml"),
        workload: workload.clone(),
    };
    assert_success(&run(
        &m,
        &["discover", "--workload", workload.to_str().unwrap()],
    ));
    // The orders split (payments' columns) would keep orders on the source: move
    // refuses a split table. This journey is about move and cut-over.
    let mut unsplit = Plan::load(&m.plan).unwrap();
    unsplit.splits.clear();
    unsplit.save(&m.plan).unwrap();
    let domain = domain_of(&m, "public.orders");
    record_destination(
        &m,
        &domain,
        target.conninfo("shop"),
        &bouncer,
        "orders",
        "orders",
    );

    // Every decision a team makes: assign's crossings go at the move, reads of other
    // domains go through their API, writes are delegated to the owner.
    let (exit, doc) = plan_json(&m, &[]);
    assert_eq!(exit, 6, "{doc:#}");
    let mut plan = Plan::load(&m.plan).unwrap();
    for item in doc["missing"].as_array().unwrap() {
        let subject = item["subject"].as_str().unwrap();
        let choices: Vec<&str> = item["choices"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let choice = if choices.contains(&"drop-at-move") {
            "drop-at-move".to_string()
        } else if subject.starts_with("read ") {
            "api".to_string()
        } else if subject.starts_with("write ") {
            "delegate:owner-service".to_string()
        } else {
            item["default"]
                .as_str()
                .unwrap_or_else(|| panic!("{item}"))
                .to_string()
        };
        plan.decisions.push(carve::plan::Decision {
            subject: subject.into(),
            choice,
            reason: "decided for the test".into(),
            rows: None,
        });
    }
    plan.save(&m.plan).unwrap();
    let (exit, doc) = plan_json(&m, &[]);
    assert_eq!(exit, 3, "{doc:#}");
    assert_one_staying_note(&doc);
    // The orders service calls order_total(), a function of the monolith that does
    // not move (the gate names it; accepted here).
    assert_ran_as_listed(&m, &doc, &domain, &["--accept-failing-statements"]);
}

/// The source texts' central example carried to the end: the catalog split between
/// its two writers, then its domain (both parts) moved to its own server. The view
/// over both parts goes with it, under the old name, so both writers' unchanged
/// statements write through it there; after retire, the reading list still reads
/// the titles on the source.
#[tokio::test]
async fn the_split_catalog_moves_with_its_view_and_its_writers_keep_the_old_name() {
    let (source, target, _bouncer, _dir, m, domain) =
        library_journey_of("public.book_catalog", &["BookCatalog", "BookInventory"]).await;
    assert_eq!(domain, "book_catalog");
    decide_library_crossings(&m);
    // Before the split, its move cannot be listed step for step: it copies what
    // the split makes, as the source will have it.
    let (exit, doc) = plan_json(&m, &[]);
    assert_eq!(exit, 3, "work pending, nothing missing: {doc:#}");
    assert!(!lists(&doc, "move", Some(&domain)), "{doc:#}");
    assert!(
        doc["notes"].as_array().unwrap().iter().any(|n| n
            .as_str()
            .unwrap()
            .contains("is listed once `carve split` has run")),
        "{doc:#}"
    );
    for phase in ["assign", "split"] {
        assert_success(&run(&m, &[phase]));
    }
    let (exit, doc) = plan_json(&m, &[]);
    assert_eq!(exit, 3, "work pending, nothing missing: {doc:#}");
    let moves: Vec<String> = listed(&doc, "move", Some(&domain))
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    for step in [
        "create table book_catalog.book_catalog_book_inventory",
        "create view public.book_catalog",
        "create trigger public.book_catalog.carve_split_write",
    ] {
        assert!(
            moves.iter().any(|id| id.starts_with(step)),
            "{step}: {moves:#?}"
        );
    }
    assert_ran_as_listed(&m, &doc, &domain, &[]);

    // On the new server, as each writer logs in there (its search_path set by the
    // move): the workload's statements through the old name.
    let inventory = client(&as_role(&target, "library", "BookInventory")).await;
    let row = inventory
        .query_one(
            "UPDATE book_catalog SET copies_total = 9, copies_available = 7, shelf_location = 'Z9', last_stocktake = now() WHERE id = 1 RETURNING copies_available",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 7);
    let catalog = client(&as_role(&target, "library", "BookCatalog")).await;
    let id = catalogue(&catalog, "978-0", "Moved", "written on the new server").await;
    retitle(&catalog, id, "Moved, again").await;
    let admin = client(&target.conninfo("library")).await;
    let both = |sql: &'static str| {
        let admin = &admin;
        async move { admin.query_one(sql, &[]).await.unwrap() }
    };
    let r = both("SELECT t.title, p.copies_available, p.shelf_location FROM book_catalog.book_catalog t JOIN book_catalog.book_catalog_book_inventory p USING (id) WHERE t.title = 'Moved, again'").await;
    assert_eq!(
        r.get::<_, Option<i32>>(1),
        Some(0),
        "the part's row, with its defaults"
    );
    let r = both("SELECT copies_available, shelf_location FROM book_catalog.book_catalog_book_inventory WHERE id = 1").await;
    assert_eq!(
        (r.get::<_, i32>(0), r.get::<_, Option<String>>(1)),
        (7, Some("Z9".to_string()))
    );
    // Each writer may write the same columns through the old name there as on the
    // source.
    let source_admin = client(&source.conninfo("library")).await;
    let on_source = catalog_privileges(&source_admin).await;
    assert!(on_source.len() > 20, "{on_source:#?}");
    assert_eq!(catalog_privileges(&admin).await, on_source);
    catalog
        .execute("DELETE FROM book_catalog WHERE id = $1", &[&id])
        .await
        .unwrap();
    let left = both("SELECT count(*) FROM book_catalog.book_catalog_book_inventory p WHERE NOT EXISTS (SELECT 1 FROM book_catalog.book_catalog t WHERE t.id = p.id)").await;
    assert_eq!(left.get::<_, i64>(0), 0, "the delete took both parts' rows");

    // Rollback: the writers go back to the source, where what they wrote on the
    // new server is, through the old name; then over again.
    let out = run(&m, &["rollback", "--domain", &domain]);
    assert_eq!(code(&out), 0, "{}\n{}", stderr(&out), stdout(&out));
    let on_source = client(&as_role(&source, "library", "BookInventory")).await;
    let r = on_source
        .query_one(
            "SELECT copies_available, shelf_location FROM book_catalog WHERE id = 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (r.get::<_, i32>(0), r.get::<_, Option<String>>(1)),
        (7, Some("Z9".to_string()))
    );
    on_source
        .execute(
            "UPDATE book_catalog SET copies_available = 6 WHERE id = 1",
            &[],
        )
        .await
        .unwrap();
    let out = run(&m, &["cutover", "--domain", &domain]);
    assert_eq!(code(&out), 0, "{}\n{}", stderr(&out), stdout(&out));
    let r =
        both("SELECT copies_available FROM book_catalog.book_catalog_book_inventory WHERE id = 1")
            .await;
    assert_eq!(
        r.get::<_, i32>(0),
        6,
        "the source's write is on the new server"
    );

    // Retire: the reading list stays on the source and reads the titles there, from
    // a read-only copy joined as before.
    let out = run(&m, &["retire", "--domain", &domain, "--after", "0s"]);
    assert_eq!(code(&out), 0, "{}\n{}", stderr(&out), stdout(&out));
    let reader = client(&as_role(&source, "library", "ReadingList")).await;
    let title: String = reader
        .query_one("SELECT title FROM book_catalog WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(title, "Book 1");
    let out = run(&m, &["retire", "--domain", &domain, "--drop"]);
    assert_eq!(code(&out), 0, "{}\n{}", stderr(&out), stdout(&out));
    let after_drop: i64 = reader
        .query_one("SELECT count(*) FROM book_catalog", &[])
        .await
        .unwrap()
        .get(0);
    assert!(after_drop > 0);
}

/// What BookCatalog and BookInventory may do with each column of the library's
/// `public.book_catalog`, as `role column privilege allowed` lines.
async fn catalog_privileges(c: &tokio_postgres::Client) -> Vec<String> {
    texts(
        c,
        "SELECT r || ' ' || a.attname || ' ' || p || ' ' || has_column_privilege(r, 'public.book_catalog', a.attname, p) FROM unnest(ARRAY['BookCatalog', 'BookInventory']) r, unnest(ARRAY['INSERT', 'UPDATE', 'SELECT']) p, pg_attribute a WHERE a.attrelid = 'public.book_catalog'::regclass AND a.attnum > 0 ORDER BY 1",
        &[],
    )
    .await
}

/// BookCatalog's INSERT of a book through the old name: its id.
async fn catalogue(
    catalog: &tokio_postgres::Client,
    isbn: &str,
    title: &str,
    description: &str,
) -> i64 {
    catalog
        .query_one(
            "INSERT INTO book_catalog (isbn, title, author, published_year, genre, description) VALUES ($1, $2, 'Someone', 2026, 'essay', $3) RETURNING id",
            &[&isbn, &title, &description],
        )
        .await
        .unwrap()
        .get(0)
}

/// BookCatalog's new title for a book, through the old name.
async fn retitle(catalog: &tokio_postgres::Client, id: i64, title: &str) {
    let n = catalog
        .execute(
            "UPDATE book_catalog SET title = $2 WHERE id = $1",
            &[&id, &title],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
}

/// BookInventory's stocktake of a book through the old name: `copies` on the shelf.
async fn stock_book(inventory: &tokio_postgres::Client, id: i64, copies: i32, shelf: &str) {
    let row = inventory
        .query_one(
            "UPDATE book_catalog SET copies_total = $2, copies_available = $2, shelf_location = $3, last_stocktake = now() WHERE id = $1 RETURNING copies_available",
            &[&id, &copies, &shelf],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), copies);
}

/// Polls `sql` (one bigint) on `client` until it returns `want`, for at most 60 s.
async fn eventually(client: &tokio_postgres::Client, sql: &str, id: i64, want: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let got: i64 = client.query_one(sql, &[&id]).await.unwrap().get(0);
        if got == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{sql} ({id}): {got}, not {want}, after 60 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The library with its catalog split and the inventory part in a domain of its own,
/// BookInventory's (`book_inventory`), assigned, split and restricted: each
/// crossing decided so that it holds once each side has moved (BookInventory's
/// reads of the catalog replicated, what only holds on one server granted).
async fn library_split_across() -> (
    TempServer,
    TempServer,
    TempBouncer,
    tempfile::TempDir,
    Monolith,
    String,
) {
    let (source, target, bouncer, dir, m, domain) =
        library_journey_of("public.book_catalog", &["BookCatalog"]).await;
    split_library_across(&m, &domain);
    (source, target, bouncer, dir, m, domain)
}

/// `carve --format json move --domain D`, successful with no statement failing
/// on the new server.
fn move_proven(m: &Monolith, domain: &str) {
    let out = run(m, &["--format", "json", "move", "--domain", domain]);
    assert_eq!(code(&out), 0, "{}\n{}", stderr(&out), stdout(&out));
    let moved: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(moved["failing_statements"], 0, "{moved:#}");
}

/// The catalog split with its inventory part in a domain of its own, its writer's:
/// the catalog's domain moves and is cut over, the part stays on the source with
/// BookInventory, and is kept whole as the catalog's rows come back from the new
/// server. Retire waits for the part; rollback and undo move leave no trace.
#[tokio::test]
async fn a_split_catalog_moves_leaving_its_part_with_its_writer_on_the_source() {
    let (source, target, _bouncer, _dir, m, domain) = library_split_across().await;
    let before_move = schema_dump(&source, "library");
    // `carve plan` lists the move, the trigger on the source included, and the
    // cut-over exactly as they then run.
    let (exit, doc) = plan_json(&m, &[]);
    assert_eq!(exit, 3, "work pending, nothing missing: {doc:#}");
    assert!(
        listed(&doc, "move", Some(&domain)).iter().any(|s| s["id"]
            .as_str()
            .unwrap()
            .starts_with("keep book_inventory.book_catalog_book_inventory whole")),
        "{doc:#}"
    );
    assert_ran_as_listed(&m, &doc, &domain, &[]);
    let admin = client(&target.conninfo("library")).await;
    let on_target: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'carve_split_row' OR tgrelid = 'public.book_catalog'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(on_target, 0, "no trigger writes the part on the new server");

    // BookCatalog writes on the new server through the old name; the row comes
    // back to the source, where the part gets its row.
    let catalog = client(&as_role(&target, "library", "BookCatalog")).await;
    let id = catalogue(&catalog, "978-1", "Left", "its copies stay behind").await;
    retitle(&catalog, id, "Left, again").await;
    let source_admin = client(&source.conninfo("library")).await;
    let part_rows = "SELECT count(*) FROM book_inventory.book_catalog_book_inventory WHERE id = $1";
    eventually(&source_admin, part_rows, id, 1).await;
    // BookInventory, on the source, stocks the new book through the old name.
    let stock = client(&as_role(&source, "library", "BookInventory")).await;
    stock_book(&stock, id, 3, "N1").await;
    eventually(
        &source_admin,
        "SELECT count(*) FROM public.book_catalog WHERE id = $1 AND title = 'Left, again'",
        id,
        1,
    )
    .await;
    // Its key changed on the new server, its part's row follows on the source,
    // stock and all (the cascading key's work, which a replicated change skips).
    let old_id = id;
    let id: i64 = admin
        .query_one(
            "UPDATE book_catalog.book_catalog SET id = id + 1000000 WHERE id = $1 RETURNING id",
            &[&old_id],
        )
        .await
        .unwrap()
        .get(0);
    eventually(&source_admin, part_rows, old_id, 0).await;
    eventually(
        &source_admin,
        "SELECT count(*) FROM book_inventory.book_catalog_book_inventory WHERE id = $1 AND shelf_location = 'N1'",
        id,
        1,
    )
    .await;
    // Deleted on the new server, the book leaves the part on the source too.
    catalog
        .execute("DELETE FROM book_catalog WHERE id = $1", &[&id])
        .await
        .unwrap();
    eventually(&source_admin, part_rows, id, 0).await;

    // Retire leaves the view read-only, and BookInventory writes through it here:
    // it waits for the inventory domain.
    let out = run(&m, &["retire", "--domain", &domain, "--after", "0s"]);
    assert_eq!(code(&out), 6, "{}\n{}", stderr(&out), stdout(&out));
    assert!(
        stderr(&out).contains("retire book_catalog once book_inventory is cut over"),
        "{}",
        stderr(&out)
    );

    // Back to the source, then the move undone: nothing of it is left there.
    let out = run(&m, &["rollback", "--domain", &domain]);
    assert_eq!(code(&out), 0, "{}\n{}", stderr(&out), stdout(&out));
    let catalog = client(&as_role(&source, "library", "BookCatalog")).await;
    let id = catalogue(&catalog, "978-2", "Back", "written on the source").await;
    eventually(&source_admin, part_rows, id, 1).await;
    let out = run(&m, &["undo", "move", "--domain", &domain]);
    assert_eq!(code(&out), 0, "{}\n{}", stderr(&out), stdout(&out));
    let follow: i64 = source_admin
        .query_one(
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'carve_move_follow'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(follow, 0);
    // As before the move, but for the keys a rollback makes again without a scan.
    assert_eq!(
        schema_dump(&source, "library").replace(" NOT VALID;", ";"),
        before_move
    );
}

/// A server of its own for the inventory domain, recorded in the plan.
async fn inventory_server(m: &Monolith) -> TempServer {
    let options = ServerOptions::default().setting("max_slot_wal_keep_size", "1GB");
    let server = TempServer::start_with(&options).unwrap();
    create_db(&server, "library", "SELECT 1").await;
    let mut plan = Plan::load(&m.plan).unwrap();
    let d = plan
        .domains
        .iter_mut()
        .find(|d| d.name == "book_inventory")
        .unwrap();
    d.server = Some(server.conninfo("library"));
    plan.save(&m.plan).unwrap();
    server
}

/// The options of a switch of the inventory domain by connection files, written
/// into `dir` for BookInventory.
fn inventory_file_switch(dir: &std::path::Path) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    [
        "--switch",
        "file",
        "--connection-dir",
        dir.to_str().unwrap(),
        "--service",
        "BookInventory",
    ]
    .map(String::from)
    .to_vec()
}

/// The inventory domain moved (nothing failing on its server), verified and cut
/// over with `switch`.
fn move_and_cut_over_inventory(m: &Monolith, switch: &[&str]) {
    move_proven(m, "book_inventory");
    let mut cutover = vec!["cutover", "--domain", "book_inventory"];
    cutover.extend(switch);
    for args in [vec!["verify", "--domain", "book_inventory"], cutover] {
        let out = run(m, &args);
        assert_eq!(
            code(&out),
            0,
            "{args:?}: {}\n{}",
            stderr(&out),
            stdout(&out)
        );
    }
}

/// Then the part follows its table: the inventory domain moves to a server of its
/// own once the catalog's is cut over. There BookInventory reads and writes the
/// old name over its part and the copy of the catalog's columns it reads, and the
/// part's rows are made as the catalog's rows arrive; the catalog's domain cannot
/// roll back while the part is written there, and each side goes back and is
/// undone, leaving the source as before.
#[tokio::test]
async fn a_split_parts_domain_follows_its_table_to_a_server_of_its_own() {
    let (source, target, _bouncer, dir, m, domain) = library_split_across().await;
    let inventory = "book_inventory";
    let before_move = schema_dump(&source, "library");
    move_proven(&m, &domain);
    // Before its table's domain is cut over, the part does not move.
    let parts_server = inventory_server(&m).await;
    let out = run(&m, &["move", "--domain", inventory]);
    assert_eq!(code(&out), 6, "{}\n{}", stderr(&out), stdout(&out));
    assert!(
        stderr(&out).contains("a part moves once its table's domain is moved and cut over"),
        "{}",
        stderr(&out)
    );
    for phase in ["verify", "cutover"] {
        let out = run(&m, &[phase, "--domain", &domain]);
        assert_eq!(code(&out), 0, "{phase}: {}\n{}", stderr(&out), stdout(&out));
    }
    // `carve plan` lists the part's move, its view and trigger on its server
    // included, and asks how its clients switch (no PgBouncer entry is known).
    let (exit, doc) = plan_json(&m, &[]);
    assert_eq!(exit, 6, "{doc:#}");
    assert_eq!(
        doc["missing"][0]["subject"], "cutover book_inventory: how its clients switch",
        "{doc:#}"
    );
    let planned: Vec<String> = listed(&doc, "move", Some(inventory))
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    for step in [
        "create view public.book_catalog over the copy of book_catalog.book_catalog",
        "create trigger book_catalog.book_catalog.carve_part_rows",
    ] {
        assert!(planned.iter().any(|id| id == step), "{step}: {planned:#?}");
    }
    let connections = dir.path().join("connections");
    let switch = inventory_file_switch(&connections);
    let switch: Vec<&str> = switch.iter().map(String::as_str).collect();
    move_and_cut_over_inventory(&m, &switch);
    let ran: Vec<String> = Plan::load(&m.plan)
        .unwrap()
        .phase(PhaseId::new("move", Some(inventory)))
        .unwrap()
        .steps
        .iter()
        .map(|s| s.id.clone())
        .collect();
    assert_eq!(ran, planned, "the move ran the steps the plan listed");

    // A book catalogued on the catalog's server gets its inventory row on the
    // part's server (and, from there, on the source).
    let catalog = client(&as_role(&target, "library", "BookCatalog")).await;
    let id = catalogue(&catalog, "978-3", "Far", "its copies are counted elsewhere").await;
    let parts_admin = client(&parts_server.conninfo("library")).await;
    let source_admin = client(&source.conninfo("library")).await;
    let part_rows = "SELECT count(*) FROM book_inventory.book_catalog_book_inventory WHERE id = $1";
    eventually(&parts_admin, part_rows, id, 1).await;
    eventually(&source_admin, part_rows, id, 1).await;
    // BookInventory stocks it on its own server, through the old name.
    let stock = client(&as_role(&parts_server, "library", "BookInventory")).await;
    stock_book(&stock, id, 4, "F2").await;
    let row = stock
        .query_one(
            "SELECT id, copies_total, copies_available, shelf_location FROM book_catalog WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<String>>(3).as_deref(), Some("F2"));
    // The catalog's rows and columns are written on the catalog's server only:
    // BookInventory may not, and even a superuser is refused by the view.
    let refused = stock
        .execute("DELETE FROM book_catalog WHERE id = $1", &[&id])
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    );
    for sql in [
        "DELETE FROM public.book_catalog WHERE id = $1",
        "UPDATE public.book_catalog SET id = -id WHERE id = $1",
    ] {
        let refused = parts_admin.execute(sql, &[&id]).await.unwrap_err();
        let message = refused.as_db_error().unwrap().message().to_string();
        assert!(
            message.contains("are written on the server of its domain, book_catalog"),
            "{message}"
        );
    }
    eventually(
        &source_admin,
        "SELECT count(*) FROM book_inventory.book_catalog_book_inventory WHERE id = $1 AND shelf_location = 'F2'",
        id,
        1,
    )
    .await;
    // Deleted on the catalog's server, the book leaves both copies of the part.
    catalog
        .execute("DELETE FROM book_catalog WHERE id = $1", &[&id])
        .await
        .unwrap();
    eventually(&parts_admin, part_rows, id, 0).await;
    eventually(&source_admin, part_rows, id, 0).await;

    // The catalog's domain cannot go back while its part is written elsewhere.
    let out = run(&m, &["rollback", "--domain", &domain]);
    assert_eq!(code(&out), 6, "{}\n{}", stderr(&out), stdout(&out));
    assert!(
        stderr(&out).contains("roll book_inventory back first"),
        "{}",
        stderr(&out)
    );

    // The part's domain goes back: its rows are made on the source again.
    let mut rollback = vec!["rollback", "--domain", inventory];
    rollback.extend(switch);
    let out = run(&m, &rollback);
    assert_eq!(code(&out), 0, "{}\n{}", stderr(&out), stdout(&out));
    let id = catalogue(&catalog, "978-4", "Near", "counted on the source again").await;
    eventually(&source_admin, part_rows, id, 1).await;
    eventually(&parts_admin, part_rows, id, 1).await;
    let on_source = client(&as_role(&source, "library", "BookInventory")).await;
    let updated = on_source
        .execute(
            "UPDATE book_catalog SET copies_total = 1, copies_available = 1 WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(updated, 1);

    // Each side undone, last moved first: the source as before.
    for args in [
        vec!["undo", "move", "--domain", inventory],
        vec!["rollback", "--domain", &domain],
        vec!["undo", "move", "--domain", &domain],
    ] {
        let out = run(&m, &args);
        assert_eq!(
            code(&out),
            0,
            "{args:?}: {}\n{}",
            stderr(&out),
            stdout(&out)
        );
    }
    assert_eq!(
        schema_dump(&source, "library").replace(" NOT VALID;", ";"),
        before_move
    );
}

/// Both sides of the split across domains cut over, then retired: the source
/// keeps the catalog's table for its readers (BookInventory's copy, ReadingList)
/// with the trigger that keeps the part whole, and the part for ReadingList; the
/// view over both stays for ReadingList, and a book catalogued on the catalog's
/// server still gets its inventory row on the inventory's.
#[tokio::test]
async fn both_sides_of_a_split_across_domains_retire_keeping_what_their_readers_read() {
    let (source, target, _bouncer, dir, m, domain) = library_split_across().await;
    let inventory = "book_inventory";
    move_proven(&m, &domain);
    for phase in ["verify", "cutover"] {
        let out = run(&m, &[phase, "--domain", &domain]);
        assert_eq!(code(&out), 0, "{phase}: {}\n{}", stderr(&out), stdout(&out));
    }
    let parts_server = inventory_server(&m).await;
    let switch = inventory_file_switch(&dir.path().join("connections"));
    let switch: Vec<&str> = switch.iter().map(String::as_str).collect();
    move_and_cut_over_inventory(&m, &switch);
    for d in [domain.as_str(), inventory] {
        let out = run(&m, &["retire", "--domain", d, "--after", "0s"]);
        assert_eq!(
            code(&out),
            0,
            "retire {d}: {}\n{}",
            stderr(&out),
            stdout(&out)
        );
    }

    let catalog = client(&as_role(&target, "library", "BookCatalog")).await;
    let id = catalogue(&catalog, "978-5", "Kept", "read on the source after retire").await;
    let parts_admin = client(&parts_server.conninfo("library")).await;
    let part_rows = "SELECT count(*) FROM book_inventory.book_catalog_book_inventory WHERE id = $1";
    eventually(&parts_admin, part_rows, id, 1).await;
    let stock = client(&as_role(&parts_server, "library", "BookInventory")).await;
    stock_book(&stock, id, 2, "R1").await;
    // ReadingList, on the source, lists the book through the old name.
    let reader = client(&as_role(&source, "library", "ReadingList")).await;
    reader
        .execute(
            "INSERT INTO reading_list (reader_id, book_id) VALUES (7, $1)",
            &[&id],
        )
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let titles: Vec<String> = reader
            .query(
                "SELECT b.title FROM reading_list r JOIN book_catalog b ON b.id = r.book_id WHERE r.reader_id = 7 AND r.book_id = $1",
                &[&id],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        if titles == ["Kept"] {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{titles:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // The old schemas dropped for good: what the readers read stays, and the
    // catalog's new rows still reach both.
    for d in [domain.as_str(), inventory] {
        let out = run(&m, &["retire", "--domain", d, "--drop", "--yes"]);
        assert_eq!(
            code(&out),
            0,
            "drop {d}: {}\n{}",
            stderr(&out),
            stdout(&out)
        );
    }
    let id = catalogue(
        &catalog,
        "978-6",
        "After",
        "catalogued once both are dropped",
    )
    .await;
    eventually(&parts_admin, part_rows, id, 1).await;
    eventually(
        &client(&source.conninfo("library")).await,
        "SELECT count(*) FROM public.book_catalog WHERE id = $1 AND title = 'After'",
        id,
        1,
    )
    .await;
}
