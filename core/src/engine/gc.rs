//! gc (dead owners' schemas, stale rows, orphan roles, old templates), listing, dropping a
//! schema by name.

use std::time::{Duration, Instant};

use super::Engine;
use crate::conninfo;
use crate::drop;
use crate::error::{Error, Result};
use crate::markers::Kind;
use crate::naming;
use crate::registry;

#[derive(Debug, Default, Clone)]
pub struct GcReport {
    /// Schemas dropped.
    pub dropped: Vec<String>,
    /// Registry rows deleted whose schema was already gone.
    pub pruned_rows: u64,
    /// Schemas gc could not drop this time, with why.
    pub failed: Vec<(String, String)>,
    /// Per-schema login roles of dead owners dropped after their schema was already gone.
    pub dropped_roles: Vec<String>,
    /// Templates dropped as unused or superseded ([`crate::Config::template_max_age`]).
    pub dropped_templates: Vec<String>,
    /// Owners fenced now: lease free and not seen for the grace period. Their engines, if
    /// alive behind a broken link, learn it when they reconnect.
    pub fenced_owners: Vec<i32>,
}

/// What a run left, as its last engine sees it at the end ([`Engine::end_of_run`]): the one
/// report behind `pgisolate demo`, the pytest controller's summary and Node's global teardown.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    /// This run's schemas no test released: still live, and this engine's, a fenced owner's, or
    /// (with `reap`, every worker gone) any owner's.
    pub unreleased: Vec<registry::Entry>,
    /// This run's kept schemas (a failed test's, with the keep policy).
    pub kept: Vec<registry::Entry>,
    /// Schemas gc dropped now (dead owners', with `reap`).
    pub dropped: Vec<String>,
    /// This run's schemas still on the server afterwards, kept ones aside.
    pub left: Vec<registry::Entry>,
}

impl Engine {
    /// What a run's workers need to join this engine's run, as environment variables:
    /// `PGISOLATE_DATABASE_URL` (every server, when the configuration lists several, so each
    /// worker takes its own; else this engine's server, the embedded one's included) and
    /// `PGISOLATE_RUN_ID`. The one hand-over behind `pgisolate run`, pytest-xdist and
    /// Vitest/Jest.
    pub fn worker_env(&self) -> Vec<(&'static str, String)> {
        let cfg = &self.inner.cfg;
        let url = match cfg.url.as_deref() {
            Some(listed) if cfg.servers().len() > 1 => listed.to_owned(),
            _ => self.url().to_owned(),
        };
        vec![("PGISOLATE_DATABASE_URL", url), ("PGISOLATE_RUN_ID", self.run_id().to_owned())]
    }

    /// The end of a run: waits for this engine's background drops, reads what the run
    /// (this engine's run id) left, and with `reap` drops what dead owners left: a run's last
    /// engine, once every worker has exited (gc with `reap`'s grace).
    pub async fn end_of_run(&self, reap: Option<Duration>) -> Result<RunReport> {
        let grace = reap;
        let reap = grace.is_some();
        self.flush().await;
        let mine = |e: &registry::Entry| e.run_id == self.run_id();
        let before: Vec<registry::Entry> = self.list().await?.into_iter().filter(mine).collect();
        let me = self.owner();
        // A live schema nobody released: this engine's, a fenced owner's, or (reaping: every
        // worker of the run has exited) any owner's. An owner that died a moment ago is not
        // fenced yet, so its entries still say `owner_alive`.
        let unreleased = before
            .iter()
            .filter(|e| e.state == "live" && (reap || !e.owner_alive || e.owner_key == me))
            .cloned()
            .collect();
        let kept = before.iter().filter(|e| e.state == "kept").cloned().collect();
        let dropped = match grace {
            Some(g) => self.gc_with(g, false).await?.dropped,
            None => Vec::new(),
        };
        let left = if dropped.is_empty() {
            before.into_iter().filter(|e| e.state != "kept").collect()
        } else {
            self.list().await?.into_iter().filter(|e| mine(e) && e.state != "kept").collect()
        };
        Ok(RunReport { unreleased, kept, dropped, left })
    }

    /// Fences owners gone for the grace period (lease free, not seen) and drops every marked
    /// schema of a fenced owner.
    pub async fn gc(&self) -> Result<GcReport> {
        self.gc_with(self.inner.cfg.gc_grace, false).await
    }

    /// gc with an explicit grace period; with `include_kept`, kept schemas of dead owners too.
    pub async fn gc_with(&self, grace: Duration, include_kept: bool) -> Result<GcReport> {
        self.inner.check_open()?;
        let admin = self.inner.pool.get_teardown().await?;
        let mut report = GcReport { fenced_owners: registry::fence(&admin, grace).await?, ..Default::default() };
        for o in registry::orphans(&admin, grace, include_kept).await? {
            if matches!(o.marker.kind, Kind::Schema | Kind::Kept) {
                self.inner.delete_cache_keys(&o.schema).await;
            }
            let apps = vec![conninfo::application_name(&o.schema)];
            let deadline = Instant::now() + Duration::from_secs(30);
            match drop::drop_schema(&admin, &o.schema, &apps, deadline).await {
                Ok(()) => {
                    let _ = registry::forget(&admin, &o.schema).await;
                    report.dropped.push(o.schema);
                }
                Err(e) => report.failed.push((o.schema, e.to_string())),
            }
        }
        if self.inner.cfg.isolation == crate::config::Isolation::Database {
            report.dropped.extend(self.gc_databases(&admin, grace, include_kept).await);
        }
        report.pruned_rows = registry::prune_rows(&admin).await?;
        if !self.inner.cfg.template_max_age.is_zero() {
            let cached: Vec<String> = self.inner.templates.schemas();
            match registry::prune_templates(&admin, self.inner.cfg.template_max_age, &cached).await {
                Ok(d) => report.dropped_templates = d,
                Err(e) => report.failed.push(("templates".into(), e.to_string())),
            }
        }
        for r in crate::role::orphan_roles(&admin).await? {
            match crate::role::drop_role(&admin, &r).await {
                Ok(()) => report.dropped_roles.push(r),
                Err(e) => report.failed.push((format!("role {r}"), e.to_string())),
            }
        }
        Ok(report)
    }

    /// The server's connection slots and each live engine's connections (this one's included).
    pub async fn connections(&self) -> Result<crate::budget::Connections> {
        self.inner.check_open()?;
        let admin = self.inner.pool.get().await?;
        crate::budget::connections(&admin).await
    }

    /// Live and kept schemas in the registry, with their owners' liveness.
    pub async fn list(&self) -> Result<Vec<registry::Entry>> {
        self.inner.check_open()?;
        let admin = self.inner.pool.get().await?;
        registry::list(&admin).await
    }

    /// Drops a schema this engine's registry knows, by name. Refuses reserved and unmarked
    /// schemas.
    pub async fn drop_schema(&self, name: &str) -> Result<()> {
        self.inner.check_open()?;
        if naming::is_reserved(name) {
            return Err(Error::Refused(format!("refusing to drop reserved schema {name:?}")));
        }
        let admin = self.inner.pool.get_teardown().await?;
        if registry::marker_of(&admin, name).await?.is_none() {
            return Err(Error::Refused(format!("refusing to drop {name:?}: it carries no pgisolate marker")));
        }
        let apps = vec![conninfo::application_name(name)];
        drop::drop_schema(&admin, name, &apps, Instant::now() + self.inner.cfg.release_timeout).await?;
        let _ = registry::forget(&admin, name).await;
        Ok(())
    }

    /// Templates in this database: name, source, size, when built and last used, and whether
    /// a newer template from the same source supersedes it.
    pub async fn templates(&self) -> Result<Vec<registry::TemplateInfo>> {
        self.inner.check_open()?;
        let admin = self.inner.pool.get().await?;
        registry::templates(&admin).await
    }

    /// Drops templates not used for `max_age` and superseded ones not used for ten minutes;
    /// returns the dropped schemas. Test schemas made from them are untouched (they were
    /// copied, not linked).
    pub async fn prune_templates(&self, max_age: Duration) -> Result<Vec<String>> {
        self.inner.check_open()?;
        let admin = self.inner.pool.get_teardown().await?;
        let cached: Vec<String> = self.inner.templates.schemas();
        registry::prune_templates(&admin, max_age, &cached).await
    }
}
