//! `carve split`: carry out the plan's `[[splits]]`, each jointly written table split
//! into one table per writer, online, behind the old name. Planning is
//! `phases::split` (pure); this file checks where the journey stands, asks, records
//! and runs it through the engine.

use crate::cli::{ApplyArgs, Settings};
use crate::commands::phase;
use crate::exit;
use crate::phases::split::{self, PHASE};
use crate::plan::{phase_names, PhaseRecord};

pub async fn run(settings: &Settings, args: &ApplyArgs) -> anyhow::Result<u8> {
    let out = &settings.out;
    let plan = phase::load_plan(&settings.plan_path)?;
    if plan.splits.is_empty() {
        anyhow::bail!(
            "{} has no [[splits]]: name the table, the part and the columns that go to it (see `carve split --help`)",
            settings.plan_path.display()
        );
    }
    if !plan
        .phase(phase_names::ASSIGN)
        .is_some_and(|r| r.is_applied())
    {
        anyhow::bail!(
            "split works on the domain schemas assign makes: run `carve assign` first (carve status shows the phases)"
        );
    }
    // restrict grants what it sees; a split after it would leave grants for columns
    // that moved.
    if plan
        .phase(phase_names::RESTRICT)
        .is_some_and(|r| !r.is_undone())
    {
        anyhow::bail!(
            "split comes before restrict, which grants each service what it writes of each part: `carve undo restrict` first, then split, then restrict again"
        );
    }
    if let Some(moved) = plan
        .phases
        .iter()
        .find(|r| r.name == phase_names::MOVE && !r.is_undone())
    {
        anyhow::bail!(
            "{} is in place: a split changes the tables a move copies, so it comes before any move",
            crate::plan::PhaseId::new(&moved.name, moved.domain.as_deref())
        );
    }
    let mut ctx = match phase::open(settings, args, plan).await? {
        Ok(ctx) => ctx,
        Err(code) => return Ok(code),
    };
    if let Some(code) = phase::ready(settings, &ctx, &PHASE.into(), args.dry_run) {
        return Ok(code);
    }
    let recorded = ctx.plan.steps_in_place(PHASE);
    let (steps, fresh) = match recorded {
        Some(steps) => (steps, None),
        None => match split::plan(&ctx.plan, &ctx.catalog) {
            Ok(planned) => (planned.steps.clone(), Some(planned)),
            Err(errors) => {
                return Ok(phase::refused(
                    settings,
                    &errors,
                    errors.iter().cloned(),
                    &format!(
                        "the split cannot be planned ({} problem(s) above); nothing was changed",
                        errors.len()
                    ),
                ));
            }
        },
    };
    if args.dry_run {
        return phase::dry_run(settings, &ctx, PHASE, &steps).await;
    }
    let question = format!(
        "Split {} table(s) of database {} ({} step(s)) while services keep writing? Each step is checkpointed and `carve undo split` puts the tables back",
        ctx.plan.splits.len(),
        ctx.catalog.server.database,
        steps.len()
    );
    if !phase::confirm(settings, &question)? {
        out.warn("not applied; nothing was changed");
        return Ok(exit::ERROR);
    }
    if let Some(planned) = fresh {
        ctx.plan.phases.retain(|p| p.name != PHASE);
        ctx.plan.phases.push(PhaseRecord::planned(
            PHASE.into(),
            ctx.fingerprint.digest.clone(),
            planned.hints,
            planned.steps,
        ));
    }
    let (ran, skipped) =
        match phase::apply_phase(settings, &mut ctx, &PHASE.into(), &steps, args).await? {
            Ok(counts) => counts,
            Err(code) => return Ok(code),
        };
    let parts: Vec<String> = ctx
        .plan
        .splits
        .iter()
        .map(|s| format!("{} → {}", s.table, s.part))
        .collect();
    out.line(&format!(
        "split: done ({ran} step(s) applied, {skipped} already in place): {}. Clients keep using the old names, now views over each table and its parts; `carve undo split` puts the columns back.",
        parts.join(", ")
    ));
    Ok(exit::SUCCESS)
}
