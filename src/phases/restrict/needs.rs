//! What each statement needs, as PostgreSQL checks it: the relations it names and,
//! beneath an invoker view, the view's own; SELECT with UPDATE, DELETE and RETURNING;
//! the sequences behind an INSERT's defaults; what its functions and triggers touch.

use super::*;

impl Planner<'_> {
    /// Every distinct statement of every service, with what it needs, its names
    /// resolved as its login role's will be (`roles`).
    pub(super) fn statements(
        &mut self,
        workload: &Workload,
        roles: &BTreeMap<String, (String, bool)>,
    ) -> Vec<Statement> {
        let mut resolvers: BTreeMap<Vec<String>, Resolver> = BTreeMap::new();
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for s in &workload.statements {
            if !seen.insert((s.service.clone(), s.sql.clone())) {
                continue;
            }
            let path = roles
                .get(&s.service)
                .map(|(role, _)| self.search_path_of(role))
                .unwrap_or_else(default_search_path);
            let resolver = resolvers
                .entry(path.clone())
                .or_insert_with(|| Resolver::with_caller_rights(self.catalog, path));
            // A statement that does not parse is still probed by the proof: PostgreSQL
            // has the last word on what it needs.
            let accesses = access::analyze(&s.sql).unwrap_or_default();
            let mut needs = Vec::new();
            for a in &accesses {
                self.needs_of(resolver, a, &mut needs);
            }
            out.push(Statement {
                service: s.service.clone(),
                origin: s.origin.clone(),
                sql: s.sql.clone(),
                needs,
            });
        }
        out
    }

    pub(super) fn needs_of(&self, resolver: &mut Resolver, access: &Access, needs: &mut Vec<Need>) {
        for name in &access.reads {
            if let Some(rel) = resolver.relation(name) {
                self.need_relation(needs, rel, &["SELECT"], &Columns::All, None);
            }
        }
        for (name, write) in &access.writes {
            if let Some(rel) = resolver.relation(name) {
                let privileges = write_privileges(&write.kinds, write.reads_rows);
                self.need_relation(needs, rel, &privileges, &write.columns, None);
            }
        }
        const INVOKED: &str = "a function it calls or a trigger it fires";
        let invoked = resolver.invoked(access);
        for table in &invoked.reads {
            let rel = Relation::Table(table.clone());
            self.need_relation(needs, rel, &["SELECT"], &Columns::All, Some(INVOKED));
        }
        for (table, write) in &invoked.writes {
            let privileges = write_privileges(&write.kinds, write.reads_rows);
            let rel = Relation::Table(table.clone());
            self.need_relation(needs, rel, &privileges, &write.columns, Some(INVOKED));
        }
    }

    /// The privileges on a named relation, then what lies beneath: an invoker view's
    /// relations, and the sequences an INSERT's column defaults draw from.
    pub(super) fn need_relation(
        &self,
        needs: &mut Vec<Need>,
        relation: Relation,
        privileges: &[&'static str],
        columns: &Columns,
        runtime: Option<&'static str>,
    ) {
        let (name, kind) = match relation {
            Relation::Table(q) => (q, RelKind::Table),
            Relation::View(q) => (q, RelKind::View),
        };
        let data = self.data_of(&name, kind);
        let split = self
            .split_views
            .get(&name)
            .filter(|_| kind == RelKind::View);
        let column_level =
            kind != RelKind::Sequence && data.iter().next().is_some_and(|t| self.column_level(t));
        for &privilege in privileges {
            // Through a split table's view a write reaches the part that owns the
            // columns it sets.
            let data = match split {
                Some(split) => split.reaches(privilege, columns),
                None => data.clone(),
            };
            let columns = match columns {
                Columns::Some(c)
                    if column_level
                        && !c.is_empty()
                        && matches!(privilege, "INSERT" | "UPDATE") =>
                {
                    Some(c.clone())
                }
                _ => None,
            };
            let need = Need {
                relation: name.clone(),
                kind,
                privilege,
                columns,
                runtime,
                data,
            };
            if !needs.contains(&need) {
                needs.push(need);
            }
        }
        let writes = privileges.iter().any(|p| *p != "SELECT");
        match kind {
            RelKind::View => {
                let Some(view) = self.catalog.view(&name) else {
                    return;
                };
                let beneath: Vec<Relation> = view
                    .depends_on
                    .iter()
                    .map(|d| {
                        if self.catalog.table(&d.relation).is_some() {
                            Relation::Table(d.relation.clone())
                        } else {
                            Relation::View(d.relation.clone())
                        }
                    })
                    .collect();
                // A row lock (`FOR UPDATE`: UPDATE setting no column) takes the
                // rows beneath as the caller; no trigger stands in for it.
                let row_lock = privileges.contains(&"UPDATE")
                    && matches!(columns, Columns::Some(set) if set.is_empty());
                if self.is_invoker_view(&name) {
                    for rel in &beneath {
                        // An updatable view writes its one base relation; the others
                        // (and that one) are read, and locked by a row lock.
                        let p: Vec<&'static str> = if writes && beneath.len() == 1 {
                            privileges.to_vec()
                        } else if row_lock {
                            vec!["SELECT", "UPDATE"]
                        } else {
                            vec!["SELECT"]
                        };
                        self.need_relation(needs, rel.clone(), &p, columns, runtime);
                    }
                    // A split table's view: its defaults draw from the table's
                    // sequences as the caller.
                    if let (Some(split), true) = (split, privileges.contains(&"INSERT")) {
                        self.need_sequences(needs, &split.table);
                    }
                } else if privileges.contains(&"INSERT") && beneath.len() == 1 {
                    // A definer view checks its owner's privileges, but the base
                    // table's defaults still run nextval as the caller.
                    if let Relation::Table(t) = &beneath[0] {
                        self.need_sequences(needs, t);
                    }
                }
            }
            RelKind::Table if privileges.contains(&"INSERT") => self.need_sequences(needs, &name),
            _ => {}
        }
    }

    pub(super) fn need_sequences(&self, needs: &mut Vec<Need>, table: &QualName) {
        let root = self.catalog.partition_root(table);
        for seq in self.table_sequences.get(&root).into_iter().flatten() {
            let need = Need {
                relation: seq.clone(),
                kind: RelKind::Sequence,
                privilege: "USAGE",
                columns: None,
                runtime: Some("a column default of an INSERT calls nextval"),
                data: self.data_of(seq, RelKind::Sequence),
            };
            if !needs.contains(&need) {
                needs.push(need);
            }
        }
    }
}

/// The privileges a write of these kinds needs on its table.
pub(super) fn write_privileges(kinds: &BTreeSet<WriteKind>, reads_rows: bool) -> Vec<&'static str> {
    let mut out = BTreeSet::new();
    for kind in kinds {
        match kind {
            WriteKind::Insert | WriteKind::Copy => {
                out.insert("INSERT");
            }
            WriteKind::Update | WriteKind::Lock => {
                out.insert("UPDATE");
            }
            WriteKind::Delete => {
                out.insert("DELETE");
            }
            WriteKind::Truncate => {
                out.insert("TRUNCATE");
            }
            WriteKind::Merge => {}
        }
    }
    // UPDATE and DELETE read the rows they match; MERGE joins; FOR UPDATE selects.
    let reads = reads_rows
        || kinds.iter().any(|k| {
            matches!(
                k,
                WriteKind::Update | WriteKind::Delete | WriteKind::Merge | WriteKind::Lock
            )
        });
    if reads {
        out.insert("SELECT");
    }
    in_order(&out)
}

/// A boolean SQL check that the current role holds a need (for the proof).
pub(super) fn privilege_check(need: &Need) -> String {
    let rel = relation_oid(&need.relation);
    let p = lit(need.privilege);
    match (&need.kind, &need.columns) {
        (RelKind::Sequence, _) => format!("coalesce(has_sequence_privilege({rel}, {p}), false)"),
        (_, Some(cols)) => cols
            .iter()
            .map(|c| {
                format!(
                    "coalesce(has_column_privilege({rel}, {}, {p}), false)",
                    lit(c)
                )
            })
            .collect::<Vec<_>>()
            .join(" AND "),
        (_, None) => format!("coalesce(has_table_privilege({rel}, {p}), false)"),
    }
}
