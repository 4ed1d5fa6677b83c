//! The database-changing phases, each a pure function from (plan, catalog) to the
//! engine's steps. The commands of the same name run them.

pub mod assign;
pub mod restrict;

/// The phases in the order they build on each other.
pub const ORDER: &[&str] = &[assign::PHASE, restrict::PHASE];

use crate::sql::{ident, literal};

/// True when a relation of one of `kinds` (`'r', 'p'`) exists: a step's check.
fn relation_exists(schema: &str, name: &str, kinds: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = {} AND c.relname = {} AND c.relkind IN ({kinds}))",
        lit(schema),
        lit(name)
    )
}

/// A name from the catalog as a SQL literal (catalog names never hold NUL).
fn lit(text: &str) -> String {
    literal(text).expect("catalog names have no NUL")
}

/// `PUBLIC` is a keyword, every other grantee a quoted role name.
fn grantee(name: &str) -> String {
    if name == "PUBLIC" {
        "PUBLIC".to_string()
    } else {
        ident(name)
    }
}
