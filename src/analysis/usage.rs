//! Who reads and writes which table: each statement's access resolved against the
//! catalog and summed per table and service.
//!
//! Resolution follows PostgreSQL: unqualified names through the search path, views to
//! the tables beneath them, partitions to their partitioned root. Functions a statement
//! calls, and triggers its writes fire, count as that service's own reads and writes:
//! whoever fires a trigger that writes a table is a writer of that table.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::access::{self, Access, Columns, RawName, WriteKind};
use crate::catalog::{Catalog, FunctionKind, QualName, TriggerEvent};
use crate::workload::{Problem, Workload};

/// The tables one statement (with its functions and triggers) reads and writes.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Effect {
    pub reads: BTreeSet<QualName>,
    pub writes: BTreeMap<QualName, TableWrite>,
    /// Names that match no table or view in the catalog.
    pub unknown: BTreeSet<RawName>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableWrite {
    pub kinds: BTreeSet<WriteKind>,
    pub columns: Columns,
    /// See [`access::Write::reads_rows`].
    pub reads_rows: bool,
}

impl Effect {
    fn write(&mut self, table: QualName, write: &TableWrite) {
        let entry = self.writes.entry(table).or_insert_with(|| TableWrite {
            kinds: BTreeSet::new(),
            columns: Columns::Some(BTreeSet::new()),
            reads_rows: false,
        });
        let (kinds, columns) = (&write.kinds, &write.columns);
        entry.reads_rows |= write.reads_rows;
        entry.kinds.extend(kinds.iter().copied());
        entry.columns = merge_columns(&entry.columns, columns);
    }

    fn merge(&mut self, other: &Effect) {
        self.reads.extend(other.reads.iter().cloned());
        for (table, w) in &other.writes {
            self.write(table.clone(), w);
        }
        self.unknown.extend(other.unknown.iter().cloned());
    }
}

fn merge_columns(a: &Columns, b: &Columns) -> Columns {
    match (a, b) {
        (Columns::All, _) | (_, Columns::All) => Columns::All,
        (Columns::Some(x), Columns::Some(y)) => Columns::Some(x.union(y).cloned().collect()),
    }
}

/// Resolves names against one catalog; remembers function bodies it has analyzed.
pub struct Resolver<'a> {
    catalog: &'a Catalog,
    search_path: Vec<String>,
    tables: HashMap<(&'a str, &'a str), QualName>,
    views: HashMap<(&'a str, &'a str), usize>,
    /// Triggers that fire for writes to a table: its own and its partitions'.
    triggers: HashMap<QualName, Vec<&'a crate::catalog::Trigger>>,
    function_effects: HashMap<String, Effect>,
    /// Leave out `SECURITY DEFINER` bodies: they run with their owner's privileges,
    /// so for what a caller needs granted they touch nothing.
    caller_rights: bool,
}

/// A relation a name stands for, before views are looked through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relation {
    Table(QualName),
    View(QualName),
}

/// How deep calls and triggers are followed (functions calling functions…).
const MAX_DEPTH: usize = 8;

/// PostgreSQL's default search path for a role with no schema of its own name.
pub fn default_search_path() -> Vec<String> {
    vec!["public".to_string()]
}

impl<'a> Resolver<'a> {
    pub fn new(catalog: &'a Catalog, search_path: Vec<String>) -> Resolver<'a> {
        let tables = catalog
            .tables
            .iter()
            .map(|t| {
                (
                    (t.name.schema.as_str(), t.name.name.as_str()),
                    catalog.partition_root(&t.name),
                )
            })
            .collect();
        let views = catalog
            .views
            .iter()
            .enumerate()
            .map(|(i, v)| ((v.name.schema.as_str(), v.name.name.as_str()), i))
            .collect();
        let mut triggers: HashMap<QualName, Vec<&crate::catalog::Trigger>> = HashMap::new();
        for t in &catalog.tables {
            // A partition's triggers fire for writes to it and to every table above it.
            let mut owner = Some(t.name.clone());
            while let Some(name) = owner {
                triggers
                    .entry(name.clone())
                    .or_default()
                    .extend(t.triggers.iter());
                owner = catalog.table(&name).and_then(|p| p.partition_of.clone());
            }
        }
        Resolver {
            catalog,
            search_path,
            tables,
            views,
            triggers,
            function_effects: HashMap::new(),
            caller_rights: false,
        }
    }

    /// A resolver for privileges: `SECURITY DEFINER` functions are not followed.
    pub fn with_caller_rights(catalog: &'a Catalog, search_path: Vec<String>) -> Resolver<'a> {
        Resolver {
            caller_rights: true,
            ..Resolver::new(catalog, search_path)
        }
    }

    /// The table or view a name finds first on the search path (a partition is
    /// itself here: privileges are checked on the relation named).
    pub fn relation(&self, name: &RawName) -> Option<Relation> {
        for schema in self.schemas_for(name) {
            let q = QualName {
                schema: schema.to_string(),
                name: name.name.clone(),
            };
            if self.tables.contains_key(&(schema, name.name.as_str())) {
                return Some(Relation::Table(q));
            }
            if self.views.contains_key(&(schema, name.name.as_str())) {
                return Some(Relation::View(q));
            }
        }
        None
    }

    /// What runs on a statement's behalf beyond the relations it names: the bodies of
    /// the functions it calls and of the triggers its writes fire, and theirs in turn.
    pub fn invoked(&mut self, access: &Access) -> Effect {
        let named_only = Access {
            reads: access.reads.clone(),
            writes: access.writes.clone(),
            calls: BTreeSet::new(),
        };
        let direct = self.resolve_depth(&named_only, MAX_DEPTH);
        let mut signatures: Vec<String> = access
            .calls
            .iter()
            .flat_map(|call| self.functions_named(call))
            .collect();
        signatures.extend(
            direct
                .writes
                .iter()
                .flat_map(|(table, w)| self.triggers_fired(table, w)),
        );
        let mut effect = Effect::default();
        for signature in signatures {
            let body = self.function_effect(&signature, 0);
            effect.merge(&body);
        }
        effect
    }

    /// The schemas to look a name up in, in order.
    fn schemas_for<'n>(&'n self, name: &'n RawName) -> Vec<&'n str> {
        match &name.schema {
            Some(s) => vec![s.as_str()],
            None => self.search_path.iter().map(String::as_str).collect(),
        }
    }

    fn is_system(name: &RawName) -> bool {
        matches!(
            name.schema.as_deref(),
            Some("pg_catalog" | "information_schema")
        ) || (name.schema.is_none() && name.name.starts_with("pg_"))
    }

    /// The base tables a relation name stands for: itself (as its partition root) for a
    /// table, the tables beneath it for a view.
    fn tables_of(&self, name: &RawName, depth: usize) -> Option<BTreeSet<QualName>> {
        for schema in self.schemas_for(name) {
            if let Some(table) = self.tables.get(&(schema, name.name.as_str())) {
                return Some([table.clone()].into());
            }
            if let Some(&i) = self.views.get(&(schema, name.name.as_str())) {
                let mut out = BTreeSet::new();
                if depth > 16 {
                    return Some(out);
                }
                for dep in &self.catalog.views[i].depends_on {
                    let raw = RawName {
                        schema: Some(dep.relation.schema.clone()),
                        name: dep.relation.name.clone(),
                    };
                    if let Some(tables) = self.tables_of(&raw, depth + 1) {
                        out.extend(tables);
                    }
                }
                return Some(out);
            }
        }
        None
    }

    /// Resolves one statement's access, following functions and triggers.
    pub fn resolve(&mut self, access: &Access) -> Effect {
        self.resolve_depth(access, 0)
    }

    /// What calling the function (every overload) of this name reads and writes.
    pub fn function_touches(&mut self, function: &QualName) -> Effect {
        let call = Access {
            calls: [RawName {
                schema: Some(function.schema.clone()),
                name: function.name.clone(),
            }]
            .into(),
            ..Access::default()
        };
        self.resolve(&call)
    }

    fn resolve_depth(&mut self, access: &Access, depth: usize) -> Effect {
        let mut effect = Effect::default();
        for name in &access.reads {
            match self.tables_of(name, 0) {
                Some(tables) => effect.reads.extend(tables),
                None if Self::is_system(name) => {}
                None => {
                    effect.unknown.insert(name.clone());
                }
            }
        }
        for (name, write) in &access.writes {
            match self.tables_of(name, 0) {
                // Writing through a view writes the one table beneath it (an
                // automatically updatable view); with several, carve cannot tell.
                Some(tables) if tables.len() == 1 => {
                    let table = tables.into_iter().next().expect("one");
                    effect.write(
                        table,
                        &TableWrite {
                            kinds: write.kinds.clone(),
                            columns: write.columns.clone(),
                            reads_rows: write.reads_rows,
                        },
                    );
                }
                Some(_) | None => {
                    if !Self::is_system(name) {
                        effect.unknown.insert(name.clone());
                    }
                }
            }
        }
        if depth < MAX_DEPTH {
            for call in &access.calls {
                for signature in self.functions_named(call) {
                    let body = self.function_effect(&signature, depth);
                    effect.merge(&body);
                }
            }
            let fired: Vec<String> = effect
                .writes
                .iter()
                .flat_map(|(table, w)| self.triggers_fired(table, w))
                .collect();
            for signature in fired {
                let body = self.function_effect(&signature, depth);
                effect.merge(&body);
            }
        }
        effect
    }

    fn functions_named(&self, call: &RawName) -> Vec<String> {
        let schemas = self.schemas_for(call);
        self.catalog
            .functions
            .iter()
            .filter(|f| f.kind != FunctionKind::Aggregate)
            .filter(|f| !(self.caller_rights && f.security_definer))
            .filter(|f| f.name.name == call.name && schemas.contains(&f.name.schema.as_str()))
            .map(|f| f.signature())
            .collect()
    }

    fn triggers_fired(&self, table: &QualName, write: &TableWrite) -> Vec<String> {
        let events: BTreeSet<TriggerEvent> = write
            .kinds
            .iter()
            .flat_map(|k| match k {
                WriteKind::Insert | WriteKind::Copy => vec![TriggerEvent::Insert],
                WriteKind::Update => vec![TriggerEvent::Update],
                WriteKind::Delete => vec![TriggerEvent::Delete],
                WriteKind::Truncate => vec![TriggerEvent::Truncate],
                WriteKind::Merge => vec![
                    TriggerEvent::Insert,
                    TriggerEvent::Update,
                    TriggerEvent::Delete,
                ],
                WriteKind::Lock => vec![],
            })
            .collect();
        self.triggers
            .get(table)
            .into_iter()
            .flatten()
            .filter(|tr| tr.enabled && tr.events.iter().any(|e| events.contains(e)))
            // `UPDATE OF a, b` fires only when a or b is set (or on other events).
            .filter(|tr| {
                tr.columns.is_empty()
                    || write.kinds.iter().any(|k| !matches!(k, WriteKind::Update))
                    || match &write.columns {
                        Columns::All => true,
                        Columns::Some(cols) => tr.columns.iter().any(|c| cols.contains(c)),
                    }
            })
            .flat_map(|tr| {
                self.catalog
                    .functions
                    .iter()
                    .filter(move |f| f.name == tr.function)
                    .filter(|f| !(self.caller_rights && f.security_definer))
                    .map(|f| f.signature())
            })
            .collect()
    }

    /// What a function's body reads and writes (SQL and PL/pgSQL), analyzed once.
    fn function_effect(&mut self, signature: &str, depth: usize) -> Effect {
        if let Some(effect) = self.function_effects.get(signature) {
            return effect.clone();
        }
        // Guards recursion: a function that (indirectly) calls itself sees an empty body.
        self.function_effects
            .insert(signature.to_string(), Effect::default());
        let Some(function) = self
            .catalog
            .functions
            .iter()
            .find(|f| f.signature() == signature)
        else {
            return Effect::default();
        };
        let accesses = match function.language.as_str() {
            "sql" => body_statements(&function.body, false),
            "plpgsql" => body_statements(&function.body, true),
            _ => Vec::new(),
        };
        let mut effect = Effect::default();
        for access in &accesses {
            let inner = self.resolve_depth(access, depth + 1);
            effect.merge(&inner);
        }
        self.function_effects
            .insert(signature.to_string(), effect.clone());
        effect
    }
}

/// The SQL statements inside a function body. For PL/pgSQL, each `;`-separated piece is
/// read from its first SQL keyword (after `IF … THEN`, `RETURN QUERY` and the like);
/// `PERFORM` is a `SELECT` whose result is thrown away.
fn body_statements(body: &str, plpgsql: bool) -> Vec<Access> {
    const KEYWORDS: [&str; 7] = [
        "select", "insert", "update", "delete", "with", "merge", "truncate",
    ];
    let mut out = Vec::new();
    for piece in crate::workload::split::split(body) {
        if !plpgsql {
            if let Ok(accesses) = access::analyze(&piece.text) {
                out.extend(accesses);
            }
            continue;
        }
        let text = piece
            .text
            .replace("PERFORM ", "SELECT ")
            .replace("perform ", "select ");
        let lower = text.to_lowercase();
        let mut starts: Vec<usize> = KEYWORDS
            .iter()
            .flat_map(|k| lower.match_indices(k).map(|(i, _)| i))
            .filter(|&i| {
                i == 0
                    || !lower.as_bytes()[i - 1].is_ascii_alphanumeric()
                        && lower.as_bytes()[i - 1] != b'_'
            })
            .collect();
        starts.sort_unstable();
        // The first keyword position from which the rest parses is the statement.
        for start in starts {
            let candidate = text[start..].trim_end_matches(|c: char| c.is_whitespace());
            let candidate = candidate.strip_suffix("END").unwrap_or(candidate);
            if let Ok(accesses) = access::analyze(candidate) {
                out.extend(accesses);
                break;
            }
        }
    }
    out
}

/// One statement after resolution, kept small: a workload has many.
#[derive(Debug, Clone, Serialize)]
pub struct ResolvedStatement {
    pub service: String,
    pub origin: String,
    pub calls: u64,
    /// Statements with the same number ran in one transaction.
    pub transaction: u64,
    /// Every table it reads or writes, through functions and triggers too; sorted.
    pub tables: Vec<QualName>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct WriterUse {
    pub statements: u64,
    pub kinds: BTreeSet<WriteKind>,
    pub columns: Columns,
}

impl Default for Columns {
    fn default() -> Self {
        Columns::Some(BTreeSet::new())
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TableUse {
    pub writers: BTreeMap<String, WriterUse>,
    /// Statements reading the table, per service.
    pub readers: BTreeMap<String, u64>,
}

/// The whole workload resolved: per-table use, per-statement effects, and what could
/// not be used (statements that do not parse, names that match nothing).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Usage {
    /// Services that read or write at least one table.
    pub services: Vec<String>,
    /// Services seen in the workload that touched no table (e.g. a role whose queries
    /// only read the system catalogs).
    pub idle_services: Vec<String>,
    pub tables: BTreeMap<QualName, TableUse>,
    pub statements: Vec<ResolvedStatement>,
    pub unparsed: Vec<Problem>,
    pub unknown: Vec<Problem>,
}

impl Usage {
    pub fn of(catalog: &Catalog, workload: &Workload, search_path: Vec<String>) -> Usage {
        use rayon::prelude::*;
        // Parsing is most of the work and needs nothing shared: batches are parsed on
        // every core, then resolved in order. A batch at a time keeps memory flat.
        const BATCH: usize = 4096;
        let mut resolver = Resolver::new(catalog, search_path);
        let mut usage = Usage::default();
        let parsed = workload.statements.chunks(BATCH).flat_map(|batch| {
            let accesses: Vec<_> = batch.par_iter().map(|s| access::analyze(&s.sql)).collect();
            batch.iter().zip(accesses)
        });
        for (statement, accesses) in parsed {
            let accesses = match accesses {
                Ok(a) => a,
                Err(e) => {
                    usage.unparsed.push(Problem {
                        origin: format!("{} ({})", statement.origin, statement.service),
                        message: e.to_string(),
                    });
                    continue;
                }
            };
            for access in accesses {
                let effect = resolver.resolve(&access);
                for name in &effect.unknown {
                    usage.unknown.push(Problem {
                        origin: format!("{} ({})", statement.origin, statement.service),
                        message: format!("no table or view named {name}"),
                    });
                }
                for table in &effect.reads {
                    *usage
                        .tables
                        .entry(table.clone())
                        .or_default()
                        .readers
                        .entry(statement.service.clone())
                        .or_default() += statement.calls;
                }
                for (table, write) in &effect.writes {
                    let writer = usage
                        .tables
                        .entry(table.clone())
                        .or_default()
                        .writers
                        .entry(statement.service.clone())
                        .or_default();
                    writer.statements += statement.calls;
                    writer.kinds.extend(write.kinds.iter().copied());
                    writer.columns = merge_columns(&writer.columns, &write.columns);
                }
                let mut tables: Vec<QualName> = effect
                    .reads
                    .into_iter()
                    .chain(effect.writes.into_keys())
                    .collect();
                tables.sort();
                tables.dedup();
                usage.statements.push(ResolvedStatement {
                    service: statement.service.clone(),
                    origin: statement.origin.clone(),
                    calls: statement.calls,
                    transaction: statement.transaction,
                    tables,
                });
            }
        }
        let active: BTreeSet<&str> = usage
            .tables
            .values()
            .flat_map(|u| u.writers.keys().chain(u.readers.keys()))
            .map(String::as_str)
            .collect();
        let (services, idle) = workload
            .services()
            .into_iter()
            .partition(|s| active.contains(s.as_str()));
        usage.services = services;
        usage.idle_services = idle;
        usage
    }

    /// The same use with each group's services as one service, named by
    /// `plan::choices::consolidated_name`: what consolidated services look like to
    /// ownership and clustering.
    pub fn with_services_merged(&self, groups: &[BTreeSet<String>]) -> Usage {
        let name_of = |service: &str| -> String {
            groups
                .iter()
                .find(|g| g.contains(service))
                .map(crate::plan::choices::consolidated_name)
                .unwrap_or_else(|| service.to_string())
        };
        let mut merged = self.clone();
        for table in merged.tables.values_mut() {
            let mut writers: BTreeMap<String, WriterUse> = BTreeMap::new();
            for (service, w) in std::mem::take(&mut table.writers) {
                let into = writers.entry(name_of(&service)).or_default();
                into.statements += w.statements;
                into.kinds.extend(w.kinds);
                into.columns = merge_columns(&into.columns, &w.columns);
            }
            table.writers = writers;
            let mut readers: BTreeMap<String, u64> = BTreeMap::new();
            for (service, n) in std::mem::take(&mut table.readers) {
                *readers.entry(name_of(&service)).or_default() += n;
            }
            table.readers = readers;
        }
        for s in &mut merged.statements {
            s.service = name_of(&s.service);
        }
        let services: BTreeSet<String> = merged.services.iter().map(|s| name_of(s)).collect();
        merged.services = services.into_iter().collect();
        merged
    }

    /// The transactions of more than one statement, each as its statements.
    pub fn transactions(&self) -> Vec<Vec<&ResolvedStatement>> {
        let mut by_id: BTreeMap<u64, Vec<&ResolvedStatement>> = BTreeMap::new();
        for s in &self.statements {
            by_id.entry(s.transaction).or_default().push(s);
        }
        by_id.into_values().filter(|t| t.len() > 1).collect()
    }
}
