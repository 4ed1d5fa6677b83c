//! The database-changing phases, each a pure function from (plan, catalog) to the
//! engine's steps. The commands of the same name run them.

pub mod assign;
pub mod cutover;
pub mod forecast;
pub mod move_domain;
pub mod restrict;
pub mod split;

use std::collections::BTreeMap;

use crate::catalog::{Catalog, Grant};
use crate::sql::{display_ident, ident, literal};

/// What the connecting role lacks to run `phase` (or its undo), checked before the
/// phase is recorded or any step runs; `None` when it has what the phase needs.
///
/// Every phase needs a superuser today: assign moves tables owned by other roles and
/// makes their compatibility views owned by those roles, with the grants their
/// grantors gave; restrict creates roles, changes other roles' grants and proves
/// with `SET ROLE`. The message says what a managed service's admin role lacks.
pub fn privileges_missing(catalog: &Catalog, phase: &str) -> Option<String> {
    let me = &catalog.server.current_user;
    if catalog.roles.iter().any(|r| &r.name == me && r.superuser) {
        return None;
    }
    let why = match phase {
        assign::PHASE => {
            "assign moves tables owned by other roles (ALTER TABLE … SET SCHEMA needs their owner's rights), makes each compatibility view owned by its table's owner and gives back the table's grants as their grantors gave them"
        }
        restrict::PHASE => {
            "restrict creates roles, takes and gives privileges of roles it does not own, reads pg_authid, and proves every statement with SET ROLE as each service's role"
        }
        _ => "it changes objects and privileges of roles it does not own",
    };
    Some(format!(
        "carve {phase} needs a superuser connection, and role {} is not a superuser: {why}. Connect as a superuser (for example user=postgres in --source). A managed service's admin role (Amazon RDS rds_superuser, Cloud SQL cloudsqlsuperuser, Azure azure_pg_admin) is not a superuser: it cannot own other roles' tables without being granted each role, nor read pg_authid, so carve cannot run there yet. Nothing was changed",
        display_ident(me)
    ))
}

/// True when a relation of one of `kinds` (`'r', 'p'`) exists: a step's check.
fn relation_exists(schema: &str, name: &str, kinds: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = {} AND c.relname = {} AND c.relkind IN ({kinds}))",
        lit(schema),
        lit(name)
    )
}

/// True when a schema of that name exists: a step's check.
fn schema_exists(schema: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = {})",
        lit(schema)
    )
}

/// The undo of a schema carve made and marked with `marker` (its comment): dropped
/// only when the mark is there, so a schema that was there before stays.
fn drop_schema_if_marked(schema: &str, marker: &str) -> String {
    format!(
        "DO {};",
        crate::sql::dollar_quoted(&format!(
            "BEGIN IF EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n WHERE n.nspname = {} AND pg_catalog.obj_description(n.oid, 'pg_namespace') = {}) THEN DROP SCHEMA {}; END IF; END",
            lit(schema),
            lit(marker),
            ident(schema)
        ))
    )
}

/// True when a role of that name exists: a step's check.
fn role_exists(role: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = {})",
        lit(role)
    )
}

/// A name from the catalog as a SQL literal (catalog names never hold NUL).
fn lit(text: &str) -> String {
    literal(text).expect("catalog names have no NUL")
}

/// `PUBLIC` is a keyword, every other grantee a quoted role name.
fn grantee(name: &str) -> String {
    if name == "PUBLIC" {
        "PUBLIC".to_string()
    } else {
        ident(name)
    }
}

/// GRANT statements giving `on` the grants listed (table-level, then per column),
/// but the owner's own.
pub(crate) fn grant_sql(
    on: &str,
    owner: &str,
    grants: &[Grant],
    columns: &[(&str, &[Grant])],
) -> String {
    privilege_sql(true, on, owner, grants, columns)
}

/// The REVOKE statements that take back what `grant_sql` gives.
pub(crate) fn revoke_sql(
    on: &str,
    owner: &str,
    grants: &[Grant],
    columns: &[(&str, &[Grant])],
) -> String {
    privilege_sql(false, on, owner, grants, columns)
}

/// GRANT (or REVOKE) statements for the grants listed, one per grantee and grant
/// option, table-level then per column.
fn privilege_sql(
    give: bool,
    on: &str,
    owner: &str,
    grants: &[Grant],
    columns: &[(&str, &[Grant])],
) -> String {
    let mut sql = String::new();
    let mut emit = |grants: &[Grant], column: Option<&str>| {
        let mut by_grantee: BTreeMap<(&str, bool), Vec<&str>> = BTreeMap::new();
        for g in grants.iter().filter(|g| g.grantee != owner) {
            by_grantee
                .entry((g.grantee.as_str(), g.grantable))
                .or_default()
                .push(g.privilege.as_str());
        }
        for ((who, grantable), privileges) in by_grantee {
            let privileges = match column {
                Some(c) => privileges
                    .iter()
                    .map(|p| format!("{p} ({})", ident(c)))
                    .collect::<Vec<_>>()
                    .join(", "),
                None => privileges.join(", "),
            };
            let who = grantee(who);
            sql.push_str(&if give {
                format!(
                    "GRANT {privileges} ON {on} TO {who}{};\n",
                    if grantable { " WITH GRANT OPTION" } else { "" }
                )
            } else {
                format!("REVOKE {privileges} ON {on} FROM {who};\n")
            });
        }
    };
    emit(grants, None);
    for (column, grants) in columns {
        emit(grants, Some(column));
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::testing::grant;

    #[test]
    fn revokes_take_back_exactly_the_grants_whatever_the_names() {
        // A grantee whose name reads like SQL: the statements are built, not edited.
        let mut sly = grant("x WITH GRANT OPTION ON TABLE t TO y", "SELECT");
        sly.grantable = true;
        let grants = vec![sly, grant("PUBLIC", "SELECT"), grant("owner", "DELETE")];
        let on = "TABLE \"s\".\"t\"";
        assert_eq!(
            grant_sql(on, "owner", &grants, &[]),
            "GRANT SELECT ON TABLE \"s\".\"t\" TO PUBLIC;\nGRANT SELECT ON TABLE \"s\".\"t\" TO \"x WITH GRANT OPTION ON TABLE t TO y\" WITH GRANT OPTION;\n"
        );
        assert_eq!(
            revoke_sql(on, "owner", &grants, &[("c", &grants[1..2])]),
            "REVOKE SELECT ON TABLE \"s\".\"t\" FROM PUBLIC;\nREVOKE SELECT ON TABLE \"s\".\"t\" FROM \"x WITH GRANT OPTION ON TABLE t TO y\";\nREVOKE SELECT (\"c\") ON TABLE \"s\".\"t\" FROM PUBLIC;\n"
        );
    }
}
