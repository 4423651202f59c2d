//! Getting ahead of the tests: a warm pool of ready schemas per template, recycling released
//! schemas whose DDL did not change, and dropping the rest off the critical path.
//!
//! - Pool: `pool_size` schemas per template (`pgi_pool_*`, marked as this engine's), made in the
//!   background by replaying the template. Acquire renames one to the test's deterministic name
//!   in the transaction that registers it: one round trip.
//! - Recycle: on release, if no DDL ran in the schema (event triggers record it as superuser;
//!   otherwise `pgisolate.check_unchanged` compares its catalog rows with its hand-out), it is
//!   renamed back into the pool after one transaction empties the tables the test wrote and
//!   restores their rows and the sequences that moved ([`crate::recycle::reset`]). Any DDL, or a lock
//!   it cannot get: it is dropped instead.
//! - Deferred drop: a released schema is renamed to a tombstone (so nothing reconnects into it)
//!   and dropped by a background task; `Engine::flush` and `Engine::close` wait for it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Engine;
use crate::admin::{ident, transaction};
use crate::conninfo;
use crate::drop;
use crate::error::{Error, Result};
use crate::markers::{self, Kind};
use crate::registry;
use crate::template::Template;

/// A ready schema in the pool.
#[derive(Debug, Clone)]
pub(crate) struct Ready {
    pub(crate) name: String,
    /// With login roles: the NOLOGIN role that already owns the schema.
    pub(crate) role: Option<String>,
}

/// The warm pools (one per template) and the wake-up of acquires waiting for a recycled
/// schema. Only this file touches its fields.
#[derive(Default)]
pub(crate) struct Pools {
    by_template: Mutex<HashMap<String, PoolState>>,
    /// Woken whenever a recycled schema goes back into a pool (or fails to).
    returns: tokio::sync::Notify,
}

/// One template's pool.
#[derive(Debug)]
pub(crate) struct PoolState {
    pub(crate) template: Template,
    pub(crate) ready: Vec<Ready>,
    pub(crate) filling: bool,
    /// False once resetting one of its schemas failed: they are dropped instead.
    pub(crate) recyclable: bool,
    /// Released schemas being reset right now, on their way back.
    pub(crate) recycling: usize,
    /// What the last replay into a new pool schema took: an acquire that finds the pool empty
    /// waits up to this long for a schema being recycled rather than replay one itself.
    pub(crate) replay_cost: Duration,
}

pub(super) fn pool_name() -> String {
    format!("pgi_pool_{}", crate::secret::random_hex(20))
}

impl Engine {
    /// Starts keeping `pool_size` ready schemas for `tpl` (no-op when pooling is off).
    pub(crate) fn ensure_pool(&self, tpl: &Template) {
        if self.inner.cfg.pool_size == 0 || self.inner.is_closed() {
            return;
        }
        let start = {
            let Ok(mut pools) = self.inner.pools.by_template.lock() else { return };
            let st = pools.entry(tpl.fingerprint.clone()).or_insert_with(|| PoolState {
                template: tpl.clone(),
                ready: Vec::new(),
                filling: false,
                recyclable: true,
                recycling: 0,
                replay_cost: Duration::ZERO,
            });
            // Schemas being recycled are on their way back: replaying more would overshoot.
            if !st.filling && st.ready.len() + st.recycling < self.inner.cfg.pool_size {
                st.filling = true;
                true
            } else {
                false
            }
        };
        if start {
            let me = self.clone();
            let fp = tpl.fingerprint.clone();
            self.inner.background.begin();
            self.inner.runtime.spawn(async move {
                me.refill(&fp).await;
                me.inner.background.end();
            });
        }
    }

    /// Forgets every pool's ready schemas: they were made under a lease gc fenced, and may be
    /// reaped any moment (the engine drops those left in the background).
    pub(super) fn forget_pools(&self) {
        if let Ok(mut pools) = self.inner.pools.by_template.lock() {
            for st in pools.values_mut() {
                st.ready.clear();
            }
        }
    }

    async fn refill(&self, fp: &str) {
        loop {
            let tpl = {
                let Ok(mut pools) = self.inner.pools.by_template.lock() else { return };
                let Some(st) = pools.get_mut(fp) else { return };
                if self.inner.is_closed() || st.ready.len() + st.recycling >= self.inner.cfg.pool_size {
                    st.filling = false;
                    return;
                }
                st.template.clone()
            };
            let started = Instant::now();
            match self.make_pool_schema(&tpl).await {
                Ok(ready) => {
                    let Ok(mut pools) = self.inner.pools.by_template.lock() else { return };
                    if let Some(st) = pools.get_mut(fp) {
                        st.ready.push(ready);
                        st.replay_cost = started.elapsed();
                    }
                    drop(pools);
                    self.inner.pools.returns.notify_waiters();
                }
                Err(e) => {
                    self.inner.warn(&format!("could not fill the pool for {}: {e}", tpl.schema));
                    if let Ok(mut pools) = self.inner.pools.by_template.lock() {
                        if let Some(st) = pools.get_mut(fp) {
                            st.filling = false;
                        }
                    }
                    return;
                }
            }
        }
    }

    async fn make_pool_schema(&self, tpl: &Template) -> Result<Ready> {
        let admin = self.inner.pool.get().await?;
        let name = pool_name();
        // With login roles, the role is made and given the schema here, ahead of time.
        let role = self.inner.cfg.login_role.then(crate::role::new_role);
        let sql = format!(
            "BEGIN; {internal} {held} CREATE SCHEMA {n}; {comment}\n{replay}\n; {prepare} COMMIT;",
            internal = registry::INTERNAL,
            held = registry::held_sql(self.inner.owner()),
            n = ident(&name),
            comment = markers::comment_sql(&name, Kind::Pool, self.inner.owner()),
            replay = tpl.replay_sql(&name),
            prepare = role
                .as_deref()
                .map(|r| crate::role::prepare_sql(&name, r, self.inner.owner(), self.inner.db_oid))
                .unwrap_or_default(),
        );
        match transaction(&admin, &sql).await {
            Ok(()) => Ok(Ready { name, role }),
            Err(e) => Err(Error::db(format!("fill the pool from template {}", tpl.schema), e)),
        }
    }

    /// Takes a ready schema of `tpl`'s pool and starts refilling. When the pool is empty but
    /// released schemas are being reset, waits for one, up to what a replay would take (a big
    /// schema's replay costs a hundred recycles).
    pub(crate) async fn take_ready(&self, tpl: &Template) -> Option<Ready> {
        let deadline = Instant::now() + self.replay_cost(tpl);
        loop {
            let returned = self.inner.pools.returns.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            let (taken, waiting) = match self.inner.pools.by_template.lock() {
                Ok(mut pools) => match pools.get_mut(&tpl.fingerprint) {
                    Some(st) => (st.ready.pop(), st.recycling > 0),
                    None => (None, false),
                },
                Err(_) => (None, false),
            };
            let now = Instant::now();
            if taken.is_some() || !waiting || now >= deadline || self.inner.is_closed() {
                self.ensure_pool(tpl);
                return taken;
            }
            let _ = tokio::time::timeout(deadline - now, returned).await;
        }
    }

    pub(super) fn replay_cost(&self, tpl: &Template) -> Duration {
        self.inner
            .pools
            .by_template
            .lock()
            .ok()
            .and_then(|p| p.get(&tpl.fingerprint).map(|st| st.replay_cost))
            .unwrap_or_default()
    }

    /// Counts a recycle of `fp` in flight (`+1`) or done (`-1`), waking waiting acquires.
    pub(super) fn recycling(&self, fp: &str, starts: bool) {
        if let Ok(mut pools) = self.inner.pools.by_template.lock() {
            if let Some(st) = pools.get_mut(fp) {
                st.recycling = if starts { st.recycling + 1 } else { st.recycling.saturating_sub(1) };
            }
        }
        if !starts {
            self.inner.pools.returns.notify_waiters();
        }
    }

    /// Puts a recycled schema back; false when the pool is full (the caller drops it).
    pub(super) fn give_back(&self, fp: &str, ready: Ready) -> std::result::Result<(), Ready> {
        let Ok(mut pools) = self.inner.pools.by_template.lock() else { return Err(ready) };
        match pools.get_mut(fp) {
            Some(st) if st.ready.len() < self.inner.cfg.pool_size.max(1) * 2 && !self.inner.is_closed() => {
                st.ready.push(ready);
                Ok(())
            }
            _ => Err(ready),
        }
    }

    /// The template of a pool, if this engine pools it.
    pub(super) fn pooled_template(&self, fp: &str) -> Option<Template> {
        self.inner.pools.by_template.lock().ok()?.get(fp).filter(|st| st.recyclable).map(|st| st.template.clone())
    }

    /// Released schemas of `fp` are dropped instead of recycled from now on.
    pub(super) fn stop_recycling(&self, fp: &str) {
        if let Ok(mut pools) = self.inner.pools.by_template.lock() {
            if let Some(st) = pools.get_mut(fp) {
                st.recyclable = false;
            }
        }
    }

    /// Drops every ready schema of every pool (at close).
    pub(crate) async fn drain_pools(&self) {
        let names: Vec<String> = match self.inner.pools.by_template.lock() {
            Ok(mut pools) => pools.values_mut().flat_map(|st| std::mem::take(&mut st.ready)).map(|r| r.name).collect(),
            Err(_) => return,
        };
        if names.is_empty() {
            return;
        }
        if let Ok(admin) = self.inner.pool.get_teardown().await {
            for n in names {
                let apps = vec![conninfo::application_name(&n)];
                let _ = drop::drop_schema(&admin, &n, &apps, Instant::now() + Duration::from_secs(10)).await;
            }
        }
    }
}
