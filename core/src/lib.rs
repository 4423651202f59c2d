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

pub mod admin;
pub mod blocking;
pub mod build_check;
pub mod cache_key;
pub mod catalog;
pub mod config;
pub mod conninfo;
pub mod drop;
pub mod engine;
pub mod error;
pub mod layout;
pub mod lease;
mod markers;
pub mod naming;
pub mod registry;
pub mod role;
pub mod schema;
mod secret;
mod sql;
pub mod server;
pub mod template;
pub mod testing;

pub use config::{Config, Keep};
pub use engine::build::{TemplateBuild, TemplateStart};
pub use engine::gc::GcReport;
pub use engine::Engine;
pub use schema::Released;
pub use error::{Error, ErrorKind, Result};
pub use naming::{cache_key, schema_name, Identity};
pub use schema::Schema;
pub use template::{Migrations, Template};
