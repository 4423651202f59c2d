"""pgisolate: one PostgreSQL schema per test, from a cached template of your migrations.

    import pgisolate
    with pgisolate.Engine() as engine:                      # embedded server unless a URL is set
        tpl = engine.template("migrations")                 # built once per server
        with engine.schema(tpl, "signup", "alice registers") as schema:
            psycopg.connect(schema.url)                     # lands in the schema
            redis.set(schema.cache_key("user:alice"), ...)

With pytest, use the ``isolated_schema`` fixture (the plugin loads automatically).
"""

from __future__ import annotations

from typing import Callable, Optional

from ._pgisolate import (
    BinariesNotFoundError,
    ClosedError,
    ConfigError,
    ConnectError,
    ConnInfoError,
    DatabaseError,
    Engine as _NativeEngine,
    Error,
    FileError,
    MigrationError,
    NameExhaustedError,
    OperationTimeout,
    RefusedError,
    Schema,
    ServerError,
    Template,
    TemplateBuild,
    __version__,
    cache_key,
    cache_prefix,
    prisma_url,
    redact,
    schema_name,
    scoped_url,
)

__all__ = [
    "BinariesNotFoundError",
    "ClosedError",
    "ConfigError",
    "ConnInfoError",
    "ConnectError",
    "DatabaseError",
    "Engine",
    "Error",
    "FileError",
    "MigrationError",
    "NameExhaustedError",
    "OperationTimeout",
    "RefusedError",
    "Schema",
    "ServerError",
    "Template",
    "TemplateBuild",
    "__version__",
    "cache_key",
    "cache_prefix",
    "prisma_url",
    "redact",
    "schema_name",
    "scoped_url",
]


class Engine(_NativeEngine):
    """The isolation engine (one per process). ``Engine(url=None)`` boots or reuses the
    embedded server when neither ``url`` nor ``PGISOLATE_DATABASE_URL`` is set."""

    def template(  # type: ignore[override]
        self,
        migrations=None,
        *,
        files=None,
        sql: Optional[str] = None,
        build: Optional[Callable[[str], object]] = None,
        key: Optional[str] = None,
    ) -> Template:
        """A template from a migrations directory, ``files=[...]`` or ``sql=...``; or, with
        ``build=callable`` and ``key="version"``, built by your own migration tool (Alembic,
        Django, ...): ``build(url)`` migrates the database at ``url``. Built once per server."""
        if build is None:
            if key is not None:
                raise ConfigError("key= goes with build=")
            return super().template(migrations, files=files, sql=sql)
        if key is None or migrations is not None or files is not None or sql is not None:
            raise ConfigError("build= needs key= (the migrations' version) and no other source")
        started = self.template_begin(key)
        if isinstance(started, Template):
            return started
        try:
            build(started.url)
        except BaseException as exc:
            started.abort()
            raise MigrationError(f"template {key!r}: {exc}") from exc
        return started.commit()

    def schema(self, template: Template, feature: str, scenario: str, discriminator: Optional[str] = None) -> Schema:
        """A fresh schema for (feature, scenario[, discriminator]); use it as a context manager."""
        return self.acquire(template, feature, scenario, discriminator)
