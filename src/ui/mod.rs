//! Terminal output: human text on stdout, JSON documents on stdout, messages and logs on
//! stderr. Colour only on a terminal and never with `NO_COLOR`.

pub mod discover;
pub mod events;
pub mod graph;
pub mod html;
pub mod inspect;
pub mod restrict;
pub mod review;
pub mod verify;

use std::io::{IsTerminal, Write};

use serde::Serialize;

/// Text for people, or JSON for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
}

/// The version of every JSON document carve prints; bumped on incompatible changes.
pub const JSON_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone)]
pub struct Output {
    pub format: Format,
    pub quiet: bool,
    pub color: bool,
    /// Writes nothing to stdout: a command run inside another (the demo) whose
    /// stdout is the outer command's JSON document.
    pub muted: bool,
    /// What the run has said went wrong, for the JSON error object (shared with
    /// nested outputs: it is one run).
    failure: std::sync::Arc<std::sync::Mutex<Failure>>,
}

/// The errors said so far, the objects they name, and whether a JSON document went
/// out already.
#[derive(Debug, Default)]
struct Failure {
    messages: Vec<String>,
    objects: Vec<String>,
    /// Set by [`Output::failing`]: the run ends with this exit code, so the command's
    /// own JSON document carries the error object.
    exit: Option<u8>,
    document_printed: bool,
}

/// The error object of a failed run in `--format json`: what runbooks branch on
/// instead of parsing stderr.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorObject {
    /// `error`, `usage`, `lock-held`, `stale-plan`, `gate-not-met`, `interrupted`.
    pub code: &'static str,
    pub exit_status: u8,
    pub message: String,
    /// What the failure names: undecided subjects, changed objects, a failed step …
    pub objects: Vec<String>,
}

impl Output {
    pub fn new(format: Format, quiet: bool) -> Output {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        let color = !no_color && !dumb && std::io::stdout().is_terminal();
        console::set_colors_enabled(color);
        console::set_colors_enabled_stderr(color && std::io::stderr().is_terminal());
        Output {
            format,
            quiet,
            color,
            muted: false,
            failure: Default::default(),
        }
    }

    fn failure(&self) -> std::sync::MutexGuard<'_, Failure> {
        self.failure.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records what a failure names (listed in the JSON error object).
    pub fn name_objects<I: IntoIterator<Item = String>>(&self, objects: I) {
        self.failure().objects.extend(objects);
    }

    /// Says the run will end with `exit` before the command prints its own JSON
    /// document, so that document carries the error object.
    pub fn failing(&self, exit: u8) {
        self.failure().exit = Some(exit);
    }

    /// A command that streams its own JSON lines (`carve run`) has said how it
    /// ended: no error document follows them.
    pub fn streamed(&self) {
        self.failure().document_printed = true;
    }

    fn error_object(failure: &Failure, exit: u8) -> ErrorObject {
        ErrorObject {
            code: crate::exit::name(exit),
            exit_status: exit,
            message: failure.messages.join("\n"),
            objects: failure.objects.clone(),
        }
    }

    /// At the end of a run: in JSON mode, a run that failed without printing a
    /// document prints one holding only the error object, so every failure gives
    /// runbooks one versioned JSON document on stdout.
    pub fn finish(&self, command: &str, exit: u8) {
        if !self.is_json() || self.muted || !crate::exit::is_failure(exit) {
            return;
        }
        let failure = self.failure();
        if failure.document_printed {
            return;
        }
        let error = Output::error_object(&failure, exit);
        drop(failure);
        #[derive(Serialize)]
        struct Only {
            error: ErrorObject,
        }
        self.json(command, &Only { error });
    }

    /// The output for a command run inside this one: in JSON mode, its stdout is
    /// muted (only the outer document is printed); for people, it prints as usual.
    pub fn nested(&self) -> Output {
        Output {
            muted: self.is_json(),
            ..self.clone()
        }
    }

    pub fn is_json(&self) -> bool {
        self.format == Format::Json
    }

    /// A line of the human report on stdout (not printed in JSON mode).
    pub fn line(&self, text: &str) {
        if !self.is_json() && !self.muted {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}");
        }
    }

    /// Progress for people on stderr, so stdout stays clean for pipes.
    pub fn progress(&self, text: &str) {
        if !self.quiet {
            eprintln!("{}", console::style(text).dim());
        }
    }

    pub fn warn(&self, text: &str) {
        if !self.quiet {
            eprintln!("{} {text}", console::style("warning:").yellow().bold());
        }
    }

    pub fn error(&self, text: &str) {
        eprintln!("{} {text}", console::style("error:").red().bold());
        self.failure().messages.push(text.to_string());
    }

    /// Prints one JSON document: `{"format_version": N, "command": …, …fields}`,
    /// serialized straight to stdout (no intermediate copy of a large catalog).
    pub fn json<T: Serialize>(&self, command: &str, body: &T) {
        if self.muted {
            return;
        }
        #[derive(Serialize)]
        struct Document<'a, T> {
            format_version: u32,
            command: &'a str,
            #[serde(flatten)]
            body: &'a T,
            #[serde(skip_serializing_if = "Option::is_none")]
            error: Option<ErrorObject>,
        }
        let error = {
            let mut failure = self.failure();
            failure.document_printed = true;
            failure
                .exit
                .map(|exit| Output::error_object(&failure, exit))
        };
        let doc = Document {
            format_version: JSON_FORMAT_VERSION,
            command,
            body,
            error,
        };
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let _ = serde_json::to_writer_pretty(&mut out, &doc);
        let _ = writeln!(out);
        let _ = out.flush();
    }
}

/// Fingerprint changes as an indented list, at most `limit` of them.
pub fn change_list(changes: &[crate::catalog::fingerprint::Change], limit: usize) -> String {
    let mut text = String::new();
    for c in changes.iter().take(limit) {
        text.push_str(&format!("  - {c}\n"));
    }
    if changes.len() > limit {
        text.push_str(&format!(
            "  … and {} more (--format json lists all)\n",
            changes.len() - limit
        ));
    }
    text
}

/// Logs go to stderr. `-v` debug, `-vv` trace, `-q` errors only; `CARVE_LOG` (a
/// tracing filter such as `carve=debug`) overrides all of them.
pub fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CARVE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("carve={level}")));
    // Debug and trace lines say when, since the start: that is where time goes.
    let timed = filter
        .max_level_hint()
        .is_none_or(|max| max >= tracing::level_filters::LevelFilter::DEBUG);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none());
    let _ = if timed {
        builder
            .with_timer(tracing_subscriber::fmt::time::uptime())
            .try_init()
    } else {
        builder.without_time().try_init()
    };
}

/// `1234567` → `1.2 MB`.
pub fn bytes(n: i64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < units.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

/// `1234567` → `1,234,567`.
pub fn count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// "38% of foreign keys (15 of 39), 9% of statements (7 of 74) and 9% of transactions
/// (7 of 74)": what crosses a domain boundary, for the text and the HTML report.
pub fn crossing_summary(q: &crate::analysis::domains::Quality) -> String {
    let share = |part: usize, whole: usize, what: &str| {
        let pct = if whole == 0 {
            0.0
        } else {
            100.0 * part as f64 / whole as f64
        };
        format!("{pct:.0}% of {what} ({part} of {whole})")
    };
    format!(
        "{}, {} and {}",
        share(q.foreign_keys_crossing, q.foreign_keys, "foreign keys"),
        share(q.statements_crossing, q.statements, "statements"),
        share(q.transactions_crossing, q.transactions, "transactions")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1_234_567), "1.2 MB");
        assert_eq!(count(0), "0");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(-1000), "-1,000");
    }
}
