//! The copy and catch-up on PostgreSQL's own logical replication, as steps: on the
//! source a replication role (its password only in the password file) allowed to
//! read the domain's schema, and a publication `FOR TABLES IN SCHEMA`; on the target
//! a subscription (`copy_data`, `streaming`, a slot of carve's name), then a wait
//! until every table is copied and ready. Undone last step first: the subscription
//! dropped (with its slot on the source), the publication, the grants, the role.
//!
//! Not `disable_on_error`: on PostgreSQL 15 it disables the subscription on any
//! error of its worker, and losing the publisher's connection is one (a restart,
//! a failover, a network cut). A stream back left disabled by a restart of the
//! domain's server during the grace period would stop the source following it
//! without a word. Without it the worker retries every
//! `wal_retrieve_retry_interval`; an apply error shows as growing lag and
//! `pg_stat_subscription_stats` counts (`carve status`), which the gate weighs.

use std::path::PathBuf;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::super::{lit, role_exists};
use super::on_domain;
use crate::engine::{Action, OnTimeout, SecretInput, SqlAction, Step, Target, WaitAction};
use crate::sql::{display_ident, ident};

/// How the target reaches the source, and where the replication role's password is
/// kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// A libpq connection string from the target to the source, without user or
    /// password (`host=db1 port=5432 dbname=shop`).
    pub conninfo: String,
    pub password_file: PathBuf,
    /// The password file line's host, port and database.
    pub host: String,
    pub port: u16,
    pub database: String,
}

/// The names carve gives a domain's replication objects: ASCII, lower case, unique
/// per domain (a digest of the domain's name), at most 63 bytes. Slot names allow
/// nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub role: String,
    pub publication: String,
    pub subscription: String,
    pub slot: String,
}

impl Names {
    pub fn of(domain: &str) -> Names {
        let digest: String = Sha256::digest(domain.as_bytes())[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut base = crate::analysis::snake_case(domain);
        base.truncate(40);
        let base = format!("carve_{}_{digest}", base.trim_end_matches('_'));
        Names {
            role: format!("{base}_repl"),
            publication: base.clone(),
            subscription: base.clone(),
            slot: base,
        }
    }

    /// The names of the stream that keeps the domain's copies of other domains'
    /// columns (`reads`): the same replication role (on the source), and a
    /// publication, subscription and slot of their own.
    pub fn reads(domain: &str) -> Names {
        let forward = Names::of(domain);
        let reads = format!("{}_reads", forward.slot);
        Names {
            role: forward.role,
            publication: reads.clone(),
            subscription: reads.clone(),
            slot: reads,
        }
    }

    /// The names of the stream back from the domain's server to the source (made at
    /// cut-over): the same replication role's name (on the domain's server), and a
    /// publication, subscription and slot of their own.
    pub fn back(domain: &str) -> Names {
        let forward = Names::of(domain);
        let back = format!("{}_back", forward.slot);
        Names {
            role: forward.role,
            publication: back.clone(),
            subscription: back.clone(),
            slot: back,
        }
    }
}

/// The wait that ends a move in *ready*: the subscription's slot on the source has
/// confirmed all but `max_lag` bytes of the source's WAL (its `confirmed_flush_lsn`,
/// not an estimate), then the target's planner statistics are fresh. Run after the
/// deferred indexes and keys.
pub fn ready_steps(domain: &str, max_lag: u64, timeout: Duration) -> Vec<Step> {
    let names = Names::of(domain);
    let lag = format!(
        "(SELECT pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), confirmed_flush_lsn) FROM pg_catalog.pg_replication_slots WHERE slot_name = {})",
        lit(&names.slot)
    );
    let subscription = lit(&names.subscription);
    vec![
        Step {
            id: format!("check the subscription of {}", display_ident(domain)),
            description: format!(
                "the subscription on the {} server is enabled and its apply worker runs (an apply error disables it: the server's log says which table and why)",
                display_ident(domain)
            ),
            target: Target::Domain(domain.to_string()),
            action: Action::Wait(WaitAction {
                until: format!(
                    "EXISTS (SELECT 1 FROM pg_catalog.pg_subscription s JOIN pg_catalog.pg_stat_subscription w ON w.subid = s.oid WHERE s.subname = {subscription} AND s.subenabled AND w.relid IS NULL AND w.pid IS NOT NULL)"
                ),
                progress: None,
                unit: String::new(),
                every: Duration::from_millis(200),
                timeout: Duration::from_secs(30),
                on_timeout: OnTimeout::Fail,
                once: false,
            }),
        },
        Step {
            id: format!("wait for {} to catch up", display_ident(domain)),
            description: format!(
                "the {} server has applied all but {max_lag} bytes of the source's changes",
                display_ident(domain)
            ),
            target: Target::Source,
            action: Action::Wait(WaitAction {
                until: format!("coalesce({lag} <= {max_lag}, false)"),
                progress: Some(format!("SELECT {lag}::bigint, {max_lag}::bigint")),
                unit: "bytes behind (allowed)".into(),
                every: Duration::from_millis(200),
                timeout,
                on_timeout: OnTimeout::Fail,
                once: false,
            }),
        },
        on_domain(
            domain,
            format!("analyze {}", display_ident(domain)),
            format!("planner statistics for the copied tables of {}", display_ident(domain)),
            // ANALYZE leaves nothing to undo and is never wrong to repeat.
            SqlAction::always(format!(
                "DO $carve$ DECLARE t record; BEGIN FOR t IN SELECT schemaname, tablename FROM pg_catalog.pg_tables WHERE schemaname = {} LOOP EXECUTE format('ANALYZE %I.%I', t.schemaname, t.tablename); END LOOP; END $carve$;",
                lit(domain)
            )),
        ),
    ]
}

/// One direction of logical replication of a domain's schema: `publisher` publishes
/// its tables, `subscriber` applies every change. Forward (the move) is the source
/// to the domain's server; back (after cut-over, so a rollback loses nothing) is the
/// other way.
pub struct Stream<'a> {
    pub domain: &'a str,
    pub publisher: Target,
    pub subscriber: Target,
    pub names: Names,
    /// How the subscriber reaches the publisher.
    pub link: &'a Link,
}

impl<'a> Stream<'a> {
    /// From the source to the domain's server (`link` reaches the source).
    pub fn forward(domain: &'a str, link: &'a Link) -> Stream<'a> {
        Stream {
            domain,
            publisher: Target::Source,
            subscriber: Target::Domain(domain.to_string()),
            names: Names::of(domain),
            link,
        }
    }

    /// From the domain's server back to the source (`link` reaches the server).
    pub fn back(domain: &'a str, link: &'a Link) -> Stream<'a> {
        Stream {
            domain,
            publisher: Target::Domain(domain.to_string()),
            subscriber: Target::Source,
            names: Names::back(domain),
            link,
        }
    }

    /// `SELECT oid` of the subscription, for checks on the subscriber.
    pub fn subscription_id(&self) -> String {
        format!(
            "(SELECT oid FROM pg_catalog.pg_subscription WHERE subname = {})",
            lit(&self.names.subscription)
        )
    }

    /// The subscription, with its slot on the publisher: `copy_data` for the move's
    /// initial copy; without, at a switch (both sides hold the same rows then).
    pub fn subscribe(&self, copy_data: bool) -> Step {
        let names = &self.names;
        let link = self.link;
        Step::sql(
            format!("create subscription {}", names.subscription),
            format!(
                "subscription on {}: {}follows every change on {}",
                side(&self.subscriber),
                if copy_data { "copies the tables, then " } else { "" },
                side(&self.publisher)
            ),
            self.subscriber.clone(),
            SqlAction {
                sql: format!(
                    "CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH (copy_data = {copy_data}, streaming = on, create_slot = false, slot_name = {});",
                    ident(&names.subscription),
                    crate::engine::SECRET_VARIABLE,
                    ident(&names.publication),
                    lit(&names.slot)
                ),
                done_check: format!("{} IS NOT NULL", self.subscription_id()),
                // Detached from its slot first: `DROP SUBSCRIPTION` would drop the
                // slot on the publisher before its own transaction commits, so a run
                // killed then would leave a subscription whose slot is gone, and the
                // next drop would fail. The slot goes with its own step's undo.
                undo: self.drop_detached_sql(),
                // CREATE SUBSCRIPTION makes a slot: not inside a transaction block.
                transactional: false,
                strong_lock: false,
                secret: Some(SecretInput::ConninfoWithPassword {
                    file: link.password_file.clone(),
                    host: link.host.clone(),
                    port: link.port,
                    database: link.database.clone(),
                    role: names.role.clone(),
                    conninfo: format!(
                        "{} user={}",
                        link.conninfo,
                        crate::conn::quote_value(&names.role)
                    ),
                }),
                read: None,
            },
        )
    }

    /// The subscription's apply worker made to flush each transaction it applies
    /// (`synchronous_commit = on`, taken up without a restart): it then confirms
    /// each at once instead of after the WAL writer's next round and its own next
    /// look, which a switch waits for with writes paused. Kept to the switch, where
    /// latency matters more than the apply rate.
    pub fn confirm_at_once(&self) -> Step {
        Step::sql(
            format!("flush each applied transaction of {}", self.names.subscription),
            format!(
                "the subscription on {} confirms each change as soon as it is applied",
                side(&self.subscriber)
            ),
            self.subscriber.clone(),
            SqlAction {
                sql: format!(
                    "ALTER SUBSCRIPTION {} SET (synchronous_commit = on);",
                    ident(&self.names.subscription)
                ),
                // Gone is done too: a later step of the switch drops the
                // subscription when it turns the stream around, and a resumed
                // switch must get past this step (a fresh one never starts
                // without the subscription: the gate sees to it).
                done_check: format!(
                    "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_subscription WHERE subname = {} AND subsynccommit <> 'on')",
                    lit(&self.names.subscription)
                ),
                undo: format!(
                    "ALTER SUBSCRIPTION {} SET (synchronous_commit = off);",
                    ident(&self.names.subscription)
                ),
                transactional: false,
                strong_lock: false,
                secret: None,
                read: None,
            },
        )
    }

    /// A wait on the subscriber until every table of the subscription is copied
    /// and ready (`what` names the copy in the step's id).
    pub fn wait_for_copy(&self, what: &str, description: String, timeout: Duration) -> Step {
        let subscription_id = self.subscription_id();
        Step {
            id: format!("wait for {what}"),
            description,
            target: self.subscriber.clone(),
            action: Action::Wait(WaitAction {
                until: format!(
                    "EXISTS (SELECT 1 FROM pg_catalog.pg_subscription_rel WHERE srsubid = {subscription_id}) AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_subscription_rel WHERE srsubid = {subscription_id} AND srsubstate <> 'r')"
                ),
                progress: Some(format!(
                    "SELECT count(*) FILTER (WHERE srsubstate = 'r'), count(*) FROM pg_catalog.pg_subscription_rel WHERE srsubid = {subscription_id}"
                )),
                unit: "tables".into(),
                // A cheap look; every 100 ms saved here is 100 ms off time to ready.
                every: Duration::from_millis(100),
                timeout,
                on_timeout: OnTimeout::Fail,
                once: false,
            }),
        }
    }

    /// True when the stream's slot exists on the publisher.
    fn slot_exists(&self) -> String {
        format!(
            "EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = {})",
            lit(&self.names.slot)
        )
    }

    /// The stream's slot on the publisher, made on its own (the subscription is
    /// made with `create_slot = false`): a run killed between the two leaves a slot
    /// the next run finds, never a subscription made with its slot half there.
    pub fn create_slot(&self) -> Step {
        let slot = lit(&self.names.slot);
        Step::sql(
            format!("create replication slot {}", self.names.slot),
            format!(
                "the slot on {} that keeps every change for {}",
                side(&self.publisher),
                side(&self.subscriber)
            ),
            self.publisher.clone(),
            SqlAction {
                sql: format!(
                    "SELECT pg_catalog.pg_create_logical_replication_slot({slot}, 'pgoutput');"
                ),
                done_check: self.slot_exists(),
                // Once the subscription's walsender has let it go (it ends as the
                // dropped subscription's worker does, at most 30 s).
                undo: format!(
                    "DO {};",
                    crate::sql::dollar_quoted(&format!(
                        "BEGIN FOR i IN 1..300 LOOP EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = {slot} AND active); PERFORM pg_catalog.pg_sleep(0.1); END LOOP; PERFORM pg_catalog.pg_drop_replication_slot(slot_name) FROM pg_catalog.pg_replication_slots WHERE slot_name = {slot}; END"
                    ))
                ),
                // A slot is made outside a transaction that has written anything.
                transactional: false,
                strong_lock: false,
                secret: None,
                read: None,
            },
        )
    }

    /// The subscription disabled, detached from its slot (`slot_name = NONE`) and
    /// dropped: the slot on the publisher stays for a step of its own.
    fn drop_detached_sql(&self) -> String {
        let subscription = ident(&self.names.subscription);
        format!(
            "ALTER SUBSCRIPTION {subscription} DISABLE;\nALTER SUBSCRIPTION {subscription} SET (slot_name = NONE);\nDROP SUBSCRIPTION {subscription};"
        )
    }

    /// The subscription dropped, then its slot on the publisher: the subscription is
    /// first detached from its slot (`slot_name = NONE`), so a run killed half-way
    /// never leaves a subscription whose slot is gone (`DROP SUBSCRIPTION` drops the
    /// remote slot before its own transaction commits).
    pub fn unsubscribe(&self) -> Vec<Step> {
        let exists = self.subscription_id();
        vec![
            Step::sql(
                format!("drop subscription {}", self.names.subscription),
                format!(
                    "{} stops following {}",
                    side(&self.subscriber),
                    side(&self.publisher)
                ),
                self.subscriber.clone(),
                SqlAction::transactional(
                    self.drop_detached_sql(),
                    format!("{exists} IS NULL"),
                    "SELECT 1;".into(),
                ),
            ),
            Step {
                id: format!("wait for the slot {} to be let go", self.names.slot),
                description: format!(
                    "the slot on {} is no longer in use by the subscription's worker",
                    side(&self.publisher)
                ),
                target: self.publisher.clone(),
                action: Action::Wait(WaitAction {
                    until: format!(
                        "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = {} AND active)",
                        lit(&self.names.slot)
                    ),
                    progress: None,
                    unit: String::new(),
                    every: Duration::from_millis(20),
                    timeout: Duration::from_secs(30),
                    on_timeout: OnTimeout::Fail,
                    once: false,
                }),
            },
            Step::sql(
                format!("drop replication slot {}", self.names.slot),
                format!("the slot on {} is dropped", side(&self.publisher)),
                self.publisher.clone(),
                SqlAction {
                    sql: format!(
                        "SELECT pg_catalog.pg_drop_replication_slot(slot_name) FROM pg_catalog.pg_replication_slots WHERE slot_name = {};",
                        lit(&self.names.slot)
                    ),
                    done_check: format!("NOT {}", self.slot_exists()),
                    undo: "SELECT 1;".into(),
                    transactional: false,
                    strong_lock: false,
                    secret: None,
                    read: None,
                },
            ),
        ]
    }

    /// Everything the stream needs: on the publisher a replication role (its password
    /// only in the password file) allowed to read the schema and a publication of it;
    /// on the subscriber the subscription.
    pub fn steps(&self, copy_data: bool) -> Vec<Step> {
        let names = &self.names;
        let link = self.link;
        let domain = self.domain;
        let role = ident(&names.role);
        let schema = ident(domain);
        let publication = ident(&names.publication);
        let role_exists = role_exists(&names.role);
        let on_publisher = |id: String, description: String, action: SqlAction| {
            Step::sql(id, description, self.publisher.clone(), action)
        };
        vec![
            on_publisher(
                format!("create replication role {}", names.role),
                format!(
                    "role {} on {} that the subscription on {} logs in as (its password only in {})",
                    names.role,
                    side(&self.publisher),
                    side(&self.subscriber),
                    link.password_file.display()
                ),
                SqlAction {
                    sql: format!(
                        "CREATE ROLE {role} LOGIN REPLICATION PASSWORD {};",
                        crate::engine::SECRET_VARIABLE
                    ),
                    done_check: role_exists.clone(),
                    undo: format!("DROP ROLE {role};"),
                    transactional: true,
                    strong_lock: false,
                    secret: Some(SecretInput::PasswordVerifier {
                        file: link.password_file.clone(),
                        host: link.host.clone(),
                        port: link.port,
                        database: link.database.clone(),
                        role: names.role.clone(),
                    }),
                    read: None,
                },
            ),
            on_publisher(
                format!("grant read on {} to {}", display_ident(domain), names.role),
                format!("{} may read the domain's tables to copy them", names.role),
                SqlAction::transactional(format!(
                        "GRANT USAGE ON SCHEMA {schema} TO {role};\nGRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role};"
                    ), format!(
                        "{role_exists} AND has_schema_privilege({}, {}, 'USAGE') AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = {} AND NOT has_table_privilege({}, format('%I.%I', schemaname, tablename), 'SELECT'))",
                        lit(&names.role),
                        lit(domain),
                        lit(domain),
                        lit(&names.role)
                    ), format!(
                        "REVOKE SELECT ON ALL TABLES IN SCHEMA {schema} FROM {role};\nREVOKE USAGE ON SCHEMA {schema} FROM {role};"
                    )),
            ),
            on_publisher(
                format!("create publication {}", names.publication),
                format!(
                    "publication of every table in schema {} on {}",
                    display_ident(domain),
                    side(&self.publisher)
                ),
                SqlAction::transactional(
                    format!("CREATE PUBLICATION {publication} FOR TABLES IN SCHEMA {schema};"),
                    format!(
                        "EXISTS (SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = {})",
                        lit(&names.publication)
                    ),
                    format!("DROP PUBLICATION {publication};"),
                ),
            ),
            self.create_slot(),
            self.subscribe(copy_data),
        ]
    }
}

/// A target for people: "the source", "the sales server".
pub fn side(target: &Target) -> String {
    match target {
        Target::Source => "the source".into(),
        Target::Domain(d) => format!("the {} server", display_ident(d)),
        Target::Console(c) => format!("console {c}"),
        Target::Local => "this machine".into(),
    }
}

/// The steps that copy `domain`'s schema from the source to its server and keep it
/// in step, ending when every table is copied.
pub fn replication_steps(domain: &str, link: &Link, copy_timeout: Duration) -> Vec<Step> {
    let stream = Stream::forward(domain, link);
    let mut steps = stream.steps(true);
    steps.push(stream.wait_for_copy(
        &format!("the copy of {}", display_ident(domain)),
        format!("the initial copy of {}'s tables", display_ident(domain)),
        copy_timeout,
    ));
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replication_names_are_ascii_unique_and_short() {
        let a = Names::of("Dömain \"one\"; DROP");
        let b = Names::of("Dömain \"one\"; DROP!");
        assert_ne!(a.slot, b.slot);
        for name in [
            &a.role,
            &a.publication,
            &a.slot,
            &Names::of(&"x".repeat(63)).role,
        ] {
            assert!(name.len() <= 63, "{name}");
            assert!(
                name.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_'),
                "{name}"
            );
        }
    }

    #[test]
    fn no_secret_reaches_the_steps() {
        let link = Link {
            conninfo: "host=127.0.0.1 port=5432 dbname=shop".into(),
            password_file: "/tmp/passwords".into(),
            host: "127.0.0.1".into(),
            port: 5432,
            database: "shop".into(),
        };
        let steps = replication_steps("sales", &link, Duration::from_secs(60));
        let text = format!("{steps:?}");
        assert!(!text.contains("password="), "{text}");
        // The slot is made on the source first; the subscription only uses it.
        assert_eq!(steps[3].target, Target::Source);
        assert!(steps[3].id.starts_with("create replication slot"));
        let sub = steps[4].sql_action().unwrap();
        assert!(
            sub.sql.contains("CONNECTION :'carve_secret'")
                && sub.sql.contains("create_slot = false"),
            "{}",
            sub.sql
        );
        assert!(!sub.transactional);
        assert!(matches!(steps[5].action, Action::Wait(_)));
        assert_eq!(steps[4].target, Target::Domain("sales".into()));
    }
}
