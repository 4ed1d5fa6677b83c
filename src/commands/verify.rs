//! `carve verify --domain D`: are the rows on the domain's server the source's? The
//! comparison is `verify` (chunks by key range, hashed on each server); this file
//! connects to both (read-only, no lock: it changes no database), shows progress,
//! prints the report and records a clean result in the plan, which cut-over reads.

use crate::catalog::reader::read_catalog;
use crate::cli::{Settings, VerifyArgs};
use crate::commands::phase;
use crate::conn::{ConnSpec, Environment};
use crate::engine::Target;
use crate::exit;
use crate::phases::move_domain::{replication::Names, PHASE as MOVE};
use crate::plan::{PhaseId, Verified};
use crate::ui::verify::{render, VerifyProgress};
use crate::verify::journal::{self, VerifyJournal};
use crate::verify::run::{self, Options};
use crate::verify::{ChunkResult, TableShape};

pub async fn run(settings: &Settings, args: &VerifyArgs) -> anyhow::Result<u8> {
    let out = &settings.out;
    let mut plan = phase::load_plan(&settings.plan_path)?;
    let domain = args.domain.clone();
    let Some(position) = plan.domains.iter().position(|d| d.name == domain) else {
        anyhow::bail!("{} has no domain {domain:?}", settings.plan_path.display());
    };
    if !plan
        .phase(PhaseId::new(MOVE, Some(&domain)))
        .is_some_and(|r| r.is_applied())
    {
        anyhow::bail!(
            "verify compares a moved domain with its source: run `carve move --domain {domain}` until it is ready first (`carve status` shows the phases)"
        );
    }
    let target_conninfo = plan
        .conninfo(&Target::Domain(domain.clone()))
        .expect("a moved domain has a server")
        .to_string();
    let jobs = args.jobs.max(1) as usize;
    let source = args
        .source
        .as_deref()
        .unwrap_or(&plan.source.conninfo)
        .to_string();
    let (_, mut sources) = super::connect_source(&source, jobs + 1).await?;
    let reader = sources.pop().expect("one more than jobs");
    let spec = ConnSpec::resolve(&target_conninfo, &Environment::from_process())
        .map_err(|e| anyhow::anyhow!("{}: {e}", Target::Domain(domain.clone())))?;
    let targets = crate::conn::connect_many(&spec, jobs).await?;

    let catalog = read_catalog(std::slice::from_ref(&reader)).await?;
    let byte_order = run::collations_differ(&reader, &targets[0]).await?;
    if byte_order {
        out.warn("the two databases sort text differently (datcollate): text keys are compared byte-wise, which cannot use their indexes and is slower");
    }
    let mut tables = TableShape::of_domain(&catalog, &domain, byte_order);
    run::choose_row_hash(&reader, &targets[0], &mut tables).await?;
    if tables.is_empty() {
        anyhow::bail!("schema {domain:?} on the source holds no table");
    }
    for t in tables.iter().filter(|t| t.key.is_empty()) {
        out.warn(&format!(
            "{} has no primary key: compared whole, as one chunk (a difference is then read row by row over the whole table)",
            t.name
        ));
    }
    // The boundaries' key texts are read back as keys on the other connections: all
    // print and parse values alike.
    for client in sources.iter().chain(&targets).chain([&reader]) {
        run::prepare_session(client).await?;
    }
    let journal_path = journal::path_for(&settings.plan_path, &domain);
    let (mut journal, earlier) =
        VerifyJournal::open(&journal_path, &domain, args.chunk_rows, args.resume)?;
    let options = Options {
        chunk_rows: args.chunk_rows,
        retries: args.retries,
        catch_up_timeout: args.catch_up_timeout,
    };
    let progress = VerifyProgress::new(out);
    let started = std::time::Instant::now();
    // After a cut-over the domain's server is the side of record and the source
    // follows it through the stream back, whose slot is on the server.
    let cut_over = plan
        .domains
        .iter()
        .find(|d| d.name == domain)
        .and_then(|d| d.cutover.as_ref())
        .is_some_and(|c| c.settled_on(crate::plan::Side::Server));
    let (slot, leading, following) = if cut_over {
        out.progress(&format!(
            "{domain} is cut over: its server is the side of record, and \"on the target\" below means on the source, which follows it"
        ));
        (Names::back(&domain).slot, &targets, &sources)
    } else {
        (Names::of(&domain).slot, &sources, &targets)
    };
    let servers = run::Servers {
        sources: leading,
        targets: following,
        reader: &reader,
        slot: &slot,
    };
    let results = run::verify(
        &servers,
        &tables,
        &options,
        &mut journal,
        earlier,
        &progress,
    )
    .await;
    progress.finish();
    let results = results?;
    let (rows, differing) = run::summary(&results);
    let secs = started.elapsed().as_secs_f64();
    let differing_rows: usize = results.iter().map(|r| r.rows.len()).sum();
    if out.is_json() {
        #[derive(serde::Serialize)]
        struct Report<'a> {
            domain: &'a str,
            same: bool,
            tables: usize,
            rows: u64,
            differing_rows: usize,
            seconds: f64,
            journal: String,
            chunks: &'a [ChunkResult],
        }
        out.json(
            "verify",
            &Report {
                domain: &domain,
                same: differing.is_empty(),
                tables: tables.len(),
                rows,
                differing_rows,
                seconds: secs,
                journal: journal.path().display().to_string(),
                chunks: &results,
            },
        );
    } else {
        out.line(&format!(
            "verify of {domain}: {} table(s), {rows} rows in {} chunk(s), {:.1} s ({:.0} rows/s)",
            tables.len(),
            results.len(),
            secs,
            rows as f64 / secs.max(0.001)
        ));
        out.line(&render(&results, 50));
    }
    if !differing.is_empty() {
        out.error(&format!(
            "{differing_rows} row(s) of {} table(s) differ between the source and {domain}'s server (listed above by key); the plan keeps no clean verify for it",
            differing.len()
        ));
        out.name_objects(differing.iter().cloned());
        out.failing(exit::DATA_DIFFERS);
        plan.domains[position].verified = None;
        plan.save(&settings.plan_path)?;
        return Ok(exit::DATA_DIFFERS);
    }
    plan.domains[position].verified = Some(Verified {
        at: crate::plan::now_rfc3339(),
        tables: tables.len() as u64,
        chunks: results.len() as u64,
        rows,
    });
    plan.save(&settings.plan_path)?;
    if !out.is_json() {
        out.line(&format!(
            "every row is the same on both servers; recorded in {} for cut-over",
            settings.plan_path.display()
        ));
    }
    Ok(exit::SUCCESS)
}
