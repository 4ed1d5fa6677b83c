//! A dry-run: steps rendered as a script that `psql -v ON_ERROR_STOP=1 -f` runs as it
//! is. Each step is named in a comment, runs only when its check says it is not done
//! yet (`\gset` and `\if`), and `\connect` lines switch databases where a step runs
//! elsewhere, so running the script twice, or after a partial run, ends in the same
//! state as running it once.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::{Action, ConsoleAction, SqlAction, Step, Target, WaitAction};
use crate::sql::{literal, psql_argument};

/// How long a step that takes a strong lock waits for it in the script.
pub const SCRIPT_LOCK_TIMEOUT: &str = "5s";

/// Renders `steps` of `phase`. `targets` maps each step's target to a connection
/// string without a password (the plan's reference); a target it does not name is an
/// error, so a script never runs a step against the wrong database.
///
/// A SQL step runs guarded by its check. A wait checks its condition once and, when
/// it does not hold yet, stops the script with a message (psql cannot loop until a
/// condition holds): running the script again later goes on from there. A console
/// command is sent as it is after `\connect` to the console; psql cannot evaluate a
/// check on the console's `SHOW` output, so the script says what to look for.
pub fn render(
    phase: &str,
    steps: &[Step],
    targets: &BTreeMap<Target, String>,
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
    let mut current: Option<&Target> = None;
    let total = steps.len();
    for (i, step) in steps.iter().enumerate() {
        let n = i + 1;
        let _ = writeln!(
            out,
            "\n-- step {n}/{total}: {}\n-- {}",
            one_line(&step.id),
            one_line(&step.description)
        );
        // Files and hooks need no connection.
        if step.target != Target::Local && current != Some(&step.target) {
            let conninfo = targets.get(&step.target).ok_or_else(|| {
                format!("step {}: no connection for target {}", step.id, step.target)
            })?;
            let _ = writeln!(out, "\\connect {}", psql_argument(conninfo));
            current = Some(&step.target);
        }
        match &step.action {
            Action::Sql(action) => sql(&mut out, n, total, action, targets, &step.target)?,
            Action::Wait(action) => wait(&mut out, n, total, action),
            Action::Console(action) => console(&mut out, n, total, action),
            Action::File(file) => {
                let _ = writeln!(
                    out,
                    "-- a file psql cannot write: {} {}\n\\echo {}",
                    one_line(&file.path.display().to_string()),
                    match &file.content {
                        Some(c) => format!("holds {} line(s) carve renders", c.lines().count()),
                        None => "is removed".into(),
                    },
                    psql_argument(&format!(
                        "step {n}/{total}: write {} by hand (carve does it when it applies the plan)",
                        file.path.display()
                    ))
                );
            }
            Action::Hook(hook) => {
                // psql runs a shell command with \! (its environment set inline).
                let env: String = hook
                    .env
                    .iter()
                    .map(|(k, v)| format!("{k}={} ", crate::sql::shell_word(v)))
                    .collect();
                let _ = writeln!(
                    out,
                    "\\! {env}sh -c {}",
                    crate::sql::shell_word(&hook.command)
                );
            }
            Action::PgbouncerEntry(entry) => {
                let _ = writeln!(
                    out,
                    "-- a file edit psql cannot make: in {}, point [databases] entry {} at {} (it points at {} before)\n\\echo {}",
                    one_line(&entry.file.display().to_string()),
                    one_line(&entry.entry),
                    one_line(&entry.to.describe()),
                    one_line(&entry.from.describe()),
                    psql_argument(&format!(
                        "step {n}/{total}: edit {} by hand (carve does it when it applies the plan)",
                        entry.file.display()
                    ))
                );
            }
        }
    }
    Ok(out)
}

fn sql(
    out: &mut String,
    n: usize,
    total: usize,
    action: &SqlAction,
    connects: &BTreeMap<Target, String>,
    here: &Target,
) -> Result<(), String> {
    let _ = writeln!(
        out,
        "SELECT NOT ({}) AS carve_todo \\gset\n\\if :carve_todo",
        action.done_check
    );
    if let Some(reading) = &action.read {
        // psql variables outlive \connect: read there, come back, use it here.
        let there = connects
            .get(&reading.on)
            .ok_or_else(|| format!("step {n}: no connection for target {}", reading.on))?;
        let _ = writeln!(
            out,
            "\\connect {}\nSELECT ({})::text AS carve_read \\gset\n\\connect {}",
            psql_argument(there),
            reading.query,
            psql_argument(&connects[here])
        );
    }
    let sql = action.sql.trim().trim_end_matches(';');
    if let Some(secret) = &action.secret {
        // A script must not hold a secret, and psql cannot make one.
        let _ = writeln!(
            out,
            "\\echo {}",
            psql_argument(&format!(
                "step {n}/{total} not run by this script: {}; `carve` does it when it applies the plan, or set it by hand (psql: \\password)",
                secret.describe()
            ))
        );
    } else if action.transactional {
        out.push_str("BEGIN;\n");
        if action.strong_lock {
            let timeout = literal(SCRIPT_LOCK_TIMEOUT).expect("no NUL");
            let _ = writeln!(out, "SET LOCAL lock_timeout = {timeout};");
        }
        let _ = writeln!(out, "{sql};\nCOMMIT;");
    } else {
        let _ = writeln!(out, "{sql};");
    }
    let _ = writeln!(
        out,
        "\\else\n\\echo 'step {n}/{total} already done'\n\\endif"
    );
    Ok(())
}

fn wait(out: &mut String, n: usize, total: usize, action: &WaitAction) {
    let _ = writeln!(
        out,
        "-- a wait (carve polls every {} for at most {}); psql looks once:",
        humantime::format_duration(action.every),
        humantime::format_duration(action.timeout)
    );
    let _ = writeln!(
        out,
        "SELECT ({}) AS carve_ready \\gset\n\\if :carve_ready\n\\echo 'step {n}/{total}: ready'\n\\else\n\\echo {}\n\\quit\n\\endif",
        action.until,
        psql_argument(&format!(
            "step {n}/{total}: not ready yet; this script stops here: run it again later to go on"
        ))
    );
}

fn console(out: &mut String, n: usize, total: usize, action: &ConsoleAction) {
    let _ = writeln!(
        out,
        "-- a PgBouncer console command: psql cannot test its check, so look first:\n-- skip it when {}",
        one_line(&action.check.describe())
    );
    let _ = writeln!(out, "\\echo 'step {n}/{total}: console command'");
    let _ = writeln!(out, "{};", action.command.trim().trim_end_matches(';'));
}

/// Text for a `--` comment: a newline would end it and turn the rest into SQL.
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{OnTimeout, RowCheck};
    use std::time::Duration;

    fn step(id: &str, target: Target) -> Step {
        Step::sql(
            id.into(),
            format!("create {id}\nDROP TABLE x"),
            target,
            SqlAction {
                sql: format!("CREATE SCHEMA {id};"),
                done_check: format!("EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = '{id}')"),
                undo: format!("DROP SCHEMA {id}"),
                transactional: true,
                strong_lock: true,
                secret: None,
                read: None,
            },
        )
    }

    fn sales() -> Target {
        Target::Domain("sales".into())
    }

    #[test]
    fn each_step_is_checked_named_and_connected() {
        let targets = BTreeMap::from([
            (Target::Source, "host=/tmp dbname=shop".to_string()),
            (sales(), "host=db2 dbname='it''s'".to_string()),
        ]);
        let steps = [
            step("a", Target::Source),
            step("b", Target::Source),
            step("c", sales()),
        ];
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
        let err = render("assign", &[step("a", sales())], &BTreeMap::new()).unwrap_err();
        assert!(
            err.contains("no connection for target domain:sales"),
            "{err}"
        );
    }

    #[test]
    fn a_wait_stops_the_script_until_it_holds_and_a_console_step_says_what_to_check() {
        let wait = Step {
            id: "copied".into(),
            description: "the copy is done".into(),
            target: sales(),
            action: Action::Wait(WaitAction {
                until: "NOT EXISTS (SELECT 1 FROM pg_subscription_rel WHERE srsubstate <> 'r')"
                    .into(),
                progress: None,
                unit: String::new(),
                every: Duration::from_secs(1),
                timeout: Duration::from_secs(600),
                on_timeout: OnTimeout::Fail,
                once: false,
            }),
        };
        let paused = |equals: &str| RowCheck::pgbouncer_database("app", "paused", equals);
        let pause = Step {
            id: "pause app".into(),
            description: "clients queue".into(),
            target: Target::Console("bouncer".into()),
            action: Action::Console(ConsoleAction {
                command: "PAUSE app".into(),
                check: paused("1"),
                undo: "RESUME app".into(),
                undo_check: paused("0"),
                timeout: None,
            }),
        };
        let targets = BTreeMap::from([
            (sales(), "host=db2".to_string()),
            (
                Target::Console("bouncer".into()),
                "host=pgb port=6432 dbname=pgbouncer".to_string(),
            ),
        ]);
        let script = render("move", &[wait, pause], &targets).unwrap();
        assert!(
            script.contains(
                "SELECT (NOT EXISTS (SELECT 1 FROM pg_subscription_rel WHERE srsubstate <> 'r')) AS carve_ready \\gset"
            ),
            "{script}"
        );
        assert!(script.contains("\\quit"), "{script}");
        assert!(script.contains("-- a wait (carve polls every 1s for at most 10m)"));
        assert!(script.contains("\\connect 'host=pgb port=6432 dbname=pgbouncer'\n"));
        assert!(script.contains("-- skip it when SHOW DATABASES shows paused = 1 for name = app"));
        assert!(script.ends_with("PAUSE app;\n"), "{script}");
    }
}
