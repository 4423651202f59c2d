"""The adoption story: a dev database already migrated into public (real `alembic upgrade
head`, uuid-ossp in public), then pgisolate pointed at it. Never an empty template: a clear
error, and once its hint is followed, real isolation with a warning naming the shadowed tables."""

import pathlib
import uuid

import psycopg
import pytest
from alembic import command
from alembic.config import Config
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.engine import URL

import pgisolate
import pgisolate.alembic
from app import settings

INI = pathlib.Path(__file__).parent.parent / "alembic.ini"


@pytest.fixture
def dev_database(pgisolate_engine, monkeypatch):
    """A database of its own, migrated the way developers do it, and the app's settings
    pointing at it (as the app's .env would)."""
    name = f"dev_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pgisolate_engine.url, autocommit=True) as admin:
        admin.execute(f"create database {name}")
    p = conninfo_to_dict(pgisolate_engine.url)
    sa_url = URL.create(
        "postgresql+psycopg", username=p.get("user"), password=p.get("password"), host=p.get("host"),
        port=int(p["port"]), database=name,
    ).render_as_string(hide_password=False)
    monkeypatch.setattr(settings, "DATABASE_URL", sa_url)
    with pgisolate.alembic.keep_logging():
        command.upgrade(Config(str(INI)), "head")  # env.py reads settings: lands in public
    yield sa_url
    with psycopg.connect(pgisolate_engine.url, autocommit=True) as admin:
        admin.execute(f"drop database {name} with (force)")


def public_rows(sa_url, table):
    with psycopg.connect(sa_url.replace("postgresql+psycopg://", "postgresql://")) as c:
        return c.execute(f'select count(*) from public."{table}"').fetchone()[0]


def test_pointed_at_the_migrated_dev_database(dev_database):
    # The settings' URL form (postgresql+psycopg://) is accepted as it is.
    with pgisolate.Engine(dev_database, gc_on_start=False) as engine:
        # 1. Alembic run as the project runs it (env.py reads its own settings) finds
        #    public.alembic_version at head and does nothing: refused, never published.
        def naive(url):
            with pgisolate.alembic.keep_logging():
                command.upgrade(Config(str(INI)), "head")

        with pytest.warns(pgisolate.PgIsolateWarning, match="public is writable"), pytest.raises(
            pgisolate.MigrationError, match=r"(?s)empty.*public\.alembic_version"
        ):
            engine.template(build=naive, key="naive")
        assert engine.templates() == []

        # 2. With the helper the migrations run in the build, but uuid-ossp lives in public,
        #    which a build cannot see: a clear error naming the extension and the fixes.
        with pytest.raises(pgisolate.MigrationError, match=r"(?s)uuid_generate_v4.*uuid-ossp \(in public\).*database of their own"):
            pgisolate.alembic.template(engine, INI)
        assert engine.templates() == []

    # 3. Following the hint (move the extension; the app keeps it on its search_path):
    #    real isolation. With no extension left in public, public (writable by this role)
    #    is not in the tests' search_path either, so nothing can fall through to it.
    with psycopg.connect(dev_database.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as c:
        db = c.execute("select current_database()").fetchone()[0]
        c.execute('create schema extensions; alter extension "uuid-ossp" set schema extensions')
        c.execute(f"alter database {db} set search_path = public, extensions")
    with pgisolate.Engine(dev_database, gc_on_start=False) as engine:
        tpl = pgisolate.alembic.template(engine, INI)
        assert '"user"' in tpl.tables
        schema = engine.schema(tpl, "dev database", "first superuser")
        with schema, psycopg.connect(schema.url) as c:
            assert "public" not in c.execute("show search_path").fetchone()[0]
            c.execute("insert into \"user\" (email) values (%s)", (settings.FIRST_SUPERUSER,))
            c.commit()
            assert c.execute("select current_schema()").fetchone()[0] == schema.name
        assert public_rows(dev_database, "user") == 0, "public untouched"


def test_a_database_of_its_own_just_works(pgisolate_engine):
    # The recommended setup: a test database (here the embedded server's), uuid-ossp made by
    # the first migration and moved to schema extensions, alembic_version in each schema.
    tpl = pgisolate.alembic.template(pgisolate_engine, INI)
    with pgisolate_engine.schema(tpl, "own database", "a") as s, psycopg.connect(s.url) as c:
        assert c.execute("select version_num from alembic_version").fetchone()[0] == "1a31ce608336"
        assert c.execute("select uuid_generate_v4() is not null").fetchone()[0]
