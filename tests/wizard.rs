//! `carve wizard` driven through a real pseudo-terminal on the shop example, from no
//! plan to a domain cut over through PgBouncer, with a Ctrl-C at a prompt in the
//! middle and a second session that goes on from there.

mod support;

use std::process::Command;

use rexpect::session::{spawn_command, PtySession};
use support::*;

const DOWN: &str = "\x1b[B";
const ENTER: &str = "\r";
const CTRL_C: &str = "\x03";

fn keys(p: &mut PtySession, keys: &str) {
    p.send(keys).unwrap();
    p.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
}

fn expect(p: &mut PtySession, text: &str) {
    p.exp_string(text)
        .unwrap_or_else(|e| panic!("waiting for {text:?}: {e}"));
    std::thread::sleep(std::time::Duration::from_millis(150));
}

/// restrict's question (the password file, as offered), then "skip it".
fn skip_restrict(p: &mut PtySession) {
    expect(p, "passwords go");
    keys(p, ENTER);
    expect(p, "show what it will do first");
    keys(p, DOWN);
    keys(p, DOWN);
    keys(p, ENTER);
}

/// The split discover proposed for the shop's orders, offered after assign with
/// its columns, then "skip it" (a split orders could not move).
fn skip_split(p: &mut PtySession) {
    expect(
        p,
        "public.orders gives paid_at, payment_status to a new table",
    );
    expect(p, "Next: Split each jointly written table");
    expect(p, "show what it will do first");
    keys(p, DOWN);
    keys(p, DOWN);
    keys(p, ENTER);
}

/// Where `domain` is in the wizard's list of domains to move (largest first).
fn position_to_move(plan: &std::path::Path, domain: &str) -> usize {
    let plan = carve::plan::Plan::load(plan).unwrap();
    let mut unmoved: Vec<&carve::plan::Domain> = plan
        .domains
        .iter()
        .filter(|d| {
            !plan
                .phase(carve::plan::PhaseId::new("move", Some(&d.name)))
                .is_some_and(|r| r.is_applied())
        })
        .collect();
    unmoved.sort_by_key(|d| std::cmp::Reverse(d.tables.len()));
    unmoved
        .iter()
        .position(|d| d.name == domain)
        .unwrap_or(unmoved.len())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_wizard_walks_the_shop_from_nothing_to_a_cut_over_domain_across_a_ctrl_c() {
    let (source, target, bouncer) = shop_with_pgbouncer().await;
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("shop.plan.toml");
    let workload = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/shop/workload");
    let wizard = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_carve"));
        cmd.env("NO_COLOR", "1")
            .env("TERM", "xterm")
            .env("CARVE_SOURCE", source.conninfo("shop"))
            .arg("--plan")
            .arg(&plan)
            .arg("wizard");
        spawn_command(cmd, Some(60_000)).expect("spawn in a pty")
    };

    let mut p = wizard();
    expect(&mut p, "no plan yet");
    expect(&mut p, "The monolith");
    keys(&mut p, ENTER); // CARVE_SOURCE, offered
    expect(&mut p, "Its workload");
    keys(&mut p, workload);
    keys(&mut p, ENTER);
    expect(&mut p, "show what it will do first");
    keys(&mut p, ENTER); // discover
    expect(&mut p, "Next: Move each domain's tables");
    expect(&mut p, "show what it will do first");
    keys(&mut p, ENTER); // assign
    skip_split(&mut p);
    skip_restrict(&mut p);
    expect(&mut p, "Which domain moves to its own server next?");
    for _ in 0..position_to_move(&plan, "orders") {
        keys(&mut p, DOWN);
    }
    keys(&mut p, ENTER);
    expect(&mut p, "were kept until the move");
    keys(&mut p, "y");
    expect(&mut p, "The new server's database for orders");
    keys(&mut p, &target.conninfo("shop"));
    keys(&mut p, ENTER);
    expect(&mut p, "carve move --domain orders");
    keys(&mut p, ENTER); // move
    expect(&mut p, "Next: Compare orders on both servers");
    expect(&mut p, "show what it will do first");
    // Ctrl-C at the prompt: the wizard stops there; the plan holds everything.
    keys(&mut p, CTRL_C);
    p.exp_eof().unwrap();

    // A new session: where it stands, then on from the verify.
    let mut p = wizard();
    expect(
        &mut p,
        "orders: move applied, not verified, clients on the source",
    );
    expect(&mut p, "Next: Compare orders on both servers");
    expect(&mut p, "show what it will do first");
    keys(&mut p, ENTER); // verify
    expect(&mut p, "PgBouncer's admin console");
    keys(&mut p, &bouncer.console_conninfo());
    keys(&mut p, ENTER);
    expect(&mut p, "The PgBouncer entry");
    keys(&mut p, ENTER); // orders
    expect(&mut p, "carve cutover --domain orders");
    keys(&mut p, ENTER); // cut over
    expect(&mut p, "orders: move applied, verified at");
    expect(&mut p, "clients on its own server");
    // split and restrict again (this session has not skipped them), then no more
    // moves.
    skip_split(&mut p);
    skip_restrict(&mut p);
    expect(&mut p, "Which domain moves to its own server next?");
    for _ in 0..position_to_move(&plan, "none") {
        keys(&mut p, DOWN);
    }
    keys(&mut p, ENTER); // none for now
    expect(&mut p, "Nothing more to propose");
    p.exp_eof().unwrap();

    assert_eq!(
        live_side(&plan, "orders"),
        (carve::plan::Side::Server, false)
    );
    // Without a terminal: refused, naming what to use instead.
    let out = Command::new(env!("CARGO_BIN_EXE_carve"))
        .arg("--plan")
        .arg(dir.path().join("other.toml"))
        .arg("wizard")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("carve run PLAYBOOK.toml"));
}
