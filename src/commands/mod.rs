//! One module per command: each turns validated settings into work, using the pure core
//! (catalog, plan) and the thin I/O layers (conn, pgtemp, ui).

pub mod demo;
pub mod inspect;

use anyhow::Context;

use crate::conn::{self, ConnSpec, Environment};

/// Resolves and opens the `--source` connection.
pub async fn connect_source(source: &str) -> anyhow::Result<(ConnSpec, tokio_postgres::Client)> {
    let spec = ConnSpec::resolve(source, &Environment::from_process())
        .context("bad --source connection string")?;
    let client = conn::connect(&spec).await?;
    Ok((spec, client))
}
