//! The interactive review of `carve discover`, driven through a real pseudo-terminal:
//! choices land in the plan as pins and decisions. Without a terminal, never a prompt.

mod support;

use std::process::Command;

use rexpect::session::spawn_command;
use support::*;

const DOWN: &str = "\x1b[B";
const UP: &str = "\x1b[A";
const ENTER: &str = "\r";

/// Types keys, as a person would.
fn keys(p: &mut rexpect::session::PtySession, keys: &str) {
    p.send(keys).unwrap();
    p.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
}

/// Waits for `text`, then a moment more: keys typed before the prompt switches the
/// terminal to raw mode would be lost, as they would for a person.
fn expect(p: &mut rexpect::session::PtySession, text: &str) {
    p.exp_string(text)
        .unwrap_or_else(|e| panic!("waiting for {text:?}: {e}"));
    std::thread::sleep(std::time::Duration::from_millis(150));
}

/// `carve discover` with `args` in a pseudo-terminal, writing `plan`.
fn discover_on_a_terminal(plan: &std::path::Path, args: &[&str]) -> rexpect::session::PtySession {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_carve"));
    cmd.env("NO_COLOR", "1")
        .env("TERM", "xterm")
        .env_remove("CARVE_PLAN")
        .arg("--plan")
        .arg(plan)
        .arg("discover")
        .args(args);
    spawn_command(cmd, Some(30_000)).expect("spawn in a pty")
}

#[tokio::test]
async fn choices_on_a_terminal_become_pins_and_decisions() {
    let server = server();
    create_db(&server, "library", example("library").schema).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("carve.plan.toml");
    let workload = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/library/workload");
    let source = server.conninfo("library");

    // Without a terminal: the proposal, no prompt.
    let (json, code, stderr) = discover_json(&plan, &["--source", &source, "--workload", workload]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("Review"), "{stderr}");
    let second_choice = table(&json, "public.book_catalog")["resolutions"][1]["kind"]
        .as_str()
        .unwrap()
        .to_string();
    let domains: Vec<String> = json["domains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(domains, ["audit", "book_catalog", "reading_list"]);
    // The catalog's domain is renamed; the next best name is offered with why.
    let renamed = "book_catalog";
    let alternatives = json["domains"][1]["alternatives"].as_array().unwrap();
    let alternative = alternatives[0]["name"].as_str().unwrap().to_string();
    let past_alternatives = DOWN.repeat(alternatives.len());
    std::fs::remove_file(&plan).unwrap();

    let mut p = discover_on_a_terminal(&plan, &["--source", &source, "--workload", workload]);
    for (i, domain) in domains.iter().enumerate() {
        expect(&mut p, &format!("({} of {})", i + 1, domains.len()));
        expect(&mut p, "leave this and all the rest for later");
        if domain != renamed {
            keys(&mut p, ENTER); // accept
            continue;
        }
        keys(&mut p, DOWN);
        keys(&mut p, ENTER); // rename
        expect(&mut p, &format!("New name for {renamed}"));
        expect(&mut p, &format!("{alternative} ("));
        expect(&mut p, "another name");
        keys(&mut p, &past_alternatives);
        keys(&mut p, ENTER); // another name, typed
        expect(&mut p, &format!("New name for {renamed}"));
        keys(&mut p, "books");
        keys(&mut p, ENTER);
    }
    expect(&mut p, "public.audit is common");
    expect(&mut p, "decide later");
    keys(&mut p, ENTER); // the dedicated owner
    expect(&mut p, "public.book_catalog is joint");
    expect(&mut p, "decide later");
    keys(&mut p, DOWN);
    keys(&mut p, ENTER); // the second-ranked resolution
    expect(&mut p, "Record these 5 choices in the plan?");
    keys(&mut p, "y");
    expect(&mut p, "plan written to");
    p.exp_eof().unwrap();

    let written = carve::plan::Plan::load(&plan).unwrap();
    let books = written
        .pins
        .iter()
        .find(|p| p.domain.as_deref() == Some("books"))
        .unwrap_or_else(|| panic!("{:#?}", written.pins));
    assert_eq!(books.tables, ["public.book_catalog"]);
    let decision = written
        .decisions
        .iter()
        .find(|d| d.subject == "ownership of public.book_catalog")
        .unwrap();
    assert_eq!(decision.choice, second_choice);
    assert!(decision.reason.starts_with("chosen in review"));
    assert!(written.domains.iter().any(|d| d.name == "books"));

    // A re-run without a terminal keeps every choice.
    let (json, code, stderr) = discover_json(&plan, &["--source", &source, "--workload", workload]);
    assert_eq!(code, 0, "{stderr}");
    assert!(json["domains"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["name"] == "books"));
    let again = carve::plan::Plan::load(&plan).unwrap();
    assert_eq!(again.pins, written.pins);
    assert_eq!(again.decisions, written.decisions);
}

#[tokio::test]
async fn the_number_of_domains_picked_on_a_terminal_stays_in_the_plan() {
    let server = server();
    create_db(&server, "shop", example("shop").schema).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("carve.plan.toml");
    let workload = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/shop/workload");
    let source = server.conninfo("shop");
    let args = ["--source", source.as_str(), "--workload", workload];

    // What the sweep offers: one entry per number of domains, the proposal's last.
    let (json, code, stderr) = discover_json(&plan, &args);
    assert_eq!(code, 0, "{stderr}");
    let mut counts: Vec<(u64, f64)> = Vec::new();
    for s in json["quality"]["alternatives"].as_array().unwrap() {
        let n = s["domains"].as_u64().unwrap();
        if !counts.iter().any(|(c, _)| *c == n) {
            counts.push((n, s["resolution"].as_f64().unwrap()));
        }
    }
    let proposed = json["domains"].as_array().unwrap().len() as u64;
    let (fewest, at) = counts[0];
    assert!(fewest < proposed, "{counts:?}");
    let up = counts.iter().position(|(c, _)| *c == proposed).unwrap();
    let to_resolve = json["tables"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["ownership"] == "joint" || t["ownership"] == "common")
        .count();
    std::fs::remove_file(&plan).unwrap();

    let mut p = discover_on_a_terminal(&plan, &args);
    expect(&mut p, "How many domains?");
    expect(&mut p, &format!("{fewest} domains (resolution {at}"));
    keys(&mut p, &UP.repeat(up));
    keys(&mut p, ENTER);
    expect(&mut p, &format!("{fewest} domains for"));
    expect(&mut p, "leave this and all the rest for later");
    keys(&mut p, &DOWN.repeat(5));
    keys(&mut p, ENTER); // leave the domains for later
    for _ in 0..to_resolve {
        expect(&mut p, "decide later");
        keys(&mut p, UP); // the list wraps round to its last item
        keys(&mut p, ENTER);
    }
    expect(&mut p, "plan written to");
    p.exp_eof().unwrap();

    let written = carve::plan::Plan::load(&plan).unwrap();
    assert_eq!(written.resolution, Some(at));
    assert_eq!(written.domains.len() as u64, fewest);
    // The next run, without a terminal, keeps it.
    let (json, code, stderr) = discover_json(&plan, &args);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json["domains"].as_array().unwrap().len() as u64, fewest);
    assert_eq!(json["quality"]["resolution"].as_f64(), Some(at));
}

#[tokio::test]
async fn yes_on_a_terminal_never_prompts() {
    let server = server();
    create_db(&server, "library", example("library").schema).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("carve.plan.toml");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_carve"));
    cmd.env("NO_COLOR", "1").arg("--plan").arg(&plan).args([
        "--yes",
        "discover",
        "--source",
        &server.conninfo("library"),
    ]);
    let mut p = spawn_command(cmd, Some(30_000)).expect("spawn in a pty");
    let out = p.exp_eof().unwrap();
    assert!(!out.contains("Review"), "{out}");
    assert!(out.contains("plan written to"), "{out}");
}

/// `carve assign` on a terminal: asks to record the default decisions, then to apply;
/// "no" changes nothing, "yes" records and applies.
#[tokio::test]
async fn assign_on_a_terminal_asks_before_deciding_and_applying() {
    let server = server();
    let shop = example("shop");
    create_db(&server, "shop", &format!("{}\n{}", shop.schema, shop.seed)).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("carve.plan.toml");
    let source = server.conninfo("shop");
    let workload = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/shop/workload");
    let (_, code, stderr) = discover_json(&plan, &["--source", &source, "--workload", workload]);
    assert_eq!(code, 0, "{stderr}");
    let before = std::fs::read(&plan).unwrap();

    let assign = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_carve"));
        cmd.env("NO_COLOR", "1")
            .env("TERM", "xterm")
            .env("CARVE_SOURCE", &source)
            .arg("--plan")
            .arg(&plan)
            .arg("assign");
        spawn_command(cmd, Some(30_000)).expect("spawn in a pty")
    };
    let mut p = assign();
    expect(&mut p, "Record the defaults shown for these");
    keys(&mut p, "y");
    expect(&mut p, "assign step(s) to database shop?");
    keys(&mut p, "n");
    expect(&mut p, "not applied; nothing was changed");
    p.exp_eof().unwrap();
    assert_eq!(
        std::fs::read(&plan).unwrap(),
        before,
        "the plan is untouched"
    );

    let mut p = assign();
    expect(&mut p, "Record the defaults shown for these");
    keys(&mut p, "y");
    expect(&mut p, "assign step(s) to database shop?");
    keys(&mut p, "y");
    expect(&mut p, "assign: done");
    p.exp_eof().unwrap();
    let written = carve::plan::Plan::load(&plan).unwrap();
    assert!(written.phase("assign").unwrap().is_applied());
    let fk = written
        .decision("foreign key public.orders.orders_customer_id_fkey")
        .unwrap();
    assert!(fk.reason.contains("at the prompt"), "{}", fk.reason);
}
