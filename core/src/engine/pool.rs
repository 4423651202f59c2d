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

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Inner;
use crate::admin::{ident, literal, transaction};
use crate::conninfo;
use crate::drop;
use crate::drop::{parse_pids, sessions_sql};
use crate::error::{Error, Result};
use crate::markers::{self, Kind};
use crate::registry;
use crate::template::Template;

/// The connection resets run on, with their statements prepared once (parsing and planning
/// them for each reset cost more than running them).
#[derive(Debug)]
pub(crate) struct ResetConn {
    conn: crate::admin::Counted,
    changes: tokio_postgres::Statement,
    known: tokio_postgres::Statement,
    /// When the last reset on it ended: closed after [`crate::admin::IDLE_CLOSE`] without one.
    used: Instant,
}

impl ResetConn {
    /// Opens the connection, counted in the engine's connection budget.
    async fn open(pool: &Arc<crate::admin::AdminPool>) -> Result<ResetConn> {
        let conn = pool.counted().await?;
        let prepare = |sql: &'static str| {
            let client = &conn.client;
            async move { client.prepare(sql).await.map_err(|e| Error::db("prepare the reset queries", e)) }
        };
        let changes = prepare(crate::recycle::reset::Plan::CHANGES_SQL).await?;
        let known = prepare(crate::recycle::reset::Plan::CHANGES_KNOWN_SQL).await?;
        Ok(ResetConn { conn, changes, known, used: Instant::now() })
    }
}

/// A reset schema's sequences: oids and quoted names, in the same order.
pub(crate) type KnownSequences = Arc<(Vec<u32>, Vec<String>)>;

/// A ready schema in the pool.
#[derive(Debug, Clone)]
pub(crate) struct Ready {
    pub(crate) name: String,
    /// With login roles: the NOLOGIN role that already owns the schema.
    pub(crate) role: Option<String>,
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

fn pool_name() -> String {
    format!("pgi_pool_{}", crate::secret::random_hex(20))
}

impl Inner {
    /// Starts keeping `pool_size` ready schemas for `tpl` (no-op when pooling is off).
    pub(crate) fn ensure_pool(self: &Arc<Self>, tpl: &Template) {
        if self.cfg.pool_size == 0 || self.is_closed() {
            return;
        }
        let start = {
            let Ok(mut pools) = self.pools.lock() else { return };
            let st = pools.entry(tpl.fingerprint.clone()).or_insert_with(|| PoolState {
                template: tpl.clone(),
                ready: Vec::new(),
                filling: false,
                recyclable: true,
                recycling: 0,
                replay_cost: Duration::ZERO,
            });
            // Schemas being recycled are on their way back: replaying more would overshoot.
            if !st.filling && st.ready.len() + st.recycling < self.cfg.pool_size {
                st.filling = true;
                true
            } else {
                false
            }
        };
        if start {
            let me = self.clone();
            let fp = tpl.fingerprint.clone();
            self.begin_background();
            self.runtime.spawn(async move {
                me.refill(&fp).await;
                me.end_background();
            });
        }
    }

    /// Forgets every pool's ready schemas: they were made under a lease gc fenced, and may be
    /// reaped any moment (the engine drops those left in the background).
    pub(super) fn forget_pools(&self) {
        if let Ok(mut pools) = self.pools.lock() {
            for st in pools.values_mut() {
                st.ready.clear();
            }
        }
    }

    async fn refill(&self, fp: &str) {
        loop {
            let tpl = {
                let Ok(mut pools) = self.pools.lock() else { return };
                let Some(st) = pools.get_mut(fp) else { return };
                if self.is_closed() || st.ready.len() + st.recycling >= self.cfg.pool_size {
                    st.filling = false;
                    return;
                }
                st.template.clone()
            };
            let started = Instant::now();
            match self.make_pool_schema(&tpl).await {
                Ok(ready) => {
                    let Ok(mut pools) = self.pools.lock() else { return };
                    if let Some(st) = pools.get_mut(fp) {
                        st.ready.push(ready);
                        st.replay_cost = started.elapsed();
                    }
                    drop(pools);
                    self.pool_returns.notify_waiters();
                }
                Err(e) => {
                    self.warn(&format!("could not fill the pool for {}: {e}", tpl.schema));
                    if let Ok(mut pools) = self.pools.lock() {
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
        let admin = self.pool.get().await?;
        let name = pool_name();
        // With login roles, the role is made and given the schema here, ahead of time.
        let role = self.cfg.login_role.then(crate::role::new_role);
        let sql = format!(
            "BEGIN; {internal} {held} CREATE SCHEMA {n}; {comment}\n{replay}\n; {prepare} COMMIT;",
            internal = registry::INTERNAL,
            held = registry::held_sql(self.owner()),
            n = ident(&name),
            comment = markers::comment_sql(&name, Kind::Pool, self.owner()),
            replay = tpl.replay_sql(&name),
            prepare = role
                .as_deref()
                .map(|r| crate::role::prepare_sql(&name, r, self.owner(), self.db_oid))
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
    pub(crate) async fn take_ready(self: &Arc<Self>, tpl: &Template) -> Option<Ready> {
        let deadline = Instant::now() + self.replay_cost(tpl);
        loop {
            let returned = self.pool_returns.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            let (taken, waiting) = match self.pools.lock() {
                Ok(mut pools) => match pools.get_mut(&tpl.fingerprint) {
                    Some(st) => (st.ready.pop(), st.recycling > 0),
                    None => (None, false),
                },
                Err(_) => (None, false),
            };
            let now = Instant::now();
            if taken.is_some() || !waiting || now >= deadline || self.is_closed() {
                self.ensure_pool(tpl);
                return taken;
            }
            let _ = tokio::time::timeout(deadline - now, returned).await;
        }
    }

    fn replay_cost(&self, tpl: &Template) -> Duration {
        self.pools.lock().ok().and_then(|p| p.get(&tpl.fingerprint).map(|st| st.replay_cost)).unwrap_or_default()
    }

    /// Counts a recycle of `fp` in flight (`+1`) or done (`-1`), waking waiting acquires.
    fn recycling(&self, fp: &str, starts: bool) {
        if let Ok(mut pools) = self.pools.lock() {
            if let Some(st) = pools.get_mut(fp) {
                st.recycling = if starts { st.recycling + 1 } else { st.recycling.saturating_sub(1) };
            }
        }
        if !starts {
            self.pool_returns.notify_waiters();
        }
    }

    /// Puts a recycled schema back; false when the pool is full (the caller drops it).
    fn give_back(&self, fp: &str, ready: Ready) -> std::result::Result<(), Ready> {
        let Ok(mut pools) = self.pools.lock() else { return Err(ready) };
        match pools.get_mut(fp) {
            Some(st) if st.ready.len() < self.cfg.pool_size.max(1) * 2 && !self.is_closed() => {
                st.ready.push(ready);
                Ok(())
            }
            _ => Err(ready),
        }
    }

    /// The template of a pool, if this engine pools it.
    fn pooled_template(&self, fp: &str) -> Option<Template> {
        self.pools.lock().ok()?.get(fp).filter(|st| st.recyclable).map(|st| st.template.clone())
    }

    /// Tries to recycle `name` into its template's pool: if no DDL ran in it, one quick
    /// transaction renames it away (freeing the name) and a background task ends the sessions
    /// the release saw, resets its rows and puts it back in the pool. True when the schema was
    /// taken over that way.
    pub(crate) async fn try_recycle(
        self: &Arc<Self>,
        client: &tokio_postgres::Client,
        name: &str,
        identity: &str,
        fp: &str,
        role: Option<&str>,
    ) -> bool {
        if !self.recycles() {
            return false;
        }
        let Some(tpl) = self.pooled_template(fp) else { return false };
        if tpl.seed_sql.is_none() {
            return false;
        }
        let fresh = pool_name();
        let sql = format!(
            "BEGIN; {internal} SET LOCAL lock_timeout = '1s'; {held} {check} \
             ALTER SCHEMA {n} RENAME TO {f}; {comment} UPDATE pgisolate.leases SET state = 'released' WHERE schema_name = {nl}; \
             {nologin} SELECT {fl}::pg_catalog.regnamespace::pg_catalog.oid; COMMIT; {sessions}",
            nologin = role.map(|r| format!("ALTER ROLE {} NOLOGIN;", ident(r))).unwrap_or_default(),
            internal = registry::INTERNAL,
            held = registry::held_sql(self.owner()),
            // Event triggers' record where they run, else the catalog compared with the hand-out.
            check = if self.ddl_watch {
                crate::recycle::untouched_sql(name)
            } else {
                format!("SELECT pgisolate.check_unchanged({});", literal(name))
            },
            nl = literal(name),
            n = ident(name),
            f = ident(&fresh),
            fl = literal(&ident(&fresh)),
            comment = markers::comment_sql(&fresh, Kind::Pool, self.owner()),
            sessions = sessions_sql(name, role),
        );
        let (ns, pids) = match client.simple_query(&sql).await {
            // The batch's last two rows: the schema's oid under its new name, then the sessions.
            Ok(rows) => (drop::row_from_end(&rows, 1).and_then(|v| v.parse::<u32>().ok()), parse_pids(rows)),
            Err(e) => {
                let _ = client.batch_execute("ROLLBACK").await;
                // P0001 is the "DDL ran here" check: dropping is the expected outcome then.
                if e.code().map(|c| c.code()) != Some("P0001") {
                    self.warn(&format!(
                        "could not recycle {name}, dropping it instead: {}",
                        crate::error::describe_pg(&e).1
                    ));
                }
                return false;
            }
        };
        let me = self.clone();
        let (fp, name, identity) = (fp.to_owned(), name.to_owned(), identity.to_owned());
        let old_role = role.map(str::to_owned);
        self.begin_background();
        self.recycling(&fp, true);
        self.runtime.spawn(async move {
            if let Ok(admin) = me.pool.get_teardown().await {
                me.settle(&admin, &pids, &name, &identity).await;
            }
            let ready = match me.reset(&tpl, &fresh, ns).await {
                // A login role is never reused: a leaked connection of the last test could log
                // in again as it. The schema goes to a fresh role and the old one is dropped.
                true => match old_role {
                    Some(old) => me.hand_over(&fresh, &old).await.map(|r| Ready { name: fresh.clone(), role: Some(r) }),
                    None => Some(Ready { name: fresh.clone(), role: None }),
                },
                false => None,
            };
            match ready {
                Some(r) => {
                    if let Err(back) = me.give_back(&fp, r) {
                        me.defer_drop(back.name, None);
                    }
                }
                None => me.defer_drop(fresh, None),
            }
            me.recycling(&fp, false);
            if let Some(tpl) = me.pooled_template(&fp) {
                me.ensure_pool(&tpl);
            }
            me.end_background();
        });
        true
    }

    /// Gives recycled `schema` to a fresh NOLOGIN role and drops `old`; the new role's name.
    async fn hand_over(&self, schema: &str, old: &str) -> Option<String> {
        let admin = self.pool.get().await.ok()?;
        let role = crate::role::new_role();
        let sql = format!("BEGIN; {} COMMIT;", crate::role::handover_sql(old, &role, self.owner(), self.db_oid));
        if let Err(e) = transaction(&admin, &sql).await {
            self.warn(&format!(
                "could not give recycled {schema} a new role, dropping it: {}",
                crate::error::describe_pg(&e).1
            ));
            return None;
        }
        if let Err(e) = crate::role::drop_role(&admin, old).await {
            self.warn(&format!("could not drop role {old} (gc will): {e}"));
        }
        Some(role)
    }

    /// Gives `schema` (oid `ns`, as its release read it) the template's rows and sequence
    /// positions again, in one transaction, touching only the tables the test wrote and the
    /// sequences that moved ([`crate::recycle::reset`]). When that fails for a template (foreign keys
    /// in a cycle, say), its schemas are dropped from then on.
    async fn reset(&self, tpl: &Template, schema: &str, ns: Option<u32>) -> bool {
        if tpl.seed_sql.is_none() {
            return false;
        }
        let mut conn = self.reset_conn.lock().await;
        if conn.as_ref().is_none_or(|c| c.conn.client.is_closed()) {
            *conn = None; // its slot goes back before a new one is counted
            *conn = ResetConn::open(&self.pool).await.ok();
        }
        let done = self.reset_on(conn.as_ref(), tpl, schema, ns).await;
        match conn.as_mut() {
            // With one admin connection to spare, the resets' is not kept between resets.
            Some(_) if self.pool.cap() <= 1 => *conn = None,
            Some(rc) => rc.used = Instant::now(),
            None => {}
        }
        done
    }

    /// Closes the resets' connection when no reset used it for [`crate::admin::IDLE_CLOSE`].
    pub(super) fn close_idle_reset(&self) {
        if let Ok(mut conn) = self.reset_conn.try_lock() {
            if conn.as_ref().is_some_and(|c| c.used.elapsed() >= crate::admin::IDLE_CLOSE) {
                *conn = None;
            }
        }
    }

    async fn reset_on(&self, rc: Option<&ResetConn>, tpl: &Template, schema: &str, ns: Option<u32>) -> bool {
        let Some(rc) = rc else { return false };
        let admin = &rc.conn.client;
        let plan = &tpl.reset;
        let (written, moved) = if plan.tracked() {
            // The release's batch read the schema's oid; without it, nothing is known to reset.
            let Some(ns) = ns else { return false };
            match self.changes(rc, plan, ns).await {
                Ok(changes) => changes,
                Err(e) => {
                    self.warn(&format!(
                        "could not read what the test changed in {schema}, dropping it: {}",
                        crate::error::describe_pg(&e).1
                    ));
                    return false;
                }
            }
        } else {
            plan.everything()
        };
        let Some(steps) = plan.reset_sql(schema, &written, &moved, self.superuser) else { return true };
        let sql =
            format!("BEGIN; {internal} SET LOCAL lock_timeout = '2s';\n{steps}COMMIT;", internal = registry::INTERNAL);
        match transaction(admin, &sql).await {
            Ok(()) => true,
            Err(e) => {
                self.stop_recycling(&tpl.fingerprint);
                self.warn(&format!(
                    "could not reset {schema} for reuse ({}); schemas of template {} are dropped at release from now on",
                    crate::error::describe_pg(&e).1,
                    tpl.schema
                ));
                false
            }
        }
    }

    /// The tables a test wrote in the schema of oid `ns` (clearing their notes) and the
    /// sequences it moved.
    /// A recycled schema keeps its sequences: their oids are remembered after its first reset.
    async fn changes(
        &self,
        rc: &ResetConn,
        plan: &crate::recycle::reset::Plan,
        ns: u32,
    ) -> std::result::Result<(Vec<String>, Vec<String>), tokio_postgres::Error> {
        let admin = &rc.conn.client;
        let known = self.known_sequences.lock().ok().and_then(|m| m.get(&ns).cloned());
        if let Some(known) = known {
            let row = admin.query_one(&rc.known, &[&ns, &known.0]).await?;
            return Ok((row.get(0), plan.moved(&known.1, &row.get::<_, Vec<Option<i64>>>(1))));
        }
        let row = admin.query_one(&rc.changes, &[&ns]).await?;
        let (oids, names): (Vec<u32>, Vec<String>) = (row.get(1), row.get(2));
        let moved = plan.moved(&names, &row.get::<_, Vec<Option<i64>>>(3));
        if let Ok(mut m) = self.known_sequences.lock() {
            // Bounded: schemas that were dropped leave entries behind.
            if m.len() >= 8 * self.cfg.pool_size.max(4) {
                m.clear();
            }
            m.insert(ns, Arc::new((oids, names)));
        }
        Ok((row.get(0), moved))
    }

    /// Released schemas of `fp` are dropped instead of recycled from now on.
    fn stop_recycling(&self, fp: &str) {
        if let Ok(mut pools) = self.pools.lock() {
            if let Some(st) = pools.get_mut(fp) {
                st.recyclable = false;
            }
        }
    }

    /// Drops every ready schema of every pool (at close).
    pub(crate) async fn drain_pools(&self) {
        let names: Vec<String> = match self.pools.lock() {
            Ok(mut pools) => pools.values_mut().flat_map(|st| std::mem::take(&mut st.ready)).map(|r| r.name).collect(),
            Err(_) => return,
        };
        if names.is_empty() {
            return;
        }
        if let Ok(admin) = self.pool.get_teardown().await {
            for n in names {
                let apps = vec![conninfo::application_name(&n)];
                let _ = drop::drop_schema(&admin, &n, &apps, Instant::now() + Duration::from_secs(10)).await;
            }
        }
    }
}
