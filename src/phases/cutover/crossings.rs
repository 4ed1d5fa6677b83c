//! What on the source ties the domain's tables to the other domains' and cannot hold
//! once its clients write on its own server: foreign keys crossing the boundary
//! either way (they would check rows against a copy the stream back fills a moment
//! later), and triggers on other domains' tables whose functions write into the
//! domain (they would hit the fence). Assign listed them as decisions and the move
//! refused `keep-until-move`; a cut-over drops them on the source, with their
//! definitions as undo, and a rollback makes them again (foreign keys `NOT VALID`:
//! new rows are checked at once, without a scan of the old ones while writes wait).
//! Views across domains only read, and stay until retire.

use super::super::lit;
use crate::analysis::usage::Resolver;
use crate::catalog::{Catalog, Constraint, QualName};
use crate::engine::{SqlAction, Step, Target};
use crate::sql::{display_ident, ident, qualified};

/// The foreign keys crossing the domain's boundary either way: (table, constraint).
pub fn crossing_foreign_keys(catalog: &Catalog, domain: &str) -> Vec<(QualName, String)> {
    catalog
        .tables
        .iter()
        .filter(|t| t.partition_of.is_none())
        .flat_map(|table| {
            table
                .foreign_keys()
                .filter(|(_, fk)| (table.name.schema == domain) != (fk.references.schema == domain))
                .map(|(c, _)| (table.name.clone(), c.name.clone()))
        })
        .collect()
}

/// The triggers on other domains' tables whose functions write into the domain:
/// (table, trigger). Not those that make a split's parts' rows on the table: they
/// make them only where the part is not fenced (`move_domain::split_across`).
pub fn crossing_triggers(catalog: &Catalog, domain: &str) -> Vec<(QualName, String)> {
    use crate::phases::move_domain::split_across::{FOLLOW_TRIGGER, ROW_TRIGGER};
    let mut resolver = Resolver::new(catalog, crate::analysis::usage::default_search_path());
    let mut found = Vec::new();
    for table in catalog.tables.iter().filter(|t| t.name.schema != domain) {
        for trigger in &table.triggers {
            if [ROW_TRIGGER, FOLLOW_TRIGGER].contains(&trigger.name.as_str()) {
                continue;
            }
            let effect = resolver.function_touches(&trigger.function);
            if effect.writes.keys().any(|t| t.schema == domain) {
                found.push((table.name.clone(), trigger.name.clone()));
            }
        }
    }
    found
}

/// A foreign key of `table` dropped on the source, undone by making it again
/// (`NOT VALID`, then validated).
pub fn drop_foreign_key(
    table: &QualName,
    constraint: &Constraint,
    id: String,
    description: String,
) -> Step {
    let name = qualified(&table.schema, &table.name);
    Step::sql(
        id,
        description,
        Target::Source,
        SqlAction {
            sql: format!("ALTER TABLE {name} DROP CONSTRAINT {};", ident(&constraint.name)),
            done_check: format!(
                "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint WHERE conrelid = pg_catalog.to_regclass({}) AND conname = {})",
                lit(&name),
                lit(&constraint.name)
            ),
            undo: add_not_valid(&name, &constraint.name, &constraint.definition),
            transactional: true,
            strong_lock: true,
            secret: None,
            read: None,
        },
    )
}

/// The steps that drop them on the source, each undone by making it again.
pub fn drops(catalog: &Catalog, domain: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    for (table_name, constraint_name) in crossing_foreign_keys(catalog, domain) {
        let table = catalog.table(&table_name).expect("listed from the catalog");
        for (constraint, fk) in table
            .foreign_keys()
            .filter(|(c, _)| c.name == constraint_name)
        {
            steps.push(drop_foreign_key(
                &table.name,
                constraint,
                format!("drop crossing foreign key {} of {}", constraint.name, table.name),
                format!(
                    "{} of {} references {} across the domain's boundary: it cannot hold across two servers",
                    display_ident(&constraint.name),
                    table.name,
                    fk.references
                ),
            ));
        }
    }
    for (table_name, trigger_name) in crossing_triggers(catalog, domain) {
        let table = catalog.table(&table_name).expect("listed from the catalog");
        let name = qualified(&table.name.schema, &table.name.name);
        for trigger in table.triggers.iter().filter(|t| t.name == trigger_name) {
            steps.push(Step::sql(
                format!("drop crossing trigger {} on {}", trigger.name, table.name),
                format!(
                    "trigger {} on {} writes into the domain's tables through {}: on the source they are fenced",
                    display_ident(&trigger.name),
                    table.name,
                    trigger.function
                ),
                Target::Source,
                SqlAction {
                    sql: format!("DROP TRIGGER {} ON {name};", ident(&trigger.name)),
                    done_check: format!(
                        "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = pg_catalog.to_regclass({}) AND tgname = {})",
                        lit(&name),
                        lit(&trigger.name)
                    ),
                    undo: format!("{};", trigger.definition.trim().trim_end_matches(';')),
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

/// `ALTER TABLE … ADD CONSTRAINT … NOT VALID` for a foreign key's definition (which
/// says `NOT VALID` itself when it was made so).
pub fn add_not_valid(table: &str, constraint: &str, definition: &str) -> String {
    let definition = definition.trim();
    let definition = definition.strip_suffix(" NOT VALID").unwrap_or(definition);
    format!(
        "ALTER TABLE {table} ADD CONSTRAINT {} {definition} NOT VALID;",
        ident(constraint)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::testing::{catalog, table};
    use crate::catalog::{Constraint, ConstraintKind, FkAction, ForeignKey, QualName};

    fn fk(name: &str, to: (&str, &str)) -> Constraint {
        Constraint {
            name: name.into(),
            kind: ConstraintKind::ForeignKey,
            columns: vec!["total".into()],
            definition: format!("FOREIGN KEY (total) REFERENCES {}.{}(id)", to.0, to.1),
            deferrable: false,
            initially_deferred: false,
            inherited: false,
            foreign_key: Some(ForeignKey {
                references: QualName::new(to.0, to.1),
                referenced_columns: vec!["id".into()],
                on_update: FkAction::NoAction,
                on_delete: FkAction::NoAction,
                match_full: false,
            }),
        }
    }

    #[test]
    fn foreign_keys_crossing_either_way_go_and_come_back_not_valid() {
        let mut orders = table("sales", "orders");
        orders
            .constraints
            .push(fk("orders_customer_fkey", ("people", "customers")));
        orders
            .constraints
            .push(fk("orders_self_fkey", ("sales", "orders")));
        let mut shipments = table("shipping", "shipments");
        shipments
            .constraints
            .push(fk("shipments_order_fkey", ("sales", "orders")));
        let mut unrelated = table("shipping", "parcels");
        unrelated
            .constraints
            .push(fk("parcels_shipment_fkey", ("shipping", "shipments")));
        let c = catalog(vec![
            orders,
            shipments,
            unrelated,
            table("people", "customers"),
        ]);
        let steps = drops(&c, "sales");
        let ids: Vec<&str> = steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "drop crossing foreign key orders_customer_fkey of sales.orders",
                "drop crossing foreign key shipments_order_fkey of shipping.shipments"
            ]
        );
        let undo = &steps[0].sql_action().unwrap().undo;
        assert!(
            undo.ends_with("REFERENCES people.customers(id) NOT VALID;"),
            "{undo}"
        );
        assert!(steps.iter().all(|s| s.target == Target::Source));
        assert_eq!(
            add_not_valid("t", "k", "FOREIGN KEY (a) REFERENCES u(id) NOT VALID"),
            "ALTER TABLE t ADD CONSTRAINT \"k\" FOREIGN KEY (a) REFERENCES u(id) NOT VALID;"
        );
    }
}
