"""The pgisolate pytest plugin: ``isolated_schema`` gives every test its own PostgreSQL schema.

Fixtures
    isolated_schema          function scope: a fresh schema for this test (name, url, conninfo,
                             cache_key()); released after the test, kept if it failed and
                             ``--pgisolate-keep=failed``.
    isolated_schema_factory  session scope: ``factory(feature, scenario, discriminator=None)``
                             makes more schemas (several per test, or one per module or worker
                             in your own wider-scoped fixture); each is a context manager, and
                             whatever is left is released at the end of the session.
    pgisolate_engine         session scope: the Engine.
    pgisolate_template       session scope: the template from ``--pgisolate-migrations`` (ini
                             ``pgisolate_migrations``). Override it to run Alembic, Django or any
                             tool: ``return pgisolate_engine.template(build=migrate, key="v3")``.

Settings
    Every setting of the settings table (docs/configuration.md) is an ini key ``pgisolate_<key>`` and a flag
    ``--pgisolate-<key>`` (``pgisolate_keep = failed``, ``--pgisolate-pool-size 4``); a flag
    beats the ini, which beats the ``PGISOLATE_*`` environment. A bad value is a usage error.

Marker
    ``@pytest.mark.pgisolate(template="fixture_name", scope="module")`` on a test, class or
    module: ``isolated_schema`` comes from that template fixture instead of
    ``pgisolate_template``, and with ``scope="module"`` (or ``"session"``) the tests of a module
    (or the whole session) share one schema — per process: with pytest-xdist, keep a module's
    tests on one worker (``--dist loadfile``).

Async
    ``isolated_schema`` works in async tests (pytest-asyncio, anyio); code of your own awaits
    ``engine.aschema(template, feature, scenario)`` (also ``async with``).

With pytest-xdist and no URL, the controller starts ONE embedded server for the whole run and
hands its URL and run id to the workers; the template is built once (the first worker builds,
the others wait on the engine's lock and reuse it). At the end the controller reaps what crashed
workers left and prints one summary line.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any, Dict, List, Optional

import pytest

import pgisolate

_REPORTS = pytest.StashKey[Dict[str, Any]]()
_STATE = pytest.StashKey["_State"]()


class _State:
    """Per-process plugin state, kept in the config's stash."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.engine: Optional[pgisolate.Engine] = None
        self.controller_engine: Optional[pgisolate.Engine] = None
        # With several servers listed: one more controller engine per other server (gc and
        # the summary cover every server).
        self.controller_others: List[pgisolate.Engine] = []
        self.acquire_ms: List[float] = []
        self.created = 0
        self.kept = 0
        self.empty_templates: List[str] = []
        self.kept_lines: List[str] = []
        self.worker_stats: List[Dict[str, Any]] = []
        # The core's end-of-run report of each controller engine (one per listed server).
        self.run_reports: List[Dict[str, Any]] = []

    # -- configuration ------------------------------------------------------------------
    def url(self) -> Optional[str]:
        opt = self.config.getoption("pgisolate_url") or self.config.getini("pgisolate_url")
        if opt:
            return opt
        workerinput = getattr(self.config, "workerinput", None)
        if workerinput and workerinput.get("pgisolate_url"):
            return workerinput["pgisolate_url"]
        return os.environ.get("PGISOLATE_DATABASE_URL") or None

    def run_id(self) -> Optional[str]:
        workerinput = getattr(self.config, "workerinput", None)
        if workerinput and workerinput.get("pgisolate_run_id"):
            return workerinput["pgisolate_run_id"]
        return os.environ.get("PGISOLATE_RUN_ID") or None

    def settings(self) -> Dict[str, str]:
        """Settings given as flags or ini keys (a flag beats the ini); the rest stay as the
        environment or the defaults have them."""
        out: Dict[str, str] = {}
        for key, _env, _takes in pgisolate.settings():
            if key == "url":
                continue
            value = self.config.getoption(f"pgisolate_{key}")
            if value is None or value == "":
                value = self.config.getini(f"pgisolate_{key}")
            if value is not None and value != "":
                out[key] = value
        return out

    def migrations(self) -> Optional[str]:
        opt = self.config.getoption("pgisolate_migrations") or self.config.getini("pgisolate_migrations")
        if not opt:
            return None
        path = opt if os.path.isabs(opt) else os.path.join(str(self.config.rootpath), opt)
        return path

    def get_engine(self) -> pgisolate.Engine:
        if self.engine is None:
            settings = self.settings()
            run_id = self.run_id()
            if run_id:
                settings["run_id"] = run_id
            self.engine = pgisolate.Engine(self.url(), **settings)
        return self.engine


def _state(config: pytest.Config) -> _State:
    return config.stash[_STATE]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pgisolate", "one PostgreSQL schema per test")
    # One flag and one ini key per setting of the core's table (the README's).
    for key, env, takes in pgisolate.settings():
        group.addoption(
            f"--pgisolate-{key.replace('_', '-')}",
            dest=f"pgisolate_{key}",
            default=None,
            help=f"{takes} (ini: pgisolate_{key}; env: {env})",
        )
        parser.addini(f"pgisolate_{key}", f"{takes} (env: {env})", default="")
    group.addoption(
        "--pgisolate-migrations",
        dest="pgisolate_migrations",
        default=None,
        help="directory of *.sql migrations the template is built from (ini: pgisolate_migrations)",
    )
    parser.addini("pgisolate_migrations", "directory of *.sql migrations for the template", default="")


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _is_xdist_controller(config: pytest.Config) -> bool:
    return not _is_worker(config) and config.pluginmanager.hasplugin("dsession")


@pytest.hookimpl(trylast=True)  # after xdist registered its "dsession" plugin
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "pgisolate(template=None, scope='function'): isolated_schema from the fixture named by template, "
        "shared by the tests of a module or session with scope='module' / 'session'",
    )
    state = _State(config)
    # A bad setting is a usage error now, not a fixture error in every test.
    url = config.getoption("pgisolate_url") or config.getini("pgisolate_url")
    try:
        if url:
            pgisolate.check_setting("url", url)
        for key, value in state.settings().items():
            pgisolate.check_setting(key, value)
    except pgisolate.Error as exc:
        raise pytest.UsageError(f"pgisolate: {exc}") from exc
    config.stash[_STATE] = state
    if _is_xdist_controller(config):
        config.pluginmanager.register(_ControllerHooks(state), "pgisolate-controller")


def _servers(url: Optional[str]) -> List[str]:
    """The servers a URL setting lists (several postgres:// URLs separated by spaces), as the
    core reads it."""
    if not url:
        return []
    parts = url.split()
    is_url = lambda p: p.startswith(("postgres://", "postgresql://")) or "+psycopg" in p  # noqa: E731
    if len(parts) > 1 and all(is_url(p) for p in parts):
        return parts
    return [url.strip()]


class _ControllerHooks:
    """xdist controller: one server and one run id for every worker; stats and reaping."""

    def __init__(self, state: _State) -> None:
        self.state = state

    def _engine(self) -> pgisolate.Engine:
        if self.state.controller_engine is None:
            settings = self.state.settings()
            if self.state.run_id():
                settings["run_id"] = self.state.run_id()
            servers = _servers(self.state.url())
            if len(servers) > 1:
                # Controller engine i on server i: every listed server is reaped at the end.
                settings["worker"] = "0"
            first = pgisolate.Engine(self.state.url(), **settings)
            self.state.controller_engine = first
            settings["run_id"] = first.run_id
            for i in range(1, len(servers)):
                settings["worker"] = str(i)
                self.state.controller_others.append(pgisolate.Engine(self.state.url(), **settings))
        return self.state.controller_engine

    def pytest_configure_node(self, node: Any) -> None:
        engine = self._engine()  # holds the embedded server up for the whole run
        # The core's hand-over: several servers listed, the whole list, so each worker takes
        # its own by its id (gw<N>: server N modulo their count); else the one server (the
        # embedded one's URL); and the run id.
        env = dict(engine.worker_env())
        node.workerinput["pgisolate_url"] = env["PGISOLATE_DATABASE_URL"]
        node.workerinput["pgisolate_run_id"] = env["PGISOLATE_RUN_ID"]

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        stats = getattr(node, "workeroutput", {}).get("pgisolate")
        if stats:
            self.state.worker_stats.append(stats)


def _record_stats(state: _State) -> Dict[str, Any]:
    return {
        "created": state.created,
        "kept": state.kept,
        "acquire_ms": state.acquire_ms,
        "empty_templates": state.empty_templates,
        "kept_lines": state.kept_lines,
    }


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    state = _state(config)
    if _is_worker(config):
        config.workeroutput["pgisolate"] = _record_stats(state)  # type: ignore[attr-defined]
    else:
        state.worker_stats.append(_record_stats(state))
    for engine in _controller_engines(state):
        # Workers are gone: the run's end (the core's report) reaps what crashed ones left
        # (their leases are free) and says what is left. Every listed server's.
        try:
            state.run_reports.append(engine.end_of_run(reap=True))
        except pgisolate.Error as exc:  # report, never mask the test outcome
            config.issue_config_time_warning(pytest.PytestWarning(f"pgisolate gc failed: {exc}"), stacklevel=2)


def _controller_engines(state: _State) -> List[pgisolate.Engine]:
    first = [state.controller_engine] if state.controller_engine is not None else []
    return first + state.controller_others


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if _is_worker(config):
        return
    state = _state(config)
    samples = [ms for s in state.worker_stats for ms in s.get("acquire_ms", [])]
    created = sum(s.get("created", 0) for s in state.worker_stats)
    if not created:
        return
    kept = sum(s.get("kept", 0) for s in state.worker_stats)
    samples.sort()
    median = statistics.median(samples)
    p99 = samples[min(len(samples) - 1, int(round(0.99 * (len(samples) - 1))))]
    reports = state.run_reports
    if not reports and state.engine is not None:
        try:
            reports = [state.engine.end_of_run()]
        except pgisolate.Error:
            pass
    # Still live: never released (released schemas may still be being dropped in the
    # background; those are not leftovers).
    leftovers = str(sum(len(r["left"]) for r in reports)) if reports else "?"
    # A failed test's schema, kept: where it is and the command that opens it (the server
    # stays up while kept schemas exist, until `pgisolate gc --kept` or `pgisolate server stop`).
    for s in state.worker_stats:
        for line in s.get("kept_lines", []):
            terminalreporter.write_line(line, yellow=True)
    terminalreporter.write_line(
        f"pgisolate: {created} schemas created, acquire median {median:.1f} ms, p99 {p99:.1f} ms, "
        f"{kept} kept, {leftovers} leftovers"
    )
    unreleased = [e for r in reports for e in r["unreleased"]]
    if unreleased:
        terminalreporter.write_line(
            f"pgisolate: {len(unreleased)} schema(s) were not released by their tests"
            f"{' and were reaped' if any(r['dropped'] for r in reports) else ''}: "
            + "; ".join(e["identity"] for e in unreleased[:5]),
            yellow=True,
        )
    empty = sorted({t for s in state.worker_stats for t in s.get("empty_templates", [])})
    if empty:
        terminalreporter.write_line(
            f"pgisolate: WARNING: template {', '.join(empty)} holds no tables, so every test schema made from it "
            "was empty and queries fell through to the search_path tail: check the template's migrations",
            red=True,
        )


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is None:
        return
    for engine in [state.engine, *_controller_engines(state)]:
        if engine is not None:
            engine.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any):
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


def _failed(item: pytest.Item) -> bool:
    reports = item.stash.get(_REPORTS, {})
    return any(r.failed for r in reports.values())


@pytest.fixture(scope="session")
def pgisolate_engine(pytestconfig: pytest.Config) -> pgisolate.Engine:
    """The session's Engine (embedded server unless a URL is configured)."""
    return _state(pytestconfig).get_engine()


@pytest.fixture(scope="session")
def pgisolate_template(pgisolate_engine: pgisolate.Engine, pytestconfig: pytest.Config) -> pgisolate.Template:
    """The template every schema is made from. Override to run your own migration tool."""
    migrations = _state(pytestconfig).migrations()
    if migrations is None:
        raise pgisolate.ConfigError(
            "no migrations configured for pgisolate: pass --pgisolate-migrations DIR, set "
            "pgisolate_migrations in your pytest ini, or override the pgisolate_template fixture"
        )
    return pgisolate_engine.template(migrations)


def _identity(node: Any) -> tuple:
    nodeid = node.nodeid
    module = nodeid.split("::", 1)[0]
    return module, nodeid


class _Factory:
    """Makes schemas for the session; releases whatever is still held when the session ends."""

    def __init__(self, state: _State, engine: pgisolate.Engine, template: pgisolate.Template) -> None:
        self.state = state
        self.engine = engine
        self.template = template
        self.held: List[pgisolate.Schema] = []

    def __call__(
        self, feature: str, scenario: str, discriminator: Optional[str] = None, *, template: Optional[pgisolate.Template] = None
    ) -> pgisolate.Schema:
        tpl = template or self.template
        # A schema template's tables (a template database's are not read: a session on it
        # would hold up every clone).
        if self.engine.isolation == "schema" and not tpl.tables and tpl.name not in self.state.empty_templates:
            self.state.empty_templates.append(tpl.name)
        start = time.perf_counter()
        schema = self.engine.schema(tpl, feature, scenario, discriminator)
        self.state.acquire_ms.append((time.perf_counter() - start) * 1000.0)
        self.state.created += 1
        self.held = [s for s in self.held if not s.released]
        self.held.append(schema)
        return schema

    def release(self, schema: pgisolate.Schema, failed: bool, what: str = "") -> None:
        if schema.release(failed=failed):
            self.state.kept += 1
            self.state.kept_lines.append(pgisolate.kept_line(schema.name, what or "failed test", schema.url))
        # Leaked connections found at release, and earlier background warnings: shown by
        # pytest against this test.
        self.engine.emit_warnings(stacklevel=3)

    def close(self) -> None:
        for schema in self.held:
            if not schema.released:
                self.release(schema, failed=False)
        self.held.clear()


@pytest.fixture(scope="session")
def isolated_schema_factory(pytestconfig: pytest.Config, pgisolate_engine, pgisolate_template):
    """``factory(feature, scenario, discriminator=None)`` → a new Schema (a context manager)."""
    factory = _Factory(_state(pytestconfig), pgisolate_engine, pgisolate_template)
    yield factory
    factory.close()


@pytest.fixture(scope="session")
def isolated_worker_schema(request: pytest.FixtureRequest, isolated_schema_factory: _Factory) -> Any:
    """One schema for this worker (each pytest-xdist worker gets its own), held for the session:
    for suites that isolate their tests themselves, e.g. a transaction rolled back per test."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    schema = isolated_schema_factory("pytest worker", worker)
    yield schema
    isolated_schema_factory.release(schema, failed=request.session.testsfailed > 0)


_SCOPES = ("function", "module", "session")


def _marker(node: Any) -> Dict[str, Any]:
    """The closest ``@pytest.mark.pgisolate``'s arguments (test, then class, then module)."""
    mark = node.get_closest_marker("pgisolate")
    if mark is None:
        return {}
    if mark.args:
        raise pytest.UsageError("@pytest.mark.pgisolate takes keywords only: template=..., scope=...")
    unknown = set(mark.kwargs) - {"template", "scope"}
    if unknown:
        raise pytest.UsageError(f"@pytest.mark.pgisolate: unknown argument(s) {sorted(unknown)}; it takes template= and scope=")
    scope = mark.kwargs.get("scope", "function")
    if scope not in _SCOPES:
        raise pytest.UsageError(f"@pytest.mark.pgisolate(scope={scope!r}): scope is one of {', '.join(_SCOPES)}")
    return mark.kwargs


class _Shared:
    """Schemas shared by the tests of a module or of the session (marker scope)."""

    def __init__(self) -> None:
        self.schemas: Dict[tuple, pgisolate.Schema] = {}
        self.failed: Dict[tuple, bool] = {}

    def release_all(self, factory: _Factory) -> None:
        for key, schema in self.schemas.items():
            factory.release(schema, failed=self.failed.get(key, False))


def _shared_fixture(scope: str):
    @pytest.fixture(scope=scope, name=f"_pgisolate_{scope}_shared")
    def shared(isolated_schema_factory: _Factory):
        state = _Shared()
        yield state
        state.release_all(isolated_schema_factory)

    return shared


_pgisolate_module_shared = _shared_fixture("module")
_pgisolate_session_shared = _shared_fixture("session")


@pytest.fixture
def isolated_schema(request: pytest.FixtureRequest, isolated_schema_factory: _Factory) -> Any:
    """A fresh schema for this test: ``.name``, ``.url``, ``.conninfo``, ``.cache_key(k)``
    (see ``@pytest.mark.pgisolate`` for another template or a wider scope)."""
    opts = _marker(request.node)
    template = request.getfixturevalue(opts["template"]) if opts.get("template") else None
    if template is not None and not isinstance(template, pgisolate.Template):
        raise pytest.UsageError(
            f"@pytest.mark.pgisolate(template={opts['template']!r}): that fixture returned "
            f"{type(template).__name__}, not a pgisolate.Template"
        )
    scope = opts.get("scope", "function")
    if scope == "function":
        feature, scenario = _identity(request.node)
        schema = isolated_schema_factory(feature, scenario, template=template)
        yield schema
        isolated_schema_factory.release(schema, failed=_failed(request.node), what=request.node.nodeid)
        return
    shared: _Shared = request.getfixturevalue(f"_pgisolate_{scope}_shared")
    module = request.node.nodeid.split("::", 1)[0]
    key = (module if scope == "module" else "session", opts.get("template"))
    if key not in shared.schemas:
        shared.schemas[key] = isolated_schema_factory(
            key[0], f"shared by @pytest.mark.pgisolate(scope={scope!r})", opts.get("template"), template=template
        )
    yield shared.schemas[key]
    shared.failed[key] = shared.failed.get(key, False) or _failed(request.node)
