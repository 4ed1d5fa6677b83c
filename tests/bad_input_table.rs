//! Bad input across every command, as one table: each case is a command line (with a
//! plan file made bad first, where the case needs it) and what carve must answer:
//! the documented exit code, a message naming the problem, no panic, no password in
//! any output, the same answer as one JSON error object with `--format json`, and
//! nothing changed (the plan file's bytes and the source's dump and roles).

mod support;

use std::path::Path;

use serde_json::Value;
use support::*;

/// The password the cases put into connection strings: never to be printed.
const SECRET: &str = "hunter2-never-print-me";

/// One bad input.
struct Case {
    name: &'static str,
    /// Turns the good plan file's text into the case's (None: leave it).
    plan: Option<fn(&str) -> String>,
    args: Vec<String>,
    exit: i32,
    /// What the message must say (stderr, and the JSON error's message).
    says: &'static str,
}

fn case(name: &'static str, args: &[&str], exit: i32, says: &'static str) -> Case {
    Case {
        name,
        plan: None,
        args: args.iter().map(|a| a.to_string()).collect(),
        exit,
        says,
    }
}

fn with_plan(mut c: Case, plan: fn(&str) -> String) -> Case {
    c.plan = Some(plan);
    c
}

fn cases(source: &str, dir: &Path, silent_port: u16) -> Vec<Case> {
    let port = portpicker_closed();
    // A listener that takes the connection and never says a word (a hung server or
    // PgBouncer): the kernel accepts it, nobody reads.
    let silent = format!(
        "host=127.0.0.1 port={silent_port} dbname=library user=postgres password={SECRET} connect_timeout=1"
    );
    let unreachable = format!("host=127.0.0.1 port={port} dbname=library user=postgres password={SECRET} connect_timeout=2");
    let missing_db =
        source.replace("dbname=library", "dbname=no_such_db") + &format!(" password={SECRET}");
    let no_user =
        source.replace("user=postgres", "user=nobody_here") + &format!(" password={SECRET}");
    // Over TCP: libpq ignores sslmode on a Unix socket.
    let server_port = source
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("port="))
        .expect("a port");
    let tls = format!(
        "host=127.0.0.1 port={server_port} dbname=library user=postgres sslmode=verify-full"
    );
    // Over TCP the throw-away server asks for a SCRAM password, which postgres lacks.
    let wrong_password =
        format!("host=127.0.0.1 port={server_port} dbname=library user=postgres password={SECRET}");
    let playbook_bad = dir.join("bad.toml");
    std::fs::write(
        &playbook_bad,
        "version = 1\nname = \"p\"\n[[steps]]\nname = \"x\"\n",
    )
    .unwrap();
    let playbook_var = dir.join("var.toml");
    std::fs::write(
        &playbook_var,
        "version = 1\nname = \"p\"\n[[steps]]\nname = \"x\"\ncarve = [\"move\", \"--domain\", \"${NO_SUCH_VARIABLE_HERE}\"]\n",
    )
    .unwrap();
    let s = |x: &str| x.to_string();
    let mut all = vec![
        // The plan file.
        with_plan(case("garbage plan", &["assign"], 1, "plan"), |_| {
            "this is not = [toml".into()
        }),
        with_plan(case("empty plan", &["assign"], 1, "plan"), |_| {
            String::new()
        }),
        with_plan(case("plan cut mid-line", &["assign"], 1, "plan"), |t| {
            t[..t.len() / 2].to_string()
        }),
        with_plan(
            case("plan from a newer carve", &["assign"], 1, "newer carve"),
            |t| t.replacen("format_version = 2", "format_version = 99", 1),
        ),
        with_plan(
            case(
                "plan of another database",
                &["assign"],
                1,
                "was made for database",
            ),
            |t| t.replacen("database = \"library\"", "database = \"elsewhere\"", 1),
        ),
        with_plan(
            case(
                "plan whose fingerprint does not add up",
                &["assign"],
                1,
                "does not add up",
            ),
            |t| {
                let at = t.find("[fingerprint.objects]").expect("fingerprint");
                let (head, tail) = t.split_at(at);
                format!("{head}{}", tail.replacen("type=", "type=x", 1))
            },
        ),
        with_plan(
            case(
                "domain named like a system schema",
                &["assign"],
                1,
                "reserved",
            ),
            |t| t.replacen("name = \"reading_list\"", "name = \"pg_toast\"", 1),
        ),
        with_plan(
            case(
                "domain named information_schema",
                &["assign"],
                1,
                "information_schema",
            ),
            |t| {
                t.replacen(
                    "name = \"reading_list\"",
                    "name = \"information_schema\"",
                    1,
                )
            },
        ),
        with_plan(
            case(
                "a table in two domains",
                &["assign"],
                1,
                "public.reading_list",
            ),
            |t| format!("{t}\n[[domains]]\nname = \"again\"\ntables = [\"public.reading_list\"]\n"),
        ),
        with_plan(
            case(
                "a domain listing a table that does not exist",
                &["assign"],
                1,
                "is not in the database",
            ),
            |t| t.replacen("tables = [", "tables = [\"public.no_such_table\", ", 1),
        ),
        // Connections.
        case(
            "unreachable source",
            &["assign", "--source", &unreachable],
            1,
            "127.0.0.1",
        ),
        case(
            "missing database",
            &["assign", "--source", &missing_db],
            1,
            "no_such_db",
        ),
        case(
            "unknown user",
            &["assign", "--source", &no_user],
            1,
            "nobody_here",
        ),
        case(
            "a server that accepts and never answers",
            &["inspect", "--source", &silent],
            1,
            "timed out",
        ),
        case(
            "wrong password",
            &["assign", "--source", &wrong_password],
            1,
            "password authentication failed",
        ),
        case(
            "unknown connection keyword",
            &["assign", "--source", "host=x colour=blue"],
            1,
            "colour",
        ),
        case(
            "malformed URL",
            &["inspect", "--source", "postgresql://["],
            1,
            "unclosed '['",
        ),
        case(
            "verify-full without a root certificate",
            &["assign", "--source", &tls],
            1,
            "sslmode=verify-full needs a root certificate",
        ),
        case(
            "inspect an unreachable server",
            &["inspect", "--source", &unreachable],
            1,
            "127.0.0.1",
        ),
        case(
            "move before assign, to an unreachable target",
            &["move", "--domain", "reading_list", "--target", &unreachable],
            1,
            "carve assign",
        ),
        // Domains and phases that are not there.
        case(
            "move of an unknown domain",
            &["move", "--domain", "nope"],
            1,
            "nope",
        ),
        case(
            "verify of an unknown domain",
            &["verify", "--domain", "nope"],
            1,
            "nope",
        ),
        case(
            "cutover of an unknown domain",
            &["cutover", "--domain", "nope"],
            1,
            "nope",
        ),
        case(
            "rollback of an unknown domain",
            &["rollback", "--domain", "nope"],
            1,
            "nope",
        ),
        case(
            "retire of an unknown domain",
            &["retire", "--domain", "nope"],
            1,
            "nope",
        ),
        case(
            "move before assign",
            &["move", "--domain", "reading_list"],
            1,
            "carve assign",
        ),
        case(
            "cutover of a domain never moved",
            &["cutover", "--domain", "reading_list"],
            1,
            "has not been moved",
        ),
        case(
            "rollback of a domain never moved",
            &["rollback", "--domain", "reading_list"],
            1,
            "has not been moved",
        ),
        case(
            "verify of a domain never moved",
            &["verify", "--domain", "reading_list"],
            1,
            "reading_list",
        ),
        case(
            "retire of a domain never cut over",
            &["retire", "--domain", "reading_list"],
            1,
            "reading_list",
        ),
        case(
            "undo move of an unknown domain",
            &["undo", "move", "--domain", "nope"],
            1,
            "nope",
        ),
        case("restrict before assign", &["restrict"], 1, "carve assign"),
        case(
            "inspect of a missing database",
            &["inspect", "--source", &missing_db],
            1,
            "no_such_db",
        ),
        // Command lines carve does not understand (exit 2, the option named).
        case(
            "psql format outside carve plan",
            &["--format", "psql", "assign"],
            2,
            "--format psql",
        ),
        case(
            "a negative resolution",
            &["discover", "--resolution", "-1"],
            2,
            "--resolution",
        ),
        case(
            "a lag that is no number",
            &["move", "--domain", "x", "--max-lag", "lots"],
            2,
            "--max-lag",
        ),
        case(
            "a duration that is no duration",
            &["cutover", "--domain", "x", "--freeze-timeout", "soon"],
            2,
            "--freeze-timeout",
        ),
        case(
            "plan through a phase that does not exist",
            &["plan", "--through", "teleport"],
            2,
            "--through",
        ),
        case(
            "completions for an unknown shell",
            &["completions", "tcsh"],
            2,
            "tcsh",
        ),
        case(
            "undo of an unknown phase",
            &["undo", "teleport"],
            2,
            "teleport",
        ),
        case("an unknown command", &["teleport"], 2, "teleport"),
        case(
            "an unknown switch method",
            &["cutover", "--domain", "x", "--switch", "carrier-pigeon"],
            2,
            "carrier-pigeon",
        ),
        // Playbooks.
        case(
            "a playbook that does not exist",
            &["run", "/no/such/playbook.toml"],
            1,
            "/no/such/playbook.toml",
        ),
    ];
    all.push(Case {
        name: "a playbook step without an action",
        plan: None,
        args: vec![s("run"), playbook_bad.display().to_string()],
        exit: 1,
        says: "needs exactly one of",
    });
    all.push(Case {
        name: "a playbook variable missing from the environment",
        plan: None,
        args: vec![s("run"), playbook_var.display().to_string()],
        exit: 1,
        says: "NO_SUCH_VARIABLE_HERE",
    });
    all
}

/// A TCP port nothing listens on (bound, then let go).
/// What is wrong with carve's answer to a bad input: its exit code, a message that
/// names the problem on stderr, no panic, no password, and with `--format json`
/// one versioned JSON error object on stdout.
fn problems(out: &std::process::Output, exit: i32, says: &str, json: bool) -> Vec<String> {
    let (out_text, err) = (stdout(out), stderr(out));
    let mut problems = Vec::new();
    if code(out) != exit {
        problems.push(format!("exit {} (want {exit})", code(out)));
    }
    if !err.contains(says) {
        problems.push(format!("{says:?} not on stderr"));
    }
    if err.contains("panicked") || out_text.contains("panicked") {
        problems.push("panicked".into());
    }
    if err.contains(SECRET) || out_text.contains(SECRET) {
        problems.push("printed the password".into());
    }
    if json && exit != 2 {
        match serde_json::from_str::<Value>(out_text.trim()) {
            Ok(doc) if doc["error"]["exit_status"] == exit && doc["format_version"] == 1 => {}
            Ok(doc) => problems.push(format!("JSON error object: {doc}")),
            Err(e) => problems.push(format!("stdout is not one JSON document ({e}): {out_text}")),
        }
    }
    problems
}

/// carve run by `program` (a shell that limits it, or another user), with the
/// monolith's plan and source: `discover` again, which writes its report and the plan.
fn discover_again_through(m: &Monolith, program: &[&str], json: bool) -> std::process::Output {
    let mut command = std::process::Command::new(program[0]);
    command.args(&program[1..]).arg(env!("CARGO_BIN_EXE_carve"));
    if json {
        command.args(["--format", "json"]);
    }
    command
        .arg("--plan")
        .arg(&m.plan)
        .args(["--yes", "discover", "--workload"])
        .arg(&m.workload)
        .env("CARVE_SOURCE", &m.conninfo)
        .output()
        .unwrap()
}

#[tokio::test]
async fn a_full_disk_a_plan_directory_it_may_not_write_or_a_damaged_journal_is_a_clear_error_and_changes_nothing(
) {
    use std::os::unix::fs::PermissionsExt;
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let m = example_monolith(&server, dir.path(), "library", "library").await;
    let before = state(&server, &m).await;
    let leftovers = || {
        std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.starts_with(".carve-plan-"))
            .collect::<Vec<_>>()
    };
    let mut failures = Vec::new();
    // A file size limit of 1 KB (`ulimit -f`, RLIMIT_FSIZE) stands in for a full
    // disk: the report or the plan cannot be written whole.
    for json in [false, true] {
        let out =
            discover_again_through(&m, &["sh", "-c", "ulimit -f 2; exec \"$0\" \"$@\""], json);
        for p in problems(&out, 1, "File too large", json) {
            failures.push(format!(
                "file size limit (json {json}): {p}: {}",
                stderr(&out)
            ));
        }
    }
    // A plan directory its user may read but not write (carve run as postgres: root
    // may write anywhere).
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for json in [false, true] {
        let out = discover_again_through(&m, &["runuser", "-u", "postgres", "--"], json);
        for p in problems(&out, 1, "Permission denied", json) {
            failures.push(format!(
                "read-only plan directory (json {json}): {p}: {}",
                stderr(&out)
            ));
        }
    }
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    // A journal whose middle line is damaged (a last line cut short by a crash is
    // left out; any other bad line is an error naming it).
    let journal = carve::plan::journal_path(&m.plan);
    let line = r#"{"phase":"assign","step":"x","status":"done","at":"2026-11-30T00:00:00Z"}"#;
    std::fs::write(&journal, format!("{line}\n{{\"phase\": \"ass\n{line}\n")).unwrap();
    let journal_before = std::fs::read(&journal).unwrap();
    for json in [false, true] {
        let mut args = vec!["status"];
        if json {
            args.splice(0..0, ["--format", "json"]);
        }
        let out = run(&m, &args);
        for p in problems(&out, 1, ".journal:2:", json) {
            failures.push(format!(
                "damaged journal (json {json}): {p}: {}",
                stderr(&out)
            ));
        }
    }
    assert_eq!(std::fs::read(&journal).unwrap(), journal_before);
    std::fs::remove_file(&journal).unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(leftovers().is_empty(), "{:?}", leftovers());
    assert!(
        state(&server, &m).await == before,
        "the plan file, the schema or the roles changed"
    );
}

fn portpicker_closed() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn every_bad_input_gets_its_exit_code_a_clear_message_and_changes_nothing() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let m = example_monolith(&server, dir.path(), "library", "library").await;
    let good = std::fs::read_to_string(&m.plan).unwrap();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cases = cases(&m.conninfo, dir.path(), silent.local_addr().unwrap().port());
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let text = match c.plan {
            Some(edit) => edit(&good),
            None => good.clone(),
        };
        std::fs::write(&m.plan, &text).unwrap();
        let before = state(&server, &m).await;
        for json in [false, true] {
            let mut args: Vec<&str> = Vec::new();
            if json && !c.args.iter().any(|a| a == "--format") {
                args.extend(["--format", "json"]);
            }
            args.extend(c.args.iter().map(String::as_str));
            let out = run(&m, &args);
            let problems = problems(&out, c.exit, c.says, json);
            if !problems.is_empty() {
                failures.push(format!(
                    "{}{}: {}\n    carve {args:?}\n    stderr: {}",
                    c.name,
                    if json { " (json)" } else { "" },
                    problems.join("; "),
                    stderr(&out).trim()
                ));
            }
        }
        let after = state(&server, &m).await;
        if before != after {
            failures.push(format!(
                "{}: changed the plan file, the schema or the roles",
                c.name
            ));
        }
    }
    std::fs::write(&m.plan, &good).unwrap();
    eprintln!("{} bad inputs, each as text and as JSON", cases.len());
    assert!(
        failures.is_empty(),
        "{} of {} case(s) failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
