"""A user's suite against the installed wheel: every test registers the same email, which
only passes if each test has a schema of its own (pytest -n 2, the isolated_schema fixture)."""

import psycopg
import pytest

import pgisolate


@pytest.mark.parametrize("n", range(12))
def test_alice_registers(isolated_schema, n):
    with psycopg.connect(isolated_schema.url) as conn:
        conn.execute("insert into users (email) values ('alice@example.com')")
        (schema,) = conn.execute("select current_schema()").fetchone()
        assert schema == isolated_schema.name
        assert conn.execute("select count(*) from users").fetchone() == (1,)


def test_the_installed_package_is_used():
    assert "site-packages" in pgisolate.__file__, pgisolate.__file__
