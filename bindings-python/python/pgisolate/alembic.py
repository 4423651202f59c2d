"""Templates from an Alembic history, with the ``env.py`` Alembic generated.

    import pgisolate.alembic

    @pytest.fixture(scope="session")
    def pgisolate_template(pgisolate_engine):
        return pgisolate.alembic.template(pgisolate_engine, "alembic.ini")

The generated ``env.py`` usually ignores any URL it is handed: it reads ``sqlalchemy.url`` from
``alembic.ini`` or, in most real projects, the application's settings. While the upgrade runs,
every connection SQLAlchemy opens (psycopg, psycopg2 or asyncpg) is pointed at the template
build instead, so the migrations land in the build schema whatever ``env.py`` does, and
``alembic_version`` goes there too. ``env.py``'s ``fileConfig(...)`` call is skipped, so the
test process keeps its logging (pytest's capture, caplog) as it was.

The template's key is the content of ``alembic.ini`` and the script directory (``versions/``
included): change a migration and the next run builds a new template; old ones are pruned.
"""

from __future__ import annotations

import contextlib
import logging.config
import os
from typing import Any, Iterator, List, Optional, Sequence, Union

from . import ConfigError, Engine, Template

_PathLike = Union[str, "os.PathLike[str]"]


def _libpq_params(url: str) -> dict:
    from psycopg.conninfo import conninfo_to_dict

    return {k: v for k, v in conninfo_to_dict(url).items() if v is not None}


def _connect_params(driver: str, url: str) -> tuple:
    """(positional args, keyword args) for the DBAPI driver's connect() to reach ``url``."""
    params = _libpq_params(url)
    if driver in ("psycopg", "psycopg_async"):
        from psycopg.conninfo import make_conninfo

        return [], {"conninfo": make_conninfo(**params)}
    if driver == "psycopg2":
        from psycopg.conninfo import make_conninfo

        return [], {"dsn": make_conninfo(**params)}
    if driver == "asyncpg":
        options = params.get("options", "")
        path = ""
        for token in options.split():
            if token.startswith("search_path="):
                path = token[len("search_path="):]
        settings = {"search_path": path.replace("\\,", ","), "application_name": params.get("application_name", "")}
        kw = {
            "host": params.get("host"),
            "port": int(params["port"]) if params.get("port") else None,
            "user": params.get("user"),
            "password": params.get("password"),
            "database": params.get("dbname"),
            "server_settings": {k: v for k, v in settings.items() if v},
        }
        return [], {k: v for k, v in kw.items() if v is not None}
    raise ConfigError(
        f"pgisolate.alembic cannot redirect SQLAlchemy driver {driver!r}: use psycopg, psycopg2 or asyncpg"
    )


@contextlib.contextmanager
def redirect_connections(url: str) -> Iterator[None]:
    """Inside the block, every connection any SQLAlchemy engine opens goes to ``url`` (a
    libpq URL with its search_path in ``options``), whatever URL the engine was made with."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine as SAEngine

    def do_connect(dialect: Any, conn_rec: Any, cargs: list, cparams: dict) -> None:
        args, kwargs = _connect_params(dialect.driver, url)
        cargs[:] = args
        cparams.clear()
        cparams.update(kwargs)

    event.listen(SAEngine, "do_connect", do_connect)
    try:
        yield
    finally:
        event.remove(SAEngine, "do_connect", do_connect)


@contextlib.contextmanager
def keep_logging() -> Iterator[None]:
    """env.py's ``fileConfig(config.config_file_name)`` would reconfigure (and disable) the
    test process's loggers: it is a no-op inside the block."""
    original = logging.config.fileConfig
    logging.config.fileConfig = lambda *a, **k: None  # type: ignore[assignment]
    try:
        yield
    finally:
        logging.config.fileConfig = original  # type: ignore[assignment]


def _config(ini: _PathLike, url: str, section: str = "alembic") -> Any:
    from alembic.config import Config

    path = os.fspath(ini)
    if not os.path.isfile(path):
        raise ConfigError(f"Alembic config {path!r} not found: pass the path of your alembic.ini")
    cfg = Config(path, ini_section=section)
    # For env.py files that do use it; '%' is configparser's interpolation character.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, ini: _PathLike = "alembic.ini", revision: str = "head", *, section: str = "alembic") -> None:
    """Runs ``alembic upgrade <revision>`` into the database and schema of ``url`` (a template
    build's URL), whatever ``env.py`` reads its URL from."""
    from alembic import command

    cfg = _config(ini, url, section)
    with keep_logging(), redirect_connections(url):
        command.upgrade(cfg, revision)


def inputs(ini: _PathLike = "alembic.ini", *, section: str = "alembic") -> List[str]:
    """What the template depends on: ``alembic.ini`` and the script directory."""
    from alembic.script import ScriptDirectory

    cfg = _config(ini, "postgresql://unused", section)
    script_dir = ScriptDirectory.from_config(cfg).dir
    return [os.fspath(ini), script_dir]


def template(
    engine: Engine,
    ini: _PathLike = "alembic.ini",
    revision: str = "head",
    *,
    section: str = "alembic",
    extra_inputs: Optional[Sequence[_PathLike]] = None,
) -> Template:
    """The template of the Alembic history at ``revision``, built once per server and rebuilt
    when ``alembic.ini`` or a file of the script directory changes."""
    paths: List[Any] = [*inputs(ini, section=section), *(extra_inputs or [])]
    return engine.template(
        build=lambda url: upgrade(url, ini, revision, section=section),
        key=f"alembic {revision}",
        inputs=paths,
    )
