//! `carve split` and `carve undo split` on the source texts' own example: the
//! library's book_catalog, written by BookCatalog (the book's details) and by
//! BookInventory (copies, shelf, stocktake), split into the catalog and an inventory
//! part while both services keep writing through the old name.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use support::*;

const INVENTORY: [&str; 4] = [
    "copies_total",
    "copies_available",
    "shelf_location",
    "last_stocktake",
];

/// What each writer was told was written: per book, the last acknowledged value.
#[derive(Default)]
struct Acknowledged {
    titles: BTreeMap<i64, String>,
    shelves: BTreeMap<i64, (i32, String)>,
    inserted: usize,
    errors: Vec<String>,
}

/// BookCatalog's and BookInventory's writes through the old name, as their
/// workloads make them, until `stop`.
async fn writers(conninfo: String, books: Vec<i64>, stop: Arc<AtomicBool>) -> Acknowledged {
    let catalog = client(&conninfo).await;
    let inventory = client(&conninfo).await;
    let mut ack = Acknowledged::default();
    let mut n: i64 = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let book = books[(n as usize * 7) % books.len()];
        let title = format!("Edition {n}");
        match catalog
            .execute(
                "UPDATE book_catalog SET title = $2 WHERE id = $1",
                &[&book, &title],
            )
            .await
        {
            Ok(1) => {
                ack.titles.insert(book, title);
            }
            Ok(other) => ack.errors.push(format!("title of {book}: {other} rows")),
            Err(e) => ack.errors.push(format!("title of {book}: {e:?}")),
        }
        let other = books[(n as usize * 13) % books.len()];
        let total = (n % 50) as i32 + 10;
        let shelf = format!("S-{n}");
        match inventory
            .execute(
                "UPDATE book_catalog SET copies_total = $2, copies_available = $2, shelf_location = $3, last_stocktake = now() WHERE id = $1",
                &[&other, &total, &shelf],
            )
            .await
        {
            Ok(1) => {
                ack.shelves.insert(other, (total, shelf));
            }
            Ok(rows) => ack.errors.push(format!("stocktake of {other}: {rows} rows")),
            Err(e) => ack.errors.push(format!("stocktake of {other}: {e:?}")),
        }
        if n % 5 == 0 {
            let isbn = format!("978-{n:010}");
            match catalog
                .query_one(
                    "INSERT INTO book_catalog (isbn, title, author) VALUES ($1, $2, 'Anon') RETURNING id",
                    &[&isbn, &format!("New {n}")],
                )
                .await
            {
                Ok(row) => {
                    let id: i64 = row.get(0);
                    ack.titles.insert(id, format!("New {n}"));
                    ack.inserted += 1;
                }
                Err(e) => ack.errors.push(format!("insert {isbn}: {e:?}")),
            }
        }
    }
    ack
}

/// Every row of the old name, as text, in key order: what clients read.
async fn book_rows(c: &tokio_postgres::Client) -> Vec<String> {
    texts(c, "SELECT b::text FROM book_catalog b ORDER BY id", &[]).await
}

fn data_dump(server: &carve::pgtemp::TempServer, db: &str) -> String {
    let out = std::process::Command::new(server.bin_dir().join("pg_dump"))
        .args(["--data-only", "--table", "book_catalog.book_catalog", "-d"])
        .arg(server.conninfo(db))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_library_catalog_is_split_under_both_writers_and_undone_exactly() {
    let source = server();
    let dir = tempfile::tempdir().unwrap();
    let m = example_monolith(&source, dir.path(), "library", "library").await;
    assert_success(&run(&m, &["assign"]));
    let table_domain = domain_of(&m, "public.book_catalog");
    assert_eq!(table_domain, "book_catalog", "a domain of its own");
    // discover proposed the split the source texts make: BookInventory's columns in
    // a part of their own. The plan gives the part a domain of its own.
    let mut plan = carve::plan::Plan::load(&m.plan).unwrap();
    let ownership = plan
        .decisions
        .iter()
        .find(|d| d.subject == "ownership of public.book_catalog")
        .unwrap();
    assert_eq!(ownership.choice, "table-split");
    let mut columns = INVENTORY.map(String::from).to_vec();
    columns.sort();
    assert_eq!(
        plan.splits,
        [carve::plan::Split {
            table: "public.book_catalog".into(),
            part: "book_catalog_book_inventory".into(),
            domain: None,
            columns,
        }]
    );
    plan.domains.push(carve::plan::Domain {
        name: "inventory".into(),
        ..Default::default()
    });
    plan.splits[0].part = "book_inventory".into();
    plan.splits[0].domain = Some("inventory".into());
    plan.splits[0].columns = INVENTORY.map(String::from).to_vec();
    plan.save(&m.plan).unwrap();
    let schema_before = schema_dump(&source, "library");
    // A dry-run prints the steps as a script and changes nothing.
    let out = run(&m, &["split", "--dry-run"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stdout(&out).contains("CREATE TABLE \"inventory\".\"book_inventory\""));
    assert_eq!(schema_dump(&source, "library"), schema_before);

    let admin = client(&m.conninfo).await;
    let books: Vec<i64> = admin
        .query("SELECT id FROM book_catalog ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(writers(m.conninfo.clone(), books, stop.clone()));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let out = tokio::task::block_in_place(|| run(&m, &["split"]));
    assert_success(&out);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let ack = load.await.unwrap();
    assert!(ack.errors.is_empty(), "{:#?}", ack.errors);
    assert!(ack.inserted > 0 && ack.shelves.len() > 5, "the load ran");

    // Two tables now: the catalog keeps its columns, the inventory part has its own.
    let columns = |table: &'static str| {
        let admin = &admin;
        async move {
            texts(
                admin,
                "SELECT attname::text FROM pg_attribute WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                &[&table],
            )
            .await
        }
    };
    assert_eq!(
        columns("book_catalog.book_catalog").await,
        [
            "id",
            "isbn",
            "title",
            "author",
            "published_year",
            "genre",
            "description"
        ]
    );
    let mut part = vec!["id".to_string()];
    part.extend(INVENTORY.iter().map(|c| c.to_string()));
    assert_eq!(columns("inventory.book_inventory").await, part);

    // Every acknowledged write is there, read through the old name.
    for (id, title) in &ack.titles {
        let got: String = admin
            .query_one("SELECT title FROM book_catalog WHERE id = $1", &[id])
            .await
            .unwrap()
            .get(0);
        assert_eq!(&got, title, "title of book {id}");
    }
    for (id, (total, shelf)) in &ack.shelves {
        let row = admin
            .query_one(
                "SELECT copies_total, shelf_location FROM book_catalog WHERE id = $1",
                &[id],
            )
            .await
            .unwrap();
        assert_eq!(
            (row.get::<_, i32>(0), row.get::<_, String>(1)),
            (*total, shelf.clone()),
            "stocktake of book {id}"
        );
    }
    // No row of the catalog without its inventory part, and none the other way.
    let orphans: i64 = admin
        .query_one(
            "SELECT (SELECT count(*) FROM book_catalog.book_catalog t WHERE NOT EXISTS (SELECT 1 FROM inventory.book_inventory p WHERE p.id = t.id)) + (SELECT count(*) FROM inventory.book_inventory p WHERE NOT EXISTS (SELECT 1 FROM book_catalog.book_catalog t WHERE t.id = p.id))",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(orphans, 0);

    // Every statement of the services' workloads, as they are, through the old name:
    // prepared, then run in a transaction rolled back.
    admin.batch_execute("BEGIN").await.unwrap();
    let id = ack.titles.keys().next().copied().unwrap();
    for (sql, run) in [
        ("SELECT id, copies_total, copies_available, shelf_location FROM book_catalog WHERE id = $1", true),
        ("UPDATE book_catalog SET copies_available = copies_available - 1 WHERE id = $1 AND copies_available > 0 RETURNING copies_available", true),
        ("UPDATE book_catalog SET copies_available = copies_available + 1 WHERE id = $1 AND copies_available < copies_total", true),
        ("SELECT id, isbn, title, author, published_year, genre, description FROM book_catalog WHERE id = $1", true),
        ("DELETE FROM book_catalog WHERE id = $1", true),
    ] {
        let statement = admin
            .prepare(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        if run {
            admin
                .query(&statement, &[&id])
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        }
    }
    let gone: i64 = admin
        .query_one(
            "SELECT count(*) FROM inventory.book_inventory WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(gone, 0, "a delete through the view takes both parts");
    // An insert through the view fills both parts, with the table's defaults.
    let row = admin
        .query_one(
            "INSERT INTO book_catalog (isbn, title, author, shelf_location) VALUES ('x-1', 'T', 'A', 'Z-9') RETURNING id, copies_total, shelf_location",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, i32>(1), row.get::<_, String>(2)),
        (0, "Z-9".to_string())
    );
    admin.batch_execute("ROLLBACK").await.unwrap();

    // The undo puts the table back as it was: the same schema, the rows as the
    // writers left them.
    let seen = book_rows(&admin).await;
    let out = tokio::task::block_in_place(|| run(&m, &["undo", "split"]));
    assert_success(&out);
    assert_eq!(schema_dump(&source, "library"), schema_before);
    assert_eq!(book_rows(&admin).await, seen);
    assert!(data_dump(&source, "library").contains("COPY book_catalog.book_catalog"));
}

/// A table with names that break naive SQL, column grants, an index and a check on
/// the moved columns, a trigger, and a foreign key into it from another table.
const HOSTILE: &str = r#"
CREATE ROLE reader NOLOGIN;
CREATE ROLE stocker NOLOGIN;
CREATE TABLE "Bøøk ""Cat"" tåble" (
    "select" bigserial PRIMARY KEY,
    "Ti tle" text NOT NULL,
    note text,
    "Stock ""n"" count" integer NOT NULL DEFAULT 0 CHECK ("Stock ""n"" count" >= 0),
    "shelf;drop" text
);
CREATE INDEX "shelf idx" ON "Bøøk ""Cat"" tåble" ("shelf;drop");
GRANT SELECT ON "Bøøk ""Cat"" tåble" TO reader;
GRANT UPDATE ("Stock ""n"" count", "shelf;drop") ON "Bøøk ""Cat"" tåble" TO stocker;
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.note := 'touched'; RETURN NEW; END $$;
CREATE TRIGGER "touch me" BEFORE UPDATE ON "Bøøk ""Cat"" tåble" FOR EACH ROW EXECUTE FUNCTION touch();
CREATE TABLE loans (id serial PRIMARY KEY, book bigint NOT NULL REFERENCES "Bøøk ""Cat"" tåble" ("select"));
INSERT INTO "Bøøk ""Cat"" tåble" ("Ti tle", "Stock ""n"" count", "shelf;drop")
    SELECT 'Book ' || g, g % 7, 'S' || (g % 100) FROM generate_series(1, 200000) g;
INSERT INTO loans (book) SELECT g FROM generate_series(1, 100) g;
"#;

/// A digest of every row of the hostile table, read through its old name.
async fn digest(admin: &tokio_postgres::Client, name: &str) -> String {
    admin
        .query_one(
            &format!("SELECT md5(string_agg(b::text, ',' ORDER BY \"select\")) FROM {name} b"),
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_names_grants_triggers_and_keys_survive_a_split_killed_mid_copy_its_move_and_its_undo(
) {
    let source = server();
    let dir = tempfile::tempdir().unwrap();
    let workload = dir.path().join("workload");
    std::fs::create_dir_all(&workload).unwrap();
    std::fs::write(
        workload.join("books.sql"),
        "UPDATE \"Bøøk \"\"Cat\"\" tåble\" SET \"Ti tle\" = $2 WHERE \"select\" = $1;\nINSERT INTO loans (book) VALUES ($1);\n",
    )
    .unwrap();
    std::fs::write(
        workload.join("stock.sql"),
        "UPDATE \"Bøøk \"\"Cat\"\" tåble\" SET \"Stock \"\"n\"\" count\" = $2, \"shelf;drop\" = $3 WHERE \"select\" = $1;\n",
    )
    .unwrap();
    let m = monolith(&source, dir.path(), "hostile", HOSTILE, workload).await;
    assert_success(&run(&m, &["assign"]));
    let name = "public.\"Bøøk \"\"Cat\"\" tåble\"";
    let domain = domain_of(&m, name);
    let mut plan = carve::plan::Plan::load(&m.plan).unwrap();
    let part = "Stöck \"part\" tåble";
    plan.splits = vec![carve::plan::Split {
        table: name.into(),
        part: part.into(),
        domain: None,
        columns: vec!["Stock \"n\" count".into(), "shelf;drop".into()],
    }];
    plan.save(&m.plan).unwrap();
    let schema_before = schema_dump(&source, "hostile");
    let admin = client(&m.conninfo).await;
    let table = carve::sql::qualified(&domain, "Bøøk \"Cat\" tåble");
    let part_name = carve::sql::qualified(&domain, part);
    let rows_before = digest(&admin, name).await;

    // Killed during the copy (the third step), once some batches are in, and its
    // sessions ended as a crash would end them: the same command finishes.
    let mut child = spawn(&m, &["split"]);
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stderr.take().unwrap()));
    lines_until(&mut lines, "[3/4]");
    let copied = loop {
        let n: i64 = admin
            .query_one(&format!("SELECT count(*) FROM {part_name}"), &[])
            .await
            .unwrap()
            .get(0);
        if n > 0 {
            break n;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    };
    child.kill().unwrap();
    child.wait().unwrap();
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'carve%' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    let left: i64 = admin
        .query_one(&format!("SELECT count(*) FROM {part_name}"), &[])
        .await
        .unwrap()
        .get(0);
    eprintln!("killed with {left} of 200000 rows copied (first seen: {copied})");
    assert!(left > 0 && left < 200_000, "killed part-way: {left}");
    let out = run_past_lock(&m, &["split"]);
    assert_success(&out);
    let rows_after = digest(&admin, name).await;
    assert_eq!(
        rows_after, rows_before,
        "every row reads the same through the view"
    );
    let count = |sql: String| {
        let admin = &admin;
        async move { admin.query_one(&sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert_eq!(
        count(format!("SELECT count(*) FROM {part_name}")).await,
        200_000
    );
    // The column grants, the index and the check went with their columns.
    let stocker_may: bool = admin
        .query_one(
            "SELECT has_column_privilege('stocker', $1, 'shelf;drop', 'UPDATE')",
            &[&part_name],
        )
        .await
        .unwrap()
        .get(0);
    assert!(stocker_may);
    assert_eq!(
        count(format!(
            "SELECT count(*) FROM pg_indexes WHERE tablename = {} AND indexdef LIKE '%(\"shelf;drop\")%'",
            carve::sql::literal(part).unwrap()
        ))
        .await,
        1
    );
    let err = admin
        .execute(
            &format!("UPDATE {name} SET \"Stock \"\"n\"\" count\" = -1 WHERE \"select\" = 1"),
            &[],
        )
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("check"), "{err:?}");
    // The table's trigger still fires for a write through the view; the loans still
    // point at their books.
    admin
        .execute(
            &format!(
                "UPDATE {name} SET \"Ti tle\" = 'x', \"shelf;drop\" = 'moved' WHERE \"select\" = 2"
            ),
            &[],
        )
        .await
        .unwrap();
    let row = admin
        .query_one(
            &format!("SELECT note, \"shelf;drop\" FROM {name} WHERE \"select\" = 2"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("touched".to_string(), "moved".to_string())
    );
    assert_eq!(
        count(format!(
            "SELECT count(*) FROM loans l JOIN {table} b ON b.\"select\" = l.book"
        ))
        .await,
        100
    );

    // The domain moves with the view over both parts, hostile names and all: on
    // its server the old name reads every row as on the source, and a write
    // through it reaches the part (rolled back: the server follows the source).
    let mut plan = carve::plan::Plan::load(&m.plan).unwrap();
    plan.let_kept_crossings_go("the test moves the domain");
    plan.save(&m.plan).unwrap();
    let (target_server, target) = target_server("hostile").await;
    let out = move_to(&m, &domain, &target, &[]);
    assert_eq!(code(&out), 0, "{}\n{}", stderr(&out), stdout(&out));
    let there = client(&target).await;
    assert_eq!(digest(&there, name).await, digest(&admin, name).await);
    there
        .batch_execute(&format!(
            "BEGIN; UPDATE {name} SET \"shelf;drop\" = 'there' WHERE \"select\" = 3;"
        ))
        .await
        .unwrap();
    let shelf: String = there
        .query_one(
            &format!("SELECT \"shelf;drop\" FROM {part_name} WHERE \"select\" = 3"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(shelf, "there");
    there.batch_execute("ROLLBACK").await.unwrap();
    assert_success(&run(&m, &["undo", "move", "--domain", &domain]));
    drop(there);
    drop(target_server);

    // The undo puts everything back as it was (the moved columns were the last).
    let out = run(&m, &["undo", "split"]);
    assert_success(&out);
    assert_eq!(schema_dump(&source, "hostile"), schema_before);
    // Book 2 as it was before the test wrote it (past the table's trigger).
    admin
        .batch_execute(&format!(
            "SET session_replication_role = replica; UPDATE {table} SET \"Ti tle\" = 'Book 2', note = NULL, \"shelf;drop\" = 'S2' WHERE \"select\" = 2; RESET session_replication_role;"
        ))
        .await
        .unwrap();
    let rows_undone = digest(&admin, name).await;
    assert_eq!(rows_undone, rows_before);
}

#[tokio::test]
async fn after_a_split_restrict_gives_each_writer_the_columns_of_its_own_part() {
    let source = server();
    let dir = tempfile::tempdir().unwrap();
    let m = example_monolith(&source, dir.path(), "library", "library").await;
    assert_success(&run(&m, &["assign"]));
    let mut plan = carve::plan::Plan::load(&m.plan).unwrap();
    plan.domains.push(carve::plan::Domain {
        name: "inventory".into(),
        ..Default::default()
    });
    for d in &mut plan.domains {
        d.column_privileges = true;
    }
    for s in &mut plan.services {
        if s.name == "BookInventory" {
            s.domain = Some("inventory".into());
        }
    }
    plan.splits = vec![carve::plan::Split {
        table: "public.book_catalog".into(),
        part: "book_inventory".into(),
        domain: Some("inventory".into()),
        columns: INVENTORY.iter().map(|c| c.to_string()).collect(),
    }];
    plan.save(&m.plan).unwrap();
    let schema_before = schema_dump(&source, "library");
    assert_success(&run(&m, &["split"]));
    decide_library_crossings(&m);

    // What is left to decide is what really crosses: reading the other part through
    // the joined view, and a new book's stock row made by the catalog's INSERT.
    let out = run(&m, &["--format", "json", "restrict", "--dry-run"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut plan = carve::plan::Plan::load(&m.plan).unwrap();
    let mut subjects = Vec::new();
    for c in json["crossings"].as_array().unwrap() {
        if c["decision"].is_object() {
            continue;
        }
        let subject = c["subject"].as_str().unwrap().to_string();
        subjects.push(subject.clone());
        plan.decisions.push(carve::plan::Decision {
            choice: if c["write"].as_bool().unwrap() {
                "temporary-grant:BookInventory".into()
            } else {
                "temporary-grant".into()
            },
            subject,
            reason: "the catalog and its stock are read together until each has an API".into(),
            rows: None,
        });
    }
    subjects.sort();
    assert_eq!(
        subjects,
        [
            "read inventory.book_inventory by BookCatalog",
            "read inventory.book_inventory by ReadingList",
            "read public.book_catalog by BookInventory",
            "write inventory.book_inventory by BookCatalog",
        ]
    );
    plan.save(&m.plan).unwrap();
    let passwords = dir.path().join("passwords");
    let out = run(
        &m,
        &["restrict", "--password-file", passwords.to_str().unwrap()],
    );
    assert_success(&out);
    assert!(
        stdout(&out).contains("0 fail unexpectedly"),
        "{}",
        stdout(&out)
    );
    // In order: the split is not undone under restrict's grants, nor run again.
    let out = run(&m, &["undo", "split"]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("carve undo restrict"),
        "{}",
        stderr(&out)
    );
    let out = run(&m, &["split"]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("split comes before restrict"),
        "{}",
        stderr(&out)
    );

    // Each writer may write the columns of its own part through the old name, and
    // not the other's.
    let admin = client(&m.conninfo).await;
    let may = |role: &'static str, column: &'static str| {
        let admin = &admin;
        async move {
            admin
                .query_one(
                    "SELECT has_column_privilege($1, 'public.book_catalog', $2, 'UPDATE')",
                    &[&role, &column],
                )
                .await
                .unwrap()
                .get::<_, bool>(0)
        }
    };
    assert!(may("BookInventory", "copies_available").await);
    assert!(!may("BookInventory", "title").await);
    assert!(may("BookCatalog", "title").await);
    assert!(!may("BookCatalog", "copies_available").await);
    let inventory = client(&as_role(&source, "library", "BookInventory")).await;
    let n = inventory
        .execute(
            "UPDATE book_catalog SET copies_available = copies_available + 1 WHERE id = 1 AND copies_available < copies_total",
            &[],
        )
        .await
        .unwrap();
    assert!(n <= 1);
    let err = inventory
        .execute("UPDATE book_catalog SET title = 'mine' WHERE id = 1", &[])
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("permission denied"), "{err:?}");

    // Back as it was: restrict, then the split.
    assert_success(&run(&m, &["undo", "restrict"]));
    assert_success(&run(&m, &["undo", "split"]));
    assert_eq!(schema_dump(&source, "library"), schema_before);
}

/// A split inside one domain moves with it, and `carve undo move` takes all of it
/// back: the view over both parts, its trigger and functions go from the domain's
/// server with the rest of the move, and the source keeps its split as it was.
#[tokio::test]
async fn a_moved_split_is_undone_with_its_move_leaving_nothing_on_either_server() {
    let source = server();
    let dir = tempfile::tempdir().unwrap();
    let m = example_monolith(&source, dir.path(), "library", "library").await;
    decide_library_crossings(&m);
    for phase in ["assign", "split", "restrict"] {
        assert_success(&run(&m, &[phase]));
    }
    let before = schema_dump(&source, "library");
    let (target_server, target) = target_server("library").await;
    assert_success(&move_to(&m, "book_catalog", &target, &[]));
    let on_target = client(&target).await;
    let view_with_trigger = "SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass('public.book_catalog') AND tgname = 'carve_split_write'";
    assert_eq!(count(&on_target, view_with_trigger).await, 1);
    // Rows written through the old name on the source reach both parts there.
    let admin = client(&m.conninfo).await;
    admin
        .execute(
            "INSERT INTO public.book_catalog (isbn, title, author, copies_total, copies_available) VALUES ('978-1', 'Followed', 'A', 3, 2)",
            &[],
        )
        .await
        .unwrap();
    let arrived = "SELECT count(*) FROM public.book_catalog WHERE title = 'Followed' AND copies_available = 2";
    let mut waited = 0;
    while count(&on_target, arrived).await == 0 {
        waited += 1;
        assert!(waited < 100, "the row did not reach the domain's server");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let out = run(&m, &["undo", "move", "--domain", "book_catalog"]);
    assert_eq!(code(&out), 0, "{}\n{}", stderr(&out), stdout(&out));
    assert_no_move_left(&admin, &on_target, "book_catalog").await;
    assert_eq!(
        count(
            &on_target,
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"
        )
        .await,
        0,
        "the view over both parts is gone from the domain's server"
    );
    assert_eq!(schema_dump(&source, "library"), before);
    drop(target_server);
}

/// A table three services write, each its own columns: two splits, one per other
/// writer, carried out together. The old name becomes a view over the table and
/// both parts that takes each service's unchanged writes to the part that owns
/// the columns, and undo gives back the same schema and rows.
#[tokio::test]
async fn a_table_with_three_writers_is_split_into_three_parts_and_undone_exactly() {
    let source = server();
    let dir = tempfile::tempdir().unwrap();
    let workload = dir.path().join("workload");
    for (service, sql) in [
        (
            "catalog",
            "INSERT INTO products (name, description) VALUES ($1, $2) RETURNING id;\nUPDATE products SET name = $2, description = $3 WHERE id = $1;\nDELETE FROM products WHERE id = $1;\n",
        ),
        (
            "pricing",
            "UPDATE products SET price = $2 WHERE id = $1;\nSELECT id, name, price FROM products WHERE id = $1;\n",
        ),
        (
            "warehouse",
            "UPDATE products SET stock = stock - $2, shelf = $3 WHERE id = $1;\nSELECT stock, shelf FROM products WHERE id = $1;\n",
        ),
        // Services of their own tables: three writers of seven make products
        // jointly written, not common.
        ("orders", "INSERT INTO order_lines (product_id, qty) VALUES ($1, $2);\n"),
        ("shipping", "INSERT INTO shipments (note) VALUES ($1);\n"),
        ("reviews", "INSERT INTO reviews (stars) VALUES ($1);\n"),
        ("marketing", "INSERT INTO coupons (code) VALUES ($1);\n"),
    ] {
        std::fs::create_dir_all(workload.join(service)).unwrap();
        std::fs::write(workload.join(service).join("queries.sql"), sql).unwrap();
    }
    let m = monolith(
        &source,
        dir.path(),
        "store",
        "CREATE TABLE products (id bigserial PRIMARY KEY, name text NOT NULL, description text, price numeric(10,2) NOT NULL DEFAULT 0 CHECK (price >= 0), stock integer NOT NULL DEFAULT 0, shelf text);
         CREATE INDEX products_shelf ON products (shelf);
         CREATE TABLE order_lines (id bigserial PRIMARY KEY, product_id bigint NOT NULL REFERENCES products (id), qty integer NOT NULL);
         CREATE TABLE shipments (id bigserial PRIMARY KEY, note text);
         CREATE TABLE reviews (id bigserial PRIMARY KEY, stars integer);
         CREATE TABLE coupons (id bigserial PRIMARY KEY, code text);
         INSERT INTO products (name, description, price, stock, shelf) SELECT 'p' || g, 'd' || g, g, g * 2, 'S' || (g % 7) FROM generate_series(1, 12000) g;
         INSERT INTO order_lines (product_id, qty) SELECT g, 1 FROM generate_series(1, 100) g;",
        workload,
    )
    .await;
    // The team decides the split discover proposes among its resolutions (three
    // parts, one per writer); discover run again writes a [[splits]] entry per other
    // writer.
    let mut plan = carve::plan::Plan::load(&m.plan).unwrap();
    let domain = domain_of(&m, "public.products");
    let subject = "ownership of public.products";
    plan.decisions.retain(|d| d.subject != subject);
    plan.decisions.push(carve::plan::Decision {
        subject: subject.into(),
        choice: "table-split".into(),
        reason: "each service owns its columns".into(),
        rows: None,
    });
    plan.splits.clear();
    plan.save(&m.plan).unwrap();
    let workload = m.workload.to_str().unwrap().to_string();
    assert_success(&run(&m, &["discover", "--workload", &workload]));
    let mut splits: Vec<(String, Vec<String>)> = carve::plan::Plan::load(&m.plan)
        .unwrap()
        .splits
        .iter()
        .map(|s| (s.table.clone(), s.columns.clone()))
        .collect();
    splits.sort();
    assert_eq!(
        splits,
        [
            ("public.products".to_string(), vec!["price".to_string()]),
            (
                "public.products".to_string(),
                vec!["shelf".into(), "stock".into()]
            ),
        ]
    );
    // The order lines' key into products crosses domains: it goes at the move.
    assign_letting_crossings_go(&m);
    let before = schema_dump(&source, "store");
    let admin = client(&m.conninfo).await;
    let rows_before = product_rows(&admin).await;

    let out = run(&m, &["split"]);
    assert_eq!(code(&out), 0, "{}\n{}", stderr(&out), stdout(&out));
    let parts: Vec<String> = carve::plan::Plan::load(&m.plan)
        .unwrap()
        .splits
        .iter()
        .map(|s| {
            format!(
                "{}.{}",
                carve::sql::ident(&domain),
                carve::sql::ident(&s.part)
            )
        })
        .collect();
    for part in &parts {
        let n = count(&admin, &format!("SELECT count(*) FROM {part}")).await;
        assert_eq!(n, 12000, "{part}");
    }
    assert_eq!(
        product_rows(&admin).await,
        rows_before,
        "the view shows every row as it was"
    );
    // Each service's statements through the old name.
    let id: i64 = admin
        .query_one(
            "INSERT INTO products (name, description) VALUES ('new', 'made through the view') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    admin
        .execute("UPDATE products SET price = 9.5 WHERE id = $1", &[&id])
        .await
        .unwrap();
    admin
        .execute(
            "UPDATE products SET stock = stock - 1, shelf = 'Z' WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    let row = admin
        .query_one(
            "SELECT name, price::text, stock, shelf FROM products WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, i32>(2),
            row.get::<_, String>(3)
        ),
        ("new".into(), "9.50".into(), -1, "Z".into())
    );
    admin
        .execute("DELETE FROM products WHERE id = $1", &[&id])
        .await
        .unwrap();
    let orphans = format!(
        "SELECT (SELECT count(*) FROM {}) + (SELECT count(*) FROM {})",
        parts[0], parts[1]
    );
    assert_eq!(
        count(&admin, &orphans).await,
        24000,
        "the delete took every part's row"
    );
    // The order lines' key still points at the table.
    let refused = admin
        .execute("DELETE FROM products WHERE id = 1", &[])
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION),
        "{refused}"
    );
    // The check went with price.
    let refused = admin
        .execute("UPDATE products SET price = -1 WHERE id = 1", &[])
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION),
        "{refused}"
    );

    // restrict proves each service's statements on its part; the domain then moves
    // with all three parts and the view over them.
    let out = run(&m, &["restrict"]);
    assert_eq!(code(&out), 0, "{}\n{}", stderr(&out), stdout(&out));
    let (target_server, target) = target_server("store").await;
    let out = move_to(&m, &domain, &target, &[]);
    assert_eq!(code(&out), 0, "{}\n{}", stderr(&out), stdout(&out));
    assert!(
        stdout(&out).contains("0 fail unexpectedly"),
        "every statement runs on the domain's server: {}",
        stdout(&out)
    );
    let out = run(&m, &["undo", "move", "--domain", &domain]);
    assert_eq!(code(&out), 0, "{}\n{}", stderr(&out), stdout(&out));
    drop(target_server);
    let out = run(&m, &["undo", "restrict"]);
    assert_eq!(code(&out), 0, "{}\n{}", stderr(&out), stdout(&out));

    let out = run(&m, &["undo", "split"]);
    assert_eq!(code(&out), 0, "{}\n{}", stderr(&out), stdout(&out));
    assert_eq!(schema_dump(&source, "store"), before);
    assert_eq!(product_rows(&admin).await, rows_before);
}

/// A digest of every row of the store's products, through the old name.
async fn product_rows(c: &tokio_postgres::Client) -> String {
    c.query_one(
        "SELECT md5(string_agg(format('%s|%s|%s|%s|%s|%s', id, name, description, price, stock, shelf), ',' ORDER BY id)) FROM public.products",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}
