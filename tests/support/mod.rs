//! Shared helpers for the integration tests: real throw-away servers, never mocks.
#![allow(dead_code)]

use carve::catalog::reader::read_catalog;
use carve::catalog::Catalog;
use carve::conn::{self, ConnSpec, Environment};
use carve::pgtemp::TempServer;

/// A fresh server; the test fails (never skips) when PostgreSQL is not installed.
pub fn server() -> TempServer {
    TempServer::start().unwrap_or_else(|e| panic!("cannot start a throw-away PostgreSQL: {e}"))
}

/// An environment with no PG* variables, so tests do not depend on the caller's shell.
pub fn clean_env() -> Environment {
    Environment {
        os_user: Some("postgres".into()),
        ..Environment::default()
    }
}

pub async fn client(conninfo: &str) -> tokio_postgres::Client {
    let spec = ConnSpec::resolve(conninfo, &clean_env()).expect("conninfo");
    conn::connect(&spec).await.unwrap_or_else(|e| panic!("{e}"))
}

/// Creates database `db` on `server` and runs `sql` in it.
pub async fn create_db(server: &TempServer, db: &str, sql: &str) -> tokio_postgres::Client {
    let admin = client(&server.conninfo("postgres")).await;
    admin
        .batch_execute(&format!("CREATE DATABASE {}", carve::sql::ident(db)))
        .await
        .expect("create database");
    let c = client(&server.conninfo(db)).await;
    c.batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("loading SQL into {db}: {e:?}"));
    c
}

/// Reads the catalog over two connections, so the shared-snapshot path is exercised.
pub async fn catalog_of(server: &TempServer, db: &str) -> Catalog {
    let clients = vec![
        client(&server.conninfo(db)).await,
        client(&server.conninfo(db)).await,
    ];
    read_catalog(&clients).await.expect("read catalog")
}

pub fn example(name: &str) -> &'static carve::examples::Example {
    carve::examples::Example::all()
        .into_iter()
        .find(|e| e.name == name)
        .expect("example exists")
}

/// The `carve` binary, with an environment that does not leak the caller's settings.
pub fn carve() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("carve").expect("carve binary");
    for var in [
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGPASSWORD",
        "PGSSLMODE",
        "CARVE_PLAN",
        "CARVE_SOURCE",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("NO_COLOR", "1");
    cmd
}
