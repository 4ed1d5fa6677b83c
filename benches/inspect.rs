//! Benchmark: `carve inspect` against `pg_dump --schema-only` on a synthetic catalog of
//! 10,000 tables, ~20,000 foreign keys and 1,000 views, measured in the same run on the
//! same throw-away server. Prints wall time, the ratio, and peak memory (max RSS) at two
//! sizes, to show carve's memory grows with the catalog and nothing else.
//!
//!   cargo bench --bench inspect            # full size
//!   CARVE_BENCH_SCALE=0.1 cargo bench --bench inspect   # quicker look
//!   CARVE_BENCH_KEEP=1 cargo bench --bench inspect      # leave the server running

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use carve::pgtemp::TempServer;
use carve::synthetic::{self, Shape};

struct Measure {
    wall: Duration,
    max_rss_kib: i64,
}

/// Runs a command to completion, its output thrown away, and measures it with wait4.
fn measure(mut cmd: Command) -> Measure {
    let start = Instant::now();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child's pid, with valid pointers.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    assert_eq!(rc, pid, "wait4 failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed with status {status}"
    );
    std::mem::forget(child); // already reaped by wait4
    Measure {
        wall,
        max_rss_kib: usage.ru_maxrss,
    }
}

fn best_of(runs: usize, make: impl Fn() -> Command) -> Measure {
    (0..runs)
        .map(|_| measure(make()))
        .min_by_key(|m| m.wall)
        .expect("at least one run")
}

fn main() {
    // `cargo bench` passes --bench; anything else (e.g. `cargo test --benches`) only
    // checks that this builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let scale: f64 = std::env::var("CARVE_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let server = TempServer::start().expect("throw-away server");
    let carve = env!("CARGO_BIN_EXE_carve");
    let pg_dump = server.bin_dir().join("pg_dump");

    println!("carve inspect vs pg_dump --schema-only (best of 3 runs each)\n");
    println!(
        "{:>7} {:>7} {:>6} | {:>10} {:>10} {:>7} | {:>12} {:>12}",
        "tables", "fks", "views", "carve", "pg_dump", "ratio", "carve rss", "pg_dump rss"
    );
    for (i, factor) in [scale / 4.0, scale].into_iter().enumerate() {
        let shape = Shape::LARGE.scaled(factor);
        let db = format!("bench{i}");
        server
            .psql("postgres", &format!("CREATE DATABASE {db}"))
            .expect("create database");
        let load = Instant::now();
        for batch in synthetic::sql(shape) {
            server.psql(&db, &batch).expect("load synthetic catalog");
        }
        server.psql(&db, "ANALYZE").expect("analyze");
        eprintln!(
            "  (loaded {} tables in {:.1?})",
            shape.tables,
            load.elapsed()
        );

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
        let dump_run = best_of(3, || {
            let mut c = Command::new(&pg_dump);
            c.arg("--schema-only")
                .arg("-h")
                .arg(server.socket_dir())
                .arg("-p")
                .arg(server.port().to_string())
                .args(["-U", "postgres", "-d", &db]);
            c
        });
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
