//! `carve undo PHASE`: run a phase's recorded steps backwards, each one's undo, last
//! first, skipping what is already undone and checkpointing the journal as apply does.

use crate::cli::{Settings, UndoArgs};
use crate::commands::phase;
use crate::engine::executor::Planned;
use crate::engine::undo_steps;
use crate::exit;
use crate::plan::{PhaseId, StepStatus};

pub async fn run(settings: &Settings, args: &UndoArgs) -> anyhow::Result<u8> {
    let out = &settings.out;
    let name = args.phase.as_str();
    if args.domain.is_some() != (name == crate::plan::phase_names::MOVE) {
        anyhow::bail!("--domain names the domain whose move to undo; assign and restrict are undone for every domain at once");
    }
    // A phase run per domain (move) is undone per domain.
    let id = PhaseId::new(name, args.domain.as_deref());
    let plan = phase::load_plan(&settings.plan_path)?;
    // A misspelt domain is an error, not "nothing to undo".
    if let Some(domain) = &args.domain {
        phase::find_domain(settings, &plan, domain)?;
    }
    match plan.phase(&id) {
        None => {
            out.line(&format!("{id} was never applied: nothing to undo"));
            return Ok(exit::SUCCESS);
        }
        Some(r) if r.is_undone() => {
            out.line(&format!("{id} is already undone: nothing to do"));
            return Ok(exit::SUCCESS);
        }
        Some(_) => {}
    }
    // A cut-over domain's move is not undone: its clients write on its server.
    if let Some(domain) = &args.domain {
        let cutover = plan
            .domains
            .iter()
            .find(|d| &d.name == domain)
            .and_then(|d| d.cutover.as_ref());
        if let Some(c) = cutover {
            if !c.settled_on(crate::plan::Side::Source) {
                anyhow::bail!(
                    "the clients of {domain} are switched (or being switched) to its server: undoing the move would lose their writes. `carve rollback --domain {domain}` brings them back first (or `carve cutover --domain {domain} --abort` cancels a switch under way)"
                );
            }
        }
    }
    // Phases build on each other: a later one still in place is undone first.
    let later = crate::plan::phase_names::ORDER
        .iter()
        .skip_while(|p| **p != name)
        .skip(1)
        .find_map(|p| plan.phases.iter().find(|r| r.name == *p && !r.is_undone()));
    if let Some(later) = later {
        let id = PhaseId::new(&later.name, later.domain.as_deref());
        let command = match &later.domain {
            Some(d) => format!(
                "carve undo {} --domain {}",
                later.name,
                crate::sql::psql_argument(d)
            ),
            None => format!("carve undo {}", later.name),
        };
        anyhow::bail!("{id} builds on {name} and is still in place: run `{command}` first");
    }
    let mut ctx = match phase::open(settings, &args.apply, plan).await? {
        Ok(ctx) => ctx,
        Err(code) => return Ok(code),
    };
    if let Some(code) = phase::ready(settings, &ctx, &id, args.apply.dry_run) {
        return Ok(code);
    }
    let record = ctx.plan.phase(&id).expect("checked above").clone();
    let reversed = undo_steps(&record.steps);
    if let Some(code) =
        phase::connect_targets(settings, &mut ctx, &reversed, args.apply.dry_run).await?
    {
        return Ok(code);
    }
    if args.apply.dry_run {
        return phase::dry_run(settings, &ctx, &format!("undo {id}"), &reversed).await;
    }
    let question = format!(
        "Undo {id}: run {} step(s) backwards on database {}?",
        reversed.len(),
        ctx.catalog.server.database
    );
    if !phase::confirm(settings, &question)? {
        out.warn("not undone; nothing was changed");
        return Ok(exit::ERROR);
    }
    let planned: Vec<Planned> = record
        .steps
        .iter()
        .rev()
        .zip(&reversed)
        .map(|(original, step)| Planned {
            journal_id: &original.id,
            step,
        })
        .collect();
    let (ran, skipped) = match phase::apply(
        settings,
        &mut ctx,
        &id,
        &planned,
        StepStatus::Undone,
        &phase::policy(&args.apply),
    )
    .await?
    {
        Ok(counts) => counts,
        Err(code) => return Ok(code),
    };
    let now = phase::record_result(&mut ctx).await?;
    let record = ctx.plan.phase_mut(&id).expect("still there");
    record.after = None;
    record.transition(crate::plan::PhaseEvent::CompleteUndo)?;
    let same = now.digest == record.before;
    ctx.plan.save(&settings.plan_path)?;
    out.line(&format!(
        "undo {id}: done ({ran} step(s) undone, {skipped} already undone)."
    ));
    if !same {
        out.warn(&format!(
            "the catalog is not exactly as it was before {id} (fingerprint {} now): something else changed it meanwhile; `carve inspect` shows the catalog",
            now.short()
        ));
    }
    Ok(exit::SUCCESS)
}
