//! `carve status`: what the plan file says has been done, phase by phase and step by
//! step (done, pending, failed with its error, undone). Reads only the plan.

use serde::Serialize;

use crate::cli::Settings;
use crate::commands::phase::load_plan;
use crate::exit;
use crate::plan::{PhaseState, StepStatus};

#[derive(Serialize)]
struct PhaseReport<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    domain: Option<&'a str>,
    state: PhaseState,
    steps: Vec<StepReport<'a>>,
}

#[derive(Serialize)]
struct StepReport<'a> {
    id: &'a str,
    description: &'a str,
    status: StepStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    at: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

pub fn run(settings: &Settings) -> anyhow::Result<u8> {
    let plan = load_plan(&settings.plan_path)?;
    let phases: Vec<PhaseReport> = plan
        .phases
        .iter()
        .map(|r| PhaseReport {
            name: &r.name,
            domain: r.domain.as_deref(),
            state: r.state,
            steps: r
                .steps
                .iter()
                .map(|s| {
                    let entry = r.entry(&s.id);
                    StepReport {
                        id: &s.id,
                        description: &s.description,
                        status: r.status(&s.id),
                        at: entry.map(|e| e.at.as_str()),
                        error: entry.and_then(|e| e.error.as_deref()),
                    }
                })
                .collect(),
        })
        .collect();
    if settings.out.is_json() {
        #[derive(Serialize)]
        struct Report<'a> {
            plan: String,
            domains: usize,
            phases: &'a [PhaseReport<'a>],
        }
        settings.out.json(
            "status",
            &Report {
                plan: settings.plan_path.display().to_string(),
                domains: plan.domains.len(),
                phases: &phases,
            },
        );
        return Ok(exit::SUCCESS);
    }
    let out = &settings.out;
    out.line(&format!(
        "plan {}: {} domain(s), discovered",
        settings.plan_path.display(),
        plan.domains.len()
    ));
    if phases.is_empty() {
        out.line("no phase has changed the database yet; next: carve assign --dry-run");
    }
    for p in &phases {
        let count = |status| p.steps.iter().filter(|s| s.status == status).count();
        let name = match p.domain {
            Some(d) => format!("{} {}", p.name, crate::sql::display_ident(d)),
            None => p.name.to_string(),
        };
        out.line(&format!(
            "{name}: {} ({} step(s): {} done, {} pending, {} failed, {} undone)",
            p.state.word(),
            p.steps.len(),
            count(StepStatus::Done),
            count(StepStatus::Pending),
            count(StepStatus::Failed),
            count(StepStatus::Undone)
        ));
        for s in &p.steps {
            let word = match s.status {
                StepStatus::Done => "done   ",
                StepStatus::Pending => "pending",
                StepStatus::Failed => "FAILED ",
                StepStatus::Undone => "undone ",
            };
            let at = s.at.map(|a| format!("  ({a})")).unwrap_or_default();
            out.line(&format!("  {word} {}{at}", s.description));
            if let Some(error) = s.error {
                out.line(&format!("          error: {error}"));
            }
        }
    }
    Ok(exit::SUCCESS)
}
