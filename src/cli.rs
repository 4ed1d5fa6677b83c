//! The command line: clap definitions, turned into one validated [`Settings`] before
//! any work starts (ripgrep's way), then dispatched to `commands`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{commands, exit, ui};

const ABOUT: &str = "Take a monolithic PostgreSQL database apart into data domains, safely.";

const LONG_ABOUT: &str = "\
Take a monolithic PostgreSQL database apart into data domains, safely.

carve reads a database's catalog, keeps what it learns and decides in a plan file
(--plan, TOML, no passwords), and works through checkpointed phases. Try it on a
throw-away example first:

  carve demo

Connections (--source CONN) are libpq connection strings, as a URL
(postgresql://user@host:5432/db?sslmode=require) or as key=value pairs
(\"host=db1 port=5432 dbname=shop user=carve\"). What a string leaves out comes from
PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD, PGPASSFILE (~/.pgpass), PGSSLMODE,
PGSSLROOTCERT, PGAPPNAME and PGCONNECT_TIMEOUT, as with psql. Passwords are never
written to the plan, the logs or the output.

With --format json, every failure prints one JSON document on stdout with an
\"error\" object (code, exit_status, message, objects), for runbooks.";

#[derive(Debug, Parser)]
#[command(
    name = "carve",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = exit::HELP,
    propagate_version = true
)]
pub struct Cli {
    /// The plan file carve reads and writes.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        default_value = "carve.plan.toml",
        env = "CARVE_PLAN"
    )]
    pub plan: PathBuf,

    /// Output for people, or JSON for scripts (every JSON document has a format_version).
    #[arg(long, global = true, value_enum, default_value_t = Format::Human)]
    pub format: Format,

    /// More detail on stderr (-v: debug, -vv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Answer yes to every confirmation (for scripts; without a terminal carve never prompts).
    #[arg(long, global = true)]
    pub yes: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Human,
    Json,
    /// A psql script: `carve plan` only (each phase's --dry-run prints one too).
    Psql,
}

impl From<Format> for ui::Format {
    fn from(format: Format) -> Self {
        match format {
            Format::Human => ui::Format::Human,
            Format::Json => ui::Format::Json,
            Format::Psql => ui::Format::Human,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read a database's catalog and summarize it (JSON: the full model).
    ///
    /// Reads tables, partitions, columns, keys, indexes, views and their dependencies,
    /// triggers, functions, sequences, grants and roles in a fixed number of queries,
    /// in one read-only snapshot. When the plan file exists and was made from this
    /// database, also reports whether the catalog has changed since (exit code 5).
    Inspect(InspectArgs),
    /// Propose data domains and table ownership, and write them into the plan
    ///
    /// Reads the catalog and, given --workload, who ran what: SQL files, server logs,
    /// pg_stat_statements. Works out who reads and writes which table and which
    /// columns, classifies every table's ownership (single, common, joint, read-only,
    /// unused) with ranked resolutions, clusters the tables into domains (Leiden over
    /// foreign keys, views, triggers, functions, statements and transactions touching
    /// tables together, shared writers, and names: keys that column names imply,
    /// shared name stems, comments naming another table; common tables set aside
    /// first), cuts each
    /// cluster along its writers (tables different services write stay apart unless
    /// foreign keys, triggers and transactions clearly hold them together), and
    /// reports what each boundary costs and buys. Statements that do not parse and
    /// names that match no table are listed, never dropped. Decisions already in the
    /// plan are kept; a re-run lists what changed since the last proposal.
    ///
    /// A cross-cutting writer (a nightly sync or maintenance job writing the tables of
    /// three or more other services, at least as many of theirs as of its own) is set
    /// aside while clustering and choosing owners, and reported; its writes stay
    /// crossings for restrict. The plan overrides the detection per service:
    ///
    ///   [[services]]
    ///   name = "nightly_sync"
    ///   cross_cutting = false          # an ordinary writer (true: always set aside)
    ///
    /// On a terminal (without --yes) you then review the proposal: how many domains
    /// (when the resolutions tried give different numbers; see --resolution), then
    /// accept or rename each domain, move tables, choose a resolution for each joint
    /// or common table.
    /// Each choice is written into the plan as a pin or a decision. Pins can also be
    /// written by hand; every run applies them:
    ///
    ///   [[pins]]
    ///   tables = ["public.orders", "public.order_items"]   # stay in one domain
    ///   domain = "sales"                                   # optional: its name
    ///
    /// Exits 0 with the proposal written (workload problems listed in the report and
    /// on stderr), or 1 with the plan untouched: a --workload path missing, a source
    /// that gives no statement, no statement that parses, pg_stat_statements not
    /// enabled, a stderr log without %u or %a, a report that cannot be written, an
    /// unreachable server.
    #[command(verbatim_doc_comment)]
    Discover(DiscoverArgs),
    /// Move each domain's tables into a schema of its own, inside the monolith
    ///
    /// For each domain of the plan: CREATE SCHEMA, then per table, in one transaction,
    /// ALTER TABLE … SET SCHEMA (owned sequences, indexes, constraints and triggers
    /// follow) and a compatibility view of the same name in the old place: WITH
    /// (security_invoker = true), owned and granted as the table was, automatically
    /// updatable, so services keep running unchanged (SELECT, INSERT with defaults and
    /// RETURNING, UPDATE, DELETE, INSERT … ON CONFLICT (columns)). Views over one
    /// domain move the same way; free-standing sequences go to the domain that uses
    /// them; functions and materialized views stay unless the plan says move.
    ///
    /// Objects that cross domains (foreign keys, views, triggers, functions) keep
    /// working and are listed; each needs a decision in the plan (keep-until-move,
    /// replace-before-move, drop-at-move), or --yes records the defaults shown.
    ///
    /// Domain names become schema names: pg_* and information_schema are refused, as
    /// are two domains of one name. A schema of the domain's name that already
    /// exists is used only when the domain's tables' owner owns it and it holds
    /// nothing else; otherwise its owner and objects are named, and only this
    /// decision lets assign use it as it is:
    ///
    ///   [[decisions]]
    ///   subject = "schema sales"
    ///   choice = "use-existing"
    ///   reason = "…"
    ///
    /// Needs a superuser connection (checked before anything is recorded).
    ///
    /// Safe to interrupt: each step checks whether it is already done, the plan's
    /// journal is saved after every step, and running the same command again
    /// finishes the work. `carve undo assign` reverses it; `carve status` shows it.
    /// Exits 0 (done), 1 (a step failed, recorded), 3 (--dry-run: work pending),
    /// 4 (lock held), 5 (stale plan), 6 (decisions missing).
    #[command(verbatim_doc_comment)]
    Assign(ApplyArgs),
    /// Give each service a login role that reaches its own domain only, proven first
    ///
    /// Reads the workload again (the sources discover recorded, or --workload) and
    /// works out what each service does: per table SELECT, INSERT, UPDATE, DELETE,
    /// USAGE on the sequences behind its inserts, and what its functions and triggers
    /// touch. Then, for each domain, a group role (NOLOGIN, `domain_<name>` unless the
    /// plan's [[domains]] role says otherwise) is granted what the domain's services
    /// do in it, on the domain's tables and on their compatibility views; each service
    /// gets a login role in that group: the role it already uses alone, or a new one
    /// named after it ([[services]] login_role, domain and connection_limit in the plan
    /// choose otherwise). New roles get a generated password written only to
    /// --password-file; without it they have none until you set one.
    ///
    /// Taken away: PUBLIC's privileges on the domains' tables, views, sequences and
    /// schemas, CREATE on schema public, and a kept role's privileges and memberships
    /// outside its domain. Every such privilege is recorded, so undo gives it back.
    ///
    /// A statement that reaches another domain's table needs a decision in the plan,
    /// one per service, table and kind of access:
    ///
    ///   [[decisions]]
    ///   subject = "read public.book_catalog by ReadingList"
    ///   choice = "api"            # or cache, replicate, shared-domain, temporary-grant
    ///   [[decisions]]
    ///   subject = "write public.audit by ReadingList"
    ///   choice = "delegate:audit-service"    # or temporary-grant:audit-service
    ///   reason = "…"                         # required for a temporary grant
    ///
    /// api, cache and delegate take the access away (those statements must stop);
    /// replicate (a copy of the columns read on the reader's server once its domain
    /// moves: see `carve move`; kept on the source once the owner's domain retires:
    /// see `carve retire`; `rows = "id % 2 = 0"` copies only those rows),
    /// shared-domain and temporary grants keep it, granted to that service's role
    /// alone. A table whose ownership the plan delegates (`subject = "ownership of
    /// T"`, `choice = "delegate:<owner>"`, as discover proposes it) is written by
    /// its owner's own role only; another service's direct write is a crossing to
    /// decide even inside the same domain. While one is missing, restrict lists the
    /// undecided statements and
    /// exits 6.
    ///
    /// Then the proof: in a transaction that is always rolled back, every step runs
    /// and every statement of every service is prepared and explained as its role
    /// (SET ROLE), with what only runs later (triggers, function bodies, sequences)
    /// checked by has_*_privilege. restrict applies only when nothing fails that the
    /// plan does not ask for (else exit 6, each statement and error listed).
    ///
    /// --dry-run runs the proof too (its transaction is rolled back, so nothing
    /// changes) and then prints the steps as a psql script. restrict needs a
    /// superuser connection: it creates roles, changes grants of roles it does not
    /// own, and proves with SET ROLE.
    ///
    /// Exits 0, 1, 3 (--dry-run: work pending), 4, 5, 6, as assign. `carve undo
    /// restrict` gives back exactly the roles and privileges there were.
    #[command(verbatim_doc_comment)]
    Restrict(RestrictArgs),
    /// Split jointly written tables into one table per writer, online
    ///
    /// For each of the plan's [[splits]] (after assign, before restrict):
    ///
    ///   [[splits]]
    ///   table = "public.book_catalog"      # as the plan's [[domains]] name it
    ///   part = "book_inventory"            # the new table
    ///   domain = "inventory"               # where it goes [default: the table's]
    ///   columns = ["copies_total", "copies_available", "shelf_location"]
    ///
    /// the columns listed leave the table for the part: same key, a foreign key to
    /// the table (key changes and deletes cascade), the constraints and indexes that
    /// name only those columns, the table's owner and grants. A trigger keeps the
    /// part in step with every write while the rows are copied in batches (each
    /// batch its own transaction, writes going on). Then, in one short transaction,
    /// the columns are dropped from the table and the old name (assign's
    /// compatibility view) becomes a view over the join of both parts, with the
    /// table's defaults, that takes INSERT, UPDATE (of the columns that changed only)
    /// and DELETE, RETURNING included, to the part that owns each column. A row
    /// written straight into the table gets its part's row too (with the moved
    /// columns' defaults), so every row has both and `SELECT … FOR UPDATE` through
    /// the view locks both.
    ///
    /// restrict, run after, treats each part as a table of its domain and a write
    /// through the old name as a write to the part that owns the columns it sets
    /// (the view's trigger writes as the table's owner; with `column_privileges`,
    /// each writer may update its own part's columns only).
    ///
    /// Refused, naming each reason, with nothing changed: no primary key, an identity
    /// column, a partitioned table, a constraint, index or foreign key (from the table
    /// or into it) that names columns of both parts, an index on an expression of
    /// moved columns, views over the moved columns, a column listed for two parts.
    ///
    /// Several [[splits]] of one table (a part per writer: a table three services
    /// write) are carried out together: one trigger keeps every part in step, each
    /// part is copied in turn, and one switch makes the old name a view over the
    /// table and all its parts.
    ///
    /// Each step is checkpointed: a run killed at any point is finished by the same
    /// command. `carve undo split` adds the columns back (last, so exactly in place
    /// when they were the table's last columns), fills them from the part, restores
    /// their constraints, indexes and grants and the view as assign made it, and drops
    /// the part. Exits 0, 1, 3 (--dry-run: work pending), 4, 5, 6 (refused).
    #[command(verbatim_doc_comment)]
    Split(ApplyArgs),
    /// Copy a domain to its own server and keep it in step, while services keep writing
    ///
    /// The domain's schema (made by assign) goes to the server --target names, on
    /// PostgreSQL's own logical replication. First a preflight, which refuses with
    /// every reason at once and changes nothing: PostgreSQL older than 15 on either
    /// side, wal_level not logical, too few replication slots, WAL senders or workers,
    /// max_slot_wal_keep_size = -1 (unless --accept-unlimited-slot-wal), a table
    /// without a usable replica identity (FULL only with a decision
    /// `subject = "replica identity S.T", choice = "accept-full"`, and never with a
    /// json, xml or geometric column, which has no equality), unlogged or
    /// foreign tables, large objects, materialized views, rows already in the
    /// target's tables, a column type the target lacks (create types and extensions
    /// there first), a long transaction on the source, assign not applied,
    /// cross-domain objects or accesses whose decision cannot hold on two servers
    /// (keep-until-move, temporary-grant, shared-domain; not a grant to a service
    /// already cut over to its own server), and a split's part whose table's
    /// domain is not cut over yet (the table's domain moves first, leaving its
    /// parts on the source).
    ///
    /// Then, on the domain's server: the roles that own and use its tables (same
    /// password: the source's SCRAM verifier is copied when the step runs, never
    /// stored), the schema, the functions it needs, sequences, tables with keys and
    /// replica identity, views, triggers, owners and grants, a split's view over
    /// both parts when the domain holds both (with its INSTEAD OF trigger), or over
    /// its table alone when the parts stay in other domains (then a trigger on the
    /// source, ENABLE ALWAYS, keeps those parts whole as the table's rows come
    /// back after cut-over), or, for a part whose table is elsewhere, over the part
    /// and the copy of the table's columns its services read (writing the part's
    /// columns only; a trigger on the copy makes the part's rows once the part's
    /// domain is cut over), and the services' search_path ("$user", public, then
    /// the domain's schema: their unchanged SQL finds the tables, and the split's
    /// view by the old name). On the source: a replication role (password generated into
    /// --password-file, nowhere else) and a publication FOR TABLES IN SCHEMA; on the
    /// target a subscription (copy_data, streaming) that copies the
    /// tables and then follows every change. Secondary indexes and foreign keys are
    /// built after the copy (foreign keys NOT VALID, then VALIDATE), then ANALYZE.
    ///
    /// What the domain's services read of other domains' tables by a `replicate`
    /// decision is copied there too: the columns their recorded statements name
    /// (and the key), under the names their SQL uses (the table and its
    /// compatibility view), read-only to them, kept current by a publication with a
    /// column list (and the decision's `rows = "…"` filter, which may name only the
    /// key's columns) and a subscription of its own from the source. It outlives
    /// the cut-over; `carve status` shows its lag; the move's undo removes it.
    ///
    /// The move ends *ready*: every table copied, the target within --max-lag bytes
    /// of the source. Services still use the monolith; cut-over switches them. With
    /// restrict applied, its proof then runs on the new server: every statement of
    /// the domain's services prepared and explained there as its role; one that
    /// fails and no decision asks for is listed (it would break at cut-over).
    /// Every step is checkpointed in the plan: a move killed at any point is finished
    /// by running the same command (once the domain is cut over, it has nothing
    /// left to do). `carve undo move --domain D` cancels it and leaves no slot,
    /// publication, subscription, role or object behind.
    ///
    /// Needs superuser connections to both servers. Exits 0 (ready), 1, 3
    /// (--dry-run: work pending), 4, 5, 6 (the preflight refused: each reason listed).
    #[command(verbatim_doc_comment)]
    Move(MoveArgs),
    /// Check that a moved domain's server holds exactly the source's rows
    ///
    /// Every table of the domain is cut into chunks of --chunk-rows rows by its
    /// primary key (composite keys too); each chunk's row count and the exact sum
    /// of its rows' 64-bit hashes (duplicate rows add up rather than cancel as with
    /// XOR) are computed by each server itself. Rows are
    /// hashed by value (each type's own hash function), or by their text where a
    /// type has none (json, geometric types), with the same DateStyle,
    /// IntervalStyle, TimeZone, extra_float_digits, bytea_output and lc_monetary on
    /// both. No row crosses the network unless it differs. A table without a
    /// primary key is compared whole, with a warning.
    ///
    /// Under live writes, a chunk that differs is compared again once the domain's
    /// server has applied everything the source had when it was read, up to
    /// --retries more times; a chunk that still differs is compared row by row and
    /// each differing key is listed: missing on the target, extra on the target, or
    /// different. A row that differs for a moment while it is written is read again
    /// by key and not reported; while writes are frozen the result is exact.
    ///
    /// Each chunk's result is kept in a file beside the plan; a killed verify run
    /// with --resume compares only what is left. A clean verify is recorded in the
    /// plan (cut-over reads it). Changes no database and takes no lock. After a
    /// cut-over the domain's server is the side of record and the source, which
    /// follows it through the stream back, is compared against it.
    ///
    /// Exits 0 (the same), 1, 7 (rows differ: each listed).
    #[command(verbatim_doc_comment)]
    Verify(VerifyArgs),
    /// Switch a moved domain's clients to its own server, with no write lost and a way back
    ///
    /// The gate comes first and changes nothing when it is not met (exit 6, every
    /// reason named): every table copied and ready, the apply worker running, lag
    /// under --max-lag, a clean `carve verify` younger than --verify-max-age, no
    /// statement of the domain's services failing on its server as their roles
    /// (restrict's proof; --accept-failing-statements), the indexes valid, room for
    /// the stream back on both servers, and PgBouncer's console and configuration
    /// file reachable (or, with --switch file, the connection directory writable).
    /// A domain holding a split's part whose table is in another domain cuts over
    /// only while that domain is cut over.
    ///
    /// Then, in this order (reading the position before every writer is fenced
    /// loses writes):
    ///   1. PgBouncer PAUSE of each of the domain's entries: clients queue rather than
    ///      fail. Bounded by --freeze-timeout; past it the PAUSE is abandoned (its
    ///      connection closed) and RESUME sent, never a RESUME racing a PAUSE.
    ///   2. The fence on the source: the domain's tables locked EXCLUSIVE for a
    ///      moment, then a trigger that refuses every write but the replication
    ///      stream's. A writer that bypasses PgBouncer gets an error, not a lost write.
    ///   3. The WAL position read inside the fence, and a wait (--catch-up-timeout)
    ///      until the domain's server has applied it.
    ///   4. Every sequence of the domain set on its server, never below a used value.
    ///   5. The stream turned around: the subscription from the source dropped, one
    ///      from the domain's server to the source made (no copy), and running.
    ///   6. The point of no return, recorded in the plan. A split's part whose table
    ///      is in another domain: its rows made on the domain's server from now on,
    ///      and for the table's rows that came during the switch.
    ///   7. Each entry pointed at the domain's server in PgBouncer's file, RELOAD,
    ///      RESUME. The write pause (PAUSE to RESUME) is measured and reported.
    ///   8. A canary write on the new side and its sequences checked.
    ///
    /// A failure or Ctrl-C before the point of no return cancels the switch at once:
    /// the clients stay on the source. After a crash, the same command finishes the
    /// switch; before the point of no return, --abort cancels it instead. After
    /// it, `carve rollback` goes back the same way, losing no write made on the
    /// domain's server.
    ///
    /// Exits 0, 1, 4 (lock held), 5 (stale plan), 6 (gate not met), 130.
    #[command(verbatim_doc_comment)]
    Cutover(SwitchArgs),
    /// Switch a cut-over domain's clients back to the source, the same way as cutover
    ///
    /// The domain's server is fenced, the source catches up through the stream back,
    /// the sequences go back, the stream from the source is made again (no copy),
    /// and PgBouncer's entries point at the source again. No write made on the
    /// domain's server is lost. The gate is cut-over's, without the verify. A domain
    /// holding a split's table rolls back only while none of its parts' domains is
    /// cut over (its writes on the source would write the parts there); a part's
    /// rows are made on the source again.
    Rollback(SwitchArgs),
    /// Take down a cut-over domain's way back and put its old schema aside
    ///
    /// Only after the grace period (--after) since the cut-over, with confirmation
    /// (or --yes): the stream back to the source is removed (after it, `carve
    /// rollback` is no longer possible); views and foreign keys on the source that
    /// still read the old tables from outside their schema are dropped (they would
    /// read rows nobody updates any more); and the old schema is renamed
    /// `<schema>__retired_<time>`, keeping its fence. Nothing is dropped for good.
    ///
    /// A table another domain's service reads by a `replicate` decision is kept under
    /// its name instead (for a reader on the source, and for the copy on a reader's
    /// own server, which is fed from it): a read-only copy of the columns the
    /// readers' recorded statements name (and the key), kept current by the stream
    /// back, narrowed to those columns and the decisions' row filter (same slot: no
    /// change missed; rows outside the filter are deleted). Its compatibility view
    /// shows only those columns, and its readers may read only those. `carve status`
    /// shows that stream and its lag.
    ///
    /// With restrict applied, retire is proven first: in a transaction rolled back,
    /// its steps on the source run, then every statement of the services that stay
    /// on the source is prepared and explained as its role. One that would fail and
    /// no decision asks for (a column not kept, a view or table that goes) refuses
    /// the retire (exit 6), each listed, nothing changed. A split's view over a
    /// table and parts in other domains becomes a read-only join of what is kept of
    /// this domain's with every column of the others'; so a domain holding a split's
    /// table retires only once its parts' domains are cut over (exit 6 before,
    /// nothing changed).
    ///
    /// `--drop`, later, drops the renamed schema with everything in it, refused
    /// while anything outside it depends on it. That one cannot be undone.
    Retire(RetireArgs),
    /// Reverse a phase: its recorded steps' undos, last first, checkpointed the same way
    ///
    /// Only what the phase did is reversed, exactly as it was planned (the steps are
    /// kept in the plan). Afterwards the catalog is as before the phase, and carve
    /// says so if something else changed it meanwhile. A later phase still in place
    /// is undone first (move before restrict before split before assign).
    ///
    /// `carve undo move --domain D` cancels a move before cut-over, on both servers:
    /// the subscription (and with it the slot on the source), the publication, the
    /// replication role, and on the domain's server every object and role carve made
    /// there (a role that was there before is left alone).
    Undo(UndoArgs),
    /// Show what each phase has done: per step done, pending, failed (with the error) or undone
    ///
    /// Each phase (or, for a phase run per domain, each domain's) is shown with its
    /// state: planned, running (also after a killed run: the same command goes on),
    /// applied, failed, undoing or undone, from the plan file.
    ///
    /// For a move in place, also where its replication stands, read from both
    /// servers: per table copying, catching up or ready (with bytes copied), the
    /// subscription's worker, apply errors and last contact with the source, and the
    /// slot's lag and the WAL it keeps on the source. A slot of carve's on the source
    /// that no move in place owns is reported: it keeps WAL until it is dropped. A
    /// server that cannot be reached is named, and the rest still shown. For a
    /// cut-over domain: where its clients are, the last write pause, a switch under
    /// way (with the command that finishes or cancels it), and the stream back (its
    /// slot on the domain's server, its subscription on the source).
    Status(StatusArgs),
    /// Start throw-away PostgreSQL servers, load an example monolith, run carve on it.
    ///
    /// Runs the five phases: inspect, discover, assign, the splits discover proposes,
    /// restrict (cross-domain accesses decided as a team starting out would), moves
    /// one domain to a second
    /// server and verifies it, then cuts it over through a throw-away PgBouncer
    /// while four clients insert rows through it, and counts those rows on the new
    /// server: a summary says what moved where, the write pause, and how many
    /// acknowledged writes were found.
    ///
    /// Needs the PostgreSQL server binaries (initdb, postgres) and PgBouncer installed
    /// locally (without PgBouncer it stops after verify and says so); nothing else is
    /// touched. Everything is removed on exit and on Ctrl-C unless --keep.
    Demo(DemoArgs),
    /// Print every remaining phase's steps, in order, without changing anything
    ///
    /// The dry-run of the whole journey, like a Terraform plan: assign, the plan's
    /// [[splits]], restrict (on the parts), then for each domain the plan gives a server ([[domains]] server, or the
    /// --target of an earlier move) its move, verify and cut-over. Each phase is
    /// planned as its command would plan it, later ones against the catalog as the
    /// earlier ones will leave it (worked out on the model: tables in their domain
    /// schemas, compatibility views, restrict's roles and grants, crossings dropped
    /// by a cut-over), with the commands' defaults (--yes defaults for assign's
    /// objects, move's --max-lag and timeouts, cut-over's timeouts). A phase under
    /// way is listed with its recorded steps, and nothing after it. A domain that
    /// holds a split not yet run is listed once `carve split` has run (its move
    /// copies what the split makes, as the source will have it), and a note says so.
    ///
    /// Also listed: every decision still missing, with its choices (assign's objects,
    /// restrict's cross-domain accesses, how a domain's clients switch); the servers,
    /// PgBouncer console and entries the steps touch; what each phase checks before
    /// its first step (restrict's proof, move's preflight, cut-over's gate). A domain
    /// without a server stays in the monolith and is named. Retire is not planned:
    /// it comes after a grace period, when you decide.
    ///
    /// Reads the source's catalog and the recorded workload (and PgBouncer's
    /// configuration file); takes no lock and writes nothing. --format json gives
    /// one document for review tools, --format psql one script of every step (as
    /// each phase's --dry-run prints its own).
    ///
    /// Exits 0 (nothing left), 3 (steps to run), 6 (decisions missing), 1.
    #[command(verbatim_doc_comment)]
    Plan(PlanArgs),
    /// Walk the journey at a terminal: where it stands, what is next, do it
    ///
    /// Reads the plan, says where the journey stands (phases done, each moved
    /// domain's verify and where its clients are), proposes the next step (discover,
    /// assign, the plan's splits, restrict, a move, a verify, a cut-over), asks for
    /// what it needs (the monolith, a domain's new server, PgBouncer's console,
    /// whether objects kept across domains go at the move) and runs the real
    /// command on this terminal;
    /// `show what it will do first` prints its dry-run. Answers go into the plan, so
    /// stopping at any prompt (or Ctrl-C) loses nothing: `carve wizard` again goes on.
    /// Without a terminal it refuses and names what to use instead.
    Wizard(WizardArgs),
    /// Run a playbook's steps in order, for pipelines: carve commands, shell hooks, lag waits
    ///
    /// PLAYBOOK.toml (version 1) lists `[[steps]]`, each with a unique `name` and one
    /// of `carve = ["move", "--domain", "${DOMAIN}", …]` (carve itself, with this
    /// run's --plan, --yes and --format json), `shell = "…"` (sh -c, with
    /// CARVE_PLAN set) or `wait_lag = { domain = "…", max_bytes = N, timeout = "10m" }`,
    /// and `on_failure = "stop"` (default) or `"rollback"` (cutover → carve rollback,
    /// move → carve undo move, assign/restrict → carve undo). `${NAME}` comes from
    /// the environment; a missing one stops the run before anything runs.
    ///
    /// Each step done is recorded in the plan ([[runs]]): running the same playbook
    /// again after a crash or a failure goes on at its first step not done
    /// (--restart starts over). With --format json, one JSON line per event on
    /// stdout: playbook-step-started, -done (with the step's own JSON result),
    /// -failed (exit_code, error), -skipped, playbook-rollback-started/-done, and
    /// playbook-finished. Exits with the failing step's own exit code.
    Run(RunArgs),
    /// Print a shell completion script: `carve completions bash > /etc/bash_completion.d/carve`
    ///
    /// For bash, zsh, fish, elvish or powershell; it completes commands, options and
    /// their fixed values.
    Completions(CompletionsArgs),
    /// Print carve's man page (roff): `carve man > carve.1 && man ./carve.1`
    Man,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The last phase to plan.
    #[arg(long, value_enum, value_name = "PHASE", default_value = "cutover")]
    pub through: JourneyPhase,

    /// The monolith [default: the plan's source].
    #[arg(long, value_name = "CONN", env = "CARVE_SOURCE")]
    pub source: Option<String>,

    #[command(flatten)]
    pub workload: WorkloadArgs,
}

/// The phases of the journey `carve plan` lists, in their order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum JourneyPhase {
    Assign,
    Restrict,
    Move,
    Verify,
    Cutover,
}

impl JourneyPhase {
    pub fn name(self) -> &'static str {
        match self {
            JourneyPhase::Assign => "assign",
            JourneyPhase::Restrict => "restrict",
            JourneyPhase::Move => "move",
            JourneyPhase::Verify => "verify",
            JourneyPhase::Cutover => "cutover",
        }
    }
}

#[derive(Debug, Args)]
pub struct WizardArgs {
    /// The monolith, offered when there is no plan yet [default: CARVE_SOURCE].
    #[arg(long, value_name = "CONN")]
    pub source: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The playbook (TOML).
    #[arg(value_name = "PLAYBOOK")]
    pub playbook: PathBuf,

    /// Start from the first step even if an earlier run of it stopped part-way.
    #[arg(long)]
    pub restart: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell the script is for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Options of every command that changes a database.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The monolith [default: the plan's source]. Passwords come from PGPASSWORD or
    /// ~/.pgpass.
    #[arg(long, value_name = "CONN", env = "CARVE_SOURCE")]
    pub source: Option<String>,

    /// Print the steps as a psql script (each step guarded by its check) and say how
    /// many are still to do; change nothing, take no lock, leave the plan untouched.
    #[arg(long)]
    pub dry_run: bool,

    /// How long a step that needs a strong lock (ALTER TABLE) waits for it before
    /// letting other clients go first and trying again.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = humantime::parse_duration)]
    pub lock_timeout: std::time::Duration,

    /// How many more times such a step tries, pausing 1 s, 2 s, 4 s … (at most 30 s)
    /// in between, before giving up and naming the session it waited for.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 8,
        allow_negative_numbers = true
    )]
    pub lock_retries: u32,
}

#[derive(Debug, Args)]
pub struct RestrictArgs {
    #[command(flatten)]
    pub apply: ApplyArgs,

    #[command(flatten)]
    pub workload: WorkloadArgs,

    /// Where the generated passwords of the login roles restrict creates go, one
    /// `host:port:database:role:password` line each (the ~/.pgpass format, so it can
    /// serve as PGPASSFILE), in a file created with mode 0600. A password is written
    /// nowhere else, and reaches the server only as a SCRAM verifier. The file must
    /// be writable (checked before anything runs); each password is set by a step of
    /// its own, resumed and undone like the others. Given again after roles were
    /// made without it, it adds those steps.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct MoveArgs {
    /// The domain to move (its name in the plan).
    #[arg(long, value_name = "NAME")]
    pub domain: String,

    /// The domain's new server, as a libpq connection string to the database that
    /// receives it (created beforehand, empty of the domain's tables), as a superuser.
    /// Recorded in the plan as the domain's server (no password); a later run may
    /// leave it out.
    #[arg(long, value_name = "CONN")]
    pub target: Option<String>,

    /// How the target server reaches the source, when not the way carve does (another
    /// host name inside the network, TLS options): a libpq connection string without
    /// user or password [default: the source's host, port, dbname and sslmode].
    #[arg(long, value_name = "CONN")]
    pub subscription_conninfo: Option<String>,

    /// Where the replication role's generated password goes (created with mode 0600,
    /// ~/.pgpass format); PostgreSQL keeps it in the subscription, carve nowhere else
    /// [default: the plan file's name with .passwords].
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,

    /// How far behind the source (bytes of WAL) the target may be at *ready*.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    pub max_lag: u64,

    /// How long the initial copy may take.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = humantime::parse_duration)]
    pub copy_timeout: std::time::Duration,

    /// How long catching up to --max-lag may take after the copy.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
    pub catch_up_timeout: std::time::Duration,

    /// The preflight refuses while a transaction on the source is older than this:
    /// creating the replication slot waits for every open transaction to end.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub max_transaction_age: std::time::Duration,

    /// Move even though max_slot_wal_keep_size is -1 on the source: a replication
    /// slot left behind would then keep WAL until the disk is full.
    #[arg(long)]
    pub accept_unlimited_slot_wal: bool,

    #[command(flatten)]
    pub apply: ApplyArgs,
}

#[derive(Debug, Args)]
pub struct SwitchArgs {
    /// The moved domain whose clients switch (its name in the plan).
    #[arg(long, value_name = "NAME")]
    pub domain: String,

    /// PgBouncer's admin console, as a libpq connection string (for example
    /// postgresql://postgres@127.0.0.1:6432/pgbouncer). Recorded in the plan (no
    /// password); later runs may leave it out.
    #[arg(long, value_name = "CONN")]
    pub pgbouncer: Option<String>,

    /// The PgBouncer configuration file holding the domain's [databases] entries,
    /// which carve rewrites (atomically, keeping its owner and mode); carve must run
    /// where that file is [default: the file PgBouncer read, from SHOW CONFIG].
    #[arg(long, value_name = "FILE")]
    pub pgbouncer_config: Option<PathBuf>,

    /// A PgBouncer database entry the domain's clients connect through (repeat for
    /// several) [default: `pgbouncer_entry` of each of the domain's services in the
    /// plan, else the service's name].
    #[arg(long = "entry", value_name = "NAME")]
    pub entries: Vec<String>,

    /// How the clients are switched: `pgbouncer` repoints PgBouncer's entries (the
    /// clients queue meanwhile and never notice); `file` writes each service's
    /// connection settings into --connection-dir and runs --hook (nothing holds the
    /// clients: a write to the old side meanwhile fails with the fence's error)
    /// [default: what the domain's last switch used, else pgbouncer].
    #[arg(long = "switch", value_name = "HOW")]
    pub switch: Option<SwitchMethod>,

    /// With --switch file: the directory of the services' connection files,
    /// `<service>.toml` and `<service>.env` (libpq variables), without passwords.
    #[arg(long, value_name = "DIR")]
    pub connection_dir: Option<PathBuf>,

    /// With --switch file: a shell command run once the files are written, with
    /// CARVE_DOMAIN, CARVE_LIVE (source or server) and CARVE_CONNECTION_DIR set;
    /// it must be safe to run again (a re-run after a crash runs it again).
    #[arg(long, value_name = "CMD")]
    pub hook: Option<String>,

    /// With --switch file: a service whose connection files are written (repeat
    /// for several; it logs in as the plan's `login_role` of it) [default: the
    /// plan's services whose `domain` is this domain].
    #[arg(long = "service", value_name = "NAME")]
    pub services: Vec<String>,

    /// How PgBouncer or the services reach the domain's server (host, port,
    /// dbname), when not the way carve does [default: the domain's server as the
    /// plan records it].
    #[arg(long, value_name = "CONN")]
    pub server_address: Option<String>,

    /// With --switch file: how the services reach the source (host, port, dbname)
    /// [default: the way carve does].
    #[arg(long, value_name = "CONN")]
    pub source_address: Option<String>,

    /// How the domain's server reaches the source (for the stream from the source,
    /// made again by a rollback or an abort), as given to `carve move`.
    #[arg(long, value_name = "CONN")]
    pub subscription_conninfo: Option<String>,

    /// How the source reaches the domain's server, for the stream back: a libpq
    /// connection string without user or password [default: the domain's server's
    /// host, port, dbname and sslmode].
    #[arg(long, value_name = "CONN")]
    pub reverse_conninfo: Option<String>,

    /// Where the replication roles' passwords are kept [default: the plan file's name
    /// with .passwords].
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,

    /// The most WAL (bytes) the side switched to may be behind when the switch
    /// starts: the write pause lasts until it has caught up.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    pub max_lag: u64,

    /// How long PgBouncer's PAUSE may wait for transactions under way before the
    /// switch is cancelled (the clients never notice).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub freeze_timeout: std::time::Duration,

    /// How long the side switched to may take to apply the writes made before the
    /// fence; past it the switch is cancelled and the clients go on where they were.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub catch_up_timeout: std::time::Duration,

    /// The oldest clean `carve verify` a cut-over accepts.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = humantime::parse_duration)]
    pub verify_max_age: std::time::Duration,

    /// Cancel a switch stopped before its point of no return (a killed run): the
    /// clients stay where they were and the stream runs as before.
    #[arg(long)]
    pub abort: bool,

    /// Cut over even though restrict's proof finds statements of the domain's
    /// services failing on its server (listed): those services break there.
    #[arg(long)]
    pub accept_failing_statements: bool,

    #[command(flatten)]
    pub apply: ApplyArgs,
}

/// How cut-over switches the clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SwitchMethod {
    Pgbouncer,
    File,
}

#[derive(Debug, Args)]
pub struct RetireArgs {
    /// The cut-over domain to retire (its name in the plan).
    #[arg(long, value_name = "NAME")]
    pub domain: String,

    /// The grace period: refuse until the cut-over is at least this old (rollback
    /// stays possible until retire).
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = humantime::parse_duration)]
    pub after: std::time::Duration,

    /// Drop the schema an earlier retire renamed, for good.
    #[arg(long)]
    pub drop: bool,

    /// Where the replication roles' passwords are kept [default: the plan file's name
    /// with .passwords].
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,

    #[command(flatten)]
    pub apply: ApplyArgs,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The moved domain to compare with the source.
    #[arg(long, value_name = "NAME")]
    pub domain: String,

    /// Rows per chunk: smaller chunks find a difference with fewer rows read again.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub chunk_rows: u64,

    /// How many chunks are compared at once (a connection to each server per job).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub jobs: u64,

    /// Go on from where a killed verify stopped (the file beside the plan).
    #[arg(long)]
    pub resume: bool,

    /// How many more times a differing chunk is compared under live writes before
    /// its rows are.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub retries: u32,

    /// How long to wait for the domain's server to apply the source's changes
    /// before comparing a chunk.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub catch_up_timeout: std::time::Duration,

    /// The monolith [default: the plan's source].
    #[arg(long, value_name = "CONN", env = "CARVE_SOURCE")]
    pub source: Option<String>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this domain's moves (and the phases for every domain).
    #[arg(long, value_name = "NAME")]
    pub domain: Option<String>,

    /// Show only what the plan file says: connect to no server.
    #[arg(long)]
    pub offline: bool,
}

#[derive(Debug, Args)]
pub struct UndoArgs {
    /// The phase to reverse.
    #[arg(value_enum)]
    pub phase: PhaseName,

    /// The domain whose move to reverse (move is undone per domain).
    #[arg(long, value_name = "NAME", required_if_eq("phase", "move"))]
    pub domain: Option<String>,

    #[command(flatten)]
    pub apply: ApplyArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PhaseName {
    Assign,
    Split,
    Restrict,
    Move,
}

impl PhaseName {
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseName::Assign => "assign",
            PhaseName::Split => "split",
            PhaseName::Restrict => "restrict",
            PhaseName::Move => "move",
        }
    }
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The database to read, as a libpq connection string (URL or key=value).
    #[arg(long, value_name = "CONN", env = "CARVE_SOURCE")]
    pub source: String,
}

#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// The monolith, as a libpq connection string (URL or key=value).
    #[arg(long, value_name = "CONN", env = "CARVE_SOURCE")]
    pub source: String,

    #[command(flatten)]
    pub workload: WorkloadArgs,

    /// Clustering resolution: higher gives more and smaller domains. Kept in the plan
    /// for later runs. [default: the plan's, else chosen: discover clusters at
    /// resolutions 0.25 to 3 with eight seeds each (0.5, 1 and 2 with three seeds
    /// on a graph of over half a million edges) and takes, among those whose seeds
    /// agree and whose modularity is within 1% of the best, the one nearest 1. When
    /// none does and the seeds disagree widely at 1 (a large graph of small
    /// clusters, which modularity merges across single links), it doubles the
    /// resolution while the seeds agree more and takes the steadiest scale; the
    /// report lists every resolution with its number of domains]
    #[arg(long, value_name = "R", value_parser = positive_number, allow_negative_numbers = true)]
    pub resolution: Option<f64>,

    /// Also write the report as one self-contained HTML file (the domain map drawn as a
    /// graph, each domain's tables with their ownership, the boundaries); it opens in
    /// any browser without network access.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// Print the domain map as a graph (Graphviz dot or Mermaid) instead of the report.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub graph: Option<GraphFormat>,
}

/// Where to read who ran what (discover; restrict reads it again).
#[derive(Debug, Args)]
pub struct WorkloadArgs {
    /// Who ran what. Repeat for several sources, in any mix:
    ///
    /// - a .sql file (its name is the service), or a directory with a .sql file or a
    ///   sub-directory per service; statements end with `;`, `$1` parameters are fine,
    ///   and `BEGIN … COMMIT` groups a transaction;
    /// - a server log: csvlog (.csv), jsonlog (.json), or a stderr log (.log) whose
    ///   log_line_prefix has %u and/or %a (see --log-line-prefix); statements from
    ///   log_statement = all or log_min_duration_statement, transactions per session;
    /// - the word pg_stat_statements: that extension's statistics on --source, with
    ///   call counts (for a directory of that name, write ./pg_stat_statements).
    ///
    /// Logs and pg_stat_statements know roles and application names; those become
    /// services through --service-map (without it, the role name is the service).
    /// Discover records the sources in the plan; restrict reads them again unless
    /// --workload is given.
    #[arg(long, value_name = "PATH", verbatim_doc_comment)]
    pub workload: Vec<PathBuf>,

    /// A TOML file saying which service each role or application_name is:
    /// `[roles] orders_rw = "orders"`, `[applications] "billing-worker" = "billing"`,
    /// `ignore = ["postgres"]`. Services already in the plan keep their roles.
    #[arg(long, value_name = "FILE")]
    pub service_map: Option<PathBuf>,

    /// The log_line_prefix stderr logs were written with [default: the source
    /// server's current setting].
    #[arg(long, value_name = "PREFIX")]
    pub log_line_prefix: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    Dot,
    Mermaid,
}

impl From<GraphFormat> for ui::graph::GraphKind {
    fn from(format: GraphFormat) -> Self {
        match format {
            GraphFormat::Dot => ui::graph::GraphKind::Dot,
            GraphFormat::Mermaid => ui::graph::GraphKind::Mermaid,
        }
    }
}

impl WorkloadArgs {
    /// The options as plain data for `workload::sources`.
    pub fn options(&self) -> crate::workload::sources::WorkloadOptions {
        crate::workload::sources::WorkloadOptions {
            workload: self.workload.clone(),
            service_map: self.service_map.clone(),
            log_line_prefix: self.log_line_prefix.clone(),
        }
    }
}

fn positive_number(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("{text:?} is not a positive number")),
    }
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Which example monolith to load.
    #[arg(long, value_enum, default_value_t = ExampleName::Library)]
    pub example: ExampleName,

    /// Leave the servers running when done, and print psql commands to look inside.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExampleName {
    /// Three tables, three services: the library system of the source texts.
    Library,
    /// An e-commerce monolith: 35 tables, 7 services, FKs and views across domains.
    Shop,
}

impl ExampleName {
    pub fn as_str(self) -> &'static str {
        match self {
            ExampleName::Library => "library",
            ExampleName::Shop => "shop",
        }
    }
}

/// Everything a command needs to know about how it was invoked, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub plan_path: PathBuf,
    pub format: Format,
    pub assume_yes: bool,
    pub out: ui::Output,
}

impl Settings {
    fn from_cli(cli: &Cli) -> Settings {
        Settings {
            plan_path: cli.plan.clone(),
            format: cli.format,
            assume_yes: cli.yes,
            out: ui::Output::new(cli.format.into(), cli.quiet),
        }
    }
}

impl Command {
    /// The command's name, as JSON documents give it.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Inspect(_) => "inspect",
            Command::Discover(_) => "discover",
            Command::Assign(_) => "assign",
            Command::Restrict(_) => "restrict",
            Command::Split(_) => "split",
            Command::Move(_) => "move",
            Command::Verify(_) => "verify",
            Command::Cutover(_) => "cutover",
            Command::Rollback(_) => "rollback",
            Command::Retire(_) => "retire",
            Command::Undo(_) => "undo",
            Command::Status(_) => "status",
            Command::Demo(_) => "demo",
            Command::Completions(_) => "completions",
            Command::Run(_) => "run",
            Command::Wizard(_) => "wizard",
            Command::Plan(_) => "plan",
            Command::Man => "man",
        }
    }
}

/// Whether the raw arguments ask for JSON, for a command line clap refused.
fn wants_json(args: &[std::ffi::OsString]) -> bool {
    let args: Vec<&str> = args.iter().filter_map(|a| a.to_str()).collect();
    args.contains(&"--format=json") || args.windows(2).any(|w| w == ["--format", "json"])
}

/// A write past the file size limit (`ulimit -f`, RLIMIT_FSIZE) then fails with
/// EFBIG, which carve reports naming the file, instead of SIGXFSZ ending the process
/// without a word (as Rust's runtime does for SIGPIPE). The plan is written to a
/// temporary file and renamed, so the plan on disk stays whole either way.
fn ignore_file_size_signal() {
    // SAFETY: setting a signal's disposition to SIG_IGN, before any thread starts.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

pub fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        // A runbook that asked for JSON gets JSON, even for a command line carve
        // did not understand (--help and --version are not failures).
        Err(e) if e.use_stderr() && wants_json(&args) => {
            let out = ui::Output::new(ui::Format::Json, false);
            let text = e.render().to_string();
            let message = text.lines().next().unwrap_or_default();
            out.error(message.trim_start_matches("error: "));
            out.finish("carve", exit::USAGE);
            return exit::code(exit::USAGE);
        }
        Err(e) => e.exit(),
    };
    ui::init_logging(cli.verbose, cli.quiet);
    ignore_file_size_signal();
    let settings = Settings::from_cli(&cli);
    if cli.format == Format::Psql && !matches!(cli.command, Command::Plan(_)) {
        settings.out.error(
            "--format psql is for `carve plan`; each phase prints its own psql script with --dry-run",
        );
        return exit::code(exit::USAGE);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            settings
                .out
                .error(&format!("cannot start the async runtime: {e}"));
            return exit::code(exit::ERROR);
        }
    };
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Inspect(args) => commands::inspect::run(&settings, args).await,
            Command::Discover(args) => commands::discover::run(&settings, args).await,
            Command::Assign(args) => commands::assign::run(&settings, args).await,
            Command::Restrict(args) => commands::restrict::run(&settings, args).await,
            Command::Split(args) => commands::split::run(&settings, args).await,
            Command::Move(args) => commands::move_domain::run(&settings, args).await,
            Command::Verify(args) => commands::verify::run(&settings, args).await,
            Command::Cutover(args) => {
                commands::cutover::run(&settings, args, crate::plan::Side::Server).await
            }
            Command::Rollback(args) => {
                commands::cutover::run(&settings, args, crate::plan::Side::Source).await
            }
            Command::Retire(args) => commands::retire::run(&settings, args).await,
            Command::Undo(args) => commands::undo::run(&settings, args).await,
            Command::Status(args) => commands::status::run(&settings, args).await,
            Command::Demo(args) => commands::demo::run(&settings, args).await,
            Command::Run(args) => commands::run::run(&settings, args).await,
            Command::Wizard(args) => commands::wizard::run(&settings, args).await,
            Command::Plan(args) => commands::plan::run(&settings, args).await,
            Command::Completions(args) => {
                use clap::CommandFactory;
                clap_complete::generate(
                    args.shell,
                    &mut Cli::command(),
                    "carve",
                    &mut std::io::stdout(),
                );
                Ok(exit::SUCCESS)
            }
            Command::Man => {
                use clap::CommandFactory;
                match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                    // `carve man | head` is not a failure.
                    Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                    _ => Ok(exit::SUCCESS),
                }
            }
        }
    });
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            settings.out.error(&format!("{e:#}"));
            exit::ERROR
        }
    };
    settings.out.finish(cli.command.name(), code);
    exit::code(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `carve plan` plans moves and cut-overs with these constants: they must be
    /// what `carve move` and `carve cutover` take when not told otherwise.
    #[test]
    fn plan_uses_the_defaults_of_move_and_cutover() {
        let cli = Cli::try_parse_from(["carve", "move", "--domain", "d"]).unwrap();
        let Command::Move(args) = cli.command else {
            panic!()
        };
        use crate::phases::move_domain as m;
        assert_eq!(args.max_lag, m::DEFAULT_MAX_LAG);
        assert_eq!(args.copy_timeout, m::DEFAULT_COPY_TIMEOUT);
        assert_eq!(args.catch_up_timeout, m::DEFAULT_CATCH_UP_TIMEOUT);
        let cli = Cli::try_parse_from(["carve", "cutover", "--domain", "d"]).unwrap();
        let Command::Cutover(args) = cli.command else {
            panic!()
        };
        use crate::phases::cutover as c;
        assert_eq!(args.freeze_timeout, c::DEFAULT_FREEZE_TIMEOUT);
        assert_eq!(args.catch_up_timeout, c::DEFAULT_CATCH_UP_TIMEOUT);
    }
}
