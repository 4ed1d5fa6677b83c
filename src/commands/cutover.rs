//! `carve cutover --domain D` and `carve rollback --domain D`: switch a moved domain's
//! clients to its own server, and back, through PgBouncer. Planning, abort and the
//! gate are `phases::cutover` (pure); this file finds where the switch stands in the
//! plan, reads what the gate weighs, and runs the steps in three runs: up to the
//! point of no return (recorded in the plan before the next), the switch of the
//! clients, and validation. A switch that stops before its point of no return, by a
//! failure or Ctrl-C, is cancelled at once; a killed one is finished by running the
//! same command again, or cancelled with `--abort`.

use std::time::{Duration, Instant, SystemTime};

use crate::catalog::facts::{invalid_indexes, ServerFacts};
use crate::catalog::replication;
use crate::cli::{Settings, SwitchArgs, SwitchMethod};
use crate::commands::move_domain::{default_password_file, link, link_to, prove_on_target};
use crate::commands::phase::{self, Context};
use crate::conn::{ConnSpec, Environment};
use crate::engine::endpoint::Console;
use crate::engine::executor::Planned;
use crate::engine::{pgbouncer_file, Action, EntryTarget, Step, Target};
use crate::exit;
use crate::phases::cutover::gate::{self, Facts, StreamFacts, Thresholds};
use crate::phases::cutover::{
    self, Clients, ConnectionFiles, Entry, Links, Switch, SwitchOptions, Switchboard,
};
use crate::phases::move_domain::replication::Names;
use crate::phases::move_domain::split_across;
use crate::plan::{
    now_rfc3339, ConsoleRef, Cutover, FilesSwitch, PhaseEvent, PhaseId, Plan, Side, StepStatus,
    Switching,
};

/// The console's name in the plan (`console:pgbouncer`).
pub(crate) const CONSOLE: &str = "pgbouncer";

/// Where a domain's switch stands, from the plan.
enum Stage {
    /// No switch under way: clients are on `live`.
    Settled { live: Side },
    /// A switch to `to` under way, before or past its point of no return.
    Switching { to: Side, committed: bool },
}

fn stage(plan: &Plan, domain: &str) -> Stage {
    let cutover = plan
        .domains
        .iter()
        .find(|d| d.name == domain)
        .and_then(|d| d.cutover.as_ref());
    match cutover {
        None => Stage::Settled { live: Side::Source },
        Some(c) => match &c.switching {
            Some(s) => Stage::Switching {
                to: s.to,
                committed: s.committed.is_some(),
            },
            None => Stage::Settled { live: c.live },
        },
    }
}

pub async fn run(settings: &Settings, args: &SwitchArgs, to: Side) -> anyhow::Result<u8> {
    let out = &settings.out;
    let mut plan = phase::load_plan(&settings.plan_path)?;
    let domain = args.domain.clone();
    let position = phase::find_domain(settings, &plan, &domain)?;
    let moved = PhaseId::new(crate::phases::move_domain::PHASE, Some(&domain));
    if !plan.phase(&moved).is_some_and(|r| r.is_applied()) {
        anyhow::bail!(
            "{domain} has not been moved: `carve move --domain {domain} --target CONN` copies it to its server and keeps it in step; cut-over comes after"
        );
    }
    if to == Side::Source
        && plan.domains[position]
            .cutover
            .as_ref()
            .is_some_and(|c| c.retired.is_some())
    {
        anyhow::bail!(
            "{domain} is retired: the stream back to the source was removed, so there is no way back that loses no write"
        );
    }
    let id = PhaseId::new(cutover::phase_name(to), Some(&domain));
    let (fresh, committed) = match stage(&plan, &domain) {
        Stage::Switching { to: under_way, .. } if under_way != to => anyhow::bail!(
            "a {} of {domain} is under way: run `carve {} --domain {domain}` to finish it{}",
            cutover::phase_name(under_way),
            cutover::phase_name(under_way),
            if args.abort { "" } else { " (or cancel it with --abort while it is before its point of no return)" }
        ),
        Stage::Switching { committed: true, .. } if args.abort => anyhow::bail!(
            "the {} of {domain} is past its point of no return (the stream back was made and clients may write on {}): run `carve {} --domain {domain}` to finish it, then `carve {} --domain {domain}` to go back",
            cutover::phase_name(to),
            to.word(),
            cutover::phase_name(to),
            cutover::phase_name(to.other())
        ),
        Stage::Switching { committed, .. } => (false, committed),
        Stage::Settled { .. } if args.abort => {
            out.line(&format!("no {} of {domain} is under way: nothing to abort", cutover::phase_name(to)));
            return Ok(exit::SUCCESS);
        }
        Stage::Settled { live } if live == to => {
            out.line(&format!("the clients of {domain} are on {} already: nothing to do", to.word()));
            return Ok(exit::SUCCESS);
        }
        Stage::Settled { .. } => (true, false),
    };
    let Some(server) = plan.domains[position].server.clone() else {
        anyhow::bail!("the plan records no server for {domain}: run `carve move` first");
    };
    let server_spec = ConnSpec::resolve(&server, &Environment::from_process())
        .map_err(|e| anyhow::anyhow!("the server of {domain}: {e}"))?;
    let files_switch = files_switch(&plan, position, args)?;
    let password_file = args
        .password_file
        .clone()
        .unwrap_or_else(|| default_password_file(&settings.plan_path));
    crate::conn::password::PasswordFile::check(&password_file)?;

    let recorded = plan.phase(&id).map(|r| r.steps.clone());
    if !fresh && recorded.is_none() {
        anyhow::bail!(
            "the plan says a {} of {domain} is under way but records none of its steps: edit [[domains]] cutover in {} by hand",
            cutover::phase_name(to),
            settings.plan_path.display()
        );
    }
    let board = match &files_switch {
        Some(_) => None,
        None => {
            let console_spec = console_spec(settings, &mut plan, args)?;
            // An unreachable console is a reason the gate names, not a failure halfway.
            if fresh && !args.abort {
                if let Err(e) = crate::conn::connect(&console_spec).await {
                    out.error(&format!("pgbouncer: cannot reach the admin console: {e}"));
                    out.name_objects(["pgbouncer".to_string()]);
                    out.warn(&format!(
                        "the {} of {domain} cannot start. Nothing was changed: the clients stay on {}",
                        cutover::phase_name(to),
                        to.other().word()
                    ));
                    out.failing(exit::GATE_NOT_MET);
                    return Ok(exit::GATE_NOT_MET);
                }
            }
            // Where the entries point on each side: a fresh cut-over reads the file;
            // a rollback, a resumed switch and an abort take them from the recorded
            // steps.
            Some(match (&recorded, fresh, to) {
                (Some(steps), false, _) => board_from_steps(steps, to)?,
                (_, true, Side::Server) => {
                    fresh_board(
                        settings,
                        &plan,
                        &domain,
                        &args.entries,
                        args.server_address.as_deref(),
                        &console_spec,
                        &server_spec,
                    )
                    .await?
                }
                _ => {
                    let last = plan
                        .phase(PhaseId::new(cutover::CUTOVER, Some(&domain)))
                        .ok_or_else(|| {
                            anyhow::anyhow!("no cut-over of {domain} is recorded to roll back")
                        })?;
                    board_from_steps(&last.steps, Side::Server)?
                }
            })
        }
    };

    let mut ctx = match phase::open(settings, &args.apply, plan).await? {
        Ok(ctx) => ctx,
        Err(code) => return Ok(code),
    };
    if fresh {
        if let Some(code) = phase::gate(settings, &ctx, &id) {
            return Ok(code);
        }
        let refusals = split_across::switch_refusals(&ctx.plan, &ctx.catalog, &domain, to);
        if !refusals.is_empty() {
            return Ok(not_started(
                settings,
                &domain,
                to,
                &refusals,
                refusals.clone(),
            ));
        }
    }
    // How each side reaches the other: given now, or as recorded when it was given.
    let known = ctx.plan.domains[position].clone();
    let subscription_conninfo = args
        .subscription_conninfo
        .clone()
        .or(known.subscription_conninfo);
    let reverse_conninfo = args.reverse_conninfo.clone().or(known.reverse_conninfo);
    let to_source = link(&ctx, subscription_conninfo.as_deref(), &password_file)?;
    let to_server = link_to(
        &server_spec,
        &server_spec.dbname,
        reverse_conninfo.as_deref(),
        "--reverse-conninfo",
        &password_file,
    )?;
    let d = &mut ctx.plan.domains[position];
    d.subscription_conninfo = subscription_conninfo;
    d.reverse_conninfo = reverse_conninfo;
    // The crossings as the cut-over planned them: from the catalog for a fresh one,
    // from its record otherwise (a rollback's catalog no longer has them).
    let crossings: Vec<Step> = match (to, fresh) {
        (Side::Server, true) => cutover::crossings::drops(&ctx.catalog, &domain),
        _ => ctx
            .plan
            .phase(PhaseId::new(cutover::CUTOVER, Some(&domain)))
            .map(|r| {
                r.steps
                    .iter()
                    .filter(|s| s.id.starts_with("drop crossing "))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default(),
    };
    // A split's parts in this domain whose table is in another: where their rows
    // are made follows the switch (from its record once under way).
    let parts: Vec<Step> = match &recorded {
        Some(steps) if !fresh => steps
            .iter()
            .filter(|s| split_across::is_switch_step(&s.id))
            .cloned()
            .collect(),
        _ => split_across::switch_steps(&ctx.catalog, &domain, to),
    };
    let files = match &files_switch {
        Some(f) => Some(connection_files(&ctx, &domain, f, &server_spec, args)?),
        None => None,
    };
    let clients = match (&board, &files) {
        (Some(board), _) => Clients::Pgbouncer(board),
        (None, Some(files)) => Clients::Files(files),
        (None, None) => unreachable!("one of the two is set above"),
    };
    let options = SwitchOptions {
        to,
        clients,
        links: Links {
            to_source: &to_source,
            to_server: &to_server,
        },
        freeze_timeout: args.freeze_timeout,
        catch_up_timeout: args.catch_up_timeout,
        crossings: &crossings,
        parts: &parts,
    };
    let planned = cutover::switch(&ctx.catalog, &domain, &options);
    let switch = match (&recorded, fresh) {
        (Some(steps), false) => Switch {
            point_of_no_return: moment(steps, &planned, planned.point_of_no_return),
            resumed: moment(steps, &planned, planned.resumed),
            steps: steps.clone(),
        },
        _ => planned,
    };
    // An abort's "fence it again": the side switched to had a fence of an earlier
    // switch when this one began (a rollback's source always; a cut-over's server
    // after a rollback).
    let to_was_fenced = match to {
        Side::Source => true,
        Side::Server => ctx
            .plan
            .phase(PhaseId::new(cutover::ROLLBACK, Some(&domain)))
            .is_some_and(|r| r.is_applied()),
    };
    let abort_steps = cutover::abort(&ctx.catalog, &domain, &options, to_was_fenced);
    let mut all_steps = switch.steps.clone();
    all_steps.extend(abort_steps.iter().cloned());
    if let Some(code) =
        phase::connect_targets(settings, &mut ctx, &all_steps, args.apply.dry_run).await?
    {
        return Ok(code);
    }

    if args.abort {
        if args.apply.dry_run {
            return phase::dry_run(settings, &ctx, &format!("abort of {id}"), &abort_steps).await;
        }
        return abort(settings, &mut ctx, &id, &domain, &abort_steps, args).await;
    }
    if fresh {
        let mut facts = gate_facts(&ctx, &domain, to, clients).await?;
        if to == Side::Server {
            // restrict's proof on the server, as the services' roles: what would
            // break once their clients are there.
            let on_server = cutover::target(to, &domain);
            if let Some(results) =
                prove_on_target(settings, &ctx, &domain, &on_server, args.apply.lock_timeout)
                    .await?
            {
                facts.failing_statements = results.iter().filter(|r| r.is_unexpected()).count();
                if facts.failing_statements > 0 {
                    out.warn(&format!(
                        "on {domain}'s server, as the services of {domain} will run there:{}",
                        crate::ui::restrict::render_proof(&results)
                    ));
                }
            }
        }
        let refusals = gate::check(
            &facts,
            &Thresholds {
                max_lag: args.max_lag,
                verify_max_age: args.verify_max_age,
                accept_failing_statements: args.accept_failing_statements,
            },
        );
        if !refusals.is_empty() {
            let names = refusals.iter().map(|r| r.what.clone()).collect();
            return Ok(not_started(settings, &domain, to, &refusals, names));
        }
    }
    if args.apply.dry_run {
        return phase::dry_run(settings, &ctx, &id.to_string(), &switch.steps).await;
    }
    let question = format!(
        "{}? Writes of {domain} pause (at most {} for PAUSE, then until the other side has caught up), and clients then write on {}",
        cutover::summary(&domain, to, &switch),
        humantime::format_duration(args.freeze_timeout),
        to.word()
    );
    if fresh && !phase::confirm(settings, &question)? {
        out.warn("not started; nothing was changed");
        return Ok(exit::ERROR);
    }
    if fresh {
        record_start(
            &mut ctx.plan,
            &id,
            &domain,
            to,
            ctx.fingerprint.digest.clone(),
            &switch.steps,
        );
        domain_mut(&mut ctx.plan, &domain)
            .cutover
            .as_mut()
            .expect("recorded just now")
            .files = files_switch.clone();
        ctx.plan.save(&settings.plan_path)?;
    }

    let policy = phase::policy(&args.apply);
    let started = Instant::now();
    if !committed {
        let before = Planned::each(&switch.steps[..switch.point_of_no_return]);
        match phase::apply(settings, &mut ctx, &id, &before, StepStatus::Done, &policy).await? {
            Ok(_) => {}
            Err(code) => {
                out.warn(&format!(
                    "the {} stopped before its point of no return: cancelling it, so the clients stay on {}",
                    cutover::phase_name(to),
                    to.other().word()
                ));
                let aborted = abort(settings, &mut ctx, &id, &domain, &abort_steps, args).await?;
                return Ok(if aborted == exit::SUCCESS {
                    code
                } else {
                    aborted
                });
            }
        }
        set_switching(&mut ctx.plan, &domain, |s| {
            s.committed = Some(now_rfc3339())
        });
        ctx.plan.save(&settings.plan_path)?;
    }
    let switching = Planned::each(&switch.steps[switch.point_of_no_return..switch.resumed]);
    if let Err(code) = phase::apply(
        settings,
        &mut ctx,
        &id,
        &switching,
        StepStatus::Done,
        &policy,
    )
    .await?
    {
        out.warn(&format!(
            "the {} is past its point of no return: run `carve {} --domain {domain}` again to finish it",
            cutover::phase_name(to),
            cutover::phase_name(to)
        ));
        return Ok(code);
    }
    // From carve's PAUSE to PgBouncer's answer to RESUME: the longest a client waited.
    let pause = (!committed).then(|| started.elapsed());
    let validation = Planned::each(&switch.steps[switch.resumed..]);
    if let Err(code) = phase::apply(
        settings,
        &mut ctx,
        &id,
        &validation,
        StepStatus::Done,
        &policy,
    )
    .await?
    {
        out.warn(&format!(
            "the clients of {domain} are on {} and write there, but a check after the switch failed (above); `carve {} --domain {domain}` takes them back with no write lost",
            to.word(),
            cutover::phase_name(to.other())
        ));
        return Ok(code);
    }
    let after = phase::record_result(&mut ctx).await?;
    let record = ctx.plan.phase_mut(&id).expect("recorded before running");
    record.after = Some(after.digest);
    record.transition(PhaseEvent::Complete)?;
    let d = domain_mut(&mut ctx.plan, &domain);
    let retired = d.cutover.as_ref().and_then(|c| c.retired.clone());
    d.cutover = Some(Cutover {
        live: to,
        since: now_rfc3339(),
        pause_ms: pause.map(|p| p.as_millis() as u64),
        switching: None,
        retired,
        files: files_switch,
    });
    ctx.plan.save(&settings.plan_path)?;
    report(settings, &domain, to, pause, clients);
    // The services now run on the domain's server: their statements, as their roles.
    if to == Side::Server {
        let on_server = cutover::target(to, &domain);
        if let Some(results) =
            prove_on_target(settings, &ctx, &domain, &on_server, args.apply.lock_timeout).await?
        {
            let failing = results.iter().filter(|r| r.is_unexpected()).count();
            if failing > 0 {
                out.warn(&format!(
                    "{failing} statement(s) of {domain}'s services fail on its server as their roles:{}\nthey were listed at the move too; fix them, or `carve rollback --domain {domain}`",
                    crate::ui::restrict::render_proof(&results)
                ));
            }
        }
    }
    Ok(exit::SUCCESS)
}

fn report(settings: &Settings, domain: &str, to: Side, pause: Option<Duration>, clients: Clients) {
    let out = &settings.out;
    let entries: Vec<&str> = match clients {
        Clients::Pgbouncer(board) => board.entries.iter().map(|e| e.name.as_str()).collect(),
        Clients::Files(files) => files.services.iter().map(|(s, _)| s.as_str()).collect(),
    };
    if out.is_json() {
        #[derive(serde::Serialize)]
        struct Report<'a> {
            domain: &'a str,
            live: Side,
            /// Milliseconds from PAUSE to RESUME; absent for a switch finished by a re-run.
            #[serde(skip_serializing_if = "Option::is_none")]
            pause_ms: Option<u64>,
            entries: &'a [&'a str],
        }
        out.json(
            cutover::phase_name(to),
            &Report {
                domain,
                live: to,
                pause_ms: pause.map(|p| p.as_millis() as u64),
                entries: &entries,
            },
        );
        return;
    }
    let paused = match pause {
        Some(p) => format!("; writes paused for {} ms", p.as_millis()),
        None => String::new(),
    };
    out.line(&format!(
        "{}: the clients of {domain} ({}) write on {}{paused}. {} is fenced and follows every change, so `carve {} --domain {domain}` goes back with no write lost.",
        cutover::phase_name(to),
        entries.join(", "),
        to.word(),
        match to {
            Side::Server => "The source",
            Side::Source => "The domain's server",
        },
        cutover::phase_name(to.other())
    ));
}

/// Runs the abort steps and forgets the switch: the clients are where they were.
async fn abort(
    settings: &Settings,
    ctx: &mut Context,
    id: &PhaseId,
    domain: &str,
    steps: &[Step],
    args: &SwitchArgs,
) -> anyhow::Result<u8> {
    let planned = Planned::each(steps);
    let policy = phase::policy(&args.apply);
    match phase::apply(settings, ctx, id, &planned, StepStatus::Undone, &policy).await? {
        Ok(_) => {}
        Err(code) => {
            settings.out.warn(&format!(
                "the cancel did not finish: run `carve {} --domain {domain} --abort` again",
                id.name
            ));
            return Ok(code);
        }
    }
    if let Some(record) = ctx.plan.phase_mut(id) {
        record.transition(PhaseEvent::CompleteUndo)?;
    }
    let d = domain_mut(&mut ctx.plan, domain);
    if let Some(c) = d.cutover.as_mut() {
        c.switching = None;
    }
    // A first cut-over cancelled leaves the domain as the move left it.
    if d.cutover.as_ref().is_some_and(|c| c.since.is_empty()) {
        d.cutover = None;
    }
    ctx.plan.save(&settings.plan_path)?;
    settings.out.line(&format!(
        "the {} of {domain} was cancelled: its clients write where they did, and the stream to the other side runs as before",
        id.name
    ));
    Ok(exit::SUCCESS)
}

fn domain_mut<'p>(plan: &'p mut Plan, domain: &str) -> &'p mut crate::plan::Domain {
    plan.domains
        .iter_mut()
        .find(|d| d.name == domain)
        .expect("checked when the command began")
}

fn set_switching(plan: &mut Plan, domain: &str, change: impl FnOnce(&mut Switching)) {
    if let Some(s) = domain_mut(plan, domain)
        .cutover
        .as_mut()
        .and_then(|c| c.switching.as_mut())
    {
        change(s);
    }
}

/// The phase record (its steps as planned) and the switch under way, before the
/// first step runs.
fn record_start(
    plan: &mut Plan,
    id: &PhaseId,
    domain: &str,
    to: Side,
    before: String,
    steps: &[Step],
) {
    phase::record_planned(plan, id, before, steps);
    let d = domain_mut(plan, domain);
    let switching = Some(Switching {
        to,
        started: now_rfc3339(),
        committed: None,
    });
    match d.cutover.as_mut() {
        Some(c) => c.switching = switching,
        // `since` empty: the clients have been on the source since before carve.
        None => {
            d.cutover = Some(Cutover {
                live: to.other(),
                since: String::new(),
                pause_ms: None,
                switching,
                retired: None,
                files: None,
            })
        }
    }
}

/// Where a moment of the freshly planned switch falls in the recorded steps (the
/// same step id), so a resumed run splits them where the first run did.
fn moment(recorded: &[Step], planned: &Switch, index: usize) -> usize {
    planned
        .steps
        .get(index)
        .and_then(|step| recorded.iter().position(|r| r.id == step.id))
        .unwrap_or(index.min(recorded.len()))
}

/// The console's connection: --pgbouncer (recorded in the plan), or the one the plan
/// records.
fn console_spec(
    settings: &Settings,
    plan: &mut Plan,
    args: &SwitchArgs,
) -> anyhow::Result<ConnSpec> {
    let recorded = plan.consoles.iter().position(|c| c.name == CONSOLE);
    let conninfo = match (&args.pgbouncer, recorded) {
        (Some(given), _) => given.clone(),
        (None, Some(i)) => plan.consoles[i].conninfo.clone(),
        (None, None) => anyhow::bail!(
            "how are the clients of {} switched? Pass --pgbouncer CONN: PgBouncer's admin console (for example postgresql://postgres@127.0.0.1:6432/pgbouncer), recorded in {} for later runs",
            args.domain,
            settings.plan_path.display()
        ),
    };
    let spec = ConnSpec::resolve(&conninfo, &Environment::from_process())
        .map_err(|e| anyhow::anyhow!("--pgbouncer: {e}"))?;
    let config = args
        .pgbouncer_config
        .clone()
        .map(std::path::absolute)
        .transpose()?
        .or_else(|| recorded.and_then(|i| plan.consoles[i].config.clone()));
    let entry = ConsoleRef {
        name: CONSOLE.into(),
        conninfo: spec.reference(),
        config,
    };
    match recorded {
        Some(i) => plan.consoles[i] = entry,
        None => plan.consoles.push(entry),
    }
    Ok(spec)
}

/// The entries of a fresh cut-over: --entry, or each of the domain's services'
/// `pgbouncer_entry` (by default its name); where each points now (read from
/// PgBouncer's file) and where it will point (the domain's server, as PgBouncer
/// reaches it).
pub(crate) async fn fresh_board(
    settings: &Settings,
    plan: &Plan,
    domain: &str,
    given_entries: &[String],
    server_address: Option<&str>,
    console: &ConnSpec,
    server: &ConnSpec,
) -> anyhow::Result<Switchboard> {
    // The entries of the domain's last cut-over, when there was one.
    let before: Vec<String> = plan
        .phase(PhaseId::new(cutover::CUTOVER, Some(domain)))
        .map(|r| {
            r.steps
                .iter()
                .filter_map(|s| match &s.action {
                    Action::PgbouncerEntry(e) => Some(e.entry.clone()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let names: Vec<String> = if !given_entries.is_empty() {
        given_entries.to_vec()
    } else if !before.is_empty() {
        before
    } else {
        plan.services
            .iter()
            .filter(|s| s.domain.as_deref() == Some(domain))
            .map(|s| s.pgbouncer_entry.clone().unwrap_or_else(|| s.name.clone()))
            .collect()
    };
    if names.is_empty() {
        anyhow::bail!(
            "no PgBouncer entry is known for {domain}: no service of the plan has it as its domain. Pass --entry NAME (repeatable), or set `domain` and `pgbouncer_entry` of its services in {}",
            settings.plan_path.display()
        );
    }
    if let Some(problem) = names.iter().find_map(|n| cutover::entry_name_problem(n)) {
        anyhow::bail!(problem);
    }
    let file = match plan
        .consoles
        .iter()
        .find(|c| c.name == CONSOLE)
        .and_then(|c| c.config.clone())
    {
        Some(path) => path,
        None => {
            let admin = Console::new(crate::conn::connect(console).await?);
            let rows = admin
                .run("SHOW CONFIG")
                .await
                .map_err(|e| anyhow::anyhow!("PgBouncer's console: SHOW CONFIG: {e}"))?;
            let conffile = rows.iter().find_map(|row| {
                let value = |col: &str| row.iter().find(|(c, _)| c == col).map(|(_, v)| v.clone());
                (value("key").as_deref() == Some("conffile"))
                    .then(|| value("value"))
                    .flatten()
            });
            match conffile {
                Some(path) if !path.is_empty() => path.into(),
                _ => anyhow::bail!(
                    "PgBouncer does not say which file it read (SHOW CONFIG has no conffile): pass --pgbouncer-config FILE"
                ),
            }
        }
    };
    let on_server = address(server_address, "--server-address", server)?;
    let mut entries = Vec::new();
    for name in names {
        let on_source = pgbouncer_file::read(&file, &name).map_err(|e| anyhow::anyhow!(e))?;
        entries.push(Entry {
            name,
            on_source,
            on_server: on_server.clone(),
        });
    }
    Ok(Switchboard {
        console: Target::Console(CONSOLE.into()),
        file,
        entries,
    })
}

/// The switchboard of recorded steps: their file edits say which entries, and where
/// each points on each side (the edits of a switch to `to` point at `to`).
fn board_from_steps(steps: &[Step], to: Side) -> anyhow::Result<Switchboard> {
    let mut entries = Vec::new();
    let mut file = None;
    let mut console = None;
    for step in steps {
        if let Action::PgbouncerEntry(e) = &step.action {
            let (on_source, on_server) = match to {
                Side::Server => (e.from.clone(), e.to.clone()),
                Side::Source => (e.to.clone(), e.from.clone()),
            };
            entries.push(Entry {
                name: e.entry.clone(),
                on_source,
                on_server,
            });
            file = Some(e.file.clone());
            console = Some(step.target.clone());
        }
    }
    match (file, console) {
        (Some(file), Some(console)) => Ok(Switchboard {
            console,
            file,
            entries,
        }),
        _ => anyhow::bail!("the recorded switch has no PgBouncer entry to repoint"),
    }
}

/// What the gate weighs, read from both servers, the console and PgBouncer's file.
async fn gate_facts(
    ctx: &Context,
    domain: &str,
    to: Side,
    clients: Clients<'_>,
) -> anyhow::Result<Facts> {
    let to_target = cutover::target(to, domain);
    let from_target = cutover::target(to.other(), domain);
    let to_session = ctx.endpoints.session(&to_target)?;
    let from_session = ctx.endpoints.session(&from_target)?;
    let names = match to {
        Side::Server => Names::of(domain),
        Side::Source => Names::back(domain),
    };
    let subscription = replication::subscription(&to_session.watch, &names.subscription).await?;
    let slot = replication::slot(&from_session.watch, &names.slot).await?;
    let stream = match subscription {
        None => StreamFacts::default(),
        Some(s) => StreamFacts {
            exists: true,
            enabled: s.enabled,
            worker: s.worker_alive,
            tables_not_ready: s
                .tables
                .iter()
                .filter(|t| t.state != "ready")
                .map(|t| t.table.clone())
                .collect(),
            lag_bytes: slot.and_then(|s| s.lag_bytes),
        },
    };
    Ok(Facts {
        to,
        stream,
        invalid_indexes: invalid_indexes(&to_session.watch, domain).await?,
        to_server: ServerFacts::read(&to_session.watch).await?,
        from_server: ServerFacts::read(&from_session.watch).await?,
        console: match clients {
            Clients::Pgbouncer(board) => console_problems(ctx, board).await,
            Clients::Files(files) => Ok(files_problems(files)),
        },
        failing_statements: 0,
        verified_at: ctx
            .plan
            .domains
            .iter()
            .find(|d| d.name == domain)
            .and_then(|d| d.verified.as_ref())
            .map(|v| v.at.clone()),
        now: SystemTime::now(),
    })
}

/// Whether the console answers and knows each entry, and the file has each entry
/// and can be replaced (its directory writable).
async fn console_problems(ctx: &Context, board: &Switchboard) -> Result<Vec<String>, String> {
    let console = ctx
        .endpoints
        .console(&board.console)
        .map_err(|e| format!("{e:#}"))?;
    let rows = console
        .run("SHOW DATABASES")
        .await
        .map_err(|e| format!("the PgBouncer console does not answer SHOW DATABASES: {e}"))?;
    let mut problems = Vec::new();
    for entry in &board.entries {
        let listed = rows
            .iter()
            .any(|row| row.iter().any(|(c, v)| c == "name" && v == &entry.name));
        if !listed {
            problems.push(format!(
                "PgBouncer has no database entry {:?} (SHOW DATABASES)",
                entry.name
            ));
        }
        if let Err(e) = pgbouncer_file::read(&board.file, &entry.name) {
            problems.push(e);
        }
    }
    let dir = board.file.parent().unwrap_or(std::path::Path::new("."));
    if !writable(dir) {
        problems.push(format!(
            "{} cannot be replaced: its directory {} is not writable by carve",
            board.file.display(),
            dir.display()
        ));
    }
    Ok(problems)
}

/// Whether this process may create files in `dir` (access(2), as the kernel decides).
fn writable(dir: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access(2) reads a NUL-terminated path and nothing else.
    unsafe { libc::access(path.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

/// The file switch asked for (--switch file) or recorded (the domain's last switch
/// used it); None for PgBouncer.
fn files_switch(
    plan: &Plan,
    position: usize,
    args: &SwitchArgs,
) -> anyhow::Result<Option<FilesSwitch>> {
    let recorded = plan.domains[position]
        .cutover
        .as_ref()
        .and_then(|c| c.files.clone());
    let wanted = match args.switch {
        Some(SwitchMethod::Pgbouncer) => return Ok(None),
        Some(SwitchMethod::File) => true,
        None => recorded.is_some(),
    };
    if !wanted {
        return Ok(None);
    }
    let dir = match (&args.connection_dir, &recorded) {
        (Some(dir), _) => std::path::absolute(dir)?,
        (None, Some(r)) => r.dir.clone(),
        (None, None) => anyhow::bail!(
            "--switch file writes each service's connection settings: pass --connection-dir DIR"
        ),
    };
    let services = if args.services.is_empty() {
        recorded
            .as_ref()
            .map(|r| r.services.clone())
            .unwrap_or_default()
    } else {
        args.services.clone()
    };
    let hook = args.hook.clone().or_else(|| recorded.and_then(|r| r.hook));
    if hook.as_deref().is_some_and(|h| h.contains('\n')) {
        anyhow::bail!("--hook must be one line (the dry-run script runs it with psql's \\!)");
    }
    Ok(Some(FilesSwitch {
        dir,
        hook,
        services,
    }))
}

/// The host, port and dbname of `given` (a connection string, from option `flag`), or
/// of `default`.
fn address(given: Option<&str>, flag: &str, default: &ConnSpec) -> anyhow::Result<EntryTarget> {
    let spec = match given {
        Some(text) => ConnSpec::resolve(text, &Environment::from_process())
            .map_err(|e| anyhow::anyhow!("{flag}: {e}"))?,
        None => default.clone(),
    };
    let first = spec.targets.first().expect("a connection has a target");
    Ok(EntryTarget {
        host: first.host.clone(),
        port: first.port,
        dbname: spec.dbname.clone(),
    })
}

/// The file switch's services (the domain's, each with the role it logs in as) and
/// both sides' addresses.
fn connection_files(
    ctx: &Context,
    domain: &str,
    files: &FilesSwitch,
    server: &ConnSpec,
    args: &SwitchArgs,
) -> anyhow::Result<ConnectionFiles> {
    let services: Vec<(String, String)> = ctx
        .plan
        .services
        .iter()
        .filter(|s| {
            if files.services.is_empty() {
                s.domain.as_deref() == Some(domain)
            } else {
                files.services.contains(&s.name)
            }
        })
        .map(|s| {
            let role = s
                .login_role
                .clone()
                .or_else(|| s.roles.first().cloned())
                .unwrap_or_else(|| s.name.clone());
            (s.name.clone(), role)
        })
        .collect();
    if let Some(unknown) = files
        .services
        .iter()
        .find(|n| !ctx.plan.services.iter().any(|s| &s.name == *n))
    {
        anyhow::bail!("--service {unknown}: the plan has no such service");
    }
    if services.is_empty() {
        anyhow::bail!(
            "no service of the plan has {domain} as its domain, so there is no connection file to write: pass --service NAME, or set `domain` of its services in the plan"
        );
    }
    Ok(ConnectionFiles {
        dir: files.dir.clone(),
        services,
        on_source: address(
            args.source_address.as_deref(),
            "--source-address",
            &ctx.spec,
        )?,
        on_server: address(args.server_address.as_deref(), "--server-address", server)?,
        hook: files.hook.clone(),
    })
}

/// Whether the connection files can be written: the directory exists and carve may
/// create files in it.
fn files_problems(files: &ConnectionFiles) -> Vec<String> {
    if !files.dir.is_dir() {
        return vec![format!(
            "--connection-dir {} is not a directory",
            files.dir.display()
        )];
    }
    if !writable(&files.dir) {
        return vec![format!("carve cannot write into {}", files.dir.display())];
    }
    Vec::new()
}

/// A switch that cannot start (`phase::refused`).
fn not_started(
    settings: &Settings,
    domain: &str,
    to: Side,
    reasons: &[impl std::fmt::Display],
    names: Vec<String>,
) -> u8 {
    phase::refused(
        settings,
        reasons,
        names,
        &format!(
            "the {} of {domain} cannot start: {} reason(s) above. Nothing was changed: the clients stay on {}",
            cutover::phase_name(to),
            reasons.len(),
            to.other().word()
        ),
    )
}
