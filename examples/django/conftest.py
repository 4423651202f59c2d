"""pytest-django with pgisolate: the template is `migrate` run once per server (keyed by the
migrations' content), each xdist worker gets a schema of its own, and pytest-django's
per-test transaction rolls back inside it."""

import pathlib

import pytest

import pgisolate.django

HERE = pathlib.Path(__file__).parent


@pytest.fixture(scope="session")
def django_db_setup(django_db_blocker, pgisolate_engine):
    with django_db_blocker.unblock():
        with pgisolate.django.worker_schema(pgisolate_engine, inputs=[HERE / "shop" / "migrations"]) as schema:
            yield schema
