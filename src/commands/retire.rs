//! `carve retire --domain D`: after a grace period on its own server, a cut-over
//! domain's way back is taken down and its old schema on the source renamed;
//! `--drop` later drops that schema. Steps are `phases::cutover::retire` (pure).

use std::time::{Duration, SystemTime};

use crate::catalog::facts::dependents_outside;
use crate::cli::{RetireArgs, Settings};
use crate::commands::move_domain::{default_password_file, link_to, prove_services};
use crate::commands::phase;
use crate::conn::{ConnSpec, Environment};
use crate::engine::Target;
use crate::exit;
use crate::phases::cutover::replica;
use crate::phases::cutover::retire;
use crate::plan::phase_names::{DROP_RETIRED, RETIRE};
use crate::plan::{now_rfc3339, PhaseId, Plan, Retired, Side};
use crate::sql::display_ident;

pub async fn run(settings: &Settings, args: &RetireArgs) -> anyhow::Result<u8> {
    let out = &settings.out;
    let plan = phase::load_plan(&settings.plan_path)?;
    let domain = args.domain.clone();
    let position = phase::find_domain(settings, &plan, &domain)?;
    let Some(cutover) = plan.domains[position].cutover.clone() else {
        anyhow::bail!("{domain} was never cut over: retire comes after `carve cutover`");
    };
    if !cutover.settled_on(Side::Server) {
        anyhow::bail!(
            "the clients of {domain} are not settled on its own server (see `carve status --domain {domain}`): retire takes down the way back, so only a finished cut-over is retired"
        );
    }
    let retire_id = PhaseId::new(RETIRE, Some(&domain));
    let retired_done = plan.phase(&retire_id).is_some_and(|r| r.is_applied());
    if args.drop {
        let Some(retired) = cutover.retired.clone().filter(|_| retired_done) else {
            anyhow::bail!(
                "{domain} is not retired yet: `carve retire --domain {domain}` renames its old schema first, and --drop drops it later"
            );
        };
        if retired.dropped {
            out.line(&format!(
                "{} was dropped already: nothing to do",
                retired.schema
            ));
            return Ok(exit::SUCCESS);
        }
        return drop(settings, args, plan, &domain, &retired).await;
    }
    if retired_done {
        let name = cutover.retired.map(|r| r.schema).unwrap_or_default();
        out.line(&format!(
            "{domain} is retired already (its old schema is {}); `carve retire --domain {domain} --drop` drops it",
            display_ident(&name)
        ));
        return Ok(exit::SUCCESS);
    }
    // The grace period: until it is over, rollback stays possible.
    let since = humantime::parse_rfc3339_weak(&cutover.since).map_err(|_| {
        anyhow::anyhow!(
            "the plan's cut-over time {:?} cannot be read",
            cutover.since
        )
    })?;
    let age = SystemTime::now().duration_since(since).unwrap_or_default();
    if age < args.after {
        out.error(&format!(
            "grace: {domain} was cut over {} ago, less than --after {}; until retire, `carve rollback --domain {domain}` can still take its clients back",
            humantime::format_duration(Duration::from_secs(age.as_secs())),
            humantime::format_duration(args.after)
        ));
        out.name_objects(["grace".to_string()]);
        out.failing(exit::GATE_NOT_MET);
        return Ok(exit::GATE_NOT_MET);
    }
    let Some(server) = plan.domains[position].server.clone() else {
        anyhow::bail!("the plan records no server for {domain}");
    };
    let server_spec = ConnSpec::resolve(&server, &Environment::from_process())?;
    let password_file = args
        .password_file
        .clone()
        .unwrap_or_else(|| default_password_file(&settings.plan_path));
    let to_server = link_to(
        &server_spec,
        &server_spec.dbname,
        None,
        "--reverse-conninfo",
        &password_file,
    )?;
    // A retire under way keeps its steps (and the name it renames to).
    let recorded = plan
        .phase(&retire_id)
        .filter(|r| r.is_in_flight())
        .map(|r| r.steps.clone());
    let name = match (&recorded, &cutover.retired) {
        (Some(_), Some(r)) => r.schema.clone(),
        _ => {
            let time: String = now_rfc3339().chars().filter(char::is_ascii_digit).collect();
            retire::retired_name(&domain, &time)
        }
    };
    let mut ctx = match phase::open(settings, &args.apply, plan).await? {
        Ok(ctx) => ctx,
        Err(code) => return Ok(code),
    };
    let started = recorded.is_some();
    let (steps, kept) = match recorded {
        Some(steps) => {
            let kept = cutover.retired.map(|r| r.kept).unwrap_or_default();
            (steps, kept)
        }
        None => {
            if let Some(code) = phase::gate(settings, &ctx, &retire_id) {
                return Ok(code);
            }
            let refusals = crate::phases::move_domain::split_across::retire_refusals(
                &ctx.plan,
                &ctx.catalog,
                &domain,
            );
            if !refusals.is_empty() {
                return Ok(phase::refused(
                    settings,
                    &refusals,
                    refusals.iter().cloned(),
                    &format!(
                        "{domain} cannot be retired yet: {} reason(s) above. Nothing was changed; {domain} keeps its way back (`carve rollback --domain {domain}`)",
                        refusals.len()
                    ),
                ));
            }
            let replicas = phase::replicated_reads(settings, &ctx, "kept on the source", |w| {
                replica::replicas(&ctx.plan, &ctx.catalog, w, &domain)
            })
            .await?;
            let kept = replicas.iter().map(|r| r.table.to_string()).collect();
            (
                retire::steps(&ctx.catalog, &domain, &to_server, &name, &replicas),
                kept,
            )
        }
    };
    if let Some(code) =
        phase::connect_targets(settings, &mut ctx, &steps, args.apply.dry_run).await?
    {
        return Ok(code);
    }
    if !started {
        if let Some(code) = prove_staying(settings, &ctx, &domain, &steps, &args.apply).await? {
            return Ok(code);
        }
    }
    if args.apply.dry_run {
        return phase::dry_run(settings, &ctx, &retire_id.to_string(), &steps).await;
    }
    let dropped: Vec<&str> = steps
        .iter()
        .filter(|s| s.id.starts_with("drop view") || s.id.starts_with("drop foreign key"))
        .map(|s| s.id.as_str())
        .collect();
    let question = format!(
        "Retire {domain}: {}, so `carve rollback` is no longer possible; {}; the old schema becomes {}. Go on?",
        if kept.is_empty() {
            "the stream back is removed".to_string()
        } else {
            format!(
                "the stream back is narrowed to the columns other services read of {}",
                kept.join(", ")
            )
        },
        if dropped.is_empty() {
            "nothing outside the schema reads it".to_string()
        } else {
            format!("these go: {}", dropped.join(", "))
        },
        display_ident(&name)
    );
    if !phase::confirm(settings, &question)? {
        out.warn("not started; nothing was changed");
        return Ok(exit::ERROR);
    }
    let d = ctx
        .plan
        .domains
        .iter_mut()
        .find(|d| d.name == domain)
        .expect("checked above");
    if let Some(c) = d.cutover.as_mut() {
        c.retired = Some(Retired {
            at: now_rfc3339(),
            schema: name.clone(),
            dropped: false,
            kept: kept.clone(),
        });
    }
    phase::record_planned(
        &mut ctx.plan,
        &retire_id,
        ctx.fingerprint.digest.clone(),
        &steps,
    );
    match phase::apply_phase(settings, &mut ctx, &retire_id, &steps, &args.apply).await? {
        Ok(_) => {}
        Err(code) => return Ok(code),
    }
    out.line(&format!(
        "retired {domain}: the way back is gone, {} view(s) and foreign key(s) that read the old tables were dropped, and the old schema is {} on the source (fenced). `carve retire --domain {domain} --drop` drops it when you are sure.",
        dropped.len(),
        display_ident(&name)
    ));
    if !kept.is_empty() {
        out.line(&format!(
            "kept on the source for the services that read them (replicate): {}, read-only, the columns they read kept current from {domain}'s server (`carve status --domain {domain}` shows the lag)",
            kept.join(", ")
        ));
    }
    Ok(exit::SUCCESS)
}

/// The proof before retire: every statement of the services that stay on the
/// source, prepared and explained as its role after retire's steps on the source,
/// in a transaction rolled back. A statement that would fail and no decision asks
/// for (a column not kept, a view or table that goes) refuses the retire, with
/// nothing changed. Without restrict there are no service roles to prove as.
async fn prove_staying(
    settings: &Settings,
    ctx: &phase::Context,
    domain: &str,
    steps: &[crate::engine::Step],
    apply: &crate::cli::ApplyArgs,
) -> anyhow::Result<Option<u8>> {
    let out = &settings.out;
    let plan = &ctx.plan;
    let on_source = |_: &str, home: &str| {
        home != domain
            && !plan.domains.iter().any(|d| {
                d.name == home
                    && d.cutover
                        .as_ref()
                        .is_some_and(|c| c.settled_on(Side::Server))
            })
    };
    // What changes what the services' statements find: the views, keys and schema on
    // the source, not the stream back's teardown ("retire: …", which touches no
    // relation) nor what a transaction cannot hold (the stream's refresh).
    let on_the_source: Vec<&crate::engine::Step> = steps
        .iter()
        .filter(|s| s.target == Target::Source && !s.id.starts_with("retire: "))
        .filter(|s| s.sql_action().is_some_and(|a| a.transactional))
        .collect();
    let Some(results) = prove_services(
        settings,
        ctx,
        ("the source", &Target::Source),
        ("", &on_the_source),
        on_source,
        apply.lock_timeout,
    )
    .await?
    else {
        return Ok(None);
    };
    out.line(&format!(
        "on the source after retire, as the services that stay there run:{}",
        crate::ui::restrict::render_proof(&results)
    ));
    let unexpected: Vec<_> = results.iter().filter(|r| r.is_unexpected()).collect();
    if unexpected.is_empty() {
        return Ok(None);
    }
    out.error(&format!(
        "retire of {domain} would break {} statement(s) of the services that stay on the source, and no decision asks for it (each listed above with its error): a column they read that would not be kept, or a view or table that goes. Decide `replicate` for those reads (the columns they name are then kept), or `api` if they stop. Nothing was changed",
        unexpected.len()
    ));
    out.name_objects(
        unexpected
            .iter()
            .map(|r| format!("{} ({}): {}", r.origin, r.service, r.sql)),
    );
    out.failing(exit::GATE_NOT_MET);
    Ok(Some(exit::GATE_NOT_MET))
}

/// `--drop`: refused while anything outside the retired schema depends on it.
async fn drop(
    settings: &Settings,
    args: &RetireArgs,
    plan: Plan,
    domain: &str,
    retired: &Retired,
) -> anyhow::Result<u8> {
    let out = &settings.out;
    let id = PhaseId::new(DROP_RETIRED, Some(domain));
    let mut ctx = match phase::open(settings, &args.apply, plan).await? {
        Ok(ctx) => ctx,
        Err(code) => return Ok(code),
    };
    let dependents = dependents_outside(&ctx.reader, &retired.schema).await?;
    if !dependents.is_empty() {
        for d in &dependents {
            out.error(&format!(
                "{d} depends on {}",
                display_ident(&retired.schema)
            ));
        }
        out.name_objects(dependents.iter().cloned());
        out.warn("DROP SCHEMA … CASCADE would drop these with it: drop or change them first. Nothing was changed");
        out.failing(exit::GATE_NOT_MET);
        return Ok(exit::GATE_NOT_MET);
    }
    let steps = vec![retire::drop_retired(&retired.schema)];
    if args.apply.dry_run {
        return phase::dry_run(settings, &ctx, &id.to_string(), &steps).await;
    }
    let question = format!(
        "Drop schema {} with everything in it from the source? This cannot be undone",
        display_ident(&retired.schema)
    );
    if !phase::confirm(settings, &question)? {
        out.warn("not dropped; nothing was changed");
        return Ok(exit::ERROR);
    }
    phase::record_planned(&mut ctx.plan, &id, ctx.fingerprint.digest.clone(), &steps);
    match phase::apply_phase(settings, &mut ctx, &id, &steps, &args.apply).await? {
        Ok(_) => {}
        Err(code) => return Ok(code),
    }
    if let Some(r) = ctx
        .plan
        .domains
        .iter_mut()
        .find(|d| d.name == domain)
        .and_then(|d| d.cutover.as_mut())
        .and_then(|c| c.retired.as_mut())
    {
        r.dropped = true;
    }
    ctx.plan.save(&settings.plan_path)?;
    out.line(&format!(
        "dropped {} from the source",
        display_ident(&retired.schema)
    ));
    Ok(exit::SUCCESS)
}
