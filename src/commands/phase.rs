//! What every database-changing command shares: load the plan, connect, take the lock,
//! pass the fingerprint gate, then dry-run or apply steps through the engine and
//! record the result. `assign` and `undo` (and later phases) only say which steps.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::catalog::fingerprint::Fingerprint;
use crate::catalog::reader::read_catalog;
use crate::catalog::Catalog;
use crate::cli::{ApplyArgs, Settings};
use crate::conn::{ConnSpec, Environment};
use crate::engine::endpoint::{Console, Endpoint, Endpoints, Session};
use crate::engine::executor::{self, LockPolicy, Planned, RunContext, RunEnd};
use crate::engine::gate::{self, Gate};
use crate::engine::{script, Step, Target};
use crate::exit;
use crate::plan::{PhaseEvent, PhaseId, Plan, StepStatus};
use crate::ui;

/// A plan, the endpoints its steps run on (the source first), and the source's
/// catalog as it is now.
pub struct Context {
    pub plan: Plan,
    /// The source's connection, resolved (for messages and the password file).
    pub spec: ConnSpec,
    /// Every endpoint opened: the source, and the other targets the steps name
    /// (`connect_targets`).
    pub endpoints: Endpoints,
    /// How each endpoint was reached, without passwords (for the dry-run script).
    pub references: BTreeMap<Target, String>,
    /// A third connection to the source, so the catalog is read by three side by
    /// side (as `inspect` does) before and after the steps.
    pub reader: tokio_postgres::Client,
    pub catalog: Catalog,
    pub fingerprint: Fingerprint,
    /// The workload the plan records (`plan.workload`), read once when first asked.
    workload: tokio::sync::OnceCell<Option<crate::workload::Workload>>,
}

impl Context {
    /// The source's endpoint: the monolith.
    pub fn source(&self) -> &Session {
        self.endpoints.source()
    }

    /// The workload the plan records, read on first use and kept for the run: a
    /// command that both plans replicated reads and proves statements reads its
    /// files, logs or pg_stat_statements once. None when the plan records none.
    pub async fn recorded_workload(&self) -> anyhow::Result<Option<&crate::workload::Workload>> {
        use crate::workload::sources::{Sources, WorkloadOptions};
        let workload = self
            .workload
            .get_or_try_init(|| async {
                let sources = Sources::check_or_recorded(&WorkloadOptions::default(), &self.plan)?;
                sources
                    .load(&self.source().watch, &self.catalog.server.database)
                    .await
            })
            .await?;
        Ok(workload.as_ref())
    }
}

/// Logs how long a stage took (`CARVE_LOG=carve::timing=info` shows them; the
/// benchmarks print them).
pub fn timing(stage: &str, since: std::time::Instant) {
    tracing::info!(target: "carve::timing", "{stage} {:.2}s", since.elapsed().as_secs_f64());
}

/// Connects to the plan's source (or `--source`), takes carve's lock unless this is a
/// dry-run, and reads the catalog. Returns the exit code instead when the lock is held.
pub async fn open(
    settings: &Settings,
    args: &ApplyArgs,
    plan: Plan,
) -> anyhow::Result<Result<Context, u8>> {
    let source = args.source.as_deref().unwrap_or(&plan.source.conninfo);
    let (spec, clients) = super::connect_source(source, 3).await?;
    let mut clients = clients.into_iter();
    let (work, watch) = (
        clients.next().expect("three"),
        clients.next().expect("three"),
    );
    let reader = clients.next().expect("three");
    let session = Session::new(work, watch).await?;
    if !args.dry_run {
        if let Err(held) = session.lock().await? {
            settings.out.error(&format!("{held}"));
            settings.out.warn(
                "two carve runs must not change one database at once: wait for that run to finish (or end that session), then run this command again",
            );
            return Ok(Err(exit::LOCK_HELD));
        }
    }
    let started = std::time::Instant::now();
    let catalog = read_catalog(&[&session.work, &session.watch, &reader]).await?;
    timing("read catalog", started);
    if catalog.server.database != plan.source.database {
        anyhow::bail!(
            "{} was made for database {:?}, but this connection is to {:?}",
            settings.plan_path.display(),
            plan.source.database,
            catalog.server.database
        );
    }
    let fingerprint = plan.fingerprint_of(&catalog);
    let references = BTreeMap::from([(Target::Source, spec.reference())]);
    Ok(Ok(Context {
        plan,
        spec,
        endpoints: Endpoints::source_only(session),
        references,
        reader,
        catalog,
        fingerprint,
        workload: tokio::sync::OnceCell::new(),
    }))
}

/// Opens every endpoint `steps` name that is not open yet: a domain's server (two
/// connections, carve's lock unless this is a dry-run) or a PgBouncer console, each
/// resolved through the plan as libpq would (no secret in the plan). Returns the
/// exit code instead when another run holds the lock on one of them.
pub async fn connect_targets(
    settings: &Settings,
    ctx: &mut Context,
    steps: &[Step],
    dry_run: bool,
) -> anyhow::Result<Option<u8>> {
    let targets: std::collections::BTreeSet<&Target> = steps.iter().map(|s| &s.target).collect();
    for target in targets {
        if ctx.references.contains_key(target) {
            continue;
        }
        if *target == Target::Local {
            // Files and hooks on this machine: nothing to connect to.
            ctx.references.insert(Target::Local, "this machine".into());
            continue;
        }
        let Some(conninfo) = ctx.plan.conninfo(target) else {
            anyhow::bail!(
                "a step runs on {target}, and {} does not say where that is",
                settings.plan_path.display()
            );
        };
        let spec = ConnSpec::resolve(conninfo, &Environment::from_process())
            .map_err(|e| anyhow::anyhow!("{target}: {e}"))?;
        let endpoint = match target {
            Target::Console(_) => Endpoint::Console(Console::reconnecting(
                crate::conn::connect(&spec).await?,
                spec.clone(),
            )),
            _ => {
                let mut clients = crate::conn::connect_many(&spec, 2).await?.into_iter();
                let (work, watch) = (clients.next().expect("two"), clients.next().expect("two"));
                let session = Session::new(work, watch).await?;
                if !dry_run {
                    if let Err(held) = session.lock().await? {
                        settings.out.error(&format!("{target}: {held}"));
                        return Ok(Some(exit::LOCK_HELD));
                    }
                }
                Endpoint::Postgres(session)
            }
        };
        ctx.references.insert(target.clone(), spec.reference());
        ctx.endpoints.insert(target.clone(), endpoint);
    }
    Ok(None)
}

/// Where domain `name` is in the plan's `[[domains]]`, or an error listing them.
pub fn find_domain(settings: &Settings, plan: &Plan, name: &str) -> anyhow::Result<usize> {
    plan.domains
        .iter()
        .position(|d| d.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = plan.domains.iter().map(|d| d.name.as_str()).collect();
            anyhow::anyhow!(
                "{} has no domain {:?}; its domains are: {}",
                settings.plan_path.display(),
                name,
                names.join(", ")
            )
        })
}

pub fn load_plan(path: &Path) -> anyhow::Result<Plan> {
    match Plan::load_if_exists(path)? {
        Some(plan) => Ok(plan),
        None => anyhow::bail!(
            "no plan file at {}: run `carve discover --source CONN` first (or pass --plan FILE)",
            path.display()
        ),
    }
}

/// Both checks a database-changing phase makes once connected, in order: the
/// privileges (`preflight`), then the fingerprint gate (`gate`). The exit code of
/// the first that stops it.
pub fn ready(settings: &Settings, ctx: &Context, phase: &PhaseId, reads_only: bool) -> Option<u8> {
    preflight(settings, ctx, &phase.name, reads_only).or_else(|| gate(settings, ctx, phase))
}

/// Whether the connection may run `phase` (`phases::privileges_missing`): an error
/// naming what is missing, before anything is recorded. A dry-run that only reads
/// (assign's, an undo's) goes on with a warning, since it changes nothing.
pub fn preflight(settings: &Settings, ctx: &Context, phase: &str, reads_only: bool) -> Option<u8> {
    let missing = crate::phases::privileges_missing(&ctx.catalog, phase)?;
    if reads_only {
        settings.out.warn(&format!(
            "{missing} (this dry-run only reads, so it goes on)"
        ));
        return None;
    }
    settings.out.error(&format!("{missing}."));
    Some(exit::ERROR)
}

/// A phase that cannot start: each reason as an error, the objects they name,
/// `summary` (what was left unchanged) as the warning; returns the gate-not-met
/// exit code.
pub fn refused(
    settings: &Settings,
    reasons: &[impl std::fmt::Display],
    names: impl IntoIterator<Item = String>,
    summary: &str,
) -> u8 {
    let out = &settings.out;
    for r in reasons {
        out.error(&r.to_string());
    }
    out.name_objects(names);
    out.warn(summary);
    out.failing(crate::exit::GATE_NOT_MET);
    crate::exit::GATE_NOT_MET
}

/// The fingerprint gate (`engine::gate`): prints what changed and returns the
/// stale-plan code when the catalog is not the one the plan expects.
pub fn gate(settings: &Settings, ctx: &Context, phase: impl Into<PhaseId>) -> Option<u8> {
    let record = ctx.plan.phase(phase).filter(|r| r.is_in_flight());
    let gate = match record {
        Some(r) => Gate::InFlight(&r.gate),
        None => Gate::Exact,
    };
    let changes = gate::check(&ctx.plan.fingerprint, &ctx.fingerprint, &gate);
    if changes.is_empty() {
        return None;
    }
    settings.out.error(&format!(
        "{} is stale: the database changed in {} place(s) since carve last looked, so the planned steps may no longer fit. Nothing was changed.",
        settings.plan_path.display(),
        changes.len()
    ));
    eprint!("{}", ui::change_list(&changes, 50));
    settings
        .out
        .name_objects(changes.iter().map(ToString::to_string));
    settings.out.warn(if record.is_some() {
        "the phase stopped part-way: undo that change by hand and run again, or run `carve undo` for this phase"
    } else {
        "run `carve discover` again to make a plan from the database as it is now"
    });
    Some(exit::STALE_PLAN)
}

/// Dry-run: prints the steps as a psql script on stdout and says how many are still to
/// do. Exits 3 when there is work, 0 when everything is in place. Takes no lock and
/// writes nothing.
pub async fn dry_run(
    settings: &Settings,
    ctx: &Context,
    phase: &str,
    steps: &[Step],
) -> anyhow::Result<u8> {
    let text = script::render(phase, steps, &ctx.references).map_err(|e| anyhow::anyhow!(e))?;
    let done = ctx.endpoints.done(steps).await?;
    let pending = done.iter().filter(|d| !**d).count();
    if settings.out.is_json() {
        #[derive(serde::Serialize)]
        struct Step<'a> {
            id: &'a str,
            description: &'a str,
            target: String,
            done: bool,
            action: &'a crate::engine::Action,
        }
        #[derive(serde::Serialize)]
        struct Report<'a> {
            phase: &'a str,
            pending: usize,
            steps: Vec<Step<'a>>,
            script: &'a str,
        }
        settings.out.json(
            "dry-run",
            &Report {
                phase,
                pending,
                steps: steps
                    .iter()
                    .zip(&done)
                    .map(|(s, d)| Step {
                        id: &s.id,
                        description: &s.description,
                        target: s.target.to_string(),
                        done: *d,
                        action: &s.action,
                    })
                    .collect(),
                script: &text,
            },
        );
    } else {
        print!("{text}");
        settings.out.progress(&format!(
            "dry-run of {phase}: {pending} of {} step(s) still to do; nothing was changed. The script above does the same work (psql -X -v ON_ERROR_STOP=1 -f FILE), but carve does not track a script run by hand: afterwards this plan reports the database as changed",
            steps.len()
        ));
    }
    Ok(if pending > 0 {
        exit::CHANGES_PENDING
    } else {
        exit::SUCCESS
    })
}

/// Whether carve may ask: a terminal on stdin and stderr, no `--yes`, no JSON.
pub fn interactive(settings: &Settings) -> bool {
    !settings.assume_yes
        && !settings.out.is_json()
        && std::io::stdin().is_terminal()
        && std::io::stderr().is_terminal()
}

/// Asks before applying, on a terminal and without `--yes`; never prompts otherwise.
pub fn confirm(settings: &Settings, question: &str) -> anyhow::Result<bool> {
    if !interactive(settings) {
        return Ok(true);
    }
    Ok(dialoguer::Confirm::new()
        .with_prompt(question)
        .default(false)
        .interact()?)
}

/// Runs the steps through the executor (its events shown by `ui`), with Ctrl-C
/// stopping the run at once, and reports how it ended. The phase moves to running
/// (or undoing) first, and to failed when a step fails; the caller completes it.
pub async fn apply(
    settings: &Settings,
    ctx: &mut Context,
    phase: &PhaseId,
    steps: &[Planned<'_>],
    done_as: StepStatus,
    policy: &LockPolicy,
) -> anyhow::Result<Result<(usize, usize), u8>> {
    let start = match done_as {
        StepStatus::Undone => PhaseEvent::StartUndo,
        _ => PhaseEvent::Start,
    };
    ctx.plan
        .phase_mut(phase)
        .ok_or_else(|| anyhow::anyhow!("the plan has no {phase} phase"))?
        .transition(start)?;
    let started = std::time::Instant::now();
    ctx.plan.save(&settings.plan_path)?;
    timing("save plan", started);
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    let watcher = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            flag.store(true, Ordering::SeqCst);
        }
    });
    let events = ui::events::sink(&settings.out);
    let started = std::time::Instant::now();
    let end = executor::run(
        RunContext {
            endpoints: &ctx.endpoints,
            plan: &mut ctx.plan,
            plan_path: &settings.plan_path,
            policy,
            events: events.as_ref(),
            interrupted: &interrupted,
        },
        phase,
        steps,
        done_as,
    )
    .await;
    watcher.abort();
    timing(&format!("run {} step(s)", steps.len()), started);
    // The journal file has every step's status; the plan is saved once the run's end
    // is recorded (a completed run: by the caller, with the catalog after it).
    match &end {
        Ok(RunEnd::Completed { .. }) => {}
        Ok(RunEnd::Failed { .. }) => {
            let record = ctx.plan.phase_mut(phase).expect("it ran");
            record.transition(PhaseEvent::Fail)?;
            ctx.plan.save(&settings.plan_path)?;
        }
        Ok(RunEnd::Interrupted) | Err(_) => ctx.plan.save(&settings.plan_path)?,
    }
    match end? {
        RunEnd::Completed { ran, skipped } => Ok(Ok((ran, skipped))),
        RunEnd::Failed { step, error } => {
            settings.out.error(&format!("step {step} failed: {error}"));
            settings.out.name_objects([step]);
            settings.out.warn(&format!(
                "the steps before it are done and recorded in {}; fix the cause and run the same command again to continue (`carve status` shows where it stopped)",
                settings.plan_path.display()
            ));
            Ok(Err(exit::ERROR))
        }
        RunEnd::Interrupted => {
            settings.out.warn(
                "interrupted: a step under way was cancelled and rolled back, and what was done before it is recorded; run the same command again to continue",
            );
            Ok(Err(exit::INTERRUPTED))
        }
    }
}

/// Applies a phase's recorded steps in order, then records the catalog they leave
/// as the plan's fingerprint and the phase's `after`, and saves the plan. Returns
/// (steps run, steps already done), or the exit code of a run that did not finish.
pub async fn apply_phase(
    settings: &Settings,
    ctx: &mut Context,
    phase: &PhaseId,
    steps: &[Step],
    args: &ApplyArgs,
) -> anyhow::Result<Result<(usize, usize), u8>> {
    let planned = Planned::each(steps);
    let counts = match apply(
        settings,
        ctx,
        phase,
        &planned,
        StepStatus::Done,
        &policy(args),
    )
    .await?
    {
        Ok(counts) => counts,
        Err(code) => return Ok(Err(code)),
    };
    let after = record_result(ctx).await?;
    let record = ctx.plan.phase_mut(phase).expect("recorded before running");
    record.after = Some(after.digest);
    record.transition(PhaseEvent::Complete)?;
    let started = std::time::Instant::now();
    ctx.plan.save(&settings.plan_path)?;
    timing("save plan", started);
    Ok(Ok(counts))
}

/// Reads the catalog after a phase and makes it the plan's fingerprint.
pub async fn record_result(ctx: &mut Context) -> anyhow::Result<Fingerprint> {
    let started = std::time::Instant::now();
    let source = ctx.source();
    let catalog = read_catalog(&[&source.work, &source.watch, &ctx.reader]).await?;
    timing("read catalog after", started);
    let fingerprint = ctx.plan.fingerprint_of(&catalog);
    ctx.plan.fingerprint = fingerprint.clone();
    ctx.catalog = catalog;
    Ok(fingerprint)
}

/// Writes a per-domain phase into the plan before its first step runs, replacing an
/// earlier record of it. Its steps change roles and grants (replication roles): the
/// fingerprint gate sets those aside while it is under way.
pub fn record_planned(plan: &mut Plan, id: &PhaseId, before: String, steps: &[Step]) {
    plan.phases
        .retain(|p| !(p.name == id.name && p.domain == id.domain));
    plan.phases.push(crate::plan::PhaseRecord::planned(
        id.clone(),
        before,
        crate::plan::GateHints {
            privileges: true,
            ..crate::plan::GateHints::default()
        },
        steps.to_vec(),
    ));
}

pub fn policy(args: &ApplyArgs) -> LockPolicy {
    LockPolicy {
        timeout: args.lock_timeout,
        retries: args.lock_retries,
        ..LockPolicy::default()
    }
}

/// The reads a `replicate` decision keeps working (`plan` picks which: those a
/// retiring domain keeps on the source, or those a moving domain copies to its
/// server), each said on the terminal with the columns it keeps. The plan's
/// recorded workload says which columns; it is read only when a decision asks.
pub(crate) async fn replicated_reads(
    settings: &Settings,
    ctx: &Context,
    place: &str,
    plan: impl FnOnce(
        Option<&crate::workload::Workload>,
    ) -> Result<Vec<crate::phases::cutover::replica::Replica>, Vec<String>>,
) -> anyhow::Result<Vec<crate::phases::cutover::replica::Replica>> {
    use crate::phases::cutover::replica::CHOICE;
    if !ctx.plan.decisions.iter().any(|d| d.choice == CHOICE) {
        return Ok(Vec::new());
    }
    let workload = ctx.recorded_workload().await?;
    let replicas = plan(workload).map_err(|errors| {
        anyhow::anyhow!(
            "the plan's {CHOICE} decisions cannot be carried out: {}. Nothing was changed",
            errors.join("; ")
        )
    })?;
    for r in &replicas {
        let why = r
            .every_column_because
            .as_deref()
            .map(|w| format!(" (every column: {w})"))
            .unwrap_or_default();
        let rows = r
            .rows
            .as_deref()
            .map(|f| format!(", rows where {f}"))
            .unwrap_or_default();
        settings.out.progress(&format!(
            "{} is {place} for {}: columns {}{why}{rows}",
            r.table,
            r.readers.join(", "),
            r.columns.join(", ")
        ));
    }
    Ok(replicas)
}
