//! Data domains: a weighted graph of tables, clustered with Leiden.
//!
//! What ties two tables together (integrators, in the source text's terms) becomes a
//! weighted link, each kept with its reason so the report can say what a boundary cuts:
//! foreign keys (declared, or implied by a `<table>_id` column of the key's type),
//! views and functions reading both, triggers on one writing the other, statements
//! touching both, and services that write (or use) both. Common tables, written by
//! nearly everyone, are set aside first so they do not glue every domain together;
//! each becomes a domain of its own, for its dedicated owner service.

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap as HashMap;

use serde::Serialize;

use super::leiden::{self, Graph};
use super::ownership::{Ownership, TableOwnership};
use super::usage::{ResolvedStatement, Usage};
use crate::catalog::{Catalog, QualName};

/// How much each kind of link weighs. Writer similarity is the strongest sign that two
/// tables belong together (the same service keeps them); a foreign key comes next.
#[derive(Debug, Clone, Copy)]
pub struct Weights {
    pub foreign_key: f64,
    pub implied_foreign_key: f64,
    pub view: f64,
    pub trigger: f64,
    pub function: f64,
    pub statement: f64,
    pub transaction: f64,
    pub same_writers: f64,
    pub same_users: f64,
    pub name_prefix: f64,
    pub comment: f64,
}

impl Default for Weights {
    fn default() -> Weights {
        Weights {
            foreign_key: 1.0,
            implied_foreign_key: 0.7,
            view: 0.5,
            trigger: 0.7,
            function: 0.3,
            statement: 0.5,
            transaction: 0.4,
            same_writers: 1.5,
            same_users: 0.5,
            name_prefix: 0.15,
            comment: 0.3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", content = "via", rename_all = "snake_case")]
pub enum LinkKind {
    ForeignKey(String),
    ImpliedForeignKey(String),
    View(String),
    Trigger(String),
    Function(String),
    Statement(String),
    /// Tables used by different statements of one transaction.
    Transaction(String),
    /// Tables whose names share a stem (`order`: `orders`, `order_item`).
    SharedName(String),
    /// A table or column comment naming another table.
    Comment(String),
}

impl LinkKind {
    /// The kind's name as the JSON has it (`foreign_key`, `view`, …) and what it goes
    /// through (a constraint, a view, a trigger, a function, a statement's origin).
    pub fn parts(&self) -> (&'static str, &str) {
        match self {
            LinkKind::ForeignKey(via) => ("foreign_key", via),
            LinkKind::ImpliedForeignKey(via) => ("implied_foreign_key", via),
            LinkKind::View(via) => ("view", via),
            LinkKind::Trigger(via) => ("trigger", via),
            LinkKind::Function(via) => ("function", via),
            LinkKind::Statement(via) => ("statement", via),
            LinkKind::Transaction(via) => ("transaction", via),
            LinkKind::SharedName(via) => ("shared_name", via),
            LinkKind::Comment(via) => ("comment", via),
        }
    }

    /// Links from what tables are called or described as, not from how they are
    /// used: they help cluster, but do not make a table central to its group.
    pub fn is_name_hint(&self) -> bool {
        matches!(self, LinkKind::SharedName(_) | LinkKind::Comment(_))
    }

    /// Links that really couple tables (as opposed to hints of affinity).
    pub fn is_integrator(&self) -> bool {
        matches!(
            self,
            LinkKind::ForeignKey(_)
                | LinkKind::View(_)
                | LinkKind::Trigger(_)
                | LinkKind::Function(_)
                | LinkKind::Statement(_)
                | LinkKind::Transaction(_)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Link {
    pub a: QualName,
    pub b: QualName,
    pub weight: f64,
    #[serde(flatten)]
    pub kind: LinkKind,
    /// How many statements or transactions this link stands for (1 for the others);
    /// `via` names the first.
    pub count: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Domain {
    pub name: String,
    /// Root tables, then their partitions.
    pub tables: Vec<QualName>,
    /// Why it has this name.
    pub named_after: String,
    /// The next best names, with why (the review offers them).
    pub alternatives: Vec<super::naming::NameChoice>,
    /// Services that write its tables.
    pub writers: Vec<String>,
    /// Share of the writes to its tables made by its main writer.
    pub writer_purity: Option<f64>,
    /// Set aside before clustering for a common table.
    pub common: bool,
    /// Named by a pin in the plan.
    pub pinned: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Quality {
    /// The resolution the domains were clustered at: given, or chosen by the sweep.
    pub resolution: f64,
    /// Modularity of the domains' clustering at resolution 1.
    pub modularity: f64,
    /// Every resolution the sweep tried, with what it gives.
    pub alternatives: Vec<ScaleReport>,
    pub foreign_keys: usize,
    pub foreign_keys_crossing: usize,
    pub statements: usize,
    pub statements_crossing: usize,
    /// Transactions (a statement outside `BEGIN … COMMIT` is one) touching tables.
    pub transactions: usize,
    pub transactions_crossing: usize,
}

/// One resolution of the sweep, as the report shows it: how many domains it gives
/// (before pins), its modularity at resolution 1, and how far its seeds agree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScaleReport {
    pub resolution: f64,
    pub domains: usize,
    pub modularity: f64,
    pub agreement: f64,
    pub chosen: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Proposal {
    pub domains: Vec<Domain>,
    pub links: Vec<Link>,
    pub quality: Quality,
}

impl Proposal {
    /// The domain each table (partitions included) is in.
    pub fn domain_of(&self) -> HashMap<&QualName, &str> {
        self.domains
            .iter()
            .flat_map(|d| d.tables.iter().map(move |t| (t, d.name.as_str())))
            .collect()
    }
}

/// Proposes domains for every table of the catalog.
/// A user's pin: these tables stay in one domain, named so when a name is given.
/// Pins are applied exactly, after clustering, on every run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub tables: Vec<QualName>,
    pub domain: Option<String>,
    /// Its tables make a domain of their own, apart from the tables clustered with
    /// them (a shared data domain), rather than joining the group holding most.
    pub apart: bool,
}

pub fn propose(
    catalog: &Catalog,
    usage: &Usage,
    ownership: &[TableOwnership],
    resolution: Option<f64>,
    weights: &Weights,
    pins: &[Pin],
) -> Proposal {
    let roots: Vec<&QualName> = catalog
        .tables
        .iter()
        .filter(|t| t.partition_of.is_none())
        .map(|t| &t.name)
        .collect();
    let common: BTreeSet<&QualName> = ownership
        .iter()
        .filter(|o| o.ownership == Ownership::Common)
        .map(|o| &o.table)
        .collect();
    let clustered: Vec<&QualName> = roots
        .iter()
        .copied()
        .filter(|t| !common.contains(t))
        .collect();
    let index: HashMap<&QualName, usize> =
        clustered.iter().enumerate().map(|(i, t)| (*t, i)).collect();

    let owner_of: HashMap<&QualName, &str> = ownership
        .iter()
        .filter_map(|o| o.owner.as_deref().map(|owner| (&o.table, owner)))
        .collect();
    let started = std::time::Instant::now();
    let (graph, links) = links(catalog, usage, weights, &index, &owner_of);
    tracing::debug!(elapsed = ?started.elapsed(), edges = graph.edge_count(), links = links.len(), "graph built");
    // How many domains: a sweep of resolutions, settled by a stated criterion
    // (`leiden::choose`) unless the user gave one; every scale is reported.
    let (mut resolutions, seeds) = leiden::sweep_for(&graph);
    if let Some(r) = resolution.filter(|r| !resolutions.contains(r)) {
        resolutions.push(r);
        resolutions.sort_by(f64::total_cmp);
    }
    let scales = match resolution {
        Some(_) => leiden::sweep(&graph, &resolutions, seeds),
        None => leiden::sweep_until_stable(&graph, &resolutions, seeds, 1.0),
    };
    let chosen = match resolution {
        Some(r) => scales
            .iter()
            .position(|s| s.resolution == r)
            .expect("the given resolution is swept"),
        None => leiden::choose(&scales, 1.0),
    };
    tracing::debug!(elapsed = ?started.elapsed(), "clustered");
    let ties = ties(&links);
    let groups_at = |membership: &[usize]| {
        let mut groups: BTreeMap<usize, Vec<&QualName>> = BTreeMap::new();
        for (i, table) in clustered.iter().enumerate() {
            groups.entry(membership[i]).or_default().push(*table);
        }
        split_by_writers(groups.into_values().collect(), &owner_of, &ties)
    };
    let mut groups_by_scale: Vec<Vec<Vec<&QualName>>> =
        scales.iter().map(|s| groups_at(&s.membership)).collect();
    tracing::debug!(elapsed = ?started.elapsed(), "cut along writers");
    let alternatives: Vec<ScaleReport> = scales
        .iter()
        .zip(&groups_by_scale)
        .enumerate()
        .map(|(i, (s, groups))| ScaleReport {
            resolution: s.resolution,
            domains: groups.len() + common.len(),
            modularity: s.modularity,
            agreement: s.agreement,
            chosen: i == chosen,
        })
        .collect();
    let (resolution, modularity) = (scales[chosen].resolution, scales[chosen].modularity);
    let groups = groups_by_scale.swap_remove(chosen);
    // Common tables: a group each, after the clustered ones.
    let mut groups: Vec<(Vec<&QualName>, bool)> = groups
        .into_iter()
        .map(|g| (g, false))
        .chain(common.iter().map(|t| (vec![*t], true)))
        .collect();
    let forced_names = apply_pins(&mut groups, pins);
    // Each table's coupling to the rest of its group, for naming.
    let group_of: HashMap<&QualName, usize> = groups
        .iter()
        .enumerate()
        .flat_map(|(i, (tables, _))| tables.iter().map(move |t| (*t, i)))
        .collect();
    let mut coupling: HashMap<&QualName, f64> = HashMap::default();
    for link in links.iter().filter(|l| !l.kind.is_name_hint()) {
        let group = group_of.get(&link.a);
        if group.is_some() && group == group_of.get(&link.b) {
            *coupling.entry(&link.a).or_default() += link.weight;
            *coupling.entry(&link.b).or_default() += link.weight;
        }
    }
    let mut domains: Vec<Domain> = groups
        .into_iter()
        .enumerate()
        .map(|(i, (tables, is_common))| {
            let mut d = make_domain(tables, usage, catalog, &coupling, is_common);
            if let Some(name) = forced_names.get(&i) {
                d.name = name.clone();
                d.named_after = "a pin in the plan".to_string();
                d.pinned = true;
            }
            d
        })
        .collect();
    // Partitions go with their root.
    let mut partitions: BTreeMap<QualName, Vec<QualName>> = BTreeMap::new();
    for t in catalog.tables.iter().filter(|t| t.partition_of.is_some()) {
        partitions
            .entry(catalog.partition_root(&t.name))
            .or_default()
            .push(t.name.clone());
    }
    for domain in &mut domains {
        let roots: Vec<QualName> = domain.tables.clone();
        for root in roots {
            domain
                .tables
                .extend(partitions.get(&root).into_iter().flatten().cloned());
        }
    }
    tracing::debug!(elapsed = ?started.elapsed(), "domains made");
    unique_names(&mut domains, &forced_names.values().cloned().collect());
    domains.sort_by(|a, b| {
        b.tables
            .len()
            .cmp(&a.tables.len())
            .then(a.name.cmp(&b.name))
    });

    let domain_of: HashMap<&QualName, &str> = domains
        .iter()
        .flat_map(|d| d.tables.iter().map(move |t| (t, d.name.as_str())))
        .collect();
    let fks: Vec<(&QualName, &QualName)> = catalog
        .tables
        .iter()
        .filter(|t| t.partition_of.is_none())
        .flat_map(|t| {
            t.foreign_keys()
                .filter(|(c, _)| !c.inherited)
                .map(move |(_, fk)| (&t.name, &fk.references))
        })
        .collect();
    let foreign_keys_crossing = fks
        .iter()
        .filter(|(a, b)| domain_of.get(a) != domain_of.get(b))
        .count();
    let domains_touched = |s: &ResolvedStatement| -> BTreeSet<&str> {
        s.tables
            .iter()
            .filter_map(|t| domain_of.get(t).copied())
            .collect()
    };
    let touched: Vec<BTreeSet<&str>> = usage
        .statements
        .iter()
        .map(domains_touched)
        .filter(|d| !d.is_empty())
        .collect();
    let mut by_transaction: BTreeMap<u64, BTreeSet<&str>> = BTreeMap::new();
    for s in &usage.statements {
        by_transaction
            .entry(s.transaction)
            .or_default()
            .extend(domains_touched(s));
    }
    by_transaction.retain(|_, d| !d.is_empty());
    let quality = Quality {
        resolution,
        modularity,
        alternatives,
        foreign_keys: fks.len(),
        foreign_keys_crossing,
        statements: touched.len(),
        statements_crossing: touched.iter().filter(|d| d.len() > 1).count(),
        transactions: by_transaction.len(),
        transactions_crossing: by_transaction.values().filter(|d| d.len() > 1).count(),
    };
    Proposal {
        domains,
        links,
        quality,
    }
}

fn make_domain(
    tables: Vec<&QualName>,
    usage: &Usage,
    catalog: &Catalog,
    coupling: &HashMap<&QualName, f64>,
    common: bool,
) -> Domain {
    // Writes per service to this domain's tables.
    let mut writes: BTreeMap<&str, u64> = BTreeMap::new();
    for t in &tables {
        if let Some(u) = usage.tables.get(*t) {
            for (s, w) in &u.writers {
                *writes.entry(s).or_default() += w.statements;
            }
        }
    }
    let total: u64 = writes.values().sum();
    let top_writer = writes
        .iter()
        .max_by_key(|(s, n)| (**n, std::cmp::Reverse(**s)));
    let writer_purity = top_writer.map(|(_, n)| *n as f64 / total as f64);
    let (name, named_after, alternatives) = if common {
        (
            super::naming::schema_name(&tables[0].name),
            format!("the common table {}", tables[0]),
            Vec::new(),
        )
    } else {
        let mut written: BTreeMap<&str, usize> = BTreeMap::new();
        for t in &tables {
            for s in usage
                .tables
                .get(*t)
                .into_iter()
                .flat_map(|u| u.writers.keys())
            {
                *written.entry(s.as_str()).or_default() += 1;
            }
        }
        let facts = super::naming::Facts {
            tables: tables
                .iter()
                .map(|t| (*t, catalog.table(t).map_or(0, |t| t.size_bytes)))
                .collect(),
            coupling: tables
                .iter()
                .filter_map(|t| coupling.get(t).map(|w| (*t, *w)))
                .collect(),
            writes: written,
        };
        let mut names = super::naming::candidates(&facts).into_iter();
        let best = names.next().expect("candidates are never empty");
        (best.name, best.why, names.collect())
    };
    let mut sorted: Vec<QualName> = tables.into_iter().cloned().collect();
    sorted.sort();
    Domain {
        name,
        tables: sorted,
        named_after,
        alternatives,
        writers: writes.keys().map(|s| s.to_string()).collect(),
        writer_purity,
        common,
        pinned: false,
    }
}

/// How strongly tables of different writers must be tied to stay in one domain:
/// more than one foreign key's worth of foreign keys, triggers and transactions
/// between them. Reads and views alone never are.
const WRITER_BOUNDARY: f64 = 1.5;

/// Each table's links to others: `(other, weight, integrator)`, where integrators
/// are the links that hold different writers' tables together (foreign keys,
/// triggers, transactions). Built once for every scale of the sweep.
type Ties<'l> = HashMap<&'l QualName, Vec<(&'l QualName, f64, bool)>>;

fn ties(links: &[Link]) -> Ties<'_> {
    let mut ties: Ties = HashMap::default();
    for l in links {
        let integrator = matches!(
            l.kind,
            LinkKind::ForeignKey(_) | LinkKind::Trigger(_) | LinkKind::Transaction(_)
        );
        ties.entry(&l.a)
            .or_default()
            .push((&l.b, l.weight, integrator));
        ties.entry(&l.b)
            .or_default()
            .push((&l.a, l.weight, integrator));
    }
    ties
}

/// Writers define bounded contexts: a group whose tables different services own
/// is cut along its owners, each unowned table going with the owner it is most
/// tied to, and two owners' parts stay together only when the integrators between
/// them (foreign keys, triggers, transactions) clearly outweigh the boundary.
fn split_by_writers<'a>(
    groups: Vec<Vec<&'a QualName>>,
    owner_of: &HashMap<&QualName, &str>,
    ties: &Ties,
) -> Vec<Vec<&'a QualName>> {
    let none = Vec::new();
    let mut out = Vec::new();
    for group in groups {
        let owners: Vec<&str> = group
            .iter()
            .filter_map(|t| owner_of.get(t).copied())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if owners.len() < 2 {
            out.push(group);
            continue;
        }
        // Each owned table's part: the index of its owner.
        let mut part: HashMap<&QualName, usize> = group
            .iter()
            .filter_map(|t| Some((*t, owners.binary_search(owner_of.get(t)?).ok()?)))
            .collect();
        let mut sizes = vec![0usize; owners.len()];
        for p in part.values() {
            sizes[*p] += 1;
        }
        // Unowned tables (read-only, unused) go with the owner most tied to them.
        for t in group.iter().filter(|t| !owner_of.contains_key(*t)) {
            let mut tie = vec![0.0; owners.len()];
            for (other, weight, _) in ties.get(t).unwrap_or(&none) {
                if let Some(p) = part.get(other) {
                    tie[*p] += weight;
                }
            }
            let best = (0..owners.len())
                .max_by(|&a, &b| tie[a].total_cmp(&tie[b]).then(sizes[a].cmp(&sizes[b])))
                .expect("two owners at least");
            part.insert(t, best);
            sizes[best] += 1;
        }
        // Integrators between owners' parts; parts tied strongly enough are one.
        let mut strength: BTreeMap<(usize, usize), f64> = BTreeMap::new();
        for t in &group {
            let a = part[t];
            for (other, weight, integrator) in ties.get(t).unwrap_or(&none) {
                match part.get(other) {
                    // Each link is seen from both ends: counted from the lower part.
                    Some(&b) if *integrator && a < b => {
                        *strength.entry((a, b)).or_default() += weight;
                    }
                    _ => {}
                }
            }
        }
        let mut root: Vec<usize> = (0..owners.len()).collect();
        fn find(root: &mut [usize], i: usize) -> usize {
            if root[i] != i {
                root[i] = find(root, root[i]);
            }
            root[i]
        }
        for ((a, b), w) in strength {
            if w > WRITER_BOUNDARY {
                let (ra, rb) = (find(&mut root, a), find(&mut root, b));
                root[ra.max(rb)] = ra.min(rb);
            }
        }
        let mut merged: BTreeMap<usize, Vec<&QualName>> = BTreeMap::new();
        for t in group {
            let r = find(&mut root, part[t]);
            merged.entry(r).or_default().push(t);
        }
        out.extend(merged.into_values());
    }
    out
}

/// Moves pinned tables into one group each (the group already holding most of them),
/// merging groups pinned to the same name; returns the names pins force, by group.
fn apply_pins<'a>(
    groups: &mut Vec<(Vec<&'a QualName>, bool)>,
    pins: &'a [Pin],
) -> BTreeMap<usize, String> {
    let mut names: BTreeMap<usize, String> = BTreeMap::new();
    for pin in pins {
        let group_of = |groups: &Vec<(Vec<&QualName>, bool)>, t: &QualName| {
            groups.iter().position(|(g, _)| g.contains(&t))
        };
        // A group already forced to this name takes the tables; else the group holding
        // most of them.
        let named = pin
            .domain
            .as_ref()
            .and_then(|n| names.iter().find(|(_, v)| *v == n).map(|(k, _)| *k));
        let target = named.or_else(|| {
            let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
            for t in &pin.tables {
                if let Some(g) = group_of(groups, t) {
                    *counts.entry(g).or_default() += 1;
                }
            }
            counts
                .into_iter()
                .max_by_key(|(g, n)| (*n, std::cmp::Reverse(*g)))
                .map(|(g, _)| g)
        });
        // A group another pin named already: two names cannot be one domain, so
        // this pin's tables make a group of their own (as a pin set apart does).
        let taken = pin
            .domain
            .as_ref()
            .is_some_and(|n| target.is_some_and(|t| names.get(&t).is_some_and(|other| other != n)));
        let target = if (pin.apart || taken) && named.is_none() {
            groups.push((Vec::new(), false));
            Some(groups.len() - 1)
        } else {
            target
        };
        let Some(target) = target else { continue };
        for t in &pin.tables {
            if let Some(g) = group_of(groups, t) {
                if g != target {
                    groups[g].0.retain(|x| *x != t);
                    groups[target].0.push(t);
                }
            }
        }
        if let Some(name) = &pin.domain {
            names.insert(target, name.clone());
        }
    }
    // Drop emptied groups, keeping the forced names attached to the right ones.
    let mut kept = Vec::new();
    let mut renamed = BTreeMap::new();
    for (i, group) in std::mem::take(groups).into_iter().enumerate() {
        if group.0.is_empty() {
            continue;
        }
        if let Some(n) = names.get(&i) {
            renamed.insert(kept.len(), n.clone());
        }
        kept.push(group);
    }
    *groups = kept;
    renamed
}

/// Gives every domain a distinct name; names forced by pins are kept as they are.
fn unique_names(domains: &mut [Domain], forced: &BTreeSet<String>) {
    let mut seen: BTreeMap<String, usize> = forced.iter().map(|n| (n.clone(), 1)).collect();
    // Larger domains keep the plain name.
    let mut order: Vec<usize> = (0..domains.len()).collect();
    order.sort_by(|&a, &b| {
        domains[b]
            .tables
            .len()
            .cmp(&domains[a].tables.len())
            .then(domains[a].tables.cmp(&domains[b].tables))
    });
    for i in order {
        if domains[i].pinned {
            continue;
        }
        // Taken: the next best name that is free, else a number.
        if seen.contains_key(&domains[i].name) {
            let free = domains[i]
                .alternatives
                .iter()
                .position(|a| !seen.contains_key(&a.name));
            if let Some(k) = free {
                let alternative = domains[i].alternatives.remove(k);
                domains[i].name = alternative.name;
                domains[i].named_after = alternative.why;
            }
        }
        let base = domains[i].name.clone();
        let n = seen.entry(base.clone()).or_default();
        *n += 1;
        if *n > 1 {
            domains[i].name = format!("{base}_{n}");
        }
    }
}

/// An English word's singular, near enough for table names: `accounts` → `account`,
/// `categories` → `category`, `addresses` → `address`; `status` stays.
fn singular(word: &str) -> String {
    if let Some(stem) = word.strip_suffix("ies") {
        format!("{stem}y")
    } else if let Some(stem) = word.strip_suffix("sses") {
        format!("{stem}ss")
    } else if word.ends_with("ss") || word.ends_with("us") || word.len() <= 3 {
        word.to_string()
    } else {
        word.strip_suffix('s').unwrap_or(word).to_string()
    }
}

/// Tables that comments name, as documented schemas do where no key is declared
/// ("the customer who placed it", "see accounts.id"): each word of a table's or its
/// columns' comments that is another table's name in the same schema (singular or
/// plural, four letters or more) or its qualified name, once per pair and comment.
/// A word that fits several tables names none.
fn comment_mentions(
    catalog: &Catalog,
) -> Vec<(&crate::catalog::Table, String, &crate::catalog::Table)> {
    use crate::catalog::Table;
    let tables: Vec<&Table> = catalog
        .tables
        .iter()
        .filter(|t| t.partition_of.is_none())
        .collect();
    let mut by_word: HashMap<String, Vec<&Table>> = HashMap::default();
    for &t in &tables {
        by_word
            .entry(singular(&t.name.name.to_lowercase()))
            .or_default()
            .push(t);
        by_word
            .entry(format!("{}.{}", t.name.schema, t.name.name).to_lowercase())
            .or_default()
            .push(t);
    }
    let mut found = Vec::new();
    for &table in &tables {
        let comments = table
            .comment
            .iter()
            .map(|c| (table.name.to_string(), c))
            .chain(table.columns.iter().filter_map(|c| {
                let via = format!("{}.{}", table.name, crate::sql::display_ident(&c.name));
                c.comment.as_ref().map(|comment| (via, comment))
            }));
        for (via, comment) in comments {
            let mut named: BTreeSet<&QualName> = BTreeSet::new();
            let words = comment
                .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
                .map(|w| w.trim_matches('.').to_lowercase())
                .filter(|w| w.chars().count() >= 4);
            for word in words {
                let word = if word.contains('.') {
                    word
                } else {
                    singular(&word)
                };
                // Another table the word names: in the comment's schema, unless
                // the word is qualified.
                let named_here: Vec<&&Table> = by_word
                    .get(&word)
                    .into_iter()
                    .flatten()
                    .filter(|t| t.name != table.name)
                    .filter(|t| t.name.schema == table.name.schema || word.contains('.'))
                    .collect();
                if let [other] = named_here[..] {
                    if named.insert(&other.name) {
                        found.push((table, format!("comment on {via}"), *other));
                    }
                }
            }
        }
    }
    found
}

type Implied<'c> = (
    &'c crate::catalog::Table,
    &'c crate::catalog::Column,
    &'c crate::catalog::Table,
);

/// Foreign keys the names imply where none is declared, as tbls and SchemaSpy find
/// them: a column of the type of another table's single-column key (primary or
/// unique), in the same schema, named
/// - `<table>_id` (`customer_id` → `customers.id`, singular or plural),
/// - `…_<key>` or `<key>` for a key named other than `id` (`source_u_id` →
///   the one table keyed by `u_id` of that type),
/// - `…_<table>` (`old_page` → `page`).
///
/// A name that fits several tables of that type implies none.
fn implied_foreign_keys<'c>(
    catalog: &'c Catalog,
    declared: &BTreeSet<(QualName, String)>,
) -> Vec<Implied<'c>> {
    use crate::catalog::Table;
    // A table's single-column keys (primary or unique), with their types.
    let keys_of = |t: &'c Table| -> Vec<(&'c str, &'c str)> {
        let pk = t.primary_key().map(|pk| &pk.columns);
        let unique = t.indexes.iter().filter(|i| i.unique).map(|i| &i.columns);
        pk.into_iter()
            .chain(unique)
            .filter(|columns| columns.len() == 1)
            .filter_map(|columns| t.columns.iter().find(|c| c.name == columns[0]))
            .map(|c| (c.name.as_str(), c.type_name.as_str()))
            .collect()
    };
    let roots = || catalog.tables.iter().filter(|t| t.partition_of.is_none());
    let keys: HashMap<&QualName, Vec<(&str, &str)>> =
        roots().map(|t| (&t.name, keys_of(t))).collect();
    let keys_of = |t: &Table| keys[&t.name].as_slice();
    let mut by_name: HashMap<(&str, &str), &Table> = HashMap::default();
    let mut by_key: HashMap<(&str, &str, &str), Vec<&Table>> = HashMap::default();
    for t in roots() {
        by_name.insert((&t.name.schema, &t.name.name), t);
        for &(key, type_name) in keys_of(t) {
            if key != "id" && key.len() >= 3 {
                by_key
                    .entry((&t.name.schema, key, type_name))
                    .or_default()
                    .push(t);
            }
        }
    }
    let mut found = Vec::new();
    for table in roots() {
        for column in &table.columns {
            if declared.contains(&(table.name.clone(), column.name.clone())) {
                continue;
            }
            let schema = table.name.schema.as_str();
            let fits = |t: &&'c Table| {
                t.name != table.name
                    && keys_of(t)
                        .iter()
                        .any(|(_, type_name)| *type_name == column.type_name)
            };
            // `<table>_id`, singular or plural.
            let by_stem = column
                .name
                .strip_suffix("_id")
                .filter(|s| !s.is_empty())
                .and_then(|stem| {
                    [
                        stem.to_string(),
                        format!("{stem}s"),
                        format!("{stem}es"),
                        stem.trim_end_matches('y').to_string() + "ies",
                    ]
                    .iter()
                    .find_map(|c| by_name.get(&(schema, c.as_str())).copied())
                    .filter(|t| {
                        keys_of(t)
                            .iter()
                            .any(|(k, type_name)| *k == "id" && *type_name == column.type_name)
                    })
                })
                .filter(fits);
            // The whole name or a `_`-separated tail: another table's key, or a table.
            // Not for the table's own key columns: `i_id` keys many tables.
            let own_key = table
                .primary_key()
                .is_some_and(|pk| pk.columns.contains(&column.name))
                || keys_of(table).iter().any(|(k, _)| *k == column.name);
            let tails = std::iter::once(column.name.as_str()).chain(
                column
                    .name
                    .match_indices('_')
                    .map(|(i, _)| &column.name[i + 1..])
                    .filter(|tail| !tail.is_empty()),
            );
            let mut by_tail: Vec<&Table> = Vec::new();
            for tail in tails.take_while(|_| !own_key) {
                let keyed = by_key
                    .get(&(schema, tail, column.type_name.as_str()))
                    .into_iter()
                    .flatten()
                    .copied();
                let named = by_name.get(&(schema, tail)).copied();
                by_tail.extend(keyed.chain(named).filter(fits));
                if !by_tail.is_empty() {
                    break;
                }
            }
            by_tail.sort_by(|a, b| a.name.cmp(&b.name));
            by_tail.dedup_by(|a, b| a.name == b.name);
            let only = match by_tail.as_slice() {
                [one] => Some(*one),
                _ => None,
            };
            let target = by_stem.or(only);
            if let Some(target) = target {
                found.push((table, column, target));
            }
        }
    }
    found
}

/// Collects the weighted graph to cluster, and the links behind it that really couple
/// tables (for the boundary report). Statement and transaction links are aggregated
/// per table pair; affinity (shared services, names) only adds weight to the graph.
struct LinkBuilder<'a> {
    index: &'a HashMap<&'a QualName, usize>,
    graph: Graph,
    links: Vec<Link>,
    /// Where the aggregated link of a table pair and kind is in `links`.
    aggregated: HashMap<(usize, usize, bool), usize>,
}

impl<'a> LinkBuilder<'a> {
    /// A builder for a graph of the indexed tables and `others` nodes after them.
    fn new(index: &'a HashMap<&'a QualName, usize>, others: usize) -> LinkBuilder<'a> {
        LinkBuilder {
            index,
            graph: Graph::new(index.len() + others),
            links: Vec::new(),
            aggregated: HashMap::default(),
        }
    }

    /// Both ends' node numbers, when both are clustered tables and distinct.
    fn nodes(&self, a: &QualName, b: &QualName) -> Option<(usize, usize)> {
        let (&ia, &ib) = (self.index.get(a)?, self.index.get(b)?);
        (ia != ib).then_some((ia, ib))
    }

    fn link(&mut self, a: &QualName, b: &QualName, weight: f64, kind: &LinkKind) {
        let Some((ia, ib)) = self.nodes(a, b).filter(|_| weight > 0.0) else {
            return;
        };
        self.graph.add_edge(ia, ib, weight);
        let class = match kind {
            LinkKind::Statement(_) => Some(false),
            LinkKind::Transaction(_) => Some(true),
            _ => None,
        };
        if let Some(class) = class {
            let key = (ia.min(ib), ia.max(ib), class);
            if let Some(&at) = self.aggregated.get(&key) {
                self.links[at].weight += weight;
                self.links[at].count += 1;
                return;
            }
            self.aggregated.insert(key, self.links.len());
        }
        self.links.push(Link {
            a: a.clone(),
            b: b.clone(),
            weight,
            kind: kind.clone(),
            count: 1,
        });
    }

    /// Pairs of a set, each weighted so a set of n adds `weight` per member. Sets of
    /// more than a dozen tables (a report reading everything) say little: skipped.
    fn pairwise<'t>(
        &mut self,
        tables: impl IntoIterator<Item = &'t QualName>,
        weight: f64,
        kind: &LinkKind,
    ) {
        let mut v: Vec<&QualName> = tables
            .into_iter()
            .filter(|t| self.index.contains_key(t))
            .collect();
        v.sort();
        v.dedup();
        if v.len() < 2 || v.len() > 12 {
            return;
        }
        let each = weight / (v.len() - 1) as f64;
        for (i, a) in v.iter().enumerate() {
            for b in &v[i + 1..] {
                self.link(a, b, each, kind);
            }
        }
    }
}

/// The graph over the clustered tables, and the coupling links with their reasons.
fn links(
    catalog: &Catalog,
    usage: &Usage,
    w: &Weights,
    index: &HashMap<&QualName, usize>,
    owner_of: &HashMap<&QualName, &str>,
) -> (Graph, Vec<Link>) {
    let root_of = |name: &QualName| catalog.partition_root(name);
    // Services are nodes after the tables' (see service affinity below).
    let services: BTreeSet<&str> = usage
        .tables
        .iter()
        .filter(|(table, _)| index.contains_key(table))
        .flat_map(|(_, u)| u.writers.keys().chain(u.readers.keys()))
        .map(String::as_str)
        .collect();
    let service_node: HashMap<&str, usize> = services
        .iter()
        .enumerate()
        .map(|(i, s)| (*s, index.len() + i))
        .collect();
    let mut out = LinkBuilder::new(index, services.len());

    let mut declared: BTreeSet<(QualName, String)> = BTreeSet::new();
    for table in catalog.tables.iter().filter(|t| t.partition_of.is_none()) {
        for (con, fk) in table.foreign_keys().filter(|(c, _)| !c.inherited) {
            for c in &con.columns {
                declared.insert((table.name.clone(), c.clone()));
            }
            out.link(
                &table.name,
                &root_of(&fk.references),
                w.foreign_key,
                &LinkKind::ForeignKey(format!(
                    "{}.{}",
                    table.name,
                    crate::sql::display_ident(&con.name)
                )),
            );
        }
    }
    for (table, column, target) in implied_foreign_keys(catalog, &declared) {
        out.link(
            &table.name,
            &target.name,
            w.implied_foreign_key,
            &LinkKind::ImpliedForeignKey(format!(
                "{}.{}",
                table.name,
                crate::sql::display_ident(&column.name)
            )),
        );
    }
    for view in &catalog.views {
        let tables: Vec<QualName> = view
            .depends_on
            .iter()
            .map(|d| root_of(&d.relation))
            .collect();
        out.pairwise(&tables, w.view, &LinkKind::View(view.name.to_string()));
    }
    // Triggers: the table a trigger is on, with the tables its function touches.
    let mut resolver = super::usage::Resolver::new(catalog, super::usage::default_search_path());
    for (relation, trigger) in catalog.triggers() {
        let effect = resolver.function_touches(&trigger.function);
        let kind = LinkKind::Trigger(format!(
            "{relation}.{}",
            crate::sql::display_ident(&trigger.name)
        ));
        for other in effect.writes.keys().chain(effect.reads.iter()) {
            out.link(&root_of(relation), other, w.trigger, &kind);
        }
    }
    for function in &catalog.functions {
        let effect = resolver.function_touches(&function.name);
        out.pairwise(
            effect.reads.iter().chain(effect.writes.keys()),
            w.function,
            &LinkKind::Function(function.signature()),
        );
    }
    for statement in &usage.statements {
        if statement.tables.len() > 1 {
            out.pairwise(
                &statement.tables,
                w.statement,
                &LinkKind::Statement(statement.origin.clone()),
            );
        }
    }
    // Co-access inside a transaction: what its statements touch together has to
    // commit together, which a boundary between them turns into a distributed
    // transaction or a saga.
    for transaction in usage.transactions() {
        out.pairwise(
            transaction.iter().flat_map(|s| s.tables.iter()),
            w.transaction,
            &LinkKind::Transaction(format!("transaction at {}", transaction[0].origin)),
        );
    }
    // Service affinity, as a bipartite graph: each service is a node of its own, tied
    // to the tables it writes (or uses), so tables sharing services meet through them.
    // That is one edge per table and service, where comparing tables pairwise would
    // be one per pair (millions on a large catalog). A table's ties add up to the
    // weight, shared among its services; a joint table's other writers are guests
    // that the resolution will route through the owner, so they count a little.
    const GUEST_WRITER: f64 = 0.1;
    for (table, u) in &usage.tables {
        let Some(&node) = index.get(table) else {
            continue;
        };
        for (weight, writers_only) in [(w.same_writers, true), (w.same_users, false)] {
            let mut share: BTreeMap<&str, f64> = BTreeMap::new();
            for s in u.writers.keys() {
                let guest = u.writers.len() > 1 && owner_of.get(table) != Some(&s.as_str());
                share.insert(s, if guest { GUEST_WRITER } else { 1.0 });
            }
            if !writers_only {
                for s in u.readers.keys() {
                    share.entry(s).or_insert(1.0);
                }
            }
            let total: f64 = share.values().sum();
            for (service, part) in share {
                out.graph
                    .add_edge(node, service_node[service], weight * part / total);
            }
        }
    }
    // A shared first word in table names (orders, order_item) is a weak hint, only
    // used for words that a few tables share.
    let mut by_stem: BTreeMap<(&str, String), Vec<&QualName>> = BTreeMap::new();
    for t in index.keys() {
        if let Some(token) = t
            .name
            .split('_')
            .next()
            .filter(|w| w.len() >= 3 && *w != t.name)
        {
            by_stem
                .entry((&t.schema, singular(token)))
                .or_default()
                .push(t);
        }
        by_stem
            .entry((&t.schema, singular(&t.name)))
            .or_default()
            .push(t);
    }
    for ((_, stem), mut tables) in by_stem {
        tables.sort();
        tables.dedup();
        if tables.len() >= 2 && tables.len() <= 12 {
            for (i, a) in tables.iter().enumerate() {
                for b in &tables[i + 1..] {
                    out.link(a, b, w.name_prefix, &LinkKind::SharedName(stem.clone()));
                }
            }
        }
    }
    for (table, via, other) in comment_mentions(catalog) {
        out.link(
            &table.name,
            &root_of(&other.name),
            w.comment,
            &LinkKind::Comment(via),
        );
    }
    let mut links = out.links;
    links.sort_by(|a, b| (&a.a, &a.b, &a.kind).cmp(&(&b.a, &b.b, &b.kind)));
    let mut graph = out.graph;
    graph.finish();
    (graph, links)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_kind_parts_match_the_json() {
        for kind in [
            LinkKind::ForeignKey("a".into()),
            LinkKind::ImpliedForeignKey("b".into()),
            LinkKind::View("c".into()),
            LinkKind::Trigger("d".into()),
            LinkKind::Function("e".into()),
            LinkKind::Statement("f".into()),
            LinkKind::Transaction("g".into()),
        ] {
            let json = serde_json::to_value(&kind).unwrap();
            let (name, via) = kind.parts();
            assert_eq!(
                (json["kind"].as_str(), json["via"].as_str()),
                (Some(name), Some(via))
            );
        }
    }

    fn link(a: &QualName, b: &QualName, weight: f64, kind: LinkKind) -> Link {
        Link {
            a: a.clone(),
            b: b.clone(),
            weight,
            kind,
            count: 1,
        }
    }

    #[test]
    fn writers_cut_a_group_unless_integrators_outweigh_the_boundary() {
        let t = |n: &str| QualName::new("public", n);
        let (list, books, stats, shelf) = (t("list"), t("books"), t("stats"), t("shelf"));
        let owner_of: HashMap<&QualName, &str> =
            [(&list, "Reading"), (&books, "Catalog"), (&shelf, "Shelf")]
                .into_iter()
                .collect();
        // One foreign key from the list to the books, a read-only table tied to the
        // books, a shelf tied to the books by two foreign keys and a transaction.
        let links = [
            link(&list, &books, 1.0, LinkKind::ForeignKey("fk".into())),
            link(&list, &books, 2.0, LinkKind::Statement("join".into())),
            link(&stats, &books, 0.5, LinkKind::View("v".into())),
            link(&shelf, &books, 1.0, LinkKind::ForeignKey("a".into())),
            link(&shelf, &books, 1.0, LinkKind::ForeignKey("b".into())),
            link(&shelf, &books, 0.5, LinkKind::Transaction("t".into())),
        ];
        let group = vec![&list, &books, &stats, &shelf];
        let ties = ties(&links);
        let mut cut = split_by_writers(vec![group], &owner_of, &ties);
        for g in &mut cut {
            g.sort();
        }
        cut.sort();
        // The reading list stands alone: a key and reads are no integrator strong
        // enough. The shelf stays with the books (2.5 > 1.5); stats follow them.
        let mut books_side = vec![&books, &shelf, &stats];
        books_side.sort();
        assert_eq!(cut, vec![books_side, vec![&list]]);
        // One writer: nothing to cut.
        let alone: HashMap<&QualName, &str> = [(&list, "Reading")].into_iter().collect();
        assert_eq!(
            split_by_writers(vec![vec![&list, &stats]], &alone, &ties),
            vec![vec![&list, &stats]]
        );
    }

    #[test]
    fn names_imply_foreign_keys_that_fit_one_table_only() {
        use crate::catalog::testing::{catalog, column, primary_key, table};
        let keyed = |name: &str, key: &str, type_name: &str, extra: &[(&str, &str)]| {
            let mut t = table("public", name);
            t.columns = std::iter::once(column(key, type_name))
                .chain(extra.iter().map(|(c, ty)| column(c, ty)))
                .collect();
            t.constraints = vec![primary_key(&format!("{name}_pkey"), &[key])];
            t
        };
        let c = catalog(vec![
            keyed("customers", "id", "bigint", &[]),
            keyed("orders", "id", "bigint", &[("customer_id", "bigint")]),
            keyed("useracct", "u_id", "integer", &[]),
            keyed("useracct_old", "u_id", "text", &[]),
            keyed("trust", "t_id", "integer", &[("source_u_id", "integer")]),
            keyed("page", "page_id", "integer", &[]),
            keyed("text", "old_id", "integer", &[("old_page", "integer")]),
            // Its own key is named like another table's: no link.
            keyed("item", "i_id", "integer", &[]),
            keyed("item_2", "i_id", "integer", &[]),
            // Two tables keyed `w_id integer`: ambiguous, no link.
            keyed("warehouse", "w_id", "integer", &[]),
            keyed("warehouse_2", "w_id", "integer", &[]),
            keyed("stock", "s_id", "integer", &[("s_w_id", "integer")]),
            // The right name, the wrong type.
            keyed("notes", "id", "bigint", &[("page", "text")]),
        ]);
        let found: Vec<String> = implied_foreign_keys(&c, &BTreeSet::new())
            .into_iter()
            .map(|(t, col, target)| format!("{}.{} -> {}", t.name.name, col.name, target.name.name))
            .collect();
        assert_eq!(
            found,
            [
                "orders.customer_id -> customers",
                "text.old_page -> page",
                "trust.source_u_id -> useracct",
            ]
        );
        // A declared key is not implied again.
        let declared = BTreeSet::from([(QualName::new("public", "text"), "old_page".to_string())]);
        assert_eq!(implied_foreign_keys(&c, &declared).len(), 2);
    }

    #[test]
    fn comments_and_shared_names_are_links_with_their_reason() {
        use crate::catalog::testing::{catalog, column, table};
        let with = |schema: &str, name: &str, comment: Option<&str>, columns: &[(&str, &str)]| {
            let mut t = table(schema, name);
            t.comment = comment.map(str::to_string);
            t.columns = columns
                .iter()
                .map(|(c, note)| crate::catalog::Column {
                    comment: Some(note.to_string()),
                    ..column(c, "bigint")
                })
                .collect();
            t
        };
        let c = catalog(vec![
            with("public", "customers", None, &[]),
            with("public", "invoices", Some("Billed to a Customer."), &[]),
            with(
                "public",
                "payments",
                None,
                &[("invoice", "see billing.ledger and the invoices")],
            ),
            with("billing", "ledger", None, &[]),
            // In two schemas: a bare `audit` names the comment's own schema's.
            with("public", "audit", None, &[]),
            with("billing", "audit", None, &[]),
            // `user` fits two tables: it names neither.
            with("public", "user", None, &[]),
            with("public", "users", None, &[]),
            with("public", "notes", Some("about any audit, by the user"), &[]),
            with("public", "order_lines", None, &[]),
            with("public", "orders", None, &[]),
        ]);
        let mentions: Vec<String> = comment_mentions(&c)
            .into_iter()
            .map(|(t, via, other)| format!("{} -> {} ({via})", t.name, other.name))
            .collect();
        assert_eq!(
            mentions,
            [
                "public.invoices -> public.customers (comment on public.invoices)",
                "public.notes -> public.audit (comment on public.notes)",
                "public.payments -> billing.ledger (comment on public.payments.invoice)",
                "public.payments -> public.invoices (comment on public.payments.invoice)",
            ]
        );
        let tables: Vec<&QualName> = c.tables.iter().map(|t| &t.name).collect();
        let index: HashMap<&QualName, usize> =
            tables.iter().enumerate().map(|(i, t)| (*t, i)).collect();
        let (graph, links) = links(
            &c,
            &Usage::default(),
            &Weights::default(),
            &index,
            &HashMap::default(),
        );
        let named: Vec<String> = links
            .iter()
            .filter(|l| matches!(l.kind, LinkKind::SharedName(_)))
            .map(|l| format!("{} {} {:?}", l.a.name, l.b.name, l.kind.parts()))
            .collect();
        assert_eq!(
            named,
            [
                r#"order_lines orders ("shared_name", "order")"#,
                r#"user users ("shared_name", "user")"#,
            ]
        );
        assert!(links.iter().all(|l| !l.kind.is_integrator()));
        assert_eq!(graph.edge_count(), 6, "each link weighs in the graph");
    }

    #[test]
    fn domain_names_are_schema_friendly() {
        use crate::analysis::naming::schema_name;
        assert_eq!(schema_name("BookInventory"), "book_inventory");
        assert_eq!(schema_name("order-service"), "order_service");
        assert_eq!(schema_name("2fa"), "d_2fa");
        assert_eq!(schema_name("Ünï"), "n");
    }
}
