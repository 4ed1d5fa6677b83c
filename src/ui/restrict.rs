//! The restrict report: each domain's group and what it is granted, each service's
//! login role, the crossings with their decisions, what is taken away, and the proof.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::engine::proof::ProbeResult;
use crate::phases::restrict::{Crossing, GrantPlan, RestrictPlan};
use crate::sql::display_ident;

/// A statement on one line, cut to `width` characters.
pub fn one_line(sql: &str, width: usize) -> String {
    let flat = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= width {
        flat
    } else {
        let cut: String = flat.chars().take(width.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

fn grant_line(g: &GrantPlan) -> String {
    let mut parts: Vec<String> = g.privileges.clone();
    for (privilege, columns) in &g.columns {
        parts.push(format!("{privilege} ({})", columns.join(", ")));
    }
    format!("{} on {} {}", parts.join(", "), g.kind.name(), g.on)
}

/// The plan part of the report (before the proof).
pub fn render(plan: &RestrictPlan) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "restrict: {} service(s), {} step(s)",
        plan.services.len(),
        plan.steps.len()
    );
    let mut groups: BTreeMap<&str, (&str, Vec<&str>)> = BTreeMap::new();
    for s in &plan.services {
        let entry = groups
            .entry(&s.group)
            .or_insert_with(|| (s.domain.as_str(), Vec::new()));
        entry.1.push(&s.service);
    }
    out.push_str("\ndomain groups (what each domain's services may do in it)\n");
    for (group, (domain, members)) in &groups {
        let _ = writeln!(
            out,
            "  {} for domain {domain}: members {}",
            display_ident(group),
            members.join(", ")
        );
        let lines: std::collections::BTreeSet<String> = plan
            .services
            .iter()
            .flat_map(|s| s.grants.iter())
            .filter(|g| g.to == *group)
            .map(grant_line)
            .collect();
        for line in lines {
            let _ = writeln!(out, "      {line}");
        }
    }
    out.push_str("\nservices\n");
    for s in &plan.services {
        let _ = writeln!(
            out,
            "  {}: login role {} ({}), home domain {} ({}){}",
            s.service,
            display_ident(&s.role),
            if s.new_role { "new" } else { "kept" },
            s.domain,
            if s.domain_from == "plan" {
                "from the plan"
            } else {
                "the domain it writes most"
            },
            s.connection_limit
                .map(|n| format!(", at most {n} connections"))
                .unwrap_or_default()
        );
        for g in s.grants.iter().filter(|g| g.to == s.role) {
            let _ = writeln!(
                out,
                "      also {} ({})",
                grant_line(g),
                g.because.as_deref().unwrap_or("")
            );
        }
    }
    if !plan.crossings.is_empty() {
        let _ = writeln!(
            out,
            "\ncrossings: statements reaching another domain's table ({})",
            plan.crossings.len()
        );
        for c in &plan.crossings {
            out.push_str(&crossing(c));
        }
    }
    if !plan.revokes.is_empty() {
        let _ = writeln!(out, "\ntaken away ({})", plan.revokes.len());
        for r in &plan.revokes {
            let _ = writeln!(out, "  - {r}");
        }
    }
    if !plan.notes.is_empty() {
        out.push_str("\nnotes\n");
        for n in &plan.notes {
            let _ = writeln!(out, "  - {n}");
        }
    }
    out
}

fn crossing(c: &Crossing) -> String {
    let mut out = String::new();
    let state = match &c.decision {
        Some(d) => format!(
            "{} ({}): {}",
            d.choice,
            if d.granted { "granted" } else { "taken away" },
            d.meaning
        ),
        None => format!("NO DECISION (choices: {})", c.choices.join(", ")),
    };
    let _ = writeln!(
        out,
        "  - {} [table of {}]: {state}",
        c.subject,
        c.table_domain.as_deref().unwrap_or("no domain")
    );
    for s in &c.statements {
        let _ = writeln!(out, "      {}: {}", s.origin, one_line(&s.sql, 90));
    }
    out
}

/// The proof's outcome.
pub fn render_proof(results: &[ProbeResult]) -> String {
    let mut out = String::new();
    let unexpected: Vec<&ProbeResult> = results.iter().filter(|r| r.is_unexpected()).collect();
    let expected: Vec<&ProbeResult> = results.iter().filter(|r| r.is_expected()).collect();
    let already = results.iter().filter(|r| r.fails_already).count();
    let already = if already > 0 {
        format!(", {already} fail already without restrict")
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "\nproof: {} statement(s) prepared and explained as their roles in a rolled-back transaction: {} run, {} fail as the plan decided, {} fail unexpectedly{already}",
        results.len(),
        results.iter().filter(|r| r.error.is_none()).count(),
        expected.len(),
        unexpected.len(),
    );
    for (title, list) in [
        ("would fail as decided", &expected),
        ("WOULD FAIL, not accepted by the plan", &unexpected),
    ] {
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(out, "  {title}:");
        for r in list.iter() {
            let _ = writeln!(
                out,
                "    - {} as {} ({}): {}\n        {}",
                r.service,
                display_ident(&r.role),
                r.origin,
                one_line(&r.sql, 80),
                r.error.as_deref().unwrap_or("")
            );
            if !r.accepted_by.is_empty() {
                let _ = writeln!(out, "        decided by: {}", r.accepted_by.join("; "));
            }
        }
    }
    out
}
