//! The catalog reader against real servers: both examples, hostile identifiers, and
//! what is deliberately left out.

mod support;

use carve::catalog::*;
use support::*;

fn q(schema: &str, name: &str) -> QualName {
    QualName::new(schema, name)
}

fn table<'a>(c: &'a Catalog, schema: &str, name: &str) -> &'a Table {
    c.table(&q(schema, name)).unwrap_or_else(|| {
        panic!(
            "table {schema}.{name} missing; have {:?}",
            c.tables
                .iter()
                .map(|t| t.name.to_string())
                .collect::<Vec<_>>()
        )
    })
}

#[tokio::test]
async fn reads_the_library_example_completely() {
    let server = server();
    let ex = example("library");
    create_db(&server, "library", ex.schema).await;
    let c = catalog_of(&server, "library").await;

    let names: Vec<String> = c.tables.iter().map(|t| t.name.to_string()).collect();
    assert_eq!(
        names,
        ["public.audit", "public.book_catalog", "public.reading_list"]
    );

    let books = table(&c, "public", "book_catalog");
    assert_eq!(
        books.comment.as_deref(),
        Some("Books in the library, with their inventory status")
    );
    let id = &books.columns[0];
    assert_eq!(
        (id.name.as_str(), id.type_name.as_str(), id.not_null),
        ("id", "bigint", true)
    );
    assert_eq!(
        id.default.as_deref(),
        // Read with only pg_catalog on the search path: names come out qualified.
        Some("nextval('public.book_catalog_id_seq'::regclass)")
    );
    assert_eq!(books.columns.len(), 11);
    assert_eq!(books.primary_key().unwrap().columns, ["id"]);
    let checks = books
        .constraints
        .iter()
        .filter(|c| c.kind == ConstraintKind::Check)
        .count();
    assert_eq!(checks, 4);
    assert!(books
        .indexes
        .iter()
        .any(|i| i.unique && i.columns == ["isbn"]));

    let list = table(&c, "public", "reading_list");
    assert_eq!(list.columns[0].identity, Some(Identity::Always));
    let fks: Vec<_> = list.foreign_keys().collect();
    assert_eq!(fks.len(), 1);
    let (con, fk) = fks[0];
    assert_eq!(con.columns, ["book_id"]);
    assert_eq!(fk.references, q("public", "book_catalog"));
    assert_eq!(fk.referenced_columns, ["id"]);
    assert_eq!(fk.on_delete, FkAction::Cascade);
    assert_eq!(fk.on_update, FkAction::NoAction);
    let unique = list
        .constraints
        .iter()
        .find(|c| c.kind == ConstraintKind::Unique)
        .unwrap();
    assert_eq!(unique.columns, ["reader_id", "book_id"]);

    // serial and identity sequences, each owned by its column.
    let owned: Vec<String> = c
        .sequences
        .iter()
        .map(|s| {
            let o = s.owned_by.as_ref().expect("owned");
            format!(
                "{} <- {}.{} identity={}",
                s.name, o.table, o.column, s.identity
            )
        })
        .collect();
    assert_eq!(
        owned,
        [
            "public.audit_id_seq <- public.audit.id identity=false",
            "public.book_catalog_id_seq <- public.book_catalog.id identity=false",
            "public.reading_list_id_seq <- public.reading_list.id identity=true",
        ]
    );
    assert_eq!(c.server.database, "library");
    assert_eq!(c.server.wal_level, "logical");
}

#[tokio::test]
async fn reads_the_shop_example_views_triggers_functions_partitions() {
    let server = server();
    let ex = example("shop");
    let client = create_db(&server, "shop", ex.schema).await;
    client.batch_execute(ex.seed).await.expect("seed");
    client.batch_execute("ANALYZE").await.unwrap();
    let c = catalog_of(&server, "shop").await;

    assert_eq!(c.tables.len(), 36);
    let movements = table(&c, "public", "stock_movements");
    assert_eq!(movements.kind, TableKind::Partitioned);
    assert_eq!(movements.partition_key.as_deref(), Some("RANGE (moved_at)"));
    let parts: Vec<String> = c
        .tables
        .iter()
        .filter(|t| t.partition_of.as_ref() == Some(&q("public", "stock_movements")))
        .map(|t| {
            format!(
                "{} {}",
                t.name.name,
                t.partition_bound.as_deref().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        parts,
        [
            "stock_movements_2026_10 FOR VALUES FROM ('2026-10-01 00:00:00+00') TO ('2026-11-01 00:00:00+00')",
            "stock_movements_2026_11 FOR VALUES FROM ('2026-11-01 00:00:00+00') TO ('2026-12-01 00:00:00+00')",
            "stock_movements_default DEFAULT",
        ]
    );
    // The partitions' copies of the parent's FK are marked inherited.
    let part = table(&c, "public", "stock_movements_2026_10");
    assert!(part.foreign_keys().all(|(con, _)| con.inherited));
    assert!(part.row_estimate.unwrap() > 0);

    // Composite FK across domains.
    let items = table(&c, "public", "shipment_items");
    let fk = items
        .foreign_keys()
        .find(|(_, fk)| fk.references == q("public", "order_items"))
        .expect("fk to order_items");
    assert_eq!(fk.0.columns, ["order_id", "line_no"]);
    assert_eq!(fk.1.referenced_columns, ["order_id", "line_no"]);

    let events = table(&c, "public", "tracking_events");
    assert!(events.primary_key().is_none());
    assert!(!events.has_usable_replica_identity());

    let summary = c.view(&q("public", "order_summary")).expect("view");
    assert!(!summary.materialized);
    let deps: Vec<String> = summary
        .depends_on
        .iter()
        .map(|d| format!("{}({})", d.relation, d.columns.join(",")))
        .collect();
    assert_eq!(
        deps,
        [
            "public.customers(email,full_name,id)",
            "public.orders(customer_id,id,order_number,placed_at,status,total)",
            "public.payments(created_at,order_id,status)",
        ]
    );
    let sales = c.view(&q("public", "daily_sales")).expect("matview");
    assert!(sales.materialized);
    assert_eq!(sales.depends_on.len(), 4);
    assert!(sales.columns.iter().any(|col| col.name == "revenue"));

    let triggers: Vec<String> = c
        .triggers()
        .map(|(rel, t)| {
            format!(
                "{rel}.{} -> {} {:?} {:?} row={}",
                t.name, t.function, t.timing, t.events, t.for_each_row
            )
        })
        .collect();
    assert_eq!(
        triggers,
        [
            "public.orders.orders_status_history -> public.record_order_status After [Update] row=true",
            "public.stock_levels.stock_levels_low_stock -> public.notify_low_stock After [Update] row=true",
        ]
    );
    let functions: Vec<String> = c
        .functions
        .iter()
        .map(|f| format!("{} {} {:?}", f.signature(), f.language, f.result))
        .collect();
    assert_eq!(
        functions,
        [
            "public.notify_low_stock() plpgsql Some(\"trigger\")",
            "public.order_total(p_order_id bigint) sql Some(\"numeric\")",
            "public.record_order_status() plpgsql Some(\"trigger\")",
        ]
    );
    assert!(c.functions[1].body.contains("FROM order_items"));

    let free: Vec<String> = c
        .sequences
        .iter()
        .filter(|s| s.owned_by.is_none())
        .map(|s| s.name.to_string())
        .collect();
    assert_eq!(
        free,
        ["public.invoice_number_seq", "public.order_number_seq"]
    );
    assert_eq!(
        c.sequences
            .iter()
            .find(|s| s.name.name == "order_number_seq")
            .unwrap()
            .start,
        100000
    );
}

/// Names PostgreSQL accepts but naive SQL building breaks on.
const HOSTILE_SQL: &str = r#"
CREATE SCHEMA "Odd Schema";
CREATE SCHEMA "select";
CREATE SCHEMA "données ünïcode";
CREATE TABLE "Odd Schema"."we""ird table" ("the ""id""" bigserial PRIMARY KEY, "Mixed Case" text, "select" int);
CREATE TABLE "select"."from" ("order" int PRIMARY KEY, "group" text UNIQUE);
CREATE TABLE public."from" ("order" int PRIMARY KEY);
CREATE TABLE "données ünïcode"."tâble 表" (id int PRIMARY KEY, "ref" int REFERENCES "select"."from" ("order"));
CREATE TABLE public.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa (
    bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb int PRIMARY KEY);
CREATE TABLE public."éééééééééééééééééééééééééééééééé" (id int);
CREATE TABLE "Odd Schema"."Parted; DROP TABLE x;--" (k int, v text) PARTITION BY LIST (k);
CREATE TABLE "Odd Schema"."part ""one""" PARTITION OF "Odd Schema"."Parted; DROP TABLE x;--" FOR VALUES IN (1);
CREATE VIEW "select"."view ""v""" AS SELECT "order", "group" FROM "select"."from";
CREATE SEQUENCE "Odd Schema"."seq 'quoted'";
CREATE FUNCTION "select"."fn ""x"""() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER "trg ""t""" BEFORE INSERT ON "select"."from" FOR EACH ROW EXECUTE FUNCTION "select"."fn ""x"""();
COMMENT ON TABLE "select"."from" IS 'it''s a "comment"';
"#;

#[tokio::test]
async fn reads_hostile_identifiers_exactly() {
    let server = server();
    create_db(&server, "hostile \"db\"", HOSTILE_SQL).await;
    let c = catalog_of(&server, "hostile \"db\"").await;
    assert_eq!(c.server.database, "hostile \"db\"");

    let long = "a".repeat(63);
    // 32 two-byte characters are 64 bytes: PostgreSQL keeps 31 of them (62 bytes).
    assert_eq!("éééééééééééééééééééééééééééééééé".len(), 64);
    let truncated = "é".repeat(31);
    let mut names: Vec<(String, String)> = c
        .tables
        .iter()
        .map(|t| (t.name.schema.clone(), t.name.name.clone()))
        .collect();
    names.sort();
    let mut expected: Vec<(String, String)> = [
        ("Odd Schema", "Parted; DROP TABLE x;--"),
        ("Odd Schema", "part \"one\""),
        ("Odd Schema", "we\"ird table"),
        ("données ünïcode", "tâble 表"),
        ("public", "from"),
        ("public", long.as_str()),
        ("public", truncated.as_str()),
        ("select", "from"),
    ]
    .iter()
    .map(|(s, n)| (s.to_string(), n.to_string()))
    .collect();
    expected.sort();
    assert_eq!(names, expected);

    let weird = table(&c, "Odd Schema", "we\"ird table");
    let cols: Vec<&str> = weird.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(cols, ["the \"id\"", "Mixed Case", "select"]);
    assert_eq!(weird.primary_key().unwrap().columns, ["the \"id\""]);
    let long_table = table(&c, "public", &long);
    assert_eq!(long_table.columns[0].name, "b".repeat(63));

    let uni = table(&c, "données ünïcode", "tâble 表");
    let (_, fk) = uni.foreign_keys().next().expect("fk");
    assert_eq!(fk.references, q("select", "from"));
    assert_eq!(fk.referenced_columns, ["order"]);

    let part = table(&c, "Odd Schema", "part \"one\"");
    assert_eq!(
        part.partition_of,
        Some(q("Odd Schema", "Parted; DROP TABLE x;--"))
    );

    let from = table(&c, "select", "from");
    assert_eq!(from.comment.as_deref(), Some("it's a \"comment\""));
    assert_eq!(from.triggers[0].name, "trg \"t\"");
    assert_eq!(from.triggers[0].function, q("select", "fn \"x\""));
    let view = c.view(&q("select", "view \"v\"")).expect("view");
    assert_eq!(view.depends_on[0].relation, q("select", "from"));
    assert_eq!(view.depends_on[0].columns, ["group", "order"]);
    assert!(c
        .sequences
        .iter()
        .any(|s| s.name == q("Odd Schema", "seq 'quoted'")));
    assert!(c
        .functions
        .iter()
        .any(|f| f.name == q("select", "fn \"x\"")));
    let schemas: Vec<&str> = c.schemas.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        schemas,
        ["Odd Schema", "données ünïcode", "public", "select"]
    );

    // The display form reads back to the same names.
    for t in &c.tables {
        let shown = t.name.to_string();
        let (s, n) = carve::sql::parse_qualified(&shown).unwrap();
        assert_eq!(
            (s, n),
            (t.name.schema.clone(), t.name.name.clone()),
            "{shown}"
        );
    }
}

#[tokio::test]
async fn leaves_out_extension_objects_and_reads_grants_and_roles() {
    let server = server();
    create_db(
        &server,
        "grants",
        "CREATE EXTENSION citext;
         CREATE TABLE t (id int PRIMARY KEY, email citext, secret text);
         CREATE ROLE app_reader LOGIN CONNECTION LIMIT 7;
         CREATE ROLE app_group NOLOGIN;
         GRANT app_group TO app_reader;
         GRANT USAGE ON SCHEMA public TO app_reader;
         GRANT SELECT ON t TO app_reader;
         GRANT UPDATE (email) ON t TO app_reader WITH GRANT OPTION;
         ALTER ROLE app_reader SET search_path = reporting, public;
         ALTER ROLE app_reader IN DATABASE grants SET search_path = \"Odd \"\"Schema\", public;
         CREATE ROLE plain LOGIN;
         CREATE ROLE elsewhere LOGIN;
         ALTER ROLE elsewhere IN DATABASE postgres SET search_path = nowhere;
         ALTER DATABASE grants SET search_path = shared, \"$user\", public;
         CREATE TEMP TABLE scratch (x int);",
    )
    .await;
    let c = catalog_of(&server, "grants").await;
    assert_eq!(c.tables.len(), 1, "temp tables are left out");
    assert!(
        c.functions.is_empty(),
        "citext's functions belong to the extension"
    );
    assert_eq!(
        c.extensions
            .iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>(),
        ["citext", "plpgsql"]
    );
    let t = &c.tables[0];
    assert_eq!(t.columns[1].type_name, "public.citext");
    assert!(t
        .grants
        .iter()
        .any(|g| g.grantee == "app_reader" && g.privilege == "SELECT" && !g.grantable));
    let email = &t.columns[1];
    assert_eq!(email.grants.len(), 1);
    assert_eq!(
        (
            email.grants[0].privilege.as_str(),
            email.grants[0].grantable
        ),
        ("UPDATE", true)
    );
    let public = c.schemas.iter().find(|s| s.name == "public").unwrap();
    assert!(public
        .grants
        .iter()
        .any(|g| g.grantee == "app_reader" && g.privilege == "USAGE"));
    let role = c.roles.iter().find(|r| r.name == "app_reader").unwrap();
    assert!(role.login);
    assert_eq!(role.connection_limit, 7);
    assert_eq!(role.member_of, ["app_group"]);
    // The search_path a login gets here: the role's in this database first, then
    // the role's, then the database's.
    let path = |name: &str| {
        c.roles
            .iter()
            .find(|r| r.name == name)
            .and_then(|r| r.search_path_list())
    };
    assert_eq!(path("app_reader").unwrap(), ["Odd \"Schema", "public"]);
    for role in ["plain", "elsewhere"] {
        assert_eq!(path(role).unwrap(), ["shared", "$user", "public"], "{role}");
    }
}

/// `pg_get_viewdef` locks each view and what it reads until the transaction ends;
/// with more views than the lock table holds, reading them in one go failed with
/// "out of shared memory" (found at 10,000 tables after assign), and so did batches
/// of 100 whose plan sorted every candidate, definition included, before the LIMIT.
/// On a server with a small lock table, 1,500 views over 1,500 tables are read
/// whole, in one snapshot, whatever plan the batch query gets.
#[tokio::test]
async fn more_views_than_the_lock_table_holds_are_read() {
    let options = carve::pgtemp::ServerOptions::default()
        .setting("max_connections", "10")
        .setting("max_locks_per_transaction", "10");
    let server = carve::pgtemp::TempServer::start_with(&options).expect("server starts");
    let sql = "DO $$ BEGIN FOR i IN 1..1500 LOOP
                 EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY)', i);
                 EXECUTE format('CREATE VIEW v%s AS SELECT id FROM t%s', i, i);
                 COMMIT; -- the small lock table holds one view's locks at a time
               END LOOP; END $$;";
    create_db(&server, "many", sql).await;
    // At 10,000 tables after assign the planner chose hash joins and a Sort under
    // the batch's LIMIT, so pg_get_viewdef ran (and took its locks) for every view
    // left rather than 100 of them: make it choose that plan at any size.
    for setting in [
        "enable_indexscan",
        "enable_bitmapscan",
        "enable_mergejoin",
        "enable_nestloop",
    ] {
        server
            .psql(
                "postgres",
                &format!("ALTER DATABASE many SET {setting} = off"),
            )
            .unwrap();
    }
    let catalog = catalog_of(&server, "many").await;
    assert_eq!(catalog.views.len(), 1500);
    let v = catalog
        .view(&carve::catalog::QualName::new("public", "v1500"))
        .unwrap();
    assert!(v.definition.contains("public.t1500"), "{}", v.definition);
    assert!(catalog.views.iter().all(|v| !v.definition.is_empty()));
}
