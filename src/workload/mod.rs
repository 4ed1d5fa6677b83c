//! The workload: which service ran which statement, and in which transaction. Loaded
//! from SQL files (one file or sub-directory per service), server logs (`log.rs`) and
//! `pg_stat_statements` (`stats.rs`); roles and application names become services
//! through a `ServiceMap`. Every problem is kept and reported, never dropped.

pub mod log;
pub mod service_map;
pub mod sources;
pub mod split;
pub mod stats;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use service_map::ServiceMap;

/// One statement as a service ran it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Statement {
    pub service: String,
    pub sql: String,
    /// `file:line` (or another source's equivalent), for reports.
    pub origin: String,
    /// How often it ran, where the source knows (1 for SQL files).
    pub calls: u64,
    /// Statements with the same number ran in one transaction (`BEGIN … COMMIT` in
    /// one session); a statement outside such a block is a transaction of its own.
    pub transaction: u64,
}

/// What the sources tell about how a service connects: the disintegrators "different
/// roles" and "connection counts".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ServiceSeen {
    /// Database roles it connected as.
    pub roles: BTreeSet<String>,
    /// `application_name`s it connected with.
    pub applications: BTreeSet<String>,
    /// Distinct sessions (connections) in the server logs.
    pub sessions_logged: u64,
    /// Connections open when discover looked (`pg_stat_activity`).
    pub connections_open: u64,
}

/// Something in the workload that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub origin: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Workload {
    pub statements: Vec<Statement>,
    pub problems: Vec<Problem>,
    pub seen: BTreeMap<String, ServiceSeen>,
    /// Statements each source ignored on purpose (a role or application the service
    /// map ignores, carve's own queries, other databases), per source.
    pub ignored: BTreeMap<String, u64>,
    #[serde(skip)]
    sessions: Sessions,
}

/// Loading state: the transaction open in each session, and sessions seen per service.
#[derive(Debug, Clone, Default)]
struct Sessions {
    open: HashMap<String, u64>,
    next_transaction: u64,
    seen: HashSet<(String, String)>,
}

/// What a statement does to the transaction it runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    Begin,
    End,
    /// SAVEPOINT, RELEASE, ROLLBACK TO, SET TRANSACTION…: inside a transaction, no data.
    Other,
}

/// Tells transaction-control statements apart by their first words (comments skipped).
fn control(sql: &str) -> Option<Control> {
    let mut words = split::words(sql).take(2);
    let first = words.next()?.to_ascii_lowercase();
    let second = words.next().map(|w| w.to_ascii_lowercase());
    match (first.as_str(), second.as_deref()) {
        ("begin", _) | ("start", Some("transaction")) => Some(Control::Begin),
        ("rollback", Some("to")) => Some(Control::Other),
        ("commit" | "rollback", Some("prepared")) => Some(Control::Other),
        ("commit" | "end" | "rollback" | "abort", _) => Some(Control::End),
        ("prepare", Some("transaction")) => Some(Control::End),
        ("savepoint" | "release", _) | ("set", Some("transaction")) => Some(Control::Other),
        _ => None,
    }
}

impl Workload {
    pub fn services(&self) -> Vec<String> {
        let mut services: Vec<String> = self.statements.iter().map(|s| s.service.clone()).collect();
        services.sort();
        services.dedup();
        services
    }

    /// Adds another source's workload; its transactions stay apart from ours.
    pub fn extend(&mut self, other: Workload) {
        let offset = self.sessions.next_transaction;
        self.statements
            .extend(other.statements.into_iter().map(|mut s| {
                s.transaction += offset;
                s
            }));
        self.sessions.next_transaction += other.sessions.next_transaction;
        self.problems.extend(other.problems);
        for (service, seen) in other.seen {
            self.seen.entry(service).or_default().merge(seen);
        }
        for (source, n) in other.ignored {
            *self.ignored.entry(source).or_default() += n;
        }
    }

    /// Adds one statement that `service` ran in `session`. Transaction control
    /// statements are not kept: they open and close the session's transaction.
    pub fn add(&mut self, session: &str, service: &str, sql: String, origin: String, calls: u64) {
        self.sessions
            .seen
            .insert((service.to_string(), session.to_string()));
        let open = self.sessions.open.get(session).copied();
        match control(&sql) {
            Some(Control::Begin) => {
                let id = self.new_transaction();
                self.sessions.open.insert(session.to_string(), id);
            }
            Some(Control::End) => {
                self.sessions.open.remove(session);
            }
            Some(Control::Other) => {}
            None => {
                let transaction = open.unwrap_or_else(|| self.new_transaction());
                self.statements.push(Statement {
                    service: service.to_string(),
                    sql,
                    origin,
                    calls,
                    transaction,
                });
            }
        }
    }

    /// Records how a service connected (from logs or `pg_stat_activity`).
    pub fn saw(&mut self, service: &str, role: Option<&str>, application: Option<&str>) {
        let seen = self.seen.entry(service.to_string()).or_default();
        if let Some(role) = role.filter(|r| !r.is_empty()) {
            seen.roles.insert(role.to_string());
        }
        if let Some(app) = application.filter(|a| !a.is_empty()) {
            seen.applications.insert(app.to_string());
        }
    }

    /// Counts a statement a source skipped on purpose.
    pub fn ignore(&mut self, source: &str) {
        *self.ignored.entry(source.to_string()).or_default() += 1;
    }

    /// Ends loading one source: sessions become per-service counts.
    pub fn finish_sessions(&mut self, logged: bool) {
        if logged {
            for (service, _) in &self.sessions.seen {
                self.seen
                    .entry(service.clone())
                    .or_default()
                    .sessions_logged += 1;
            }
        }
        self.sessions.seen.clear();
        self.sessions.open.clear();
    }

    fn new_transaction(&mut self) -> u64 {
        self.sessions.next_transaction += 1;
        self.sessions.next_transaction
    }

    /// A workload from SQL texts already in memory, as (service, SQL); `origin` names
    /// where they came from (e.g. `examples/shop/workload`).
    pub fn from_texts(origin: &str, texts: &[(&str, &str)]) -> Workload {
        let mut workload = Workload::default();
        for (service, sql) in texts {
            for piece in split::split(sql) {
                let at = format!("{origin}/{service}.sql:{}", piece.line);
                workload.add(service, service, piece.text, at, 1);
            }
        }
        workload.finish_sessions(false);
        workload
    }

    /// Loads a `--workload` path: a `.sql` file (its stem names the service), a server
    /// log (`.csv`, `.json`, `.log`: see `log.rs`), or a directory whose `.sql` files
    /// and sub-directories each name one service, and whose log files are logs. Each
    /// SQL file is a session: `BEGIN … COMMIT` in it makes a transaction.
    pub fn from_path(path: &Path, logs: &log::LogOptions) -> Workload {
        let mut workload = Workload::default();
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) => {
                workload.problem(path, format!("cannot read workload: {e}"));
                return workload;
            }
        };
        if meta.is_file() {
            workload.load_top_file(
                path,
                logs,
                "not a .sql file or a server log (.csv, .json, .log)",
            );
            return workload;
        }
        for entry in sorted_entries(path, &mut workload) {
            if entry.is_dir() {
                let service = file_name(&entry);
                for file in sorted_entries(&entry, &mut workload) {
                    if file.is_file() && is_sql(&file) {
                        workload.load_file(&file, &service);
                    } else {
                        workload.problem(&file, "ignored: not a .sql file".into());
                    }
                }
            } else {
                workload.load_top_file(&entry, logs, "ignored: not a .sql file or a server log");
            }
        }
        if workload.statements.is_empty() && workload.problems.is_empty() {
            workload.problem(path, "no .sql files or server logs found".into());
        }
        workload.finish_sessions(false);
        workload
    }

    fn load_top_file(&mut self, path: &Path, logs: &log::LogOptions, otherwise: &str) {
        if let Some(service) = service_of_file(path) {
            self.load_file(path, &service);
        } else if let Some(format) = log::LogFormat::of_path(path) {
            log::load(path, format, logs, self);
        } else {
            self.problem(path, otherwise.into());
        }
    }

    fn load_file(&mut self, path: &Path, service: &str) {
        let text = match std::fs::read(path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => text,
                Err(_) => return self.problem(path, "not UTF-8 text".into()),
            },
            Err(e) => return self.problem(path, format!("cannot read: {e}")),
        };
        let session = path.display().to_string();
        let (pieces, unterminated) = split::split_checked(&text);
        for piece in pieces {
            let origin = format!("{session}:{}", piece.line);
            self.add(&session, service, piece.text, origin, 1);
        }
        if let Some(u) = unterminated {
            self.problems.push(Problem {
                origin: format!("{session}:{}", u.statement_line),
                message: u.to_string(),
            });
        }
    }

    pub(crate) fn problem(&mut self, path: &Path, message: String) {
        self.problems.push(Problem {
            origin: path.display().to_string(),
            message,
        });
    }
}

impl ServiceSeen {
    fn merge(&mut self, other: ServiceSeen) {
        self.roles.extend(other.roles);
        self.applications.extend(other.applications);
        self.sessions_logged += other.sessions_logged;
        self.connections_open += other.connections_open;
    }
}

fn sorted_entries(dir: &Path, workload: &mut Workload) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            paths.retain(|p| !file_name(p).starts_with('.'));
            paths.sort();
            paths
        }
        Err(e) => {
            workload.problem(dir, format!("cannot read directory: {e}"));
            Vec::new()
        }
    }
}

fn is_sql(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("sql"))
}

fn service_of_file(path: &Path) -> Option<String> {
    is_sql(path).then(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_logs() -> log::LogOptions<'static> {
        static MAP: std::sync::OnceLock<ServiceMap> = std::sync::OnceLock::new();
        log::LogOptions {
            database: "db",
            line_prefix: "%u ",
            services: MAP.get_or_init(ServiceMap::default),
        }
    }

    #[test]
    fn begin_commit_in_a_file_makes_one_transaction() {
        let w = Workload::from_texts(
            "x",
            &[(
                "orders",
                "SELECT 1; BEGIN; INSERT INTO a VALUES (1); SAVEPOINT s; UPDATE b SET x = 1;\
                 ROLLBACK TO s; COMMIT; start transaction; SELECT 2; END; SELECT 3",
            )],
        );
        let tx: Vec<(&str, u64)> = w
            .statements
            .iter()
            .map(|s| (s.sql.as_str(), s.transaction))
            .collect();
        assert_eq!(
            tx,
            [
                ("SELECT 1", 1),
                ("INSERT INTO a VALUES (1)", 2),
                ("UPDATE b SET x = 1", 2),
                ("SELECT 2", 3),
                ("SELECT 3", 4)
            ]
        );
        let mut both = w.clone();
        both.extend(w);
        assert_eq!(both.statements[5].transaction, 5, "ids stay apart");
    }

    #[test]
    fn one_file_or_directory_per_service() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("orders.sql"), "SELECT 1;\nSELECT 2;").unwrap();
        std::fs::create_dir(dir.path().join("billing")).unwrap();
        std::fs::write(dir.path().join("billing/a.sql"), "SELECT 3").unwrap();
        std::fs::write(dir.path().join("billing/notes.txt"), "x").unwrap();
        std::fs::write(dir.path().join("README.md"), "x").unwrap();
        std::fs::write(dir.path().join("bad.sql"), [0xff, 0xfe]).unwrap();
        let w = Workload::from_path(dir.path(), &no_logs());
        let got: Vec<(String, String)> = w
            .statements
            .iter()
            .map(|s| (s.service.clone(), s.sql.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("billing".into(), "SELECT 3".into()),
                ("orders".into(), "SELECT 1".into()),
                ("orders".into(), "SELECT 2".into())
            ]
        );
        assert!(w.statements[2].origin.ends_with("orders.sql:2"));
        let problems: Vec<&str> = w.problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(
            problems,
            [
                "ignored: not a .sql file or a server log",
                "not UTF-8 text",
                "ignored: not a .sql file"
            ]
        );
        assert_eq!(w.services(), ["billing", "orders"]);
    }

    #[test]
    fn missing_path_is_a_problem_not_a_panic() {
        let w = Workload::from_path(Path::new("/nonexistent/workload"), &no_logs());
        assert!(w.statements.is_empty());
        assert!(w.problems[0].message.starts_with("cannot read workload"));
    }
}
