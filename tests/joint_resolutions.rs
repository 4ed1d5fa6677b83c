//! The two joint-ownership resolutions besides a split and a delegation, carried
//! out on the library's book_catalog (written by BookCatalog and BookInventory):
//! a service consolidation and a shared data domain. Each is a decision in the
//! plan; discover, restrict and move follow it.

mod support;

use support::*;

const BOOKS: &str = "public.book_catalog";

/// The library, discovered, with book_catalog's ownership decided `choice`, then
/// discovered again (the decision kept, the domains following it).
async fn library_deciding(
    choice: &str,
) -> (carve::pgtemp::TempServer, tempfile::TempDir, Monolith) {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let m = example_monolith(&server, dir.path(), "library", "library").await;
    let mut plan = carve::plan::Plan::load(&m.plan).unwrap();
    let decision = plan
        .decisions
        .iter_mut()
        .find(|d| d.subject == format!("ownership of {BOOKS}"))
        .expect("discover decides book_catalog's ownership");
    decision.choice = choice.into();
    decision.reason = "the team chose it".into();
    plan.splits.clear();
    plan.save(&m.plan).unwrap();
    assert_success(&rediscover(&m));
    (server, dir, m)
}

/// discover again, as it was run first.
fn rediscover(m: &Monolith) -> std::process::Output {
    run(
        m,
        &[
            "discover",
            "--workload",
            m.workload.to_str().unwrap(),
            "--format",
            "json",
        ],
    )
}

/// restrict's plan as JSON (exit 3: changes to make).
fn restrict_dry_run(m: &Monolith) -> serde_json::Value {
    let out = run(m, &["restrict", "--dry-run", "--format", "json"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)))
}

fn discovered(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(&stdout(out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
}

/// Whether `role` holds `privilege` on the table the plan names `table` (wherever
/// assign put it).
async fn holds(m: &Monolith, role: &str, table: &str, privilege: &str) -> bool {
    let c = client(&m.conninfo).await;
    let name = table.rsplit('.').next().unwrap();
    c.query_one(
        "SELECT has_table_privilege($1, format('%I.%I', schemaname, tablename), $3) FROM pg_tables WHERE tablename = $2",
        &[&role, &name, &privilege],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test]
async fn consolidated_writers_are_one_service_to_discover_and_share_a_domain_in_restrict() {
    let (_server, _dir, m) = library_deciding("service-consolidation").await;
    let json = discovered(&rediscover(&m));
    let books = json["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == BOOKS)
        .unwrap();
    // One service now: the table has a single owner, the two services together.
    assert_eq!(books["ownership"], "single", "{books:#}");
    assert_eq!(books["writers"][0], "BookCatalog+BookInventory");
    // The report still lists each service, and the plan keeps each with its roles.
    let plan = carve::plan::Plan::load(&m.plan).unwrap();
    for service in ["BookCatalog", "BookInventory"] {
        assert!(plan.services.iter().any(|s| s.name == service));
    }
    let decision = plan.decision(&format!("ownership of {BOOKS}")).unwrap();
    assert_eq!(decision.choice, "service-consolidation", "kept on re-run");
    // Its ways out stay listed, the chosen one among them.
    let kinds = resolution_kinds(books);
    assert!(
        kinds.iter().any(|k| k == "service-consolidation"),
        "{kinds:?}"
    );
    // Settled: one more run proposes the same.
    assert_success(&rediscover(&m));
    let again = carve::plan::Plan::load(&m.plan).unwrap();
    assert_eq!(again.domains, plan.domains);
    assert_eq!(again.decisions, plan.decisions);
    assert!(plan.splits.is_empty(), "no split for a consolidated table");

    assert_success(&run(&m, &["assign"]));
    decide_library_crossings(&m);
    let report = restrict_dry_run(&m);
    let services = report["services"].as_array().unwrap();
    let of = |name: &str| {
        services
            .iter()
            .find(|s| s["service"] == name)
            .unwrap()
            .clone()
    };
    let (catalog, inventory) = (of("BookCatalog"), of("BookInventory"));
    assert_eq!(catalog["domain"], inventory["domain"], "one home domain");
    assert_eq!(catalog["group"], inventory["group"], "one group role");
    assert_eq!(
        catalog["domain"].as_str(),
        Some(domain_of(&m, BOOKS).as_str())
    );
    let crossings = report["crossings"].as_array().unwrap();
    assert!(
        !crossings
            .iter()
            .any(|c| c["table"] == BOOKS && c["write"] == true),
        "a consolidated service's write is no crossing: {crossings:#?}"
    );
    assert_success(&run(&m, &["restrict"]));
    for service in ["BookCatalog", "BookInventory"] {
        assert!(holds(&m, service, BOOKS, "UPDATE").await, "{service}");
    }
}

#[tokio::test]
async fn a_shared_data_domain_holds_the_table_its_writers_write_by_that_decision() {
    let (_server, _dir, m) = library_deciding("shared-data-domain").await;
    let shared = domain_of(&m, BOOKS);
    assert_eq!(shared, "shared_book_catalog_book_inventory");
    let plan = carve::plan::Plan::load(&m.plan).unwrap();
    let domain = plan.domains.iter().find(|d| d.name == shared).unwrap();
    assert_eq!(domain.tables, [BOOKS], "the shared table alone");

    assert_success(&run(&m, &["assign"]));
    // ReadingList only reads the catalog: an ordinary crossing, decided with the
    // others (replicated).
    decide_library_crossings(&m);
    // The table is all the two writers write (audit is delegated): the shared
    // domain is their home, and its group role carries their writes. (A writer
    // homed elsewhere reaches it by the table's decision, granted to its own role:
    // the restrict unit tests.)
    let report = restrict_dry_run(&m);
    for service in ["BookCatalog", "BookInventory"] {
        let planned = report["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["service"] == service)
            .unwrap();
        assert_eq!(planned["domain"].as_str(), Some(shared.as_str()));
    }
    assert_success(&run(&m, &["restrict"]));
    for service in ["BookCatalog", "BookInventory"] {
        assert!(holds(&m, service, BOOKS, "UPDATE").await, "{service}");
    }
    assert!(!holds(&m, "ReadingList", BOOKS, "UPDATE").await);
    assert!(holds(&m, "ReadingList", BOOKS, "SELECT").await);

    // Its writers write it directly: it cannot leave their server.
    let (_target, target) = target_server("library").await;
    assert_move_refused(&m, &shared, &target, "is a shared data domain");
}

/// `carve move` of `domain` stops at its preflight (exit 6), naming `reason`.
fn assert_move_refused(m: &Monolith, domain: &str, target: &str, reason: &str) {
    let out = move_to(m, domain, target, &[]);
    assert_eq!(code(&out), 6, "{}", stderr(&out));
    assert!(stderr(&out).contains(reason), "{}", stderr(&out));
}

/// The orders domain's move preflight: refused (the shop has not decided what a
/// move needs), but no longer for its split.
fn assert_refused_not_for_the_split(m: &Monolith, orders: &str, target: &str) {
    let out = move_to(m, orders, target, &["--dry-run"]);
    assert!(
        stderr(&out).contains("the move of orders cannot start")
            && !stderr(&out).contains("split of public.orders"),
        "{}",
        stderr(&out)
    );
}

/// The shop's two jointly written tables as discover decides them: orders split
/// (payments' columns into a part in payments' domain), notifications delegated to
/// the notifications service (inventory's trigger writes into it). Carried out,
/// restrict proves every statement with the crossings decided.
#[tokio::test]
async fn the_shops_joint_tables_are_carried_out() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let m = example_monolith(&server, dir.path(), "shop", "shop").await;
    let plan = carve::plan::Plan::load(&m.plan).unwrap();
    let choice = |table: &str| {
        plan.decision(&format!("ownership of {table}"))
            .map(|d| d.choice.clone())
            .unwrap_or_default()
    };
    assert_eq!(choice("public.orders"), "table-split");
    assert_eq!(choice("public.notifications"), "delegate:notifications");
    let split = &plan.splits[..];
    assert_eq!(split.len(), 1, "{split:?}");
    let payments = domain_of(&m, "public.payments");
    assert_eq!(split[0].columns, ["paid_at", "payment_status"]);
    assert_eq!(split[0].domain.as_deref(), Some(payments.as_str()));

    assert_success(&run(&m, &["assign"]));
    assert_success(&run(&m, &["split"]));
    let c = client(&m.conninfo).await;
    let part: String = c
        .query_one(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE tablename = 'orders_payments'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(part, format!("{payments}.orders_payments"));

    // Every crossing decided: a read kept by a temporary grant, a write delegated to
    // the table's owner (the plan's delegation for notifications).
    let report = restrict_dry_run_deciding(&m);
    let crossings = report["crossings"].as_array().unwrap();
    let notes = crossings
        .iter()
        .find(|c| c["subject"] == "write public.notifications by inventory")
        .unwrap_or_else(|| panic!("{crossings:#?}"));
    assert_eq!(notes["decision"]["choice"], "delegate:notifications");
    // Granted instead of delegated, payments' lock of the order row through the
    // view (an invoker view: no trigger stands in for a lock) takes both parts'
    // rows as payments, which may then update both.
    let lock = "SELECT total, payment_status FROM orders WHERE id = $1 FOR UPDATE";
    let deciding = |choice: &str| {
        let mut plan = carve::plan::Plan::load(&m.plan).unwrap();
        let d = plan
            .decisions
            .iter_mut()
            .find(|d| d.subject == "write public.orders by payments")
            .unwrap();
        d.choice = choice.into();
        plan.save(&m.plan).unwrap();
    };
    deciding("temporary-grant:orders");
    let granted = restrict_dry_run(&m);
    let probe = granted["proof"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["sql"].as_str().unwrap().contains(lock))
        .unwrap_or_else(|| panic!("{granted:#}"));
    assert!(probe.get("error").is_none(), "{probe:#}");
    deciding("delegate:orders");
    let out = run(&m, &["restrict", "--format", "json"]);
    assert_success(&out);
    let applied: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    // Nothing fails but what a decision takes away (inventory's trigger write).
    for p in applied["proof"].as_array().unwrap() {
        let accepted = !p["accepted_by"].as_array().unwrap().is_empty();
        assert_eq!(p.get("error").is_some(), accepted, "{p:#}");
    }
    // payments updates an order's payment through the old name, the view that
    // sends it to its part; locking the order row (FOR UPDATE) locks the orders
    // domain's row too: a write across the boundary, decided (delegated) here.
    let may: bool = c
        .query_one(
            "SELECT has_table_privilege('payments', 'public.orders', 'UPDATE')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(may);
    assert!(crossings
        .iter()
        .any(|c| c["subject"] == "write public.orders by payments"));
    assert!(!holds(&m, "orders", "orders_payments", "UPDATE").await);

    // The part's rows are made as the table's rows are written: the payments
    // domain does not move without the table, and says so; the orders domain may
    // (its preflight names other things the shop has not decided, not the split).
    let (_target, target) = target_server("shop").await;
    let orders = domain_of(&m, "public.orders");
    assert_move_refused(&m, &payments, &target, "split of public.orders");
    assert_refused_not_for_the_split(&m, &orders, &target);
    // As the refusal says: the part in the table's domain, split again; the split
    // then goes with the orders domain (payments writes its part across domains,
    // a crossing restrict asks about).
    for undo in ["restrict", "split"] {
        assert_success(&run(&m, &["undo", undo]));
    }
    let mut plan = carve::plan::Plan::load(&m.plan).unwrap();
    plan.splits[0].domain = Some(orders.clone());
    plan.save(&m.plan).unwrap();
    assert_success(&run(&m, &["split"]));
    // The preflight still names what the shop has not decided for a move (its
    // kept keys and views, temporary grants), but no longer the split.
    assert_refused_not_for_the_split(&m, &orders, &target);
}

/// restrict's dry-run with every crossing it lists decided (reads by a temporary
/// grant, writes delegated to the table's owner by discover's decision or to the
/// owning domain's service), then its plan again.
fn restrict_dry_run_deciding(m: &Monolith) -> serde_json::Value {
    let out = run(m, &["restrict", "--dry-run", "--format", "json"]);
    let first: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let mut plan = carve::plan::Plan::load(&m.plan).unwrap();
    for c in first["crossings"].as_array().unwrap() {
        if !c["decision"].is_null() {
            continue;
        }
        let subject = c["subject"].as_str().unwrap().to_string();
        let choice = if c["write"] == true {
            let table = c["table"].as_str().unwrap();
            plan.decision(&format!("ownership of {table}"))
                .map(|d| d.choice.clone())
                .filter(|d| d.starts_with("delegate:"))
                .unwrap_or_else(|| format!("delegate:{}", c["table_domain"].as_str().unwrap()))
        } else {
            "temporary-grant".to_string()
        };
        plan.decisions.push(carve::plan::Decision {
            subject,
            choice,
            reason: "until the owner's API exists".into(),
            rows: None,
        });
    }
    plan.save(&m.plan).unwrap();
    restrict_dry_run(m)
}
