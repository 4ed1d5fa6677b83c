//! Exit codes: part of the CLI contract that runbooks branch on. Each is documented in
//! `carve --help` and the README; a code is only listed there once a command returns it.

use std::process::ExitCode;

/// Everything asked for was done.
pub const SUCCESS: u8 = 0;
/// Something failed; the message says what. Nothing was left half-done.
pub const ERROR: u8 = 1;
/// The command line was not understood (clap's own code).
pub const USAGE: u8 = 2;
/// A dry-run found work to do (nothing was changed).
pub const CHANGES_PENDING: u8 = 3;
/// Another carve run holds the lock on this database (the message names it).
pub const LOCK_HELD: u8 = 4;
/// The plan file was made from a catalog that has changed since.
pub const STALE_PLAN: u8 = 5;
/// A decision the phase needs is missing from the plan, or a preflight or gate
/// refused (the message lists every reason).
pub const GATE_NOT_MET: u8 = 6;
/// verify found rows that differ between the source and a domain's server (each
/// listed by key).
pub const DATA_DIFFERS: u8 = 7;
/// Interrupted by Ctrl-C (128 + SIGINT, as shells report it).
pub const INTERRUPTED: u8 = 130;

/// The name of an exit code, as the JSON error object gives it.
pub fn name(value: u8) -> &'static str {
    match value {
        SUCCESS => "success",
        USAGE => "usage",
        CHANGES_PENDING => "changes-pending",
        LOCK_HELD => "lock-held",
        STALE_PLAN => "stale-plan",
        GATE_NOT_MET => "gate-not-met",
        DATA_DIFFERS => "data-differs",
        INTERRUPTED => "interrupted",
        _ => "error",
    }
}

/// Whether a run that exits with `value` failed (a dry-run's pending work did not).
pub fn is_failure(value: u8) -> bool {
    !matches!(value, SUCCESS | CHANGES_PENDING)
}

pub fn code(value: u8) -> ExitCode {
    ExitCode::from(value)
}

/// The text for `--help`.
pub const HELP: &str = "\
Exit codes:
  0    success
  1    error (the message says what; nothing was left half-done)
  2    the command line was not understood
  3    changes pending: a --dry-run found steps still to do (nothing was changed)
  4    lock held: another carve run is changing this database (its pid, application
       and start time are shown)
  5    stale plan: the database changed since the plan file was made (the change is listed)
  6    gate not met: the plan lacks a decision the phase needs (each one is listed),
       restrict's proof found statements that would fail unaccepted (listed),
       move's preflight or cut-over's gate refused (every reason listed),
       retire's grace period is not over, or retire's proof found statements of
       services on the source that it would break (listed)
  7    data differs: verify found rows that differ between the source and the
       domain's server (each listed by key)
  130  interrupted by Ctrl-C";
