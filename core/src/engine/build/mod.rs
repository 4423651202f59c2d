//! Templates: built once per server from migrations (or by the caller's own tool), checked,
//! captured for replay, published and cached.

mod publish;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::Client;

use super::Engine;
use crate::admin::{self, exec, ident, literal, transaction};
use crate::conninfo;
use crate::error::{Error, Result};
use crate::locks::TEMPLATE_CLASS;
use crate::markers::{self, Kind};
use crate::recycle::reset;
use crate::registry;
use crate::template::check as build_check;
use crate::template::outside;
use crate::template::{self, capture_cache, Migrations, Replay, Template};

/// A caller-run build with neither a key nor inputs: what to give.
const NO_KEY: &str = "a template your migration tool builds needs its inputs (the migration files or directories, \
     hashed so that a changed migration builds a new template; recommended) or a key (a version you change yourself), \
     or both";

/// How often an engine tries the build lock while another engine builds the template.
pub(super) const BUILD_LOCK_POLL: Duration = Duration::from_millis(100);

/// The build lock's key for template fingerprint `fp` (its first 28 bits).
pub(super) fn build_lock_key(fp: &str) -> i32 {
    i32::from_str_radix(&fp[..7], 16).unwrap_or(0)
}

/// Tries the template build lock `key` (session-level, on `client`): true when taken.
pub(super) async fn try_build_lock(client: &Client, key: i32) -> Result<bool> {
    Ok(client
        .query_one("select pg_try_advisory_lock($1::int4, $2::int4)", &[&TEMPLATE_CLASS, &key])
        .await
        .map_err(|e| Error::db("take the template build lock", e))?
        .get(0))
}

/// The templates this engine found or built (by fingerprint), and the pg_dump that captures
/// them (looked for once). Only this folder touches its fields.
#[derive(Default)]
pub(crate) struct TemplateCache {
    by_fingerprint: std::sync::Mutex<std::collections::HashMap<String, Template>>,
    /// The pg_dump that captures templates, or why there is none (looked for at first use).
    pg_dump: std::sync::OnceLock<std::result::Result<std::path::PathBuf, String>>,
}

impl TemplateCache {
    fn get(&self, fp: &str) -> Option<Template> {
        self.by_fingerprint.lock().ok()?.get(fp).cloned()
    }

    fn insert(&self, t: Template) {
        if let Ok(mut m) = self.by_fingerprint.lock() {
            m.insert(t.fingerprint.clone(), t);
        }
    }

    /// The schemas of the templates in use (gc never prunes them).
    pub(crate) fn schemas(&self) -> Vec<String> {
        self.by_fingerprint.lock().map(|m| m.values().map(|t| t.schema.clone()).collect()).unwrap_or_default()
    }
}

/// A template build the caller performs with its own migration tool: run migrations against
/// [`TemplateBuild::url`], then [`TemplateBuild::commit`]. Dropping it without committing
/// abandons the build (gc reaps it).
#[derive(Debug)]
pub struct TemplateBuild {
    engine: Engine,
    fingerprint: String,
    schema: String,
    url: String,
    conninfo: String,
    locker: Option<admin::Counted>,
    /// The build's first transaction id (mod 2^32): version-table rows written since then
    /// were written by this build.
    begin_xid: i64,
    /// What the template is built from (a directory, a key), for listing and pruning.
    source: String,
    /// Whether the fingerprint hashes the migrations' contents (its capture may be kept).
    by_content: bool,
    /// What was outside the build schema when it began: what the build creates there is
    /// refused, and only that is dropped.
    before: Box<outside::Before>,
    /// Whether the engine runs the migrations itself (on `locker`, recording each step's
    /// transactions), not the caller's tool.
    engine_run: bool,
}

/// Result of [`Engine::template_begin`].
#[derive(Debug)]
pub enum TemplateStart {
    /// The template already exists: use it.
    Ready(Template),
    /// This caller must build it.
    Build(TemplateBuild),
}

impl Engine {
    /// A template from migrations, built once per (server, database, fingerprint) across
    /// every process and host, and cached in this engine.
    pub async fn template(&self, migrations: Migrations) -> Result<Template> {
        self.inner.check_open()?;
        if self.inner.cfg.isolation == crate::config::Isolation::Database {
            return self.template_database(migrations).await;
        }
        let steps = migrations.load()?;
        let fp = template::fingerprint(&steps);
        if let Some(t) = self.cached(&fp) {
            return Ok(t);
        }
        let t = self.template_uncached(&fp, steps, &migrations.source()).await?;
        self.ensure_pool(&t);
        Ok(t)
    }

    async fn template_uncached(&self, fp: &str, steps: Vec<(String, String)>, source: &str) -> Result<Template> {
        let fp = fp.to_owned();
        match self.begin_build(&fp, Some(&steps), source, true).await? {
            TemplateStart::Ready(t) => Ok(self.remember(t)),
            TemplateStart::Build(mut b) => {
                b.engine_run = true;
                let locker =
                    b.locker.as_ref().ok_or_else(|| Error::Closed("template build lost its connection".into()))?;
                let path = Engine::build_path(&b.schema).iter().map(|s| ident(s)).collect::<Vec<_>>().join(", ");
                for (name, sql) in &steps {
                    let batch = format!(
                        "BEGIN; {record} SET LOCAL search_path TO {path};\n{sql}\n;\n{record}\nCOMMIT;",
                        record = outside::RECORD_XID_SQL
                    );
                    if let Err(e) = transaction(locker, &batch).await {
                        let (code, mut message) = crate::error::describe_pg(&e);
                        message.push_str(&build_check::hint_for(locker, &e).await);
                        message.push_str(&b.abandon_failed().await);
                        return Err(Error::Migration { source_name: name.clone(), code, message });
                    }
                }
                let t = b.publish(Some(steps)).await?;
                Ok(self.remember(t))
            }
        }
    }

    /// Starts a template the caller builds with its own migration tool, identified by `key`
    /// (for example a hash of the migration files, or a version string). Returns the existing
    /// template, or a [`TemplateBuild`] holding the build lock.
    pub async fn template_begin(&self, key: &str) -> Result<TemplateStart> {
        if key.is_empty() {
            return Err(Error::Config(NO_KEY.into()));
        }
        self.template_begin_source(key, key, false).await
    }

    /// [`Engine::template_begin`] for a build whose inputs are files and directories (the
    /// migration tool's directory, its config): their contents are hashed into the key
    /// (`template::inputs_key`), so changing a migration builds a new template instead of
    /// reusing a stale one. `key` may be empty. With no inputs it is [`Engine::template_begin`].
    pub async fn template_begin_inputs<P: AsRef<std::path::Path>>(
        &self,
        key: &str,
        inputs: &[P],
    ) -> Result<TemplateStart> {
        if inputs.is_empty() {
            return self.template_begin(key).await;
        }
        self.inner.check_open()?;
        let full = template::inputs_key(key, inputs)?;
        let paths: Vec<String> = inputs
            .iter()
            .map(|p| {
                std::fs::canonicalize(p.as_ref()).unwrap_or_else(|_| p.as_ref().to_path_buf()).display().to_string()
            })
            .collect();
        let source = format!("{key}{}{}", if key.is_empty() { "" } else { " " }, paths.join(" "));
        self.template_begin_source(&full, &source, true).await
    }

    /// [`Engine::template_with`] keyed by the contents of `inputs` ([`Engine::template_begin_inputs`]).
    pub async fn template_with_inputs<P, F, Fut>(&self, key: &str, inputs: &[P], build: F) -> Result<Template>
    where
        P: AsRef<std::path::Path>,
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>>,
    {
        let start = self.template_begin_inputs(key, inputs).await?;
        Engine::finish_with(start, build).await
    }

    /// `by_content`: the key hashes the migrations' contents, so a capture kept on disk under
    /// it cannot be stale (a bare key can: the caller changes migrations, not the key).
    async fn template_begin_source(&self, key: &str, source: &str, by_content: bool) -> Result<TemplateStart> {
        self.inner.check_open()?;
        if self.inner.cfg.isolation == crate::config::Isolation::Database {
            return Err(Error::Config(
                "isolation=database builds templates from a migrations directory, files or SQL in this version \
                 (engine.template(migrations)); templates built by your own migration tool are not yet supported \
                 in database isolation"
                    .into(),
            ));
        }
        let fp = template::caller_fingerprint(key);
        if let Some(t) = self.cached(&fp) {
            return Ok(TemplateStart::Ready(t));
        }
        match self.begin_build(&fp, None, source, by_content).await? {
            TemplateStart::Ready(t) => {
                let t = self.remember(t);
                self.ensure_pool(&t);
                Ok(TemplateStart::Ready(t))
            }
            b => Ok(b),
        }
    }

    /// Builds (once) a template with an async function that migrates the database at the
    /// given URL, for migration tools driven from Rust.
    pub async fn template_with<F, Fut>(&self, key: &str, build: F) -> Result<Template>
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>>,
    {
        let start = self.template_begin(key).await?;
        Engine::finish_with(start, build).await
    }

    async fn finish_with<F, Fut>(start: TemplateStart, build: F) -> Result<Template>
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>>,
    {
        match start {
            TemplateStart::Ready(t) => Ok(t),
            TemplateStart::Build(b) => match build(b.url().to_owned()).await {
                Ok(()) => b.commit().await,
                Err(e) => Err(b.fail("", &e.to_string()).await),
            },
        }
    }

    pub(super) fn cached(&self, fp: &str) -> Option<Template> {
        self.inner.templates.get(fp)
    }

    pub(super) fn remember(&self, t: Template) -> Template {
        self.inner.templates.insert(Template { built_here: false, ..t.clone() });
        t
    }

    /// A build's search_path: the build schema and `extensions`, nothing else. Never `public`
    /// or the tail: a migration tool that finds its version table (or the app's tables) there
    /// would skip its work and publish an empty template.
    fn build_path(schema: &str) -> Vec<String> {
        vec![schema.to_owned(), "extensions".to_owned()]
    }

    async fn lookup(&self, client: &Client, fp: &str, steps: Option<&[(String, String)]>) -> Result<Option<Template>> {
        let row = client
            .query_opt(
                "select t.schema_name, t.replay_sql, t.seed_sql, \
                 exists (select 1 from pg_namespace where nspname = 'extensions') from pgisolate.templates t \
                 where t.fingerprint = $1 and exists (select 1 from pg_namespace n where n.nspname = t.schema_name)",
                &[&fp],
            )
            .await
            .map_err(|e| Error::db("look up a template", e))?;
        let Some(row) = row else { return Ok(None) };
        if row.get::<_, bool>(3) {
            // Another process's build may have moved an extension there since this engine started.
            self.inner.ext_in_tail.store(true, Ordering::SeqCst);
        }
        let _ = client.execute("update pgisolate.templates set last_used = now() where fingerprint = $1", &[&fp]).await;
        let replay = match (row.get::<_, Option<String>>(1), steps) {
            (Some(sql), _) => Replay::Captured(sql),
            (None, Some(steps)) => Replay::Migrations(steps.to_vec()),
            (None, None) => {
                return Err(Error::BinariesNotFound(format!(
                    "template {} has no captured DDL to copy from (pg_dump was unavailable when it was built): \
                     install a pg_dump of the server's version or newer (or set PGISOLATE_PG_DUMP), then drop the template schema so it is rebuilt",
                    row.get::<_, String>(0)
                )))
            }
        };
        let schema: String = row.get(0);
        let mut seed_sql: Option<String> = row.get(2);
        if seed_sql.is_none() && matches!(replay, Replay::Captured(_)) {
            // Built by an engine that did not capture rows yet: capture them now, once.
            let (url, tpl) = (self.inner.url.clone(), schema.clone());
            let dumper = self.find_pg_dump().await;
            seed_sql = tokio::task::spawn_blocking(move || template::capture(&url, &tpl, &dumper, true).ok())
                .await
                .ok()
                .flatten();
            if let Some(seed) = &seed_sql {
                let _ = client
                    .execute("update pgisolate.templates set seed_sql = $2 where fingerprint = $1", &[&fp, seed])
                    .await;
            }
        }
        let reset = Arc::new(reset::Plan::load(client, &schema, seed_sql.as_deref()).await?);
        Ok(Some(Template { fingerprint: fp.to_owned(), schema, replay, built_here: false, seed_sql, reset }))
    }

    async fn begin_build(
        &self,
        fp: &str,
        steps: Option<&[(String, String)]>,
        source: &str,
        by_content: bool,
    ) -> Result<TemplateStart> {
        // The build lock is tried, not waited on: the engines of a run that wait for one
        // build hold no connection each meanwhile (a pooled one, between tries), and the one
        // that takes it keeps that connection for the build.
        let key = build_lock_key(fp);
        let locker = loop {
            let admin = self.inner.pool.get().await?;
            if let Some(t) = self.lookup(&admin, fp, steps).await? {
                return Ok(TemplateStart::Ready(t));
            }
            if try_build_lock(&admin, key).await? {
                break admin.detach().ok_or_else(|| Error::Closed("the engine is closed".into()))?;
            }
            drop(admin);
            tokio::time::sleep(BUILD_LOCK_POLL).await;
        };
        if let Some(t) = self.lookup(&locker, fp, steps).await? {
            return Ok(TemplateStart::Ready(t));
        }
        if let Some(p) = &self.inner.cfg.progress {
            p(&format!("building template {}", template::template_schema(fp)));
        }
        let build = template::build_schema(fp, self.inner.owner());
        let sql = format!(
            "BEGIN; DROP SCHEMA IF EXISTS {b} CASCADE; CREATE SCHEMA {b}; {comment} \
             INSERT INTO pgisolate.leases (schema_name, identity_hash, identity, owner_key, run_id, host, pid, state) \
             VALUES ({bl}, {fpl}, {idl}, {owner}, {run}, {host}, {pid}, 'building') \
             ON CONFLICT (schema_name) DO UPDATE SET state = 'building', created_at = now(); COMMIT;",
            b = ident(&build),
            comment = markers::comment_sql(&build, Kind::Build, self.inner.owner()),
            bl = literal(&build),
            fpl = literal(fp),
            idl = literal(&format!("template {}", template::template_schema(fp))),
            owner = self.inner.owner(),
            run = literal(&self.inner.run_id),
            host = literal(&self.inner.host),
            pid = std::process::id() as i32,
        );
        exec(&locker, "create the template build schema", &sql).await?;
        let tail = Engine::build_path(&build)[1..].to_vec();
        let begin_xid: i64 = locker
            .query_one("select txid_current() % 4294967296", &[])
            .await
            .map_err(|e| Error::db("start the template build", e))?
            .get(0);
        let cached = match by_content {
            true => self.inner.server.as_ref().and_then(|s| capture_cache::load(&s.dir, self.inner.server_version, fp)),
            false => None,
        };
        let mut b = TemplateBuild {
            before: Box::default(),
            engine_run: false,
            by_content,
            begin_xid,
            source: source.to_owned(),
            engine: self.clone(),
            fingerprint: fp.to_owned(),
            url: conninfo::scoped(&self.inner.url_form.to_string(), &build, &tail)?,
            conninfo: conninfo::scoped(&self.inner.kv_form.to_string(), &build, &tail)?,
            schema: build,
            locker: Some(locker),
        };
        if let Some((ddl, seed)) = cached {
            // Built before on this machine: replay what that build captured instead of running
            // the migrations (and pg_dump) again. Anything off, and the build runs as usual.
            let replay = format!(
                "BEGIN; {} SET LOCAL check_function_bodies = off; SELECT pg_catalog.set_config('search_path', '', true);\n{}\n; COMMIT;",
                registry::INTERNAL,
                ddl.replace(template::PLACEHOLDER, &b.schema)
            );
            let replayed = match &b.locker {
                Some(l) => transaction(l, &replay).await.is_ok(),
                None => false,
            };
            if replayed {
                let steps = steps.map(<[(String, String)]>::to_vec);
                return Ok(TemplateStart::Ready(b.publish_as(steps, Some((ddl, seed))).await?));
            }
        }
        if let Some(l) = &b.locker {
            b.before = Box::new(outside::before(l, &b.schema).await?);
        }
        Ok(TemplateStart::Build(b))
    }
}

impl Engine {
    /// The pg_dump for this server ([`template::pg_dump_for`]), looked for once.
    async fn find_pg_dump(&self) -> std::result::Result<std::path::PathBuf, String> {
        if let Some(found) = self.inner.templates.pg_dump.get() {
            return found.clone();
        }
        let (server, explicit) = ((self.inner.server_version / 10000) as u32, self.inner.cfg.pg_dump.clone());
        let bin = self.inner.cfg.pg_bin.clone().or_else(|| crate::server::find_binaries(None).ok().map(|b| b.dir));
        let found =
            tokio::task::spawn_blocking(move || template::pg_dump_for(server, explicit.as_deref(), bin.as_deref()))
                .await
                .unwrap_or_else(|e| Err(format!("looking for pg_dump panicked: {e}")));
        let _ = self.inner.templates.pg_dump.set(found.clone());
        found
    }
}
