//! What the domain's tables need on their new server besides the tables themselves:
//! the roles that own and use them (logging in with the same password: the source's
//! SCRAM verifier is copied when the step runs, never stored), the functions its
//! triggers call and the functions of its schema, the triggers, each relation's
//! owner and grants, and the services' `search_path`, so their unchanged SQL finds
//! the tables once they connect to the new server.
//!
//! Roles are shared by every database of a server, so one may already be there: a
//! role carve makes is marked by a comment, and its undo drops only a marked role.

use std::collections::{BTreeMap, BTreeSet};

use super::super::{grant_sql, lit, revoke_sql, role_exists};
use super::on_domain;
use crate::catalog::{Catalog, Column, Function, Grant, QualName, Role, Trigger, View};
use crate::engine::{SecretInput, SqlAction, Step, SECRET_VARIABLE};
use crate::sql::{display_ident, dollar_quoted, ident, qualified};

/// The comment that marks a role carve made on `domain`'s server.
pub fn role_marker(domain: &str) -> String {
    format!("made by carve move of domain {domain}")
}

/// The roles the domain's objects name (their owners and grantees), and the login
/// roles that are members of those (the services), each after the roles it is a
/// member of. Superusers are left out: they are the server's own.
pub fn roles_needed<'c>(catalog: &'c Catalog, domain: &str) -> Vec<&'c Role> {
    let mut named: BTreeSet<&str> = BTreeSet::new();
    let mut name = |owner: &'c str, grants: &'c [Grant]| {
        named.insert(owner);
        named.extend(grants.iter().map(|g| g.grantee.as_str()));
    };
    if let Some(schema) = catalog.schemas.iter().find(|s| s.name == domain) {
        name(&schema.owner, &schema.grants);
    }
    for table in catalog.tables.iter().filter(|t| t.name.schema == domain) {
        name(&table.owner, &table.grants);
        for column in &table.columns {
            name(&table.owner, &column.grants);
        }
    }
    for seq in catalog.sequences.iter().filter(|s| s.name.schema == domain) {
        name(&seq.owner, &seq.grants);
    }
    let views = catalog.views.iter().filter(|v| v.name.schema == domain);
    let mut across = super::split_across::table_side(catalog, domain);
    across.extend(super::split_across::part_side(catalog, domain));
    for view in views
        .chain(joined_compat_views(catalog, domain))
        .chain(across.iter().map(|s| s.view))
    {
        name(&view.owner, &view.grants);
        for column in &view.columns {
            name(&view.owner, &column.grants);
        }
    }
    for function in functions_needed(catalog, domain) {
        named.insert(&function.owner);
    }
    // Members that log in: the services using the domain through a group role.
    loop {
        let members: Vec<&str> = catalog
            .roles
            .iter()
            .filter(|r| r.login && !named.contains(r.name.as_str()))
            .filter(|r| r.member_of.iter().any(|g| named.contains(g.as_str())))
            .map(|r| r.name.as_str())
            .collect();
        if members.is_empty() {
            break;
        }
        named.extend(members);
    }
    let mut roles: Vec<&Role> = catalog
        .roles
        .iter()
        .filter(|r| named.contains(r.name.as_str()) && !r.superuser)
        .collect();
    // Groups first: a role's depth is how many of the chosen roles it sits under.
    let chosen: BTreeMap<&str, &Role> = roles.iter().map(|r| (r.name.as_str(), *r)).collect();
    fn depth(role: &Role, chosen: &BTreeMap<&str, &Role>, seen: usize) -> usize {
        if seen > chosen.len() {
            return seen;
        }
        role.member_of
            .iter()
            .filter_map(|g| chosen.get(g.as_str()))
            .map(|g| 1 + depth(g, chosen, seen + 1))
            .max()
            .unwrap_or(0)
    }
    roles.sort_by_key(|r| (depth(r, &chosen, 0), r.name.clone()));
    roles
}

/// The functions the domain needs on its server: those in its schema, and those its
/// tables' and views' triggers call (wherever they live).
pub fn functions_needed<'c>(catalog: &'c Catalog, domain: &str) -> Vec<&'c Function> {
    let called: BTreeSet<&QualName> = domain_triggers(catalog, domain)
        .map(|(_, t)| &t.function)
        .collect();
    catalog
        .functions
        .iter()
        .filter(|f| f.name.schema == domain || (called.contains(&f.name) && f.arity == 0))
        .collect()
}

/// The triggers on the domain's tables and views, and on the joined compatibility
/// views that go with it, with the relation they are on.
fn domain_triggers<'c>(
    catalog: &'c Catalog,
    domain: &str,
) -> impl Iterator<Item = (&'c QualName, &'c Trigger)> {
    let joined: BTreeSet<&QualName> = joined_compat_views(catalog, domain)
        .map(|v| &v.name)
        .collect();
    // A split's row trigger writes the parts; those in other domains stay behind.
    let leaving_parts = super::split_across::tables_leaving_parts(catalog, domain);
    let domain = domain.to_string();
    catalog.triggers().filter(move |(on, t)| {
        (on.schema == domain || joined.contains(on))
            && !(t.name == super::split_across::ROW_TRIGGER && leaving_parts.contains(*on))
    })
}

/// The compatibility views outside the domain that join two or more of its tables
/// and nothing else: what a split leaves under the table's old name, a view over
/// both parts whose `INSTEAD OF` trigger sends each write to its part. The
/// domain's tables cannot stand in for such a view under its name, as they do for
/// a view over one table, so it goes with the domain, under its own name.
pub fn joined_compat_views<'c>(
    catalog: &'c Catalog,
    domain: &str,
) -> impl Iterator<Item = &'c View> {
    let domain = domain.to_string();
    catalog.views.iter().filter(move |v| {
        v.name.schema != domain
            && !v.materialized
            && crate::phases::assign::is_compat_view(v)
            && v.depends_on.len() >= 2
            && v.depends_on.iter().all(|d| d.relation.schema == domain)
    })
}

/// Steps before the tables: the roles (with their memberships).
pub fn role_steps(catalog: &Catalog, domain: &str) -> Vec<Step> {
    let roles = roles_needed(catalog, domain);
    let chosen: BTreeSet<&str> = roles.iter().map(|r| r.name.as_str()).collect();
    let marker = lit(&role_marker(domain));
    let mut steps = Vec::new();
    for role in &roles {
        let name = ident(&role.name);
        let mut options = vec![
            if role.login { "LOGIN" } else { "NOLOGIN" }.to_string(),
            if role.inherit { "INHERIT" } else { "NOINHERIT" }.to_string(),
        ];
        if role.connection_limit >= 0 {
            options.push(format!("CONNECTION LIMIT {}", role.connection_limit));
        }
        if let Some(until) = &role.valid_until {
            options.push(format!("VALID UNTIL {}", lit(until)));
        }
        let undo = format!(
            "DO {};",
            dollar_quoted(&format!(
                "BEGIN IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = {} AND pg_catalog.shobj_description(r.oid, 'pg_authid') = {marker}) THEN EXECUTE {}; END IF; END",
                lit(&role.name),
                lit(&format!("DROP ROLE {name}"))
            ))
        );
        steps.push(on_domain(
            domain,
            format!("create role {}", display_ident(&role.name)),
            format!(
                "role {} with the password it has on the source",
                display_ident(&role.name)
            ),
            SqlAction {
                sql: format!(
                    "CREATE ROLE {name} {} PASSWORD {SECRET_VARIABLE};\nCOMMENT ON ROLE {name} IS {marker};",
                    options.join(" ")
                ),
                done_check: role_exists(&role.name),
                // A role that was there before carve is left alone.
                undo,
                transactional: true,
                strong_lock: false,
                secret: Some(SecretInput::VerifierOnSource {
                    role: role.name.clone(),
                }),
                read: None,
            },
        ));
        for group in role
            .member_of
            .iter()
            .filter(|g| chosen.contains(g.as_str()))
        {
            steps.push(on_domain(
            domain,
                format!(
                    "grant {} to {}",
                    display_ident(group),
                    display_ident(&role.name)
                ),
                format!(
                    "{} is a member of {}, as on the source",
                    display_ident(&role.name),
                    display_ident(group)
                ),
                SqlAction::transactional(
                    format!("GRANT {} TO {name};", ident(group)),
                    format!(
                        "EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles g ON g.oid = m.roleid JOIN pg_catalog.pg_roles r ON r.oid = m.member WHERE g.rolname = {} AND r.rolname = {})",
                        lit(group),
                        lit(&role.name)
                    ),
                    format!("REVOKE {} FROM {name};", ident(group)),
                ),
            ));
        }
    }
    steps
}

/// True when the function of that signature exists: a step's check.
fn function_exists(function: &Function) -> String {
    format!(
        "EXISTS (SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = {} AND p.proname = {} AND pg_catalog.pg_get_function_identity_arguments(p.oid) = {})",
        lit(&function.name.schema),
        lit(&function.name.name),
        lit(&function.arguments)
    )
}

/// The functions the domain needs (`functions_needed`), created with bodies
/// unchecked (as pg_dump does: a body may name tables that come later), so they go
/// right after the schema: defaults, checks and views may call them.
pub fn function_steps(catalog: &Catalog, domain: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    for function in functions_needed(catalog, domain) {
        let Some(definition) = &function.definition else {
            continue; // aggregates: refused by the preflight
        };
        let signature = format!(
            "{}({})",
            qualified(&function.name.schema, &function.name.name),
            function.arguments
        );
        let routine = if function.kind == crate::catalog::FunctionKind::Procedure {
            "PROCEDURE"
        } else {
            "FUNCTION"
        };
        steps.push(on_domain(
            domain,
            format!("create function {}", function.signature()),
            format!("function {}", function.signature()),
            SqlAction::transactional(
                format!(
                    "SET LOCAL check_function_bodies = off;\n{};\nALTER {routine} {signature} OWNER TO {};",
                    definition.trim().trim_end_matches(';'),
                    ident(&function.owner)
                ),
                function_exists(function),
                format!("DROP {routine} {signature};"),
            ),
        ));
    }
    steps
}

/// The triggers on the domain's tables and views, after those.
pub fn trigger_steps(catalog: &Catalog, domain: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    for (on, trigger) in domain_triggers(catalog, domain) {
        let relation = qualified(&on.schema, &on.name);
        let mut sql = format!("{};\n", trigger.definition.trim().trim_end_matches(';'));
        if !trigger.enabled {
            sql.push_str(&format!(
                "ALTER TABLE {relation} DISABLE TRIGGER {};\n",
                ident(&trigger.name)
            ));
        }
        steps.push(on_domain(
            domain,
            format!("create trigger {}.{}", on, display_ident(&trigger.name)),
            format!("trigger {} on {on}", display_ident(&trigger.name)),
            SqlAction::transactional(
                sql,
                format!(
                    "EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = pg_catalog.to_regclass({}) AND tgname = {})",
                    lit(&relation),
                    lit(&trigger.name)
                ),
                format!("DROP TRIGGER {} ON {relation};", ident(&trigger.name)),
            ),
        ));
    }
    steps
}

/// One relation (or the schema) to give its owner and grants.
struct Owned<'c> {
    /// `TABLE`, `SEQUENCE`, `VIEW`, `SCHEMA`.
    kind: &'static str,
    /// As SQL: `"s"."t"` or `"s"`.
    name: String,
    /// For people: `s.t` (for the schema, its name).
    shown: String,
    owner: &'c str,
    grants: &'c [Grant],
    columns: Vec<(&'c str, &'c [Grant])>,
}

impl<'c> Owned<'c> {
    /// A table, sequence or view, without column grants.
    fn relation(
        kind: &'static str,
        name: &QualName,
        owner: &'c str,
        grants: &'c [Grant],
    ) -> Owned<'c> {
        Owned {
            kind,
            name: qualified(&name.schema, &name.name),
            shown: name.to_string(),
            owner,
            grants,
            columns: Vec::new(),
        }
    }

    /// With the grants of those of `columns` that have any.
    fn with_column_grants(mut self, columns: &'c [Column]) -> Owned<'c> {
        self.columns = columns
            .iter()
            .filter(|c| !c.grants.is_empty())
            .map(|c| (c.name.as_str(), c.grants.as_slice()))
            .collect();
        self
    }

    /// The catalog row's owner and ACL, as SQL expressions over `pg_class` or
    /// `pg_namespace`.
    fn catalog_row(&self) -> (String, String, String) {
        if self.kind == "SCHEMA" {
            (
                "pg_catalog.pg_namespace".into(),
                "nspowner".into(),
                format!(
                    "oid = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = {})",
                    lit(&self.shown)
                ),
            )
        } else {
            (
                "pg_catalog.pg_class".into(),
                "relowner".into(),
                format!("oid = pg_catalog.to_regclass({})", lit(&self.name)),
            )
        }
    }

    /// True when the owner is right and every grant is in the ACL.
    fn done_check(&self) -> String {
        let (table, owner_column, row) = self.catalog_row();
        let acl_column = if self.kind == "SCHEMA" {
            "nspacl"
        } else {
            "relacl"
        };
        let role_oid = |who: &str| {
            if who == "PUBLIC" {
                "0::oid".to_string()
            } else {
                format!(
                    "(SELECT oid FROM pg_catalog.pg_roles WHERE rolname = {})",
                    lit(who)
                )
            }
        };
        let mut parts = vec![format!(
            "coalesce((SELECT pg_catalog.pg_get_userbyid({owner_column}) = {} FROM {table} WHERE {row}), false)",
            lit(self.owner)
        )];
        for g in self.grants.iter().filter(|g| g.grantee != self.owner) {
            parts.push(format!(
                "EXISTS (SELECT 1 FROM {table}, pg_catalog.aclexplode({acl_column}) a WHERE {row} AND a.grantee = {} AND a.privilege_type = {})",
                role_oid(&g.grantee),
                lit(&g.privilege)
            ));
        }
        for (column, grants) in &self.columns {
            for g in grants.iter().filter(|g| g.grantee != self.owner) {
                parts.push(format!(
                    "EXISTS (SELECT 1 FROM pg_catalog.pg_attribute t, pg_catalog.aclexplode(t.attacl) a WHERE t.attrelid = pg_catalog.to_regclass({}) AND t.attname = {} AND a.grantee = {} AND a.privilege_type = {})",
                    lit(&self.name),
                    lit(column),
                    role_oid(&g.grantee),
                    lit(&g.privilege)
                ));
            }
        }
        parts.join("\n AND ")
    }

    fn step(&self, domain: &str) -> Step {
        let on = match self.kind {
            "SCHEMA" => format!("SCHEMA {}", self.name),
            // GRANT … ON TABLE covers views; sequences have their own word.
            "SEQUENCE" => format!("SEQUENCE {}", self.name),
            _ => format!("TABLE {}", self.name),
        };
        let grants = grant_sql(&on, self.owner, self.grants, &self.columns);
        let revokes = revoke_sql(&on, self.owner, self.grants, &self.columns);
        on_domain(
            domain,
            format!("owner and grants of {}", self.shown),
            format!(
                "{} owned by {} with its grants, as on the source",
                self.shown,
                display_ident(self.owner)
            ),
            SqlAction::transactional(
                format!(
                    "ALTER {} {} OWNER TO {};\n{grants}",
                    self.kind,
                    self.name,
                    ident(self.owner)
                ),
                self.done_check(),
                format!(
                    "{revokes}ALTER {} {} OWNER TO CURRENT_USER;",
                    self.kind, self.name
                ),
            ),
        )
    }
}

/// Steps after the tables, views and functions: each relation's and the schema's
/// owner and grants, then the login roles' `search_path`.
pub fn privilege_steps(catalog: &Catalog, domain: &str) -> Vec<Step> {
    let across: Vec<View> = super::split_across::table_side(catalog, domain)
        .iter()
        .map(|s| s.view_on_target())
        .collect();
    let mut owned = Vec::new();
    if let Some(schema) = catalog.schemas.iter().find(|s| s.name == domain) {
        owned.push(Owned {
            kind: "SCHEMA",
            name: ident(domain),
            shown: domain.to_string(),
            owner: &schema.owner,
            grants: &schema.grants,
            columns: Vec::new(),
        });
    }
    for table in catalog.tables.iter().filter(|t| t.name.schema == domain) {
        owned.push(
            Owned::relation("TABLE", &table.name, &table.owner, &table.grants)
                .with_column_grants(&table.columns),
        );
    }
    for seq in catalog.sequences.iter().filter(|s| s.name.schema == domain) {
        owned.push(Owned::relation(
            "SEQUENCE",
            &seq.name,
            &seq.owner,
            &seq.grants,
        ));
    }
    let views = catalog
        .views
        .iter()
        .filter(|v| v.name.schema == domain && !v.materialized);
    for view in views
        .chain(joined_compat_views(catalog, domain))
        .chain(&across)
    {
        owned.push(
            Owned::relation("VIEW", &view.name, &view.owner, &view.grants)
                .with_column_grants(&view.columns),
        );
    }
    let mut steps: Vec<Step> = owned.iter().map(|o| o.step(domain)).collect();
    steps.extend(search_path_steps(catalog, domain));
    steps
}

/// The `search_path` a service's login role gets in the domain's database on its
/// server: `public` first, as on the source, where the only names are the
/// compatibility views the move makes there (a split's view over both parts, the
/// views over a copied read), then the domain's schema, so every other unqualified
/// name that reached a table through a compatibility view reaches the table itself.
pub fn search_path(domain: &str) -> String {
    format!("\"$user\", public, {}", ident(domain))
}

fn search_path_steps(catalog: &Catalog, domain: &str) -> Vec<Step> {
    let path = search_path(domain);
    roles_needed(catalog, domain)
        .into_iter()
        .filter(|r| r.login)
        .map(|role| {
            let name = ident(&role.name);
            let in_database = |what: &str| {
                format!(
                    "DO {};",
                    dollar_quoted(&format!(
                        "BEGIN EXECUTE pg_catalog.format({}, pg_catalog.current_database()); END",
                        lit(&format!("ALTER ROLE {name} IN DATABASE %I {what}"))
                    ))
                )
            };
            on_domain(
            domain,
                format!("search_path of {}", display_ident(&role.name)),
                format!(
                    "{} finds the domain's tables by their old unqualified names",
                    display_ident(&role.name)
                ),
                SqlAction::transactional(
                    in_database(&format!("SET search_path = {path}")),
                    format!(
                        // The server keeps the list as quote_ident writes each name.
                        "EXISTS (SELECT 1 FROM pg_catalog.pg_db_role_setting s JOIN pg_catalog.pg_roles r ON r.oid = s.setrole JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase WHERE r.rolname = {} AND d.datname = pg_catalog.current_database() AND s.setconfig @> ARRAY['search_path=\"$user\", public, ' || pg_catalog.quote_ident({})])",
                        lit(&role.name),
                        lit(domain)
                    ),
                    in_database("RESET search_path"),
                ),
            )
        })
        .collect()
}
