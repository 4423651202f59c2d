//! The engine: one per process. Split by idea, each file adding its part of `Engine`; the
//! state they share is `Inner` (defined and implemented here), made of parts each owned by one
//! file, which alone touches its fields (checked by `core/tests/structure.rs`):
//!
//! - `start`: start-up (server, lease, registry, the `public` guard) and close;
//! - `build/`: templates (from migrations, or built by the caller's tool), their capture and
//!   publishing; owns the template cache (`TemplateCache`);
//! - `acquire`: handing out a schema under its deterministic name;
//! - `release`: keep, recycle or drop a released schema;
//! - `settle`: ending a released schema's sessions, and drops in the background; owns the
//!   background work (`Background`);
//! - `pool`: the warm pool of ready schemas; owns the pools (`Pools`);
//! - `recycling`: whether and how a released schema goes back into its pool; owns the reset
//!   connection (`Resets`);
//! - `gc`: gc, listing, dropping by name, templates' pruning, the end-of-run report;
//! - `watch`: the lease's heartbeat, re-taking it after a dropped connection, and what a
//!   fenced (lost) lease means for the schemas handed out under it; owns the lease cell
//!   (`LeaseCell`);
//! - `warnings`: the warnings collected for the binding (`Warnings`).
//!
//! A file's own helpers are private to it; what another file calls is `pub(super)`, and the
//! files depend on each other without cycles (checked by `core/tests/structure.rs`).

mod acquire;
pub(crate) mod build;
mod database;
pub(crate) mod gc;
mod pool;
mod recycling;
mod release;
mod settle;
mod start;
mod warnings;
mod watch;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::admin::AdminPool;
use crate::budget::Budget;
use crate::config::Config;
use crate::conninfo::{self, ConnInfo};
use crate::error::{Error, Result};
use crate::naming;
use crate::server::Server;

/// The isolation engine. Cheap to clone; all clones share one lease and one set of admin
/// connections. Create one per process with [`Engine::start`].
#[derive(Clone, Debug)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// The state every part of the engine shares (its fields are private to the `engine` module).
pub(crate) struct Inner {
    cfg: Config,
    url: String,
    url_form: ConnInfo,
    kv_form: ConnInfo,
    pool: Arc<AdminPool>,
    /// The lease held now, its owner key and its connection's state (watch.rs).
    lease: watch::LeaseCell,
    run_id: String,
    host: String,
    server: Option<Server>,
    runtime: tokio::runtime::Handle,
    closed: AtomicBool,
    /// Templates this engine found or built, and its pg_dump (build/).
    templates: build::TemplateCache,
    /// Background work in flight (releases, drops, pool fills) and the drop slots (settle.rs).
    background: settle::Background,
    /// The warm pools of ready schemas (pool.rs).
    pools: pool::Pools,
    /// The connection resets run on (recycling.rs).
    resets: recycling::Resets,
    /// Per identity hash, the first name candidate not yet handed out by this engine: a name
    /// is never handed out twice by a live engine, so a leaked pool of an earlier test that
    /// reconnects with its URL finds no schema instead of the next test's (R5).
    next_candidate: Mutex<HashMap<String, usize>>,
    /// The server's `server_version_num` (its major version says which pg_dump can capture
    /// its templates; the whole number keys the capture cache).
    server_version: i32,
    /// The database's oid (marks per-schema roles, which are cluster-wide).
    db_oid: u32,
    /// Event triggers record which schemas ran DDL (needs a superuser); without them, a
    /// released schema's catalog rows are compared with its hand-out (`check_unchanged`).
    ddl_watch: bool,
    /// The engine's role is a superuser: a recycled schema is reset with triggers and foreign
    /// keys off; otherwise by TRUNCATE, then the seed rows with user triggers off.
    superuser: bool,
    redis: Option<crate::cache::Redis>,
    /// Schema `extensions` exists (made by PGISOLATE_EXTENSIONS or by moving an extension a
    /// migration created out of a build): it joins every search_path.
    ext_in_tail: AtomicBool,
    /// Warnings not yet taken, and the templates already warned about (warnings.rs).
    warnings: warnings::Warnings,
    /// The server's connection slots and who held them at the last beat.
    budget: Mutex<Option<Budget>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("url", &conninfo::redact(&self.url))
            .field("owner", &self.owner())
            .field("run_id", &self.run_id)
            .field("embedded", &self.server.is_some())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Starts an engine configured from the environment ([`Config::from_env`]).
    pub async fn from_env() -> Result<Engine> {
        Engine::start(Config::from_env()?).await
    }

    /// The admin connection string (superuser URL of the embedded server, or the configured one).
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Whether this engine uses the embedded server.
    pub fn is_embedded(&self) -> bool {
        self.inner.server.is_some()
    }

    /// The embedded server, if used.
    pub fn server(&self) -> Option<&Server> {
        self.inner.server.as_ref()
    }

    /// This engine's owner key (its lease).
    pub fn owner(&self) -> i32 {
        self.inner.owner()
    }

    /// The run id recorded with every schema.
    pub fn run_id(&self) -> &str {
        &self.inner.run_id
    }

    /// The engine's own admin connections: open now, and the most open at once so far (the
    /// lease connection is one more). The cap follows the server's budget (docs/behaviour.md,
    /// "Connections").
    pub fn admin_connections(&self) -> (usize, usize) {
        self.inner.pool.counts()
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.inner.cfg
    }

    /// Warnings collected since the last call (when [`Config::collect_warnings`] is set), for
    /// bindings that hand them to their test runner. Each is one line.
    pub fn take_warnings(&self) -> Vec<String> {
        self.inner.warnings.take()
    }

    /// Waits (up to the release timeout plus 5 s) for background work: pool refills and
    /// deferred drops.
    pub async fn flush(&self) {
        self.inner.background.wait_idle(self.inner.cfg.release_timeout + Duration::from_secs(5)).await;
    }
}

impl Inner {
    /// Sizes the admin pool to the server's budget (read at a beat) and keeps it for
    /// [`Inner::wait_to_fit`].
    pub(crate) fn resize(&self, b: Budget) {
        let (cap, keep) = b.caps(self.cfg.test_connections, self.cfg.max_admin_connections);
        self.pool.set_cap(cap, keep);
        if let Ok(mut last) = self.budget.lock() {
            *last = Some(b);
        }
    }

    /// Before a hand-out: when the last budget says the server cannot fit every engine's
    /// connections and its tests', waits up to [`crate::budget::FIT_WAIT`] for slots to free
    /// up (re-reading through `admin`), then fails with [`Budget::no_room`]. A test never
    /// starts on a server that would refuse its connection.
    pub(crate) async fn wait_to_fit(&self, admin: &Client) -> Result<()> {
        let t = self.cfg.test_connections;
        let last = self.budget.lock().ok().and_then(|b| *b);
        if last.is_none_or(|b| b.fits(t)) {
            return Ok(());
        }
        let since = Instant::now();
        loop {
            let b = Budget::read(admin).await?;
            self.resize(b);
            if b.fits(t) {
                return Ok(());
            }
            if since.elapsed() >= crate::budget::FIT_WAIT {
                return Err(b.no_room(t, since.elapsed()));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The owner key of the lease held now.
    pub(crate) fn owner(&self) -> i32 {
        self.lease.owner()
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed("the pgisolate engine is closed".into()));
        }
        Ok(())
    }

    pub(crate) fn warn(&self, msg: &str) {
        match &self.cfg.on_warning {
            Some(w) => w(msg),
            None if self.cfg.collect_warnings => {
                self.warnings.push(msg);
            }
            None => eprintln!("pgisolate: warning: {msg}"),
        }
    }

    /// The schemas after a test's own in its search_path: the configured tail, plus
    /// `extensions` once a build moved an extension there.
    pub(crate) fn tail(&self) -> Vec<String> {
        let mut t = self.cfg.search_path_tail.clone();
        if self.ext_in_tail.load(Ordering::SeqCst) && !t.iter().any(|x| x == "extensions") {
            t.push("extensions".to_owned());
        }
        t
    }

    /// Whether released schemas whose DDL did not change go back to the pool: asked for
    /// (`recycle`, a pool) and the engine still open.
    fn recycles(&self) -> bool {
        self.cfg.wants_recycling() && !self.is_closed()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Deletes the Redis keys under `schema`'s cache prefix, when Redis is configured; a
    /// failure is a warning, never a failed release.
    pub(crate) async fn delete_cache_keys(&self, schema: &str) {
        let Some(target) = &self.redis else { return };
        let prefix = naming::cache_prefix(&self.cfg.prefix, schema);
        if let Err(e) = target.delete_prefix(&prefix).await {
            self.warn(&format!("could not delete the Redis keys {prefix}* of {schema}: {e}"));
        }
    }
}
