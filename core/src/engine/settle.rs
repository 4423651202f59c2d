//! After a release: ending the sessions it saw (reporting leaked ones), and drops run in the
//! background.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore};
use tokio_postgres::Client;

use super::Engine;
use crate::drop;
use crate::error::Error;
use crate::registry;

/// Sessions a release saw, to be ended in the background.
#[derive(Debug)]
pub(crate) struct Settle {
    pub(crate) pids: Vec<i32>,
    pub(crate) name: String,
    pub(crate) identity: String,
}

/// Background work in flight (releases, drops, pool fills: what close and `flush` wait for)
/// and the slots that bound concurrent background drops. Only this file touches its fields.
pub(crate) struct Background {
    pending: Arc<AtomicUsize>,
    idle: Arc<Notify>,
    drop_slots: Arc<Semaphore>,
}

impl Background {
    pub(super) fn new() -> Background {
        Background {
            pending: Arc::new(AtomicUsize::new(0)),
            idle: Arc::new(Notify::new()),
            drop_slots: Arc::new(Semaphore::new(2)),
        }
    }

    /// One more unit of background work.
    pub(crate) fn begin(&self) {
        self.pending.fetch_add(1, Ordering::SeqCst);
    }

    /// One unit of background work ended.
    pub(crate) fn end(&self) {
        if self.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// A callback ending one unit of background work, for tasks that do not hold the engine.
    pub(crate) fn done(&self) -> impl FnOnce() + Send + 'static {
        let (pending, idle) = (self.pending.clone(), self.idle.clone());
        move || {
            if pending.fetch_sub(1, Ordering::SeqCst) == 1 {
                idle.notify_waiters();
            }
        }
    }

    /// Waits until no background work is left, for at most `timeout`.
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

    /// The slots background drops take one each.
    fn slots(&self) -> Arc<Semaphore> {
        self.drop_slots.clone()
    }
}

impl Engine {
    /// Ends the sessions a release saw: a client that closed just before release leaves a
    /// backend that exits a few milliseconds later (longer on a loaded machine: CI saw more
    /// than 150 ms), so each gets up to a second; whatever is still there then was leaked by
    /// the test, is terminated, and is reported by name. This runs in the background of a
    /// release that recycles or defers its drop.
    pub(crate) async fn settle(&self, admin: &Client, pids: &[i32], name: &str, identity: &str) {
        if pids.is_empty() {
            return;
        }
        // A closing backend is normally gone within a few milliseconds: look after 5 ms (one
        // query for most releases), then back off to a second in all. One round trip a look
        // (no statement to prepare), each pid looked up alone (the activity of every backend
        // is not built).
        let list = pids.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
        let look = format!(
            "SELECT count(*) FROM unnest('{{{list}}}'::int4[]) p WHERE EXISTS (SELECT FROM pg_catalog.pg_stat_get_activity(p))"
        );
        for pause in [5u64, 15, 30, 100, 250, 600] {
            tokio::time::sleep(Duration::from_millis(pause)).await;
            let alive = match admin.simple_query(&look).await {
                Ok(rows) => drop::row_from_end(&rows, 0).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0),
                Err(_) => return,
            };
            if alive == 0 {
                return;
            }
        }
        let leaked: i64 = admin
            .query_one(
                "select count(pg_terminate_backend(pid)) from pg_catalog.pg_stat_get_activity(NULL) where pid = any($1)",
                &[&pids],
            )
            .await
            .map(|r| r.get(0))
            .unwrap_or(0);
        if leaked > 0 {
            self.inner.warn(&format!(
                "{leaked} leaked connection(s) to schema {name} (test {identity}) were still open at release and were \
                 terminated: close every connection before the test ends"
            ));
        }
    }
}

impl Engine {
    /// Drops `schema` in the background (bounded, batched, retried; gc finishes what fails),
    /// after ending the sessions its release saw.
    pub(crate) fn defer_drop(&self, schema: String, settle: Option<Settle>) {
        self.inner.background.begin();
        let me = self.clone();
        let pool = self.inner.pool.clone();
        let slots = self.inner.background.slots();
        let timeout = self.inner.cfg.release_timeout.max(Duration::from_secs(30));
        let inner_warn = self.inner.cfg.on_warning.clone();
        let done = self.inner.background.done();
        self.inner.runtime.spawn(async move {
            let _slot = slots.acquire_owned().await;
            let result = async {
                let admin = pool.get_teardown().await?;
                if let Some(s) = &settle {
                    me.settle(&admin, &s.pids, &s.name, &s.identity).await;
                }
                drop::drop_schema(&admin, &schema, &[], Instant::now() + timeout).await?;
                registry::forget(&admin, &schema).await?;
                Ok::<_, Error>(())
            }
            .await;
            if let Err(e) = result {
                let msg = format!("background drop of {schema} failed (gc will retry): {e}");
                match &inner_warn {
                    Some(w) => w(&msg),
                    None => eprintln!("pgisolate: warning: {msg}"),
                }
            }
            done();
        });
    }
}
