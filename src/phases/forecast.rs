//! The catalog as a phase will leave it, computed on the model: `carve plan` plans
//! each later phase against the catalog the earlier ones will leave, without
//! changing (or locking) anything.
//!
//! Each phase says what it changes as plain data (assign's renames, new schemas and
//! moved functions; restrict's [`Changes`]; cut-over's crossings), and the
//! functions here apply that to a copy of the catalog the way PostgreSQL would:
//! definitions that name a moved object are rewritten as the server prints them
//! (every name qualified, as the catalog reader reads them), a compatibility view
//! looks as the reader reads one, and grants land in ACL order (a new grantee at
//! the end, a grantee's privileges in the order `aclexplode` lists them).
//!
//! What it leaves out, because no later phase reads it: the fence a cut-over leaves
//! on the source, the replication roles and publications, comments on roles.

use super::assign::AssignPlan;
use super::split::SplitShape;
use crate::catalog::{Catalog, Column, Grant, QualName, Role, Schema, View, ViewDependency};
use crate::sql::{ident, ident_as_printed, parse_qualified};

/// What restrict changes in the source's catalog.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    /// Roles made, with their memberships.
    pub new_roles: Vec<Role>,
    /// (role, connection limit) of a kept role.
    pub connection_limits: Vec<(String, i32)>,
    /// (member, group) made.
    pub memberships: Vec<(String, String)>,
    /// (member, group) taken away.
    pub memberships_revoked: Vec<(String, String)>,
    /// Privileges given, in the order the steps give them.
    pub grants: Vec<Privilege>,
    /// Privileges taken away.
    pub revokes: Vec<Privilege>,
}

/// One privilege on one object (or one of its columns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Privilege {
    pub on: Object,
    pub column: Option<String>,
    pub grantee: String,
    pub privilege: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    Relation(QualName),
    Schema(String),
}

/// The catalog once split has run: each part a table of its own (the key, made
/// its primary key, and the moved columns, with the table's owner and grants),
/// the table without the moved columns, the old name's view reading both.
pub fn after_split(before: &Catalog, shapes: &[SplitShape]) -> Catalog {
    let mut catalog = before.clone();
    for shape in shapes {
        let Some(table) = catalog.table(&shape.table).cloned() else {
            continue;
        };
        let mut part = table.clone();
        part.name = shape.part.clone();
        part.columns = shape
            .key
            .iter()
            .chain(&shape.moved)
            .filter_map(|name| table.columns.iter().find(|c| &c.name == name).cloned())
            .collect();
        part.constraints = table.primary_key().cloned().into_iter().collect();
        part.indexes = Vec::new();
        part.triggers = Vec::new();
        part.comment = None;
        if !catalog.schemas.iter().any(|s| s.name == shape.part.schema) {
            catalog.schemas.push(Schema {
                name: shape.part.schema.clone(),
                owner: table.owner.clone(),
                comment: None,
                grants: Vec::new(),
            });
        }
        if let Some(t) = catalog.tables.iter_mut().find(|t| t.name == shape.table) {
            t.columns.retain(|c| !shape.moved.contains(&c.name));
        }
        if let Some(v) = catalog.views.iter_mut().find(|v| v.name == shape.view) {
            for d in v
                .depends_on
                .iter_mut()
                .filter(|d| d.relation == shape.table)
            {
                d.columns.retain(|c| !shape.moved.contains(c));
            }
            v.depends_on.push(ViewDependency {
                relation: shape.part.clone(),
                columns: shape.key.iter().chain(&shape.moved).cloned().collect(),
            });
        }
        catalog.tables.push(part);
    }
    catalog.normalize();
    catalog
}

/// The catalog once assign has run.
pub fn after_assign(before: &Catalog, assign: &AssignPlan) -> Catalog {
    let mut catalog = before.clone();
    catalog.schemas.extend(assign.new_schemas.iter().cloned());
    let mut renames: Vec<(QualName, QualName)> = Vec::new();
    for rename in &assign.renames {
        let (Some(from), Some(to)) = (qual(&rename.from), qual(&rename.to)) else {
            continue;
        };
        let compat = if let Some(table) = catalog.tables.iter_mut().find(|t| t.name == from) {
            table.name = to.clone();
            rename
                .compat_view
                .then(|| compat_view(&from, &to, &table.owner, &table.grants, &table.columns))
        } else if let Some(view) = catalog.views.iter_mut().find(|v| v.name == from) {
            view.name = to.clone();
            rename
                .compat_view
                .then(|| compat_view(&from, &to, &view.owner, &view.grants, &view.columns))
        } else {
            if let Some(seq) = catalog.sequences.iter_mut().find(|s| s.name == from) {
                seq.name = to.clone();
            }
            None
        };
        catalog.views.extend(compat);
        renames.push((from, to));
    }
    for (from, to) in &assign.moved_functions {
        for f in catalog.functions.iter_mut().filter(|f| &f.name == from) {
            f.name = to.clone();
            f.definition = f.definition.as_ref().map(|d| rename_in(d, from, to));
        }
        renames.push((from.clone(), to.clone()));
    }
    for (from, to) in &renames {
        rename_everywhere(&mut catalog, from, to);
    }
    catalog.normalize();
    catalog
}

/// The catalog once restrict has run.
pub fn after_restrict(before: &Catalog, changes: &Changes) -> Catalog {
    let mut catalog = before.clone();
    catalog.roles.extend(changes.new_roles.iter().cloned());
    for (role, limit) in &changes.connection_limits {
        if let Some(r) = catalog.roles.iter_mut().find(|r| &r.name == role) {
            r.connection_limit = *limit;
        }
    }
    for (member, group) in &changes.memberships {
        if let Some(r) = catalog.roles.iter_mut().find(|r| &r.name == member) {
            if !r.member_of.contains(group) {
                r.member_of.push(group.clone());
                r.member_of.sort();
            }
        }
    }
    for (member, group) in &changes.memberships_revoked {
        if let Some(r) = catalog.roles.iter_mut().find(|r| &r.name == member) {
            r.member_of.retain(|g| g != group);
        }
    }
    for p in &changes.grants {
        if let Some((owner, acl)) = acl_of(&mut catalog, p) {
            grant(acl, &p.grantee, &p.privilege, &owner);
        }
    }
    for p in &changes.revokes {
        if let Some((_, acl)) = acl_of(&mut catalog, p) {
            acl.retain(|g| !(g.grantee == p.grantee && g.privilege == p.privilege));
        }
    }
    catalog.normalize();
    catalog
}

/// The catalog once a cut-over of `domain` has dropped its crossings on the source.
pub fn after_cutover(before: &Catalog, domain: &str) -> Catalog {
    let mut catalog = before.clone();
    let fks = super::cutover::crossings::crossing_foreign_keys(before, domain);
    let triggers = super::cutover::crossings::crossing_triggers(before, domain);
    for table in &mut catalog.tables {
        table
            .constraints
            .retain(|c| !fks.contains(&(table.name.clone(), c.name.clone())));
        table
            .triggers
            .retain(|t| !triggers.contains(&(table.name.clone(), t.name.clone())));
    }
    catalog
}

fn qual(text: &str) -> Option<QualName> {
    parse_qualified(text)
        .ok()
        .map(|(s, n)| QualName::new(&s, &n))
}

/// The compatibility view assign makes at `old` over `new`, as the reader reads it.
fn compat_view(
    old: &QualName,
    new: &QualName,
    owner: &str,
    grants: &[Grant],
    columns: &[Column],
) -> View {
    let column_grants = columns
        .iter()
        .any(|c| c.grants.iter().any(|g| g.grantee != owner));
    // Every grant given again by a superuser counts as given by the owner.
    let as_owner = |grants: &[Grant]| -> Vec<Grant> {
        let mut acl = Vec::new();
        for g in grants.iter().filter(|g| g.grantee != owner) {
            grant(&mut acl, &g.grantee, &g.privilege, owner);
            if g.grantable {
                if let Some(last) = acl
                    .iter_mut()
                    .find(|x| x.grantee == g.grantee && x.privilege == g.privilege)
                {
                    last.grantable = true;
                }
            }
        }
        acl
    };
    let alias = ident_as_printed(&new.name);
    let select: Vec<String> = columns
        .iter()
        .map(|c| format!("{alias}.{}", ident_as_printed(&c.name)))
        .collect();
    let definition = format!(
        " SELECT {}\n   FROM {};",
        select.join(",\n    "),
        qualified_as_printed(new)
    );
    let mut dependency_columns: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
    dependency_columns.sort();
    View {
        name: old.clone(),
        materialized: false,
        owner: owner.to_string(),
        definition,
        columns: columns
            .iter()
            .map(|c| Column {
                name: c.name.clone(),
                type_name: c.type_name.clone(),
                not_null: false,
                default: None,
                identity: None,
                generated: None,
                comment: None,
                grants: as_owner(&c.grants),
            })
            .collect(),
        options: vec![format!("security_invoker={}", !column_grants)],
        depends_on: vec![ViewDependency {
            relation: new.clone(),
            columns: dependency_columns,
        }],
        triggers: Vec::new(),
        comment: Some(format!(
            "{}{new}; `carve undo assign` removes it",
            crate::phases::assign::COMPAT_VIEW_COMMENT
        )),
        grants: as_owner(grants),
    }
}

fn qualified_as_printed(name: &QualName) -> String {
    format!(
        "{}.{}",
        ident_as_printed(&name.schema),
        ident_as_printed(&name.name)
    )
}

/// Every place the catalog names `from` by its qualified name, now `to`.
fn rename_everywhere(catalog: &mut Catalog, from: &QualName, to: &QualName) {
    let swap = |name: &mut QualName| {
        if name == from {
            *name = to.clone();
        }
    };
    for table in &mut catalog.tables {
        if let Some(parent) = &mut table.partition_of {
            swap(parent);
        }
        for column in &mut table.columns {
            if let Some(d) = &mut column.default {
                *d = rename_in(d, from, to);
            }
        }
        for c in &mut table.constraints {
            c.definition = rename_in(&c.definition, from, to);
            if let Some(fk) = &mut c.foreign_key {
                swap(&mut fk.references);
            }
        }
        for i in &mut table.indexes {
            i.definition = rename_in(&i.definition, from, to);
        }
        for t in &mut table.triggers {
            t.definition = rename_in(&t.definition, from, to);
            swap(&mut t.function);
        }
    }
    for view in &mut catalog.views {
        view.definition = rename_in(&view.definition, from, to);
        for d in &mut view.depends_on {
            swap(&mut d.relation);
        }
        for t in &mut view.triggers {
            t.definition = rename_in(&t.definition, from, to);
            swap(&mut t.function);
        }
    }
    for seq in &mut catalog.sequences {
        if let Some(owner) = &mut seq.owned_by {
            swap(&mut owner.table);
        }
    }
}

/// `text` with each mention of `from` (qualified, each part bare or quoted as the
/// server prints it) replaced by `to`, printed the same way. A mention is a whole
/// name: not the start of a longer one (`public.orders` in `public.orders_log`).
pub fn rename_in(text: &str, from: &QualName, to: &QualName) -> String {
    let schema_forms = [ident_as_printed(&from.schema), ident(&from.schema)];
    let name_forms = [ident_as_printed(&from.name), ident(&from.name)];
    let new = qualified_as_printed(to);
    let mut out = text.to_string();
    let mut seen = Vec::new();
    for s in &schema_forms {
        for n in &name_forms {
            let needle = format!("{s}.{n}");
            if seen.contains(&needle) {
                continue;
            }
            out = replace_whole(&out, &needle, &new);
            seen.push(needle);
        }
    }
    out
}

fn replace_whole(text: &str, needle: &str, with: &str) -> String {
    let part_of_name = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut before: Option<char> = None;
    while let Some(at) = rest.find(needle) {
        let prev = rest[..at].chars().next_back().or(before);
        let next = rest[at + needle.len()..].chars().next();
        let starts_clean = !prev.is_some_and(|c| part_of_name(c) || c == '.' || c == '"');
        let ends_clean =
            !next.is_some_and(|c| part_of_name(c) || (c == '"' && !needle.ends_with('"')));
        out.push_str(&rest[..at]);
        if starts_clean && ends_clean {
            out.push_str(with);
        } else {
            out.push_str(needle);
        }
        before = needle.chars().next_back();
        rest = &rest[at + needle.len()..];
    }
    out.push_str(rest);
    out
}

/// The owner and the ACL a privilege is on.
/// A table's or view's ACL for `p`: the relation's own, or its column's.
fn relation_acl<'c>(
    owner: &str,
    grants: &'c mut Vec<Grant>,
    columns: &'c mut [crate::catalog::Column],
    p: &Privilege,
) -> Option<(String, &'c mut Vec<Grant>)> {
    match &p.column {
        None => Some((owner.to_string(), grants)),
        Some(c) => columns
            .iter_mut()
            .find(|col| &col.name == c)
            .map(|col| (owner.to_string(), &mut col.grants)),
    }
}

fn acl_of<'c>(catalog: &'c mut Catalog, p: &Privilege) -> Option<(String, &'c mut Vec<Grant>)> {
    match &p.on {
        Object::Schema(name) => catalog
            .schemas
            .iter_mut()
            .find(|s| &s.name == name)
            .map(|s| (s.owner.clone(), &mut s.grants)),
        Object::Relation(name) => {
            if let Some(t) = catalog.tables.iter_mut().find(|t| &t.name == name) {
                return relation_acl(&t.owner, &mut t.grants, &mut t.columns, p);
            }
            if let Some(v) = catalog.views.iter_mut().find(|v| &v.name == name) {
                return relation_acl(&v.owner, &mut v.grants, &mut v.columns, p);
            }
            catalog
                .sequences
                .iter_mut()
                .find(|s| &s.name == name)
                .map(|s| (s.owner.clone(), &mut s.grants))
        }
    }
}

/// The order `aclexplode` lists one entry's privileges in (their bits' order).
const ACL_ORDER: [&str; 12] = [
    "INSERT",
    "SELECT",
    "UPDATE",
    "DELETE",
    "TRUNCATE",
    "REFERENCES",
    "TRIGGER",
    "EXECUTE",
    "USAGE",
    "CREATE",
    "TEMPORARY",
    "CONNECT",
];

/// A privilege given by `grantor`, as PostgreSQL adds it to an ACL: into the entry
/// of that grantee and grantor if there is one, else as a new entry at the end.
fn grant(acl: &mut Vec<Grant>, grantee: &str, privilege: &str, grantor: &str) {
    if grantee == grantor
        || acl
            .iter()
            .any(|g| g.grantee == grantee && g.privilege == privilege && g.grantor == grantor)
    {
        return;
    }
    let new = Grant {
        grantee: grantee.to_string(),
        privilege: privilege.to_string(),
        grantable: false,
        grantor: grantor.to_string(),
    };
    // Entries in order, each its privileges; the new one joins its entry.
    let mut entries: Vec<((String, String), Vec<Grant>)> = Vec::new();
    for g in acl.drain(..) {
        let key = (g.grantee.clone(), g.grantor.clone());
        match entries.iter_mut().find(|(k, _)| *k == key) {
            Some((_, list)) => list.push(g),
            None => entries.push((key, vec![g])),
        }
    }
    let key = (new.grantee.clone(), new.grantor.clone());
    match entries.iter_mut().find(|(k, _)| *k == key) {
        Some((_, list)) => list.push(new),
        None => entries.push((key, vec![new])),
    }
    let rank = |p: &str| ACL_ORDER.iter().position(|x| *x == p).unwrap_or(usize::MAX);
    for (_, mut list) in entries {
        list.sort_by_key(|g| rank(&g.privilege));
        acl.extend(list);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str, n: &str) -> QualName {
        QualName::new(s, n)
    }

    #[test]
    fn renames_whole_names_only() {
        let from = q("public", "orders");
        let to = q("sales", "orders");
        assert_eq!(
            rename_in("FOREIGN KEY (o) REFERENCES public.orders(id)", &from, &to),
            "FOREIGN KEY (o) REFERENCES sales.orders(id)"
        );
        assert_eq!(
            rename_in("ON public.orders_log USING btree", &from, &to),
            "ON public.orders_log USING btree"
        );
        assert_eq!(
            rename_in(
                "nextval('public.orders_id_seq'::regclass)",
                &q("public", "orders_id_seq"),
                &q("sales", "orders_id_seq")
            ),
            "nextval('sales.orders_id_seq'::regclass)"
        );
        assert_eq!(rename_in("x.public.orders", &from, &to), "x.public.orders");
    }

    #[test]
    fn renames_quoted_and_keyword_names() {
        let from = q("public", "Order Lines");
        let to = q("sales", "Order Lines");
        assert_eq!(
            rename_in("ON public.\"Order Lines\" USING", &from, &to),
            "ON sales.\"Order Lines\" USING"
        );
        let from = q("public", "order");
        let to = q("my domain", "order");
        assert_eq!(
            rename_in("REFERENCES public.\"order\"(id)", &from, &to),
            "REFERENCES \"my domain\".\"order\"(id)"
        );
    }

    #[test]
    fn grants_land_in_acl_order() {
        let mut acl = Vec::new();
        grant(&mut acl, "a", "SELECT", "owner");
        grant(&mut acl, "b", "UPDATE", "owner");
        grant(&mut acl, "a", "INSERT", "owner");
        grant(&mut acl, "a", "INSERT", "owner");
        grant(&mut acl, "owner", "SELECT", "owner");
        let listed: Vec<(&str, &str)> = acl
            .iter()
            .map(|g| (g.grantee.as_str(), g.privilege.as_str()))
            .collect();
        assert_eq!(listed, [("a", "INSERT"), ("a", "SELECT"), ("b", "UPDATE")]);
    }
}
