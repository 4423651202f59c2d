//! The boundary's helpers: errors as boxed `pgi_error`s, the panic guard every export goes
//! through, NULL and UTF-8 checked arguments, out-parameters, handles.

use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use pgisolate::Engine;

use crate::engine::pgi_engine;
use crate::error::{pgi_code, pgi_error};
use crate::string::pgi_str;

pub(crate) type Res<T> = Result<T, Box<pgi_error>>;

pub(crate) fn err(code: pgi_code, message: impl Into<String>) -> Box<pgi_error> {
    let text: String = message.into().replace('\0', "\u{FFFD}");
    let message = CString::new(text).unwrap_or_default();
    Box::new(pgi_error { code, message, sqlstate: None })
}

pub(crate) fn from_core(e: pgisolate::Error) -> Box<pgi_error> {
    let mut boxed = err(e.kind().into(), e.to_string());
    boxed.sqlstate = e.sqlstate().and_then(|s| CString::new(s).ok());
    boxed
}

pub(crate) fn guard(f: impl FnOnce() -> Res<()>) -> *mut pgi_error {
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
pub(crate) fn guard_or<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// Frees a handle made by `Box::into_raw` in this library; NULL does nothing.
pub(crate) unsafe fn free_handle<T>(p: *mut T) {
    guard_or((), || {
        if !p.is_null() {
            // SAFETY: the caller passes a handle from Box::into_raw in this library, freed once.
            drop(unsafe { Box::from_raw(p) });
        }
    })
}

pub(crate) fn block_on<T>(fut: impl std::future::Future<Output = pgisolate::Result<T>>) -> Res<T> {
    pgisolate::blocking::block_on(fut).map_err(from_core)
}

pub(crate) unsafe fn cstr<'a>(p: *const c_char, what: &str) -> Res<&'a str> {
    if p.is_null() {
        return Err(err(pgi_code::NullArgument, format!("{what} is NULL")));
    }
    // SAFETY: the caller passes a NUL-terminated string valid for the call.
    unsafe { CStr::from_ptr(p) }.to_str().map_err(|_| err(pgi_code::InvalidUtf8, format!("{what} is not valid UTF-8")))
}

pub(crate) unsafe fn pstr(s: pgi_str, what: &str) -> Res<Option<String>> {
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

pub(crate) fn check_out<T>(out: *mut T, what: &str) -> Res<()> {
    if out.is_null() {
        return Err(err(pgi_code::NullArgument, format!("out-parameter {what} is NULL")));
    }
    Ok(())
}

pub(crate) unsafe fn write_string(out: *mut *mut c_char, s: &str) -> Res<()> {
    let c = CString::new(s).map_err(|_| err(pgi_code::Internal, "result contains a NUL byte"))?;
    // SAFETY: `out` was checked non-NULL by the caller of this helper.
    unsafe { *out = c.into_raw() };
    Ok(())
}

pub(crate) unsafe fn string_out(out: *mut *mut c_char, f: impl FnOnce() -> Res<String>) -> *mut pgi_error {
    guard(|| {
        check_out(out, "out")?;
        let s = f()?;
        // SAFETY: checked above.
        unsafe { write_string(out, &s) }
    })
}

pub(crate) unsafe fn handle<'a, T>(p: *const T, what: &str) -> Res<&'a T> {
    // SAFETY: the caller passes a live handle from this library or NULL.
    unsafe { p.as_ref() }.ok_or_else(|| err(pgi_code::NullArgument, format!("{what} is NULL")))
}

pub(crate) unsafe fn handle_mut<'a, T>(p: *mut T, what: &str) -> Res<&'a mut T> {
    // SAFETY: the caller passes a live handle from this library or NULL, used by one thread.
    unsafe { p.as_mut() }.ok_or_else(|| err(pgi_code::NullArgument, format!("{what} is NULL")))
}

pub(crate) fn live(engine: &pgi_engine) -> Res<&Engine> {
    if engine.pid != std::process::id() {
        return Err(err(
            pgi_code::Closed,
            "this engine was created before fork(): create a new engine in the child process",
        ));
    }
    Ok(&engine.engine)
}
