//! Phase 4's preflight: every reason a domain cannot move to its own server yet,
//! found at once and before anything changes (DESIGN.md, "Preflight refuses").
//!
//! Pure: the plan, the source's catalog after assign, and plain facts about the two
//! servers (settings, slots in use, large objects, the oldest transaction, which of
//! the target's tables hold rows), which the command reads.

use std::collections::{BTreeMap, BTreeSet};

use crate::catalog::{Catalog, QualName, ReplicaIdentity, TableKind};
use crate::plan::{phase_names, Plan};
use crate::sql::display_ident;

pub use crate::catalog::facts::ServerFacts;

/// The target's side: its server, which of the domain's tables already hold rows
/// there, and the types it has outside the system schemas.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetFacts {
    pub server: ServerFacts,
    pub non_empty_tables: Vec<QualName>,
    pub types: Vec<QualName>,
}

/// What the user accepted explicitly.
#[derive(Debug, Clone, PartialEq)]
pub struct Acceptances {
    /// `max_slot_wal_keep_size = -1`: an orphaned slot may fill the source's disk.
    pub unlimited_slot_wal: bool,
    /// A transaction older than this stalls the slot's creation.
    pub long_transaction_secs: f64,
}

impl Default for Acceptances {
    fn default() -> Self {
        Acceptances {
            unlimited_slot_wal: false,
            long_transaction_secs: 60.0,
        }
    }
}

/// How many table-synchronization workers a subscription runs at once (PostgreSQL's
/// default `max_sync_workers_per_subscription`): each takes a slot and a WAL sender on
/// the source and a worker on the target while the initial copy runs.
const SYNC_WORKERS: i32 = 2;

/// The choice that lets a table with `REPLICA IDENTITY FULL` move (every replicated
/// UPDATE or DELETE then scans the table on the target).
pub const REPLICA_IDENTITY_FULL_CHOICE: &str = "accept-full";

/// Built-in types without a default equality operator: a `REPLICA IDENTITY FULL`
/// table with one cannot have its UPDATEs and DELETEs applied on the target.
const NO_EQUALITY: &[&str] = &["json", "xml", "point", "polygon", "path"];

/// One reason the move must not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The table, setting or decision it is about.
    pub what: String,
    pub why: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.what, self.why)
    }
}

/// Every reason `domain` cannot move from `source` to `target` now; empty when it can.
pub fn check(
    plan: &Plan,
    catalog: &Catalog,
    domain: &str,
    source: &ServerFacts,
    target: &TargetFacts,
    accepted: &Acceptances,
) -> Vec<Refusal> {
    let mut out = Vec::new();
    let mut refuse = |what: String, why: String| out.push(Refusal { what, why });

    if !plan.domains.iter().any(|d| d.name == domain) {
        refuse(
            format!("domain {}", display_ident(domain)),
            "the plan has no such domain".into(),
        );
        return out;
    }
    if !plan
        .phase(phase_names::ASSIGN)
        .is_some_and(|r| r.is_applied())
    {
        refuse(
            "assign".into(),
            "the domain's tables must be in their schema first: run `carve assign`".into(),
        );
    }

    // Servers.
    for (side, facts) in [("source", source), ("target", &target.server)] {
        if facts.version_num < 150_000 {
            refuse(
                format!("{side} server"),
                format!(
                    "PostgreSQL {} is too old: carve moves with publications FOR TABLES IN SCHEMA, which arrived in 15",
                    facts.version
                ),
            );
        }
    }
    if source.wal_level != "logical" {
        refuse(
            "wal_level on the source".into(),
            format!(
                "is {}, and logical replication needs logical (ALTER SYSTEM SET wal_level = logical, then restart)",
                source.wal_level
            ),
        );
    }
    let need = 1 + SYNC_WORKERS;
    let free_slots = source.max_replication_slots - source.replication_slots_used;
    if free_slots < need {
        refuse(
            "max_replication_slots on the source".into(),
            format!(
                "{} of {} are free; the move needs {need} (its slot and {SYNC_WORKERS} for the initial copy)",
                free_slots.max(0),
                source.max_replication_slots
            ),
        );
    }
    let free_senders = source.max_wal_senders - source.wal_senders_used;
    if free_senders < need {
        refuse(
            "max_wal_senders on the source".into(),
            format!(
                "{} of {} are free; the move needs {need}",
                free_senders.max(0),
                source.max_wal_senders
            ),
        );
    }
    let workers = &target.server;
    let free_workers = workers.max_logical_replication_workers - workers.logical_workers_used;
    if free_workers < need {
        refuse(
            "max_logical_replication_workers on the target".into(),
            format!(
                "{} of {} are free ({} run for other subscriptions); the move needs {need} (the apply worker and {SYNC_WORKERS} copying)",
                free_workers.max(0),
                workers.max_logical_replication_workers,
                workers.logical_workers_used
            ),
        );
    }
    let processes_needed = workers.logical_workers_used + need + 1;
    if workers.max_worker_processes < processes_needed {
        refuse(
            "max_worker_processes on the target".into(),
            format!(
                "is {}; the move needs at least {processes_needed} (its replication workers, the {} running already, and the launcher)",
                workers.max_worker_processes,
                workers.logical_workers_used
            ),
        );
    }
    if source.max_slot_wal_keep_size < 0 && !accepted.unlimited_slot_wal {
        refuse(
            "max_slot_wal_keep_size on the source".into(),
            "is unlimited (-1): a slot left behind would keep WAL until the disk is full; set a limit, or accept it explicitly".into(),
        );
    }
    if source.large_objects > 0 {
        refuse(
            "large objects".into(),
            format!(
                "the source holds {} large object(s); logical replication does not copy them",
                source.large_objects
            ),
        );
    }
    if let Some((secs, pid)) = source.oldest_transaction {
        if secs > accepted.long_transaction_secs {
            refuse(
                "a long transaction on the source".into(),
                format!(
                    "backend pid {pid} has had a transaction open for {secs:.0} s; creating the replication slot waits for it to end"
                ),
            );
        }
    }

    // The domain's relations, where assign put them.
    let tables: Vec<_> = catalog
        .tables
        .iter()
        .filter(|t| t.name.schema == domain)
        .collect();
    if tables.is_empty() {
        refuse(
            format!("schema {}", display_ident(domain)),
            "holds no table: nothing to move (is assign applied?)".into(),
        );
    }
    for table in &tables {
        let what = format!("table {}", table.name);
        if table.kind == TableKind::Foreign {
            refuse(
                what.clone(),
                "is a foreign table: logical replication cannot publish it".into(),
            );
            continue;
        }
        if table.unlogged {
            refuse(
                what.clone(),
                "is unlogged: its changes never reach the WAL, so replication cannot see them"
                    .into(),
            );
        }
        if table.partition_of.is_some() {
            continue; // partitions are published through their root
        }
        match &table.replica_identity {
            ReplicaIdentity::Default if table.primary_key().is_none() => refuse(
                what.clone(),
                "has no primary key and replica identity DEFAULT: once published, its UPDATEs and DELETEs fail on the source; add a primary key or a unique replica identity index".into(),
            ),
            ReplicaIdentity::Nothing => refuse(
                what.clone(),
                "has replica identity NOTHING: once published, its UPDATEs and DELETEs fail on the source".into(),
            ),
            ReplicaIdentity::Full => {
                let subject = format!("replica identity {}", table.name);
                let accepted = plan
                    .decision(&subject)
                    .is_some_and(|d| d.choice == REPLICA_IDENTITY_FULL_CHOICE);
                if !accepted {
                    refuse(
                        what.clone(),
                        format!(
                            "has replica identity FULL: every replicated UPDATE and DELETE scans the table on the target; add a primary key, or record [[decisions]] subject = {subject:?}, choice = {REPLICA_IDENTITY_FULL_CHOICE:?}"
                        ),
                    );
                }
                // The target finds the row an UPDATE or DELETE names by comparing
                // every column: a type without an equality operator stops it.
                let unequal: Vec<String> = table
                    .columns
                    .iter()
                    .filter(|c| {
                        let base = c.type_name.trim_end_matches("[]");
                        NO_EQUALITY.contains(&base)
                    })
                    .map(|c| format!("{} ({})", display_ident(&c.name), c.type_name))
                    .collect();
                if !unequal.is_empty() {
                    refuse(
                        what.clone(),
                        format!(
                            "has replica identity FULL and column(s) {} whose type has no equality operator: the target cannot find the row a replicated UPDATE or DELETE names (its subscription would stop); add a primary key",
                            unequal.join(", ")
                        ),
                    );
                }
            }
            _ => {}
        }
    }
    for view in catalog
        .views
        .iter()
        .filter(|v| v.name.schema == domain && v.materialized)
    {
        refuse(
            format!("materialized view {}", view.name),
            "logical replication does not copy materialized views: move it with a decision, or drop it".into(),
        );
    }
    let here: BTreeSet<&QualName> = tables.iter().map(|t| &t.name).collect();
    for name in &target.non_empty_tables {
        refuse(
            format!("table {name} on the target"),
            "already holds rows: the initial copy would fail on duplicate keys".into(),
        );
    }

    missing_types(&tables, &target.types, &mut refuse);
    crossing_decisions(plan, catalog, &here, &mut refuse);
    split_tables(plan, catalog, domain, &here, &mut refuse);
    out
}

/// A split the move cannot carry now. One whose table and parts are all in this
/// domain goes with it, its view included (`objects::joined_compat_views`); one
/// whose table is here and parts elsewhere, or a part here and its table
/// elsewhere, moves side by side (`split_across`: a part once its table's domain
/// is cut over). Refused: a split with the table and a part here and another part
/// elsewhere.
fn split_tables(
    plan: &Plan,
    catalog: &Catalog,
    domain: &str,
    here: &BTreeSet<&QualName>,
    refuse: &mut impl FnMut(String, String),
) {
    let split_done = plan
        .phase(phase_names::SPLIT)
        .is_some_and(|r| !r.is_undone());
    if !split_done {
        return;
    }
    // A split whose table and parts are on different sides of this domain's
    // boundary moves side by side (`split_across`).
    let across: BTreeSet<String> = super::split_across::table_side(catalog, domain)
        .iter()
        .chain(&super::split_across::part_side(catalog, domain))
        .map(|s| s.view.name.to_string())
        .collect();
    for (what, why) in super::split_across::move_refusals(plan, catalog, domain) {
        refuse(what, why);
    }
    // The splits of one table (a part per writer) stand behind one view.
    let tables: BTreeSet<&str> = plan.splits.iter().map(|s| s.table.as_str()).collect();
    for table in tables.into_iter().filter(|t| !across.contains(*t)) {
        let part_here = plan
            .splits
            .iter()
            .filter(|s| s.table == table)
            .any(|split| {
                here.iter().any(|t| {
                    t.name == split.part && split.domain.as_deref().is_none_or(|d| d == t.schema)
                })
            });
        let parts: Vec<&QualName> = catalog
            .views
            .iter()
            .find(|v| v.name.to_string() == table)
            .map(|v| v.depends_on.iter().map(|d| &d.relation).collect())
            .unwrap_or_default();
        let (in_domain, elsewhere): (Vec<&QualName>, Vec<&QualName>) =
            parts.iter().partition(|p| here.contains(*p));
        let split_across = !in_domain.is_empty() && !elsewhere.is_empty();
        if split_across || (part_here && parts.is_empty()) {
            // The table is the relation beneath the view that no split made.
            let table_schema = parts
                .iter()
                .find(|p| {
                    !plan
                        .splits
                        .iter()
                        .any(|s| s.table == table && s.part == p.name)
                })
                .map(|p| p.schema.clone());
            let keep_together = match table_schema {
                Some(schema) => format!(
                    "give each part the table's domain (`domain = {}` in its [[splits]] entry; `carve undo restrict`, `carve undo split`, then split and restrict again), so they move together",
                    toml::Value::String(schema)
                ),
                None => "keep the parts in the table's domain".into(),
            };
            refuse(
                format!("split of {table}"),
                format!(
                    "{} in this domain and {} in another: a part's rows are made as the table's rows are written, which needs the table on the part's server, and carve moves a part only with its table for now; {keep_together}, or keep this domain on the source (the table's domain can move, leaving its parts here)",
                    match in_domain.len() {
                        0 => "its part is".to_string(),
                        1 => format!("{} is", in_domain[0]),
                        _ => format!("{} are", crate::text::and_list(&in_domain)),
                    },
                    if elsewhere.is_empty() { "the table".to_string() } else { crate::text::and_list(&elsewhere) },
                ),
            );
        }
    }
}

/// Whether `service`'s clients have left the source: its home domain is cut over
/// to its own server, where the move's proof found its statements working. What it
/// was granted across domains on the source then holds for nobody.
fn gone_from_source(plan: &Plan, service: &str) -> bool {
    plan.services
        .iter()
        .find(|s| s.name == service)
        .and_then(|s| s.domain.as_deref())
        .is_some_and(|home| plan.is_cut_over(home))
}

/// Column types that are not built in (the catalog reader writes them
/// schema-qualified) and not on the target: carve does not create types, so each
/// must be there first (`CREATE TYPE`, or `CREATE EXTENSION` for an extension's).
fn missing_types(
    tables: &[&crate::catalog::Table],
    on_target: &[QualName],
    refuse: &mut impl FnMut(String, String),
) {
    let mut missing: BTreeMap<QualName, Vec<String>> = BTreeMap::new();
    for table in tables {
        for column in &table.columns {
            let base = column.type_name.trim_end_matches("[]");
            // A type modifier: `public.money2(10,2)`.
            let base = match base.rfind('(') {
                Some(at) if base.ends_with(')') && !base[at..].contains('"') => &base[..at],
                _ => base,
            };
            let Ok((schema, name)) = crate::sql::parse_qualified(base) else {
                continue; // built in
            };
            let ty = QualName::new(&schema, &name);
            if !on_target.contains(&ty) {
                missing.entry(ty).or_default().push(format!(
                    "{}.{}",
                    table.name,
                    display_ident(&column.name)
                ));
            }
        }
    }
    for (ty, columns) in missing {
        refuse(
            format!("type {ty}"),
            format!(
                "is not on the target, and columns {} use it: carve does not create types yet; create it there first (CREATE TYPE, or CREATE EXTENSION for an extension's type)",
                columns.join(", ")
            ),
        );
    }
}

/// Decisions that held while every domain shared one server and cannot across two:
/// objects assign kept working across domains (`keep-until-move`), and accesses
/// restrict granted across domains (temporary grants, a shared domain).
fn crossing_decisions(
    plan: &Plan,
    catalog: &Catalog,
    here: &BTreeSet<&QualName>,
    refuse: &mut impl FnMut(String, String),
) {
    // Names the plan's decisions use (before assign) → where the tables are now.
    let renamed: BTreeMap<&str, &str> = plan
        .phase(phase_names::ASSIGN)
        .map(|r| {
            r.gate
                .renames
                .iter()
                .map(|n| (n.from.as_str(), n.to.as_str()))
                .collect()
        })
        .unwrap_or_default();
    let in_domain = |name: &str| -> bool {
        let now = renamed.get(name).copied().unwrap_or(name);
        here.iter().any(|t| t.to_string() == now)
    };
    for decision in &plan.decisions {
        if decision.choice == crate::plan::choices::SHARED_DATA_DOMAIN {
            if let Some(table) = decision.subject.strip_prefix("ownership of ") {
                if in_domain(table) {
                    refuse(
                        decision.subject.clone(),
                        "is a shared data domain: its writers write it directly, which holds only while they share its server; decide delegate:<service> or table-split for it to move".into(),
                    );
                }
            }
        }
        let kept = decision.choice == "keep-until-move";
        if kept {
            if let Some(rest) = decision.subject.strip_prefix("foreign key ") {
                // `schema.table.constraint`: the table is everything before the last dot.
                let Some((table, _)) = rest.rsplit_once('.') else {
                    continue;
                };
                let references_here = catalog.tables.iter().any(|t| {
                    t.foreign_keys().any(|(c, fk)| {
                        rest.ends_with(&format!(".{}", display_ident(&c.name)))
                            && (here.contains(&fk.references) || here.contains(&t.name))
                    })
                });
                if in_domain(table) || references_here {
                    refuse(
                        decision.subject.clone(),
                        "crosses into this domain and was kept until the move: decide replace-before-move (and replace it) or drop-at-move".into(),
                    );
                }
            } else if let Some(view) = decision.subject.strip_prefix("view ") {
                let reads_here = catalog.views.iter().any(|v| {
                    v.name.to_string() == renamed.get(view).copied().unwrap_or(view)
                        && v.depends_on.iter().any(|d| {
                            here.contains(&d.relation)
                                || renamed
                                    .get(d.relation.to_string().as_str())
                                    .is_some_and(|now| in_domain(now))
                        })
                });
                if reads_here {
                    refuse(
                        decision.subject.clone(),
                        "reads this domain's tables across domains and was kept until the move: a view cannot read another server's tables".into(),
                    );
                }
            } else if let Some(trigger) = decision.subject.strip_prefix("trigger ") {
                if trigger
                    .rsplit_once('.')
                    .is_some_and(|(table, _)| in_domain(table))
                {
                    refuse(
                        decision.subject.clone(),
                        "touches other domains from this domain's table and was kept until the move".into(),
                    );
                }
            }
        }
        // restrict: a read or write of this domain's table by another domain's service.
        let access = decision
            .subject
            .strip_prefix("read ")
            .or_else(|| decision.subject.strip_prefix("write "));
        if let Some((table, service)) = access.and_then(|a| a.rsplit_once(" by ")) {
            let holds_only_on_one_server = decision.choice == "temporary-grant"
                || decision.choice == "shared-domain"
                || decision.choice.starts_with("temporary-grant:");
            if in_domain(table) && holds_only_on_one_server && !gone_from_source(plan, service) {
                refuse(
                    decision.subject.clone(),
                    format!(
                        "is decided {:?}, which only holds while both domains share a server: decide replicate or api for a read, delegate:<service> for a write",
                        decision.choice
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::testing::{catalog, table};
    use crate::plan::testing::plan_for;
    use crate::plan::{Decision, GateHints, PhaseRecord, PhaseState, Rename};

    /// Every refusal, one per line.
    fn text(found: &[Refusal]) -> String {
        found
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn server() -> ServerFacts {
        ServerFacts::roomy_15()
    }

    fn target() -> TargetFacts {
        TargetFacts {
            server: server(),
            non_empty_tables: Vec::new(),
            types: Vec::new(),
        }
    }

    /// A table with a primary key on its first column.
    fn keyed(schema: &str, name: &str) -> crate::catalog::Table {
        let mut t = table(schema, name);
        let column = t.columns[0].name.clone();
        t.constraints.push(crate::catalog::Constraint {
            name: format!("{name}_pkey"),
            kind: crate::catalog::ConstraintKind::PrimaryKey,
            columns: vec![column.clone()],
            definition: format!("PRIMARY KEY ({column})"),
            deferrable: false,
            initially_deferred: false,
            inherited: false,
            foreign_key: None,
        });
        t
    }

    /// `sales.orders` (moved from public) beside `people.customers`, assign applied.
    fn assigned() -> (Plan, Catalog) {
        let c = catalog(vec![keyed("sales", "orders"), keyed("people", "customers")]);
        let mut p = plan_for(
            &c,
            &[
                ("sales", &["public.orders"]),
                ("people", &["public.customers"]),
            ],
        );
        let mut record = PhaseRecord::planned(
            phase_names::ASSIGN.into(),
            String::new(),
            GateHints {
                renames: vec![Rename {
                    from: "public.orders".into(),
                    to: "sales.orders".into(),
                    compat_view: true,
                }],
                ..GateHints::default()
            },
            Vec::new(),
        );
        record.state = PhaseState::Applied;
        p.phases.push(record);
        (p, c)
    }

    /// The check with both servers as they should be and nothing accepted.
    fn check_ready_servers(p: &Plan, c: &Catalog, domain: &str) -> Vec<Refusal> {
        check(p, c, domain, &server(), &target(), &Acceptances::default())
    }

    fn whats(refusals: &[Refusal]) -> Vec<String> {
        refusals.iter().map(|r| r.what.clone()).collect()
    }

    #[test]
    fn a_ready_domain_passes() {
        let (p, c) = assigned();
        let found = check_ready_servers(&p, &c, "sales");
        assert!(found.is_empty(), "{found:#?}");
    }

    #[test]
    fn every_server_problem_is_named_at_once() {
        let (p, c) = assigned();
        let mut source = server();
        source.wal_level = "replica".into();
        source.replication_slots_used = 9;
        source.wal_senders_used = 9;
        source.max_slot_wal_keep_size = -1;
        source.large_objects = 2;
        source.oldest_transaction = Some((600.0, 4242));
        let mut t = target();
        t.server.version_num = 140011;
        t.server.version = "14.11".into();
        t.server.max_logical_replication_workers = 1;
        t.server.max_worker_processes = 2;
        t.non_empty_tables = vec![QualName::new("sales", "orders")];
        let found = check(&p, &c, "sales", &source, &t, &Acceptances::default());
        let all = text(&found);
        for needle in [
            "target server: PostgreSQL 14.11 is too old",
            "wal_level on the source: is replica",
            "max_replication_slots on the source: 1 of 10 are free; the move needs 3",
            "max_wal_senders on the source: 1 of 10 are free",
            "max_logical_replication_workers on the target: 1 of 1 are free",
            "max_worker_processes on the target: is 2",
            "max_slot_wal_keep_size on the source: is unlimited",
            "large objects: the source holds 2",
            "backend pid 4242 has had a transaction open for 600 s",
            "table sales.orders on the target: already holds rows",
        ] {
            assert!(all.contains(needle), "{needle:?} not in\n{all}");
        }
        // Accepted explicitly, the unlimited slot WAL is no refusal.
        let accepted = Acceptances {
            unlimited_slot_wal: true,
            ..Acceptances::default()
        };
        let found = check(&p, &c, "sales", &source, &t, &accepted);
        assert!(!whats(&found)
            .iter()
            .any(|w| w.contains("max_slot_wal_keep_size")));
    }

    #[test]
    fn full_identity_with_a_type_without_equality_is_refused_even_when_accepted() {
        let (mut p, mut c) = assigned();
        let mut t = table("sales", "events");
        t.constraints.clear();
        t.replica_identity = ReplicaIdentity::Full;
        t.columns
            .push(crate::catalog::testing::column("doc", "json"));
        t.columns
            .push(crate::catalog::testing::column("data", "jsonb"));
        c.tables.push(t);
        c.normalize();
        p.decisions.push(crate::plan::Decision {
            subject: "replica identity sales.events".into(),
            choice: REPLICA_IDENTITY_FULL_CHOICE.into(),
            reason: String::new(),
            rows: None,
        });
        let found = check_ready_servers(&p, &c, "sales");
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(
            found[0]
                .why
                .contains("doc (json) whose type has no equality operator"),
            "{found:#?}"
        );
    }

    #[test]
    fn types_the_target_lacks_are_named_with_their_columns() {
        let (p, mut c) = assigned();
        let mut t = keyed("sales", "moods");
        t.columns
            .push(crate::catalog::testing::column("mood", "public.mood"));
        t.columns
            .push(crate::catalog::testing::column("moods", "public.mood[]"));
        t.columns
            .push(crate::catalog::testing::column("note", "public.citext"));
        t.columns
            .push(crate::catalog::testing::column("n", "numeric(12,2)"));
        c.tables.push(t);
        c.normalize();
        let mut target = target();
        target.types = vec![QualName::new("public", "citext")];
        let found = check(&p, &c, "sales", &server(), &target, &Acceptances::default());
        assert_eq!(whats(&found), ["type public.mood"], "{found:#?}");
        assert!(
            found[0].why.contains("sales.moods.mood, sales.moods.moods"),
            "{found:#?}"
        );
    }

    #[test]
    fn workers_other_subscriptions_run_are_not_free() {
        let (p, c) = assigned();
        let mut t = target();
        t.server.logical_workers_used = 3;
        let found = check(&p, &c, "sales", &server(), &t, &Acceptances::default());
        let all = text(&found);
        assert!(
            all.contains("max_logical_replication_workers on the target: 1 of 4 are free (3 run for other subscriptions)"),
            "{all}"
        );
        assert!(!all.contains("max_worker_processes"), "{all}");
        t.server.max_worker_processes = 6;
        let found = check(&p, &c, "sales", &server(), &t, &Acceptances::default());
        assert!(
            found
                .iter()
                .any(|r| r.what == "max_worker_processes on the target"),
            "{found:#?}"
        );
    }

    #[test]
    fn tables_that_cannot_be_replicated_are_refused() {
        let (p, mut c) = assigned();
        let mut no_key = table("sales", "events");
        no_key.constraints.clear();
        let mut nothing = keyed("sales", "audit");
        nothing.replica_identity = ReplicaIdentity::Nothing;
        let mut full = keyed("sales", "ledger");
        full.replica_identity = ReplicaIdentity::Full;
        let mut unlogged = keyed("sales", "scratch");
        unlogged.unlogged = true;
        c.tables.extend([no_key, nothing, full, unlogged]);
        c.normalize();
        let found = check_ready_servers(&p, &c, "sales");
        let all = text(&found);
        assert!(
            all.contains("table sales.events: has no primary key"),
            "{all}"
        );
        assert!(
            all.contains("table sales.audit: has replica identity NOTHING"),
            "{all}"
        );
        assert!(
            all.contains("table sales.ledger: has replica identity FULL"),
            "{all}"
        );
        assert!(all.contains("table sales.scratch: is unlogged"), "{all}");

        // FULL, accepted by a decision.
        let mut p = p;
        p.decisions.push(Decision {
            subject: "replica identity sales.ledger".into(),
            choice: REPLICA_IDENTITY_FULL_CHOICE.into(),
            reason: "append-only".into(),
            rows: None,
        });
        let found = check_ready_servers(&p, &c, "sales");
        assert!(!whats(&found).contains(&"table sales.ledger".to_string()));
    }

    #[test]
    fn decisions_that_only_hold_on_one_server_are_refused() {
        let (mut p, c) = assigned();
        for (subject, choice) in [
            ("read public.orders by crm", "temporary-grant"),
            (
                "write public.orders by crm",
                "temporary-grant:sales-service",
            ),
            ("read public.orders by billing", "replicate"),
            ("read public.customers by sales", "temporary-grant"),
            ("ownership of public.orders", "shared-data-domain"),
            ("ownership of public.customers", "shared-data-domain"),
        ] {
            p.decisions.push(Decision {
                subject: subject.into(),
                choice: choice.into(),
                reason: "until the move".into(),
                rows: None,
            });
        }
        let found = check_ready_servers(&p, &c, "sales");
        let subjects = whats(&found);
        assert_eq!(
            subjects,
            [
                "read public.orders by crm",
                "write public.orders by crm",
                "ownership of public.orders"
            ],
            "{found:#?}"
        );
        // crm's clients already write on its own domain's server: what it was
        // granted on the source holds for nobody.
        p.services.push(crate::plan::Service {
            name: "crm".into(),
            domain: Some("people".into()),
            ..crate::plan::Service::default()
        });
        let people = p.domains.iter_mut().find(|d| d.name == "people").unwrap();
        people.cutover = Some(crate::plan::Cutover {
            live: crate::plan::Side::Server,
            since: "2026-11-30T00:00:00Z".into(),
            pause_ms: None,
            switching: None,
            retired: None,
            files: None,
        });
        let found = check_ready_servers(&p, &c, "sales");
        assert_eq!(whats(&found), ["ownership of public.orders"], "{found:#?}");
    }

    #[test]
    fn a_foreign_key_kept_until_the_move_stops_both_of_its_domains() {
        let (mut p, mut c) = assigned();
        let orders = c
            .tables
            .iter_mut()
            .find(|t| t.name == QualName::new("sales", "orders"))
            .unwrap();
        orders.constraints.push(crate::catalog::Constraint {
            name: "orders_customer_fkey".into(),
            kind: crate::catalog::ConstraintKind::ForeignKey,
            columns: vec!["total".into()],
            definition: "FOREIGN KEY (total) REFERENCES people.customers(total)".into(),
            deferrable: false,
            initially_deferred: false,
            inherited: false,
            foreign_key: Some(crate::catalog::ForeignKey {
                references: QualName::new("people", "customers"),
                referenced_columns: vec!["total".into()],
                on_update: crate::catalog::FkAction::NoAction,
                on_delete: crate::catalog::FkAction::NoAction,
                match_full: false,
            }),
        });
        p.decisions.push(Decision {
            subject: "foreign key public.orders.orders_customer_fkey".into(),
            choice: "keep-until-move".into(),
            reason: String::new(),
            rows: None,
        });
        for domain in ["sales", "people"] {
            let found = check_ready_servers(&p, &c, domain);
            assert_eq!(
                whats(&found),
                ["foreign key public.orders.orders_customer_fkey"],
                "{domain}"
            );
        }
        p.decisions[0].choice = "drop-at-move".into();
        let found = check_ready_servers(&p, &c, "people");
        assert!(found.is_empty(), "{found:#?}");
    }

    /// [`assigned`] with public.orders split: its part in `part_schema`, the old
    /// name a view over both, split applied.
    fn split_into(part_schema: &str) -> (Plan, Catalog) {
        let (mut p, mut c) = assigned();
        c.tables.push(keyed(part_schema, "orders_pay"));
        let orders = c
            .tables
            .iter_mut()
            .find(|t| t.name == QualName::new("sales", "orders"))
            .unwrap();
        orders
            .triggers
            .push(crate::catalog::testing::split_row_trigger(
                "sales.orders",
                QualName::new(part_schema, "carve_split_1_row"),
            ));
        c.views.push(crate::catalog::View {
            name: QualName::new("public", "orders"),
            materialized: false,
            owner: "app".into(),
            definition: String::new(),
            columns: Vec::new(),
            options: Vec::new(),
            depends_on: [
                QualName::new("sales", "orders"),
                QualName::new(part_schema, "orders_pay"),
            ]
            .into_iter()
            .map(|relation| crate::catalog::ViewDependency {
                relation,
                columns: Vec::new(),
            })
            .collect(),
            triggers: Vec::new(),
            comment: Some(format!(
                "{}public.orders",
                crate::phases::assign::COMPAT_VIEW_COMMENT
            )),
            grants: Vec::new(),
        });
        c.normalize();
        p.splits.push(crate::plan::Split {
            table: "public.orders".into(),
            part: "orders_pay".into(),
            domain: Some(part_schema.into()),
            columns: vec!["total".into()],
        });
        let mut record = PhaseRecord::planned(
            phase_names::SPLIT.into(),
            String::new(),
            GateHints::default(),
            Vec::new(),
        );
        record.state = PhaseState::Applied;
        p.phases.push(record);
        (p, c)
    }

    #[test]
    fn a_split_moves_with_its_table_and_its_part_only_with_it() {
        let (p, c) = split_into("sales");
        let found = check_ready_servers(&p, &c, "sales");
        assert!(found.is_empty(), "{found:#?}");

        // Across two domains: the table's domain moves, leaving the part; the
        // part's domain does not move without the table.
        let (p, c) = split_into("people");
        let found = check_ready_servers(&p, &c, "sales");
        assert!(found.is_empty(), "{found:#?}");
        let found = check_ready_servers(&p, &c, "people");
        assert_eq!(whats(&found), ["split of public.orders"]);
        assert!(
            found[0]
                .why
                .starts_with("people.orders_pay is in this domain and its table sales.orders in sales, whose clients are not on its own server: a part moves once its table's domain is moved and cut over"),
            "{}",
            text(&found)
        );
        assert!(
            found[0]
                .why
                .contains("(`domain = \"sales\"` in its [[splits]] entry"),
            "{}",
            text(&found)
        );
    }

    #[test]
    fn an_unknown_domain_or_assign_not_applied_is_refused() {
        let (mut p, c) = assigned();
        let found = check_ready_servers(&p, &c, "nowhere");
        assert_eq!(whats(&found), ["domain nowhere"]);
        p.phases.clear();
        let found = check_ready_servers(&p, &c, "sales");
        assert_eq!(whats(&found), ["assign"]);
    }
}
