"""Opening the database: URL to async engine, SQLite pragmas, migrations to head."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from .repository import Store

log = structlog.get_logger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",  # readers never wait for the writer
    "PRAGMA synchronous=NORMAL",  # safe with WAL, far fewer fsyncs
    "PRAGMA foreign_keys=ON",  # cascades and SET NULL need it, per connection
    "PRAGMA busy_timeout=5000",  # wait for a concurrent writer instead of failing
)


def async_url(url: str) -> URL:
    """Put the async driver into plain `sqlite://` and `postgresql://` URLs."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    if parsed.drivername in ASYNC_DRIVERS:
        parsed = parsed.set(drivername=ASYNC_DRIVERS[parsed.drivername])
    return parsed


def is_memory(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def alembic_config(url: URL | None = None) -> Config:
    """Alembic set up in code: no alembic.ini is needed at runtime."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        config.set_main_option(
            "sqlalchemy.url", url.render_as_string(hide_password=False).replace("%", "%%")
        )
    return config


def create_engine(url: str) -> AsyncEngine:
    parsed = async_url(url)
    options: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if is_memory(parsed):
            # One shared connection, or every session would see its own empty database.
            options["poolclass"] = StaticPool
        elif parsed.database and not parsed.database.startswith("file:"):
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    else:
        options["pool_pre_ping"] = True
    engine = create_async_engine(parsed, **options)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", set_sqlite_pragmas)
    return engine


def set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


def upgrade_to_head(connection: Connection, url: URL) -> None:
    """Run inside `AsyncConnection.run_sync`: Alembic gets a sync-looking connection while the
    I/O stays async, so this works inside a running event loop."""
    config = alembic_config(url)
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def migrate(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(upgrade_to_head, engine.url)


async def open_store(url: str) -> Store:
    """Open (and create or upgrade) the database at `url`: `sqlite:///path` or
    `postgresql://...`, with or without an explicit async driver."""
    engine = create_engine(url)
    try:
        await migrate(engine)
    except BaseException:
        await engine.dispose()
        raise
    log.info("store.opened", url=engine.url.render_as_string(hide_password=True))
    return Store(engine)
