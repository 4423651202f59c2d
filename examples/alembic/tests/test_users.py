"""Every test creates the same first superuser: without isolation, the second one (or the
other xdist worker) fails on the unique email."""

import pytest
from sqlalchemy import func, select, text

from app import settings
from app.models import Item, User


@pytest.mark.parametrize("n", range(20))
def test_first_superuser_is_created_once_per_schema(session, isolated_schema, n):
    user = User(email=settings.FIRST_SUPERUSER, is_superuser=True, full_name=f"Admin {n}")
    session.add(user)
    session.commit()
    assert user.id is not None  # uuid_generate_v4() from schema extensions
    session.add(Item(title=f"item {n}", owner_id=user.id))
    session.commit()
    assert session.scalar(select(func.count()).select_from(User)) == 1
    assert session.scalar(select(func.count()).select_from(Item)) == 1
    assert session.scalar(text("select current_schema()")) == isolated_schema.name


def test_the_template_is_the_alembic_history_at_head(session, pgisolate_template):
    assert session.scalar(text("select version_num from alembic_version")) == "1a31ce608336"
    tables = set(session.scalars(text("select tablename from pg_tables where schemaname = current_schema()")))
    assert tables == {"alembic_version", "user", "item"}
    ext_schema = session.scalar(
        text("select n.nspname from pg_extension e join pg_namespace n on n.oid = e.extnamespace where extname = 'uuid-ossp'")
    )
    assert ext_schema == "extensions"
    assert '"user"' in pgisolate_template.tables
