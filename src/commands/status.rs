//! `carve status`: what the plan file says has been done, phase by phase and step by
//! step (done, pending, failed with its error, undone), and for a move in place
//! where its replication stands on both servers (read-only).

use serde::Serialize;

use crate::catalog::replication::{self, SlotState, SubscriptionState};
use crate::cli::{Settings, StatusArgs};
use crate::commands::phase::load_plan;
use crate::engine::Target;
use crate::exit;
use crate::phases::move_domain::replication::Names;
use crate::plan::{phase_names, PhaseState, Plan, StepStatus};

#[derive(Serialize)]
struct PhaseReport<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    domain: Option<&'a str>,
    state: PhaseState,
    steps: Vec<StepReport<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replication: Option<Replication>,
    /// A moved domain's last clean verify.
    #[serde(skip_serializing_if = "Option::is_none")]
    verified: Option<&'a crate::plan::Verified>,
    /// Where a moved domain's clients are, and a switch under way.
    #[serde(skip_serializing_if = "Option::is_none")]
    cutover: Option<&'a crate::plan::Cutover>,
}

/// A move's replication as the servers show it now.
#[derive(Serialize, Default)]
struct Replication {
    /// `back`: the domain was cut over, and the stream runs from its server to the
    /// source (the slot is on its server, the subscription on the source).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    back: bool,
    /// After retire: the tables the stream back still keeps on the source for the
    /// services that read them (`replicate`); empty when the stream is gone.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    kept: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subscription: Option<SubscriptionState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    slot: Option<SlotState>,
    /// The stream from the source that keeps the domain's copies of other domains'
    /// columns its services read (`replicate`), when the move made one.
    #[serde(skip_serializing_if = "Option::is_none")]
    copies: Option<Box<Replication>>,
    /// What could not be read (a server unreachable).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    problems: Vec<String>,
}

impl Replication {
    /// Reads the slot of `names` on the publisher and its subscription on the
    /// subscriber into `self`, or what could not be read.
    async fn read(
        &mut self,
        names: &Names,
        (publisher, publisher_name): (&Result<tokio_postgres::Client, String>, &str),
        (subscriber, subscriber_name): (&Result<tokio_postgres::Client, String>, &str),
    ) {
        match publisher {
            Ok(client) => match replication::slot(client, &names.slot).await {
                Ok(slot) => self.slot = slot,
                Err(e) => self.problems.push(format!("{publisher_name}: {e:#}")),
            },
            Err(e) => self.problems.push(format!("{publisher_name}: {e}")),
        }
        match subscriber {
            Ok(client) => match replication::subscription(client, &names.subscription).await {
                Ok(subscription) => self.subscription = subscription,
                Err(e) => self.problems.push(format!("{subscriber_name}: {e:#}")),
            },
            Err(e) => self.problems.push(format!("{subscriber_name}: {e}")),
        }
    }
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

/// Opens one connection, or says why not.
async fn connect(conninfo: &str) -> Result<tokio_postgres::Client, String> {
    super::connect(conninfo).await.map_err(|e| format!("{e:#}"))
}

/// Each move in place (of `domain`, or all): its replication read from the source
/// and the domain's server; and carve's slots on the source that no move owns.
async fn live(
    plan: &Plan,
    domain: Option<&str>,
) -> (Vec<(String, Replication)>, Vec<SlotState>, Option<String>) {
    let moves: Vec<&str> = plan
        .phases
        .iter()
        .filter(|r| r.name == phase_names::MOVE && !r.is_undone())
        .filter_map(|r| r.domain.as_deref())
        .collect();
    let mut out = Vec::new();
    let source = connect(&plan.source.conninfo).await;
    for d in moves.iter().filter(|d| domain.is_none_or(|x| x == **d)) {
        // After a cut-over the stream runs back: slot on the server, subscription on
        // the source.
        let cutover = plan
            .domains
            .iter()
            .find(|x| x.name == *d)
            .and_then(|x| x.cutover.as_ref());
        let back = cutover.is_some_and(|c| c.settled_on(crate::plan::Side::Server));
        let names = if back { Names::back(d) } else { Names::of(d) };
        let mut found = Replication {
            back,
            kept: cutover
                .and_then(|c| c.retired.as_ref())
                .map(|r| r.kept.clone())
                .unwrap_or_default(),
            ..Replication::default()
        };
        let server = match plan.conninfo(&Target::Domain(d.to_string())) {
            None => Err("the plan records no server for it".to_string()),
            Some(conninfo) => connect(conninfo).await,
        };
        let (publisher, subscriber) = if back {
            (&server, &source)
        } else {
            (&source, &server)
        };
        let (publisher_name, subscriber_name) = if back {
            ("its server", "source")
        } else {
            ("source", "its server")
        };
        found
            .read(
                &names,
                (publisher, publisher_name),
                (subscriber, subscriber_name),
            )
            .await;
        // The copies' stream always runs from the source to the domain's server.
        let mut copies = Replication::default();
        copies
            .read(
                &Names::reads(d),
                (&source, "source"),
                (&server, "its server"),
            )
            .await;
        if copies.slot.is_some() || copies.subscription.is_some() {
            found.copies = Some(Box::new(copies));
        }
        out.push((d.to_string(), found));
    }
    let owned: Vec<String> = moves
        .iter()
        .flat_map(|d| [Names::of(d).slot, Names::reads(d).slot])
        .collect();
    let (orphans, problem) = match &source {
        Ok(client) => match replication::slots(client, "carve_").await {
            Ok(all) => (
                all.into_iter()
                    .filter(|s| !owned.contains(&s.name))
                    .collect(),
                None,
            ),
            Err(e) => (Vec::new(), Some(format!("{e:#}"))),
        },
        Err(e) => (Vec::new(), Some(e.clone())),
    };
    (out, orphans, problem)
}

pub async fn run(settings: &Settings, args: &StatusArgs) -> anyhow::Result<u8> {
    let plan = load_plan(&settings.plan_path)?;
    // Only a plan that has moved (or cancelled a move) has anything to look at on
    // the servers: slots of moves in place, or left behind by one.
    let has_moves = plan.phases.iter().any(|r| r.name == phase_names::MOVE);
    let (mut live, orphans, source_problem) = if has_moves && !args.offline {
        live(&plan, args.domain.as_deref()).await
    } else {
        (Vec::new(), Vec::new(), None)
    };
    let phases: Vec<PhaseReport> = plan
        .phases
        .iter()
        .filter(|r| r.domain.is_none() || args.domain.is_none() || r.domain == args.domain)
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
            verified: r
                .domain
                .as_ref()
                .filter(|_| r.name == phase_names::MOVE && !r.is_undone())
                .and_then(|d| plan.domains.iter().find(|x| &x.name == d))
                .and_then(|d| d.verified.as_ref()),
            cutover: r
                .domain
                .as_ref()
                .filter(|_| r.name == phase_names::MOVE && !r.is_undone())
                .and_then(|d| plan.domains.iter().find(|x| &x.name == d))
                .and_then(|d| d.cutover.as_ref()),
            replication: (r.name == phase_names::MOVE && !r.is_undone())
                .then(|| {
                    let at = live
                        .iter()
                        .position(|(d, _)| Some(d.as_str()) == r.domain.as_deref())?;
                    Some(live.swap_remove(at).1)
                })
                .flatten(),
        })
        .collect();
    if settings.out.is_json() {
        #[derive(Serialize)]
        struct Report<'a> {
            plan: String,
            domains: usize,
            phases: &'a [PhaseReport<'a>],
            /// carve's slots on the source that no move in place owns.
            #[serde(skip_serializing_if = "<[_]>::is_empty")]
            orphaned_slots: &'a [SlotState],
        }
        settings.out.json(
            "status",
            &Report {
                plan: settings.plan_path.display().to_string(),
                domains: plan.domains.len(),
                phases: &phases,
                orphaned_slots: &orphans,
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
        if let Some(replication) = &p.replication {
            out.line(&render_replication(replication));
        }
        if let Some(v) = p.verified {
            out.line(&format!(
                "  verified: every row the same on both servers at {} ({} rows in {} table(s))",
                v.at, v.rows, v.tables
            ));
        }
        if let Some(c) = p.cutover {
            out.line(&render_cutover(c, p.domain.unwrap_or_default()));
        }
    }
    if let Some(problem) = source_problem {
        settings.out.warn(&format!(
            "could not look for replication slots on the source: {problem}"
        ));
    }
    for slot in &orphans {
        settings.out.warn(&format!(
            "replication slot {} on the source belongs to no move in place: it keeps {} of WAL on the source's disk until it is dropped (SELECT pg_drop_replication_slot('{}'); once no subscription uses it)",
            slot.name,
            bytes(slot.retained_bytes),
            slot.name
        ));
    }
    Ok(exit::SUCCESS)
}

fn bytes(n: Option<i64>) -> String {
    match n {
        None => "unknown".into(),
        Some(n) if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1 << 20)),
        Some(n) if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        Some(n) => format!("{n} bytes"),
    }
}

/// A move's replication, for people.
fn render_replication(r: &Replication) -> String {
    render_stream(r, None)
}

/// One stream of a move, under `heading` or the one its direction and state give.
fn render_stream(r: &Replication, heading: Option<&str>) -> String {
    let (publisher, subscriber) = if r.back {
        ("its server", "the source")
    } else {
        ("the source", "its server")
    };
    let mut lines = vec![if let Some(heading) = heading {
        heading.to_string()
    } else if !r.kept.is_empty() {
        format!(
            "  columns kept on the source for the services that read them ({}), fed from its server, as the servers show it now:",
            r.kept.join(", ")
        )
    } else if r.back {
        "  replication back to the source (its clients are on its server), as the servers show it now:".to_string()
    } else {
        "  replication, as the servers show it now:".to_string()
    }];
    match &r.slot {
        Some(slot) => lines.push(format!(
            "    slot {} on {publisher}: {}, {} behind, {} of WAL kept{}",
            slot.name,
            if slot.active { "in use" } else { "NOT IN USE" },
            bytes(slot.lag_bytes),
            bytes(slot.retained_bytes),
            slot.wal_status
                .as_deref()
                .filter(|w| *w != "reserved")
                .map(|w| format!(" (wal_status {w})"))
                .unwrap_or_default()
        )),
        None if r.problems.is_empty() => lines.push(format!("    no slot on {publisher}")),
        None => {}
    }
    match &r.subscription {
        Some(sub) => {
            lines.push(format!(
                "    subscription on {subscriber}: {}, worker {}, {} apply error(s), {} copy error(s){}",
                if sub.enabled { "enabled" } else { "DISABLED (nothing follows: ALTER SUBSCRIPTION … ENABLE on its server)" },
                if sub.worker_alive { "running" } else { "not running" },
                sub.apply_errors,
                sub.sync_errors,
                sub.last_contact_secs
                    .map(|s| format!(", last heard from {publisher} {s:.1} s ago"))
                    .unwrap_or_default()
            ));
            for t in &sub.tables {
                let progress = match (t.copied_bytes, t.total_bytes) {
                    (Some(done), Some(total)) if total > 0 => {
                        format!(" ({} of {})", bytes(Some(done)), bytes(Some(total)))
                    }
                    _ => String::new(),
                };
                lines.push(format!("      {:<12} {}{progress}", t.state, t.table));
            }
        }
        None if r.problems.is_empty() => lines.push(format!("    no subscription on {subscriber}")),
        None => {}
    }
    for p in &r.problems {
        lines.push(format!("    could not read {p}"));
    }
    if let Some(copies) = &r.copies {
        lines.push(render_stream(
            copies,
            Some("  copies of other domains' columns its services read (replicate), fed from the source, as the servers show it now:"),
        ));
    }
    lines.join("\n")
}

/// Where a moved domain's clients are, for people.
fn render_cutover(c: &crate::plan::Cutover, domain: &str) -> String {
    let mut text = format!("  clients: on {}", c.live.word());
    if !c.since.is_empty() {
        text.push_str(&format!(" since {}", c.since));
    }
    if let Some(ms) = c.pause_ms {
        text.push_str(&format!(" (the switch paused writes {ms} ms)"));
    }
    if let Some(s) = &c.switching {
        let command = crate::phases::cutover::phase_name(s.to);
        text.push_str(&format!(
            "\n  switching to {} since {}: {}",
            s.to.word(),
            s.started,
            if s.committed.is_some() {
                format!("past its point of no return; `carve {command} --domain {domain}` finishes it")
            } else {
                format!("`carve {command} --domain {domain}` finishes it, `carve {command} --domain {domain} --abort` cancels it")
            }
        ));
    }
    text
}
