//! Recycling: a released schema goes back to its template's pool when only data changed.
//!
//! - `reset`: which tables a test wrote (the write trigger), and restoring their rows and the
//!   sequences that moved;
//! - `ddl_watch`: event triggers that record the schemas DDL ran in (superuser only);
//! - `written.sql` (the write trigger's table and function) and `catalog_check.sql` (whether a
//!   schema's catalog changed since its hand-out, without superuser), installed with the
//!   registry: [`TRACKING_SQL`].
//!
//! When to make, hand out and reset pool schemas is the engine's (`engine/pool.rs`).

pub(crate) mod ddl_watch;
pub(crate) mod reset;

pub(crate) use ddl_watch::{ensure_ddl_watch, forget_ddl_sql, untouched_sql};

/// Recycling's tables and functions, installed with the registry's ([`crate::registry`]).
pub(crate) const TRACKING_SQL: &str = concat!(include_str!("written.sql"), include_str!("catalog_check.sql"));
