//! Benchmark: the write pause of `carve cutover` and `carve rollback` under about 200
//! writes/s through PgBouncer (transaction pooling), over 10 of each, on the shop
//! example's orders domain. Printed: carve's measured pause (PAUSE to RESUME), the
//! clients' worst and p99 latency while each switch ran, and the same latencies of
//! a window without a switch; the reference, measured in the same run, is the bare
//! PgBouncer round a switch cannot do without (PAUSE, RELOAD, RESUME with nothing in
//! between, each from a fresh psql as an operator would).
//!
//!   cargo bench --bench cutover

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use carve::pgtemp::{TempBouncer, TempServer};

const SWITCHES: usize = 10;

/// Each transaction's start and latency, as the clients saw them.
type Samples = Arc<Mutex<Vec<(Instant, Duration)>>>;

async fn load(conninfo: String, schema: String, stop: Arc<AtomicBool>, samples: Samples) {
    let mut tasks = Vec::new();
    for worker in 0..4i64 {
        let (conninfo, stop, samples) = (conninfo.clone(), stop.clone(), samples.clone());
        let orders = format!("{}.orders", carve::sql::ident(&schema));
        tasks.push(tokio::spawn(async move {
            let (client, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
                .await
                .expect("connect through PgBouncer");
            tokio::spawn(connection);
            let customer: i64 = client
                .simple_query("SELECT min(id) FROM public.customers")
                .await
                .ok()
                .and_then(|m| {
                    m.into_iter().find_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(r) => {
                            r.get(0).and_then(|v| v.parse().ok())
                        }
                        _ => None,
                    })
                })
                .unwrap_or(1);
            let mut i = 0i64;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let started = Instant::now();
                client
                    .simple_query(&format!(
                        "INSERT INTO {orders} (customer_id, total) VALUES ({customer}, {})",
                        worker * 1_000_000 + i
                    ))
                    .await
                    .expect("a write through PgBouncer failed during the benchmark");
                samples.lock().unwrap().push((started, started.elapsed()));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("load task");
    }
}

/// (worst, p99) latency of the transactions that started in [from, to).
fn latencies(samples: &Samples, from: Instant, to: Instant) -> (Duration, Duration, usize) {
    let mut window: Vec<Duration> = samples
        .lock()
        .unwrap()
        .iter()
        .filter(|(at, _)| *at >= from && *at < to)
        .map(|(_, d)| *d)
        .collect();
    window.sort();
    let n = window.len();
    if n == 0 {
        return (Duration::ZERO, Duration::ZERO, 0);
    }
    (window[n - 1], window[(n * 99 / 100).min(n - 1)], n)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    if !common::benching() {
        return;
    }
    let source = TempServer::start().expect("source server");
    let target = TempServer::start().expect("target server");
    let dir = tempfile::tempdir().expect("temp dir");
    let shop = carve::examples::Example::named("shop").expect("shop example");
    source
        .psql("postgres", "CREATE DATABASE shop")
        .expect("create database");
    source
        .psql("shop", &format!("{}\n{}", shop.schema, shop.seed))
        .expect("load the shop");
    target
        .psql("postgres", "CREATE DATABASE shop")
        .expect("target database");
    let bouncer = TempBouncer::start(&source, &[("orders_db", "shop")]).expect("pgbouncer");
    let plan = dir.path().join("plan.toml");
    let source_conninfo = source.conninfo("shop");
    let carve = |args: &[&str]| common::carve(&plan, &source_conninfo, args);
    let run = |args: &[&str]| {
        let out = carve(args).output().expect("carve");
        assert!(
            out.status.success(),
            "carve {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let workload = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/shop/workload");
    run(&[
        "discover",
        "--workload",
        workload.to_str().expect("a UTF-8 path"),
    ]);
    run(&["assign"]);
    let mut p = carve::plan::Plan::load(&plan).expect("plan");
    p.let_kept_crossings_go("objects kept across domains go at the move");
    let domain = p
        .domains
        .iter()
        .find(|d| d.tables.iter().any(|t| t == "public.orders"))
        .expect("the orders domain")
        .name
        .clone();
    p.save(&plan).expect("save plan");
    target
        .psql(
            "shop",
            &format!(
                "ALTER ROLE postgres IN DATABASE shop SET search_path = {}, public",
                carve::sql::ident(&domain)
            ),
        )
        .expect("search_path");
    run(&[
        "move",
        "--domain",
        &domain,
        "--target",
        &target.conninfo("shop"),
        "--accept-unlimited-slot-wal",
    ]);
    run(&["verify", "--domain", &domain]);

    let stop = Arc::new(AtomicBool::new(false));
    let samples: Samples = Arc::default();
    let writer = tokio::spawn(load(
        bouncer.conninfo("orders_db"),
        domain.clone(),
        stop.clone(),
        samples.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The reference: PgBouncer's own round, each command from a fresh psql.
    let console = bouncer.console_conninfo();
    let psql = source.bin_dir().join("psql");
    let mut bare = Vec::new();
    for _ in 0..SWITCHES {
        let started = Instant::now();
        for command in ["PAUSE orders_db", "RELOAD", "RESUME orders_db"] {
            let out = Command::new(&psql)
                .args(["-X", "-q", "-c", command])
                .arg(&console)
                .output()
                .expect("psql");
            assert!(out.status.success(), "{command}: {:?}", out);
        }
        bare.push(ms(started.elapsed()));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // A quiet window of the same length as a switch, for the clients' own latency.
    let quiet_from = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let quiet = latencies(&samples, quiet_from, Instant::now());

    let args = |command: &str| {
        vec![
            "--format".to_string(),
            "json".into(),
            command.into(),
            "--domain".into(),
            domain.clone(),
            "--pgbouncer".into(),
            console.clone(),
            "--entry".into(),
            "orders_db".into(),
        ]
    };
    let mut rows = Vec::new();
    for i in 0..SWITCHES * 2 {
        let command = if i % 2 == 0 { "cutover" } else { "rollback" };
        let mut cmd = carve(&[]);
        cmd.args(args(command));
        let started = Instant::now();
        let out = tokio::task::spawn_blocking(move || cmd.output().expect("carve"))
            .await
            .expect("join");
        let ended = Instant::now();
        assert!(
            out.status.success(),
            "{command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
        let pause = report["pause_ms"].as_f64().expect("pause_ms");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (worst, p99, n) = latencies(&samples, started, ended);
        rows.push((command, pause, ms(ended - started), worst, p99, n));
    }
    stop.store(true, Ordering::SeqCst);
    writer.await.expect("load");

    println!(
        "carve cutover / rollback of the shop's orders domain, {SWITCHES} of each, under ~200 writes/s\nthrough PgBouncer 1.18 (transaction pooling); every client write succeeded.\n"
    );
    println!(
        "{:<9} {:>9} {:>9} | {:>12} {:>12} {:>8}",
        "switch", "pause", "carve", "client worst", "client p99", "writes"
    );
    for (command, pause, wall, worst, p99, n) in &rows {
        println!(
            "{command:<9} {pause:>7.0}ms {wall:>7.0}ms | {:>10.0}ms {:>10.0}ms {n:>8}",
            ms(*worst),
            ms(*p99)
        );
    }
    let pauses: Vec<f64> = rows.iter().map(|r| r.1).collect();
    let bare_median = median(bare.clone());
    let max = pauses.iter().cloned().fold(0.0, f64::max);
    println!(
        "\nwrite pause: median {:.0} ms, max {max:.0} ms (target: at most 500 ms)",
        median(pauses.clone())
    );
    println!(
        "reference, PgBouncer's bare PAUSE + RELOAD + RESUME from fresh psql: median {bare_median:.0} ms; carve's median pause is {:.2}x that",
        median(pauses) / bare_median
    );
    println!(
        "clients without a switch, over 2 s: worst {:.0} ms, p99 {:.0} ms ({} writes)",
        ms(quiet.0),
        ms(quiet.1),
        quiet.2
    );
}
