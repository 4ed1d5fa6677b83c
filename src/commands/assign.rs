//! `carve assign`: move each domain's tables into the domain's schema, with
//! compatibility views in their old places. Planning is `phases::assign` (pure); this
//! file gates, asks, records and runs it through the engine.

use crate::cli::{ApplyArgs, Settings};
use crate::commands::phase::{self, Context};
use crate::exit;
use crate::phases::assign::{self, AssignPlan, PHASE};
use crate::plan::{Decision, GateHints, PhaseRecord};

pub async fn run(settings: &Settings, args: &ApplyArgs) -> anyhow::Result<u8> {
    let out = &settings.out;
    let started = std::time::Instant::now();
    let plan = phase::load_plan(&settings.plan_path)?;
    phase::timing("load plan", started);
    let mut ctx = match phase::open(settings, args, plan).await? {
        Ok(ctx) => ctx,
        Err(code) => return Ok(code),
    };
    if ctx.plan.domains.is_empty() {
        anyhow::bail!(
            "{} has no domains: run `carve discover` first",
            settings.plan_path.display()
        );
    }
    if let Some(code) = phase::ready(settings, &ctx, &PHASE.into(), args.dry_run) {
        return Ok(code);
    }

    // A phase under way (or done) keeps the steps it was planned with.
    let recorded = ctx.plan.steps_in_place(PHASE);
    let (steps, fresh) = match recorded {
        Some(steps) => (steps, None),
        None => {
            let started = std::time::Instant::now();
            let planned = assign::plan(&ctx.plan, &ctx.catalog);
            phase::timing("plan steps", started);
            let planned = match planned {
                Ok(p) => p,
                Err(errors) => {
                    for e in &errors {
                        out.error(e);
                    }
                    anyhow::bail!(
                        "assign cannot be planned ({} problem(s) above); nothing was changed",
                        errors.len()
                    );
                }
            };
            report_objects(settings, &planned, args.dry_run);
            let missing = planned.missing().len();
            if missing > 0 && !settings.assume_yes {
                let accepted = !args.dry_run
                    && phase::interactive(settings)
                    && phase::confirm(
                        settings,
                        &format!(
                            "Record the defaults shown for these {missing} object(s) in the plan?"
                        ),
                    )?;
                if !accepted {
                    if args.dry_run {
                        phase::dry_run(settings, &ctx, PHASE, &planned.steps).await?;
                    }
                    out.error(&format!(
                        "{missing} object(s) have no decision in {} (each is listed with its choices and default): record one per object ([[decisions]] subject = \"…\", choice = \"…\") or run with --yes to accept the defaults shown. Nothing was changed.",
                        settings.plan_path.display()
                    ));
                    out.name_objects(planned.missing().iter().map(|o| o.subject.clone()));
                    return Ok(exit::GATE_NOT_MET);
                }
            }
            (planned.steps.clone(), Some(planned))
        }
    };

    if args.dry_run {
        return phase::dry_run(settings, &ctx, PHASE, &steps).await;
    }
    if steps.is_empty() {
        out.line("assign: nothing to do (every domain's tables are already in its schema)");
        return Ok(exit::SUCCESS);
    }
    let question = format!(
        "Apply {} assign step(s) to database {}? Each is checkpointed and `carve undo assign` reverses them",
        steps.len(),
        ctx.catalog.server.database
    );
    if !phase::confirm(settings, &question)? {
        out.warn("not applied; nothing was changed");
        return Ok(exit::ERROR);
    }
    // Recorded here, saved (with its state moved to running) just before the first
    // step runs.
    if let Some(planned) = fresh {
        record_phase(&mut ctx, planned);
    }

    let (ran, skipped) =
        match phase::apply_phase(settings, &mut ctx, &PHASE.into(), &steps, args).await? {
            Ok(counts) => counts,
            Err(code) => return Ok(code),
        };
    out.line(&format!(
        "assign: done ({ran} step(s) applied, {skipped} already in place). Services keep using the old names through compatibility views; `carve undo assign` reverses it."
    ));
    Ok(exit::SUCCESS)
}

/// Writes the phase into the plan before its first step runs: the steps, what they
/// rename, and the defaults accepted with `--yes`.
fn record_phase(ctx: &mut Context, planned: AssignPlan) {
    for object in planned.missing() {
        ctx.plan.decisions.push(Decision {
            subject: object.subject.clone(),
            choice: object.default.clone(),
            reason: format!("default accepted (--yes or at the prompt): {}", object.why),
            rows: None,
        });
    }
    ctx.plan.phases.retain(|p| p.name != PHASE);
    ctx.plan.phases.push(PhaseRecord::planned(
        PHASE.into(),
        ctx.fingerprint.digest.clone(),
        GateHints {
            renames: planned.renames,
            creates_schemas: planned.creates_schemas,
            privileges: false,
            touches: Vec::new(),
        },
        planned.steps,
    ));
}

/// The objects that cross domains or are placed by decision, with the choice taken.
fn report_objects(settings: &Settings, planned: &AssignPlan, dry_run: bool) {
    if planned.objects.is_empty() || settings.out.is_json() {
        return;
    }
    if planned.missing().is_empty() && !dry_run {
        settings.out.progress(&format!(
            "{} object(s) placed by the plan's decisions (--dry-run lists them)",
            planned.objects.len()
        ));
        return;
    }
    eprintln!(
        "Objects assign places by decision ({}):",
        planned.objects.len()
    );
    for o in &planned.objects {
        let state = match &o.chosen {
            Some(c) => format!("decided: {c}"),
            None => format!("NO DECISION (default: {})", o.default),
        };
        eprintln!(
            "  - {}: {state}\n      {}; choices: {}",
            o.subject,
            o.why,
            o.choices.join(", ")
        );
    }
}
