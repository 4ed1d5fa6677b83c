//! Where the journey stands and what comes next, from the plan alone: the wizard's
//! compass. Pure, so every turn of it is tested without a terminal.

use std::collections::BTreeSet;

use super::{phase_names, PhaseId, Plan, Side};

/// The next thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// No plan yet: find the domains.
    Discover,
    Assign,
    /// The plan's [[splits]], after assign and before restrict.
    Split,
    Restrict,
    /// A domain to move: the one under way, or one to pick (None).
    Move(Option<String>),
    Verify(String),
    /// A domain to cut over, or whose switch is under way.
    Cutover(String),
    /// Every domain that was moved is cut over, and no move is proposed.
    Done,
}

impl Next {
    /// What the wizard records when the person skips it.
    pub fn key(&self) -> String {
        match self {
            Next::Discover => "discover".into(),
            Next::Assign => "assign".into(),
            Next::Split => "split".into(),
            Next::Restrict => "restrict".into(),
            Next::Move(_) => "move".into(),
            Next::Verify(d) => format!("verify {d}"),
            Next::Cutover(d) => format!("cutover {d}"),
            Next::Done => "done".into(),
        }
    }
}

/// The next step of the journey, leaving out what was skipped this session.
pub fn next(plan: Option<&Plan>, skipped: &BTreeSet<String>) -> Next {
    let Some(plan) = plan else {
        return Next::Discover;
    };
    let applied = |name: &str, domain: Option<&str>| {
        plan.phase(PhaseId::new(name, domain))
            .is_some_and(|r| r.is_applied())
    };
    let wanted = |n: &Next| !skipped.contains(&n.key());
    if !applied(phase_names::ASSIGN, None) && wanted(&Next::Assign) {
        return Next::Assign;
    }
    if !applied(phase_names::ASSIGN, None) {
        return Next::Done;
    }
    // What is under way for a domain comes before anything new.
    for d in &plan.domains {
        let name = d.name.as_str();
        // A switch under way comes first: the clients wait on it.
        if d.cutover.as_ref().is_some_and(|c| c.switching.is_some()) {
            return Next::Cutover(name.into());
        }
        let moved = applied(phase_names::MOVE, Some(name));
        let on_server = d.cutover.as_ref().is_some_and(|c| c.live == Side::Server);
        if moved && !on_server {
            let verify = Next::Verify(name.into());
            if d.verified.is_none() && wanted(&verify) {
                return verify;
            }
            let cutover = Next::Cutover(name.into());
            if d.verified.is_some() && wanted(&cutover) {
                return cutover;
            }
        }
        let under_way = plan
            .phase(PhaseId::new(phase_names::MOVE, Some(name)))
            .is_some_and(|r| r.is_in_flight());
        if under_way {
            return Next::Move(Some(name.into()));
        }
    }
    let restricted = applied(phase_names::RESTRICT, None);
    // Before restrict, whose grants then follow the parts.
    let split = !plan.splits.is_empty() && !applied(phase_names::SPLIT, None);
    if split && !restricted && wanted(&Next::Split) {
        return Next::Split;
    }
    if !restricted && wanted(&Next::Restrict) {
        return Next::Restrict;
    }
    let unmoved = plan
        .domains
        .iter()
        .any(|d| !applied(phase_names::MOVE, Some(&d.name)));
    if unmoved && wanted(&Next::Move(None)) {
        return Next::Move(None);
    }
    Next::Done
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::fingerprint::Fingerprint;
    use crate::plan::{Cutover, Domain, PhaseRecord, PhaseState, Source, Verified};

    fn plan() -> Plan {
        let mut plan = Plan::new(
            Source {
                conninfo: "host=db1".into(),
                database: "shop".into(),
            },
            Fingerprint::from_objects(Default::default()),
        );
        for name in ["orders", "billing"] {
            plan.domains.push(Domain {
                name: name.into(),
                tables: vec![format!("public.{name}")],
                ..Domain::default()
            });
        }
        plan
    }

    fn applied(plan: &mut Plan, name: &str, domain: Option<&str>) {
        let mut record = PhaseRecord::planned(
            PhaseId::new(name, domain),
            "x".into(),
            Default::default(),
            vec![],
        );
        record.state = PhaseState::Applied;
        plan.phases.push(record);
    }

    #[test]
    fn the_journey_goes_phase_by_phase_and_domain_by_domain() {
        let none = BTreeSet::new();
        assert_eq!(next(None, &none), Next::Discover);
        let mut p = plan();
        assert_eq!(next(Some(&p), &none), Next::Assign);
        applied(&mut p, "assign", None);
        assert_eq!(next(Some(&p), &none), Next::Restrict);
        // A split in the plan comes between assign and restrict, unless skipped.
        p.splits.push(crate::plan::Split {
            table: "public.orders".into(),
            part: "orders_billing".into(),
            domain: Some("billing".into()),
            columns: vec!["paid".into()],
        });
        assert_eq!(next(Some(&p), &none), Next::Split);
        let later = BTreeSet::from(["split".to_string()]);
        assert_eq!(next(Some(&p), &later), Next::Restrict);
        applied(&mut p, "split", None);
        assert_eq!(next(Some(&p), &none), Next::Restrict);
        let skipped = BTreeSet::from(["restrict".to_string()]);
        assert_eq!(next(Some(&p), &skipped), Next::Move(None));
        applied(&mut p, "move", Some("orders"));
        assert_eq!(next(Some(&p), &skipped), Next::Verify("orders".into()));
        // A moved domain goes on before restrict is proposed again.
        assert_eq!(next(Some(&p), &none), Next::Verify("orders".into()));
        p.domains[0].verified = Some(Verified {
            at: "2026-11-30T00:00:00Z".into(),
            tables: 1,
            chunks: 1,
            rows: 1,
        });
        assert_eq!(next(Some(&p), &skipped), Next::Cutover("orders".into()));
        p.domains[0].cutover = Some(Cutover {
            live: Side::Server,
            since: "now".into(),
            pause_ms: None,
            switching: None,
            retired: None,
            files: None,
        });
        // billing is left to move; skipping moves ends the journey for now.
        assert_eq!(next(Some(&p), &skipped), Next::Move(None));
        let mut more = skipped.clone();
        more.insert("move".into());
        assert_eq!(next(Some(&p), &more), Next::Done);
        // A switch under way comes before anything else.
        p.domains[0].cutover.as_mut().unwrap().switching = Some(crate::plan::Switching {
            to: Side::Source,
            started: "now".into(),
            committed: None,
        });
        assert_eq!(next(Some(&p), &more), Next::Cutover("orders".into()));
    }
}
