//! Phase 4, move: a domain's schema to its own server on PostgreSQL's logical
//! replication, while its services keep writing to the monolith. Pure: the
//! preflight weighs facts the command reads, and `steps` lays out, in order, what
//! runs on the source (`source`) and on the domain's server (`domain:NAME`):
//!
//! 1. the roles that own and use the domain, with their source passwords (`objects`);
//! 2. the schema, the functions it needs, sequences, tables with their keys and
//!    replica identity, views (a split's, under the old name), triggers (`schema`);
//! 3. owners, grants and the services' `search_path` (`objects`);
//! 4. a replication role, a publication and a subscription that copies the tables
//!    and then follows every change, and a wait for the copy (`replication`);
//! 5. what was deferred to make the copy fast: secondary indexes, foreign keys
//!    (`NOT VALID`, then validated) (`schema`);
//! 6. the other domains' columns its services read by a `replicate` decision: a
//!    copy on its server, fed by a stream of its own from the source (`reads`);
//! 7. a split across domains (`split_across`): for a part, the old name over the
//!    copy of the table and the part, and the trigger on the copy that makes the
//!    part's rows once cut over; for a table whose parts stay, on the source, a
//!    trigger that keeps those parts whole as its rows come back after cut-over;
//! 8. a wait until the target is within `max_lag` bytes of the source, and ANALYZE:
//!    the move is *ready* for cut-over.
//!
//! Undone last step first, which leaves neither server with anything of the move.

pub mod objects;
pub mod preflight;
pub mod reads;
pub mod replication;
pub mod schema;
pub mod split_across;

use std::time::Duration;

use crate::catalog::Catalog;
use crate::engine::{SqlAction, Step, Target};

/// The phase's name in the plan (one record per domain).
pub const PHASE: &str = crate::plan::phase_names::MOVE;

/// `carve move`'s defaults (its `--help` shows the same), which `carve plan` plans with.
pub const DEFAULT_MAX_LAG: u64 = 1 << 20;
pub const DEFAULT_COPY_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_CATCH_UP_TIMEOUT: Duration = Duration::from_secs(3600);

/// How a move runs, besides the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveOptions {
    /// How the domain's server reaches the source, and where the replication
    /// role's password is kept.
    pub link: replication::Link,
    /// Bytes of the source's WAL the target may still have to apply at *ready*.
    pub max_lag: u64,
    /// How long the initial copy may take.
    pub copy_timeout: Duration,
    /// How long catching up to `max_lag` may take once the copy is done.
    pub catch_up_timeout: Duration,
    /// The other domains' columns its services read by a `replicate` decision,
    /// copied to its server (`reads`).
    pub reads: Vec<crate::phases::cutover::replica::Replica>,
}

/// A SQL step on the domain's server.
fn on_domain(domain: &str, id: String, description: String, action: SqlAction) -> Step {
    Step::sql(id, description, Target::Domain(domain.to_string()), action)
}

/// The relations and functions the move changes on the source, which the
/// fingerprint gate sets aside while it is under way (`split_across`).
pub fn source_touches(catalog: &Catalog, domain: &str) -> Vec<String> {
    split_across::table_side(catalog, domain)
        .iter()
        .flat_map(|s| s.touches())
        .collect()
}

/// Every step of `domain`'s move, in the order they run (see the module doc).
pub fn steps(catalog: &Catalog, domain: &str, options: &MoveOptions) -> Vec<Step> {
    let target = schema::target_schema(catalog, domain);
    let mut steps = objects::role_steps(catalog, domain);
    steps.extend(target.steps);
    steps.extend(objects::privilege_steps(catalog, domain));
    steps.extend(replication::replication_steps(
        domain,
        &options.link,
        options.copy_timeout,
    ));
    steps.extend(target.deferred);
    steps.extend(reads::steps(
        catalog,
        domain,
        &options.link,
        &options.reads,
        options.copy_timeout,
    ));
    steps.extend(
        split_across::part_side(catalog, domain)
            .iter()
            .flat_map(|s| s.part_steps(catalog, domain, &options.reads)),
    );
    steps.extend(
        split_across::table_side(catalog, domain)
            .iter()
            .filter_map(|s| s.follow_step(catalog)),
    );
    steps.extend(replication::ready_steps(
        domain,
        options.max_lag,
        options.catch_up_timeout,
    ));
    steps
}
