//! `carve inspect`: read the catalog, summarize it, and say whether the plan is current.

use std::path::Path;

use serde::Serialize;

use crate::catalog::fingerprint::Fingerprint;
use crate::catalog::reader::read_catalog;
use crate::catalog::Catalog;
use crate::cli::{InspectArgs, Settings};
use crate::exit;
use crate::plan::Plan;
use crate::ui::inspect::{findings, render, PlanState};

#[derive(Serialize)]
struct JsonReport<'a> {
    source: &'a str,
    fingerprint: &'a str,
    findings: Vec<String>,
    plan: &'a PlanState,
    catalog: &'a Catalog,
}

pub async fn run(settings: &Settings, args: &InspectArgs) -> anyhow::Result<u8> {
    let (spec, clients) = super::connect_source(&args.source, super::CATALOG_CONNECTIONS).await?;
    let catalog = read_catalog(&clients).await?;
    drop(clients);
    let fingerprint = Fingerprint::of(&catalog);
    let plan = compare_with_plan(&settings.plan_path, &catalog)?;
    let source = spec.reference();
    if let PlanState::Stale { changes, .. } = &plan {
        settings.out.error(&format!(
            "{} is stale: the database changed in {} place(s) since the plan was made (listed)",
            settings.plan_path.display(),
            changes.len()
        ));
        settings
            .out
            .name_objects(changes.iter().map(ToString::to_string));
        settings.out.failing(exit::STALE_PLAN);
    }
    if settings.out.is_json() {
        settings.out.json(
            "inspect",
            &JsonReport {
                source: &source,
                fingerprint: &fingerprint.digest,
                findings: findings(&catalog),
                plan: &plan,
                catalog: &catalog,
            },
        );
    } else {
        print!("{}", render(&catalog, &fingerprint, &source, &plan));
    }
    Ok(match plan {
        PlanState::Stale { .. } => exit::STALE_PLAN,
        _ => exit::SUCCESS,
    })
}

/// Loads the plan file, if any, and compares its fingerprint with the catalog's. A plan
/// that cannot be read is an error: carve never guesses around a damaged plan.
pub fn compare_with_plan(path: &Path, catalog: &Catalog) -> anyhow::Result<PlanState> {
    let shown = path.display().to_string();
    let Some(plan) = Plan::load_if_exists(path)? else {
        return Ok(PlanState::Missing { path: shown });
    };
    if plan.source.database != catalog.server.database {
        return Ok(PlanState::OtherDatabase {
            path: shown,
            database: plan.source.database,
        });
    }
    // The plan counts the roles it names, too.
    let fingerprint = plan.fingerprint_of(catalog);
    if plan.fingerprint.digest == fingerprint.digest {
        return Ok(PlanState::Current { path: shown });
    }
    Ok(PlanState::Stale {
        path: shown,
        changes: plan.fingerprint.diff(&fingerprint),
    })
}
