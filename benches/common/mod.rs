//! What the benchmarks share: measuring a child process (wall time and peak memory
//! through wait4), and loading a synthetic catalog into a throw-away server.
#![allow(dead_code)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use carve::pgtemp::TempServer;
use carve::synthetic::{self, Shape};

pub struct Measure {
    pub wall: Duration,
    pub max_rss_kib: i64,
    /// What the command said on stderr.
    pub stderr: String,
}

/// carve with a plan file, `--yes`, and `conninfo` as its source.
pub fn carve(plan: &std::path::Path, conninfo: &str, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_carve"));
    c.arg("--plan")
        .arg(plan)
        .arg("--yes")
        .args(args)
        .env("CARVE_SOURCE", conninfo);
    c
}

/// Runs a command to completion, its output thrown away, and measures it with wait4.
/// Stderr goes to a file (a pipe nobody reads would stall a chatty command) and is
/// shown when the command fails.
pub fn measure(mut cmd: Command) -> Measure {
    let mut log = tempfile::tempfile().expect("stderr file");
    let start = Instant::now();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(log.try_clone().expect("stderr file"))
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
    let stderr = {
        use std::io::{Read, Seek};
        let mut text = String::new();
        let _ = log.rewind().and_then(|_| log.read_to_string(&mut text));
        text
    };
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        panic!("{cmd:?} failed with status {status}: {stderr}");
    }
    std::mem::forget(child); // already reaped by wait4
    Measure {
        wall,
        max_rss_kib: usage.ru_maxrss,
        stderr,
    }
}

pub fn best_of(runs: usize, make: impl Fn() -> Command) -> Measure {
    (0..runs)
        .map(|_| measure(make()))
        .min_by_key(|m| m.wall)
        .expect("at least one run")
}

/// `cargo bench` passes --bench; anything else (e.g. `cargo test --benches`) only
/// checks that the benchmark builds.
pub fn benching() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// `CARVE_BENCH_SCALE` (default 1: the full size).
pub fn scale() -> f64 {
    std::env::var("CARVE_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0)
}

/// Creates database `db` holding a synthetic catalog of this shape, analyzed.
pub fn load_synthetic(server: &TempServer, db: &str, shape: Shape) {
    server
        .psql("postgres", &format!("CREATE DATABASE {db}"))
        .expect("create database");
    let load = Instant::now();
    for batch in synthetic::sql(shape) {
        server.psql(db, &batch).expect("load synthetic catalog");
    }
    server.psql(db, "ANALYZE").expect("analyze");
    eprintln!(
        "  (loaded {} tables in {:.1?})",
        shape.tables,
        load.elapsed()
    );
}

/// `pg_dump --schema-only` of `db`, the reference every ratio is taken against.
pub fn pg_dump(server: &TempServer, db: &str) -> Command {
    let mut c = Command::new(server.bin_dir().join("pg_dump"));
    c.arg("--schema-only")
        .arg("-h")
        .arg(server.socket_dir())
        .arg("-p")
        .arg(server.port().to_string())
        .args(["-U", "postgres", "-d", db]);
    c
}
