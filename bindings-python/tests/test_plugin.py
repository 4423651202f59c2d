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
