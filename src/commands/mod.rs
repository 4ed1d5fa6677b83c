//! One module per command: each turns validated settings into work, using the pure core
//! (catalog, plan) and the thin I/O layers (conn, pgtemp, ui).

pub mod assign;
pub mod cutover;
pub mod demo;
mod demo_load;
pub mod discover;
pub mod inspect;
pub mod move_domain;
pub mod phase;
pub mod plan;
pub mod restrict;
pub mod retire;
pub mod run;
pub mod split;
pub mod status;
pub mod undo;
pub mod verify;
pub mod wizard;

use anyhow::Context;

use crate::conn::{self, ConnSpec, Environment};

/// How many connections read the catalog side by side: enough to keep a server's
/// cores busy, few enough to be polite to a production database.
pub const CATALOG_CONNECTIONS: usize = 3;

/// Resolves and opens `n` connections to the source (`--source`, or the plan's).
pub async fn connect_source(
    source: &str,
    n: usize,
) -> anyhow::Result<(ConnSpec, Vec<tokio_postgres::Client>)> {
    let spec = ConnSpec::resolve(source, &Environment::from_process())
        .context("bad connection string (--source, or the plan's source for phases that change the database)")?;
    let clients = conn::connect_many(&spec, n).await?;
    Ok((spec, clients))
}

/// Resolves a connection string as libpq would and opens one connection.
pub async fn connect(conninfo: &str) -> anyhow::Result<tokio_postgres::Client> {
    let spec = ConnSpec::resolve(conninfo, &Environment::from_process())?;
    Ok(conn::connect(&spec).await?)
}
