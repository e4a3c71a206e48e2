"""Alembic, driven from code: ``mercato migrate``, the start-up check, and the test fixtures."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from mercato.db import Database

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations. Blocking; inside a running event loop it runs on a helper thread,
    because Alembic's environment drives its own loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        command.upgrade(alembic_config(url), revision)
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(command.upgrade, alembic_config(url), revision).result()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def _current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


async def current_revision(db: Database) -> str | None:
    async with db.engine.connect() as conn:
        return await conn.run_sync(_current)


class NotMigrated(RuntimeError):
    pass


async def ensure_migrated(db: Database) -> None:
    """Refuse to run on a database whose schema is not at the latest migration."""
    current, head = await current_revision(db), head_revision()
    if current != head:
        state = "has no Mercato schema" if current is None else f"is at revision {current}"
        raise NotMigrated(
            f"The database {state}; this Mercato needs revision {head}. "
            "Run `mercato migrate` first."
        )
