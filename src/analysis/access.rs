//! What one SQL statement reads and writes, from its syntax tree (sqlparser, PostgreSQL
//! dialect). Pure: names come out as written (case-folded like PostgreSQL), and are
//! resolved against a catalog later by [`super::resolve`].

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;

use serde::Serialize;
use sqlparser::ast::{
    AssignmentTarget, CopySource, Expr, FromTable, FunctionArguments, Ident, LockType, MergeAction,
    MergeInsertKind, MergeUpdateKind, ObjectName, ObjectNamePart, Query, SetExpr, Statement,
    TableFactor, TableObject, TableWithJoins, Visit, Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// A name as it appears in SQL: optional schema, then the object. Unquoted parts are
/// folded to lower case, as PostgreSQL does; quoted parts are kept as written.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct RawName {
    pub schema: Option<String>,
    pub name: String,
}

impl std::fmt::Display for RawName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{}", crate::sql::display_qualified(s, &self.name)),
            None => write!(f, "{}", crate::sql::display_ident(&self.name)),
        }
    }
}

/// How a statement writes a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteKind {
    Insert,
    Update,
    Delete,
    Merge,
    Truncate,
    Copy,
    /// `SELECT … FOR UPDATE` / `FOR NO KEY UPDATE`: rows locked to be written.
    Lock,
}

/// The columns a statement writes in one table: a set, or every column (an INSERT or
/// COPY without a column list). DELETE and TRUNCATE remove whole rows and write no
/// particular column, so they add none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Columns {
    All,
    Some(BTreeSet<String>),
}

impl Columns {
    fn add(&mut self, other: Columns) {
        match (self, other) {
            (Columns::All, _) => {}
            (this, Columns::All) => *this = Columns::All,
            (Columns::Some(a), Columns::Some(b)) => a.extend(b),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Write {
    pub kinds: BTreeSet<WriteKind>,
    pub columns: Columns,
    /// An INSERT that reads rows of its table back (`RETURNING`, `ON CONFLICT DO
    /// UPDATE`), which needs `SELECT` as well. UPDATE, DELETE and MERGE always read.
    pub reads_rows: bool,
}

/// Everything one statement touches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Access {
    /// Relations read (tables or views); a written table is listed here only when the
    /// statement also reads it elsewhere (a sub-query, `UPDATE … FROM` itself).
    pub reads: BTreeSet<RawName>,
    pub writes: BTreeMap<RawName, Write>,
    /// Functions called: their bodies may read and write tables too.
    pub calls: BTreeSet<RawName>,
}

impl Access {
    fn write(&mut self, table: RawName, kind: WriteKind, columns: Columns) {
        self.writes
            .entry(table)
            .and_modify(|w| {
                w.kinds.insert(kind);
                w.columns.add(columns.clone());
            })
            .or_insert_with(|| Write {
                kinds: [kind].into(),
                columns,
                reads_rows: false,
            });
    }

    /// Whether the statement changes data.
    pub fn is_write(&self) -> bool {
        !self.writes.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("does not parse: {0}")]
    Parse(String),
    #[error("empty statement")]
    Empty,
}

/// Parses SQL text (one or more statements) and returns each statement's access.
/// `$1`-style parameters are fine.
pub fn analyze(sql: &str) -> Result<Vec<Access>, AccessError> {
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .map_err(|e| AccessError::Parse(e.to_string()))?;
    if statements.is_empty() {
        return Err(AccessError::Empty);
    }
    Ok(statements.iter().map(statement_access).collect())
}

pub fn statement_access(statement: &Statement) -> Access {
    let mut collector = Collector::default();
    let _ = statement.visit(&mut collector);
    let Collector {
        mut access,
        relations,
        ctes,
        targets,
    } = collector;
    // Every relation the tree mentions is read, except CTE names and the targets of
    // writes (counted once per mention: a target mentioned again elsewhere is read).
    let mut target_mentions: BTreeMap<RawName, usize> = BTreeMap::new();
    for t in targets {
        *target_mentions.entry(t).or_default() += 1;
    }
    for name in relations {
        if name.schema.is_none() && ctes.contains(&name.name) {
            continue;
        }
        if let Some(n) = target_mentions.get_mut(&name) {
            if *n > 0 {
                *n -= 1;
                continue;
            }
        }
        access.reads.insert(name);
    }
    access
}

#[derive(Default)]
struct Collector {
    access: Access,
    relations: Vec<RawName>,
    ctes: BTreeSet<String>,
    /// Write targets, each as many times as the visitor will also meet it as a relation.
    targets: Vec<RawName>,
}

impl Visitor for Collector {
    type Break = ();

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        if let Some(name) = raw_name(relation) {
            self.relations.push(name);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.ctes.insert(fold(&cte.alias.name));
            }
        }
        if query
            .locks
            .iter()
            .any(|lock| matches!(lock.lock_type, LockType::Update))
        {
            let locked: Vec<RawName> = match query.locks.iter().find_map(|l| l.of.as_ref()) {
                Some(of) => raw_name(of).into_iter().collect(),
                None => from_tables(&query.body),
            };
            for table in locked {
                // Locked rows are written by this service; the table is also read.
                self.access
                    .write(table, WriteKind::Lock, Columns::Some(BTreeSet::new()));
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if let Expr::Function(function) = expr {
            if let Some(name) = raw_name(&function.name) {
                // Built-ins (count, now, coalesce…) are filtered at resolution, where
                // only the catalog's own functions match.
                if !matches!(function.args, FunctionArguments::None) || name.schema.is_some() {
                    self.access.calls.insert(name);
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<()> {
        match statement {
            Statement::Insert(insert) => {
                if let TableObject::TableName(table) = &insert.table {
                    if let Some(name) = raw_name(table) {
                        let columns = if insert.columns.is_empty() {
                            Columns::All
                        } else {
                            Columns::Some(insert.columns.iter().filter_map(last_part).collect())
                        };
                        self.access.write(name.clone(), WriteKind::Insert, columns);
                        self.targets.push(name.clone());
                        let do_update = matches!(
                            &insert.on,
                            Some(sqlparser::ast::OnInsert::OnConflict(c))
                                if matches!(c.action, sqlparser::ast::OnConflictAction::DoUpdate(_))
                        );
                        if insert.returning.is_some() || do_update {
                            if let Some(w) = self.access.writes.get_mut(&name) {
                                w.reads_rows = true;
                            }
                        }
                        // ON CONFLICT DO UPDATE SET … writes more columns.
                        if let Some(sqlparser::ast::OnInsert::OnConflict(conflict)) = &insert.on {
                            if let sqlparser::ast::OnConflictAction::DoUpdate(update) =
                                &conflict.action
                            {
                                let cols =
                                    assigned_columns(update.assignments.iter().map(|a| &a.target));
                                self.access.write(name, WriteKind::Update, cols);
                            }
                        }
                    }
                }
            }
            Statement::Update(update) => {
                if let Some(name) = table_with_joins_name(&update.table) {
                    let cols = assigned_columns(update.assignments.iter().map(|a| &a.target));
                    self.access.write(name.clone(), WriteKind::Update, cols);
                    self.targets.push(name);
                }
                // UPDATE … FROM t: the visitor meets t as a relation, so it is read.
            }
            Statement::Delete(delete) => {
                let tables = match &delete.from {
                    FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
                };
                for table in tables {
                    if let Some(name) = table_with_joins_name(table) {
                        self.access.write(
                            name.clone(),
                            WriteKind::Delete,
                            Columns::Some(BTreeSet::new()),
                        );
                        self.targets.push(name);
                    }
                }
            }
            Statement::Merge(merge) => {
                if let Some(name) = table_factor_name(&merge.table) {
                    for clause in &merge.clauses {
                        let (kind, cols) = match &clause.action {
                            MergeAction::Insert(insert) => (
                                WriteKind::Insert,
                                if insert.columns.is_empty()
                                    || matches!(insert.kind, MergeInsertKind::Row)
                                {
                                    Columns::All
                                } else {
                                    Columns::Some(
                                        insert.columns.iter().filter_map(last_part).collect(),
                                    )
                                },
                            ),
                            MergeAction::Update(update) => (
                                WriteKind::Update,
                                match &update.kind {
                                    MergeUpdateKind::Set(assignments) => {
                                        assigned_columns(assignments.iter().map(|a| &a.target))
                                    }
                                    _ => Columns::All,
                                },
                            ),
                            MergeAction::Delete { .. } => {
                                (WriteKind::Delete, Columns::Some(BTreeSet::new()))
                            }
                            MergeAction::DoNothing { .. } => continue,
                        };
                        self.access.write(name.clone(), kind, cols);
                    }
                    self.access.write(
                        name.clone(),
                        WriteKind::Merge,
                        Columns::Some(BTreeSet::new()),
                    );
                    self.targets.push(name);
                }
            }
            Statement::Truncate(truncate) => {
                for target in &truncate.table_names {
                    if let Some(name) = raw_name(&target.name) {
                        self.access.write(
                            name.clone(),
                            WriteKind::Truncate,
                            Columns::Some(BTreeSet::new()),
                        );
                        self.targets.push(name);
                    }
                }
            }
            Statement::Copy {
                source:
                    CopySource::Table {
                        table_name,
                        columns,
                    },
                to: false,
                ..
            } => {
                if let Some(name) = raw_name(table_name) {
                    let cols = if columns.is_empty() {
                        Columns::All
                    } else {
                        Columns::Some(columns.iter().map(fold).collect())
                    };
                    self.access.write(name.clone(), WriteKind::Copy, cols);
                    self.targets.push(name);
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

fn assigned_columns<'a>(targets: impl Iterator<Item = &'a AssignmentTarget>) -> Columns {
    let mut columns = BTreeSet::new();
    for target in targets {
        match target {
            AssignmentTarget::ColumnName(name) => columns.extend(last_part(name)),
            AssignmentTarget::Tuple(names) => columns.extend(names.iter().filter_map(last_part)),
        }
    }
    Columns::Some(columns)
}

/// The tables named directly in a query body's FROM clauses (for `FOR UPDATE`).
fn from_tables(body: &SetExpr) -> Vec<RawName> {
    match body {
        SetExpr::Select(select) => select
            .from
            .iter()
            .flat_map(|twj| {
                std::iter::once(&twj.relation).chain(twj.joins.iter().map(|j| &j.relation))
            })
            .filter_map(table_factor_name)
            .collect(),
        SetExpr::Query(q) => from_tables(&q.body),
        _ => Vec::new(),
    }
}

fn table_with_joins_name(twj: &TableWithJoins) -> Option<RawName> {
    table_factor_name(&twj.relation)
}

fn table_factor_name(factor: &TableFactor) -> Option<RawName> {
    match factor {
        TableFactor::Table { name, .. } => raw_name(name),
        _ => None,
    }
}

/// `db.schema.table` keeps the last two parts; PostgreSQL allows only the current
/// database in front anyway.
fn raw_name(name: &ObjectName) -> Option<RawName> {
    let parts: Vec<String> = name
        .0
        .iter()
        .filter_map(|p| match p {
            ObjectNamePart::Identifier(ident) => Some(fold(ident)),
            _ => None,
        })
        .collect();
    match parts.as_slice() {
        [] => None,
        [name] => Some(RawName {
            schema: None,
            name: name.clone(),
        }),
        [.., schema, name] => Some(RawName {
            schema: Some(schema.clone()),
            name: name.clone(),
        }),
    }
}

fn last_part(name: &ObjectName) -> Option<String> {
    match name.0.last()? {
        ObjectNamePart::Identifier(ident) => Some(fold(ident)),
        _ => None,
    }
}

/// PostgreSQL folds unquoted identifiers to lower case.
pub fn fold(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

/// The names a statement could read columns by: every identifier it spells (folded
/// as PostgreSQL folds them), and whether it selects `*` or `t.*`. A superset on
/// purpose: what is kept for a reader (column replication) is these names that are
/// columns of the table, and the reader's statements are proven against it after.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamedColumns {
    pub names: BTreeSet<String>,
    pub every: bool,
}

pub fn named_columns(statement: &Statement) -> NamedColumns {
    #[derive(Default)]
    struct Names(NamedColumns);
    impl Visitor for Names {
        type Break = ();
        fn pre_visit_ident(&mut self, ident: &Ident) -> ControlFlow<()> {
            self.0.names.insert(fold(ident));
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            match expr {
                Expr::Identifier(ident) => {
                    self.0.names.insert(fold(ident));
                }
                Expr::CompoundIdentifier(parts) => {
                    self.0.names.extend(parts.iter().map(fold));
                }
                _ => {}
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_select(&mut self, select: &sqlparser::ast::Select) -> ControlFlow<()> {
            use sqlparser::ast::{JoinConstraint, JoinOperator, SelectItem};
            if select.projection.iter().any(|item| {
                matches!(
                    item,
                    SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
                )
            }) {
                self.0.every = true;
            }
            // JOIN … USING (a, b) names columns outside any expression.
            for join in select.from.iter().flat_map(|t| &t.joins) {
                let constraint = match &join.join_operator {
                    JoinOperator::Join(c)
                    | JoinOperator::Inner(c)
                    | JoinOperator::Left(c)
                    | JoinOperator::LeftOuter(c)
                    | JoinOperator::Right(c)
                    | JoinOperator::RightOuter(c)
                    | JoinOperator::FullOuter(c) => Some(c),
                    _ => None,
                };
                match constraint {
                    Some(JoinConstraint::Using(columns)) => self
                        .0
                        .names
                        .extend(columns.iter().filter_map(|c| raw_name(c).map(|n| n.name))),
                    // NATURAL JOIN joins on every column of the same name.
                    Some(JoinConstraint::Natural) => self.0.every = true,
                    _ => {}
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut names = Names::default();
    let _ = statement.visit(&mut names);
    names.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(sql: &str) -> NamedColumns {
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        named_columns(&statements[0])
    }

    #[test]
    fn named_columns_are_every_identifier_and_a_star_means_every_column() {
        let n = named(
            "SELECT o.id, \"Total\", count(*) FROM orders o JOIN items i USING (order_ref) WHERE o.Status = $1 ORDER BY created_at",
        );
        for name in [
            "id",
            "Total",
            "order_ref",
            "status",
            "created_at",
            "o",
            "orders",
        ] {
            assert!(n.names.contains(name), "{name} missing from {n:?}");
        }
        assert!(!n.every, "count(*) reads no column");
        assert!(named("SELECT o.* FROM orders o").every);
        assert!(named("SELECT * FROM a NATURAL JOIN b").every);
        assert!(named("SELECT x FROM (SELECT * FROM orders) s").every);
    }

    fn one(sql: &str) -> Access {
        let mut all = analyze(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(all.len(), 1);
        all.remove(0)
    }

    fn names(set: &BTreeSet<RawName>) -> Vec<String> {
        set.iter().map(ToString::to_string).collect()
    }

    fn written(a: &Access) -> Vec<String> {
        a.writes
            .iter()
            .map(|(n, w)| {
                let cols = match &w.columns {
                    Columns::All => "*".to_string(),
                    Columns::Some(c) => c.iter().cloned().collect::<Vec<_>>().join(","),
                };
                format!("{n}[{cols}]")
            })
            .collect()
    }

    #[test]
    fn select_with_joins_subqueries_and_ctes() {
        let a = one("WITH recent AS (SELECT * FROM Orders WHERE placed_at > $1)
             SELECT c.id FROM recent r JOIN public.customers c ON c.id = r.customer_id
             WHERE EXISTS (SELECT 1 FROM \"Payments\" p WHERE p.order_id = r.id)");
        assert_eq!(
            names(&a.reads),
            ["\"Payments\"", "orders", "public.customers"]
        );
        assert!(a.writes.is_empty());
    }

    #[test]
    fn insert_with_columns_returning_and_on_conflict() {
        let a = one(
            "INSERT INTO cart_items (cart_id, variant_id, quantity) VALUES ($1, $2, $3)
             ON CONFLICT (cart_id, variant_id) DO UPDATE SET quantity = cart_items.quantity + EXCLUDED.quantity
             RETURNING cart_id",
        );
        assert_eq!(written(&a), ["cart_items[cart_id,quantity,variant_id]"]);
        assert!(a.reads.is_empty(), "{:?}", a.reads);
        let a = one("INSERT INTO audit VALUES ($1, $2)");
        assert_eq!(written(&a), ["audit[*]"]);
    }

    #[test]
    fn insert_select_reads_the_source() {
        let a = one("INSERT INTO archive (id, total) SELECT id, total FROM orders WHERE id < $1");
        assert_eq!(written(&a), ["archive[id,total]"]);
        assert_eq!(names(&a.reads), ["orders"]);
    }

    #[test]
    fn update_from_and_self_subquery() {
        let a = one(
            "UPDATE orders o SET payment_status = 'refunded', paid_at = NULL FROM payments p
             WHERE p.order_id = o.id AND p.id = $1",
        );
        assert_eq!(written(&a), ["orders[paid_at,payment_status]"]);
        assert_eq!(names(&a.reads), ["payments"]);
        let a = one("UPDATE t SET x = (SELECT max(x) FROM t) WHERE id = $1");
        assert_eq!(written(&a), ["t[x]"]);
        assert_eq!(names(&a.reads), ["t"], "the sub-query reads the target");
    }

    #[test]
    fn delete_using_truncate_copy_merge() {
        let a = one("DELETE FROM stock_reservations r USING orders o WHERE o.id = r.order_id");
        assert_eq!(written(&a), ["stock_reservations[]"]);
        assert_eq!(names(&a.reads), ["orders"]);
        assert_eq!(written(&one("TRUNCATE a, s.b")), ["a[]", "s.b[]"]);
        assert_eq!(
            written(&one("COPY items (id, name) FROM STDIN")),
            ["items[id,name]"]
        );
        assert!(one("COPY items TO STDOUT").writes.is_empty());
        let a = one("MERGE INTO stock s USING incoming i ON s.id = i.id
             WHEN MATCHED THEN UPDATE SET qty = i.qty
             WHEN NOT MATCHED THEN INSERT (id, qty) VALUES (i.id, i.qty)");
        assert_eq!(written(&a), ["stock[id,qty]"]);
        assert_eq!(names(&a.reads), ["incoming"]);
    }

    #[test]
    fn select_for_update_writes_the_locked_table() {
        let a = one("SELECT total FROM orders WHERE id = $1 FOR UPDATE");
        assert_eq!(written(&a), ["orders[]"]);
        assert_eq!(
            a.writes.values().next().unwrap().kinds,
            [WriteKind::Lock].into()
        );
        assert!(one("SELECT * FROM orders FOR SHARE").writes.is_empty());
    }

    #[test]
    fn writes_inside_ctes_and_function_calls() {
        let a = one("WITH moved AS (DELETE FROM queue WHERE id = $1 RETURNING *)
             INSERT INTO done SELECT * FROM moved");
        assert_eq!(written(&a), ["done[*]", "queue[]"]);
        assert!(a.reads.is_empty(), "{:?}", a.reads);
        let a = one("UPDATE orders SET total = order_total(id), updated_at = now() WHERE id = $1");
        assert_eq!(names(&a.calls), ["now", "order_total"]);
    }

    #[test]
    fn quoted_names_keep_case_and_unquoted_fold() {
        let a = one("SELECT * FROM \"Odd Schema\".\"We\"\"ird\" JOIN Public.USERS u ON true");
        assert_eq!(
            names(&a.reads),
            ["\"Odd Schema\".\"We\"\"ird\"", "public.users"]
        );
    }

    #[test]
    fn bad_sql_is_an_error_not_a_panic() {
        assert!(matches!(analyze("SELEC 1"), Err(AccessError::Parse(_))));
        assert!(matches!(analyze("  "), Err(AccessError::Empty)));
    }
}
