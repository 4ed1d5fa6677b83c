//! Phase 3, restrict: each service gets a login role of its own, a member of its home
//! domain's group role, and the group is granted what the workload shows the domain's
//! services doing in it, and nothing more.
//!
//! Pure: (plan, catalog, workload) → steps, the cross-domain accesses that need a
//! decision, and the probes the proof runs (`engine::proof`). What a statement needs
//! follows PostgreSQL's checks: the relations it names; beneath a `security_invoker`
//! view (the compatibility views of assign) the view's relations as well; `SELECT`
//! with UPDATE, DELETE, `RETURNING` and `ON CONFLICT DO UPDATE`; `USAGE` on the
//! sequences behind the column defaults of an INSERT; and what the functions it calls
//! and the triggers it fires touch, unless they are `SECURITY DEFINER`. The last two
//! are checked only when the statement runs, so the proof checks them with
//! `has_*_privilege` rather than EXPLAIN.
//!
//! A statement that reaches another domain's table is a crossing: a read needs an
//! access-pattern decision, a write names the service it will delegate to. Choices that
//! keep the access working grant it to the service's own login role (not the group),
//! so a temporary grant stays as narrow as the decision.
//!
//! This file holds the plan's types, the `Planner` and the order of the work; each
//! concern is a file of its own, adding methods to the `Planner`:
//! `needs.rs` (what a statement needs), `roles.rs` (login roles and home domains),
//! `crossings.rs` (cross-domain access and its decisions), `grants.rs` (grants and
//! the steps), `revokes.rs` (what is taken away), `probes.rs` (the proof's
//! statements), `passwords.rs` (new roles' passwords as steps).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::forecast::{Changes, Object, Privilege};
use super::{grantee, lit, role_exists};
use crate::analysis::access::{self, Access, Columns, WriteKind};
use crate::analysis::usage::{default_search_path, Relation, Resolver};
use crate::catalog::{Catalog, Grant, QualName};
use crate::engine::{Action, SqlAction, Step, Target};
use crate::plan::Plan;
use crate::sql::{display_ident, ident, parse_qualified, qualified};
use crate::workload::Workload;

mod crossings;
mod grants;
mod needs;
mod passwords;
mod probes;
mod revokes;
mod roles;

use needs::*;
pub use passwords::*;
use revokes::*;
use roles::*;

pub const PHASE: &str = crate::plan::phase_names::RESTRICT;

/// Access patterns for reading another domain's table (Ford et al., *Software
/// Architecture: The Hard Parts*, ch. 10) and a temporary grant with its reason.
pub const READ_CHOICES: &[&str] = &[
    "api",
    "cache",
    "replicate",
    "shared-domain",
    "temporary-grant",
];
/// Writing another domain's table: the service the writer delegates to, now or later.
pub const WRITE_CHOICES: &[&str] = &["delegate:<service>", "temporary-grant:<service>"];

/// The longest name PostgreSQL keeps (it cuts longer ones silently).
const MAX_NAME: usize = 63;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RelKind {
    Table,
    View,
    Sequence,
}

impl RelKind {
    fn keyword(self) -> &'static str {
        match self {
            RelKind::Table | RelKind::View => "TABLE",
            RelKind::Sequence => "SEQUENCE",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RelKind::Table => "table",
            RelKind::View => "view",
            RelKind::Sequence => "sequence",
        }
    }
}

/// What restrict will do, before anything is done.
#[derive(Debug, Clone, Serialize)]
pub struct RestrictPlan {
    pub services: Vec<ServicePlan>,
    /// Every access of one service to another domain's table, with its decision.
    pub crossings: Vec<Crossing>,
    /// Privileges taken away, for people.
    pub revokes: Vec<String>,
    /// What restrict leaves alone and the operator should know.
    pub notes: Vec<String>,
    #[serde(skip)]
    pub steps: Vec<Step>,
    /// What the proof runs: every statement of every service, as its role.
    #[serde(skip)]
    pub probes: Vec<Probe>,
    /// What the steps change in the catalog (`phases::forecast`).
    #[serde(skip)]
    pub changes: Changes,
}

impl RestrictPlan {
    /// Crossings without a decision.
    pub fn missing(&self) -> Vec<&Crossing> {
        self.crossings
            .iter()
            .filter(|c| c.decision.is_none())
            .collect()
    }

    /// Login roles restrict creates (they get passwords).
    pub fn new_login_roles(&self) -> Vec<&str> {
        self.services
            .iter()
            .filter(|s| s.new_role)
            .map(|s| s.role.as_str())
            .collect()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ServicePlan {
    pub service: String,
    pub domain: String,
    /// `plan` when the plan names the domain, `workload` when carve chose it.
    pub domain_from: &'static str,
    pub role: String,
    /// Created by restrict (else the role the service already uses alone).
    pub new_role: bool,
    pub group: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_limit: Option<i32>,
    /// What the role may do once restricted: through the group, and its own grants.
    pub grants: Vec<GrantPlan>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrantPlan {
    pub on: String,
    pub kind: RelKind,
    pub privileges: Vec<String>,
    /// Column-level privileges: privilege → columns.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub columns: BTreeMap<String, Vec<String>>,
    pub to: String,
    /// Why a grant outside the domain exists (the decision), absent for the domain's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub because: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Crossing {
    /// The plan's decision subject: `read public.audit by ReadingList`.
    pub subject: String,
    pub service: String,
    /// The table, by the name the plan's domains use.
    pub table: String,
    pub table_domain: Option<String>,
    pub write: bool,
    pub statements: Vec<StatementRef>,
    pub choices: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<CrossingDecision>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CrossingDecision {
    pub choice: String,
    /// Whether the access keeps working (granted) or must stop (the statement fails).
    pub granted: bool,
    pub meaning: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatementRef {
    pub origin: String,
    pub sql: String,
}

// The proof's own types live beside it in the engine (move and cut-over prove too).
pub use crate::engine::proof::{Probe, RuntimeCheck};

/// One privilege a statement needs on one relation.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Need {
    relation: QualName,
    kind: RelKind,
    privilege: &'static str,
    /// Column-level (INSERT, UPDATE in a domain that asks for column privileges).
    columns: Option<BTreeSet<String>>,
    /// Checked only at run time: why the statement needs it.
    runtime: Option<&'static str>,
    /// The tables whose data this reaches: they decide whose domain it is.
    data: BTreeSet<QualName>,
}

/// Plans restrict. Errors name every problem found; missing decisions are not errors
/// (see [`RestrictPlan::missing`]).
pub fn plan(
    plan: &Plan,
    catalog: &Catalog,
    workload: &Workload,
) -> Result<RestrictPlan, Vec<String>> {
    let mut p = Planner::new(plan, catalog);
    let current = catalog
        .roles
        .iter()
        .find(|r| r.name == catalog.server.current_user);
    if !current.is_some_and(|r| r.superuser) {
        p.errors.push(format!(
            "restrict needs a superuser connection (it creates roles, changes the grants of roles it does not own, and proves the result with SET ROLE); {} is not one",
            catalog.server.current_user
        ));
    }
    let roles = p.login_roles(workload);
    let statements = p.statements(workload, &roles);
    p.ownership_resolutions(&statements);
    let services = p.services(&statements, &roles);
    p.crossings_and_grants(&services, &statements);
    p.existing_privileges(&services);
    if !p.errors.is_empty() {
        return Err(p.errors);
    }
    let steps = p.steps(&services);
    let changes = p.changes(&services);
    let probes = p.probes(&services, &statements);
    let service_plans = p.service_plans(&services);
    Ok(RestrictPlan {
        services: service_plans,
        crossings: p.crossings.into_values().collect(),
        revokes: p.revokes.iter().flat_map(Revoke::describe).collect(),
        notes: p.notes,
        steps,
        probes,
        changes,
    })
}

/// One distinct statement of one service, with what it needs.
struct Statement {
    service: String,
    origin: String,
    sql: String,
    needs: Vec<Need>,
}

/// A service's roles, as restrict will leave them.
struct ServiceRoles {
    name: String,
    domain: String,
    domain_from: &'static str,
    role: String,
    new_role: bool,
    group: String,
    connection_limit: Option<i32>,
}

/// Accumulates one grantee's privileges on one relation.
#[derive(Debug, Default, Clone)]
struct GrantAcc {
    privileges: BTreeSet<&'static str>,
    columns: BTreeMap<&'static str, BTreeSet<String>>,
    because: Option<String>,
}

/// A table split by `carve split`: the view in its old place writes each column to
/// the part that owns it (as the view's owner), so a write reaches the part of the
/// columns it sets.
#[derive(Debug, Clone)]
struct SplitView {
    table: QualName,
    /// Each part, with the columns that went to it.
    parts: Vec<(QualName, BTreeSet<String>)>,
}

impl SplitView {
    /// The tables a write through the view reaches.
    fn reaches(&self, privilege: &str, columns: &Columns) -> BTreeSet<QualName> {
        let all: BTreeSet<QualName> = std::iter::once(&self.table)
            .chain(self.parts.iter().map(|(p, _)| p))
            .cloned()
            .collect();
        match (privilege, columns) {
            // A delete removes the table's row; the parts' follow by their key.
            ("DELETE", _) => [self.table.clone()].into(),
            // A row lock (`FOR UPDATE`) sets no column and locks every row.
            ("UPDATE", Columns::Some(set)) if set.is_empty() => all,
            ("UPDATE", Columns::Some(set)) => {
                let mut out = BTreeSet::new();
                let moved = |c: &String| self.parts.iter().any(|(_, m)| m.contains(c));
                if set.iter().any(|c| !moved(c)) {
                    out.insert(self.table.clone());
                }
                for (part, moved) in &self.parts {
                    if set.iter().any(|c| moved.contains(c)) {
                        out.insert(part.clone());
                    }
                }
                out
            }
            _ => all,
        }
    }
}

struct Planner<'a> {
    plan: &'a Plan,
    catalog: &'a Catalog,
    /// Current table name (partition roots) → its domain.
    domain_of: BTreeMap<QualName, String>,
    /// Current table name → the name the plan's domains use.
    original: BTreeMap<QualName, QualName>,
    /// Table → the sequences its column defaults draw from.
    table_sequences: BTreeMap<QualName, Vec<QualName>>,
    /// Sequence → the tables that draw from it.
    sequence_tables: BTreeMap<QualName, BTreeSet<QualName>>,
    /// A split table's old name (the view over both parts) → the parts.
    split_views: BTreeMap<QualName, SplitView>,
    crossings: BTreeMap<String, Crossing>,
    /// (grantee, kind, relation) → privileges.
    grants: BTreeMap<(String, RelKind, QualName), GrantAcc>,
    /// (grantee, schema) that need USAGE.
    schema_usage: BTreeSet<(String, String)>,
    revokes: Vec<Revoke>,
    notes: Vec<String>,
    errors: Vec<String>,
    /// A new login role → the `search_path` of the roles its service logged in as,
    /// which it inherits (the service's SQL names its tables along it).
    inherited_paths: BTreeMap<String, Vec<String>>,
    /// Services the plan consolidates (`ownership of T` = `service-consolidation`):
    /// each group has one home domain, so one group role.
    consolidated: Vec<BTreeSet<String>>,
    /// A table decided `shared-data-domain` → the services that write it: each
    /// reads and writes it by that decision, granted to its own role.
    sharers: BTreeMap<QualName, BTreeSet<String>>,
}

impl<'a> Planner<'a> {
    fn new(plan: &'a Plan, catalog: &'a Catalog) -> Planner<'a> {
        let mut errors = Vec::new();
        // assign moved the tables; its renames lead from the plan's names to today's.
        let renames: BTreeMap<&str, &str> = plan
            .phase(super::assign::PHASE)
            .map(|r| {
                r.gate
                    .renames
                    .iter()
                    .map(|r| (r.from.as_str(), r.to.as_str()))
                    .collect()
            })
            .unwrap_or_default();
        let mut domain_of = BTreeMap::new();
        let mut original = BTreeMap::new();
        for domain in &plan.domains {
            for text in &domain.tables {
                let now = renames.get(text.as_str()).copied().unwrap_or(text);
                let parse = |t: &str| parse_qualified(t).map(|(s, n)| QualName::new(&s, &n));
                let (Ok(before), Ok(now)) = (parse(text), parse(now)) else {
                    errors.push(format!(
                        "domain {}: {text} is not a table name",
                        domain.name
                    ));
                    continue;
                };
                if catalog.table(&now).is_none() {
                    errors.push(format!(
                        "domain {}: table {now} is not in the database",
                        domain.name
                    ));
                    continue;
                }
                domain_of.insert(now.clone(), domain.name.clone());
                original.insert(now, before);
            }
        }
        // Split tables: each part belongs to its domain, and the old name is a view
        // that writes each column to the part that owns it.
        let mut split_views = BTreeMap::new();
        let split_done = plan
            .phase(super::split::PHASE)
            .is_some_and(|r| r.is_applied());
        for split in plan.splits.iter().filter(|_| split_done) {
            let Ok((schema, name)) = parse_qualified(&split.table) else {
                continue;
            };
            let view = QualName::new(&schema, &name);
            let Some(table) = renames
                .get(split.table.as_str())
                .and_then(|t| parse_qualified(t).ok())
                .map(|(s, n)| QualName::new(&s, &n))
            else {
                continue;
            };
            let Some(domain) = split
                .domain
                .clone()
                .or_else(|| domain_of.get(&table).cloned())
            else {
                continue;
            };
            let part = QualName::new(&domain, &split.part);
            if catalog.table(&part).is_none() {
                continue;
            }
            domain_of.insert(part.clone(), domain);
            original.insert(part.clone(), part.clone());
            split_views
                .entry(view)
                .or_insert_with(|| SplitView {
                    table,
                    parts: Vec::new(),
                })
                .parts
                .push((part, split.columns.iter().cloned().collect()));
        }
        let mut table_sequences: BTreeMap<QualName, Vec<QualName>> = BTreeMap::new();
        let mut sequence_tables: BTreeMap<QualName, BTreeSet<QualName>> = BTreeMap::new();
        for seq in catalog.sequences.iter().filter(|s| !s.identity) {
            let needle = format!("'{}'::regclass", seq.name);
            for table in &catalog.tables {
                let uses = table
                    .columns
                    .iter()
                    .any(|c| c.default.as_deref().is_some_and(|d| d.contains(&needle)));
                if uses {
                    table_sequences
                        .entry(table.name.clone())
                        .or_default()
                        .push(seq.name.clone());
                    sequence_tables
                        .entry(seq.name.clone())
                        .or_default()
                        .insert(table.name.clone());
                }
            }
            if let Some(owner) = &seq.owned_by {
                sequence_tables
                    .entry(seq.name.clone())
                    .or_default()
                    .insert(owner.table.clone());
            }
        }
        Planner {
            plan,
            catalog,
            domain_of,
            original,
            table_sequences,
            sequence_tables,
            split_views,
            crossings: BTreeMap::new(),
            grants: BTreeMap::new(),
            schema_usage: BTreeSet::new(),
            revokes: Vec::new(),
            notes: Vec::new(),
            errors,
            inherited_paths: BTreeMap::new(),
            consolidated: Vec::new(),
            sharers: BTreeMap::new(),
        }
    }

    fn domain(&self, table: &QualName) -> Option<&str> {
        self.domain_of
            .get(&self.catalog.partition_root(table))
            .or_else(|| self.domain_of.get(table))
            .map(String::as_str)
    }

    fn original_name(&self, table: &QualName) -> QualName {
        let root = self.catalog.partition_root(table);
        self.original.get(&root).cloned().unwrap_or(root)
    }

    /// The tables whose data a relation reaches.
    fn data_of(&self, relation: &QualName, kind: RelKind) -> BTreeSet<QualName> {
        match kind {
            RelKind::Table => [self.catalog.partition_root(relation)].into(),
            RelKind::Sequence => self
                .sequence_tables
                .get(relation)
                .cloned()
                .unwrap_or_default(),
            RelKind::View => {
                let mut out = BTreeSet::new();
                let mut seen = BTreeSet::new();
                self.view_data(relation, &mut out, &mut seen);
                out
            }
        }
    }

    fn view_data(
        &self,
        view: &QualName,
        out: &mut BTreeSet<QualName>,
        seen: &mut BTreeSet<QualName>,
    ) {
        if !seen.insert(view.clone()) {
            return;
        }
        let Some(v) = self.catalog.view(view) else {
            return;
        };
        for dep in &v.depends_on {
            if self.catalog.table(&dep.relation).is_some() {
                out.insert(self.catalog.partition_root(&dep.relation));
            } else {
                self.view_data(&dep.relation, out, seen);
            }
        }
    }

    fn is_invoker_view(&self, view: &QualName) -> bool {
        self.catalog.view(view).is_some_and(|v| {
            v.options.iter().any(|o| {
                let o = o.to_ascii_lowercase();
                [
                    "security_invoker=true",
                    "security_invoker=on",
                    "security_invoker=1",
                ]
                .contains(&o.as_str())
            })
        })
    }

    /// Column-level privileges apply in domains whose plan asks for them.
    fn column_level(&self, table: &QualName) -> bool {
        let Some(domain) = self.domain(table) else {
            return false;
        };
        self.plan
            .domains
            .iter()
            .any(|d| d.name == domain && d.column_privileges)
    }

    /// Every relation: (name, kind, owner, grants).
    fn relations(&self) -> impl Iterator<Item = (&'a QualName, RelKind, &'a str, &'a [Grant])> {
        let catalog = self.catalog;
        catalog
            .tables
            .iter()
            .map(|t| {
                (
                    &t.name,
                    RelKind::Table,
                    t.owner.as_str(),
                    t.grants.as_slice(),
                )
            })
            .chain(catalog.views.iter().map(|v| {
                (
                    &v.name,
                    RelKind::View,
                    v.owner.as_str(),
                    v.grants.as_slice(),
                )
            }))
            .chain(catalog.sequences.iter().filter(|s| !s.identity).map(|s| {
                (
                    &s.name,
                    RelKind::Sequence,
                    s.owner.as_str(),
                    s.grants.as_slice(),
                )
            }))
    }

    /// Whether every table in `data` belongs to `domain`.
    fn inside(&self, data: &BTreeSet<QualName>, domain: &str) -> bool {
        data.iter().all(|t| self.domain(t) == Some(domain))
    }
}

/// Privileges in the order GRANT lists them in the documentation.
fn in_order(set: &BTreeSet<&'static str>) -> Vec<&'static str> {
    const ORDER: [&str; 6] = ["SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "USAGE"];
    ORDER.into_iter().filter(|p| set.contains(p)).collect()
}

/// A grantee for people: `PUBLIC`, or a role name quoted where needed.
fn display_grantee(name: &str) -> String {
    if name == "PUBLIC" {
        name.to_string()
    } else {
        display_ident(name).to_string()
    }
}

#[cfg(test)]
mod tests;
