//! A library-owned tokio runtime for callers that are not async (the C ABI, Python, the
//! `cargo test` glue): blocking calls run their futures on it.
//!
//! Fork-aware: in a forked child the parent's worker threads do not exist, so the first call
//! there creates a new runtime; the inherited one is kept reachable and never shut down.
//! Engines made before a fork belong to the parent.

use std::sync::Mutex;

use crate::error::{Error, Result};

struct Rt {
    pid: u32,
    rt: &'static tokio::runtime::Runtime,
}

static RUNTIME: Mutex<Option<Rt>> = Mutex::new(None);
static INHERITED: Mutex<Vec<&'static tokio::runtime::Runtime>> = Mutex::new(Vec::new());

/// The runtime of this process (created on first use, re-created after fork).
pub(crate) fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    let pid = std::process::id();
    let mut slot = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(r) = slot.as_ref() {
        if r.pid == pid {
            return Ok(r.rt);
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("pgisolate")
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start pgisolate's async runtime", e))?;
    let rt: &'static tokio::runtime::Runtime = Box::leak(Box::new(rt));
    if let Some(old) = slot.replace(Rt { pid, rt }) {
        INHERITED.lock().unwrap_or_else(|p| p.into_inner()).push(old.rt);
    }
    Ok(rt)
}

/// Runs `fut` on the library runtime and waits for it. Must not be called from inside an
/// async task (it would block that task's worker).
pub fn block_on<T>(fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    runtime()?.block_on(fut)
}

/// A template built by the caller's own blocking migration tool (Python's Alembic, Django):
/// the caller-run build's one flow for callers that are not async. Begins the build (or finds
/// the template), runs `build(url)` on the calling thread outside the runtime (so it may call
/// pgisolate itself), then commits, or on `Err` abandons the build and returns the migration
/// error named after the build ([`crate::TemplateBuild::label`]) with the tool's message. `key`
/// and `inputs` as in [`crate::Engine::template_begin_inputs`].
pub fn template_with<P, E>(
    engine: &crate::Engine,
    key: &str,
    inputs: &[P],
    build: impl FnOnce(&str) -> std::result::Result<(), E>,
) -> Result<crate::Template>
where
    P: AsRef<std::path::Path>,
    E: std::fmt::Display,
{
    match block_on(engine.template_begin_inputs(key, inputs))? {
        crate::TemplateStart::Ready(t) => Ok(t),
        crate::TemplateStart::Build(b) => match build(b.url()) {
            Ok(()) => block_on(b.commit()),
            Err(e) => {
                let message = e.to_string();
                Err(block_on(async move { Ok(b.fail("", &message).await) })?)
            }
        },
    }
}
