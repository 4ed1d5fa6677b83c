//! Property tests of what reads untrusted text: the connection-string parser, the
//! SQL splitter, the plan loader, the verify journal and the log readers take any
//! input, valid, cut short or random, without a panic, and say what is wrong in an
//! error. (proptest: 300 generated cases each in the suite, `PROPTEST_CASES=N` for
//! more; shrunk on failure.)

use std::io::Write;

use carve::conn::{ConnInfo, ConnSpec, Environment};
use carve::workload::log::{self, LogFormat, LogOptions};
use carve::workload::split::split_checked;
use carve::workload::{ServiceMap, Workload};
use proptest::prelude::*;

/// Text made mostly of the characters these parsers care about.
fn tricky_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("'".to_string()),
            Just("\"".to_string()),
            Just("$$".to_string()),
            Just("$tag$".to_string()),
            Just(";".to_string()),
            Just("\\".to_string()),
            Just("/*".to_string()),
            Just("*/".to_string()),
            Just("--".to_string()),
            Just("\n".to_string()),
            Just("=".to_string()),
            Just(" ".to_string()),
            Just("://".to_string()),
            Just("@".to_string()),
            Just("%".to_string()),
            Just(",".to_string()),
            Just("[".to_string()),
            Just("]".to_string()),
            Just("{".to_string()),
            Just("}".to_string()),
            "[a-zA-Z0-9_]{0,6}",
            any::<char>().prop_map(|c| c.to_string()),
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

/// A valid plan file's text, from the library example's shape.
fn plan_text() -> String {
    let mut plan = carve::plan::Plan::new(
        carve::plan::Source {
            conninfo: "host=/tmp dbname=library".into(),
            database: "library".into(),
        },
        carve::catalog::fingerprint::Fingerprint::from_objects(
            [("table public.a".to_string(), "kind=table".to_string())].into(),
        ),
    );
    plan.domains.push(carve::plan::Domain {
        name: "reading_list".into(),
        tables: vec!["public.reading_list".into()],
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    plan.save(&path).unwrap();
    std::fs::read_to_string(path).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig {
        // 300 each in the suite; `PROPTEST_CASES=N` runs longer.
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(300),
        // Failures are shrunk and printed; nothing is written into the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn connection_strings_never_panic(text in tricky_text()) {
        let _ = ConnInfo::parse(&text);
        let env = Environment::default();
        if let Ok(spec) = ConnSpec::resolve(&text, &env) {
            // What goes into the plan and messages never holds a password.
            prop_assert!(!spec.reference().contains("password="));
        }
    }

    #[test]
    fn the_sql_splitter_never_panics_and_keeps_statement_text(text in tricky_text()) {
        let (pieces, _problem) = split_checked(&text);
        for piece in pieces {
            prop_assert!(!piece.text.trim().is_empty());
            prop_assert!(piece.line >= 1);
        }
    }

    #[test]
    fn a_plan_cut_short_or_damaged_is_an_error_not_a_panic(
        cut in 0usize..2000,
        flip in 0usize..2000,
        byte in any::<u8>(),
    ) {
        let text = plan_text();
        let mut bytes = text.into_bytes();
        if flip < bytes.len() {
            bytes[flip] = byte;
        }
        bytes.truncate(cut.min(bytes.len()));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, &bytes).unwrap();
        if let Err(e) = carve::plan::Plan::load(&path) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn random_plan_text_is_an_error_not_a_panic(text in tricky_text()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, text).unwrap();
        prop_assert!(carve::plan::Plan::load(&path).is_err());
    }

    #[test]
    fn a_damaged_verify_journal_is_an_error_not_a_panic(text in tricky_text(), cut in 0usize..200) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let valid = "{\"entry\":\"started\",\"domain\":\"d\",\"chunk_rows\":10}\n";
        // Cut anywhere, even inside a character: a kill does not wait for one.
        let mut content = format!("{valid}{text}").into_bytes();
        content.truncate(cut.min(content.len()));
        std::fs::write(&path, content).unwrap();
        let _ = carve::verify::journal::VerifyJournal::open(&path, "d", 10, true);
    }

    #[test]
    fn log_readers_never_panic(text in tricky_text(), format in 0usize..3) {
        let dir = tempfile::tempdir().unwrap();
        let (name, format) = match format {
            0 => ("x.csv", LogFormat::Csv),
            1 => ("x.json", LogFormat::Json),
            _ => ("x.log", LogFormat::Stderr),
        };
        let path = dir.path().join(name);
        std::fs::File::create(&path).unwrap().write_all(text.as_bytes()).unwrap();
        let services = ServiceMap::default();
        let options = LogOptions {
            database: "shop",
            line_prefix: "%m [%p] %q%u@%d %a ",
            services: &services,
        };
        let mut workload = Workload::from_texts("fuzz", &[]);
        log::load(&path, format, &options, &mut workload);
    }
}
