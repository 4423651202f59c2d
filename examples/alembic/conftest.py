"""The only file a project changes to adopt pgisolate: the template comes from its own Alembic
history (alembic.ini + alembic/, keyed by their content), each test gets a schema."""

import pathlib

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

import pgisolate.alembic

HERE = pathlib.Path(__file__).parent


@pytest.fixture(scope="session")
def pgisolate_template(pgisolate_engine):
    return pgisolate.alembic.template(pgisolate_engine, HERE / "alembic.ini")


@pytest.fixture
def session(isolated_schema):
    engine = create_engine(isolated_schema.sqlalchemy_url())
    with Session(engine) as s:
        yield s
    engine.dispose()
