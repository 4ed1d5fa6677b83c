//! Retire: once a cut-over domain has run on its own server for a grace period, the
//! way back is taken down and the old schema on the source put aside. Pure, like
//! the rest of the phase:
//!
//! 1. the stream back (its subscription on the source, its publication and role on
//!    the domain's server): after it, a rollback is no longer possible;
//! 2. what on the source still reads the old tables from outside their schema and
//!    would now read rows nobody updates: views (the compatibility views assign
//!    made, and other domains' views), and foreign keys of other tables into them;
//! 3. the schema renamed `<schema>__retired_<time>` (it keeps its fence).
//!
//! Dropping the renamed schema is a separate, later step (`drop_retired`): the only
//! one of carve's steps that cannot be undone, so it comes last and alone.

use super::super::{lit, relation_exists};
use super::crossings::drop_foreign_key;
use super::replica::{
    compat_view_over, create_view_sql, joined_view_over, narrowed_view_sql, view_options, Replica,
};
use crate::catalog::{Catalog, Constraint, QualName, Table, View};
use crate::engine::{undo_steps, SqlAction, Step, Target};
use crate::phases::move_domain::replication::side;
use crate::phases::move_domain::replication::{Link, Stream};
use crate::phases::move_domain::split_across;
use crate::sql::{display_ident, ident, qualified};

/// The name the old schema gets: `<schema>__retired_<time>`, the schema's part cut
/// (on a character boundary) so the whole fits PostgreSQL's 63 bytes.
pub fn retired_name(schema: &str, time: &str) -> String {
    let suffix = format!("__retired_{time}");
    let room = 63usize.saturating_sub(suffix.len());
    let mut cut = schema.len().min(room);
    while !schema.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{suffix}", &schema[..cut])
}

/// Views outside the domain's schema that read its relations, those reading
/// another of them first (the order they can be dropped in).
pub fn readers_outside<'c>(catalog: &'c Catalog, domain: &str) -> Vec<&'c View> {
    let mut left: Vec<&View> = catalog
        .views
        .iter()
        .filter(|v| v.name.schema != domain)
        .filter(|v| v.depends_on.iter().any(|d| d.relation.schema == domain))
        .collect();
    // Add views that read those views, until nothing changes.
    loop {
        let more: Vec<&View> = catalog
            .views
            .iter()
            .filter(|v| v.name.schema != domain && !left.iter().any(|l| l.name == v.name))
            .filter(|v| {
                v.depends_on
                    .iter()
                    .any(|d| left.iter().any(|l| l.name == d.relation))
            })
            .collect();
        if more.is_empty() {
            break;
        }
        left.extend(more);
    }
    let mut ordered = Vec::new();
    while !left.is_empty() {
        // A view no remaining view reads can go now.
        let i = left
            .iter()
            .position(|v| {
                !left
                    .iter()
                    .any(|o| o.depends_on.iter().any(|d| d.relation == v.name))
            })
            .unwrap_or(0);
        ordered.push(left.remove(i));
    }
    ordered
}

fn drop_view(view: &View) -> Step {
    let name = qualified(&view.name.schema, &view.name.name);
    let options = view_options(view);
    let kind = if view.materialized {
        "MATERIALIZED VIEW"
    } else {
        "VIEW"
    };
    Step::sql(
        format!("drop view {}", view.name),
        format!(
            "view {} reads the retired tables: after retire nothing updates them",
            view.name
        ),
        Target::Source,
        SqlAction::transactional(
            format!("DROP {kind} {name};"),
            format!("pg_catalog.to_regclass({}) IS NULL", lit(&name)),
            format!(
                "CREATE {kind} {name}{options} AS {};",
                view.definition.trim().trim_end_matches(';')
            ),
        ),
    )
}

/// A foreign key retire drops, by the id the command lists before it asks.
fn drop_reader_key(table: &QualName, constraint: &Constraint, description: String) -> Step {
    drop_foreign_key(
        table,
        constraint,
        format!("drop foreign key {} of {}", constraint.name, table),
        description,
    )
}

/// Foreign keys of tables outside the domain's schema into its tables.
fn foreign_keys_in(catalog: &Catalog, domain: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    for table in catalog.tables.iter().filter(|t| t.name.schema != domain) {
        for (constraint, fk) in table.foreign_keys() {
            if fk.references.schema != domain || constraint.inherited {
                continue;
            }
            steps.push(drop_reader_key(
                &table.name,
                constraint,
                format!(
                    "{} of {} points into the retired tables: after retire nothing updates them",
                    constraint.name, table.name
                ),
            ));
        }
    }
    steps
}

/// Every step of retiring `domain`'s old schema, renamed to `retired`. With
/// `replicas` (see `replica`), the stream back is narrowed to them instead of
/// taken down, and their tables stay under their names, read-only copies of the
/// columns kept.
pub fn steps(
    catalog: &Catalog,
    domain: &str,
    to_server: &Link,
    retired: &str,
    replicas: &[Replica],
) -> Vec<Step> {
    let back = Stream::back(domain, to_server);
    if !replicas.is_empty() {
        let mut steps = narrow_stream(&back, replicas);
        for view in readers_outside(catalog, domain) {
            // A split across domains: the other domains' relations beneath its
            // view stay, with every column.
            let mut joined = replicas.to_vec();
            joined.extend(split_across::beside_retired(catalog, view, domain));
            match narrowed_view(catalog, view, &joined) {
                Some(step) => steps.extend(step),
                None => steps.push(drop_view(view)),
            }
        }
        steps.extend(foreign_keys_in(catalog, domain));
        for replica in replicas {
            if let Some(table) = catalog.table(&replica.table) {
                steps.extend(kept_table(table, replica, replicas));
            }
        }
        steps.push(rename_keeping(catalog, domain, retired, replicas));
        return steps;
    }
    // The subscription and its slot as a switch drops them, then what the stream
    // needed on the domain's server (publication, grants, role), last made first.
    let made = back.steps(false);
    let on_publisher: Vec<Step> = made
        .iter()
        .filter(|s| s.target == back.publisher && !s.id.starts_with("create replication slot"))
        .cloned()
        .collect();
    let mut steps = back.unsubscribe();
    steps.extend(undo_steps(&on_publisher));
    for step in &mut steps {
        let done = step.id.trim_start_matches("undo ");
        let done = done
            .strip_prefix("create ")
            .map(|rest| format!("drop {rest}"))
            .or_else(|| {
                done.strip_prefix("grant ")
                    .map(|rest| format!("revoke {rest}"))
            })
            .unwrap_or_else(|| done.to_string());
        step.id = format!("retire: {done}");
        step.description = format!(
            "the way back goes: {}",
            step.description.trim_start_matches("undo: ")
        );
    }
    steps.extend(readers_outside(catalog, domain).into_iter().map(drop_view));
    steps.extend(foreign_keys_in(catalog, domain));
    steps.push(Step::sql(
        format!("rename schema {} to {}", display_ident(domain), display_ident(retired)),
        format!(
            "the old schema of {} on the source is put aside as {} (its fence kept), to be dropped later with `carve retire --drop`",
            display_ident(domain),
            display_ident(retired)
        ),
        Target::Source,
        SqlAction {
            sql: format!("ALTER SCHEMA {} RENAME TO {};", ident(domain), ident(retired)),
            done_check: format!(
                "EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = {}) AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = {})",
                lit(retired),
                lit(domain)
            ),
            undo: format!("ALTER SCHEMA {} RENAME TO {};", ident(retired), ident(domain)),
            transactional: true,
            strong_lock: true,
            secret: None,
            read: None,
        },
    ));
    steps
}

/// The stream back narrowed to the kept tables and columns: its publication lists
/// them (a column list each), and the source's subscription stops following the
/// rest. The same slot goes on, so no change is missed or applied twice. Retire is
/// not undone step by step (the tables no longer followed fall behind at once), so
/// the refresh's undo is nothing.
fn narrow_stream(back: &Stream, replicas: &[Replica]) -> Vec<Step> {
    let publication = &back.names.publication;
    let listed: Vec<String> = replicas.iter().map(Replica::published).collect();
    // Each kept table with its sorted columns, compared with what the publication
    // lists (sorted the same way, bytewise).
    let expected: Vec<String> = replicas
        .iter()
        .map(|r| {
            let mut columns = r.columns.clone();
            columns.sort();
            let columns: Vec<String> = columns.iter().map(|c| lit(c)).collect();
            format!(
                "({}, {}, ARRAY[{}]::text[])",
                lit(&r.table.schema),
                lit(&r.table.name),
                columns.join(", ")
            )
        })
        .collect();
    let narrowed = format!(
        "(SELECT count(*) FROM pg_catalog.pg_publication_tables WHERE pubname = {pubname}) = {count} AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_publication_tables p WHERE p.pubname = {pubname} AND NOT EXISTS (SELECT 1 FROM (VALUES {values}) AS e(s, t, c) WHERE e.s = p.schemaname::text AND e.t = p.tablename::text AND e.c = (SELECT array_agg(a::text COLLATE \"C\" ORDER BY a::text COLLATE \"C\") FROM unnest(p.attnames) AS a)))",
        pubname = lit(publication),
        count = replicas.len(),
        values = expected.join(", ")
    );
    let kept: Vec<String> = replicas
        .iter()
        .map(|r| {
            format!(
                "pg_catalog.to_regclass({})",
                lit(&qualified(&r.table.schema, &r.table.name))
            )
        })
        .collect();
    let subscription = ident(&back.names.subscription);
    vec![
        Step::sql(
            format!("narrow publication {publication} to the kept columns"),
            format!(
                "on {}, the stream back publishes only the tables and columns read by services that stay on the source",
                side(&back.publisher)
            ),
            back.publisher.clone(),
            SqlAction::transactional(
                format!(
                    "ALTER PUBLICATION {} SET TABLE {};",
                    ident(publication),
                    listed.join(", ")
                ),
                narrowed,
                format!(
                    "ALTER PUBLICATION {} SET TABLES IN SCHEMA {};",
                    ident(publication),
                    ident(back.domain)
                ),
            ),
        ),
        Step::sql(
            format!("follow only the kept tables with {}", back.names.subscription),
            format!(
                "{} stops following the tables nobody reads there any more",
                side(&back.subscriber)
            ),
            back.subscriber.clone(),
            SqlAction {
                sql: format!(
                    "ALTER SUBSCRIPTION {subscription} REFRESH PUBLICATION WITH (copy_data = false);"
                ),
                done_check: format!(
                    "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_subscription_rel WHERE srsubid = {} AND srrelid NOT IN ({}))",
                    back.subscription_id(),
                    kept.iter().map(|k| format!("coalesce({k}::oid, 0)")).collect::<Vec<_>>().join(", ")
                ),
                undo: "SELECT 1;".into(),
                // REFRESH PUBLICATION cannot run inside a transaction block.
                transactional: false,
                strong_lock: false,
                secret: None,
                read: None,
            },
        ),
    ]
}

/// The compatibility view of a kept table, made again over the kept columns only:
/// the view reads as its caller (`security_invoker`), and the caller may read only
/// the kept columns. A split's view over two kept tables is made again read-only
/// over what both keep, without the trigger that sent its writes to the parts
/// (its function goes with the old schema). Any other view reading the old tables
/// goes (`None`).
fn narrowed_view(catalog: &Catalog, view: &View, replicas: &[Replica]) -> Option<Vec<Step>> {
    let name = qualified(&view.name.schema, &view.name.name);
    let (narrowed, kept, done_check) = match compat_view_over(view, replicas) {
        Some((_, kept)) if kept.len() == view.columns.len() => return Some(Vec::new()),
        Some((replica, kept)) => (narrowed_view_sql(view, replica, &kept), kept, String::new()),
        None => {
            let (sql, _, shown) = joined_view_over(catalog, view, replicas)?;
            let no_trigger = format!(
                " AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = pg_catalog.to_regclass({}))",
                lit(&name)
            );
            (sql, shown, no_trigger)
        }
    };
    let rest = format!(
        "\nALTER VIEW {name} OWNER TO {};\n{}{}",
        ident(&view.owner),
        super::super::grant_sql(&name, &view.owner, &view.grants, &[]),
        view.comment
            .as_deref()
            .map(|c| format!("COMMENT ON VIEW {name} IS {};", lit(c)))
            .unwrap_or_default()
    );
    let narrowed = format!("{narrowed}{rest}");
    let mut original = format!("{}{rest}", create_view_sql(view));
    for trigger in &view.triggers {
        original.push_str(&format!(
            "\n{};",
            trigger.definition.trim().trim_end_matches(';')
        ));
    }
    Some(vec![Step::sql(
        format!("narrow view {} to the kept columns", view.name),
        format!(
            "compatibility view {} shows only the columns kept for its readers ({})",
            view.name,
            kept.join(", ")
        ),
        Target::Source,
        SqlAction::transactional(
            format!("DROP VIEW {name};\n{narrowed}"),
            format!(
                "(SELECT count(*) FROM pg_catalog.pg_attribute WHERE attrelid = pg_catalog.to_regclass({}) AND attnum > 0 AND NOT attisdropped) = {}{done_check}",
                lit(&name),
                kept.len()
            ),
            format!("DROP VIEW {name};\n{original}"),
        ),
    )])
}

/// A kept table made a read-only copy of its kept columns: its foreign keys into
/// the tables that go are dropped (`--drop` would otherwise refuse), the columns
/// not kept no longer required (the stream fills them with nothing), and each
/// reader's table-wide SELECT narrowed to the kept columns, so nobody reads a
/// column that is no longer kept current.
fn kept_table(table: &Table, replica: &Replica, all: &[Replica]) -> Vec<Step> {
    let name = qualified(&table.name.schema, &table.name.name);
    let mut steps = Vec::new();
    for (constraint, fk) in table.foreign_keys() {
        if constraint.inherited || all.iter().any(|r| r.table == fk.references) {
            continue;
        }
        steps.push(drop_reader_key(
            &table.name,
            constraint,
            format!(
                "{} of the kept table {} points into tables that go",
                constraint.name, table.name
            ),
        ));
    }
    // Every row now comes from the stream, which fills the kept columns: defaults
    // are never needed (and one drawing on a sequence that goes would keep
    // `--drop` from dropping it), and a column not kept must take nothing.
    for column in &table.columns {
        let kept = replica.columns.contains(&column.name);
        let default = column
            .default
            .as_deref()
            .filter(|_| column.identity.is_none() && column.generated.is_none());
        let not_null = column.not_null && !kept;
        if default.is_none() && !not_null {
            continue;
        }
        let c = ident(&column.name);
        let mut changes = Vec::new();
        let mut undo = Vec::new();
        let mut checks = Vec::new();
        let attribute = format!(
            "(SELECT a.{{}} FROM pg_catalog.pg_attribute a WHERE a.attrelid = pg_catalog.to_regclass({}) AND a.attname = {})",
            lit(&name),
            lit(&column.name)
        );
        if let Some(default) = default {
            changes.push(format!("ALTER COLUMN {c} DROP DEFAULT"));
            undo.push(format!("ALTER COLUMN {c} SET DEFAULT {default}"));
            checks.push(format!("NOT {}", attribute.replace("{}", "atthasdef")));
        }
        if not_null {
            changes.push(format!("ALTER COLUMN {c} DROP NOT NULL"));
            undo.push(format!("ALTER COLUMN {c} SET NOT NULL"));
            checks.push(format!("NOT {}", attribute.replace("{}", "attnotnull")));
        }
        steps.push(Step::sql(
            format!("make {}.{} a plain copy", table.name, column.name),
            format!(
                "column {} of the kept table {} takes only what the stream brings{}",
                display_ident(&column.name),
                table.name,
                if kept {
                    ""
                } else {
                    " (it is not kept: new rows leave it empty)"
                }
            ),
            Target::Source,
            SqlAction::transactional(
                format!("ALTER TABLE {name} {};", changes.join(", ")),
                checks.join(" AND "),
                format!("ALTER TABLE {name} {};", undo.join(", ")),
            ),
        ));
    }
    // Rows outside the decisions' filter no longer come: those already here go too,
    // so the copy never shows a row the stream stopped keeping current.
    if let Some(rows) = &replica.rows {
        let outside = format!("NOT coalesce(({rows}), false)");
        steps.push(Step::sql(
            format!("keep only the replicated rows of {}", table.name),
            format!(
                "the kept table {} holds only the rows where {rows}",
                table.name
            ),
            Target::Source,
            SqlAction::transactional(
                // Past the fence as the stream itself is (its trigger does not
                // fire in replica mode).
                format!(
                    "SET LOCAL session_replication_role = replica;\nDELETE FROM {name} WHERE {outside};"
                ),
                format!("NOT EXISTS (SELECT 1 FROM {name} WHERE {outside})"),
                // Retire is not undone step by step; the rows are in the domain's
                // server.
                "SELECT 1;".into(),
            ),
        ));
    }
    if replica.dropped_columns(table).is_empty() {
        return steps;
    }
    let columns = crate::sql::ident_list(&replica.columns);
    for grant in table
        .grants
        .iter()
        .filter(|g| g.privilege == "SELECT" && g.grantee != table.owner)
    {
        let who = super::super::grantee(&grant.grantee);
        let role_check = if grant.grantee == "PUBLIC" {
            "public".to_string()
        } else {
            grant.grantee.clone()
        };
        steps.push(Step::sql(
            format!("narrow {}'s read of {}", grant.grantee, table.name),
            format!(
                "{} may read only the kept columns of {}",
                display_ident(&grant.grantee),
                table.name
            ),
            Target::Source,
            SqlAction::transactional(
                format!(
                    "REVOKE SELECT ON {name} FROM {who};\nGRANT SELECT ({columns}) ON {name} TO {who};"
                ),
                format!(
                    "NOT has_table_privilege({}, pg_catalog.to_regclass({})::oid, 'SELECT')",
                    lit(&role_check),
                    lit(&name)
                ),
                format!(
                    "REVOKE SELECT ({columns}) ON {name} FROM {who};\nGRANT SELECT ON {name} TO {who};"
                ),
            ),
        ));
    }
    steps
}

/// The old schema renamed to `retired`, a new schema of the old name (its owner
/// and USAGE grants as before) made, and the kept tables (with their partitions,
/// indexes and owned sequences) moved back into it: one transaction, so the
/// stream's apply worker never finds a kept table missing.
fn rename_keeping(catalog: &Catalog, domain: &str, retired: &str, replicas: &[Replica]) -> Step {
    let schema = catalog.schemas.iter().find(|s| s.name == domain);
    let owner = schema.map(|s| s.owner.clone()).unwrap_or_default();
    let mut moved: Vec<&QualName> = Vec::new();
    for replica in replicas {
        moved.push(&replica.table);
        moved.extend(
            catalog
                .tables
                .iter()
                .filter(|t| {
                    t.partition_of.is_some() && catalog.partition_root(&t.name) == replica.table
                })
                .map(|t| &t.name),
        );
    }
    let mut sql = format!(
        "ALTER SCHEMA {} RENAME TO {};\nCREATE SCHEMA {}{};\n",
        ident(domain),
        ident(retired),
        ident(domain),
        if owner.is_empty() {
            String::new()
        } else {
            format!(" AUTHORIZATION {}", ident(&owner))
        }
    );
    if let Some(schema) = schema {
        sql.push_str(&super::super::grant_sql(
            &format!("SCHEMA {}", ident(domain)),
            &schema.owner,
            &schema.grants,
            &[],
        ));
    }
    let mut undo = String::new();
    for name in &moved {
        sql.push_str(&format!(
            "ALTER TABLE {} SET SCHEMA {};\n",
            qualified(retired, &name.name),
            ident(domain)
        ));
        undo.push_str(&format!(
            "ALTER TABLE {} SET SCHEMA {};\n",
            qualified(domain, &name.name),
            ident(retired)
        ));
    }
    undo.push_str(&format!(
        "DROP SCHEMA {};\nALTER SCHEMA {} RENAME TO {};",
        ident(domain),
        ident(retired),
        ident(domain)
    ));
    let kept: Vec<String> = replicas.iter().map(|r| r.table.to_string()).collect();
    Step::sql(
        format!(
            "rename schema {} to {} keeping {}",
            display_ident(domain),
            display_ident(retired),
            kept.join(", ")
        ),
        format!(
            "the old schema of {} on the source is put aside as {} (its fence kept), to be dropped later with `carve retire --drop`; the tables kept for readers stay where they are",
            display_ident(domain),
            display_ident(retired)
        ),
        Target::Source,
        SqlAction {
            sql: sql.trim_end().to_string(),
            done_check: format!(
                "EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = {}) AND {}",
                lit(retired),
                relation_exists(domain, &replicas[0].table.name, "'r', 'p'")
            ),
            undo,
            transactional: true,
            strong_lock: true,
            secret: None,
            read: None,
        },
    )
}

/// The retired schema dropped with everything in it: no undo brings it back.
pub fn drop_retired(retired: &str) -> Step {
    Step::sql(
        format!("drop schema {}", display_ident(retired)),
        format!(
            "schema {} and everything in it dropped from the source for good",
            display_ident(retired)
        ),
        Target::Source,
        SqlAction {
            sql: format!("DROP SCHEMA {} CASCADE;", ident(retired)),
            done_check: format!(
                "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = {})",
                lit(retired)
            ),
            undo: "DO $carve$ BEGIN RAISE EXCEPTION 'a dropped schema cannot be brought back by carve: restore it from a backup'; END $carve$;".into(),
            transactional: true,
            strong_lock: true,
            secret: None,
            read: None,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::testing::{catalog, table};
    use crate::catalog::{QualName, ViewDependency};
    use crate::phases::assign::COMPAT_VIEW_COMMENT;

    #[test]
    fn a_split_view_over_two_kept_tables_stays_read_only_without_its_trigger() {
        let keyed = |name: &str, columns: &[&str]| {
            let mut t = table("sales", name);
            t.columns = columns
                .iter()
                .map(|c| crate::catalog::testing::column(c, "text"))
                .collect();
            t.constraints = vec![crate::catalog::testing::primary_key(name, &["id"])];
            t
        };
        let mut c = catalog(vec![
            keyed("orders", &["id", "status", "note"]),
            keyed("orders_pay", &["id", "paid"]),
        ]);
        let mut joined = view(
            "public",
            "orders",
            &[("sales", "orders"), ("sales", "orders_pay")],
        );
        joined.comment = Some(format!("{COMPAT_VIEW_COMMENT}sales.orders"));
        joined.columns = ["id", "status", "note", "paid"]
            .iter()
            .map(|c| crate::catalog::testing::column(c, "text"))
            .collect();
        joined
            .triggers
            .push(crate::catalog::testing::instead_of_trigger(
                "carve_split_write",
                "public.orders",
                QualName::new("sales", "carve_split_1_write"),
            ));
        c.views = vec![joined];
        let kept = |table: &str, columns: &[&str]| Replica {
            table: QualName::new("sales", table),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            readers: vec!["billing".into()],
            every_column_because: None,
            rows: None,
        };
        let replicas = [
            kept("orders", &["id", "status"]),
            kept("orders_pay", &["id"]),
        ];
        let steps = super::steps(&c, "sales", &link(), "sales__retired_x", &replicas);
        let ids: Vec<&str> = steps.iter().map(|s| s.id.as_str()).collect();
        assert!(!ids.contains(&"drop view public.orders"), "{ids:?}");
        let narrowed = steps
            .iter()
            .find(|s| s.id == "narrow view public.orders to the kept columns")
            .and_then(|s| s.sql_action())
            .unwrap_or_else(|| panic!("{ids:?}"));
        assert!(
            narrowed.sql.starts_with(
                r#"DROP VIEW "public"."orders";
CREATE VIEW "public"."orders" AS SELECT a."id", a."status" FROM "sales"."orders" a JOIN "sales"."orders_pay" b ON a."id" = b."id";"#
            ),
            "{}",
            narrowed.sql
        );
        assert!(
            narrowed.done_check.contains("pg_trigger"),
            "{}",
            narrowed.done_check
        );
        assert!(
            narrowed
                .undo
                .ends_with("\nCREATE TRIGGER carve_split_write INSTEAD OF INSERT ON public.orders FOR EACH ROW EXECUTE FUNCTION sales.carve_split_1_write();"),
            "{}",
            narrowed.undo
        );
    }

    fn link() -> Link {
        Link {
            conninfo: "host=db2 dbname=shop".into(),
            password_file: "/tmp/p".into(),
            host: "db2".into(),
            port: 5432,
            database: "shop".into(),
        }
    }

    fn view(schema: &str, name: &str, reads: &[(&str, &str)]) -> View {
        View {
            name: QualName::new(schema, name),
            materialized: false,
            owner: "app".into(),
            definition: " SELECT 1;".into(),
            columns: vec![],
            options: vec![],
            depends_on: reads
                .iter()
                .map(|(s, n)| ViewDependency {
                    relation: QualName::new(s, n),
                    columns: vec![],
                })
                .collect(),
            triggers: vec![],
            comment: None,
            grants: vec![],
        }
    }

    #[test]
    fn a_retired_name_fits_in_63_bytes_on_a_character_boundary() {
        let time = "20261130t014800";
        assert_eq!(
            retired_name("sales", time),
            "sales__retired_20261130t014800"
        );
        let long = "é".repeat(40);
        let name = retired_name(&long, time);
        assert!(name.len() <= 63, "{}", name.len());
        assert!(name.ends_with("__retired_20261130t014800"));
    }

    #[test]
    fn views_reading_the_schema_go_before_the_views_they_read_and_the_rename_last() {
        let mut c = catalog(vec![table("sales", "orders"), table("public", "users")]);
        c.views = vec![
            view("public", "orders", &[("sales", "orders")]),
            view("reports", "daily", &[("public", "orders")]),
            view("public", "people", &[("public", "users")]),
            view("sales", "inner", &[("sales", "orders")]),
        ];
        let order: Vec<String> = readers_outside(&c, "sales")
            .iter()
            .map(|v| v.name.to_string())
            .collect();
        assert_eq!(order, ["reports.daily", "public.orders"]);
        let link = Link {
            conninfo: "host=db2 dbname=shop".into(),
            password_file: "/tmp/p".into(),
            host: "db2".into(),
            port: 5432,
            database: "shop".into(),
        };
        let steps = steps(&c, "sales", &link, "sales__retired_x", &[]);
        let ids: Vec<&str> = steps.iter().map(|s| s.id.as_str()).collect();
        assert!(ids[0].starts_with("retire: drop subscription"), "{ids:?}");
        assert_eq!(steps[0].target, Target::Source);
        assert!(
            ids.last().unwrap().starts_with("rename schema sales"),
            "{ids:?}"
        );
        let view_undo = &steps[ids
            .iter()
            .position(|i| *i == "drop view public.orders")
            .unwrap()];
        assert_eq!(
            view_undo.sql_action().unwrap().undo,
            "CREATE VIEW \"public\".\"orders\" AS SELECT 1;"
        );
    }

    #[test]
    fn a_kept_table_narrows_the_stream_its_view_and_its_readers_and_stays_in_place() {
        let mut orders = table("sales", "orders");
        orders.columns = vec![
            crate::catalog::testing::column("id", "bigint"),
            crate::catalog::Column {
                not_null: true,
                default: Some("nextval('sales.numbers'::regclass)".into()),
                ..crate::catalog::testing::column("number", "bigint")
            },
            crate::catalog::testing::column("status", "text"),
        ];
        orders.grants = vec![crate::catalog::testing::grant("billing", "SELECT")];
        let mut c = catalog(vec![orders, table("sales", "lines")]);
        let mut compat = view("public", "orders", &[("sales", "orders")]);
        compat.comment = Some(format!("{COMPAT_VIEW_COMMENT}sales.orders"));
        compat.columns = vec![
            crate::catalog::testing::column("id", "bigint"),
            crate::catalog::testing::column("number", "bigint"),
            crate::catalog::testing::column("status", "text"),
        ];
        c.views = vec![compat, view("reports", "daily", &[("sales", "lines")])];
        let kept = Replica {
            table: QualName::new("sales", "orders"),
            columns: vec!["id".into(), "status".into()],
            readers: vec!["billing".into()],
            every_column_because: None,
            rows: Some("id > 100".into()),
        };
        let steps = super::steps(&c, "sales", &link(), "sales__retired_x", &[kept]);
        let ids: Vec<&str> = steps.iter().map(|s| s.id.as_str()).collect();
        assert!(ids[0].starts_with("narrow publication"), "{ids:?}");
        assert_eq!(steps[0].target, Target::Domain("sales".into()));
        let narrowed = steps[0].sql_action().unwrap();
        assert!(
            narrowed
                .sql
                .ends_with(r#"SET TABLE "sales"."orders" ("id", "status") WHERE (id > 100);"#),
            "{}",
            narrowed.sql
        );
        assert!(ids[1].starts_with("follow only the kept tables"), "{ids:?}");
        assert!(!steps[1].sql_action().unwrap().transactional);
        assert!(
            !ids.iter()
                .any(|i| i.starts_with("retire: drop subscription")),
            "the stream back stays: {ids:?}"
        );
        // The SQL of the first step whose id starts so.
        let step_starting = |prefix: &str| {
            steps
                .iter()
                .find(|s| s.id.starts_with(prefix))
                .and_then(|s| s.sql_action())
                .unwrap_or_else(|| panic!("no step {prefix}: {ids:?}"))
        };
        let view = step_starting("narrow view public.orders");
        assert!(
            view.sql
                .contains(r#"AS SELECT "id", "status" FROM "sales"."orders";"#),
            "{}",
            view.sql
        );
        assert!(ids.contains(&"drop view reports.daily"), "{ids:?}");
        let number = step_starting("make sales.orders.number a plain copy");
        assert!(
            number
                .sql
                .contains("DROP DEFAULT, ALTER COLUMN \"number\" DROP NOT NULL"),
            "{}",
            number.sql
        );
        let reader = step_starting("narrow billing's read");
        assert!(
            reader
                .sql
                .contains(r#"GRANT SELECT ("id", "status") ON "sales"."orders" TO "billing";"#),
            "{}",
            reader.sql
        );
        // Rows outside the filter no longer come: those there go, past the fence.
        let trim = step_starting("keep only the replicated rows of sales.orders");
        assert_eq!(
            trim.sql,
            "SET LOCAL session_replication_role = replica;\nDELETE FROM \"sales\".\"orders\" WHERE NOT coalesce((id > 100), false);"
        );
        let rename = steps.last().unwrap().sql_action().unwrap();
        assert!(
            rename
                .sql
                .contains(r#"ALTER TABLE "sales__retired_x"."orders" SET SCHEMA "sales";"#)
                && !rename.sql.contains("\"lines\""),
            "{}",
            rename.sql
        );
    }
}
