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

impl Engine {
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
        report.pruned_rows = registry::prune_rows(&admin).await?;
        if !self.inner.cfg.template_max_age.is_zero() {
            let cached: Vec<String> =
                self.inner.templates.lock().map(|m| m.values().map(|t| t.schema.clone()).collect()).unwrap_or_default();
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
        let cached: Vec<String> =
            self.inner.templates.lock().map(|m| m.values().map(|t| t.schema.clone()).collect()).unwrap_or_default();
        registry::prune_templates(&admin, max_age, &cached).await
    }
}
