//! `carve discover` on real servers: the library of the source texts, the shop
//! example, and benchbase (real SQL of six benchmarks merged into one database).

mod support;

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;
use support::*;

/// table (without schema) -> domain, as the JSON reports it.
fn predicted(json: &Value) -> HashMap<String, String> {
    json["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let name = t["name"].as_str().unwrap();
            (
                name.split_once('.').unwrap().1.to_string(),
                t["domain"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn truth(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (t, s) = l.split_once('\t').unwrap();
            (t.to_string(), s.to_string())
        })
        .collect()
}

fn ari(truth: &[(String, String)], json: &Value) -> f64 {
    let pairs: Vec<(&str, &str)> = truth
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    adjusted_rand_index(&pairs, &predicted(json))
}

#[tokio::test]
async fn library_ownership_is_single_common_and_joint_with_a_split() {
    let server = server();
    create_db(&server, "library", example("library").schema).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("carve.plan.toml");
    let workload = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/library/workload");
    let (json, code, stderr) = discover_json(
        &plan,
        &[
            "--source",
            &server.conninfo("library"),
            "--workload",
            workload,
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json["format_version"], 1);

    let list = table(&json, "public.reading_list");
    assert_eq!(list["ownership"], "single");
    assert_eq!(strings(&list["writers"]), ["ReadingList"]);

    let audit = table(&json, "public.audit");
    assert_eq!(audit["ownership"], "common");
    assert_eq!(
        strings(&audit["writers"]),
        ["BookCatalog", "BookInventory", "ReadingList"]
    );
    assert_eq!(audit["resolutions"][0]["kind"], "dedicated-owner");
    assert_eq!(audit["owner"], "audit-service");

    let books = table(&json, "public.book_catalog");
    assert_eq!(books["ownership"], "joint");
    assert_eq!(strings(&books["writers"]), ["BookCatalog", "BookInventory"]);
    assert_eq!(
        books["resolutions"][0]["kind"], "table-split",
        "{:#}",
        books["resolutions"]
    );
    let kinds = resolution_kinds(books);
    for k in ["delegate", "shared-data-domain", "service-consolidation"] {
        assert!(kinds.iter().any(|x| x == k), "{kinds:?}");
    }
    let parts = books["split"]["parts"].as_array().unwrap();
    let inventory = parts
        .iter()
        .find(|p| p["service"] == "BookInventory")
        .unwrap();
    assert_eq!(
        strings(&inventory["columns"]),
        [
            "copies_available",
            "copies_total",
            "last_stocktake",
            "shelf_location"
        ]
    );
    let catalog = parts
        .iter()
        .find(|p| p["service"] == "BookCatalog")
        .unwrap();
    assert_eq!(catalog["table"], "book_catalog");
    assert_eq!(strings(&books["split"]["key"]), ["id"]);

    // Writers define bounded contexts: the reading list, the catalog with its two
    // writers (and the split proposal above), the audit trail every service writes.
    // ReadingList's read of the catalog and its foreign key do not hold the two
    // writers' tables together.
    let domains: Vec<(String, Vec<String>)> = json["domains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap().to_string(),
                strings(&d["tables"]),
            )
        })
        .collect();
    assert_eq!(
        domains,
        [
            ("audit".to_string(), vec!["public.audit".to_string()]),
            ("book_catalog".into(), vec!["public.book_catalog".into()]),
            ("reading_list".into(), vec!["public.reading_list".into()]),
        ]
    );

    // The stable fields, and the plan written with them.
    for d in json["domains"].as_array().unwrap() {
        assert!(d["name"].is_string() && d["tables"].is_array());
    }
    let written = carve::plan::Plan::load(&plan).unwrap();
    assert_eq!(
        written.domains.len(),
        json["domains"].as_array().unwrap().len()
    );
    assert_eq!(written.services.len(), 3);
    assert!(written
        .decisions
        .iter()
        .any(|d| d.subject == "ownership of public.book_catalog" && d.choice == "table-split"));
}

#[tokio::test]
async fn shop_domains_are_the_ones_its_designers_intended() {
    let server = server();
    create_db(&server, "shop", example("shop").schema).await;
    let dir = tempfile::tempdir().unwrap();
    let workload = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/shop/workload");
    let (json, code, stderr) = discover_json(
        &dir.path().join("p.toml"),
        &["--source", &server.conninfo("shop"), "--workload", workload],
    );
    assert_eq!(code, 0, "{stderr}");
    // examples/shop/DOMAINS.md
    let intended: &[(&str, &[&str])] = &[
        (
            "customers",
            &[
                "customers",
                "customer_addresses",
                "customer_preferences",
                "loyalty_accounts",
                "loyalty_transactions",
            ],
        ),
        (
            "catalog",
            &[
                "categories",
                "brands",
                "products",
                "product_variants",
                "product_images",
                "product_reviews",
            ],
        ),
        (
            "inventory",
            &[
                "warehouses",
                "stock_levels",
                "stock_movements",
                "stock_movements_2026_10",
                "stock_movements_2026_11",
                "stock_movements_default",
                "stock_reservations",
            ],
        ),
        (
            "orders",
            &[
                "carts",
                "cart_items",
                "orders",
                "order_items",
                "order_status_history",
                "discount_codes",
            ],
        ),
        (
            "payments",
            &["payment_methods", "payments", "refunds", "invoices"],
        ),
        (
            "shipping",
            &["carriers", "shipments", "shipment_items", "tracking_events"],
        ),
        (
            "notifications",
            &[
                "notification_templates",
                "notifications",
                "notification_deliveries",
            ],
        ),
        ("audit", &["audit_log"]),
    ];
    let pairs: Vec<(&str, &str)> = intended
        .iter()
        .flat_map(|(d, ts)| ts.iter().map(move |t| (*t, *d)))
        .collect();
    assert_eq!(
        adjusted_rand_index(&pairs, &predicted(&json)),
        1.0,
        "{:#}",
        json["domains"]
    );
    // Domains are named after their services.
    let names: Vec<String> = json["domains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect();
    for n in [
        "customers",
        "catalog",
        "inventory",
        "orders",
        "payments",
        "shipping",
        "notifications",
        "audit_log",
    ] {
        assert!(names.contains(&n.to_string()), "{names:?}");
    }

    let orders = table(&json, "public.orders");
    assert_eq!(orders["ownership"], "joint");
    assert_eq!(strings(&orders["writers"]), ["orders", "payments"]);
    assert_eq!(orders["owner"], "orders");
    // The plan records the best resolution, and for this table the split it makes.
    let written = carve::plan::Plan::load(&dir.path().join("p.toml")).unwrap();
    let decided = written
        .decisions
        .iter()
        .find(|d| d.subject == "ownership of public.orders")
        .unwrap();
    assert_eq!(orders["resolutions"][0]["kind"], decided.choice.as_str());
    // payments never sets orders.status, so the status trigger is not its doing.
    assert_eq!(
        table(&json, "public.order_status_history")["ownership"],
        "single"
    );
    // inventory's stock updates fire a trigger that inserts notifications.
    let notes = table(&json, "public.notifications");
    assert_eq!(strings(&notes["writers"]), ["inventory", "notifications"]);
    assert_eq!(notes["owner"], "notifications");
    assert_eq!(table(&json, "public.audit_log")["ownership"], "common");
    // Partitions share their root's ownership and domain.
    let part = table(&json, "public.stock_movements_2026_10");
    assert_eq!(part["partition_of"], "public.stock_movements");
    assert_eq!(
        part["domain"],
        table(&json, "public.stock_movements")["domain"]
    );
    // The boundary orders | payments names what it cuts.
    let boundary = json["boundaries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| strings(&b["domains"]) == ["orders", "payments"])
        .expect("orders | payments boundary");
    let fk = boundary["costs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "foreign_key")
        .unwrap();
    assert_eq!(fk["count"], 2, "{boundary:#}");
}

/// benchbase's workload files, each passed through `edit(file name, SQL)`, in a
/// directory of their own.
fn benchbase_workload(edit: impl Fn(&std::ffi::OsStr, String) -> String) -> tempfile::TempDir {
    let workload = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(benchbase().join("workload")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        let sql = edit(name, std::fs::read_to_string(&path).unwrap());
        std::fs::write(workload.path().join(name), sql).unwrap();
    }
    workload
}

async fn benchbase_db(server: &carve::pgtemp::TempServer, name: &str, extras: bool) {
    let dir = benchbase();
    let mut sql = std::fs::read_to_string(dir.join("schema.sql")).unwrap();
    if extras {
        sql.push_str(&std::fs::read_to_string(dir.join("extras/common_audit.sql")).unwrap());
    }
    create_db(server, name, &sql).await;
}

#[tokio::test]
async fn benchbase_with_its_workload_recovers_every_service_and_owner() {
    let server = server();
    benchbase_db(&server, "bench", false).await;
    let dir = benchbase();
    let tmp = tempfile::tempdir().unwrap();
    let (json, code, stderr) = discover_json(
        &tmp.path().join("p.toml"),
        &[
            "--source",
            &server.conninfo("bench"),
            "--workload",
            dir.join("workload").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        ari(&truth(&dir.join("truth.tsv")), &json),
        1.0,
        "{:#}",
        json["domains"]
    );
    assert_eq!(json["domains"].as_array().unwrap().len(), 6);
    for kind in ["workload", "unparsed", "unknown"] {
        assert_eq!(
            json["problems"][kind].as_array().unwrap().len(),
            0,
            "{:#}",
            json["problems"]
        );
    }
    // Ownership against the writer sets PostgreSQL's own plans show.
    let access = std::fs::read_to_string(dir.join("table_access.tsv")).unwrap();
    for line in access.lines().skip(1).filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        let (name, service) = (f[0], f[1]);
        let n: Vec<u32> = f[2..].iter().map(|x| x.parse().unwrap()).collect();
        let t = table(&json, &format!("public.{name}"));
        let expected = if n[1] + n[2] + n[3] > 0 {
            "single"
        } else if n[0] > 0 {
            "read-only"
        } else {
            "unused"
        };
        assert_eq!(t["ownership"], expected, "{name}: {t:#}");
        if expected == "single" {
            assert_eq!(strings(&t["writers"]), [service], "{name}");
        }
    }
}

#[tokio::test]
async fn benchbase_audit_log_is_common_and_changes_nothing_else() {
    let server = server();
    benchbase_db(&server, "bench", true).await;
    let dir = benchbase();
    // Each service's workload with its audit INSERT appended.
    let workload = benchbase_workload(|name, sql| {
        let audit = dir.join("extras/workload_audit").join(name);
        format!("{sql};\n{}", std::fs::read_to_string(audit).unwrap())
    });
    let (json, code, stderr) = discover_json(
        &workload.path().join("p.toml"),
        &[
            "--source",
            &server.conninfo("bench"),
            "--workload",
            workload.path().to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let audit = table(&json, "public.audit_log");
    assert_eq!(audit["ownership"], "common");
    assert_eq!(strings(&audit["writers"]).len(), 6);
    assert_eq!(ari(&truth(&dir.join("truth.tsv")), &json), 1.0);
    assert_eq!(json["problems"]["unparsed"].as_array().unwrap().len(), 0);
}

/// A nightly job that copies rows in and prunes, in one transaction, in the tables
/// of five of the six benchmarks (two of them reference tables nobody else writes).
const NIGHTLY_JOB: &str = "BEGIN;
INSERT INTO review (a_id, u_id, i_id, rating, rank, comment, creation_date) VALUES ($1, $2, $3, $4, $5, $6, now());
DELETE FROM review WHERE creation_date < now() - interval '5 years';
INSERT INTO added_tweets (id, uid, text, createdate) VALUES ($1, $2, $3, now());
INSERT INTO logging (log_id, log_type, log_action, log_timestamp, log_user) VALUES ($1, $2, $3, $4, $5);
INSERT INTO airport (ap_id, ap_code, ap_name) VALUES ($1, $2, $3);
UPDATE customer SET c_discount = c_discount WHERE c_w_id = $1;
INSERT INTO category (c_id, c_name, c_parent_id) VALUES ($1, $2, $3);
COMMIT;";

#[tokio::test]
async fn a_job_writing_into_every_cluster_is_reported_and_does_not_merge_them() {
    let server = server();
    benchbase_db(&server, "bench", false).await;
    let dir = benchbase();
    let workload = benchbase_workload(|_, sql| sql);
    std::fs::write(workload.path().join("nightly_sync.sql"), NIGHTLY_JOB).unwrap();
    let plan = workload.path().join("p.toml");
    let args = [
        "--source",
        &server.conninfo("bench"),
        "--workload",
        workload.path().to_str().unwrap(),
    ];
    let (json, code, stderr) = discover_json(&plan, &args);
    assert_eq!(code, 0, "{stderr}");
    let truth = truth(&dir.join("truth.tsv"));
    assert_eq!(ari(&truth, &json), 1.0, "{:#}", json["domains"]);
    // Reported, with why; each benchmark still names and owns its domain.
    let cross = json["cross_cutting"].as_array().unwrap();
    assert_eq!(cross.len(), 1, "{cross:#?}");
    assert_eq!(cross[0]["service"], "nightly_sync");
    assert_eq!(
        strings(&cross[0]["hosts"]),
        ["epinions", "tpcc", "twitter", "wikipedia"]
    );
    for d in json["domains"].as_array().unwrap() {
        assert_eq!(strings(&d["writers"]).len(), 1, "{d:#}");
        assert!(
            !strings(&d["writers"]).contains(&"nightly_sync".to_string()),
            "{d:#}"
        );
    }
    let review = table(&json, "public.review");
    assert_eq!(review["ownership"], "single", "{review:#}");
    assert_eq!(review["owner"], "epinions");
    assert_eq!(strings(&review["writers"]), ["epinions", "nightly_sync"]);
    assert!(review["reason"].as_str().unwrap().contains("cross-cutting"));

    // The plan can say otherwise: an ordinary writer, which then owns the reviews it
    // creates.
    let mut written = carve::plan::Plan::load(&plan).unwrap();
    let job = written
        .services
        .iter_mut()
        .find(|s| s.name == "nightly_sync")
        .unwrap();
    job.cross_cutting = Some(false);
    written.save(&plan).unwrap();
    let (json, code, stderr) = discover_json(&plan, &args);
    assert_eq!(code, 0, "{stderr}");
    assert!(json["cross_cutting"].as_array().unwrap().is_empty());
    assert_eq!(table(&json, "public.review")["owner"], "nightly_sync");
    let kept = carve::plan::Plan::load(&plan).unwrap();
    let job = kept.services.iter().find(|s| s.name == "nightly_sync");
    assert_eq!(job.unwrap().cross_cutting, Some(false), "kept on re-run");
}

/// The synthetic catalog (clusters of tables, each written by one of a few
/// services) with a nightly job writing into every cluster in one transaction.
#[tokio::test]
async fn on_a_synthetic_catalog_a_job_in_every_cluster_leaves_the_clusters_found() {
    use carve::synthetic::{self, Shape};
    let shape = Shape::LARGE.scaled(0.02);
    let server = server();
    create_db(&server, "synthetic", &synthetic::sql(shape).concat()).await;
    let workload = tempfile::tempdir().unwrap();
    let services = shape.tables / shape.cluster_size;
    for (service, sql) in synthetic::workload(shape, services, 3_000) {
        std::fs::write(workload.path().join(format!("{service}.sql")), sql).unwrap();
    }
    let truth = synthetic::clusters(shape);
    let discover = |plan: &str| {
        let (json, code, stderr) = discover_json(
            &workload.path().join(plan),
            &[
                "--source",
                &server.conninfo("synthetic"),
                "--workload",
                workload.path().to_str().unwrap(),
            ],
        );
        assert_eq!(code, 0, "{stderr}");
        json
    };
    let without_job = ari(&truth, &discover("a.toml"));
    std::fs::write(
        workload.path().join("nightly_sync.sql"),
        synthetic::cross_cutting_job(shape, 20),
    )
    .unwrap();
    let json = discover("b.toml");
    let with_job = ari(&truth, &json);
    let cross = json["cross_cutting"].as_array().unwrap();
    assert_eq!(cross.len(), 1, "{cross:#?}");
    assert_eq!(cross[0]["service"], "nightly_sync");
    assert_eq!(
        strings(&cross[0]["hosts"]).len(),
        services,
        "every cluster's service"
    );
    assert!(
        with_job >= without_job - 0.02,
        "the job moved the proposal: ARI {with_job:.3} with it, {without_job:.3} without"
    );
    assert!(with_job >= 0.9, "ARI {with_job:.3}");
    // Counted as an ordinary writer, the job co-owns what it writes: those tables
    // turn joint, where set aside each keeps its one owner. (It no longer glues the
    // clusters together either way: a service is one node of the graph, tied to
    // its tables, and joins one cluster at most. ARI 1.0 both, measured.)
    let joint = |json: &serde_json::Value| {
        json["tables"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["ownership"] == "joint")
            .count()
    };
    assert_eq!(joint(&json), 0, "set aside, the job owns nothing");
    let plan = workload.path().join("b.toml");
    let mut written = carve::plan::Plan::load(&plan).unwrap();
    for s in written
        .services
        .iter_mut()
        .filter(|s| s.name == "nightly_sync")
    {
        s.cross_cutting = Some(false);
    }
    written.save(&plan).unwrap();
    let counted = discover("b.toml");
    assert!(
        joint(&counted) >= services,
        "counted in, the job co-owns a table in every cluster: {} joint",
        joint(&counted)
    );
    assert!(counted["cross_cutting"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn benchbase_from_the_catalog_alone_is_still_a_good_proposal() {
    let server = server();
    benchbase_db(&server, "bench", false).await;
    let tmp = tempfile::tempdir().unwrap();
    let (json, code, stderr) = discover_json(
        &tmp.path().join("p.toml"),
        &["--source", &server.conninfo("bench")],
    );
    assert_eq!(code, 0, "{stderr}");
    let score = ari(&truth(&benchbase().join("truth.tsv")), &json);
    // Measured 0.92 (0.76 at resolution 1 with declared and `<table>_id` keys
    // only): the resolution the sweep settles on keeps auctionmark's attributes
    // with its items, and the names imply trust → useracct_2 (`source_u_id`)
    // and text → page (`old_page`), also to a unique key. The config_* tables,
    // keyless, stay apart.
    assert!(score >= 0.9, "catalog-only ARI {score}");
    assert_eq!(json["quality"]["resolution"], 0.75, "{:#}", json["quality"]);
    let implied: Vec<&str> = json["links"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["kind"] == "implied_foreign_key")
        .map(|l| l["via"].as_str().unwrap())
        .collect();
    assert_eq!(
        implied,
        [
            // customer_2's unique c_id_str
            "public.frequent_flyer.ff_c_id_str",
            "public.logging.log_page",
            "public.text.old_page",
            "public.trust.source_u_id",
            "public.trust.target_u_id"
        ]
    );
    // Every resolution tried is reported, the chosen one marked.
    let scales = json["quality"]["alternatives"].as_array().unwrap();
    assert_eq!(scales.len(), 7);
    assert_eq!(scales.iter().filter(|s| s["chosen"] == true).count(), 1);
    assert!(json["tables"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["ownership"] == "unknown"));
}

#[tokio::test]
async fn bad_input_is_reported_and_nothing_is_lost() {
    let server = server();
    create_db(&server, "library", example("library").schema).await;
    let tmp = tempfile::tempdir().unwrap();
    let plan = tmp.path().join("carve.plan.toml");
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::fs::write(
        work.join("ReadingList.sql"),
        "SELECT * FROM reading_list WHERE id = $1;\nSELEC broken FROM;\nSELECT * FROM no_such_table;\nUPDATE reading_list SET status = $2 WHERE id = $1;",
    )
    .unwrap();
    std::fs::write(work.join("notes.txt"), "not sql").unwrap();
    let source = server.conninfo("library");
    let (json, code, stderr) = discover_json(
        &plan,
        &["--source", &source, "--workload", work.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{stderr}");
    let unparsed = &json["problems"]["unparsed"][0];
    assert!(
        unparsed["origin"]
            .as_str()
            .unwrap()
            .ends_with("ReadingList.sql:2 (ReadingList)"),
        "{unparsed}"
    );
    let unknown = &json["problems"]["unknown"][0];
    assert!(unknown["origin"]
        .as_str()
        .unwrap()
        .ends_with("ReadingList.sql:3 (ReadingList)"));
    assert_eq!(unknown["message"], "no table or view named no_such_table");
    assert!(json["problems"]["workload"][0]["message"]
        .as_str()
        .unwrap()
        .contains("not a .sql file"));
    // The good statements still count.
    assert_eq!(table(&json, "public.reading_list")["ownership"], "single");

    // An unreadable workload stops before anything is written.
    let before = std::fs::read_to_string(&plan).unwrap();
    let (_, code, stderr) = discover_json(
        &plan,
        &["--source", &source, "--workload", "/nonexistent/sql"],
    );
    assert_eq!(code, 1);
    assert!(stderr.contains("/nonexistent/sql"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&plan).unwrap(), before);

    // A re-run after a change says what changed since the last proposal.
    let c = client(&source).await;
    c.batch_execute(
        "CREATE TABLE loans (id int PRIMARY KEY, book_id bigint REFERENCES book_catalog (id))",
    )
    .await
    .unwrap();
    let (json, code, _) = discover_json(
        &plan,
        &["--source", &source, "--workload", work.to_str().unwrap()],
    );
    assert_eq!(code, 0);
    let changes = strings(&json["plan"]["changes"]);
    assert!(
        changes
            .iter()
            .any(|c| c.starts_with("table public.loans is new")),
        "{changes:?}"
    );

    // A plan for another database is not overwritten.
    create_db(&server, "other", "CREATE TABLE t (id int)").await;
    let (_, code, stderr) = discover_json(&plan, &["--source", &server.conninfo("other")]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("is the plan for database library"),
        "{stderr}"
    );
}

#[tokio::test]
async fn graph_output_for_dot_and_mermaid() {
    let server = server();
    create_db(&server, "shop", example("shop").schema).await;
    let tmp = tempfile::tempdir().unwrap();
    for (format, marker) in [("dot", "subgraph cluster_"), ("mermaid", "flowchart LR")] {
        let out = carve()
            .arg("--plan")
            .arg(tmp.path().join("p.toml"))
            .args([
                "discover",
                "--source",
                &server.conninfo("shop"),
                "--graph",
                format,
            ])
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains(marker), "{text}");
        assert!(text.contains("public.orders"), "{text}");
    }
}

#[tokio::test]
async fn pins_in_the_plan_are_respected_on_every_run() {
    let server = server();
    create_db(&server, "shop", example("shop").schema).await;
    let tmp = tempfile::tempdir().unwrap();
    let plan_path = tmp.path().join("carve.plan.toml");
    let workload = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/shop/workload");
    let args = ["--source", &server.conninfo("shop"), "--workload", workload];
    let (first, code, _) = discover_json(&plan_path, &args);
    assert_eq!(code, 0);
    assert_ne!(
        table(&first, "public.discount_codes")["domain"],
        table(&first, "public.payments")["domain"]
    );

    // The user pins two things by editing the plan.
    let mut plan = carve::plan::Plan::load(&plan_path).unwrap();
    plan.pins.push(carve::plan::Pin {
        tables: vec!["public.notifications".into(), "public.stock_levels".into()],
        domain: Some("stock_alerts".into()),
    });
    plan.pins.push(carve::plan::Pin {
        tables: vec!["public.discount_codes".into(), "public.payments".into()],
        domain: None,
    });
    plan.save(&plan_path).unwrap();

    for _ in 0..2 {
        let (json, code, stderr) = discover_json(&plan_path, &args);
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(
            table(&json, "public.notifications")["domain"],
            "stock_alerts"
        );
        assert_eq!(
            table(&json, "public.stock_levels")["domain"],
            "stock_alerts"
        );
        assert_eq!(
            table(&json, "public.discount_codes")["domain"],
            table(&json, "public.payments")["domain"]
        );
        let pinned = json["domains"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == "stock_alerts")
            .unwrap();
        assert_eq!(pinned["pinned"], true);
        assert_eq!(
            carve::plan::Plan::load(&plan_path).unwrap().pins.len(),
            2,
            "pins stay in the plan"
        );
    }

    // A pin naming a table that is gone stops discover and leaves the plan alone.
    let mut plan = carve::plan::Plan::load(&plan_path).unwrap();
    plan.pins.push(carve::plan::Pin {
        tables: vec!["public.gone".into()],
        domain: None,
    });
    plan.save(&plan_path).unwrap();
    let before = std::fs::read_to_string(&plan_path).unwrap();
    let (_, code, stderr) = discover_json(&plan_path, &args);
    assert_eq!(code, 1);
    assert!(stderr.contains("pin 3 names public.gone"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&plan_path).unwrap(), before);
}
