//! Benchmark: `carve assign` on synthetic catalogs, against running its own dry-run
//! script with psql on a twin database in the same run. The script does the same SQL
//! with each step's check, so the ratio is the price of what only carve does: the
//! advisory lock, the per-step journal saved atomically into the plan, and reading the
//! catalog before and after. Prints wall time, steps per second, peak memory and the
//! plan file's size.
//!
//!   cargo bench --bench assign                            # 2,000 and 10,000 tables
//!   CARVE_BENCH_SCALE=0.25 cargo bench --bench assign   # 500 and 2,500: a quicker look

mod common;

use std::process::Command;

use carve::pgtemp::TempServer;
use carve::synthetic::Shape;
use common::{carve, load_synthetic, measure, Measure};

fn main() {
    if !common::benching() {
        return;
    }
    let scale = common::scale();
    let server = TempServer::start().expect("throw-away server");
    let dir = tempfile::tempdir().expect("temp dir");

    println!("carve assign vs psql running carve's dry-run script (one run each; they change the database)\n");
    println!(
        "{:>7} {:>7} | {:>9} {:>9} {:>7} | {:>9} | {:>9} {:>10}",
        "tables", "steps", "carve", "psql", "ratio", "steps/s", "carve rss", "plan size"
    );
    for (i, factor) in [0.2 * scale, scale].into_iter().enumerate() {
        let shape = Shape::LARGE.scaled(factor);
        let db = format!("assign{i}");
        let twin = format!("assign{i}_twin");
        load_synthetic(&server, &db, shape);
        server
            .psql("postgres", &format!("CREATE DATABASE {twin} TEMPLATE {db}"))
            .expect("twin database");
        let (plan, twin_plan) = (
            dir.path().join(format!("{db}.toml")),
            dir.path().join(format!("{twin}.toml")),
        );
        for (p, d) in [(&plan, &db), (&twin_plan, &twin)] {
            measure(carve(p, &server.conninfo(d), &["discover"]));
        }

        let dry = carve(
            &twin_plan,
            &server.conninfo(&twin),
            &["assign", "--dry-run"],
        )
        .output()
        .expect("dry-run");
        assert_eq!(
            dry.status.code(),
            Some(3),
            "{}",
            String::from_utf8_lossy(&dry.stderr)
        );
        let script = dir.path().join(format!("{twin}.sql"));
        std::fs::write(&script, &dry.stdout).expect("script");
        let steps = String::from_utf8_lossy(&dry.stdout)
            .matches("\n-- step ")
            .count();

        let mut psql = Command::new(server.bin_dir().join("psql"));
        psql.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
            .arg(&script)
            .arg("-d")
            .arg(server.conninfo(&twin));
        let reference: Measure = measure(psql);
        let mut assign = carve(&plan, &server.conninfo(&db), &["assign"]);
        assign.env("CARVE_LOG", "carve::timing=info");
        let run = measure(assign);
        let size = std::fs::metadata(&plan).map(|m| m.len()).unwrap_or(0);
        println!(
            "{:>7} {:>7} | {:>8.2}s {:>8.2}s {:>7.2} | {:>9.0} | {:>5} MiB {:>6.1} MiB",
            shape.tables,
            steps,
            run.wall.as_secs_f64(),
            reference.wall.as_secs_f64(),
            run.wall.as_secs_f64() / reference.wall.as_secs_f64(),
            steps as f64 / run.wall.as_secs_f64(),
            run.max_rss_kib / 1024,
            size as f64 / (1024.0 * 1024.0),
        );
        // Where carve's time went (its `carve::timing` log lines).
        let stages: Vec<&str> = run
            .stderr
            .lines()
            .filter_map(|l| l.split_once("carve::timing: ").map(|(_, t)| t))
            .collect();
        println!("        carve's time: {}", stages.join(", "));
    }
    println!("\nratio     = carve assign time / psql time for the same steps");
    println!("plan size = the plan file after assign (fingerprint, steps, journal)");
}
