//! Phase 2, assign: each domain's tables move into a schema of the domain's name,
//! inside the monolith, and a compatibility view takes each table's old place so that
//! services keep working unchanged.
//!
//! Pure: (plan, catalog) → steps and the objects that need a decision. A table's move
//! and its view are one step in one transaction, so no client ever sees the name
//! missing: `ALTER TABLE … SET SCHEMA` (owned sequences, indexes, constraints and
//! triggers follow), then `CREATE VIEW … WITH (security_invoker = true) AS SELECT *`
//! (see `compat_view` for the one exception), which PostgreSQL makes automatically
//! updatable (INSERT with the table's defaults,
//! RETURNING, UPDATE, DELETE, ON CONFLICT with a column list), owned by the table's
//! owner and granted as the table was.

use std::collections::{BTreeMap, BTreeSet};

use super::{grant_sql, grantee, lit, relation_exists};
use crate::analysis::usage::{default_search_path, Resolver};
use crate::catalog::{Catalog, FunctionKind, Grant, QualName, Schema, TableKind};
use crate::engine::{Action, SqlAction, Step, Target};
use crate::plan::{Plan, Rename};
use crate::sql::{display_ident, ident, parse_qualified, qualified};

pub const PHASE: &str = crate::plan::phase_names::ASSIGN;

/// Choices for an object that crosses domains. None of them changes anything now:
/// assign keeps every such object working; the choice tells the move phase what to do.
pub const CROSSING_CHOICES: &[&str] = &["keep-until-move", "replace-before-move", "drop-at-move"];
/// Choices for a free-standing object that belongs to one domain.
pub const PLACEMENT_CHOICES: &[&str] = &["move", "stay"];

/// The choice that lets assign use a domain schema it did not create, as it is.
pub const EXISTING_SCHEMA_CHOICE: &str = "use-existing";

/// What assign will do, before anything is done.
#[derive(Debug, Clone, PartialEq)]
pub struct AssignPlan {
    pub steps: Vec<Step>,
    pub renames: Vec<Rename>,
    pub creates_schemas: Vec<String>,
    /// The schemas it creates, as the catalog will read them (`phases::forecast`).
    pub new_schemas: Vec<Schema>,
    /// Functions it moves: (from, to).
    pub moved_functions: Vec<(QualName, QualName)>,
    /// Every object that needs a decision, with the plan's choice if it has one.
    pub objects: Vec<ObjectDecision>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ObjectDecision {
    /// The plan's decision subject: `foreign key public.orders.orders_customer_fkey`.
    pub subject: String,
    pub crossing: bool,
    /// Why it needs a decision, for people.
    pub why: String,
    pub choices: Vec<String>,
    pub default: String,
    /// The plan's decision, if recorded.
    pub chosen: Option<String>,
}

impl ObjectDecision {
    pub fn choice(&self) -> &str {
        self.chosen.as_deref().unwrap_or(&self.default)
    }
}

impl AssignPlan {
    /// Decisions the plan does not have yet.
    pub fn missing(&self) -> Vec<&ObjectDecision> {
        self.objects.iter().filter(|o| o.chosen.is_none()).collect()
    }
}

/// Plans assign. Errors name every problem found (a table the plan names that does
/// not exist, two tables that would get the same name, a server too old), and nothing
/// is planned while there is one.
pub fn plan(plan: &Plan, catalog: &Catalog) -> Result<AssignPlan, Vec<String>> {
    let mut errors = Vec::new();
    if catalog.server.version_num < 150_000 {
        errors.push(format!(
            "PostgreSQL {} cannot make the compatibility views assign needs (security_invoker views arrived in 15): upgrade the server first",
            catalog.server.version
        ));
    }
    let domain_of = domain_map(plan, catalog, &mut errors);
    let mut planner = Planner {
        catalog,
        plan,
        domain_of: &domain_of,
        out: AssignPlan {
            steps: Vec::new(),
            renames: Vec::new(),
            creates_schemas: Vec::new(),
            new_schemas: Vec::new(),
            moved_functions: Vec::new(),
            objects: Vec::new(),
        },
        errors,
        taken: BTreeSet::new(),
        sequence_names: catalog.sequences.iter().map(|s| &s.name).collect(),
        owned_sequences: BTreeMap::new(),
    };
    for seq in &catalog.sequences {
        if let Some(owner) = &seq.owned_by {
            planner
                .owned_sequences
                .entry(&owner.table)
                .or_default()
                .push(&seq.name);
        }
    }
    planner.schemas();
    planner.tables();
    planner.sequences();
    planner.views();
    let mut resolver = Resolver::new(catalog, default_search_path());
    planner.functions(&mut resolver);
    planner.foreign_keys();
    planner.triggers(&mut resolver);
    if planner.errors.is_empty() {
        Ok(planner.out)
    } else {
        Err(planner.errors)
    }
}

/// Every table of a domain (partitions follow their root) → the domain's name.
fn domain_map(
    plan: &Plan,
    catalog: &Catalog,
    errors: &mut Vec<String>,
) -> BTreeMap<QualName, String> {
    let mut map = BTreeMap::new();
    errors.extend(plan.domain_problems());
    for domain in &plan.domains {
        for text in &domain.tables {
            let name = match parse_qualified(text) {
                Ok((schema, name)) => QualName::new(&schema, &name),
                Err(e) => {
                    errors.push(format!("domain {}: {e}", domain.name));
                    continue;
                }
            };
            if catalog.table(&name).is_none() {
                errors.push(format!(
                    "domain {}: table {name} is not in the database",
                    domain.name
                ));
                continue;
            }
            if let Some(other) = map.insert(name.clone(), domain.name.clone()) {
                if other != domain.name {
                    errors.push(format!(
                        "table {name} is in two domains, {other} and {}",
                        domain.name
                    ));
                }
            }
        }
    }
    for table in &catalog.tables {
        if table.partition_of.is_some() && !map.contains_key(&table.name) {
            let root = catalog.partition_root(&table.name);
            if let Some(domain) = map.get(&root).cloned() {
                map.insert(table.name.clone(), domain);
            }
        }
    }
    map
}

struct Planner<'a> {
    catalog: &'a Catalog,
    plan: &'a Plan,
    domain_of: &'a BTreeMap<QualName, String>,
    out: AssignPlan,
    errors: Vec<String>,
    /// Names in domain schemas that a move will take, to catch two taking one.
    taken: BTreeSet<QualName>,
    /// Every sequence's name, and the sequences each table owns (serial, identity):
    /// looked up once per table, so a 10,000-table catalog is not scanned 10,000 times.
    sequence_names: BTreeSet<&'a QualName>,
    owned_sequences: BTreeMap<&'a QualName, Vec<&'a QualName>>,
}

impl Planner<'_> {
    fn decide(&mut self, subject: String, crossing: bool, why: String, default: &str) -> String {
        let choices: &[&str] = if crossing {
            CROSSING_CHOICES
        } else {
            PLACEMENT_CHOICES
        };
        let chosen = self.plan.decision(&subject).map(|d| d.choice.clone());
        if let Some(c) = &chosen {
            if !choices.contains(&c.as_str()) {
                self.errors.push(format!(
                    "decision for {subject}: {c:?} is not one of {}",
                    choices.join(", ")
                ));
            }
        }
        let choice = chosen.clone().unwrap_or_else(|| default.to_string());
        self.out.objects.push(ObjectDecision {
            subject,
            crossing,
            why,
            choices: choices.iter().map(|c| c.to_string()).collect(),
            default: default.to_string(),
            chosen,
        });
        choice
    }

    /// The domains a set of tables belongs to; `None` for a table in no domain.
    fn domains_of<'t>(
        &self,
        tables: impl IntoIterator<Item = &'t QualName>,
    ) -> BTreeSet<Option<String>> {
        tables
            .into_iter()
            .map(|t| {
                self.domain_of
                    .get(&self.catalog.partition_root(t))
                    .or_else(|| self.domain_of.get(t))
                    .cloned()
            })
            .collect()
    }

    fn schemas(&mut self) {
        let mut domains: BTreeMap<&str, Vec<&QualName>> = BTreeMap::new();
        for (table, domain) in self.domain_of {
            if &table.schema != domain {
                domains.entry(domain).or_default().push(table);
            }
        }
        for (domain, tables) in domains {
            let tables: Vec<_> = tables
                .iter()
                .filter_map(|t| self.catalog.table(t))
                .collect();
            // The owner most of its tables have.
            let mut owners: BTreeMap<&str, usize> = BTreeMap::new();
            for t in &tables {
                *owners.entry(t.owner.as_str()).or_default() += 1;
            }
            let owner = owners
                .iter()
                .max_by_key(|(name, n)| (**n, std::cmp::Reverse(**name)))
                .map(|(name, _)| name.to_string())
                .unwrap_or_default();
            if let Some(existing) = self.catalog.schemas.iter().find(|s| s.name == domain) {
                self.existing_schema(existing, &owner);
                continue;
            }
            let users: BTreeSet<&str> = tables
                .iter()
                .flat_map(|t| {
                    t.grants
                        .iter()
                        .chain(t.columns.iter().flat_map(|c| c.grants.iter()))
                })
                .map(|g| g.grantee.as_str())
                .filter(|g| *g != owner)
                .collect();
            let mut sql = format!(
                "CREATE SCHEMA {} AUTHORIZATION {};\n",
                ident(domain),
                ident(&owner)
            );
            if !users.is_empty() {
                let list: Vec<String> = users.iter().map(|u| grantee(u)).collect();
                sql.push_str(&format!(
                    "GRANT USAGE ON SCHEMA {} TO {};\n",
                    ident(domain),
                    list.join(", ")
                ));
            }
            sql.push_str(&format!(
                "COMMENT ON SCHEMA {} IS {};\n",
                ident(domain),
                lit(&format!("carve: the {domain} domain"))
            ));
            self.out.creates_schemas.push(domain.to_string());
            self.out.new_schemas.push(Schema {
                name: domain.to_string(),
                owner: owner.clone(),
                comment: Some(format!("carve: the {domain} domain")),
                grants: users
                    .iter()
                    .map(|u| Grant {
                        grantee: u.to_string(),
                        privilege: "USAGE".into(),
                        grantable: false,
                        grantor: owner.clone(),
                    })
                    .collect(),
            });
            self.out.steps.push(Step {
                id: format!("create schema {}", display_ident(domain)),
                description: format!(
                    "create schema {} for the {domain} domain (owner {owner})",
                    display_ident(domain)
                ),
                target: Target::Source,
                action: Action::Sql(SqlAction {
                    sql,
                    done_check: format!(
                        "EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = {})",
                        lit(domain)
                    ),
                    undo: format!("DROP SCHEMA {}", ident(domain)),
                    transactional: true,
                    strong_lock: false,
                    secret: None,
                    read: None,
                }),
            });
        }
    }

    /// A domain schema that is already there. Tables moved into it would belong to
    /// whoever owns the schema (its owner can drop them) and sit beside whatever it
    /// holds, so it is used as it is only when its owner is the one carve would give
    /// it and it holds nothing but the domain's own objects, or when the plan says
    /// `use-existing` for it.
    fn existing_schema(&mut self, schema: &crate::catalog::Schema, owner: &str) {
        let subject = format!("schema {}", display_ident(&schema.name));
        if let Some(decision) = self.plan.decision(&subject) {
            if decision.choice != EXISTING_SCHEMA_CHOICE {
                self.errors.push(format!(
                    "decision for {subject}: {:?} is not {EXISTING_SCHEMA_CHOICE:?}, the one choice for a schema carve did not create",
                    decision.choice
                ));
            }
            return;
        }
        let domain = schema.name.as_str();
        let mine = |t: &QualName| self.domain_of.get(t).is_some_and(|d| d == domain);
        let mut foreign: Vec<String> = Vec::new();
        let here = |n: &QualName| n.schema == domain;
        for t in self.catalog.tables.iter().filter(|t| here(&t.name)) {
            if !mine(&t.name) {
                foreign.push(format!("table {}", t.name));
            }
        }
        for v in self.catalog.views.iter().filter(|v| here(&v.name)) {
            let tables = self.view_tables(&v.name, &mut BTreeSet::new());
            if tables.is_empty() || !tables.iter().all(&mine) {
                foreign.push(format!("view {}", v.name));
            }
        }
        for seq in self.catalog.sequences.iter().filter(|s| here(&s.name)) {
            if !seq.owned_by.as_ref().is_some_and(|o| mine(&o.table)) {
                foreign.push(format!("sequence {}", seq.name));
            }
        }
        for f in self.catalog.functions.iter().filter(|f| here(&f.name)) {
            foreign.push(format!("function {}", f.signature()));
        }
        if schema.owner == owner && foreign.is_empty() {
            return;
        }
        let mut why = Vec::new();
        if schema.owner != owner {
            why.push(format!(
                "it belongs to {} (the domain's tables belong to {}), who could then drop them",
                display_ident(&schema.owner),
                display_ident(owner)
            ));
        }
        if !foreign.is_empty() {
            let list = crate::text::at_most(foreign, 10, ", ", |n| format!(" and {n} more"));
            why.push(format!("it holds objects outside the domain: {list}"));
        }
        self.errors.push(format!(
            "schema {} already exists and carve did not create it: {}. Give the domain another name, or, to move the tables there as it is, record [[decisions]] subject = {:?}, choice = {EXISTING_SCHEMA_CHOICE:?}, reason = \"…\"",
            display_ident(domain),
            why.join("; "),
            subject
        ));
    }

    fn claim(&mut self, to: &QualName, what: &str) -> bool {
        let exists = self.catalog.table(to).is_some()
            || self.catalog.view(to).is_some()
            || self.sequence_names.contains(to);
        if exists || !self.taken.insert(to.clone()) {
            self.errors.push(format!(
                "{what} cannot move to {to}: that name is already taken"
            ));
            return false;
        }
        true
    }

    fn tables(&mut self) {
        let moves: Vec<(QualName, String)> = self
            .domain_of
            .iter()
            .filter(|(t, d)| &t.schema != *d)
            .map(|(t, d)| (t.clone(), d.clone()))
            .collect();
        for (from, domain) in moves {
            let table = self.catalog.table(&from).expect("checked in domain_map");
            let to = QualName::new(&domain, &from.name);
            if !self.claim(&to, &format!("table {from}")) {
                continue;
            }
            let alter = if table.kind == TableKind::Foreign {
                "ALTER FOREIGN TABLE"
            } else {
                "ALTER TABLE"
            };
            let (f, t) = (
                qualified(&from.schema, &from.name),
                qualified(&to.schema, &to.name),
            );
            let columns: Vec<(&str, &[Grant])> = table
                .columns
                .iter()
                .map(|c| (c.name.as_str(), c.grants.as_slice()))
                .collect();
            let sql = format!(
                "{alter} {f} SET SCHEMA {};\n{}",
                ident(&domain),
                compat_view(&f, &t, &table.owner, &table.grants, &columns, &to)
            );
            self.out.steps.push(Step {
                id: format!("move table {from}"),
                description: format!(
                    "move table {from} to {to}, with a compatibility view in its place"
                ),
                target: Target::Source,
                action: Action::Sql(SqlAction {
                    sql,
                    done_check: relation_exists(&to.schema, &to.name, "'r', 'p', 'f'"),
                    undo: format!(
                        "DROP VIEW {f};\n{alter} {t} SET SCHEMA {};",
                        ident(&from.schema)
                    ),
                    transactional: true,
                    strong_lock: true,
                    secret: None,
                    read: None,
                }),
            });
            self.out.renames.push(Rename {
                from: from.to_string(),
                to: to.to_string(),
                compat_view: true,
            });
            // Owned sequences (serial, identity) follow their table.
            for seq in self.owned_sequences.get(&from).into_iter().flatten() {
                self.out.renames.push(Rename {
                    from: seq.to_string(),
                    to: QualName::new(&domain, &seq.name).to_string(),
                    compat_view: false,
                });
            }
        }
    }

    /// Free-standing sequences go where the columns that draw from them are, when
    /// those are in one domain.
    fn sequences(&mut self) {
        for seq in &self.catalog.sequences {
            if seq.owned_by.is_some() || seq.identity {
                continue;
            }
            let needle = format!("'{}'::regclass", seq.name);
            let users: Vec<&QualName> = self
                .catalog
                .tables
                .iter()
                .filter(|t| {
                    t.columns
                        .iter()
                        .any(|c| c.default.as_deref().is_some_and(|d| d.contains(&needle)))
                })
                .map(|t| &t.name)
                .collect();
            let domains = self.domains_of(users.iter().copied());
            let subject = format!("sequence {}", seq.name);
            let single = single_domain(&domains);
            let Some(domain) = single else {
                if !users.is_empty() {
                    let why = format!(
                        "free-standing sequence used by tables of {}",
                        describe_domains(&domains)
                    );
                    self.decide(subject, true, why, "keep-until-move");
                }
                continue;
            };
            if seq.name.schema == domain {
                continue;
            }
            let why = format!(
                "free-standing sequence used only by the {domain} domain; moving it breaks nextval({}) called by name",
                lit(&seq.name.to_string())
            );
            if self.decide(subject, false, why, "move") != "move" {
                continue;
            }
            let to = QualName::new(&domain, &seq.name.name);
            if !self.claim(&to, &format!("sequence {}", seq.name)) {
                continue;
            }
            self.out.steps.push(Step {
                id: format!("move sequence {}", seq.name),
                description: format!("move sequence {} to {to}", seq.name),
                target: Target::Source,
                action: Action::Sql(SqlAction {
                    sql: format!(
                        "ALTER SEQUENCE {} SET SCHEMA {};",
                        qualified(&seq.name.schema, &seq.name.name),
                        ident(&domain)
                    ),
                    done_check: relation_exists(&to.schema, &to.name, "'S'"),
                    undo: format!(
                        "ALTER SEQUENCE {} SET SCHEMA {};",
                        qualified(&to.schema, &to.name),
                        ident(&seq.name.schema)
                    ),
                    transactional: true,
                    strong_lock: true,
                    secret: None,
                    read: None,
                }),
            });
            self.out.renames.push(Rename {
                from: seq.name.to_string(),
                to: to.to_string(),
                compat_view: false,
            });
        }
    }

    /// The tables a view reads, through the views it reads.
    fn view_tables(&self, view: &QualName, seen: &mut BTreeSet<QualName>) -> BTreeSet<QualName> {
        let mut tables = BTreeSet::new();
        if !seen.insert(view.clone()) {
            return tables;
        }
        if let Some(v) = self.catalog.view(view) {
            for dep in &v.depends_on {
                if self.catalog.table(&dep.relation).is_some() {
                    tables.insert(dep.relation.clone());
                } else {
                    tables.extend(self.view_tables(&dep.relation, seen));
                }
            }
        }
        tables
    }

    fn views(&mut self) {
        for view in &self.catalog.views {
            let tables = self.view_tables(&view.name, &mut BTreeSet::new());
            if tables.is_empty() {
                continue;
            }
            let domains = self.domains_of(&tables);
            let kind = if view.materialized {
                "materialized view"
            } else {
                "view"
            };
            let subject = format!("view {}", view.name);
            let Some(domain) = single_domain(&domains) else {
                if domains.iter().any(Option::is_some) {
                    let why = format!(
                        "{kind} over tables of {}; it keeps working while they share a server",
                        describe_domains(&domains)
                    );
                    self.decide(subject, true, why, "keep-until-move");
                }
                continue;
            };
            if view.name.schema == domain {
                continue;
            }
            let (why, default) = if view.materialized {
                (
                    format!("materialized view over the {domain} domain; moved, REFRESH must name its new place"),
                    "stay",
                )
            } else {
                (
                    format!("view over the {domain} domain; moved with a compatibility view in its place"),
                    "move",
                )
            };
            if self.decide(subject, false, why, default) != "move" {
                continue;
            }
            let to = QualName::new(&domain, &view.name.name);
            if !self.claim(&to, &format!("{kind} {}", view.name)) {
                continue;
            }
            let alter = if view.materialized {
                "ALTER MATERIALIZED VIEW"
            } else {
                "ALTER VIEW"
            };
            let (f, t) = (
                qualified(&view.name.schema, &view.name.name),
                qualified(&to.schema, &to.name),
            );
            let columns: Vec<(&str, &[Grant])> = view
                .columns
                .iter()
                .map(|c| (c.name.as_str(), c.grants.as_slice()))
                .collect();
            self.out.steps.push(Step {
                id: format!("move view {}", view.name),
                description: format!(
                    "move {kind} {} to {to}, with a compatibility view in its place",
                    view.name
                ),
                target: Target::Source,
                action: Action::Sql(SqlAction {
                    sql: format!(
                        "{alter} {f} SET SCHEMA {};\n{}",
                        ident(&domain),
                        compat_view(&f, &t, &view.owner, &view.grants, &columns, &to)
                    ),
                    done_check: relation_exists(&to.schema, &to.name, "'v', 'm'"),
                    undo: format!(
                        "DROP VIEW {f};\n{alter} {t} SET SCHEMA {};",
                        ident(&view.name.schema)
                    ),
                    transactional: true,
                    strong_lock: true,
                    secret: None,
                    read: None,
                }),
            });
            self.out.renames.push(Rename {
                from: view.name.to_string(),
                to: to.to_string(),
                compat_view: true,
            });
        }
    }

    /// Functions stay where they are unless the plan says move: callers name them, and
    /// no compatibility object can stand in for a function of every signature.
    fn functions(&mut self, resolver: &mut Resolver) {
        for function in &self.catalog.functions {
            let effect = resolver.function_touches(&function.name);
            let tables: BTreeSet<&QualName> =
                effect.reads.iter().chain(effect.writes.keys()).collect();
            if tables.is_empty() {
                continue;
            }
            let domains = self.domains_of(tables.iter().copied());
            let subject = format!("function {}", function.signature());
            let Some(domain) = single_domain(&domains) else {
                if domains.iter().any(Option::is_some) {
                    let why = format!("reads or writes tables of {}", describe_domains(&domains));
                    self.decide(subject, true, why, "keep-until-move");
                }
                continue;
            };
            let movable = matches!(
                function.kind,
                FunctionKind::Function | FunctionKind::Procedure
            );
            if function.name.schema == domain || !movable {
                continue;
            }
            let why = format!(
                "touches only the {domain} domain; stays unless moved (callers naming {} would then need the new schema)",
                function.name
            );
            if self.decide(subject, false, why, "stay") != "move" {
                continue;
            }
            let what = if function.kind == FunctionKind::Procedure {
                "PROCEDURE"
            } else {
                "FUNCTION"
            };
            let signature = |schema: &str| {
                format!(
                    "{}({})",
                    qualified(schema, &function.name.name),
                    function.arguments
                )
            };
            self.out.moved_functions.push((
                function.name.clone(),
                QualName::new(&domain, &function.name.name),
            ));
            self.out.steps.push(Step {
                id: format!("move function {}", function.signature()),
                description: format!(
                    "move {} {} to schema {}",
                    what.to_lowercase(),
                    function.signature(),
                    display_ident(&domain)
                ),
                target: Target::Source,
                action: Action::Sql(SqlAction::transactional(
                    format!(
                        "ALTER {what} {} SET SCHEMA {};",
                        signature(&function.name.schema),
                        ident(&domain)
                    ),
                    // Argument lists print differently under other search paths, so
                    // the check counts them instead: same name, same arity, in the
                    // domain.
                    format!(
                        "EXISTS (SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = {} AND p.proname = {} AND p.pronargs = {})",
                        lit(&domain),
                        lit(&function.name.name),
                        function.arity
                    ),
                    format!(
                        "ALTER {what} {} SET SCHEMA {};",
                        signature(&domain),
                        ident(&function.name.schema)
                    ),
                )),
            });
        }
    }

    fn foreign_keys(&mut self) {
        for table in &self.catalog.tables {
            if table.partition_of.is_some() {
                continue;
            }
            let here = self.domains_of([&table.name]);
            for (constraint, fk) in table.foreign_keys() {
                let there = self.domains_of([&fk.references]);
                if here == there {
                    continue;
                }
                let subject = format!(
                    "foreign key {}.{}",
                    table.name,
                    display_ident(&constraint.name)
                );
                let why = format!(
                    "{} ({}) references {} ({}); kept while both share a server",
                    table.name,
                    describe_domains(&here),
                    fk.references,
                    describe_domains(&there)
                );
                self.decide(subject, true, why, "keep-until-move");
            }
        }
    }

    fn triggers(&mut self, resolver: &mut Resolver) {
        for table in &self.catalog.tables {
            let here = self.domains_of([&table.name]);
            for trigger in &table.triggers {
                let effect = resolver.function_touches(&trigger.function);
                let touched: BTreeSet<&QualName> =
                    effect.reads.iter().chain(effect.writes.keys()).collect();
                let mut domains = self.domains_of(touched.iter().copied());
                domains.extend(here.iter().cloned());
                if domains.len() < 2 {
                    continue;
                }
                let subject = format!("trigger {}.{}", table.name, display_ident(&trigger.name));
                let why = format!(
                    "on {} ({}), its function {} touches {}",
                    table.name,
                    describe_domains(&here),
                    trigger.function,
                    describe_domains(&domains)
                );
                self.decide(subject, true, why, "keep-until-move");
            }
        }
    }
}

/// How a compatibility view's comment starts: retire and the forecast know them by it.
pub const COMPAT_VIEW_COMMENT: &str = "carve: compatibility view for ";

/// Whether `view` is a compatibility view assign made (its comment says so; a
/// split keeps the comment on the view it makes over both parts).
pub fn is_compat_view(view: &crate::catalog::View) -> bool {
    view.comment
        .as_deref()
        .is_some_and(|c| c.starts_with(COMPAT_VIEW_COMMENT))
}

/// The SQL that creates the compatibility view `old` over `new`, owned and granted as
/// the object was.
///
/// `security_invoker`, so the caller's own privileges and row-level security apply
/// beneath the view, except where the object has column-level grants: a
/// `security_invoker` view selecting every column needs every column's privilege, so
/// there the view runs as its owner and its own (copied) column grants do the
/// checking, as the table's did.
fn compat_view(
    old: &str,
    new: &str,
    owner: &str,
    grants: &[Grant],
    columns: &[(&str, &[Grant])],
    new_name: &QualName,
) -> String {
    let column_grants = columns
        .iter()
        .any(|(_, g)| g.iter().any(|g| g.grantee != owner));
    format!(
        "CREATE VIEW {old} WITH (security_invoker = {}) AS SELECT * FROM {new};\n\
         ALTER VIEW {old} OWNER TO {};\n\
         {}COMMENT ON VIEW {old} IS {};",
        !column_grants,
        ident(owner),
        grant_sql(old, owner, grants, columns),
        lit(&format!(
            "{COMPAT_VIEW_COMMENT}{new_name}; `carve undo assign` removes it"
        ))
    )
}

fn single_domain(domains: &BTreeSet<Option<String>>) -> Option<String> {
    match domains.iter().collect::<Vec<_>>().as_slice() {
        [Some(d)] => Some(d.clone()),
        _ => None,
    }
}

fn describe_domains(domains: &BTreeSet<Option<String>>) -> String {
    domains
        .iter()
        .map(|d| match d {
            Some(d) => d.clone(),
            None => "no domain".to_string(),
        })
        .collect::<Vec<_>>()
        .join(" and ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::testing::{catalog, grant, table};
    use crate::catalog::{Constraint, ConstraintKind, FkAction, ForeignKey};
    use crate::plan::testing::plan_for;
    use crate::plan::Decision;

    /// orders (sales) → customers (crm) by a foreign key; orders granted to a reader.
    fn shop() -> Catalog {
        let mut orders = table("public", "orders");
        orders.grants = vec![grant("reader", "SELECT"), grant("PUBLIC", "INSERT")];
        orders.constraints.push(Constraint {
            name: "orders_customer_fkey".into(),
            kind: ConstraintKind::ForeignKey,
            columns: vec!["total".into()],
            definition: "FOREIGN KEY (total) REFERENCES public.customers(total)".into(),
            deferrable: false,
            initially_deferred: false,
            inherited: false,
            foreign_key: Some(ForeignKey {
                references: QualName::new("public", "customers"),
                referenced_columns: vec!["total".into()],
                on_update: FkAction::NoAction,
                on_delete: FkAction::NoAction,
                match_full: false,
            }),
        });
        catalog(vec![orders, table("public", "customers")])
    }

    #[test]
    fn schemas_first_then_one_step_per_table_with_its_view() {
        let c = shop();
        let planned = plan(
            &plan_for(
                &c,
                &[
                    ("sales", &["public.orders"]),
                    ("crm", &["public.customers"]),
                ],
            ),
            &c,
        )
        .unwrap();
        let ids: Vec<&str> = planned.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "create schema crm",
                "create schema sales",
                "move table public.customers",
                "move table public.orders"
            ]
        );
        let orders = planned.steps[3].sql_action().unwrap();
        assert!(orders.strong_lock && orders.transactional);
        assert!(orders.sql.starts_with(
            "ALTER TABLE \"public\".\"orders\" SET SCHEMA \"sales\";\nCREATE VIEW \"public\".\"orders\" WITH (security_invoker = true) AS SELECT * FROM \"sales\".\"orders\";"
        ), "{}", orders.sql);
        assert!(orders
            .sql
            .contains("GRANT SELECT ON \"public\".\"orders\" TO \"reader\";"));
        assert!(orders
            .sql
            .contains("GRANT INSERT ON \"public\".\"orders\" TO PUBLIC;"));
        assert!(orders
            .done_check
            .contains("n.nspname = 'sales' AND c.relname = 'orders'"));
        assert_eq!(
            orders.undo,
            "DROP VIEW \"public\".\"orders\";\nALTER TABLE \"sales\".\"orders\" SET SCHEMA \"public\";"
        );
        // The schema is usable by everyone the tables were granted to.
        assert!(planned.steps[1]
            .sql_action()
            .unwrap()
            .sql
            .contains("GRANT USAGE ON SCHEMA \"sales\" TO PUBLIC, \"reader\";"));
        assert_eq!(planned.creates_schemas, ["crm", "sales"]);
        assert_eq!(planned.renames.len(), 2);
    }

    #[test]
    fn a_crossing_foreign_key_needs_a_decision_until_the_plan_has_one() {
        let c = shop();
        let mut p = plan_for(
            &c,
            &[
                ("sales", &["public.orders"]),
                ("crm", &["public.customers"]),
            ],
        );
        let planned = plan(&p, &c).unwrap();
        let missing: Vec<&str> = planned
            .missing()
            .iter()
            .map(|o| o.subject.as_str())
            .collect();
        assert_eq!(missing, ["foreign key public.orders.orders_customer_fkey"]);
        assert!(planned.objects[0]
            .why
            .contains("(sales) references public.customers (crm)"));

        p.decisions.push(Decision {
            subject: "foreign key public.orders.orders_customer_fkey".into(),
            choice: "replace-before-move".into(),
            reason: String::new(),
            rows: None,
        });
        let planned = plan(&p, &c).unwrap();
        assert!(planned.missing().is_empty());
        assert_eq!(planned.objects[0].choice(), "replace-before-move");

        p.decisions[0].choice = "whatever".into();
        let errors = plan(&p, &c).unwrap_err();
        assert!(
            errors[0].contains("\"whatever\" is not one of"),
            "{errors:?}"
        );

        // In one domain, the same key crosses nothing.
        let p = plan_for(&c, &[("sales", &["public.orders", "public.customers"])]);
        assert!(plan(&p, &c).unwrap().objects.is_empty());
    }

    #[test]
    fn hostile_names_are_quoted_everywhere() {
        let mut t = table("we\"ird schema", "select");
        t.owner = "o\"wner".into();
        let c = catalog(vec![t]);
        let domain = "Dö \"x\"; DROP TABLE y; --";
        let p = plan_for(&c, &[(domain, &["\"we\"\"ird schema\".\"select\""])]);
        let planned = plan(&p, &c).unwrap();
        let schema = planned.steps[0].sql_action().unwrap();
        assert!(
            schema.sql.starts_with(
                "CREATE SCHEMA \"Dö \"\"x\"\"; DROP TABLE y; --\" AUTHORIZATION \"o\"\"wner\";"
            ),
            "{}",
            schema.sql
        );
        assert_eq!(
            schema.done_check,
            "EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = 'Dö \"x\"; DROP TABLE y; --')"
        );
        let moved = planned.steps[1].sql_action().unwrap();
        assert!(moved.sql.starts_with(
            "ALTER TABLE \"we\"\"ird schema\".\"select\" SET SCHEMA \"Dö \"\"x\"\"; DROP TABLE y; --\";"
        ), "{}", moved.sql);
        // The plan's display form: quoted only where the name is not plain.
        assert_eq!(planned.renames[0].from, "\"we\"\"ird schema\".select");
    }

    #[test]
    fn column_grants_make_the_view_check_them_itself() {
        let mut t = table("public", "accounts");
        t.columns[0].grants = vec![grant("clerk", "UPDATE")];
        let c = catalog(vec![t]);
        let planned = plan(&plan_for(&c, &[("ledger", &["public.accounts"])]), &c).unwrap();
        let sql = &planned.steps[1].sql_action().unwrap().sql;
        assert!(sql.contains("WITH (security_invoker = false)"), "{sql}");
        assert!(
            sql.contains("GRANT UPDATE (\"total\") ON \"public\".\"accounts\" TO \"clerk\";"),
            "{sql}"
        );
    }

    #[test]
    fn system_schemas_and_twice_named_domains_are_refused() {
        let c = shop();
        let p = plan_for(
            &c,
            &[
                ("pg_catalog", &["public.orders"]),
                ("information_schema", &[]),
                ("crm", &["public.customers"]),
                ("crm", &[]),
            ],
        );
        let all = plan(&p, &c).unwrap_err().join("\n");
        assert!(all.contains("#1: pg_catalog is reserved"), "{all}");
        assert!(all.contains("#2: information_schema is reserved"), "{all}");
        assert!(all.contains("#3 and #4 are both named crm"), "{all}");
    }

    #[test]
    fn a_schema_carve_did_not_make_is_used_only_when_it_fits_or_is_decided() {
        let mut c = shop();
        c.schemas.push(crate::catalog::Schema {
            name: "sales".into(),
            owner: "mallory".into(),
            comment: None,
            grants: Vec::new(),
        });
        let mut theirs = table("sales", "ledger");
        theirs.owner = "mallory".into();
        c.tables.push(theirs);
        c.normalize();
        let mut p = plan_for(&c, &[("sales", &["public.orders"])]);
        let all = plan(&p, &c).unwrap_err().join("\n");
        assert!(all.contains("schema sales already exists"), "{all}");
        assert!(all.contains("it belongs to mallory"), "{all}");
        assert!(all.contains("table sales.ledger"), "{all}");
        assert!(all.contains("choice = \"use-existing\""), "{all}");

        // Empty and owned as carve would own it: used as it is.
        c.tables.retain(|t| t.name.schema != "sales");
        c.schemas
            .iter_mut()
            .find(|s| s.name == "sales")
            .unwrap()
            .owner = "app".into();
        c.normalize();
        let planned = plan(&p, &c).unwrap();
        assert_eq!(planned.steps[0].id, "move table public.orders");
        assert!(planned.creates_schemas.is_empty(), "undo must not drop it");

        // Someone else's, with a decision: used, never created or dropped.
        c.schemas
            .iter_mut()
            .find(|s| s.name == "sales")
            .unwrap()
            .owner = "mallory".into();
        assert!(plan(&p, &c).is_err());
        p.decisions.push(Decision {
            subject: "schema sales".into(),
            choice: "use-existing".into(),
            reason: "made by the DBA team".into(),
            rows: None,
        });
        assert!(plan(&p, &c).unwrap().creates_schemas.is_empty());
        p.decisions[0].choice = "take-it".into();
        let all = plan(&p, &c).unwrap_err().join("\n");
        assert!(all.contains("\"take-it\" is not \"use-existing\""), "{all}");
    }

    #[test]
    fn problems_are_all_named_and_nothing_is_planned() {
        let mut c = catalog(vec![table("public", "a"), table("sales", "a")]);
        c.server.version_num = 140000;
        c.server.version = "14.9".into();
        let p = plan_for(&c, &[("sales", &["public.a", "public.gone"]), ("", &[])]);
        let errors = plan(&p, &c).unwrap_err();
        let all = errors.join("\n");
        assert!(all.contains("PostgreSQL 14.9"), "{all}");
        assert!(
            all.contains("table public.gone is not in the database"),
            "{all}"
        );
        assert!(
            all.contains("cannot move to sales.a: that name is already taken"),
            "{all}"
        );
        assert!(all.contains("1 to 63 bytes"), "{all}");
    }
}
