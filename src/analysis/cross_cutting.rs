//! Cross-cutting writers: a nightly sync, a maintenance job, an admin tool that
//! writes into the tables of several otherwise separate services. The source texts
//! call it a background synchronization that co-owns data. Left in, its writes and
//! transactions would tie every cluster it touches together and make it the owner
//! of rows it only tidies; so it is set aside while clustering and choosing owners,
//! and reported, and its writes stay crossings for restrict to decide.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::ownership::TableOwnership;
use super::usage::Usage;
use crate::catalog::QualName;

/// How many other services' tables a writer must reach to be cross-cutting.
const HOSTS: usize = 3;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CrossCutting {
    pub service: String,
    /// The services whose tables it writes too (the main other writer of each).
    pub hosts: Vec<String>,
    /// Tables it writes that others use: set aside while clustering.
    #[serde(serialize_with = "names")]
    pub tables: Vec<QualName>,
    pub why: String,
    /// Set by the plan (`[[services]] cross_cutting = true`) rather than detected.
    pub by_plan: bool,
}

/// `schema.table` names, as the rest of the report has them.
fn names<S: serde::Serializer>(tables: &[QualName], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(tables.iter().map(ToString::to_string))
}

/// The workload's cross-cutting writers: services writing the tables of at least
/// three other services (each such table's main other writer), at least as many
/// tables of others as of their own. `overrides` (from the plan) forces a service
/// in (`true`) or out (`false`).
pub fn detect(usage: &Usage, overrides: &BTreeMap<String, bool>) -> Vec<CrossCutting> {
    let mut written: BTreeMap<&str, Vec<&QualName>> = BTreeMap::new();
    for (table, u) in &usage.tables {
        for service in u.writers.keys() {
            written.entry(service).or_default().push(table);
        }
    }
    let mut found = Vec::new();
    for (service, tables) in written {
        let forced = overrides.get(service).copied();
        if forced == Some(false) {
            continue;
        }
        let mut hosts: BTreeSet<String> = BTreeSet::new();
        let mut shared: Vec<QualName> = Vec::new();
        let mut co_written = 0;
        for table in &tables {
            let u = &usage.tables[*table];
            // A table nearly everyone writes (common) says nothing about clusters.
            if u.writers.len() >= 3 {
                continue;
            }
            let host = u
                .writers
                .iter()
                .filter(|(s, _)| s.as_str() != service)
                .max_by_key(|(s, w)| (w.statements, std::cmp::Reverse(s.as_str())))
                .map(|(s, _)| s.clone());
            let read_by_others = u.readers.keys().any(|s| s != service);
            if let Some(host) = host {
                hosts.insert(host);
                shared.push((*table).clone());
                co_written += 1;
            } else if read_by_others {
                shared.push((*table).clone());
            }
        }
        let detected = hosts.len() >= HOSTS && 2 * co_written >= tables.len();
        if !(detected || forced == Some(true)) {
            continue;
        }
        let hosts: Vec<String> = hosts.into_iter().collect();
        let why = if forced == Some(true) {
            "the plan says so ([[services]] cross_cutting = true)".to_string()
        } else {
            format!(
                "writes tables of {} other services ({}): {} of the {} tables it writes are written by another service too",
                hosts.len(),
                hosts.join(", "),
                co_written,
                tables.len()
            )
        };
        found.push(CrossCutting {
            service: service.to_string(),
            hosts,
            tables: shared,
            why,
            by_plan: forced == Some(true),
        });
    }
    found
}

/// Puts each cross-cutting writer back among the writers of the tables it was set
/// aside from, saying why it owns none of them.
pub fn note_co_owners(ownership: &mut [TableOwnership], cross: &[CrossCutting]) {
    for o in ownership.iter_mut() {
        for c in cross.iter().filter(|c| c.tables.contains(&o.table)) {
            o.writers.push(c.service.clone());
            o.writers.sort();
            o.reason.push_str(&format!(
                " (not counting {}, a cross-cutting writer: a background synchronization that co-owns data, whose writes are crossings to decide, not a claim to own it)",
                c.service
            ));
        }
    }
}

impl Usage {
    /// The use with each cross-cutting writer set aside from its `tables` (those
    /// other services use): it no longer writes, reads or owns them, and its
    /// statements tie no tables together. The tables only it uses stay its own, and
    /// a common table keeps it among its writers, as the report lists them.
    pub fn setting_aside(&self, cross: &[CrossCutting]) -> Usage {
        let mut out = self.clone();
        for c in cross {
            for t in &c.tables {
                if let Some(u) = out.tables.get_mut(t) {
                    u.writers.remove(&c.service);
                    u.readers.remove(&c.service);
                }
            }
        }
        let aside: BTreeSet<&str> = cross.iter().map(|c| c.service.as_str()).collect();
        out.statements
            .retain(|s| !aside.contains(s.service.as_str()));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::usage::{TableUse, WriterUse};

    fn q(n: &str) -> QualName {
        QualName::new("public", n)
    }

    /// `(table, writers, readers)` as a use of tables.
    fn usage(tables: &[(&str, &[&str], &[&str])]) -> Usage {
        let mut u = Usage::default();
        for (t, writers, readers) in tables {
            let mut used = TableUse::default();
            for w in *writers {
                used.writers.insert(
                    w.to_string(),
                    WriterUse {
                        statements: 1,
                        ..WriterUse::default()
                    },
                );
            }
            for r in *readers {
                used.readers.insert(r.to_string(), 1);
            }
            u.tables.insert(q(t), used);
        }
        u
    }

    #[test]
    fn a_job_writing_three_services_tables_is_cross_cutting() {
        let u = usage(&[
            ("orders", &["orders", "nightly"], &[]),
            ("payments", &["payments", "nightly"], &[]),
            ("stock", &["inventory", "nightly"], &[]),
            ("job_runs", &["nightly"], &[]),
            ("audit", &["orders", "payments", "nightly"], &[]),
        ]);
        let found = detect(&u, &BTreeMap::new());
        assert_eq!(found.len(), 1, "{found:#?}");
        let job = &found[0];
        assert_eq!(job.service, "nightly");
        assert_eq!(job.hosts, ["inventory", "orders", "payments"]);
        assert_eq!(job.tables, [q("orders"), q("payments"), q("stock")]);
        assert!(!job.by_plan);
        // The plan may say otherwise, either way.
        let off = BTreeMap::from([("nightly".to_string(), false)]);
        assert!(detect(&u, &off).is_empty());
        let on = BTreeMap::from([("orders".to_string(), true)]);
        let forced: Vec<String> = detect(&u, &on).into_iter().map(|c| c.service).collect();
        assert_eq!(forced, ["nightly", "orders"]);
    }

    #[test]
    fn two_hosts_or_mostly_own_tables_are_not_cross_cutting() {
        // A guest writer of two services' tables (the library's BookInventory is one).
        let two = usage(&[("a", &["x", "job"], &[]), ("b", &["y", "job"], &[])]);
        assert!(detect(&two, &BTreeMap::new()).is_empty());
        // Three hosts, but a service with many tables of its own.
        let own = usage(&[
            ("a", &["x", "svc"], &[]),
            ("b", &["y", "svc"], &[]),
            ("c", &["z", "svc"], &[]),
            ("d", &["svc"], &[]),
            ("e", &["svc"], &[]),
            ("f", &["svc"], &[]),
            ("g", &["svc"], &[]),
        ]);
        assert!(detect(&own, &BTreeMap::new()).is_empty());
    }

    #[test]
    fn setting_aside_keeps_tables_only_the_job_uses() {
        let u = usage(&[
            ("orders", &["orders", "nightly"], &["nightly"]),
            ("payments", &["payments", "nightly"], &[]),
            ("stock", &["inventory", "nightly"], &[]),
            ("job_runs", &["nightly"], &[]),
            ("audit", &["orders", "payments", "nightly"], &[]),
        ]);
        let aside = u.setting_aside(&detect(&u, &BTreeMap::new()));
        let writers =
            |t: &str| -> Vec<String> { aside.tables[&q(t)].writers.keys().cloned().collect() };
        assert_eq!(writers("orders"), ["orders"]);
        assert!(aside.tables[&q("orders")].readers.is_empty());
        assert_eq!(writers("job_runs"), ["nightly"]);
        // A common table lists every writer, the job too.
        assert_eq!(writers("audit"), ["nightly", "orders", "payments"]);
    }
}
