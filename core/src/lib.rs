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

#![warn(unreachable_pub)]

mod admin;
pub mod blocking;
mod build_check;
mod cache_key;
pub mod catalog;
pub mod config;
pub mod conninfo;
mod drop;
mod engine;
mod error;
pub mod layout;
mod lease;
mod markers;
pub mod naming;
mod registry;
mod role;
mod schema;
mod secret;
mod sql;
pub mod server;
pub mod template;
pub mod testing;

pub use config::{Config, Keep};
pub use engine::build::{TemplateBuild, TemplateStart};
pub use engine::gc::GcReport;
pub use engine::Engine;
pub use error::{Error, ErrorKind, Result};
pub use naming::{cache_key, schema_name, Identity};
pub use registry::{Entry, TemplateInfo};
pub use schema::{Released, Schema};
pub use template::{Migrations, Template};
