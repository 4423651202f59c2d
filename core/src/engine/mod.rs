//! The engine: one per process. Split by idea, each file adding its part of `Engine` and of
//! the shared state `Inner` (defined here with its small helpers):
//!
//! - `start`: start-up (server, lease, registry, the `public` guard) and close;
//! - `build`: templates (from migrations, or built by the caller's tool) and their capture;
//! - `acquire`: handing out a schema under its deterministic name;
//! - `release`: keep, recycle or drop a released schema;
//! - `settle`: ending a released schema's sessions, and drops in the background;
//! - `pool`: the warm pool of ready schemas, and recycling;
//! - `gc`: gc, listing, dropping by name, templates' pruning;
//! - `watch`: the lease's heartbeat, re-taking it after a dropped connection, and what a
//!   fenced (lost) lease means for the schemas handed out under it.
//!
//! A file's own helpers are private to it; what another file calls is `pub(super)`, and the
//! files depend on each other without cycles (checked by `core/tests/structure.rs`).

mod acquire;
pub(crate) mod build;
pub(crate) mod gc;
mod pool;
mod release;
mod settle;
mod start;
mod watch;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore};

use tokio_postgres::Client;

use crate::admin::AdminPool;
use crate::budget::Budget;
use crate::config::Config;
use crate::conninfo::{self, ConnInfo};
use crate::error::{Error, Result};
use crate::lease::Lease;
use crate::naming;
use crate::server::Server;
use crate::template::Template;

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
    lease: tokio::sync::Mutex<Option<Lease>>,
    /// The owner key of the lease held now: a new one after the old was fenced.
    owner: AtomicI32,
    /// Whether the lease connection is down, and the owner keys this engine lost.
    lease_state: Mutex<watch::LeaseState>,
    /// Woken when the lease is held again (re-taken, or a new one after a fence).
    lease_changed: Notify,
    /// Wakes the heartbeat early (an acquire found the lease fenced).
    lease_nudge: Notify,
    /// Woken after each beat.
    beat_done: Notify,
    run_id: String,
    host: String,
    server: Option<Server>,
    runtime: tokio::runtime::Handle,
    closed: AtomicBool,
    templates: Mutex<HashMap<String, Template>>,
    pending: Arc<AtomicUsize>,
    idle: Arc<Notify>,
    pools: Mutex<HashMap<String, pool::PoolState>>,
    /// Woken whenever a recycled schema goes back into a pool (or fails to).
    pool_returns: tokio::sync::Notify,
    /// The one connection resets run on: each reads every sequence of its schema, and a
    /// connection that has opened them before does it ten times faster.
    reset_conn: tokio::sync::Mutex<Option<pool::ResetConn>>,
    /// Sequences (oids, quoted names) of the pool schemas reset before, by schema oid.
    known_sequences: Mutex<HashMap<u32, pool::KnownSequences>>,
    drop_slots: Arc<Semaphore>,
    /// Per identity hash, the first name candidate not yet handed out by this engine: a name
    /// is never handed out twice by a live engine, so a leaked pool of an earlier test that
    /// reconnects with its URL finds no schema instead of the next test's (R5).
    next_candidate: Mutex<HashMap<String, usize>>,
    /// The server's `server_version_num` (its major version says which pg_dump can capture
    /// its templates; the whole number keys the capture cache).
    server_version: i32,
    /// The pg_dump that captures templates, or why there is none (looked for at first use).
    pg_dump: std::sync::OnceLock<std::result::Result<std::path::PathBuf, String>>,
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
    /// Warnings not yet taken by [`Engine::take_warnings`] (when `collect_warnings` is set).
    warnings: Mutex<Vec<String>>,
    /// Templates whose shadowing tables this engine has warned about.
    warned_templates: Mutex<std::collections::HashSet<String>>,
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
        self.inner.warnings.lock().map(|mut w| std::mem::take(&mut *w)).unwrap_or_default()
    }

    /// Waits (up to the release timeout plus 5 s) for background work: pool refills and
    /// deferred drops.
    pub async fn flush(&self) {
        self.inner.wait_idle(self.inner.cfg.release_timeout + Duration::from_secs(5)).await;
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
        self.owner.load(Ordering::SeqCst)
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
                // One line each: bindings hand them over newline-separated.
                let msg = msg.replace(['\r', '\n'], " ");
                if let Ok(mut w) = self.warnings.lock() {
                    if w.len() < 1000 && !w.contains(&msg) {
                        w.push(msg);
                    }
                }
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

    pub(crate) fn begin_background(&self) {
        self.pending.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn end_background(&self) {
        if self.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// A callback ending one unit of background work, for tasks that do not hold the engine.
    pub(crate) fn background_done(&self) -> impl FnOnce() + Send + 'static {
        let (pending, idle) = (self.pending.clone(), self.idle.clone());
        move || {
            if pending.fetch_sub(1, Ordering::SeqCst) == 1 {
                idle.notify_waiters();
            }
        }
    }

    pub(crate) async fn wait_idle(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, async {
            loop {
                let notified = self.idle.notified();
                if self.pending.load(Ordering::SeqCst) == 0 {
                    break;
                }
                notified.await;
            }
        })
        .await;
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
