//! `carve move --domain D --target CONN`: copy a domain's schema to its own server
//! and keep it in step. Planning and the preflight are `phases::move_domain` (pure);
//! this file records the domain's server, reads the facts the preflight weighs,
//! asks, records the phase (one record per domain) and runs it through the engine.

use std::path::{Path, PathBuf};

use crate::catalog::facts::{non_empty_tables, user_types, ServerFacts};
use crate::cli::{MoveArgs, Settings};
use crate::commands::phase::{self, Context};
use crate::conn::password::PasswordFile;
use crate::conn::{ConnInfo, ConnSpec, Environment};
use tokio_postgres::Client;

use crate::engine::proof;
use crate::engine::Target;
use crate::exit;
use crate::phases::cutover::replica::{self, Replica};
use crate::phases::move_domain::preflight::{self, Acceptances, TargetFacts};
use crate::phases::move_domain::replication::Link;
use crate::phases::move_domain::{self, MoveOptions, PHASE};
use crate::phases::restrict;
use crate::plan::PhaseId;
use crate::sql::display_ident;

pub async fn run(settings: &Settings, args: &MoveArgs) -> anyhow::Result<u8> {
    let out = &settings.out;
    let mut plan = phase::load_plan(&settings.plan_path)?;
    let domain = args.domain.clone();
    let id = PhaseId::new(PHASE, Some(&domain));
    let position = phase::find_domain(settings, &plan, &domain)?;
    if !plan
        .phase(crate::phases::assign::PHASE)
        .is_some_and(|r| r.is_applied())
    {
        anyhow::bail!(
            "move copies the domain schema assign makes: run `carve assign` first (carve status shows the phases)"
        );
    }
    // Once cut over, the streams are the cut-over's: its switch dropped the
    // subscription this move made, and running the move's steps again would copy
    // the source's rows into the live side.
    if let Some(cutover) = &plan.domains[position].cutover {
        if plan.phase(&id).is_some_and(|r| r.is_applied()) {
            settings.out.line(&format!(
                "{domain} was moved and cut over (its clients are on {}): nothing for move to do. `carve status --domain {domain}` shows its streams; `carve rollback` or `carve retire` come next",
                cutover.live.word()
            ));
            return Ok(exit::SUCCESS);
        }
    }
    let recorded = plan.steps_in_place(&id);
    let started = recorded.is_some();
    // The domain's server: --target, or the one the plan records. A move under way
    // keeps its server (its steps and subscription are there).
    let recorded_server = plan.domains[position].server.clone();
    let server = match (&args.target, &recorded_server) {
        (Some(given), Some(kept)) if started && !same_server(given, kept) => {
            anyhow::bail!(
                "the move of {domain} is under way to {kept}; finish it there, or cancel it (`carve undo move --domain {domain}`) before moving to another server"
            )
        }
        (Some(given), _) => given.clone(),
        (None, Some(kept)) => kept.clone(),
        (None, None) => anyhow::bail!(
            "where does {domain} go? Pass --target CONN (a libpq connection string to the new server's database, as a superuser)"
        ),
    };
    let target_spec = ConnSpec::resolve(&server, &Environment::from_process())
        .map_err(|e| anyhow::anyhow!("--target: {e}"))?;
    plan.domains[position].server = Some(target_spec.reference());
    // A rollback or an abort makes this stream again: it must reach the source the
    // same way (the option holds no password: `link` refuses one).
    let subscription_conninfo = args
        .subscription_conninfo
        .clone()
        .or_else(|| plan.domains[position].subscription_conninfo.clone());
    let password_file = match &args.password_file {
        Some(path) => path.clone(),
        None => default_password_file(&settings.plan_path),
    };
    PasswordFile::check(&password_file)?;

    let mut ctx = match phase::open(settings, &args.apply, plan).await? {
        Ok(ctx) => ctx,
        Err(code) => return Ok(code),
    };
    if let Some(code) = phase::ready(settings, &ctx, &id, args.apply.dry_run) {
        return Ok(code);
    }
    let steps = match recorded {
        Some(steps) => steps,
        None => {
            let link = link(&ctx, subscription_conninfo.as_deref(), &password_file)?;
            let d = &mut ctx.plan.domains[position];
            d.subscription_conninfo = subscription_conninfo.clone();
            let reads = copies(settings, &ctx, &ctx.catalog, &domain).await?;
            let options = MoveOptions {
                link,
                max_lag: args.max_lag,
                copy_timeout: args.copy_timeout,
                catch_up_timeout: args.catch_up_timeout,
                reads,
            };
            move_domain::steps(&ctx.catalog, &domain, &options)
        }
    };
    let on_target = Target::Domain(domain.clone());
    if let Some(code) =
        phase::connect_targets(settings, &mut ctx, &steps, args.apply.dry_run).await?
    {
        return Ok(code);
    }
    // The preflight weighs a move not yet started: once its steps run, the target's
    // tables fill and the source has the move's slot, by design.
    if !started {
        let accepted = Acceptances {
            unlimited_slot_wal: args.accept_unlimited_slot_wal,
            long_transaction_secs: args.max_transaction_age.as_secs_f64(),
        };
        let refusals = refusals(&ctx, &domain, &on_target, &accepted).await?;
        if !refusals.is_empty() {
            return Ok(phase::refused(
                settings,
                &refusals,
                refusals.iter().map(|r| r.what.clone()),
                &format!(
                    "the move of {domain} cannot start: {} reason(s) above. Nothing was changed on either server, nor in the plan",
                    refusals.len()
                ),
            ));
        }
    }
    if args.apply.dry_run {
        return phase::dry_run(settings, &ctx, &id.to_string(), &steps).await;
    }
    let question = format!(
        "Move {domain} to {}: {} step(s) on both servers, the services keep using the monolith? Each is checkpointed and `carve undo move --domain {domain}` cancels it",
        ctx.references[&on_target],
        steps.len()
    );
    if !phase::confirm(settings, &question)? {
        out.warn("not started; nothing was changed");
        return Ok(exit::ERROR);
    }
    if !started {
        phase::record_planned(&mut ctx.plan, &id, ctx.fingerprint.digest.clone(), &steps);
        // What the move changes on the source besides privileges: a split's table
        // whose parts stay there gets a trigger.
        if let Some(record) = ctx.plan.phase_mut(&id) {
            record.gate.touches = move_domain::source_touches(&ctx.catalog, &domain);
        }
    }
    let (ran, skipped) = match phase::apply_phase(settings, &mut ctx, &id, &steps, &args.apply)
        .await?
    {
        Ok(counts) => counts,
        Err(code) => {
            if code == exit::ERROR {
                out.warn(&format!(
                        "if the subscription stopped on an apply error, the target's log and `carve status --domain {domain}` say which table; fix the cause, then `ALTER SUBSCRIPTION … ENABLE` on the target and run the same command again"
                    ));
            }
            return Ok(code);
        }
    };
    let proof =
        prove_on_target(settings, &ctx, &domain, &on_target, args.apply.lock_timeout).await?;
    let unexpected = proof
        .as_ref()
        .map_or(0, |p| p.iter().filter(|r| r.is_unexpected()).count());
    if out.is_json() {
        #[derive(serde::Serialize)]
        struct Report<'a> {
            domain: &'a str,
            state: &'static str,
            server: &'a str,
            ran: usize,
            skipped: usize,
            /// restrict's proof on the new server (absent without restrict).
            #[serde(skip_serializing_if = "Option::is_none")]
            proof: Option<&'a [proof::ProbeResult]>,
            failing_statements: usize,
        }
        out.json(
            "move",
            &Report {
                domain: &domain,
                state: "ready",
                server: &ctx.references[&on_target],
                ran,
                skipped,
                proof: proof.as_deref(),
                failing_statements: unexpected,
            },
        );
    } else {
        out.line(&format!(
            "move of {domain}: ready ({ran} step(s) run, {skipped} already in place). Its server follows every change the services make on the monolith; they still use the monolith until cut-over. `carve undo move --domain {domain}` cancels it."
        ));
        if let Some(results) = &proof {
            out.line(&format!(
                "\non the new server, as the services of {domain} will run there:{}",
                crate::ui::restrict::render_proof(results)
            ));
        }
    }
    if unexpected > 0 {
        out.warn(&format!(
            "{unexpected} statement(s) of {domain}'s services fail on the new server and no decision asks for it (listed above): the move is ready, but those services would break at cut-over; fix them first (a table they need from another domain: decide api, replicate or delegate; a function they call: move it with the domain)"
        ));
    }
    Ok(exit::SUCCESS)
}

/// The other domains' columns `domain`'s services read by a `replicate` decision,
/// which its server gets a copy of (said on the terminal). Tables whose own domain
/// is on that same server are left out: the services read them there.
pub(crate) async fn copies(
    settings: &Settings,
    ctx: &Context,
    catalog: &crate::catalog::Catalog,
    domain: &str,
) -> anyhow::Result<Vec<Replica>> {
    let plan = &ctx.plan;
    let server_of = |name: &str| {
        plan.domains
            .iter()
            .find(|d| d.name == name)
            .and_then(|d| d.server.clone())
    };
    let here = server_of(domain);
    let place = format!("copied to the {} server", display_ident(domain));
    phase::replicated_reads(settings, ctx, &place, |workload| {
        let services = services_of(plan, catalog, workload, domain);
        let mut copies = replica::read_by(plan, catalog, workload, domain, &services)?;
        copies.retain(|c| here.is_none() || server_of(&c.table.schema) != here);
        Ok(copies)
    })
    .await
}

/// The services whose home domain is `domain`, as restrict plans them: the plan's
/// `[[services]] domain`, else the domain whose tables each writes most.
fn services_of(
    plan: &crate::plan::Plan,
    catalog: &crate::catalog::Catalog,
    workload: Option<&crate::workload::Workload>,
    domain: &str,
) -> Vec<String> {
    let named = || {
        plan.services
            .iter()
            .filter(|s| s.domain.as_deref() == Some(domain))
            .map(|s| s.name.clone())
            .collect()
    };
    let Some(workload) = workload else {
        return named();
    };
    match restrict_planned(plan, catalog, workload) {
        Ok(planned) => planned
            .services
            .into_iter()
            .filter(|s| s.domain == domain)
            .map(|s| s.service)
            .collect(),
        Err(_) => named(),
    }
}

/// restrict planned again: as it was applied (on the catalog before it, for its
/// roles and probes), or as it would be.
fn restrict_planned(
    plan: &crate::plan::Plan,
    catalog: &crate::catalog::Catalog,
    workload: &crate::workload::Workload,
) -> Result<restrict::RestrictPlan, Vec<String>> {
    match plan.phase(restrict::PHASE).filter(|r| r.is_applied()) {
        Some(applied) => restrict::plan(
            plan,
            &restrict::catalog_before(catalog, &applied.steps),
            workload,
        ),
        None => restrict::plan(plan, catalog, workload),
    }
}

/// restrict's proof, on the domain's new server: every statement of the domain's
/// services prepared and explained there as its role, with the `search_path` the
/// move gave it. None without restrict (no service roles) or a recorded workload.
pub(crate) async fn prove_on_target(
    settings: &Settings,
    ctx: &Context,
    domain: &str,
    on_target: &Target,
    lock_timeout: std::time::Duration,
) -> anyhow::Result<Option<Vec<proof::ProbeResult>>> {
    let prelude = format!(
        "SET LOCAL search_path = {};",
        move_domain::objects::search_path(domain)
    );
    prove_services(
        settings,
        ctx,
        ("the new server", on_target),
        (&prelude, &[]),
        |_, home| home == domain,
        lock_timeout,
    )
    .await
}

/// restrict's proof, on `on` (named for people): every statement of the services
/// `which(service, home domain)` picks, prepared and explained there as its role
/// after `prelude` and `steps`, in a transaction always rolled back. A statement that fails even as a superuser counts: it names
/// what is not there (a table moved or retired), and only a decision excuses it.
/// None without restrict (no service roles) or a recorded workload.
pub(crate) async fn prove_services(
    settings: &Settings,
    ctx: &Context,
    (place, on): (&str, &Target),
    (prelude, steps): (&str, &[&crate::engine::Step]),
    which: impl Fn(&str, &str) -> bool,
    lock_timeout: std::time::Duration,
) -> anyhow::Result<Option<Vec<proof::ProbeResult>>> {
    let out = &settings.out;
    if !ctx
        .plan
        .phase(restrict::PHASE)
        .is_some_and(|r| r.is_applied())
    {
        out.progress(&format!(
            "restrict is not applied: there are no service roles whose statements to prove on {place}"
        ));
        return Ok(None);
    }
    let Some(workload) = ctx.recorded_workload().await? else {
        return Ok(None);
    };
    let planned = match restrict_planned(&ctx.plan, &ctx.catalog, workload) {
        Ok(p) => p,
        Err(errors) => anyhow::bail!(
            "the services' statements cannot be proven on {place}: {}",
            errors.join("; ")
        ),
    };
    let services: Vec<&str> = planned
        .services
        .iter()
        .filter(|s| which(&s.service, &s.domain))
        .map(|s| s.service.as_str())
        .collect();
    // The prelude sets the search_path the move gives the roles there; the
    // source's own settings do not apply on the domain's server.
    let probes: Vec<_> = planned
        .probes
        .into_iter()
        .filter(|p| services.contains(&p.service.as_str()))
        .map(|p| proof::Probe {
            search_path: None,
            ..p
        })
        .collect();
    let mut results = proof::prove(
        &ctx.endpoints.session(on)?.work,
        prelude,
        steps,
        &probes,
        lock_timeout,
    )
    .await?;
    for r in results.iter_mut() {
        r.fails_already = false;
    }
    Ok(Some(results))
}

/// Whether two connection strings name the same server and database (as the plan
/// records them: without passwords).
pub(crate) fn same_server(given: &str, kept: &str) -> bool {
    let reference = |text: &str| ConnInfo::parse(text).map(|c| c.redacted()).ok();
    reference(given).is_some() && reference(given) == reference(kept)
}

/// `carve.plan.toml` → `carve.plan.passwords`, beside it.
pub(crate) fn default_password_file(plan: &Path) -> PathBuf {
    plan.with_extension("passwords")
}

/// How the target reaches the source: `--subscription-conninfo`, or the source's own
/// host, port, database and sslmode (a Unix socket directory only serves a target on
/// the same machine).
pub(crate) fn link(
    ctx: &Context,
    given: Option<&str>,
    password_file: &Path,
) -> anyhow::Result<Link> {
    link_to(
        &ctx.spec,
        &ctx.catalog.server.database,
        given,
        "--subscription-conninfo",
        password_file,
    )
}

/// How a subscriber reaches the server `spec` connects to (database `database`):
/// `given` (a connection string without user or password, from option `flag`), or
/// that server's own host, port, database and sslmode.
pub(crate) fn link_to(
    spec: &ConnSpec,
    database: &str,
    given: Option<&str>,
    flag: &str,
    password_file: &Path,
) -> anyhow::Result<Link> {
    let server = spec.targets.first().expect("a connection has a target");
    let conninfo = match given {
        Some(text) => {
            let parsed = ConnInfo::parse(text).map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
            for key in ["user", "password"] {
                if parsed.get(key).is_some() {
                    anyhow::bail!(
                        "{flag} must not name a {key}: the subscription logs in as the replication role carve creates"
                    );
                }
            }
            text.to_string()
        }
        None => {
            let mut text = format!(
                "host={} port={} dbname={}",
                crate::conn::quote_value(&server.host),
                server.port,
                crate::conn::quote_value(database)
            );
            if let Some(mode) = spec.given.get("sslmode") {
                text.push_str(&format!(" sslmode={}", crate::conn::quote_value(mode)));
            }
            text
        }
    };
    let parsed = ConnInfo::parse(&conninfo)?;
    let host = parsed.get("host").unwrap_or(&server.host).to_string();
    let port = match parsed.get("port") {
        Some(p) => p
            .parse()
            .map_err(|_| anyhow::anyhow!("{flag}: port {p:?} is not a number"))?,
        None => server.port,
    };
    Ok(Link {
        conninfo,
        password_file: std::path::absolute(password_file)?,
        // The ~/.pgpass line the password is kept under.
        host: if host.starts_with('/') {
            "localhost".into()
        } else {
            host
        },
        port,
        database: parsed.get("dbname").unwrap_or(database).to_string(),
    })
}

/// What the preflight needs to know of a domain's server.
pub(crate) async fn target_facts(target: &Client, domain: &str) -> anyhow::Result<TargetFacts> {
    Ok(TargetFacts {
        server: ServerFacts::read(target).await?,
        non_empty_tables: non_empty_tables(target, domain).await?,
        types: user_types(target).await?,
    })
}

/// Reads both servers' facts and weighs them.
async fn refusals(
    ctx: &Context,
    domain: &str,
    on_target: &Target,
    accepted: &Acceptances,
) -> anyhow::Result<Vec<preflight::Refusal>> {
    let source = ServerFacts::read(&ctx.reader).await?;
    let target = target_facts(&ctx.endpoints.session(on_target)?.watch, domain)
        .await
        .map_err(|e| anyhow::anyhow!("{on_target}: {e:#}"))?;
    Ok(preflight::check(
        &ctx.plan,
        &ctx.catalog,
        domain,
        &source,
        &target,
        accepted,
    ))
}
