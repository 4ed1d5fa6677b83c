//! Benchmark: `carve discover` on the 10,000-table synthetic catalog with a generated
//! workload of 100,000 statements from 50 services, against `pg_dump --schema-only` on
//! the same database in the same run. Prints wall time, peak memory (max RSS),
//! statements analyzed per second, and the ratio to pg_dump, at a quarter size and at
//! full size so memory growth can be seen.
//!
//!   cargo bench --bench discover
//!   CARVE_BENCH_SCALE=0.1 cargo bench --bench discover   # quicker look
//!   CARVE_BENCH_KEEP=1 cargo bench --bench discover      # keep server and workload

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use carve::analysis::leiden::adjusted_rand_index_of;
use carve::pgtemp::TempServer;
use carve::synthetic::{self, Shape};
use common::{best_of, load_synthetic, pg_dump, Measure};

const SERVICES: usize = 50;
const STATEMENTS: usize = 100_000;

/// The best of three runs, and the plan the last one wrote.
fn discover(
    server: &TempServer,
    db: &str,
    plans: &Path,
    workload: Option<&Path>,
) -> (Measure, PathBuf) {
    let last = std::cell::RefCell::new(PathBuf::new());
    let measure = best_of(3, || {
        // A new plan file each time: a re-run would compare against the last one.
        let plan = plans.join(format!("{}.toml", rand_name()));
        last.replace(plan.clone());
        let mut c = Command::new(env!("CARGO_BIN_EXE_carve"));
        c.arg("--plan")
            .arg(&plan)
            .args(["--yes", "--format", "json", "discover", "--source"])
            .arg(server.conninfo(db));
        if let Some(w) = workload {
            c.arg("--workload").arg(w);
        }
        c
    });
    (measure, last.into_inner())
}

/// How many domains a plan proposes, and their agreement (adjusted Rand index)
/// with the generator's clusters.
fn domains_against_clusters(plan: &Path, shape: Shape) -> (usize, f64) {
    let plan = carve::plan::Plan::load(plan).expect("the plan discover wrote");
    let domain_of: HashMap<&str, &str> = plan
        .domains
        .iter()
        .flat_map(|d| d.tables.iter().map(move |t| (t.as_str(), d.name.as_str())))
        .collect();
    let clusters = synthetic::clusters(shape);
    let ari = adjusted_rand_index_of(clusters.iter().map(|(table, cluster)| {
        let table = format!("public.{table}");
        (cluster.as_str(), domain_of.get(table.as_str()).copied())
    }));
    (plan.domains.len(), ari)
}

fn rand_name() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("plan{}", N.fetch_add(1, Ordering::Relaxed))
}

fn main() {
    if !common::benching() {
        return;
    }
    let scale = common::scale();
    let keep = std::env::var_os("CARVE_BENCH_KEEP").is_some();
    let server = TempServer::start().expect("throw-away server");
    let plans = tempfile::tempdir().expect("temp dir");

    println!(
        "carve discover vs pg_dump --schema-only ({SERVICES} services; best of 3 runs each)\n"
    );
    println!(
        "{:>7} {:>8} | {:>9} {:>10} {:>9} | {:>12} {:>9} | {:>10} {:>10}",
        "tables",
        "stmts",
        "catalog",
        "+workload",
        "pg_dump",
        "stmts/s",
        "ratio",
        "carve rss",
        "dump rss"
    );
    for (i, factor) in [scale / 4.0, scale].into_iter().enumerate() {
        let shape = Shape::LARGE.scaled(factor);
        let statements = ((STATEMENTS as f64) * factor).round() as usize;
        let db = format!("discover{i}");
        load_synthetic(&server, &db, shape);
        let mut dir = tempfile::tempdir().expect("temp dir");
        for (service, sql) in synthetic::workload(shape, SERVICES, statements) {
            std::fs::write(dir.path().join(format!("{service}.sql")), sql).expect("write");
        }

        let (catalog_only, catalog_plan) = discover(&server, &db, plans.path(), None);
        let (with_workload, workload_plan) = discover(&server, &db, plans.path(), Some(dir.path()));
        let dump = best_of(3, || pg_dump(&server, &db));
        let workload_secs =
            (with_workload.wall.as_secs_f64() - catalog_only.wall.as_secs_f64()).max(1e-3);
        println!(
            "{:>7} {:>8} | {:>8.2}s {:>9.2}s {:>8.2}s | {:>12.0} {:>9.2} | {:>6} MiB {:>6} MiB",
            shape.tables,
            statements,
            catalog_only.wall.as_secs_f64(),
            with_workload.wall.as_secs_f64(),
            dump.wall.as_secs_f64(),
            statements as f64 / workload_secs,
            with_workload.wall.as_secs_f64() / dump.wall.as_secs_f64(),
            with_workload.max_rss_kib / 1024,
            dump.max_rss_kib / 1024,
        );
        let clusters = shape.tables.div_ceil(shape.cluster_size);
        let (catalog_domains, catalog_ari) = domains_against_clusters(&catalog_plan, shape);
        let (workload_domains, workload_ari) = domains_against_clusters(&workload_plan, shape);
        println!(
            "{:>18} {clusters} clusters generated; catalog alone {catalog_domains} domains (ARI {catalog_ari:.2}), with workload {workload_domains} domains ({:+.0}%, ARI {workload_ari:.2})",
            "",
            100.0 * (workload_domains as f64 / clusters as f64 - 1.0),
        );
        if keep && i == 1 {
            dir.disable_cleanup(true);
            println!(
                "  kept: --source \"{}\" --workload {}",
                server.conninfo(&db),
                dir.path().display()
            );
        }
    }
    println!("\ncatalog   = discover without a workload (catalog, clustering, plan)");
    println!("+workload = discover with the generated workload (what the ratio uses)");
    println!("stmts/s   = statements / (+workload - catalog): parsing, resolution, ownership");
    println!("ratio     = +workload time / pg_dump time");
    println!("ARI       = adjusted Rand index of the domains against the generated clusters");
    println!("            (with the workload, each of the {SERVICES} services alone writes its clusters:");
    println!("            one domain per service is what writers-define-contexts proposes)");
    if keep {
        let dir = server.keep();
        println!("server files kept in {}", dir.display());
    }
}
