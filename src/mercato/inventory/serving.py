"""Which warehouse would serve a destination, and how long it takes to dispatch: what delivery
estimates start from.

The answer is the warehouse a reservation made now would draw from (:func:`plan_holds`: those
shipping to the country, the fullest that holds the whole quantity), so the estimate a shopper
reads is the one the allocation will keep to, as long as stock does not move meanwhile.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select

from mercato.db import UnitOfWork
from mercato.inventory.common import WAREHOUSES, normalize_country

# The planner and its read are the reservation's own, shared so the two cannot disagree.
from mercato.inventory.reserve import _candidates, plan_holds


@dataclass(frozen=True, slots=True)
class ServingWarehouse:
    """Where a variant's units would leave from for a destination. ``handling_days`` is the
    slowest of the warehouses when the quantity has to be split between several."""

    variant_id: str
    warehouse_codes: tuple[str, ...]
    handling_days: int


async def serving_warehouses(
    uow: UnitOfWork, wanted: Mapping[str, int], country: str
) -> dict[str, ServingWarehouse]:
    """For each variant of ``wanted`` (variant id → quantity), the warehouses the allocation
    would pick for ``country``. A variant that cannot be filled there (no stock in a warehouse
    shipping to the country) is left out."""
    code = normalize_country(country) or ""
    wanted = {v: q for v, q in wanted.items() if q > 0}
    if not wanted:
        return {}
    holds, _short = plan_holds(wanted, await _candidates(uow, wanted.keys()), code)
    if not holds:
        return {}
    days = await _handling_days(uow, {h.warehouse_id for h in holds})
    by_variant: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for h in holds:
        by_variant[h.variant_id].append((h.code, days[h.warehouse_id]))
    return {
        variant_id: ServingWarehouse(
            variant_id,
            tuple(sorted(code for code, _ in picked)),
            max(d for _, d in picked),
        )
        for variant_id, picked in by_variant.items()
    }


async def _handling_days(uow: UnitOfWork, warehouse_ids: set[str]) -> dict[str, int]:
    rows = await uow.execute(
        select(WAREHOUSES.c.id, WAREHOUSES.c.handling_days).where(
            WAREHOUSES.c.id.in_(sorted(warehouse_ids))
        )
    )
    return {r.id: int(r.handling_days) for r in rows}
