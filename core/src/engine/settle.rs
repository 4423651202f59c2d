//! After a release: ending the sessions it saw (reporting leaked ones), and drops run in the
//! background.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::Inner;
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

impl Inner {
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
            self.warn(&format!(
                "{leaked} leaked connection(s) to schema {name} (test {identity}) were still open at release and were \
                 terminated: close every connection before the test ends"
            ));
        }
    }
}

impl Inner {
    /// Drops `schema` in the background (bounded, batched, retried; gc finishes what fails),
    /// after ending the sessions its release saw.
    pub(crate) fn defer_drop(self: &Arc<Self>, schema: String, settle: Option<Settle>) {
        self.begin_background();
        let me = self.clone();
        let pool = self.pool.clone();
        let slots = self.drop_slots.clone();
        let timeout = self.cfg.release_timeout.max(Duration::from_secs(30));
        let inner_warn = self.cfg.on_warning.clone();
        let done = self.background_done();
        self.runtime.spawn(async move {
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
