//! Reads of other domains' tables that a domain's services keep once they run on
//! the domain's own server. For each `replicate` decision (`read public.orders by
//! shipping`), the columns the reader's recorded statements name are copied to the
//! domain's server, under the names the reader's SQL uses (the table and its
//! compatibility view), and kept current by a stream of their own from the source:
//!
//! 1. on the source: the move's replication role may read those columns; a
//!    publication of them (a column list each, and the decisions' row filter), and
//!    its slot;
//! 2. on the domain's server: the schemas that hold them (made only when missing,
//!    and marked so the undo drops only those), a table with the kept columns and
//!    the key, the compatibility views over it, and SELECT on exactly those
//!    columns for the readers' roles (nothing else: the copy is read-only to them);
//!    once both parts of a split table are copied, the view that joins them under
//!    the table's old name (`split`), over the copies;
//! 3. the subscription (copies, then follows every change), and a wait for the copy.
//!
//! The stream comes from the source whichever side the domain's clients are on, so
//! the copy outlives the cut-over and the domain's retire; it goes with the move's
//! undo. The owner's own retire keeps the source's table for it
//! (`cutover::replica::replicas` counts every reader).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::super::{grantee, lit, relation_exists};
use super::objects::{role_marker, roles_needed};
use super::on_domain;
use super::replication::{Link, Names, Stream};
use crate::catalog::{Catalog, QualName, ReplicaIdentity, Table};
use crate::engine::{SqlAction, Step, Target};
use crate::phases::cutover::replica::{
    compat_view_over, identity_columns, joined_view_over, narrowed_view_sql, Replica,
};
use crate::sql::{display_ident, dollar_quoted, ident, ident_list, qualified};

/// The stream that feeds `domain`'s copies: from the source to its server.
pub fn stream<'a>(domain: &'a str, link: &'a Link) -> Stream<'a> {
    Stream {
        domain,
        publisher: Target::Source,
        subscriber: Target::Domain(domain.to_string()),
        names: Names::reads(domain),
        link,
    }
}

/// Every step that gives `domain`'s server its copies (see the module doc); none
/// without copies.
pub fn steps(
    catalog: &Catalog,
    domain: &str,
    link: &Link,
    replicas: &[Replica],
    copy_timeout: Duration,
) -> Vec<Step> {
    let copies: Vec<(&Replica, &Table)> = replicas
        .iter()
        .filter_map(|r| catalog.table(&r.table).map(|t| (r, t)))
        .collect();
    if copies.is_empty() {
        return Vec::new();
    }
    let stream = stream(domain, link);
    let readers = readers_on_target(catalog, domain, &copies);
    let mut steps = vec![
        source_grant(&stream, &copies),
        publication(&stream, &copies),
        stream.create_slot(),
    ];
    // The schemas the copies and their views live in, with who reads there.
    let mut schemas: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (replica, table) in &copies {
        let who = &readers[&table.name];
        let views = views_over(catalog, replica);
        for schema in
            std::iter::once(&table.name.schema).chain(views.iter().map(|(v, _)| &v.schema))
        {
            schemas
                .entry(schema.clone())
                .or_default()
                .extend(who.iter().cloned());
        }
    }
    let joined = joined_views(catalog, domain, replicas);
    for view in &joined {
        schemas
            .entry(view.name.schema.clone())
            .or_default()
            .extend(view.readers.iter().cloned());
    }
    for (schema, who) in &schemas {
        steps.push(schema_step(domain, schema, who));
    }
    for (replica, table) in &copies {
        steps.push(copy_table(
            catalog,
            domain,
            replica,
            table,
            &readers[&table.name],
        ));
    }
    steps.extend(joined.iter().map(|view| view.step(domain)));
    steps.push(stream.subscribe(true));
    steps.push(stream.wait_for_copy(
        &format!(
            "the copy of the other domains' columns {} reads",
            display_ident(domain)
        ),
        format!(
            "the initial copy of the other domains' columns that the services of {} read",
            display_ident(domain)
        ),
        copy_timeout,
    ));
    steps
}

/// The replicated table's compatibility views (outside the domain's own schema,
/// which the move copies as it is), each with the columns it keeps.
fn views_over(catalog: &Catalog, replica: &Replica) -> Vec<(QualName, String)> {
    catalog
        .views
        .iter()
        .filter_map(|v| {
            let (_, kept) = compat_view_over(v, std::slice::from_ref(replica))?;
            Some((v.name.clone(), narrowed_view_sql(v, replica, &kept)))
        })
        .collect()
}

/// Per copied table, the roles that read it on the source (SELECT on the table, one
/// of its columns, or a compatibility view over it) and that the move makes on the
/// domain's server: the readers' login roles, as restrict granted them.
fn readers_on_target(
    catalog: &Catalog,
    domain: &str,
    copies: &[(&Replica, &Table)],
) -> BTreeMap<QualName, Vec<String>> {
    let on_target = roles_on_target(catalog, domain);
    copies
        .iter()
        .map(|(replica, table)| {
            let views = views_over(catalog, replica);
            let grants = table
                .grants
                .iter()
                .chain(table.columns.iter().flat_map(|c| &c.grants))
                .chain(
                    catalog
                        .views
                        .iter()
                        .filter(|v| views.iter().any(|(name, _)| *name == v.name))
                        .flat_map(|v| &v.grants),
                );
            (table.name.clone(), selecting(grants, &on_target))
        })
        .collect()
}

/// The grantees of SELECT among `grants` that are roles on the domain's server,
/// each once, in order.
fn selecting<'g>(
    grants: impl Iterator<Item = &'g crate::catalog::Grant>,
    on_target: &BTreeSet<&str>,
) -> Vec<String> {
    let who: BTreeSet<&str> = grants
        .filter(|g| g.privilege == "SELECT" && on_target.contains(g.grantee.as_str()))
        .map(|g| g.grantee.as_str())
        .collect();
    who.into_iter().map(str::to_string).collect()
}

/// The roles the move makes on `domain`'s server.
fn roles_on_target<'c>(catalog: &'c Catalog, domain: &str) -> BTreeSet<&'c str> {
    roles_needed(catalog, domain)
        .into_iter()
        .map(|r| r.name.as_str())
        .collect()
}

/// A compatibility view over two copied tables, joined on their key: what a split
/// leaves under the table's old name (`split`), made again over the copies of
/// both parts so the readers' statements naming it keep working.
struct JoinedView {
    name: QualName,
    sql: String,
    /// The table and the parts it joins.
    over: Vec<QualName>,
    /// Roles on the domain's server that may read it on the source.
    readers: Vec<String>,
}

/// The compatibility views that join two copied tables on a key both copies keep,
/// each with the columns the copies keep, in the view's order.
fn joined_views(catalog: &Catalog, domain: &str, copies: &[Replica]) -> Vec<JoinedView> {
    let on_target = roles_on_target(catalog, domain);
    catalog
        .views
        .iter()
        .filter_map(|view| {
            let (sql, joined, _) = joined_view_over(catalog, view, copies)?;
            let grants = view
                .grants
                .iter()
                .chain(view.columns.iter().flat_map(|c| &c.grants));
            Some(JoinedView {
                name: view.name.clone(),
                sql,
                over: joined.iter().map(|r| r.table.clone()).collect(),
                readers: selecting(grants, &on_target),
            })
        })
        .collect()
}

impl JoinedView {
    /// On the domain's server, after both copies: the view, and SELECT on it for
    /// its readers.
    fn step(&self, domain: &str) -> Step {
        let name = qualified(&self.name.schema, &self.name.name);
        let mut sql = format!("{}\n", self.sql);
        for reader in &self.readers {
            sql.push_str(&format!("GRANT SELECT ON {name} TO {};\n", grantee(reader)));
        }
        on_domain(
            domain,
            format!("create view {} over copies", self.name),
            format!(
                "{}, joining the copies of {} as on the source, read-only on the {} server",
                self.name,
                crate::text::and_list(&self.over),
                display_ident(domain)
            ),
            SqlAction::transactional(
                sql,
                relation_exists(&self.name.schema, &self.name.name, "'v'"),
                format!("DROP VIEW {name};"),
            ),
        )
    }
}

/// On the source: the move's replication role may read the copied columns (the
/// initial copy reads them as it).
fn source_grant(stream: &Stream, copies: &[(&Replica, &Table)]) -> Step {
    let role = &stream.names.role;
    let mut grant = String::new();
    let mut revoke = String::new();
    let mut checks = vec![super::super::role_exists(role)];
    for (replica, _) in copies {
        let name = qualified(&replica.table.schema, &replica.table.name);
        let columns = ident_list(&replica.columns);
        grant.push_str(&format!(
            "GRANT USAGE ON SCHEMA {} TO {};\nGRANT SELECT ({columns}) ON {name} TO {};\n",
            ident(&replica.table.schema),
            ident(role),
            ident(role)
        ));
        revoke.push_str(&format!(
            "REVOKE SELECT ({columns}) ON {name} FROM {};\n",
            ident(role)
        ));
        checks.extend(replica.columns.iter().map(|c| {
            format!(
                "has_column_privilege({}, {}, {}, 'SELECT')",
                lit(role),
                lit(&name),
                lit(c)
            )
        }));
    }
    let schemas: BTreeSet<&str> = copies
        .iter()
        .map(|(r, _)| r.table.schema.as_str())
        .collect();
    for schema in schemas {
        revoke.push_str(&format!(
            "REVOKE USAGE ON SCHEMA {} FROM {};\n",
            ident(schema),
            ident(role)
        ));
    }
    Step::sql(
        format!("grant read of the replicated columns to {role}"),
        format!("{role} may read the columns the domain's copies hold, to copy them"),
        Target::Source,
        SqlAction::transactional(grant, checks.join(" AND "), revoke),
    )
}

/// On the source: the publication of the copied columns. Partitions are published
/// as their root, so the copy is one table.
fn publication(stream: &Stream, copies: &[(&Replica, &Table)]) -> Step {
    let publication = &stream.names.publication;
    let listed: Vec<String> = copies.iter().map(|(r, _)| r.published()).collect();
    Step::sql(
        format!("create publication {publication}"),
        format!(
            "publication on the source of the other domains' columns {} reads",
            display_ident(stream.domain)
        ),
        Target::Source,
        SqlAction::transactional(
            format!(
                "CREATE PUBLICATION {} FOR TABLE {} WITH (publish_via_partition_root = true);",
                ident(publication),
                listed.join(", ")
            ),
            format!(
                "EXISTS (SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = {})",
                lit(publication)
            ),
            format!("DROP PUBLICATION {};", ident(publication)),
        ),
    )
}

/// On the domain's server: a schema for copies, made only when missing and then
/// marked, with USAGE for the readers; the undo drops only a marked schema.
fn schema_step(domain: &str, schema: &str, readers: &BTreeSet<String>) -> Step {
    let marker = lit(&role_marker(domain));
    let name = ident(schema);
    let usage: String = readers
        .iter()
        .map(|r| format!(" GRANT USAGE ON SCHEMA {name} TO {};", grantee(r)))
        .collect();
    on_domain(
        domain,
        format!("create schema {} for copies", display_ident(schema)),
        format!(
            "schema {} on the {} server, for the copies of the tables its services read there",
            display_ident(schema),
            display_ident(domain)
        ),
        SqlAction::transactional(
            format!(
                "DO {};",
                dollar_quoted(&format!(
                    "BEGIN IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = {}) THEN CREATE SCHEMA {name}; COMMENT ON SCHEMA {name} IS {marker};{usage} END IF; END",
                    lit(schema)
                ))
            ),
            super::super::schema_exists(schema),
            super::super::drop_schema_if_marked(schema, &role_marker(domain)),
        ),
    )
}

/// On the domain's server: the copy of one table (its kept columns, NOT NULL as
/// there, keyed by its replica identity), its compatibility views, and SELECT on
/// the kept columns for its readers.
fn copy_table(
    catalog: &Catalog,
    domain: &str,
    replica: &Replica,
    table: &Table,
    readers: &[String],
) -> Step {
    let name = qualified(&table.name.schema, &table.name.name);
    let mut columns: Vec<String> = table
        .columns
        .iter()
        .filter(|c| replica.columns.contains(&c.name))
        .map(|c| {
            format!(
                "{} {}{}",
                ident(&c.name),
                c.type_name,
                if c.not_null { " NOT NULL" } else { "" }
            )
        })
        .collect();
    let key = identity_columns(table);
    if table.replica_identity != ReplicaIdentity::Full && !key.is_empty() {
        let key: Vec<String> = table
            .columns
            .iter()
            .filter(|c| key.contains(&c.name))
            .map(|c| ident(&c.name))
            .collect();
        columns.push(format!("PRIMARY KEY ({})", key.join(", ")));
    }
    let mut sql = format!(
        "CREATE TABLE {name} ({});\nCOMMENT ON TABLE {name} IS {};\n",
        columns.join(", "),
        lit(&format!(
            "read-only copy kept by carve (replicate) for {}",
            replica.readers.join(", ")
        ))
    );
    let kept = ident_list(&replica.columns);
    let views = views_over(catalog, replica);
    let mut undo = String::new();
    for (view, create) in &views {
        sql.push_str(create);
        sql.push('\n');
        undo.push_str(&format!(
            "DROP VIEW {};\n",
            qualified(&view.schema, &view.name)
        ));
    }
    for reader in readers {
        let who = grantee(reader);
        sql.push_str(&format!("GRANT SELECT ({}) ON {name} TO {who};\n", kept));
        for (view, _) in &views {
            sql.push_str(&format!(
                "GRANT SELECT ON {} TO {who};\n",
                qualified(&view.schema, &view.name)
            ));
        }
    }
    undo.push_str(&format!("DROP TABLE {name};"));
    on_domain(
        domain,
        format!("create copy of {}", table.name),
        format!(
            "the columns {} of {} that {} read{}, a read-only copy on the {} server",
            replica.columns.join(", "),
            table.name,
            replica.readers.join(", "),
            replica
                .rows
                .as_deref()
                .map(|f| format!(" (rows where {f})"))
                .unwrap_or_default(),
            display_ident(domain)
        ),
        SqlAction::transactional(
            sql,
            relation_exists(&table.name.schema, &table.name.name, "'r'"),
            undo,
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::testing::{catalog, column, table};
    use crate::catalog::{Grant, Role, View, ViewDependency};
    use crate::phases::assign::COMPAT_VIEW_COMMENT;

    fn link() -> Link {
        Link {
            conninfo: "host=db1 port=5432 dbname=shop".into(),
            password_file: "/tmp/passwords".into(),
            host: "db1".into(),
            port: 5432,
            database: "shop".into(),
        }
    }

    fn select(grantee: &str) -> Grant {
        Grant {
            grantee: grantee.into(),
            privilege: "SELECT".into(),
            grantable: false,
            grantor: "postgres".into(),
        }
    }

    /// sales.orders (id key, status, total) with its compatibility view
    /// public.orders, read by billing's role; billing.invoices owned by billing.
    fn shop() -> Catalog {
        let mut orders = table("sales", "orders");
        orders.columns = vec![
            crate::catalog::Column {
                not_null: true,
                ..column("id", "bigint")
            },
            column("status", "text"),
            column("total", "numeric(10,2)"),
        ];
        orders.constraints = vec![crate::catalog::testing::primary_key("orders_pkey", &["id"])];
        let mut invoices = table("billing", "invoices");
        invoices.owner = "billing_app".into();
        let mut c = catalog(vec![orders, invoices]);
        c.views = vec![View {
            name: QualName::new("public", "orders"),
            materialized: false,
            owner: "postgres".into(),
            definition: " SELECT id, status, total FROM sales.orders;".into(),
            columns: vec![
                column("id", "bigint"),
                column("status", "text"),
                column("total", "numeric(10,2)"),
            ],
            options: vec!["security_invoker=true".into()],
            depends_on: vec![ViewDependency {
                relation: QualName::new("sales", "orders"),
                columns: vec![],
            }],
            triggers: vec![],
            comment: Some(format!("{COMPAT_VIEW_COMMENT}sales.orders")),
            grants: vec![select("billing_app"), select("stranger")],
        }];
        c.roles = ["billing_app", "stranger"]
            .iter()
            .map(|name| Role {
                login: true,
                ..crate::catalog::testing::role(name, false)
            })
            .collect();
        c.normalize();
        c
    }

    fn copy() -> Replica {
        Replica {
            table: QualName::new("sales", "orders"),
            columns: vec!["id".into(), "status".into()],
            readers: vec!["billing".into()],
            every_column_because: None,
            rows: Some("id > 100".into()),
        }
    }

    #[test]
    fn a_copy_is_published_made_granted_to_its_readers_and_subscribed_in_that_order() {
        let steps = steps(
            &shop(),
            "billing",
            &link(),
            &[copy()],
            Duration::from_secs(60),
        );
        let ids: Vec<&str> = steps.iter().map(|s| s.id.as_str()).collect();
        let names = Names::reads("billing");
        assert_eq!(
            ids,
            [
                format!("grant read of the replicated columns to {}", names.role).as_str(),
                &format!("create publication {}", names.publication),
                &format!("create replication slot {}", names.slot),
                "create schema public for copies",
                "create schema sales for copies",
                "create copy of sales.orders",
                &format!("create subscription {}", names.subscription),
                "wait for the copy of the other domains' columns billing reads",
            ]
        );
        let sql = |i: usize| steps[i].sql_action().unwrap().sql.clone();
        assert!(
            sql(0).contains("GRANT SELECT (\"id\", \"status\") ON \"sales\".\"orders\""),
            "{}",
            sql(0)
        );
        assert_eq!(
            sql(1),
            format!("CREATE PUBLICATION \"{}\" FOR TABLE \"sales\".\"orders\" (\"id\", \"status\") WHERE (id > 100) WITH (publish_via_partition_root = true);", names.publication)
        );
        // Made only when missing, and dropped by the undo only when carve made it.
        assert!(
            sql(3).contains("IF NOT EXISTS")
                && sql(3).contains("GRANT USAGE ON SCHEMA \"public\" TO \"billing_app\""),
            "{}",
            sql(3)
        );
        assert!(steps[3]
            .sql_action()
            .unwrap()
            .undo
            .contains("obj_description"));
        // The kept columns only, keyed as on the source; the view over them as the
        // reader's SQL names it; SELECT on those columns for the reader, whom the
        // move makes on the server, and nobody else.
        let table = sql(5);
        assert!(table.contains("CREATE TABLE \"sales\".\"orders\" (\"id\" bigint NOT NULL, \"status\" text, PRIMARY KEY (\"id\"))"), "{table}");
        assert!(table.contains("CREATE VIEW \"public\".\"orders\" WITH (security_invoker=true) AS SELECT \"id\", \"status\" FROM \"sales\".\"orders\";"), "{table}");
        assert!(
            table.contains(
                "GRANT SELECT (\"id\", \"status\") ON \"sales\".\"orders\" TO \"billing_app\""
            ),
            "{table}"
        );
        assert!(
            !table.contains("stranger") && !table.contains("total"),
            "{table}"
        );
        assert_eq!(
            steps[5].sql_action().unwrap().undo,
            "DROP VIEW \"public\".\"orders\";\nDROP TABLE \"sales\".\"orders\";"
        );
        for step in &steps[3..] {
            assert_eq!(step.target, Target::Domain("billing".into()), "{}", step.id);
        }
        assert!(super::steps(&shop(), "billing", &link(), &[], Duration::from_secs(60)).is_empty());
    }

    /// What a split leaves: sales.orders keeps its key and status, its part
    /// shipping.orders_shipping has the key and the moved `carrier`, and the view
    /// public.orders joins them.
    fn split_shop() -> Catalog {
        let mut c = shop();
        let mut part = table("shipping", "orders_shipping");
        part.columns = vec![
            crate::catalog::Column {
                not_null: true,
                ..column("id", "bigint")
            },
            column("carrier", "text"),
        ];
        part.constraints = vec![crate::catalog::testing::primary_key(
            "orders_shipping_pkey",
            &["id"],
        )];
        c.tables.push(part);
        let view = &mut c.views[0];
        view.columns.push(column("carrier", "text"));
        view.depends_on.push(ViewDependency {
            relation: QualName::new("shipping", "orders_shipping"),
            columns: vec![],
        });
        c.normalize();
        c
    }

    #[test]
    fn a_view_joining_two_copied_parts_is_made_again_over_the_copies() {
        let part = Replica {
            table: QualName::new("shipping", "orders_shipping"),
            columns: vec!["id".into(), "carrier".into()],
            ..copy()
        };
        let steps = steps(
            &split_shop(),
            "billing",
            &link(),
            &[copy(), part.clone()],
            Duration::from_secs(60),
        );
        let ids: Vec<&str> = steps.iter().map(|s| s.id.as_str()).collect();
        let at = ids
            .iter()
            .position(|id| *id == "create view public.orders over copies")
            .unwrap_or_else(|| panic!("{ids:#?}"));
        assert!(
            ids[..at].contains(&"create copy of sales.orders")
                && ids[..at].contains(&"create copy of shipping.orders_shipping"),
            "after both copies: {ids:#?}"
        );
        let action = steps[at].sql_action().unwrap();
        assert_eq!(
            action.sql,
            "CREATE VIEW \"public\".\"orders\" WITH (security_invoker=true) AS SELECT a.\"id\", a.\"status\", b.\"carrier\" FROM \"sales\".\"orders\" a JOIN \"shipping\".\"orders_shipping\" b ON a.\"id\" = b.\"id\";\nGRANT SELECT ON \"public\".\"orders\" TO \"billing_app\";\n"
        );
        assert_eq!(action.undo, "DROP VIEW \"public\".\"orders\";");
        // One part copied without the key: no view (it could not be joined).
        let keyless = Replica {
            columns: vec!["carrier".into()],
            ..part
        };
        let steps = super::steps(
            &split_shop(),
            "billing",
            &link(),
            &[copy(), keyless],
            Duration::from_secs(60),
        );
        assert!(steps.iter().all(|s| !s.id.starts_with("create view")));
    }
}
