import psycopg
import pytest

# One process-wide cache, as an app would have: keys must carry the test's prefix.
CACHE = {}


@pytest.mark.parametrize("n", range(200))
def test_register_alice(isolated_schema, n):
    key = isolated_schema.cache_key("user:alice")
    assert key not in CACHE, "another test's cache entry leaked in"
    with psycopg.connect(isolated_schema.url) as conn:
        user_id = conn.execute(
            "insert into users (email, name) values ('alice@example.com', %s) returning id", (f"run {n}",)
        ).fetchone()[0]
        assert user_id == 1, "the sequence was shared with another test"
        assert conn.execute("select count(*) from users").fetchone()[0] == 1
        assert conn.execute("select count(*) from roles").fetchone()[0] == 3  # seed rows
    CACHE[key] = user_id
