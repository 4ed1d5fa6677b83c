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
async fn rows(c: &tokio_postgres::Client) -> Vec<String> {
    c.query("SELECT b::text FROM book_catalog b ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn data_dump(server: &carve::pgtemp::TempServer, db: &str) -> String {
    let out = std::process::Command::new(server.bin_dir().join("pg_dump"))
        .args(["--data-only", "--table", "reading_list.book_catalog", "-d"])
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
    assert_eq!(table_domain, "reading_list", "as discover places it today");
    let mut plan = carve::plan::Plan::load(&m.plan).unwrap();
    plan.domains.push(carve::plan::Domain {
        name: "inventory".into(),
        ..Default::default()
    });
    plan.splits.push(carve::plan::Split {
        table: "public.book_catalog".into(),
        part: "book_inventory".into(),
        domain: Some("inventory".into()),
        columns: INVENTORY.iter().map(|c| c.to_string()).collect(),
    });
    plan.save(&m.plan).unwrap();
    let schema_before = schema_dump(&source, "library");

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
            admin
                .query(
                    "SELECT attname::text FROM pg_attribute WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                    &[&table],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        columns("reading_list.book_catalog").await,
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
            "SELECT (SELECT count(*) FROM reading_list.book_catalog t WHERE NOT EXISTS (SELECT 1 FROM inventory.book_inventory p WHERE p.id = t.id)) + (SELECT count(*) FROM inventory.book_inventory p WHERE NOT EXISTS (SELECT 1 FROM reading_list.book_catalog t WHERE t.id = p.id))",
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
    let seen = rows(&admin).await;
    let out = tokio::task::block_in_place(|| run(&m, &["undo", "split"]));
    assert_success(&out);
    assert_eq!(schema_dump(&source, "library"), schema_before);
    assert_eq!(rows(&admin).await, seen);
    assert!(data_dump(&source, "library").contains("COPY reading_list.book_catalog"));
}
