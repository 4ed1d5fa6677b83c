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

use super::super::lit;
use crate::catalog::{Catalog, View};
use crate::engine::{undo_steps, SqlAction, Step, Target};
use crate::phases::move_domain::replication::{Link, Stream};
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
    let options = if view.options.is_empty() {
        String::new()
    } else {
        format!(" WITH ({})", view.options.join(", "))
    };
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

/// Foreign keys of tables outside the domain's schema into its tables.
fn foreign_keys_in(catalog: &Catalog, domain: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    for table in catalog.tables.iter().filter(|t| t.name.schema != domain) {
        for (constraint, fk) in table.foreign_keys() {
            if fk.references.schema != domain || constraint.inherited {
                continue;
            }
            let name = qualified(&table.name.schema, &table.name.name);
            steps.push(Step::sql(
                format!("drop foreign key {} of {}", constraint.name, table.name),
                format!(
                    "{} of {} points into the retired tables: after retire nothing updates them",
                    constraint.name, table.name
                ),
                Target::Source,
                SqlAction {
                    sql: format!(
                        "ALTER TABLE {name} DROP CONSTRAINT {};",
                        ident(&constraint.name)
                    ),
                    done_check: format!(
                        "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint WHERE conrelid = pg_catalog.to_regclass({}) AND conname = {})",
                        lit(&name),
                        lit(&constraint.name)
                    ),
                    undo: super::crossings::add_not_valid(&name, &constraint.name, &constraint.definition),
                    transactional: true,
                    strong_lock: true,
                    secret: None,
                    read: None,
                },
            ));
        }
    }
    steps
}

/// Every step of retiring `domain`'s old schema, renamed to `retired`.
pub fn steps(catalog: &Catalog, domain: &str, to_server: &Link, retired: &str) -> Vec<Step> {
    let back = Stream::back(domain, to_server);
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
        let steps = steps(&c, "sales", &link, "sales__retired_x");
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
}
