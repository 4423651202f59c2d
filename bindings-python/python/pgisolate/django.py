"""Django (with pytest-django): a template from ``manage.py migrate``, a schema per worker.

    # conftest.py
    import pgisolate.django

    @pytest.fixture(scope="session")
    def django_db_setup(django_db_blocker, pgisolate_engine):
        with django_db_blocker.unblock():
            with pgisolate.django.worker_schema(pgisolate_engine, inputs=["app/migrations"]):
                yield

pytest-django then wraps each test in a transaction that is rolled back, inside this
worker's own schema (``pytest -n auto`` gives each worker its own). ``DATABASES`` is pointed
at the schema through libpq's ``options`` (``-c search_path=<schema>``), so every connection
Django opens lands there.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Dict, Iterator, Optional, Sequence, Union

from . import Engine, Schema, Template

_PathLike = Union[str, "os.PathLike[str]"]


def database_settings(url: str, base: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """A ``DATABASES`` entry for ``url`` (a schema's or a template build's): ``base`` with
    NAME, USER, PASSWORD, HOST, PORT and OPTIONS (options, application_name) replaced."""
    from psycopg.conninfo import conninfo_to_dict

    params = {k: v for k, v in conninfo_to_dict(url).items() if v is not None}
    out = dict(base or {})
    out.update(
        {
            "ENGINE": out.get("ENGINE", "django.db.backends.postgresql"),
            "NAME": params.get("dbname", ""),
            "USER": params.get("user", ""),
            "PASSWORD": params.get("password", ""),
            "HOST": params.get("host", ""),
            "PORT": params.get("port", ""),
        }
    )
    options = dict(out.get("OPTIONS") or {})
    for key in ("options", "application_name"):
        if key in params:
            options[key] = params[key]
    out["OPTIONS"] = options
    # The schema is the test database: pytest-django must not create another one.
    out["TEST"] = {**(out.get("TEST") or {}), "NAME": params.get("dbname", "")}
    return out


def use(url: str, alias: str = "default") -> None:
    """Points Django's connection ``alias`` at ``url`` (closing the open one)."""
    from django.db import connections

    connections[alias].close()
    settings = connections.databases[alias]
    new = database_settings(url, settings)
    settings.clear()
    settings.update(new)


def migrate(url: str, alias: str = "default") -> None:
    """Runs ``migrate`` into the database and schema of ``url`` (a template build's URL)."""
    from django.core.management import call_command
    from django.db import connections

    saved = dict(connections.databases[alias])
    use(url, alias)
    try:
        call_command("migrate", database=alias, interactive=False, verbosity=0)
    finally:
        connections[alias].close()
        connections.databases[alias].clear()
        connections.databases[alias].update(saved)


def template(engine: Engine, inputs: Sequence[_PathLike], alias: str = "default") -> Template:
    """The template of the project's migrations, rebuilt when a file under ``inputs`` (the
    apps' ``migrations`` directories) changes."""
    return engine.template(build=lambda url: migrate(url, alias), key="django migrate", inputs=list(inputs))


@contextlib.contextmanager
def worker_schema(
    engine: Engine, inputs: Sequence[_PathLike], alias: str = "default", template_: Optional[Template] = None
) -> Iterator[Schema]:
    """This process's schema (one per pytest-xdist worker), with ``DATABASES[alias]`` pointed
    at it for the block; released at the end."""
    tpl = template_ or template(engine, inputs, alias)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with engine.schema(tpl, "django", worker) as schema:
        use(schema.url, alias)
        try:
            yield schema
        finally:
            from django.db import connections

            connections.close_all()
