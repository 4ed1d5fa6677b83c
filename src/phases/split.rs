//! Split a jointly written table, online (the source texts' table split): the
//! columns one writer owns (`[[splits]] columns`) leave the table for a new one of
//! their own, the *part*, with the same key; the old name, assign's compatibility
//! view, becomes a view over both that unchanged clients keep reading and writing
//! through. Pure: `plan` checks each split against the catalog and lays out, per
//! split, on the source:
//!
//! 1. the part's schema when the domain has none yet (made and marked, so the undo
//!    drops only a schema carve made);
//! 2. the part: key and moved columns (types, defaults, NOT NULL), its primary key,
//!    a foreign key to the table (ON UPDATE / ON DELETE CASCADE: a key changed or
//!    a row deleted on the table follows), the constraints and indexes that name
//!    only moved columns, the table's owner and grants, USAGE on its schema for the
//!    table's grantees that lack it;
//! 3. a trigger on the table that keeps the part in step with every write from now
//!    on (an upsert per row, as the table's owner);
//! 4. the rows copied in batches of the key's order, each batch committed, while
//!    writes go on (`ON CONFLICT DO NOTHING`: a row the trigger wrote is newer);
//! 5. the switch, in one transaction: the trigger dropped, the moved columns dropped
//!    from the table, and the view made again over the join of both parts, with
//!    the table's defaults and an `INSTEAD OF` trigger that sends each INSERT,
//!    UPDATE (of the columns that changed only, so column privileges hold) and
//!    DELETE to the part that owns the columns, RETURNING included.
//!
//! Each step's undo reverses it: the columns are added back and filled from the
//! part, their constraints, indexes and grants made again, the view as assign made
//! it. Added back, the columns come last: the undo is exact when they were the
//! table's last columns (the step says so when they were not).

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

use super::{grant_sql, lit, relation_exists};
use crate::catalog::{Catalog, Column, ConstraintKind, QualName, Table, View};
use crate::engine::{SqlAction, Step, Target};
use crate::plan::{GateHints, Plan, Split};

/// The trigger functions a split makes, by what they do: `sync` keeps the part in
/// step during the copy, `write` sends the view's writes to the parts, `row` gives
/// a row written straight into the table its part's row.
const FUNCTIONS: [&str; 3] = ["sync", "write", "row"];
use crate::sql::{display_ident, dollar_quoted, ident, qualified};

pub const PHASE: &str = crate::plan::phase_names::SPLIT;

/// Rows copied per batch, each batch its own transaction.
const BATCH_ROWS: u32 = 5000;

/// The marker of a schema carve made for a part.
fn schema_marker(schema: &str) -> String {
    format!("made by carve split for the parts in {schema}")
}

/// The splits as steps, and what the fingerprint gate sets aside while they are
/// under way (a killed split is resumed, not refused as stale).
#[derive(Debug, Clone, PartialEq)]
pub struct SplitPlan {
    pub steps: Vec<Step>,
    pub hints: GateHints,
    /// What each split leaves in the catalog (`forecast::after_split`).
    pub shapes: Vec<SplitShape>,
}

/// One split as the catalog will have it: the table without the moved columns,
/// the part (the key and the moved columns), the old name a view over both.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitShape {
    pub table: QualName,
    pub view: QualName,
    pub part: QualName,
    pub key: Vec<String>,
    pub moved: Vec<String>,
}

/// Every split of the plan as steps, in the plan's order, or every problem found
/// (nothing is planned while one split cannot be done). The splits of one table
/// (one part per writer) are done together: one trigger keeps every part in step,
/// and one switch makes the old name a view over the table and all its parts.
pub fn plan(plan: &Plan, catalog: &Catalog) -> Result<SplitPlan, Vec<String>> {
    let mut out = SplitPlan {
        steps: Vec::new(),
        hints: GateHints::default(),
        shapes: Vec::new(),
    };
    let mut errors = Vec::new();
    let mut groups: Vec<(&str, Vec<&Split>)> = Vec::new();
    for split in &plan.splits {
        match groups.iter_mut().find(|(table, _)| *table == split.table) {
            Some((_, splits)) => splits.push(split),
            None => groups.push((split.table.as_str(), vec![split])),
        }
    }
    for (table, splits) in groups {
        match Resolved::of(plan, catalog, &splits) {
            Ok(r) => {
                for part in &r.parts {
                    let schema = &part.name.schema;
                    if !catalog.schemas.iter().any(|s| &s.name == schema)
                        && !out.hints.creates_schemas.contains(schema)
                    {
                        out.steps.push(create_schema(schema));
                        out.hints.creates_schemas.push(schema.clone());
                    }
                }
                out.hints
                    .touches
                    .extend([r.table.name.to_string(), r.view.name.to_string()]);
                out.hints
                    .touches
                    .extend(r.parts.iter().map(|p| p.name.to_string()));
                out.hints.touches.extend(
                    FUNCTIONS
                        .iter()
                        .map(|what| r.function_name(what).to_string()),
                );
                out.steps.extend(r.steps());
                out.shapes.extend(r.parts.iter().map(|part| SplitShape {
                    table: r.table.name.clone(),
                    view: r.view.name.clone(),
                    part: part.name.clone(),
                    key: r.key.iter().map(|c| c.name.clone()).collect(),
                    moved: part.moved.iter().map(|c| c.name.clone()).collect(),
                }));
            }
            Err(e) => errors.extend(e.into_iter().map(|e| format!("split of {table}: {e}"))),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// One part of a split table: its name and the columns that go to it.
struct Part<'c> {
    name: QualName,
    moved: Vec<&'c Column>,
}

/// The splits of one table checked against the catalog: the table behind the
/// plan's name, its compatibility view, the parts, and which columns go where.
struct Resolved<'c> {
    catalog: &'c Catalog,
    table: &'c Table,
    view: &'c View,
    parts: Vec<Part<'c>>,
    key: Vec<&'c Column>,
}

impl<'c> Resolved<'c> {
    fn of(
        plan: &Plan,
        catalog: &'c Catalog,
        splits: &[&Split],
    ) -> Result<Resolved<'c>, Vec<String>> {
        let mut errors = Vec::new();
        let name = &splits[0].table;
        // After assign the plan's name is the compatibility view over the table.
        let Some(view) = catalog
            .views
            .iter()
            .find(|v| &v.name.to_string() == name && crate::phases::assign::is_compat_view(v))
        else {
            return Err(vec![format!(
                "{name} is not a compatibility view of assign's: a split runs after `carve assign`, on a table the plan's [[domains]] list",
            )]);
        };
        let [dependency] = view.depends_on.as_slice() else {
            return Err(vec![format!("{} reads more than one relation", view.name)]);
        };
        let Some(table) = catalog.table(&dependency.relation) else {
            return Err(vec![format!("{} reads no table", view.name)]);
        };
        if table.partition_of.is_some() || table.partition_key.is_some() {
            errors.push(format!("{} is partitioned: not split yet", table.name));
        }
        let key_names: Vec<String> = table
            .primary_key()
            .map(|k| k.columns.clone())
            .unwrap_or_default();
        if key_names.is_empty() {
            errors.push(format!(
                "{} has no primary key: the parts are joined by it",
                table.name
            ));
        }
        if let Some(c) = table.columns.iter().find(|c| c.identity.is_some()) {
            errors.push(format!(
                "{} has the identity column {}: writes through the view cannot give it a value yet",
                table.name, c.name
            ));
        }
        let mut parts: Vec<Part> = Vec::new();
        for split in splits {
            let domain = split
                .domain
                .clone()
                .unwrap_or_else(|| table.name.schema.clone());
            if !plan.domains.iter().any(|d| d.name == domain) {
                errors.push(format!("the plan has no domain {domain:?} for the part"));
            }
            let part = QualName::new(&domain, &split.part);
            if split.part.is_empty() || split.part.len() > 63 || split.part.contains('\0') {
                errors.push(format!("part name {:?} must be 1 to 63 bytes", split.part));
            }
            if catalog.table(&part).is_some() || catalog.view(&part).is_some() {
                errors.push(format!("{part} already exists"));
            }
            if parts.iter().any(|p| p.name == part) {
                errors.push(format!("{part} is named by two splits"));
            }
            let mut moved = Vec::new();
            for name in &split.columns {
                match table.columns.iter().find(|c| &c.name == name) {
                    None => errors.push(format!("{} has no column {name}", table.name)),
                    Some(_) if key_names.contains(name) => {
                        errors.push(format!("{name} is the key: every part keeps it"))
                    }
                    Some(c) if c.generated.is_some() => errors.push(format!(
                        "{name} is generated from other columns: it stays with them"
                    )),
                    Some(_)
                        if parts
                            .iter()
                            .any(|p| p.moved.iter().any(|c| &c.name == name)) =>
                    {
                        errors.push(format!("{name} goes to two parts"))
                    }
                    Some(c) => moved.push(c),
                }
            }
            if split.columns.is_empty() {
                errors.push(format!(
                    "no columns to move into {part} (columns = [\"…\"])"
                ));
            }
            parts.push(Part { name: part, moved });
        }
        // A constraint or index goes with its columns: all of them in one part, or
        // none moved.
        let part_of = |column: &str| {
            parts
                .iter()
                .position(|p| p.moved.iter().any(|c| c.name == column))
        };
        let touches = |columns: &[String]| columns.iter().any(|c| part_of(c).is_some());
        let within = |columns: &[String]| {
            let first = columns.first().and_then(|c| part_of(c));
            first.is_some() && columns.iter().all(|c| part_of(c) == first)
        };
        for c in table.constraints.iter().filter(|c| touches(&c.columns)) {
            if !within(&c.columns) {
                errors.push(format!(
                    "constraint {} names columns of two parts ({})",
                    c.name,
                    c.columns.join(", ")
                ));
            }
        }
        let moved_columns = || parts.iter().flat_map(|p| &p.moved);
        for i in table.indexes.iter().filter(|i| i.constraint.is_none()) {
            if touches(&i.columns) && !within(&i.columns) {
                errors.push(format!("index {} names columns of two parts", i.name));
            } else if i.columns.is_empty()
                && moved_columns().any(|c| mentions(&i.definition, &c.name))
            {
                // Dropping the column would drop it, and nothing would make it again.
                errors.push(format!(
                    "index {} is on an expression of moved columns: not split yet",
                    i.name
                ));
            }
        }
        for other in &catalog.tables {
            for (constraint, fk) in other.foreign_keys() {
                if fk.references == table.name && touches(&fk.referenced_columns) {
                    errors.push(format!(
                        "foreign key {} of {} points at moved columns",
                        constraint.name, other.name
                    ));
                }
            }
        }
        for v in catalog.views.iter().filter(|v| v.name != view.name) {
            for d in &v.depends_on {
                if d.relation == table.name && touches(&d.columns) {
                    errors.push(format!(
                        "view {} reads moved columns of {}: change or drop it first",
                        v.name, table.name
                    ));
                }
                if d.relation == view.name {
                    errors.push(format!(
                        "view {} reads {}, which the split makes again: drop it first",
                        v.name, view.name
                    ));
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let key = key_names
            .iter()
            .filter_map(|k| table.columns.iter().find(|c| &c.name == k))
            .collect();
        Ok(Resolved {
            catalog,
            table,
            view,
            parts,
            key,
        })
    }

    fn table_name(&self) -> String {
        qualified(&self.table.name.schema, &self.table.name.name)
    }

    fn part_name(part: &Part) -> String {
        qualified(&part.name.schema, &part.name.name)
    }

    fn view_name(&self) -> String {
        qualified(&self.view.name.schema, &self.view.name.name)
    }

    /// The alias of the `i`th part in the view's join: `p`, `p2`, `p3` …
    fn alias(i: usize) -> String {
        if i == 0 {
            "p".into()
        } else {
            format!("p{}", i + 1)
        }
    }

    /// The parts' names, for people.
    fn part_list(&self) -> String {
        self.parts
            .iter()
            .map(|p| p.name.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A short tag, unique per split table (its first part), for the functions
    /// carve makes.
    fn tag(&self) -> String {
        Sha256::digest(self.parts[0].name.to_string().as_bytes())[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// One of the functions carve makes for the split (`FUNCTIONS`), in the first
    /// part's schema.
    fn function_name(&self, what: &str) -> QualName {
        QualName::new(
            &self.parts[0].name.schema,
            &format!("carve_split_{}_{what}", self.tag()),
        )
    }

    fn function(&self, what: &str) -> String {
        let name = self.function_name(what);
        qualified(&name.schema, &name.name)
    }

    fn is_moved(&self, column: &str) -> bool {
        self.position_of(column).is_some()
    }

    /// The part a column goes to.
    fn position_of(&self, column: &str) -> Option<usize> {
        self.parts
            .iter()
            .position(|p| p.moved.iter().any(|c| c.name == column))
    }

    /// Every moved column, in the table's order.
    fn moved(&self) -> Vec<&'c Column> {
        self.table
            .columns
            .iter()
            .filter(|c| self.is_moved(&c.name))
            .collect()
    }

    /// The first moved column: gone from the table once the switch has run.
    fn first_moved(&self) -> &str {
        &self.parts[0].moved[0].name
    }

    /// Columns the table keeps that take values (not generated).
    fn kept(&self) -> Vec<&'c Column> {
        self.table
            .columns
            .iter()
            .filter(|c| !self.is_moved(&c.name) && c.generated.is_none())
            .collect()
    }

    fn list(columns: &[&Column], prefix: &str) -> String {
        columns
            .iter()
            .map(|c| format!("{prefix}{}", ident(&c.name)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `(k1, k2) = (<prefix>k1, <prefix>k2)`.
    fn key_match(&self, prefix: &str) -> String {
        format!(
            "({}) = ({})",
            Self::list(&self.key, ""),
            Self::list(&self.key, prefix)
        )
    }

    /// `<alias>.k1 = t.k1 AND …`: a part's row of the table's.
    fn key_join(&self, alias: &str) -> String {
        self.key
            .iter()
            .map(|c| format!("{alias}.{n} = t.{n}", n = ident(&c.name)))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// A name for an index-backed object on a part: its own when the part lives in
    /// another schema (index names are per schema), else prefixed with the part's.
    fn object_name(&self, part: &Part, name: &str) -> String {
        if part.name.schema != self.table.name.schema {
            return name.to_string();
        }
        let mut out = format!("{}_{name}", part.name.name);
        while out.len() > 63 {
            out.pop();
        }
        out
    }

    fn steps(&self) -> Vec<Step> {
        let mut steps: Vec<Step> = self.parts.iter().map(|p| self.create_part(p)).collect();
        steps.push(self.follow_writes());
        steps.extend(self.parts.iter().map(|p| self.copy_rows(p)));
        steps.push(self.switch());
        steps
    }

    fn column_definition(c: &Column) -> String {
        let mut text = format!("{} {}", ident(&c.name), c.type_name);
        if let Some(d) = &c.default {
            text.push_str(&format!(" DEFAULT {d}"));
        }
        if c.not_null {
            text.push_str(" NOT NULL");
        }
        text
    }

    /// Constraints of the table's that name only columns going to `columns`.
    fn constraints_within<'s>(
        &'s self,
        columns: &'s [&Column],
    ) -> impl Iterator<Item = &'c crate::catalog::Constraint> + 's {
        self.table
            .constraints
            .iter()
            .filter(|c| !c.inherited && !c.columns.is_empty())
            .filter(move |c| {
                c.columns
                    .iter()
                    .all(|n| columns.iter().any(|m| &m.name == n))
            })
    }

    /// Step 2: a part, with what of the table's goes with its columns.
    fn create_part(&self, p: &Part) -> Step {
        let part = Self::part_name(p);
        let table = self.table_name();
        let mut columns: Vec<String> = self
            .key
            .iter()
            .map(|c| format!("{} {} NOT NULL", ident(&c.name), c.type_name))
            .chain(p.moved.iter().map(|c| Self::column_definition(c)))
            .collect();
        columns.push(format!("PRIMARY KEY ({})", Self::list(&self.key, "")));
        columns.push(format!(
            "FOREIGN KEY ({k}) REFERENCES {table} ({k}) ON UPDATE CASCADE ON DELETE CASCADE",
            k = Self::list(&self.key, "")
        ));
        let mut sql = format!("CREATE TABLE {part} ({});\n", columns.join(", "));
        let moved: Vec<String> = p.moved.iter().map(|c| c.name.clone()).collect();
        for c in self.constraints_within(&p.moved) {
            let name = match c.kind {
                ConstraintKind::Unique | ConstraintKind::Exclusion => self.object_name(p, &c.name),
                _ => c.name.clone(),
            };
            sql.push_str(&format!(
                "ALTER TABLE {part} ADD CONSTRAINT {} {};\n",
                ident(&name),
                c.definition
            ));
        }
        for i in self.moved_indexes(&p.moved) {
            sql.push_str(&format!("{};\n", self.index_on_part(p, i)));
        }
        sql.push_str(&format!(
            "ALTER TABLE {part} OWNER TO {};\n",
            ident(&self.table.owner)
        ));
        let column_grants: Vec<(&str, &[crate::catalog::Grant])> = self
            .key
            .iter()
            .chain(&p.moved)
            .map(|c| (c.name.as_str(), c.grants.as_slice()))
            .collect();
        sql.push_str(&grant_sql(
            &part,
            &self.table.owner,
            &self.table.grants,
            &column_grants,
        ));
        let usage = self.usage_needed(p);
        for who in &usage {
            sql.push_str(&format!(
                "GRANT USAGE ON SCHEMA {} TO {};\n",
                ident(&p.name.schema),
                super::grantee(who)
            ));
        }
        sql.push_str(&format!(
            "COMMENT ON TABLE {part} IS {};",
            lit(&format!(
                "carve split: the columns {} of {}, keyed as it is",
                moved.join(", "),
                self.table.name
            ))
        ));
        let mut undo = format!("DROP TABLE {part};");
        for who in &usage {
            undo.push_str(&format!(
                "\nREVOKE USAGE ON SCHEMA {} FROM {};",
                ident(&p.name.schema),
                super::grantee(who)
            ));
        }
        Step::sql(
            format!("create part {}", p.name),
            format!(
                "table {} for the columns {} of {}, same key, owned and granted as the table",
                p.name,
                moved.join(", "),
                self.table.name
            ),
            Target::Source,
            SqlAction::transactional(
                sql,
                relation_exists(&p.name.schema, &p.name.name, "'r'"),
                undo,
            ),
        )
    }

    /// The table's grantees (and PUBLIC) without USAGE on the part's schema.
    fn usage_needed(&self, p: &Part) -> Vec<String> {
        let schema = self
            .catalog
            .schemas
            .iter()
            .find(|s| s.name == p.name.schema);
        let has = |who: &str| {
            schema.is_some_and(|s| {
                s.owner == who
                    || s.grants.iter().any(|g| {
                        g.privilege == "USAGE" && (g.grantee == who || g.grantee == "PUBLIC")
                    })
            })
        };
        let who: BTreeSet<String> = self
            .table
            .grants
            .iter()
            .chain(self.table.columns.iter().flat_map(|c| &c.grants))
            .filter(|g| g.grantee != self.table.owner && !has(&g.grantee))
            .map(|g| g.grantee.clone())
            .collect();
        who.into_iter().collect()
    }

    /// Secondary indexes (not behind a constraint) on `columns` only.
    fn moved_indexes(&self, columns: &[&Column]) -> Vec<&'c crate::catalog::Index> {
        self.table
            .indexes
            .iter()
            .filter(|i| i.constraint.is_none() && !i.columns.is_empty())
            .filter(|i| {
                i.columns
                    .iter()
                    .all(|c| columns.iter().any(|m| &m.name == c))
            })
            .collect()
    }

    /// An index of the table's, made again on a part.
    fn index_on_part(&self, p: &Part, index: &crate::catalog::Index) -> String {
        let on_table = format!(" ON {} ", self.table_name());
        let on_table_plain = format!(
            " ON {}.{} ",
            crate::sql::ident_as_printed(&self.table.name.schema),
            crate::sql::ident_as_printed(&self.table.name.name)
        );
        let rest = index
            .definition
            .split_once(&on_table)
            .or_else(|| index.definition.split_once(&on_table_plain))
            .map(|(_, rest)| rest.to_string())
            .unwrap_or_default();
        format!(
            "CREATE {}INDEX {} ON {} {rest}",
            if index.unique { "UNIQUE " } else { "" },
            ident(&self.object_name(p, &index.name)),
            Self::part_name(p)
        )
    }

    /// The upsert of one row's moved columns into a part.
    fn upsert(&self, p: &Part, from: &str) -> String {
        let all: Vec<&Column> = self.key.iter().chain(&p.moved).copied().collect();
        format!(
            "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO UPDATE SET {}",
            Self::part_name(p),
            Self::list(&all, ""),
            Self::list(&all, from),
            Self::list(&self.key, ""),
            p.moved
                .iter()
                .map(|c| format!("{n} = EXCLUDED.{n}", n = ident(&c.name)))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }

    /// One of the split's trigger functions (`FUNCTIONS`) and its trigger
    /// `carve_split_<what>` (`when` and the events, on `on`): the function runs as
    /// the table's owner, with a search path nothing can hijack.
    fn trigger_sql(&self, what: &str, body: &str, when: &str, on: &str) -> String {
        let function = self.function(what);
        format!(
            "CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS {};\nALTER FUNCTION {function}() OWNER TO {};\nCREATE TRIGGER carve_split_{what} {when} ON {on} FOR EACH ROW EXECUTE FUNCTION {function}();\n",
            dollar_quoted(body),
            ident(&self.table.owner),
        )
    }

    /// Drops a trigger `trigger_sql` made on the table, and its function.
    fn drop_table_trigger_sql(&self, what: &str) -> String {
        format!(
            "DROP TRIGGER carve_split_{what} ON {};\nDROP FUNCTION {}();\n",
            self.table_name(),
            self.function(what)
        )
    }

    fn follow_writes_sql(&self) -> String {
        let upserts: String = self
            .parts
            .iter()
            .map(|p| format!("{}; ", self.upsert(p, "NEW.")))
            .collect();
        self.trigger_sql(
            "sync",
            &format!("BEGIN {upserts}RETURN NULL; END"),
            "AFTER INSERT OR UPDATE",
            &self.table_name(),
        )
    }

    /// Whether the first moved column is still in the table (the switch not run).
    fn not_switched(&self) -> String {
        format!(
            "EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = pg_catalog.to_regclass({}) AND attname = {} AND NOT attisdropped)",
            lit(&self.table_name()),
            lit(self.first_moved())
        )
    }

    /// Step 3: every write to the table from now on reaches the parts too.
    fn follow_writes(&self) -> Step {
        let parts = self.part_list();
        Step::sql(
            format!("keep {parts} in step with {}", self.table.name),
            format!(
                "a trigger on {} writes each inserted or updated row's moved columns into {parts} (deletes cascade)",
                self.table.name
            ),
            Target::Source,
            SqlAction::transactional(
                self.follow_writes_sql(),
                format!(
                    "EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = pg_catalog.to_regclass({}) AND tgname = 'carve_split_sync') OR NOT {}",
                    lit(&self.table_name()),
                    self.not_switched()
                ),
                self.drop_table_trigger_sql("sync"),
            ),
        )
    }

    /// Step 4, per part: the rows there already, in batches of the key's order, each
    /// batch committed; a run killed half-way starts again and skips what is there.
    fn copy_rows(&self, p: &Part) -> Step {
        let all: Vec<&Column> = self.key.iter().chain(&p.moved).copied().collect();
        let columns = Self::list(&all, "");
        let key = Self::list(&self.key, "");
        let last: Vec<String> = (0..self.key.len()).map(|i| format!("last_{i}")).collect();
        let declare: String = self
            .key
            .iter()
            .zip(&last)
            .map(|(c, v)| format!("{v} {}; ", c.type_name))
            .collect();
        let batch = |filter: &str| {
            format!(
                "WITH batch AS (SELECT {columns} FROM {table}{filter} ORDER BY {key} LIMIT {BATCH_ROWS}), copied AS (INSERT INTO {part} ({columns}) SELECT {columns} FROM batch ON CONFLICT ({key}) DO NOTHING) SELECT {key} INTO {last} FROM batch ORDER BY {desc} LIMIT 1;",
                table = self.table_name(),
                part = Self::part_name(p),
                last = last.join(", "),
                desc = self
                    .key
                    .iter()
                    .map(|c| format!("{} DESC", ident(&c.name)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let body = format!(
            "DECLARE {declare}started boolean := false; BEGIN LOOP IF started THEN {} ELSE {} END IF; EXIT WHEN NOT FOUND; started := true; COMMIT; END LOOP; END",
            batch(&format!(" WHERE ({key}) > ({})", last.join(", "))),
            batch("")
        );
        // Every row has its part. Run as a string (query_to_xml) only once the part
        // exists: the check is also asked before it is made (a dry-run) and after an
        // undo dropped it, and naming a missing table fails before any CASE could
        // skip it.
        let rows_without_part = format!(
            "SELECT count(*) AS n FROM {} t WHERE NOT EXISTS (SELECT 1 FROM {} p WHERE {})",
            self.table_name(),
            Self::part_name(p),
            self.key_join("p")
        );
        let missing = format!(
            "CASE WHEN pg_catalog.to_regclass({}) IS NULL THEN false ELSE (pg_catalog.xpath('/row/n/text()', pg_catalog.query_to_xml({}, false, true, '')))[1]::text = '0' END",
            lit(&Self::part_name(p)),
            lit(&rows_without_part)
        );
        Step::sql(
            format!("copy {} into {}", self.table.name, p.name),
            format!(
                "the moved columns of every row of {} into {}, {BATCH_ROWS} rows per transaction while writes go on",
                self.table.name, p.name
            ),
            Target::Source,
            SqlAction {
                sql: format!("DO {};", dollar_quoted(&body)),
                // Done once every row has its part, or once the switch dropped the
                // columns (the table has no row without one then).
                done_check: format!("NOT {} OR {missing}", self.not_switched()),
                undo: "SELECT 1;".into(),
                // Each batch commits on its own.
                transactional: false,
                strong_lock: false,
                secret: None,
                read: None,
            },
        )
    }

    /// The view over the table and its parts, as the old name: every column in the
    /// table's order, the table's defaults, owned, granted and commented as assign
    /// made it.
    fn joined_view_sql(&self) -> String {
        let view = self.view_name();
        let columns: Vec<String> = self
            .table
            .columns
            .iter()
            .map(|c| {
                let from = match self.position_of(&c.name) {
                    Some(i) => Self::alias(i),
                    None => "t".into(),
                };
                format!("{from}.{}", ident(&c.name))
            })
            .collect();
        let joins: String = self
            .parts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let alias = Self::alias(i);
                format!(
                    " JOIN {} {alias} ON {}",
                    Self::part_name(p),
                    self.key_join(&alias)
                )
            })
            .collect();
        let mut sql = format!(
            "CREATE VIEW {view}{} AS SELECT {} FROM {} t{joins};\n",
            crate::phases::cutover::replica::view_options(self.view),
            columns.join(", "),
            self.table_name(),
        );
        for c in self.table.columns.iter().filter(|c| c.generated.is_none()) {
            if let Some(d) = &c.default {
                sql.push_str(&format!(
                    "ALTER VIEW {view} ALTER COLUMN {} SET DEFAULT {d};\n",
                    ident(&c.name)
                ));
            }
        }
        sql.push_str(&self.view_ownership());
        sql
    }

    /// The view's owner, grants and comment, as the catalog has them.
    fn view_ownership(&self) -> String {
        let view = self.view_name();
        let column_grants: Vec<(&str, &[crate::catalog::Grant])> = self
            .view
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.grants.as_slice()))
            .collect();
        format!(
            "ALTER VIEW {view} OWNER TO {};\n{}{}",
            ident(&self.view.owner),
            grant_sql(&view, &self.view.owner, &self.view.grants, &column_grants),
            self.view
                .comment
                .as_deref()
                .map(|c| format!("COMMENT ON VIEW {view} IS {};\n", lit(c)))
                .unwrap_or_default()
        )
    }

    /// The `INSTEAD OF` trigger's function: each write to the part that owns the
    /// columns, an UPDATE naming only the columns that changed. It runs as the
    /// table's owner: the view's own privileges (column by column, once restrict has
    /// granted them) decide who may write what, and a delete takes the parts' rows
    /// with the table's.
    fn write_function_sql(&self) -> String {
        let kept = self.kept();
        let changed_sets = |columns: &[&Column]| -> String {
            columns
                .iter()
                .map(|c| {
                    let n = ident(&c.name);
                    format!(
                        "IF NEW.{n} IS DISTINCT FROM OLD.{n} THEN sets := sets || {}; END IF; ",
                        lit(&format!(", {n} = ($1).{n}"))
                    )
                })
                .collect()
        };
        // The row trigger made each part's row with defaults as the table's row
        // went in: these fill them.
        let inserts: String = self
            .parts
            .iter()
            .map(|p| {
                format!(
                    "{} RETURNING {} INTO {}; ",
                    self.upsert(p, "NEW."),
                    Self::list(&p.moved, ""),
                    Self::list(&p.moved, "NEW.")
                )
            })
            .collect();
        let updates: String = self
            .parts
            .iter()
            .map(|p| {
                let part_columns: Vec<&Column> = self.key.iter().chain(&p.moved).copied().collect();
                format!(
                    "sets := ''; {part_sets}\
IF sets <> '' THEN EXECUTE {update_part} || substr(sets, 3) || {where_new} USING NEW; \
GET DIAGNOSTICS n = ROW_COUNT; \
IF n = 0 THEN INSERT INTO {part} ({part_cols}) VALUES ({new_part}); END IF; END IF; ",
                    part_sets = changed_sets(&p.moved),
                    update_part = lit(&format!("UPDATE {} SET ", Self::part_name(p))),
                    where_new = lit(&format!(" WHERE {}", self.key_match("($1)."))),
                    part = Self::part_name(p),
                    part_cols = Self::list(&part_columns, ""),
                    new_part = Self::list(&part_columns, "NEW."),
                )
            })
            .collect();
        let body = format!(
            "DECLARE sets text; n bigint; BEGIN \
IF TG_OP = 'INSERT' THEN \
INSERT INTO {table} ({kept}) VALUES ({new_kept}) RETURNING {kept} INTO {new_kept}; \
{inserts}\
RETURN NEW; \
ELSIF TG_OP = 'UPDATE' THEN \
sets := ''; {table_sets}\
IF sets <> '' THEN EXECUTE {update_table} || substr(sets, 3) || {where_old} USING NEW, OLD; END IF; \
{updates}\
RETURN NEW; \
ELSE \
DELETE FROM {table} WHERE {key_old}; \
IF NOT FOUND THEN RETURN NULL; END IF; \
RETURN OLD; \
END IF; END",
            table = self.table_name(),
            kept = Self::list(&kept, ""),
            new_kept = Self::list(&kept, "NEW."),
            table_sets = changed_sets(&kept),
            update_table = lit(&format!("UPDATE {} SET ", self.table_name())),
            where_old = lit(&format!(" WHERE {}", self.key_match("($2)."))),
            key_old = self.key_match("OLD."),
        );
        self.trigger_sql(
            "write",
            &body,
            "INSTEAD OF INSERT OR UPDATE OR DELETE",
            &self.view_name(),
        )
    }

    /// After the switch, a row written straight into the table (by its owner, or
    /// by a role whose own schema it is) gets each part's row too, with the moved
    /// columns' defaults: every row has all of them, so the view is an inner join,
    /// which `SELECT … FOR UPDATE` through it can lock (an outer join's nullable
    /// side cannot be).
    fn row_function_sql(&self) -> String {
        let key = Self::list(&self.key, "");
        let inserts: String = self
            .parts
            .iter()
            .map(|p| {
                format!(
                    "INSERT INTO {} ({key}) VALUES ({}) ON CONFLICT ({key}) DO NOTHING; ",
                    Self::part_name(p),
                    Self::list(&self.key, "NEW."),
                )
            })
            .collect();
        let body = format!("BEGIN {inserts}RETURN NULL; END");
        self.trigger_sql("row", &body, "AFTER INSERT", &self.table_name())
    }

    /// Step 5: from the table with every column to the parts behind the view.
    fn switch(&self) -> Step {
        let table = self.table_name();
        let view = self.view_name();
        let moved = self.moved();
        let drops: Vec<String> = moved
            .iter()
            .map(|c| format!("DROP COLUMN {}", ident(&c.name)))
            .collect();
        // Locked in the order writers take them (the view, then the tables beneath
        // it, then the parts the trigger writes), so a writer waits instead of
        // deadlocking with the switch.
        let mut lock = format!("LOCK TABLE {view} IN ACCESS EXCLUSIVE MODE;");
        for p in &self.parts {
            lock.push_str(&format!(
                "\nLOCK TABLE {} IN ACCESS EXCLUSIVE MODE;",
                Self::part_name(p)
            ));
        }
        let sql = format!(
            "{lock}\n{}DROP VIEW {view};\nALTER TABLE {table} {};\n{}{}{}",
            self.drop_table_trigger_sql("sync"),
            drops.join(", "),
            self.joined_view_sql(),
            self.write_function_sql(),
            self.row_function_sql()
        );
        // The undo: the columns back (last, in the table's order), filled from the
        // parts, with what went with them; the view as assign made it; the trigger
        // that keeps the parts in step.
        let adds: Vec<String> = moved
            .iter()
            .map(|c| {
                let mut text = format!("ADD COLUMN {} {}", ident(&c.name), c.type_name);
                if let Some(d) = &c.default {
                    text.push_str(&format!(" DEFAULT {d}"));
                }
                text
            })
            .collect();
        let fill: String = self
            .parts
            .iter()
            .map(|p| {
                format!(
                    "UPDATE {table} t SET {} FROM {} p WHERE {};\n",
                    p.moved
                        .iter()
                        .map(|c| format!("{n} = p.{n}", n = ident(&c.name)))
                        .collect::<Vec<_>>()
                        .join(", "),
                    Self::part_name(p),
                    self.key_join("p")
                )
            })
            .collect();
        // The table's own triggers are not fired by the refill: its rows do not
        // change, they get their columns back.
        let mut undo = format!(
            "{lock}\nDROP VIEW {view};\nDROP FUNCTION {}();\n{}ALTER TABLE {table} {};\nSET LOCAL session_replication_role = replica;\n{fill}SET LOCAL session_replication_role = DEFAULT;\n",
            self.function("write"),
            self.drop_table_trigger_sql("row"),
            adds.join(", ")
        );
        for c in moved.iter().filter(|c| c.not_null) {
            undo.push_str(&format!(
                "ALTER TABLE {table} ALTER COLUMN {} SET NOT NULL;\n",
                ident(&c.name)
            ));
        }
        for p in &self.parts {
            for c in self.constraints_within(&p.moved) {
                undo.push_str(&format!(
                    "ALTER TABLE {table} ADD CONSTRAINT {} {};\n",
                    ident(&c.name),
                    c.definition
                ));
            }
            for i in self.moved_indexes(&p.moved) {
                undo.push_str(&format!("{};\n", i.definition));
            }
        }
        let column_grants: Vec<(&str, &[crate::catalog::Grant])> = moved
            .iter()
            .map(|c| (c.name.as_str(), c.grants.as_slice()))
            .collect();
        undo.push_str(&grant_sql(&table, &self.table.owner, &[], &column_grants));
        for c in &moved {
            if let Some(comment) = &c.comment {
                undo.push_str(&format!(
                    "COMMENT ON COLUMN {table}.{} IS {};\n",
                    ident(&c.name),
                    lit(comment)
                ));
            }
        }
        undo.push_str(&format!(
            "CREATE VIEW {view}{} AS {};\n{}{}",
            crate::phases::cutover::replica::view_options(self.view),
            self.view.definition.trim().trim_end_matches(';'),
            self.view_ownership(),
            self.follow_writes_sql()
        ));
        let trailing = self
            .table
            .columns
            .iter()
            .rev()
            .take(moved.len())
            .all(|c| self.is_moved(&c.name));
        let names: Vec<&str> = moved.iter().map(|c| c.name.as_str()).collect();
        Step::sql(
            format!("switch {} to its parts", self.view.name),
            format!(
                "{} loses the columns {} to {}; {} becomes a view over {} that takes every write to the part that owns the columns{}",
                self.table.name,
                names.join(", "),
                self.part_list(),
                self.view.name,
                if self.parts.len() == 1 { "both" } else { "all of them" },
                if trailing {
                    String::new()
                } else {
                    " (an undo adds the columns back last)".to_string()
                }
            ),
            Target::Source,
            SqlAction {
                sql,
                done_check: format!("NOT {}", self.not_switched()),
                undo,
                transactional: true,
                strong_lock: true,
                secret: None,
                read: None,
            },
        )
    }
}

/// Whether `definition` (as PostgreSQL prints it) names `column` as a whole word.
fn mentions(definition: &str, column: &str) -> bool {
    let printed = crate::sql::ident_as_printed(column);
    let word = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
    definition.match_indices(&printed).any(|(at, _)| {
        let before = definition[..at].chars().next_back();
        let after = definition[at + printed.len()..].chars().next();
        !before.is_some_and(word) && !after.is_some_and(word)
    })
}

/// Step 1, when the part's domain has no schema yet: made and marked.
fn create_schema(schema: &str) -> Step {
    let name = ident(schema);
    Step::sql(
        format!("create schema {}", display_ident(schema)),
        format!(
            "schema {} for the parts split into it",
            display_ident(schema)
        ),
        Target::Source,
        SqlAction::transactional(
            format!(
                "CREATE SCHEMA {name};\nCOMMENT ON SCHEMA {name} IS {};",
                lit(&schema_marker(schema))
            ),
            super::schema_exists(schema),
            super::drop_schema_if_marked(schema, &schema_marker(schema)),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::testing::{catalog, column, grant, primary_key, table};
    use crate::catalog::{Constraint, FkAction, ForeignKey, Identity, ViewDependency};
    use crate::phases::assign::COMPAT_VIEW_COMMENT;
    use crate::plan::testing::plan_for;

    /// sales.books (id key, title, copies, shelf; a check on copies), assigned
    /// behind public.books; the plan splits copies and shelf into
    /// inventory.stock.
    fn library() -> (Catalog, Plan) {
        let mut books = table("sales", "books");
        books.columns = vec![
            Column {
                not_null: true,
                default: Some("nextval('sales.books_id_seq'::regclass)".into()),
                ..column("id", "bigint")
            },
            column("title", "text"),
            Column {
                not_null: true,
                default: Some("0".into()),
                ..column("copies", "integer")
            },
            column("shelf", "text"),
        ];
        books.constraints = vec![
            primary_key("books_pkey", &["id"]),
            Constraint {
                name: "books_copies_check".into(),
                kind: ConstraintKind::Check,
                columns: vec!["copies".into()],
                definition: "CHECK ((copies >= 0))".into(),
                deferrable: false,
                initially_deferred: false,
                inherited: false,
                foreign_key: None,
            },
        ];
        books.grants = vec![grant("clerk", "UPDATE")];
        let mut c = catalog(vec![books]);
        c.views = vec![View {
            name: QualName::new("public", "books"),
            materialized: false,
            owner: "app".into(),
            definition:
                " SELECT books.id, books.title, books.copies, books.shelf FROM sales.books;".into(),
            columns: vec![],
            options: vec!["security_invoker=true".into()],
            depends_on: vec![ViewDependency {
                relation: QualName::new("sales", "books"),
                columns: vec![],
            }],
            triggers: vec![],
            comment: Some(format!("{COMPAT_VIEW_COMMENT}sales.books")),
            grants: vec![grant("clerk", "UPDATE")],
        }];
        c.normalize();
        let mut plan = plan_for(&c, &[("sales", &["public.books"]), ("inventory", &[])]);
        plan.splits.push(Split {
            table: "public.books".into(),
            part: "stock".into(),
            domain: Some("inventory".into()),
            columns: vec!["copies".into(), "shelf".into()],
        });
        (c, plan)
    }

    #[test]
    fn a_split_is_a_part_a_trigger_a_batched_copy_and_a_switch_each_with_its_undo() {
        let (c, plan) = library();
        let planned = super::plan(&plan, &c).unwrap();
        let ids: Vec<&str> = planned.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "create schema inventory",
                "create part inventory.stock",
                "keep inventory.stock in step with sales.books",
                "copy sales.books into inventory.stock",
                "switch public.books to its parts",
            ]
        );
        assert_eq!(planned.hints.creates_schemas, ["inventory"]);
        assert!(planned.hints.touches.contains(&"sales.books".to_string()));
        let sql = |i: usize| planned.steps[i].sql_action().unwrap().clone();
        let part = sql(1);
        assert!(part.sql.starts_with("CREATE TABLE \"inventory\".\"stock\" (\"id\" bigint NOT NULL, \"copies\" integer DEFAULT 0 NOT NULL, \"shelf\" text, PRIMARY KEY (\"id\"), FOREIGN KEY (\"id\") REFERENCES \"sales\".\"books\" (\"id\") ON UPDATE CASCADE ON DELETE CASCADE);"), "{}", part.sql);
        // The check on the moved column goes with it; the grantee may use the schema.
        assert!(part
            .sql
            .contains("ADD CONSTRAINT \"books_copies_check\" CHECK ((copies >= 0))"));
        assert!(part
            .sql
            .contains("GRANT USAGE ON SCHEMA \"inventory\" TO \"clerk\""));
        assert!(part
            .undo
            .contains("REVOKE USAGE ON SCHEMA \"inventory\" FROM \"clerk\""));
        let copy = sql(3);
        assert!(!copy.transactional, "each batch commits on its own");
        assert!(
            copy.sql.contains("ON CONFLICT (\"id\") DO NOTHING") && copy.sql.contains("COMMIT;")
        );
        let switch = sql(4);
        assert!(switch.strong_lock);
        // The view first, as writers lock it, then the part.
        assert!(switch.sql.starts_with("LOCK TABLE \"public\".\"books\" IN ACCESS EXCLUSIVE MODE;\nLOCK TABLE \"inventory\".\"stock\""), "{}", switch.sql);
        assert!(switch.sql.contains(
            "ALTER TABLE \"sales\".\"books\" DROP COLUMN \"copies\", DROP COLUMN \"shelf\";"
        ));
        assert!(switch.sql.contains("AS SELECT t.\"id\", t.\"title\", p.\"copies\", p.\"shelf\" FROM \"sales\".\"books\" t JOIN \"inventory\".\"stock\" p ON p.\"id\" = t.\"id\";"), "{}", switch.sql);
        assert!(switch
            .sql
            .contains("ALTER VIEW \"public\".\"books\" ALTER COLUMN \"copies\" SET DEFAULT 0;"));
        assert!(switch
            .sql
            .contains("INSTEAD OF INSERT OR UPDATE OR DELETE ON \"public\".\"books\""));
        // An UPDATE through the view names only the columns that changed.
        assert!(switch.sql.contains("IF NEW.\"copies\" IS DISTINCT FROM OLD.\"copies\" THEN sets := sets || ', \"copies\" = ($1).\"copies\"'; END IF;"), "{}", switch.sql);
        assert!(switch.undo.contains("ALTER TABLE \"sales\".\"books\" ADD COLUMN \"copies\" integer DEFAULT 0, ADD COLUMN \"shelf\" text;"), "{}", switch.undo);
        assert!(switch.undo.contains("SET LOCAL session_replication_role = replica;\nUPDATE \"sales\".\"books\" t SET \"copies\" = p.\"copies\", \"shelf\" = p.\"shelf\" FROM \"inventory\".\"stock\" p WHERE p.\"id\" = t.\"id\";"), "{}", switch.undo);
        assert!(switch.undo.contains("ALTER COLUMN \"copies\" SET NOT NULL"));
        assert!(switch
            .undo
            .contains("ADD CONSTRAINT \"books_copies_check\""));
        assert!(switch.undo.contains(
            "CREATE VIEW \"public\".\"books\" WITH (security_invoker=true) AS SELECT books.id"
        ));
        // The moved columns were the last: nothing said about their place.
        assert!(!planned.steps[4].description.contains("last"));
    }

    #[test]
    fn two_splits_of_one_table_make_one_view_over_the_table_and_both_parts() {
        let (mut c, mut plan) = library();
        c.schemas.push(crate::catalog::Schema {
            name: "sales".into(),
            owner: "app".into(),
            comment: None,
            grants: vec![],
        });
        plan.splits.push(Split {
            table: "public.books".into(),
            part: "titles".into(),
            domain: None,
            columns: vec!["title".into()],
        });
        let planned = super::plan(&plan, &c).unwrap();
        let ids: Vec<&str> = planned.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "create schema inventory",
                "create part inventory.stock",
                "create part sales.titles",
                "keep inventory.stock, sales.titles in step with sales.books",
                "copy sales.books into inventory.stock",
                "copy sales.books into sales.titles",
                "switch public.books to its parts",
            ]
        );
        let shapes: Vec<(String, Vec<String>)> = planned
            .shapes
            .iter()
            .map(|s| (s.part.to_string(), s.moved.clone()))
            .collect();
        assert_eq!(
            shapes,
            [
                (
                    "inventory.stock".into(),
                    vec!["copies".into(), "shelf".into()]
                ),
                ("sales.titles".into(), vec!["title".into()]),
            ]
        );
        let sql = |i: usize| planned.steps[i].sql_action().unwrap().clone();
        let sync = sql(3);
        assert!(
            sync.sql.contains("INSERT INTO \"inventory\".\"stock\"")
                && sync.sql.contains("INSERT INTO \"sales\".\"titles\""),
            "one trigger keeps both parts in step: {}",
            sync.sql
        );
        let switch = sql(6);
        assert!(switch.sql.contains("LOCK TABLE \"inventory\".\"stock\" IN ACCESS EXCLUSIVE MODE;\nLOCK TABLE \"sales\".\"titles\" IN ACCESS EXCLUSIVE MODE;"), "{}", switch.sql);
        assert!(switch.sql.contains(
            "ALTER TABLE \"sales\".\"books\" DROP COLUMN \"title\", DROP COLUMN \"copies\", DROP COLUMN \"shelf\";"
        ), "{}", switch.sql);
        assert!(switch.sql.contains("AS SELECT t.\"id\", p2.\"title\", p.\"copies\", p.\"shelf\" FROM \"sales\".\"books\" t JOIN \"inventory\".\"stock\" p ON p.\"id\" = t.\"id\" JOIN \"sales\".\"titles\" p2 ON p2.\"id\" = t.\"id\";"), "{}", switch.sql);
        // A new row gets both parts' rows; an update reaches the part it sets.
        assert!(switch.sql.contains("INSERT INTO \"sales\".\"titles\" (\"id\") VALUES (NEW.\"id\") ON CONFLICT (\"id\") DO NOTHING;"), "{}", switch.sql);
        assert!(
            switch.sql.contains("'UPDATE \"sales\".\"titles\" SET '"),
            "{}",
            switch.sql
        );
        // The undo adds the columns back in the table's order, filled from each part.
        assert!(switch.undo.contains("ADD COLUMN \"title\" text, ADD COLUMN \"copies\" integer DEFAULT 0, ADD COLUMN \"shelf\" text;"), "{}", switch.undo);
        assert!(switch.undo.contains("UPDATE \"sales\".\"books\" t SET \"title\" = p.\"title\" FROM \"sales\".\"titles\" p WHERE p.\"id\" = t.\"id\";"), "{}", switch.undo);
        // Every column but the key moved: they were the last, the undo is exact.
        assert!(!planned.steps[6].description.contains("last"));
        // `carve plan` forecasts the same: the table keeps its key, each part its
        // columns, and the old name reads all three.
        let after = crate::phases::forecast::after_split(&c, &planned.shapes);
        let columns = |schema: &str, name: &str| -> Vec<String> {
            after
                .table(&QualName::new(schema, name))
                .unwrap()
                .columns
                .iter()
                .map(|c| c.name.clone())
                .collect()
        };
        assert_eq!(columns("sales", "books"), ["id"]);
        assert_eq!(columns("inventory", "stock"), ["id", "copies", "shelf"]);
        assert_eq!(columns("sales", "titles"), ["id", "title"]);
        let view = after.view(&QualName::new("public", "books")).unwrap();
        assert_eq!(view.depends_on.len(), 3);
    }

    #[test]
    fn what_a_split_cannot_do_is_refused_with_every_reason() {
        type Edit = fn(&mut Catalog, &mut Plan);
        let cases: &[(&str, Edit)] = &[
            ("no primary key", |c, _| {
                c.tables[0]
                    .constraints
                    .retain(|k| k.kind != ConstraintKind::PrimaryKey)
            }),
            ("identity column", |c, _| {
                c.tables[0].columns[0].identity = Some(Identity::Always)
            }),
            ("has no column nope", |_, p| {
                p.splits[0].columns.push("nope".into())
            }),
            ("is the key", |_, p| p.splits[0].columns.push("id".into())),
            ("no domain \"nowhere\"", |_, p| {
                p.splits[0].domain = Some("nowhere".into())
            }),
            ("not a compatibility view", |_, p| {
                p.splits[0].table = "public.nothing".into()
            }),
            ("goes to two parts", |_, p| {
                p.splits.push(p.splits[0].clone())
            }),
            ("is named by two splits", |_, p| {
                let mut again = p.splits[0].clone();
                again.columns = vec!["title".into()];
                p.splits.push(again)
            }),
            ("on an expression of moved columns", |c, _| {
                c.tables[0].indexes.push(crate::catalog::Index {
                    name: "books_shelf_lower".into(),
                    definition:
                        "CREATE INDEX books_shelf_lower ON sales.books USING btree (lower(shelf))"
                            .into(),
                    unique: false,
                    primary: false,
                    columns: vec![],
                    constraint: None,
                })
            }),
            ("names columns of two parts", |c, _| {
                let check = c.tables[0].constraints.iter_mut();
                let check = check.filter(|k| k.kind == ConstraintKind::Check);
                check.for_each(|k| k.columns.push("title".into()))
            }),
            ("points at moved columns", |c, _| {
                let mut loans = table("sales", "loans");
                loans.constraints.push(Constraint {
                    name: "loans_shelf_fkey".into(),
                    kind: ConstraintKind::ForeignKey,
                    columns: vec!["total".into()],
                    definition: "FOREIGN KEY (total) REFERENCES sales.books(shelf)".into(),
                    deferrable: false,
                    initially_deferred: false,
                    inherited: false,
                    foreign_key: Some(ForeignKey {
                        references: QualName::new("sales", "books"),
                        referenced_columns: vec!["shelf".into()],
                        on_update: FkAction::NoAction,
                        on_delete: FkAction::NoAction,
                        match_full: false,
                    }),
                });
                c.tables.push(loans);
                c.normalize();
            }),
            ("reads moved columns", |c, _| {
                let mut v = c.views[0].clone();
                v.name = QualName::new("public", "shelves");
                v.comment = None;
                v.depends_on[0].columns = vec!["shelf".into()];
                c.views.push(v);
                c.normalize();
            }),
        ];
        for (says, edit) in cases {
            let (mut c, mut plan) = library();
            edit(&mut c, &mut plan);
            let Err(errors) = super::plan(&plan, &c) else {
                panic!("{says}: planned");
            };
            assert!(
                errors
                    .iter()
                    .any(|e| e.contains(says) && e.starts_with("split of public.")),
                "{says}: {errors:?}"
            );
        }
    }
}
