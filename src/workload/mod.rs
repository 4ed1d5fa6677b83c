//! The workload: which service ran which statement. Loaded from SQL files (one file or
//! sub-directory per service); every problem is kept and reported, never dropped.

pub mod split;

use std::path::{Path, PathBuf};

use serde::Serialize;

/// One statement as a service ran it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Statement {
    pub service: String,
    pub sql: String,
    /// `file:line` (or another source's equivalent), for reports.
    pub origin: String,
    /// How often it ran, where the source knows (1 for SQL files).
    pub calls: u64,
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
}

impl Workload {
    pub fn services(&self) -> Vec<String> {
        let mut services: Vec<String> = self.statements.iter().map(|s| s.service.clone()).collect();
        services.sort();
        services.dedup();
        services
    }

    pub fn extend(&mut self, other: Workload) {
        self.statements.extend(other.statements);
        self.problems.extend(other.problems);
    }

    /// A workload from SQL texts already in memory, as (service, SQL); `origin` names
    /// where they came from (e.g. `examples/shop/workload`).
    pub fn from_texts(origin: &str, texts: &[(&str, &str)]) -> Workload {
        let mut workload = Workload::default();
        for (service, sql) in texts {
            for piece in split::split(sql) {
                workload.statements.push(Statement {
                    service: service.to_string(),
                    sql: piece.text,
                    origin: format!("{origin}/{service}.sql:{}", piece.line),
                    calls: 1,
                });
            }
        }
        workload
    }

    /// Loads SQL files: a `.sql` file (its stem names the service), or a directory
    /// whose `.sql` files and sub-directories each name one service.
    pub fn from_sql_path(path: &Path) -> Workload {
        let mut workload = Workload::default();
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) => {
                workload.problem(path, format!("cannot read workload: {e}"));
                return workload;
            }
        };
        if meta.is_file() {
            match service_of_file(path) {
                Some(service) => workload.load_file(path, &service),
                None => workload.problem(path, "not a .sql file".into()),
            }
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
            } else if let Some(service) = service_of_file(&entry) {
                workload.load_file(&entry, &service);
            } else {
                workload.problem(&entry, "ignored: not a .sql file".into());
            }
        }
        if workload.statements.is_empty() && workload.problems.is_empty() {
            workload.problem(path, "no .sql files found".into());
        }
        workload
    }

    fn load_file(&mut self, path: &Path, service: &str) {
        let text = match std::fs::read(path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => text,
                Err(_) => return self.problem(path, "not UTF-8 text".into()),
            },
            Err(e) => return self.problem(path, format!("cannot read: {e}")),
        };
        for piece in split::split(&text) {
            self.statements.push(Statement {
                service: service.to_string(),
                sql: piece.text,
                origin: format!("{}:{}", path.display(), piece.line),
                calls: 1,
            });
        }
    }

    fn problem(&mut self, path: &Path, message: String) {
        self.problems.push(Problem {
            origin: path.display().to_string(),
            message,
        });
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

    #[test]
    fn one_file_or_directory_per_service() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("orders.sql"), "SELECT 1;\nSELECT 2;").unwrap();
        std::fs::create_dir(dir.path().join("billing")).unwrap();
        std::fs::write(dir.path().join("billing/a.sql"), "SELECT 3").unwrap();
        std::fs::write(dir.path().join("billing/notes.txt"), "x").unwrap();
        std::fs::write(dir.path().join("README.md"), "x").unwrap();
        std::fs::write(dir.path().join("bad.sql"), [0xff, 0xfe]).unwrap();
        let w = Workload::from_sql_path(dir.path());
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
                "ignored: not a .sql file",
                "not UTF-8 text",
                "ignored: not a .sql file"
            ]
        );
        assert_eq!(w.services(), ["billing", "orders"]);
    }

    #[test]
    fn missing_path_is_a_problem_not_a_panic() {
        let w = Workload::from_sql_path(Path::new("/nonexistent/workload"));
        assert!(w.statements.is_empty());
        assert!(w.problems[0].message.starts_with("cannot read workload"));
    }
}
