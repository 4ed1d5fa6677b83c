//! carve: take a monolithic PostgreSQL database apart into data domains, safely.
//!
//! The map of this crate is in ARCHITECTURE.md. In short: `catalog` (model, reader,
//! fingerprint) and `plan` are pure data; `conn` and `pgtemp` talk to the outside
//! world; `commands` wires them to the CLI defined in `cli`; `ui` prints.

pub mod analysis;
pub mod catalog;
pub mod cli;
pub mod commands;
pub mod conn;
pub mod engine;
pub mod examples;
pub mod exit;
pub mod os_user;
pub mod pgtemp;
pub mod phases;
pub mod plan;
pub mod playbook;
pub mod sql;
pub mod synthetic;
pub mod text;
pub mod ui;
pub mod verify;
pub mod workload;
