//! `pgi_schema`: a test's schema, acquired, used through its strings, released.

use std::ffi::c_char;

use pgisolate::{Released, Schema};

use crate::engine::pgi_engine;
use crate::error::pgi_error;
use crate::guard::{block_on, check_out, free_handle, guard, handle, handle_mut, live, pstr, string_out};
use crate::string::{identity, pgi_str};
use crate::template::pgi_template;

/// An isolated schema. Owned by the caller: free with `pgi_schema_free` (which releases it in
/// the background if `pgi_schema_release` was not called); may not outlive its engine. One
/// thread at a time; the strings it hands out (URL, conninfo) may be used anywhere.
#[derive(Debug)]
pub struct pgi_schema {
    pub(crate) schema: Option<Schema>,
    pub(crate) name: String,
    pub(crate) url: String,
    pub(crate) conninfo: String,
    pub(crate) cache_prefix: String,
}

// ---------------------------------------------------------------------------------------------
// Schemas

/// Acquires a fresh schema for the identity (`discriminator.ptr == NULL` means none) from
/// `template` and writes it to `*out`. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn pgi_schema_acquire(
    engine: *const pgi_engine,
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
