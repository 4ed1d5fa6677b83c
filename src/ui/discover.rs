//! The human report of `carve discover`.

use std::path::Path;

use crate::analysis::ownership::Ownership;
use crate::analysis::Discovery;

use super::bytes;

fn join(items: &std::collections::BTreeSet<String>) -> String {
    items.iter().cloned().collect::<Vec<_>>().join(", ")
}

pub fn render(d: &Discovery, plan: &Path, changes: &[String], had_workload: bool) -> String {
    let mut out = render_report(d, had_workload);
    out.push_str(&render_footer(plan, changes));
    out
}

/// Where the plan went, and what changed since its previous proposal.
pub fn render_footer(plan: &Path, changes: &[String]) -> String {
    let mut out = String::from("\n");
    if changes.is_empty() {
        out.push_str(&format!("plan written to {}\n", plan.display()));
    } else {
        out.push_str(&format!(
            "plan {} updated; since its last proposal:\n",
            plan.display()
        ));
        for c in changes {
            out.push_str(&format!("  - {c}\n"));
        }
    }
    out
}

/// The report itself: quality, services, domains, ownership, boundaries, problems.
pub fn render_report(d: &Discovery, had_workload: bool) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    let q = &d.quality;
    line(format!(
        "{} domains for {} tables, from {} ({})",
        d.domains.len(),
        d.tables.len(),
        if had_workload {
            format!("the workload of {} services", d.services.len())
        } else {
            "the catalog alone".into()
        },
        format_args!(
            "resolution {}, modularity {:.2}",
            q.resolution, q.modularity
        )
    ));
    line(format!(
        "  {} cross a domain boundary",
        super::crossing_summary(q)
    ));
    // The number of domains each resolution gives; `--resolution` picks another.
    let scales: Vec<String> = q
        .alternatives
        .iter()
        .map(|s| {
            format!(
                "{}{} at {} ({:.3}, seeds agree {:.0}%)",
                if s.chosen { "→ " } else { "" },
                s.domains,
                s.resolution,
                s.modularity,
                s.agreement * 100.0
            )
        })
        .collect();
    if !scales.is_empty() {
        line(format!(
            "  domains by resolution (modularity): {}; --resolution R chooses another",
            scales.join(", ")
        ));
    }
    if had_workload {
        line(String::new());
        line("services".into());
        for s in &d.services {
            let mut how = Vec::new();
            if !s.seen.roles.is_empty() {
                how.push(format!("roles {}", join(&s.seen.roles)));
            }
            if !s.seen.applications.is_empty() {
                how.push(format!("applications {}", join(&s.seen.applications)));
            }
            if s.seen.sessions_logged > 0 {
                how.push(format!("{} sessions logged", s.seen.sessions_logged));
            }
            if s.seen.connections_open > 0 {
                how.push(format!("{} connections open", s.seen.connections_open));
            }
            let idle = if s.idle {
                "; touched no table, left out"
            } else {
                ""
            };
            line(format!(
                "  {}: {} statements, writes {} and reads {} tables{}{}",
                s.name,
                s.statements,
                s.writes,
                s.reads,
                if how.is_empty() {
                    String::new()
                } else {
                    format!("; {}", how.join(", "))
                },
                idle
            ));
        }
    }
    if !d.cross_cutting.is_empty() {
        line(String::new());
        line("cross-cutting writers (set aside while clustering and choosing owners; `[[services]] cross_cutting = false` in the plan counts one as an ordinary writer)".into());
        for c in &d.cross_cutting {
            line(format!("  {}: {}", c.service, c.why));
        }
    }
    line(String::new());
    line("domains".into());
    for domain in &d.domains {
        let purity = domain
            .writer_purity
            .map(|p| format!(", writer purity {:.0}%", p * 100.0))
            .unwrap_or_default();
        line(format!(
            "  {}{}  ({} table{}; its name: {}{})",
            domain.name,
            if domain.common { " [common]" } else { "" },
            domain.tables.len(),
            if domain.tables.len() == 1 { "" } else { "s" },
            domain.named_after,
            purity
        ));
        line(format!("      {}", domain.tables.join(", ")));
    }

    if had_workload {
        line(String::new());
        line("ownership".into());
        let width = d.tables.iter().map(|t| t.name.len()).max().unwrap_or(0);
        for t in d.tables.iter().filter(|t| t.partition_of.is_none()) {
            let kind = t.owned.ownership.as_str();
            line(format!(
                "  {:<width$}  {:<9}  {}",
                t.name, kind, t.owned.reason
            ));
            if matches!(t.owned.ownership, Ownership::Common | Ownership::Joint) {
                for (i, r) in t.owned.resolutions.iter().enumerate() {
                    line(format!("      {}. {}", i + 1, r.proposal));
                    line(format!("         because {}", r.reason));
                }
            }
        }
    }

    if !d.boundaries.is_empty() {
        line(String::new());
        line("boundaries (what each costs, what it buys)".into());
        for b in &d.boundaries {
            let costs: Vec<String> = b
                .costs
                .iter()
                .map(|c| format!("{} (e.g. {})", c.label(), c.examples.join(", ")))
                .collect();
            line(format!("  {} | {}", b.domains[0], b.domains[1]));
            line(format!("      costs: {}", costs.join("; ")));
            let writers = |w: &Vec<String>| {
                if w.is_empty() {
                    "no writer".to_string()
                } else {
                    w.join(", ")
                }
            };
            line(format!(
                "      buys:  writers {} vs {}{}; {} vs {}; {} vs {} write statements",
                writers(&b.buys.writers[0]),
                writers(&b.buys.writers[1]),
                if b.buys.shared_writers.is_empty() {
                    String::new()
                } else {
                    format!(" (shared: {})", b.buys.shared_writers.join(", "))
                },
                bytes(b.buys.size_bytes[0]),
                bytes(b.buys.size_bytes[1]),
                b.buys.write_statements[0],
                b.buys.write_statements[1]
            ));
            let [ra, rb] = &b.buys.roles;
            if !ra.is_empty() || !rb.is_empty() || b.buys.connections != [0, 0] {
                line(format!(
                    "             roles {} vs {}; {} vs {} connections",
                    if ra.is_empty() {
                        "-".into()
                    } else {
                        ra.join(", ")
                    },
                    if rb.is_empty() {
                        "-".into()
                    } else {
                        rb.join(", ")
                    },
                    b.buys.connections[0],
                    b.buys.connections[1]
                ));
            }
        }
    }

    let p = &d.problems;
    if p.count() > 0 {
        line(String::new());
        line(format!(
            "problems ({}; nothing was dropped silently)",
            p.count()
        ));
        for (what, list) in p.by_kind() {
            for problem in list.iter().take(20) {
                line(format!("  {what}: {}: {}", problem.origin, problem.message));
            }
            if list.len() > 20 {
                line(format!(
                    "  … and {} more ({what}; --format json lists all)",
                    list.len() - 20
                ));
            }
        }
    }
    for (what, n) in &p.ignored {
        line(format!("  left out on purpose: {what}: {n} statements"));
    }
    out
}
