//! The plan file: carve's memory between phases, a TOML file people can read and edit.
//!
//! It holds the source (a connection reference without secrets), the fingerprint of the
//! catalog it was made from, the decisions of each phase and the journal of steps run.
//! Loading is strict (unknown fields are errors, with line and column); saving is
//! atomic (temp file, fsync, rename), so a crash never leaves half a plan.

pub mod choices;
pub mod journey;
mod migrate;

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::catalog::fingerprint::Fingerprint;
use crate::engine::Step;

/// The plan format this carve writes and the newest it reads. Version 1 (steps as
/// flat SQL, phase state implied by the journal) is upgraded on load.
pub const FORMAT_VERSION: u32 = 2;

/// The decision that keeps an object working across domains while they share a server.
const KEEP_UNTIL_MOVE: &str = "keep-until-move";

/// The database-changing phases, by name, in the order they build on each other:
/// the one place their names and order live (`phases/` plans them, `status` and
/// `undo` walk them).
pub mod phase_names {
    pub const ASSIGN: &str = "assign";
    pub const RESTRICT: &str = "restrict";
    pub const MOVE: &str = "move";
    /// Switching a moved domain's clients to its server, and back: kept apart from
    /// `ORDER`, because neither is undone step by step (a switch is cancelled by its
    /// own abort steps before its point of no return, and reversed by the other).
    pub const CUTOVER: &str = "cutover";
    pub const ROLLBACK: &str = "rollback";
    /// The way back taken down and the old schema put aside, after a grace period.
    pub const RETIRE: &str = "retire";
    /// Jointly written tables split into one table per writer, after assign.
    pub const SPLIT: &str = "split";
    /// The retired schema dropped for good.
    pub const DROP_RETIRED: &str = "drop-retired";
    pub const ORDER: &[&str] = &[ASSIGN, SPLIT, RESTRICT, MOVE];
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub format_version: u32,
    /// The carve version that last wrote the file.
    pub written_by: String,
    /// The clustering resolution discover uses (`--resolution`, or a number of
    /// domains picked in its review) [default: chosen by discover's sweep].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<f64>,
    pub source: Source,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<Domain>,
    /// The user's pins: kept on every re-run of discover.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pins: Vec<Pin>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<Service>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decisions: Vec<Decision>,
    /// Jointly written tables to split into one table per writer (`carve split`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub splits: Vec<Split>,
    /// PgBouncer admin consoles the phases use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consoles: Vec<ConsoleRef>,
    /// The database-changing phases run so far: their steps and journal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<PhaseRecord>,
    /// Where discover read the workload, so later phases (restrict) read it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadSources>,
    /// Playbooks `carve run` has run on this plan: which of their steps are done.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<PlaybookRun>,
    /// Last, because it is long and read by carve rather than by people.
    pub fingerprint: Fingerprint,
}

/// Where the monolith is. Never a password: those come from `PGPASSWORD`, `~/.pgpass`
/// or `PGPASSFILE` at run time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// libpq `key=value` connection string, password removed.
    pub conninfo: String,
    pub database: String,
}

/// A data domain: a named group of tables that will share a schema, then a server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Domain {
    pub name: String,
    /// `schema.table` names, quoted where needed.
    pub tables: Vec<String>,
    /// The group role that carries the domain's privileges (restrict) [default:
    /// `domain_<name>`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Grant INSERT and UPDATE on the columns the workload writes rather than on whole
    /// tables (restrict).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub column_privileges: bool,
    /// The domain's own server (a libpq connection string without password), where
    /// its steps with target `domain:NAME` run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// When `carve verify` last found its server's rows equal to the source's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<Verified>,
    /// Where its clients are, once a cut-over has started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cutover: Option<Cutover>,
    /// How its server reaches the source, when the move was told
    /// (`--subscription-conninfo`, no password): a rollback or an abort makes that
    /// stream again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_conninfo: Option<String>,
    /// How the source reaches its server for the stream back, when cut-over was told
    /// (`--reverse-conninfo`, no password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverse_conninfo: Option<String>,
}

/// One side of a moved domain: the monolith or the domain's own server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Side {
    Source,
    Server,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Source => Side::Server,
            Side::Server => Side::Source,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Side::Source => "the source",
            Side::Server => "its own server",
        }
    }
}

/// Where a moved domain's clients are, and a switch under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cutover {
    /// The side the clients use (and the other side is fenced) since `since`.
    pub live: Side,
    pub since: String,
    /// The last switch's write pause (PgBouncer PAUSE to RESUME), as carve measured it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_ms: Option<u64>,
    /// A switch started and not finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switching: Option<Switching>,
    /// When retire renamed the old schema on the source (`<schema>__retired_<time>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired: Option<Retired>,
    /// The switch writes connection files (and runs a hook) rather than repointing
    /// PgBouncer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<FilesSwitch>,
}

/// Where a file switch writes each service's connection settings, and the command
/// that makes the services read them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesSwitch {
    pub dir: std::path::PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook: Option<String>,
    /// The services whose files are written (none: those whose `domain` it is).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
}

impl Cutover {
    /// The clients are on `side`, and no switch is under way.
    pub fn settled_on(&self, side: Side) -> bool {
        self.switching.is_none() && self.live == side
    }
}

/// A switch of a domain's clients under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Switching {
    pub to: Side,
    pub started: String,
    /// When it passed its point of no return: from then on, running the command again
    /// finishes it, and only the other switch takes it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed: Option<String>,
}

/// The old schema on the source, renamed by retire (and dropped later with `--drop`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retired {
    pub at: String,
    pub schema: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dropped: bool,
    /// Tables kept on the source for services that read them (`replicate`), each a
    /// read-only copy of some columns fed by the stream back, narrowed to them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<String>,
}

/// A verify that found every row of a domain equal on its server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verified {
    /// When it ended (RFC 3339).
    pub at: String,
    pub tables: u64,
    pub chunks: u64,
    pub rows: u64,
}

/// How far `carve run` got with a playbook: a run stopped part-way goes on at its
/// first step not done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaybookRun {
    /// The playbook's `name`.
    pub playbook: String,
    /// Digest of the playbook file the steps were done by.
    pub digest: String,
    /// Its steps done, by name, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub done: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub finished: bool,
}

/// A PgBouncer admin console steps can run on (target `console:NAME`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleRef {
    pub name: String,
    /// libpq connection string of the console (`dbname=pgbouncer`), no password.
    pub conninfo: String,
    /// The configuration file whose `[databases]` entries a cut-over repoints
    /// [default: the file PgBouncer says it read, `SHOW CONFIG` `conffile`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<std::path::PathBuf>,
}

/// The workload sources discover read: paths (absolute) and `pg_stat_statements`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSources {
    pub sources: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_line_prefix: Option<String>,
}

/// A user's pin, respected by every re-run of discover: the tables stay in one domain
/// and, when `domain` is given, that domain has this name.
///
/// ```toml
/// [[pins]]
/// tables = ["public.orders", "public.order_items"]
/// domain = "sales"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    /// `schema.table` names, quoted where needed.
    pub tables: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

/// A service that uses the monolith, and the database roles it connects as.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub name: String,
    /// Database roles it connects as.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// `application_name`s it connects with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applications: Vec<String>,
    /// The login role restrict gives it [default: the one role it already uses alone,
    /// else a new role named after the service].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_role: Option<String>,
    /// Its home domain [default: the domain whose tables it writes most].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// `CONNECTION LIMIT` of its login role (restrict) [default: left as it is].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_limit: Option<i32>,
    /// The PgBouncer `[databases]` entry it connects through, which cut-over
    /// repoints [default: the service's name].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgbouncer_entry: Option<String>,
    /// A job writing into several services' tables (a nightly sync), set aside
    /// while discover clusters and chooses owners (`true`), or an ordinary writer
    /// whatever discover detects (`false`) [default: detected].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_cutting: Option<bool>,
}

/// A choice made for one subject (a table, a boundary, a cross-domain object), with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    pub subject: String,
    pub choice: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// For `replicate`: only the rows where this SQL condition holds are copied
    /// (a publication's row filter, `rows = "status <> 'cancelled'"`). It may name
    /// only the table's replica identity columns: PostgreSQL refuses the owner's
    /// UPDATE and DELETE otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<String>,
}

/// A jointly written table split in two (the source texts' table split): the
/// columns one writer owns go to a new table of their own, with the same key, and
/// the old name becomes a view over both parts that unchanged clients keep writing
/// through.
///
///   [[splits]]
///   table = "public.book_catalog"    # as the plan's [[domains]] name it
///   part = "book_inventory"          # the new table
///   domain = "inventory"             # where it goes [default: the table's domain]
///   columns = ["copies_total", "copies_available", "shelf_location"]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Split {
    pub table: String,
    pub part: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    pub columns: Vec<String>,
}

/// A database-changing phase as it was planned and how far it got, for the whole
/// monolith or for one domain (move and cut-over run per domain). The steps are kept
/// as they were planned, so a resumed run and an undo do exactly what the first run
/// set out to do, even if the plan's domains are edited in between.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseRecord {
    /// `assign`, `restrict`, … (see [`phase_names`]).
    pub name: String,
    /// The domain it is for; none for a phase of the whole monolith.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Where it stands.
    pub state: PhaseState,
    /// Digest of the catalog the steps were planned from.
    pub before: String,
    /// Digest of the catalog when the last step was done (the plan's fingerprint is
    /// then the catalog after the phase); absent while the phase is under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// What the fingerprint gate must set aside while the phase is under way.
    #[serde(default, skip_serializing_if = "GateHints::is_empty")]
    pub gate: GateHints,
    pub steps: Vec<Step>,
    /// The latest status of each step that has run, by step id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub journal: Vec<JournalEntry>,
}

/// Which phase record: a phase's name and, for a per-domain phase, its domain.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhaseId {
    pub name: String,
    pub domain: Option<String>,
}

impl PhaseId {
    pub fn new(name: &str, domain: Option<&str>) -> PhaseId {
        PhaseId {
            name: name.to_string(),
            domain: domain.map(str::to_string),
        }
    }
}

impl From<&str> for PhaseId {
    fn from(name: &str) -> PhaseId {
        PhaseId::new(name, None)
    }
}

impl From<&PhaseId> for PhaseId {
    fn from(id: &PhaseId) -> PhaseId {
        id.clone()
    }
}

impl std::fmt::Display for PhaseId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.domain {
            Some(d) => write!(f, "{} (domain {})", self.name, crate::sql::display_ident(d)),
            None => f.write_str(&self.name),
        }
    }
}

/// Where a phase stands (reshape's `State`): saved in the plan at every change, so a
/// run that dies is resumed from what the plan says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseState {
    /// Recorded with its steps; none has run.
    Planned,
    /// Applying (or killed while applying): running the command again goes on.
    Running,
    /// Every step done and the catalog after it recorded.
    Applied,
    /// A step failed; the journal says which and why.
    Failed,
    /// Undoing (or killed while undoing): `carve undo` again goes on.
    Undoing,
    /// Every step undone: the phase left nothing behind.
    Undone,
}

/// What moves a phase from one state to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseEvent {
    /// A run applying the steps starts.
    Start,
    /// That run finished every step.
    Complete,
    /// A step failed (applying or undoing).
    Fail,
    /// A run undoing the steps starts.
    StartUndo,
    /// That run undid every step.
    CompleteUndo,
}

impl PhaseState {
    /// The state after `event`, or why the event cannot happen now.
    pub fn after(self, event: PhaseEvent) -> Result<PhaseState, String> {
        use PhaseEvent as E;
        use PhaseState as S;
        match (self, event) {
            (S::Undone, E::Start) => Err("it was undone: plan it again".into()),
            (_, E::Start) => Ok(S::Running),
            (S::Running, E::Complete) => Ok(S::Applied),
            (S::Running | S::Undoing, E::Fail) => Ok(S::Failed),
            (S::Undone, E::StartUndo) => Err("it is undone already".into()),
            (_, E::StartUndo) => Ok(S::Undoing),
            (S::Undoing, E::CompleteUndo) => Ok(S::Undone),
            (state, event) => Err(format!("{event:?} cannot happen while it is {state:?}")),
        }
    }

    /// Part-way: some steps may be done and others not.
    pub fn is_in_flight(self) -> bool {
        matches!(
            self,
            PhaseState::Running | PhaseState::Failed | PhaseState::Undoing
        )
    }

    /// One word for people.
    pub fn word(self) -> &'static str {
        match self {
            PhaseState::Planned => "planned",
            PhaseState::Running => "in progress",
            PhaseState::Applied => "applied",
            PhaseState::Failed => "failed",
            PhaseState::Undoing => "undoing",
            PhaseState::Undone => "undone",
        }
    }
}

/// What the fingerprint gate (`engine::gate`) sets aside while a phase is part-way:
/// one value, whatever the phase, so a new phase adds hints here rather than fields
/// on the record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateHints {
    /// Relations and sequences the phase moves (their old and new names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub renames: Vec<Rename>,
    /// Schemas the phase creates (and its undo drops).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub creates_schemas: Vec<String>,
    /// The phase changes roles and privileges: grants and roles are set aside.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub privileges: bool,
    /// Relations and functions the phase changes in place (split): everything of
    /// theirs (columns, constraints, indexes, triggers, grants) is set aside.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub touches: Vec<String>,
}

impl GateHints {
    pub fn is_empty(&self) -> bool {
        self == &GateHints::default()
    }
}

/// An object the phase moves from one name to another (`public.orders` →
/// `sales.orders`), and whether a compatibility view takes its old place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rename {
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub compat_view: bool,
}

impl PhaseRecord {
    /// A phase as planned, before any step runs: its steps, the digest of the catalog
    /// they were planned from, and what the gate must set aside while it is under way.
    pub fn planned(id: PhaseId, before: String, gate: GateHints, steps: Vec<Step>) -> PhaseRecord {
        PhaseRecord {
            name: id.name,
            domain: id.domain,
            state: PhaseState::Planned,
            before,
            after: None,
            gate,
            steps,
            journal: Vec::new(),
        }
    }

    /// The journal's status of a step; `Pending` when it has not run.
    pub fn status(&self, step_id: &str) -> StepStatus {
        self.entry(step_id)
            .map(|e| e.status)
            .unwrap_or(StepStatus::Pending)
    }

    pub fn entry(&self, step_id: &str) -> Option<&JournalEntry> {
        self.position(step_id).ok().map(|i| &self.journal[i])
    }

    /// Where a step's entry is (or would go): the journal is kept sorted by step id,
    /// so a run of 10,000 steps does not search it 10,000 times from the start.
    fn position(&self, step_id: &str) -> Result<usize, usize> {
        self.journal
            .binary_search_by(|e| e.step.as_str().cmp(step_id))
    }

    /// Records a step's new status (replacing its previous one) and returns the entry.
    pub fn record(
        &mut self,
        step_id: &str,
        status: StepStatus,
        error: Option<String>,
    ) -> JournalEntry {
        let entry = JournalEntry {
            step: step_id.to_string(),
            status,
            at: now_rfc3339(),
            error,
        };
        self.apply(entry.clone());
        entry
    }

    fn apply(&mut self, entry: JournalEntry) {
        match self.position(&entry.step) {
            Ok(i) => self.journal[i] = entry,
            Err(i) => self.journal.insert(i, entry),
        }
    }

    /// Which record this is.
    pub fn id(&self) -> PhaseId {
        PhaseId::new(&self.name, self.domain.as_deref())
    }

    /// Moves the phase to its next state, or says why it cannot.
    pub fn transition(&mut self, event: PhaseEvent) -> anyhow::Result<()> {
        self.state = self
            .state
            .after(event)
            .map_err(|why| anyhow::anyhow!("phase {}: {why}", self.id()))?;
        Ok(())
    }

    /// Every step done, and the plan's fingerprint updated to the result.
    pub fn is_applied(&self) -> bool {
        self.state == PhaseState::Applied
    }

    /// Every step undone (or never run): the phase left nothing behind.
    pub fn is_undone(&self) -> bool {
        self.state == PhaseState::Undone
    }

    /// Part-way: a run stopped (or failed) with some steps done.
    pub fn is_in_flight(&self) -> bool {
        self.state.is_in_flight()
    }

    /// The state a version-1 plan implied by its journal (before states were
    /// recorded).
    fn implied_state(&self) -> PhaseState {
        let statuses: Vec<StepStatus> = self.steps.iter().map(|s| self.status(&s.id)).collect();
        let any = |status| self.journal.iter().any(|e| e.status == status);
        if self.after.is_some() && statuses.iter().all(|s| *s == StepStatus::Done) {
            PhaseState::Applied
        } else if self.after.is_none()
            && statuses
                .iter()
                .all(|s| matches!(s, StepStatus::Undone | StepStatus::Pending))
            && any(StepStatus::Undone)
        {
            PhaseState::Undone
        } else if any(StepStatus::Failed) {
            PhaseState::Failed
        } else if any(StepStatus::Undone) {
            PhaseState::Undoing
        } else {
            PhaseState::Running
        }
    }
}

/// The journal file beside a plan: `carve.plan.toml` → `carve.plan.toml.journal`.
pub fn journal_path(plan: &Path) -> PathBuf {
    let mut name = plan.file_name().unwrap_or_default().to_os_string();
    name.push(".journal");
    plan.with_file_name(name)
}

/// One line of the journal file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JournalLine {
    phase: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    domain: Option<String>,
    step: String,
    status: StepStatus,
    at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The step-by-step checkpoint of a running phase. Rewriting the whole plan after
/// each step costs time in proportion to the plan, so on a large catalog a run would
/// take time quadratic in its steps; instead each step's status is appended here as
/// one line and flushed to disk (fsync) before the next step. [`Plan::load`] applies
/// the lines, and [`Plan::save`] (at the end of a run, whatever its outcome) folds
/// them into the plan and removes the file.
pub struct JournalFile {
    file: std::fs::File,
    path: PathBuf,
    /// When the file was last flushed to disk.
    synced: std::time::Instant,
}

/// How long journal lines may stay in the kernel's cache before they are flushed.
const JOURNAL_SYNC_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

impl JournalFile {
    pub fn open(plan: &Path) -> Result<JournalFile, PlanError> {
        let path = journal_path(plan);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| PlanError::Write {
                path: path.clone(),
                cause: source,
            })?;
        Ok(JournalFile {
            file,
            path,
            synced: std::time::Instant::now(),
        })
    }

    /// Appends one entry. It is written before this returns, so a carve killed at
    /// any moment (even SIGKILL) loses nothing: the kernel holds it. It is flushed to
    /// disk at least every 100 ms and by [`JournalFile::sync`]; a power loss may take
    /// the last lines, and then each step's own check tells what was done. An fsync
    /// per step cost 0.3 ms each, a quarter of carve's overhead over psql.
    pub fn append(&mut self, phase: &PhaseId, entry: &JournalEntry) -> Result<(), PlanError> {
        let line = JournalLine {
            phase: phase.name.clone(),
            domain: phase.domain.clone(),
            step: entry.step.clone(),
            status: entry.status,
            at: entry.at.clone(),
            error: entry.error.clone(),
        };
        let mut text = serde_json::to_string(&line).expect("a journal line serializes");
        text.push('\n');
        self.file
            .write_all(text.as_bytes())
            .map_err(|source| PlanError::Write {
                path: self.path.clone(),
                cause: source,
            })?;
        if self.synced.elapsed() >= JOURNAL_SYNC_EVERY {
            self.sync()?;
        }
        Ok(())
    }

    /// Flushes every line written so far to disk.
    pub fn sync(&mut self) -> Result<(), PlanError> {
        self.file.sync_data().map_err(|source| PlanError::Write {
            path: self.path.clone(),
            cause: source,
        })?;
        self.synced = std::time::Instant::now();
        Ok(())
    }
}

/// Now, as RFC 3339 in UTC, for the journal.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// One step's progress, written after every step so a re-run resumes where it stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalEntry {
    pub step: String,
    pub status: StepStatus,
    /// RFC 3339 time of the last status change.
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    Done,
    Failed,
    Undone,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    // `cause`, not `source`: the message already says it, and a source would make
    // `{:#}` say it twice ("Is a directory (os error 21): Is a directory …").
    #[error("cannot read plan file {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error(
        "{path} was written by a newer carve (plan format_version {found}; this carve reads up to {FORMAT_VERSION}): upgrade carve"
    )]
    TooNew { path: PathBuf, found: i64 },
    #[error("cannot write plan file {path}: {cause}")]
    Write {
        path: PathBuf,
        cause: std::io::Error,
    },
}

impl Plan {
    pub fn new(source: Source, fingerprint: Fingerprint) -> Plan {
        Plan {
            format_version: FORMAT_VERSION,
            written_by: format!("carve {}", env!("CARGO_PKG_VERSION")),
            resolution: None,
            source,
            domains: Vec::new(),
            pins: Vec::new(),
            services: Vec::new(),
            decisions: Vec::new(),
            splits: Vec::new(),
            consoles: Vec::new(),
            phases: Vec::new(),
            workload: None,
            runs: Vec::new(),
            fingerprint,
        }
    }

    /// Where a step target is: the source's, a domain server's or a console's
    /// connection string (without password), or `None` when the plan does not say.
    pub fn conninfo(&self, target: &crate::engine::Target) -> Option<&str> {
        use crate::engine::Target;
        match target {
            Target::Source => Some(&self.source.conninfo),
            Target::Domain(name) => self
                .domains
                .iter()
                .find(|d| &d.name == name)
                .and_then(|d| d.server.as_deref()),
            Target::Console(name) => self
                .consoles
                .iter()
                .find(|c| &c.name == name)
                .map(|c| c.conninfo.as_str()),
            // The machine carve runs on: no connection.
            Target::Local => None,
        }
    }

    /// The record of a phase (`"assign"`, or a [`PhaseId`] with its domain).
    pub fn phase(&self, id: impl Into<PhaseId>) -> Option<&PhaseRecord> {
        let id = id.into();
        self.phases
            .iter()
            .find(|p| p.name == id.name && p.domain == id.domain)
    }

    /// The steps of a phase under way or done (not undone): a run resumes them, or
    /// finds them in place, exactly as they were planned.
    pub fn steps_in_place(&self, id: impl Into<PhaseId>) -> Option<Vec<crate::engine::Step>> {
        self.phase(id)
            .filter(|r| !r.is_undone())
            .map(|r| r.steps.clone())
    }

    /// Whether `domain`'s clients are on its own server, no switch under way.
    pub fn is_cut_over(&self, domain: &str) -> bool {
        self.domains
            .iter()
            .find(|d| d.name == domain)
            .and_then(|d| d.cutover.as_ref())
            .is_some_and(|c| c.live == Side::Server && c.switching.is_none())
    }

    pub fn phase_mut(&mut self, id: impl Into<PhaseId>) -> Option<&mut PhaseRecord> {
        let id = id.into();
        self.phases
            .iter_mut()
            .find(|p| p.name == id.name && p.domain == id.domain)
    }

    /// What is wrong with the plan's domains as schema names: each name PostgreSQL
    /// reserves or cannot take, and each name given to two `[[domains]]` (which would
    /// silently merge them into one schema). Empty when they can all become schemas.
    pub fn domain_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut first: std::collections::BTreeMap<&str, usize> = Default::default();
        for (i, domain) in self.domains.iter().enumerate() {
            if let Some(problem) = crate::sql::schema_name_problem(&domain.name) {
                problems.push(format!("[[domains]] #{}: {problem}", i + 1));
            }
            if let Some(&earlier) = first.get(domain.name.as_str()) {
                problems.push(format!(
                    "[[domains]] #{} and #{} are both named {}: each domain becomes its own schema, so give them different names (or merge their tables into one entry)",
                    earlier + 1,
                    i + 1,
                    crate::sql::display_ident(&domain.name)
                ));
            } else {
                first.insert(&domain.name, i);
            }
        }
        problems
    }

    /// The roles the plan names (its services' roles and login roles, its domains'
    /// group roles): they count in the fingerprint even before they own or are
    /// granted anything.
    pub fn named_roles(&self) -> std::collections::BTreeSet<String> {
        let services = self
            .services
            .iter()
            .flat_map(|s| s.roles.iter().cloned().chain(s.login_role.iter().cloned()));
        let groups = self.domains.iter().filter_map(|d| d.role.clone());
        services.chain(groups).collect()
    }

    /// The catalog's fingerprint as this plan sees it (with the roles it names).
    pub fn fingerprint_of(&self, catalog: &crate::catalog::Catalog) -> Fingerprint {
        Fingerprint::with_roles(catalog, &self.named_roles())
    }

    /// The decision recorded for a subject, if any.
    pub fn decision(&self, subject: &str) -> Option<&Decision> {
        self.decisions.iter().find(|d| d.subject == subject)
    }

    /// The objects assign kept working across domains until the move
    /// (`keep-until-move`), by subject: a move refuses them.
    pub fn kept_until_move(&self) -> Vec<&str> {
        self.decisions
            .iter()
            .filter(|d| d.choice == KEEP_UNTIL_MOVE)
            .map(|d| d.subject.as_str())
            .collect()
    }

    /// Decides each of those to go when its domain moves (`drop-at-move`), with
    /// `reason`.
    pub fn let_kept_crossings_go(&mut self, reason: &str) {
        for d in self
            .decisions
            .iter_mut()
            .filter(|d| d.choice == KEEP_UNTIL_MOVE)
        {
            d.choice = "drop-at-move".into();
            d.reason = reason.into();
        }
    }

    /// Loads a plan, or `None` when the file does not exist.
    pub fn load_if_exists(path: &Path) -> Result<Option<Plan>, PlanError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let mut plan = Plan::parse(&text, path)?;
                plan.apply_journal_file(path)?;
                Ok(Some(plan))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(PlanError::Read {
                path: path.to_path_buf(),
                cause: source,
            }),
        }
    }

    /// Loads a plan, with the entries of its journal file (written step by step while
    /// a phase runs, see [`JournalFile`]) applied.
    pub fn load(path: &Path) -> Result<Plan, PlanError> {
        let text = std::fs::read_to_string(path).map_err(|source| PlanError::Read {
            path: path.to_path_buf(),
            cause: source,
        })?;
        let mut plan = Plan::parse(&text, path)?;
        plan.apply_journal_file(path)?;
        Ok(plan)
    }

    /// Applies the journal file beside the plan, if any: each line is a step's new
    /// status, in the order they happened. A last line cut short by a crash is left
    /// out (the step's own check tells whether it took effect); any other bad line is
    /// an error, as for the plan itself.
    fn apply_journal_file(&mut self, path: &Path) -> Result<(), PlanError> {
        let journal = journal_path(path);
        let text = match std::fs::read_to_string(&journal) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(PlanError::Read {
                    path: journal,
                    cause: source,
                })
            }
        };
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let entry: JournalLine = match serde_json::from_str(line) {
                Ok(entry) => entry,
                Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => break,
                Err(e) => {
                    return Err(PlanError::Syntax {
                        path: journal,
                        line: i + 1,
                        column: e.column(),
                        message: e.to_string(),
                    })
                }
            };
            let id = PhaseId {
                name: entry.phase,
                domain: entry.domain,
            };
            if let Some(record) = self.phase_mut(&id) {
                record.apply(JournalEntry {
                    step: entry.step,
                    status: entry.status,
                    at: entry.at,
                    error: entry.error,
                });
            }
        }
        Ok(())
    }

    /// Parses plan text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Plan, PlanError> {
        let syntax = |e: toml::de::Error| {
            let (line, column) = toml_error_position(text, &e);
            PlanError::Syntax {
                path: path.to_path_buf(),
                line,
                column,
                message: e.message().to_string(),
            }
        };
        // The version is checked before the full structure, so a plan from a newer
        // carve is refused as such rather than as a pile of unknown fields.
        let table: toml::Table = toml::from_str(text).map_err(syntax)?;
        match table.get("format_version") {
            None => {
                return Err(PlanError::Invalid {
                    path: path.to_path_buf(),
                    message: "not a carve plan: no format_version".into(),
                })
            }
            Some(toml::Value::Integer(v)) if *v > i64::from(FORMAT_VERSION) => {
                return Err(PlanError::TooNew {
                    path: path.to_path_buf(),
                    found: *v,
                })
            }
            Some(toml::Value::Integer(v)) if *v >= 1 => {}
            Some(other) => {
                return Err(PlanError::Invalid {
                    path: path.to_path_buf(),
                    message: format!("format_version must be a positive integer, not {other}"),
                })
            }
        }
        let plan: Plan = if table.get("format_version") == Some(&toml::Value::Integer(1)) {
            let old: migrate::V1 = toml::from_str(text).map_err(syntax)?;
            old.upgrade().map_err(|why| PlanError::Invalid {
                path: path.to_path_buf(),
                message: format!("upgrading this version 1 plan: {why}"),
            })?
        } else {
            toml::from_str(text).map_err(syntax)?
        };
        let mut plan = plan;
        for record in &mut plan.phases {
            record.journal.sort_by(|a, b| a.step.cmp(&b.step));
        }
        if !plan.fingerprint.adds_up() {
            return Err(PlanError::Invalid {
                path: path.to_path_buf(),
                message: format!(
                    "the [fingerprint] section does not add up: its digest is not the digest of the {} object(s) it lists, so the file was cut short or edited there. carve cannot tell from it whether the database changed; run `carve discover` again to make a new plan (or restore the file from a copy)",
                    plan.fingerprint.objects.len()
                ),
            });
        }
        Ok(plan)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a plan always serializes")
    }

    /// Writes the plan atomically: a temp file beside it, fsync, rename, fsync the
    /// directory. Readers see the old plan or the new one, never a torn file.
    pub fn save(&self, path: &Path) -> Result<(), PlanError> {
        let err = |source| PlanError::Write {
            path: path.to_path_buf(),
            cause: source,
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut tmp = tempfile::Builder::new()
            .prefix(".carve-plan-")
            .suffix(".tmp")
            .tempfile_in(&dir)
            .map_err(err)?;
        tmp.write_all(self.to_toml().as_bytes()).map_err(err)?;
        tmp.as_file().sync_all().map_err(err)?;
        tmp.persist(path).map_err(|e| err(e.error))?;
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(err)?;
        // The plan now holds every journal entry: the journal file is done with.
        match std::fs::remove_file(journal_path(path)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(err(e)),
            _ => Ok(()),
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
/// Where in `text` a TOML error is, as 1-based (line, column); the plan and the
/// service map report errors as `file:line:column` with it.
pub(crate) fn toml_error_position(text: &str, error: &toml::de::Error) -> (usize, usize) {
    error
        .span()
        .map(|span| line_column(text, span.start))
        .unwrap_or((1, 1))
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, column)
}

/// Plans for unit tests of the phases.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::catalog::Catalog;

    /// A plan made from `catalog` with these domains (`name`, its tables).
    pub fn plan_for(catalog: &Catalog, domains: &[(&str, &[&str])]) -> Plan {
        let mut plan = Plan::new(
            Source {
                conninfo: "dbname=db".into(),
                database: "db".into(),
            },
            Fingerprint::of(catalog),
        );
        plan.domains = domains
            .iter()
            .map(|(name, tables)| Domain {
                name: name.to_string(),
                tables: tables.iter().map(|t| t.to_string()).collect(),
                ..Domain::default()
            })
            .collect();
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Action, SqlAction, Target};
    use std::collections::BTreeMap;

    fn plan() -> Plan {
        let mut objects = BTreeMap::new();
        objects.insert("table public.a".to_string(), "kind=table".to_string());
        objects.insert(
            "column \"we ird\".\"a\"\"b\".c".to_string(),
            "type=text; default='x'::text".to_string(),
        );
        let mut plan = Plan::new(
            Source {
                conninfo: "host=/tmp port=5432 dbname='my db'".into(),
                database: "my db".into(),
            },
            Fingerprint::from_objects(objects),
        );
        plan.domains.push(Domain {
            name: "orders".into(),
            tables: vec!["public.orders".into(), "\"Odd \"\"name\"\"\".t".into()],
            role: Some("orders group".into()),
            column_privileges: true,
            server: Some("host=db2 dbname=orders".into()),
            verified: Some(Verified {
                at: "2026-11-29T12:00:00Z".into(),
                tables: 2,
                chunks: 7,
                rows: 60_000,
            }),
            cutover: Some(Cutover {
                live: Side::Server,
                since: "2026-11-29T13:00:00Z".into(),
                pause_ms: Some(310),
                switching: Some(Switching {
                    to: Side::Source,
                    started: "2026-11-29T14:00:00Z".into(),
                    committed: None,
                }),
                retired: None,
                files: Some(FilesSwitch {
                    dir: "/etc/shop/connections".into(),
                    hook: Some("systemctl reload shop-orders".into()),
                    services: vec!["checkout".into()],
                }),
            }),
            subscription_conninfo: Some("host=db1.internal dbname=shop sslmode=require".into()),
            reverse_conninfo: Some("host=db2.internal dbname=orders".into()),
        });
        plan.consoles.push(ConsoleRef {
            name: "edge".into(),
            conninfo: "host=pgb port=6432 dbname=pgbouncer".into(),
            config: Some("/etc/pgbouncer/pgbouncer.ini".into()),
        });
        plan.pins.push(Pin {
            tables: vec!["public.orders".into(), "public.order_items".into()],
            domain: Some("sales".into()),
        });
        plan.services.push(Service {
            name: "checkout".into(),
            roles: vec!["checkout_rw".into()],
            applications: vec!["checkout-api".into()],
            login_role: Some("checkout".into()),
            domain: Some("orders".into()),
            connection_limit: Some(20),
            pgbouncer_entry: Some("checkout".into()),
            cross_cutting: Some(false),
        });
        plan.workload = Some(WorkloadSources {
            sources: vec!["/srv/logs".into(), "pg_stat_statements".into()],
            log_line_prefix: Some("%m [%p] %u@%d ".into()),
        });
        plan.decisions.push(Decision {
            subject: "public.audit".into(),
            choice: "dedicated-owner".into(),
            reason: "written by every service".into(),
            rows: None,
        });
        plan.phases.push(PhaseRecord {
            name: "assign".into(),
            domain: None,
            state: PhaseState::Running,
            before: "cd".repeat(32),
            after: None,
            gate: GateHints {
                renames: vec![Rename {
                    from: "public.orders".into(),
                    to: "orders.orders".into(),
                    compat_view: true,
                }],
                creates_schemas: vec!["orders".into()],
                privileges: false,
                touches: Vec::new(),
            },
            steps: vec![Step {
                id: "create schema orders".into(),
                description: "a schema for the orders domain".into(),
                target: Target::Source,
                action: Action::Sql(SqlAction {
                    sql: "CREATE SCHEMA \"orders\"".into(),
                    done_check: "EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'orders')"
                        .into(),
                    undo: "DROP SCHEMA \"orders\"".into(),
                    transactional: true,
                    strong_lock: false,
                    secret: None,
                    read: None,
                }),
            }],
            journal: vec![JournalEntry {
                step: "create schema orders".into(),
                status: StepStatus::Done,
                at: "2026-11-21T10:00:00Z".into(),
                error: None,
            }],
        });
        plan
    }

    #[test]
    fn round_trips_through_toml_and_disk() {
        let plan = plan();
        let text = plan.to_toml();
        assert_eq!(Plan::parse(&text, Path::new("p")).unwrap(), plan);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("carve.plan.toml");
        plan.save(&path).unwrap();
        plan.save(&path).unwrap();
        assert_eq!(Plan::load(&path).unwrap(), plan);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp files left behind");
    }

    #[test]
    fn unknown_field_is_reported_with_line_and_column() {
        let text = plan()
            .to_toml()
            .replace("[source]\n", "[source]\npassword = \"hunter2\"\n");
        let line = text
            .lines()
            .position(|l| l.starts_with("password"))
            .unwrap()
            + 1;
        let err = Plan::parse(&text, Path::new("carve.plan.toml")).unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.starts_with(&format!(
                "carve.plan.toml:{line}:1: unknown field `password`"
            )),
            "{shown}"
        );
    }

    #[test]
    fn broken_toml_is_reported_with_line_and_column() {
        let err = Plan::parse("format_version = 1\nsource = [\n", Path::new("p.toml")).unwrap_err();
        assert!(
            matches!(err, PlanError::Syntax { line: 2 | 3, .. }),
            "{err}"
        );
        let err =
            Plan::parse("format_version = 1\nwritten_by = 7\n", Path::new("p.toml")).unwrap_err();
        assert!(err.to_string().starts_with("p.toml:2:14:"), "{err}");
    }

    #[test]
    fn newer_and_missing_versions_are_refused_clearly() {
        let text = plan()
            .to_toml()
            .replace("format_version = 2", "format_version = 3");
        let err = Plan::parse(&text, Path::new("p")).unwrap_err();
        assert!(matches!(err, PlanError::TooNew { found: 3, .. }), "{err}");
        assert!(err.to_string().contains("upgrade carve"));
        let err = Plan::parse("x = 1", Path::new("p")).unwrap_err();
        assert!(err.to_string().contains("no format_version"), "{err}");
        let err = Plan::parse("format_version = \"1\"", Path::new("p")).unwrap_err();
        assert!(err.to_string().contains("positive integer"), "{err}");
    }

    #[test]
    fn the_journal_file_is_applied_on_load_and_folded_in_by_save() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("carve.plan.toml");
        let mut original = plan();
        original.phases[0].journal.clear();
        original.save(&path).unwrap();
        let mut journal = JournalFile::open(&path).unwrap();
        let mut record = original.phases[0].clone();
        let done = record.record("create schema orders", StepStatus::Done, None);
        journal.append(&"assign".into(), &done).unwrap();
        let failed = record.record(
            "create schema orders",
            StepStatus::Failed,
            Some("boom".into()),
        );
        journal.append(&"assign".into(), &failed).unwrap();
        journal.append(&"no such phase".into(), &done).unwrap();
        drop(journal);
        // A crash in the middle of the next line.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(journal_path(&path))
            .unwrap();
        f.write_all(b"{\"phase\":\"assign\",\"st").unwrap();

        let loaded = Plan::load(&path).unwrap();
        let entry = loaded.phases[0].entry("create schema orders").unwrap();
        assert_eq!(entry.status, StepStatus::Failed);
        assert_eq!(entry.error.as_deref(), Some("boom"));
        loaded.save(&path).unwrap();
        assert!(!journal_path(&path).exists(), "folded into the plan");
        assert_eq!(Plan::load(&path).unwrap(), loaded);

        // A damaged line that is not the last is an error, with its line.
        std::fs::write(journal_path(&path), "garbage\n{}\n").unwrap();
        let err = Plan::load(&path).unwrap_err();
        assert!(err.to_string().contains(".journal:1:"), "{err}");
    }

    #[test]
    fn a_fingerprint_that_does_not_add_up_is_refused() {
        let text = plan().to_toml();
        // Cut at a line end inside [fingerprint.objects]: still valid TOML.
        let cut = text.trim_end().rsplit_once('\n').unwrap().0;
        assert!(toml::from_str::<toml::Table>(cut).is_ok());
        let err = Plan::parse(cut, Path::new("p")).unwrap_err();
        assert!(err.to_string().contains("does not add up"), "{err}");
        let edited = text.replace("kind=table", "kind=view");
        let err = Plan::parse(&edited, Path::new("p")).unwrap_err();
        assert!(err.to_string().contains("does not add up"), "{err}");
    }

    /// A plan as carve wrote it before steps had kinds and phases had states.
    const V1: &str = r#"format_version = 1
written_by = "carve 0.1.0"

[source]
conninfo = "dbname=shop"
database = "shop"

[[domains]]
name = "sales"
tables = ["public.orders"]

[[phases]]
name = "assign"
before = "aa"
after = "bb"
creates_schemas = ["sales"]

[[phases.renames]]
from = "public.orders"
to = "sales.orders"
compat_view = true

[[phases.steps]]
id = "create schema sales"
description = "a schema"
target = "source"
sql = "CREATE SCHEMA sales"
done_check = "true"
undo = "DROP SCHEMA sales"
transactional = true
strong_lock = false

[[phases.journal]]
step = "create schema sales"
status = "done"
at = "2026-11-21T10:00:00Z"

[[phases]]
name = "restrict"
before = "bb"
privileges = true

[[phases.steps]]
id = "create role x"
description = "a role"
target = "source"
sql = "CREATE ROLE x"
done_check = "true"
undo = "DROP ROLE x"
transactional = true
strong_lock = false

[[phases.journal]]
step = "create role x"
status = "undone"
at = "2026-11-21T10:00:00Z"

[fingerprint]
digest = "DIGEST"

[fingerprint.objects]
"table public.orders" = "kind=table"
"#;

    #[test]
    fn a_version_1_plan_is_upgraded_with_the_states_it_implied() {
        let digest = Fingerprint::from_objects(BTreeMap::from([(
            "table public.orders".to_string(),
            "kind=table".to_string(),
        )]))
        .digest;
        let text = V1.replace("DIGEST", &digest);
        let plan = Plan::parse(&text, Path::new("p")).unwrap();
        assert_eq!(plan.format_version, FORMAT_VERSION);
        let assign = plan.phase("assign").unwrap();
        assert_eq!(assign.state, PhaseState::Applied);
        assert_eq!(assign.gate.creates_schemas, ["sales"]);
        assert_eq!(assign.gate.renames[0].to, "sales.orders");
        let step = assign.steps[0].sql_action().unwrap();
        assert_eq!(step.undo, "DROP SCHEMA sales");
        let restrict = plan.phase("restrict").unwrap();
        assert_eq!(restrict.state, PhaseState::Undone);
        assert!(restrict.gate.privileges);
        // Saved, it is a version 2 plan that reads back the same.
        assert_eq!(Plan::parse(&plan.to_toml(), Path::new("p")).unwrap(), plan);
        assert!(plan.to_toml().starts_with("format_version = 2"));
        // An error in a version 1 plan still says where.
        let err = Plan::parse(
            &text.replace("[source]", "[source]\nport = 1"),
            Path::new("p"),
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("p:5:1: unknown field `port`"),
            "{err}"
        );
    }

    #[test]
    fn phase_states_move_only_as_a_run_can() {
        use PhaseEvent::*;
        use PhaseState::*;
        let walk = |from: PhaseState, events: &[PhaseEvent]| {
            events
                .iter()
                .try_fold(from, |state, event| state.after(*event))
        };
        assert_eq!(walk(Planned, &[Start, Complete]), Ok(Applied));
        assert_eq!(walk(Planned, &[Start, Fail, Start, Complete]), Ok(Applied));
        assert_eq!(walk(Applied, &[StartUndo, CompleteUndo]), Ok(Undone));
        assert_eq!(walk(Running, &[StartUndo, Fail, StartUndo]), Ok(Undoing));
        // A killed run is resumed in the state it died in.
        assert_eq!(walk(Running, &[Start]), Ok(Running));
        assert_eq!(walk(Undoing, &[StartUndo, CompleteUndo]), Ok(Undone));
        assert!(walk(Undone, &[Start]).is_err());
        assert!(walk(Undone, &[StartUndo]).is_err());
        assert!(walk(Planned, &[Complete]).is_err());
        assert!(walk(Applied, &[CompleteUndo]).is_err());
        assert!(walk(Applied, &[Fail]).is_err());
        for state in [Planned, Applied, Undone] {
            assert!(!state.is_in_flight(), "{state:?}");
        }
        for state in [Running, Failed, Undoing] {
            assert!(state.is_in_flight(), "{state:?}");
        }
    }

    #[test]
    fn targets_resolve_through_the_plan() {
        use crate::engine::Target;
        let p = plan();
        assert_eq!(
            p.conninfo(&Target::Source),
            Some(p.source.conninfo.as_str())
        );
        assert_eq!(
            p.conninfo(&Target::Domain("orders".into())),
            Some("host=db2 dbname=orders")
        );
        assert_eq!(
            p.conninfo(&Target::Console("edge".into())),
            Some("host=pgb port=6432 dbname=pgbouncer")
        );
        assert_eq!(p.conninfo(&Target::Domain("nowhere".into())), None);
    }

    #[test]
    fn missing_file_is_none() {
        assert!(
            Plan::load_if_exists(Path::new("/nonexistent/carve.plan.toml"))
                .unwrap()
                .is_none()
        );
    }
}
