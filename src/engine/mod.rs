//! The step engine every database-changing phase runs on. A phase turns (plan,
//! catalog) into a list of `Step`s by a pure function; a step is plain data (`step.rs`):
//! where it runs (the source, a domain's server, a PgBouncer console), what it does
//! (SQL, a wait, a console command), the check that says whether it is done, and its
//! undo. No closures and no connections here.
//!
//! `script.rs` renders steps as a psql script (the dry-run); `endpoint.rs` opens one
//! connection set per target; the executor applies steps with a lock and a
//! checkpointed journal and tells what happens as `events::Event`s. This module
//! imports neither `phases`, `ui` nor `cli`.

pub mod endpoint;
pub mod events;
pub mod executor;
pub mod gate;
pub mod local;
pub mod pgbouncer_file;
pub mod proof;
pub mod script;
pub mod secret;
mod step;

pub use step::{
    undo_steps, Action, ConsoleAction, EntryTarget, FileAction, HookAction, OnTimeout,
    PgbouncerEntry, Reading, RowCheck, SecretInput, SqlAction, Step, Target, WaitAction,
    READ_VARIABLE, SECRET_VARIABLE,
};
