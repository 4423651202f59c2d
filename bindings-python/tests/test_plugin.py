"""The pytest plugin, run in real pytest subprocesses (pytester)."""

import os
import re
import textwrap

import pytest

import pgisolate
from conftest import MIGRATIONS

MIG = f"--pgisolate-migrations={MIGRATIONS}"


def summary(result):
    line = [l for l in result.outlines if l.startswith("pgisolate: ")]
    assert line, "no pgisolate summary line:\n" + result.stdout.str()
    return line[-1]


def test_each_test_gets_its_own_schema_named_from_its_node_id(pytester):
    pytester.makepyfile(
        test_signup="""
        import psycopg, pytest, pgisolate

        @pytest.mark.parametrize("n", [1, 2])
        def test_register(isolated_schema, n, request):
            with psycopg.connect(isolated_schema.url) as conn:
                conn.execute("insert into users (email) values ('alice@example.com')")
                assert conn.execute("select count(*) from users").fetchone()[0] == 1
            module = request.node.nodeid.split("::")[0]
            assert isolated_schema.name == pgisolate.schema_name("test_", 8, module, request.node.nodeid)
            assert isolated_schema.cache_key("k") == isolated_schema.name[5:] + "_k"

        def test_plain(isolated_schema):
            with psycopg.connect(isolated_schema.conninfo) as conn:
                conn.execute("insert into users (email) values ('alice@example.com')")
        """
    )
    result = pytester.runpytest_subprocess(MIG, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    assert re.match(r"pgisolate: 3 schemas created, acquire median [\d.]+ ms, p99 [\d.]+ ms, 0 kept, 0 leftovers", summary(result))


def test_keep_failed_keeps_only_the_failing_tests_schema(pytester, engine):
    pytester.makepyfile(
        test_keep="""
        def test_fails(isolated_schema):
            print("SCHEMA", isolated_schema.name)
            assert False, "deliberate"

        def test_passes(isolated_schema):
            print("SCHEMA", isolated_schema.name)
        """
    )
    result = pytester.runpytest_subprocess(MIG, "--pgisolate-keep=failed", "-s")
    result.assert_outcomes(passed=1, failed=1)
    names = re.findall(r"SCHEMA (\w+)", result.stdout.str())
    kept = {e["schema"] for e in engine.list() if e["state"] == "kept"}
    assert names[0] in kept and names[1] not in kept
    assert "1 kept, 0 leftovers" in summary(result)
    engine.drop_schema(names[0])


def test_missing_migrations_is_a_clear_error(pytester):
    pytester.makepyfile(test_x="def test_x(isolated_schema): pass")
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*--pgisolate-migrations*pgisolate_migrations*pgisolate_template*"])


def test_factory_gives_module_scoped_and_extra_schemas(pytester):
    pytester.makeini(f"[pytest]\npgisolate_migrations = {MIGRATIONS}\n")
    pytester.makepyfile(
        test_scopes="""
        import psycopg, pytest

        @pytest.fixture(scope="module")
        def module_schema(isolated_schema_factory, request):
            with isolated_schema_factory(request.module.__name__, "module") as s:
                yield s

        def test_first(module_schema):
            with psycopg.connect(module_schema.url) as conn:
                conn.execute("insert into users (email) values ('m@example.com')")

        def test_second_sees_the_module_schema(module_schema):
            with psycopg.connect(module_schema.url) as conn:
                assert conn.execute("select count(*) from users").fetchone()[0] == 1

        def test_two_more(isolated_schema_factory, isolated_schema):
            a = isolated_schema_factory("f", "a")
            b = isolated_schema_factory("f", "a")
            assert len({a.name, b.name, isolated_schema.name}) == 3
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=3)
    assert "4 schemas created" in summary(result) and "0 leftovers" in summary(result)


def test_template_fixture_can_run_the_projects_own_migrations(pytester, unique):
    pytester.makeconftest(
        f"""
        import psycopg, pytest

        @pytest.fixture(scope="session")
        def pgisolate_template(pgisolate_engine):
            def migrate(url):
                with psycopg.connect(url) as conn:
                    conn.execute("create table notes (id serial primary key, body text not null)")
            return pgisolate_engine.template(build=migrate, key="notes-{unique}")
        """
    )
    pytester.makepyfile(
        test_notes="""
        import psycopg

        def test_notes(isolated_schema):
            with psycopg.connect(isolated_schema.url) as conn:
                assert conn.execute("insert into notes (body) values ('x') returning id").fetchone()[0] == 1
        """
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=1)


def test_xdist_one_server_one_template_build(pytester, unique, tmp_path):
    mig = tmp_path / "migrations"
    mig.mkdir()
    (mig / "001.sql").write_text(f"-- {unique}\ncreate table users (id serial primary key, email text unique);\nselect pg_sleep(0.3);")
    out = tmp_path / "out"
    out.mkdir()
    pytester.makepyfile(
        test_par=f"""
        import os, psycopg, pytest

        @pytest.mark.parametrize("i", range(12))
        def test_par(isolated_schema, pgisolate_engine, pgisolate_template, i):
            with psycopg.connect(isolated_schema.url) as conn:
                conn.execute("insert into users (email) values ('same@example.com')")
            worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
            with open(os.path.join({str(out)!r}, worker), "w") as f:
                f.write(f"{{pgisolate_engine.url}} {{pgisolate_template.built_here}} {{os.getpid()}}")
        """
    )
    result = pytester.runpytest_subprocess("-n", "2", f"--pgisolate-migrations={mig}")
    result.assert_outcomes(passed=12)
    seen = [p.read_text().split() for p in out.iterdir()]
    assert len(seen) == 2, seen
    assert len({url for url, _, _ in seen}) == 1, f"workers used different servers: {seen}"
    assert sum(built == "True" for _, built, _ in seen) == 1, f"template built {seen}"
    assert "12 schemas created" in summary(result) and "0 leftovers" in summary(result)


def test_worker_schema_is_one_per_worker_for_tests_that_roll_back(pytester, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    pytester.makepyfile(
        test_rollback=f"""
        import os, psycopg, pytest

        @pytest.fixture
        def conn(isolated_worker_schema):
            with psycopg.connect(isolated_worker_schema.url) as c:
                yield c
                c.rollback()  # each test's own isolation: nothing it wrote survives

        @pytest.mark.parametrize("i", range(8))
        def test_same_email(conn, isolated_worker_schema, i):
            conn.execute("insert into users (email) values ('alice@example.com')")
            assert conn.execute("select count(*) from users").fetchone()[0] == 1
            worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
            with open(os.path.join({str(out)!r}, f"{{worker}}-{{i}}"), "w") as f:
                f.write(isolated_worker_schema.name)
        """
    )
    result = pytester.runpytest_subprocess("-n", "2", MIG)
    result.assert_outcomes(passed=8)
    by_worker = {}
    for p in out.iterdir():
        by_worker.setdefault(p.name.split("-")[0], set()).add(p.read_text())
    assert len(by_worker) == 2 and all(len(v) == 1 for v in by_worker.values()), by_worker
    names = [next(iter(v)) for v in by_worker.values()]
    assert names[0] != names[1], "two workers shared a schema"
    assert "2 schemas created" in summary(result) and "0 leftovers" in summary(result)


def test_a_killed_worker_is_reaped_and_the_next_run_is_green(pytester, engine):
    pytester.makepyfile(
        test_killme="""
        import os, signal, psycopg, pytest

        @pytest.mark.parametrize("i", range(6))
        def test_work(isolated_schema, i):
            with psycopg.connect(isolated_schema.url) as conn:
                conn.execute("insert into users (email) values ('same@example.com')")
            if i == 3 and os.environ.get("KILL_WORKER") == "1":
                os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    os.environ["KILL_WORKER"] = "1"
    try:
        first = pytester.runpytest_subprocess("-n", "2", MIG)
    finally:
        del os.environ["KILL_WORKER"]
    assert first.ret != 0
    first.stdout.fnmatch_lines(["*crashed*"])
    second = pytester.runpytest_subprocess("-n", "2", MIG)
    second.assert_outcomes(passed=6)
    left = [e for e in engine.list() if "test_killme" in e["identity"]]
    assert not left, f"left behind: {left}"


def test_every_setting_is_an_ini_key_and_a_flag(pytester, engine):
    """The core's settings table, through pytest: ini keys, flags beating them, bad values as
    usage errors."""
    keys = [k for k, _, _ in pgisolate.settings()]
    assert {"keep", "hash_len", "pool_size", "login_role", "extensions", "redis_url"} <= set(keys)
    help_text = pytester.runpytest_subprocess("--help").stdout.str()
    for key in keys:
        assert f"--pgisolate-{key.replace('_', '-')}" in help_text, key
        assert f"pgisolate_{key} " in help_text or f"pgisolate_{key}(" in help_text, key
    pytester.makeini(
        f"""
        [pytest]
        pgisolate_migrations = {MIGRATIONS}
        pgisolate_hash_len = 12
        pgisolate_keep = failed
        pgisolate_prefix = ini_
        """
    )
    pytester.makepyfile(
        test_settings="""
        def test_fails(isolated_schema):
            print("SCHEMA", isolated_schema.name)
            assert False, "deliberate"
        """
    )
    # The flag beats the ini's prefix; hash_len and keep come from the ini.
    result = pytester.runpytest_subprocess("--pgisolate-prefix=flag_", "-s")
    result.assert_outcomes(failed=1)
    name = re.search(r"SCHEMA (\w+)", result.stdout.str()).group(1)
    assert name.startswith("flag_") and len(name) == len("flag_") + 12, name
    assert name in {e["schema"] for e in engine.list() if e["state"] == "kept"}
    engine.drop_schema(name)
    bad = pytester.runpytest_subprocess("--pgisolate-hash-len=99")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    assert "pgisolate" in bad.stderr.str() and "hash" in bad.stderr.str()


def test_the_marker_picks_the_template_and_widens_the_scope(pytester, unique):
    pytester.makeconftest(
        f"""
        import pytest

        @pytest.fixture(scope="session")
        def other_template(pgisolate_engine):
            return pgisolate_engine.template(sql="-- {unique}\\ncreate table other (id int);")
        """
    )
    pytester.makepyfile(
        test_marker="""
        import psycopg, pytest

        names = []

        @pytest.mark.pgisolate(template="other_template")
        def test_other_template(isolated_schema):
            with psycopg.connect(isolated_schema.url) as conn:
                assert conn.execute("select to_regclass('other') is not null, to_regclass('users') is null").fetchone() == (True, True)

        @pytest.mark.pgisolate(scope="module")
        class TestShared:
            def test_first(self, isolated_schema):
                names.append(isolated_schema.name)
                with psycopg.connect(isolated_schema.url) as conn:
                    conn.execute("insert into users (email) values ('shared@example.com')")

            def test_second_sees_the_first(self, isolated_schema):
                names.append(isolated_schema.name)
                with psycopg.connect(isolated_schema.url) as conn:
                    assert conn.execute("select count(*) from users").fetchone()[0] == 1

        def test_unmarked_is_its_own(isolated_schema):
            assert names[0] == names[1] and isolated_schema.name != names[0]

        @pytest.mark.pgisolate(scope="weekly")
        def test_bad_scope(isolated_schema):
            pass
        """
    )
    result = pytester.runpytest_subprocess(MIG)
    result.assert_outcomes(passed=4, errors=1)
    assert "scope is one of function, module, session" in result.stdout.str()


def test_async_tests_and_the_async_api(pytester):
    pytester.makepyfile(
        test_async="""
        import asyncio, psycopg, pytest, pgisolate

        pytestmark = pytest.mark.asyncio

        async def test_fixture_in_an_async_test(isolated_schema):
            async with await psycopg.AsyncConnection.connect(isolated_schema.url) as conn:
                await conn.execute("insert into users (email) values ('a@example.com')")
                assert (await (await conn.execute("select count(*) from users")).fetchone())[0] == 1

        async def test_aschema_keeps_the_loop_running(pgisolate_engine, pgisolate_template):
            ticks = 0

            async def ticker():
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0)

            task = asyncio.create_task(ticker())
            async with pgisolate_engine.aschema(pgisolate_template, "async", "context manager") as schema:
                async with await psycopg.AsyncConnection.connect(schema.url) as conn:
                    await conn.execute("insert into users (email) values ('a@example.com')")
            name = schema.name
            s = await pgisolate_engine.aschema(pgisolate_template, "async", "awaited")
            assert s.name != name
            assert await pgisolate_engine.arelease(s) is False
            task.cancel()
            assert ticks > 0
            assert name not in {e["schema"] for e in pgisolate_engine.list()}
        """
    )
    result = pytester.runpytest_subprocess(MIG, "-o", "asyncio_default_fixture_loop_scope=function")
    result.assert_outcomes(passed=2)


def test_a_crashed_workers_schema_is_reported_and_reaped_at_the_end(pytester, engine):
    """The run's end (the core's report): a worker that dies holding a schema leaves it live
    with its owner gone; the controller says so, reaps it, and nothing is left."""
    pytester.makepyfile(
        test_crash="""
        import os

        def test_dies_holding_its_schema(isolated_schema):
            print("SCHEMA", isolated_schema.name, flush=True)
            os._exit(3)

        def test_passes(isolated_schema):
            pass
        """
    )
    result = pytester.runpytest_subprocess(MIG, "-n", "2", "-p", "no:randomly", "-s")
    lines = [l for l in result.outlines if l.startswith("pgisolate: ")]
    said = [l for l in lines if "were not released by their tests and were reaped" in l]
    assert said and said[0].startswith("pgisolate: 1 schema(s)"), "\n".join(result.outlines)
    assert any(re.search(r"\b0 leftovers", l) for l in lines), lines
    mine = [e for e in engine.list() if "test_dies_holding_its_schema" in e["identity"]]
    assert not mine, mine


def test_isolated_schema_in_database_isolation(pytester):
    """pgisolate_isolation = database through the plugin, with xdist: the audit app's tests each
    get a database of their own; nothing is left."""
    from conftest import ROOT

    pytester.makeini("[pytest]\npgisolate_isolation = database\n")
    pytester.makepyfile(
        test_db="""
        import psycopg, pytest

        @pytest.mark.parametrize("n", range(4))
        def test_register(isolated_schema, n):
            with psycopg.connect(isolated_schema.url) as c:
                c.execute("insert into users (email) values ('alice@example.com')")
                assert c.execute("select count(*) from audit.events").fetchone()[0] == 1
                assert c.execute("select current_database()").fetchone()[0] == isolated_schema.name
        """
    )
    audit = ROOT / "tests" / "outside" / "audit"
    result = pytester.runpytest_subprocess(f"--pgisolate-migrations={audit}", "-n", "2", "-p", "no:randomly")
    result.assert_outcomes(passed=4)
    assert "4 schemas created" in summary(result) and "0 leftovers" in summary(result)
    assert not [l for l in result.outlines if "holds no tables" in l]
