//! `carve demo`: start throw-away servers, load an example monolith, and run every phase
//! carve has on it, printing what happened. Removes everything on exit and on Ctrl-C,
//! unless `--keep`.

use anyhow::Context;
use serde::Serialize;

use crate::analysis;
use crate::catalog::fingerprint::Fingerprint;
use crate::catalog::reader::read_catalog;
use crate::cli::{ApplyArgs, DemoArgs, RestrictArgs, Settings, WorkloadArgs};
use crate::commands::discover::build_plan;
use crate::commands::inspect::compare_with_plan;
use crate::conn::{self, ConnSpec, Environment};
use crate::engine::executor::LockPolicy;
use crate::examples::Example;
use crate::exit;
use crate::pgtemp::TempServer;
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
    /// Steps carve restrict applied.
    restrict_steps: usize,
    /// The new login roles' passwords (mode 0600).
    password_file: String,
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
    let server = tokio::task::spawn_blocking(TempServer::start)
        .await
        .context("server start-up was interrupted")??;
    out.progress(&format!(
        "  listening on port {} (socket {}), data in {}",
        server.port(),
        server.socket_dir().display(),
        server.data_dir().display()
    ));

    let admin = connect(&server.conninfo("postgres")).await?;
    admin
        .batch_execute(&format!(
            "CREATE DATABASE {}",
            crate::sql::ident(example.name)
        ))
        .await
        .context("creating the example database")?;
    drop(admin);

    let source = server.conninfo(example.name);
    let client = connect(&source).await?;
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
        restrict_steps,
        password_file: passwords.display().to_string(),
    };
    if out.is_json() {
        out.json("demo", &report);
    } else {
        out.line(
            "Every service still uses the old names (now compatibility views over the domain schemas), each with a login role that reaches its own domain and what the plan's decisions grant.",
        );
    }

    if keep {
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
            "  carve undo restrict --plan {} --source \"{source}\"",
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
        drop(server);
        out.progress(
            "stopped the throw-away server and removed its files (use --keep to look inside)",
        );
    }
    Ok(exit::SUCCESS)
}

/// Records a decision for every cross-domain access restrict would find: reads are
/// replicated (granted until the move phase), writes granted until the owner of the
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
        });
    }
    plan.save(plan_path)?;
    Ok(())
}

async fn connect(conninfo: &str) -> anyhow::Result<tokio_postgres::Client> {
    let spec = ConnSpec::resolve(conninfo, &Environment::from_process())?;
    Ok(conn::connect(&spec).await?)
}
