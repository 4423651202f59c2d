//! `pgisolate._pgisolate`: the Python binding. Argument conversion, a call into the core with
//! the GIL released, error mapping; nothing else. The public API is `pgisolate/__init__.py`.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use pgisolate::{blocking, Config, Engine, Identity, Migrations, Released, Schema, Template, TemplateStart};
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyType};

pyo3::create_exception!(
    pgisolate,
    Error,
    PyException,
    "Base class of every pgisolate error: `.kind` (the stable number), `.code` (its name), `.sqlstate` (the server's code, or None)."
);
/// The class of each kind, made at import from the core's table ([`pgisolate::ErrorKind`]:
/// name, doc, parent), each carrying its kind's number and name.
static KIND_CLASSES: PyOnceLock<Vec<(pgisolate::ErrorKind, Py<PyType>)>> = PyOnceLock::new();

fn kind_classes(py: Python<'_>) -> PyResult<&Vec<(pgisolate::ErrorKind, Py<PyType>)>> {
    KIND_CLASSES.get_or_try_init(py, || {
        let mut made: Vec<(pgisolate::ErrorKind, Py<PyType>)> = Vec::new();
        // Parents first: a class is made after the one it extends.
        let mut kinds = pgisolate::ErrorKind::ALL.to_vec();
        kinds.sort_by_key(|k| k.parent().is_some());
        for kind in kinds {
            let base = match kind.parent() {
                Some(p) => made.iter().find(|(k, _)| *k == p).map(|(_, t)| t.bind(py).clone()),
                None => None,
            }
            .unwrap_or_else(|| py.get_type::<Error>());
            let name = std::ffi::CString::new(format!("pgisolate.{}", kind.class_name()))?;
            let doc = std::ffi::CString::new(kind.doc())?;
            let ty = PyErr::new_type(py, &name, Some(&doc), Some(&base), None)?;
            ty.bind(py).setattr("kind", kind as u32)?;
            ty.bind(py).setattr("code", kind.code())?;
            made.push((kind, ty));
        }
        Ok(made)
    })
}

fn to_py(py: Python<'_>, e: pgisolate::Error) -> PyErr {
    let msg = e.to_string();
    let kind = e.kind();
    let err = match kind_classes(py).ok().and_then(|c| c.iter().find(|(k, _)| *k == kind)) {
        Some((_, ty)) => PyErr::from_type(ty.bind(py).clone(), msg),
        None => Error::new_err(msg),
    };
    let value = err.value(py);
    let _ = value.setattr("kind", kind as u32);
    let _ = value.setattr("code", kind.code());
    let _ = value.setattr("sqlstate", e.sqlstate());
    if let pgisolate::Error::Io { source, .. } = &e {
        let cause = pyo3::exceptions::PyOSError::new_err((source.raw_os_error().unwrap_or(0), source.to_string()));
        err.set_cause(py, Some(cause));
    }
    err
}

/// Registry entries as dicts (schema, identity, state, owner_alive, pid, host, run_id, age).
fn entry_list(py: Python<'_>, entries: Vec<pgisolate::Entry>) -> PyResult<Bound<'_, PyList>> {
    let out = PyList::empty(py);
    for e in entries {
        let d = PyDict::new(py);
        d.set_item("schema", e.schema)?;
        d.set_item("identity", e.identity)?;
        d.set_item("state", e.state)?;
        d.set_item("owner_alive", e.owner_alive)?;
        d.set_item("pid", e.pid)?;
        d.set_item("host", e.host)?;
        d.set_item("run_id", e.run_id)?;
        d.set_item("age", e.age.as_secs_f64())?;
        out.append(d)?;
    }
    Ok(out)
}

/// Runs a core future with the GIL released.
fn run<T: Send>(py: Python<'_>, fut: impl std::future::Future<Output = pgisolate::Result<T>> + Send) -> PyResult<T> {
    py.detach(|| blocking::block_on(fut)).map_err(|e| to_py(py, e))
}

/// The isolation engine: one per process.
#[pyclass(module = "pgisolate._pgisolate", name = "Engine", frozen, subclass)]
struct PyEngine {
    engine: Engine,
}

#[pymethods]
impl PyEngine {
    /// `Engine(url=None, **settings)`: every setting of the settings table (docs/configuration.md) by its key
    /// (`hash_len=16`, `keep="failed"`, `extensions=["uuid-ossp"]`, `gc_grace=0.5`,
    /// `login_role=True`); `None` leaves one as the environment or the default has it.
    #[new]
    #[pyo3(signature = (url=None, **settings))]
    fn new(py: Python<'_>, url: Option<String>, settings: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let mut cfg = Config::from_env().map_err(|e| to_py(py, e))?;
        // Warnings go to Python's warnings machinery (pytest shows them), not bare stderr.
        cfg.collect_warnings = true;
        if let Some(u) = url.filter(|u| !u.is_empty()) {
            cfg.url = Some(u);
        }
        for (k, v) in settings.into_iter().flatten() {
            if v.is_none() {
                continue;
            }
            let key: String = k.extract()?;
            let value = setting_text(&v)?;
            cfg.set(&key, &value).map_err(|e| to_py(py, e))?;
        }
        cfg.validate().map_err(|e| to_py(py, e))?;
        let engine = run(py, Engine::start(cfg))?;
        Ok(PyEngine { engine })
    }

    /// The admin connection string of the server in use.
    #[getter]
    fn url(&self) -> String {
        self.engine.url().to_owned()
    }

    /// The run identity recorded with every schema.
    #[getter]
    fn run_id(&self) -> String {
        self.engine.run_id().to_owned()
    }

    /// Whether this engine uses the embedded server.
    #[getter]
    fn embedded(&self) -> bool {
        self.engine.is_embedded()
    }

    /// The keep policy in force (never, failed, always).
    #[getter]
    fn keep(&self) -> &'static str {
        self.engine.config().keep.as_str()
    }

    /// What each test gets: "schema" or "database".
    #[getter]
    fn isolation(&self) -> &'static str {
        match self.engine.config().isolation {
            pgisolate::Isolation::Schema => "schema",
            pgisolate::Isolation::Database => "database",
        }
    }

    /// A template from a migrations directory, a list of files, or SQL text; built once per server.
    #[pyo3(signature = (migrations=None, *, files=None, sql=None))]
    fn template(
        &self,
        py: Python<'_>,
        migrations: Option<PathBuf>,
        files: Option<Vec<PathBuf>>,
        sql: Option<String>,
    ) -> PyResult<PyTemplate> {
        let m = match (migrations, files, sql) {
            (Some(d), None, None) => Migrations::dir(d),
            (None, Some(f), None) => Migrations::files(f),
            (None, None, Some(s)) => Migrations::sql(s),
            _ => {
                return Err(to_py(
                    py,
                    pgisolate::Error::Config("give exactly one of migrations (a directory), files= or sql=".into()),
                ))
            }
        };
        let engine = self.engine.clone();
        let tpl = run(py, async move { engine.template(m).await })?;
        Ok(PyTemplate { tpl })
    }

    /// Starts a template built by the caller's own migration tool: returns the Template if it
    /// exists, else a TemplateBuild (run migrations against its url, then commit()). With
    /// `inputs` (files and directories), their contents are part of the key.
    #[pyo3(signature = (key, inputs=None))]
    fn template_begin(&self, py: Python<'_>, key: String, inputs: Option<Vec<PathBuf>>) -> PyResult<Py<PyAny>> {
        let engine = self.engine.clone();
        let inputs = inputs.unwrap_or_default();
        let started = run(py, async move { engine.template_begin_inputs(&key, &inputs).await })?;
        match started {
            TemplateStart::Ready(tpl) => Ok(Py::new(py, PyTemplate { tpl })?.into_any()),
            TemplateStart::Build(b) => Ok(Py::new(
                py,
                PyTemplateBuild {
                    url: b.url().to_owned(),
                    conninfo: b.conninfo().to_owned(),
                    schema: b.schema().to_owned(),
                    build: Mutex::new(Some(b)),
                },
            )?
            .into_any()),
        }
    }

    /// A template built once per server by `build(url)`, the caller's migration tool, keyed by
    /// `key` and the contents of `inputs` (the core's flow: `blocking::template_with`). A
    /// failing `build` abandons the build and raises MigrationError from its exception.
    fn template_with(
        &self,
        py: Python<'_>,
        key: String,
        inputs: Vec<PathBuf>,
        build: Bound<'_, PyAny>,
    ) -> PyResult<PyTemplate> {
        let engine = self.engine.clone();
        let build = build.unbind();
        let mut raised: Option<PyErr> = None;
        let made = py.detach(|| {
            blocking::template_with(&engine, &key, &inputs, |url| {
                Python::attach(|py| match build.call1(py, (url,)) {
                    Ok(_) => Ok(()),
                    Err(e) => {
                        let text = e.value(py).str().map(|s| s.to_string()).unwrap_or_else(|_| e.to_string());
                        raised = Some(e);
                        Err(text)
                    }
                })
            })
        });
        match made {
            Ok(tpl) => Ok(PyTemplate { tpl }),
            Err(e) => {
                let err = to_py(py, e);
                if let Some(cause) = raised {
                    err.set_cause(py, Some(cause));
                }
                Err(err)
            }
        }
    }

    /// Warnings collected since the last call (leaked connections, tables shadowed in the
    /// search_path tail, fallbacks); the Python wrapper turns them into PgIsolateWarning.
    fn take_warnings(&self) -> Vec<String> {
        self.engine.take_warnings()
    }

    /// Templates in the database: dicts with schema, source, size_bytes, built_secs_ago,
    /// used_secs_ago, superseded.
    fn templates<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let engine = self.engine.clone();
        let list = run(py, async move { engine.templates().await })?;
        let out = PyList::empty(py);
        for t in list {
            let d = PyDict::new(py);
            d.set_item("schema", t.schema)?;
            d.set_item("source", t.source)?;
            d.set_item("size_bytes", t.size_bytes)?;
            d.set_item("built_secs_ago", t.built_secs_ago)?;
            d.set_item("used_secs_ago", t.used_secs_ago)?;
            d.set_item("superseded", t.superseded)?;
            out.append(d)?;
        }
        Ok(out)
    }

    /// Drops templates unused for `max_age` seconds and superseded ones unused for ten
    /// minutes; returns their schema names.
    fn prune_templates(&self, py: Python<'_>, max_age: f64) -> PyResult<Vec<String>> {
        let age = Duration::try_from_secs_f64(max_age)
            .map_err(|_| to_py(py, pgisolate::Error::Config("max_age must be >= 0".into())))?;
        let engine = self.engine.clone();
        run(py, async move { engine.prune_templates(age).await })
    }

    /// A fresh schema for (feature, scenario[, discriminator]) from `template`.
    #[pyo3(signature = (template, feature, scenario, discriminator=None))]
    fn acquire(
        &self,
        py: Python<'_>,
        template: &PyTemplate,
        feature: String,
        scenario: String,
        discriminator: Option<String>,
    ) -> PyResult<PySchema> {
        let mut id = Identity::new(feature, scenario);
        if let Some(d) = discriminator {
            id = id.with_discriminator(d);
        }
        let (engine, tpl) = (self.engine.clone(), template.tpl.clone());
        let schema = run(py, async move { engine.acquire(&tpl, id).await })?;
        Ok(PySchema::new(schema))
    }

    /// Drops marked schemas whose owner is gone (older than `grace` seconds, default the
    /// engine's); returns their names.
    #[pyo3(signature = (grace=None, include_kept=false))]
    fn gc(&self, py: Python<'_>, grace: Option<f64>, include_kept: bool) -> PyResult<Vec<String>> {
        let grace = match grace {
            Some(g) => Duration::try_from_secs_f64(g)
                .map_err(|_| to_py(py, pgisolate::Error::Config("grace must be >= 0".into())))?,
            None => self.engine.config().gc_grace,
        };
        let engine = self.engine.clone();
        Ok(run(py, async move { engine.gc_with(grace, include_kept).await })?.dropped)
    }

    /// Live and kept schemas: dicts with schema, identity, state, owner_alive, pid, host, run_id, age.
    fn list<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let engine = self.engine.clone();
        let entries = run(py, async move { engine.list().await })?;
        entry_list(py, entries)
    }

    /// What a run's workers need to join this engine's run: environment variables
    /// (`PGISOLATE_DATABASE_URL`, `PGISOLATE_RUN_ID`) and their values.
    fn worker_env(&self) -> Vec<(&'static str, String)> {
        self.engine.worker_env()
    }

    /// What the run left (the core's end of run, one report for every runner): a dict of
    /// `unreleased`, `kept` and `left` (entries as `list()` gives them) and `dropped` (names).
    /// With `reap`, dead owners' schemas are dropped first (a run's last engine only).
    #[pyo3(signature = (reap=false))]
    fn end_of_run<'py>(&self, py: Python<'py>, reap: bool) -> PyResult<Bound<'py, PyDict>> {
        let engine = self.engine.clone();
        let grace = reap.then_some(Duration::ZERO);
        let r = run(py, async move { engine.end_of_run(grace).await })?;
        let d = PyDict::new(py);
        d.set_item("unreleased", entry_list(py, r.unreleased)?)?;
        d.set_item("kept", entry_list(py, r.kept)?)?;
        d.set_item("dropped", r.dropped)?;
        d.set_item("left", entry_list(py, r.left)?)?;
        Ok(d)
    }

    /// Drops a schema carrying a pgisolate marker, by name (refuses anything else).
    fn drop_schema(&self, py: Python<'_>, name: String) -> PyResult<()> {
        let engine = self.engine.clone();
        run(py, async move { engine.drop_schema(&name).await })
    }

    /// Waits for background releases, closes connections, gives up the lease. Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let engine = self.engine.clone();
        run(py, async move { engine.close().await })
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!("<pgisolate.Engine {}>", pgisolate::conninfo::redact(self.engine.url()))
    }
}

/// A built template.
#[pyclass(module = "pgisolate._pgisolate", name = "Template", frozen)]
struct PyTemplate {
    tpl: Template,
}

#[pymethods]
impl PyTemplate {
    /// The template schema's name.
    #[getter]
    fn name(&self) -> String {
        self.tpl.schema().to_owned()
    }

    /// Whether the call that returned it built it.
    #[getter]
    fn built_here(&self) -> bool {
        self.tpl.built_here()
    }

    /// The fingerprint of its migrations.
    #[getter]
    fn fingerprint(&self) -> String {
        self.tpl.fingerprint().to_owned()
    }

    /// Its tables (quoted identifiers), in creation order.
    #[getter]
    fn tables(&self) -> Vec<String> {
        self.tpl.tables().to_vec()
    }

    fn __repr__(&self) -> String {
        format!("<pgisolate.Template {}>", self.tpl.schema())
    }
}

/// A template build run by the caller's migration tool.
#[pyclass(module = "pgisolate._pgisolate", name = "TemplateBuild", frozen)]
struct PyTemplateBuild {
    build: Mutex<Option<pgisolate::TemplateBuild>>,
    url: String,
    conninfo: String,
    schema: String,
}

#[pymethods]
impl PyTemplateBuild {
    /// URL scoped to the build schema: run the migrations against it.
    #[getter]
    fn url(&self) -> String {
        self.url.clone()
    }

    /// Key/value connection string scoped to the build schema.
    #[getter]
    fn conninfo(&self) -> String {
        self.conninfo.clone()
    }

    /// The build schema's name.
    #[getter]
    fn schema(&self) -> String {
        self.schema.clone()
    }

    /// Publishes the build as the template.
    fn commit(&self, py: Python<'_>) -> PyResult<PyTemplate> {
        let b = self.take()?;
        let tpl = run(py, b.commit())?;
        Ok(PyTemplate { tpl })
    }

    /// Abandons the build and drops its schema.
    fn abort(&self, py: Python<'_>) -> PyResult<()> {
        let b = self.take()?;
        run(py, b.abort())
    }

    /// Abandons the build after the migration tool failed with `message`; returns the
    /// message to report, with a hint when the failure looks like an object the build
    /// cannot see (an extension installed in public).
    fn fail(&self, py: Python<'_>, source_name: String, message: String) -> PyResult<String> {
        let b = self.take()?;
        let e = run(py, async move { Ok(b.fail(&source_name, &message).await) })?;
        Ok(match e {
            pgisolate::Error::Migration { message, .. } => message,
            other => other.to_string(),
        })
    }
}

impl PyTemplateBuild {
    fn take(&self) -> PyResult<pgisolate::TemplateBuild> {
        self.build.lock().map_err(|_| Error::new_err("template build lock poisoned"))?.take().ok_or_else(|| {
            Python::attach(|py| {
                to_py(py, pgisolate::Error::Closed("template build already committed or aborted".into()))
            })
        })
    }
}

/// One test's schema. A context manager: leaving the block releases it (kept per the keep
/// policy when the block raised).
#[pyclass(module = "pgisolate._pgisolate", name = "Schema", frozen)]
struct PySchema {
    schema: Mutex<Option<Schema>>,
    name: String,
    url: String,
    conninfo: String,
    cache_prefix: String,
    search_path: String,
    application_name: String,
}

impl PySchema {
    fn new(s: Schema) -> Self {
        PySchema {
            name: s.name().to_owned(),
            url: s.url().to_owned(),
            conninfo: s.conninfo().to_owned(),
            cache_prefix: s.cache_prefix().to_owned(),
            search_path: s.search_path().to_owned(),
            application_name: s.application_name(),
            schema: Mutex::new(Some(s)),
        }
    }
}

#[pymethods]
impl PySchema {
    /// The schema's name.
    #[getter]
    fn name(&self) -> String {
        self.name.clone()
    }

    /// A postgres:// URL whose sessions land in this schema (psycopg, SQLAlchemy).
    #[getter]
    fn url(&self) -> String {
        self.url.clone()
    }

    /// The same connection as a libpq key/value string.
    #[getter]
    fn conninfo(&self) -> String {
        self.conninfo.clone()
    }

    /// The cache-key prefix (`<hex>_`).
    #[getter]
    fn cache_prefix(&self) -> String {
        self.cache_prefix.clone()
    }

    /// `search_path` and `application_name` for drivers that take settings (asyncpg's
    /// `server_settings=`).
    #[getter]
    fn server_settings<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("search_path", &self.search_path)?;
        d.set_item("application_name", &self.application_name)?;
        Ok(d)
    }

    /// Whether release() already ran.
    #[getter]
    fn released(&self) -> PyResult<bool> {
        Ok(self.schema.lock().map_err(|_| Error::new_err("schema lock poisoned"))?.is_none())
    }

    /// A key in this schema's cache namespace: `<hex>_<key>`.
    fn cache_key(&self, key: &str) -> String {
        pgisolate::cache_key(&self.cache_prefix, key)
    }

    /// A SQLAlchemy URL, `postgresql+<driver>://…` (psycopg by default; psycopg2 works too).
    #[pyo3(signature = (driver="psycopg"))]
    fn sqlalchemy_url(&self, py: Python<'_>, driver: &str) -> PyResult<String> {
        pgisolate::conninfo::sqlalchemy_url(&self.url, driver).map_err(|e| to_py(py, e))
    }

    /// A Prisma-style URL (`?schema=<name>`).
    fn prisma_url(&self, py: Python<'_>) -> PyResult<String> {
        pgisolate::conninfo::prisma_url(&self.url, &self.name).map_err(|e| to_py(py, e))
    }

    /// Releases the schema: dropped, or kept when the keep policy says so given `failed`.
    /// Returns whether it was kept. A second call does nothing and returns False.
    #[pyo3(signature = (failed=false))]
    fn release(&self, py: Python<'_>, failed: bool) -> PyResult<bool> {
        let taken = self.schema.lock().map_err(|_| Error::new_err("schema lock poisoned"))?.take();
        match taken {
            Some(s) => Ok(run(py, s.finish(failed))? == Released::Kept),
            None => Ok(false),
        }
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (exc_type=None, _exc=None, _tb=None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<Bound<'_, PyAny>>,
        _exc: Option<Bound<'_, PyAny>>,
        _tb: Option<Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        self.release(py, exc_type.is_some_and(|t| !t.is_none()))?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!("<pgisolate.Schema {}>", self.name)
    }
}

/// The deterministic schema name for an identity (no server needed).
#[pyfunction]
#[pyo3(signature = (prefix, hash_len, feature, scenario, discriminator=None))]
fn schema_name(
    py: Python<'_>,
    prefix: &str,
    hash_len: usize,
    feature: String,
    scenario: String,
    discriminator: Option<String>,
) -> PyResult<String> {
    let mut id = Identity::new(feature, scenario);
    if let Some(d) = discriminator {
        id = id.with_discriminator(d);
    }
    pgisolate::schema_name(prefix, hash_len, &id).map_err(|e| to_py(py, e))
}

/// The cache-key prefix of a schema name made with `prefix`.
#[pyfunction]
fn cache_prefix(prefix: &str, schema: &str) -> String {
    pgisolate::naming::cache_prefix(prefix, schema)
}

/// `cache_prefix + key`.
#[pyfunction]
fn cache_key(cache_prefix: &str, key: &str) -> String {
    pgisolate::cache_key(cache_prefix, key)
}

/// The line every test runner prints for a kept schema: its name, the test, and a psql
/// command that opens it.
#[pyfunction]
fn kept_line(schema: &str, test: &str, url: &str) -> String {
    pgisolate::kept_line(schema, test, url)
}

/// A URL or key/value string scoped to `schema` (then `tail`) in search_path.
#[pyfunction]
#[pyo3(signature = (url, schema, tail=vec!["public".to_owned()]))]
fn scoped_url(py: Python<'_>, url: &str, schema: &str, tail: Vec<String>) -> PyResult<String> {
    pgisolate::conninfo::scoped(url, schema, &tail).map_err(|e| to_py(py, e))
}

/// `url` with `?schema=<schema>`.
#[pyfunction]
fn prisma_url(py: Python<'_>, url: &str, schema: &str) -> PyResult<String> {
    pgisolate::conninfo::prisma_url(url, schema).map_err(|e| to_py(py, e))
}

/// The connection string with its password hidden.
#[pyfunction]
fn redact(url: &str) -> String {
    pgisolate::conninfo::redact(url)
}

/// A setting's value as text, the way every binding passes it: `True` is on, lists are
/// comma-separated, paths and numbers as they print.
fn setting_text(v: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(b) = v.cast::<pyo3::types::PyBool>() {
        return Ok(if b.is_true() { "on" } else { "off" }.to_owned());
    }
    if v.cast::<pyo3::types::PyList>().is_ok() || v.cast::<pyo3::types::PyTuple>().is_ok() {
        let items: Vec<String> = v.try_iter()?.map(|i| i.and_then(|x| setting_text(&x))).collect::<PyResult<_>>()?;
        return Ok(items.join(","));
    }
    if let Ok(s) = v.extract::<String>() {
        return Ok(s);
    }
    if v.hasattr("__fspath__")? {
        return v.py().import("os")?.call_method1("fspath", (v,))?.extract();
    }
    v.str()?.extract()
}

/// Raises the error `Engine(key=value)` would (a `ConfigError`, or `ConnInfoError` for a URL)
/// without starting anything; returns None when the value is valid.
#[pyfunction]
fn check_setting(py: Python<'_>, key: &str, value: &Bound<'_, PyAny>) -> PyResult<()> {
    Config::check_setting(key, &setting_text(value)?).map_err(|e| to_py(py, e))
}

/// Every setting of the core's table as `(key, environment variable, what it takes)`: the pytest
/// plugin makes an ini key and a `--pgisolate-*` flag of each.
#[pyfunction]
fn settings() -> Vec<(&'static str, &'static str, &'static str)> {
    pgisolate::config::SETTINGS.iter().map(|s| (s.key, s.env, s.takes)).collect()
}

/// The `pgisolate` command (`python -m pgisolate`, the console script): runs `argv` (program
/// name first) and returns the exit status.
#[pyfunction]
fn cli_main(py: Python<'_>, argv: Vec<String>) -> u8 {
    py.detach(|| pgisolate_cli::main_from(argv.into_iter().map(Into::into).collect()))
}

#[pymodule]
fn _pgisolate(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<PyEngine>()?;
    m.add_class::<PyTemplate>()?;
    m.add_class::<PyTemplateBuild>()?;
    m.add_class::<PySchema>()?;
    let base = py.get_type::<Error>();
    base.setattr("kind", py.None())?;
    base.setattr("code", py.None())?;
    base.setattr("sqlstate", py.None())?;
    m.add("Error", base)?;
    // One class per kind of the core's table; the class carries its kind, so errors raised in
    // Python have it too.
    for (kind, ty) in kind_classes(py)? {
        m.add(kind.class_name(), ty.bind(py))?;
    }
    m.add_function(wrap_pyfunction!(schema_name, m)?)?;
    m.add_function(wrap_pyfunction!(cache_prefix, m)?)?;
    m.add_function(wrap_pyfunction!(cache_key, m)?)?;
    m.add_function(wrap_pyfunction!(kept_line, m)?)?;
    m.add_function(wrap_pyfunction!(scoped_url, m)?)?;
    m.add_function(wrap_pyfunction!(prisma_url, m)?)?;
    m.add_function(wrap_pyfunction!(redact, m)?)?;
    m.add_function(wrap_pyfunction!(cli_main, m)?)?;
    m.add_function(wrap_pyfunction!(check_setting, m)?)?;
    m.add_function(wrap_pyfunction!(settings, m)?)?;
    Ok(())
}
