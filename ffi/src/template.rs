//! `pgi_template` and `pgi_template_build`: templates from migrations, or built by the
//! caller's own tool (begin, build against its URL, commit or fail).

use std::ffi::c_char;
use std::ptr;

use pgisolate::{Migrations, Template, TemplateBuild, TemplateStart};

use crate::engine::pgi_engine;
use crate::error::{pgi_code, pgi_error};
use crate::guard::{
    block_on, check_out, cstr, err, free_handle, from_core, guard, guard_or, handle, handle_mut, live, string_out, Res,
};

/// A built template. Owned by the caller: free with `pgi_template_free`; may not outlive its
/// engine. Thread-safe: many threads may acquire schemas from one template at once.
#[derive(Debug)]
pub struct pgi_template {
    pub(crate) tpl: Template,
}

/// A template build run by the caller's migration tool. Owned by the caller: free with
/// `pgi_template_build_free` (which abandons the build unless it was committed or failed);
/// may not outlive its engine. One thread at a time.
#[derive(Debug)]
pub struct pgi_template_build {
    pub(crate) build: Option<TemplateBuild>,
    pub(crate) url: String,
    pub(crate) conninfo: String,
}
// ---------------------------------------------------------------------------------------------
// Templates

unsafe fn template_out(
    engine: *const pgi_engine,
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
    engine: *const pgi_engine,
    dir: *const c_char,
    out: *mut *mut pgi_template,
) -> *mut pgi_error {
    // SAFETY: arguments follow the documented contract.
    unsafe { template_out(engine, out, || Ok(Migrations::dir(cstr(dir, "dir")?))) }
}

/// Builds (once per server) or finds the template for SQL text and writes it to `*out`.
#[no_mangle]
pub unsafe extern "C" fn pgi_template_from_sql(
    engine: *const pgi_engine,
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
    engine: *const pgi_engine,
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
    engine: *const pgi_engine,
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
