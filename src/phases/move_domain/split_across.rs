//! A split table whose parts are in other domains, moving with its table's domain
//! (the table's side). The shop's orders is the case: the orders domain holds the
//! table, payments' domain its part. The part stays on the source with its
//! domain's services; the table goes, and with it the writes that make its rows.
//!
//! - On the domain's server the old name is a view over the table alone, with the
//!   columns the table keeps: the table's writers write through it as before (an
//!   owner's-rights, automatically updatable view, granted as on the source). The
//!   split's row trigger stays behind: it writes the part, which is not there.
//! - On the source, a trigger that fires for replicated rows too (`ENABLE ALWAYS`)
//!   keeps every part whole once the table's rows arrive from the domain's server
//!   after cut-over: a part's row for each new row, gone with its row. The split's
//!   own row trigger and its cascading key do not fire for a replicated change.
//!
//! Moving a part without its table is not done yet: the preflight refuses it.

use std::collections::BTreeSet;

use super::super::lit;
use crate::catalog::{Catalog, QualName, Table, View};
use crate::engine::{SqlAction, Step, Target};
use crate::phases::assign::is_compat_view;
use crate::phases::cutover::replica::identity_columns;
use crate::sql::{dollar_quoted, ident, ident_list, qualified};

/// The trigger a split leaves on its table: it makes each part's row as a row
/// goes in (`phases::split`).
pub const ROW_TRIGGER: &str = "carve_split_row";

/// The trigger the move adds on the source (see the module doc).
pub const FOLLOW_TRIGGER: &str = "carve_move_follow";

/// A split whose table is in the moving domain and whose parts are all elsewhere.
#[derive(Debug, Clone)]
pub struct SplitAcross<'c> {
    /// The old name: assign's view over the table and its parts.
    pub view: &'c View,
    pub table: &'c Table,
    pub parts: Vec<&'c QualName>,
}

/// Every split whose table `domain` holds and whose parts are all in other domains.
pub fn table_side<'c>(catalog: &'c Catalog, domain: &str) -> Vec<SplitAcross<'c>> {
    catalog
        .views
        .iter()
        .filter(|v| !v.materialized && v.depends_on.len() >= 2 && is_compat_view(v))
        .filter_map(|view| {
            // The table is the relation beneath that carries the split's row trigger.
            let table = view
                .depends_on
                .iter()
                .filter_map(|d| catalog.table(&d.relation))
                .find(|t| t.triggers.iter().any(|t| t.name == ROW_TRIGGER))?;
            let parts: Vec<&QualName> = view
                .depends_on
                .iter()
                .map(|d| &d.relation)
                .filter(|r| **r != table.name)
                .collect();
            let elsewhere = parts.iter().all(|p| p.schema != domain);
            (table.name.schema == domain && elsewhere).then_some(SplitAcross { view, table, parts })
        })
        .collect()
}

/// The tables of `domain` whose split's row trigger stays on the source.
pub fn tables_leaving_parts(catalog: &Catalog, domain: &str) -> BTreeSet<QualName> {
    table_side(catalog, domain)
        .into_iter()
        .map(|s| s.table.name.clone())
        .collect()
}

impl SplitAcross<'_> {
    /// The old name on the domain's server: the view with the table's columns
    /// only, their defaults, grants and comment, reading the table as its owner
    /// (the writers hold privileges on the view, as the split's trigger wrote the
    /// table for them), without the trigger that wrote the parts.
    pub fn view_on_target(&self) -> View {
        let mut view = self.view.clone();
        let kept = |name: &str| self.table.columns.iter().any(|c| c.name == name);
        view.columns.retain(|c| kept(&c.name));
        view.options.retain(|o| !o.starts_with("security_invoker"));
        view.definition = format!(
            "SELECT {} FROM {}",
            ident_list(view.columns.iter().map(|c| &c.name)),
            qualified(&self.table.name.schema, &self.table.name.name)
        );
        view.depends_on.retain(|d| d.relation == self.table.name);
        view.triggers.clear();
        view
    }

    /// The function of the follow trigger, beside the split's own (in the first
    /// part's schema).
    fn follow_function(&self) -> Option<QualName> {
        let row = self.table.triggers.iter().find(|t| t.name == ROW_TRIGGER)?;
        let base = row.function.name.strip_suffix("_row")?;
        Some(QualName::new(
            &row.function.schema,
            &format!("{base}_follow"),
        ))
    }

    /// What the move changes on the source, for the fingerprint gate.
    pub fn touches(&self) -> Vec<String> {
        let mut out = vec![self.table.name.to_string()];
        out.extend(self.follow_function().map(|f| f.to_string()));
        out
    }

    /// On the source: the trigger that keeps each part whole as the table's rows
    /// arrive from the domain's server (see the module doc), with its undo.
    pub fn follow_step(&self, catalog: &Catalog) -> Option<Step> {
        let function = self.follow_function()?;
        let owner = catalog
            .functions
            .iter()
            .find(|f| {
                self.table
                    .triggers
                    .iter()
                    .any(|t| t.name == ROW_TRIGGER && t.function == f.name)
            })
            .map_or(self.table.owner.as_str(), |f| f.owner.as_str());
        let key: Vec<String> = identity_columns(self.table).into_iter().collect();
        if key.is_empty() {
            return None;
        }
        let keys = ident_list(&key);
        let of = |prefix: &str| {
            key.iter()
                .map(|k| format!("{prefix}{}", ident(k)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (mut inserts, mut deletes) = (String::new(), String::new());
        for part in &self.parts {
            let name = qualified(&part.schema, &part.name);
            inserts.push_str(&format!(
                "INSERT INTO {name} ({keys}) VALUES ({}) ON CONFLICT ({keys}) DO NOTHING; ",
                of("NEW.")
            ));
            deletes.push_str(&format!(
                "DELETE FROM {name} WHERE ({keys}) = ({}); ",
                of("OLD.")
            ));
        }
        let body = format!(
            "BEGIN IF TG_OP = 'INSERT' THEN {inserts}ELSE {deletes}END IF; RETURN NULL; END"
        );
        let f = qualified(&function.schema, &function.name);
        let table = qualified(&self.table.name.schema, &self.table.name.name);
        let trigger = ident(FOLLOW_TRIGGER);
        let parts = &self.parts;
        Some(Step::sql(
            format!("keep {} whole as {} arrives", crate::text::and_list(parts), self.table.name),
            format!(
                "on the source, {} gets a row for each row of {} and loses it with the row, also for the rows that arrive from the domain's server after cut-over (ENABLE ALWAYS: the split's trigger and cascading key do not fire for replicated rows)",
                crate::text::and_list(parts),
                self.table.name
            ),
            Target::Source,
            SqlAction::transactional(
                format!(
                    "CREATE FUNCTION {f}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS {};\nALTER FUNCTION {f}() OWNER TO {};\nCREATE TRIGGER {trigger} AFTER INSERT OR DELETE ON {table} FOR EACH ROW EXECUTE FUNCTION {f}();\nALTER TABLE {table} ENABLE ALWAYS TRIGGER {trigger};\n",
                    dollar_quoted(&body),
                    ident(owner)
                ),
                format!(
                    "EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = pg_catalog.to_regclass({}) AND tgname = {} AND tgenabled = 'A')",
                    lit(&table),
                    lit(FOLLOW_TRIGGER)
                ),
                format!("DROP TRIGGER {trigger} ON {table};\nDROP FUNCTION {f}();"),
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::testing::{catalog, column, split_row_trigger, table};
    use crate::catalog::{Constraint, ConstraintKind, Grant, ViewDependency};

    fn grant(grantee: &str, privilege: &str) -> Grant {
        Grant {
            grantee: grantee.into(),
            privilege: privilege.into(),
            grantable: false,
            grantor: "app".into(),
        }
    }

    /// sales.orders (id, total) split with its part people.orders_pay (id, paid)
    /// behind public.orders, as split leaves it: an invoker view over both with a
    /// default and column grants on each side, the row trigger on the table.
    fn split_across() -> Catalog {
        let keyed = |schema: &str, name: &str, other: &str| {
            let mut t = table(schema, name);
            t.columns = vec![column("id", "bigint"), column(other, "integer")];
            t.constraints.push(Constraint {
                name: format!("{name}_pkey"),
                kind: ConstraintKind::PrimaryKey,
                definition: "PRIMARY KEY (id)".into(),
                columns: vec!["id".into()],
                foreign_key: None,
                inherited: false,
                deferrable: false,
                initially_deferred: false,
            });
            t
        };
        let mut orders = keyed("sales", "orders", "total");
        orders.triggers.push(split_row_trigger(
            "sales.orders",
            QualName::new("people", "carve_split_1a2b_row"),
        ));
        let mut total = column("total", "integer");
        total.default = Some("0".into());
        total.grants = vec![grant("shop", "INSERT")];
        let mut paid = column("paid", "integer");
        paid.grants = vec![grant("payments", "UPDATE")];
        let view = View {
            name: QualName::new("public", "orders"),
            materialized: false,
            owner: "app".into(),
            definition: " SELECT t.id, t.total, p.paid FROM sales.orders t JOIN people.orders_pay p ON p.id = t.id;".into(),
            columns: vec![column("id", "bigint"), total, paid],
            options: vec!["security_invoker=true".into()],
            depends_on: [("people", "orders_pay"), ("sales", "orders")]
                .iter()
                .map(|(s, n)| ViewDependency {
                    relation: QualName::new(s, n),
                    columns: Vec::new(),
                })
                .collect(),
            triggers: vec![crate::catalog::testing::instead_of_trigger(
                "carve_split_write",
                "public.orders",
                QualName::new("people", "carve_split_1a2b_write"),
            )],
            comment: Some(format!(
                "{}sales.orders",
                crate::phases::assign::COMPAT_VIEW_COMMENT
            )),
            grants: vec![grant("shop", "SELECT"), grant("payments", "SELECT")],
        };
        let mut c = catalog(vec![orders, keyed("people", "orders_pay", "paid")]);
        c.views = vec![view];
        for role in ["app", "shop", "payments"] {
            c.roles.push(crate::catalog::Role {
                login: role != "app",
                ..crate::catalog::testing::role(role, false)
            });
        }
        c.normalize();
        c
    }

    #[test]
    fn the_tables_domain_takes_a_view_over_the_table_alone_and_leaves_the_row_trigger() {
        let c = split_across();
        assert!(table_side(&c, "people").is_empty(), "the part's side");
        let found = table_side(&c, "sales");
        let [split] = found.as_slice() else {
            panic!("{found:#?}")
        };
        assert_eq!(split.parts, [&QualName::new("people", "orders_pay")]);

        let view = split.view_on_target();
        let names: Vec<&str> = view.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["id", "total"]);
        assert!(
            view.options.is_empty(),
            "owner's rights: {:?}",
            view.options
        );
        assert!(view.triggers.is_empty());

        let schema = super::super::schema::target_schema(&c, "sales");
        let ids: Vec<&str> = schema.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "create schema sales",
                "create table sales.orders",
                "create view public.orders"
            ],
            "no row trigger, no function of the part's schema"
        );
        assert_eq!(
            schema.steps[2].sql_action().unwrap().sql,
            "CREATE VIEW \"public\".\"orders\" AS SELECT \"id\", \"total\" FROM \"sales\".\"orders\";\nALTER VIEW \"public\".\"orders\" ALTER COLUMN \"total\" SET DEFAULT 0;\nCOMMENT ON VIEW \"public\".\"orders\" IS 'carve: compatibility view for sales.orders';\n"
        );
        // Granted as on the source, but for the part's columns.
        let privileges = super::super::objects::privilege_steps(&c, "sales");
        let sql = &privileges
            .iter()
            .find(|s| s.id == "owner and grants of public.orders")
            .expect("the view's owner and grants")
            .sql_action()
            .unwrap()
            .sql;
        assert!(
            sql.contains("GRANT INSERT (\"total\") ON TABLE \"public\".\"orders\" TO \"shop\"")
                && sql.contains("GRANT SELECT ON TABLE \"public\".\"orders\" TO \"payments\"")
                && !sql.contains("\"paid\""),
            "{sql}"
        );
    }

    #[test]
    fn the_source_keeps_the_part_whole_for_replicated_rows_and_undoes_it() {
        let c = split_across();
        let split = &table_side(&c, "sales")[0];
        assert_eq!(
            split.touches(),
            ["sales.orders", "people.carve_split_1a2b_follow"]
        );
        let step = split.follow_step(&c).unwrap();
        assert_eq!(step.target, Target::Source);
        let action = step.sql_action().unwrap();
        for part in [
            "INSERT INTO \"people\".\"orders_pay\" (\"id\") VALUES (NEW.\"id\") ON CONFLICT (\"id\") DO NOTHING;",
            "DELETE FROM \"people\".\"orders_pay\" WHERE (\"id\") = (OLD.\"id\");",
            "SECURITY DEFINER SET search_path = pg_catalog, pg_temp",
            "ALTER FUNCTION \"people\".\"carve_split_1a2b_follow\"() OWNER TO \"app\";",
            "AFTER INSERT OR DELETE ON \"sales\".\"orders\"",
            "ALTER TABLE \"sales\".\"orders\" ENABLE ALWAYS TRIGGER \"carve_move_follow\";",
        ] {
            assert!(action.sql.contains(part), "{part}: {}", action.sql);
        }
        assert!(action.done_check.contains("tgenabled = 'A'"));
        assert_eq!(
            action.undo,
            "DROP TRIGGER \"carve_move_follow\" ON \"sales\".\"orders\";\nDROP FUNCTION \"people\".\"carve_split_1a2b_follow\"();"
        );
    }
}
