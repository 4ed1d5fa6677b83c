//! Column replication for readers that stay behind: a `replicate` decision
//! (`read orders.orders by shipping`) lets a service of another domain read the
//! moved domain's table. Until retire it reads the source's old table, which the
//! stream back keeps current; retire keeps, for each such table, a read-only copy
//! of the columns its readers' statements name, fed by that same stream narrowed
//! to a column list (no gap, no second copy). Pure: which tables, which columns,
//! and which readers; `retire::steps` lays out the steps.

use std::collections::BTreeSet;

use crate::analysis::access::{named_columns, RawName};
use crate::analysis::usage::{default_search_path, Relation, Resolver};
use crate::catalog::{Catalog, QualName, ReplicaIdentity, Table};
use crate::plan::{Plan, Side};
use crate::workload::Workload;

/// The choice that asks for a replicated read.
pub const CHOICE: &str = "replicate";

/// One table of the retired domain kept on the source for the services that read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    pub table: QualName,
    /// The columns kept, in the table's order: those the readers' statements name,
    /// plus the replica identity (logical replication needs it for UPDATE/DELETE).
    pub columns: Vec<String>,
    /// The services whose `replicate` decisions ask for it.
    pub readers: Vec<String>,
    /// Why every column is kept, when it is (for the report).
    pub every_column_because: Option<String>,
}

impl Replica {
    /// The table's columns that are not kept.
    pub fn dropped_columns<'t>(&self, table: &'t Table) -> Vec<&'t crate::catalog::Column> {
        table
            .columns
            .iter()
            .filter(|c| !self.columns.contains(&c.name))
            .collect()
    }
}

/// The `replicate` decisions on `domain`'s tables by services that keep running on
/// the source (their home domain is not cut over to its own server), and what each
/// such table keeps. Readers that already run elsewhere are left out: a copy on the
/// source does not reach them. `workload` is the plan's recorded workload; without
/// it every column is kept.
pub fn replicas(
    plan: &Plan,
    catalog: &Catalog,
    workload: Option<&Workload>,
    domain: &str,
) -> Vec<Replica> {
    let mut out: Vec<Replica> = Vec::new();
    for decision in plan.decisions.iter().filter(|d| d.choice == CHOICE) {
        let Some((table, service)) = decision
            .subject
            .strip_prefix("read ")
            .and_then(|s| s.rsplit_once(" by "))
        else {
            continue;
        };
        // restrict names the table as the reader's SQL does: after assign, often
        // the compatibility view in the table's old place.
        let through_view = catalog.views.iter().find(|v| v.name.to_string() == table);
        let Some(table) = catalog.tables.iter().find(|t| {
            t.name.schema == domain
                && (t.name.to_string() == table
                    || through_view.is_some_and(|v| view_reads(catalog, &v.name, &t.name, 0)))
        }) else {
            continue;
        };
        if runs_on_own_server(plan, service) {
            continue;
        }
        match out.iter_mut().find(|r| r.table == table.name) {
            Some(r) => r.readers.push(service.to_string()),
            None => out.push(Replica {
                table: table.name.clone(),
                columns: Vec::new(),
                readers: vec![service.to_string()],
                every_column_because: None,
            }),
        }
    }
    for replica in &mut out {
        let table = catalog.table(&replica.table).expect("found above");
        let (named, every) = match workload {
            None => (
                BTreeSet::new(),
                Some("no workload is recorded in the plan".to_string()),
            ),
            Some(w) => read_columns(catalog, w, &replica.readers, table),
        };
        let identity = identity_columns(table);
        let every = every.or_else(|| {
            (table.replica_identity == ReplicaIdentity::Full).then(|| {
                "its replica identity is FULL: a column list cannot leave a column out".to_string()
            })
        });
        replica.columns = table
            .columns
            .iter()
            // Generated columns are never replicated: the copy computes its own.
            .filter(|c| c.generated.is_none())
            .filter(|c| every.is_some() || named.contains(&c.name) || identity.contains(&c.name))
            .map(|c| c.name.clone())
            .collect();
        replica.every_column_because = every;
    }
    out
}

/// Whether a service's home domain, as the plan names it, runs on its own server.
fn runs_on_own_server(plan: &Plan, service: &str) -> bool {
    let home = plan
        .services
        .iter()
        .find(|s| s.name == service)
        .and_then(|s| s.domain.as_deref());
    plan.domains
        .iter()
        .filter(|d| Some(d.name.as_str()) == home)
        .any(|d| {
            d.cutover
                .as_ref()
                .is_some_and(|c| c.settled_on(Side::Server))
        })
}

/// The columns of `table` that the readers' statements name, or why every column
/// is kept (a statement selects `*`, or cannot be read).
fn read_columns(
    catalog: &Catalog,
    workload: &Workload,
    readers: &[String],
    table: &Table,
) -> (BTreeSet<String>, Option<String>) {
    let resolver = Resolver::new(catalog, default_search_path());
    let mut named = BTreeSet::new();
    for statement in workload
        .statements
        .iter()
        .filter(|s| readers.contains(&s.service))
    {
        let Ok(parsed) = sqlparser::parser::Parser::parse_sql(
            &sqlparser::dialect::PostgreSqlDialect {},
            &statement.sql,
        ) else {
            return (
                named,
                Some(format!("{} cannot be parsed", statement.origin)),
            );
        };
        for one in &parsed {
            let access = crate::analysis::access::statement_access(one);
            if !access
                .reads
                .iter()
                .any(|name| reads_table(catalog, &resolver, name, &table.name))
            {
                continue;
            }
            let names = named_columns(one);
            if names.every {
                return (
                    named,
                    Some(format!("{} selects every column", statement.origin)),
                );
            }
            named.extend(names.names);
        }
    }
    (named, None)
}

/// Whether a name a statement reads is the table, or a view over it (through views
/// over views).
fn reads_table(catalog: &Catalog, resolver: &Resolver, name: &RawName, table: &QualName) -> bool {
    match resolver.relation(name) {
        Some(Relation::Table(t)) => catalog.partition_root(&t) == *table,
        Some(Relation::View(v)) => view_reads(catalog, &v, table, 0),
        None => false,
    }
}

fn view_reads(catalog: &Catalog, view: &QualName, table: &QualName, depth: usize) -> bool {
    depth < 16
        && catalog.view(view).is_some_and(|v| {
            v.depends_on
                .iter()
                .any(|d| d.relation == *table || view_reads(catalog, &d.relation, table, depth + 1))
        })
}

/// The columns logical replication identifies a row by: the primary key, or the
/// replica identity index.
fn identity_columns(table: &Table) -> BTreeSet<String> {
    match &table.replica_identity {
        ReplicaIdentity::Index(index) => table
            .indexes
            .iter()
            .find(|i| &i.name == index)
            .map(|i| i.columns.iter().cloned().collect())
            .unwrap_or_default(),
        _ => table
            .primary_key()
            .map(|k| k.columns.iter().cloned().collect())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::testing::{catalog, column, table};
    use crate::catalog::{Constraint, ConstraintKind, View, ViewDependency};
    use crate::plan::testing::plan_for;
    use crate::plan::{Cutover, Decision, Service};

    /// sales.orders (id key, status, total, note generated) with a compatibility
    /// view public.orders over it; billing reads it by the view's name.
    fn shop() -> (Catalog, Plan) {
        let mut orders = table("sales", "orders");
        orders.columns = vec![
            column("id", "bigint"),
            column("status", "text"),
            column("total", "numeric"),
            crate::catalog::Column {
                generated: Some("upper(status)".into()),
                ..column("shout", "text")
            },
        ];
        orders.constraints = vec![Constraint {
            name: "orders_pkey".into(),
            kind: ConstraintKind::PrimaryKey,
            columns: vec!["id".into()],
            definition: "PRIMARY KEY (id)".into(),
            deferrable: false,
            initially_deferred: false,
            inherited: false,
            foreign_key: None,
        }];
        let mut c = catalog(vec![orders, table("billing", "invoices")]);
        c.views = vec![View {
            name: QualName::new("public", "orders"),
            materialized: false,
            owner: "app".into(),
            definition: " SELECT * FROM sales.orders;".into(),
            columns: vec![],
            options: vec![],
            depends_on: vec![ViewDependency {
                relation: QualName::new("sales", "orders"),
                columns: vec![],
            }],
            triggers: vec![],
            comment: None,
            grants: vec![],
        }];
        c.normalize();
        let mut plan = plan_for(
            &c,
            &[
                ("sales", &["sales.orders"]),
                ("billing", &["billing.invoices"]),
            ],
        );
        plan.decisions.push(Decision {
            subject: "read public.orders by billing".into(),
            choice: CHOICE.into(),
            reason: String::new(),
        });
        (c, plan)
    }

    fn workload(statements: &[(&str, &str)]) -> Workload {
        let mut w = Workload::default();
        for (i, (service, sql)) in statements.iter().enumerate() {
            w.add(
                &format!("s{i}"),
                service,
                sql.to_string(),
                format!("f:{i}"),
                1,
            );
        }
        w
    }

    #[test]
    fn the_columns_the_readers_name_and_the_key_are_kept() {
        let (c, plan) = shop();
        let w = workload(&[
            ("billing", "SELECT status FROM orders WHERE id = $1"),
            ("sales", "SELECT total FROM sales.orders"),
        ]);
        let kept = replicas(&plan, &c, Some(&w), "sales");
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].table, QualName::new("sales", "orders"));
        assert_eq!(kept[0].readers, ["billing"]);
        // total is read only by the owner's own service; the generated column is
        // never replicated.
        assert_eq!(kept[0].columns, ["id", "status"]);
        assert_eq!(kept[0].every_column_because, None);
    }

    #[test]
    fn a_star_or_no_workload_keeps_every_replicable_column_and_says_why() {
        let (c, plan) = shop();
        let w = workload(&[("billing", "SELECT * FROM orders")]);
        let kept = replicas(&plan, &c, Some(&w), "sales");
        assert_eq!(kept[0].columns, ["id", "status", "total"]);
        assert!(kept[0]
            .every_column_because
            .as_deref()
            .is_some_and(|w| w.contains("selects every column")));
        let kept = replicas(&plan, &c, None, "sales");
        assert_eq!(kept[0].columns, ["id", "status", "total"]);
    }

    #[test]
    fn readers_already_on_their_own_server_and_other_choices_get_nothing() {
        let (c, mut plan) = shop();
        assert!(replicas(&plan, &c, None, "billing").is_empty());
        plan.services.push(Service {
            name: "billing".into(),
            domain: Some("billing".into()),
            ..Service::default()
        });
        let billing = plan
            .domains
            .iter_mut()
            .find(|d| d.name == "billing")
            .unwrap();
        billing.cutover = Some(Cutover {
            live: Side::Server,
            since: "2026-11-30T00:00:00Z".into(),
            pause_ms: None,
            switching: None,
            retired: None,
            files: None,
        });
        assert!(replicas(&plan, &c, None, "sales").is_empty());
        plan.decisions[0].choice = "api".into();
        plan.services.clear();
        assert!(replicas(&plan, &c, None, "sales").is_empty());
    }
}
