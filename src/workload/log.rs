//! Server logs as a workload: `csvlog`, `jsonlog`, and `stderr` logs whose
//! `log_line_prefix` carries `%u` (role) and/or `%a` (application name).
//!
//! Statements come from `log_statement = all` (`statement: …`) and from
//! `log_min_duration_statement` (`duration: … ms  statement: …` and, for the extended
//! protocol, `execute <name>: …`; `parse` and `bind` lines are not counted twice).
//! Each session's `BEGIN … COMMIT` makes a transaction. Files are read line by line
//! (one record at a time for CSV), so memory does not grow with the file's size.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use regex::Regex;

use super::{ServiceMap, Workload};

/// How a log file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Csv,
    Json,
    Stderr,
}

impl LogFormat {
    /// The format of a log file by its extension: `.csv`, `.json`, or `.log` (stderr).
    pub fn of_path(path: &Path) -> Option<LogFormat> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(LogFormat::Csv),
            "json" | "jsonl" => Some(LogFormat::Json),
            "log" => Some(LogFormat::Stderr),
            _ => None,
        }
    }
}

/// What reading logs needs to know besides the file.
pub struct LogOptions<'a> {
    /// Only this database's statements count (when the log names databases).
    pub database: &'a str,
    /// `log_line_prefix` of the server that wrote a stderr log.
    pub line_prefix: &'a str,
    pub services: &'a ServiceMap,
}

/// One log record, whatever the format.
#[derive(Debug, Default, Clone, PartialEq)]
struct Record {
    role: Option<String>,
    database: Option<String>,
    application: Option<String>,
    /// Session id, or the backend pid when the log has no session id.
    session: Option<String>,
    severity: String,
    message: String,
    line: usize,
}

/// Loads one log file into `workload`, attributing statements to services.
pub fn load(path: &Path, format: LogFormat, options: &LogOptions, workload: &mut Workload) {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => return workload.problem(path, format!("cannot read log: {e}")),
    };
    let mut sink = Sink {
        source: path.display().to_string(),
        options,
        workload,
        records: 0,
    };
    let result = match format {
        LogFormat::Csv => read_csv(file, &mut sink),
        LogFormat::Json => read_json(file, &mut sink),
        LogFormat::Stderr => match StderrPrefix::parse(options.line_prefix) {
            Ok(prefix) => read_stderr(file, &prefix, &mut sink),
            Err(e) => Err(e),
        },
    };
    let records = sink.records;
    if let Err(message) = result {
        workload.problem(path, message);
    } else if records == 0 {
        workload.problem(
            path,
            format!("no {format:?} log records found (is it the right format?)").to_lowercase(),
        );
    }
    workload.finish_sessions(true);
}

/// Where records go: statements become the workload, everything else is skipped.
struct Sink<'a> {
    /// The file, as statements' origins and the ignored counts name it.
    source: String,
    options: &'a LogOptions<'a>,
    workload: &'a mut Workload,
    records: u64,
}

impl Sink<'_> {
    fn record(&mut self, record: Record) {
        self.records += 1;
        if record.severity != "LOG" {
            return;
        }
        let Some(sql) = statement_of(&record.message) else {
            return;
        };
        let source = &self.source;
        if record
            .database
            .as_deref()
            .is_some_and(|d| !d.is_empty() && d != self.options.database)
        {
            return self.workload.ignore(&format!("{source}: other databases"));
        }
        let role = record.role.as_deref();
        let app = record.application.as_deref();
        let Some(service) = self.options.services.service_for(role, app) else {
            return self
                .workload
                .ignore(&format!("{source}: ignored roles and applications"));
        };
        self.workload.saw(&service, role, app);
        // Without a session, every statement stands alone.
        let session = match &record.session {
            Some(s) => format!("{source}#{s}"),
            None => format!("{source}:{}", record.line),
        };
        let origin = format!("{source}:{}", record.line);
        self.workload
            .add(&session, &service, sql.trim().to_string(), origin, 1);
    }
}

/// The SQL a LOG message carries, if it logs a statement.
fn statement_of(message: &str) -> Option<&str> {
    let mut rest = message;
    if let Some(after) = rest.strip_prefix("duration: ") {
        // "duration: 0.123 ms  statement: …"; a bare duration repeats an earlier line.
        rest = after.split_once(" ms  ")?.1;
    }
    if let Some(sql) = rest.strip_prefix("statement: ") {
        return Some(sql);
    }
    // Extended protocol: "execute <unnamed>: …", "execute S_1/C_2: …".
    let after = rest.strip_prefix("execute ")?;
    let (_name, sql) = after.split_once(": ")?;
    Some(sql)
}

fn read_csv(file: std::fs::File, sink: &mut Sink) -> Result<(), String> {
    // The columns every version since 9.0 writes first (PostgreSQL's csvlog docs).
    const USER: usize = 1;
    const DATABASE: usize = 2;
    const PID: usize = 3;
    const SESSION: usize = 5;
    const SEVERITY: usize = 11;
    const MESSAGE: usize = 13;
    const APPLICATION: usize = 22;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(file);
    let mut row = csv::ByteRecord::new();
    loop {
        let line = reader.position().line() as usize;
        match reader.read_byte_record(&mut row) {
            Ok(false) => return Ok(()),
            Ok(true) => {}
            Err(e) => return Err(format!("not a csvlog file: {e}")),
        }
        if row.len() <= MESSAGE {
            return Err(format!(
                "line {line}: {} fields, a csvlog record has at least 23",
                row.len()
            ));
        }
        let field = |i: usize| -> Option<String> {
            row.get(i)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .filter(|s| !s.is_empty())
        };
        sink.record(Record {
            role: field(USER),
            database: field(DATABASE),
            application: field(APPLICATION),
            session: field(SESSION).or_else(|| field(PID)),
            severity: field(SEVERITY).unwrap_or_default(),
            message: field(MESSAGE).unwrap_or_default(),
            line,
        });
    }
}

fn read_json(file: std::fs::File, sink: &mut Sink) -> Result<(), String> {
    for (n, line) in lines(file).enumerate() {
        let line_no = n + 1;
        let line = line.map_err(|e| format!("cannot read: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| format!("line {line_no}: not a jsonlog record: {e}"))?;
        let text = |key: &str| -> Option<String> {
            match value.get(key)? {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            }
        };
        sink.record(Record {
            role: text("user"),
            database: text("dbname"),
            application: text("application_name"),
            session: text("session_id").or_else(|| text("pid")),
            severity: text("error_severity").unwrap_or_default(),
            message: text("message").unwrap_or_default(),
            line: line_no,
        });
    }
    Ok(())
}

fn read_stderr(file: std::fs::File, prefix: &StderrPrefix, sink: &mut Sink) -> Result<(), String> {
    let mut current: Option<Record> = None;
    for (n, line) in lines(file).enumerate() {
        let line = line.map_err(|e| format!("cannot read: {e}"))?;
        if let Some(rest) = line.strip_prefix('\t') {
            // A multi-line message continues on lines that start with a tab.
            if let Some(record) = current.as_mut() {
                record.message.push('\n');
                record.message.push_str(rest);
            }
            continue;
        }
        if let Some(done) = current.take() {
            sink.record(done);
        }
        current = prefix.record(&line, n + 1);
    }
    if let Some(done) = current {
        sink.record(done);
    }
    Ok(())
}

/// Lines of a file, invalid UTF-8 replaced rather than fatal (a log may hold any bytes).
fn lines(file: impl Read) -> impl Iterator<Item = std::io::Result<String>> {
    let mut reader = BufReader::new(file);
    std::iter::from_fn(move || {
        let mut buf = Vec::new();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => None,
            Ok(_) => {
                while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    buf.pop();
                }
                Some(Ok(String::from_utf8_lossy(&buf).into_owned()))
            }
            Err(e) => Some(Err(e)),
        }
    })
}

/// A stderr log's `log_line_prefix`, compiled into a pattern for its lines.
#[derive(Debug)]
pub struct StderrPrefix {
    pattern: Regex,
}

impl StderrPrefix {
    /// Compiles a `log_line_prefix`. Without `%u` or `%a` no line says who ran it,
    /// which is an error; without `%c` or `%p`, transactions cannot be grouped.
    pub fn parse(prefix: &str) -> Result<StderrPrefix, String> {
        let mut pattern = String::from("^");
        let mut optional_from = None;
        let mut named = std::collections::BTreeSet::new();
        let mut chars = prefix.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                pattern.push_str(&regex::escape(&c.to_string()));
                continue;
            }
            // Padding, as in %-10u or %10a, pads the value with spaces.
            let mut padded = false;
            while let Some(&d) = chars.peek() {
                if d == '-' || d.is_ascii_digit() {
                    padded = true;
                    chars.next();
                } else {
                    break;
                }
            }
            let Some(escape) = chars.next() else { break };
            let mut group = |name: &'static str, body: &str| {
                if named.insert(name) {
                    format!("(?P<{name}>{body})")
                } else {
                    format!("(?:{body})")
                }
            };
            let timestamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?(?: [A-Za-z0-9+:-]+)?";
            let piece = match escape {
                'a' => group("app", ".*?"),
                'u' => group("user", ".*?"),
                'd' => group("db", ".*?"),
                'c' => group("session", r"[0-9a-f]+\.[0-9a-f]+"),
                'p' => group("pid", r"\d+"),
                'P' => r"\d*".to_string(),
                'r' | 'h' | 'v' => r"\S*".to_string(),
                'b' | 'i' => ".*?".to_string(),
                't' | 'm' | 's' => timestamp.to_string(),
                'n' => r"\d+(?:\.\d+)?".to_string(),
                'e' => "[0-9A-Z]{5}".to_string(),
                'l' | 'x' => r"\d+".to_string(),
                'Q' => r"-?\d+".to_string(),
                '%' => "%".to_string(),
                'q' => {
                    // What follows %q is left out for processes without a session.
                    optional_from = Some(pattern.len());
                    continue;
                }
                // PostgreSQL prints nothing for an unknown escape.
                _ => continue,
            };
            if padded {
                pattern.push_str(&format!(r" *{piece} *"));
            } else {
                pattern.push_str(&piece);
            }
        }
        if let Some(at) = optional_from {
            pattern.insert_str(at, "(?:");
            pattern.push_str(")?");
        }
        if !named.contains("user") && !named.contains("app") {
            return Err(format!(
                "log_line_prefix {prefix:?} has neither %u nor %a, so the log cannot say which service ran a statement: set log_line_prefix = '%m [%p] %q%u@%d %a: ' (or use csvlog or jsonlog) and collect the log again"
            ));
        }
        pattern.push_str(r"(?P<severity>[A-Z][A-Z0-9]*):  (?P<message>.*)$");
        let pattern =
            Regex::new(&pattern).map_err(|e| format!("log_line_prefix {prefix:?}: {e}"))?;
        Ok(StderrPrefix { pattern })
    }

    fn record(&self, line: &str, line_no: usize) -> Option<Record> {
        let caps = self.pattern.captures(line)?;
        let text = |name: &str| {
            caps.name(name)
                .map(|m| m.as_str().trim().to_string())
                .filter(|s| !s.is_empty() && s != "[unknown]")
        };
        Some(Record {
            role: text("user"),
            database: text("db"),
            application: text("app"),
            session: text("session").or_else(|| text("pid")),
            severity: text("severity").unwrap_or_default(),
            message: caps
                .name("message")
                .map(|m| m.as_str().to_string())
                .unwrap_or_default(),
            line: line_no,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(name: &str, text: &str, prefix: &str, map: &ServiceMap) -> Workload {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let mut w = Workload::default();
        let options = LogOptions {
            database: "shop",
            line_prefix: prefix,
            services: map,
        };
        load(&path, LogFormat::of_path(&path).unwrap(), &options, &mut w);
        w
    }

    fn summary(w: &Workload) -> Vec<(String, String, u64)> {
        w.statements
            .iter()
            .map(|s| (s.service.clone(), s.sql.clone(), s.transaction))
            .collect()
    }

    #[test]
    fn statement_lines_of_every_kind() {
        assert_eq!(statement_of("statement: SELECT 1"), Some("SELECT 1"));
        assert_eq!(
            statement_of("duration: 0.042 ms  statement: SELECT 2"),
            Some("SELECT 2")
        );
        assert_eq!(
            statement_of("duration: 1.5 ms  execute S_1/C_2: SELECT $1"),
            Some("SELECT $1")
        );
        assert_eq!(
            statement_of("execute <unnamed>: SELECT 3"),
            Some("SELECT 3")
        );
        assert_eq!(
            statement_of("duration: 0.1 ms  parse <unnamed>: SELECT 4"),
            None
        );
        assert_eq!(statement_of("duration: 0.1 ms"), None);
        assert_eq!(statement_of("connection authorized: user=x"), None);
    }

    #[test]
    fn stderr_with_debian_prefix_groups_transactions_per_session() {
        let log = "\
2026-11-21 10:00:00.001 UTC [101] orders@shop LOG:  statement: BEGIN
2026-11-21 10:00:00.002 UTC [102] billing@shop LOG:  statement: SELECT 1
2026-11-21 10:00:00.003 UTC [101] orders@shop LOG:  statement: INSERT INTO orders
\tVALUES (1)
2026-11-21 10:00:00.004 UTC [101] orders@shop LOG:  duration: 0.1 ms  statement: UPDATE stock SET n = n - 1
2026-11-21 10:00:00.005 UTC [101] orders@shop LOG:  statement: COMMIT
2026-11-21 10:00:00.006 UTC [101] orders@shop LOG:  statement: SELECT 2
2026-11-21 10:00:00.007 UTC [103] orders@other LOG:  statement: SELECT 3
2026-11-21 10:00:00.008 UTC [104] postgres@shop ERROR:  relation \"x\" does not exist
2026-11-21 10:00:00.009 UTC [104] postgres@shop STATEMENT:  SELECT * FROM x
2026-11-21 10:00:00.010 UTC [99] LOG:  checkpoint starting: time
";
        let w = load_text(
            "postgresql.log",
            log,
            "%m [%p] %q%u@%d ",
            &ServiceMap::default(),
        );
        let got = summary(&w);
        assert_eq!(got.len(), 4, "{got:#?}");
        assert_eq!(got[0].0, "billing");
        assert_eq!(got[1].1, "INSERT INTO orders\nVALUES (1)");
        assert_eq!(got[1].2, got[2].2, "one transaction");
        assert_ne!(got[3].2, got[1].2, "after COMMIT, a new one");
        assert_ne!(got[0].2, got[1].2);
        assert_eq!(w.statements[1].origin.rsplit(':').next(), Some("3"));
        assert_eq!(w.seen["orders"].sessions_logged, 1);
        assert_eq!(
            w.seen["orders"].roles.iter().collect::<Vec<_>>(),
            ["orders"]
        );
        assert_eq!(w.ignored.values().sum::<u64>(), 1, "{:?}", w.ignored);
        assert!(w.problems.is_empty(), "{:?}", w.problems);
    }

    #[test]
    fn stderr_prefix_with_application_and_padding() {
        let log = "\
10:00 [7] app=checkout-api user=shared LOG:  statement: SELECT 1
10:00 [8] app=          user=shared LOG:  statement: SELECT 2
";
        let map: ServiceMap =
            toml::from_str("[applications]\n\"checkout-api\" = \"checkout\"").unwrap();
        let w = load_text("x.log", log, "%% [%p] app=%-10a user=%u ", &map);
        // "%%" is a literal percent sign, which this log does not have: nothing matches.
        assert!(w.statements.is_empty());
        assert!(w.problems[0].message.contains("no stderr log records"));
        let w = load_text("x.log", log, "10:00 [%p] app=%-10a user=%u ", &map);
        let got = summary(&w);
        assert_eq!(got[0].0, "checkout");
        assert_eq!(got[1].0, "shared");
    }

    #[test]
    fn a_prefix_without_user_or_application_is_refused_with_the_fix() {
        let err = StderrPrefix::parse("%m [%p] ").unwrap_err();
        assert!(err.contains("neither %u nor %a"), "{err}");
        assert!(err.contains("log_line_prefix ="), "{err}");
    }

    #[test]
    fn csvlog_with_quoted_multiline_messages() {
        let log = "\
2026-11-21 10:00:00.001 UTC,\"orders\",\"shop\",101,\"[local]\",6565a.65,1,\"idle\",2026-11-21 10:00:00 UTC,3/1,0,LOG,00000,\"statement: BEGIN\",,,,,,,,,\"orders-api\",client backend,,0
2026-11-21 10:00:00.002 UTC,\"orders\",\"shop\",101,\"[local]\",6565a.65,2,\"idle\",2026-11-21 10:00:00 UTC,3/1,0,LOG,00000,\"statement: INSERT INTO t VALUES ('a,\"\"b\"\"',
2)\",,,,,,,,,\"orders-api\",client backend,,0
2026-11-21 10:00:00.003 UTC,\"orders\",\"shop\",101,\"[local]\",6565a.65,3,\"idle\",2026-11-21 10:00:00 UTC,3/1,0,LOG,00000,\"statement: SELECT 1\",,,,,,,,,\"orders-api\",client backend,,0
2026-11-21 10:00:00.004 UTC,\"orders\",\"shop\",101,\"[local]\",6565a.65,4,\"idle\",2026-11-21 10:00:00 UTC,3/1,0,LOG,00000,\"statement: COMMIT\",,,,,,,,,\"orders-api\",client backend,,0
";
        let w = load_text("postgresql.csv", log, "", &ServiceMap::default());
        let got = summary(&w);
        assert_eq!(got.len(), 2, "{got:#?}");
        assert_eq!(got[0].1, "INSERT INTO t VALUES ('a,\"b\"',\n2)");
        assert_eq!(got[0].2, got[1].2);
        assert_eq!(
            w.seen["orders"].applications.iter().collect::<Vec<_>>(),
            ["orders-api"]
        );
    }

    #[test]
    fn jsonlog_records() {
        let log = r#"{"timestamp":"2026-11-21 10:00:00.001 UTC","user":"billing","dbname":"shop","pid":7,"session_id":"65.7","error_severity":"LOG","message":"statement: SELECT 1","application_name":"psql"}
{"timestamp":"2026-11-21 10:00:00.002 UTC","pid":5,"error_severity":"LOG","message":"checkpoint complete"}
"#;
        let w = load_text("postgresql.json", log, "", &ServiceMap::default());
        assert_eq!(summary(&w), [("billing".into(), "SELECT 1".into(), 1)]);
        let w = load_text("broken.json", "{not json\n", "", &ServiceMap::default());
        assert!(w.problems[0]
            .message
            .contains("line 1: not a jsonlog record"));
    }
}
