//! Releasing a schema: kept per the keep policy, recycled into the pool when no DDL ran in
//! it, else renamed to a tombstone (freeing the name at once) and dropped.

use std::time::Instant;

use super::settle::Settle;
use super::Engine;
use crate::admin::{exec, ident, literal};
use crate::conninfo;
use crate::drop::{self, parse_pids, sessions_sql};
use crate::error::{Error, Result};
use crate::markers::{self, Kind};
use crate::registry;
use crate::schema::{Released, Releaser, Ticket};

/// A schema's handle on its engine ([`Releaser`]).
#[derive(Debug)]
pub(super) struct Handle(pub(super) Engine);

impl Releaser for Handle {
    fn release(
        &self,
        t: Ticket,
        failed: bool,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Released>> + Send + '_>> {
        Box::pin(async move { self.0.release(&t, failed).await })
    }

    fn release_in_background(&self, t: Ticket, failed: bool) {
        let engine = self.0.clone();
        let inner = engine.inner.clone();
        inner.background.begin();
        let rt = inner.runtime.clone();
        rt.spawn(async move {
            if let Err(e) = engine.release(&t, failed).await {
                let name = &t.name;
                if inner.is_closed() {
                    inner.warn(&format!(
                        "schema {name} was still held when the engine closed; gc will drop it once this process is gone"
                    ));
                } else {
                    inner.warn(&format!("background release of {name} failed (gc will retry): {e}"));
                }
            }
            inner.background.end();
        });
    }
}

impl Engine {
    /// Releases a schema: keep per policy, or rename to a tombstone, terminate its sessions,
    /// drop it (batched, bounded) and clear its registry row.
    async fn release(&self, t: &Ticket, failed: bool) -> Result<Released> {
        match self.release_once(t, failed).await {
            // A connection the server or the network ended: again once the lease is settled.
            Err(e) if super::watch::connection_lost(&e) && self.check_lease().await.is_ok() => {
                self.release_once(t, failed).await
            }
            r => r,
        }
    }

    async fn release_once(&self, t: &Ticket, failed: bool) -> Result<Released> {
        if self.inner.cfg.isolation == crate::config::Isolation::Database {
            return self.release_database(t, failed).await;
        }
        let (name, identity, role) = (t.name.as_str(), t.identity.as_str(), t.role.as_deref());
        // A dropped lease connection is settled first: was this schema's lease fenced?
        if self.held_owner().await.unwrap_or(t.owner) != t.owner {
            return self.release_lost(t).await;
        }
        let admin = self.inner.pool.get_teardown().await?;
        if self.inner.cfg.keep.keeps(failed) {
            let sql = format!(
                "BEGIN; UPDATE pgisolate.leases SET state = 'kept' WHERE schema_name = {nl}; {comment} COMMIT;",
                nl = literal(name),
                comment = markers::comment_sql(name, Kind::Kept, self.inner.owner()),
            );
            exec(&admin, &format!("keep schema {name}"), &sql).await?;
            return Ok(Released::Kept);
        }
        let deadline = Instant::now() + self.inner.cfg.release_timeout;
        let apps = vec![conninfo::application_name(name)];
        // Before the name (and so the cache prefix) can be handed out again.
        self.inner.delete_cache_keys(name).await;
        if let Some(fp) = &t.template_fp {
            if self.try_recycle(&admin, name, identity, fp, role).await {
                return Ok(Released::Recycled);
            }
        }
        let tomb = format!("pgi_tomb_{}", crate::secret::random_hex(20));
        let rename = format!(
            "SET lock_timeout = '1s'; BEGIN; {internal} ALTER SCHEMA {n} RENAME TO {t}; {comment} \
             UPDATE pgisolate.leases SET schema_name = {tl}, state = 'dropping' WHERE schema_name = {nl}; {released} \
             {untouch} {nologin} COMMIT; RESET lock_timeout; {sessions}",
            released = registry::released_sql(name, &tomb),
            // The name is free from here on: its "DDL ran here" record goes with it (hand-outs
            // do not look for a stale one).
            untouch = if self.inner.ddl_watch { crate::recycle::forget_ddl_sql(name) } else { String::new() },
            // Its role can no longer log in: stragglers get an error, never a session.
            nologin = role.map(|r| format!("ALTER ROLE {} NOLOGIN;", ident(r))).unwrap_or_default(),
            sessions = sessions_sql(name, role),
            n = ident(name),
            t = ident(&tomb),
            comment = markers::comment_sql(&tomb, Kind::Tomb, self.inner.owner()),
            internal = registry::INTERNAL,
            tl = literal(&tomb),
            nl = literal(name),
        );
        let mut target = tomb.clone();
        let mut pids = Vec::new();
        loop {
            match admin.simple_query(&rename).await {
                Ok(rows) => {
                    pids = parse_pids(rows);
                    break;
                }
                Err(e) => {
                    let _ = admin.batch_execute("ROLLBACK; RESET lock_timeout").await;
                    let code = e.code().map(|c| c.code().to_owned()).unwrap_or_default();
                    if code == "3F000" {
                        // Dropped behind our back: nothing left but the registry row.
                        let _ = registry::forget(&admin, name).await;
                        return Ok(Released::Dropped);
                    }
                    if !matches!(code.as_str(), "55P03" | "40P01") || Instant::now() >= deadline {
                        // Could not rename: drop it under its own name.
                        target = name.to_owned();
                        break;
                    }
                    drop::terminate(&admin, &apps).await?;
                }
            }
        }
        if target != name && self.inner.cfg.defer_drop {
            // The name is free now and may be handed out again before the drop runs: the
            // background work ends exactly the sessions seen at release, never by name.
            self.defer_drop(target, Some(Settle { pids, name: name.to_owned(), identity: identity.to_owned() }));
            return Ok(Released::Dropped);
        }
        self.settle(&admin, &pids, name, identity).await;
        drop::drop_schema(&admin, &target, &apps, deadline).await?;
        registry::forget(&admin, &target).await?;
        Ok(Released::Dropped)
    }

    /// The release of a schema handed out under a lease gc fenced: it may have been reaped
    /// while the test used it. Dropped if still there (only if it is still marked as ours),
    /// and the test is told why it may have failed.
    async fn release_lost(&self, t: &Ticket) -> Result<Released> {
        let why = self.lost_reason(t.owner).unwrap_or_else(|| format!("the lease of owner {} was fenced", t.owner));
        self.inner.delete_cache_keys(&t.name).await;
        if let Ok(admin) = self.inner.pool.get_teardown().await {
            let marker = registry::marker_of(&admin, &t.name).await.ok().flatten();
            if marker.is_some_and(|m| m.owner == t.owner as i64) {
                let apps = vec![conninfo::application_name(&t.name)];
                let _ =
                    drop::drop_schema(&admin, &t.name, &apps, Instant::now() + self.inner.cfg.release_timeout).await;
                let _ = registry::forget(&admin, &t.name).await;
            }
        }
        Err(Error::Lease(format!(
            "schema {} (test {}) was lost while the test ran: {why}. Errors the test saw after that (such as \"relation \
             does not exist\" or a closed connection) come from it, not from the code under test",
            t.name, t.identity
        )))
    }
}
