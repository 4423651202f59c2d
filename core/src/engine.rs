//! The engine: one per process. Admin connections, the owner lease, templates, acquire,
//! release and gc.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore};
use tokio_postgres::Client;

use crate::admin::{self, exec, ident, literal, AdminPool};
use crate::build_check;
use crate::config::{Config, Keep};
use crate::conninfo::{self, ConnInfo};
use crate::drop;
use crate::error::{Error, Result};
use crate::lease::{Lease, TEMPLATE_CLASS};
use crate::naming::{self, Identity};
use crate::pool::PoolState;
use crate::registry::{self, Kind};
use crate::schema::Schema;
use crate::server::{self, Server};
use crate::template::{self, Migrations, Replay, Template};

/// The isolation engine. Cheap to clone; all clones share one lease and one set of admin
/// connections. Create one per process with [`Engine::start`].
#[derive(Clone, Debug)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) cfg: Config,
    pub(crate) url: String,
    url_form: ConnInfo,
    kv_form: ConnInfo,
    pub(crate) pool: Arc<AdminPool>,
    lease: Mutex<Option<Lease>>,
    pub(crate) owner: i32,
    pub(crate) run_id: String,
    host: String,
    server: Option<Server>,
    pub(crate) runtime: tokio::runtime::Handle,
    closed: AtomicBool,
    templates: Mutex<HashMap<String, Template>>,
    pending: Arc<AtomicUsize>,
    idle: Arc<Notify>,
    pub(crate) pools: Mutex<HashMap<String, PoolState>>,
    pub(crate) drop_slots: Arc<Semaphore>,
    /// Per identity hash, the first name candidate not yet handed out by this engine: a name
    /// is never handed out twice by a live engine, so a leaked pool of an earlier test that
    /// reconnects with its URL finds no schema instead of the next test's (R5).
    next_candidate: Mutex<HashMap<String, usize>>,
    /// The database's oid (marks per-schema roles, which are cluster-wide).
    pub(crate) db_oid: u32,
    pub(crate) superuser: bool,
    redis: Option<crate::cache_key::Redis>,
    /// Schema `extensions` exists (made by PGISOLATE_EXTENSIONS or by moving an extension a
    /// migration created out of a build): it joins every search_path.
    ext_in_tail: AtomicBool,
    /// Warnings not yet taken by [`Engine::take_warnings`] (when `collect_warnings` is set).
    warnings: Mutex<Vec<String>>,
    /// Templates whose shadowing tables this engine has warned about.
    warned_templates: Mutex<std::collections::HashSet<String>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("url", &conninfo::redact(&self.url))
            .field("owner", &self.owner)
            .field("run_id", &self.run_id)
            .field("embedded", &self.server.is_some())
            .finish_non_exhaustive()
    }
}

/// What gc did.
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
    /// Templates dropped as unused or superseded ([`Config::template_max_age`]).
    pub dropped_templates: Vec<String>,
}

/// How a release ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    /// The schema was dropped (or renamed away and queued for a background drop).
    Dropped,
    /// Its DDL was unchanged: its data was reset and it went back to the warm pool.
    Recycled,
    /// The keep policy kept it (`pgisolate ls` shows it; `pgisolate gc --kept` drops it).
    Kept,
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
    locker: Option<Client>,
    /// The build's first transaction id (mod 2^32): version-table rows written since then
    /// were written by this build.
    begin_xid: i64,
    /// What the template is built from (a directory, a key), for listing and pruning.
    source: String,
}

/// Result of [`Engine::template_begin`].
#[derive(Debug)]
pub enum TemplateStart {
    /// The template already exists: use it.
    Ready(Template),
    /// This caller must build it.
    Build(TemplateBuild),
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

impl Engine {
    /// Starts an engine: connects to `cfg.url` (or boots/reuses the embedded server), takes an
    /// owner lease, creates the registry if needed and, unless disabled, runs gc.
    pub async fn start(mut cfg: Config) -> Result<Engine> {
        cfg.validate()?;
        // Redis first: a wrong password or an unreachable server fails here, before anything
        // is started (tests would otherwise share cache keys nobody deletes).
        let redis = match cfg.redis_url.as_deref() {
            Some(u) => Some(crate::cache_key::Redis::open(u, cfg.redis_ca_file.as_deref()).await?),
            None => None,
        };
        if !cfg.extensions.is_empty() && !cfg.search_path_tail.iter().any(|t| t == "extensions") {
            cfg.search_path_tail.push("extensions".to_owned());
        }
        // A registry package's binaries serve only a machine without PostgreSQL's own.
        if cfg.pg_bin.is_none() && cfg.pg_bin_fallback.is_some() && server::find_binaries(None).is_err() {
            cfg.pg_bin = cfg.pg_bin_fallback.clone();
        }
        let progress = cfg.progress.clone();
        let (url, server, start_lock) = match &cfg.url {
            // Normalized: a SQLAlchemy postgresql+driver:// URL becomes libpq's postgresql://.
            Some(u) => (ConnInfo::parse(u)?.to_string_form(), None, None),
            None => {
                let bin = cfg.pg_bin.clone();
                let (srv, lock) = tokio::task::spawn_blocking(move || {
                    let say = |m: &str| {
                        if let Some(p) = &progress {
                            p(m)
                        }
                    };
                    server::ensure(bin.as_deref(), &say)
                })
                .await
                .map_err(|e| Error::Internal(format!("embedded server start-up panicked: {e}")))??;
                (srv.url.clone(), Some(srv), Some(lock))
            }
        };
        let lease = Lease::take(&url).await?;
        drop(start_lock);
        let parsed = ConnInfo::parse(&url)?;
        let url_form = parsed.to_url();
        let kv_form = parsed.to_keyvalue()?;
        let pool = AdminPool::new(&url, cfg.max_admin_connections);
        pool.set_reserved(lease.reserved());
        let public_warning;
        let db_oid: u32;
        let superuser = {
            let admin = pool.get().await?;
            let row = admin
                .query_one(
                    "select (select oid from pg_database where datname = current_database()), rolsuper, \
                     rolsuper or rolcreaterole, exists (select 1 from pg_namespace where nspname = 'extensions') \
                     from pg_roles where rolname = current_user",
                    &[],
                )
                .await
                .map_err(|e| Error::db("look up the engine's role", e))?;
            db_oid = row.get(0);
            if cfg.login_role && !row.get::<_, bool>(2) {
                return Err(Error::Config(
                    "PGISOLATE_LOGIN_ROLE needs an admin role with CREATEROLE (or a superuser) to create a login \
                     role per schema: ALTER ROLE <admin> CREATEROLE, or turn PGISOLATE_LOGIN_ROLE off"
                        .into(),
                ));
            }
            registry::ensure(&admin).await?;
            registry::ensure_extensions(&admin, &cfg.extensions).await?;
            if cfg.login_role {
                crate::role::share_extensions(&admin).await?;
            }
            let su: bool = row.get(1);
            public_warning = Engine::guard_public(&mut cfg, &admin, server.is_some()).await;
            let rescued = registry::rescue_extensions(&admin).await?;
            // Schema extensions exists if it did before, or the rescue made it just now
            // (configured extensions already put it in the tail above).
            let has_ext_schema = row.get::<_, bool>(3) || rescued;
            if has_ext_schema && !cfg.search_path_tail.iter().any(|t| t == "extensions") {
                cfg.search_path_tail.push("extensions".to_owned());
            }
            su && cfg.recycle && cfg.pool_size > 0 && registry::ensure_ddl_watch(&admin).await?
        };
        let run_id = cfg.run_id.clone().unwrap_or_else(|| crate::secret::random_hex(16));
        let inner = Inner {
            owner: lease.key,
            lease: Mutex::new(Some(lease)),
            url,
            url_form,
            kv_form,
            pool,
            run_id,
            host: hostname(),
            server,
            runtime: tokio::runtime::Handle::current(),
            closed: AtomicBool::new(false),
            templates: Mutex::new(HashMap::new()),
            pending: Arc::new(AtomicUsize::new(0)),
            idle: Arc::new(Notify::new()),
            pools: Mutex::new(HashMap::new()),
            drop_slots: Arc::new(Semaphore::new(2)),
            next_candidate: Mutex::new(HashMap::new()),
            db_oid,
            superuser,
            redis,
            ext_in_tail: AtomicBool::new(false),
            warnings: Mutex::new(Vec::new()),
            warned_templates: Mutex::new(Default::default()),
            cfg,
        };
        let engine = Engine { inner: Arc::new(inner) };
        if let Some(w) = public_warning {
            engine.inner.warn(&w);
        }
        if engine.inner.cfg.gc_on_start {
            let report = engine.gc().await?;
            for (s, why) in report.failed {
                engine.inner.warn(&format!("gc could not drop {s}: {why}"));
            }
        }
        Ok(engine)
    }

    /// R16: `public` in the search_path tail is where a test's unqualified CREATE TABLE goes
    /// when its schema is gone (dropped behind our back, or a leaked connection reconnecting
    /// after release) if the role can create there. The default tail leaves such a `public`
    /// out unless an extension lives in it; a tail the user chose is kept, with a warning.
    async fn guard_public(cfg: &mut Config, admin: &Client, embedded: bool) -> Option<String> {
        if !cfg.search_path_tail.iter().any(|t| t == "public") {
            return None;
        }
        let row = admin
            .query_one(
                "select coalesce(has_schema_privilege('public', 'CREATE'), false), \
                 exists (select 1 from pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a \
                         where n.nspname = 'public' and a.grantee = 0 and a.privilege_type = 'CREATE'), \
                 exists (select 1 from pg_extension e join pg_namespace n on n.oid = e.extnamespace where n.nspname = 'public')",
                &[],
            )
            .await
            .ok()?;
        let (writable, by_everyone, has_extensions): (bool, bool, bool) = (row.get(0), row.get(1), row.get(2));
        if !writable {
            return None;
        }
        let who = if by_everyone { "every role" } else { "this role" };
        if !cfg.search_path_tail_set && !has_extensions {
            cfg.search_path_tail.retain(|t| t != "public");
            // Only a grant to every role is a misconfiguration worth a word; the owner or a
            // superuser can always create there.
            if embedded || !by_everyone {
                return None;
            }
            return Some(format!(
                "schema public is writable by {who}, so it is left out of each test's search_path (a test whose \
                 schema vanished would otherwise create its tables there); set PGISOLATE_SEARCH_PATH_TAIL=public to \
                 keep it, or REVOKE CREATE ON SCHEMA public FROM PUBLIC"
            ));
        }
        Some(format!(
            "schema public is writable by {who} and is in each test's search_path{why}: a test whose schema vanished \
             would create its tables there; REVOKE CREATE ON SCHEMA public FROM PUBLIC, or set \
             PGISOLATE_SEARCH_PATH_TAIL without public (PGISOLATE_EXTENSIONS installs extensions into schema extensions)",
            why = if cfg.search_path_tail_set { "" } else { " (extensions are installed there)" },
        ))
    }

    /// Starts an engine configured from the environment ([`Config::from_env`]).
    pub async fn from_env() -> Result<Engine> {
        Engine::start(Config::from_env()?).await
    }

    /// The admin connection string (superuser URL of the embedded server, or the configured one).
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Whether this engine uses the embedded server.
    pub fn is_embedded(&self) -> bool {
        self.inner.server.is_some()
    }

    /// The embedded server, if used.
    pub fn server(&self) -> Option<&Server> {
        self.inner.server.as_ref()
    }

    /// This engine's owner key (its lease).
    pub fn owner(&self) -> i32 {
        self.inner.owner
    }

    /// The run id recorded with every schema.
    pub fn run_id(&self) -> &str {
        &self.inner.run_id
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.inner.cfg
    }

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
        match self.begin_build(&fp, Some(&steps), source).await? {
            TemplateStart::Ready(t) => Ok(self.remember(t)),
            TemplateStart::Build(mut b) => {
                let locker =
                    b.locker.as_ref().ok_or_else(|| Error::Closed("template build lost its connection".into()))?;
                let path = Engine::build_path(&b.schema).iter().map(|s| ident(s)).collect::<Vec<_>>().join(", ");
                for (name, sql) in &steps {
                    let batch = format!("BEGIN; SET LOCAL search_path TO {path};\n{sql}\n;\nCOMMIT;");
                    if let Err(e) = locker.batch_execute(&batch).await {
                        let (code, mut message) = crate::error::describe_pg(&e);
                        let _ = locker.batch_execute("ROLLBACK").await;
                        message.push_str(&crate::build_check::hint_for(locker, &e).await);
                        let _ = b.abort_inner().await;
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
        self.template_begin_source(key, key).await
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
        self.template_begin_source(&full, &source).await
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

    async fn template_begin_source(&self, key: &str, source: &str) -> Result<TemplateStart> {
        self.inner.check_open()?;
        let fp = template::caller_fingerprint(key);
        if let Some(t) = self.cached(&fp) {
            return Ok(TemplateStart::Ready(t));
        }
        match self.begin_build(&fp, None, source).await? {
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

    /// Warnings collected since the last call (when [`Config::collect_warnings`] is set), for
    /// bindings that hand them to their test runner. Each is one line.
    pub fn take_warnings(&self) -> Vec<String> {
        self.inner.warnings.lock().map(|mut w| std::mem::take(&mut *w)).unwrap_or_default()
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
                     install pg_dump or set PGISOLATE_PG_BIN, then drop the template schema so it is rebuilt",
                    row.get::<_, String>(0)
                )))
            }
        };
        let schema: String = row.get(0);
        let tables = template_tables(client, &schema).await?;
        let mut seed_sql: Option<String> = row.get(2);
        if seed_sql.is_none() && matches!(replay, Replay::Captured(_)) {
            // Built by an engine that did not capture rows yet: capture them now, once.
            let (url, tpl) = (self.inner.url.clone(), schema.clone());
            let bin = self.inner.cfg.pg_bin.clone().or_else(|| server::find_binaries(None).ok().map(|b| b.dir));
            seed_sql = tokio::task::spawn_blocking(move || template::capture(&url, &tpl, bin.as_deref(), true).ok())
                .await
                .ok()
                .flatten();
            if let Some(seed) = &seed_sql {
                let _ = client
                    .execute("update pgisolate.templates set seed_sql = $2 where fingerprint = $1", &[&fp, seed])
                    .await;
            }
        }
        Ok(Some(Template { fingerprint: fp.to_owned(), schema, replay, built_here: false, seed_sql, tables }))
    }

    async fn begin_build(&self, fp: &str, steps: Option<&[(String, String)]>, source: &str) -> Result<TemplateStart> {
        {
            let admin = self.inner.pool.get().await?;
            if let Some(t) = self.lookup(&admin, fp, steps).await? {
                return Ok(TemplateStart::Ready(t));
            }
        }
        let locker = admin::connect(&self.inner.url, admin::ADMIN_APP).await?;
        let key = i32::from_str_radix(&fp[..7], 16).unwrap_or(0);
        locker
            .execute("select pg_advisory_lock($1::int4, $2::int4)", &[&TEMPLATE_CLASS, &key])
            .await
            .map_err(|e| Error::db("take the template build lock", e))?;
        if let Some(t) = self.lookup(&locker, fp, steps).await? {
            return Ok(TemplateStart::Ready(t));
        }
        if let Some(p) = &self.inner.cfg.progress {
            p(&format!("building template {}", template::template_schema(fp)));
        }
        let build = template::build_schema(fp, self.inner.owner);
        let sql = format!(
            "BEGIN; DROP SCHEMA IF EXISTS {b} CASCADE; CREATE SCHEMA {b}; {comment} \
             INSERT INTO pgisolate.leases (schema_name, identity_hash, identity, owner_key, run_id, host, pid, state) \
             VALUES ({bl}, {fpl}, {idl}, {owner}, {run}, {host}, {pid}, 'building') \
             ON CONFLICT (schema_name) DO UPDATE SET state = 'building', created_at = now(); COMMIT;",
            b = ident(&build),
            comment = registry::comment_sql(&build, Kind::Build, self.inner.owner),
            bl = literal(&build),
            fpl = literal(fp),
            idl = literal(&format!("template {}", template::template_schema(fp))),
            owner = self.inner.owner,
            run = literal(&self.inner.run_id),
            host = literal(&self.inner.host),
            pid = std::process::id() as i32,
        );
        if let Err(e) = exec(&locker, "create the template build schema", &sql).await {
            let _ = locker.batch_execute("ROLLBACK").await;
            return Err(e);
        }
        let tail = Engine::build_path(&build)[1..].to_vec();
        let begin_xid: i64 = locker
            .query_one("select txid_current() % 4294967296", &[])
            .await
            .map_err(|e| Error::db("start the template build", e))?
            .get(0);
        Ok(TemplateStart::Build(TemplateBuild {
            begin_xid,
            source: source.to_owned(),
            engine: self.clone(),
            fingerprint: fp.to_owned(),
            url: conninfo::scoped(&self.inner.url_form.to_string(), &build, &tail)?,
            conninfo: conninfo::scoped(&self.inner.kv_form.to_string(), &build, &tail)?,
            schema: build,
            locker: Some(locker),
        }))
    }

    /// A fresh schema for `identity`, filled from `tpl`. The name is deterministic when
    /// uncontended and never shared: if it is taken (another identity with the same short
    /// hash, the same identity elsewhere, or a foreign schema) the name is extended.
    pub async fn acquire(&self, tpl: &Template, identity: Identity) -> Result<Schema> {
        self.inner.check_open()?;
        let hash = identity.hash_hex();
        let shown = identity.display();
        let admin = self.inner.pool.get().await?;
        self.warn_shadowed(&admin, tpl).await;
        let mut taken = Vec::new();
        // A ready schema from the pool is renamed to the name; without one, the template is
        // replayed into a new schema. Either way in the transaction that registers the name.
        let mut ready = self.inner.take_ready(tpl);
        let start = self.inner.next_candidate.lock().ok().and_then(|m| m.get(&hash).copied()).unwrap_or(0);
        let mut names =
            naming::candidates_from(&self.inner.cfg.prefix, self.inner.cfg.hash_len, &hash, &self.inner.run_id, start)
                .take(24)
                .zip(start..);
        let mut next = names.next();
        while let Some((n, index)) = next.clone() {
            let make = match &ready {
                Some(r) => format!("ALTER SCHEMA {} RENAME TO {};", ident(&r.name), ident(&n)),
                None => format!("CREATE SCHEMA {};\n{}\n;", ident(&n), tpl.replay_sql(&n)),
            };
            // With login roles: a pooled schema's role exists already; otherwise it is made
            // here. Either way it may log in only from now on, into the final name.
            let pooled_role = ready.as_ref().and_then(|r| r.role.clone());
            let role = self
                .inner
                .cfg
                .login_role
                .then(|| (pooled_role.clone().unwrap_or_else(crate::role::new_role), crate::role::new_password()));
            let grant = match &role {
                Some((r, pw)) => {
                    let prepare = match &pooled_role {
                        Some(_) => String::new(),
                        None => crate::role::prepare_sql(&n, r, self.inner.owner, self.inner.db_oid),
                    };
                    format!("{prepare} {}", crate::role::login_sql(r, pw, &self.path_for(&n)))
                }
                None => String::new(),
            };
            let sql = format!(
                "BEGIN; {internal} INSERT INTO pgisolate.leases (schema_name, identity_hash, identity, owner_key, run_id, host, pid, template) \
                 VALUES ({nl}, {hl}, {il}, {owner}, {run}, {host}, {pid}, {tpl}); {make} {comment} {untouch} {grant} COMMIT;",
                internal = registry::INTERNAL,
                untouch = self.untouch_sql(&n),
                nl = literal(&n),
                hl = literal(&hash),
                il = literal(&shown),
                owner = self.inner.owner,
                run = literal(&self.inner.run_id),
                host = literal(&self.inner.host),
                pid = std::process::id() as i32,
                tpl = literal(&tpl.schema),
                comment = registry::comment_sql(&n, Kind::Schema, self.inner.owner),
            );
            match admin.batch_execute(&sql).await {
                Ok(()) => {
                    if let Ok(mut m) = self.inner.next_candidate.lock() {
                        let e = m.entry(hash.clone()).or_insert(0);
                        *e = (*e).max(index + 1);
                    }
                    if ready.is_none() {
                        self.inner.ensure_pool(tpl);
                    }
                    let schema = self.handed_out(n, identity, tpl, role)?;
                    if self.inner.cfg.verify_handout {
                        schema.verify().await?;
                    }
                    return Ok(schema);
                }
                Err(e) => {
                    let _ = admin.batch_execute("ROLLBACK").await;
                    match e.code().map(|c| c.code()) {
                        Some("23505") | Some("42P06") => {
                            taken.push(n);
                            next = names.next();
                        }
                        _ => match ready.take() {
                            // The pooled schema is unusable: drop it, try the same name by replay.
                            Some(r) => self.inner.defer_drop(r.name, None),
                            None => {
                                return Err(Error::db(format!("create schema {n} from template {}", tpl.schema), e))
                            }
                        },
                    }
                }
            }
        }
        if let Some(r) = ready {
            self.inner.defer_drop(r.name, None);
        }
        Err(Error::NameExhausted(format!("no free schema name for identity {shown:?}: tried {}", taken.join(", "))))
    }

    /// Warns once per template when its tables also exist by name in the search_path tail.
    async fn warn_shadowed(&self, admin: &Client, tpl: &Template) {
        let first = self.inner.warned_templates.lock().map(|mut s| s.insert(tpl.schema.clone())).unwrap_or(false);
        if !first {
            return;
        }
        if let Ok(found) = build_check::shadowed(admin, &tpl.schema, &self.inner.tail()).await {
            if !found.is_empty() {
                self.inner.warn(&build_check::shadow_warning(&tpl.schema, &found));
            }
        }
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

    /// Clears a stale "DDL ran here" record for a name being handed out again.
    fn untouch_sql(&self, name: &str) -> String {
        if self.inner.superuser {
            format!("DELETE FROM pgisolate.ddl_touched WHERE nspname = {};", literal(name))
        } else {
            String::new()
        }
    }

    /// A schema's search_path: itself, then the tail.
    fn path_for(&self, name: &str) -> Vec<String> {
        std::iter::once(name.to_owned())
            .chain(self.inner.tail().into_iter().filter(|t| !t.is_empty() && t != name))
            .collect()
    }

    fn handed_out(
        &self,
        name: String,
        identity: Identity,
        tpl: &Template,
        role: Option<(String, String)>,
    ) -> Result<Schema> {
        let tail = &self.inner.tail();
        let (url, conninfo) = match &role {
            Some((r, pw)) => (
                conninfo::with_role(&self.inner.url_form.to_string(), &name, r, pw)?,
                conninfo::with_role(&self.inner.kv_form.to_string(), &name, r, pw)?,
            ),
            None => (
                conninfo::scoped(&self.inner.url_form.to_string(), &name, tail)?,
                conninfo::scoped(&self.inner.kv_form.to_string(), &name, tail)?,
            ),
        };
        let schema = Schema {
            url,
            conninfo,
            role: role.map(|(r, _)| r),
            cache_prefix: naming::cache_prefix(&self.inner.cfg.prefix, &name),
            search_path: self.path_for(&name).iter().map(|s| conninfo::quote_ident(s)).collect::<Vec<_>>().join(", "),
            name,
            identity,
            template_fp: Some(tpl.fingerprint.clone()),
            engine: Some(self.inner.clone()),
        };
        Ok(schema)
    }

    /// Waits (up to the release timeout plus 5 s) for background work: pool refills and
    /// deferred drops.
    pub async fn flush(&self) {
        self.inner.wait_idle(self.inner.cfg.release_timeout + Duration::from_secs(5)).await;
    }

    /// Drops every marked schema whose owner is gone and that is older than the grace period.
    pub async fn gc(&self) -> Result<GcReport> {
        self.gc_with(self.inner.cfg.gc_grace, false).await
    }

    /// gc with an explicit grace period; with `include_kept`, kept schemas of dead owners too.
    pub async fn gc_with(&self, grace: Duration, include_kept: bool) -> Result<GcReport> {
        self.inner.check_open()?;
        let admin = self.inner.pool.get_teardown().await?;
        let mut report = GcReport::default();
        for o in registry::orphans(&admin, grace, include_kept).await? {
            if matches!(o.marker.kind, Kind::Schema | Kind::Kept) {
                self.inner.delete_cache_keys(&o.schema).await;
            }
            let apps = vec![conninfo::application_name(&o.schema)];
            let deadline = Instant::now() + Duration::from_secs(30);
            match drop::drop_schema(&admin, &o.schema, &apps, deadline).await {
                Ok(()) => {
                    let _ = admin.execute("delete from pgisolate.leases where schema_name = $1", &[&o.schema]).await;
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
        let marker: Option<String> = admin
            .query_opt("select obj_description(oid, 'pg_namespace') from pg_namespace where nspname = $1", &[&name])
            .await
            .map_err(|e| Error::db("look up a schema", e))?
            .and_then(|r| r.get(0));
        if marker.as_deref().and_then(registry::parse_marker).is_none() {
            return Err(Error::Refused(format!("refusing to drop {name:?}: it carries no pgisolate marker")));
        }
        let apps = vec![conninfo::application_name(name)];
        drop::drop_schema(&admin, name, &apps, Instant::now() + self.inner.cfg.release_timeout).await?;
        let _ = admin.execute("delete from pgisolate.leases where schema_name = $1", &[&name]).await;
        Ok(())
    }

    /// Waits for background releases, closes admin connections and gives up the lease.
    /// Idempotent; later calls on the engine fail with a "closed" error.
    pub async fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.inner.wait_idle(self.inner.cfg.release_timeout + Duration::from_secs(5)).await;
        self.inner.drain_pools().await;
        self.inner.pool.close();
        if let Ok(mut l) = self.inner.lease.lock() {
            l.take();
        }
        Ok(())
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
        self.abort_inner().await
    }

    /// Abandons the build after the caller's migration tool failed with `message`, and returns
    /// the error to report: the message, plus a hint when it looks like an object the build
    /// cannot see (an extension installed in `public`, say).
    pub async fn fail(mut self, source_name: &str, message: &str) -> Error {
        let mut message = message.to_owned();
        if let Some(locker) = &self.locker {
            message.push_str(&build_check::hint_for_message(locker, &message).await);
        }
        if let Err(e) = self.abort_inner().await {
            message.push_str(&format!(" (and the build could not be dropped: {e}; gc will)"));
        }
        Error::Migration { source_name: source_name.to_owned(), code: None, message }
    }

    async fn abort_inner(&mut self) -> Result<()> {
        if let Some(locker) = self.locker.take() {
            let apps = vec![conninfo::application_name(&self.schema)];
            drop::drop_schema(&locker, &self.schema, &apps, Instant::now() + Duration::from_secs(10)).await?;
            let _ = locker.execute("delete from pgisolate.leases where schema_name = $1", &[&self.schema]).await;
        }
        Ok(())
    }

    async fn publish(&mut self, steps: Option<Vec<(String, String)>>) -> Result<Template> {
        let inner = &self.engine.inner;
        let locker = self.locker.take().ok_or_else(|| Error::Closed("template build already finished".into()))?;
        // Sessions the caller's migration tool left open must not outlive the build.
        let _ = drop::terminate(&locker, &[conninfo::application_name(&self.schema)]).await;
        let checked = async {
            let relocated = build_check::relocate_extensions(&locker, &self.schema).await?;
            build_check::check_build(&locker, &self.schema, self.begin_xid).await?;
            Ok::<_, Error>(relocated)
        }
        .await;
        match checked {
            Ok(relocated) => {
                // The build saw schema extensions (its search_path has it); so must the tests.
                // It may exist without this build having moved anything: made since this
                // engine started by another engine's build or start-up rescue.
                if relocated.schema_exists {
                    inner.ext_in_tail.store(true, Ordering::SeqCst);
                }
                if relocated.moved && inner.cfg.login_role {
                    crate::role::share_extensions(&locker).await?;
                }
            }
            Err(e) => {
                let apps = vec![conninfo::application_name(&self.schema)];
                let _ = drop::drop_schema(&locker, &self.schema, &apps, Instant::now() + Duration::from_secs(10)).await;
                let _ = locker.execute("delete from pgisolate.leases where schema_name = $1", &[&self.schema]).await;
                return Err(e);
            }
        }
        let url = inner.url.clone();
        let build = self.schema.clone();
        let bin = inner.cfg.pg_bin.clone().or_else(|| server::find_binaries(None).ok().map(|b| b.dir));
        let (captured, seed) = tokio::task::spawn_blocking(move || {
            let ddl = template::capture(&url, &build, bin.as_deref(), false);
            let seed = ddl.as_ref().ok().and_then(|_| template::capture(&url, &build, bin.as_deref(), true).ok());
            (ddl, seed)
        })
        .await
        .map_err(|e| Error::Internal(format!("template capture panicked: {e}")))?;
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
                let _ = drop::drop_schema(&locker, &self.schema, &[], Instant::now() + Duration::from_secs(10)).await;
                return Err(Error::BinariesNotFound(format!(
                    "cannot capture template {tpl_name} built by the caller's migrations: {why}; \
                     install pg_dump (PostgreSQL client) or set PGISOLATE_PG_BIN"
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
            Some(m) if m.as_deref().and_then(registry::parse_marker).is_some_and(|m| m.kind == Kind::Template) => {
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
            marker = literal(&registry::marker(Kind::Template, 0)),
            bl = literal(&self.schema),
            fpl = literal(&self.fingerprint),
            tl = literal(&tpl_name),
            rl = replay_sql.as_deref().map(literal).unwrap_or_else(|| "NULL".into()),
            sl = seed.as_deref().map(literal).unwrap_or_else(|| "NULL".into()),
            owner = inner.owner,
        );
        if let Err(e) = exec(&locker, "publish the template", &sql).await {
            let _ = locker.batch_execute("ROLLBACK").await;
            return Err(e);
        }
        let tables = template_tables(&locker, &tpl_name).await?;
        Ok(Template {
            fingerprint: self.fingerprint.clone(),
            schema: tpl_name,
            replay,
            built_here: true,
            seed_sql: seed,
            tables,
        })
    }
}

impl Drop for TemplateBuild {
    fn drop(&mut self) {
        if let Some(locker) = self.locker.take() {
            let schema = self.schema.clone();
            let handle = self.engine.inner.runtime.clone();
            handle.spawn(async move {
                let _ = drop::drop_schema(&locker, &schema, &[], Instant::now() + Duration::from_secs(10)).await;
                let _ = locker.execute("delete from pgisolate.leases where schema_name = $1", &[&schema]).await;
            });
        }
    }
}

impl Inner {
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed("the pgisolate engine is closed".into()));
        }
        Ok(())
    }

    pub(crate) fn warn(&self, msg: &str) {
        match &self.cfg.on_warning {
            Some(w) => w(msg),
            None if self.cfg.collect_warnings => {
                // One line each: bindings hand them over newline-separated.
                let msg = msg.replace(['\r', '\n'], " ");
                if let Ok(mut w) = self.warnings.lock() {
                    if w.len() < 1000 && !w.contains(&msg) {
                        w.push(msg);
                    }
                }
            }
            None => eprintln!("pgisolate: warning: {msg}"),
        }
    }

    /// The schemas after a test's own in its search_path: the configured tail, plus
    /// `extensions` once a build moved an extension there.
    pub(crate) fn tail(&self) -> Vec<String> {
        let mut t = self.cfg.search_path_tail.clone();
        if self.ext_in_tail.load(Ordering::SeqCst) && !t.iter().any(|x| x == "extensions") {
            t.push("extensions".to_owned());
        }
        t
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    pub(crate) fn begin_background(&self) {
        self.pending.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn end_background(&self) {
        if self.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// A callback ending one unit of background work, for tasks that do not hold the engine.
    pub(crate) fn background_done(&self) -> impl FnOnce() + Send + 'static {
        let (pending, idle) = (self.pending.clone(), self.idle.clone());
        move || {
            if pending.fetch_sub(1, Ordering::SeqCst) == 1 {
                idle.notify_waiters();
            }
        }
    }

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

    /// Releases a schema: keep per policy, or rename to a tombstone, terminate its sessions,
    /// drop it (batched, bounded) and clear its registry row.
    pub(crate) async fn release(
        self: &Arc<Self>,
        name: &str,
        identity: &str,
        failed: bool,
        recycle: Option<&str>,
        role: Option<&str>,
    ) -> Result<Released> {
        let admin = self.pool.get_teardown().await?;
        if self.cfg.keep.keeps(failed) {
            let sql = format!(
                "BEGIN; UPDATE pgisolate.leases SET state = 'kept' WHERE schema_name = {nl}; {comment} COMMIT;",
                nl = literal(name),
                comment = registry::comment_sql(name, Kind::Kept, self.owner),
            );
            if let Err(e) = exec(&admin, &format!("keep schema {name}"), &sql).await {
                let _ = admin.batch_execute("ROLLBACK").await;
                return Err(e);
            }
            return Ok(Released::Kept);
        }
        let deadline = Instant::now() + self.cfg.release_timeout;
        let apps = vec![conninfo::application_name(name)];
        // Before the name (and so the cache prefix) can be handed out again.
        self.delete_cache_keys(name).await;
        if let Some(fp) = recycle {
            if self.cfg.recycle
                && self.superuser
                && self.cfg.pool_size > 0
                && self.try_recycle(&admin, name, identity, fp, role).await
            {
                return Ok(Released::Recycled);
            }
        }
        let tomb = format!("pgi_tomb_{}", crate::secret::random_hex(20));
        let rename = format!(
            "SET lock_timeout = '1s'; BEGIN; {internal} ALTER SCHEMA {n} RENAME TO {t}; {comment} \
             UPDATE pgisolate.leases SET schema_name = {tl}, state = 'dropping' WHERE schema_name = {nl}; {released} \
             {nologin} COMMIT; RESET lock_timeout; {sessions}",
            released = registry::released_sql(name, &tomb),
            // Its role can no longer log in: stragglers get an error, never a session.
            nologin = role.map(|r| format!("ALTER ROLE {} NOLOGIN;", ident(r))).unwrap_or_default(),
            sessions = sessions_sql(name, role),
            n = ident(name),
            t = ident(&tomb),
            comment = registry::comment_sql(&tomb, Kind::Tomb, self.owner),
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
                        let _ = admin.execute("delete from pgisolate.leases where schema_name = $1", &[&name]).await;
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
        if target != name && self.cfg.defer_drop {
            // The name is free now and may be handed out again before the drop runs: the
            // background work ends exactly the sessions seen at release, never by name.
            self.defer_drop(target, Some(Settle { pids, name: name.to_owned(), identity: identity.to_owned() }));
            return Ok(Released::Dropped);
        }
        self.settle(&admin, &pids, name, identity).await;
        drop::drop_schema(&admin, &target, &apps, deadline).await?;
        admin
            .execute("delete from pgisolate.leases where schema_name = $1", &[&target])
            .await
            .map_err(|e| Error::db("clear the registry row", e))?;
        Ok(Released::Dropped)
    }
}

impl Inner {
    /// Deletes the Redis keys under `schema`'s cache prefix, when Redis is configured; a
    /// failure is a warning, never a failed release.
    pub(crate) async fn delete_cache_keys(&self, schema: &str) {
        let Some(target) = &self.redis else { return };
        let prefix = naming::cache_prefix(&self.cfg.prefix, schema);
        if let Err(e) = target.delete_prefix(&prefix).await {
            self.warn(&format!("could not delete the Redis keys {prefix}* of {schema}: {e}"));
        }
    }
}

/// Sessions a release saw, to be ended in the background.
#[derive(Debug)]
pub(crate) struct Settle {
    pub(crate) pids: Vec<i32>,
    pub(crate) name: String,
    pub(crate) identity: String,
}

/// SQL listing the backends of a schema's sessions (comma-separated pids), for the end of a
/// release batch.
/// (`pg_stat_get_activity` directly: the `pg_stat_activity` view's joins double the cost of
/// a query that runs on every release.)
pub(crate) fn sessions_sql(name: &str, role: Option<&str>) -> String {
    let by_role = role.map(|r| format!(" OR usesysid = to_regrole({})::oid", literal(r))).unwrap_or_default();
    format!(
        "SELECT coalesce(string_agg(pid::text, ','), '') FROM pg_catalog.pg_stat_get_activity(NULL) \
         WHERE (application_name = {}{by_role}) AND pid <> pg_backend_pid();",
        literal(&conninfo::application_name(name))
    )
}

/// The pids printed by [`sessions_sql`] (the batch's last row).
pub(crate) fn parse_pids(rows: Vec<tokio_postgres::SimpleQueryMessage>) -> Vec<i32> {
    let last = rows.into_iter().rev().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    });
    last.unwrap_or_default().split(',').filter_map(|p| p.trim().parse().ok()).collect()
}

impl Inner {
    /// Ends the sessions a release saw: a client that closed just before release leaves a
    /// backend that exits a few milliseconds later, so each gets up to 150 ms; whatever is
    /// still there then was leaked by the test, is terminated, and is reported by name.
    pub(crate) async fn settle(&self, admin: &Client, pids: &[i32], name: &str, identity: &str) {
        if pids.is_empty() {
            return;
        }
        // A closing backend is normally gone within a few milliseconds: look after 5 ms (one
        // query for most releases), then back off to 150 ms in all.
        for pause in [5u64, 15, 30, 100] {
            tokio::time::sleep(Duration::from_millis(pause)).await;
            let alive: i64 = match admin
                .query_one("select count(*) from pg_catalog.pg_stat_get_activity(NULL) where pid = any($1)", &[&pids])
                .await
            {
                Ok(r) => r.get(0),
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

/// The tables of a template schema (quoted), emptied when a copy is recycled.
async fn template_tables(client: &Client, schema: &str) -> Result<Vec<String>> {
    let rows = client
        .query(
            "select quote_ident(c.relname) from pg_class c join pg_namespace n on n.oid = c.relnamespace \
             where n.nspname = $1 and c.relkind in ('r', 'p') and not c.relispartition order by c.oid",
            &[&schema],
        )
        .await
        .map_err(|e| Error::db("list the template's tables", e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

impl Keep {
    /// The policy's name as accepted by [`Keep::parse`].
    pub fn as_str(self) -> &'static str {
        match self {
            Keep::Never => "never",
            Keep::Failed => "failed",
            Keep::Always => "always",
        }
    }
}
