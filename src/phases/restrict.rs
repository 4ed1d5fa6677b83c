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

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::{grantee, lit};
use crate::analysis::access::{self, Access, Columns, WriteKind};
use crate::analysis::usage::{default_search_path, Relation, Resolver};
use crate::catalog::{Catalog, Grant, QualName};
use crate::engine::{Action, SqlAction, Step, Target};
use crate::plan::Plan;
use crate::sql::{display_ident, ident, parse_qualified, qualified};
use crate::workload::Workload;

pub const PHASE: &str = crate::plan::phase_names::RESTRICT;

/// The id prefix of the steps that create login roles (they get passwords after).
pub const CREATE_LOGIN_STEP: &str = "create login role ";

/// The id prefix of the steps that give those roles their passwords.
pub const SET_PASSWORD_STEP: &str = "set password ";

/// Where the passwords of new login roles go: the password file, and the host, port
/// and database of their `~/.pgpass` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordTarget {
    pub file: std::path::PathBuf,
    pub host: String,
    pub port: u16,
    pub database: String,
}

/// The login roles `steps` create.
pub fn created_login_roles(steps: &[Step]) -> Vec<&str> {
    steps
        .iter()
        .filter_map(|s| s.id.strip_prefix(CREATE_LOGIN_STEP))
        .collect()
}

/// The login roles `steps` create that no step gives a password.
pub fn roles_without_password_step(steps: &[Step]) -> Vec<&str> {
    created_login_roles(steps)
        .into_iter()
        .filter(|role| {
            !steps
                .iter()
                .any(|s| s.id.strip_prefix(SET_PASSWORD_STEP) == Some(role))
        })
        .collect()
}

/// One step per login role `steps` create without a password step yet: the role's
/// password, from the password file (or generated and written there first), set
/// as its SCRAM verifier when the step runs. The plan holds only where it comes from.
pub fn password_steps(steps: &[Step], target: &PasswordTarget) -> Vec<Step> {
    roles_without_password_step(steps)
        .into_iter()
        .map(|role| Step {
id: format!("{SET_PASSWORD_STEP}{role}"),
description: format!(
                "password of login role {} (kept in {})",
                display_ident(role),
                target.file.display()
            ),
target: Target::Source,
action: Action::Sql(SqlAction {
sql: format!(
                "ALTER ROLE {} PASSWORD {};",
                ident(role),
                crate::engine::SECRET_VARIABLE
            ),
done_check: format!(
                "EXISTS (SELECT 1 FROM pg_catalog.pg_authid WHERE rolname = {} AND rolpassword IS NOT NULL)",
                lit(role)
            ),
undo: format!("ALTER ROLE {} PASSWORD NULL;", ident(role)),
transactional: true,
strong_lock: false,
secret: Some(crate::engine::SecretInput::PasswordVerifier {
                file: target.file.clone(),
                host: target.host.clone(),
                port: target.port,
                database: target.database.clone(),
                role: role.to_string(),
            }),
}),
})
        .collect()
}

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
    let statements = p.statements(workload);
    let services = p.services(workload, &statements);
    p.crossings_and_grants(&services, &statements);
    p.existing_privileges(&services);
    if !p.errors.is_empty() {
        return Err(p.errors);
    }
    let steps = p.steps(&services);
    let probes = p.probes(&services, &statements);
    let service_plans = p.service_plans(&services);
    Ok(RestrictPlan {
        services: service_plans,
        crossings: p.crossings.into_values().collect(),
        revokes: p.revokes.iter().flat_map(Revoke::describe).collect(),
        notes: p.notes,
        steps,
        probes,
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

/// Privileges held now that restrict takes away.
#[derive(Debug, Clone)]
enum Revoke {
    /// Entries of one ACL (an object's, or one column's).
    Acl(AclRevoke),
    Membership {
        role: String,
        member: String,
    },
}

/// One ACL with the entries to take away. The whole ACL is kept, in PostgreSQL's
/// order, because a grant given back goes to the end of the list: the undo gives
/// back every entry from the first one taken, in order, so the ACL reads exactly as
/// before (pg_dump prints it in that order).
#[derive(Debug, Clone)]
struct AclRevoke {
    kind: &'static str,
    on: String,
    on_sql: String,
    object: CheckObject,
    column: Option<String>,
    owner: String,
    /// Every entry, in ACL order, and whether it is taken away.
    entries: Vec<(Grant, bool)>,
}

/// Where a privilege's ACL lives, for checks.
#[derive(Debug, Clone)]
enum CheckObject {
    Relation(QualName),
    Schema(String),
}

impl Revoke {
    fn describe(&self) -> Vec<String> {
        match self {
            Revoke::Acl(acl) => acl
                .entries
                .iter()
                .filter(|(_, goes)| *goes)
                .map(|(g, _)| {
                    let from = display_grantee(&g.grantee);
                    let (privilege, kind, on) = (&g.privilege, acl.kind, &acl.on);
                    match &acl.column {
                        Some(c) => format!(
                            "{privilege} ({}) on {kind} {on} from {from}",
                            display_ident(c)
                        ),
                        None => format!("{privilege} on {kind} {on} from {from}"),
                    }
                })
                .collect(),
            Revoke::Membership { role, member } => vec![format!(
                "membership of {} in {}",
                display_ident(member),
                display_ident(role)
            )],
        }
    }
}

/// Accumulates one grantee's privileges on one relation.
#[derive(Debug, Default, Clone)]
struct GrantAcc {
    privileges: BTreeSet<&'static str>,
    columns: BTreeMap<&'static str, BTreeSet<String>>,
    because: Option<String>,
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
    crossings: BTreeMap<String, Crossing>,
    /// (grantee, kind, relation) → privileges.
    grants: BTreeMap<(String, RelKind, QualName), GrantAcc>,
    /// (grantee, schema) that need USAGE.
    schema_usage: BTreeSet<(String, String)>,
    revokes: Vec<Revoke>,
    notes: Vec<String>,
    errors: Vec<String>,
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
            crossings: BTreeMap::new(),
            grants: BTreeMap::new(),
            schema_usage: BTreeSet::new(),
            revokes: Vec::new(),
            notes: Vec::new(),
            errors,
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

    /// Every distinct statement of every service, with what it needs.
    fn statements(&mut self, workload: &Workload) -> Vec<Statement> {
        let mut resolver = Resolver::with_caller_rights(self.catalog, default_search_path());
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for s in &workload.statements {
            if !seen.insert((s.service.clone(), s.sql.clone())) {
                continue;
            }
            // A statement that does not parse is still probed by the proof: PostgreSQL
            // has the last word on what it needs.
            let accesses = access::analyze(&s.sql).unwrap_or_default();
            let mut needs = Vec::new();
            for a in &accesses {
                self.needs_of(&mut resolver, a, &mut needs);
            }
            out.push(Statement {
                service: s.service.clone(),
                origin: s.origin.clone(),
                sql: s.sql.clone(),
                needs,
            });
        }
        out
    }

    fn needs_of(&self, resolver: &mut Resolver, access: &Access, needs: &mut Vec<Need>) {
        for name in &access.reads {
            if let Some(rel) = resolver.relation(name) {
                self.need_relation(needs, rel, &["SELECT"], &Columns::All, None);
            }
        }
        for (name, write) in &access.writes {
            if let Some(rel) = resolver.relation(name) {
                let privileges = write_privileges(&write.kinds, write.reads_rows);
                self.need_relation(needs, rel, &privileges, &write.columns, None);
            }
        }
        const INVOKED: &str = "a function it calls or a trigger it fires";
        let invoked = resolver.invoked(access);
        for table in &invoked.reads {
            let rel = Relation::Table(table.clone());
            self.need_relation(needs, rel, &["SELECT"], &Columns::All, Some(INVOKED));
        }
        for (table, write) in &invoked.writes {
            let privileges = write_privileges(&write.kinds, write.reads_rows);
            let rel = Relation::Table(table.clone());
            self.need_relation(needs, rel, &privileges, &write.columns, Some(INVOKED));
        }
    }

    /// The privileges on a named relation, then what lies beneath: an invoker view's
    /// relations, and the sequences an INSERT's column defaults draw from.
    fn need_relation(
        &self,
        needs: &mut Vec<Need>,
        relation: Relation,
        privileges: &[&'static str],
        columns: &Columns,
        runtime: Option<&'static str>,
    ) {
        let (name, kind) = match relation {
            Relation::Table(q) => (q, RelKind::Table),
            Relation::View(q) => (q, RelKind::View),
        };
        let data = self.data_of(&name, kind);
        let column_level =
            kind != RelKind::Sequence && data.iter().next().is_some_and(|t| self.column_level(t));
        for &privilege in privileges {
            let columns = match columns {
                Columns::Some(c)
                    if column_level
                        && !c.is_empty()
                        && matches!(privilege, "INSERT" | "UPDATE") =>
                {
                    Some(c.clone())
                }
                _ => None,
            };
            let need = Need {
                relation: name.clone(),
                kind,
                privilege,
                columns,
                runtime,
                data: data.clone(),
            };
            if !needs.contains(&need) {
                needs.push(need);
            }
        }
        let writes = privileges.iter().any(|p| *p != "SELECT");
        match kind {
            RelKind::View => {
                let Some(view) = self.catalog.view(&name) else {
                    return;
                };
                let beneath: Vec<Relation> = view
                    .depends_on
                    .iter()
                    .map(|d| {
                        if self.catalog.table(&d.relation).is_some() {
                            Relation::Table(d.relation.clone())
                        } else {
                            Relation::View(d.relation.clone())
                        }
                    })
                    .collect();
                if self.is_invoker_view(&name) {
                    for rel in &beneath {
                        // An updatable view writes its one base relation; the others
                        // (and that one) are read.
                        let p: Vec<&'static str> = if writes && beneath.len() == 1 {
                            privileges.to_vec()
                        } else {
                            vec!["SELECT"]
                        };
                        self.need_relation(needs, rel.clone(), &p, columns, runtime);
                    }
                } else if privileges.contains(&"INSERT") && beneath.len() == 1 {
                    // A definer view checks its owner's privileges, but the base
                    // table's defaults still run nextval as the caller.
                    if let Relation::Table(t) = &beneath[0] {
                        self.need_sequences(needs, t);
                    }
                }
            }
            RelKind::Table if privileges.contains(&"INSERT") => self.need_sequences(needs, &name),
            _ => {}
        }
    }

    fn need_sequences(&self, needs: &mut Vec<Need>, table: &QualName) {
        let root = self.catalog.partition_root(table);
        for seq in self.table_sequences.get(&root).into_iter().flatten() {
            let need = Need {
                relation: seq.clone(),
                kind: RelKind::Sequence,
                privilege: "USAGE",
                columns: None,
                runtime: Some("a column default of an INSERT calls nextval"),
                data: self.data_of(seq, RelKind::Sequence),
            };
            if !needs.contains(&need) {
                needs.push(need);
            }
        }
    }

    /// Each service's home domain and roles.
    fn services(&mut self, workload: &Workload, statements: &[Statement]) -> Vec<ServiceRoles> {
        let names: BTreeSet<&str> = statements.iter().map(|s| s.service.as_str()).collect();
        // Which services use each existing role, to tell a role of one's own from a
        // shared one.
        let mut users_of: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for service in &self.plan.services {
            for role in &service.roles {
                users_of.entry(role).or_default().insert(&service.name);
            }
        }
        for (service, seen) in &workload.seen {
            for role in &seen.roles {
                users_of.entry(role).or_default().insert(service);
            }
        }
        let mut out: Vec<ServiceRoles> = Vec::new();
        for name in names {
            let config = self.plan.services.iter().find(|s| s.name == name);
            let (domain, domain_from) = match config.and_then(|c| c.domain.clone()) {
                Some(d) => {
                    if !self.plan.domains.iter().any(|x| x.name == d) {
                        self.errors.push(format!(
                            "service {name}: domain {d:?} is not one of the plan's domains"
                        ));
                    }
                    (d, "plan")
                }
                None => match self.home_domain(name, statements) {
                    Some(d) => (d, "workload"),
                    None => {
                        self.errors.push(format!(
                            "service {name} touches no table of any domain: name its home domain in the plan ([[services]] name = {name:?}, domain = \"…\")"
                        ));
                        continue;
                    }
                },
            };
            let group = self
                .plan
                .domains
                .iter()
                .find(|d| d.name == domain)
                .and_then(|d| d.role.clone())
                .unwrap_or_else(|| format!("domain_{domain}"));
            let seen_roles: Vec<&str> = config
                .map(|c| c.roles.iter().map(String::as_str).collect())
                .unwrap_or_default();
            let (role, new_role) = match config.and_then(|c| c.login_role.clone()) {
                Some(r) => {
                    let exists = self.catalog.roles.iter().any(|x| x.name == r);
                    (r, !exists)
                }
                None => {
                    let own = match seen_roles.as_slice() {
                        [only] => {
                            let alone = users_of.get(only).is_some_and(|u| u.len() == 1);
                            let usable = self
                                .catalog
                                .roles
                                .iter()
                                .any(|r| r.name == *only && r.login && !r.superuser);
                            (alone && usable).then(|| only.to_string())
                        }
                        _ => None,
                    };
                    match own {
                        Some(r) => (r, false),
                        None => {
                            if self.catalog.roles.iter().any(|r| r.name == name) {
                                self.errors.push(format!(
                                    "service {name}: a role named {name} already exists but is not this service's own; name the service's login role in the plan ([[services]] login_role = \"…\")"
                                ));
                            }
                            (name.to_string(), true)
                        }
                    }
                }
            };
            for shared in seen_roles.iter().filter(|r| **r != role) {
                let users: Vec<&str> = users_of
                    .get(shared)
                    .map(|u| u.iter().copied().collect())
                    .unwrap_or_default();
                let note = format!(
                    "role {} (used by {}) keeps its privileges: once every service connects as its own role, take its LOGIN away (ALTER ROLE {} NOLOGIN)",
                    display_ident(shared),
                    users.join(", "),
                    ident(shared)
                );
                if !self.notes.contains(&note) {
                    self.notes.push(note);
                }
            }
            out.push(ServiceRoles {
                name: name.to_string(),
                domain,
                domain_from,
                role,
                new_role,
                group,
                connection_limit: config.and_then(|c| c.connection_limit),
            });
        }
        self.check_roles(&out);
        out
    }

    /// The domain whose tables a service writes most; reads break ties and decide
    /// for a service that only reads.
    fn home_domain(&self, service: &str, statements: &[Statement]) -> Option<String> {
        let mut score: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for s in statements.iter().filter(|s| s.service == service) {
            for need in s.needs.iter().filter(|n| n.runtime.is_none()) {
                for table in &need.data {
                    if let Some(d) = self.domain(table) {
                        let e = score.entry(d).or_default();
                        if need.privilege == "SELECT" {
                            e.1 += 1;
                        } else {
                            e.0 += 1;
                        }
                    }
                }
            }
        }
        score
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(a.0)))
            .map(|(d, _)| d.to_string())
    }

    fn check_roles(&mut self, services: &[ServiceRoles]) {
        let mut by_role: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for s in services {
            by_role.entry(&s.role).or_default().push(&s.name);
            for name in [&s.role, &s.group] {
                if name.is_empty() || name.len() > MAX_NAME || name.contains('\0') {
                    self.errors.push(format!(
                        "service {}: role name {name:?} must be 1 to {MAX_NAME} bytes (PostgreSQL cuts longer names); set [[services]] login_role or [[domains]] role",
                        s.name
                    ));
                }
            }
            if self.catalog.roles.iter().any(|r| r.name == s.group) {
                self.errors.push(format!(
                    "domain {}: role {} already exists, and restrict creates the domain's group role; name another in the plan ([[domains]] role = \"…\")",
                    s.domain,
                    display_ident(&s.group)
                ));
            }
            if services.iter().any(|o| o.role == s.group) {
                self.errors.push(format!(
                    "role {} would be both a service's login role and domain {}'s group role",
                    display_ident(&s.group),
                    s.domain
                ));
            }
            if !s.new_role {
                self.check_kept_role(s);
            }
        }
        for (role, users) in by_role.into_iter().filter(|(_, u)| u.len() > 1) {
            self.errors.push(format!(
                "services {} would share login role {}: each service needs its own",
                users.join(", "),
                display_ident(role)
            ));
        }
    }

    /// A role the service keeps must be one that can be restricted.
    fn check_kept_role(&mut self, s: &ServiceRoles) {
        let Some(role) = self.catalog.roles.iter().find(|r| r.name == s.role) else {
            return;
        };
        if role.superuser {
            self.errors.push(format!(
                "service {}: role {} is a superuser, which no grant can restrict; name a new login role in the plan ([[services]] login_role = \"…\")",
                s.name,
                display_ident(&role.name)
            ));
        }
        let owned: Vec<String> = self
            .relations()
            .filter(|(_, _, owner, _)| *owner == role.name)
            .filter(|(name, kind, _, _)| !self.inside(&self.data_of(name, *kind), &s.domain))
            .map(|(name, kind, _, _)| format!("{} {name}", kind.name()))
            .collect();
        if !owned.is_empty() {
            self.errors.push(format!(
                "service {}: role {} owns {} outside domain {} ({}), and an owner keeps every privilege; give them another owner, or name a new login role in the plan ([[services]] login_role = \"…\")",
                s.name,
                display_ident(&role.name),
                owned.len(),
                s.domain,
                owned.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
            ));
        }
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

    /// Sorts each statement's needs into the domain's own grants and crossings.
    fn crossings_and_grants(&mut self, services: &[ServiceRoles], statements: &[Statement]) {
        for s in statements {
            let Some(service) = services.iter().find(|x| x.name == s.service) else {
                continue;
            };
            for need in &s.needs {
                let foreign: Vec<&QualName> = need
                    .data
                    .iter()
                    .filter(|t| self.domain(t) != Some(service.domain.as_str()))
                    .collect();
                if foreign.is_empty() {
                    self.add_grant(&service.group, need, None);
                    continue;
                }
                let write = need.privilege != "SELECT";
                let mut granted = true;
                let mut because = Vec::new();
                for table in foreign {
                    let crossing = self.crossing(service, table, write);
                    let at = StatementRef {
                        origin: s.origin.clone(),
                        sql: s.sql.clone(),
                    };
                    if !crossing.statements.contains(&at) {
                        crossing.statements.push(at);
                    }
                    match &crossing.decision {
                        Some(d) if d.granted => {
                            because.push(format!("{}: {}", crossing.subject, d.meaning))
                        }
                        _ => granted = false,
                    }
                }
                if granted {
                    self.add_grant(&service.role, need, Some(because.join("; ")));
                }
            }
        }
    }

    /// The crossing of `service` to `table`, made (with the plan's decision) on first use.
    fn crossing(&mut self, service: &ServiceRoles, table: &QualName, write: bool) -> &mut Crossing {
        let name = self.original_name(table).to_string();
        let subject = format!(
            "{} {name} by {}",
            if write { "write" } else { "read" },
            service.name
        );
        if !self.crossings.contains_key(&subject) {
            let decision = self.plan.decision(&subject).and_then(|d| {
                match interpret(write, &d.choice, &d.reason) {
                    Ok((granted, meaning)) => Some(CrossingDecision {
                        choice: d.choice.clone(),
                        granted,
                        meaning,
                    }),
                    Err(e) => {
                        self.errors.push(format!("decision for {subject}: {e}"));
                        None
                    }
                }
            });
            if let (Some(d), true) = (&decision, write) {
                self.check_delegate(&subject, &d.choice, table);
            }
            let choices = if write { WRITE_CHOICES } else { READ_CHOICES };
            self.crossings.insert(
                subject.clone(),
                Crossing {
                    subject: subject.clone(),
                    service: service.name.clone(),
                    table: name,
                    table_domain: self.domain(table).map(str::to_string),
                    write,
                    statements: Vec::new(),
                    choices: choices.iter().map(|c| c.to_string()).collect(),
                    decision,
                },
            );
        }
        self.crossings.get_mut(&subject).expect("inserted above")
    }

    /// A write delegated to a service of the plan must go to one whose home domain
    /// holds the table.
    fn check_delegate(&mut self, subject: &str, choice: &str, table: &QualName) {
        let Some((_, to)) = choice.split_once(':') else {
            return;
        };
        let Some(config) = self.plan.services.iter().find(|s| s.name == to) else {
            return;
        };
        let domain = self.domain(table).map(str::to_string);
        if let (Some(theirs), Some(table_domain)) = (&config.domain, &domain) {
            if theirs != table_domain {
                self.errors.push(format!(
                    "decision for {subject}: {to}'s domain is {theirs}, but the table is in {table_domain}"
                ));
            }
        }
    }

    fn add_grant(&mut self, to: &str, need: &Need, because: Option<String>) {
        let acc = self
            .grants
            .entry((to.to_string(), need.kind, need.relation.clone()))
            .or_default();
        match &need.columns {
            None => {
                acc.privileges.insert(need.privilege);
            }
            Some(cols) => acc
                .columns
                .entry(need.privilege)
                .or_default()
                .extend(cols.iter().cloned()),
        }
        if let Some(b) = because {
            match &mut acc.because {
                Some(old) if !old.contains(&b) => {
                    old.push_str("; ");
                    old.push_str(&b);
                }
                Some(_) => {}
                None => acc.because = Some(b),
            }
        }
        let schema = &need.relation.schema;
        let usable = self
            .catalog
            .schemas
            .iter()
            .find(|s| &s.name == schema)
            .is_some_and(|s| {
                // PUBLIC's privileges on a domain's schema are revoked below.
                let public_counts = !self.plan.domains.iter().any(|d| d.name == s.name);
                s.owner == to
                    || s.grants.iter().any(|g| {
                        g.privilege == "USAGE"
                            && (g.grantee == to || (g.grantee == "PUBLIC" && public_counts))
                    })
            });
        if !usable {
            self.schema_usage.insert((to.to_string(), schema.clone()));
        }
    }

    /// What is granted today and must go: PUBLIC's privileges on the domains'
    /// relations and schemas, CREATE on public, and a kept role's privileges and
    /// memberships outside its domain. A grant restrict would make anyway stays.
    fn existing_privileges(&mut self, services: &[ServiceRoles]) {
        let kept: BTreeMap<&str, &ServiceRoles> = services
            .iter()
            .filter(|s| !s.new_role)
            .map(|s| (s.role.as_str(), s))
            .collect();
        let mut revokes = Vec::new();
        let relations: Vec<_> = self.relations().collect();
        for (name, kind, owner, grants) in relations {
            let data = self.data_of(name, kind);
            let in_domains = data.iter().any(|t| self.domain(t).is_some());
            let mut columns: Vec<(&str, &[Grant])> = Vec::new();
            if let Some(t) = self.catalog.table(name) {
                columns.extend(
                    t.columns
                        .iter()
                        .map(|c| (c.name.as_str(), c.grants.as_slice())),
                );
            } else if let Some(v) = self.catalog.view(name) {
                columns.extend(
                    v.columns
                        .iter()
                        .map(|c| (c.name.as_str(), c.grants.as_slice())),
                );
            }
            let acls = std::iter::once((None, grants))
                .chain(columns.iter().map(|(c, gs)| (Some(*c), *gs)));
            for (column, acl) in acls {
                let entries: Vec<(Grant, bool)> = acl
                    .iter()
                    .map(|g| {
                        let goes = if g.grantee == "PUBLIC" {
                            in_domains
                        } else if let Some(s) = kept.get(g.grantee.as_str()) {
                            !self.inside(&data, &s.domain)
                                && !self.will_grant(&g.grantee, kind, name, &g.privilege)
                        } else {
                            false
                        };
                        (g.clone(), goes)
                    })
                    .collect();
                if entries.iter().any(|(_, goes)| *goes) {
                    revokes.push(Revoke::Acl(AclRevoke {
                        kind: kind.name(),
                        on: name.to_string(),
                        on_sql: format!(
                            "{} {}",
                            kind.keyword(),
                            qualified(&name.schema, &name.name)
                        ),
                        object: CheckObject::Relation(name.clone()),
                        column: column.map(str::to_string),
                        owner: owner.to_string(),
                        entries,
                    }));
                }
            }
        }
        let domains: BTreeSet<&str> = self.plan.domains.iter().map(|d| d.name.as_str()).collect();
        for schema in &self.catalog.schemas {
            let entries: Vec<(Grant, bool)> = schema
                .grants
                .iter()
                .map(|g| {
                    let goes = if g.grantee == "PUBLIC" {
                        (schema.name == "public" && g.privilege == "CREATE")
                            || domains.contains(schema.name.as_str())
                    } else if let Some(s) = kept.get(g.grantee.as_str()) {
                        let granted_inside = self
                            .grants
                            .keys()
                            .any(|(to, _, r)| *to == s.role && r.schema == schema.name);
                        (schema.name == "public" && g.privilege == "CREATE")
                            || (domains.contains(schema.name.as_str())
                                && schema.name != s.domain
                                && !granted_inside)
                    } else {
                        false
                    };
                    (g.clone(), goes)
                })
                .collect();
            if entries.iter().any(|(_, goes)| *goes) {
                revokes.push(Revoke::Acl(AclRevoke {
                    kind: "schema",
                    on: display_ident(&schema.name).to_string(),
                    on_sql: format!("SCHEMA {}", ident(&schema.name)),
                    object: CheckObject::Schema(schema.name.clone()),
                    column: None,
                    owner: schema.owner.clone(),
                    entries,
                }));
            }
        }
        // Memberships that carry privileges outside the kept role's domain.
        for s in kept.values() {
            let Some(role) = self.catalog.roles.iter().find(|r| r.name == s.role) else {
                continue;
            };
            for parent in &role.member_of {
                if self.reaches_outside(parent, &s.domain, &mut BTreeSet::new()) {
                    revokes.push(Revoke::Membership {
                        role: parent.clone(),
                        member: role.name.clone(),
                    });
                }
            }
        }
        self.revokes = revokes;

        // What a role holds already is not granted again (nor revoked by its undo).
        for ((to, _, relation), acc) in self.grants.iter_mut() {
            let held: Vec<&Grant> = self
                .catalog
                .table(relation)
                .map(|t| t.grants.as_slice())
                .or_else(|| self.catalog.view(relation).map(|v| v.grants.as_slice()))
                .or_else(|| {
                    self.catalog
                        .sequences
                        .iter()
                        .find(|s| &s.name == relation)
                        .map(|s| s.grants.as_slice())
                })
                .unwrap_or_default()
                .iter()
                .filter(|g| &g.grantee == to)
                .collect();
            acc.privileges
                .retain(|p| !held.iter().any(|g| g.privilege == *p));
            let whole = acc.privileges.clone();
            acc.columns.retain(|p, _| !whole.contains(p));
        }
        self.grants
            .retain(|_, acc| !acc.privileges.is_empty() || !acc.columns.is_empty());
    }

    fn will_grant(&self, to: &str, kind: RelKind, relation: &QualName, privilege: &str) -> bool {
        self.grants
            .get(&(to.to_string(), kind, relation.clone()))
            .is_some_and(|acc| {
                acc.privileges.contains(privilege) || acc.columns.contains_key(privilege)
            })
    }

    /// Whether membership in `role` gives privileges outside `domain`: the
    /// predefined roles that read or write everything, a superuser, a role holding
    /// or owning such a relation, or a role that is a member of one.
    fn reaches_outside(&self, role: &str, domain: &str, seen: &mut BTreeSet<String>) -> bool {
        if !seen.insert(role.to_string()) {
            return false;
        }
        if matches!(role, "pg_read_all_data" | "pg_write_all_data") {
            return true;
        }
        let Some(r) = self.catalog.roles.iter().find(|r| r.name == role) else {
            return false;
        };
        if r.superuser {
            return true;
        }
        let holds = self.relations().any(|(name, kind, owner, grants)| {
            (owner == role || grants.iter().any(|g| g.grantee == role))
                && !self.inside(&self.data_of(name, kind), domain)
        });
        holds
            || r.member_of
                .iter()
                .any(|p| self.reaches_outside(p, domain, seen))
    }

    fn steps(&self, services: &[ServiceRoles]) -> Vec<Step> {
        let mut steps = Vec::new();
        let groups: BTreeMap<&str, &str> = services
            .iter()
            .map(|s| (s.group.as_str(), s.domain.as_str()))
            .collect();
        for (group, domain) in &groups {
            steps.push(Step {
                id: format!("create group role {group}"),
                description: format!(
                    "group role {} carries the {domain} domain's privileges",
                    display_ident(group)
                ),
                target: Target::Source,
                action: Action::Sql(SqlAction {
                    sql: format!("CREATE ROLE {} NOLOGIN;", ident(group)),
                    done_check: role_exists(group),
                    undo: format!("DROP ROLE {};", ident(group)),
                    transactional: true,
                    strong_lock: false,
                    secret: None,
                }),
            });
        }
        for s in services {
            if s.new_role {
                let limit = s
                    .connection_limit
                    .map(|n| format!(" CONNECTION LIMIT {n}"))
                    .unwrap_or_default();
                steps.push(Step {
                    id: format!("{CREATE_LOGIN_STEP}{}", s.role),
                    description: format!(
                        "login role {} for service {}",
                        display_ident(&s.role),
                        s.name
                    ),
                    target: Target::Source,
                    action: Action::Sql(SqlAction {
                        sql: format!("CREATE ROLE {} LOGIN{limit};", ident(&s.role)),
                        done_check: role_exists(&s.role),
                        undo: format!("DROP ROLE {};", ident(&s.role)),
                        transactional: true,
                        strong_lock: false,
                        secret: None,
                    }),
                });
            } else if let Some(limit) = s.connection_limit {
                let before = self
                    .catalog
                    .roles
                    .iter()
                    .find(|r| r.name == s.role)
                    .map_or(-1, |r| r.connection_limit);
                if before != limit {
                    steps.push(Step {
id: format!("connection limit {}", s.role),
description: format!(
                            "at most {limit} connections for {} (was {before})",
                            display_ident(&s.role)
                        ),
target: Target::Source,
action: Action::Sql(SqlAction {
sql: format!("ALTER ROLE {} CONNECTION LIMIT {limit};", ident(&s.role)),
done_check: format!(
                            "EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = {} AND rolconnlimit = {limit})",
                            lit(&s.role)
                        ),
undo: format!("ALTER ROLE {} CONNECTION LIMIT {before};", ident(&s.role)),
transactional: true,
strong_lock: false,
secret: None,
}),
});
                }
            }
            steps.push(Step {
                id: format!("grant {} to {}", s.group, s.role),
                description: format!(
                    "{} becomes a member of {}",
                    display_ident(&s.role),
                    display_ident(&s.group)
                ),
                target: Target::Source,
                action: Action::Sql(SqlAction {
                    sql: format!("GRANT {} TO {};", ident(&s.group), ident(&s.role)),
                    done_check: is_member(&s.group, &s.role),
                    undo: format!("REVOKE {} FROM {};", ident(&s.group), ident(&s.role)),
                    transactional: true,
                    strong_lock: false,
                    secret: None,
                }),
            });
        }
        for (to, schema) in &self.schema_usage {
            steps.push(Step {
                id: format!("grant usage on schema {schema} to {to}"),
                description: format!(
                    "USAGE on schema {} for {}",
                    display_ident(schema),
                    display_ident(to)
                ),
                target: Target::Source,
                action: Action::Sql(SqlAction {
                    sql: format!("GRANT USAGE ON SCHEMA {} TO {};", ident(schema), ident(to)),
                    done_check: acl_has(
                        &CheckObject::Schema(schema.clone()),
                        None,
                        to,
                        &["USAGE"],
                        None,
                    ),
                    undo: format!(
                        "REVOKE USAGE ON SCHEMA {} FROM {};",
                        ident(schema),
                        ident(to)
                    ),
                    transactional: true,
                    strong_lock: false,
                    secret: None,
                }),
            });
        }
        for ((to, kind, relation), acc) in &self.grants {
            let on = format!(
                "{} {}",
                kind.keyword(),
                qualified(&relation.schema, &relation.name)
            );
            let object = CheckObject::Relation(relation.clone());
            let because = acc
                .because
                .as_ref()
                .map(|b| format!(" ({b})"))
                .unwrap_or_default();
            if !acc.privileges.is_empty() {
                let privileges = in_order(&acc.privileges);
                let list = privileges.join(", ");
                steps.push(Step {
                    id: format!("grant {} on {relation} to {to}", list),
                    description: format!(
                        "{list} on {} {relation} for {}{because}",
                        kind.name(),
                        display_ident(to)
                    ),
                    target: Target::Source,
                    action: Action::Sql(SqlAction {
                        sql: format!("GRANT {list} ON {on} TO {};", ident(to)),
                        done_check: acl_has(&object, None, to, &privileges, None),
                        undo: format!("REVOKE {list} ON {on} FROM {};", ident(to)),
                        transactional: true,
                        strong_lock: false,
                        secret: None,
                    }),
                });
            }
            for (privilege, columns) in &acc.columns {
                let cols: Vec<&str> = columns.iter().map(String::as_str).collect();
                let list = cols.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ");
                steps.push(Step {
                    id: format!(
                        "grant {privilege} ({}) on {relation} to {to}",
                        cols.join(", ")
                    ),
                    description: format!(
                        "{privilege} on {} column(s) of {relation} for {}{because}",
                        cols.len(),
                        display_ident(to)
                    ),
                    target: Target::Source,
                    action: Action::Sql(SqlAction {
                        sql: format!("GRANT {privilege} ({list}) ON {on} TO {};", ident(to)),
                        done_check: acl_has(&object, Some(&cols), to, &[privilege], None),
                        undo: format!("REVOKE {privilege} ({list}) ON {on} FROM {};", ident(to)),
                        transactional: true,
                        strong_lock: false,
                        secret: None,
                    }),
                });
            }
        }
        for revoke in &self.revokes {
            steps.push(revoke_step(revoke));
        }
        steps
    }

    fn probes(&self, services: &[ServiceRoles], statements: &[Statement]) -> Vec<Probe> {
        statements
            .iter()
            .filter_map(|s| {
                let service = services.iter().find(|x| x.name == s.service)?;
                let runtime = s
                    .needs
                    .iter()
                    .filter_map(|n| n.runtime.map(|why| (n, why)))
                    .map(|(n, why)| RuntimeCheck {
                        what: format!(
                            "{}{} on {} {} ({why})",
                            n.privilege,
                            n.columns
                                .as_ref()
                                .map(|c| format!(
                                    " ({})",
                                    c.iter().cloned().collect::<Vec<_>>().join(", ")
                                ))
                                .unwrap_or_default(),
                            n.kind.name(),
                            n.relation
                        ),
                        check: privilege_check(n),
                    })
                    .collect();
                let accepted_by: BTreeSet<String> = s
                    .needs
                    .iter()
                    .flat_map(|n| {
                        n.data
                            .iter()
                            .filter(|t| self.domain(t) != Some(service.domain.as_str()))
                            .map(move |t| (n, t))
                    })
                    .filter_map(|(n, t)| {
                        let subject = format!(
                            "{} {} by {}",
                            if n.privilege == "SELECT" {
                                "read"
                            } else {
                                "write"
                            },
                            self.original_name(t),
                            service.name
                        );
                        let c = self.crossings.get(&subject)?;
                        c.decision.as_ref().filter(|d| !d.granted).map(|_| subject)
                    })
                    .collect();
                Some(Probe {
                    service: s.service.clone(),
                    role: service.role.clone(),
                    origin: s.origin.clone(),
                    sql: s.sql.clone(),
                    runtime,
                    accepted_by: accepted_by.into_iter().collect(),
                })
            })
            .collect()
    }

    fn service_plans(&self, services: &[ServiceRoles]) -> Vec<ServicePlan> {
        services
            .iter()
            .map(|s| ServicePlan {
                service: s.name.clone(),
                domain: s.domain.clone(),
                domain_from: s.domain_from,
                role: s.role.clone(),
                new_role: s.new_role,
                group: s.group.clone(),
                connection_limit: s.connection_limit,
                grants: self
                    .grants
                    .iter()
                    .filter(|((to, _, _), _)| *to == s.group || *to == s.role)
                    .map(|((to, kind, relation), acc)| GrantPlan {
                        on: relation.to_string(),
                        kind: *kind,
                        privileges: in_order(&acc.privileges)
                            .into_iter()
                            .map(str::to_string)
                            .collect(),
                        columns: acc
                            .columns
                            .iter()
                            .map(|(p, c)| (p.to_string(), c.iter().cloned().collect()))
                            .collect(),
                        to: to.clone(),
                        because: acc.because.clone(),
                    })
                    .collect(),
            })
            .collect()
    }
}

/// What a cross-domain choice means: (granted, meaning), or why it is not valid.
fn interpret(write: bool, choice: &str, reason: &str) -> Result<(bool, String), String> {
    let need_reason = |what: &str| {
        if reason.trim().is_empty() {
            Err(format!("{what} needs a reason (reason = \"…\")"))
        } else {
            Ok(())
        }
    };
    if write {
        let (kind, to) = choice.split_once(':').unwrap_or((choice, ""));
        if to.trim().is_empty() || !matches!(kind, "delegate" | "temporary-grant") {
            return Err(format!(
                "{choice:?} is not one of {} (a write to another domain's table is delegated to the service that owns it)",
                WRITE_CHOICES.join(", ")
            ));
        }
        return if kind == "delegate" {
            Ok((false, format!("the service asks {to} to make this write")))
        } else {
            need_reason("a temporary grant")?;
            Ok((true, format!("until it delegates to {to}: {reason}")))
        };
    }
    match choice {
        "api" => Ok((false, "the service calls the owner's API instead".into())),
        "cache" => Ok((
            false,
            "the service reads a cache the owner keeps up to date".into(),
        )),
        "replicate" => Ok((
            true,
            "granted until the move phase replicates the data to the reader".into(),
        )),
        "shared-domain" => Ok((true, "a shared data domain its readers may read".into())),
        "temporary-grant" => {
            need_reason("a temporary grant")?;
            Ok((true, format!("temporary grant: {reason}")))
        }
        other => Err(format!(
            "{other:?} is not one of {}",
            READ_CHOICES.join(", ")
        )),
    }
}

/// The privileges a write of these kinds needs on its table.
fn write_privileges(kinds: &BTreeSet<WriteKind>, reads_rows: bool) -> Vec<&'static str> {
    let mut out = BTreeSet::new();
    for kind in kinds {
        match kind {
            WriteKind::Insert | WriteKind::Copy => {
                out.insert("INSERT");
            }
            WriteKind::Update | WriteKind::Lock => {
                out.insert("UPDATE");
            }
            WriteKind::Delete => {
                out.insert("DELETE");
            }
            WriteKind::Truncate => {
                out.insert("TRUNCATE");
            }
            WriteKind::Merge => {}
        }
    }
    // UPDATE and DELETE read the rows they match; MERGE joins; FOR UPDATE selects.
    let reads = reads_rows
        || kinds.iter().any(|k| {
            matches!(
                k,
                WriteKind::Update | WriteKind::Delete | WriteKind::Merge | WriteKind::Lock
            )
        });
    if reads {
        out.insert("SELECT");
    }
    in_order(&out)
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

fn role_exists(role: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = {})",
        lit(role)
    )
}

fn role_oid(role: &str) -> String {
    if role == "PUBLIC" {
        "0".to_string()
    } else {
        format!(
            "(SELECT oid FROM pg_catalog.pg_roles WHERE rolname = {})",
            lit(role)
        )
    }
}

fn is_member(role: &str, member: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members WHERE roleid = {} AND member = {})",
        role_oid(role),
        role_oid(member)
    )
}

/// True when `grantee` holds every one of `privileges` on the object (on each of
/// `columns`, when given), granted by `grantor` when given.
fn acl_has(
    object: &CheckObject,
    columns: Option<&[&str]>,
    grantee: &str,
    privileges: &[&str],
    grantor: Option<&str>,
) -> String {
    let list = privileges
        .iter()
        .map(|p| lit(p))
        .collect::<Vec<_>>()
        .join(", ");
    let by = grantor
        .map(|g| format!(" AND a.grantor = {}", role_oid(g)))
        .unwrap_or_default();
    let (from, expected) = match (object, columns) {
        (CheckObject::Schema(s), _) => (
            format!(
                "pg_catalog.pg_namespace o, aclexplode(o.nspacl) a WHERE o.nspname = {}",
                lit(s)
            ),
            privileges.len(),
        ),
        (CheckObject::Relation(r), None) => (
            format!(
                "pg_catalog.pg_class o, aclexplode(o.relacl) a WHERE o.oid = {}",
                relation_oid(r)
            ),
            privileges.len(),
        ),
        (CheckObject::Relation(r), Some(cols)) => (
            format!(
                "pg_catalog.pg_attribute o, aclexplode(o.attacl) a WHERE o.attrelid = {} AND o.attname IN ({})",
                relation_oid(r),
                cols.iter().map(|c| lit(c)).collect::<Vec<_>>().join(", ")
            ),
            privileges.len() * cols.len(),
        ),
    };
    let what = if columns.is_some() {
        "DISTINCT (o.attname, a.privilege_type)"
    } else {
        "DISTINCT a.privilege_type"
    };
    format!(
        "(SELECT count({what}) FROM {from} AND a.grantee = {} AND a.privilege_type IN ({list}){by}) = {expected}",
        role_oid(grantee)
    )
}

/// A revoke step. Each privilege is revoked (and given back) as its grantor when
/// that is not the owner: a superuser's REVOKE acts as the owner.
fn revoke_step(revoke: &Revoke) -> Step {
    match revoke {
        Revoke::Acl(acl) => acl_revoke_step(acl),
        Revoke::Membership { role, member } => Step {
            id: format!("revoke {role} from {member}"),
            description: format!(
                "{} stops being a member of {} (which reaches outside its domain)",
                display_ident(member),
                display_ident(role)
            ),
            target: Target::Source,
            action: Action::Sql(SqlAction {
                sql: format!("REVOKE {} FROM {};", ident(role), ident(member)),
                done_check: format!("NOT {}", is_member(role, member)),
                undo: format!("GRANT {} TO {};", ident(role), ident(member)),
                transactional: true,
                strong_lock: false,
                secret: None,
            }),
        },
    }
}

fn acl_revoke_step(acl: &AclRevoke) -> Step {
    let what = |g: &Grant| match &acl.column {
        Some(c) => format!("{} ({})", g.privilege, ident(c)),
        None => g.privilege.clone(),
    };
    // As the grantor, when the grantor is not the owner.
    let as_grantor = |g: &Grant, statement: String| {
        if g.grantor == acl.owner {
            format!("{statement};\n")
        } else {
            format!(
                "SET LOCAL ROLE {}; {statement}; RESET ROLE;\n",
                ident(&g.grantor)
            )
        }
    };
    let revoke = |g: &Grant| {
        as_grantor(
            g,
            format!(
                "REVOKE {} ON {} FROM {}",
                what(g),
                acl.on_sql,
                grantee(&g.grantee)
            ),
        )
    };
    let grant = |g: &Grant| {
        as_grantor(
            g,
            format!(
                "GRANT {} ON {} TO {}{}",
                what(g),
                acl.on_sql,
                grantee(&g.grantee),
                if g.grantable {
                    " WITH GRANT OPTION"
                } else {
                    ""
                }
            ),
        )
    };
    let cols = acl.column.as_ref().map(|c| vec![c.as_str()]);
    let held = |g: &Grant| {
        acl_has(
            &acl.object,
            cols.as_deref(),
            &g.grantee,
            &[g.privilege.as_str()],
            Some(&g.grantor),
        )
    };
    let gone: Vec<&Grant> = acl
        .entries
        .iter()
        .filter(|(_, goes)| *goes)
        .map(|(g, _)| g)
        .collect();
    let sql: String = gone.iter().map(|g| revoke(g)).collect();
    let done_check = gone
        .iter()
        .map(|g| format!("NOT {}", held(g)))
        .collect::<Vec<_>>()
        .join(" AND ");
    // From the first entry taken away to the end: take back what stayed, then give
    // everything back in the original order.
    let first = acl.entries.iter().position(|(_, goes)| *goes).unwrap_or(0);
    let suffix = &acl.entries[first..];
    let mut undo: String = suffix
        .iter()
        .filter(|(_, goes)| !goes)
        .map(|(g, _)| revoke(g))
        .collect();
    undo.extend(suffix.iter().map(|(g, _)| grant(g)));
    let on = match &acl.column {
        Some(c) => format!("{} {}.{}", acl.kind, acl.on, display_ident(c)),
        None => format!("{} {}", acl.kind, acl.on),
    };
    let from: BTreeSet<String> = gone.iter().map(|g| display_grantee(&g.grantee)).collect();
    Step {
        id: format!("revoke on {on}"),
        description: format!(
            "take {} privilege(s) on {on} away from {}",
            gone.len(),
            from.into_iter().collect::<Vec<_>>().join(", ")
        ),
        target: Target::Source,
        action: Action::Sql(SqlAction {
            sql,
            done_check,
            undo,
            transactional: true,
            strong_lock: false,
            secret: None,
        }),
    }
}

/// A relation's oid by a catalog lookup, which (unlike `to_regclass`) needs no
/// privilege on its schema, so it works as the restricted role too; NULL when absent.
fn relation_oid(relation: &QualName) -> String {
    format!(
        "(SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = {} AND c.relname = {})",
        lit(&relation.schema),
        lit(&relation.name)
    )
}

/// A boolean SQL check that the current role holds a need (for the proof).
fn privilege_check(need: &Need) -> String {
    let rel = relation_oid(&need.relation);
    let p = lit(need.privilege);
    match (&need.kind, &need.columns) {
        (RelKind::Sequence, _) => format!("coalesce(has_sequence_privilege({rel}, {p}), false)"),
        (_, Some(cols)) => cols
            .iter()
            .map(|c| {
                format!(
                    "coalesce(has_column_privilege({rel}, {}, {p}), false)",
                    lit(c)
                )
            })
            .collect::<Vec<_>>()
            .join(" AND "),
        (_, None) => format!("coalesce(has_table_privilege({rel}, {p}), false)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::testing::{catalog, column, grant, role, table};
    use crate::catalog::{Column, ColumnRef, Schema, Sequence, View, ViewDependency};
    use crate::plan::testing::plan_for;
    use crate::plan::Decision;

    /// After assign: `sales.orders` (serial id, a compatibility view `public.orders`)
    /// and `people.customers`, one domain each.
    fn assigned() -> Catalog {
        let mut orders = table("sales", "orders");
        orders.columns.push(Column {
            default: Some("nextval('sales.orders_id_seq'::regclass)".into()),
            ..column("id", "integer")
        });
        orders.grants = vec![grant("PUBLIC", "SELECT"), grant("reader", "SELECT")];
        let mut c = catalog(vec![orders, table("people", "customers")]);
        c.views.push(View {
            name: QualName::new("public", "orders"),
            materialized: false,
            owner: "app".into(),
            definition: "SELECT * FROM sales.orders".into(),
            columns: vec![column("total", "integer"), column("id", "integer")],
            options: vec!["security_invoker=true".into()],
            depends_on: vec![ViewDependency {
                relation: QualName::new("sales", "orders"),
                columns: vec!["total".into(), "id".into()],
            }],
            triggers: vec![],
            comment: None,
            grants: vec![],
        });
        c.sequences.push(Sequence {
            name: QualName::new("sales", "orders_id_seq"),
            data_type: "integer".into(),
            start: 1,
            increment: 1,
            min: 1,
            max: i64::MAX,
            cycle: false,
            owner: "app".into(),
            owned_by: Some(ColumnRef {
                table: QualName::new("sales", "orders"),
                column: "id".into(),
            }),
            identity: false,
            comment: None,
            grants: vec![],
        });
        for name in ["sales", "people", "public"] {
            c.schemas.push(Schema {
                name: name.into(),
                owner: "app".into(),
                comment: None,
                grants: if name == "public" {
                    vec![grant("PUBLIC", "USAGE")]
                } else {
                    vec![]
                },
            });
        }
        c.roles = vec![role("u", true), role("reader", false)];
        c.normalize();
        c
    }

    fn plan_with(decisions: &[(&str, &str, &str)]) -> Plan {
        let mut plan = plan_for(
            &assigned(),
            &[
                ("sales", &["sales.orders"]),
                ("people", &["people.customers"]),
            ],
        );
        plan.decisions = decisions
            .iter()
            .map(|(subject, choice, reason)| Decision {
                subject: subject.to_string(),
                choice: choice.to_string(),
                reason: reason.to_string(),
            })
            .collect();
        plan
    }

    fn workload(sql: &str) -> Workload {
        Workload::from_texts("w", &[("sales", sql)])
    }

    /// The SQL of the step with this id.
    fn step<'a>(planned: &'a RestrictPlan, id: &str) -> &'a SqlAction {
        planned
            .steps
            .iter()
            .find(|s| s.id == id)
            .and_then(Step::sql_action)
            .unwrap_or_else(|| panic!("no SQL step {id}: {:#?}", planned.steps))
    }

    #[test]
    fn the_group_gets_what_the_workload_does_through_views_and_defaults() {
        let sql = "INSERT INTO orders (total) VALUES ($1) RETURNING id; SELECT total FROM orders;";
        let planned = plan(&plan_with(&[]), &assigned(), &workload(sql)).unwrap();
        assert!(planned.crossings.is_empty());
        let s = &planned.services[0];
        assert_eq!(
            (
                s.domain.as_str(),
                s.role.as_str(),
                s.new_role,
                s.group.as_str()
            ),
            ("sales", "sales", true, "domain_sales")
        );
        let ids: Vec<&str> = planned.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids[..4],
            [
                "create group role domain_sales",
                "create login role sales",
                "grant domain_sales to sales",
                "grant usage on schema sales to domain_sales",
            ]
        );
        // RETURNING reads rows back; the invoker view needs its table granted too.
        let view = step(
            &planned,
            "grant SELECT, INSERT on public.orders to domain_sales",
        );
        assert_eq!(
            view.sql,
            "GRANT SELECT, INSERT ON TABLE \"public\".\"orders\" TO \"domain_sales\";"
        );
        assert_eq!(
            view.undo,
            "REVOKE SELECT, INSERT ON TABLE \"public\".\"orders\" FROM \"domain_sales\";"
        );
        step(
            &planned,
            "grant SELECT, INSERT on sales.orders to domain_sales",
        );
        let seq = step(
            &planned,
            "grant USAGE on sales.orders_id_seq to domain_sales",
        );
        assert!(
            seq.sql.starts_with("GRANT USAGE ON SEQUENCE"),
            "{}",
            seq.sql
        );
        // The sequence is only checked at run time: the proof checks it explicitly.
        let insert = &planned.probes[0];
        assert_eq!(insert.runtime.len(), 1, "{:#?}", insert.runtime);
        assert!(insert.runtime[0].check.contains("has_sequence_privilege"));
        assert!(insert.accepted_by.is_empty());
    }

    #[test]
    fn public_grants_on_a_domain_go_and_undo_restores_the_acl_order() {
        let planned = plan(
            &plan_with(&[]),
            &assigned(),
            &workload("SELECT total FROM orders;"),
        )
        .unwrap();
        let revoke = step(&planned, "revoke on table sales.orders");
        assert_eq!(
            revoke.sql,
            "REVOKE SELECT ON TABLE \"sales\".\"orders\" FROM PUBLIC;\n"
        );
        // PUBLIC's entry came first: reader's is taken back and both are given back
        // in their order.
        assert_eq!(
            revoke.undo,
            "REVOKE SELECT ON TABLE \"sales\".\"orders\" FROM \"reader\";\n\
             GRANT SELECT ON TABLE \"sales\".\"orders\" TO PUBLIC;\n\
             GRANT SELECT ON TABLE \"sales\".\"orders\" TO \"reader\";\n"
        );
        assert!(revoke.done_check.starts_with("NOT (SELECT count("));
        assert_eq!(
            planned.revokes,
            ["SELECT on table sales.orders from PUBLIC"]
        );
    }

    #[test]
    fn a_crossing_needs_a_decision_and_the_choice_decides_the_grant() {
        let sql = "SELECT o.total FROM orders o JOIN people.customers c ON c.total = o.total;";
        let subject = "read people.customers by sales";
        let planned = plan(&plan_with(&[]), &assigned(), &workload(sql)).unwrap();
        let missing = planned.missing();
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].subject, subject);
        assert_eq!(missing[0].statements[0].origin, "w/sales.sql:1");

        let api = plan(
            &plan_with(&[(subject, "api", "")]),
            &assigned(),
            &workload(sql),
        )
        .unwrap();
        assert!(api.missing().is_empty());
        assert!(!api.steps.iter().any(|s| s.id.contains("people.customers")));
        assert_eq!(api.probes[0].accepted_by, [subject]);

        let err = plan(
            &plan_with(&[(subject, "temporary-grant", "")]),
            &assigned(),
            &workload(sql),
        )
        .unwrap_err();
        assert!(err[0].contains("needs a reason"), "{err:?}");

        let granted = plan(
            &plan_with(&[(subject, "temporary-grant", "report until Q3")]),
            &assigned(),
            &workload(sql),
        )
        .unwrap();
        // To the service's own role, not the domain's group.
        let g = granted
            .steps
            .iter()
            .find(|s| s.id == "grant SELECT on people.customers to sales")
            .unwrap();
        assert!(
            g.description.contains("report until Q3"),
            "{}",
            g.description
        );
        step(&granted, "grant usage on schema people to sales");
        assert!(granted.probes[0].accepted_by.is_empty());
    }

    #[test]
    fn a_domain_that_asks_for_column_privileges_gets_them_for_writes() {
        let mut p = plan_with(&[]);
        p.domains[0].column_privileges = true;
        let sql = "UPDATE orders SET total = $1 WHERE id = $2;";
        let planned = plan(&p, &assigned(), &workload(sql)).unwrap();
        let update = step(
            &planned,
            "grant UPDATE (total) on sales.orders to domain_sales",
        );
        assert_eq!(
            update.sql,
            "GRANT UPDATE (\"total\") ON TABLE \"sales\".\"orders\" TO \"domain_sales\";"
        );
        assert!(
            update.done_check.contains("o.attname IN ('total')"),
            "{}",
            update.done_check
        );
        step(
            &planned,
            "grant UPDATE (total) on public.orders to domain_sales",
        );
        // Reads stay whole-table: carve does not track the columns a statement reads.
        step(&planned, "grant SELECT on sales.orders to domain_sales");
    }

    #[test]
    fn choices_are_checked_and_writes_name_their_delegate() {
        assert!(!interpret(true, "delegate:people-api", "").unwrap().0);
        assert!(
            interpret(true, "temporary-grant:people-api", "until v2")
                .unwrap()
                .0
        );
        assert!(interpret(true, "delegate", "").is_err());
        assert!(interpret(true, "api", "").is_err());
        assert!(interpret(true, "temporary-grant:x", " ").is_err());
        assert!(interpret(false, "replicate", "").unwrap().0);
        assert!(!interpret(false, "cache", "").unwrap().0);
        let err = interpret(false, "magic", "").unwrap_err();
        assert!(err.contains("api, cache, replicate"), "{err}");
    }

    #[test]
    fn roles_that_cannot_be_restricted_are_refused_all_at_once() {
        let mut c = assigned();
        c.server.current_user = "reader".into();
        c.roles.push(role("domain_sales", false));
        let mut p = plan_with(&[]);
        p.services.push(crate::plan::Service {
            name: "sales".into(),
            login_role: Some("x".repeat(64)),
            ..Default::default()
        });
        let errors = plan(&p, &c, &workload("SELECT total FROM orders;")).unwrap_err();
        let all = errors.join("\n");
        for expected in [
            "needs a superuser",
            "must be 1 to 63 bytes",
            "already exists",
        ] {
            assert!(all.contains(expected), "{expected}: {all}");
        }

        // A superuser service role, and one owning another domain's table.
        let mut c = assigned();
        c.roles.push(role("sales_rw", true));
        c.tables[0].owner = "sales_rw".into();
        let mut p = plan_with(&[]);
        p.services.push(crate::plan::Service {
            name: "sales".into(),
            roles: vec!["sales_rw".into()],
            login_role: Some("sales_rw".into()),
            ..Default::default()
        });
        let sql = "SELECT total FROM orders;";
        let all = plan(&p, &c, &workload(sql)).unwrap_err().join("\n");
        assert!(all.contains("is a superuser"), "{all}");
        assert!(all.contains("owns 1 outside domain sales"), "{all}");
    }
}
