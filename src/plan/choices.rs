//! A person's choices in the discover review, written into the plan as pins and
//! decisions, so every later run of discover respects them. Pure: the prompts that
//! produce the choices live in `ui::review`.

use super::{Decision, Pin, Plan};

/// One choice made while reviewing a proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// Keep this domain as proposed: its tables stay together under its name.
    Accept { domain: String, tables: Vec<String> },
    /// Keep this domain's tables together under another name.
    Rename {
        from: String,
        to: String,
        tables: Vec<String>,
    },
    /// Put `table` into domain `to` (whose tables are `to_tables`).
    Move {
        table: String,
        to: String,
        to_tables: Vec<String>,
    },
    /// Choose how a joint or common table is resolved.
    Resolve {
        table: String,
        kind: String,
        proposal: String,
    },
}

/// The decision subject for a table's ownership, shared with discover.
pub fn ownership_subject(table: &str) -> String {
    format!("ownership of {table}")
}

/// A jointly written table's writers become one service: one home domain, their
/// tables clustered as one service's, one group role (`ownership of T`).
pub const CONSOLIDATION: &str = "service-consolidation";
/// A jointly written table goes to a data domain of its own that its writers all
/// write directly (`ownership of T`).
pub const SHARED_DATA_DOMAIN: &str = "shared-data-domain";

/// The tables (as the plan names them) whose ownership `decisions` decide `choice`.
pub fn tables_decided(decisions: &[Decision], choice: &str) -> Vec<String> {
    decisions
        .iter()
        .filter(|d| d.choice == choice)
        .filter_map(|d| d.subject.strip_prefix("ownership of "))
        .map(str::to_string)
        .collect()
}

/// Sets of services that are one: sets sharing a service are merged (A and B
/// consolidated for one table, B and C for another: A, B and C are one).
pub fn merge_overlapping(
    sets: Vec<std::collections::BTreeSet<String>>,
) -> Vec<std::collections::BTreeSet<String>> {
    let mut merged: Vec<std::collections::BTreeSet<String>> = Vec::new();
    for mut set in sets.into_iter().filter(|s| s.len() > 1) {
        let (overlapping, rest): (Vec<_>, Vec<_>) =
            merged.into_iter().partition(|m| !m.is_disjoint(&set));
        for m in overlapping {
            set.extend(m);
        }
        merged = rest;
        merged.push(set);
    }
    merged.sort();
    merged
}

/// The name a consolidated service goes by in discover's report: its members
/// joined by `+`.
pub fn consolidated_name(members: &std::collections::BTreeSet<String>) -> String {
    members.iter().cloned().collect::<Vec<_>>().join("+")
}

/// Applies choices in order; a later choice about the same table or domain wins.
pub fn apply(plan: &mut Plan, choices: &[Choice]) {
    for choice in choices {
        match choice {
            Choice::Accept { domain, tables } => pin(plan, domain, tables.clone(), None),
            Choice::Rename { from, to, tables } => pin(plan, to, tables.clone(), Some(from)),
            Choice::Move {
                table,
                to,
                to_tables,
            } => {
                let mut tables = to_tables.clone();
                if !tables.contains(table) {
                    tables.push(table.clone());
                }
                pin(plan, to, tables, None);
            }
            Choice::Resolve {
                table,
                kind,
                proposal,
            } => {
                let subject = ownership_subject(table);
                let decision = Decision {
                    subject: subject.clone(),
                    choice: kind.clone(),
                    reason: format!("chosen in review: {proposal}"),
                    rows: None,
                };
                match plan.decisions.iter_mut().find(|d| d.subject == subject) {
                    Some(d) => *d = decision,
                    None => plan.decisions.push(decision),
                }
            }
        }
    }
}

/// Pins `tables` together as `domain`: the domain's earlier pin (or, for a rename, the
/// old name's) is replaced, and the tables leave any other pin.
fn pin(plan: &mut Plan, domain: &str, mut tables: Vec<String>, renamed_from: Option<&String>) {
    let mut kept_from_old = Vec::new();
    plan.pins.retain(|p| {
        let same = p.domain.as_deref() == Some(domain) || p.domain.as_ref() == renamed_from;
        if same {
            kept_from_old.extend(p.tables.iter().cloned());
        }
        !same
    });
    // Tables an earlier pin of this domain held and the proposal no longer shows stay.
    for t in kept_from_old {
        if !tables.contains(&t) {
            tables.push(t);
        }
    }
    for other in &mut plan.pins {
        other.tables.retain(|t| !tables.contains(t));
    }
    plan.pins.retain(|p| !p.tables.is_empty());
    tables.sort();
    plan.pins.push(Pin {
        tables,
        domain: Some(domain.to_string()),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consolidations_sharing_a_service_are_one() {
        let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();
        let merged = merge_overlapping(vec![
            set(&["a", "b"]),
            set(&["x", "y"]),
            set(&["b", "c"]),
            set(&["lonely"]),
        ]);
        assert_eq!(merged, vec![set(&["a", "b", "c"]), set(&["x", "y"])]);
        assert_eq!(consolidated_name(&merged[0]), "a+b+c");
    }
    use crate::catalog::fingerprint::Fingerprint;
    use crate::plan::Source;

    fn plan() -> Plan {
        Plan::new(
            Source {
                conninfo: "dbname=shop".into(),
                database: "shop".into(),
            },
            Fingerprint::default(),
        )
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn accept_rename_and_move_become_pins() {
        let mut p = plan();
        apply(
            &mut p,
            &[
                Choice::Accept {
                    domain: "orders".into(),
                    tables: names(&["public.orders", "public.order_items"]),
                },
                Choice::Rename {
                    from: "catalog".into(),
                    to: "products".into(),
                    tables: names(&["public.products", "public.brands"]),
                },
                Choice::Move {
                    table: "public.brands".into(),
                    to: "orders".into(),
                    to_tables: names(&["public.orders", "public.order_items"]),
                },
            ],
        );
        assert_eq!(
            p.pins,
            [
                Pin {
                    tables: names(&["public.products"]),
                    domain: Some("products".into())
                },
                Pin {
                    tables: names(&["public.brands", "public.order_items", "public.orders"]),
                    domain: Some("orders".into())
                },
            ]
        );
    }

    #[test]
    fn renaming_a_pinned_domain_replaces_its_pin() {
        let mut p = plan();
        p.pins.push(Pin {
            tables: names(&["public.a", "public.gone"]),
            domain: Some("x".into()),
        });
        apply(
            &mut p,
            &[Choice::Rename {
                from: "x".into(),
                to: "y".into(),
                tables: names(&["public.a"]),
            }],
        );
        assert_eq!(
            p.pins,
            [Pin {
                tables: names(&["public.a", "public.gone"]),
                domain: Some("y".into())
            }]
        );
    }

    #[test]
    fn a_resolution_replaces_the_proposed_decision() {
        let mut p = plan();
        p.decisions.push(Decision {
            subject: ownership_subject("public.orders"),
            choice: "table-split".into(),
            reason: "proposed".into(),
            rows: None,
        });
        apply(
            &mut p,
            &[Choice::Resolve {
                table: "public.orders".into(),
                kind: "delegate".into(),
                proposal: "orders owns public.orders".into(),
            }],
        );
        assert_eq!(p.decisions.len(), 1);
        assert_eq!(p.decisions[0].choice, "delegate");
        assert!(p.decisions[0].reason.starts_with("chosen in review"));
    }
}
