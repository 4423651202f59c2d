//! The Node binding (napi-rs): argument conversion, a call into the core on napi's tokio
//! runtime (never blocking the event loop), error mapping. A call that fails resolves to a
//! [`Failure`] (kind, code, SQLSTATE, message as fields, so nothing parses a message);
//! `index.js` throws the matching `PgIsolateError` subclass and adds the test helper.
#![allow(missing_debug_implementations)] // napi classes are opaque handles to JavaScript

use napi::bindgen_prelude::*;
use napi_derive::napi;
use pgisolate::{Config, Identity, Migrations, TemplateStart};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// A failed call: what `index.js` turns into the error class of `kind` (napi-rs rejects only
/// with a message and a fixed status, so the engine's error crosses as a value).
#[napi]
pub struct Failure {
    kind: u32,
    code: String,
    sqlstate: Option<String>,
    message: String,
}

#[napi]
impl Failure {
    /// The kind's stable number (tests/vectors/errors.json).
    #[napi(getter)]
    pub fn kind(&self) -> u32 {
        self.kind
    }

    /// The kind's name (`config`, `connect`, `db`, …).
    #[napi(getter)]
    pub fn code(&self) -> String {
        self.code.clone()
    }

    /// The server's SQLSTATE, when it sent one.
    #[napi(getter)]
    pub fn sqlstate(&self) -> Option<String> {
        self.sqlstate.clone()
    }

    /// What happened and what to do.
    #[napi(getter)]
    pub fn message(&self) -> String {
        self.message.clone()
    }
}

/// A call's result: the value, or the engine's error as a [`Failure`].
type Out<T> = Result<Either<T, Failure>>;

fn out<T>(r: pgisolate::Result<T>) -> Out<T> {
    Ok(match r {
        Ok(v) => Either::A(v),
        Err(e) => Either::B(Failure {
            kind: e.kind() as u32,
            code: e.kind().code().to_owned(),
            sqlstate: e.sqlstate().map(str::to_owned),
            message: e.to_string(),
        }),
    })
}

fn closed(what: &str) -> pgisolate::Error {
    pgisolate::Error::Closed(what.to_owned())
}

/// A template source: exactly one of `migrations` (a migration tool's directory), `files`, `sql`.
#[napi(object)]
pub struct TemplateSource {
    pub migrations: Option<String>,
    pub files: Option<Vec<String>>,
    pub sql: Option<String>,
}

/// What a schema isolates.
#[napi(object)]
pub struct IdentityInput {
    pub feature: String,
    pub scenario: String,
    pub discriminator: Option<String>,
}

impl From<IdentityInput> for Identity {
    fn from(i: IdentityInput) -> Identity {
        let id = Identity::new(i.feature, i.scenario);
        match i.discriminator {
            Some(d) => id.with_discriminator(d),
            None => id,
        }
    }
}

/// A live or kept schema, as `list()` shows it.
#[napi(object)]
pub struct Entry {
    pub schema: String,
    pub identity: String,
    pub state: String,
    pub owner_alive: bool,
    pub pid: i32,
    pub host: String,
    pub run_id: String,
    pub age_seconds: f64,
}

/// What a run left ([`Engine::end_of_run`]).
#[napi(object)]
pub struct RunReport {
    /// Schemas no test released.
    pub unreleased: Vec<Entry>,
    /// Kept schemas (failed tests').
    pub kept: Vec<Entry>,
    /// Schemas dropped now (dead owners').
    pub dropped: Vec<String>,
    /// The run's schemas still on the server, kept ones aside.
    pub left: Vec<Entry>,
}

fn entries(list: Vec<pgisolate::Entry>) -> Vec<Entry> {
    list.into_iter()
        .map(|e| Entry {
            schema: e.schema,
            identity: e.identity,
            state: e.state,
            owner_alive: e.owner_alive,
            pid: e.pid,
            host: e.host,
            run_id: e.run_id,
            age_seconds: e.age.as_secs_f64(),
        })
        .collect()
}

/// The isolation engine: one per process.
#[napi]
pub struct Engine {
    inner: pgisolate::Engine,
}

#[napi]
impl Engine {
    /// Starts an engine (booting or reusing the embedded server when no URL is set) with
    /// settings by key (the settings table (docs/configuration.md); index.js turns `{hashLen: 16}` into
    /// `{hash_len: "16"}`); unset ones come from the PGISOLATE_* environment.
    #[napi(ts_args_type = "settings?: import('./index').EngineOptions", ts_return_type = "Promise<Engine>")]
    pub async fn start(settings: Option<HashMap<String, String>>) -> Out<Engine> {
        out(async {
            let mut cfg = Config::from_env()?;
            for (k, v) in settings.unwrap_or_default() {
                cfg.set(&k, &v)?;
            }
            // index.js hands warnings to process.emitWarning (takeWarnings after each call).
            cfg.collect_warnings = true;
            cfg.validate()?;
            Ok(Engine { inner: pgisolate::Engine::start(cfg).await? })
        }
        .await)
    }

    /// The admin connection string of the server in use.
    #[napi(getter)]
    pub fn url(&self) -> String {
        self.inner.url().to_owned()
    }

    /// Warnings collected since the last call (index.js emits them as `PgIsolateWarning`).
    #[napi]
    pub fn take_warnings(&self) -> Vec<String> {
        self.inner.take_warnings()
    }

    /// The run identity recorded with every schema.
    #[napi(getter)]
    pub fn run_id(&self) -> String {
        self.inner.run_id().to_owned()
    }

    /// Whether this engine uses the embedded server.
    #[napi(getter)]
    pub fn embedded(&self) -> bool {
        self.inner.is_embedded()
    }

    /// A template from `{migrations}`, `{files}` or `{sql}`; built once per server.
    #[napi(ts_return_type = "Promise<Template>")]
    pub async fn template(&self, source: TemplateSource) -> Out<Template> {
        let m = match (source.migrations, source.files, source.sql) {
            (Some(d), None, None) => Migrations::dir(d),
            (None, Some(f), None) => Migrations::files(f),
            (None, None, Some(s)) => Migrations::sql(s),
            _ => return out(Err(pgisolate::Error::Config("give exactly one of migrations, files or sql".into()))),
        };
        out(self.inner.template(m).await.map(|inner| Template { inner }))
    }

    /// A template built once per server by `build(url)`, the caller's migration tool (Knex,
    /// Prisma, …), keyed by `key` and the contents of `inputs`: the core's flow
    /// (`Engine::template_with_inputs`). `build` returns a promise; when it rejects, the build
    /// is abandoned and this fails with a migration error carrying its message.
    #[napi(
        ts_args_type = "key: string, inputs: Array<string>, build: (url: string) => Promise<void>",
        ts_return_type = "Promise<Template>"
    )]
    pub async fn template_with(
        &self,
        key: String,
        inputs: Vec<String>,
        build: napi::threadsafe_function::ThreadsafeFunction<String, Promise<()>, String, Status, false>,
    ) -> Out<Template> {
        let made = self
            .inner
            .template_with_inputs(&key, &inputs, |url| async move {
                let pending = build.call_async_catch(url).await.map_err(|e| e.reason.clone())?;
                pending.await.map_err(|e| e.reason.clone())?;
                Ok(())
            })
            .await;
        out(made.map(|inner| Template { inner }))
    }

    /// Starts a template built by the caller's own tool: `{template}` when it exists, else
    /// `{build}` (migrate `build.url`, then `build.commit()`, or `build.fail(what, message)`).
    /// `inputs` (files, directories: the migrations) are hashed into the key, so a changed
    /// migration builds a new template.
    #[napi(ts_return_type = "Promise<TemplateBegin>")]
    pub async fn template_begin(&self, key: String, inputs: Option<Vec<String>>) -> Out<TemplateBegin> {
        out(self.inner.template_begin_inputs(&key, &inputs.unwrap_or_default()).await.map(|start| match start {
            TemplateStart::Ready(t) => TemplateBegin { template: Some(Template { inner: t }), build: None },
            TemplateStart::Build(b) => TemplateBegin {
                template: None,
                build: Some(TemplateBuild {
                    url: b.url().to_owned(),
                    conninfo: b.conninfo().to_owned(),
                    schema: b.schema().to_owned(),
                    inner: Mutex::new(Some(b)),
                }),
            },
        }))
    }

    /// A fresh schema for `{feature, scenario, discriminator?}` from `template`.
    #[napi(ts_return_type = "Promise<Schema>")]
    pub async fn acquire(&self, template: &Template, identity: IdentityInput) -> Out<Schema> {
        out(self.inner.acquire(&template.inner, identity.into()).await.map(Schema::new))
    }

    /// Drops marked schemas whose owner is gone (older than `graceMs`, default the engine's);
    /// returns their names.
    #[napi(ts_return_type = "Promise<Array<string>>")]
    pub async fn gc(&self, grace_ms: Option<f64>) -> Out<Vec<String>> {
        let grace = match grace_ms {
            Some(ms) if ms >= 0.0 => Duration::from_secs_f64(ms / 1000.0),
            Some(_) => return out(Err(pgisolate::Error::Config("graceMs must be >= 0".into()))),
            None => self.inner.config().gc_grace,
        };
        out(self.inner.gc_with(grace, false).await.map(|r| r.dropped))
    }

    /// Live and kept schemas.
    #[napi(ts_return_type = "Promise<Array<Entry>>")]
    pub async fn list(&self) -> Out<Vec<Entry>> {
        out(self.inner.list().await.map(entries))
    }

    /// What a run's workers need to join this engine's run: environment variables
    /// (`PGISOLATE_DATABASE_URL`, `PGISOLATE_RUN_ID`) and their values.
    #[napi(ts_return_type = "Record<string, string>")]
    pub fn worker_env(&self) -> HashMap<String, String> {
        self.inner.worker_env().into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    /// What the run left (the core's end of run, one report for every runner); with `reap`,
    /// dead owners' schemas are dropped first (a run's last engine only, once workers exited).
    #[napi(ts_return_type = "Promise<RunReport>")]
    pub async fn end_of_run(&self, reap: Option<bool>) -> Out<RunReport> {
        let grace = reap.unwrap_or(false).then_some(Duration::ZERO);
        out(self.inner.end_of_run(grace).await.map(|r| RunReport {
            unreleased: entries(r.unreleased),
            kept: entries(r.kept),
            dropped: r.dropped,
            left: entries(r.left),
        }))
    }

    /// Drops a schema carrying a pgisolate marker, by name.
    #[napi(ts_return_type = "Promise<void>")]
    pub async fn drop_schema(&self, name: String) -> Out<()> {
        out(self.inner.drop_schema(&name).await)
    }

    /// Waits for background releases, closes connections, gives up the lease. Idempotent.
    #[napi(ts_return_type = "Promise<void>")]
    pub async fn close(&self) -> Out<()> {
        out(self.inner.close().await)
    }
}

/// A built template.
#[napi]
pub struct Template {
    inner: pgisolate::Template,
}

#[napi]
impl Template {
    /// The template schema's name.
    #[napi(getter)]
    pub fn name(&self) -> String {
        self.inner.schema().to_owned()
    }

    /// Whether the call that returned it built it.
    #[napi(getter)]
    pub fn built_here(&self) -> bool {
        self.inner.built_here()
    }
}

/// Result of `templateBegin`: exactly one field is set.
#[napi]
pub struct TemplateBegin {
    template: Option<Template>,
    build: Option<TemplateBuild>,
}

#[napi]
impl TemplateBegin {
    /// The existing template, if any.
    #[napi(getter)]
    pub fn template(&mut self) -> Option<Template> {
        self.template.take()
    }

    /// The build to run, if the template does not exist yet.
    #[napi(getter)]
    pub fn build(&mut self) -> Option<TemplateBuild> {
        self.build.take()
    }
}

/// A template build run by the caller's migration tool.
#[napi]
pub struct TemplateBuild {
    inner: Mutex<Option<pgisolate::TemplateBuild>>,
    url: String,
    conninfo: String,
    schema: String,
}

#[napi]
impl TemplateBuild {
    /// URL scoped to the build schema: migrate it.
    #[napi(getter)]
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Key/value form of the same.
    #[napi(getter)]
    pub fn conninfo(&self) -> String {
        self.conninfo.clone()
    }

    /// The build schema's name.
    #[napi(getter)]
    pub fn schema(&self) -> String {
        self.schema.clone()
    }

    /// Publishes the build as the template.
    #[napi(ts_return_type = "Promise<Template>")]
    pub async fn commit(&self) -> Out<Template> {
        out(async { Ok(Template { inner: self.take()?.commit().await? }) }.await)
    }

    /// Abandons the build.
    #[napi(ts_return_type = "Promise<void>")]
    pub async fn abort(&self) -> Out<()> {
        out(async { self.take()?.abort().await }.await)
    }

    /// Abandons the build after the migration tool failed with `message`; always fails, with
    /// the error to report (the message, plus a hint when the build could not see an object,
    /// such as an extension installed in public).
    #[napi(ts_return_type = "Promise<void>")]
    pub async fn fail(&self, source_name: String, message: String) -> Out<()> {
        out(async { Err(self.take()?.fail(&source_name, &message).await) }.await)
    }
}

impl TemplateBuild {
    fn take(&self) -> pgisolate::Result<pgisolate::TemplateBuild> {
        self.inner
            .lock()
            .map_err(|_| closed("template build lock poisoned"))?
            .take()
            .ok_or_else(|| closed("template build already finished (committed, aborted or failed)"))
    }
}

/// One test's schema.
#[napi]
pub struct Schema {
    inner: Mutex<Option<pgisolate::Schema>>,
    name: String,
    url: String,
    conninfo: String,
    cache_prefix: String,
    search_path: String,
}

impl Schema {
    fn new(s: pgisolate::Schema) -> Self {
        Schema {
            name: s.name().to_owned(),
            url: s.url().to_owned(),
            conninfo: s.conninfo().to_owned(),
            cache_prefix: s.cache_prefix().to_owned(),
            search_path: s.search_path().to_owned(),
            inner: Mutex::new(Some(s)),
        }
    }
}

#[napi]
impl Schema {
    /// The schema's name.
    #[napi(getter)]
    pub fn name(&self) -> String {
        self.name.clone()
    }

    /// A postgres:// URL whose sessions land in this schema (node-postgres accepts it).
    #[napi(getter)]
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The same as a libpq key/value string.
    #[napi(getter)]
    pub fn conninfo(&self) -> String {
        self.conninfo.clone()
    }

    /// The cache-key prefix (`<hex>_`).
    #[napi(getter)]
    pub fn cache_prefix(&self) -> String {
        self.cache_prefix.clone()
    }

    /// The search_path its sessions get.
    #[napi(getter)]
    pub fn search_path(&self) -> String {
        self.search_path.clone()
    }

    /// A Prisma-style URL (`?schema=<name>`).
    #[napi(getter, ts_return_type = "string")]
    pub fn prisma_url(&self) -> Out<String> {
        out(pgisolate::conninfo::prisma_url(&self.url, &self.name))
    }

    /// A key in this schema's cache namespace: `<hex>_<key>`.
    #[napi]
    pub fn cache_key(&self, key: String) -> String {
        pgisolate::cache_key(&self.cache_prefix, &key)
    }

    /// Whether release() already ran.
    #[napi(getter)]
    pub fn released(&self) -> bool {
        self.inner.lock().map(|g| g.is_none()).unwrap_or(true)
    }

    /// Releases the schema (kept per the keep policy when `failed`); resolves to whether it
    /// was kept. A second call does nothing and resolves to false.
    #[napi(ts_return_type = "Promise<boolean>")]
    pub async fn release(&self, failed: Option<bool>) -> Out<bool> {
        let taken = match self.inner.lock() {
            Ok(mut g) => g.take(),
            Err(_) => return out(Err(closed("schema lock poisoned"))),
        };
        match taken {
            Some(s) => out(s.finish(failed.unwrap_or(false)).await.map(|r| r == pgisolate::Released::Kept)),
            None => out(Ok(false)),
        }
    }
}

/// The deterministic schema name for an identity (no server needed).
#[napi(ts_return_type = "string")]
pub fn schema_name(prefix: String, hash_len: u32, identity: IdentityInput) -> Out<String> {
    out(pgisolate::schema_name(&prefix, hash_len as usize, &identity.into()))
}

/// The cache-key prefix of a schema name made with `prefix`.
#[napi]
pub fn cache_prefix(prefix: String, schema: String) -> String {
    pgisolate::naming::cache_prefix(&prefix, &schema)
}

/// `cachePrefix + key`.
#[napi]
pub fn cache_key(cache_prefix: String, key: String) -> String {
    pgisolate::cache_key(&cache_prefix, &key)
}

/// The line every test runner prints for a kept schema: its name, the test, and a psql
/// command that opens it.
#[napi]
pub fn kept_line(schema: String, test: String, url: String) -> String {
    pgisolate::kept_line(&schema, &test, &url)
}

/// A URL or key/value string scoped to `schema` (then `tail`, default ["public"]).
#[napi(ts_return_type = "string")]
pub fn scoped_url(url: String, schema: String, tail: Option<Vec<String>>) -> Out<String> {
    let tail = tail.unwrap_or_else(|| vec!["public".to_owned()]);
    out(pgisolate::conninfo::scoped(&url, &schema, &tail))
}

/// `url` with `?schema=<schema>`.
#[napi(ts_return_type = "string")]
pub fn prisma_url(url: String, schema: String) -> Out<String> {
    out(pgisolate::conninfo::prisma_url(&url, &schema))
}

/// Throws the error `Engine.start({key: value})` would (config, or conninfo for a URL)
/// without starting anything.
#[napi(ts_return_type = "void")]
pub fn check_setting(key: String, value: String) -> Out<()> {
    out(Config::check_setting(&key, &value))
}

/// One error kind of the core's table: `index.js` makes its class from it.
#[napi(object)]
pub struct Kind {
    /// The stable number (`.kind`).
    pub kind: u32,
    /// Its name (`.code`).
    pub code: String,
    /// The class: `ConfigError`, …
    pub name: String,
    /// The number of the kind whose class it extends, if not `PgIsolateError`.
    pub parent: Option<u32>,
    /// What it means.
    pub doc: String,
}

/// The core's error kinds (tests/vectors/errors.json), parents first.
#[napi]
pub fn error_kinds() -> Vec<Kind> {
    let mut kinds = pgisolate::ErrorKind::ALL.to_vec();
    kinds.sort_by_key(|k| k.parent().is_some());
    kinds
        .into_iter()
        .map(|k| Kind {
            kind: k as u32,
            code: k.code().to_owned(),
            name: k.class_name().to_owned(),
            parent: k.parent().map(|p| p as u32),
            doc: k.doc().to_owned(),
        })
        .collect()
}

/// One setting of the core's table: its key (`Engine.start` takes it camelCased), its
/// environment variable, and what it takes.
#[napi(object)]
pub struct Setting {
    pub key: String,
    pub env: String,
    pub takes: String,
}

/// The core's settings table (docs/configuration.md): every option `Engine.start` takes.
#[napi]
pub fn settings() -> Vec<Setting> {
    pgisolate::config::SETTINGS
        .iter()
        .map(|s| Setting { key: s.key.to_owned(), env: s.env.to_owned(), takes: s.takes.to_owned() })
        .collect()
}

/// The connection string with its password hidden.
#[napi]
pub fn redact(url: String) -> String {
    pgisolate::conninfo::redact(&url)
}

/// The `pgisolate` command (the package's `bin`): runs `argv` (program name first) and returns
/// the exit status. Blocks: call it only from the command's own process.
#[napi]
pub fn cli_main(argv: Vec<String>) -> u32 {
    // Node marks its stdio close-on-exec and non-blocking: `pgisolate run`'s command would
    // start with no stdout/stderr (every write EBADF) or see EAGAIN. This process runs only
    // the command line from here on: give the standard descriptors back their usual flags.
    for fd in 0..=2 {
        // SAFETY: fcntl on the process's own standard descriptors; errors are ignored (a closed
        // descriptor stays closed).
        unsafe {
            let fd_flags = libc::fcntl(fd, libc::F_GETFD);
            if fd_flags >= 0 && fd_flags & libc::FD_CLOEXEC != 0 {
                libc::fcntl(fd, libc::F_SETFD, fd_flags & !libc::FD_CLOEXEC);
            }
            let flags = libc::fcntl(fd, libc::F_GETFL);
            if flags >= 0 && flags & libc::O_NONBLOCK != 0 {
                libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
            }
        }
    }
    u32::from(pgisolate_cli::main_from(argv.into_iter().map(Into::into).collect()))
}

/// The package version.
#[napi]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}
