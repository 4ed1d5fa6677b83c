//! Whether a switch may start: facts the command reads from both servers, the
//! console and the plan, weighed here without a connection. Every reason is named at
//! once; when there is one, nothing changes anywhere.

use std::time::{Duration, SystemTime};

use crate::catalog::facts::ServerFacts;
use crate::phases::move_domain::preflight::Refusal;
use crate::plan::Side;

/// The stream that carries the live side's writes to the side clients go to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamFacts {
    /// The subscription exists on the side switched to.
    pub exists: bool,
    pub enabled: bool,
    /// Its apply worker runs.
    pub worker: bool,
    /// Tables not in state `r` (ready), by name.
    pub tables_not_ready: Vec<String>,
    /// Bytes of the live side's WAL its slot has not confirmed; None without a slot.
    pub lag_bytes: Option<i64>,
}

/// Everything the gate weighs.
#[derive(Debug, Clone)]
pub struct Facts {
    pub to: Side,
    pub stream: StreamFacts,
    /// Indexes of the domain's tables not valid on the side switched to.
    pub invalid_indexes: Vec<String>,
    /// The side switched to: room for the stream back's slot and sender.
    pub to_server: ServerFacts,
    /// The side clients leave: room for the stream back's apply worker.
    pub from_server: ServerFacts,
    /// The PgBouncer console answered, and each entry's problem if it has one
    /// (absent from `SHOW DATABASES`, missing from the file, file not writable).
    pub console: Result<Vec<String>, String>,
    /// When the domain last verified clean (RFC 3339), from the plan.
    pub verified_at: Option<String>,
    /// Statements of the domain's services that restrict's proof found failing on
    /// the side switched to, as their roles (none without restrict).
    pub failing_statements: usize,
    pub now: SystemTime,
}

/// What the gate asks for.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub max_lag: u64,
    /// A clean verify no older than this (cut-over only: a rollback is the way back
    /// from trouble and must not wait for one).
    pub verify_max_age: Duration,
    /// Cut over even though some of the services' statements fail on the server.
    pub accept_failing_statements: bool,
}

/// Every reason the switch cannot start now; empty when it can.
pub fn check(facts: &Facts, thresholds: &Thresholds) -> Vec<Refusal> {
    let mut refusals = Vec::new();
    let mut refuse = |what: &str, why: String| {
        refusals.push(Refusal {
            what: what.to_string(),
            why,
        })
    };
    let s = &facts.stream;
    if !s.exists {
        refuse(
            "replication",
            "the subscription that brings the live side's writes does not exist on the side to switch to: run `carve move` to finish the move first".into(),
        );
    } else {
        if !s.enabled {
            refuse("replication", "the subscription is disabled (ALTER SUBSCRIPTION … DISABLE, or made by another tool with disable_on_error): `ALTER SUBSCRIPTION … ENABLE` on the side to switch to; `carve status --domain` shows it".into());
        } else if !s.worker {
            refuse(
                "replication",
                "the subscription's apply worker is not running".into(),
            );
        }
        if !s.tables_not_ready.is_empty() {
            refuse(
                "replication",
                format!(
                    "{} table(s) not yet copied and ready: {}",
                    s.tables_not_ready.len(),
                    s.tables_not_ready.join(", ")
                ),
            );
        }
        match s.lag_bytes {
            None => refuse("replication", "the subscription's slot is missing on the live side".into()),
            Some(lag) if lag > thresholds.max_lag as i64 => refuse(
                "lag",
                format!(
                    "{lag} bytes behind, more than --max-lag {}: writes would pause while it catches up; wait, or find out why it lags (`carve status --domain`)",
                    thresholds.max_lag
                ),
            ),
            Some(_) => {}
        }
    }
    if !facts.invalid_indexes.is_empty() {
        refuse(
            "indexes",
            format!(
                "not valid on the side to switch to: {}",
                facts.invalid_indexes.join(", ")
            ),
        );
    }
    let (to, from) = (&facts.to_server, &facts.from_server);
    if to.wal_level != "logical" {
        refuse(
            "wal_level",
            format!(
                "is {} on the side to switch to; the stream back needs logical (a restart)",
                to.wal_level
            ),
        );
    }
    if to.max_replication_slots - to.replication_slots_used < 1 {
        refuse(
            "max_replication_slots",
            "no free slot on the side to switch to for the stream back".into(),
        );
    }
    if to.max_wal_senders - to.wal_senders_used < 1 {
        refuse(
            "max_wal_senders",
            "no free WAL sender on the side to switch to for the stream back".into(),
        );
    }
    if from.max_logical_replication_workers - from.logical_workers_used < 1 {
        refuse(
            "max_logical_replication_workers",
            "no free worker on the side clients leave for the stream back's subscription".into(),
        );
    }
    match &facts.console {
        Err(why) => refuse("pgbouncer", why.clone()),
        Ok(problems) => {
            for p in problems {
                refuse("pgbouncer", p.clone());
            }
        }
    }
    if facts.to == Side::Server
        && facts.failing_statements > 0
        && !thresholds.accept_failing_statements
    {
        refuse(
            "statements",
            format!(
                "{} statement(s) of the domain's services fail on its server as their roles (listed above): they would break once their clients are there. Fix them (a table of another domain: decide api or delegate; a function: move it with the domain), or pass --accept-failing-statements",
                facts.failing_statements
            ),
        );
    }
    if facts.to == Side::Server {
        match &facts.verified_at {
            None => refuse(
                "verify",
                "the domain was never verified clean: run `carve verify --domain` first".into(),
            ),
            Some(at) => match humantime::parse_rfc3339_weak(at) {
                Err(_) => refuse(
                    "verify",
                    format!("the plan's verify time {at:?} cannot be read"),
                ),
                Ok(when) => {
                    let age = facts.now.duration_since(when).unwrap_or_default();
                    if age > thresholds.verify_max_age {
                        refuse(
                            "verify",
                            format!(
                                "the last clean verify is {} old, more than --verify-max-age {}: run `carve verify --domain` again",
                                humantime::format_duration(Duration::from_secs(age.as_secs())),
                                humantime::format_duration(thresholds.verify_max_age)
                            ),
                        );
                    }
                }
            },
        }
    }
    refusals
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> ServerFacts {
        ServerFacts::roomy_15()
    }

    fn ready() -> Facts {
        let now = SystemTime::now();
        Facts {
            to: Side::Server,
            stream: StreamFacts {
                exists: true,
                enabled: true,
                worker: true,
                tables_not_ready: vec![],
                lag_bytes: Some(100),
            },
            invalid_indexes: vec![],
            to_server: server(),
            from_server: server(),
            console: Ok(vec![]),
            verified_at: Some(
                humantime::format_rfc3339_seconds(now - Duration::from_secs(60)).to_string(),
            ),
            failing_statements: 0,
            now,
        }
    }

    const THRESHOLDS: Thresholds = Thresholds {
        max_lag: 1 << 20,
        verify_max_age: Duration::from_secs(3600),
        accept_failing_statements: false,
    };

    #[test]
    fn a_ready_domain_passes() {
        assert_eq!(check(&ready(), &THRESHOLDS), vec![]);
    }

    #[test]
    fn every_reason_is_named_at_once() {
        let mut facts = ready();
        facts.stream.lag_bytes = Some(5 << 20);
        facts.stream.worker = false;
        facts.verified_at = Some(
            humantime::format_rfc3339_seconds(facts.now - Duration::from_secs(7200)).to_string(),
        );
        facts.console = Err("cannot reach the PgBouncer console: connection refused".into());
        facts.to_server.replication_slots_used = 10;
        let reasons: Vec<String> = check(&facts, &THRESHOLDS)
            .iter()
            .map(|r| r.what.clone())
            .collect();
        assert_eq!(
            reasons,
            [
                "replication",
                "lag",
                "max_replication_slots",
                "pgbouncer",
                "verify"
            ]
        );
    }

    #[test]
    fn statements_that_would_break_refuse_a_cut_over_unless_accepted() {
        let mut facts = ready();
        facts.failing_statements = 2;
        assert_eq!(check(&facts, &THRESHOLDS)[0].what, "statements");
        let accepting = Thresholds {
            accept_failing_statements: true,
            ..THRESHOLDS
        };
        assert_eq!(check(&facts, &accepting), vec![]);
        facts.to = Side::Source;
        assert_eq!(check(&facts, &THRESHOLDS), vec![]);
    }

    #[test]
    fn a_rollback_does_not_wait_for_a_verify() {
        let mut facts = ready();
        facts.to = Side::Source;
        facts.verified_at = None;
        assert_eq!(check(&facts, &THRESHOLDS), vec![]);
        facts.to = Side::Server;
        assert_eq!(check(&facts, &THRESHOLDS)[0].what, "verify");
    }
}
