//! A split table whose parts are in other domains than the table (the shop's
//! orders: the orders domain holds the table, payments' domain its part). Each side
//! moves with its own domain, the table's first:
//!
//! **The table's side** (`table_side`), while the parts stay on the source:
//! - on the domain's server the old name is a view over the table alone, with the
//!   table's columns: its writers write through it as before (an owner's-rights,
//!   automatically updatable view, granted as on the source). The split's row
//!   trigger stays behind: it writes the parts, which are not there;
//! - on the source, a trigger that fires for replicated rows too (`ENABLE ALWAYS`)
//!   gives each part a row for every row of the table, moves it with a changed
//!   key and removes it with its row, once the table's rows come back from the
//!   domain's server after cut-over (the split's own trigger and cascading key do
//!   not fire for replicated changes).
//!
//! **A part's side** (`part_side`), once the table's domain is cut over: the part
//! goes to its domain's server like any table; there
//! - the old name is a view over the part and the copy of the table's columns its
//!   services read (a `replicate` decision, `reads`), whose trigger writes the
//!   part's columns and refuses the table's (they are written on the table's
//!   server);
//! - a trigger on that copy makes, moves and removes the part's rows as the
//!   table's rows arrive, change key and go, enabled only once the part's domain is cut over (`switch_steps`):
//!   before, the part's rows come from the source.
//!
//! Each part's rows are made only where the part is written: both triggers do
//! nothing while the part is fenced on their side (`cutover::fence`) or put
//! aside by a retire, and a switch fills in the rows of the table's rows that
//! came while neither made them.
//!
//! **Retire** (`retire_refusals`, `beside_retired`): the table's domain once its
//! parts' domains are cut over; the view on the source becomes a read-only join of
//! what the retire keeps with every column of the other domains' relations.

use std::collections::BTreeSet;

use super::super::{grant_sql, lit, relation_exists};
use crate::catalog::{Catalog, QualName, Table, View};
use crate::engine::{SqlAction, Step, Target};
use crate::phases::assign::is_compat_view;
use crate::phases::cutover::fence;
use crate::phases::cutover::replica::{identity_columns, Replica};
use crate::plan::{Plan, Side};
use crate::sql::{display_ident, dollar_quoted, ident, ident_list, qualified};

/// The trigger a split leaves on its table: it makes each part's row as a row
/// goes in (`phases::split`).
pub const ROW_TRIGGER: &str = "carve_split_row";

/// The trigger the table's move adds on the source (see the module doc).
pub const FOLLOW_TRIGGER: &str = "carve_move_follow";

/// The trigger a part's move adds on the copy of the table on its server.
pub const PART_ROWS_TRIGGER: &str = "carve_part_rows";

/// The `INSTEAD OF` trigger of the old name on a part's server.
pub const PART_WRITE_TRIGGER: &str = "carve_part_write";

/// A split whose table and parts are in different domains.
#[derive(Debug, Clone)]
pub struct SplitAcross<'c> {
    /// The old name: assign's view over the table and its parts.
    pub view: &'c View,
    pub table: &'c Table,
    /// The parts this side is about: all of them on the table's side, those of
    /// the moving domain on a part's side.
    pub parts: Vec<&'c QualName>,
}

/// Every split the catalog shows, with every part.
fn splits<'c>(catalog: &'c Catalog) -> impl Iterator<Item = SplitAcross<'c>> {
    catalog
        .views
        .iter()
        .filter_map(|view| split_of(catalog, view))
}

/// The split `view` stands for, when it does: assign's view over a table that
/// carries the split's row trigger and its parts.
fn split_of<'c>(catalog: &'c Catalog, view: &'c View) -> Option<SplitAcross<'c>> {
    if view.materialized || view.depends_on.len() < 2 || !is_compat_view(view) {
        return None;
    }
    // The table is the relation beneath that carries the split's row trigger.
    let table = view
        .depends_on
        .iter()
        .filter_map(|d| catalog.table(&d.relation))
        .find(|t| t.triggers.iter().any(|t| t.name == ROW_TRIGGER))?;
    let parts = view
        .depends_on
        .iter()
        .map(|d| &d.relation)
        .filter(|r| **r != table.name)
        .collect();
    Some(SplitAcross { view, table, parts })
}

/// For a retire of `domain`: the relations of a split across domains that `view`
/// joins and that are in other domains, each with every column it has, to join
/// with what the retire keeps of `domain`'s (`cutover::retire`); none for any
/// other view.
pub fn beside_retired(catalog: &Catalog, view: &View, domain: &str) -> Vec<Replica> {
    let Some(split) = split_of(catalog, view) else {
        return Vec::new();
    };
    std::iter::once(&split.table.name)
        .chain(split.parts.iter().copied())
        .filter(|r| r.schema != domain)
        .filter_map(|r| catalog.table(r))
        .map(|t| Replica {
            table: t.name.clone(),
            columns: t.columns.iter().map(|c| c.name.clone()).collect(),
            readers: Vec::new(),
            every_column_because: None,
            rows: None,
        })
        .collect()
}

/// Why `domain` may not retire yet: a split's table whose parts' domains are not
/// cut over, whose writers write them through the view retire makes read-only.
pub fn retire_refusals(plan: &Plan, catalog: &Catalog, domain: &str) -> Vec<String> {
    table_side(catalog, domain)
        .iter()
        .flat_map(|s| s.parts.iter().map(move |p| (s, p)))
        .filter(|(_, p)| !plan.is_cut_over(&p.schema))
        .map(|(s, p)| {
            format!(
                "{p} of {} is written on the source through it, and retire leaves that view read-only: retire {} once {} is cut over",
                s.view.name,
                display_ident(domain),
                display_ident(&p.schema)
            )
        })
        .collect()
}

/// Every split whose table `domain` holds and whose parts are all in other domains.
pub fn table_side<'c>(catalog: &'c Catalog, domain: &str) -> Vec<SplitAcross<'c>> {
    splits(catalog)
        .filter(|s| s.table.name.schema == domain && s.parts.iter().all(|p| p.schema != domain))
        .collect()
}

/// Every split with a part in `domain` and its table in another, with the parts
/// `domain` holds.
pub fn part_side<'c>(catalog: &'c Catalog, domain: &str) -> Vec<SplitAcross<'c>> {
    splits(catalog)
        .filter(|s| s.table.name.schema != domain)
        .filter_map(|mut s| {
            s.parts.retain(|p| p.schema == domain);
            (!s.parts.is_empty()).then_some(s)
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

/// Why `domain` may not move now because of a split across domains: a part moves
/// only once its table's domain is cut over (its rows are then made where the
/// table's rows arrive, on the part's server).
pub fn move_refusals(plan: &Plan, catalog: &Catalog, domain: &str) -> Vec<(String, String)> {
    part_side(catalog, domain)
        .iter()
        .filter(|s| !plan.is_cut_over(&s.table.name.schema))
        .map(|s| {
            (
                format!("split of {}", s.view.name),
                format!(
                    "{} {} in this domain and its table {} in {}, whose clients are not on its own server: a part moves once its table's domain is moved and cut over (carve move, then carve cutover --domain {}), so that the part's rows are made where the table's rows arrive; or give the part the table's domain (`domain = {}` in its [[splits]] entry; `carve undo restrict`, `carve undo split`, then split and restrict again), so they move together",
                    crate::text::and_list(&s.parts),
                    if s.parts.len() == 1 { "is" } else { "are" },
                    s.table.name,
                    display_ident(&s.table.name.schema),
                    display_ident(&s.table.name.schema),
                    toml::Value::String(s.table.name.schema.clone())
                ),
            )
        })
        .collect()
}

/// Why `domain`'s clients may not switch `to` now because of a split across
/// domains: a part's domain cuts over only while its table's domain is cut over,
/// and the table's domain rolls back only while no part's domain is cut over (its
/// writes on the source would write the parts there).
pub fn switch_refusals(plan: &Plan, catalog: &Catalog, domain: &str, to: Side) -> Vec<String> {
    match to {
        Side::Server => part_side(catalog, domain)
            .iter()
            .filter(|s| !plan.is_cut_over(&s.table.name.schema))
            .map(|s| {
                format!(
                    "{} of {} is made as the rows of {} arrive on this domain's server, and {}'s clients are not on its own server: cut {} over first",
                    crate::text::and_list(&s.parts),
                    s.view.name,
                    s.table.name,
                    display_ident(&s.table.name.schema),
                    display_ident(&s.table.name.schema)
                )
            })
            .collect(),
        Side::Source => table_side(catalog, domain)
            .iter()
            .flat_map(|s| s.parts.iter().map(move |p| (s, p)))
            .filter(|(_, p)| plan.is_cut_over(&p.schema))
            .map(|(s, p)| {
                format!(
                    "{p} of {} is written on {}'s server: back on the source, the writes through {} would write it there; roll {} back first",
                    s.view.name,
                    display_ident(&p.schema),
                    s.view.name,
                    display_ident(&p.schema)
                )
            })
            .collect(),
    }
}

/// `CREATE FUNCTION` of a trigger function carve makes (as `owner`, with a fixed
/// search path), then `rest`.
fn trigger_function_sql(function: &QualName, owner: &str, body: &str, rest: &str) -> String {
    let f = qualified(&function.schema, &function.name);
    format!(
        "CREATE FUNCTION {f}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS {};\nALTER FUNCTION {f}() OWNER TO {};\n{rest}",
        dollar_quoted(body),
        ident(owner)
    )
}

/// SQL: whether `on` has the trigger `name` here.
fn has_trigger(on: &QualName, name: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = pg_catalog.to_regclass({}) AND tgname = {})",
        lit(&qualified(&on.schema, &on.name)),
        lit(name)
    )
}

/// SQL: true while `relation` is here under its name (a retire may have put it
/// aside) and has no fence.
fn here_unfenced(relation: &QualName) -> String {
    format!(
        "pg_catalog.to_regclass({}) IS NOT NULL AND NOT {}",
        lit(&qualified(&relation.schema, &relation.name)),
        has_trigger(relation, fence::TRIGGER)
    )
}

/// SQL: whether the trigger `name` on `on` is in the state `enabled` (`pg_trigger.tgenabled`).
fn trigger_state(on: &QualName, name: &str, enabled: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = pg_catalog.to_regclass({}) AND tgname = {} AND tgenabled = {})",
        lit(&qualified(&on.schema, &on.name)),
        lit(name),
        lit(enabled)
    )
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

    /// A function carve makes for this split across domains, beside the split's
    /// own (in the first part's schema): `…_follow`, `…_part_rows`, `…_part_write`.
    fn function(&self, what: &str) -> Option<QualName> {
        let row = self.table.triggers.iter().find(|t| t.name == ROW_TRIGGER)?;
        let base = row.function.name.strip_suffix("_row")?;
        Some(QualName::new(
            &row.function.schema,
            &format!("{base}_{what}"),
        ))
    }

    /// Who owns the functions: the owner of the split's own.
    fn function_owner<'a>(&'a self, catalog: &'a Catalog) -> &'a str {
        let row = self.table.triggers.iter().find(|t| t.name == ROW_TRIGGER);
        catalog
            .functions
            .iter()
            .find(|f| row.is_some_and(|r| r.function == f.name))
            .map_or(self.table.owner.as_str(), |f| f.owner.as_str())
    }

    fn key(&self) -> Vec<String> {
        identity_columns(self.table).into_iter().collect()
    }

    /// The key's columns, each after `prefix`: `NEW."id", NEW."k"`.
    fn key_of(&self, prefix: &str) -> String {
        self.key()
            .iter()
            .map(|k| format!("{prefix}{}", ident(k)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `a."id" = b."id" AND …`: the rows of `a` and `b` with the same key.
    fn key_join(&self, a: &str, b: &str) -> String {
        self.key()
            .iter()
            .map(|k| format!("{a}.{k} = {b}.{k}", k = ident(k)))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// A trigger body that gives each of the parts a row for each row inserted
    /// into the table (its key, the other columns' defaults), moves it with a key
    /// changed and removes it with its row (the cascading key's work, which a
    /// replicated change does not do), for each part that is here and has no fence.
    fn rows_trigger(&self, name: &str, on: &str, function: &str) -> String {
        format!(
            "CREATE TRIGGER {} AFTER INSERT OR UPDATE OF {} OR DELETE ON {on} FOR EACH ROW EXECUTE FUNCTION {function}();\n",
            ident(name),
            ident_list(self.key())
        )
    }

    /// The body of [`Self::rows_trigger`]'s function.
    fn rows_body(&self) -> String {
        let keys = ident_list(self.key());
        let of = |prefix: &str| self.key_of(prefix);
        let set_new_key = self
            .key()
            .iter()
            .map(|k| format!("{k} = NEW.{k}", k = ident(k)))
            .collect::<Vec<_>>()
            .join(", ");
        let mut body = String::from("BEGIN ");
        for part in &self.parts {
            let name = qualified(&part.schema, &part.name);
            body.push_str(&format!(
                "IF {} THEN IF TG_OP = 'INSERT' THEN INSERT INTO {name} ({keys}) VALUES ({new}) ON CONFLICT ({keys}) DO NOTHING; ELSIF TG_OP = 'UPDATE' THEN UPDATE {name} SET {set_new_key} WHERE ({keys}) = ({old}); ELSE DELETE FROM {name} WHERE ({keys}) = ({old}); END IF; END IF; ",
                here_unfenced(part),
                new = of("NEW."),
                old = of("OLD.")
            ));
        }
        body.push_str("RETURN NULL; END");
        body
    }

    /// SQL that gives each part a row for each row of `table` (here: the table,
    /// or its copy by the same name) that has none.
    fn fill_sql(&self) -> String {
        let keys = ident_list(self.key());
        let table = qualified(&self.table.name.schema, &self.table.name.name);
        let (matched, selected) = (self.key_join("p", "t"), self.key_of("t."));
        self.parts
            .iter()
            .map(|part| {
                let name = qualified(&part.schema, &part.name);
                format!(
                    "INSERT INTO {name} ({keys}) SELECT {selected} FROM {table} t WHERE NOT EXISTS (SELECT 1 FROM {name} p WHERE {matched}) ON CONFLICT ({keys}) DO NOTHING;\n"
                )
            })
            .collect()
    }

    /// SQL: true when every row of the table here has each part's row.
    fn filled(&self) -> String {
        let table = qualified(&self.table.name.schema, &self.table.name.name);
        let matched = self.key_join("p", "t");
        self.parts
            .iter()
            .map(|part| {
                format!(
                    "NOT EXISTS (SELECT 1 FROM {table} t WHERE NOT EXISTS (SELECT 1 FROM {} p WHERE {matched}))",
                    qualified(&part.schema, &part.name)
                )
            })
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// What the move changes on the source, for the fingerprint gate.
    pub fn touches(&self) -> Vec<String> {
        let mut out = vec![self.table.name.to_string()];
        out.extend(self.function("follow").map(|f| f.to_string()));
        out
    }

    /// On the source, for the table's side: the trigger that keeps each part whole
    /// as the table's rows arrive from the domain's server (see the module doc),
    /// with its undo.
    pub fn follow_step(&self, catalog: &Catalog) -> Option<Step> {
        let function = self.function("follow")?;
        if self.key().is_empty() {
            return None;
        }
        let f = qualified(&function.schema, &function.name);
        let table = qualified(&self.table.name.schema, &self.table.name.name);
        let trigger = ident(FOLLOW_TRIGGER);
        let parts = &self.parts;
        Some(Step::sql(
            format!(
                "keep {} whole as {} arrives",
                crate::text::and_list(parts),
                self.table.name
            ),
            format!(
                "on the source, {} gets a row for each row of {} and loses it with the row, also for the rows that arrive from the domain's server after cut-over (ENABLE ALWAYS: the split's trigger and cascading key do not fire for replicated rows); not while the part is fenced there",
                crate::text::and_list(parts),
                self.table.name
            ),
            Target::Source,
            SqlAction::transactional(
                trigger_function_sql(
                    &function,
                    self.function_owner(catalog),
                    &self.rows_body(),
                    &format!(
                        "{}ALTER TABLE {table} ENABLE ALWAYS TRIGGER {trigger};\n",
                        self.rows_trigger(FOLLOW_TRIGGER, &table, &f)
                    ),
                ),
                trigger_state(&self.table.name, FOLLOW_TRIGGER, "A"),
                format!("DROP TRIGGER {trigger} ON {table};\nDROP FUNCTION {f}();"),
            ),
        ))
    }

    /// On a part's server, after the copies (`reads`): the old name over the copy
    /// of the table (`copy`: the columns the part's services read) and the parts,
    /// and the trigger on the copy that makes the parts' rows, disabled until
    /// cut-over. Nothing without a copy of the table: the services' statements
    /// that read it then fail in the move's proof, which names them.
    pub fn part_steps(&self, catalog: &Catalog, domain: &str, copies: &[Replica]) -> Vec<Step> {
        let Some(copy) = copies.iter().find(|r| r.table == self.table.name) else {
            return Vec::new();
        };
        let (Some(write), Some(rows)) = (self.function("part_write"), self.function("part_rows"))
        else {
            return Vec::new();
        };
        let key = self.key();
        if key.is_empty() || !key.iter().all(|k| copy.columns.contains(k)) {
            return Vec::new();
        }
        let parts: Vec<&Table> = self.parts.iter().filter_map(|p| catalog.table(p)).collect();
        let owner = self.function_owner(catalog);
        let target = Target::Domain(domain.to_string());
        let table = qualified(&self.table.name.schema, &self.table.name.name);

        // The view: the copy's columns and the parts', in the view's order.
        let mut view = self.view.clone();
        let mut selected = Vec::new();
        let mut table_columns = Vec::new();
        let mut part_columns: Vec<Vec<String>> = vec![Vec::new(); parts.len()];
        view.columns.retain(|c| {
            if copy.columns.contains(&c.name) {
                selected.push(format!("t.{}", ident(&c.name)));
                table_columns.push(c.name.clone());
                return true;
            }
            match parts
                .iter()
                .position(|p| p.columns.iter().any(|pc| pc.name == c.name))
            {
                Some(i) => {
                    selected.push(format!("p{i}.{}", ident(&c.name)));
                    part_columns[i].push(c.name.clone());
                    true
                }
                None => false,
            }
        });
        let joins: String = parts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                format!(
                    " JOIN {} p{i} ON {}",
                    qualified(&p.name.schema, &p.name.name),
                    self.key_join(&format!("p{i}"), "t")
                )
            })
            .collect();
        view.options.retain(|o| !o.starts_with("security_invoker"));
        view.definition = format!("SELECT {} FROM {table} t{joins}", selected.join(", "));
        // No row is inserted here, and the table's defaults draw from its server's
        // sequences.
        for column in &mut view.columns {
            column.default = None;
        }
        let name = qualified(&view.name.schema, &view.name.name);
        let column_grants: Vec<(&str, &[crate::catalog::Grant])> = view
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.grants.as_slice()))
            .collect();
        let mut sql = super::schema::compat_view_sql(&view);
        sql.push_str(&format!(
            "ALTER VIEW {name} OWNER TO {};\n",
            ident(&view.owner)
        ));
        sql.push_str(&grant_sql(&name, &view.owner, &view.grants, &column_grants));
        // Its writes: the parts' columns; the table's are written on its server.
        let key_match =
            |prefix: &str| format!("({}) = ({})", ident_list(&key), self.key_of(prefix));
        let refuse = |what: &str| {
            format!(
                "RAISE EXCEPTION {} USING ERRCODE = 'read_only_sql_transaction', HINT = {};",
                lit(&format!(
                    "carve: {what} of {} are written on the server of its domain, {}",
                    self.table.name,
                    self.table.name.schema
                )),
                lit("This server holds a read-only copy of them, kept current by logical replication.")
            )
        };
        let table_changed = if table_columns.is_empty() {
            "false".to_string()
        } else {
            format!(
                "({}) IS DISTINCT FROM ({})",
                table_columns
                    .iter()
                    .map(|c| format!("NEW.{}", ident(c)))
                    .collect::<Vec<_>>()
                    .join(", "),
                table_columns
                    .iter()
                    .map(|c| format!("OLD.{}", ident(c)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let updates: String = parts
            .iter()
            .zip(&part_columns)
            .filter(|(_, columns)| !columns.is_empty())
            .map(|(p, columns)| {
                format!(
                    "UPDATE {} SET {} WHERE {}; ",
                    qualified(&p.name.schema, &p.name.name),
                    columns
                        .iter()
                        .map(|c| format!("{c} = NEW.{c}", c = ident(c)))
                        .collect::<Vec<_>>()
                        .join(", "),
                    key_match("OLD.")
                )
            })
            .collect();
        let body = format!(
            "BEGIN IF TG_OP = 'UPDATE' THEN IF {table_changed} THEN {} END IF; {updates}RETURN NEW; END IF; {} END",
            refuse("the columns"),
            refuse("the rows")
        );
        let w = qualified(&write.schema, &write.name);
        sql.push_str(&trigger_function_sql(
            &write,
            owner,
            &body,
            &format!(
                "CREATE TRIGGER {} INSTEAD OF INSERT OR UPDATE OR DELETE ON {name} FOR EACH ROW EXECUTE FUNCTION {w}();\n",
                ident(PART_WRITE_TRIGGER)
            ),
        ));
        let view_step = Step::sql(
            format!("create view {} over the copy of {}", view.name, self.table.name),
            format!(
                "{} on the {} server: the copy of {} joined with {}, as on the source; its writes go to the part's columns",
                view.name,
                display_ident(domain),
                self.table.name,
                crate::text::and_list(&self.parts)
            ),
            target.clone(),
            SqlAction::transactional(
                sql,
                relation_exists(&view.name.schema, &view.name.name, "'v'"),
                format!("DROP VIEW {name};\nDROP FUNCTION {w}();"),
            ),
        );
        let r = qualified(&rows.schema, &rows.name);
        let trigger = ident(PART_ROWS_TRIGGER);
        let rows_step = Step::sql(
            format!("create trigger {}.{PART_ROWS_TRIGGER}", self.table.name),
            format!(
                "on the {} server, {} gets a row for each row of the copy of {} and loses it with the row: disabled until cut-over (the source makes them until then)",
                display_ident(domain),
                crate::text::and_list(&self.parts),
                self.table.name
            ),
            target,
            SqlAction::transactional(
                trigger_function_sql(
                    &rows,
                    owner,
                    &self.rows_body(),
                    &format!(
                        "{}ALTER TABLE {table} DISABLE TRIGGER {trigger};\n",
                        self.rows_trigger(PART_ROWS_TRIGGER, &table, &r)
                    ),
                ),
                has_trigger(&self.table.name, PART_ROWS_TRIGGER),
                format!("DROP TRIGGER {trigger} ON {table};\nDROP FUNCTION {r}();"),
            ),
        );
        vec![view_step, rows_step]
    }
}

/// Whether a recorded step is one of [`switch_steps`] (a switch under way is
/// resumed with its recorded steps).
pub fn is_switch_step(id: &str) -> bool {
    id.starts_with(MAKE_ROWS) || id.starts_with(STOP_MAKING_ROWS)
}

/// The starts of the ids of [`switch_steps`].
const MAKE_ROWS: &str = "make the rows of ";
const STOP_MAKING_ROWS: &str = "stop making the rows of ";

/// What a switch of a part's domain does to its parts' rows, right past the point
/// of no return while the clients still wait: to its server, the copy's trigger
/// enabled and the rows of the table's rows that came meanwhile made; back to the
/// source, that trigger disabled and the same rows made on the source, where its
/// trigger takes over again. A part's server without the copy's trigger (no copy
/// of the table) has nothing to do.
pub fn switch_steps(catalog: &Catalog, domain: &str, to: Side) -> Vec<Step> {
    let mut steps = Vec::new();
    for split in part_side(catalog, domain) {
        let table = qualified(&split.table.name.schema, &split.table.name.name);
        let trigger = ident(PART_ROWS_TRIGGER);
        let missing = format!("NOT {}", has_trigger(&split.table.name, PART_ROWS_TRIGGER));
        let parts = crate::text::and_list(&split.parts);
        let on_server = Target::Domain(domain.to_string());
        match to {
            Side::Server => steps.push(Step::sql(
                format!("{MAKE_ROWS}{parts} on {on_server}"),
                format!(
                    "on the {} server, {parts} gets a row for each row of the copy of {} from now on, and now for those that came while the switch ran",
                    display_ident(domain),
                    split.table.name
                ),
                on_server,
                SqlAction::transactional(
                    format!(
                        "ALTER TABLE {table} ENABLE ALWAYS TRIGGER {trigger};\n{}",
                        split.fill_sql()
                    ),
                    format!(
                        "{missing} OR ({} AND {})",
                        trigger_state(&split.table.name, PART_ROWS_TRIGGER, "A"),
                        split.filled()
                    ),
                    format!("ALTER TABLE {table} DISABLE TRIGGER {trigger};"),
                ),
            )),
            Side::Source => {
                steps.push(Step::sql(
                    format!("{STOP_MAKING_ROWS}{parts} on {on_server}"),
                    format!(
                        "on the {} server, {parts} no longer gets rows from the copy of {}: they come from the source again",
                        display_ident(domain),
                        split.table.name
                    ),
                    on_server,
                    SqlAction::transactional(
                        format!("ALTER TABLE {table} DISABLE TRIGGER {trigger};"),
                        format!(
                            "{missing} OR {}",
                            trigger_state(&split.table.name, PART_ROWS_TRIGGER, "D")
                        ),
                        format!("ALTER TABLE {table} ENABLE ALWAYS TRIGGER {trigger};"),
                    ),
                ));
                steps.push(Step::sql(
                    format!("{MAKE_ROWS}{parts} on source"),
                    format!(
                        "on the source, {parts} gets a row for each row of {} that came while neither side made them",
                        split.table.name
                    ),
                    Target::Source,
                    SqlAction::transactional(
                        split.fill_sql(),
                        split.filled(),
                        // The rows made belong to the part now; they go with it.
                        "SELECT 1;".into(),
                    ),
                ));
            }
        }
    }
    steps
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
        crate::catalog::testing::push_roles(&mut c, "app", &["shop", "payments"]);
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
            "AFTER INSERT OR UPDATE OF \"id\" OR DELETE ON \"sales\".\"orders\"",
            "ELSIF TG_OP = 'UPDATE' THEN UPDATE \"people\".\"orders_pay\" SET \"id\" = NEW.\"id\" WHERE (\"id\") = (OLD.\"id\");",
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

    /// The plan with both domains, `live` (domain, side) as cut over.
    fn plan_with(c: &Catalog, live: &[(&str, Side)]) -> Plan {
        let mut plan = crate::plan::testing::plan_for(c, &[("sales", &[]), ("people", &[])]);
        for (domain, side) in live {
            let d = plan.domains.iter_mut().find(|d| d.name == *domain).unwrap();
            d.cutover = Some(crate::plan::Cutover {
                live: *side,
                since: "2026-11-30T00:00:00Z".into(),
                pause_ms: None,
                switching: None,
                retired: None,
                files: None,
            });
        }
        plan
    }

    #[test]
    fn a_part_moves_and_cuts_over_only_after_its_table_and_the_table_waits_for_it() {
        let c = split_across();
        let found = part_side(&c, "people");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].table.name, QualName::new("sales", "orders"));

        let before = plan_with(&c, &[]);
        let refused = move_refusals(&before, &c, "people");
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert!(refused[0]
            .1
            .contains("a part moves once its table's domain is moved and cut over"));
        assert_eq!(
            switch_refusals(&before, &c, "people", Side::Server).len(),
            1
        );
        assert!(
            move_refusals(&before, &c, "sales").is_empty(),
            "the table's side"
        );

        let table_out = plan_with(&c, &[("sales", Side::Server)]);
        assert!(move_refusals(&table_out, &c, "people").is_empty());
        assert!(switch_refusals(&table_out, &c, "people", Side::Server).is_empty());
        assert!(switch_refusals(&table_out, &c, "sales", Side::Source).is_empty());

        let both_out = plan_with(&c, &[("sales", Side::Server), ("people", Side::Server)]);
        let refused = switch_refusals(&both_out, &c, "sales", Side::Source);
        assert_eq!(refused.len(), 1);
        assert!(
            refused[0].ends_with("roll people back first"),
            "{refused:?}"
        );
    }

    #[test]
    fn a_parts_server_gets_the_old_name_over_the_copy_and_a_trigger_off_until_cut_over() {
        let c = split_across();
        let split = &part_side(&c, "people")[0];
        let copy = Replica {
            table: QualName::new("sales", "orders"),
            columns: vec!["id".into()],
            readers: vec!["payments".into()],
            every_column_because: None,
            rows: None,
        };
        assert!(
            split.part_steps(&c, "people", &[]).is_empty(),
            "no copy, no view"
        );
        let steps = split.part_steps(&c, "people", std::slice::from_ref(&copy));
        let ids: Vec<&str> = steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "create view public.orders over the copy of sales.orders",
                "create trigger sales.orders.carve_part_rows"
            ]
        );
        assert!(steps
            .iter()
            .all(|s| s.target == Target::Domain("people".into())));
        let view = &steps[0].sql_action().unwrap().sql;
        for part in [
            "CREATE VIEW \"public\".\"orders\" AS SELECT t.\"id\", p0.\"paid\" FROM \"sales\".\"orders\" t JOIN \"people\".\"orders_pay\" p0 ON p0.\"id\" = t.\"id\";",
            "GRANT UPDATE (\"paid\") ON \"public\".\"orders\" TO \"payments\";",
            "IF (NEW.\"id\") IS DISTINCT FROM (OLD.\"id\") THEN RAISE EXCEPTION 'carve: the columns of sales.orders are written on the server of its domain, sales'",
            "UPDATE \"people\".\"orders_pay\" SET \"paid\" = NEW.\"paid\" WHERE (\"id\") = (OLD.\"id\");",
            "INSTEAD OF INSERT OR UPDATE OR DELETE ON \"public\".\"orders\"",
        ] {
            assert!(view.contains(part), "{part}\n{view}");
        }
        assert!(
            !view.contains("SET DEFAULT") && !view.contains("security_invoker"),
            "{view}"
        );
        assert!(
            !view.contains("\"total\""),
            "a column the copy does not keep: {view}"
        );
        let rows = &steps[1].sql_action().unwrap().sql;
        assert!(
            rows.contains("IF pg_catalog.to_regclass('\"people\".\"orders_pay\"') IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = pg_catalog.to_regclass('\"people\".\"orders_pay\"') AND tgname = 'carve_fence') THEN")
                && rows.ends_with("ALTER TABLE \"sales\".\"orders\" DISABLE TRIGGER \"carve_part_rows\";\n"),
            "{rows}"
        );
    }

    #[test]
    fn a_parts_switch_moves_where_its_rows_are_made() {
        let c = split_across();
        let to_server = switch_steps(&c, "people", Side::Server);
        let [enable] = to_server.as_slice() else {
            panic!("{to_server:#?}")
        };
        assert_eq!(enable.target, Target::Domain("people".into()));
        let action = enable.sql_action().unwrap();
        assert_eq!(
            action.sql,
            "ALTER TABLE \"sales\".\"orders\" ENABLE ALWAYS TRIGGER \"carve_part_rows\";\nINSERT INTO \"people\".\"orders_pay\" (\"id\") SELECT t.\"id\" FROM \"sales\".\"orders\" t WHERE NOT EXISTS (SELECT 1 FROM \"people\".\"orders_pay\" p WHERE p.\"id\" = t.\"id\") ON CONFLICT (\"id\") DO NOTHING;\n"
        );
        assert_eq!(
            action.undo,
            "ALTER TABLE \"sales\".\"orders\" DISABLE TRIGGER \"carve_part_rows\";"
        );
        let to_source = switch_steps(&c, "people", Side::Source);
        let targets: Vec<&Target> = to_source.iter().map(|s| &s.target).collect();
        assert_eq!(targets, [&Target::Domain("people".into()), &Target::Source]);
        assert!(to_source[1]
            .sql_action()
            .unwrap()
            .sql
            .starts_with("INSERT INTO \"people\".\"orders_pay\""));
        assert!(
            switch_steps(&c, "sales", Side::Server).is_empty(),
            "the table's side"
        );
    }

    #[test]
    fn the_tables_domain_retires_after_its_parts_and_each_keeps_the_others_columns() {
        let c = split_across();
        let table_out = plan_with(&c, &[("sales", Side::Server)]);
        let refused = retire_refusals(&table_out, &c, "sales");
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert!(refused[0].ends_with("retire sales once people is cut over"));
        let both_out = plan_with(&c, &[("sales", Side::Server), ("people", Side::Server)]);
        assert!(retire_refusals(&both_out, &c, "sales").is_empty());
        assert!(
            retire_refusals(&table_out, &c, "people").is_empty(),
            "a part's side"
        );

        let view = &c.views[0];
        let beside = |domain: &str| -> Vec<(String, Vec<String>)> {
            beside_retired(&c, view, domain)
                .into_iter()
                .map(|r| (r.table.to_string(), r.columns))
                .collect()
        };
        assert_eq!(
            beside("sales"),
            [(
                "people.orders_pay".to_string(),
                vec!["id".to_string(), "paid".to_string()]
            )]
        );
        assert_eq!(
            beside("people"),
            [(
                "sales.orders".to_string(),
                vec!["id".to_string(), "total".to_string()]
            )]
        );
    }
}
