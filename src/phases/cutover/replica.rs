//! Column replication for readers that stay behind: a `replicate` decision
//! (`read orders.orders by shipping`) lets a service of another domain read the
//! moved domain's table. Until retire it reads the source's old table, which the
//! stream back keeps current; retire keeps, for each such table, a read-only copy
//! of the columns its readers' statements name, fed by that same stream narrowed
//! to a column list (no gap, no second copy). Pure: which tables, which columns,
//! and which readers; `retire::steps` lays out the steps.

use std::collections::BTreeSet;

use crate::analysis::access::{fold, named_columns, RawName};
use crate::analysis::usage::{default_search_path, Relation, Resolver};
use crate::catalog::{Catalog, QualName, ReplicaIdentity, Table, View};
use crate::phases::assign::is_compat_view;
use crate::plan::Plan;
use crate::sql::{ident, ident_list, qualified};
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
    /// Only the rows where this condition holds (the decisions' `rows`, joined
    /// with OR); none: every row.
    pub rows: Option<String>,
}

impl Replica {
    /// The table as a publication lists it: with its column list and, when the
    /// decisions give one, its row filter.
    pub fn published(&self) -> String {
        let rows = self
            .rows
            .as_deref()
            .map(|f| format!(" WHERE ({f})"))
            .unwrap_or_default();
        format!(
            "{} ({}){rows}",
            qualified(&self.table.schema, &self.table.name),
            ident_list(&self.columns)
        )
    }

    /// The table's columns that are not kept.
    pub fn dropped_columns<'t>(&self, table: &'t Table) -> Vec<&'t crate::catalog::Column> {
        table
            .columns
            .iter()
            .filter(|c| !self.columns.contains(&c.name))
            .collect()
    }
}

/// The `replicate` decisions on `domain`'s tables, and what each such table keeps
/// on the source when `domain` retires: every reader counts, those still on the
/// source and those on their own server (their copy there is fed from this one,
/// see `phases::move_domain::reads`). `workload` is the plan's recorded workload;
/// without it every column is kept. An error names a decision whose row filter
/// cannot be used.
pub fn replicas(
    plan: &Plan,
    catalog: &Catalog,
    workload: Option<&Workload>,
    domain: &str,
) -> Result<Vec<Replica>, Vec<String>> {
    collect(plan, catalog, workload, |table, _| {
        table.name.schema == domain
    })
}

/// The other domains' tables that `services` (a domain's services) read under a
/// `replicate` decision, with the columns each reads: what `domain`'s server keeps
/// a copy of once the domain moves there.
pub fn read_by(
    plan: &Plan,
    catalog: &Catalog,
    workload: Option<&Workload>,
    domain: &str,
    services: &[String],
) -> Result<Vec<Replica>, Vec<String>> {
    collect(plan, catalog, workload, |table, service| {
        table.name.schema != domain && services.iter().any(|s| s == service)
    })
}

/// The tables `replicate` decisions name (directly, or through a view the
/// reader's SQL names) that `wanted(table, reader)` picks, with their readers,
/// kept columns and row filter.
fn collect(
    plan: &Plan,
    catalog: &Catalog,
    workload: Option<&Workload>,
    wanted: impl Fn(&Table, &str) -> bool,
) -> Result<Vec<Replica>, Vec<String>> {
    let mut out: Vec<Replica> = Vec::new();
    // Per table, each reader's row filter (None: every row).
    let mut filters: Vec<Vec<Option<String>>> = Vec::new();
    let mut errors = Vec::new();
    for decision in plan.decisions.iter().filter(|d| d.choice == CHOICE) {
        let Some((named, service)) = decision
            .subject
            .strip_prefix("read ")
            .and_then(|s| s.rsplit_once(" by "))
        else {
            continue;
        };
        // restrict names the table as the reader's SQL does: after assign, often
        // the compatibility view in the table's old place.
        let through_view = catalog.views.iter().find(|v| v.name.to_string() == named);
        for table in catalog.tables.iter().filter(|t| {
            t.partition_of.is_none()
                && (t.name.to_string() == named
                    || through_view.is_some_and(|v| view_reads(catalog, &v.name, &t.name, 0)))
        }) {
            if !wanted(table, service) {
                continue;
            }
            if let Some(rows) = &decision.rows {
                if let Err(e) = check_row_filter(table, rows) {
                    errors.push(format!(
                        "decision for {}: rows = {rows:?}: {e}",
                        decision.subject
                    ));
                    continue;
                }
            }
            let at = match out.iter().position(|r| r.table == table.name) {
                Some(at) => at,
                None => {
                    out.push(Replica {
                        table: table.name.clone(),
                        columns: Vec::new(),
                        readers: Vec::new(),
                        every_column_because: None,
                        rows: None,
                    });
                    filters.push(Vec::new());
                    out.len() - 1
                }
            };
            if !out[at].readers.iter().any(|r| r == service) {
                out[at].readers.push(service.to_string());
            }
            filters[at].push(decision.rows.clone());
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    for (replica, filters) in out.iter_mut().zip(filters) {
        let table = catalog.table(&replica.table).expect("found above");
        // A reader that wants every row makes the copy hold every row.
        replica.rows = filters
            .into_iter()
            .collect::<Option<BTreeSet<String>>>()
            .map(|each| {
                each.iter()
                    .map(|f| format!("({f})"))
                    .collect::<Vec<_>>()
                    .join(" OR ")
            });
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
    Ok(out)
}

/// Whether a decision's row filter can be a publication's: one SQL condition
/// naming only columns of the table that identify its rows (PostgreSQL refuses
/// an UPDATE or DELETE on a table published with a filter on other columns, and
/// those would be the owner's writes). The server checks the rest (functions,
/// types) when the publication is made.
pub fn check_row_filter(table: &Table, rows: &str) -> Result<(), String> {
    use sqlparser::ast::{Expr, Visit, Visitor};
    use sqlparser::tokenizer::Token;
    use std::ops::ControlFlow;
    struct Names {
        columns: Vec<String>,
        subquery: bool,
    }
    impl Visitor for Names {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            match expr {
                Expr::Identifier(i) => self.columns.push(fold(i)),
                Expr::CompoundIdentifier(parts) => self.columns.extend(parts.last().map(fold)),
                Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
                    self.subquery = true
                }
                _ => {}
            }
            ControlFlow::Continue(())
        }
    }
    let dialect = sqlparser::dialect::PostgreSqlDialect {};
    let not_a_condition = |e: sqlparser::parser::ParserError| format!("not a SQL condition: {e}");
    let mut parser = sqlparser::parser::Parser::new(&dialect)
        .try_with_sql(rows)
        .map_err(not_a_condition)?;
    let expr = parser.parse_expr().map_err(not_a_condition)?;
    if parser.peek_token().token != Token::EOF {
        return Err("one SQL condition, without `;` or anything after it".into());
    }
    let mut names = Names {
        columns: Vec::new(),
        subquery: false,
    };
    let _ = expr.visit(&mut names);
    if names.subquery {
        return Err("a row filter cannot hold a subquery".into());
    }
    if names.columns.is_empty() {
        return Err("it names no column of the table".into());
    }
    let identity = identity_columns(table);
    for name in &names.columns {
        if !table.columns.iter().any(|c| &c.name == name) {
            return Err(format!("{} has no column {name}", table.name));
        }
        if table.replica_identity != ReplicaIdentity::Full && !identity.contains(name) {
            return Err(format!(
                "column {name} does not identify the rows of {} (its replica identity: {}): PostgreSQL would refuse the owner's UPDATE and DELETE. Filter on those columns, or make the replica identity FULL",
                table.name,
                if identity.is_empty() {
                    "none".to_string()
                } else {
                    identity.iter().cloned().collect::<Vec<_>>().join(", ")
                }
            ));
        }
    }
    Ok(())
}

/// A compatibility view (assign's, over one table) over one of `replicas`' tables,
/// with its columns that the replica keeps, in the view's order.
pub fn compat_view_over<'r>(
    view: &View,
    replicas: &'r [Replica],
) -> Option<(&'r Replica, Vec<String>)> {
    let [dependency] = view.depends_on.as_slice() else {
        return None;
    };
    if !is_compat_view(view) || view.materialized {
        return None;
    }
    let replica = replicas.iter().find(|r| r.table == dependency.relation)?;
    let kept = view
        .columns
        .iter()
        .map(|c| c.name.clone())
        .filter(|c| replica.columns.contains(c))
        .collect();
    Some((replica, kept))
}

/// A split's compatibility view (assign's, over the table and its parts) over
/// `replicas`' tables that all keep the key they join on, made again read-only
/// over what the replicas keep: its `CREATE VIEW`, the replicas it joins (the
/// view's order), and the columns it then shows, in the view's order.
pub fn joined_view_over<'r>(
    catalog: &Catalog,
    view: &View,
    replicas: &'r [Replica],
) -> Option<(String, Vec<&'r Replica>, Vec<String>)> {
    if view.depends_on.len() < 2 || !is_compat_view(view) || view.materialized {
        return None;
    }
    let joined: Vec<&Replica> = view
        .depends_on
        .iter()
        .map(|d| replicas.iter().find(|r| r.table == d.relation))
        .collect::<Option<_>>()?;
    if joined.iter().any(|r| catalog.table(&r.table).is_none()) {
        return None;
    }
    let key = identity_columns(catalog.table(&joined[0].table)?);
    if key.is_empty()
        || !key
            .iter()
            .all(|c| joined.iter().all(|r| r.columns.contains(c)))
    {
        return None;
    }
    // `a`, `b`, … in the view's order.
    let alias = |i: usize| char::from(b'a' + (i % 26) as u8).to_string();
    let (mut shown, mut selected) = (Vec::new(), Vec::new());
    for column in &view.columns {
        let Some(i) = joined.iter().position(|r| r.columns.contains(&column.name)) else {
            continue;
        };
        selected.push(format!("{}.{}", alias(i), ident(&column.name)));
        shown.push(column.name.clone());
    }
    let mut from = format!(
        "{} a",
        qualified(&joined[0].table.schema, &joined[0].table.name)
    );
    for (i, r) in joined.iter().enumerate().skip(1) {
        let on: Vec<String> = key
            .iter()
            .map(|k| format!("a.{k} = {}.{k}", alias(i), k = ident(k)))
            .collect();
        from.push_str(&format!(
            " JOIN {} {} ON {}",
            qualified(&r.table.schema, &r.table.name),
            alias(i),
            on.join(" AND ")
        ));
    }
    let sql = format!(
        "CREATE VIEW {}{} AS SELECT {} FROM {from};",
        qualified(&view.name.schema, &view.name.name),
        view_options(view),
        selected.join(", "),
    );
    Some((sql, joined, shown))
}

/// `view` made again as the catalog has it: its options, its definition and the
/// defaults it gives an INSERT (a split's view has the table's).
pub fn create_view_sql(view: &View) -> String {
    let name = qualified(&view.name.schema, &view.name.name);
    let mut sql = format!(
        "CREATE VIEW {name}{} AS {};\n",
        view_options(view),
        view.definition.trim().trim_end_matches(';')
    );
    for column in &view.columns {
        if let Some(default) = &column.default {
            sql.push_str(&format!(
                "ALTER VIEW {name} ALTER COLUMN {} SET DEFAULT {default};\n",
                ident(&column.name)
            ));
        }
    }
    sql
}

/// A view's ` WITH (…)` clause, or nothing.
pub fn view_options(view: &View) -> String {
    if view.options.is_empty() {
        String::new()
    } else {
        format!(" WITH ({})", view.options.join(", "))
    }
}

/// `CREATE VIEW` of `view` (its name and options) over only the `kept` columns of
/// the replica's table.
pub fn narrowed_view_sql(view: &View, replica: &Replica, kept: &[String]) -> String {
    let options = view_options(view);
    format!(
        "CREATE VIEW {}{options} AS SELECT {} FROM {};",
        qualified(&view.name.schema, &view.name.name),
        ident_list(kept),
        qualified(&replica.table.schema, &replica.table.name)
    )
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
pub fn identity_columns(table: &Table) -> BTreeSet<String> {
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
    use crate::catalog::{View, ViewDependency};
    use crate::plan::testing::plan_for;
    use crate::plan::{Cutover, Decision, Service, Side};

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
        orders.constraints = vec![crate::catalog::testing::primary_key("orders_pkey", &["id"])];
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
            rows: None,
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
        let kept = replicas(&plan, &c, Some(&w), "sales").unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].table, QualName::new("sales", "orders"));
        assert_eq!(kept[0].readers, ["billing"]);
        // total is read only by the owner's own service; the generated column is
        // never replicated.
        assert_eq!(kept[0].columns, ["id", "status"]);
        assert_eq!(kept[0].every_column_because, None);
        assert_eq!(kept[0].rows, None);
        assert_eq!(
            kept[0].published(),
            "\"sales\".\"orders\" (\"id\", \"status\")"
        );
    }

    #[test]
    fn a_star_or_no_workload_keeps_every_replicable_column_and_says_why() {
        let (c, plan) = shop();
        let w = workload(&[("billing", "SELECT * FROM orders")]);
        let kept = replicas(&plan, &c, Some(&w), "sales").unwrap();
        assert_eq!(kept[0].columns, ["id", "status", "total"]);
        assert!(kept[0]
            .every_column_because
            .as_deref()
            .is_some_and(|w| w.contains("selects every column")));
        let kept = replicas(&plan, &c, None, "sales").unwrap();
        assert_eq!(kept[0].columns, ["id", "status", "total"]);
    }

    #[test]
    fn a_reader_on_its_own_server_still_counts_and_other_choices_get_nothing() {
        let (c, mut plan) = shop();
        assert!(replicas(&plan, &c, None, "billing").unwrap().is_empty());
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
        // Its copy on its own server is fed from this table.
        assert_eq!(replicas(&plan, &c, None, "sales").unwrap().len(), 1);
        plan.decisions[0].choice = "api".into();
        assert!(replicas(&plan, &c, None, "sales").unwrap().is_empty());
    }

    #[test]
    fn a_moving_domain_copies_what_its_services_read_of_other_domains() {
        let (c, plan) = shop();
        let w = workload(&[("billing", "SELECT o.status FROM orders o WHERE o.id = $1")]);
        let billing = ["billing".to_string()];
        let copies = read_by(&plan, &c, Some(&w), "billing", &billing).unwrap();
        assert_eq!(copies.len(), 1);
        assert_eq!(copies[0].table, QualName::new("sales", "orders"));
        assert_eq!(copies[0].columns, ["id", "status"]);
        // Not another domain's services; not the domain's own tables.
        assert!(read_by(&plan, &c, Some(&w), "billing", &["sales".into()])
            .unwrap()
            .is_empty());
        assert!(read_by(&plan, &c, Some(&w), "sales", &billing)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn row_filters_are_joined_checked_and_published() {
        let (c, mut plan) = shop();
        plan.decisions[0].rows = Some("id > 100".into());
        plan.decisions.push(Decision {
            subject: "read sales.orders by audit".into(),
            choice: CHOICE.into(),
            reason: String::new(),
            rows: Some("id < 5".into()),
        });
        let kept = replicas(&plan, &c, None, "sales").unwrap();
        assert_eq!(kept[0].readers, ["billing", "audit"]);
        assert_eq!(kept[0].rows.as_deref(), Some("(id < 5) OR (id > 100)"));
        assert!(kept[0]
            .published()
            .ends_with(" WHERE ((id < 5) OR (id > 100))"));
        // A reader that wants every row makes every row kept.
        plan.decisions[1].rows = None;
        assert_eq!(replicas(&plan, &c, None, "sales").unwrap()[0].rows, None);

        let orders = c.table(&QualName::new("sales", "orders")).unwrap();
        for (filter, says) in [
            ("status = 'paid'", "does not identify the rows"),
            ("nope = 1", "has no column nope"),
            ("id > 1; DROP TABLE x", "one SQL condition"),
            ("id IN (SELECT 1)", "subquery"),
            ("1 = 1", "names no column"),
            ("id >", "not a SQL condition"),
        ] {
            let err = check_row_filter(orders, filter).unwrap_err();
            assert!(err.contains(says), "{filter}: {err}");
        }
        assert!(check_row_filter(orders, "\"id\" % 2 = 0 AND o.id IS NOT NULL").is_ok());
        plan.decisions[0].rows = Some("status = 'paid'".into());
        let errors = replicas(&plan, &c, None, "sales").unwrap_err();
        assert!(
            errors[0].starts_with("decision for read public.orders by billing: rows = "),
            "{errors:?}"
        );
    }
}
