//! pgisolate: one PostgreSQL schema per test, from a cached template, named deterministically,
//! reached through a `search_path`-scoped connection string, with a matching cache-key prefix.
//!
//! ```no_run
//! # async fn demo() -> pgisolate::Result<()> {
//! use pgisolate::{Config, Engine, Identity, Migrations};
//! let engine = Engine::start(Config::from_env()?).await?;
//! let tpl = engine.template(Migrations::dir("migrations")).await?;
//! let schema = engine.acquire(&tpl, Identity::new("signup", "duplicate email")).await?;
//! println!("{} {}", schema.name(), schema.url());
//! schema.release().await?;
//! engine.close().await
//! # }
//! ```
//!
//! # The API
//!
//! - [`Engine`] (start, templates, acquire, gc, close), configured by [`Config`] ([`Isolation`], settings by
//!   key, [`Keep`] policy);
//! - [`Migrations`] → [`Template`], or [`TemplateStart`] / [`TemplateBuild`] when your own
//!   migration tool builds it;
//! - [`Identity`] → [`Schema`] (URL, conninfo, cache prefix), released as [`Released`];
//! - [`GcReport`], [`RunReport`] (what a run left, [`Engine::end_of_run`]), [`Entry`] (a live or kept schema), [`TemplateInfo`] (a template),
//!   [`Connections`] / [`EngineConnections`] (the server's slots and each engine's share);
//! - [`Error`] with its [`ErrorKind`] and SQLSTATE, [`Result`];
//! - pure helpers: [`schema_name`], [`cache_key`], [`kept_line`], and the modules [`naming`] (names and cache
//!   prefixes), [`conninfo`] (scoping, redacting, Prisma and SQLAlchemy URLs);
//! - test glue: [`test`] (`#[pgisolate::test]`), [`testing`] (`cargo test`), [`blocking`]
//!   (the library runtime for bindings);
//! - [`config`] (the settings table), [`template`] (migration loading and fingerprints),
//!   [`layout`] (how a migrations directory is read), [`server`] (the embedded server and
//!   binaries), [`catalog`] (a schema's DDL digest, to prove a copy equals its template).
//!
//! Everything else is private to the crate (checked by `tests/structure.rs`).

#![warn(unreachable_pub)]

mod admin;
pub mod blocking;
mod budget;
mod cache;
pub mod catalog;
pub mod config;
pub mod conninfo;
mod drop;
mod engine;
mod error;
mod lease;
mod locks;
mod markers;
pub mod naming;
mod recycle;
mod registry;
mod role;
mod schema;
mod secret;
pub mod server;
mod sql;
pub mod template;
pub mod testing;

pub use budget::{Connections, EngineConnections};
pub use config::{Config, Isolation, Keep};
pub use engine::build::{TemplateBuild, TemplateStart};
pub use engine::gc::{GcReport, RunReport};
pub use engine::Engine;
pub use error::{Error, ErrorKind, Result};
pub use naming::{cache_key, kept_line, schema_name, Identity};
pub use registry::{Entry, TemplateInfo};
pub use schema::{Released, Schema};
pub use template::{layout, Migrations, Template};

/// `#[pgisolate::test]`: the test gets its own schema, its arguments injected by type (see
/// [`testing`]).
pub use pgisolate_macros::test;
