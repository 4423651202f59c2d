//! Templates: built once per server from migrations (or by the caller's own tool), checked,
//! captured for replay, published and cached.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::{Engine, Inner};
use crate::admin::{self, exec, ident, literal, transaction};
use crate::build_check;
use crate::conninfo;
use crate::drop;
use crate::error::{Error, Result};
use crate::lease::TEMPLATE_CLASS;
use crate::markers::{self, Kind};
use crate::outside;
use crate::registry;
use crate::reset;
use crate::template::{self, Migrations, Replay, Template};

/// How often an engine tries the build lock while another engine builds the template.
const BUILD_LOCK_POLL: Duration = Duration::from_millis(100);

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
        let steps = migrations.load()?;
        let fp = template::fingerprint(&steps);
        if let Some(t) = self.cached(&fp) {
            return Ok(t);
        }
        let t = self.template_uncached(&fp, steps, &migrations.source()).await?;
        self.inner.ensure_pool(&t);
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
                        message.push_str(&crate::build_check::hint_for(locker, &e).await);
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
        self.template_begin_source(key, key, false).await
    }

    /// [`Engine::template_begin`] for a build whose inputs are files and directories (the
    /// migration tool's directory, its config): their contents are hashed into the key
    /// ([`template::inputs_key`]), so changing a migration builds a new template instead of
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
        Engine::finish_with(start, key, build).await
    }

    /// `by_content`: the key hashes the migrations' contents, so a capture kept on disk under
    /// it cannot be stale (a bare key can: the caller changes migrations, not the key).
    async fn template_begin_source(&self, key: &str, source: &str, by_content: bool) -> Result<TemplateStart> {
        self.inner.check_open()?;
        let fp = template::caller_fingerprint(key);
        if let Some(t) = self.cached(&fp) {
            return Ok(TemplateStart::Ready(t));
        }
        match self.begin_build(&fp, None, source, by_content).await? {
            TemplateStart::Ready(t) => {
                let t = self.remember(t);
                self.inner.ensure_pool(&t);
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
        Engine::finish_with(start, key, build).await
    }

    async fn finish_with<F, Fut>(start: TemplateStart, key: &str, build: F) -> Result<Template>
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>>,
    {
        match start {
            TemplateStart::Ready(t) => Ok(t),
            TemplateStart::Build(b) => match build(b.url().to_owned()).await {
                Ok(()) => b.commit().await,
                Err(e) => Err(b.fail(&format!("template {key:?}"), &e.to_string()).await),
            },
        }
    }

    fn cached(&self, fp: &str) -> Option<Template> {
        self.inner.templates.lock().ok()?.get(fp).cloned()
    }

    fn remember(&self, t: Template) -> Template {
        if let Ok(mut m) = self.inner.templates.lock() {
            m.insert(t.fingerprint.clone(), Template { built_here: false, ..t.clone() });
        }
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
            let dumper = self.inner.find_pg_dump().await;
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
        let key = i32::from_str_radix(&fp[..7], 16).unwrap_or(0);
        let locker = loop {
            let admin = self.inner.pool.get().await?;
            if let Some(t) = self.lookup(&admin, fp, steps).await? {
                return Ok(TemplateStart::Ready(t));
            }
            let taken: bool = admin
                .query_one("select pg_try_advisory_lock($1::int4, $2::int4)", &[&TEMPLATE_CLASS, &key])
                .await
                .map_err(|e| Error::db("take the template build lock", e))?
                .get(0);
            if taken {
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
            true => capture_cache::load(&self.inner, fp),
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

/// Captured templates kept beside the embedded server (`<home>/captures`), by fingerprint and
/// server version, so a new server builds a template it had before by replaying the capture:
/// no migrations, no pg_dump.
mod capture_cache {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};
    use std::time::SystemTime;

    use super::super::Inner;

    fn paths(inner: &Inner, fp: &str) -> Option<(PathBuf, PathBuf)> {
        let server = inner.server.as_ref()?;
        // `-c2`: captures kept since builds that reach outside their schema are refused (an older
        // one may hold such a build's schema alone).
        let base = server.dir.join("captures").join(format!("{}-{}-c2", &fp[..32.min(fp.len())], inner.server_version));
        Some((base.with_extension("ddl"), base.with_extension("seed")))
    }

    /// The DDL and rows an earlier build of `fp` captured, if any (marked as used now: the
    /// least recently used captures go first when the cache is trimmed).
    pub(super) fn load(inner: &Inner, fp: &str) -> Option<(String, String)> {
        let (ddl, seed) = paths(inner, fp)?;
        let found = (std::fs::read_to_string(&ddl).ok()?, std::fs::read_to_string(&seed).ok()?);
        for p in [&ddl, &seed] {
            if let Ok(f) = std::fs::File::options().append(true).open(p) {
                let _ = f.set_modified(std::time::SystemTime::now());
            }
        }
        Some(found)
    }

    /// What the cache keeps at most: 64 MiB, 200 captures.
    const MAX_BYTES: u64 = 64 << 20;
    const MAX_CAPTURES: usize = 200;

    /// Deletes the least recently used captures in `dir` until at most `max_bytes` and
    /// `max_captures` are left (a capture is its `.ddl` and `.seed` files).
    pub(super) fn trim(dir: &Path, max_bytes: u64, max_captures: usize) {
        let mut captures: HashMap<String, (SystemTime, u64, Vec<PathBuf>)> = HashMap::new();
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = e.path();
            let (Some(stem), Some(ext)) = (path.file_stem(), path.extension()) else { continue };
            if ext != "ddl" && ext != "seed" {
                continue;
            }
            let Ok(meta) = e.metadata() else { continue };
            let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let c = captures.entry(stem.to_string_lossy().into_owned()).or_insert((used, 0, Vec::new()));
            c.0 = c.0.max(used);
            c.1 += meta.len();
            c.2.push(path);
        }
        let mut by_use: Vec<(SystemTime, u64, Vec<PathBuf>)> = captures.into_values().collect();
        by_use.sort_by_key(|c| c.0);
        let mut total: u64 = by_use.iter().map(|c| c.1).sum();
        let mut left = by_use.len();
        for (_, size, paths) in by_use {
            if total <= max_bytes && left <= max_captures {
                break;
            }
            for p in paths {
                let _ = std::fs::remove_file(p);
            }
            total -= size;
            left -= 1;
        }
    }

    /// Keeps a build's capture (best effort: a cache).
    pub(super) fn store(inner: &Inner, fp: &str, ddl: &str, seed: &str) {
        let Some((ddl_path, seed_path)) = paths(inner, fp) else { return };
        let Some(dir) = ddl_path.parent() else { return };
        if std::fs::create_dir_all(dir).is_err() {
            return;
        }
        // Rows first, DDL last: a reader finds both or neither.
        for (path, text) in [(&seed_path, seed), (&ddl_path, ddl)] {
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            if std::fs::write(&tmp, text).is_err() || std::fs::rename(&tmp, path).is_err() {
                let _ = std::fs::remove_file(&tmp);
                return;
            }
        }
        trim(dir, MAX_BYTES, MAX_CAPTURES);
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn trimming_keeps_the_most_recently_used_captures() {
            let dir = std::env::temp_dir().join(format!("pgisolate-trim-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let t0 = std::time::SystemTime::now() - std::time::Duration::from_secs(100);
            for (i, name) in ["old", "mid", "new"].iter().enumerate() {
                for ext in ["ddl", "seed"] {
                    let p = dir.join(format!("{name}.{ext}"));
                    std::fs::write(&p, vec![b'x'; 100]).unwrap();
                    let f = std::fs::File::options().append(true).open(&p).unwrap();
                    f.set_modified(t0 + std::time::Duration::from_secs(10 * i as u64)).unwrap();
                }
            }
            std::fs::write(dir.join("unrelated.txt"), "kept").unwrap();
            super::trim(&dir, 450, 10); // 600 bytes: the oldest capture goes
            let left = |n: &str| dir.join(format!("{n}.ddl")).exists() && dir.join(format!("{n}.seed")).exists();
            assert!(!dir.join("old.ddl").exists() && !dir.join("old.seed").exists());
            assert!(left("mid") && left("new"));
            super::trim(&dir, 1 << 20, 1); // one capture at most
            assert!(!left("mid") && left("new"));
            assert!(dir.join("unrelated.txt").exists());
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}

impl Inner {
    /// The pg_dump for this server ([`template::pg_dump_for`]), looked for once.
    async fn find_pg_dump(&self) -> std::result::Result<std::path::PathBuf, String> {
        if let Some(found) = self.pg_dump.get() {
            return found.clone();
        }
        let (server, explicit) = ((self.server_version / 10000) as u32, self.cfg.pg_dump.clone());
        let bin = self.cfg.pg_bin.clone().or_else(|| crate::server::find_binaries(None).ok().map(|b| b.dir));
        let found =
            tokio::task::spawn_blocking(move || template::pg_dump_for(server, explicit.as_deref(), bin.as_deref()))
                .await
                .unwrap_or_else(|e| Err(format!("looking for pg_dump panicked: {e}")));
        let _ = self.pg_dump.set(found.clone());
        found
    }
}

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
        self.engine.inner.ensure_pool(&t);
        Ok(t)
    }

    /// Abandons the build and drops its schema.
    pub async fn abort(mut self) -> Result<()> {
        self.abandon().await.0
    }

    /// Abandons the build after the caller's migration tool failed with `message`, and returns
    /// the error to report: the message, plus a hint when it looks like an object the build
    /// cannot see (an extension installed in `public`, say).
    pub async fn fail(mut self, source_name: &str, message: &str) -> Error {
        let mut message = message.to_owned();
        if let Some(locker) = &self.locker {
            message.push_str(&build_check::hint_for_message(locker, &message).await);
        }
        message.push_str(&self.abandon_failed().await);
        Error::Migration { source_name: source_name.to_owned(), code: None, message }
    }

    /// Drops the build schema and what the build created outside it; returns whether the
    /// schema was dropped and what to append to an error: what the build had made outside, and
    /// what of it was undone (empty when nothing).
    async fn abandon(&mut self) -> (Result<()>, String) {
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
    async fn abandon_failed(&mut self) -> String {
        let (dropped, mut note) = self.abandon().await;
        if let Err(e) = dropped {
            note.push_str(&format!(" (and the build could not be dropped: {e}; gc will)"));
        }
        note
    }

    async fn publish(&mut self, steps: Option<Vec<(String, String)>>) -> Result<Template> {
        self.publish_as(steps, None).await
    }

    /// Publishes the build; with `cached` (DDL and rows captured from an earlier build of the
    /// same fingerprint, replayed into this build), without checking or capturing it again.
    async fn publish_as(
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
                let dumper = inner.find_pg_dump().await;
                let (captured, seed) = tokio::task::spawn_blocking(move || {
                    let ddl = template::capture(&url, &build, &dumper, false);
                    let seed = ddl.as_ref().ok().and_then(|_| template::capture(&url, &build, &dumper, true).ok());
                    (ddl, seed)
                })
                .await
                .map_err(|e| Error::Internal(format!("template capture panicked: {e}")))?;
                if let (true, Ok(ddl), Some(seed)) = (self.by_content, &captured, &seed) {
                    capture_cache::store(inner, &self.fingerprint, ddl, seed);
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
