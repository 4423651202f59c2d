"""96 tests, each in its own schema, each holding one connection of its own for 50 ms: what a
big runner's workers do to a server's connection slots."""

import os

import psycopg
import pytest


@pytest.mark.parametrize("n", range(96))
def test_a_test_with_its_own_connection(isolated_schema, n):
    with psycopg.connect(isolated_schema.url) as c:
        c.execute("insert into users (email) values (%s)", (f"user{n}@example.com",))
        c.execute("select pg_sleep(0.05)")
        assert c.execute("select current_schema()").fetchone()[0] == isolated_schema.name
        assert c.execute("select count(*) from users").fetchone()[0] == 1
        log = os.environ.get("BUDGET_SPREAD_LOG")
        if log:  # which server each worker's tests ran on (tests/budget/run.sh, case 4)
            with open(log, "a") as f:
                f.write(f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')} {c.info.port}\n")
