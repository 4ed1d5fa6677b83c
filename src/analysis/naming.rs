//! Names a person would give a domain: after the service that writes most of its
//! tables, else what most of its tables share (a stem), else its most central table.
//! Never after a stem only a minority of its tables carry, a service that writes
//! only a minority of them, or whichever table comes first in the alphabet.
//!
//! The writer comes first because that is what the schemas' own designers did: on
//! the shop example the writers give all seven of their names (`inventory`,
//! `catalog`, `shipping` … where stems and central tables give `products`,
//! `warehouses`, `shipments`), and on benchbase the benchmarks' names
//! (`auctionmark`, `wikipedia`, not `item_2`, `useracct_3`). A catalog read without
//! a workload has no writers, so stems name its domains. Each name comes with why it was chosen, and the next best
//! ones are kept for the review to offer.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::catalog::QualName;

/// A name and why it fits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NameChoice {
    pub name: String,
    pub why: String,
}

/// What the namer knows of one domain.
pub struct Facts<'a> {
    /// Its tables with their sizes in bytes.
    pub tables: Vec<(&'a QualName, i64)>,
    /// Each table's coupling to the others of the domain (the weights of its FK,
    /// view, trigger, function, statement and transaction links inside it).
    pub coupling: BTreeMap<&'a QualName, f64>,
    /// For each service, how many of the domain's tables it writes.
    pub writes: BTreeMap<&'a str, usize>,
}

/// The candidate names of a domain, best first, each a valid schema name and each
/// different; never empty.
pub fn candidates(facts: &Facts) -> Vec<NameChoice> {
    let n = facts.tables.len();
    let total_size: i64 = facts.tables.iter().map(|(_, s)| (*s).max(0)).sum();
    let mut out: Vec<NameChoice> = Vec::new();
    let mut push = |name: &str, why: String| {
        let name = schema_name(name);
        if !out.iter().any(|c: &NameChoice| c.name == name) {
            out.push(NameChoice { name, why });
        }
    };

    // The service that writes most of its tables.
    let mut writers: Vec<(&str, usize)> = facts.writes.iter().map(|(s, n)| (*s, *n)).collect();
    writers.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    for (service, count) in writers.iter().filter(|(_, count)| *count * 2 > n) {
        push(
            service,
            format!("{service}, which writes {count} of its {n} tables"),
        );
    }

    // Stems: token prefixes of the table names (`ci`, `ci_build`), longest first,
    // that a clear majority of the tables carry, by count and by size.
    // A table named as a stem's plural (`notifications` beside
    // `notification_templates`) carries the stem too.
    let mut stems: BTreeMap<String, (usize, i64)> = BTreeMap::new();
    for (table, size) in &facts.tables {
        let tokens: Vec<&str> = table.name.split('_').filter(|t| !t.is_empty()).collect();
        let mut carried: Vec<String> = (1..=tokens.len()).map(|k| tokens[..k].join("_")).collect();
        if let Some(singular) = table.name.strip_suffix('s').filter(|s| s.len() >= 3) {
            carried.push(singular.to_string());
        }
        carried.sort();
        carried.dedup();
        for stem in carried {
            let entry = stems.entry(stem).or_default();
            entry.0 += 1;
            entry.1 += (*size).max(0);
        }
    }
    let plural_table = |stem: &str| {
        facts
            .tables
            .iter()
            .find(|(t, _)| t.name.strip_suffix('s') == Some(stem))
            .map(|(t, _)| t.name.clone())
    };
    let mut majority: Vec<(&String, usize, i64)> = stems
        .iter()
        .filter(|(stem, (count, size))| {
            stem.len() >= 2 && *count * 2 > n && (total_size == 0 || *size * 2 > total_size)
        })
        .map(|(stem, (count, size))| (stem, *count, *size))
        .collect();
    majority.sort_by(|a, b| {
        b.0.len()
            .cmp(&a.0.len())
            .then(b.1.cmp(&a.1))
            .then(a.0.cmp(b.0))
    });
    for (stem, count, _) in &majority {
        // Named after the plural table when there is one: `orders`, not `order`.
        let name = plural_table(stem).unwrap_or_else(|| stem.to_string());
        let why = if n == 1 {
            format!("its table {}", facts.tables[0].0)
        } else if *count == n {
            format!("all {n} of its tables are named after `{stem}`")
        } else {
            format!("{count} of its {n} tables are named after `{stem}`")
        };
        push(&name, why);
    }

    // The most central table: the most coupled to the others (then the largest).
    let mut central: Vec<(&QualName, f64, i64)> = facts
        .tables
        .iter()
        .map(|(t, size)| (*t, facts.coupling.get(t).copied().unwrap_or(0.0), *size))
        .filter(|(_, weight, _)| *weight > 0.0)
        .collect();
    central.sort_by(|a, b| {
        b.1.partial_cmp(&a.1)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(b.2.cmp(&a.2))
            .then(a.0.cmp(b.0))
    });
    for (table, _, _) in central.iter().take(2) {
        push(
            &table.name,
            format!(
                "{table}, the table most coupled to the others (foreign keys, views, statements)"
            ),
        );
    }

    // Last: its largest table.
    let mut largest: Vec<&(&QualName, i64)> = facts.tables.iter().collect();
    largest.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    if let Some((table, _)) = largest.first() {
        push(&table.name, format!("{table}, its largest table"));
    } else {
        push("domain", "no table to name it after".into());
    }
    out
}

/// A valid schema name a person would type: snake_case ASCII, at most 63 bytes, not
/// starting with a digit or `pg_`, not a reserved word, not `public` or
/// `information_schema` (which exist already).
pub fn schema_name(name: &str) -> String {
    let mut out = super::snake_case(name);
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) || out.starts_with("pg_") {
        out = format!("d_{out}");
    }
    if crate::sql::is_quoted_keyword(&out) || out == "public" || out == "information_schema" {
        out.push_str("_domain");
    }
    out.truncate(63);
    out.trim_end_matches('_').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(name: &str) -> QualName {
        QualName::new("public", name)
    }

    fn facts<'a>(tables: &'a [QualName], size: impl Fn(&str) -> i64) -> Facts<'a> {
        Facts {
            tables: tables.iter().map(|t| (t, size(&t.name))).collect(),
            coupling: BTreeMap::new(),
            writes: BTreeMap::new(),
        }
    }

    #[test]
    fn a_stem_most_tables_share_names_the_domain() {
        // 35 of 37 tables start with ci_, and the first in alphabetical order is
        // chat_names: the name is ci, never chat.
        let mut tables: Vec<QualName> = (0..35).map(|i| q(&format!("ci_build_{i}"))).collect();
        tables.push(q("chat_names"));
        tables.push(q("abuse_reports"));
        let f = facts(&tables, |_| 8192);
        let names = candidates(&f);
        assert_eq!(names[0].name, "ci_build");
        assert_eq!(
            names[0].why,
            "35 of its 37 tables are named after `ci_build`"
        );
        assert!(names
            .iter()
            .all(|c| c.name != "chat_names" || c.why.contains("largest")));
    }

    #[test]
    fn a_stem_only_a_minority_carries_never_names_it() {
        // 4 of 10 tables start with project_: a minority, so not `project`.
        let mut tables: Vec<QualName> = (0..4).map(|i| q(&format!("project_{i}"))).collect();
        tables.extend((0..6).map(|i| q(&format!("t{i}_misc"))));
        let mut f = facts(&tables, |_| 8192);
        f.coupling.insert(&tables[7], 3.0);
        f.coupling.insert(&tables[1], 1.0);
        let names = candidates(&f);
        assert_ne!(names[0].name, "project");
        assert_eq!(names[0].name, "t3_misc");
        assert!(names[0].why.contains("most coupled"), "{}", names[0].why);
        // A stem carried by most tables but a minority of the bytes does not win either.
        let tables: Vec<QualName> = vec![q("log_a"), q("log_b"), q("orders")];
        let f = facts(
            &tables,
            |name| if name == "orders" { 1 << 30 } else { 8192 },
        );
        assert_ne!(candidates(&f)[0].name, "log");
    }

    #[test]
    fn without_a_stem_the_dominant_writer_then_the_most_central_table() {
        let tables = vec![q("reading_list"), q("book_catalog")];
        let mut f = facts(&tables, |_| 8192);
        f.coupling.insert(&tables[1], 2.0);
        f.coupling.insert(&tables[0], 1.0);
        assert_eq!(candidates(&f)[0].name, "book_catalog");

        let tables = vec![q("alpha"), q("beta"), q("gamma")];
        let mut f = facts(&tables, |_| 8192);
        f.writes.insert("Billing", 3);
        f.writes.insert("Audit", 1);
        let names = candidates(&f);
        assert_eq!(names[0].name, "billing");
        assert_eq!(names[0].why, "Billing, which writes 3 of its 3 tables");
        // The next best are there for the review, all different.
        assert!(names.len() >= 2);
        assert_ne!(names[0].name, names[1].name);
    }

    #[test]
    fn a_service_writing_most_tables_names_it_before_a_stem() {
        let tables = vec![
            q("products"),
            q("product_images"),
            q("product_reviews"),
            q("brands"),
        ];
        let mut f = facts(&tables, |_| 8192);
        f.writes.insert("catalog", 3);
        f.writes.insert("customers", 1);
        let names = candidates(&f);
        assert_eq!(names[0].name, "catalog");
        assert_eq!(names[1].name, "products");
        // A writer of half the tables is no majority.
        f.writes.insert("catalog", 2);
        assert_eq!(candidates(&f)[0].name, "products");
    }

    #[test]
    fn a_plural_table_carries_its_stem_and_names_the_domain() {
        let tables = vec![
            q("notifications"),
            q("notification_templates"),
            q("notification_deliveries"),
        ];
        let names = candidates(&facts(&tables, |_| 8192));
        assert_eq!(names[0].name, "notifications");
        assert_eq!(
            names[0].why,
            "all 3 of its tables are named after `notification`"
        );
        let tables = vec![q("orders"), q("order_items"), q("carts")];
        assert_eq!(candidates(&facts(&tables, |_| 8192))[0].name, "orders");
    }

    #[test]
    fn names_are_valid_schema_names() {
        assert_eq!(schema_name("Order"), "order_domain");
        assert_eq!(schema_name("group"), "group_domain");
        assert_eq!(schema_name("pg_stats"), "d_pg_stats");
        assert_eq!(schema_name("2fa"), "d_2fa");
        assert_eq!(schema_name("public"), "public_domain");
        assert_eq!(schema_name(&"x".repeat(80)).len(), 63);
        assert_eq!(schema_name("BookInventory"), "book_inventory");
        for name in ["Order", "pg_stats", "public"] {
            assert_eq!(crate::sql::schema_name_problem(&schema_name(name)), None);
        }
    }

    #[test]
    fn one_table_is_named_after_itself_and_the_choice_is_stable() {
        let tables = vec![q("audit")];
        let f = facts(&tables, |_| 8192);
        let first = candidates(&f);
        assert_eq!(first[0].name, "audit");
        assert_eq!(first[0].why, "its table public.audit");
        assert_eq!(candidates(&f), first);
    }
}
