"""Stock rows: reading them (per variant, per warehouse, the low ones) and the staff's changes
to the shelf count (goods received, returns put back, corrections).

Each change writes its ledger row and a ``StockChanged`` event in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, func, select, update

from mercato.catalog import service as catalog
from mercato.db import UnitOfWork, utcnow
from mercato.inventory.common import (
    MAX_QUANTITY,
    STOCK,
    WAREHOUSES,
    StockLevel,
    check_quantity,
    chunks,
    dialect_insert,
    low_stock_hint,
    stock_spreads,
)
from mercato.inventory.ledger import movement, publish_after_change, write_movements
from mercato.inventory.warehouses import VariantRef, get_warehouse, variant_of
from mercato.problems import Problem, validation_problem

# --------------------------------------------------------------------------------------------
# Reading stock


async def available_by_warehouse(
    uow: UnitOfWork, variant_ids: Collection[str]
) -> dict[str, dict[str, int]]:
    """Units available per variant in each active warehouse holding some (warehouse id →
    units; ``{}`` for a variant none holds). What a destination may buy is the sum over the
    warehouses shipping there, so a variant is available somewhere iff a warehouse appears."""
    found = await stock_spreads(uow, variant_ids)
    return {variant: spread.by_warehouse() for variant, spread in found.items()}


async def stock_notes(
    uow: UnitOfWork, variant_ids: Collection[str], country: str | None = None
) -> dict[str, catalog.StockNote]:
    """What anyone may know of each variant's stock for delivery to ``country`` (any
    destination when ``None``): in stock or not, "Only 3 left" when few are, and whether units
    exist that cannot reach it; the form product answers carry, never the count itself."""
    found = await stock_spreads(uow, variant_ids)
    notes: dict[str, catalog.StockNote] = {}
    for variant_id, spread in found.items():
        units = spread.for_country(country)
        notes[variant_id] = catalog.StockNote(
            units > 0, low_stock_hint(units), available_elsewhere=spread.only_elsewhere(country)
        )
    return notes


def _stock_level(row: Row[Any]) -> StockLevel:
    return StockLevel(
        variant_id=row.variant_id,
        warehouse_id=row.warehouse_id,
        warehouse_code=row.code,
        on_hand=row.on_hand,
        reserved=row.reserved,
        available=row.on_hand - row.reserved,
        version=row.version,
        updated_at=row.updated_at,
    )


def _stock_select() -> Select[Any]:
    return select(
        STOCK.c.variant_id,
        STOCK.c.warehouse_id,
        WAREHOUSES.c.code,
        STOCK.c.on_hand,
        STOCK.c.reserved,
        STOCK.c.version,
        STOCK.c.updated_at,
    ).join(WAREHOUSES, WAREHOUSES.c.id == STOCK.c.warehouse_id)


async def stock_for_variant(uow: UnitOfWork, variant_id: str) -> list[StockLevel]:
    """The variant's stock in every warehouse that has a row for it, by warehouse code."""
    rows = await uow.execute(
        _stock_select().where(STOCK.c.variant_id == variant_id).order_by(WAREHOUSES.c.code)
    )
    return [_stock_level(r) for r in rows]


async def _stock_level_of(uow: UnitOfWork, variant_id: str, warehouse_id: str) -> StockLevel:
    row = (
        await uow.execute(
            _stock_select().where(
                STOCK.c.variant_id == variant_id, STOCK.c.warehouse_id == warehouse_id
            )
        )
    ).one()
    return _stock_level(row)


@dataclass(frozen=True, slots=True)
class LowStock:
    """A variant's stock summed over the active warehouses."""

    variant_id: str
    on_hand: int
    reserved: int
    available: int


async def low_stock(uow: UnitOfWork, threshold: int, *, limit: int = 20) -> list[LowStock]:
    """Variants with at most ``threshold`` units available over the active warehouses (sold
    out ones included), fewest first. Only variants that have a stock row somewhere."""
    if not 1 <= limit <= 1000:
        raise validation_problem("limit", "must be between 1 and 1000")
    available = func.sum(STOCK.c.on_hand - STOCK.c.reserved)
    rows = await uow.execute(
        select(
            STOCK.c.variant_id,
            func.sum(STOCK.c.on_hand).label("on_hand"),
            func.sum(STOCK.c.reserved).label("reserved"),
            available.label("available"),
        )
        .join(WAREHOUSES, WAREHOUSES.c.id == STOCK.c.warehouse_id)
        .where(WAREHOUSES.c.active.is_(True))
        .group_by(STOCK.c.variant_id)
        .having(available <= threshold)
        .order_by(available, STOCK.c.variant_id)
        .limit(limit)
    )
    return [LowStock(r.variant_id, int(r.on_hand), int(r.reserved), int(r.available)) for r in rows]


@dataclass(frozen=True, slots=True)
class LowStockVariant:
    """A low-stock variant as staff are shown it: its SKU and name from the catalog (the id
    and no name when the catalog no longer knows it)."""

    variant_id: str
    sku: str
    title: str
    active: bool
    on_hand: int
    reserved: int
    available: int


async def low_stock_variants(
    uow: UnitOfWork, threshold: int, *, limit: int = 20
) -> list[LowStockVariant]:
    """:func:`low_stock` with each variant's SKU, name and whether it is for sale."""
    found = await low_stock(uow, threshold, limit=limit)
    variants = await catalog.get_variants(uow, [s.variant_id for s in found])
    rows: list[LowStockVariant] = []
    for s in found:
        variant = variants.get(s.variant_id)
        rows.append(
            LowStockVariant(
                variant_id=s.variant_id,
                sku=variant.sku if variant else s.variant_id,
                title=f"{variant.product_title} {variant.title}".strip() if variant else "",
                active=bool(variant and variant.active),
                on_hand=s.on_hand,
                reserved=s.reserved,
                available=s.available,
            )
        )
    return rows


async def stock_for_variants(
    uow: UnitOfWork, variant_ids: Collection[str]
) -> dict[str, list[StockLevel]]:
    """Each variant's stock rows, by warehouse code (variants without any map to ``[]``)."""
    wanted = sorted(set(variant_ids))
    found: dict[str, list[StockLevel]] = {v: [] for v in wanted}
    for chunk in chunks(wanted):
        rows = await uow.execute(
            _stock_select()
            .where(STOCK.c.variant_id.in_(list(chunk)))
            .order_by(STOCK.c.variant_id, WAREHOUSES.c.code)
        )
        for r in rows:
            found[r.variant_id].append(_stock_level(r))
    return found


# --------------------------------------------------------------------------------------------
# Receive, adjust, restock (staff and returns)


async def _add_on_hand(
    uow: UnitOfWork, variant_id: str, warehouse_id: str, quantity: int, now: datetime
) -> None:
    stmt = dialect_insert(uow, STOCK).values(
        variant_id=variant_id,
        warehouse_id=warehouse_id,
        on_hand=quantity,
        reserved=0,
        version=1,
        updated_at=now,
    )
    await uow.execute(
        stmt.on_conflict_do_update(
            index_elements=["variant_id", "warehouse_id"],
            set_={
                "on_hand": STOCK.c.on_hand + stmt.excluded.on_hand,
                "version": STOCK.c.version + 1,
                "updated_at": now,
            },
        )
    )


async def _add_stock(
    uow: UnitOfWork,
    kind: str,
    sku_or_variant: VariantRef,
    warehouse_code: str,
    quantity: int,
    *,
    reference: str | None,
    reason: str | None = None,
) -> StockLevel:
    check_quantity("quantity", quantity)
    variant = await variant_of(uow, sku_or_variant)
    warehouse = await get_warehouse(uow, warehouse_code)
    now = utcnow()
    await _add_on_hand(uow, variant.id, warehouse.id, quantity, now)
    row = movement(
        variant.id, warehouse.id, kind, quantity, now, reason=reason, reference=reference
    )
    await write_movements(uow, [row])
    await publish_after_change(uow, [variant.id])
    return await _stock_level_of(uow, variant.id, warehouse.id)


async def receive(
    uow: UnitOfWork,
    sku_or_variant: VariantRef,
    warehouse_code: str,
    quantity: int,
    reference: str | None = None,
) -> StockLevel:
    """Goods arrived at a warehouse: on_hand grows by ``quantity`` (1..MAX_QUANTITY).

    Stock of an archived variant may still be received: the shelf count must stay true.
    """
    return await _add_stock(
        uow, "receive", sku_or_variant, warehouse_code, quantity, reference=reference
    )


async def restock(
    uow: UnitOfWork,
    sku_or_variant: VariantRef,
    warehouse_code: str,
    quantity: int,
    reference: str | None = None,
) -> StockLevel:
    """Returned goods put back on the shelf (``reference``: the return or order)."""
    return await _add_stock(
        uow, "restock", sku_or_variant, warehouse_code, quantity, reference=reference
    )


async def adjust(
    uow: UnitOfWork,
    sku_or_variant: VariantRef,
    warehouse_code: str,
    delta: int,
    reason: str,
) -> StockLevel:
    """Correct on_hand by ``delta`` (a stock count, damage) with a reason. It never takes
    on_hand below what is reserved: that is a 409 ``insufficient_stock`` naming what is free."""
    if isinstance(delta, bool) or not isinstance(delta, int) or delta == 0:
        raise validation_problem("delta", "must be a non-zero whole number")
    if abs(delta) > MAX_QUANTITY:
        raise validation_problem("delta", f"must be between -{MAX_QUANTITY} and {MAX_QUANTITY}")
    reason = (reason or "").strip()
    if not reason or len(reason) > 200:
        raise validation_problem("reason", "must be 1 to 200 characters")
    variant = await variant_of(uow, sku_or_variant)
    warehouse = await get_warehouse(uow, warehouse_code)
    now = utcnow()
    if delta > 0:
        await _add_on_hand(uow, variant.id, warehouse.id, delta, now)
    else:
        taken = await uow.changed(
            update(STOCK)
            .where(
                STOCK.c.variant_id == variant.id,
                STOCK.c.warehouse_id == warehouse.id,
                STOCK.c.on_hand - STOCK.c.reserved >= -delta,
            )
            .values(on_hand=STOCK.c.on_hand + delta, version=STOCK.c.version + 1, updated_at=now)
        )
        if taken != 1:
            levels = await stock_for_variant(uow, variant.id)
            free = next((s.available for s in levels if s.warehouse_id == warehouse.id), 0)
            raise Problem(
                409,
                "insufficient_stock",
                f"Cannot remove {-delta} units: only {free} are not reserved in {warehouse.code}",
                variant_id=variant.id,
                warehouse=warehouse.code,
                available=free,
            )
    row = movement(variant.id, warehouse.id, "adjust", delta, now, reason=reason)
    await write_movements(uow, [row])
    await publish_after_change(uow, [variant.id])
    return await _stock_level_of(uow, variant.id, warehouse.id)
