"""A revision that reaches outside the schema it migrates (an `audit` schema, a table in
public): the template is refused, naming each object, and nothing of it is left behind."""

import shutil
import uuid

import psycopg
import pytest

import pgisolate
import pgisolate.alembic

from conftest import HERE

AUDIT_REVISION = '''"""Add an audit schema

Revision ID: a0d1700000{n}
Revises: 1a31ce608336
"""
from alembic import op

revision = "a0d1700000{n}"
down_revision = "1a31ce608336"
branch_labels = None
depends_on = None


def upgrade():
    op.execute("create schema audit_{u}")
    op.execute("create table audit_{u}.events (id bigserial primary key, what text not null)")
    op.execute("create table public.settings_{u} (k text primary key, v text)")


def downgrade():
    op.execute("drop schema audit_{u} cascade")
'''


def test_an_alembic_revision_that_reaches_outside_is_refused(pgisolate_engine, tmp_path):
    u = uuid.uuid4().hex[:10]
    shutil.copytree(HERE / "alembic", tmp_path / "alembic", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(HERE / "alembic.ini", tmp_path / "alembic.ini")
    (tmp_path / "alembic" / "versions" / f"a0d1700000{u[:2]}_audit.py").write_text(AUDIT_REVISION.format(u=u, n=u[:2]))
    with pytest.raises(pgisolate.MigrationError) as info:
        pgisolate.alembic.template(pgisolate_engine, tmp_path / "alembic.ini")
    msg = str(info.value)
    for what in (
        f"schema audit_{u}: created by the build; dropped",
        f"table audit_{u}.events: created by the build; dropped",
        f"table public.settings_{u}: created by the build; dropped (create it unqualified",
        "PGISOLATE_ISOLATION=database",
    ):
        assert what in msg, msg
    with psycopg.connect(pgisolate_engine.url) as c:
        assert c.execute("select to_regnamespace(%s)", (f"audit_{u}",)).fetchone()[0] is None
        assert c.execute("select to_regclass(%s)", (f"public.settings_{u}",)).fetchone()[0] is None
