//! `carve move` and `carve undo move` as users run them, on real servers: the
//! library after assign and restrict moved to a second server, the services' roles
//! logging in there with their own passwords and finding their tables by the old
//! names, and a cancel that leaves neither server with anything of the move.

mod support;

use carve::pgtemp::TempServer;
use support::*;

/// Row count and an ordered hash of a table.
async fn rows(client: &tokio_postgres::Client, table: &str) -> (i64, String) {
    let row = client
        .query_one(
            &format!("SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM {table} t"),
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{table}: {e:?}"));
    (row.get(0), row.get(1))
}

async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// A second server for the domains, with an empty database of the monolith's name.
async fn target_server(db: &str) -> (TempServer, String) {
    let target = server();
    create_db(&target, db, "SELECT 1").await;
    let conninfo = target.conninfo(db);
    (target, conninfo)
}

/// The library after discover, assign and restrict (with passwords for new roles),
/// and the name of its reading-list domain.
async fn library_restricted(source: &TempServer, dir: &std::path::Path) -> (Monolith, String) {
    let m = example_monolith(source, dir, "library", "library").await;
    assert_success(&run(&m, &["assign"]));
    // The library's services write the common audit table: delegated to its own
    // service, so no grant reaches across the servers.
    let mut plan = carve::plan::Plan::load(&m.plan).unwrap();
    for service in ["ReadingList", "BookCatalog", "BookInventory"] {
        plan.decisions.push(carve::plan::Decision {
            subject: format!("write public.audit by {service}"),
            choice: "delegate:audit-service".into(),
            reason: "the audit service records it".into(),
        });
    }
    plan.save(&m.plan).unwrap();
    let passwords = dir.join("service-passwords");
    assert_success(&run(
        &m,
        &["restrict", "--password-file", passwords.to_str().unwrap()],
    ));
    let plan = carve::plan::Plan::load(&m.plan).unwrap();
    let domain = plan
        .domains
        .iter()
        .find(|d| d.tables.iter().any(|t| t == "public.reading_list"))
        .unwrap()
        .name
        .clone();
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

    let out = run(
        &m,
        &[
            "move",
            "--domain",
            &domain,
            "--target",
            &target_conninfo,
            "--accept-unlimited-slot-wal",
        ],
    );
    assert_success(&out);
    assert!(stdout(&out).contains("ready"), "{}", stdout(&out));

    let source_client = client(&m.conninfo).await;
    let target_client = client(&target_conninfo).await;
    let d = carve::sql::ident(&domain);
    for table in ["reading_list", "book_catalog"] {
        let name = format!("{d}.{table}");
        let (n, hash) = rows(&source_client, &name).await;
        assert!(n > 0, "{table} has rows");
        assert_eq!(rows(&target_client, &name).await, (n, hash), "{table}");
    }
    // The plan records the domain's server, without a password.
    let plan = carve::plan::Plan::load(&m.plan).unwrap();
    let recorded = plan.domains.iter().find(|d| d.name == domain).unwrap();
    let reference = carve::conn::ConnInfo::parse(&target_conninfo)
        .unwrap()
        .redacted();
    assert_eq!(recorded.server.as_deref(), Some(reference.as_str()));

    // The reading-list service logs in on the new server with the password restrict
    // gave it, and its unchanged SQL finds the table by its old name.
    let passwords = std::fs::read_to_string(dir.path().join("service-passwords")).unwrap();
    let (role, password) = passwords
        .lines()
        .map(|l| {
            let fields: Vec<&str> = l.split(':').collect();
            (fields[3].to_string(), fields[4].to_string())
        })
        .find(|(role, _)| role.to_lowercase().contains("reading"))
        .unwrap_or_else(|| panic!("no reading-list role in {passwords}"));
    let as_service = client(&format!(
        "host=127.0.0.1 port={} dbname=library user={} password={}",
        target.port(),
        carve::conn::quote_value(&role),
        carve::conn::quote_value(&password)
    ))
    .await;
    let n: i64 = as_service
        .query_one("SELECT count(*) FROM reading_list", &[])
        .await
        .unwrap()
        .get(0);
    assert!(n > 0);

    // Cancel: nothing of the move is left on either server.
    let out = run(&m, &["undo", "move", "--domain", &domain]);
    assert_success(&out);
    assert_eq!(
        count(
            &source_client,
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'carve%'"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &source_client,
            "SELECT count(*) FROM pg_publication WHERE pubname LIKE 'carve%'"
        )
        .await,
        0
    );
    assert_eq!(
        count(&target_client, "SELECT count(*) FROM pg_subscription").await,
        0
    );
    assert_eq!(
        count(
            &target_client,
            &format!(
                "SELECT count(*) FROM pg_namespace WHERE nspname = {}",
                carve::sql::literal(&domain).unwrap()
            )
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &target_client,
            "SELECT count(*) FROM pg_roles WHERE rolname !~ '^pg_' AND NOT rolsuper"
        )
        .await,
        0,
        "{:?}",
        role_listing(&target_client).await
    );
    assert_eq!(role_listing(&source_client).await, roles_before);
    assert_eq!(schema_dump(&source, "library"), before);
}
