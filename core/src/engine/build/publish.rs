//! A build's end: publishing it as a template (checked, captured, renamed, recorded) or
//! abandoning it, and what dropping an unfinished build does.

use super::TemplateBuild;
use crate::admin::{exec, ident, literal};
use crate::conninfo;
use crate::drop;
use crate::error::{Error, Result};
use crate::markers::{self, Kind};
use crate::recycle::reset;
use crate::registry;
use crate::template::check as build_check;
use crate::template::outside;
use crate::template::{self, capture_cache, Replay, Template};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::Client;

impl TemplateBuild {
    /// URL scoped to the build schema: run migrations against it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Key/value connection string scoped to the build schema.
    pub fn conninfo(&self) -> &str {
        &self.conninfo
    }

    /// The build schema's name.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Publishes the build as the template (captures it for replay first).
    pub async fn commit(mut self) -> Result<Template> {
        let t = self.publish(None).await?;
        let t = self.engine.remember(t);
        self.engine.ensure_pool(&t);
        Ok(t)
    }

    /// Abandons the build and drops its schema.
    pub async fn abort(mut self) -> Result<()> {
        self.abandon().await.0
    }

    /// What errors call this build: `template "<key and inputs>"`.
    pub fn label(&self) -> String {
        format!("template {:?}", self.source)
    }

    /// Abandons the build after the caller's migration tool failed with `message`, and returns
    /// the error to report (a migration error named `source_name`, or when that is empty
    /// [`TemplateBuild::label`]): the message, plus a hint when it looks like an object the
    /// build cannot see (an extension installed in `public`, say).
    pub async fn fail(mut self, source_name: &str, message: &str) -> Error {
        let source_name = if source_name.is_empty() { self.label() } else { source_name.to_owned() };
        let mut message = message.to_owned();
        if let Some(locker) = &self.locker {
            message.push_str(&build_check::hint_for_message(locker, &message).await);
        }
        message.push_str(&self.abandon_failed().await);
        Error::Migration { source_name, code: None, message }
    }

    /// Drops the build schema and what the build created outside it; returns whether the
    /// schema was dropped and what to append to an error: what the build had made outside, and
    /// what of it was undone (empty when nothing).
    pub(super) async fn abandon(&mut self) -> (Result<()>, String) {
        let Some(locker) = self.locker.take() else { return (Ok(()), String::new()) };
        let reach = outside::scan(&locker, &self.schema, self.begin_xid, &self.before, self.engine_run).await;
        let dropped = discard(&locker, &self.schema).await;
        let mut note = String::new();
        if let Ok(mut reach) = reach {
            outside::undo(&locker, &mut reach).await;
            note = outside::note(&reach);
        }
        (dropped, note)
    }

    /// [`TemplateBuild::abandon`] after a migration failed: what to append to its message.
    pub(super) async fn abandon_failed(&mut self) -> String {
        let (dropped, mut note) = self.abandon().await;
        if let Err(e) = dropped {
            note.push_str(&format!(" (and the build could not be dropped: {e}; gc will)"));
        }
        note
    }

    pub(super) async fn publish(&mut self, steps: Option<Vec<(String, String)>>) -> Result<Template> {
        self.publish_as(steps, None).await
    }

    /// Publishes the build; with `cached` (DDL and rows captured from an earlier build of the
    /// same fingerprint, replayed into this build), without checking or capturing it again.
    pub(super) async fn publish_as(
        &mut self,
        steps: Option<Vec<(String, String)>>,
        cached: Option<(String, String)>,
    ) -> Result<Template> {
        let inner = &self.engine.inner;
        let locker = self.locker.take().ok_or_else(|| Error::Closed("template build already finished".into()))?;
        let (captured, seed) = match cached {
            Some((ddl, seed)) => (Ok(ddl), Some(seed)),
            None => {
                match self.check(&locker).await {
                    Err(e) => {
                        let _ = discard(&locker, &self.schema).await;
                        return Err(e);
                    }
                    Ok(reach) if !reach.is_empty() => {
                        let mut reach = reach;
                        let _ = discard(&locker, &self.schema).await;
                        outside::undo(&locker, &mut reach).await;
                        return Err(outside::refusal(&self.source, &reach));
                    }
                    Ok(_) => {}
                }
                let url = inner.url.clone();
                let build = self.schema.clone();
                let dumper = self.engine.find_pg_dump().await;
                let (captured, seed) = tokio::task::spawn_blocking(move || {
                    let ddl = template::capture(&url, &build, &dumper, false);
                    let seed = ddl.as_ref().ok().and_then(|_| template::capture(&url, &build, &dumper, true).ok());
                    (ddl, seed)
                })
                .await
                .map_err(|e| Error::Internal(format!("template capture panicked: {e}")))?;
                if let (true, Ok(ddl), Some(seed)) = (self.by_content, &captured, &seed) {
                    if let Some(s) = &inner.server {
                        capture_cache::store(&s.dir, inner.server_version, &self.fingerprint, ddl, seed);
                    }
                }
                (captured, seed)
            }
        };
        let tpl_name = template::template_schema(&self.fingerprint);
        let (replay, replay_sql) = match (captured, steps) {
            (Ok(sql), _) => (Replay::Captured(sql.clone()), Some(sql)),
            (Err(why), Some(steps)) => {
                inner.warn(&format!(
                    "cannot capture template {tpl_name} for replay ({why}); new schemas will re-run its migrations"
                ));
                (Replay::Migrations(steps), None)
            }
            (Err(why), None) => {
                let _ = discard(&locker, &self.schema).await;
                return Err(Error::BinariesNotFound(format!(
                    "cannot capture template {tpl_name} built by the caller's migrations: {why}; \
                     install the PostgreSQL client tools of the server's version (or newer), or set PGISOLATE_PG_DUMP"
                )));
            }
        };
        let existing: Option<Option<String>> = locker
            .query_opt("select obj_description(oid, 'pg_namespace') from pg_namespace where nspname = $1", &[&tpl_name])
            .await
            .map_err(|e| Error::db("look up the template schema", e))?
            .map(|r| r.get(0));
        let replace_old = match existing {
            None => String::new(),
            Some(m) if m.as_deref().and_then(markers::parse_marker).is_some_and(|m| m.kind == Kind::Template) => {
                format!("DROP SCHEMA {} CASCADE;", ident(&tpl_name))
            }
            Some(_) => {
                return Err(Error::Refused(format!(
                    "schema {tpl_name} exists and is not a pgisolate template: rename or drop it"
                )))
            }
        };
        let sql = format!(
            "BEGIN; {replace_old} ALTER SCHEMA {b} RENAME TO {t}; COMMENT ON SCHEMA {t} IS {marker}; \
             DELETE FROM pgisolate.leases WHERE schema_name = {bl}; \
             INSERT INTO pgisolate.templates (fingerprint, schema_name, replay_sql, seed_sql, built_by, source, last_used) \
             VALUES ({fpl}, {tl}, {rl}, {sl}, {owner}, {src}, now()) \
             ON CONFLICT (fingerprint) DO UPDATE SET schema_name = excluded.schema_name, replay_sql = excluded.replay_sql, \
             seed_sql = excluded.seed_sql, built_by = excluded.built_by, built_at = now(), source = excluded.source, \
             last_used = now(); COMMIT;",
            src = literal(&self.source),
            b = ident(&self.schema),
            t = ident(&tpl_name),
            marker = literal(&markers::marker(Kind::Template, 0)),
            bl = literal(&self.schema),
            fpl = literal(&self.fingerprint),
            tl = literal(&tpl_name),
            rl = replay_sql.as_deref().map(literal).unwrap_or_else(|| "NULL".into()),
            sl = seed.as_deref().map(literal).unwrap_or_else(|| "NULL".into()),
            owner = inner.owner(),
        );
        exec(&locker, "publish the template", &sql).await?;
        let reset = Arc::new(reset::Plan::load(&locker, &tpl_name, seed.as_deref()).await?);
        Ok(Template {
            fingerprint: self.fingerprint.clone(),
            schema: tpl_name,
            replay,
            built_here: true,
            seed_sql: seed,
            reset,
        })
    }
    /// Checks a finished build (nothing outside its schema, extensions, version tables, not
    /// empty) and puts the write triggers on its tables (before the capture, so every copy
    /// carries them). Returns what the build reached outside its schema: when that is not
    /// empty, nothing else is done (the build is refused).
    async fn check(&self, locker: &Client) -> Result<Vec<outside::Reach>> {
        let inner = &self.engine.inner;
        // Sessions the caller's migration tool left open must not outlive the build.
        let _ = drop::terminate(locker, &[conninfo::application_name(&self.schema)]).await;
        let relocated = build_check::relocate_extensions(locker, &self.schema).await?;
        let reach = outside::scan(locker, &self.schema, self.begin_xid, &self.before, self.engine_run).await?;
        // A migration tool's version table written outside has its own, more telling error.
        if !reach.iter().all(outside::Reach::is_version_table_rows) {
            return Ok(reach);
        }
        build_check::check_build(locker, &self.schema, self.begin_xid).await?;
        // The build saw schema extensions (its search_path has it); so must the tests. It may
        // exist without this build having moved anything: made since this engine started by
        // another engine's build or start-up rescue.
        if relocated.schema_exists {
            inner.ext_in_tail.store(true, Ordering::SeqCst);
        }
        if relocated.moved && inner.cfg.login_role {
            crate::role::share_extensions(locker).await?;
        }
        reset::install(locker, &self.schema).await?;
        Ok(Vec::new())
    }
}

impl Drop for TemplateBuild {
    fn drop(&mut self) {
        if let Some(locker) = self.locker.take() {
            let schema = self.schema.clone();
            let handle = self.engine.inner.runtime.clone();
            handle.spawn(async move {
                let _ = discard(&locker, &schema).await;
            });
        }
    }
}

/// Drops an abandoned build schema (ending the migration tool's sessions) and forgets it.
async fn discard(locker: &Client, schema: &str) -> Result<()> {
    let apps = vec![conninfo::application_name(schema)];
    drop::drop_schema(locker, schema, &apps, Instant::now() + Duration::from_secs(10)).await?;
    registry::forget(locker, schema).await
}
