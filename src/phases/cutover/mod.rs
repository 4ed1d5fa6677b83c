//! Phase 5, cut-over: a moved domain's clients switched to its own server, and back
//! (rollback) the same way. Pure: `switch` lays out the steps of one switch in the
//! order that is the safety (DESIGN.md; reading the position before every writer is
//! fenced is Vitess#16563), `abort` the steps that cancel one before its point of no
//! return, and `gate` weighs whether a switch may start.
//!
//! A switch from side A to side B (the source and the domain's server, either way):
//!
//! 1. PgBouncer `PAUSE` of each of the domain's entries (clients queue), bounded;
//! 2. fence A (`fence`): writers wait out, then a trigger refuses writes there;
//! 3. wait until B has applied every change A made before the fence;
//! 4. every sequence of the domain set on B from A (`sequences`);
//! 5. the stream A→B dropped, the stream B→A made (`copy_data = false`) and running,
//!    B's own fence (from an earlier switch) removed;
//!
//! — the point of no return: the command records it in the plan before going on —
//!
//! 6. each entry pointed at B in PgBouncer's file, `RELOAD`, `RESUME`;
//! 7. validation: a canary write on B, B's sequences past every used value.
//!
//! Nothing of a switch is ever undone step by step: before the point of no return
//! `abort` puts A back as it was; after it, the switch the other way reverses it
//! with no write lost (the stream B→A has carried every write made on B).

pub mod crossings;
pub mod fence;
pub mod gate;
pub mod replica;
pub mod retire;
pub mod sequences;

use std::path::PathBuf;
use std::time::Duration;

use crate::catalog::Catalog;
use crate::engine::{
    undo_steps, Action, ConsoleAction, EntryTarget, FileAction, HookAction, OnTimeout,
    PgbouncerEntry, RowCheck, Step, Target, WaitAction,
};
use crate::phases::move_domain::replication::{side, Link, Stream};
use crate::plan::Side;
use crate::sql::display_ident;

pub use crate::plan::phase_names::{CUTOVER, ROLLBACK};

/// The phase name of a switch to `to`, which is also its command's name.
pub fn phase_name(to: Side) -> &'static str {
    match to {
        Side::Server => CUTOVER,
        Side::Source => ROLLBACK,
    }
}

/// The step target of a side.
pub fn target(side: Side, domain: &str) -> Target {
    match side {
        Side::Source => Target::Source,
        Side::Server => Target::Domain(domain.to_string()),
    }
}

/// A PgBouncer database entry the domain's clients connect through, and where it
/// points on each side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub on_source: EntryTarget,
    pub on_server: EntryTarget,
}

impl Entry {
    fn on(&self, side: Side) -> &EntryTarget {
        match side {
            Side::Source => &self.on_source,
            Side::Server => &self.on_server,
        }
    }
}

/// Where clients are switched: a PgBouncer console, the configuration file it reads
/// its `[databases]` from, and the domain's entries there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switchboard {
    pub console: Target,
    pub file: PathBuf,
    pub entries: Vec<Entry>,
}

/// The connection settings each of the domain's services reads, written as files
/// (`<service>.toml` and `<service>.env`, no password) for the side its clients use,
/// and a hook that makes the services read them again: the switch without PgBouncer.
/// Nothing holds the clients meanwhile: between the fence and the hook a write to
/// the old side fails with the fence's error, and the service retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionFiles {
    pub dir: PathBuf,
    /// Each service and the role it logs in as.
    pub services: Vec<(String, String)>,
    pub on_source: EntryTarget,
    pub on_server: EntryTarget,
    pub hook: Option<String>,
}

impl ConnectionFiles {
    fn on(&self, side: Side) -> &EntryTarget {
        match side {
            Side::Source => &self.on_source,
            Side::Server => &self.on_server,
        }
    }
}

/// How the domain's clients are switched.
#[derive(Debug, Clone, Copy)]
pub enum Clients<'a> {
    /// PgBouncer's entries paused, repointed and resumed.
    Pgbouncer(&'a Switchboard),
    /// Connection files written and a hook run.
    Files(&'a ConnectionFiles),
}

/// A service's connection settings as TOML, for the side it uses.
pub fn render_toml(
    service: &str,
    user: &str,
    at: &EntryTarget,
    domain: &str,
    side: Side,
) -> String {
    let string = |v: &str| toml::Value::String(v.to_string()).to_string();
    format!(
        "# How service {service} reaches the {domain} domain: on {}. Written by carve; no password\n# here (PGPASSFILE or ~/.pgpass has it).\nhost = {}\nport = {}\ndbname = {}\nuser = {}\n",
        side.word(),
        string(&at.host),
        at.port,
        string(&at.dbname),
        string(user)
    )
}

/// The same as libpq environment variables, for `. FILE` or an env file.
pub fn render_env(service: &str, user: &str, at: &EntryTarget, domain: &str, side: Side) -> String {
    use crate::sql::shell_word;
    format!(
        "# How service {service} reaches the {domain} domain: on {}. Written by carve; no password.\nPGHOST={}\nPGPORT={}\nPGDATABASE={}\nPGUSER={}\n",
        side.word(),
        shell_word(&at.host),
        at.port,
        shell_word(&at.dbname),
        shell_word(user)
    )
}

/// The file and hook steps that point the services at `to`.
fn file_steps(files: &ConnectionFiles, domain: &str, to: Side) -> Vec<Step> {
    let from = to.other();
    let mut steps = Vec::new();
    for (service, user) in &files.services {
        for (extension, render) in [
            (
                "toml",
                render_toml as fn(&str, &str, &EntryTarget, &str, Side) -> String,
            ),
            ("env", render_env),
        ] {
            let path = files.dir.join(format!("{service}.{extension}"));
            steps.push(Step {
                id: format!("write {}", path.display()),
                description: format!(
                    "{service}'s connection settings ({extension}) point at {}",
                    to.word()
                ),
                target: Target::Local,
                action: Action::File(FileAction {
                    path,
                    content: Some(render(service, user, files.on(to), domain, to)),
                    previous: Some(render(service, user, files.on(from), domain, from)),
                }),
            });
        }
    }
    if let Some(command) = &files.hook {
        let env = |side: Side| {
            vec![
                ("CARVE_DOMAIN".to_string(), domain.to_string()),
                (
                    "CARVE_LIVE".to_string(),
                    match side {
                        Side::Source => "source".to_string(),
                        Side::Server => "server".to_string(),
                    },
                ),
                (
                    "CARVE_CONNECTION_DIR".to_string(),
                    files.dir.display().to_string(),
                ),
            ]
        };
        steps.push(Step {
            id: format!("run the hook for {}", to.word()),
            description: format!(
                "the services read their connection settings again (the hook: {command})"
            ),
            target: Target::Local,
            action: Action::Hook(HookAction {
                command: command.clone(),
                env: env(to),
                undo_env: env(from),
            }),
        });
    }
    steps
}

/// How each side reaches the other, for the streams between them.
#[derive(Debug, Clone, Copy)]
pub struct Links<'a> {
    /// From the domain's server to the source (the move's).
    pub to_source: &'a Link,
    /// From the source to the domain's server.
    pub to_server: &'a Link,
}

impl<'a> Links<'a> {
    /// The stream into `side`.
    fn stream_into(&self, domain: &'a str, side: Side) -> Stream<'a> {
        match side {
            Side::Server => Stream::forward(domain, self.to_source),
            Side::Source => Stream::back(domain, self.to_server),
        }
    }
}

/// `carve cutover`'s defaults (its `--help` shows the same), which `carve plan` plans
/// with.
pub const DEFAULT_FREEZE_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_CATCH_UP_TIMEOUT: Duration = Duration::from_secs(10);

/// What a switch needs besides the catalog.
#[derive(Debug, Clone, Copy)]
pub struct SwitchOptions<'a> {
    pub to: Side,
    pub clients: Clients<'a>,
    pub links: Links<'a>,
    /// How long PgBouncer's PAUSE may wait for transactions under way.
    pub freeze_timeout: Duration,
    /// How long the other side may take to apply the writes made before the fence.
    pub catch_up_timeout: Duration,
    /// The steps that drop the foreign keys and triggers crossing the domain's
    /// boundary on the source (`crossings::drops`, as the cut-over planned them):
    /// a cut-over runs them, a rollback their undo.
    pub crossings: &'a [Step],
    /// What the switch does to the rows of a split's parts in the domain whose
    /// table is in another (`move_domain::split_across::switch_steps`), run past
    /// the point of no return while the clients still wait.
    pub parts: &'a [Step],
}

/// A switch's steps, and where in them its two moments are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switch {
    pub steps: Vec<Step>,
    /// The first step past the point of no return (clients pointed at the new side).
    pub point_of_no_return: usize,
    /// The first step after the last RESUME: clients write again from there on.
    pub resumed: usize,
}

fn console_step(
    board: &Switchboard,
    id: String,
    description: String,
    action: ConsoleAction,
) -> Step {
    Step {
        id,
        description,
        target: board.console.clone(),
        action: Action::Console(action),
    }
}

fn paused(entry: &str, value: &str) -> RowCheck {
    RowCheck::pgbouncer_database(entry, "paused", value)
}

/// PgBouncer's `SHOW DATABASES` row of `entry` pointing at `to`.
fn points_at(entry: &str, to: &EntryTarget) -> RowCheck {
    RowCheck::pgbouncer_database(entry, "host", &to.host)
        .and("port", &to.port.to_string())
        .and("database", &to.dbname)
}

fn pause(board: &Switchboard, entry: &str, timeout: Duration) -> Step {
    console_step(
        board,
        format!("pause {entry}"),
        format!(
            "PgBouncer holds new transactions of {entry} in a queue once those under way have ended (at most {})",
            humantime::format_duration(timeout)
        ),
        ConsoleAction {
            command: format!("PAUSE {entry}"),
            check: paused(entry, "1"),
            undo: format!("RESUME {entry}"),
            undo_check: paused(entry, "0"),
            timeout: Some(timeout),
        },
    )
}

fn resume(board: &Switchboard, entry: &str) -> Step {
    console_step(
        board,
        format!("resume {entry}"),
        format!("the queued transactions of {entry} go on"),
        ConsoleAction {
            command: format!("RESUME {entry}"),
            check: paused(entry, "0"),
            undo: format!("PAUSE {entry}"),
            undo_check: paused(entry, "1"),
            timeout: None,
        },
    )
}

/// Every step of switching `domain`'s clients to `options.to` (see the module doc).
pub fn switch(catalog: &Catalog, domain: &str, options: &SwitchOptions) -> Switch {
    let (to, from) = (options.to, options.to.other());
    let (to_target, from_target) = (target(to, domain), target(from, domain));
    let incoming = options.links.stream_into(domain, to);
    let outgoing = options.links.stream_into(domain, from);
    let mut steps = vec![incoming.confirm_at_once()];
    if let Clients::Pgbouncer(board) = options.clients {
        steps.extend(
            board
                .entries
                .iter()
                .map(|e| pause(board, &e.name, options.freeze_timeout)),
        );
    }
    steps.push(fence::fence(catalog, domain, &from_target, &to_target));
    if to == Side::Server {
        // Right behind the fence: a trigger writing into the fenced tables would fail.
        steps.extend(options.crossings.iter().cloned());
    }
    steps.push(fence::caught_up(
        domain,
        &from_target,
        &incoming.names.slot,
        options.catch_up_timeout,
    ));
    steps.extend(
        sequences::of(catalog, domain)
            .into_iter()
            .map(|seq| sequences::sync(seq, &from_target, &to_target)),
    );
    // PostgreSQL 15 has no `origin = none`: a stream each way at once would send
    // every change back where it came from.
    steps.extend(incoming.unsubscribe());
    steps.extend(outgoing.steps(false));
    steps.push(stream_running(&outgoing));
    steps.push(fence::unfence(catalog, domain, &to_target));
    if to == Side::Source {
        // Back on the source once it takes writes again, before its clients return.
        steps.extend(undo_steps(options.crossings));
    }
    let point_of_no_return = steps.len();
    steps.extend(options.parts.iter().cloned());
    match options.clients {
        Clients::Pgbouncer(board) => steps.extend(repoint(board, &to_target, to)),
        Clients::Files(files) => steps.extend(file_steps(files, domain, to)),
    }
    let resumed = steps.len();
    steps.push(fence::canary(catalog, domain, &to_target));
    steps.push(sequences::validate(catalog, domain, &to_target));
    Switch {
        steps,
        point_of_no_return,
        resumed,
    }
}

/// Each PgBouncer entry pointed at `to` in the file, RELOAD, RESUME.
fn repoint(board: &Switchboard, to_target: &Target, to: Side) -> Vec<Step> {
    let from = to.other();
    let mut steps = Vec::new();
    for e in &board.entries {
        steps.push(Step {
            id: format!("point {} at {}", e.name, to_target),
            description: format!(
                "entry {} of {} points at {} ({})",
                e.name,
                board.file.display(),
                side(to_target),
                e.on(to).describe()
            ),
            target: board.console.clone(),
            action: Action::PgbouncerEntry(PgbouncerEntry {
                file: board.file.clone(),
                entry: e.name.clone(),
                to: e.on(to).clone(),
                from: e.on(from).clone(),
            }),
        });
    }
    for e in &board.entries {
        steps.push(console_step(
            board,
            format!("reload {} on {}", e.name, to_target),
            format!(
                "PgBouncer reads its file again: new server connections of {} go to {}",
                e.name,
                side(to_target)
            ),
            ConsoleAction {
                command: "RELOAD".into(),
                check: points_at(&e.name, e.on(to)),
                undo: "RELOAD".into(),
                undo_check: points_at(&e.name, e.on(from)),
                timeout: None,
            },
        ));
    }
    steps.extend(board.entries.iter().map(|e| resume(board, &e.name)));
    steps
}

/// A wait until the stream's apply worker runs on its subscriber.
fn stream_running(stream: &Stream) -> Step {
    Step {
        id: format!("check the subscription {}", stream.names.subscription),
        description: format!(
            "the subscription on {} is enabled and its apply worker runs",
            side(&stream.subscriber)
        ),
        target: stream.subscriber.clone(),
        action: Action::Wait(WaitAction {
            until: format!(
                "EXISTS (SELECT 1 FROM pg_catalog.pg_subscription s JOIN pg_catalog.pg_stat_subscription w ON w.subid = s.oid WHERE s.oid = {} AND s.subenabled AND w.relid IS NULL AND w.pid IS NOT NULL)",
                stream.subscription_id()
            ),
            progress: None,
            unit: String::new(),
            every: Duration::from_millis(50),
            timeout: Duration::from_secs(30),
            on_timeout: OnTimeout::Fail,
            once: false,
        }),
    }
}

/// The steps that cancel a switch to `options.to` stopped before its point of no
/// return, leaving the side clients were on as it was: the side switched to fenced
/// again when it was (`to_was_fenced`), the new stream dropped, the old one made
/// again without copying (the fenced side took no write meanwhile), the fence lifted,
/// the entries resumed (they still point where they did).
pub fn abort(
    catalog: &Catalog,
    domain: &str,
    options: &SwitchOptions,
    to_was_fenced: bool,
) -> Vec<Step> {
    let (to, from) = (options.to, options.to.other());
    let (to_target, from_target) = (target(to, domain), target(from, domain));
    let incoming = options.links.stream_into(domain, to);
    let outgoing = options.links.stream_into(domain, from);
    let mut steps = Vec::new();
    if to_was_fenced {
        steps.push(fence::fence(catalog, domain, &to_target, &from_target));
    }
    steps.extend(outgoing.unsubscribe());
    steps.push(incoming.create_slot());
    steps.push(incoming.subscribe(false));
    steps.push(stream_running(&incoming));
    match to {
        // The source keeps its clients: what ties it to other domains comes back.
        Side::Server => steps.extend(undo_steps(options.crossings)),
        Side::Source => steps.extend(options.crossings.iter().cloned()),
    }
    steps.push(fence::unfence(catalog, domain, &from_target));
    if let Clients::Pgbouncer(board) = options.clients {
        steps.extend(board.entries.iter().map(|e| resume(board, &e.name)));
    }
    for step in &mut steps {
        step.id = format!("abort: {}", step.id);
    }
    steps
}

/// A PgBouncer entry name carve can send in an admin command (the console splits
/// its commands on spaces and has no quoting).
pub fn entry_name_problem(name: &str) -> Option<String> {
    let fine = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    (!fine).then(|| {
        format!(
            "PgBouncer entry {name:?}: carve sends entry names in console commands (PAUSE, RESUME), which take only letters, digits, '_', '-' and '.'; rename the entry, or set `pgbouncer_entry` of the service in the plan"
        )
    })
}

/// One line for people: what a switch does.
pub fn summary(domain: &str, to: Side, switch: &Switch) -> String {
    format!(
        "{} the clients of {} to {}: {} step(s), {} before the point of no return",
        match to {
            Side::Server => "cut over",
            Side::Source => "roll back",
        },
        display_ident(domain),
        to.word(),
        switch.steps.len(),
        switch.point_of_no_return
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{QualName, Sequence};

    fn catalog() -> Catalog {
        use crate::catalog::testing::{catalog, table};
        let mut catalog = catalog(vec![
            table("sales", "orders"),
            table("sales", "Order \"Items\""),
            table("public", "users"),
        ]);
        catalog.sequences = vec![Sequence {
            name: QualName::new("sales", "order_no"),
            data_type: "bigint".into(),
            start: 1,
            increment: 1,
            min: 1,
            max: i64::MAX,
            cycle: false,
            owner: "app".into(),
            owned_by: None,
            identity: false,
            comment: None,
            grants: Vec::new(),
        }];
        catalog
    }

    fn link(host: &str) -> Link {
        Link {
            conninfo: format!("host={host} port=5432 dbname=shop"),
            password_file: "/tmp/carve.passwords".into(),
            host: host.into(),
            port: 5432,
            database: "shop".into(),
        }
    }

    fn board() -> Switchboard {
        let at = |host: &str| EntryTarget {
            host: host.into(),
            port: 5432,
            dbname: "shop".into(),
        };
        Switchboard {
            console: Target::Console("pgbouncer".into()),
            file: "/etc/pgbouncer/pgbouncer.ini".into(),
            entries: vec![Entry {
                name: "orders".into(),
                on_source: at("db1"),
                on_server: at("db2"),
            }],
        }
    }

    fn options<'a>(
        to: Side,
        board: &'a Switchboard,
        a: &'a Link,
        b: &'a Link,
    ) -> SwitchOptions<'a> {
        SwitchOptions {
            to,
            clients: Clients::Pgbouncer(board),
            links: Links {
                to_source: a,
                to_server: b,
            },
            freeze_timeout: Duration::from_secs(5),
            catch_up_timeout: Duration::from_secs(10),
            crossings: &[],
            parts: &[],
        }
    }

    fn ids(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .map(|s| format!("{} @ {}", s.id, s.target))
            .collect()
    }

    #[test]
    fn a_cut_over_fences_before_it_reads_the_position_and_streams_back_before_clients_move() {
        let (board, a, b) = (board(), link("db1"), link("db2"));
        let switch = switch(&catalog(), "sales", &options(Side::Server, &board, &a, &b));
        let ids = ids(&switch.steps);
        let position = |prefix: &str| {
            ids.iter()
                .position(|id| id.starts_with(prefix))
                .unwrap_or_else(|| panic!("no step {prefix}: {ids:#?}"))
        };
        let order = [
            "flush each applied transaction of carve_sales_",
            "pause orders @ console:pgbouncer",
            "fence sales on source @ source",
            "wait for every write to sales before the fence @ source",
            "sync sequence sales.order_no on domain:sales @ domain:sales",
            "drop subscription carve_sales_",
            "create replication role carve_sales_",
            "create publication carve_sales_",
            "create subscription carve_sales_",
            "check the subscription carve_sales_",
            "unfence sales on domain:sales @ domain:sales",
            "point orders at domain:sales",
            "reload orders on domain:sales",
            "resume orders",
            "canary write to sales on domain:sales",
            "check the sequences of sales",
        ];
        let positions: Vec<usize> = order.iter().map(|p| position(p)).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{ids:#?}");
        assert_eq!(switch.point_of_no_return, position("point orders"));
        assert_eq!(switch.resumed, position("canary"));
        // The stream back: its subscription on the source, its publication on the
        // domain's server, no initial copy.
        let sub = switch.steps[position("create subscription")]
            .sql_action()
            .unwrap();
        assert!(sub.sql.contains("copy_data = false"), "{}", sub.sql);
        assert_eq!(
            switch.steps[position("create subscription")].target,
            Target::Source
        );
        assert!(ids[position("create publication")].ends_with("@ domain:sales"));
        // The fence covers every table of the domain, quoted, and no other.
        let fence = switch.steps[2].sql_action().unwrap();
        assert!(fence.strong_lock);
        assert!(
            fence.sql.starts_with("SET LOCAL synchronous_commit = on;\nLOCK TABLE \"sales\".\"Order \"\"Items\"\"\", \"sales\".\"orders\" IN EXCLUSIVE MODE;"),
            "{}",
            fence.sql
        );
        assert!(!fence.sql.contains("users"), "{}", fence.sql);
        // The sequence is read on the side clients leave.
        let sync = switch.steps[4].sql_action().unwrap();
        assert_eq!(sync.read.as_ref().unwrap().on, Target::Source);
        // PAUSE is bounded; the file edit points the entry at the new server.
        let Action::Console(pause) = &switch.steps[1].action else {
            panic!()
        };
        assert_eq!(pause.timeout, Some(Duration::from_secs(5)));
        let Action::PgbouncerEntry(edit) = &switch.steps[switch.point_of_no_return].action else {
            panic!()
        };
        assert_eq!(
            (edit.to.host.as_str(), edit.from.host.as_str()),
            ("db2", "db1")
        );
    }

    #[test]
    fn a_rollback_is_the_same_switch_the_other_way() {
        let (board, a, b) = (board(), link("db1"), link("db2"));
        let back = switch(&catalog(), "sales", &options(Side::Source, &board, &a, &b));
        let ids = ids(&back.steps);
        assert!(
            ids[2].starts_with("fence sales on domain:sales"),
            "{ids:#?}"
        );
        assert!(ids
            .iter()
            .any(|i| i.starts_with("unfence sales on source @ source")));
        let sub = back
            .steps
            .iter()
            .find(|s| s.id.starts_with("create subscription"))
            .unwrap();
        assert_eq!(sub.target, Target::Domain("sales".into()));
        let Action::PgbouncerEntry(edit) = &back.steps[back.point_of_no_return].action else {
            panic!()
        };
        assert_eq!(edit.to.host, "db1");
    }

    #[test]
    fn an_abort_restores_the_old_stream_and_lifts_the_fence_last_but_resume() {
        let (board, a, b) = (board(), link("db1"), link("db2"));
        let steps = abort(
            &catalog(),
            "sales",
            &options(Side::Server, &board, &a, &b),
            false,
        );
        let ids = ids(&steps);
        assert!(
            ids[0].starts_with("abort: drop subscription carve_sales_")
                && ids[0].ends_with("_back @ source"),
            "{ids:#?}"
        );
        // The stream back: dropped, its slot let go and dropped.
        assert!(
            ids[1].starts_with("abort: wait for the slot") && ids[1].ends_with("@ domain:sales")
        );
        assert!(
            ids[2].starts_with("abort: drop replication slot")
                && ids[2].ends_with("@ domain:sales")
        );
        // The stream from the source: its slot there, then the subscription.
        assert!(
            ids[3].starts_with("abort: create replication slot") && ids[3].ends_with("@ source")
        );
        assert!(
            ids[4].starts_with("abort: create subscription") && ids[4].ends_with("@ domain:sales"),
            "{ids:#?}"
        );
        assert!(
            ids[6].starts_with("abort: unfence sales on source"),
            "{ids:#?}"
        );
        assert!(ids[7].starts_with("abort: resume orders"), "{ids:#?}");
        let refenced = abort(
            &catalog(),
            "sales",
            &options(Side::Source, &board, &a, &b),
            true,
        );
        assert!(
            refenced[0].id.starts_with("abort: fence sales on source"),
            "{:#?}",
            ids
        );
    }

    #[test]
    fn entry_names_must_survive_the_console() {
        assert_eq!(entry_name_problem("orders-v2.main"), None);
        for bad in ["", "my app", "x;RESUME", "ü"] {
            assert!(entry_name_problem(bad).is_some(), "{bad}");
        }
    }
}
