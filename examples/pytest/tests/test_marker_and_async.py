"""The marker and the async API, as a project would use them."""

import psycopg
import pytest

from app.models import Account, register


@pytest.mark.pgisolate(scope="module")
class TestOnboardingShareOneSchema:
    """Steps of one story, in order, on one schema (the marker widens isolated_schema's scope)."""

    def test_alice_signs_up(self, session):
        register(session, "alice@example.com")

    def test_alice_is_still_there(self, session):
        assert session.query(Account).filter_by(email="alice@example.com").count() == 1


def test_but_other_tests_start_clean(session):
    assert session.query(Account).count() == 0


@pytest.mark.asyncio
async def test_an_async_test_gets_its_schema(isolated_schema):
    async with await psycopg.AsyncConnection.connect(isolated_schema.url) as conn:
        await conn.execute("insert into accounts (email) values ('async@example.com')")
        assert (await (await conn.execute("select count(*) from accounts")).fetchone())[0] == 1


@pytest.mark.asyncio
async def test_asyncio_code_makes_its_own_schemas(pgisolate_engine, pgisolate_template):
    async with pgisolate_engine.aschema(pgisolate_template, "async example", "one more") as schema:
        async with await psycopg.AsyncConnection.connect(schema.url) as conn:
            assert (await (await conn.execute("select count(*) from accounts")).fetchone())[0] == 0
