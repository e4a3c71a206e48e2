"""Which warehouses reach a shopper's country: what "in stock" means for them.

The index keeps, per product, the warehouses holding its units; a search maps the shopper's
country to the active warehouses shipping there (:class:`~mercato.search.query.Reach`). The
warehouses rarely change, so each process keeps the inventory's list for a few seconds (read
in a short transaction of its own: a search holds none), like the synonym list.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from mercato.inventory import service as inventory
from mercato.runtime import Runtime
from mercato.search import query as q
from mercato.search.replica import engine_for, engines

log = logging.getLogger("mercato.search")

WAREHOUSE_TTL = 5.0


@dataclass
class _WarehouseCache:
    warehouses: Sequence[inventory.WarehouseInfo]
    loaded: float


def reach_of(warehouses: Sequence[inventory.WarehouseInfo], country: str) -> q.Reach:
    """The country with the active warehouses shipping there."""
    reaching = sorted(w.id for w in warehouses if w.active and w.ships_to(country))
    return q.Reach(country, tuple(reaching))


async def current_warehouses(runtime: Runtime) -> Sequence[inventory.WarehouseInfo]:
    """The warehouses, re-read at most every ``WAREHOUSE_TTL`` seconds per process (the last
    list answers while the database cannot be reached)."""
    engine = engine_for(runtime)
    cache = engine.warehouses
    now = time.monotonic()
    if isinstance(cache, _WarehouseCache) and now - cache.loaded < WAREHOUSE_TTL:
        return cache.warehouses
    try:
        async with runtime.db.transaction() as uow:
            warehouses = await inventory.list_warehouses(uow)
    except Exception:
        if isinstance(cache, _WarehouseCache):
            log.warning("warehouses could not be re-read; using the last list", exc_info=True)
            return cache.warehouses
        raise
    engine.warehouses = _WarehouseCache(tuple(warehouses), now)
    return warehouses


def forget_warehouses() -> None:
    """Every engine of this process re-reads the warehouses at its next search (told by the
    inventory when a warehouse changes; other processes follow within ``WAREHOUSE_TTL``)."""
    for engine in list(engines()):
        engine.warehouses = None


async def reach(runtime: Runtime, country: str | None) -> q.Reach | None:
    """Where stock counts for a shopper in ``country``; None (anywhere) without one."""
    if country is None:
        return None
    return reach_of(await current_warehouses(runtime), country)
