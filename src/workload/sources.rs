//! Where the workload comes from: the `--workload` paths and `pg_stat_statements`,
//! checked before any connection is made, then read. Discover records them in the
//! plan ([`crate::plan::WorkloadSources`]) so restrict reads the same sources again.

use anyhow::{bail, Context};

use super::log::LogOptions;
use super::{stats, ServiceMap, Workload};
use crate::plan::{self, Plan};

/// Where the command line says to read the workload (`--workload`, `--service-map`,
/// `--log-line-prefix`), as plain data: the CLI's types stay in `cli`.
#[derive(Debug, Clone, Default)]
pub struct WorkloadOptions {
    pub workload: Vec<std::path::PathBuf>,
    pub service_map: Option<std::path::PathBuf>,
    pub log_line_prefix: Option<String>,
}

/// The workload sources, checked before any connection is made.
pub struct Sources {
    paths: Vec<std::path::PathBuf>,
    stat_statements: bool,
    services: ServiceMap,
    line_prefix: Option<String>,
}

impl Sources {
    pub fn check(args: &WorkloadOptions, plan: Option<&Plan>) -> anyhow::Result<Sources> {
        let mut paths = Vec::new();
        let mut stat_statements = false;
        for path in &args.workload {
            if path.as_os_str() == stats::PG_STAT_STATEMENTS {
                stat_statements = true;
            } else if !path.exists() {
                bail!("--workload {}: no such file or directory", path.display());
            } else {
                paths.push(path.clone());
            }
        }
        let from_plan = ServiceMap::from_plan(plan.map(|p| p.services.as_slice()).unwrap_or(&[]));
        let services = match &args.service_map {
            Some(path) => ServiceMap::load(path)?.or(from_plan),
            None => from_plan,
        };
        Ok(Sources {
            paths,
            stat_statements,
            services,
            line_prefix: args.log_line_prefix.clone(),
        })
    }

    /// Reads every source; `None` without any. A workload without a single statement
    /// is an error that lists why, and nothing is written.
    pub async fn load(
        &self,
        client: &tokio_postgres::Client,
        database: &str,
    ) -> anyhow::Result<Option<Workload>> {
        if self.paths.is_empty() && !self.stat_statements {
            return Ok(None);
        }
        let mut workload = Workload::default();
        if self.stat_statements {
            workload.extend(stats::load_stat_statements(client, &self.services).await?);
        }
        let line_prefix = match &self.line_prefix {
            Some(p) => p.clone(),
            None => client
                .query_one("SELECT current_setting('log_line_prefix')", &[])
                .await?
                .get(0),
        };
        let logs = LogOptions {
            database,
            line_prefix: &line_prefix,
            services: &self.services,
        };
        for path in &self.paths {
            let read = Workload::from_path(path, &logs);
            // A source that gave nothing is a mistake to stop at, not a proposal made
            // without a workload (its problems say why).
            if read.statements.is_empty() && read.ignored.is_empty() {
                let mut why = problem_lines(&read.problems);
                if why.is_empty() {
                    why.push("it holds no statements".into());
                }
                bail!(
                    "no statement could be read from --workload {}; nothing was written:\n  {}",
                    path.display(),
                    why.join("\n  ")
                );
            }
            workload.extend(read);
        }
        stats::count_connections(client, &self.services, &mut workload).await?;
        if workload.statements.is_empty() {
            let why: Vec<String> = problem_lines(&workload.problems)
                .into_iter()
                .chain(
                    workload
                        .ignored
                        .iter()
                        .map(|(what, n)| format!("{what}: {n} statements left out")),
                )
                .collect();
            return Err(anyhow::anyhow!(
                "the workload holds no statements{}",
                if why.is_empty() {
                    String::new()
                } else {
                    format!(":\n  {}", why.join("\n  "))
                }
            ))
            .context("reading --workload");
        }
        Ok(Some(workload))
    }

    /// The sources as the plan records them: absolute paths, so a later phase run
    /// from another directory reads the same files.
    pub fn record(&self) -> plan::WorkloadSources {
        let mut sources: Vec<String> = self
            .paths
            .iter()
            .map(|p| {
                std::path::absolute(p)
                    .unwrap_or_else(|_| p.clone())
                    .display()
                    .to_string()
            })
            .collect();
        if self.stat_statements {
            sources.push(stats::PG_STAT_STATEMENTS.to_string());
        }
        plan::WorkloadSources {
            sources,
            log_line_prefix: self.line_prefix.clone(),
        }
    }

    /// The sources `args` names, or else those the plan recorded.
    pub fn check_or_recorded(args: &WorkloadOptions, plan: &Plan) -> anyhow::Result<Sources> {
        if !args.workload.is_empty() {
            return Sources::check(args, Some(plan));
        }
        let Some(recorded) = &plan.workload else {
            return Sources::check(args, Some(plan));
        };
        let args = WorkloadOptions {
            workload: recorded
                .sources
                .iter()
                .map(std::path::PathBuf::from)
                .collect(),
            service_map: args.service_map.clone(),
            log_line_prefix: args
                .log_line_prefix
                .clone()
                .or_else(|| recorded.log_line_prefix.clone()),
        };
        Sources::check(&args, Some(plan)).context(
            "the plan's workload sources (recorded by discover; pass --workload to read others)",
        )
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty() && !self.stat_statements
    }
}

/// `origin: message`, one per problem.
fn problem_lines(problems: &[super::Problem]) -> Vec<String> {
    problems
        .iter()
        .map(|p| format!("{}: {}", p.origin, p.message))
        .collect()
}
