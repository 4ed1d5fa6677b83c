//! `carve demo`: start throw-away servers, load an example monolith, and run the five
//! phases on it: discover, assign, the splits discover proposes, restrict, move
//! (with verify) to a second server,
//! and a cut-over through a throw-away PgBouncer while clients write through it
//! (their acknowledged writes counted on the new server). Removes everything on exit
//! and on Ctrl-C, unless `--keep`.

use std::sync::Arc;

use anyhow::Context;
use serde::Serialize;

use crate::analysis;
use crate::catalog::fingerprint::Fingerprint;
use crate::catalog::reader::read_catalog;
use crate::cli::{
    ApplyArgs, DemoArgs, MoveArgs, RestrictArgs, Settings, SwitchArgs, VerifyArgs, WorkloadArgs,
};
use crate::commands::discover::build_plan;
use crate::commands::inspect::compare_with_plan;
use crate::conn::{ConnSpec, Environment};
use crate::engine::executor::LockPolicy;
use crate::examples::Example;
use crate::exit;
use crate::pgtemp::{ServerOptions, TempServer};
use crate::plan::Source;
use crate::ui::inspect::{findings, render};
use crate::workload::Workload;

#[derive(Serialize)]
struct JsonReport {
    example: String,
    kept: bool,
    monolith: ServerReport,
    plan: String,
    fingerprint: String,
    tables: usize,
    findings: Vec<String>,
    domains: Vec<crate::analysis::DomainReport>,
    /// Steps carve assign applied.
    assign_steps: usize,
    /// Steps carve split applied (none when discover proposes no split).
    split_steps: usize,
    /// Steps carve restrict applied.
    restrict_steps: usize,
    /// The new login roles' passwords (mode 0600).
    password_file: String,
    /// The domain moved to its own server, if one could be.
    #[serde(skip_serializing_if = "Option::is_none")]
    moved: Option<MovedReport>,
}

#[derive(Serialize)]
struct MovedReport {
    domain: String,
    server: ServerReport,
    /// Steps carve move ran to *ready*.
    steps: usize,
    /// Rows carve verify found the same on both servers.
    #[serde(skip_serializing_if = "Option::is_none")]
    verified_rows: Option<u64>,
    /// The cut-over through PgBouncer under a write load, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    cutover: Option<CutoverReport>,
}

#[derive(Serialize)]
struct CutoverReport {
    /// The table the load wrote into, through PgBouncer.
    table: String,
    /// PAUSE to RESUME, as carve measured it.
    pause_ms: Option<u64>,
    /// Inserts PgBouncer acknowledged while the domain moved and was cut over.
    acknowledged: usize,
    /// Of those, the rows found on the domain's server afterwards.
    found: i64,
    client_errors: usize,
}

#[derive(Serialize)]
struct ServerReport {
    conninfo: String,
    psql: String,
    pid: Option<u32>,
}

pub async fn run(settings: &Settings, args: &DemoArgs) -> anyhow::Result<u8> {
    let example = Example::named(args.example.as_str()).expect("every ExampleName is an example");
    tokio::select! {
        result = demo(settings, example, args.keep) => result,
        _ = tokio::signal::ctrl_c() => {
            // Dropping the demo future stops and removes the servers it started.
            settings.out.warn("interrupted: stopping the throw-away servers and removing their files");
            Ok(exit::INTERRUPTED)
        }
    }
}

async fn demo(settings: &Settings, example: &Example, keep: bool) -> anyhow::Result<u8> {
    let out = &settings.out;
    out.progress(&format!(
        "starting a throw-away PostgreSQL server for the {} monolith …",
        example.name
    ));
    let server = tokio::task::spawn_blocking(start_server)
        .await
        .context("server start-up was interrupted")??;
    out.progress(&format!(
        "  listening on port {} (socket {}), data in {}",
        server.port(),
        server.socket_dir().display(),
        server.data_dir().display()
    ));

    let admin = super::connect(&server.conninfo("postgres")).await?;
    admin
        .batch_execute(&format!(
            "CREATE DATABASE {}",
            crate::sql::ident(example.name)
        ))
        .await
        .context("creating the example database")?;
    drop(admin);

    let source = server.conninfo(example.name);
    let client = super::connect(&source).await?;
    out.progress(&format!(
        "loading examples/{}: schema and seed data …",
        example.name
    ));
    client
        .batch_execute(example.schema)
        .await
        .with_context(|| format!("loading examples/{}/schema.sql", example.name))?;
    client
        .batch_execute(example.seed)
        .await
        .with_context(|| format!("loading examples/{}/seed.sql", example.name))?;
    client.batch_execute("ANALYZE").await?;

    out.progress("reading the catalog (carve inspect) …");
    let catalog = read_catalog(std::slice::from_ref(&client)).await?;
    let fingerprint = Fingerprint::of(&catalog);
    let spec = ConnSpec::resolve(&source, &Environment::from_process())?;
    let plan_path = server.root().join("carve.plan.toml");

    out.progress(&format!(
        "proposing domains from the catalog and examples/{}/workload (carve discover) …",
        example.name
    ));
    let workload = Workload::from_texts(
        &format!("examples/{}/workload", example.name),
        example.workloads,
    );
    // The workload also goes to files, as a user's would be, so restrict reads it
    // again from the sources the plan records.
    let workload_dir = server.root().join("workload");
    std::fs::create_dir_all(&workload_dir)?;
    for (service, sql) in example.workloads {
        std::fs::write(workload_dir.join(format!("{service}.sql")), sql)?;
    }
    let discovery = analysis::discover(&catalog, Some(&workload), &analysis::Options::default());
    let source_ref = Source {
        conninfo: spec.reference(),
        database: catalog.server.database.clone(),
    };
    let mut plan = build_plan(source_ref, &catalog, &discovery, None);
    plan.workload = Some(crate::plan::WorkloadSources {
        sources: vec![workload_dir.display().to_string()],
        log_line_prefix: None,
    });
    plan.save(&plan_path)?;
    let plan_state = compare_with_plan(&plan_path, &catalog)?;

    if !out.is_json() {
        out.line("");
        out.line("── carve inspect ──");
        out.line(&render(
            &catalog,
            &fingerprint,
            &spec.reference(),
            &plan_state,
        ));
        out.line("── carve discover ──");
        out.line(&crate::ui::discover::render(
            &discovery,
            &plan_path,
            &[],
            true,
        ));
        out.line("── carve assign --yes ──");
    }
    // Phase 2 through the real command, as a user would run it: defaults accepted.
    out.progress("moving each domain's tables into its own schema (carve assign) …");
    let phase_settings = Settings {
        plan_path: plan_path.clone(),
        assume_yes: true,
        out: settings.out.nested(),
        ..settings.clone()
    };
    let apply = || ApplyArgs {
        source: Some(source.clone()),
        dry_run: false,
        lock_timeout: LockPolicy::default().timeout,
        lock_retries: LockPolicy::default().retries,
    };
    let assigned = crate::commands::assign::run(&phase_settings, &apply()).await?;
    if assigned != exit::SUCCESS {
        anyhow::bail!("carve assign failed on the example (exit {assigned})");
    }
    let assign_steps = crate::plan::Plan::load(&plan_path)?
        .phase(crate::phases::assign::PHASE)
        .map_or(0, |p| p.steps.len());
    // The splits discover proposes (the library's catalog between its two
    // writers), before restrict grants each writer its own part.
    if !crate::plan::Plan::load(&plan_path)?.splits.is_empty() {
        if !out.is_json() {
            out.line("── carve split --yes ──");
        }
        out.progress("splitting the jointly written tables (carve split) …");
        let split = crate::commands::split::run(&phase_settings, &apply()).await?;
        if split != exit::SUCCESS {
            anyhow::bail!("carve split failed on the example (exit {split})");
        }
    }
    let split_steps = crate::plan::Plan::load(&plan_path)?
        .phase(crate::phases::split::PHASE)
        .map_or(0, |p| p.steps.len());

    // Phase 3: the demo decides each cross-domain access as a team starting out
    // would (reads replicated, writes granted until the owner takes them over), then
    // runs the real command, which proves the plan before applying it.
    if !out.is_json() {
        out.line("── carve restrict --yes (cross-domain accesses decided by the demo) ──");
    }
    out.progress("giving each service a login role of its own (carve restrict) …");
    decide_crossings(&client, &plan_path, &workload).await?;
    let passwords = server.root().join("passwords");
    let restrict_args = RestrictArgs {
        apply: apply(),
        workload: WorkloadArgs {
            workload: Vec::new(),
            service_map: None,
            log_line_prefix: None,
        },
        password_file: Some(passwords.clone()),
    };
    let restricted = crate::commands::restrict::run(&phase_settings, &restrict_args).await?;
    if restricted != exit::SUCCESS {
        anyhow::bail!("carve restrict failed on the example (exit {restricted})");
    }
    let restrict_steps = crate::plan::Plan::load(&plan_path)?
        .phase(crate::phases::restrict::PHASE)
        .map_or(0, |p| p.steps.len());

    // Phase 4: a second server, and the first domain (largest first) that can move
    // with the decisions made so far, moved there through the real command.
    out.progress("starting a second throw-away server for a domain of its own …");
    let domain_server = tokio::task::spawn_blocking(start_server)
        .await
        .context("server start-up was interrupted")??;
    let admin = super::connect(&domain_server.conninfo("postgres")).await?;
    admin
        .batch_execute(&format!(
            "CREATE DATABASE {}",
            crate::sql::ident(example.name)
        ))
        .await
        .context("creating the domain's database")?;
    let target = domain_server.conninfo(example.name);
    let (movable, passed_over) =
        movable_domain(&client, &super::connect(&target).await?, &plan_path).await?;
    // The larger domains the preflight refused, each with its first reason: what a
    // team would have to decide or do before moving them.
    for (domain, why) in &passed_over {
        out.progress(&format!("{domain} stays on the monolith for now: {why}"));
    }
    let moved = match movable {
        Err(why) => {
            out.warn(&format!("no domain can move yet: {why}"));
            None
        }
        Ok(domain) => {
            if !out.is_json() {
                out.line(&format!(
                    "── carve move --domain {domain} --target (a second server) ──"
                ));
            }
            out.progress(&format!(
                "moving {domain} to its own server on logical replication (carve move) …"
            ));
            let move_args = MoveArgs {
                domain: domain.clone(),
                target: Some(target.clone()),
                subscription_conninfo: None,
                password_file: Some(server.root().join("replication-passwords")),
                max_lag: 1 << 20,
                copy_timeout: std::time::Duration::from_secs(600),
                catch_up_timeout: std::time::Duration::from_secs(600),
                max_transaction_age: std::time::Duration::from_secs(60),
                accept_unlimited_slot_wal: false,
                apply: apply(),
            };
            let code = crate::commands::move_domain::run(&phase_settings, &move_args).await?;
            if code != exit::SUCCESS {
                anyhow::bail!("carve move failed on the example (exit {code})");
            }
            let steps = crate::plan::Plan::load(&plan_path)?
                .phase(crate::plan::PhaseId::new(
                    crate::phases::move_domain::PHASE,
                    Some(&domain),
                ))
                .map_or(0, |p| p.steps.len());
            // Phase 5: verify, then cut over through a real PgBouncer while clients
            // write through it.
            if !out.is_json() {
                out.line(&format!("── carve verify --domain {domain} ──"));
            }
            out.progress(&format!(
                "comparing {domain} on both servers (carve verify) …"
            ));
            let verify_args = VerifyArgs {
                domain: domain.clone(),
                chunk_rows: 10_000,
                jobs: 2,
                resume: false,
                retries: 5,
                catch_up_timeout: std::time::Duration::from_secs(60),
                source: Some(source.clone()),
            };
            let code = crate::commands::verify::run(&phase_settings, &verify_args).await?;
            if code != exit::SUCCESS {
                anyhow::bail!("carve verify found differences on the example (exit {code})");
            }
            let verified_rows = crate::plan::Plan::load(&plan_path)?
                .domains
                .iter()
                .find(|d| d.name == domain)
                .and_then(|d| d.verified.as_ref())
                .map(|v| v.rows);
            let cutover = cut_over(
                settings,
                &phase_settings,
                &server,
                example,
                &client,
                &target,
                &domain,
                &source,
            )
            .await?;
            Some(MovedReport {
                domain,
                server: ServerReport {
                    conninfo: target.clone(),
                    psql: domain_server.psql_command(example.name),
                    pid: domain_server.pid(),
                },
                steps,
                verified_rows,
                cutover,
            })
        }
    };

    let report = JsonReport {
        example: example.name.to_string(),
        kept: keep,
        monolith: ServerReport {
            conninfo: source.clone(),
            psql: server.psql_command(example.name),
            pid: server.pid(),
        },
        plan: plan_path.display().to_string(),
        fingerprint: fingerprint.digest.clone(),
        tables: catalog.tables.len(),
        findings: findings(&catalog),
        domains: discovery.domains.clone(),
        assign_steps,
        split_steps,
        restrict_steps,
        password_file: passwords.display().to_string(),
        moved,
    };
    if out.is_json() {
        out.json("demo", &report);
    } else {
        out.line(
            "Every service still uses the old names (now compatibility views over the domain schemas), each with a login role that reaches its own domain and what the plan's decisions grant.",
        );
        if let Some(moved) = &report.moved {
            match &moved.cutover {
                None => out.line(&format!(
                    "Domain {} also lives on its own server now, following every change made on the monolith until cut-over.",
                    moved.domain
                )),
                Some(c) => {
                    out.line("");
                    out.line("── summary ──");
                    out.line(&format!(
                        "{} moved to its own server{} and its clients were switched there through PgBouncer{}.",
                        moved.domain,
                        moved
                            .verified_rows
                            .map(|r| format!(" (verified: {r} rows the same on both)"))
                            .unwrap_or_default(),
                        c.pause_ms
                            .map(|ms| format!(", writes paused {ms} ms"))
                            .unwrap_or_default()
                    ));
                    out.line(&format!(
                        "Writes: {} inserts into {} acknowledged through PgBouncer while it switched, {} found on the domain's server, {} lost; {} client error(s). The monolith's copy is fenced and follows the new server, so `carve rollback` would lose nothing.",
                        c.acknowledged,
                        c.table,
                        c.found,
                        c.acknowledged as i64 - c.found,
                        c.client_errors
                    ));
                }
            }
        }
    }

    if keep {
        if let Some(moved) = &report.moved {
            let root = domain_server.root().to_path_buf();
            domain_server.keep();
            out.line("");
            out.line(&format!(
                "The domain's server keeps running too: {}",
                moved.server.psql
            ));
            if let Some(pid) = moved.server.pid {
                out.line(&format!(
                    "  stop it: kill -INT {pid} && rm -rf {}",
                    root.display()
                ));
            }
        }
        let pid = server.pid();
        let data = server.data_dir();
        let psql = server.psql_command(example.name);
        let port = server.port();
        server.keep();
        out.line("");
        out.line("The server keeps running. Look inside with:");
        out.line(&format!("  {psql}"));
        out.line(&format!(
            "  carve inspect --plan {} --source \"{source}\"",
            plan_path.display()
        ));
        out.line(&format!("  carve status --plan {}", plan_path.display()));
        out.line(&format!(
            "  PGPASSFILE={} psql -h localhost -p {} -U ROLE {}",
            passwords.display(),
            port,
            example.name
        ));
        out.line(&format!(
            "  carve {}--plan {} --source \"{source}\"",
            match &report.moved {
                Some(m) => format!(
                    "undo move --domain {} ",
                    crate::conn::quote_value(&m.domain)
                ),
                None => "undo restrict ".into(),
            },
            plan_path.display()
        ));
        out.line("Stop it and remove its files with:");
        if let Some(pid) = pid {
            out.line(&format!(
                "  kill -INT {pid} && rm -rf {}",
                data.parent().unwrap_or(&data).display()
            ));
        }
    } else {
        drop(client);
        drop(admin);
        drop(domain_server);
        drop(server);
        out.progress(
            "stopped the throw-away server and removed its files (use --keep to look inside)",
        );
    }
    Ok(exit::SUCCESS)
}

/// Records a decision for every cross-domain access restrict would find: reads are
/// replicated (granted; kept as a copy of the columns read once the owner retires), writes granted until the owner of the
/// table's domain takes them over.
async fn decide_crossings(
    client: &tokio_postgres::Client,
    plan_path: &std::path::Path,
    workload: &Workload,
) -> anyhow::Result<()> {
    let mut plan = crate::plan::Plan::load(plan_path)?;
    let catalog = read_catalog(std::slice::from_ref(client)).await?;
    let planned = crate::phases::restrict::plan(&plan, &catalog, workload)
        .map_err(|e| anyhow::anyhow!("restrict cannot be planned: {}", e.join("; ")))?;
    for crossing in planned.missing() {
        let owner = format!(
            "{}-service",
            crossing.table_domain.as_deref().unwrap_or("owner")
        );
        plan.decisions.push(crate::plan::Decision {
            subject: crossing.subject.clone(),
            choice: if crossing.write {
                format!("temporary-grant:{owner}")
            } else {
                "replicate".into()
            },
            reason: "the demo keeps every service working until the owners take over".into(),
            rows: None,
        });
    }
    plan.save(plan_path)?;
    Ok(())
}

/// A throw-away server whose replication slots may keep at most 1 GB of WAL (a
/// limit the move's preflight asks for).
fn start_server() -> Result<TempServer, crate::pgtemp::TempServerError> {
    TempServer::start_with(&ServerOptions::default().setting("max_slot_wal_keep_size", "1GB"))
}

/// The largest domain move's preflight lets go, or the first domain's reasons. The
/// demo first decides what a team would before a move: objects kept across domains
/// until the move (foreign keys, views, triggers) are dropped at the move rather
/// than replaced, and the plan records it.
async fn movable_domain(
    source: &tokio_postgres::Client,
    target: &tokio_postgres::Client,
    plan_path: &std::path::Path,
) -> anyhow::Result<(Result<String, String>, Vec<(String, String)>)> {
    use crate::catalog::facts::ServerFacts;
    use crate::phases::move_domain::preflight::{check, Acceptances};
    let mut plan = crate::plan::Plan::load(plan_path)?;
    plan.let_kept_crossings_go("the demo lets cross-domain objects go when a domain moves");
    plan.save(plan_path)?;
    let catalog = read_catalog(std::slice::from_ref(source)).await?;
    let source_facts = ServerFacts::read(source).await?;
    let mut domains: Vec<&crate::plan::Domain> = plan.domains.iter().collect();
    domains.sort_by_key(|d| std::cmp::Reverse(d.tables.len()));
    let mut first_reasons = None;
    let mut passed_over = Vec::new();
    for d in domains {
        let target_facts = crate::commands::move_domain::target_facts(target, &d.name).await?;
        let refusals = check(
            &plan,
            &catalog,
            &d.name,
            &source_facts,
            &target_facts,
            &Acceptances::default(),
        );
        if refusals.is_empty() {
            return Ok((Ok(d.name.clone()), passed_over));
        }
        passed_over.push((d.name.clone(), refusals[0].to_string()));
        first_reasons.get_or_insert_with(|| {
            refusals
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        });
    }
    Ok((
        Err(first_reasons.unwrap_or_else(|| "the plan has no domain".into())),
        Vec::new(),
    ))
}

/// Phase 5 on the demo: a PgBouncer in front of the monolith with an entry for the
/// moved domain, clients inserting rows through it, `carve cutover` through the real
/// command, then the acknowledged rows counted on the domain's server. None (with
/// a warning) when PgBouncer is not installed or no table takes made-up rows.
#[allow(clippy::too_many_arguments)]
async fn cut_over(
    settings: &Settings,
    phase_settings: &Settings,
    server: &TempServer,
    example: &Example,
    source_client: &tokio_postgres::Client,
    target: &str,
    domain: &str,
    source: &str,
) -> anyhow::Result<Option<CutoverReport>> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let out = &settings.out;
    let catalog = read_catalog(std::slice::from_ref(source_client)).await?;
    let Some(maker) = super::demo_load::row_maker(source_client, &catalog, domain).await? else {
        out.warn(&format!(
            "no table of {domain} takes rows the demo can make up: the cut-over is left out"
        ));
        return Ok(None);
    };
    out.progress("starting a throw-away PgBouncer in front of the monolith …");
    let entry = domain.to_string();
    let name = example.name.to_string();
    let started = tokio::task::block_in_place(|| {
        crate::pgtemp::TempBouncer::start(server, &[(entry.as_str(), name.as_str())])
    });
    let bouncer = match started {
        Ok(b) => b,
        Err(e) => {
            out.warn(&format!("the cut-over is left out: {e}"));
            return Ok(None);
        }
    };
    // The load logs in as postgres, whose search_path on the domain's server must
    // find the domain first, as the services' does (the move sets theirs).
    super::connect(target)
        .await?
        .batch_execute(&format!(
            "ALTER ROLE postgres IN DATABASE {} SET search_path = {}, public",
            crate::sql::ident(example.name),
            crate::sql::ident(domain)
        ))
        .await?;
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(super::demo_load::run(
        bouncer.conninfo(&entry),
        maker.clone(),
        4,
        stop.clone(),
    ));
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    if !out.is_json() {
        out.line(&format!(
            "── carve cutover --domain {domain} --pgbouncer (a throw-away PgBouncer) ──"
        ));
    }
    out.progress(&format!(
        "switching the clients of {domain} to its own server while 4 clients insert into {} through PgBouncer (carve cutover) …",
        maker.table
    ));
    let args = SwitchArgs {
        domain: domain.to_string(),
        pgbouncer: Some(bouncer.console_conninfo()),
        pgbouncer_config: None,
        entries: vec![entry.clone()],
        switch: None,
        connection_dir: None,
        hook: None,
        services: Vec::new(),
        server_address: None,
        source_address: None,
        subscription_conninfo: None,
        reverse_conninfo: None,
        password_file: Some(server.root().join("replication-passwords")),
        max_lag: 1 << 20,
        freeze_timeout: std::time::Duration::from_secs(5),
        catch_up_timeout: std::time::Duration::from_secs(10),
        verify_max_age: std::time::Duration::from_secs(3600),
        abort: false,
        // The demo's decisions keep writes across domains (temporary grants) that
        // cannot hold across servers; a team would delegate them first. The gate
        // lists them, and the demo goes on.
        accept_failing_statements: true,
        apply: ApplyArgs {
            source: Some(source.to_string()),
            dry_run: false,
            lock_timeout: LockPolicy::default().timeout,
            lock_retries: LockPolicy::default().retries,
        },
    };
    let code =
        crate::commands::cutover::run(phase_settings, &args, crate::plan::Side::Server).await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    let seen = load.await??;
    let code = code?;
    if code != exit::SUCCESS {
        anyhow::bail!("carve cutover failed on the example (exit {code})");
    }
    let found = maker
        .count(&super::connect(target).await?, &seen.keys)
        .await?;
    let pause_ms = crate::plan::Plan::load(&phase_settings.plan_path)?
        .domains
        .iter()
        .find(|d| d.name == domain)
        .and_then(|d| d.cutover.as_ref())
        .and_then(|c| c.pause_ms);
    Ok(Some(CutoverReport {
        table: maker.table.clone(),
        pause_ms,
        acknowledged: seen.keys.len(),
        found,
        client_errors: seen.errors.len(),
    }))
}
