//! A dry-run: steps rendered as a script that `psql -v ON_ERROR_STOP=1 -f` runs as it
//! is. Each step is named in a comment, runs only when its check says it is not done
//! yet (`\gset` and `\if`), and `\connect` lines switch databases where a step runs
//! elsewhere, so running the script twice, or after a partial run, ends in the same
//! state as running it once.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::Step;
use crate::sql::{literal, psql_argument};

/// How long a step that takes a strong lock waits for it in the script.
pub const SCRIPT_LOCK_TIMEOUT: &str = "5s";

/// Renders `steps` of `phase`. `targets` maps each step's target to a connection
/// string without a password (the plan's reference); a target it does not name is an
/// error, so a script never runs a step against the wrong database.
pub fn render(
    phase: &str,
    steps: &[Step],
    targets: &BTreeMap<String, String>,
) -> Result<String, String> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "-- carve {phase}: {} step{}, rendered as a psql script.",
        steps.len(),
        if steps.len() == 1 { "" } else { "s" }
    );
    out.push_str(
        "-- Run it with: psql -X -v ON_ERROR_STOP=1 -f THIS_FILE\n\
         -- Each step checks whether it is already done, so running it again, or after an\n\
         -- interruption, finishes the work without repeating any of it. Passwords come\n\
         -- from PGPASSWORD or ~/.pgpass, never from this file.\n\
         \\set ON_ERROR_STOP on\n",
    );
    let mut current: Option<&str> = None;
    for (i, step) in steps.iter().enumerate() {
        let conninfo = targets.get(&step.target).ok_or_else(|| {
            format!(
                "step {}: no connection for target {:?}",
                step.id, step.target
            )
        })?;
        let _ = writeln!(
            out,
            "\n-- step {}/{}: {}\n-- {}",
            i + 1,
            steps.len(),
            one_line(&step.id),
            one_line(&step.description)
        );
        if current != Some(step.target.as_str()) {
            let _ = writeln!(out, "\\connect {}", psql_argument(conninfo));
            current = Some(step.target.as_str());
        }
        let _ = writeln!(
            out,
            "SELECT NOT ({}) AS carve_todo \\gset\n\\if :carve_todo",
            step.done_check
        );
        let sql = step.sql.trim().trim_end_matches(';');
        if let Some(secret) = &step.secret {
            // A script must not hold a secret, and psql cannot make one.
            let _ = writeln!(
                out,
                "\\echo {}",
                psql_argument(&format!(
                    "step {}/{} not run by this script: {}; `carve` does it when it applies the plan, or set it by hand (psql: \\password)",
                    i + 1,
                    steps.len(),
                    secret.describe()
                ))
            );
        } else if step.transactional {
            out.push_str("BEGIN;\n");
            if step.strong_lock {
                let timeout = literal(SCRIPT_LOCK_TIMEOUT).expect("no NUL");
                let _ = writeln!(out, "SET LOCAL lock_timeout = {timeout};");
            }
            let _ = writeln!(out, "{sql};\nCOMMIT;");
        } else {
            let _ = writeln!(out, "{sql};");
        }
        let _ = writeln!(
            out,
            "\\else\n\\echo 'step {}/{} already done'\n\\endif",
            i + 1,
            steps.len()
        );
    }
    Ok(out)
}

/// Text for a `--` comment: a newline would end it and turn the rest into SQL.
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(id: &str, target: &str) -> Step {
        Step {
            id: id.into(),
            description: format!("create {id}\nDROP TABLE x"),
            target: target.into(),
            sql: format!("CREATE SCHEMA {id};"),
            done_check: format!("EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = '{id}')"),
            undo: format!("DROP SCHEMA {id}"),
            transactional: true,
            strong_lock: true,
            secret: None,
        }
    }

    #[test]
    fn each_step_is_checked_named_and_connected() {
        let targets: BTreeMap<String, String> = [
            ("source".to_string(), "host=/tmp dbname=shop".to_string()),
            ("sales".to_string(), "host=db2 dbname='it''s'".to_string()),
        ]
        .into();
        let steps = [step("a", "source"), step("b", "source"), step("c", "sales")];
        let script = render("assign", &steps, &targets).unwrap();
        assert_eq!(script.matches("\\connect").count(), 2, "{script}");
        assert!(script.contains("\\connect 'host=/tmp dbname=shop'"));
        assert!(script.contains("\\connect 'host=db2 dbname=''it''''s'''"));
        assert!(script.contains("-- step 3/3: c\n-- create c DROP TABLE x\n"));
        assert_eq!(script.matches("\\if :carve_todo").count(), 3);
        assert_eq!(script.matches("SET LOCAL lock_timeout = '5s';").count(), 3);
        assert!(script.contains("CREATE SCHEMA a;\nCOMMIT;"));
    }

    #[test]
    fn an_unknown_target_is_an_error() {
        let err = render("assign", &[step("a", "nowhere")], &BTreeMap::new()).unwrap_err();
        assert!(err.contains("no connection for target \"nowhere\""));
    }
}
