//! `carve discover`: propose data domains and table ownership from the catalog and the
//! workload, print the report, and write the proposal into the plan file.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};

use anyhow::{bail, Context};
use serde::Serialize;

use crate::analysis::ownership::ResolutionKind;
use crate::analysis::{self, Discovery, Options};
use crate::catalog::fingerprint::Fingerprint;
use crate::catalog::reader::read_catalog;
use crate::catalog::Catalog;
use crate::cli::{DiscoverArgs, Settings};
use crate::exit;
use crate::plan::{Decision, Domain, Plan, Service, Source, Split};
use crate::workload::sources::Sources;

#[derive(Serialize)]
struct JsonReport<'a> {
    #[serde(flatten)]
    discovery: &'a Discovery,
    plan: PlanReport,
}

#[derive(Serialize)]
struct PlanReport {
    path: String,
    /// What changed since the plan file's previous proposal (empty for a new plan).
    changes: Vec<String>,
}

pub async fn run(settings: &Settings, args: &DiscoverArgs) -> anyhow::Result<u8> {
    let existing = Plan::load_if_exists(&settings.plan_path)?;
    // Check the workload's sources first: a missing path stops everything before any
    // connection is made.
    let sources = Sources::check(&args.workload.options(), existing.as_ref())?;
    if let Some(plan) = &existing {
        if let Some(applied) = plan.phases.iter().find(|p| !p.is_undone()) {
            bail!(
                "{} records the {} phase as applied (or under way); re-running discover would move tables under it. Run `carve undo {}` first, or use --plan for a new file",
                settings.plan_path.display(),
                applied.name,
                applied.name,
            );
        }
    }

    let (spec, clients) = super::connect_source(&args.source, super::CATALOG_CONNECTIONS).await?;
    let catalog = read_catalog(&clients).await?;
    tracing::debug!(tables = catalog.tables.len(), "catalog read");
    if let Some(plan) = &existing {
        if plan.source.database != catalog.server.database {
            bail!(
                "{} is the plan for database {}, not {}: use --plan to choose another file",
                settings.plan_path.display(),
                plan.source.database,
                catalog.server.database
            );
        }
    }

    let workload = sources.load(&clients[0], &catalog.server.database).await?;
    drop(clients);
    tracing::debug!("workload read");

    let pins = existing
        .as_ref()
        .map(|p| resolve_pins(p, &catalog, &settings.plan_path))
        .transpose()?
        .unwrap_or_default();
    let mut options = Options {
        resolution: args
            .resolution
            .or_else(|| existing.as_ref().and_then(|p| p.resolution)),
        pins,
        cross_cutting: existing
            .iter()
            .flat_map(|p| &p.services)
            .filter_map(|s| Some((s.name.clone(), s.cross_cutting?)))
            .collect(),
        ..Options::default()
    };
    let mut discovery = settled(&catalog, workload.as_ref(), &mut options, existing.as_ref());
    tracing::debug!("discovered");
    if let Some(workload) = &workload {
        check_problems(settings, workload, &discovery)?;
    }
    let source = Source {
        conninfo: spec.reference(),
        database: catalog.server.database.clone(),
    };

    // On a terminal without --yes, the user reviews the proposal; the choices become
    // pins and decisions, and the proposal is made again with them.
    let interactive = !settings.assume_yes
        && !settings.out.is_json()
        && args.graph.is_none()
        && std::io::stdin().is_terminal()
        && std::io::stderr().is_terminal();
    // The plan with the review's choices, when there were any.
    let mut reviewed: Option<Plan> = None;
    if interactive {
        print!(
            "{}",
            crate::ui::discover::render_report(&discovery, workload.is_some())
        );
        std::io::stdout().flush()?;
        if let Some(resolution) = crate::ui::review::choose_scale(&discovery)? {
            options.resolution = Some(resolution);
            discovery = settled(&catalog, workload.as_ref(), &mut options, existing.as_ref());
            print!(
                "{}",
                crate::ui::discover::render_report(&discovery, workload.is_some())
            );
            std::io::stdout().flush()?;
        }
        let choices = crate::ui::review::walk(&discovery)?;
        if !choices.is_empty() {
            let mut draft = build_plan(source.clone(), &catalog, &discovery, existing.as_ref());
            crate::plan::choices::apply(&mut draft, &choices);
            options.pins = resolve_pins(&draft, &catalog, &settings.plan_path)?;
            discovery = settled(&catalog, workload.as_ref(), &mut options, Some(&draft));
            reviewed = Some(draft);
        }
    }

    if let Some(format) = args.graph {
        print!("{}", crate::ui::graph::render(&discovery, format.into()));
    }
    let changes = existing
        .as_ref()
        .map(|p| changes_since(p, &discovery))
        .unwrap_or_default();
    // The report first: when it cannot be written, the plan stays as it was.
    if let Some(path) = &args.report {
        std::fs::write(path, crate::ui::html::render(&discovery))
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
        settings
            .out
            .progress(&format!("report written to {}", path.display()));
    }
    let base = reviewed.as_ref().or(existing.as_ref());
    let mut plan = build_plan(source, &catalog, &discovery, base);
    // A resolution the user chose stays for the next run; a chosen one is chosen again.
    plan.resolution = options.resolution;
    plan.workload = (!sources.is_empty()).then(|| sources.record());
    plan.save(&settings.plan_path)?;
    tracing::debug!("plan saved");

    if settings.out.is_json() {
        settings.out.json(
            "discover",
            &JsonReport {
                discovery: &discovery,
                plan: PlanReport {
                    path: settings.plan_path.display().to_string(),
                    changes,
                },
            },
        );
    } else if interactive {
        print!(
            "{}",
            crate::ui::discover::render_footer(&settings.plan_path, &changes)
        );
    } else if args.graph.is_none() {
        let report = crate::ui::discover::render(
            &discovery,
            &settings.plan_path,
            &changes,
            workload.is_some(),
        );
        print!("{report}");
    }
    Ok(exit::SUCCESS)
}

/// Workload problems go to stderr as well as into the report. When not one statement
/// parses, there is no workload to propose from: an error, and the plan stays as it was.
fn check_problems(
    settings: &Settings,
    workload: &crate::workload::Workload,
    discovery: &Discovery,
) -> anyhow::Result<()> {
    let problems = &discovery.problems;
    let lines: Vec<String> = problems
        .by_kind()
        .iter()
        .flat_map(|(kind, list)| {
            list.iter()
                .map(move |p| format!("{}: {kind}: {}", p.origin, p.message))
        })
        .collect();
    let listed = crate::text::at_most(lines, 20, "\n  ", |n| {
        format!("\n  … and {n} more (the report lists them all)")
    });
    if !workload.statements.is_empty() && problems.unparsed.len() == workload.statements.len() {
        bail!(
            "not one of the {} statement(s) read from the workload parses, so there is nothing to propose from; nothing was written:\n  {listed}",
            workload.statements.len(),
        );
    }
    if !listed.is_empty() {
        settings.out.warn(&format!(
            "{} workload problem(s); the proposal leaves these out:\n  {listed}",
            problems.count()
        ));
    }
    Ok(())
}

/// The plan for a discovery: domains, services and ownership decisions, with the
/// catalog's fingerprint. Decisions of an existing plan are carried over.
pub fn build_plan(
    source: Source,
    catalog: &Catalog,
    discovery: &Discovery,
    existing: Option<&Plan>,
) -> Plan {
    let mut plan = Plan::new(source, Fingerprint::of(catalog));
    plan.domains = discovery
        .domains
        .iter()
        .map(|d| {
            let before = existing.and_then(|p| p.domains.iter().find(|o| o.name == d.name));
            Domain {
                name: d.name.clone(),
                tables: d.tables.clone(),
                role: before.and_then(|b| b.role.clone()),
                column_privileges: before.is_some_and(|b| b.column_privileges),
                server: before.and_then(|b| b.server.clone()),
                verified: before.and_then(|b| b.verified.clone()),
                cutover: before.and_then(|b| b.cutover.clone()),
                subscription_conninfo: before.and_then(|b| b.subscription_conninfo.clone()),
                reverse_conninfo: before.and_then(|b| b.reverse_conninfo.clone()),
            }
        })
        .collect();
    // Roles and applications seen in this workload, plus those the plan already had.
    plan.services = discovery
        .services
        .iter()
        .filter(|s| !s.idle)
        .map(|s| {
            let before = existing.and_then(|p| p.services.iter().find(|o| o.name == s.name));
            let merged = |seen: &std::collections::BTreeSet<String>, old: Option<&Vec<String>>| {
                let mut all = seen.clone();
                all.extend(old.into_iter().flatten().cloned());
                all.into_iter().collect()
            };
            Service {
                name: s.name.clone(),
                roles: merged(&s.seen.roles, before.map(|b| &b.roles)),
                applications: merged(&s.seen.applications, before.map(|b| &b.applications)),
                // What the user set for later phases stays.
                login_role: before.and_then(|b| b.login_role.clone()),
                domain: before.and_then(|b| b.domain.clone()),
                connection_limit: before.and_then(|b| b.connection_limit),
                pgbouncer_entry: before.and_then(|b| b.pgbouncer_entry.clone()),
                cross_cutting: before.and_then(|b| b.cross_cutting),
            }
        })
        .collect();
    plan.decisions = decisions(discovery, existing);
    plan.splits = splits(discovery, existing, &plan.decisions);
    plan.pins = existing.map(|p| p.pins.clone()).unwrap_or_default();
    plan.resolution = existing.and_then(|p| p.resolution);
    plan.fingerprint = plan.fingerprint_of(catalog);
    plan
}

/// The plan's pins as tables of this catalog. A pin naming a table that does not exist
/// is an error: dropping it silently would lose the user's decision.
fn resolve_pins(
    plan: &Plan,
    catalog: &Catalog,
    path: &std::path::Path,
) -> anyhow::Result<Vec<analysis::domains::Pin>> {
    let mut pins = Vec::new();
    for (i, pin) in plan.pins.iter().enumerate() {
        let mut tables = Vec::new();
        for name in &pin.tables {
            let (schema, table) = crate::sql::parse_qualified(name)
                .map_err(|e| anyhow::anyhow!("{}: pin {} : {e}", path.display(), i + 1))?;
            // A partition is pinned with its root.
            let q = catalog.partition_root(&crate::catalog::QualName {
                schema,
                name: table,
            });
            if catalog.table(&q).is_none() {
                bail!(
                    "{}: pin {} names {name}, which is not a table of {}; fix or remove the pin",
                    path.display(),
                    i + 1,
                    catalog.server.database
                );
            }
            tables.push(q);
        }
        if let Some(domain) = &pin.domain {
            if domain.is_empty() || domain.len() > 63 {
                bail!(
                    "{}: pin {}: a domain name needs 1 to 63 bytes",
                    path.display(),
                    i + 1
                );
            }
        }
        pins.push(analysis::domains::Pin {
            tables,
            domain: pin.domain.clone(),
            apart: false,
        });
    }
    Ok(pins)
}

/// The proposal with its ownership decisions carried out: a consolidation or a
/// shared data domain changes the domains. The decisions are the plan's (kept as
/// they are) and discover's own for the other tables, so the next run, which finds
/// them in the plan, proposes the same.
fn settled(
    catalog: &Catalog,
    workload: Option<&crate::workload::Workload>,
    options: &mut Options,
    plan: Option<&Plan>,
) -> Discovery {
    let kept = plan.map(|p| p.decisions.clone()).unwrap_or_default();
    decided_resolutions(options, &kept, catalog);
    let discovery = analysis::discover(catalog, workload, options);
    let before = (options.consolidate.clone(), options.shared.clone());
    decided_resolutions(options, &decisions(&discovery, plan), catalog);
    if (options.consolidate.clone(), options.shared.clone()) == before {
        return discovery;
    }
    analysis::discover(catalog, workload, options)
}

/// The tables whose ownership `decided` decides a consolidation or a shared data
/// domain, for the analysis to carry out (a table no longer there is left out).
fn decided_resolutions(options: &mut Options, decided: &[Decision], catalog: &Catalog) {
    let tables = |choice| {
        crate::plan::choices::tables_decided(decided, choice)
            .iter()
            .filter_map(|name| crate::sql::parse_qualified(name).ok())
            .map(|(schema, name)| crate::catalog::QualName { schema, name })
            .filter(|q| catalog.table(q).is_some())
            .collect()
    };
    options.consolidate = tables(crate::plan::choices::CONSOLIDATION);
    options.shared = tables(crate::plan::choices::SHARED_DATA_DOMAIN);
}

/// Ownership resolutions become decisions. A decision already in the plan for the same
/// table is kept as it is: it may be the user's own choice.
fn decisions(discovery: &Discovery, existing: Option<&Plan>) -> Vec<Decision> {
    let mut kept: BTreeMap<String, Decision> = existing
        .map(|p| {
            p.decisions
                .iter()
                .map(|d| (d.subject.clone(), d.clone()))
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    for table in discovery.tables.iter().filter(|t| t.partition_of.is_none()) {
        let Some(best) = table.owned.resolutions.first() else {
            continue;
        };
        let subject = crate::plan::choices::ownership_subject(&table.name);
        // A delegation names the service the others delegate to: restrict then
        // takes their direct writes away unless a decision keeps them.
        let choice = match (&best.kind, &table.owned.owner) {
            (ResolutionKind::Delegate, Some(owner)) => format!("delegate:{owner}"),
            _ => best.kind.as_str().to_string(),
        };
        let decision = kept.remove(&subject).unwrap_or_else(|| Decision {
            subject: subject.clone(),
            choice,
            reason: best.proposal.clone(),
            rows: None,
        });
        out.push(decision);
    }
    // Decisions about other subjects (made by later phases or by hand) stay.
    out.extend(kept.into_values());
    out
}

/// A table whose ownership is decided `table-split` gets a `[[splits]]` entry per
/// other writer for `carve split` to carry out: the columns only that writer
/// writes, into the part discover named, in that writer's home domain (the one
/// holding most of the tables it writes; the table's own when that is it).
/// Skipped when a column is written by more than one writer (someone must give it
/// up first). Splits already in the plan stay as they are: they may be the user's.
fn splits(discovery: &Discovery, existing: Option<&Plan>, decisions: &[Decision]) -> Vec<Split> {
    let mut out: Vec<Split> = existing.map(|p| p.splits.clone()).unwrap_or_default();
    for table in &discovery.tables {
        let chosen = decisions.iter().any(|d| {
            d.subject == crate::plan::choices::ownership_subject(&table.name)
                && d.choice == ResolutionKind::TableSplit.as_str()
        });
        let Some(split) = table
            .owned
            .split
            .as_ref()
            .filter(|s| s.contested.is_empty())
        else {
            continue;
        };
        if !chosen || out.iter().any(|s| s.table == table.name) {
            continue;
        }
        for part in split.parts.iter().skip(1).filter(|p| !p.columns.is_empty()) {
            let home =
                home_domain(discovery, &part.service, &table.domain).filter(|d| *d != table.domain);
            out.push(Split {
                table: table.name.clone(),
                part: part.table.clone(),
                domain: home,
                columns: part.columns.clone(),
            });
        }
    }
    out
}

/// The domain holding most of the tables `service` writes, common tables (an
/// audit log everyone writes) left out; on a tie, `prefer` (the split table's own).
fn home_domain(discovery: &Discovery, service: &str, prefer: &str) -> Option<String> {
    let mut written: BTreeMap<&str, usize> = BTreeMap::new();
    for t in discovery.tables.iter().filter(|t| {
        t.owned.ownership != analysis::ownership::Ownership::Common
            && t.owned.writers.iter().any(|w| w == service)
    }) {
        *written.entry(t.domain.as_str()).or_default() += 1;
    }
    written
        .into_iter()
        .max_by(|a, b| {
            a.1.cmp(&b.1)
                .then_with(|| (a.0 == prefer).cmp(&(b.0 == prefer)))
                .then_with(|| b.0.cmp(a.0))
        })
        .map(|(d, _)| d.to_string())
}

/// What the new proposal changes against the plan's previous one.
fn changes_since(plan: &Plan, discovery: &Discovery) -> Vec<String> {
    let old: BTreeMap<&str, &str> = plan
        .domains
        .iter()
        .flat_map(|d| d.tables.iter().map(move |t| (t.as_str(), d.name.as_str())))
        .collect();
    let new: BTreeMap<&str, &str> = discovery
        .domains
        .iter()
        .flat_map(|d| d.tables.iter().map(move |t| (t.as_str(), d.name.as_str())))
        .collect();
    let mut changes = Vec::new();
    for d in &discovery.domains {
        if !plan.domains.iter().any(|p| p.name == d.name) {
            changes.push(format!("domain added: {}", d.name));
        }
    }
    for d in &plan.domains {
        if !discovery.domains.iter().any(|n| n.name == d.name) {
            changes.push(format!("domain removed: {}", d.name));
        }
    }
    for (table, domain) in &new {
        match old.get(table) {
            Some(before) if before != domain => {
                changes.push(format!("table {table} moved from {before} to {domain}"))
            }
            None => changes.push(format!("table {table} is new, in {domain}")),
            _ => {}
        }
    }
    for table in old.keys().filter(|t| !new.contains_key(*t)) {
        changes.push(format!("table {table} is gone"));
    }
    changes
}
