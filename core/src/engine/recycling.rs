//! Recycling a released schema: whether it may go back to its template's pool (no DDL ran,
//! checked by the DDL watch or the catalog), the reset of what its test wrote
//! ([`crate::recycle::reset`]) on one connection kept for resets, and the hand-over into the
//! pool ([`super::pool`] keeps the pools).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::pool::{pool_name, Ready};
use super::Engine;
use crate::admin::{ident, literal, transaction};
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

/// The connection resets run on and what it learned. Only this file touches its fields.
#[derive(Default)]
pub(crate) struct Resets {
    /// The one connection resets run on: each reads every sequence of its schema, and a
    /// connection that has opened them before does it ten times faster.
    conn: tokio::sync::Mutex<Option<ResetConn>>,
    /// Sequences (oids, quoted names) of the pool schemas reset before, by schema oid.
    known_sequences: Mutex<HashMap<u32, KnownSequences>>,
}

impl Resets {
    /// Closes the reset connection (the engine closes).
    pub(super) async fn close(&self) {
        self.conn.lock().await.take();
    }

    /// Drops the reset connection unless a reset holds it (the lease was re-taken: the
    /// connection may be dead).
    pub(super) fn drop_conn(&self) {
        if let Ok(mut r) = self.conn.try_lock() {
            r.take();
        }
    }
}

impl Engine {
    /// Tries to recycle `name` into its template's pool: if no DDL ran in it, one quick
    /// transaction renames it away (freeing the name) and a background task ends the sessions
    /// the release saw, resets its rows and puts it back in the pool. True when the schema was
    /// taken over that way.
    pub(crate) async fn try_recycle(
        &self,
        client: &tokio_postgres::Client,
        name: &str,
        identity: &str,
        fp: &str,
        role: Option<&str>,
    ) -> bool {
        if !self.inner.recycles() {
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
            held = registry::held_sql(self.inner.owner()),
            // Event triggers' record where they run, else the catalog compared with the hand-out.
            check = if self.inner.ddl_watch {
                crate::recycle::untouched_sql(name)
            } else {
                format!("SELECT pgisolate.check_unchanged({});", literal(name))
            },
            nl = literal(name),
            n = ident(name),
            f = ident(&fresh),
            fl = literal(&ident(&fresh)),
            comment = markers::comment_sql(&fresh, Kind::Pool, self.inner.owner()),
            sessions = sessions_sql(name, role),
        );
        let (ns, pids) = match client.simple_query(&sql).await {
            // The batch's last two rows: the schema's oid under its new name, then the sessions.
            Ok(rows) => (drop::row_from_end(&rows, 1).and_then(|v| v.parse::<u32>().ok()), parse_pids(rows)),
            Err(e) => {
                let _ = client.batch_execute("ROLLBACK").await;
                // P0001 is the "DDL ran here" check: dropping is the expected outcome then.
                if e.code().map(|c| c.code()) != Some("P0001") {
                    self.inner.warn(&format!(
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
        self.inner.background.begin();
        self.recycling(&fp, true);
        self.inner.runtime.spawn(async move {
            if let Ok(admin) = me.inner.pool.get_teardown().await {
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
            me.inner.background.end();
        });
        true
    }

    /// Gives recycled `schema` to a fresh NOLOGIN role and drops `old`; the new role's name.
    async fn hand_over(&self, schema: &str, old: &str) -> Option<String> {
        let admin = self.inner.pool.get().await.ok()?;
        let role = crate::role::new_role();
        let sql =
            format!("BEGIN; {} COMMIT;", crate::role::handover_sql(old, &role, self.inner.owner(), self.inner.db_oid));
        if let Err(e) = transaction(&admin, &sql).await {
            self.inner.warn(&format!(
                "could not give recycled {schema} a new role, dropping it: {}",
                crate::error::describe_pg(&e).1
            ));
            return None;
        }
        if let Err(e) = crate::role::drop_role(&admin, old).await {
            self.inner.warn(&format!("could not drop role {old} (gc will): {e}"));
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
        let mut conn = self.inner.resets.conn.lock().await;
        if conn.as_ref().is_none_or(|c| c.conn.client.is_closed()) {
            *conn = None; // its slot goes back before a new one is counted
            *conn = ResetConn::open(&self.inner.pool).await.ok();
        }
        let done = self.reset_on(conn.as_ref(), tpl, schema, ns).await;
        match conn.as_mut() {
            // With one admin connection to spare, the resets' is not kept between resets.
            Some(_) if self.inner.pool.cap() <= 1 => *conn = None,
            Some(rc) => rc.used = Instant::now(),
            None => {}
        }
        done
    }

    /// Closes the resets' connection when no reset used it for [`crate::admin::IDLE_CLOSE`].
    pub(super) fn close_idle_reset(&self) {
        if let Ok(mut conn) = self.inner.resets.conn.try_lock() {
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
                    self.inner.warn(&format!(
                        "could not read what the test changed in {schema}, dropping it: {}",
                        crate::error::describe_pg(&e).1
                    ));
                    return false;
                }
            }
        } else {
            plan.everything()
        };
        let Some(steps) = plan.reset_sql(schema, &written, &moved, self.inner.superuser) else { return true };
        let sql =
            format!("BEGIN; {internal} SET LOCAL lock_timeout = '2s';\n{steps}COMMIT;", internal = registry::INTERNAL);
        match transaction(admin, &sql).await {
            Ok(()) => true,
            Err(e) => {
                self.stop_recycling(&tpl.fingerprint);
                self.inner.warn(&format!(
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
        let known = self.inner.resets.known_sequences.lock().ok().and_then(|m| m.get(&ns).cloned());
        if let Some(known) = known {
            let row = admin.query_one(&rc.known, &[&ns, &known.0]).await?;
            return Ok((row.get(0), plan.moved(&known.1, &row.get::<_, Vec<Option<i64>>>(1))));
        }
        let row = admin.query_one(&rc.changes, &[&ns]).await?;
        let (oids, names): (Vec<u32>, Vec<String>) = (row.get(1), row.get(2));
        let moved = plan.moved(&names, &row.get::<_, Vec<Option<i64>>>(3));
        if let Ok(mut m) = self.inner.resets.known_sequences.lock() {
            // Bounded: schemas that were dropped leave entries behind.
            if m.len() >= 8 * self.inner.cfg.pool_size.max(4) {
                m.clear();
            }
            m.insert(ns, Arc::new((oids, names)));
        }
        Ok((row.get(0), moved))
    }
}
