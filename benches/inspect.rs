//! Benchmark: `carve inspect` against `pg_dump --schema-only` on a synthetic catalog of
//! 10,000 tables, ~20,000 foreign keys and 1,000 views, measured in the same run on the
//! same throw-away server. Prints wall time, the ratio, and peak memory (max RSS) at two
//! sizes, to show carve's memory grows with the catalog and nothing else.
//!
//!   cargo bench --bench inspect            # full size
//!   CARVE_BENCH_SCALE=0.1 cargo bench --bench inspect   # quicker look
//!   CARVE_BENCH_KEEP=1 cargo bench --bench inspect      # leave the server running

mod common;

use std::process::Command;

use carve::pgtemp::TempServer;
use carve::synthetic::Shape;
use common::{best_of, load_synthetic, pg_dump};

fn main() {
    if !common::benching() {
        return;
    }
    let scale = common::scale();
    let server = TempServer::start().expect("throw-away server");
    let carve = env!("CARGO_BIN_EXE_carve");

    println!("carve inspect vs pg_dump --schema-only (best of 3 runs each)\n");
    println!(
        "{:>7} {:>7} {:>6} | {:>10} {:>10} {:>7} | {:>12} {:>12}",
        "tables", "fks", "views", "carve", "pg_dump", "ratio", "carve rss", "pg_dump rss"
    );
    for (i, factor) in [scale / 4.0, scale].into_iter().enumerate() {
        let shape = Shape::LARGE.scaled(factor);
        let db = format!("bench{i}");
        load_synthetic(&server, &db, shape);

        let conninfo = server.conninfo(&db);
        let carve_run = best_of(3, || {
            let mut c = Command::new(carve);
            c.args([
                "--format",
                "json",
                "--plan",
                "/nonexistent/plan.toml",
                "inspect",
                "--source",
            ])
            .arg(&conninfo);
            c
        });
        let dump_run = best_of(3, || pg_dump(&server, &db));
        println!(
            "{:>7} {:>7} {:>6} | {:>9.2}s {:>9.2}s {:>7.2} | {:>9} MiB {:>8} MiB",
            shape.tables,
            shape.foreign_keys,
            shape.views,
            carve_run.wall.as_secs_f64(),
            dump_run.wall.as_secs_f64(),
            carve_run.wall.as_secs_f64() / dump_run.wall.as_secs_f64(),
            carve_run.max_rss_kib / 1024,
            dump_run.max_rss_kib / 1024,
        );
    }
    println!("\nratio = carve time / pg_dump time (target: at most 0.5)");
    if std::env::var_os("CARVE_BENCH_KEEP").is_some() {
        let conninfo = server.conninfo("bench1");
        let dir = server.keep();
        println!(
            "kept the server for a closer look: {conninfo} (files in {})",
            dir.display()
        );
    }
}
