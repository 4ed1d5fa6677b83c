//! `carve plan`: the dry-run of the whole remaining journey, like a Terraform plan.
//! Each remaining phase's steps in the order they will run, later phases planned
//! against the catalog as the earlier ones will leave it (`phases::forecast`, on the
//! model), every decision still missing with its choices, and the servers and
//! PgBouncer entries the steps touch. It reads the source's catalog and workload (and
//! PgBouncer's file), holds no lock and writes nothing.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::catalog::Catalog;
use crate::cli::{ApplyArgs, JourneyPhase, PlanArgs, Settings};
use crate::commands::cutover::{fresh_board, CONSOLE};
use crate::commands::move_domain::{default_password_file, link, link_to};
use crate::commands::phase::{self, Context};
use crate::conn::{ConnSpec, Environment};
use crate::engine::{script, Step, Target};
use crate::exit;
use crate::phases::cutover::{self, Clients, Links, SwitchOptions};
use crate::phases::move_domain::{self, MoveOptions};
use crate::phases::{assign, forecast, restrict, split};
use crate::plan::{GateHints, PhaseId, PhaseRecord, PhaseState, Plan, Side};
use crate::workload::sources::Sources;

/// One phase (of one domain) still to run.
#[derive(Debug, Serialize)]
struct Section {
    phase: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    domain: Option<String>,
    /// `pending` (planned here), `under-way` (its recorded steps: the same command
    /// finishes it), `check` (verify: reads, changes nothing).
    state: &'static str,
    steps: Vec<Step>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    notes: Vec<String>,
}

/// A decision or an input the journey still needs.
#[derive(Debug, Serialize)]
struct Missing {
    subject: String,
    why: String,
    choices: Vec<String>,
    /// What the phase takes when run with --yes (none: it stops until told).
    #[serde(skip_serializing_if = "Option::is_none")]
    default: Option<String>,
}

#[derive(Debug, Default, Serialize)]
struct Touches {
    /// Target → where it is (no password).
    servers: BTreeMap<String, String>,
    pgbouncer_entries: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    database: String,
    through: &'static str,
    phases: Vec<Section>,
    missing: Vec<Missing>,
    /// What is left out, and why.
    notes: Vec<String>,
    touches: Touches,
    pending: usize,
}

pub async fn run(settings: &Settings, args: &PlanArgs) -> anyhow::Result<u8> {
    let out = &settings.out;
    let plan = phase::load_plan(&settings.plan_path)?;
    if plan.domains.is_empty() {
        anyhow::bail!(
            "{} has no domains: `carve discover` proposes them",
            settings.plan_path.display()
        );
    }
    // A dry-run's connection: no lock, nothing written.
    let apply = ApplyArgs {
        source: args.source.clone(),
        dry_run: true,
        lock_timeout: std::time::Duration::from_secs(2),
        lock_retries: 0,
    };
    let ctx = match phase::open(settings, &apply, plan).await? {
        Ok(ctx) => ctx,
        Err(code) => return Ok(code),
    };
    let mut journey = Journey {
        settings,
        ctx: &ctx,
        through: args.through,
        plan: ctx.plan.clone(),
        catalog: ctx.catalog.clone(),
        report: Report {
            database: ctx.catalog.server.database.clone(),
            through: args.through.name(),
            phases: Vec::new(),
            missing: Vec::new(),
            notes: Vec::new(),
            touches: Touches::default(),
            pending: 0,
        },
        stopped: false,
        staying: Vec::new(),
    };
    journey.assign()?;
    journey.split()?;
    journey.restrict(args).await?;
    let domains: Vec<String> = ctx.plan.domains.iter().map(|d| d.name.clone()).collect();
    for domain in &domains {
        journey.domain(domain).await?;
    }
    let report = journey.finish();

    if settings.format == crate::cli::Format::Psql {
        print!("{}", psql(&ctx.plan, &report)?);
    } else if out.is_json() {
        out.json("plan", &report);
    } else {
        out.line(&human(&report));
    }
    Ok(if !report.missing.is_empty() {
        exit::GATE_NOT_MET
    } else if report.pending > 0 {
        exit::CHANGES_PENDING
    } else {
        exit::SUCCESS
    })
}

/// The journey walked on the model: the plan and the catalog as each phase leaves
/// them.
struct Journey<'a> {
    settings: &'a Settings,
    ctx: &'a Context,
    through: JourneyPhase,
    plan: Plan,
    catalog: Catalog,
    report: Report,
    /// A phase under way stops the forecast: what it leaves is not known yet.
    stopped: bool,
    /// Domains without a server: they stay in the monolith.
    staying: Vec<String>,
}

impl Journey<'_> {
    fn state(&self, id: &PhaseId) -> Option<&PhaseRecord> {
        self.plan.phase(id).filter(|r| !r.is_undone())
    }

    /// Whether `domain` holds both parts of a split this journey only forecasts
    /// (not applied yet): its move copies what the split makes, exactly as the
    /// source will have it.
    fn split_forecast_in(&self, domain: &str) -> bool {
        let split_applied = self
            .ctx
            .plan
            .phase(split::PHASE)
            .is_some_and(|r| r.is_applied());
        !split_applied
            && move_domain::objects::joined_compat_views(&self.catalog, domain)
                .next()
                .is_some()
    }

    /// A phase recorded and not applied: its recorded steps, and nothing after it
    /// can be forecast.
    fn under_way(&mut self, id: &PhaseId, command: &str) -> bool {
        let Some(record) = self.state(id).filter(|r| !r.is_applied()) else {
            return false;
        };
        let steps = record.steps.clone();
        self.push(
            id,
            "under-way",
            steps,
            vec![format!(
                "under way: `carve {command}` finishes it (`carve status` shows each step); the phases after it are planned once it is done"
            )],
        );
        self.stopped = true;
        true
    }

    fn push(&mut self, id: &PhaseId, state: &'static str, steps: Vec<Step>, notes: Vec<String>) {
        if state != "check" {
            self.report.pending += steps.len();
        }
        self.report.phases.push(Section {
            phase: id.name.clone(),
            domain: id.domain.clone(),
            state,
            steps,
            notes,
        });
    }

    /// Records a phase as applied in the simulated plan, as its command would.
    fn applied(&mut self, id: PhaseId, gate: GateHints, steps: Vec<Step>) {
        let mut record = PhaseRecord::planned(id, String::new(), gate, steps);
        record.state = PhaseState::Applied;
        self.plan
            .phases
            .retain(|p| !(p.name == record.name && p.domain == record.domain));
        self.plan.phases.push(record);
    }

    fn assign(&mut self) -> anyhow::Result<()> {
        let id = PhaseId::from(assign::PHASE);
        if self.state(&id).is_some_and(|r| r.is_applied()) || self.under_way(&id, "assign") {
            return Ok(());
        }
        let planned =
            assign::plan(&self.plan, &self.catalog).map_err(|e| unplannable("assign", e))?;
        for o in planned.missing() {
            self.report.missing.push(Missing {
                subject: o.subject.clone(),
                why: o.why.clone(),
                choices: o.choices.clone(),
                default: Some(o.default.clone()),
            });
            // Later phases see the default, as `carve assign --yes` records it.
            self.plan.decisions.push(crate::plan::Decision {
                subject: o.subject.clone(),
                choice: o.default.clone(),
                reason: "carve plan: the default".into(),
                rows: None,
            });
        }
        self.push(&id, "pending", planned.steps.clone(), Vec::new());
        self.catalog = forecast::after_assign(&self.catalog, &planned);
        self.applied(
            id,
            GateHints {
                renames: planned.renames.clone(),
                creates_schemas: planned.creates_schemas.clone(),
                privileges: false,
                touches: Vec::new(),
            },
            planned.steps,
        );
        Ok(())
    }

    /// The plan's [[splits]], between assign and restrict: restrict is then planned
    /// on the parts.
    fn split(&mut self) -> anyhow::Result<()> {
        let id = PhaseId::from(split::PHASE);
        if self.plan.splits.is_empty()
            || self.through < JourneyPhase::Restrict
            || self.stopped
            || self.state(&id).is_some_and(|r| r.is_applied())
            || self.under_way(&id, "split")
        {
            return Ok(());
        }
        let planned =
            split::plan(&self.plan, &self.catalog).map_err(|e| unplannable("split", e))?;
        self.push(&id, "pending", planned.steps.clone(), Vec::new());
        self.catalog = forecast::after_split(&self.catalog, &planned.shapes);
        self.applied(id, planned.hints, planned.steps);
        Ok(())
    }

    async fn restrict(&mut self, args: &PlanArgs) -> anyhow::Result<()> {
        let id = PhaseId::from(restrict::PHASE);
        if self.through < JourneyPhase::Restrict || self.stopped {
            return Ok(());
        }
        if self.state(&id).is_some_and(|r| r.is_applied()) || self.under_way(&id, "restrict") {
            return Ok(());
        }
        let sources = Sources::check_or_recorded(&args.workload.options(), &self.plan)?;
        let workload = match sources
            .load(&self.ctx.source().watch, &self.ctx.catalog.server.database)
            .await?
        {
            Some(w) => w,
            None => {
                self.report.missing.push(Missing {
                    subject: "restrict: workload".into(),
                    why: "restrict grants what the workload shows each service doing, and the plan records no workload".into(),
                    choices: vec!["--workload (as for discover)".into()],
                    default: None,
                });
                return Ok(());
            }
        };
        let planned = restrict::plan(&self.plan, &self.catalog, &workload)
            .map_err(|e| unplannable("restrict", e))?;
        for c in planned.missing() {
            self.report.missing.push(Missing {
                subject: c.subject.clone(),
                why: format!(
                    "{} {} of the {} domain ({} statement(s))",
                    if c.write { "writes" } else { "reads" },
                    c.table,
                    c.table_domain.as_deref().unwrap_or("no"),
                    c.statements.len()
                ),
                choices: c.choices.clone(),
                default: None,
            });
        }
        let mut notes = Vec::new();
        let new_roles = planned.new_login_roles();
        if !new_roles.is_empty() {
            notes.push(format!(
                "{} new login role(s) get a password only with `carve restrict --password-file FILE` (a step each, not listed)",
                new_roles.len()
            ));
        }
        notes.push("its proof runs first: every statement of every service, as its role, in a transaction rolled back".into());
        self.push(&id, "pending", planned.steps.clone(), notes);
        self.catalog = forecast::after_restrict(&self.catalog, &planned.changes);
        self.applied(id, GateHints::default(), planned.steps);
        Ok(())
    }

    /// A domain's move, verify and cut-over.
    async fn domain(&mut self, name: &str) -> anyhow::Result<()> {
        if self.stopped || self.through < JourneyPhase::Move {
            return Ok(());
        }
        let domain = self
            .plan
            .domains
            .iter()
            .find(|d| d.name == name)
            .cloned()
            .expect("listed from the plan");
        let move_id = PhaseId::new(move_domain::PHASE, Some(name));
        let moved = self.state(&move_id).is_some_and(|r| r.is_applied());
        let Some(server) = domain.server.clone() else {
            self.staying.push(name.to_string());
            return Ok(());
        };
        let server_spec = ConnSpec::resolve(&server, &Environment::from_process())
            .map_err(|e| anyhow::anyhow!("the server of {name}: {e}"))?;
        self.report.touches.servers.insert(
            Target::Domain(name.into()).to_string(),
            server_spec.reference(),
        );
        let password_file = default_password_file(&self.settings.plan_path);
        if !moved {
            if self.under_way(&move_id, &format!("move --domain {name}")) {
                return Ok(());
            }
            if self.split_forecast_in(name) {
                self.report.notes.push(format!(
                    "the move of {name} is listed once `carve split` has run: it carries the split's view over both parts under the old name, with the key, triggers and functions the split makes, which are read from the source then"
                ));
                return Ok(());
            }
            let options = MoveOptions {
                link: link(
                    self.ctx,
                    domain.subscription_conninfo.as_deref(),
                    &password_file,
                )?,
                max_lag: move_domain::DEFAULT_MAX_LAG,
                copy_timeout: move_domain::DEFAULT_COPY_TIMEOUT,
                catch_up_timeout: move_domain::DEFAULT_CATCH_UP_TIMEOUT,
                reads: crate::commands::move_domain::copies(
                    self.settings,
                    self.ctx,
                    &self.catalog,
                    name,
                )
                .await?,
            };
            let steps = move_domain::steps(&self.catalog, name, &options);
            self.push(
                &move_id,
                "pending",
                steps.clone(),
                vec!["its preflight runs first: it reads both servers (versions, settings, slots, rows already there) and refuses with every reason at once".into()],
            );
            self.applied(move_id, GateHints::default(), steps);
        }
        if self.through < JourneyPhase::Verify {
            return Ok(());
        }
        // Cut over already: nothing left for this domain but retire.
        if domain
            .cutover
            .as_ref()
            .is_some_and(|c| c.settled_on(Side::Server))
        {
            return Ok(());
        }
        if domain.verified.is_none() || !moved {
            self.push(
                &PhaseId::new("verify", Some(name)),
                "check",
                Vec::new(),
                vec![format!(
                    "`carve verify --domain {name}`: every table compared on both servers by chunked checksums; changes nothing, and the cut-over's gate asks for it"
                )],
            );
        }
        if self.through < JourneyPhase::Cutover {
            return Ok(());
        }
        let cutover_id = PhaseId::new(cutover::CUTOVER, Some(name));
        if self.under_way(&cutover_id, &format!("cutover --domain {name}")) {
            return Ok(());
        }
        self.cutover(name, &domain, &server_spec, &password_file)
            .await
    }

    async fn cutover(
        &mut self,
        name: &str,
        domain: &crate::plan::Domain,
        server_spec: &ConnSpec,
        password_file: &std::path::Path,
    ) -> anyhow::Result<()> {
        let cutover_id = PhaseId::new(cutover::CUTOVER, Some(name));
        if domain.cutover.as_ref().is_some_and(|c| c.files.is_some()) {
            self.report.notes.push(format!(
                "the cut-over of {name} switches its clients by files: `carve cutover --domain {name} --dry-run` lists its steps"
            ));
            return Ok(());
        }
        let Some(console) = self
            .plan
            .consoles
            .iter()
            .find(|c| c.name == CONSOLE)
            .cloned()
        else {
            self.report.missing.push(Missing {
                subject: format!("cutover {name}: how its clients switch"),
                why: "the plan records no PgBouncer console, so carve does not know where the domain's clients connect".into(),
                choices: vec![
                    "pgbouncer (--pgbouncer CONN, recorded on first use)".into(),
                    "file (--switch file --connection-dir DIR)".into(),
                ],
                default: None,
            });
            return Ok(());
        };
        let console_spec = ConnSpec::resolve(&console.conninfo, &Environment::from_process())
            .map_err(|e| anyhow::anyhow!("PgBouncer's console: {e}"))?;
        // Where the domain's clients connect through PgBouncer is a question for
        // the user (an entry per service, or a file switch), not a failure of the
        // whole journey.
        let board = match fresh_board(
            self.settings,
            &self.plan,
            name,
            &[],
            None,
            &console_spec,
            server_spec,
        )
        .await
        {
            Ok(board) => board,
            Err(e) => {
                self.report.missing.push(Missing {
                    subject: format!("cutover {name}: how its clients switch"),
                    why: format!("{e:#}"),
                    choices: vec![
                        "pgbouncer (its services' `pgbouncer_entry`, or --entry NAME)".into(),
                        "file (--switch file --connection-dir DIR)".into(),
                    ],
                    default: None,
                });
                return Ok(());
            }
        };
        self.report.touches.servers.insert(
            Target::Console(CONSOLE.into()).to_string(),
            console_spec.reference(),
        );
        for entry in &board.entries {
            self.report.touches.pgbouncer_entries.push(format!(
                "{} (in {})",
                entry.name,
                board.file.display()
            ));
        }
        let to_source = link(
            self.ctx,
            domain.subscription_conninfo.as_deref(),
            password_file,
        )?;
        let to_server = link_to(
            server_spec,
            &server_spec.dbname,
            domain.reverse_conninfo.as_deref(),
            "--reverse-conninfo",
            password_file,
        )?;
        let crossings = cutover::crossings::drops(&self.catalog, name);
        let parts = crate::phases::move_domain::split_across::switch_steps(
            &self.catalog,
            name,
            Side::Server,
        );
        let options = SwitchOptions {
            to: Side::Server,
            clients: Clients::Pgbouncer(&board),
            links: Links {
                to_source: &to_source,
                to_server: &to_server,
            },
            freeze_timeout: cutover::DEFAULT_FREEZE_TIMEOUT,
            catch_up_timeout: cutover::DEFAULT_CATCH_UP_TIMEOUT,
            crossings: &crossings,
            parts: &parts,
        };
        let switch = cutover::switch(&self.catalog, name, &options);
        let point = switch
            .steps
            .get(switch.point_of_no_return)
            .map(|s| s.id.clone())
            .unwrap_or_default();
        self.push(
            &cutover_id,
            "pending",
            switch.steps.clone(),
            vec![
                format!("its gate runs first (readiness, lag, a clean verify, the proof on the server, room for the stream back, PgBouncer)"),
                format!("point of no return: step {} ({point}); before it a failure cancels the switch", switch.point_of_no_return + 1),
            ],
        );
        self.catalog = forecast::after_cutover(&self.catalog, name);
        self.applied(cutover_id, GateHints::default(), switch.steps);
        Ok(())
    }

    fn finish(mut self) -> Report {
        let source = self.ctx.spec.reference();
        self.report
            .touches
            .servers
            .insert(Target::Source.to_string(), source);
        if !self.staying.is_empty() {
            self.report.notes.push(format!(
                "{} domain(s) have no server in the plan and stay in the monolith: {} (`carve move --domain D --target CONN`, or `server` in their [[domains]], moves one)",
                self.staying.len(),
                self.staying.join(", ")
            ));
        }
        if self.through < JourneyPhase::Cutover {
            self.report
                .notes
                .push(format!("planned through {}", self.through.name()));
        }
        self.report.notes.push(
            "retire is not planned: it comes after a grace period, when you decide (`carve retire --domain D`)".into(),
        );
        self.report
    }
}

/// A phase that cannot be planned stops the listing, naming every problem.
fn unplannable(phase: &str, errors: Vec<String>) -> anyhow::Error {
    anyhow::anyhow!(
        "{phase} cannot be planned: {}; nothing was changed",
        errors.join("; ")
    )
}

/// The report for people.
fn human(report: &Report) -> String {
    let mut out = format!(
        "carve plan: database {}, through {}\n",
        report.database, report.through
    );
    for section in &report.phases {
        let what = match &section.domain {
            Some(d) => format!("{} {d}", section.phase),
            None => section.phase.clone(),
        };
        let targets: BTreeSet<String> =
            section.steps.iter().map(|s| s.target.to_string()).collect();
        let state = match section.state {
            "under-way" => " (under way)",
            _ => "",
        };
        if section.state == "check" {
            out.push_str(&format!("\n{what}: a check, no step\n"));
        } else {
            out.push_str(&format!(
                "\n{what}{state}: {} step(s) on {}\n",
                section.steps.len(),
                targets.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
        for (i, step) in section.steps.iter().enumerate() {
            out.push_str(&format!(
                "  {:>3}. {}: {}\n",
                i + 1,
                step.id,
                step.description
            ));
        }
        for note in &section.notes {
            out.push_str(&format!("  note: {note}\n"));
        }
    }
    if !report.missing.is_empty() {
        out.push_str(&format!(
            "\nDecisions missing ({}):\n",
            report.missing.len()
        ));
        for m in &report.missing {
            let default = m
                .default
                .as_ref()
                .map(|d| format!(" (--yes takes {d})"))
                .unwrap_or_default();
            out.push_str(&format!(
                "  - {}: {}\n      choices: {}{default}\n",
                m.subject,
                m.why,
                m.choices.join(", ")
            ));
        }
    }
    out.push_str("\nTouches:\n");
    for (target, at) in &report.touches.servers {
        out.push_str(&format!("  {target}: {at}\n"));
    }
    for entry in &report.touches.pgbouncer_entries {
        out.push_str(&format!("  PgBouncer entry {entry}\n"));
    }
    for note in &report.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    out.push_str(&format!(
        "\n{} step(s) to run in {} phase(s), {} decision(s) missing. Nothing was changed and no lock was taken (--format psql prints the steps as a script, --format json for review tools).",
        report.pending,
        report.phases.iter().filter(|s| s.state != "check").count(),
        report.missing.len()
    ));
    out
}

/// Every phase's steps as one psql script, each phase's part as its `--dry-run`
/// prints it.
fn psql(plan: &Plan, report: &Report) -> anyhow::Result<String> {
    let mut references = BTreeMap::new();
    for section in &report.phases {
        for step in &section.steps {
            if references.contains_key(&step.target) {
                continue;
            }
            let reference = match (&step.target, plan.conninfo(&step.target)) {
                (Target::Local, _) => "this machine".to_string(),
                (_, Some(conninfo)) => ConnSpec::resolve(conninfo, &Environment::from_process())
                    .map(|s| s.reference())
                    .unwrap_or_else(|_| conninfo.to_string()),
                (target, None) => anyhow::bail!("{target}: the plan does not say where it is"),
            };
            references.insert(step.target.clone(), reference);
        }
    }
    let mut text = String::new();
    for section in report.phases.iter().filter(|s| !s.steps.is_empty()) {
        let label = match &section.domain {
            Some(d) => format!("{} --domain {d}", section.phase),
            None => section.phase.clone(),
        };
        text.push_str(
            &script::render(&label, &section.steps, &references).map_err(|e| anyhow::anyhow!(e))?,
        );
        text.push('\n');
    }
    if !report.missing.is_empty() {
        text.push_str(&format!(
            "-- {} decision(s) missing: `carve plan` lists them; the phases after one stop until it is recorded.\n",
            report.missing.len()
        ));
    }
    Ok(text)
}
