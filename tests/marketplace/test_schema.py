"""The marketplace migration creates exactly the schema the models describe."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from mercato.db import Base, Database
from mercato.modules import load_models

PREFIX = "marketplace_"


def _diff(conn: Connection) -> list[Any]:
    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        if type_ == "table":
            return bool(name and name.startswith(PREFIX))
        table = getattr(obj, "table", None)
        return table is None or str(table.name).startswith(PREFIX)

    context = MigrationContext.configure(
        conn, opts={"compare_type": True, "include_object": include}
    )
    return list(compare_metadata(context, Base.metadata))


async def test_migration_matches_models(db: Database) -> None:
    load_models()
    async with db.engine.connect() as conn:
        diff = await conn.run_sync(_diff)
    assert diff == []
