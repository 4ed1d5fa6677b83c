//! Analysis: from a catalog and a workload to who reads and writes what, table
//! ownership, and proposed data domains. Pure functions over plain data.

pub mod access;
pub mod leiden;
pub mod ownership;
pub mod usage;
