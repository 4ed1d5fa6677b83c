//! `carve restrict`: each service's credentials reach its own domain only. Planning is
//! `phases::restrict` (pure); this file reads the workload, gates, proves the plan in a
//! rolled-back transaction (`engine::proof`), asks, records and runs it through the
//! engine, and gives new login roles their passwords.

use serde::Serialize;

use crate::cli::{RestrictArgs, Settings};
use crate::commands::phase::{self, Context};
use crate::conn::password::PasswordFile;
use crate::engine::proof::{self, ProbeResult};
use crate::engine::Step;
use crate::exit;
use crate::phases::restrict::{self, RestrictPlan, PHASE};
use crate::plan::{GateHints, PhaseRecord};
use crate::workload::sources::Sources;

#[derive(Serialize)]
struct Report<'a> {
    /// `decisions-missing`, `proof-failed`, `dry-run`, `applied`.
    status: &'a str,
    #[serde(flatten)]
    plan: Option<&'a RestrictPlan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    proof: Option<&'a [ProbeResult]>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    steps: &'a [StepReport<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    applied: Option<&'a Applied>,
}

impl<'a> Report<'a> {
    fn new(status: &'a str) -> Report<'a> {
        Report {
            status,
            plan: None,
            proof: None,
            steps: &[],
            pending: None,
            applied: None,
        }
    }

    /// Prints the report as the command's JSON document (nothing for people: they
    /// have the text report).
    fn print(&self, settings: &Settings) {
        if settings.out.is_json() {
            settings.out.json("restrict", self);
        }
    }
}

#[derive(Serialize)]
struct StepReport<'a> {
    id: &'a str,
    description: &'a str,
    action: &'a crate::engine::Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    done: Option<bool>,
}

#[derive(Serialize)]
struct Applied {
    ran: usize,
    skipped: usize,
    /// New login roles whose password is in the password file.
    passwords_written: Vec<String>,
    /// New login roles left without a password.
    without_password: Vec<String>,
}

pub async fn run(settings: &Settings, args: &RestrictArgs) -> anyhow::Result<u8> {
    let out = &settings.out;
    let plan = phase::load_plan(&settings.plan_path)?;
    if !plan
        .phase(crate::phases::assign::PHASE)
        .is_some_and(|r| r.is_applied())
    {
        anyhow::bail!(
            "restrict grants on the domain schemas assign makes: run `carve assign` first (carve status shows the phases)"
        );
    }
    // Everything that can be checked without a server is checked first.
    let password_file = args
        .password_file
        .as_deref()
        .map(PasswordFile::check)
        .transpose()?;
    let recorded = plan.steps_in_place(PHASE);
    let sources = match &recorded {
        Some(_) => None,
        None => {
            let sources = Sources::check_or_recorded(&args.workload.options(), &plan)?;
            if sources.is_empty() {
                anyhow::bail!(
                    "restrict grants what the workload shows each service doing, and {} records no workload: pass --workload (as for discover)",
                    settings.plan_path.display()
                );
            }
            Some(sources)
        }
    };
    let mut ctx = match phase::open(settings, &args.apply, plan).await? {
        Ok(ctx) => ctx,
        Err(code) => return Ok(code),
    };
    // Even restrict's dry-run changes roles, inside the proof's rolled-back transaction.
    if let Some(code) = phase::ready(settings, &ctx, &PHASE.into(), false) {
        return Ok(code);
    }
    let passwords_to = password_file
        .as_ref()
        .map(|file| password_target(&ctx, file))
        .transpose()?;

    let (mut steps, fresh) = match (recorded, sources) {
        (Some(steps), _) => (steps, None),
        (None, Some(sources)) => {
            let database = ctx.catalog.server.database.clone();
            let workload = sources
                .load(&ctx.source().watch, &database)
                .await?
                .expect("sources are not empty");
            let mut planned = match restrict::plan(&ctx.plan, &ctx.catalog, &workload) {
                Ok(p) => p,
                Err(errors) => {
                    for e in &errors {
                        out.error(e);
                    }
                    anyhow::bail!(
                        "restrict cannot be planned ({} problem(s) above); nothing was changed",
                        errors.len()
                    );
                }
            };
            if let Some(target) = &passwords_to {
                let set = restrict::password_steps(&planned.steps, target);
                planned.steps.extend(set);
            }
            if !out.is_json() {
                out.line(&crate::ui::restrict::render(&planned));
            }
            let missing = planned.missing().len();
            if missing > 0 {
                let subjects: Vec<&str> = planned
                    .missing()
                    .iter()
                    .map(|c| c.subject.as_str())
                    .collect();
                out.error(&format!(
                    "{missing} cross-domain access(es) have no decision in {} (their statements are listed with the crossings); nothing was changed:\n  {}\nRecord one per subject ([[decisions]] subject = \"…\", choice = \"…\", reason = \"…\"); `carve restrict --help` explains the choices.",
                    settings.plan_path.display(),
                    subjects.join("\n  ")
                ));
                out.name_objects(subjects.iter().map(|s| s.to_string()));
                out.failing(exit::GATE_NOT_MET);
                Report {
                    plan: Some(&planned),
                    ..Report::new("decisions-missing")
                }
                .print(settings);
                return Ok(exit::GATE_NOT_MET);
            }
            let to_prove = pending(&ctx, &planned.steps).await?;
            out.progress(&format!(
                "proving: {} step(s) and {} statement(s) as their roles, in a transaction that is rolled back …",
                to_prove.len(),
                planned.probes.len()
            ));
            let results = proof::prove(
                &ctx.source().work,
                "",
                &to_prove,
                &planned.probes,
                args.apply.lock_timeout,
            )
            .await?;
            if !out.is_json() {
                out.line(&crate::ui::restrict::render_proof(&results));
            }
            let unexpected = results.iter().filter(|r| r.is_unexpected()).count();
            if unexpected > 0 {
                out.error(&format!(
                    "the proof found {unexpected} statement(s) that would fail after restrict and that no decision in the plan asks for (each listed with its error); nothing was changed"
                ));
                out.name_objects(
                    results
                        .iter()
                        .filter(|r| r.is_unexpected())
                        .map(|r| format!("{} ({}): {}", r.origin, r.service, r.sql)),
                );
                out.failing(exit::GATE_NOT_MET);
                Report {
                    plan: Some(&planned),
                    proof: Some(&results),
                    ..Report::new("proof-failed")
                }
                .print(settings);
                return Ok(exit::GATE_NOT_MET);
            }
            if args.apply.dry_run {
                return dry_run(settings, &ctx, &planned, &results).await;
            }
            (planned.steps.clone(), Some((planned, results)))
        }
        (None, None) => unreachable!("sources are read when nothing is recorded"),
    };

    // A phase recorded without passwords gets them now, as steps of its own.
    let added = match (&fresh, &passwords_to) {
        (None, Some(target)) => restrict::password_steps(&steps, target),
        _ => Vec::new(),
    };
    steps.extend(added.iter().cloned());
    if args.apply.dry_run {
        return phase::dry_run(settings, &ctx, PHASE, &steps).await;
    }
    let question = format!(
        "Apply {} restrict step(s) to database {}? Each is checkpointed and `carve undo restrict` reverses them",
        steps.len(),
        ctx.catalog.server.database
    );
    if !phase::confirm(settings, &question)? {
        out.warn("not applied; nothing was changed");
        return Ok(exit::ERROR);
    }
    // Recorded here, saved (with its state moved to running) just before the first
    // step runs.
    if fresh.is_some() {
        record_phase(&mut ctx, &steps);
    } else if !added.is_empty() {
        let record = ctx.plan.phase_mut(PHASE).expect("recorded");
        record.steps.extend(added);
    }
    let (ran, skipped) =
        match phase::apply_phase(settings, &mut ctx, &PHASE.into(), &steps, &args.apply).await? {
            Ok(counts) => counts,
            Err(code) => return Ok(code),
        };
    let without: Vec<String> = restrict::roles_without_password_step(&steps)
        .into_iter()
        .map(String::from)
        .collect();
    let written: Vec<String> = restrict::created_login_roles(&steps)
        .into_iter()
        .filter(|r| !without.iter().any(|w| w == r))
        .map(String::from)
        .collect();
    let applied = Applied {
        ran,
        skipped,
        passwords_written: written,
        without_password: without,
    };
    let (plan_ref, results) = match &fresh {
        Some((p, r)) => (Some(p), Some(r.as_slice())),
        None => (None, None),
    };
    Report {
        plan: plan_ref,
        proof: results,
        applied: Some(&applied),
        ..Report::new("applied")
    }
    .print(settings);
    out.line(&format!(
        "restrict: done ({ran} step(s) applied, {skipped} already in place). `carve undo restrict` gives back the roles and privileges there were."
    ));
    let files: std::collections::BTreeSet<String> = steps
        .iter()
        .filter_map(|s| s.sql_action().and_then(|a| a.secret.as_ref()?.file()))
        .map(|file| file.display().to_string())
        .collect();
    if !applied.passwords_written.is_empty() {
        out.line(&format!(
            "passwords of {} new login role(s) are in {} (mode 0600, ~/.pgpass format); hand each to its service and remove the file",
            applied.passwords_written.len(),
            files.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    if !applied.without_password.is_empty() {
        out.warn(&format!(
            "new login role(s) without a password: {}; set one (psql: \\password ROLE), or run the same command again with --password-file FILE",
            applied.without_password.join(", ")
        ));
    }
    Ok(exit::SUCCESS)
}

/// The steps whose check says they are not done yet: the proof runs those.
async fn pending<'s>(ctx: &Context, steps: &'s [Step]) -> anyhow::Result<Vec<&'s Step>> {
    let done = ctx.endpoints.done(steps).await?;
    Ok(steps
        .iter()
        .zip(done)
        .filter(|(_, d)| !d)
        .map(|(s, _)| s)
        .collect())
}

/// Dry-run after the proof: the script (people) or one JSON document (scripts).
async fn dry_run(
    settings: &Settings,
    ctx: &Context,
    planned: &RestrictPlan,
    results: &[ProbeResult],
) -> anyhow::Result<u8> {
    if !settings.out.is_json() {
        return phase::dry_run(settings, ctx, PHASE, &planned.steps).await;
    }
    let done = ctx.endpoints.done(&planned.steps).await?;
    let pending = done.iter().filter(|d| !**d).count();
    let steps: Vec<StepReport> = planned
        .steps
        .iter()
        .zip(&done)
        .map(|(s, d)| StepReport {
            id: &s.id,
            description: &s.description,
            action: &s.action,
            done: Some(*d),
        })
        .collect();
    Report {
        plan: Some(planned),
        proof: Some(results),
        steps: &steps,
        pending: Some(pending),
        ..Report::new("dry-run")
    }
    .print(settings);
    Ok(if pending > 0 {
        exit::CHANGES_PENDING
    } else {
        exit::SUCCESS
    })
}

/// Writes the phase into the plan before its first step runs.
fn record_phase(ctx: &mut Context, steps: &[Step]) {
    ctx.plan.phases.retain(|p| p.name != PHASE);
    ctx.plan.phases.push(PhaseRecord::planned(
        PHASE.into(),
        ctx.fingerprint.digest.clone(),
        GateHints {
            privileges: true,
            ..GateHints::default()
        },
        steps.to_vec(),
    ));
}

/// Where new login roles' passwords go: the file (an absolute path, since a resumed
/// run may start elsewhere) and the pgpass line's host, port and database, as the
/// services will connect to this source.
fn password_target(ctx: &Context, file: &PasswordFile) -> anyhow::Result<restrict::PasswordTarget> {
    let target = ctx.spec.targets.first().expect("a connection has a target");
    let host = if target.is_unix_socket() {
        "localhost".to_string()
    } else {
        target.host.clone()
    };
    Ok(restrict::PasswordTarget {
        file: std::path::absolute(file.path())?,
        host,
        port: target.port,
        database: ctx.catalog.server.database.clone(),
    })
}
