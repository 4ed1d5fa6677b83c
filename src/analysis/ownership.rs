//! Table ownership from the writers of each table, following the source texts: single
//! (one writer), common (written by many or most services, like an audit table), joint
//! (a few writers), and tables only read or not used at all. Common and joint tables
//! get ranked resolutions with their reasons.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::access::{Columns, WriteKind};
use super::usage::{TableUse, Usage};
use crate::catalog::{Catalog, QualName};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ownership {
    Single,
    Common,
    Joint,
    /// Read but never written by the workload (reference data, filled by loaders).
    ReadOnly,
    /// Neither read nor written by the workload.
    Unused,
    /// No workload was given: ownership cannot be told from the catalog alone.
    Unknown,
}

impl Ownership {
    /// The name reports and the JSON use.
    pub fn as_str(self) -> &'static str {
        match self {
            Ownership::Single => "single",
            Ownership::Common => "common",
            Ownership::Joint => "joint",
            Ownership::ReadOnly => "read-only",
            Ownership::Unused => "unused",
            Ownership::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResolutionKind {
    DedicatedOwner,
    TableSplit,
    Delegate,
    SharedDataDomain,
    ServiceConsolidation,
}

impl ResolutionKind {
    /// The name reports, the JSON and the plan's decisions use.
    pub fn as_str(self) -> &'static str {
        match self {
            ResolutionKind::DedicatedOwner => "dedicated-owner",
            ResolutionKind::TableSplit => "table-split",
            ResolutionKind::Delegate => "delegate",
            ResolutionKind::SharedDataDomain => "shared-data-domain",
            ResolutionKind::ServiceConsolidation => "service-consolidation",
        }
    }
}

/// One way to resolve shared writes, with what it means here and why it ranks where it
/// does.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resolution {
    pub kind: ResolutionKind,
    pub proposal: String,
    pub reason: String,
}

/// A proposed table split: which columns go with which writer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableSplit {
    /// Columns every part keeps (the primary key).
    pub key: Vec<String>,
    pub parts: Vec<SplitPart>,
    /// Columns more than one writer writes: someone must give them up.
    pub contested: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitPart {
    pub service: String,
    /// The table this part would become (the original name for the row owner).
    pub table: String,
    pub columns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableOwnership {
    /// Not in the JSON: reports name the table themselves.
    #[serde(skip)]
    pub table: QualName,
    pub ownership: Ownership,
    pub writers: Vec<String>,
    pub readers: Vec<String>,
    /// The service that owns the table: its single writer, or the proposed owner.
    pub owner: Option<String>,
    pub reason: String,
    /// Ranked, best first (common and joint tables only).
    pub resolutions: Vec<Resolution>,
    pub split: Option<TableSplit>,
}

/// Classifies every table of the catalog (partitions are part of their root).
pub fn classify(catalog: &Catalog, usage: &Usage, have_workload: bool) -> Vec<TableOwnership> {
    let services = usage.services.len();
    let empty = TableUse::default();
    let neighbours = fk_neighbours(catalog);
    let none = BTreeSet::new();
    catalog
        .tables
        .iter()
        .filter(|t| t.partition_of.is_none())
        .map(|table| {
            let used = usage.tables.get(&table.name).unwrap_or(&empty);
            let pk = table
                .primary_key()
                .map(|c| c.columns.clone())
                .unwrap_or_default();
            let neighbours = neighbours.get(&table.name).unwrap_or(&none);
            classify_one(
                &table.name,
                used,
                services,
                have_workload,
                &pk,
                usage,
                neighbours,
            )
        })
        .collect()
}

fn classify_one(
    name: &QualName,
    used: &TableUse,
    services: usize,
    have_workload: bool,
    primary_key: &[String],
    usage: &Usage,
    neighbours: &BTreeSet<QualName>,
) -> TableOwnership {
    let writers: Vec<String> = used.writers.keys().cloned().collect();
    let readers: Vec<String> = used.readers.keys().cloned().collect();
    let n = writers.len();
    let insert_only = used.writers.values().all(|w| {
        w.kinds
            .iter()
            .all(|k| matches!(k, WriteKind::Insert | WriteKind::Copy))
    });
    let mut result = TableOwnership {
        table: name.clone(),
        ownership: Ownership::Unknown,
        writers: writers.clone(),
        readers: readers.clone(),
        owner: None,
        reason: String::new(),
        resolutions: Vec::new(),
        split: None,
    };
    if !have_workload {
        result.reason = "no workload given: who writes the table is not known".into();
        return result;
    }
    match n {
        0 if readers.is_empty() => {
            result.ownership = Ownership::Unused;
            result.reason = "no statement of the workload reads or writes it".into();
        }
        0 => {
            result.ownership = Ownership::ReadOnly;
            result.reason = format!(
                "read by {} but written by no service: reference data, kept by whoever loads it",
                readers.join(", ")
            );
        }
        1 => {
            result.ownership = Ownership::Single;
            result.owner = Some(writers[0].clone());
            result.reason = format!("only {} writes it", writers[0]);
        }
        // Many writers, most of the services, or several services appending the same
        // kind of record: a common table.
        n if n >= 3 && (2 * n >= services || insert_only) => {
            result.ownership = Ownership::Common;
            let owner = format!("{}-service", name.name.replace('_', "-"));
            result.owner = Some(owner.clone());
            result.reason = format!(
                "written by {n} of {services} services ({}){}",
                writers.join(", "),
                if insert_only {
                    ", each only inserting"
                } else {
                    ""
                }
            );
            let how = if insert_only {
                "send it messages (fire and forget: they need no answer)"
            } else {
                "call its API"
            };
            result.resolutions.push(Resolution {
                kind: ResolutionKind::DedicatedOwner,
                proposal: format!("a dedicated {owner} owns {name}; the other services {how}"),
                reason: "no single writer can own what every service writes; a shared schema would tie all of them together".into(),
            });
        }
        _ => {
            result.ownership = Ownership::Joint;
            let (split, resolutions, owner) =
                joint_resolutions(name, used, primary_key, usage, neighbours);
            result.reason = format!("written by {}", writers.join(" and "));
            result.owner = owner;
            result.split = split;
            result.resolutions = resolutions;
        }
    }
    result
}

/// For every table, the tables with a foreign key to or from it (built once).
fn fk_neighbours(catalog: &Catalog) -> BTreeMap<QualName, BTreeSet<QualName>> {
    let mut out: BTreeMap<QualName, BTreeSet<QualName>> = BTreeMap::new();
    for t in catalog.tables.iter().filter(|t| t.partition_of.is_none()) {
        for (_, fk) in t.foreign_keys() {
            if fk.references != t.name {
                out.entry(t.name.clone())
                    .or_default()
                    .insert(fk.references.clone());
                out.entry(fk.references.clone())
                    .or_default()
                    .insert(t.name.clone());
            }
        }
    }
    out
}

/// The writer a joint table most naturally belongs to: the one that creates its rows,
/// then the one that alone writes most of the tables it is tied to by foreign keys,
/// then the one writing most columns and statements.
pub fn row_owner(
    used: &TableUse,
    usage: &Usage,
    neighbours: &BTreeSet<QualName>,
) -> Option<String> {
    let affinity = |service: &str| {
        neighbours
            .iter()
            .filter_map(|n| usage.tables.get(n))
            .filter(|u| u.writers.len() == 1 && u.writers.contains_key(service))
            .count()
    };
    used.writers
        .iter()
        .max_by_key(|(service, w)| {
            (
                w.kinds.contains(&WriteKind::Insert) || w.kinds.contains(&WriteKind::Copy),
                affinity(service),
                matches!(w.columns, Columns::All),
                column_count(&w.columns),
                w.statements,
                std::cmp::Reverse((*service).clone()),
            )
        })
        .map(|(s, _)| s.clone())
}

/// Ranks the four ways out of joint ownership from the column-level write sets.
fn joint_resolutions(
    name: &QualName,
    used: &TableUse,
    primary_key: &[String],
    usage: &Usage,
    neighbours: &BTreeSet<QualName>,
) -> (Option<TableSplit>, Vec<Resolution>, Option<String>) {
    let row_owner = row_owner(used, usage, neighbours).expect("joint tables have writers");

    let mut writers_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (service, w) in &used.writers {
        if let Columns::Some(cols) = &w.columns {
            for c in cols.iter().filter(|c| !primary_key.contains(c)) {
                writers_of
                    .entry(c.clone())
                    .or_default()
                    .insert(service.clone());
            }
        }
    }
    let contested: Vec<String> = writers_of
        .iter()
        .filter(|(_, ws)| ws.len() > 1)
        .map(|(c, _)| c.clone())
        .collect();
    let mut parts: Vec<SplitPart> = Vec::new();
    for service in used.writers.keys() {
        let own: Vec<String> = writers_of
            .iter()
            .filter(|(_, ws)| ws.len() == 1 && ws.contains(service))
            .map(|(c, _)| c.clone())
            .collect();
        if own.is_empty() && service != &row_owner {
            continue;
        }
        let table = if service == &row_owner {
            name.name.clone()
        } else {
            format!("{}_{}", name.name, super::snake_case(service))
        };
        parts.push(SplitPart {
            service: service.clone(),
            table,
            columns: own,
        });
    }
    parts.sort_by_key(|p| p.service != row_owner);
    let others_with_columns = parts.iter().filter(|p| p.service != row_owner).count();
    let exclusive: usize = parts.iter().map(|p| p.columns.len()).sum();
    let total = exclusive + contested.len();
    let clean_share = if total == 0 {
        0.0
    } else {
        exclusive as f64 / total as f64
    };

    let other_writers: Vec<&String> = used.writers.keys().filter(|s| **s != row_owner).collect();
    // Changing at most two columns, or only adding rows (a notification, a log
    // line): a call to the owner does it, the texts' first answer to a write
    // across a boundary.
    let others_write_little =
        used.writers
            .iter()
            .filter(|(s, _)| **s != row_owner)
            .all(|(_, w)| {
                column_count(&w.columns) <= 2 || w.kinds.iter().all(|k| *k == WriteKind::Insert)
            });
    let shared_tables = writers_share_tables(used, usage);

    let split = (others_with_columns > 0).then(|| TableSplit {
        key: primary_key.to_vec(),
        parts: parts.clone(),
        contested: contested.clone(),
    });
    let split_text = parts
        .iter()
        .map(|p| {
            format!(
                "{} keeps {} ({})",
                p.service,
                p.table,
                if p.columns.is_empty() {
                    "key only".to_string()
                } else {
                    p.columns.join(", ")
                }
            )
        })
        .collect::<Vec<_>>()
        .join("; ");

    let mut ranked: Vec<(f64, Resolution)> = vec![
        (
            if split.is_some() { 0.5 + clean_share } else { 0.0 },
            Resolution {
                kind: ResolutionKind::TableSplit,
                proposal: if split.is_some() {
                    format!("split {name}: {split_text}; each part keeps {}", if primary_key.is_empty() { "a key to be chosen".to_string() } else { primary_key.join(", ") })
                } else {
                    format!("split {name} by responsibility")
                },
                reason: if contested.is_empty() && split.is_some() {
                    "the writers write disjoint columns, so each can own its slice".into()
                } else if split.is_some() {
                    format!("{:.0}% of the written columns have one writer; contested: {}", clean_share * 100.0, contested.join(", "))
                } else {
                    "the other writers write no column of their own".into()
                },
            },
        ),
        (
            if others_write_little { 1.2 } else { 0.6 },
            Resolution {
                kind: ResolutionKind::Delegate,
                proposal: format!(
                    "{row_owner} owns {name}; {} call{} it for writes",
                    other_writers.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                    if other_writers.len() == 1 { "s" } else { "" }
                ),
                reason: if others_write_little {
                    format!("{row_owner} creates the rows and the others only add rows or change at most two columns")
                } else {
                    format!("{row_owner} creates the rows; the others would pay a call per write")
                },
            },
        ),
        (
            if clean_share < 0.5 { 0.9 } else { 0.4 },
            Resolution {
                kind: ResolutionKind::SharedDataDomain,
                proposal: format!("{name} stays in a data domain shared by {}", used.writers.keys().cloned().collect::<Vec<_>>().join(" and ")),
                reason: "it keeps local transactions, at the price of coordinated schema changes and a wider boundary".into(),
            },
        ),
        (
            0.3 + shared_tables,
            Resolution {
                kind: ResolutionKind::ServiceConsolidation,
                proposal: format!("merge {} into one service", used.writers.keys().cloned().collect::<Vec<_>>().join(" and ")),
                reason: format!("the writers share {:.0}% of the tables they write", shared_tables * 100.0),
            },
        ),
    ];
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    let owner = Some(row_owner);
    (split, ranked.into_iter().map(|(_, r)| r).collect(), owner)
}

fn column_count(columns: &Columns) -> usize {
    match columns {
        Columns::All => usize::MAX,
        Columns::Some(c) => c.len(),
    }
}

/// Jaccard similarity of the sets of tables the writers of one table write.
fn writers_share_tables(used: &TableUse, usage: &Usage) -> f64 {
    let sets: Vec<BTreeSet<&QualName>> = used
        .writers
        .keys()
        .map(|service| {
            usage
                .tables
                .iter()
                .filter(|(_, u)| u.writers.contains_key(service))
                .map(|(t, _)| t)
                .collect()
        })
        .collect();
    let union: BTreeSet<&QualName> = sets.iter().flatten().copied().collect();
    let mut inter = sets.first().cloned().unwrap_or_default();
    for s in &sets[1.min(sets.len())..] {
        inter = inter.intersection(s).copied().collect();
    }
    if union.is_empty() {
        0.0
    } else {
        inter.len() as f64 / union.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::{Ownership, ResolutionKind};

    #[test]
    fn names_match_the_json() {
        for o in [
            Ownership::Single,
            Ownership::Common,
            Ownership::Joint,
            Ownership::ReadOnly,
            Ownership::Unused,
            Ownership::Unknown,
        ] {
            assert_eq!(serde_json::to_value(o).unwrap(), o.as_str());
        }
        for k in [
            ResolutionKind::DedicatedOwner,
            ResolutionKind::TableSplit,
            ResolutionKind::Delegate,
            ResolutionKind::SharedDataDomain,
            ResolutionKind::ServiceConsolidation,
        ] {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
    }
}
