//! Analysis: from a catalog and a workload to who reads and writes what, table
//! ownership, and proposed data domains with the trade-offs of each boundary. Pure
//! functions over plain data; `commands::discover` does the I/O around them.

pub mod access;
pub mod cross_cutting;
pub mod domains;
pub mod leiden;
pub mod naming;
pub mod ownership;
pub mod usage;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::catalog::{Catalog, QualName};
use crate::workload::{Problem, ServiceSeen, Workload};
use domains::{LinkKind, Proposal, Weights};
use ownership::TableOwnership;
use usage::Usage;

#[derive(Debug, Clone)]
pub struct Options {
    /// Leiden's resolution: higher gives more, smaller domains [default: chosen by
    /// a sweep, see `leiden::choose`].
    pub resolution: Option<f64>,
    pub search_path: Vec<String>,
    /// The user's pins from the plan, applied after clustering.
    pub pins: Vec<domains::Pin>,
    /// Tables whose ownership the plan decides `service-consolidation`: their
    /// writers are clustered and owned as one service.
    pub consolidate: Vec<QualName>,
    /// Tables whose ownership the plan decides `shared-data-domain`: each goes to
    /// a domain of its own with the other tables its writers share.
    pub shared: Vec<QualName>,
    /// Services the plan says are (`true`) or are not (`false`) cross-cutting
    /// writers, whatever detection finds.
    pub cross_cutting: BTreeMap<String, bool>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            resolution: None,
            search_path: usage::default_search_path(),
            pins: Vec::new(),
            consolidate: Vec::new(),
            shared: Vec::new(),
            cross_cutting: BTreeMap::new(),
        }
    }
}

/// Everything discover found, in the shape its JSON output has.
#[derive(Debug, Clone, Serialize)]
pub struct Discovery {
    pub services: Vec<ServiceReport>,
    pub domains: Vec<DomainReport>,
    pub tables: Vec<TableReport>,
    pub boundaries: Vec<Boundary>,
    /// Services writing into several others' tables, set aside while clustering.
    pub cross_cutting: Vec<cross_cutting::CrossCutting>,
    pub quality: domains::Quality,
    pub problems: Problems,
    /// The weighted links between tables the domains were clustered from.
    pub links: Vec<domains::Link>,
    #[serde(skip)]
    pub proposal: Proposal,
}

/// A service of the workload: what it touches and how it connects.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceReport {
    pub name: String,
    /// Statements it ran (counting each call where the source knows).
    pub statements: u64,
    /// Tables it writes and reads.
    pub writes: usize,
    pub reads: usize,
    /// How it connects: roles, application names, sessions in the logs, connections
    /// open when discover looked. Empty where the sources do not tell.
    #[serde(flatten)]
    pub seen: ServiceSeen,
    /// True when it touched no table (it stays out of the analysis).
    pub idle: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct DomainReport {
    pub name: String,
    /// `schema.table`, quoted where needed.
    pub tables: Vec<String>,
    pub named_after: String,
    /// The next best names, with why: the review offers them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alternatives: Vec<naming::NameChoice>,
    pub writers: Vec<String>,
    pub writer_purity: Option<f64>,
    pub common: bool,
    pub pinned: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    /// `schema.table`, quoted where needed.
    pub name: String,
    pub domain: String,
    /// Ownership, writers, readers, owner, reason, resolutions and split; a partition
    /// has its root's ownership, without the resolutions.
    #[serde(flatten)]
    pub owned: TableOwnership,
    /// For partitions: the partitioned table they belong to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition_of: Option<String>,
}

/// What the boundary between two domains costs (integrators cut) and buys
/// (disintegrators: what differs between the two sides).
#[derive(Debug, Clone, Serialize)]
pub struct Boundary {
    pub domains: [String; 2],
    pub costs: Vec<Cost>,
    pub buys: Buys,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cost {
    /// foreign_key, view, trigger, function, statement or transaction.
    pub kind: String,
    pub count: usize,
    pub examples: Vec<String>,
}

impl Cost {
    /// "2 foreign keys", "1 view": the count and what is counted, for reports.
    pub fn label(&self) -> String {
        format!(
            "{} {}{}",
            self.count,
            self.kind.replace('_', " "),
            if self.count == 1 { "" } else { "s" }
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Buys {
    /// Services writing each side; the fewer they share, the more the split frees them.
    pub writers: [Vec<String>; 2],
    pub shared_writers: Vec<String>,
    pub size_bytes: [i64; 2],
    pub write_statements: [u64; 2],
    /// Roles the writers of each side connect as: a split lets each have its own.
    pub roles: [Vec<String>; 2],
    /// Connections of each side's writers (open now, or sessions in the logs).
    pub connections: [u64; 2],
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Problems {
    /// Files or sources that could not be read.
    pub workload: Vec<Problem>,
    /// Statements that do not parse.
    pub unparsed: Vec<Problem>,
    /// Names that match no table or view.
    pub unknown: Vec<Problem>,
    /// Statements left out on purpose (ignored roles, carve's own queries, other
    /// databases), counted per source and reason.
    pub ignored: BTreeMap<String, u64>,
}

impl Problems {
    pub fn count(&self) -> usize {
        self.workload.len() + self.unparsed.len() + self.unknown.len()
    }

    /// Each list with what its problems are, in the order reports show them.
    pub fn by_kind(&self) -> [(&'static str, &[Problem]); 3] {
        [
            ("unreadable", &self.workload),
            ("does not parse", &self.unparsed),
            ("unknown name", &self.unknown),
        ]
    }
}

pub fn discover(catalog: &Catalog, workload: Option<&Workload>, options: &Options) -> Discovery {
    let empty = Workload::default();
    let workload_given = workload.is_some();
    let workload = workload.unwrap_or(&empty);
    let started = std::time::Instant::now();
    let usage = Usage::of(catalog, workload, options.search_path.clone());
    tracing::debug!(elapsed = ?started.elapsed(), statements = usage.statements.len(), "workload resolved");
    // Consolidated services own and cluster as one; the report still lists each.
    let groups = consolidated_services(&usage, &options.consolidate);
    let merged;
    let clustered = if groups.is_empty() {
        &usage
    } else {
        merged = usage.with_services_merged(&groups);
        &merged
    };
    // Cross-cutting writers (a nightly sync) neither tie clusters together nor own
    // the rows they tidy: clustering and owners are found without them, and the
    // report lists them among each table's writers.
    let cross = cross_cutting::detect(clustered, &options.cross_cutting);
    let without;
    let clustered = if cross.is_empty() {
        clustered
    } else {
        without = clustered.setting_aside(&cross);
        &without
    };
    let mut ownership = ownership::classify(catalog, clustered, workload_given);
    cross_cutting::note_co_owners(&mut ownership, &cross);
    // A consolidated table has one owner now, but its ways out stay on record: the
    // plan's decision is one of them, and the review may pick another.
    let before_consolidation: BTreeMap<QualName, Vec<ownership::Resolution>> = if groups.is_empty()
    {
        BTreeMap::new()
    } else {
        ownership::classify(catalog, &usage, workload_given)
            .into_iter()
            .filter(|o| options.consolidate.contains(&o.table))
            .map(|o| (o.table, o.resolutions))
            .collect()
    };
    tracing::debug!(elapsed = ?started.elapsed(), "ownership classified");
    let mut pins = options.pins.clone();
    pins.extend(shared_domains(&usage, &options.shared, &options.pins));
    let proposal = domains::propose(
        catalog,
        clustered,
        &ownership,
        options.resolution,
        &Weights::default(),
        &pins,
    );
    tracing::debug!(elapsed = ?started.elapsed(), "domains proposed");
    let domain_of = proposal.domain_of();

    let by_table: BTreeMap<&QualName, &TableOwnership> =
        ownership.iter().map(|o| (&o.table, o)).collect();
    let mut tables = Vec::new();
    for table in &catalog.tables {
        let root = catalog.partition_root(&table.name);
        let Some(o) = by_table.get(&root) else {
            continue;
        };
        let mut owned = (*o).clone();
        if let Some(resolutions) = before_consolidation.get(&table.name) {
            owned.resolutions = resolutions.clone();
        }
        if table.partition_of.is_some() {
            owned.table = table.name.clone();
            owned.resolutions.clear();
            owned.split = None;
        }
        tables.push(TableReport {
            name: table.name.to_string(),
            domain: domain_of
                .get(&table.name)
                .map(|d| d.to_string())
                .unwrap_or_default(),
            owned,
            partition_of: table.partition_of.as_ref().map(|p| p.to_string()),
        });
    }
    let domains = proposal
        .domains
        .iter()
        .map(|d| DomainReport {
            name: d.name.clone(),
            tables: d.tables.iter().map(ToString::to_string).collect(),
            named_after: d.named_after.clone(),
            alternatives: d.alternatives.iter().take(2).cloned().collect(),
            writers: d.writers.clone(),
            writer_purity: d.writer_purity,
            common: d.common,
            pinned: d.pinned,
        })
        .collect();
    let boundaries = boundaries(catalog, &usage, &proposal, &workload.seen);
    tracing::debug!(elapsed = ?started.elapsed(), "boundaries found");
    Discovery {
        services: service_reports(workload, &usage),
        domains,
        tables,
        boundaries,
        cross_cutting: cross,
        quality: proposal.quality.clone(),
        problems: Problems {
            workload: workload.problems.clone(),
            unparsed: usage.unparsed.clone(),
            unknown: usage.unknown.clone(),
            ignored: workload.ignored.clone(),
        },
        links: proposal.links.clone(),
        proposal,
    }
}

/// The groups of services the plan consolidates: the writers of each table
/// decided `service-consolidation`, groups sharing a service merged.
pub fn consolidated_services(usage: &Usage, tables: &[QualName]) -> Vec<BTreeSet<String>> {
    let sets = tables
        .iter()
        .filter_map(|t| usage.tables.get(t))
        .map(|u| u.writers.keys().cloned().collect())
        .collect();
    crate::plan::choices::merge_overlapping(sets)
}

/// Pins for the tables decided `shared-data-domain`: one domain per set of
/// writers, `shared_<writer>_<writer>`, with every such table they write. A table
/// the user pinned stays where the user put it.
fn shared_domains(usage: &Usage, tables: &[QualName], user: &[domains::Pin]) -> Vec<domains::Pin> {
    let mut by_name: BTreeMap<String, Vec<QualName>> = BTreeMap::new();
    for table in tables {
        if user.iter().any(|p| p.tables.contains(table)) {
            continue;
        }
        let writers: Vec<String> = usage
            .tables
            .get(table)
            .map(|u| u.writers.keys().map(|w| snake_case(w)).collect())
            .unwrap_or_default();
        let mut name = if writers.is_empty() {
            format!("shared_{}", snake_case(&table.name))
        } else {
            format!("shared_{}", writers.join("_"))
        };
        // snake_case is ASCII: any cut is at a character boundary.
        name.truncate(63);
        by_name.entry(name).or_default().push(table.clone());
    }
    by_name
        .into_iter()
        .map(|(name, tables)| domains::Pin {
            tables,
            domain: Some(name),
            apart: true,
        })
        .collect()
}

/// `BookInventory` → `book_inventory`, `order-service` → `order_service`: lower-case
/// ASCII letters and digits joined by single underscores, for names carve proposes
/// (domains, tables of a split).
pub fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() && i > 0 && !out.ends_with('_') {
            out.push('_');
        }
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
    }
    out.trim_matches('_').to_string()
}

fn service_reports(workload: &Workload, usage: &Usage) -> Vec<ServiceReport> {
    let mut statements: BTreeMap<&str, u64> = BTreeMap::new();
    for s in &workload.statements {
        *statements.entry(&s.service).or_default() += s.calls;
    }
    let count = |service: &str, writes: bool| {
        usage
            .tables
            .values()
            .filter(|u| {
                if writes {
                    u.writers.contains_key(service)
                } else {
                    u.readers.contains_key(service)
                }
            })
            .count()
    };
    usage
        .services
        .iter()
        .map(|s| (s, false))
        .chain(usage.idle_services.iter().map(|s| (s, true)))
        .map(|(name, idle)| ServiceReport {
            name: name.clone(),
            statements: statements.get(name.as_str()).copied().unwrap_or_default(),
            writes: count(name, true),
            reads: count(name, false),
            seen: workload.seen.get(name).cloned().unwrap_or_default(),
            idle,
        })
        .collect()
}

/// How many statements (or transactions) touch both sides, and the first few of them.
type Counted = (usize, Vec<String>);

fn boundaries(
    catalog: &Catalog,
    usage: &Usage,
    proposal: &Proposal,
    seen: &BTreeMap<String, ServiceSeen>,
) -> Vec<Boundary> {
    let domain_of = proposal.domain_of();
    let mut costs: BTreeMap<(String, String), BTreeMap<&'static str, BTreeSet<String>>> =
        BTreeMap::new();
    for link in proposal.links.iter().filter(|l| l.kind.is_integrator()) {
        let (Some(a), Some(b)) = (domain_of.get(&link.a), domain_of.get(&link.b)) else {
            continue;
        };
        if a == b {
            continue;
        }
        let key = if a < b {
            (a.to_string(), b.to_string())
        } else {
            (b.to_string(), a.to_string())
        };
        // Statements and transactions are counted below, per statement rather than
        // per table pair.
        if matches!(link.kind, LinkKind::Statement(_) | LinkKind::Transaction(_)) {
            continue;
        }
        let (kind, what) = link.kind.parts();
        costs
            .entry(key)
            .or_default()
            .entry(kind)
            .or_default()
            .insert(what.to_string());
    }
    // Foreign keys to and from common tables cross a boundary too.
    for table in catalog.tables.iter().filter(|t| t.partition_of.is_none()) {
        for (con, fk) in table.foreign_keys().filter(|(c, _)| !c.inherited) {
            let (Some(a), Some(b)) = (domain_of.get(&table.name), domain_of.get(&fk.references))
            else {
                continue;
            };
            if a != b {
                let key = if a < b {
                    (a.to_string(), b.to_string())
                } else {
                    (b.to_string(), a.to_string())
                };
                costs
                    .entry(key)
                    .or_default()
                    .entry("foreign_key")
                    .or_default()
                    .insert(format!(
                        "{}.{}",
                        table.name,
                        crate::sql::display_ident(&con.name)
                    ));
            }
        }
    }
    // Statements and transactions touching both sides, with the first few as examples.
    let mut touching: BTreeMap<(String, String), BTreeMap<&'static str, Counted>> = BTreeMap::new();
    let mut count_pairs = |tables: &mut dyn Iterator<Item = &QualName>, kind, example: &str| {
        let domains: BTreeSet<&str> = tables.filter_map(|t| domain_of.get(t).copied()).collect();
        let domains: Vec<&str> = domains.into_iter().collect();
        for (i, a) in domains.iter().enumerate() {
            for b in &domains[i + 1..] {
                let (n, examples) = touching
                    .entry((a.to_string(), b.to_string()))
                    .or_default()
                    .entry(kind)
                    .or_default();
                *n += 1;
                if examples.len() < 3 {
                    examples.push(example.to_string());
                }
            }
        }
    };
    for s in &usage.statements {
        count_pairs(&mut s.tables.iter(), "statement", &s.origin);
    }
    for t in usage.transactions() {
        let at = format!("transaction at {}", t[0].origin);
        count_pairs(
            &mut t.iter().flat_map(|s| s.tables.iter()),
            "transaction",
            &at,
        );
    }
    for key in touching.keys() {
        costs.entry(key.clone()).or_default();
    }
    let connects = |writers: &[String]| -> (Vec<String>, u64) {
        let mut roles = BTreeSet::new();
        let mut connections = 0;
        for s in writers.iter().filter_map(|w| seen.get(w)) {
            roles.extend(s.roles.iter().cloned());
            connections += s.connections_open.max(s.sessions_logged);
        }
        (roles.into_iter().collect(), connections)
    };
    let side = |domain: &str| -> (Vec<String>, i64, u64) {
        let d = proposal
            .domains
            .iter()
            .find(|d| d.name == domain)
            .expect("domain exists");
        let size = d
            .tables
            .iter()
            .filter_map(|t| catalog.table(t))
            .map(|t| t.size_bytes)
            .sum();
        let writes = d
            .tables
            .iter()
            .filter_map(|t| usage.tables.get(t))
            .flat_map(|u| u.writers.values())
            .map(|w| w.statements)
            .sum();
        (d.writers.clone(), size, writes)
    };
    costs
        .into_iter()
        .map(|((a, b), kinds)| {
            let mut list: Vec<Cost> = kinds
                .into_iter()
                .map(|(kind, items)| Cost {
                    kind: kind.to_string(),
                    count: items.len(),
                    examples: items.into_iter().take(3).collect(),
                })
                .collect();
            if let Some(counted) = touching.remove(&(a.clone(), b.clone())) {
                list.extend(counted.into_iter().map(|(kind, (count, examples))| Cost {
                    kind: kind.to_string(),
                    count,
                    examples,
                }));
            }
            list.sort_by(|x, y| x.kind.cmp(&y.kind));
            let (wa, sa, xa) = side(&a);
            let (wb, sb, xb) = side(&b);
            let shared = wa.iter().filter(|s| wb.contains(s)).cloned().collect();
            let (ra, ca) = connects(&wa);
            let (rb, cb) = connects(&wb);
            Boundary {
                costs: list,
                buys: Buys {
                    writers: [wa, wb],
                    shared_writers: shared,
                    size_bytes: [sa, sb],
                    write_statements: [xa, xb],
                    roles: [ra, rb],
                    connections: [ca, cb],
                },
                domains: [a, b],
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::snake_case;

    #[test]
    fn snake_case_service_names() {
        assert_eq!(snake_case("BookInventory"), "book_inventory");
        assert_eq!(snake_case("order-service"), "order_service");
        assert_eq!(snake_case("tpcc"), "tpcc");
    }
}
