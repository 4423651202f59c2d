//! `pgi_engine`: start, close, gc, and what it reports.

use std::ffi::c_char;
use std::time::Duration;

use pgisolate::{Config, Engine};

use crate::config::pgi_config;
use crate::error::pgi_error;
use crate::guard::{block_on, check_out, from_core, guard, guard_or, handle, live, string_out};

/// A started engine. Owned by the caller: free with `pgi_engine_free` (which closes it,
/// waiting for background releases) after every template, build and schema made from it.
/// Thread-safe: any number of threads may use one engine at once.
#[derive(Debug)]
pub struct pgi_engine {
    pub(crate) engine: Engine,
    pub(crate) pid: u32,
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
    engine: *const pgi_engine,
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
