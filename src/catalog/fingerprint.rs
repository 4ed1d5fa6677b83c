//! The fingerprint of a catalog: what a plan depends on, reduced to one line per object.
//!
//! Each entry maps an object (`column public.orders.total`) to a short signature of the
//! parts that matter (`type=numeric(10,2); not_null`). Long texts (view definitions,
//! function bodies) are represented by a digest. OIDs, sizes, row estimates and
//! comments are left out, and entries are sorted, so two reads of the same schema give
//! the same fingerprint. Comparing two fingerprints names every object added, removed
//! or changed, and which part of it changed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Catalog, Grant, Identity, ReplicaIdentity, TableKind};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fingerprint {
    /// SHA-256 over all entries: equal digests mean equal fingerprints.
    pub digest: String,
    pub objects: BTreeMap<String, String>,
}

impl Fingerprint {
    /// The fingerprint of `catalog`, with the roles that own or are granted on its
    /// objects (see [`Fingerprint::with_roles`]).
    pub fn of(catalog: &Catalog) -> Fingerprint {
        Fingerprint::with_roles(catalog, &BTreeSet::new())
    }

    /// The fingerprint of `catalog`. Of the cluster's roles, only those that matter
    /// to its objects count: owners, grantees and grantors, the roles in `named` (the
    /// plan's services and groups), and the members of any of them. A role created
    /// for something else must not make every plan stale.
    pub fn with_roles(catalog: &Catalog, named: &BTreeSet<String>) -> Fingerprint {
        let relevant = relevant_roles(catalog, named);
        let mut objects = BTreeMap::new();
        let mut put = |key: String, parts: Vec<String>| {
            objects.insert(key, parts.join("; "));
        };

        for schema in &catalog.schemas {
            let name = crate::sql::display_ident(&schema.name).to_string();
            put(
                format!("schema {name}"),
                vec![format!("owner={}", schema.owner)],
            );
            grants(&mut put, &format!("schema {name}"), &schema.grants);
        }
        for table in &catalog.tables {
            let t = table.name.to_string();
            let mut parts = vec![
                format!(
                    "kind={}",
                    match table.kind {
                        TableKind::Ordinary => "table",
                        TableKind::Partitioned => "partitioned",
                        TableKind::Foreign => "foreign",
                    }
                ),
                format!("owner={}", table.owner),
                format!(
                    "replica_identity={}",
                    match &table.replica_identity {
                        ReplicaIdentity::Default => "default".to_string(),
                        ReplicaIdentity::Nothing => "nothing".to_string(),
                        ReplicaIdentity::Full => "full".to_string(),
                        ReplicaIdentity::Index(i) => format!("index {i}"),
                    }
                ),
            ];
            if table.unlogged {
                parts.push("unlogged".into());
            }
            if let Some(parent) = &table.partition_of {
                parts.push(format!("partition_of={parent}"));
            }
            if let Some(bound) = &table.partition_bound {
                parts.push(format!("bound={bound}"));
            }
            if let Some(key) = &table.partition_key {
                parts.push(format!("partition_by={key}"));
            }
            put(format!("table {t}"), parts);
            grants(&mut put, &format!("table {t}"), &table.grants);
            for column in &table.columns {
                let c = format!("{t}.{}", crate::sql::display_ident(&column.name));
                let mut parts = vec![format!("type={}", column.type_name)];
                if column.not_null {
                    parts.push("not_null".into());
                }
                if let Some(d) = &column.default {
                    parts.push(format!("default={d}"));
                }
                if let Some(identity) = column.identity {
                    parts.push(
                        match identity {
                            Identity::Always => "identity=always",
                            Identity::ByDefault => "identity=by_default",
                        }
                        .into(),
                    );
                }
                if let Some(g) = &column.generated {
                    parts.push(format!("generated={g}"));
                }
                put(format!("column {c}"), parts);
                grants(&mut put, &format!("column {c}"), &column.grants);
            }
            for con in &table.constraints {
                let mut parts = vec![format!("definition={}", con.definition)];
                if con.deferrable {
                    parts.push(if con.initially_deferred {
                        "deferrable initially deferred".into()
                    } else {
                        "deferrable".into()
                    });
                }
                let key = format!("constraint {t}.{}", crate::sql::display_ident(&con.name));
                put(key, parts);
            }
            for index in &table.indexes {
                let key = format!("index {t}.{}", crate::sql::display_ident(&index.name));
                put(key, vec![format!("definition={}", index.definition)]);
            }
        }
        for (relation, trigger) in catalog.triggers() {
            let key = format!(
                "trigger {relation}.{}",
                crate::sql::display_ident(&trigger.name)
            );
            let mut parts = vec![format!("definition={}", trigger.definition)];
            if !trigger.enabled {
                parts.push("disabled".into());
            }
            put(key, parts);
        }
        for view in &catalog.views {
            let v = view.name.to_string();
            let mut parts = vec![
                format!("materialized={}", view.materialized),
                format!("owner={}", view.owner),
                format!("definition=#{}", short_digest(&view.definition)),
            ];
            if !view.options.is_empty() {
                parts.push(format!("options={}", view.options.join(",")));
            }
            put(format!("view {v}"), parts);
            grants(&mut put, &format!("view {v}"), &view.grants);
            for column in &view.columns {
                grants(
                    &mut put,
                    &format!("column {v}.{}", crate::sql::display_ident(&column.name)),
                    &column.grants,
                );
            }
        }
        for seq in &catalog.sequences {
            let s = seq.name.to_string();
            let mut parts = vec![
                format!("type={}", seq.data_type),
                format!("start={}", seq.start),
                format!("increment={}", seq.increment),
                format!("min={}", seq.min),
                format!("max={}", seq.max),
                format!("owner={}", seq.owner),
            ];
            if seq.cycle {
                parts.push("cycle".into());
            }
            if let Some(owner) = &seq.owned_by {
                parts.push(format!(
                    "owned_by={}.{}",
                    owner.table,
                    crate::sql::display_ident(&owner.column)
                ));
            }
            put(format!("sequence {s}"), parts);
            grants(&mut put, &format!("sequence {s}"), &seq.grants);
        }
        for function in &catalog.functions {
            let mut parts = vec![
                format!("kind={:?}", function.kind).to_lowercase(),
                format!("language={}", function.language),
                format!("volatility={}", function.volatility),
                format!("owner={}", function.owner),
                format!("body=#{}", short_digest(&function.body)),
            ];
            if let Some(result) = &function.result {
                parts.insert(0, format!("returns={result}"));
            }
            if function.security_definer {
                parts.push("security_definer".into());
            }
            put(format!("function {}", function.signature()), parts);
        }
        for role in catalog
            .roles
            .iter()
            .filter(|r| relevant.contains(r.name.as_str()))
        {
            let flags = [
                (role.login, "login"),
                (role.superuser, "superuser"),
                (role.create_db, "createdb"),
                (role.create_role, "createrole"),
                (role.replication, "replication"),
                (role.bypass_rls, "bypassrls"),
                (!role.inherit, "noinherit"),
            ];
            let mut parts: Vec<String> = flags
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, name)| name.to_string())
                .collect();
            parts.push(format!("connection_limit={}", role.connection_limit));
            if !role.member_of.is_empty() {
                parts.push(format!("member_of={}", role.member_of.join(",")));
            }
            put(
                format!("role {}", crate::sql::display_ident(&role.name)),
                parts,
            );
        }
        for ext in &catalog.extensions {
            put(
                format!("extension {}", ext.name),
                vec![
                    format!("version={}", ext.version),
                    format!("schema={}", ext.schema),
                ],
            );
        }

        Fingerprint::from_objects(objects)
    }

    /// A fingerprint of these object lines, with their digest.
    pub fn from_objects(objects: BTreeMap<String, String>) -> Fingerprint {
        Fingerprint {
            digest: digest_of(&objects),
            objects,
        }
    }

    /// Whether the stored digest is the digest of the stored objects: a plan file cut
    /// short or edited by hand in its fingerprint does not add up, and must not be
    /// trusted to tell a stale plan from a current one.
    pub fn adds_up(&self) -> bool {
        digest_of(&self.objects) == self.digest
    }

    /// The first 12 hex digits, enough for people to tell fingerprints apart.
    pub fn short(&self) -> &str {
        &self.digest[..self.digest.len().min(12)]
    }

    /// What changed from `self` (the older) to `newer`.
    pub fn diff(&self, newer: &Fingerprint) -> Vec<Change> {
        let mut changes = Vec::new();
        for (key, old) in &self.objects {
            match newer.objects.get(key) {
                None => changes.push(Change::Removed {
                    object: key.clone(),
                    was: old.clone(),
                }),
                Some(new) if new != old => changes.push(Change::Changed {
                    object: key.clone(),
                    parts: changed_parts(old, new),
                }),
                Some(_) => {}
            }
        }
        for (key, new) in &newer.objects {
            if !self.objects.contains_key(key) {
                changes.push(Change::Added {
                    object: key.clone(),
                    now: new.clone(),
                });
            }
        }
        changes
    }
}

/// Owners, grantees and grantors of the catalog's objects, the `named` roles, and
/// every role that is a member (directly or not) of one of those.
fn relevant_roles<'c>(catalog: &'c Catalog, named: &'c BTreeSet<String>) -> BTreeSet<&'c str> {
    let mut relevant: BTreeSet<&str> = named.iter().map(String::as_str).collect();
    let add_grants = |grants: &'c [Grant], relevant: &mut BTreeSet<&'c str>| {
        for g in grants {
            relevant.insert(g.grantee.as_str());
            relevant.insert(g.grantor.as_str());
        }
    };
    for schema in &catalog.schemas {
        relevant.insert(&schema.owner);
        add_grants(&schema.grants, &mut relevant);
    }
    for table in &catalog.tables {
        relevant.insert(&table.owner);
        add_grants(&table.grants, &mut relevant);
        for column in &table.columns {
            add_grants(&column.grants, &mut relevant);
        }
    }
    for view in &catalog.views {
        relevant.insert(&view.owner);
        add_grants(&view.grants, &mut relevant);
        for column in &view.columns {
            add_grants(&column.grants, &mut relevant);
        }
    }
    for seq in &catalog.sequences {
        relevant.insert(&seq.owner);
        add_grants(&seq.grants, &mut relevant);
    }
    for function in &catalog.functions {
        relevant.insert(&function.owner);
    }
    // Members inherit (or can SET ROLE to) what their groups may do.
    loop {
        let before = relevant.len();
        for role in &catalog.roles {
            if role.member_of.iter().any(|g| relevant.contains(g.as_str())) {
                relevant.insert(&role.name);
            }
        }
        if relevant.len() == before {
            return relevant;
        }
    }
}

fn grants<F: FnMut(String, Vec<String>)>(put: &mut F, object: &str, grants: &[Grant]) {
    for g in grants {
        let key = format!("grant {} on {object} to {}", g.privilege, g.grantee);
        let mut parts = vec![format!("grantor={}", g.grantor)];
        if g.grantable {
            parts.push("with_grant_option".into());
        }
        put(key, parts);
    }
}

/// One difference between two fingerprints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    Added {
        object: String,
        now: String,
    },
    Removed {
        object: String,
        was: String,
    },
    Changed {
        object: String,
        parts: Vec<PartChange>,
    },
}

/// One part of an object's signature that differs (`type`: `integer` → `bigint`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartChange {
    pub part: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let object = match self {
            Change::Added { object, .. }
            | Change::Removed { object, .. }
            | Change::Changed { object, .. } => object,
        };
        // Keys are `kind name`, e.g. `column public.orders.total`.
        let (kind, name) = object.split_once(' ').unwrap_or(("", object));
        match self {
            Change::Added { now, .. } => write!(f, "{kind} added: {name} ({now})"),
            Change::Removed { was, .. } => write!(f, "{kind} removed: {name} (was {was})"),
            Change::Changed { parts, .. } => {
                write!(f, "{kind} changed: {name}:")?;
                for (i, p) in parts.iter().enumerate() {
                    let sep = if i == 0 { " " } else { ", " };
                    match (&p.old, &p.new) {
                        (Some(o), Some(n)) => write!(f, "{sep}{} {o} → {n}", p.part)?,
                        (None, Some(n)) => write!(f, "{sep}{} now {n}", p.part)?,
                        (Some(o), None) => write!(f, "{sep}{} no longer {o}", p.part)?,
                        (None, None) => {}
                    }
                }
                Ok(())
            }
        }
    }
}

/// Splits `a=1; b; c=x` signatures into parts and lists those that differ.
fn changed_parts(old: &str, new: &str) -> Vec<PartChange> {
    let split = |sig: &str| -> BTreeMap<String, String> {
        sig.split("; ")
            .map(|part| match part.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (part.to_string(), "yes".to_string()),
            })
            .collect()
    };
    let (old, new) = (split(old), split(new));
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| PartChange {
            part: k.clone(),
            old: old.get(k).cloned(),
            new: new.get(k).cloned(),
        })
        .collect()
}

/// SHA-256 over every `key NUL value LF`, in key order.
fn digest_of(objects: &BTreeMap<String, String>) -> String {
    let mut hasher = Sha256::new();
    for (key, value) in objects {
        hasher.update(key.as_bytes());
        hasher.update([0]);
        hasher.update(value.as_bytes());
        hasher.update([b'\n']);
    }
    hex(&hasher.finalize())
}

fn short_digest(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))[..12].to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::*;

    fn catalog() -> Catalog {
        testing::catalog(vec![testing::table("public", "orders")])
    }

    #[test]
    fn lookups_work_sorted_and_unsorted() {
        let mut c = catalog();
        let template = c.tables[0].clone();
        c.tables.clear();
        for name in ["c", "a", "b"] {
            let mut t = template.clone();
            t.name = QualName::new("public", name);
            c.tables.push(t);
        }
        for name in ["a", "b", "c"] {
            assert!(
                c.table(&QualName::new("public", name)).is_some(),
                "unsorted {name}"
            );
        }
        c.normalize();
        for name in ["a", "b", "c"] {
            assert!(
                c.table(&QualName::new("public", name)).is_some(),
                "sorted {name}"
            );
        }
        assert!(c.table(&QualName::new("public", "d")).is_none());
    }

    #[test]
    fn only_roles_that_matter_to_the_objects_count() {
        let role = |name: &str, member_of: &[&str]| Role {
            member_of: member_of.iter().map(|m| m.to_string()).collect(),
            ..testing::role(name, false)
        };
        let mut a = catalog();
        a.tables[0].grants = vec![Grant {
            grantee: "readers".into(),
            privilege: "SELECT".into(),
            grantor: "app".into(),
            grantable: false,
        }];
        a.roles = vec![role("app", &[]), role("readers", &[])];
        let mut b = a.clone();
        b.roles.push(role("unrelated", &[]));
        assert_eq!(
            Fingerprint::of(&a),
            Fingerprint::of(&b),
            "a new role elsewhere"
        );

        let mut c = a.clone();
        c.roles.push(role("alice", &["readers"]));
        let changes = Fingerprint::of(&a).diff(&Fingerprint::of(&c));
        assert_eq!(changes.len(), 1, "a new member of a grantee: {changes:?}");

        let named = BTreeSet::from(["unrelated".to_string()]);
        let changes =
            Fingerprint::with_roles(&a, &named).diff(&Fingerprint::with_roles(&b, &named));
        assert_eq!(changes.len(), 1, "a role the plan names: {changes:?}");
    }

    #[test]
    fn statistics_and_comments_do_not_change_the_fingerprint() {
        let a = catalog();
        let mut b = catalog();
        b.tables[0].size_bytes = 1 << 30;
        b.tables[0].row_estimate = None;
        b.tables[0].comment = Some("hello".into());
        assert_eq!(Fingerprint::of(&a), Fingerprint::of(&b));
    }

    #[test]
    fn diff_names_the_changed_part() {
        let a = catalog();
        let mut b = catalog();
        b.tables[0].columns[0].type_name = "bigint".into();
        b.tables[0].columns[0].not_null = false;
        let changes = Fingerprint::of(&a).diff(&Fingerprint::of(&b));
        let lines: Vec<String> = changes.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            ["column changed: public.orders.total: not_null no longer yes, type integer → bigint"]
        );
    }

    #[test]
    fn diff_lists_added_and_removed_objects() {
        let a = catalog();
        let mut b = catalog();
        b.tables[0].name = QualName::new("public", "Orders 2");
        let lines: Vec<String> = Fingerprint::of(&a)
            .diff(&Fingerprint::of(&b))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(lines.contains(&"table removed: public.orders (was kind=table; owner=app; replica_identity=default)".to_string()), "{lines:#?}");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("table added: public.\"Orders 2\"")),
            "{lines:#?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("column added: public.\"Orders 2\".total")),
            "{lines:#?}"
        );
        assert_eq!(lines.len(), 4);
    }
}
