//! The database-changing phases, each a pure function from (plan, catalog) to the
//! engine's steps. The commands of the same name run them.

pub mod assign;
