//! No secret at rest: after restrict (new login roles with generated passwords) and
//! a move (a replication role whose password the subscription holds), on servers
//! that log every statement, no password and no SCRAM verifier is in the plan, its
//! journal, carve's output or either server's log.

mod support;

use carve::pgtemp::{ServerOptions, TempServer};
use support::*;

/// Servers that log every statement, and the statement of every error.
fn logging_server() -> TempServer {
    TempServer::start_with(
        &ServerOptions::default()
            .setting("log_statement", "all")
            .setting("log_min_error_statement", "error"),
    )
    .unwrap()
}

/// The passwords of a `~/.pgpass`-format file.
fn passwords(file: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|l| l.rsplit(':').next().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn no_password_or_verifier_reaches_the_plan_the_output_or_a_server_log() {
    let source = logging_server();
    let dir = tempfile::tempdir().unwrap();
    let m = example_monolith(&source, dir.path(), "library", "library").await;
    let mut outputs = Vec::new();
    let out = run(&m, &["assign"]);
    assert_success(&out);
    outputs.push(out);
    decide_library_crossings(&m);
    let service_passwords = dir.path().join("service-passwords");
    let out = run(
        &m,
        &[
            "restrict",
            "--password-file",
            service_passwords.to_str().unwrap(),
        ],
    );
    assert_success(&out);
    outputs.push(out);

    let target = logging_server();
    create_db(&target, "library", "SELECT 1").await;
    let replication_passwords = dir.path().join("replication-passwords");
    let domain = domain_of(&m, "public.reading_list");
    let out = run(
        &m,
        &[
            "move",
            "--domain",
            &domain,
            "--target",
            &target.conninfo("library"),
            "--password-file",
            replication_passwords.to_str().unwrap(),
            "--accept-unlimited-slot-wal",
        ],
    );
    assert_success(&out);
    outputs.push(out);
    let out = run(&m, &["undo", "move", "--domain", &domain]);
    assert_success(&out);
    outputs.push(out);

    let mut secrets = passwords(&service_passwords);
    secrets.extend(passwords(&replication_passwords));
    assert_eq!(secrets.len(), 4, "three services and one replication role");
    let mut places: Vec<(String, String)> = vec![
        ("the plan".into(), std::fs::read_to_string(&m.plan).unwrap()),
        (
            "the source's log".into(),
            std::fs::read_to_string(source.log_path()).unwrap(),
        ),
        (
            "the target's log".into(),
            std::fs::read_to_string(target.log_path()).unwrap(),
        ),
    ];
    let journal = m.plan.with_extension("toml.journal");
    if let Ok(text) = std::fs::read_to_string(&journal) {
        places.push(("the journal".into(), text));
    }
    for (i, out) in outputs.iter().enumerate() {
        places.push((
            format!("output {i}"),
            format!("{}{}", stdout(out), stderr(out)),
        ));
    }
    // The logs did record statements: the check is not vacuous.
    assert!(
        places[2].1.contains("CREATE TABLE"),
        "the target logs statements"
    );
    for (place, text) in &places {
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "a password is in {place}");
        }
        assert!(!text.contains("SCRAM-SHA-256$"), "a verifier is in {place}");
    }
}
