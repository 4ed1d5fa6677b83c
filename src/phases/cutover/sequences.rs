//! Sequences: no PostgreSQL release replicates them, so at a switch each sequence of
//! the domain (owned by a column, an identity, or free-standing and used by several
//! tables) is set on the side clients come to from the side they leave, read inside
//! the fence. Never backwards: the value set is the highest of the other side's, this
//! side's own, and every column that draws from the sequence (pgcopydb#716: values
//! from a stale snapshot collide with rows already there).

use super::super::lit;
use crate::catalog::{Catalog, Sequence};
use crate::engine::{Reading, SqlAction, Step, Target, READ_VARIABLE};
use crate::phases::move_domain::replication::side;
use crate::sql::{display_ident, qualified};

/// The sequences of the domain's schema.
pub fn of<'c>(catalog: &'c Catalog, domain: &str) -> Vec<&'c Sequence> {
    catalog
        .sequences
        .iter()
        .filter(|s| s.name.schema == domain)
        .collect()
}

/// The integer columns that draw from sequence `seq` (a regclass in PL/pgSQL): by a
/// default calling `nextval` on it, or as its owner or identity column.
const COLUMNS_USING: &str = "SELECT a.attrelid::regclass AS rel, a.attname FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_attrdef ad ON d.classid = 'pg_catalog.pg_attrdef'::regclass AND d.objid = ad.oid JOIN pg_catalog.pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum WHERE d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = seq AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype) \
UNION SELECT a.attrelid::regclass, a.attname FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = seq AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.deptype IN ('a', 'i') AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)";

/// `greatest`/`max` for an ascending sequence, `least`/`min` for a descending one.
fn direction(seq: &Sequence) -> (&'static str, &'static str) {
    if seq.increment < 0 {
        ("LEAST", "min")
    } else {
        ("GREATEST", "max")
    }
}

/// The step that sets `seq` on `to` from its value on `from`.
pub fn sync(seq: &Sequence, from: &Target, to: &Target) -> Step {
    let name = qualified(&seq.name.schema, &seq.name.name);
    let (pick, aggregate) = direction(seq);
    let sql = format!(
        "SELECT pg_catalog.set_config('carve.sequence_elsewhere', coalesce({READ_VARIABLE}, ''), true);\n\
DO $carve$ DECLARE\n\
  seq regclass := {}::regclass;\n\
  there text[] := string_to_array(current_setting('carve.sequence_elsewhere'), ' ');\n\
  here record; c record; found bigint; target bigint;\n\
BEGIN\n\
  IF coalesce(array_length(there, 1), 0) <> 2 THEN RAISE EXCEPTION 'sequence % was not read on the other side', seq; END IF;\n\
  IF there[2]::boolean THEN target := there[1]::bigint; END IF;\n\
  EXECUTE format('SELECT last_value, is_called FROM %s', seq) INTO here;\n\
  IF here.is_called THEN target := {pick}(target, here.last_value); END IF;\n\
  FOR c IN {COLUMNS_USING} LOOP\n\
    EXECUTE format('SELECT {aggregate}(%I)::bigint FROM %s', c.attname, c.rel) INTO found;\n\
    target := {pick}(target, found);\n\
  END LOOP;\n\
  IF target IS NULL THEN PERFORM pg_catalog.setval(seq, there[1]::bigint, false);\n\
  ELSE PERFORM pg_catalog.setval(seq, target, true); END IF;\n\
END $carve$;",
        lit(&name)
    );
    Step::sql(
        format!("sync sequence {} on {}", seq.name, to),
        format!(
            "sequence {} on {} set from {} (read inside the fence), never below a value already used",
            seq.name,
            side(to),
            side(from)
        ),
        to.clone(),
        // Always set again: it only ever moves forward, so repeating it is safe, and
        // no check on one side can know the other side's value.
        SqlAction {
            read: Some(Reading {
                on: from.clone(),
                query: format!("SELECT last_value::text || ' ' || is_called::text FROM {name}"),
            }),
            ..SqlAction::always(sql)
        },
    )
}

/// A look (changing nothing) that fails when a sequence of the domain on `on` would
/// hand out a value a column already holds.
pub fn validate(catalog: &Catalog, domain: &str, on: &Target) -> Step {
    let mut sql = String::new();
    for seq in of(catalog, domain) {
        let name = qualified(&seq.name.schema, &seq.name.name);
        let (_, aggregate) = direction(seq);
        let beyond = if seq.increment < 0 { "<" } else { ">" };
        // The columns first, then the sequence: clients write meanwhile, and every
        // value they took from it is behind its position read afterwards.
        sql.push_str(&format!(
            "DO $carve$ DECLARE seq regclass := {}::regclass; here record; c record; found bigint; highest bigint; holder text;\n\
BEGIN\n\
  FOR c IN {COLUMNS_USING} LOOP\n\
    EXECUTE format('SELECT {aggregate}(%I)::bigint FROM %s', c.attname, c.rel) INTO found;\n\
    IF found IS NOT NULL AND (highest IS NULL OR found {beyond} highest) THEN highest := found; holder := format('%s.%I', c.rel, c.attname); END IF;\n\
  END LOOP;\n\
  EXECUTE format('SELECT last_value, is_called FROM %s', seq) INTO here;\n\
  IF highest IS NOT NULL AND (highest {beyond} here.last_value OR (NOT here.is_called AND highest = here.last_value)) THEN\n\
    RAISE EXCEPTION 'sequence % would hand out % again, which % already holds', seq, highest, holder;\n\
  END IF;\n\
END $carve$;\n",
            lit(&name)
        ));
    }
    if sql.is_empty() {
        sql.push_str("SELECT 1;");
    }
    Step::sql(
        format!("check the sequences of {} on {}", display_ident(domain), on),
        format!(
            "every sequence of {} on {} is past the values its columns hold",
            display_ident(domain),
            side(on)
        ),
        on.clone(),
        SqlAction::always(sql),
    )
}
