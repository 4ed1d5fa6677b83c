//! `carve wizard`: the journey at a terminal. It reads the plan, says where the
//! journey stands, proposes what comes next (`plan::journey::next`), asks for what
//! that needs, and runs it as the real command would (carve itself, as a child, on
//! this terminal: its progress bars and questions shown as they are). Everything it
//! learns goes into the plan, so stopping at any prompt (or Ctrl-C) loses nothing:
//! `carve wizard` again picks up where the plan says.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::process::Command;

use dialoguer::{Confirm, Input, Select};

use crate::cli::{Settings, WizardArgs};
use crate::exit;
use crate::plan::journey::{self, Next};
use crate::plan::{phase_names, PhaseId, Plan};

/// Why the wizard ends.
enum End {
    Stopped,
    Interrupted,
}

/// A dialoguer answer, or the end of the session (Ctrl-C, Esc, or a closed
/// terminal).
fn answer<T>(result: dialoguer::Result<T>) -> Result<T, End> {
    result.map_err(|_| End::Interrupted)
}

pub async fn run(settings: &Settings, args: &WizardArgs) -> anyhow::Result<u8> {
    let out = &settings.out;
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) || out.is_json() {
        out.error("carve wizard asks its questions on a terminal, and there is none here");
        out.warn(
            "in a pipeline, run a playbook (`carve run PLAYBOOK.toml`, see playbooks/) or each phase with --yes: carve discover, assign, restrict, move, verify, cutover",
        );
        return Ok(exit::ERROR);
    }
    let mut skipped = BTreeSet::new();
    loop {
        match turn(settings, args, &mut skipped) {
            Ok(Some(code)) => return Ok(code),
            Ok(None) => continue,
            Err(End::Stopped) => {
                out.line("stopped here; `carve wizard` goes on from this point, as the plan says");
                return Ok(exit::SUCCESS);
            }
            Err(End::Interrupted) => {
                out.warn("stopped at a prompt; nothing was left half-done. `carve wizard` goes on from here");
                return Ok(exit::INTERRUPTED);
            }
        }
    }
}

/// One turn: where the journey stands, the next step, and running it. Some(code)
/// ends the session.
fn turn(
    settings: &Settings,
    args: &WizardArgs,
    skipped: &mut BTreeSet<String>,
) -> Result<Option<u8>, End> {
    let out = &settings.out;
    let plan = Plan::load_if_exists(&settings.plan_path).map_err(|e| {
        out.error(&format!("{e}"));
        End::Stopped
    })?;
    out.line("");
    out.line(&standing(plan.as_ref()));
    let next = journey::next(plan.as_ref(), skipped);
    let (what, command) = match &next {
        Next::Done => {
            out.line("Nothing more to propose: every domain moved so far is cut over (`carve status` shows the details).");
            return Ok(Some(exit::SUCCESS));
        }
        Next::Discover => {
            let default = args
                .source
                .clone()
                .or_else(|| std::env::var("CARVE_SOURCE").ok())
                .unwrap_or_default();
            let source: String = answer(
                Input::new()
                    .with_prompt("The monolith (a libpq connection string, no password)")
                    .with_initial_text(default)
                    .interact_text(),
            )?;
            let workload: String = answer(
                Input::new()
                    .with_prompt("Its workload: SQL files, server logs or pg_stat_statements (empty: none)")
                    .allow_empty(true)
                    .interact_text(),
            )?;
            let mut command = vec!["discover".to_string(), "--source".into(), source];
            if !workload.trim().is_empty() {
                command.extend(["--workload".to_string(), workload.trim().to_string()]);
            }
            ("Find the data domains (carve discover)".to_string(), command)
        }
        Next::Assign => (
            "Move each domain's tables into a schema of its own, with compatibility views (carve assign)".to_string(),
            vec!["assign".to_string()],
        ),
        Next::Split => {
            let plan = plan.as_ref().expect("a plan by now");
            for s in &plan.splits {
                out.line(&format!(
                    "  {} gives {} to a new table {}{}",
                    s.table,
                    s.columns.join(", "),
                    s.part,
                    s.domain
                        .as_deref()
                        .map(|d| format!(" in {d}"))
                        .unwrap_or_default()
                ));
            }
            (
                "Split each jointly written table in two, online, the old name a view over both (carve split)".to_string(),
                vec!["split".to_string()],
            )
        }
        Next::Restrict => {
            let default = settings.plan_path.with_extension("service-passwords");
            let file: String = answer(
                Input::new()
                    .with_prompt("Where the new login roles' passwords go (mode 0600)")
                    .with_initial_text(default.display().to_string())
                    .interact_text(),
            )?;
            (
                "Give each service a login role that reaches its own domain (carve restrict)".to_string(),
                vec!["restrict".to_string(), "--password-file".into(), file],
            )
        }
        Next::Move(domain) => {
            let plan = plan.as_ref().expect("a plan by now");
            let domain = match domain {
                Some(d) => d.clone(),
                None => match pick_domain(plan)? {
                    Some(d) => d,
                    None => {
                        skipped.insert(next.key());
                        return Ok(None);
                    }
                },
            };
            decide_crossings(settings, plan)?;
            let mut command = vec!["move".to_string(), "--domain".into(), domain.clone()];
            if plan.domains.iter().all(|d| d.name != domain || d.server.is_none()) {
                let target: String = answer(
                    Input::new()
                        .with_prompt(format!("The new server's database for {domain} (a libpq connection string)"))
                        .interact_text(),
                )?;
                command.extend(["--target".to_string(), target]);
            }
            (format!("Move {domain} to its own server (carve move)"), command)
        }
        Next::Verify(domain) => (
            format!("Compare {domain} on both servers, row by row in chunks (carve verify)"),
            vec!["verify".to_string(), "--domain".into(), domain.clone()],
        ),
        Next::Cutover(domain) => {
            let plan = plan.as_ref().expect("a plan by now");
            let mut command = vec!["cutover".to_string(), "--domain".into(), domain.clone()];
            let console = plan.consoles.iter().find(|c| c.name == "pgbouncer");
            if console.is_none() {
                let conninfo: String = answer(
                    Input::new()
                        .with_prompt("PgBouncer's admin console (a libpq connection string, dbname=pgbouncer)")
                        .interact_text(),
                )?;
                command.extend(["--pgbouncer".to_string(), conninfo]);
            }
            let under_way = plan
                .domains
                .iter()
                .any(|d| d.name == *domain && d.cutover.as_ref().is_some_and(|c| c.switching.is_some()));
            if !under_way {
                let entry: String = answer(
                    Input::new()
                        .with_prompt(format!("The PgBouncer entry {domain}'s clients connect through"))
                        .with_initial_text(domain.clone())
                        .interact_text(),
                )?;
                command.extend(["--entry".to_string(), entry]);
            }
            (
                format!("Switch {domain}'s clients to its server through PgBouncer (carve cutover)"),
                command,
            )
        }
    };
    out.line(&format!("Next: {what}"));
    loop {
        let choice = answer(
            Select::new()
                .with_prompt(format!("carve {}", command.join(" ")))
                .items([
                    "do it",
                    "show what it will do first (its dry-run)",
                    "skip it",
                    "stop here",
                ])
                .default(0)
                .interact(),
        )?;
        match choice {
            0 => break,
            1 => {
                let mut dry = command.clone();
                dry.push("--dry-run".into());
                child(settings, &dry);
            }
            2 => {
                skipped.insert(next.key());
                return Ok(None);
            }
            _ => return Err(End::Stopped),
        }
    }
    let code = child(settings, &command);
    if code == exit::SUCCESS {
        return Ok(None);
    }
    out.warn(&format!(
        "carve {} ended with exit {code} (above); fix what it says and run `carve wizard` again to go on",
        command[0]
    ));
    Ok(Some(code))
}

/// carve itself on this terminal, with --yes (the wizard asked already).
fn child(settings: &Settings, args: &[String]) -> u8 {
    let Ok(exe) = std::env::current_exe() else {
        return exit::ERROR;
    };
    let status = Command::new(exe)
        .arg("--plan")
        .arg(&settings.plan_path)
        .arg("--yes")
        .args(args)
        .status();
    match status {
        Ok(s) => s
            .code()
            .and_then(|c| u8::try_from(c).ok())
            .unwrap_or(exit::ERROR),
        Err(_) => exit::ERROR,
    }
}

/// A domain not moved yet, largest first, or None (move none for now).
fn pick_domain(plan: &Plan) -> Result<Option<String>, End> {
    let mut domains: Vec<&crate::plan::Domain> = plan
        .domains
        .iter()
        .filter(|d| {
            !plan
                .phase(PhaseId::new(phase_names::MOVE, Some(&d.name)))
                .is_some_and(|r| r.is_applied())
        })
        .collect();
    domains.sort_by_key(|d| std::cmp::Reverse(d.tables.len()));
    let mut items: Vec<String> = domains
        .iter()
        .map(|d| format!("{} ({} tables)", d.name, d.tables.len()))
        .collect();
    items.push("none for now".into());
    let choice = answer(
        Select::new()
            .with_prompt("Which domain moves to its own server next?")
            .items(&items)
            .default(0)
            .interact(),
    )?;
    Ok(domains.get(choice).map(|d| d.name.clone()))
}

/// Objects assign kept across domains until the move: the move refuses them, so the
/// person decides here (recorded in the plan) to let them go at the move.
fn decide_crossings(settings: &Settings, plan: &Plan) -> Result<(), End> {
    let kept = plan.kept_until_move();
    if kept.is_empty() {
        return Ok(());
    }
    settings.out.line(&format!(
        "{} object(s) cross domains and were kept until the move ({}{}); a move refuses them, since they cannot work across two servers.",
        kept.len(),
        kept.iter().take(3).copied().collect::<Vec<_>>().join(", "),
        if kept.len() > 3 { ", …" } else { "" }
    ));
    let drop = answer(
        Confirm::new()
            .with_prompt("Let them go at the move (drop-at-move, recorded in the plan)?")
            .default(false)
            .interact(),
    )?;
    if !drop {
        return Ok(());
    }
    let mut plan = plan.clone();
    plan.let_kept_crossings_go("decided in carve wizard: let go when the domain moves");
    plan.save(&settings.plan_path).map_err(|e| {
        settings.out.error(&format!("{e}"));
        End::Stopped
    })
}

/// Where the journey stands, for people.
fn standing(plan: Option<&Plan>) -> String {
    let Some(plan) = plan else {
        return "Where the journey stands: no plan yet.".into();
    };
    let state = |name: &str, domain: Option<&str>| {
        plan.phase(PhaseId::new(name, domain))
            .map_or("not started", |r| r.state.word())
    };
    let mut lines = vec![format!(
        "Where the journey stands ({} domain(s)): assign {}, restrict {}",
        plan.domains.len(),
        state(phase_names::ASSIGN, None),
        state(phase_names::RESTRICT, None)
    )];
    for d in &plan.domains {
        let moved = state(phase_names::MOVE, Some(&d.name));
        if moved == "not started" {
            continue;
        }
        let clients = match &d.cutover {
            Some(c) if c.switching.is_some() => "a switch under way".to_string(),
            Some(c) => format!("clients on {}", c.live.word()),
            None => "clients on the source".to_string(),
        };
        lines.push(format!(
            "  {}: move {moved}, {}, {clients}",
            d.name,
            match &d.verified {
                Some(v) => format!("verified at {}", v.at),
                None => "not verified".to_string(),
            }
        ));
    }
    lines.join("\n")
}
