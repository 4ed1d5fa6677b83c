//! What restrict takes away (PUBLIC's privileges on the domains, CREATE on public, a
//! kept role's privileges and memberships outside its domain), each as one step per
//! ACL whose undo gives back every entry in PostgreSQL's ACL order.

use super::*;

/// Privileges held now that restrict takes away.
#[derive(Debug, Clone)]
pub(super) enum Revoke {
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
pub(super) struct AclRevoke {
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
pub(super) enum CheckObject {
    Relation(QualName),
    Schema(String),
}

impl Revoke {
    pub(super) fn describe(&self) -> Vec<String> {
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

impl Revoke {
    /// What it takes away, for `phases::forecast`.
    pub(super) fn record(&self, changes: &mut Changes) {
        match self {
            Revoke::Acl(acl) => {
                for (g, _) in acl.entries.iter().filter(|(_, goes)| *goes) {
                    changes.revokes.push(Privilege {
                        on: match &acl.object {
                            CheckObject::Relation(r) => Object::Relation(r.clone()),
                            CheckObject::Schema(s) => Object::Schema(s.clone()),
                        },
                        column: acl.column.clone(),
                        grantee: g.grantee.clone(),
                        privilege: g.privilege.clone(),
                    });
                }
            }
            Revoke::Membership { role, member } => changes
                .memberships_revoked
                .push((member.clone(), role.clone())),
        }
    }
}

impl Planner<'_> {
    /// What is granted today and must go: PUBLIC's privileges on the domains'
    /// relations and schemas, CREATE on public, and a kept role's privileges and
    /// memberships outside its domain. A grant restrict would make anyway stays.
    pub(super) fn existing_privileges(&mut self, services: &[ServiceRoles]) {
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
}

/// True when `grantee` holds every one of `privileges` on the object (on each of
/// `columns`, when given), granted by `grantor` when given.
pub(super) fn acl_has(
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
pub(super) fn revoke_step(revoke: &Revoke) -> Step {
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
            action: Action::Sql(SqlAction::transactional(
                format!("REVOKE {} FROM {};", ident(role), ident(member)),
                format!("NOT {}", is_member(role, member)),
                format!("GRANT {} TO {};", ident(role), ident(member)),
            )),
        },
    }
}

pub(super) fn acl_revoke_step(acl: &AclRevoke) -> Step {
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
        action: Action::Sql(SqlAction::transactional(sql, done_check, undo)),
    }
}

/// A relation's oid by a catalog lookup, which (unlike `to_regclass`) needs no
/// privilege on its schema, so it works as the restricted role too; NULL when absent.
pub(super) fn relation_oid(relation: &QualName) -> String {
    format!(
        "(SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = {} AND c.relname = {})",
        lit(&relation.schema),
        lit(&relation.name)
    )
}
