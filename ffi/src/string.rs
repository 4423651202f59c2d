//! Strings: `pgi_str`, the version, freeing returned strings, and the pure helpers (names,
//! cache keys, scoped connection strings: no server).

use std::ffi::{c_char, CString};

use pgisolate::Identity;

use crate::error::pgi_error;
use crate::guard::{cstr, from_core, guard_or, pstr, string_out, Res};

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
// ---------------------------------------------------------------------------------------------
// Version, errors, strings

/// The library version (static storage: never free it).
#[no_mangle]
pub extern "C" fn pgi_version() -> *const c_char {
    guard_or(c"".as_ptr(), || concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast())
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

pub(crate) unsafe fn identity(feature: pgi_str, scenario: pgi_str, discriminator: pgi_str) -> Res<Identity> {
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
