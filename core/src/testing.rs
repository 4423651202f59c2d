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
//! Works in plain `#[test]` and in `#[tokio::test]` functions (any flavor): the engine lives
//! on its own runtime, shared by every test of the process, and the identity is the test's
//! name (libtest names each test's thread after it). In async code, [`schema_async`] does the
//! same without blocking. The engine is closed when the test process exits, so a `cargo test`
//! run leaves nothing on the server.
//!
//! [`macro@crate::test`] (`#[pgisolate::test]`) does all of it for one test, with the schema,
//! a `tokio_postgres::Client` or an `sqlx::PgPool` (feature `sqlx`) injected as arguments:
//!
//! ```no_run
//! #[pgisolate::test(migrations = "migrations")]
//! async fn registers_alice(db: tokio_postgres::Client) {
//!     db.execute("insert into users (email) values ('alice@example.com')", &[]).await.unwrap();
//! }
//! ```

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
        // Started on the library runtime, never with block_on on the caller's thread: the
        // first call may come from inside a test's own tokio runtime.
        let engine = wait_on(rt, async { Engine::start(Config::from_env()?).await })
            .map_err(|e| format!("pgisolate engine: {e}"))?;
        close_at_exit();
        Ok(Global { rt, engine, templates: Mutex::new(HashMap::new()) })
    });
    match g {
        Ok(g) => g,
        Err(e) => panic!("{e}"),
    }
}

/// Runs `fut` on `rt` and waits for it on this thread (which may be running another runtime).
fn wait_on<F, T>(rt: &tokio::runtime::Runtime, fut: F) -> T
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().expect("pgisolate runtime dropped a task")
}

/// Closes the process-wide engine when the test process exits (libtest returns from `main`
/// or calls `exit`): its pool schemas are dropped and its lease given up, so the server keeps
/// nothing of the run.
fn close_at_exit() {
    extern "C" fn close() {
        let _ = std::panic::catch_unwind(|| {
            let Some(Ok(g)) = GLOBAL.get() else { return };
            let engine = g.engine.clone();
            let (tx, rx) = std::sync::mpsc::channel();
            g.rt.spawn(async move {
                let _ = tx.send(engine.close().await);
            });
            // Bounded: exiting must never hang on a dead server.
            let _ = rx.recv_timeout(std::time::Duration::from_secs(20));
        });
    }
    // SAFETY: registers a plain extern "C" function with no arguments; it touches only
    // statics that live for the whole process.
    unsafe {
        libc::atexit(close);
    }
}

/// Runs a future on the test engine's runtime and waits for it, from any thread (including a
/// thread running another tokio runtime).
pub fn block_on<F, T>(fut: F) -> T
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    wait_on(global().rt, fut)
}

/// Awaits a future on the test engine's runtime from any async context (any runtime, any
/// flavor).
async fn on_engine_runtime<F, T>(fut: F) -> T
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let g = match GLOBAL.get() {
        Some(_) => global(),
        // The first call starts the engine: off this task's thread, which may be the only
        // thread of a current-thread runtime.
        None => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            std::thread::spawn(move || {
                let _ = tx.send(std::panic::catch_unwind(|| {
                    global();
                }));
            });
            match rx.await {
                Ok(Ok(())) => global(),
                Ok(Err(p)) => std::panic::resume_unwind(p),
                Err(_) => panic!("pgisolate: the engine's start-up thread vanished"),
            }
        }
    };
    g.rt.spawn(fut).await.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
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
    block_on(cached_template(migrations))
}

/// The template for `migrations` from the process's cache, built (once per server) on a miss.
async fn cached_template(migrations: Migrations) -> Result<Template> {
    let g = global();
    let key = format!("{migrations:?}");
    if let Some(t) = g.templates.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(t);
    }
    let t = g.engine.template(migrations).await?;
    if let Ok(mut m) = g.templates.lock() {
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

/// [`schema`] for async tests: awaits instead of blocking (the current test's identity, the
/// migrations from `PGISOLATE_MIGRATIONS` or `./migrations`). Panics with the reason if the
/// schema cannot be made.
pub async fn schema_async() -> TestSchema {
    let identity = current_identity();
    let migrations = Migrations::dir(default_migrations());
    let schema = on_engine_runtime(async move {
        let tpl = cached_template(migrations).await?;
        global().engine.acquire(&tpl, identity).await
    })
    .await
    .unwrap_or_else(|e| panic!("pgisolate: {e}"));
    TestSchema { schema: Some(schema) }
}

/// A value a `#[pgisolate::test]` function can take as an argument: made from the test's
/// schema before the body runs (panicking with the reason if it cannot be).
pub trait Inject: Sized {
    /// Makes the value for `schema`.
    fn inject(schema: &TestSchema) -> impl std::future::Future<Output = Self>;
}

impl Inject for tokio_postgres::Client {
    /// A connection whose session lands in the schema, driven by the test's runtime.
    async fn inject(schema: &TestSchema) -> Self {
        let (client, conn) = tokio_postgres::connect(schema.url(), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("pgisolate: connect to schema {}: {e}", schema.name()));
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }
}

#[cfg(feature = "sqlx")]
impl Inject for sqlx::PgPool {
    /// A pool whose sessions land in the schema (at most 4 connections).
    async fn inject(schema: &TestSchema) -> Self {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(schema.url())
            .await
            .unwrap_or_else(|e| panic!("pgisolate: sqlx pool for schema {}: {e}", schema.name()))
    }
}

/// What `#[pgisolate::test]` expands to calls; not an API of its own.
#[doc(hidden)]
pub mod __private {
    use super::*;

    /// The test's schema: identity from the macro (module path, test name), migrations from
    /// the attribute or the default, fixtures run in it.
    pub fn acquire(module: &str, test: &str, migrations: Option<&str>, fixtures: &[&str]) -> TestSchema {
        let migrations = Migrations::dir(migrations.map(PathBuf::from).unwrap_or_else(default_migrations));
        let schema = try_schema(migrations, Identity::new(module, test)).unwrap_or_else(|e| panic!("pgisolate: {e}"));
        for f in fixtures {
            let sql = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("pgisolate: fixture {f}: {e}"));
            let (url, file) = (schema.url().to_owned(), f.to_string());
            let done: std::result::Result<(), String> = block_on(async move {
                let (client, conn) =
                    tokio_postgres::connect(&url, tokio_postgres::NoTls).await.map_err(|e| e.to_string())?;
                let driver = tokio::spawn(conn);
                let r = client.batch_execute(&sql).await.map_err(|e| crate::error::describe_pg(&e).1);
                drop(client);
                let _ = driver.await;
                r
            });
            if let Err(e) = done {
                panic!("pgisolate: fixture {file} failed in schema {}: {e}", schema.name());
            }
        }
        schema
    }

    /// Runs an async test body on a runtime of its own (current-thread, as `#[tokio::test]`).
    pub fn run<F: std::future::Future>(fut: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("pgisolate: cannot start the test's runtime: {e}"))
            .block_on(fut)
    }
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
            let (name, url, identity) = (s.name().to_owned(), s.url().to_owned(), s.identity().display());
            match block_on(async move { s.finish(failed).await }) {
                Ok(crate::Released::Kept) => eprintln!("{}", crate::kept_line(&name, &identity, &url)),
                Ok(_) => {}
                Err(e) => eprintln!("pgisolate: warning: release of {name} failed: {e}"),
            }
        }
    }
}
