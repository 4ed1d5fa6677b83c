//! The layering rules of ARCHITECTURE.md, checked on the source: a change that breaks
//! one fails here with the file and line, rather than in review.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Every `(file:line, text)` under `src/<dir>` that names one of `forbidden`.
fn offenders(dir: &str, forbidden: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir);
    let files = if root.is_dir() {
        rust_files(&root)
    } else {
        vec![root.with_extension("rs")]
    };
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if forbidden.iter().any(|f| code.contains(f)) {
                found.push(format!("{}:{}: {}", file.display(), i + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn the_engine_imports_no_phase_no_ui_and_no_cli() {
    let found = offenders(
        "engine",
        &[
            "crate::phases",
            "crate::ui",
            "crate::cli",
            "crate::commands",
        ],
    );
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn nothing_below_commands_imports_cli() {
    let mut found = Vec::new();
    for dir in [
        "analysis",
        "catalog",
        "conn",
        "engine",
        "phases",
        "plan",
        "sql",
        "ui",
        "workload",
        "pgtemp",
        "examples",
        "synthetic",
        "text",
    ] {
        found.extend(offenders(dir, &["crate::cli", "crate::commands"]));
    }
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn the_plan_does_not_depend_on_the_executor() {
    let found = offenders(
        "plan",
        &["engine::executor", "engine::endpoint", "tokio_postgres"],
    );
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn phases_and_analysis_never_hold_a_connection() {
    let mut found = Vec::new();
    for dir in ["phases", "analysis"] {
        found.extend(offenders(
            dir,
            &[
                "tokio_postgres",
                "engine::endpoint",
                "engine::executor",
                "crate::conn::connect",
            ],
        ));
    }
    assert!(found.is_empty(), "{found:#?}");
}
