//! The fingerprint on real databases: equal for equal schemas however they were made,
//! and the difference names exactly the change.

mod support;

use carve::catalog::fingerprint::Fingerprint;
use support::*;

fn lines(a: &Fingerprint, b: &Fingerprint) -> Vec<String> {
    a.diff(b).iter().map(ToString::to_string).collect()
}

#[tokio::test]
async fn equal_for_two_fresh_loads_in_any_order_and_with_any_data() {
    let server = server();
    let shop = example("shop");
    create_db(&server, "one", shop.schema).await;
    let two = create_db(&server, "two", shop.schema).await;
    // Different OIDs, different statistics, different sizes: same fingerprint.
    two.batch_execute(shop.seed).await.unwrap();
    two.batch_execute("ANALYZE").await.unwrap();
    let a = Fingerprint::of(&catalog_of(&server, "one").await);
    let b = Fingerprint::of(&catalog_of(&server, "two").await);
    assert_eq!(lines(&a, &b), Vec::<String>::new());
    assert_eq!(a, b);

    // The same objects created in the opposite order.
    create_db(&server, "fwd", "CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY, a_id int REFERENCES a);").await;
    create_db(&server, "rev", "CREATE TABLE b (id int PRIMARY KEY, a_id int); CREATE TABLE a (id int PRIMARY KEY); ALTER TABLE b ADD CONSTRAINT b_a_id_fkey FOREIGN KEY (a_id) REFERENCES a;").await;
    let fwd = Fingerprint::of(&catalog_of(&server, "fwd").await);
    let rev = Fingerprint::of(&catalog_of(&server, "rev").await);
    assert_eq!(lines(&fwd, &rev), Vec::<String>::new());
}

#[tokio::test]
async fn difference_lists_exactly_the_change_made() {
    let server = server();
    let library = example("library");
    let client = create_db(&server, "library", library.schema).await;
    let before = Fingerprint::of(&catalog_of(&server, "library").await);

    client
        .batch_execute("ALTER TABLE book_catalog ADD COLUMN isbn13 text")
        .await
        .unwrap();
    let after = Fingerprint::of(&catalog_of(&server, "library").await);
    assert_eq!(
        lines(&before, &after),
        ["column added: public.book_catalog.isbn13 (type=text)"]
    );

    client
        .batch_execute("ALTER TABLE audit ALTER COLUMN entity_id TYPE integer")
        .await
        .unwrap();
    let retyped = Fingerprint::of(&catalog_of(&server, "library").await);
    assert_eq!(
        lines(&after, &retyped),
        ["column changed: public.audit.entity_id: type bigint → integer"]
    );

    client
        .batch_execute("ALTER TABLE reading_list DROP CONSTRAINT reading_list_book_id_fkey")
        .await
        .unwrap();
    let dropped = Fingerprint::of(&catalog_of(&server, "library").await);
    assert_eq!(
        lines(&retyped, &dropped),
        ["constraint removed: public.reading_list.reading_list_book_id_fkey (was definition=FOREIGN KEY (book_id) REFERENCES public.book_catalog(id) ON DELETE CASCADE)"]
    );

    client
        .batch_execute("CREATE TABLE loans (id int PRIMARY KEY)")
        .await
        .unwrap();
    let added = Fingerprint::of(&catalog_of(&server, "library").await);
    let changes = lines(&dropped, &added);
    assert!(
        changes.contains(
            &"table added: public.loans (kind=table; owner=postgres; replica_identity=default)"
                .to_string()
        ),
        "{changes:#?}"
    );
    assert_eq!(
        changes.len(),
        4,
        "table, column, primary key and its index: {changes:#?}"
    );
}
