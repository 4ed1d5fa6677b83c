//! `carve run PLAYBOOK.toml`: a playbook's steps in order, for pipelines. Each carve
//! step is carve itself, run as a child (`--plan`, `--yes`, `--format json`), so a
//! step behaves exactly as on the command line; a shell step runs with `sh -c`; a
//! lag wait asks `carve status`. Each step done is recorded in the plan
//! (`[[runs]]`), so a run killed part-way goes on at its first step not done. Events
//! go out as they happen: JSON lines on stdout with `--format json` (versioned; one
//! per step started, done, failed or skipped, and one at the end), lines on stderr
//! otherwise. The run exits with the failing step's own exit code.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::cli::{RunArgs, Settings};
use crate::exit;
use crate::plan::{Plan, PlaybookRun};
use crate::playbook::{self, Action, Playbook, PlaybookStep};

/// How a step ended badly: its exit code and what it said.
struct Failure {
    code: u8,
    message: String,
}

pub async fn run(settings: &Settings, args: &RunArgs) -> anyhow::Result<u8> {
    let text = std::fs::read_to_string(&args.playbook)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", args.playbook.display()))?;
    let parsed =
        playbook::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", args.playbook.display()))?;
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let book = playbook::expanded(&parsed, &env)
        .map_err(|e| anyhow::anyhow!("{}: {e}; nothing was run", args.playbook.display()))?;
    let digest: String = Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let done = done_before(settings, &book, &digest, args.restart)?;
    let events = Events {
        settings,
        book: &book,
    };
    let total = book.steps.len();
    let (mut ran, mut skipped) = (0, 0);
    for (i, step) in book.steps.iter().enumerate() {
        if done.contains(&step.name) {
            skipped += 1;
            events.emit("playbook-step-skipped", i, step, json!({}));
            continue;
        }
        events.emit("playbook-step-started", i, step, json!({}));
        let started = Instant::now();
        let result = match step.action().map_err(|e| anyhow::anyhow!(e))? {
            Action::Carve(carve_args) => carve(settings, &carve_args).await,
            Action::Shell(command) => shell(settings, &command).await,
            Action::WaitLag(wait) => wait_lag(settings, &wait).await,
        };
        let seconds = started.elapsed().as_secs_f64();
        match result {
            Ok(result) => {
                ran += 1;
                record(settings, &book, &digest, Some(&step.name), false)?;
                events.emit(
                    "playbook-step-done",
                    i,
                    step,
                    json!({"exit_code": 0, "seconds": seconds, "result": result}),
                );
            }
            Err(failure) => {
                events.emit(
                    "playbook-step-failed",
                    i,
                    step,
                    json!({"exit_code": failure.code, "seconds": seconds, "error": failure.message}),
                );
                if let Some(rollback) = step.rollback().map_err(|e| anyhow::anyhow!(e))? {
                    events.emit(
                        "playbook-rollback-started",
                        i,
                        step,
                        json!({"carve": rollback}),
                    );
                    let back = carve(settings, &rollback).await;
                    events.emit(
                        "playbook-rollback-done",
                        i,
                        step,
                        match &back {
                            Ok(result) => json!({"exit_code": 0, "result": result}),
                            Err(f) => json!({"exit_code": f.code, "error": f.message}),
                        },
                    );
                }
                if settings.out.is_json() {
                    println!(
                        "{}",
                        json!({
                            "format_version": crate::ui::JSON_FORMAT_VERSION,
                            "event": "playbook-stopped",
                            "playbook": book.name,
                            "step": step.name,
                            "exit_code": failure.code.max(1),
                        })
                    );
                    settings.out.streamed();
                } else {
                    settings.out.error(&format!(
                        "step {} of {total} ({}) failed with exit {}: the run stopped there; run `carve run {}` again to go on from it",
                        i + 1,
                        step.name,
                        failure.code,
                        args.playbook.display()
                    ));
                }
                return Ok(failure.code.max(1));
            }
        }
    }
    record(settings, &book, &digest, None, true)?;
    events.finish(ran, skipped);
    Ok(exit::SUCCESS)
}

/// The steps a stopped run of this playbook already did; refuses to go on with a
/// changed playbook unless `restart`.
fn done_before(
    settings: &Settings,
    book: &Playbook,
    digest: &str,
    restart: bool,
) -> anyhow::Result<Vec<String>> {
    let Some(plan) = Plan::load_if_exists(&settings.plan_path)? else {
        return Ok(Vec::new());
    };
    let Some(run) = plan.runs.iter().find(|r| r.playbook == book.name) else {
        return Ok(Vec::new());
    };
    if run.finished || restart {
        return Ok(Vec::new());
    }
    if run.digest != digest {
        anyhow::bail!(
            "a run of playbook {:?} stopped part-way ({} step(s) done) and the playbook has changed since: run it with --restart to start from its first step",
            book.name,
            run.done.len()
        );
    }
    Ok(run.done.clone())
}

/// Records a step done (or the run finished, or a fresh start) in the plan, when
/// there is one (a playbook may begin with `discover`, which makes it).
fn record(
    settings: &Settings,
    book: &Playbook,
    digest: &str,
    step: Option<&str>,
    finished: bool,
) -> anyhow::Result<()> {
    let Some(mut plan) = Plan::load_if_exists(&settings.plan_path)? else {
        return Ok(());
    };
    let position = plan.runs.iter().position(|r| r.playbook == book.name);
    let run = match position {
        Some(i) => &mut plan.runs[i],
        None => {
            plan.runs.push(PlaybookRun {
                playbook: book.name.clone(),
                digest: digest.to_string(),
                done: Vec::new(),
                finished: false,
            });
            plan.runs.last_mut().expect("just pushed")
        }
    };
    if run.finished || run.digest != digest {
        *run = PlaybookRun {
            playbook: book.name.clone(),
            digest: digest.to_string(),
            done: Vec::new(),
            finished: false,
        };
    }
    if let Some(step) = step {
        if !run.done.iter().any(|d| d == step) {
            run.done.push(step.to_string());
        }
    }
    run.finished = finished;
    plan.save(&settings.plan_path)?;
    Ok(())
}

/// The run's events: JSON lines on stdout, or lines for people on stderr.
struct Events<'a> {
    settings: &'a Settings,
    book: &'a Playbook,
}

impl Events<'_> {
    fn emit(&self, event: &str, index: usize, step: &PlaybookStep, extra: Value) {
        let total = self.book.steps.len();
        if self.settings.out.is_json() {
            let mut line = json!({
                "format_version": crate::ui::JSON_FORMAT_VERSION,
                "event": event,
                "playbook": self.book.name,
                "index": index + 1,
                "total": total,
                "step": step.name,
            });
            if let (Value::Object(line), Value::Object(extra)) = (&mut line, extra) {
                line.extend(extra);
            }
            println!("{line}");
            return;
        }
        let what = match event {
            "playbook-step-started" => "…".to_string(),
            "playbook-step-skipped" => "already done".to_string(),
            "playbook-step-done" => {
                format!("done in {:.1} s", extra["seconds"].as_f64().unwrap_or(0.0))
            }
            "playbook-step-failed" => format!(
                "failed (exit {}): {}",
                extra["exit_code"],
                extra["error"].as_str().unwrap_or("")
            ),
            "playbook-rollback-started" => format!("rolling back: carve {}", extra["carve"]),
            _ => format!("rollback ended (exit {})", extra["exit_code"]),
        };
        self.settings
            .out
            .progress(&format!("[{}/{total}] {}: {what}", index + 1, step.name));
    }

    fn finish(&self, ran: usize, skipped: usize) {
        if self.settings.out.is_json() {
            println!(
                "{}",
                json!({
                    "format_version": crate::ui::JSON_FORMAT_VERSION,
                    "event": "playbook-finished",
                    "playbook": self.book.name,
                    "ran": ran,
                    "skipped": skipped,
                })
            );
        } else {
            self.settings.out.line(&format!(
                "playbook {:?}: every step done ({ran} run now, {skipped} done before)",
                self.book.name
            ));
        }
    }
}

/// carve itself with `args`, as a child: its JSON document on success.
async fn carve(settings: &Settings, args: &[String]) -> Result<Value, Failure> {
    let exe = std::env::current_exe().map_err(|e| Failure {
        code: exit::ERROR,
        message: format!("cannot find carve's own program: {e}"),
    })?;
    let plan = settings.plan_path.clone();
    let mut command = Command::new(exe);
    command
        .arg("--plan")
        .arg(&plan)
        .args(["--yes", "--format", "json"])
        .args(args);
    let out = output_of(command, "carve").await?;
    let document: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    if out.status.success() || out.status.code() == Some(i32::from(exit::CHANGES_PENDING)) {
        return Ok(document);
    }
    Err(Failure {
        code: out
            .status
            .code()
            .and_then(|c| u8::try_from(c).ok())
            .unwrap_or(exit::ERROR),
        message: last_error(&out.stderr, &document),
    })
}

/// Runs a child to its end (without a terminal to read from), off the async threads.
async fn output_of(mut command: Command, what: &str) -> Result<std::process::Output, Failure> {
    let out = tokio::task::spawn_blocking(move || command.stdin(Stdio::null()).output())
        .await
        .map_err(|e| Failure {
            code: exit::ERROR,
            message: e.to_string(),
        })?;
    out.map_err(|e| Failure {
        code: exit::ERROR,
        message: format!("cannot run {what}: {e}"),
    })
}

/// What a failed child said last: its JSON error, else its last stderr lines.
fn last_error(stderr: &[u8], document: &Value) -> String {
    if let Some(message) = document["error"]["message"].as_str() {
        return message.to_string();
    }
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("\"event\""))
        .collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

/// A shell step, with `CARVE_PLAN` set.
async fn shell(settings: &Settings, command: &str) -> Result<Value, Failure> {
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(command)
        .env("CARVE_PLAN", &settings.plan_path);
    let out = output_of(sh, "sh").await?;
    if out.status.success() {
        return Ok(json!({"stdout": String::from_utf8_lossy(&out.stdout).trim_end()}));
    }
    Err(Failure {
        code: exit::ERROR,
        message: format!(
            "the shell step exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        ),
    })
}

/// Polls `carve status --domain D` until the move's slot lag is at most the bound.
async fn wait_lag(settings: &Settings, wait: &playbook::WaitLag) -> Result<Value, Failure> {
    let started = Instant::now();
    let args = ["status".to_string(), "--domain".into(), wait.domain.clone()];
    loop {
        let status = carve(settings, &args).await?;
        let lag = lag_of(&status, &wait.domain);
        if let Some(lag) = lag.filter(|l| *l <= wait.max_bytes as i64) {
            return Ok(json!({"lag_bytes": lag}));
        }
        if started.elapsed() >= wait.timeout {
            return Err(Failure {
                code: exit::GATE_NOT_MET,
                message: format!(
                    "{} is still {} behind after {}",
                    wait.domain,
                    lag.map_or("an unknown number of bytes".to_string(), |l| format!(
                        "{l} bytes"
                    )),
                    humantime::format_duration(wait.timeout)
                ),
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The lag of `domain`'s move as `carve status --format json` reports it.
fn lag_of(status: &Value, domain: &str) -> Option<i64> {
    status["phases"].as_array()?.iter().find_map(|p| {
        (p["name"] == "move" && p["domain"] == domain)
            .then(|| p["replication"]["slot"]["lag_bytes"].as_i64())
            .flatten()
    })
}
