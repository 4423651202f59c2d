//! The pgisolate C ABI.
//!
//! Conventions (see CONTRIBUTING.md): opaque handles with `pgi_<noun>_new`/`_free` pairs (free
//! accepts NULL); a fallible call returns `pgi_error*` (NULL on success) and writes its result
//! through a trailing out-parameter, left untouched on failure; no thread-local last error;
//! input pointers are borrowed for the call; strings returned to the caller are freed with
//! `pgi_string_free` only. Every export is panic-guarded and NULL-checked. Blocking calls run on
//! one library-owned tokio runtime, re-created in a forked child (handles made before a fork
//! belong to the parent and must not be used in the child).
#![allow(non_camel_case_types)] // C type names follow the C ABI's pgi_<noun> convention
#![allow(clippy::missing_safety_doc)] // every export documents its pointer contract in prose

use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::time::Duration;

use pgisolate::{
    Config, Engine, ErrorKind, Identity, Migrations, Released, Schema, Template, TemplateBuild, TemplateStart,
};

/// What kind of failure a `pgi_error` reports: the core's error kinds with their numbers
/// (never reused; 16 is retired), plus the ABI's own argument errors (13, 14).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum pgi_code {
    /// A configuration value is invalid.
    Config = 1,
    /// A connection string could not be parsed or scoped.
    Conninfo = 2,
    /// PostgreSQL binaries (initdb, postgres, pg_dump) were not found.
    Binaries = 3,
    /// The embedded server could not be started.
    Server = 4,
    /// The database server could not be reached or refused the login (`pgi_error_sqlstate`
    /// says why when the server did: 28P01, 28000, 53300, …).
    Connect = 5,
    /// A statement failed on the server (`pgi_error_sqlstate` has its SQLSTATE).
    Db = 6,
    /// A migration failed while building a template (`pgi_error_sqlstate` has the failed
    /// statement's SQLSTATE when the engine ran it).
    Migration = 7,
    /// A file could not be read or written.
    Io = 8,
    /// An operation did not finish within its deadline.
    Timeout = 9,
    /// No unique schema name could be found.
    Name = 10,
    /// The engine refused to touch something it does not own.
    Refused = 11,
    /// The engine or object is closed or already released.
    Closed = 12,
    /// A required pointer argument was NULL.
    NullArgument = 13,
    /// A string argument was not valid UTF-8.
    InvalidUtf8 = 14,
    /// A bug in pgisolate (a panic caught at the ABI boundary): please report it.
    Internal = 15,
    /// The cache server (Redis) failed or refused a command.
    Cache = 17,
    /// The engine could not take its owner lease, or lost it.
    Lease = 18,
}

impl From<ErrorKind> for pgi_code {
    fn from(k: ErrorKind) -> pgi_code {
        match k {
            ErrorKind::Config => pgi_code::Config,
            ErrorKind::ConnInfo => pgi_code::Conninfo,
            ErrorKind::BinariesNotFound => pgi_code::Binaries,
            ErrorKind::Server => pgi_code::Server,
            ErrorKind::Connect => pgi_code::Connect,
            ErrorKind::Db => pgi_code::Db,
            ErrorKind::Migration => pgi_code::Migration,
            ErrorKind::Io => pgi_code::Io,
            ErrorKind::Timeout => pgi_code::Timeout,
            ErrorKind::NameExhausted => pgi_code::Name,
            ErrorKind::Refused => pgi_code::Refused,
            ErrorKind::Closed => pgi_code::Closed,
            ErrorKind::Internal => pgi_code::Internal,
            ErrorKind::Cache => pgi_code::Cache,
            ErrorKind::Lease => pgi_code::Lease,
        }
    }
}

/// An error: a code, a message and, when the server sent one, its SQLSTATE. Owned by the
/// caller: free with `pgi_error_free`. Any thread may read or free it (one at a time).
#[derive(Debug)]
pub struct pgi_error {
    code: pgi_code,
    message: CString,
    sqlstate: Option<CString>,
}

/// A string with an explicit length (may contain any bytes of UTF-8, including NUL). A NULL
/// `ptr` with `len` 0 is the empty string, or "absent" where a parameter says so.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct pgi_str {
    /// First byte; may be NULL when `len` is 0.
    pub ptr: *const c_char,
    /// Length in bytes.
    pub len: usize,
}

/// Engine settings, starting from the `PGISOLATE_*` environment. Owned by the caller: free
/// with `pgi_config_free` (an engine made from it keeps its own copy). One thread at a time.
#[derive(Debug)]
pub struct pgi_config {
    cfg: Config,
}

/// A started engine. Owned by the caller: free with `pgi_engine_free` (which closes it,
/// waiting for background releases) after every template, build and schema made from it.
/// Thread-safe: any number of threads may use one engine at once.
#[derive(Debug)]
pub struct pgi_engine {
    engine: Engine,
    pid: u32,
}

/// A built template. Owned by the caller: free with `pgi_template_free`; may not outlive its
/// engine. Thread-safe: many threads may acquire schemas from one template at once.
#[derive(Debug)]
pub struct pgi_template {
    tpl: Template,
}

/// A template build run by the caller's migration tool. Owned by the caller: free with
/// `pgi_template_build_free` (which abandons the build unless it was committed or failed);
/// may not outlive its engine. One thread at a time.
#[derive(Debug)]
pub struct pgi_template_build {
    build: Option<TemplateBuild>,
    url: String,
    conninfo: String,
}

/// An isolated schema. Owned by the caller: free with `pgi_schema_free` (which releases it in
/// the background if `pgi_schema_release` was not called); may not outlive its engine. One
/// thread at a time; the strings it hands out (URL, conninfo) may be used anywhere.
#[derive(Debug)]
pub struct pgi_schema {
    schema: Option<Schema>,
    name: String,
    url: String,
    conninfo: String,
    cache_prefix: String,
}

type Res<T> = Result<T, Box<pgi_error>>;

fn err(code: pgi_code, message: impl Into<String>) -> Box<pgi_error> {
    let text: String = message.into().replace('\0', "\u{FFFD}");
    let message = CString::new(text).unwrap_or_default();
    Box::new(pgi_error { code, message, sqlstate: None })
}

fn from_core(e: pgisolate::Error) -> Box<pgi_error> {
    let mut boxed = err(e.kind().into(), e.to_string());
    boxed.sqlstate = e.sqlstate().and_then(|s| CString::new(s).ok());
    boxed
}

fn guard(f: impl FnOnce() -> Res<()>) -> *mut pgi_error {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => ptr::null_mut(),
        Ok(Err(e)) => Box::into_raw(e),
        Err(p) => {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Box::into_raw(err(pgi_code::Internal, format!("internal error in pgisolate (please report): {what}")))
        }
    }
}

/// `guard` for the exports that return no error (frees, getters): a panic gives `fallback`
/// instead of unwinding into C.
fn guard_or<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// Frees a handle made by `Box::into_raw` in this library; NULL does nothing.
unsafe fn free_handle<T>(p: *mut T) {
    guard_or((), || {
        if !p.is_null() {
            // SAFETY: the caller passes a handle from Box::into_raw in this library, freed once.
            drop(unsafe { Box::from_raw(p) });
        }
    })
}

fn block_on<T>(fut: impl std::future::Future<Output = pgisolate::Result<T>>) -> Res<T> {
    pgisolate::blocking::block_on(fut).map_err(from_core)
}

unsafe fn cstr<'a>(p: *const c_char, what: &str) -> Res<&'a str> {
    if p.is_null() {
        return Err(err(pgi_code::NullArgument, format!("{what} is NULL")));
    }
    // SAFETY: the caller passes a NUL-terminated string valid for the call.
    unsafe { CStr::from_ptr(p) }.to_str().map_err(|_| err(pgi_code::InvalidUtf8, format!("{what} is not valid UTF-8")))
}

unsafe fn pstr(s: pgi_str, what: &str) -> Res<Option<String>> {
    if s.ptr.is_null() {
        if s.len != 0 {
            return Err(err(pgi_code::NullArgument, format!("{what}.ptr is NULL but its len is {}", s.len)));
        }
        return Ok(None);
    }
    // SAFETY: the caller passes `len` readable bytes at `ptr`.
    let bytes = unsafe { std::slice::from_raw_parts(s.ptr.cast::<u8>(), s.len) };
    std::str::from_utf8(bytes)
        .map(|t| Some(t.to_owned()))
        .map_err(|_| err(pgi_code::InvalidUtf8, format!("{what} is not valid UTF-8")))
}

fn check_out<T>(out: *mut T, what: &str) -> Res<()> {
    if out.is_null() {
        return Err(err(pgi_code::NullArgument, format!("out-parameter {what} is NULL")));
    }
    Ok(())
}

unsafe fn write_string(out: *mut *mut c_char, s: &str) -> Res<()> {
    let c = CString::new(s).map_err(|_| err(pgi_code::Internal, "result contains a NUL byte"))?;
    // SAFETY: `out` was checked non-NULL by the caller of this helper.
    unsafe { *out = c.into_raw() };
    Ok(())
}

unsafe fn string_out(out: *mut *mut c_char, f: impl FnOnce() -> Res<String>) -> *mut pgi_error {
    guard(|| {
        check_out(out, "out")?;
        let s = f()?;
        // SAFETY: checked above.
        unsafe { write_string(out, &s) }
    })
}

unsafe fn handle<'a, T>(p: *const T, what: &str) -> Res<&'a T> {
    // SAFETY: the caller passes a live handle from this library or NULL.
    unsafe { p.as_ref() }.ok_or_else(|| err(pgi_code::NullArgument, format!("{what} is NULL")))
}

unsafe fn handle_mut<'a, T>(p: *mut T, what: &str) -> Res<&'a mut T> {
    // SAFETY: the caller passes a live handle from this library or NULL, used by one thread.
    unsafe { p.as_mut() }.ok_or_else(|| err(pgi_code::NullArgument, format!("{what} is NULL")))
}

fn live(engine: &pgi_engine) -> Res<&Engine> {
    if engine.pid != std::process::id() {
        return Err(err(
            pgi_code::Closed,
            "this engine was created before fork(): create a new engine in the child process",
        ));
    }
    Ok(&engine.engine)
}

// ---------------------------------------------------------------------------------------------
// Version, errors, strings

/// The library version (static storage: never free it).
#[no_mangle]
pub extern "C" fn pgi_version() -> *const c_char {
    guard_or(c"".as_ptr(), || concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast())
}

/// The error's code; `PGI_CODE_NULL_ARGUMENT` for a NULL `err`.
#[no_mangle]
pub unsafe extern "C" fn pgi_error_code(err: *const pgi_error) -> pgi_code {
    guard_or(pgi_code::Internal, || {
        // SAFETY: documented contract: a live error or NULL.
        match unsafe { err.as_ref() } {
            Some(e) => e.code,
            None => pgi_code::NullArgument,
        }
    })
}

/// The error's message, borrowed: valid until `pgi_error_free(err)`. Never NULL for a
/// non-NULL `err`.
#[no_mangle]
pub unsafe extern "C" fn pgi_error_message(err: *const pgi_error) -> *const c_char {
    guard_or(c"(panic reading a pgi_error)".as_ptr(), || {
        // SAFETY: documented contract: a live error or NULL.
        match unsafe { err.as_ref() } {
            Some(e) => e.message.as_ptr(),
            None => c"(null pgi_error)".as_ptr(),
        }
    })
}

/// The server's SQLSTATE (five characters, e.g. `28P01`, `42P01`, `55P03`) when the error came
/// from the server (codes CONNECT, DB, MIGRATION), else NULL. Borrowed: valid until
/// `pgi_error_free(err)`. NULL for a NULL `err`.
#[no_mangle]
pub unsafe extern "C" fn pgi_error_sqlstate(err: *const pgi_error) -> *const c_char {
    guard_or(ptr::null(), || {
        // SAFETY: documented contract: a live error or NULL.
        match unsafe { err.as_ref() }.and_then(|e| e.sqlstate.as_ref()) {
            Some(s) => s.as_ptr(),
            None => ptr::null(),
        }
    })
}

/// Frees an error. Accepts NULL.
#[no_mangle]
pub unsafe extern "C" fn pgi_error_free(err: *mut pgi_error) {
    // SAFETY: a pgi_error from this library or NULL, freed once.
    unsafe { free_handle(err) }
}

/// Frees a string returned by this library. Accepts NULL.
#[no_mangle]
pub unsafe extern "C" fn pgi_string_free(s: *mut c_char) {
    guard_or((), || {
        if !s.is_null() {
            // SAFETY: the pointer came from CString::into_raw in this library and is freed once.
            drop(unsafe { CString::from_raw(s) });
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Pure helpers (no server)

/// Writes the deterministic schema name for an identity to `*out` (free with
/// `pgi_string_free`). `prefix` is NUL-terminated; `discriminator.ptr == NULL` means none.
#[no_mangle]
pub unsafe extern "C" fn pgi_naming_schema_name(
    prefix: *const c_char,
    hash_len: usize,
    feature: pgi_str,
    scenario: pgi_str,
    discriminator: pgi_str,
    out: *mut *mut c_char,
) -> *mut pgi_error {
    // SAFETY: arguments follow the documented contract.
    unsafe {
        string_out(out, || {
            let id = identity(feature, scenario, discriminator)?;
            pgisolate::schema_name(cstr(prefix, "prefix")?, hash_len, &id).map_err(from_core)
        })
    }
}

/// Writes the cache-key prefix (`<hex>_`) of a schema name made with `prefix` to `*out`.
#[no_mangle]
pub unsafe extern "C" fn pgi_naming_cache_prefix(
    prefix: *const c_char,
    schema: *const c_char,
    out: *mut *mut c_char,
) -> *mut pgi_error {
    // SAFETY: arguments follow the documented contract.
    unsafe { string_out(out, || Ok(pgisolate::naming::cache_prefix(cstr(prefix, "prefix")?, cstr(schema, "schema")?))) }
}

/// Writes the line a test runner prints for a kept schema (where it is, which test it was, a
/// psql command that opens it) to `*out`.
#[no_mangle]
pub unsafe extern "C" fn pgi_kept_line(
    schema: *const c_char,
    test: *const c_char,
    url: *const c_char,
    out: *mut *mut c_char,
) -> *mut pgi_error {
    // SAFETY: arguments follow the documented contract.
    unsafe {
        string_out(out, || Ok(pgisolate::kept_line(cstr(schema, "schema")?, cstr(test, "test")?, cstr(url, "url")?)))
    }
}

/// Writes `cache_prefix + key` to `*out`.
#[no_mangle]
pub unsafe extern "C" fn pgi_cache_key_for(
    cache_prefix: *const c_char,
    key: pgi_str,
    out: *mut *mut c_char,
) -> *mut pgi_error {
    // SAFETY: arguments follow the documented contract.
    unsafe {
        string_out(out, || {
            Ok(pgisolate::cache_key(cstr(cache_prefix, "cache_prefix")?, &pstr(key, "key")?.unwrap_or_default()))
        })
    }
}

/// Writes `url` (URL or key/value) scoped to `schema` to `*out`: `search_path` is `schema`
/// then the comma-separated `tail_csv` (may be empty), plus `application_name`.
#[no_mangle]
pub unsafe extern "C" fn pgi_conninfo_scoped(
    url: *const c_char,
    schema: *const c_char,
    tail_csv: *const c_char,
    out: *mut *mut c_char,
) -> *mut pgi_error {
    // SAFETY: arguments follow the documented contract.
    unsafe {
        string_out(out, || {
            let tail: Vec<String> =
                cstr(tail_csv, "tail_csv")?.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
            pgisolate::conninfo::scoped(cstr(url, "url")?, cstr(schema, "schema")?, &tail).map_err(from_core)
        })
    }
}

/// Writes a Prisma-style URL (`?schema=<schema>`) for `url` to `*out`.
#[no_mangle]
pub unsafe extern "C" fn pgi_conninfo_prisma_url(
    url: *const c_char,
    schema: *const c_char,
    out: *mut *mut c_char,
) -> *mut pgi_error {
    // SAFETY: arguments follow the documented contract.
    unsafe {
        string_out(out, || {
            pgisolate::conninfo::prisma_url(cstr(url, "url")?, cstr(schema, "schema")?).map_err(from_core)
        })
    }
}

unsafe fn identity(feature: pgi_str, scenario: pgi_str, discriminator: pgi_str) -> Res<Identity> {
    // SAFETY: arguments follow the documented contract of the calling export.
    let (f, s, d) = unsafe {
        (
            pstr(feature, "feature")?.unwrap_or_default(),
            pstr(scenario, "scenario")?.unwrap_or_default(),
            pstr(discriminator, "discriminator")?,
        )
    };
    let id = Identity::new(f, s);
    Ok(match d {
        Some(d) => id.with_discriminator(d),
        None => id,
    })
}

// ---------------------------------------------------------------------------------------------
// Config

/// Writes a new config read from the `PGISOLATE_*` environment to `*out`. Fails if a variable
/// is invalid.
#[no_mangle]
pub unsafe extern "C" fn pgi_config_new(out: *mut *mut pgi_config) -> *mut pgi_error {
    guard(|| {
        check_out(out, "out")?;
        let cfg = Config::from_env().map_err(from_core)?;
        // SAFETY: checked above.
        unsafe { *out = Box::into_raw(Box::new(pgi_config { cfg })) };
        Ok(())
    })
}

/// Sets one setting by its key, the same keys in every binding and in the environment
/// (`PGISOLATE_<KEY>`, see the settings table (docs/configuration.md)): `url`, `worker`, `isolation`, `prefix`,
/// `hash_len`, `keep`, `search_path_tail`, `extensions`, `pg_bin`, `pg_dump`, `pg_bin_fallback`,
/// `run_id`, `gc_on_start`, `gc_grace`, `template_max_age`, `pool_size`, `recycle`,
/// `max_admin_connections`, `test_connections`, `release_timeout`, `login_role`, `verify`, `redis_url`,
/// `redis_ca_file`, `reuse`, `collect_warnings`. Values are text:
/// durations as `500ms`, `5s`, `2m`; switches as `on`/`off`; lists comma-separated. An empty
/// `url` means the embedded server. A bad key or value is a `CONFIG` error naming it, and the
/// config is left unchanged.
#[no_mangle]
pub unsafe extern "C" fn pgi_config_set(
    config: *mut pgi_config,
    key: *const c_char,
    value: *const c_char,
) -> *mut pgi_error {
    guard(|| {
        // SAFETY: arguments follow the documented contract.
        let (c, key, value) = unsafe { (handle_mut(config, "config")?, cstr(key, "key")?, cstr(value, "value")?) };
        let mut next = c.cfg.clone();
        next.set(key, value).map_err(from_core)?;
        next.validate().map_err(from_core)?;
        c.cfg = next;
        Ok(())
    })
}

/// Frees a config. Accepts NULL.
#[no_mangle]
pub unsafe extern "C" fn pgi_config_free(config: *mut pgi_config) {
    // SAFETY: a config from this library or NULL, freed once.
    unsafe { free_handle(config) }
}

// ---------------------------------------------------------------------------------------------
// Engine

/// Starts an engine with `config` (borrowed; NULL means the environment) and writes it to
/// `*out`. Boots or reuses the embedded server when no URL is configured. Thread-safe: one
/// engine may be used from many threads at once.
#[no_mangle]
pub unsafe extern "C" fn pgi_engine_new(config: *const pgi_config, out: *mut *mut pgi_engine) -> *mut pgi_error {
    guard(|| {
        check_out(out, "out")?;
        // SAFETY: a live config or NULL.
        let cfg = match unsafe { config.as_ref() } {
            Some(c) => c.cfg.clone(),
            None => Config::from_env().map_err(from_core)?,
        };
        let engine = block_on(Engine::start(cfg))?;
        // SAFETY: checked above.
        unsafe { *out = Box::into_raw(Box::new(pgi_engine { engine, pid: std::process::id() })) };
        Ok(())
    })
}

/// Waits for background releases, closes connections and gives up the lease. Idempotent.
#[no_mangle]
pub unsafe extern "C" fn pgi_engine_close(engine: *mut pgi_engine) -> *mut pgi_error {
    guard(|| {
        // SAFETY: a live engine or NULL.
        let e = unsafe { handle(engine, "engine")? };
        let engine = live(e)?.clone();
        block_on(async move { engine.close().await })
    })
}

/// Closes (as `pgi_engine_close`) and frees an engine. Accepts NULL.
#[no_mangle]
pub unsafe extern "C" fn pgi_engine_free(engine: *mut pgi_engine) {
    if engine.is_null() {
        return;
    }
    guard_or((), || {
        // SAFETY: from Box::into_raw in this library, freed once.
        let e = unsafe { Box::from_raw(engine) };
        if e.pid != std::process::id() {
            // The parent's connections: leave them alone in a forked child.
            std::mem::forget(e);
            return;
        }
        let inner = e.engine.clone();
        let _ = block_on(async move { inner.close().await });
        drop(e);
    })
}

/// Writes the engine's admin URL (the embedded server's superuser URL, or the configured one).
#[no_mangle]
pub unsafe extern "C" fn pgi_engine_url(engine: *const pgi_engine, out: *mut *mut c_char) -> *mut pgi_error {
    // SAFETY: arguments follow the documented contract.
    unsafe { string_out(out, || Ok(live(handle(engine, "engine")?)?.url().to_owned())) }
}

/// Writes the run id recorded with every schema of this engine.
#[no_mangle]
pub unsafe extern "C" fn pgi_engine_run_id(engine: *const pgi_engine, out: *mut *mut c_char) -> *mut pgi_error {
    // SAFETY: arguments follow the documented contract.
    unsafe { string_out(out, || Ok(live(handle(engine, "engine")?)?.run_id().to_owned())) }
}

/// Writes the warnings collected since the last call (config `collect_warnings=true`), one per
/// line, or "" when there are none. Hand them to the test runner (each is also a reason a
/// suite may pass without real isolation, so show them where the user looks).
#[no_mangle]
pub unsafe extern "C" fn pgi_engine_take_warnings(engine: *const pgi_engine, out: *mut *mut c_char) -> *mut pgi_error {
    // SAFETY: arguments follow the documented contract.
    unsafe { string_out(out, || Ok(live(handle(engine, "engine")?)?.take_warnings().join("\n"))) }
}

/// Drops marked schemas whose owner is gone and older than `grace_ms`; writes how many were
/// dropped to `*dropped_out` (may be NULL).
#[no_mangle]
pub unsafe extern "C" fn pgi_engine_gc(
    engine: *mut pgi_engine,
    grace_ms: u64,
    dropped_out: *mut usize,
) -> *mut pgi_error {
    guard(|| {
        // SAFETY: a live engine or NULL.
        let engine = live(unsafe { handle(engine, "engine")? })?.clone();
        let report = block_on(async move { engine.gc_with(Duration::from_millis(grace_ms), false).await })?;
        if !dropped_out.is_null() {
            // SAFETY: non-NULL out-parameter from the caller.
            unsafe { *dropped_out = report.dropped.len() };
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Templates

unsafe fn template_out(
    engine: *mut pgi_engine,
    out: *mut *mut pgi_template,
    m: impl FnOnce() -> Res<Migrations>,
) -> *mut pgi_error {
    guard(|| {
        check_out(out, "out")?;
        // SAFETY: a live engine or NULL.
        let engine = live(unsafe { handle(engine, "engine")? })?.clone();
        let migrations = m()?;
        let tpl = block_on(async move { engine.template(migrations).await })?;
        // SAFETY: checked above.
        unsafe { *out = Box::into_raw(Box::new(pgi_template { tpl })) };
        Ok(())
    })
}

/// Builds (once per server) or finds the template for the migrations in `dir`, read as the
/// migration tool that wrote them would (plain numbered SQL, golang-migrate, sqlx, goose,
/// dbmate, Flyway, Prisma: up parts only, versions compared as numbers; a directory whose order
/// cannot be told is a `MIGRATION` error naming the files), and writes it to `*out`.
#[no_mangle]
pub unsafe extern "C" fn pgi_template_from_dir(
    engine: *mut pgi_engine,
    dir: *const c_char,
    out: *mut *mut pgi_template,
) -> *mut pgi_error {
    // SAFETY: arguments follow the documented contract.
    unsafe { template_out(engine, out, || Ok(Migrations::dir(cstr(dir, "dir")?))) }
}

/// Builds (once per server) or finds the template for SQL text and writes it to `*out`.
#[no_mangle]
pub unsafe extern "C" fn pgi_template_from_sql(
    engine: *mut pgi_engine,
    sql: *const c_char,
    out: *mut *mut pgi_template,
) -> *mut pgi_error {
    // SAFETY: arguments follow the documented contract.
    unsafe { template_out(engine, out, || Ok(Migrations::sql(cstr(sql, "sql")?))) }
}

/// Starts a template the caller builds with its own migration tool, identified by `key`.
/// Writes exactly one of `*ready_out` (the template exists) or `*build_out` (run migrations
/// against `pgi_template_build_url`, then `pgi_template_commit`); the other is set to NULL.
/// Prefer `pgi_template_begin_inputs`: a key the caller forgets to change reuses a stale
/// template.
#[no_mangle]
pub unsafe extern "C" fn pgi_template_begin(
    engine: *mut pgi_engine,
    key: *const c_char,
    ready_out: *mut *mut pgi_template,
    build_out: *mut *mut pgi_template_build,
) -> *mut pgi_error {
    // SAFETY: arguments follow the documented contract; no inputs.
    unsafe { pgi_template_begin_inputs(engine, key, ptr::null(), 0, ready_out, build_out) }
}

/// `pgi_template_begin` for a build whose inputs are files and directories (the migration
/// tool's directory and config): their contents are hashed into the key, so changing a
/// migration builds a new template. `inputs` holds `n_inputs` NUL-terminated paths (NULL when
/// `n_inputs` is 0); `key` may be empty when inputs are given. A missing input is an `IO`
/// error.
#[no_mangle]
pub unsafe extern "C" fn pgi_template_begin_inputs(
    engine: *mut pgi_engine,
    key: *const c_char,
    inputs: *const *const c_char,
    n_inputs: usize,
    ready_out: *mut *mut pgi_template,
    build_out: *mut *mut pgi_template_build,
) -> *mut pgi_error {
    guard(|| {
        check_out(ready_out, "ready_out")?;
        check_out(build_out, "build_out")?;
        // SAFETY: arguments follow the documented contract.
        let (engine, key) = unsafe { (live(handle(engine, "engine")?)?.clone(), cstr(key, "key")?.to_owned()) };
        let paths = if n_inputs == 0 {
            Vec::new()
        } else if inputs.is_null() {
            return Err(err(pgi_code::NullArgument, format!("inputs is NULL but n_inputs is {n_inputs}")));
        } else {
            // SAFETY: the caller passes `n_inputs` string pointers at `inputs`.
            let raw = unsafe { std::slice::from_raw_parts(inputs, n_inputs) };
            // SAFETY: each is a NUL-terminated string valid for the call.
            raw.iter().map(|&p| unsafe { cstr(p, "inputs[i]") }.map(str::to_owned)).collect::<Res<Vec<String>>>()?
        };
        let start = block_on(async move { engine.template_begin_inputs(&key, &paths).await })?;
        match start {
            TemplateStart::Ready(tpl) => {
                // SAFETY: both checked above.
                unsafe {
                    *ready_out = Box::into_raw(Box::new(pgi_template { tpl }));
                    *build_out = ptr::null_mut();
                }
            }
            TemplateStart::Build(b) => {
                let h =
                    pgi_template_build { url: b.url().to_owned(), conninfo: b.conninfo().to_owned(), build: Some(b) };
                // SAFETY: both checked above.
                unsafe {
                    *ready_out = ptr::null_mut();
                    *build_out = Box::into_raw(Box::new(h));
                }
            }
        }
        Ok(())
    })
}

/// Writes the URL scoped to the build schema (run the migrations against it).
#[no_mangle]
pub unsafe extern "C" fn pgi_template_build_url(
    build: *const pgi_template_build,
    out: *mut *mut c_char,
) -> *mut pgi_error {
    // SAFETY: arguments follow the documented contract.
    unsafe { string_out(out, || Ok(handle(build, "build")?.url.clone())) }
}

/// Writes the key/value connection string scoped to the build schema.
#[no_mangle]
pub unsafe extern "C" fn pgi_template_build_conninfo(
    build: *const pgi_template_build,
    out: *mut *mut c_char,
) -> *mut pgi_error {
    // SAFETY: arguments follow the documented contract.
    unsafe { string_out(out, || Ok(handle(build, "build")?.conninfo.clone())) }
}

/// Publishes the build as the template and writes it to `*out`. The build handle must still
/// be freed with `pgi_template_build_free`; committing twice is a `CLOSED` error.
#[no_mangle]
pub unsafe extern "C" fn pgi_template_commit(
    build: *mut pgi_template_build,
    out: *mut *mut pgi_template,
) -> *mut pgi_error {
    guard(|| {
        check_out(out, "out")?;
        // SAFETY: a live build or NULL.
        let b = unsafe { handle_mut(build, "build")? };
        let inner = b.build.take().ok_or_else(|| err(pgi_code::Closed, "template build already committed"))?;
        let tpl = block_on(inner.commit())?;
        // SAFETY: checked above.
        unsafe { *out = Box::into_raw(Box::new(pgi_template { tpl })) };
        Ok(())
    })
}

/// Abandons the build after the caller's migration tool failed with `message`, and returns the
/// error to report (never NULL; free it with `pgi_error_free`): a `MIGRATION` error carrying
/// `message` and, when it looks like an object the build cannot see (an extension installed
/// in `public`), a hint saying how to fix it. `source_name` says what failed ("goose up");
/// NULL or empty: the build's own name (`template "<key and inputs>"`). The build handle must
/// still be freed; failing a finished build is a `CLOSED` error.
#[no_mangle]
pub unsafe extern "C" fn pgi_template_build_fail(
    build: *mut pgi_template_build,
    source_name: *const c_char,
    message: *const c_char,
) -> *mut pgi_error {
    let mut reported: Option<Box<pgi_error>> = None;
    let e = guard(|| {
        // SAFETY: arguments follow the documented contract.
        let (b, message) = unsafe { (handle_mut(build, "build")?, cstr(message, "message")?) };
        let source_name = if source_name.is_null() {
            ""
        } else {
            // SAFETY: a NUL-terminated string from the caller.
            unsafe { cstr(source_name, "source_name")? }
        };
        let inner = b.build.take().ok_or_else(|| err(pgi_code::Closed, "template build already finished"))?;
        let (source_name, message) = (source_name.to_owned(), message.to_owned());
        let core = pgisolate::blocking::block_on(async move { Ok(inner.fail(&source_name, &message).await) })
            .map_err(from_core)?;
        reported = Some(from_core(core));
        Ok(())
    });
    match reported {
        Some(r) if e.is_null() => Box::into_raw(r),
        _ => e,
    }
}

/// Frees a build handle, abandoning the build if it was not committed. Accepts NULL.
#[no_mangle]
pub unsafe extern "C" fn pgi_template_build_free(build: *mut pgi_template_build) {
    if build.is_null() {
        return;
    }
    guard_or((), || {
        // SAFETY: from Box::into_raw in this library, freed once.
        let mut b = unsafe { Box::from_raw(build) };
        if let Some(inner) = b.build.take() {
            let _ = block_on(inner.abort());
        }
    })
}

/// Writes the template schema's name.
#[no_mangle]
pub unsafe extern "C" fn pgi_template_name(template: *const pgi_template, out: *mut *mut c_char) -> *mut pgi_error {
    // SAFETY: arguments follow the documented contract.
    unsafe { string_out(out, || Ok(handle(template, "template")?.tpl.schema().to_owned())) }
}

/// Whether the call that produced this template built it (false when it already existed).
/// False for NULL.
#[no_mangle]
pub unsafe extern "C" fn pgi_template_built_here(template: *const pgi_template) -> bool {
    // SAFETY: a live template or NULL.
    guard_or(false, || unsafe { template.as_ref() }.is_some_and(|t| t.tpl.built_here()))
}

/// Frees a template handle (the template itself stays on the server for reuse). Accepts NULL.
#[no_mangle]
pub unsafe extern "C" fn pgi_template_free(template: *mut pgi_template) {
    // SAFETY: a template from this library or NULL, freed once.
    unsafe { free_handle(template) }
}

// ---------------------------------------------------------------------------------------------
// Schemas

/// Acquires a fresh schema for the identity (`discriminator.ptr == NULL` means none) from
/// `template` and writes it to `*out`. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn pgi_schema_acquire(
    engine: *mut pgi_engine,
    template: *const pgi_template,
    feature: pgi_str,
    scenario: pgi_str,
    discriminator: pgi_str,
    out: *mut *mut pgi_schema,
) -> *mut pgi_error {
    guard(|| {
        check_out(out, "out")?;
        // SAFETY: arguments follow the documented contract.
        let (engine, tpl, id) = unsafe {
            (
                live(handle(engine, "engine")?)?.clone(),
                handle(template, "template")?.tpl.clone(),
                identity(feature, scenario, discriminator)?,
            )
        };
        let schema = block_on(async move { engine.acquire(&tpl, id).await })?;
        let h = pgi_schema {
            name: schema.name().to_owned(),
            url: schema.url().to_owned(),
            conninfo: schema.conninfo().to_owned(),
            cache_prefix: schema.cache_prefix().to_owned(),
            schema: Some(schema),
        };
        // SAFETY: checked above.
        unsafe { *out = Box::into_raw(Box::new(h)) };
        Ok(())
    })
}

/// Writes the schema's name.
#[no_mangle]
pub unsafe extern "C" fn pgi_schema_name(schema: *const pgi_schema, out: *mut *mut c_char) -> *mut pgi_error {
    // SAFETY: arguments follow the documented contract.
    unsafe { string_out(out, || Ok(handle(schema, "schema")?.name.clone())) }
}

/// Writes the schema's scoped `postgres://` URL.
#[no_mangle]
pub unsafe extern "C" fn pgi_schema_url(schema: *const pgi_schema, out: *mut *mut c_char) -> *mut pgi_error {
    // SAFETY: arguments follow the documented contract.
    unsafe { string_out(out, || Ok(handle(schema, "schema")?.url.clone())) }
}

/// Writes the schema's scoped key/value connection string.
#[no_mangle]
pub unsafe extern "C" fn pgi_schema_conninfo(schema: *const pgi_schema, out: *mut *mut c_char) -> *mut pgi_error {
    // SAFETY: arguments follow the documented contract.
    unsafe { string_out(out, || Ok(handle(schema, "schema")?.conninfo.clone())) }
}

/// Writes the schema's cache-key prefix (`<hex>_`).
#[no_mangle]
pub unsafe extern "C" fn pgi_schema_cache_prefix(schema: *const pgi_schema, out: *mut *mut c_char) -> *mut pgi_error {
    // SAFETY: arguments follow the documented contract.
    unsafe { string_out(out, || Ok(handle(schema, "schema")?.cache_prefix.clone())) }
}

/// Writes a cache key in the schema's namespace (`<hex>_<key>`).
#[no_mangle]
pub unsafe extern "C" fn pgi_cache_key(
    schema: *const pgi_schema,
    key: pgi_str,
    out: *mut *mut c_char,
) -> *mut pgi_error {
    // SAFETY: arguments follow the documented contract.
    unsafe {
        string_out(out, || {
            Ok(pgisolate::cache_key(&handle(schema, "schema")?.cache_prefix, &pstr(key, "key")?.unwrap_or_default()))
        })
    }
}

/// Releases the schema now: kept when the keep policy says so given `failed`, else recycled
/// into its template's pool or dropped. Writes whether it was kept to `*kept_out` (may be
/// NULL). Accessors keep working afterwards; a second release does nothing and reports "not
/// kept". The handle must still be freed.
#[no_mangle]
pub unsafe extern "C" fn pgi_schema_release(
    schema: *mut pgi_schema,
    failed: bool,
    kept_out: *mut bool,
) -> *mut pgi_error {
    guard(|| {
        // SAFETY: a live schema or NULL.
        let h = unsafe { handle_mut(schema, "schema")? };
        // Releasing twice does nothing and reports "not kept", as in every binding.
        let kept = match h.schema.take() {
            Some(s) => block_on(s.finish(failed))? == Released::Kept,
            None => false,
        };
        if !kept_out.is_null() {
            // SAFETY: non-NULL out-parameter from the caller.
            unsafe { *kept_out = kept };
        }
        Ok(())
    })
}

/// Frees a schema handle; if it was not released, it is released in the background (as a
/// passing test). Accepts NULL.
#[no_mangle]
pub unsafe extern "C" fn pgi_schema_free(schema: *mut pgi_schema) {
    // SAFETY: a schema from this library or NULL, freed once (dropping it releases it in the
    // background when it was not released).
    unsafe { free_handle(schema) }
}

#[cfg(test)]
mod tests {
    use super::pgi_code;
    use pgisolate::ErrorKind;

    /// The C codes are the core's kinds, number for number.
    #[test]
    fn codes_are_the_core_kinds() {
        for k in ErrorKind::ALL {
            assert_eq!(pgi_code::from(k) as u32, k as u32, "{k}");
        }
    }

    /// The header's `pgi_config_set` names every setting of the core's table, and no other key.
    #[test]
    fn the_header_lists_every_setting() {
        let header = include_str!("../../include/pgisolate.h");
        let at = header.find("struct pgi_error *pgi_config_set(").unwrap();
        let doc: Vec<&str> = header[..at]
            .lines()
            .rev()
            .take_while(|l| l.starts_with("//"))
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let doc = doc.join(" ");
        let list = doc.split("(docs/configuration.md)):").nth(1).and_then(|d| d.split(". Values").next()).unwrap();
        let named: Vec<&str> = list.split('`').skip(1).step_by(2).collect();
        let keys: Vec<&str> = pgisolate::config::SETTINGS.iter().map(|s| s.key).collect();
        assert_eq!(named, keys, "pgi_config_set's doc (ffi/src/lib.rs) lists the settings in the table's order");
    }

    /// Every export catches panics: its body goes through `guard` (fallible calls) or
    /// `guard_or` (the rest), directly or through a helper built on them (`free_handle`,
    /// `string_out`, `template_out`).
    #[test]
    fn every_export_is_panic_guarded() {
        let src = include_str!("lib.rs");
        let helpers =
            ["guard(", "guard_or(", "free_handle(", "string_out(", "template_out(", "pgi_template_begin_inputs("];
        let mut unguarded = Vec::new();
        for (i, part) in src.split("extern \"C\" fn ").enumerate().skip(1) {
            let name: String = part.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            let body_start = part.find('{').unwrap_or(0);
            let body: String = part[body_start..].lines().skip(1).take(4).collect::<Vec<_>>().join("\n");
            if !helpers.iter().any(|h| body.contains(h)) {
                unguarded.push(format!("{i}: {name}"));
            }
        }
        assert!(unguarded.is_empty(), "exports without a panic guard: {unguarded:?}");
    }
}
