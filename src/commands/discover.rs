//! `carve discover`: propose data domains and table ownership from the catalog and the
//! workload, print the report, and write the proposal into the plan file.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use serde::Serialize;

use crate::analysis::{self, Discovery, Options};
use crate::catalog::fingerprint::Fingerprint;
use crate::catalog::reader::read_catalog;
use crate::catalog::Catalog;
use crate::cli::{DiscoverArgs, Settings};
use crate::exit;
use crate::plan::{Decision, Domain, Plan, Service, Source};
use crate::workload::Workload;

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
    // Read the workload first: an unreadable path stops everything before any work.
    let workload = load_workload(args)?;
    let existing = Plan::load_if_exists(&settings.plan_path)?;
    if let Some(plan) = &existing {
        if !plan.journal.is_empty() {
            bail!(
                "{} already records steps of later phases; re-running discover would move tables under them. Undo those phases first, or use --plan for a new file",
                settings.plan_path.display()
            );
        }
    }

    let (spec, clients) = super::connect_source(&args.source, super::CATALOG_CONNECTIONS).await?;
    let catalog = read_catalog(&clients).await?;
    drop(clients);
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

    let pins = existing
        .as_ref()
        .map(|p| resolve_pins(p, &catalog, &settings.plan_path))
        .transpose()?
        .unwrap_or_default();
    let options = Options {
        resolution: args.resolution,
        pins,
        ..Options::default()
    };
    let discovery = analysis::discover(&catalog, workload.as_ref(), &options);

    if let Some(format) = args.graph {
        print!("{}", crate::ui::graph::render(&discovery, format));
    }

    let changes = existing
        .as_ref()
        .map(|p| changes_since(p, &discovery))
        .unwrap_or_default();
    let source = Source {
        conninfo: spec.reference(),
        database: catalog.server.database.clone(),
    };
    build_plan(source, &catalog, &discovery, existing.as_ref()).save(&settings.plan_path)?;

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
        .map(|d| Domain {
            name: d.name.clone(),
            tables: d.tables.clone(),
        })
        .collect();
    plan.services = discovery
        .services
        .iter()
        .map(|s| Service {
            name: s.clone(),
            roles: Vec::new(),
        })
        .collect();
    plan.decisions = decisions(discovery, existing);
    plan.pins = existing.map(|p| p.pins.clone()).unwrap_or_default();
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
        });
    }
    Ok(pins)
}

fn load_workload(args: &DiscoverArgs) -> anyhow::Result<Option<Workload>> {
    if args.workload.is_empty() {
        return Ok(None);
    }
    let mut workload = Workload::default();
    for path in &args.workload {
        if !path.exists() {
            bail!("--workload {}: no such file or directory", path.display());
        }
        workload.extend(Workload::from_sql_path(path));
    }
    if workload.statements.is_empty() {
        let why: Vec<String> = workload
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.origin, p.message))
            .collect();
        return Err(anyhow::anyhow!(
            "the workload holds no statements{}",
            if why.is_empty() {
                String::new()
            } else {
                format!(":\n  {}", why.join("\n  "))
            }
        ))
        .context("reading --workload");
    }
    Ok(Some(workload))
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
        let subject = format!("ownership of {}", table.name);
        let decision = kept.remove(&subject).unwrap_or_else(|| Decision {
            subject: subject.clone(),
            choice: serde_json::to_value(best.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            reason: best.proposal.clone(),
        });
        out.push(decision);
    }
    // Decisions about other subjects (made by later phases or by hand) stay.
    out.extend(kept.into_values());
    out
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
