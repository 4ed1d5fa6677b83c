//! Phase 4, move: a domain's schema to its own server on PostgreSQL's logical
//! replication. So far only its preflight is here (pure, tested without a
//! database); the command, the target's schema, the copy and the cancel come next
//! (see the open issue for move).

pub mod preflight;
pub mod replication;
pub mod schema;
