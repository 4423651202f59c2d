"""The native binding: vectors, errors, engine, drivers (R14 for libpq and asyncpg)."""

import asyncio
import json
import threading
import time

import asyncpg
import psycopg
import pytest
import sqlalchemy

import pgisolate
from conftest import ROOT, VECTORS


def cases(name):
    doc = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    assert doc["cases"], name
    return doc["cases"]


def text(v):
    return v if isinstance(v, str) else v["repeat"] * v["times"]


@pytest.mark.parametrize("case", cases("naming.json"), ids=lambda c: c["name"])
def test_naming_vectors(case):
    args = (case["prefix"], case["hash_len"], text(case["feature"]), text(case["scenario"]))
    disc = text(case["discriminator"]) if "discriminator" in case else None
    if case.get("error"):
        with pytest.raises(pgisolate.ConfigError) as info:
            pgisolate.schema_name(*args, disc)
        assert info.value.code == "config"
        return
    name = pgisolate.schema_name(*args, disc)
    assert name == case["expected_schema"]
    assert pgisolate.cache_prefix(case["prefix"], name) == case["expected_cache_prefix"]


@pytest.mark.parametrize("case", cases("config.json"), ids=lambda c: f"{c['key']}={c['value']}")
def test_config_vectors(case):
    if case["ok"]:
        pgisolate.check_setting(case["key"], case["value"])
        return
    kind = pgisolate.ConnInfoError if case.get("code") == "conninfo" else pgisolate.ConfigError
    with pytest.raises(kind) as info:
        pgisolate.check_setting(case["key"], case["value"])
    assert case["error"] in str(info.value)


def test_settings_take_python_values():
    pgisolate.check_setting("gc_grace", 0.5)
    pgisolate.check_setting("login_role", True)
    pgisolate.check_setting("extensions", ["uuid-ossp", "pgcrypto"])
    with pytest.raises(pgisolate.ConfigError, match="hash length 99"):
        pgisolate.Engine(hash_len=99)
    with pytest.raises(pgisolate.ConfigError, match="unknown setting"):
        pgisolate.Engine(pool_sise=3)


@pytest.mark.parametrize("case", cases("conninfo.json"), ids=lambda c: c["name"])
def test_conninfo_vectors(case):
    if case.get("error"):
        with pytest.raises(pgisolate.ConnInfoError):
            pgisolate.scoped_url(case["input"], case["schema"], case["tail"])
        return
    assert pgisolate.scoped_url(case["input"], case["schema"], case["tail"]) == case["expected"]


def test_prisma_and_cache_key_vectors():
    for c in cases("prisma.json"):
        if c.get("error"):
            with pytest.raises(pgisolate.ConnInfoError):
                pgisolate.prisma_url(c["input"], c["schema"])
        else:
            assert pgisolate.prisma_url(c["input"], c["schema"]) == c["expected"]
    for c in cases("cache_key.json"):
        assert pgisolate.cache_key(c["cache_prefix"], c["key"]) == c["expected"]


def test_error_hierarchy():
    assert issubclass(pgisolate.BinariesNotFoundError, pgisolate.ServerError)
    for cls in (pgisolate.ConfigError, pgisolate.ConnectError, pgisolate.DatabaseError, pgisolate.ClosedError):
        assert issubclass(cls, pgisolate.Error)
    with pytest.raises(pgisolate.ConfigError, match="PGISOLATE_HASH_LEN|8..=32"):
        pgisolate.Engine(hash_len=99)
    with pytest.raises(pgisolate.ConnectError) as info:
        pgisolate.Engine("postgres://u:hunter2@127.0.0.1:1/db")
    assert "hunter2" not in str(info.value) and info.value.code == "connect"


ERRORS = json.loads((VECTORS / "errors.json").read_text())


@pytest.mark.parametrize("kind", ERRORS["kinds"], ids=lambda k: k["code"])
def test_every_kind_has_its_class(kind):
    cls = getattr(pgisolate, kind["python"])
    assert issubclass(cls, pgisolate.Error) and kind["python"] in pgisolate.__all__
    assert (cls.kind, cls.code) == (kind["number"], kind["code"])
    # Raised from Python (the plugin, the Alembic helper), it still carries its kind.
    assert cls("x").kind == kind["number"] and cls("x").sqlstate is None


STUB = ROOT / "bindings-python" / "python" / "pgisolate" / "_pgisolate.pyi"


def _stub_classes():
    import ast

    return {n.name: n for n in ast.parse(STUB.read_text(encoding="utf-8")).body if isinstance(n, ast.ClassDef)}


def test_error_classes_are_the_core_kinds_no_more():
    """Every Error subclass the package exports, and every one its stubs declare, is a kind of
    the core's table (tests/vectors/errors.json, checked against the core by core/tests/vectors.rs)."""
    want = {k["python"] for k in ERRORS["kinds"]}
    exported = {
        n
        for n in pgisolate.__all__
        if isinstance(getattr(pgisolate, n), type)
        and issubclass(getattr(pgisolate, n), pgisolate.Error)
        and getattr(pgisolate, n) is not pgisolate.Error
    }
    assert exported == want, f"exported but not a kind: {exported - want}; a kind not exported: {want - exported}"
    stubbed = {n for n, c in _stub_classes().items() if any(getattr(b, "id", "").endswith("Error") for b in c.bases)}
    assert stubbed == want, f"stubs only: {stubbed - want}; not in the stubs: {want - stubbed}"


def test_the_stubs_take_every_setting_of_the_core_table():
    """Engine(...) in _pgisolate.pyi names the core's settings (pgisolate.settings()), no more, no fewer."""
    import ast

    init = next(
        n for n in _stub_classes()["Engine"].body if isinstance(n, ast.FunctionDef) and n.name == "__init__"
    )
    named = [a.arg for a in init.args.args[1:] + init.args.kwonlyargs]
    keys = [k for k, _, _ in pgisolate.settings()]
    assert sorted(named) == sorted(keys), (
        f"stubs only: {sorted(set(named) - set(keys))}; settings missing from the stubs: {sorted(set(keys) - set(named))}"
    )


def _with_user(url, user):
    scheme, rest = url.split("://", 1)
    host, sep, tail = rest.partition("/")
    return f"{scheme}://{user}@{host.rpartition('@')[2]}{sep}{tail}"


@pytest.mark.parametrize("failure", ERRORS["failures"], ids=lambda f: f["name"])
def test_failures_carry_kind_and_sqlstate(engine, failure):
    holder = None
    try:
        with pytest.raises(pgisolate.Error) as info:
            if "user" in failure:
                pgisolate.Engine(_with_user(engine.url, failure["user"]), gc_on_start=False)
            else:
                if "lock" in failure:
                    holder = psycopg.connect(engine.url, autocommit=True)
                    holder.execute("select pg_advisory_lock(%s)", (failure["lock"],))
                engine.template(sql=failure["sql"])
    finally:
        if holder is not None:
            holder.close()
    kind = next(k for k in ERRORS["kinds"] if k["number"] == failure["kind"])
    assert type(info.value) is getattr(pgisolate, kind["python"]), info.value
    assert info.value.kind == failure["kind"] and info.value.code == kind["code"]
    assert info.value.sqlstate == failure["sqlstate"], info.value


def test_missing_migrations_keeps_the_os_error_as_cause(engine):
    with pytest.raises(pgisolate.FileError) as info:
        engine.template("/nonexistent/migrations")
    assert isinstance(info.value.__cause__, OSError)


def test_failing_migration_is_a_migration_error_naming_the_file(engine, tmp_path, unique):
    (tmp_path / "001_bad.sql").write_text(f"-- {unique}\ncreate table t (id int references nowhere (id));")
    with pytest.raises(pgisolate.MigrationError, match="001_bad.sql.*nowhere"):
        engine.template(tmp_path)


def test_schema_lands_with_psycopg_sqlalchemy_and_asyncpg(engine, template):
    with engine.schema(template, "py.feature", "drivers") as s:
        for dsn in (s.url, s.conninfo):
            with psycopg.connect(dsn) as conn:
                assert conn.execute("select current_schema()").fetchone()[0] == s.name
        sa = sqlalchemy.create_engine(s.url.replace("postgres://", "postgresql+psycopg://", 1))
        with sa.connect() as conn:
            assert conn.execute(sqlalchemy.text("select current_schema()")).scalar() == s.name
            conn.execute(sqlalchemy.text("insert into users (email) values ('sa@example.com')"))
            conn.commit()
        sa.dispose()

        async def via_asyncpg():
            conn = await asyncpg.connect(engine.url, server_settings=s.server_settings)
            try:
                assert await conn.fetchval("select current_schema()") == s.name
                assert await conn.fetchval("select count(*) from users") == 1
            finally:
                await conn.close()
            conn = await asyncpg.connect(s.url)  # asyncpg passes options= through as well
            try:
                assert await conn.fetchval("select current_schema()") == s.name
            finally:
                await conn.close()

        asyncio.run(via_asyncpg())
        assert "+" not in s.url and "%3D" in s.url
    assert s.released


def test_login_role_confines_each_schema(engine, template, migrations_dir):
    with pgisolate.Engine(login_role=True, gc_on_start=False) as e:
        tpl = e.template(migrations_dir)
        with e.schema(tpl, "py.feature", "login role") as s, engine.schema(template, "py.feature", "other") as other:
            assert "options=" not in s.url
            for dsn in (s.url, s.conninfo):
                with psycopg.connect(dsn) as conn:
                    user, schema = conn.execute("select current_user, current_schema()").fetchone()
                    assert user.startswith("pgir_") and schema == s.name
                    with pytest.raises(psycopg.errors.InsufficientPrivilege):
                        conn.execute(f'select count(*) from "{other.name}".users')

            async def via_asyncpg():
                conn = await asyncpg.connect(s.url)
                try:
                    assert await conn.fetchval("select current_schema()") == s.name
                finally:
                    await conn.close()

            asyncio.run(via_asyncpg())


def test_context_manager_keeps_a_failed_block_under_keep_failed(migrations_dir):
    with pgisolate.Engine(keep="failed", gc_on_start=False) as e:
        tpl = e.template(migrations_dir)
        with pytest.raises(RuntimeError):
            with e.schema(tpl, "py.feature", "fails") as s:
                raise RuntimeError("boom")
        kept = [x for x in e.list() if x["schema"] == s.name]
        assert kept and kept[0]["state"] == "kept"
        e.drop_schema(s.name)
        with e.schema(tpl, "py.feature", "passes") as ok:
            pass
        assert not [x for x in e.list() if x["schema"] == ok.name]


def test_template_built_by_the_callers_tool_once(engine, unique):
    calls = []

    def migrate(url):
        calls.append(url)
        with psycopg.connect(url) as conn:
            conn.execute("create table widgets (id serial primary key, label text unique)")
            conn.execute("insert into widgets (label) values ('seed')")

    tpl = engine.template(build=migrate, key=f"py-{unique}")
    again = engine.template(build=migrate, key=f"py-{unique}")
    assert len(calls) == 1 and tpl.built_here and not again.built_here and again.name == tpl.name
    with engine.schema(tpl, "py.feature", "widgets") as s, psycopg.connect(s.url) as conn:
        assert conn.execute("insert into widgets (label) values ('x') returning id").fetchone()[0] == 2
    with pytest.raises(pgisolate.MigrationError, match="division by zero") as info:
        engine.template(build=lambda url: 1 / 0 if url else None, key=f"py-bad-{unique}")
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    with pytest.raises(pgisolate.MigrationError, match="exploded"):

        def explode(url):
            raise ValueError("exploded")

        engine.template(build=explode, key=f"py-bad2-{unique}")


def test_the_gil_is_released_while_the_engine_waits(engine, unique):
    done = threading.Event()

    def slow_build():
        engine.template(sql=f"-- {unique}\nselect pg_sleep(0.5); create table t (id int);")
        done.set()

    t = threading.Thread(target=slow_build)
    t.start()
    spins = 0
    start = time.monotonic()
    while not done.is_set() and time.monotonic() - start < 10:
        spins += 1
    t.join()
    assert spins > 10_000, f"main thread barely ran while the engine worked ({spins} spins)"


def test_closed_engine_refuses_work(migrations_dir):
    e = pgisolate.Engine(gc_on_start=False)
    tpl = e.template(migrations_dir)
    e.close()
    e.close()
    with pytest.raises(pgisolate.ClosedError):
        e.schema(tpl, "py.feature", "after close")


OUTSIDE = ROOT / "tests" / "outside" / "audit"


def _left(engine, *names):
    with psycopg.connect(engine.url) as c:
        return c.execute(
            "select array(select nspname::text from pg_namespace where nspname = any(%s) or nspname like 'tpl\\_build\\_%%') "
            "|| array(select 'public.settings' where to_regclass('public.settings') is not null)",
            (list(names),),
        ).fetchone()[0]


def test_a_build_that_reaches_outside_its_schema_is_refused(engine):
    with pytest.raises(pgisolate.MigrationError) as info:
        engine.template(OUTSIDE)
    msg = str(info.value)
    for what in (
        "schema audit: created by the build; dropped",
        "table audit.events: created by the build; dropped",
        "table public.settings: created by the build; dropped",
        "function audit.log_user(): created by the build; dropped",
        "PGISOLATE_ISOLATION=database",
    ):
        assert what in msg, msg
    assert _left(engine, "audit") == []
    assert not [t for t in engine.templates() if str(OUTSIDE) in t["source"]]


def test_a_callers_build_that_reaches_outside_is_refused(engine, unique):
    def migrate(url):
        with psycopg.connect(url) as conn:
            conn.execute("create table users (id int)")
            conn.execute(f"create schema audit_{unique}")

    with pytest.raises(pgisolate.MigrationError, match=f"schema audit_{unique}: created by the build; dropped"):
        engine.template(build=migrate, key=f"py-outside-{unique}")
    assert _left(engine, f"audit_{unique}") == []


def test_isolation_database_gives_the_audit_app_a_database_per_test():
    """The audit migration set, refused in schema isolation, works in database isolation: 6
    tests at once register the same email, each in its own database with its own audit row and
    its own public.settings; released databases are dropped."""
    with pgisolate.Engine(isolation="database", gc_on_start=False) as e:
        tpl = e.template(OUTSIDE)

        def one(i):
            with e.schema(tpl, "py.database", f"registers alice {i}") as db:
                assert "search_path" not in db.url
                with psycopg.connect(db.url) as c:
                    c.execute("insert into users (email) values ('alice@example.com')")
                    c.execute("insert into public.settings (k, v) values ('py', %s)", (str(i),))
                    got = c.execute(
                        "select current_database(), (select count(*) from audit.events), "
                        "(select string_agg(v, ',') from public.settings)"
                    ).fetchone()
                return db.name, got

        threads, results = [], []
        for i in range(6):
            t = threading.Thread(target=lambda i=i: results.append(one(i)))
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
        assert len(results) == 6
        for name, (db, audit, settings) in results:
            assert db == name and audit == 1, (name, db, audit)
        assert sorted(settings for _, (_, _, settings) in results) == [str(i) for i in range(6)]
        names = [name for name, _ in results]
        with psycopg.connect(e.url) as c:
            left = c.execute("select count(*) from pg_database where datname = any(%s)", (names,)).fetchone()[0]
        assert left == 0
