"""Warehouses (where stock lies and which countries each ships to) and the catalog variants
stock is kept for, looked up through the catalog's service."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import Row, select, update

from mercato.catalog import service as catalog
from mercato.db import UnitOfWork, utcnow
from mercato.ids import new_id
from mercato.inventory.common import WAREHOUSES, WarehouseInfo, dialect_insert, normalize_country
from mercato.inventory.models import MAX_HANDLING_DAYS as MAX_HANDLING_DAYS
from mercato.problems import Problem, not_found, validation_problem

_CODE = re.compile(r"^[A-Z0-9][A-Z0-9_-]{1,15}$")
DEFAULT_HANDLING_DAYS = 1

warehouse_listeners: list[Callable[[], None]] = []
"""Told after a warehouse change commits (filled by ``modules.wire()``): the search forgets
the warehouses it keeps a few seconds, which say where each destination's stock lies."""


def _tell_listeners() -> None:
    for listener in warehouse_listeners:
        listener()


async def _lookup(uow: UnitOfWork, key: str, by_id: bool) -> catalog.VariantInfo | None:
    if by_id:
        return (await catalog.get_variants(uow, [key])).get(key)
    return await catalog.get_variant_by_sku(uow, key)


async def resolve_variant(
    uow: UnitOfWork, sku_or_variant: str, field: str = "sku"
) -> catalog.VariantInfo:
    """The catalog variant with this SKU (or id); 422 ``unknown_variant`` naming ``field``."""
    # Ids look like "var_..." (a SKU might too): try the likelier reading first.
    by_id = sku_or_variant.startswith("var_")
    variant = await _lookup(uow, sku_or_variant, by_id)
    if variant is None:
        variant = await _lookup(uow, sku_or_variant, not by_id)
    if variant is None:
        raise validation_problem(
            field, f"no variant with SKU or id {sku_or_variant!r}", code="unknown_variant"
        )
    return variant


VariantRef = str | catalog.VariantInfo
"""A variant by SKU or id, or one the caller already looked up in the catalog."""


async def variant_of(uow: UnitOfWork, ref: VariantRef) -> catalog.VariantInfo:
    if isinstance(ref, catalog.VariantInfo):
        return ref
    return await resolve_variant(uow, ref)


async def check_reservable(uow: UnitOfWork, variant_ids: Collection[str]) -> None:
    """Every variant known to the catalog and for sale; else 422 ``unknown_variant`` or 409
    ``variant_unavailable``."""
    found = await catalog.get_variants(uow, variant_ids)
    unknown = sorted(set(variant_ids) - found.keys())
    if unknown:
        raise validation_problem(
            "lines", f"unknown variant(s): {', '.join(unknown)}", code="unknown_variant"
        )
    inactive = sorted(v for v, info in found.items() if not info.active)
    if inactive:
        raise Problem(
            409,
            "variant_unavailable",
            f"Not for sale (archived or inactive): {', '.join(inactive)}",
            variant_ids=inactive,
        )


def _warehouse_info(row: Row[Any]) -> WarehouseInfo:
    return WarehouseInfo(
        id=row.id,
        code=row.code,
        name=row.name,
        countries=tuple(row.countries or ()),
        region=row.region,
        active=bool(row.active),
        handling_days=int(row.handling_days),
        pooled=bool(row.pooled),
    )


def check_handling_days(days: int, field: str = "handling_days") -> int:
    if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= MAX_HANDLING_DAYS:
        raise validation_problem(
            field, f"must be a whole number of days from 0 to {MAX_HANDLING_DAYS}"
        )
    return days


async def create_warehouse(
    uow: UnitOfWork,
    *,
    code: str,
    name: str,
    countries: Sequence[str],
    region: str | None = None,
    handling_days: int = DEFAULT_HANDLING_DAYS,
    pooled: bool = True,
) -> WarehouseInfo:
    """A new warehouse; ``handling_days`` is how many business days it takes to hand a parcel
    to the carrier (counted from the day an order counts from, see the delivery estimates).
    ``pooled=False`` keeps its stock out of the shop's pool (a marketplace seller's own)."""
    check_handling_days(handling_days)
    code = code.strip().upper()
    if not _CODE.match(code):
        raise validation_problem("code", "2-16 characters: letters, digits, '-' or '_'")
    name = name.strip()
    if not name or len(name) > 120:
        raise validation_problem("name", "must be 1 to 120 characters")
    normalized = sorted(
        {normalize_country(c, f"countries[{i}]") or "" for i, c in enumerate(countries)}
    )
    warehouse_id = new_id("wh")
    row: dict[str, Any] = {
        "id": warehouse_id,
        "code": code,
        "name": name,
        "countries": normalized,
        "region": region,
        "active": True,
        "created_at": utcnow(),
        "handling_days": handling_days,
        "pooled": pooled,
    }
    created = await uow.changed(
        dialect_insert(uow, WAREHOUSES).values(row).on_conflict_do_nothing(index_elements=["code"])
    )
    if created != 1:
        raise Problem(409, "warehouse_exists", f"A warehouse with code {code!r} already exists")
    uow.after_commit(_tell_listeners)
    return WarehouseInfo(
        id=warehouse_id,
        code=code,
        name=name,
        countries=tuple(normalized),
        region=region,
        active=True,
        handling_days=handling_days,
        pooled=pooled,
    )


async def set_handling_days(uow: UnitOfWork, code: str, handling_days: int) -> WarehouseInfo:
    """Change how many business days the warehouse ``code`` takes to dispatch; 404
    ``not_found`` when there is none (the code names the thing changed)."""
    check_handling_days(handling_days)
    try:
        found = await get_warehouse(uow, code)
    except Problem as exc:
        raise not_found("Warehouse", code) from exc
    await uow.execute(
        update(WAREHOUSES).where(WAREHOUSES.c.id == found.id).values(handling_days=handling_days)
    )
    return replace(found, handling_days=handling_days)


async def list_warehouses(uow: UnitOfWork) -> list[WarehouseInfo]:
    rows = await uow.execute(select(WAREHOUSES).order_by(WAREHOUSES.c.code))
    return [_warehouse_info(r) for r in rows]


async def shipping_countries(uow: UnitOfWork) -> list[str]:
    """Every country some active pooled warehouse ships to (sorted by code)."""
    rows = await uow.execute(
        select(WAREHOUSES.c.countries).where(WAREHOUSES.c.active, WAREHOUSES.c.pooled)
    )
    return sorted({c for (countries,) in rows for c in countries or ()})


async def get_warehouse(uow: UnitOfWork, code: str, field: str = "warehouse") -> WarehouseInfo:
    """The warehouse with this code; 422 ``unknown_warehouse`` naming ``field``."""
    row = (
        await uow.execute(select(WAREHOUSES).where(WAREHOUSES.c.code == code.strip().upper()))
    ).first()
    if row is None:
        raise validation_problem(
            field, f"no warehouse with code {code!r}", code="unknown_warehouse"
        )
    return _warehouse_info(row)
