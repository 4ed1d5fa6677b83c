//! The domain's schema on its new server, generated from the catalog model (never by
//! shelling out to pg_dump), as steps on `domain:NAME`: the schema, its sequences,
//! its tables with their columns (types, defaults, identity, generated expressions),
//! primary keys, unique, check and exclusion constraints and replica identity. What
//! would slow the initial copy is `deferred`, built once the copy is done: secondary
//! indexes, and foreign keys inside the domain (added `NOT VALID`, then validated).
//!
//! Also the functions it needs (`objects`), its views in dependency order, and its
//! triggers. Roles, owners and grants are `objects`' steps. Not generated yet: types
//! (enums, domains, composites).

use super::super::{lit, relation_exists};
use super::on_domain;
use crate::catalog::{
    Catalog, ConstraintKind, Identity, QualName, ReplicaIdentity, Sequence, Table, View,
};
use crate::engine::{SqlAction, Step};
use crate::phases::cutover::replica::{create_view_sql, view_options};
use crate::sql::{display_ident, ident, qualified};

/// Session settings for building an index or checking a foreign key on the
/// domain's server after the copy (raised, never lowered, for this transaction).
const BUILD_SETTINGS: &str = "SELECT pg_catalog.set_config('maintenance_work_mem', '512MB', true) WHERE pg_catalog.pg_size_bytes(pg_catalog.current_setting('maintenance_work_mem')) < 512 * 1024 * 1024;\nSELECT pg_catalog.set_config('work_mem', '256MB', true) WHERE pg_catalog.pg_size_bytes(pg_catalog.current_setting('work_mem')) < 256 * 1024 * 1024;\nSELECT pg_catalog.set_config('max_parallel_maintenance_workers', '4', true) WHERE pg_catalog.current_setting('max_parallel_maintenance_workers')::int < 4;";

/// The steps that make the domain's schema on its server.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetSchema {
    /// Before the copy: schema, sequences, tables and their keys.
    pub steps: Vec<Step>,
    /// After the copy: secondary indexes, foreign keys (NOT VALID, then VALIDATE).
    pub deferred: Vec<Step>,
}

/// The target schema of `domain`, whose relations assign put in the schema of that
/// name.
pub fn target_schema(catalog: &Catalog, domain: &str) -> TargetSchema {
    let mut steps = Vec::new();
    let mut deferred = Vec::new();
    let schema = ident(domain);
    steps.push(on_domain(
        domain,
        format!("create schema {}", display_ident(domain)),
        format!("schema {} on the domain's server", display_ident(domain)),
        SqlAction::transactional(
            format!("CREATE SCHEMA {schema};"),
            format!(
                "EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = {})",
                lit(domain)
            ),
            // A rollback leaves the fence's functions in it.
            format!(
                "{}\nDROP SCHEMA {schema};",
                crate::phases::cutover::fence::drop_functions_sql(domain)
            ),
        ),
    ));
    steps.extend(super::objects::function_steps(catalog, domain));
    let here = |schema: &str| schema == domain;
    // Sequences an identity column makes itself.
    for seq in catalog
        .sequences
        .iter()
        .filter(|s| here(&s.name.schema) && !s.identity)
    {
        steps.push(on_domain(
            domain,
            format!("create sequence {}", seq.name),
            format!("sequence {}", seq.name),
            SqlAction::transactional(
                create_sequence(seq),
                relation_exists(&seq.name.schema, &seq.name.name, "'S'"),
                format!(
                    "DROP SEQUENCE {};",
                    qualified(&seq.name.schema, &seq.name.name)
                ),
            ),
        ));
    }
    // Parents before their partitions.
    let mut tables: Vec<&Table> = catalog
        .tables
        .iter()
        .filter(|t| here(&t.name.schema))
        .collect();
    tables.sort_by_key(|t| t.partition_of.is_some());
    for table in tables {
        let name = qualified(&table.name.schema, &table.name.name);
        let mut text = create_table(table);
        for c in table.constraints.iter().filter(|c| {
            !c.inherited
                && matches!(
                    c.kind,
                    ConstraintKind::PrimaryKey
                        | ConstraintKind::Unique
                        | ConstraintKind::Check
                        | ConstraintKind::Exclusion
                )
        }) {
            text.push_str(&format!(
                "ALTER TABLE {name} ADD CONSTRAINT {} {};\n",
                ident(&c.name),
                c.definition
            ));
        }
        for seq in catalog.sequences.iter().filter(|s| !s.identity) {
            if let Some(owner) = seq.owned_by.as_ref().filter(|o| o.table == table.name) {
                text.push_str(&format!(
                    "ALTER SEQUENCE {} OWNED BY {name}.{};\n",
                    qualified(&seq.name.schema, &seq.name.name),
                    ident(&owner.column)
                ));
            }
        }
        match &table.replica_identity {
            ReplicaIdentity::Full => {
                text.push_str(&format!("ALTER TABLE {name} REPLICA IDENTITY FULL;\n"))
            }
            ReplicaIdentity::Nothing => {
                text.push_str(&format!("ALTER TABLE {name} REPLICA IDENTITY NOTHING;\n"))
            }
            ReplicaIdentity::Index(index) => text.push_str(&format!(
                "ALTER TABLE {name} REPLICA IDENTITY USING INDEX {};\n",
                ident(index)
            )),
            ReplicaIdentity::Default => {}
        }
        steps.push(on_domain(
            domain,
            format!("create table {}", table.name),
            format!("table {} with its keys", table.name),
            SqlAction::transactional(
                text,
                relation_exists(&table.name.schema, &table.name.name, "'r', 'p'"),
                format!("DROP TABLE {name};"),
            ),
        ));
        for index in table
            .indexes
            .iter()
            .filter(|i| i.constraint.is_none() && !i.primary)
        {
            deferred.push(on_domain(
                domain,
                format!(
                    "create index {}.{}",
                    display_ident(domain),
                    display_ident(&index.name)
                ),
                format!(
                    "index {} on {} (after the copy)",
                    display_ident(&index.name),
                    table.name
                ),
                SqlAction::transactional(
                    // Built on a server nobody uses yet: as much memory and as many
                    // parallel workers as the server allows, at least 512 MB.
                    format!("{BUILD_SETTINGS}\n{};", index.definition),
                    relation_exists(domain, &index.name, "'i', 'I'"),
                    format!("DROP INDEX {};", qualified(domain, &index.name)),
                ),
            ));
        }
    }
    // Views of the domain (assign moved those over its tables only), each after the
    // views it reads.
    for view in views_in_order(catalog, domain) {
        let name = qualified(&view.name.schema, &view.name.name);
        let options = view_options(view);
        let definition = view.definition.trim().trim_end_matches(';');
        steps.push(on_domain(
            domain,
            format!("create view {}", view.name),
            format!("view {}", view.name),
            SqlAction::transactional(
                format!("CREATE VIEW {name}{options} AS\n{definition};\n"),
                relation_exists(&view.name.schema, &view.name.name, "'v'"),
                format!("DROP VIEW {name};"),
            ),
        ));
    }
    // A split's view over both parts, under the table's old name in its own
    // schema: with the defaults it gives an INSERT and the comment that marks it as
    // assign's (its trigger follows with the others).
    for view in super::objects::joined_compat_views(catalog, domain) {
        let parts: Vec<&QualName> = view.depends_on.iter().map(|d| &d.relation).collect();
        steps.push(compat_view_step(
            domain,
            view,
            format!(
                "view {} over {}, as on the source: the old name its clients write through",
                view.name,
                crate::text::and_list(&parts)
            ),
        ));
    }
    // A split whose parts stay in other domains: the old name over the table alone.
    for split in super::split_across::table_side(catalog, domain) {
        steps.push(compat_view_step(
            domain,
            &split.view_on_target(),
            format!(
                "view {} over {} alone: the old name the table's writers write through ({} stay on the source)",
                split.view.name,
                split.table.name,
                crate::text::and_list(&split.parts)
            ),
        ));
    }
    steps.extend(super::objects::trigger_steps(catalog, domain));
    // Foreign keys between the domain's own tables; one across domains cannot hold on
    // two servers (the preflight refuses to move while one is kept).
    for table in catalog.tables.iter().filter(|t| here(&t.name.schema)) {
        let name = qualified(&table.name.schema, &table.name.name);
        for (c, fk) in table.foreign_keys().filter(|(c, _)| !c.inherited) {
            if !here(&fk.references.schema) {
                continue;
            }
            let exists = format!(
                "EXISTS (SELECT 1 FROM pg_catalog.pg_constraint WHERE conrelid = pg_catalog.to_regclass({}) AND conname = {}",
                lit(&name),
                lit(&c.name)
            );
            let constraint = ident(&c.name);
            // PostgreSQL cannot add a foreign key NOT VALID to a partitioned table:
            // there it is checked as it is added.
            let not_valid = if table.partition_key.is_some() {
                ""
            } else {
                " NOT VALID"
            };
            deferred.push(on_domain(
                domain,
                format!("add foreign key {}.{}", table.name, display_ident(&c.name)),
                format!(
                    "foreign key {} on {}, not yet validated",
                    display_ident(&c.name),
                    table.name
                ),
                SqlAction::transactional(
                    format!(
                        "ALTER TABLE {name} ADD CONSTRAINT {constraint} {}{not_valid};",
                        c.definition
                    ),
                    format!("{exists})"),
                    format!("ALTER TABLE {name} DROP CONSTRAINT {constraint};"),
                ),
            ));
            deferred.push(on_domain(
                domain,
                format!(
                    "validate foreign key {}.{}",
                    table.name,
                    display_ident(&c.name)
                ),
                format!(
                    "foreign key {} on {} checked against the copied rows",
                    display_ident(&c.name),
                    table.name
                ),
                SqlAction::transactional(
                    format!(
                        "{BUILD_SETTINGS}\nALTER TABLE {name} VALIDATE CONSTRAINT {constraint};"
                    ),
                    format!("{exists} AND convalidated)"),
                    // A constraint cannot be made unvalidated again; its undo is the
                    // previous step's.
                    "SELECT 1;".into(),
                ),
            ));
        }
    }
    TargetSchema { steps, deferred }
}

/// A compatibility view outside the domain's schema, made on its server with the
/// defaults it gives an INSERT and the comment that marks it as assign's.
fn compat_view_step(domain: &str, view: &View, description: String) -> Step {
    on_domain(
        domain,
        format!("create view {}", view.name),
        description,
        SqlAction::transactional(
            compat_view_sql(view),
            relation_exists(&view.name.schema, &view.name.name, "'v'"),
            format!(
                "DROP VIEW {};",
                qualified(&view.name.schema, &view.name.name)
            ),
        ),
    )
}

/// `CREATE VIEW` of a compatibility view with its defaults and its comment.
pub(super) fn compat_view_sql(view: &View) -> String {
    let mut sql = create_view_sql(view);
    if let Some(comment) = &view.comment {
        sql.push_str(&format!(
            "COMMENT ON VIEW {} IS {};\n",
            qualified(&view.name.schema, &view.name.name),
            lit(comment)
        ));
    }
    sql
}

/// The domain's (plain) views, each after the views of the domain it reads.
fn views_in_order<'c>(catalog: &'c Catalog, domain: &str) -> Vec<&'c View> {
    let mut left: Vec<&View> = catalog
        .views
        .iter()
        .filter(|v| v.name.schema == domain && !v.materialized)
        .collect();
    let mut out: Vec<&View> = Vec::new();
    while !left.is_empty() {
        let ready = |v: &View, out: &[&View], left: &[&View]| {
            v.depends_on.iter().all(|d| {
                d.relation == v.name
                    || out.iter().any(|o| o.name == d.relation)
                    || !left.iter().any(|l| l.name == d.relation)
            })
        };
        let (now, later): (Vec<&View>, Vec<&View>) =
            left.iter().partition(|v| ready(v, &out, &left));
        if now.is_empty() {
            // A cycle cannot happen among views; keep the rest in name order.
            out.extend(later);
            break;
        }
        out.extend(now);
        left = later;
    }
    out
}

fn create_sequence(seq: &Sequence) -> String {
    format!(
        "CREATE SEQUENCE {} AS {} INCREMENT BY {} MINVALUE {} MAXVALUE {} START WITH {}{};",
        qualified(&seq.name.schema, &seq.name.name),
        seq.data_type,
        seq.increment,
        seq.min,
        seq.max,
        seq.start,
        if seq.cycle { " CYCLE" } else { "" }
    )
}

fn create_table(table: &Table) -> String {
    let name = qualified(&table.name.schema, &table.name.name);
    if let (Some(parent), Some(bound)) = (&table.partition_of, &table.partition_bound) {
        return format!(
            "CREATE TABLE {name} PARTITION OF {} {bound};\n",
            qualified(&parent.schema, &parent.name)
        );
    }
    let columns: Vec<String> = table
        .columns
        .iter()
        .map(|c| {
            let mut col = format!("{} {}", ident(&c.name), c.type_name);
            if let Some(expr) = &c.generated {
                col.push_str(&format!(" GENERATED ALWAYS AS ({expr}) STORED"));
            } else if let Some(identity) = c.identity {
                col.push_str(match identity {
                    Identity::Always => " GENERATED ALWAYS AS IDENTITY",
                    Identity::ByDefault => " GENERATED BY DEFAULT AS IDENTITY",
                });
            } else if let Some(default) = &c.default {
                col.push_str(&format!(" DEFAULT {default}"));
            }
            if c.not_null {
                col.push_str(" NOT NULL");
            }
            col
        })
        .collect();
    let partitioned = table
        .partition_key
        .as_ref()
        .map(|key| format!(" PARTITION BY {key}"))
        .unwrap_or_default();
    format!(
        "CREATE TABLE {name} (\n    {}\n){partitioned};\n",
        columns.join(",\n    ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::testing::{catalog, table};
    use crate::catalog::QualName;

    #[test]
    fn views_follow_the_views_they_read() {
        let view = |name: &str, reads: &str| View {
            name: QualName::new("sales", name),
            materialized: false,
            owner: "app".into(),
            definition: format!(" SELECT * FROM sales.{reads};"),
            columns: Vec::new(),
            options: vec!["security_invoker=true".into()],
            depends_on: vec![crate::catalog::ViewDependency {
                relation: QualName::new("sales", reads),
                columns: Vec::new(),
            }],
            triggers: Vec::new(),
            comment: None,
            grants: Vec::new(),
        };
        let mut c = catalog(vec![table("sales", "orders")]);
        c.views = vec![view("a_totals", "b_open"), view("b_open", "orders")];
        c.normalize();
        let schema = target_schema(&c, "sales");
        let ids: Vec<&str> = schema.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "create schema sales",
                "create table sales.orders",
                "create view sales.b_open",
                "create view sales.a_totals"
            ]
        );
        assert_eq!(
            schema.steps[3].sql_action().unwrap().sql,
            "CREATE VIEW \"sales\".\"a_totals\" WITH (security_invoker=true) AS\nSELECT * FROM sales.b_open;\n"
        );
    }

    /// What a split leaves: sales.orders and its part sales.orders_pay behind
    /// public.orders, a view over both with a default, a column grant and the
    /// trigger that sends its writes to the parts; and public.totals, assign's
    /// view over one table.
    fn split_catalog() -> Catalog {
        let grant = |grantee: &str, privilege: &str| crate::catalog::Grant {
            grantee: grantee.into(),
            privilege: privilege.into(),
            grantable: false,
            grantor: "app".into(),
        };
        let view = |name: &str, over: &[&str]| View {
            name: QualName::new("public", name),
            materialized: false,
            owner: "app".into(),
            definition: format!(" SELECT * FROM {};", over.join(", ")),
            columns: vec![crate::catalog::testing::column("total", "integer")],
            options: Vec::new(),
            depends_on: over
                .iter()
                .map(|t| crate::catalog::ViewDependency {
                    relation: QualName::new("sales", t),
                    columns: Vec::new(),
                })
                .collect(),
            triggers: Vec::new(),
            comment: Some(format!(
                "{}{name}",
                crate::phases::assign::COMPAT_VIEW_COMMENT
            )),
            grants: vec![grant("shop", "SELECT")],
        };
        let mut joined = view("orders", &["orders", "orders_pay"]);
        joined.columns[0].default = Some("0".into());
        joined.columns[0].grants = vec![grant("payments", "UPDATE")];
        joined
            .triggers
            .push(crate::catalog::testing::instead_of_trigger(
                "carve_split_write",
                "public.orders",
                QualName::new("sales", "carve_split_1_write"),
            ));
        let mut c = catalog(vec![table("sales", "orders"), table("sales", "orders_pay")]);
        c.views = vec![joined, view("totals", &["orders"])];
        crate::catalog::testing::push_roles(&mut c, "app", &["shop", "payments"]);
        c.normalize();
        c
    }

    #[test]
    fn a_split_view_over_two_of_its_tables_goes_with_the_domain_under_its_name() {
        let c = split_catalog();
        let views: Vec<String> =
            crate::phases::move_domain::objects::joined_compat_views(&c, "sales")
                .map(|v| v.name.to_string())
                .collect();
        assert_eq!(views, ["public.orders"], "not a view over one table");
        let schema = target_schema(&c, "sales");
        let ids: Vec<&str> = schema.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "create schema sales",
                "create table sales.orders",
                "create table sales.orders_pay",
                "create view public.orders",
                "create trigger public.orders.carve_split_write",
            ]
        );
        let view = schema.steps[3].sql_action().unwrap();
        assert_eq!(
            view.sql,
            "CREATE VIEW \"public\".\"orders\" AS SELECT * FROM orders, orders_pay;\nALTER VIEW \"public\".\"orders\" ALTER COLUMN \"total\" SET DEFAULT 0;\nCOMMENT ON VIEW \"public\".\"orders\" IS 'carve: compatibility view for orders';\n"
        );
        assert_eq!(view.undo, "DROP VIEW \"public\".\"orders\";");
        // Its owner, its grants (a column's too) and the roles they name.
        let privileges = crate::phases::move_domain::objects::privilege_steps(&c, "sales");
        let grants = privileges
            .iter()
            .find(|s| s.id == "owner and grants of public.orders")
            .expect("the view's owner and grants");
        let sql = &grants.sql_action().unwrap().sql;
        assert!(
            sql.contains("GRANT SELECT ON TABLE \"public\".\"orders\" TO \"shop\"")
                && sql.contains(
                    "GRANT UPDATE (\"total\") ON TABLE \"public\".\"orders\" TO \"payments\""
                ),
            "{sql}"
        );
        let roles: Vec<&str> = crate::phases::move_domain::objects::roles_needed(&c, "sales")
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(roles, ["app", "payments", "shop"]);
    }

    #[test]
    fn tables_come_with_keys_and_indexes_and_foreign_keys_wait() {
        let mut t = table("Sälës \"x\"", "order");
        t.columns[0].identity = Some(Identity::Always);
        t.columns[0].not_null = true;
        t.constraints.push(crate::catalog::Constraint {
            name: "order_pkey".into(),
            kind: ConstraintKind::PrimaryKey,
            columns: vec![t.columns[0].name.clone()],
            definition: format!("PRIMARY KEY ({})", t.columns[0].name),
            deferrable: false,
            initially_deferred: false,
            inherited: false,
            foreign_key: None,
        });
        t.indexes.push(crate::catalog::Index {
            name: "order_total_idx".into(),
            definition:
                "CREATE INDEX order_total_idx ON \"Sälës \"\"x\"\"\".\"order\" USING btree (total)"
                    .into(),
            unique: false,
            primary: false,
            columns: vec!["total".into()],
            constraint: None,
        });
        let c = catalog(vec![t]);
        let schema = target_schema(&c, "Sälës \"x\"");
        let ids: Vec<&str> = schema.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "create schema \"Sälës \"\"x\"\"\"",
                "create table \"Sälës \"\"x\"\"\".order"
            ]
        );
        let table_sql = &schema.steps[1].sql_action().unwrap().sql;
        assert!(table_sql.starts_with("CREATE TABLE \"Sälës \"\"x\"\"\".\"order\" (\n    \"total\" integer GENERATED ALWAYS AS IDENTITY NOT NULL"), "{table_sql}");
        assert!(
            table_sql.contains("ADD CONSTRAINT \"order_pkey\" PRIMARY KEY (total);"),
            "{table_sql}"
        );
        assert!(schema
            .steps
            .iter()
            .all(|s| s.target == crate::engine::Target::Domain("Sälës \"x\"".into())));
        let deferred: Vec<&str> = schema.deferred.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            deferred,
            ["create index \"Sälës \"\"x\"\"\".order_total_idx"]
        );
    }
}
