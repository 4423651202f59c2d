import os
import pathlib

import pytest

pytest_plugins = ["pytester"]

ROOT = pathlib.Path(__file__).resolve().parents[2]
MIGRATIONS = ROOT / "examples" / "migrations"
VECTORS = ROOT / "tests" / "vectors"


@pytest.fixture(scope="session")
def migrations_dir() -> pathlib.Path:
    return MIGRATIONS


@pytest.fixture(scope="session")
def engine():
    import pgisolate

    with pgisolate.Engine(gc_on_start=False) as e:
        yield e


@pytest.fixture(scope="session")
def template(engine):
    return engine.template(MIGRATIONS)


@pytest.fixture
def unique() -> str:
    return os.urandom(6).hex()
