"""Alembic environment: async engines for both backends, batch mode for SQLite ALTERs."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

from mercato.db import Base, Database
from mercato.modules import load_models

load_models()
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _online(url: str) -> None:
    db = Database(url, pool_size=0)
    try:
        async with db.engine.connect() as conn:
            await conn.run_sync(_run)
            await conn.commit()
    finally:
        await db.dispose()


url = context.config.get_main_option("sqlalchemy.url")
assert url, "sqlalchemy.url must be set"
if context.is_offline_mode():
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_online(url))
