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

/// Runs the journey of `domain` (assign, the plan's splits, restrict, move, verify,
/// cut-over) and checks that each phase's journal holds exactly the steps `doc`
/// listed.
fn assert_ran_as_listed(m: &Monolith, doc: &Value, domain: &str, cutover_extra: &[&str]) {
    let splits = !Plan::load(&m.plan).unwrap().splits.is_empty();
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
    for args in journey.into_iter().filter(|a| splits || a[0] != "split") {
        let out = run(m, &args);
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
    for (phase, on) in phases.into_iter().filter(|p| splits || p.0 != "split") {
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
    let options = ServerOptions::default().setting("max_slot_wal_keep_size", "1GB");
    let source = TempServer::start_with(&options).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let m = example_monolith(&source, dir.path(), "library", "library").await;
    let target = TempServer::start_with(&options).unwrap();
    create_db(&target, "library", "SELECT 1").await;
    let bouncer = TempBouncer::start(&source, &[("reading", "library")]).unwrap();
    let domain = domain_of(&m, "public.reading_list");
    record_destination(
        &m,
        &domain,
        target.conninfo("library"),
        &bouncer,
        "ReadingList",
        "reading",
    );
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
