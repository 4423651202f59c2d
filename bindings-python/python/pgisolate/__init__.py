"""pgisolate: one PostgreSQL schema per test, from a cached template of your migrations.

    import pgisolate
    with pgisolate.Engine() as engine:                      # embedded server unless a URL is set
        tpl = engine.template("migrations")                 # built once per server
        with engine.schema(tpl, "signup", "alice registers") as schema:
            psycopg.connect(schema.url)                     # lands in the schema
            redis.set(schema.cache_key("user:alice"), ...)

With pytest, use the ``isolated_schema`` fixture (the plugin loads automatically). In asyncio
code (pytest-asyncio, anyio on asyncio), ``async with engine.aschema(tpl, feature, scenario) as
schema:`` waits without blocking the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import warnings
from typing import Callable, Optional, Sequence, Union

from ._pgisolate import (
    BinariesNotFoundError,
    CacheError,
    ClosedError,
    ConfigError,
    ConnectError,
    ConnInfoError,
    DatabaseError,
    Engine as _NativeEngine,
    Error,
    FileError,
    InternalError,
    LeaseError,
    MigrationError,
    NameExhaustedError,
    OperationTimeoutError,
    RefusedError,
    Schema,
    ServerError,
    Template,
    TemplateBuild,
    __version__,
    cache_key,
    cache_prefix,
    check_setting,
    kept_line,
    settings,
    prisma_url,
    redact,
    schema_name,
    scoped_url,
)

class PgIsolateWarning(UserWarning):
    """A warning from the engine: a leaked connection, tables shadowed in the search_path
    tail, a fallback. Under pytest it is shown in the warnings summary (or fails the test
    with ``filterwarnings = error``)."""


__all__ = [
    "AsyncSchema",
    "PgIsolateWarning",
    "check_setting",
    "settings",
    "BinariesNotFoundError",
    "CacheError",
    "ClosedError",
    "ConfigError",
    "ConnInfoError",
    "ConnectError",
    "DatabaseError",
    "Engine",
    "Error",
    "FileError",
    "InternalError",
    "LeaseError",
    "MigrationError",
    "NameExhaustedError",
    "OperationTimeoutError",
    "RefusedError",
    "Schema",
    "ServerError",
    "Template",
    "TemplateBuild",
    "__version__",
    "cache_key",
    "cache_prefix",
    "kept_line",
    "prisma_url",
    "redact",
    "schema_name",
    "scoped_url",
]


class Engine(_NativeEngine):
    """The isolation engine (one per process). ``Engine(url=None)`` boots or reuses the
    embedded server when neither ``url`` nor ``PGISOLATE_DATABASE_URL`` is set. SQLAlchemy
    URLs (``postgresql+psycopg://…``) are accepted. Warnings are issued as
    :class:`PgIsolateWarning`."""

    def emit_warnings(self, stacklevel: int = 2) -> list:
        """Issues the engine's pending warnings as PgIsolateWarning; returns them."""
        pending = self.take_warnings()
        for message in pending:
            warnings.warn(message, PgIsolateWarning, stacklevel=stacklevel + 1)
        return pending

    def template(  # type: ignore[override]
        self,
        migrations=None,
        *,
        files=None,
        sql: Optional[str] = None,
        build: Optional[Callable[[str], object]] = None,
        key: Optional[str] = None,
        inputs: Optional[Sequence[Union[str, "os.PathLike[str]"]]] = None,
    ) -> Template:
        """A template from a migrations directory (plain numbered SQL, golang-migrate, sqlx,
        goose, dbmate, Flyway or Prisma layout), ``files=[...]`` or ``sql=...``; or, with
        ``build=callable``, built by your own migration tool (Alembic, Django, ...):
        ``build(url)`` migrates the database at ``url``. Give ``inputs=[paths]`` (the
        migrations directory, the tool's config) so any change to them builds a new template
        instead of reusing a stale one; ``key=`` adds a name or version. Built once per server."""
        return self._warning_after(self._template, migrations, files, sql, build, key, inputs)

    def _warning_after(self, call, *args):
        """``call(*args)``, then the engine's pending warnings; when the call raised, a warning
        turned into an error (filterwarnings = error) must not hide its exception."""
        try:
            result = call(*args)
        except BaseException:
            with contextlib.suppress(Warning):
                self.emit_warnings(stacklevel=4)
            raise
        self.emit_warnings(stacklevel=4)
        return result

    def _template(self, migrations, files, sql, build, key, inputs) -> Template:
        if build is None:
            if key is not None or inputs is not None:
                raise ConfigError("key= and inputs= go with build=")
            return super().template(migrations, files=files, sql=sql)
        if migrations is not None or files is not None or sql is not None:
            raise ConfigError("build= takes key= and/or inputs=, and no other source")
        return self.template_with(key or "", [os.fspath(p) for p in inputs or ()], build)

    def schema(self, template: Template, feature: str, scenario: str, discriminator: Optional[str] = None) -> Schema:
        """A fresh schema for (feature, scenario[, discriminator]); use it as a context manager."""
        return self._warning_after(self.acquire, template, feature, scenario, discriminator)

    def aschema(
        self, template: Template, feature: str, scenario: str, discriminator: Optional[str] = None
    ) -> "AsyncSchema":
        """:meth:`schema` for asyncio: ``schema = await engine.aschema(...)``, or
        ``async with engine.aschema(...) as schema:`` (released at the end, kept per the keep
        policy when the block raised). The engine works on its own threads; the event loop
        keeps running meanwhile."""
        return AsyncSchema(self, template, feature, scenario, discriminator)

    async def atemplate(self, migrations=None, **kwargs) -> Template:
        """:meth:`template` for asyncio (a first build can take a while)."""
        return await _in_thread(functools.partial(self.template, migrations, **kwargs))

    async def arelease(self, schema: Schema, failed: bool = False) -> bool:
        """Releases ``schema`` without blocking the event loop; returns whether it was kept."""
        return await _in_thread(functools.partial(self._warning_after, schema.release, failed))


async def _in_thread(call):
    """Runs a blocking engine call on the default executor (the GIL is released while the
    engine waits) and awaits it."""
    return await asyncio.get_running_loop().run_in_executor(None, call)


class AsyncSchema:
    """What :meth:`Engine.aschema` returns: await it for the Schema, or use it with
    ``async with``."""

    def __init__(self, engine: Engine, template: Template, feature: str, scenario: str, discriminator: Optional[str]):
        self._engine = engine
        self._args = (template, feature, scenario, discriminator)
        self._schema: Optional[Schema] = None

    async def _acquire(self) -> Schema:
        return await _in_thread(functools.partial(self._engine.schema, *self._args))

    def __await__(self):
        return self._acquire().__await__()

    async def __aenter__(self) -> Schema:
        self._schema = await self._acquire()
        return self._schema

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        if self._schema is not None:
            await self._engine.arelease(self._schema, failed=exc_type is not None)
        return False
