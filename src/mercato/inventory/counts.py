"""Stock counts: "this many are free on the shelf now", as a stocktake or a product file from
another shop states it, written as the receipt or correction that makes it so.

A count sets what is *available* (on hand less reserved): the units held for checkouts in
progress stay held, so a count never takes stock from under a shopper who is paying. Catalog
imports reach it through :class:`WarehouseStock`, which the command line hands them (the
catalog sits below the inventory and never imports it).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import select

from mercato.db import UnitOfWork
from mercato.inventory.common import MAX_QUANTITY, STOCK, WarehouseInfo
from mercato.inventory.stock import adjust, receive, stock_for_variants
from mercato.inventory.warehouses import VariantRef, get_warehouse, list_warehouses, variant_of
from mercato.problems import validation_problem


async def default_warehouse(uow: UnitOfWork) -> WarehouseInfo | None:
    """The warehouse stock goes to when nobody names one: the first active warehouse of the
    shop's own pool, by code (what the back office proposes too); None when there is none."""
    for warehouse in await list_warehouses(uow):
        if warehouse.active and warehouse.pooled:
            return warehouse
    return None


async def set_available(
    uow: UnitOfWork,
    sku_or_variant: VariantRef,
    warehouse_code: str,
    available: int,
    reason: str = "stock count",
) -> int:
    """Make ``available`` units of the variant free in the warehouse: the difference is
    received (more than before) or adjusted away (fewer), with its ledger row and event; no
    change writes nothing. Returns the change in units on hand."""
    if isinstance(available, bool) or not isinstance(available, int):
        raise validation_problem("available", "must be a whole number")
    if not 0 <= available <= MAX_QUANTITY:
        raise validation_problem("available", f"must be between 0 and {MAX_QUANTITY}")
    variant = await variant_of(uow, sku_or_variant)
    warehouse = await get_warehouse(uow, warehouse_code)
    # The row is locked while the difference is worked out (PostgreSQL; SQLite's writer
    # already holds the database), so no reservation slips in between.
    row = (
        await uow.execute(
            select(STOCK.c.on_hand, STOCK.c.reserved)
            .where(STOCK.c.variant_id == variant.id, STOCK.c.warehouse_id == warehouse.id)
            .with_for_update()
        )
    ).first()
    free = 0 if row is None else row.on_hand - row.reserved
    delta = available - free
    if delta > 0:
        await receive(uow, variant, warehouse.code, delta, reference=reason)
    elif delta < 0:
        await adjust(uow, variant, warehouse.code, delta, reason)
    return delta


@dataclass(frozen=True, slots=True)
class WarehouseStock:
    """One warehouse's free stock, as a catalog import or export reads and sets it (the
    catalog's ``ShopStock``)."""

    code: str
    reason: str = "product import"

    async def set_available(self, uow: UnitOfWork, variant_id: str, quantity: int) -> None:
        await set_available(uow, variant_id, self.code, quantity, self.reason)

    async def available(self, uow: UnitOfWork, variant_ids: Collection[str]) -> dict[str, int]:
        levels = await stock_for_variants(uow, variant_ids)
        return {
            variant_id: sum(s.available for s in found if s.warehouse_code == self.code)
            for variant_id, found in levels.items()
        }


async def warehouse_stock(uow: UnitOfWork, code: str | None) -> WarehouseStock | None:
    """The stock of the warehouse ``code`` (422 ``unknown_warehouse`` when there is none), or
    of the default warehouse when ``code`` is None (None when the shop has no warehouse)."""
    if code is not None:
        return WarehouseStock((await get_warehouse(uow, code)).code)
    found = await default_warehouse(uow)
    return None if found is None else WarehouseStock(found.code)
