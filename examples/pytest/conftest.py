import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from app.migrate import VERSION, migrate, sqlalchemy_url


@pytest.fixture(scope="session")
def pgisolate_template(pgisolate_engine):
    """Build the template once per run (once for all xdist workers) with the app's own migration."""
    return pgisolate_engine.template(build=migrate, key=VERSION)


@pytest.fixture
def session(isolated_schema):
    """A SQLAlchemy session bound to this test's schema."""
    engine = create_engine(sqlalchemy_url(isolated_schema.url))
    with Session(engine) as s:
        yield s
    engine.dispose()
