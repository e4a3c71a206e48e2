"""Which warehouse would serve a destination, and the handling days delivery estimates start
from: the column and its migration, the service, the command line."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection
from typer.testing import CliRunner, Result

from mercato.cli import app as cli_app
from mercato.db import Base, Database, UTCDateTime, utcnow
from mercato.inventory import service
from mercato.inventory.service import WAREHOUSES
from mercato.migrate import alembic_config, upgrade
from mercato.modules import load_models
from mercato.problems import Problem
from mercato.settings import Settings
from tests.inventory.conftest import Warehouses, new_variants, receive, snapshot


async def _days(db: Database, **changes: int) -> None:
    async with db.transaction() as uow:
        for code, days in changes.items():
            await service.set_handling_days(uow, code.upper(), days)


async def serving(
    db: Database, wanted: dict[str, int], country: str
) -> dict[str, tuple[tuple[str, ...], int]]:
    async with db.transaction() as uow:
        found = await service.serving_warehouses(uow, wanted, country)
    return {v: (s.warehouse_codes, s.handling_days) for v, s in found.items()}


async def test_the_warehouse_the_allocation_would_pick(
    db: Database, warehouses: Warehouses
) -> None:
    await _days(db, ber=1, lys=3, ldn=2)
    a, b, c = await new_variants(db, 3)
    await receive(db, a, "BER", 5)
    await receive(db, a, "LYS", 9)
    await receive(db, b, "LDN", 4)
    # France: both ship there, Lyon holds more.
    assert await serving(db, {a: 1}, "FR") == {a: (("LYS",), 3)}
    # Germany: only Berlin ships there.
    assert await serving(db, {a: 1}, "DE") == {a: (("BER",), 1)}
    # More than Berlin holds cannot go to Germany; nor can what is only in London.
    assert await serving(db, {a: 6, b: 1}, "DE") == {}
    # Ten to France: split between the two, so as slow as Lyon; nothing at all is unknown.
    assert await serving(db, {a: 10, b: 1, c: 1}, "fr") == {a: (("BER", "LYS"), 3)}
    assert await serving(db, {b: 2}, "GB") == {b: (("LDN",), 2)}
    assert await serving(db, {}, "GB") == {}


async def test_reserving_takes_from_the_warehouse_named(
    db: Database, warehouses: Warehouses
) -> None:
    (a,) = await new_variants(db)
    await receive(db, a, "BER", 3)
    await receive(db, a, "LYS", 4)
    predicted = await serving(db, {a: 2}, "FR")
    async with db.transaction() as uow:
        held = await service.reserve(uow, "co_1", [(a, 2)], "FR")
    assert predicted == {a: ((held[0].warehouse_code,), 1)}


async def test_handling_days_are_checked_before_anything_is_written(
    db: Database, warehouses: Warehouses
) -> None:
    assert {w.code: w.handling_days for w in warehouses.by_code.values()} == {
        "BER": 1,
        "LYS": 1,
        "LDN": 1,
    }
    before = await snapshot(db)
    for days in (-1, service.MAX_HANDLING_DAYS + 1, True):
        for attempt in ("create", "set"):
            try:
                async with db.transaction() as uow:
                    if attempt == "create":
                        await service.create_warehouse(
                            uow, code="NEW", name="New", countries=["DE"], handling_days=days
                        )
                    else:
                        await service.set_handling_days(uow, "BER", days)
            except Problem as exc:
                assert exc.status == 422
                assert exc.extra["errors"][0]["field"] == "handling_days"
            else:
                raise AssertionError(f"{attempt} accepted {days!r}")
    assert await snapshot(db) == before


# --------------------------------------------------------------------------------------------
# The command line


def _invoke(args: list[str]) -> Result:
    return CliRunner().invoke(cli_app, args, catch_exceptions=False)


async def cli(*args: str) -> Result:
    return await asyncio.to_thread(_invoke, list(args))


async def test_cli_sets_handling_days(settings: Settings, db: Database) -> None:
    url = settings.database_url
    result = await cli(
        "inventory",
        "add-warehouse",
        "--code",
        "HAM",
        "--name",
        "Hamburg",
        "--countries",
        "DE",
        "--handling-days",
        "2",
        "--database",
        url,
    )
    assert result.exit_code == 0, result.output
    result = await cli("inventory", "set-handling-days", "ham", "4", "--database", url)
    assert result.exit_code == 0, result.output
    assert "HAM now dispatches in 4 business day(s)" in result.output
    async with db.transaction() as uow:
        assert (await service.get_warehouse(uow, "HAM")).handling_days == 4
    result = await cli("inventory", "set-handling-days", "HAM", "99", "--database", url)
    assert result.exit_code == 1
    assert "handling_days" in result.output


# --------------------------------------------------------------------------------------------
# The schema


def _inventory_diff(conn: Connection) -> list[Any]:
    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        if type_ == "table":
            return bool(name and name.startswith("inventory_"))
        table = getattr(obj, "table", None)
        return table is None or str(table.name).startswith("inventory_")

    context = MigrationContext.configure(
        conn, opts={"compare_type": True, "include_object": include}
    )
    return list(compare_metadata(context, Base.metadata))


async def _migrate_to(db: Database, revision: str) -> None:
    await db.engine.dispose()
    if revision == "head":
        upgrade(db.url)
    else:
        await asyncio.to_thread(command.downgrade, alembic_config(db.url), revision)
    await db.engine.dispose()


async def test_existing_warehouses_take_one_day_and_the_schema_matches(db: Database) -> None:
    load_models()
    await _migrate_to(db, "0018_sales_ranks")
    old = sa.table(
        "inventory_warehouses",
        sa.column("id", sa.String),
        sa.column("code", sa.String),
        sa.column("name", sa.String),
        sa.column("countries", sa.JSON),
        sa.column("active", sa.Boolean),
        sa.column("created_at", UTCDateTime()),
    )
    async with db.transaction() as uow:
        await uow.execute(
            sa.insert(old).values(
                id="wh_old",
                code="OLD",
                name="Old",
                countries=["DE"],
                active=True,
                created_at=utcnow(),
            )
        )
    await _migrate_to(db, "head")
    async with db.transaction() as uow:
        assert (await service.get_warehouse(uow, "OLD")).handling_days == 1
    with pytest.raises(sa.exc.IntegrityError):
        async with db.transaction() as uow:
            await uow.execute(sa.update(WAREHOUSES).values(handling_days=-1))
    async with db.engine.connect() as conn:
        assert await conn.run_sync(_inventory_diff) == []
