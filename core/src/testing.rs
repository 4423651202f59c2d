//! Test glue for `cargo test`: one line gives a test its own schema.
//!
//! ```no_run
//! #[test]
//! fn registers_alice() {
//!     let schema = pgisolate::testing::schema(); // migrations from PGISOLATE_MIGRATIONS or ./migrations
//!     let mut db = postgres_client_for(schema.url());
//!     // … the test; the schema is released when `schema` goes out of scope,
//!     // and kept if the test panicked and PGISOLATE_KEEP=failed.
//! }
//! # fn postgres_client_for(_: &str) {}
//! ```
//!
//! Works in plain `#[test]` and in `#[tokio::test]` functions: the engine lives on its own
//! runtime, shared by every test of the process, and the identity is the test's name (libtest
//! names each test's thread after it).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use once_cell::sync::OnceCell;

use crate::{Config, Engine, Identity, Migrations, Result, Schema, Template};

struct Global {
    rt: &'static tokio::runtime::Runtime,
    engine: Engine,
    templates: Mutex<HashMap<String, Template>>,
}

static GLOBAL: OnceCell<std::result::Result<Global, String>> = OnceCell::new();

fn global() -> &'static Global {
    let g = GLOBAL.get_or_init(|| {
        let rt = crate::blocking::runtime().map_err(|e| e.to_string())?;
        let engine = rt
            .block_on(async { Engine::start(Config::from_env()?).await })
            .map_err(|e| format!("pgisolate engine: {e}"))?;
        Ok(Global { rt, engine, templates: Mutex::new(HashMap::new()) })
    });
    match g {
        Ok(g) => g,
        Err(e) => panic!("{e}"),
    }
}

/// Runs a future on the test engine's runtime and waits for it, from any thread (including a
/// thread running another tokio runtime).
pub fn block_on<F, T>(fut: F) -> T
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    global().rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().expect("pgisolate runtime dropped a task")
}

/// The process-wide test engine (configured from the environment).
pub fn engine() -> Engine {
    global().engine.clone()
}

fn default_migrations() -> PathBuf {
    match std::env::var_os("PGISOLATE_MIGRATIONS") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from("migrations"),
    }
}

/// The template for `migrations`, built once per process (and once per server).
pub fn template(migrations: Migrations) -> Result<Template> {
    let key = format!("{migrations:?}");
    if let Some(t) = global().templates.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(t);
    }
    let engine = engine();
    let t = block_on(async move { engine.template(migrations).await })?;
    if let Ok(mut m) = global().templates.lock() {
        m.insert(key, t.clone());
    }
    Ok(t)
}

/// The current test's identity: (module path, test name) from the test thread's name.
pub fn current_identity() -> Identity {
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("unnamed");
    match name.rsplit_once("::") {
        Some((module, test)) => Identity::new(module, test),
        None => Identity::new("", name),
    }
}

/// A schema for the current test from `PGISOLATE_MIGRATIONS` (default `./migrations`). Panics
/// with the reason if it cannot be made: it is meant to be the first line of a test.
pub fn schema() -> TestSchema {
    schema_from(Migrations::dir(default_migrations()))
}

/// A schema for the current test from these migrations.
pub fn schema_from(migrations: Migrations) -> TestSchema {
    try_schema(migrations, current_identity()).unwrap_or_else(|e| panic!("pgisolate: {e}"))
}

/// A schema for `identity` from `migrations`, as a `Result`.
pub fn try_schema(migrations: Migrations, identity: Identity) -> Result<TestSchema> {
    let tpl = template(migrations)?;
    let engine = engine();
    let schema = block_on(async move { engine.acquire(&tpl, identity).await })?;
    Ok(TestSchema { schema: Some(schema) })
}

/// A test's schema; released when dropped (kept per `PGISOLATE_KEEP` if the test panicked).
#[derive(Debug)]
pub struct TestSchema {
    schema: Option<Schema>,
}

impl std::ops::Deref for TestSchema {
    type Target = Schema;
    fn deref(&self) -> &Schema {
        self.schema.as_ref().expect("schema present until drop")
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        if let Some(s) = self.schema.take() {
            let failed = std::thread::panicking();
            let name = s.name().to_owned();
            if let Err(e) = block_on(async move { s.finish(failed).await }) {
                eprintln!("pgisolate: warning: release of {name} failed: {e}");
            }
        }
    }
}
