"""Inventory test helpers: warehouses, variants, and snapshots of every inventory table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select

from mercato.db import Database
from mercato.events import OutboxEvent
from mercato.inventory import service
from mercato.inventory.service import MOVEMENTS, RESERVATIONS, STOCK, WAREHOUSES
from tests.factories import make_product

# Berlin and Lyon both ship to France; London only to the British Isles.
WAREHOUSE_SPECS: tuple[tuple[str, str, list[str]], ...] = (
    ("BER", "Berlin", ["AT", "DE", "FR", "NL"]),
    ("LYS", "Lyon", ["ES", "FR", "IT"]),
    ("LDN", "London", ["GB", "IE"]),
)


@dataclass(frozen=True)
class Warehouses:
    ber: service.WarehouseInfo
    lys: service.WarehouseInfo
    ldn: service.WarehouseInfo

    @property
    def by_code(self) -> dict[str, service.WarehouseInfo]:
        return {w.code: w for w in (self.ber, self.lys, self.ldn)}


async def create_warehouses(db: Database) -> Warehouses:
    async with db.transaction() as conn:
        made = [
            await service.create_warehouse(conn, code=code, name=name, countries=countries)
            for code, name, countries in WAREHOUSE_SPECS
        ]
    return Warehouses(*made)


@pytest.fixture
async def warehouses(db: Database) -> Warehouses:
    return await create_warehouses(db)


async def new_variants(
    db: Database, count: int = 1, *, status: str = "active", title: str = "Test kettle"
) -> list[str]:
    async with db.transaction() as session:
        _, ids = await make_product(
            session, title=title, variants=[{} for _ in range(count)], status=status
        )
    return ids


@pytest.fixture
async def variant(db: Database) -> str:
    return (await new_variants(db))[0]


async def receive(db: Database, variant_id: str, code: str, quantity: int) -> None:
    async with db.transaction() as conn:
        await service.receive(conn, variant_id, code, quantity)


async def stock_of(db: Database, variant_id: str) -> dict[str, tuple[int, int]]:
    """{warehouse code: (on_hand, reserved)} for one variant."""
    async with db.transaction() as conn:
        levels = await service.stock_for_variant(conn, variant_id)
    return {s.warehouse_code: (s.on_hand, s.reserved) for s in levels}


async def snapshot(db: Database) -> dict[str, Any]:
    """Everything the inventory owns (and the outbox size): to prove bad input wrote nothing."""
    async with db.transaction() as conn:
        found: dict[str, Any] = {}
        for table in (WAREHOUSES, STOCK, RESERVATIONS, MOVEMENTS):
            rows = await conn.execute(select(table).order_by(*table.primary_key.columns))
            found[table.name] = [tuple(r) for r in rows]
        found["outbox"] = await conn.scalar(select(func.count()).select_from(OutboxEvent))
    return found


async def ledger_ok(db: Database) -> None:
    async with db.transaction() as conn:
        differences = await service.check_ledger(conn)
    assert differences == [], differences
